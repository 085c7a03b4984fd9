"""ACL policies: parsing HCL/JSON policy text into a :class:`Policy` model.

A policy is a list of :class:`PathRule` objects, one per ``path "..." {}``
block, kept in the order written (the same path may appear twice; the ACL
merges duplicates). Identity templates such as ``{{identity.entity.id}}`` stay
in the path text here and are resolved when an ACL is built
(:mod:`strongroom.core.acl`).

Choices where Vault is loose or silent:

* A path block with neither ``capabilities`` nor ``policy`` is accepted (as in
  Vault). It grants nothing; as the most specific match it still shadows a
  broader rule, so it behaves like ``deny`` for the paths it wins.
* Every capability is validated, even after ``deny`` (Vault stops at ``deny``).
* Parameter keys may be ``*`` or plain names; other keys containing ``*`` and
  JSON-pointer keys (``/a/b``) are rejected, so a deny rule cannot be silently
  inert.
* Duplicate ``path`` blocks are kept as separate rules (pyhcl alone would
  silently overwrite the first with the second, losing a ``deny``).
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from strongroom.durations import parse_duration
from strongroom.logical.errors import UserError

__all__ = [
    "CAPABILITIES",
    "CONTROL_GROUP_POLICY_NAME",
    "DEFAULT_POLICY_HCL",
    "DEFAULT_POLICY_NAME",
    "IMMUTABLE_POLICY_NAMES",
    "NON_ASSIGNABLE_POLICY_NAMES",
    "RESPONSE_WRAPPING_POLICY",
    "RESPONSE_WRAPPING_POLICY_NAME",
    "ROOT_POLICY_NAME",
    "PathRule",
    "Policy",
    "has_template",
    "is_root_policy_name",
    "normalize_policy_name",
    "parse_policy",
    "root_policy",
]

ROOT_POLICY_NAME = "root"
DEFAULT_POLICY_NAME = "default"
RESPONSE_WRAPPING_POLICY_NAME = "response-wrapping"
CONTROL_GROUP_POLICY_NAME = "control-group"

#: Policies that can be neither written nor deleted.
IMMUTABLE_POLICY_NAMES = frozenset(
    {ROOT_POLICY_NAME, RESPONSE_WRAPPING_POLICY_NAME, CONTROL_GROUP_POLICY_NAME}
)
#: Policies that can never be attached to a token by a caller (and are hidden from listings).
NON_ASSIGNABLE_POLICY_NAMES = frozenset({RESPONSE_WRAPPING_POLICY_NAME, CONTROL_GROUP_POLICY_NAME})

#: Capabilities that may be written in a policy (``root`` only appears in lookups).
CAPABILITIES = frozenset({"create", "read", "update", "patch", "delete", "list", "sudo", "deny", "subscribe"})

_LEGACY_POLICY: dict[str, tuple[str, ...]] = {
    "deny": ("deny",),
    "read": ("read", "list"),
    "write": ("create", "read", "update", "delete", "list"),
    "sudo": ("create", "read", "update", "delete", "list", "sudo"),
}

_TOP_LEVEL_KEYS = frozenset({"name", "path"})
_PATH_KEYS = frozenset(
    {
        "capabilities",
        "policy",
        "allowed_parameters",
        "denied_parameters",
        "required_parameters",
        "min_wrapping_ttl",
        "max_wrapping_ttl",
        "comment",
        "mfa_methods",
        "control_group",
        "subscribe_event_types",
    }
)

DEFAULT_POLICY_HCL = """
# Allow tokens to look up their own properties
path "auth/token/lookup-self" {
    capabilities = ["read"]
}

# Allow tokens to renew themselves
path "auth/token/renew-self" {
    capabilities = ["update"]
}

# Allow tokens to revoke themselves
path "auth/token/revoke-self" {
    capabilities = ["update"]
}

# Allow a token to look up its own capabilities on a path
path "sys/capabilities-self" {
    capabilities = ["update"]
}

# Allow a token to look up its own entity by id or name
path "identity/entity/id/{{identity.entity.id}}" {
  capabilities = ["read"]
}
path "identity/entity/name/{{identity.entity.name}}" {
  capabilities = ["read"]
}

# Allow a token to look up its resultant ACL from all policies. This is useful
# for UIs. It is an internal path because the format may change at any time
# based on how the internal ACL features and capabilities change.
path "sys/internal/ui/resultant-acl" {
    capabilities = ["read"]
}

