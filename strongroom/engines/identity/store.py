"""Storage layout of the identity store: entities, aliases, groups and their indexes.

Everything lives in the identity mount's storage view, so every process of a node sees
the same data and nothing needs invalidating: requests read what they need through a
:class:`View`, whose memo lasts one request (or one transaction) only.

Records (JSON):

* ``entity/<id>``: an entity with its aliases embedded (an entity has at most one alias
  per mount accessor, so ``{{identity.entity.aliases.<accessor>...}}`` is unambiguous);
* ``group/<id>``: a group with its optional alias, ``member_entity_ids``,
  ``member_group_ids`` (its children) and ``parent_group_ids`` (kept in step with the
  children lists of the parents, in the same transaction).

Indexes (values are ids):

* ``name/entity/<h>`` and ``name/group/<h>``, ``h`` the SHA-256 of the lower-cased name
  (names are case-insensitive, as in Vault, and may contain any character);
* ``factor/entity/<h>`` and ``factor/group/<h>``: an alias's ``(mount accessor, name)``
  → the entity / group owning it; this index is what makes an alias unique per mount;
* ``alias-id/entity/<alias id>`` and ``alias-id/group/<alias id>`` → entity / group;
* ``member/<entity id>/<group id>``: the groups an entity is a direct member of.

All writes happen inside ``storage.transaction()`` (serialised by every physical
backend), so read-check-write sequences such as "is this alias taken?" are atomic even
across processes.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

from strongroom.logical.errors import UserError
from strongroom.logical.storage import Storage

INTERNAL = "internal"
EXTERNAL = "external"


def _hash(*parts: str) -> str:
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()


def name_key(kind: str, name: str) -> str:
    return f"name/{kind}/{_hash(name.lower())}"


def factor_key(kind: str, mount_accessor: str, name: str) -> str:
    return f"factor/{kind}/{_hash(mount_accessor, name.lower())}"


def new_id() -> str:
    return str(uuid.uuid4())


_ID = re.compile(r"[A-Za-z0-9_@-][A-Za-z0-9_.@-]*")


def valid_id(value: str) -> bool:
    """Ids are ours (UUIDs), but lookups take them from clients: refuse anything that is
    not a plain storage key segment instead of letting the storage layer raise."""
    return bool(value) and _ID.fullmatch(value) is not None and value not in (".", "..")


@dataclass
class Alias:
    """An entity alias (or a group's alias): one identity on one auth mount."""

    id: str
    canonical_id: str
    mount_accessor: str
    name: str
    metadata: dict[str, str] = field(default_factory=dict)
    custom_metadata: dict[str, str] = field(default_factory=dict)
    merged_from_canonical_ids: list[str] = field(default_factory=list)
    creation_time: float = 0.0
    last_update_time: float = 0.0
    local: bool = False

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Alias:
        known = {k: v for k, v in raw.items() if k in cls.__dataclass_fields__}
        return cls(**known)


@dataclass
class Entity:
    id: str
    name: str
    metadata: dict[str, str] = field(default_factory=dict)
    policies: list[str] = field(default_factory=list)
    disabled: bool = False
    aliases: list[Alias] = field(default_factory=list)
    merged_entity_ids: list[str] = field(default_factory=list)
    creation_time: float = 0.0
    last_update_time: float = 0.0

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Entity:
        known = {k: v for k, v in raw.items() if k in cls.__dataclass_fields__ and k != "aliases"}
        return cls(**known, aliases=[Alias.from_json(a) for a in raw.get("aliases") or []])

    def alias_for(self, mount_accessor: str) -> Alias | None:
        for alias in self.aliases:
            if alias.mount_accessor == mount_accessor:
                return alias
        return None


@dataclass
class Group:
    id: str
    name: str
    type: str = INTERNAL
    policies: list[str] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)
    member_entity_ids: list[str] = field(default_factory=list)
    member_group_ids: list[str] = field(default_factory=list)
    parent_group_ids: list[str] = field(default_factory=list)
    alias: Alias | None = None
    creation_time: float = 0.0
    last_update_time: float = 0.0
    modify_index: int = 0

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Group:
        known = {k: v for k, v in raw.items() if k in cls.__dataclass_fields__ and k != "alias"}
        alias = raw.get("alias")
        return cls(**known, alias=Alias.from_json(alias) if alias else None)


def _alias_keys(kind: str, owner_id: str, aliases: list[Alias]) -> dict[str, str]:
    out: dict[str, str] = {}
    for alias in aliases:
        out[factor_key(kind, alias.mount_accessor, alias.name)] = owner_id
        out[f"alias-id/{kind}/{alias.id}"] = owner_id
    return out


