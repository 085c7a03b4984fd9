"""Private keys for the PKI engine: generation, import, export and signature choices.

Pure functions over ``cryptography`` objects; nothing here touches storage or logs
key material. RSA generation is slow, so callers on the event loop use
:func:`generate_key_async`.
"""

from __future__ import annotations

import asyncio
import base64
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    CertificatePublicKeyTypes,
    PrivateKeyTypes,
    PublicKeyTypes,
)

from strongroom.logical.errors import UserError

RSA_BITS = (2048, 3072, 4096, 8192)
EC_BITS = (224, 256, 384, 521)
_CURVES: dict[int, ec.EllipticCurve] = {
    224: ec.SECP224R1(),
    256: ec.SECP256R1(),
    384: ec.SECP384R1(),
    521: ec.SECP521R1(),
}
_HASHES: dict[int, type[hashes.HashAlgorithm]] = {256: hashes.SHA256, 384: hashes.SHA384, 512: hashes.SHA512}

PrivateKey = CertificateIssuerPrivateKeyTypes


def default_bits(key_type: str, key_bits: int) -> int:
    """Vault's key_bits=0 default: RSA 2048, EC P-256, Ed25519 0."""
    if key_bits:
        return key_bits
    return {"rsa": 2048, "ec": 256}.get(key_type, 0)


def validate_key_params(key_type: str, key_bits: int) -> int:
    """Check a (key_type, key_bits) pair the way Vault does; return the effective bits."""
    bits = default_bits(key_type, key_bits)
    if key_type == "rsa":
        if bits not in RSA_BITS:
            raise UserError(f"unsupported bit length for RSA key: {bits}")
    elif key_type == "ec":
        if bits not in EC_BITS:
            raise UserError(f"unsupported bit length for EC key: {bits}")
    elif key_type == "ed25519":
        bits = 0
    else:
        raise UserError(f"unknown key type: {key_type}")
    return bits


def generate_key(key_type: str, key_bits: int = 0) -> PrivateKey:
    """Generate a private key (blocking; RSA can take tens of milliseconds)."""
    bits = validate_key_params(key_type, key_bits)
    if key_type == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=bits)
    if key_type == "ec":
        return ec.generate_private_key(_CURVES[bits])
    return ed25519.Ed25519PrivateKey.generate()


async def generate_key_async(key_type: str, key_bits: int = 0) -> PrivateKey:
    """Generate a key; RSA (tens of ms) off the event loop, EC and Ed25519 (µs) inline.

    A thread hand-off costs far more than an EC key, and RSA key generation releases
    the GIL, so only RSA is worth moving to a thread.
    """
    validate_key_params(key_type, key_bits)
    if key_type == "rsa":
        return await asyncio.to_thread(generate_key, key_type, key_bits)
    return generate_key(key_type, key_bits)


def key_type_name(key: PrivateKeyTypes | PublicKeyTypes) -> str:
    """Vault's private_key_type name: rsa, ec or ed25519."""
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        return "rsa"
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        return "ec"
    if isinstance(key, ed25519.Ed25519PrivateKey | ed25519.Ed25519PublicKey):
        return "ed25519"
    raise UserError("unsupported key type")


def key_bits_of(key: PrivateKeyTypes | PublicKeyTypes) -> int:
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        return key.key_size
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        return key.curve.key_size
    return 0


def _as_issuer_key(key: PrivateKeyTypes) -> PrivateKey:
    if isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey):
        return key
    raise UserError("unsupported private key type; expected an RSA, EC or Ed25519 key")


def load_private_key(data: bytes | str) -> PrivateKey:
    """Parse an unencrypted PEM (PKCS#1, SEC1 or PKCS#8) or DER private key."""
    raw = data.encode() if isinstance(data, str) else data
    try:
        if raw.lstrip().startswith(b"-----"):
            key = serialization.load_pem_private_key(raw, password=None)
        else:
            key = serialization.load_der_private_key(raw, password=None)
    except (ValueError, TypeError):
        raise UserError("unable to parse the private key (only unencrypted keys are supported)") from None
    return _as_issuer_key(key)


