"""The role's rules applied to a verified token's claims, with Vault's error texts.

Kept apart from signature checking so that the plain ``login`` and the OIDC callback run
exactly the same rules (audience, subject, bound claims, times, identity) once a
signature has been verified, whichever way the keys were found.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

# metadata keys a claim mapping may not overwrite
RESERVED_METADATA = ("role",)


class ClaimError(Exception):
    """A token's claims broke a rule of the role; the message never contains the token."""


_MISSING = object()


def get_claim(claims: dict[str, Any], name: str) -> Any:
    """Vault's ``getClaim``: a name starting with "/" is a JSON pointer into nested claims."""
    if not name.startswith("/"):
        return claims.get(name)
    node: Any = claims
    for part in name[1:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node


def as_list(value: Any) -> list[Any] | None:
    """A claim that may be one value or a list (``aud``, groups, bound claims): always a list."""
    if isinstance(value, list):
        return value
    if isinstance(value, str | int | float | bool):
        return [value]
    return None


def glob_match(pattern: str, value: str) -> bool:
    """go-glob's ``Glob``: ``*`` matches any run of characters; nothing else is special."""
    parts = pattern.split("*")
    if len(parts) == 1:
        return pattern == value
    if not value.startswith(parts[0]) or not value.endswith(parts[-1]):
        return False
    pos = len(parts[0])
    end = len(value) - len(parts[-1])
    if end < pos:
        return False
    for middle in parts[1:-1]:
        idx = value.find(middle, pos, end)
        if idx < 0:
            return False
        pos = idx + len(middle)
    return True


def check_audience(bound: list[str], aud_claim: Any, *, strict: bool) -> None:
    """``aud`` (a string or a list, CVE-2024-5798) must share a value with ``bound_audiences``."""
    audiences = as_list(aud_claim) if aud_claim is not None else []
    if audiences is None:
        raise ClaimError("aud claim is not a string or list")
    if strict and not bound and audiences:
        raise ClaimError("audience claim found in JWT but no audiences bound to the role")
    if bound and not any(isinstance(a, str) and a in bound for a in audiences):
        raise ClaimError("aud claim does not match any bound audience")


def check_bound_claims(kind: str, bound: dict[str, Any], claims: dict[str, Any]) -> None:
    """Every bound claim must be present and match one of its allowed values."""
    for name, expected in bound.items():
        actual = get_claim(claims, name)
        if actual is None:
            raise ClaimError(f'claim "{name}" is missing')
        actual_values = as_list(actual)
        if actual_values is None:
            raise ClaimError(f'claim "{name}" is not a string or list')
        expected_values = as_list(expected)
        if expected_values is None:
            raise ClaimError(f'bound claim "{name}" is not a string or list')
        if kind == "glob":
            found = any(
                isinstance(e, str) and isinstance(a, str) and glob_match(e, a)
                for e in expected_values
                for a in actual_values
            )
        else:
            found = any(_same(e, a) for e in expected_values for a in actual_values)
        if not found:
            raise ClaimError(f'claim "{name}" does not match any associated bound claim values')


def _same(expected: Any, actual: Any) -> bool:
    # a bool never equals 1, and "1" never equals 1: claim types are compared as JSON sees them
    return type(expected) is type(actual) and expected == actual


@dataclass
class TimeRules:
    """A role's leeways in seconds, as stored (0: Vault's default, negative: none)."""

    clock_skew: int = 60
    expiration: int = 150
    not_before: int = 150

    @staticmethod
    def _effective(value: int, default: int) -> int:
        if value < 0:
            return 0
        return value or default

    def check(self, claims: dict[str, Any], now: float | None = None) -> None:
        """exp / nbf / iat with the leeways; a token carrying none of the three is refused."""
        now = time.time() if now is None else now
        skew = self._effective(self.clock_skew, 60)
        times: dict[str, float] = {}
        for name in ("exp", "nbf", "iat"):
            value = claims.get(name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ClaimError(f"validation failed, invalid {name} claim")
            times[name] = float(value)
        if not times:
            raise ClaimError("no issue time, notbefore, or expiration time encoded in token")
        if "exp" in times and now - skew - self._effective(self.expiration, 150) > times["exp"]:
            raise ClaimError("validation failed, token is expired (exp)")
        if "nbf" in times and now + skew + self._effective(self.not_before, 150) < times["nbf"]:
            raise ClaimError("validation failed, token not valid yet (nbf)")
        if "iat" in times and now + skew < times["iat"]:
            raise ClaimError("validation failed, token issued in the future (iat)")


@dataclass
class Identity:
    """What a verified token maps to: the alias, its group aliases and metadata."""

    name: str
    groups: list[str] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)


def identity(
    claims: dict[str, Any],
    *,
    user_claim: str,
    json_pointer: bool,
    groups_claim: str,
    claim_mappings: dict[str, str],
) -> Identity:
    """Vault's ``createIdentity`` with its error texts."""
    raw = get_claim(claims, user_claim) if json_pointer else claims.get(user_claim)
    if raw is None:
        raise ClaimError(f'claim "{user_claim}" not found in token')
    if not isinstance(raw, str):
        raise ClaimError(f'claim "{user_claim}" could not be converted to string')
    metadata: dict[str, str] = {}
    for source, target in claim_mappings.items():
        value = get_claim(claims, source)
        if value is None:
            continue
        if isinstance(value, bool):
            value = "true" if value else "false"
        elif isinstance(value, int | float):
            value = str(value)
        if not isinstance(value, str):
            raise ClaimError(f"error converting claim '{source}' to string")
        metadata[target] = value
    groups: list[str] = []
    if groups_claim:
        value = get_claim(claims, groups_claim)
        if value is None:
            raise ClaimError(f'failed to fetch groups: "{groups_claim}" claim not found in token')
        items = as_list(value)
        if items is None:
            raise ClaimError(f'"{groups_claim}" claim could not be converted to string list')
        for item in items:
            if not isinstance(item, str):
                raise ClaimError("value in groups claim could not be parsed as string")
            if item and item not in groups:
                groups.append(item)
    return Identity(raw, groups, metadata)