# Allow a token to renew a lease via lease_id in the request body; old path for
# old clients, new path for newer
path "sys/renew" {
    capabilities = ["update"]
}
path "sys/leases/renew" {
    capabilities = ["update"]
}

# Allow looking up lease properties. This requires knowing the lease ID ahead
# of time and does not divulge any sensitive information.
path "sys/leases/lookup" {
    capabilities = ["update"]
}

# Allow a token to manage its own cubbyhole
path "cubbyhole/*" {
    capabilities = ["create", "read", "update", "delete", "list"]
}

# Allow a token to wrap arbitrary values in a response-wrapping token
path "sys/wrapping/wrap" {
    capabilities = ["update"]
}

# Allow a token to look up the creation time and TTL of a given
# response-wrapping token
path "sys/wrapping/lookup" {
    capabilities = ["update"]
}

# Allow a token to unwrap a response-wrapping token. This is a convenience to
# avoid client token swapping since this is also part of the response wrapping
# policy.
path "sys/wrapping/unwrap" {
    capabilities = ["update"]
}

# Allow general purpose tools
path "sys/tools/hash" {
    capabilities = ["update"]
}
path "sys/tools/hash/*" {
    capabilities = ["update"]
}

# Allow checking the status of a control group request if the user has the
# accessor
path "sys/control-group/request" {
    capabilities = ["update"]
}

# Allow a token to make requests to the Authorization Endpoint for OIDC providers.
path "identity/oidc/provider/+/authorize" {
    capabilities = ["read", "update"]
}
"""

RESPONSE_WRAPPING_POLICY = """
path "cubbyhole/response" {
    capabilities = ["create", "read"]
}

