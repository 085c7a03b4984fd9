"""Issuance endpoints: issue/, sign/ and sign-verbatim/, with and without ``issuer/:ref/``.

- ``issue/:role`` and ``sign/:role`` use the role's ``issuer_ref``;
  ``issuer/:ref/issue/:role`` and ``issuer/:ref/sign/:role`` the issuer in the path.
- ``sign-verbatim[/:role]`` signs the CSR's own subject and extensions with no name
  checks (Vault's built-in verbatim role); a named role contributes only ttl, max_ttl,
  generate_lease, no_store, not_before_duration and issuer_ref. It refuses CSRs that
  ask to be a CA.

The issued certificate is stored through ``store.store_certificate`` unless the role
says ``no_store``; with ``generate_lease`` the response carries a non-renewable
lease that runs to NotAfter, whose internal data names the serial and issuer.

Lease revocation (P3): core revokes a lease by sending ``Operation.REVOKE`` to the
path that created it. Routing takes the first matching path, so these issue/sign
paths carry the REVOKE handler themselves: ``backend.revoke_lease_handler`` when the
backend has one at build time, else ``revocation.revoke_lease_handler(backend)``
when P3's module provides that factory (see :func:`lease_revoke_handler`).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from strongroom.engines.pki import store
from strongroom.engines.pki.issuing import (
    Issued,
    IssueInput,
    check_output_formats,
    issue_certificate,
    response_data,
    sign_certificate_request,
)
from strongroom.engines.pki.names import NameRequest, TemplateResolver
from strongroom.engines.pki.paths_roles import load_role, role_cache
from strongroom.engines.pki.roles import DEFAULT_KEY_USAGE, RoleEntry
from strongroom.framework import Field, FieldData, FieldType, Path, PathOperation
from strongroom.logical.errors import UserError
from strongroom.logical.request import Operation, Request, Response, SecretInfo

if TYPE_CHECKING:
    from strongroom.engines.pki.backend import PkiBackend

Handler = Callable[[Request, FieldData], Awaitable[Response | None]]

USE_CSR_CN_WARNING = (
    'the common_name field was provided but the role is set with "use_csr_common_name" set to true'
)
USE_CSR_SANS_WARNING = 'the alt_names field was provided but the role is set with "use_csr_sans" set to true'

_S = FieldType.STRING
_L = FieldType.COMMA_LIST
_B = FieldType.BOOL

COMMON_FIELDS: dict[str, Field] = {
    "role": Field(FieldType.NAME, "The desired role with configuration for this request."),
    "common_name": Field(_S, "The requested common name; an email address or a host name."),
    "alt_names": Field(_L, "Requested DNS and email Subject Alternative Names, comma-separated."),
    "ip_sans": Field(_L, "Requested IP Subject Alternative Names."),
    "uri_sans": Field(_L, "Requested URI Subject Alternative Names."),
    "other_sans": Field(_L, "Requested other SANs, <oid>;UTF8:<value>."),
    "ttl": Field(FieldType.DURATION, "Requested validity; capped by the role and mount."),
    "not_after": Field(_S, "Fixed NotAfter, YYYY-MM-ddTHH:MM:SSZ (not with ttl)."),
    "format": Field(_S, "pem, der or pem_bundle.", default="pem"),
    "private_key_format": Field(_S, "der (PKCS#1/SEC1), pem or pkcs8; only for issue.", default="der"),
    "exclude_cn_from_sans": Field(_B, "Keep the common name out of the DNS/email SANs."),
    "serial_number": Field(_S, "The subject's serialNumber attribute (not the certificate serial)."),
    "user_ids": Field(_L, "Subject user IDs (UID attribute)."),
    "remove_roots_from_chain": Field(_B, "Drop self-signed certificates from ca_chain."),
    "issuer_ref": Field(_S, "Issuer to sign with (issuer/:ref/ paths).", default="default"),
}
CSR_FIELD = {"csr": Field(_S, "PEM-format CSR to be signed.", default="")}
VERBATIM_FIELDS: dict[str, Field] = {
    **CSR_FIELD,
    "key_usage": Field(_L, "Default key usages (the CSR's win).", default=list(DEFAULT_KEY_USAGE)),
    "ext_key_usage": Field(_L, "Default extended key usages (the CSR's win)."),
    "ext_key_usage_oids": Field(_L, "Default extended key usage OIDs."),
    "signature_bits": Field(FieldType.INT, "Signature hash size (256, 384, 512); 0 automatic.", default=0),
    "use_pss": Field(_B, "Sign with RSASSA-PSS when the issuer key is RSA."),
}


def verbatim_role(d: FieldData, stored: RoleEntry | None) -> RoleEntry:
    """Vault's ``SignVerbatimRoleWithOpts``: any name, any key, the CSR's values."""
    role = RoleEntry(
        allow_localhost=True,
        allow_any_name=True,
        allow_ip_sans=True,
        allow_wildcard_certificates=True,
        enforce_hostnames=False,
        key_type="any",
        use_csr_common_name=True,
        use_csr_sans=True,
        allowed_other_sans=["*"],
        allowed_serial_numbers=["*"],
        allowed_uri_sans=["*"],
        allowed_user_ids=["*"],
        cn_validations=["disabled"],
        require_cn=False,
        server_flag=False,
        client_flag=False,
        generate_lease=False,
        key_usage=[str(v) for v in d["key_usage"]],
        ext_key_usage=[str(v) for v in d["ext_key_usage"]],
        ext_key_usage_oids=[str(v) for v in d["ext_key_usage_oids"]],
        signature_bits=int(d["signature_bits"]),
        use_pss=bool(d["use_pss"]),
    )
    if stored is not None:
        role.no_store = stored.no_store
        role.no_store_metadata = stored.no_store_metadata
        role.issuer_ref = stored.issuer_ref or store.DEFAULT_REF
        role.ttl = stored.ttl
        role.max_ttl = stored.max_ttl
        role.generate_lease = stored.generate_lease
        if stored.not_before_duration > 0:
            role.not_before_duration = stored.not_before_duration
        role.basic_constraints_valid_for_non_ca = stored.basic_constraints_valid_for_non_ca
    return role


def issue_input(d: FieldData) -> IssueInput:
    """The request's issue/sign parameters; only the fields the client sent are coerced."""
    raw = getattr(d, "raw", None)

    def value(name: str, default: Any) -> Any:
        # the declared default of each field below (COMMON_FIELDS), without building it per request
        if raw is not None and raw.get(name) is None:
            return default
        return d[name]

    alt_names = value("alt_names", ())
    names = NameRequest(
        common_name=str(value("common_name", "")).strip(),
        alt_names=[str(v) for v in alt_names],
        alt_names_sent=bool(alt_names),
        ip_sans=[str(v) for v in value("ip_sans", ())],
        uri_sans=[str(v) for v in value("uri_sans", ())],
        other_sans=[str(v) for v in value("other_sans", ())],
        serial_number=str(value("serial_number", "")),
        user_ids=[str(v) for v in value("user_ids", ())],
        exclude_cn_from_sans=bool(value("exclude_cn_from_sans", False)),
    )
    return IssueInput(
        names=names,
        ttl=int(value("ttl", 0)),
        not_after=str(value("not_after", "")),
        format=str(value("format", "pem")).strip() or "pem",
        private_key_format=str(value("private_key_format", "der")).strip(),
        remove_roots_from_chain=bool(value("remove_roots_from_chain", False)),
    )


