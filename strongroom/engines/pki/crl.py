"""Building and signing CRLs (RFC 5280 §5): pure functions, no storage.

Why this module is shaped the way it is:

* **Entries encoded here, the rest by cryptography.** ``cryptography``'s
  ``CertificateRevocationListBuilder`` needs one Python ``RevokedCertificate`` object
  per entry (and copies its list on every ``add_revoked_certificate``: quadratic),
  which for a million entries meant ~400 MiB of objects. So the
  ``revokedCertificates`` list is DER-encoded here, entry by entry, into one buffer
  (:class:`EncodedEntries`, ~40 bytes an entry; a caller can fill it while it reads
  storage page by page); cryptography builds and signs the same CRL *without*
  entries, the entry list is spliced into its TBSCertList and that is signed with
  the issuer key (:func:`build_crl`). Entries are ``SEQUENCE { serial INTEGER,
  revocationDate Time [, crlEntryExtensions] }`` with UTCTime before 2050 and
  GeneralizedTime after (RFC 5280 §4.1.2.5), exactly as cryptography writes them.
* **Numbers come from the caller.** The CRL number must strictly increase per
  issuer across rebuilds and restarts, so it lives in storage (``revocation.py``)
  and is passed in; this module never invents one.
* **Delta CRLs** carry a critical Delta CRL Indicator naming the number of the
  complete CRL they extend (RFC 5280 §5.2.4) and only the entries revoked since
  that complete CRL was built.
* **Signature algorithm** follows the issuer key unless the issuer sets a Vault
  ``revocation_signature_algorithm`` (``SHA256WithRSAPSS`` and friends).
"""

from __future__ import annotations

import base64
import datetime as dt
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import ExtensionOID

__all__ = [
    "EncodedEntries",
    "RevokedEntry",
    "SignatureChoice",
    "build_crl",
    "crl_to_pem",
    "der_element",
    "der_length",
    "der_time",
    "der_tlv",
    "signature_choice",
]


@dataclass(frozen=True, slots=True)
class RevokedEntry:
    """One line of a CRL: a serial and when it was revoked (UTC)."""

    serial: int
    revocation_time: dt.datetime
    reason: x509.ReasonFlags | None = None


@dataclass(frozen=True, slots=True)
class SignatureChoice:
    """How to sign with an issuer key: hash (None for EdDSA) and RSA padding."""

    algorithm: hashes.HashAlgorithm | None
    rsa_padding: padding.PSS | padding.PKCS1v15 | None = None


_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "SHA256": hashes.SHA256,
    "SHA384": hashes.SHA384,
    "SHA512": hashes.SHA512,
}


def _default_ec_hash(key: ec.EllipticCurvePrivateKey) -> hashes.HashAlgorithm:
    # Go's x509 (and so Vault) picks the hash from the curve size.
    size = key.curve.key_size
    if size > 384:
        return hashes.SHA512()
    if size > 256:
        return hashes.SHA384()
    return hashes.SHA256()


def signature_choice(key: CertificateIssuerPrivateKeyTypes, revocation_sig_alg: str = "") -> SignatureChoice:
    """Pick the CRL/OCSP signature for ``key``, honouring Vault's ``revocation_signature_algorithm``.

    Names are Go's ``x509.SignatureAlgorithm`` strings (``SHA256WithRSA``,
    ``SHA384WithRSAPSS``, ``ECDSAWithSHA512``, ``PureEd25519``); an empty or
    unknown name, or one that does not fit the key type, falls back to the
    key's default so a stale setting can never make the CRL unsignable.
    """
    name = (revocation_sig_alg or "").strip()
    upper = name.upper()
    if isinstance(key, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey):
        return SignatureChoice(None)
    if isinstance(key, rsa.RSAPrivateKey):
        for label, cls in _HASHES.items():
            if upper == f"{label}WITHRSAPSS":
                pss = padding.PSS(mgf=padding.MGF1(cls()), salt_length=padding.PSS.DIGEST_LENGTH)
                return SignatureChoice(cls(), pss)
            if upper == f"{label}WITHRSA":
                return SignatureChoice(cls(), padding.PKCS1v15())
        return SignatureChoice(hashes.SHA256(), padding.PKCS1v15())
    if isinstance(key, ec.EllipticCurvePrivateKey):
        for label, cls in _HASHES.items():
            if upper == f"ECDSAWITH{label}":
                return SignatureChoice(cls())
        return SignatureChoice(_default_ec_hash(key))
    return SignatureChoice(hashes.SHA256())


def _aki(issuer_cert: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    """AKI from the issuer's SKI when it has one (it must match), else from its key."""
    try:
        ski = issuer_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_cert.public_key())  # type: ignore[arg-type]
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


def _utc(moment: dt.datetime) -> dt.datetime:
    if moment.tzinfo is None:
        return moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC)


# -- entries, DER-encoded ---------------------------------------------------------------------

