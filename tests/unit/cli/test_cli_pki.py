"""``strongroom pki`` against a fake server: the requests each command sends, the files it
writes (and refuses to overwrite), what it prints, and health-check's findings and exit codes.
The client is injected by replacing ``strongroom.cli.main.make_client``, as in test_cli.py."""

from __future__ import annotations

import datetime as dt
import json
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from click.testing import CliRunner, Result
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from strongroom.api.client import Client
from strongroom.cli import main
from strongroom.cli import pki as pki_cli

ADDR = "http://sr.test:8200"
ENV_NAMES = ("ADDR", "TOKEN", "CACERT", "CAPATH", "SKIP_VERIFY", "NAMESPACE", "FORMAT", "MAX_RETRIES")
NO_ROUTE = {"errors": ['no handler for route "nope/x". route entry not found.']}
DAY = 86400


@dataclass
class Call:
    method: str
    path: str
    params: dict[str, str]
    body: Any


class FakeServer:
    """Canned JSON answers per (method, path); unknown paths answer 404 with no errors."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], tuple[int, Any]] = {}
        self.calls: list[Call] = []

    def on(self, method: str, path: str, status: int = 200, body: Any = None) -> None:
        self.routes[(method, path)] = (status, body)

    def handler(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path.removeprefix("/v1/")
        body = json.loads(request.content) if request.content else None
        self.calls.append(Call(request.method, path, dict(request.url.params), body))
        status, payload = self.routes.get((request.method, path), (404, {"errors": []}))
        return httpx.Response(status) if payload is None else httpx.Response(status, json=payload)

    def paths(self) -> list[tuple[str, str]]:
        return [(c.method, c.path) for c in self.calls]


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


# --- certificates for the fake answers ------------------------------------------------------

NOW = dt.datetime.now(dt.UTC)
KEY = ec.generate_private_key(ec.SECP256R1())


def make_cert(
    cn: str, *, days_left: float = 365, issuer: x509.Certificate | None = None, serial: int = 0x1A2B
) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.subject if issuer else subject)
        .public_key(KEY.public_key())
        .serial_number(serial)
        .not_valid_before(NOW - dt.timedelta(days=400))
        .not_valid_after(NOW + dt.timedelta(days=days_left))
    )
    return builder.sign(KEY, hashes.SHA256())


def pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode().strip()


def make_crl(issuer: x509.Certificate, *, age: float, validity: float) -> str:
    """A CRL built ``age`` seconds ago, valid for ``validity`` seconds from then."""
    this = NOW - dt.timedelta(seconds=age)
    crl = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.subject)
        .last_update(this)
        .next_update(this + dt.timedelta(seconds=validity))
        .sign(KEY, hashes.SHA256())
    )
    return crl.public_bytes(serialization.Encoding.PEM).decode()


ROOT = make_cert("Root CA", days_left=3650)
LEAF = make_cert("www.example.com", days_left=3, issuer=ROOT, serial=0x36A641)
ISSUE_RESPONSE = {
    "request_id": "r1",
    "lease_id": "",
    "lease_duration": 0,
    "renewable": False,
    "data": {
        "certificate": pem(LEAF),
        "issuing_ca": pem(ROOT),
        "ca_chain": [pem(ROOT)],
        "private_key": "-----BEGIN EC PRIVATE KEY-----\nc2VjcmV0\n-----END EC PRIVATE KEY-----",
        "private_key_type": "ec",
        "serial_number": "36:a6:41",
        "expiration": 1800000000,
    },
    "warnings": None,
}


# --- issue ----------------------------------------------------------------------------------


def test_issue_writes_certificate_chain_and_private_key(fake: FakeServer, tmp_path: Path) -> None:
    fake.on("POST", "pki/issue/web", body=ISSUE_RESPONSE)
    out_dir = tmp_path / "certs"
    result = run(
        "pki",
        "issue",
        "pki/web",
        "-common-name=www.example.com",
        "-alt-names=api.example.com,web.example.com",
        "-ip-sans",
        "10.0.0.1",
        "-ttl=24h",
        f"-out-dir={out_dir}",
    )
    assert result.exit_code == 0, result.output
    assert fake.calls[0].body == {
        "common_name": "www.example.com",
        "format": "pem",
        "alt_names": "api.example.com,web.example.com",
        "ip_sans": "10.0.0.1",
        "ttl": "24h",
    }
    crt, chain, key = (out_dir / f"www.example.com.{ext}" for ext in ("crt", "chain.pem", "key"))
    assert crt.read_text() == pem(LEAF) + "\n"
    assert chain.read_text() == pem(ROOT) + "\n"
    assert key.read_text() == ISSUE_RESPONSE["data"]["private_key"] + "\n"  # type: ignore[index]
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(crt.stat().st_mode) == 0o644
    assert stat.S_IMODE(out_dir.stat().st_mode) == 0o700  # created for the key
    assert "Success! Issued certificate 36:a6:41" in result.stdout
    assert "expiration       2027-01-15T08:00:00Z" in result.stdout
    assert str(key) in result.stdout
    assert "c2VjcmV0" not in result.output  # the key itself is never printed


def test_issue_refuses_to_overwrite_before_asking_the_server(fake: FakeServer, tmp_path: Path) -> None:
    fake.on("POST", "pki/issue/web", body=ISSUE_RESPONSE)
    key = tmp_path / "www.example.com.key"
    key.write_text("old key")
    key.chmod(0o644)
    result = run("pki", "issue", "pki/web", "-common-name", "www.example.com", "-out-dir", str(tmp_path))
    assert result.exit_code == 1
    assert f"Refusing to overwrite {key}" in result.stderr
    assert fake.calls == []  # no certificate was issued for nothing
    assert key.read_text() == "old key"

    result = run("pki", "issue", "pki/web", "-common-name=www.example.com", f"-out-dir={tmp_path}", "-force")
    assert result.exit_code == 0, result.output
    assert "c2VjcmV0" in key.read_text()
    assert stat.S_IMODE(key.stat().st_mode) == 0o600  # replaced, not rewritten in place
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp files left


def test_issue_names_files_after_a_safe_form_of_the_cn(fake: FakeServer, tmp_path: Path) -> None:
    fake.on("POST", "pki/issue/web", body=ISSUE_RESPONSE)
    assert run("pki", "issue", "pki/web", "-common-name=*.example.com", f"-out-dir={tmp_path}").exit_code == 0
    assert (tmp_path / "wildcard.example.com.key").exists()
    assert run("pki", "issue", "pki/web", "-common-name=../x", f"-out-dir={tmp_path}").exit_code == 0
    assert (tmp_path / "x.crt").exists()
    result = run(
        "pki", "issue", "pki/web", "-common-name=a.example.com", "-name=front", f"-out-dir={tmp_path}"
    )
    assert result.exit_code == 0
    assert sorted(p.name for p in tmp_path.glob("front.*")) == ["front.chain.pem", "front.crt", "front.key"]


def test_issue_without_a_place_for_the_key_issues_nothing(fake: FakeServer) -> None:
    result = run("pki", "issue", "pki/web", "-common-name=www.example.com")
    assert result.exit_code == 1
    assert "-out-dir" in result.stderr and "-show-key" in result.stderr
    assert fake.calls == []


def test_issue_json_omits_the_key_unless_asked(fake: FakeServer, tmp_path: Path) -> None:
    fake.on("POST", "pki/issue/web", body=ISSUE_RESPONSE)
    result = run(
        "pki", "issue", "pki/web", "-common-name=www.example.com", f"-out-dir={tmp_path}", "-format=json"
    )
    assert result.exit_code == 0
    shown = json.loads(result.stdout)
    assert "private_key" not in shown["data"]
    assert shown["data"]["serial_number"] == "36:a6:41"
    assert (tmp_path / "www.example.com.key").exists()

    result = run("pki", "issue", "pki/web", "-common-name=www.example.com", "-show-key", "-format=yaml")
    assert yaml.safe_load(result.stdout)["data"]["private_key"].startswith("-----BEGIN EC PRIVATE KEY")


def test_issue_pem_output(fake: FakeServer) -> None:
    fake.on("POST", "pki/issue/web", body=ISSUE_RESPONSE)
    result = run("pki", "issue", "pki/web", "-common-name=www.example.com", "-show-key", "-format=pem")
    assert result.exit_code == 0
    assert result.stdout == f"{pem(LEAF)}\n{pem(ROOT)}\n{ISSUE_RESPONSE['data']['private_key']}\n"  # type: ignore[index]
    assert run("pki", "issue", "pki/web", "-common-name=x", "-show-key", "-format=xml").exit_code == 1


def test_issue_errors_are_readable(fake: FakeServer, tmp_path: Path) -> None:
    fake.on("POST", "pki/issue/nope", 400, {"errors": ["unknown role: nope"]})
    result = run("pki", "issue", "pki/nope", "-common-name=a.example.com", f"-out-dir={tmp_path}")
    assert result.exit_code == 2
    assert result.stderr.startswith(
        "Error issuing a certificate from pki/issue/nope: Error making API request."
    )
    assert "* unknown role: nope" in result.stderr

    fake.on("POST", "nope/issue/web", 404, NO_ROUTE)
    result = run("pki", "issue", "nope/web", "-common-name=a.example.com", f"-out-dir={tmp_path}")
    assert result.exit_code == 2
    assert "nothing is mounted at nope/" in result.stderr

    result = run("pki", "issue", "web", "-common-name=a.example.com", f"-out-dir={tmp_path}")
    assert result.exit_code == 1
    assert "expected MOUNT/ROLE" in result.stderr
    assert run("pki", "issue", "pki/web", f"-out-dir={tmp_path}").exit_code == 1  # no -common-name


def test_issue_with_a_nested_mount(fake: FakeServer, tmp_path: Path) -> None:
    fake.on("POST", "team/pki/issue/web", body=ISSUE_RESPONSE)
    assert run("pki", "issue", "team/pki/web", "-common-name=a.b", f"-out-dir={tmp_path}").exit_code == 0
    assert fake.paths() == [("POST", "team/pki/issue/web")]


# --- sign -----------------------------------------------------------------------------------


def make_csr(cn: str = "svc.example.com") -> str:
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .sign(KEY, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM).decode()


SIGN_RESPONSE = {"data": {k: v for k, v in ISSUE_RESPONSE["data"].items() if "private" not in k}}  # type: ignore[attr-defined]


def test_sign_sends_the_csr_and_writes_the_certificate(fake: FakeServer, tmp_path: Path) -> None:
    fake.on("POST", "pki/sign/web", body=SIGN_RESPONSE)
    csr = make_csr()
    (tmp_path / "svc.csr").write_text(csr)
    out = tmp_path / "svc.crt"
    chain = tmp_path / "svc.chain.pem"
    result = run(
        "pki", "sign", "pki/web", str(tmp_path / "svc.csr"), f"-out={out}", f"-chain-out={chain}", "-ttl=1h"
    )
    assert result.exit_code == 0, result.output
    assert fake.calls[0].body == {"csr": csr, "format": "pem", "ttl": "1h"}
    assert out.read_text() == pem(LEAF) + "\n"
    assert chain.read_text() == pem(ROOT) + "\n"
    assert "Success! Signed certificate 36:a6:41" in result.stdout

    result = run("pki", "sign", "pki/web", str(tmp_path / "svc.csr"), f"-out={out}")
    assert (result.exit_code, len(fake.calls)) == (1, 1)  # exists: refused before the request

    result = run("pki", "sign", "pki/web", "-", "-format=pem", input=csr)
    assert result.stdout == f"{pem(LEAF)}\n{pem(ROOT)}\n"


def test_sign_rejects_a_file_that_is_not_a_csr(fake: FakeServer, tmp_path: Path) -> None:
    (tmp_path / "cert.pem").write_text(pem(LEAF))
    result = run("pki", "sign", "pki/web", str(tmp_path / "cert.pem"))
    assert result.exit_code == 1
    assert "does not hold a PEM certificate request" in result.stderr
    result = run("pki", "sign", "pki/web", str(tmp_path / "missing.csr"))
    assert result.exit_code == 1
    assert fake.calls == []


# --- revoke ---------------------------------------------------------------------------------

REVOKED = {"data": {"revocation_time": 1700000000, "revocation_time_rfc3339": "2023-11-14T22:13:20Z"}}


def test_revoke_by_serial_in_any_spelling(fake: FakeServer) -> None:
    fake.on("POST", "pki/revoke", body=REVOKED)
    for spelling in ("36:a6:41", "36-A6-41", "36a641"):
        result = run("pki", "revoke", "pki", spelling)
        assert result.exit_code == 0, result.output
        assert result.stdout == "Success! Revoked certificate 36:a6:41 at 2023-11-14T22:13:20Z.\n"
    assert {json.dumps(c.body) for c in fake.calls} == {'{"serial_number": "36:a6:41"}'}
    assert run("pki", "revoke", "pki", "not-hex").exit_code == 1
    assert json.loads(run("pki", "revoke", "pki", "36a641", "-format=json").stdout) == REVOKED


def test_revoke_by_certificate_file_sends_only_that_certificate(fake: FakeServer, tmp_path: Path) -> None:
    fake.on("POST", "pki/revoke", body=REVOKED)
    bundle = tmp_path / "bundle.pem"
    bundle.write_text(pem(LEAF) + "\n" + pem(ROOT) + "\n")
    result = run("pki", "revoke", "pki", f"-cert={bundle}")
    assert result.exit_code == 0, result.output
    assert fake.calls[0].body == {"certificate": pem(LEAF) + "\n"}
    assert "Revoked certificate 36:a6:41" in result.stdout


def test_revoke_needs_exactly_one_of_serial_and_cert(fake: FakeServer, tmp_path: Path) -> None:
    assert run("pki", "revoke", "pki").exit_code == 1
    (tmp_path / "c.pem").write_text(pem(LEAF))
    assert run("pki", "revoke", "pki", "01", f"-cert={tmp_path / 'c.pem'}").exit_code == 1
    (tmp_path / "junk.pem").write_text("junk")
    result = run("pki", "revoke", "pki", f"-cert={tmp_path / 'junk.pem'}")
    assert (result.exit_code, "does not hold a PEM certificate" in result.stderr) == (1, True)
    assert fake.calls == []


def test_revoke_unknown_serial_explains_no_store(fake: FakeServer) -> None:
    fake.on("POST", "pki/revoke", 400, {"errors": ["certificate with serial 01:02 not found."]})
    result = run("pki", "revoke", "pki", "01:02")
    assert result.exit_code == 2
    assert "* certificate with serial 01:02 not found." in result.stderr
    assert "no_store=true" in result.stderr and "-cert FILE" in result.stderr


def test_revoke_of_an_expired_certificate_prints_the_servers_warning(fake: FakeServer) -> None:
    fake.on("POST", "pki/revoke", body={"data": None, "warnings": ["certificate already expired"]})
    result = run("pki", "revoke", "pki", "01:02")
    assert result.exit_code == 0
    assert "certificate already expired" in result.stderr
    assert "was not added to the CRL" in result.stdout


# --- list -----------------------------------------------------------------------------------


def detailed(*entries: tuple[str, str, int, bool]) -> dict[str, Any]:
    info = {
        serial: {
            "serial_number": serial,
            "common_name": cn,
            "sans": [cn],
            "not_after": not_after,
            "revoked": revoked,
        }
        for serial, cn, not_after, revoked in entries
    }
    return {"data": {"keys": list(info), "key_info": info}}


def test_list_shows_serial_cn_expiry_and_status(fake: FakeServer) -> None:
    future, past = 4102444800, 946684800  # 2100-01-01, 2000-01-01
    fake.on(
        "LIST",
        "pki/certs/detailed",
        body=detailed(
            ("0a:01", "www.example.com", future, False),
            ("0a:02", "old.example.com", past, False),
            ("0a:03", "", future, True),
        ),
    )
    result = run("pki", "list", "pki")
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        "Serial Number    Common Name        Not After               Status\n"
        "-------------    -----------        ---------               ------\n"
        "0a:01            www.example.com    2100-01-01T00:00:00Z    valid\n"
        "0a:02            old.example.com    2000-01-01T00:00:00Z    expired\n"
        "0a:03            n/a                2100-01-01T00:00:00Z    revoked\n"
    )
    assert fake.calls[0].params == {}
    entries = json.loads(run("pki", "list", "pki", "-format=json").stdout)
    assert [(e["serial_number"], e["status"]) for e in entries] == [
        ("0a:01", "valid"),
        ("0a:02", "expired"),
        ("0a:03", "revoked"),
    ]


def test_list_paging(fake: FakeServer) -> None:
    fake.on("LIST", "pki/certs/detailed", body=detailed(("0a:01", "a", 4102444800, False)))
    result = run("pki", "list", "pki", "-limit=1", "-after=09FF")
    assert fake.calls[0].params == {"limit": "1", "after": "09:ff"}
    assert "strongroom pki list -limit=1 -after=0a:01 pki" in result.stderr
    assert run("pki", "list", "pki", "-limit=0").exit_code == 1


def test_list_empty_and_missing_mount(fake: FakeServer) -> None:
    fake.on("LIST", "pki/certs/detailed", body={"data": {"keys": [], "key_info": {}}})
    result = run("pki", "list", "pki")
    assert (result.exit_code, result.stderr) == (2, "No certificates found in pki/\n")
    fake.on("LIST", "nope/certs/detailed", 404, NO_ROUTE)
    result = run("pki", "list", "nope")
    assert result.exit_code == 2
    assert "nothing is mounted at nope/" in result.stderr


# --- health-check ---------------------------------------------------------------------------


def mount_with(
    fake: FakeServer,
    issuers: dict[str, x509.Certificate],
    *,
    urls: dict[str, list[str]] | None = None,
    crl: dict[str, Any] | None = None,
    crls: dict[str, str] | None = None,
    roles: dict[str, dict[str, Any]] | None = None,
    max_lease_ttl: int = 32 * DAY,
) -> None:
    """A pki mount whose answers the checks will read."""
    fake.on("GET", "sys/internal/ui/mounts/pki", body={"data": {"type": "pki", "path": "pki/"}})
    fake.on("GET", "sys/mounts/pki/tune", body={"data": {"max_lease_ttl": max_lease_ttl}})
    if issuers:
        fake.on("LIST", "pki/issuers", body={"data": {"keys": list(issuers), "key_info": {}}})
    empty: dict[str, list[str]] = {
        "issuing_certificates": [],
        "crl_distribution_points": [],
        "ocsp_servers": [],
    }
    fake.on("GET", "pki/config/urls", body={"data": {**empty, **(urls or {})}})
    fake.on("GET", "pki/config/crl", body={"data": {"disable": False, "ocsp_disable": False, **(crl or {})}})
    for issuer_id, cert in issuers.items():
        fake.on("GET", f"pki/issuer/{issuer_id}", body={"data": {"certificate": pem(cert), **empty}})
        text = (crls or {}).get(issuer_id, make_crl(cert, age=3600, validity=3 * DAY))
        fake.on("GET", f"pki/issuer/{issuer_id}/crl", body={"data": {"crl": text}})
    fake.on("LIST", "pki/roles", body={"data": {"keys": list(roles or {})}})
    for name, role in (roles or {}).items():
        fake.on("GET", f"pki/roles/{name}", body={"data": role})


GOOD_URLS = {"issuing_certificates": ["http://x/ca"], "crl_distribution_points": ["http://x/crl"]}
GOOD_ROLE: dict[str, Any] = {
    "allowed_domains": ["example.com"],
    "allow_wildcard_certificates": True,
    "max_ttl": 30 * DAY,
}


def health(*args: str) -> tuple[int, dict[str, list[dict[str, Any]]]]:
    result = run("pki", "health-check", "pki", "-format=json", *args)
    return result.exit_code, json.loads(result.stdout)


def statuses(results: dict[str, list[dict[str, Any]]], check: str) -> list[str]:
    return [f["status"] for f in results[check]]


def test_health_check_all_ok_exits_0(fake: FakeServer) -> None:
    mount_with(fake, {"i1": ROOT}, urls=GOOD_URLS, roles={"web": GOOD_ROLE})
    code, results = health()
    assert code == 0
    assert list(results) == [
        "ca_validity_period",
        "aia_urls",
        "crl_validity_period",
        "role_allows_too_much",
        "role_generate_lease",
    ]
    assert all(f["status"] == "ok" for fs in results.values() for f in fs), results
    assert results["ca_validity_period"][0] == {
        "status_code": 1,
        "status": "ok",
        "endpoint": "/pki/issuer/i1",
        "message": results["ca_validity_period"][0]["message"],
    }


def test_health_check_issuer_expiry(fake: FakeServer) -> None:
    issuers = {
        "soon": make_cert("Soon", days_left=20),
        "very-soon": make_cert("Very soon", days_left=5),
        "gone": make_cert("Gone", days_left=-1),
        "fine": make_cert("Fine", days_left=400),
    }
    mount_with(fake, issuers, urls=GOOD_URLS)
    code, results = health()
    assert statuses(results, "ca_validity_period") == ["warning", "critical", "critical", "ok"]
    assert code == 4
    assert "expired on" in results["ca_validity_period"][2]["message"]
    code, _ = health("-expiry-warning=10d", "-expiry-critical=1d")
    assert code == 4  # "gone" is still expired
    fake.on("LIST", "pki/issuers", body={"data": {"keys": ["soon"]}})
    code, results = health("-expiry-warning=10d", "-expiry-critical=1d")
    assert (code, statuses(results, "ca_validity_period")) == (0, ["ok"])


def test_health_check_missing_aia_urls(fake: FakeServer) -> None:
    mount_with(fake, {"i1": ROOT})
    code, results = health()
    assert statuses(results, "aia_urls") == ["warning", "informational"]
    assert all(f["endpoint"] == "/pki/config/urls" for f in results["aia_urls"])
    assert "strongroom write pki/config/urls crl_distribution_points=" in results["aia_urls"][0]["message"]
    assert code == 3
    # with CRL and OCSP both disabled there is nothing to point at: informational only
    mount_with(fake, {"i1": ROOT}, crl={"disable": True, "ocsp_disable": True})
    assert statuses(health()[1], "aia_urls") == ["informational", "informational"]


def test_health_check_issuer_aia_overrides_the_mount(fake: FakeServer) -> None:
    mount_with(fake, {"i1": ROOT})
    fake.on("GET", "pki/issuer/i1", body={"data": {"certificate": pem(ROOT), **GOOD_URLS}})
    _, results = health()
    assert results["aia_urls"][0]["status"] == "ok"
    assert results["aia_urls"][0]["endpoint"] == "/pki/issuer/i1"


def test_health_check_crl_freshness(fake: FakeServer) -> None:
    stale = make_crl(ROOT, age=4 * DAY, validity=3 * DAY)
    due = make_crl(ROOT, age=int(2.9 * DAY), validity=3 * DAY)
    second = make_cert("Second", days_left=400)
    mount_with(fake, {"i1": ROOT, "i2": second}, urls=GOOD_URLS, crls={"i1": stale, "i2": due})
    code, results = health()
    assert statuses(results, "crl_validity_period") == ["critical", "warning"]
    assert "went stale" in results["crl_validity_period"][0]["message"]
    assert code == 4


def test_health_check_disabled_crl_is_informational(fake: FakeServer) -> None:
    stale = make_crl(ROOT, age=4 * DAY, validity=3 * DAY)
    mount_with(fake, {"i1": ROOT}, urls=GOOD_URLS, crl={"disable": True}, crls={"i1": stale})
    code, results = health()
    assert statuses(results, "crl_validity_period") == ["informational", "informational"]
    assert results["crl_validity_period"][0]["endpoint"] == "/pki/config/crl"
    assert code == 2
    assert health("-return-indicator=warning")[0] == 0


def test_health_check_delta_crls_when_enabled(fake: FakeServer) -> None:
    mount_with(fake, {"i1": ROOT}, urls=GOOD_URLS, crl={"enable_delta": True, "auto_rebuild": True})
    stale = make_crl(ROOT, age=2 * DAY, validity=DAY)
    fake.on("GET", "pki/issuer/i1/crl/delta", body={"data": {"crl": stale}})
    _, results = health()
    assert [(f["endpoint"], f["status"]) for f in results["crl_validity_period"]] == [
        ("/pki/issuer/i1/crl", "ok"),
        ("/pki/issuer/i1/crl/delta", "critical"),
    ]


def test_health_check_roles_that_allow_too_much(fake: FakeServer) -> None:
    roles: dict[str, dict[str, Any]] = {
        "any": {"allow_any_name": True, "allow_wildcard_certificates": True, "max_ttl": 30 * DAY},
        "glob": {
            "allowed_domains": ["*.corp.example"],
            "allow_glob_domains": True,
            "allow_wildcard_certificates": True,
            "max_ttl": 30 * DAY,
        },
        "long": {"allowed_domains": ["example.com"], "max_ttl": 365 * DAY},
        "mount-default": {"allowed_domains": ["example.com"], "max_ttl": 0},
        "web": GOOD_ROLE,
    }
    mount_with(fake, {"i1": ROOT}, urls=GOOD_URLS, roles=roles, max_lease_ttl=100 * DAY)
    code, results = health()
    found = [(f["endpoint"].rsplit("/", 1)[1], f["status"]) for f in results["role_allows_too_much"]]
    assert found == [
        ("any", "warning"),
        ("glob", "warning"),
        ("long", "warning"),
        ("mount-default", "warning"),
        ("web", "ok"),
    ]
    messages = [f["message"] for f in results["role_allows_too_much"]]
    assert "allow_any_name=true" in messages[0]
    assert "*.corp.example" in messages[1]
    assert "365 days" in messages[2]
    assert "mount's max_lease_ttl" in messages[3]
    assert code == 3
    fake.on("GET", "sys/mounts/pki/tune", body={"data": {"max_lease_ttl": 32 * DAY}})
    _, results = health()
    assert statuses(results, "role_allows_too_much")[3] == "ok"
    _, results = health("-max-ttl-warning=400d")
    assert statuses(results, "role_allows_too_much")[2] == "ok"


def test_health_check_role_with_leases(fake: FakeServer) -> None:
    roles = {
        "leased": {**GOOD_ROLE, "generate_lease": True, "no_store": False},
        "unstored": {**GOOD_ROLE, "generate_lease": True, "no_store": True},
    }
    mount_with(fake, {"i1": ROOT}, urls=GOOD_URLS, roles=roles)
    code, results = health()
    assert [(f["endpoint"], f["status"]) for f in results["role_generate_lease"]] == [
        ("/pki/roles/leased", "informational")
    ]
    assert code == 2


def test_health_check_reports_what_it_may_not_read(fake: FakeServer) -> None:
    mount_with(fake, {"i1": ROOT}, urls=GOOD_URLS)
    fake.on("LIST", "pki/roles", 403, {"errors": ["permission denied"]})
    fake.on("GET", "pki/issuer/i1", 403, {"errors": ["permission denied"]})
    fake.on("GET", "pki/issuer/i1/json", body={"data": {"certificate": pem(ROOT)}})
    code, results = health()
    assert statuses(results, "ca_validity_period") == ["ok"]  # from the unauthenticated json path
    assert statuses(results, "aia_urls") == ["insufficient_permissions"]
    assert results["role_allows_too_much"][0]["endpoint"] == "/pki/roles"
    assert results["role_allows_too_much"][0]["status_code"] == 6
    assert code == 6
    assert health("-return-indicator=critical")[0] == 6  # permission problems always count
    assert results["role_generate_lease"] == []


def test_health_check_table_output(fake: FakeServer) -> None:
    mount_with(fake, {"i1": ROOT}, roles={"any": {"allow_any_name": True, "max_ttl": DAY}})
    result = run("pki", "health-check", "pki")
    assert result.exit_code == 3
    lines = result.stdout.splitlines()
    assert lines[:3] == ["ca_validity_period", "------------------", "status    endpoint          message"]
    assert "aia_urls" in lines and "role_allows_too_much" in lines
    assert any(line.startswith("warning    /pki/roles/any") for line in lines)


def test_health_check_refuses_a_missing_or_foreign_mount(fake: FakeServer) -> None:
    fake.on("GET", "sys/internal/ui/mounts/secret", body={"data": {"type": "kv", "path": "secret/"}})
    result = run("pki", "health-check", "secret")
    assert (result.exit_code, result.stderr) == (1, "secret/ is a kv mount, not pki\n")
    fake.on("LIST", "nope/issuers", 404, NO_ROUTE)
    result = run("pki", "health-check", "nope")
    assert result.exit_code == 1
    assert "Nothing is mounted at nope/" in result.stderr
    assert run("pki", "health-check", "pki", "-return-indicator=bogus").exit_code == 1
    assert run("pki", "health-check", "pki", "-expiry-warning=soon").exit_code == 1


def test_health_check_mount_without_issuers_or_roles(fake: FakeServer) -> None:
    mount_with(fake, {})
    code, results = health()
    assert statuses(results, "ca_validity_period") == ["warning"]
    assert statuses(results, "role_allows_too_much") == ["not_applicable"]
    assert code == 3


def test_exit_code_follows_vaults_return_indicator() -> None:
    S = pki_cli.Status

    def results(*found: pki_cli.Status) -> dict[str, list[pki_cli.Finding]]:
        return {"c": [pki_cli.Finding(s, "/x", "m") for s in found]}

    assert pki_cli.exit_code(results(S.OK, S.NOT_APPLICABLE)) == 0
    assert pki_cli.exit_code(results(S.OK, S.INFORMATIONAL)) == 2
    assert pki_cli.exit_code(results(S.WARNING, S.INFORMATIONAL)) == 3
    assert pki_cli.exit_code(results(S.WARNING), "critical") == 0
    assert pki_cli.exit_code(results(S.CRITICAL), "critical") == 4
    assert pki_cli.exit_code(results(S.CRITICAL), "permission") == 0
    assert pki_cli.exit_code(results(S.INSUFFICIENT_PERMISSIONS), "permission") == 6
    assert pki_cli.exit_code({}) == 0
