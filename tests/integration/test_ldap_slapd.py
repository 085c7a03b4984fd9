"""The ldap auth method against a real OpenLDAP slapd (tests/integration/slapd_server.py).

One slapd serves the whole module; each test gets a fresh in-memory core with ``auth/ldap``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import ldap3
import pytest

from strongroom.auth.ldap import BIND_FAILED, RENEW_USER_GONE
from strongroom.core.mounts import MountEntry
from strongroom.testing import Harness, running_core
from tests.integration.slapd_server import (
    SlapdServer,
    SlapdStartError,
    SlapdUnavailable,
    slapd_unavailable,
    start_slapd,
)

MOUNT = "auth/ldap/"


@pytest.fixture(scope="module")
def slapd() -> Iterator[SlapdServer]:
    try:
        with start_slapd() as server:
            yield server
    except SlapdUnavailable as exc:
        slapd_unavailable(str(exc))
    except SlapdStartError as exc:
        pytest.fail(f"slapd would not start: {exc}", pytrace=False)


@pytest.fixture
async def h() -> AsyncIterator[Harness]:
    async with running_core() as harness:
        if harness.core.expiration is not None:
            await harness.core.expiration.stop()
        await harness.core.enable_mount(MountEntry("ldap/", "ldap", table="auth"))
        await harness.core.policies.put(
            "kv-reader", 'path "sys/policies/acl/kv-reader" { capabilities = ["read"] }'
        )
        yield harness


async def call(
    h: Harness, method: str, path: str, body: Any = None, token: str | None = None
) -> httpx.Response:
    return await h.call(method, MOUNT + path, json=body, token=token)


async def configure(h: Harness, slapd: SlapdServer, **extra: Any) -> None:
    body: dict[str, Any] = {
        "url": slapd.url,
        "binddn": slapd.root_dn,
        "bindpass": slapd.root_pw,
        "userdn": slapd.users_dn,
        "userattr": "uid",
        "groupdn": slapd.groups_dn,
        "request_timeout": 10,
        "connection_timeout": 5,
    }
    body.update(extra)
    r = await call(h, "POST", "config", body)
    assert r.status_code == 204, r.text


async def login(h: Harness, user: str, password: str) -> httpx.Response:
    return await h.client.post(f"/v1/{MOUNT}login/{user}", json={"password": password})


async def test_login_with_group_policies_and_token_works(h: Harness, slapd: SlapdServer) -> None:
    await configure(h, slapd, token_policies="base")
    assert (await call(h, "POST", "groups/engineers", {"policies": "eng"})).status_code == 204
    assert (await call(h, "POST", "groups/Admins", {"policies": "kv-reader"})).status_code == 204
    assert (
        await call(h, "POST", "users/alice", {"policies": "personal", "groups": "local-team"})
    ).status_code == 204
    assert (await call(h, "POST", "groups/local-team", {"policies": "team"})).status_code == 204

    r = await login(h, "alice", slapd.users["alice"].password)
    assert r.status_code == 200, r.text
    auth = r.json()["auth"]
    assert auth["metadata"] == {"username": "alice"}
    assert set(auth["policies"]) >= {"base", "eng", "kv-reader", "personal", "team", "default"}
    # the token works: kv-reader (via the LDAP group "admins") may read a policy
    token = auth["client_token"]
    me = await h.call("GET", "auth/token/lookup-self", token=token)
    assert me.status_code == 200
    assert me.json()["data"]["display_name"].endswith("alice")
    read = await h.call("GET", "sys/policies/acl/kv-reader", token=token)
    assert read.status_code == 200, read.text
    denied = await h.call("GET", "sys/policies/acl/default", token=token)
    assert denied.status_code == 403


async def test_groupfilter_matches_member_and_memberuid(h: Harness, slapd: SlapdServer) -> None:
    await configure(h, slapd)
    await call(h, "POST", "groups/engineers", {"policies": "eng"})
    await call(h, "POST", "groups/ops", {"policies": "ops"})
    r = await login(h, "bob", slapd.users["bob"].password)  # member of engineers, memberUid of ops
    assert r.status_code == 200, r.text
    assert {"eng", "ops"} <= set(r.json()["auth"]["policies"])
    # only the posixGroup (memberUid) form
    await configure(h, slapd, groupfilter="(&(objectClass=posixGroup)(memberUid={{.Username}}))")
    r = await login(h, "bob", slapd.users["bob"].password)
    pols = set(r.json()["auth"]["policies"])
    assert "ops" in pols and "eng" not in pols
    # only the groupOfNames (member DN) form
    await configure(h, slapd, groupfilter="(&(objectClass=groupOfNames)(member={{.UserDN}}))")
    r = await login(h, "bob", slapd.users["bob"].password)
    pols = set(r.json()["auth"]["policies"])
    assert "eng" in pols and "ops" not in pols
    # no group at all: a warning, and still a token
    r = await login(h, "dave", slapd.users["dave"].password)
    assert r.status_code == 200
    assert any("no LDAP groups found" in w for w in r.json().get("warnings") or [])


async def test_unknown_user_and_wrong_password_answer_alike(h: Harness, slapd: SlapdServer) -> None:
    await configure(h, slapd)
    wrong = await login(h, "alice", "not-her-password")
    unknown = await login(h, "mallory", "whatever")
    assert wrong.status_code == unknown.status_code == 400
    assert wrong.json() == unknown.json() == {"errors": [BIND_FAILED]}
    # the same without a service account (DN derived from userdn)
    await configure(h, slapd, binddn="", bindpass="")
    cfg = (await call(h, "GET", "config")).json()["data"]
    assert cfg["binddn"] == "" and "bindpass" not in cfg
    wrong = await login(h, "alice", "not-her-password")
    unknown = await login(h, "mallory", "whatever")
    assert wrong.json() == unknown.json() == {"errors": [BIND_FAILED]}
    assert (await login(h, "alice", slapd.users["alice"].password)).status_code == 200


async def test_filter_injection_does_not_match_everyone(h: Harness, slapd: SlapdServer) -> None:
    await configure(h, slapd)
    r = await login(h, "*", slapd.users["alice"].password)
    assert r.status_code == 400
    assert r.json() == {"errors": [BIND_FAILED]}
    r = await login(h, "alice)(uid=*", slapd.users["alice"].password)
    assert r.json() == {"errors": [BIND_FAILED]}


async def test_lockout_across_case_and_space_variants(h: Harness, slapd: SlapdServer) -> None:
    await configure(h, slapd)
    for variant in ("carol", "Carol", "CAROL", "carol%20", "%20cArol"):
        r = await login(h, variant, "bad-guess")
        assert r.status_code == 400, (variant, r.text)
    r = await login(h, "carol", slapd.users["carol"].password)
    assert r.status_code == 403, r.text
    locked = await h.call("GET", "sys/locked-users")
    assert "carol" in locked.text
    # an unknown name is counted (so 403s do not reveal who exists) but never listed
    for _ in range(5):
        await login(h, "nobody-here", "x")
    assert (await login(h, "nobody-here", "x")).status_code == 403
    assert "nobody-here" not in (await h.call("GET", "sys/locked-users")).text


async def test_empty_password_refused(h: Harness, slapd: SlapdServer) -> None:
    await configure(h, slapd)
    r = await login(h, "alice", "")
    assert r.status_code == 400
    assert "zero length" in r.json()["errors"][0]


async def test_userfilter_variant_logs_in_by_mail(h: Harness, slapd: SlapdServer) -> None:
    await configure(h, slapd, userfilter="(&(objectClass=inetOrgPerson)(mail={{.Username}}))")
    await call(h, "POST", "groups/engineers", {"policies": "eng"})
    r = await login(h, "alice@example.com", slapd.users["alice"].password)
    assert r.status_code == 200, r.text
    auth = r.json()["auth"]
    assert auth["metadata"] == {"username": "alice@example.com"}
    assert "eng" in auth["policies"]
    # the uid itself no longer matches the filter
    assert (await login(h, "alice", slapd.users["alice"].password)).status_code == 400


async def test_upndomain_bind_is_refused_like_a_bad_password(h: Harness, slapd: SlapdServer) -> None:
    # OpenLDAP has no userPrincipalName binds (AD does): "alice@example.com" is no DN, and
    # the answer must be the one bind-failure body, not a directory error text.
    await configure(h, slapd, binddn="", bindpass="", upndomain="example.com")
    r = await login(h, "alice", slapd.users["alice"].password)
    assert r.status_code == 400
    assert r.json() == {"errors": [BIND_FAILED]}


async def test_starttls_refused_without_server_tls(h: Harness, slapd: SlapdServer) -> None:
    await configure(h, slapd, starttls=True)
    r = await login(h, "alice", slapd.users["alice"].password)
    # Vault answers a failed dial with 400; the reason (no TLS on the server) is logged, not echoed
    assert r.status_code == 400
    assert r.json() == {"errors": ["ldap operation failed: failed to connect to LDAP server"]}


async def test_failover_to_second_url(h: Harness, slapd: SlapdServer) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]  # bound, not listening: connection refused
        await configure(h, slapd, url=f"ldap://127.0.0.1:{dead},{slapd.url}")
        r = await login(h, "alice", slapd.users["alice"].password)
    assert r.status_code == 200, r.text


# -- renewal: the directory is asked again ---------------------------------------------------------


@contextlib.contextmanager
def directory_admin(slapd: SlapdServer) -> Iterator[ldap3.Connection]:
    """A connection bound as the directory manager, to change the directory under a live token."""
    server = ldap3.Server(slapd.host, port=slapd.port, get_info=ldap3.NONE, connect_timeout=5)
    conn = ldap3.Connection(server, user=slapd.root_dn, password=slapd.root_pw, receive_timeout=10)
    assert conn.bind(), conn.result
    try:
        yield conn
    finally:
        conn.unbind()


@contextlib.contextmanager
def temporary_person(
    slapd: SlapdServer, uid: str, password: str, groups: tuple[str, ...] = ()
) -> Iterator[str]:
    """Add a person (and groupOfNames groups holding it) for one test; both are removed after.

    The slapd serves the whole module, so tests change only entries they made themselves.
    """
    dn = f"uid={uid},{slapd.users_dn}"
    group_dns = [f"cn={g},{slapd.groups_dn}" for g in groups]
    with directory_admin(slapd) as conn:
        ok = conn.add(
            dn,
            ["inetOrgPerson"],
            {"uid": uid, "cn": uid.title(), "sn": uid.title(), "userPassword": password},
        )
        assert ok, conn.result
        for group_dn, name in zip(group_dns, groups, strict=True):
            # groupOfNames needs a member; the manager's DN keeps the group valid without the person
            ok = conn.add(group_dn, ["groupOfNames"], {"cn": name, "member": [dn, slapd.root_dn]})
            assert ok, conn.result
    try:
        yield dn
    finally:
        with directory_admin(slapd) as conn:
            for entry in [*group_dns, dn]:
                conn.delete(entry)


async def renew_self(h: Harness, token: str) -> httpx.Response:
    return await h.call("POST", "auth/token/renew-self", json={}, token=token)


async def token_times(h: Harness, token: str) -> tuple[Any, Any]:
    """What a renewal changes: the expiry and the last renewal time (both to the microsecond)."""
    r = await h.call("POST", "auth/token/lookup", json={"token": token})
    assert r.status_code == 200, r.text
    return r.json()["data"]["expire_time"], r.json()["data"].get("last_renewal")


async def test_renewal_refused_once_a_group_no_longer_grants_a_policy(h: Harness, slapd: SlapdServer) -> None:
    await configure(h, slapd, token_policies="base")
    assert (await call(h, "POST", "groups/renewers", {"policies": "renew-pol"})).status_code == 204
    with temporary_person(slapd, "erin", "erin-pass-5", groups=("renewers",)) as erin_dn:
        r = await login(h, "erin", "erin-pass-5")
        assert r.status_code == 200, r.text
        auth = r.json()["auth"]
        assert set(auth["policies"]) == {"base", "renew-pol", "default"}
        token = auth["client_token"]
        r = await renew_self(h, token)
        assert r.status_code == 200, r.text
        assert r.json()["auth"]["client_token"] == token
        before = await token_times(h, token)

        # erin leaves the group that granted renew-pol
        with directory_admin(slapd) as conn:
            assert conn.modify(
                f"cn=renewers,{slapd.groups_dn}", {"member": [(ldap3.MODIFY_DELETE, [erin_dn])]}
            ), conn.result
        for r in (
            await renew_self(h, token),
            await h.call("POST", "auth/token/renew", json={"token": token}),
        ):
            assert r.status_code == 400, r.text
            assert r.json() == {"errors": ["policies have changed, not renewing"]}
        assert await token_times(h, token) == before  # refused: nothing changed, the token still works
        assert (await h.call("GET", "auth/token/lookup-self", token=token)).status_code == 200

        # back in the group: the same policies, renewals resume (the directory really is asked)
        with directory_admin(slapd) as conn:
            assert conn.modify(
                f"cn=renewers,{slapd.groups_dn}", {"member": [(ldap3.MODIFY_ADD, [erin_dn])]}
            ), conn.result
        assert (await renew_self(h, token)).status_code == 200
        # the local mapping counts as well: the group now grants another policy
        assert (await call(h, "POST", "groups/renewers", {"policies": "other"})).status_code == 204
        r = await renew_self(h, token)
        assert r.status_code == 400 and r.json() == {"errors": ["policies have changed, not renewing"]}


@pytest.mark.parametrize("service_account", [True, False], ids=["binddn", "anonymous-lookup"])
async def test_renewal_refused_once_the_user_is_deleted(
    h: Harness, slapd: SlapdServer, service_account: bool
) -> None:
    if service_account:
        await configure(h, slapd)
    else:  # no binddn: the DN is derived, and renewal looks it up over an anonymous bind
        await configure(h, slapd, binddn="", bindpass="")
    with temporary_person(slapd, "frank", "frank-pass-6") as frank_dn:
        r = await login(h, "frank", "frank-pass-6")
        assert r.status_code == 200, r.text
        token = r.json()["auth"]["client_token"]
        assert (await renew_self(h, token)).status_code == 200
        before = await token_times(h, token)
        with directory_admin(slapd) as conn:
            assert conn.delete(frank_dn), conn.result
        r = await renew_self(h, token)
        assert r.status_code == 400, r.text
        assert r.json() == {"errors": [RENEW_USER_GONE]}
        assert await token_times(h, token) == before
