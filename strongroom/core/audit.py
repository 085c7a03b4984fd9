"""The audit broker: enabled devices, their salts, the entry format, and failing closed.

``Core.handle_request`` calls :meth:`AuditBroker.log_request` before a routed
request reaches its handler and :meth:`~AuditBroker.log_response` (or
:meth:`~AuditBroker.log_error`) after it. With at least one device enabled, a
request that *no* device managed to record does not run: ``log_request`` raises
:class:`AuditFailure`, a 500 whose body says only ``internal error``. The same
holds for the response entry, which is written after the handler ran, so a 500
there may follow a committed write ("outcome unknown", as in Vault). One
working device out of several is enough.

Paths that core answers before routing (``sys/init``, ``sys/seal-status``,
``sys/seal``, ``sys/unseal``, ``sys/leader``, ``sys/health``, ``sys/step-down``,
``sys/generate-root/*``, ``sys/rekey*``) never reach the broker and are not
audited.

**Entry format** (Vault's JSON, one object per line)::

    {"time", "type": "request"|"response", "auth": {...}, "request": {...},
     "response": {...} (response entries), "error": "..." (failed requests)}

with ``request`` = ``{id, operation, mount_point, mount_type, mount_accessor,
client_token, client_token_accessor, namespace{id}, path, data,
remote_address, remote_port, wrap_ttl, headers}`` and ``response`` =
``{mount_point, mount_type, mount_accessor, auth, secret{lease_id}, data,
warnings, wrap_info}``; empty fields are left out as Vault's ``omitempty`` does.

**Hashing.** Each device has its own random salt (stored through the barrier
at ``audit/<uuid>/salt``; re-enabling a path creates a new one), and a hashed
string is ``hmac-sha256:<hex of HMAC-SHA256(salt, utf-8 bytes)>``, which
``sys/audit-hash`` reproduces. Every string in request data and in response
data is hashed, at any depth (map keys are not), and so are raw (non-JSON)
response bodies as a whole (row 31); numbers, booleans and null are not. The
mount's ``audit_non_hmac_request_keys`` / ``audit_non_hmac_response_keys``
exempt strings whose nearest enclosing key is listed. ``log_raw`` turns value
hashing off *for that device only*: each device formats its own entry from the
original request (row 32). Credentials are hashed regardless of ``log_raw``:
the client token, the token minted in a response's ``auth`` and a wrapping
token always, and their accessors whenever ``hmac_accessor`` is on (default).
Identity fields (display name, policies, token metadata, entity id) and lease
ids stay readable, as in Vault, since an audit log that cannot say who did
what is of little use; the ``X-Vault-Token`` and ``Authorization`` headers
are never logged (no request headers are logged unless named in
``request_headers``).

**Processes.** A multi-process node has one broker per process. Enabling or
disabling a device bumps the shared ``MOUNTS`` generation, which makes every
other process reload its mount table before its next request; the broker
notices the new table object and re-reads the audit table too, so no process
keeps serving unaudited after another enabled a device.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import os
import secrets
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from strongroom.core.audit_devices import DEVICE_TYPES, Device, DeviceError, SinkSpec, build
from strongroom.core.sync import Kind
from strongroom.logical.errors import StrongroomError, UserError
from strongroom.logical.request import Auth, Operation, Request, Response, WrapInfo
from strongroom.logical.storage import get_json, put_json

if TYPE_CHECKING:
    from strongroom.core.core import Core
    from strongroom.core.tokens import TokenEntry

log = logging.getLogger("strongroom.audit")

AUDIT_TABLE_KEY = "core/audit"
SALT_PREFIX = "audit/"
HMAC_PREFIX = "hmac-sha256:"
_NEVER_LOGGED_HEADERS = frozenset({"x-vault-token", "authorization", "proxy-authorization", "cookie"})
_FORMATS = ("json", "jsonx")
_NO_KEYS: frozenset[str] = frozenset()
_MEMO_LIMIT = 4096


class AuditFailure(StrongroomError):
    """No enabled device recorded an entry; the client learns nothing more than this."""

    status = 500

    def __init__(self) -> None:
        super().__init__("internal error")


def _parse_bool(options: Mapping[str, str], name: str, default: bool) -> bool:
    raw = options.get(name)
    if raw is None or raw == "":
        return default
    if raw in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if raw in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    raise UserError(f"unable to parse '{name}': expected a boolean")


def _rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _normalise_options(raw: Mapping[str, Any] | None) -> dict[str, str]:
    """Vault's options are a string map; accept JSON scalars and store them as strings."""
    out: dict[str, str] = {}
    for key, value in (raw or {}).items():
        if isinstance(value, bool):
            out[str(key)] = "true" if value else "false"
        elif isinstance(value, str):
            out[str(key)] = value
        elif isinstance(value, int | float):
            out[str(key)] = str(value)
        elif value is None:
            continue
        else:
            raise UserError(f"option {str(key)!r} must be a string")
    return out


