"""The userpass auth method over HTTP: users, login, lockout (CVE-2025-6004) and sys/locked-users."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import bcrypt
import httpx
import pytest

import strongroom.auth.userpass as userpass
from strongroom.auth.common import LockoutPolicy, StoredLoginLockout
from strongroom.auth.userpass import INVALID_LOGIN, USER_PREFIX, UserpassBackend, normalize_username
from strongroom.core.mounts import MountEntry
from strongroom.logical.backend import BackendConfig
from strongroom.logical.request import Connection, Operation, Request
from strongroom.logical.storage import InmemStorage, get_json
from strongroom.testing import Harness, running_core

MOUNT = "auth/userpass/"
TEST_COST = 4  # bcrypt's minimum: these tests are about behaviour, the timing test about cost
DEFAULT_COST = userpass.BCRYPT_COST


@pytest.fixture(autouse=True)
def cheap_bcrypt(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(userpass, "BCRYPT_COST", TEST_COST)


@pytest.fixture
async def h() -> AsyncIterator[Harness]:
    async with running_core() as harness:
        if harness.core.expiration is not None:
            # tokens are minted, but no expiry timer task outlives the fixture's event loop
            await harness.core.expiration.stop()
        await harness.core.enable_mount(MountEntry("userpass/", "userpass", table="auth"))
        await harness.core.policies.put("reader", 'path "kv/*" { capabilities = ["read"] }')
        yield harness


def backend(h: Harness) -> UserpassBackend:
    route = h.core.router.get(MOUNT)
    assert route is not None
    assert isinstance(route.backend, UserpassBackend)
    return route.backend


def accessor(h: Harness) -> str:
    return h.core.auth_mounts.entries["userpass/"].accessor


async def call(h: Harness, method: str, path: str, body: Any = None, **kw: Any) -> httpx.Response:
    return await h.call(method, MOUNT + path, json=body, **kw)


async def ok(h: Harness, method: str, path: str, body: Any = None) -> dict[str, Any]:
    r = await call(h, method, path, body)
    assert r.status_code in (200, 204), (r.status_code, r.text)
    return {} if r.status_code == 204 else dict(r.json())


async def login(h: Harness, name: str, password: str | None) -> httpx.Response:
    body = {} if password is None else {"password": password}
    return await call(h, "POST", f"login/{name}", body, token="")


async def user(h: Harness, name: str = "alice", password: str = "s3cret", **body: Any) -> None:
    await ok(h, "POST", f"users/{name}", {"password": password, **body})


def later(h: Harness, seconds: float) -> None:
    b = backend(h)
    base = b.now
    b.now = lambda: base() + seconds


# -- users -------------------------------------------------------------------------------------


async def test_user_crud_and_read_never_shows_the_password(h: Harness) -> None:
    await user(h, "Alice", token_policies="Reader,b", token_ttl="1h", token_bound_cidrs="10.0.0.0/8")
    data = (await ok(h, "GET", "users/alice"))["data"]
    assert data["token_policies"] == ["reader", "b"]
    assert data["token_ttl"] == 3600 and data["token_bound_cidrs"] == ["10.0.0.0/8"]
    assert "password" not in data and "password_hash" not in data
    assert "s3cret" not in json.dumps(data) and "$2" not in json.dumps(data)
    assert (await ok(h, "GET", "users/ALICE"))["data"] == data  # the same user, any case
    assert (await ok(h, "LIST", "users"))["data"]["keys"] == ["alice"]

    # a partial update keeps the rest (and the password)
    await ok(h, "POST", "users/alice", {"token_max_ttl": "2h"})
    data = (await ok(h, "GET", "users/alice"))["data"]
    assert data["token_max_ttl"] == 7200 and data["token_ttl"] == 3600
    # the password was kept: the right one passes the check and meets the CIDR binding (403, not 400)
    assert (await login(h, "alice", "s3cret")).status_code == 403

    await ok(h, "DELETE", "users/Alice")
    assert (await call(h, "GET", "users/alice")).status_code == 404
    assert (await call(h, "LIST", "users")).status_code == 404
    assert (await login(h, "alice", "s3cret")).json() == {"errors": [INVALID_LOGIN]}


async def test_legacy_fields_are_honoured_and_read_back(h: Harness) -> None:
    await user(h, "bob", policies="Reader", ttl="10s", max_ttl="1m", bound_cidrs="127.0.0.1")
    data = (await ok(h, "GET", "users/bob"))["data"]
    assert data["policies"] == data["token_policies"] == ["reader"]
    assert data["ttl"] == data["token_ttl"] == 10 and data["max_ttl"] == 60
    assert data["bound_cidrs"] == ["127.0.0.1"]
    r = await login(h, "bob", "s3cret")
    assert r.status_code == 200, r.text
    assert r.json()["auth"]["lease_duration"] == 10  # what hvac's test_create_userpass checks


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "missing password"),
        ({"password": ""}, "missing password"),
        ({"password": "x", "password_hash": "y"}, 'only one of "password" or "password_hash"'),
        ({"password_hash": "not-a-hash"}, "password_hash is not a valid bcrypt hash"),
        ({"password": "x" * 73}, "password is longer than 72 bytes"),
        ({"password": "x", "token_type": "bogus"}, "invalid 'token_type' value"),
        ({"password": "x", "token_bound_cidrs": "not-an-ip"}, "invalid token_bound_cidrs"),
    ],
)
async def test_invalid_user_writes(h: Harness, body: dict[str, Any], message: str) -> None:
    r = await call(h, "POST", "users/carol", body)
    assert r.status_code == 400 and message in r.json()["errors"][0], r.text
    for secret in ("not-a-hash", "x" * 73):
        assert secret not in r.text  # never echoed
    assert (await call(h, "GET", "users/carol")).status_code == 404


async def test_password_hash_import_is_validated_and_logs_in(h: Harness) -> None:
    hashed = bcrypt.hashpw(b"imported", bcrypt.gensalt(TEST_COST)).decode()
    await ok(h, "POST", "users/dave", {"password_hash": hashed, "token_policies": "reader"})
    assert hashed not in json.dumps(await ok(h, "GET", "users/dave"))
    assert (await login(h, "dave", "imported")).status_code == 200
    assert (await login(h, "dave", hashed)).status_code == 400

    # $2y$ (PHP) and $2a$ spellings are bcrypt too
    await ok(h, "POST", "users/erin", {"password_hash": "$2y$" + hashed[4:]})
    assert (await login(h, "erin", "imported")).status_code == 200

    for bad in (
        hashed[:-1],
        hashed.replace(f"$0{TEST_COST}$", "$03$"),
        hashed.replace(f"$0{TEST_COST}$", "$15$"),
    ):
        r = await call(h, "POST", "users/frank", {"password_hash": bad})
        assert r.status_code == 400 and bad not in r.text


async def test_an_imported_hash_of_another_cost_is_rehashed_at_the_first_login(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(userpass, "BCRYPT_COST", 5)
    hashed = bcrypt.hashpw(b"pw", bcrypt.gensalt(4)).decode()
    await ok(h, "POST", "users/gina", {"password_hash": hashed})
    assert (await login(h, "gina", "pw")).status_code == 200
    stored = await get_json(backend(h).storage, USER_PREFIX + "gina")
    assert stored["password_hash"].startswith("$2b$05$")
    assert (await login(h, "gina", "pw")).status_code == 200


async def test_password_update(h: Harness) -> None:
    await user(h, "alice", "old")
    await ok(h, "POST", "users/Alice/password", {"password": "new"})
    assert (await login(h, "alice", "old")).status_code == 400
    assert (await login(h, "alice", "new")).status_code == 200
    hashed = bcrypt.hashpw(b"hashed", bcrypt.gensalt(TEST_COST)).decode()
    await ok(h, "POST", "users/alice/password", {"password_hash": hashed})
    assert (await login(h, "alice", "hashed")).status_code == 200
    r = await call(h, "POST", "users/alice/password", {})
    assert r.status_code == 400 and "missing password" in r.text
    r = await call(h, "POST", "users/nobody/password", {"password": "x"})
    assert r.status_code == 400 and "username does not exist" in r.text
    assert (await call(h, "GET", "users/nobody")).status_code == 404  # not created on the way


async def test_policies_update(h: Harness) -> None:
    await user(h, "alice")
    await ok(h, "POST", "users/alice/policies", {"token_policies": "Reader, extra"})
    assert (await ok(h, "GET", "users/alice"))["data"]["token_policies"] == ["reader", "extra"]
    auth = (await login(h, "alice", "s3cret")).json()["auth"]
    assert set(auth["policies"]) == {"default", "extra", "reader"}
    await ok(h, "POST", "users/alice/policies", {"policies": "legacy"})
    data = (await ok(h, "GET", "users/alice"))["data"]
    assert data["token_policies"] == data["policies"] == ["legacy"]
    r = await call(h, "POST", "users/alice/policies", {})
    assert r.status_code == 400 and "policies must be set" in r.text
    r = await call(h, "POST", "users/nobody/policies", {"token_policies": "x"})
    assert r.status_code == 400 and "username does not exist" in r.text


# -- login -------------------------------------------------------------------------------------


async def test_login_returns_a_working_token(h: Harness) -> None:
    await ok(h, "POST", "users/alice", {"password": "pw"})
    r = await h.call("POST", "sys/mounts/kv", json={"type": "kv"})
    assert r.status_code == 204, r.text
    assert (await h.call("POST", "kv/thing", json={"v": "1"})).status_code == 204
    await ok(h, "POST", "users/alice/policies", {"token_policies": "reader"})

    r = await login(h, "Alice", "pw")
    assert r.status_code == 200, r.text
    auth = r.json()["auth"]
    assert auth["metadata"] == {"username": "alice"}
    assert set(auth["policies"]) == {"default", "reader"} and auth["renewable"] is True
    token = auth["client_token"]

    me = (await h.call("GET", "auth/token/lookup-self", token=token)).json()["data"]
    assert me["display_name"] == "userpass-alice" and me["meta"] == {"username": "alice"}
    assert (await h.call("GET", "kv/thing", token=token)).json()["data"] == {"v": "1"}
    assert (await h.call("POST", "kv/thing", json={"v": "2"}, token=token)).status_code == 403


async def test_wrong_password_and_unknown_user_answer_identically(h: Harness) -> None:
    await user(h, "alice")
    wrong = await login(h, "alice", "nope")
    unknown = await login(h, "mallory", "nope")
    odd = await login(h, "not a valid name!", "nope")  # cannot be a stored user at all
    too_long = await login(h, "alice", "s3cret" + "x" * 100)  # beyond bcrypt's 72 bytes
    for r in (wrong, unknown, odd, too_long):
        assert r.status_code == 400
        assert r.json() == {"errors": [INVALID_LOGIN]}
        assert r.headers.get("content-type") == wrong.headers.get("content-type")
    r = await login(h, "alice", None)
    assert r.status_code == 400 and r.json() == {"errors": ["missing password"]}


async def test_login_refused_outside_the_bound_cidrs(h: Harness) -> None:
    await user(h, "alice", token_bound_cidrs="10.0.0.0/8")  # the harness connects from 127.0.0.1
    r = await login(h, "alice", "s3cret")
    assert r.status_code == 403 and "client_token" not in r.text
    await ok(h, "POST", "users/alice", {"token_bound_cidrs": "127.0.0.0/8"})
    r = await login(h, "alice", "s3cret")
    assert r.status_code == 200
    token = r.json()["auth"]["client_token"]
    assert (await h.call("GET", "auth/token/lookup-self", token=token)).status_code == 200
    await user(h, "bob", bound_cidrs="192.168.0.0/16")  # the legacy name binds as well
    assert (await login(h, "bob", "s3cret")).status_code == 403


# -- renewal -----------------------------------------------------------------------------------


async def renew_self(h: Harness, token: str) -> httpx.Response:
    return await h.call("POST", "auth/token/renew-self", json={}, token=token)


async def token_times(h: Harness, token: str) -> tuple[Any, Any]:
    """What a renewal changes: the expiry and the last renewal time (both to the microsecond)."""
    r = await h.call("POST", "auth/token/lookup", json={"token": token})
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    return data["expire_time"], data.get("last_renewal")


async def test_renewal_is_refused_once_the_user_is_deleted(h: Harness) -> None:
    await user(h, "alice", token_policies="reader", token_ttl="1h", token_max_ttl="2h")
    auth = (await login(h, "Alice", "s3cret")).json()["auth"]
    token = auth["client_token"]
    r = await renew_self(h, token)
    assert r.status_code == 200, r.text
    assert r.json()["auth"]["client_token"] == token and r.json()["auth"]["lease_duration"] == 3600
    before = await token_times(h, token)

    await ok(h, "DELETE", "users/alice")
    for r in (
        await renew_self(h, token),
        await h.call("POST", "auth/token/renew", json={"token": token}),
        await h.call("POST", "auth/token/renew-accessor", json={"accessor": auth["accessor"]}),
    ):
        assert r.status_code == 400, r.text
        assert r.json() == {"errors": ["user no longer exists, not renewing"]}
    # nothing changed: the token keeps its expiry (it is not revoked either), the user stays gone
    assert await token_times(h, token) == before
    assert (await call(h, "GET", "users/alice")).status_code == 404
    # a user of the same name created later does not revive the token's renewals with other policies
    await user(h, "alice", token_policies="other")
    r = await renew_self(h, token)
    assert r.status_code == 400 and r.json() == {"errors": ["policies have changed, not renewing"]}


async def test_renewal_is_refused_once_the_users_policies_change(h: Harness) -> None:
    await user(h, "alice", token_policies="reader")
    token = (await login(h, "alice", "s3cret")).json()["auth"]["client_token"]
    # the same set in another spelling (order, case, an explicit default) is no change
    await ok(h, "POST", "users/alice/policies", {"token_policies": "default, READER"})
    assert (await renew_self(h, token)).status_code == 200
    # another TTL is no policy change either
    await ok(h, "POST", "users/alice", {"token_ttl": "30m"})
    assert (await renew_self(h, token)).status_code == 200
    before = await token_times(h, token)

    await ok(h, "POST", "users/alice/policies", {"token_policies": "reader,extra"})
    stored = await get_json(backend(h).storage, USER_PREFIX + "alice")
    r = await renew_self(h, token)
    assert r.status_code == 400, r.text
    assert r.json() == {"errors": ["policies have changed, not renewing"]}
    assert await token_times(h, token) == before
    assert await get_json(backend(h).storage, USER_PREFIX + "alice") == stored
    # a fresh login carries the new policies and renews
    fresh = (await login(h, "alice", "s3cret")).json()["auth"]
    assert set(fresh["policies"]) == {"default", "extra", "reader"}
    assert (await renew_self(h, fresh["client_token"])).status_code == 200


async def test_renewal_uses_the_users_current_token_ttl(h: Harness) -> None:
    """As Vault: the method's answer to the renewal sets the TTL, so a changed token_ttl applies."""
    await user(h, "alice", token_ttl="10m", token_max_ttl="10h")
    token = (await login(h, "alice", "s3cret")).json()["auth"]["client_token"]
    r = await renew_self(h, token)
    assert r.status_code == 200 and r.json()["auth"]["lease_duration"] == 600
    await ok(h, "POST", "users/alice", {"token_ttl": "30m"})
    r = await renew_self(h, token)
    assert r.status_code == 200 and r.json()["auth"]["lease_duration"] == 1800
    await ok(h, "POST", "users/alice", {"token_ttl": "5m"})
    r = await renew_self(h, token)
    assert r.status_code == 200 and r.json()["auth"]["lease_duration"] == 300


