"""The little of JOSE identity tokens need: key pairs, JWKs, and compact JWS sign / verify.

Written on ``cryptography`` rather than adding PyJWT as a dependency: identity tokens
only ever use Vault's seven algorithms (RS/ES 256/384/512 and EdDSA), and both ends —
signing and introspection — are ours. ECDSA signatures are the fixed-length ``r || s``
JWS expects, not DER.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

ALGORITHMS = ("RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "EdDSA")

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey

_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "256": hashes.SHA256,
    "384": hashes.SHA384,
    "512": hashes.SHA512,
}
_CURVES: dict[str, tuple[ec.EllipticCurve, str, int]] = {
    "ES256": (ec.SECP256R1(), "P-256", 32),
    "ES384": (ec.SECP384R1(), "P-384", 48),
    "ES512": (ec.SECP521R1(), "P-521", 66),
}
_CURVE_BY_NAME = {name: (curve, size) for curve, name, size in _CURVES.values()}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _int_b64(value: int, size: int = 0) -> str:
    return b64url(value.to_bytes(size or max(1, (value.bit_length() + 7) // 8), "big"))


def _b64_int(text: str) -> int:
    return int.from_bytes(b64url_decode(text), "big")


def generate(algorithm: str) -> PrivateKey:
    if algorithm.startswith("RS"):
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if algorithm in _CURVES:
        return ec.generate_private_key(_CURVES[algorithm][0])
    if algorithm == "EdDSA":
        return ed25519.Ed25519PrivateKey.generate()
    raise ValueError(f"unknown signing algorithm {algorithm!r}")


def private_pem(key: PrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def load_private(pem: str) -> PrivateKey:
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey):
        raise ValueError("unsupported key type")
    return key


def public_jwk(key: PrivateKey, kid: str, algorithm: str) -> dict[str, Any]:
    """The public half as a JWK (what ``.well-known/keys`` publishes)."""
    public = key.public_key()
    jwk: dict[str, Any] = {"use": "sig", "kid": kid, "alg": algorithm}
    if isinstance(public, rsa.RSAPublicKey):
        numbers = public.public_numbers()
        jwk.update(kty="RSA", n=_int_b64(numbers.n), e=_int_b64(numbers.e))
    elif isinstance(public, ec.EllipticCurvePublicKey):
        _, crv, size = _CURVES[algorithm]
        point = public.public_numbers()
        jwk.update(kty="EC", crv=crv, x=_int_b64(point.x, size), y=_int_b64(point.y, size))
    else:
        raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        jwk.update(kty="OKP", crv="Ed25519", x=b64url(raw))
    return jwk


def _public_from_jwk(jwk: dict[str, Any]) -> PublicKey:
    kty = jwk.get("kty")
    if kty == "RSA":
        return rsa.RSAPublicNumbers(_b64_int(jwk["e"]), _b64_int(jwk["n"])).public_key()
    if kty == "EC":
        curve, _ = _CURVE_BY_NAME[jwk["crv"]]
        return ec.EllipticCurvePublicNumbers(_b64_int(jwk["x"]), _b64_int(jwk["y"]), curve).public_key()
    if kty == "OKP" and jwk.get("crv") == "Ed25519":
        return ed25519.Ed25519PublicKey.from_public_bytes(b64url_decode(jwk["x"]))
    raise ValueError("unsupported JWK")


def sign(key: PrivateKey, algorithm: str, kid: str, claims: dict[str, Any]) -> str:
    """A compact JWS of ``claims``."""
    header = {"alg": algorithm, "kid": kid}
    signing_input = (
        b64url(json.dumps(header, separators=(",", ":")).encode())
        + "."
        + b64url(json.dumps(claims, separators=(",", ":")).encode())
    ).encode()
    if isinstance(key, rsa.RSAPrivateKey):
        signature = key.sign(signing_input, padding.PKCS1v15(), _HASHES[algorithm[2:]]())
    elif isinstance(key, ec.EllipticCurvePrivateKey):
        _, _, size = _CURVES[algorithm]
        r, s = decode_dss_signature(key.sign(signing_input, ec.ECDSA(_HASHES[algorithm[2:]]())))
        signature = r.to_bytes(size, "big") + s.to_bytes(size, "big")
    else:
        signature = key.sign(signing_input)
    return signing_input.decode() + "." + b64url(signature)


def _check(public: PublicKey, algorithm: str, signing_input: bytes, signature: bytes) -> bool:
    try:
        if isinstance(public, rsa.RSAPublicKey) and algorithm.startswith("RS"):
            public.verify(signature, signing_input, padding.PKCS1v15(), _HASHES[algorithm[2:]]())
        elif isinstance(public, ec.EllipticCurvePublicKey) and algorithm in _CURVES:
            size = _CURVES[algorithm][2]
            if len(signature) != 2 * size:
                return False
            der = encode_dss_signature(
                int.from_bytes(signature[:size], "big"), int.from_bytes(signature[size:], "big")
            )
            public.verify(der, signing_input, ec.ECDSA(_HASHES[algorithm[2:]]()))
        elif isinstance(public, ed25519.Ed25519PublicKey) and algorithm == "EdDSA":
            public.verify(signature, signing_input)
        else:
            return False
    except (InvalidSignature, ValueError):
        return False
    return True


class MalformedToken(ValueError):
    pass


def verify(token: str, jwks: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The claims of ``token`` if one of ``jwks`` signed it, else None.

    Raises :class:`MalformedToken` when the token is not a compact JWS at all. The
    algorithm must match the key's own ``alg``, so a token cannot pick a weaker one.
    """
    parts = token.split(".")
    if len(parts) != 3:
        raise MalformedToken("compact JWS format must have three parts")
    try:
        header = json.loads(b64url_decode(parts[0]))
        claims = json.loads(b64url_decode(parts[1]))
        signature = b64url_decode(parts[2])
    except ValueError:
        raise MalformedToken("token is not valid base64url-encoded JSON") from None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise MalformedToken("token header and claims must be JSON objects")
    algorithm = header.get("alg")
    signing_input = (parts[0] + "." + parts[1]).encode()
    for jwk in jwks:
        if header.get("kid") and jwk.get("kid") != header["kid"]:
            continue
        if jwk.get("alg") != algorithm:
            continue
        try:
            public = _public_from_jwk(jwk)
        except (KeyError, ValueError):
            continue
        if _check(public, str(algorithm), signing_input, signature):
            return claims
    return None