def normalise_path(path: str) -> str:
    clean = path.strip().strip("/")
    if not clean:
        raise UserError("audit device path must not be empty")
    return clean + "/"


# -- formatting ----------------------------------------------------------------------------------


class Formatter:
    """Turns requests and responses into one device's entries (its salt, its options)."""

    def __init__(
        self,
        salt: bytes,
        *,
        hmac_accessor: bool = True,
        log_raw: bool = False,
        elide_list_responses: bool = False,
        prefix: str = "",
    ) -> None:
        self._mac = hmac.new(salt, digestmod=hashlib.sha256)
        self.hmac_accessor = hmac_accessor
        self.log_raw = log_raw
        self.elide_list_responses = elide_list_responses
        self.prefix = prefix.encode()
        self._memo: dict[str, str] = {}

    def hash_bytes(self, value: bytes) -> str:
        mac = self._mac.copy()
        mac.update(value)
        return HMAC_PREFIX + mac.hexdigest()

    def hash(self, value: str) -> str:
        return self.hash_bytes(value.encode("utf-8", "surrogatepass"))

    def credential(self, value: str) -> str:
        """Tokens: hashed even with log_raw.

        Memoised: one token shows up four times per request pair and again on every
        request it makes. The memo maps values already held in the token cache to their
        hashes, so it keeps nothing in memory that was not there already.
        """
        if not value:
            return ""
        digest = self._memo.get(value)
        if digest is None:
            if len(self._memo) >= _MEMO_LIMIT:
                self._memo.clear()
            digest = self._memo[value] = self.hash(value)
        return digest

    def accessor(self, value: str) -> str:
        return self.credential(value) if self.hmac_accessor else value

    def values(self, value: Any, exempt: frozenset[str] = _NO_KEYS) -> Any:
        """A copy of ``value`` with every string hashed (unless log_raw); never mutates it."""
        if self.log_raw:
            return _raw_copy(value)
        return self._walk(value, exempt, None)

    def _walk(self, value: Any, exempt: frozenset[str], key: str | None) -> Any:
        # explicit loops, not comprehensions: one stack frame per nesting level keeps the
        # deepest body the HTTP layer admits (500 levels) inside the recursion limit
        if isinstance(value, str):
            return value if key is not None and key in exempt else self.hash(value)
        if value is None or isinstance(value, bool | int | float):
            return value
        if isinstance(value, dict):
            out: dict[str, Any] = {}
            for k, v in value.items():
                name = str(k)
                out[name] = self._walk(v, exempt, name)
            return out
        if isinstance(value, list | tuple | set | frozenset):
            items: list[Any] = []
            for v in value:
                items.append(self._walk(v, exempt, key))
            return items
        if isinstance(value, bytes | bytearray | memoryview):
            raw = bytes(value)
            if key is not None and key in exempt:
                return base64.b64encode(raw).decode()
            return self.hash_bytes(raw)
        return self._walk(str(value), exempt, key)  # anything else is hashed as its text

    def line(self, entry: dict[str, Any]) -> bytes:
        text = json.dumps(entry, separators=(",", ":"), default=str)
        return self.prefix + text.encode() + b"\n"


def _raw_copy(value: Any) -> Any:
    """log_raw: the value as JSON can hold it (bytes as base64, as Go marshals []byte)."""
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode()
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out[str(k)] = _raw_copy(v)
        return out
    if isinstance(value, list | tuple | set | frozenset):
        items: list[Any] = []
        for v in value:
            items.append(_raw_copy(v))
        return items
    return value


def _omit_empty(obj: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if v not in (None, "", 0, False, [], {})}