# -- lockout -----------------------------------------------------------------------------------


async def locked_users(h: Harness, mount_accessor: str = "") -> dict[str, Any]:
    params = {"mount_accessor": mount_accessor} if mount_accessor else None
    r = await h.call("GET", "sys/locked-users", params=params)
    assert r.status_code == 200, r.text
    return dict(r.json()["data"])


async def test_lockout_counts_every_spelling_of_a_name_as_one_user(h: Harness) -> None:
    """CVE-2025-6004: case and space variants must not each get their own counter."""
    await user(h, "alice")
    for variant in ("Alice", "alice%20", "ALICE", "%20alice", "aLiCe"):
        r = await login(h, variant, "wrong")
        assert r.status_code == 400, (variant, r.text)
    for variant in ("alice", "Alice", "alice%20"):
        r = await login(h, variant, "s3cret")  # the right password, and still refused
        assert r.status_code == 403, (variant, r.text)
        assert "permission denied" in r.json()["errors"][0]  # Vault's ErrPermissionDenied
        assert "client_token" not in r.text
    assert normalize_username("  ALice ") == "alice"


async def test_locked_user_is_released_after_the_lockout_duration(h: Harness) -> None:
    await user(h, "alice")
    for _ in range(5):
        await login(h, "alice", "wrong")
    assert (await login(h, "alice", "s3cret")).status_code == 403
    later(h, 901)
    assert (await login(h, "alice", "s3cret")).status_code == 200


