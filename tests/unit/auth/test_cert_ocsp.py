"""OCSP checks of the cert auth method against a loopback OCSP responder built here.

The responder is a threaded ``http.server`` on 127.0.0.1 answering what each test asks of
it (status, signer, embedded certificates, validity window, nonce, HTTP errors,
redirects); logins go through the real HTTP layer with the client certificate handed over
the way the TLS server does (``scope["extensions"]["tls"]``), so the backend's own httpx
client talks to the responder over real sockets.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID
from test_cert_auth import ClientCerts
from test_cert_auth import Env as CertEnv

from strongroom.auth import cert_ocsp
from strongroom.auth.cert import CertBackend
from strongroom.auth.cert_ocsp import OcspChecker, OcspSettings, Outcome, evaluate_response
from strongroom.core.mounts import MountEntry
from strongroom.logical.errors import PermissionDenied
from strongroom.logical.request import Connection, Operation, Request
from strongroom.testing import running_core

NOW = dt.datetime.now(dt.UTC)
GOOD, REVOKED, UNKNOWN = ocsp.OCSPCertStatus.GOOD, ocsp.OCSPCertStatus.REVOKED, ocsp.OCSPCertStatus.UNKNOWN


# -- certificates ------------------------------------------------------------------------------


@dataclass
class Issued:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def pem(self) -> str:
        return self.cert.public_bytes(serialization.Encoding.PEM).decode()


def make_cert(
    cn: str,
    *,
    issuer: Issued | None = None,
    ca: bool = False,
    ocsp_urls: tuple[str, ...] = (),
    eku: tuple[x509.ObjectIdentifier, ...] = (ExtendedKeyUsageOID.CLIENT_AUTH,),
    not_after: dt.datetime | None = None,
) -> Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    b = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.cert.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(hours=1))
        .not_valid_after(not_after or NOW + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca and eku:
        b = b.add_extension(x509.ExtendedKeyUsage(list(eku)), critical=False)
    if ocsp_urls:
        b = b.add_extension(
            x509.AuthorityInformationAccess(
                [
                    x509.AccessDescription(
                        AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(u)
                    )
                    for u in ocsp_urls
                ]
            ),
            critical=False,
        )
    return Issued(b.sign(issuer.key if issuer else key, hashes.SHA256()), key)


def closed_port_url() -> str:
    """An http URL nobody listens on (connection refused at once)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/ocsp"


# -- the loopback responder --------------------------------------------------------------------


@dataclass
class Responder:
    """What the responder answers; every knob is read per request."""

    ca: Issued
    statuses: dict[int, ocsp.OCSPCertStatus] = field(default_factory=dict)
    signer: Issued | None = None  # None: the CA signs
    embed: list[x509.Certificate] = field(default_factory=list)
    this_update_delta: dt.timedelta = dt.timedelta(minutes=-1)
    next_update_delta: dt.timedelta | None = dt.timedelta(hours=1)
    nonce_mode: str = "echo"  # echo | none | wrong
    cert_id_mode: str = "right"  # right | serial | issuer
    http_status: int = 200
    unsuccessful: ocsp.OCSPResponseStatus | None = None
    raw: bytes | None = None
    redirect: str | None = None
    delay: float = 0.0
    clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)
    requests: list[ocsp.OCSPRequest] = field(default_factory=list)
    url: str = ""

    def answer(self, body: bytes) -> tuple[int, dict[str, str], bytes]:
        req = ocsp.load_der_ocsp_request(body)
        self.requests.append(req)
        if self.delay:
            time.sleep(self.delay)
        if self.redirect is not None:
            return 307, {"Location": self.redirect}, b""
        if self.http_status != 200:
            return self.http_status, {}, b"nope"
        if self.raw is not None:
            return 200, {}, self.raw
        if self.unsuccessful is not None:
            out = ocsp.OCSPResponseBuilder.build_unsuccessful(self.unsuccessful)
            return 200, {}, out.public_bytes(serialization.Encoding.DER)
        now = self.clock().replace(microsecond=0)
        status = self.statuses.get(req.serial_number, GOOD)
        serial = req.serial_number + (1 if self.cert_id_mode == "serial" else 0)
        key_hash = bytes(len(req.issuer_key_hash)) if self.cert_id_mode == "issuer" else req.issuer_key_hash
        signer = self.signer or self.ca
        builder = ocsp.OCSPResponseBuilder().add_response_by_hash(
            issuer_name_hash=req.issuer_name_hash,
            issuer_key_hash=key_hash,
            serial_number=serial,
            algorithm=req.hash_algorithm,
            cert_status=status,
            this_update=now + self.this_update_delta,
            next_update=None if self.next_update_delta is None else now + self.next_update_delta,
            revocation_time=now - dt.timedelta(minutes=5) if status == REVOKED else None,
            revocation_reason=None,
        )
        builder = builder.responder_id(ocsp.OCSPResponderEncoding.HASH, signer.cert)
        if self.embed:
            builder = builder.certificates(self.embed)
        try:
            nonce = req.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
        except x509.ExtensionNotFound:
            nonce = None
        if nonce is not None and self.nonce_mode != "none":
            echoed = nonce if self.nonce_mode == "echo" else bytes(len(nonce))
            builder = builder.add_extension(x509.OCSPNonce(echoed), critical=False)
        signed = builder.sign(signer.key, hashes.SHA256())
        return (
            200,
            {"Content-Type": "application/ocsp-response"},
            signed.public_bytes(serialization.Encoding.DER),
        )


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        assert self.headers.get("Content-Type") == "application/ocsp-request"
        status, headers, payload = self.server.responder.answer(body)
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    responder: Responder


