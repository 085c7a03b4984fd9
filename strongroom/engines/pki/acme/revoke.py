"""revokeCert (RFC 8555 §7.6) and renewal information (ARI, RFC 9773)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from strongroom.engines.pki import revocation, store
from strongroom.engines.pki.acme import jws, state
from strongroom.engines.pki.acme.context import Directory, Reply, verify_post
from strongroom.engines.pki.acme.problems import AcmeProblem
from strongroom.engines.pki.keys import public_key_der
from strongroom.logical.request import Request

if TYPE_CHECKING:
    from strongroom.engines.pki.backend import PkiBackend
    from strongroom.framework import FieldData

# RFC 5280 reason codes a subscriber may give; 7 is unused and 8 (removeFromCRL) is for delta CRLs
REASONS = frozenset({0, 1, 2, 3, 4, 5, 6, 9, 10})
ARI_RETRY_AFTER = 6 * 3600


async def _stored(backend: PkiBackend, cert: x509.Certificate) -> store.StoredCert:
    stored = await store.load_certificate(backend.storage, store.serial_to_str(cert.serial_number))
    der = cert.public_bytes(serialization.Encoding.DER)
    if stored is None or stored.der != der:
        raise AcmeProblem("malformed", "the certificate was not issued by this CA", status=404)
    return stored


async def _authorized_for_all(backend: PkiBackend, account_id: str, cert: x509.Certificate) -> bool:
    """RFC 8555 §7.6: an account holding valid authorizations for every name may revoke."""
    wanted: set[tuple[str, str]] = set()
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        wanted |= {("dns", n.lower().removeprefix("*.")) for n in san.get_values_for_type(x509.DNSName)}
        wanted |= {("ip", str(a)) for a in san.get_values_for_type(x509.IPAddress)}
    except x509.ExtensionNotFound:
        return False
    now = time.time()
    for authz_id in (await state.list_authz(backend.storage, account_id))[:1000]:
        authz = await state.load_authz(backend.storage, account_id, authz_id)
        if authz is not None and authz.effective_status(now) == "valid":
            wanted.discard((authz.identifier["type"], authz.identifier["value"]))
        if not wanted:
            return True
    return not wanted


async def revoke_cert(backend: PkiBackend, req: Request, d: FieldData, directory: Directory) -> Reply:
    signed = await verify_post(backend, req, directory, "revoke-cert", jwk_allowed=True, kid_allowed=True)
    payload = signed.payload()
    raw = payload.get("certificate")
    if not isinstance(raw, str):
        raise AcmeProblem("malformed", "certificate must be a base64url DER string")
    try:
        cert = x509.load_der_x509_certificate(jws.b64url_decode(raw))
    except ValueError:
        raise AcmeProblem("malformed", "the certificate cannot be parsed") from None
    reason = payload.get("reason", 0)
    if not isinstance(reason, int) or isinstance(reason, bool) or reason not in REASONS:
        raise AcmeProblem("badRevocationReason", "unsupported revocation reason code")
    await _stored(backend, cert)
    if signed.account is None:  # signed with the certificate's own key
        assert signed.request.jwk is not None
        if public_key_der(jws.public_key(signed.request.jwk)) != public_key_der(cert.public_key()):
            raise AcmeProblem("unauthorized", "the request is not signed by the certificate's key")
    else:
        serial = store.serial_to_str(cert.serial_number)
        owner = await backend.storage.get(state.CERT_OWNER + serial)
        owned = owner is not None and owner.decode() == signed.account.id
        if not owned and not await _authorized_for_all(backend, signed.account.id, cert):
            raise AcmeProblem("unauthorized", "this account may not revoke this certificate")
    serial = store.serial_to_str(cert.serial_number)
    if await revocation.load_revoked(backend.storage, serial) is not None:
        raise AcmeProblem("alreadyRevoked", "the certificate is already revoked")
    await revocation.revoke_certificate(backend.storage, revocation.manager_for(backend), cert)
    return Reply(None, 200)


# -- ARI --------------------------------------------------------------------------------------


def cert_id(cert: x509.Certificate) -> str:
    """RFC 9773 §4.1: base64url(AKI keyIdentifier) "." base64url(serial DER content)."""
    try:
        aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier or b""
    except (x509.ExtensionNotFound, ValueError):
        aki = b""  # no AKI: no certificate id matches it
    serial = cert.serial_number
    serial_bytes = serial.to_bytes((serial.bit_length() + 8) // 8, "big")
    return jws.b64url_encode(aki) + "." + jws.b64url_encode(serial_bytes)


async def renewal_info(backend: PkiBackend, req: Request, d: FieldData, directory: Directory) -> Reply:
    text = str(d["cert_id"])
    parts = text.split(".")
    if len(parts) != 2 or not all(parts):
        raise AcmeProblem("malformed", "a certificate id is base64url(AKI).base64url(serial)")
    aki, serial_bytes = jws.b64url_decode(parts[0]), jws.b64url_decode(parts[1])
    serial = int.from_bytes(serial_bytes, "big")
    stored = await store.load_certificate(backend.storage, store.serial_to_str(serial))
    if stored is None:
        raise AcmeProblem("malformed", "no certificate with this id was issued here", status=404)
    cert = stored.certificate
    if cert_id(cert) != text or not aki:
        raise AcmeProblem("malformed", "no certificate with this id was issued here", status=404)
    not_before = cert.not_valid_before_utc.timestamp()
    not_after = cert.not_valid_after_utc.timestamp()
    lifetime = max(1.0, not_after - not_before)
    now = time.time()
    if await revocation.load_revoked(backend.storage, store.serial_to_str(serial)) is not None:
        start, end = now - lifetime / 12, now  # renew at once
    else:
        start, end = not_before + lifetime * 2 / 3, not_before + lifetime * 5 / 6
    window = {"start": state.rfc3339(start), "end": state.rfc3339(end)}
    return Reply({"suggestedWindow": window}, retry_after=ARI_RETRY_AFTER)
