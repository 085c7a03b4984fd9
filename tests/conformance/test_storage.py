"""The storage conformance suite: every physical backend must behave like the contract.

Each behaviour has one test body, run over inmem, sqlite and a real PostgreSQL
(see conftest.py). Backend-specific checks (durability after kill -9, Vault's
table layout, index use) follow at the end.
"""

from __future__ import annotations

import asyncio
import os
import random
import select
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from strongroom.logical.storage import StorageError, children, page
from strongroom.physical.base import Physical
from strongroom.physical.postgresql import PostgresPhysical, TransactionConflict, split_key
from strongroom.physical.sqlite import SqlitePhysical, _list

INVALID_KEYS = ["", "/a", "a/../b", "a\x00", "./a", "a/."]

# -- single keys -------------------------------------------------------------------


async def test_put_get_overwrite_delete(store: Physical) -> None:
    await store.put("a", b"one")
    assert await store.get("a") == b"one"
    await store.put("a", b"two")
    assert await store.get("a") == b"two"
    await store.delete("a")
    assert await store.get("a") is None
    assert await store.list("") == []


async def test_get_missing_is_none(store: Physical) -> None:
    assert await store.get("missing") is None
    assert await store.get("no/such/deep/key") is None


async def test_delete_missing_is_noop(store: Physical) -> None:
    await store.delete("missing")
    await store.delete("no/such/key")
    await store.put("x", b"1")
    await store.delete("x")
    await store.delete("x")
    assert await store.get("x") is None


async def test_binary_values(store: Physical) -> None:
    big = random.Random(7).randbytes(1024 * 1024)
    values = {
        "empty": b"",
        "all-bytes": bytes(range(256)),
        "nul": b"\x00",
        "big": big,
        "from/bytearray": bytearray(b"\x00\xff\x80"),
        "from/memoryview": memoryview(b"view\x00bytes"),
    }
    for key, value in values.items():
        await store.put(key, value)  # type: ignore[arg-type]
    for key, value in values.items():
        got = await store.get(key)
        assert type(got) is bytes
        assert got == bytes(value)


async def test_keys_with_unicode_and_spaces(store: Physical) -> None:
    keys = [
        "with space",
        "ünïcødé/ключ",
        "emoji/🔑 key",
        "tab\there",
        "private\ue000",
        "astral/😀",
        "q'uote\"s",
    ]
    for i, key in enumerate(keys):
        await store.put(key, str(i).encode())
    for i, key in enumerate(keys):
        assert await store.get(key) == str(i).encode()
    root = await store.list("")
    assert root == sorted(root)
    assert root == ["astral/", "emoji/", "private\ue000", "q'uote\"s", "tab\there", "with space", "ünïcødé/"]
    assert await store.list("ünïcødé/") == ["ключ"]
    assert await store.list("emoji/") == ["🔑 key"]


@pytest.mark.parametrize("key", INVALID_KEYS)
async def test_invalid_keys_raise_value_error(store: Physical, key: str) -> None:
    with pytest.raises(ValueError):
        await store.get(key)
    with pytest.raises(ValueError):
        await store.put(key, b"v")
    with pytest.raises(ValueError):
        await store.delete(key)
    async with store.transaction() as txn:
        with pytest.raises(ValueError):
            await txn.get(key)
        with pytest.raises(ValueError):
            await txn.put(key, b"v")
        with pytest.raises(ValueError):
            await txn.delete(key)
    assert await store.list("") == []


@pytest.mark.parametrize("prefix", ["a", "/", "/a/", "a/../", "a\x00/", "a/b"])
async def test_invalid_prefixes_raise_value_error(store: Physical, prefix: str) -> None:
    with pytest.raises(ValueError):
        await store.list(prefix)
    with pytest.raises(ValueError):
        await store.list_page(prefix)


# -- listing -------------------------------------------------------------------------