@pytest.fixture
def serve() -> Iterator[Callable[[Issued], Responder]]:
    servers: list[_Server] = []

    def start(ca: Issued) -> Responder:
        server = _Server(("127.0.0.1", 0), _Handler)
        responder = Responder(ca)
        responder.url = f"http://127.0.0.1:{server.server_address[1]}/ocsp"
        server.responder = responder
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        servers.append(server)
        return responder

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


# -- the strongroom side -----------------------------------------------------------------------


@dataclass
class Env(CertEnv):
    responder: Responder

    def leaf(self, cn: str = "client", **kw: Any) -> Issued:
        kw.setdefault("ocsp_urls", (self.responder.url,))
        return make_cert(cn, issuer=self.ca, **kw)

    @property
    def backend(self) -> CertBackend:
        route = self.h.core.router.get("auth/cert/")
        assert route is not None and isinstance(route.backend, CertBackend)
        return route.backend


@pytest.fixture
async def env(serve: Callable[[Issued], Responder]) -> AsyncIterator[Env]:
    async with running_core() as h:
        if h.core.expiration is not None:
            await h.core.expiration.stop()
        await h.core.enable_mount(MountEntry("cert/", "cert", table="auth"))
        wrapper = ClientCerts(h.app)
        transport = httpx.ASGITransport(app=wrapper, client=("127.0.0.1", 12345))  # type: ignore[arg-type]
        ca = make_cert("OCSP Test Root", ca=True)
        async with httpx.AsyncClient(transport=transport, base_url="http://strongroom.test") as client:
            yield Env(h, wrapper, client, ca, serve(ca))


def errors(r: httpx.Response) -> str:
    return " ".join(r.json().get("errors", []))


# -- definitive answers ------------------------------------------------------------------------


async def test_good_answer_allows_login(env: Env) -> None:
    await env.trust("web", env.ca, ocsp_enabled=True)
    leaf = env.leaf()
    r = await env.login([leaf])
    assert r.status_code == 200, r.text
    assert r.json()["auth"]["metadata"]["cert_name"] == "web"
    assert len(env.responder.requests) == 1
    sent = env.responder.requests[0]
    assert sent.serial_number == leaf.cert.serial_number
    assert isinstance(sent.hash_algorithm, hashes.SHA1)
    assert len(sent.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce) == 16


