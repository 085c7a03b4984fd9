"""The OIDC auth-code flow end to end against a tiny OIDC provider served on loopback.

The provider (http.server in a thread) has a discovery document, a JWKS, an /authorize
that redirects with a code, and a /token that checks the client's credentials and the
PKCE verifier before returning a signed ID token carrying the nonce it was given.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from strongroom.core.mounts import MountEntry
from strongroom.testing import Harness, running_core

MOUNT = "auth/oidc/"
CLIENT_ID = "strongroom-client"
CLIENT_SECRET = "provider-secret"  # noqa: S105 (a test fixture)
REDIRECT = "http://127.0.0.1:8250/oidc/callback"
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


class Provider:
    """State shared by the handler threads: issued codes and what each was bound to."""

    def __init__(self) -> None:
        self.base = ""
        self.codes: dict[str, dict[str, str]] = {}
        self.token_requests: list[dict[str, Any]] = []
        self.claims: dict[str, Any] = {"sub": "u-123", "email": "bob@acme.com", "groups": ["eng"]}

    def id_token(self, nonce: str, audience: str = CLIENT_ID) -> str:
        now = int(time.time())
        body = {
            "iss": self.base,
            "aud": audience,
            "iat": now,
            "exp": now + 300,
            "nonce": nonce,
            **self.claims,
        }
        return jwt.encode(body, KEY, algorithm="RS256", headers={"kid": "p1"})


def handler_for(provider: Provider) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

        def _json(self, status: int, doc: Any) -> None:
            body = json.dumps(doc).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            if url.path == "/.well-known/openid-configuration":
                self._json(
                    200,
                    {
                        "issuer": provider.base,
                        "authorization_endpoint": provider.base + "/authorize",
                        "token_endpoint": provider.base + "/token",
                        "jwks_uri": provider.base + "/keys",
                    },
                )
            elif url.path == "/keys":
                key = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(KEY.public_key()))
                key.update(kid="p1", use="sig")
                self._json(200, {"keys": [key]})
            elif url.path == "/authorize":
                q = {k: v[0] for k, v in parse_qs(url.query).items()}
                code = secrets.token_urlsafe(16)
                provider.codes[code] = q
                target = q["redirect_uri"] + "?" + urlencode({"code": code, "state": q["state"]})
                self.send_response(302)
                self.send_header("Location", target)
                self.send_header("Content-Length", "0")
                self.end_headers()
            else:
                self._json(404, {})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
            provider.token_requests.append({"form": form, "auth": self.headers.get("Authorization", "")})
            expected = "Basic " + base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
            grant = provider.codes.pop(form.get("code", ""), None)
            if self.headers.get("Authorization") != expected or grant is None:
                self._json(400, {"error": "invalid_grant"})
                return
            challenge = base64.urlsafe_b64encode(hashlib.sha256(form["code_verifier"].encode()).digest())
            if challenge.rstrip(b"=").decode() != grant["code_challenge"]:
                self._json(400, {"error": "invalid_grant"})
                return
            self._json(
                200,
                {"access_token": "at", "token_type": "Bearer", "id_token": provider.id_token(grant["nonce"])},
            )

    return Handler


@pytest.fixture
def provider() -> Iterator[Provider]:
    state = Provider()
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler_for(state))
    state.base = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
async def h(provider: Provider) -> AsyncIterator[Harness]:
    async with running_core() as harness:
        if harness.core.expiration is not None:
            await harness.core.expiration.stop()
        await harness.core.enable_mount(MountEntry("oidc/", "oidc", table="auth"))
        await harness.core.policies.put("dev", 'path "secret/*" { capabilities = ["read"] }')
        r = await harness.call(
            "POST",
            MOUNT + "config",
            json={
                "oidc_discovery_url": provider.base,
                "oidc_client_id": CLIENT_ID,
                "oidc_client_secret": CLIENT_SECRET,
                "default_role": "web",
            },
        )
        assert r.status_code == 204, r.text
        r = await harness.call(
            "POST",
            MOUNT + "role/web",
            json={
                "user_claim": "sub",
                "allowed_redirect_uris": [REDIRECT],
                "groups_claim": "groups",
                "claim_mappings": {"email": "email"},
                "oidc_scopes": ["email"],
                "token_policies": ["dev"],
            },
        )
        assert r.status_code == 204, r.text
        yield harness


async def start(h: Harness, **body: Any) -> str:
    r = await h.call("POST", MOUNT + "oidc/auth_url", json={"redirect_uri": REDIRECT, **body}, token="")
    assert r.status_code == 200, r.text
    return str(r.json()["data"]["auth_url"])


async def follow(auth_url: str) -> dict[str, str]:
    """Play the browser: visit the provider's /authorize and read the redirect it answers with."""
    async with httpx.AsyncClient() as browser:
        r = await browser.get(auth_url)
    assert r.status_code == 302
    location = r.headers["location"]
    assert location.startswith(REDIRECT)
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


