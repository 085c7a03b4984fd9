"""Groups (``group``, ``group/id/:id``, ``group/name/:name``) and group aliases.

Internal groups list their members; external groups get members from logins, through
their one alias on an auth mount (an LDAP group, a GitHub team). A group's policies
apply to its member entities and, transitively, to the members of its member groups;
member groups may not form a cycle. Semantics and messages follow Vault's
``handleGroupUpdateCommon`` and ``handleGroupAliasUpdateCommon``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from strongroom.engines.identity.service import check_no_root, clean_policies
from strongroom.engines.identity.store import EXTERNAL, INTERNAL, Alias, Group, View, new_id, now
from strongroom.engines.identity.views import alias_list_info, alias_read, group_read, list_data
from strongroom.framework import Field, FieldData, FieldType, Path, PathOperation
from strongroom.logical.errors import UserError
from strongroom.logical.request import Operation, Request, Response

if TYPE_CHECKING:
    from strongroom.engines.identity.backend import IdentityBackend

S, L, KV = FieldType.STRING, FieldType.COMMA_LIST, FieldType.KV_PAIRS

GROUP_FIELDS: dict[str, Field] = {
    "id": Field(S, "ID of the group. If set, updates the corresponding existing group."),
    "type": Field(S, "Type of the group, 'internal' or 'external'. Defaults to 'internal'"),
    "name": Field(S, "Name of the group."),
    "metadata": Field(KV, "Metadata to be associated with the group."),
    "policies": Field(L, "Policies to be tied to the group."),
    "member_group_ids": Field(L, "Group IDs to be assigned as group members."),
    "member_entity_ids": Field(L, "Entity IDs to be assigned as group members."),
}
GROUP_ALIAS_FIELDS: dict[str, Field] = {
    "id": Field(S, "ID of the group alias."),
    "name": Field(S, "Alias of the group."),
    "mount_accessor": Field(S, "Mount accessor to which this alias belongs to."),
    "canonical_id": Field(S, "ID of the group to which this is an alias."),
}


def paths(b: IdentityBackend) -> list[Path]:
    g = GroupHandlers(b)
    return [
        Path(
            "group", {Operation.UPDATE: PathOperation(g.register, "Create a new group.")}, fields=GROUP_FIELDS
        ),
        Path("group/id/", {Operation.LIST: PathOperation(g.list_by_id, "List all the group IDs.")}),
        Path("group/name/", {Operation.LIST: PathOperation(g.list_by_name, "List all the group names.")}),
        Path(
            "group/id/{id}",
            {
                Operation.UPDATE: PathOperation(g.update_by_id, "Update a group by ID."),
                Operation.READ: PathOperation(g.read_by_id, "Read a group by ID."),
                Operation.DELETE: PathOperation(g.delete_by_id, "Delete a group by ID."),
            },
            fields=GROUP_FIELDS,
            synopsis="Update or delete an existing group using its ID.",
        ),
        Path(
            "group/name/{name:path}",
            {
                Operation.UPDATE: PathOperation(g.update_by_name, "Create or update a group by name."),
                Operation.READ: PathOperation(g.read_by_name, "Read a group by name."),
                Operation.DELETE: PathOperation(g.delete_by_name, "Delete a group by name."),
            },
            fields=GROUP_FIELDS,
            synopsis="Update, read or delete a group using its name.",
        ),
        Path(
            "group-alias",
            {Operation.UPDATE: PathOperation(g.alias_register, "Create or update a group alias.")},
            fields=GROUP_ALIAS_FIELDS,
            synopsis="Creates a new group alias, or updates an existing one.",
        ),
        Path(
            "group-alias/id/", {Operation.LIST: PathOperation(g.alias_list, "List all the group alias IDs.")}
        ),
        Path(
            "group-alias/id/{id}",
            {
                Operation.UPDATE: PathOperation(g.alias_update_by_id, "Update a group alias by ID."),
                Operation.READ: PathOperation(g.alias_read, "Read a group alias by ID."),
                Operation.DELETE: PathOperation(g.alias_delete, "Delete a group alias by ID."),
            },
            fields=GROUP_ALIAS_FIELDS,
            synopsis="Update, read or delete a group alias using ID.",
        ),
    ]


class GroupHandlers:
    def __init__(self, b: IdentityBackend) -> None:
        self.service = b.service
        self.data = b.service.data

    # -- groups -------------------------------------------------------------------------------

    async def register(self, req: Request, d: FieldData) -> Response | None:
        if d.sent("id"):
            return await self.update_by_id(req, d)
        if d.sent("name"):
            return await self.update_by_name(req, d)
        async with self.data.transaction() as view:
            return await self._update(view, d, None)

    async def update_by_id(self, req: Request, d: FieldData) -> Response | None:
        group_id = str(d.get("id"))
        if not group_id:
            raise UserError("empty group ID")
        async with self.data.transaction() as view:
            group = await view.group(group_id)
            if group is None:
                raise UserError("invalid group ID")
            return await self._update(view, d, group)

    async def update_by_name(self, req: Request, d: FieldData) -> Response | None:
        name = str(d.get("name"))
        if not name:
            raise UserError("empty group name")
        async with self.data.transaction() as view:
            return await self._update(view, d, await view.group_by_name(name))

    async def _update(self, view: View, d: FieldData, group: Group | None) -> Response | None:
        created = group is None
        if group is None:
            group = Group(id=new_id(), name="", creation_time=now())
        if d.sent("policies"):
            # trimmed, deduplicated case-insensitively, order kept (RemoveDuplicatesStable)
            seen: dict[str, str] = {}
            for policy in clean_policies(d.get("policies")):
                seen.setdefault(policy.lower(), policy)
            group.policies = list(seen.values())
        check_no_root(group.policies)
        if d.sent("type"):
            group_type = str(d.get("type"))
            if not created and group_type != group.type:
                raise UserError("group type cannot be changed")
            group.type = group_type
        group.type = group.type or INTERNAL
        if group.type not in (INTERNAL, EXTERNAL):
            raise UserError(f'invalid group type "{group.type}"')
        name = str(d.get("name"))
        if name:
            by_name = await view.group_by_name(name)
            if by_name is not None and by_name.id != group.id:
                raise UserError("group name is already in use")
            group.name = name
        if d.sent("metadata"):
            group.metadata = dict(d.get("metadata"))
        if d.sent("member_entity_ids"):
            if group.type == EXTERNAL:
                raise UserError("member entities can't be set manually for external groups")
            members = sorted(set(d.get("member_entity_ids")))
            for entity_id in members:
                if await view.entity(entity_id) is None:
                    raise UserError(f"invalid entity ID {entity_id!r}")
            group.member_entity_ids = members
        if d.sent("member_group_ids"):
            if group.type == EXTERNAL:
                raise UserError("member groups can't be set for external groups")
            await view.set_member_groups(group, list(d.get("member_group_ids")))
        if not group.name:
            group.name = await view.new_group_name()
        group.last_update_time = now()
        await view.save_group(group)
        if not created:
            return None
        return Response(data={"id": group.id, "name": group.name})

    async def read_by_id(self, req: Request, d: FieldData) -> Response | None:
        group = await self.data.view().group(str(d.get("id")))
        return None if group is None else Response(data=group_read(group, self.service.mount_info))

    async def read_by_name(self, req: Request, d: FieldData) -> Response | None:
        group = await self.data.view().group_by_name(str(d.get("name")))
        return None if group is None else Response(data=group_read(group, self.service.mount_info))

    async def delete_by_id(self, req: Request, d: FieldData) -> Response | None:
        async with self.data.transaction() as view:
            group = await view.group(str(d.get("id")))
            if group is not None:
                await view.delete_group(group)
        return None

    async def delete_by_name(self, req: Request, d: FieldData) -> Response | None:
        async with self.data.transaction() as view:
            group = await view.group_by_name(str(d.get("name")))
            if group is not None:
                await view.delete_group(group)
        return None

    async def _groups(self, view: View) -> list[Group]:
        out = []
        for group_id in await view.group_ids():
            group = await view.group(group_id)
            if group is not None:
                out.append(group)
        return out

    def _key_info(self, group: Group) -> dict[str, Any]:
        info: dict[str, Any] = {
            "name": group.name,
            "num_member_entities": len(group.member_entity_ids),
            "num_parent_groups": len(group.parent_group_ids),
        }
        if group.alias is not None:
            item = {
                "id": group.alias.id,
                "name": group.alias.name,
                "mount_accessor": group.alias.mount_accessor,
            }
            mount = self.service.mount_info(group.alias.mount_accessor)
            if mount is not None:
                item["mount_type"], item["mount_path"] = mount
            info["alias"] = item
        return info

    async def list_by_id(self, req: Request, d: FieldData) -> Response | None:
        groups = await self._groups(self.data.view())
        return Response(data=list_data([g.id for g in groups], {g.id: self._key_info(g) for g in groups}))

    async def list_by_name(self, req: Request, d: FieldData) -> Response | None:
        groups = await self._groups(self.data.view())
        return Response(data=list_data([g.name for g in groups], {g.id: self._key_info(g) for g in groups}))

    # -- group aliases ------------------------------------------------------------------------

    async def alias_register(self, req: Request, d: FieldData) -> Response | None:
        if d.sent("id"):
            return await self.alias_update_by_id(req, d)
        async with self.data.transaction() as view:
            return await self._alias_update(view, d, None)

    async def alias_update_by_id(self, req: Request, d: FieldData) -> Response | None:
        alias_id = str(d.get("id"))
        if not alias_id:
            raise UserError("empty group alias ID")
        async with self.data.transaction() as view:
            owner = await view.group_by_alias_id(alias_id)
            if owner is None:
                raise UserError("invalid group alias ID")
            return await self._alias_update(view, d, owner)

    async def _alias_update(self, view: View, d: FieldData, owner: Group | None) -> Response | None:
        """Create an alias (``owner`` None) or change the alias of ``owner``."""
        alias = owner.alias if owner is not None else None
        name = str(d.get("name"))
        if not name:
            raise UserError("missing alias name")
        accessor = str(d.get("mount_accessor"))
        if not accessor:
            raise UserError("missing mount_accessor")
        canonical_id = str(d.get("canonical_id"))
        if (
            alias is not None
            and alias.name == name
            and alias.mount_accessor == accessor
            and canonical_id in ("", alias.canonical_id)
        ):
            return None  # idempotent
        target: Group | None = None
        if canonical_id:
            target = await view.group(canonical_id)
            if target is None:
                raise UserError("invalid group ID given in 'canonical_id'")
            if target.type != EXTERNAL:
                raise UserError("alias can't be set on an internal group")
        mount = self.service.mount_by_accessor(accessor)
        if mount is None:
            raise UserError(f"invalid mount accessor {accessor!r}")
        if mount.local:
            raise UserError(f"mount accessor {accessor!r} is a local mount")
        taken = await view.group_by_alias(accessor, name)
        if taken is not None and taken.alias is not None and (alias is None or taken.alias.id != alias.id):
            raise UserError("combination of mount and group alias name is already in use")
        stamp = now()
        if alias is None:
            alias = Alias(
                id=new_id(), canonical_id="", mount_accessor=accessor, name=name, creation_time=stamp
            )
        alias.name, alias.mount_accessor, alias.last_update_time = name, accessor, stamp
        previous: Group | None = None
        if owner is None:
            if target is None:
                # an alias for no group yet creates its external group
                target = Group(
                    id=new_id(), name=await view.new_group_name(), type=EXTERNAL, creation_time=stamp
                )
        elif target is None or target.id == owner.id:
            target = owner
        else:
            previous, previous.alias = owner, None  # the alias moves to another group
        alias.canonical_id = target.id
        target.alias = alias
        target.last_update_time = stamp
        await view.save_group(target)
        if previous is not None:
            previous.last_update_time = stamp
            await view.save_group(previous)
        return Response(data={"id": alias.id, "canonical_id": target.id})

    async def alias_read(self, req: Request, d: FieldData) -> Response | None:
        group = await self.data.view().group_by_alias_id(str(d.get("id")))
        if group is None or group.alias is None:
            return None
        return Response(data=alias_read(group.alias, self.service.mount_info))

    async def alias_delete(self, req: Request, d: FieldData) -> Response | None:
        async with self.data.transaction() as view:
            group = await view.group_by_alias_id(str(d.get("id")))
            if group is not None:
                group.alias = None
                group.last_update_time = now()
                await view.save_group(group)
        return None

    async def alias_list(self, req: Request, d: FieldData) -> Response | None:
        view = self.data.view()
        keys: list[str] = []
        info = {}
        for alias_id in await view.group_alias_ids():
            group = await view.group_by_alias_id(alias_id)
            if group is not None and group.alias is not None:
                keys.append(alias_id)
                info[alias_id] = alias_list_info(group.alias, self.service.mount_info)
        return Response(data=list_data(keys, info))
