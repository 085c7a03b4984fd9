"""``sys/wrapping/*``: wrap arbitrary data, and look up, unwrap or rewrap a wrapping token."""

from __future__ import annotations

from typing import TYPE_CHECKING

from strongroom.framework import Field, FieldData, FieldType, Path, PathOperation
from strongroom.logical.errors import UserError
from strongroom.logical.request import Operation, Request, Response

if TYPE_CHECKING:
    from strongroom.core.core import Core
    from strongroom.core.wrapping import Wrapper

_TOKEN = {"token": Field(FieldType.STRING, "The wrapping token.", sensitive=True)}


def paths(core: Core) -> list[Path]:
    def wrapper() -> Wrapper:
        if core.wrapping is None:
            raise UserError("response wrapping is unavailable")
        w: Wrapper = core.wrapping
        return w

    async def wrap(req: Request, d: FieldData) -> Response | None:
        if not req.wrap_ttl:
            raise UserError("endpoint requires response wrapping to be used")
        return Response(data=dict(req.data), wrap_required=True)

    def token_from(req: Request, d: FieldData) -> str:
        given = d["token"]
        if given and req.client_token and req.token_entry is not None:
            entry = req.token_entry
            if entry.internal_meta.get("wrapping"):
                raise UserError("wrapping token passed in the request body and as the client token")
        if given:
            return str(given)
        if req.token_entry is not None and req.token_entry.internal_meta.get("wrapping"):
            return req.client_token
        raise UserError("wrapping token is not valid or does not exist")

    async def unwrap(req: Request, d: FieldData) -> Response | None:
        return await wrapper().unwrap(token_from(req, d), req.token_entry)

    async def lookup(req: Request, d: FieldData) -> Response | None:
        token = d["token"] or (req.client_token if req.token_entry is not None else "")
        return Response(data=await wrapper().lookup(str(token)))

    async def rewrap(req: Request, d: FieldData) -> Response | None:
        return await wrapper().rewrap(req, token_from(req, d))

    return [
        Path(
            "wrapping/wrap",
            accept_unknown=True,
            operations={Operation.UPDATE: PathOperation(wrap, "Response-wrap arbitrary data.")},
            synopsis="Response-wraps an arbitrary JSON object.",
        ),
        Path(
            "wrapping/unwrap",
            fields=_TOKEN,
            operations={Operation.UPDATE: PathOperation(unwrap, "Unwrap a wrapped response.")},
            synopsis="Unwraps a response-wrapped token.",
        ),
        Path(
            "wrapping/lookup",
            fields=_TOKEN,
            unauthenticated=True,
            operations={
                Operation.UPDATE: PathOperation(lookup, "Look up wrapping properties."),
                Operation.READ: PathOperation(lookup, "Look up wrapping properties."),
            },
            synopsis="Looks up the properties of a response-wrapped token.",
        ),
        Path(
            "wrapping/rewrap",
            fields=_TOKEN,
            operations={Operation.UPDATE: PathOperation(rewrap, "Rewrap a wrapped response.")},
            synopsis="Rotates a response-wrapped token.",
        ),
    ]
