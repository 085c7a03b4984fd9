"""KV version 1: one unversioned JSON map per path.

A read reports ``lease_duration`` (the map's ``ttl`` key, else the mount
default) without creating a lease, as Vault's passthrough backend does.
"""

from __future__ import annotations

import json
from typing import Any

from strongroom.durations import parse_duration
from strongroom.framework import Field, FieldData, FieldType, FrameworkBackend, Path, PathOperation
from strongroom.logical.errors import UserError
from strongroom.logical.request import Operation, Request, Response, SecretInfo

_PATH = {"path": Field(FieldType.STRING, "Location of the secret.")}


class KVv1Backend(FrameworkBackend):
    backend_type = "kv"

    def build_paths(self) -> list[Path]:
        return [
            Path(
                "{path:optpath}",
                fields=_PATH,
                accept_unknown=True,
                existence_check=self._exists,
                operations={
                    Operation.READ: PathOperation(self._read, "Retrieve the secret at the location."),
                    Operation.CREATE: PathOperation(self._write, "Store a secret at the location."),
                    Operation.UPDATE: PathOperation(self._write, "Store a secret at the location."),
                    Operation.DELETE: PathOperation(self._delete, "Delete the secret at the location."),
                    Operation.LIST: PathOperation(self._list, "List secret entries at the location."),
                },
                synopsis="Pass-through secret storage to the storage backend.",
            )
        ]

    async def _exists(self, req: Request, d: FieldData) -> bool:
        key = d["path"]
        return bool(key) and await self.storage.get(key) is not None

    async def _read(self, req: Request, d: FieldData) -> Response | None:
        key = d["path"]
        if not key or key.endswith("/"):
            return None
        raw = await self.storage.get(key)
        if raw is None:
            return None
        data: dict[str, Any] = json.loads(raw)
        ttl = self.config.system.default_lease_ttl()
        for name in ("ttl", "lease"):
            if name in data:
                try:
                    ttl = parse_duration(data[name])
                except ValueError:
                    pass
                break
        return Response(data=data, secret=SecretInfo(ttl=ttl, renewable=False, leased=False))

    async def _write(self, req: Request, d: FieldData) -> Response | None:
        key = d["path"]
        if not key:
            raise UserError("missing path")
        if not req.data:
            raise UserError("missing data fields")
        for name in ("ttl", "lease"):
            if name in req.data:
                try:
                    parse_duration(req.data[name])
                except ValueError:
                    raise UserError(f'failed to parse "{name}"') from None
        await self.storage.put(key, json.dumps(req.data, separators=(",", ":")).encode())
        return None

    async def _delete(self, req: Request, d: FieldData) -> Response | None:
        key = d["path"]
        if key and not key.endswith("/"):
            await self.storage.delete(key)
        return None

    async def _list(self, req: Request, d: FieldData) -> Response | None:
        prefix = d["path"]
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        return Response(data={"keys": await self.storage.list(prefix)})
