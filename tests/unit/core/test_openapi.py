"""sys/internal/specs/openapi and sys/tools/{hash,random}."""

from __future__ import annotations

import base64
import hashlib

from openapi_spec_validator import validate

from strongroom.framework import Field, FieldData, FieldType, FrameworkBackend, Path, PathOperation
from strongroom.logical.backend import Backend, BackendConfig
from strongroom.logical.request import Operation, Request, Response
from strongroom.testing import running_core


class Widgets(FrameworkBackend):
    backend_type = "widgets"

    def build_paths(self) -> list[Path]:
        async def read(req: Request, d: FieldData) -> Response | None:
            return Response(data={"name": d["name"]})

        return [
            Path(
                "widgets/{name}",
                fields={"name": Field(FieldType.NAME, "Widget name."), "size": Field(FieldType.INT, "Size.")},
                operations={Operation.READ: PathOperation(read), Operation.UPDATE: PathOperation(read)},
            )
        ]


async def widgets_factory(config: BackendConfig) -> Backend:
    return Widgets(config)


async def test_openapi_document_validates_and_covers_mounts() -> None:
    async with running_core() as h:
        h.core.factories["widgets"] = widgets_factory
        await h.call("POST", "sys/mounts/w", json={"type": "widgets"})
        r = await h.call("GET", "sys/internal/specs/openapi")
        assert r.status_code == 200
        assert r.headers["content-type"] == "application/json"
        doc = r.json()
        validate(doc)
        assert doc["openapi"].startswith("3.")
        paths = doc["paths"]
        for expected in (
            "/sys/mounts",
            "/sys/mounts/{path}",
            "/sys/mounts/{path}/tune",
            "/sys/policies/acl/{name}",
            "/sys/capabilities-self",
            "/w/widgets/{name}",
        ):
            assert expected in paths, expected
        assert "post" in paths["/sys/mounts/{path}"] and "delete" in paths["/sys/mounts/{path}"]
        ids = [op["operationId"] for item in paths.values() for op in item.values() if isinstance(op, dict)]
        assert len(ids) == len(set(ids))


async def test_openapi_without_token_only_lists_unauth_mounts() -> None:
    async with running_core() as h:
        h.core.factories["widgets"] = widgets_factory
        await h.call(
            "POST", "sys/mounts/pub", json={"type": "widgets", "config": {"listing_visibility": "unauth"}}
        )
        await h.call("POST", "sys/mounts/priv", json={"type": "widgets"})
        r = await h.call("GET", "sys/internal/specs/openapi", token="")
        assert r.status_code == 200
        doc = r.json()
        validate(doc)
        assert "/pub/widgets/{name}" in doc["paths"]
        assert not any(p.startswith(("/priv/", "/sys/")) for p in doc["paths"])


async def test_tools_hash() -> None:
    async with running_core() as h:
        data = base64.b64encode(b"hello").decode()
        r = await h.call("POST", "sys/tools/hash", json={"input": data})
        assert r.json()["data"]["sum"] == hashlib.sha256(b"hello").hexdigest()
        r = await h.call("POST", "sys/tools/hash/sha2-512", json={"input": data, "format": "base64"})
        assert r.json()["data"]["sum"] == base64.b64encode(hashlib.sha512(b"hello").digest()).decode()
        r = await h.call("POST", "sys/tools/hash", json={"input": data, "algorithm": "sha3-256"})
        assert r.json()["data"]["sum"] == hashlib.sha3_256(b"hello").hexdigest()
        r = await h.call("POST", "sys/tools/hash", json={"input": "not base64!"})
        assert r.status_code == 400
        r = await h.call("POST", "sys/tools/hash/md5", json={"input": data})
        assert r.status_code == 400 and r.json()["errors"] == ["unsupported algorithm md5"]
        r = await h.call("POST", "sys/tools/hash", json={"input": data, "format": "raw"})
        assert r.json()["errors"] == ['unsupported encoding format raw; must be "hex" or "base64"']


async def test_tools_random() -> None:
    async with running_core() as h:
        r = await h.call("POST", "sys/tools/random", json={})
        assert len(base64.b64decode(r.json()["data"]["random_bytes"])) == 32
        r = await h.call("POST", "sys/tools/random/16", json={"format": "hex"})
        assert len(bytes.fromhex(r.json()["data"]["random_bytes"])) == 16
        r = await h.call("POST", "sys/tools/random/platform", json={"bytes": 8})
        assert len(base64.b64decode(r.json()["data"]["random_bytes"])) == 8
        r = await h.call("POST", "sys/tools/random/all/4", json={"format": "hex"})
        assert len(r.json()["data"]["random_bytes"]) == 8
        r = await h.call("POST", "sys/random/12")
        assert len(base64.b64decode(r.json()["data"]["random_bytes"])) == 12
        r = await h.call("POST", "sys/tools/random", json={"bytes": 0})
        assert r.status_code == 400 and r.json()["errors"] == ['"bytes" cannot be less than 1']
        r = await h.call("POST", "sys/tools/random", json={"bytes": 10**6})
        assert r.status_code == 400
        r = await h.call("POST", "sys/tools/random/moon/4")
        assert r.status_code == 400
