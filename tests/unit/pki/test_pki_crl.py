"""pki CRLs: openssl parses full and delta CRLs, numbers only go up, deltas carry the right base,
the fetch paths and config/crl behave as in Vault, and big CRLs are built in one pass."""

from __future__ import annotations

import datetime as dt
import importlib
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID, SignatureAlgorithmOID

from strongroom.core.mounts import MountEntry
from strongroom.engines.pki import backend as pki_backend
from strongroom.engines.pki import crl as crl_mod
from strongroom.engines.pki import revocation, store
from strongroom.logical.storage import put_json
from strongroom.testing import Harness, running_core

NOW = dt.datetime.now(dt.UTC)


def _importable(name: str) -> bool:
    try:
        importlib.import_module(name)
    except Exception:
        return False
    return True


def make_cert(
    cn: str,
    key: Any,
    issuer: x509.Certificate | None = None,
    issuer_key: Any = None,
    ca: bool = False,
    hours: float = 24,
) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(hours=1))
        .not_valid_after(NOW + dt.timedelta(hours=hours))
    )
    if ca:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        builder = builder.add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
        )
    return builder.sign(issuer_key or key, hashes.SHA256())


@dataclass
class Pki:
    h: Harness
    backend: Any
    storage: Any
    ca: x509.Certificate
    ca_key: Any
    issuer_id: str

    async def leaf(self, hours: float = 24) -> x509.Certificate:
        cert = make_cert("leaf", ec.generate_private_key(ec.SECP256R1()), self.ca, self.ca_key, hours=hours)
        await store.store_certificate(self.storage, cert, self.issuer_id)
        return cert

    async def revoke(self, cert: x509.Certificate) -> None:
        r = await self.call("POST", "revoke", json={"serial_number": store.serial_to_str(cert.serial_number)})
        assert r.status_code == 200, r.text

    async def call(self, method: str, path: str, **kw: Any) -> Any:
        return await self.h.call(method, "pki/" + path, **kw)

    async def crl(self, path: str = "crl") -> x509.CertificateRevocationList:
        r = await self.h.client.get("/v1/pki/" + path)  # no token: CRLs are public
        assert r.status_code == 200, r.text
        return x509.load_der_x509_crl(r.content)


@pytest.fixture
async def pki(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Pki]:
    usable = tuple(m for m in pki_backend.PATH_MODULES if _importable(m))
    monkeypatch.setattr(pki_backend, "PATH_MODULES", usable)
    async with running_core() as h:
        await h.core.enable_mount(MountEntry("pki/", "pki"))
        route = h.core.router.get("pki/")
        assert route is not None
        key = ec.generate_private_key(ec.SECP256R1())
        ca = make_cert("root", key, ca=True, hours=24 * 3650)
        await store.import_key(route.storage, key)
        entry, _ = await store.import_issuer(route.storage, ca)
        yield Pki(h, route.backend, route.storage, ca, key, entry.id)
        await revocation.manager_for(route.backend).stop()


def number(crl: x509.CertificateRevocationList) -> int:
    return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number


