"""What core asks of the identity store on every request and at every login.

``core.identity`` is an :class:`IdentityService`. Core calls :meth:`policies_for` for
each request made with a token that has an entity, so entity and group policies (and
the groups' parents' policies) apply at once when they change, without a new token. It
reads straight from storage: multi-process nodes need no cache invalidation, and an
entity with its groups is a handful of small reads.

:meth:`create_or_fetch_entity` is what a login through an auth method (and a token role
with ``entity_alias``) uses to find or create the entity behind an alias.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from strongroom.core.policy import is_root_policy_name
from strongroom.engines.identity.store import (
    EXTERNAL,
    Alias,
    Entity,
    Group,
    IdentityStorage,
    View,
    new_id,
    now,
)
from strongroom.logical.errors import PermissionDenied, UserError
from strongroom.logical.storage import Storage

if TYPE_CHECKING:
    from strongroom.core.core import Core
    from strongroom.core.mounts import MountEntry


def check_no_root(policies: Iterable[str]) -> None:
    """Identity may never hand out ``root``, in any spelling (CVE-2025-5999)."""
    if any(is_root_policy_name(p) for p in policies):
        raise UserError("policies cannot contain root")


def clean_policies(policies: Iterable[str]) -> list[str]:
    """Trimmed, without empties or duplicates, order kept."""
    return list(dict.fromkeys(p.strip() for p in policies if p.strip()))


class IdentityService:
    """The identity store as core sees it."""

    def __init__(self, storage: Storage, core: Core | None = None) -> None:
        self.data = IdentityStorage(storage)
        self.core = core

    # -- mounts -------------------------------------------------------------------------------

    def mount_by_accessor(self, accessor: str) -> MountEntry | None:
        if self.core is None or not accessor:
            return None
        for table in (self.core.auth_mounts, self.core.mounts):
            for entry in table.entries.values():
                if entry.accessor == accessor:
                    return entry
        return None

    def mount_info(self, accessor: str) -> tuple[str, str] | None:
        """``(mount_type, mount_path)`` of the mount with this accessor, if it still exists."""
        entry = self.mount_by_accessor(accessor)
        return None if entry is None else (entry.type, entry.route_path)

    # -- per request --------------------------------------------------------------------------

    async def policies_for(self, entity_id: str) -> tuple[list[str], dict[str, Any] | None]:
        """The entity's and its groups' policies, and the context ACL templates resolve in.

        A token whose entity was deleted keeps working with its own policies (as in
        Vault); a token whose entity is disabled is refused outright.
        """
        view = self.data.view()
        entity = await view.entity(entity_id)
        if entity is None:
            return [], None
        if entity.disabled:
            raise PermissionDenied()
        direct, inherited = await view.groups_of_entity(entity.id)
        groups = [*direct, *inherited]
        policies: list[str] = list(entity.policies)
        for group in groups:
            policies.extend(group.policies)
        # stored policies never contain root (writes refuse it); drop it anyway
        return [p for p in clean_policies(policies) if not is_root_policy_name(p)], template_context(
            entity, groups
        )

    # -- logins -------------------------------------------------------------------------------

    async def create_or_fetch_entity(
        self,
        alias_name: str,
        mount_accessor: str,
        mount_type: str = "",
        metadata: dict[str, str] | None = None,
        group_alias_names: list[str] | None = None,
    ) -> dict[str, Any]:
        """The entity behind ``(mount_accessor, alias_name)``, created on first use.

        The alias's metadata follows the latest login (only that mount's alias changes,
        never another alias of the same entity: CVE-2022-40186). With
        ``group_alias_names``, the entity's membership of this mount's external groups is
        set to the groups whose aliases carry those names.
        """
        if not alias_name or not mount_accessor:
            raise UserError("missing alias name or mount accessor")
        async with self.data.transaction() as view:
            found = await view.entity_by_alias(mount_accessor, alias_name)
            if found is None:
                stamp = now()
                entity = Entity(
                    id=new_id(),
                    name=await view.new_entity_name(),
                    creation_time=stamp,
                    last_update_time=stamp,
                )
                entity.aliases.append(
                    Alias(
                        id=new_id(),
                        canonical_id=entity.id,
                        mount_accessor=mount_accessor,
                        name=alias_name,
                        metadata=dict(metadata or {}),
                        creation_time=stamp,
                        last_update_time=stamp,
                    )
                )
                await view.save_entity(entity)
            else:
                entity, alias = found
                if metadata is not None and dict(metadata) != alias.metadata:
                    alias.metadata = dict(metadata)
                    alias.last_update_time = now()
                    await view.save_entity(entity)
            if group_alias_names is not None:
                await refresh_external_groups(view, entity.id, mount_accessor, group_alias_names)
        return {"id": entity.id, "name": entity.name, "disabled": entity.disabled}


async def refresh_external_groups(view: View, entity_id: str, mount_accessor: str, names: list[str]) -> None:
    """Make the entity a member of exactly those external groups of this mount named by ``names``.

    External groups of other mounts, and internal groups, are left alone; group aliases
    that do not exist map to nothing (they are created by an operator, not by a login).
    """
    wanted: set[str] = set()
    for name in names:
        group = await view.group_by_alias(mount_accessor, name)
        if group is not None and group.type == EXTERNAL:
            wanted.add(group.id)
    current = set(await view.entity_group_ids(entity_id))
    for group_id in current - wanted:
        group = await view.group(group_id)
        if (
            group is not None
            and group.type == EXTERNAL
            and group.alias is not None
            and group.alias.mount_accessor == mount_accessor
            and entity_id in group.member_entity_ids
        ):
            group.member_entity_ids.remove(entity_id)
            group.last_update_time = now()
            await view.save_group(group)
    for group_id in wanted - current:
        group = await view.group(group_id)
        if group is not None and entity_id not in group.member_entity_ids:
            group.member_entity_ids.append(entity_id)
            group.last_update_time = now()
            await view.save_group(group)


def template_context(entity: Entity, groups: list[Group]) -> dict[str, Any]:
    """The dict strongroom.core.acl.resolve_template reads ``{{identity...}}`` from.

    Aliases are keyed by mount accessor, so a template naming one mount only ever sees
    that mount's alias (and its metadata), never another mount's (CVE-2021-43998).
    """
    return {
        "id": entity.id,
        "name": entity.name,
        "metadata": dict(entity.metadata),
        "aliases": {
            a.mount_accessor: {
                "id": a.id,
                "name": a.name,
                "metadata": dict(a.metadata),
                "custom_metadata": dict(a.custom_metadata),
            }
            for a in entity.aliases
        },
        "groups": {
            "ids": {g.id: {"name": g.name, "metadata": dict(g.metadata)} for g in groups},
            "names": {g.name: {"id": g.id, "metadata": dict(g.metadata)} for g in groups},
        },
    }
