"""Core: the seal lifecycle and the request pipeline every request goes through.

    sealed? → route to a mount → token lookup → create-vs-update existence
    check → ACL → backend → leases / tokens for the response → wrapping

Engines see only their Backend contract and a storage view; everything that
decides access lives here.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from strongroom.cidrs import check_cidrs
from strongroom.core.barrier import Barrier
from strongroom.core.mounts import AUTH_KEY, MOUNTS_KEY, MountEntry, MountTable
from strongroom.core.policy_store import PolicyStore
from strongroom.core.router import RouteEntry, Router
from strongroom.core.seal import ShamirSeal, ShareCollector, combine_keys, decode_key_share
from strongroom.core.sync import Kind, SharedGenerations
from strongroom.core.tokens import ROOT_PATH, TokenEntry, TokenStore
from strongroom.logical.backend import Backend, BackendConfig
from strongroom.logical.errors import (
    InvalidToken,
    PermissionDenied,
    Sealed,
    StrongroomError,
    UnsupportedPath,
    UserError,
)
from strongroom.logical.request import Operation, Request, Response
from strongroom.logical.storage import PrefixView, Storage, delete_prefix

log = logging.getLogger("strongroom.core")

VERSION = "1.16.3"
BackendFactory = Callable[[BackendConfig], Awaitable[Backend]]

# backends that see the caller's real token (they manage tokens themselves)
_REAL_TOKEN_TYPES = frozenset({"system", "token", "cubbyhole", "identity"})


@dataclass
class MountSystemView:
    """A SystemView whose TTLs follow the mount's tune, then the server's defaults."""

    core: Core
    entry: MountEntry

    def default_lease_ttl(self) -> int:
        return self.entry.config.default_lease_ttl or self.core.default_lease_ttl

    def max_lease_ttl(self) -> int:
        return self.entry.config.max_lease_ttl or self.core.max_lease_ttl


class Core:
    def __init__(
        self,
        physical: Storage,
        *,
        storage_type: str = "inmem",
        default_lease_ttl: int = 768 * 3600,
        max_lease_ttl: int = 768 * 3600,
        cluster_name: str = "",
        api_addr: str = "",
    ) -> None:
        self.physical = physical
        self.storage_type = storage_type
        self.default_lease_ttl = default_lease_ttl
        self.max_lease_ttl = max_lease_ttl
        self.cluster_name = cluster_name or f"strongroom-cluster-{secrets.token_hex(4)}"
        self.cluster_id = ""
        self.api_addr = api_addr
        self.barrier = Barrier(physical)
        self.seal_impl = ShamirSeal(physical)
        self.unseal_progress = ShareCollector()
        self.router = Router()
        self.mounts = MountTable(MOUNTS_KEY)
        self.auth_mounts = MountTable(AUTH_KEY)
        self.tokens = TokenStore(PrefixView(self.barrier, "sys/token/"))
        self.policies = PolicyStore(PrefixView(self.barrier, "sys/policy/"))
        self.factories: dict[str, BackendFactory] = {}
        self.auth_factories: dict[str, BackendFactory] = {}
        self.active_time = ""
        self._initialized_cache: bool | None = None
        # collaborators wired by strongroom.core.assemble (kept optional for unit tests)
        self.expiration: Any = None
        self.wrapping: Any = None
        self.identity: Any = None
        self.audit: Any = None
        self.seal_backend: Backend | None = None
        # multi-process nodes: shared invalidation counters, and whether this process
        # runs background jobs (lease expiry, tidy); see strongroom.supervisor
        self.sync: SharedGenerations | None = None
        # one reload at a time: a request arriving while another reloads waits for it
        self._sync_lock = asyncio.Lock()
        self.background_jobs = True
        # the node's shared ACME nonce table (strongroom.engines.pki.acme.nonces), set by the
        # supervisor before its workers fork; None: each process keeps its own
        self.acme_nonces: Any = None
        self._engine_generation = 0
        self.on_unsealed: list[Callable[[], Awaitable[None]]] = []
        self.on_sealed: list[Callable[[], Awaitable[None]]] = []

    # -- state --------------------------------------------------------------------------------

    @property
    def sealed(self) -> bool:
        return self.barrier.sealed

    async def is_initialized(self) -> bool:
        if self._initialized_cache:
            return True
        config = await self.seal_impl.load_config()
        self._initialized_cache = config is not None
        return self._initialized_cache

    # -- init / unseal / seal -----------------------------------------------------------------

    async def initialize(self, shares: int, threshold: int) -> tuple[list[bytes], str]:
        """Initialise storage; return the key shares and the initial root token."""
        if await self.is_initialized() or await self.barrier.is_initialized():
            raise UserError("Vault is already initialized")
        parts, root_key = await self.seal_impl.initialize(shares, threshold)
        await self.barrier.initialize(root_key)
        await self.barrier.unseal(root_key)
        try:
            await self._setup_new_storage()
            await self._post_unseal()
            root = await self.create_root_token()
        finally:
            await self.seal()
        self._initialized_cache = True
        return parts, root.id

    async def _setup_new_storage(self) -> None:
        self.cluster_id = str(uuid.uuid4())
        await self.barrier.put(
            "core/cluster", f'{{"name":"{self.cluster_name}","id":"{self.cluster_id}"}}'.encode()
        )

    async def submit_unseal_key(self, key: str | None, reset: bool = False) -> None:
        """Add one share; unseal once the threshold is reached (progress is per node)."""
        if reset:
            self.unseal_progress.reset()
            return
        if not self.sealed:
            return
        config = self.seal_impl.config or await self.seal_impl.load_config()
        if config is None:
            raise UserError("Vault is not initialized")
        part = decode_key_share(key or "")
        self.unseal_progress.add(part)
        if self.unseal_progress.progress < config.secret_threshold:
            return
        parts = list(self.unseal_progress.parts)
        self.unseal_progress.reset()
        unseal_key = combine_keys(parts, config)
        root_key = await self.seal_impl.root_key_from(unseal_key)
        await self.unseal_with_root_key(root_key)

    async def unseal_with_root_key(self, root_key: bytes) -> None:
        await self.barrier.unseal(root_key)
        try:
            await self._post_unseal()
        except Exception:
            await self.seal()
            raise

    async def _post_unseal(self) -> None:
        import json

        raw = await self.barrier.get("core/cluster")
        if raw is not None:
            cluster = json.loads(raw)
            self.cluster_name, self.cluster_id = cluster["name"], cluster["id"]
        self.tokens.on_change = lambda: self._changed(Kind.TOKENS)
        self.policies.on_change = lambda: self._changed(Kind.POLICIES)
        await self.tokens.setup()
        await self.policies.setup()
        await self._load_mounts()
        self.active_time = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        for hook in self.on_unsealed:
            await hook()

    async def seal(self) -> None:
        if self.sealed:
            return
        for hook in self.on_sealed:
            try:
                await hook()
            except Exception:  # sealing must finish whatever a hook does
                log.exception("seal hook failed")
        for route in self.router.routes():
            try:
                await route.backend.cleanup()
            except Exception:
                log.exception("backend cleanup failed")
        self.router.clear()
        self.tokens.invalidate()
        self.policies.invalidate()
        self.barrier.seal()

    # -- mounts -------------------------------------------------------------------------------

    def default_mounts(self) -> list[MountEntry]:
        return [
            MountEntry("cubbyhole/", "cubbyhole", description="per-token private secret storage", local=True),
            MountEntry("identity/", "identity", description="identity store"),
            MountEntry(
                "sys/", "system", description="system endpoints used for control, policy and debugging"
            ),
        ]

    def default_auth_mounts(self) -> list[MountEntry]:
        return [MountEntry("token/", "token", table="auth", description="token based credentials")]

    async def _load_mounts(self) -> None:
        mounts = await MountTable.load(self.barrier, MOUNTS_KEY)
        if mounts is None:
            mounts = MountTable(MOUNTS_KEY, self.default_mounts())
            await mounts.save(self.barrier)
        auth = await MountTable.load(self.barrier, AUTH_KEY)
        if auth is None:
            auth = MountTable(AUTH_KEY, self.default_auth_mounts())
            await auth.save(self.barrier)
        self.mounts, self.auth_mounts = mounts, auth
        self.router.clear()
        for entry in [*mounts.entries.values(), *auth.entries.values()]:
            try:
                await self._mount_backend(entry)
            except UserError as err:
                log.warning("mount %s (type %s) is unavailable: %s", entry.route_path, entry.type, err)
            except Exception:
                log.exception("failed to set up mount %s (type %s)", entry.route_path, entry.type)

    def mount_storage(self, entry: MountEntry) -> Storage:
        return PrefixView(self.barrier, entry.storage_prefix)

    async def _mount_backend(self, entry: MountEntry) -> RouteEntry:
        factories = self.auth_factories if entry.table == "auth" else self.factories
        factory = factories.get(entry.type)
        if factory is None:
            raise UserError(f"plugin not found in the catalog: {entry.type}")
        config = BackendConfig(
            storage=self.mount_storage(entry),
            system=MountSystemView(self, entry),
            config={"options": entry.options or {}, "core": self},
            mount_path=entry.route_path,
            mount_type=entry.type,
            mount_accessor=entry.accessor,
        )
        backend = await factory(config)
        await backend.initialize()
        route = RouteEntry.build(entry, backend, config.storage)
        self.router.mount(route)
        return route

    def table_for(self, table: str) -> MountTable:
        return self.auth_mounts if table == "auth" else self.mounts

    async def enable_mount(self, entry: MountEntry) -> None:
        table = self.table_for(entry.table)
        path = entry.path
        if not path.endswith("/"):
            raise UserError("mount path must end in '/'")
        self._check_mount_conflict(entry.route_path)
        factories = self.auth_factories if entry.table == "auth" else self.factories
        if entry.type not in factories:
            raise UserError(f"plugin not found in the catalog: {entry.type}")
        if entry.type in ("system", "cubbyhole", "identity", "token"):
            raise UserError(f'mount type of "{entry.type}" is not mountable')
        await self._mount_backend(entry)
        table.entries[path] = entry
        await table.save(self.barrier)
        self._changed(Kind.MOUNTS)

    def _check_mount_conflict(self, route_path: str) -> None:
        for existing in self.router.routes():
            other = existing.entry.route_path
            if route_path.startswith(other) or other.startswith(route_path):
                raise UserError(f"path is already in use at {other}")
        reserved = ("sys/", "auth/", "cubbyhole/", "identity/")
        if route_path in reserved or route_path.startswith(("sys/", "cubbyhole/", "identity/")):
            raise UserError(f"cannot mount under {route_path}")

    async def disable_mount(self, table_name: str, path: str) -> None:
        table = self.table_for(table_name)
        entry = table.entries.get(path)
        if entry is None:
            raise UserError(f'no matching mount at "{path}"')
        if entry.type in ("system", "cubbyhole", "identity", "token"):
            raise UserError(f'cannot unmount "{path}"')
        if self.expiration is not None:
            await self.expiration.revoke_prefix(entry.route_path, force=True)
        route = self.router.get(entry.route_path)
        if route is not None:
            await route.backend.cleanup()
        self.router.unmount(entry.route_path)
        del table.entries[path]
        await table.save(self.barrier)
        self._changed(Kind.MOUNTS)
        await delete_prefix(self.barrier, entry.storage_prefix)

    async def remount(self, from_table: str, src: str, dst: str) -> None:
        table = self.table_for(from_table)
        entry = table.entries.get(src)
        if entry is None:
            raise UserError(f'no matching mount at "{src}"')
        if entry.type in ("system", "cubbyhole", "identity", "token"):
            raise UserError(f'cannot remount "{src}"')
        new_route = ("auth/" + dst) if from_table == "auth" else dst
        old_route = entry.route_path
        self.router.unmount(old_route)
        try:
            self._check_mount_conflict(new_route)
        except UserError:
            self.router.mount(await self._mount_backend(entry))
            raise
        old = await self._mount_backend(entry)  # routed again so its backend revokes its leases
        if self.expiration is not None:
            await self.expiration.revoke_prefix(old_route, force=True)
        await old.backend.cleanup()
        self.router.unmount(old_route)
        del table.entries[src]
        entry.path = dst
        table.entries[dst] = entry
        await table.save(self.barrier)
        self._changed(Kind.MOUNTS)
        await self._mount_backend(entry)

    async def save_mount(self, entry: MountEntry) -> None:
        await self.table_for(entry.table).save(self.barrier)
        self._changed(Kind.MOUNTS)

    async def reload_mount(self, entry: MountEntry) -> None:
        """Rebuild one mount's backend (after a tune that changes how it works)."""
        old = self.router.get(entry.route_path)
        if old is not None:
            await old.backend.cleanup()
        await self._mount_backend(entry)
        self._changed(Kind.MOUNTS)

    async def unseal_from_export(self, root_key: bytes, blob: bytes) -> None:
        """Unseal a worker process with the keyring its supervisor unsealed."""
        self.barrier.load_keyring(root_key, blob)
        try:
            await self._post_unseal()
        except Exception:
            await self.seal()
            raise

    # -- tokens -------------------------------------------------------------------------------

    async def create_root_token(self, token_id: str = "") -> TokenEntry:
        entry = TokenEntry(
            id=token_id,
            policies=["root"],
            path=ROOT_PATH,
            display_name="root",
            orphan=True,
            renewable=False,
        )
        return await self.tokens.create(entry)

    # -- requests -----------------------------------------------------------------------------

    async def handle_request(self, req: Request) -> Response | None:
        """Run one request through routing, authentication, ACL and its backend."""
        full_path = req.path
        seal_backend = self.seal_backend
        if (
            seal_backend is not None
            and full_path.startswith("sys/")
            and seal_backend.route_exists(full_path[4:])
        ):
            # init, seal-status, unseal, health, ... answer whether sealed or not
            req.path = full_path[4:]
            req.mount_point, req.mount_type = "sys/", "system"
            return await seal_backend.handle_request(req)
        if self.sync is not None:
            await self._sync_caches(self.sync)
        if self.sealed:
            raise Sealed()
        routed = self.router.match(full_path)
        if routed is None:
            raise UnsupportedPath(f'no handler for route "{full_path}". route entry not found.')
        route, rel = routed
        entry = route.entry
        unauth = route.is_unauthenticated(rel) and req.operation != Operation.HELP
        token: TokenEntry | None = None
        if req.client_token:
            token = await self.tokens.lookup(req.client_token)
            if token is None and not unauth:
                raise InvalidToken()
        elif not unauth:
            raise PermissionDenied()

        req.mount_point = entry.route_path
        req.mount_type = entry.type
        req.mount_accessor = entry.accessor
        req.storage = route.storage
        req.path = rel
        req.unauthenticated = unauth

        if token is not None:
            self._check_cidr(token, req)
            req.token_entry = token
            req.display_name = token.display_name
            req.entity_id = token.entity_id
            req.policies = list(token.policies)
            req.client_token_accessor = token.accessor
            if entry.type not in _REAL_TOKEN_TYPES:
                req.client_token = self.tokens.mount_salted(entry.accessor, token.id)

        if req.operation in (Operation.CREATE, Operation.UPDATE):
            has_check, exists = await route.backend.existence_check(req)
            req.operation = Operation.CREATE if has_check and not exists else Operation.UPDATE

        audit = self.audit
        if token is not None and not unauth:
            try:
                await self._authorize(req, token, full_path, route.is_root_path(rel))
            except PermissionDenied as denied:
                if audit is not None:  # Vault records refused requests too, with their error
                    await audit.log_request(req, token, full_path)
                    await audit.log_error(req, token, full_path, denied)
                raise

        if audit is not None:
            # fails closed: a request no audit device could record does not run
            await audit.log_request(req, token, full_path)
        last_use = token is not None and token.num_uses != 0 and await self._use_token(token)
        try:
            try:
                response = await route.backend.handle_request(req)
            except StrongroomError as err:
                if audit is not None:
                    await audit.log_error(req, token, full_path, err)
                raise
            req.path = full_path
            if response is not None:
                response = await self._finish_response(req, token, route, response)
            if audit is not None:
                await audit.log_response(req, token, full_path, response)
        finally:
            if last_use and token is not None:
                await self.revoke_token(token)
        return response

    async def _sync_caches(self, sync: SharedGenerations) -> None:
        """Drop what another process of this node changed since our last request.

        ``changed()`` marks the changes seen at once, so a second request must not run
        ahead while the first is still reloading (it would route with the old mount table).
        """
        if self._sync_lock.locked():
            async with self._sync_lock:
                pass  # wait for the reload in progress
        if not sync.pending():
            return
        async with self._sync_lock:
            await self._apply_changes(sync)

    async def _apply_changes(self, sync: SharedGenerations) -> None:
        for kind in sync.changed():
            if kind is Kind.SEAL:
                await self.seal()
            elif self.sealed:
                continue
            elif kind is Kind.TOKENS:
                self.tokens.invalidate()
            elif kind is Kind.POLICIES:
                self.policies.invalidate()
            elif kind is Kind.MOUNTS:
                await self._load_mounts()
            # Kind.ENGINE: engines compare engine_generation() themselves

    def _changed(self, kind: Kind) -> None:
        if self.sync is not None:
            self.sync.bump(kind)

    def engine_generation(self) -> int:
        """A number that changes whenever any engine of this node changed cached state."""
        if self.sync is not None:
            return self._engine_generation + self.sync.total(Kind.ENGINE)
        return self._engine_generation

    def engine_changed(self) -> None:
        """An engine wrote state it caches: every process drops those caches before its next use."""
        self._engine_generation += 1
        self._changed(Kind.ENGINE)

    def _check_cidr(self, token: TokenEntry, req: Request) -> None:
        if token.bound_cidrs and not check_cidrs(req.connection.remote_addr, token.bound_cidrs):
            raise PermissionDenied()

    async def check_token(self, req: Request, path: str, *, sudo: bool = False) -> TokenEntry:
        """Authenticate and authorise a request that bypasses routing (sealed-safe sys paths)."""
        if self.sealed:
            raise Sealed()
        if not req.client_token:
            raise PermissionDenied()
        token = await self.tokens.lookup(req.client_token)
        if token is None:
            raise InvalidToken()
        req.token_entry = token
        await self._authorize(req, token, path, sudo)
        return token

    async def _authorize(self, req: Request, token: TokenEntry, full_path: str, root_path: bool) -> None:
        policies = list(token.policies)
        entity = None
        if self.identity is not None and token.entity_id and not token.no_identity_policies:
            extra, entity = await self.identity.policies_for(token.entity_id)
            policies.extend(extra)
        acl = await self.policies.acl(policies, entity)
        check_path = full_path
        if req.operation == Operation.LIST and not check_path.endswith("/"):
            check_path += "/"
        decision = acl.allow_operation(
            req.operation.value,
            check_path,
            data=req.data if req.data else None,
            wrap_ttl=req.wrap_ttl,
            root_protected=root_path,
        )
        if not decision.allowed:
            raise PermissionDenied()
        req.is_root = decision.is_root
        req.is_sudo = decision.is_root or decision.sudo

    async def _use_token(self, token: TokenEntry) -> bool:
        """Spend one use before the request runs; True when this was the last one.

        The last use marks the token exhausted in storage at once, so a concurrent
        request cannot spend it again; it is revoked when this request finishes.
        """
        if token.num_uses < 0:
            raise InvalidToken()
        token.num_uses -= 1
        last = token.num_uses == 0
        if last:
            token.num_uses = -1  # in use for the last time (Vault's "tainted" marker)
        await self.tokens.update(token)
        return last

    async def revoke_token(self, token: TokenEntry, *, orphan_children: bool = False) -> None:
        """Revoke a token (and, unless orphaning, its whole subtree) with all their leases."""
        victims = [] if orphan_children else await self.tokens.descendants_postorder(token)
        victims.append(token)
        if orphan_children:
            await self.tokens.orphan_children(token)
        for victim in victims:
            if self.expiration is not None:
                await self.expiration.revoke_by_token(victim)
            if self.wrapping is not None:
                await self.wrapping.destroy_cubbyhole(victim)
            await self.tokens.delete_entry(victim)

    async def _finish_response(
        self, req: Request, token: TokenEntry | None, route: RouteEntry, response: Response
    ) -> Response:
        if response.secret is not None and self.expiration is not None:
            await self.expiration.register_secret(req, token, route, response)
        if response.auth is not None and self.expiration is not None:
            await self.expiration.register_auth(req, token, route, response)
        if self.wrapping is not None and (req.wrap_ttl or response.wrap_required):
            response = await self.wrapping.wrap(req, token, response)
        return response
