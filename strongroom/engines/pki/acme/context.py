"""What every ACME request shares: its directory, its signature check, its reply.

A directory is one of the four bases Vault serves (``acme/``, ``roles/<r>/acme/``,
``issuer/<i>/acme/``, ``issuer/<i>/roles/<r>/acme/``); it decides the role (or
sign-verbatim) and issuer that orders are signed with. Every reply, errors
included, carries a fresh ``Replay-Nonce`` and a ``Link: rel="index"``.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from strongroom.engines.pki.acme import jws, state
from strongroom.engines.pki.acme.nonces import nonce_table
from strongroom.engines.pki.acme.problems import AcmeProblem
from strongroom.engines.pki.acme.validation import ValidationSettings
from strongroom.engines.pki.paths_roles import role_cache
from strongroom.engines.pki.roles import RoleEntry
from strongroom.engines.pki.store import get_cluster_config
from strongroom.logical.errors import StrongroomError
from strongroom.logical.request import RawResponse, Request, Response

if TYPE_CHECKING:
    from strongroom.engines.pki.backend import PkiBackend
    from strongroom.framework import FieldData

JOSE = "application/jose+json"
VERBATIM = ""  # Directory.role_name for the sign-verbatim policy
DISABLE_PUBLIC_ENV = (
    "STRONGROOM_DISABLE_PUBLIC_ACME",
    "VAULT_DISABLE_PUBLIC_ACME",
    "BAO_DISABLE_PUBLIC_ACME",
)


@dataclass
class Directory:
    """One ACME directory of a mount, resolved against ``config/acme``."""

    prefix: str  # e.g. "roles/web/acme/" (inside the mount)
    base_url: str  # config/cluster path + "/" + prefix
    config: state.AcmeConfig
    role_name: str  # VERBATIM for sign-verbatim
    role: RoleEntry | None
    issuer_ref: str  # "" = the role's issuer (or the mount default)
    issuer_from_path: bool

    def url(self, rel: str) -> str:
        return self.base_url + rel

    @functools.cached_property
    def validation_settings(self) -> ValidationSettings:
        """Where validation may connect, parsed once per request from ``config``."""
        try:
            return ValidationSettings.from_config(self.config.to_json())
        except ValueError as err:
            raise AcmeProblem("serverInternal", f"config/acme is invalid: {err}", status=503) from None

    @property
    def eab_policy(self) -> str:
        if any(os.environ.get(name, "").lower() in ("1", "true", "yes") for name in DISABLE_PUBLIC_ENV):
            return "always-required"
        return self.config.eab_policy

    def account_id_from_kid(self, kid: str) -> str:
        prefix = self.url("account/")
        if not kid.startswith(prefix):
            raise AcmeProblem("accountDoesNotExist", "the kid is not an account URL of this directory")
        return kid[len(prefix) :]


@dataclass
class Reply:
    """A successful ACME answer before the common headers are added."""

    body: Any = None  # JSON-able, bytes (sent as is), or None (empty)
    status: int = 200
    location: str = ""
    links: list[tuple[str, str]] = field(default_factory=list)  # (url, rel)
    content_type: str = "application/json"
    retry_after: int = 0


@dataclass
class Signed:
    """A verified POST: the JWS and, for ``kid`` requests, the account."""

    request: jws.JwsRequest
    account: state.Account | None

    def payload(self) -> dict[str, Any]:
        return self.request.payload_json()


def directory_prefix(d: FieldData) -> str:
    role, ref = _captured(d, "role"), _captured(d, "issuer_ref")
    out = f"issuer/{ref}/" if ref else ""
    out += f"roles/{role}/" if role else ""
    return out + "acme/"


def _captured(d: FieldData, name: str) -> str:
    try:
        value, sent = d.get_ok(name)
    except KeyError:
        return ""
    return str(value) if sent and value else ""


class SettingsCache:
    """``config/acme`` and the cluster path, read once per change instead of per request.

    Both writes bump the node-wide engine generation (shared memory), so a worker sees
    a change made through another before its next ACME request.
    """

    def __init__(self, backend: PkiBackend) -> None:
        self._backend = backend
        self._generation = -1
        self._value: tuple[state.AcmeConfig, str] | None = None

    async def get(self) -> tuple[state.AcmeConfig, str]:
        """The cached values, shared by every request of this process: read them, never change them."""
        core = self._backend.core
        generation = int(core.engine_generation()) if core is not None else -2
        if self._value is None or generation != self._generation or generation == -2:
            storage = self._backend.storage
            config = await state.load_config(storage)
            cluster = (await get_cluster_config(storage)).get("path", "")
            self._value, self._generation = (config, cluster), generation
        config, cluster = self._value
        return config, cluster


def settings_cache(backend: PkiBackend) -> SettingsCache:
    cache = backend.__dict__.get("_acme_settings")
    if cache is None:
        cache = backend.__dict__["_acme_settings"] = SettingsCache(backend)
    return cache


def settings_changed(backend: PkiBackend) -> None:
    """Call after writing config/acme or config/cluster."""
    backend.__dict__.pop("_acme_settings", None)
    if backend.core is not None:
        backend.core.engine_changed()


async def resolve_directory(backend: PkiBackend, d: FieldData) -> Directory:
    """The directory this request is for; 404-style problems when ACME is off for it."""
    config, cluster = await settings_cache(backend).get()
    if not config.enabled:
        raise AcmeProblem("malformed", "ACME is disabled in configuration", status=404)
    if not cluster:
        raise AcmeProblem("malformed", "ACME is not configured: config/cluster path is not set", status=404)
    prefix = directory_prefix(d)
    role_name = _captured(d, "role")
    issuer_ref = _captured(d, "issuer_ref")
    if issuer_ref and not _allowed(issuer_ref, config.allowed_issuers):
        raise AcmeProblem("unauthorized", f"issuer {issuer_ref!r} is not allowed for ACME", status=403)
    if not role_name:
        policy = config.default_directory_policy
        if policy == "forbid":
            raise AcmeProblem("unauthorized", "this ACME directory is forbidden by policy", status=403)
        if policy.startswith("role:"):
            role_name = policy[5:]
        elif config.allowed_roles != ["*"] and config.allowed_roles:
            raise AcmeProblem(
                "unauthorized", "sign-verbatim is not allowed when allowed_roles is restricted", status=403
            )
    elif not _allowed(role_name, config.allowed_roles):
        raise AcmeProblem("unauthorized", f"role {role_name!r} is not allowed for ACME", status=403)
    role: RoleEntry | None = None
    if role_name:
        role = await role_cache(backend).get(role_name)
        if role is None:
            raise AcmeProblem("unauthorized", f"role {role_name!r} does not exist", status=403)
        if role.no_store:
            raise AcmeProblem("unauthorized", f"role {role_name!r} has no_store set; ACME needs it false")
        role = role.copy()
    return Directory(
        prefix=prefix,
        base_url=cluster.rstrip("/") + "/" + prefix,
        config=config,
        role_name=role_name,
        role=role,
        issuer_ref=issuer_ref,
        issuer_from_path=bool(issuer_ref),
    )


def _allowed(name: str, allowed: list[str]) -> bool:
    return "*" in allowed or name in allowed


# -- replies ----------------------------------------------------------------------------------


def _headers(nonce: str, directory: Directory | None, reply: Reply | None) -> dict[str, str | list[str]]:
    headers: dict[str, str | list[str]] = {"Replay-Nonce": nonce, "Cache-Control": "no-store"}
    links: list[str] = []
    if directory is not None:
        links.append(f'<{directory.url("directory")}>;rel="index"')
    if reply is not None:
        links += [f'<{url}>;rel="{rel}"' for url, rel in reply.links]
        if reply.location:
            headers["Location"] = reply.location
        if reply.retry_after:
            headers["Retry-After"] = str(reply.retry_after)
    if links:
        headers["Link"] = links
    return headers


def render(reply: Reply, nonce: str, directory: Directory | None) -> Response:
    if reply.body is None:
        body = b""
    elif isinstance(reply.body, bytes):
        body = reply.body
    else:
        body = json.dumps(reply.body, indent=None, separators=(",", ":")).encode()
    raw = RawResponse(body, reply.content_type, reply.status, _headers(nonce, directory, reply))
    return Response(raw=raw)


def render_problem(problem: AcmeProblem, nonce: str, directory: Directory | None) -> Response:
    """An RFC 7807 document; ``extra["_location"]`` becomes a Location header (409 conflicts)."""
    doc = problem.document()
    location = str(doc.pop("_location", ""))
    reply = Reply(status=problem.status, location=location)
    raw = RawResponse(
        json.dumps(doc).encode(),
        "application/problem+json",
        problem.status,
        _headers(nonce, directory, reply),
    )
    return Response(raw=raw)


AcmeHandler = Callable[[Request, "FieldData", Directory], Awaitable[Reply]]


def acme_handler(backend: PkiBackend, fn: AcmeHandler) -> Callable[[Request, FieldData], Awaitable[Response]]:
    """Wrap a protocol handler: directory, fresh nonce, problems as RFC 7807 documents."""

    async def handler(req: Request, d: FieldData) -> Response:
        nonce = nonce_table(backend.core).issue()
        directory: Directory | None = None
        try:
            directory = await resolve_directory(backend, d)
            return render(await fn(req, d, directory), nonce, directory)
        except AcmeProblem as problem:
            return render_problem(problem, nonce, directory)
        except StrongroomError as err:
            status = err.status if 400 <= err.status < 500 else 500
            kind = "malformed" if status < 500 else "serverInternal"
            detail = "; ".join(str(e) for e in err.errors) or kind
            return render_problem(AcmeProblem(kind, detail, status=status), nonce, directory)

    return handler


# -- request verification ---------------------------------------------------------------------


async def verify_post(
    backend: PkiBackend, req: Request, directory: Directory, rel: str, *, jwk_allowed: bool, kid_allowed: bool
) -> Signed:
    """Content type, JWS shape, URL, nonce, then the signature (RFC 8555 §6.2-6.5).

    ``rel`` is the request's URL relative to the directory base; the protected
    header's ``url`` must name exactly it. Failures raise problems before any
    state is touched.
    """
    content_type = req.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if content_type != JOSE:
        raise AcmeProblem("malformed", f"Content-Type must be {JOSE}", status=415)
    signed = jws.parse(req.raw_body)
    if signed.url != directory.url(rel):
        raise AcmeProblem("unauthorized", "the JWS url header does not match the request URL")
    if not nonce_table(backend.core).redeem(signed.nonce):
        raise AcmeProblem("badNonce", "the nonce is unknown, expired or already used")
    if signed.jwk is not None:
        if not jwk_allowed:
            raise AcmeProblem("malformed", "this request must be signed with an account key id (kid)")
        jws.public_key(signed.jwk)
        jws.verify(signed, signed.jwk)
        return Signed(signed, None)
    if not kid_allowed:
        raise AcmeProblem("malformed", "this request must carry the account key (jwk), not a kid")
    account = await load_active_account(backend, directory, str(signed.kid))
    jws.verify(signed, account.jwk)
    return Signed(signed, account)


async def load_active_account(backend: PkiBackend, directory: Directory, kid: str) -> state.Account:
    account_id = directory.account_id_from_kid(kid)
    account = await state.load_account(backend.storage, account_id)
    if account is None or account.directory != directory.prefix:
        raise AcmeProblem("accountDoesNotExist", "no account with this key id in this directory")
    if account.status != "valid":
        raise AcmeProblem("unauthorized", f"the account is {account.status}")
    if directory.eab_policy == "always-required" and not account.eab:
        raise AcmeProblem("externalAccountRequired", "this directory requires external account binding")
    return account
