"""The token store: token entries, accessors, the parent/child tree.

Tokens are stored under ``sys/token/`` by a salted HMAC of their id, never by
the id itself: ``id/<hash>`` holds the entry, ``accessor/<hash>`` maps an
accessor back to the token, ``parent/<parent hash>/<child hash>`` records the
tree so revoking a token can find its descendants. Batch tokens are not
stored: they carry their entry, encrypted and authenticated by the barrier
key of the token store, in the token string itself. Token roles (the
``auth/token/roles/<name>`` resource) live beside them under ``roles/<name>``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import string
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from strongroom.logical.storage import Storage, get_json, put_json

_BASE62 = string.ascii_letters + string.digits
SERVICE_PREFIX = "hvs."
BATCH_PREFIX = "hvb."
ROOT_PATH = "auth/token/root"
SERVICE = "service"
BATCH = "batch"
DEFAULT_SERVICE = "default-service"
DEFAULT_BATCH = "default-batch"


def random_base62(length: int) -> str:
    return "".join(secrets.choice(_BASE62) for _ in range(length))


def remove_duplicates(items: Iterable[str], lowercase: bool = True) -> list[str]:
    """Vault's ``strutil.RemoveDuplicates``: trimmed, (lower-cased,) no blanks, unique, sorted."""
    out = {(item.strip().lower() if lowercase else item.strip()) for item in items}
    out.discard("")
    return sorted(out)


def sanitize_policies(policies: Iterable[str], add_default: bool) -> list[str]:
    """Vault's ``policyutil.SanitizePolicies``: ``root`` absorbs the rest; ``default`` added on request."""
    cleaned = [p.strip().lower() for p in policies]
    cleaned = [p for p in cleaned if p]
    if "root" in cleaned:
        return ["root"]
    if add_default and "default" not in cleaned:
        cleaned.append("default")
    return remove_duplicates(cleaned)


def glob_match(pattern: str, value: str) -> bool:
    """go-glob matching: ``*`` matches any run of characters, anywhere in the pattern."""
    if pattern == "*":
        return True
    if "*" not in pattern:
        return pattern == value
    regex = ".*".join(re.escape(part) for part in pattern.split("*"))
    return re.fullmatch(regex, value, flags=re.DOTALL) is not None


def list_contains_glob(patterns: Iterable[str], value: str) -> bool:
    """Vault's ``strutil.StrListContainsGlob``."""
    return any(glob_match(p, value) for p in patterns)


@dataclass
class TokenEntry:
    id: str
    accessor: str = ""
    parent: str = ""
    policies: list[str] = field(default_factory=list)
    path: str = "auth/token/create"
    meta: dict[str, str] = field(default_factory=dict)
    display_name: str = "token"
    num_uses: int = 0
    creation_time: float = 0.0
    creation_ttl: int = 0
    ttl: int = 0
    explicit_max_ttl: int = 0
    period: int = 0
    expire_time: float = 0.0  # 0: never
    last_renewal: float = 0.0
    role: str = ""
    type: str = "service"
    entity_id: str = ""
    bound_cidrs: list[str] = field(default_factory=list)
    renewable: bool = True
    orphan: bool = False
    no_identity_policies: bool = False
    internal_meta: dict[str, Any] = field(default_factory=dict)
    # set while the token's uses are being counted down to zero
    use_count_exhausted: bool = False

    @property
    def is_root(self) -> bool:
        return "root" in self.policies

    def expired(self, now: float | None = None) -> bool:
        return bool(self.expire_time) and (now if now is not None else time.time()) >= self.expire_time

    def remaining_ttl(self, now: float | None = None) -> int:
        if not self.expire_time:
            return 0
        return max(0, round(self.expire_time - (now if now is not None else time.time())))

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> TokenEntry:
        known = cls.__dataclass_fields__
        return cls(**{k: v for k, v in raw.items() if k in known})


_ENTRY_DEFAULTS: dict[str, Any] = TokenEntry(id="").to_json()

TOKEN_TYPES_FOR_ROLES = (SERVICE, BATCH, DEFAULT_SERVICE, DEFAULT_BATCH)


