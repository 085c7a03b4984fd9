"""ACME challenge validators against real loopback responders: HTTP(S), a dnslib DNS server, TLS-ALPN.

The address policy (CVE-2026-5052) is tested both as a table and end to end: a refused
validation must not reach the responder at all.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import http.server
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from dnslib import AAAA, CNAME, QTYPE, RCODE, RR, TXT, A
from dnslib.server import DNSLogger, DNSServer

from strongroom.engines.pki.acme import validation
from strongroom.engines.pki.acme.problems import AcmeProblem
from strongroom.engines.pki.acme.validation import (
    ACME_IDENTIFIER_OID,
    ValidationSettings,
    address_allowed,
    resolve_addresses,
    validate,
    validate_dns01,
    validate_http01,
    validate_tlsalpn01,
)

pytestmark = pytest.mark.timeout(30)

TOKEN = "LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0"
KEY_AUTHZ = TOKEN + ".9jg46WB3rR_AHD-EBXdN7cBkH1WOu0tA3M9fm21mqTI"
CHALLENGE_PATH = f"/.well-known/acme-challenge/{TOKEN}"
LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"),)


def dns01_value(key_authz: str = KEY_AUTHZ) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(key_authz.encode()).digest()).rstrip(b"=").decode()


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---------------------------------------------------------------------------------------------
# DNS responder


class Zone:
    """dnslib resolver: A 127.0.0.1 for any *.example.test unless overridden; NXDOMAIN on request."""

    def __init__(self) -> None:
        self.records: dict[tuple[str, str], list[Any]] = {}
        self.cnames: dict[str, str] = {}
        self.nxdomain: set[str] = set()
        self.queries: list[tuple[str, str]] = []

    def reset(self) -> None:
        self.records.clear()
        self.cnames.clear()
        self.nxdomain.clear()
        self.queries.clear()

    def _rdata(self, name: str, qtype: str) -> list[Any]:
        if (name, qtype) in self.records:
            return self.records[(name, qtype)]
        if qtype == "A" and name.endswith(".example.test") and not name.startswith("_acme-challenge."):
            return [A("127.0.0.1")]
        return []

    def resolve(self, request: Any, handler: Any) -> Any:
        reply = request.reply()
        name = str(request.q.qname).rstrip(".").lower()
        qtype = QTYPE[request.q.qtype]
        self.queries.append((name, qtype))
        if name in self.nxdomain:
            reply.header.rcode = RCODE.NXDOMAIN
            return reply
        owner = name
        while owner in self.cnames:  # answer with the chain, as a recursive resolver would
            target = self.cnames[owner]
            reply.add_answer(RR(owner, QTYPE.CNAME, rdata=CNAME(target), ttl=60))
            owner = target
        for rdata in self._rdata(owner, qtype):
            reply.add_answer(RR(owner, getattr(QTYPE, qtype), rdata=rdata, ttl=60))
        return reply


@pytest.fixture(scope="module")
def dns_server() -> Iterator[tuple[Zone, int]]:
    zone = Zone()
    server = DNSServer(
        zone, address="127.0.0.1", port=0, logger=DNSLogger(prefix=False, logf=lambda _s: None)
    )
    server.start_thread()
    try:
        yield zone, int(server.server.server_address[1])
    finally:
        server.stop()
        server.server.server_close()


@pytest.fixture
def zone(dns_server: tuple[Zone, int]) -> Zone:
    dns_server[0].reset()
    return dns_server[0]


# ---------------------------------------------------------------------------------------------
# HTTP(S) responder


class Handler(http.server.BaseHTTPRequestHandler):
    server: HTTPResponder

    def do_GET(self) -> None:
        self.server.requests.append((self.path, self.headers.get("Host", "")))
        status, headers, body = self.server.routes.get(self.path, (404, {}, b"not found"))
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class HTTPResponder(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, host: str = "127.0.0.1", tls: ssl.SSLContext | None = None) -> None:
        if ":" in host:
            self.address_family = socket.AF_INET6
        super().__init__((host, 0), Handler)
        if tls is not None:
            self.socket = tls.wrap_socket(self.socket, server_side=True)
        self.port = int(self.server_address[1])
        self.routes: dict[str, tuple[int, dict[str, str], bytes]] = {}
        self.requests: list[tuple[str, str]] = []
        self.thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.shutdown()
        self.server_close()

    def reset(self) -> None:
        self.routes.clear()
        self.requests.clear()


@pytest.fixture(scope="module")
def http_server() -> Iterator[HTTPResponder]:
    server = HTTPResponder()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def web(http_server: HTTPResponder) -> HTTPResponder:
    http_server.reset()
    return http_server


def settings_for(dns: tuple[Zone, int], web: HTTPResponder | None = None, **kw: Any) -> ValidationSettings:
    base: dict[str, Any] = {
        "dns_resolver": f"127.0.0.1:{dns[1]}",
        "permitted_ranges": LOOPBACK,
        "timeout": 2.0,
    }
    if web is not None:
        base["http_port"] = web.port
    base.update(kw)
    return ValidationSettings(**base)


def dns_id(name: str) -> dict[str, str]:
    return {"type": "dns", "value": name}


# ---------------------------------------------------------------------------------------------
# certificates


def make_cert(
    tmp_path: Path,
    *,
    sans: list[x509.GeneralName] | None = None,
    key_authz: str | None = KEY_AUTHZ,
    critical: bool = True,
    stem: str = "cert",
) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "acme tls-alpn-01 challenge")])
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(sans or [x509.DNSName("tls.example.test")]), critical=False
        )
    )
    if key_authz is not None:
        value = b"\x04\x20" + hashlib.sha256(key_authz.encode()).digest()
        builder = builder.add_extension(
            x509.UnrecognizedExtension(ACME_IDENTIFIER_OID, value), critical=critical
        )
    cert = builder.sign(key, hashes.SHA256())
    cert_path, key_path = tmp_path / f"{stem}.pem", tmp_path / f"{stem}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


def server_context(cert: tuple[Path, Path], alpn: list[str] | None = None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(cert[0]), str(cert[1]))
    if alpn is not None:
        ctx.set_alpn_protocols(alpn)
    return ctx


class TLSResponder:
    """Completes TLS handshakes with the current context and records the SNI each client sent."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.port = int(self.sock.getsockname()[1])
        self.context: ssl.SSLContext | None = None
        self.server_names: list[str | None] = []
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def use(self, ctx: ssl.SSLContext) -> None:
        def record(_sock: Any, server_name: str | None, _ctx: Any) -> None:
            self.server_names.append(server_name)

        ctx.sni_callback = record
        self.context = ctx
        self.server_names.clear()

    def _run(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(5)
            try:
                assert self.context is not None
                with self.context.wrap_socket(conn, server_side=True) as tls:
                    tls.recv(1)  # until the client goes away
            except (OSError, AssertionError):
                pass
            finally:
                conn.close()

    def close(self) -> None:
        self.stopped.set()
        self.sock.close()
        self.thread.join(2)


@pytest.fixture(scope="module")
def tls_server() -> Iterator[TLSResponder]:
    server = TLSResponder()
    try:
        yield server
    finally:
        server.close()


# ---------------------------------------------------------------------------------------------
# address policy


REFUSED_BY_DEFAULT = [
    "127.0.0.1",
    "127.255.0.9",
    "::1",
    "10.1.2.3",
    "172.16.0.1",
    "192.168.1.1",
    "169.254.169.254",
    "::ffff:127.0.0.1",
    "::ffff:10.0.0.1",
    "::ffff:169.254.169.254",
    "100.64.0.1",
    "100.127.255.254",
    "fc00::1",
    "fd12:3456::1",
    "fe80::1",
    "fec0::1",
    "0.0.0.0",
    "0.1.2.3",
    "::",
    "224.0.0.1",
    "239.255.255.250",
    "ff02::1",
    "255.255.255.255",
    "240.0.0.1",
    "192.0.0.8",
    "192.0.2.1",
    "198.18.0.1",
    "198.51.100.7",
    "203.0.113.9",
    "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
    "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
    "64:ff9b:1::1",  # local-use NAT64
    "::7f00:1",  # IPv4-compatible 127.0.0.1
    "2002:7f00:1::1",  # 6to4 of 127.0.0.1
    "2001::1",  # Teredo
    "2001:db8::1",
    "3fff::1",
    "5f00::1",
    "100::1",
]

ALLOWED_BY_DEFAULT = [
    "8.8.8.8",
    "1.1.1.1",
    "2606:4700:4700::1111",
    "2a00:1450:4001::1",
    "::ffff:8.8.8.8",
    "64:ff9b::808:808",  # NAT64 of 8.8.8.8
]


@pytest.mark.parametrize("text", REFUSED_BY_DEFAULT)
def test_default_policy_refuses_non_public(text: str) -> None:
    assert not address_allowed(ipaddress.ip_address(text), ValidationSettings())


@pytest.mark.parametrize("text", ALLOWED_BY_DEFAULT)
def test_default_policy_allows_public(text: str) -> None:
    assert address_allowed(ipaddress.ip_address(text), ValidationSettings())


def test_permitted_ranges_open_only_what_they_name() -> None:
    s = ValidationSettings(permitted_ranges=(*LOOPBACK, ipaddress.ip_network("fc00::/7")))
    for text in ("127.0.0.1", "127.9.9.9", "::ffff:127.0.0.1", "fd00::1", "8.8.8.8"):
        assert address_allowed(ipaddress.ip_address(text), s), text
    for text in ("::1", "10.0.0.1", "169.254.169.254", "64:ff9b::7f00:1", "fe80::1"):
        assert not address_allowed(ipaddress.ip_address(text), s), text


def test_excluded_wins_over_permitted_and_public() -> None:
    s = ValidationSettings(
        permitted_ranges=LOOPBACK,
        excluded_ranges=(ipaddress.ip_network("127.0.0.1/32"), ipaddress.ip_network("8.8.8.0/24")),
    )
    for text in ("127.0.0.1", "::ffff:127.0.0.1", "8.8.8.8", "::ffff:8.8.8.8", "64:ff9b::808:808"):
        assert not address_allowed(ipaddress.ip_address(text), s), text
    for text in ("127.0.0.2", "1.1.1.1"):
        assert address_allowed(ipaddress.ip_address(text), s), text
    # an excluded block cannot be dodged through an IPv4 address embedded in IPv6
    wide = ValidationSettings(
        permitted_ranges=(ipaddress.ip_network("2002::/16"),),
        excluded_ranges=(ipaddress.ip_network("8.8.8.0/24"),),
    )
    assert address_allowed(ipaddress.ip_address("2002:101:101::1"), wide)
    assert not address_allowed(ipaddress.ip_address("2002:808:808::1"), wide)


# ---------------------------------------------------------------------------------------------
# settings


def test_from_config_parses_everything() -> None:
    s = ValidationSettings.from_config(
        {
            "dns_resolver": "[::1]:5353",
            "challenge_http_port": "5002",
            "challenge_tls_port": 5001,
            "challenge_permitted_ip_ranges": ["127.0.0.0/8", "::1"],
            "challenge_excluded_ip_ranges": "10.0.0.0/8, 192.0.2.7",
            "unrelated_key": True,
        }
    )
    assert (s.http_port, s.tls_port, s.dns_resolver) == (5002, 5001, "[::1]:5353")
    assert s.permitted_ranges == (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))
    assert s.excluded_ranges == (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("192.0.2.7/32"))
    assert ValidationSettings.from_config({}) == ValidationSettings()
    assert (
        ValidationSettings.from_config({"challenge_http_port": None, "dns_resolver": ""})
        == ValidationSettings()
    )
    assert validation.parse_resolver("10.0.0.53") == ("10.0.0.53", 53)
    assert validation.parse_resolver("fd00::53") == ("fd00::53", 53)
    assert validation.parse_resolver("127.0.0.1:8053") == ("127.0.0.1", 8053)


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        ({"challenge_http_port": 0}, "challenge_http_port"),
        ({"challenge_http_port": 70000}, "challenge_http_port"),
        ({"challenge_http_port": "http"}, "challenge_http_port"),
        ({"challenge_tls_port": True}, "challenge_tls_port"),
        ({"challenge_tls_port": 44.3}, "challenge_tls_port"),
        ({"challenge_permitted_ip_ranges": ["10.0.0.0/33"]}, "challenge_permitted_ip_ranges"),
        ({"challenge_permitted_ip_ranges": ["localhost"]}, "challenge_permitted_ip_ranges"),
        ({"challenge_permitted_ip_ranges": [12]}, "challenge_permitted_ip_ranges"),
        ({"challenge_permitted_ip_ranges": 12}, "challenge_permitted_ip_ranges"),
        ({"challenge_excluded_ip_ranges": ["10.1.2.3/8"]}, "host bits"),
        ({"dns_resolver": "dns.example.test:53"}, "must be an IP address"),
        ({"dns_resolver": "127.0.0.1:0"}, "port"),
        ({"dns_resolver": "127.0.0.1:x"}, "port"),
        ({"dns_resolver": "[::1]5353"}, "dns_resolver"),
        ({"dns_resolver": 53}, "dns_resolver"),
    ],
)
def test_from_config_rejects_bad_values(cfg: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ValidationSettings.from_config(cfg)


def test_settings_checked_on_construction() -> None:
    with pytest.raises(ValueError):
        ValidationSettings(http_port=0)
    with pytest.raises(ValueError):
        ValidationSettings(timeout=0)
    with pytest.raises(ValueError):
        ValidationSettings(dns_resolver="resolver.example")
    with pytest.raises(ValueError):
        ValidationSettings(permitted_ranges=["127.0.0.0/8"])  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# resolution


async def test_resolve_addresses(dns_server: tuple[Zone, int], zone: Zone) -> None:
    zone.records[("dual.example.test", "AAAA")] = [AAAA("2001:db8::7")]
    s = settings_for(dns_server)
    assert await resolve_addresses("dual.example.test", s) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("2001:db8::7"),
    ]
    zone.records[("v6.example.test", "A")] = []
    zone.records[("v6.example.test", "AAAA")] = [AAAA("::1")]
    assert await resolve_addresses("v6.example.test", s) == [ipaddress.ip_address("::1")]