def private_key_pkcs8_pem(key: PrivateKey) -> str:
    """The storage form: PKCS#8 PEM."""
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def export_private_key(key: PrivateKey, private_key_format: str = "der", fmt: str = "pem") -> str:
    """The ``private_key`` response value.

    ``private_key_format`` ``der``/``pem``/"" gives PKCS#1 or SEC1 (Ed25519 is always
    PKCS#8); ``pkcs8`` gives ``PRIVATE KEY``. ``fmt=der`` base64-encodes the DER.
    """
    traditional = private_key_format != "pkcs8" and not isinstance(key, ed25519.Ed25519PrivateKey)
    form = (
        serialization.PrivateFormat.TraditionalOpenSSL if traditional else serialization.PrivateFormat.PKCS8
    )
    if fmt == "der":
        der = key.private_bytes(serialization.Encoding.DER, form, serialization.NoEncryption())
        return base64.b64encode(der).decode()
    return key.private_bytes(serialization.Encoding.PEM, form, serialization.NoEncryption()).decode().strip()


def public_key_der(key: PrivateKeyTypes | PublicKeyTypes) -> bytes:
    """SubjectPublicKeyInfo DER, for comparing keys."""
    pub = key.public_key() if hasattr(key, "public_key") else key
    return pub.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def same_public_key(a: PrivateKeyTypes | PublicKeyTypes, b: PrivateKeyTypes | PublicKeyTypes) -> bool:
    return public_key_der(a) == public_key_der(b)


@dataclass(frozen=True)
class SignatureChoice:
    """What to pass to ``CertificateBuilder.sign`` / ``CertificateSigningRequestBuilder.sign``."""

    algorithm: hashes.HashAlgorithm | None
    rsa_padding: padding.PSS | padding.PKCS1v15 | None = None


def signature_choice(key: PrivateKey, signature_bits: int = 0, use_pss: bool = False) -> SignatureChoice:
    """Pick the hash from signature_bits (0 = automatic) and the RSA padding from use_pss."""
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return SignatureChoice(None)
    if signature_bits and signature_bits not in _HASHES:
        raise UserError(f"unsupported signature_bits: {signature_bits}")
    if isinstance(key, ec.EllipticCurvePrivateKey):
        if not signature_bits:
            signature_bits = {384: 384, 521: 512}.get(key.curve.key_size, 256)
        return SignatureChoice(_HASHES[signature_bits]())
    algorithm = _HASHES[signature_bits or 256]()
    if use_pss:
        pss = padding.PSS(mgf=padding.MGF1(algorithm), salt_length=padding.PSS.DIGEST_LENGTH)
        return SignatureChoice(algorithm, pss)
    return SignatureChoice(algorithm, padding.PKCS1v15())


def sign_certificate(
    builder: x509.CertificateBuilder, key: PrivateKey, signature_bits: int = 0, use_pss: bool = False
) -> x509.Certificate:
    choice = signature_choice(key, signature_bits, use_pss)
    if choice.rsa_padding is not None:
        return builder.sign(key, choice.algorithm, rsa_padding=choice.rsa_padding)  # type: ignore[arg-type]
    return builder.sign(key, choice.algorithm)  # type: ignore[arg-type]


def sign_csr(
    builder: x509.CertificateSigningRequestBuilder,
    key: PrivateKey,
    signature_bits: int = 0,
    use_pss: bool = False,
) -> x509.CertificateSigningRequest:
    choice = signature_choice(key, signature_bits, use_pss)
    if choice.rsa_padding is not None:
        return builder.sign(key, choice.algorithm, rsa_padding=choice.rsa_padding)  # type: ignore[arg-type]
    return builder.sign(key, choice.algorithm)  # type: ignore[arg-type]


def certificate_public_key(cert: x509.Certificate) -> CertificatePublicKeyTypes:
    return cert.public_key()
