"""Entity aliases: CRUD, uniqueness per (mount accessor, name), one alias per mount per entity,
moving an alias between entities, lookup, and entity merge (sudo, conflicts)."""

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
        await harness.core.enable_mount(MountEntry("other/", "approle", table="auth"))
        yield harness


async def ok(
    h: Harness, method: str, path: str, body: Any = None, token: str | None = None
) -> dict[str, Any]:
    r = await h.call(method, "identity/" + path, json=body, token=token)
    assert r.status_code in (200, 204), (method, path, r.status_code, r.text)
    return {} if r.status_code == 204 else dict(r.json())


async def accessor(h: Harness, path: str = "approle/") -> str:
    r = await h.call("GET", "sys/auth")
    return str(r.json()["data"][path]["accessor"])


async def entity(h: Harness, name: str) -> str:
    return str((await ok(h, "POST", "entity", {"name": name}))["data"]["id"])


async def alias(h: Harness, name: str, mount: str, canonical_id: str = "", **extra: Any) -> dict[str, Any]:
    body = {"name": name, "mount_accessor": mount, **extra}
    if canonical_id:
        body["canonical_id"] = canonical_id
    return dict((await ok(h, "POST", "entity-alias", body))["data"])


async def test_create_read_list_delete(h: Harness) -> None:
    acc = await accessor(h)
    eid = await entity(h, "alice")
    created = await alias(h, "alice-login", acc, eid, custom_metadata={"k": "v"})
    assert created["canonical_id"] == eid
    data = (await ok(h, "GET", f"entity-alias/id/{created['id']}"))["data"]
    assert data["name"] == "alice-login" and data["mount_accessor"] == acc
    assert data["mount_type"] == "approle" and data["mount_path"] == "auth/approle/"
    assert data["custom_metadata"] == {"k": "v"} and data["metadata"] is None
    assert data["namespace_id"] == "root" and data["local"] is False
    listed = (await ok(h, "LIST", "entity-alias/id"))["data"]
    assert listed["keys"] == [created["id"]]
    assert listed["key_info"][created["id"]]["canonical_id"] == eid
    entity_data = (await ok(h, "GET", f"entity/id/{eid}"))["data"]
    assert [a["id"] for a in entity_data["aliases"]] == [created["id"]]
    assert (await h.call("DELETE", f"identity/entity-alias/id/{created['id']}")).status_code == 204
    assert (await h.call("GET", f"identity/entity-alias/id/{created['id']}")).status_code == 404
    assert (await ok(h, "GET", f"entity/id/{eid}"))["data"]["aliases"] == []
    assert (await h.call("LIST", "identity/entity-alias/id")).status_code == 404


async def test_alias_without_entity_creates_one(h: Harness) -> None:
    created = await alias(h, "bob", await accessor(h))
    data = (await ok(h, "GET", f"entity/id/{created['canonical_id']}"))["data"]
    assert data["name"].startswith("entity_") and data["aliases"][0]["name"] == "bob"


async def test_invalid_accessor_and_missing_fields(h: Harness) -> None:
    r = await h.call("POST", "identity/entity-alias", json={"name": "x", "mount_accessor": "nope"})
    assert r.status_code == 400 and "invalid mount accessor" in r.text
    r = await h.call("POST", "identity/entity-alias", json={"name": "x"})
    assert r.status_code == 400
    eid = await entity(h, "e")
    created = await alias(h, "x", await accessor(h), eid)
    r = await h.call(
        "POST", f"identity/entity-alias/id/{created['id']}", json={"mount_accessor": "not a valid accessor"}
    )
    assert r.status_code == 400 and "invalid mount accessor" in r.text


async def test_alias_is_unique_per_mount_and_name(h: Harness) -> None:
    acc, other = await accessor(h), await accessor(h, "other/")
    a, b = await entity(h, "a"), await entity(h, "b")
    first = await alias(h, "shared", acc, a)
    # the same name on another mount is another alias
    second = await alias(h, "shared", other, b)
    assert second["id"] != first["id"]
    # renaming b's alias onto (acc, "shared") would make two identities for one login
    third = await alias(h, "b-login", acc, b)
    r = await h.call("POST", f"identity/entity-alias/id/{third['id']}", json={"name": "SHARED"})
    assert r.status_code == 400 and "already exists" in r.text


async def test_entity_holds_one_alias_per_mount(h: Harness) -> None:
    acc = await accessor(h)
    eid = await entity(h, "a")
    await alias(h, "one", acc, eid)
    r = await h.call(
        "POST", "identity/entity-alias", json={"name": "two", "mount_accessor": acc, "canonical_id": eid}
    )
    assert r.status_code == 400 and "Alias already exists for requested entity and mount accessor" in r.text


async def test_alias_cannot_move_onto_an_entity_with_an_alias_on_that_mount(h: Harness) -> None:
    """CVE-2021-41802: moving an alias must not merge two users' identities on one mount."""
    acc = await accessor(h)
    victim, attacker = await entity(h, "victim"), await entity(h, "attacker")
    await alias(h, "victim-login", acc, victim)
    mine = await alias(h, "attacker-login", acc, attacker)
    r = await h.call("POST", f"identity/entity-alias/id/{mine['id']}", json={"canonical_id": victim})
    assert r.status_code == 400
    data = (await ok(h, "GET", f"entity/id/{victim}"))["data"]
    assert [a["name"] for a in data["aliases"]] == ["victim-login"]