async def test_resolve_addresses_failures(dns_server: tuple[Zone, int], zone: Zone) -> None:
    s = settings_for(dns_server)
    zone.nxdomain.add("gone.example.test")
    with pytest.raises(AcmeProblem) as exc:
        await resolve_addresses("gone.example.test", s)
    assert exc.value.kind == "dns" and "NXDOMAIN" in exc.value.detail
    assert exc.value.identifier == dns_id("gone.example.test")
    zone.records[("empty.example.test", "A")] = []
    with pytest.raises(AcmeProblem) as exc:
        await resolve_addresses("empty.example.test", s)
    assert exc.value.kind == "dns" and "no A or AAAA" in exc.value.detail


async def test_resolve_addresses_timeout() -> None:
    # nothing listens on this UDP port: the lookup must end as a dns problem, inside the timeout
    s = ValidationSettings(dns_resolver=f"127.0.0.1:{free_port(socket.SOCK_DGRAM)}", timeout=0.5)
    started = time.monotonic()
    with pytest.raises(AcmeProblem) as exc:
        await resolve_addresses("slow.example.test", s)
    assert exc.value.kind == "dns"
    assert time.monotonic() - started < 3


# ---------------------------------------------------------------------------------------------
# http-01


def serve_key_authz(web: HTTPResponder, body: bytes = KEY_AUTHZ.encode()) -> None:
    web.routes[CHALLENGE_PATH] = (200, {"Content-Type": "application/octet-stream"}, body)


