"""The token auth method (``auth/token/``): create, look up, renew and revoke tokens, and token roles.

Tokens themselves live in :class:`~strongroom.core.tokens.TokenStore` (``core.tokens``);
this backend is the HTTP face of it, with Vault's rules for who may create what:
policy subsets, orphans, periods, batch tokens, num_uses and roles. TTLs come from
:func:`strongroom.core.ttl.calculate_ttl`. Responses that carry a token do so in an
``auth`` block; token values never appear in logs or error messages.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from strongroom.cidrs import render_cidr
from strongroom.core.core import MountSystemView
from strongroom.core.tokens import (
    BATCH,
    DEFAULT_BATCH,
    DEFAULT_SERVICE,
    ROOT_PATH,
    SERVICE,
    SERVICE_PREFIX,
    TOKEN_TYPES_FOR_ROLES,
    TokenEntry,
    TokenRole,
    TokenStore,
    list_contains_glob,
    remove_duplicates,
    sanitize_policies,
)
from strongroom.core.ttl import TTLSystemView, calculate_ttl
from strongroom.framework import (
    Field,
    FieldData,
    FieldType,
    FrameworkBackend,
    Path,
    PathOperation,
    operations,
)
from strongroom.logical.backend import BackendConfig, SpecialPaths
from strongroom.logical.errors import (
    CodedError,
    StrongroomError,
    UnsupportedOperation,
    UnsupportedPath,
    UserError,
)
from strongroom.logical.request import Auth, Operation, Request, Response

if TYPE_CHECKING:
    from strongroom.core.core import Core

log = logging.getLogger("strongroom.token")

_NON_ASSIGNABLE = frozenset({"response-wrapping", "control-group"})
_DISPLAY_NAME_SANITIZE = re.compile(r"[^a-zA-Z0-9-]")
_PATH_SUFFIX_TEXT = r"\w[\w-.]+\w"  # as Vault prints it (Go's RE2 syntax)
_PATH_SUFFIX_RE = re.compile(r"\w[\w\-.]+\w")
_CUSTOM_ID_WARNING = (
    "Supplying a custom ID for the token uses the weaker SHA1 hashing instead of the more secure "
    "SHA2-256 HMAC for token obfuscation. SHA1 hashed tokens on the wire leads to less secure lookups."
)
_TIDY_STARTED = (
    "Tidy operation successfully started. Any information from the operation will be printed to "
    "Vault's server logs."
)

S = FieldType.STRING
_CREATE_FIELDS: dict[str, Field] = {
    "display_name": Field(S, "Name to associate with this token"),
    "explicit_max_ttl": Field(FieldType.DURATION, "Explicit Max TTL of this token"),
    "entity_alias": Field(S, "Name of the entity alias to associate with this token"),
    "num_uses": Field(FieldType.INT, "Max number of uses for this token"),
    "period": Field(FieldType.DURATION, "Renew period"),
    "renewable": Field(
        FieldType.BOOL,
        "Allow token to be renewed past its initial TTL up to system/mount maximum TTL",
        default=True,
    ),
    "ttl": Field(FieldType.DURATION, "Time to live for this token"),
    "lease": Field(FieldType.DURATION, "Use 'ttl' instead.", deprecated=True),
    "type": Field(S, "Token type"),
    "no_default_policy": Field(FieldType.BOOL, "Do not include default policy for this token"),
    "id": Field(S, "Value for the token", sensitive=True),
    "meta": Field(FieldType.KV_PAIRS, "Arbitrary key=value metadata to associate with the token"),
    "metadata": Field(FieldType.KV_PAIRS, "Arbitrary key=value metadata to associate with the token"),
    "no_parent": Field(FieldType.BOOL, "Create the token with no parent"),
    "policies": Field(FieldType.COMMA_LIST, "List of policies for the token"),
    "format": Field(S, "Return json formatted output", query=True),
}
_ROLE_NAME = Field(S, "Name of the role")
_TOKEN_FIELD = Field(S, "Token to look up (request body)", sensitive=True)
_ACCESSOR_FIELD = Field(S, "Accessor of the token (request body)")
_INCREMENT_FIELD = Field(
    FieldType.DURATION, "The desired increment in seconds to the token expiration", default=0
)
_ROLE_FIELDS: dict[str, Field] = {
    "role_name": _ROLE_NAME,
    "allowed_policies": Field(FieldType.COMMA_LIST, "Policies tokens of this role may have"),
    "disallowed_policies": Field(FieldType.COMMA_LIST, "Policies tokens of this role may not have"),
    "allowed_policies_glob": Field(FieldType.COMMA_LIST, "Glob patterns of allowed policies"),
    "disallowed_policies_glob": Field(FieldType.COMMA_LIST, "Glob patterns of disallowed policies"),
    "orphan": Field(FieldType.BOOL, "If true, tokens created against this role are orphans"),
    "period": Field(FieldType.DURATION, "Use 'token_period' instead.", deprecated=True),
    "path_suffix": Field(S, "Suffix added to the path of tokens created against this role"),
    "explicit_max_ttl": Field(FieldType.DURATION, "Use 'token_explicit_max_ttl' instead.", deprecated=True),
    "renewable": Field(FieldType.BOOL, "Tokens created against this role may be renewed", default=True),
    "bound_cidrs": Field(FieldType.COMMA_LIST, "Use 'token_bound_cidrs' instead.", deprecated=True),
    "allowed_entity_aliases": Field(
        FieldType.COMMA_LIST, "Entity aliases (globs allowed) usable during token creation"
    ),
    "token_bound_cidrs": Field(FieldType.COMMA_LIST, "CIDR blocks the tokens are bound to"),
    "token_explicit_max_ttl": Field(FieldType.DURATION, "Hard cap on the lifetime of the tokens"),
    "token_no_default_policy": Field(FieldType.BOOL, "Do not add the default policy"),
    "token_num_uses": Field(FieldType.INT, "Maximum number of uses of the tokens (0: unlimited)"),
    "token_period": Field(FieldType.DURATION, "Make the tokens periodic with this period"),
    "token_type": Field(S, "service, batch, default-service or default-batch"),
}


def rfc3339(ts: float) -> str:
    """A timestamp as Go marshals a ``time.Time`` (RFC 3339, fractional seconds trimmed), in UTC."""
    dt = datetime.fromtimestamp(ts, UTC)
    frac = f"{dt.microsecond:06d}".rstrip("0")
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + (f".{frac}" if frac else "") + "Z"


def _go_quote_list(items: list[str]) -> str:
    """Go's ``%q`` of a ``[]string``: ``["a" "b"]``."""
    return "[" + " ".join(f'"{item}"' for item in items) + "]"