async def test_list_root_and_nested(store: Physical) -> None:
    for key in ["b", "a/x", "a/y/z", "a/y/w/v", "c/d", "a/y", "aa", "a/x/deep"]:
        await store.put(key, b"v")
    assert await store.list("") == ["a/", "aa", "b", "c/"]
    assert await store.list("a/") == ["x", "x/", "y", "y/"]
    assert await store.list("a/y/") == ["w/", "z"]
    assert await store.list("a/y/w/") == ["v"]
    assert await store.list("c/") == ["d"]


async def test_list_without_children_is_empty(store: Physical) -> None:
    assert await store.list("") == []
    assert await store.list("nothing/") == []
    await store.put("leaf", b"v")
    assert await store.list("leaf/") == []
    await store.put("dir/sub/k", b"v")
    await store.delete("dir/sub/k")
    assert await store.list("dir/") == []
    assert await store.list("") == ["leaf"]


async def test_list_excludes_prefix_siblings(store: Physical) -> None:
    for key in ["foo/bar", "foo/baz/q", "foobar", "foo0", "foo.", "foo!/x", "foo-/y", "fo/o", "foo"]:
        await store.put(key, b"v")
    assert await store.list("foo/") == ["bar", "baz/"]
    assert await store.list("") == ["fo/", "foo", "foo!/", "foo-/", "foo.", "foo/", "foo0", "foobar"]


async def test_list_treats_like_wildcards_literally(store: Physical) -> None:
    for key in ["a_b/x", "aXb/y", "a%b/z", "a\\b/w", "a_b_/deep/v", "a%/q", "ab/r"]:
        await store.put(key, b"v")
    assert await store.list("a_b/") == ["x"]
    assert await store.list("a%b/") == ["z"]
    assert await store.list("a\\b/") == ["w"]
    assert await store.list("a%/") == ["q"]
    assert await store.list("a_b_/") == ["deep/"]


async def test_list_page_walks_every_name_once(store: Physical) -> None:
    for i in range(13):
        await store.put(f"p/leaf{i:02d}", b"v")
        if i % 3 == 0:
            await store.put(f"p/dir{i:02d}/a", b"v")
            await store.put(f"p/dir{i:02d}/b/c", b"v")
    await store.put("p/leaf05/child", b"v")  # a name both as leaf and folder
    full = await store.list("p/")
    assert full == sorted(full) and len(full) == len(set(full)) == 13 + 5 + 1
    assert await store.list_page("p/") == full
    assert await store.list_page("p/", limit=0) == full
    assert await store.list_page("p/", limit=-1) == full

    for limit in (1, 4, 7, 100):
        seen: list[str] = []
        after = ""
        while True:
            batch = await store.list_page("p/", after=after, limit=limit)
            if not batch:
                break
            assert len(batch) <= limit
            seen += batch
            after = batch[-1]
        assert seen == full

    assert await store.list_page("p/", after="leaf05", limit=2) == ["leaf05/", "leaf06"]
    assert await store.list_page("p/", after="dir03/", limit=1) == ["dir06/"]
    assert await store.list_page("p/", after="dir", limit=1) == ["dir00/"]
    assert await store.list_page("p/", after="zzz") == []
    assert await store.list_page("p/", after=full[-1]) == []
    assert await store.list_page("", limit=1) == ["p/"]


async def test_list_matches_model_on_random_keys(store: Physical) -> None:
    """Differential check: random puts/deletes, then every listing against a plain model."""
    rng = random.Random(2024)
    segments = ["a", "b", "a_", "%", "ü", "x y", "a0", "a-"]
    model: dict[str, bytes] = {}
    keys = ["/".join(rng.choice(segments) for _ in range(rng.randint(1, 4))) for _ in range(160)]
    for i, key in enumerate(keys):
        value = f"{i}".encode()
        await store.put(key, value)
        model[key] = value
    for key in rng.sample(keys, 50):
        await store.delete(key)
        model.pop(key, None)
    ordered = sorted(model)
    prefixes = {""} | {k[: i + 1] for k in keys for i, ch in enumerate(k) if ch == "/"}
    for prefix in sorted(prefixes):
        expected = children(ordered, prefix)
        assert await store.list(prefix) == expected, prefix
        for after in ["", *expected[:3], "a", "a/"]:
            assert await store.list_page(prefix, after=after, limit=2) == page(expected, after, 2)
    for key in keys:
        assert await store.get(key) == model.get(key)


