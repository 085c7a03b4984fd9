"""Start a throwaway PostgreSQL server for tests: initdb in a temporary folder.

Usage::

    with start_pg() as pg:          # raises PgUnavailable when no binaries exist
        url = pg.url                # postgresql://postgres@127.0.0.1:<port>/strongroom
        other = pg.create_database("second")

``pg_unavailable(reason)`` applies the project policy when there is no
PostgreSQL: a failure under ``CI=true`` (the suite must not go green by
skipping), a skip elsewhere. initdb refuses to run as root, so as root every
server binary runs as the ``postgres`` OS user, which owns the temporary folder.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg

START_TIMEOUT_S = 30
_BINARIES = ("initdb", "pg_ctl", "postgres")


class PgUnavailable(RuntimeError):
    """No usable PostgreSQL server binaries on this machine (skip locally, fail under CI)."""


class PgStartError(RuntimeError):
    """The binaries exist but the server would not start: always an error."""


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def pg_unavailable(reason: str) -> None:
    """Fail under CI, skip elsewhere (call from a test or fixture)."""
    import pytest

    if in_ci():
        pytest.fail(f"PostgreSQL is required under CI: {reason}", pytrace=False)
    pytest.skip(f"PostgreSQL not available: {reason}")


def _has_binaries(bindir: Path) -> bool:
    return all(os.access(bindir / name, os.X_OK) for name in _BINARIES)


def _version_key(path: str) -> tuple[int, ...]:
    digits = Path(path).parent.name.split(".")
    return tuple(int(d) for d in digits if d.isdigit())


def find_bindir() -> Path | None:
    """Where initdb/pg_ctl/postgres live: $STRONGROOM_PG_BINDIR, pg_config, Debian's layout, PATH."""
    candidates: list[Path] = []
    if os.environ.get("STRONGROOM_PG_BINDIR"):
        candidates.append(Path(os.environ["STRONGROOM_PG_BINDIR"]))
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=True
            ).stdout.strip()
            if out:
                candidates.append(Path(out))
        except (subprocess.SubprocessError, OSError):
            pass
    for found in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version_key, reverse=True):
        candidates.append(Path(found))
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(Path(os.path.realpath(initdb)).parent)
        candidates.append(Path(initdb).parent)
    for bindir in candidates:
        if _has_binaries(bindir):
            return bindir
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class PgServer:
    """A running throwaway server; ``url`` points at the database made for the tests."""

    host: str
    port: int
    user: str
    dbname: str
    datadir: Path
    socket_dir: Path
    logfile: Path

    def url_for(self, dbname: str) -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{dbname}"

    @property
    def url(self) -> str:
        return self.url_for(self.dbname)

    def create_database(self, dbname: str) -> str:
        """Create another database on this server and return its URL."""
        with psycopg.connect(self.url_for("postgres"), autocommit=True) as conn:
            conn.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(dbname)))
        return self.url_for(dbname)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no server log)"


