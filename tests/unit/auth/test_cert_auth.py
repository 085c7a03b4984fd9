"""The cert auth method: trusted entries, chain checks, constraints, CRLs, and the CVE regressions.

Client certificates reach the app the way the TLS server hands them over, as
``scope["extensions"]["tls"]["client_cert_chain"]`` (PEM, leaf first): a tiny ASGI
wrapper adds them, so every login goes through the real HTTP layer.
"""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from strongroom.auth.cert import CertBackend, glob_match
from strongroom.core.mounts import MountEntry
from strongroom.logical.errors import PermissionDenied
from strongroom.logical.request import Auth, Connection, Operation, Request
from strongroom.testing import Harness, running_core

NOW = dt.datetime.now(dt.UTC)


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
    key: ec.EllipticCurvePrivateKey | None = None,
    serial: int | None = None,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
    dns: tuple[str, ...] = (),
    uris: tuple[str, ...] = (),
    emails: tuple[str, ...] = (),
    ou: str = "",
    extra: tuple[tuple[str, bytes], ...] = (),
    client_auth: bool = True,
) -> Issued:
    key = key or ec.generate_private_key(ec.SECP256R1())
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if ou:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ou))
    subject = x509.Name(attrs)
    b = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.cert.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(serial or x509.random_serial_number())
        .not_valid_before(not_before or NOW - dt.timedelta(hours=1))
        .not_valid_after(not_after or NOW + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if issuer is not None:
        b = b.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()), critical=False
        )
    if not ca:
        usage = ExtendedKeyUsageOID.CLIENT_AUTH if client_auth else ExtendedKeyUsageOID.SERVER_AUTH
        b = b.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
    sans += [x509.UniformResourceIdentifier(u) for u in uris]
    sans += [x509.RFC822Name(e) for e in emails]
    if sans:
        b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    for oid, value in extra:
        b = b.add_extension(x509.UnrecognizedExtension(x509.ObjectIdentifier(oid), value), critical=False)
    signer = issuer.key if issuer else key
    return Issued(b.sign(signer, hashes.SHA256()), key)


def utf8(text: str) -> bytes:
    raw = text.encode()
    return bytes([0x0C, len(raw)]) + raw


