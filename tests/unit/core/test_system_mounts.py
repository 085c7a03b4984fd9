"""sys/mounts, sys/auth, sys/remount and sys/internal/ui/mounts through the HTTP layer."""

from __future__ import annotations

import json
from typing import Any

from strongroom.core.tokens import TokenEntry
from strongroom.framework import Field, FieldData, FieldType, FrameworkBackend, Path, PathOperation
from strongroom.logical.backend import Backend, BackendConfig
from strongroom.logical.request import Operation, Request, Response
from strongroom.testing import Harness, running_core


class Dummy(FrameworkBackend):
    """A tiny engine: stores the request body at any key."""

    backend_type = "dummy"

    def build_paths(self) -> list[Path]:
        async def read(req: Request, d: FieldData) -> Response | None:
            raw = await self.storage.get(d["key"])
            return None if raw is None else Response(data=json.loads(raw))

        async def write(req: Request, d: FieldData) -> Response | None:
            await self.storage.put(d["key"], json.dumps(req.data).encode())
            return None

        return [
            Path(
                "{key:path}",
                fields={"key": Field(FieldType.STRING, "key")},
                accept_unknown=True,
                operations={Operation.READ: PathOperation(read), Operation.UPDATE: PathOperation(write)},
            )
        ]


created: list[dict[str, Any]] = []


async def dummy_factory(config: BackendConfig) -> Backend:
    created.append(dict(config.config.get("options") or {}))
    return Dummy(config)


def register(h: Harness) -> None:
    h.core.factories["dummy"] = dummy_factory
    h.core.auth_factories["dummyauth"] = dummy_factory


async def token_with(h: Harness, policy: str | None = None, name: str = "p1") -> str:
    policies = ["default"]
    if policy is not None:
        r = await h.call("PUT", f"sys/policies/acl/{name}", json={"policy": policy})
        assert r.status_code == 204, r.text
        policies.append(name)
    entry = await h.core.tokens.create(TokenEntry(id="", policies=policies))
    return entry.id


async def test_enable_read_list_disable() -> None:
    async with running_core() as h:
        register(h)
        r = await h.call(
            "POST",
            "sys/mounts/stuff",
            json={"type": "dummy", "description": "my stuff", "config": {"force_no_cache": True}},
        )
        assert r.status_code == 204, r.text
        r = await h.call("GET", "sys/mounts")
        body = r.json()
        assert body["data"]["stuff/"]["type"] == "dummy"
        assert body["stuff/"]["description"] == "my stuff"  # copied to the top level
        assert body["stuff/"]["config"]["force_no_cache"] is True
        assert body["stuff/"]["accessor"].startswith("dummy_")
        assert {"cubbyhole/", "sys/"} <= set(body["data"])

        r = await h.call("GET", "sys/mounts/stuff")
        assert r.status_code == 200 and r.json()["data"]["type"] == "dummy"
        assert (await h.call("POST", "stuff/k", json={"v": 1})).status_code == 204
        assert (await h.call("GET", "stuff/k")).json()["data"] == {"v": 1}

        assert (await h.call("DELETE", "sys/mounts/stuff")).status_code == 204
        assert "stuff/" not in (await h.call("GET", "sys/mounts")).json()["data"]
        assert (await h.call("GET", "stuff/k")).status_code == 404
        assert (await h.call("DELETE", "sys/mounts/stuff")).status_code == 204  # missing is fine
        r = await h.call("GET", "sys/mounts/stuff")
        assert r.status_code == 400 and "No secret engine mount at stuff/" in r.json()["errors"][0]


async def test_enable_accepts_hvac_nulls_and_rejects_bad_input() -> None:
    async with running_core() as h:
        register(h)
        hvac_body = {
            "type": "dummy",
            "description": None,
            "config": None,
            "options": None,
            "plugin_name": None,
            "local": False,
            "seal_wrap": False,
        }
        r = await h.call("POST", "sys/mounts/n", json=hvac_body)
        assert r.status_code == 204, r.text
        r = await h.call("POST", "sys/mounts/x", json={"description": "no type"})
        assert r.status_code == 400 and r.json()["errors"] == ["backend type must be specified as a string"]
        r = await h.call("POST", "sys/mounts/x", json={"type": "nope"})
        assert r.status_code == 400
        r = await h.call("POST", "sys/mounts/x", json={"type": "dummy", "options": {"version": "2"}})
        assert r.json()["errors"] == ['secrets engine "dummy" does not allow setting a version']
        r = await h.call(
            "POST",
            "sys/mounts/x",
            json={"type": "dummy", "config": {"default_lease_ttl": "2h", "max_lease_ttl": "1h"}},
        )
        assert r.json()["errors"] == ["given default lease TTL greater than given max lease TTL"]
        r = await h.call(
            "POST", "sys/mounts/x", json={"type": "dummy", "config": {"default_lease_ttl": "9999h"}}
        )
        assert r.status_code == 400 and "system max lease TTL of 2764800" in r.json()["errors"][0]
        r = await h.call(
            "POST", "sys/mounts/x", json={"type": "dummy", "config": {"listing_visibility": "x"}}
        )
        assert r.json()["errors"] == ["invalid listing_visibility x"]


