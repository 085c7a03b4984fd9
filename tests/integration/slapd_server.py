"""Start a throwaway OpenLDAP ``slapd`` for tests: a slapd.conf and an mdb database in a temp folder.

Usage::

    with start_slapd() as ldap:        # raises SlapdUnavailable when no binaries exist
        ldap.url                       # ldap://127.0.0.1:<port>
        ldap.root_dn, ldap.root_pw     # the directory manager
        ldap.users["alice"].password   # the loaded people (DIRECTORY_USERS)

``slapd_unavailable(reason)`` applies the project policy when there is no slapd: a
failure under ``CI=true`` (the suite must not go green by skipping), a skip elsewhere,
as ``tests/conformance/pg_server.py`` does for PostgreSQL.

The directory (suffix ``dc=example,dc=com``) is loaded with ``slapadd`` before the
server starts, so start-up is one process and no LDAP writes: people under ``ou=users``
(inetOrgPerson, ``uid`` naming), groups under ``ou=groups`` — groupOfNames with
``member`` DNs and posixGroup with ``memberUid`` names, because Vault's default
groupfilter looks for both. No TLS is configured (tests rely on StartTLS being refused).
slapd runs in the foreground (``-d 0``) as the current user, bound to 127.0.0.1 only; a
watchdog process kills it if the test process dies without cleaning up.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

START_TIMEOUT_S = 30
SUFFIX = "dc=example,dc=com"
ROOT_DN = f"cn=admin,{SUFFIX}"
ROOT_PW = "root-secret"  # noqa: S105 (a throwaway test directory)
USERS_DN = f"ou=users,{SUFFIX}"
GROUPS_DN = f"ou=groups,{SUFFIX}"
_SCHEMAS = ("core", "cosine", "nis", "inetorgperson")


class SlapdUnavailable(RuntimeError):
    """No slapd/slapadd on this machine (skip locally, fail under CI)."""


class SlapdStartError(RuntimeError):
    """The binaries exist but the server would not start: always an error."""


@dataclass(frozen=True)
class Person:
    uid: str
    password: str
    mail: str
    uid_number: int

    @property
    def dn(self) -> str:
        return f"uid={self.uid},{USERS_DN}"


DIRECTORY_USERS: dict[str, Person] = {
    p.uid: p
    for p in (
        Person("alice", "alice-pass-1", "alice@example.com", 10001),
        Person("bob", "bob-pass-2", "bob@example.com", 10002),
        Person("carol", "carol-pass-3", "carol@example.com", 10003),
        Person("dave", "dave-pass-4", "dave@example.com", 10004),
    )
}
# groupOfNames (member DNs): engineers = alice, bob; admins = alice
MEMBER_GROUPS: dict[str, list[str]] = {"engineers": ["alice", "bob"], "admins": ["alice"]}
# posixGroup (memberUid names): ops = bob, carol
UID_GROUPS: dict[str, list[str]] = {"ops": ["bob", "carol"]}


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def slapd_unavailable(reason: str) -> None:
    """Fail under CI, skip elsewhere (call from a test or fixture)."""
    import pytest

    if in_ci():
        pytest.fail(f"slapd is required under CI: {reason}", pytrace=False)
    pytest.skip(f"slapd not available: {reason}")


def _find(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for folder in ("/usr/sbin", "/usr/local/sbin", "/usr/local/libexec"):
        candidate = os.path.join(folder, name)
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def _schema_dir() -> Path | None:
    for folder in ("/etc/ldap/schema", "/etc/openldap/schema", "/usr/local/etc/openldap/schema"):
        if all((Path(folder) / f"{s}.schema").exists() for s in _SCHEMAS):
            return Path(folder)
    return None


def _module_dir() -> Path | None:
    for folder in ("/usr/lib/ldap", "/usr/lib64/openldap", "/usr/lib/openldap", "/usr/libexec/openldap"):
        if any(Path(folder).glob("back_mdb*")):
            return Path(folder)
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _conf(base: Path, schemas: Path, modules: Path | None) -> str:
    lines = [f"include {schemas / (s + '.schema')}" for s in _SCHEMAS]
    lines += [f"pidfile {base / 'slapd.pid'}", f"argsfile {base / 'slapd.args'}"]
    if modules is not None:
        lines += [f"modulepath {modules}", "moduleload back_mdb"]
    lines += [
        "database mdb",
        "maxsize 10485760",
        f'suffix "{SUFFIX}"',
        f'rootdn "{ROOT_DN}"',
        f"rootpw {ROOT_PW}",
        f"directory {base / 'data'}",
        "access to attrs=userPassword by self read by anonymous auth by * none",
        "access to * by * read",
    ]
    return "\n".join(lines) + "\n"


def _ldif() -> str:
    blocks = [
        f"dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\ndc: example\no: Example",
        f"dn: {USERS_DN}\nobjectClass: organizationalUnit\nou: users",
        f"dn: {GROUPS_DN}\nobjectClass: organizationalUnit\nou: groups",
    ]
    for p in DIRECTORY_USERS.values():
        blocks.append(
            f"dn: {p.dn}\nobjectClass: inetOrgPerson\nobjectClass: posixAccount\n"
            f"uid: {p.uid}\ncn: {p.uid.title()}\nsn: {p.uid.title()}\nmail: {p.mail}\n"
            f"uidNumber: {p.uid_number}\ngidNumber: {p.uid_number}\nhomeDirectory: /home/{p.uid}\n"
            f"userPassword: {p.password}"
        )
    for name, members in MEMBER_GROUPS.items():
        lines = [f"dn: cn={name},{GROUPS_DN}", "objectClass: groupOfNames", f"cn: {name}"]
        lines += [f"member: {DIRECTORY_USERS[m].dn}" for m in members]
        blocks.append("\n".join(lines))
    for gid, (name, members) in enumerate(UID_GROUPS.items(), start=20001):
        lines = [f"dn: cn={name},{GROUPS_DN}", "objectClass: posixGroup", f"cn: {name}", f"gidNumber: {gid}"]
        lines += [f"memberUid: {m}" for m in members]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"


@dataclass
class SlapdServer:
    """A running throwaway directory."""

    host: str
    port: int
    base: Path
    process: subprocess.Popen[bytes]
    logfile: Path
    users: dict[str, Person] = field(default_factory=lambda: dict(DIRECTORY_USERS))
    root_dn: str = ROOT_DN
    root_pw: str = ROOT_PW
    suffix: str = SUFFIX
    users_dn: str = USERS_DN
    groups_dn: str = GROUPS_DN

    @property
    def url(self) -> str:
        return f"ldap://{self.host}:{self.port}"

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no server log)"


def _wait_ready(server: SlapdServer, timeout: float = START_TIMEOUT_S) -> None:
    """Bounded poll until an LDAP bind as the root DN works (or slapd exits)."""
    import ldap3

    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise SlapdStartError(f"slapd exited with {server.process.returncode}:\n{server.log_tail()}")
        try:
            conn = ldap3.Connection(
                ldap3.Server(server.host, port=server.port, connect_timeout=2, get_info=ldap3.NONE),
                user=server.root_dn,
                password=server.root_pw,
                receive_timeout=5,
            )
            if conn.bind():
                conn.unbind()
                return
            last = str(conn.result)
        except Exception as exc:  # noqa: BLE001 - any failure means "not yet"
            last = f"{type(exc).__name__}: {exc}"
        time.sleep(0.1)
    raise SlapdStartError(f"slapd did not accept binds within {timeout}s: {last}\n{server.log_tail()}")


_WATCHDOG = """
import os, shutil, signal, sys
pid, base = int(sys.argv[1]), sys.argv[2]
sys.stdin.read()  # returns at EOF: our parent finished or died (even by SIGKILL)
try:
    os.kill(pid, signal.SIGKILL)