async def test_a_successful_login_resets_the_counter(h: Harness) -> None:
    await user(h, "alice")
    for _ in range(4):
        assert (await login(h, "alice", "wrong")).status_code == 400
    assert (await login(h, "alice", "s3cret")).status_code == 200
    for _ in range(4):
        assert (await login(h, "alice", "wrong")).status_code == 400
    assert (await login(h, "alice", "s3cret")).status_code == 200
    for _ in range(5):
        await login(h, "alice", "wrong")
    assert (await login(h, "alice", "s3cret")).status_code == 403


async def test_the_counter_forgets_old_failures(h: Harness) -> None:
    await user(h, "alice")
    for _ in range(4):
        await login(h, "alice", "wrong")
    later(h, 901)  # longer than the counter reset
    await login(h, "alice", "wrong")
    assert (await login(h, "alice", "s3cret")).status_code == 200


async def test_parallel_guesses_cannot_outrun_the_lockout(h: Harness) -> None:
    await user(h, "alice")
    results = await asyncio.gather(*(login(h, "alice", f"guess{i}") for i in range(20)))
    codes = sorted(r.status_code for r in results)
    assert codes.count(400) == 5 and codes.count(403) == 15, codes
    assert (await login(h, "alice", "s3cret")).status_code == 403


async def test_unknown_names_lock_alike_but_are_not_listed(h: Harness) -> None:
    for _ in range(5):
        assert (await login(h, "ghost", "x")).status_code == 400
    # a made-up name locks exactly like a real one, so a 403 reveals nothing
    assert (await login(h, "ghost", "x")).status_code == 403
    assert (await locked_users(h))["total"] == 0
    # creating the user clears what was counted against the name before it existed
    await user(h, "ghost", "pw")
    assert (await login(h, "ghost", "pw")).status_code == 200