path "sys/wrapping/unwrap" {
    capabilities = ["update"]
}
"""


@dataclass(frozen=True, slots=True)
class PathRule:
    """One ``path`` block of a policy.

    ``path`` is as written minus a leading ``/`` (templates unresolved, the
    trailing ``*`` kept). ``allowed_parameters``/``denied_parameters`` map
    lower-cased names to value tuples (an empty tuple means "any value");
    empty mappings mean "not set".
    """

    path: str
    capabilities: frozenset[str]
    allowed_parameters: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)
    denied_parameters: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)
    required_parameters: tuple[str, ...] = ()
    min_wrapping_ttl: int = 0
    max_wrapping_ttl: int = 0
    templated: bool = False

    @property
    def has_segment_wildcards(self) -> bool:
        """True if some segment of the path is exactly ``+``."""
        return "+" in self.path.split("/")

    @property
    def is_prefix(self) -> bool:
        """True if the path ends in the ``*`` prefix glob."""
        return self.path.endswith("*")


@dataclass(frozen=True, slots=True)
class Policy:
    """A named, parsed ACL policy; ``raw`` is the (decoded) source text."""

    name: str
    paths: tuple[PathRule, ...] = ()
    raw: str = ""
    templated: bool = False

    @property
    def is_root(self) -> bool:
        """True for the built-in ``root`` policy."""
        return self.name == ROOT_POLICY_NAME


def normalize_policy_name(name: str) -> str:
    """Policy names are trimmed and lower-cased everywhere."""
    return name.strip().lower()


def is_root_policy_name(name: str) -> bool:
    """True if ``name`` denotes ``root`` once normalized (``" ROOT"`` included)."""
    return normalize_policy_name(name) == ROOT_POLICY_NAME


def root_policy() -> Policy:
    """The built-in ``root`` policy: no rules, but an ACL containing it allows everything."""
    return Policy(name=ROOT_POLICY_NAME)


# --------------------------------------------------------------------------- parsing


def parse_policy(name: str, text: str) -> Policy:
    """Parse HCL or JSON policy text (optionally base64-encoded) into a :class:`Policy`.

    Raises :class:`UserError` (``failed to parse policy: ...``) on any error.
    """
    try:
        items = _load(text)
    except _SyntaxError as err:
        decoded = _maybe_base64(text)
        if decoded is None:
            raise UserError(f"failed to parse policy: {err}") from None
        try:
            items = _load(decoded)
        except _SyntaxError:
            raise UserError(f"failed to parse policy: {err}") from None
        text = decoded
    try:
        rules = tuple(_parse_items(items))
    except _PolicyError as err:
        raise UserError(f"failed to parse policy: {err}") from None
    return Policy(
        name=normalize_policy_name(name),
        paths=rules,
        raw=text,
        templated=any(r.templated for r in rules),
    )


class _SyntaxError(Exception):
    """The text is neither valid HCL nor valid JSON."""


class _PolicyError(Exception):
    """The text parsed but does not describe a valid policy."""


class _PairDict(dict[str, Any]):
    """A JSON object that remembers every key/value pair, duplicates included."""

    pairs: list[tuple[str, Any]]


def _json_object(pairs: list[tuple[str, Any]]) -> _PairDict:
    obj = _PairDict(pairs)
    obj.pairs = pairs
    return obj


_hcl_lock = threading.Lock()
_hcl_parser: Any = None
_hcl_top: list[Any] = []


def _hcl_items(text: str) -> list[tuple[Any, Any]]:
    """Parse HCL, returning the top-level items in order without merging duplicates.

    pyhcl merges repeated blocks (``path "a" {}`` twice) into one dict, the
    second overwriting the first. We intercept the top-level flattening to keep
    a copy of each item as written. Building a PLY parser is slow (~20 ms), so
    one is shared under a lock (PLY parsers are not re-entrant).
    """
    global _hcl_parser
    with _hcl_lock:
        if _hcl_parser is None:
            from hcl.parser import HclParser

            parser = HclParser()
            original = parser.objectlist_flat

            def flat(items: list[Any], replace: bool) -> Any:
                if replace:  # only the top-level object list is flattened with replace=True
                    _hcl_top[:] = [copy.deepcopy(items)]
                return original(items, replace)

            parser.objectlist_flat = flat
            _hcl_parser = parser
        _hcl_top.clear()
        _hcl_parser.parse(text)
        if not _hcl_top:
            raise _SyntaxError("does not contain a root object")
        items: list[tuple[Any, Any]] = list(_hcl_top[0])
        _hcl_top.clear()
        return items


def _load(text: str) -> list[tuple[Any, Any]]:
    """Top-level (key, value) items of HCL or JSON text."""
    stripped = text.lstrip()
    if stripped.startswith("{"):
        try:
            obj = json.loads(text, object_pairs_hook=_json_object)
        except (ValueError, RecursionError) as err:
            raise _SyntaxError(str(err)) from None
        if not isinstance(obj, _PairDict):
            raise _SyntaxError("does not contain a root object")
        return list(obj.pairs)
    try:
        return _hcl_items(text)
    except _SyntaxError:
        raise
    except Exception as err:  # pyhcl raises ValueError, but PLY can raise others
        raise _SyntaxError(str(err) or type(err).__name__) from None


def _maybe_base64(text: str) -> str | None:
    """``text`` base64-decoded to UTF-8, or None if it is not base64."""
    compact = "".join(text.split())
    if not compact:
        return None
    try:
        raw = base64.b64decode(compact, validate=True)
        return raw.decode("utf-8")
    except (binascii.Error, ValueError):
        return None


def _path_blocks(value: Any) -> Iterator[tuple[Any, Any]]:
    """(path, body) pairs from the value of a top-level ``path`` item."""
    if isinstance(value, _PairDict):
        yield from value.pairs
    elif isinstance(value, dict):
        yield from value.items()
    elif isinstance(value, list):
        for element in value:
            if not isinstance(element, dict):
                raise _PolicyError("'path' must be a block of the form path \"<path>\" { ... }")
            yield from _path_blocks(element)
    else:
        raise _PolicyError("'path' must be a block of the form path \"<path>\" { ... }")


def _parse_items(items: list[tuple[Any, Any]]) -> Iterator[PathRule]:
    for key, value in items:
        if key not in _TOP_LEVEL_KEYS:
            raise _PolicyError(f'invalid key "{_key_text(key)}" at the top level')
        if key == "name":
            continue
        for path, body in _path_blocks(value):
            yield _parse_path(path, body)


def _key_text(key: Any) -> str:
    return "".join(key) if isinstance(key, tuple) else str(key)


_TEMPLATE_OPEN = "{{"
_TEMPLATE_CLOSE = "}}"


def has_template(path: str) -> bool:
    """True if the path contains an identity template; raises ValueError if unbalanced."""
    pieces = path.split(_TEMPLATE_OPEN)
    if _TEMPLATE_CLOSE in pieces[0]:
        raise ValueError("unbalanced templating characters")
    for piece in pieces[1:]:
        if piece.count(_TEMPLATE_CLOSE) != 1:
            raise ValueError("unbalanced templating characters")
    return len(pieces) > 1


def _parse_path(path: Any, body: Any) -> PathRule:
    if not isinstance(path, str):
        raise _PolicyError(f'path "{_key_text(path)}": the path must be a string')
    if not isinstance(body, dict):
        raise _PolicyError(f'path "{path}": expected a block')
    if path.startswith("/"):
        path = path[1:]
    try:
        templated = has_template(path)
    except ValueError as err:
        raise _PolicyError(f'path "{path}": failed to validate policy templating: {err}') from None
    if "+*" in path:
        raise _PolicyError(f"path \"{path}\": invalid use of wildcards ('+*' is forbidden)")

    for key in body:
        if key not in _PATH_KEYS:
            raise _PolicyError(f'path "{path}": invalid key "{_key_text(key)}"')

    capabilities = set(_string_list(path, "capabilities", body.get("capabilities")))
    legacy = body.get("policy")
    if legacy is not None:
        if not isinstance(legacy, str) or legacy not in _LEGACY_POLICY:
            raise _PolicyError(f'path "{path}": invalid policy "{legacy}"')
        capabilities.update(_LEGACY_POLICY[legacy])
    for cap in sorted(capabilities):
        if cap not in CAPABILITIES:
            raise _PolicyError(f'path "{path}": invalid capability "{cap}"')
    if "deny" in capabilities:
        capabilities = {"deny"}

    allowed = _parameter_map(path, "allowed_parameters", body.get("allowed_parameters"))
    denied = _parameter_map(path, "denied_parameters", body.get("denied_parameters"))
    required: list[str] = []
    for param in _string_list(path, "required_parameters", body.get("required_parameters")):
        if "*" in param:
            raise _PolicyError(f'path "{path}": required_parameters: wildcard is not permitted in "{param}"')
        if param.lower() not in required:
            required.append(param.lower())

    try:
        min_ttl = _parse_wrapping_ttl(body.get("min_wrapping_ttl"))
    except ValueError as err:
        raise _PolicyError(f'path "{path}": error parsing min_wrapping_ttl: {err}') from None
    try:
        max_ttl = _parse_wrapping_ttl(body.get("max_wrapping_ttl"))
    except ValueError as err:
        raise _PolicyError(f'path "{path}": error parsing max_wrapping_ttl: {err}') from None
    if min_ttl and max_ttl and max_ttl < min_ttl:
        raise _PolicyError(f'path "{path}": max_wrapping_ttl cannot be less than min_wrapping_ttl')

    return PathRule(
        path=path,
        capabilities=frozenset(capabilities),
        allowed_parameters=allowed,
        denied_parameters=denied,
        required_parameters=tuple(required),
        min_wrapping_ttl=min_ttl,
        max_wrapping_ttl=max_ttl,
        templated=templated,
    )


def _string_list(path: str, key: str, value: Any) -> list[str]:
    """A list of strings (a lone string counts as a one-item list)."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise _PolicyError(f'path "{path}": {key} must be a list of strings')


