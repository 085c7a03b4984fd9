"""``strongroom pki`` end to end: a real server process (in memory, plain HTTP on loopback),
a PKI mount set up over HTTP, and the command run as a person runs it — a subprocess with
STRONGROOM_ADDR and STRONGROOM_TOKEN in its environment. ``openssl verify`` checks that the
files ``issue`` and ``sign`` write chain to the CA."""

from __future__ import annotations

import datetime as dt
import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from tests.integration.server_proc import ROOT, ServerProcess


@dataclass
class Server:
    addr: str
    token: str
    home: Path

    def api(self, method: str, path: str, body: dict[str, object] | None = None) -> httpx.Response:
        r = httpx.request(
            method, f"{self.addr}/v1/{path}", json=body, headers={"X-Vault-Token": self.token}, timeout=30
        )
        assert r.status_code < 400, r.text
        return r

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("STRONGROOM_", "VAULT_"))}
        env.update(STRONGROOM_ADDR=self.addr, STRONGROOM_TOKEN=self.token, HOME=str(self.home))
        return subprocess.run(
            [sys.executable, "-m", "strongroom", "pki", *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )


def setup_pki(server: Server, mount: str) -> x509.Certificate:
    """A mount with a ten-year root and no AIA URLs; role ``web`` keeps to example.com for 72h."""
    server.api("POST", f"sys/mounts/{mount}", {"type": "pki", "config": {"max_lease_ttl": "87600h"}})
    r = server.api(
        "POST", f"{mount}/root/generate/internal", {"common_name": f"{mount} Test Root", "ttl": "87600h"}
    )
    server.api(
        "POST",
        f"{mount}/roles/web",
        {"allowed_domains": "example.com", "allow_subdomains": True, "max_ttl": "72h"},
    )
    return x509.load_pem_x509_certificate(r.json()["data"]["certificate"].encode())


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    workdir = tmp_path_factory.mktemp("pki-cli")
    proc = ServerProcess(workdir, {"inmem": {}})
    proc.start()
    try:
        _, token = proc.init_and_unseal(1, 1)
        srv = Server(proc.addr, token, workdir)
        setup_pki(srv, "pki")
        yield srv
    finally:
        proc.stop()


def colon(serial: int) -> str:
    text = f"{serial:x}"
    text = "0" * (len(text) % 2) + text
    return ":".join(text[i : i + 2] for i in range(0, len(text), 2))


def openssl_verify(ca_file: Path, cert_file: Path) -> None:
    r = subprocess.run(
        ["openssl", "verify", "-CAfile", str(ca_file), str(cert_file)], capture_output=True, text=True
    )
    assert r.returncode == 0 and r.stdout.strip().endswith(": OK"), r.stdout + r.stderr


def public_der(key: Any) -> bytes:
    """SubjectPublicKeyInfo of a public key, or of a private key's public half."""
    public = key.public_key() if hasattr(key, "private_bytes") else key
    return bytes(
        public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


def test_issue_writes_a_certificate_that_chains_and_a_private_key(server: Server, tmp_path: Path) -> None:
    out_dir = tmp_path / "tls"
    r = server.cli(
        "issue",
        "pki/web",
        "-common-name=www.example.com",
        "-alt-names=api.example.com",
        "-ttl=24h",
        f"-out-dir={out_dir}",
    )
    assert r.returncode == 0, r.stderr
    crt, chain, key = (out_dir / f"www.example.com.{ext}" for ext in ("crt", "chain.pem", "key"))
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    openssl_verify(chain, crt)

    cert = x509.load_pem_x509_certificate(crt.read_bytes())
    private = serialization.load_pem_private_key(key.read_bytes(), password=None)
    assert public_der(private) == public_der(cert.public_key())
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "www.example.com"
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(sans.get_values_for_type(x509.DNSName)) == {"www.example.com", "api.example.com"}
    assert cert.not_valid_after_utc - cert.not_valid_before_utc <= dt.timedelta(hours=24, seconds=60)

    serial = colon(cert.serial_number)
    assert f"Success! Issued certificate {serial}" in r.stdout
    assert cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ") in r.stdout
    assert "PRIVATE KEY" not in r.stdout

    again = server.cli("issue", "pki/web", "-common-name=www.example.com", f"-out-dir={out_dir}")
    assert again.returncode == 1
    assert "Refusing to overwrite" in again.stderr
    assert x509.load_pem_x509_certificate(crt.read_bytes()) == cert

    forced = server.cli("issue", "pki/web", "-common-name=www.example.com", f"-out-dir={out_dir}", "-force")
    assert forced.returncode == 0, forced.stderr
    assert x509.load_pem_x509_certificate(crt.read_bytes()).serial_number != cert.serial_number
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    openssl_verify(chain, crt)


def test_issue_json_leaves_the_key_out(server: Server, tmp_path: Path) -> None:
    r = server.cli(
        "issue", "pki/web", "-common-name=json.example.com", f"-out-dir={tmp_path}", "-format=json"
    )
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)["data"]
    assert "private_key" not in data
    assert data["private_key_type"] == "rsa"
    assert (tmp_path / "json.example.com.key").read_text().startswith("-----BEGIN RSA PRIVATE KEY-----")


def test_sign_a_csr_from_a_file(server: Server, tmp_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "svc.example.com")]))
        .sign(key, hashes.SHA256())
    )
    csr_file = tmp_path / "svc.csr"
    csr_file.write_bytes(csr.public_bytes(serialization.Encoding.PEM))
    out, chain = tmp_path / "svc.crt", tmp_path / "ca.pem"
    r = server.cli("sign", "pki/web", str(csr_file), f"-out={out}", f"-chain-out={chain}", "-ttl=1h")
    assert r.returncode == 0, r.stderr
    openssl_verify(chain, out)
    cert = x509.load_pem_x509_certificate(out.read_bytes())
    assert public_der(cert.public_key()) == public_der(key)
    assert f"Success! Signed certificate {colon(cert.serial_number)}" in r.stdout


