"""ACME request signatures (RFC 8555 §6.2) in the flattened JWS JSON serialization (RFC 7515 §7.2.2).

Every ACME POST is a JWS whose protected header names the key (``jwk`` for new accounts
and revocation by certificate key, ``kid`` for everything else), a single-use ``nonce``
and the ``url`` it was sent to. Parsing and verification are split because the path layer
must look the account up by ``kid`` between the two. The JWK checks also fix one textual
form per key (no leading zeros, fixed-length coordinates, canonical base64url), so a key
has exactly one RFC 7638 thumbprint and cannot register two accounts.

All cryptography is done by ``cryptography``; HMAC (external account binding) by ``hmac``.
Error texts never quote key material or payloads.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from strongroom.engines.pki.acme.problems import AcmeProblem

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | ed448.Ed448PublicKey

_HASHES: dict[str, Callable[[], hashes.HashAlgorithm]] = {
    "256": hashes.SHA256,
    "384": hashes.SHA384,
    "512": hashes.SHA512,
}
_EC_ALGS = {
    "ES256": ("P-256", hashes.SHA256),
    "ES384": ("P-384", hashes.SHA384),
    "ES512": ("P-521", hashes.SHA512),
}
SUPPORTED_ALGS: tuple[str, ...] = tuple(
    sorted([f"{family}{bits}" for family in ("RS", "PS") for bits in _HASHES] + [*_EC_ALGS, "EdDSA"])
)
_HMAC_ALGS: dict[str, Callable[[], Any]] = {
    "HS256": hashlib.sha256,
    "HS384": hashlib.sha384,
    "HS512": hashlib.sha512,
}

# curve name -> (cryptography curve, coordinate length in octets)
_CURVES: dict[str, tuple[ec.EllipticCurve, int]] = {
    "P-256": (ec.SECP256R1(), 32),
    "P-384": (ec.SECP384R1(), 48),
    "P-521": (ec.SECP521R1(), 66),
}
_OKP_LENGTHS = {"Ed25519": 32, "Ed448": 57}
_PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "oth", "k")
_RSA_MIN_BITS, _RSA_MAX_BITS = 2048, 8192
_RSA_MAX_EXPONENT_BITS = 64  # OpenSSL refuses larger public exponents for big moduli anyway
_B64URL = re.compile(r"[A-Za-z0-9_-]*")


def b64url_encode(data: bytes) -> str:
    """Base64url without padding (RFC 7515 §2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Strict base64url: no padding, only the URL-safe alphabet, canonical trailing bits.

    Canonical-only input means one byte string has one spelling, which keeps nonces and
    thumbprints unambiguous.
    """
    if not isinstance(text, str) or not _B64URL.fullmatch(text) or len(text) % 4 == 1:
        raise AcmeProblem("malformed", "invalid base64url encoding")
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise AcmeProblem("malformed", "invalid base64url encoding") from None
    if b64url_encode(data) != text:
        raise AcmeProblem("malformed", "invalid base64url encoding (non-canonical)")
    return data


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError("duplicate member")
        out[key] = value
    return out


def _no_constants(name: str) -> Any:
    raise ValueError("NaN and Infinity are not JSON")


def _json_object(raw: bytes, what: str) -> dict[str, Any]:
    """Strict JSON (UTF-8, no NaN/Infinity, no duplicate members) that must be an object."""
    try:
        value = json.loads(
            raw.decode("utf-8"), object_pairs_hook=_no_duplicates, parse_constant=_no_constants
        )
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise AcmeProblem("malformed", f"{what} is not valid JSON") from None
    if not isinstance(value, dict):
        raise AcmeProblem("malformed", f"{what} must be a JSON object")
    return value


def _unsupported_alg(alg: str, supported: tuple[str, ...] | list[str]) -> AcmeProblem:
    shown = alg if len(alg) <= 16 and alg.isprintable() else "this algorithm"
    return AcmeProblem(
        "badSignatureAlgorithm",
        f"JWS algorithm {shown!r} is not supported",
        extra={"algorithms": sorted(supported)},
    )


def _flattened(obj: Any, what: str) -> tuple[str, str, str]:
    """The three members of a flattened JWS: protected, payload, signature (still encoded)."""
    if not isinstance(obj, dict):
        raise AcmeProblem("malformed", f"{what} must be a JSON object")
    if "signatures" in obj:
        raise AcmeProblem("malformed", f"{what}: the general JWS serialization is not supported")
    if "header" in obj:
        raise AcmeProblem("malformed", f"{what}: unprotected JWS headers are not allowed")
    members = ("protected", "payload", "signature")
    if set(obj) != set(members):
        raise AcmeProblem("malformed", f"{what} must have exactly the members protected, payload, signature")
    if not all(isinstance(obj[m], str) for m in members):
        raise AcmeProblem("malformed", f"{what}: protected, payload and signature must be strings")
    return obj["protected"], obj["payload"], obj["signature"]


def _protected_header(encoded: str, what: str) -> dict[str, Any]:
    if not encoded:
        raise AcmeProblem("malformed", f"{what}: the protected header is missing")
    header = _json_object(b64url_decode(encoded), f"{what} protected header")
    if "crit" in header:
        raise AcmeProblem("malformed", f"{what}: critical JWS header extensions are not supported")
    if "b64" in header:
        raise AcmeProblem("malformed", f"{what}: the b64 header parameter is not supported")
    if not isinstance(header.get("alg"), str):
        raise AcmeProblem("malformed", f"{what}: the protected header has no alg")
    return header


@dataclass(frozen=True)
class JwsRequest:
    """A parsed, not yet verified ACME request."""

    protected: dict[str, Any]
    payload_raw: bytes  # decoded payload; b"" means POST-as-GET
    signing_input: bytes  # ASCII protected_b64 + "." + payload_b64
    signature: bytes
    alg: str
    nonce: str
    url: str
    jwk: dict[str, Any] | None  # exactly one of jwk / kid is set
    kid: str | None

    def is_post_as_get(self) -> bool:
        return self.payload_raw == b""

    def payload_json(self) -> dict[str, Any]:
        """The payload as a JSON object; an empty (POST-as-GET) payload is an error here."""
        if not self.payload_raw:
            raise AcmeProblem("malformed", "a JSON payload is required, not POST-as-GET")
        return _json_object(self.payload_raw, "JWS payload")


def parse(body: bytes, *, require_nonce: bool = True) -> JwsRequest:
    """Parse a flattened JWS request body and check its protected header (no signature check).

    ``require_nonce=False`` is for the inner JWS of a key change (RFC 8555 §7.3.5), which
    may omit the nonce; ``nonce`` is then ``""`` unless a string was sent.
    """
    try:
        text = body.decode("utf-8")
        obj = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise AcmeProblem("malformed", "request body is not valid JSON") from None
    protected_b64, payload_b64, signature_b64 = _flattened(obj, "JWS")
    header = _protected_header(protected_b64, "JWS")
    alg = header["alg"]
    if alg not in SUPPORTED_ALGS:
        raise _unsupported_alg(alg, SUPPORTED_ALGS)
    nonce, url = header.get("nonce"), header.get("url")
    if not isinstance(nonce, str) or not nonce:
        if require_nonce:
            raise AcmeProblem("malformed", "JWS protected header has no nonce")
        nonce = ""
    if not isinstance(url, str) or not url:
        raise AcmeProblem("malformed", "JWS protected header has no url")
    jwk, kid = header.get("jwk"), header.get("kid")
    if jwk is not None and kid is not None:
        raise AcmeProblem("malformed", "jwk and kid are mutually exclusive")
    if jwk is None and kid is None:
        raise AcmeProblem("malformed", "JWS protected header must have jwk or kid")
    if jwk is not None and not isinstance(jwk, dict):
        raise AcmeProblem("malformed", "JWS jwk must be a JSON object")
    if kid is not None and (not isinstance(kid, str) or not kid):
        raise AcmeProblem("malformed", "JWS kid must be a non-empty string")
    payload = b64url_decode(payload_b64)
    signature = b64url_decode(signature_b64)
    return JwsRequest(
        protected=header,
        payload_raw=payload,
        signing_input=f"{protected_b64}.{payload_b64}".encode("ascii"),
        signature=signature,
        alg=alg,
        nonce=nonce,
        url=url,
        jwk=jwk,
        kid=kid,
    )


def _member(jwk: dict[str, Any], name: str) -> bytes:
    value = jwk.get(name)
    if not isinstance(value, str):
        raise AcmeProblem("badPublicKey", f"JWK member {name!r} is missing or not a string")
    try:
        return b64url_decode(value)
    except AcmeProblem:
        raise AcmeProblem("badPublicKey", f"JWK member {name!r} is not valid base64url") from None


def _uint(jwk: dict[str, Any], name: str) -> int:
    raw = _member(jwk, name)
    if not raw or raw[0] == 0:
        raise AcmeProblem("badPublicKey", f"JWK member {name!r} must be a minimal unsigned integer")
    return int.from_bytes(raw, "big")


def public_key(jwk: dict[str, Any]) -> PublicKey:
    """The key a JWK describes, if it is an acceptable ACME account or signing key."""
    if not isinstance(jwk, dict):
        raise AcmeProblem("badPublicKey", "JWK must be a JSON object")
    if any(name in jwk for name in _PRIVATE_MEMBERS):
        raise AcmeProblem("badPublicKey", "JWK contains private key material")
    kty = jwk.get("kty")
    if kty == "RSA":
        n, e = _uint(jwk, "n"), _uint(jwk, "e")
        if not _RSA_MIN_BITS <= n.bit_length() <= _RSA_MAX_BITS:
            raise AcmeProblem("badPublicKey", f"RSA modulus must be {_RSA_MIN_BITS} to {_RSA_MAX_BITS} bits")
        if e < 3 or e % 2 == 0 or e.bit_length() > _RSA_MAX_EXPONENT_BITS or n % 2 == 0:
            raise AcmeProblem("badPublicKey", "unacceptable RSA public key")
        try:
            return rsa.RSAPublicNumbers(e, n).public_key()
        except (ValueError, UnsupportedAlgorithm):
            raise AcmeProblem("badPublicKey", "unacceptable RSA public key") from None
    if kty == "EC":
        crv = jwk.get("crv")
        if not isinstance(crv, str) or crv not in _CURVES:
            raise AcmeProblem("badPublicKey", "EC keys must use curve P-256, P-384 or P-521")
        curve, size = _CURVES[crv]
        x, y = _member(jwk, "x"), _member(jwk, "y")
        if len(x) != size or len(y) != size:
            raise AcmeProblem("badPublicKey", f"{crv} coordinates must be {size} octets")
        point = b"\x04" + x + y
        try:
            key = ec.EllipticCurvePublicKey.from_encoded_point(curve, point)
        except (ValueError, UnsupportedAlgorithm):
            raise AcmeProblem("badPublicKey", "EC point is not on the curve") from None
        # coordinates >= p would be another spelling of the same point (and another thumbprint)
        if (
            key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
            != point
        ):
            raise AcmeProblem("badPublicKey", "EC coordinates are not reduced")
        return key
    if kty == "OKP":
        crv = jwk.get("crv")
        if not isinstance(crv, str) or crv not in _OKP_LENGTHS:
            raise AcmeProblem("badPublicKey", "OKP keys must use curve Ed25519 or Ed448")
        x = _member(jwk, "x")
        if len(x) != _OKP_LENGTHS[crv]:
            raise AcmeProblem("badPublicKey", f"{crv} public keys are {_OKP_LENGTHS[crv]} octets")
        try:
            if crv == "Ed25519":
                return ed25519.Ed25519PublicKey.from_public_bytes(x)
            return ed448.Ed448PublicKey.from_public_bytes(x)
        except (ValueError, UnsupportedAlgorithm):
            raise AcmeProblem("badPublicKey", f"invalid {crv} public key") from None
    raise AcmeProblem("badPublicKey", "JWK key type must be RSA, EC or OKP")


def canonical_jwk(jwk: dict[str, Any]) -> dict[str, Any]:
    """Only the RFC 7638 required members, after checking the key (so one key, one form)."""
    public_key(jwk)
    names = {"RSA": ("e", "kty", "n"), "EC": ("crv", "kty", "x", "y"), "OKP": ("crv", "kty", "x")}[jwk["kty"]]
    return {name: jwk[name] for name in names}


def thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638 JWK thumbprint with SHA-256, base64url."""
    canonical = json.dumps(canonical_jwk(jwk), sort_keys=True, separators=(",", ":"))
    return b64url_encode(hashlib.sha256(canonical.encode("ascii")).digest())


def key_authorization(token: str, jwk: dict[str, Any]) -> str:
    """RFC 8555 §8.1: what a challenge response must contain (or hash) for ``token``."""
    return f"{token}.{thumbprint(jwk)}"


def _bad_signature() -> AcmeProblem:
    return AcmeProblem("malformed", "JWS verification error")


def verify(req: JwsRequest, jwk: dict[str, Any]) -> None:
    """Check ``req``'s signature with ``jwk`` (the request's own jwk or the account's)."""
    key = public_key(jwk)
    alg, data, sig = req.alg, req.signing_input, req.signature
    if alg not in SUPPORTED_ALGS:
        raise _unsupported_alg(alg, SUPPORTED_ALGS)
    try:
        if alg[:2] in ("RS", "PS"):
            if not isinstance(key, rsa.RSAPublicKey):
                raise AcmeProblem("badSignatureAlgorithm", f"{alg} requires an RSA key", extra=_algs())
            hash_cls = _HASHES[alg[2:]]
            digest = hash_cls()
            if alg.startswith("RS"):
                key.verify(sig, data, padding.PKCS1v15(), digest)
            else:  # RFC 7518 §3.5: MGF1 with the same hash, salt as long as the hash
                pss = padding.PSS(mgf=padding.MGF1(hash_cls()), salt_length=digest.digest_size)
                key.verify(sig, data, pss, digest)
        elif alg in _EC_ALGS:
            crv, hash_cls = _EC_ALGS[alg]
            if not isinstance(key, ec.EllipticCurvePublicKey) or jwk.get("crv") != crv:
                raise AcmeProblem("badSignatureAlgorithm", f"{alg} requires a {crv} key", extra=_algs())
            size = _CURVES[crv][1]
            if len(sig) != 2 * size:  # RFC 7518 §3.4: fixed-length r || s, not DER
                raise _bad_signature()
            r, s = int.from_bytes(sig[:size], "big"), int.from_bytes(sig[size:], "big")
            key.verify(encode_dss_signature(r, s), data, ec.ECDSA(hash_cls()))
        else:  # EdDSA (RFC 8037)
            if not isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
                raise AcmeProblem("badSignatureAlgorithm", "EdDSA requires an OKP key", extra=_algs())
            key.verify(sig, data)
    except (InvalidSignature, ValueError):  # ValueError: e.g. a signature longer than the modulus
        raise _bad_signature() from None


def _algs() -> dict[str, Any]:
    return {"algorithms": sorted(SUPPORTED_ALGS)}


def verify_eab(
    eab: Any,
    account_jwk: dict[str, Any],
    outer_url: str,
    hmac_key_for: Callable[[str], bytes | None],
) -> str:
    """Check a newAccount ``externalAccountBinding`` (RFC 8555 §7.3.4); return its key id.

    Header checks come first (cheap, no secrets), then the MAC, and only an authenticated
    payload is compared with the account key. Whether the EAB key may be used again is the
    caller's business.
    """
    what = "externalAccountBinding"
    protected_b64, payload_b64, signature_b64 = _flattened(eab, what)
    header = _protected_header(protected_b64, what)
    alg = header["alg"]
    if alg not in _HMAC_ALGS:
        raise _unsupported_alg(alg, list(_HMAC_ALGS))
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise AcmeProblem("malformed", f"{what}: the protected header needs a kid")
    if "nonce" in header:
        raise AcmeProblem("malformed", f"{what}: the protected header must not have a nonce")
    if "jwk" in header:
        raise AcmeProblem("malformed", f"{what}: the protected header must not have a jwk")
    if header.get("url") != outer_url:
        raise AcmeProblem("malformed", f"{what}: url does not match the outer JWS url")
    payload = b64url_decode(payload_b64)
    signature = b64url_decode(signature_b64)
    key = hmac_key_for(kid)
    if not key:
        raise AcmeProblem("unauthorized", "unknown external account binding key")
    expected = hmac.new(key, f"{protected_b64}.{payload_b64}".encode("ascii"), _HMAC_ALGS[alg]).digest()
    if not hmac.compare_digest(expected, signature):
        raise AcmeProblem("unauthorized", "external account binding signature is invalid")
    try:
        same = canonical_jwk(_json_object(payload, "EAB payload")) == canonical_jwk(account_jwk)
    except AcmeProblem:
        same = False
    if not same:
        raise AcmeProblem("malformed", "EAB payload does not match the account key")
    return kid
