"""pki revocation: revoke / revoke-with-key, listings with paging, tidy safety, lease revocation.

CAs and leaves are made with ``cryptography`` and installed through ``store.py``
(the contract P3 codes against), so these tests do not depend on the issuance
paths; only the revocation paths are exercised through the HTTP app.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import importlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from strongroom.core.mounts import MountEntry
from strongroom.engines.pki import backend as pki_backend
from strongroom.engines.pki import paths_tidy, revocation, store
from strongroom.logical.request import Operation, Request, SecretInfo
from strongroom.testing import Harness, running_core

NOW = dt.datetime.now(dt.UTC)


def _importable(name: str) -> bool:
    try:
        importlib.import_module(name)
    except Exception:
        return False
    return True


def make_ca(cn: str = "root", key: Any = None) -> tuple[x509.Certificate, Any]:
    key = key or ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(days=1))
        .not_valid_after(NOW + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def make_leaf(
    ca: x509.Certificate,
    ca_key: Any,
    cn: str = "leaf.example.com",
    hours: float = 1.0,
    serial: int | None = None,
) -> tuple[x509.Certificate, Any]:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(serial or x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(hours=2))
        .not_valid_after(NOW + dt.timedelta(hours=hours))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(cn)]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def pem(obj: Any) -> str:
    if isinstance(obj, x509.Certificate):
        return obj.public_bytes(serialization.Encoding.PEM).decode()
    return obj.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


@dataclass
class Pki:
    h: Harness
    backend: Any
    storage: Any
    ca: x509.Certificate
    ca_key: Any
    issuer_id: str

    async def leaf(
        self, hours: float = 1.0, store_it: bool = True, cn: str = "leaf.example.com"
    ) -> x509.Certificate:
        cert, _ = make_leaf(self.ca, self.ca_key, cn=cn, hours=hours)
        if store_it:
            await store.store_certificate(self.storage, cert, self.issuer_id)
        return cert

    async def call(self, method: str, path: str, **kw: Any) -> Any:
        return await self.h.call(method, "pki/" + path, **kw)


@pytest.fixture
async def pki(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Pki]:
    # only the path modules that import today: P1/P2 work lands in parallel
    usable = tuple(m for m in pki_backend.PATH_MODULES if _importable(m))
    monkeypatch.setattr(pki_backend, "PATH_MODULES", usable)
    async with running_core() as h:
        await h.core.enable_mount(MountEntry("pki/", "pki"))
        route = h.core.router.get("pki/")
        assert route is not None
        ca, ca_key = make_ca()
        await store.import_key(route.storage, ca_key)
        entry, _ = await store.import_issuer(route.storage, ca)
        yield Pki(h, route.backend, route.storage, ca, ca_key, entry.id)
        await revocation.manager_for(route.backend).stop()


def serial_of(cert: x509.Certificate) -> str:
    return store.serial_to_str(cert.serial_number)


# -- revoke ----------------------------------------------------------------------------------


async def test_revoke_by_serial_and_again_returns_original_time(pki: Pki) -> None:
    cert = await pki.leaf()
    serial = serial_of(cert)
    r = await pki.call("POST", "revoke", json={"serial_number": serial.replace(":", "-").upper()})
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert data["state"] == "revoked" and isinstance(data["revocation_time"], int)
    assert data["revocation_time_rfc3339"].endswith("Z")
    again = await pki.call("POST", "revoke", json={"serial_number": serial})
    assert again.json()["data"] == data
    listed = await pki.call("LIST", "certs/revoked")
    assert listed.json()["data"]["keys"] == [serial]


async def test_revoke_errors_use_vault_texts(pki: Pki) -> None:
    r = await pki.call("POST", "revoke", json={})
    assert r.status_code == 400
    assert r.json()["errors"] == ["The serial number or certificate to revoke must be provided."]
    cert = await pki.leaf()
    r = await pki.call("POST", "revoke", json={"serial_number": serial_of(cert), "certificate": pem(cert)})
    assert r.json()["errors"] == ["Must provide either the certificate or the serial to revoke; not both."]
    r = await pki.call("POST", "revoke", json={"serial_number": "aa:bb:cc"})
    assert r.status_code == 400 and r.json()["errors"] == ["certificate with serial aa:bb:cc not found."]
    r = await pki.call("POST", "revoke", json={"certificate": "/tmp/cert.pem"})
    assert r.status_code == 400 and "too short" in r.json()["errors"][0]
    r = await pki.call("POST", "revoke", json={"serial_number": serial_of(pki.ca)})
    assert r.status_code == 400  # issuers are not stored under certs/ here; either way never revoked


async def test_revoking_an_issuer_serial_is_refused(pki: Pki) -> None:
    r = await pki.call("POST", "revoke", json={"certificate": pem(pki.ca)})
    assert r.status_code == 400
    assert r.json()["errors"] == [f"adding issuer (id: {pki.issuer_id}) to its own CRL is not allowed"]


async def test_revoke_by_pem_of_a_cert_that_was_never_stored(pki: Pki) -> None:
    cert = await pki.leaf(store_it=False)
    serial = serial_of(cert)
    assert await store.load_certificate(pki.storage, serial) is None
    r = await pki.call("POST", "revoke", json={"certificate": pem(cert)})
    assert r.status_code == 200 and r.json()["data"]["state"] == "revoked"
    assert await store.load_certificate(pki.storage, serial) is not None  # kept, as Vault does
    crl = x509.load_der_x509_crl((await pki.call("GET", "crl")).content)
    assert crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None


async def test_revoke_cert_from_a_foreign_ca_is_400(pki: Pki) -> None:
    other, other_key = make_ca("someone else")
    cert, _ = make_leaf(other, other_key)
    r = await pki.call("POST", "revoke", json={"certificate": pem(cert)})
    assert r.status_code == 400
    assert r.json()["errors"][0].startswith(
        "unable to verify signature on presented cert from any present issuer"
    )
    # same subject as our CA but a different key: still foreign
    twin, twin_key = make_ca("root")
    cert, _ = make_leaf(twin, twin_key)
    assert (await pki.call("POST", "revoke", json={"certificate": pem(cert)})).status_code == 400
    assert (await pki.call("LIST", "certs/revoked")).status_code == 404


async def test_revoke_with_a_stored_serial_but_different_bytes_is_refused(pki: Pki) -> None:
    stored = await pki.leaf()
    forged, _ = make_leaf(pki.ca, pki.ca_key, cn="other", serial=stored.serial_number)
    r = await pki.call("POST", "revoke", json={"certificate": pem(forged)})
    assert r.status_code == 400 and "unequal value" in r.json()["errors"][0]


async def test_revoking_an_expired_cert_warns_and_adds_nothing(pki: Pki) -> None:
    cert = await pki.leaf(hours=-1)
    r = await pki.call("POST", "revoke", json={"serial_number": serial_of(cert)})
    assert r.status_code == 200
    assert r.json()["warnings"] == [
        f"certificate with serial {serial_of(cert)} already expired; refusing to add to CRL"
    ]
    assert r.json()["data"] is None
    assert (await pki.call("LIST", "certs/revoked")).status_code == 404


async def test_revoke_with_key_proves_possession(pki: Pki) -> None:
    cert, key = make_leaf(pki.ca, pki.ca_key)
    await store.store_certificate(pki.storage, cert, pki.issuer_id)
    serial = serial_of(cert)
    r = await pki.call("POST", "revoke-with-key", json={"serial_number": serial})
    assert r.json()["errors"] == ["Must have private key to revoke via the /revoke-with-key path."]
    wrong = ec.generate_private_key(ec.SECP256R1())
    r = await pki.call("POST", "revoke-with-key", json={"serial_number": serial, "private_key": pem(wrong)})
    assert r.status_code == 400
    assert r.json()["errors"] == ["provided private key does not match certificate's public key"]
    from cryptography.hazmat.primitives.asymmetric import ed25519

    r = await pki.call(
        "POST",
        "revoke-with-key",
        json={"serial_number": serial, "private_key": pem(ed25519.Ed25519PrivateKey.generate())},
    )
    assert r.json()["errors"] == ["provided private key type does not match certificate's public key type"]
    assert (await pki.call("LIST", "certs/revoked")).status_code == 404
    r = await pki.call("POST", "revoke-with-key", json={"serial_number": serial, "private_key": pem(key)})
    assert r.status_code == 200 and r.json()["data"]["state"] == "revoked"
    # a PEM that was never stored is not written when the key proof fails
    fresh, _ = make_leaf(pki.ca, pki.ca_key)
    r = await pki.call("POST", "revoke-with-key", json={"certificate": pem(fresh), "private_key": pem(wrong)})
    assert r.status_code == 400 and await store.load_certificate(pki.storage, serial_of(fresh)) is None


async def test_revoke_needs_a_token_but_crl_does_not(pki: Pki) -> None:
    cert = await pki.leaf()
    r = await pki.h.client.post("/v1/pki/revoke", json={"serial_number": serial_of(cert)})
    assert r.status_code == 403
    r = await pki.h.client.get("/v1/pki/crl")
    assert r.status_code == 200 and r.headers["content-type"] == "application/pkix-crl"


# -- listings ----------------------------------------------------------------------------------


async def test_listings_page_with_after_and_limit(pki: Pki) -> None:
    certs = [await pki.leaf(cn=f"host{i}.example.com") for i in range(7)]
    serials = sorted(serial_of(c) for c in certs)
    r = await pki.call("LIST", "certs")
    assert r.json()["data"]["keys"] == serials
    page1 = (await pki.call("LIST", "certs?limit=3")).json()["data"]["keys"]
    page2 = (await pki.call("LIST", f"certs?limit=3&after={page1[-1]}")).json()["data"]["keys"]
    page3 = (await pki.call("LIST", f"certs?limit=3&after={page2[-1]}")).json()["data"]["keys"]
    assert page1 + page2 + page3 == serials and len(page3) == 1
    for serial in serials[:4]:
        assert (await pki.call("POST", "revoke", json={"serial_number": serial})).status_code == 200
    revoked = (await pki.call("LIST", "certs/revoked?limit=2")).json()["data"]["keys"]
    assert revoked == serials[:2]
    rest = (await pki.call("LIST", f"certs/revoked?after={revoked[-1]}")).json()["data"]["keys"]
    assert rest == serials[2:4]
    detailed = (await pki.call("LIST", f"certs/detailed?limit=2&after={serials[2]}")).json()["data"]
    assert detailed["keys"] == serials[3:5]
    first, second = (detailed["key_info"][s] for s in serials[3:5])
    assert first["revoked"] is True and second["revoked"] is False
    assert first["issuer_id"] == pki.issuer_id and first["common_name"].startswith("host")
    assert first["sans"] == [first["common_name"]] and isinstance(first["not_after"], int)
    assert (await pki.call("LIST", f"certs?after={serials[-1]}")).status_code == 404


# -- tidy ----------------------------------------------------------------------------------------


async def _tidy(pki: Pki, **params: Any) -> dict[str, Any]:
    r = await pki.call("POST", "tidy", json=params)
    assert r.status_code == 202, r.text
    for _ in range(200):
        status = (await pki.call("GET", "tidy-status")).json()["data"]
        if status["state"] != "Running":
            return dict(status)
        await asyncio.sleep(0.01)
    raise AssertionError("tidy did not finish")


async def test_tidy_never_drops_a_revoked_unexpired_cert(pki: Pki) -> None:
    """CVE-2021-29653: revoke a 1 h cert, tidy with the smallest buffer: still revoked everywhere."""
    cert = await pki.leaf(hours=1)
    serial = serial_of(cert)
    await pki.call("POST", "revoke", json={"serial_number": serial})
    status = await _tidy(pki, tidy_revoked_certs=True, tidy_cert_store=True, safety_buffer="1s")
    assert status["state"] == "Finished" and status["revoked_cert_deleted_count"] == 0
    assert (await pki.call("LIST", "certs/revoked")).json()["data"]["keys"] == [serial]
    assert (await pki.call("LIST", "certs")).json()["data"]["keys"] == [serial]
    await pki.call("GET", "crl/rotate")
    crl = x509.load_der_x509_crl((await pki.call("GET", "crl")).content)
    assert crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None


async def test_tidy_removes_entries_expired_beyond_the_buffer(
    pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    cert = await pki.leaf(hours=1)
    keep = await pki.leaf(hours=24 * 30)
    for c in (cert, keep):
        await pki.call("POST", "revoke", json={"serial_number": serial_of(c)})
    real_now = revocation.now
    monkeypatch.setattr(revocation, "now", lambda: real_now() + 3 * 86400)  # 3 days later
    status = await _tidy(pki, tidy_revoked_certs=True, tidy_cert_store=True, safety_buffer="24h")
    assert status["revoked_cert_deleted_count"] == 1 and status["safety_buffer"] == 86400
    assert (await pki.call("LIST", "certs/revoked")).json()["data"]["keys"] == [serial_of(keep)]
    crl = x509.load_der_x509_crl((await pki.call("GET", "crl")).content)
    assert [r.serial_number for r in crl] == [keep.serial_number]


async def test_tidy_validation_status_cancel_and_auto_tidy_config(pki: Pki) -> None:
    r = await pki.call("POST", "tidy", json={"safety_buffer": 0, "tidy_cert_store": True})
    assert r.status_code == 400 and r.json()["errors"] == ["safety_buffer must be greater than zero"]
    r = await pki.call("POST", "tidy", json={"tidy_cert_store": True, "pause_duration": "-1s"})
    assert r.status_code == 400
    status = (await pki.call("GET", "tidy-status")).json()["data"]
    assert status["state"] == "Inactive" and status["tidy_cert_store"] is None
    r = await pki.call("POST", "tidy-cancel")
    assert r.json()["warnings"] == ["Tidy operation cannot be cancelled as none is currently running."]
    r = await pki.call("POST", "tidy", json={})
    assert r.status_code == 202 and "no tidy operations were set" in r.json()["warnings"][0]
    task = paths_tidy.tidier_for(pki.backend).task
    assert task is not None
    await task
    for _ in range(3):
        await pki.leaf()
    r = await pki.call("POST", "tidy", json={"tidy_cert_store": True, "pause_duration": "200ms"})
    assert r.status_code == 202
    r = await pki.call("POST", "tidy-cancel")
    assert r.status_code == 200 and r.json()["data"]["state"] == "Cancelling"
    for _ in range(200):
        status = (await pki.call("GET", "tidy-status")).json()["data"]
        if status["state"] != "Cancelling":
            break
        await asyncio.sleep(0.02)
    assert status["state"] == "Cancelled" and status["pause_duration"] == "200ms"
    auto = (await pki.call("GET", "config/auto-tidy")).json()["data"]
    assert auto["enabled"] is False and auto["interval_duration"] == 43200 and auto["safety_buffer"] == 259200
    assert auto["pause_duration"] == "0s"
    r = await pki.call("POST", "config/auto-tidy", json={"enabled": True})
    assert r.status_code == 400 and "no tidy operations were requested" in r.json()["errors"][0]
    r = await pki.call(
        "POST",
        "config/auto-tidy",
        json={"enabled": True, "tidy_revoked_certs": True, "interval_duration": "1h"},
    )
    assert r.status_code == 200 and r.json()["data"]["interval_duration"] == 3600
    # the periodic hook runs a tidy once the interval has passed since enabling
    manager = revocation.manager_for(pki.backend)
    await manager.tick()
    assert (
        paths_tidy.tidier_for(pki.backend).status.config is None
        or not paths_tidy.tidier_for(pki.backend).running()
    )
    real_now = revocation.now
    revocation.now = lambda: real_now() + 7200  # type: ignore[assignment]
    try:
        await manager.tick()
        tidier = paths_tidy.tidier_for(pki.backend)
        assert tidier.status.config is not None and tidier.status.config.flags["tidy_revoked_certs"]
        assert tidier.task is not None
        await tidier.task
    finally:
        revocation.now = real_now  # type: ignore[assignment]


# -- leases ----------------------------------------------------------------------------------------


async def test_lease_revocation_revokes_the_certificate(pki: Pki) -> None:
    cert = await pki.leaf()
    handler = revocation.revoke_lease_handler(pki.backend)
    req = Request(
        operation=Operation.REVOKE,
        path="issue/web",
        storage=pki.storage,
        secret=SecretInfo(internal_data={"serial_number": serial_of(cert)}),
    )
    from strongroom.framework import FieldData

    resp = await handler(req, FieldData({}, {}))
    assert resp is not None and resp.data is not None and resp.data["state"] == "revoked"
    assert await revocation.load_revoked(pki.storage, serial_of(cert)) is not None
    # a second revoke (lease retried) and a tidied certificate are both fine
    assert (await revocation.revoke_lease(pki.backend, req)) is not None
    req.secret = SecretInfo(internal_data={"serial_number": "01:02:03"})
    assert await revocation.revoke_lease(pki.backend, req) is None


# -- end to end through the engine's own issuance -----------------------------------------------


async def test_end_to_end_with_engine_issuance_and_lease_revocation() -> None:
    async with running_core() as h:
        await h.core.enable_mount(MountEntry("pki/", "pki"))
        route = h.core.router.get("pki/")
        assert route is not None
        if not route.backend.route_exists("issue/web") or not route.backend.route_exists(
            "root/generate/internal"
        ):
            pytest.skip("issuance paths (P1/P2) not available")
        r = await h.call(
            "POST", "pki/root/generate/internal", json={"common_name": "E2E Root", "ttl": "8760h"}
        )
        assert r.status_code == 200, r.text
        ca = x509.load_pem_x509_certificate(r.json()["data"]["certificate"].encode())
        r = await h.call(
            "POST", "pki/roles/web", json={"allow_any_name": True, "ttl": "1h", "generate_lease": True}
        )
        assert r.status_code in (200, 204), r.text
        r = await h.call("POST", "pki/issue/web", json={"common_name": "a.example.com"})
        assert r.status_code == 200, r.text
        leased = r.json()
        serial = leased["data"]["serial_number"]
        assert (await h.call("LIST", "pki/certs")).json()["data"]["keys"].count(serial) == 1
        # revoke by serial through the API: CRL and OCSP agree
        r = await h.call("POST", "pki/issue/web", json={"common_name": "b.example.com"})
        other = r.json()["data"]["serial_number"]
        assert (await h.call("POST", "pki/revoke", json={"serial_number": other})).status_code == 200
        crl = x509.load_der_x509_crl((await h.client.get("/v1/pki/crl")).content)
        assert crl.is_signature_valid(ca.public_key())
        assert [e.serial_number for e in crl] == [int(other.replace(":", ""), 16)]
        routed = route.backend._route("issue/web")
        if routed is None or Operation.REVOKE not in routed[0].operations:
            pytest.skip("the issue paths do not declare the lease REVOKE handler yet (P2)")
        r = await h.call("PUT", "sys/leases/revoke", json={"lease_id": leased["lease_id"]})
        assert r.status_code == 204, r.text
        crl = x509.load_der_x509_crl((await h.client.get("/v1/pki/crl")).content)
        assert {e.serial_number for e in crl} == {int(s.replace(":", ""), 16) for s in (serial, other)}
        await revocation.manager_for(route.backend).stop()