@dataclass
class EntryContext:
    """What one audited request contributes to every device's entry (device-independent)."""

    req: Request
    token: TokenEntry | None
    full_path: str
    request_exempt: frozenset[str]
    response_exempt: frozenset[str]
    headers: dict[str, str] = field(default_factory=dict)
    hashed_headers: frozenset[str] = _NO_KEYS


def _token_auth(f: Formatter, ctx: EntryContext) -> dict[str, Any]:
    token = ctx.token
    if token is None:
        return _omit_empty({"client_token": f.credential(ctx.req.client_token)})
    return _omit_empty(
        {
            "client_token": f.credential(token.id),
            "accessor": f.accessor(token.accessor),
            "display_name": token.display_name,
            "policies": list(token.policies),
            "token_policies": list(token.policies),
            "metadata": dict(token.meta),
            "entity_id": token.entity_id,
            "token_type": token.type,
            "token_ttl": token.ttl,
            "token_issue_time": _rfc3339(token.creation_time) if token.creation_time else "",
        }
    )


def _request_obj(f: Formatter, ctx: EntryContext) -> dict[str, Any]:
    req, token = ctx.req, ctx.token
    client_token = token.id if token is not None else req.client_token
    accessor = token.accessor if token is not None else req.client_token_accessor
    headers: dict[str, list[str]] = {}
    for name, value in ctx.headers.items():
        hashed = name in ctx.hashed_headers and not f.log_raw
        headers[name] = [f.hash(value) if hashed else value]
    obj: dict[str, Any] = {
        "id": req.request_id,
        "operation": req.operation.value,
        "mount_point": req.mount_point,
        "mount_type": req.mount_type,
        "mount_accessor": req.mount_accessor,
        "client_token": f.credential(client_token),
        "client_token_accessor": f.accessor(accessor),
        "namespace": {"id": "root"},
        "path": ctx.full_path,
        "data": f.values(req.data, ctx.request_exempt) if req.data else None,
        "remote_address": req.connection.remote_addr,
        "remote_port": req.connection.remote_port,
        "wrap_ttl": req.wrap_ttl,
        "headers": headers,
    }
    return _omit_empty(obj)


def _auth_obj(f: Formatter, auth: Auth) -> dict[str, Any]:
    return _omit_empty(
        {
            "client_token": f.credential(auth.client_token),
            "accessor": f.accessor(auth.accessor),
            "display_name": auth.display_name,
            "policies": list(auth.policies),
            "token_policies": list(auth.token_policies),
            "identity_policies": list(auth.identity_policies),
            "metadata": dict(auth.metadata),
            "num_uses": auth.num_uses,
            "entity_id": auth.entity_id,
            "token_type": auth.token_type,
            "token_ttl": auth.lease_duration or auth.ttl,
        }
    )


def _wrap_obj(f: Formatter, wrap: WrapInfo) -> dict[str, Any]:
    return _omit_empty(
        {
            "ttl": wrap.ttl,
            "token": f.credential(wrap.token),
            "accessor": f.accessor(wrap.accessor),
            "creation_time": wrap.creation_time,
            "creation_path": wrap.creation_path,
            "wrapped_accessor": f.accessor(wrap.wrapped_accessor),
        }
    )


def _elide(data: dict[str, Any]) -> dict[str, Any]:
    """elide_list_responses: a LIST answer's names become their count."""
    out = dict(data)
    if isinstance(out.get("keys"), list):
        out["keys"] = len(out["keys"])
    if isinstance(out.get("key_info"), dict):
        out["key_info"] = len(out["key_info"])
    return out


def _response_obj(
    f: Formatter, ctx: EntryContext, response: Response | None, error_data: Any
) -> dict[str, Any]:
    req = ctx.req
    obj: dict[str, Any] = {
        "mount_point": req.mount_point,
        "mount_type": req.mount_type,
        "mount_accessor": req.mount_accessor,
    }
    if response is not None:
        if response.auth is not None:
            obj["auth"] = _auth_obj(f, response.auth)
        if response.secret is not None and response.secret.lease_id:
            obj["secret"] = {"lease_id": response.secret.lease_id}
        data: Any = response.data
        if response.raw is not None:
            raw = response.raw
            data = {
                "http_content_type": raw.content_type,
                "http_raw_body": raw.body,
                "http_status_code": raw.status,
            }
        elif data is not None and f.elide_list_responses and req.operation == Operation.LIST:
            data = _elide(data)
        if data is not None:
            obj["data"] = f.values(data, ctx.response_exempt)
        if response.warnings:
            obj["warnings"] = list(response.warnings)
        if response.wrap_info is not None:
            obj["wrap_info"] = _wrap_obj(f, response.wrap_info)
    elif error_data is not None:
        obj["data"] = f.values(error_data, ctx.response_exempt)
    return _omit_empty(obj)


