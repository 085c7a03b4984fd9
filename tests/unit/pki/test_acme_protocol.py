"""ACME in the PKI engine, end to end through the HTTP app with a real http-01 responder.

The responder listens on 127.0.0.1; the mount permits 127.0.0.0/8 for validation
(``challenge_permitted_ip_ranges``) and points ``challenge_http_port`` at it, except
in the tests of the safe default.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from acme_testclient import Client, b64, csr_der, eab_jws, problem
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from strongroom.testing import Harness, running_core

BASE = "http://strongroom.test/v1/pki/"


class Responder:
    """An http-01 responder: serves the key authorizations it is given."""

    def __init__(self) -> None:
        self.tokens: dict[str, str] = {}
        self.requests: list[str] = []
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            path = head.split(b" ", 2)[1].decode()
            self.requests.append(path)
            token = path.rsplit("/", 1)[-1]
            body = self.tokens.get(token, "").encode()
            status = b"200 OK" if body else b"404 Not Found"
            writer.write(b"HTTP/1.1 " + status + b"\r\nContent-Length: " + str(len(body)).encode())
            writer.write(b"\r\nConnection: close\r\n\r\n" + body)
            await writer.drain()
        finally:
            writer.close()

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


@pytest.fixture
async def responder() -> AsyncIterator[Responder]:
    r = Responder()
    await r.start()
    yield r
    await r.stop()


async def setup_pki(h: Harness, acme: dict[str, Any]) -> None:
    assert (await h.call("POST", "sys/mounts/pki", json={"type": "pki"})).status_code == 204
    r = await h.call(
        "POST", "pki/root/generate/internal", json={"common_name": "ACME Root", "key_type": "ec"}
    )
    assert r.status_code == 200, r.text
    r = await h.call("POST", "pki/config/cluster", json={"path": BASE.rstrip("/")})
    assert r.status_code == 200, r.text
    r = await h.call(
        "POST", "pki/roles/web", json={"allowed_domains": ["example.test"], "allow_subdomains": True}
    )
    assert r.status_code == 200, r.text
    r = await h.call("POST", "pki/config/acme", json={"enabled": True, **acme})
    assert r.status_code == 200, r.text


@pytest.fixture
async def acme(responder: Responder) -> AsyncIterator[Harness]:
    async with running_core() as h:
        await setup_pki(
            h,
            {"challenge_http_port": responder.port, "challenge_permitted_ip_ranges": ["127.0.0.0/8"]},
        )
        yield h


async def client(h: Harness, directory: str = "acme/") -> Client:
    c = Client(h.client, BASE + directory + "directory")
    await c.load()
    return c


async def counts(h: Harness) -> tuple[int, int]:
    """(accounts, certificates) — what a refused request must not create."""
    r = await h.call("LIST", "pki/acme/mgmt/account/keyid")
    accounts = len(r.json()["data"]["keys"]) if r.status_code == 200 else 0
    r = await h.call("LIST", "pki/certs")
    certs = len(r.json()["data"]["keys"]) if r.status_code == 200 else 0
    return accounts, certs


async def validate_ip_order(c: Client, responder: Responder) -> dict[str, Any]:
    r = await c.order([{"type": "ip", "value": "127.0.0.1"}])
    assert r.status_code == 201, r.text
    order_url = r.headers["location"]
    order = r.json()
    authz = (await c.post(order["authorizations"][0], "")).json()
    challenge = next(ch for ch in authz["challenges"] if ch["type"] == "http-01")
    responder.tokens[challenge["token"]] = c.key_authorization(challenge["token"])
    r = await c.post(challenge["url"], {})
    assert r.status_code == 200, r.text
    assert f'<{order["authorizations"][0]}>;rel="up"' in r.headers.get_list("link")
    assert (await c.poll(order["authorizations"][0], ("valid", "invalid")))["status"] == "valid"
    order = await c.poll(order_url, ("ready", "invalid"))
    order["url"] = order_url
    return order


# -- the directory and nonces -----------------------------------------------------------------


async def test_directory_lists_every_resource_and_ari(acme: Harness) -> None:
    c = await client(acme, "roles/web/acme/")
    base = BASE + "roles/web/acme/"
    assert c.directory["newNonce"] == base + "new-nonce"
    assert c.directory["newAccount"] == base + "new-account"
    assert c.directory["newOrder"] == base + "new-order"
    assert c.directory["revokeCert"] == base + "revoke-cert"
    assert c.directory["keyChange"] == base + "key-change"
    assert c.directory["renewalInfo"] == base + "renewal-info"
    assert c.directory["meta"]["externalAccountRequired"] is False
    r = await acme.client.head(c.directory["newNonce"])
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
    r = await acme.client.get(c.directory["newNonce"])
    assert r.status_code == 204 and r.headers["replay-nonce"]
    assert f'<{base}directory>;rel="index"' in r.headers.get_list("link")


async def test_acme_disabled_is_404_and_needs_cluster_path() -> None:
    async with running_core() as h:
        assert (await h.call("POST", "sys/mounts/pki", json={"type": "pki"})).status_code == 204
        r = await h.client.get("/v1/pki/acme/directory")
        assert r.status_code == 404
        problem(r, "malformed")
        assert (await h.call("POST", "pki/config/acme", json={"enabled": True})).status_code == 200
        r = await h.client.get("/v1/pki/acme/directory")
        assert r.status_code == 404 and "config/cluster" in r.json()["detail"]


async def test_nonces_are_single_use(acme: Harness) -> None:
    c = await client(acme)
    nonce = await c.nonce()
    r = await c.post(c.directory["newAccount"], {"termsOfServiceAgreed": True}, use_jwk=True, nonce=nonce)
    assert r.status_code == 201
    c.kid = r.headers["location"]
    r = await c.post(
        c.directory["newOrder"], {"identifiers": [{"type": "dns", "value": "a.example.test"}]}, nonce=nonce
    )
    problem(r, "badNonce", 400)
    assert r.headers["replay-nonce"] != nonce


# -- the happy path ---------------------------------------------------------------------------


async def test_http01_order_to_certificate_then_revoke(acme: Harness, responder: Responder) -> None:
    c = await client(acme)
    r = await c.register(contact=["mailto:ops@example.test"])
    assert r.status_code == 201, r.text
    assert r.json()["status"] == "valid" and r.json()["contact"] == ["mailto:ops@example.test"]
    again = await c.register(onlyReturnExisting=True)
    assert again.status_code == 200 and again.headers["location"] == c.kid
    order = await validate_ip_order(c, responder)
    assert responder.requests and responder.requests[0].startswith("/.well-known/acme-challenge/")
    csr, _ = csr_der(["127.0.0.1"])
    r = await c.post(order["finalize"], {"csr": b64(csr)})
    assert r.status_code == 200, r.text
    order = await c.poll(order["url"], ("valid", "invalid"))
    assert order["status"] == "valid", order
    r = await c.post(order["certificate"], "")
    assert r.status_code == 200 and r.headers["content-type"] == "application/pem-certificate-chain"
    chain = x509.load_pem_x509_certificates(r.content)
    assert len(chain) == 2
    leaf = chain[0]
    assert leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value == x509.ExtendedKeyUsage(
        [x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]
    )
    lifetime = leaf.not_valid_after_utc - leaf.not_valid_before_utc
    assert lifetime.total_seconds() <= 90 * 86400 + 60
    serial = ":".join(
        f"{b:02x}" for b in leaf.serial_number.to_bytes((leaf.serial_number.bit_length() + 7) // 8, "big")
    )
    stored = await acme.call("GET", f"pki/cert/{serial}")
    assert stored.status_code == 200, stored.text
    # ARI: a window inside the certificate's lifetime
    aki = leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
    sn = leaf.serial_number
    cert_id = b64(aki) + "." + b64(sn.to_bytes((sn.bit_length() + 8) // 8, "big"))
    r = await acme.client.get(c.directory["renewalInfo"] + "/" + cert_id)
    assert r.status_code == 200, r.text
    assert "suggestedWindow" in r.json() and int(r.headers["retry-after"]) > 0
    # revocation by the issuing account, then once more
    r = await c.post(c.directory["revokeCert"], {"certificate": b64(leaf.public_bytes(_der())), "reason": 1})
    assert r.status_code == 200, r.text
    assert (await acme.call("GET", f"pki/cert/{serial}")).json()["data"]["revocation_time"] > 0
    r = await c.post(c.directory["revokeCert"], {"certificate": b64(leaf.public_bytes(_der()))})
    problem(r, "alreadyRevoked")
    # the operator sees the account and its order
    r = await acme.call("GET", "pki/acme/mgmt/account/keyid/" + c.kid.rsplit("/", 1)[1])
    assert r.status_code == 200 and r.json()["data"]["orders"][0]["cert_serial_number"] == serial


def _der() -> Any:
    from cryptography.hazmat.primitives.serialization import Encoding

    return Encoding.DER


async def test_csr_must_match_the_order_and_not_reuse_the_account_key(
    acme: Harness, responder: Responder
) -> None:
    c = await client(acme)
    await c.register()
    order = await validate_ip_order(c, responder)
    csr, _ = csr_der(["127.0.0.1", "other.example.test"])
    problem(await c.post(order["finalize"], {"csr": b64(csr)}), "badCSR", 400)
    csr, _ = csr_der(["127.0.0.1"], key=c.key)
    problem(await c.post(order["finalize"], {"csr": b64(csr)}), "badCSR", 400)
    problem(await c.post(order["finalize"], {"csr": "not base64!"}), "badCSR", 400)


async def test_finalize_before_validation_is_order_not_ready(acme: Harness) -> None:
    c = await client(acme)
    await c.register()
    r = await c.order([{"type": "ip", "value": "127.0.0.1"}])
    csr, _ = csr_der(["127.0.0.1"])
    problem(await c.post(r.json()["finalize"], {"csr": b64(csr)}), "orderNotReady", 403)


async def test_wrong_key_authorization_invalidates_the_order(acme: Harness, responder: Responder) -> None:
    c = await client(acme)
    await c.register()
    r = await c.order([{"type": "ip", "value": "127.0.0.1"}])
    order_url, order = r.headers["location"], r.json()
    authz = (await c.post(order["authorizations"][0], "")).json()
    challenge = next(ch for ch in authz["challenges"] if ch["type"] == "http-01")
    responder.tokens[challenge["token"]] = "wrong"
    await c.post(challenge["url"], {})
    authz = await c.poll(order["authorizations"][0], ("valid", "invalid"))
    assert authz["status"] == "invalid"
    assert authz["challenges"][0]["error"]["type"].endswith("incorrectResponse")
    assert (await c.poll(order_url, ("invalid",)))["status"] == "invalid"


# -- refusals that must create nothing --------------------------------------------------------


async def test_refused_requests_create_nothing(acme: Harness) -> None:
    c = await client(acme, "roles/web/acme/")
    before = await counts(acme)
    directory = c.directory
    # replayed nonce
    nonce = await c.nonce()
    r = await c.post(directory["newAccount"], {}, use_jwk=True, nonce=nonce)
    assert r.status_code == 201
    c.kid = r.headers["location"]
    created = await counts(acme)
    assert created[0] == before[0] + 1
    c2 = Client(acme.client, c.directory_url, directory=directory)
    problem(await c2.post(directory["newAccount"], {}, use_jwk=True, nonce=nonce), "badNonce", 400)
    assert await counts(acme) == created  # the replay created no account
    # a JWS signed with another key than the jwk it carries
    other = ec.generate_private_key(ec.SECP256R1())
    r = await c2.post(directory["newAccount"], {}, use_jwk=True, key=other)  # consistent: would succeed
    assert r.status_code == 201
    created = await counts(acme)
    forged = Client(acme.client, c.directory_url, directory=directory)
    body = await _mismatched_jws(forged, directory["newAccount"])
    problem(body, "malformed", 400)
    # a wrong url in the protected header
    problem(
        await forged.post(directory["newAccount"], {}, use_jwk=True, header_url=directory["newOrder"]),
        "unauthorized",
    )
    # no Content-Type
    r = await forged.post(directory["newAccount"], {}, use_jwk=True, content_type=None)
    problem(r, "malformed", 415)
    assert await counts(acme) == created
    # a name outside the role, and a loopback name under the safe default
    r = await c.order([{"type": "dns", "value": "www.elsewhere.test"}])
    doc = problem(r, "rejectedIdentifier", 400)
    assert doc["identifier"] == {"type": "dns", "value": "www.elsewhere.test"}
    # wrong kid: another account's URL with our key
    r = await c.post(
        directory["newOrder"], {"identifiers": [{"type": "dns", "value": "a.example.test"}]}, kid=c.kid + "x"
    )
    problem(r, "accountDoesNotExist")
    assert await counts(acme) == created
    orders = await acme.call("GET", "pki/acme/mgmt/account/keyid/" + c.kid.rsplit("/", 1)[1])
    assert orders.json()["data"]["orders"] == []


async def _mismatched_jws(c: Client, url: str) -> Any:
    """jwk of one key, signature by another."""
    import json

    from acme_testclient import ec_jwk, jws

    signer = ec.generate_private_key(ec.SECP256R1())
    shown = ec.generate_private_key(ec.SECP256R1())
    protected = {"alg": "ES256", "nonce": await c.nonce(), "url": url, "jwk": ec_jwk(shown)}
    body = json.dumps(jws(signer, protected, {})).encode()
    return await c.http.post(url, content=body, headers={"Content-Type": "application/jose+json"})


async def test_safe_default_refuses_loopback_identifiers() -> None:
    async with running_core() as h:
        await setup_pki(h, {})
        c = await client(h)
        await c.register()
        before = await counts(h)
        for ident in (
            {"type": "ip", "value": "127.0.0.1"},
            {"type": "ip", "value": "10.1.2.3"},
            {"type": "dns", "value": "localhost"},
        ):
            problem(await c.order([ident]), "rejectedIdentifier", 400)
        assert await counts(h) == before
        orders = await h.call("GET", "pki/acme/mgmt/account/keyid/" + c.kid.rsplit("/", 1)[1])
        assert orders.json()["data"]["orders"] == []


class LoopbackZone:
    """dnslib resolver: every name has the address 127.0.0.1."""

    def resolve(self, request: Any, handler: Any) -> Any:
        from dnslib import QTYPE, RR, A

        reply = request.reply()
        if QTYPE[request.q.qtype] == "A":
            reply.add_answer(RR(request.q.qname, QTYPE.A, rdata=A("127.0.0.1"), ttl=60))
        return reply


@pytest.fixture
def loopback_dns() -> Any:
    from dnslib.server import DNSLogger, DNSServer

    server = DNSServer(
        LoopbackZone(), address="127.0.0.1", port=0, logger=DNSLogger(prefix=False, logf=lambda _s: None)
    )
    server.start_thread()
    try:
        yield int(server.server.server_address[1])
    finally:
        server.stop()
        server.server.server_close()


async def test_safe_default_refuses_to_validate_a_name_resolving_to_loopback(
    responder: Responder, loopback_dns: int
) -> None:
    """A DNS name whose address is loopback passes newOrder but the validator never connects."""
    async with running_core() as h:
        await setup_pki(
            h, {"challenge_http_port": responder.port, "dns_resolver": f"127.0.0.1:{loopback_dns}"}
        )
        c = await client(h)
        await c.register()
        r = await c.order([{"type": "dns", "value": "app.example.test"}])
        order_url, order = r.headers["location"], r.json()
        authz = (await c.post(order["authorizations"][0], "")).json()
        challenge = next(ch for ch in authz["challenges"] if ch["type"] == "http-01")
        responder.tokens[challenge["token"]] = c.key_authorization(challenge["token"])
        await c.post(challenge["url"], {})
        authz = await c.poll(order["authorizations"][0], ("valid", "invalid"))
        assert authz["status"] == "invalid"
        error = authz["challenges"][0]["error"]
        assert error["type"].endswith("rejectedIdentifier") and "127.0.0.1" in error["detail"], error
        assert responder.requests == []
        assert (await c.poll(order_url, ("invalid",)))["status"] == "invalid"
        # the same name validates once loopback is explicitly permitted
        assert (
            await h.call("POST", "pki/config/acme", json={"challenge_permitted_ip_ranges": ["127.0.0.0/8"]})
        ).status_code == 200
        r = await c.order([{"type": "dns", "value": "app.example.test"}])
        authz = (await c.post(r.json()["authorizations"][0], "")).json()
        challenge = next(ch for ch in authz["challenges"] if ch["type"] == "http-01")
        responder.tokens[challenge["token"]] = c.key_authorization(challenge["token"])
        await c.post(challenge["url"], {})
        assert (await c.poll(r.json()["authorizations"][0], ("valid", "invalid")))["status"] == "valid"
        assert responder.requests


# -- accounts ---------------------------------------------------------------------------------


async def test_account_update_deactivate_and_key_change(acme: Harness) -> None:
    c = await client(acme)
    await c.register()
    r = await c.post(c.kid, {"contact": ["mailto:new@example.test"]})
    assert r.status_code == 200 and r.json()["contact"] == ["mailto:new@example.test"]
    problem(await c.post(c.kid, {"contact": ["tel:+1555"]}), "unsupportedContact")
    # key change: inner JWS by the new key, no nonce
    new_key = ec.generate_private_key(ec.SECP256R1())
    from acme_testclient import ec_jwk, jws

    url = c.directory["keyChange"]
    inner = jws(
        new_key, {"alg": "ES256", "url": url, "jwk": ec_jwk(new_key)}, {"account": c.kid, "oldKey": c.jwk}
    )
    r = await c.post(url, inner)
    assert r.status_code == 200, r.text
    old = c.key
    c.key = new_key
    assert (await c.post(c.kid, "")).status_code == 200
    problem(await c.post(c.kid, "", key=old), "malformed")
    # deactivation ends the account
    assert (await c.post(c.kid, {"status": "deactivated"})).json()["status"] == "deactivated"
    problem(await c.order([{"type": "dns", "value": "a.example.test"}]), "unauthorized", 403)


async def test_eab_required_directory() -> None:
    async with running_core() as h:
        await setup_pki(h, {"eab_policy": "new-account-required"})
        c = await client(h)
        assert c.directory["meta"]["externalAccountRequired"] is True
        problem(await c.register(), "externalAccountRequired")
        r = await h.call("POST", "pki/acme/new-eab")
        assert r.status_code == 200, r.text
        eab = r.json()["data"]
        assert eab["key_type"] == "hs" and eab["acme_directory"] == "acme/directory"
        listed = await h.call("LIST", "pki/eab")
        assert eab["id"] in listed.json()["data"]["keys"]
        wrong = eab_jws(eab["id"], b64(b"x" * 32), c.jwk, c.directory["newAccount"])
        problem(await c.register(externalAccountBinding=wrong), "unauthorized")
        good = eab_jws(eab["id"], eab["key"], c.jwk, c.directory["newAccount"])
        assert (await c.register(externalAccountBinding=good)).status_code == 201
        # single use: a second account cannot reuse the key
        c2 = await client(h)
        again = eab_jws(eab["id"], eab["key"], c2.jwk, c2.directory["newAccount"])
        problem(await c2.register(externalAccountBinding=again), "unauthorized")
        # a key made for another directory does not work here
        r = await h.call("POST", "pki/roles/web/acme/new-eab")
        other = r.json()["data"]
        c3 = await client(h)
        problem(
            await c3.register(
                externalAccountBinding=eab_jws(other["id"], other["key"], c3.jwk, c3.directory["newAccount"])
            ),
            "unauthorized",
        )
        assert (await h.call("DELETE", f"pki/eab/{other['id']}")).status_code == 204


async def test_operator_revokes_an_account(acme: Harness) -> None:
    c = await client(acme)
    await c.register()
    key_id = c.kid.rsplit("/", 1)[1]
    r = await acme.call("POST", f"pki/acme/mgmt/account/keyid/{key_id}", json={"status": "revoked"})
    assert r.status_code == 200 and r.json()["data"]["status"] == "revoked"
    problem(await c.order([{"type": "dns", "value": "a.example.test"}]), "unauthorized", 403)


async def test_config_acme_validation(acme: Harness) -> None:
    for bad in (
        {"eab_policy": "sometimes"},
        {"default_directory_policy": "role:"},
        {"challenge_http_port": 0},
        {"challenge_permitted_ip_ranges": ["not-a-cidr"]},
        {"dns_resolver": "a:b:c"},
    ):
        r = await acme.call("POST", "pki/config/acme", json=bad)
        assert r.status_code == 400, (bad, r.text)
    r = await acme.call("GET", "pki/config/acme")
    assert r.json()["data"]["enabled"] is True and r.json()["data"]["max_ttl"] == 90 * 86400


async def test_forbid_policy_and_post_as_get_only(acme: Harness) -> None:
    assert (
        await acme.call("POST", "pki/config/acme", json={"default_directory_policy": "forbid"})
    ).status_code == 200
    problem(await acme.client.get("/v1/pki/acme/directory"), "unauthorized", 403)
    c = await client(acme, "roles/web/acme/")
    await c.register()
    r = await acme.client.get(c.kid)
    problem(r, "malformed", 405)


async def test_alternate_chain_for_a_reissued_ca(acme: Harness, responder: Responder) -> None:
    """A second CA certificate with the same subject and key gives the leaf an alternate chain."""
    r = await acme.call(
        "POST",
        "pki/issuers/generate/root/existing",
        json={"common_name": "ACME Root", "key_ref": "default", "issuer_name": "reissued"},
    )
    assert r.status_code == 200, r.text
    reissued = r.json()["data"]["certificate"]
    c = await client(acme)
    await c.register()
    order = await validate_ip_order(c, responder)
    csr, _ = csr_der(["127.0.0.1"])
    assert (await c.post(order["finalize"], {"csr": b64(csr)})).status_code == 200
    order = await c.poll(order["url"], ("valid",))
    r = await c.post(order["certificate"], "")
    links = r.headers.get_list("link")
    alternate = order["certificate"] + "/1"
    assert f'<{alternate}>;rel="alternate"' in links
    r = await c.post(alternate, "")
    assert r.status_code == 200, r.text
    chain = x509.load_pem_x509_certificates(r.content)
    assert chain[1] == x509.load_pem_x509_certificate(reissued.encode())
    problem(await c.post(order["certificate"] + "/2", ""), "malformed", 404)


async def test_tidy_acme_drops_finished_orders_then_idle_accounts(
    acme: Harness, responder: Responder
) -> None:
    from strongroom.engines.pki.acme import state
    from strongroom.engines.pki.acme.tidy import tidy_acme

    c = await client(acme)
    await c.register()
    order = await validate_ip_order(c, responder)
    csr, _ = csr_der(["127.0.0.1"])
    assert (await c.post(order["finalize"], {"csr": b64(csr)})).status_code == 200
    idle = await client(acme)
    await idle.register()
    route = acme.core.router.get("pki/")
    assert route is not None
    storage = route.storage
    kid = c.kid.rsplit("/", 1)[1]
    # now: nothing is old enough
    counts = await tidy_acme(storage, 72 * 3600, 30 * 86400)
    assert counts.total_acme_account_count == 2 and counts.acme_orders_deleted_count == 0
    # a year on: the order's certificate has expired long ago; both accounts idle -> revoked
    later = __import__("time").time() + 365 * 86400
    counts = await tidy_acme(storage, 72 * 3600, 30 * 86400, now=later)
    assert counts.acme_orders_deleted_count == 1 and counts.acme_account_revoked_count == 2
    assert await state.list_orders(storage, kid) == [] and await state.list_authz(storage, kid) == []
    problem(await c.order([{"type": "ip", "value": "127.0.0.1"}]), "unauthorized", 403)
    # one more buffer on: deleted, and the key may register afresh
    counts = await tidy_acme(storage, 72 * 3600, 30 * 86400, now=later + 31 * 86400)
    assert counts.acme_account_deleted_count == 2
    assert await state.list_accounts(storage) == []
    assert (await c.register()).status_code == 201


async def test_garbage_never_500s_and_always_gets_a_problem_with_a_nonce(acme: Harness) -> None:
    """Bodies from broken JSON to well-formed JWS with nonsense inside, on every POST resource."""
    import json
    import random

    from acme_testclient import ec_jwk, jws

    c = await client(acme)
    await c.register()
    rng = random.Random(8555)
    urls = [
        c.directory["newAccount"],
        c.directory["newOrder"],
        c.directory["revokeCert"],
        c.directory["keyChange"],
        c.kid,
        c.kid + "/orders",
        BASE + "acme/order/nope",
        BASE + "acme/order/nope/finalize",
        BASE + "acme/order/nope/cert",
        BASE + "acme/authorization/nope",
        BASE + "acme/challenge/nope/http-01",
    ]
    key = c.key
    payloads: list[Any] = [
        {},
        [],
        "",
        None,
        1e308,
        {"identifiers": [{"type": "dns", "value": "\udcff"}]},
        {"identifiers": [{"type": "dns", "value": "*." * 200}]},
        {"identifiers": "x"},
        {"csr": "A" * 5000},
        {"certificate": "@@"},
        {"contact": [None]},
        {"status": 7},
        {"externalAccountBinding": {"protected": "e30", "payload": "", "signature": ""}},
        {"onlyReturnExisting": "yes"},
        {"reason": "1", "certificate": "MA"},
    ]
    raw_bodies = [
        b"",
        b"{",
        b"null",
        b"[]",
        b'{"protected":1}',
        b"\xff\xfe",
        b'{"protected":"","payload":"","signature":""}',
    ]
    for url in urls:
        for body in raw_bodies:
            r = await acme.client.post(url, content=body, headers={"Content-Type": "application/jose+json"})
            assert 400 <= r.status_code < 500 and r.headers["replay-nonce"], (
                url,
                body,
                r.status_code,
                r.text,
            )
            assert r.headers["content-type"] == "application/problem+json"
        for payload in payloads:
            protected: dict[str, Any] = {"alg": "ES256", "nonce": await c.nonce(), "url": url}
            if rng.random() < 0.5:
                protected["kid"] = c.kid
            else:
                protected["jwk"] = ec_jwk(key)
            try:
                body = json.dumps(jws(key, protected, payload)).encode()
            except (UnicodeEncodeError, ValueError):
                continue
            r = await acme.client.post(url, content=body, headers={"Content-Type": "application/jose+json"})
            assert r.status_code < 500, (url, payload, r.status_code, r.text)
            assert r.headers["replay-nonce"]


async def test_concurrent_finalizes_issue_one_certificate(acme: Harness, responder: Responder) -> None:
    c = await client(acme)
    await c.register()
    order = await validate_ip_order(c, responder)
    before = (await counts(acme))[1]
    csrs = [csr_der(["127.0.0.1"])[0] for _ in range(4)]
    results = await asyncio.gather(*(c.post(order["finalize"], {"csr": b64(csr)}) for csr in csrs))
    assert sorted(r.status_code for r in results) == [200, 403, 403, 403], [r.text for r in results]
    assert (await counts(acme))[1] == before + 1
