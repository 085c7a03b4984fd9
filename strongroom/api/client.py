"""A thin typed client for the Vault-compatible HTTP API, used by the CLI and by tests.

It mirrors the habits of Vault's Go client: environment variables (``STRONGROOM_*`` first,
then ``VAULT_*``), the token file, ``X-Vault-Request``/``X-Vault-Token`` headers, the ``LIST``
verb, and two retries on 5xx answers other than 501. Methods return the decoded JSON envelope
(or ``None`` for an empty answer) and raise :class:`ApiError` for any status of 400 or more.
Grouped helpers (``client.sys``, ``client.token``, ``client.kv``) are plain attributes so that
type checkers and editors can follow them.
"""

from __future__ import annotations

import os
import ssl
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

DEFAULT_ADDRESS = "https://127.0.0.1:8200"
TOKEN_FILE = ".strongroom-token"  # noqa: S105 — a file name, not a secret
LEGACY_TOKEN_FILE = ".vault-token"  # noqa: S105
Json = dict[str, Any]
Reply = Json | None  # None: the server answered 204 or an empty body

# Vault's client retries these (plus 5xx other than 501); 501 means "not initialised".
_RETRY_STATUSES = frozenset({412})


def env(name: str) -> str | None:
    """Read ``STRONGROOM_<name>`` then ``VAULT_<name>``; empty values count as unset."""
    for prefix in ("STRONGROOM_", "VAULT_"):
        value = os.environ.get(prefix + name)
        if value:
            return value
    return None


def token_file_path() -> Path:
    """Where ``login`` stores the token: ``~/.strongroom-token``."""
    return Path.home() / TOKEN_FILE


def read_token_file() -> str | None:
    """The stored token, falling back to ``~/.vault-token`` so existing set-ups keep working."""
    for name in (TOKEN_FILE, LEGACY_TOKEN_FILE):
        path = Path.home() / name
        try:
            token = path.read_text(encoding="utf-8").strip()
        except OSError:
            continue
        if token:
            return token
    return None


def write_token_file(token: str) -> Path:
    """Store ``token`` with mode 0600 and no trailing newline, as Vault's token helper does."""
    path = token_file_path()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # the file may have existed with looser permissions
        os.write(fd, token.encode("utf-8"))
    finally:
        os.close(fd)
    return path


class ApiError(Exception):
    """An HTTP status of 400 or more; ``errors`` is the server's ``errors`` list."""

    def __init__(
        self, status: int, errors: list[str], *, method: str = "", url: str = "", body: Reply = None
    ) -> None:
        super().__init__(status, errors)
        self.status = status
        self.errors = errors
        self.method = method
        self.url = url
        self.body = body

    def __str__(self) -> str:
        lines = ["Error making API request.", ""]
        if self.url:
            lines.append(f"URL: {self.method} {self.url}")
        lines.append(f"Code: {self.status}. Errors:")
        lines.append("")
        lines.extend(f"* {err}" for err in self.errors)
        return "\n".join(lines)


def _ssl_context(
    cacert: str | None, capath: str | None, client_cert: str | None, client_key: str | None
) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=cacert, capath=capath)
    if client_cert:
        ctx.load_cert_chain(client_cert, client_key)
    return ctx


