"""The github auth method against an in-process mock of the GitHub API (and once over loopback)."""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import httpx
import pytest

from strongroom.auth.github import NOT_IN_ORG, GitHubBackend
from strongroom.core.mounts import MountEntry
from strongroom.logical.request import Connection, Operation, Request
from strongroom.testing import Harness, running_core

MOUNT = "auth/github/"
BASE = "http://github.test/api/"
ORGS = {"acme": 42, "other": 7}
USERS: dict[str, dict[str, Any]] = {
    "tok-alice": {
        "login": "Alice",
        "orgs": [{"login": "other", "id": 7}, {"login": "acme", "id": 42}],
        "teams": [
            {"name": "Core Team", "slug": "core-team", "organization": {"id": 42}},
            {"name": "Infra", "slug": "infra", "organization": {"id": 42}},
            {"name": "ops", "slug": "ops", "organization": {"id": 7}},
        ],
    },
    "tok-bob": {"login": "bob", "orgs": [{"login": "other", "id": 7}], "teams": []},
    "tok-renamed": {"login": "carol", "orgs": [{"login": "acme-new", "id": 42}], "teams": []},
}


class MockGitHub:
    """Enough of api.github.com: orgs/<org>, user, user/orgs and user/teams, paged one item per page."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.foreign_link = False

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.host != "github.test":
            return httpx.Response(200, json=[{"login": "acme", "id": 42}])
        path = request.url.path.removeprefix("/api/")
        if path.startswith("orgs/"):
            org = path.removeprefix("orgs/")
            if org not in ORGS:
                return httpx.Response(404, json={"message": "Not Found"})
            return httpx.Response(200, json={"login": org, "id": ORGS[org]})
        auth = request.headers.get("authorization", "")
        user = USERS.get(auth.removeprefix("Bearer "))
        if user is None:
            return httpx.Response(401, json={"message": "Bad credentials"})
        if path == "user":
            return httpx.Response(200, json={"login": user["login"], "id": 1})
        if path in ("user/orgs", "user/teams"):
            items = user[path.removeprefix("user/")]
            page = int(request.url.params.get("page", "1"))
            headers = {}
            if page < len(items):
                nxt = f"{BASE}{path}?per_page=100&page={page + 1}"
                if self.foreign_link:
                    nxt = f"http://evil.test/{path}?page={page + 1}"
                headers["Link"] = f'<{nxt}>; rel="next", <{BASE}{path}?page=1>; rel="first"'
            return httpx.Response(200, json=items[page - 1 : page], headers=headers)
        return httpx.Response(404, json={"message": "Not Found"})


@pytest.fixture
def github(monkeypatch: pytest.MonkeyPatch) -> MockGitHub:
    mock = MockGitHub()
    monkeypatch.setattr(GitHubBackend, "transport", httpx.MockTransport(mock))
    return mock


@pytest.fixture
async def h(github: MockGitHub) -> AsyncIterator[Harness]:
    async with running_core() as harness:
        if harness.core.expiration is not None:
            # the expiry timer cannot be cancelled across pytest's event-loop runs (a core issue)
            await harness.core.expiration.stop()
        await harness.core.enable_mount(MountEntry("github/", "github", table="auth"))
        for name in ("cfg", "team-core", "team-infra", "team-ops", "user-alice", "everyone"):
            await harness.core.policies.put(name, 'path "x/*" { capabilities = ["read"] }')
        yield harness


async def call(h: Harness, method: str, path: str, body: Any = None, **kw: Any) -> httpx.Response:
    return await h.call(method, MOUNT + path, json=body, **kw)


async def configure(h: Harness, **body: Any) -> httpx.Response:
    r = await call(h, "POST", "config", {"organization": "acme", "base_url": BASE, **body})
    assert r.status_code in (200, 204), r.text
    return r


async def login(h: Harness, token: str) -> httpx.Response:
    return await call(h, "POST", "login", {"token": token}, token="")


# -- config -----------------------------------------------------------------------------------


async def test_config_write_fetches_the_organization_id(h: Harness, github: MockGitHub) -> None:
    await configure(h, base_url="http://github.test/api", token_policies="cfg", ttl="1h", max_ttl="2h")
    assert "authorization" not in github.requests[-1].headers  # looked up without any token
    data = (await call(h, "GET", "config")).json()["data"]
    assert data["organization"] == "acme" and data["organization_id"] == 42
    assert data["base_url"] == BASE
    assert (data["token_ttl"], data["token_max_ttl"], data["ttl"], data["max_ttl"]) == (
        3600,
        7200,
        3600,
        7200,
    )
    assert data["token_policies"] == ["cfg"] and data["token_type"] == "default"
    # a partial update keeps the rest
    await call(h, "POST", "config", {"token_ttl": 60})
    data = (await call(h, "GET", "config")).json()["data"]
    assert data["organization"] == "acme" and data["token_ttl"] == 60 and "ttl" not in data


async def test_config_errors(h: Harness) -> None:
    assert (await call(h, "GET", "config")).status_code == 404
    r = await call(h, "POST", "config", {"base_url": BASE})
    assert r.status_code == 400 and r.json() == {"errors": ["organization is a required parameter"]}
    r = await call(h, "POST", "config", {"organization": "nope", "base_url": BASE})
    assert r.status_code == 400 and "failed to look up the organization" in r.text
    r = await call(h, "POST", "config", {"organization": "acme", "base_url": "ftp://x"})
    assert r.status_code == 400 and "base_url" in r.text
    r = await call(h, "POST", "config", {"organization": "nope", "organization_id": 99, "base_url": BASE})
    assert r.status_code == 204  # an explicit id needs no lookup


# -- mappings ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["teams", "users"])
async def test_maps(h: Harness, kind: str) -> None:
    r = await call(h, "GET", f"map/{kind}/Unmapped")
    assert r.status_code == 200 and r.json()["data"] == {}  # Vault answers 200 without data
    assert (await call(h, "POST", f"map/{kind}/Core-Team", {"value": "p1, p2"})).status_code == 204
    assert (await call(h, "GET", f"map/{kind}/core-team")).json()["data"] == {
        "key": "Core-Team",
        "value": "p1, p2",
    }
    await call(h, "POST", f"map/{kind}/other", {})
    assert (await call(h, "GET", f"map/{kind}/other")).json()["data"] == {"key": "other", "value": ""}
    assert (await call(h, "LIST", f"map/{kind}")).json()["data"]["keys"] == ["core-team", "other"]
    assert (await call(h, "GET", f"map/{kind}")).json()["data"]["keys"] == ["core-team", "other"]
    assert (await call(h, "DELETE", f"map/{kind}/CORE-TEAM")).status_code == 204
    assert (await call(h, "LIST", f"map/{kind}")).json()["data"]["keys"] == ["other"]
    assert (await call(h, "POST", f"map/{kind}/a.b", {"value": "x"})).status_code == 404


# -- login ------------------------------------------------------------------------------------


async def test_login_maps_config_team_and_user_policies(h: Harness, github: MockGitHub) -> None:
    pytest.importorskip("strongroom.core.expiration")
    await configure(h, token_policies="cfg", token_ttl="1h")
    await call(h, "POST", "map/teams/Core-Team", {"value": "team-core"})  # by slug, any case
    await call(h, "POST", "map/teams/infra", {"value": "team-infra"})  # by name
    await call(h, "POST", "map/teams/ops", {"value": "team-ops"})  # a team of another org: ignored
    await call(h, "POST", "map/users/alice", {"value": "user-alice"})
    await call(h, "POST", "map/teams/default", {"value": "everyone"})
    github.requests.clear()
    r = await login(h, "tok-alice")
    assert r.status_code == 200, r.text
    auth = r.json()["auth"]
    assert sorted(auth["policies"]) == ["cfg", "default", "everyone", "team-core", "team-infra", "user-alice"]
    assert auth["metadata"] == {"org": "acme", "username": "Alice"}
    assert auth["lease_duration"] == 3600 and auth["orphan"]
    sent = [(req.url.path, req.url.query.decode()) for req in github.requests]
    assert ("/api/user", "") in sent and ("/api/user/orgs", "per_page=100") in sent
    assert ("/api/user/orgs", "per_page=100&page=2") in sent and (
        "/api/user/teams",
        "per_page=100&page=3",
    ) in sent
    assert all(req.headers["authorization"] == "Bearer tok-alice" for req in github.requests)
    me = await h.call("GET", "auth/token/lookup-self", token=auth["client_token"])
    assert me.status_code == 200 and me.json()["data"]["display_name"] == "github-Alice"


async def test_login_backend_auth_block(h: Harness) -> None:
    await configure(h, token_policies="cfg", token_bound_cidrs="127.0.0.0/8")
    route = h.core.router.get(MOUNT)
    assert route is not None and isinstance(route.backend, GitHubBackend)
    resp = await route.backend.handle_request(
        Request(
            Operation.UPDATE,
            "login",
            data={"token": "tok-alice"},
            connection=Connection(remote_addr="127.0.0.1"),
            unauthenticated=True,
        )
    )
    assert resp is not None and resp.auth is not None
    auth = resp.auth
    assert auth.alias_name == "Alice" and auth.display_name == "Alice"
    assert auth.group_alias_names == ["Core Team", "core-team", "Infra", "infra"]
    assert auth.bound_cidrs == ["127.0.0.0/8"] and auth.policies == ["cfg"]
    assert "tok-alice" not in json.dumps(auth.internal_data)


async def test_not_in_the_organization(h: Harness) -> None:
    await configure(h)
    r = await login(h, "tok-bob")
    # Vault >= 1.10 answers with a plain error (500); hvac's suite expects exactly that
    assert r.status_code == 500 and r.json() == {"errors": [NOT_IN_ORG]}
    assert "tok-bob" not in r.text


async def test_bad_token_is_refused_without_echoing_it(h: Harness) -> None:
    await configure(h)
    r = await login(h, "tok-bad-S3CRET-value")
    assert r.status_code == 400
    assert "S3CRET" not in r.text and "GitHub rejected the token" in r.text
    r = await login(h, "")
    assert r.status_code == 400 and r.json() == {"errors": ["missing token"]}


async def test_login_before_config(h: Harness) -> None:
    r = await login(h, "tok-alice")
    assert r.status_code == 400 and r.json() == {"errors": ["configuration has not been set"]}


async def test_config_token_bound_cidrs_gate_the_login(h: Harness) -> None:
    await configure(h, token_bound_cidrs="10.0.0.0/8")
    assert (await login(h, "tok-alice")).status_code == 403


async def test_renamed_organization_warns(h: Harness) -> None:
    await configure(h)
    r = await login(h, "tok-renamed")
    assert r.status_code == 200
    assert 'the organization name has changed to "acme-new"' in r.json()["warnings"][0]


async def test_paging_never_leaves_the_configured_origin(h: Harness, github: MockGitHub) -> None:
    await configure(h)
    github.foreign_link = True
    github.requests.clear()
    r = await login(h, "tok-alice")
    # page 2 (where acme is) sits behind a link to another host: not followed, so not a member
    assert r.status_code == 500 and r.json() == {"errors": [NOT_IN_ORG]}
    assert all(req.url.host == "github.test" for req in github.requests)


async def test_unreachable_github(h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    await configure(h)

    def boom(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    monkeypatch.setattr(GitHubBackend, "transport", httpx.MockTransport(boom))
    r = await login(h, "tok-alice")
    assert r.status_code == 400 and "failed to reach the GitHub API" in r.text and "tok-alice" not in r.text


# -- over a real loopback socket, with hvac's mock server's shapes ----------------------------


class _HvacLikeHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        body: Any = None
        if self.path.startswith("/orgs/"):
            body = {"login": self.path.removeprefix("/orgs/"), "id": 1}
        elif self.path == "/user":
            body = {"login": "hvac-dude", "id": 1}
        elif self.path in ("/user/orgs?per_page=100", "/user/teams?per_page=100"):
            if self.headers.get("Authorization") == "Bearer valid-token":
                body = (
                    [{"login": "hvac", "id": 1}]
                    if "orgs" in self.path
                    else [{"name": "hvac-team", "slug": "hvac-team", "organization": {"id": 1}}]
                )
            elif "teams" in self.path:
                body = []
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        if body is not None:  # like hvac's mock, an empty body for a stranger's orgs
            self.wfile.write(json.dumps(body).encode())

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture
def loopback() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), _HvacLikeHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


async def test_real_loopback_server(h: Harness, loopback: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(GitHubBackend, "transport", None)
    r = await call(h, "POST", "config", {"organization": "hvac", "base_url": loopback})
    assert r.status_code == 204, r.text
    await call(h, "POST", "map/teams/hvac-team", {"value": "cfg"})
    r = await login(h, "valid-token")
    assert r.status_code == 200, r.text
    assert "cfg" in r.json()["auth"]["policies"]
    r = await login(h, "invalid-token")
    assert r.status_code == 500 and r.json() == {"errors": [NOT_IN_ORG]}