def _parameter_map(path: str, key: str, value: Any) -> dict[str, tuple[Any, ...]]:
    """``{name: [values]}`` with names lower-cased; same-name entries merged, ``[]`` winning."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _PolicyError(f'path "{path}": {key} must be a map of parameter names to lists of values')
    result: dict[str, tuple[Any, ...]] = {}
    for name, values in value.items():
        if not isinstance(name, str):
            raise _PolicyError(f'path "{path}": {key}: parameter names must be strings')
        if "*" in name and name != "*":
            raise _PolicyError(f'path "{path}": {key}: parameter key "{name}" cannot contain wildcards')
        if name.startswith("/"):
            raise _PolicyError(f'path "{path}": {key}: JSON-pointer parameter keys are not supported')
        if values is None:
            items: tuple[Any, ...] = ()
        elif isinstance(values, list):
            items = tuple(values)
        elif isinstance(values, dict):
            raise _PolicyError(f'path "{path}": {key}: values of "{name}" must be a list')
        else:
            items = (values,)
        lowered = name.lower()
        if lowered in result:
            previous = result[lowered]
            items = () if not items or not previous else previous + items
        result[lowered] = items
    return result


def _parse_wrapping_ttl(value: Any) -> int:
    """Seconds from a wrapping-TTL value: an int, a numeric string or a duration ("90s", "1h30m").

    ``None`` (not set) and ``""`` mean 0; the rest is :func:`strongroom.durations.parse_duration`.
    """
    if value is None:
        return 0
    if not isinstance(value, str | int | float):
        raise ValueError("expected a duration")
    return parse_duration(value)
