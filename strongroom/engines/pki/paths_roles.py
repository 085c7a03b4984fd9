"""``LIST roles`` and ``roles/:name`` (GET, POST/PUT, PATCH, DELETE), stored at ``role/<name>``.

A POST replaces the role (omitted fields reset to their defaults) and answers
with the stored role, as Vault does; PATCH merges over the stored role. The
existence check lets core tell create from update for ACLs. A write whose
``issuer_ref`` does not resolve (yet) succeeds with Vault's warning: roles are
resolved at issuance, so ``default`` may float.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from strongroom.engines.pki import store
from strongroom.engines.pki.roles import ROLE_PARAMETERS, RoleEntry, role_from_input, role_response
from strongroom.framework import Field, FieldData, FieldType, Path, PathOperation
from strongroom.logical.errors import UserError
from strongroom.logical.request import Operation, Request, Response
from strongroom.logical.storage import Storage, get_json, put_json

if TYPE_CHECKING:
    from strongroom.engines.pki.backend import PkiBackend

ROLE_PREFIX = "role/"

_S = FieldType.STRING
_B = FieldType.BOOL
_L = FieldType.COMMA_LIST
_D = FieldType.DURATION

ROLE_FIELDS: dict[str, Field] = {
    "name": Field(FieldType.NAME, "Name of the role."),
    "backend": Field(_S, "Backend type (ignored)."),
    "ttl": Field(_D, "Validity of issued certificates when a request names none; 0 uses the mount default."),
    "max_ttl": Field(_D, "Longest validity a request may ask for; 0 uses the mount maximum."),
    "allow_localhost": Field(_B, 'Allow "localhost" and "localdomain" as names.', default=True),
    "allowed_domains": Field(_L, "Domains this role may issue for (see the allow_* flags)."),
    "allowed_domains_template": Field(_B, "Allow identity templates in allowed_domains."),
    "allow_bare_domains": Field(_B, "Allow the allowed domains themselves."),
    "allow_subdomains": Field(_B, "Allow subdomains (and wildcards) of the allowed domains."),
    "allow_glob_domains": Field(_B, "Treat * in allowed_domains as a glob."),
    "allow_wildcard_certificates": Field(_B, "Allow RFC 6125 wildcard names.", default=True),
    "allow_any_name": Field(_B, "Allow any name (hostname and wildcard checks still apply)."),
    "allow_token_displayname": Field(_B, "Allow the token's display name (deprecated)."),
    "enforce_hostnames": Field(_B, "Only allow valid host names in the CN and DNS SANs.", default=True),
    "allow_ip_sans": Field(_B, "Allow IP SANs.", default=True),
    "allowed_ip_sans_cidr": Field(_L, "CIDR ranges IP SANs must fall in (empty: any)."),
    "allowed_uri_sans": Field(_L, "Allowed URI SANs (globs)."),
    "allowed_uri_sans_template": Field(_B, "Allow identity templates in allowed_uri_sans."),
    "allowed_other_sans": Field(_L, "Allowed other SANs, <oid>;UTF8:<value> (globs; * allows any)."),
    "allowed_serial_numbers": Field(_L, "Allowed subject serial numbers (globs)."),
    "allowed_user_ids": Field(_L, "Allowed subject user IDs (globs; * allows any)."),
    "server_flag": Field(_B, "Add the serverAuth EKU.", default=True),
    "client_flag": Field(_B, "Add the clientAuth EKU.", default=True),
    "code_signing_flag": Field(_B, "Add the codeSigning EKU."),
    "email_protection_flag": Field(_B, "Add the emailProtection EKU."),
    "key_type": Field(FieldType.LOWERCASE_STRING, "rsa, ec, ed25519 or any (sign only).", default="rsa"),
    "key_bits": Field(FieldType.INT, "Key size; 0 means RSA 2048 / EC 256.", default=0),
    "signature_bits": Field(FieldType.INT, "Signature hash size (256, 384, 512); 0 automatic.", default=0),
    "use_pss": Field(_B, "Sign with RSASSA-PSS when the issuer key is RSA."),
    "key_usage": Field(
        _L,
        "Key usages (Go names without KeyUsage).",
        default=["DigitalSignature", "KeyAgreement", "KeyEncipherment"],
    ),
    "ext_key_usage": Field(_L, "Extended key usages (Go names without ExtKeyUsage)."),
    "ext_key_usage_oids": Field(_L, "Extended key usage OIDs."),
    "use_csr_common_name": Field(_B, "On sign, take the CN from the CSR.", default=True),
    "use_csr_sans": Field(_B, "On sign, take the SANs from the CSR.", default=True),
    "serial_number_source": Field(
        _S, "json-csr or json: where the subject serialNumber comes from.", default="json-csr"
    ),
    "ou": Field(_L, "Subject OU values."),
    "organization": Field(_L, "Subject O values."),
    "country": Field(_L, "Subject C values."),
    "locality": Field(_L, "Subject L values."),
    "province": Field(_L, "Subject ST values."),
    "street_address": Field(_L, "Subject street values."),
    "postal_code": Field(_L, "Subject postalCode values."),
    "generate_lease": Field(_B, "Attach a lease to issued certificates."),
    "no_store": Field(_B, "Do not store issued certificates (implies no lease)."),
    "no_store_metadata": Field(_B, "Do not store certificate metadata."),
    "require_cn": Field(_B, "Require a common name.", default=True),
    "cn_validations": Field(_L, "email, hostname, or disabled.", default=["email", "hostname"]),
    "policy_identifiers": Field(FieldType.ANY, "Policy OIDs, or a JSON list of {oid, cps, notice}."),
    "basic_constraints_valid_for_non_ca": Field(_B, "Add CA:FALSE basic constraints to leaves."),
    "not_before_duration": Field(_D, "How far NotBefore is backdated.", default=30),
    "not_after": Field(_S, "Fixed NotAfter, YYYY-MM-ddTHH:MM:SSZ."),
    "issuer_ref": Field(_S, "Issuer used by issue/ and sign/ for this role.", default="default"),
}


def role_key(name: str) -> str:
    return ROLE_PREFIX + name


async def load_role(storage: Storage, name: str) -> RoleEntry | None:
    raw = await get_json(storage, role_key(name))
    return None if raw is None else RoleEntry.from_json(raw)


def role_cache(backend: Any) -> RoleCache:
    """The backend's role cache (created on first use)."""
    cache = getattr(backend, "_role_cache", None)
    if cache is None:
        cache = RoleCache(backend)
        backend._role_cache = cache
    return cache