async def test_conflicting_paths() -> None:
    async with running_core() as h:
        register(h)
        assert (await h.call("POST", "sys/mounts/a", json={"type": "dummy"})).status_code == 204
        for path in ("a", "a/b"):
            r = await h.call("POST", f"sys/mounts/{path}", json={"type": "dummy"})
            assert r.status_code == 400
            assert r.json()["errors"] == ["path is already in use at a/"]
        for path in ("sys/x", "auth/x", "cubbyhole"):
            r = await h.call("POST", f"sys/mounts/{path}", json={"type": "dummy"})
            assert r.status_code == 403 and r.json()["errors"][0].startswith("cannot mount")


async def test_kv_aliases_and_generic() -> None:
    async with running_core() as h:
        h.core.factories["kv"] = dummy_factory  # stand-in: only the mount table matters here
        h.core.factories.pop("generic", None)
        await h.call("POST", "sys/mounts/v2", json={"type": "kv-v2"})
        await h.call("POST", "sys/mounts/v1", json={"type": "kv-v1"})
        await h.call("POST", "sys/mounts/kv", json={"type": "kv", "options": {"version": 2}})
        await h.call("POST", "sys/mounts/old", json={"type": "generic"})
        data = (await h.call("GET", "sys/mounts")).json()["data"]
        assert data["v2/"]["type"] == "kv" and data["v2/"]["options"] == {"version": "2"}
        assert data["v1/"]["options"] == {"version": "1"}
        assert data["kv/"]["options"] == {"version": "2"}
        assert data["old/"]["type"] == "kv"


async def test_tune_ttls_and_fields() -> None:
    async with running_core() as h:
        register(h)
        await h.call("POST", "sys/mounts/t", json={"type": "dummy"})
        tune = (await h.call("GET", "sys/mounts/t/tune")).json()["data"]
        assert tune["default_lease_ttl"] == 2764800 and tune["max_lease_ttl"] == 2764800
        assert tune["force_no_cache"] is False and tune["description"] == ""

        r = await h.call(
            "POST", "sys/mounts/t/tune", json={"default_lease_ttl": "3600s", "max_lease_ttl": "8600s"}
        )
        assert r.status_code == 204, r.text
        tune = (await h.call("GET", "sys/mounts/t/tune")).json()["data"]
        assert (tune["default_lease_ttl"], tune["max_lease_ttl"]) == (3600, 8600)
        config = (await h.call("GET", "sys/mounts/t")).json()["data"]["config"]
        assert (config["default_lease_ttl"], config["max_lease_ttl"]) == (3600, 8600)

        r = await h.call("POST", "sys/mounts/t/tune", json={"max_lease_ttl": "60s"})
        assert r.status_code == 400
        assert r.json()["errors"] == [
            "backend max lease TTL of 60 would be less than backend default lease TTL of 3600"
        ]
        r = await h.call("POST", "sys/mounts/t/tune", json={"default_lease_ttl": "nonsense"})
        assert r.status_code == 400
        r = await h.call("POST", "sys/mounts/t/tune", json={"max_lease_ttl": 12345678})
        assert r.status_code == 204
        assert (await h.call("GET", "sys/mounts/t/tune")).json()["data"]["max_lease_ttl"] == 12345678
        r = await h.call(
            "POST", "sys/mounts/t/tune", json={"default_lease_ttl": "system", "max_lease_ttl": "system"}
        )
        tune = (await h.call("GET", "sys/mounts/t/tune")).json()["data"]
        assert (tune["default_lease_ttl"], tune["max_lease_ttl"]) == (2764800, 2764800)

        r = await h.call(
            "POST",
            "sys/mounts/t/tune",
            json={
                "description": "tuned",
                "listing_visibility": "unauth",
                "audit_non_hmac_request_keys": "a,b",
                "passthrough_request_headers": ["X-A"],
            },
        )
        assert r.status_code == 204, r.text
        tune = (await h.call("GET", "sys/mounts/t/tune")).json()["data"]
        assert tune["description"] == "tuned" and tune["listing_visibility"] == "unauth"
        assert tune["audit_non_hmac_request_keys"] == ["a", "b"]
        assert tune["passthrough_request_headers"] == ["X-A"]
        r = await h.call("POST", "sys/mounts/t/tune", json={"listing_visibility": "everyone"})
        assert r.json()["errors"] == ["invalid listing_visibility everyone"]
        r = await h.call("POST", "sys/mounts/t/tune", json={"token_type": "batch"})
        assert r.json()["errors"] == ["'token_type' can only be modified on auth mounts"]

        r = await h.call("POST", "sys/mounts/sys/tune", json={"description": "x"})
        assert r.status_code == 400 and r.json()["errors"] == ['cannot tune "sys/"']
        r = await h.call("POST", "sys/mounts/missing/tune", json={"description": "x"})
        assert r.json()["errors"] == ['tune of path "missing/" failed: no mount entry found']
        r = await h.call("GET", "sys/mounts/missing/tune")
        assert r.status_code == 400


