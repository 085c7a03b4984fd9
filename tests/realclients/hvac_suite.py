"""Run hvac's own integration suite against strongroom, through the `vault` shim.

hvac's integration tests start their server with ``shutil.which("vault")`` (one server per test class),
initialize and unseal it over TLS, and then drive it with hvac itself (see
shared/reference/real-clients.md §1). This module does everything that needs, on a fresh clone:

1. downloads the hvac sdist from PyPI (``pip download --no-binary``; the wheel has no tests) into the
   ignored ``.work/hvac/`` folder and unpacks it there, once;
2. creates a separate venv, ``.work/hvac-venv``, with that hvac and the test dependencies its suite
   needs, pinned (hvac's suite wants pytest < 8; ours runs a newer one);
3. replaces hvac's expired client certificate with a fresh one made from the sdist's own ``client.cnf``;
4. runs hvac test modules from the unpacked root with ``tests/realclients/vault_shim`` first on PATH,
   bounded in time, and reads the JUnit XML back into one result per test.

The shim execs ``$STRONGROOM_PYTHON -m strongroom server -config=FILE``; we set STRONGROOM_PYTHON to
the interpreter running this code (the project venv) and STRONGROOM_SHIM_LOG_DIR to a folder per run,
where each server launch leaves one log file whose header names the hvac test that started it.

Nothing from hvac is committed: the sdist is fetched at test time. Run by hand with
``.venv/bin/python -m tests.realclients.hvac_suite tests/integration_tests/api/system_backend/test_init.py``.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

HVAC_VERSION = "2.4.0"

REPO_ROOT = Path(__file__).resolve().parents[2]
WORK_DIR = REPO_ROOT / ".work"
CACHE_DIR = WORK_DIR / "hvac"
VENV_DIR = WORK_DIR / "hvac-venv"
SHIM_DIR = Path(__file__).resolve().parent / "vault_shim"
LOCK_FILE = WORK_DIR / "hvac.lock"

# The version string hvac's suite gates its tests on; the shim prints it.
SHIM_VERSION_LINE = "Vault v1.16.3 (strongroom)"

# hvac's dev dependencies (its pyproject's dev group, minus linters and coverage), pinned to versions
# that install and collect all 686 integration tests on Python 3.11. pytest must stay < 8 for hvac 2.4.0.
TEST_REQUIREMENTS: tuple[str, ...] = (
    "pytest==7.4.4",
    "pytest-xdist==3.8.0",
    "pytest-mock==3.17.0",
    "parameterized==0.9.0",
    "pyhcl==0.4.5",
    "requests-mock==1.12.1",
    "jwcrypto==1.6.1",
    "packaging==23.2",
    "semantic-version==2.10.0",
    "Flask==2.3.3",
    "Flask-SQLAlchemy==3.1.1",
    "Authlib==1.9.10",
    "Werkzeug==3.1.9",
    "python-ldap-test==0.3.1",
    "ldap3==2.9.1",
)

PIP_TIMEOUT_S = 600
OPENSSL_TIMEOUT_S = 60
# Renew hvac's client certificate when it has less than this left.
CERT_MIN_VALIDITY_S = 30 * 24 * 3600

# Environment that must not leak from the caller into hvac's run.
_SCRUBBED_ENV_PREFIXES = ("VAULT_", "PYTEST_", "HVAC_", "PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")

Outcome = Literal["passed", "failed", "error", "skipped"]
_SEVERITY: dict[str, int] = {"passed": 0, "skipped": 1, "failed": 2, "error": 3}


class HvacSuiteError(RuntimeError):
    """Preparing or running hvac's suite failed for a reason outside hvac's own tests."""


def _log(msg: str) -> None:
    print(f"[hvac_suite] {msg}", file=sys.stderr, flush=True)


def _run(cmd: Sequence[str | Path], *, timeout: float, cwd: Path | None = None) -> str:
    """Run a preparation step; raise HvacSuiteError with its output when it fails."""
    argv = [str(c) for c in cmd]
    try:
        proc = subprocess.run(
            argv,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise HvacSuiteError(f"timed out after {timeout:.0f}s: {' '.join(argv)}") from exc
    except FileNotFoundError as exc:
        raise HvacSuiteError(f"not found: {argv[0]} ({exc})") from exc
    if proc.returncode != 0:
        raise HvacSuiteError(
            f"exit {proc.returncode}: {' '.join(argv)}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    return proc.stdout


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    """One preparation or run at a time: hvac writes its generated configs into the shared tree."""
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    with open(LOCK_FILE, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@dataclass(frozen=True)
class PreparedSuite:
    root: Path  # the unpacked sdist: hvac's tests run from here
    python: Path  # the hvac venv's interpreter


def _download_sdist() -> Path:
    sdist = CACHE_DIR / f"hvac-{HVAC_VERSION}.tar.gz"
    if sdist.is_file():
        return sdist
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    _log(f"downloading the hvac {HVAC_VERSION} sdist from PyPI")
    with tempfile.TemporaryDirectory(dir=CACHE_DIR) as tmp:
        _run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--no-binary",
                ":all:",
                f"hvac=={HVAC_VERSION}",
                "-d",
                tmp,
            ],
            timeout=PIP_TIMEOUT_S,
        )
        got = Path(tmp) / sdist.name
        if not got.is_file():
            raise HvacSuiteError(f"pip download left no {sdist.name} in {tmp}: {os.listdir(tmp)}")
        got.replace(sdist)
    return sdist


def _unpack(sdist: Path) -> Path:
    root = CACHE_DIR / f"hvac-{HVAC_VERSION}"
    if (root / "tests" / "integration_tests").is_dir():
        return root
    _log(f"unpacking {sdist.name}")
    with tempfile.TemporaryDirectory(dir=CACHE_DIR) as tmp:
        with tarfile.open(sdist) as tar:
            tar.extractall(tmp, filter="data")
        unpacked = Path(tmp) / root.name
        if not (unpacked / "tests" / "integration_tests").is_dir():
            raise HvacSuiteError(f"{sdist.name} has no tests/integration_tests")
        if root.exists():
            shutil.rmtree(root)
        unpacked.replace(root)
    return root


def _venv_python() -> Path:
    return VENV_DIR / "bin" / "python"


def _ensure_venv(sdist: Path) -> Path:
    wanted = "\n".join((sdist.name, sys.version, *TEST_REQUIREMENTS)) + "\n"
    stamp = VENV_DIR / ".strongroom-installed"
    python = _venv_python()
    if python.exists() and stamp.is_file() and stamp.read_text() == wanted:
        return python
    _log(f"creating {VENV_DIR.relative_to(REPO_ROOT)} with hvac {HVAC_VERSION} and its test dependencies")
    if VENV_DIR.exists():
        shutil.rmtree(VENV_DIR)
    # A venv made from inside a venv is based on the same base interpreter.
    _run([sys.executable, "-m", "venv", VENV_DIR], timeout=120)
    _run(
        [python, "-m", "pip", "install", "-q", "--disable-pip-version-check", sdist, *TEST_REQUIREMENTS],
        timeout=PIP_TIMEOUT_S,
    )
    stamp.write_text(wanted)
    return python


def _ensure_client_cert(root: Path) -> None:
    """hvac's client-cert.pem expired on 2026-11-18; hvac sends it on every request. Make a new one."""
    cfg = root / "tests" / "config_files"
    cert, key = cfg / "client-cert.pem", cfg / "client-key.pem"
    still_valid = (
        subprocess.run(
            ["openssl", "x509", "-checkend", str(CERT_MIN_VALIDITY_S), "-noout", "-in", str(cert)],
            capture_output=True,
            timeout=OPENSSL_TIMEOUT_S,
            check=False,
        ).returncode
        == 0
    )
    if still_valid:
        return
    _log("regenerating hvac's expired client certificate from tests/config_files/client.cnf")
    with tempfile.TemporaryDirectory(dir=cfg) as tmp:
        new_cert, new_key = Path(tmp) / cert.name, Path(tmp) / key.name
        _run(
            [
                "openssl",
                "req",
                "-x509",
                "-nodes",
                "-days",
                "3650",
                "-newkey",
                "rsa:2048",
                "-keyout",
                new_key,
                "-out",
                new_cert,
                "-config",
                cfg / "client.cnf",
            ],
            timeout=OPENSSL_TIMEOUT_S,
        )
        new_key.replace(key)
        new_cert.replace(cert)


