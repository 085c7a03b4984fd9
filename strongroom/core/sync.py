"""Cache invalidation across the worker processes of one node.

Each process caches what every request reads (token entries, compiled ACLs,
the mount table). A write in one process must be seen by all others before
they answer their next request, so every process owns one row of counters in
an anonymous shared memory map created before the workers fork; a writer bumps
its own row (no lock: one writer per row) after its storage write, and every
request compares the column sums with what its process last saw.
"""

from __future__ import annotations

import mmap
import struct
from enum import IntEnum


class Kind(IntEnum):
    TOKENS = 0
    POLICIES = 1
    MOUNTS = 2
    SEAL = 3
    ENGINE = 4  # engines' own caches (PKI roles, ...): bumped on write, compared on read


_KINDS = len(Kind)
_CELL = struct.Struct("<Q")


class SharedGenerations:
    """Per-process generation counters in shared memory (create before fork)."""

    def __init__(self, processes: int) -> None:
        self.processes = processes
        self._mm = mmap.mmap(-1, _CELL.size * _KINDS * processes)
        self._row = 0
        self._seen = [0] * _KINDS
        self._all = struct.Struct(f"<{_KINDS * processes}Q")

    def attach(self, row: int) -> None:
        """Called in each process after fork: which row this process writes."""
        if not 0 <= row < self.processes:
            raise ValueError("row out of range")
        self._row = row
        self._seen = self._totals()

    def bump(self, kind: Kind) -> None:
        offset = (self._row * _KINDS + kind) * _CELL.size
        (value,) = _CELL.unpack_from(self._mm, offset)
        _CELL.pack_into(self._mm, offset, value + 1)
        self._seen[kind] += 1  # our own write needs no invalidation here

    def acknowledge(self, kind: Kind) -> None:
        """Mark every change of ``kind`` so far as seen (e.g. seals before an unseal)."""
        self._seen[kind] = self._totals()[kind]

    def total(self, kind: Kind) -> int:
        """The node-wide count of ``kind`` changes (for caches that compare it themselves)."""
        return self._totals()[kind]

    def _totals(self) -> list[int]:
        cells = self._all.unpack_from(self._mm, 0)
        return [sum(cells[k::_KINDS]) for k in range(_KINDS)]

    def pending(self) -> bool:
        """Whether another process wrote something this process has not marked seen (no side effect)."""
        return self._totals() != self._seen

    def changed(self) -> list[Kind]:
        """Kinds written by another process since this process last looked."""
        totals = self._totals()
        if totals == self._seen:
            return []
        out = [Kind(k) for k in range(_KINDS) if totals[k] != self._seen[k]]
        self._seen = totals
        return out