async def test_http01_success(dns_server: tuple[Zone, int], zone: Zone, web: HTTPResponder) -> None:
    serve_key_authz(web, KEY_AUTHZ.encode() + b"\r\n \t\n")  # trailing whitespace is ignored
    await validate_http01(dns_id("www.example.test"), TOKEN, KEY_AUTHZ, settings_for(dns_server, web))
    assert web.requests == [(CHALLENGE_PATH, f"www.example.test:{web.port}")]
    await validate("http-01", dns_id("WWW.Example.Test"), TOKEN, KEY_AUTHZ, settings_for(dns_server, web))


async def test_http01_default_policy_refuses_loopback_without_connecting(
    dns_server: tuple[Zone, int], zone: Zone, web: HTTPResponder
) -> None:
    serve_key_authz(web)
    s = settings_for(dns_server, web, permitted_ranges=())
    with pytest.raises(AcmeProblem) as exc:
        await validate_http01(dns_id("www.example.test"), TOKEN, KEY_AUTHZ, s)
    assert exc.value.kind == "rejectedIdentifier"
    assert "refusing to connect to 127.0.0.1" in exc.value.detail
    assert exc.value.identifier == dns_id("www.example.test")
    assert web.requests == []
    # every address of the name is checked, IPv4 and IPv6
    zone.records[("mixed.example.test", "A")] = [A("10.0.0.1")]
    zone.records[("mixed.example.test", "AAAA")] = [AAAA("::1")]
    with pytest.raises(AcmeProblem) as exc:
        await validate_http01(dns_id("mixed.example.test"), TOKEN, KEY_AUTHZ, settings_for(dns_server, web))
    assert exc.value.kind == "rejectedIdentifier" and "refusing" in exc.value.detail
    assert web.requests == []


