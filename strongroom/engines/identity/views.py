"""Response bodies for entities, aliases and groups, field for field as Vault sends them.

Vault marshals Go slices and maps decoded from protobuf, so an empty list or map is
``null`` on the wire (``metadata``, a group's ``policies`` and member lists, ...), while
lists Vault builds itself per request (``aliases``, ``group_ids``, an entity's
``policies``) are ``[]``. Clients such as hvac compare these exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from strongroom.core.token_backend import rfc3339
from strongroom.engines.identity.store import Alias, Entity, Group, View

MountInfo = Callable[[str], tuple[str, str] | None]
NAMESPACE_ID = "root"


def nullable(value: list[str] | dict[str, str]) -> list[str] | dict[str, str] | None:
    """Go's nil for an empty slice or map."""
    return value if value else None


def _mount(data: dict[str, Any], accessor: str, mount_info: MountInfo) -> None:
    info = mount_info(accessor)
    if info is not None:
        data["mount_type"], data["mount_path"] = info


def alias_in_entity(alias: Alias, mount_info: MountInfo) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": alias.id,
        "canonical_id": alias.canonical_id,
        "mount_accessor": alias.mount_accessor,
        "metadata": nullable(alias.metadata),
        "name": alias.name,
        "merged_from_canonical_ids": nullable(alias.merged_from_canonical_ids),
        "creation_time": rfc3339(alias.creation_time),
        "last_update_time": rfc3339(alias.last_update_time),
        "local": alias.local,
        "custom_metadata": nullable(alias.custom_metadata),
    }
    _mount(data, alias.mount_accessor, mount_info)
    return data


def alias_read(alias: Alias, mount_info: MountInfo) -> dict[str, Any]:
    """``GET entity-alias/id/:id`` and ``GET group-alias/id/:id``."""
    data = alias_in_entity(alias, mount_info)
    data["namespace_id"] = NAMESPACE_ID
    return data


async def entity_read(view: View, entity: Entity, mount_info: MountInfo) -> dict[str, Any]:
    """``GET entity/id/:id``, ``entity/name/:name`` and ``lookup/entity``."""
    direct, inherited = await view.groups_of_entity(entity.id)
    direct_ids = [g.id for g in direct]
    inherited_ids = [g.id for g in inherited]
    return {
        "id": entity.id,
        "name": entity.name,
        "metadata": nullable(entity.metadata),
        "merged_entity_ids": nullable(entity.merged_entity_ids),
        "policies": sorted(set(entity.policies)),
        "disabled": entity.disabled,
        "namespace_id": NAMESPACE_ID,
        "creation_time": rfc3339(entity.creation_time),
        "last_update_time": rfc3339(entity.last_update_time),
        "aliases": [alias_in_entity(a, mount_info) for a in entity.aliases],
        "direct_group_ids": direct_ids,
        "inherited_group_ids": inherited_ids,
        "group_ids": direct_ids + inherited_ids,
    }


def group_read(group: Group, mount_info: MountInfo) -> dict[str, Any]:
    """``GET group/id/:id``, ``group/name/:name`` and ``lookup/group``."""
    alias: dict[str, Any] = {}
    if group.alias is not None:
        alias = {
            "id": group.alias.id,
            "canonical_id": group.alias.canonical_id,
            "mount_accessor": group.alias.mount_accessor,
            "metadata": nullable(group.alias.metadata),
            "name": group.alias.name,
            "merged_from_canonical_ids": nullable(group.alias.merged_from_canonical_ids),
            "creation_time": rfc3339(group.alias.creation_time),
            "last_update_time": rfc3339(group.alias.last_update_time),
        }
        _mount(alias, group.alias.mount_accessor, mount_info)
    return {
        "id": group.id,
        "name": group.name,
        "policies": nullable(group.policies),
        "member_entity_ids": nullable(group.member_entity_ids),
        "parent_group_ids": nullable(group.parent_group_ids),
        "metadata": nullable(group.metadata),
        "creation_time": rfc3339(group.creation_time),
        "last_update_time": rfc3339(group.last_update_time),
        "modify_index": group.modify_index,
        "type": group.type,
        "namespace_id": NAMESPACE_ID,
        "alias": alias,
        "member_group_ids": nullable(group.member_group_ids),
    }


def alias_list_info(alias: Alias, mount_info: MountInfo) -> dict[str, Any]:
    """One ``key_info`` entry of ``LIST entity-alias/id`` / ``group-alias/id``."""
    data: dict[str, Any] = {
        "canonical_id": alias.canonical_id,
        "mount_accessor": alias.mount_accessor,
        "name": alias.name,
    }
    _mount(data, alias.mount_accessor, mount_info)
    return data


def list_data(keys: list[str], key_info: dict[str, Any]) -> dict[str, Any]:
    """Vault's ``ListResponseWithInfo``: ``key_info`` only for listed keys, omitted when empty.

    (An empty listing must carry nothing but ``keys`` so it answers 404; and a by-name
    listing, whose ``key_info`` Vault keys by ID, ends up without one.)
    """
    info = {k: key_info[k] for k in keys if k in key_info}
    return {"keys": keys, "key_info": info} if info else {"keys": keys}
