"""Entities: ``entity``, ``entity/id/:id``, ``entity/name/:name``, batch delete and merge.

Create-or-update follows Vault's ``handleEntityUpdateCommon``: an ``id`` must exist, a
``name`` that exists selects that entity (or clashes with the one named by ``id``), a
new entity answers ``{id, name, aliases}`` and an update answers 204.

``entity/merge`` is a sudo path here (Vault does not require sudo): merging moves
another entity's aliases — its way of logging in — into the target entity, which is the
escalation behind CVE-2021-41802 and CVE-2024-9180, so a writer on ``identity/*`` alone
may not do it (security-and-reliability row 5).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from strongroom.engines.identity.service import check_no_root, clean_policies
from strongroom.engines.identity.store import Entity, View, new_id, now
from strongroom.engines.identity.views import entity_read, list_data
from strongroom.framework import Field, FieldData, FieldType, Path, PathOperation
from strongroom.logical.errors import UserError
from strongroom.logical.request import Operation, Request, Response

if TYPE_CHECKING:
    from strongroom.engines.identity.backend import IdentityBackend

S, B, L, KV = FieldType.STRING, FieldType.BOOL, FieldType.COMMA_LIST, FieldType.KV_PAIRS

ENTITY_FIELDS: dict[str, Field] = {
    "id": Field(S, "ID of the entity. If set, updates the corresponding existing entity."),
    "name": Field(S, "Name of the entity"),
    "metadata": Field(KV, "Metadata to be associated with the entity."),
    "policies": Field(L, "Policies to be tied to the entity."),
    "disabled": Field(
        B, "If set true, tokens tied to this identity will not be able to be used (but will not be revoked)."
    ),
}


def paths(b: IdentityBackend) -> list[Path]:
    handlers = EntityHandlers(b)
    return [
        Path(
            "entity",
            {Operation.UPDATE: PathOperation(handlers.update, "Create a new entity")},
            fields=ENTITY_FIELDS,
            synopsis="Create a new entity",
        ),
        Path(
            "entity/id/",
            {Operation.LIST: PathOperation(handlers.list_by_id, "List all the entity IDs")},
            synopsis="List all the entity IDs",
        ),
        Path(
            "entity/name/",
            {Operation.LIST: PathOperation(handlers.list_by_name, "List all the entity names")},
            synopsis="List all the entity names",
        ),
        Path(
            "entity/id/{id}",
            {
                Operation.UPDATE: PathOperation(handlers.update, "Update an entity by ID"),
                Operation.READ: PathOperation(handlers.read_by_id, "Read an entity by ID"),
                Operation.DELETE: PathOperation(handlers.delete_by_id, "Delete an entity by ID"),
            },
            fields=ENTITY_FIELDS,
            synopsis="Update, read or delete an entity using entity ID",
        ),
        Path(
            "entity/name/{name:path}",
            {
                Operation.UPDATE: PathOperation(handlers.update, "Create or update an entity by name"),
                Operation.READ: PathOperation(handlers.read_by_name, "Read an entity by name"),
                Operation.DELETE: PathOperation(handlers.delete_by_name, "Delete an entity by name"),
            },
            fields=ENTITY_FIELDS,
            synopsis="Update, read or delete an entity using entity name",
        ),
        Path(
            "entity/batch-delete",
            {Operation.UPDATE: PathOperation(handlers.batch_delete, "Delete all of the entities provided")},
            fields={"entity_ids": Field(L, "Entity IDs to delete")},
            synopsis="Delete all of the entities provided",
        ),
        Path(
            "entity/merge",
            {Operation.UPDATE: PathOperation(handlers.merge, "Merge two or more entities together")},
            fields={
                "from_entity_ids": Field(L, "Entity IDs which need to get merged"),
                "to_entity_id": Field(S, "Entity ID into which all the other entities need to get merged"),
                "conflicting_alias_ids_to_keep": Field(
                    L,
                    "Alias IDs to keep in case of conflicting aliases. Ignored if no conflicting aliases found",
                ),
                "force": Field(B, "Accepted for compatibility; there are no MFA secrets to merge."),
            },
            sudo=True,
            synopsis="Merge two or more entities together",
        ),
    ]


class EntityHandlers:
    def __init__(self, b: IdentityBackend) -> None:
        self.b = b
        self.data = b.service.data

    async def update(self, req: Request, d: FieldData) -> Response | None:
        async with self.data.transaction() as view:
            entity: Entity | None = None
            entity_id = str(d.get("id"))
            if entity_id:
                entity = await view.entity(entity_id)
                if entity is None:
                    raise UserError("entity not found from id")
            name = str(d.get("name"))
            if name:
                by_name = await view.entity_by_name(name)
                if by_name is not None:
                    if entity is None:
                        entity = by_name
                    elif entity.id != by_name.id:
                        raise UserError("entity name is already in use")
            created = entity is None
            if entity is None:
                entity = Entity(id=new_id(), name="", creation_time=now())
            if name:
                entity.name = name
            if d.sent("policies"):
                entity.policies = sorted(set(clean_policies(d.get("policies"))))
            check_no_root(entity.policies)
            if d.sent("disabled"):
                entity.disabled = bool(d.get("disabled"))
            if d.sent("metadata"):
                entity.metadata = dict(d.get("metadata"))
            if not entity.name:
                entity.name = await view.new_entity_name()
            entity.last_update_time = now()
            await view.save_entity(entity)
        if not created:
            return None
        return Response(data={"id": entity.id, "name": entity.name, "aliases": None})

    async def _read(self, view: View, entity: Entity | None) -> Response | None:
        if entity is None:
            return None
        return Response(data=await entity_read(view, entity, self.b.service.mount_info))

    async def read_by_id(self, req: Request, d: FieldData) -> Response | None:
        view = self.data.view()
        return await self._read(view, await view.entity(str(d.get("id"))))

    async def read_by_name(self, req: Request, d: FieldData) -> Response | None:
        view = self.data.view()
        return await self._read(view, await view.entity_by_name(str(d.get("name"))))

    async def delete_by_id(self, req: Request, d: FieldData) -> Response | None:
        async with self.data.transaction() as view:
            entity = await view.entity(str(d.get("id")))
            if entity is not None:
                await view.delete_entity(entity)
        return None

    async def delete_by_name(self, req: Request, d: FieldData) -> Response | None:
        async with self.data.transaction() as view:
            entity = await view.entity_by_name(str(d.get("name")))
            if entity is not None:
                await view.delete_entity(entity)
        return None

    async def batch_delete(self, req: Request, d: FieldData) -> Response | None:
        ids = list(d.get("entity_ids"))
        if not ids:
            raise UserError("missing entity ids to delete")
        async with self.data.transaction() as view:
            for entity_id in dict.fromkeys(ids):
                entity = await view.entity(entity_id)
                if entity is not None:
                    await view.delete_entity(entity)
        return None

    async def _entities(self, view: View) -> list[Entity]:
        out = []
        for entity_id in await view.entity_ids():
            entity = await view.entity(entity_id)
            if entity is not None:
                out.append(entity)
        return out

    def _key_info(self, entity: Entity) -> dict[str, Any]:
        info: dict[str, Any] = {"name": entity.name}
        if entity.aliases:
            aliases = []
            for alias in entity.aliases:
                item = {"id": alias.id, "name": alias.name, "mount_accessor": alias.mount_accessor}
                mount = self.b.service.mount_info(alias.mount_accessor)
                if mount is not None:
                    item["mount_type"], item["mount_path"] = mount
                aliases.append(item)
            info["aliases"] = aliases
        return info

    async def list_by_id(self, req: Request, d: FieldData) -> Response | None:
        entities = await self._entities(self.data.view())
        return Response(data=list_data([e.id for e in entities], {e.id: self._key_info(e) for e in entities}))

    async def list_by_name(self, req: Request, d: FieldData) -> Response | None:
        # as in Vault, key_info stays keyed by entity ID while keys are names
        entities = await self._entities(self.data.view())
        return Response(
            data=list_data([e.name for e in entities], {e.id: self._key_info(e) for e in entities})
        )

    async def merge(self, req: Request, d: FieldData) -> Response | None:
        to_id = str(d.get("to_entity_id"))
        if not to_id:
            raise UserError("missing entity id to merge to")
        from_ids = list(dict.fromkeys(d.get("from_entity_ids")))
        if not from_ids:
            raise UserError("missing entity ids to merge from")
        keep = list(d.get("conflicting_alias_ids_to_keep"))
        if len(from_ids) > 1 and len(keep) > 1:
            raise UserError(
                "aliases conflicts cannot be resolved with multiple from entity ids - "
                "merge one entity at a time"
            )
        async with self.data.transaction() as view:
            target = await view.entity(to_id)
            if target is None:
                raise UserError("entity id to merge to is invalid")
            sources: list[Entity] = []
            for from_id in from_ids:
                if from_id == target.id:
                    raise UserError("to_entity_id should not be present in from_entity_ids")
                source = await view.entity(from_id)
                if source is None:
                    raise UserError("entity id to merge from is invalid")
                sources.append(source)
            if not keep:
                _check_clashes(target, sources)
            for source in sources:
                await self._merge_one(view, target, source, keep)
            target.last_update_time = now()
            await view.save_entity(target)
        return None

    async def _merge_one(self, view: View, target: Entity, source: Entity, keep: list[str]) -> None:
        for alias in list(source.aliases):
            clash = target.alias_for(alias.mount_accessor)
            if clash is not None:
                if clash.id in keep:
                    continue  # the source's alias is dropped with the source entity
                if alias.id not in keep:
                    raise UserError(
                        "conflicting mount accessors in following alias IDs and neither were present in "
                        f"conflicting_alias_ids_to_keep: {alias.id}, {clash.id}"
                    )
                target.aliases.remove(clash)
            alias.canonical_id = target.id
            alias.merged_from_canonical_ids.append(source.id)
            alias.last_update_time = now()
            target.aliases.append(alias)
        target.merged_entity_ids.extend([*source.merged_entity_ids, source.id])
        # the target takes the source's place in its groups; policies are not merged
        for group_id in await view.entity_group_ids(source.id):
            group = await view.group(group_id)
            if group is None or source.id not in group.member_entity_ids:
                continue
            group.member_entity_ids.remove(source.id)
            if target.id not in group.member_entity_ids:
                group.member_entity_ids.append(target.id)
            await view.save_group(group)
        # the aliases that moved belong to the target now: save it first so deleting the
        # source leaves their indexes pointing at the target (and drops only the rest)
        await view.save_entity(target)
        await view.delete_entity(source)


def _check_clashes(target: Entity, sources: list[Entity]) -> None:
    """Without conflicting_alias_ids_to_keep, aliases on a shared mount refuse the merge."""
    owner: dict[str, str] = {}
    clashes: list[str] = []
    for source in sources:
        for alias in source.aliases:
            other = owner.setdefault(alias.mount_accessor, source.id)
            if other != source.id:
                raise UserError(
                    f"mount accessor {alias.mount_accessor} found in multiple fromEntities, "
                    "merge should be done with one fromEntity at a time"
                )
            clash = target.alias_for(alias.mount_accessor)
            if clash is not None:
                clashes.append(
                    f"mountAccessor: {alias.mount_accessor}, toEntity ID: {target.id}, fromEntity ID: "
                    f"{source.id}, conflicting toEntity alias ID: {clash.id}, conflicting fromEntity "
                    f"alias ID: {alias.id}"
                )
    if clashes:
        raise UserError(
            "toEntity and at least one fromEntity have aliases with the same mount accessor, repeat the "
            "merge request specifying exactly one fromEntity, clashes: " + "; ".join(clashes)
        )
