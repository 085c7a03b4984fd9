"""CVE-2025-6011: a login for an unknown user must cost what a wrong password for a real one costs.

Vault once answered unknown users fast (bcrypt against a non-hash), so response times
enumerated users. Here both paths read storage, count the attempt and run a bcrypt check
of the same cost; this test times many interleaved logins of each kind over HTTP and
requires no usable difference: medians within 0.8–1.25 of each other, and neither a
Mann-Whitney U test nor a two-sample Kolmogorov-Smirnov test telling the samples apart
(p > 0.001). The statistics use the standard library only.

A negative control makes the unknown-user path cheaper on purpose (a dummy hash of a
lower cost) and checks the same detector does flag it, so a pass means something.

Bounded: ``TRIES`` logins of each kind at ``TIMING_COST`` (a few ms per hash), a few
seconds in all; a round that loses to machine noise is measured again, up to ``ROUNDS``.
"""

from __future__ import annotations

import math
import random
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import bcrypt
import pytest

import strongroom.auth.userpass as userpass
from strongroom.core.mounts import MountEntry
from strongroom.testing import Harness, running_core

TIMING_COST = 6  # ~6 ms per hash here: bcrypt dominates, the run stays short
TRIES = 60  # logins of each kind per round
WARMUP = 10
ROUNDS = 3
MEDIAN_RATIO = (0.8, 1.25)
MIN_P = 0.001


# -- statistics (stdlib only) ----------------------------------------------------------------------


def _ranks(values: list[float]) -> list[float]:
    """1-based ranks, ties sharing their average rank."""
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def mann_whitney_p(a: list[float], b: list[float]) -> float:
    """Two-sided p-value of the Mann-Whitney U test (normal approximation, tie-corrected)."""
    n1, n2 = len(a), len(b)
    n = n1 + n2
    ranks = _ranks(a + b)
    u1 = sum(ranks[:n1]) - n1 * (n1 + 1) / 2
    counts: dict[float, int] = {}
    for value in a + b:
        counts[value] = counts.get(value, 0) + 1
    ties = sum(t**3 - t for t in counts.values())
    variance = n1 * n2 / 12 * ((n + 1) - ties / (n * (n - 1)))
    if variance <= 0:
        return 1.0
    z = (abs(u1 - n1 * n2 / 2) - 0.5) / math.sqrt(variance)
    return min(1.0, 2 * (1 - statistics.NormalDist().cdf(max(z, 0.0))))


def ks_p(a: list[float], b: list[float]) -> float:
    """Two-sided p-value of the two-sample Kolmogorov-Smirnov test (asymptotic distribution)."""
    sa, sb = sorted(a), sorted(b)
    i = j = 0
    d = 0.0
    while i < len(sa) and j < len(sb):
        x = min(sa[i], sb[j])
        while i < len(sa) and sa[i] == x:
            i += 1
        while j < len(sb) and sb[j] == x:
            j += 1
        d = max(d, abs(i / len(sa) - j / len(sb)))
    ne = len(sa) * len(sb) / (len(sa) + len(sb))
    lam = (math.sqrt(ne) + 0.12 + 0.11 / math.sqrt(ne)) * d
    if lam < 1e-3:
        return 1.0
    total = sum((1.0 if k % 2 else -1.0) * math.exp(-2 * k * k * lam * lam) for k in range(1, 101))
    return max(0.0, min(1.0, 2 * total))


@dataclass
class Verdict:
    known_median_ms: float
    unknown_median_ms: float
    ratio: float
    mann_whitney_p: float
    ks_p: float

    @property
    def indistinguishable(self) -> bool:
        low, high = MEDIAN_RATIO
        return low <= self.ratio <= high and self.mann_whitney_p > MIN_P and self.ks_p > MIN_P


def compare(known: list[float], unknown: list[float]) -> Verdict:
    mk, mu = statistics.median(known), statistics.median(unknown)
    return Verdict(mk * 1e3, mu * 1e3, mu / mk, mann_whitney_p(known, unknown), ks_p(known, unknown))


def test_the_statistics_tell_apart_what_differs_and_only_that() -> None:
    rng = random.Random(7)
    same_a = [rng.gauss(10, 1) for _ in range(60)]
    same_b = [rng.gauss(10, 1) for _ in range(60)]
    shifted = [rng.gauss(13, 1) for _ in range(60)]
    assert compare(same_a, same_b).indistinguishable
    far = compare(same_a, shifted)
    assert not far.indistinguishable and far.mann_whitney_p < 1e-6 and far.ks_p < 1e-6
    assert mann_whitney_p([1.0] * 10, [1.0] * 10) == 1.0  # all ties


# -- the measurement -------------------------------------------------------------------------------


@pytest.fixture
async def h(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Harness]:
    monkeypatch.setattr(userpass, "BCRYPT_COST", TIMING_COST)
    async with running_core() as harness:
        if harness.core.expiration is not None:
            await harness.core.expiration.stop()
        await harness.core.enable_mount(MountEntry("userpass/", "userpass", table="auth"))
        # a threshold no run reaches: the lockout bookkeeping still runs on every attempt
        r = await harness.call(
            "POST", "sys/auth/userpass/tune", json={"user_lockout_config": {"lockout_threshold": "100000"}}
        )
        assert r.status_code == 204, r.text
        r = await harness.call("POST", "auth/userpass/users/known", json={"password": "the-right-one"})
        assert r.status_code == 204, r.text
        yield harness


async def measure(h: Harness, seed: int) -> Verdict:
    async def timed(name: str) -> float:
        start = time.perf_counter()
        r = await h.call("POST", f"auth/userpass/login/{name}", json={"password": "a-wrong-one"}, token="")
        elapsed = time.perf_counter() - start
        assert r.status_code == 400 and r.json() == {"errors": [userpass.INVALID_LOGIN]}
        return elapsed

    for _ in range(WARMUP):
        await timed("known")
        await timed("nobody")
    order = ["known"] * TRIES + ["nobody"] * TRIES
    random.Random(seed).shuffle(order)
    samples: dict[str, list[float]] = {"known": [], "nobody": []}
    for name in order:
        samples[name].append(await timed(name))
    return compare(samples["known"], samples["nobody"])


async def best_of_rounds(h: Harness, stop: Callable[[Verdict], bool]) -> list[Verdict]:
    verdicts: list[Verdict] = []
    for seed in range(ROUNDS):
        verdicts.append(await measure(h, seed))
        if stop(verdicts[-1]):
            break
    return verdicts


@pytest.mark.slow
async def test_unknown_user_and_wrong_password_take_the_same_time(h: Harness) -> None:
    verdicts = await best_of_rounds(h, lambda v: v.indistinguishable)
    assert verdicts[-1].indistinguishable, verdicts


@pytest.mark.slow
async def test_the_detector_flags_a_cheaper_unknown_user_path(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Negative control: check unknown users against a cost-4 dummy (the bug) and expect a flag."""
    cheap = bcrypt.hashpw(b"decoy", bcrypt.gensalt(4))
    real: Callable[[int], Awaitable[bytes]] = userpass.dummy_hash

    async def leaky_dummy(cost: int) -> bytes:
        await real(cost)
        return cheap

    monkeypatch.setattr(userpass, "dummy_hash", leaky_dummy)
    verdicts = await best_of_rounds(h, lambda v: not v.indistinguishable)
    assert not verdicts[-1].indistinguishable, verdicts
    assert verdicts[-1].ratio < MEDIAN_RATIO[0], verdicts