async def test_http01_uses_only_allowed_addresses_and_falls_back(
    dns_server: tuple[Zone, int], zone: Zone, web: HTTPResponder
) -> None:
    serve_key_authz(web)
    zone.records[("dual.example.test", "AAAA")] = [AAAA("fd00::1")]  # refused: never tried
    await validate_http01(dns_id("dual.example.test"), TOKEN, KEY_AUTHZ, settings_for(dns_server, web))
    # IPv6 first; nothing listens on [::1]:port, so the IPv4 address is tried next
    zone.records[("fallback.example.test", "AAAA")] = [AAAA("::1")]
    s = settings_for(dns_server, web, permitted_ranges=(*LOOPBACK, ipaddress.ip_network("::1/128")))
    await validate_http01(dns_id("fallback.example.test"), TOKEN, KEY_AUTHZ, s)
    assert [host for _, host in web.requests] == [
        f"dual.example.test:{web.port}",
        f"fallback.example.test:{web.port}",
    ]


async def test_http01_excluded_wins(dns_server: tuple[Zone, int], zone: Zone, web: HTTPResponder) -> None:
    serve_key_authz(web)
    s = settings_for(dns_server, web, excluded_ranges=(ipaddress.ip_network("127.0.0.1/32"),))
    with pytest.raises(AcmeProblem) as exc:
        await validate_http01(dns_id("www.example.test"), TOKEN, KEY_AUTHZ, s)
    assert exc.value.kind == "rejectedIdentifier" and "refusing" in exc.value.detail
    assert web.requests == []