async def load_issuer(backend: PkiBackend, ref: str) -> store.SigningIssuer:
    """The signing issuer, refused with Vault's texts (400) when unknown or not for issuing."""
    if not ref:
        raise UserError("missing issuer reference")
    try:
        issuer = await store.load_signing_issuer(backend.storage, ref)
    except UserError as err:
        raise UserError(f"could not fetch the CA certificate (was one set?): {err}") from None
    issuer.require_usage("issuing-certificates")
    return issuer


async def template_resolver(backend: PkiBackend, req: Request, role: RoleEntry) -> TemplateResolver | None:
    """Identity templating for allowed_domains / allowed_uri_sans, when the role asks for it."""
    if not (role.allowed_domains_template or role.allowed_uri_sans_template) or not req.entity_id:
        return None
    identity = getattr(getattr(backend, "core", None), "identity", None)
    if identity is None:
        return None
    from strongroom.core.acl import resolve_template

    _, entity = await identity.policies_for(req.entity_id)

    def resolve(template: str) -> str | None:
        return resolve_template(template, entity)

    return resolve


def lease_revoke_handler(backend: PkiBackend) -> Handler | None:
    """P3's REVOKE handler for leases of issued certificates, if it is available.

    ``backend.revoke_lease_handler`` (a handler) wins; otherwise
    ``revocation.revoke_lease_handler(backend)`` (a factory) when that module exists.
    """
    handler: Handler | None = getattr(backend, "revoke_lease_handler", None)
    if handler is not None:
        return handler
    try:
        from strongroom.engines.pki import revocation
    except ModuleNotFoundError:
        return None
    factory = getattr(revocation, "revoke_lease_handler", None)
    return None if factory is None else factory(backend)