# -- transactions ------------------------------------------------------------------------


async def test_transaction_commit_is_visible_after(store: Physical) -> None:
    await store.put("keep", b"old")
    await store.put("gone", b"x")
    async with store.transaction() as txn:
        await txn.put("t/a", b"1")
        await txn.put("t/b", b"2")
        await txn.put("keep", b"new")
        await txn.delete("gone")
    assert await store.get("t/a") == b"1"
    assert await store.get("t/b") == b"2"
    assert await store.get("keep") == b"new"
    assert await store.get("gone") is None
    assert await store.list("t/") == ["a", "b"]


async def test_exception_in_transaction_rolls_back(store: Physical) -> None:
    await store.put("keep", b"old")
    await store.put("stay", b"here")

    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        async with store.transaction() as txn:
            await txn.put("t/new", b"1")
            await txn.put("keep", b"new")
            await txn.delete("stay")
            raise Boom
    assert await store.get("t/new") is None
    assert await store.get("keep") == b"old"
    assert await store.get("stay") == b"here"
    assert await store.list("") == ["keep", "stay"]


async def test_transaction_reads_its_own_writes(store: Physical) -> None:
    await store.put("d/old", b"0")
    async with store.transaction() as txn:
        await txn.put("d/new", b"1")
        await txn.put("d/sub/x", b"2")
        await txn.delete("d/old")
        assert await txn.get("d/new") == b"1"
        assert await txn.get("d/old") is None
        assert await txn.list("d/") == ["new", "sub/"]
        assert await txn.list_page("d/", after="new") == ["sub/"]
    assert await store.list("d/") == ["new", "sub/"]


async def test_nested_transaction_joins_outer(store: Physical) -> None:
    with pytest.raises(RuntimeError):
        async with store.transaction() as outer:
            await outer.put("o", b"1")
            async with outer.transaction() as inner:
                await inner.put("i", b"2")
                assert await inner.get("o") == b"1"
            assert await outer.get("i") == b"2"
            raise RuntimeError("roll back both")
    assert await store.get("o") is None
    assert await store.get("i") is None

    async with store.transaction() as outer:
        async with outer.transaction() as inner:
            await inner.put("i", b"2")
        await outer.put("o", b"1")
    assert await store.get("i") == b"2"
    assert await store.get("o") == b"1"


async def test_write_outside_transaction_is_not_lost(
    store: Physical, backend_kind: str, request: pytest.FixtureRequest
) -> None:
    """A plain put by another task while a transaction is open survives its commit."""
    go = asyncio.Event()

    async def outside() -> None:
        await go.wait()
        await store.put("outside", b"1")

    task = asyncio.create_task(outside())  # created before the transaction: not part of it
    async with store.transaction() as txn:
        await txn.put("inside", b"1")
        go.set()
        for _ in range(20):
            await asyncio.sleep(0)  # let the other task run (no wall-clock wait)
    await task
    assert await store.get("inside") == b"1"
    assert await store.get("outside") == b"1"


# -- concurrency ------------------------------------------------------------------------


async def test_concurrent_writers(store: Physical) -> None:
    async def writer(w: int) -> None:
        for i in range(50):
            await store.put(f"c/{w:02d}/{i:03d}", f"{w}:{i}".encode())

    await asyncio.gather(*(writer(w) for w in range(32)))
    assert await store.list("c/") == [f"{w:02d}/" for w in range(32)]
    for w in range(32):
        assert await store.list(f"c/{w:02d}/") == [f"{i:03d}" for i in range(50)]
        for i in range(50):
            assert await store.get(f"c/{w:02d}/{i:03d}") == f"{w}:{i}".encode()