def _parse_cidrs(values: list[str], field_name: str) -> list[str]:
    """Validate IPs / CIDRs (``parseutil.ParseAddrs``) and render them like go-sockaddr."""
    out: list[str] = []
    for value in values:
        try:
            out.append(render_cidr(value.strip()))
        except ValueError:
            raise UserError(f"error parsing role fields: invalid address in {field_name}") from None
    return out


def _has_lease(entry: TokenEntry) -> bool:
    """Vault keeps a lease for every token except the root tokens of init / generate-root."""
    return entry.type == BATCH or entry.path != ROOT_PATH


class TokenBackend(FrameworkBackend):
    """The ``token`` auth method, mounted once at ``auth/token/``."""

    backend_type = "token"
    extra_special_paths = SpecialPaths(root=("revoke-orphan/*", "accessors*"))
    help_text = "The token credential backend is always enabled and builtin to Vault."

    def __init__(self, config: BackendConfig, core: Core) -> None:
        self.core = core
        self._tidy_task: asyncio.Task[None] | None = None
        super().__init__(config)

    @property
    def tokens(self) -> TokenStore:
        return self.core.tokens

    @property
    def tidy_task(self) -> asyncio.Task[None] | None:
        """The running (or last) tidy, so callers and tests can await it."""
        return self._tidy_task

    async def cleanup(self) -> None:
        if self._tidy_task is not None and not self._tidy_task.done():
            self._tidy_task.cancel()

    # -- declarations ------------------------------------------------------------------------

    def build_paths(self) -> list[Path]:
        def op(handler: Any, summary: str = "") -> PathOperation:
            return PathOperation(handler, summary=summary)

        create_orphan_fields = {**_CREATE_FIELDS, "role_name": _ROLE_NAME}
        return [
            Path(
                "roles/",
                operations(list=op(self._roles_list, "List token roles")),
                synopsis="This endpoint lists configured roles.",
            ),
            Path(
                "accessors/",
                operations(list=op(self._accessors_list, "List token accessors")),
                synopsis="List token accessors, which can then be used to look up or revoke tokens.",
                sudo=True,
            ),
            Path(
                "create-orphan",
                operations(update=op(self._create_orphan, "Create an orphan token")),
                fields=create_orphan_fields,
                synopsis="The token create path is used to create new orphan tokens.",
            ),
            Path(
                "create/{role_name}",
                operations(update=op(self._create_against_role, "Create a token against a role")),
                fields=create_orphan_fields,
                synopsis="This token create path is used to create new tokens adhering to the given role.",
            ),
            Path(
                "create",
                operations(update=op(self._create, "Create a token")),
                fields=_CREATE_FIELDS,
                synopsis="The token create path is used to create new tokens.",
            ),
            Path(
                "lookup",
                operations(read=op(self._lookup), update=op(self._lookup, "Look up a token")),
                fields={"token": _TOKEN_FIELD},
                synopsis="This endpoint will lookup a token and its properties.",
            ),
            Path(
                "lookup/{token:path}",
                operations(read=op(self._lookup), update=op(self._lookup)),
                fields={"token": _TOKEN_FIELD},
                synopsis="Deprecated: look up a token given in the path.",
            ),
            Path(
                "lookup-accessor",
                operations(update=op(self._lookup_accessor, "Look up a token by its accessor")),
                fields={"accessor": _ACCESSOR_FIELD},
                synopsis="This endpoint will lookup a token associated with the given accessor and its properties.",
            ),
            Path(
                "lookup-self",
                operations(
                    read=op(self._lookup_self), update=op(self._lookup_self, "Look up the calling token")
                ),
                fields={
                    "token": Field(S, "Token to look up (unused, does not need to be set)", sensitive=True)
                },
                synopsis="This endpoint will lookup a token and its properties.",
            ),
            Path(
                "revoke-accessor",
                operations(update=op(self._revoke_accessor, "Revoke a token by its accessor")),
                fields={"accessor": _ACCESSOR_FIELD},
                synopsis="This endpoint will delete the token associated with the accessor and all of its child tokens.",
            ),
            Path(
                "revoke-self",
                operations(update=op(self._revoke_self, "Revoke the calling token")),
                synopsis="This endpoint will delete the token used to call it and all of its child tokens.",
            ),
            Path(
                "revoke",
                operations(update=op(self._revoke, "Revoke a token and its children")),
                fields={"token": _TOKEN_FIELD},
                synopsis="This endpoint will delete the given token and all of its child tokens.",
            ),
            Path(
                "revoke-orphan",
                operations(update=op(self._revoke_orphan, "Revoke a token, orphaning its children")),
                fields={"token": _TOKEN_FIELD},
                synopsis="This endpoint will delete the token and orphan its child tokens.",
            ),
            Path(
                "renew-accessor",
                operations(update=op(self._renew_accessor, "Renew a token by its accessor")),
                fields={"accessor": _ACCESSOR_FIELD, "increment": _INCREMENT_FIELD},
                synopsis="This endpoint will renew a token associated with the given accessor and its properties.",
            ),
            Path(
                "renew-self",
                operations(update=op(self._renew_self, "Renew the calling token")),
                fields={
                    "token": Field(S, "Token to renew (unused, does not need to be set)", sensitive=True),
                    "increment": _INCREMENT_FIELD,
                },
                synopsis="This endpoint will renew the token used to call it and prevent expiration.",
            ),
            Path(
                "renew",
                operations(update=op(self._renew, "Renew a token")),
                fields={"token": _TOKEN_FIELD, "increment": _INCREMENT_FIELD},
                synopsis="This endpoint will renew the given token and prevent expiration.",
            ),
            Path(
                "tidy",
                operations(update=op(self._tidy, "Tidy the token store")),
                synopsis="This endpoint performs cleanup tasks that can be run if certain error conditions have occurred.",
            ),
            Path(
                "roles/{role_name}",
                operations(
                    read=op(self._role_read, "Read a token role"),
                    create=op(self._role_write, "Create a token role"),
                    update=op(self._role_write, "Update a token role"),
                    delete=op(self._role_delete, "Delete a token role"),
                ),
                fields=_ROLE_FIELDS,
                existence_check=self._role_exists,
                synopsis="This endpoint allows creating, reading, and deleting roles.",
            ),
        ]

    # -- create ------------------------------------------------------------------------------

    async def _create(self, req: Request, d: FieldData) -> Response | None:
        return await self._create_common(req, d, orphan=False, role=None)

    async def _create_orphan(self, req: Request, d: FieldData) -> Response | None:
        return await self._create_common(req, d, orphan=True, role=None)

    async def _create_against_role(self, req: Request, d: FieldData) -> Response | None:
        name = str(d.get("role_name"))
        role = await self.tokens.get_role(name)
        if role is None:
            raise UserError(f"unknown role {name}")
        return await self._create_common(req, d, orphan=False, role=role)

    async def _caller(self, req: Request) -> TokenEntry | None:
        if isinstance(req.token_entry, TokenEntry):
            return req.token_entry
        return await self.tokens.lookup(req.client_token) if req.client_token else None

    async def _create_common(
        self, req: Request, d: FieldData, *, orphan: bool, role: TokenRole | None
    ) -> Response:
        """Vault's ``handleCreateCommon``: every rule a new token must pass, in Vault's order."""
        parent = await self._caller(req)
        if parent is None:
            raise UserError("parent token lookup failed: no parent found")
        if parent.type == BATCH:
            raise UserError("batch tokens cannot create more tokens")
        if parent.num_uses > 0:
            raise UserError("restricted use token cannot generate child tokens")
        is_sudo = req.is_sudo or req.is_root

        renewable = bool(d.get("renewable"))
        num_uses = int(d.get("num_uses"))
        explicit_max_ttl = int(d.get("explicit_max_ttl"))
        period = int(d.get("period"))
        ttl_value = int(d.get("ttl")) if d.sent("ttl") else int(d.get("lease"))

        requested_type = str(d.get("type"))
        if role is not None:
            if role.token_type == DEFAULT_BATCH and not requested_type:
                requested_type = BATCH
            elif role.token_type in (SERVICE, BATCH):
                requested_type = role.token_type
            elif role.token_type != DEFAULT_SERVICE:
                raise UserError(
                    f'role being used for token creation contains invalid token type "{role.token_type}"'
                )
        if requested_type in ("", SERVICE):
            kind = SERVICE
        elif requested_type == BATCH:
            for name, value in (
                ("explicit_max_ttl", explicit_max_ttl),
                ("num_uses", num_uses),
                ("period", period),
            ):
                if value != 0:
                    raise UserError(f'batch tokens cannot have "{name}" set')
            kind = BATCH
            renewable = False
        else:
            raise UserError("invalid 'token_type' value")

        if num_uses < 0:
            raise UserError("number of uses cannot be negative")

        explicit_entity_id = ""
        entity_alias = str(d.get("entity_alias"))
        if entity_alias:
            if role is None:
                raise UserError("'entity_alias' is only allowed in combination with token role")
            lowered = entity_alias.lower()
            allowed = role.allowed_entity_aliases or []
            if lowered not in allowed and not list_contains_glob(allowed, lowered):
                raise UserError("invalid 'entity_alias' value")
            explicit_entity_id = await self._entity_for_alias(req, entity_alias)

        now = time.time()
        meta = dict(d.get("meta")) if d.sent("meta") else dict(d.get("metadata"))
        te = TokenEntry(
            id="",
            parent=parent.id,
            path=f"auth/token/{req.path}",
            meta=meta,
            display_name="token",
            num_uses=num_uses,
            creation_time=now,
            type=kind,
        )
        if entity_alias and not explicit_entity_id:
            te.internal_meta["entity_alias"] = entity_alias

        if role is not None:
            te.role = role.name
            if renewable and not role.renewable:
                renewable = False
            if role.token_num_uses and (te.num_uses == 0 or role.token_num_uses < te.num_uses):
                te.num_uses = role.token_num_uses
            if role.path_suffix:
                te.path = f"{te.path}/{role.path_suffix}"

        display_name = str(d.get("display_name"))
        if display_name:
            full = _DISPLAY_NAME_SANITIZE.sub("-", "token-" + display_name)
            te.display_name = full.removesuffix("-")

        custom_id = str(d.get("id"))
        if custom_id:
            if not is_sudo:
                raise UserError("root or sudo privileges required to specify token id")
            te.id = custom_id

        resp = Response()
        te.policies = self._final_policies(d, parent, role, is_sudo)
        for policy in te.policies:
            if policy in _NON_ASSIGNABLE:
                raise UserError(f'cannot assign policy "{policy}"')
        if "root" in te.policies:
            if "root" not in parent.policies:
                raise UserError("root tokens may not be created without parent token being root")
            if te.type == BATCH:
                raise UserError("batch tokens cannot be root tokens")

        if role is not None:
            if role.orphan:
                te.parent = ""
            if role.token_bound_cidrs:
                te.bound_cidrs = list(role.token_bound_cidrs)
        elif d.get("no_parent"):
            if not is_sudo:
                raise UserError("root or sudo privileges required to create orphan token")
            te.parent = ""
        elif orphan:
            te.parent = ""

        if explicit_entity_id:
            te.entity_id = explicit_entity_id
        elif te.parent:
            te.entity_id = parent.entity_id
            if role is None:
                te.bound_cidrs = list(parent.bound_cidrs)

        explicit_to_use = 0
        if d.sent("explicit_max_ttl"):
            te.explicit_max_ttl = explicit_max_ttl
            explicit_to_use = explicit_max_ttl
        period_to_use = 0
        if period > 0:
            if not is_sudo:
                raise UserError("root or sudo privileges required to create periodic token")
            te.period = period
            period_to_use = period
        te.ttl = ttl_value

        if role is not None and te.type != BATCH:
            if role.token_explicit_max_ttl:
                if explicit_to_use == 0:
                    explicit_to_use = role.token_explicit_max_ttl
                else:
                    explicit_to_use = min(explicit_to_use, role.token_explicit_max_ttl)
                    resp.add_warning(
                        "Explicit max TTL specified both during creation call and in role; "
                        f"using the lesser value of {explicit_to_use} seconds"
                    )
            if role.token_period:
                if period_to_use == 0:
                    period_to_use = role.token_period
                else:
                    period_to_use = min(period_to_use, role.token_period)
                    resp.add_warning(
                        "Period specified both during creation call and in role; "
                        f"using the lesser value of {period_to_use} seconds"
                    )

        if period_to_use > 0 or te.ttl > 0 or "root" not in te.policies:
            ttl, warnings = calculate_ttl(
                self.config.system, 0, te.ttl, period_to_use, 0, explicit_to_use, start_time=now, now=now
            )
            resp.warnings.extend(warnings)
            te.ttl = ttl
        if te.ttl == 0 and explicit_to_use > 0:
            te.ttl = explicit_to_use
        if te.ttl == 0:
            if parent.creation_ttl or parent.ttl or parent.expire_time:
                raise UserError("expiring root tokens cannot create non-expiring root tokens")
            renewable = False
            te.bound_cidrs = []

        if te.id:
            resp.add_warning(_CUSTOM_ID_WARNING)
            if te.type == SERVICE:
                await self._check_custom_id(te.id)

        te.orphan = not te.parent
        te.renewable = renewable
        te.creation_ttl = te.ttl
        te.expire_time = now + te.ttl if te.ttl else 0.0
        entry = await self.tokens.create(te)

        for policy in entry.policies:
            if not await self._policy_exists(policy):
                resp.add_warning(f'Policy "{policy}" does not exist')
        resp.auth = await auth_block(
            self.core,
            entry,
            client_token=entry.id,
            ttl=entry.ttl,
            renewable=renewable,
            period=period_to_use,
            explicit_max_ttl=explicit_to_use,
        )
        return resp

    @staticmethod
    def _final_policies(d: FieldData, parent: TokenEntry, role: TokenRole | None, is_sudo: bool) -> list[str]:
        """The new token's policies: role allow/deny lists, else parent subset (unless sudo)."""
        requested: list[str] = list(d.get("policies"))
        no_default = bool(d.get("no_default_policy"))
        add_default = False
        if role is not None and (
            role.allowed_policies
            or role.disallowed_policies
            or role.allowed_policies_glob
            or role.disallowed_policies_glob
        ):
            local_add_default = (
                not no_default
                and not role.token_no_default_policy
                and "default" not in role.disallowed_policies
                and not list_contains_glob(role.disallowed_policies_glob, "default")
            )
            final = sanitize_policies(requested, local_add_default) if requested else []
            if role.allowed_policies or role.allowed_policies_glob:
                role_policies = sanitize_policies(role.allowed_policies, local_add_default)
                if not final:
                    final = role_policies
                else:
                    role_globs = sanitize_policies(role.allowed_policies_glob, False)
                    for policy in final:
                        if policy not in role_policies and not list_contains_glob(role_globs, policy):
                            raise UserError(
                                f"token policies ({_go_quote_list(final)}) must be subset of the role's "
                                f"allowed policies ({_go_quote_list(role_policies)}) or glob policies "
                                f"({_go_quote_list(role_globs)})"
                            )
            elif not final:
                final = sanitize_policies(parent.policies, local_add_default)
            if role.disallowed_policies or role.disallowed_policies_glob:
                denied = remove_duplicates(role.disallowed_policies)
                denied_globs = remove_duplicates(role.disallowed_policies_glob)
                for policy in final:
                    if policy in denied or list_contains_glob(denied_globs, policy):
                        raise UserError(f'token policy "{policy}" is disallowed by this role')
            requested = final
        elif not requested:
            requested = sanitize_policies(parent.policies, False)
        elif not is_sudo:
            wanted = sanitize_policies(requested, False)
            held = set(sanitize_policies(parent.policies, False))
            if not set(wanted) <= held:
                raise UserError("child policies must be subset of parent")
            if not no_default and "default" in parent.policies:
                add_default = True
        else:
            add_default = not no_default
        policies = sanitize_policies(requested, add_default)
        if no_default:
            policies = [p for p in policies if p != "default"]
        return policies

    async def _check_custom_id(self, token_id: str) -> None:
        if token_id.startswith(SERVICE_PREFIX):
            raise UserError("custom token ID cannot have the 'hvs.' prefix")
        if token_id.startswith("s."):
            raise UserError("custom token ID cannot have the 's.' prefix")
        if "." in token_id:
            raise UserError("custom token ID cannot have a '.' in the value")
        if len(token_id) > 16384 or await self.tokens.exists(token_id):
            raise UserError("cannot create a token with a duplicate ID")

    async def _policy_exists(self, name: str) -> bool:
        try:
            return await self.core.policies.get_text(name) is not None
        except (ValueError, StrongroomError):
            return False

    async def _entity_for_alias(self, req: Request, alias: str) -> str:
        """The entity id for ``alias`` on this mount, when an identity store is wired in."""
        identity = self.core.identity
        fetch = getattr(identity, "create_or_fetch_entity", None) if identity is not None else None
        if fetch is None:
            return ""
        entity = await fetch(alias_name=alias, mount_accessor=req.mount_accessor, mount_type=req.mount_type)
        if entity is None:
            raise StrongroomError("failed to create or fetch entity from given entity alias")
        if isinstance(entity, dict):
            entity_id, disabled = entity.get("id", ""), entity.get("disabled", False)
        else:
            entity_id, disabled = getattr(entity, "id", ""), getattr(entity, "disabled", False)
        if disabled:
            raise CodedError(403, "entity from given entity alias is disabled")
        return str(entity_id)

    # -- lookup ------------------------------------------------------------------------------

    async def _lookup(self, req: Request, d: FieldData) -> Response | None:
        token_id = str(d.get("token")) or req.client_token
        if not token_id:
            raise UserError("missing token ID")
        entry = await self.tokens.lookup(token_id)
        if entry is None:
            raise CodedError(403, "bad token")
        return Response(data=await self._lookup_data(req, entry))

    async def _lookup_self(self, req: Request, d: FieldData) -> Response | None:
        entry = await self._caller(req)
        if entry is None:
            raise CodedError(403, "bad token")
        return Response(data=await self._lookup_data(req, entry))

    async def _lookup_accessor(self, req: Request, d: FieldData) -> Response | None:
        accessor = str(d.get("accessor"))
        if not accessor:
            raise UserError("missing accessor")
        raw = await self.tokens.lookup_accessor(accessor)
        if raw is None:
            raise UserError("invalid accessor")
        entry = await self.tokens.lookup(raw.id)
        if entry is None:
            raise CodedError(403, "bad token")
        data = await self._lookup_data(req, entry)
        data["id"] = ""
        return Response(data=data)

    async def _lookup_data(self, req: Request, entry: TokenEntry) -> dict[str, Any]:
        """Vault's lookup fields, in Vault's shapes (unix ints, RFC 3339 strings, nulls)."""
        # core spends a use before the handler runs, so the caller's own entry already
        # shows it; the last use shows as -1, as in Vault
        num_uses = entry.num_uses
        data: dict[str, Any] = {
            "id": entry.id,
            "accessor": entry.accessor,
            "policies": list(entry.policies),
            "path": entry.path,
            "meta": dict(entry.meta) or None,
            "display_name": entry.display_name,
            "num_uses": num_uses,
            "orphan": not entry.parent,
            "creation_time": int(entry.creation_time),
            "creation_ttl": entry.creation_ttl or (entry.ttl if not entry.last_renewal else 0),
            "expire_time": None,
            "ttl": 0,
            "explicit_max_ttl": entry.explicit_max_ttl,
            "entity_id": entry.entity_id,
            "type": entry.type,
        }
        if entry.role:
            data["role"] = entry.role
        if entry.period:
            data["period"] = entry.period
        if entry.bound_cidrs:
            data["bound_cidrs"] = list(entry.bound_cidrs)
        if _has_lease(entry):
            now = time.time()
            if entry.last_renewal:
                data["last_renewal_time"] = int(entry.last_renewal)
                data["last_renewal"] = rfc3339(entry.last_renewal)
            if entry.expire_time:
                data["expire_time"] = rfc3339(entry.expire_time)
                data["ttl"] = max(0, int(entry.expire_time - round(now)))
            data["renewable"] = self._lease_renewable(entry, now)
            data["issue_time"] = rfc3339(entry.creation_time)
        identity_policies = await identity_policies_for(self.core, entry)
        if identity_policies:
            data["identity_policies"] = identity_policies
        return data

    @staticmethod
    def _lease_renewable(entry: TokenEntry, now: float) -> bool:
        if entry.type == BATCH or not entry.expire_time or entry.expired(now):
            return False
        return entry.renewable

    # -- renew -------------------------------------------------------------------------------

    async def _renew(self, req: Request, d: FieldData) -> Response | None:
        token_id = str(d.get("token"))
        if not token_id:
            raise UserError("missing token ID")
        return await self._renew_token(req, token_id, int(d.get("increment")))

    async def _renew_self(self, req: Request, d: FieldData) -> Response | None:
        return await self._renew_token(req, req.client_token, int(d.get("increment")))

    async def _renew_accessor(self, req: Request, d: FieldData) -> Response | None:
        accessor = str(d.get("accessor"))
        if not accessor:
            raise UserError("missing accessor")
        raw = await self.tokens.lookup_accessor(accessor)
        if raw is None:
            raise UserError("invalid accessor")
        resp = await self._renew_token(req, raw.id, int(d.get("increment")))
        if resp.auth is not None:
            resp.auth.client_token = ""
        return resp

    async def _renew_token(self, req: Request, token_id: str, increment: int) -> Response:
        entry = await self.tokens.lookup(token_id) if token_id else None
        if entry is None:
            raise UserError("token not found")
        if entry.type == BATCH:
            raise UserError("batch tokens cannot be renewed")
        method_auth = await self._ask_issuing_method(req, entry)
        return await renew_token(
            self.core, entry, increment, token_system=self.config.system, method_auth=method_auth
        )

    async def _ask_issuing_method(self, req: Request, entry: TokenEntry) -> Auth | None:
        """Let the auth method that logged the token in refuse or shape its renewal, as Vault does.

        A cert token renews only with the certificate that logged in; a method may check that
        its user or role still exists, and answers with the TTL, max TTL and period the token
        renews with now (a user's changed ``token_ttl`` applies at the next renewal). A method
        that declares no renew handler has no say (None).
        """
        if not entry.path.startswith("auth/") or entry.path.startswith("auth/token/"):
            return None
        routed = self.core.router.match(entry.path)
        if routed is None:
            raise UserError("the auth method that issued this token is no longer mounted")
        route, rel = routed
        auth = Auth(
            policies=list(entry.policies),
            token_policies=list(entry.policies),
            metadata=dict(entry.meta),
            display_name=entry.display_name,
            internal_data=dict(entry.internal_meta.get("auth_internal_data") or {}),
            entity_id=entry.entity_id,
            client_token=entry.id,
            accessor=entry.accessor,
            ttl=entry.ttl,
            max_ttl=int(entry.internal_meta.get("max_ttl", 0) or 0),
            period=entry.period,
        )
        renew = Request(
            operation=Operation.RENEW,
            path=rel,
            storage=route.storage,
            auth=auth,
            connection=req.connection,
            mount_point=route.entry.route_path,
            mount_type=route.entry.type,
            mount_accessor=route.entry.accessor,
            request_id=req.request_id,
        )
        try:
            resp = await route.backend.handle_request(renew)
        except (UnsupportedPath, UnsupportedOperation):
            return None
        return resp.auth if resp is not None else None

    # -- revoke ------------------------------------------------------------------------------

    async def _revoke(self, req: Request, d: FieldData) -> Response | None:
        token_id = str(d.get("token"))
        if not token_id:
            raise UserError("missing token ID")
        return await self._revoke_tree(token_id)

    async def _revoke_self(self, req: Request, d: FieldData) -> Response | None:
        return await self._revoke_tree(req.client_token)

    async def _revoke_tree(self, token_id: str) -> Response | None:
        entry = await self.tokens.lookup(token_id) if token_id else None
        if entry is None:
            return None
        if entry.type == BATCH:
            raise UserError("batch tokens cannot be revoked")
        await self.core.revoke_token(entry)
        return None

    async def _revoke_accessor(self, req: Request, d: FieldData) -> Response | None:
        accessor = str(d.get("accessor"))
        if not accessor:
            raise UserError("missing accessor")
        raw = await self.tokens.lookup_accessor(accessor)
        if raw is None:
            return Response(warnings=["No token found with this accessor"])
        entry = await self.tokens.lookup(raw.id)
        if entry is None:
            raise UserError("token not found")
        await self.core.revoke_token(entry)
        return None

    async def _revoke_orphan(self, req: Request, d: FieldData) -> Response | None:
        token_id = str(d.get("token"))
        if not token_id:
            raise UserError("missing token ID")
        if not (req.is_sudo or req.is_root):
            raise UserError("root or sudo privileges required to revoke and orphan")
        entry = await self.tokens.lookup(token_id)
        if entry is None:
            raise UserError("token to revoke not found")
        if entry.type == BATCH:
            raise UserError("batch tokens cannot be revoked")
        await self.core.revoke_token(entry, orphan_children=True)
        return None

    # -- accessors and tidy ------------------------------------------------------------------

    async def _accessors_list(self, req: Request, d: FieldData) -> Response | None:
        return Response(data={"keys": await self.tokens.accessors()})

    async def _tidy(self, req: Request, d: FieldData) -> Response | None:
        if self._tidy_task is not None and not self._tidy_task.done():
            return Response(warnings=["Tidy operation already in progress."])
        self._tidy_task = asyncio.create_task(self._run_tidy())
        return Response(warnings=[_TIDY_STARTED], status=202)

    async def _run_tidy(self) -> None:
        log.info("beginning tidy operation on tokens")
        try:
            report = await self.tokens.tidy()
            expiration = self.core.expiration
            for token_id in report.dangling_token_ids:
                if expiration is not None:
                    await expiration.revoke_by_token(TokenEntry(id=token_id))
            for entry in report.expired:
                if await self.tokens.lookup_raw(entry.id) is not None:
                    await self.core.revoke_token(entry)
            log.info(
                "finished tidy operation on tokens: %d parent index entries deleted, %d children orphaned, "
                "%d accessor entries deleted, %d expired tokens revoked",
                report.parent_indexes_deleted,
                report.children_orphaned,
                report.accessors_deleted,
                len(report.expired),
            )
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("error running tidy")

    # -- roles -------------------------------------------------------------------------------

    async def _role_exists(self, req: Request, d: FieldData) -> bool:
        return await self.tokens.get_role(str(d.get("role_name"))) is not None

    async def _roles_list(self, req: Request, d: FieldData) -> Response | None:
        return Response(data={"keys": await self.tokens.list_roles()})

    async def _role_delete(self, req: Request, d: FieldData) -> Response | None:
        await self.tokens.delete_role(str(d.get("role_name")))
        return None

    async def _role_read(self, req: Request, d: FieldData) -> Response | None:
        role = await self.tokens.get_role(str(d.get("role_name")))
        if role is None:
            return None
        data: dict[str, Any] = {
            "period": role.period,
            "token_period": role.token_period,
            "explicit_max_ttl": role.explicit_max_ttl,
            "token_explicit_max_ttl": role.token_explicit_max_ttl,
            "disallowed_policies": list(role.disallowed_policies),
            "allowed_policies": list(role.allowed_policies),
            "disallowed_policies_glob": list(role.disallowed_policies_glob),
            "allowed_policies_glob": list(role.allowed_policies_glob),
            "name": role.name,
            "orphan": role.orphan,
            "path_suffix": role.path_suffix,
            "renewable": role.renewable,
            "token_type": role.token_type,
            "allowed_entity_aliases": role.allowed_entity_aliases,
            "token_no_default_policy": role.token_no_default_policy,
        }
        if role.token_bound_cidrs:
            data["token_bound_cidrs"] = list(role.token_bound_cidrs)
        if role.bound_cidrs:
            data["bound_cidrs"] = list(role.bound_cidrs)
        if role.token_num_uses > 0:
            data["token_num_uses"] = role.token_num_uses
        return Response(data=data)

    async def _role_write(self, req: Request, d: FieldData) -> Response | None:
        """Create or update a role; only the fields sent change on update."""
        name = str(d.get("role_name"))
        if not name:
            raise UserError("role name cannot be empty")
        role = await self.tokens.get_role(name) or TokenRole(name=name)
        resp = Response()

        if d.sent("orphan"):
            role.orphan = bool(d.get("orphan"))
        if d.sent("renewable"):
            role.renewable = bool(d.get("renewable"))
        if d.sent("path_suffix"):
            suffix = str(d.get("path_suffix"))
            if suffix and _PATH_SUFFIX_RE.search(suffix) is None:
                raise UserError(
                    f"given role path suffix contains invalid characters; must match {_PATH_SUFFIX_TEXT}"
                )
            role.path_suffix = suffix
        if ".." in role.path_suffix:
            raise UserError("error registering path suffix: path cannot contain parent references")
        if d.sent("allowed_policies"):
            role.allowed_policies = sanitize_policies(d.get("allowed_policies"), False)
        if d.sent("disallowed_policies"):
            role.disallowed_policies = remove_duplicates(d.get("disallowed_policies"))
        if d.sent("allowed_policies_glob"):
            role.allowed_policies_glob = sanitize_policies(d.get("allowed_policies_glob"), False)
        if d.sent("disallowed_policies_glob"):
            role.disallowed_policies_glob = remove_duplicates(d.get("disallowed_policies_glob"))

        if d.sent("token_type"):
            role_type = str(d.get("token_type"))
            if role_type not in TOKEN_TYPES_FOR_ROLES:
                raise UserError(f"invalid 'token_type' value \"{role_type}\"")
            role.token_type = role_type
        if d.sent("token_no_default_policy"):
            role.token_no_default_policy = bool(d.get("token_no_default_policy"))
        if d.sent("token_num_uses"):
            num_uses = int(d.get("token_num_uses"))
            if num_uses < 0:
                raise UserError("error parsing role fields: 'token_num_uses' cannot be negative")
            role.token_num_uses = num_uses

        if d.sent("token_period"):
            role.token_period = int(d.get("token_period"))
            role.period = 0
            if d.sent("period"):
                resp.add_warning(
                    "Both 'token_period' and deprecated 'period' value supplied, ignoring the deprecated value"
                )
        elif d.sent("period"):
            role.period = role.token_period = int(d.get("period"))

        if d.sent("token_bound_cidrs"):
            role.token_bound_cidrs = _parse_cidrs(d.get("token_bound_cidrs"), "token_bound_cidrs")
            role.bound_cidrs = []
            if d.sent("bound_cidrs"):
                resp.add_warning(
                    "Both 'token_bound_cidrs' and deprecated 'bound_cidrs' value supplied, ignoring the deprecated value"
                )
        elif d.sent("bound_cidrs"):
            role.bound_cidrs = _parse_cidrs(d.get("bound_cidrs"), "bound_cidrs")
            role.token_bound_cidrs = list(role.bound_cidrs)

        if d.sent("token_explicit_max_ttl"):
            role.token_explicit_max_ttl = int(d.get("token_explicit_max_ttl"))
            role.explicit_max_ttl = 0
            final_explicit = role.token_explicit_max_ttl
            if d.sent("explicit_max_ttl"):
                resp.add_warning(
                    "Both 'token_explicit_max_ttl' and deprecated 'explicit_max_ttl' value supplied, "
                    "ignoring the deprecated value"
                )
        else:
            if d.sent("explicit_max_ttl"):
                role.explicit_max_ttl = role.token_explicit_max_ttl = int(d.get("explicit_max_ttl"))
            final_explicit = role.explicit_max_ttl
        system_max = self.config.system.max_lease_ttl()
        if final_explicit and system_max and final_explicit > system_max:
            resp.add_warning(
                f"Given explicit max TTL of {final_explicit} is greater than system/mount allowed value of "
                f"{system_max} seconds; until this is fixed attempting to create tokens against this role "
                "will result in an error"
            )

        if role.token_type == BATCH:
            if not role.orphan:
                raise UserError(
                    "'token_type' cannot be 'batch' when role is set to generate non-orphan tokens"
                )
            if role.period or role.token_period:
                raise UserError("'token_type' cannot be 'batch' when role is set to generate periodic tokens")
            if role.renewable:
                raise UserError(
                    "'token_type' cannot be 'batch' when role is set to generate renewable tokens"
                )
            if role.explicit_max_ttl or role.token_explicit_max_ttl:
                raise UserError(
                    "'token_type' cannot be 'batch' when role is set to generate tokens with an explicit max TTL"
                )

        if d.sent("allowed_entity_aliases"):
            role.allowed_entity_aliases = remove_duplicates(d.get("allowed_entity_aliases"))

        await self.tokens.put_role(role)
        return resp if resp.warnings else None