@dataclass
class TokenRole:
    """A token role: what ``auth/token/create/<role>`` may and must do.

    ``period``, ``explicit_max_ttl`` and ``bound_cidrs`` are the legacy names,
    kept so a read returns what was written; the ``token_*`` values rule.
    """

    name: str
    allowed_policies: list[str] = field(default_factory=list)
    disallowed_policies: list[str] = field(default_factory=list)
    allowed_policies_glob: list[str] = field(default_factory=list)
    disallowed_policies_glob: list[str] = field(default_factory=list)
    orphan: bool = False
    renewable: bool = True
    path_suffix: str = ""
    allowed_entity_aliases: list[str] | None = None
    period: int = 0
    explicit_max_ttl: int = 0
    bound_cidrs: list[str] = field(default_factory=list)
    token_period: int = 0
    token_explicit_max_ttl: int = 0
    token_bound_cidrs: list[str] = field(default_factory=list)
    token_num_uses: int = 0
    token_no_default_policy: bool = False
    token_type: str = DEFAULT_SERVICE

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> TokenRole:
        known = {f.name for f in fields(cls)}
        role = cls(**{k: v for k, v in raw.items() if k in known})
        # legacy fields upgrade, as Vault does on every read
        if role.period > 0 and role.token_period == 0:
            role.token_period = role.period
        if role.explicit_max_ttl > 0 and role.token_explicit_max_ttl == 0:
            role.token_explicit_max_ttl = role.explicit_max_ttl
        if role.bound_cidrs and not role.token_bound_cidrs:
            role.token_bound_cidrs = list(role.bound_cidrs)
        if role.token_type not in TOKEN_TYPES_FOR_ROLES:
            role.token_type = DEFAULT_SERVICE
        return role


@dataclass
class TidyReport:
    """What :meth:`TokenStore.tidy` found; the caller revokes what it lists."""

    parent_indexes_deleted: int = 0
    children_orphaned: int = 0
    accessors_deleted: int = 0
    dangling_token_ids: list[str] = field(default_factory=list)
    expired: list[TokenEntry] = field(default_factory=list)