async def test_sys_locked_users_lists_and_unlocks(h: Harness) -> None:
    await user(h, "alice")
    await user(h, "bob")
    for _ in range(5):
        await login(h, "alice", "wrong")
        await login(h, "Bob", "wrong")
    acc = accessor(h)
    data = await locked_users(h)
    assert data["total"] == 2
    (ns,) = data["by_namespace"]
    assert ns["namespace_id"] == "root" and ns["namespace_path"] == "" and ns["counts"] == 2
    assert ns["mount_accessors"] == [
        {"mount_accessor": acc, "counts": 2, "alias_identifiers": ["alice", "bob"]}
    ]
    assert (await locked_users(h, acc))["total"] == 2
    other = await locked_users(h, "auth_userpass_00000000")
    assert other["total"] == 0 and other["by_namespace"][0]["mount_accessors"][0]["alias_identifiers"] == []

    r = await h.call("POST", f"sys/locked-users/{acc}/unlock/ALICE")  # any spelling
    assert r.status_code == 204, r.text
    assert (await login(h, "alice", "s3cret")).status_code == 200
    assert (await login(h, "bob", "s3cret")).status_code == 403
    assert (await locked_users(h))["by_namespace"][0]["mount_accessors"][0]["alias_identifiers"] == ["bob"]
    # idempotent, and an unknown accessor is not an error (as in Vault)
    assert (await h.call("POST", f"sys/locked-users/{acc}/unlock/alice")).status_code == 204
    assert (await h.call("POST", "sys/locked-users/auth_nope_1/unlock/alice")).status_code == 204
    # a token without a policy for it cannot list or unlock
    await ok(h, "POST", "users/carol", {"password": "pw"})
    token = (await login(h, "carol", "pw")).json()["auth"]["client_token"]
    assert (await h.call("GET", "sys/locked-users", token=token)).status_code == 403
    assert (await h.call("POST", f"sys/locked-users/{acc}/unlock/bob", token=token)).status_code == 403


