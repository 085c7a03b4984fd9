"""Issuer lifecycle: generate roots and intermediates, import, sign CAs, read/update/delete.

Key management, ``config/issuers``/``config/keys`` and ``DELETE root`` live in
:mod:`strongroom.engines.pki.paths_keys` and are appended here, so the backend
sees one issuer-and-key module.
"""

from __future__ import annotations

import base64
import datetime as dt
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from strongroom.engines.pki import cacerts, keys, store
from strongroom.engines.pki.issuer_ops import (
    CA_COMMON,
    CA_ISSUE,
    CSR_KEY_USAGE,
    IMPORT_FIELDS,
    ISSUER_REF,
    ISSUER_UPDATE,
    KEYGEN,
    ROOT_KEY_USAGE,
    SIGN_INTERMEDIATE,
    SIGN_SELF_ISSUED,
    IssuerOps,
    field_values,
    issuer_view,
)
from strongroom.framework import Field, FieldData, FieldType, Path, PathOperation
from strongroom.logical.errors import UserError
from strongroom.logical.request import Operation, Request, Response

if TYPE_CHECKING:
    from strongroom.engines.pki.backend import PkiBackend

AIA_WARNING = (
    "This mount hasn't configured any authority information access (AIA) fields; this may make it harder for "
    "systems to find missing certificates in the chain or to validate revocation status of certificates. "
    "Consider updating /config/urls or the newly generated issuer with this information."
)
EXPORTED_TYPES = ("internal", "exported", "existing", "kms")


def _exported(d: FieldData) -> str:
    kind = str(d["exported"])
    if kind not in EXPORTED_TYPES:
        raise UserError('the "exported" path parameter must be "internal", "existing", exported" or "kms"')
    if kind == "kms":
        raise UserError("managed keys (kms) are not supported by this server")
    return kind


def _b64(cert: x509.Certificate) -> str:
    return base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()


def _out_cert(cert: x509.Certificate, fmt: str) -> str:
    return _b64(cert) if fmt == "der" else store.cert_pem(cert)


