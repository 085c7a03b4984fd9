"""Single-use ACME Replay-Nonces (RFC 8555 §6.5), shared by all worker processes of a node.

A node forks one HTTP worker per CPU, and a client may fetch a nonce from one worker and
spend it at another, so the table lives in an anonymous shared memory map created before
the fork (like :class:`strongroom.core.sync.SharedGenerations`). Layout::

    [counter u64][slot 0: n u64, issued f64] ... [slot S-1]

``issue`` takes the next counter value n, records it (and the time) in slot ``n % S`` and
hands out ``b64url(n || HMAC-SHA256(secret, n)[:16])``. ``redeem`` checks the MAC first,
so forged or guessed nonces never touch the table, then clears the slot if it still holds
n: a nonce is accepted once, and forgotten after S newer issues or ``max_age`` seconds.

The lock is an ``fcntl`` record lock on an unlinked temporary file (plus a thread lock,
since record locks only exclude other processes): the kernel drops it if a worker dies
holding it, where a semaphore would stay taken and wedge every other worker.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import mmap
import os
import secrets
import struct
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from strongroom.engines.pki.acme.jws import b64url_decode, b64url_encode
from strongroom.engines.pki.acme.problems import AcmeProblem

_COUNTER = struct.Struct("<Q")
_SLOT = struct.Struct("<Qd")  # nonce number, issue time (time.monotonic, system-wide on Linux)
_MAC_BYTES = 16
_NONCE_CHARS = 32  # base64url of 8 + 16 bytes
DEFAULT_MAX_AGE = 3600.0

_tables: weakref.WeakSet[NonceTable] = weakref.WeakSet()


class NonceTable:
    """Replay-Nonces any process forked after construction can issue and redeem."""

    def __init__(
        self,
        slots: int = 65536,
        max_age: float = DEFAULT_MAX_AGE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if slots < 1:
            raise ValueError("a nonce table needs at least one slot")
        self.slots = slots
        self.max_age = max_age
        self._clock = clock
        self._secret = secrets.token_bytes(32)
        self._mm = mmap.mmap(-1, _COUNTER.size + _SLOT.size * slots)  # MAP_SHARED: survives fork
        self._lockfile = tempfile.TemporaryFile()  # lives (open) as long as the table
        self._thread_lock = threading.Lock()
        _tables.add(self)

    def _reset_thread_lock(self) -> None:
        self._thread_lock = threading.Lock()  # a forked child may inherit it held by a dead thread

    @contextmanager
    def _locked(self) -> Iterator[None]:
        with self._thread_lock:
            fcntl.lockf(self._lockfile.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.lockf(self._lockfile.fileno(), fcntl.LOCK_UN)

    def _mac(self, number: bytes) -> bytes:
        return hmac.new(self._secret, number, hashlib.sha256).digest()[:_MAC_BYTES]

    def issue(self) -> str:
        """A fresh nonce, valid once at any process of this node."""
        now = self._clock()
        with self._locked():
            (n,) = _COUNTER.unpack_from(self._mm, 0)
            n += 1
            _COUNTER.pack_into(self._mm, 0, n)
            _SLOT.pack_into(self._mm, _COUNTER.size + (n % self.slots) * _SLOT.size, n, now)
        number = n.to_bytes(8, "big")
        return b64url_encode(number + self._mac(number))

    def redeem(self, nonce: Any) -> bool:
        """True exactly once for a nonce this table issued, if not expired; never raises."""
        if not isinstance(nonce, str) or len(nonce) != _NONCE_CHARS:
            return False
        try:
            raw = b64url_decode(nonce)
        except AcmeProblem:
            return False
        number, mac = raw[:8], raw[8:]
        if not hmac.compare_digest(mac, self._mac(number)):
            return False
        n = int.from_bytes(number, "big")
        offset = _COUNTER.size + (n % self.slots) * _SLOT.size
        now = self._clock()
        with self._locked():
            stored, issued = _SLOT.unpack_from(self._mm, offset)
            if stored != n:
                return False  # used, or overwritten by a newer nonce: expired
            _SLOT.pack_into(self._mm, offset, 0, 0.0)
        return now - float(issued) <= self.max_age


_local: NonceTable | None = None
_local_lock = threading.Lock()


def _after_fork_in_child() -> None:
    global _local_lock
    _local_lock = threading.Lock()
    for table in list(_tables):
        table._reset_thread_lock()


os.register_at_fork(after_in_child=_after_fork_in_child)


def nonce_table(core: Any | None) -> NonceTable:
    """The node's shared table (``core.acme_nonces``), else one table for this process.

    The fallback serves single-process servers and unit tests; a supervised node always
    sets ``acme_nonces`` before forking its workers.
    """
    shared = getattr(core, "acme_nonces", None)
    if isinstance(shared, NonceTable):
        return shared
    global _local
    with _local_lock:
        if _local is None:
            _local = NonceTable()
        return _local
