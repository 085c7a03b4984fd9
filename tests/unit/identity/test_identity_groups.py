"""Groups: CRUD with hvac's field shapes, member groups without cycles, inherited groups, group
aliases and external groups, and group / entity policies reaching a token's ACL on every request."""

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
        await harness.core.enable_mount(MountEntry("approle/", "approle", table="auth"))
        await harness.core.enable_mount(MountEntry("kv/", "kv", options={"version": "1"}))
        yield harness


async def ok(h: Harness, method: str, path: str, body: Any = None) -> dict[str, Any]:
    r = await h.call(method, "identity/" + path, json=body)
    assert r.status_code in (200, 204), (method, path, r.status_code, r.text)
    return {} if r.status_code == 204 else dict(r.json())


async def accessor(h: Harness) -> str:
    return str((await h.call("GET", "sys/auth")).json()["data"]["approle/"]["accessor"])


async def entity(h: Harness, name: str, **body: Any) -> str:
    return str((await ok(h, "POST", "entity", {"name": name, **body}))["data"]["id"])


async def group(h: Harness, name: str, **body: Any) -> str:
    return str((await ok(h, "POST", "group", {"name": name, **body}))["data"]["id"])


async def test_group_read_fields(h: Harness) -> None:
    eid = await entity(h, "e")
    child = await group(h, "child")
    gid = await group(
        h, "g", policies=["p1"], metadata={"k": "v"}, member_entity_ids=[eid], member_group_ids=[child]
    )
    data = (await ok(h, "GET", f"group/id/{gid}"))["data"]
    assert data["name"] == "g" and data["type"] == "internal" and data["namespace_id"] == "root"
    assert data["policies"] == ["p1"] and data["metadata"] == {"k": "v"}
    assert data["member_entity_ids"] == [eid] and data["member_group_ids"] == [child]
    assert data["parent_group_ids"] is None and data["alias"] == {}
    assert isinstance(data["modify_index"], int)
    child_data = (await ok(h, "GET", "group/name/child"))["data"]
    assert child_data["parent_group_ids"] == [gid] and child_data["member_group_ids"] is None
    assert child_data["member_entity_ids"] is None and child_data["policies"] is None


async def test_external_group_has_null_members(h: Harness) -> None:
    gid = await group(h, "ext", type="external")
    data = (await ok(h, "GET", f"group/id/{gid}"))["data"]
    assert data["type"] == "external"
    assert data["member_entity_ids"] is None and data["member_group_ids"] is None
    r = await h.call("POST", f"identity/group/id/{gid}", json={"member_entity_ids": [await entity(h, "e")]})
    assert r.status_code == 400 and "external groups" in r.text


async def test_update_rules(h: Harness) -> None:
    gid = await group(h, "g")
    r = await h.call("POST", f"identity/group/id/{gid}", json={"type": "external"})
    assert r.status_code == 400 and "group type cannot be changed" in r.text
    r = await h.call("POST", "identity/group", json={"name": "h", "type": "cosmic"})
    assert r.status_code == 400 and "invalid group type" in r.text
    await group(h, "other")
    r = await h.call("POST", f"identity/group/id/{gid}", json={"name": "other"})
    assert r.status_code == 400 and "group name is already in use" in r.text
    r = await h.call("POST", "identity/group/id/missing", json={"name": "x"})
    assert r.status_code == 400
    r = await h.call("POST", "identity/group", json={"name": "x", "member_entity_ids": ["missing"]})
    assert r.status_code == 400
    # by-name update answers 204 and keeps the id
    r = await h.call("POST", "identity/group/name/g", json={"metadata": {"a": "b"}})
    assert r.status_code == 204
    assert (await ok(h, "GET", "group/name/g"))["data"]["id"] == gid


