"""Replay-Nonces: single use node-wide, across forked worker processes."""

from __future__ import annotations

import multiprocessing
import os
import types
from typing import Any

import pytest

from strongroom.engines.pki.acme import nonces
from strongroom.engines.pki.acme.jws import b64url_decode, b64url_encode
from strongroom.engines.pki.acme.nonces import NonceTable, nonce_table

FORK = multiprocessing.get_context("fork")


def test_issue_and_redeem_once() -> None:
    table = NonceTable(slots=64)
    issued = [table.issue() for _ in range(10)]
    assert len(set(issued)) == 10
    for nonce in issued:
        assert len(nonce) == 32 and b64url_encode(b64url_decode(nonce)) == nonce
    for nonce in reversed(issued):  # any order
        assert table.redeem(nonce) is True
        assert table.redeem(nonce) is False


def test_garbage_forged_and_foreign_nonces_are_refused() -> None:
    table = NonceTable(slots=64)
    other = NonceTable(slots=64)
    nonce = table.issue()
    raw = b64url_decode(nonce)
    forged_mac = b64url_encode(raw[:-1] + bytes([raw[-1] ^ 1]))
    next_number = b64url_encode((int.from_bytes(raw[:8], "big") + 1).to_bytes(8, "big") + raw[8:])
    for bad in [
        "",
        "x",
        nonce[:-1],
        nonce + "A",
        nonce + "=",
        nonce[:-1] + "+",
        "A" * 32,
        "é" * 32,
        forged_mac,
        next_number,  # the next number with this MAC: guessing the counter is not enough
        other.issue(),  # same number, another table's secret
        None,
        12345,
        b"bytes",
        ["list"],
    ]:
        assert table.redeem(bad) is False, bad
    assert table.redeem(nonce) is True  # none of the garbage spent the real one


def test_nonces_expire_after_a_table_full_of_newer_ones() -> None:
    table = NonceTable(slots=8)
    old = [table.issue() for _ in range(8)]
    newer = [table.issue() for _ in range(3)]  # overwrite the slots of old[0..2]
    assert [table.redeem(n) for n in old] == [False] * 3 + [True] * 5
    assert all(table.redeem(n) for n in newer)


def test_nonces_expire_by_age() -> None:
    now = [1000.0]
    table = NonceTable(slots=16, max_age=60, clock=lambda: now[0])
    stale, fresh = table.issue(), table.issue()
    now[0] += 30
    assert table.redeem(fresh) is True
    now[0] += 31
    assert table.redeem(stale) is False
    assert table.redeem(stale) is False


def test_nonce_table_for_a_core() -> None:
    shared = NonceTable(slots=16)
    assert nonce_table(types.SimpleNamespace(acme_nonces=shared)) is shared
    local = nonce_table(None)
    assert nonce_table(types.SimpleNamespace()) is local  # a Core without a shared table
    assert nonce_table(types.SimpleNamespace(acme_nonces=None)) is local
    assert local.redeem(nonce_table(None).issue()) is True


def _redeem_all(table: NonceTable, issued: list[str], start: Any, results: Any) -> None:
    start.wait()
    won = [i for i, nonce in enumerate(issued) if table.redeem(nonce)]
    results.put((os.getpid(), won))


def test_each_nonce_is_redeemed_once_across_processes() -> None:
    table = NonceTable(slots=1024)
    issued = [table.issue() for _ in range(200)]
    start = FORK.Event()
    results = FORK.Queue()
    workers = [FORK.Process(target=_redeem_all, args=(table, issued, start, results)) for _ in range(4)]
    for proc in workers:
        proc.start()
    start.set()  # all four race over the same list
    wins = [results.get(timeout=10) for _ in workers]
    for proc in workers:
        proc.join(timeout=10)
        assert proc.exitcode == 0
    redeemed = sorted(i for _, won in wins for i in won)
    assert redeemed == list(range(200))  # every nonce exactly once in total
    assert not any(table.redeem(nonce) for nonce in issued)


def _issue_some(table: NonceTable, results: Any) -> None:
    results.put([table.issue() for _ in range(5)])


def test_a_nonce_issued_in_a_child_is_redeemable_in_the_parent() -> None:
    table = NonceTable(slots=64)
    before = table.issue()
    results = FORK.Queue()
    child = FORK.Process(target=_issue_some, args=(table, results))
    child.start()
    from_child = results.get(timeout=10)
    child.join(timeout=10)
    assert child.exitcode == 0
    after = table.issue()
    assert len({before, after, *from_child}) == 7  # one counter for all processes
    assert all(table.redeem(n) for n in [before, *from_child, after])
    assert not any(table.redeem(n) for n in from_child)


def _hold_the_lock_and_die(table: NonceTable) -> None:
    table._locked().__enter__()
    os._exit(0)  # dies holding the lock


def test_a_worker_dying_with_the_lock_does_not_wedge_the_others() -> None:
    table = NonceTable(slots=16)
    child = FORK.Process(target=_hold_the_lock_and_die, args=(table,))
    child.start()
    child.join(timeout=10)
    assert table.redeem(table.issue()) is True


def test_slots_must_be_positive() -> None:
    with pytest.raises(ValueError):
        NonceTable(slots=0)
    assert nonces.DEFAULT_MAX_AGE == 3600
