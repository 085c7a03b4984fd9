"""Entity aliases: ``entity-alias`` and ``entity-alias/id/:id``.

An alias is one identity on one auth mount: ``(mount_accessor, name)`` is unique across
the store, and an entity holds at most one alias per mount accessor. The second rule is
what keeps ``{{identity.entity.aliases.<accessor>...}}`` unambiguous (CVE-2021-43998)
and stops an alias from being moved onto an entity that already logs in through that
mount (CVE-2021-41802). Semantics and messages follow Vault's
``handleAliasCreateUpdate`` / ``handleAliasUpdate``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from strongroom.engines.identity.store import Alias, Entity, View, new_id, now
from strongroom.engines.identity.views import alias_list_info, alias_read, list_data
from strongroom.framework import Field, FieldData, FieldType, Path, PathOperation
from strongroom.logical.errors import UserError
from strongroom.logical.request import Operation, Request, Response

if TYPE_CHECKING:
    from strongroom.engines.identity.backend import IdentityBackend

S, KV = FieldType.STRING, FieldType.KV_PAIRS

ALIAS_FIELDS: dict[str, Field] = {
    "id": Field(S, "ID of the entity alias. If set, updates the corresponding entity alias."),
    "entity_id": Field(
        S, "Entity ID to which this alias belongs. Deprecated: use canonical_id.", deprecated=True
    ),
    "canonical_id": Field(S, "Entity ID to which this alias belongs"),
    "mount_accessor": Field(S, "Mount accessor to which this alias belongs to; unused for a modify"),
    "name": Field(S, "Name of the alias; unused for a modify"),
    "custom_metadata": Field(KV, "User provided key-value pairs"),
}

MAX_CUSTOM_METADATA_KEYS = 64
MAX_CUSTOM_METADATA_KEY_LEN = 128
MAX_CUSTOM_METADATA_VALUE_LEN = 512


def check_custom_metadata(metadata: dict[str, str]) -> None:
    """Vault's custommetadata.Validate limits."""
    if len(metadata) > MAX_CUSTOM_METADATA_KEYS:
        raise UserError(f"payload must contain at most {MAX_CUSTOM_METADATA_KEYS} keys")
    for key, value in metadata.items():
        if not key or len(key) > MAX_CUSTOM_METADATA_KEY_LEN:
            raise UserError(f"custom_metadata keys must be 1 to {MAX_CUSTOM_METADATA_KEY_LEN} bytes long")
        if len(value) > MAX_CUSTOM_METADATA_VALUE_LEN:
            raise UserError(
                f"custom_metadata values must be at most {MAX_CUSTOM_METADATA_VALUE_LEN} bytes long"
            )
        if not (key + value).isprintable():
            raise UserError("custom_metadata keys and values must be printable")


def paths(b: IdentityBackend) -> list[Path]:
    handlers = AliasHandlers(b)
    return [
        Path(
            "entity-alias",
            {Operation.UPDATE: PathOperation(handlers.create_update, "Create a new alias.")},
            fields=ALIAS_FIELDS,
            synopsis="Create a new alias.",
        ),
        Path(
            "entity-alias/id/",
            {Operation.LIST: PathOperation(handlers.list, "List all the alias IDs.")},
            synopsis="List all the alias IDs.",
        ),
        Path(
            "entity-alias/id/{id}",
            {
                Operation.UPDATE: PathOperation(handlers.create_update, "Update an alias by ID."),
                Operation.READ: PathOperation(handlers.read, "Read an alias by ID."),
                Operation.DELETE: PathOperation(handlers.delete, "Delete an alias by ID."),
            },
            fields=ALIAS_FIELDS,
            synopsis="Update, read or delete an alias ID.",
        ),
    ]