async def test_tune_options_upgrade_and_no_downgrade() -> None:
    async with running_core() as h:
        h.core.factories["kv"] = dummy_factory
        await h.call("POST", "sys/mounts/kv", json={"type": "kv", "options": {"version": "1"}})
        await h.call("POST", "kv/k", json={"v": 1})
        created.clear()
        r = await h.call("POST", "sys/mounts/kv/tune", json={"options": {"version": "2", "extra": "x"}})
        assert (
            r.status_code == 200 and "Upgrading mount from version 1 to version 2" in r.json()["warnings"][0]
        )
        assert created == [{"version": "2", "extra": "x"}]  # the backend was rebuilt with the new options
        assert (await h.call("GET", "kv/k")).json()["data"] == {"v": 1}
        r = await h.call("POST", "sys/mounts/kv/tune", json={"options": {"version": "1"}})
        assert r.status_code == 400 and r.json()["errors"] == ["cannot downgrade mount from version 2"]
        r = await h.call("POST", "sys/mounts/kv/tune", json={"options": {"version": "7"}})
        assert r.json()["errors"] == ["invalid version provided: 7"]
        r = await h.call("POST", "sys/mounts/kv/tune", json={"options": {"extra": "", "other": "y"}})
        assert r.status_code == 204
        tune = (await h.call("GET", "sys/mounts/kv/tune")).json()["data"]
        assert tune["options"] == {"version": "2", "other": "y"}


async def test_auth_enable_tune_disable() -> None:
    async with running_core() as h:
        register(h)
        r = await h.call("POST", "sys/auth/da", json={"type": "dummyauth", "description": "d"})
        assert r.status_code == 204, r.text
        body = (await h.call("GET", "sys/auth")).json()
        assert body["da/"]["type"] == "dummyauth"
        assert body["data"]["da/"]["config"]["token_type"] == "default-service"
        assert body["data"]["da/"]["accessor"].startswith("auth_dummyauth_")
        assert body["data"]["token/"]["config"]["token_type"] == "default-service"
        r = await h.call("GET", "sys/auth/da")
        assert r.status_code == 200 and r.json()["data"]["description"] == "d"

        r = await h.call("POST", "sys/auth/da/tune", json={"description": "tuned", "max_lease_ttl": 12345678})
        assert r.status_code == 204, r.text
        tune = (await h.call("GET", "sys/auth/da/tune")).json()["data"]
        assert tune["max_lease_ttl"] == 12345678 and tune["description"] == "tuned"
        assert tune["token_type"] == "default-service"
        r = await h.call("POST", "sys/mounts/auth/da/tune", json={"token_type": "batch"})
        assert r.status_code == 204
        assert (await h.call("GET", "sys/mounts/auth/da/tune")).json()["data"]["token_type"] == "batch"
        r = await h.call("POST", "sys/auth/da/tune", json={"token_type": "weird"})
        assert r.json()["errors"] == ["invalid value for 'token_type'"]
        r = await h.call("POST", "sys/auth/da/tune", json={"user_lockout_config": {"lockout_threshold": "3"}})
        assert r.json()["errors"] == ['tuning of lockout configuration for auth type "dummyauth" not allowed']

        assert (await h.call("DELETE", "sys/auth/da")).status_code == 204
        assert "da/" not in (await h.call("GET", "sys/auth")).json()["data"]
        assert (await h.call("DELETE", "sys/auth/da")).status_code == 204