async def tune(h: Harness, **config: Any) -> None:
    r = await h.call("POST", "sys/auth/userpass/tune", json={"user_lockout_config": config})
    assert r.status_code == 204, r.text


async def test_tuned_threshold_and_duration(h: Harness) -> None:
    await tune(h, lockout_threshold="2", lockout_duration="1m")
    await user(h, "alice")
    for _ in range(2):
        await login(h, "alice", "wrong")
    assert (await login(h, "alice", "s3cret")).status_code == 403
    later(h, 61)
    assert (await login(h, "alice", "s3cret")).status_code == 200


async def test_tuned_lockout_disable(h: Harness) -> None:
    await tune(h, lockout_disable=True)
    await user(h, "alice")
    for _ in range(10):
        assert (await login(h, "alice", "wrong")).status_code == 400
    assert (await login(h, "alice", "s3cret")).status_code == 200
    assert await backend(h).storage.list("lockout/") == []  # nothing written while disabled
    await tune(h, lockout_disable=False, lockout_threshold="3")
    for _ in range(3):
        await login(h, "alice", "wrong")
    assert (await login(h, "alice", "s3cret")).status_code == 403


def test_lockout_policy_reads_what_the_tune_stores() -> None:
    stored = {
        "user_lockout_threshold": 3,
        "user_lockout_duration": 60,
        "user_lockout_counter_reset_duration": 30,
        "user_lockout_disable": False,
    }
    assert LockoutPolicy.from_mount_config(stored) == LockoutPolicy(3, 60, 30, False)
    zero = {k: 0 for k in stored} | {"user_lockout_disable": True}
    assert LockoutPolicy.from_mount_config(zero) == LockoutPolicy(disabled=True)  # 0: the default