async def test_member_groups_refuse_cycles(h: Harness) -> None:
    a = await group(h, "a")
    b = await group(h, "b", member_group_ids=[a])
    c = await group(h, "c", member_group_ids=[b])
    r = await h.call("POST", f"identity/group/id/{a}", json={"member_group_ids": [c]})
    assert r.status_code == 400 and "cyclic relationship" in r.text
    r = await h.call("POST", f"identity/group/id/{a}", json={"member_group_ids": [a]})
    assert r.status_code == 400
    r = await h.call("POST", f"identity/group/id/{a}", json={"member_group_ids": ["missing"]})
    assert r.status_code == 400
    # dropping a member updates both sides
    await ok(h, "POST", f"group/id/{b}", {"member_group_ids": []})
    assert (await ok(h, "GET", f"group/id/{a}"))["data"]["parent_group_ids"] is None


async def test_entity_sees_direct_and_inherited_groups(h: Harness) -> None:
    eid = await entity(h, "e")
    direct = await group(h, "direct", member_entity_ids=[eid])
    parent = await group(h, "parent", member_group_ids=[direct])
    grand = await group(h, "grand", member_group_ids=[parent])
    data = (await ok(h, "GET", f"entity/id/{eid}"))["data"]
    assert data["direct_group_ids"] == [direct]
    assert sorted(data["inherited_group_ids"]) == sorted([parent, grand])
    assert data["group_ids"][0] == direct and len(data["group_ids"]) == 3


async def test_deletes_unlink_everything(h: Harness) -> None:
    eid = await entity(h, "e")
    child = await group(h, "child", member_entity_ids=[eid])
    parent = await group(h, "parent", member_group_ids=[child])
    await ok(h, "DELETE", f"group/id/{parent}")
    assert (await ok(h, "GET", f"group/id/{child}"))["data"]["parent_group_ids"] is None
    await ok(h, "DELETE", f"entity/id/{eid}")
    assert (await ok(h, "GET", f"group/id/{child}"))["data"]["member_entity_ids"] is None
    await ok(h, "DELETE", "group/name/child")
    assert (await h.call("LIST", "identity/group/id")).status_code == 404


async def test_lists(h: Harness) -> None:
    gid = await group(h, "g")
    listed = (await ok(h, "LIST", "group/id"))["data"]
    assert listed["keys"] == [gid] and listed["key_info"][gid]["name"] == "g"
    assert (await ok(h, "LIST", "group/name"))["data"]["keys"] == ["g"]


async def test_group_aliases(h: Harness) -> None:
    acc = await accessor(h)
    ext = await group(h, "ext", type="external")
    created = (
        await ok(h, "POST", "group-alias", {"name": "team", "mount_accessor": acc, "canonical_id": ext})
    )["data"]
    assert created["canonical_id"] == ext
    data = (await ok(h, "GET", f"group-alias/id/{created['id']}"))["data"]
    assert data["name"] == "team" and data["mount_type"] == "approle"
    assert (await ok(h, "GET", f"group/id/{ext}"))["data"]["alias"]["name"] == "team"
    assert (await ok(h, "LIST", "group-alias/id"))["data"]["keys"] == [created["id"]]
    # unchanged update is 204; a clash or an internal target is refused
    r = await h.call(
        "POST", "identity/group-alias", json={"id": created["id"], "name": "team", "mount_accessor": acc}
    )
    assert r.status_code == 204
    r = await h.call("POST", "identity/group-alias", json={"name": "TEAM", "mount_accessor": acc})
    assert r.status_code == 400 and "already in use" in r.text
    internal = await group(h, "int")
    r = await h.call(
        "POST", "identity/group-alias", json={"name": "x", "mount_accessor": acc, "canonical_id": internal}
    )
    assert r.status_code == 400 and "internal group" in r.text
    # an alias for no group creates its external group
    orphan = (await ok(h, "POST", "group-alias", {"name": "new-team", "mount_accessor": acc}))["data"]
    made = (await ok(h, "GET", f"group/id/{orphan['canonical_id']}"))["data"]
    assert made["type"] == "external" and made["name"].startswith("group_")
    for body in (
        {"id": ext},
        {"name": "ext"},
        {"alias_id": created["id"]},
        {"alias_name": "team", "alias_mount_accessor": acc},
    ):
        found = (await ok(h, "POST", "lookup/group", body))["data"]
        assert found["id"] == ext and found["alias"]["name"] == "team"
    assert (await h.call("POST", "identity/lookup/group", json={"id": "missing"})).status_code == 204
    await ok(h, "DELETE", f"group-alias/id/{created['id']}")
    assert (await ok(h, "GET", f"group/id/{ext}"))["data"]["alias"] == {}
    # deleting the group deletes its alias
    await ok(h, "DELETE", f"group/id/{orphan['canonical_id']}")
    assert (await h.call("GET", f"identity/group-alias/id/{orphan['id']}")).status_code == 404