class IssuerPaths(IssuerOps):
    """Handlers for the issuer endpoints (state lives in the backend and its storage)."""

    # -- key material for generate paths ----------------------------------------------------

    async def _key_for(self, kind: str, d: FieldData) -> tuple[keys.PrivateKey, store.KeyEntry | None]:
        if kind == "existing":
            entry = await store.key_by_ref(self.storage, str(d["key_ref"]) or store.DEFAULT_REF)
            return entry.key(), entry
        key_type = str(d["key_type"])
        return await keys.generate_key_async(key_type, int(d["key_bits"])), None

    def _subject_and_sans(self, d: FieldData, common_name: str) -> tuple[x509.Name, cacerts.SanParams]:
        values = field_values(d)
        subject = cacerts.build_subject(common_name, values)
        sans = cacerts.collect_sans(
            common_name,
            str(d["alt_names"]),
            d["ip_sans"],
            d["uri_sans"],
            d["other_sans"],
            bool(d["exclude_cn_from_sans"]),
        )
        return subject, sans

    # -- root generation --------------------------------------------------------------------

    async def generate_root(self, req: Request, d: FieldData) -> Response | None:
        kind = _exported(d)
        fmt = str(d["format"])
        max_path = int(d["max_path_length"])
        if max_path < -1:
            raise UserError(
                f"requested max_path_length {max_path} is invalid: must be a non-negative integer or -1 for no constraint"
            )
        async with self.backend.issuers_lock:
            issuer_name = await self.new_issuer_name(d)
            if req.path.startswith("root/rotate/") and not issuer_name:
                if not await store.issuer_name_in_use(self.storage, "next"):
                    issuer_name = "next"
            key_name = await self.new_key_name(d) if kind != "existing" else ""
            key, existing_key = await self._key_for(kind, d)
            common_name = str(d["common_name"])
            subject, sans = self._subject_and_sans(d, common_name)
            system = self.backend.config.system
            not_before, not_after, warnings = cacerts.validity(
                int(d["ttl"]),
                str(d["not_after"]),
                int(d["not_before_duration"]),
                system.default_lease_ttl(),
                system.max_lease_ttl(),
            )
            usage, bad_usage = cacerts.key_usage(d["key_usage"], ["certsign", "crlsign"])
            issuer_id = store.new_id()
            mount_aia = await store.get_mount_aia(self.storage)
            aia = await self.templated_aia(mount_aia, issuer_id)
            spec = cacerts.CASpec(
                subject=subject,
                not_before=not_before,
                not_after=not_after,
                max_path_length=max_path,
                sans=sans,
                constraints=cacerts.name_constraints(field_values(d)),
                key_usage=usage,
                ext_key_usage=cacerts.ext_key_usage(d["ext_key_usage"], d["ext_key_usage_oids"]),
                aia=aia,
                signature_bits=int(d["signature_bits"]),
                use_pss=bool(d["use_pss"]),
            )
            cert = cacerts.build_ca_certificate(spec, key.public_key(), key)
            key_entry = existing_key or (await store.import_key(self.storage, key, key_name))[0]
            entry, _ = await store.import_issuer(self.storage, cert, issuer_name, issuer_id=issuer_id)
            entry.revocation_signature_algorithm = cacerts.go_signature_name(cert)
            await store.write_issuer(self.storage, entry)
            await store.store_certificate(self.storage, cert, entry.id)
            config = await store.get_issuers_config(self.storage)
            if config.default_follows_latest_issuer:
                config.default = entry.id
                await store.put_issuers_config(self.storage, config)
            await self.issuers_changed()
        resp = Response(
            data={
                "expiration": int(cert.not_valid_after_utc.timestamp()),
                "serial_number": store.serial_to_str(cert.serial_number),
            }
        )
        if bad_usage:
            resp.add_warning(
                f"Invalid key usage will be ignored: unrecognized key usage {', '.join(bad_usage)}"
            )
        if aia is None or aia.empty():
            resp.add_warning(AIA_WARNING)
        cert_text = _out_cert(cert, fmt)
        resp.data = resp.data or {}
        resp.data["certificate"] = cert_text
        resp.data["issuing_ca"] = cert_text
        if kind == "exported":
            private = keys.export_private_key(key, str(d["private_key_format"]), fmt)
            resp.data["private_key"] = private
            resp.data["private_key_type"] = keys.key_type_name(key)
            if fmt == "pem_bundle":
                resp.data["certificate"] = f"{private}\n{cert_text}"
        resp.data.update(
            issuer_id=entry.id, issuer_name=entry.name, key_id=key_entry.id, key_name=key_entry.name
        )
        if max_path == 0:
            resp.add_warning(
                "Max path length of the generated certificate is zero. This certificate cannot be used to "
                "issue intermediate CA certificates."
            )
        resp.warnings.extend(warnings)
        return resp

    # -- intermediate CSRs ------------------------------------------------------------------

    async def generate_intermediate(self, req: Request, d: FieldData) -> Response | None:
        kind = "existing" if req.path == "intermediate/cross-sign" else _exported(d)
        fmt = str(d["format"])
        async with self.backend.issuers_lock:
            key_name = await self.new_key_name(d) if kind != "existing" else ""
            key, existing_key = await self._key_for(kind, d)
            subject, sans = self._subject_and_sans(d, str(d["common_name"]))
            usage, _ = cacerts.key_usage(d["key_usage"])
            csr = cacerts.build_csr(
                subject, key, sans, bool(d["add_basic_constraints"]), usage, int(d["signature_bits"])
            )
            key_entry = existing_key or (await store.import_key(self.storage, key, key_name))[0]
            await self.issuers_changed()
        der = csr.public_bytes(serialization.Encoding.DER)
        csr_text = (
            base64.b64encode(der).decode()
            if fmt == "der"
            else csr.public_bytes(serialization.Encoding.PEM).decode().strip()
        )
        data: dict[str, Any] = {"csr": csr_text, "key_id": key_entry.id}
        if kind == "exported":
            private = keys.export_private_key(key, str(d["private_key_format"]), fmt)
            data["private_key"] = private
            data["private_key_type"] = keys.key_type_name(key)
            if fmt == "pem_bundle":
                data["csr"] = f"{private}\n{csr_text}"
        resp = Response(data=data)
        if (await store.get_mount_aia(self.storage)).empty():
            resp.add_warning(
                AIA_WARNING + " Since this certificate is an intermediate, it might be useful to regenerate "
                "this certificate after fixing this problem for the root mount."
            )
        return resp

    # -- signing CA certificates -------------------------------------------------------------

    async def sign_intermediate(self, req: Request, d: FieldData) -> Response | None:
        ref = str(d["issuer_ref"]) or store.DEFAULT_REF
        fmt = str(d["format"])
        try:
            signer = await store.load_signing_issuer(self.storage, ref)
        except UserError as err:
            raise UserError(f"could not fetch the CA certificate (was one set?): {err}") from None
        signer.require_usage("issuing-certificates")
        try:
            csr = x509.load_pem_x509_csr(str(d["csr"]).strip().encode())
        except ValueError:
            raise UserError("certificate request could not be parsed") from None
        if not csr.is_signature_valid:
            raise UserError("request signature invalid")
        max_path, warnings = self._child_path_length(d, signer.certificate)
        system = self.backend.config.system
        not_before, not_after, ttl_warnings = cacerts.validity(
            int(d["ttl"]),
            str(d["not_after"]),
            int(d["not_before_duration"]),
            system.default_lease_ttl(),
            system.max_lease_ttl(),
        )
        warnings += ttl_warnings
        signer_end = signer.certificate.not_valid_after_utc
        if not_after > signer_end and not bool(d["enforce_leaf_not_after_behavior"]):
            not_after = signer_end
            warnings.append(
                "the signed intermediary CA certificate's notAfter was truncated to the issuer's notAfter"
            )
        elif not_after > signer_end and signer.leaf_not_after_behavior in ("err", "always_enforce_err"):
            raise UserError(
                f"cannot satisfy request, as TTL would result in notAfter of {not_after.isoformat()} that is "
                f"beyond the expiration of the CA certificate at {signer_end.isoformat()}"
            )
        if bool(d["use_csr_values"]):
            subject = csr.subject
            sans = cacerts.csr_sans(csr)
        else:
            common_name = str(d["common_name"])
            if not common_name:
                cns = csr.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
                common_name = str(cns[0].value) if cns else ""
            subject, sans = self._subject_and_sans(d, common_name)
        usage, bad_usage = cacerts.key_usage(d["key_usage"], ["certsign", "crlsign"])
        skid_hex = str(d["skid"]).replace(":", "").replace("-", "").strip()
        try:
            skid = bytes.fromhex(skid_hex) if skid_hex else None
        except ValueError:
            raise UserError("unable to parse the skid value as a hex string") from None
        spec = cacerts.CASpec(
            subject=subject,
            not_before=not_before,
            not_after=not_after,
            max_path_length=max_path,
            sans=sans,
            constraints=cacerts.name_constraints(field_values(d)),
            key_usage=usage,
            ext_key_usage=cacerts.ext_key_usage(d["ext_key_usage"], d["ext_key_usage_oids"]),
            aia=signer.aia,
            skid=skid,
            signature_bits=int(d["signature_bits"]),
            use_pss=bool(d["use_pss"]),
        )
        public_key = csr.public_key()
        keys.key_type_name(public_key)  # refuses key types we cannot issue for
        cert = cacerts.build_ca_certificate(
            spec,
            public_key,
            signer.private_key,
            signer.certificate,
        )
        await store.store_certificate(self.storage, cert, signer.issuer_id)
        chain = [store.cert_pem(cert), *signer.chain_pem]
        data: dict[str, Any] = {
            "expiration": int(cert.not_valid_after_utc.timestamp()),
            "serial_number": store.serial_to_str(cert.serial_number),
            "certificate": _out_cert(cert, fmt),
            "issuing_ca": _out_cert(signer.certificate, fmt),
        }
        if fmt == "der":
            data["ca_chain"] = [_b64(cert)] + [_b64(store.parse_cert_pem(p)) for p in signer.chain_pem]
        else:
            data["ca_chain"] = chain
            if fmt == "pem_bundle":
                data["certificate"] = "\n".join(chain)
        resp = Response(data=data, warnings=warnings)
        if bad_usage:
            resp.add_warning(f"Invalid key usage: unrecognized key usage {', '.join(bad_usage)}")
        if max_path == 0:
            resp.add_warning(
                "Max path length of the signed certificate is zero. This CA certificate cannot be used to "
                "issue intermediate CA certificates."
            )
        return resp

    @staticmethod
    def _child_path_length(d: FieldData, parent: x509.Certificate) -> tuple[int, list[str]]:
        """The issued CA's pathLen: explicit values must stay below the parent's (RFC 5280 §4.2.1.9)."""
        parent_len = cacerts.path_length_of(parent)
        requested, sent = d.get_ok("max_path_length")
        if parent_len == 0:
            raise UserError(
                "signing certificate has a max path length of zero, and cannot issue further CA certificates"
            )
        if not sent or (int(requested) == -1 and parent_len is None):
            if parent_len is None:
                return -1, []
            return parent_len - 1, []
        value = int(requested)
        if value < -1:
            raise UserError(
                f"requested max_path_length {value} is invalid: must be a non-negative integer or -1 for no constraint"
            )
        if parent_len is not None and (value < 0 or value >= parent_len):
            raise UserError(
                f"requested max_path_length {value} is not allowed: the signing CA has a pathLenConstraint of "
                f"{parent_len}, so the intermediate's pathLenConstraint must be a non-negative value less "
                f"than {parent_len}"
            )
        return value, []

    async def sign_self_issued(self, req: Request, d: FieldData) -> Response | None:
        ref = str(d["issuer_ref"]) or store.DEFAULT_REF
        certs = store.parse_pem_certificates(str(d["certificate"]))
        if len(certs) != 1:
            raise UserError(f"{len(certs)} certificates found in PEM file, expected 1")
        cert = certs[0]
        if not cacerts.is_ca(cert):
            raise UserError("given certificate is not a CA certificate")
        if cert.issuer != cert.subject:
            raise UserError("given certificate is not self-issued")
        try:
            signer = await store.load_signing_issuer(self.storage, ref)
        except UserError as err:
            raise UserError(f"could not fetch the CA certificate (was one set?): {err}") from None
        signer.require_usage("issuing-certificates")
        signer_type = keys.key_type_name(signer.private_key)
        cert_type = keys.key_type_name(cert.public_key())
        if signer_type != cert_type and bool(d["require_matching_certificate_algorithms"]):
            raise UserError(
                f"signing certificate's public key algorithm ({signer_type}) does not match submitted "
                f"certificate's ({cert_type}), and require_matching_certificate_algorithms is true"
            )
        signed = cacerts.resign_self_issued(cert, signer.certificate, signer.private_key, signer.aia)
        return Response(data={"certificate": store.cert_pem(signed), "issuing_ca": signer.certificate_pem})

    # -- import -----------------------------------------------------------------------------

    async def import_bundle(self, req: Request, d: FieldData) -> Response | None:
        keys_allowed = req.path in ("config/ca", "issuers/import/bundle")
        text = str(d["certificate"] if req.path == "intermediate/set-signed" else d["pem_bundle"])
        if not text.strip():
            raise UserError(
                "'pem_bundle' must be set" if req.path != "intermediate/set-signed" else "no data found"
            )
        certs, private_keys = store.split_pem_bundle(text)
        if private_keys and not keys_allowed:
            raise UserError(
                "private keys found in the PEM bundle but not allowed by the path; use /issuers/import/bundle"
            )
        for cert in certs:
            if not cacerts.is_ca(cert):
                raise UserError("refusing to import non-CA certificate")
        async with self.backend.issuers_lock:
            result = await self.import_material(certs, private_keys)
            await self.issuers_changed()
        resp = Response(data=result.data())
        resp.warnings.extend(result.warnings)
        if (await store.get_mount_aia(self.storage)).empty():
            resp.add_warning(AIA_WARNING)
        return resp

    # -- listing and reading ----------------------------------------------------------------

    async def list_issuers(self, req: Request, d: FieldData) -> Response | None:
        entries = await store.list_issuers(self.storage)
        if not entries:
            return None
        config = await store.get_issuers_config(self.storage)
        info = {
            e.id: {
                "issuer_name": e.name,
                "is_default": e.id == config.default,
                "serial_number": e.serial_number,
                "key_id": e.key_id,
            }
            for e in entries
        }
        return Response(data={"keys": sorted(info), "key_info": info})

    async def read_issuer(self, req: Request, d: FieldData) -> Response | None:
        entry = await self.issuer_for_admin(d)
        return Response(data=issuer_view(entry))

    async def write_issuer(self, req: Request, d: FieldData) -> Response | None:
        async with self.backend.issuers_lock:
            entry = await self.issuer_for_admin(d)
            warnings = await self.apply_issuer_update(entry, d, patch=req.operation == Operation.PATCH)
            await self.issuers_changed()
            entry = await store.fetch_issuer(self.storage, entry.id) or entry
        return Response(data=issuer_view(entry), warnings=warnings)

    async def delete_issuer(self, req: Request, d: FieldData) -> Response | None:
        ref = str(d["issuer_ref"]).strip()
        if not ref:
            raise UserError("missing issuer reference")
        async with self.backend.issuers_lock:
            try:
                issuer_id = await store.resolve_issuer_ref(self.storage, ref)
            except store.ReferenceNotFound:
                return None
            resp = Response()
            if await store.delete_issuer(self.storage, issuer_id):
                resp.add_warning(
                    f"Deleted issuer {issuer_id} (via issuer_ref {ref}); this was configured as the default "
                    "issuer. Operations without an explicit issuer will not work until a new default is configured."
                )
            await self.issuers_changed()
        return resp if resp.warnings else None

    async def revoke_issuer(self, req: Request, d: FieldData) -> Response | None:
        async with self.backend.issuers_lock:
            entry = await self.issuer_for_admin(d)
            if entry.revoked:
                return Response(data=issuer_view(entry))
            now = dt.datetime.now(dt.UTC)
            entry.revoked = True
            entry.usage = [u for u in entry.usage if u != "issuing-certificates"]
            entry.revocation_time = int(now.timestamp())
            entry.revocation_time_utc = now.isoformat().replace("+00:00", "Z")
            await store.write_issuer(self.storage, entry)
            await self.issuers_changed()
        resp = Response(data=issuer_view(entry))
        if not await self.has_other_parent(entry):
            resp.add_warning(
                "This issuer is self-signed or has no parent issuer in this mount; revocation will only "
                "be reflected in the CRL of this issuer itself (if it is self-signed)."
            )
        return resp


