"""cubbyhole: a private KV v1-style store per service token.

Each token's entries live under a prefix derived from a salted hash of the
token, so no other token — root included — can reach them, and revoking the
token deletes them (core calls :func:`destroy`). Batch tokens have none.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from strongroom.framework import Field, FieldData, FieldType, FrameworkBackend, Path, PathOperation
from strongroom.logical.backend import BackendConfig
from strongroom.logical.errors import UserError
from strongroom.logical.request import Operation, Request, Response
from strongroom.logical.storage import PrefixView, Storage, delete_prefix

if TYPE_CHECKING:
    from strongroom.core.core import Core


def token_prefix(core: Core, token: str) -> str:
    return core.tokens.salt_id("cubbyhole:" + token) + "/"


async def destroy(core: Core, storage: Storage, token: str) -> None:
    await delete_prefix(storage, token_prefix(core, token))


class CubbyholeBackend(FrameworkBackend):
    backend_type = "cubbyhole"

    def __init__(self, config: BackendConfig, core: Core) -> None:
        self.core = core
        super().__init__(config)

    def build_paths(self) -> list[Path]:
        path_field = {"path": Field(FieldType.STRING, "Location of the secret.")}
        return [
            Path(
                "{path:optpath}",
                fields=path_field,
                accept_unknown=True,
                existence_check=self._exists,
                operations={
                    Operation.READ: PathOperation(self._read, "Read a secret."),
                    Operation.CREATE: PathOperation(self._write, "Store a secret."),
                    Operation.UPDATE: PathOperation(self._write, "Store a secret."),
                    Operation.DELETE: PathOperation(self._delete, "Delete a secret."),
                    Operation.LIST: PathOperation(self._list, "List secret names."),
                },
                synopsis="Pass-through secret storage to a token-specific cubbyhole in the storage backend.",
            )
        ]

    def _view(self, req: Request) -> Storage:
        token = req.token_entry
        if not req.client_token or token is None:
            raise UserError("client token empty")
        if getattr(token, "type", "service") == "batch":
            raise UserError("cubbyhole is not available to batch tokens")
        return PrefixView(self.storage, token_prefix(self.core, req.client_token))

    async def _exists(self, req: Request, d: FieldData) -> bool:
        key = d["path"].strip("/")
        return bool(key) and await self._view(req).get(key) is not None

    async def _read(self, req: Request, d: FieldData) -> Response | None:
        key = d["path"].strip("/")
        if not key:
            raise UserError("missing path")
        raw = await self._view(req).get(key)
        if raw is None:
            return None
        return Response(data=json.loads(raw))

    async def _write(self, req: Request, d: FieldData) -> Response | None:
        key = d["path"].strip("/")
        if not key:
            raise UserError("missing path")
        data: dict[str, Any] = {k: v for k, v in req.data.items()}
        if not data:
            raise UserError("missing data fields")
        await self._view(req).put(key, json.dumps(data).encode())
        return None

    async def _delete(self, req: Request, d: FieldData) -> Response | None:
        key = d["path"].strip("/")
        if key:
            await self._view(req).delete(key)
        return None

    async def _list(self, req: Request, d: FieldData) -> Response | None:
        prefix = d["path"]
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        keys = await self._view(req).list(prefix)
        return Response(data={"keys": keys})


async def factory(config: BackendConfig, core: Core) -> CubbyholeBackend:
    return CubbyholeBackend(config, core)