def request_entry(f: Formatter, ctx: EntryContext, now: float) -> dict[str, Any]:
    return {
        "time": _rfc3339(now),
        "type": "request",
        "auth": _token_auth(f, ctx),
        "request": _request_obj(f, ctx),
    }


def response_entry(
    f: Formatter,
    ctx: EntryContext,
    now: float,
    response: Response | None,
    error: str = "",
    error_data: Any = None,
) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "time": _rfc3339(now),
        "type": "response",
        "auth": _token_auth(f, ctx),
        "request": _request_obj(f, ctx),
        "response": _response_obj(f, ctx, response, error_data),
    }
    if error:
        entry["error"] = error
    return entry


# -- the broker ----------------------------------------------------------------------------------


@dataclass
class DeviceConfig:
    """One row of the audit table, as persisted at ``core/audit``."""

    path: str
    type: str
    description: str = ""
    options: dict[str, str] = field(default_factory=dict)
    local: bool = False
    uuid: str = field(default_factory=lambda: str(uuid.uuid4()))

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "type": self.type,
            "description": self.description,
            "options": dict(self.options),
            "local": self.local,
            "uuid": self.uuid,
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> DeviceConfig:
        return cls(
            path=str(raw["path"]),
            type=str(raw["type"]),
            description=str(raw.get("description", "")),
            options={str(k): str(v) for k, v in (raw.get("options") or {}).items()},
            local=bool(raw.get("local", False)),
            uuid=str(raw["uuid"]),
        )

    def api_view(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "description": self.description,
            "options": dict(self.options),
            "local": self.local,
            "path": self.path,
        }


@dataclass
class EnabledDevice:
    config: DeviceConfig
    sink: Device
    formatter: Formatter


def formatter_for(options: Mapping[str, str], salt: bytes) -> Formatter:
    """Validate the options every device type shares and build the device's formatter."""
    fmt = (options.get("format") or "json").lower()
    if fmt not in _FORMATS:
        raise UserError("format must be json or jsonx")
    if fmt == "jsonx":
        raise UserError("the jsonx audit format is not supported")
    prefix = options.get("prefix", "")
    if "\n" in prefix or "\r" in prefix:
        raise UserError("prefix must not contain line breaks")
    return Formatter(
        salt,
        hmac_accessor=_parse_bool(options, "hmac_accessor", True),
        log_raw=_parse_bool(options, "log_raw", False),
        elide_list_responses=_parse_bool(options, "elide_list_responses", False),
        prefix=prefix,
    )


