"""The storage contract: what engines, the barrier and physical backends share.

Keys are ``/``-separated strings without a leading ``/``. ``list(prefix)``
returns the direct children of ``prefix`` (which is ``""`` or ends in ``/``):
leaf names as they are, sub-folders with a trailing ``/``, sorted byte-wise,
each name once. ``list_page`` does the same, returning only names strictly
greater than ``after`` and at most ``limit`` of them (``limit <= 0`` means no
limit). Deleting a missing key is not an error.

A ``transaction()`` is a ``Storage`` itself; leaving its ``async with`` block
normally commits, leaving it with an exception rolls everything back.
"""

from __future__ import annotations

import asyncio
import bisect
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Protocol, runtime_checkable

from strongroom.logical.errors import UserError

Names = list[str]  # the builtin, named so classes with a ``list`` method can annotate with it


class StorageError(Exception):
    """A backend failed; the request fails with a 500 and nothing is half-written."""


class InvalidStorageKey(UserError, ValueError):
    """A key that could escape a view: a client's bad path, so a 400, never a 500."""

    def __init__(self) -> None:
        super().__init__("invalid path: empty, relative or NUL path segments are not allowed")


@runtime_checkable
class Storage(Protocol):
    async def get(self, key: str) -> bytes | None: ...

    async def put(self, key: str, value: bytes) -> None: ...

    async def delete(self, key: str) -> None: ...

    async def list(self, prefix: str) -> Names: ...

    async def list_page(self, prefix: str, after: str = "", limit: int = 0) -> Names: ...

    def transaction(self) -> Any:
        """Return an async context manager yielding a transactional ``Storage``."""
        ...


def check_key(key: str) -> None:
    """Refuse keys that could escape a view or confuse a backend."""
    if not key or key[0] == "/" or "\x00" in key:
        raise InvalidStorageKey()
    if "." in key:  # only then can a segment be "." or ".."
        for part in key.split("/"):
            if part in (".", ".."):
                raise InvalidStorageKey()


def check_prefix(prefix: str) -> None:
    if prefix and not prefix.endswith("/"):
        raise InvalidStorageKey()
    if prefix:
        check_key(prefix[:-1])


def children(keys: list[str], prefix: str) -> Names:
    """Direct children of ``prefix`` among sorted full ``keys`` (helper for simple backends)."""
    out: list[str] = []
    seen: set[str] = set()
    start = bisect.bisect_left(keys, prefix)
    for key in keys[start:]:
        if not key.startswith(prefix):
            break
        rest = key[len(prefix) :]
        slash = rest.find("/")
        name = rest if slash < 0 else rest[: slash + 1]
        if name and name not in seen:
            seen.add(name)
            out.append(name)
    out.sort()
    return out


def page(names: list[str], after: str, limit: int) -> Names:
    if after:
        names = names[bisect.bisect_right(names, after) :]
    if limit > 0:
        names = names[:limit]
    return names


async def get_json(storage: Storage, key: str) -> Any:
    raw = await storage.get(key)
    return None if raw is None else json.loads(raw)


async def put_json(storage: Storage, key: str, value: Any) -> None:
    await storage.put(key, json.dumps(value, separators=(",", ":"), sort_keys=True).encode())


class InmemStorage:
    """A dict-backed Storage for engine unit tests and dev mode."""

    def __init__(self) -> None:
        self._data: dict[str, bytes] = {}
        self._sorted: list[str] | None = None
        self._txn_lock = asyncio.Lock()

    async def get(self, key: str) -> bytes | None:
        check_key(key)
        return self._data.get(key)

    async def put(self, key: str, value: bytes) -> None:
        check_key(key)
        if key not in self._data:
            self._sorted = None
        self._data[key] = bytes(value)

    async def delete(self, key: str) -> None:
        check_key(key)
        if self._data.pop(key, None) is not None:
            self._sorted = None

    def _keys(self) -> Names:
        if self._sorted is None:
            self._sorted = sorted(self._data)
        return self._sorted

    async def list(self, prefix: str) -> Names:
        check_prefix(prefix)
        return children(self._keys(), prefix)

    async def list_page(self, prefix: str, after: str = "", limit: int = 0) -> Names:
        return page(await self.list(prefix), after, limit)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[InmemTransaction]:
        # transactions are serialised; their writes reach the store only on commit
        async with self._txn_lock:
            txn = InmemTransaction(self)
            yield txn
            txn.commit()


class InmemTransaction:
    """Buffers writes over a parent InmemStorage; reads see them; applied on commit."""

    _DELETED = object()

    def __init__(self, parent: InmemStorage) -> None:
        self._parent = parent
        self._writes: dict[str, object] = {}

    async def get(self, key: str) -> bytes | None:
        check_key(key)
        if key in self._writes:
            value = self._writes[key]
            return None if value is self._DELETED else value  # type: ignore[return-value]
        return self._parent._data.get(key)

    async def put(self, key: str, value: bytes) -> None:
        check_key(key)
        self._writes[key] = bytes(value)

    async def delete(self, key: str) -> None:
        check_key(key)
        self._writes[key] = self._DELETED

    async def list(self, prefix: str) -> Names:
        check_prefix(prefix)
        keys = set(self._parent._keys())
        for key, value in self._writes.items():
            if value is self._DELETED:
                keys.discard(key)
            else:
                keys.add(key)
        return children(sorted(keys), prefix)

    async def list_page(self, prefix: str, after: str = "", limit: int = 0) -> Names:
        return page(await self.list(prefix), after, limit)

    def commit(self) -> None:
        for key, value in self._writes.items():
            if value is self._DELETED:
                self._parent._data.pop(key, None)
            else:
                self._parent._data[key] = value  # type: ignore[assignment]
        self._parent._sorted = None
        self._writes = {}

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[InmemTransaction]:
        yield self  # nested transactions join the outer one


class PrefixView:
    """A Storage scoped under ``prefix``; an engine cannot see outside it."""

    def __init__(self, inner: Storage, prefix: str) -> None:
        check_prefix(prefix)
        self.inner = inner
        self.prefix = prefix

    async def get(self, key: str) -> bytes | None:
        check_key(key)
        return await self.inner.get(self.prefix + key)

    async def put(self, key: str, value: bytes) -> None:
        check_key(key)
        await self.inner.put(self.prefix + key, value)

    async def delete(self, key: str) -> None:
        check_key(key)
        await self.inner.delete(self.prefix + key)

    async def list(self, prefix: str) -> Names:
        check_prefix(prefix)
        return await self.inner.list(self.prefix + prefix)

    async def list_page(self, prefix: str, after: str = "", limit: int = 0) -> Names:
        check_prefix(prefix)
        return await self.inner.list_page(self.prefix + prefix, after, limit)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[PrefixView]:
        async with self.inner.transaction() as txn:
            yield PrefixView(txn, self.prefix)


async def delete_prefix(storage: Storage, prefix: str) -> None:
    """Delete every key under ``prefix`` (used when a mount is disabled)."""
    for name in await storage.list(prefix):
        if name.endswith("/"):
            await delete_prefix(storage, prefix + name)
        else:
            await storage.delete(prefix + name)