class View:
    """The identity records of one storage (a transaction, or the plain mount view).

    Reads are memoised for the life of the view: one request, or one transaction, so a
    group reached through several paths is read once and nothing outlives the request.
    Records are decoded afresh on every read, so callers may mutate what they get.
    """

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self._memo: dict[str, bytes | None] = {}

    # -- raw access ---------------------------------------------------------------------------

    async def _get(self, key: str) -> Any:
        if key not in self._memo:
            self._memo[key] = await self.storage.get(key)
        raw = self._memo[key]
        return None if raw is None else json.loads(raw)

    async def _put(self, key: str, value: Any) -> None:
        raw = json.dumps(value, separators=(",", ":"), sort_keys=True).encode()
        await self.storage.put(key, raw)
        self._memo[key] = raw

    async def _delete(self, key: str) -> None:
        await self.storage.delete(key)
        self._memo[key] = None

    async def _list(self, prefix: str) -> list[str]:
        return [k for k in await self.storage.list(prefix) if not k.endswith("/")]

    async def _sync_index(self, old: dict[str, str], new: dict[str, str]) -> None:
        # an old key is dropped only while it still points at its owner: when an alias
        # moves, the entity receiving it may already have claimed the key
        for key, value in old.items():
            if key not in new and await self._get(key) == value:
                await self._delete(key)
        for key, value in new.items():
            if old.get(key) != value:
                await self._put(key, value)

    # -- entities -----------------------------------------------------------------------------

    async def entity(self, entity_id: str) -> Entity | None:
        if not valid_id(entity_id):
            return None
        raw = await self._get(f"entity/{entity_id}")
        return None if raw is None else Entity.from_json(raw)

    async def entity_by_name(self, name: str) -> Entity | None:
        entity_id = await self._get(name_key("entity", name)) if name else None
        return await self.entity(entity_id) if entity_id else None

    async def entity_by_alias(self, mount_accessor: str, name: str) -> tuple[Entity, Alias] | None:
        entity_id = await self._get(factor_key("entity", mount_accessor, name))
        entity = await self.entity(entity_id) if entity_id else None
        alias = entity.alias_for(mount_accessor) if entity else None
        return None if entity is None or alias is None else (entity, alias)

    async def entity_by_alias_id(self, alias_id: str) -> tuple[Entity, Alias] | None:
        if not valid_id(alias_id):
            return None
        entity_id = await self._get(f"alias-id/entity/{alias_id}")
        entity = await self.entity(entity_id) if entity_id else None
        if entity is None:
            return None
        for alias in entity.aliases:
            if alias.id == alias_id:
                return entity, alias
        return None

    async def entity_ids(self) -> list[str]:
        return await self._list("entity/")

    async def entity_alias_ids(self) -> list[str]:
        return await self._list("alias-id/entity/")

    def _entity_index(self, entity: Entity | None) -> dict[str, str]:
        if entity is None:
            return {}
        return {
            name_key("entity", entity.name): entity.id,
            **_alias_keys("entity", entity.id, entity.aliases),
        }

    async def save_entity(self, entity: Entity) -> None:
        """Write an entity and move its name and alias indexes to match it."""
        previous = await self.entity(entity.id)
        await self._sync_index(self._entity_index(previous), self._entity_index(entity))
        await self._put(f"entity/{entity.id}", asdict(entity))

    async def delete_entity(self, entity: Entity) -> None:
        """Delete an entity, its aliases and its memberships."""
        for group_id in await self.entity_group_ids(entity.id):
            group = await self.group(group_id)
            if group is not None and entity.id in group.member_entity_ids:
                group.member_entity_ids.remove(entity.id)
                await self.save_group(group)
            else:
                await self._delete(f"member/{entity.id}/{group_id}")
        await self._sync_index(self._entity_index(await self.entity(entity.id)), {})
        await self._delete(f"entity/{entity.id}")

    async def new_entity_name(self) -> str:
        while True:
            name = "entity_" + new_id()[:8]
            if await self.entity_by_name(name) is None:
                return name

    # -- groups -------------------------------------------------------------------------------

    async def group(self, group_id: str) -> Group | None:
        if not valid_id(group_id):
            return None
        raw = await self._get(f"group/{group_id}")
        return None if raw is None else Group.from_json(raw)

    async def group_by_name(self, name: str) -> Group | None:
        group_id = await self._get(name_key("group", name)) if name else None
        return await self.group(group_id) if group_id else None

    async def group_by_alias(self, mount_accessor: str, name: str) -> Group | None:
        group_id = await self._get(factor_key("group", mount_accessor, name))
        return await self.group(group_id) if group_id else None

    async def group_by_alias_id(self, alias_id: str) -> Group | None:
        if not valid_id(alias_id):
            return None
        group_id = await self._get(f"alias-id/group/{alias_id}")
        group = await self.group(group_id) if group_id else None
        return group if group is not None and group.alias is not None and group.alias.id == alias_id else None

    async def group_ids(self) -> list[str]:
        return await self._list("group/")

    async def group_alias_ids(self) -> list[str]:
        return await self._list("alias-id/group/")

    async def entity_group_ids(self, entity_id: str) -> list[str]:
        return await self._list(f"member/{entity_id}/")

    def _group_index(self, group: Group | None) -> dict[str, str]:
        if group is None:
            return {}
        out = {name_key("group", group.name): group.id}
        if group.alias is not None:
            out.update(_alias_keys("group", group.id, [group.alias]))
        for entity_id in group.member_entity_ids:
            out[f"member/{entity_id}/{group.id}"] = group.id
        return out

    async def save_group(self, group: Group) -> None:
        """Write a group and move its name, alias and membership indexes to match it."""
        previous = await self.group(group.id)
        group.modify_index = (previous.modify_index if previous else 0) + 1
        await self._sync_index(self._group_index(previous), self._group_index(group))
        await self._put(f"group/{group.id}", asdict(group))

    async def delete_group(self, group: Group) -> None:
        """Delete a group, its alias and indexes, and unlink it from parents and children."""
        for child_id in group.member_group_ids:
            child = await self.group(child_id)
            if child is not None and group.id in child.parent_group_ids:
                child.parent_group_ids.remove(group.id)
                await self.save_group(child)
        for parent_id in group.parent_group_ids:
            parent = await self.group(parent_id)
            if parent is not None and group.id in parent.member_group_ids:
                parent.member_group_ids.remove(group.id)
                await self.save_group(parent)
        await self._sync_index(self._group_index(await self.group(group.id)), {})
        await self._delete(f"group/{group.id}")

    async def new_group_name(self) -> str:
        while True:
            name = "group_" + new_id()
            if await self.group_by_name(name) is None:
                return name

    async def ancestors(self, group_id: str) -> set[str]:
        """Every group ``group_id`` belongs to, directly or through other groups."""
        seen: set[str] = set()
        todo = [group_id]
        while todo:
            group = await self.group(todo.pop())
            if group is None:
                continue
            for parent in group.parent_group_ids:
                if parent not in seen:
                    seen.add(parent)
                    todo.append(parent)
        return seen

    async def set_member_groups(self, group: Group, member_ids: list[str]) -> None:
        """Make ``member_ids`` the child groups of ``group``, refusing cycles.

        Children record their parents (``parent_group_ids``) too; both sides change in
        the caller's transaction. The caller saves ``group`` afterwards.
        """
        wanted = list(dict.fromkeys(member_ids))
        ancestors = await self.ancestors(group.id) if group.id else set()
        for member_id in wanted:
            if member_id == group.id:
                raise UserError(f"member group ID {member_id!r} is same as the ID of the group")
            if await self.group(member_id) is None:
                raise UserError(f"invalid member group ID {member_id!r}")
            if member_id in ancestors:
                raise UserError(
                    f"cyclic relationship detected for member group ID {member_id!r}: "
                    "it is already a parent of this group"
                )
        for child_id in group.member_group_ids:
            if child_id not in wanted:
                child = await self.group(child_id)
                if child is not None and group.id in child.parent_group_ids:
                    child.parent_group_ids.remove(group.id)
                    await self.save_group(child)
        for child_id in wanted:
            child = await self.group(child_id)
            if child is not None and group.id not in child.parent_group_ids:
                child.parent_group_ids.append(group.id)
                await self.save_group(child)
        group.member_group_ids = wanted

    async def groups_of_entity(self, entity_id: str) -> tuple[list[Group], list[Group]]:
        """The entity's direct groups, and the groups those belong to (transitively)."""
        direct: list[Group] = []
        for group_id in await self.entity_group_ids(entity_id):
            group = await self.group(group_id)
            if group is not None and entity_id in group.member_entity_ids:
                direct.append(group)
        seen = {g.id for g in direct}
        inherited: list[Group] = []
        todo = [p for g in direct for p in g.parent_group_ids]
        while todo:
            group_id = todo.pop(0)
            if group_id in seen:
                continue
            seen.add(group_id)
            group = await self.group(group_id)
            if group is not None:
                inherited.append(group)
                todo.extend(group.parent_group_ids)
        return direct, inherited


class IdentityStorage:
    """The identity mount's storage, handing out views and transactions over it."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    def view(self) -> View:
        return View(self.storage)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[View]:
        async with self.storage.transaction() as txn:
            yield View(txn)


def now() -> float:
    return time.time()
