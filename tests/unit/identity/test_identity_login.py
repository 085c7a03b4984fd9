"""Logins through an auth method (approle over HTTP) create or reuse an entity and its alias,
and the minted token carries the entity and its identity policies."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from strongroom.core.mounts import MountEntry
from strongroom.testing import Harness, running_core


@pytest.fixture
async def h() -> AsyncIterator[Harness]:
    async with running_core() as harness:
        if harness.core.expiration is not None:
            await harness.core.expiration.stop()
        await harness.core.enable_mount(MountEntry("approle/", "approle", table="auth"))
        await harness.core.policies.put("base", 'path "kv/base/*" { capabilities = ["read"] }')
        yield harness


async def ok(
    h: Harness, method: str, path: str, body: Any = None, token: str | None = None
) -> dict[str, Any]:
    r = await h.call(method, path, json=body, token=token)
    assert r.status_code in (200, 204), (method, path, r.status_code, r.text)
    return {} if r.status_code == 204 else dict(r.json())


async def role(h: Harness, name: str = "web") -> str:
    await ok(h, "POST", f"auth/approle/role/{name}", {"token_policies": ["base"]})
    return str((await ok(h, "GET", f"auth/approle/role/{name}/role-id"))["data"]["role_id"])


async def login(h: Harness, name: str, role_id: str) -> Any:
    secret_id = (await ok(h, "POST", f"auth/approle/role/{name}/secret-id"))["data"]["secret_id"]
    return await h.call("POST", "auth/approle/login", json={"role_id": role_id, "secret_id": secret_id})


async def accessor(h: Harness) -> str:
    return str((await ok(h, "GET", "sys/auth"))["data"]["approle/"]["accessor"])


async def test_login_creates_entity_and_alias(h: Harness) -> None:
    role_id = await role(h)
    r = await login(h, "web", role_id)
    assert r.status_code == 200, r.text
    auth = r.json()["auth"]
    entity_id = auth["entity_id"]
    assert entity_id
    lookup = (await ok(h, "GET", "auth/token/lookup-self", token=auth["client_token"]))["data"]
    assert lookup["entity_id"] == entity_id
    data = (await ok(h, "GET", f"identity/entity/id/{entity_id}"))["data"]
    assert data["name"].startswith("entity_")
    [alias] = data["aliases"]
    assert alias["name"] == role_id and alias["mount_accessor"] == await accessor(h)
    assert alias["mount_type"] == "approle" and alias["metadata"] == {"role_name": "web"}
    # the same alias logs in to the same entity
    again = (await login(h, "web", role_id)).json()["auth"]
    assert again["entity_id"] == entity_id
    assert (await ok(h, "LIST", "identity/entity/id"))["data"]["keys"] == [entity_id]


async def test_login_uses_a_pre_created_alias_and_its_policies(h: Harness) -> None:
    role_id = await role(h)
    eid = (await ok(h, "POST", "identity/entity", {"name": "web-svc", "policies": ["extra"]}))["data"]["id"]
    await ok(
        h,
        "POST",
        "identity/entity-alias",
        {"name": role_id, "mount_accessor": await accessor(h), "canonical_id": eid},
    )
    auth = (await login(h, "web", role_id)).json()["auth"]
    assert auth["entity_id"] == eid
    assert auth["identity_policies"] == ["extra"]
    assert auth["token_policies"] == ["base", "default"]
    assert sorted(auth["policies"]) == ["base", "default", "extra"]


async def test_disabled_entity_cannot_log_in(h: Harness) -> None:
    role_id = await role(h)
    eid = (await login(h, "web", role_id)).json()["auth"]["entity_id"]
    await ok(h, "POST", f"identity/entity/id/{eid}", {"disabled": True})
    r = await login(h, "web", role_id)
    assert r.status_code == 403


async def test_different_roles_get_different_entities(h: Harness) -> None:
    a = (await login(h, "a", await role(h, "a"))).json()["auth"]["entity_id"]
    b = (await login(h, "b", await role(h, "b"))).json()["auth"]["entity_id"]
    assert a != b


async def test_token_role_entity_alias_creates_entity_on_the_token_mount(h: Harness) -> None:
    await ok(h, "POST", "auth/token/roles/svc", {"allowed_entity_aliases": ["svc-*"], "orphan": True})
    auth = (await ok(h, "POST", "auth/token/create/svc", {"entity_alias": "svc-a"}))["auth"]
    entity_id = auth["entity_id"]
    assert entity_id
    token_accessor = (await ok(h, "GET", "sys/auth"))["data"]["token/"]["accessor"]
    found = await ok(
        h, "POST", "identity/lookup/entity", {"alias_name": "svc-a", "alias_mount_accessor": token_accessor}
    )
    assert found["data"]["id"] == entity_id
    again = (await ok(h, "POST", "auth/token/create/svc", {"entity_alias": "svc-a"}))["auth"]
    assert again["entity_id"] == entity_id