class AliasHandlers:
    def __init__(self, b: IdentityBackend) -> None:
        self.service = b.service
        self.data = b.service.data

    async def create_update(self, req: Request, d: FieldData) -> Response | None:
        name = str(d.get("name"))
        accessor = str(d.get("mount_accessor"))
        alias_id = str(d.get("id"))
        custom_sent = d.sent("custom_metadata")
        custom: dict[str, str] = dict(d.get("custom_metadata")) if custom_sent else {}
        canonical_id = str(d.get("canonical_id")) or str(d.get("entity_id"))
        if custom:
            check_custom_metadata(custom)
        async with self.data.transaction() as view:
            if alias_id:
                found = await view.entity_by_alias_id(alias_id)
                if found is None:
                    raise UserError("invalid alias ID provided")
                entity, alias = found
                if not custom_sent:
                    custom = dict(alias.custom_metadata)
                if not accessor and not name:
                    if not canonical_id and not custom_sent:
                        return None  # nothing to change
                    name, accessor = alias.name, alias.mount_accessor
                accessor = accessor or alias.mount_accessor
                name = name or alias.name
                return await self._update(view, entity, alias, canonical_id, name, accessor, custom)
            if not accessor or not name:
                raise UserError("'id' or 'mount_accessor' and 'name' must be provided")
            if self.service.mount_by_accessor(accessor) is None:
                raise UserError(f"invalid mount accessor {accessor!r}")
            found = await view.entity_by_alias(accessor, name)
            if found is not None:
                return await self._update(view, found[0], found[1], canonical_id, name, accessor, custom)
            return await self._create(view, canonical_id, name, accessor, custom)

    async def _create(
        self, view: View, canonical_id: str, name: str, accessor: str, custom: dict[str, str]
    ) -> Response:
        stamp = now()
        if canonical_id:
            entity = await view.entity(canonical_id)
            if entity is None:
                raise UserError("invalid canonical ID")
        else:
            entity = Entity(id=new_id(), name=await view.new_entity_name(), creation_time=stamp)
        if entity.alias_for(accessor) is not None:
            raise UserError("Alias already exists for requested entity and mount accessor")
        alias = Alias(
            id=new_id(),
            canonical_id=entity.id,
            mount_accessor=accessor,
            name=name,
            custom_metadata=custom,
            creation_time=stamp,
            last_update_time=stamp,
        )
        entity.aliases.append(alias)
        entity.last_update_time = stamp
        await view.save_entity(entity)
        return Response(data={"id": alias.id, "canonical_id": entity.id})

    async def _update(
        self,
        view: View,
        current: Entity,
        alias: Alias,
        canonical_id: str,
        name: str,
        accessor: str,
        custom: dict[str, str],
    ) -> Response | None:
        moving = bool(canonical_id) and canonical_id != alias.canonical_id
        if (
            name == alias.name
            and accessor == alias.mount_accessor
            and not moving
            and custom == alias.custom_metadata
        ):
            return None  # idempotent
        if accessor != alias.mount_accessor and not moving:
            other = current.alias_for(accessor)
            if other is not None and other.id != alias.id:
                raise UserError(
                    "Alias cannot be updated as the entity already has an alias for the given 'mount_accessor' "
                )
        if name != alias.name or accessor != alias.mount_accessor or custom != alias.custom_metadata:
            if self.service.mount_by_accessor(accessor) is None:
                raise UserError(f"invalid mount accessor {accessor!r}")
            existing = await view.entity_by_alias(accessor, name)
            if existing is not None and existing[1].id != alias.id:
                raise UserError("alias with combination of mount accessor and name already exists")
            alias.name, alias.mount_accessor, alias.custom_metadata = name, accessor, custom
        if self.service.mount_by_accessor(alias.mount_accessor) is None:
            raise UserError(f"invalid mount accessor {alias.mount_accessor!r}")
        alias.last_update_time = now()
        if moving:
            target = await view.entity(canonical_id)
            if target is None:
                raise UserError("given 'canonical_id' is not associated with an entity")
            if target.alias_for(alias.mount_accessor) is not None:
                raise UserError(
                    "Alias cannot be updated as the given entity already has an alias for this mount "
                )
            current.aliases = [a for a in current.aliases if a.id != alias.id]
            alias.canonical_id = target.id
            target.aliases.append(alias)
            target.last_update_time = alias.last_update_time
            await view.save_entity(target)  # claims the alias's index keys first
            await view.save_entity(current)
            return Response(data={"id": alias.id, "canonical_id": target.id})
        await view.save_entity(current)
        return Response(data={"id": alias.id, "canonical_id": current.id})

    async def read(self, req: Request, d: FieldData) -> Response | None:
        found = await self.data.view().entity_by_alias_id(str(d.get("id")))
        if found is None:
            return None
        return Response(data=alias_read(found[1], self.service.mount_info))

    async def delete(self, req: Request, d: FieldData) -> Response | None:
        async with self.data.transaction() as view:
            found = await view.entity_by_alias_id(str(d.get("id")))
            if found is not None:
                entity, alias = found
                entity.aliases = [a for a in entity.aliases if a.id != alias.id]
                entity.last_update_time = now()
                await view.save_entity(entity)
        return None

    async def list(self, req: Request, d: FieldData) -> Response | None:
        view = self.data.view()
        keys: list[str] = []
        info = {}
        for alias_id in await view.entity_alias_ids():
            found = await view.entity_by_alias_id(alias_id)
            if found is not None:
                keys.append(alias_id)
                info[alias_id] = alias_list_info(found[1], self.service.mount_info)
        return Response(data=list_data(keys, info))
