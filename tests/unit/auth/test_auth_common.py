"""Shared auth-method code: token_* settings (partial updates, legacy aliases, views), CIDRs, lockout."""

from __future__ import annotations

from typing import Any

import pytest

from strongroom.auth.common import (
    TOKEN_FIELDS,
    LockoutPolicy,
    LoginLockout,
    TokenParams,
    check_cidrs,
    cidrs_subset,
    parse_cidrs,
    token_fields,
    validate_cidr_blocks,
)
from strongroom.framework import FieldData
from strongroom.logical.errors import UserError
from strongroom.logical.request import Auth


def data(raw: dict[str, Any], *legacy: str) -> FieldData:
    d = FieldData(token_fields(*legacy), raw)
    d.validate()
    return d


def test_defaults_read_back_as_vault_does() -> None:
    assert TokenParams().to_api() == {
        "token_bound_cidrs": [],
        "token_explicit_max_ttl": 0,
        "token_max_ttl": 0,
        "token_no_default_policy": False,
        "token_period": 0,
        "token_policies": [],
        "token_type": "default",
        "token_ttl": 0,
        "token_num_uses": 0,
    }


def test_every_field_parses_and_durations_come_back_as_seconds() -> None:
    p = TokenParams.from_fields(
        data(
            {
                "token_ttl": "1h",
                "token_max_ttl": 7200,
                "token_policies": "A, b,,a",
                "token_bound_cidrs": ["127.0.0.1", "10.0.0.0/8", "10.1.2.3/16"],
                "token_explicit_max_ttl": "3h",
                "token_no_default_policy": "true",
                "token_num_uses": "3",
                "token_period": "30m",
                "token_type": "service",
            }
        )
    )
    api = p.to_api()
    assert api["token_ttl"] == 3600 and api["token_max_ttl"] == 7200
    assert api["token_explicit_max_ttl"] == 10800 and api["token_period"] == 1800
    assert api["token_policies"] == ["a", "b"]
    assert api["token_bound_cidrs"] == ["127.0.0.1", "10.0.0.0/8", "10.1.2.3/16"]
    assert api["token_no_default_policy"] is True and api["token_num_uses"] == 3
    assert api["token_type"] == "service"


def test_partial_update_changes_only_sent_fields() -> None:
    first = TokenParams.from_fields(data({"token_ttl": 60, "token_policies": "a", "token_num_uses": 2}))
    second = TokenParams.from_fields(data({"token_max_ttl": 600}), first)
    assert (second.ttl, second.max_ttl, second.policies, second.num_uses) == (60, 600, ["a"], 2)
    assert first.max_ttl == 0  # the existing value is not modified in place


