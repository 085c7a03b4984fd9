"""A small ACME client for protocol tests: signs with cryptography, speaks httpx.

Every request can be bent (wrong url, replayed nonce, other key, no Content-Type)
so the server's refusals can be tested one by one.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, hmac, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def ec_jwk(key: ec.EllipticCurvePrivateKey) -> dict[str, str]:
    numbers = key.public_key().public_numbers()
    return {
        "kty": "EC",
        "crv": "P-256",
        "x": b64(numbers.x.to_bytes(32, "big")),
        "y": b64(numbers.y.to_bytes(32, "big")),
    }


def thumbprint(jwk: dict[str, str]) -> str:
    canon = json.dumps({k: jwk[k] for k in ("crv", "kty", "x", "y")}, separators=(",", ":"), sort_keys=True)
    return b64(hashlib.sha256(canon.encode()).digest())


def sign_es256(key: ec.EllipticCurvePrivateKey, signing_input: bytes) -> bytes:
    r, s = decode_dss_signature(key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def jws(key: ec.EllipticCurvePrivateKey, protected: dict[str, Any], payload: Any) -> dict[str, str]:
    p64 = b64(json.dumps(protected).encode())
    body = "" if payload == "" else b64(json.dumps(payload).encode())
    return {"protected": p64, "payload": body, "signature": b64(sign_es256(key, f"{p64}.{body}".encode()))}


def eab_jws(kid: str, hmac_key_b64: str, account_jwk: dict[str, str], url: str) -> dict[str, str]:
    p64 = b64(json.dumps({"alg": "HS256", "kid": kid, "url": url}).encode())
    body = b64(json.dumps(account_jwk).encode())
    mac = hmac.HMAC(base64.urlsafe_b64decode(hmac_key_b64 + "=" * (-len(hmac_key_b64) % 4)), hashes.SHA256())
    mac.update(f"{p64}.{body}".encode())
    return {"protected": p64, "payload": body, "signature": b64(mac.finalize())}


def csr_der(names: list[str], key: Any = None, cn: str | None = None) -> tuple[bytes, Any]:
    import ipaddress

    key = key or ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = []
    for name in names:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            sans.append(x509.DNSName(name))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)] if cn else [])
    builder = x509.CertificateSigningRequestBuilder().subject_name(subject)
    builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    csr = builder.sign(key, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.DER), key


@dataclass
class Client:
    http: httpx.AsyncClient
    directory_url: str
    key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    kid: str = ""
    directory: dict[str, Any] = field(default_factory=dict)
    last_nonce: str = ""

    @property
    def jwk(self) -> dict[str, str]:
        return ec_jwk(self.key)

    async def load(self) -> dict[str, Any]:
        r = await self.http.get(self.directory_url)
        assert r.status_code == 200, r.text
        self.directory = r.json()
        return self.directory

    async def nonce(self) -> str:
        r = await self.http.head(self.directory["newNonce"])
        assert r.status_code == 200, r.text
        self.last_nonce = r.headers["replay-nonce"]
        return self.last_nonce

    async def post(
        self,
        url: str,
        payload: Any,
        *,
        use_jwk: bool = False,
        key: ec.EllipticCurvePrivateKey | None = None,
        nonce: str | None = None,
        header_url: str | None = None,
        content_type: str | None = "application/jose+json",
        kid: str | None = None,
    ) -> httpx.Response:
        protected: dict[str, Any] = {
            "alg": "ES256",
            "nonce": nonce or await self.nonce(),
            "url": header_url or url,
        }
        if use_jwk:
            protected["jwk"] = ec_jwk(key or self.key)
        else:
            protected["kid"] = kid or self.kid
        body = json.dumps(jws(key or self.key, protected, payload)).encode()
        headers = {"Content-Type": content_type} if content_type else {}
        r = await self.http.post(url, content=body, headers=headers)
        assert "replay-nonce" in r.headers, (r.status_code, r.text)
        return r

    async def register(self, **payload: Any) -> httpx.Response:
        r = await self.post(
            self.directory["newAccount"], {"termsOfServiceAgreed": True, **payload}, use_jwk=True
        )
        if r.status_code in (200, 201):
            self.kid = r.headers["location"]
        return r

    async def order(self, identifiers: list[dict[str, str]]) -> httpx.Response:
        return await self.post(self.directory["newOrder"], {"identifiers": identifiers})

    def key_authorization(self, token: str) -> str:
        return f"{token}.{thumbprint(self.jwk)}"

    async def poll(self, url: str, want: tuple[str, ...], limit: float = 20.0) -> dict[str, Any]:
        deadline = asyncio.get_running_loop().time() + limit
        while True:
            r = await self.post(url, "")
            assert r.status_code == 200, r.text
            body: dict[str, Any] = r.json()
            if body["status"] in want or asyncio.get_running_loop().time() > deadline:
                return body
            await asyncio.sleep(0.05)


def problem(r: httpx.Response, kind: str, status: int | None = None) -> dict[str, Any]:
    assert r.headers["content-type"].startswith("application/problem+json"), (r.status_code, r.text)
    doc: dict[str, Any] = r.json()
    assert doc["type"] == "urn:ietf:params:acme:error:" + kind, doc
    if status is not None:
        assert r.status_code == status, (r.status_code, doc)
    return doc