def paths(backend: PkiBackend) -> list[Path]:
    h = IssuerPaths(backend)
    op = PathOperation
    gen_root = {**CA_COMMON, **KEYGEN, **CA_ISSUE, **ROOT_KEY_USAGE, "exported": Field(FieldType.STRING)}
    gen_int = {
        **CA_COMMON,
        **KEYGEN,
        **CSR_KEY_USAGE,
        "exported": Field(FieldType.STRING),
        "add_basic_constraints": Field(
            FieldType.BOOL, "Whether to add a Basic Constraints extension (CA:TRUE)."
        ),
    }
    sign_int = {**CA_COMMON, **CA_ISSUE, **SIGN_INTERMEDIATE, **ROOT_KEY_USAGE, **ISSUER_REF}
    out: list[Path] = []
    for template in (
        "root/generate/{exported}",
        "issuers/generate/root/{exported}",
        "root/rotate/{exported}",
    ):
        out.append(
            Path(
                template,
                fields=gen_root,
                operations={Operation.UPDATE: op(h.generate_root, "Generate a new root CA and its key.")},
                synopsis="Generate a new CA certificate and private key used for signing.",
            )
        )
    for template in ("intermediate/generate/{exported}", "issuers/generate/intermediate/{exported}"):
        out.append(
            Path(
                template,
                fields=gen_int,
                operations={Operation.UPDATE: op(h.generate_intermediate, "Generate a CSR and its key.")},
                synopsis="Generate a new CSR and private key used for signing.",
            )
        )
    out.append(
        Path(
            "intermediate/cross-sign",
            fields={k: v for k, v in gen_int.items() if k != "exported"},
            operations={
                Operation.UPDATE: op(h.generate_intermediate, "Generate a CSR reusing an existing key.")
            },
            synopsis="Generate a CSR for cross-signing an existing issuer's key.",
        )
    )
    for template, fields in (
        ("config/ca", {"pem_bundle": IMPORT_FIELDS["pem_bundle"]}),
        ("issuers/import/bundle", {"pem_bundle": IMPORT_FIELDS["pem_bundle"]}),
        ("issuers/import/cert", {"pem_bundle": IMPORT_FIELDS["pem_bundle"]}),
        ("intermediate/set-signed", {"certificate": IMPORT_FIELDS["certificate"]}),
    ):
        out.append(
            Path(
                template,
                fields=fields,
                operations={Operation.UPDATE: op(h.import_bundle, "Import CA certificates and keys.")},
                synopsis="Import the specified issuing certificates (and keys where allowed).",
            )
        )
    for template in ("root/sign-intermediate", "issuer/{issuer_ref}/sign-intermediate"):
        out.append(
            Path(
                template,
                fields=sign_int,
                operations={
                    Operation.UPDATE: op(h.sign_intermediate, "Issue an intermediate CA certificate.")
                },
                synopsis="Issue an intermediate CA certificate based on the provided CSR.",
            )
        )
    for template in ("root/sign-self-issued", "issuer/{issuer_ref}/sign-self-issued"):
        out.append(
            Path(
                template,
                fields={**SIGN_SELF_ISSUED, **ISSUER_REF},
                operations={
                    Operation.UPDATE: op(h.sign_self_issued, "Re-sign a self-issued CA certificate.")
                },
                synopsis="Signs another CA's self-issued certificate.",
                sudo=True,
            )
        )
    out.append(
        Path(
            "issuers/",
            fields={
                "after": Field(FieldType.STRING, query=True),
                "limit": Field(FieldType.INT, query=True),
            },
            operations={Operation.LIST: op(h.list_issuers, "List issuers.")},
            synopsis="Fetch a list of CA certificates.",
            unauthenticated=True,
        )
    )
    out.append(
        Path(
            "issuer/{issuer_ref}/revoke",
            fields=dict(ISSUER_REF),
            operations={Operation.UPDATE: op(h.revoke_issuer, "Revoke an issuer (irreversible).")},
            synopsis="Revoke the specified issuer certificate.",
        )
    )
    out.append(
        Path(
            "issuer/{issuer_ref}",
            fields={**ISSUER_UPDATE, **ISSUER_REF},
            operations={
                Operation.READ: op(h.read_issuer, "Read an issuer."),
                Operation.UPDATE: op(h.write_issuer, "Replace an issuer's settings."),
                Operation.PATCH: op(h.write_issuer, "Patch an issuer's settings."),
                Operation.DELETE: op(h.delete_issuer, "Delete an issuer."),
            },
            synopsis="Fetch or update a single issuer.",
        )
    )
    from strongroom.engines.pki.paths_keys import paths as key_paths

    out.extend(key_paths(backend))
    return out