async def test_http01_ip_identifier(dns_server: tuple[Zone, int], zone: Zone, web: HTTPResponder) -> None:
    serve_key_authz(web)
    ident = {"type": "ip", "value": "127.0.0.1"}
    with pytest.raises(AcmeProblem) as exc:
        await validate_http01(ident, TOKEN, KEY_AUTHZ, settings_for(dns_server, web, permitted_ranges=()))
    assert exc.value.kind == "rejectedIdentifier" and "127.0.0.1" in exc.value.detail
    assert exc.value.identifier == ident
    assert web.requests == []
    await validate_http01(ident, TOKEN, KEY_AUTHZ, settings_for(dns_server, web))
    assert web.requests == [(CHALLENGE_PATH, f"127.0.0.1:{web.port}")]
    assert zone.queries == []  # an IP identifier is never looked up


async def test_http01_ipv6_identifier(dns_server: tuple[Zone, int], zone: Zone) -> None:
    try:
        server = HTTPResponder("::1")
    except OSError:
        pytest.skip("no IPv6 loopback")
    try:
        serve_key_authz(server)
        s = settings_for(dns_server, server, permitted_ranges=(ipaddress.ip_network("::1/128"),))
        await validate_http01({"type": "ip", "value": "::1"}, TOKEN, KEY_AUTHZ, s)
        assert server.requests == [(CHALLENGE_PATH, f"[::1]:{server.port}")]
    finally:
        server.close()


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"not-the-key-authorization", '"not-the-key-authorization"'),
        (KEY_AUTHZ.encode() + b"x", "does not match"),
        (b"\x00\xff<script>" + b"A" * 200, '"\\x00\\ufffd<script>AAAA'),
        (b"", '""'),
    ],
)
async def test_http01_wrong_body(
    dns_server: tuple[Zone, int], zone: Zone, web: HTTPResponder, body: bytes, fragment: str
) -> None:
    serve_key_authz(web, body)
    with pytest.raises(AcmeProblem) as exc:
        await validate_http01(dns_id("www.example.test"), TOKEN, KEY_AUTHZ, settings_for(dns_server, web))
    assert exc.value.kind == "incorrectResponse"
    assert fragment in exc.value.detail
    assert len(exc.value.detail) < 300  # only a short, escaped excerpt of what was received


async def test_http01_oversize_body(dns_server: tuple[Zone, int], zone: Zone, web: HTTPResponder) -> None:
    serve_key_authz(web, KEY_AUTHZ.encode() + b" " * 9000)
    with pytest.raises(AcmeProblem) as exc:
        await validate_http01(dns_id("www.example.test"), TOKEN, KEY_AUTHZ, settings_for(dns_server, web))
    assert exc.value.kind == "incorrectResponse" and "8192" in exc.value.detail


async def test_http01_not_found(dns_server: tuple[Zone, int], zone: Zone, web: HTTPResponder) -> None:
    with pytest.raises(AcmeProblem) as exc:
        await validate_http01(dns_id("www.example.test"), TOKEN, KEY_AUTHZ, settings_for(dns_server, web))
    assert exc.value.kind == "unauthorized" and "404" in exc.value.detail


async def test_http01_connection_refused(dns_server: tuple[Zone, int], zone: Zone) -> None:
    s = settings_for(dns_server, http_port=free_port())
    with pytest.raises(AcmeProblem) as exc:
        await validate_http01(dns_id("www.example.test"), TOKEN, KEY_AUTHZ, s)
    assert exc.value.kind == "connection" and "refused" in exc.value.detail
    assert exc.value.identifier == dns_id("www.example.test")


