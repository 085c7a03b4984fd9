"""Kubernetes login against a real HTTPS TokenReview endpoint on loopback, then cert-manager's PKI sign.

The test plays the cluster: it holds the service-account signing key (RS256), issues JWTs
shaped like projected service-account tokens, and serves ``/apis/authentication.k8s.io/v1/tokenreviews``
over TLS (a server certificate for 127.0.0.1 from a test CA) in a thread, validating each
token's signature, expiry and audiences the way the API server does. Strongroom runs
in-process (``running_core``); only its outbound TokenReview call crosses a socket, so
this checks the real httpx + TLS path: the CA pinned from ``kubernetes_ca_cert``, the
reviewer bearer, the request body, and the answer's use.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import ssl
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from strongroom.auth.kubernetes import KubernetesBackend
from strongroom.testing import Harness, running_core

ISSUER = "https://kubernetes.default.svc.cluster.local"
API_AUDIENCE = "https://kubernetes.default.svc.cluster.local"
VAULT_AUDIENCE = "vault://cert-manager/vault-issuer"
SA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
ROGUE_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
UIDS: dict[tuple[str, str], str] = {}


def sa_token(ns: str, sa: str, aud: list[str], exp_in: int = 600, key: rsa.RSAPrivateKey = SA_KEY) -> str:
    """A token like the kubelet's projected service-account token (TokenRequest API)."""
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "sub": f"system:serviceaccount:{ns}:{sa}",
        "aud": aud,
        "iat": now - 5,
        "nbf": now - 5,
        "exp": now + exp_in,
        "kubernetes.io": {
            "namespace": ns,
            "pod": {"name": f"{sa}-7d9c8b-xk2p4", "uid": str(uuid.uuid4())},
            "serviceaccount": {"name": sa, "uid": UIDS.setdefault((ns, sa), str(uuid.uuid4()))},
            "warnafter": now + exp_in // 2,
        },
    }
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": "sa-key-1"})


def _cert(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Certificate | None,
    issuer_key: ec.EllipticCurvePrivateKey,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(
            issuer.subject if issuer else x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
        )
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
    )
    if issuer is None:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
    else:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
        ).add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    return builder.sign(issuer_key, hashes.SHA256())


class FakeAPIServer:
    """TokenReview over HTTPS, validating real signed JWTs; records what it was asked."""

    def __init__(self, tmp: Path, reviewer_token: str) -> None:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        self.ca = _cert("test-cluster-ca", ca_key, None, ca_key)
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _cert("kube-apiserver", key, self.ca, ca_key)
        cert_file, key_file = tmp / "apiserver.crt", tmp / "apiserver.key"
        cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        self.ca_pem = self.ca.public_bytes(serialization.Encoding.PEM).decode()
        self.reviewer_token = reviewer_token
        self.reviews: list[dict[str, Any]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
                if self.path != "/apis/authentication.k8s.io/v1/tokenreviews":
                    self._send(404, {"kind": "Status", "status": "Failure", "code": 404})
                elif self.headers.get("Authorization") != "Bearer " + server.reviewer_token:
                    self._send(401, {"kind": "Status", "status": "Failure", "code": 401})
                else:
                    server.reviews.append(body)
                    self._send(201, server.review(body))

            def _send(self, status: int, doc: dict[str, Any]) -> None:
                raw = json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_file, key_file)
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def review(self, body: dict[str, Any]) -> dict[str, Any]:
        """The API server's token authenticator: signature, time, audiences (default: its own)."""
        spec = body.get("spec") or {}
        wanted = spec.get("audiences") or [API_AUDIENCE]
        out: dict[str, Any] = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview"}
        try:
            claims = jwt.decode(
                spec.get("token", ""),
                SA_KEY.public_key(),
                algorithms=["RS256"],
                audience=wanted,
                issuer=ISSUER,
                options={"require": ["exp", "iat", "sub"]},
            )
        except jwt.PyJWTError:
            out["status"] = {"authenticated": False, "error": "[invalid bearer token, token lookup failed]"}
            return out
        k8s = claims["kubernetes.io"]
        aud = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
        out["status"] = {
            "authenticated": True,
            "user": {
                "username": claims["sub"],
                "uid": k8s["serviceaccount"]["uid"],
                "groups": ["system:serviceaccounts", f"system:serviceaccounts:{k8s['namespace']}"],
                "extra": {"authentication.kubernetes.io/pod-name": [k8s["pod"]["name"]]},
            },
            "audiences": [a for a in wanted if a in aud],
        }
        return out

    def __enter__(self) -> FakeAPIServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def apiserver(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeAPIServer]:
    # a real network client, and no in-pod defaults leaking in from the machine running the test
    monkeypatch.setattr(KubernetesBackend, "transport", None)
    monkeypatch.setattr(KubernetesBackend, "local_ca_cert_path", str(tmp_path / "no-ca.crt"))
    monkeypatch.setattr(KubernetesBackend, "local_jwt_path", str(tmp_path / "no-token"))
    with FakeAPIServer(
        tmp_path, sa_token("kube-system", "vault-token-reviewer", [API_AUDIENCE], 3600)
    ) as server:
        yield server