async def test_concurrent_counter_transactions(
    store: Physical, backend_kind: str, request: pytest.FixtureRequest
) -> None:
    """Read-modify-write under the backend's isolation never loses an increment."""

    async def bump(times: int) -> None:
        for _ in range(times):
            async with store.transaction() as txn:
                raw = await txn.get("counter")
                await asyncio.sleep(0)  # give the other tasks every chance to interleave
                await txn.put("counter", str(int(raw or b"0") + 1).encode())

    await asyncio.gather(*(bump(5) for _ in range(20)))
    assert await store.get("counter") == b"100"


async def test_two_handles_on_one_storage_see_each_other(
    open_store: Callable[[], Physical], backend_kind: str
) -> None:
    """Stands in for two worker processes on one file/database."""
    first, second = open_store(), open_store()
    await first.put("from/first", b"1")
    await second.put("from/second", b"2")
    assert await second.get("from/first") == b"1"
    assert await first.get("from/second") == b"2"
    assert await first.list("from/") == ["first", "second"]

    async def bump(handle: Physical) -> None:
        for _ in range(10):
            async with handle.transaction() as txn:
                raw = await txn.get("n")
                await txn.put("n", str(int(raw or b"0") + 1).encode())

    await asyncio.gather(bump(first), bump(second))
    assert await first.get("n") == b"20"


async def test_data_survives_close_and_reopen(open_store: Callable[[], Physical], backend_kind: str) -> None:
    if backend_kind == "inmem":
        pytest.skip("inmem keeps nothing across a restart by design")
    first = open_store()
    await first.put("persist/me", b"\x00\x01")
    async with first.transaction() as txn:
        await txn.put("persist/txn", b"t")
    await first.close()
    second = open_store()
    assert await second.get("persist/me") == b"\x00\x01"
    assert await second.list("persist/") == ["me", "txn"]


# -- sqlite only --------------------------------------------------------------------------

_CHILD = r"""
import asyncio, sys
from strongroom.physical.sqlite import SqlitePhysical

async def main():
    store = SqlitePhysical({"path": sys.argv[1]})
    print("ready", flush=True)

    async def writer(w):
        i = 0
        while True:
            key = f"k/{w}/{i}"
            await store.put(key, key.encode() * 3)
            sys.stdout.write(key + "\n")
            sys.stdout.flush()
            i += 1

    await asyncio.gather(*(writer(w) for w in range(8)))

asyncio.run(main())
"""


async def test_sqlite_acknowledged_writes_survive_kill_9(tmp_path: Path) -> None:
    path = tmp_path / "durable.db"
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdout is not None
    buf = b""
    deadline = time.monotonic() + 5
    try:
        while buf.count(b"\n") < 400 and time.monotonic() < deadline:
            ready, _, _ = select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                break
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                break
            buf += chunk
    finally:
        proc.send_signal(signal.SIGKILL)
        rest, err = proc.communicate(timeout=5)
    buf += rest
    lines = buf.decode().split("\n")[:-1]  # a trailing partial line was never acknowledged
    acknowledged = [line for line in lines if line.startswith("k/")]
    assert lines and lines[0] == "ready", err.decode()[-2000:]
    assert len(acknowledged) >= 50, f"only {len(acknowledged)} writes before the deadline"
    assert proc.returncode == -signal.SIGKILL

    reopened = SqlitePhysical({"path": str(path)})
    try:
        for key in acknowledged:
            assert await reopened.get(key) == key.encode() * 3, key
    finally:
        await reopened.close()