async def test_user_lockout_tune() -> None:
    async with running_core() as h:
        h.core.auth_factories["userpass"] = dummy_factory
        await h.call("POST", "sys/auth/up", json={"type": "userpass"})
        r = await h.call(
            "POST",
            "sys/auth/up/tune",
            json={"user_lockout_config": {"lockout_threshold": "5", "lockout_duration": "10m"}},
        )
        assert r.status_code == 204, r.text
        tune = (await h.call("GET", "sys/auth/up/tune")).json()["data"]
        assert tune["user_lockout_threshold"] == 5 and tune["user_lockout_duration"] == 600
        assert tune["user_lockout_disable"] is False


async def test_token_auth_cannot_be_enabled_or_disabled() -> None:
    async with running_core() as h:
        r = await h.call("POST", "sys/auth/token2", json={"type": "token"})
        assert r.status_code == 400 and r.json()["errors"] == [
            "token credential backend cannot be instantiated"
        ]
        r = await h.call("DELETE", "sys/auth/token")
        assert r.status_code == 400 and r.json()["errors"] == ["token credential backend cannot be disabled"]
        r = await h.call("POST", "sys/auth/token/tune", json={"token_type": "batch"})
        assert r.status_code == 400
        assert "token" in (await h.call("GET", "sys/auth")).json()["data"]["token/"]["type"]
        r = await h.call("DELETE", "sys/mounts/sys")
        assert r.status_code == 400 and r.json()["errors"] == ['cannot unmount "sys/"']


async def test_sudo_needed_for_sys_auth_paths() -> None:
    async with running_core() as h:
        register(h)
        no_sudo = await token_with(
            h,
            'path "sys/auth/*" { capabilities = ["create", "read", "update", "delete"] }\n'
            'path "sys/auth" { capabilities = ["read"] }\n'
            'path "sys/mounts/*" { capabilities = ["create", "read", "update", "delete"] }',
            "nosudo",
        )
        r = await h.call("POST", "sys/auth/x", json={"type": "dummyauth"}, token=no_sudo)
        assert r.status_code == 403
        assert (await h.call("GET", "sys/auth", token=no_sudo)).status_code == 200  # listing needs no sudo
        # enabling a secrets engine and tuning an auth mount through sys/mounts need no sudo
        r = await h.call("POST", "sys/mounts/y", json={"type": "dummy"}, token=no_sudo)
        assert r.status_code == 204
        await h.call("POST", "sys/auth/x", json={"type": "dummyauth"})
        r = await h.call("POST", "sys/mounts/auth/x/tune", json={"description": "ok"}, token=no_sudo)
        assert r.status_code == 204, r.text
        assert (await h.call("POST", "sys/auth/x/tune", json={}, token=no_sudo)).status_code == 403

        sudo = await token_with(h, 'path "sys/auth/*" { capabilities = ["update", "sudo"] }', "sudo")
        r = await h.call("POST", "sys/auth/z", json={"type": "dummyauth"}, token=sudo)
        assert r.status_code == 204, r.text
        remount = await h.call("POST", "sys/remount", json={"from": "y", "to": "w"}, token=no_sudo)
        assert remount.status_code == 403


