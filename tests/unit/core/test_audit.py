"""Audit devices end to end: entry format, HMAC, sys/audit-hash, failing closed, sys/audit API."""

from __future__ import annotations

import asyncio
import copy
import json
import os
import secrets
import shutil
import time
from pathlib import Path as FsPath
from typing import Any

import pytest

from strongroom.core.assemble import build_core
from strongroom.core.audit import AuditBroker, Formatter
from strongroom.core.audit_devices import DeviceError, StreamSocketDevice, check_file_path, parse_file_mode
from strongroom.core.sync import SharedGenerations
from strongroom.core.tokens import TokenEntry
from strongroom.framework import Field, FieldData, FieldType, FrameworkBackend, Path, PathOperation
from strongroom.logical.backend import Backend, BackendConfig
from strongroom.logical.errors import UserError
from strongroom.logical.request import Operation, RawResponse, Request, Response
from strongroom.testing import Harness, running_core

# -- helpers -------------------------------------------------------------------------------------


async def enable_file(h: Harness, name: str, file_path: FsPath | str, **options: Any) -> None:
    opts = {"file_path": str(file_path), **options}
    r = await h.call("PUT", f"sys/audit/{name}", json={"type": "file", "options": opts})
    assert r.status_code == 204, r.text


async def mount_kv(h: Harness, path: str = "secret") -> None:
    r = await h.call("POST", f"sys/mounts/{path}", json={"type": "kv", "options": {"version": "1"}})
    assert r.status_code == 204, r.text


def entries(log: FsPath) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def for_path(log: FsPath, path: str) -> list[dict[str, Any]]:
    return [e for e in entries(log) if e["request"].get("path") == path]


async def audit_hash(h: Harness, device: str, value: str) -> str:
    r = await h.call("PUT", f"sys/audit-hash/{device}", json={"input": value})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["hash"] == body["data"]["hash"]
    return str(body["hash"])


async def token_with(h: Harness, policy: str, name: str = "p1") -> str:
    r = await h.call("PUT", f"sys/policies/acl/{name}", json={"policy": policy})
    assert r.status_code == 204, r.text
    entry = await h.core.tokens.create(TokenEntry(id="", policies=["default", name]))
    return entry.id


