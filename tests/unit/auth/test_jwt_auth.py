"""The jwt auth method: config, roles, and login with every way a token can be refused.

Keys are served by an injected httpx transport (a JWKS URL and an OIDC discovery
document) or configured as PEM; tokens are signed here with PyJWT.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from strongroom.auth.jwt import Fetcher, JWTBackend
from strongroom.core.mounts import MountEntry
from strongroom.testing import Harness, running_core

MOUNT = "auth/jwt/"
ISSUER = "https://idp.test"
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())


def public_pem(key: Any) -> str:
    return str(
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def jwk(key: Any, kid: str) -> dict[str, Any]:
    doc = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    doc.update(kid=kid, use="sig", alg="RS256")
    return dict(doc)


class MockIdP:
    """Serves a discovery document and a JWKS whose keys tests can rotate."""

    def __init__(self) -> None:
        self.keys = [jwk(KEY, "k1")]
        self.jwks_fetches = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/.well-known/openid-configuration":
            return httpx.Response(
                200,
                json={
                    "issuer": ISSUER,
                    "jwks_uri": ISSUER + "/keys",
                    "authorization_endpoint": ISSUER + "/authorize",
                    "token_endpoint": ISSUER + "/token",
                },
            )
        if request.url.path == "/keys":
            self.jwks_fetches += 1
            return httpx.Response(200, json={"keys": self.keys})
        return httpx.Response(404)


@pytest.fixture
def idp(monkeypatch: pytest.MonkeyPatch) -> MockIdP:
    mock = MockIdP()
    monkeypatch.setattr(Fetcher, "transport", httpx.MockTransport(mock))
    return mock


@pytest.fixture
async def h(idp: MockIdP) -> AsyncIterator[Harness]:
    async with running_core() as harness:
        if harness.core.expiration is not None:
            await harness.core.expiration.stop()
        await harness.core.enable_mount(MountEntry("jwt/", "jwt", table="auth"))
        await harness.core.policies.put("dev", 'path "secret/*" { capabilities = ["read"] }')
        yield harness


def sign(claims: dict[str, Any], key: Any = KEY, kid: str = "k1", alg: str = "RS256") -> str:
    now = int(time.time())
    body = {"iss": ISSUER, "sub": "alice", "aud": "vault", "iat": now, "exp": now + 300, **claims}
    body = {k: v for k, v in body.items() if v is not None}
    return jwt.encode(body, key, algorithm=alg, headers={"kid": kid} if kid else None)


async def call(h: Harness, method: str, path: str, body: Any = None, **kw: Any) -> httpx.Response:
    return await h.call(method, MOUNT + path, json=body, **kw)


async def setup(h: Harness, config: dict[str, Any] | None = None, **role: Any) -> None:
    cfg = config if config is not None else {"jwks_url": ISSUER + "/keys", "bound_issuer": ISSUER}
    r = await call(h, "POST", "config", cfg)
    assert r.status_code == 204, r.text
    body = {
        "role_type": "jwt",
        "user_claim": "sub",
        "bound_audiences": ["vault"],
        "token_policies": ["dev"],
        **role,
    }
    r = await call(h, "POST", "role/dev", body)
    assert r.status_code in (200, 204), r.text


async def login(h: Harness, token: str, role: str = "dev") -> httpx.Response:
    return await call(h, "POST", "login", {"role": role, "jwt": token}, token="")


def refused(r: httpx.Response, status: int, text: str) -> None:
    assert r.status_code == status, r.text
    errors = " ".join(r.json()["errors"])
    assert text in errors, errors


# -- config -----------------------------------------------------------------------------------


async def test_config_needs_exactly_one_key_source(h: Harness) -> None:
    r = await call(h, "POST", "config", {"bound_issuer": ISSUER})
    refused(
        r, 400, "exactly one of 'jwt_validation_pubkeys', 'jwks_url', 'jwks_pairs' or 'oidc_discovery_url'"
    )
    r = await call(
        h, "POST", "config", {"jwks_url": ISSUER + "/keys", "jwt_validation_pubkeys": [public_pem(KEY)]}
    )
    assert r.status_code == 400
    r = await call(h, "POST", "config", {"jwt_validation_pubkeys": ["not a key"]})
    refused(r, 400, "error parsing public key")
    r = await call(h, "POST", "config", {"jwks_url": ISSUER + "/nothing"})
    refused(r, 400, "error checking jwks URL")
    for alg in ("none", "HS256"):
        r = await call(h, "POST", "config", {"jwks_url": ISSUER + "/keys", "jwt_supported_algs": [alg]})
        refused(r, 400, "invalid jwt_supported_algs")


async def test_config_read_hides_the_client_secret(h: Harness) -> None:
    body = {
        "oidc_discovery_url": ISSUER,
        "oidc_client_id": "cid",
        "oidc_client_secret": "s3cret",
        "default_role": "dev",
    }
    assert (await call(h, "POST", "config", body)).status_code == 204
    data = (await call(h, "GET", "config")).json()["data"]
    assert data["oidc_discovery_url"] == ISSUER and data["oidc_client_id"] == "cid"
    assert "oidc_client_secret" not in data and "s3cret" not in json.dumps(data)
    assert data["namespace_in_state"] is True


# -- roles ------------------------------------------------------------------------------------


async def test_role_crud_defaults_and_rules(h: Harness) -> None:
    r = await call(h, "POST", "role/r1", {"user_claim": "sub"})
    refused(r, 400, "'allowed_redirect_uris' must be set if 'role_type' is 'oidc' or unspecified.")
    r = await call(h, "POST", "role/r1", {"role_type": "jwt", "user_claim": "sub"})
    refused(r, 400, "must have at least one bound constraint when creating/updating a role")
    r = await call(h, "POST", "role/r1", {"role_type": "jwt", "bound_subject": "x"})
    refused(r, 400, "a user claim must be defined on the role")
    r = await call(h, "POST", "role/r1", {"user_claim": "sub", "allowed_redirect_uris": ["http://cb"]})
    assert r.status_code == 204, r.text
    data = (await call(h, "GET", "role/r1")).json()["data"]
    assert data["role_type"] == "oidc"
    assert (data["clock_skew_leeway"], data["expiration_leeway"], data["not_before_leeway"]) == (60, 150, 150)
    assert data["bound_claims_type"] == "string" and data["token_policies"] == []
    r = await call(
        h, "POST", "role/r2", {"role_type": "jwt", "user_claim": "sub", "token_bound_cidrs": ["10.0.0.0/8"]}
    )
    assert r.status_code == 204, r.text
    r = await call(
        h,
        "POST",
        "role/r3",
        {"role_type": "jwt", "user_claim": "sub", "bound_subject": "a", "claim_mappings": {"a": "role"}},
    )
    refused(r, 400, 'metadata key "role" is reserved')
    keys = (await h.call("LIST", MOUNT + "role")).json()["data"]["keys"]
    assert keys == ["r1", "r2"]
    assert (await call(h, "DELETE", "role/r1")).status_code == 204
    assert (await call(h, "GET", "role/r1")).status_code == 404


# -- login ------------------------------------------------------------------------------------


async def test_login_success_with_groups_metadata_and_a_working_token(h: Harness) -> None:
    await setup(
        h,
        groups_claim="/org/groups",
        claim_mappings={"email": "email", "/org/name": "org"},
        bound_claims={"/org/name": "acme"},
    )
    token = sign({"email": "a@x", "org": {"name": "acme", "groups": ["eng", "ops"]}})
    r = await login(h, token)
    assert r.status_code == 200, r.text
    auth = r.json()["auth"]
    assert auth["metadata"] == {"role": "dev", "email": "a@x", "org": "acme"}
    assert "dev" in auth["policies"]
    assert token not in r.text
    me = await h.call("GET", "auth/token/lookup-self", token=auth["client_token"])
    assert me.status_code == 200, me.text
    assert me.json()["data"]["meta"]["role"] == "dev"
    assert me.json()["data"]["display_name"].endswith("alice")


async def test_login_groups_go_to_group_aliases(h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[Any] = []
    original = JWTBackend._authorize

    def spy(self: JWTBackend, *args: Any, **kw: Any) -> Any:
        response = original(self, *args, **kw)
        seen.append(response.auth)
        return response

    monkeypatch.setattr(JWTBackend, "_authorize", spy)
    await setup(h, groups_claim="groups")
    assert (await login(h, sign({"groups": ["a", "", "b", "a"]}))).status_code == 200
    assert (await login(h, sign({"groups": "solo"}))).status_code == 200
    assert [a.group_alias_names for a in seen] == [["a", "b"], ["solo"]]
    assert seen[0].alias_name == "alice" and seen[0].internal_data == {"role": "dev"}
    refused(await login(h, sign({})), 403, '"groups" claim not found in token')


async def test_aud_string_or_list_must_intersect_bound_audiences(h: Harness) -> None:
    await setup(h)
    assert (await login(h, sign({"aud": ["x", "vault"]}))).status_code == 200
    refused(await login(h, sign({"aud": ["x", "y"]})), 403, "aud claim does not match any bound audience")
    # CVE-2024-5798: a plain string audience is checked like a one-element list
    refused(await login(h, sign({"aud": "other"})), 403, "aud claim does not match any bound audience")
    refused(await login(h, sign({"aud": None})), 403, "aud claim does not match any bound audience")


async def test_aud_without_bound_audiences_is_refused(h: Harness) -> None:
    await setup(h, bound_audiences=[], bound_subject="alice")
    refused(await login(h, sign({})), 403, "audience claim found in JWT but no audiences bound to the role")
    assert (await login(h, sign({"aud": None}))).status_code == 200


async def test_issuer_times_subject_and_claims(h: Harness) -> None:
    await setup(h, bound_subject="alice", bound_claims={"team": ["a", "b"]}, expiration_leeway=-1)
    now = int(time.time())
    ok = {"team": "b"}
    assert (await login(h, sign(ok))).status_code == 200
    refused(await login(h, sign({**ok, "iss": "https://evil.test"})), 403, "invalid issuer claim (iss)")
    refused(await login(h, sign({**ok, "exp": now - 120})), 403, "token is expired (exp)")
    assert (await login(h, sign({**ok, "exp": now - 30}))).status_code == 200  # within clock skew
    refused(await login(h, sign({**ok, "nbf": now + 3600})), 403, "token not valid yet (nbf)")
    assert (await login(h, sign({**ok, "nbf": now + 100}))).status_code == 200  # within 150 + 60
    refused(await login(h, sign({**ok, "iat": None, "exp": None})), 403, "no issue time")
    refused(await login(h, sign({**ok, "sub": "mallory"})), 403, "invalid subject claim (sub)")
    refused(
        await login(h, sign({"team": "c"})), 403, 'claim "team" does not match any associated bound claim'
    )
    refused(await login(h, sign({})), 403, 'claim "team" is missing')


async def test_bound_claims_glob(h: Harness) -> None:
    await setup(h, bound_claims_type="glob", bound_claims={"email": "*@acme.com"})
    assert (await login(h, sign({"email": "a@acme.com"}))).status_code == 200
    refused(await login(h, sign({"email": "a@acme.com.evil"})), 403, "does not match")


async def test_signature_kid_and_algorithm_failures(h: Harness, idp: MockIdP) -> None:
    await setup(h)
    refused(await login(h, sign({}, key=OTHER_KEY)), 403, "error verifying token")
    refused(await login(h, sign({}, kid="nope")), 403, "error verifying token")
    unsigned = jwt.encode(
        {"sub": "alice", "aud": "vault", "iss": ISSUER, "exp": int(time.time()) + 60}, "", algorithm="none"
    )
    refused(await login(h, unsigned), 403, "unsupported algorithm")
    hmac_token = jwt.encode(
        {"sub": "alice", "aud": "vault"},
        public_pem(KEY).encode()[:64],
        algorithm="HS256",
        headers={"kid": "k1"},
    )
    refused(await login(h, hmac_token), 403, "unsupported algorithm")
    refused(await login(h, "garbage"), 403, "error verifying token")
    r = await login(h, "x", role="missing")
    refused(r, 400, 'role "missing" could not be found')


async def test_unknown_kid_refetches_the_jwks(h: Harness, idp: MockIdP) -> None:
    await setup(h)
    before = idp.jwks_fetches
    idp.keys.append(jwk(OTHER_KEY, "k2"))
    import strongroom.auth.jwt.keys as keys_module

    keys_module.MIN_REFRESH_INTERVAL_S = 0.0
    try:
        r = await login(h, sign({}, key=OTHER_KEY, kid="k2"))
    finally:
        keys_module.MIN_REFRESH_INTERVAL_S = 5.0
    assert r.status_code == 200, r.text
    assert idp.jwks_fetches == before + 1


async def test_static_pem_keys(h: Harness) -> None:
    await setup(
        h,
        {
            "jwt_validation_pubkeys": [public_pem(EC_KEY), public_pem(KEY)],
            "jwt_supported_algs": ["RS256", "ES256"],
        },
    )
    assert (await login(h, sign({"iss": None}, kid=""))).status_code == 200
    assert (await login(h, sign({}, key=EC_KEY, alg="ES256", kid=""))).status_code == 200
    refused(
        await login(h, sign({}, key=OTHER_KEY)),
        403,
        "no known key successfully validated the token signature",
    )


async def test_discovery_url_login(h: Harness) -> None:
    await setup(h, {"oidc_discovery_url": ISSUER})
    assert (await login(h, sign({}))).status_code == 200
    refused(await login(h, sign({"iss": "https://other"})), 403, "invalid issuer claim (iss)")


async def test_oidc_role_cannot_use_login(h: Harness) -> None:
    await setup(h, role_type="oidc", allowed_redirect_uris=["http://cb"])
    refused(await login(h, sign({})), 400, "role with oidc role_type is not allowed")