async def test_alias_moves_between_entities(h: Harness) -> None:
    acc = await accessor(h)
    a, b = await entity(h, "a"), await entity(h, "b")
    moved = await alias(h, "login", acc, a)
    body = await ok(h, "POST", f"entity-alias/id/{moved['id']}", {"canonical_id": b})
    assert body["data"] == {"id": moved["id"], "canonical_id": b}
    assert (await ok(h, "GET", f"entity/id/{a}"))["data"]["aliases"] == []
    lookup = await ok(h, "POST", "lookup/entity", {"alias_name": "login", "alias_mount_accessor": acc})
    assert lookup["data"]["id"] == b
    # the same name and accessor again is idempotent
    r = await h.call("POST", f"identity/entity-alias/id/{moved['id']}", json={"name": "login"})
    assert r.status_code == 204


async def test_lookup_entity_criteria(h: Harness) -> None:
    acc = await accessor(h)
    eid = await entity(h, "alice")
    created = await alias(h, "alice-login", acc, eid)
    for body in (
        {"id": eid},
        {"name": "alice"},
        {"alias_id": created["id"]},
        {"alias_name": "alice-login", "alias_mount_accessor": acc},
    ):
        data = (await ok(h, "POST", "lookup/entity", body))["data"]
        assert data["id"] == eid and data["aliases"][0]["name"] == "alice-login"
    assert (await h.call("POST", "identity/lookup/entity", json={"id": "missing"})).status_code == 204
    for bad in ({}, {"id": eid, "name": "alice"}, {"alias_name": "alice-login"}):
        assert (await h.call("POST", "identity/lookup/entity", json=bad)).status_code == 400


async def test_merge_moves_aliases_groups_and_deletes_sources(h: Harness) -> None:
    acc, other = await accessor(h), await accessor(h, "other/")
    to, src = await entity(h, "to"), await entity(h, "src")
    await alias(h, "to-login", acc, to)
    moved = await alias(h, "src-login", other, src)
    group = (await ok(h, "POST", "group", {"name": "g", "member_entity_ids": [src]}))["data"]["id"]
    r = await h.call("POST", "identity/entity/merge", json={"from_entity_ids": [src], "to_entity_id": to})
    assert r.status_code == 204, r.text
    data = (await ok(h, "GET", f"entity/id/{to}"))["data"]
    assert {a["name"] for a in data["aliases"]} == {"to-login", "src-login"}
    assert data["merged_entity_ids"] == [src] and data["direct_group_ids"] == [group]
    merged_alias = next(a for a in data["aliases"] if a["id"] == moved["id"])
    assert merged_alias["canonical_id"] == to and merged_alias["merged_from_canonical_ids"] == [src]
    assert (await h.call("GET", f"identity/entity/id/{src}")).status_code == 404
    lookup = await ok(h, "POST", "lookup/entity", {"alias_id": moved["id"]})
    assert lookup["data"]["id"] == to
    assert (await ok(h, "GET", f"group/id/{group}"))["data"]["member_entity_ids"] == [to]


async def test_merge_conflicting_aliases(h: Harness) -> None:
    acc = await accessor(h)
    to, src = await entity(h, "to"), await entity(h, "src")
    keep_to = await alias(h, "to-login", acc, to)
    drop = await alias(h, "src-login", acc, src)
    body = {"from_entity_ids": src, "to_entity_id": to}
    r = await h.call("POST", "identity/entity/merge", json=body)
    assert r.status_code == 400 and "same mount accessor" in r.text
    r = await h.call(
        "POST", "identity/entity/merge", json={**body, "conflicting_alias_ids_to_keep": "unrelated"}
    )
    assert r.status_code == 400 and "conflicting mount accessors" in r.text
    await ok(h, "POST", "entity/merge", {**body, "conflicting_alias_ids_to_keep": [keep_to["id"]]})
    data = (await ok(h, "GET", f"entity/id/{to}"))["data"]
    assert [a["id"] for a in data["aliases"]] == [keep_to["id"]]
    assert (await h.call("GET", f"identity/entity-alias/id/{drop['id']}")).status_code == 404
    # the dropped alias's name is free again
    assert (await alias(h, "src-login", acc))["id"] != drop["id"]


async def test_merge_validation(h: Harness) -> None:
    a = await entity(h, "a")
    cases = [
        ({"from_entity_ids": [a]}, "missing entity id to merge to"),
        ({"to_entity_id": a}, "missing entity ids to merge from"),
        ({"to_entity_id": a, "from_entity_ids": [a]}, "should not be present"),
        ({"to_entity_id": a, "from_entity_ids": ["missing"]}, "entity id to merge from is invalid"),
        ({"to_entity_id": "missing", "from_entity_ids": [a]}, "entity id to merge to is invalid"),
    ]
    for body, message in cases:
        r = await h.call("POST", "identity/entity/merge", json=body)
        assert r.status_code == 400 and message in r.text, (body, r.text)


async def test_merge_needs_sudo(h: Harness) -> None:
    """A writer on identity/* without sudo cannot pull another entity into its own."""
    a, b = await entity(h, "a"), await entity(h, "b")
    await h.core.policies.put("idw", 'path "identity/*" { capabilities = ["create", "update", "read"] }')
    token = await h.core.tokens.create(TokenEntry(id="", policies=["idw"], entity_id=a))
    r = await h.call(
        "POST", "identity/entity/merge", json={"from_entity_ids": [b], "to_entity_id": a}, token=token.id
    )
    assert r.status_code == 403
    assert (await ok(h, "GET", f"entity/id/{b}"))["data"]["id"] == b
    # the same writer may still not attach root to itself: 400
    r = await h.call("POST", f"identity/entity/id/{a}", json={"policies": ["RoOt"]}, token=token.id)
    assert r.status_code == 400