class TokenStore:
    """Persistence and tree operations for tokens; policy-free (core decides who may)."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self._salt: bytes | None = None
        self._batch_key: bytes | None = None
        self._cache: dict[str, TokenEntry] = {}
        self._salted: dict[tuple[str, str], str] = {}
        # called after a stored token changes or goes, so other processes drop their copy
        self.on_change: Callable[[], None] | None = None

    def _notify(self) -> None:
        if self.on_change is not None:
            self.on_change()

    async def setup(self) -> None:
        raw = await self.storage.get("salt")
        if raw is None:
            raw = secrets.token_bytes(32)
            await self.storage.put("salt", raw)
        self._salt = raw
        key = await self.storage.get("batch-key")
        if key is None:
            key = AESGCM.generate_key(bit_length=256)
            await self.storage.put("batch-key", key)
        self._batch_key = key
        self._cache.clear()
        self._salted.clear()

    def invalidate(self) -> None:
        self._cache.clear()

    def mount_salted(self, accessor: str, token_id: str) -> str:
        """The per-mount stand-in for a token that engines see (memoised: it is on the hot path)."""
        key = (accessor, token_id)
        salted = self._salted.get(key)
        if salted is None:
            if len(self._salted) > 4096:
                self._salted.clear()
            salted = self._salted[key] = self.salt_id(accessor + ":" + token_id)
        return salted

    def salt_id(self, value: str) -> str:
        assert self._salt is not None, "token store not set up"
        return hmac.new(self._salt, value.encode(), hashlib.sha256).hexdigest()

    # -- create -------------------------------------------------------------------------------

    def new_id(self, kind: str = SERVICE) -> str:
        return (BATCH_PREFIX if kind == BATCH else SERVICE_PREFIX) + random_base62(24)

    async def create(self, entry: TokenEntry) -> TokenEntry:
        """Persist a new service token (the caller set policies, TTLs and the parent)."""
        now = time.time()
        if not entry.creation_time:
            entry.creation_time = now
        if entry.type == "batch":
            entry.id = self._seal_batch(entry)
            entry.accessor = ""
            return entry
        if not entry.id:
            entry.id = self.new_id()
        if not entry.accessor:
            entry.accessor = random_base62(24)
        hashed = self.salt_id(entry.id)
        async with self.storage.transaction() as txn:
            await put_json(txn, f"id/{hashed}", entry.to_json())
            await put_json(txn, f"accessor/{self.salt_id(entry.accessor)}", {"token": entry.id})
            if entry.parent:
                await txn.put(f"parent/{self.salt_id(entry.parent)}/{hashed}", b"")
        self._cache[entry.id] = entry
        return entry

    async def exists(self, token_id: str) -> bool:
        return await self.storage.get(f"id/{self.salt_id(token_id)}") is not None

    async def update(self, entry: TokenEntry) -> None:
        """Persist changes to an existing entry; a revoked (deleted) token stays deleted."""
        if entry.type == "batch":
            return
        key = f"id/{self.salt_id(entry.id)}"
        if await self.storage.get(key) is None:
            self._cache.pop(entry.id, None)
            return
        await put_json(self.storage, key, entry.to_json())
        self._cache[entry.id] = entry
        self._notify()

    # -- batch tokens -----------------------------------------------------------------------

    def _seal_batch(self, entry: TokenEntry) -> str:
        assert self._batch_key is not None
        # only what differs from the defaults: batch tokens travel in headers, keep them short
        defaults = _ENTRY_DEFAULTS
        compact = {k: v for k, v in entry.to_json().items() if k != "id" and v != defaults.get(k)}
        payload = json.dumps(compact, separators=(",", ":")).encode()
        nonce = secrets.token_bytes(12)
        blob = nonce + AESGCM(self._batch_key).encrypt(nonce, payload, b"batch-token")
        return BATCH_PREFIX + base64.urlsafe_b64encode(blob).decode().rstrip("=")

    def _open_batch(self, token: str) -> TokenEntry | None:
        assert self._batch_key is not None
        body = token[len(BATCH_PREFIX) :]
        if len(body) > 8192:
            return None
        try:
            blob = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
            payload = AESGCM(self._batch_key).decrypt(blob[:12], blob[12:], b"batch-token")
            entry = TokenEntry.from_json({"id": "", **json.loads(payload)})
        except Exception:
            return None
        entry.id = token
        return entry

    # -- lookup -------------------------------------------------------------------------------

    async def lookup_raw(self, token_id: str) -> TokenEntry | None:
        """The stored entry, expired or not (None for unknown ids)."""
        if not token_id or len(token_id) > 16384:
            return None
        if token_id.startswith(BATCH_PREFIX):
            return self._open_batch(token_id)
        cached = self._cache.get(token_id)
        if cached is not None:
            return cached
        raw = await get_json(self.storage, f"id/{self.salt_id(token_id)}")
        if raw is None:
            return None
        entry = TokenEntry.from_json(raw)
        if not hmac.compare_digest(entry.id, token_id):
            return None
        self._cache[token_id] = entry
        return entry

    async def lookup(self, token_id: str) -> TokenEntry | None:
        """A usable token: known, not expired, uses left, and (batch) parent still valid."""
        entry = await self.lookup_raw(token_id)
        if entry is None or entry.expired() or entry.use_count_exhausted or entry.num_uses < 0:
            return None
        if entry.type == "batch" and entry.parent:
            parent = await self.lookup(entry.parent)
            if parent is None:
                return None
        return entry

    async def lookup_accessor(self, accessor: str) -> TokenEntry | None:
        if not accessor or len(accessor) > 256:
            return None
        raw = await get_json(self.storage, f"accessor/{self.salt_id(accessor)}")
        if raw is None:
            return None
        return await self.lookup_raw(raw["token"])

    async def children(self, token_id: str) -> list[str]:
        """Salted ids of the direct children."""
        return await self.storage.list(f"parent/{self.salt_id(token_id)}/")

    async def entry_by_salted(self, salted: str) -> TokenEntry | None:
        raw = await get_json(self.storage, f"id/{salted}")
        return None if raw is None else TokenEntry.from_json(raw)

    async def accessors(self) -> list[str]:
        out = []
        for salted in await self.storage.list("id/"):
            entry = await self.entry_by_salted(salted)
            if entry is not None and entry.accessor:
                out.append(entry.accessor)
        return sorted(out)

    # -- delete -------------------------------------------------------------------------------

    async def delete_entry(self, entry: TokenEntry) -> None:
        """Remove one token's records (its children are the caller's concern)."""
        if entry.type == "batch":
            return
        hashed = self.salt_id(entry.id)
        async with self.storage.transaction() as txn:
            await txn.delete(f"id/{hashed}")
            if entry.accessor:
                await txn.delete(f"accessor/{self.salt_id(entry.accessor)}")
            if entry.parent:
                await txn.delete(f"parent/{self.salt_id(entry.parent)}/{hashed}")
        self._cache.pop(entry.id, None)
        self._notify()

    async def orphan_children(self, entry: TokenEntry) -> None:
        for salted in await self.children(entry.id):
            child = await self.entry_by_salted(salted)
            await self.storage.delete(f"parent/{self.salt_id(entry.id)}/{salted}")
            if child is not None:
                child.parent = ""
                child.orphan = True
                await self.update(child)

    async def descendants_postorder(self, entry: TokenEntry) -> list[TokenEntry]:
        """Every descendant, deepest first, so a revocation never leaves a dangling child."""
        out: list[TokenEntry] = []
        stack: list[tuple[TokenEntry, bool]] = [(entry, False)]
        seen: set[str] = set()
        while stack:
            node, expanded = stack.pop()
            if expanded:
                if node is not entry:
                    out.append(node)
                continue
            if node.id in seen:
                continue
            seen.add(node.id)
            stack.append((node, True))
            for salted in await self.children(node.id):
                child = await self.entry_by_salted(salted)
                if child is not None:
                    stack.append((child, False))
        return out

    # -- roles ----------------------------------------------------------------------------

    async def get_role(self, name: str) -> TokenRole | None:
        raw = await get_json(self.storage, f"roles/{name}")
        return None if raw is None else TokenRole.from_json(raw)

    async def put_role(self, role: TokenRole) -> None:
        await put_json(self.storage, f"roles/{role.name}", role.to_json())

    async def delete_role(self, name: str) -> None:
        await self.storage.delete(f"roles/{name}")

    async def list_roles(self) -> list[str]:
        return [n for n in await self.storage.list("roles/") if not n.endswith("/")]

    # -- tidy -----------------------------------------------------------------------------

    async def tidy(self) -> TidyReport:
        """Drop dangling parent and accessor index entries; report dangling and expired tokens.

        A child whose parent record is gone becomes an orphan. Accessors whose token
        is gone are deleted and their token ids reported (their leases may remain).
        Expired tokens are reported for the caller to revoke.
        """
        report = TidyReport()
        for parent in await self.storage.list("parent/"):
            salted_parent = parent.rstrip("/")
            parent_exists = await self.storage.get(f"id/{salted_parent}") is not None
            for child_name in await self.storage.list(f"parent/{parent}"):
                index = f"parent/{parent}{child_name}"
                child = await self.entry_by_salted(child_name.rstrip("/"))
                if child is not None and parent_exists:
                    continue
                if child is not None:
                    child.parent = ""
                    child.orphan = True
                    self._cache.pop(child.id, None)
                    await put_json(self.storage, f"id/{child_name}", child.to_json())
                    report.children_orphaned += 1
                await self.storage.delete(index)
                report.parent_indexes_deleted += 1
        for salted in await self.storage.list("accessor/"):
            if salted.endswith("/"):
                continue
            raw = await get_json(self.storage, f"accessor/{salted}")
            token_id = raw.get("token", "") if isinstance(raw, dict) else ""
            if token_id and await self.lookup_raw(token_id) is not None:
                continue
            if token_id:
                report.dangling_token_ids.append(token_id)
            await self.storage.delete(f"accessor/{salted}")
            report.accessors_deleted += 1
        now = time.time()
        for salted in await self.storage.list("id/"):
            entry = await self.entry_by_salted(salted)
            if entry is not None and entry.expired(now):
                report.expired.append(entry)
        return report