async def test_http01_timeout(dns_server: tuple[Zone, int], zone: Zone) -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts (in the kernel) but never answers
        s = settings_for(dns_server, http_port=silent.getsockname()[1], timeout=0.5)
        started = time.monotonic()
        with pytest.raises(AcmeProblem) as exc:
            await validate_http01(dns_id("www.example.test"), TOKEN, KEY_AUTHZ, s)
    assert exc.value.kind == "connection" and "timeout" in exc.value.detail
    assert time.monotonic() - started < 3


def redirect(web: HTTPResponder, path: str, location: str, status: int = 302) -> None:
    web.routes[path] = (status, {"Location": location}, b"")


async def test_http01_follows_redirects(dns_server: tuple[Zone, int], zone: Zone, web: HTTPResponder) -> None:
    redirect(web, CHALLENGE_PATH, "/moved", 301)
    redirect(web, "/moved", f"http://other.example.test:{web.port}/final", 307)
    web.routes["/final"] = (200, {}, KEY_AUTHZ.encode())
    await validate_http01(dns_id("www.example.test"), TOKEN, KEY_AUTHZ, settings_for(dns_server, web))
    assert web.requests == [
        (CHALLENGE_PATH, f"www.example.test:{web.port}"),
        ("/moved", f"www.example.test:{web.port}"),
        ("/final", f"other.example.test:{web.port}"),
    ]


async def test_http01_redirect_limit(dns_server: tuple[Zone, int], zone: Zone, web: HTTPResponder) -> None:
    redirect(web, CHALLENGE_PATH, "/hop/1")
    for n in range(1, 11):
        redirect(web, f"/hop/{n}", f"/hop/{n + 1}")
    web.routes["/hop/10"] = (200, {}, KEY_AUTHZ.encode())  # ten redirects are fine
    await validate_http01(dns_id("www.example.test"), TOKEN, KEY_AUTHZ, settings_for(dns_server, web))
    redirect(web, "/hop/10", "/hop/11")  # eleven are not
    web.routes["/hop/11"] = (200, {}, KEY_AUTHZ.encode())
    web.requests.clear()
    with pytest.raises(AcmeProblem) as exc:
        await validate_http01(dns_id("www.example.test"), TOKEN, KEY_AUTHZ, settings_for(dns_server, web))
    assert exc.value.kind == "connection" and "redirects" in exc.value.detail
    assert len(web.requests) == 11 and ("/hop/11", f"www.example.test:{web.port}") not in web.requests


@pytest.mark.parametrize(
    ("location", "fragment"),
    [
        ("http://169.254.169.254/latest/meta-data/", "refusing to connect to 169.254.169.254"),
        ("http://[::ffff:10.0.0.1]/", "refusing to connect to ::ffff:a00:1"),
        ("http://private.example.test/x", "refusing to connect to 10.0.0.1"),
        ("http://www.example.test:22/", "port 22"),
        ("ftp://www.example.test/", "scheme"),
        ("file:///etc/passwd", "scheme"),
        ("http://bad_host!.example.test/", "not a host name"),
        ("http://2130706433/", "not a host name"),
        ("http://127.1/", "not a host name"),
        ("http://[fe80::1%25lo]/", "not an address"),
        ("http://[::1/", "www.example.test"),  # httpx itself may refuse the Location
    ],
)
async def test_http01_redirect_refused(
    dns_server: tuple[Zone, int], zone: Zone, web: HTTPResponder, location: str, fragment: str
) -> None:
    zone.records[("private.example.test", "A")] = [A("10.0.0.1")]
    redirect(web, CHALLENGE_PATH, location)
    with pytest.raises(AcmeProblem) as exc:
        await validate_http01(dns_id("www.example.test"), TOKEN, KEY_AUTHZ, settings_for(dns_server, web))
    assert exc.value.kind == "connection"
    assert fragment in exc.value.detail
    assert exc.value.identifier == dns_id("www.example.test")
    assert len(web.requests) == 1


async def test_http01_redirect_to_https_skips_cert_checks(
    dns_server: tuple[Zone, int], zone: Zone, web: HTTPResponder, tmp_path: Path
) -> None:
    names: list[str | None] = []
    ctx = server_context(make_cert(tmp_path, sans=[x509.DNSName("unrelated.example")], key_authz=None))

    def record(_sock: Any, name: str | None, _ctx: Any) -> None:
        names.append(name)

    ctx.sni_callback = record
    secure = HTTPResponder(tls=ctx)
    try:
        secure.routes["/tls"] = (200, {}, KEY_AUTHZ.encode())
        redirect(web, CHALLENGE_PATH, f"https://secure.example.test:{secure.port}/tls")
        s = settings_for(dns_server, web, tls_port=secure.port)
        await validate_http01(dns_id("www.example.test"), TOKEN, KEY_AUTHZ, s)
        assert secure.requests == [("/tls", f"secure.example.test:{secure.port}")]
        assert names == ["secure.example.test"]
    finally:
        secure.close()


