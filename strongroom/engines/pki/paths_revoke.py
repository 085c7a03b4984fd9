"""Revocation paths: revoke, CRL fetch/rotate/config, OCSP, and the certificate listings.

Vault's texts are kept for every error a client may match on. The CRL and OCSP
paths need no token (Vault's PathsSpecial). Where we differ from Vault, and why:

* OCSP for an issuer this mount does not hold answers ``unknown`` signed by the
  default issuer, as Vault does (an issuer of ours that may not sign OCSP answers
  ``unauthorized``), and the nonce
  is echoed.
* A fetched CRL is rebuilt first when a revocation is still owed (``auto_rebuild``
  defers rebuilding to a background task) or when it is past its NextUpdate.
* A stored certificate with the same serial but different bytes is a 400 (bad
  input), not a 500.
"""

from __future__ import annotations

import base64
import datetime as dt
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509 import ocsp as x509_ocsp

from strongroom.durations import parse_duration
from strongroom.engines.pki import ocsp, revocation, store
from strongroom.engines.pki.crl import crl_to_pem
from strongroom.engines.pki.keys import load_private_key, public_key_der
from strongroom.framework import Field, FieldData, FieldType, Path, PathOperation
from strongroom.logical.errors import UserError
from strongroom.logical.request import Operation, RawResponse, Request, Response
from strongroom.logical.storage import Storage

if TYPE_CHECKING:
    from strongroom.engines.pki.backend import PkiBackend

CRL_DER = "application/pkix-crl"
PEM_FILE = "application/x-pem-file"
FOREIGN_CERT = (
    "unable to verify signature on presented cert from any present issuer in this mount; certificates from "
    "previous CAs will need to have their issuing CA and key re-imported if revocation is necessary"
)
_CONFIG_DURATIONS = ("expiry", "auto_rebuild_grace_period", "delta_rebuild_interval")


def _paging(d: FieldData) -> tuple[str, int]:
    after = str(d["after"] or "").strip().lower().replace("-", ":")
    limit = int(d["limit"] or 0)
    if limit < 0:
        raise UserError("limit must be a non-negative integer")
    return after, limit


