"""pki OCSP: openssl-built requests answered good / revoked (and unknown from the builder), nonce
echoed and verified by openssl, GET encodings, foreign issuers refused, bad input never a 5xx."""

from __future__ import annotations

import base64
import datetime as dt
import importlib
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp as x509_ocsp
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from strongroom.core.mounts import MountEntry
from strongroom.engines.pki import backend as pki_backend
from strongroom.engines.pki import ocsp, revocation, store
from strongroom.logical.request import Operation, Request
from strongroom.testing import Harness, running_core

NOW = dt.datetime.now(dt.UTC)
RAW_BODY_SUPPORTED = "raw_body" in getattr(Request, "__dataclass_fields__", {})


def _importable(name: str) -> bool:
    try:
        importlib.import_module(name)
    except Exception:
        return False
    return True


def make_cert(
    cn: str, key: Any, issuer: x509.Certificate | None = None, issuer_key: Any = None, ca: bool = False
) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(hours=1))
        .not_valid_after(NOW + dt.timedelta(days=30 if not ca else 3650))
    )
    if ca:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    return builder.sign(issuer_key or key, hashes.SHA256())


@dataclass
class Pki:
    h: Harness
    backend: Any
    storage: Any
    ca: x509.Certificate
    ca_key: Any
    issuer_id: str
    tmp: Path

    async def leaf(self) -> x509.Certificate:
        cert = make_cert("leaf", ec.generate_private_key(ec.SECP256R1()), self.ca, self.ca_key)
        await store.store_certificate(self.storage, cert, self.issuer_id)
        return cert

    def files(self, cert: x509.Certificate, ca: x509.Certificate | None = None) -> tuple[Path, Path]:
        ca_file, leaf_file = self.tmp / "ca.pem", self.tmp / "leaf.pem"
        ca_file.write_bytes((ca or self.ca).public_bytes(serialization.Encoding.PEM))
        leaf_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return ca_file, leaf_file

    def request(
        self, cert: x509.Certificate, *, nonce: bool = True, ca: x509.Certificate | None = None
    ) -> bytes:
        """An OCSP request written by ``openssl ocsp -reqout``."""
        ca_file, leaf_file = self.files(cert, ca)
        out = self.tmp / "req.der"
        args = ["openssl", "ocsp", "-issuer", str(ca_file), "-cert", str(leaf_file), "-reqout", str(out)]
        subprocess.run([*args, *([] if nonce else ["-no_nonce"])], check=True, capture_output=True)
        return out.read_bytes()

    def check(self, request: bytes, response: bytes) -> str:
        """``openssl ocsp -respin`` verifies the signature (and the nonce against -reqin)."""
        (self.tmp / "req.der").write_bytes(request)
        (self.tmp / "resp.der").write_bytes(response)
        ca_file = self.tmp / "ca.pem"
        ca_file.write_bytes(self.ca.public_bytes(serialization.Encoding.PEM))
        done = subprocess.run(
            [
                "openssl",
                "ocsp",
                "-respin",
                str(self.tmp / "resp.der"),
                "-reqin",
                str(self.tmp / "req.der"),
                "-CAfile",
                str(ca_file),
                "-verify_other",
                str(ca_file),
                "-resp_text",
            ],
            capture_output=True,
            text=True,
        )
        return done.stdout + done.stderr

    async def get(self, der: bytes, encode: bool = True) -> Any:
        text = base64.b64encode(der).decode()
        return await self.h.client.get("/v1/pki/ocsp/" + (quote(text, safe="") if encode else text))

    async def post(self, der: bytes) -> tuple[int, bytes]:
        """POST ocsp through the backend with the raw body the HTTP layer would hand over."""
        req = Request(operation=Operation.UPDATE, path="ocsp", storage=self.storage, unauthenticated=True)
        req.raw_body = der  # type: ignore[attr-defined]
        resp = await self.backend.handle_request(req)
        assert resp is not None and resp.raw is not None
        assert resp.raw.content_type == "application/ocsp-response"
        return resp.raw.status, resp.raw.body


