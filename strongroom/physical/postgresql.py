"""PostgreSQL physical storage: the shared backend for HA and scale-out.

The table is Vault's own layout, so an existing Vault/OpenBao ``vault_kv_store``
can be pointed at (and the other way round)::

    CREATE TABLE vault_kv_store (
      parent_path TEXT COLLATE "C" NOT NULL, path TEXT COLLATE "C", key TEXT COLLATE "C",
      value BYTEA, CONSTRAINT pkey PRIMARY KEY (path, key));
    CREATE INDEX parent_path_idx ON vault_kv_store (parent_path);

A key ``a/b/c`` is stored as (parent_path ``/a/``, path ``/a/b/``, key ``c``).
Like OpenBao (and unlike Vault) the table is created when missing; an existing
table is used as it is. A table name
other than the default gets constraint and index names derived from it
(``<table>_pkey``, ``<table>_parent_path_idx``) because those names are unique
per schema.

Concurrency: a small connection pool (psycopg_pool is not a dependency, so the
pool is the few lines of :class:`_Pool`); each plain operation is one autocommit
statement with ``synchronous_commit=on``. Transactions run at REPEATABLE READ
and are serialised across every process and node sharing the table by a
session advisory lock taken *before* ``BEGIN`` (so the snapshot is taken after
the previous transaction committed). Read-modify-write transactions therefore
never lose updates and need no retry loop. The one conflict left is a plain
``put``/``delete`` from elsewhere touching a row the transaction also writes:
that raises :class:`TransactionConflict` (a ``StorageError``), and nothing of the
transaction is kept.

A store is used from one event loop (psycopg async connections belong to the
loop that opened them).
"""

from __future__ import annotations

import asyncio
import builtins
import contextvars
import hashlib
import logging
import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql
from psycopg.pq import TransactionStatus

from strongroom.logical.storage import StorageError, check_key, check_prefix

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_TABLE = "vault_kv_store"
_TABLE_RE = re.compile(r"[A-Za-z0-9_]{1,63}")
_ENV_URLS = ("STRONGROOM_PG_CONNECTION_URL", "VAULT_PG_CONNECTION_URL")
_POOL_CAP = 16

_ACTIVE: contextvars.ContextVar[tuple[tuple[object, object], ...]] = contextvars.ContextVar(
    "strongroom_pg_active_txn", default=()
)


class TransactionConflict(StorageError):
    """A transaction collided with a concurrent plain write and was rolled back; retrying is safe."""


def split_key(key: str) -> tuple[str, str, str]:
    """Vault's split: ``a/b/c`` → (``/a/``, ``/a/b/``, ``c``); ``a`` → (``""``, ``/``, ``a``)."""
    pieces = key.split("/")
    depth = len(pieces)
    if depth == 1:
        return "", "/", key
    if depth == 2:
        return "/", "/" + pieces[0] + "/", pieces[1]
    return "/" + "/".join(pieces[:-2]) + "/", "/" + "/".join(pieces[:-1]) + "/", pieces[-1]


