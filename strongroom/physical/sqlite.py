"""SQLite physical storage: the embedded, durable default for a single node.

Durability: ``journal_mode=WAL`` with ``synchronous=FULL``. A write is
acknowledged only after the commit that holds it has been fsynced, so it
survives ``kill -9`` of the process and a power loss.

Threading model (why it looks like this: fsync takes milliseconds and must not
stall the event loop, while a point read takes microseconds):

* One **writer thread** per store owns the only write connection. ``put`` and
  ``delete`` enqueue an operation and await a future. The writer takes every
  pending operation, applies them in one ``BEGIN IMMEDIATE … COMMIT`` (one fsync
  for the whole batch: group commit) and then resolves each caller's future (one
  wake-up of the event loop per commit, not per write). If a batch fails, its
  operations are retried one by one so that one bad write does not fail the others.
  When the last commit showed writers overlapping, the writer first waits 2 ms for
  more writes to join (``_LINGER_S``): under concurrent load one fsync then serves
  several writes; a lone sequential writer never waits.
* ``transaction()`` runs on the same writer thread as one ``BEGIN IMMEDIATE …
  COMMIT``: the transaction's statements, reads included, are shipped to the
  writer and executed on the write connection, so they see the transaction's own
  uncommitted writes. Transactions are therefore serialised with each other and
  with plain writes. Inside a transaction body, write through the transaction
  object: a plain ``put`` on the store from the body (or from a task started in
  it) would wait for the transaction to finish, so it is refused with
  ``RuntimeError``; a nested ``store.transaction()`` there joins the open one.
* A caller cancelled while its write is queued does not withdraw the write: it
  may still be committed.
* **Reads** run inline on the calling thread through a read-only connection
  owned by that thread (``threading.local``). WAL readers never wait for the
  writer. The connections are opened with ``check_same_thread=False`` only so
  that ``close()`` can close them from whichever thread calls it; each one is
  otherwise used by exactly one thread.
* Several OS processes may open the same file (a multi-process server):
  ``BEGIN IMMEDIATE`` makes their writers take turns. The writer retries a busy
  lock every 50 µs to 1 ms itself (SQLite's busy handler sleeps whole milliseconds,
  growing to 100 ms, while a group commit holds the lock for a fraction of one);
  readers keep ``busy_timeout``.

Layout: one table ``kv(key TEXT PRIMARY KEY, value BLOB)``. Listing uses a range
scan on the key index and skips over each sub-folder it meets (after the first
key of ``a/x/…`` it jumps to keys ``>= a/x0``), so listing a folder costs one
index probe per child folder, however many keys lie below them.
"""

from __future__ import annotations

import asyncio
import builtins
import contextvars
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from strongroom.logical.storage import StorageError, check_key, check_prefix

log = logging.getLogger(__name__)

T = TypeVar("T")

_MAX_BATCH = 1024
# Group commit under concurrent writes: wait this long for more writes to join a commit
_LINGER_S = 0.002
# Another process holds the write lock: retry BEGIN IMMEDIATE after this, doubling up to the max
_BUSY_RETRY_FIRST_S = 0.00005
_BUSY_RETRY_MAX_S = 0.001
_MAX_BATCH_BYTES = 32 * 1024 * 1024
_DEFAULT_BUSY_TIMEOUT_MS = 10_000
_DB_FILE_IN_DIR = "strongroom.db"

_SCHEMA = "CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY NOT NULL, value BLOB NOT NULL)"
_GET = "SELECT value FROM kv WHERE key = ?"
_PUT = "INSERT INTO kv (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value"
_DELETE = "DELETE FROM kv WHERE key = ?"
_SCAN_BOUNDED = "SELECT key FROM kv WHERE key >= ? AND key < ? ORDER BY key"
_SCAN_OPEN = "SELECT key FROM kv WHERE key >= ? ORDER BY key"

_BUSY_CODES = {getattr(sqlite3, "SQLITE_BUSY", 5), getattr(sqlite3, "SQLITE_LOCKED", 6)}

