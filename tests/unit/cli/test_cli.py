"""The strongroom CLI against a fake server: the exact requests each command sends and what
it prints. The client is injected by replacing ``strongroom.cli.main.make_client``."""

from __future__ import annotations

import base64
import json
import stat
import sys
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from click.testing import CliRunner, Result

from strongroom.api.client import Client
from strongroom.cli import main
from strongroom.cli.operator import decode_root_token

ADDR = "http://sr.test:8200"
ENV_NAMES = ("ADDR", "TOKEN", "CACERT", "CAPATH", "SKIP_VERIFY", "NAMESPACE", "FORMAT", "MAX_RETRIES")
KV2_MOUNT = {"data": {"path": "secret/", "type": "kv", "options": {"version": "2"}}}
KV1_MOUNT = {"data": {"path": "kv1/", "type": "kv", "options": None}}
METADATA = {
    "created_time": "2024-01-01T00:00:00Z",
    "custom_metadata": None,
    "deletion_time": "",
    "destroyed": False,
    "version": 1,
}


@dataclass
class Call:
    method: str
    path: str
    params: dict[str, str]
    headers: httpx.Headers
    body: Any
    url: str


class FakeServer:
    """Canned answers per (method, path); the last answer repeats; every request is recorded."""

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

    def requests(self) -> list[tuple[str, str, Any]]:
        return [(c.method, c.path, c.body) for c in self.calls]


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FakeServer:
    server = FakeServer()
    for name in ENV_NAMES:
        monkeypatch.delenv("STRONGROOM_" + name, raising=False)
        monkeypatch.delenv("VAULT_" + name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("STRONGROOM_ADDR", ADDR)
    monkeypatch.setenv("STRONGROOM_TOKEN", "root-token")
    real = main.make_client

    def make_client(settings: Any, **kwargs: Any) -> Client:
        return real(settings, transport=httpx.MockTransport(server.handler), retry_wait=0, **kwargs)

    monkeypatch.setattr(main, "make_client", make_client)
    return server


def run(*args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(main.cli, list(args), input=input)


# --- flags and environment -----------------------------------------------------------------


def test_convert_flags() -> None:
    argv = ["-format=json", "-key-shares", "5", "-", "-1", "-h", "--field=x", "a=-b", "--", "-raw"]
    assert main.convert_flags(argv) == [
        "--format=json",
        "--key-shares",
        "5",
        "-",
        "-1",
        "-h",
        "--field=x",
        "a=-b",
        "--",
        "-raw",
    ]


def test_single_and_double_dash_flags_are_equivalent(fake: FakeServer) -> None:
    fake.on("GET", "secret/foo", body={"data": {"a": "1"}})
    assert run("read", "-field=a", "secret/foo").stdout == "1"
    assert run("read", "--field", "a", "secret/foo").stdout == "1"
    assert run("read", "-field", "a", "-tls-skip-verify", "secret/foo").stdout == "1"


def test_go_style_boolean_values(fake: FakeServer) -> None:
    fake.on("POST", "auth/token/create", body={"auth": {"client_token": "hvs.t"}})
    assert run("token", "create", "-renewable=false", "-orphan=true", "-field=token").exit_code == 0
    assert fake.calls[0].body == {"renewable": False, "no_parent": True}


def test_strongroom_env_wins_over_vault_env(fake: FakeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VAULT_ADDR", "http://vault.test:1")
    monkeypatch.setenv("VAULT_TOKEN", "vault-token")
    monkeypatch.setenv("VAULT_FORMAT", "yaml")
    monkeypatch.setenv("STRONGROOM_FORMAT", "json")
    fake.on("GET", "secret/foo", body={"data": {"a": "1"}})
    result = run("read", "secret/foo")
    assert json.loads(result.stdout) == {"data": {"a": "1"}}
    assert fake.calls[0].url == f"{ADDR}/v1/secret/foo"
    assert fake.calls[0].headers["X-Vault-Token"] == "root-token"
    monkeypatch.delenv("STRONGROOM_ADDR")
    monkeypatch.delenv("STRONGROOM_TOKEN")
    monkeypatch.delenv("STRONGROOM_FORMAT")
    result = run("read", "secret/foo")
    assert yaml.safe_load(result.stdout) == {"data": {"a": "1"}}
    assert fake.calls[1].url == "http://vault.test:1/v1/secret/foo"
    assert fake.calls[1].headers["X-Vault-Token"] == "vault-token"


def test_address_flag_beats_env(fake: FakeServer) -> None:
    fake.on("GET", "secret/foo", body={"data": {"a": "1"}})
    run("read", "-address=http://other.test:9", "secret/foo")
    assert fake.calls[0].url == "http://other.test:9/v1/secret/foo"


def test_usage_errors_exit_1(fake: FakeServer) -> None:
    assert run("read", "-no-such-flag", "x").exit_code == 1
    assert run("no-such-command").exit_code == 1
    assert run("read", "-format=xml", "x").exit_code == 1


def test_version() -> None:
    assert run("version").stdout == "Strongroom v0.1.0\n"
    assert run("-version").stdout == "Strongroom v0.1.0\n"


# --- status and operator -------------------------------------------------------------------

SEAL_STATUS = {
    "type": "shamir",
    "initialized": True,
    "sealed": False,
    "t": 1,
    "n": 1,
    "progress": 0,
    "nonce": "",
    "version": "1.16.3",
    "storage_type": "inmem",
}


def test_status_unsealed(fake: FakeServer) -> None:
    fake.on("GET", "sys/seal-status", body=SEAL_STATUS)
    fake.on("GET", "sys/leader", body={"ha_enabled": False})
    result = run("status")
    assert result.exit_code == 0
    assert fake.requests() == [("GET", "sys/seal-status", None), ("GET", "sys/leader", None)]
    assert result.stdout == (
        "Key             Value\n"
        "---             -----\n"
        "Seal Type       shamir\n"
        "Initialized     true\n"
        "Sealed          false\n"
        "Total Shares    1\n"
        "Threshold       1\n"
        "Version         1.16.3\n"
        "Storage Type    inmem\n"
        "HA Enabled      false\n"
    )


def test_status_sealed_exits_2(fake: FakeServer) -> None:
    fake.on("GET", "sys/seal-status", body={**SEAL_STATUS, "sealed": True, "t": 3, "n": 5, "progress": 1})
    result = run("status")
    assert result.exit_code == 2
    assert "Unseal Progress    1/3" in result.stdout
    assert [c.path for c in fake.calls] == ["sys/seal-status"]


def test_status_error_exits_1(fake: FakeServer) -> None:
    fake.on("GET", "sys/seal-status", 400, {"errors": ["nope"]})
    result = run("status")
    assert result.exit_code == 1
    assert result.stderr.startswith("Error checking seal status: Error making API request.")


def test_status_json(fake: FakeServer) -> None:
    fake.on("GET", "sys/seal-status", body=SEAL_STATUS)
    fake.on("GET", "sys/leader", body={"ha_enabled": False, "is_self": False})
    result = run("status", "-format=json")
    assert json.loads(result.stdout) == {**SEAL_STATUS, "ha_enabled": False, "is_self": False}


INIT_RESPONSE = {
    "keys": ["aa", "bb", "cc", "dd", "ee"],
    "keys_base64": ["qg==", "uw==", "zA==", "3Q==", "7g=="],
    "root_token": "hvs.rootroot",
}


def test_operator_init_table(fake: FakeServer) -> None:
    fake.on("PUT", "sys/init", body=INIT_RESPONSE)
    result = run("operator", "init")
    assert result.exit_code == 0
    assert fake.requests() == [("PUT", "sys/init", {"secret_shares": 5, "secret_threshold": 3})]
    lines = result.stdout.splitlines()
    assert lines[:7] == [
        "Unseal Key 1: qg==",
        "Unseal Key 2: uw==",
        "Unseal Key 3: zA==",
        "Unseal Key 4: 3Q==",
        "Unseal Key 5: 7g==",
        "",
        "Initial Root Token: hvs.rootroot",
    ]
    assert "key threshold of 3" in result.stdout


def test_operator_init_json(fake: FakeServer) -> None:
    fake.on("PUT", "sys/init", body={"keys": ["aa"], "keys_base64": ["qg=="], "root_token": "hvs.r"})
    result = run("operator", "init", "-key-shares=1", "-key-threshold", "1", "-format=json")
    assert fake.calls[0].body == {"secret_shares": 1, "secret_threshold": 1}
    assert json.loads(result.stdout) == {
        "unseal_keys_b64": ["qg=="],
        "unseal_keys_hex": ["aa"],
        "unseal_shares": 1,
        "unseal_threshold": 1,
        "recovery_keys_b64": [],
        "recovery_keys_hex": [],
        "recovery_keys_shares": 5,
        "recovery_keys_threshold": 3,
        "root_token": "hvs.r",
    }


def test_operator_init_status(fake: FakeServer) -> None:
    fake.on("GET", "sys/init", body={"initialized": False})
    result = run("operator", "init", "-status")
    assert (result.exit_code, result.stdout) == (2, "Strongroom is not initialized\n")


def test_operator_unseal_with_key_and_prompt(fake: FakeServer) -> None:
    fake.on("PUT", "sys/unseal", body={**SEAL_STATUS, "sealed": True, "t": 3, "n": 5, "progress": 1})
    result = run("operator", "unseal", "qg==")
    assert result.exit_code == 0
    assert "Unseal Progress    1/3" in result.stdout
    result = run("operator", "unseal", input="uw==\n")
    assert result.exit_code == 0
    assert "uw==" not in result.output  # the prompt hides the key
    result = run("operator", "unseal", "-reset")
    assert [c.body for c in fake.calls] == [{"key": "qg=="}, {"key": "uw=="}, {"reset": True}]


def test_operator_seal(fake: FakeServer) -> None:
    fake.on("PUT", "sys/seal", 204)
    result = run("operator", "seal")
    assert (result.exit_code, result.stdout) == (0, "Success! Strongroom is sealed.\n")


def _encode(token: str, otp: str) -> str:
    raw = bytes(a ^ b for a, b in zip(token.encode(), otp.encode(), strict=True))
    return base64.b64encode(raw).decode()


def test_generate_root_decode(fake: FakeServer) -> None:
    otp = "BMjzW3wAsEzINXCM05Wbas3u9zSl"
    token = "hvs.abcdefghijklmnopqrstuvwx"
    raw_std = _encode(token, otp).rstrip("=")
    result = run(
        "operator", "generate-root", "-address", ADDR, "-tls-skip-verify", "-decode", raw_std, "-otp", otp
    )
    assert (result.exit_code, result.stdout) == (0, token)
    assert fake.calls == []  # decoding is local
    padded_urlsafe = base64.urlsafe_b64encode(base64.b64decode(_encode(token, otp))).decode()
    assert decode_root_token(padded_urlsafe, otp) == token
    result = run("operator", "generate-root", f"-decode={raw_std}", f"-otp={otp}", "-format=json")
    assert json.loads(result.stdout) == {"token": token}


def test_generate_root_flow(fake: FakeServer) -> None:
    fake.on("PUT", "sys/generate-root/attempt", body={"started": True, "nonce": "n1", "otp": "o" * 28})
    fake.on("GET", "sys/generate-root/attempt", body={"started": True, "nonce": "n1", "required": 3})
    fake.on("PUT", "sys/generate-root/update", body={"nonce": "n1", "progress": 1, "required": 3})
    assert run("operator", "generate-root", "-init").exit_code == 0
    assert run("operator", "generate-root", "qg==").exit_code == 0
    assert fake.requests() == [
        ("PUT", "sys/generate-root/attempt", {}),
        ("GET", "sys/generate-root/attempt", None),
        ("PUT", "sys/generate-root/update", {"key": "qg==", "nonce": "n1"}),
    ]


def test_rekey_init(fake: FakeServer) -> None:
    fake.on("PUT", "sys/rekey/init", body={"started": True, "nonce": "n", "t": 2, "n": 3, "required": 3})
    result = run("operator", "rekey", "-init", "-key-shares=3", "-key-threshold=2")
    assert fake.calls[0].body == {"secret_shares": 3, "secret_threshold": 2}
    assert "New Shares               3" in result.stdout


# --- login ---------------------------------------------------------------------------------


def test_login_with_token_saves_the_token_file(fake: FakeServer, tmp_path: Path) -> None:
    fake.on(
        "GET",
        "auth/token/lookup-self",
        body={"data": {"id": "hvs.mine", "accessor": "acc1", "policies": ["root"], "ttl": 0}},
    )
    result = run("login", "hvs.mine")
    assert result.exit_code == 0, result.output
    assert fake.calls[0].headers["X-Vault-Token"] == "hvs.mine"
    token_file = tmp_path / ".strongroom-token"
    assert token_file.read_bytes() == b"hvs.mine"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert "Success! You are now authenticated." in result.stdout
    assert "token_duration       ∞" in result.stdout


def test_login_no_store_and_token_only(fake: FakeServer, tmp_path: Path) -> None:
    fake.on("GET", "auth/token/lookup-self", body={"data": {"id": "hvs.mine", "policies": ["default"]}})
    assert run("login", "-no-store", "hvs.mine").exit_code == 0
    result = run("login", "-token-only", "hvs.mine")
    assert result.stdout == "hvs.mine"
    assert not (tmp_path / ".strongroom-token").exists()


def test_login_rejected_token_exits_2(fake: FakeServer, tmp_path: Path) -> None:
    fake.on("GET", "auth/token/lookup-self", 403, {"errors": ["permission denied"]})
    result = run("login", "bad")
    assert result.exit_code == 2
    assert not (tmp_path / ".strongroom-token").exists()


def test_login_userpass(fake: FakeServer, tmp_path: Path) -> None:
    fake.on(
        "POST",
        "auth/corp/login/bob",
        body={
            "auth": {"client_token": "hvs.bob", "accessor": "a", "policies": ["dev"], "lease_duration": 3600}
        },
    )
    result = run("login", "-method=userpass", "-path=corp", "username=bob", input="s3cret\n")
    assert result.exit_code == 0, result.output
    assert fake.requests() == [("POST", "auth/corp/login/bob", {"password": "s3cret"})]
    assert "X-Vault-Token" not in fake.calls[0].headers
    assert (tmp_path / ".strongroom-token").read_text() == "hvs.bob"
    assert "token_duration       1h" in result.stdout


# --- generic commands ----------------------------------------------------------------------


SECRET = {
    "request_id": "r1",
    "lease_id": "",
    "renewable": False,
    "lease_duration": 2764800,
    "data": {"password": "hunter2", "user": "bob"},
    "wrap_info": None,
    "warnings": None,
    "auth": None,
}


def test_read_table_json_yaml_and_field(fake: FakeServer) -> None:
    fake.on("GET", "secret/foo", body=SECRET)
    assert run("read", "secret/foo").stdout == (
        "Key                 Value\n"
        "---                 -----\n"
        "refresh_interval    768h\n"
        "password            hunter2\n"
        "user                bob\n"
    )
    assert json.loads(run("read", "-format=json", "secret/foo").stdout) == SECRET
    assert yaml.safe_load(run("read", "-format=yaml", "secret/foo").stdout) == SECRET
    assert run("read", "-field=user", "secret/foo").stdout == "bob"
    missing = run("read", "-field=nope", "secret/foo")
    assert missing.exit_code == 1
    assert 'Field "nope" not present in secret' in missing.stderr


def test_read_missing_exits_2(fake: FakeServer) -> None:
    result = run("read", "secret/missing")
    assert result.exit_code == 2
    assert result.stderr == "No value found at secret/missing\n"


def test_api_error_format_and_exit_2(fake: FakeServer) -> None:
    fake.on("GET", "secret/foo", 403, {"errors": ["permission denied"]})
    result = run("read", "secret/foo")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr == (
        "Error reading secret/foo: Error making API request.\n\n"
        f"URL: GET {ADDR}/v1/secret/foo\n"
        "Code: 403. Errors:\n\n"
        "* permission denied\n"
    )


def test_write_data_sources(fake: FakeServer, tmp_path: Path) -> None:
    fake.on("POST", "secret/foo", 204)
    (tmp_path / "cert.pem").write_text("PEM")
    result = run("write", "secret/foo", "a=1", "a=2", f"cert=@{tmp_path / 'cert.pem'}")
    assert (result.exit_code, result.stdout) == (0, "Success! Data written to: secret/foo\n")
    assert run("write", "secret/foo", "-", input='{"x": {"y": 1}}').exit_code == 0
    assert run("write", "secret/foo").exit_code == 1
    assert run("write", "-force", "secret/foo").exit_code == 0
    assert [c.body for c in fake.calls] == [
        {"a": ["1", "2"], "cert": "PEM"},
        {"x": {"y": 1}},
        {},
    ]


def test_list_and_delete(fake: FakeServer) -> None:
    fake.on("LIST", "secret", body={"data": {"keys": ["a", "b/"]}})
    fake.on("DELETE", "secret/a", 204)
    assert run("list", "secret").stdout == "Keys\n----\na\nb/\n"
    assert json.loads(run("list", "-format=json", "secret").stdout) == ["a", "b/"]
    assert run("list", "empty").exit_code == 2
    assert run("delete", "secret/a").stdout == "Success! Data deleted (if it existed) at: secret/a\n"
    assert [c.method for c in fake.calls] == ["LIST", "LIST", "LIST", "DELETE"]


def test_unwrap(fake: FakeServer) -> None:
    fake.on("POST", "sys/wrapping/unwrap", body={"data": {"k": "v"}})
    assert run("unwrap", "-field=k", "wrap-tok").stdout == "v"
    assert fake.calls[0].body == {"token": "wrap-tok"}


# --- kv ------------------------------------------------------------------------------------


def test_kv_put_and_get_v2(fake: FakeServer) -> None:
    fake.on("GET", "sys/internal/ui/mounts/secret/foo", body=KV2_MOUNT)
    fake.on("POST", "secret/data/foo", body={"data": METADATA})
    fake.on("GET", "secret/data/foo", body={"data": {"data": {"a": "1"}, "metadata": METADATA}})
    put = run("kv", "put", "secret/foo", "a=1")
    assert put.exit_code == 0, put.output
    get = run("kv", "get", "secret/foo")
    assert get.exit_code == 0, get.output
    assert fake.requests() == [
        ("GET", "sys/internal/ui/mounts/secret/foo", None),
        ("POST", "secret/data/foo", {"data": {"a": "1"}, "options": {}}),
        ("GET", "sys/internal/ui/mounts/secret/foo", None),
        ("GET", "secret/data/foo", None),
    ]
    metadata_table = (
        "======= Metadata =======\n"
        "Key                Value\n"
        "---                -----\n"
        "created_time       2024-01-01T00:00:00Z\n"
        "custom_metadata    <nil>\n"
        "deletion_time      n/a\n"
        "destroyed          false\n"
        "version            1\n"
    )
    assert put.stdout == "= Secret Path =\nsecret/data/foo\n\n" + metadata_table
    assert get.stdout == (
        "= Secret Path =\nsecret/data/foo\n\n" + metadata_table + "\n"
        "== Data ==\nKey    Value\n---    -----\na      1\n"
    )
    assert run("kv", "get", "-field=a", "secret/foo").stdout == "1"


def test_kv_mount_flag_cas_and_version(fake: FakeServer) -> None:
    fake.on("GET", "sys/internal/ui/mounts/secret", body=KV2_MOUNT)
    fake.on("POST", "secret/data/app/db", body={"data": METADATA})
    fake.on("GET", "secret/data/app/db", body={"data": {"data": {"a": "1"}, "metadata": METADATA}})
    assert run("kv", "put", "-mount=secret", "-cas=0", "app/db", "a=1").exit_code == 0
    assert run("kv", "get", "-mount", "secret", "-version=3", "app/db").exit_code == 0
    assert fake.calls[1].body == {"data": {"a": "1"}, "options": {"cas": 0}}
    assert fake.calls[3].params == {"version": "3"}
    assert [c.path for c in fake.calls] == [
        "sys/internal/ui/mounts/secret",
        "secret/data/app/db",
        "sys/internal/ui/mounts/secret",
        "secret/data/app/db",
    ]


def test_kv_put_and_get_v1(fake: FakeServer) -> None:
    fake.on("GET", "sys/internal/ui/mounts/kv1/foo", body=KV1_MOUNT)
    fake.on("POST", "kv1/foo", 204)
    fake.on("GET", "kv1/foo", body={"data": {"a": "1"}, "lease_duration": 2764800})
    assert run("kv", "put", "kv1/foo", "a=1").stdout == "Success! Data written to: kv1/foo\n"
    assert run("kv", "get", "kv1/foo").stdout == "== Data ==\nKey    Value\n---    -----\na      1\n"
    assert fake.requests()[1] == ("POST", "kv1/foo", {"a": "1"})
    assert fake.requests()[3] == ("GET", "kv1/foo", None)


def test_kv_get_missing_exits_2(fake: FakeServer) -> None:
    fake.on("GET", "sys/internal/ui/mounts/secret/foo", body=KV2_MOUNT)
    result = run("kv", "get", "secret/foo")
    assert result.exit_code == 2
    assert result.stderr == "No value found at secret/data/foo\n"


def test_kv_patch_falls_back_to_read_then_write(fake: FakeServer) -> None:
    fake.on("GET", "sys/internal/ui/mounts/secret/foo", body=KV2_MOUNT)
    fake.on("PATCH", "secret/data/foo", 403, {"errors": ["permission denied"]})
    current = {"data": {"data": {"a": "1", "b": "2"}, "metadata": {**METADATA, "version": 4}}}
    fake.on("GET", "secret/data/foo", body=current)
    fake.on("POST", "secret/data/foo", body={"data": {**METADATA, "version": 5}})
    result = run("kv", "patch", "secret/foo", "b=3")
    assert result.exit_code == 0, result.output
    assert fake.requests() == [
        ("GET", "sys/internal/ui/mounts/secret/foo", None),
        ("PATCH", "secret/data/foo", {"data": {"b": "3"}, "options": {}}),
        ("GET", "secret/data/foo", None),
        ("POST", "secret/data/foo", {"data": {"a": "1", "b": "3"}, "options": {"cas": 4}}),
    ]
    assert fake.calls[1].headers["Content-Type"] == "application/merge-patch+json"
    assert "version            5" in result.stdout


def test_kv_patch_method_rw_and_patch(fake: FakeServer) -> None:
    fake.on("GET", "sys/internal/ui/mounts/secret/foo", body=KV2_MOUNT)
    fake.on("GET", "secret/data/foo", body={"data": {"data": {"a": "1"}, "metadata": METADATA}})
    fake.on("POST", "secret/data/foo", body={"data": METADATA})
    fake.on("PATCH", "secret/data/foo", 405, {"errors": ["unsupported operation"]})
    assert run("kv", "patch", "-method=rw", "secret/foo", "c=1").exit_code == 0
    assert "PATCH" not in [c.method for c in fake.calls]
    result = run("kv", "patch", "-method=patch", "secret/foo", "c=1")
    assert result.exit_code == 2
    assert "Code: 405" in result.stderr


def test_kv_patch_on_v1_is_refused(fake: FakeServer) -> None:
    fake.on("GET", "sys/internal/ui/mounts/kv1/foo", body=KV1_MOUNT)
    result = run("kv", "patch", "kv1/foo", "a=1")
    assert result.exit_code == 2
    assert "version 2" in result.stderr


def test_kv_versions_and_metadata(fake: FakeServer) -> None:
    fake.on("GET", "sys/internal/ui/mounts/secret/foo", body=KV2_MOUNT)
    fake.on("POST", "secret/delete/foo", 204)
    fake.on("POST", "secret/undelete/foo", 204)
    fake.on("PUT", "secret/destroy/foo", 204)
    fake.on("DELETE", "secret/data/foo", 204)
    fake.on("POST", "secret/metadata/foo", 204)
    assert run("kv", "delete", "-versions=1,2", "secret/foo").exit_code == 0
    assert run("kv", "undelete", "-versions=1", "secret/foo").exit_code == 0
    assert run("kv", "destroy", "-versions", "2", "secret/foo").exit_code == 0
    assert run("kv", "delete", "secret/foo").exit_code == 0
    assert (
        run("kv", "metadata", "put", "-max-versions=3", "-custom-metadata=team=a", "secret/foo").exit_code
        == 0
    )
    assert [r for r in fake.requests() if not r[1].startswith("sys/")] == [
        ("POST", "secret/delete/foo", {"versions": [1, 2]}),
        ("POST", "secret/undelete/foo", {"versions": [1]}),
        ("PUT", "secret/destroy/foo", {"versions": [2]}),
        ("DELETE", "secret/data/foo", None),
        ("POST", "secret/metadata/foo", {"max_versions": 3, "custom_metadata": {"team": "a"}}),
    ]


def test_kv_list(fake: FakeServer) -> None:
    fake.on("GET", "sys/internal/ui/mounts/secret", body=KV2_MOUNT)
    fake.on("LIST", "secret/metadata", body={"data": {"keys": ["foo", "dir/"]}})
    result = run("kv", "list", "secret")
    assert result.stdout == "Keys\n----\nfoo\ndir/\n"


# --- token, policy, secrets ----------------------------------------------------------------


def test_token_create_field_token(fake: FakeServer) -> None:
    fake.on(
        "POST",
        "auth/token/create",
        body={"auth": {"client_token": "hvs.new", "accessor": "acc", "policies": ["a", "default"]}},
    )
    result = run(
        "token",
        "create",
        "-policy=a",
        "-policy",
        "b,c",
        "-ttl=1h",
        "-use-limit=2",
        "-metadata",
        "user=bob",
        "-type=batch",
        "-field=token",
    )
    assert (result.exit_code, result.stdout) == (0, "hvs.new")
    assert fake.calls[0].body == {
        "policies": ["a", "b", "c"],
        "ttl": "1h",
        "type": "batch",
        "num_uses": 2,
        "meta": {"user": "bob"},
    }


def test_token_create_table_and_role(fake: FakeServer) -> None:
    fake.on(
        "POST",
        "auth/token/create/ci",
        body={
            "auth": {
                "client_token": "hvs.new",
                "accessor": "acc",
                "policies": ["default"],
                "token_policies": ["default"],
                "lease_duration": 2764800,
                "renewable": True,
            }
        },
    )
    result = run("token", "create", "-role=ci")
    assert result.stdout == (
        "Key                  Value\n"
        "---                  -----\n"
        "token                hvs.new\n"
        "token_accessor       acc\n"
        "token_duration       768h\n"
        "token_renewable      true\n"
        'token_policies       ["default"]\n'
        "identity_policies    []\n"
        'policies             ["default"]\n'
    )


def test_token_lookup_revoke_capabilities(fake: FakeServer) -> None:
    fake.on("POST", "auth/token/lookup", body={"data": {"id": "t", "ttl": 60}})
    fake.on("POST", "auth/token/revoke-self", 204)
    fake.on("POST", "sys/capabilities", body={"data": {"secret/foo": ["update", "read"]}})
    assert run("token", "lookup", "t").stdout.splitlines()[2:] == ["id     t", "ttl    1m"]
    assert run("token", "revoke", "-self").stdout == "Success! Revoked token (if it existed)\n"
    assert run("token", "capabilities", "t", "secret/foo").stdout == "read, update\n"
    assert fake.requests() == [
        ("POST", "auth/token/lookup", {"token": "t"}),
        ("POST", "auth/token/revoke-self", {}),
        ("POST", "sys/capabilities", {"token": "t", "paths": ["secret/foo"]}),
    ]


POLICY = 'path "secret/*" {\n  capabilities = ["read"]\n}\n'


def test_policy_write_from_file_and_stdin(fake: FakeServer, tmp_path: Path) -> None:
    fake.on("PUT", "sys/policies/acl/dev", 204)
    (tmp_path / "dev.hcl").write_text(POLICY)
    result = run("policy", "write", "Dev", str(tmp_path / "dev.hcl"))
    assert (result.exit_code, result.stdout) == (0, "Success! Uploaded policy: dev\n")
    assert run("policy", "write", "dev", "-", input=POLICY).exit_code == 0
    assert fake.requests() == [
        ("PUT", "sys/policies/acl/dev", {"policy": POLICY}),
        ("PUT", "sys/policies/acl/dev", {"policy": POLICY}),
    ]


def test_policy_read_list_delete(fake: FakeServer) -> None:
    fake.on("GET", "sys/policies/acl/dev", body={"data": {"name": "dev", "policy": POLICY}})
    fake.on("LIST", "sys/policies/acl", body={"data": {"keys": ["default", "dev", "root"]}})
    fake.on("DELETE", "sys/policies/acl/dev", 204)
    assert run("policy", "read", "dev").stdout == POLICY
    assert run("policy", "read", "nope").exit_code == 2
    assert run("policy", "list").stdout == "default\ndev\nroot\n"
    assert run("policy", "delete", "dev").stdout == "Success! Deleted policy: dev\n"


def test_policy_fmt(tmp_path: Path) -> None:
    path = tmp_path / "p.hcl"
    path.write_text('path "secret/*" {capabilities=["read","list"]\n  allowed_parameters = {"*" = []}}\n')
    result = run("policy", "fmt", str(path))
    assert result.exit_code == 0, result.output
    assert path.read_text() == (
        'path "secret/*" {\n'
        '  capabilities = ["read", "list"]\n'
        "  allowed_parameters = {\n"
        '    "*" = []\n'
        "  }\n"
        "}\n"
    )
    path.write_text('path "a" {\n}\npath "a" {\n}\n')
    assert run("policy", "fmt", str(path)).exit_code == 1


def test_secrets_enable_kv_v2(fake: FakeServer) -> None:
    fake.on("POST", "sys/mounts/kv-v2", 204)
    fake.on("POST", "sys/mounts/kv", 204)
    result = run("secrets", "enable", "kv-v2")
    assert (result.exit_code, result.stdout) == (0, "Success! Enabled the kv secrets engine at: kv-v2/\n")
    result = run(
        "secrets", "enable", "-path=kv", "-version=2", "-description=team kv", "-max-lease-ttl=1h", "kv"
    )
    assert result.exit_code == 0, result.output
    assert fake.requests() == [
        ("POST", "sys/mounts/kv-v2", {"type": "kv", "options": {"version": "2"}}),
        (
            "POST",
            "sys/mounts/kv",
            {
                "type": "kv",
                "description": "team kv",
                "config": {"max_lease_ttl": "1h"},
                "options": {"version": "2"},
            },
        ),
    ]


def test_secrets_list_and_auth(fake: FakeServer) -> None:
    mounts = {
        "secret/": {"type": "kv", "accessor": "kv_1", "description": "key/value secret storage"},
        "sys/": {"type": "system", "accessor": "system_2", "description": "system endpoints"},
    }
    fake.on("GET", "sys/mounts", body={**mounts, "request_id": "x", "data": mounts})
    fake.on("POST", "sys/auth/userpass", 204)
    fake.on("POST", "sys/mounts/auth/userpass/tune", 204)
    assert run("secrets", "list").stdout == (
        "Path       Type      Accessor    Description\n"
        "----       ----      --------    -----------\n"
        "secret/    kv        kv_1        key/value secret storage\n"
        "sys/       system    system_2    system endpoints\n"
    )
    assert run("auth", "enable", "userpass").stdout == "Success! Enabled userpass auth method at: userpass/\n"
    assert run("auth", "tune", "-default-lease-ttl=5m", "userpass").exit_code == 0
    assert fake.requests()[1:] == [
        ("POST", "sys/auth/userpass", {"type": "userpass"}),
        ("POST", "sys/mounts/auth/userpass/tune", {"default_lease_ttl": "5m"}),
    ]


def test_server_without_config_is_a_usage_error() -> None:
    result = run("server")
    assert result.exit_code == 1
    assert "-config" in result.stderr


def test_server_builds_the_config_and_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """The server modules are stood in for, so this checks only the CLI's side of the contract."""
    calls: list[tuple[str, Any]] = []
    config_module = types.ModuleType("strongroom.config")
    server_module = types.ModuleType("strongroom.server")
    config_module.dev_config = lambda **kw: calls.append(("dev_config", kw)) or "dev-cfg"  # type: ignore[attr-defined]
    config_module.load_config = lambda path: calls.append(("load_config", path)) or "file-cfg"  # type: ignore[attr-defined]
    server_module.run_server = lambda cfg: calls.append(("run_server", cfg))  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "strongroom.config", config_module)
    monkeypatch.setitem(sys.modules, "strongroom.server", server_module)
    for name in ("DEV_ROOT_TOKEN_ID", "DEV_LISTEN_ADDRESS"):
        monkeypatch.delenv("STRONGROOM_" + name, raising=False)
    monkeypatch.setenv("VAULT_DEV_LISTEN_ADDRESS", "127.0.0.1:8300")
    assert run("server", "-dev", "-dev-root-token-id=root").exit_code == 0
    assert run("server", "-config=/etc/strongroom.hcl").exit_code == 0
    assert calls == [
        ("dev_config", {"root_token_id": "root", "listen_address": "127.0.0.1:8300"}),
        ("run_server", "dev-cfg"),
        ("load_config", "/etc/strongroom.hcl"),
        ("run_server", "file-cfg"),
    ]


def test_read_with_only_warnings_is_not_found(fake: FakeServer) -> None:
    warning = "Invalid path for a versioned K/V secrets engine."
    fake.on("GET", "secret/foo", 404, {"data": None, "warnings": [warning], "auth": None})
    result = run("read", "secret/foo")
    assert result.exit_code == 2
    assert warning in result.stderr
    assert result.stderr.endswith("No value found at secret/foo\n")
