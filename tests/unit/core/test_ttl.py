"""calculate_ttl against Vault's CalculateTTL rules, table-driven."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from strongroom.core.ttl import TTLError, calculate_ttl, go_duration, human_duration

H = 3600
NOW = 1_700_000_000.0


@dataclass
class View:
    default_ttl: int = 768 * H
    max_ttl: int = 768 * H

    def default_lease_ttl(self) -> int:
        return self.default_ttl

    def max_lease_ttl(self) -> int:
        return self.max_ttl


CASES = [
    # (id, view, kwargs, expected ttl, expected warnings)
    ("default when nothing given", View(), {}, 768 * H, []),
    ("mount default", View(default_ttl=H, max_ttl=2 * H), {}, H, []),
    ("backend ttl beats default", View(), {"backend_ttl": 600}, 600, []),
    ("increment beats backend ttl", View(), {"increment": 60, "backend_ttl": 600}, 60, []),
    (
        "ttl capped by system max",
        View(),
        {"backend_ttl": 1000 * H},
        768 * H,
        ['TTL of "1000h" exceeded the effective max_ttl of "768h"; TTL value is capped accordingly'],
    ),
    (
        "default above a lower mount max is capped",
        View(default_ttl=768 * H, max_ttl=H),
        {},
        H,
        ['TTL of "768h" exceeded the effective max_ttl of "1h"; TTL value is capped accordingly'],
    ),
    (
        "backend max lowers the ceiling",
        View(),
        {"backend_ttl": 2 * H, "backend_max_ttl": H},
        H,
        ['TTL of "2h" exceeded the effective max_ttl of "1h"; TTL value is capped accordingly'],
    ),
    (
        "backend max above system max is ignored",
        View(max_ttl=H),
        {"backend_max_ttl": 5 * H, "backend_ttl": 60},
        60,
        [],
    ),
    (
        "explicit max lowers the ceiling",
        View(),
        {"backend_ttl": 1800, "explicit_max_ttl": 300},
        300,
        ['TTL of "30m" exceeded the effective max_ttl of "5m"; TTL value is capped accordingly'],
    ),
    ("period is the ttl", View(), {"period": 1800, "backend_ttl": 60, "increment": 90}, 1800, []),
    (
        "period capped at the ceiling",
        View(max_ttl=H),
        {"period": 2 * H},
        H,
        ['period of "2h" exceeded the effective max_ttl of "1h"; period value is capped accordingly'],
    ),
    (
        "period ignores elapsed time without explicit max",
        View(),
        {"period": 600, "start_time": NOW - 800 * H},
        600,
        [],
    ),
    (
        "period cut by explicit max from start",
        View(),
        {"period": 600, "explicit_max_ttl": 900, "start_time": NOW - 500},
        400,
        ['TTL of "10m" exceeded the effective max_ttl of "6m40s"; TTL value is capped accordingly'],
    ),
    (
        "renewal near the end gets the remainder",
        View(max_ttl=H),
        {"increment": H, "start_time": NOW - 3000},
        600,
        ['TTL of "1h" exceeded the effective max_ttl of "10m"; TTL value is capped accordingly'],
    ),
    (
        "start time is truncated to the second",
        View(max_ttl=100),
        {"increment": 50, "start_time": NOW - 60.9},
        39,
        ['TTL of "50s" exceeded the effective max_ttl of "39s"; TTL value is capped accordingly'],
    ),
]


@pytest.mark.parametrize(
    ("view", "kwargs", "ttl", "warnings"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_calculate_ttl(view: View, kwargs: dict[str, float], ttl: int, warnings: list[str]) -> None:
    got_ttl, got_warnings = calculate_ttl(view, now=NOW, **kwargs)  # type: ignore[arg-type]
    assert got_ttl == ttl
    assert got_warnings == warnings


@pytest.mark.parametrize(
    ("view", "kwargs", "message"),
    [
        (View(max_ttl=H), {"start_time": NOW - H}, "past the max TTL, cannot renew"),
        (View(max_ttl=H), {"start_time": NOW - 2 * H, "increment": 10}, "past the max TTL, cannot renew"),
        (View(max_ttl=0), {}, "max TTL must be greater than zero"),
        (
            View(),
            {"period": 60, "explicit_max_ttl": 60, "start_time": NOW - 61},
            "past the max TTL, cannot renew",
        ),
    ],
)
def test_calculate_ttl_errors(view: View, kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(TTLError) as err:
        calculate_ttl(view, now=NOW, **kwargs)  # type: ignore[arg-type]
    assert err.value.errors == [message]
    assert err.value.status == 400


def test_start_zero_means_now() -> None:
    assert calculate_ttl(View(max_ttl=H), 0, 2 * H, now=NOW)[0] == H


@pytest.mark.parametrize(
    ("seconds", "go", "human"),
    [
        (0, "0s", "0s"),
        (5, "5s", "5s"),
        (60, "1m0s", "1m"),
        (90, "1m30s", "1m30s"),
        (3600, "1h0m0s", "1h"),
        (3630, "1h0m30s", "1h30s"),
        (5400, "1h30m0s", "1h30m"),
        (768 * H, "768h0m0s", "768h"),
        (2764799, "767h59m59s", "767h59m59s"),
    ],
)
def test_duration_formats(seconds: int, go: str, human: str) -> None:
    assert go_duration(seconds) == go
    assert human_duration(seconds) == human
