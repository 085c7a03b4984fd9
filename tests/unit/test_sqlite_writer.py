"""SQLite's writer: group commit under concurrent writes, and writers of two processes taking turns.

Two SqlitePhysical objects on one file stand in for two worker processes: each has
its own writer connection, so they contend for SQLite's write lock exactly as two
processes do. Nothing here asserts a duration.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

import strongroom.physical.sqlite as sqlite_module
from strongroom.logical.storage import StorageError
from strongroom.physical.sqlite import SqlitePhysical


async def test_two_writers_on_one_file_take_turns(tmp_path: Path) -> None:
    one = SqlitePhysical({"path": str(tmp_path / "s.db")})
    two = SqlitePhysical({"path": str(tmp_path / "s.db")})
    try:

        async def write(store: SqlitePhysical, tag: str, count: int) -> None:
            await asyncio.gather(*(store.put(f"k/{tag}/{i:03d}", tag.encode() * 100) for i in range(count)))

        for _ in range(5):
            await asyncio.gather(write(one, "a", 40), write(two, "b", 40))
        assert len(await one.list("k/a/")) == 40 and len(await two.list("k/b/")) == 40
        assert await two.get("k/a/039") == b"a" * 100
    finally:
        await one.close()
        await two.close()


async def test_a_writer_waits_for_a_lock_held_by_the_other(tmp_path: Path) -> None:
    holder = SqlitePhysical({"path": str(tmp_path / "s.db")})
    waiter = SqlitePhysical({"path": str(tmp_path / "s.db")})
    try:
        async with holder.transaction() as txn:
            await txn.put("held", b"1")
            pending = asyncio.ensure_future(waiter.put("after", b"2"))
            await asyncio.sleep(0.05)  # the waiter retries BEGIN IMMEDIATE meanwhile
            assert not pending.done()
        await pending
        assert await waiter.get("held") == b"1" and await holder.get("after") == b"2"
    finally:
        await holder.close()
        await waiter.close()


async def test_the_wait_for_the_lock_is_bounded(tmp_path: Path) -> None:
    holder = SqlitePhysical({"path": str(tmp_path / "s.db")})
    waiter = SqlitePhysical({"path": str(tmp_path / "s.db"), "busy_timeout_ms": 50})
    try:
        async with holder.transaction() as txn:
            await txn.put("held", b"1")
            with pytest.raises(StorageError, match="begin"):
                await waiter.put("after", b"2")
    finally:
        await holder.close()
        await waiter.close()


async def test_concurrent_writes_share_commits_and_a_sequential_writer_never_lingers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = SqlitePhysical({"path": str(tmp_path / "s.db")})
    overlaps: list[bool] = []  # per commit: did writers overlap?
    settle_all = sqlite_module._settle_all

    def recording_settle_all(acks: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]]) -> None:
        overlaps.append(store._overlap)  # decided by the commit, before anyone is acknowledged
        settle_all(acks)

    monkeypatch.setattr(sqlite_module, "_settle_all", recording_settle_all)
    try:
        for i in range(20):
            await store.put(f"seq/{i}", b"x")
        assert overlaps == [False] * 20  # one commit per write, and never a reason to wait
        assert not store._should_linger(sqlite_module._Write("k", b"v", None, None))  # type: ignore[arg-type]

        overlaps.clear()
        for wave in range(3):
            await asyncio.gather(*(store.put(f"par/{wave}/{i}", b"y") for i in range(64)))
        assert len(overlaps) < 3 * 64 and any(overlaps)  # writes shared commits
        assert len(await store.list("par/0/")) == 64
    finally:
        await store.close()


def test_a_write_lingers_only_after_overlapping_writers_and_with_nothing_queued(tmp_path: Path) -> None:
    store = SqlitePhysical({"path": str(tmp_path / "s.db")})
    try:
        write = sqlite_module._Write("k", b"v", None, None)  # type: ignore[arg-type]
        assert not store._should_linger(write)
        store._overlap = True
        assert store._should_linger(write)
        assert not store._should_linger(object())  # a transaction never waits
        store._queue.put(sqlite_module._Write("other", b"v", None, None))  # type: ignore[arg-type]
        assert not store._should_linger(write)  # something to commit with already
    finally:
        store._overlap = False
        store._queue.get_nowait()
        asyncio.run(store.close())