@pytest.fixture
async def pki(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> AsyncIterator[Pki]:
    usable = tuple(m for m in pki_backend.PATH_MODULES if _importable(m))
    monkeypatch.setattr(pki_backend, "PATH_MODULES", usable)
    async with running_core() as h:
        await h.core.enable_mount(MountEntry("pki/", "pki"))
        route = h.core.router.get("pki/")
        assert route is not None
        key = ec.generate_private_key(ec.SECP256R1())
        ca = make_cert("ocsp root", key, ca=True)
        await store.import_key(route.storage, key)
        entry, _ = await store.import_issuer(route.storage, ca)
        yield Pki(h, route.backend, route.storage, ca, key, entry.id, tmp_path)
        await revocation.manager_for(route.backend).stop()


def status_of(body: bytes) -> x509_ocsp.OCSPResponseStatus:
    return x509_ocsp.load_der_ocsp_response(body).response_status


async def test_good_then_revoked_with_nonce_verified_by_openssl(pki: Pki) -> None:
    cert = await pki.leaf()
    req = pki.request(cert)
    code, body = await pki.post(req)
    assert code == 200
    out = pki.check(req, body)
    assert "Response verify OK" in out and "Cert Status: good" in out and "Nonce Verify error" not in out
    parsed = x509_ocsp.load_der_ocsp_response(body)
    sent = x509_ocsp.load_der_ocsp_request(req)
    assert parsed.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce == (
        sent.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
    )
    # CVE-2024-2660: the answer is for the asked serial and signed by the issuer's key
    assert parsed.serial_number == cert.serial_number and parsed.certificates == []
    pki.ca.public_key().verify(parsed.signature, parsed.tbs_response_bytes, ec.ECDSA(hashes.SHA256()))
    assert parsed.next_update_utc is not None and parsed.this_update_utc is not None
    assert (parsed.next_update_utc - parsed.this_update_utc).total_seconds() == 12 * 3600

    r = await pki.h.call(
        "POST", "pki/revoke", json={"serial_number": store.serial_to_str(cert.serial_number)}
    )
    revoked_at = r.json()["data"]["revocation_time"]
    req = pki.request(cert, nonce=False)
    code, body = await pki.post(req)
    out = pki.check(req, body)
    assert code == 200 and "Response verify OK" in out and "Cert Status: revoked" in out
    parsed = x509_ocsp.load_der_ocsp_response(body)
    assert (
        parsed.revocation_time_utc is not None and int(parsed.revocation_time_utc.timestamp()) == revoked_at
    )
    with pytest.raises(x509.ExtensionNotFound):
        parsed.extensions.get_extension_for_class(x509.OCSPNonce)


@pytest.mark.skipif(not RAW_BODY_SUPPORTED, reason="the HTTP layer does not hand raw bodies to engines yet")
async def test_post_through_the_http_app(pki: Pki) -> None:
    cert = await pki.leaf()
    req = pki.request(cert)
    r = await pki.h.client.post(
        "/v1/pki/ocsp", content=req, headers={"Content-Type": "application/ocsp-request"}
    )
    assert r.status_code == 200 and r.headers["content-type"] == "application/ocsp-response"
    assert "Cert Status: good" in pki.check(req, r.content)


async def test_get_form_with_percent_encoding_and_missing_padding(pki: Pki) -> None:
    cert = await pki.leaf()
    await pki.h.call("POST", "pki/revoke", json={"serial_number": store.serial_to_str(cert.serial_number)})
    req = pki.request(cert)
    r = await pki.get(req)  # %2B / %2F / %3D as clients send them
    assert r.status_code == 200 and r.headers["content-type"] == "application/ocsp-response"
    assert "Cert Status: revoked" in pki.check(req, r.content)
    unpadded = base64.b64encode(req).decode().rstrip("=")
    r = await pki.h.client.get("/v1/pki/ocsp/" + unpadded.replace("+", "%2B"))
    assert r.status_code == 200 and "Response verify OK" in pki.check(req, r.content)


async def test_get_survives_slashes_collapsed_by_the_http_layer(pki: Pki) -> None:
    """A '//' inside the base64 text becomes '/' in our router; the decoder puts it back."""
    name_hash, key_hash = ocsp.issuer_hashes(pki.ca, hashes.SHA1())
    for serial in range(1, 20000):
        der = (
            x509_ocsp.OCSPRequestBuilder()
            .add_certificate_by_hash(name_hash, key_hash, serial, hashes.SHA1())
            .build()
            .public_bytes(serialization.Encoding.DER)
        )
        if "//" in base64.b64encode(der).decode():
            break
    else:
        pytest.skip("no request with '//' in its base64 form found")
    for encode in (False, True):
        r = await pki.get(der, encode=encode)
        assert r.status_code == 200, r.content
        assert x509_ocsp.load_der_ocsp_response(r.content).serial_number == serial


async def test_unknown_status_from_the_builder_verifies(pki: Pki) -> None:
    cert = await pki.leaf()
    req = pki.request(cert)
    body = ocsp.build_response(
        issuer=ocsp.OcspIssuer(pki.issuer_id, pki.ca, pki.ca_key),
        req=ocsp.parse_request(req),
        state=ocsp.CertState.UNKNOWN,
        now=dt.datetime.now(dt.UTC),
        validity_seconds=0,
    )
    out = pki.check(req, body)
    assert "Response verify OK" in out and "Cert Status: unknown" in out and "Next Update" not in out


async def test_foreign_issuer_is_unknown_and_missing_ocsp_usage_unauthorized(pki: Pki) -> None:
    other_key = ec.generate_private_key(ec.SECP256R1())
    other = make_cert("ocsp root", other_key, ca=True)  # same name, different key
    foreign = make_cert("leaf", ec.generate_private_key(ec.SECP256R1()), other, other_key)
    request = pki.request(foreign, ca=other)
    code, body = await pki.post(request)
    # Vault's answer: "unknown", signed by the mount's default issuer (trusted here as the responder)
    assert code == 200 and status_of(body) == x509_ocsp.OCSPResponseStatus.SUCCESSFUL
    assert x509_ocsp.load_der_ocsp_response(body).certificate_status == x509_ocsp.OCSPCertStatus.UNKNOWN
    # the responder is not that CA, so a client has to trust it explicitly (-VAfile)
    (pki.tmp / "foreign-resp.der").write_bytes(body)
    (pki.tmp / "responder.pem").write_bytes(pki.ca.public_bytes(serialization.Encoding.PEM))
    done = subprocess.run(
        [
            "openssl",
            "ocsp",
            "-respin",
            str(pki.tmp / "foreign-resp.der"),
            "-VAfile",
            str(pki.tmp / "responder.pem"),
            "-resp_text",
        ],
        capture_output=True,
        text=True,
    )
    out = done.stdout + done.stderr
    assert "Response verify OK" in out and "Cert Status: unknown" in out, out
    entry = await store.fetch_issuer(pki.storage, pki.issuer_id)
    assert entry is not None
    entry.usage = ["read-only", "issuing-certificates", "crl-signing"]
    await store.write_issuer(pki.storage, entry)
    code, body = await pki.post(pki.request(await pki.leaf()))
    assert code == 401 and status_of(body) == x509_ocsp.OCSPResponseStatus.UNAUTHORIZED


async def test_ocsp_disable_answers_unauthorized(pki: Pki) -> None:
    await pki.h.call("POST", "pki/config/crl", json={"ocsp_disable": True})
    r = await pki.get(pki.request(await pki.leaf()))
    assert r.status_code == 401 and status_of(r.content) == x509_ocsp.OCSPResponseStatus.UNAUTHORIZED


async def test_malformed_requests_get_malformed_request_never_5xx(pki: Pki) -> None:
    for tail in ("not-base64!!", "AAAA", quote(base64.b64encode(b"\x30\x03\x02\x01\x01").decode(), safe="")):
        r = await pki.h.client.get("/v1/pki/ocsp/" + tail)
        assert r.status_code == 400, tail
        assert status_of(r.content) == x509_ocsp.OCSPResponseStatus.MALFORMED_REQUEST
    code, body = await pki.post(b"\x00garbage")
    assert code == 400 and status_of(body) == x509_ocsp.OCSPResponseStatus.MALFORMED_REQUEST
    code, body = await pki.post(b"")
    assert code == 400
    code, _ = await pki.post(b"\x30" + b"\x82\xff\xff" + b"\x00" * 5000)  # oversized
    assert code == 400


async def test_nonce_size_limits(pki: Pki) -> None:
    name_hash, key_hash = ocsp.issuer_hashes(pki.ca, hashes.SHA1())

    def with_nonce(nonce: bytes) -> bytes:
        return (
            x509_ocsp.OCSPRequestBuilder()
            .add_certificate_by_hash(name_hash, key_hash, 12345, hashes.SHA1())
            .add_extension(x509.OCSPNonce(nonce), critical=False)
            .build()
            .public_bytes(serialization.Encoding.DER)
        )

    code, body = await pki.post(with_nonce(b"n" * 32))
    assert code == 200
    echoed = x509_ocsp.load_der_ocsp_response(body).extensions.get_extension_for_class(x509.OCSPNonce)
    assert echoed.value.nonce == b"n" * 32
    code, body = await pki.post(with_nonce(b"n" * 33))  # RFC 8954: more than 32 octets is refused
    assert code == 400 and status_of(body) == x509_ocsp.OCSPResponseStatus.MALFORMED_REQUEST
    code, body = await pki.post(with_nonce(b"n" * 1000))  # never a crash on a huge nonce
    assert code == 400


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(blob=st.binary(max_size=300))
def test_fuzzed_bodies_never_raise(blob: bytes) -> None:
    try:
        parsed = ocsp.parse_request(blob)
    except ocsp.OcspMalformed:
        return
    assert parsed.serial >= 0
    try:
        ocsp.decode_get_segment(base64.b64encode(blob).decode())
    except ocsp.OcspMalformed:
        pass


async def test_fuzzed_get_requests_never_5xx(pki: Pki) -> None:
    import random

    rng = random.Random(7)
    good = pki.request(await pki.leaf())
    for _ in range(150):
        blob = bytearray(good)
        for _ in range(rng.randint(1, 6)):
            blob[rng.randrange(len(blob))] = rng.randrange(256)
        r = await pki.get(bytes(blob))
        assert r.status_code in (200, 400, 401), r.status_code
        assert r.headers["content-type"] == "application/ocsp-response"


async def test_config_changes_reach_the_responder_at_once(pki: Pki) -> None:
    request = pki.request(await pki.leaf())
    code, body = await pki.post(request)
    assert code == 200
    first = x509_ocsp.load_der_ocsp_response(body)
    assert first.next_update_utc - first.this_update_utc == dt.timedelta(hours=12)  # cached from here on
    before = pki.h.core.engine_generation()
    r = await pki.h.call("POST", "pki/config/crl", json={"ocsp_expiry": "1h"})
    assert r.status_code == 200
    assert pki.h.core.engine_generation() > before  # what makes every worker re-read it
    code, body = await pki.post(request)
    second = x509_ocsp.load_der_ocsp_response(body)
    assert code == 200 and second.next_update_utc - second.this_update_utc == dt.timedelta(hours=1)
    await pki.h.call("POST", "pki/config/crl", json={"ocsp_disable": True})
    code, body = await pki.post(request)
    assert code == 401 and status_of(body) == x509_ocsp.OCSPResponseStatus.UNAUTHORIZED
    await pki.h.call("POST", "pki/config/crl", json={"ocsp_disable": False})
    code, _ = await pki.post(request)
    assert code == 200
