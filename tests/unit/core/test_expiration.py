"""Leases and token expiry: registration, sys/leases/*, revocation through the backend, timers, restore."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from strongroom.core.expiration import ExpirationManager
from strongroom.core.mounts import MountConfig, MountEntry
from strongroom.core.tokens import TokenEntry
from strongroom.framework import Field, FieldData, FieldType, FrameworkBackend, Path, PathOperation
from strongroom.logical.backend import BackendConfig
from strongroom.logical.errors import StrongroomError
from strongroom.logical.request import Auth, Operation, Request, Response, SecretInfo
from strongroom.testing import Harness, running_core

LEASE_RE = re.compile(r"^leasy/creds/alice/[A-Za-z0-9]{24}$")
DENIED = {"errors": ["1 error occurred:\n\t* permission denied\n\n"]}
READER = 'path "leasy/*" { capabilities = ["read", "list"] }'
LEASE_ADMIN = """
path "sys/leases/*" { capabilities = ["create", "read", "update", "list"] }
path "sys/revoke-prefix/*" { capabilities = ["update"] }
path "sys/revoke-force/*" { capabilities = ["update"] }
path "sys/leases" { capabilities = ["read"] }
path "leasy/*" { capabilities = ["read"] }
"""


class Clock:
    def __init__(self) -> None:
        self.t = time.time()

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


@dataclass
class Recorder:
    revoked: list[Request] = field(default_factory=list)
    renewed: list[Request] = field(default_factory=list)
    fail_revoke: bool = False
    ttl: int = 60
    max_ttl: int = 0


class Leasy(FrameworkBackend):
    """A tiny leasing engine: creds/<name> leases, fixed/<name> is not renewable, plain/<name> not leased."""

    backend_type = "leasy"

    def __init__(self, config: BackendConfig, rec: Recorder) -> None:
        self.rec = rec
        super().__init__(config)

    def build_paths(self) -> list[Path]:
        name = {"name": Field(FieldType.NAME, "a name")}
        return [
            Path(
                "creds/{name}",
                fields=name,
                operations={
                    Operation.READ: PathOperation(self._read),
                    Operation.REVOKE: PathOperation(self._revoke),
                    Operation.RENEW: PathOperation(self._renew),
                },
            ),
            Path("fixed/{name}", fields=name, operations={Operation.READ: PathOperation(self._fixed)}),
            Path("plain/{name}", fields=name, operations={Operation.READ: PathOperation(self._plain)}),
        ]

    async def _read(self, req: Request, d: FieldData) -> Response | None:
        user = f"u-{d['name']}"
        secret = SecretInfo(ttl=self.rec.ttl, max_ttl=self.rec.max_ttl, internal_data={"user": user})
        return Response(data={"username": user, "password": "pw"}, secret=secret)

    async def _fixed(self, req: Request, d: FieldData) -> Response | None:
        return Response(data={"v": 1}, secret=SecretInfo(ttl=60, renewable=False))

    async def _plain(self, req: Request, d: FieldData) -> Response | None:
        return Response(data={"v": 1}, secret=SecretInfo(ttl=120, leased=False))

    async def _revoke(self, req: Request, d: FieldData) -> Response | None:
        self.rec.revoked.append(req)
        if self.rec.fail_revoke:
            raise StrongroomError("backend unavailable")
        return None

    async def _renew(self, req: Request, d: FieldData) -> Response | None:
        self.rec.renewed.append(req)
        return Response(secret=SecretInfo(ttl=self.rec.ttl))


class FakeAuth(FrameworkBackend):
    backend_type = "fake"

    def build_paths(self) -> list[Path]:
        return [
            Path(
                "login",
                fields={"ttl": Field(FieldType.DURATION, "token ttl")},
                unauthenticated=True,
                operations={Operation.UPDATE: PathOperation(self._login)},
            )
        ]

    async def _login(self, req: Request, d: FieldData) -> Response | None:
        auth = Auth(
            policies=["Reader"], display_name="alice", ttl=d["ttl"] or 60, metadata={"username": "alice"}
        )
        return Response(auth=auth)


@dataclass
class Env:
    h: Harness
    rec: Recorder
    clock: Clock

    @property
    def manager(self) -> ExpirationManager:
        m: ExpirationManager = self.h.core.expiration
        return m

    async def call(self, method: str, path: str, json: Any = None, token: str | None = None) -> Any:
        return await self.h.call(method, path, json=json, token=token)

    async def lease(self, name: str = "alice", token: str | None = None) -> dict[str, Any]:
        r = await self.call("GET", f"leasy/creds/{name}", token=token)
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    async def token(self, *policies: str, **kw: Any) -> str:
        entry = await self.h.core.tokens.create(TokenEntry(id="", policies=list(policies), **kw))
        return entry.id


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    rec = Recorder()

    async def leasy_factory(config: BackendConfig) -> Leasy:
        return Leasy(config, rec)

    async def fake_factory(config: BackendConfig) -> FakeAuth:
        return FakeAuth(config)

    async with running_core() as h:
        clock = Clock()
        h.core.expiration.now = clock
        h.core.factories["leasy"] = leasy_factory
        h.core.auth_factories["fake"] = fake_factory
        await h.core.enable_mount(MountEntry("leasy/", "leasy"))
        await h.core.policies.put("reader", READER)
        await h.core.policies.put("lease-admin", LEASE_ADMIN)
        yield Env(h, rec, clock)


# -- registration and lookup ---------------------------------------------------------------------


async def test_lease_id_shape_and_lookup(env: Env) -> None:
    body = await env.lease()
    assert LEASE_RE.match(body["lease_id"]), body["lease_id"]
    assert body["lease_duration"] == 60
    assert body["renewable"] is True
    assert body["data"] == {"username": "u-alice", "password": "pw"}

    r = await env.call("PUT", "sys/leases/lookup", json={"lease_id": body["lease_id"]})
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert data["id"] == body["lease_id"]
    assert data["renewable"] is True
    assert data["last_renewal"] is None
    assert 59 <= data["ttl"] <= 60
    assert data["issue_time"].endswith("Z") and data["expire_time"].endswith("Z")

    r = await env.call("POST", "sys/leases/lookup", json={"lease_id": "leasy/creds/alice/nope"})
    assert r.status_code == 400
    assert r.json() == {"errors": ["invalid lease"]}


async def test_list_leases_and_empty_prefix(env: Env) -> None:
    body = await env.lease()
    suffix = body["lease_id"].rsplit("/", 1)[1]
    r = await env.call("LIST", "sys/leases/lookup/leasy")
    assert r.status_code == 200 and r.json()["data"]["keys"] == ["creds/"]
    r = await env.call("GET", "sys/leases/lookup/leasy/creds/alice/?list=true")
    assert r.json()["data"]["keys"] == [suffix]
    r = await env.call("LIST", "sys/leases/lookup/")
    assert r.json()["data"]["keys"] == ["leasy/"]
    r = await env.call("LIST", "sys/leases/lookup/nothing/here")
    assert r.status_code == 404
    assert r.json() == {"errors": []}


async def test_kv_v1_style_unleased_secret_registers_nothing(env: Env) -> None:
    r = await env.call("GET", "leasy/plain/x")
    body = r.json()
    assert body["lease_id"] == "" and body["lease_duration"] == 120
    assert await env.manager.list_prefix("leasy/") == []
    assert env.manager.pending() == 0


async def test_ttl_capped_at_mount_and_secret_max(env: Env) -> None:
    await env.h.core.enable_mount(MountEntry("short/", "leasy", config=MountConfig(max_lease_ttl=30)))
    r = await env.call("GET", "short/creds/bob")
    assert r.json()["lease_duration"] == 30
    env.rec.max_ttl = 20
    r = await env.call("GET", "leasy/creds/bob")
    assert r.json()["lease_duration"] == 20


# -- renew ------------------------------------------------------------------------------------------


async def test_renew_through_backend(env: Env) -> None:
    lease_id = (await env.lease())["lease_id"]
    env.clock.advance(10)
    r = await env.call("PUT", "sys/leases/renew", json={"lease_id": lease_id, "increment": 30})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["lease_id"] == lease_id
    assert body["lease_duration"] == 30
    assert body["renewable"] is True
    assert body["data"] is None
    assert body["warnings"] is None
    req = env.rec.renewed[-1]
    assert req.operation == Operation.RENEW and req.path == "creds/alice"
    assert req.secret is not None and req.secret.internal_data == {"user": "u-alice"}
    assert req.secret.lease_id == lease_id

    # the URL forms and the old alias
    r = await env.call("POST", f"sys/leases/renew/{lease_id}", json={"increment": "1m"})
    assert r.status_code == 200 and r.json()["lease_duration"] == 60
    r = await env.call("PUT", f"sys/renew/{lease_id}")
    assert r.status_code == 200 and r.json()["lease_id"] == lease_id
    assert len(env.rec.renewed) == 3
    # a renewal is not a new lease
    assert len(await env.manager.list_prefix("leasy/creds/alice/")) == 1

    r = await env.call("POST", "sys/leases/lookup", json={"lease_id": lease_id})
    assert r.json()["data"]["last_renewal"] is not None


async def test_renew_never_passes_max_ttl_nor_yields_zero(env: Env) -> None:
    await env.h.core.enable_mount(MountEntry("short/", "leasy", config=MountConfig(max_lease_ttl=100)))
    r = await env.call("GET", "short/creds/bob")
    lease_id = r.json()["lease_id"]
    env.clock.advance(50)
    r = await env.call("PUT", "sys/leases/renew", json={"lease_id": lease_id, "increment": 1000})
    assert r.status_code == 200, r.text
    assert 0 < r.json()["lease_duration"] <= 50
    assert any("capped" in w for w in r.json()["warnings"])
    env.clock.advance(49.5)  # half a second before the max TTL
    r = await env.call("PUT", "sys/leases/renew", json={"lease_id": lease_id})
    assert r.status_code == 400 or r.json()["lease_duration"] > 0
    env.clock.advance(1)
    r = await env.call("PUT", "sys/leases/renew", json={"lease_id": lease_id})
    assert r.status_code == 400


async def test_non_renewable_and_unknown_leases(env: Env) -> None:
    r = await env.call("GET", "leasy/fixed/x")
    lease_id = r.json()["lease_id"]
    assert r.json()["renewable"] is False
    r = await env.call("PUT", "sys/leases/renew", json={"lease_id": lease_id})
    assert r.status_code == 400
    assert r.json() == {"errors": ["lease is not renewable"]}
    r = await env.call("PUT", "sys/leases/renew", json={"lease_id": "leasy/creds/zzz/abc"})
    assert r.status_code == 400
    r = await env.call("PUT", "sys/leases/renew", json={})
    assert r.json() == {"errors": ["lease_id must be specified"]}


# -- revoke -----------------------------------------------------------------------------------------


async def test_revoke_goes_through_backend(env: Env) -> None:
    body = await env.lease()
    lease_id = body["lease_id"]
    r = await env.call("PUT", "sys/leases/revoke", json={"lease_id": lease_id})
    assert r.status_code == 204, r.text
    req = env.rec.revoked[-1]
    assert req.operation == Operation.REVOKE and req.path == "creds/alice"
    assert req.data == {"username": "u-alice", "password": "pw"}
    assert req.secret is not None and req.secret.internal_data == {"user": "u-alice"}
    assert req.secret.lease_id == lease_id
    assert req.mount_point == "leasy/" and req.mount_type == "leasy"
    r = await env.call("POST", "sys/leases/lookup", json={"lease_id": lease_id})
    assert r.status_code == 400
    # unknown: nothing to do
    r = await env.call("PUT", "sys/leases/revoke", json={"lease_id": lease_id})
    assert r.status_code == 204
    # the URL form and the old alias; a KV-style lease (no REVOKE handler) just goes away
    other = (await env.lease("bob"))["lease_id"]
    fixed = (await env.call("GET", "leasy/fixed/y")).json()["lease_id"]
    assert (await env.call("PUT", f"sys/leases/revoke/{other}")).status_code == 204
    assert (await env.call("PUT", f"sys/revoke/{fixed}")).status_code == 204
    assert await env.manager.list_prefix("leasy/") == []


async def test_revoke_failure_keeps_lease_unless_forced(env: Env) -> None:
    lease_id = (await env.lease())["lease_id"]
    env.rec.fail_revoke = True
    r = await env.call("PUT", "sys/leases/revoke", json={"lease_id": lease_id})
    assert r.status_code == 500
    assert await env.manager.lookup(lease_id) is not None
    r = await env.call("PUT", "sys/leases/revoke-prefix/leasy/creds")
    assert r.status_code == 500
    assert "failed to revoke" in r.json()["errors"][0]
    assert await env.manager.lookup(lease_id) is not None
    r = await env.call("PUT", "sys/leases/revoke-force/leasy/creds")
    assert r.status_code == 204
    assert await env.manager.lookup(lease_id) is None


async def test_revoke_prefix_and_force_need_sudo(env: Env) -> None:
    limited = await env.token("lease-admin")
    ids = [(await env.lease(n))["lease_id"] for n in ("a", "b")]
    for path in (
        "sys/leases/revoke-prefix/leasy",
        "sys/leases/revoke-force/leasy",
        "sys/revoke-prefix/leasy",
        "sys/revoke-force/leasy",
    ):
        r = await env.call("PUT", path, token=limited)
        assert r.status_code == 403, path
        assert r.json() == DENIED
    r = await env.call("LIST", "sys/leases/lookup/leasy/", token=limited)
    assert r.status_code == 403
    # the limited token may still look up and revoke a single lease
    r = await env.call("PUT", "sys/leases/lookup", json={"lease_id": ids[0]}, token=limited)
    assert r.status_code == 200

    r = await env.call("PUT", "sys/leases/revoke-prefix/leasy/creds/a")  # a folder, not a lease
    assert r.status_code == 204
    assert await env.manager.lookup(ids[0]) is None
    assert await env.manager.lookup(ids[1]) is not None
    r = await env.call("PUT", f"sys/revoke-prefix/{ids[1]}", json={"prefix": ids[1]})  # a lease id itself
    assert r.status_code == 204
    assert await env.manager.lookup(ids[1]) is None
    assert len(env.rec.revoked) == 2


async def test_revoking_token_revokes_its_leases(env: Env) -> None:
    child = await env.token("reader")
    lease_id = (await env.lease(token=child))["lease_id"]
    keep = (await env.lease("other"))["lease_id"]  # the root token's lease stays
    r = await env.call("POST", "auth/token/revoke", json={"token": child})
    assert r.status_code == 204, r.text
    assert [req.secret.lease_id for req in env.rec.revoked if req.secret] == [lease_id]
    assert await env.manager.lookup(lease_id) is None
    assert await env.manager.lookup(keep) is not None


async def test_revoking_token_with_failing_backend_leaves_lease_to_timer(env: Env) -> None:
    child = await env.token("reader")
    lease_id = (await env.lease(token=child))["lease_id"]
    env.rec.fail_revoke = True
    r = await env.call("POST", "auth/token/revoke", json={"token": child})
    assert r.status_code == 204
    env.rec.fail_revoke = False
    await env.manager.run_due()
    assert await env.manager.lookup(lease_id) is None


async def test_batch_token_leases_die_with_the_token(env: Env) -> None:
    now = time.time()
    batch = await env.token("reader", type="batch", ttl=30, expire_time=now + 30)
    body = await env.lease(token=batch)
    assert 0 < body["lease_duration"] <= 30
    # a non-orphan batch token's leases go with its parent
    parent = await env.token("reader")
    parent_entry = await env.h.core.tokens.lookup(parent)
    assert parent_entry is not None
    child_batch = await env.token("reader", type="batch", ttl=300, expire_time=now + 300, parent=parent)
    lease_id = (await env.lease("kid", token=child_batch))["lease_id"]
    await env.h.core.revoke_token(parent_entry)
    assert await env.manager.lookup(lease_id) is None


async def test_token_exhausting_its_uses_takes_its_lease(env: Env) -> None:
    once = await env.token("reader", num_uses=1)
    lease_id = (await env.lease(token=once))["lease_id"]
    await env.manager.run_due()
    assert await env.manager.lookup(lease_id) is None


# -- timers -----------------------------------------------------------------------------------------


async def test_expiry_with_injected_clock(env: Env) -> None:
    lease_id = (await env.lease())["lease_id"]
    env.clock.advance(30)
    await env.manager.run_due()
    assert await env.manager.lookup(lease_id) is not None
    # a renewal moves the deadline
    r = await env.call("PUT", "sys/leases/renew", json={"lease_id": lease_id, "increment": 60})
    assert r.status_code == 200
    env.clock.advance(40)
    await env.manager.run_due()
    assert await env.manager.lookup(lease_id) is not None
    env.clock.advance(21)
    await env.manager.run_due()
    assert await env.manager.lookup(lease_id) is None
    assert env.rec.revoked[-1].secret is not None and env.rec.revoked[-1].secret.lease_id == lease_id


async def test_failing_expiry_retries_then_turns_irrevocable(env: Env) -> None:
    lease_id = (await env.lease())["lease_id"]
    env.rec.fail_revoke = True
    env.clock.advance(61)
    await env.manager.run_due()
    assert len(env.rec.revoked) == 1
    await env.manager.run_due()  # backoff: not yet
    assert len(env.rec.revoked) == 1
    for _ in range(10):
        env.clock.advance(4000)
        await env.manager.run_due()
    assert len(env.rec.revoked) == env.manager.max_attempts
    assert env.manager.pending() == 0
    r = await env.call("GET", "sys/leases/count?type=irrevocable")
    assert r.status_code == 200 and r.json()["data"]["lease_count"] == 1
    r = await env.call("GET", "sys/leases?type=irrevocable")
    leases = r.json()["data"]["leases"]
    assert [x["lease_id"] for x in leases] == [lease_id]
    assert "backend unavailable" in leases[0]["error"]
    r = await env.call("POST", "sys/leases/lookup", json={"lease_id": lease_id})
    assert r.json()["data"]["renewable"] is False
    # force still clears it
    r = await env.call("PUT", "sys/leases/revoke-force/leasy")
    assert r.status_code == 204
    r = await env.call("GET", "sys/leases/count?type=irrevocable")
    assert r.json()["data"]["lease_count"] == 0


async def test_leases_and_token_expiry_survive_seal_and_unseal(env: Env) -> None:
    h = env.h
    root_key = await h.core.seal_impl.root_key_from(bytes.fromhex(h.keys[0]))
    lease_id = (await env.lease())["lease_id"]
    r = await env.call("POST", "auth/token/create", json={"policies": ["reader"], "ttl": "90s"})
    token = r.json()["auth"]["client_token"]
    assert env.manager.pending() == 2

    await h.core.seal()
    assert env.manager.pending() == 0
    await h.core.unseal_with_root_key(root_key)
    assert env.manager.pending() == 2
    r = await env.call("LIST", "sys/leases/lookup/leasy/creds/alice/")
    assert r.status_code == 200 and lease_id.endswith(r.json()["data"]["keys"][0])

    env.clock.advance(61)
    await env.manager.run_due()
    assert await env.manager.lookup(lease_id) is None
    assert env.rec.revoked[-1].secret is not None and env.rec.revoked[-1].secret.lease_id == lease_id
    assert (await env.call("GET", "auth/token/lookup-self", token=token)).status_code == 200
    env.clock.advance(30)
    await env.manager.run_due()
    assert await h.core.tokens.lookup_raw(token) is None


# -- tidy, counts -----------------------------------------------------------------------------------


async def test_tidy(env: Env) -> None:
    r = await env.call("POST", "sys/leases/tidy")
    assert r.status_code == 202
    assert r.json()["warnings"] == [
        "Tidy operation successfully started. Any information from the operation will be printed to "
        "Vault's server logs."
    ]
    child = await env.token("reader")
    lease_id = (await env.lease(token=child))["lease_id"]
    gone = (await env.lease("gone", token=child))["lease_id"]
    await env.manager.view.delete(f"id/{gone}")  # an index entry left dangling
    report = await env.manager.tidy()
    assert report["index_entries_deleted"] == 1
    assert await env.manager.lookup(lease_id) is not None
    # a token deleted behind the manager's back: tidy revokes its leases
    entry = await env.h.core.tokens.lookup(child)
    assert entry is not None
    await env.h.core.tokens.delete_entry(entry)
    report = await env.manager.tidy()
    assert report["leases_revoked"] == 1
    assert await env.manager.lookup(lease_id) is None


async def test_counts_need_sudo(env: Env) -> None:
    r = await env.call("GET", "sys/leases/count?type=irrevocable")
    assert r.status_code == 200
    assert r.json()["data"] == {"lease_count": 0, "counts": {}}
    r = await env.call("GET", "sys/leases?type=irrevocable")
    assert r.json()["data"] == {"lease_count": 0, "leases": []}
    limited = await env.token("lease-admin")
    assert (await env.call("GET", "sys/leases?type=irrevocable", token=limited)).status_code == 403


# -- logins -----------------------------------------------------------------------------------------


async def test_login_mints_orphan_token_that_expires(env: Env) -> None:
    h = env.h
    await h.core.enable_mount(MountEntry("fake/", "fake", table="auth"))
    r = await h.client.post("/v1/auth/fake/login", json={})
    assert r.status_code == 200, r.text
    auth = r.json()["auth"]
    token = auth["client_token"]
    assert token.startswith("hvs.")
    assert auth["orphan"] is True
    assert auth["policies"] == ["default", "reader"]
    assert auth["token_policies"] == ["default", "reader"]
    assert auth["lease_duration"] == 60
    assert auth["accessor"]
    assert auth["metadata"] == {"username": "alice"}

    r = await env.call("GET", "auth/token/lookup-self", token=token)
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert data["display_name"] == "fake-alice"
    assert data["path"] == "auth/fake/login"
    assert data["orphan"] is True
    assert data["meta"] == {"username": "alice"}
    # the token works for requests, and its leases die with it
    lease_id = (await env.lease(token=token))["lease_id"]

    env.clock.advance(61)
    await env.manager.run_due()
    assert await h.core.tokens.lookup_raw(token) is None
    assert (await env.call("GET", "leasy/creds/alice", token=token)).status_code == 403
    assert await env.manager.lookup(lease_id) is None


async def test_login_ttl_capped_by_mount_and_revoked_with_mount_prefix(env: Env) -> None:
    h = env.h
    await h.core.enable_mount(MountEntry("fake/", "fake", table="auth", config=MountConfig(max_lease_ttl=40)))
    r = await h.client.post("/v1/auth/fake/login", json={"ttl": 3600})
    assert r.status_code == 200
    assert r.json()["auth"]["lease_duration"] == 40
    assert any("capped" in w for w in r.json()["warnings"])
    token = r.json()["auth"]["client_token"]
    r = await env.call("PUT", "sys/leases/revoke-prefix/auth/fake")
    assert r.status_code == 204
    assert await h.core.tokens.lookup_raw(token) is None
