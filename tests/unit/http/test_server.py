"""The HTTP server on real loopback sockets: LIST rewrite, TLS with any client cert, listeners."""

from __future__ import annotations

import asyncio
import datetime
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from strongroom.config import ConfigError, ListenerConfig
from strongroom.http.server import MAX_HEADER_BYTES, serve

pytestmark = pytest.mark.timeout(60)

TIMEOUT = 10.0


# --- a tiny ASGI app that echoes what it was given ---------------------------------------


async def echo_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    assert scope["type"] == "http"
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    if scope["path"] == "/big":
        size = int(scope["query_string"].decode().split("=")[1])
        payload = b"x" * size
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]}
        )
        await send({"type": "http.response.body", "body": payload})
        return
    tls = scope.get("extensions", {}).get("tls")
    payload = json.dumps(
        {
            "method": scope["method"],
            "path": scope["path"],
            "query": scope["query_string"].decode(),
            "scheme": scope["scheme"],
            "body_len": len(body),
            "tls": tls,
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


# --- running the server in a background thread --------------------------------------------


class RunningServer:
    def __init__(self, listeners: list[ListenerConfig]) -> None:
        self.listeners = listeners
        self.addresses: list[tuple[str, int]] = []
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.stop: asyncio.Event | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        async def main() -> None:
            self.loop = asyncio.get_running_loop()
            self.stop = asyncio.Event()

            def on_ready(addresses: list[tuple[str, int]]) -> None:
                self.addresses = addresses
                self.ready.set()

            await serve(echo_app, self.listeners, on_ready=on_ready, stop=self.stop)

        try:
            asyncio.run(main())
        except BaseException as exc:
            self.error = exc
            self.ready.set()

    def start(self) -> RunningServer:
        self.thread.start()
        assert self.ready.wait(TIMEOUT), "server did not become ready"
        if self.error is not None:
            raise self.error
        return self

    def shutdown(self) -> None:
        if self.loop is not None and self.stop is not None and self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(TIMEOUT)
        assert not self.thread.is_alive(), "server did not stop"

    def port(self, index: int = 0) -> int:
        return self.addresses[index][1]


@pytest.fixture(scope="module")
def plain_server() -> Iterator[RunningServer]:
    server = RunningServer([ListenerConfig(address="127.0.0.1:0", tls_disable=True)]).start()
    yield server
    server.shutdown()


# --- certificates, generated per test session (never checked in) --------------------------


def _cert(
    key: ec.EllipticCurvePrivateKey,
    cn: str,
    not_before: datetime.datetime,
    not_after: datetime.datetime,
    san: bool,
) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    )
    if san:
        import ipaddress

        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    return builder.sign(key, hashes.SHA256())


def _write(path: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> tuple[str, str]:
    cert_path, key_path = path.with_suffix(".crt"), path.with_suffix(".key")
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return str(cert_path), str(key_path)


class Certs:
    def __init__(self, directory: Path) -> None:
        now = datetime.datetime.now(datetime.UTC)
        server_key = ec.generate_private_key(ec.SECP256R1())
        server_cert = _cert(
            server_key, "localhost", now - datetime.timedelta(days=1), now + datetime.timedelta(days=30), True
        )
        self.server_cert, self.server_key = _write(directory / "server", server_cert, server_key)
        client_key = ec.generate_private_key(ec.SECP256R1())
        # Expired a year ago, self-signed: what hvac's test suite presents on every request.
        self.client = _cert(
            client_key,
            "expired-client",
            now - datetime.timedelta(days=800),
            now - datetime.timedelta(days=365),
            False,
        )
        self.client_cert, self.client_key = _write(directory / "client", self.client, client_key)
        self.client_pem = self.client.public_bytes(serialization.Encoding.PEM).decode()

    def client_context(
        self, with_cert: bool = True, max_version: ssl.TLSVersion | None = None
    ) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=self.server_cert)
        if with_cert:
            ctx.load_cert_chain(self.client_cert, self.client_key)
        if max_version is not None:
            ctx.maximum_version = max_version
        return ctx


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return Certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def tls_server(certs: Certs) -> Iterator[RunningServer]:
    listener = ListenerConfig(
        address="127.0.0.1:0", tls_cert_file=certs.server_cert, tls_key_file=certs.server_key
    )
    server = RunningServer([listener]).start()
    yield server
    server.shutdown()


# --- raw-socket helpers -------------------------------------------------------------------


def read_response(
    sock: socket.socket | ssl.SSLSocket, buffer: bytearray
) -> tuple[int, dict[str, str], bytes]:
    """Read one HTTP/1.1 response with a content-length or chunked body; leftovers stay in buffer."""
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"connection closed, got {bytes(buffer)!r}")
        buffer += chunk
    head, _, _ = bytes(buffer).partition(b"\r\n\r\n")
    del buffer[: len(head) + 4]
    lines = head.decode("latin1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    if "content-length" in headers:
        length = int(headers["content-length"])
        while len(buffer) < length:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed in body")
            buffer += chunk
        body = bytes(buffer[:length])
        del buffer[:length]
        return status, headers, body
    assert headers.get("transfer-encoding") == "chunked", headers
    chunked = bytearray()
    while True:
        while b"\r\n" not in buffer:
            buffer += sock.recv(65536)
        size_line, _, _ = bytes(buffer).partition(b"\r\n")
        size = int(size_line, 16)
        del buffer[: len(size_line) + 2]
        while len(buffer) < size + 2:
            buffer += sock.recv(65536)
        chunked += buffer[:size]
        del buffer[: size + 2]
        if size == 0:
            return status, headers, bytes(chunked)


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    return sock


def request(method: str, target: str, body: bytes = b"") -> bytes:
    head = f"{method} {target} HTTP/1.1\r\nHost: localhost\r\n"
    if body or method in ("POST", "PUT", "PATCH"):
        head += f"Content-Length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + body


# --- plain HTTP ---------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "PATCH", "DELETE"])
def test_ordinary_methods_pass_through(plain_server: RunningServer, method: str) -> None:
    url = f"http://127.0.0.1:{plain_server.port()}/v1/secret/foo?x=1"
    response = httpx.request(
        method, url, content=b"{}" if method in ("POST", "PUT", "PATCH") else None, timeout=TIMEOUT
    )
    assert response.status_code == 200
    seen = response.json()
    assert seen["method"] == method
    assert seen["path"] == "/v1/secret/foo"
    assert seen["query"] == "x=1"
    assert seen["scheme"] == "http"
    assert seen["tls"] is None


def test_head_passes_through(plain_server: RunningServer) -> None:
    response = httpx.head(f"http://127.0.0.1:{plain_server.port()}/v1/sys/health", timeout=TIMEOUT)
    assert response.status_code == 200
    assert response.content == b""


@pytest.mark.parametrize(
    ("target", "query"),
    [
        ("/v1/foo", "list=true"),
        ("/v1/foo/", "list=true"),
        ("/v1/foo?x=1", "x=1&list=true"),
        ("/v1/foo?", "list=true"),
        ("/v1/a%20b?x=1&y=2", "x=1&y=2&list=true"),
    ],
)
def test_list_becomes_get_with_list_flag(plain_server: RunningServer, target: str, query: str) -> None:
    response = httpx.request("LIST", f"http://127.0.0.1:{plain_server.port()}{target}", timeout=TIMEOUT)
    assert response.status_code == 200, response.text
    seen = response.json()
    assert seen["method"] == "GET"
    assert seen["query"] == query
    assert seen["path"] == target.split("?")[0].replace("%20", " ")


def test_keep_alive_get_list_get(plain_server: RunningServer) -> None:
    with httpx.Client(base_url=f"http://127.0.0.1:{plain_server.port()}", timeout=TIMEOUT) as client:
        first = client.get("/v1/a")
        second = client.request("LIST", "/v1/b")
        third = client.get("/v1/c")
        fourth = client.request("LIST", "/v1/d?x=y")
    assert [r.status_code for r in (first, second, third, fourth)] == [200, 200, 200, 200]
    assert first.json()["query"] == "" and first.json()["method"] == "GET"
    assert second.json()["query"] == "list=true" and second.json()["path"] == "/v1/b"
    assert third.json()["query"] == "" and third.json()["path"] == "/v1/c"
    assert fourth.json()["query"] == "x=y&list=true"


def test_keep_alive_on_one_raw_socket(plain_server: RunningServer) -> None:
    with connect(plain_server.port()) as sock:
        buffer = bytearray()
        for method, target, expected in [
            ("GET", "/v1/a", ("GET", "")),
            ("LIST", "/v1/b", ("GET", "list=true")),
            ("POST", "/v1/c", ("POST", "")),
            ("LIST", "/v1/d?q=1", ("GET", "q=1&list=true")),
            ("GET", "/v1/e", ("GET", "")),
        ]:
            sock.sendall(request(method, target, b"{}" if method == "POST" else b""))
            status, _, body = read_response(sock, buffer)
            seen = json.loads(body)
            assert status == 200
            assert (seen["method"], seen["query"]) == expected, (method, target)


@pytest.mark.parametrize("split_at", [1, 2, 4, 5, 9, 14, 20, 24])
def test_list_request_line_split_across_sends(plain_server: RunningServer, split_at: int) -> None:
    raw = request("LIST", "/v1/secret/")
    with connect(plain_server.port()) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(raw[:split_at])
        time.sleep(0.05)  # make the server see two reads
        sock.sendall(raw[split_at:])
        status, _, body = read_response(sock, bytearray())
    assert status == 200
    seen = json.loads(body)
    assert seen["method"] == "GET" and seen["query"] == "list=true" and seen["path"] == "/v1/secret/"


def test_list_split_after_a_previous_request(plain_server: RunningServer) -> None:
    raw = request("LIST", "/v1/x?a=b")
    with connect(plain_server.port()) as sock:
        buffer = bytearray()
        sock.sendall(request("GET", "/v1/first"))
        assert read_response(sock, buffer)[0] == 200
        sock.sendall(raw[:3])
        time.sleep(0.05)
        sock.sendall(raw[3:])
        status, _, body = read_response(sock, buffer)
    assert status == 200
    assert json.loads(body)["query"] == "a=b&list=true"


def test_pipelined_list_first_then_get(plain_server: RunningServer) -> None:
    with connect(plain_server.port()) as sock:
        sock.sendall(request("LIST", "/v1/one") + request("GET", "/v1/two"))
        buffer = bytearray()
        first = json.loads(read_response(sock, buffer)[2])
        second = json.loads(read_response(sock, buffer)[2])
    assert (first["method"], first["query"], first["path"]) == ("GET", "list=true", "/v1/one")
    assert (second["method"], second["query"], second["path"]) == ("GET", "", "/v1/two")


def test_list_after_blank_lines_and_http10(plain_server: RunningServer) -> None:
    with connect(plain_server.port()) as sock:
        sock.sendall(b"\r\nLIST /v1/old HTTP/1.0\r\nHost: x\r\n\r\n")
        status, _, body = read_response(sock, bytearray())
    assert status == 200
    assert json.loads(body)["query"] == "list=true"


def test_other_l_methods_and_lowercase_list_are_not_rewritten(plain_server: RunningServer) -> None:
    with connect(plain_server.port()) as sock:
        sock.sendall(request("LOCK", "/v1/x"))
        status, _, body = read_response(sock, bytearray())
    assert status == 200 and json.loads(body)["method"] == "LOCK"
    with connect(plain_server.port()) as sock:
        sock.sendall(request("list", "/v1/x"))
        status, _, _ = read_response(sock, bytearray())
    assert status == 400


def test_overlong_list_line_is_rejected_not_buffered(plain_server: RunningServer) -> None:
    with connect(plain_server.port()) as sock:
        sock.sendall(b"LIST /" + b"a" * (20 * 1024))
        status, _, _ = read_response(sock, bytearray())
    assert status == 400


def test_oversized_request_head_is_rejected(plain_server: RunningServer) -> None:
    with connect(plain_server.port()) as sock:
        filler = b"".join(
            b"X-Filler-%d: %s\r\n" % (i, b"v" * 8000) for i in range(MAX_HEADER_BYTES // 8000 + 2)
        )
        try:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n" + filler + b"\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        status, _, _ = read_response(sock, bytearray())
    assert status == 431


def test_head_split_over_many_reads_is_still_capped(plain_server: RunningServer) -> None:
    with connect(plain_server.port()) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        status = None
        try:
            for i in range(MAX_HEADER_BYTES // 4000 + 10):
                sock.sendall(b"X-A-%d: %s\r\n" % (i, b"v" * 4000))
        except (BrokenPipeError, ConnectionResetError):
            pass
        try:
            status = read_response(sock, bytearray())[0]
        except ConnectionResetError:
            status = None  # RST raced the response; the cap still held
    assert status in (431, None)
    response = httpx.get(f"http://127.0.0.1:{plain_server.port()}/v1/ok", timeout=TIMEOUT)
    assert response.status_code == 200


def test_large_body_and_response(plain_server: RunningServer) -> None:
    body = os.urandom(3 * 1024 * 1024)
    with httpx.Client(base_url=f"http://127.0.0.1:{plain_server.port()}", timeout=TIMEOUT) as client:
        assert client.post("/v1/upload", content=body).json()["body_len"] == len(body)
        assert len(client.get("/big?size=2000000").content) == 2_000_000


# --- TLS ----------------------------------------------------------------------------------


@pytest.mark.parametrize("version", [None, ssl.TLSVersion.TLSv1_2], ids=["tls1.3", "tls1.2"])
def test_expired_self_signed_client_cert_is_accepted_and_exposed(
    tls_server: RunningServer, certs: Certs, version: ssl.TLSVersion | None
) -> None:
    ctx = certs.client_context(with_cert=True, max_version=version)
    response = httpx.get(f"https://127.0.0.1:{tls_server.port()}/v1/sys/init", verify=ctx, timeout=TIMEOUT)
    assert response.status_code == 200
    seen = response.json()
    assert seen["scheme"] == "https"
    tls = seen["tls"]
    assert tls["client_cert_chain"] == [certs.client_pem]
    assert tls["client_cert_verified_possession"] is True
    assert tls["client_cert_name"] == "CN=expired-client"
    assert tls["tls_version"] == (0x0303 if version else 0x0304)
    assert tls["server_cert"].startswith("-----BEGIN CERTIFICATE-----")


def test_no_client_cert_gives_empty_chain(tls_server: RunningServer, certs: Certs) -> None:
    ctx = certs.client_context(with_cert=False)
    response = httpx.get(f"https://127.0.0.1:{tls_server.port()}/v1/sys/init", verify=ctx, timeout=TIMEOUT)
    assert response.status_code == 200
    tls = response.json()["tls"]
    assert tls["client_cert_chain"] == []
    assert tls["client_cert_verified_possession"] is False


def test_list_and_keep_alive_over_tls(tls_server: RunningServer, certs: Certs) -> None:
    base = f"https://127.0.0.1:{tls_server.port()}"
    with httpx.Client(base_url=base, verify=certs.client_context(), timeout=TIMEOUT) as client:
        first = client.get("/v1/a")
        listed = client.request("LIST", "/v1/secret/?x=1")
        posted = client.post("/v1/b", content=b'{"a": 1}')
        last = client.get("/v1/c")
    assert listed.json()["method"] == "GET"
    assert listed.json()["query"] == "x=1&list=true"
    assert posted.json()["method"] == "POST" and posted.json()["body_len"] == 8
    for response in (first, listed, posted, last):
        assert response.json()["tls"]["client_cert_chain"] == [certs.client_pem]


def test_list_split_over_tls_records(tls_server: RunningServer, certs: Certs) -> None:
    raw = request("LIST", "/v1/split")
    ctx = certs.client_context()
    with socket.create_connection(("127.0.0.1", tls_server.port()), timeout=TIMEOUT) as tcp:
        with ctx.wrap_socket(tcp, server_hostname="localhost") as sock:
            sock.sendall(raw[:2])
            time.sleep(0.05)
            sock.sendall(raw[2:])
            status, _, body = read_response(sock, bytearray())
    assert status == 200
    assert json.loads(body)["query"] == "list=true"


def test_large_body_and_response_over_tls(tls_server: RunningServer, certs: Certs) -> None:
    body = os.urandom(3 * 1024 * 1024)
    base = f"https://127.0.0.1:{tls_server.port()}"
    with httpx.Client(base_url=base, verify=certs.client_context(), timeout=TIMEOUT) as client:
        assert client.put("/v1/upload", content=body).json()["body_len"] == len(body)
        assert len(client.get("/big?size=5000000").content) == 5_000_000
        assert client.get("/v1/after").status_code == 200


def test_garbage_on_tls_port_does_not_hurt_the_server(tls_server: RunningServer, certs: Certs) -> None:
    port = tls_server.port()
    for junk in (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", os.urandom(4096), b"\x16\x03\x01\x00\x05hello"):
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
            try:
                sock.sendall(junk)
                sock.shutdown(socket.SHUT_WR)
                while sock.recv(4096):
                    pass
            except OSError:
                pass
    # A client that connects and vanishes mid-handshake.
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT):
        pass
    response = httpx.get(f"https://127.0.0.1:{port}/v1/ok", verify=certs.client_context(), timeout=TIMEOUT)
    assert response.status_code == 200


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_tls_1_1_client_is_refused_cleanly(tls_server: RunningServer, certs: Certs) -> None:
    ctx = certs.client_context()
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")  # let the client offer TLS 1.1 at all
    ctx.minimum_version = ssl.TLSVersion.TLSv1_1
    ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    with socket.create_connection(("127.0.0.1", tls_server.port()), timeout=TIMEOUT) as tcp:
        with pytest.raises(ssl.SSLError, match="VERSION|ALERT|PROTOCOL"):
            ctx.wrap_socket(tcp, server_hostname="localhost")
    response = httpx.get(
        f"https://127.0.0.1:{tls_server.port()}/", verify=certs.client_context(), timeout=TIMEOUT
    )
    assert response.status_code == 200


def test_require_and_verify_client_cert_mode(certs: Certs, tmp_path: Path) -> None:
    # Opt-in strict mode (Vault's tls_require_and_verify_client_cert): only CA-signed certs pass.
    now = datetime.datetime.now(datetime.UTC)
    ca_key = serialization.load_pem_private_key(Path(certs.server_key).read_bytes(), None)
    ca_cert = x509.load_pem_x509_certificate(Path(certs.server_cert).read_bytes())
    good_key = ec.generate_private_key(ec.SECP256R1())
    good = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "good-client")]))
        .issuer_name(ca_cert.subject)
        .public_key(good_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    good_cert, good_key_path = _write(tmp_path / "good", good, good_key)
    listener = ListenerConfig(
        address="127.0.0.1:0",
        tls_cert_file=certs.server_cert,
        tls_key_file=certs.server_key,
        tls_client_ca_file=certs.server_cert,
        tls_require_and_verify_client_cert=True,
    )
    server = RunningServer([listener]).start()
    try:
        url = f"https://127.0.0.1:{server.port()}/v1/x"
        ctx = certs.client_context(with_cert=False)
        ctx.load_cert_chain(good_cert, good_key_path)
        response = httpx.get(url, verify=ctx, timeout=TIMEOUT)
        assert response.status_code == 200
        assert response.json()["tls"]["client_cert_name"] == "CN=good-client"
        for bad in (certs.client_context(with_cert=True), certs.client_context(with_cert=False)):
            with pytest.raises(httpx.HTTPError):
                httpx.get(url, verify=bad, timeout=TIMEOUT)
    finally:
        server.shutdown()


def test_missing_cert_file_is_a_config_error(tmp_path: Path) -> None:
    listener = ListenerConfig(
        address="127.0.0.1:0",
        tls_cert_file=str(tmp_path / "nope.pem"),
        tls_key_file=str(tmp_path / "nope.key"),
    )
    with pytest.raises(ConfigError, match="does not exist"):
        asyncio.run(asyncio.wait_for(serve(echo_app, [listener]), TIMEOUT))


# --- listeners, readiness, shutdown -------------------------------------------------------


def test_several_listeners_and_ephemeral_ports(certs: Certs) -> None:
    listeners = [
        ListenerConfig(address="127.0.0.1:0", tls_disable=True),
        ListenerConfig(address="127.0.0.1:0", tls_cert_file=certs.server_cert, tls_key_file=certs.server_key),
    ]
    started = time.monotonic()
    server = RunningServer(listeners).start()
    try:
        assert len(server.addresses) == 2
        assert all(host == "127.0.0.1" and port > 0 for host, port in server.addresses)
        assert server.addresses[0][1] != server.addresses[1][1]
        plain = httpx.request("LIST", f"http://127.0.0.1:{server.port(0)}/v1/x", timeout=TIMEOUT)
        secure = httpx.request(
            "LIST", f"https://127.0.0.1:{server.port(1)}/v1/x", verify=certs.client_context(), timeout=TIMEOUT
        )
        assert time.monotonic() - started < 5  # generous; typically a few tens of ms
        assert plain.json()["scheme"] == "http" and plain.json()["query"] == "list=true"
        assert secure.json()["scheme"] == "https" and secure.json()["query"] == "list=true"
    finally:
        server.shutdown()


def test_stop_event_closes_listeners_and_idle_connections() -> None:
    plain_server = RunningServer([ListenerConfig(address="127.0.0.1:0", tls_disable=True)]).start()
    port = plain_server.port()
    idle = connect(port)
    idle.sendall(request("GET", "/v1/x"))
    read_response(idle, bytearray())
    started = time.monotonic()
    plain_server.shutdown()
    assert time.monotonic() - started < 3
    assert idle.recv(1) == b""  # server closed the kept-alive connection
    idle.close()
    with pytest.raises(OSError):
        connect(port).close()


def test_run_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import sys
        from strongroom.config import ListenerConfig
        from strongroom.http.server import run

        async def app(scope, receive, send):
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body", "body": b""})

        def ready(addresses):
            print(addresses[0][1], flush=True)

        run(app, [ListenerConfig(address="127.0.0.1:0", tls_disable=True)], on_ready=ready)
        print("stopped", flush=True)
        """
    )
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=os.getcwd(),
    )
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        assert httpx.get(f"http://127.0.0.1:{port}/", timeout=TIMEOUT).status_code == 204
        startup = time.monotonic() - started
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "stopped" in out
    assert startup < 5, startup  # includes interpreter start; the server itself needs far less


# --- the response head and body leave in one write ------------------------------------------


class _RecordingTransport:
    """Enough of an asyncio transport for uvicorn's protocol, recording each write."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8200), "peername": ("127.0.0.1", 50000)}.get(name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def test_coalescing_transport_holds_the_head_until_the_body() -> None:
    from strongroom.http.server import _CoalescingTransport

    inner = _RecordingTransport()
    corked = _CoalescingTransport(inner)  # type: ignore[arg-type]
    corked.write(b"HTTP/1.1 100 Continue\r\n\r\n")  # interim responses go out at once
    assert inner.writes == [b"HTTP/1.1 100 Continue\r\n\r\n"]
    corked.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
    assert len(inner.writes) == 1
    corked.write(b"{}")
    assert inner.writes[1] == b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"
    corked.write(b"more")  # later chunks pass straight through
    assert inner.writes[2] == b"more"
    assert corked.is_closing() is False  # everything else is the real transport's


def test_coalescing_transport_sends_a_held_head_on_flush_and_close() -> None:
    from strongroom.http.server import _CoalescingTransport

    inner = _RecordingTransport()
    corked = _CoalescingTransport(inner)  # type: ignore[arg-type]
    corked.write(b"HTTP/1.1 200 OK\r\n\r\n")
    corked.flush()
    corked.flush()
    assert inner.writes == [b"HTTP/1.1 200 OK\r\n\r\n"]
    other = _RecordingTransport()
    corked = _CoalescingTransport(other)  # type: ignore[arg-type]
    corked.write(b"HTTP/1.1 500 Internal Server Error\r\n\r\n")
    corked.close()  # an app that fails after starting its response
    assert other.writes == [b"HTTP/1.1 500 Internal Server Error\r\n\r\n"] and other.closed


@pytest.mark.parametrize("method", ["GET", "POST", "HEAD"])
def test_one_write_per_response(method: str) -> None:
    import uvicorn
    from uvicorn.server import ServerState

    from strongroom.http.server import VaultHttpProtocol, _uvicorn_config

    async def main() -> list[bytes]:
        config: uvicorn.Config = _uvicorn_config(echo_app)
        config.load()
        protocol = VaultHttpProtocol(config, ServerState(), {}, asyncio.get_running_loop())
        transport = _RecordingTransport()
        protocol.connection_made(transport)  # type: ignore[arg-type]
        for target in ("/v1/a", "/v1/b"):
            protocol.data_received(request(method, target, b"{}" if method == "POST" else b""))
            for _ in range(50):
                await asyncio.sleep(0)
        protocol.connection_lost(None)
        return transport.writes

    writes = asyncio.run(main())
    assert len(writes) == 2, writes  # one per response: head and body together
    for write in writes:
        assert write.startswith(b"HTTP/1.1 200 OK\r\n")
        head, _, body = write.partition(b"\r\n\r\n")
        if method == "HEAD":
            assert body == b""
        else:
            assert json.loads(body)["method"] == method


def test_expect_100_continue_still_answers_before_the_body(plain_server: RunningServer) -> None:
    with connect(plain_server.port()) as sock:
        sock.sendall(
            b"POST /v1/x HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n"
        )
        interim = b""
        while b"\r\n\r\n" not in interim:
            interim += sock.recv(65536)
        assert interim.startswith(b"HTTP/1.1 100 Continue\r\n")
        sock.sendall(b"{}")
        buffer = bytearray(interim.partition(b"\r\n\r\n")[2])
        status, _, body = read_response(sock, buffer)
        assert status == 200 and json.loads(body)["body_len"] == 2


def test_head_then_get_on_one_connection(plain_server: RunningServer) -> None:
    with connect(plain_server.port()) as sock:
        sock.sendall(request("HEAD", "/v1/a"))
        buffer = bytearray()
        while b"\r\n\r\n" not in buffer:
            buffer += sock.recv(65536)
        head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200") and rest == b""
        sock.sendall(request("GET", "/v1/b"))
        status, _, body = read_response(sock, bytearray())
        assert status == 200 and json.loads(body)["path"] == "/v1/b"


# --- workers sharing a listening socket take turns accepting ----------------------------------


def test_accepts_are_taken_a_few_at_a_time() -> None:
    from strongroom.http.server import ACCEPT_BATCH, _limit_accept_batch

    loop = asyncio.new_event_loop()
    try:
        seen: list[int] = []

        def accept(
            factory: Any, sock: Any, sslcontext: Any = None, server: Any = None, backlog: int = 100
        ) -> None:
            seen.append(backlog)

        loop._accept_connection = accept  # type: ignore[attr-defined]
        _limit_accept_batch(loop)
        _limit_accept_batch(loop)  # idempotent: one cap, not a wrapper around a wrapper
        loop._accept_connection(None, None, None, None, 2048)  # type: ignore[attr-defined]
        loop._accept_connection(None, None, None, None, 2)  # type: ignore[attr-defined]
        assert seen == [ACCEPT_BATCH, 2]
    finally:
        loop.close()


def test_a_burst_of_connections_is_served(plain_server: RunningServer) -> None:
    socks = [connect(plain_server.port()) for _ in range(40)]  # all queued before any is read
    try:
        for sock in socks:
            sock.sendall(request("GET", "/v1/burst"))
        for sock in socks:
            status, _, body = read_response(sock, bytearray())
            assert status == 200 and json.loads(body)["path"] == "/v1/burst"
    finally:
        for sock in socks:
            sock.close()
