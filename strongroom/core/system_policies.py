"""``sys/policies/acl/*``, the legacy ``sys/policy/*`` and ``sys/capabilities*``.

Also home of the helpers other ``sys/`` modules use to see what a token may
do: :func:`token_policies` gathers a token's policies (identity ones
included, as ``Core._authorize`` does) and :func:`has_mount_access` answers
Vault's "does this token have any capability somewhere under this mount?".
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from strongroom.core.acl import ACL, resolve_template
from strongroom.core.policy import (
    DEFAULT_POLICY_NAME,
    IMMUTABLE_POLICY_NAMES,
    NON_ASSIGNABLE_POLICY_NAMES,
    ROOT_POLICY_NAME,
    normalize_policy_name,
)
from strongroom.framework import Field, FieldData, FieldType, Path, PathOperation
from strongroom.logical.errors import UserError
from strongroom.logical.request import Operation, Request, Response

if TYPE_CHECKING:
    from strongroom.core.core import Core
    from strongroom.core.tokens import TokenEntry

# Capabilities that count as "some access" when deciding whether a mount is visible.
_ACCESS_CAPS = frozenset({"create", "read", "update", "patch", "delete", "list", "sudo"})


# -- token → ACL helpers (shared with system_mounts and system_internal) -------------------------


@dataclass
class TokenPolicies:
    """A token's effective policy names, its compiled ACL and (for templates) its entity."""

    names: list[str]
    acl: ACL
    entity: dict[str, Any] | None


async def token_policies(core: Core, token: TokenEntry) -> TokenPolicies:
    """The token's policies plus its entity's, compiled the way the request pipeline does."""
    names = list(token.policies)
    entity: dict[str, Any] | None = None
    if core.identity is not None and token.entity_id and not token.no_identity_policies:
        extra, entity = await core.identity.policies_for(token.entity_id)
        names.extend(extra)
    return TokenPolicies(names, await core.policies.acl(names, entity), entity)


def _reaches_under(rule_path: str, mount: str) -> bool:
    """Whether a rule path (with ``+`` / trailing ``*`` globs) can match some path under ``mount``."""
    prefix = rule_path.endswith("*")
    rule = (rule_path[:-1] if prefix else rule_path).split("/")
    segments = mount.rstrip("/").split("/")
    last = len(rule) - 1
    for i, seg in enumerate(segments):
        if i > last:
            return False  # the rule names a path above the mount
        part = rule[i]
        if i == last and prefix:
            return seg.startswith(part)
        if part != "+" and part != seg:
            return False
    return len(rule) > len(segments)


async def has_mount_access(core: Core, tp: TokenPolicies, mount: str) -> bool:
    """Vault's ``hasMountAccess``: any non-deny capability on the mount or on any rule under it.

    ``mount`` is a route path ending in ``/`` (``secret/``, ``auth/userpass/``). The ACL has
    no public rule walk, so the rules come from the token's policies (templates resolved
    against its entity, same-path rules merged with ``deny`` winning, as the ACL does).
    Unlike Vault, ``+`` rules are considered too.
    """
    if tp.acl.is_root:
        return True
    if "deny" not in tp.acl.capabilities(mount):
        return True
    merged: dict[str, set[str]] = {}
    for name in set(tp.names):
        if normalize_policy_name(name) == ROOT_POLICY_NAME:
            return True
        policy = await core.policies.get(name)
        if policy is None:
            continue
        for rule in policy.paths:
            path = resolve_template(rule.path, tp.entity) if rule.templated else rule.path
            if path is not None:
                merged.setdefault(path, set()).update(rule.capabilities)
    for path, caps in merged.items():
        if "deny" in caps or not caps & _ACCESS_CAPS:
            continue
        if _reaches_under(path, mount):
            return True
    return False


# -- policies ----------------------------------------------------------------------------------


