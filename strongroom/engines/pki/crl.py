"""Building and signing CRLs (RFC 5280 §5): pure functions, no storage.

Why this module is shaped the way it is:

* **One pass.** ``cryptography``'s ``CertificateRevocationListBuilder`` copies its
  entry list on every ``add_revoked_certificate`` call, so adding entries one by
  one is quadratic (100k entries: seconds instead of a fraction of one). We build
  every :class:`x509.RevokedCertificate` first and hand the whole list to the
  builder's constructor once (see ``performance-baseline.md``).
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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import CRLEntryExtensionOID, ExtensionOID

__all__ = [
    "RevokedEntry",
    "SignatureChoice",
    "build_crl",
    "crl_to_pem",
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


def _revoked_objects(entries: Iterable[RevokedEntry]) -> list[x509.RevokedCertificate]:
    """Make every entry object up front; the builder then gets the whole list at once."""
    out: list[x509.RevokedCertificate] = []
    append = out.append
    seen: set[int] = set()
    for entry in entries:
        if entry.serial in seen or entry.serial <= 0:
            continue  # a serial appears at most once; RFC 5280 serials are positive
        seen.add(entry.serial)
        extensions: list[x509.Extension[x509.ExtensionType]] = []
        if entry.reason is not None and entry.reason not in (
            x509.ReasonFlags.unspecified,
            x509.ReasonFlags.remove_from_crl,
        ):
            # RFC 5280 §5.3.1: leave the reason out rather than say "unspecified"
            extensions.append(
                x509.Extension(CRLEntryExtensionOID.CRL_REASON, False, x509.CRLReason(entry.reason))
            )
        append(
            x509.RevokedCertificateBuilder(
                serial_number=entry.serial,
                revocation_date=_utc(entry.revocation_time),
                extensions=extensions,
            ).build()
        )
    return out


def build_crl(
    *,
    issuer_cert: x509.Certificate,
    issuer_key: CertificateIssuerPrivateKeyTypes,
    entries: Sequence[RevokedEntry] | Iterable[RevokedEntry],
    crl_number: int,
    this_update: dt.datetime,
    next_update: dt.datetime,
    delta_base: int | None = None,
    revocation_sig_alg: str = "",
    freshest_crl_urls: Sequence[str] = (),
) -> bytes:
    """Sign a complete CRL (``delta_base`` None) or a delta CRL, and return its DER.

    ``entries`` may hold any number of items; they are turned into entry
    objects first and passed to the builder in a single call.
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
    builder = x509.CertificateRevocationListBuilder(
        issuer_name=issuer_cert.subject,
        last_update=_utc(this_update),
        next_update=_utc(next_update),
        extensions=extensions,
        revoked_certificates=_revoked_objects(entries),
    )
    choice = signature_choice(issuer_key, revocation_sig_alg)
    if choice.rsa_padding is not None:
        crl = builder.sign(issuer_key, choice.algorithm, rsa_padding=choice.rsa_padding)  # type: ignore[arg-type]
    else:
        crl = builder.sign(issuer_key, choice.algorithm)  # type: ignore[arg-type]
    return crl.public_bytes(serialization.Encoding.DER)


def crl_to_pem(der: bytes) -> str:
    """PEM text of a DER CRL, trimmed like every PEM Vault returns in JSON."""
    body = base64.b64encode(der).decode()
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return "-----BEGIN X509 CRL-----\n" + "\n".join(lines) + "\n-----END X509 CRL-----"