async def test_http01_rejects_bad_input(dns_server: tuple[Zone, int], web: HTTPResponder) -> None:
    s = settings_for(dns_server, web)
    for ident, token, kind in [
        (dns_id("www.example.test"), "../../etc/passwd", "malformed"),
        (dns_id("*.example.test"), TOKEN, "malformed"),
        (dns_id("not a name"), TOKEN, "malformed"),
        ({"type": "ip", "value": "fe80::1%eth0"}, TOKEN, "malformed"),
        ({"type": "email", "value": "a@example.test"}, TOKEN, "unsupportedIdentifier"),
    ]:
        with pytest.raises(AcmeProblem) as exc:
            await validate_http01(ident, token, KEY_AUTHZ, s)
        assert exc.value.kind == kind, (ident, token)
    assert web.requests == []


async def test_unexpected_errors_become_server_internal(
    dns_server: tuple[Zone, int], zone: Zone, web: HTTPResponder, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def boom(*_args: Any) -> Any:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(validation, "_fetch", boom)
    with pytest.raises(AcmeProblem) as exc:
        await validate_http01(dns_id("www.example.test"), TOKEN, KEY_AUTHZ, settings_for(dns_server, web))
    assert exc.value.kind == "serverInternal" and "secret" not in exc.value.detail
    assert exc.value.identifier == dns_id("www.example.test")


# ---------------------------------------------------------------------------------------------
# dns-01


async def test_dns01_success(dns_server: tuple[Zone, int], zone: Zone) -> None:
    value = dns01_value()
    zone.records[("_acme-challenge.www.example.test", "TXT")] = [TXT("unrelated"), TXT(value)]
    await validate_dns01(dns_id("www.example.test"), KEY_AUTHZ, settings_for(dns_server))
    # a TXT record split into several strings is joined
    zone.records[("_acme-challenge.split.example.test", "TXT")] = [TXT([value[:20], value[20:]])]
    await validate("dns-01", dns_id("split.example.test"), TOKEN, KEY_AUTHZ, settings_for(dns_server))
    # delegated with a CNAME, and a wildcard is proved at its base name
    zone.cnames["_acme-challenge.wild.example.test"] = "proof.validation.example.test"
    zone.records[("proof.validation.example.test", "TXT")] = [TXT(value)]
    await validate_dns01(dns_id("*.wild.example.test"), KEY_AUTHZ, settings_for(dns_server))
    assert ("_acme-challenge.wild.example.test", "TXT") in zone.queries


async def test_dns01_failures(dns_server: tuple[Zone, int], zone: Zone) -> None:
    s = settings_for(dns_server)
    zone.records[("_acme-challenge.wrong.example.test", "TXT")] = [TXT(dns01_value("other")), TXT("x")]
    with pytest.raises(AcmeProblem) as exc:
        await validate_dns01(dns_id("wrong.example.test"), KEY_AUTHZ, s)
    assert exc.value.kind == "incorrectResponse" and dns01_value("other") in exc.value.detail
    assert exc.value.identifier == dns_id("wrong.example.test")

    with pytest.raises(AcmeProblem) as exc:  # the name exists, the TXT does not
        await validate_dns01(dns_id("none.example.test"), KEY_AUTHZ, s)
    assert exc.value.kind == "unauthorized" and "no TXT record" in exc.value.detail

    zone.nxdomain.add("_acme-challenge.nx.example.test")
    with pytest.raises(AcmeProblem) as exc:
        await validate_dns01(dns_id("nx.example.test"), KEY_AUTHZ, s)
    assert exc.value.kind == "unauthorized" and "NXDOMAIN" in exc.value.detail

    with pytest.raises(AcmeProblem) as exc:
        await validate_dns01({"type": "ip", "value": "192.0.2.1"}, KEY_AUTHZ, s)
    assert exc.value.kind == "malformed"

    dead = ValidationSettings(dns_resolver=f"127.0.0.1:{free_port(socket.SOCK_DGRAM)}", timeout=0.5)
    with pytest.raises(AcmeProblem) as exc:
        await validate_dns01(dns_id("www.example.test"), KEY_AUTHZ, dead)
    assert exc.value.kind == "dns"


# ---------------------------------------------------------------------------------------------
# tls-alpn-01


def tls_settings(dns: tuple[Zone, int], tls: TLSResponder, **kw: Any) -> ValidationSettings:
    return settings_for(dns, tls_port=tls.port, **kw)


async def test_tlsalpn01_success(
    dns_server: tuple[Zone, int], zone: Zone, tls_server: TLSResponder, tmp_path: Path
) -> None:
    tls_server.use(server_context(make_cert(tmp_path), alpn=["acme-tls/1"]))
    await validate_tlsalpn01(dns_id("TLS.example.test"), KEY_AUTHZ, tls_settings(dns_server, tls_server))
    assert tls_server.server_names == ["tls.example.test"]
    await validate(
        "tls-alpn-01", dns_id("tls.example.test"), TOKEN, KEY_AUTHZ, tls_settings(dns_server, tls_server)
    )


async def test_tlsalpn01_default_policy_refuses_loopback(
    dns_server: tuple[Zone, int], zone: Zone, tls_server: TLSResponder, tmp_path: Path
) -> None:
    tls_server.use(server_context(make_cert(tmp_path), alpn=["acme-tls/1"]))
    with pytest.raises(AcmeProblem) as exc:
        await validate_tlsalpn01(
            dns_id("tls.example.test"), KEY_AUTHZ, tls_settings(dns_server, tls_server, permitted_ranges=())
        )
    assert exc.value.kind == "rejectedIdentifier" and "refusing to connect to 127.0.0.1" in exc.value.detail
    assert tls_server.server_names == []


@pytest.mark.parametrize(
    ("cert_kw", "alpn", "kind", "fragment"),
    [
        ({}, ["http/1.1"], "tls", "acme-tls/1"),
        ({}, None, "tls", "acme-tls/1"),
        ({"key_authz": None}, ["acme-tls/1"], "incorrectResponse", "no acmeIdentifier"),
        ({"critical": False}, ["acme-tls/1"], "incorrectResponse", "not critical"),
        ({"key_authz": "other.key-authorization"}, ["acme-tls/1"], "incorrectResponse", "does not match"),
        (
            {"sans": [x509.DNSName("other.example.test")]},
            ["acme-tls/1"],
            "incorrectResponse",
            "subjectAltName",
        ),
        (
            {"sans": [x509.DNSName("tls.example.test"), x509.DNSName("other.example.test")]},
            ["acme-tls/1"],
            "incorrectResponse",
            "exactly one",
        ),
        (
            {"sans": [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]},
            ["acme-tls/1"],
            "incorrectResponse",
            "subjectAltName",
        ),
    ],
)
async def test_tlsalpn01_failures(
    dns_server: tuple[Zone, int],
    zone: Zone,
    tls_server: TLSResponder,
    tmp_path: Path,
    cert_kw: dict[str, Any],
    alpn: list[str] | None,
    kind: str,
    fragment: str,
) -> None:
    tls_server.use(server_context(make_cert(tmp_path, **cert_kw), alpn=alpn))
    with pytest.raises(AcmeProblem) as exc:
        await validate_tlsalpn01(dns_id("tls.example.test"), KEY_AUTHZ, tls_settings(dns_server, tls_server))
    assert exc.value.kind == kind, exc.value.detail
    assert fragment in exc.value.detail
    assert exc.value.identifier == dns_id("tls.example.test")


async def test_tlsalpn01_rejects_ip_and_wildcard_and_closed_port(
    dns_server: tuple[Zone, int], zone: Zone
) -> None:
    s = settings_for(dns_server, tls_port=free_port())
    for ident in ({"type": "ip", "value": "127.0.0.1"}, dns_id("*.example.test")):
        with pytest.raises(AcmeProblem) as exc:
            await validate_tlsalpn01(ident, KEY_AUTHZ, s)
        assert exc.value.kind == "malformed"
    with pytest.raises(AcmeProblem) as exc:
        await validate_tlsalpn01(dns_id("tls.example.test"), KEY_AUTHZ, s)
    assert exc.value.kind == "connection" and "refused" in exc.value.detail


# ---------------------------------------------------------------------------------------------
# dispatch


async def test_validate_unknown_type() -> None:
    with pytest.raises(AcmeProblem) as exc:
        await validate("http-00", dns_id("www.example.test"), TOKEN, KEY_AUTHZ, ValidationSettings())
    assert exc.value.kind == "malformed" and exc.value.identifier == dns_id("www.example.test")