class RoleCache:
    """Parsed roles for the issuance path, dropped whenever any process changes an engine's state.

    Roles decide what may be issued, so a cached role must never outlive a change made
    through another worker: every lookup compares the node-wide engine generation
    (shared memory, see :mod:`strongroom.core.sync`) and every role write bumps it.
    """

    def __init__(self, backend: Any) -> None:
        self._backend = backend
        self._generation = -1
        self._roles: dict[str, RoleEntry | None] = {}

    def _current(self) -> int:
        core = getattr(self._backend, "core", None)
        return int(core.engine_generation()) if core is not None else -2  # no core: never cache

    async def get(self, name: str) -> RoleEntry | None:
        generation = self._current()
        if generation != self._generation or generation == -2:
            self._roles.clear()
            self._generation = generation
        if name in self._roles:
            return self._roles[name]
        role = await load_role(self._backend.storage, name)
        if len(self._roles) >= 1024:
            self._roles.clear()
        self._roles[name] = role
        return role

    def changed(self) -> None:
        core = getattr(self._backend, "core", None)
        if core is not None:
            core.engine_changed()
        self._roles.clear()


def _sent(d: FieldData) -> dict[str, Any]:
    """The role parameters present in the request, coerced (policy_identifiers raw)."""
    out: dict[str, Any] = {}
    for name in ROLE_PARAMETERS:
        value, sent = d.get_ok(name)
        if sent:
            out[name] = value
    return out


async def _issuer_warning(storage: Storage, ref: str) -> str | None:
    """Vault's warning when a role's issuer_ref does not resolve now (it still stores)."""
    try:
        await store.resolve_issuer_ref(storage, ref)
    except store.ReferenceNotFound:
        if ref == store.DEFAULT_REF:
            return (
                "Issuing Certificate was set to default, but no default issuing certificate "
                "(configurable at /config/issuers) is currently set"
            )
        return f"Issuing Certificate was set to {ref} but no issuing certificate currently has that name"
    return None


def paths(backend: PkiBackend) -> list[Path]:
    async def list_roles(req: Request, d: FieldData) -> Response | None:
        names = await backend.storage.list(ROLE_PREFIX)
        return Response(data={"keys": [n for n in names if not n.endswith("/")]})

    async def role_exists(req: Request, d: FieldData) -> bool:
        return await backend.storage.get(role_key(str(d["name"]))) is not None

    async def read_role(req: Request, d: FieldData) -> Response | None:
        role = await load_role(backend.storage, str(d["name"]))
        return None if role is None else Response(data=role_response(role))

    async def write(name: str, sent: dict[str, Any], base: RoleEntry | None) -> Response:
        role, warnings = role_from_input(sent, base)
        issuer_warning = await _issuer_warning(backend.storage, role.issuer_ref)
        await put_json(backend.storage, role_key(name), role.to_json())
        role_cache(backend).changed()
        resp = Response(data=role_response(role))
        if issuer_warning:
            resp.add_warning(issuer_warning)
        for warning in warnings:
            resp.add_warning(warning)
        return resp

    async def write_role(req: Request, d: FieldData) -> Response | None:
        return await write(str(d["name"]), _sent(d), None)

    async def patch_role(req: Request, d: FieldData) -> Response | None:
        name = str(d["name"])
        old = await load_role(backend.storage, name)
        if old is None:
            raise UserError("Unable to fetch role entry to patch")
        return await write(name, _sent(d), old)

    async def delete_role(req: Request, d: FieldData) -> Response | None:
        await backend.storage.delete(role_key(str(d["name"])))
        role_cache(backend).changed()
        return None

    op = PathOperation
    listing = {Operation.LIST: op(list_roles, "List the existing roles in this backend.")}
    return [
        Path(
            "roles/",
            operations=listing,
            synopsis="List the existing roles in this backend.",
            description="Roles will be listed by the role name.",
        ),
        Path("roles", operations=listing, synopsis="List the existing roles in this backend."),
        Path(
            "roles/{name}",
            fields=ROLE_FIELDS,
            existence_check=role_exists,
            operations={
                Operation.READ: op(read_role, "Read a role."),
                Operation.CREATE: op(write_role, "Create a role (omitted fields take their defaults)."),
                Operation.UPDATE: op(write_role, "Replace a role (omitted fields take their defaults)."),
                Operation.PATCH: op(patch_role, "Change some parameters of a role."),
                Operation.DELETE: op(delete_role, "Delete a role."),
            },
            synopsis="Manage the roles that can be created with this backend.",
            description="This path lets you manage the roles that can be created with this backend.",
        ),
    ]