# (store, transaction) pairs open in the current task: lets a nested
# ``store.transaction()`` join the outer one and refuses plain writes that
# would deadlock behind it.
_ACTIVE: contextvars.ContextVar[tuple[tuple[object, object], ...]] = contextvars.ContextVar(
    "strongroom_sqlite_active_txn", default=()
)


def _storage_error(action: str, exc: BaseException) -> BaseException:
    """Map a sqlite3 error to StorageError without echoing keys or values."""
    if isinstance(exc, sqlite3.Error):
        name = getattr(exc, "sqlite_errorname", None) or type(exc).__name__
        return StorageError(f"sqlite {action} failed ({name})")
    return exc


def _is_busy(exc: BaseException) -> bool:
    return isinstance(exc, sqlite3.Error) and getattr(exc, "sqlite_errorcode", None) in _BUSY_CODES


def _settle(
    loop: asyncio.AbstractEventLoop,
    fut: asyncio.Future[Any],
    result: Any = None,
    exc: BaseException | None = None,
) -> None:
    """Resolve ``fut`` from another thread; a caller that gave up is ignored."""

    def apply() -> None:
        if fut.done():
            return
        if exc is not None:
            fut.set_exception(exc)
        else:
            fut.set_result(result)

    try:
        loop.call_soon_threadsafe(apply)
    except RuntimeError:  # the loop is closed: nobody is waiting any more
        pass


def _settle_all(acks: builtins.list[tuple[asyncio.AbstractEventLoop, asyncio.Future[Any]]]) -> None:
    """Resolve many futures with None: one wake-up of each loop, not one per future."""
    by_loop: dict[asyncio.AbstractEventLoop, builtins.list[asyncio.Future[Any]]] = {}
    for loop, fut in acks:
        by_loop.setdefault(loop, []).append(fut)
    for loop, futs in by_loop.items():

        def apply(futs: builtins.list[asyncio.Future[Any]] = futs) -> None:
            for fut in futs:
                if not fut.done():
                    fut.set_result(None)

        try:
            loop.call_soon_threadsafe(apply)
        except RuntimeError:  # the loop is closed: nobody is waiting any more
            pass


