"""ACL templates resolved from the identity store: entity id/name/metadata, per-mount aliases,
groups by id and by name; values that would widen a rule resolve to nothing (GHSA-59w7-v8rr-pr4p),
and one mount's alias never stands in for another's (CVE-2021-43998, CVE-2022-40186)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from strongroom.core.mounts import MountEntry
from strongroom.core.tokens import TokenEntry
from strongroom.testing import Harness, running_core


@pytest.fixture
async def h() -> AsyncIterator[Harness]:
    async with running_core() as harness:
        if harness.core.expiration is not None:
            await harness.core.expiration.stop()
        await harness.core.enable_mount(MountEntry("one/", "approle", table="auth"))
        await harness.core.enable_mount(MountEntry("two/", "approle", table="auth"))
        await harness.core.enable_mount(MountEntry("kv/", "kv", options={"version": "1"}))
        yield harness


async def ok(h: Harness, method: str, path: str, body: Any = None) -> dict[str, Any]:
    r = await h.call(method, "identity/" + path, json=body)
    assert r.status_code in (200, 204), (method, path, r.status_code, r.text)
    return {} if r.status_code == 204 else dict(r.json())


async def accessors(h: Harness) -> tuple[str, str]:
    data = (await h.call("GET", "sys/auth")).json()["data"]
    return data["one/"]["accessor"], data["two/"]["accessor"]


async def can_read(h: Harness, token: str, path: str) -> bool:
    await h.call("POST", path, json={"v": "1"})  # as root
    r = await h.call("GET", path, token=token)
    assert r.status_code in (200, 403), r.text
    return r.status_code == 200


async def templated_token(h: Harness, entity_id: str, *paths: str) -> str:
    text = "\n".join(f'path "{p}" {{ capabilities = ["read"] }}' for p in paths)
    await h.core.policies.put("tpl", text)
    entry = await h.core.tokens.create(TokenEntry(id="", policies=["tpl"], entity_id=entity_id))
    return entry.id


async def test_entity_id_name_and_metadata(h: Harness) -> None:
    eid = (await ok(h, "POST", "entity", {"name": "alice", "metadata": {"team": "blue"}}))["data"]["id"]
    token = await templated_token(
        h,
        eid,
        "kv/by-id/{{identity.entity.id}}/*",
        "kv/by-name/{{identity.entity.name}}/*",
        "kv/team/{{identity.entity.metadata.team}}/*",
    )
    assert await can_read(h, token, f"kv/by-id/{eid}/x")
    assert await can_read(h, token, "kv/by-name/alice/x")
    assert not await can_read(h, token, "kv/by-name/bob/x")
    assert await can_read(h, token, "kv/team/blue/x")
    assert not await can_read(h, token, "kv/team/red/x")
    # a metadata change applies to the same token at once
    await ok(h, "POST", f"entity/id/{eid}", {"metadata": {"team": "red"}})
    assert await can_read(h, token, "kv/team/red/x")
    assert not await can_read(h, token, "kv/team/blue/x")


@pytest.mark.parametrize("value", ["*", "a/b", "+", ""])
async def test_widening_values_resolve_to_nothing(h: Harness, value: str) -> None:
    eid = (await ok(h, "POST", "entity", {"name": "alice", "metadata": {"team": value}}))["data"]["id"]
    token = await templated_token(h, eid, "kv/team/{{identity.entity.metadata.team}}/*")
    assert not await can_read(h, token, "kv/team/other/x")
    assert not await can_read(h, token, "kv/team/a/b/x")


async def test_token_without_entity_skips_templated_rules(h: Harness) -> None:
    await h.core.policies.put("tpl", 'path "kv/{{identity.entity.name}}/*" { capabilities = ["read"] }')
    entry = await h.core.tokens.create(TokenEntry(id="", policies=["tpl"]))
    assert not await can_read(h, entry.id, "kv/x/y")


async def test_alias_templates_use_only_that_mounts_alias(h: Harness) -> None:
    one, two = await accessors(h)
    eid = (await ok(h, "POST", "entity", {"name": "alice"}))["data"]["id"]
    await ok(h, "POST", "entity-alias", {"name": "same", "mount_accessor": one, "canonical_id": eid})
    await ok(h, "POST", "entity-alias", {"name": "same", "mount_accessor": two, "canonical_id": eid})
    identity = h.core.identity
    # two logins with the same alias name on two mounts: each updates only its own alias
    await identity.create_or_fetch_entity("same", one, "approle", {"site": "one-site"})
    await identity.create_or_fetch_entity("same", two, "approle", {"site": "two-site"})
    token = await templated_token(
        h,
        eid,
        f"kv/one/{{{{identity.entity.aliases.{one}.metadata.site}}}}/*",
        f"kv/two/{{{{identity.entity.aliases.{two}.metadata.site}}}}/*",
        f"kv/name/{{{{identity.entity.aliases.{one}.name}}}}/*",
    )
    assert await can_read(h, token, "kv/one/one-site/x")
    assert not await can_read(h, token, "kv/one/two-site/x")
    assert await can_read(h, token, "kv/two/two-site/x")
    assert not await can_read(h, token, "kv/two/one-site/x")
    assert await can_read(h, token, "kv/name/same/x")
    data = (await ok(h, "GET", f"entity/id/{eid}"))["data"]
    assert {a["mount_accessor"]: a["metadata"] for a in data["aliases"]} == {
        one: {"site": "one-site"},
        two: {"site": "two-site"},
    }


async def test_alias_on_another_mount_does_not_resolve(h: Harness) -> None:
    one, two = await accessors(h)
    eid = (await ok(h, "POST", "entity", {"name": "alice"}))["data"]["id"]
    await ok(h, "POST", "entity-alias", {"name": "only-two", "mount_accessor": two, "canonical_id": eid})
    token = await templated_token(h, eid, f"kv/a/{{{{identity.entity.aliases.{one}.name}}}}/*")
    assert not await can_read(h, token, "kv/a/only-two/x")


async def test_group_templates(h: Harness) -> None:
    eid = (await ok(h, "POST", "entity", {"name": "alice"}))["data"]["id"]
    gid = (await ok(h, "POST", "group", {"name": "devs", "member_entity_ids": [eid]}))["data"]["id"]
    parent = (await ok(h, "POST", "group", {"name": "eng", "member_group_ids": [gid]}))["data"]["id"]
    token = await templated_token(
        h,
        eid,
        f"kv/g/{{{{identity.groups.ids.{gid}.name}}}}/*",
        "kv/n/{{identity.groups.names.eng.id}}/*",
    )
    assert await can_read(h, token, "kv/g/devs/x")
    assert await can_read(h, token, f"kv/n/{parent}/x")
    assert not await can_read(h, token, "kv/g/eng/x")
