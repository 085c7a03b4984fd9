"""hvac 2.4.0's own integration suite against strongroom, one test per hvac module.

How it works: tests/realclients/hvac_suite.py fetches hvac's sdist into .work/, builds .work/hvac-venv
and runs the hvac modules below from the unpacked sdist with tests/realclients/vault_shim first on PATH;
the shim's `vault server -config=FILE` execs `python -m strongroom server -config=FILE`.

Run:
    .venv/bin/python -m pytest -p no:cacheprovider -m hvac tests/realclients -rs
    STRONGROOM_HVAC_ALL=1 ...          also the modules of later issues (marked `issue(N)`)
    ... -k kv_v2                       one module
    STRONGROOM_HVAC_WORKERS=2 ...      pytest-xdist workers inside each hvac run (default 1)
    STRONGROOM_HVAC_REQUIRE_SERVER=1   fail, rather than skip, while `strongroom server` does not exist
    STRONGROOM_HVAC_BUDGET_S=2400      wall-clock budget for all hvac runs of a session (default 40 min)
    STRONGROOM_PYTHON=...              the interpreter the shim runs the server with (default: this one)
Each run leaves junit.xml, pytest.log and one log per server launch in .work/hvac-runs/<id>/.

A module passes when hvac reports no failure and no error, at least one of its tests passed, and every
skipped test is either listed in HVAC_MODULES with our reason or skipped by hvac itself with a reason
written in that module (a version or Enterprise gate). A skip from anywhere else ("Vault executable not
found", a class-wide SkipTest from hvac's tests/utils) fails the module.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

try:
    from tests.realclients import hvac_suite
except ImportError:  # tests/ is not importable as a package: pytest put this folder on sys.path
    import hvac_suite  # type: ignore[no-redef]


@dataclass(frozen=True)
class KnownSkip:
    """An hvac test we knowingly do not expect to pass, and why.

    deselect=False: hvac skips it itself in our setup; we only expect that.
    deselect=True: hvac would run it; we pass --deselect so it does not run at all.
    """

    test: str  # Class::test_name, as in the pytest node id
    reason: str
    deselect: bool = False


@dataclass(frozen=True)
class HvacModule:
    issue: int | None = None  # None: the core acceptance run; N: made to pass by issue N
    skips: tuple[KnownSkip, ...] = ()
    timeout_s: int = 300  # the whole hvac run of this module, servers included


def _skips(reason: str, cls: str, *names: str, deselect: bool = False) -> tuple[KnownSkip, ...]:
    return tuple(KnownSkip(f"{cls}::{n}", reason, deselect) for n in names)


SYS = "tests/integration_tests/api/system_backend"
AUTH = "tests/integration_tests/api/auth_methods"
SECRETS = "tests/integration_tests/api/secrets_engines"
V1 = "tests/integration_tests/v1"

# The table: hvac module (path inside the sdist) -> what we expect of it.
HVAC_MODULES: dict[str, HvacModule] = {
    # --- core: sys, token, kv ---
    f"{SYS}/test_init.py": HvacModule(),
    f"{SYS}/test_seal.py": HvacModule(),
    f"{SYS}/test_health.py": HvacModule(
        skips=_skips(
            "HA-only: needs consul (hvac skips it when consul is not on PATH)",
            "TestHealth",
            "test_read_health_status_1_unsealed_standby_node_HEAD_method",
            "test_read_health_status_2_unsealed_standby_node_GET_method",
            "test_read_health_status_3_sealed_standby_node_HEAD_method",
            "test_read_health_status_4_sealed_standby_node_GET_method",
        )
    ),
    f"{SYS}/test_mount.py": HvacModule(),
    f"{SYS}/test_auth.py": HvacModule(),
    f"{SYS}/test_policy.py": HvacModule(),
    f"{SYS}/test_policies.py": HvacModule(
        skips=_skips(
            "Enterprise-only: RGP/EGP (Sentinel) policies; hvac skips them for a non-+ent version",
            "TestPolicies",
            *(
                f"test_{op}_{kind}_policy"
                for op in ("create", "read", "update", "list", "delete")
                for kind in ("egp", "rgp")
            ),
        )
    ),
    f"{SYS}/test_key.py": HvacModule(),
    f"{SYS}/test_leader.py": HvacModule(),
    f"{SYS}/test_wrapping.py": HvacModule(),
    f"{SYS}/test_audit.py": HvacModule(),
    f"{AUTH}/test_token.py": HvacModule(),
    f"{SECRETS}/test_kv_v1.py": HvacModule(),
    f"{SECRETS}/test_kv_v2.py": HvacModule(timeout_s=600),
    f"{SECRETS}/test_pki.py": HvacModule(),
    f"{SYS}/test_lease.py": HvacModule(),  # its leases come from PKI issue with generate_lease
    f"{AUTH}/test_approle.py": HvacModule(),
    f"{V1}/test_approle.py": HvacModule(),
    f"{AUTH}/test_github.py": HvacModule(),
    f"{V1}/test_integration.py": HvacModule(  # userpass, generic/kv, token roles, cubbyhole
        skips=_skips(
            "needs the transit secrets engine, which no issue has scheduled yet",
            "IntegrationTest",
            "test_write_with_response",
            deselect=True,
        )
        + _skips(
            "needs the gcp auth method, which strongroom does not provide",
            "IntegrationTest",
            "test_auth_gcp_alternate_mount_point_with_no_client_token_exception",
            deselect=True,
        )
        + _skips(
            "client-side only: the installed requests words its header error differently than hvac asserts;"
            " no request reaches the server",
            "IntegrationTest",
            "test_illegal_token",
            deselect=True,
        )
    ),
    # --- later issues (skipped unless STRONGROOM_HVAC_ALL=1) ---
    f"{AUTH}/test_cert.py": HvacModule(  # 22 pass; the 6 logins below fail inside hvac before any request
        skips=tuple(
            s
            for cls in ("TestCert", "TestCertEnv")
            for s in _skips(
                "client-side only: hvac's test calls cert.login() without key_pem, so requests hands"
                " load_cert_chain(cert, '') and it raises FileNotFoundError before connecting",
                cls,
                "test_login_0_testrole",
                "test_login_1_",
                "test_login_2_testrole2",
                deselect=True,
            )
        )
    ),
    f"{SECRETS}/test_identity.py": HvacModule(timeout_s=600),  # all 95 pass, none skipped
    f"{AUTH}/test_ldap.py": HvacModule(),  # 33 pass; test_login_3 is hvac's own version gate; needs Java
    f"{AUTH}/test_jwt.py": HvacModule(),  # all 7 pass (config via identity OIDC, role CRUD, jwt login)
    f"{AUTH}/test_oidc.py": HvacModule(),  # all 7 pass, incl. the auth-code callback via hvac's Flask provider
    f"{AUTH}/test_kubernetes.py": HvacModule(),  # config and role CRUD: all 20 pass
}

RUN_ALL = os.environ.get("STRONGROOM_HVAC_ALL") == "1"
WORKERS = int(os.environ.get("STRONGROOM_HVAC_WORKERS", "1"))
# Preparing the sdist and venv on a fresh clone takes ~15 s; leave room for it and the report.
PREPARE_MARGIN_S = 300
# All hvac runs of one session together: a server that hangs every request must not eat CI's 90 minutes.
BUDGET_S = float(os.environ.get("STRONGROOM_HVAC_BUDGET_S", "2400"))
_deadline: list[float] = []  # set when the first hvac module starts


def _module_id(path: str) -> str:
    """tests/integration_tests/api/system_backend/test_init.py -> sys_init."""
    rel = path.removeprefix("tests/integration_tests/").removesuffix(".py")
    area, _, name = rel.rpartition("/")
    area = {"api/system_backend": "sys", "api/auth_methods": "auth", "api/secrets_engines": "secrets"}.get(
        area, area
    )
    return f"{area}_{name.removeprefix('test_')}"


def _params() -> list[object]:
    params: list[object] = []
    for path, spec in HVAC_MODULES.items():
        marks: list[pytest.MarkDecorator] = [pytest.mark.timeout(spec.timeout_s + PREPARE_MARGIN_S)]
        if spec.issue is not None:
            marks.append(pytest.mark.issue(spec.issue))
            marks.append(
                pytest.mark.skipif(
                    not RUN_ALL,
                    reason=f"not yet implemented: issue {spec.issue} (STRONGROOM_HVAC_ALL=1 runs it anyway)",
                )
            )
        params.append(pytest.param(path, id=_module_id(path), marks=marks))
    return params


def _defined_tests(source: str) -> set[str]:
    return set(re.findall(r"^\s*def (test\w*)\s*\(", source, re.MULTILINE))


def _names_a_test(source: str, short_id: str) -> bool:
    """Does Class::test_name exist in this hvac module (parameterized names carry a _N_label suffix)?"""
    cls, _, name = short_id.rpartition("::")
    if cls and not re.search(rf"^class {re.escape(cls)}\b", source, re.MULTILINE):
        return False
    return any(name == d or name.startswith(d + "_") for d in _defined_tests(source))


def test_table_is_consistent() -> None:
    """The table itself: unique ids, well-formed paths, every known skip has a reason."""
    ids = [_module_id(p) for p in HVAC_MODULES]
    assert len(ids) == len(set(ids)), ids
    for path, spec in HVAC_MODULES.items():
        assert path.startswith("tests/integration_tests/") and path.endswith(".py"), path
        for skip in spec.skips:
            assert skip.reason.strip(), f"{path}::{skip.test} has no reason"
            assert "::" in skip.test, f"{path}: {skip.test!r} should be Class::test_name"


@pytest.mark.hvac
@pytest.mark.parametrize("module", _params())
def test_hvac_module(module: str, hvac_prepared: hvac_suite.PreparedSuite) -> None:
    spec = HVAC_MODULES[module]
    source_file = hvac_prepared.root / module
    assert source_file.is_file(), f"hvac {hvac_suite.HVAC_VERSION}'s sdist has no {module}"
    source = source_file.read_text()

    problems: list[str] = []
    known = {f"{module}::{s.test}": s for s in spec.skips}
    for nodeid, skip in known.items():
        if not _names_a_test(source, skip.test):
            problems.append(
                f"HVAC_MODULES lists {nodeid}, which is not a test in hvac's module (stale entry?)"
            )

    if not _deadline:
        _deadline.append(time.monotonic() + BUDGET_S)
    timeout = min(spec.timeout_s, _deadline[0] - time.monotonic())
    if timeout < 30:
        pytest.fail(
            f"the hvac session budget of {BUDGET_S:.0f}s (STRONGROOM_HVAC_BUDGET_S) is spent", pytrace=False
        )

    out_dir = hvac_suite.WORK_DIR / "hvac-runs" / _module_id(module)
    shutil.rmtree(out_dir, ignore_errors=True)
    result = hvac_suite.run(
        hvac_prepared,
        [module],
        out_dir=out_dir,
        timeout=timeout,
        workers=WORKERS,
        deselect=[nodeid for nodeid, s in known.items() if s.deselect],
    )

    if result.timed_out:
        problems.append(f"hvac's run did not finish within {timeout:.0f}s and was killed")
    elif result.returncode not in (0, 1):
        problems.append(f"hvac's pytest exited {result.returncode} (interrupted, internal or usage error)")
    if not result.cases:
        problems.append("hvac's run produced no test results")
    bad = result.with_outcome("failed", "error")
    if bad:
        problems.append(f"{len(bad)} hvac tests failed or errored (listed below)")

    skip_lines: list[str] = []
    for case in result.with_outcome("skipped"):
        ours = known.get(case.nodeid)
        if ours is not None:
            skip_lines.append(f"  {case.short_id}: {ours.reason} [hvac: {case.message}]")
        elif case.message.strip() and case.message.strip() in source:
            skip_lines.append(f"  {case.short_id}: hvac skips it: {case.message}")
        else:
            problems.append(
                f"unexpected skip {case.short_id}: {case.message or '(no reason)'} - not in HVAC_MODULES, "
                "and not a skip hvac's module itself declares"
            )
    for nodeid, skip in known.items():
        if skip.deselect:
            skip_lines.append(f"  {skip.test}: {skip.reason} [deselected by us]")
    if not result.with_outcome("passed"):
        problems.append("no hvac test passed: the module was skipped or failed wholesale")

    print(result.summary())
    if skip_lines:
        print("skipped:\n" + "\n".join(skip_lines))
    passed_but_listed = [c.short_id for c in result.with_outcome("passed") if c.nodeid in known]
    if passed_but_listed:
        print("listed as known skips but passed (remove from HVAC_MODULES?): " + ", ".join(passed_but_listed))

    if problems:
        pytest.fail("\n".join(problems) + "\n\n" + result.report(), pytrace=False)


def test_shim_prints_the_version_hvac_parses() -> None:
    """hvac reads `vault -version`'s second word, minus a leading v; no `+ent` suffix."""
    import subprocess

    shim = Path(hvac_suite.SHIM_DIR) / "vault"
    for arg in ("-version", "version"):
        out = subprocess.run([str(shim), arg], capture_output=True, text=True, timeout=30, check=True).stdout
        assert out.strip() == hvac_suite.SHIM_VERSION_LINE
        assert out.strip().split()[1].lstrip("v") == "1.16.3"
    bad = subprocess.run(
        [str(shim), "kv", "get", "x"], capture_output=True, text=True, timeout=30, check=False
    )
    assert bad.returncode == 1 and "unsupported" in bad.stderr