async def test_the_lock_is_shared_by_every_worker_and_survives_a_reseal(h: Harness) -> None:
    """Each HTTP worker builds its own backend over the same mount storage: one counter for all."""
    await user(h, "alice")
    first = backend(h)
    second = UserpassBackend(
        BackendConfig(
            storage=first.storage, mount_path=MOUNT, mount_type="userpass", mount_accessor=accessor(h)
        ),
        h.core,
    )
    await second.initialize()

    async def attempt(b: UserpassBackend, password: str) -> int:
        req = Request(
            Operation.UPDATE,
            "login/alice",
            data={"password": password},
            connection=Connection(remote_addr="127.0.0.1"),
        )
        try:
            await b.handle_request(req)
        except Exception as err:
            return int(getattr(err, "status", 500))
        return 200

    codes = [await attempt(b, "wrong") for b in (first, second, first, second, first)]
    assert codes == [400] * 5
    assert await attempt(second, "s3cret") == 403
    await second.cleanup()

    await h.core.seal()
    await h.core.submit_unseal_key(h.keys[0])
    if h.core.expiration is not None:
        await h.core.expiration.stop()
    assert (await login(h, "alice", "s3cret")).status_code == 403


async def test_stored_lockout_prunes_idle_counters() -> None:
    storage = InmemStorage()
    clock = [1000.0]
    lock = StoredLoginLockout(
        storage, lambda: LockoutPolicy(threshold=2, duration=60, counter_reset=30), now=lambda: clock[0]
    )
    await lock.initialize()
    assert await lock.attempt("idle")
    await lock.failure("idle")
    for _ in range(2):
        assert await lock.attempt("locked", label="locked")
        await lock.failure("locked", label="locked")  # the second failure locks it
    assert not await lock.attempt("locked")
    assert await lock.is_locked("locked") and not await lock.is_locked("idle")
    assert await lock.locked() == ["locked"]
    clock[0] += 31
    assert await lock.prune() == 1  # "idle" goes; the lock stays
    assert await lock.locked() == ["locked"]
    clock[0] += 30
    assert await lock.locked() == []
    assert await lock.prune() == 1
    assert await storage.list("lockout/") == []
    # keys are HMACs: no name shows in storage keys
    await lock.attempt("someone")
    await lock.failure("someone")
    assert all("someone" not in k for k in await storage.list("lockout/"))
    # the background sweep runs from attempt() once per interval, and close() stops it
    lock.prune_interval = 10
    clock[0] += 31
    await lock.attempt("another")
    task = lock._prune_task
    assert task is not None
    assert await task == 1  # "someone" went; "another" was just counted
    await lock.close()


