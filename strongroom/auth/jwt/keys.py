"""Where a jwt mount's verification keys come from, and how a token's signature is checked.

Three sources, exactly one per config (Vault's rule): PEM public keys in the config, a
JWKS URL, or an OIDC discovery URL (whose document names the JWKS). Remote key sets are
fetched with httpx (bounded in time and size, TLS checked against the configured CA PEM
when one is given) and cached; a token naming a ``kid`` the cache does not know triggers
one refetch, rate-limited so a stream of junk tokens cannot turn into a stream of
outbound requests.

Only asymmetric algorithms are accepted (``jwt_supported_algs`` rejects ``none`` and the
HMAC family), so a public key can never be abused as an HMAC secret.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

import httpx
import jwt
from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_pem_public_key

# The algorithms Vault's cap/jwt accepts; RS256 when the config names none.
SUPPORTED_ALGS = (
    "RS256",
    "RS384",
    "RS512",
    "ES256",
    "ES384",
    "ES512",
    "PS256",
    "PS384",
    "PS512",
    "EdDSA",
)
DEFAULT_ALGS = ("RS256",)
MAX_DOCUMENT_BYTES = 1 << 20  # a discovery document or JWKS larger than this is refused
CACHE_TTL_S = 3600.0
MIN_REFRESH_INTERVAL_S = 5.0
SIGNATURE_FAILED = "failed to verify id token signature"


class KeySourceError(Exception):
    """Fetching or parsing keys failed; the message is safe to show (no response bodies)."""


class SignatureError(Exception):
    """The token's signature did not verify against any known key (message safe to show)."""


def validate_algs(algs: list[str]) -> None:
    """cap/jwt's ``SupportedSigningAlgorithm``: every name must be an asymmetric algorithm we know."""
    for alg in algs:
        if alg not in SUPPORTED_ALGS:
            raise ValueError(f'unsupported signing algorithm "{alg}"')


def parse_public_key(pem: str) -> Any:
    """A PEM public key or certificate (Vault's ``certutil.ParsePublicKeyPEM``)."""
    data = pem.strip().encode()
    try:
        return load_pem_public_key(data)
    except (ValueError, TypeError):
        pass
    try:
        return x509.load_pem_x509_certificate(data).public_key()
    except ValueError:
        raise ValueError("data does not contain any valid public keys") from None


def ssl_context(ca_pem: str) -> ssl.SSLContext | bool:
    """TLS verification for an outbound call: the given CA PEM only, or the system roots."""
    if not ca_pem.strip():
        return True
    try:
        return ssl.create_default_context(cadata=ca_pem)
    except (ssl.SSLError, ValueError):
        raise KeySourceError("could not parse CA PEM value successfully") from None


class Fetcher:
    """Outbound HTTP for the jwt method: GET a JSON document, POST a form, both bounded."""

    # Tests inject an httpx.MockTransport here (None: the real network).
    transport: ClassVar[httpx.AsyncBaseTransport | None] = None
    timeout: ClassVar[float] = 10.0

    def client(self, ca_pem: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            transport=self.transport,
            timeout=self.timeout,
            verify=ssl_context(ca_pem),
            follow_redirects=False,
        )

    async def _read(self, resp: httpx.Response) -> bytes:
        body = b""
        async for chunk in resp.aiter_bytes():
            body += chunk
            if len(body) > MAX_DOCUMENT_BYTES:
                raise KeySourceError("response too large")
        return body

    async def request_json(
        self,
        method: str,
        url: str,
        ca_pem: str,
        *,
        form: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
    ) -> Any:
        """One request whose answer must be a JSON document; errors name the status, never the body."""
        if not url.lower().startswith(("http://", "https://")):
            raise KeySourceError("only http(s) URLs are supported")
        try:
            async with self.client(ca_pem) as client:
                req = client.build_request(method, url, data=form, headers={"Accept": "application/json"})
                basic = httpx.BasicAuth(*auth) if auth is not None else None
                resp = await client.send(req, stream=True, auth=basic)
                try:
                    if resp.status_code != 200:
                        raise KeySourceError(f"{resp.status_code} {resp.reason_phrase}")
                    body = await self._read(resp)
                finally:
                    await resp.aclose()
        except httpx.HTTPError as err:
            raise KeySourceError(f"request failed ({type(err).__name__})") from None
        try:
            return json.loads(body)
        except ValueError:
            raise KeySourceError("response is not JSON") from None


