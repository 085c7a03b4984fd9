"""Cert auth over a real TLS listener: strongroom's own PKI issues the client certificate.

The loop an operator runs: mount ``pki/``, generate a root, add a role, issue a client
certificate, trust the PKI's CA under ``auth/cert/certs/web``, then log in with httpx
over mutual TLS and use the token. A self-signed *expired* client certificate must not
break the handshake (the TLS layer requests certificates without judging them, as
Vault does): the login answers a 4xx instead.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.integration.server_proc import ROOT, free_port


def _write_key_and_cert(
    folder: Path, stem: str, cn: str, *, not_before: dt.datetime, not_after: dt.datetime, ip: bool = False
) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
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
    if ip:
        import ipaddress

        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    cert = builder.sign(key, hashes.SHA256())
    cert_file, key_file = folder / f"{stem}.pem", folder / f"{stem}-key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_file, key_file


@dataclass
class TLSServer:
    addr: str
    ca_file: Path
    root_token: str
    workdir: Path

    def client(self, cert: tuple[str, str] | None = None, token: str | None = None) -> httpx.Client:
        headers = {"X-Vault-Token": token} if token else {}
        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        if cert is not None:
            ctx.load_cert_chain(cert[0], cert[1])
        return httpx.Client(base_url=self.addr, verify=ctx, headers=headers, timeout=20.0)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TLSServer]:
    work = tmp_path_factory.mktemp("certtls")
    now = dt.datetime.now(dt.UTC)
    cert_file, key_file = _write_key_and_cert(
        work,
        "server",
        "localhost",
        not_before=now - dt.timedelta(hours=1),
        not_after=now + dt.timedelta(days=2),
        ip=True,
    )
    port = free_port()
    addr = f"https://127.0.0.1:{port}"
    config = {
        "storage": {"inmem": {}},
        "listener": {
            "tcp": {
                "address": f"127.0.0.1:{port}",
                "tls_cert_file": str(cert_file),
                "tls_key_file": str(key_file),
            }
        },
        "disable_mlock": True,
    }
    config_file = work / "server.json"
    config_file.write_text(json.dumps(config))
    log_file = work / "server.log"
    with log_file.open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "strongroom", "server", f"-config={config_file}"],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise RuntimeError("server exited early:\n" + log_file.read_text()[-3000:])
            try:
                httpx.get(
                    addr + "/v1/sys/seal-status",
                    verify=ssl.create_default_context(cafile=str(cert_file)),
                    timeout=1.0,
                )
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise RuntimeError("server did not start:\n" + log_file.read_text()[-3000:]) from None
                time.sleep(0.1)
        with httpx.Client(
            base_url=addr, verify=ssl.create_default_context(cafile=str(cert_file)), timeout=20.0
        ) as c:
            init = c.put("/v1/sys/init", json={"secret_shares": 1, "secret_threshold": 1})
            init.raise_for_status()
            body = init.json()
            c.put("/v1/sys/unseal", json={"key": body["keys"][0]}).raise_for_status()
        yield TLSServer(addr, cert_file, body["root_token"], work)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


def _ok(r: httpx.Response) -> httpx.Response:
    assert r.status_code < 300, f"{r.request.method} {r.request.url}: {r.status_code} {r.text}"
    return r


def test_pki_issued_client_cert_logs_in_over_mtls(server: TLSServer) -> None:
    with server.client(token=server.root_token) as admin:
        _ok(admin.post("/v1/sys/mounts/pki", json={"type": "pki", "config": {"max_lease_ttl": "87600h"}}))
        root = _ok(
            admin.post(
                "/v1/pki/root/generate/internal", json={"common_name": "Strongroom Test Root", "ttl": "8760h"}
            )
        ).json()["data"]["certificate"]
        _ok(
            admin.post(
                "/v1/pki/roles/clients",
                json={"allow_any_name": True, "client_flag": True, "server_flag": False, "max_ttl": "24h"},
            )
        )
        issued = _ok(
            admin.post("/v1/pki/issue/clients", json={"common_name": "web-client", "ttl": "1h"})
        ).json()["data"]
        _ok(admin.post("/v1/sys/auth/cert", json={"type": "cert"}))
        _ok(
            admin.post(
                "/v1/sys/policies/acl/reader", json={"policy": 'path "secret/*" { capabilities = ["read"] }'}
            )
        )
        _ok(
            admin.post(
                "/v1/auth/cert/certs/web",
                json={"certificate": root, "token_policies": "reader", "allowed_common_names": "web-*"},
            )
        )

    cert_file, key_file = server.workdir / "client.pem", server.workdir / "client-key.pem"
    cert_file.write_text(issued["certificate"] + "\n")
    key_file.write_text(issued["private_key"] + "\n")
    with server.client(cert=(str(cert_file), str(key_file))) as mtls:
        r = _ok(mtls.post("/v1/auth/cert/login", json={"name": ""}))
        auth = r.json()["auth"]
        assert auth["metadata"]["cert_name"] == "web"
        assert auth["metadata"]["common_name"] == "web-client"
        assert "reader" in auth["policies"]
        token = auth["client_token"]
        # named login, as cert-manager sends it when a role is configured
        assert _ok(mtls.post("/v1/auth/cert/login", json={"name": "web"})).json()["auth"]["client_token"]

    with server.client(token=token) as user:
        me = _ok(user.get("/v1/auth/token/lookup-self")).json()["data"]
        assert "reader" in me["policies"]
        assert me["meta"]["cert_name"] == "web"

    # revoke it in the PKI, load the PKI's CRL into the auth method: the login is refused
    with server.client(token=server.root_token) as admin:
        _ok(admin.post("/v1/pki/revoke", json={"serial_number": issued["serial_number"]}))
        crl = admin.get("/v1/pki/crl/pem")
        assert crl.status_code == 200, crl.text
        _ok(admin.post("/v1/auth/cert/crls/pki", json={"crl": crl.text}))
    with server.client(cert=(str(cert_file), str(key_file))) as mtls:
        r = mtls.post("/v1/auth/cert/login", json={})
        assert r.status_code == 400, r.text


def test_no_client_cert_is_400(server: TLSServer) -> None:
    with server.client(token=server.root_token) as admin:
        r = admin.get("/v1/sys/auth")
        if "cert/" not in r.json()["data"]:
            _ok(admin.post("/v1/sys/auth/cert", json={"type": "cert"}))
    with server.client() as anon:
        r = anon.post("/v1/auth/cert/login", json={})
        assert r.status_code == 400
        assert "client certificate must be supplied" in r.text


def test_expired_self_signed_client_cert_does_not_break_tls(server: TLSServer) -> None:
    now = dt.datetime.now(dt.UTC)
    cert_file, key_file = _write_key_and_cert(
        server.workdir,
        "expired",
        "old-client",
        not_before=now - dt.timedelta(days=30),
        not_after=now - dt.timedelta(days=1),
    )
    with server.client(token=server.root_token) as admin:
        if "cert/" not in admin.get("/v1/sys/auth").json()["data"]:
            _ok(admin.post("/v1/sys/auth/cert", json={"type": "cert"}))
        _ok(admin.post("/v1/auth/cert/certs/old", json={"certificate": cert_file.read_text()}))
    with server.client(cert=(str(cert_file), str(key_file))) as mtls:
        # the handshake succeeds and ordinary requests work with the certificate attached
        assert mtls.get("/v1/sys/health").status_code == 200
        r = mtls.post("/v1/auth/cert/login", json={"name": "old"})
        assert 400 <= r.status_code < 500, r.text


def test_hvac_shaped_self_signed_client_cert(server: TLSServer) -> None:
    """What hvac's cert logins mean to check (they fail client-side, see test_hvac.py): a self-signed
    CA:TRUE client certificate trusted as itself logs in over mTLS; an unknown role name is a 400."""
    now = dt.datetime.now(dt.UTC)
    cert_file, key_file = _write_key_and_cert(
        server.workdir,
        "hvacish",
        "client",
        not_before=now - dt.timedelta(hours=1),
        not_after=now + dt.timedelta(days=1),
    )
    with server.client(token=server.root_token) as admin:
        if "cert-test/" not in admin.get("/v1/sys/auth").json()["data"]:
            _ok(admin.post("/v1/sys/auth/cert-test", json={"type": "cert"}))
        _ok(admin.post("/v1/auth/cert-test/certs/testrole", json={"certificate": cert_file.read_text()}))
    with server.client(cert=(str(cert_file), str(key_file))) as mtls:
        for body in ({"name": "testrole"}, {}):
            auth = _ok(mtls.post("/v1/auth/cert-test/login", json=body)).json()["auth"]
            assert auth["metadata"]["common_name"] == "client"
        assert mtls.post("/v1/auth/cert-test/login", json={"name": "testrole2"}).status_code == 400