async def test_revoked_answer_refuses_login(env: Env) -> None:
    await env.trust("web", env.ca, ocsp_enabled=True, ocsp_fail_open=True)
    leaf = env.leaf()
    env.responder.statuses[leaf.cert.serial_number] = REVOKED
    r = await env.login([leaf])
    assert r.status_code == 403, r.text
    assert "permission denied" in errors(r) and "has been revoked" in errors(r)
    # a sibling the responder calls good still logs in
    assert (await env.login([env.leaf("sibling")])).status_code == 200


async def test_revoked_for_one_entry_does_not_hide_another_without_ocsp(env: Env) -> None:
    """As in Vault each entry is judged on its own: the OCSP one refuses, the plain one matches."""
    await env.trust("checked", env.ca, ocsp_enabled=True)
    await env.trust("plain", env.ca)
    leaf = env.leaf()
    env.responder.statuses[leaf.cert.serial_number] = REVOKED
    assert (await env.login([leaf], name="checked")).status_code == 403
    r = await env.login([leaf])
    assert r.status_code == 200 and r.json()["auth"]["metadata"]["cert_name"] == "plain"


async def test_ocsp_disabled_entry_sends_nothing(env: Env) -> None:
    await env.trust("web", env.ca)
    assert (await env.login([env.leaf()])).status_code == 200
    assert env.responder.requests == []


async def test_unknown_refused_unless_fail_open(env: Env) -> None:
    await env.trust("web", env.ca, ocsp_enabled=True)
    leaf = env.leaf()
    env.responder.statuses[leaf.cert.serial_number] = UNKNOWN
    r = await env.login([leaf])
    assert r.status_code == 400, r.text
    assert "unknown OCSP status" in errors(r)
    await env.trust("web", env.ca, ocsp_fail_open=True)
    assert (await env.login([leaf])).status_code == 200


async def test_unsuccessful_response_is_no_answer(env: Env) -> None:
    await env.trust("web", env.ca, ocsp_enabled=True, ocsp_max_retries=0)
    env.responder.unsuccessful = ocsp.OCSPResponseStatus.TRY_LATER
    assert (await env.login([env.leaf()])).status_code == 400
    await env.trust("web", env.ca, ocsp_fail_open=True)
    assert (await env.login([env.leaf()])).status_code == 200


# -- responses that must not be believed -------------------------------------------------------


async def test_bad_signature_refused_even_with_fail_open(env: Env) -> None:
    await env.trust("web", env.ca, ocsp_enabled=True, ocsp_fail_open=True)
    env.responder.signer = make_cert("Impostor Responder", ca=True)
    r = await env.login([env.leaf()])
    assert r.status_code == 400, r.text
    assert "not signed by the issuer" in errors(r)


async def test_embedded_impostor_certificate_is_not_trusted(env: Env) -> None:
    """A self-made responder certificate carried in the response proves nothing."""
    await env.trust("web", env.ca, ocsp_enabled=True)
    impostor = make_cert("Impostor", eku=(ExtendedKeyUsageOID.OCSP_SIGNING,))
    env.responder.signer, env.responder.embed = impostor, [impostor.cert]
    assert (await env.login([env.leaf()])).status_code == 400


@pytest.mark.parametrize("mode", ["serial", "issuer"])
async def test_wrong_cert_id_refused_even_with_fail_open(env: Env, mode: str) -> None:
    await env.trust("web", env.ca, ocsp_enabled=True, ocsp_fail_open=True)
    env.responder.cert_id_mode = mode
    r = await env.login([env.leaf()])
    assert r.status_code == 400, r.text
    assert "not about this certificate" in errors(r)


async def test_nonce_must_be_ours_when_echoed(env: Env) -> None:
    await env.trust("web", env.ca, ocsp_enabled=True, ocsp_fail_open=True)
    env.responder.nonce_mode = "wrong"
    r = await env.login([env.leaf()])
    assert r.status_code == 400 and "nonce" in errors(r)
    env.responder.nonce_mode = "none"  # most public responders echo nothing: accepted
    assert (await env.login([env.leaf("other")])).status_code == 200