def _decode_policy_text(text: str) -> str:
    """Vault stores base64-encoded policy text decoded."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return text
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return text


def _legacy(req: Request) -> bool:
    """Requests to the old ``sys/policy`` paths, which answer ``policies`` and ``rules``."""
    return req.path in ("policy", "policy/") or req.path.startswith("policy/")


_NAME = {"name": Field(FieldType.STRING, "The name of the policy.")}
_POLICY_FIELDS = {
    **_NAME,
    "policy": Field(FieldType.STRING, "The rules of the policy (HCL or JSON, optionally base64-encoded)."),
}
_LEGACY_FIELDS = {
    **_POLICY_FIELDS,
    "rules": Field(FieldType.STRING, "Deprecated: use 'policy'.", deprecated=True),
}
_PATHS_FIELDS = {
    "path": Field(FieldType.COMMA_LIST, "Deprecated: use 'paths'.", deprecated=True),
    "paths": Field(FieldType.COMMA_LIST, "Paths on which capabilities are being queried."),
}


def paths(core: Core) -> list[Path]:
    """The policy and capability paths of the system backend."""

    async def list_policies(req: Request, d: FieldData) -> Response | None:
        names = [n for n in await core.policies.names() if n != ROOT_POLICY_NAME]
        keys = [n for n in names if n not in NON_ASSIGNABLE_POLICY_NAMES] + [ROOT_POLICY_NAME]
        if _legacy(req):
            return Response(data={"keys": keys, "policies": list(keys)}, copy_data_to_top_level=True)
        return Response(data={"keys": keys})

    async def read_policy(req: Request, d: FieldData) -> Response | None:
        name = normalize_policy_name(d["name"])
        text = await core.policies.get_text(name)
        if text is None:
            return None
        key = "rules" if _legacy(req) else "policy"
        return Response(data={"name": name, key: text})

    async def write_policy(req: Request, d: FieldData) -> Response | None:
        name = normalize_policy_name(d["name"])
        if not name:
            raise UserError("policy name must be provided in the URL")
        response: Response | None = None
        text = str(d["policy"])
        if not text and _legacy(req) and d.sent("rules"):
            text = str(d["rules"])
            response = Response(warnings=["'rules' is deprecated, please use 'policy' instead"])
        if not text:
            raise UserError("'policy' parameter not supplied or empty")
        if name in IMMUTABLE_POLICY_NAMES:
            raise UserError(f'cannot update "{name}" policy')
        await core.policies.put(name, _decode_policy_text(text))
        return response

    async def delete_policy(req: Request, d: FieldData) -> Response | None:
        name = normalize_policy_name(d["name"])
        if name in IMMUTABLE_POLICY_NAMES:
            raise UserError(f'cannot delete "{name}" policy')
        if name == DEFAULT_POLICY_NAME:
            raise UserError("cannot delete default policy")
        await core.policies.delete(name)
        return None

    # -- capabilities ----------------------------------------------------------------------------

    def requested_paths(d: FieldData) -> list[str]:
        wanted: list[str] = d["paths"] or d["path"]
        if not wanted:
            raise UserError("paths must be supplied")
        return wanted

    async def capabilities_of(token: TokenEntry, wanted: list[str]) -> Response:
        tp = await token_policies(core, token)
        data: dict[str, Any] = {}
        for path in wanted:
            if not path:
                raise UserError("missing path")
            data[path] = sorted(tp.acl.capabilities(path))
        if len(wanted) == 1:
            data["capabilities"] = data[wanted[0]]
        return Response(data=data, copy_data_to_top_level=True)

    async def capabilities(req: Request, d: FieldData) -> Response | None:
        wanted = requested_paths(d)
        given = str(d["token"])
        if not given:
            raise UserError("missing token")
        token = await core.tokens.lookup(given)
        if token is None:
            raise UserError("invalid token")
        return await capabilities_of(token, wanted)

    async def capabilities_self(req: Request, d: FieldData) -> Response | None:
        wanted = requested_paths(d)
        token = req.token_entry
        if token is None and req.client_token:
            token = await core.tokens.lookup(req.client_token)
        if token is None:
            raise UserError("invalid token")
        return await capabilities_of(token, wanted)

    async def capabilities_accessor(req: Request, d: FieldData) -> Response | None:
        accessor = str(d["accessor"])
        if not accessor:
            raise UserError("missing accessor")
        wanted = requested_paths(d)
        found = await core.tokens.lookup_accessor(accessor)
        token = None if found is None else await core.tokens.lookup(found.id)
        if token is None:
            raise UserError("invalid accessor")
        return await capabilities_of(token, wanted)

    def policy_ops() -> dict[Operation, PathOperation]:
        return {
            Operation.READ: PathOperation(read_policy, "Retrieve the ACL policy with the given name."),
            Operation.UPDATE: PathOperation(write_policy, "Add a new or update an existing policy."),
            Operation.DELETE: PathOperation(delete_policy, "Delete the policy with the given name."),
        }

    return [
        Path(
            "policies/acl/",
            operations={Operation.LIST: PathOperation(list_policies, "List the configured ACL policies.")},
            synopsis="List the configured ACL policies.",
        ),
        Path(
            "policies/acl/{name:segment}",
            fields=_POLICY_FIELDS,
            operations=policy_ops(),
            synopsis="Read, write or delete an ACL policy.",
        ),
        Path(
            "policy",
            operations={Operation.READ: PathOperation(list_policies, "List the configured ACL policies.")},
            synopsis="List the configured ACL policies (legacy).",
        ),
        Path(
            "policy/",
            operations={Operation.LIST: PathOperation(list_policies, "List the configured ACL policies.")},
            synopsis="List the configured ACL policies (legacy).",
        ),
        Path(
            "policy/{name:segment}",
            fields=_LEGACY_FIELDS,
            operations=policy_ops(),
            synopsis="Read, write or delete an ACL policy (legacy; reads answer 'rules').",
        ),
        Path(
            "capabilities",
            fields={"token": Field(FieldType.STRING, "Token to look up.", sensitive=True), **_PATHS_FIELDS},
            operations={
                Operation.UPDATE: PathOperation(capabilities, "The capabilities of a token on paths.")
            },
            synopsis="Fetches the capabilities of the given token on the given paths.",
        ),
        Path(
            "capabilities-self",
            fields={"token": Field(FieldType.STRING, "Ignored: the client token is used."), **_PATHS_FIELDS},
            operations={
                Operation.UPDATE: PathOperation(
                    capabilities_self, "The capabilities of the client token on paths."
                )
            },
            synopsis="Fetches the capabilities of the client token on the given paths.",
        ),
        Path(
            "capabilities-accessor",
            fields={
                "accessor": Field(FieldType.STRING, "Accessor of the token to look up.", sensitive=True),
                **_PATHS_FIELDS,
            },
            operations={
                Operation.UPDATE: PathOperation(
                    capabilities_accessor, "The capabilities of a token, by accessor, on paths."
                )
            },
            synopsis="Fetches the capabilities of the token with the given accessor on the given paths.",
        ),
    ]