async def _setup(h: Harness, server: FakeAPIServer) -> None:
    async def ok(method: str, path: str, body: Any) -> None:
        r = await h.call(method, path, json=body)
        assert r.status_code in (200, 204), (path, r.text)

    await ok("POST", "sys/mounts/pki", {"type": "pki", "config": {"max_lease_ttl": "87600h"}})
    await ok("POST", "pki/root/generate/internal", {"common_name": "example.com Root", "ttl": "8760h"})
    await ok(
        "POST",
        "pki/roles/cert-manager",
        {
            "allowed_domains": "example.com",
            "allow_subdomains": True,
            "allow_bare_domains": True,
            "key_type": "any",
            "max_ttl": "72h",
        },
    )
    await ok(
        "PUT",
        "sys/policies/acl/pki-sign",
        {"policy": 'path "pki/sign/cert-manager" { capabilities = ["create", "update"] }'},
    )
    await ok("POST", "sys/auth/kubernetes", {"type": "kubernetes"})
    await ok(
        "POST",
        "auth/kubernetes/config",
        {
            "kubernetes_host": server.url,
            "kubernetes_ca_cert": server.ca_pem,
            "token_reviewer_jwt": server.reviewer_token,
            "disable_local_ca_jwt": True,
        },
    )
    await ok(
        "POST",
        "auth/kubernetes/role/issuer",
        {
            "bound_service_account_names": ["vault-issuer"],
            "bound_service_account_namespaces": ["cert-manager"],
            "audience": VAULT_AUDIENCE,
            "token_policies": ["pki-sign"],
            "token_ttl": "20m",
        },
    )


async def _login(h: Harness, token: str, role: str = "issuer") -> Any:
    return await h.client.post("/v1/auth/kubernetes/login", json={"role": role, "jwt": token})


async def test_kubernetes_login_then_pki_sign(apiserver: FakeAPIServer) -> None:
    async with running_core() as h:
        await _setup(h, apiserver)
        token = sa_token("cert-manager", "vault-issuer", [VAULT_AUDIENCE, ISSUER])
        r = await _login(h, token)
        assert r.status_code == 200, r.text
        auth = r.json()["auth"]
        assert auth["metadata"]["service_account_namespace"] == "cert-manager"
        assert auth["metadata"]["service_account_uid"] == UIDS[("cert-manager", "vault-issuer")]
        assert auth["policies"] == ["default", "pki-sign"]
        review = apiserver.reviews[-1]
        assert review["kind"] == "TokenReview" and review["spec"] == {
            "token": token,
            "audiences": [VAULT_AUDIENCE],
        }

        # cert-manager's flow: sign a CSR with the Kubernetes-issued token
        key = ec.generate_private_key(ec.SECP256R1())
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "www.example.com")]))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("www.example.com")]), critical=False)
            .sign(key, hashes.SHA256())
        )
        csr_pem = csr.public_bytes(serialization.Encoding.PEM).decode()
        client_token = auth["client_token"]
        r = await h.call(
            "POST",
            "pki/sign/cert-manager",
            json={"csr": csr_pem, "common_name": "www.example.com", "ttl": "1h"},
            token=client_token,
        )
        assert r.status_code == 200, r.text
        cert = x509.load_pem_x509_certificate(r.json()["data"]["certificate"].encode())
        assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "www.example.com"
        assert cert.public_key().public_numbers() == key.public_key().public_numbers()  # type: ignore[union-attr]
        # the policy allows signing, nothing else
        r = await h.call(
            "POST", "pki/issue/cert-manager", json={"common_name": "www.example.com"}, token=client_token
        )
        assert r.status_code == 403
        # and the role still decides what may be signed (the CSR's own name is used, as in Vault)
        evil = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "www.evil.org")]))
            .sign(key, hashes.SHA256())
        )
        evil_pem = evil.public_bytes(serialization.Encoding.PEM).decode()
        r = await h.call("POST", "pki/sign/cert-manager", json={"csr": evil_pem}, token=client_token)
        assert r.status_code == 400


async def test_kubernetes_login_refusals(apiserver: FakeAPIServer) -> None:
    async with running_core() as h:
        await _setup(h, apiserver)
        cases = {
            "unknown service account": sa_token("cert-manager", "intruder", [VAULT_AUDIENCE]),
            "wrong namespace": sa_token("default", "vault-issuer", [VAULT_AUDIENCE]),
            "expired": sa_token("cert-manager", "vault-issuer", [VAULT_AUDIENCE], exp_in=-3600),
            "wrong audience": sa_token("cert-manager", "vault-issuer", [API_AUDIENCE]),
            # claims are right, but the cluster did not sign it: only the TokenReview can tell
            "forged": sa_token("cert-manager", "vault-issuer", [VAULT_AUDIENCE], key=ROGUE_KEY),
        }
        for label, token in cases.items():
            r = await _login(h, token)
            assert r.status_code == 403, (label, r.text)
            assert token not in r.text, label
        assert len(apiserver.reviews) == 1  # only the forged token got as far as the API server
        r = await _login(h, sa_token("cert-manager", "vault-issuer", [VAULT_AUDIENCE]), role="missing")
        assert r.status_code == 400


async def test_kubernetes_tls_is_pinned_to_the_configured_ca(apiserver: FakeAPIServer) -> None:
    async with running_core() as h:
        await _setup(h, apiserver)
        other_key = ec.generate_private_key(ec.SECP256R1())
        other_ca = (
            _cert("some-other-ca", other_key, None, other_key)
            .public_bytes(serialization.Encoding.PEM)
            .decode()
        )
        r = await h.call(
            "POST",
            "auth/kubernetes/config",
            json={
                "kubernetes_host": apiserver.url,
                "kubernetes_ca_cert": other_ca,
                "token_reviewer_jwt": apiserver.reviewer_token,
            },
        )
        assert r.status_code == 204
        r = await _login(h, sa_token("cert-manager", "vault-issuer", [VAULT_AUDIENCE]))
        assert r.status_code == 403
        assert not apiserver.reviews
