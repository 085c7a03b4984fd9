"""OCSP (RFC 6960) request parsing and response signing: pure functions, no storage.

The HTTP handler (``paths_revoke.py``) decodes the transport, asks
:func:`parse_request`, looks the serial up and calls :func:`build_response` or
:func:`unsuccessful`. Decisions made here, and why:

* **Never a 5xx for bad input.** Anything that does not parse — bad base64,
  bad DER, more than one request in the list (``cryptography`` refuses those,
  and Vault answers only the first anyway), an unknown hash — becomes an
  ``malformedRequest`` OCSP response (HTTP 400 like Vault), never an exception.
* **Issuer match on both hashes.** A request is answered for an issuer only when
  its issuer *name* hash and *key* hash (computed with the request's hash
  algorithm) both match one of the mount's issuers (CVE-2024-2660 is what
  happens when responses are not tied to the right issuer and serial).
* **Foreign issuer → unauthorized.** Vault answers ``unknown`` signed by the
  default issuer; but that signer is not the CA of the queried certificate, so a
  conforming client rejects it anyway. RFC 6960 §2.3 has ``unauthorized`` for
  "this responder cannot answer for that CA", which is what we send.
* **Nonce echoed.** Vault ignores the nonce (hashicorp/vault#29364); we copy it
  into the response so clients that demand replay protection work. RFC 8954
  §2.1: a nonce of 0 or more than 32 octets is refused with ``malformedRequest``
  (RFC 9654 later relaxed the upper bound; we keep 32 — every mainstream client
  sends 16 or 32 — which also keeps hostile requests small).
* **Signed by the issuer itself**, responder id by key hash (what Go's
  ``x/crypto/ocsp`` and so Vault send), no certificates embedded. RSA-PSS
  revocation signatures fall back to PKCS#1 v1.5 for OCSP, as Vault does.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import enum
import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import unquote

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509 import ocsp

from strongroom.engines.pki.crl import signature_choice

__all__ = [
    "CONTENT_TYPE",
    "MAX_NONCE_OCTETS",
    "MAX_REQUEST_SIZE",
    "CertState",
    "OcspIssuer",
    "OcspMalformed",
    "ParsedRequest",
    "build_response",
    "decode_get_segment",
    "issuer_hashes",
    "match_issuer",
    "parse_request",
    "unsuccessful",
]

CONTENT_TYPE = "application/ocsp-response"
REQUEST_CONTENT_TYPE = "application/ocsp-request"
MAX_REQUEST_SIZE = 2048  # Vault's limit: a simple request is under 100 bytes
MAX_NONCE_OCTETS = 32
_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    h.name: h for h in (hashes.SHA1, hashes.SHA224, hashes.SHA256, hashes.SHA384, hashes.SHA512)
}
MAX_SLASH_REPAIR = 8  # see decode_get_segment: at most 255 cheap tries


class OcspMalformed(Exception):
    """The request cannot be understood: answer ``malformedRequest``."""


class CertState(enum.Enum):
    GOOD = "good"
    REVOKED = "revoked"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class ParsedRequest:
    """The one CertID we answer for, plus the nonce to echo."""

    serial: int
    issuer_name_hash: bytes
    issuer_key_hash: bytes
    hash_algorithm: hashes.HashAlgorithm
    nonce: bytes | None


@dataclass(frozen=True, slots=True)
class OcspIssuer:
    """What the responder needs of one issuer of the mount."""

    issuer_id: str
    certificate: x509.Certificate
    private_key: CertificateIssuerPrivateKeyTypes | None
    can_sign: bool = True  # the issuer has the ocsp-signing usage
    revocation_sig_alg: str = ""


# -- transport ----------------------------------------------------------------------------


def _der_total_length(der: bytes) -> int | None:
    """Length a DER SEQUENCE claims (header included), or None if it does not look like one."""
    if len(der) < 2 or der[0] != 0x30:
        return None
    first = der[1]
    if first < 0x80:
        return 2 + first
    count = first & 0x7F
    if count == 0 or count > 4 or len(der) < 2 + count:
        return None
    return 2 + count + int.from_bytes(der[2 : 2 + count], "big")


def _b64_to_der(text: str) -> bytes | None:
    text = text.strip().replace(" ", "+")  # a form-decoding proxy may have turned + into space
    text = text.replace("-", "+").replace("_", "/")  # tolerate the URL-safe alphabet
    text += "=" * (-len(text) % 4)
    try:
        der = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    return der if _der_total_length(der) == len(der) else None


def decode_get_segment(segment: str) -> bytes:
    """DER request from the GET form ``ocsp/<base64>`` (RFC 6960 Appendix A.1).

    The value may still be percent-encoded (``%2B``, ``%2F``, ``%3D``) and may
    have lost its ``=`` padding. Our HTTP layer collapses empty path segments,
    so a ``//`` inside the base64 text reaches us as ``/``: when the text does
    not decode to a DER SEQUENCE of exactly the length it claims, we try
    re-doubling the slashes (bounded, cheap: only a length check per try).
    """
    if not segment or len(segment) >= 4 * MAX_REQUEST_SIZE:
        raise OcspMalformed("empty or oversized request")
    text = (unquote(segment) if "%" in segment else segment).strip()
    if len(text) >= MAX_REQUEST_SIZE * 4 // 3 + 4:
        raise OcspMalformed("request is too large")
    # '/' is a base64 letter, so a trailing one may be data: try the text as is first
    for candidate in dict.fromkeys((text, text.rstrip("/"))):
        der = _b64_to_der(candidate) or _repair_slashes(candidate)
        if der is not None:
            return der
    raise OcspMalformed("request is not base64 of a DER OCSP request")


def _repair_slashes(text: str) -> bytes | None:
    """Try re-doubling each subset of the slashes (at most 2**MAX_SLASH_REPAIR cheap tries)."""
    slashes = [i for i, ch in enumerate(text) if ch == "/"]
    if not 0 < len(slashes) <= MAX_SLASH_REPAIR:
        return None
    for mask in range(1, 1 << len(slashes)):
        pieces: list[str] = []
        last = 0
        for bit, pos in enumerate(slashes):
            if mask >> bit & 1:
                pieces.append(text[last:pos])
                pieces.append("/")
                last = pos
        pieces.append(text[last:])
        der = _b64_to_der("".join(pieces))
        if der is not None and _parses(der):  # a length match alone could be a wrong guess
            return der
    return None


def _parses(der: bytes) -> bool:
    try:
        ocsp.load_der_ocsp_request(der)
    except Exception:
        return False
    return True


# -- requests -----------------------------------------------------------------------------


def parse_request(der: bytes) -> ParsedRequest:
    """Parse one DER OCSPRequest, or raise :class:`OcspMalformed`."""
    if not der or len(der) >= MAX_REQUEST_SIZE:
        raise OcspMalformed("empty or oversized request")
    try:
        req = ocsp.load_der_ocsp_request(der)
        serial = req.serial_number
        name_hash = req.issuer_name_hash
        key_hash = req.issuer_key_hash
        algorithm = req.hash_algorithm
        extensions = req.extensions
    except Exception as err:  # cryptography raises ValueError and friends on bad DER
        raise OcspMalformed("request does not parse") from err
    if algorithm.name not in _HASHES:
        raise OcspMalformed("unsupported CertID hash algorithm")
    if algorithm.digest_size != len(name_hash) or algorithm.digest_size != len(key_hash):
        raise OcspMalformed("CertID hash lengths do not match the algorithm")
    nonce: bytes | None = None
    try:
        ext = extensions.get_extension_for_class(x509.OCSPNonce)
    except x509.ExtensionNotFound:
        pass
    except Exception as err:
        raise OcspMalformed("bad request extensions") from err
    else:
        nonce = ext.value.nonce
        if not 1 <= len(nonce) <= MAX_NONCE_OCTETS:
            raise OcspMalformed("nonce must be 1 to 32 octets (RFC 8954)")
    return ParsedRequest(serial, name_hash, key_hash, algorithm, nonce)


def _spki_bit_string(cert: x509.Certificate) -> bytes:
    """The subjectPublicKey BIT STRING contents (RFC 6960 key hash input), parsed from SPKI DER."""
    der = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )

    def header(at: int) -> tuple[int, int, int]:  # (tag, content start, content length)
        tag, first = der[at], der[at + 1]
        if first < 0x80:
            return tag, at + 2, first
        count = first & 0x7F
        return tag, at + 2 + count, int.from_bytes(der[at + 2 : at + 2 + count], "big")

    _, inner, _ = header(0)  # SubjectPublicKeyInfo SEQUENCE
    _, alg_start, alg_len = header(inner)  # AlgorithmIdentifier SEQUENCE
    tag, bits_start, bits_len = header(alg_start + alg_len)
    if tag != 0x03:
        raise ValueError("SubjectPublicKeyInfo without a BIT STRING")
    return der[bits_start + 1 : bits_start + bits_len]  # skip the unused-bits octet


def issuer_hashes(cert: x509.Certificate, algorithm: hashes.HashAlgorithm) -> tuple[bytes, bytes]:
    """(issuer name hash, issuer key hash) of ``cert`` as an OCSP CertID would carry them."""
    return _cached_hashes(cert, algorithm.name)


@functools.lru_cache(maxsize=256)
def _cached_hashes(cert: x509.Certificate, algorithm_name: str) -> tuple[bytes, bytes]:
    # every OCSP request hashes every issuer: cache per (certificate, hash algorithm)
    algorithm = _HASHES[algorithm_name]()
    name = hashes.Hash(algorithm)
    name.update(cert.subject.public_bytes())
    key = hashes.Hash(algorithm)
    key.update(_spki_bit_string(cert))
    return name.finalize(), key.finalize()


def match_issuer(req: ParsedRequest, issuers: Iterable[OcspIssuer]) -> tuple[OcspIssuer | None, bool]:
    """The issuer whose name and key hashes both match, and whether a match lacked signing rights.

    Like Vault, an issuer that matches but may not sign OCSP (no usage, no key)
    is skipped in favour of another match (a reissued CA with the same key);
    the flag lets the caller answer ``unauthorized`` when that was the only one.
    """
    matched_unusable = False
    for issuer in issuers:
        name_hash, key_hash = issuer_hashes(issuer.certificate, req.hash_algorithm)
        if name_hash != req.issuer_name_hash or key_hash != req.issuer_key_hash:
            continue
        if issuer.can_sign and issuer.private_key is not None:
            return issuer, False
        matched_unusable = True
    return None, matched_unusable


# -- responses ----------------------------------------------------------------------------


def unsuccessful(status: ocsp.OCSPResponseStatus) -> bytes:
    """An unsigned error response (malformedRequest, unauthorized, internalError ...)."""
    return ocsp.OCSPResponseBuilder.build_unsuccessful(status).public_bytes(serialization.Encoding.DER)


def _utc(moment: dt.datetime) -> dt.datetime:
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)


def build_response(
    *,
    issuer: OcspIssuer,
    req: ParsedRequest,
    state: CertState,
    now: dt.datetime,
    validity_seconds: int,
    revoked_at: dt.datetime | None = None,
    reason: x509.ReasonFlags | None = None,
    extra_certs: Sequence[x509.Certificate] = (),
) -> bytes:
    """A successful, signed BasicOCSPResponse for the request's single CertID.

    ``validity_seconds`` 0 omits NextUpdate (Vault's ``ocsp_expiry=0``).
    ``reason`` None omits revocationReason (Vault stores none).
    """
    if issuer.private_key is None:
        raise ValueError("issuer has no private key")
    this_update = _utc(now).replace(microsecond=0)
    next_update = this_update + dt.timedelta(seconds=validity_seconds) if validity_seconds > 0 else None
    status = {
        CertState.GOOD: ocsp.OCSPCertStatus.GOOD,
        CertState.REVOKED: ocsp.OCSPCertStatus.REVOKED,
        CertState.UNKNOWN: ocsp.OCSPCertStatus.UNKNOWN,
    }[state]
    builder = ocsp.OCSPResponseBuilder().add_response_by_hash(
        issuer_name_hash=req.issuer_name_hash,
        issuer_key_hash=req.issuer_key_hash,
        serial_number=req.serial,
        algorithm=req.hash_algorithm,
        cert_status=status,
        this_update=this_update,
        next_update=next_update,
        revocation_time=_utc(revoked_at or now).replace(microsecond=0)
        if state is CertState.REVOKED
        else None,
        revocation_reason=reason if state is CertState.REVOKED else None,
    )
    builder = builder.responder_id(ocsp.OCSPResponderEncoding.HASH, issuer.certificate)
    if extra_certs:
        builder = builder.certificates(list(extra_certs))
    if req.nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(req.nonce), critical=False)
    # OCSPResponseBuilder signs RSA with PKCS#1 v1.5 only: a PSS revocation algorithm keeps
    # its hash and loses the padding here, exactly Vault's downgrade for x/crypto/ocsp.
    choice = signature_choice(issuer.private_key, issuer.revocation_sig_alg)
    response = builder.sign(issuer.private_key, choice.algorithm)
    return response.public_bytes(serialization.Encoding.DER)
