"""The ldap auth method over HTTP, with ldap3's MOCK_SYNC directory standing in for a server.

The real-server behaviour (StartTLS, failover, posixGroup filters) is in
tests/integration/test_ldap_slapd.py; these tests pin the config surface, the templates
and escaping, and the login decisions.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import ldap3
import pytest

from strongroom.auth.ldap import (
    BIND_FAILED,
    DEFAULT_GROUPFILTER,
    DEFAULT_USERFILTER,
    LdapBackend,
    group_cn,
    lockout_key,
    render_filter,
)
from strongroom.core.mounts import MountEntry
from strongroom.testing import Harness, running_core

MOUNT = "auth/ldap/"
BASE = "dc=ex,dc=com"
ADMIN = f"cn=admin,{BASE}"
USERS = f"ou=users,{BASE}"
GROUPS = f"ou=groups,{BASE}"


def _mock_server() -> ldap3.Server:
    server = ldap3.Server("mock")
    seed = ldap3.Connection(server, client_strategy=ldap3.MOCK_SYNC)
    add = seed.strategy.add_entry
    add(ADMIN, {"objectClass": "person", "cn": "admin", "sn": "a", "userPassword": "admin-pw"})
    add(
        f"uid=alice,{USERS}",
        {
            "objectClass": "inetOrgPerson",
            "uid": "alice",
            "cn": "Alice",
            "sn": "A",
            "mail": "alice@ex.com",
            "userPassword": "alice-pw",
        },
    )
    add(
        f"uid=bob,{USERS}",
        {"objectClass": "inetOrgPerson", "uid": "bob", "cn": "Bob", "sn": "B", "userPassword": "bob-pw"},
    )
    add(
        f"cn=Engineers,{GROUPS}",
        {"objectClass": "groupOfNames", "cn": "Engineers", "member": f"uid=alice,{USERS}"},
    )
    add(f"cn=ops,{GROUPS}", {"objectClass": "posixGroup", "cn": "ops", "memberUid": ["alice", "bob"]})
    return server


class MockDirectory:
    """A connection factory for LdapBackend: MOCK_SYNC connections that record every bind DN."""

    def __init__(self) -> None:
        self.server = _mock_server()
        self.binds: list[str] = []

    def __call__(self, **kw: Any) -> ldap3.Connection:
        conn = ldap3.Connection(self.server, client_strategy=ldap3.MOCK_SYNC, raise_exceptions=False)
        conn.open()
        original = conn.rebind

        def rebind(user: str | None = None, password: str | None = None, **more: Any) -> bool:
            self.binds.append(user or "")
            return bool(original(user=user, password=password, **more))

        conn.rebind = rebind
        return conn


@pytest.fixture
async def h() -> AsyncIterator[Harness]:
    async with running_core() as harness:
        if harness.core.expiration is not None:
            await harness.core.expiration.stop()
        await harness.core.enable_mount(MountEntry("ldap/", "ldap", table="auth"))
        yield harness


@pytest.fixture
def directory(h: Harness) -> MockDirectory:
    route = h.core.router.get(MOUNT)
    assert route is not None and isinstance(route.backend, LdapBackend)
    mock = MockDirectory()
    route.backend.connection_factory = mock
    return mock


async def call(h: Harness, method: str, path: str, body: Any = None) -> httpx.Response:
    return await h.call(method, MOUNT + path, json=body)


async def configure(h: Harness, **extra: Any) -> None:
    body = {
        "url": "ldap://mock",
        "binddn": ADMIN,
        "bindpass": "admin-pw",
        "userdn": USERS,
        "userattr": "uid",
        "groupdn": GROUPS,
        **extra,
    }
    r = await call(h, "POST", "config", body)
    assert r.status_code == 204, r.text


async def login(h: Harness, user: str, password: str) -> httpx.Response:
    return await h.client.post(f"/v1/{MOUNT}login/{user}", json={"password": password})


# -- pure helpers ---------------------------------------------------------------------------


def test_render_filter_substitutes_and_refuses_unknown_actions() -> None:
    assert render_filter(DEFAULT_USERFILTER, {"UserAttr": "uid", "Username": "a"}) == "(uid=a)"
    assert render_filter("({{ .Username }})", {"Username": "x"}) == "(x)"
    with pytest.raises(ValueError):
        render_filter("({{.Password}})", {"Username": "x"})
    with pytest.raises(ValueError):
        render_filter("({{ range .Groups }})", {"Username": "x"})
    with pytest.raises(ValueError):
        render_filter("(uid={{.Username)", {"Username": "x"})


def test_group_cn_and_lockout_key() -> None:
    assert group_cn(f"cn=Engineers,{GROUPS}") == "Engineers"
    assert group_cn("plain-name") == "plain-name"
    assert lockout_key("  Alice ") == "alice"


# -- config ----------------------------------------------------------------------------------


async def test_config_defaults_and_bindpass_hidden(h: Harness) -> None:
    data = (await call(h, "GET", "config")).json()["data"]
    assert data["url"] == "ldap://127.0.0.1"
    assert data["userattr"] == "cn" and data["groupattr"] == "cn"
    assert data["groupfilter"] == DEFAULT_GROUPFILTER and data["userfilter"] == DEFAULT_USERFILTER
    assert data["deny_null_bind"] is True and data["insecure_tls"] is False
    assert data["request_timeout"] == 90 and data["tls_min_version"] == "tls12"
    await configure(h)
    data = (await call(h, "GET", "config")).json()["data"]
    assert "bindpass" not in data and data["binddn"] == ADMIN
    # a partial update keeps the rest (bindpass included)
    await call(h, "POST", "config", {"starttls": True})
    data = (await call(h, "GET", "config")).json()["data"]
    assert data["starttls"] is True and data["userdn"] == USERS


async def test_config_non_defaults_read_back(h: Harness) -> None:
    sent = {
        "url": "LDAP://Example.com",
        "anonymous_group_search": True,
        "case_sensitive_names": True,
        "connection_timeout": 60,
        "deny_null_bind": False,
        "dereference_aliases": "always",
        "discoverdn": True,
        "groupfilter": "((memberUid={{.Username}})(member={{.UserDN}}))",
        "max_page_size": 60,
        "request_timeout": "1m",
        "tls_max_version": "tls11",
        "tls_min_version": "tls11",
        "token_bound_cidrs": ["10.0.0.0"],
        "token_period": 10,
        "token_policies": ["foo"],
        "upndomain": "bar",
        "use_token_groups": True,
        "username_as_alias": True,
    }
    assert (await call(h, "POST", "config", sent)).status_code == 204
    data = (await call(h, "GET", "config")).json()["data"]
    assert data["url"] == "ldap://example.com"
    assert data["request_timeout"] == 60 and data["connection_timeout"] == 60
    for key in (
        "anonymous_group_search",
        "dereference_aliases",
        "groupfilter",
        "max_page_size",
        "token_bound_cidrs",
        "token_policies",
        "upndomain",
        "username_as_alias",
    ):
        assert data[key] == sent[key], key


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"client_tls_cert": "x"}, "both client_tls_cert and client_tls_key must be set"),
        ({"client_tls_key": "x"}, "both client_tls_cert and client_tls_key must be set"),
        ({"tls_min_version": "cats"}, "invalid 'tls_min_version'"),
        ({"tls_min_version": "tls13", "tls_max_version": "tls12"}, "'tls_max_version' must be greater"),
        ({"certificate": "not a pem"}, "failed to parse certificate"),
        ({"groupfilter": "(member={{.Password}})"}, "invalid groupfilter"),
        ({"userfilter": "(uid={{.UserDN}})"}, "invalid userfilter"),
        ({"url": "http://example.com"}, "invalid url"),
        ({"dereference_aliases": "sometimes"}, "allowed values"),
    ],
)
async def test_config_refuses_bad_values(h: Harness, body: dict[str, Any], message: str) -> None:
    r = await call(h, "POST", "config", body)
    assert r.status_code == 400
    assert message in r.json()["errors"][0]


# -- groups and users ------------------------------------------------------------------------


async def test_groups_and_users_crud(h: Harness) -> None:
    assert (await call(h, "LIST", "groups")).status_code == 404
    assert (await call(h, "GET", "groups/cats")).status_code == 404
    assert (await call(h, "POST", "groups/Cats", {"policies": "Purr,meow"})).status_code == 204
    assert (await call(h, "GET", "groups/CATS")).json()["data"] == {"policies": ["purr", "meow"]}
    assert (await call(h, "LIST", "groups")).json()["data"] == {"keys": ["cats"]}
    assert (await call(h, "POST", "users/Tom", {"groups": ["a", "b"], "policies": ["p"]})).status_code == 204
    assert (await call(h, "GET", "users/tom")).json()["data"] == {"groups": "a,b", "policies": ["p"]}
    assert (await call(h, "LIST", "users")).json()["data"] == {"keys": ["tom"]}
    assert (await call(h, "DELETE", "users/tom")).status_code == 204
    assert (await call(h, "DELETE", "groups/cats")).status_code == 204
    assert (await call(h, "DELETE", "groups/cats")).status_code == 204
    assert (await call(h, "GET", "users/tom")).status_code == 404


# -- login -------------------------------------------------------------------------------


async def test_login_maps_groups_to_policies(h: Harness, directory: MockDirectory) -> None:
    await configure(h, token_policies="base")
    await call(h, "POST", "groups/engineers", {"policies": "eng"})
    await call(h, "POST", "groups/ops", {"policies": "ops"})
    await call(h, "POST", "users/alice", {"policies": "mine"})
    r = await login(h, "alice", "alice-pw")
    assert r.status_code == 200, r.text
    auth = r.json()["auth"]
    assert auth["metadata"] == {"username": "alice"}
    assert {"base", "eng", "ops", "mine", "default"} <= set(auth["policies"])
    assert directory.binds[:2] == [ADMIN, f"uid=alice,{USERS}"]


async def test_case_sensitive_names_keeps_group_case(h: Harness, directory: MockDirectory) -> None:
    await configure(h, case_sensitive_names=True)
    await call(h, "POST", "groups/engineers", {"policies": "lower"})
    await call(h, "POST", "groups/Engineers", {"policies": "upper"})
    pols = set((await login(h, "alice", "alice-pw")).json()["auth"]["policies"])
    assert "upper" in pols and "lower" not in pols


async def test_unknown_user_and_wrong_password_are_identical(h: Harness, directory: MockDirectory) -> None:
    await configure(h)
    wrong = await login(h, "alice", "nope")
    unknown = await login(h, "zed", "nope")
    assert wrong.status_code == unknown.status_code == 400
    assert wrong.json() == unknown.json() == {"errors": [BIND_FAILED]}
    # the unknown user still cost one bind, against a DN no entry has
    assert any(dn.startswith("uid=strongroom-absent-") for dn in directory.binds)


async def test_filter_metacharacters_are_escaped(h: Harness, directory: MockDirectory) -> None:
    await configure(h)
    assert (await login(h, "*", "alice-pw")).json() == {"errors": [BIND_FAILED]}
    assert (await login(h, "al*", "alice-pw")).json() == {"errors": [BIND_FAILED]}


async def test_lockout_counts_every_spelling(h: Harness, directory: MockDirectory) -> None:
    await configure(h)
    for variant in ("bob", "Bob", "BOB", "bob%20", "%20BoB"):
        assert (await login(h, variant, "bad")).status_code == 400
    assert (await login(h, "bob", "bob-pw")).status_code == 403


async def test_success_resets_the_counter(h: Harness, directory: MockDirectory) -> None:
    await configure(h)
    for _ in range(4):
        await login(h, "bob", "bad")
    assert (await login(h, "Bob", "bob-pw")).status_code == 200
    for _ in range(4):
        await login(h, "bob", "bad")
    assert (await login(h, "bob", "bob-pw")).status_code == 200


async def test_empty_password_and_null_bind(h: Harness, directory: MockDirectory) -> None:
    await configure(h)
    r = await login(h, "alice", "")
    assert r.status_code == 400 and "zero length" in r.json()["errors"][0]


async def test_upndomain_and_userdn_forms_of_the_bind_dn(h: Harness, directory: MockDirectory) -> None:
    await configure(h, binddn="", bindpass="", upndomain="ex.com")
    await login(h, "alice", "alice-pw")
    assert "alice@ex.com" in directory.binds
    directory.binds.clear()
    await call(h, "POST", "config", {"upndomain": ""})
    r = await login(h, "alice", "alice-pw")
    assert r.status_code == 200, r.text
    assert directory.binds[0] == f"uid=alice,{USERS}"
    # a DN-special character is escaped, not interpreted
    directory.binds.clear()
    await login(h, "alice,ou=admins", "x")
    assert directory.binds[0] == f"uid=alice\\,ou\\=admins,{USERS}"


async def test_userfilter_variant(h: Harness, directory: MockDirectory) -> None:
    await configure(h, userfilter="(mail={{.Username}})")
    r = await login(h, "alice@ex.com", "alice-pw")
    assert r.status_code == 200, r.text
    assert r.json()["auth"]["metadata"] == {"username": "alice@ex.com"}


async def test_bad_service_account_is_a_bind_failure(h: Harness, directory: MockDirectory) -> None:
    await configure(h, bindpass="wrong")
    assert (await login(h, "alice", "alice-pw")).json() == {"errors": [BIND_FAILED]}


# -- renewal ------------------------------------------------------------------------------------


async def test_renewal_searches_as_the_binddn_and_never_binds_as_the_user(
    h: Harness, directory: MockDirectory
) -> None:
    """The login password is not kept: a renewal binds as binddn only, then compares policies."""
    await configure(h, token_policies="base")
    await call(h, "POST", "groups/engineers", {"policies": "eng"})
    auth = (await login(h, "alice", "alice-pw")).json()["auth"]
    token = auth["client_token"]
    directory.binds.clear()
    r = await h.call("POST", "auth/token/renew-self", json={}, token=token)
    assert r.status_code == 200, r.text
    assert directory.binds and set(directory.binds) == {ADMIN}
    # the local mapping of an LDAP group is part of the comparison
    await call(h, "POST", "groups/engineers", {"policies": "eng,more"})
    r = await h.call("POST", "auth/token/renew-self", json={}, token=token)
    assert r.status_code == 400 and r.json() == {"errors": ["policies have changed, not renewing"]}
    # the service account failing is a refusal too, with the login's text
    await call(h, "POST", "groups/engineers", {"policies": "eng"})
    await configure(h, token_policies="base", bindpass="wrong")
    r = await h.call("POST", "auth/token/renew-self", json={}, token=token)
    assert r.status_code == 400 and r.json() == {"errors": [BIND_FAILED]}