_REASON_CODES = {
    x509.ReasonFlags.key_compromise: 1,
    x509.ReasonFlags.ca_compromise: 2,
    x509.ReasonFlags.affiliation_changed: 3,
    x509.ReasonFlags.superseded: 4,
    x509.ReasonFlags.cessation_of_operation: 5,
    x509.ReasonFlags.certificate_hold: 6,
    x509.ReasonFlags.privilege_withdrawn: 9,
    x509.ReasonFlags.aa_compromise: 10,
}


def der_length(size: int) -> bytes:
    """A DER length octet string."""
    if size < 0x80:
        return bytes((size,))
    raw = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(raw),)) + raw


def der_tlv(tag: int, body: bytes | bytearray) -> bytes:
    """One DER element: tag, length, contents."""
    return bytes((tag,)) + der_length(len(body)) + body


def der_time(timestamp: int) -> bytes:
    """UTCTime for 1950-2049, GeneralizedTime otherwise (RFC 5280 §4.1.2.5); whole seconds."""
    t = time.gmtime(timestamp)
    year = t.tm_year
    if year < 1950:
        raise ValueError("dates must be on or after 1950 January 1")
    if year < 2050:
        text = b"%02d%02d%02d%02d%02d%02dZ" % (year % 100, t.tm_mon, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec)
        return b"\x17\x0d" + text
    text = b"%04d%02d%02d%02d%02d%02dZ" % (year, t.tm_mon, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec)
    return b"\x18\x0f" + text


def _timestamp(moment: dt.datetime) -> int:
    """Whole seconds since the epoch of an instant (naive means UTC), as the builder truncates."""
    return int(_utc(moment).replace(microsecond=0).timestamp())


def _reason_extensions(reason: x509.ReasonFlags | None) -> bytes:
    """crlEntryExtensions with a CRLReason, or nothing (RFC 5280 §5.3.1: no 'unspecified')."""
    code = _REASON_CODES.get(reason) if reason is not None else None
    if code is None:
        return b""
    value = der_tlv(0x04, b"\x0a\x01" + bytes((code,)))  # extnValue OCTET STRING { ENUMERATED }
    extension = der_tlv(0x30, b"\x06\x03\x55\x1d\x15" + value)  # id-ce-cRLReasons, not critical
    return der_tlv(0x30, extension)


