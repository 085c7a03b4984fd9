"""Fixtures for the storage conformance suite: one fresh, empty store per test and backend."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from strongroom.physical.base import Physical, open_physical

try:  # importable as a package when the repository root is on sys.path ...
    from tests.conformance.pg_server import PgServer, PgUnavailable, pg_unavailable, start_pg
except ImportError:  # ... and by pytest's rootdir-less "prepend" import otherwise
    from pg_server import PgServer, PgUnavailable, pg_unavailable, start_pg  # type: ignore[no-redef]

BACKENDS = ["inmem", "sqlite", "postgresql"]


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """One throwaway PostgreSQL for the whole session (skip locally / fail under CI if absent)."""
    with contextlib.ExitStack() as stack:
        try:
            server = stack.enter_context(start_pg())
        except PgUnavailable as exc:
            reason = str(exc)
        else:
            yield server
            return
    pg_unavailable(reason)


@pytest.fixture
def pg_database(pg_server: PgServer) -> str:
    """A brand-new database on the session server (for tests that need the default table name)."""
    return pg_server.create_database(f"t_{uuid.uuid4().hex}")


@pytest.fixture(params=BACKENDS)
def backend_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def backend_options(backend_kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    """Options naming fresh, empty storage: a new sqlite file or a new PostgreSQL table."""
    if backend_kind == "sqlite":
        return {"path": str(tmp_path / "store" / "strongroom.db")}
    if backend_kind == "postgresql":
        server: PgServer = request.getfixturevalue("pg_server")
        return {"connection_url": server.url, "table": f"t_{uuid.uuid4().hex}"}
    return {}


@pytest.fixture
async def open_store(
    backend_kind: str, backend_options: dict[str, Any]
) -> AsyncIterator[Callable[[], Physical]]:
    """Open (another) store on the same storage; every one is closed after the test.

    For inmem every call returns the same store: there is nothing to reopen.
    """
    opened: list[Physical] = []

    def factory() -> Physical:
        if backend_kind == "inmem" and opened:
            return opened[0]
        physical = open_physical(backend_kind, dict(backend_options))
        opened.append(physical)
        return physical

    yield factory
    for physical in reversed(opened):
        await physical.close()


@pytest.fixture
def store(open_store: Callable[[], Physical]) -> Physical:
    return open_store()
