"""Bad input answers a clear 4xx in Vault's error shape, never a 5xx or a traceback."""

from __future__ import annotations

import json

import pytest

from strongroom.core.mounts import MountEntry
from strongroom.core.tokens import TokenEntry
from strongroom.testing import running_core


def _is_error_shape(body: dict) -> bool:
    return isinstance(body.get("errors"), list) and all(isinstance(e, str) for e in body["errors"])


async def test_unknown_paths_and_mounts() -> None:
    async with running_core() as h:
        r = await h.call("GET", "nosuchmount/foo")
        assert r.status_code == 404 and _is_error_shape(r.json())
        assert r.json()["errors"] == ['no handler for route "nosuchmount/foo". route entry not found.']
        r = await h.call("GET", "sys/nonexistent-endpoint")
        assert r.status_code == 404 and _is_error_shape(r.json())
        r = await h.client.get("/v2/sys/health")
        assert r.status_code == 404


async def test_malformed_and_wrong_typed_json() -> None:
    async with running_core() as h:
        await h.core.enable_mount(MountEntry("kv/", "kv", options={"version": "2"}))
        headers = {"X-Vault-Token": h.root_token}
        for body in [b"{", b"[1,2]", b'"str"', b"\xff\xfe", b'{"data": }']:
            r = await h.client.post("/v1/kv/data/x", content=body, headers=headers)
            assert r.status_code == 400, body
            assert _is_error_shape(r.json())
        secret = "s3cr3t-value-that-must-not-echo"
        r = await h.call("POST", "sys/mounts/bad", json={"type": "kv", "config": {"max_lease_ttl": secret}})
        assert r.status_code == 400 and secret not in r.text
        r = await h.call("POST", "auth/token/create", json={"ttl": {"nested": secret}})
        assert r.status_code == 400 and secret not in r.text
        r = await h.call("POST", "kv/config", json={"max_versions": [secret]})
        assert r.status_code == 400 and secret not in r.text


async def test_huge_body_is_413() -> None:
    async with running_core() as h:
        h.app.max_request_size = 1024 * 1024
        big = b'{"a":"' + b"x" * (1024 * 1024 + 10) + b'"}'
        r = await h.client.post("/v1/sys/policies/acl/x", content=big, headers=h.headers())
        assert r.status_code == 413 and _is_error_shape(r.json())


async def test_deep_json_is_400_not_500() -> None:
    async with running_core() as h:
        deep = "[" * 100_000 + "]" * 100_000
        r = await h.client.post(
            "/v1/sys/policies/acl/x",
            content=json.dumps({"policy": 1})[:-1] + ',"d":' + deep + "}",
            headers=h.headers(),
        )
        assert r.status_code == 400 and _is_error_shape(r.json())
        r = await h.client.post(
            "/v1/sys/wrapping/wrap",
            content='{"a":' + "[" * 600 + "]" * 600 + "}",
            headers={**h.headers(), "X-Vault-Wrap-TTL": "60"},
        )
        assert r.status_code == 400


@pytest.mark.parametrize(
    "token", ["", "not-a-token", "hvs.AAAAAAAAAAAAAAAAAAAAAAAA", "hvb.garbage", "x" * 20000]
)
async def test_invalid_tokens(token: str) -> None:
    async with running_core() as h:
        r = await h.client.get("/v1/sys/mounts", headers={"X-Vault-Token": token} if token else {})
        assert r.status_code == 403 and _is_error_shape(r.json())
        if token:
            assert r.json()["errors"] == ["2 errors occurred:\n\t* permission denied\n\t* invalid token\n\n"]
        else:
            assert r.json()["errors"] == ["1 error occurred:\n\t* permission denied\n\n"]


async def test_revoked_token_is_refused() -> None:
    async with running_core() as h:
        entry = await h.core.tokens.create(TokenEntry(id="", policies=["default"]))
        assert (await h.call("GET", "auth/token/lookup-self", token=entry.id)).status_code == 200
        await h.core.revoke_token(entry)
        r = await h.call("GET", "auth/token/lookup-self", token=entry.id)
        assert r.status_code == 403 and "invalid token" in r.json()["errors"][0]


async def test_sealed_answers_503() -> None:
    async with running_core() as h:
        await h.core.seal()
        for path in ["sys/mounts", "secret/data/x", "auth/token/lookup-self"]:
            r = await h.call("GET", path)
            assert r.status_code == 503 and r.json() == {"errors": ["Vault is sealed"]}
        assert (await h.call("GET", "sys/seal-status")).json()["sealed"] is True
        assert (await h.call("GET", "sys/health")).status_code == 503


async def _raw_get(h, raw_path: bytes) -> tuple[int, dict]:
    """Send a path exactly as given (httpx would normalise ``..`` away)."""
    status, body = await h.raw("GET", raw_path, headers={"X-Vault-Token": h.root_token})
    return status, json.loads(body)


@pytest.mark.parametrize(
    "raw_path",
    [
        b"/v1/secret/../sys/mounts",
        b"/v1/secret/%2e%2e/sys/mounts",
        b"/v1/secret/%2E%2E/sys/mounts",
        b"/v1/secret/./x",
        b"/v1/secret%2F..%2Fsys/mounts",
        b"/v1/kv/metadata/pub/%2e%2e/prot/x",
    ],
)
async def test_relative_paths_refused(raw_path: bytes) -> None:
    async with running_core() as h:
        status, body = await _raw_get(h, raw_path)
        assert status == 400 and _is_error_shape(body)


async def test_double_slashes_cannot_escape_a_rule() -> None:
    async with running_core() as h:
        await h.core.enable_mount(MountEntry("kv/", "kv", options={"version": "2"}))
        await h.core.policies.put("pub", 'path "kv/data/pub/*" { capabilities = ["read"] }')
        token = (await h.core.tokens.create(TokenEntry(id="", policies=["pub"]))).id
        await h.call("POST", "kv/data/prot/x", json={"data": {"a": 1}})
        r = await h.client.get("/v1/kv/data/pub//..//prot/x", headers={"X-Vault-Token": token})
        assert r.status_code in (400, 403, 404)
        r = await h.client.get("/v1/kv//data//prot//x", headers={"X-Vault-Token": token})
        assert r.status_code == 403


async def test_methods_and_media_types() -> None:
    async with running_core() as h:
        r = await h.client.request("OPTIONS", "/v1/sys/mounts", headers=h.headers())
        assert r.status_code == 405
        r = await h.client.request("PATCH", "/v1/sys/mounts", json={}, headers=h.headers())
        assert r.status_code == 415
        r = await h.client.post("/v1/secret/", json={"a": 1}, headers=h.headers())
        assert r.status_code == 400 and r.json()["errors"] == ["cannot write to a path ending in '/'"]
