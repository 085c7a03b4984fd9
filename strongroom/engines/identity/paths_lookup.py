"""``lookup/entity`` and ``lookup/group``: find one by id, name, alias id or alias factors.

Exactly one criterion may be given (``alias_name`` and ``alias_mount_accessor`` count
as one, together). No match answers 204, as in Vault.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from strongroom.engines.identity.views import entity_read, group_read
from strongroom.framework import Field, FieldData, FieldType, Path, PathOperation
from strongroom.logical.errors import UserError
from strongroom.logical.request import Operation, Request, Response

if TYPE_CHECKING:
    from strongroom.engines.identity.backend import IdentityBackend

S = FieldType.STRING


def _fields(kind: str) -> dict[str, Field]:
    return {
        "name": Field(S, f"Name of the {kind}."),
        "id": Field(S, f"ID of the {kind}."),
        "alias_id": Field(S, "ID of the alias."),
        "alias_name": Field(
            S, "Name of the alias. This should be supplied in conjunction with 'alias_mount_accessor'."
        ),
        "alias_mount_accessor": Field(
            S,
            "Accessor of the mount to which the alias belongs to. This should be supplied in conjunction with "
            "'alias_name'.",
        ),
    }


def _criteria(d: FieldData) -> dict[str, str]:
    """The sent criteria, checked the way Vault checks them."""
    sent = {
        k: str(d.get(k))
        for k in ("id", "name", "alias_id", "alias_name", "alias_mount_accessor")
        if d.sent(k)
    }
    if not sent:
        raise UserError("query parameter not supplied")
    has_alias_pair = bool(sent.get("alias_name")) and bool(sent.get("alias_mount_accessor"))
    if len(sent) > 1 and not (len(sent) == 2 and has_alias_pair):
        raise UserError("query parameter conflict; please supply distinct set of query parameters")
    if len(sent) == 1 and (sent.get("alias_name") or sent.get("alias_mount_accessor")):
        raise UserError("both 'alias_name' and 'alias_mount_accessor' needs to be set")
    return sent


def paths(b: IdentityBackend) -> list[Path]:
    service = b.service

    async def lookup_entity(req: Request, d: FieldData) -> Response | None:
        sent = _criteria(d)
        view = service.data.view()
        if sent.get("id"):
            entity = await view.entity(sent["id"])
        elif sent.get("name"):
            entity = await view.entity_by_name(sent["name"])
        elif sent.get("alias_id"):
            found = await view.entity_by_alias_id(sent["alias_id"])
            entity = found[0] if found else None
        elif sent.get("alias_name"):
            found = await view.entity_by_alias(sent["alias_mount_accessor"], sent["alias_name"])
            entity = found[0] if found else None
        else:
            entity = None
        if entity is None:
            return None
        return Response(data=await entity_read(view, entity, service.mount_info))

    async def lookup_group(req: Request, d: FieldData) -> Response | None:
        sent = _criteria(d)
        view = service.data.view()
        if sent.get("id"):
            group = await view.group(sent["id"])
        elif sent.get("name"):
            group = await view.group_by_name(sent["name"])
        elif sent.get("alias_id"):
            group = await view.group_by_alias_id(sent["alias_id"])
        elif sent.get("alias_name"):
            group = await view.group_by_alias(sent["alias_mount_accessor"], sent["alias_name"])
        else:
            group = None
        return None if group is None else Response(data=group_read(group, service.mount_info))

    return [
        Path(
            "lookup/entity",
            {Operation.UPDATE: PathOperation(lookup_entity, "Query entities based on various properties.")},
            fields=_fields("entity"),
            synopsis="Query entities based on various properties.",
        ),
        Path(
            "lookup/group",
            {Operation.UPDATE: PathOperation(lookup_group, "Query groups based on various properties.")},
            fields=_fields("group"),
            synopsis="Query groups based on various properties.",
        ),
    ]