def openssl_text(tmp_path: Path, der: bytes, ca: x509.Certificate) -> str:
    crl_file, ca_file = tmp_path / "crl.der", tmp_path / "ca.pem"
    crl_file.write_bytes(der)
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    text = subprocess.run(
        ["openssl", "crl", "-inform", "DER", "-in", str(crl_file), "-noout", "-text"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    verify = subprocess.run(
        ["openssl", "crl", "-inform", "DER", "-in", str(crl_file), "-noout", "-CAfile", str(ca_file)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "verify OK" in verify.stdout + verify.stderr
    return text


async def test_openssl_parses_the_crl_and_lists_revoked_serials(pki: Pki, tmp_path: Path) -> None:
    certs = [await pki.leaf() for _ in range(3)]
    for cert in certs:
        await pki.revoke(cert)
    der = (await pki.h.client.get("/v1/pki/crl")).content
    text = openssl_text(tmp_path, der, pki.ca)
    assert "Version 2" in text and "X509v3 CRL Number" in text and "Authority Key Identifier" in text
    for cert in certs:
        digits = f"{cert.serial_number:X}"
        assert f"Serial Number: {digits.zfill(len(digits) + len(digits) % 2)}" in text
    crl = x509.load_der_x509_crl(der)
    assert crl.is_signature_valid(pki.ca.public_key())
    assert {r.serial_number for r in crl} == {c.serial_number for c in certs}
    assert crl.next_update_utc is not None and crl.last_update_utc is not None
    lifetime = crl.next_update_utc - crl.last_update_utc
    assert abs(lifetime.total_seconds() - 72 * 3600) < 5


async def test_fetch_forms_and_content_types(pki: Pki) -> None:
    cert = await pki.leaf()
    await pki.revoke(cert)
    der = (await pki.h.client.get("/v1/pki/crl")).content
    r = await pki.h.client.get("/v1/pki/crl/pem")
    assert r.headers["content-type"] == "application/x-pem-file"
    assert r.text.startswith("-----BEGIN X509 CRL-----") and r.text.endswith("\n")
    assert x509.load_pem_x509_crl(r.content).public_bytes(serialization.Encoding.DER) == der
    body = (await pki.h.client.get("/v1/pki/issuer/default/crl")).json()
    assert x509.load_pem_x509_crl(body["data"]["crl"].encode()) == x509.load_der_x509_crl(der)
    r = await pki.h.client.get(f"/v1/pki/issuer/{pki.issuer_id}/crl/der")
    assert r.headers["content-type"] == "application/pkix-crl" and r.content == der
    r = await pki.h.client.get(f"/v1/pki/issuer/{pki.issuer_id}/crl/pem")
    assert r.headers["content-type"] == "application/x-pem-file"
    body = (await pki.h.client.get("/v1/pki/cert/crl")).json()["data"]
    assert body["certificate"].startswith("-----BEGIN X509 CRL-----") and body["revocation_time"] == 0
    assert (await pki.h.client.get("/v1/pki/cert/crl/raw")).content == der
    assert (await pki.h.client.get("/v1/pki/issuer/nope/crl")).status_code == 400
    # delta CRLs are off by default: nothing to serve
    assert (await pki.h.client.get("/v1/pki/crl/delta")).status_code == 204


async def test_crl_numbers_strictly_increase_across_revokes_rotations_and_restart(pki: Pki) -> None:
    seen = [number(await pki.crl())]
    for i in range(30):
        await pki.revoke(await pki.leaf())
        if i % 3 == 0:
            assert (await pki.call("GET", "crl/rotate")).json()["data"] == {"success": True}
        seen.append(number(await pki.crl()))
    assert all(b > a for a, b in zip(seen, seen[1:], strict=False)), seen
    before = seen[-1]
    await pki.h.core.seal()  # a restart: the backend is rebuilt from storage
    for key in pki.h.keys:
        await pki.h.core.submit_unseal_key(key)
    assert number(await pki.crl()) == before  # the stored CRL survives as is
    await pki.call("GET", "crl/rotate")
    assert number(await pki.crl()) > before


async def test_delta_crl_has_only_new_entries_and_the_right_base(pki: Pki, tmp_path: Path) -> None:
    r = await pki.call("POST", "config/crl", json={"auto_rebuild": True, "enable_delta": True})
    assert r.status_code == 200, r.text
    assert r.json()["data"]["enable_delta"] is True
    first = await pki.leaf()
    await pki.revoke(first)
    await pki.call("GET", "crl/rotate")
    full = await pki.crl()
    assert [e.serial_number for e in full] == [first.serial_number]
    later = [await pki.leaf(), await pki.leaf()]
    for cert in later:
        await pki.revoke(cert)
    await revocation.manager_for(pki.backend).wait_idle()
    delta = await pki.crl("crl/delta")
    indicator = delta.extensions.get_extension_for_class(x509.DeltaCRLIndicator)
    assert indicator.critical and indicator.value.crl_number == number(full)
    assert number(delta) > number(full)
    assert {e.serial_number for e in delta} == {c.serial_number for c in later}
    assert [e.serial_number for e in await pki.crl()] == [first.serial_number]  # the base is untouched
    text = openssl_text(tmp_path, (await pki.h.client.get("/v1/pki/crl/delta")).content, pki.ca)
    assert "Delta CRL Indicator" in text
    r = await pki.h.client.get(f"/v1/pki/issuer/{pki.issuer_id}/crl/delta/pem")
    assert r.status_code == 200 and x509.load_pem_x509_crl(r.content) == delta
    # the next complete CRL takes everything; the new delta is empty and based on it
    await pki.call("GET", "crl/rotate")
    full2 = await pki.crl()
    assert {e.serial_number for e in full2} == {first.serial_number} | {c.serial_number for c in later}
    delta2 = await pki.crl("crl/delta")
    assert len(delta2) == 0
    assert delta2.extensions.get_extension_for_class(x509.DeltaCRLIndicator).value.crl_number == number(full2)
    assert number(delta2) > number(full2) > number(delta)
    r = await pki.call("GET", "crl/rotate-delta")
    assert r.status_code == 200 and r.json()["warnings"] is None


async def test_auto_rebuild_defers_to_the_background_and_fetch_rebuilds_when_dirty(
    pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert (await pki.call("POST", "config/crl", json={"auto_rebuild": True})).status_code == 200
    before = await pki.crl()
    manager = revocation.manager_for(pki.backend)
    scheduled: list[str] = []
    monkeypatch.setattr(manager, "schedule", scheduled.append)  # no background task: prove the lazy path
    cert = await pki.leaf()
    await pki.revoke(cert)
    assert scheduled == ["full"]
    assert await pki.storage.get(revocation.DIRTY_KEY) is not None
    stored = x509.load_der_x509_crl(await pki.storage.get(revocation.FULL_PREFIX + pki.issuer_id))
    assert stored.get_revoked_certificate_by_serial_number(cert.serial_number) is None  # not rebuilt inline
    after = await pki.crl()
    assert after.get_revoked_certificate_by_serial_number(cert.serial_number) is not None
    assert number(after) > number(before)
    assert await pki.storage.get(revocation.DIRTY_KEY) is None
    monkeypatch.undo()
    # with the real scheduler the background task does it without any fetch
    second = await pki.leaf()
    await pki.revoke(second)
    await revocation.manager_for(pki.backend).wait_idle()
    stored = x509.load_der_x509_crl(await pki.storage.get(revocation.FULL_PREFIX + pki.issuer_id))
    assert stored.get_revoked_certificate_by_serial_number(second.serial_number) is not None


async def test_disabled_crl_is_signed_empty_and_ocsp_keeps_working(pki: Pki) -> None:
    cert = await pki.leaf()
    await pki.revoke(cert)
    r = await pki.call("POST", "config/crl", json={"disable": True})
    assert r.status_code == 200 and r.json()["data"]["disable"] is True
    crl = await pki.crl()
    assert len(crl) == 0 and crl.is_signature_valid(pki.ca.public_key())
    await pki.revoke(await pki.leaf())
    assert len(await pki.crl()) == 0
    assert await revocation.load_revoked(pki.storage, store.serial_to_str(cert.serial_number)) is not None


async def test_config_crl_defaults_and_validation(pki: Pki) -> None:
    data = (await pki.call("GET", "config/crl")).json()["data"]
    assert data == {
        "expiry": "72h",
        "disable": False,
        "ocsp_disable": False,
        "ocsp_expiry": "12h",
        "auto_rebuild": False,
        "auto_rebuild_grace_period": "12h",
        "enable_delta": False,
        "delta_rebuild_interval": "15m",
    }
    r = await pki.call("POST", "config/crl", json={"enable_delta": True})
    assert r.status_code == 400
    assert r.json()["errors"] == [
        "Delta CRLs cannot be enabled when auto rebuilding is disabled as the complete CRL is always regenerated!"
    ]
    r = await pki.call("POST", "config/crl", json={"auto_rebuild": True, "auto_rebuild_grace_period": "80h"})
    assert r.status_code == 400 and "must be strictly shorter than CRL expiry (72h)" in r.json()["errors"][0]
    r = await pki.call("POST", "config/crl", json={"expiry": "soon"})
    assert r.status_code == 400 and r.json()["errors"][0].startswith("given expiry could not be decoded")
    r = await pki.call("POST", "config/crl", json={"expiry": "48h", "ocsp_expiry": "0"})
    assert r.status_code == 200 and r.json()["data"]["expiry"] == "48h"
    crl = await pki.crl()
    assert crl.next_update_utc is not None and crl.last_update_utc is not None
    await pki.call("GET", "crl/rotate")
    crl = await pki.crl()
    assert abs((crl.next_update_utc - crl.last_update_utc).total_seconds() - 48 * 3600) < 5  # type: ignore[operator]


async def test_rebuild_passes_every_entry_to_the_builder_at_once(
    pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    """3,000 stored revocations (over the off-loop threshold) reach build_crl as one list."""
    for i in range(3000):
        serial = store.serial_to_str(10**6 + i)
        record = revocation.RevokedRecord(
            serial, int(time.time()), "", pki.issuer_id, int(time.time()) + 3600
        )
        await put_json(pki.storage, revocation.REVOKED_PREFIX + serial, record.__dict__)
    calls: list[int] = []
    real = revocation.build_crl

    def spy(**kw: Any) -> bytes:
        calls.append(len(kw["entries"]))
        return real(**kw)

    monkeypatch.setattr(revocation, "build_crl", spy)
    monkeypatch.setattr(
        x509.CertificateRevocationListBuilder,
        "add_revoked_certificate",
        lambda *a, **k: pytest.fail("entries must not be added one by one"),
    )
    await pki.call("GET", "crl/rotate")
    assert calls == [3000]
    assert len(await pki.crl()) == 3000


def test_a_100k_entry_crl_builds_in_one_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        x509.CertificateRevocationListBuilder,
        "add_revoked_certificate",
        lambda *a, **k: pytest.fail("entries must not be added one by one (quadratic)"),
    )
    key = ec.generate_private_key(ec.SECP256R1())
    ca = make_cert("big", key, ca=True)
    entries = [crl_mod.RevokedEntry(i + 1, NOW) for i in range(100_000)]
    started = time.perf_counter()
    der = crl_mod.build_crl(
        issuer_cert=ca,
        issuer_key=key,
        entries=entries,
        crl_number=7,
        this_update=NOW,
        next_update=NOW + dt.timedelta(hours=72),
    )
    elapsed = time.perf_counter() - started
    crl = x509.load_der_x509_crl(der)
    assert len(crl) == 100_000 and crl.is_signature_valid(key.public_key())
    print(
        f"100k-entry CRL built and signed in {elapsed:.2f}s ({len(der)} bytes)"
    )  # loose: no timed assertion


def test_signature_algorithm_follows_key_and_revocation_signature_algorithm() -> None:
    rsa_key = rsa.generate_private_key(65537, 2048)
    ca = make_cert("rsa", rsa_key, ca=True)
    kw: dict[str, Any] = {
        "issuer_cert": ca,
        "issuer_key": rsa_key,
        "entries": [],
        "crl_number": 1,
        "this_update": NOW,
        "next_update": NOW + dt.timedelta(hours=1),
    }
    plain = x509.load_der_x509_crl(crl_mod.build_crl(**kw))
    assert plain.signature_algorithm_oid == SignatureAlgorithmOID.RSA_WITH_SHA256
    pss = x509.load_der_x509_crl(crl_mod.build_crl(**kw, revocation_sig_alg="SHA384WithRSAPSS"))
    assert pss.signature_algorithm_oid == SignatureAlgorithmOID.RSASSA_PSS and pss.is_signature_valid(
        rsa_key.public_key()
    )
    p384 = ec.generate_private_key(ec.SECP384R1())
    ec_crl = x509.load_der_x509_crl(
        crl_mod.build_crl(**{**kw, "issuer_cert": make_cert("p384", p384, ca=True), "issuer_key": p384})
    )
    assert ec_crl.signature_algorithm_oid == SignatureAlgorithmOID.ECDSA_WITH_SHA384
    with pytest.raises(ValueError):
        crl_mod.build_crl(**{**kw, "crl_number": 3, "delta_base": 3})


async def test_a_revoked_intermediate_lands_on_its_parents_crl(pki: Pki) -> None:
    int_key = ec.generate_private_key(ec.SECP256R1())
    inter = make_cert("intermediate", int_key, pki.ca, pki.ca_key, ca=True, hours=24 * 365)
    await store.import_key(pki.storage, int_key)
    entry, _ = await store.import_issuer(pki.storage, inter)
    entry.revoked = True
    entry.revocation_time = int(time.time())
    await store.write_issuer(pki.storage, entry)
    await pki.call("GET", "crl/rotate")
    root_crl = await pki.crl(f"issuer/{pki.issuer_id}/crl/der")
    assert root_crl.get_revoked_certificate_by_serial_number(inter.serial_number) is not None
    int_crl = await pki.crl(f"issuer/{entry.id}/crl/der")
    assert int_crl.issuer == inter.subject and len(int_crl) == 0


async def test_an_owed_rebuild_survives_a_restart(pki: Pki, monkeypatch: pytest.MonkeyPatch) -> None:
    """CVE-2022-41316's lesson: a revocation acknowledged before a restart is on the first CRL served after."""
    assert (await pki.call("POST", "config/crl", json={"auto_rebuild": True})).status_code == 200
    await pki.crl()
    manager = revocation.manager_for(pki.backend)
    monkeypatch.setattr(manager, "schedule", lambda kind: None)  # "crash" before the background rebuild
    cert = await pki.leaf()
    await pki.revoke(cert)
    await pki.h.core.seal()
    for key in pki.h.keys:
        await pki.h.core.submit_unseal_key(key)
    crl = await pki.crl()
    assert crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None


# -- the entry encoder against cryptography's own builder -------------------------------------


def _reference_crl(
    issuer: x509.Certificate, key: Any, entries: list[crl_mod.RevokedEntry], **kw: Any
) -> bytes:
    """What cryptography's builder makes of the same CRL (one object per entry)."""
    revoked = []
    for entry in entries:
        extensions = []
        if entry.reason is not None and entry.reason not in (
            x509.ReasonFlags.unspecified,
            x509.ReasonFlags.remove_from_crl,
        ):
            extensions.append(x509.Extension(x509.CRLReason.oid, False, x509.CRLReason(entry.reason)))
        revoked.append(
            x509.RevokedCertificateBuilder(
                serial_number=entry.serial, revocation_date=entry.revocation_time, extensions=extensions
            ).build()
        )
    extensions = [
        x509.Extension(
            x509.AuthorityKeyIdentifier.oid,
            False,
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.public_key()),  # type: ignore[arg-type]
        ),
        x509.Extension(x509.CRLNumber.oid, False, x509.CRLNumber(kw["crl_number"])),
    ]
    builder = x509.CertificateRevocationListBuilder(
        issuer_name=issuer.subject,
        last_update=kw["this_update"],
        next_update=kw["next_update"],
        extensions=extensions,
        revoked_certificates=revoked,
    )
    return builder.sign(key, None).public_bytes(serialization.Encoding.DER)


def test_encoded_entries_are_byte_for_byte_what_cryptography_writes() -> None:
    from cryptography.hazmat.primitives.asymmetric import ed25519

    key = ed25519.Ed25519PrivateKey.generate()  # deterministic signatures: whole CRLs compare equal
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Ed CA")])
    issuer = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(NOW - dt.timedelta(hours=1))
        .not_valid_after(NOW + dt.timedelta(days=1))
        .sign(key, None)
    )  # no SKI: the AKI comes from the key, as in the reference
    when = dt.datetime(2024, 2, 29, 23, 59, 59, 999999, tzinfo=dt.UTC)
    entries = [
        crl_mod.RevokedEntry(0x7F, when),
        crl_mod.RevokedEntry(0x80, when),  # high bit: a leading zero octet
        crl_mod.RevokedEntry(0xFF, dt.datetime(1950, 1, 1, tzinfo=dt.UTC)),
        crl_mod.RevokedEntry(2**159 - 1, dt.datetime(2049, 12, 31, 23, 59, 59, tzinfo=dt.UTC)),
        crl_mod.RevokedEntry(2**158 + 12345, dt.datetime(2050, 1, 1, tzinfo=dt.UTC)),  # GeneralizedTime
        crl_mod.RevokedEntry(77, dt.datetime(2031, 5, 6, 7, 8, 9)),  # naive: UTC
        crl_mod.RevokedEntry(78, when.astimezone(dt.timezone(dt.timedelta(hours=-5)))),
        *(crl_mod.RevokedEntry(1000 + i, when, reason) for i, reason in enumerate(x509.ReasonFlags)),
        *(crl_mod.RevokedEntry(x509.random_serial_number(), NOW) for _ in range(300)),  # long lengths
    ]
    kw: dict[str, Any] = {
        "crl_number": 9,
        "this_update": NOW.replace(microsecond=0),
        "next_update": NOW.replace(microsecond=0) + dt.timedelta(hours=72),
    }
    ours = crl_mod.build_crl(issuer_cert=issuer, issuer_key=key, entries=entries, **kw)
    assert ours == _reference_crl(issuer, key, entries, **kw)
    assert crl_mod.build_crl(issuer_cert=issuer, issuer_key=key, entries=[], **kw) == _reference_crl(
        issuer, key, [], **kw
    )


@pytest.mark.parametrize("kind", ["ec", "rsa", "rsa-pss"])
def test_encoded_entries_verify_with_every_key_type(kind: str) -> None:
    key: Any = (
        ec.generate_private_key(ec.SECP384R1()) if kind == "ec" else rsa.generate_private_key(65537, 2048)
    )
    issuer = make_cert("ca", key, ca=True)
    entries = [
        crl_mod.RevokedEntry(i, NOW) for i in (1, 2, 3, 2, 0, -5)
    ]  # duplicates and non-positive dropped
    der = crl_mod.build_crl(
        issuer_cert=issuer,
        issuer_key=key,
        entries=entries,
        crl_number=4,
        this_update=NOW,
        next_update=NOW + dt.timedelta(hours=1),
        revocation_sig_alg="SHA384WithRSAPSS" if kind == "rsa-pss" else "",
        freshest_crl_urls=["http://ca.test/delta"],
    )
    crl = x509.load_der_x509_crl(der)
    assert crl.is_signature_valid(key.public_key())
    assert [r.serial_number for r in crl] == [1, 2, 3]
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 4
    assert crl.extensions.get_extension_for_class(x509.FreshestCRL)
    if kind == "rsa-pss":
        assert crl.signature_algorithm_oid == SignatureAlgorithmOID.RSASSA_PSS


def test_stored_serials_encode_like_their_numbers() -> None:
    stored, numbers = crl_mod.EncodedEntries(), crl_mod.EncodedEntries()
    moment = int(NOW.timestamp())
    for serial in (1, 0x7F, 0x80, 0xFFFF, 2**159 - 1, x509.random_serial_number()):
        stored.add_stored(store.serial_to_str(serial), moment)
        numbers.add(crl_mod.RevokedEntry(serial, dt.datetime.fromtimestamp(moment, dt.UTC)))
    stored.add_stored("00", moment)  # serial 0: never listed
    stored.add_stored("00:00:2a", moment)  # leading zero octets do not change the number
    numbers.add(crl_mod.RevokedEntry(42, dt.datetime.fromtimestamp(moment, dt.UTC)))
    assert stored.der() == numbers.der() and len(stored) == 7
    with pytest.raises(ValueError):
        stored.add_stored("zz:01", moment)
