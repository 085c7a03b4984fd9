"""The encryption barrier: everything above it sees plaintext, everything below it ciphertext.

Why: the physical store is untrusted (security model §1). Every value is
encrypted with AES-256-GCM before it leaves the process, and the storage path
is the associated data, so a ciphertext copied under another key, or changed in
any byte, fails to decrypt instead of returning garbage.

Stored layout (Vault's version 2)::

    [4-byte big-endian key term][0x02][12-byte random nonce][ciphertext || 16-byte tag]

Key chain: the root key (kept encrypted by the seal, never stored by the
barrier) encrypts the keyring at ``core/keyring`` (same layout with term 0 and
AAD ``b"core/keyring"``); the keyring holds one 256-bit data key per term and
the newest term encrypts new writes. Keys are not secret, so ``list`` and
``delete`` pass straight through.

While sealed the barrier holds no key material and every storage call raises
``Sealed``. Zeroing is best effort: Python and OpenSSL may keep copies that we
cannot reach, which is why the deployment disables swap and core dumps.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from strongroom.logical.errors import NotInitialized, Sealed, StrongroomError
from strongroom.logical.storage import Storage

__all__ = ["KEYRING_PATH", "Barrier", "BarrierError", "decrypt_with", "encrypt_with"]

KEYRING_PATH = "core/keyring"
_KEYRING_AAD = KEYRING_PATH.encode()
_ROOT_TERM = 0  # the term number marking "encrypted by the root key"
_VERSION = 2
_KEY_SIZE = 32
_NONCE_SIZE = 12
_TAG_SIZE = 16
_HEADER_SIZE = 4 + 1
_MAX_TERM = 0xFFFFFFFF

# Inside Barrier, ``list`` names the method, so annotations there use this alias.
_Names = list[str]


class BarrierError(StrongroomError):
    """Decryption or keyring failure. Messages never contain key material or values."""


# --- raw AES-256-GCM helpers -------------------------------------------------------------------


def _aead(key: bytes | bytearray) -> AESGCM:
    if len(key) != _KEY_SIZE:
        raise BarrierError("invalid key length")
    return AESGCM(bytes(key))


def _encrypt(aead: AESGCM, aad: bytes, plaintext: bytes) -> bytes:
    nonce = os.urandom(_NONCE_SIZE)  # if the RNG fails, the write fails
    return nonce + aead.encrypt(nonce, plaintext, aad)


def _decrypt(aead: AESGCM, aad: bytes, blob: bytes | memoryview) -> bytes:
    if len(blob) < _NONCE_SIZE + _TAG_SIZE:
        raise BarrierError("ciphertext too short")
    try:
        return aead.decrypt(bytes(blob[:_NONCE_SIZE]), bytes(blob[_NONCE_SIZE:]), aad)
    except InvalidTag:
        raise BarrierError("failed to decrypt value") from None


def encrypt_with(key: bytes, aad: bytes, plaintext: bytes) -> bytes:
    """AES-256-GCM under ``key``: ``nonce || ciphertext || tag`` (used by the seal)."""
    return _encrypt(_aead(key), aad, plaintext)


def decrypt_with(key: bytes, aad: bytes, blob: bytes) -> bytes:
    """Inverse of ``encrypt_with``; raises ``BarrierError`` on a wrong key, AAD or any change."""
    return _decrypt(_aead(key), aad, blob)


def _envelope(term: int, aead: AESGCM, aad: bytes, plaintext: bytes) -> bytes:
    return term.to_bytes(4, "big") + bytes((_VERSION,)) + _encrypt(aead, aad, plaintext)


def _split_envelope(raw: bytes) -> tuple[int, memoryview]:
    if len(raw) < _HEADER_SIZE + _NONCE_SIZE + _TAG_SIZE:
        raise BarrierError("ciphertext too short")
    if raw[4] != _VERSION:
        raise BarrierError("unsupported ciphertext version")
    return int.from_bytes(raw[:4], "big"), memoryview(raw)[_HEADER_SIZE:]


def _rfc3339_now() -> str:
    """UTC time with nanoseconds, trailing zeros trimmed, like Go's RFC3339Nano."""
    ns = time.time_ns()
    seconds, frac = divmod(ns, 1_000_000_000)
    text = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    digits = f"{frac:09d}".rstrip("0")
    return f"{text}.{digits}Z" if digits else f"{text}Z"