class ClientCerts:
    """ASGI wrapper: present ``chain`` as the connection's client certificates."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.chain: list[str] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and self.chain:
            scope = {
                **scope,
                "scheme": "https",
                "extensions": {"tls": {"client_cert_chain": list(self.chain)}},
            }
        await self.app(scope, receive, send)


@dataclass
class Env:
    h: Harness
    tls: ClientCerts
    client: httpx.AsyncClient
    ca: Issued

    async def call(
        self, method: str, path: str, json: Any = None, token: str | None = None
    ) -> httpx.Response:
        headers = {} if token == "" else {"X-Vault-Token": token or self.h.root_token}
        return await self.client.request(method, "/v1/auth/cert/" + path, json=json, headers=headers)

    async def trust(self, name: str, cert: Issued, **body: Any) -> None:
        r = await self.call("POST", f"certs/{name}", {"certificate": cert.pem, **body})
        assert r.status_code == 204, r.text

    async def login(self, chain: list[Issued], name: str | None = None) -> httpx.Response:
        self.tls.chain = [c.pem for c in chain]
        try:
            return await self.call("POST", "login", {} if name is None else {"name": name}, token="")
        finally:
            self.tls.chain = []


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    async with running_core() as h:
        if h.core.expiration is not None:
            await h.core.expiration.stop()
        await h.core.enable_mount(MountEntry("cert/", "cert", table="auth"))
        wrapper = ClientCerts(h.app)
        transport = httpx.ASGITransport(app=wrapper, client=("127.0.0.1", 12345))  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="http://strongroom.test") as client:
            yield Env(h, wrapper, client, make_cert("Test Root CA", ca=True))


def backend(e: Env) -> CertBackend:
    route = e.h.core.router.get("auth/cert/")
    assert route is not None and isinstance(route.backend, CertBackend)
    return route.backend


def error(r: httpx.Response) -> str:
    return " ".join(r.json().get("errors", []))


# -- certs/ CRUD -------------------------------------------------------------------------------


async def test_cert_entry_crud(env: Env) -> None:
    await env.trust("Web", env.ca, policies="a,b", ttl="1h", allowed_common_names="*.example.com")
    r = await env.call("GET", "certs/web")
    data = r.json()["data"]
    assert data["display_name"] == "web"
    assert data["token_policies"] == ["a", "b"] and data["policies"] == ["a", "b"]
    assert data["token_ttl"] == 3600 and data["ttl"] == 3600
    assert data["allowed_common_names"] == ["*.example.com"]
    assert data["certificate"] == env.ca.pem
    r = await env.client.request("LIST", "/v1/auth/cert/certs", headers={"X-Vault-Token": env.h.root_token})
    assert r.json()["data"]["keys"] == ["web"]
    assert (await env.call("DELETE", "certs/web")).status_code == 204
    assert (await env.call("GET", "certs/web")).status_code == 404


async def test_cert_entry_validation(env: Env) -> None:
    r = await env.call("POST", "certs/bad", {"certificate": "nope"})
    assert r.status_code == 400 and "failed to parse certificate" in error(r)
    server_only = make_cert("srv", issuer=env.ca, client_auth=False)
    r = await env.call("POST", "certs/srv", {"certificate": server_only.pem})
    assert r.status_code == 400 and "client authentication" in error(r)
    r = await env.call("POST", "certs/x", {"certificate": env.ca.pem, "required_extensions": "1.2.3"})
    assert r.status_code == 400


async def test_config_roundtrip(env: Env) -> None:
    r = await env.call("GET", "config")
    assert r.json()["data"] == {
        "disable_binding": False,
        "enable_identity_alias_metadata": False,
        "ocsp_cache_size": 100,
    }
    assert (await env.call("POST", "config", {"disable_binding": True})).status_code == 204
    assert (await env.call("GET", "config")).json()["data"]["disable_binding"] is True
    assert (await env.call("POST", "config", {"ocsp_cache_size": 1})).status_code == 400


# -- login -------------------------------------------------------------------------------------


async def test_no_client_certificate_is_400(env: Env) -> None:
    await env.trust("web", env.ca)
    r = await env.login([])
    assert r.status_code == 400 and error(r) == "client certificate must be supplied"


async def test_ca_trusted_login_and_token_use(env: Env) -> None:
    await env.trust("web", env.ca, token_policies="reader", display_name="webapps", token_ttl="10m")
    leaf = make_cert("app.example.com", issuer=env.ca, dns=("app.example.com",))
    r = await env.login([leaf])
    assert r.status_code == 200, r.text
    auth = r.json()["auth"]
    assert auth["policies"] == ["default", "reader"]
    assert auth["lease_duration"] == 600
    meta = auth["metadata"]
    assert meta["cert_name"] == "web" and meta["common_name"] == "app.example.com"
    assert meta["serial_number"] == str(leaf.cert.serial_number)
    skid = leaf.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    assert meta["subject_key_id"] == ":".join(f"{b:02x}" for b in skid)
    assert meta["authority_key_id"]
    r = await env.client.get("/v1/auth/token/lookup-self", headers={"X-Vault-Token": auth["client_token"]})
    assert r.status_code == 200 and r.json()["data"]["display_name"] == "cert-webapps"


async def test_intermediate_presented_in_chain(env: Env) -> None:
    inter = make_cert("Intermediate", issuer=env.ca, ca=True)
    leaf = make_cert("deep", issuer=inter)
    await env.trust("root", env.ca)
    assert (await env.login([leaf])).status_code == 400  # intermediate missing
    assert (await env.login([leaf, inter])).status_code == 200


async def test_leaf_trusted_login(env: Env) -> None:
    leaf = make_cert("pinned", issuer=env.ca)
    await env.trust("pinned", leaf)
    assert (await env.login([leaf])).status_code == 200
    other = make_cert("pinned", issuer=env.ca)  # same CA, another leaf: not trusted
    assert (await env.login([other])).status_code == 400


async def test_same_serial_same_subject_other_key_refused(env: Env) -> None:
    """CVE-2024-2048 / CVE-2025-6037: a trusted leaf is matched on its bytes, not serial and subject."""
    leaf = make_cert("pinned", issuer=env.ca, serial=4242)
    await env.trust("pinned", leaf)
    forged_ca = make_cert("Test Root CA", ca=True)  # same issuer name, another key
    forged = make_cert("pinned", issuer=forged_ca, serial=4242)
    r = await env.login([forged])
    assert r.status_code == 403
    self_signed = make_cert("pinned", serial=4242)
    assert (await env.login([self_signed])).status_code in (400, 403)


async def test_expired_leaf_refused(env: Env) -> None:
    await env.trust("web", env.ca)
    expired = make_cert(
        "old", issuer=env.ca, not_before=NOW - dt.timedelta(days=10), not_after=NOW - dt.timedelta(days=1)
    )
    r = await env.login([expired])
    assert r.status_code == 400 and "invalid certificate" in error(r)
    await env.trust("pinned", expired)
    assert (await env.login([expired])).status_code == 400


async def test_expired_ca_refused(env: Env) -> None:
    old_ca = make_cert("Old CA", ca=True, not_after=NOW - dt.timedelta(minutes=1))
    await env.trust("old", old_ca)
    assert (await env.login([make_cert("x", issuer=old_ca)])).status_code == 400


async def test_foreign_ca_refused(env: Env) -> None:
    await env.trust("web", env.ca)
    other_ca = make_cert("Other CA", ca=True)
    r = await env.login([make_cert("intruder", issuer=other_ca)])
    assert r.status_code == 400 and error(r) == "invalid certificate or no client certificate supplied"
    # presenting the foreign CA as an "intermediate" does not help either
    assert (await env.login([make_cert("intruder", issuer=other_ca), other_ca])).status_code == 400


async def test_server_auth_only_leaf_refused(env: Env) -> None:
    await env.trust("web", env.ca)
    assert (await env.login([make_cert("srv", issuer=env.ca, client_auth=False)])).status_code == 400


async def test_self_signed_ca_client_cert(env: Env) -> None:
    """hvac's shape: a self-signed CA:TRUE certificate trusted as itself and presented as the leaf."""
    await env.trust("self", env.ca)
    assert (await env.login([env.ca])).status_code == 200