class RevokePaths:
    """Handlers over one backend; ``storage`` is the mount's view."""

    def __init__(self, backend: PkiBackend) -> None:
        self.backend = backend
        self.manager = revocation.manager_for(backend)
        self._ocsp_cache: tuple[object, list[ocsp.OcspIssuer]] | None = None
        self._config_cache: tuple[int, revocation.CrlConfig, int] | None = None

    def storage(self, req: Request) -> Storage:
        return req.storage or self.backend.storage

    # -- revoke -----------------------------------------------------------------------------

    async def _cert_from_pem(self, storage: Storage, pem: str) -> tuple[x509.Certificate, bool, str]:
        """(certificate, must be stored, issuer id) for a BYOC revocation (Vault's checks)."""
        if len(pem) < 75:
            raise UserError(
                "provided certificate data was too short; perhaps a path was passed to the API rather "
                "than the contents of a PEM file"
            )
        if "-----BEGIN" not in pem:
            raise UserError("certificate contains no PEM data")
        try:
            cert = x509.load_pem_x509_certificate(pem.strip().encode())
        except ValueError as err:
            raise UserError(f"certificate could not be parsed: {err}") from None
        if cert.serial_number <= 0:
            raise UserError("invalid serial number on presented certificate")
        stored = await store.load_certificate(storage, store.serial_to_str(cert.serial_number))
        if stored is not None:
            if stored.certificate != cert:
                raise UserError(
                    "certificate with same serial but unequal value already present in this cluster's "
                    "storage; refusing to revoke"
                )
            return stored.certificate, False, stored.issuer_id
        issuer_id = await revocation.find_issuer_of(storage, cert)
        if not issuer_id:
            raise UserError(FOREIGN_CERT)
        return cert, True, issuer_id

    @staticmethod
    def _check_key(cert: x509.Certificate, key_pem: str) -> None:
        if "-----BEGIN" not in key_pem:
            raise UserError("provided key PEM block contained no data or failed to parse")
        try:
            key = load_private_key(key_pem.strip())
        except UserError as err:
            raise UserError(f"failed to parse provided private key: {err}") from None
        if _key_kind(key.public_key()) != _key_kind(cert.public_key()):
            raise UserError("provided private key type does not match certificate's public key type")
        if public_key_der(key) != public_key_der(cert.public_key()):
            raise UserError("provided private key does not match certificate's public key")

    async def revoke(self, req: Request, d: FieldData) -> Response | None:
        storage = self.storage(req)
        serial, have_serial = d.get_ok("serial_number")
        pem, have_cert = d.get_ok("certificate")
        if not have_serial and not have_cert:
            raise UserError("The serial number or certificate to revoke must be provided.")
        if have_serial and have_cert:
            raise UserError("Must provide either the certificate or the serial to revoke; not both.")
        key_pem = ""
        if req.path == "revoke-with-key":
            key_pem, have_key = d.get_ok("private_key")
            if not have_key:
                raise UserError("Must have private key to revoke via the /revoke-with-key path.")
            if len(key_pem) < 64:
                raise UserError(
                    "Provided data for private_key was too short; perhaps a path was passed to the API "
                    "rather than the contents of a PEM file?"
                )
        if have_cert:
            cert, write, issuer_id = await self._cert_from_pem(storage, str(pem))
        else:
            if not str(serial).strip():
                raise UserError("The serial number must be provided")
            stored = await store.load_certificate(storage, str(serial))
            if stored is None:
                raise UserError(f"certificate with serial {serial} not found.")
            cert, write, issuer_id = stored.certificate, False, stored.issuer_id
        if key_pem:
            self._check_key(cert, str(key_pem))
        if write:  # only after the key check: never litter storage for a failed proof
            await store.store_certificate(storage, cert, issuer_id)
        return await revocation.revoke_certificate(storage, self.manager, cert, issuer_id)

    # -- CRLs -------------------------------------------------------------------------------

    async def _issuer_id(self, storage: Storage, ref: str) -> str:
        return await store.resolve_issuer_ref(storage, ref or store.DEFAULT_REF)

    async def _crl(self, req: Request, ref: str, *, delta: bool) -> bytes:
        storage = self.storage(req)
        try:
            issuer_id = await self._issuer_id(storage, ref)
        except store.ReferenceNotFound:
            if ref:
                raise
            return b""  # legacy paths with no default issuer: nothing to serve
        return await revocation.crl_der(storage, self.manager, issuer_id, delta=delta)

    def fetch(self, *, delta: bool, form: str, per_issuer: bool) -> Any:
        async def handler(req: Request, d: FieldData) -> Response | None:
            der = await self._crl(req, str(d["issuer_ref"]) if per_issuer else "", delta=delta)
            pem = crl_to_pem(der) + "\n" if der else ""
            if form == "json":
                return Response(data={"crl": pem})
            if form == "cert-json":  # cert/crl: the legacy shape of cert/<serial>
                return Response(
                    data={"certificate": pem, "revocation_time": 0, "revocation_time_rfc3339": ""}
                )
            if form == "pem":
                return Response(raw=RawResponse(pem.encode(), PEM_FILE, 200 if pem else 204))
            return Response(raw=RawResponse(der, CRL_DER, 200 if der else 204))

        return handler

    async def rotate(self, req: Request, d: FieldData) -> Response | None:
        try:
            warnings = await revocation.rebuild(self.storage(req), self.manager)
        except UserError as err:
            raise UserError(f"Error during CRL building: {err}") from None
        resp = Response(data={"success": True})
        for number, warning in enumerate(warnings, 1):
            resp.add_warning(f"Warning {number} during CRL rebuild: {warning}")
        return resp

    async def rotate_delta(self, req: Request, d: FieldData) -> Response | None:
        storage = self.storage(req)
        config = await revocation.load_config(storage)
        try:
            warnings = await revocation.rebuild_delta(storage, self.manager)
        except UserError as err:
            raise UserError(f"Error during delta CRL building: {err}") from None
        resp = Response(data={"success": True})
        resp.warnings.extend(warnings)
        if not config.enable_delta:
            resp.add_warning("requested rebuild of delta CRL when delta CRL is not enabled; this is a no-op")
        return resp

    async def read_config(self, req: Request, d: FieldData) -> Response | None:
        return Response(data=(await revocation.load_config(self.storage(req))).to_json())

    async def write_config(self, req: Request, d: FieldData) -> Response | None:
        storage = self.storage(req)
        config = await revocation.load_config(storage)
        old = revocation.CrlConfig(**config.to_json())
        for name in ("expiry", "ocsp_expiry", *_CONFIG_DURATIONS[1:]):
            value, sent = d.get_ok(name)
            if not sent:
                continue
            try:
                seconds = parse_duration(str(value))
            except ValueError as err:
                raise UserError(f"given {name} could not be decoded: {err}") from None
            if name == "ocsp_expiry" and seconds < 0:
                raise UserError(f"ocsp_expiry must be greater than or equal to 0 got: {value}")
            setattr(config, name, str(value))
        for name in ("disable", "ocsp_disable", "auto_rebuild", "enable_delta"):
            value, sent = d.get_ok(name)
            if sent:
                setattr(config, name, bool(value))
        expiry = config.seconds("expiry")
        if config.auto_rebuild and config.seconds("auto_rebuild_grace_period") >= expiry:
            raise UserError(
                f"CRL auto-rebuilding grace period ({config.auto_rebuild_grace_period}) must be strictly "
                f"shorter than CRL expiry ({config.expiry}) value when auto-rebuilding of CRLs is enabled"
            )
        if config.enable_delta and config.seconds("delta_rebuild_interval") >= expiry:
            raise UserError(
                f"CRL delta rebuild window ({config.delta_rebuild_interval}) must be strictly shorter than "
                f"CRL expiry ({config.expiry}) value when delta CRLs are enabled"
            )
        if config.enable_delta and not config.auto_rebuild:
            raise UserError(
                "Delta CRLs cannot be enabled when auto rebuilding is disabled as the complete CRL is "
                "always regenerated!"
            )
        await revocation.save_config(storage, config)
        self._config_cache = None
        core = getattr(self.backend, "core", None)
        if core is not None:
            core.engine_changed()  # every worker re-reads config/crl before its next OCSP answer
        resp = Response(data=config.to_json())
        if (
            old.disable != config.disable
            or (old.auto_rebuild and not config.auto_rebuild)
            or old.enable_delta != config.enable_delta
        ):
            try:
                warnings = await revocation.rebuild(storage, self.manager, force=True)
            except UserError as err:
                raise UserError(f"Error during CRL building: {err}") from None
            for number, warning in enumerate(warnings, 1):
                resp.add_warning(f"Warning {number} during CRL rebuild: {warning}")
        if config.auto_rebuild:
            self.manager.ensure_ticking()
        return resp

    # -- OCSP -------------------------------------------------------------------------------

    async def _ocsp_config(self, storage: Storage) -> tuple[revocation.CrlConfig, int]:
        """config/crl and its ocsp_expiry in seconds, cached until any process changes engine state.

        Every write of config/crl (:meth:`write_config`) calls ``core.engine_changed()``,
        which every worker of the node sees before its next request (the role cache's
        mechanism). Without a core there is no such signal, so nothing is cached.
        """
        core = getattr(self.backend, "core", None)
        generation = int(core.engine_generation()) if core is not None else None
        cached = self._config_cache
        if cached is not None and generation is not None and cached[0] == generation:
            return cached[1], cached[2]
        config = await revocation.load_config(storage)
        expiry = config.seconds("ocsp_expiry")
        if generation is not None:
            self._config_cache = (generation, config, expiry)
        return config, expiry

    async def _ocsp_issuers(self, storage: Storage) -> list[ocsp.OcspIssuer]:
        """The mount's issuers as the responder sees them.

        Cached on the issuer cache's version: dropped at once when this process changes
        issuers, and within a second of a change made by another process (the
        issuer cache's own re-check of ``config/issuers-generation``, as for issuance).
        Without an issuer cache, the generation is read per request.
        """
        cache = store.cache_for(storage)
        version: object
        if cache is not None:
            await cache.refresh(storage)
            version = ("cache", cache.version)
        else:
            version = ("generation", await store.read_generation(storage))
        if self._ocsp_cache is not None and self._ocsp_cache[0] == version:
            return self._ocsp_cache[1]
        out: list[ocsp.OcspIssuer] = []
        for entry in await store.list_issuers(storage):
            key = None
            if entry.key_id:
                try:
                    key = (await store.load_signing_issuer(storage, entry.id)).private_key
                except UserError:
                    key = None
            out.append(
                ocsp.OcspIssuer(
                    entry.id,
                    entry.cert(),
                    key,
                    "ocsp-signing" in entry.usage,
                    entry.revocation_signature_algorithm,
                )
            )
        self._ocsp_cache = (version, out)
        return out

    @staticmethod
    def _ocsp_error(status: x509_ocsp.OCSPResponseStatus, http: int) -> Response:
        return Response(raw=RawResponse(ocsp.unsuccessful(status), ocsp.CONTENT_TYPE, http))

    async def ocsp_query(self, req: Request, d: FieldData) -> Response | None:
        try:
            return await self._ocsp(req, d)
        except Exception:  # an OCSP client gets an OCSP answer, never an HTML/JSON 500
            revocation.log.exception("OCSP internal error")
            return self._ocsp_error(x509_ocsp.OCSPResponseStatus.INTERNAL_ERROR, 500)

    async def _ocsp(self, req: Request, d: FieldData) -> Response:
        storage = self.storage(req)
        config, ocsp_expiry = await self._ocsp_config(storage)
        if config.ocsp_disable:
            return self._ocsp_error(x509_ocsp.OCSPResponseStatus.UNAUTHORIZED, 401)
        try:
            if req.operation == Operation.READ:
                der = ocsp.decode_get_segment(str(d["req"]))
            else:
                der = _post_body(req)
            parsed = ocsp.parse_request(der)
        except ocsp.OcspMalformed:
            return self._ocsp_error(x509_ocsp.OCSPResponseStatus.MALFORMED_REQUEST, 400)
        issuers = await self._ocsp_issuers(storage)
        issuer, unusable = ocsp.match_issuer(parsed, issuers)
        if issuer is None and not unusable:
            # a CA this mount does not hold: "unknown", signed by the default issuer, as
            # Vault answers (RFC 6960 §2.2: the responder does not know the certificate)
            default_id = (await store.get_issuers_config(storage)).default
            default = next((i for i in issuers if i.issuer_id == default_id), None)
            if default is None or default.private_key is None or not default.can_sign:
                return self._ocsp_error(x509_ocsp.OCSPResponseStatus.UNAUTHORIZED, 401)
            body = ocsp.build_response(
                issuer=default,
                req=parsed,
                state=ocsp.CertState.UNKNOWN,
                now=dt.datetime.fromtimestamp(revocation.now(), dt.UTC),
                validity_seconds=ocsp_expiry,
            )
            return Response(raw=RawResponse(body, ocsp.CONTENT_TYPE, 200))
        if issuer is None:  # ours, but without the ocsp-signing usage or a key
            return self._ocsp_error(x509_ocsp.OCSPResponseStatus.UNAUTHORIZED, 401)
        record = await revocation.load_revoked(storage, store.serial_to_str(parsed.serial))
        if record is not None and record.issuer_id and record.issuer_id != issuer.issuer_id:
            # the record belongs to another issuer: revoked only if that one is the same CA
            other = next((i for i in issuers if i.issuer_id == record.issuer_id), None)
            if other is not None and ocsp.issuer_hashes(other.certificate, parsed.hash_algorithm) != (
                parsed.issuer_name_hash,
                parsed.issuer_key_hash,
            ):
                record = None
        state = ocsp.CertState.GOOD if record is None else ocsp.CertState.REVOKED
        revoked_at = None if record is None else dt.datetime.fromtimestamp(record.revocation_time, dt.UTC)
        body = ocsp.build_response(
            issuer=issuer,
            req=parsed,
            state=state,
            now=dt.datetime.fromtimestamp(revocation.now(), dt.UTC),
            validity_seconds=ocsp_expiry,
            revoked_at=revoked_at,
        )
        return Response(raw=RawResponse(body, ocsp.CONTENT_TYPE, 200))

    # -- listings ---------------------------------------------------------------------------

    async def list_certs(self, req: Request, d: FieldData) -> Response | None:
        after, limit = _paging(d)
        keys = await self.storage(req).list_page("certs/", after, limit)
        return Response(data={"keys": [k for k in keys if not k.endswith("/")]})

    async def list_revoked(self, req: Request, d: FieldData) -> Response | None:
        after, limit = _paging(d)
        keys = await self.storage(req).list_page(revocation.REVOKED_PREFIX, after, limit)
        return Response(data={"keys": [k for k in keys if not k.endswith("/")]})

    async def list_detailed(self, req: Request, d: FieldData) -> Response | None:
        storage = self.storage(req)
        after, limit = _paging(d)
        keys: list[str] = []
        info: dict[str, Any] = {}
        for name in await storage.list_page("certs/", after, limit):
            if name.endswith("/"):
                continue
            stored = await store.load_certificate(storage, name)
            if stored is None:
                continue
            keys.append(name)
            info[name] = _detail(stored, await revocation.load_revoked(storage, name))
        return Response(data={"keys": keys, "key_info": info})