# --- keyring -----------------------------------------------------------------------------------


class _Term:
    """One data key; the AESGCM object is cached because every request decrypts."""

    __slots__ = ("aead", "install_time", "key", "term")

    def __init__(self, term: int, key: bytes | bytearray, install_time: str) -> None:
        if len(key) != _KEY_SIZE:
            raise BarrierError("invalid keyring entry")
        self.term = term
        self.key = bytearray(key)
        self.install_time = install_time
        self.aead = AESGCM(bytes(self.key))

    def wipe(self) -> None:
        self.key[:] = bytes(len(self.key))


class _Keyring:
    """The data keys by term plus the active term."""

    __slots__ = ("active", "encryptions", "terms")

    def __init__(self, terms: dict[int, _Term], active: int) -> None:
        if active not in terms:
            raise BarrierError("invalid keyring")
        self.terms = terms
        self.active = active
        self.encryptions = 0

    def to_json(self) -> bytes:
        doc = {
            "active_term": self.active,
            "keys": [
                {
                    "term": t.term,
                    "key": base64.b64encode(bytes(t.key)).decode(),
                    "install_time": t.install_time,
                }
                for t in sorted(self.terms.values(), key=lambda t: t.term)
            ],
        }
        return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()

    @classmethod
    def from_doc(cls, doc: Any) -> _Keyring:
        try:
            terms: dict[int, _Term] = {}
            for entry in doc["keys"]:
                term = entry["term"]
                if not isinstance(term, int) or not 0 < term <= _MAX_TERM or term in terms:
                    raise BarrierError("invalid keyring")
                key = base64.b64decode(entry["key"], validate=True)
                terms[term] = _Term(term, key, str(entry["install_time"]))
            active = doc["active_term"]
        except (KeyError, TypeError, ValueError, binascii.Error):
            raise BarrierError("invalid keyring") from None
        if not isinstance(active, int):
            raise BarrierError("invalid keyring")
        return cls(terms, active)

    @classmethod
    def from_json(cls, raw: bytes) -> _Keyring:
        try:
            doc = json.loads(raw)
        except ValueError:
            raise BarrierError("invalid keyring") from None
        return cls.from_doc(doc)

    def merged_with(self, other: _Keyring) -> _Keyring:
        """Union of two keyrings of the same barrier; the higher active term wins.

        Entries of ``other`` that duplicate ours are wiped: ``other`` is a fresh copy.
        """
        terms = dict(self.terms)
        for term, entry in other.terms.items():
            mine = terms.get(term)
            if mine is None:
                terms[term] = entry
            elif hmac.compare_digest(bytes(mine.key), bytes(entry.key)):
                entry.wipe()
            else:
                raise BarrierError("conflicting keyring terms")
        merged = _Keyring(terms, max(self.active, other.active))
        merged.encryptions = self.encryptions if merged.active == self.active else 0
        return merged

    def wipe(self) -> None:
        for entry in self.terms.values():
            entry.wipe()
        self.terms.clear()


class _Unsealed:
    """Everything held only while unsealed."""

    __slots__ = ("keyring", "root_aead", "root_key")

    def __init__(self, root_key: bytes | bytearray, keyring: _Keyring) -> None:
        self.root_key = bytearray(root_key)
        self.root_aead = AESGCM(bytes(self.root_key))
        self.keyring = keyring

    def wipe(self) -> None:
        self.root_key[:] = bytes(len(self.root_key))
        self.keyring.wipe()


class _Shared:
    """State shared by a barrier and its transaction views: sealing one seals all."""

    __slots__ = ("lock", "state")

    def __init__(self) -> None:
        self.state: _Unsealed | None = None
        self.lock = asyncio.Lock()  # serialises keyring writes within this process


def _check_root_key(root_key: bytes) -> None:
    if not isinstance(root_key, bytes | bytearray) or len(root_key) != _KEY_SIZE:
        raise ValueError("root key must be 32 bytes")