class AuditBroker:
    """Holds the enabled devices of this process and writes every entry to each of them."""

    def __init__(self, core: Core) -> None:
        self.core = core
        self._devices: dict[str, EnabledDevice] = {}
        self._mounts_seen: object = None
        self._lock = asyncio.Lock()
        # request headers to log: lower-case name -> hash the value (Vault's
        # sys/config/auditing/request-headers; empty: no headers are logged)
        self.request_headers: dict[str, bool] = {}
        core.on_unsealed.append(self.load)
        core.on_sealed.append(self.unload)

    # -- lifecycle ----------------------------------------------------------------------------

    @property
    def enabled(self) -> bool:
        return bool(self._devices)

    def _storage_dir(self) -> str | None:
        """The SQLite file's folder, where an audit log must not go (None for other backends)."""
        path = getattr(self.core.physical, "path", None)
        if not isinstance(path, str | os.PathLike):
            return None
        return os.path.dirname(os.fspath(path))

    async def _read_table(self) -> list[DeviceConfig]:
        raw = await get_json(self.core.barrier, AUDIT_TABLE_KEY)
        if not raw:
            return []
        return [DeviceConfig.from_json(e) for e in raw.get("entries", [])]

    async def _save_table(self, configs: list[DeviceConfig]) -> None:
        await put_json(self.core.barrier, AUDIT_TABLE_KEY, {"entries": [c.to_json() for c in configs]})

    async def _salt(self, config: DeviceConfig, *, create: bool) -> bytes:
        key = f"{SALT_PREFIX}{config.uuid}/salt"
        salt = None if create else await self.core.barrier.get(key)
        if salt is None:
            salt = secrets.token_bytes(32)
            await self.core.barrier.put(key, salt)
        return salt

    def _spec(self, config: DeviceConfig) -> SinkSpec:
        return SinkSpec(config.type, config.options, self._storage_dir())

    async def load(self) -> None:
        """(Re)open the devices of the stored audit table; keep the ones already open."""
        async with self._lock:
            await self._load_locked()

    async def _load_locked(self) -> None:
        self._mounts_seen = self.core.mounts
        configs = await self._read_table()
        wanted = {c.uuid for c in configs}
        for path, enabled in list(self._devices.items()):
            if enabled.config.uuid not in wanted:
                del self._devices[path]
                await self._close(enabled)
        known = {e.config.uuid for e in self._devices.values()}
        for config in configs:
            if config.uuid in known:
                continue
            try:
                salt = await self._salt(config, create=False)
                formatter = formatter_for(config.options, salt)
                sink = build(self._spec(config))
            except UserError as err:  # a stored config this version refuses: leave it out, loudly
                log.error("audit device %s cannot be set up: %s", config.path, err)
                continue
            try:
                await sink.open()
            except DeviceError as err:  # writes retry; if nothing works, requests fail closed
                log.error("audit device %s is not writable: %s", config.path, err)
            self._devices[config.path] = EnabledDevice(config, sink, formatter)

    async def unload(self) -> None:
        """Close every device (on seal); the table stays in storage for the next unseal."""
        async with self._lock:
            devices, self._devices = list(self._devices.values()), {}
            self._mounts_seen = None
            for enabled in devices:
                await self._close(enabled)

    @staticmethod
    async def _close(enabled: EnabledDevice) -> None:
        try:
            await enabled.sink.close()
        except Exception:
            log.exception("closing audit device %s failed", enabled.config.path)

    async def _refresh(self) -> None:
        """Another process changed mounts or audit devices: re-read the table before logging."""
        async with self._lock:
            if self.core.mounts is not self._mounts_seen and not self.core.sealed:
                await self._load_locked()

    # -- management (sys/audit) ---------------------------------------------------------------

    def table_view(self) -> dict[str, dict[str, Any]]:
        return {path: e.config.api_view() for path, e in sorted(self._devices.items())}

    async def enable(
        self, path: str, device_type: str, description: str, options: Mapping[str, Any], local: bool
    ) -> None:
        path = normalise_path(path)
        if device_type not in DEVICE_TYPES:
            raise UserError(f"unknown backend type: {device_type}")
        opts = _normalise_options(options)
        async with self._lock:
            configs = await self._read_table()
            for existing in configs:
                if existing.path.startswith(path) or path.startswith(existing.path):
                    raise UserError(f"path already in use: {existing.path}")
            config = DeviceConfig(path, device_type, description, opts, local)
            formatter_for(opts, b"")  # validate the shared options before anything is written
            sink = build(self._spec(config))
            if not _parse_bool(opts, "skip_test", False) or device_type == "file":
                try:
                    await sink.open()
                except DeviceError as err:
                    raise UserError(f"sanity check failed on audit device {path}: {err}") from None
            try:
                salt = await self._salt(config, create=True)
                await self._save_table([*configs, config])
            except BaseException:
                await sink.close()
                raise
            self._devices[path] = EnabledDevice(config, sink, formatter_for(opts, salt))
            self._changed()

    async def disable(self, path: str) -> bool:
        """Remove a device; False when none was enabled there (not an error, as in Vault)."""
        path = normalise_path(path)
        async with self._lock:
            configs = await self._read_table()
            remaining = [c for c in configs if c.path != path]
            removed = [c for c in configs if c.path == path]
            if removed:
                await self._save_table(remaining)
                for config in removed:
                    await self.core.barrier.delete(f"{SALT_PREFIX}{config.uuid}/salt")
                self._changed()
            enabled = self._devices.pop(path, None)
            if enabled is not None:
                await self._close(enabled)
            return bool(removed) or enabled is not None

    def _changed(self) -> None:
        sync = self.core.sync
        if sync is not None:
            sync.bump(Kind.MOUNTS)

    async def hash(self, path: str, value: str) -> str:
        if self.core.sync is not None and self.core.mounts is not self._mounts_seen:
            await self._refresh()
        enabled = self._devices.get(normalise_path(path))
        if enabled is None:
            raise UserError(f"unknown audit backend {normalise_path(path)}")
        return enabled.formatter.hash(value)

    # -- logging ------------------------------------------------------------------------------

    def _context(self, req: Request, token: TokenEntry | None, full_path: str) -> EntryContext:
        request_exempt = response_exempt = _NO_KEYS
        route = self.core.router.get(req.mount_point) if req.mount_point else None
        if route is not None:
            cfg = route.entry.config
            if cfg.audit_non_hmac_request_keys:
                request_exempt = frozenset(cfg.audit_non_hmac_request_keys)
            if cfg.audit_non_hmac_response_keys:
                response_exempt = frozenset(cfg.audit_non_hmac_response_keys)
        headers: dict[str, str] = {}
        hashed: set[str] = set()
        if self.request_headers:
            for name, value in req.headers.items():
                lower = name.lower()
                if lower in _NEVER_LOGGED_HEADERS or lower not in self.request_headers:
                    continue
                headers[lower] = value
                if self.request_headers[lower]:
                    hashed.add(lower)
        return EntryContext(
            req, token, full_path, request_exempt, response_exempt, headers, frozenset(hashed)
        )

    async def _ready(self) -> bool:
        if self.core.sync is not None and self.core.mounts is not self._mounts_seen:
            await self._refresh()
        return bool(self._devices)

    async def _broadcast(self, kind: str, render: Any) -> None:
        devices = list(self._devices.values())
        if len(devices) == 1:
            results: list[BaseException | None] = [await self._write_one(devices[0], render)]
        else:
            results = list(await asyncio.gather(*(self._write_one(d, render) for d in devices)))
        if all(r is not None for r in results):
            log.error("no audit device recorded the %s; failing the request", kind)
            raise AuditFailure()

    @staticmethod
    async def _write_one(enabled: EnabledDevice, render: Any) -> BaseException | None:
        try:
            line: bytes = render(enabled.formatter)
            await enabled.sink.write(line)
        except DeviceError as err:
            log.warning("audit device %s failed: %s", enabled.config.path, err)
            return err
        except Exception as err:  # a formatting bug must fail closed, without echoing data
            log.error("audit device %s failed: %s", enabled.config.path, type(err).__name__)
            return err
        return None

    async def log_request(self, req: Request, token: TokenEntry | None, full_path: str) -> None:
        """Record a request before it runs; raise AuditFailure if no device could."""
        if not self._devices and self.core.sync is None:
            return  # the common case with audit off: one dict truthiness check
        if not await self._ready():
            return
        ctx = self._context(req, token, full_path)
        now = time.time()
        await self._broadcast("request", lambda f: f.line(request_entry(f, ctx, now)))

    async def log_response(
        self, req: Request, token: TokenEntry | None, full_path: str, response: Response | None
    ) -> None:
        """Record what the handler answered; raise AuditFailure if no device could."""
        if not self._devices and self.core.sync is None:
            return
        if not await self._ready():
            return
        ctx = self._context(req, token, full_path)
        now = time.time()
        await self._broadcast("response", lambda f: f.line(response_entry(f, ctx, now, response)))

    async def log_error(
        self, req: Request, token: TokenEntry | None, full_path: str, err: StrongroomError
    ) -> None:
        """Record a handler's error as a response entry (messages never carry secrets)."""
        if not self._devices and self.core.sync is None:
            return
        if not await self._ready():
            return
        ctx = self._context(req, token, full_path)
        now = time.time()
        message = "; ".join(err.errors) if err.errors else type(err).__name__
        data = err.data

        def render(f: Formatter) -> bytes:
            return f.line(response_entry(f, ctx, now, None, error=message, error_data=data))

        await self._broadcast("error response", render)