async def test_external_group_membership_follows_logins(h: Harness) -> None:
    acc = await accessor(h)
    ext = await group(h, "ext", type="external", policies=["ext-policy"])
    await ok(h, "POST", "group-alias", {"name": "devs", "mount_accessor": acc, "canonical_id": ext})
    identity = h.core.identity
    login = await identity.create_or_fetch_entity("alice", acc, "approle", {}, ["devs", "unknown"])
    assert (await identity.policies_for(login["id"]))[0] == ["ext-policy"]
    assert (await ok(h, "GET", f"group/id/{ext}"))["data"]["member_entity_ids"] == [login["id"]]
    again = await identity.create_or_fetch_entity("alice", acc, "approle", {}, [])
    assert again["id"] == login["id"]
    assert (await identity.policies_for(login["id"]))[0] == []


# -- policies reach the ACL on every request ----------------------------------------------------


async def token_for(h: Harness, entity_id: str, policies: list[str] | None = None) -> str:
    entry = await h.core.tokens.create(
        TokenEntry(id="", policies=policies or ["default"], entity_id=entity_id)
    )
    return entry.id


async def status(h: Harness, token: str, path: str) -> int:
    return (await h.call("GET", path, token=token)).status_code


async def test_group_and_inherited_policies_apply_without_a_new_token(h: Harness) -> None:
    await h.core.policies.put("gp", 'path "kv/group/*" { capabilities = ["read"] }')
    await h.core.policies.put("pp", 'path "kv/parent/*" { capabilities = ["read"] }')
    await h.core.policies.put("ep", 'path "kv/entity/*" { capabilities = ["read"] }')
    for path in ("group", "parent", "entity"):
        await h.call("POST", f"kv/{path}/x", json={"v": "1"})
    eid = await entity(h, "e")
    token = await token_for(h, eid)
    assert await status(h, token, "kv/group/x") == 403
    gid = await group(h, "g", policies=["gp"], member_entity_ids=[eid])
    assert await status(h, token, "kv/group/x") == 200
    assert await status(h, token, "kv/parent/x") == 403
    await group(h, "parent", policies=["pp"], member_group_ids=[gid])
    assert await status(h, token, "kv/parent/x") == 200
    await ok(h, "POST", f"entity/id/{eid}", {"policies": ["ep"]})
    assert await status(h, token, "kv/entity/x") == 200
    # and they go away just as fast
    await ok(h, "POST", f"group/id/{gid}", {"member_entity_ids": []})
    assert await status(h, token, "kv/group/x") == 403
    assert await status(h, token, "kv/parent/x") == 403
    lookup = (await h.call("GET", "auth/token/lookup-self", token=token)).json()["data"]
    assert lookup["entity_id"] == eid and lookup["identity_policies"] == ["ep"]


async def test_disabled_entity_token_is_refused_and_deleted_entity_is_harmless(h: Harness) -> None:
    await h.core.policies.put("ep", 'path "kv/entity/*" { capabilities = ["read"] }')
    await h.call("POST", "kv/entity/x", json={"v": "1"})
    await h.call("POST", "kv/own/x", json={"v": "1"})
    await h.core.policies.put("own", 'path "kv/own/*" { capabilities = ["read"] }')
    eid = await entity(h, "e", policies=["ep"])
    token = await token_for(h, eid, ["own"])
    assert await status(h, token, "kv/entity/x") == 200
    await ok(h, "POST", f"entity/id/{eid}", {"disabled": True})
    assert await status(h, token, "kv/own/x") == 403
    await ok(h, "POST", f"entity/id/{eid}", {"disabled": False})
    assert await status(h, token, "kv/own/x") == 200
    await ok(h, "DELETE", f"entity/id/{eid}")
    assert await status(h, token, "kv/own/x") == 200
    assert await status(h, token, "kv/entity/x") == 403