async def test_auth_code_flow_end_to_end(h: Harness, provider: Provider) -> None:
    auth_url = await start(h, client_nonce="cn-1")
    query = parse_qs(urlsplit(auth_url).query)
    assert auth_url.startswith(provider.base + "/authorize?client_id=" + CLIENT_ID)
    assert query["code_challenge_method"] == ["S256"] and query["scope"] == ["openid email"]
    assert query["nonce"] and query["state"]
    params = await follow(auth_url)
    r = await h.call("GET", MOUNT + "oidc/callback", params={**params, "client_nonce": "cn-1"}, token="")
    assert r.status_code == 200, r.text
    auth = r.json()["auth"]
    assert auth["metadata"] == {"role": "web", "email": "bob@acme.com"}
    assert "dev" in auth["policies"]
    sent = provider.token_requests[-1]["form"]
    assert sent["grant_type"] == "authorization_code" and sent["redirect_uri"] == REDIRECT
    me = await h.call("GET", "auth/token/lookup-self", token=auth["client_token"])
    assert me.status_code == 200 and me.json()["data"]["meta"]["role"] == "web"
    # a state is good for one callback only
    again = await h.call("GET", MOUNT + "oidc/callback", params=params, token="")
    assert again.status_code == 400 and "Expired or missing OAuth state" in again.text


async def test_auth_url_refuses_unlisted_redirects_and_unknown_roles(h: Harness) -> None:
    r = await h.call("POST", MOUNT + "oidc/auth_url", json={"redirect_uri": "http://evil/cb"}, token="")
    assert r.status_code == 400 and "unauthorized redirect_uri" in r.text
    r = await h.call(
        "POST", MOUNT + "oidc/auth_url", json={"role": "nope", "redirect_uri": REDIRECT}, token=""
    )
    assert r.status_code == 400 and r.json()["errors"] == ['role "nope" could not be found']


async def test_callback_checks_client_nonce_state_and_id_token(h: Harness, provider: Provider) -> None:
    params = await follow(await start(h, client_nonce="cn-1"))
    r = await h.call("GET", MOUNT + "oidc/callback", params={**params, "client_nonce": "other"}, token="")
    assert r.status_code == 400 and "Client nonce mismatch" in r.text
    r = await h.call("GET", MOUNT + "oidc/callback", params={"state": "forged", "code": "x"}, token="")
    assert r.status_code == 400 and "Expired or missing OAuth state" in r.text
    # an id_token posted directly (form_post) must carry the nonce of its state
    auth_url = await start(h)
    state = parse_qs(urlsplit(auth_url).query)["state"][0]
    forged = provider.id_token("wrong-nonce")
    r = await h.call("POST", MOUNT + "oidc/callback", json={"state": state, "id_token": forged}, token="")
    assert r.status_code == 403 and "nonce" in r.text
    assert forged not in r.text
    # an id_token for another client is refused
    auth_url = await start(h)
    q = parse_qs(urlsplit(auth_url).query)
    other = provider.id_token(q["nonce"][0], audience="someone-else")
    r = await h.call(
        "POST", MOUNT + "oidc/callback", json={"state": q["state"][0], "id_token": other}, token=""
    )
    assert r.status_code == 403 and "aud claim does not match" in r.text


async def test_code_exchange_failure_is_reported_without_secrets(h: Harness) -> None:
    auth_url = await start(h)
    state = parse_qs(urlsplit(auth_url).query)["state"][0]
    r = await h.call(
        "GET", MOUNT + "oidc/callback", params={"state": state, "code": "never-issued"}, token=""
    )
    assert r.status_code == 400 and "Error exchanging oidc code" in r.text
    assert CLIENT_SECRET not in r.text