async def test_stale_this_update_refused(env: Env) -> None:
    env.responder.this_update_delta = -dt.timedelta(hours=3)
    env.responder.next_update_delta = None
    await env.trust("web", env.ca, ocsp_enabled=True, ocsp_this_update_max_age="1h", ocsp_fail_open=True)
    r = await env.login([env.leaf()])
    assert r.status_code == 400, r.text
    assert "ocsp_this_update_max_age" in errors(r)
    await env.trust("web", env.ca, ocsp_this_update_max_age=0)
    assert (await env.login([env.leaf()])).status_code == 200


async def test_passed_next_update_and_future_this_update_refused(env: Env) -> None:
    await env.trust("web", env.ca, ocsp_enabled=True)
    env.responder.this_update_delta = -dt.timedelta(days=1)
    env.responder.next_update_delta = -dt.timedelta(hours=1)
    r = await env.login([env.leaf()])
    assert r.status_code == 400 and "nextUpdate has passed" in errors(r)
    env.responder.this_update_delta = dt.timedelta(hours=1)
    env.responder.next_update_delta = dt.timedelta(hours=2)
    r = await env.login([env.leaf()])
    assert r.status_code == 400 and "in the future" in errors(r)


# -- delegated and locally trusted responders --------------------------------------------------


async def test_delegated_responder_needs_the_ocsp_signing_eku(env: Env) -> None:
    await env.trust("web", env.ca, ocsp_enabled=True)
    delegate = make_cert("OCSP Responder", issuer=env.ca, eku=(ExtendedKeyUsageOID.OCSP_SIGNING,))
    env.responder.signer, env.responder.embed = delegate, [delegate.cert]
    assert (await env.login([env.leaf("a")])).status_code == 200

    no_eku = make_cert("Not A Responder", issuer=env.ca, eku=(ExtendedKeyUsageOID.SERVER_AUTH,))
    env.responder.signer, env.responder.embed = no_eku, [no_eku.cert]
    r = await env.login([env.leaf("b")])
    assert r.status_code == 400 and "authorized responder" in errors(r)

    expired = make_cert(
        "Old Responder",
        issuer=env.ca,
        eku=(ExtendedKeyUsageOID.OCSP_SIGNING,),
        not_after=NOW - dt.timedelta(minutes=1),
    )
    env.responder.signer, env.responder.embed = expired, [expired.cert]
    assert (await env.login([env.leaf("c")])).status_code == 400


async def test_ocsp_ca_certificates_trust_a_responder(env: Env) -> None:
    """A responder certificate not issued by the CA is believed only when the entry lists it."""
    local = make_cert("Local Responder", ca=True)
    env.responder.signer = local
    await env.trust("web", env.ca, ocsp_enabled=True)
    assert (await env.login([env.leaf("a")])).status_code == 400
    await env.trust("web", env.ca, ocsp_ca_certificates=local.pem)
    assert (await env.login([env.leaf("b")])).status_code == 200
    r = await env.call("GET", "certs/web")
    assert r.json()["data"]["ocsp_ca_certificates"] == local.pem


# -- responders that do not answer -------------------------------------------------------------


async def test_responder_down_refused_unless_fail_open(env: Env) -> None:
    await env.trust("web", env.ca, ocsp_enabled=True, ocsp_max_retries=0)
    leaf = env.leaf(ocsp_urls=(closed_port_url(),))
    r = await env.login([leaf])
    assert r.status_code == 400, r.text
    assert "could not be reached" in errors(r)
    assert "127.0.0.1" not in errors(r)  # responder addresses stay in the server log
    await env.trust("web", env.ca, ocsp_fail_open=True)
    assert (await env.login([leaf])).status_code == 200


async def test_no_responder_url_is_unknown(env: Env) -> None:
    await env.trust("web", env.ca, ocsp_enabled=True)
    leaf = env.leaf(ocsp_urls=())
    r = await env.login([leaf])
    assert r.status_code == 400 and "no OCSP responder URL" in errors(r)
    await env.trust("web", env.ca, ocsp_fail_open=True)
    assert (await env.login([leaf])).status_code == 200