async def test_sqlite_one_bad_write_does_not_fail_its_batch(tmp_path: Path) -> None:
    store = SqlitePhysical({"path": str(tmp_path / "s.db")})
    try:
        results = await asyncio.gather(
            *(store.put(f"ok/{i}", b"v") for i in range(20)),
            store.put("bad\ud800", b"v"),  # a lone surrogate cannot be encoded as UTF-8
            *(store.put(f"ok/{i}", b"v") for i in range(20, 40)),
            return_exceptions=True,
        )
        failures = [r for r in results if isinstance(r, BaseException)]
        assert len(failures) == 1 and isinstance(failures[0], ValueError)
        assert len(await store.list("ok/")) == 40
    finally:
        await store.close()


async def test_sqlite_plain_write_inside_own_transaction_is_refused(tmp_path: Path) -> None:
    store = SqlitePhysical({"path": str(tmp_path / "s.db")})
    try:
        with pytest.raises(RuntimeError):
            async with store.transaction() as txn:
                await txn.put("a", b"1")
                await store.put("b", b"2")  # would wait for this very transaction
        async with store.transaction() as txn:
            async with store.transaction() as joined:  # joins instead of deadlocking
                assert joined is txn
                await joined.put("c", b"3")
        assert await store.get("a") is None
        assert await store.get("c") == b"3"
        await store.put("after", b"ok")
    finally:
        await store.close()


async def test_sqlite_list_skips_over_subfolders(tmp_path: Path) -> None:
    """Listing a folder must not read every key below its sub-folders."""
    store = SqlitePhysical({"path": str(tmp_path / "s.db")})
    try:
        async with store.transaction() as txn:
            for i in range(5000):
                await txn.put(f"big/deep/{i:05d}/x", b"")
            await txn.put("big/leaf", b"")
            await txn.put("big/other/y", b"")
            await txn.put("bigger", b"")
        conn = sqlite3.connect(store.path)
        try:
            plan = " ".join(
                str(row[-1])
                for row in conn.execute(
                    "EXPLAIN QUERY PLAN " + "SELECT key FROM kv WHERE key >= ? AND key < ? ORDER BY key",
                    ("big/", "big0"),
                )
            )
            assert "COVERING INDEX" in plan and "SCAN" not in plan.replace("SEARCH", ""), plan
            steps = 0

            def count() -> int:
                nonlocal steps
                steps += 1
                return 0

            conn.set_progress_handler(count, 10)
            assert _list(conn, "big/") == ["deep/", "leaf", "other/"]
            assert steps < 200, f"{steps * 10} VM steps: the listing read the descendants"
        finally:
            conn.close()
        assert await store.list("big/deep/") == [f"{i:05d}/" for i in range(5000)]
    finally:
        await store.close()