except OSError:
    pass
shutil.rmtree(base, ignore_errors=True)
"""


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@contextlib.contextmanager
def start_slapd() -> Iterator[SlapdServer]:
    """Start a private slapd on 127.0.0.1 with the test directory loaded; stop and delete it after."""
    slapd, slapadd = _find("slapd"), _find("slapadd")
    if slapd is None or slapadd is None:
        raise SlapdUnavailable("slapd/slapadd not found (Debian: apt-get install slapd ldap-utils)")
    schemas = _schema_dir()
    if schemas is None:
        raise SlapdUnavailable("no OpenLDAP schema folder (core, cosine, nis, inetorgperson)")
    base = Path(tempfile.mkdtemp(prefix="strongroom-slapd-"))
    try:
        (base / "data").mkdir(mode=0o700)
        conf = base / "slapd.conf"
        conf.write_text(_conf(base, schemas, _module_dir()))
        ldif = base / "data.ldif"
        ldif.write_text(_ldif())
        loaded = subprocess.run(
            [slapadd, "-f", str(conf), "-l", str(ldif)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if loaded.returncode != 0:
            raise SlapdStartError(f"slapadd failed ({loaded.returncode}): {loaded.stderr.strip()[-2000:]}")
        logfile = base / "slapd.log"
        server: SlapdServer | None = None
        last_error = ""
        for _attempt in range(3):  # a free port can be taken between probe and bind
            port = _free_port()
            with logfile.open("ab") as log:
                process = subprocess.Popen(
                    [slapd, "-d", "0", "-f", str(conf), "-h", f"ldap://127.0.0.1:{port}/"],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                )
            candidate = SlapdServer("127.0.0.1", port, base, process, logfile)
            try:
                _wait_ready(candidate)
            except SlapdStartError as exc:
                last_error = str(exc)
                _stop(process)
                continue
            server = candidate
            break
        if server is None:
            raise SlapdStartError(last_error)
        watchdog = subprocess.Popen(
            [sys.executable, "-c", _WATCHDOG, str(server.process.pid), str(base)],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            yield server
        finally:
            _stop(server.process)
            try:
                if watchdog.stdin is not None:
                    watchdog.stdin.close()
                watchdog.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                watchdog.kill()
    finally:
        shutil.rmtree(base, ignore_errors=True)