async def renew_token(
    core: Core,
    entry: TokenEntry,
    increment: int,
    *,
    token_system: TTLSystemView | None = None,
    method_auth: Auth | None = None,
) -> Response:
    """Renew a service token's lease as Vault's ``RenewToken`` does; return the auth block.

    The period and explicit max come from the token's role when it has one (so a
    role change applies at the next renewal), else from the token. The ceiling is
    the issuing mount's ``max_lease_ttl`` (``internal_meta["max_ttl"]`` may lower it).
    ``method_auth`` is the issuing auth method's answer to the renewal: its TTL, max TTL
    and period replace the token's own.
    """
    if entry.type == BATCH:
        raise UserError("batch tokens cannot be renewed")
    now = time.time()
    if not _has_lease(entry):
        raise UserError("invalid lease ID")
    if not entry.expire_time:
        raise UserError("lease is not renewable")
    if entry.expired(now):
        raise UserError("lease expired")
    if not entry.renewable:
        raise UserError("lease is not renewable")

    period, explicit_max_ttl = entry.period, entry.explicit_max_ttl
    if entry.role:
        role = await core.tokens.get_role(entry.role)
        if role is None:
            raise StrongroomError(f'original token role "{entry.role}" could not be found, not renewing')
        period, explicit_max_ttl = role.token_period, role.token_explicit_max_ttl

    system = _system_view_for(core, entry, token_system)
    backend_max_ttl = int(entry.internal_meta.get("max_ttl", 0) or 0)
    backend_ttl = entry.ttl
    if method_auth is not None:
        backend_ttl, backend_max_ttl, period = method_auth.ttl, method_auth.max_ttl, method_auth.period
    ttl, warnings = calculate_ttl(
        system,
        increment,
        backend_ttl,
        period,
        backend_max_ttl,
        explicit_max_ttl,
        start_time=entry.creation_time,
        now=now,
    )
    entry.ttl = ttl
    entry.expire_time = now + ttl
    entry.last_renewal = now
    await core.tokens.update(entry)
    track = getattr(core.expiration, "track_token", None) if core.expiration is not None else None
    if track is not None:
        await track(entry)

    auth = await auth_block(
        core,
        entry,
        client_token=entry.id,
        ttl=ttl,
        renewable=entry.renewable,
        period=period,
        explicit_max_ttl=explicit_max_ttl,
    )
    return Response(auth=auth, warnings=warnings)