def test_sqlite_rejects_bad_options(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        SqlitePhysical({})
    with pytest.raises(ValueError):
        SqlitePhysical({"path": ":memory:"})


async def test_sqlite_path_may_be_a_directory_and_file_is_private(tmp_path: Path) -> None:
    store = SqlitePhysical({"path": str(tmp_path)})
    try:
        await store.put("a", b"1")
        assert store.path == tmp_path / "strongroom.db"
        assert store.path.stat().st_mode & 0o077 == 0
    finally:
        await store.close()


# -- postgresql only ----------------------------------------------------------------------


def test_pg_key_split_matches_vault() -> None:
    assert split_key("a/b/c") == ("/a/", "/a/b/", "c")
    assert split_key("a/b") == ("/", "/a/", "b")
    assert split_key("a") == ("", "/", "a")
    assert split_key("a/b/c/d") == ("/a/b/", "/a/b/c/", "d")


@pytest.mark.parametrize(
    "table", ["x; DROP TABLE y", "a-b", 'q"uote', "t\n", "schema.table", "x" * 64, "ключ"]
)
def test_pg_rejects_unsafe_table_names(table: str) -> None:
    with pytest.raises(ValueError):
        PostgresPhysical({"connection_url": "postgresql://unused", "table": table})


def test_pg_connection_url_falls_back_to_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STRONGROOM_PG_CONNECTION_URL", raising=False)
    monkeypatch.delenv("VAULT_PG_CONNECTION_URL", raising=False)
    with pytest.raises(ValueError):
        PostgresPhysical({})
    monkeypatch.setenv("VAULT_PG_CONNECTION_URL", "postgresql://from-env")
    assert PostgresPhysical({})._url == "postgresql://from-env"
    assert PostgresPhysical({"connection_url": "postgresql://cfg"})._url == "postgresql://cfg"


async def test_pg_uses_vaults_table_layout(pg_database: str) -> None:
    store = PostgresPhysical({"connection_url": pg_database})
    try:
        for key in ["a/b/c", "a/b", "a"]:
            await store.put(key, key.encode())
        async with await psycopg.AsyncConnection.connect(pg_database) as conn:
            cur = await conn.execute(
                "SELECT parent_path, path, key, value FROM vault_kv_store ORDER BY path, key"
            )
            rows = await cur.fetchall()
            assert rows == [
                ("", "/", "a", b"a"),
                ("/", "/a/", "b", b"a/b"),
                ("/a/", "/a/b/", "c", b"a/b/c"),
            ]
            cur = await conn.execute(
                "SELECT column_name, data_type, collation_name, is_nullable FROM information_schema.columns "
                "WHERE table_name = 'vault_kv_store' ORDER BY ordinal_position"
            )
            assert await cur.fetchall() == [
                ("parent_path", "text", "C", "NO"),
                ("path", "text", "C", "NO"),  # NOT NULL through the primary key
                ("key", "text", "C", "NO"),
                ("value", "bytea", None, "YES"),
            ]
            cur = await conn.execute(
                "SELECT indexname FROM pg_indexes WHERE tablename = 'vault_kv_store' ORDER BY 1"
            )
            assert [r[0] for r in await cur.fetchall()] == ["parent_path_idx", "pkey"]
        async with store._pool.connection() as pooled:
            cur2 = await pooled.execute("SHOW synchronous_commit")
            assert await cur2.fetchone() == ("on",)
        # A second opener (another worker) finds the table and leaves it alone.
        again = PostgresPhysical({"connection_url": pg_database})
        try:
            assert await again.list("a/") == ["b", "b/"]
        finally:
            await again.close()
    finally:
        await store.close()


async def test_pg_database_errors_become_storage_errors(pg_server: Any) -> None:
    table = "t_dropped_under_us"
    store = PostgresPhysical({"connection_url": pg_server.url, "table": table})
    try:
        await store.put("secret/key", b"secret-value")
        async with await psycopg.AsyncConnection.connect(pg_server.url, autocommit=True) as conn:
            await conn.execute(f"DROP TABLE {table}")
        for op in (store.get("secret/key"), store.put("secret/key", b"secret-value"), store.list("secret/")):
            with pytest.raises(StorageError) as info:
                await op
            assert "secret" not in str(info.value)
    finally:
        await store.close()


async def test_pg_transaction_conflicting_with_plain_write_rolls_back(pg_server: Any) -> None:
    options = {"connection_url": pg_server.url, "table": "t_conflict"}
    store, other = PostgresPhysical(options), PostgresPhysical(options)
    try:
        await store.put("k", b"0")
        with pytest.raises(TransactionConflict):
            async with store.transaction() as txn:
                assert await txn.get("k") == b"0"  # the snapshot is taken here
                await txn.put("side", b"effect")
                await other.put("k", b"other")  # commits on another connection
                await txn.put("k", b"txn")
        assert await store.get("k") == b"other"
        assert await store.get("side") is None
        # Swallowing the error inside the body must not commit half a transaction.
        with pytest.raises(TransactionConflict):
            async with store.transaction() as txn:
                assert await txn.get("k") == b"other"
                await txn.put("half", b"written")
                await other.put("k", b"other2")
                with pytest.raises(TransactionConflict):
                    await txn.put("k", b"txn")
        assert await store.get("half") is None
        async with store.transaction() as txn:  # and the store is usable afterwards
            await txn.put("k", b"again")
        assert await other.get("k") == b"again"
    finally:
        await store.close()
        await other.close()