def test_list_then_revoke_then_list(server: Server, tmp_path: Path) -> None:
    for cn in ("keep.example.com", "drop.example.com", "byfile.example.com"):
        r = server.cli("issue", "pki/web", f"-common-name={cn}", f"-out-dir={tmp_path}")
        assert r.returncode == 0, r.stderr
    certs = {
        cn: x509.load_pem_x509_certificate((tmp_path / f"{cn}.crt").read_bytes())
        for cn in ("keep.example.com", "drop.example.com", "byfile.example.com")
    }
    serials = {cn: colon(c.serial_number) for cn, c in certs.items()}

    def rows() -> dict[str, list[str]]:
        r = server.cli("list", "pki")
        assert r.returncode == 0, r.stderr
        lines = r.stdout.splitlines()
        assert lines[0].split() == ["Serial", "Number", "Common", "Name", "Not", "After", "Status"]
        return {line.split()[0]: line.split()[1:] for line in lines[2:]}

    listed = rows()
    for cn, serial in serials.items():
        expiry = certs[cn].not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ")
        assert listed[serial] == [cn, expiry, "valid"]

    r = server.cli("revoke", "pki", serials["drop.example.com"])
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"Success! Revoked certificate {serials['drop.example.com']} at ")
    r = server.cli("revoke", "pki", f"-cert={tmp_path / 'byfile.example.com.crt'}")
    assert r.returncode == 0, r.stderr

    listed = rows()
    assert listed[serials["keep.example.com"]][-1] == "valid"
    assert listed[serials["drop.example.com"]][-1] == "revoked"
    assert listed[serials["byfile.example.com"]][-1] == "revoked"

    entries = json.loads(server.cli("list", "pki", "-format=json").stdout)
    by_serial = {e["serial_number"]: e for e in entries}
    assert by_serial[serials["drop.example.com"]]["status"] == "revoked"
    assert by_serial[serials["drop.example.com"]]["common_name"] == "drop.example.com"

    page = server.cli("list", "pki", "-limit=1")
    assert page.returncode == 0
    assert len(page.stdout.splitlines()) == 3
    assert "-after=" in page.stderr


def test_errors_a_person_can_act_on(server: Server, tmp_path: Path) -> None:
    r = server.cli("issue", "pki/nope", "-common-name=a.example.com", f"-out-dir={tmp_path}")
    assert r.returncode == 2
    assert "* unknown role: nope" in r.stderr
    r = server.cli("issue", "pki/web", "-common-name=evil.test", f"-out-dir={tmp_path}")
    assert r.returncode == 2
    assert "common name evil.test not allowed by this role" in r.stderr
    assert list(tmp_path.iterdir()) == []
    r = server.cli("list", "nomount")
    assert r.returncode == 2
    assert "nothing is mounted at nomount/" in r.stderr
    r = server.cli("revoke", "pki", "01:02:03")
    assert r.returncode == 2
    assert "not found" in r.stderr and "-cert FILE" in r.stderr


def test_health_check_flags_missing_aia_and_a_role_that_allows_any_name(server: Server) -> None:
    setup_pki(server, "hc")
    server.api("POST", "hc/roles/any", {"allow_any_name": True, "max_ttl": "72h"})

    r = server.cli("health-check", "hc", "-format=json")
    assert r.returncode == 3, r.stdout + r.stderr  # Vault's code for "worst finding: warning"
    results = json.loads(r.stdout)
    assert [f["status"] for f in results["ca_validity_period"]] == ["ok"]
    assert [f["status"] for f in results["aia_urls"]] == ["warning", "informational"]
    assert [f["status"] for f in results["crl_validity_period"]] == ["ok"]
    roles = {f["endpoint"]: f["status"] for f in results["role_allows_too_much"]}
    assert roles == {"/hc/roles/any": "warning", "/hc/roles/web": "ok"}
    assert "allow_any_name=true" in results["role_allows_too_much"][0]["message"]

    table = server.cli("health-check", "hc")
    assert table.returncode == 3
    assert "warning    /hc/roles/any" in table.stdout
    assert server.cli("health-check", "hc", "-return-indicator=critical").returncode == 0

    # fix both and the mount is healthy
    server.api(
        "POST",
        "hc/config/urls",
        {
            "issuing_certificates": f"{server.addr}/v1/hc/ca",
            "crl_distribution_points": f"{server.addr}/v1/hc/crl",
        },
    )
    server.api("DELETE", "hc/roles/any")
    r = server.cli("health-check", "hc")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "warning" not in r.stdout

    r = server.cli("health-check", "nomount")
    assert r.returncode == 1
    assert "Nothing is mounted at nomount/" in r.stderr