@dataclass
class KeySet:
    """Verification keys, each with its ``kid`` ('' when the JWK or PEM names none)."""

    keys: list[tuple[str, Any]] = field(default_factory=list)
    fetched_at: float = 0.0

    @classmethod
    def from_jwks(cls, doc: Any) -> KeySet:
        if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list):
            raise KeySourceError("JWKS document has no key list")
        keys: list[tuple[str, Any]] = []
        for raw in doc["keys"]:
            if not isinstance(raw, dict) or raw.get("use") not in (None, "sig"):
                continue
            try:
                jwk = jwt.PyJWK.from_dict(raw)
            except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError, KeyError):
                continue  # an unusable key (unknown kty, HMAC "oct" key...) is skipped
            if raw.get("kty") == "oct":
                continue
            keys.append((str(raw.get("kid") or ""), jwk.key))
        # an empty set is valid (a provider before its first key); tokens then fail to verify
        return cls(keys, time.monotonic())

    def candidates(self, kid: str) -> list[Any]:
        """Keys to try: the one named by ``kid``, or every key when the token names none."""
        if not kid:
            return [k for _, k in self.keys]
        return [k for key_id, k in self.keys if key_id == kid]


def verify_signature(token: str, keys: list[Any], algs: list[str]) -> dict[str, Any]:
    """The token's claims when one of ``keys`` verifies it with an allowed algorithm.

    Only the signature is checked here; time, issuer and audience rules are the role's
    (see ``claims.py``), so PyJWT's own claim checks are all off.
    """
    try:
        header = jwt.get_unverified_header(token)
    except jwt.InvalidTokenError:
        raise SignatureError("token is malformed") from None
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in algs:
        raise SignatureError(f"token signed with unsupported algorithm {str(alg)[:16]!r}")
    options = {
        "verify_signature": True,
        "verify_exp": False,
        "verify_nbf": False,
        "verify_iat": False,
        "verify_aud": False,
        "verify_iss": False,
    }
    for key in keys:
        try:
            claims = jwt.decode(token, key=key, algorithms=[alg], options=options)  # type: ignore[arg-type]
        except (jwt.InvalidTokenError, jwt.InvalidKeyError, ValueError, TypeError):
            continue
        if isinstance(claims, dict):
            return claims
    raise SignatureError(SIGNATURE_FAILED)


def token_kid(token: str) -> str:
    try:
        kid = jwt.get_unverified_header(token).get("kid")
    except jwt.InvalidTokenError:
        return ""
    return kid if isinstance(kid, str) else ""


@dataclass
class Discovery:
    """The parts of an OIDC discovery document the method uses."""

    issuer: str
    jwks_uri: str
    authorization_endpoint: str
    token_endpoint: str


class RemoteKeys:
    """Cached JWKS and discovery documents of one mount, refetched on expiry or an unknown kid."""

    def __init__(self, fetcher: Fetcher) -> None:
        self.fetcher = fetcher
        self._sets: dict[tuple[str, str], KeySet] = {}
        self._discovery: dict[tuple[str, str], tuple[Discovery, float]] = {}
        self._lock = asyncio.Lock()

    def reset(self) -> None:
        """Forget everything (a config write may point at other keys)."""
        self._sets.clear()
        self._discovery.clear()

    async def discovery(self, url: str, ca_pem: str, *, fresh: bool = False) -> Discovery:
        key = (url, ca_pem)
        cached = self._discovery.get(key)
        if cached is not None and not fresh and time.monotonic() - cached[1] < CACHE_TTL_S:
            return cached[0]
        well_known = url.rstrip("/") + "/.well-known/openid-configuration"
        doc = await self.fetcher.request_json("GET", well_known, ca_pem)
        if not isinstance(doc, dict):
            raise KeySourceError("discovery document is not an object")
        issuer = str(doc.get("issuer") or "")
        if issuer.rstrip("/") != url.rstrip("/"):
            # go-oidc: the issuer a provider claims must be the one it was discovered at
            raise KeySourceError("issuer did not match the issuer returned by provider")
        jwks_uri = str(doc.get("jwks_uri") or "")
        if not jwks_uri:
            raise KeySourceError("discovery document names no jwks_uri")
        found = Discovery(
            issuer=issuer,
            jwks_uri=jwks_uri,
            authorization_endpoint=str(doc.get("authorization_endpoint") or ""),
            token_endpoint=str(doc.get("token_endpoint") or ""),
        )
        self._discovery[key] = (found, time.monotonic())
        return found

    async def key_set(self, url: str, ca_pem: str, *, want_kid: str = "") -> KeySet:
        """The JWKS at ``url``; refetched when stale or when it lacks ``want_kid`` (rate-limited)."""
        key = (url, ca_pem)
        async with self._lock:
            cached = self._sets.get(key)
            now = time.monotonic()
            if cached is not None:
                stale = now - cached.fetched_at >= CACHE_TTL_S
                missing = bool(want_kid) and not cached.candidates(want_kid)
                may_refresh = now - cached.fetched_at >= MIN_REFRESH_INTERVAL_S
                if not stale and not (missing and may_refresh):
                    return cached
            fetched = KeySet.from_jwks(await self.fetcher.request_json("GET", url, ca_pem))
            self._sets[key] = fetched
            return fetched
