"""Cert auth with OCSP, end to end: strongroom's PKI answers the OCSP checks of its own logins.

One strongroom server over TLS (started as in ``test_cert_login_tls.py``). Its ``pki/``
mount puts the server's own ``/v1/pki/ocsp`` into the AIA of every certificate it issues
(``config/urls`` ``ocsp_servers``) and answers with a short ``ocsp_expiry``, so an answer
is cached for seconds only. ``auth/cert/certs/web`` trusts the PKI's root with
``ocsp_enabled``; ``ocsp_ca_certificates`` holds the listener's self-signed certificate so
the auth method's https request to the responder verifies. A client certificate logs in
over mutual TLS; once ``pki/revoke`` revokes it, its logins are refused — at once for a
certificate whose status was never cached, and as soon as the cached ``good`` answer's
``next_update`` passes for one that had logged in.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from tests.integration import test_cert_login_tls as base
from tests.integration.test_cert_login_tls import TLSServer, _ok

server = base.server  # the module-scoped TLS server fixture, one instance for this module

OCSP_EXPIRY_SECONDS = 2


def _write_client(server: TLSServer, stem: str, issued: dict[str, str]) -> tuple[str, str]:
    cert_file, key_file = server.workdir / f"{stem}.pem", server.workdir / f"{stem}-key.pem"
    cert_file.write_text(issued["certificate"] + "\n")
    key_file.write_text(issued["private_key"] + "\n")
    return str(cert_file), str(key_file)


def _login(server: TLSServer, cert: tuple[str, str]) -> httpx.Response:
    with server.client(cert=cert) as mtls:
        return mtls.post("/v1/auth/cert/login", json={"name": "web"})


def _setup(server: TLSServer) -> None:
    """pki/ (root, OCSP URL in the AIA, short ocsp_expiry, a client role) and auth/cert/certs/web."""
    with server.client(token=server.root_token) as admin:
        if "pki/" not in admin.get("/v1/sys/mounts").json()["data"]:
            _ok(admin.post("/v1/sys/mounts/pki", json={"type": "pki", "config": {"max_lease_ttl": "87600h"}}))
            _ok(
                admin.post(
                    "/v1/pki/root/generate/internal",
                    json={"common_name": "Strongroom OCSP Root", "ttl": "8760h"},
                )
            )
            _ok(admin.post("/v1/pki/config/urls", json={"ocsp_servers": [f"{server.addr}/v1/pki/ocsp"]}))
            _ok(admin.post("/v1/pki/config/crl", json={"ocsp_expiry": f"{OCSP_EXPIRY_SECONDS}s"}))
            _ok(
                admin.post(
                    "/v1/pki/roles/clients",
                    json={
                        "allow_any_name": True,
                        "client_flag": True,
                        "server_flag": False,
                        "max_ttl": "24h",
                    },
                )
            )
        if "cert/" not in admin.get("/v1/sys/auth").json()["data"]:
            _ok(admin.post("/v1/sys/auth/cert", json={"type": "cert"}))
        root = _ok(admin.get("/v1/pki/cert/ca")).json()["data"]["certificate"]
        _ok(admin.delete("/v1/auth/cert/certs/web"))
        _ok(
            admin.post(
                "/v1/auth/cert/certs/web",
                json={
                    "certificate": root,
                    "ocsp_enabled": True,
                    "ocsp_ca_certificates": Path(server.ca_file).read_text(),
                    "ocsp_max_retries": 1,
                },
            )
        )


def _issue(server: TLSServer, *names: str) -> dict[str, dict[str, str]]:
    with server.client(token=server.root_token) as admin:
        return {
            name: _ok(
                admin.post("/v1/pki/issue/clients", json={"common_name": f"web-{name}", "ttl": "1h"})
            ).json()["data"]
            for name in names
        }


def test_revoked_client_cert_is_refused_through_the_pki_ocsp_responder(server: TLSServer) -> None:
    _setup(server)
    issued = _issue(server, "alice", "bob", "carol")
    with server.client(token=server.root_token) as admin:
        entry = _ok(admin.get("/v1/auth/cert/certs/web")).json()["data"]
        assert entry["ocsp_enabled"] is True and entry["ocsp_fail_open"] is False

    certs = {name: _write_client(server, name, data) for name, data in issued.items()}

    # the issued certificates name the responder; an unrevoked one logs in
    r = _ok(_login(server, certs["alice"]))
    assert r.json()["auth"]["metadata"]["common_name"] == "web-alice"
    _ok(_login(server, certs["alice"]))  # and again (cached or asked afresh: good either way)

    # bob is revoked before his status was ever asked: refused at once
    with server.client(token=server.root_token) as admin:
        _ok(admin.post("/v1/pki/revoke", json={"serial_number": issued["bob"]["serial_number"]}))
    r = _login(server, certs["bob"])
    assert r.status_code == 403, r.text
    assert "has been revoked" in r.text

    # alice's good answer may be cached: it must stop counting once its next_update passes
    with server.client(token=server.root_token) as admin:
        _ok(admin.post("/v1/pki/revoke", json={"serial_number": issued["alice"]["serial_number"]}))
    deadline = time.monotonic() + OCSP_EXPIRY_SECONDS + 10
    while True:
        r = _login(server, certs["alice"])
        if r.status_code == 403:
            break
        assert r.status_code == 200, r.text
        assert time.monotonic() < deadline, "the revocation was never seen"
        time.sleep(0.5)
    assert "has been revoked" in r.text

    # a certificate nobody revoked still logs in
    assert _ok(_login(server, certs["carol"])).json()["auth"]["metadata"]["common_name"] == "web-carol"


def test_ocsp_responder_unreachable_fails_closed_unless_fail_open(server: TLSServer) -> None:
    """The same role pointed at a closed port: refused; with ocsp_fail_open the login proceeds."""
    _setup(server)
    cert = _write_client(server, "dave", _issue(server, "dave")["dave"])
    with server.client(token=server.root_token) as admin:
        _ok(
            admin.post(
                "/v1/auth/cert/certs/web",
                json={"ocsp_servers_override": "http://127.0.0.1:9/ocsp", "ocsp_max_retries": 0},
            )
        )
    r = _login(server, cert)
    assert r.status_code == 400, r.text
    assert "could not be reached" in r.text
    with server.client(token=server.root_token) as admin:
        _ok(admin.post("/v1/auth/cert/certs/web", json={"ocsp_fail_open": True}))
    _ok(_login(server, cert))
