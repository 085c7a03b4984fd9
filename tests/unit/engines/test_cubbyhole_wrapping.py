"""cubbyhole isolation per token, and response wrapping through the HTTP layer."""

from __future__ import annotations

from strongroom.core.tokens import TokenEntry
from strongroom.testing import running_core


async def _token(h, policies=("default",)) -> str:
    entry = await h.core.tokens.create(TokenEntry(id="", policies=list(policies), parent=""))
    return entry.id


async def test_cubbyhole_is_private_per_token() -> None:
    async with running_core() as h:
        a = await _token(h)
        b = await _token(h)
        r = await h.call("POST", "cubbyhole/app", json={"password": "s3cret"}, token=a)
        assert r.status_code == 204
        r = await h.call("GET", "cubbyhole/app", token=a)
        assert r.status_code == 200 and r.json()["data"] == {"password": "s3cret"}
        assert (await h.call("GET", "cubbyhole/app", token=b)).status_code == 404
        assert (await h.call("GET", "cubbyhole/app")).status_code == 404  # root sees nothing either
        r = await h.call("LIST", "cubbyhole/", token=a)
        assert r.json()["data"]["keys"] == ["app"]
        assert (await h.call("LIST", "cubbyhole/", token=b)).status_code == 404


async def test_cubbyhole_destroyed_with_token() -> None:
    async with running_core() as h:
        a = await _token(h)
        await h.call("POST", "cubbyhole/x", json={"k": "v"}, token=a)
        entry = await h.core.tokens.lookup(a)
        assert entry is not None
        await h.core.revoke_token(entry)
        storage = h.core.router.get("cubbyhole/").storage
        assert await storage.list("") == []


async def test_wrap_and_unwrap_arbitrary_data() -> None:
    async with running_core() as h:
        r = await h.call("POST", "sys/wrapping/wrap", json={"foo": "bar"})
        assert r.status_code == 400
        assert "requires response wrapping" in r.json()["errors"][0]
        r = await h.call("POST", "sys/wrapping/wrap", json={"foo": "bar"}, headers={"X-Vault-Wrap-TTL": "5m"})
        assert r.status_code == 200
        body = r.json()
        assert body["data"] is None and body["request_id"] == ""
        wrap = body["wrap_info"]
        assert wrap["ttl"] == 300 and wrap["creation_path"] == "sys/wrapping/wrap"
        r = await h.call("POST", "sys/wrapping/lookup", json={"token": wrap["token"]}, token="")
        assert r.status_code == 200 and r.json()["data"]["creation_ttl"] == 300
        r = await h.call("POST", "sys/wrapping/unwrap", json={}, token=wrap["token"])
        assert r.status_code == 200 and r.json()["data"] == {"foo": "bar"}
        r = await h.call("POST", "sys/wrapping/unwrap", json={"token": wrap["token"]})
        assert r.status_code == 400
        assert r.json()["errors"] == ["wrapping token is not valid or does not exist"]


async def test_bad_wrap_ttl_header() -> None:
    async with running_core() as h:
        r = await h.call("POST", "sys/wrapping/wrap", json={"a": 1}, headers={"X-Vault-Wrap-TTL": "nonsense"})
        assert r.status_code == 400
        assert r.json()["errors"] == ["error parsing X-Vault-Wrap-TTL header"]


async def test_rewrap_gives_new_token() -> None:
    async with running_core() as h:
        r = await h.call("POST", "sys/wrapping/wrap", json={"a": "b"}, headers={"X-Vault-Wrap-TTL": "60"})
        old = r.json()["wrap_info"]["token"]
        r = await h.call("POST", "sys/wrapping/rewrap", json={"token": old})
        assert r.status_code == 200
        new = r.json()["wrap_info"]["token"]
        assert new != old
        assert (await h.call("POST", "sys/wrapping/unwrap", json={"token": old})).status_code == 400
        r = await h.call("POST", "sys/wrapping/unwrap", json={"token": new})
        assert r.json()["data"] == {"a": "b"}
