"""Fixtures for the real-ACME-client suites.

A test module sets ``START_TARGET`` to a launcher (``start_pebble``, ``start_strongroom``) and gets
two module-scoped servers from it: ``acme_target`` (no EAB) and ``acme_eab_target`` (EAB required),
each with its own loopback DNS server, both stopped when the module ends. ``run_scenario`` runs one
scenario and, when it fails, prints the servers' log tails (pytest shows them with the failure).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.acme.scenarios import Scenario
from tests.integration.acme.targets import AcmeTarget

TOOLS = (
    "/usr/bin/pebble",
    "/usr/bin/pebble-challtestsrv",
    "/usr/bin/lego",
    "/usr/bin/uacme",
    "openssl",
    "unshare",
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "acme: real ACME clients (certbot, lego, uacme) against an ACME server"
    )


def _missing_tools() -> list[str]:
    return [t for t in TOOLS if shutil.which(t) is None]


def _start(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, eab_required: bool
) -> Iterator[AcmeTarget]:
    missing = _missing_tools()
    if missing:
        pytest.fail(f"ACME test tools missing: {missing} (make apt_install)", pytrace=False)
    start: Callable[..., AcmeTarget] = request.module.START_TARGET
    folder = tmp_path_factory.mktemp("acme-eab" if eab_required else "acme")
    target = start(folder, eab_required=eab_required)
    try:
        yield target
    finally:
        target.stop()


@pytest.fixture(scope="module")
def acme_target(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AcmeTarget]:
    yield from _start(request, tmp_path_factory, eab_required=False)


@pytest.fixture(scope="module")
def acme_eab_target(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AcmeTarget]:
    yield from _start(request, tmp_path_factory, eab_required=True)


def run_scenario(scenario: Scenario, target: AcmeTarget, tmp_path: Path) -> None:
    try:
        scenario(target, tmp_path)
    except BaseException:
        print(f"=== {target.name} logs (tail) ===\n{target.log_tail()}")
        raise
