"""Stored ACL policies and the compiled-ACL cache.

Policies live under ``sys/policy/acl/<name>``. ``root`` is virtual and
immutable, ``response-wrapping`` is fixed and hidden, ``default`` is written
once on first unseal and can be changed but not deleted. Compiled ACLs are
cached per policy set and dropped whenever any policy changes.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from strongroom.core.acl import ACL
from strongroom.core.policy import (
    DEFAULT_POLICY_HCL,
    RESPONSE_WRAPPING_POLICY,
    Policy,
    normalize_policy_name,
    parse_policy,
    root_policy,
)
from strongroom.logical.errors import UserError
from strongroom.logical.storage import Storage, get_json, put_json

IMMUTABLE = frozenset({"root", "response-wrapping", "control-group"})


class PolicyStore:
    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self._parsed: dict[str, Policy | None] = {}
        self._acls: dict[tuple[str, ...], ACL] = {}
        self._templated_acls: dict[tuple[tuple[str, ...], str], ACL] = {}
        self.on_change: Callable[[], None] | None = None

    async def setup(self) -> None:
        self.invalidate()
        if await self.storage.get("acl/default") is None:
            await put_json(self.storage, "acl/default", {"name": "default", "policy": DEFAULT_POLICY_HCL})

    def invalidate(self) -> None:
        self._parsed.clear()
        self._acls.clear()
        self._templated_acls.clear()

    async def names(self) -> list[str]:
        names = [n for n in await self.storage.list("acl/") if not n.endswith("/")]
        return sorted({*names, "root"})

    async def get_text(self, name: str) -> str | None:
        name = normalize_policy_name(name)
        if name == "root":
            return ""
        if name == "response-wrapping":
            return RESPONSE_WRAPPING_POLICY
        raw = await get_json(self.storage, f"acl/{name}")
        return None if raw is None else str(raw["policy"])

    async def get(self, name: str) -> Policy | None:
        name = normalize_policy_name(name)
        if name in self._parsed:
            return self._parsed[name]
        text = await self.get_text(name)
        policy = None if text is None or name == "root" else parse_policy(name, text)
        self._parsed[name] = policy
        return policy

    async def put(self, name: str, text: str) -> None:
        name = normalize_policy_name(name)
        if not name:
            raise UserError("policy name must be provided")
        if name in IMMUTABLE:
            raise UserError(f"cannot update {name} policy")
        policy = parse_policy(name, text)  # raises UserError on bad syntax
        await put_json(self.storage, f"acl/{name}", {"name": name, "policy": policy.raw or text})
        self.invalidate()
        if self.on_change is not None:
            self.on_change()

    async def delete(self, name: str) -> None:
        name = normalize_policy_name(name)
        if name in ("root", "default") or name in IMMUTABLE:
            raise UserError(f"cannot delete {name} policy")
        await self.storage.delete(f"acl/{name}")
        self.invalidate()
        if self.on_change is not None:
            self.on_change()

    async def acl(self, names: list[str], entity: dict[str, Any] | None = None) -> ACL:
        """The compiled ACL for a set of policy names (missing policies count as empty).

        Cached per policy set; when a policy in the set uses identity templates the
        cache key also holds the caller's identity context, since it shapes the rules.
        """
        key = tuple(sorted(set(names)))
        cached = self._acls.get(key)
        if cached is not None:
            return cached  # a set without templates: the entity does not matter
        policies: list[Policy] = []
        root = False
        for name in key:
            if name == "root":
                root = True
                continue
            policy = await self.get(name)
            if policy is not None:
                policies.append(policy)
        if root:
            policies.append(root_policy())
        if not any(p.templated for p in policies):
            acl = ACL(policies)
            self._acls[key] = acl
            return acl
        context = json.dumps(entity, sort_keys=True, separators=(",", ":"), default=str) if entity else ""
        templated = self._templated_acls.get((key, context))
        if templated is None:
            if len(self._templated_acls) >= 4096:
                self._templated_acls.clear()
            templated = self._templated_acls[(key, context)] = ACL(policies, entity=entity)
        return templated