def _rollback(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            log.warning("sqlite rollback failed", exc_info=True)


def _undo_savepoint(conn: sqlite3.Connection, name: str) -> None:
    """Undo one savepoint's work; the enclosing group transaction goes on."""
    try:
        conn.execute(f"ROLLBACK TO {name}")
        conn.execute(f"RELEASE {name}")
    except sqlite3.Error:
        log.warning("sqlite savepoint rollback failed", exc_info=True)


def _get(conn: sqlite3.Connection, key: str) -> bytes | None:
    row = conn.execute(_GET, (key,)).fetchone()
    return None if row is None else bytes(row[0])


def _put(conn: sqlite3.Connection, key: str, value: bytes) -> None:
    conn.execute(_PUT, (key, value))


def _delete(conn: sqlite3.Connection, key: str) -> None:
    conn.execute(_DELETE, (key,))


def _list(conn: sqlite3.Connection, prefix: str, after: str = "", limit: int = 0) -> list[str]:
    """Direct children of ``prefix`` greater than ``after``: an index skip-scan.

    Keys under ``prefix`` (which is ``""`` or ends in ``/``) all sort below
    ``prefix[:-1] + "0"`` because ``"0"`` is the character after ``"/"``; the
    same trick skips a whole sub-folder once its first key has been seen. The
    names come out already sorted and unique.
    """
    out: list[str] = []
    plen = len(prefix)
    upper = prefix[:-1] + "0" if prefix else None
    lower = prefix + after
    while True:
        cur = conn.execute(_SCAN_BOUNDED, (lower, upper)) if upper else conn.execute(_SCAN_OPEN, (lower,))
        restart: str | None = None
        try:
            for (key,) in cur:
                rest = key[plen:]
                slash = rest.find("/")
                if slash < 0:
                    if rest and rest > after:
                        out.append(rest)
                        if 0 < limit <= len(out):
                            return out
                    continue
                name = rest[: slash + 1]
                if name > after:
                    out.append(name)
                    if 0 < limit <= len(out):
                        return out
                restart = prefix + rest[:slash] + "0"
                break
        finally:
            cur.close()  # never leave a read statement (and its WAL snapshot) open
        if restart is None:
            return out
        lower = restart


class _Write:
    """One queued put (``value`` is bytes) or delete (``value`` is None)."""

    __slots__ = ("fut", "key", "loop", "value")

    def __init__(
        self, key: str, value: bytes | None, loop: asyncio.AbstractEventLoop, fut: asyncio.Future[None]
    ) -> None:
        self.key = key
        self.value = value
        self.loop = loop
        self.fut = fut


_COMMIT = "commit"
_ROLLBACK = "rollback"
_TxnOp = Callable[[sqlite3.Connection], Any] | str


class _TxnChannel:
    """The pipe between a transaction body (on a loop) and the writer thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.started: asyncio.Future[None] = loop.create_future()
        self.ops: queue.SimpleQueue[tuple[_TxnOp, asyncio.Future[Any] | None]] = queue.SimpleQueue()
        self.lock = threading.Lock()
        self.finished = False

    def submit(self, op: _TxnOp) -> asyncio.Future[Any]:
        fut: asyncio.Future[Any] = self.loop.create_future()
        with self.lock:
            if self.finished:
                raise StorageError("the transaction is already finished")
            self.ops.put((op, fut))
        return fut

    def abort(self) -> None:
        """Ask the writer to roll back (used by close())."""
        with self.lock:
            if not self.finished:
                self.ops.put((_ROLLBACK, None))

    def finish(self) -> None:
        """Called by the writer when it leaves the transaction; fails stragglers."""
        with self.lock:
            self.finished = True
        while True:
            try:
                _op, fut = self.ops.get_nowait()
            except queue.Empty:
                return
            if fut is not None:
                _settle(self.loop, fut, exc=StorageError("the transaction is already finished"))


_STOP = object()
# futures to resolve once the group transaction that holds their writes commits
_Acks = builtins.list[tuple[asyncio.AbstractEventLoop, asyncio.Future[Any]]]


class SqlitePhysical:
    """Durable single-node storage in one SQLite file (see the module docstring)."""

    name = "sqlite"

    def __init__(self, options: dict[str, Any]) -> None:
        raw = options.get("path")
        if not raw or not isinstance(raw, str | os.PathLike):
            raise ValueError('sqlite storage needs a "path"')
        if str(raw) == ":memory:" or str(raw).startswith("file:"):
            raise ValueError('sqlite storage "path" must be a file path (use inmem for memory)')
        path = Path(raw)
        if path.is_dir():  # a Vault raft/file "path" names a directory
            path = path / _DB_FILE_IN_DIR
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not path.exists():  # secrets live here: not world-readable (WAL/SHM inherit the mode)
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        self.path = path
        self.busy_timeout_ms = int(options.get("busy_timeout_ms", _DEFAULT_BUSY_TIMEOUT_MS))

        self._lock = threading.Lock()
        self._closed = False
        self._local = threading.local()
        self._readers: builtins.list[sqlite3.Connection] = []
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._active_txn: _TxnChannel | None = None
        self._requeue_front: object | None = None  # writer thread only
        self._overlap = False  # writer thread only: did writers overlap at the last commit?

        try:
            self._wconn = self._connect()
            self._wconn.execute("PRAGMA journal_mode=WAL")
            self._wconn.execute(_SCHEMA)
            self._wconn.execute("PRAGMA busy_timeout=0")  # the writer waits for the lock itself: _begin
        except sqlite3.Error as exc:
            raise _storage_error("open", exc) from None
        self._writer = threading.Thread(
            target=self._writer_main, name=f"sqlite-writer:{path.name}", daemon=True
        )
        self._writer.start()

    # -- connections ---------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout={self.busy_timeout_ms:d}")
        conn.execute("PRAGMA synchronous=FULL")
        return conn

    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            with self._lock:
                if self._closed:
                    raise StorageError("sqlite storage is closed")
                try:
                    conn = self._connect()
                    conn.execute("PRAGMA query_only=1")
                except sqlite3.Error as exc:
                    raise _storage_error("open", exc) from None
                self._readers.append(conn)
            self._local.conn = conn
        elif self._closed:
            raise StorageError("sqlite storage is closed")
        return conn

    # -- reads (inline) ------------------------------------------------------

    async def get(self, key: str) -> bytes | None:
        check_key(key)
        try:
            return _get(self._reader(), key)
        except sqlite3.Error as exc:
            raise _storage_error("read", exc) from None

    async def list(self, prefix: str) -> builtins.list[str]:
        check_prefix(prefix)
        try:
            return _list(self._reader(), prefix)
        except sqlite3.Error as exc:
            raise _storage_error("list", exc) from None

    async def list_page(self, prefix: str, after: str = "", limit: int = 0) -> builtins.list[str]:
        check_prefix(prefix)
        try:
            return _list(self._reader(), prefix, after, limit)
        except sqlite3.Error as exc:
            raise _storage_error("list", exc) from None

    # -- writes (writer thread, group commit) ----------------------------------

    async def put(self, key: str, value: bytes) -> None:
        check_key(key)
        await self._write(key, bytes(value))

    async def delete(self, key: str) -> None:
        check_key(key)
        await self._write(key, None)

    def _open_transaction(self) -> SqliteTransaction | None:
        """The transaction of this store that the current task is inside, if any."""
        for store, txn in _ACTIVE.get():
            if store is self and isinstance(txn, SqliteTransaction) and not txn._channel.finished:
                return txn
        return None

    def _refuse_inside_own_transaction(self) -> None:
        if self._open_transaction() is not None:
            raise RuntimeError(
                "write through the transaction object inside a transaction (this would deadlock)"
            )

    async def _write(self, key: str, value: bytes | None) -> None:
        self._refuse_inside_own_transaction()
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        self._enqueue(_Write(key, value, loop, fut))
        await fut

    def _enqueue(self, item: object) -> None:
        with self._lock:
            if self._closed:
                raise StorageError("sqlite storage is closed")
            self._queue.put(item)

    # -- transactions --------------------------------------------------------

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[SqliteTransaction]:
        outer = self._open_transaction()
        if outer is not None:
            yield outer  # a nested transaction joins the outer one
            return
        channel = _TxnChannel(asyncio.get_running_loop())
        self._enqueue(channel)
        try:
            await channel.started
        except BaseException:
            channel.abort()  # cancelled while waiting: do not leave the writer waiting for us
            raise
        txn = SqliteTransaction(self, channel)
        token = _ACTIVE.set((*_ACTIVE.get(), (self, txn)))
        try:
            try:
                yield txn
            except BaseException:
                try:
                    await txn._finish(_ROLLBACK)
                except StorageError:  # already finished (closed): the original error matters more
                    pass
                raise
            await txn._finish(_COMMIT)
        finally:
            try:
                _ACTIVE.reset(token)
            except ValueError:  # exited from another context; nothing to undo there
                pass

    # -- writer thread -------------------------------------------------------

    def _writer_main(self) -> None:
        conn = self._wconn
        try:
            while True:
                item = self._queue.get()
                if item is _STOP:
                    return
                if self._should_linger(item):
                    time.sleep(_LINGER_S)
                if not self._group(conn, item):
                    return
        except BaseException:  # pragma: no cover - a bug; fail loudly but do not hang callers
            log.exception("sqlite writer thread crashed")
        finally:
            with self._lock:
                self._closed = True
            self._fail_pending()
            try:
                conn.close()
            except sqlite3.Error:
                log.warning("sqlite close failed", exc_info=True)

    def _should_linger(self, item: object) -> bool:
        """Wait for more writes before committing ``item``?

        Only when writers overlapped at the last commit (several are active: let the
        others' writes join this commit, one fsync and one lock hand-over for many) and
        nothing else is queued yet. A lone sequential writer never waits: its next write
        only comes after this one's ack, so its commits never overlap.
        """
        return self._overlap and isinstance(item, _Write) and self._queue.empty()

    def _group(self, conn: sqlite3.Connection, first: object) -> bool:
        """Run queued writes and transactions back to back inside one SQLite transaction.

        Group commit: each logical transaction (and each run of plain writes) runs in
        a SAVEPOINT of one ``BEGIN IMMEDIATE``; while more work is queued the writer
        keeps going, then commits once (one fsync) and only then acknowledges every
        caller. A logical transaction that rolls back is undone to its savepoint
        alone. Returns False when the store is stopping.
        """
        try:
            self._begin(conn)
        except sqlite3.Error as exc:
            _rollback(conn)
            self._fail_item(first, _storage_error("begin", exc))
            return True
        done: _Acks = []
        self._overlap = False
        item: object | None = first
        count = 0
        while item is not None:
            if isinstance(item, _TxnChannel):
                self._run_transaction(conn, item, done)
            elif isinstance(item, _Write):
                batch = [item]
                size = len(item.value or b"")
                while len(batch) < _MAX_BATCH and size < _MAX_BATCH_BYTES:
                    try:
                        nxt = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if not isinstance(nxt, _Write):
                        self._requeue_front = nxt
                        break
                    batch.append(nxt)
                    size += len(nxt.value or b"")
                self._apply(conn, batch, done)
            count += 1
            item = self._requeue_front
            self._requeue_front = None
            if item is _STOP:
                self._commit(conn, done)
                return False
            if item is None and count < _MAX_BATCH:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    item = None
                if item is _STOP:
                    self._commit(conn, done)
                    return False
        self._commit(conn, done)
        return True

    def _begin(self, conn: sqlite3.Connection) -> None:
        """``BEGIN IMMEDIATE``, waiting for another process's writer in short steps.

        SQLite's own busy handler sleeps 1, 2, 5, 10 ... ms between tries, while another
        process holds the write lock for one group commit (a fraction of a millisecond),
        so two worker processes writing at once left the lock idle most of the time. The
        writer connection therefore has no busy timeout of its own; this retries every
        50 µs to 1 ms (doubling) for up to ``busy_timeout_ms`` in all.
        """
        deadline = time.monotonic() + self.busy_timeout_ms / 1000
        delay = _BUSY_RETRY_FIRST_S
        while True:
            try:
                conn.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc) or time.monotonic() >= deadline:
                    raise
            time.sleep(delay)
            delay = min(delay * 2, _BUSY_RETRY_MAX_S)

    def _commit(self, conn: sqlite3.Connection, done: _Acks) -> None:
        # Writers overlapped if this commit holds several writes, or more are queued before
        # anyone is acknowledged (a sequential writer's next write cannot be queued yet).
        self._overlap = len(done) > 1 or not self._queue.empty()
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            _rollback(conn)
            err = _storage_error("commit", exc)
            for loop, fut in done:
                _settle(loop, fut, exc=err)
            return
        _settle_all(done)

    def _fail_item(self, item: object, err: BaseException) -> None:
        if isinstance(item, _Write):
            _settle(item.loop, item.fut, exc=err)
        elif isinstance(item, _TxnChannel):
            _settle(item.loop, item.started, exc=err)
            item.finish()

    def _fail_pending(self) -> None:
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            self._fail_item(item, StorageError("sqlite storage is closed"))

    def _apply(
        self,
        conn: sqlite3.Connection,
        batch: builtins.list[_Write],
        done: _Acks,
    ) -> None:
        """Apply ``batch`` in a savepoint; on failure retry one by one so one bad write fails alone."""
        try:
            conn.execute("SAVEPOINT w")
            for w in batch:
                if w.value is None:
                    _delete(conn, w.key)
                else:
                    _put(conn, w.key, w.value)
            conn.execute("RELEASE w")
        except Exception as exc:
            _undo_savepoint(conn, "w")
            if len(batch) > 1:
                for w in batch:
                    self._apply(conn, [w], done)
            else:
                _settle(batch[0].loop, batch[0].fut, exc=_storage_error("write", exc))
            return
        done.extend((w.loop, w.fut) for w in batch)

    def _run_transaction(
        self,
        conn: sqlite3.Connection,
        channel: _TxnChannel,
        done: _Acks,
    ) -> None:
        """Serve one transaction body, in a savepoint, until it commits or rolls back."""
        self._active_txn = channel
        try:
            try:
                conn.execute("SAVEPOINT t")
            except sqlite3.Error as exc:
                _settle(channel.loop, channel.started, exc=_storage_error("begin", exc))
                return
            _settle(channel.loop, channel.started)
            failed = False
            while True:
                op, fut = channel.ops.get()
                if op == _ROLLBACK:
                    _undo_savepoint(conn, "t")
                    if fut is not None:
                        _settle(channel.loop, fut)
                    return
                if op == _COMMIT:
                    assert fut is not None
                    if failed:
                        _undo_savepoint(conn, "t")
                        err = StorageError("transaction rolled back after a failed operation")
                        _settle(channel.loop, fut, exc=err)
                        return
                    try:
                        conn.execute("RELEASE t")
                    except sqlite3.Error as exc:
                        _undo_savepoint(conn, "t")
                        _settle(channel.loop, fut, exc=_storage_error("commit", exc))
                        return
                    done.append((channel.loop, fut))  # acknowledged once the group commits
                    return
                assert callable(op) and fut is not None
                try:
                    result = op(conn)
                except sqlite3.Error as exc:
                    failed = True  # SQLite may have undone part of it: never commit the rest
                    _settle(channel.loop, fut, exc=_storage_error("transaction", exc))
                except Exception as exc:
                    _settle(channel.loop, fut, exc=exc)
                else:
                    _settle(channel.loop, fut, result)
        finally:
            self._active_txn = None
            channel.finish()

    # -- lifecycle -------------------------------------------------------------

    async def close(self) -> None:
        """Finish queued writes, stop the writer, close every connection."""
        with self._lock:
            if self._closed:
                already = True
            else:
                already = False
                self._closed = True
                self._queue.put(_STOP)
        if not already:
            channel = self._active_txn
            if channel is not None:
                channel.abort()
        if self._writer.is_alive() and threading.current_thread() is not self._writer:
            await asyncio.get_running_loop().run_in_executor(None, self._writer.join)
        with self._lock:
            readers, self._readers = self._readers, []
        for conn in readers:
            try:
                conn.close()
            except sqlite3.Error:
                log.warning("sqlite close failed", exc_info=True)


class SqliteTransaction:
    """A Storage whose every statement runs on the store's writer thread."""

    def __init__(self, store: SqlitePhysical, channel: _TxnChannel) -> None:
        self._store = store
        self._channel = channel

    async def _call(self, op: Callable[[sqlite3.Connection], T]) -> T:
        result: T = await self._channel.submit(op)
        return result

    async def _finish(self, how: str) -> None:
        await self._channel.submit(how)

    async def get(self, key: str) -> bytes | None:
        check_key(key)
        return await self._call(lambda conn: _get(conn, key))

    async def put(self, key: str, value: bytes) -> None:
        check_key(key)
        data = bytes(value)
        await self._call(lambda conn: _put(conn, key, data))

    async def delete(self, key: str) -> None:
        check_key(key)
        await self._call(lambda conn: _delete(conn, key))

    async def list(self, prefix: str) -> builtins.list[str]:
        check_prefix(prefix)
        return await self._call(lambda conn: _list(conn, prefix))

    async def list_page(self, prefix: str, after: str = "", limit: int = 0) -> builtins.list[str]:
        check_prefix(prefix)
        return await self._call(lambda conn: _list(conn, prefix, after, limit))

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[SqliteTransaction]:
        yield self  # nested transactions join the outer one
