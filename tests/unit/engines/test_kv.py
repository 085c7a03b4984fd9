"""KV v1 and v2 through the HTTP layer."""

from __future__ import annotations

from strongroom.core.mounts import MountEntry
from strongroom.testing import running_core


async def _mount(h, path: str, version: str) -> None:
    await h.core.enable_mount(MountEntry(path, "kv", options={"version": version}))


async def test_kv_v1_roundtrip_list_delete() -> None:
    async with running_core() as h:
        await _mount(h, "kv1/", "1")
        assert (await h.call("POST", "kv1/a/b", json={"x": "1"})).status_code == 204
        r = await h.call("GET", "kv1/a/b")
        body = r.json()
        assert body["data"] == {"x": "1"} and body["lease_duration"] == 768 * 3600 and body["lease_id"] == ""
        await h.call("POST", "kv1/a/c", json={"y": "2", "ttl": "1h"})
        assert (await h.call("GET", "kv1/a/c")).json()["lease_duration"] == 3600
        assert (await h.call("LIST", "kv1/a")).json()["data"]["keys"] == ["b", "c"]
        assert (await h.call("GET", "kv1/?list=true")).json()["data"]["keys"] == ["a/"]
        assert (await h.call("DELETE", "kv1/a/b")).status_code == 204
        assert (await h.call("GET", "kv1/a/b")).status_code == 404
        assert (await h.call("LIST", "kv1/nothing")).status_code == 404


async def test_kv_v2_versions_cas_and_soft_delete() -> None:
    async with running_core() as h:
        await _mount(h, "kv/", "2")
        r = await h.call("POST", "kv/data/app", json={"data": {"pw": "one"}})
        assert r.status_code == 200 and r.json()["data"]["version"] == 1
        r = await h.call("POST", "kv/data/app", json={"data": {"pw": "two"}, "options": {"cas": 0}})
        assert r.status_code == 400
        assert r.json()["errors"] == ["check-and-set parameter did not match the current version"]
        r = await h.call("POST", "kv/data/app", json={"data": {"pw": "two"}, "options": {"cas": 1}})
        assert r.json()["data"]["version"] == 2
        r = await h.call("GET", "kv/data/app?version=1")
        assert r.json()["data"]["data"] == {"pw": "one"}
        assert (await h.call("DELETE", "kv/data/app")).status_code == 204
        r = await h.call("GET", "kv/data/app")
        assert r.status_code == 404 and r.json()["data"]["data"] is None
        assert r.json()["data"]["metadata"]["deletion_time"] != ""
        await h.call("POST", "kv/undelete/app", json={"versions": [2]})
        assert (await h.call("GET", "kv/data/app")).json()["data"]["data"] == {"pw": "two"}
        await h.call("POST", "kv/destroy/app", json={"versions": "1"})
        r = await h.call("GET", "kv/data/app?version=1")
        assert r.status_code == 404 and r.json()["data"]["metadata"]["destroyed"] is True
        meta = (await h.call("GET", "kv/metadata/app")).json()["data"]
        assert meta["current_version"] == 2 and set(meta["versions"]) == {"1", "2"}
        assert (await h.call("LIST", "kv/metadata/")).json()["data"]["keys"] == ["app"]
        assert (await h.call("DELETE", "kv/metadata/app")).status_code == 204
        assert (await h.call("GET", "kv/data/app")).status_code == 404


async def test_kv_v2_max_versions_patch_subkeys_and_config() -> None:
    async with running_core() as h:
        await _mount(h, "kv/", "2")
        await h.call("POST", "kv/metadata/s", json={"max_versions": 2, "custom_metadata": {"team": "a"}})
        for i in range(4):
            await h.call("POST", "kv/data/s", json={"data": {"n": i, "nested": {"k": "v"}}})
        meta = (await h.call("GET", "kv/metadata/s")).json()["data"]
        assert sorted(meta["versions"]) == ["3", "4"] and meta["oldest_version"] == 3
        assert meta["custom_metadata"] == {"team": "a"}
        r = await h.call(
            "PATCH",
            "kv/data/s",
            json={"data": {"n": None, "extra": "x"}},
            headers={"Content-Type": "application/merge-patch+json"},
        )
        assert r.status_code == 200 and r.json()["data"]["version"] == 5
        assert (await h.call("GET", "kv/data/s")).json()["data"]["data"] == {
            "nested": {"k": "v"},
            "extra": "x",
        }
        r = await h.call("PATCH", "kv/data/s", json={"data": {}})
        assert r.status_code == 415
        r = await h.call("GET", "kv/subkeys/s")
        assert r.json()["data"]["subkeys"] == {"nested": {"k": None}, "extra": None}
        r = await h.call("GET", "kv/subkeys/s?depth=1")
        assert r.json()["data"]["subkeys"] == {"nested": None, "extra": None}
        await h.call("POST", "kv/config", json={"cas_required": True, "max_versions": 5})
        cfg = (await h.call("GET", "kv/config")).json()["data"]
        assert (
            cfg["cas_required"] is True and cfg["max_versions"] == 5 and cfg["delete_version_after"] == "0s"
        )
        r = await h.call("POST", "kv/data/s", json={"data": {"a": 1}})
        assert r.json()["errors"] == ["check-and-set parameter required for this call"]
        r = await h.call("GET", "kv/s")
        assert r.status_code == 404 and "Invalid path for a versioned K/V" in r.json()["warnings"][0]


async def test_kv_v2_bad_input() -> None:
    async with running_core() as h:
        await _mount(h, "kv/", "2")
        assert (await h.call("POST", "kv/data/x", json={"nodata": 1})).json()["errors"] == [
            "no data provided"
        ]
        r = await h.call("POST", "kv/metadata/x", json={"max_versions": "lots"})
        assert r.status_code == 400
        r = await h.client.post(
            "/v1/kv/data/x", content=b"{not json", headers={"X-Vault-Token": h.root_token}
        )
        assert r.status_code == 400 and "errors" in r.json()


async def test_kv_v1_upgrades_to_v2() -> None:
    async with running_core() as h:
        await _mount(h, "up/", "1")
        await h.call("POST", "up/a/b", json={"k": "v"})
        entry = h.core.mounts.entries["up/"]
        entry.options = {"version": "2"}
        route = await h.core._mount_backend(entry)
        assert route.backend.backend_type == "kv"
        assert (await h.call("GET", "up/data/a/b")).json()["data"]["data"] == {"k": "v"}