async def test_http_errors_are_retried_ocsp_max_retries_times(env: Env) -> None:
    await env.trust("web", env.ca, ocsp_enabled=True, ocsp_max_retries=2)
    env.responder.http_status = 503
    r = await env.login([env.leaf()])
    assert r.status_code == 400 and "HTTP 503" in errors(r)
    assert len(env.responder.requests) == 3
    env.responder.requests.clear()
    env.responder.http_status = 404  # not worth retrying
    assert (await env.login([env.leaf()])).status_code == 400
    assert len(env.responder.requests) == 1


async def test_timeout(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cert_ocsp, "TIMEOUT_SECONDS", 0.2)
    await env.trust("web", env.ca, ocsp_enabled=True, ocsp_max_retries=0)
    env.responder.delay = 0.6
    r = await env.login([env.leaf()])
    assert r.status_code == 400 and "timed out" in errors(r)


async def test_oversized_response_refused(env: Env) -> None:
    await env.trust("web", env.ca, ocsp_enabled=True)
    env.responder.raw = b"\x30" * (cert_ocsp.MAX_RESPONSE_BYTES + 10)
    r = await env.login([env.leaf()])
    assert r.status_code == 400 and "too large" in errors(r)


async def test_redirects_only_to_http(env: Env, serve: Callable[[Issued], Responder]) -> None:
    await env.trust("web", env.ca, ocsp_enabled=True, ocsp_max_retries=0)
    env.responder.redirect = "file:///etc/passwd"
    r = await env.login([env.leaf()])
    assert r.status_code == 400 and "non-http(s)" in errors(r)
    target = serve(env.ca)
    env.responder.redirect = target.url  # 307 keeps the POST
    assert (await env.login([env.leaf()])).status_code == 200
    assert len(target.requests) == 1


# -- which servers ---------------------------------------------------------------------------


async def test_servers_override_replaces_the_aia_urls(env: Env, serve: Callable[[Issued], Responder]) -> None:
    other = serve(env.ca)
    leaf = env.leaf()  # AIA names env.responder
    env.responder.statuses[leaf.cert.serial_number] = REVOKED
    await env.trust("web", env.ca, ocsp_enabled=True, ocsp_servers_override=other.url)
    assert (await env.login([leaf])).status_code == 200
    assert len(other.requests) == 1 and env.responder.requests == []
    r = await env.call("GET", "certs/web")
    assert r.json()["data"]["ocsp_servers_override"] == [other.url]
    r = await env.call("POST", "certs/web", {"ocsp_servers_override": "ldap://ocsp.example"})
    assert r.status_code == 400


async def test_first_definitive_answer_wins_in_order(env: Env, serve: Callable[[Issued], Responder]) -> None:
    good, revoked = env.responder, serve(env.ca)
    leaf = env.leaf()
    revoked.statuses[leaf.cert.serial_number] = REVOKED
    dead = closed_port_url()
    await env.trust(
        "web",
        env.ca,
        ocsp_enabled=True,
        ocsp_max_retries=0,
        ocsp_servers_override=f"{dead},{good.url},{revoked.url}",
    )
    assert (await env.login([leaf])).status_code == 200
    assert len(good.requests) == 1 and revoked.requests == []


async def test_query_all_servers(env: Env, serve: Callable[[Issued], Responder]) -> None:
    first, second = env.responder, serve(env.ca)
    leaf = env.leaf()
    second.statuses[leaf.cert.serial_number] = REVOKED
    servers = f"{first.url},{second.url}"
    await env.trust(
        "web", env.ca, ocsp_enabled=True, ocsp_query_all_servers=True, ocsp_servers_override=servers
    )
    r = await env.login([leaf])
    assert r.status_code == 403, r.text
    assert len(first.requests) == 1 and len(second.requests) == 1

    # all good: good; one good and one down: no agreement, so refused (fail-open lets it in)
    fine = env.leaf("fine")
    assert (await env.login([fine])).status_code == 200
    await env.trust(
        "web", env.ca, ocsp_max_retries=0, ocsp_servers_override=f"{first.url},{closed_port_url()}"
    )
    r = await env.login([env.leaf("third")])
    assert r.status_code == 400 and "not every OCSP server answered good" in errors(r)
    await env.trust("web", env.ca, ocsp_fail_open=True)
    assert (await env.login([env.leaf("fourth")])).status_code == 200