class _Runner:
    """Runs server binaries as the postgres OS user when we are root."""

    def __init__(self, bindir: Path, workdir: Path) -> None:
        self.bindir = bindir
        self.workdir = workdir
        self.as_postgres = os.geteuid() == 0
        if self.as_postgres:
            try:
                self.pw = pwd.getpwnam("postgres")
            except KeyError:
                raise PgUnavailable("running as root and there is no 'postgres' OS user for initdb") from None
            self.runuser = shutil.which("runuser")
            if self.runuser is None and shutil.which("su") is None:
                raise PgUnavailable("running as root without runuser or su to drop to 'postgres'")

    def chown(self, path: Path) -> None:
        if self.as_postgres:
            os.chown(path, self.pw.pw_uid, self.pw.pw_gid)

    def argv(self, name: str, *args: str) -> list[str]:
        argv = [str(self.bindir / name), *args]
        if self.as_postgres:
            if self.runuser:
                return [self.runuser, "-u", "postgres", "--", *argv]
            return ["su", "postgres", "-s", "/bin/sh", "-c", " ".join(_shquote(a) for a in argv)]
        return argv

    def run(self, name: str, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
        argv = self.argv(name, *args)
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"
        return subprocess.run(
            argv, cwd=self.workdir, env=env, capture_output=True, text=True, timeout=timeout, check=False
        )


def _shquote(arg: str) -> str:
    return "'" + arg.replace("'", "'\"'\"'") + "'"


def _stop(runner: _Runner, server: PgServer) -> None:
    try:
        runner.run(
            "pg_ctl", "-D", str(server.datadir), "stop", "-m", "immediate", "-w", "-t", "30", timeout=40
        )
    except (subprocess.SubprocessError, OSError):
        pass
    pidfile = server.datadir / "postmaster.pid"
    if pidfile.exists():  # pg_ctl did not manage: kill the postmaster we started
        try:
            pid = int(pidfile.read_text().splitlines()[0])
            os.kill(pid, signal.SIGKILL)
        except (OSError, ValueError, IndexError):
            pass


@contextlib.contextmanager
def start_pg(dbname: str = "strongroom", fsync: bool = False) -> Iterator[PgServer]:
    """Start a private server on 127.0.0.1, create ``dbname``, yield, then stop and delete it all.

    ``fsync=False`` by default: a throwaway test server gains nothing from it.
    """
    bindir = find_bindir()
    if bindir is None:
        raise PgUnavailable(
            "initdb/pg_ctl/postgres not found (pg_config --bindir, /usr/lib/postgresql/*/bin, PATH)"
        )
    base = Path(tempfile.mkdtemp(prefix="strongroom-pg-"))
    try:
        runner = _Runner(bindir, base)
        runner.chown(base)
        datadir, socket_dir, logfile = base / "data", base / "sock", base / "server.log"
        socket_dir.mkdir(mode=0o700)
        runner.chown(socket_dir)
        init = runner.run(
            "initdb",
            "-D",
            str(datadir),
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--no-locale",
            "--no-sync",
            timeout=120,
        )
        if init.returncode != 0:
            raise PgStartError(f"initdb failed ({init.returncode}): {init.stderr.strip()[-2000:]}")
        server: PgServer | None = None
        last_error = ""
        for _attempt in range(3):  # a free port can be taken between probe and bind
            port = _free_port()
            opts = (
                f"-c listen_addresses=127.0.0.1 -p {port} -k {socket_dir} "
                f"-c fsync={'on' if fsync else 'off'} -c max_connections=200"
            )
            start = runner.run(
                "pg_ctl",
                "-D",
                str(datadir),
                "-l",
                str(logfile),
                "-o",
                opts,
                "-w",
                "-t",
                str(START_TIMEOUT_S),
                "start",
                timeout=START_TIMEOUT_S + 10,
            )
            candidate = PgServer("127.0.0.1", port, "postgres", dbname, datadir, socket_dir, logfile)
            if start.returncode == 0:
                server = candidate
                break
            last_error = f"{start.stderr.strip()[-1000:]}\n{candidate.log_tail()}"
            _stop(runner, candidate)
        if server is None:
            raise PgStartError(f"pg_ctl start failed: {last_error}")
        watchdog = _start_watchdog(runner, server, base)
        try:
            _wait_ready(server)
            server.create_database(dbname)
            yield server
        finally:
            _stop(runner, server)
            _end_watchdog(watchdog)
    finally:
        shutil.rmtree(base, ignore_errors=True)


_WATCHDOG = """
import shutil, subprocess, sys
argv, base = sys.argv[1:-1], sys.argv[-1]
sys.stdin.read()  # returns at EOF: our parent finished or died (even by SIGKILL)
subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60, check=False)
shutil.rmtree(base, ignore_errors=True)
"""


def _start_watchdog(runner: _Runner, server: PgServer, base: Path) -> subprocess.Popen[bytes]:
    """A helper process that stops the server if this one dies without cleaning up."""
    argv = runner.argv("pg_ctl", "-D", str(server.datadir), "stop", "-m", "immediate", "-w")
    return subprocess.Popen(
        [sys.executable, "-c", _WATCHDOG, *argv, str(base)],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # survives a Ctrl-C or kill aimed at our process group
    )


def _end_watchdog(watchdog: subprocess.Popen[bytes]) -> None:
    try:
        if watchdog.stdin is not None:
            watchdog.stdin.close()
        watchdog.wait(timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        watchdog.kill()


def _wait_ready(server: PgServer, timeout: float = START_TIMEOUT_S) -> None:
    """Bounded poll until the server accepts TCP connections (pg_ctl -w usually suffices)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with psycopg.connect(server.url_for("postgres"), connect_timeout=5):
                return
        except psycopg.OperationalError as exc:
            if time.monotonic() > deadline:
                raise PgStartError(f"server did not accept connections: {exc}\n{server.log_tail()}") from None
            time.sleep(0.1)