def _key_kind(key: object) -> str:
    for kind, cls in (
        ("rsa", rsa.RSAPublicKey),
        ("ec", ec.EllipticCurvePublicKey),
        ("ed25519", ed25519.Ed25519PublicKey),
    ):
        if isinstance(key, cls):
            return kind
    return type(key).__name__


def _post_body(req: Request) -> bytes:
    """The DER body of ``POST ocsp`` (``application/ocsp-request``).

    Needs the HTTP layer to hand the raw body over as ``req.raw_body``; a JSON
    body ``{"request": "<base64 DER>"}`` is accepted as well.
    """
    raw = getattr(req, "raw_body", None)
    if isinstance(raw, bytes | bytearray) and raw:
        return bytes(raw)
    encoded = req.data.get("request") if isinstance(req.data, dict) else None
    if isinstance(encoded, str) and encoded:
        try:
            return base64.b64decode(encoded, validate=True)
        except ValueError:
            raise ocsp.OcspMalformed("bad base64") from None
    raise ocsp.OcspMalformed("no request body")


def _detail(stored: store.StoredCert, record: revocation.RevokedRecord | None) -> dict[str, Any]:
    cert = stored.certificate
    cn = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    sans: list[str] = []
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        for general in ext:
            if isinstance(general, x509.OtherName):
                continue
            sans.append(str(general.value))
    except (x509.ExtensionNotFound, ValueError):
        pass
    out: dict[str, Any] = {
        "serial_number": stored.serial,
        "common_name": str(cn[0].value) if cn else "",
        "sans": sans,
        "not_before": int(cert.not_valid_before_utc.timestamp()),
        "not_after": int(cert.not_valid_after_utc.timestamp()),
        "issuer_id": stored.issuer_id,
        "revoked": record is not None,
    }
    if record is not None:
        out["revocation_time"] = record.revocation_time
        out["revocation_time_rfc3339"] = record.revocation_time_rfc3339
    return out