@pytest.mark.parametrize(
    ("constraint", "value", "good", "bad"),
    [
        ("allowed_common_names", "*.example.com", {"cn": "a.example.com"}, {"cn": "a.example.org"}),
        ("allowed_names", "a.example.com", {"cn": "x", "dns": ("a.example.com",)}, {"cn": "x"}),
        ("allowed_dns_sans", "*.svc", {"dns": ("api.svc",)}, {"dns": ("api.other",)}),
        (
            "allowed_email_sans",
            "*@example.com",
            {"emails": ("me@example.com",)},
            {"emails": ("me@evil.com",)},
        ),
        (
            "allowed_uri_sans",
            "spiffe://cluster/*",
            {"uris": ("spiffe://cluster/ns/a",)},
            {"uris": ("spiffe://x/a",)},
        ),
        ("allowed_organizational_units", "ops,dev", {"ou": "dev"}, {"ou": "sales"}),
        (
            "required_extensions",
            "1.2.3.4.5:team-*",
            {"extra": (("1.2.3.4.5", utf8("team-blue")),)},
            {"extra": (("1.2.3.4.5", utf8("other")),)},
        ),
    ],
)
async def test_constraints_both_ways(
    env: Env, constraint: str, value: str, good: dict[str, Any], bad: dict[str, Any]
) -> None:
    await env.trust("web", env.ca, **{constraint: value})
    good_cert = make_cert(good.pop("cn", "client"), issuer=env.ca, **good)
    bad_cert = make_cert(bad.pop("cn", "client"), issuer=env.ca, **bad)
    assert (await env.login([good_cert])).status_code == 200
    r = await env.login([bad_cert])
    assert r.status_code == 400 and "no chain matching all constraints" in error(r)


async def test_required_extension_missing_refused(env: Env) -> None:
    await env.trust("web", env.ca, required_extensions=["1.2.3.4.5:*"])
    assert (await env.login([make_cert("c", issuer=env.ca)])).status_code == 400


async def test_metadata_extensions_and_alias_metadata(env: Env) -> None:
    await env.trust("web", env.ca, allowed_metadata_extensions="1.2.3.4.6")
    await env.call("POST", "config", {"enable_identity_alias_metadata": True})
    leaf = make_cert("c", issuer=env.ca, extra=(("1.2.3.4.6", utf8("blue")),))
    r = await env.login([leaf])
    assert r.json()["auth"]["metadata"]["1-2-3-4-6"] == "blue"


async def test_name_selection(env: Env) -> None:
    other_ca = make_cert("Other CA", ca=True)
    await env.trust("a", env.ca, token_policies="pa")
    await env.trust("b", other_ca, token_policies="pb")
    leaf_b = make_cert("client", issuer=other_ca)
    r = await env.login([leaf_b])
    assert r.status_code == 200 and r.json()["auth"]["metadata"]["cert_name"] == "b"
    r = await env.login([leaf_b], name="b")
    assert r.status_code == 200 and "pb" in r.json()["auth"]["policies"]
    assert (await env.login([leaf_b], name="a")).status_code == 400
    assert (await env.login([leaf_b], name="missing")).status_code == 400


async def test_bound_cidrs(env: Env) -> None:
    await env.trust("web", env.ca, token_bound_cidrs="10.0.0.0/8")
    assert (await env.login([make_cert("c", issuer=env.ca)])).status_code == 403


