"""OCSP (RFC 6960) checks of a client certificate for the ``cert`` auth method.

:class:`OcspChecker` answers one question: is this leaf, issued by this issuer, revoked?
It asks the responders of an entry's settings (``ocsp_servers_override``, else the
leaf's Authority Information Access OCSP URLs), verifies what they answer, caches
definitive answers, and hands back an :class:`OcspResult` for the login to act on.

What a response must be to count (anything else is never taken as an answer):

* ``successful``, a BasicOCSPResponse, under :data:`MAX_RESPONSE_BYTES`;
* **signed** by the issuer itself, by a *delegated responder* certificate embedded in
  the response (issued by that issuer, in its validity period, with the
  id-kp-OCSPSigning extended key usage), or by a certificate of the entry's
  ``ocsp_ca_certificates`` (a locally trusted responder, RFC 6960 §4.2.2.2);
* **about this certificate**: one of its single responses carries the CertID (issuer
  name hash, issuer key hash, serial) the leaf has under that response's hash algorithm;
* **replay-bound**: the request carries a random nonce; a response that echoes a nonce
  must echo ours (strongroom's own responder echoes it; most public ones send none);
* **fresh**: ``this_update`` not in the future and ``next_update`` not passed (both
  with :data:`CLOCK_SKEW` of tolerance), ``this_update`` no older than the entry's
  ``ocsp_this_update_max_age`` when that is set.

Outcomes, and what the login makes of them. As in Vault's ``sdk/helper/ocsp``,
``ocsp_fail_open`` never excuses a forged or stale response; unlike Vault, which excuses
only network errors and ``unknown``, an HTTP error or an unparsable or unsuccessful
response counts as "no answer" too (the docs' "cannot be fetched"):

* ``GOOD`` / ``REVOKED``: definitive. Without ``ocsp_query_all_servers`` the first
  definitive answer wins (servers are asked in order); with it every server is asked
  (concurrently), any ``revoked`` wins, and ``good`` needs every server to say so.
* ``UNAVAILABLE``: no definitive answer — no responder URL, network error or timeout
  (after ``ocsp_max_retries`` retries), an HTTP error, an unparsable or unsuccessful
  response, status ``unknown``. ``ocsp_fail_open`` lets the login proceed.
* ``STALE``: no definitive answer counted, and a response was outside its validity
  window. Refused even with ``ocsp_fail_open``: an operator bounding response age asked
  for fresh answers.
* ``FORGED``: a response failed authentication (signature, responder authorization,
  CertID, nonce). Refused always, and it stops the round: a responder path that
  serves forgeries is not outvoted by another server's ``good``.

Cache: definitive answers, per (issuer, serial, ``ocsp_ca_certificates``), LRU-bounded,
until ``next_update`` but never longer than :data:`MAX_CACHE_SECONDS`; an answer
without ``next_update`` for :data:`NO_NEXT_UPDATE_CACHE_SECONDS`. A cached answer is
re-checked against the entry's ``ocsp_this_update_max_age``. Concurrent checks of one
certificate share a single round of requests.

Transport: POST ``application/ocsp-request`` with httpx, :data:`TIMEOUT_SECONDS` per
attempt, retries (network errors, 5xx, 429) with a short backoff, redirects followed
by hand to http(s) URLs only (at most :data:`MAX_REDIRECTS`), https verified against
the system roots (and certifi's) plus ``ocsp_ca_certificates``. Responder URLs are operator
configuration or signed into the certificate by a trusted CA, so no SSRF policy applies
beyond the timeouts and the response size cap. Logged URLs lose userinfo and query.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import logging
import os
import ssl
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, SignatureAlgorithmOID

__all__ = [
    "CLOCK_SKEW",
    "MAX_CACHE_SECONDS",
    "MAX_RESPONSE_BYTES",
    "NO_NEXT_UPDATE_CACHE_SECONDS",
    "OcspChecker",
    "OcspResult",
    "OcspSettings",
    "Outcome",
    "build_request",
    "evaluate_response",
    "safe_url",
    "serial_hex",
]

log = logging.getLogger("strongroom.auth.cert")

TIMEOUT_SECONDS = 5.0
MAX_RESPONSE_BYTES = 64 * 1024
MAX_REDIRECTS = 3
MAX_RETRIES = 10  # ocsp_max_retries is clamped to this: a login must not wait for ever
BACKOFF_SECONDS = 0.2  # doubled per retry, at most BACKOFF_MAX_SECONDS
BACKOFF_MAX_SECONDS = 2.0
CLOCK_SKEW = timedelta(minutes=5)
MAX_CACHE_SECONDS = 3600
NO_NEXT_UPDATE_CACHE_SECONDS = 60
NONCE_BYTES = 16
_SSL_CONTEXTS_MAX = 32
_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_CERT_ID_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    h.name: h for h in (hashes.SHA1, hashes.SHA224, hashes.SHA256, hashes.SHA384, hashes.SHA512)
}
_REDIRECT_SCHEMES = ("http", "https")


class Outcome(enum.Enum):
    GOOD = "good"
    REVOKED = "revoked"
    UNAVAILABLE = "unavailable"  # no definitive answer; ocsp_fail_open excuses it
    STALE = "stale"  # answers outside their validity window; never excused
    FORGED = "forged"  # a response failed authentication; never excused

    @property
    def definitive(self) -> bool:
        return self in (Outcome.GOOD, Outcome.REVOKED)


@dataclass(frozen=True, slots=True)
class OcspResult:
    outcome: Outcome
    detail: str = ""  # safe for logs and for the client: no URLs, no secrets
    cached: bool = False


@dataclass(frozen=True, slots=True)
class OcspSettings:
    """The OCSP fields of one ``certs/<name>`` entry."""

    servers_override: tuple[str, ...] = ()
    ca_certificates: tuple[x509.Certificate, ...] = ()
    ca_pem_digest: str = ""
    fail_open: bool = False
    query_all_servers: bool = False
    this_update_max_age: int = 0  # seconds; 0 = unbounded
    max_retries: int = 4


@dataclass(frozen=True, slots=True)
class _Answer:
    """One responder's answer: the result, and the validity window of a verified response."""

    result: OcspResult
    this_update: datetime | None = None
    next_update: datetime | None = None