async def identity_policies_for(core: Core, entry: TokenEntry) -> list[str]:
    """The policies the token's entity (and its groups) add, when an identity store is wired in."""
    if core.identity is None or not entry.entity_id or entry.no_identity_policies:
        return []
    extra, _ = await core.identity.policies_for(entry.entity_id)
    return [p for p in remove_duplicates(extra) if p != "root"]  # identity can never grant root


async def auth_block(
    core: Core,
    entry: TokenEntry,
    *,
    client_token: str,
    ttl: int,
    renewable: bool,
    period: int,
    explicit_max_ttl: int,
) -> Auth:
    """The ``auth`` block for a created or renewed token (``policies`` include identity ones)."""
    identity_policies = await identity_policies_for(core, entry)
    return Auth(
        client_token=client_token,
        accessor=entry.accessor,
        policies=sanitize_policies([*entry.policies, *identity_policies], False),
        token_policies=list(entry.policies),
        identity_policies=identity_policies,
        metadata=dict(entry.meta),
        display_name=entry.display_name,
        ttl=ttl,
        lease_duration=ttl,
        renewable=renewable,
        entity_id=entry.entity_id,
        token_type=entry.type,
        orphan=not entry.parent,
        num_uses=entry.num_uses,
        period=period,
        explicit_max_ttl=explicit_max_ttl,
        bound_cidrs=list(entry.bound_cidrs),
    )


def _system_view_for(core: Core, entry: TokenEntry, token_system: TTLSystemView | None) -> TTLSystemView:
    """The TTL limits of the mount that issued the token (the token mount for its own tokens)."""
    if entry.path.startswith("auth/token/") and token_system is not None:
        return token_system
    routed = core.router.match(entry.path)
    if routed is not None:
        return MountSystemView(core, routed[0].entry)
    if token_system is not None:
        return token_system
    route = core.router.get("auth/token/")
    if route is not None:
        return MountSystemView(core, route.entry)
    return _CoreDefaults(core)


class _CoreDefaults:
    """The server-wide TTL defaults, when no mount applies."""

    def __init__(self, core: Core) -> None:
        self.core = core

    def default_lease_ttl(self) -> int:
        return self.core.default_lease_ttl

    def max_lease_ttl(self) -> int:
        return self.core.max_lease_ttl


async def factory(config: BackendConfig, core: Core) -> TokenBackend:
    """Build the token backend (``assemble`` registers this for mount type ``token``)."""
    return TokenBackend(config, core)


__all__ = ["TokenBackend", "auth_block", "factory", "identity_policies_for", "renew_token", "rfc3339"]
