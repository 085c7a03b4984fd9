"""The ACL: a token's policies merged into one lookup structure, and its decisions.

An :class:`ACL` is built once per set of policies (plus, for templated policies,
the caller's identity) and then reused for many requests, so all the work that
does not depend on the request happens in the constructor:

* identity templates are resolved (a path that cannot be resolved, or whose
  resolved value contains ``*``, ``+`` or ``/`` or is empty, is skipped);
* rules with the same path string are merged (capabilities ORed, ``deny`` wins,
  parameter maps merged with ``[]`` winning, required parameters unioned, the
  lowest wrapping TTLs kept);
* rules go into three indexes: exact paths (a dict), prefix paths (a dict
  probed once per distinct prefix length, longest first) and segment-wildcard
  paths (bucketed by their first segment).

Which rule applies follows the policy-language notes, §5.3, exactly: an exact
match wins outright (for LIST the path without its trailing ``/`` is tried as
an exact match too); otherwise the longest ``*`` prefix rule and every matching
``+`` rule compete, and the single winner is picked by the five ordered
tie-break rules. Unlike Vault we do not retry the non-exact rules with the
trailing ``/`` of a LIST path removed: that retry let ``list`` on
``foo/metadata/*`` beat ``deny`` on ``foo/metadata/private/*``
(GHSA-xp3c-3jw3-4vcr).

Parameter values in ``allowed_parameters``/``denied_parameters`` support a
leading and/or trailing ``*`` glob as in Vault; a lone ``"*"`` matches any
value (Vault matches it only against the literal string ``*``). Non-string
values compare by their JSON text (``30`` matches ``"30"``). A list value, or a
comma-separated string, needs every element allowed and is denied if any
element is. As in Vault, ``required_parameters`` are checked before the "no
data passes" rule, so a request without data fails a rule that requires one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from strongroom.core.policy import ROOT_POLICY_NAME, PathRule, Policy

__all__ = ["ACL", "PERMISSION_DENIED", "Decision", "resolve_template"]

PERMISSION_DENIED = "permission denied"

#: The capability each operation needs; ``help`` needs none.
_OP_CAPABILITY: dict[str, str] = {
    "read": "read",
    "create": "create",
    "update": "update",
    "patch": "patch",
    "delete": "delete",
    "list": "list",
    "renew": "update",
    "revoke": "update",
    "rollback": "update",
}
#: Capabilities that count as access for :meth:`ACL.has_access_under`.
_ACCESS_CAPS = frozenset({"create", "read", "update", "patch", "delete", "list", "sudo"})
#: Operations whose request data is checked against parameter rules.
_PARAM_OPS = frozenset({"read", "create", "update", "patch"})


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of :meth:`ACL.allow_operation`.

    ``capabilities`` are those of the rule that decided (empty if none matched);
    ``reason`` is ``"permission denied"`` for any denial and ``""`` otherwise;
    ``detail`` says why, for logs (it never contains request values).
    """

    allowed: bool
    is_root: bool = False
    sudo: bool = False
    capabilities: frozenset[str] = frozenset()
    reason: str = ""
    detail: str = ""


_ROOT_CAPS = frozenset({"root"})
_ROOT_DECISION = Decision(allowed=True, is_root=True, sudo=True, capabilities=_ROOT_CAPS)
_HELP_DECISION = Decision(allowed=True)
_NO_MATCH = Decision(allowed=False, reason=PERMISSION_DENIED, detail="no policy rule matches the path")


# --------------------------------------------------------------------------- parameter values

# How one value of an allowed/denied list matches the text form of a request value.
_ANY, _EXACT, _PREFIX, _SUFFIX, _CONTAINS = range(5)
_Matcher = tuple[int, str]