def paths(backend: PkiBackend) -> list[Path]:
    async def respond(
        req: Request, role: RoleEntry, inp: IssueInput, issuer: store.SigningIssuer, issued: Issued
    ) -> Response:
        data = response_data(issued, issuer, inp)
        if not role.no_store:
            await store.store_certificate(backend.storage, issued.certificate, issuer.issuer_id)
        resp = Response(data=data)
        if role.generate_lease and not role.no_store:
            remaining = issued.certificate.not_valid_after_utc.timestamp() - time.time()
            resp.secret = SecretInfo(
                ttl=max(1, int(remaining)),
                renewable=False,
                internal_data={"serial_number": data["serial_number"], "issuer_id": issuer.issuer_id},
            )
        resp.warnings.extend(issued.warnings)
        return resp

    def mount_ttls() -> tuple[int, int]:
        system = backend.config.system
        return system.default_lease_ttl(), system.max_lease_ttl()

    async def role_for(d: FieldData) -> RoleEntry:
        name = str(d["role"])
        role = await role_cache(backend).get(name)
        if role is None:
            raise UserError(f"unknown role: {name}")
        # The cached entry itself, shared by every request: issuance only reads it, and
        # the one step that adjusts a role (issuing._check_csr_key, for key_type "any")
        # adjusts a copy.
        return role

    def issuer_ref(d: FieldData, role: RoleEntry, from_path: bool) -> str:
        return str(d["issuer_ref"]).strip() if from_path else (role.issuer_ref or store.DEFAULT_REF)

    def issue_handler(from_path: bool) -> Handler:
        async def handler(req: Request, d: FieldData) -> Response | None:
            role = await role_for(d)
            if role.key_type == "any":
                raise UserError('role key type "any" not allowed for issuing certificates, only signing')
            inp = issue_input(d)
            check_output_formats(inp)
            issuer = await load_issuer(backend, issuer_ref(d, role, from_path))
            default_ttl, max_ttl = mount_ttls()
            issued = await issue_certificate(
                role,
                inp,
                issuer,
                default_ttl,
                max_ttl,
                display_name=req.display_name,
                resolve=await template_resolver(backend, req, role),
                rsa_pool=getattr(backend, "rsa_pool", None),
            )
            return await respond(req, role, inp, issuer, issued)

        return handler

    def sign_handler(from_path: bool, verbatim: bool) -> Handler:
        async def handler(req: Request, d: FieldData) -> Response | None:
            if verbatim:
                name = str(d["role"]) if d.sent("role") else ""
                stored = await load_role(backend.storage, name) if name else None
                if name and stored is None:
                    raise UserError(f"unknown role: {name}")
                role = verbatim_role(d, stored)
            else:
                role = await role_for(d)
            inp = issue_input(d)
            check_output_formats(inp)
            ref = issuer_ref(d, role, from_path or (verbatim and not d.sent("role")))
            issuer = await load_issuer(backend, ref)
            default_ttl, max_ttl = mount_ttls()
            issued = await sign_certificate_request(
                role,
                inp,
                str(d["csr"]),
                issuer,
                default_ttl,
                max_ttl,
                verbatim=verbatim,
                display_name=req.display_name,
                resolve=await template_resolver(backend, req, role),
            )
            resp = await respond(req, role, inp, issuer, issued)
            if role.use_csr_common_name and inp.names.common_name:
                resp.add_warning(USE_CSR_CN_WARNING)
            if role.use_csr_sans and inp.names.alt_names_sent:
                resp.add_warning(USE_CSR_SANS_WARNING)
            return resp

        return handler

    revoke = lease_revoke_handler(backend)

    def ops(handler: Handler, summary: str) -> dict[Operation, PathOperation]:
        out = {Operation.UPDATE: PathOperation(handler, summary)}
        if revoke is not None:
            out[Operation.REVOKE] = PathOperation(revoke, "Revoke the certificate behind a lease.")
        return out

    issuer_field = {"issuer_ref": Field(FieldType.NAME, "Reference to an existing issuer.")}
    sign_fields = {**COMMON_FIELDS, **CSR_FIELD}
    verbatim_fields = {**COMMON_FIELDS, **VERBATIM_FIELDS}
    out: list[Path] = []
    for prefix, from_path in (("", False), ("issuer/{issuer_ref}/", True)):
        extra = issuer_field if from_path else {}
        out += [
            Path(
                prefix + "issue/{role}",
                fields={**COMMON_FIELDS, **extra},
                operations=ops(issue_handler(from_path), "Issue a certificate and private key under a role."),
                synopsis="Request a certificate using a certain role with the provided details.",
                description="The certificate is issued only if the requested details are allowed by the role.",
            ),
            Path(
                prefix + "sign/{role}",
                fields={**sign_fields, **extra},
                operations=ops(sign_handler(from_path, False), "Sign a CSR under a role."),
                synopsis="Request certificates using a certain role with the provided details.",
                description="This path requires a CSR; the role's name policy applies.",
            ),
            Path(
                prefix + "sign-verbatim/{role}",
                fields={**verbatim_fields, **extra},
                operations=ops(sign_handler(from_path, True), "Sign a CSR as it is, with a role's TTLs."),
                synopsis="Issue a certificate directly based on the provided CSR.",
                description="Privileged: the CSR's subject and extensions are copied without role checks.",
            ),
            Path(
                prefix + "sign-verbatim",
                fields={**verbatim_fields, **extra},
                operations=ops(sign_handler(from_path, True), "Sign a CSR as it is."),
                synopsis="Issue a certificate directly based on the provided CSR.",
                description="Privileged: the CSR's subject and extensions are copied without role checks.",
            ),
        ]
    return out
