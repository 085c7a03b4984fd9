"""A node with several worker processes behaves as one server.

Each check makes many requests on fresh connections, so every worker answers
some of them: unseal and seal reach all workers, and a token revoked or a
mount added through one worker is seen by all before their next answer.
"""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.integration.server_proc import ServerProcess

ROUNDS = 24


def _codes(client: httpx.Client, method: str, path: str, token: str, **kw: object) -> set[int]:
    return {
        client.request(method, path, headers={"X-Vault-Token": token}, **kw).status_code  # type: ignore[arg-type]
        for _ in range(ROUNDS)
    }


def test_workers_share_seal_state_and_invalidate_caches(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path, {"sqlite": {"path": str(tmp_path / "db.sqlite")}}, {"workers": 2})
    server.start()
    fresh = httpx.Limits(max_keepalive_connections=0)
    try:
        with httpx.Client(base_url=server.addr, limits=fresh, timeout=10) as client:
            r = client.put("/v1/sys/init", json={"secret_shares": 3, "secret_threshold": 2})
            keys, root = r.json()["keys"], r.json()["root_token"]
            assert client.put("/v1/sys/unseal", json={"key": keys[0]}).json()["progress"] == 1
            # unseal progress lives in one place per node, whichever worker answers
            assert {client.get("/v1/sys/seal-status").json()["progress"] for _ in range(ROUNDS)} == {1}
            assert client.put("/v1/sys/unseal", json={"key": keys[1]}).json()["sealed"] is False
            assert _codes(client, "GET", "/v1/sys/mounts", root) == {200}

            assert (
                client.post(
                    "/v1/sys/mounts/kv", json={"type": "kv-v2"}, headers={"X-Vault-Token": root}
                ).status_code
                == 204
            )
            assert _codes(client, "POST", "/v1/kv/data/a", root, json={"data": {"v": 1}}) == {200}

            r = client.post(
                "/v1/auth/token/create", json={"policies": ["default"]}, headers={"X-Vault-Token": root}
            )
            token = r.json()["auth"]["client_token"]
            assert _codes(client, "GET", "/v1/auth/token/lookup-self", token) == {200}
            assert (
                client.post("/v1/auth/token/revoke-self", headers={"X-Vault-Token": token}).status_code == 204
            )
            assert _codes(client, "GET", "/v1/auth/token/lookup-self", token) == {403}

            policy = 'path "kv/data/a" { capabilities = ["read"] }'
            client.put(
                "/v1/sys/policies/acl/reader", json={"policy": policy}, headers={"X-Vault-Token": root}
            )
            r = client.post(
                "/v1/auth/token/create", json={"policies": ["reader"]}, headers={"X-Vault-Token": root}
            )
            reader = r.json()["auth"]["client_token"]
            assert _codes(client, "GET", "/v1/kv/data/a", reader) == {200}
            client.put(
                "/v1/sys/policies/acl/reader",
                json={"policy": 'path "kv/data/b" { capabilities = ["read"] }'},
                headers={"X-Vault-Token": root},
            )
            assert _codes(client, "GET", "/v1/kv/data/a", reader) == {403}

            assert client.put("/v1/sys/seal", headers={"X-Vault-Token": root}).status_code == 204
            assert _codes(client, "GET", "/v1/sys/mounts", root) == {503}
            for key in keys[:2]:
                client.put("/v1/sys/unseal", json={"key": key})
            assert _codes(client, "GET", "/v1/kv/data/a", root) == {200}
    finally:
        server.stop()


def test_role_changes_reach_every_worker_before_it_issues(tmp_path: Path) -> None:
    """PKI roles are cached per worker; a role tightened through one must bind all at once."""
    server = ServerProcess(tmp_path, {"sqlite": {"path": str(tmp_path / "db.sqlite")}}, {"workers": 2})
    server.start()
    fresh = httpx.Limits(max_keepalive_connections=0)
    try:
        _keys, root = server.init_and_unseal(shares=1, threshold=1)
        with httpx.Client(
            base_url=server.addr, limits=fresh, timeout=10, headers={"X-Vault-Token": root}
        ) as c:
            assert c.post("/v1/sys/mounts/pki", json={"type": "pki"}).status_code == 204
            r = c.post(
                "/v1/pki/root/generate/internal", json={"common_name": "root", "key_type": "ec", "ttl": "24h"}
            )
            assert r.status_code == 200, r.text
            role = {
                "allowed_domains": "example.com",
                "allow_subdomains": True,
                "key_type": "ec",
                "max_ttl": "1h",
            }
            assert c.post("/v1/pki/roles/web", json=role).status_code in (200, 204)
            issue = {"common_name": "a.example.com", "ttl": "10m"}
            assert {c.post("/v1/pki/issue/web", json=issue).status_code for _ in range(ROUNDS)} == {200}
            role["allowed_domains"] = "other.test"
            assert c.post("/v1/pki/roles/web", json=role).status_code in (200, 204)
            assert {c.post("/v1/pki/issue/web", json=issue).status_code for _ in range(ROUNDS)} == {400}
            assert c.delete("/v1/pki/roles/web").status_code == 204
            assert {c.post("/v1/pki/issue/web", json=issue).status_code for _ in range(ROUNDS)} == {400}
    finally:
        server.stop()


def test_simultaneous_first_logins_across_workers_make_one_entity(tmp_path: Path) -> None:
    """Two workers creating the identity of the same new user at once must not make two entities."""
    import concurrent.futures

    server = ServerProcess(tmp_path, {"sqlite": {"path": str(tmp_path / "db.sqlite")}}, {"workers": 2})
    server.start()
    fresh = httpx.Limits(max_keepalive_connections=0)
    try:
        with httpx.Client(base_url=server.addr, limits=fresh, timeout=30) as client:
            r = client.put("/v1/sys/init", json={"secret_shares": 1, "secret_threshold": 1})
            keys, root = r.json()["keys"], r.json()["root_token"]
            client.put("/v1/sys/unseal", json={"key": keys[0]})
            auth = {"X-Vault-Token": root}
            assert (
                client.post("/v1/sys/auth/userpass", json={"type": "userpass"}, headers=auth).status_code
                == 204
            )
            users = [f"u{n}" for n in range(6)]
            for user in users:
                r = client.post(
                    f"/v1/auth/userpass/users/{user}", json={"password": "pw-" + user}, headers=auth
                )
                assert r.status_code == 204, r.text

            def login(user: str) -> str:
                with httpx.Client(base_url=server.addr, limits=fresh, timeout=30) as c:
                    r = c.post(f"/v1/auth/userpass/login/{user}", json={"password": "pw-" + user})
                    assert r.status_code == 200, r.text
                    return str(r.json()["auth"]["entity_id"])

            with concurrent.futures.ThreadPoolExecutor(max_workers=12) as pool:
                entity_ids = list(pool.map(login, [u for u in users for _ in range(8)]))
            per_user: dict[str, set[str]] = {}
            for user, entity_id in zip([u for u in users for _ in range(8)], entity_ids, strict=True):
                per_user.setdefault(user, set()).add(entity_id)
            assert all(len(ids) == 1 for ids in per_user.values()), per_user
            listed = client.request("LIST", "/v1/identity/entity/id", headers=auth).json()["data"]["keys"]
            assert len(listed) == len(users)
    finally:
        server.stop()
