"""strongroom.api.client against a fake server (httpx.MockTransport): the exact requests it
sends, environment precedence, retries, errors and the KV path rules."""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from strongroom.api.client import ApiError, Client, KvMount, read_token_file, write_token_file

ENV_NAMES = ("ADDR", "TOKEN", "CACERT", "CAPATH", "SKIP_VERIFY", "NAMESPACE", "FORMAT", "MAX_RETRIES")


@dataclass
class Call:
    method: str
    path: str
    params: dict[str, str]
    headers: httpx.Headers
    body: Any
    url: str


class FakeServer:
    """Canned answers per (method, path); every request is recorded."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], list[tuple[int, Any]]] = {}
        self.calls: list[Call] = []

    def on(self, method: str, path: str, status: int = 200, body: Any = None) -> None:
        self.routes.setdefault((method, path), []).append((status, body))

    def handler(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path.removeprefix("/v1/")
        body = json.loads(request.content) if request.content else None
        self.calls.append(
            Call(request.method, path, dict(request.url.params), request.headers, body, str(request.url))
        )
        queue = self.routes.get((request.method, path))
        if not queue:
            return httpx.Response(404, json={"errors": []})
        status, payload = queue.pop(0) if len(queue) > 1 else queue[0]
        if payload is None:
            return httpx.Response(status)
        return httpx.Response(status, json=payload)

    def client(self, **kwargs: Any) -> Client:
        kwargs.setdefault("address", "http://sr.test:8200")
        kwargs.setdefault("token", "root-token")
        return Client(transport=httpx.MockTransport(self.handler), retry_wait=0, **kwargs)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    for name in ENV_NAMES:
        monkeypatch.delenv("STRONGROOM_" + name, raising=False)
        monkeypatch.delenv("VAULT_" + name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))


@pytest.fixture
def fake() -> FakeServer:
    return FakeServer()


def test_address_and_token_come_from_strongroom_env_before_vault_env(
    fake: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VAULT_ADDR", "http://vault.test:1")
    monkeypatch.setenv("STRONGROOM_ADDR", "http://strongroom.test:2")
    monkeypatch.setenv("VAULT_TOKEN", "vault-token")
    monkeypatch.setenv("STRONGROOM_TOKEN", "sr-token")
    client = Client(transport=httpx.MockTransport(fake.handler))
    assert client.address == "http://strongroom.test:2"
    assert client.client_token == "sr-token"
    monkeypatch.delenv("STRONGROOM_ADDR")
    monkeypatch.delenv("STRONGROOM_TOKEN")
    client = Client(transport=httpx.MockTransport(fake.handler))
    assert client.address == "http://vault.test:1"
    assert client.client_token == "vault-token"


def test_defaults_and_token_file_fallback(tmp_path: Any, fake: FakeServer) -> None:
    client = Client(transport=httpx.MockTransport(fake.handler))
    assert client.address == "https://127.0.0.1:8200"
    assert client.client_token is None
    (tmp_path / ".vault-token").write_text("legacy-token")
    assert read_token_file() == "legacy-token"
    (tmp_path / ".strongroom-token").write_text("our-token")
    assert Client(transport=httpx.MockTransport(fake.handler)).client_token == "our-token"


def test_write_token_file_is_private_and_has_no_newline(tmp_path: Any) -> None:
    (tmp_path / ".strongroom-token").write_text("old\n")
    os.chmod(tmp_path / ".strongroom-token", 0o644)
    path = write_token_file("hvs.new")
    assert path == tmp_path / ".strongroom-token"
    assert path.read_bytes() == b"hvs.new"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_request_headers_and_url(fake: FakeServer) -> None:
    fake.on("GET", "secret/foo", body={"data": {"a": "1"}})
    client = fake.client(namespace="ns1/")
    assert client.read("secret/foo") == {"data": {"a": "1"}}
    call = fake.calls[0]
    assert call.url == "http://sr.test:8200/v1/secret/foo"
    assert call.headers["X-Vault-Request"] == "true"
    assert call.headers["X-Vault-Token"] == "root-token"
    assert call.headers["X-Vault-Namespace"] == "ns1/"


def test_no_token_header_without_a_token(fake: FakeServer) -> None:
    fake.on("GET", "sys/seal-status", body={"sealed": True})
    client = fake.client()
    client.client_token = None
    client.sys.seal_status()
    assert "X-Vault-Token" not in fake.calls[0].headers


def test_list_uses_the_list_verb_and_404_means_no_keys(fake: FakeServer) -> None:
    fake.on("LIST", "secret/", body={"data": {"keys": ["a", "b/"]}})
    client = fake.client()
    assert client.list("secret/") == {"data": {"keys": ["a", "b/"]}}
    assert client.list("empty/") is None
    assert [c.method for c in fake.calls] == ["LIST", "LIST"]


def test_read_404_is_none_unless_it_carries_data(fake: FakeServer) -> None:
    deleted = {"data": {"data": None, "metadata": {"version": 2, "deletion_time": "x"}}}
    fake.on("GET", "secret/data/gone", 404, deleted)
    client = fake.client()
    assert client.read("secret/data/missing") is None
    assert client.read("secret/data/gone") == deleted


def test_patch_sends_merge_patch_content_type(fake: FakeServer) -> None:
    fake.on("PATCH", "secret/data/foo", body={"data": {"version": 2}})
    fake.client().patch("secret/data/foo", {"data": {"a": "2"}})
    call = fake.calls[0]
    assert call.headers["Content-Type"] == "application/merge-patch+json"
    assert call.body == {"data": {"a": "2"}}


def test_delete_passes_query_parameters(fake: FakeServer) -> None:
    fake.on("DELETE", "secret/foo", 204)
    assert fake.client().delete("secret/foo", params={"x": "1"}) is None
    assert fake.calls[0].params == {"x": "1"}


def test_retries_5xx_twice_then_succeeds(fake: FakeServer) -> None:
    fake.on("GET", "sys/health", 500, {"errors": ["boom"]})
    fake.on("GET", "sys/health", 502, {"errors": ["boom"]})
    fake.on("GET", "sys/health", 200, {"initialized": True})
    assert fake.client().sys.health() == {"initialized": True}
    assert len(fake.calls) == 3
    assert fake.calls[0].params["sealedcode"] == "299"


def test_gives_up_after_two_retries(fake: FakeServer) -> None:
    fake.on("GET", "secret/foo", 503, {"errors": ["Vault is sealed"]})
    with pytest.raises(ApiError) as info:
        fake.client().read("secret/foo")
    assert info.value.status == 503
    assert len(fake.calls) == 3


def test_501_and_4xx_are_not_retried(fake: FakeServer) -> None:
    fake.on("GET", "sys/init", 501, {"errors": ["not initialized"]})
    fake.on("GET", "secret/foo", 403, {"errors": ["permission denied"]})
    client = fake.client()
    with pytest.raises(ApiError):
        client.sys.init_status()
    with pytest.raises(ApiError):
        client.read("secret/foo")
    assert len(fake.calls) == 2


def test_api_error_is_readable(fake: FakeServer) -> None:
    fake.on("POST", "secret/foo", 403, {"errors": ["permission denied"]})
    with pytest.raises(ApiError) as info:
        fake.client().write("secret/foo", {"a": "1"})
    err = info.value
    assert err.status == 403
    assert err.errors == ["permission denied"]
    assert str(err) == (
        "Error making API request.\n\n"
        "URL: POST http://sr.test:8200/v1/secret/foo\n"
        "Code: 403. Errors:\n\n"
        "* permission denied"
    )


def test_non_json_error_body_becomes_the_message(fake: FakeServer) -> None:
    client = Client(
        "http://sr.test",
        "t",
        transport=httpx.MockTransport(lambda r: httpx.Response(400, text="bad things")),
    )
    with pytest.raises(ApiError) as info:
        client.read("x")
    assert info.value.errors == ["bad things"]


def test_sys_helpers_send_vault_bodies(fake: FakeServer) -> None:
    fake.on("PUT", "sys/init", body={"keys": ["aa"], "keys_base64": ["qg=="], "root_token": "hvs.r"})
    fake.on("PUT", "sys/unseal", body={"sealed": False})
    fake.on("PUT", "sys/generate-root/update", body={"complete": True})
    fake.on("POST", "sys/capabilities-self", body={"data": {"secret/foo": ["read"]}})
    client = fake.client()
    client.sys.init(1, 1)
    client.sys.unseal("aa")
    client.sys.unseal(reset=True)
    client.sys.generate_root_update("aa", "nonce-1")
    assert client.sys.capabilities(["secret/foo"]) == {"secret/foo": ["read"]}
    assert [(c.method, c.path, c.body) for c in fake.calls] == [
        ("PUT", "sys/init", {"secret_shares": 1, "secret_threshold": 1}),
        ("PUT", "sys/unseal", {"key": "aa"}),
        ("PUT", "sys/unseal", {"reset": True}),
        ("PUT", "sys/generate-root/update", {"key": "aa", "nonce": "nonce-1"}),
        ("POST", "sys/capabilities-self", {"paths": ["secret/foo"]}),
    ]


def test_token_helpers(fake: FakeServer) -> None:
    fake.on("POST", "auth/token/create/ci", body={"auth": {"client_token": "hvs.x"}})
    fake.on("GET", "auth/token/lookup-self", body={"data": {"id": "root-token"}})
    fake.on("POST", "auth/token/revoke-accessor", 204)
    client = fake.client()
    client.token.create({"policies": ["a"]}, role="ci")
    client.token.lookup_self()
    client.token.revoke_accessor("acc")
    assert [(c.method, c.path, c.body) for c in fake.calls] == [
        ("POST", "auth/token/create/ci", {"policies": ["a"]}),
        ("GET", "auth/token/lookup-self", None),
        ("POST", "auth/token/revoke-accessor", {"accessor": "acc"}),
    ]


def test_kv_mount_info_and_v2_paths(fake: FakeServer) -> None:
    fake.on(
        "GET",
        "sys/internal/ui/mounts/secret/app/db",
        body={"data": {"path": "secret/", "type": "kv", "options": {"version": "2"}}},
    )
    fake.on("POST", "secret/data/app/db", body={"data": {"version": 3}})
    client = fake.client()
    assert client.kv.put("secret/app/db", {"pw": "x"}, cas=2) == {"data": {"version": 3}}
    assert [(c.method, c.path, c.body) for c in fake.calls] == [
        ("GET", "sys/internal/ui/mounts/secret/app/db", None),
        ("POST", "secret/data/app/db", {"data": {"pw": "x"}, "options": {"cas": 2}}),
    ]


def test_kv_v1_uses_the_path_as_is(fake: FakeServer) -> None:
    fake.on(
        "GET",
        "sys/internal/ui/mounts/kv1/foo",
        body={"data": {"path": "kv1/", "type": "kv", "options": None}},
    )
    fake.on("POST", "kv1/foo", 204)
    assert fake.client().kv.put("kv1/foo", {"a": "1"}) is None
    assert (fake.calls[1].method, fake.calls[1].path, fake.calls[1].body) == ("POST", "kv1/foo", {"a": "1"})


def test_kv_mount_info_404_means_v1(fake: FakeServer) -> None:
    assert fake.client().kv.mount_info("old/foo") == KvMount("", 1)


def test_kv_v2_version_actions(fake: FakeServer) -> None:
    mount = KvMount("team/kv/", 2)
    for method, path in (
        ("POST", "team/kv/delete/a"),
        ("POST", "team/kv/undelete/a"),
        ("PUT", "team/kv/destroy/a"),
        ("GET", "team/kv/data/a"),
        ("LIST", "team/kv/metadata/dir"),
        ("DELETE", "team/kv/metadata/a"),
    ):
        fake.on(method, path, body={"data": {"keys": ["x"]}})
    client = fake.client()
    client.kv.delete("team/kv/a", [1, 2], mount=mount)
    client.kv.undelete("team/kv/a", [1], mount=mount)
    client.kv.destroy("team/kv/a", [1], mount=mount)
    client.kv.get("team/kv/a", version=4, mount=mount)
    client.kv.list("team/kv/dir/", mount=mount)
    client.kv.delete_metadata("team/kv/a", mount=mount)
    assert [(c.method, c.path) for c in fake.calls] == [
        ("POST", "team/kv/delete/a"),
        ("POST", "team/kv/undelete/a"),
        ("PUT", "team/kv/destroy/a"),
        ("GET", "team/kv/data/a"),
        ("LIST", "team/kv/metadata/dir"),
        ("DELETE", "team/kv/metadata/a"),
    ]
    assert fake.calls[0].body == {"versions": [1, 2]}
    assert fake.calls[3].params == {"version": "4"}


def test_kv_mount_api_path_edges() -> None:
    v2 = KvMount("secret/", 2)
    assert v2.api_path("secret/", "metadata") == "secret/metadata"
    assert v2.api_path("secret", "metadata") == "secret/metadata"
    assert v2.api_path("/secret/a/b", "data") == "secret/data/a/b"
    assert KvMount("secret/", 1).api_path("secret/a", "data") == "secret/a"


def test_error_without_errors_list_reports_the_warnings(fake: FakeServer) -> None:
    fake.on("POST", "secret/foo", 404, {"data": None, "warnings": ["Invalid path"]})
    with pytest.raises(ApiError) as info:
        fake.client().write("secret/foo", {"a": "1"})
    assert info.value.errors == ["Invalid path"]