def _decrypt_keyring(root_key: bytes | bytearray, raw: bytes) -> _Keyring:
    term, body = _split_envelope(raw)
    if term != _ROOT_TERM:
        raise BarrierError("failed to decrypt keyring")
    try:
        plaintext = _decrypt(AESGCM(bytes(root_key)), _KEYRING_AAD, body)
    except BarrierError:
        raise BarrierError("failed to decrypt keyring") from None
    return _Keyring.from_json(plaintext)


# --- the barrier -------------------------------------------------------------------------------


class Barrier:
    """A ``Storage`` that encrypts every value on its way to ``physical``.

    It adds no prefix: callers scope engines with ``PrefixView``. One instance
    per process; other processes sharing the physical store pick up keyring
    rotations the first time they meet an unknown term.
    """

    def __init__(self, physical: Storage) -> None:
        self._physical = physical
        self._shared = _Shared()
        self._in_transaction = False

    @classmethod
    def _view(cls, physical: Storage, shared: _Shared) -> Barrier:
        view = cls.__new__(cls)
        view._physical = physical
        view._shared = shared
        view._in_transaction = True
        return view

    def _outside_transaction(self) -> None:
        # A keyring written inside a transaction that rolls back would leave the
        # in-memory keyring ahead of storage, and values written with the lost term
        # unreadable after a restart.
        if self._in_transaction:
            raise BarrierError("keyring changes are not allowed inside a transaction")

    # -- lifecycle --

    @property
    def sealed(self) -> bool:
        return self._shared.state is None

    def _state(self) -> _Unsealed:
        state = self._shared.state
        if state is None:
            raise Sealed()
        return state

    async def is_initialized(self) -> bool:
        return await self._physical.get(KEYRING_PATH) is not None

    async def initialize(self, root_key: bytes) -> None:
        """Write a new keyring (term 1) encrypted by ``root_key``. Leaves the barrier sealed."""
        _check_root_key(root_key)
        self._outside_transaction()
        async with self._shared.lock:
            if await self.is_initialized():
                raise ValueError("barrier is already initialized")
            keyring = _Keyring({1: _Term(1, os.urandom(_KEY_SIZE), _rfc3339_now())}, 1)
            try:
                await self._write_keyring(AESGCM(bytes(root_key)), keyring)
            finally:
                keyring.wipe()

    async def unseal(self, root_key: bytes) -> None:
        """Decrypt the keyring with ``root_key`` and keep both in memory."""
        _check_root_key(root_key)
        raw = await self._physical.get(KEYRING_PATH)
        if raw is None:
            raise NotInitialized()
        keyring = _decrypt_keyring(root_key, raw)
        old = self._shared.state
        self._shared.state = _Unsealed(root_key, keyring)
        if old is not None:
            old.wipe()

    def seal(self) -> None:
        """Forget every key; all storage calls raise ``Sealed`` from now on."""
        state, self._shared.state = self._shared.state, None
        if state is not None:
            state.wipe()

    # -- keyring management --

    async def _write_keyring(self, root_aead: AESGCM, keyring: _Keyring) -> None:
        blob = _envelope(_ROOT_TERM, root_aead, _KEYRING_AAD, keyring.to_json())
        await self._physical.put(KEYRING_PATH, blob)

    async def _read_keyring(self, state: _Unsealed) -> _Keyring:
        raw = await self._physical.get(KEYRING_PATH)
        if raw is None:
            raise BarrierError("keyring is missing")
        return _decrypt_keyring(state.root_key, raw)

    async def reload_keyring(self) -> None:
        """Re-read ``core/keyring`` with the in-memory root key (another process may have rotated)."""
        async with self._shared.lock:
            state = self._state()
            stored = await self._read_keyring(state)
            if self._shared.state is state:  # not sealed or re-unsealed meanwhile
                state.keyring = state.keyring.merged_with(stored)

    async def rotate(self) -> int:
        """Add a new data key, make it active, persist the keyring; return the new term.

        Across processes this relies on the HA lock: only the active node rotates.
        """
        self._outside_transaction()
        async with self._shared.lock:
            state = self._state()
            current = state.keyring.merged_with(await self._read_keyring(state))
            term = max(current.terms) + 1
            if term > _MAX_TERM:
                raise BarrierError("keyring term space exhausted")
            terms = dict(current.terms)
            terms[term] = _Term(term, os.urandom(_KEY_SIZE), _rfc3339_now())
            rotated = _Keyring(terms, term)
            await self._write_keyring(state.root_aead, rotated)
            if self._shared.state is state:
                state.keyring = rotated
            else:  # sealed meanwhile: keep nothing
                terms[term].wipe()
            return term

    async def rekey_root(self, new_root_key: bytes) -> None:
        """Re-encrypt the keyring under ``new_root_key``, which replaces the old one in memory."""
        _check_root_key(new_root_key)
        self._outside_transaction()
        async with self._shared.lock:
            state = self._state()
            current = state.keyring.merged_with(await self._read_keyring(state))
            new_state = _Unsealed(new_root_key, current)
            await self._write_keyring(new_state.root_aead, current)
            if self._shared.state is state:
                self._shared.state = new_state
                state.root_key[:] = bytes(len(state.root_key))
            else:  # sealed meanwhile: keep nothing
                new_state.root_key[:] = bytes(len(new_state.root_key))

    def key_status(self) -> dict[str, Any]:
        """``sys/key-status``: active term, its install time and encryptions since unseal."""
        keyring = self._state().keyring
        active = keyring.terms[keyring.active]
        return {
            "term": keyring.active,
            "install_time": active.install_time,
            "encryptions": keyring.encryptions,
        }

    def export_keyring(self) -> bytes:
        """Serialise the root key and keyring for a worker process.

        The blob is PLAINTEXT KEY MATERIAL: only pass it over a private local pipe
        to a process of the same deployment, never log, store or send it elsewhere.
        """
        state = self._state()
        doc = {
            "root_key": base64.b64encode(bytes(state.root_key)).decode(),
            "keyring": json.loads(state.keyring.to_json()),
        }
        return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()

    def load_keyring(self, root_key: bytes, blob: bytes) -> None:
        """Unseal from an ``export_keyring`` blob; ``root_key`` must be the one it carries."""
        _check_root_key(root_key)
        try:
            doc = json.loads(blob)
            embedded = base64.b64decode(doc["root_key"], validate=True)
            keyring = _Keyring.from_doc(doc["keyring"])
        except (KeyError, TypeError, ValueError, binascii.Error):
            raise BarrierError("invalid keyring export") from None
        if not hmac.compare_digest(embedded, bytes(root_key)):
            keyring.wipe()
            raise BarrierError("root key does not match the keyring export")
        old = self._shared.state
        self._shared.state = _Unsealed(root_key, keyring)
        if old is not None:
            old.wipe()

    # -- Storage --

    async def get(self, key: str) -> bytes | None:
        state = self._state()
        raw = await self._physical.get(key)
        if raw is None:
            return None
        term, body = _split_envelope(raw)
        entry = state.keyring.terms.get(term)
        if entry is None:
            await self.reload_keyring()
            entry = self._state().keyring.terms.get(term)
            if entry is None:
                raise BarrierError("unknown key term")
        return _decrypt(entry.aead, key.encode(), body)

    async def put(self, key: str, value: bytes) -> None:
        keyring = self._state().keyring
        entry = keyring.terms[keyring.active]
        blob = _envelope(entry.term, entry.aead, key.encode(), value)
        keyring.encryptions += 1
        await self._physical.put(key, blob)

    async def delete(self, key: str) -> None:
        self._state()
        await self._physical.delete(key)

    async def list(self, prefix: str) -> _Names:
        self._state()
        return await self._physical.list(prefix)

    async def list_page(self, prefix: str, after: str = "", limit: int = 0) -> _Names:
        self._state()
        return await self._physical.list_page(prefix, after, limit)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Barrier]:
        """A barrier over ``physical.transaction()`` sharing this barrier's keys."""
        self._state()
        async with self._physical.transaction() as txn:
            yield Barrier._view(txn, self._shared)