async def test_approle_lock_can_be_lifted_through_sys_locked_users(h: Harness) -> None:
    await h.core.enable_mount(MountEntry("approle/", "approle", table="auth"))
    r = await h.call("POST", "auth/approle/role/r1", json={})
    assert r.status_code == 204, r.text
    role_id = (await h.call("GET", "auth/approle/role/r1/role-id")).json()["data"]["role_id"]
    secret_id = (await h.call("POST", "auth/approle/role/r1/secret-id", json={})).json()["data"]["secret_id"]
    for _ in range(5):
        await h.call("POST", "auth/approle/login", json={"role_id": role_id, "secret_id": "bad"}, token="")
    body = {"role_id": role_id, "secret_id": secret_id}
    assert (await h.call("POST", "auth/approle/login", json=body, token="")).status_code == 403
    acc = h.core.auth_mounts.entries["approle/"].accessor
    assert (await h.call("POST", f"sys/locked-users/{acc}/unlock/{role_id}")).status_code == 204
    assert (await h.call("POST", "auth/approle/login", json=body, token="")).status_code == 200


def test_default_cost_is_vaults() -> None:
    """The shipped cost is Go's bcrypt.DefaultCost (read before the fixture lowered it)."""
    assert DEFAULT_COST == 10


async def test_stored_lockout_waits_for_a_slot_instead_of_refusing_good_logins() -> None:
    """Attempts in flight hold slots; an extra attempt waits, and goes ahead once one succeeds."""
    storage = InmemStorage()
    lock = StoredLoginLockout(storage, lambda: LockoutPolicy(threshold=2, duration=60, counter_reset=30))
    await lock.initialize()
    assert await lock.attempt("u") and await lock.attempt("u")  # both slots taken
    waiting = asyncio.create_task(lock.attempt("u"))
    await asyncio.sleep(0.1)
    assert not waiting.done()
    await lock.success("u")  # one of them was right: everything starts over
    assert await asyncio.wait_for(waiting, 2)
    # two failures in flight lock the alias, and an attempt waiting meanwhile is refused
    await lock.success("u")
    assert await lock.attempt("u") and await lock.attempt("u")
    waiting = asyncio.create_task(lock.attempt("u"))
    await asyncio.sleep(0.1)
    await lock.failure("u")
    await lock.failure("u")
    assert await asyncio.wait_for(waiting, 2) is False
    assert await lock.is_locked("u")
    # a slot whose request died is given back after slot_timeout
    other = StoredLoginLockout(storage, lambda: LockoutPolicy(threshold=1, duration=60, counter_reset=30))
    other.slot_timeout, other.wait_limit = 0.2, 2.0
    assert await other.attempt("v")
    assert await other.attempt("v")  # waited out the abandoned slot
