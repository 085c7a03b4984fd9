"""Physical storage: the untrusted byte store under the barrier.

A physical backend satisfies :class:`strongroom.logical.storage.Storage` over
opaque bytes (the barrier's ciphertext). Every backend passes the same
conformance suite (``tests/conformance/test_storage.py``).
"""

from __future__ import annotations

from typing import Any, Protocol

from strongroom.logical.storage import Storage


class Physical(Storage, Protocol):
    """A Storage that can also be closed; ``name`` is reported in seal-status."""

    name: str

    async def close(self) -> None: ...


def open_physical(kind: str, options: dict[str, Any]) -> Physical:
    """Build a physical backend from a config ``storage "<kind>" { ... }`` block."""
    if kind == "inmem":
        from strongroom.physical.inmem import InmemPhysical

        return InmemPhysical()
    if kind in ("sqlite", "file", "raft"):
        from strongroom.physical.sqlite import SqlitePhysical

        return SqlitePhysical(options)
    if kind in ("postgresql", "postgres"):
        from strongroom.physical.postgresql import PostgresPhysical

        return PostgresPhysical(options)
    raise ValueError(f"unknown storage type {kind!r}")