def _value_text(value: Any) -> str:
    """A request or policy value as text: strings as is, everything else as JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    except (TypeError, ValueError):
        return str(value)


def _compile_value(element: Any) -> _Matcher:
    if not isinstance(element, str):
        return (_EXACT, _value_text(element))
    if element == "*":
        return (_ANY, "")
    if len(element) < 2:
        return (_EXACT, element)
    starts, ends = element.startswith("*"), element.endswith("*")
    if starts and ends:
        return (_CONTAINS, element[1:-1])
    if starts:
        return (_SUFFIX, element[1:])
    if ends:
        return (_PREFIX, element[:-1])
    return (_EXACT, element)


def _matches(value: Any, matchers: tuple[_Matcher, ...]) -> bool:
    text = _value_text(value)
    for kind, pattern in matchers:
        if (
            kind == _ANY
            or (kind == _EXACT and text == pattern)
            or (kind == _PREFIX and text.startswith(pattern))
            or (kind == _SUFFIX and text.endswith(pattern))
            or (kind == _CONTAINS and pattern in text)
        ):
            return True
    return False


def _elements(value: Any) -> list[Any] | None:
    """The elements of a list value, or of a comma-separated string; None for scalars."""
    if isinstance(value, list | tuple):
        return list(value)
    if isinstance(value, str) and "," in value:
        return [piece.strip() for piece in value.split(",")]
    return None


def _value_allowed(value: Any, matchers: tuple[_Matcher, ...]) -> bool:
    """An empty list allows anything; a list value needs every element allowed."""
    if not matchers or _matches(value, matchers):
        return True
    elements = _elements(value)
    return elements is not None and all(_matches(e, matchers) for e in elements)


def _value_denied(value: Any, matchers: tuple[_Matcher, ...]) -> bool:
    """An empty list denies anything; a list value is denied if any element is."""
    if not matchers or _matches(value, matchers):
        return True
    elements = _elements(value)
    return elements is not None and any(_matches(e, matchers) for e in elements)


# --------------------------------------------------------------------------- templates

_TEMPLATE = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)


class _Unresolved(Exception):
    pass


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise _Unresolved
    return value


def _select(obj: Any, key: str) -> Any:
    if not isinstance(obj, Mapping):
        raise _Unresolved
    return obj.get(key)


def _metadata(obj: Any, selector: str, prefix: str) -> str:
    return _text(_select(_select(obj, prefix), selector[len(prefix) + 1 :]))


def _lookup(expr: str, entity: Mapping[str, Any]) -> str:
    """The value of one template directive; raises _Unresolved."""
    if expr.startswith("identity.entity."):
        rest = expr[len("identity.entity.") :]
        if rest in ("id", "name"):
            return _text(entity.get(rest))
        if rest.startswith("metadata."):
            return _metadata(entity, rest, "metadata")
        if rest.startswith("aliases."):
            accessor, _, selector = rest[len("aliases.") :].partition(".")
            alias = _select(entity.get("aliases"), accessor)
            if selector in ("id", "name"):
                return _text(_select(alias, selector))
            for prefix in ("metadata", "custom_metadata"):
                if selector.startswith(prefix + "."):
                    return _metadata(alias, selector, prefix)
        raise _Unresolved
    if expr.startswith("identity.groups."):
        kind, _, rest = expr[len("identity.groups.") :].partition(".")
        key, _, selector = rest.partition(".")
        if kind not in ("ids", "names") or not key:
            raise _Unresolved
        group = _select(_select(entity.get("groups"), kind), key)
        if not isinstance(group, Mapping):
            raise _Unresolved
        own = "id" if kind == "ids" else "name"
        if selector == own:
            return _text(key)
        if selector in ("id", "name"):
            return _text(group.get(selector))
        if selector.startswith("metadata."):
            return _metadata(group, selector, "metadata")
    raise _Unresolved


def resolve_template(path: str, entity: Mapping[str, Any] | None) -> str | None:
    """``path`` with every ``{{...}}`` directive replaced, or None if any cannot be.

    A resolved value that is empty or contains ``*``, ``+`` or ``/`` would widen
    the rule, so it counts as unresolvable too.
    """
    if "{{" not in path:
        return path
    if entity is None:
        return None

    def replace(match: re.Match[str]) -> str:
        value = _lookup(match.group(1).strip(), entity)
        if any(c in value for c in "*+/"):
            raise _Unresolved
        return value

    try:
        return _TEMPLATE.sub(replace, path)
    except _Unresolved:
        return None


# --------------------------------------------------------------------------- rules


class _Perms:
    """Mutable permissions for one path string while the ACL is being built."""

    __slots__ = ("allowed", "caps", "denied", "max_ttl", "min_ttl", "required")

    def __init__(self) -> None:
        self.caps: set[str] = set()
        self.allowed: dict[str, tuple[Any, ...]] = {}
        self.denied: dict[str, tuple[Any, ...]] = {}
        self.required: list[str] = []
        self.min_ttl = 0
        self.max_ttl = 0


def _merge_params(into: dict[str, tuple[Any, ...]], new: Mapping[str, tuple[Any, ...]]) -> None:
    for key, values in new.items():
        if key in into and (not values or not into[key]):
            into[key] = ()
        else:
            into[key] = tuple(values) + into.get(key, ())


def _merge(perms: _Perms, rule: PathRule) -> None:
    """Fold one policy rule into the permissions already gathered for its path."""
    caps = rule.capabilities
    if "deny" in perms.caps:
        return
    if "deny" in caps:
        perms.caps = {"deny"}
        perms.allowed, perms.denied, perms.required = {}, {}, []
        perms.min_ttl = perms.max_ttl = 0
        return
    perms.caps |= caps
    if rule.max_wrapping_ttl and (not perms.max_ttl or rule.max_wrapping_ttl < perms.max_ttl):
        perms.max_ttl = rule.max_wrapping_ttl
    if rule.min_wrapping_ttl and (not perms.min_ttl or rule.min_wrapping_ttl < perms.min_ttl):
        perms.min_ttl = rule.min_wrapping_ttl
    _merge_params(perms.allowed, rule.allowed_parameters)
    _merge_params(perms.denied, rule.denied_parameters)
    for name in rule.required_parameters:
        if name not in perms.required:
            perms.required.append(name)


class _Rule:
    """Frozen permissions of one merged path, ready for request checks."""

    __slots__ = (
        "allow_decision",
        "allowed",
        "allowed_all",
        "allowed_only_all",
        "caps",
        "denied",
        "denied_all",
        "max_ttl",
        "min_ttl",
        "rank",
        "required",
        "sudo",
    )

    def __init__(self, perms: _Perms, rank: tuple[int, bool, int, int, bytes]) -> None:
        self.caps = frozenset(perms.caps)
        self.sudo = "sudo" in self.caps
        self.allowed = {k: tuple(_compile_value(v) for v in vs) for k, vs in perms.allowed.items()}
        self.allowed_all = "*" in self.allowed
        self.allowed_only_all = self.allowed_all and len(self.allowed) == 1
        self.denied = {k: tuple(_compile_value(v) for v in vs) for k, vs in perms.denied.items()}
        self.denied_all = "*" in self.denied
        self.required = tuple(perms.required)
        self.min_ttl = perms.min_ttl
        self.max_ttl = perms.max_ttl
        self.rank = rank
        self.allow_decision = Decision(allowed=True, sudo=self.sudo, capabilities=self.caps)

    def deny(self, detail: str) -> Decision:
        return Decision(
            allowed=False, sudo=self.sudo, capabilities=self.caps, reason=PERMISSION_DENIED, detail=detail
        )


class _WildRule:
    """A rule with ``+`` segments: literal checks per segment, plus its rank."""

    __slots__ = ("checks", "is_prefix", "last", "rule", "size")

    def __init__(self, path: str, perms: _Perms) -> None:
        self.is_prefix = path.endswith("*")
        stem = path[:-1] if self.is_prefix else path
        segments = stem.split("/")
        self.size = len(segments)
        self.last = self.size - 1
        self.checks = tuple((i, s) for i, s in enumerate(segments) if s != "+")
        first = segments.index("+")
        first_offset = sum(len(s.encode()) + 1 for s in segments[:first])
        rank = (first_offset, not self.is_prefix, -segments.count("+"), len(stem.encode()), stem.encode())
        self.rule = _Rule(perms, rank)

    def reaches_under(self, mount: list[str]) -> bool:
        """Whether the rule can match some path under the segments ``mount``."""
        if self.size < len(mount):
            return False
        checks = dict(self.checks)
        for i, segment in enumerate(mount):
            literal = checks.get(i)
            if literal is None:
                continue
            if i == self.last and self.is_prefix:
                if not segment.startswith(literal):
                    return False
            elif segment != literal:
                return False
        return True

    def matches(self, parts: list[str]) -> bool:
        n = len(parts)
        if n < self.size or (n != self.size and not self.is_prefix):
            return False
        for i, literal in self.checks:
            if i == self.last and self.is_prefix:
                if not parts[i].startswith(literal):
                    return False
            elif parts[i] != literal:
                return False
        return True


# --------------------------------------------------------------------------- the ACL


class ACL:
    """Policies merged for fast, repeated access decisions.

    ``entity`` supplies identity templates: ``{"id", "name", "metadata": {},
    "aliases": {mount_accessor: {"id", "name", "metadata": {}, "custom_metadata": {}}},
    "groups": {"ids": {gid: {"name", "metadata"}}, "names": {name: {"id", "metadata"}}}}``.
    A policy named ``root`` anywhere in ``policies`` makes the ACL allow everything.
    """

    __slots__ = ("_exact", "_prefix", "_prefix_lengths", "_root", "_wild")

    def __init__(self, policies: Iterable[Policy], entity: Mapping[str, Any] | None = None) -> None:
        self._root = False
        exact: dict[str, _Perms] = {}
        prefix: dict[str, _Perms] = {}
        wild: dict[str, _Perms] = {}
        for policy in policies:
            if policy.name == ROOT_POLICY_NAME:
                self._root = True
                continue
            for rule in policy.paths:
                path = rule.path
                if rule.templated:
                    resolved = resolve_template(path, entity)
                    if resolved is None:
                        continue
                    path = resolved
                if "+" in path.split("/"):
                    table, key = wild, path
                elif path.endswith("*"):
                    table, key = prefix, path[:-1]
                else:
                    table, key = exact, path
                perms = table.get(key)
                if perms is None:
                    perms = table[key] = _Perms()
                _merge(perms, rule)

        self._exact = {p: _Rule(perms, (0, False, 0, 0, b"")) for p, perms in exact.items()}
        self._prefix: dict[str, _Rule] = {}
        for p, perms in prefix.items():
            size = len(p.encode())
            self._prefix[p] = _Rule(perms, (size, False, 0, size, p.encode()))
        self._prefix_lengths = tuple(sorted({len(p) for p in self._prefix}, reverse=True))
        self._wild: dict[str, list[_WildRule]] = {}
        for p, perms in wild.items():
            compiled = _WildRule(p, perms)
            first = p.split("/", 1)[0]
            self._wild.setdefault(first, []).append(compiled)

    @property
    def is_root(self) -> bool:
        """True if the ACL holds the ``root`` policy."""
        return self._root

    # ------------------------------------------------------------------ matching

    def _match(self, path: str, list_op: bool) -> _Rule | None:
        """The single rule that governs ``path`` (§5.3), or None."""
        rule = self._exact.get(path)
        if rule is not None:
            return rule
        if list_op and path.endswith("/"):
            rule = self._exact.get(path[:-1])
            if rule is not None:
                return rule

        best: _Rule | None = None
        size = len(path)
        for length in self._prefix_lengths:
            if length <= size:
                best = self._prefix.get(path[:length])
                if best is not None:
                    break
        if self._wild:
            parts = path.split("/")
            for bucket in (self._wild.get(parts[0]), self._wild.get("+") if parts[0] != "+" else None):
                if not bucket:
                    continue
                for wild in bucket:
                    if (best is None or wild.rule.rank > best.rank) and wild.matches(parts):
                        best = wild.rule
        return best

    def capabilities(self, path: str) -> list[str]:
        """Sorted capabilities on ``path``: ``["root"]`` for root, ``["deny"]`` if none."""
        if self._root:
            return ["root"]
        rule = self._match(path.lstrip("/"), list_op=True)
        if rule is None or not rule.caps or "deny" in rule.caps:
            return ["deny"]
        return sorted(rule.caps)

    def has_access_under(self, mount: str) -> bool:
        """Vault's ``hasMountAccess``: any non-deny access on ``mount`` or on a rule below it.

        ``mount`` is a path ending in ``/`` (``secret/``). Used to decide which mounts a
        token may see, not to authorize requests; it scans every rule.
        """
        if self._root:
            return True
        if self.capabilities(mount) != ["deny"]:
            return True
        for table in (self._exact, self._prefix):
            for path, rule in table.items():
                if path.startswith(mount) and rule.caps & _ACCESS_CAPS and "deny" not in rule.caps:
                    return True
        segments = mount.rstrip("/").split("/")
        for bucket in self._wild.values():
            for wild in bucket:
                caps = wild.rule.caps
                if caps & _ACCESS_CAPS and "deny" not in caps and wild.reaches_under(segments):
                    return True
        return False

    def allow_operation(
        self,
        op: str,
        path: str,
        *,
        data: Mapping[str, Any] | None = None,
        wrap_ttl: int = 0,
        root_protected: bool = False,
    ) -> Decision:
        """Decide whether ``op`` on ``path`` (relative to ``/v1``) is allowed.

        Checks, in order: the operation's capability, ``sudo`` if the path is
        root-protected, the wrapping TTL (``wrap_ttl`` 0 means not wrapped), then
        the parameter rules (read, create, update and patch only).
        """
        if self._root:
            return _ROOT_DECISION
        if op == "help":
            return _HELP_DECISION
        needed = _OP_CAPABILITY.get(op)
        if needed is None:
            return Decision(allowed=False, reason=PERMISSION_DENIED, detail="unsupported operation")
        path = path.lstrip("/")
        if op == "list" and path and not path.endswith("/"):
            path += "/"
        rule = self._match(path, list_op=op == "list")
        if rule is None:
            return _NO_MATCH
        if needed not in rule.caps:
            return rule.deny(f"the matching rule does not grant '{needed}'")
        if root_protected and not rule.sudo:
            return rule.deny("the path requires the 'sudo' capability")
        if rule.max_ttl or rule.min_ttl:
            denied = self._check_wrapping(rule, wrap_ttl)
            if denied is not None:
                return denied
        if op in _PARAM_OPS and (data or rule.required):
            denied = self._check_parameters(rule, data or {})
            if denied is not None:
                return denied
        return rule.allow_decision

    @staticmethod
    def _check_wrapping(rule: _Rule, wrap_ttl: int) -> Decision | None:
        if rule.max_ttl and (wrap_ttl <= 0 or wrap_ttl > rule.max_ttl):
            return rule.deny("the response must be wrapped with a TTL no greater than max_wrapping_ttl")
        if rule.min_ttl and (wrap_ttl <= 0 or wrap_ttl < rule.min_ttl):
            return rule.deny("the response must be wrapped with a TTL of at least min_wrapping_ttl")
        if rule.min_ttl and rule.max_ttl and rule.max_ttl < rule.min_ttl:
            return rule.deny("the merged wrapping TTL bounds are contradictory")
        return None

    @staticmethod
    def _check_parameters(rule: _Rule, data: Mapping[str, Any]) -> Decision | None:
        if rule.required:
            present = {str(k).lower() for k in data}
            for name in rule.required:
                if name not in present:
                    return rule.deny(f"missing required parameter '{name}'")
        if not data:
            return None
        if rule.denied:
            if rule.denied_all:
                return rule.deny("all parameters are denied")
            for key, value in data.items():
                matchers = rule.denied.get(str(key).lower())
                if matchers is not None and _value_denied(value, matchers):
                    return rule.deny(f"parameter '{key}' or its value is denied")
        if rule.allowed and not rule.allowed_only_all:
            for key, value in data.items():
                matchers = rule.allowed.get(str(key).lower())
                if matchers is None:
                    if not rule.allowed_all:
                        return rule.deny(f"parameter '{key}' is not allowed")
                elif not _value_allowed(value, matchers):
                    return rule.deny(f"a value of parameter '{key}' is not allowed")
        return None