class Client:
    """One connection to a server; ``client_token`` may be changed after construction (login)."""

    def __init__(
        self,
        address: str | None = None,
        token: str | None = None,
        *,
        cacert: str | None = None,
        capath: str | None = None,
        client_cert: str | None = None,
        client_key: str | None = None,
        skip_verify: bool | None = None,
        namespace: str | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
        retry_wait: float = 1.0,
        wrap_ttl: str | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.address = (address or env("ADDR") or DEFAULT_ADDRESS).rstrip("/")
        # ``client_token`` is the credential; ``client.token`` is the auth/token/ helper group.
        self.client_token = token or env("TOKEN") or read_token_file()
        self.namespace = namespace or env("NAMESPACE")
        self.wrap_ttl = wrap_ttl
        self.max_retries = max_retries if max_retries is not None else int(env("MAX_RETRIES") or 2)
        self.retry_wait = retry_wait
        if timeout is None:
            timeout = float((env("CLIENT_TIMEOUT") or "60").rstrip("s"))
        verify: ssl.SSLContext | bool = True
        if skip_verify is None:
            skip_verify = (env("SKIP_VERIFY") or "").strip().lower() in {"1", "t", "true", "yes"}
        if transport is None:
            if skip_verify:
                verify = False
            else:
                verify = _ssl_context(
                    cacert or env("CACERT"),
                    capath or env("CAPATH"),
                    client_cert or env("CLIENT_CERT"),
                    client_key or env("CLIENT_KEY"),
                )
        self._http = httpx.Client(timeout=timeout, verify=verify, transport=transport)
        self.sys = SysApi(self)
        self.token = TokenApi(self)
        self.kv = KvApi(self)

    def close(self) -> None:
        self._http.close()

    def url(self, path: str) -> str:
        return f"{self.address}/v1/{urllib.parse.quote(path.lstrip('/'), safe='/')}"

    def request(
        self,
        method: str,
        path: str,
        json: Any = None,
        params: Reply = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        """Send one request (retrying like Vault) and return the decoded body, or None if empty."""
        response = self._send(method, path, json, params, headers)
        if response.status_code >= 400:
            raise self._error(response)
        return _decode(response)

    def _send(
        self,
        method: str,
        path: str,
        json: Any,
        params: Reply,
        headers: dict[str, str] | None,
    ) -> httpx.Response:
        all_headers = {"X-Vault-Request": "true"}
        if self.client_token:
            all_headers["X-Vault-Token"] = self.client_token
        if self.namespace:
            all_headers["X-Vault-Namespace"] = self.namespace
        if self.wrap_ttl:
            all_headers["X-Vault-Wrap-TTL"] = self.wrap_ttl
        all_headers.update(headers or {})
        url = self.url(path)
        attempt = 0
        while True:
            try:
                response = self._http.request(method, url, json=json, params=params, headers=all_headers)
            except httpx.TransportError:
                if attempt >= self.max_retries:
                    raise
            else:
                status = response.status_code
                retry = status in _RETRY_STATUSES or (status >= 500 and status != 501)
                if not retry or attempt >= self.max_retries:
                    return response
            attempt += 1
            time.sleep(self.retry_wait)

    def _error(self, response: httpx.Response) -> ApiError:
        body = _decode(response)
        errors: list[str] = []
        if body is not None and isinstance(body.get("errors"), list):
            errors = [str(e) for e in body["errors"]]
        elif body is not None and "http_raw_body" not in (body.get("data") or {}):
            errors = [str(w) for w in body.get("warnings") or []]  # an envelope: its warnings explain
        elif response.text:
            errors = [response.text.strip()]
        request = response.request
        return ApiError(response.status_code, errors, method=request.method, url=str(request.url), body=body)

    def read(self, path: str, params: Reply = None) -> Reply:
        """GET; a 404 gives None unless the body carries data or warnings (KV v2 deleted versions)."""
        try:
            return self.request("GET", path, params=params)
        except ApiError as exc:
            if exc.status == 404:
                body = exc.body or {}
                if body.get("data") or body.get("warnings"):
                    return body
                return None
            raise

    def write(self, path: str, data: Reply = None) -> Reply:
        return self.request("POST", path, json=data if data is not None else {})

    def list(self, path: str) -> Reply:
        """LIST; a 404 means "no keys" and gives None."""
        try:
            return self.request("LIST", path)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    def delete(self, path: str, params: Reply = None) -> Reply:
        return self.request("DELETE", path, params=params)

    def patch(self, path: str, data: Json) -> Reply:
        """PATCH with the merge-patch content type the server insists on (415 otherwise)."""
        return self.request(
            "PATCH", path, json=data, headers={"Content-Type": "application/merge-patch+json"}
        )

    def unwrap(self, token: str | None = None) -> Reply:
        """Unwrap ``token``, or the client token itself when it is the wrapping token."""
        return self.write("sys/wrapping/unwrap", {"token": token} if token else {})


def _decode(response: httpx.Response) -> Reply:
    if response.status_code == 204 or not response.content:
        return None
    try:
        body = response.json()
    except ValueError:  # a raw answer (PEM, CRL, metrics): keep Vault's raw-response field names
        raw = {"http_raw_body": response.text, "http_content_type": response.headers.get("content-type")}
        return {"data": raw}
    return body if isinstance(body, dict) else {"data": body}


def data_of(body: Reply) -> Json:
    """The ``data`` map of an envelope; a bare sys answer (``seal-status``) is its own data."""
    if not body:
        return {}
    if "data" in body:
        data = body["data"]
        return data if isinstance(data, dict) else {}
    return body


class SysApi:
    """``sys/`` endpoints the CLI uses."""

    def __init__(self, client: Client) -> None:
        self._c = client

    def init_status(self) -> Reply:
        return self._c.request("GET", "sys/init")

    def init(self, secret_shares: int, secret_threshold: int, **extra: Any) -> Reply:
        body = {"secret_shares": secret_shares, "secret_threshold": secret_threshold, **extra}
        return self._c.request("PUT", "sys/init", json=body)

    def seal_status(self) -> Reply:
        return self._c.request("GET", "sys/seal-status")

    def unseal(self, key: str | None = None, *, reset: bool = False, migrate: bool = False) -> Reply:
        body: Json = {"reset": True} if reset else {"key": key}
        if migrate:
            body["migrate"] = True
        return self._c.request("PUT", "sys/unseal", json=body)

    def seal(self) -> None:
        self._c.request("PUT", "sys/seal")

    def step_down(self) -> None:
        self._c.request("PUT", "sys/step-down")

    def leader(self) -> Reply:
        return self._c.request("GET", "sys/leader")

    def health(self) -> Reply:
        # Like Vault's client, ask for 299 everywhere so every state comes back with a body.
        codes = ("uninitcode", "sealedcode", "standbycode", "drsecondarycode", "performancestandbycode")
        return self._c.request("GET", "sys/health", params=dict.fromkeys(codes, "299"))

    def list_mounts(self) -> Json:
        return data_of(self._c.request("GET", "sys/mounts"))

    def enable_mount(self, path: str, body: Json) -> None:
        self._c.request("POST", f"sys/mounts/{path.strip('/')}", json=body)

    def disable_mount(self, path: str) -> None:
        self._c.request("DELETE", f"sys/mounts/{path.strip('/')}")

    def tune_mount(self, path: str, body: Json) -> None:
        self._c.request("POST", f"sys/mounts/{path.strip('/')}/tune", json=body)

    def remount(self, source: str, destination: str) -> Reply:
        return self._c.request("POST", "sys/remount", json={"from": source, "to": destination})

    def remount_status(self, migration_id: str) -> Json:
        return data_of(self._c.request("GET", f"sys/remount/status/{migration_id}"))

    def list_auth(self) -> Json:
        return data_of(self._c.request("GET", "sys/auth"))

    def enable_auth(self, path: str, body: Json) -> None:
        self._c.request("POST", f"sys/auth/{path.strip('/')}", json=body)

    def disable_auth(self, path: str) -> None:
        self._c.request("DELETE", f"sys/auth/{path.strip('/')}")

    def list_policies(self) -> list[str]:
        body = self._c.list("sys/policies/acl")
        return [str(k) for k in data_of(body).get("keys") or []]

    def read_policy(self, name: str) -> Reply:
        return self._c.read(f"sys/policies/acl/{name}")

    def write_policy(self, name: str, policy: str) -> None:
        self._c.request("PUT", f"sys/policies/acl/{name}", json={"policy": policy})

    def delete_policy(self, name: str) -> None:
        self._c.request("DELETE", f"sys/policies/acl/{name}")

    def capabilities(self, paths: list[str], token: str | None = None) -> Json:
        if token is None:
            return data_of(self._c.request("POST", "sys/capabilities-self", json={"paths": paths}))
        body = {"token": token, "paths": paths}
        return data_of(self._c.request("POST", "sys/capabilities", json=body))

    def rotate(self) -> None:
        self._c.request("PUT", "sys/rotate")

    def key_status(self) -> Json:
        return data_of(self._c.request("GET", "sys/key-status"))

    def generate_root_status(self) -> Reply:
        return self._c.request("GET", "sys/generate-root/attempt")

    def generate_root_init(self, otp: str | None = None, pgp_key: str | None = None) -> Reply:
        body = {k: v for k, v in (("otp", otp), ("pgp_key", pgp_key)) if v}
        return self._c.request("PUT", "sys/generate-root/attempt", json=body)

    def generate_root_update(self, key: str, nonce: str) -> Reply:
        return self._c.request("PUT", "sys/generate-root/update", json={"key": key, "nonce": nonce})

    def generate_root_cancel(self) -> None:
        self._c.request("DELETE", "sys/generate-root/attempt")

    def rekey_status(self) -> Reply:
        return self._c.request("GET", "sys/rekey/init")

    def rekey_init(self, secret_shares: int, secret_threshold: int, **extra: Any) -> Reply:
        body = {"secret_shares": secret_shares, "secret_threshold": secret_threshold, **extra}
        return self._c.request("PUT", "sys/rekey/init", json=body)

    def rekey_update(self, key: str, nonce: str) -> Reply:
        return self._c.request("PUT", "sys/rekey/update", json={"key": key, "nonce": nonce})

    def rekey_cancel(self) -> None:
        self._c.request("DELETE", "sys/rekey/init")


class TokenApi:
    """``auth/token/`` endpoints."""

    def __init__(self, client: Client) -> None:
        self._c = client

    def create(self, body: Json, *, role: str | None = None) -> Reply:
        path = f"auth/token/create/{role}" if role else "auth/token/create"
        return self._c.write(path, body)

    def lookup_self(self) -> Reply:
        return self._c.request("GET", "auth/token/lookup-self")

    def lookup(self, token: str) -> Reply:
        return self._c.write("auth/token/lookup", {"token": token})

    def lookup_accessor(self, accessor: str) -> Reply:
        return self._c.write("auth/token/lookup-accessor", {"accessor": accessor})

    def renew(self, token: str, increment: str | None = None) -> Reply:
        return self._c.write("auth/token/renew", _drop_none({"token": token, "increment": increment}))

    def renew_self(self, increment: str | None = None) -> Reply:
        return self._c.write("auth/token/renew-self", _drop_none({"increment": increment}))

    def renew_accessor(self, accessor: str, increment: str | None = None) -> Reply:
        body = _drop_none({"accessor": accessor, "increment": increment})
        return self._c.write("auth/token/renew-accessor", body)

    def revoke(self, token: str) -> None:
        self._c.write("auth/token/revoke", {"token": token})

    def revoke_self(self) -> None:
        self._c.write("auth/token/revoke-self", {})

    def revoke_accessor(self, accessor: str) -> None:
        self._c.write("auth/token/revoke-accessor", {"accessor": accessor})

    def revoke_orphan(self, token: str) -> None:
        self._c.write("auth/token/revoke-orphan", {"token": token})


def _drop_none(body: Json) -> Json:
    return {k: v for k, v in body.items() if v is not None}


@dataclass(frozen=True)
class KvMount:
    """Where a KV mount starts (``secret/``) and which version it speaks."""

    path: str
    version: int

    def api_path(self, path: str, prefix: str) -> str:
        """``secret/foo`` → ``secret/<prefix>/foo`` on v2; unchanged on v1."""
        path = path.lstrip("/")
        if self.version != 2:
            return path
        mount = self.path.rstrip("/")
        rest = path[len(self.path) :] if path.startswith(self.path) else path
        if path.rstrip("/") == mount:
            rest = ""
        return "/".join(p for p in (mount, prefix, rest.strip("/")) if p)


Versions = list[int]


class KvApi:
    """KV v1 and v2 by full path (``secret/foo``); the mount is looked up first, like the CLI does."""

    def __init__(self, client: Client) -> None:
        self._c = client

    def mount_info(self, path: str) -> KvMount:
        """Ask ``sys/internal/ui/mounts/<path>`` for the mount path and KV version."""
        try:
            body = self._c.request("GET", f"sys/internal/ui/mounts/{path.strip('/')}")
        except ApiError as exc:
            if exc.status == 404:  # a server without the endpoint: assume v1
                return KvMount("", 1)
            raise
        data = data_of(body)
        mount = str(data.get("path") or "")
        options = data.get("options") or {}
        version = str(options.get("version") or "1") if isinstance(options, dict) else "1"
        return KvMount(mount, 2 if version == "2" else 1)

    def _mount(self, path: str, mount: KvMount | None) -> KvMount:
        return mount if mount is not None else self.mount_info(path)

    def get(self, path: str, version: int | None = None, *, mount: KvMount | None = None) -> Reply:
        m = self._mount(path, mount)
        params = {"version": str(version)} if version is not None and m.version == 2 else None
        return self._c.read(m.api_path(path, "data"), params=params)

    def put(self, path: str, data: Json, cas: int | None = None, *, mount: KvMount | None = None) -> Reply:
        m = self._mount(path, mount)
        if m.version != 2:
            return self._c.write(path, data)
        options: Json = {} if cas is None else {"cas": cas}
        return self._c.write(m.api_path(path, "data"), {"data": data, "options": options})

    def patch(self, path: str, data: Json, cas: int | None = None, *, mount: KvMount | None = None) -> Reply:
        """A JSON merge patch of the latest version (v2 only)."""
        m = self._mount(path, mount)
        options: Json = {} if cas is None else {"cas": cas}
        return self._c.patch(m.api_path(path, "data"), {"data": data, "options": options})

    def list(self, path: str, *, mount: KvMount | None = None) -> Reply:
        m = self._mount(path, mount)
        return self._c.list(m.api_path(path, "metadata"))

    def delete(self, path: str, versions: Versions | None = None, *, mount: KvMount | None = None) -> None:
        m = self._mount(path, mount)
        if versions and m.version == 2:
            self._c.write(m.api_path(path, "delete"), {"versions": versions})
        else:
            self._c.delete(m.api_path(path, "data"))

    def undelete(self, path: str, versions: Versions, *, mount: KvMount | None = None) -> None:
        m = self._mount(path, mount)
        self._c.write(m.api_path(path, "undelete"), {"versions": versions})

    def destroy(self, path: str, versions: Versions, *, mount: KvMount | None = None) -> None:
        m = self._mount(path, mount)
        self._c.request("PUT", m.api_path(path, "destroy"), json={"versions": versions})

    def read_metadata(self, path: str, *, mount: KvMount | None = None) -> Reply:
        m = self._mount(path, mount)
        return self._c.read(m.api_path(path, "metadata"))

    def write_metadata(self, path: str, body: Json, *, mount: KvMount | None = None) -> None:
        m = self._mount(path, mount)
        self._c.write(m.api_path(path, "metadata"), body)

    def delete_metadata(self, path: str, *, mount: KvMount | None = None) -> None:
        m = self._mount(path, mount)
        self._c.delete(m.api_path(path, "metadata"))
