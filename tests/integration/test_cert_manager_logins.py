"""cert-manager's Vault issuer, replayed: log in the way it does, then sign a CSR on a PKI role.

Requests mimic hashicorp/vault/api as cert-manager uses it (real-clients.md §2): a
JSON body written by Go's encoder (trailing newline), no Content-Type, the
``X-Vault-Request: true`` header, and every sign parameter as a string.
"""

from __future__ import annotations

import json

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from strongroom.core.mounts import MountConfig, MountEntry
from strongroom.testing import Harness, running_core


def _go_json(body: dict) -> bytes:
    return json.dumps(body).encode() + b"\n"


async def _setup_pki(h: Harness) -> None:
    # cert-manager's e2e add-on mounts PKI with a long max_lease_ttl before generating the root
    await h.core.enable_mount(MountEntry("pki/", "pki", config=MountConfig(max_lease_ttl=87600 * 3600)))
    r = await h.call(
        "POST",
        "pki/root/generate/internal",
        json={"common_name": "cm root", "ttl": "87600h", "key_type": "ec", "key_bits": 256},
    )
    assert r.status_code == 200, r.text
    role = {
        "allow_any_name": "true",
        "max_ttl": "2160h",
        "key_type": "any",
        "require_cn": "false",
        "use_csr_sans": "true",
        "enforce_hostnames": "false",
        "allow_bare_domains": "true",
    }
    assert (await h.call("POST", "pki/roles/cm", json=role)).status_code in (200, 204)
    policy = 'path "pki/sign/cm" { capabilities = ["create", "update"] }'
    await h.core.policies.put("cert-manager", policy)


def _csr(name: str) -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM).decode()


async def _sign_as(h: Harness, token: str) -> None:
    body = {
        "common_name": "app.example.com",
        "alt_names": "app.example.com",
        "ip_sans": "",
        "uri_sans": "",
        "ttl": "2160h0m0s",
        "csr": _csr("app.example.com"),
        "exclude_cn_from_sans": "true",
    }
    r = await h.client.post(
        "/v1/pki/sign/cm",
        content=_go_json(body),
        headers={"X-Vault-Token": token, "X-Vault-Request": "true"},
    )
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    leaf = x509.load_pem_x509_certificate(data["certificate"].encode())
    issuer = x509.load_pem_x509_certificate(data["issuing_ca"].encode())
    leaf.verify_directly_issued_by(issuer)
    assert data["ca_chain"], "cert-manager stores the chain it is given"


async def test_approle_login_then_sign() -> None:
    async with running_core() as h:
        await _setup_pki(h)
        await h.core.enable_mount(MountEntry("approle/", "approle", table="auth"))
        r = await h.call(
            "POST", "auth/approle/role/cm", json={"token_period": "24h", "token_policies": ["cert-manager"]}
        )
        assert r.status_code in (200, 204), r.text
        role_id = (await h.call("GET", "auth/approle/role/cm/role-id")).json()["data"]["role_id"]
        secret_id = (await h.call("POST", "auth/approle/role/cm/secret-id")).json()["data"]["secret_id"]
        r = await h.client.post(
            "/v1/auth/approle/login",
            content=_go_json({"role_id": role_id, "secret_id": secret_id}),
            headers={"X-Vault-Request": "true"},
        )
        assert r.status_code == 200, r.text
        auth = r.json()["auth"]
        assert auth["client_token"] and "cert-manager" in auth["policies"]
        await _sign_as(h, auth["client_token"])
        # a token login whose policy does not allow the path is refused
        r = await h.client.post(
            "/v1/pki/sign/other",
            content=_go_json({"csr": _csr("x.example.com")}),
            headers={"X-Vault-Token": auth["client_token"], "X-Vault-Request": "true"},
        )
        assert r.status_code == 403


async def test_token_from_secret_then_sign() -> None:
    async with running_core() as h:
        await _setup_pki(h)
        r = await h.call("POST", "auth/token/create", json={"policies": ["cert-manager"], "ttl": "1h"})
        await _sign_as(h, r.json()["auth"]["client_token"])


async def test_health_probe_codes() -> None:
    async with running_core() as h:
        r = await h.client.get("/v1/sys/health")
        assert r.status_code == 200  # cert-manager reads only the status code
        await h.core.seal()
        assert (await h.client.get("/v1/sys/health")).status_code == 503


async def _asgi_post(
    h: Harness, path: str, body: bytes, headers: dict[str, str], chain: list[str]
) -> tuple[int, dict]:
    """A POST as it arrives over mTLS: the TLS layer hands the presented chain to the app."""
    status, raw = await h.raw("POST", path.encode(), body, headers, client_cert_chain=chain)
    return status, json.loads(raw or b"{}")


async def test_client_certificate_login_then_sign() -> None:
    async with running_core() as h:
        await _setup_pki(h)
        # cert-manager's own client certificate, from an issuing role (key_type "any" only signs)
        role = {"allow_any_name": "true", "key_type": "ec", "client_flag": "true", "max_ttl": "24h"}
        assert (await h.call("POST", "pki/roles/clients", json=role)).status_code in (200, 204)
        r = await h.call(
            "POST", "pki/issue/clients", json={"common_name": "cert-manager.example.com", "ttl": "1h"}
        )
        assert r.status_code == 200, r.text
        issued = r.json()["data"]
        await h.core.enable_mount(MountEntry("cert/", "cert", table="auth"))
        r = await h.call(
            "POST",
            "auth/cert/certs/cm",
            json={"certificate": issued["issuing_ca"], "token_policies": "cert-manager"},
        )
        assert r.status_code in (200, 204), r.text
        status, body = await _asgi_post(
            h,
            "/v1/auth/cert/login",
            _go_json({"name": ""}),
            {"X-Vault-Request": "true"},
            [issued["certificate"]],
        )
        assert status == 200, body
        await _sign_as(h, body["auth"]["client_token"])
        # a certificate from another CA is refused
        other = await h.call(
            "POST", "pki/root/rotate/internal", json={"common_name": "other root", "key_type": "ec"}
        )
        assert other.status_code == 200, other.text
        status, body = await _asgi_post(
            h, "/v1/auth/cert/login", _go_json({"name": ""}), {}, [other.json()["data"]["certificate"]]
        )
        assert status in (400, 403), body