class EncodedEntries:
    """A CRL's ``revokedCertificates`` as DER, built one entry at a time.

    About 40 bytes per entry (one bytearray), instead of a Python object per entry.
    :meth:`add` skips serials already added through it and non-positive ones, as the
    builder always did; :meth:`add_stored` takes a serial in the storage form
    (colon hex, unique per ``revoked/`` key) and does not track it.
    """

    __slots__ = ("_buffer", "_count", "_seen", "_times")

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._count = 0
        self._seen: set[int] = set()
        self._times: dict[int, bytes] = {}  # revocations cluster in time: encode each second once

    def __len__(self) -> int:
        return self._count

    def _time(self, timestamp: int) -> bytes:
        encoded = self._times.get(timestamp)
        if encoded is None:
            if len(self._times) >= 4096:
                self._times.clear()
            encoded = self._times[timestamp] = der_time(timestamp)
        return encoded

    def _append(self, magnitude: bytes, timestamp: int, extensions: bytes = b"") -> None:
        if magnitude[0] & 0x80:
            magnitude = b"\x00" + magnitude  # INTEGER is signed: keep the serial positive
        body = b"\x02" + der_length(len(magnitude)) + magnitude + self._time(timestamp) + extensions
        self._buffer += b"\x30" + der_length(len(body)) + body
        self._count += 1

    def add(self, entry: RevokedEntry) -> None:
        serial = entry.serial
        if serial <= 0 or serial in self._seen:
            return  # a serial appears at most once; RFC 5280 serials are positive
        self._seen.add(serial)
        magnitude = serial.to_bytes((serial.bit_length() + 7) // 8, "big")
        self._append(magnitude, _timestamp(entry.revocation_time), _reason_extensions(entry.reason))

    def add_stored(self, serial: str, revocation_time: int) -> None:
        """A ``revoked/<serial>`` record: colon hex (ValueError if it is not hex)."""
        magnitude = bytes.fromhex(serial.replace(":", "")).lstrip(b"\x00")
        if magnitude:
            self._append(magnitude, int(revocation_time))

    def der(self) -> bytes:
        """The ``revokedCertificates`` SEQUENCE (empty bytes when there is no entry)."""
        return der_tlv(0x30, self._buffer) if self._count else b""


def _encoded(entries: Iterable[RevokedEntry] | EncodedEntries) -> EncodedEntries:
    if isinstance(entries, EncodedEntries):
        return entries
    out = EncodedEntries()
    for entry in entries:
        out.add(entry)
    return out


def der_element(data: bytes, at: int) -> tuple[int, int]:
    """(start of content, end) of the DER element at ``at``."""
    first = data[at + 1]
    if first < 0x80:
        return at + 2, at + 2 + first
    count = first & 0x7F
    start = at + 2 + count
    return start, start + int.from_bytes(data[at + 2 : start], "big")


def _with_entries(
    empty: x509.CertificateRevocationList,
    entries: bytes,
    key: CertificateIssuerPrivateKeyTypes,
    choice: SignatureChoice,
) -> bytes:
    """The DER of ``empty`` with ``entries`` spliced into its TBSCertList, signed again.

    TBSCertList is ``version, signature, issuer, thisUpdate, nextUpdate,
    [revokedCertificates], [0] crlExtensions``; cryptography omits the list when it is
    empty, so it goes in right after nextUpdate. The outer signatureAlgorithm is the
    one cryptography wrote for the same key and choice.
    """
    tbs = empty.tbs_certlist_bytes
    content, end = der_element(tbs, 0)
    at = content
    for _ in range(5):  # version, signature, issuer, thisUpdate, nextUpdate
        at = der_element(tbs, at)[1]
    if at < end and tbs[at] == 0x30:
        raise ValueError("the CRL to extend already has entries")
    new_tbs = der_tlv(0x30, tbs[content:at] + entries + tbs[at:end])
    der = empty.public_bytes(serialization.Encoding.DER)
    outer, _ = der_element(der, 0)
    algorithm_at = der_element(der, outer)[1]
    algorithm = der[algorithm_at : der_element(der, algorithm_at)[1]]
    if isinstance(key, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey):
        signature = key.sign(new_tbs)
    elif isinstance(key, ec.EllipticCurvePrivateKey):
        assert choice.algorithm is not None
        signature = key.sign(new_tbs, ec.ECDSA(choice.algorithm))
    elif isinstance(key, rsa.RSAPrivateKey):
        assert choice.algorithm is not None
        signature = key.sign(new_tbs, choice.rsa_padding or padding.PKCS1v15(), choice.algorithm)
    else:  # pragma: no cover - CRL issuers are RSA, EC or EdDSA
        raise TypeError("unsupported CRL signing key")
    return der_tlv(0x30, new_tbs + algorithm + der_tlv(0x03, b"\x00" + signature))


def build_crl(
    *,
    issuer_cert: x509.Certificate,
    issuer_key: CertificateIssuerPrivateKeyTypes,
    entries: Sequence[RevokedEntry] | Iterable[RevokedEntry] | EncodedEntries,
    crl_number: int,
    this_update: dt.datetime,
    next_update: dt.datetime,
    delta_base: int | None = None,
    revocation_sig_alg: str = "",
    freshest_crl_urls: Sequence[str] = (),
) -> bytes:
    """Sign a complete CRL (``delta_base`` None) or a delta CRL, and return its DER.

    ``entries`` may hold any number of items, as :class:`RevokedEntry` objects or
    already encoded (:class:`EncodedEntries`); see the module docstring for how.
    """
    if crl_number < 0:
        raise ValueError("CRL number must not be negative")
    if delta_base is not None and not 0 <= delta_base < crl_number:
        raise ValueError("delta CRL base must be a smaller, non-negative CRL number")
    extensions: list[x509.Extension[x509.ExtensionType]] = [
        x509.Extension(ExtensionOID.AUTHORITY_KEY_IDENTIFIER, False, _aki(issuer_cert)),
        x509.Extension(ExtensionOID.CRL_NUMBER, False, x509.CRLNumber(crl_number)),
    ]
    if delta_base is not None:
        extensions.append(
            x509.Extension(ExtensionOID.DELTA_CRL_INDICATOR, True, x509.DeltaCRLIndicator(delta_base))
        )
    elif freshest_crl_urls:
        points = [
            x509.DistributionPoint(
                full_name=[x509.UniformResourceIdentifier(u)],
                relative_name=None,
                reasons=None,
                crl_issuer=None,
            )
            for u in freshest_crl_urls
        ]
        extensions.append(x509.Extension(ExtensionOID.FRESHEST_CRL, False, x509.FreshestCRL(points)))
    encoded = _encoded(entries)
    builder = x509.CertificateRevocationListBuilder(
        issuer_name=issuer_cert.subject,
        last_update=_utc(this_update),
        next_update=_utc(next_update),
        extensions=extensions,
        revoked_certificates=[],
    )
    choice = signature_choice(issuer_key, revocation_sig_alg)
    if choice.rsa_padding is not None:
        crl = builder.sign(issuer_key, choice.algorithm, rsa_padding=choice.rsa_padding)  # type: ignore[arg-type]
    else:
        crl = builder.sign(issuer_key, choice.algorithm)  # type: ignore[arg-type]
    if not len(encoded):
        return crl.public_bytes(serialization.Encoding.DER)
    return _with_entries(crl, encoded.der(), issuer_key, choice)


def crl_to_pem(der: bytes) -> str:
    """PEM text of a DER CRL, trimmed like every PEM Vault returns in JSON."""
    body = base64.b64encode(der).decode()
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return "-----BEGIN X509 CRL-----\n" + "\n".join(lines) + "\n-----END X509 CRL-----"