def paths(backend: PkiBackend) -> list[Path]:
    h = RevokePaths(backend)
    op = PathOperation
    serial_fields = {
        "serial_number": Field(
            FieldType.STRING, "Certificate serial number, in colon- or hyphen-separated hex"
        ),
        "certificate": Field(
            FieldType.STRING,
            "Certificate to revoke in PEM format; must be signed by an issuer in this mount.",
        ),
    }
    with_key = {
        **serial_fields,
        "private_key": Field(
            FieldType.STRING,
            "Key to use to verify revocation permission; must be in PEM format.",
            sensitive=True,
        ),
    }
    ref = {"issuer_ref": Field(FieldType.STRING, "Reference to an existing issuer (id, name or default).")}
    paging = {
        "after": Field(FieldType.STRING, "List entries strictly after this serial.", query=True),
        "limit": Field(FieldType.INT, "Return at most this many entries.", query=True),
    }
    config_fields = {
        "expiry": Field(FieldType.STRING, "How long a generated CRL is valid.", default="72h"),
        "disable": Field(FieldType.BOOL, "Disable CRL building (an empty CRL is still signed)."),
        "ocsp_disable": Field(FieldType.BOOL, "Answer every OCSP request with unauthorized."),
        "ocsp_expiry": Field(
            FieldType.STRING, "How long an OCSP response is valid (NextUpdate).", default="12h"
        ),
        "auto_rebuild": Field(
            FieldType.BOOL, "Rebuild CRLs in the background instead of on each revocation."
        ),
        "auto_rebuild_grace_period": Field(
            FieldType.STRING, "Rebuild this long before NextUpdate.", default="12h"
        ),
        "enable_delta": Field(FieldType.BOOL, "Publish delta CRLs between complete rebuilds."),
        "delta_rebuild_interval": Field(FieldType.STRING, "Delta CRL rebuild interval.", default="15m"),
    }
    out = [
        Path(
            "revoke",
            fields=serial_fields,
            operations={Operation.UPDATE: op(h.revoke, "Revoke a certificate by serial number or PEM.")},
            synopsis="Revoke a certificate by serial number or with explicit certificate.",
        ),
        Path(
            "revoke-with-key",
            fields=with_key,
            operations={
                Operation.UPDATE: op(h.revoke, "Revoke a certificate, proving possession of its key.")
            },
            synopsis="Revoke a certificate when its private key is presented.",
        ),
        Path(
            "crl/rotate",
            operations={Operation.READ: op(h.rotate, "Force a rebuild of the CRL.")},
            synopsis="Force a rebuild of the CRL.",
        ),
        Path(
            "crl/rotate-delta",
            operations={Operation.READ: op(h.rotate_delta, "Force a rebuild of the delta CRL.")},
            synopsis="Force a rebuild of the delta CRL.",
        ),
        Path(
            "config/crl",
            fields=config_fields,
            operations={
                Operation.READ: op(h.read_config, "Read the CRL configuration."),
                Operation.UPDATE: op(h.write_config, "Configure the CRL and OCSP."),
            },
            synopsis="Configure the CRL expiration.",
        ),
    ]
    fetches = (
        ("crl", False, "der"),
        ("crl/pem", False, "pem"),
        ("crl/delta", True, "der"),
        ("crl/delta/pem", True, "pem"),
        ("cert/crl", False, "cert-json"),
        ("cert/crl/raw", False, "der"),
        ("cert/crl/raw/pem", False, "pem"),
        ("cert/delta-crl", True, "cert-json"),
        ("cert/delta-crl/raw", True, "der"),
        ("cert/delta-crl/raw/pem", True, "pem"),
    )
    for template, delta, form in fetches:
        out.append(
            Path(
                template,
                operations={
                    Operation.READ: op(h.fetch(delta=delta, form=form, per_issuer=False), "Fetch a CRL.")
                },
                synopsis="Fetch the default issuer's CRL.",
                unauthenticated=True,
            )
        )
    for suffix, delta, form in (
        ("", False, "json"),
        ("/der", False, "der"),
        ("/pem", False, "pem"),
        ("/delta", True, "json"),
        ("/delta/der", True, "der"),
        ("/delta/pem", True, "pem"),
    ):
        out.append(
            Path(
                "issuer/{issuer_ref}/crl" + suffix,
                fields=ref,
                operations={
                    Operation.READ: op(h.fetch(delta=delta, form=form, per_issuer=True), "Fetch a CRL.")
                },
                synopsis="Fetch an issuer's Certificate Revocation List (CRL).",
                unauthenticated=True,
            )
        )
    out += [
        Path(
            "ocsp",
            operations={Operation.UPDATE: op(h.ocsp_query, "Query a certificate's status (DER body).")},
            synopsis="Query a certificate's revocation status through OCSP",
            unauthenticated=True,
            accept_unknown=True,
        ),
        Path(
            "ocsp/{req:path}",
            fields={"req": Field(FieldType.STRING, "base-64 encoded ocsp request")},
            operations={Operation.READ: op(h.ocsp_query, "Query a certificate's status (GET form).")},
            synopsis="Query a certificate's revocation status through OCSP",
            unauthenticated=True,
        ),
        Path(
            "certs/revoked/",
            fields=paging,
            operations={Operation.LIST: op(h.list_revoked, "List revoked serial numbers.")},
            synopsis="List all revoked serial numbers within the local cluster",
        ),
        Path(
            "certs/detailed/",
            fields=paging,
            operations={Operation.LIST: op(h.list_detailed, "List stored certificates with details.")},
            synopsis="List stored certificates with their names, expiry, issuer and revocation state.",
        ),
        Path(
            "certs/",
            fields=paging,
            operations={Operation.LIST: op(h.list_certs, "List stored certificate serial numbers.")},
            synopsis="Fetch a list of all issued certificates.",
        ),
    ]
    return out
