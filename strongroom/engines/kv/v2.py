"""KV version 2: versioned secrets with metadata, check-and-set and soft delete.

Storage layout (inside the mount's view):

- ``config``                      engine-wide max_versions / cas_required / delete_version_after
- ``metadata/<path>``             KeyMetadata of one secret (one entry per secret)
- ``versions/<sha256(path)>/<n>`` the data of version n

A secret and its metadata are written in one transaction.
"""

from __future__ import annotations

import hashlib
from typing import Any

from strongroom.durations import format_duration
from strongroom.engines.kv.versions import (
    KeyMetadata,
    add_version,
    check_cas,
    merge_patch,
    now_rfc3339,
    prune,
    subkeys,
)
from strongroom.framework import Field, FieldData, FieldType, FrameworkBackend, Path, PathOperation
from strongroom.logical.errors import NotFound, UserError
from strongroom.logical.request import Operation, Request, Response
from strongroom.logical.storage import Storage, get_json, put_json

INVALID_PATH_WARNING = (
    "Invalid path for a versioned K/V secrets engine. See the API docs for the appropriate API "
    "endpoints to use. If using the Vault CLI, use 'vault kv get' for this operation."
)

_PATH = Field(FieldType.STRING, "Location of the secret.")
_VERSIONS = Field(FieldType.COMMA_INT_LIST, "The versions to act on.")
_META_FIELDS = {
    "path": Field(FieldType.STRING, "Location of the secret."),
    "max_versions": Field(FieldType.INT, "The number of versions to keep; 0 uses the engine's setting."),
    "cas_required": Field(FieldType.BOOL, "Require check-and-set on writes."),
    "delete_version_after": Field(FieldType.DURATION, "Delete versions this long after their creation."),
    "custom_metadata": Field(FieldType.MAP, "User-provided key-value pairs."),
}


def _version_key(path: str, version: int) -> str:
    return f"versions/{hashlib.sha256(path.encode()).hexdigest()}/{version}"


def _check_custom_metadata(raw: Any) -> dict[str, str]:
    if not isinstance(raw, dict):
        raise UserError("custom_metadata must be a map of strings")
    if len(raw) > 64:
        raise UserError("custom_metadata can only have up to 64 keys")
    out: dict[str, str] = {}
    for key, value in raw.items():
        if not isinstance(value, str):
            raise UserError("custom_metadata values must be strings")
        if len(key) > 128 or len(value) > 512:
            raise UserError("custom_metadata keys are limited to 128 bytes and values to 512 bytes")
        out[str(key)] = value
    return out