async def test_remount_moves_data() -> None:
    async with running_core() as h:
        register(h)
        await h.call("POST", "sys/mounts/old", json={"type": "dummy"})
        await h.call("POST", "old/secret", json={"v": "kept"})
        r = await h.call("POST", "sys/remount", json={"from": "/old/", "to": "new"})
        assert r.status_code == 200, r.text
        migration = r.json()["migration_id"]
        assert r.json()["data"]["migration_id"] == migration
        status = (await h.call("GET", f"sys/remount/status/{migration}")).json()["data"]
        assert status == {
            "migration_id": migration,
            "migration_info": {"source_mount": "old/", "target_mount": "new/", "status": "success"},
        }
        assert (await h.call("GET", "new/secret")).json()["data"] == {"v": "kept"}
        assert (await h.call("GET", "old/secret")).status_code == 404
        mounts = (await h.call("GET", "sys/mounts")).json()["data"]
        assert "new/" in mounts and "old/" not in mounts

        assert (await h.call("GET", "sys/remount/status/nope")).status_code == 404
        await h.call("POST", "sys/mounts/other", json={"type": "dummy"})
        r = await h.call("POST", "sys/remount", json={"from": "new", "to": "other"})
        assert r.status_code == 400 and r.json()["errors"] == ['path already in use at "other/"']
        r = await h.call("POST", "sys/remount", json={"from": "missing", "to": "x"})
        assert r.json()["errors"] == ['no matching mount at "missing/"']
        r = await h.call("POST", "sys/remount", json={"from": "sys", "to": "x"})
        assert r.json()["errors"] == ['cannot remount "sys/"']
        r = await h.call("POST", "sys/remount", json={"from": "new", "to": "a/../b"})
        assert r.status_code == 400
        r = await h.call("POST", "sys/remount", json={"from": "new"})
        assert r.json()["errors"] == ["both 'from' and 'to' path must be specified as a string"]

        await h.call("POST", "sys/auth/da", json={"type": "dummyauth"})
        r = await h.call("POST", "sys/remount", json={"from": "auth/da", "to": "auth/db"})
        assert r.status_code == 200, r.text
        assert "db/" in (await h.call("GET", "sys/auth")).json()["data"]
        r = await h.call("POST", "sys/remount", json={"from": "auth/db", "to": "plain"})
        assert r.json()["errors"] == ['cannot remount auth mount to non-auth mount "plain/"']
        r = await h.call("POST", "sys/remount", json={"from": "auth/token", "to": "auth/tok"})
        assert r.json()["errors"] == ['cannot remount "auth/token/"']


async def test_ui_mounts_without_and_with_token() -> None:
    async with running_core() as h:
        register(h)
        await h.call(
            "POST", "sys/mounts/public", json={"type": "dummy", "config": {"listing_visibility": "unauth"}}
        )
        await h.call("POST", "sys/mounts/m1", json={"type": "dummy", "description": "one"})
        await h.call("POST", "sys/mounts/m2", json={"type": "dummy"})

        r = await h.call("GET", "sys/internal/ui/mounts", token="")
        assert r.status_code == 200
        data = r.json()["data"]
        assert data == {
            "auth": {},
            "secret": {"public/": {"type": "dummy", "description": "", "options": None}},
        }

        data = (await h.call("GET", "sys/internal/ui/mounts")).json()["data"]
        assert {"public/", "m1/", "m2/", "sys/", "cubbyhole/"} <= set(data["secret"])
        assert "token/" in data["auth"] and "accessor" in data["secret"]["m1/"]

        limited = await token_with(h, 'path "m1/*" { capabilities = ["read"] }')
        data = (await h.call("GET", "sys/internal/ui/mounts", token=limited)).json()["data"]
        assert "m1/" in data["secret"] and "public/" in data["secret"]
        assert "m2/" not in data["secret"]
        assert "cubbyhole/" in data["secret"]  # the default policy grants cubbyhole/*

        r = await h.call("GET", "sys/internal/ui/mounts/m1/some/secret", token=limited)
        assert r.status_code == 200, r.text
        assert r.json()["data"]["path"] == "m1/" and r.json()["data"]["type"] == "dummy"
        assert r.json()["data"]["description"] == "one"
        r = await h.call("GET", "sys/internal/ui/mounts/m2/x", token=limited)
        assert r.status_code == 403 and "preflight capability check returned 403" in r.json()["errors"][0]
        r = await h.call("GET", "sys/internal/ui/mounts/nowhere/x", token=limited)
        assert r.status_code == 403
        assert (await h.call("GET", "sys/internal/ui/mounts/m1", token="")).status_code == 403
        assert (await h.call("GET", "sys/internal/ui/mounts", token="hvs.bogus")).status_code == 403


async def test_ui_mount_access_from_deeper_rules() -> None:
    async with running_core() as h:
        register(h)
        for m in ("deep", "wild", "denied"):
            await h.call("POST", f"sys/mounts/{m}", json={"type": "dummy"})
        token = await token_with(
            h,
            'path "deep/data/app/*" { capabilities = ["read"] }\n'
            'path "wild/+/x" { capabilities = ["list"] }\n'
            'path "denied/a" { capabilities = ["deny"] }',
        )
        for mount, allowed in (("deep", True), ("wild", True), ("denied", False)):
            r = await h.call("GET", f"sys/internal/ui/mounts/{mount}", token=token)
            assert (r.status_code == 200) is allowed, (mount, r.text)
