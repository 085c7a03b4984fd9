"""identity/entity over HTTP: create/update/read/delete by id and name, lists, batch delete,
the response fields hvac reads, and the refusal of ``root`` in any spelling (CVE-2025-5999)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from strongroom.testing import Harness, running_core


@pytest.fixture
async def h() -> AsyncIterator[Harness]:
    async with running_core() as harness:
        if harness.core.expiration is not None:
            await harness.core.expiration.stop()  # no expiry timer left behind by the fixture
        yield harness


async def ok(h: Harness, method: str, path: str, body: Any = None) -> dict[str, Any]:
    r = await h.call(method, "identity/" + path, json=body)
    assert r.status_code in (200, 204), (method, path, r.status_code, r.text)
    return {} if r.status_code == 204 else dict(r.json())


async def create(h: Harness, **body: Any) -> str:
    return str((await ok(h, "POST", "entity", body))["data"]["id"])


async def test_create_returns_id_name_aliases(h: Harness) -> None:
    body = await ok(
        h, "POST", "entity", {"name": "alice", "metadata": {"team": "blue"}, "policies": "p1, p2"}
    )
    assert set(body["data"]) == {"id", "name", "aliases"}
    assert body["data"]["name"] == "alice" and body["data"]["aliases"] is None


async def test_read_has_every_field_vault_returns(h: Harness) -> None:
    entity_id = await create(h, name="alice", metadata={"team": "blue"}, policies=["p2", "p1", "p1"])
    data = (await ok(h, "GET", f"entity/id/{entity_id}"))["data"]
    assert data["id"] == entity_id and data["name"] == "alice"
    assert data["metadata"] == {"team": "blue"}
    assert data["policies"] == ["p1", "p2"]
    assert data["disabled"] is False
    assert data["namespace_id"] == "root"
    assert data["aliases"] == []
    assert data["group_ids"] == data["direct_group_ids"] == data["inherited_group_ids"] == []
    assert data["merged_entity_ids"] is None
    assert data["creation_time"].endswith("Z") and data["last_update_time"].endswith("Z")


async def test_unnamed_entity_gets_a_generated_name(h: Harness) -> None:
    body = await ok(h, "POST", "entity", {"metadata": {"a": "b"}})
    assert body["data"]["name"].startswith("entity_")


async def test_update_by_id_answers_204_and_keeps_unsent_fields(h: Harness) -> None:
    entity_id = await create(h, name="alice", metadata={"team": "blue"}, policies=["p1"])
    r = await h.call("POST", f"identity/entity/id/{entity_id}", json={"disabled": True})
    assert r.status_code == 204
    data = (await ok(h, "GET", f"entity/id/{entity_id}"))["data"]
    assert data["disabled"] is True and data["policies"] == ["p1"] and data["metadata"] == {"team": "blue"}


async def test_post_entity_with_existing_name_updates_it(h: Harness) -> None:
    entity_id = await create(h, name="alice")
    r = await h.call("POST", "identity/entity", json={"name": "alice", "metadata": {"k": "v"}})
    assert r.status_code == 204
    data = (await ok(h, "GET", "entity/name/alice"))["data"]
    assert data["id"] == entity_id and data["metadata"] == {"k": "v"}


async def test_names_are_case_insensitive(h: Harness) -> None:
    entity_id = await create(h, name="Alice")
    data = (await ok(h, "GET", "entity/name/alice"))["data"]
    assert data["id"] == entity_id and data["name"] == "Alice"


async def test_unknown_id_and_name_clash_are_refused(h: Harness) -> None:
    r = await h.call("POST", "identity/entity/id/nope", json={"name": "x"})
    assert r.status_code == 400 and "entity not found from id" in r.text
    a = await create(h, name="a")
    await create(h, name="b")
    r = await h.call("POST", f"identity/entity/id/{a}", json={"name": "b"})
    assert r.status_code == 400 and "entity name is already in use" in r.text


async def test_rename_frees_the_old_name(h: Harness) -> None:
    entity_id = await create(h, name="old")
    await ok(h, "POST", f"entity/id/{entity_id}", {"name": "new"})
    assert (await h.call("GET", "identity/entity/name/old")).status_code == 404
    assert (await ok(h, "GET", "entity/name/new"))["data"]["id"] == entity_id
    assert (await create(h, name="old")) != entity_id


async def test_by_name_path_creates_then_updates(h: Harness) -> None:
    body = await ok(h, "POST", "entity/name/svc@example.com", {"policies": ["p1"]})
    entity_id = body["data"]["id"]
    r = await h.call("POST", "identity/entity/name/svc@example.com", json={"policies": ["p2"]})
    assert r.status_code == 204
    assert (await ok(h, "GET", f"entity/id/{entity_id}"))["data"]["policies"] == ["p2"]


async def test_read_missing_is_404(h: Harness) -> None:
    assert (await h.call("GET", "identity/entity/id/missing")).status_code == 404
    assert (await h.call("GET", "identity/entity/name/missing")).status_code == 404


async def test_delete_by_id_and_name_and_missing(h: Harness) -> None:
    a = await create(h, name="a")
    await create(h, name="b")
    assert (await h.call("DELETE", f"identity/entity/id/{a}")).status_code == 204
    assert (await h.call("DELETE", "identity/entity/name/b")).status_code == 204
    assert (await h.call("DELETE", "identity/entity/id/missing")).status_code == 204
    assert (await h.call("LIST", "identity/entity/id")).status_code == 404


async def test_list_by_id_and_name(h: Harness) -> None:
    ids = {await create(h, name=n) for n in ("a", "b")}
    by_id = (await ok(h, "LIST", "entity/id"))["data"]
    assert set(by_id["keys"]) == ids and set(by_id["key_info"]) == ids
    assert {i["name"] for i in by_id["key_info"].values()} == {"a", "b"}
    # GET ?list=true is LIST too
    r = await h.call("GET", "identity/entity/name", params={"list": "true"})
    assert sorted(r.json()["data"]["keys"]) == ["a", "b"]


async def test_batch_delete(h: Harness) -> None:
    ids = [await create(h, name=n) for n in ("a", "b", "c")]
    await ok(h, "POST", "entity/batch-delete", {"entity_ids": ids[:2] + ["unknown"]})
    assert (await ok(h, "LIST", "entity/id"))["data"]["keys"] == [ids[2]]
    r = await h.call("POST", "identity/entity/batch-delete", json={"entity_ids": []})
    assert r.status_code == 400


@pytest.mark.parametrize("spelling", ["root", "ROOT", " root ", "Root", "p1,root"])
async def test_root_policy_is_refused_on_entities(h: Harness, spelling: str) -> None:
    r = await h.call("POST", "identity/entity", json={"name": "x", "policies": spelling})
    assert r.status_code == 400 and "policies cannot contain root" in r.text
    entity_id = await create(h, name="y")
    r = await h.call("POST", f"identity/entity/id/{entity_id}", json={"policies": spelling.split(",")})
    assert r.status_code == 400
    assert (await ok(h, "GET", f"entity/id/{entity_id}"))["data"]["policies"] == []


@pytest.mark.parametrize("spelling", ["root", "ROOT", " root "])
async def test_root_policy_is_refused_on_groups(h: Harness, spelling: str) -> None:
    r = await h.call("POST", "identity/group", json={"name": "g", "policies": [spelling]})
    assert r.status_code == 400 and "policies cannot contain root" in r.text
    assert (await h.call("GET", "identity/group/name/g")).status_code == 404


async def test_bad_metadata_is_400(h: Harness) -> None:
    r = await h.call("POST", "identity/entity", json={"name": "x", "metadata": "not a map"})
    assert r.status_code == 400


@pytest.mark.parametrize("weird", ["\x00", "..", "a/../b", "é", "%2e%2e", " ", "*"])
async def test_odd_input_never_answers_5xx(h: Harness, weird: str) -> None:
    calls = [
        ("POST", "identity/lookup/entity", {"id": weird}),
        ("POST", "identity/lookup/entity", {"alias_name": weird, "alias_mount_accessor": weird}),
        ("POST", "identity/lookup/group", {"alias_id": weird}),
        ("POST", "identity/entity/batch-delete", {"entity_ids": [weird]}),
        ("POST", "identity/entity/merge", {"from_entity_ids": [weird], "to_entity_id": weird}),
        ("POST", "identity/entity-alias", {"name": weird, "mount_accessor": weird, "canonical_id": weird}),
        ("POST", "identity/group", {"name": "g", "member_entity_ids": [weird], "member_group_ids": [weird]}),
        ("POST", "identity/group-alias", {"name": weird, "mount_accessor": weird, "canonical_id": weird}),
        ("POST", "identity/oidc/role/r", {"key": weird, "template": weird}),
        ("POST", "identity/oidc/config", {"issuer": "http://[" + weird}),
        ("POST", "identity/oidc/introspect", {"token": weird + "." + weird + "." + weird}),
    ]
    if weird.isprintable():
        calls.append(("GET", "identity/entity/name/" + weird, None))
    for method, path, body in calls:
        r = await h.call(method, path, json=body)
        assert r.status_code < 500, (method, path, body, r.status_code, r.text)