def _like_escape(text: str) -> str:
    """Make ``text`` match itself literally in ``LIKE … ESCAPE '\\'``."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _storage_error(action: str, exc: psycopg.Error) -> StorageError:
    """Name the failure by class and SQLSTATE only: server messages can quote values."""
    state = getattr(exc, "sqlstate", None) or "-"
    cls = TransactionConflict if isinstance(exc, pg_errors.SerializationFailure) else StorageError
    return cls(f"postgresql {action} failed ({type(exc).__name__}, sqlstate {state})")


def _lock_id(purpose: str, table: str) -> int:
    """A stable 64-bit advisory lock key per table and purpose (shared by every process)."""
    digest = hashlib.sha256(f"strongroom:{purpose}:{table}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _table_name(options: dict[str, Any]) -> str:
    table = str(options.get("table") or DEFAULT_TABLE)
    if not _TABLE_RE.fullmatch(table):
        raise ValueError('postgresql "table" may only contain letters, digits and "_" (at most 63)')
    return table


def _connection_url(options: dict[str, Any]) -> str:
    url = options.get("connection_url")
    if not url:
        for name in _ENV_URLS:
            url = os.environ.get(name)
            if url:
                break
    if not url:
        raise ValueError('postgresql storage needs "connection_url" (or VAULT_PG_CONNECTION_URL)')
    return str(url)


class _Queries:
    """Every statement, built once with ``sql.Identifier`` for the table name."""

    def __init__(self, table: str) -> None:
        t = sql.Identifier(table)
        if table == DEFAULT_TABLE:
            pkey, idx = sql.Identifier("pkey"), sql.Identifier("parent_path_idx")
        else:
            pkey, idx = sql.Identifier(f"{table}_pkey"), sql.Identifier(f"{table}_parent_path_idx")
        self.create_table = sql.SQL(
            'CREATE TABLE IF NOT EXISTS {t} (parent_path TEXT COLLATE "C" NOT NULL, path TEXT COLLATE "C", '
            'key TEXT COLLATE "C", value BYTEA, CONSTRAINT {pkey} PRIMARY KEY (path, key))'
        ).format(t=t, pkey=pkey)
        self.create_index = sql.SQL("CREATE INDEX IF NOT EXISTS {idx} ON {t} (parent_path)").format(
            t=t, idx=idx
        )
        self.get = sql.SQL("SELECT value FROM {t} WHERE path = %s AND key = %s").format(t=t)
        self.put = sql.SQL(
            "INSERT INTO {t} (parent_path, path, key, value) VALUES (%s, %s, %s, %s) "
            "ON CONFLICT (path, key) DO UPDATE SET parent_path = EXCLUDED.parent_path, value = EXCLUDED.value"
        ).format(t=t)
        self.delete = sql.SQL("DELETE FROM {t} WHERE path = %s AND key = %s").format(t=t)
        self.list = sql.SQL(
            "SELECT key FROM {t} WHERE path = %(path)s "
            "UNION SELECT substring(substr(path, length(%(path)s::text) + 1) from '^.*?/') FROM {t} "
            "WHERE parent_path LIKE %(like)s ESCAPE '\\'"
        ).format(t=t)


async def _get(conn: psycopg.AsyncConnection[Any], q: _Queries, key: str) -> bytes | None:
    _parent, path, name = split_key(key)
    cur = await conn.execute(q.get, (path, name))
    row = await cur.fetchone()
    return None if row is None else bytes(row[0])


async def _put(conn: psycopg.AsyncConnection[Any], q: _Queries, key: str, value: bytes) -> None:
    parent, path, name = split_key(key)
    await conn.execute(q.put, (parent, path, name, value))


async def _delete(conn: psycopg.AsyncConnection[Any], q: _Queries, key: str) -> None:
    _parent, path, name = split_key(key)
    await conn.execute(q.delete, (path, name))


async def _list(conn: psycopg.AsyncConnection[Any], q: _Queries, prefix: str) -> list[str]:
    path = "/" + prefix
    # Not prepared: a generic plan could not use the index for the LIKE prefix.
    cur = await conn.execute(q.list, {"path": path, "like": _like_escape(path) + "%"}, prepare=False)
    names = {row[0] for row in await cur.fetchall() if row[0]}
    return sorted(names)


def _page(names: list[str], after: str, limit: int) -> list[str]:
    if after:
        names = [n for n in names if n > after]
    return names[:limit] if limit > 0 else names


class _Pool:
    """At most ``max_size`` autocommit connections, opened on demand and reused."""

    def __init__(self, url: str, max_size: int) -> None:
        self._url = url
        self._idle: list[psycopg.AsyncConnection[Any]] = []
        self._sem = asyncio.Semaphore(max_size)
        self._closed = False

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        conn = await psycopg.AsyncConnection.connect(self._url, autocommit=True)
        try:
            await conn.execute("SET synchronous_commit = on")
        except BaseException:
            await conn.close()
            raise
        return conn

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        async with self._sem:
            if self._closed:
                raise StorageError("postgresql storage is closed")
            conn = self._idle.pop() if self._idle else None
            if conn is None:
                try:
                    conn = await self._connect()
                except psycopg.Error as exc:
                    raise _storage_error("connect", exc) from None
            try:
                yield conn
            finally:
                healthy = (
                    not conn.closed
                    and not conn.broken
                    and conn.info.transaction_status == TransactionStatus.IDLE
                )
                if healthy and not self._closed:
                    self._idle.append(conn)
                else:
                    await conn.close()

    async def close(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            await conn.close()


class PostgresPhysical:
    """Storage in a PostgreSQL table laid out exactly as Vault's (see the module docstring)."""

    name = "postgresql"

    def __init__(self, options: dict[str, Any]) -> None:
        self.table = _table_name(options)
        self._url = _connection_url(options)
        max_parallel = int(options.get("max_parallel") or 128)
        if max_parallel < 1:
            raise ValueError('postgresql "max_parallel" must be at least 1')
        self._pool = _Pool(self._url, min(max_parallel, _POOL_CAP))
        self._q = _Queries(self.table)
        self._lock_id = _lock_id("txn", self.table)
        self._schema_lock_id = _lock_id("schema", self.table)
        self._opened = False
        self._open_lock = asyncio.Lock()
        # One transaction per process waits for the advisory lock; the others wait
        # here without holding a pooled connection.
        self._txn_lock = asyncio.Lock()

    async def open(self) -> None:
        """Connect once and create the table and index when missing (also done lazily)."""
        if self._opened:
            return
        async with self._open_lock:
            if self._opened:
                return
            async with self._pool.connection() as conn:
                try:
                    # An existing table (ours, Vault's, OpenBao's) is left exactly as it is:
                    # even CREATE INDEX IF NOT EXISTS would wait for a lock on a busy table.
                    cur = await conn.execute("SELECT to_regclass(%s) IS NOT NULL", (f'"{self.table}"',))
                    row = await cur.fetchone()
                    if not (row and row[0]):
                        # Serialise concurrent creators (other workers, other nodes): plain
                        # IF NOT EXISTS can still race on the catalog's unique indexes.
                        async with conn.transaction():
                            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (self._schema_lock_id,))
                            await conn.execute(self._q.create_table)
                            await conn.execute(self._q.create_index)
                except psycopg.Error as exc:
                    raise _storage_error("open", exc) from None
            self._opened = True

    async def _run(self, action: str, fn: Callable[[psycopg.AsyncConnection[Any]], Awaitable[T]]) -> T:
        await self.open()
        async with self._pool.connection() as conn:
            try:
                return await fn(conn)
            except psycopg.Error as exc:
                raise _storage_error(action, exc) from None

    async def get(self, key: str) -> bytes | None:
        check_key(key)
        return await self._run("read", lambda c: _get(c, self._q, key))

    async def put(self, key: str, value: bytes) -> None:
        check_key(key)
        data = bytes(value)
        await self._run("write", lambda c: _put(c, self._q, key, data))

    async def delete(self, key: str) -> None:
        check_key(key)
        await self._run("delete", lambda c: _delete(c, self._q, key))

    async def list(self, prefix: str) -> builtins.list[str]:
        check_prefix(prefix)
        return await self._run("list", lambda c: _list(c, self._q, prefix))

    async def list_page(self, prefix: str, after: str = "", limit: int = 0) -> builtins.list[str]:
        return _page(await self.list(prefix), after, limit)

    def _open_transaction(self) -> PostgresTransaction | None:
        for store, txn in _ACTIVE.get():
            if store is self and isinstance(txn, PostgresTransaction) and not txn._finished:
                return txn
        return None

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[PostgresTransaction]:
        outer = self._open_transaction()
        if outer is not None:
            yield outer  # a nested transaction joins the outer one (same connection, same lock)
            return
        await self.open()
        async with self._txn_lock, self._pool.connection() as conn:
            try:
                await conn.execute("SELECT pg_advisory_lock(%s)", (self._lock_id,))
                await conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
            except BaseException as exc:
                await conn.close()  # whatever state it is in, closing drops the lock too
                if isinstance(exc, psycopg.Error):
                    raise _storage_error("begin", exc) from None
                raise
            txn = PostgresTransaction(self, conn)
            token = _ACTIVE.set((*_ACTIVE.get(), (self, txn)))
            try:
                try:
                    yield txn
                except BaseException:
                    await self._finish(conn, txn, commit=False)
                    raise
                await self._finish(conn, txn, commit=True)
            finally:
                txn._finished = True
                try:
                    _ACTIVE.reset(token)
                except ValueError:
                    pass
                await self._release(conn)

    async def _finish(
        self, conn: psycopg.AsyncConnection[Any], txn: PostgresTransaction, commit: bool
    ) -> None:
        failed_error: StorageError | None = None
        if commit and txn._failure is not None:
            # PostgreSQL answers COMMIT of an aborted transaction with a silent ROLLBACK.
            commit = False
            failed_error = type(txn._failure)("transaction rolled back after a failed operation")
        try:
            await conn.execute("COMMIT" if commit else "ROLLBACK")
        except psycopg.Error as exc:
            if commit:
                raise _storage_error("commit", exc) from None
            log.warning("postgresql rollback failed (%s)", type(exc).__name__)
        if failed_error is not None:
            raise failed_error

    async def _release(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """Leave ``conn`` idle and unlocked, or close it (closing also drops the lock)."""
        if conn.closed:
            return
        try:
            if conn.info.transaction_status != TransactionStatus.IDLE:
                await conn.execute("ROLLBACK")
            await conn.execute("SELECT pg_advisory_unlock(%s)", (self._lock_id,))
        except psycopg.Error as exc:
            # The outcome is already decided; a closed session releases its lock.
            log.warning("postgresql unlock failed (%s); dropping the connection", type(exc).__name__)
            await conn.close()
        except BaseException:
            await conn.close()
            raise

    async def close(self) -> None:
        await self._pool.close()


class PostgresTransaction:
    """A Storage bound to one connection inside ``BEGIN … COMMIT``."""

    def __init__(self, store: PostgresPhysical, conn: psycopg.AsyncConnection[Any]) -> None:
        self._store = store
        self._conn = conn
        self._q = store._q
        self._finished = False
        self._failure: StorageError | None = None

    async def _run(self, action: str, fn: Callable[[psycopg.AsyncConnection[Any]], Awaitable[T]]) -> T:
        if self._finished:
            raise StorageError("the transaction is already finished")
        try:
            return await fn(self._conn)
        except psycopg.Error as exc:
            error = _storage_error(action, exc)
            self._failure = self._failure or error
            raise error from None

    async def get(self, key: str) -> bytes | None:
        check_key(key)
        return await self._run("read", lambda c: _get(c, self._q, key))

    async def put(self, key: str, value: bytes) -> None:
        check_key(key)
        data = bytes(value)
        await self._run("write", lambda c: _put(c, self._q, key, data))

    async def delete(self, key: str) -> None:
        check_key(key)
        await self._run("delete", lambda c: _delete(c, self._q, key))

    async def list(self, prefix: str) -> builtins.list[str]:
        check_prefix(prefix)
        return await self._run("list", lambda c: _list(c, self._q, prefix))

    async def list_page(self, prefix: str, after: str = "", limit: int = 0) -> builtins.list[str]:
        return _page(await self.list(prefix), after, limit)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[PostgresTransaction]:
        yield self  # nested transactions join the outer one