# -- caching and renewal -----------------------------------------------------------------------


async def test_answers_are_cached_until_next_update(env: Env) -> None:
    await env.trust("web", env.ca, ocsp_enabled=True)
    shift = [dt.timedelta(0)]
    env.backend.now = lambda: dt.datetime.now(dt.UTC) + shift[0]
    env.responder.clock = env.backend.now
    env.responder.next_update_delta = dt.timedelta(minutes=10)
    leaf = env.leaf()
    assert (await env.login([leaf])).status_code == 200
    assert (await env.login([leaf])).status_code == 200
    assert len(env.responder.requests) == 1  # the second login asked nobody

    env.responder.statuses[leaf.cert.serial_number] = REVOKED
    shift[0] = dt.timedelta(minutes=5)
    assert (await env.login([leaf])).status_code == 200  # still the cached good answer
    shift[0] = dt.timedelta(minutes=11)  # past next_update: asked again
    assert (await env.login([leaf])).status_code == 403
    assert (await env.login([leaf])).status_code == 403
    assert len(env.responder.requests) == 2  # the revoked answer is cached too


async def test_answers_without_next_update_are_cached_briefly(env: Env) -> None:
    await env.trust("web", env.ca, ocsp_enabled=True)
    shift = [dt.timedelta(0)]
    env.backend.now = lambda: dt.datetime.now(dt.UTC) + shift[0]
    env.responder.clock = env.backend.now
    env.responder.next_update_delta = None
    leaf = env.leaf()
    assert (await env.login([leaf])).status_code == 200
    shift[0] = dt.timedelta(seconds=30)
    assert (await env.login([leaf])).status_code == 200
    assert len(env.responder.requests) == 1
    shift[0] = dt.timedelta(seconds=cert_ocsp.NO_NEXT_UPDATE_CACHE_SECONDS + 1)
    assert (await env.login([leaf])).status_code == 200
    assert len(env.responder.requests) == 2


async def test_cache_is_bounded_by_ocsp_cache_size(env: Env) -> None:
    await env.trust("web", env.ca, ocsp_enabled=True)
    assert (await env.call("POST", "config", {"ocsp_cache_size": 2})).status_code == 204
    leaves = [env.leaf(f"c{i}") for i in range(3)]
    for leaf in leaves:
        assert (await env.login([leaf])).status_code == 200
    assert len(env.responder.requests) == 3
    assert (await env.login([leaves[0]])).status_code == 200  # evicted: asked again
    assert len(env.responder.requests) == 4
    assert (await env.login([leaves[2]])).status_code == 200  # still cached
    assert len(env.responder.requests) == 4


async def test_failures_are_not_cached(env: Env) -> None:
    await env.trust("web", env.ca, ocsp_enabled=True, ocsp_max_retries=0)
    env.responder.http_status = 500
    leaf = env.leaf()
    assert (await env.login([leaf])).status_code == 400
    env.responder.http_status = 200
    assert (await env.login([leaf])).status_code == 200


async def test_concurrent_logins_share_one_request(env: Env) -> None:
    await env.trust("web", env.ca, ocsp_enabled=True)
    env.responder.delay = 0.3
    leaf = env.leaf()
    b = env.backend

    async def login() -> Any:
        return await b.handle_request(
            Request(
                operation=Operation.UPDATE,
                path="login",
                storage=b.storage,
                connection=Connection(tls=True, client_cert_chain=[leaf.pem]),
                unauthenticated=True,
            )
        )

    answers = await asyncio.gather(*(login() for _ in range(5)))
    assert all(a is not None and a.auth is not None for a in answers)
    assert len(env.responder.requests) == 1