class LineServer:
    """A TCP server that collects the lines audit devices send it."""

    def __init__(self) -> None:
        self.lines: list[bytes] = []
        self.server: asyncio.Server | None = None
        self.writers: list[asyncio.StreamWriter] = []
        self.port = 0

    async def start(self) -> None:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.writers.append(writer)
            while line := await reader.readline():
                self.lines.append(line)

        self.server = await asyncio.start_server(handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in self.writers:
            writer.close()
        await self.server.wait_closed()
        await asyncio.sleep(0.05)  # let the device's side see the close


# -- the entry format and HMAC -------------------------------------------------------------------


async def test_kv_write_is_logged_hashed_and_audit_hash_reproduces_it(tmp_path: FsPath) -> None:
    log = tmp_path / "audit.log"
    async with running_core() as h:
        await mount_kv(h)
        await enable_file(h, "file", log)
        secret = "s3cr3t-" + secrets.token_hex(8)
        r = await h.call("PUT", "secret/app", json={"password": secret, "port": 5432, "on": True})
        assert r.status_code == 204
        r = await h.call("GET", "secret/app")
        assert r.json()["data"]["password"] == secret

        text = log.read_text()
        assert secret not in text
        assert h.root_token not in text
        expected = await audit_hash(h, "file", secret)
        writes = [e for e in for_path(log, "secret/app") if e["request"]["operation"] == "create"]
        assert [e["type"] for e in writes] == ["request", "response"]
        request = writes[0]["request"]
        assert request["data"] == {"password": expected, "port": 5432, "on": True}
        assert request["mount_type"] == "kv" and request["mount_point"] == "secret/"
        assert request["namespace"] == {"id": "root"}
        assert request["remote_address"] == "127.0.0.1"
        assert request["id"] == writes[1]["request"]["id"]
        assert request["client_token"] == await audit_hash(h, "file", h.root_token)
        assert request["client_token"] == writes[0]["auth"]["client_token"]
        token = await h.core.tokens.lookup(h.root_token)
        assert token is not None
        assert writes[0]["auth"]["accessor"] == await audit_hash(h, "file", token.accessor)
        assert writes[0]["auth"]["policies"] == ["root"]
        assert writes[0]["time"].endswith("Z")
        assert "headers" not in request  # nothing configured: no header (and never the token) is logged

        reads = [e for e in for_path(log, "secret/app") if e["type"] == "response"]
        read = [e for e in reads if e["request"]["operation"] == "read"][0]
        assert read["response"]["data"] == {"password": expected, "port": 5432, "on": True}
        assert read["response"]["mount_type"] == "kv"


async def test_hundred_planted_secrets_and_tokens_never_in_plaintext(tmp_path: FsPath) -> None:
    log = tmp_path / "audit.log"
    planted: list[str] = []
    async with running_core() as h:
        await mount_kv(h)
        await enable_file(h, "file", log)
        planted.append(h.root_token)
        everything = 'path "*" { capabilities = ["create", "read", "update", "delete", "list", "sudo"] }'
        r = await h.call("PUT", "sys/policies/acl/all", json={"policy": everything})
        assert r.status_code == 204
        for i in range(20):
            kind = "batch" if i % 5 == 0 else "service"
            r = await h.call("POST", "auth/token/create", json={"policies": ["all"], "type": kind})
            assert r.status_code == 200, r.text
            auth = r.json()["auth"]
            token = auth["client_token"]
            planted.append(token)
            if auth["accessor"]:
                planted.append(auth["accessor"])
            value = secrets.token_urlsafe(16)
            planted.append(value)
            r = await h.call(
                "PUT", f"secret/k{i}", json={"value": value, "nested": {"list": [value + "x"]}}, token=token
            )
            assert r.status_code == 204, r.text
            planted.append(value + "x")
            r = await h.call("GET", f"secret/k{i}", token=token)
            assert r.status_code == 200
            r = await h.call("POST", "auth/token/lookup", json={"token": token})
            assert r.status_code == 200
            wrapped = secrets.token_hex(12)
            planted.append(wrapped)
            r = await h.call(
                "POST", "sys/wrapping/wrap", json={"w": wrapped}, headers={"X-Vault-Wrap-TTL": "60s"}
            )
            assert r.status_code == 200, r.text
            wrap_token = r.json()["wrap_info"]["token"]
            planted.append(wrap_token)
            r = await h.call("POST", "sys/wrapping/unwrap", json={"token": wrap_token})
            assert r.status_code == 200 and r.json()["data"]["w"] == wrapped
        assert len(planted) >= 100
        text = log.read_text()
        hits = [p for p in planted if p in text]
        assert hits == []
        assert len(entries(log)) > 200


async def test_log_raw_on_one_device_does_not_leak_into_another(tmp_path: FsPath) -> None:
    raw_log, hashed_log = tmp_path / "raw.log", tmp_path / "hashed.log"
    async with running_core() as h:
        await mount_kv(h)
        await enable_file(h, "raw", raw_log, log_raw=True)
        await enable_file(h, "hashed", hashed_log)
        secret = secrets.token_hex(16)
        r = await h.call("PUT", "secret/x", json={"v": secret})
        assert r.status_code == 204
        r = await h.call("GET", "secret/x")
        assert r.status_code == 200
        assert secret in raw_log.read_text()  # the raw device really is raw...
        assert secret not in hashed_log.read_text()  # ...and the other one is not
        # the client token stays hashed even on the raw device
        assert h.root_token not in raw_log.read_text()
        expected = await audit_hash(h, "hashed", secret)
        assert expected in hashed_log.read_text()
        # each device has its own salt
        assert await audit_hash(h, "raw", secret) != expected


async def test_non_hmac_keys_of_the_mount_are_logged_plain(tmp_path: FsPath) -> None:
    log = tmp_path / "audit.log"
    async with running_core() as h:
        await mount_kv(h)
        r = await h.call(
            "POST",
            "sys/mounts/secret/tune",
            json={"audit_non_hmac_request_keys": ["user"], "audit_non_hmac_response_keys": ["user"]},
        )
        assert r.status_code == 204, r.text
        await enable_file(h, "file", log)
        await h.call("PUT", "secret/x", json={"user": "alice", "password": "hunter2hunter2"})
        await h.call("GET", "secret/x")
        text = log.read_text()
        assert "hunter2hunter2" not in text
        logged = for_path(log, "secret/x")
        assert logged[0]["request"]["data"]["user"] == "alice"
        read = [e for e in logged if e["type"] == "response" and e["request"]["operation"] == "read"][0]
        assert read["response"]["data"]["user"] == "alice"
        assert read["response"]["data"]["password"].startswith("hmac-sha256:")


class RawBackend(FrameworkBackend):
    """Answers every read with a raw (non-JSON) body, like a CRL or a certificate."""

    backend_type = "rawdummy"
    body = b""

    def build_paths(self) -> list[Path]:
        async def read(req: Request, d: FieldData) -> Response | None:
            return Response(raw=RawResponse(RawBackend.body, content_type="application/pkix-cert"))

        return [
            Path(
                "{key:path}",
                fields={"key": Field(FieldType.STRING, "key")},
                operations={Operation.READ: PathOperation(read)},
            )
        ]


async def raw_factory(config: BackendConfig) -> Backend:
    return RawBackend(config)


async def test_raw_response_bodies_are_hashed_as_a_whole(tmp_path: FsPath) -> None:
    log = tmp_path / "audit.log"
    body = "-----BEGIN CERTIFICATE-----\n" + secrets.token_hex(24) + "\n-----END CERTIFICATE-----\n"
    RawBackend.body = body.encode()
    async with running_core() as h:
        h.core.factories["rawdummy"] = raw_factory
        r = await h.call("POST", "sys/mounts/raw", json={"type": "rawdummy"})
        assert r.status_code == 204, r.text
        await enable_file(h, "file", log)
        r = await h.call("GET", "raw/cert/ca")
        assert r.status_code == 200 and r.content == body.encode()
        text = log.read_text()
        assert body.splitlines()[1] not in text
        response = [e for e in for_path(log, "raw/cert/ca") if e["type"] == "response"][0]["response"]
        assert response["data"]["http_raw_body"] == await audit_hash(h, "file", body)
        assert response["data"]["http_status_code"] == 200


async def test_errors_list_elision_and_headers(tmp_path: FsPath) -> None:
    log = tmp_path / "audit.log"
    async with running_core() as h:
        await mount_kv(h)
        await enable_file(h, "file", log, elide_list_responses=True)
        for i in range(3):
            await h.call("PUT", f"secret/item{i}", json={"v": "x"})
        r = await h.client.request("LIST", "/v1/secret/", headers=h.headers())
        assert r.status_code == 200 and len(r.json()["data"]["keys"]) == 3
        listing = [e for e in for_path(log, "secret/") if e["type"] == "response"][0]
        assert listing["response"]["data"]["keys"] == 3

        r = await h.call("PUT", "sys/policies/acl/bad", json={"policy": "path {{{"})
        assert r.status_code == 400
        failed = [e for e in for_path(log, "sys/policies/acl/bad") if e["type"] == "response"][0]
        assert failed["error"]

        assert isinstance(h.core.audit, AuditBroker)
        h.core.audit.request_headers = {"x-vault-token": False, "authorization": False, "user-agent": True}
        await h.call("GET", "secret/item0", headers={"Authorization": "Bearer " + h.root_token})
        read = for_path(log, "secret/item0")[-1]["request"]
        assert set(read["headers"]) == {"user-agent"}
        assert read["headers"]["user-agent"][0].startswith("hmac-sha256:")
        assert h.root_token not in log.read_text()


async def test_seal_endpoints_are_not_audited(tmp_path: FsPath) -> None:
    log = tmp_path / "audit.log"
    async with running_core() as h:
        await enable_file(h, "file", log)
        for path in ("sys/health", "sys/seal-status", "sys/leader", "sys/init"):
            r = await h.call("GET", path)
            assert r.status_code == 200, path
        r = await h.call("PUT", "sys/unseal", json={"key": h.keys[0]})
        assert r.status_code == 200
        logged = {e["request"]["path"] for e in entries(log)}
        assert not logged & {"sys/health", "sys/seal-status", "sys/leader", "sys/init", "sys/unseal"}


async def test_deeply_nested_request_is_still_audited(tmp_path: FsPath) -> None:
    log = tmp_path / "audit.log"
    async with running_core() as h:
        await mount_kv(h)
        await enable_file(h, "file", log)
        deep: Any = "bottom-secret"
        for _ in range(450):
            deep = {"d": deep}
        r = await h.call("PUT", "secret/deep", json={"v": deep})
        assert r.status_code == 204, r.text
        assert "bottom-secret" not in log.read_text()


# -- failing closed ------------------------------------------------------------------------------


async def test_a_broken_sole_file_device_fails_requests_closed(tmp_path: FsPath) -> None:
    folder = tmp_path / "logs"
    folder.mkdir()
    log = folder / "audit.log"
    async with running_core() as h:
        await mount_kv(h)
        await enable_file(h, "file", log)
        shutil.rmtree(folder)
        secret = secrets.token_hex(16)
        r = await h.call("PUT", "secret/x", json={"v": secret})
        assert r.status_code == 500
        assert r.json() == {"errors": ["internal error"]}
        assert secret not in r.text
        r = await h.call("GET", "sys/audit")
        assert r.status_code == 500
        # the folder comes back: the device reopens the path, and the write never happened
        folder.mkdir()
        r = await h.call("GET", "secret/x")
        assert r.status_code == 404
        assert len(entries(log)) == 2


async def test_replacing_the_log_with_a_directory_fails_closed(tmp_path: FsPath) -> None:
    log = tmp_path / "audit.log"
    async with running_core() as h:
        await mount_kv(h)
        await enable_file(h, "file", log)
        log.unlink()
        log.mkdir()
        r = await h.call("PUT", "secret/x", json={"v": "value"})
        assert r.status_code == 500 and r.json() == {"errors": ["internal error"]}


async def test_deleted_log_file_is_recreated(tmp_path: FsPath) -> None:
    log = tmp_path / "audit.log"
    async with running_core() as h:
        await mount_kv(h)
        await enable_file(h, "file", log, mode="0640")
        assert oct(log.stat().st_mode & 0o777) == oct(0o640)
        log.unlink()
        r = await h.call("PUT", "secret/x", json={"v": "value"})
        assert r.status_code == 204
        assert {e["request"]["path"] for e in entries(log)} == {"secret/x"}
        assert oct(log.stat().st_mode & 0o777) == oct(0o640)


async def test_socket_device_and_its_failure(tmp_path: FsPath) -> None:
    server = LineServer()
    await server.start()
    try:
        async with running_core() as h:
            await mount_kv(h)
            r = await h.call(
                "PUT",
                "sys/audit/sock",
                json={"type": "socket", "options": {"address": f"127.0.0.1:{server.port}"}},
            )
            assert r.status_code == 204, r.text
            secret = secrets.token_hex(16)
            r = await h.call("PUT", "secret/x", json={"v": secret})
            assert r.status_code == 204
            await asyncio.sleep(0.05)
            lines = [json.loads(line) for line in server.lines]
            assert [e["type"] for e in lines if e["request"]["path"] == "secret/x"] == ["request", "response"]
            assert secret not in b"".join(server.lines).decode()

            await server.stop()
            r = await h.call("PUT", "secret/y", json={"v": secret})
            assert r.status_code == 500
            assert r.json() == {"errors": ["internal error"]}
            assert secret not in r.text
            r = await h.call("GET", "secret/x")
            assert r.status_code == 500
    finally:
        if server.server is not None:
            server.server.close()


async def test_one_broken_device_of_two_does_not_fail_requests(tmp_path: FsPath) -> None:
    server = LineServer()
    await server.start()
    good = tmp_path / "good.log"
    async with running_core() as h:
        await mount_kv(h)
        r = await h.call(
            "PUT",
            "sys/audit/sock",
            json={
                "type": "socket",
                "options": {"address": f"127.0.0.1:{server.port}", "write_timeout": "1s"},
            },
        )
        assert r.status_code == 204, r.text
        await enable_file(h, "good", good)
        await server.stop()
        for i in range(10):
            r = await h.call("PUT", f"secret/k{i}", json={"v": "x"})
            assert r.status_code == 204
        assert len([e for e in entries(good) if e["request"]["path"].startswith("secret/k")]) == 20
        # the broken device can be disabled; the remaining one keeps the node auditing
        r = await h.call("DELETE", "sys/audit/sock")
        assert r.status_code == 204
        r = await h.call("GET", "secret/k1")
        assert r.status_code == 200


async def test_a_hung_socket_peer_fails_writes_within_the_timeout() -> None:
    held: list[asyncio.StreamWriter] = []

    async def never_read(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(never_read, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    device = StreamSocketDevice("tcp", f"127.0.0.1:{port}", 1.0)
    try:
        await device.open()
        started = time.monotonic()
        with pytest.raises(DeviceError):
            await device.write(b"x" * (64 * 1024 * 1024) + b"\n")  # more than the kernel buffers
        assert time.monotonic() - started < 3
        # a write queued behind a stuck one gives up after one timeout as well
        await device._lock.acquire()
        started = time.monotonic()
        with pytest.raises(DeviceError):
            await device.write(b"y\n")
        assert time.monotonic() - started < 2
        device._lock.release()
    finally:
        await device.close()
        for writer in held:
            writer.close()
        server.close()


# -- the sys/audit API ---------------------------------------------------------------------------


async def test_list_enable_disable_semantics(tmp_path: FsPath) -> None:
    log = tmp_path / "a.log"
    async with running_core() as h:
        r = await h.call("GET", "sys/audit")
        assert r.status_code == 200 and r.json()["data"] == {}
        r = await h.call(
            "PUT",
            "sys/audit/test-tempfile",
            json={"type": "file", "description": "d1", "options": {"path": str(log)}, "local": False},
        )
        assert r.status_code == 204, r.text
        r = await h.call("GET", "sys/audit")
        body = r.json()
        view = {
            "type": "file",
            "description": "d1",
            "options": {"path": str(log)},
            "local": False,
            "path": "test-tempfile/",
        }
        assert body["data"] == {"test-tempfile/": view}
        assert body["test-tempfile/"] == view
        r = await h.client.request("LIST", "/v1/sys/audit", headers=h.headers())
        assert r.status_code == 200 and "test-tempfile/" in r.json()["data"]

        first = await audit_hash(h, "test-tempfile", "hvac-rox")
        assert first.startswith("hmac-sha256:") and len(first) == len("hmac-sha256:") + 64
        # conflicts, bad input
        for path, payload, fragment in [
            ("test-tempfile", {"type": "file", "options": {"file_path": str(log)}}, "path already in use"),
            (
                "test-tempfile/sub",
                {"type": "file", "options": {"file_path": str(log)}},
                "path already in use",
            ),
            ("x", {"type": "nope"}, "unknown backend type"),
            ("x", {"type": "file", "options": {}}, "file_path is required"),
            ("x", {"type": "file", "options": {"file_path": "rel/a.log"}}, "absolute"),
            ("x", {"type": "file", "options": {"file_path": str(log), "mode": "0777"}}, "execute"),
            ("x", {"type": "file", "options": {"file_path": str(log), "mode": "4600"}}, "setuid"),
            ("x", {"type": "file", "options": {"file_path": "/proc/sys/kernel/core_pattern"}}, "/proc"),
            ("x", {"type": "file", "options": {"file_path": "/dev/sda"}}, "/dev"),
            ("x", {"type": "file", "options": {"file_path": str(log), "format": "jsonx"}}, "jsonx"),
            ("x", {"type": "file", "options": {"file_path": str(log), "log_raw": "maybe"}}, "log_raw"),
            ("x", {"type": "file", "options": {"file_path": str(tmp_path / "no" / "dir.log")}}, "sanity"),
            ("x", {"type": "socket", "options": {"address": "nonsense"}}, "host:port"),
            ("x", {"type": "socket", "options": {"address": "127.0.0.1:1"}}, "sanity"),
        ]:
            r = await h.call("PUT", f"sys/audit/{path}", json=payload)
            assert r.status_code == 400, (path, payload, r.text)
            assert fragment in r.text, (fragment, r.text)
        r = await h.call("GET", "sys/audit")
        assert list(r.json()["data"]) == ["test-tempfile/"]

        # disabling: 204 even when nothing is there; re-enabling makes a new salt
        r = await h.call("DELETE", "sys/audit/test-tempfile")
        assert r.status_code == 204
        r = await h.call("DELETE", "sys/audit/test-tempfile")
        assert r.status_code == 204
        r = await h.call("PUT", "sys/audit-hash/test-tempfile", json={"input": "hvac-rox"})
        assert r.status_code == 400 and "unknown audit backend" in r.text
        await enable_file(h, "test-tempfile", log)
        assert await audit_hash(h, "test-tempfile", "hvac-rox") != first
        # the disabled device's salt is gone from storage
        assert isinstance(h.core.audit, AuditBroker)
        assert len(await h.core.barrier.list("audit/")) == 1


async def test_symlinked_and_executable_targets_are_refused(tmp_path: FsPath) -> None:
    target = tmp_path / "target.log"
    target.write_text("")
    link = tmp_path / "link.log"
    link.symlink_to(target)
    exe = tmp_path / "tool"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    async with running_core() as h:
        r = await h.call("PUT", "sys/audit/a", json={"type": "file", "options": {"file_path": str(link)}})
        assert r.status_code == 400, r.text
        r = await h.call("PUT", "sys/audit/b", json={"type": "file", "options": {"file_path": str(exe)}})
        assert r.status_code == 400 and "executable" in r.text
        assert exe.read_text() == "#!/bin/sh\n"


async def test_sudo_is_required_except_for_audit_hash(tmp_path: FsPath) -> None:
    log = tmp_path / "audit.log"
    caps = '["create", "read", "update", "delete", "list"]'
    plain = (
        f'path "sys/audit" {{ capabilities = {caps} }}\n'
        f'path "sys/audit/*" {{ capabilities = {caps} }}\n'
        'path "sys/audit-hash/*" { capabilities = ["update"] }\n'
    )
    with_sudo = plain.replace('"list"]', '"list", "sudo"]')
    async with running_core() as h:
        token = await token_with(h, plain, "nosudo")
        sudo_token = await token_with(h, with_sudo, "withsudo")
        payload = {"type": "file", "options": {"file_path": str(log)}}
        r = await h.call("GET", "sys/audit", token=token)
        assert r.status_code == 403
        r = await h.call("PUT", "sys/audit/f", json=payload, token=token)
        assert r.status_code == 403
        r = await h.call("PUT", "sys/audit/f", json=payload, token=sudo_token)
        assert r.status_code == 204, r.text
        r = await h.call("DELETE", "sys/audit/f", token=token)
        assert r.status_code == 403
        r = await h.call("GET", "sys/audit", token=sudo_token)
        assert r.status_code == 200 and "f/" in r.json()["data"]
        r = await h.call("PUT", "sys/audit-hash/f", json={"input": "x"}, token=token)
        assert r.status_code == 200 and r.json()["data"]["hash"].startswith("hmac-sha256:")


async def test_devices_persist_and_reopen_across_seal(tmp_path: FsPath) -> None:
    log = tmp_path / "audit.log"
    async with running_core() as h:
        await mount_kv(h)
        await enable_file(h, "file", log)
        before = await audit_hash(h, "file", "value")
        await h.core.seal()
        assert isinstance(h.core.audit, AuditBroker) and not h.core.audit.enabled
        for key in h.keys:
            await h.core.submit_unseal_key(key)
        assert h.core.audit.enabled
        assert await audit_hash(h, "file", "value") == before
        r = await h.call("PUT", "secret/after", json={"v": "x"})
        assert r.status_code == 204
        assert for_path(log, "secret/after")


async def test_other_process_sees_a_new_device_before_its_next_request(tmp_path: FsPath) -> None:
    """Two cores over one storage, as the workers of a node: an enable in one audits the other."""
    log = tmp_path / "audit.log"
    sync_a = SharedGenerations(2)
    sync_b = copy.copy(sync_a)
    sync_a.attach(0)
    sync_b.attach(1)
    async with running_core() as h:
        await mount_kv(h)
        h.core.sync = sync_a
        other = build_core(h.physical)
        other.sync = sync_b
        for key in h.keys:
            await other.submit_unseal_key(key)
        try:
            await enable_file(h, "file", log)
            req = Request(Operation.READ, "sys/mounts", client_token=h.root_token, request_id="other-1")
            assert await other.handle_request(req) is not None
            assert [e["type"] for e in entries(log) if e["request"]["id"] == "other-1"] == [
                "request",
                "response",
            ]
            r = await h.call("DELETE", "sys/audit/file")
            assert r.status_code == 204
            req = Request(Operation.READ, "sys/mounts", client_token=h.root_token, request_id="other-2")
            await other.handle_request(req)
            assert not [e for e in entries(log) if e["request"]["id"] == "other-2"]
        finally:
            await other.seal()


# -- pieces --------------------------------------------------------------------------------------


def test_file_mode_and_path_checks(tmp_path: FsPath) -> None:
    assert parse_file_mode(None) == 0o600
    assert parse_file_mode("0640") == 0o640
    assert parse_file_mode("600") == 0o600
    for bad in ("0777", "0700", "0610", "1600", "rw", "0o7777"):
        with pytest.raises(UserError):
            parse_file_mode(bad)
    assert check_file_path("stdout", None) == "stdout"
    assert check_file_path(str(tmp_path / "a.log"), None) == str(tmp_path / "a.log")
    store = tmp_path / "data"
    store.mkdir()
    with pytest.raises(UserError):
        check_file_path(str(store / "audit.log"), str(store))
    os.symlink("/proc/self", tmp_path / "p")
    with pytest.raises(UserError):
        check_file_path(str(tmp_path / "p" / "x"), None)


def test_formatter_hashes_strings_only_and_never_mutates() -> None:
    f = Formatter(b"salt")
    data = {"s": "v", "n": 1, "f": 1.5, "b": True, "z": None, "l": ["a", 2], "m": {"k": "w"}, "raw": b"\x00"}
    out = f.values(data)
    assert data["s"] == "v" and data["l"] == ["a", 2]
    assert out["n"] == 1 and out["f"] == 1.5 and out["b"] is True and out["z"] is None
    assert out["s"] == f.hash("v") and out["l"] == [f.hash("a"), 2] and out["m"] == {"k": f.hash("w")}
    assert out["raw"] == f.hash_bytes(b"\x00")
    assert f.values(data, frozenset({"s", "l"}))["l"] == ["a", 2]
    assert Formatter(b"other").hash("v") != f.hash("v")


async def test_requests_denied_by_the_acl_are_audited(tmp_path: FsPath) -> None:
    log = tmp_path / "audit.log"
    async with running_core() as h:
        await mount_kv(h)
        await enable_file(h, "file", log)
        token = await token_with(h, 'path "secret/allowed" { capabilities = ["read"] }')
        r = await h.call("PUT", "secret/forbidden", json={"password": "never-logged"}, token=token)
        assert r.status_code == 403
        refused = for_path(log, "secret/forbidden")
        assert [e["type"] for e in refused] == ["request", "response"]
        assert refused[1]["error"] == "permission denied"
        assert refused[0]["request"]["data"]["password"] != "never-logged"
        assert "never-logged" not in log.read_text()