async def test_ocsp_without_responder_url_fails_closed_unless_fail_open(env: Env) -> None:
    """No override and no AIA OCSP URL: the status is unknown (more in test_cert_ocsp.py)."""
    await env.trust("web", env.ca, ocsp_enabled=True)
    leaf = make_cert("c", issuer=env.ca)
    assert (await env.login([leaf])).status_code == 400
    await env.trust("web", env.ca, ocsp_fail_open=True)
    assert (await env.login([leaf])).status_code == 200


# -- CRLs --------------------------------------------------------------------------------------


def make_crl(ca: Issued, serials: list[int]) -> x509.CertificateRevocationList:
    b = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.cert.subject)
        .last_update(NOW - dt.timedelta(minutes=5))
        .next_update(NOW + dt.timedelta(days=1))
    )
    for serial in serials:
        b = b.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(NOW).build()
        )
    return b.sign(ca.key, hashes.SHA256())


async def test_crl_revocation_refuses_login(env: Env) -> None:
    await env.trust("web", env.ca)
    revoked = make_cert("gone", issuer=env.ca)
    fine = make_cert("fine", issuer=env.ca)
    assert (await env.login([revoked])).status_code == 200
    crl = make_crl(env.ca, [revoked.cert.serial_number])
    pem = crl.public_bytes(serialization.Encoding.PEM).decode()
    assert (await env.call("POST", "crls/ca", {"crl": pem})).status_code == 204
    r = await env.call("GET", "crls/ca")
    assert r.json()["data"]["serials"] == {str(revoked.cert.serial_number): {}}
    r = await env.login([revoked])
    assert r.status_code == 400 and "no chain matching" in error(r)
    assert (await env.login([fine])).status_code == 200
    # a CRL of another CA listing the same serial does not revoke this one
    other = make_cert("Other CA", ca=True)
    assert (await env.call("DELETE", "crls/ca")).status_code == 204
    other_crl = make_crl(other, [revoked.cert.serial_number]).public_bytes(serialization.Encoding.DER)
    assert (
        await env.call("POST", "crls/other", {"crl": base64.b64encode(other_crl).decode()})
    ).status_code == 204
    assert (await env.login([revoked])).status_code == 200
    assert (await env.call("DELETE", "crls/nope")).status_code == 400
    assert (await env.call("POST", "crls/bad", {"crl": "garbage"})).status_code == 400


async def test_revoked_pinned_leaf_refused(env: Env) -> None:
    leaf = make_cert("pinned", issuer=env.ca)
    await env.trust("pinned", leaf)
    crl = make_crl(env.ca, [leaf.cert.serial_number]).public_bytes(serialization.Encoding.PEM).decode()
    await env.call("POST", "crls/ca", {"crl": crl})
    assert (await env.login([leaf])).status_code == 400


# -- renewal binding (row 11) ------------------------------------------------------------------


async def test_renew_handler_binds_to_login_certificate(env: Env) -> None:
    """The RENEW handler refuses a sibling certificate; core does not route token renewals here yet."""
    await env.trust("web", env.ca, token_policies="reader")
    leaf = make_cert("c", issuer=env.ca)
    sibling = make_cert("c", issuer=env.ca)
    auth_json = (await env.login([leaf])).json()["auth"]
    b = backend(env)
    # what core would hand back: the login's auth with its internal data
    login_resp = await b.handle_request(
        Request(
            operation=Operation.UPDATE,
            path="login",
            storage=b.storage,
            connection=Connection(tls=True, client_cert_chain=[leaf.pem]),
            unauthenticated=True,
        )
    )
    assert login_resp is not None and login_resp.auth is not None
    stored = login_resp.auth

    def renew(chain: list[str], auth: Auth) -> Request:
        return Request(
            operation=Operation.RENEW,
            path="login",
            storage=b.storage,
            connection=Connection(tls=True, client_cert_chain=chain),
            auth=auth,
        )

    ok = await b.handle_request(renew([leaf.pem], stored))
    assert ok is not None and ok.auth is not None
    with pytest.raises(PermissionDenied):
        await b.handle_request(renew([sibling.pem], stored))
    await env.call("POST", "config", {"disable_binding": True})
    assert await b.handle_request(renew([sibling.pem], stored)) is not None
    assert auth_json["metadata"]["cert_name"] == "web"


def test_glob_matches_go_glob() -> None:
    assert glob_match("*", "")
    assert glob_match("*.example.com", "a.example.com")
    assert not glob_match("*.example.com", "a.example.org")
    assert glob_match("a*c*e", "abcde")
    assert not glob_match("a*c*e", "abcdf")
    assert glob_match("exact", "exact") and not glob_match("exact", "exactly")
    assert glob_match("pre*", "prefix") and not glob_match("pre*", "xprefix")