def prepare() -> PreparedSuite:
    """Download, unpack and install everything hvac's suite needs; cheap when already done."""
    if shutil.which("openssl") is None:
        raise HvacSuiteError(
            "openssl not found (it is in the Makefile's APT_PACKAGES: run `make system-deps`)"
        )
    shim = SHIM_DIR / "vault"
    if not os.access(shim, os.X_OK):
        raise HvacSuiteError(f"{shim} is not executable")
    with _locked():
        sdist = _download_sdist()
        root = _unpack(sdist)
        python = _ensure_venv(sdist)
        _ensure_client_cert(root)
    return PreparedSuite(root=root, python=python)


def server_python() -> str:
    """The interpreter the shim runs `-m strongroom server` with."""
    return os.environ.get("STRONGROOM_PYTHON") or sys.executable


def check_server_entry_point(timeout: float = 60) -> str | None:
    """None when `python -m strongroom server --help` works, else why it does not."""
    try:
        proc = subprocess.run(
            [server_python(), "-m", "strongroom", "server", "--help"],
            cwd=tempfile.gettempdir(),  # not the repository: the server must import from anywhere
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"`{server_python()} -m strongroom server --help` failed: {exc}"
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return f"`python -m strongroom server --help` exited {proc.returncode}: {' | '.join(tail)}"
    return None


# ----------------------------------------------------------------------------------------------------
# Results


@dataclass
class CaseResult:
    nodeid: str  # e.g. tests/integration_tests/api/system_backend/test_init.py::TestInit::test_is_initialized
    outcome: Outcome
    message: str = ""  # the skip reason, or the failure's one-line message
    details: str = ""  # the traceback for failures and errors
    seconds: float = 0.0

    @property
    def short_id(self) -> str:
        """The id without the module path: Class::test_name."""
        return self.nodeid.split("::", 1)[1] if "::" in self.nodeid else self.nodeid

    @property
    def class_prefix(self) -> str:
        """module.py::Class, the scope of one hvac server."""
        return "::".join(self.nodeid.split("::")[:2])


@dataclass
class RunResult:
    command: list[str]
    cwd: Path
    returncode: int | None  # None when timed out
    seconds: float
    timed_out: bool
    output: str  # pytest's stdout and stderr
    junit: Path
    log_dir: Path
    cases: list[CaseResult] = field(default_factory=list)

    def with_outcome(self, *outcomes: Outcome) -> list[CaseResult]:
        return [c for c in self.cases if c.outcome in outcomes]

    def counts(self) -> dict[str, int]:
        out = {k: 0 for k in _SEVERITY}
        for c in self.cases:
            out[c.outcome] += 1
        return out

    def summary(self) -> str:
        c = self.counts()
        return (
            f"{c['passed']} passed, {c['failed']} failed, {c['error']} errors, {c['skipped']} skipped "
            f"in {self.seconds:.1f}s (pytest exit {self.returncode}{', TIMED OUT' if self.timed_out else ''})"
        )

    def server_logs(self) -> list[Path]:
        """All server logs of this run, in launch order."""
        return sorted(self.log_dir.glob("server-*.log"))

    def server_log_for(self, case: CaseResult) -> Path | None:
        """The last server started by the test class of `case` (hvac starts one per class)."""
        found: Path | None = None
        for log in self.server_logs():
            try:
                with open(log, errors="replace") as fh:
                    head = "".join(fh.readline() for _ in range(4))
            except OSError:
                continue
            m = re.search(r"^# test: (\S+)", head, re.MULTILINE)
            if m and "::".join(m.group(1).split("::")[:2]) == case.class_prefix:
                found = log
        return found

    def report(self, *, log_lines: int = 40, message_lines: int = 5, max_cases: int = 15) -> str:
        """What a developer needs when something went wrong: failing ids, messages, server log tails."""
        lines = [
            self.summary(),
            f"command (cwd {self.cwd}): " + " ".join(self.command),
            f"pytest output, junit.xml and server logs: {self.junit.parent}",
        ]
        bad = self.with_outcome("failed", "error")
        shown_logs: set[Path] = set()
        if len(bad) > max_cases:
            lines.append(
                f"--- {len(bad) - max_cases} more failing tests, details below for the first {max_cases}:"
            )
            lines.extend(f"    {c.outcome.upper()}: {c.nodeid}" for c in bad[max_cases:])
            bad = bad[:max_cases]
        for case in bad:
            lines.append(f"--- {case.outcome.upper()}: {case.nodeid}")
            text = (case.details or case.message).strip().splitlines()
            # The end of a traceback names the assertion; keep its first and last lines.
            if len(text) > 2 * message_lines:
                text = [*text[:message_lines], "    ...", *text[-message_lines:]]
            lines.extend("    " + t for t in text)
        for case in bad:
            log = self.server_log_for(case)
            if log is None or log in shown_logs:
                continue
            shown_logs.add(log)
            tail = log.read_text(errors="replace").splitlines()[-log_lines:]
            lines.append(f"--- tail of {log} (server of {case.class_prefix}):")
            lines.extend("    " + t for t in tail)
        if not self.cases or self.timed_out or self.returncode not in (0, 1):
            lines.append("--- tail of pytest output:")
            lines.extend("    " + t for t in self.output.splitlines()[-60:])
            if not shown_logs and self.server_logs():
                log = self.server_logs()[-1]
                lines.append(f"--- tail of the last server log {log}:")
                lines.extend("    " + t for t in log.read_text(errors="replace").splitlines()[-log_lines:])
        return "\n".join(lines)


def _nodeid(root: Path, classname: str, name: str) -> str:
    """JUnit's dotted classname + name -> pytest node id (path/to/test_x.py::Class::test)."""
    if not classname:  # collection errors: the name is the dotted module
        parts, rest = name.split("."), []
    else:
        parts, rest = classname.split("."), [name]
    for i in range(len(parts), 0, -1):
        path = "/".join(parts[:i]) + ".py"
        if (root / path).is_file():
            return "::".join([path, *parts[i:], *rest])
    return "::".join([classname, name] if classname else [name])


def parse_junit(path: Path, root: Path) -> list[CaseResult]:
    tree = ET.parse(path)
    merged: dict[str, CaseResult] = {}
    for tc in tree.iter("testcase"):
        nodeid = _nodeid(root, tc.get("classname", ""), tc.get("name", ""))
        outcome: Outcome = "passed"
        message = details = ""
        for child in tc:
            kind = {"failure": "failed", "error": "error", "skipped": "skipped"}.get(child.tag)
            if kind is None:
                continue
            if _SEVERITY[kind] >= _SEVERITY[outcome]:
                outcome = kind  # type: ignore[assignment]
                message = child.get("message", "") or ""
                details = child.text or ""
        result = CaseResult(nodeid, outcome, message, details, float(tc.get("time", "0") or 0))
        prev = merged.get(nodeid)
        if prev is None or _SEVERITY[outcome] > _SEVERITY[prev.outcome]:
            merged[nodeid] = result
    return list(merged.values())


def _clean_env(log_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUBBED_ENV_PREFIXES)}
    env["PATH"] = f"{SHIM_DIR}{os.pathsep}{env.get('PATH', os.defpath)}"
    env["STRONGROOM_PYTHON"] = server_python()
    env["STRONGROOM_SHIM_LOG_DIR"] = str(log_dir)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """Kill pytest and every server it started (they share the session we gave it)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def run(
    suite: PreparedSuite,
    targets: Sequence[str],
    *,
    out_dir: Path,
    timeout: float,
    workers: int = 1,
    deselect: Sequence[str] = (),
    extra_args: Sequence[str] = (),
) -> RunResult:
    """Run hvac test modules or node ids (relative to the sdist root) against the shim.

    `out_dir` receives junit.xml, pytest.log and the server logs (servers/). The whole run, servers
    included, is killed after `timeout` seconds.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    junit = out_dir / "junit.xml"
    log_dir = out_dir / "servers"
    log_dir.mkdir(exist_ok=True)
    junit.unlink(missing_ok=True)
    cmd = [
        str(suite.python),
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        "-o",
        "addopts=",
        "-o",
        "junit_family=xunit2",
        "-rs",
        "--tb=short",
        f"--junitxml={junit}",
    ]
    if workers > 1:
        cmd += ["-n", str(workers), "--dist", "worksteal"]
    else:
        cmd += ["-p", "no:xdist"]
    for d in deselect:
        cmd += ["--deselect", d]
    cmd += [*extra_args, *targets]
    output_file = out_dir / "pytest.log"
    start = time.monotonic()
    timed_out = False
    with _locked(), open(output_file, "wb") as out:
        proc = subprocess.Popen(
            cmd,
            cwd=suite.root,
            env=_clean_env(log_dir),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
        finally:
            # Also reaps servers a crashed pytest left behind.
            _kill_group(proc)
            proc.wait()
    seconds = time.monotonic() - start
    output = output_file.read_text(errors="replace")
    result = RunResult(
        command=cmd,
        cwd=suite.root,
        returncode=None if timed_out else proc.returncode,
        seconds=seconds,
        timed_out=timed_out,
        output=output,
        junit=junit,
        log_dir=log_dir,
    )
    if junit.is_file():
        try:
            result.cases = parse_junit(junit, suite.root)
        except ET.ParseError as exc:  # pytest killed while writing it
            result.output += f"\n[hvac_suite] unreadable {junit}: {exc}"
    return result


def main(argv: Sequence[str]) -> int:
    """`python -m tests.realclients.hvac_suite [-n N] TARGET...`: run hvac tests, print a report."""
    args = list(argv)
    workers = 1
    if len(args) >= 2 and args[0] == "-n":
        workers, args = int(args[1]), args[2:]
    if not args:
        print(main.__doc__)
        return 2
    suite = prepare()
    out = WORK_DIR / "hvac-runs" / time.strftime("manual-%Y%m%d-%H%M%S")
    result = run(suite, args, out_dir=out, timeout=3600, workers=workers)
    print(result.report())
    for case in result.with_outcome("skipped"):
        print(f"SKIPPED {case.nodeid}: {case.message}")
    return 0 if result.cases and not result.with_outcome("failed", "error") else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