class KVv2Backend(FrameworkBackend):
    backend_type = "kv"

    def build_paths(self) -> list[Path]:
        op = PathOperation
        return [
            Path(
                "config",
                fields={
                    k: v
                    for k, v in _META_FIELDS.items()
                    if k in ("max_versions", "cas_required", "delete_version_after")
                },
                operations={
                    Operation.READ: op(self._read_config, "Read the backend level settings."),
                    Operation.UPDATE: op(self._write_config, "Configure backend level settings."),
                },
                synopsis="Configures settings for the KV store.",
            ),
            Path(
                "data/{path:path}",
                fields={
                    "path": _PATH,
                    "version": Field(FieldType.INT, "The version to return.", query=True),
                    "data": Field(FieldType.MAP, "The contents of the data map."),
                    "options": Field(FieldType.MAP, "Options for writing a KV entry (cas)."),
                },
                existence_check=self._data_exists,
                operations={
                    Operation.READ: op(self._read_data, "Read a version of a secret."),
                    Operation.CREATE: op(self._write_data, "Write a new version of a secret."),
                    Operation.UPDATE: op(self._write_data, "Write a new version of a secret."),
                    Operation.PATCH: op(self._patch_data, "Patch the latest version of a secret."),
                    Operation.DELETE: op(self._delete_latest, "Soft-delete the latest version."),
                },
                synopsis="Write, patch, read and delete data in the key-value store.",
            ),
            Path(
                "delete/{path:path}",
                fields={"path": _PATH, "versions": _VERSIONS},
                operations={Operation.UPDATE: op(self._delete_versions, "Soft-delete versions.")},
                synopsis="Marks one or more versions as deleted.",
            ),
            Path(
                "undelete/{path:path}",
                fields={"path": _PATH, "versions": _VERSIONS},
                operations={Operation.UPDATE: op(self._undelete_versions, "Restore soft-deleted versions.")},
                synopsis="Undeletes one or more versions.",
            ),
            Path(
                "destroy/{path:path}",
                fields={"path": _PATH, "versions": _VERSIONS},
                operations={Operation.UPDATE: op(self._destroy_versions, "Permanently destroy versions.")},
                synopsis="Permanently removes one or more versions.",
            ),
            Path(
                "metadata/",
                # no fields: the folder comes from the URL only, never from the query string,
                # or "?path=team" would list kv/metadata/team/ under a grant on kv/metadata/
                operations={Operation.LIST: op(self._list_metadata_root, "List secret names.")},
                synopsis="Lists the secrets at the root of the store.",
            ),
            Path(
                "metadata/{path:path}",
                fields=_META_FIELDS,
                existence_check=self._metadata_exists,
                operations={
                    Operation.READ: op(self._read_metadata, "Read a secret's metadata and versions."),
                    Operation.LIST: op(self._list_metadata, "List secret names under a folder."),
                    Operation.CREATE: op(self._write_metadata, "Configure a secret's metadata."),
                    Operation.UPDATE: op(self._write_metadata, "Configure a secret's metadata."),
                    Operation.PATCH: op(self._patch_metadata, "Patch a secret's metadata."),
                    Operation.DELETE: op(self._delete_metadata, "Delete all versions and the metadata."),
                },
                synopsis="Configures settings and lists the versions of a secret.",
            ),
            Path(
                "subkeys/{path:path}",
                fields={
                    "path": _PATH,
                    "version": Field(FieldType.INT, "The version to read.", query=True),
                    "depth": Field(FieldType.INT, "How deep to descend; 0 is unlimited.", query=True),
                },
                operations={Operation.READ: op(self._read_subkeys, "Read a secret's structure.")},
                synopsis="Reads the structure of a secret without its values.",
            ),
            Path(
                "{path:optpath}",
                fields={"path": _PATH},
                accept_unknown=True,
                operations={
                    o: op(self._invalid_path, "Invalid path for a versioned K/V secrets engine.")
                    for o in (
                        Operation.READ,
                        Operation.UPDATE,
                        Operation.DELETE,
                        Operation.LIST,
                        Operation.PATCH,
                    )
                },
                synopsis="Invalid paths answer with a warning.",
            ),
        ]

    # -- helpers ------------------------------------------------------------------------------

    async def _config(self) -> dict[str, Any]:
        raw = await get_json(self.storage, "config")
        return raw or {"max_versions": 0, "cas_required": False, "delete_version_after": 0}

    async def _metadata(self, storage: Storage, path: str) -> KeyMetadata | None:
        raw = await get_json(storage, f"metadata/{path}")
        return None if raw is None else KeyMetadata.from_json(raw)

    @staticmethod
    def _path(d: FieldData) -> str:
        path = str(d["path"]).strip("/")
        if not path:
            raise UserError("missing path")
        return path

    async def _invalid_path(self, req: Request, d: FieldData) -> Response | None:
        return Response(warnings=[INVALID_PATH_WARNING], status=404)

    async def initialize(self) -> None:
        """Upgrade a mount that was KV v1: every plain key becomes version 1 of a secret."""
        if await self.storage.get("kv-layout") == b"2":
            return
        plain = await _plain_keys(self.storage, "")
        for key in plain:
            raw = await self.storage.get(key)
            if raw is None:
                continue
            async with self.storage.transaction() as txn:
                meta = KeyMetadata.new()
                add_version(meta, 0, 0)
                await txn.put(_version_key(key, 1), raw)
                await put_json(txn, f"metadata/{key}", meta.to_json())
                await txn.delete(key)
        await self.storage.put("kv-layout", b"2")

    # -- config -------------------------------------------------------------------------------

    async def _read_config(self, req: Request, d: FieldData) -> Response | None:
        config = await self._config()
        return Response(
            data={
                "max_versions": config["max_versions"],
                "cas_required": config["cas_required"],
                "delete_version_after": format_duration(int(config["delete_version_after"])),
            }
        )

    async def _write_config(self, req: Request, d: FieldData) -> Response | None:
        config = await self._config()
        for name in ("max_versions", "cas_required", "delete_version_after"):
            value, sent = d.get_ok(name)
            if sent:
                config[name] = value
        if config["max_versions"] < 0:
            raise UserError("max_versions must be zero or greater")
        await put_json(self.storage, "config", config)
        return None

    # -- data ---------------------------------------------------------------------------------

    async def _data_exists(self, req: Request, d: FieldData) -> bool:
        return await self.storage.get(f"metadata/{self._path(d)}") is not None

    async def _read_data(self, req: Request, d: FieldData) -> Response | None:
        path = self._path(d)
        meta = await self._metadata(self.storage, path)
        if meta is None or meta.current_version == 0:
            return None
        version = d["version"] or meta.current_version
        vmeta = meta.versions.get(str(version))
        if vmeta is None:
            return None
        view = meta.version_view(version)
        if vmeta.destroyed or vmeta.deleted():
            return Response(data={"data": None, "metadata": view}, status=404)
        raw = await get_json(self.storage, _version_key(path, version))
        if raw is None:
            return Response(data={"data": None, "metadata": view}, status=404)
        return Response(data={"data": raw, "metadata": view})

    async def _write_data(self, req: Request, d: FieldData) -> Response | None:
        path = self._path(d)
        data, sent = d.get_ok("data")
        if not sent or not isinstance(req.data.get("data"), dict):
            raise UserError("no data provided")
        options = d["options"]
        cas_raw = options.get("cas") if isinstance(options, dict) else None
        cas = None
        if cas_raw is not None:
            try:
                cas = int(cas_raw)
            except (TypeError, ValueError):
                raise UserError("check-and-set parameter must be an integer") from None
        return await self._store_version(path, data, cas)

    async def _store_version(self, path: str, data: dict[str, Any], cas: int | None) -> Response:
        config = await self._config()
        async with self.storage.transaction() as txn:
            meta = await self._metadata(txn, path)
            cas_required = bool(config["cas_required"]) or bool(meta and meta.cas_required)
            check_cas(meta, cas, cas_required)
            if meta is None:
                meta = KeyMetadata.new()
            delete_after = meta.delete_version_after or int(config["delete_version_after"])
            max_versions = meta.max_versions or int(config["max_versions"])
            version, pruned = add_version(meta, delete_after, max_versions)
            await put_json(txn, _version_key(path, version), data)
            for old in pruned:
                await txn.delete(_version_key(path, old))
            await put_json(txn, f"metadata/{path}", meta.to_json())
        return Response(data=meta.version_view(version))

    async def _patch_data(self, req: Request, d: FieldData) -> Response | None:
        path = self._path(d)
        patch = req.data.get("data")
        if not isinstance(patch, dict):
            raise UserError("no data provided")
        meta = await self._metadata(self.storage, path)
        if meta is None or meta.current_version == 0:
            raise NotFound()
        vmeta = meta.versions.get(str(meta.current_version))
        if vmeta is None or vmeta.destroyed or vmeta.deleted():
            raise NotFound()
        current = await get_json(self.storage, _version_key(path, meta.current_version)) or {}
        options = d["options"]
        cas = options.get("cas") if isinstance(options, dict) else None
        return await self._store_version(path, merge_patch(current, patch), None if cas is None else int(cas))

    async def _delete_latest(self, req: Request, d: FieldData) -> Response | None:
        path = self._path(d)
        async with self.storage.transaction() as txn:
            meta = await self._metadata(txn, path)
            if meta is None or meta.current_version == 0:
                return None
            vmeta = meta.versions.get(str(meta.current_version))
            if vmeta is not None and not vmeta.deletion_time and not vmeta.destroyed:
                vmeta.deletion_time = now_rfc3339()
                await put_json(txn, f"metadata/{path}", meta.to_json())
        return None

    async def _set_versions(self, d: FieldData, action: str) -> Response | None:
        path = self._path(d)
        versions = d["versions"]
        if not versions:
            raise UserError("no version number provided")
        async with self.storage.transaction() as txn:
            meta = await self._metadata(txn, path)
            if meta is None:
                return None
            for number in versions:
                vmeta = meta.versions.get(str(number))
                if vmeta is None or vmeta.destroyed:
                    continue
                if action == "delete" and not vmeta.deletion_time:
                    vmeta.deletion_time = now_rfc3339()
                elif action == "undelete":
                    vmeta.deletion_time = ""
                elif action == "destroy":
                    vmeta.destroyed = True
                    await txn.delete(_version_key(path, number))
            await put_json(txn, f"metadata/{path}", meta.to_json())
        return None

    async def _delete_versions(self, req: Request, d: FieldData) -> Response | None:
        return await self._set_versions(d, "delete")

    async def _undelete_versions(self, req: Request, d: FieldData) -> Response | None:
        return await self._set_versions(d, "undelete")

    async def _destroy_versions(self, req: Request, d: FieldData) -> Response | None:
        return await self._set_versions(d, "destroy")

    # -- metadata -----------------------------------------------------------------------------

    async def _metadata_exists(self, req: Request, d: FieldData) -> bool:
        return await self.storage.get(f"metadata/{self._path(d)}") is not None

    async def _read_metadata(self, req: Request, d: FieldData) -> Response | None:
        meta = await self._metadata(self.storage, self._path(d))
        if meta is None:
            return None
        return Response(data=meta.api_view(format_duration(meta.delete_version_after)))

    async def _list_metadata_root(self, req: Request, d: FieldData) -> Response | None:
        return Response(data={"keys": await self.storage.list("metadata/")})

    async def _list_metadata(self, req: Request, d: FieldData) -> Response | None:
        prefix = str(d["path"]) if d.sent("path") else ""
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        return Response(data={"keys": await self.storage.list("metadata/" + prefix)})

    def _apply_metadata(self, meta: KeyMetadata, d: FieldData, raw: dict[str, Any]) -> None:
        if "max_versions" in raw:
            value = d["max_versions"]
            if value < 0:
                raise UserError("max_versions must be zero or greater")
            meta.max_versions = value
        if "cas_required" in raw:
            meta.cas_required = d["cas_required"]
        if "delete_version_after" in raw:
            meta.delete_version_after = d["delete_version_after"]
        if "custom_metadata" in raw:
            value = raw["custom_metadata"]
            meta.custom_metadata = _check_custom_metadata(value) if value is not None else None
        meta.updated_time = now_rfc3339()

    async def _write_metadata(self, req: Request, d: FieldData) -> Response | None:
        path = self._path(d)
        async with self.storage.transaction() as txn:
            meta = await self._metadata(txn, path) or KeyMetadata.new()
            if "custom_metadata" in req.data and req.data["custom_metadata"] is None:
                req_data = dict(req.data)
                req_data["custom_metadata"] = {}
            else:
                req_data = req.data
            self._apply_metadata(meta, d, req_data)
            pruned = prune(meta, meta.max_versions or int((await self._config())["max_versions"]))
            for old in pruned:
                await txn.delete(_version_key(path, old))
            await put_json(txn, f"metadata/{path}", meta.to_json())
        return None

    async def _patch_metadata(self, req: Request, d: FieldData) -> Response | None:
        path = self._path(d)
        async with self.storage.transaction() as txn:
            meta = await self._metadata(txn, path)
            if meta is None:
                raise NotFound()
            raw = dict(req.data)
            if "custom_metadata" in raw:
                patched = merge_patch(meta.custom_metadata or {}, raw["custom_metadata"] or {})
                raw["custom_metadata"] = patched
            self._apply_metadata(meta, d, raw)
            await put_json(txn, f"metadata/{path}", meta.to_json())
        return None

    async def _delete_metadata(self, req: Request, d: FieldData) -> Response | None:
        path = self._path(d)
        async with self.storage.transaction() as txn:
            meta = await self._metadata(txn, path)
            if meta is None:
                return None
            for number in meta.versions:
                await txn.delete(_version_key(path, int(number)))
            await txn.delete(f"metadata/{path}")
        return None

    async def _read_subkeys(self, req: Request, d: FieldData) -> Response | None:
        path = self._path(d)
        meta = await self._metadata(self.storage, path)
        if meta is None or meta.current_version == 0:
            return None
        version = d["version"] or meta.current_version
        vmeta = meta.versions.get(str(version))
        if vmeta is None:
            return None
        view = meta.version_view(version)
        if vmeta.destroyed or vmeta.deleted():
            return Response(data={"subkeys": None, "metadata": view}, status=404)
        data = await get_json(self.storage, _version_key(path, version))
        depth = d["depth"]
        if depth < 0:
            raise UserError("depth must be zero or greater")
        return Response(data={"subkeys": subkeys(data or {}, depth), "metadata": view})


_V2_ROOTS = frozenset({"config", "kv-layout", "metadata/", "versions/"})


async def _plain_keys(storage: Storage, prefix: str) -> list[str]:
    """Keys written by KV v1 (anything outside v2's own layout)."""
    out: list[str] = []
    for name in await storage.list(prefix):
        if not prefix and name in _V2_ROOTS:
            continue
        if name.endswith("/"):
            out.extend(await _plain_keys(storage, prefix + name))
        else:
            out.append(prefix + name)
    return out
