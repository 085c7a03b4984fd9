"""The expiration manager: leases on secrets, token expiry, and the timer that revokes both.

Everything lives under ``sys/expire/`` in the barrier:

* ``id/<lease_id>``: the lease (JSON): its request path and mount, the response data
  and the secret's internal data (both needed to revoke it), issue / expiry / last
  renewal times, the renewable flag, the backend's max TTL and the hard deadline no
  renewal may pass, and the salted token it is indexed under;
* ``token/<salted token>/<sha256 of lease id>``: the lease id, so revoking a token
  finds its leases (a batch token's leases go under its parent, as Vault does, and
  never outlive the batch token itself);
* ``token-expiry/<salted token>``: a service token's expire time and path, so expired
  tokens are revoked even after a restart.

Lease ids are ``<request path>/<24 base62 characters>``. Revocation and renewal go
back to the mount's backend as ``Operation.REVOKE`` / ``Operation.RENEW`` requests on
the path the secret came from; a backend that declares neither has nothing to undo.

One asyncio task sleeps until the earliest deadline of a heap of ``(expire_time, id)``
and revokes what is due, retrying failures with backoff; after ``max_attempts`` a
lease is marked irrevocable (``sys/leases/count?type=irrevocable`` shows it). The
clock is injectable and ``await run_due()`` runs due work without sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import heapq
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from strongroom.core.core import MountSystemView
from strongroom.core.tokens import BATCH, SERVICE, TokenEntry, random_base62, sanitize_policies
from strongroom.core.ttl import calculate_ttl
from strongroom.logical.errors import (
    CodedError,
    PermissionDenied,
    Sealed,
    StrongroomError,
    UnsupportedOperation,
    UnsupportedPath,
    UserError,
)
from strongroom.logical.request import Auth, Operation, Request, Response, SecretInfo
from strongroom.logical.storage import PrefixView, Storage

if TYPE_CHECKING:
    from strongroom.core.core import Core
    from strongroom.core.router import RouteEntry

log = logging.getLogger("strongroom.expiration")

_LEASE_KIND = "L"  # heap ids: kind prefix + lease id or salted token
_TOKEN_KIND = "T"  # noqa: S105 (a heap id prefix, not a secret)
_NON_ASSIGNABLE = frozenset({"response-wrapping", "control-group"})
# warnings the framework adds when it routes stored response data back to a path
_FRAMEWORK_NOISE = ("Endpoint ignored these unrecognized parameters", "Value for field ")


def rfc3339(ts: float) -> str:
    """A UTC timestamp the way Go marshals a ``time.Time`` (fraction without trailing zeros)."""
    text = datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f").rstrip("0").rstrip(".")
    return text + "Z"


def _index_name(lease_id: str) -> str:
    return hashlib.sha256(lease_id.encode()).hexdigest()


@dataclass
class Lease:
    """One stored lease (times are Unix seconds; 0 means unset)."""

    lease_id: str
    path: str  # the full request path that created it
    mount: str  # the mount's route path when it was created
    mount_uuid: str = ""
    data: dict[str, Any] | None = None
    internal_data: dict[str, Any] = field(default_factory=dict)
    issue_time: float = 0.0
    expire_time: float = 0.0
    last_renewal: float = 0.0
    renewable: bool = True
    ttl: int = 0
    max_ttl: int = 0  # the backend's own max TTL (seconds), 0: none
    max_expire: float = 0.0  # no renewal goes past this (mount max, backend max, batch token)
    token: str = ""  # the salted token it is indexed under
    irrevocable: bool = False
    revoke_error: str = ""

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":"), default=str).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Lease:
        doc = json.loads(raw)
        known = cls.__dataclass_fields__
        return cls(**{k: v for k, v in doc.items() if k in known})

    @property
    def relative_path(self) -> str:
        return self.path[len(self.mount) :] if self.path.startswith(self.mount) else self.path


class ExpirationManager:
    """Registers, renews, revokes and expires leases and tokens for one core."""

    max_attempts = 6
    retry_base = 10.0  # seconds; doubled per failed attempt
    retry_cap = 3600.0
    max_sleep = 300.0  # re-check the clock at least this often

    def __init__(self, core: Core, now: Callable[[], float] = time.time) -> None:
        self.core = core
        self.now = now
        self.view: Storage = PrefixView(core.barrier, "sys/expire/")
        self._heap: list[tuple[float, str]] = []
        self._due: dict[str, float] = {}  # heap id -> its current deadline (stale heap rows differ)
        self._attempts: dict[str, int] = {}
        self._task: asyncio.Task[None] | None = None
        self._sleeper: asyncio.Future[None] | None = None  # what the timer task awaits
        self._lock = asyncio.Lock()
        self._tidy_task: asyncio.Task[None] | None = None
        # in an HTTP worker of a multi-process node, timers live in the supervisor:
        # this callback hands it each deadline instead of arming a local timer
        self.remote_schedule: Callable[[str, float], None] | None = None
        core.on_unsealed.append(self.start)
        core.on_sealed.append(self.stop)

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Re-read every lease and token expiry and arm the timer (on unseal)."""
        await self.stop()
        if not self.core.background_jobs:
            return  # another process of this node runs the timers
        for lease_id in await self._collect("id/"):
            lease = await self._load(lease_id)
            if lease is not None and not lease.irrevocable and lease.expire_time:
                self._schedule(_LEASE_KIND + lease_id, lease.expire_time)
        for salted in await self.view.list("token-expiry/"):
            if salted.endswith("/"):
                continue
            raw = await self.view.get(f"token-expiry/{salted}")
            if raw is not None:
                self._schedule(_TOKEN_KIND + salted, float(json.loads(raw).get("expire_time", 0.0)))
        if self._due:
            log.info("restored %d lease and token expirations", len(self._due))
        self._task = asyncio.create_task(self._loop(), name="strongroom-expiration")

    async def stop(self) -> None:
        """Cancel the timer and forget the schedule (on seal)."""
        for task in (self._task, self._tidy_task):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self._task = None
        self._tidy_task = None
        self._heap.clear()
        self._due.clear()
        self._attempts.clear()

    # -- schedule -------------------------------------------------------------------------------

    def schedule(self, key: str, when: float) -> None:
        """Arm a deadline sent by a worker process (supervisor side)."""
        if self._task is not None:
            self._schedule(key, when)

    def _schedule(self, key: str, when: float) -> None:
        if self.remote_schedule is not None:
            self.remote_schedule(key, when)
            return
        self._due[key] = when
        heapq.heappush(self._heap, (when, key))
        if len(self._heap) > 2 * len(self._due) + 64:
            self._heap = [(t, k) for k, t in self._due.items()]
            heapq.heapify(self._heap)
        if self._heap[0] == (when, key):
            self._wake()

    def _wake(self) -> None:
        sleeper = self._sleeper
        if sleeper is not None and not sleeper.done():
            sleeper.set_result(None)

    def _unschedule(self, key: str) -> None:
        self._due.pop(key, None)
        self._attempts.pop(key, None)

    def pending(self) -> int:
        """How many leases and tokens are waiting to expire."""
        return len(self._due)

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            delay = self.max_sleep
            if self._heap:
                delay = min(delay, self._heap[0][0] - self.now())
            if delay > 0:
                self._sleeper = sleeper = loop.create_future()
                handle = loop.call_later(delay, self._wake)
                try:
                    await sleeper
                finally:
                    handle.cancel()
                    self._sleeper = None
                continue
            try:
                await self.run_due()
            except Sealed:
                return
            except Exception:
                log.exception("expiration run failed")
                await asyncio.sleep(1.0)

    async def run_due(self) -> int:
        """Revoke every lease and token whose deadline has passed; return how many were handled."""
        handled = 0
        async with self._lock:
            while self._heap and self._heap[0][0] <= self.now():
                when, key = heapq.heappop(self._heap)
                if self._due.get(key) != when:
                    continue  # superseded by a later schedule, or unscheduled
                del self._due[key]
                try:
                    if key.startswith(_LEASE_KIND):
                        await self._expire_lease(key[1:])
                    else:
                        await self._expire_token(key[1:])
                except Sealed:
                    raise
                except Exception as err:
                    await self._retry(key, err)
                    continue
                self._attempts.pop(key, None)
                handled += 1
        return handled

    async def _retry(self, key: str, err: Exception) -> None:
        attempt = self._attempts.get(key, 0) + 1
        what = "lease" if key.startswith(_LEASE_KIND) else "token"
        if attempt < self.max_attempts:
            self._attempts[key] = attempt
            delay = min(self.retry_base * 2 ** (attempt - 1), self.retry_cap)
            log.warning("failed to revoke expired %s (attempt %d): %s", what, attempt, err)
            self._schedule(key, self.now() + delay)
            return
        self._attempts.pop(key, None)
        log.error("maximum revoke attempts reached for an expired %s; giving up", what)
        if key.startswith(_LEASE_KIND):
            lease = await self._load(key[1:])
            if lease is not None:
                lease.irrevocable = True
                lease.revoke_error = f"{type(err).__name__}: {err}"[:500]
                await self.view.put(f"id/{lease.lease_id}", lease.to_json())

    async def _expire_lease(self, lease_id: str) -> None:
        lease = await self._load(lease_id)
        if lease is None or lease.irrevocable:
            return
        if lease.expire_time > self.now():
            self._schedule(_LEASE_KIND + lease_id, lease.expire_time)
            return
        await self.revoke(lease_id)

    async def _expire_token(self, salted: str) -> None:
        entry = await self.core.tokens.entry_by_salted(salted)
        if entry is None or not entry.expire_time:
            await self.view.delete(f"token-expiry/{salted}")
            return
        if entry.expire_time > self.now():
            self._schedule(_TOKEN_KIND + salted, entry.expire_time)
            return
        await self.core.revoke_token(entry)
        await self.view.delete(f"token-expiry/{salted}")

    # -- storage --------------------------------------------------------------------------------

    async def _load(self, lease_id: str) -> Lease | None:
        try:
            raw = await self.view.get(f"id/{lease_id}")
        except ValueError:  # not a valid key: no such lease
            return None
        return None if raw is None else Lease.from_json(raw)

    async def _collect(self, prefix: str) -> list[str]:
        """Every key under ``prefix`` (relative to it), depth first."""
        out: list[str] = []
        stack = [""]
        while stack:
            sub = stack.pop()
            for name in await self.view.list(prefix + sub):
                if name.endswith("/"):
                    stack.append(sub + name)
                else:
                    out.append(sub + name)
        return sorted(out)

    async def _delete(self, lease: Lease) -> None:
        async with self.view.transaction() as txn:
            await txn.delete(f"id/{lease.lease_id}")
            if lease.token:
                await txn.delete(f"token/{lease.token}/{_index_name(lease.lease_id)}")
        self._unschedule(_LEASE_KIND + lease.lease_id)

    async def _expire_now(self, lease: Lease) -> None:
        """Lazy revocation: detach the lease from its token and let the timer revoke it."""
        now = self.now()
        old_token = lease.token
        lease.expire_time = min(lease.expire_time, now) if lease.expire_time else now
        lease.token = ""
        async with self.view.transaction() as txn:
            await txn.put(f"id/{lease.lease_id}", lease.to_json())
            if old_token:
                await txn.delete(f"token/{old_token}/{_index_name(lease.lease_id)}")
        self._schedule(_LEASE_KIND + lease.lease_id, lease.expire_time)

    # -- registration ---------------------------------------------------------------------------

    async def register_secret(
        self, req: Request, token: TokenEntry | None, route: RouteEntry, response: Response
    ) -> None:
        """Give a response's secret a lease id and TTL, persist the lease and arm its timer."""
        secret = response.secret
        if secret is None or not secret.leased or secret.lease_id:
            return  # KV v1 style TTL only, or a renewal / unwrap of an existing lease
        now = self.now()
        system = MountSystemView(self.core, route.entry)
        max_ttl = system.max_lease_ttl()
        if 0 < secret.max_ttl < max_ttl:
            max_ttl = secret.max_ttl
        ttl = secret.ttl if secret.ttl > 0 else system.default_lease_ttl()
        ttl = max(1, min(ttl, max_ttl))
        max_expire = now + max_ttl
        index_token = ""
        if token is not None:
            if token.type == BATCH:
                # a batch token is not stored: index under its parent, never outlive the token
                if token.parent:
                    index_token = self.core.tokens.salt_id(token.parent)
                if token.expire_time:
                    max_expire = min(max_expire, token.expire_time)
            else:
                index_token = self.core.tokens.salt_id(token.id)
        expire = min(now + ttl, max_expire)
        ttl = max(1, int(expire - now))
        lease = Lease(
            lease_id=f"{req.path.rstrip('/')}/{random_base62(24)}",
            path=req.path,
            mount=route.entry.route_path,
            mount_uuid=route.entry.uuid,
            data=response.data,
            internal_data=dict(secret.internal_data),
            issue_time=now,
            expire_time=expire,
            renewable=secret.renewable,
            ttl=ttl,
            max_ttl=secret.max_ttl,
            max_expire=max_expire,
            token=index_token,
        )
        async with self.view.transaction() as txn:
            await txn.put(f"id/{lease.lease_id}", lease.to_json())
            if index_token:
                await txn.put(f"token/{index_token}/{_index_name(lease.lease_id)}", lease.lease_id.encode())
        secret.lease_id = lease.lease_id
        secret.ttl = ttl
        secret.issue_time = now
        self._schedule(_LEASE_KIND + lease.lease_id, expire)
        if token is not None and token.use_count_exhausted:
            # the token used its last use on this request and is revoked: so are its leases
            await self._expire_now(lease)

    async def register_auth(
        self, req: Request, token: TokenEntry | None, route: RouteEntry, response: Response
    ) -> None:
        """Mint the token for a login (an auth method's auth block), or track a minted one."""
        auth = response.auth
        if auth is None:
            return
        if auth.client_token:
            entry = await self.core.tokens.lookup_raw(auth.client_token)
            if entry is not None:
                await self.track_token(entry)
            return
        entry_info = route.entry
        if entry_info.table != "auth" or entry_info.type == "token":
            return  # e.g. renew-accessor: the token backend already tracked it
        if not req.unauthenticated:
            log.error("auth method %s returned an auth block outside a login path", entry_info.route_path)
            raise StrongroomError("unexpected auth response for a non-login path")
        await self._mint_login_token(req, route, response, auth)

    async def _mint_login_token(
        self, req: Request, route: RouteEntry, response: Response, auth: Auth
    ) -> None:
        mount = route.entry
        token_policies = sanitize_policies(auth.policies, not auth.no_default_policy)
        if self.core.identity is not None and auth.alias_name and not auth.entity_id:
            # the login's entity: found (or created) through its alias on this mount; the
            # alias metadata follows the login, external group membership its group aliases
            entity = await self.core.identity.create_or_fetch_entity(
                alias_name=auth.alias_name,
                mount_accessor=mount.accessor,
                mount_type=mount.type,
                metadata=dict(auth.alias_metadata),
                group_alias_names=list(auth.group_alias_names),
            )
            if entity.get("disabled"):
                raise PermissionDenied()
            auth.entity_id = str(entity["id"])
        identity_policies: list[str] = []
        if self.core.identity is not None and auth.entity_id:
            extra, _ = await self.core.identity.policies_for(auth.entity_id)
            identity_policies = [p for p in sanitize_policies(extra, False) if p not in token_policies]
        all_policies = sanitize_policies([*token_policies, *identity_policies], False)
        for policy in [*token_policies, *identity_policies]:
            if policy == "root":
                raise UserError("auth methods cannot create root tokens")
            if policy in _NON_ASSIGNABLE:
                raise UserError(f'cannot assign policy "{policy}"')

        token_type = _login_token_type(auth.token_type, mount.config.token_type)
        period = auth.period if token_type == SERVICE else 0
        explicit_max_ttl = auth.explicit_max_ttl
        now = self.now()
        system = MountSystemView(self.core, mount)
        ttl, warnings = calculate_ttl(
            system, 0, auth.ttl, period, auth.max_ttl, explicit_max_ttl, start_time=now, now=now
        )
        response.warnings.extend(warnings)

        source = mount.route_path.removeprefix("auth/").replace("/", "-")
        display_name = (source + auth.display_name).rstrip("-")
        internal: dict[str, Any] = {}
        if auth.max_ttl:
            internal["max_ttl"] = auth.max_ttl
        if token_type == SERVICE and auth.internal_data:
            internal["auth_internal_data"] = dict(auth.internal_data)
        renewable = auth.renewable and token_type == SERVICE
        entry = TokenEntry(
            id="",
            parent="",
            policies=token_policies,
            path=req.path,
            meta=dict(auth.metadata),
            display_name=display_name,
            num_uses=auth.num_uses,
            creation_time=now,
            creation_ttl=ttl,
            ttl=ttl,
            explicit_max_ttl=explicit_max_ttl,
            period=period,
            expire_time=now + ttl if ttl else 0.0,
            type=token_type,
            entity_id=auth.entity_id,
            bound_cidrs=list(auth.bound_cidrs),
            renewable=renewable,
            orphan=True,
            internal_meta=internal,
        )
        entry = await self.core.tokens.create(entry)
        await self.track_token(entry)
        auth.client_token = entry.id
        auth.accessor = entry.accessor
        auth.ttl = ttl
        auth.lease_duration = ttl
        auth.orphan = True
        auth.renewable = renewable
        auth.token_type = token_type
        auth.period = period
        auth.display_name = display_name
        auth.token_policies = token_policies
        auth.identity_policies = identity_policies
        auth.policies = all_policies

    async def track_token(self, entry: TokenEntry) -> None:
        """Remember when a service token expires (persisted) and arm a timer for it."""
        if entry.type == BATCH or not entry.id:
            return
        salted = self.core.tokens.salt_id(entry.id)
        key = _TOKEN_KIND + salted
        if not entry.expire_time:
            await self.view.delete(f"token-expiry/{salted}")
            self._unschedule(key)
            return
        record = {"expire_time": entry.expire_time, "path": entry.path}
        await self.view.put(f"token-expiry/{salted}", json.dumps(record, separators=(",", ":")).encode())
        self._schedule(key, entry.expire_time)

    # -- revocation -----------------------------------------------------------------------------

    def _route_for(self, lease: Lease) -> RouteEntry | None:
        route = self.core.router.get(lease.mount)
        if route is None or (lease.mount_uuid and route.entry.uuid != lease.mount_uuid):
            return None
        return route

    def _backend_request(self, lease: Lease, route: RouteEntry, op: Operation) -> Request:
        return Request(
            operation=op,
            path=lease.relative_path,
            data=dict(lease.data or {}),
            secret=SecretInfo(
                ttl=lease.ttl,
                max_ttl=lease.max_ttl,
                renewable=lease.renewable,
                internal_data=dict(lease.internal_data),
                lease_id=lease.lease_id,
                issue_time=lease.issue_time,
            ),
            storage=route.storage,
            mount_point=route.entry.route_path,
            mount_type=route.entry.type,
            mount_accessor=route.entry.accessor,
        )

    async def _revoke_in_backend(self, lease: Lease, force: bool) -> None:
        route = self._route_for(lease)
        if route is None:
            if force:
                return
            raise StrongroomError("failed to revoke entry: no backend is mounted for the lease")
        try:
            await route.backend.handle_request(self._backend_request(lease, route, Operation.REVOKE))
        except (UnsupportedPath, UnsupportedOperation):
            return  # the engine keeps nothing to undo (KV-style)
        except Exception as err:
            if force:
                log.warning(
                    "ignoring backend error while force-revoking a lease under %s: %s", lease.mount, err
                )
                return
            if isinstance(err, StrongroomError):
                raise
            log.exception("backend failed to revoke a lease under %s", lease.mount)
            raise StrongroomError("failed to revoke entry") from err

    async def revoke(self, lease_id: str, force: bool = False) -> None:
        """Revoke one lease through its backend and delete it (unknown ids are a no-op)."""
        lease = await self._load(lease_id)
        if lease is None:
            return
        await self._revoke_in_backend(lease, force)
        await self._delete(lease)

    async def lazy_revoke(self, lease_id: str) -> None:
        """Mark a lease expired now; the timer revokes it (Vault's ``sync=false``)."""
        lease = await self._load(lease_id)
        if lease is not None:
            await self._expire_now(lease)

    async def revoke_prefix(self, prefix: str, force: bool = False, sync: bool = True) -> None:
        """Revoke every lease under ``prefix`` (or the lease named by it) and, under ``auth/``, the tokens.

        Without force the first backend failure stops the run and is raised; with
        force backend errors are ignored and the leases are deleted anyway.
        """
        if not prefix.endswith("/"):
            lease = await self._load(prefix)
            if lease is not None:
                if sync:
                    await self._revoke_in_backend(lease, force)
                    await self._delete(lease)
                else:
                    await self._expire_now(lease)
                return
            prefix += "/"
        try:
            ids = await self._collect("id/" + prefix)
        except ValueError:
            raise UserError("invalid prefix") from None
        for idx, suffix in enumerate(ids, start=1):
            lease_id = prefix + suffix
            try:
                if sync:
                    await self.revoke(lease_id, force)
                else:
                    await self.lazy_revoke(lease_id)
            except StrongroomError as err:
                raise CodedError(
                    err.status, f"failed to revoke {lease_id!r} ({idx} / {len(ids)}): {err}"
                ) from err
        if prefix.startswith("auth/"):
            await self._revoke_tokens_under(prefix, force)

    async def _revoke_tokens_under(self, prefix: str, force: bool) -> None:
        """Revoke the tracked tokens whose creation path lies under ``prefix``."""
        for salted in await self.view.list("token-expiry/"):
            raw = None if salted.endswith("/") else await self.view.get(f"token-expiry/{salted}")
            if raw is None:
                continue
            path = str(json.loads(raw).get("path", ""))
            if not (path + "/").startswith(prefix):
                continue
            entry = await self.core.tokens.entry_by_salted(salted)
            try:
                if entry is not None:
                    await self.core.revoke_token(entry)
                await self.view.delete(f"token-expiry/{salted}")
                self._unschedule(_TOKEN_KIND + salted)
            except Exception:
                if not force:
                    raise
                log.exception("ignoring an error while force-revoking a token under %s", prefix)

    async def revoke_by_token(self, entry: TokenEntry) -> None:
        """Revoke every lease indexed under ``entry``; a failing backend leaves the lease to the timer."""
        if not entry.id:
            return
        salted = self.core.tokens.salt_id(entry.id)
        base = f"token/{salted}/"
        for name in await self._collect(base):
            raw = await self.view.get(base + name)
            lease = None if raw is None else await self._load(raw.decode())
            if lease is None:
                await self.view.delete(base + name)
                continue
            try:
                await self._revoke_in_backend(lease, force=False)
            except Exception as err:
                log.warning("lease revocation failed while revoking its token; will retry: %s", err)
                await self._expire_now(lease)
                continue
            await self._delete(lease)
            await self.view.delete(base + name)  # in case the lease named another token
        await self.view.delete(f"token-expiry/{salted}")
        self._unschedule(_TOKEN_KIND + salted)

    # -- renewal and lookup -----------------------------------------------------------------------

    async def renew(self, lease_id: str, increment: int = 0, warnings: list[str] | None = None) -> SecretInfo:
        """Renew a lease through its backend; the TTL never passes the lease's max and is never 0."""
        lease = await self._load(lease_id)
        if lease is None:
            raise UserError("lease not found")
        now = self.now()
        if lease.irrevocable:
            raise UserError("lease is expired")
        if lease.expire_time and lease.expire_time <= now:
            raise UserError("lease expired")
        if not lease.renewable:
            raise UserError("lease is not renewable")
        route = self._route_for(lease)
        if route is None:
            raise UserError("lease is not renewable")
        try:
            resp = await route.backend.handle_request(self._backend_request(lease, route, Operation.RENEW))
        except (UnsupportedPath, UnsupportedOperation):
            raise UserError("lease is not renewable") from None
        given = resp.secret if resp is not None else None
        backend_ttl = given.ttl if given is not None and given.ttl > 0 else lease.ttl
        backend_max = given.max_ttl if given is not None and given.max_ttl > 0 else lease.max_ttl
        ttl, notes = calculate_ttl(
            MountSystemView(self.core, route.entry),
            max(0, increment),
            backend_ttl,
            0,
            backend_max,
            0,
            start_time=lease.issue_time,
            now=now,
        )
        remaining = lease.max_expire - now if lease.max_expire else float(ttl)
        if remaining < 1:
            raise UserError("past the max TTL, cannot renew")
        ttl = max(1, min(ttl, math.floor(remaining)))
        if resp is not None and resp.data is not None:
            lease.data = resp.data
        if given is not None:
            if given.internal_data:
                lease.internal_data = dict(given.internal_data)
            lease.renewable = given.renewable
        lease.ttl = ttl
        lease.expire_time = now + ttl
        lease.last_renewal = now
        await self.view.put(f"id/{lease.lease_id}", lease.to_json())
        self._schedule(_LEASE_KIND + lease_id, lease.expire_time)
        if warnings is not None:
            warnings.extend(notes)
            if resp is not None:
                warnings.extend(w for w in resp.warnings if not w.startswith(_FRAMEWORK_NOISE))
        return SecretInfo(
            ttl=ttl,
            max_ttl=lease.max_ttl,
            renewable=lease.renewable,
            lease_id=lease_id,
            issue_time=lease.issue_time,
        )

    async def lookup(self, lease_id: str) -> dict[str, Any] | None:
        """Vault's lease lookup view, or None for an unknown lease."""
        lease = await self._load(lease_id)
        if lease is None:
            return None
        now = self.now()
        renewable = lease.renewable and not lease.irrevocable and not (lease.expire_time <= now)
        view: dict[str, Any] = {
            "id": lease.lease_id,
            "issue_time": rfc3339(lease.issue_time),
            "expire_time": None,
            "last_renewal": rfc3339(lease.last_renewal) if lease.last_renewal else None,
            "renewable": renewable,
            "ttl": 0,
        }
        if lease.expire_time:
            view["expire_time"] = rfc3339(lease.expire_time)
            view["ttl"] = max(0, int(lease.expire_time - now))
        return view

    async def list_prefix(self, prefix: str) -> list[str]:
        """Direct children of ``prefix`` among lease ids (folders end in ``/``)."""
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        try:
            return await self.view.list("id/" + prefix)
        except ValueError:
            raise UserError("invalid prefix") from None

    async def irrevocable(self, limit: int = 0) -> list[dict[str, Any]]:
        """The leases the timer gave up on (``sys/leases?type=irrevocable``)."""
        out: list[dict[str, Any]] = []
        for lease_id in await self._collect("id/"):
            lease = await self._load(lease_id)
            if lease is None or not lease.irrevocable:
                continue
            route = self.core.router.get(lease.mount)
            out.append(
                {
                    "lease_id": lease.lease_id,
                    "mount_id": route.entry.accessor if route is not None else "",
                    "namespace": "",
                    "error": lease.revoke_error,
                    "expire_time": rfc3339(lease.expire_time) if lease.expire_time else None,
                }
            )
            if 0 < limit <= len(out):
                break
        return out

    # -- tidy -------------------------------------------------------------------------------------

    async def tidy(self) -> dict[str, int]:
        """Drop index entries whose lease is gone; revoke leases whose token is gone."""
        report = {"index_entries_deleted": 0, "leases_revoked": 0, "revoke_failures": 0}
        for folder in await self.view.list("token/"):
            if not folder.endswith("/"):
                continue
            salted = folder[:-1]
            token_alive = await self.core.tokens.entry_by_salted(salted) is not None
            for name in await self._collect(f"token/{folder}"):
                key = f"token/{folder}{name}"
                raw = await self.view.get(key)
                lease = None if raw is None else await self._load(raw.decode())
                if lease is not None and token_alive:
                    continue
                if lease is not None:
                    try:
                        await self.revoke(lease.lease_id)
                        report["leases_revoked"] += 1
                    except Exception as err:
                        log.warning("tidy: revoking a lease of a revoked token failed; will retry: %s", err)
                        await self._expire_now(lease)
                        report["revoke_failures"] += 1
                await self.view.delete(key)
                report["index_entries_deleted"] += 1
        log.info("lease tidy finished: %s", report)
        return report

    def start_tidy(self) -> bool:
        """Run :meth:`tidy` in the background; False if one is already running."""
        if self._tidy_task is not None and not self._tidy_task.done():
            return False

        async def run() -> None:
            try:
                await self.tidy()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("lease tidy failed")

        self._tidy_task = asyncio.create_task(run(), name="strongroom-lease-tidy")
        return True


def _login_token_type(requested: str, mount_default: str) -> str:
    """Vault's choice of token type for a login: a forced mount type wins, else the role's."""
    if mount_default in (SERVICE, BATCH):
        return mount_default
    if requested in (SERVICE, BATCH):
        return requested
    if requested in ("default-service", "default-batch"):
        return requested.removeprefix("default-")
    return BATCH if mount_default == "default-batch" else SERVICE


__all__ = ["ExpirationManager", "Lease", "rfc3339"]