def test_shim_decodes_a_generated_root_token() -> None:
    """`vault operator generate-root -decode ENC -otp OTP` as hvac's decode_generated_root_token calls it."""
    import base64
    import subprocess

    otp = "BMjzW3wAsEzINXCM05Wbas3u9zSl"  # hvac's OTP for Vault >= 1.10
    token = "hvs.AbC-dEf_GhIjKlMnOpQrStUv"
    xored = bytes(a ^ b for a, b in zip(token.encode(), otp.encode(), strict=True))
    shim = str(Path(hvac_suite.SHIM_DIR) / "vault")
    for encoded in (
        base64.b64encode(xored).decode().rstrip("="),  # what Vault sends: RawStdEncoding
        base64.b64encode(xored).decode(),
        base64.urlsafe_b64encode(xored).decode(),
    ):
        argv = [shim, "operator", "generate-root", "-address", "https://127.0.0.1:1", "-tls-skip-verify"]
        out = subprocess.run(
            [*argv, "-decode", encoded, "-otp", otp], capture_output=True, text=True, timeout=30, check=True
        ).stdout
        assert out.replace("Root token:", "").strip() == token
    wrong = subprocess.run(
        [shim, "operator", "generate-root", "-decode", "AAAA", "-otp", otp],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert wrong.returncode != 0