@dataclass(slots=True)
class _Cached:
    outcome: Outcome
    this_update: datetime
    expires: datetime


class _Failure(Exception):
    def __init__(self, outcome: Outcome, detail: str) -> None:
        super().__init__(detail)
        self.outcome = outcome
        self.detail = detail


def serial_hex(cert: x509.Certificate) -> str:
    """Vault's ``certutil.GetHexFormatted`` of the serial: ``0a:1b:...``."""
    raw = cert.serial_number.to_bytes(max(1, (cert.serial_number.bit_length() + 7) // 8), "big")
    return ":".join(f"{b:02x}" for b in raw)


def safe_url(url: str) -> str:
    """``url`` without userinfo, query or fragment: fit for a log line."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if parts.port is not None:
            host = f"{host}:{parts.port}"
        return urlunsplit((parts.scheme, host, parts.path, "", ""))
    except ValueError:
        return "<unparsable url>"


def responder_urls(leaf: x509.Certificate, settings: OcspSettings) -> list[str]:
    """``ocsp_servers_override`` if set, else the leaf's AIA OCSP URLs (in order)."""
    if settings.servers_override:
        return list(settings.servers_override)
    try:
        aia = leaf.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    except (x509.ExtensionNotFound, ValueError):
        return []
    return [
        str(d.access_location.value).strip()
        for d in aia
        if d.access_method == AuthorityInformationAccessOID.OCSP
        and isinstance(d.access_location, x509.UniformResourceIdentifier)
    ]


# -- request and response ----------------------------------------------------------------------


def build_request(
    leaf: x509.Certificate,
    issuer: x509.Certificate,
    nonce: bytes,
    algorithm: hashes.HashAlgorithm | None = None,
) -> bytes:
    """DER OCSPRequest for ``leaf`` (SHA-1 CertID, what most responders index by) with ``nonce``."""
    builder = (
        ocsp.OCSPRequestBuilder()
        .add_certificate(leaf, issuer, algorithm or hashes.SHA1())  # noqa: S303 - CertID, not a signature
        .add_extension(x509.OCSPNonce(nonce), critical=False)
    )
    return builder.build().public_bytes(serialization.Encoding.DER)


def _cert_id(
    leaf: x509.Certificate, issuer: x509.Certificate, algorithm: hashes.HashAlgorithm
) -> tuple[bytes, bytes]:
    """(issuer name hash, issuer key hash) under ``algorithm``, as cryptography computes them."""
    req = ocsp.OCSPRequestBuilder().add_certificate(leaf, issuer, algorithm).build()
    return req.issuer_name_hash, req.issuer_key_hash


def _signed_by(response: ocsp.OCSPResponse, key: Any) -> bool:
    data, signature = response.tbs_response_bytes, response.signature
    try:
        algorithm = response.signature_hash_algorithm
        if isinstance(key, rsa.RSAPublicKey):
            if algorithm is None:
                return False
            pad: padding.AsymmetricPadding = padding.PKCS1v15()
            if response.signature_algorithm_oid == SignatureAlgorithmOID.RSASSA_PSS:
                pad = padding.PSS(mgf=padding.MGF1(algorithm), salt_length=padding.PSS.AUTO)
            key.verify(signature, data, pad, algorithm)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            if algorithm is None:
                return False
            key.verify(signature, data, ec.ECDSA(algorithm))
        elif isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
            key.verify(signature, data)
        else:
            return False
    except (InvalidSignature, UnsupportedAlgorithm, ValueError, TypeError):
        return False
    return True


def _in_validity(cert: x509.Certificate, now: datetime) -> bool:
    return cert.not_valid_before_utc <= now <= cert.not_valid_after_utc


def _delegated_responder(cert: x509.Certificate, issuer: x509.Certificate, now: datetime) -> bool:
    """RFC 6960 §4.2.2.2: issued by the CA itself, carrying id-kp-OCSPSigning, currently valid."""
    if not _in_validity(cert, now):
        return False
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except (x509.ExtensionNotFound, ValueError):
        return False
    if ExtendedKeyUsageOID.OCSP_SIGNING not in list(eku):
        return False
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def _signature_ok(
    response: ocsp.OCSPResponse,
    issuer: x509.Certificate,
    trusted_responders: Sequence[x509.Certificate],
    now: datetime,
) -> bool:
    if _signed_by(response, issuer.public_key()):
        return True
    for cert in trusted_responders:
        if _signed_by(response, cert.public_key()):
            return True
    try:
        embedded = list(response.certificates)
    except ValueError:
        embedded = []
    return any(
        _delegated_responder(cert, issuer, now) and _signed_by(response, cert.public_key())
        for cert in embedded[:8]
    )


def evaluate_response(
    der: bytes,
    leaf: x509.Certificate,
    issuer: x509.Certificate,
    nonce: bytes | None,
    settings: OcspSettings,
    now: datetime,
) -> tuple[Outcome, datetime, datetime | None]:
    """(GOOD or REVOKED, this_update, next_update) for a verified response; raise :class:`_Failure`."""
    try:
        response = ocsp.load_der_ocsp_response(der)
    except ValueError:
        raise _Failure(Outcome.UNAVAILABLE, "the OCSP response does not parse") from None
    if response.response_status != ocsp.OCSPResponseStatus.SUCCESSFUL:
        raise _Failure(Outcome.UNAVAILABLE, f"the OCSP responder answered {response.response_status.name}")
    try:
        return _evaluate(response, leaf, issuer, nonce, settings, now)
    except (ValueError, UnsupportedAlgorithm):
        raise _Failure(Outcome.UNAVAILABLE, "the OCSP response is malformed") from None


def _evaluate(
    response: ocsp.OCSPResponse,
    leaf: x509.Certificate,
    issuer: x509.Certificate,
    nonce: bytes | None,
    settings: OcspSettings,
    now: datetime,
) -> tuple[Outcome, datetime, datetime | None]:
    if not _signature_ok(response, issuer, settings.ca_certificates, now):
        raise _Failure(
            Outcome.FORGED, "the OCSP response is not signed by the issuer or an authorized responder"
        )
    try:
        nonce_ext = response.extensions.get_extension_for_class(x509.OCSPNonce).value
    except x509.ExtensionNotFound:
        nonce_ext = None
    except ValueError:
        raise _Failure(Outcome.FORGED, "the OCSP response has malformed extensions") from None
    if nonce_ext is not None and (nonce is None or nonce_ext.nonce != nonce):
        raise _Failure(Outcome.FORGED, "the OCSP response echoes another request's nonce")
    single = _single_for(response, leaf, issuer)
    if single is None:
        raise _Failure(Outcome.FORGED, "the OCSP response is not about this certificate")
    this_update, next_update = single.this_update_utc, single.next_update_utc
    if this_update > now + CLOCK_SKEW:
        raise _Failure(Outcome.STALE, "the OCSP response's thisUpdate is in the future")
    if next_update is not None and (next_update < this_update or now > next_update + CLOCK_SKEW):
        raise _Failure(Outcome.STALE, "the OCSP response's nextUpdate has passed")
    if settings.this_update_max_age > 0 and now - this_update > timedelta(
        seconds=settings.this_update_max_age
    ):
        raise _Failure(Outcome.STALE, "the OCSP response's thisUpdate is older than ocsp_this_update_max_age")
    status = single.certificate_status
    if status == ocsp.OCSPCertStatus.GOOD:
        return Outcome.GOOD, this_update, next_update
    if status == ocsp.OCSPCertStatus.REVOKED:
        return Outcome.REVOKED, this_update, next_update
    raise _Failure(Outcome.UNAVAILABLE, f"unknown OCSP status for cert with serial number {serial_hex(leaf)}")


def _single_for(
    response: ocsp.OCSPResponse, leaf: x509.Certificate, issuer: x509.Certificate
) -> ocsp.OCSPSingleResponse | None:
    """The single response carrying the leaf's CertID (under whatever hash the responder used)."""
    ids: dict[str, tuple[bytes, bytes]] = {}
    try:
        singles = list(response.responses)
    except ValueError:
        return None
    for single in singles[:16]:
        try:
            algorithm = single.hash_algorithm
            if single.serial_number != leaf.serial_number or algorithm.name not in _CERT_ID_HASHES:
                continue
            if algorithm.name not in ids:
                ids[algorithm.name] = _cert_id(leaf, issuer, _CERT_ID_HASHES[algorithm.name]())
            if (single.issuer_name_hash, single.issuer_key_hash) == ids[algorithm.name]:
                return single
        except (ValueError, UnsupportedAlgorithm):
            continue
    return None


# -- the checker -------------------------------------------------------------------------------


def _combine(results: list[OcspResult], query_all: bool, serial: str) -> OcspResult:
    if not results:
        return OcspResult(Outcome.UNAVAILABLE, f"no OCSP responder for cert with serial number {serial}")
    revoked = [r for r in results if r.outcome is Outcome.REVOKED]
    if revoked:
        return revoked[0]
    forged = [r for r in results if r.outcome is Outcome.FORGED]
    if forged:
        return forged[0]
    good = [r for r in results if r.outcome is Outcome.GOOD]
    if good and (not query_all or len(good) == len(results)):
        return good[0]
    stale = [r for r in results if r.outcome is Outcome.STALE]
    if stale:
        return stale[0]
    failures = [r for r in results if not r.outcome.definitive]
    detail = "; ".join(dict.fromkeys(r.detail for r in failures))
    if query_all and good:
        detail = f"not every OCSP server answered good: {detail}"
    return OcspResult(Outcome.UNAVAILABLE, detail)


class OcspChecker:
    """OCSP client state of one cert mount (per process): response cache and TLS contexts."""

    def __init__(self, cache_size: int = 100) -> None:
        self.cache_size = max(2, cache_size)
        self._cache: OrderedDict[tuple[str, int, str], _Cached] = OrderedDict()
        self._inflight: dict[tuple[Any, ...], asyncio.Future[list[OcspResult]]] = {}
        self._ssl: OrderedDict[str, ssl.SSLContext] = OrderedDict()

    def resize(self, size: int) -> None:
        self.cache_size = max(2, size)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)

    def clear(self) -> None:
        self._cache.clear()

    # -- cache -----------------------------------------------------------------------------

    @staticmethod
    def _key(
        leaf: x509.Certificate, issuer: x509.Certificate, settings: OcspSettings
    ) -> tuple[str, int, str]:
        issuer_fp = hashlib.sha256(issuer.public_bytes(serialization.Encoding.DER)).hexdigest()
        return issuer_fp, leaf.serial_number, settings.ca_pem_digest

    def _cached(self, key: tuple[str, int, str], settings: OcspSettings, now: datetime) -> OcspResult | None:
        hit = self._cache.get(key)
        if hit is None:
            return None
        if now >= hit.expires:
            del self._cache[key]
            return None
        if settings.this_update_max_age > 0 and now - hit.this_update > timedelta(
            seconds=settings.this_update_max_age
        ):
            return None  # too old for this entry: ask again (and replace it)
        self._cache.move_to_end(key)
        return OcspResult(hit.outcome, "", cached=True)

    def _store(
        self,
        key: tuple[str, int, str],
        outcome: Outcome,
        this_update: datetime,
        next_update: datetime | None,
        now: datetime,
    ) -> None:
        if next_update is None:
            expires = now + timedelta(seconds=NO_NEXT_UPDATE_CACHE_SECONDS)
        else:
            expires = min(next_update, now + timedelta(seconds=MAX_CACHE_SECONDS))
        if expires <= now:
            return
        self._cache[key] = _Cached(outcome, this_update, expires)
        self._cache.move_to_end(key)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)

    # -- checking --------------------------------------------------------------------------

    async def check(
        self, leaf: x509.Certificate, issuer: x509.Certificate, settings: OcspSettings, now: datetime
    ) -> OcspResult:
        """The revocation status of ``leaf``: cached, else asked of its responders."""
        key = self._key(leaf, issuer, settings)
        hit = self._cached(key, settings, now)
        if hit is not None:
            return hit
        serial = serial_hex(leaf)
        urls = responder_urls(leaf, settings)
        if not urls:
            return OcspResult(
                Outcome.UNAVAILABLE, f"no OCSP responder URL for cert with serial number {serial}"
            )
        # concurrent logins with one certificate share one round; it runs as its own task, so
        # a caller that goes away (client disconnect) does not cancel it for the others
        flight = (key, tuple(urls), settings)
        task = self._inflight.get(flight)
        if task is None:
            task = asyncio.ensure_future(self._round(leaf, issuer, settings, urls, key, now))
            self._inflight[flight] = task
            task.add_done_callback(lambda done: self._landed(flight, done))
        results = await asyncio.shield(task)
        return _combine(results, settings.query_all_servers, serial)

    def _landed(self, flight: tuple[Any, ...], task: asyncio.Future[list[OcspResult]]) -> None:
        if self._inflight.get(flight) is task:
            del self._inflight[flight]
        if not task.cancelled():
            task.exception()  # retrieved: no "never retrieved" warning when every caller left

    async def _round(
        self,
        leaf: x509.Certificate,
        issuer: x509.Certificate,
        settings: OcspSettings,
        urls: list[str],
        key: tuple[str, int, str],
        now: datetime,
    ) -> list[OcspResult]:
        """Ask the responders (in order, or all at once); cache a definitive verdict."""
        answers: list[_Answer] = []
        async with httpx.AsyncClient(
            timeout=TIMEOUT_SECONDS, verify=self._ssl_context(settings), follow_redirects=False
        ) as client:
            if settings.query_all_servers:
                answers = list(
                    await asyncio.gather(
                        *(self._ask(client, url, leaf, issuer, settings, now) for url in urls)
                    )
                )
            else:
                for url in urls:
                    answer = await self._ask(client, url, leaf, issuer, settings, now)
                    answers.append(answer)
                    if answer.result.outcome.definitive or answer.result.outcome is Outcome.FORGED:
                        break
        results = [a.result for a in answers]
        verdict = _combine(results, settings.query_all_servers, "").outcome
        if verdict.definitive:
            counted = [a for a in answers if a.result.outcome.definitive and a.this_update is not None]
            if settings.query_all_servers:
                # the verdict of several answers: keep it no longer than the first of them expires
                this_update = min(a.this_update for a in counted if a.this_update is not None)
                nexts = [a.next_update for a in counted]
                next_update = None if None in nexts else min(n for n in nexts if n is not None)
            else:
                this_update, next_update = counted[-1].this_update or now, counted[-1].next_update
            self._store(key, verdict, this_update, next_update, now)
        return results

    async def _ask(
        self,
        client: httpx.AsyncClient,
        url: str,
        leaf: x509.Certificate,
        issuer: x509.Certificate,
        settings: OcspSettings,
        now: datetime,
    ) -> _Answer:
        nonce = os.urandom(NONCE_BYTES)
        try:
            body = build_request(leaf, issuer, nonce)
            der = await self._fetch(client, url, body, settings.max_retries)
            outcome, this_update, next_update = evaluate_response(der, leaf, issuer, nonce, settings, now)
        except _Failure as failure:
            log.warning("OCSP check at %s for serial %s: %s", safe_url(url), serial_hex(leaf), failure.detail)
            return _Answer(OcspResult(failure.outcome, failure.detail))
        except ValueError:
            detail = "the OCSP request could not be built for this certificate"
            log.warning("OCSP check for serial %s: %s", serial_hex(leaf), detail)
            return _Answer(OcspResult(Outcome.UNAVAILABLE, detail))
        return _Answer(OcspResult(outcome), this_update, next_update)

    async def _fetch(self, client: httpx.AsyncClient, url: str, body: bytes, max_retries: int) -> bytes:
        if urlsplit(url).scheme.lower() not in _REDIRECT_SCHEMES:
            raise _Failure(Outcome.UNAVAILABLE, "an OCSP responder URL is not http(s)")
        retries = min(max(0, max_retries), MAX_RETRIES)
        last = "the OCSP responder did not answer"
        for attempt in range(retries + 1):
            if attempt:
                await asyncio.sleep(min(BACKOFF_SECONDS * 2 ** (attempt - 1), BACKOFF_MAX_SECONDS))
            try:
                status, data = await self._post(client, url, body)
            except httpx.UnsupportedProtocol:
                raise _Failure(Outcome.UNAVAILABLE, "an OCSP responder URL is not http(s)") from None
            except httpx.TimeoutException:
                last = "the OCSP responder timed out"
                continue
            except (httpx.TransportError, httpx.InvalidURL, ssl.SSLError, OSError) as exc:
                last = f"the OCSP responder could not be reached ({type(exc).__name__})"
                continue
            if status == 200:
                return data
            last = f"the OCSP responder answered HTTP {status}"
            if status not in _RETRY_STATUSES:
                break
        raise _Failure(Outcome.UNAVAILABLE, last)

    async def _post(self, client: httpx.AsyncClient, url: str, body: bytes) -> tuple[int, bytes]:
        request = client.build_request(
            "POST",
            url,
            content=body,
            headers={
                "Content-Type": "application/ocsp-request",
                "Accept": "application/ocsp-response",
                "Accept-Encoding": "identity",
            },
        )
        for _ in range(MAX_REDIRECTS + 1):
            response = await client.send(request, stream=True)
            try:
                if response.has_redirect_location:
                    follow = response.next_request
                    if follow is None or follow.url.scheme not in _REDIRECT_SCHEMES:
                        raise _Failure(
                            Outcome.UNAVAILABLE, "the OCSP responder redirected to a non-http(s) URL"
                        )
                    request = follow
                    continue
                if response.status_code != 200:
                    return response.status_code, b""
                declared = response.headers.get("Content-Length", "")
                if declared.isdigit() and int(declared) > MAX_RESPONSE_BYTES:
                    raise _Failure(Outcome.UNAVAILABLE, "the OCSP response is too large")
                data = bytearray()
                async for chunk in response.aiter_raw():
                    data += chunk
                    if len(data) > MAX_RESPONSE_BYTES:
                        raise _Failure(Outcome.UNAVAILABLE, "the OCSP response is too large")
                return 200, bytes(data)
            finally:
                await response.aclose()
        raise _Failure(Outcome.UNAVAILABLE, "the OCSP responder redirected too many times")

    def _ssl_context(self, settings: OcspSettings) -> ssl.SSLContext:
        key = settings.ca_pem_digest
        found = self._ssl.get(key)
        if found is not None:
            self._ssl.move_to_end(key)
            return found
        ctx = ssl.create_default_context()
        try:
            import certifi

            ctx.load_verify_locations(cafile=certifi.where())
        except (ImportError, OSError, ssl.SSLError):
            pass
        if settings.ca_certificates:
            pem = "".join(
                c.public_bytes(serialization.Encoding.PEM).decode() for c in settings.ca_certificates
            )
            ctx.load_verify_locations(cadata=pem)
        self._ssl[key] = ctx
        while len(self._ssl) > _SSL_CONTEXTS_MAX:
            self._ssl.popitem(last=False)
        return ctx
