"""certbot, lego and uacme against strongroom's ACME server: the very scenarios proven on pebble.

What the server must provide for these to pass (paths, config fields, behaviour) is in README.md
next to this file; ``start_strongroom`` in targets.py is the setup.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.acme import scenarios
from tests.integration.acme.conftest import run_scenario
from tests.integration.acme.targets import AcmeTarget, start_strongroom

pytestmark = pytest.mark.acme

START_TARGET = start_strongroom


@pytest.mark.parametrize("scenario", scenarios.OPEN, ids=scenarios.scenario_id)
def test_open_directory(scenario: scenarios.Scenario, acme_target: AcmeTarget, tmp_path: Path) -> None:
    run_scenario(scenario, acme_target, tmp_path)


@pytest.mark.parametrize("scenario", scenarios.EAB, ids=scenarios.scenario_id)
def test_eab_directory(scenario: scenarios.Scenario, acme_eab_target: AcmeTarget, tmp_path: Path) -> None:
    run_scenario(scenario, acme_eab_target, tmp_path)