async def test_renewal_checks_ocsp_again(env: Env) -> None:
    await env.trust("web", env.ca, ocsp_enabled=True, token_policies="reader")
    shift = [dt.timedelta(0)]
    env.backend.now = lambda: dt.datetime.now(dt.UTC) + shift[0]
    env.responder.clock = env.backend.now
    env.responder.next_update_delta = dt.timedelta(minutes=10)
    leaf = env.leaf()
    b = env.backend
    conn = Connection(tls=True, client_cert_chain=[leaf.pem])
    login = await b.handle_request(
        Request(
            operation=Operation.UPDATE, path="login", storage=b.storage, connection=conn, unauthenticated=True
        )
    )
    assert login is not None and login.auth is not None

    def renew() -> Request:
        return Request(
            operation=Operation.RENEW, path="login", storage=b.storage, connection=conn, auth=login.auth
        )

    assert await b.handle_request(renew()) is not None
    env.responder.statuses[leaf.cert.serial_number] = REVOKED
    shift[0] = dt.timedelta(minutes=11)
    with pytest.raises(PermissionDenied):
        await b.handle_request(renew())


# -- pinned leaves, anchors, entry fields ------------------------------------------------------


async def test_pinned_leaf_is_checked_with_its_issuer(env: Env) -> None:
    leaf = env.leaf("pinned")
    await env.trust("pinned", leaf, ocsp_enabled=True)
    # the issuer is presented with the leaf: asked, and good
    assert (await env.login([leaf, env.ca])).status_code == 200
    env.responder.statuses[leaf.cert.serial_number] = REVOKED
    env.backend.ocsp.clear()
    assert (await env.login([leaf, env.ca])).status_code == 403
    # without its issuer nobody can be asked: unknown, so refused unless fail-open
    other = env.leaf("pinned2")
    await env.trust("pinned2", other, ocsp_enabled=True)
    r = await env.login([other], name="pinned2")
    assert r.status_code == 400 and "issuer" in errors(r)
    await env.trust("pinned2", other, ocsp_fail_open=True)
    assert (await env.login([other], name="pinned2")).status_code == 200


async def test_self_signed_anchor_presented_as_leaf_is_not_checked(env: Env) -> None:
    """hvac's shape: a self-signed CA:TRUE certificate trusted as itself (Vault checks nothing)."""
    await env.trust("self", env.ca, ocsp_enabled=True)
    assert (await env.login([env.ca])).status_code == 200
    assert env.responder.requests == []


async def test_entry_fields(env: Env) -> None:
    await env.trust("web", env.ca, ocsp_enabled=True)
    data = (await env.call("GET", "certs/web")).json()["data"]
    assert data["ocsp_max_retries"] == 4 and data["ocsp_this_update_max_age"] == 0
    await env.trust("web", env.ca, ocsp_this_update_max_age="2h", ocsp_max_retries=1)
    data = (await env.call("GET", "certs/web")).json()["data"]
    assert data["ocsp_max_retries"] == 1 and data["ocsp_this_update_max_age"] == 7200
    assert data["ocsp_enabled"] is True
    assert (await env.call("POST", "certs/web", {"ocsp_max_retries": -1})).status_code == 400
    assert (await env.call("POST", "certs/web", {"ocsp_ca_certificates": "garbage"})).status_code == 400


# -- the checker on its own --------------------------------------------------------------------


async def test_checker_caches_per_trust_configuration(serve: Callable[[Issued], Responder]) -> None:
    ca = make_cert("Root", ca=True)
    responder = serve(ca)
    leaf = make_cert("c", issuer=ca, ocsp_urls=(responder.url,))
    checker = OcspChecker()
    now = dt.datetime.now(dt.UTC)
    plain = OcspSettings()
    trusting = OcspSettings(ca_certificates=(ca.cert,), ca_pem_digest="x")
    assert (await checker.check(leaf.cert, ca.cert, plain, now)).outcome is Outcome.GOOD
    assert (await checker.check(leaf.cert, ca.cert, plain, now)).cached
    assert not (await checker.check(leaf.cert, ca.cert, trusting, now)).cached
    assert len(responder.requests) == 2


def test_evaluate_response_rejects_garbage() -> None:
    ca = make_cert("Root", ca=True)
    leaf = make_cert("c", issuer=ca)
    with pytest.raises(Exception, match="does not parse"):
        evaluate_response(b"\x30\x00", leaf.cert, ca.cert, None, OcspSettings(), dt.datetime.now(dt.UTC))
