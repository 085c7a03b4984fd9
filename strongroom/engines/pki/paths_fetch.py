"""Unauthenticated fetches of CA certificates, chains and stored certificates.

Raw bodies carry Vault's content types: DER certificates ``application/pkix-cert``,
PEM certificates ``application/pem-certificate-chain``; ``ca_chain`` keeps Vault's
quirk of a PEM chain labelled ``application/pkix-cert``. A raw fetch of something
missing answers 204 with an empty body, as Vault does.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives import serialization

from strongroom.engines.pki import store
from strongroom.framework import Field, FieldData, FieldType, Path, PathOperation
from strongroom.logical.errors import StrongroomError, UserError
from strongroom.logical.request import Operation, RawResponse, Request, Response
from strongroom.logical.storage import Storage, get_json

if TYPE_CHECKING:
    from strongroom.engines.pki.backend import PkiBackend

DER_CERT = "application/pkix-cert"
PEM_CHAIN = "application/pem-certificate-chain"
_SERIAL = r"[0-9A-Fa-f:\-]+"


def _raw(body: bytes, content_type: str) -> Response:
    return Response(raw=RawResponse(body=body, content_type=content_type, status=200 if body else 204))


class FetchPaths:
    def __init__(self, backend: PkiBackend) -> None:
        self.backend = backend

    @property
    def storage(self) -> Storage:
        return self.backend.storage

    async def _default_issuer(self) -> store.IssuerEntry:
        issuer_id = await store.resolve_issuer_ref(self.storage, store.DEFAULT_REF)
        entry = await store.fetch_issuer(self.storage, issuer_id)
        if entry is None:
            raise UserError("no default issuer currently configured")
        return entry

    @staticmethod
    def _chain_text(entry: store.IssuerEntry) -> str:
        chain = [c.strip() for c in entry.ca_chain] or [entry.certificate.strip()]
        return "\n".join(chain)

    # -- default CA ---------------------------------------------------------------------------

    async def ca(self, req: Request, d: FieldData) -> Response | None:
        """ca, ca/pem, cert/ca/raw, cert/ca/raw/pem: raw; an unset CA gives 204."""
        pem = req.path in ("ca/pem", "cert/ca/raw/pem")
        try:
            entry = await self._default_issuer()
        except UserError:
            return _raw(b"", PEM_CHAIN if pem else DER_CERT)
        cert = entry.cert()
        if pem:
            return _raw(store.cert_pem(cert).encode(), PEM_CHAIN)
        return _raw(cert.public_bytes(serialization.Encoding.DER), DER_CERT)

    async def ca_chain(self, req: Request, d: FieldData) -> Response | None:
        try:
            entry = await self._default_issuer()
        except UserError:
            if req.path == "ca_chain":
                return _raw(b"", DER_CERT)
            raise
        chain = self._chain_text(entry)
        if req.path == "ca_chain":
            return _raw(chain.encode(), DER_CERT)  # Vault labels this PEM chain as pkix-cert
        return Response(
            data={
                "certificate": chain,
                "revocation_time": 0,
                "revocation_time_rfc3339": "",
                "ca_chain": chain,
            }
        )

    async def cert_ca(self, req: Request, d: FieldData) -> Response | None:
        entry = await self._default_issuer()
        return Response(
            data={
                "certificate": store.cert_pem(entry.cert()),
                "revocation_time": 0,
                "revocation_time_rfc3339": "",
            }
        )

    # -- stored certificates ------------------------------------------------------------------

    async def _revocation(self, serial: str) -> dict[str, Any]:
        raw = await get_json(self.storage, f"revoked/{serial}")
        return raw if isinstance(raw, dict) else {}

    async def cert(self, req: Request, d: FieldData) -> Response | None:
        serial = str(d["serial"])
        if not serial:
            raise UserError("The serial number must be provided")
        stored = await store.load_certificate(self.storage, serial)
        if stored is None:
            return None
        revoked = await self._revocation(stored.serial)
        data: dict[str, Any] = {
            "certificate": stored.pem,
            "revocation_time": int(revoked.get("revocation_time", 0) or 0),
            "revocation_time_rfc3339": str(revoked.get("revocation_time_rfc3339", "") or ""),
        }
        issuer_id = str(revoked.get("issuer_id") or stored.issuer_id)
        if issuer_id:
            data["issuer_id"] = issuer_id
            issuer = await store.fetch_issuer(self.storage, issuer_id)
            if issuer is not None:
                data["ca_chain"] = self._chain_text(issuer)
        return Response(data=data)

    async def cert_raw(self, req: Request, d: FieldData) -> Response | None:
        pem = req.path.endswith("/pem")
        stored = await store.load_certificate(self.storage, str(d["serial"]))
        if stored is None:
            return _raw(b"", PEM_CHAIN if pem else DER_CERT)
        if pem:
            return _raw(stored.pem.encode(), PEM_CHAIN)
        return _raw(stored.der, DER_CERT)

    # -- per issuer ---------------------------------------------------------------------------

    async def issuer_fetch(self, req: Request, d: FieldData) -> Response | None:
        ref = str(d["issuer_ref"]).strip()
        if not ref:
            raise UserError("missing issuer reference")
        try:
            entry = await store.issuer_by_ref(self.storage, ref)
        except store.ReferenceNotFound as err:
            raise StrongroomError(*err.errors) from None  # Vault returns this as an internal error
        kind = req.path.rsplit("/", 1)[-1]
        if kind == "pem":
            return _raw(entry.certificate.encode(), PEM_CHAIN)
        if kind == "der":
            return _raw(entry.cert().public_bytes(serialization.Encoding.DER), DER_CERT)
        return Response(
            data={
                "certificate": entry.certificate,
                "ca_chain": list(entry.ca_chain),
                "issuer_id": entry.id,
                "issuer_name": entry.name,
            }
        )


def _hex_serial(path: Path) -> Path:
    """Restrict a ``{serial}`` capture to hex serials (``cert/crl`` etc. stay free for other modules)."""
    path.regex = re.compile(path.regex.pattern.replace(r"(?P<serial>[^/]+)", f"(?P<serial>{_SERIAL})"))
    return path


def paths(backend: PkiBackend) -> list[Path]:
    h = FetchPaths(backend)
    op = PathOperation
    serial = {"serial": Field(FieldType.STRING, "Certificate serial number, colon- or hyphen-separated hex.")}
    ref = {"issuer_ref": Field(FieldType.STRING, "Issuer id, name or default.", default="default")}

    def read(template: str, handler: Any, summary: str, fields: dict[str, Field] | None = None) -> Path:
        return Path(
            template,
            fields=fields or {},
            operations={Operation.READ: op(handler, summary)},
            synopsis="Fetch a CA, CA chain, or stored certificate.",
            unauthenticated=True,
        )

    return [
        read("ca", h.ca, "The default issuer's certificate (DER)."),
        read("ca/pem", h.ca, "The default issuer's certificate (PEM)."),
        read("ca_chain", h.ca_chain, "The default issuer's chain (PEM)."),
        read("cert/ca_chain", h.ca_chain, "The default issuer's chain (JSON)."),
        read("cert/ca", h.cert_ca, "The default issuer's certificate (JSON)."),
        read("cert/ca/raw", h.ca, "The default issuer's certificate (DER)."),
        read("cert/ca/raw/pem", h.ca, "The default issuer's certificate (PEM)."),
        _hex_serial(read("cert/{serial:segment}/raw", h.cert_raw, "A stored certificate (DER).", serial)),
        _hex_serial(read("cert/{serial:segment}/raw/pem", h.cert_raw, "A stored certificate (PEM).", serial)),
        _hex_serial(
            read("cert/{serial:segment}", h.cert, "A stored certificate and its revocation status.", serial)
        ),
        read("issuer/{issuer_ref}/json", h.issuer_fetch, "An issuer's certificate and chain (JSON).", ref),
        read("issuer/{issuer_ref}/der", h.issuer_fetch, "An issuer's certificate (DER).", ref),
        read("issuer/{issuer_ref}/pem", h.issuer_fetch, "An issuer's certificate (PEM).", ref),
    ]