def test_json_round_trip_keeps_everything() -> None:
    p = TokenParams.from_fields(
        data(
            {"policies": "x,y", "period": "1m", "token_bound_cidrs": "::1", "token_type": "batch"},
            "policies",
            "period",
        )
    )
    assert TokenParams.from_json(p.to_json()) == p
    assert TokenParams.from_json(None) == TokenParams()


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"token_type": "bogus"}, "invalid 'token_type' value"),
        ({"token_num_uses": -1}, "'token_num_uses' cannot be negative"),
        ({"token_ttl": 20, "token_max_ttl": 10}, "'token_ttl' cannot be greater than 'token_max_ttl'"),
        ({"token_type": "batch", "token_period": 10}, "periodic tokens"),
        ({"token_type": "default-batch", "token_num_uses": 1}, "limited use count"),
        ({"token_bound_cidrs": "not-an-ip"}, "invalid token_bound_cidrs"),
    ],
)
def test_invalid_settings_are_refused(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(UserError) as err:
        TokenParams.from_fields(data(raw))
    assert message in str(err.value)


@pytest.mark.parametrize(
    "token_type", ["", "default", "service", "batch", "default-service", "default-batch"]
)
def test_all_token_types_are_accepted(token_type: str) -> None:
    p = TokenParams.from_fields(data({"token_type": token_type}))
    assert p.token_type == (token_type or "default")


def test_legacy_alias_is_honoured_and_shown_back_only_while_used() -> None:
    p = TokenParams.from_fields(
        data({"policies": "a,b", "period": 60, "bound_cidrs": "1.2.3.4"}, *_ALL_LEGACY)
    )
    assert p.policies == ["a", "b"] and p.period == 60 and p.bound_cidrs == ["1.2.3.4"]
    api = p.to_api()
    assert api["policies"] == ["a", "b"] and api["period"] == 60 and api["bound_cidrs"] == ["1.2.3.4"]
    # the new name wins when both are sent; the old one then mirrors it
    both = TokenParams.from_fields(data({"policies": "old", "token_policies": "new"}, *_ALL_LEGACY), p)
    assert both.policies == ["new"] and both.to_api()["policies"] == ["new"]
    # the new name alone clears the legacy copy
    new_only = TokenParams.from_fields(data({"token_period": 5}, *_ALL_LEGACY), p)
    assert new_only.period == 5 and "period" not in new_only.to_api()
    assert new_only.to_api()["policies"] == ["a", "b"]  # untouched fields keep their legacy view
    # without the legacy view
    assert "policies" not in p.to_api(legacy=False)


_ALL_LEGACY = ("policies", "period", "bound_cidrs", "ttl", "max_ttl")


def test_undeclared_legacy_alias_is_ignored() -> None:
    d = FieldData(TOKEN_FIELDS, {"policies": "a"})
    assert TokenParams.from_fields(d).policies == []


def test_legacy_ttl_and_max_ttl() -> None:
    p = TokenParams.from_fields(data({"ttl": "5m", "max_ttl": "10m"}, "ttl", "max_ttl"))
    assert (p.ttl, p.max_ttl) == (300, 600)
    assert p.to_api()["ttl"] == 300
    with pytest.raises(UserError):
        TokenParams.from_fields(data({"ttl": "20m", "max_ttl": "10m"}, "ttl", "max_ttl"))


def test_apply_fills_the_auth_block() -> None:
    p = TokenParams.from_fields(
        data(
            {
                "token_policies": "p1",
                "token_ttl": 10,
                "token_max_ttl": 20,
                "token_explicit_max_ttl": 30,
                "token_period": 5,
                "token_num_uses": 4,
                "token_bound_cidrs": "10.0.0.0/8",
                "token_no_default_policy": True,
                "token_type": "service",
            }
        )
    )
    auth = p.apply(Auth(renewable=False))
    assert auth.policies == ["p1"]
    assert (auth.ttl, auth.max_ttl, auth.explicit_max_ttl, auth.period, auth.num_uses) == (10, 20, 30, 5, 4)
    assert auth.bound_cidrs == ["10.0.0.0/8"] and auth.no_default_policy and auth.token_type == "service"
    assert auth.renewable
    auth.policies.append("x")
    assert p.policies == ["p1"]  # no aliasing between the role and the auth block


@pytest.mark.parametrize(
    ("addr", "cidrs", "ok"),
    [
        ("1.2.3.4", [], True),
        ("1.2.3.4", ["1.2.3.0/24"], True),
        ("1.2.4.4", ["1.2.3.0/24"], False),
        ("1.2.3.4", ["1.2.3.4"], True),
        ("::1", ["::1/128"], True),
        ("::ffff:10.0.0.1", ["10.0.0.0/8"], True),
        ("10.0.0.1", ["::/0"], False),
        ("", ["10.0.0.0/8"], False),
        ("garbage", ["10.0.0.0/8"], False),
        ("10.0.0.1", ["bogus"], False),
        ("10.0.0.1", ["bogus", "10.0.0.0/8"], True),
    ],
)
def test_check_cidrs(addr: str, cidrs: list[str], ok: bool) -> None:
    assert check_cidrs(addr, cidrs) is ok


def test_cidr_helpers() -> None:
    assert cidrs_subset(["10.1.0.0/16", "10.2.3.4/32"], ["10.0.0.0/8"])
    assert not cidrs_subset(["11.0.0.0/16"], ["10.0.0.0/8"])
    assert not cidrs_subset(["10.0.0.0/7"], ["10.0.0.0/8"])
    assert cidrs_subset(["1.2.3.4/32"], [])
    assert validate_cidr_blocks(["10.0.0.0/8", "127.0.0.1", "::1/128"])
    assert not validate_cidr_blocks(["10.0.0.0/33"])
    assert parse_cidrs(["127.0.0.1/32", " ::1 ", ""], "f") == ["127.0.0.1", "::1"]


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_lockout_after_threshold_and_release_after_duration() -> None:
    clock = Clock()
    lock = LoginLockout(lambda: LockoutPolicy(threshold=3, duration=60, counter_reset=30), now=clock)
    for _ in range(2):
        lock.failure("alice")
    assert not lock.is_locked("alice")
    lock.failure("alice")
    assert lock.is_locked("alice") and not lock.is_locked("bob")
    clock.t += 61
    assert not lock.is_locked("alice")


def test_lockout_counter_resets_and_success_clears() -> None:
    clock = Clock()
    lock = LoginLockout(lambda: LockoutPolicy(threshold=2, duration=60, counter_reset=30), now=clock)
    lock.failure("a")
    clock.t += 31
    lock.failure("a")
    assert not lock.is_locked("a")  # the first failure was forgotten
    lock.success("a")
    lock.failure("a")
    assert not lock.is_locked("a")
    disabled = LoginLockout(lambda: LockoutPolicy(threshold=1, disabled=True), now=clock)
    disabled.failure("a")
    assert not disabled.is_locked("a")


def test_lockout_policy_from_mount_tune() -> None:
    assert LockoutPolicy.from_mount_config(None) == LockoutPolicy(5, 900, 900, False)
    policy = LockoutPolicy.from_mount_config(
        {
            "lockout_threshold": "3",
            "lockout_duration": "10m",
            "lockout_counter_reset": 30,
            "lockout_disable": "true",
        }
    )
    assert policy == LockoutPolicy(3, 600, 30, True)
    assert (
        LockoutPolicy.from_mount_config({"lockout_threshold": "x", "lockout_duration": "?"})
        == LockoutPolicy()
    )
