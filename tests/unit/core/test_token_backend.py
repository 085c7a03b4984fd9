"""The token auth method over HTTP: create rules, roles, lookup, renew, revoke, tidy."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from strongroom.core.token_backend import TokenBackend
from strongroom.testing import Harness, running_core

INVALID_TOKEN = {"errors": ["2 errors occurred:\n\t* permission denied\n\t* invalid token\n\n"]}
DENIED = {"errors": ["1 error occurred:\n\t* permission denied\n\n"]}

# may create tokens, nothing more (no sudo)
CREATOR = """
path "auth/token/create" { capabilities = ["update"] }
path "auth/token/create-orphan" { capabilities = ["update"] }
path "auth/token/create/*" { capabilities = ["update"] }
path "auth/token/lookup" { capabilities = ["update"] }
path "auth/token/revoke-orphan" { capabilities = ["update"] }
path "auth/token/accessors/" { capabilities = ["list"] }
path "secret/*" { capabilities = ["read"] }
"""
SUDOER = """
path "auth/token/*" { capabilities = ["create", "read", "update", "delete", "list", "sudo"] }
"""


@pytest.fixture
async def h() -> AsyncIterator[Harness]:
    async with running_core() as harness:
        await harness.core.policies.put("creator", CREATOR)
        await harness.core.policies.put("sudoer", SUDOER)
        for name in ("p1", "p2", "dev-a", "dev-b", "ops"):
            await harness.core.policies.put(name, 'path "x/*" { capabilities = ["read"] }')
        yield harness


async def create(
    h: Harness, path: str = "auth/token/create", token: str | None = None, **body: Any
) -> httpx.Response:
    return await h.call("POST", path, json=body, token=token)


async def new_token(
    h: Harness, token: str | None = None, path: str = "auth/token/create", **body: Any
) -> dict[str, Any]:
    r = await create(h, path, token=token, **body)
    assert r.status_code == 200, r.text
    auth: dict[str, Any] = r.json()["auth"]
    return auth


async def lookup(h: Harness, target: str) -> httpx.Response:
    return await h.call("POST", "auth/token/lookup", json={"token": target})


def backend(h: Harness) -> TokenBackend:
    route = h.core.router.get("auth/token/")
    assert route is not None
    assert isinstance(route.backend, TokenBackend)
    return route.backend


def errors(r: httpx.Response) -> list[str]:
    body: list[str] = r.json()["errors"]
    return body


# -- formats and the auth block --------------------------------------------------------------


async def test_token_and_accessor_format(h: Harness) -> None:
    auth = await new_token(h, ttl="1h")
    assert re.fullmatch(r"hvs\.[A-Za-z0-9]{24}", auth["client_token"])
    assert re.fullmatch(r"[A-Za-z0-9]{24}", auth["accessor"])
    assert set(auth) >= {
        "client_token",
        "accessor",
        "policies",
        "token_policies",
        "metadata",
        "lease_duration",
        "renewable",
        "entity_id",
        "token_type",
        "orphan",
        "mfa_requirement",
        "num_uses",
    }
    assert auth["policies"] == ["root"]
    assert auth["lease_duration"] == 3600
    assert auth["renewable"] is True
    assert auth["token_type"] == "service"
    assert auth["orphan"] is False
    assert auth["metadata"] is None


async def test_create_response_envelope(h: Harness) -> None:
    r = await create(h, ttl="1h", meta={"team": "a", "n": 1}, display_name="My App!")
    body = r.json()
    assert body["data"] is None
    assert body["auth"]["metadata"] == {"team": "a", "n": "1"}
    look = (await lookup(h, body["auth"]["client_token"])).json()["data"]
    assert look["display_name"] == "token-My-App"
    assert look["meta"] == {"team": "a", "n": "1"}


async def test_root_child_of_root_never_expires(h: Harness) -> None:
    auth = await new_token(h)
    assert auth["policies"] == ["root"]
    assert auth["lease_duration"] == 0
    assert auth["renewable"] is False
    data = (await lookup(h, auth["client_token"])).json()["data"]
    assert data["expire_time"] is None
    assert data["ttl"] == 0
    r = await h.call("POST", "auth/token/renew", json={"token": auth["client_token"]})
    assert r.status_code == 400
    assert errors(r) == ["lease is not renewable"]


async def test_bad_and_expired_tokens_are_403_invalid_token(h: Harness) -> None:
    r = await h.call("GET", "auth/token/lookup-self", token="hvs.notarealtoken0000000000")
    assert (r.status_code, r.json()) == (403, INVALID_TOKEN)
    auth = await new_token(h, ttl="1h", policies=["default"])
    entry = await h.core.tokens.lookup(auth["client_token"])
    assert entry is not None
    entry.expire_time = time.time() - 1
    r = await h.call("GET", "auth/token/lookup-self", token=auth["client_token"])
    assert (r.status_code, r.json()) == (403, INVALID_TOKEN)
    r = await h.call("GET", "auth/token/lookup-self", token="")
    assert r.status_code == 403


# -- policies ---------------------------------------------------------------------------------


async def test_child_policies_must_be_subset_of_parent(h: Harness) -> None:
    parent = await new_token(h, policies=["creator", "p1"], ttl="1h")
    assert parent["policies"] == ["creator", "default", "p1"]
    r = await create(h, token=parent["client_token"], policies=["p2"])
    assert r.status_code == 400
    assert errors(r) == ["child policies must be subset of parent"]
    child = await new_token(h, token=parent["client_token"], policies=["P1"])
    assert child["policies"] == ["default", "p1"]  # lower-cased, default added since the parent has it
    inherited = await new_token(h, token=parent["client_token"])
    assert inherited["policies"] == ["creator", "default", "p1"]
    bare = await new_token(h, token=parent["client_token"], policies=["p1"], no_default_policy=True)
    assert bare["policies"] == ["p1"]
    r = await create(h, token=parent["client_token"], policies=["root"])
    assert errors(r) == ["child policies must be subset of parent"]


async def test_sudo_caller_may_grant_any_policy_but_not_root(h: Harness) -> None:
    sudo = await new_token(h, policies=["sudoer"], ttl="1h")
    child = await new_token(h, token=sudo["client_token"], policies=["p2", "p2", " ops "])
    assert child["policies"] == ["default", "ops", "p2"]
    r = await create(h, token=sudo["client_token"], policies=["root"])
    assert r.status_code == 400
    assert errors(r) == ["root tokens may not be created without parent token being root"]
    r = await create(h, policies=["response-wrapping"])
    assert errors(r) == ['cannot assign policy "response-wrapping"']


async def test_missing_policy_warns(h: Harness) -> None:
    r = await create(h, policies=["nope"], ttl="1m")
    assert r.status_code == 200
    assert r.json()["warnings"] == ['Policy "nope" does not exist']


# -- orphans, custom ids ----------------------------------------------------------------------


async def test_orphan_rules(h: Harness) -> None:
    parent = await new_token(h, policies=["creator"], ttl="1h")
    r = await create(h, token=parent["client_token"], no_parent=True)
    assert r.status_code == 400
    assert errors(r) == ["root or sudo privileges required to create orphan token"]
    orphan = await new_token(h, path="auth/token/create-orphan", token=parent["client_token"])
    assert orphan["orphan"] is True
    assert (await lookup(h, orphan["client_token"])).json()["data"]["path"] == "auth/token/create-orphan"
    rooted = await new_token(h, no_parent=True, policies=["p1"])
    assert rooted["orphan"] is True
    child = await new_token(h, token=parent["client_token"])
    assert child["orphan"] is False


async def test_custom_id(h: Harness) -> None:
    r = await create(h, id="my-custom-token", policies=["p1"], ttl="1h")
    assert r.status_code == 200
    assert r.json()["auth"]["client_token"] == "my-custom-token"
    assert any("custom ID" in w for w in r.json()["warnings"])
    assert (await lookup(h, "my-custom-token")).status_code == 200
    r = await create(h, id="my-custom-token")
    assert errors(r) == ["cannot create a token with a duplicate ID"]
    r = await create(h, id="has.dot")
    assert errors(r) == ["custom token ID cannot have a '.' in the value"]
    r = await create(h, id="hvs.something")
    assert errors(r) == ["custom token ID cannot have the 'hvs.' prefix"]
    parent = await new_token(h, policies=["creator"], ttl="1h")
    r = await create(h, token=parent["client_token"], id="mine")
    assert errors(r) == ["root or sudo privileges required to specify token id"]


# -- num_uses ---------------------------------------------------------------------------------


async def test_num_uses_then_403(h: Harness) -> None:
    auth = await new_token(h, policies=["default"], num_uses=3, ttl="1h")
    assert auth["num_uses"] == 3
    tok = auth["client_token"]
    first = await h.call("GET", "auth/token/lookup-self", token=tok)
    assert first.status_code == 200
    assert first.json()["data"]["num_uses"] == 2  # the use being spent is already counted
    assert (await h.call("GET", "auth/token/lookup-self", token=tok)).status_code == 200
    assert (await h.call("GET", "auth/token/lookup-self", token=tok)).status_code == 200
    r = await h.call("GET", "auth/token/lookup-self", token=tok)
    assert (r.status_code, r.json()) == (403, INVALID_TOKEN)
    assert (await lookup(h, tok)).status_code == 403


async def test_limited_use_token_cannot_create_children(h: Harness) -> None:
    auth = await new_token(h, policies=["creator"], num_uses=5, ttl="1h")
    r = await create(h, token=auth["client_token"])
    assert r.status_code == 400
    assert errors(r) == ["restricted use token cannot generate child tokens"]
    r = await create(h, num_uses=-1)
    assert errors(r) == ["number of uses cannot be negative"]


async def test_revoke_self_of_limited_use_token_stays_revoked(h: Harness) -> None:
    auth = await new_token(h, policies=["default"], num_uses=5, ttl="1h")
    r = await h.call("POST", "auth/token/revoke-self", token=auth["client_token"])
    assert r.status_code == 204
    assert (await lookup(h, auth["client_token"])).status_code == 403


# -- TTLs -------------------------------------------------------------------------------------


async def test_ttl_and_explicit_max_ttl(h: Harness) -> None:
    auth = await new_token(h, ttl="30m", explicit_max_ttl="5m", policies=["p1"])
    assert auth["lease_duration"] == 300
    r = await create(h, ttl="30m", explicit_max_ttl="5m", policies=["p1"])
    assert r.json()["warnings"] == [
        'TTL of "30m" exceeded the effective max_ttl of "5m"; TTL value is capped accordingly'
    ]
    data = (await lookup(h, auth["client_token"])).json()["data"]
    assert data["explicit_max_ttl"] == 300
    assert data["creation_ttl"] == 300
    assert 298 <= data["ttl"] <= 300
    # renewal cannot go past the explicit max
    r = await h.call("POST", "auth/token/renew", json={"token": auth["client_token"], "increment": "1h"})
    assert r.status_code == 200
    assert r.json()["auth"]["lease_duration"] <= 300
    assert r.json()["warnings"][0].startswith('TTL of "1h" exceeded the effective max_ttl of')


async def test_default_ttl_and_mount_max(h: Harness) -> None:
    auth = await new_token(h, policies=["p1"])
    assert auth["lease_duration"] == 768 * 3600
    h.core.auth_mounts.entries["token/"].config.max_lease_ttl = 3600
    r = await create(h, policies=["p1"], ttl="2h")
    assert r.json()["auth"]["lease_duration"] == 3600
    assert r.json()["warnings"] == [
        'TTL of "2h" exceeded the effective max_ttl of "1h"; TTL value is capped accordingly'
    ]


async def test_periodic_tokens(h: Harness) -> None:
    auth = await new_token(h, period="30m", policies=["p1"])
    assert auth["lease_duration"] == 1800
    data = (await lookup(h, auth["client_token"])).json()["data"]
    assert data["period"] == 1800
    r = await h.call("POST", "auth/token/renew", json={"token": auth["client_token"], "increment": "5h"})
    assert r.json()["auth"]["lease_duration"] == 1800  # a renewal resets to the period
    parent = await new_token(h, policies=["creator"], ttl="1h")
    r = await create(h, token=parent["client_token"], period="10m")
    assert errors(r) == ["root or sudo privileges required to create periodic token"]
    r = await create(h, period="1000h", policies=["p1"])
    assert r.json()["auth"]["lease_duration"] == 768 * 3600
    assert r.json()["warnings"] == [
        'period of "1000h" exceeded the effective max_ttl of "768h"; period value is capped accordingly'
    ]


# -- batch tokens -----------------------------------------------------------------------------


async def test_batch_tokens(h: Harness) -> None:
    parent = await new_token(h, policies=["creator", "p1"], ttl="1h")
    auth = await new_token(h, token=parent["client_token"], type="batch", ttl="10m")
    tok = auth["client_token"]
    assert tok.startswith("hvb.")
    assert len(tok) < 400
    assert auth["accessor"] == ""
    assert auth["token_type"] == "batch"
    assert auth["renewable"] is False
    assert auth["lease_duration"] == 600
    data = (await h.call("GET", "auth/token/lookup-self", token=tok)).json()["data"]
    assert data["type"] == "batch"
    assert data["id"] == tok
    assert data["renewable"] is False
    assert data["policies"] == ["creator", "default", "p1"]

    r = await h.call("POST", "auth/token/renew", json={"token": tok})
    assert errors(r) == ["batch tokens cannot be renewed"]
    r = await h.call("POST", "auth/token/revoke", json={"token": tok})
    assert errors(r) == ["batch tokens cannot be revoked"]
    r = await create(h, token=tok)
    assert errors(r) == ["batch tokens cannot create more tokens"]
    r = await create(h, type="batch", period="1h")
    assert errors(r) == ['batch tokens cannot have "period" set']
    r = await create(h, type="batch", num_uses=2)
    assert errors(r) == ['batch tokens cannot have "num_uses" set']
    r = await create(h, type="batch")
    assert errors(r) == ["batch tokens cannot be root tokens"]
    r = await create(h, type="weird")
    assert errors(r) == ["invalid 'token_type' value"]

    # dies with its parent
    r = await h.call("POST", "auth/token/revoke", json={"token": parent["client_token"]})
    assert r.status_code == 204
    r = await h.call("GET", "auth/token/lookup-self", token=tok)
    assert (r.status_code, r.json()) == (403, INVALID_TOKEN)


async def test_tampered_batch_token_is_invalid(h: Harness) -> None:
    auth = await new_token(h, type="batch", policies=["p1"], ttl="10m")
    tok = auth["client_token"]
    bad = tok[:-3] + ("AAA" if not tok.endswith("AAA") else "BBB")
    r = await h.call("GET", "auth/token/lookup-self", token=bad)
    assert r.status_code == 403


# -- roles ------------------------------------------------------------------------------------


async def test_role_crud_and_shape(h: Harness) -> None:
    r = await h.call("LIST", "auth/token/roles")
    assert r.status_code == 404
    r = await h.call("POST", "auth/token/roles/testrole", json={"allowed_policies": "p1,P2"})
    assert r.status_code == 204
    r = await h.call("GET", "auth/token/roles/testrole")
    assert r.json()["data"] == {
        "allowed_entity_aliases": None,
        "allowed_policies": ["p1", "p2"],
        "allowed_policies_glob": [],
        "disallowed_policies": [],
        "disallowed_policies_glob": [],
        "explicit_max_ttl": 0,
        "name": "testrole",
        "orphan": False,
        "path_suffix": "",
        "period": 0,
        "renewable": True,
        "token_explicit_max_ttl": 0,
        "token_no_default_policy": False,
        "token_period": 0,
        "token_type": "default-service",
    }
    r = await h.call("LIST", "auth/token/roles")
    assert r.json()["data"]["keys"] == ["testrole"]
    # an update keeps what was not sent
    r = await h.call(
        "POST", "auth/token/roles/testrole", json={"orphan": True, "period": "1h", "token_num_uses": 3}
    )
    data = (await h.call("GET", "auth/token/roles/testrole")).json()["data"]
    assert data["allowed_policies"] == ["p1", "p2"]
    assert (data["orphan"], data["period"], data["token_period"], data["token_num_uses"]) == (
        True,
        3600,
        3600,
        3,
    )
    r = await h.call("DELETE", "auth/token/roles/testrole")
    assert r.status_code == 204
    assert (await h.call("GET", "auth/token/roles/testrole")).status_code == 404
    r = await create(h, "auth/token/create/testrole")
    assert errors(r) == ["unknown role testrole"]


async def test_role_validation(h: Harness) -> None:
    r = await h.call("POST", "auth/token/roles/b", json={"token_type": "batch"})
    assert errors(r) == ["'token_type' cannot be 'batch' when role is set to generate non-orphan tokens"]
    r = await h.call("POST", "auth/token/roles/b", json={"token_type": "batch", "orphan": True})
    assert errors(r) == ["'token_type' cannot be 'batch' when role is set to generate renewable tokens"]
    r = await h.call("POST", "auth/token/roles/b", json={"token_type": "nope"})
    assert errors(r) == ["invalid 'token_type' value \"nope\""]
    r = await h.call("POST", "auth/token/roles/b", json={"path_suffix": "abc/../def"})
    assert errors(r) == ["error registering path suffix: path cannot contain parent references"]
    r = await h.call("POST", "auth/token/roles/b", json={"path_suffix": "v2"})  # Vault wants 3+ characters
    assert errors(r) == ["given role path suffix contains invalid characters; must match \\w[\\w-.]+\\w"]
    r = await h.call("POST", "auth/token/roles/b", json={"token_bound_cidrs": "10.0.0.0/8,127.0.0.1"})
    assert r.status_code == 204
    data = (await h.call("GET", "auth/token/roles/b")).json()["data"]
    assert data["token_bound_cidrs"] == ["10.0.0.0/8", "127.0.0.1"]
    r = await h.call("POST", "auth/token/roles/b", json={"token_bound_cidrs": "not-a-cidr"})
    assert r.status_code == 400
    r = await h.call("POST", "auth/token/roles/b", json={"explicit_max_ttl": "1000h"})
    assert r.status_code == 200
    assert "greater than system/mount allowed value" in r.json()["warnings"][0]


async def test_role_allowed_policies(h: Harness) -> None:
    await h.call("POST", "auth/token/roles/testrole", json={"allowed_policies": "p1"})
    auth = await new_token(h, path="auth/token/create/testrole", ttl="1h")
    assert auth["policies"] == ["default", "p1"]
    look = (await lookup(h, auth["client_token"])).json()["data"]
    assert look["path"] == "auth/token/create/testrole"
    assert look["role"] == "testrole"
    r = await create(h, "auth/token/create/testrole", policies=["p2"])
    assert r.status_code == 400
    assert errors(r) == [
        'token policies (["default" "p2"]) must be subset of the role\'s allowed policies (["default" "p1"]) '
        "or glob policies ([])"
    ]
    # the role lets a non-sudo parent grant policies it does not hold itself
    parent = await new_token(h, policies=["creator"], ttl="1h")
    child = await new_token(h, path="auth/token/create/testrole", token=parent["client_token"])
    assert child["policies"] == ["default", "p1"]


async def test_role_globs_and_disallowed(h: Harness) -> None:
    await h.call(
        "POST",
        "auth/token/roles/g",
        json={
            "allowed_policies_glob": ["dev-*"],
            "disallowed_policies_glob": "*-b",
            "disallowed_policies": "ops",
        },
    )
    auth = await new_token(h, path="auth/token/create/g", policies=["dev-a"], ttl="1h")
    assert auth["policies"] == ["default", "dev-a"]
    r = await create(h, "auth/token/create/g", policies=["dev-b"])
    assert errors(r) == ['token policy "dev-b" is disallowed by this role']
    r = await create(h, "auth/token/create/g", policies=["p1"])
    assert r.status_code == 400
    assert "must be subset of the role's allowed policies" in errors(r)[0]

    await h.call("POST", "auth/token/roles/deny", json={"disallowed_policies": "p2"})
    parent = await new_token(h, policies=["creator", "p1"], ttl="1h")
    child = await new_token(h, path="auth/token/create/deny", token=parent["client_token"])
    assert child["policies"] == ["creator", "default", "p1"]  # no allow list: the parent's policies
    r = await create(h, "auth/token/create/deny", policies=["p2"])
    assert errors(r) == ['token policy "p2" is disallowed by this role']
    # with "default" disallowed it is not added, but an inherited one is refused, as in Vault
    await h.call("POST", "auth/token/roles/nodef", json={"disallowed_policies": "default"})
    auth = await new_token(h, path="auth/token/create/nodef", policies=["p1"], ttl="1m")
    assert auth["policies"] == ["p1"]
    r = await create(h, "auth/token/create/nodef", token=parent["client_token"])
    assert errors(r) == ['token policy "default" is disallowed by this role']


async def test_role_orphan_period_suffix_and_num_uses(h: Harness) -> None:
    await h.call(
        "POST",
        "auth/token/roles/svc",
        json={
            "orphan": True,
            "token_period": "2h",
            "path_suffix": "v2.0",
            "token_num_uses": 4,
            "renewable": True,
        },
    )
    parent = await new_token(h, policies=["creator"], ttl="1h")
    auth = await new_token(h, path="auth/token/create/svc", token=parent["client_token"], ttl="5m")
    assert auth["orphan"] is True
    assert auth["lease_duration"] == 7200  # the role's period wins over the ttl
    assert auth["num_uses"] == 4
    data = (await lookup(h, auth["client_token"])).json()["data"]
    assert data["path"] == "auth/token/create/svc/v2.0"
    assert data["orphan"] is True
    # the orphan survives its creator
    await h.call("POST", "auth/token/revoke", json={"token": parent["client_token"]})
    assert (await lookup(h, auth["client_token"])).status_code == 200
    # renewal resets to the role's current period
    await h.call("POST", "auth/token/roles/svc", json={"token_period": "3h"})
    r = await h.call("POST", "auth/token/renew", json={"token": auth["client_token"]})
    assert r.json()["auth"]["lease_duration"] == 3 * 3600


async def test_role_batch_and_not_renewable(h: Harness) -> None:
    r = await h.call(
        "POST", "auth/token/roles/b", json={"token_type": "batch", "orphan": True, "renewable": False}
    )
    assert r.status_code == 204
    auth = await new_token(h, path="auth/token/create/b", policies=["p1"], ttl="1m")
    assert auth["client_token"].startswith("hvb.")
    assert auth["orphan"] is True
    await h.call("POST", "auth/token/roles/nr", json={"renewable": False})
    auth = await new_token(h, path="auth/token/create/nr", policies=["p1"], ttl="1m")
    assert auth["renewable"] is False
    r = await h.call("POST", "auth/token/renew", json={"token": auth["client_token"]})
    assert errors(r) == ["lease is not renewable"]


async def test_entity_alias_needs_a_role_and_allow_list(h: Harness) -> None:
    r = await create(h, entity_alias="bob")
    assert errors(r) == ["'entity_alias' is only allowed in combination with token role"]
    await h.call("POST", "auth/token/roles/ea", json={"allowed_entity_aliases": "bob,svc-*"})
    r = await create(h, "auth/token/create/ea", entity_alias="alice", policies=["p1"])
    assert errors(r) == ["invalid 'entity_alias' value"]
    r = await create(h, "auth/token/create/ea", entity_alias="SVC-one", policies=["p1"], ttl="1m")
    assert r.status_code == 200


# -- lookup -----------------------------------------------------------------------------------


async def test_lookup_shapes(h: Harness) -> None:
    auth = await new_token(h, policies=["p1"], ttl="1h", explicit_max_ttl="2h", meta={"a": "b"})
    tok = auth["client_token"]
    r = await lookup(h, tok)
    data = r.json()["data"]
    assert set(data) == {
        "accessor",
        "creation_time",
        "creation_ttl",
        "display_name",
        "entity_id",
        "expire_time",
        "explicit_max_ttl",
        "id",
        "issue_time",
        "meta",
        "num_uses",
        "orphan",
        "path",
        "policies",
        "renewable",
        "ttl",
        "type",
    }
    assert data["id"] == tok
    assert data["accessor"] == auth["accessor"]
    assert isinstance(data["creation_time"], int)
    assert abs(data["creation_time"] - time.time()) < 5
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", data["expire_time"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", data["issue_time"])
    assert data["renewable"] is True
    assert data["display_name"] == "token"
    assert (data["creation_ttl"], data["explicit_max_ttl"], data["entity_id"]) == (3600, 7200, "")

    same = (await h.call("GET", f"auth/token/lookup/{tok}")).json()["data"]
    assert same["id"] == tok
    self_view = (await h.call("POST", "auth/token/lookup-self", token=tok)).status_code
    assert self_view == 403  # default policy grants read (GET) only
    self_view_get = (await h.call("GET", "auth/token/lookup-self", token=tok)).json()["data"]
    assert self_view_get["id"] == tok

    by_accessor = (
        await h.call("POST", "auth/token/lookup-accessor", json={"accessor": auth["accessor"]})
    ).json()
    assert by_accessor["data"]["id"] == ""
    assert by_accessor["data"]["accessor"] == auth["accessor"]

    r = await lookup(h, "hvs.doesnotexist000000000000")
    assert (r.status_code, r.json()) == (403, {"errors": ["bad token"]})
    r = await h.call("POST", "auth/token/lookup-accessor", json={"accessor": "nope"})
    assert (r.status_code, r.json()) == (400, {"errors": ["invalid accessor"]})


async def test_root_token_lookup_self(h: Harness) -> None:
    data = (await h.call("GET", "auth/token/lookup-self")).json()["data"]
    assert data["policies"] == ["root"]
    assert data["path"] == "auth/token/root"
    assert data["display_name"] == "root"
    assert (data["ttl"], data["expire_time"], data["orphan"], data["meta"]) == (0, None, True, None)
    assert "issue_time" not in data


# -- renew ------------------------------------------------------------------------------------


async def test_renew_variants(h: Harness) -> None:
    auth = await new_token(h, policies=["default"], ttl="1h")
    tok = auth["client_token"]
    r = await h.call("POST", "auth/token/renew", json={"token": tok, "increment": "2h"})
    assert r.status_code == 200
    assert r.json()["auth"]["client_token"] == tok
    assert r.json()["auth"]["lease_duration"] == 7200
    data = (await lookup(h, tok)).json()["data"]
    assert data["creation_ttl"] == 3600
    assert 7190 <= data["ttl"] <= 7200
    assert "last_renewal_time" in data
    assert "last_renewal" in data

    r = await h.call("POST", "auth/token/renew-self", json={"increment": None}, token=tok)  # hvac sends null
    assert r.status_code == 200, r.text
    assert r.json()["auth"]["client_token"] == tok
    assert r.json()["auth"]["lease_duration"] == 7200  # without increment: the last granted TTL

    r = await h.call(
        "POST", "auth/token/renew-accessor", json={"accessor": auth["accessor"], "increment": 600}
    )
    assert r.status_code == 200
    assert r.json()["auth"]["client_token"] == ""
    assert r.json()["auth"]["lease_duration"] == 600
    assert r.json()["auth"]["accessor"] == auth["accessor"]

    r = await h.call("POST", "auth/token/renew", json={"token": "hvs.nope000000000000000000"})
    assert errors(r) == ["token not found"]
    r = await h.call("POST", "auth/token/renew", json={})
    assert errors(r) == ["missing token ID"]
    r = await h.call("POST", "auth/token/renew-accessor", json={"accessor": "nope"})
    assert errors(r) == ["invalid accessor"]
    r = await h.call("POST", "auth/token/renew-self", json={})
    assert errors(r) == ["invalid lease ID"]  # the init root token has no lease


async def test_non_renewable_token(h: Harness) -> None:
    auth = await new_token(h, policies=["p1"], ttl="1h", renewable=False)
    assert auth["renewable"] is False
    r = await h.call("POST", "auth/token/renew", json={"token": auth["client_token"]})
    assert (r.status_code, errors(r)) == (400, ["lease is not renewable"])


# -- revoke -----------------------------------------------------------------------------------


async def test_revoke_tree(h: Harness) -> None:
    parent = await new_token(h, policies=["creator"], ttl="1h")
    child = await new_token(h, token=parent["client_token"])
    grandchild = await new_token(h, token=child["client_token"])
    batch = await new_token(h, token=child["client_token"], type="batch", ttl="1m")
    other = await new_token(h, policies=["p1"], ttl="1h")
    r = await h.call("POST", "auth/token/revoke", json={"token": parent["client_token"]})
    assert r.status_code == 204
    for tok in (parent, child, grandchild, batch):
        r = await h.call("GET", "auth/token/lookup-self", token=tok["client_token"])
        assert (r.status_code, r.json()) == (403, INVALID_TOKEN)
    assert (await lookup(h, other["client_token"])).status_code == 200
    # revoking an unknown token is a silent no-op
    r = await h.call("POST", "auth/token/revoke", json={"token": "hvs.gone00000000000000000000"})
    assert r.status_code == 204


async def test_revoke_self_and_accessor(h: Harness) -> None:
    a = await new_token(h, policies=["default"], ttl="1h")
    r = await h.call("POST", "auth/token/revoke-self", token=a["client_token"])
    assert r.status_code == 204
    assert (await lookup(h, a["client_token"])).status_code == 403

    b = await new_token(h, policies=["p1"], ttl="1h")
    r = await h.call("POST", "auth/token/revoke-accessor", json={"accessor": b["accessor"]})
    assert r.status_code == 204
    assert (await lookup(h, b["client_token"])).status_code == 403
    r = await h.call("POST", "auth/token/lookup-accessor", json={"accessor": b["accessor"]})
    assert (r.status_code, errors(r)) == (400, ["invalid accessor"])
    r = await h.call("POST", "auth/token/revoke-accessor", json={"accessor": b["accessor"]})
    assert r.json()["warnings"] == ["No token found with this accessor"]


async def test_revoke_orphan_keeps_children(h: Harness) -> None:
    parent = await new_token(h, policies=["creator"], ttl="1h")
    child = await new_token(h, token=parent["client_token"])
    grandchild = await new_token(h, token=child["client_token"])
    assert (await lookup(h, child["client_token"])).json()["data"]["orphan"] is False

    # needs sudo: the creator policy grants update but not sudo
    r = await h.call(
        "POST",
        "auth/token/revoke-orphan",
        json={"token": child["client_token"]},
        token=parent["client_token"],
    )
    assert (r.status_code, errors(r)) == (400, ["root or sudo privileges required to revoke and orphan"])

    r = await h.call("POST", "auth/token/revoke-orphan", json={"token": parent["client_token"]})
    assert r.status_code == 204
    assert (await lookup(h, parent["client_token"])).status_code == 403
    data = (await lookup(h, child["client_token"])).json()["data"]
    assert data["orphan"] is True
    assert (await lookup(h, grandchild["client_token"])).json()["data"]["orphan"] is False
    # the former child is now a tree root of its own
    await h.call("POST", "auth/token/revoke", json={"token": child["client_token"]})
    assert (await lookup(h, grandchild["client_token"])).status_code == 403


# -- accessors and tidy -----------------------------------------------------------------------


async def test_accessors_list_needs_sudo(h: Harness) -> None:
    a = await new_token(h, policies=["creator"], ttl="1h")
    r = await h.call("LIST", "auth/token/accessors", token=a["client_token"])
    assert (r.status_code, r.json()) == (403, DENIED)
    s = await new_token(h, policies=["sudoer"], ttl="1h")
    r = await h.call("LIST", "auth/token/accessors", token=s["client_token"])
    assert r.status_code == 200
    keys = r.json()["data"]["keys"]
    assert a["accessor"] in keys
    assert s["accessor"] in keys


async def test_tidy_removes_dangling_entries(h: Harness) -> None:
    parent = await new_token(h, policies=["creator"], ttl="1h")
    child = await new_token(h, token=parent["client_token"])
    store = h.core.tokens
    parent_entry = await store.lookup(parent["client_token"])
    assert parent_entry is not None
    # simulate a crash that left the parent's record gone but its indexes behind
    await store.storage.delete(f"id/{store.salt_id(parent['client_token'])}")
    store.invalidate()
    r = await h.call("POST", "auth/token/tidy")
    assert r.status_code == 202
    assert r.json()["warnings"] == [
        "Tidy operation successfully started. Any information from the operation will be printed to "
        "Vault's server logs."
    ]
    task = backend(h).tidy_task
    assert task is not None
    await task
    assert await store.storage.list(f"parent/{store.salt_id(parent['client_token'])}/") == []
    assert await store.storage.get(f"accessor/{store.salt_id(parent['accessor'])}") is None
    data = (await lookup(h, child["client_token"])).json()["data"]
    assert data["orphan"] is True


async def test_tidy_revokes_expired_tokens(h: Harness) -> None:
    auth = await new_token(h, policies=["p1"], ttl="1h")
    entry = await h.core.tokens.lookup(auth["client_token"])
    assert entry is not None
    entry.expire_time = time.time() - 5
    await h.core.tokens.update(entry)
    await h.call("POST", "auth/token/tidy")
    task = backend(h).tidy_task
    assert task is not None
    await task
    assert await h.core.tokens.lookup_raw(auth["client_token"]) is None


# -- misc -------------------------------------------------------------------------------------


async def test_unknown_parameter_warns_and_help_works(h: Harness) -> None:
    r = await create(h, policies=["p1"], ttl="1m", bogus=1)
    assert r.json()["warnings"] == ["Endpoint ignored these unrecognized parameters: [bogus]"]
    r = await h.call("GET", "auth/token/create?help=1")
    assert r.status_code == 200
    assert "help" in r.json() and "openapi" in r.json()  # bare, as Vault answers help


async def test_expiring_root_cannot_mint_non_expiring_root(h: Harness) -> None:
    expiring_root = await new_token(h, ttl="1h")
    assert expiring_root["policies"] == ["root"]
    assert expiring_root["lease_duration"] == 3600
    r = await create(h, token=expiring_root["client_token"])
    assert errors(r) == ["expiring root tokens cannot create non-expiring root tokens"]
    capped = await new_token(h, explicit_max_ttl="10m")
    assert capped["lease_duration"] == 600  # root, but still bound by explicit_max_ttl


async def test_role_and_request_limits_merge_with_warnings(h: Harness) -> None:
    await h.call("POST", "auth/token/roles/m", json={"token_explicit_max_ttl": "1h", "token_period": "20m"})
    r = await create(h, "auth/token/create/m", explicit_max_ttl="2h", period="30m", policies=["p1"])
    assert r.status_code == 200
    assert r.json()["warnings"] == [
        "Explicit max TTL specified both during creation call and in role; using the lesser value of 3600 seconds",
        "Period specified both during creation call and in role; using the lesser value of 1200 seconds",
    ]
    assert r.json()["auth"]["lease_duration"] == 1200


class FakeIdentity:
    """Just enough of the identity store for the token backend."""

    def __init__(self) -> None:
        self.entities: dict[str, dict[str, Any]] = {}

    async def policies_for(self, entity_id: str) -> tuple[list[str], dict[str, Any]]:
        return (["from-group", "ROOT"], self.entities.get(entity_id, {}))

    async def create_or_fetch_entity(
        self, *, alias_name: str, mount_accessor: str, mount_type: str
    ) -> dict[str, Any]:
        entity = self.entities.setdefault(
            alias_name, {"id": f"ent-{alias_name}", "disabled": alias_name == "off"}
        )
        entity["mount"] = (mount_accessor, mount_type)
        return entity


async def test_identity_policies_and_entity_alias(h: Harness) -> None:
    identity = FakeIdentity()
    h.core.identity = identity
    await h.call("POST", "auth/token/roles/ea", json={"allowed_entity_aliases": "svc-*,off"})
    auth = await new_token(
        h, path="auth/token/create/ea", entity_alias="svc-a", policies=["creator"], ttl="1h"
    )
    assert auth["entity_id"] == "ent-svc-a"
    assert auth["token_policies"] == ["creator", "default"]
    assert auth["identity_policies"] == ["from-group"]  # never root from identity
    assert auth["policies"] == ["creator", "default", "from-group"]
    assert identity.entities["svc-a"]["mount"][1] == "token"
    data = (await lookup(h, auth["client_token"])).json()["data"]
    assert data["identity_policies"] == ["from-group"]
    assert data["entity_id"] == "ent-svc-a"
    # children inherit the entity unless orphaned
    child = await new_token(h, token=auth["client_token"])
    assert child["entity_id"] == "ent-svc-a"
    r = await create(h, "auth/token/create/ea", entity_alias="off", policies=["p1"])
    assert (r.status_code, errors(r)) == (403, ["entity from given entity alias is disabled"])


async def test_bound_cidrs_match_an_ipv4_mapped_ipv6_peer_like_logins_do() -> None:
    """A dual-stack listener reports ::ffff:a.b.c.d; the token bound to a.b.c.d must still work."""
    from strongroom.core.tokens import TokenEntry
    from strongroom.logical.errors import PermissionDenied
    from strongroom.logical.request import Connection, Operation, Request

    async with running_core() as h:
        token = TokenEntry(id="x", policies=["default"], bound_cidrs=["127.0.0.1/32"])
        for peer, allowed in (
            ("::ffff:127.0.0.1", True),
            ("127.0.0.1", True),
            ("::ffff:10.0.0.1", False),
            ("bogus", False),
        ):
            req = Request(Operation.READ, "x", connection=Connection(remote_addr=peer))
            if allowed:
                h.core._check_cidr(token, req)
            else:
                with pytest.raises(PermissionDenied):
                    h.core._check_cidr(token, req)
