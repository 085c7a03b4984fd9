"""Identity tokens: config, named keys (rotation, verification TTL), roles, signed tokens for the
caller's entity, introspection, and the unauthenticated discovery and JWKS documents."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from strongroom.core.tokens import TokenEntry
from strongroom.engines.identity import jose
from strongroom.testing import Harness, running_core


@pytest.fixture
async def h() -> AsyncIterator[Harness]:
    async with running_core() as harness:
        if harness.core.expiration is not None:
            await harness.core.expiration.stop()
        await harness.core.policies.put("oidc", 'path "identity/oidc/token/*" { capabilities = ["read"] }')
        yield harness


async def ok(
    h: Harness, method: str, path: str, body: Any = None, token: str | None = None
) -> dict[str, Any]:
    r = await h.call(method, "identity/oidc/" + path, json=body, token=token)
    assert r.status_code in (200, 204), (method, path, r.status_code, r.text)
    return {} if r.status_code == 204 else dict(r.json())


async def entity_token(h: Harness, **entity: Any) -> tuple[str, str]:
    r = await h.call("POST", "identity/entity", json={"name": "alice", **entity})
    eid = r.json()["data"]["id"]
    token = await h.core.tokens.create(TokenEntry(id="", policies=["oidc"], entity_id=eid))
    return eid, token.id


async def setup_role(h: Harness, algorithm: str = "RS256", **role: Any) -> str:
    await ok(h, "POST", "key/k", {"algorithm": algorithm, "allowed_client_ids": "*"})
    await ok(h, "POST", "role/r", {"key": "k", **role})
    return str((await ok(h, "GET", "role/r"))["data"]["client_id"])


async def jwks(h: Harness) -> list[dict[str, Any]]:
    r = await h.client.get("/v1/identity/oidc/.well-known/keys")
    assert r.status_code == 200
    return list(r.json()["keys"])


async def test_config_issuer(h: Harness) -> None:
    r = await h.call("POST", "identity/oidc/config", json={"issuer": ""})
    assert r.status_code == 204
    body = await ok(h, "POST", "config", {"issuer": "https://vault.example:8200"})
    assert body["warnings"]
    assert (await ok(h, "GET", "config"))["data"]["issuer"] == "https://vault.example:8200"
    for bad in ("ftp://x", "https://x/path", "https://x?q=1", "nohost"):
        assert (await h.call("POST", "identity/oidc/config", json={"issuer": bad})).status_code == 400
    discovery = (await h.client.get("/v1/identity/oidc/.well-known/openid-configuration")).json()
    assert discovery["issuer"] == "https://vault.example:8200/v1/identity/oidc"
    assert discovery["jwks_uri"].endswith("/.well-known/keys")


async def test_key_crud(h: Harness) -> None:
    r = await h.call("POST", "identity/oidc/key/k", json={})
    assert r.status_code == 204
    data = (await ok(h, "GET", "key/k"))["data"]
    assert data == {
        "rotation_period": 86400,
        "verification_ttl": 86400,
        "algorithm": "RS256",
        "allowed_client_ids": None,
    }
    await ok(h, "POST", "key/k", {"verification_ttl": 1800, "algorithm": "ES256"})
    data = (await ok(h, "GET", "key/k"))["data"]
    assert (
        data["verification_ttl"] == 1800 and data["algorithm"] == "ES256" and data["rotation_period"] == 86400
    )
    assert (await ok(h, "LIST", "key"))["data"]["keys"] == ["k"]
    for bad in ({"algorithm": "HS256"}, {"rotation_period": 30}, {"verification_ttl": "300h"}):
        assert (await h.call("POST", "identity/oidc/key/k", json=bad)).status_code == 400
    assert (await h.call("GET", "identity/oidc/key/missing")).status_code == 400
    await ok(h, "POST", "role/r", {"key": "k"})
    r = await h.call("DELETE", "identity/oidc/key/k")
    assert r.status_code == 400 and "referenced by these roles: r" in r.text
    await ok(h, "DELETE", "role/r")
    await ok(h, "DELETE", "key/k")
    assert await jwks(h) == []


async def test_rotation_keeps_old_public_key_for_verification_ttl(h: Harness) -> None:
    await ok(h, "POST", "key/k", {})
    [first] = await jwks(h)
    await ok(h, "POST", "key/k/rotate", {})
    kids = {k["kid"] for k in await jwks(h)}
    assert len(kids) == 2 and first["kid"] in kids
    [second] = kids - {first["kid"]}
    # retired with no verification TTL: the second key disappears at once, the first stays
    await ok(h, "POST", "key/k/rotate", {"verification_ttl": 0})
    time.sleep(0.01)
    kids = {k["kid"] for k in await jwks(h)}
    assert len(kids) == 2 and first["kid"] in kids and second not in kids


async def test_role_crud(h: Harness) -> None:
    r = await h.call("POST", "identity/oidc/role/r", json={})
    assert r.status_code == 400 and "key parameter is required" in r.text
    await ok(
        h,
        "POST",
        "role/r",
        {"key": "k", "ttl": "1h", "template": '{"team": {{identity.entity.metadata.team}}}'},
    )
    data = (await ok(h, "GET", "role/r"))["data"]
    assert data["key"] == "k" and data["ttl"] == 3600 and len(data["client_id"]) == 26
    client_id = data["client_id"]
    await ok(h, "POST", "role/r", {"ttl": 60})
    assert (await ok(h, "GET", "role/r"))["data"]["client_id"] == client_id
    assert (await ok(h, "LIST", "role"))["data"]["keys"] == ["r"]
    for template in ('{"sub": "x"}', "not json", "[1]"):
        assert (await h.call("POST", "identity/oidc/role/r", json={"template": template})).status_code == 400
    await ok(h, "DELETE", "role/r")
    assert (await h.call("GET", "identity/oidc/role/r")).status_code == 404


@pytest.mark.parametrize("algorithm", ["RS256", "ES256", "ES384", "ES512", "EdDSA"])
async def test_token_signed_for_the_callers_entity(h: Harness, algorithm: str) -> None:
    await ok(h, "POST", "config", {"issuer": "https://vault.example"})
    client_id = await setup_role(
        h,
        algorithm,
        template='{"team": {{identity.entity.metadata.team}}, "groups": {{identity.entity.groups.names}}}',
    )
    eid, token = await entity_token(h, metadata={"team": "blue"})
    data = (await ok(h, "GET", "token/r", token=token))["data"]
    assert data["client_id"] == client_id and data["ttl"] == 86400
    claims = jose.verify(data["token"], await jwks(h))
    assert claims is not None
    assert claims["sub"] == eid and claims["aud"] == client_id and claims["namespace"] == "root"
    assert claims["iss"] == "https://vault.example/v1/identity/oidc"
    assert claims["team"] == "blue" and claims["groups"] == []
    assert claims["exp"] - claims["iat"] == 86400
    introspected = await ok(h, "POST", "introspect", {"token": data["token"], "client_id": client_id})
    assert introspected == {"active": True}


async def test_token_needs_entity_and_allowed_client(h: Harness) -> None:
    await ok(h, "POST", "key/k", {})
    await ok(h, "POST", "role/r", {"key": "k"})
    _, token = await entity_token(h)
    r = await h.call("GET", "identity/oidc/token/r", token=token)
    assert r.status_code == 400 and "allowed client ID" in r.text
    await ok(h, "POST", "key/k", {"allowed_client_ids": "*"})
    r = await h.call("GET", "identity/oidc/token/r")  # root has no entity
    assert r.status_code == 400 and "no entity" in r.text
    assert (await h.call("GET", "identity/oidc/token/missing", token=token)).status_code == 400


async def test_introspect_rejects_bad_tokens(h: Harness) -> None:
    client_id = await setup_role(h)
    eid, token = await entity_token(h)
    signed = (await ok(h, "GET", "token/r", token=token))["data"]["token"]
    header, payload, signature = signed.split(".")
    claims = json.loads(jose.b64url_decode(payload))
    forged = header + "." + jose.b64url(json.dumps({**claims, "sub": "someone"}).encode()) + "." + signature

    async def active(body: dict[str, Any]) -> dict[str, Any]:
        return await ok(h, "POST", "introspect", body)

    assert (await active({"token": forged}))["active"] is False
    assert (await active({"token": "not-a-jwt"}))["active"] is False
    assert (await active({"token": signed, "client_id": "other"}))["active"] is False
    assert (await active({"token": signed, "client_id": client_id}))["active"] is True
    await h.call("POST", f"identity/entity/id/{eid}", json={"disabled": True})
    assert (await active({"token": signed}))["error"] == "entity is disabled"
    await h.call("DELETE", f"identity/entity/id/{eid}")
    assert (await active({"token": signed}))["error"] == "entity was not found"


def test_jose_rejects_algorithm_swap() -> None:
    key = jose.generate("ES256")
    jwk = jose.public_jwk(key, "kid", "ES256")
    token = jose.sign(key, "ES256", "kid", {"a": 1})
    assert jose.verify(token, [jwk]) == {"a": 1}
    header = jose.b64url(json.dumps({"alg": "EdDSA", "kid": "kid"}).encode())
    assert jose.verify(header + token[token.index(".") :], [jwk]) is None
    with pytest.raises(jose.MalformedToken):
        jose.verify("a.b", [jwk])
