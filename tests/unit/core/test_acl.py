"""ACL decisions: the §5.3 precedence rules, merging, sudo, wrapping TTLs, parameters, templates."""

from __future__ import annotations

import base64
import functools
import re
import time
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strongroom.core.acl import ACL, Decision, resolve_template
from strongroom.core.policy import DEFAULT_POLICY_HCL, parse_policy, root_policy


def rule(path: str, *caps: str, extra: str = "") -> str:
    quoted = ", ".join(f'"{c}"' for c in caps)
    return f'path "{path}" {{\n  capabilities = [{quoted}]\n  {extra}\n}}\n'


@dataclass
class Case:
    id: str
    policies: list[str]
    op: str
    path: str
    allowed: bool | None = None
    caps: list[str] | None = None
    data: dict[str, Any] | None = None
    wrap_ttl: int = 0
    root_protected: bool = False
    entity: dict[str, Any] | None = None
    root: bool = False


ENTITY: dict[str, Any] = {
    "id": "ent-1",
    "name": "bob",
    "metadata": {"team": "blue", "evil_star": "*", "evil_plus": "+", "evil_slash": "a/b", "empty": ""},
    "aliases": {
        "auth_userpass_1": {
            "id": "al-1",
            "name": "bob-up",
            "metadata": {"team": "red"},
            "custom_metadata": {},
        },
        "auth_ldap_2": {
            "id": "al-2",
            "name": "bob-ldap",
            "metadata": {"team": "green"},
            "custom_metadata": {},
        },
    },
    "groups": {
        "ids": {"g-1": {"name": "eng", "metadata": {"site": "paris"}}},
        "names": {"eng": {"id": "g-1", "metadata": {"site": "paris"}}},
    },
}

C = Case
CASES: list[Case] = [
    # --- exact matches (rule 1 of §5.3) ---
    C("exact-beats-glob", [rule("secret/foo", "read"), rule("secret/*", "deny")], "read", "secret/foo", True),
    C(
        "exact-deny-beats-glob",
        [rule("secret/foo", "deny"), rule("secret/*", "read")],
        "read",
        "secret/foo",
        False,
    ),
    C(
        "glob-next-to-exact-deny",
        [rule("secret/foo", "deny"), rule("secret/*", "read")],
        "read",
        "secret/fob",
        True,
    ),
    C(
        "exact-beats-plus",
        [rule("secret/+/x", "deny"), rule("secret/a/x", "read")],
        "read",
        "secret/a/x",
        True,
    ),
    C("exact-only-exact", [rule("secret/foo", "read")], "read", "secret/foo/bar", False),
    C("list-exact-without-slash", [rule("secret/foo", "list")], "list", "secret/foo/", True),
    C("list-exact-with-slash", [rule("secret/foo/", "list")], "list", "secret/foo/", True),
    C("list-path-gets-slash", [rule("secret/foo/", "list")], "list", "secret/foo", True),
    C(
        "list-exact-no-slash-beats-prefix-deny",
        [rule("secret/foo", "list"), rule("secret/foo/*", "deny")],
        "list",
        "secret/foo/",
        True,
    ),
    C("read-no-slash-fallback", [rule("secret/foo", "read")], "read", "secret/foo/", False),
    C(
        "caps-list-style-fallback",
        [rule("secret/foo", "read", "list")],
        "",
        "secret/foo/",
        caps=["list", "read"],
    ),
    # --- prefix rules ---
    C(
        "longest-prefix-deny",
        [rule("secret/*", "read"), rule("secret/foo/*", "deny")],
        "read",
        "secret/foo/x",
        False,
    ),
    C(
        "longest-prefix-other",
        [rule("secret/*", "read"), rule("secret/foo/*", "deny")],
        "read",
        "secret/fob",
        True,
    ),
    C(
        "longest-prefix-allow",
        [rule("secret/*", "deny"), rule("secret/foo/*", "read")],
        "read",
        "secret/foo/x",
        True,
    ),
    C(
        "partial-segment-prefix",
        [rule("secret/*", "read"), rule("secret/fo*", "deny")],
        "read",
        "secret/foo",
        False,
    ),
    C("prefix-matches-bare-prefix", [rule("secret/*", "read")], "read", "secret/", True),
    C("prefix-needs-whole-prefix", [rule("secret/*", "read")], "read", "secret", False),
    C("star-everything", [rule("*", "read")], "read", "any/thing", True),
    C("inner-star-literal", [rule("secret/*/foo", "read")], "read", "secret/*/foo", True),
    C("inner-star-not-glob", [rule("secret/*/foo", "read")], "read", "secret/x/foo", False),
    # --- segment wildcards ---
    C("plus-one-segment", [rule("secret/+/foo", "read")], "read", "secret/a/foo", True),
    C("plus-not-two-segments", [rule("secret/+/foo", "read")], "read", "secret/a/b/foo", False),
    C("plus-not-zero-segments", [rule("secret/+/foo", "read")], "read", "secret/foo", False),
    C("plus-count-equal", [rule("secret/+", "read")], "read", "secret/a", True),
    C("plus-count-more", [rule("secret/+", "read")], "read", "secret/a/b", False),
    C("plus-prefix-partial", [rule("secret/+/foo*", "read")], "read", "secret/a/foobar", True),
    C("plus-prefix-deeper", [rule("secret/+/foo*", "read")], "read", "secret/a/foo/x/y", True),
    C("plus-prefix-short", [rule("secret/+/foo*", "read")], "read", "secret/a/fo", False),
    C("plus-slash-star", [rule("secret/+/*", "read")], "read", "secret/a/b", True),
    C("plus-slash-star-short", [rule("secret/+/*", "read")], "read", "secret/a", False),
    C("plus-first-segment", [rule("+/config", "read")], "read", "kv/config", True),
    # --- tie-break 1: first wildcard earlier loses ---
    C(
        "tb1-plus-later-wins",
        [rule("secret/+/b", "read"), rule("secret/a/+", "deny")],
        "read",
        "secret/a/b",
        False,
    ),
    C(
        "tb1-plus-later-wins-rev",
        [rule("secret/+/b", "deny"), rule("secret/a/+", "read")],
        "read",
        "secret/a/b",
        True,
    ),
    C(
        "tb1-plus-beats-short-glob",
        [rule("secret/*", "deny"), rule("secret/a/+", "read")],
        "read",
        "secret/a/b",
        True,
    ),
    C(
        "tb1-glob-beats-early-plus",
        [rule("secret/a/*", "read"), rule("secret/+/b", "deny")],
        "read",
        "secret/a/b",
        True,
    ),
    # --- tie-break 2: ending in * loses ---
    C(
        "tb2-non-prefix-wins",
        [rule("secret/+/b", "read"), rule("secret/+/b*", "deny")],
        "read",
        "secret/a/b",
        True,
    ),
    C(
        "tb2-non-prefix-wins-rev",
        [rule("secret/+/b", "deny"), rule("secret/+/b*", "read")],
        "read",
        "secret/a/b",
        False,
    ),
    C(
        "tb2-prefix-only-path",
        [rule("secret/+/b", "deny"), rule("secret/+/b*", "read")],
        "read",
        "secret/a/bc",
        True,
    ),
    C("tb2-foo-plus-over-glob", [rule("foo/+", "read"), rule("foo/*", "deny")], "read", "foo/bar", True),
    # --- tie-break 3: more + loses ---
    C(
        "tb3-fewer-plus-wins",
        [rule("secret/+/+/c", "deny"), rule("secret/+/b/c", "read")],
        "read",
        "secret/a/b/c",
        True,
    ),
    C(
        "tb3-fewer-plus-wins-rev",
        [rule("secret/+/+/c", "read"), rule("secret/+/b/c", "deny")],
        "read",
        "secret/a/b/c",
        False,
    ),
    C(
        "tb3-doc-example",
        [rule("secret/*", "read"), rule("secret/+/+/foo/*", "deny")],
        "read",
        "secret/a/b/foo/c",
        True,
    ),
    C(
        "tb3-doc-example-rev",
        [rule("secret/*", "deny"), rule("secret/+/+/foo/*", "read")],
        "read",
        "secret/a/b/foo/c",
        False,
    ),
    # --- tie-break 4: shorter loses ---
    C(
        "tb4-longer-wins",
        [rule("secret/+/ab*", "deny"), rule("secret/+/a*", "read")],
        "read",
        "secret/x/abc",
        False,
    ),
    C(
        "tb4-longer-wins-rev",
        [rule("secret/+/ab*", "read"), rule("secret/+/a*", "deny")],
        "read",
        "secret/x/abc",
        True,
    ),
    # --- tie-break 5: byte-wise lower loses ---
    C("tb5-higher-wins", [rule("+/a/+", "read"), rule("+/+/a", "deny")], "read", "a/a/a", True),
    C("tb5-higher-wins-rev", [rule("+/a/+", "deny"), rule("+/+/a", "read")], "read", "a/a/a", False),
    # --- no match, deny ---
    C("no-match", [rule("secret/*", "read")], "read", "other/x", False, caps=["deny"]),
    C("no-policies", [], "read", "secret/x", False, caps=["deny"]),
    C(
        "deny-same-path-same-policy",
        [rule("s/x", "read") + rule("s/x", "deny")],
        "read",
        "s/x",
        False,
        caps=["deny"],
    ),
    C(
        "deny-same-path-reverse",
        [rule("s/x", "deny") + rule("s/x", "read")],
        "read",
        "s/x",
        False,
        caps=["deny"],
    ),
    C(
        "deny-only-on-winner",
        [rule("secret/*", "deny"), rule("secret/foo/*", "read")],
        "read",
        "secret/foo/x",
        True,
    ),
    C(
        "empty-block-shadows",
        [rule("secret/*", "read"), 'path "secret/x" {}'],
        "read",
        "secret/x",
        False,
        ["deny"],
    ),
    # GHSA-xp3c-3jw3-4vcr: a more specific deny blocks LIST
    C(
        "ghsa-xp3c-list-denied",
        [rule("foo/metadata/*", "list", "read"), rule("foo/metadata/private/*", "deny")],
        "list",
        "foo/metadata/private/",
        False,
    ),
    C(
        "ghsa-xp3c-list-denied-no-slash",
        [rule("foo/metadata/*", "list", "read"), rule("foo/metadata/private/*", "deny")],
        "list",
        "foo/metadata/private",
        False,
    ),
    C(
        "ghsa-xp3c-caps",
        [rule("foo/metadata/*", "list", "read"), rule("foo/metadata/private/*", "deny")],
        "",
        "foo/metadata/private/",
        caps=["deny"],
    ),
    C(
        "ghsa-xp3c-sibling-ok",
        [rule("foo/metadata/*", "list", "read"), rule("foo/metadata/private/*", "deny")],
        "list",
        "foo/metadata/public/",
        True,
    ),
    # --- merging across policies ---
    C("merge-or", [rule("s/x", "read"), rule("s/x", "update")], "", "s/x", caps=["read", "update"]),
    C("merge-or-update", [rule("s/x", "read"), rule("s/x", "update")], "update", "s/x", True),
    C(
        "merge-deny-wins",
        [rule("s/x", "read"), rule("s/x", "update"), rule("s/x", "deny")],
        "",
        "s/x",
        caps=["deny"],
    ),
    C("merge-deny-first", [rule("s/*", "deny"), rule("s/*", "read")], "read", "s/y", False),
    C(
        "merge-plus-rules",
        [rule("s/+/x", "read"), rule("s/+/x", "list")],
        "",
        "s/a/x",
        caps=["list", "read"],
    ),
    C(
        "merge-allowed-values",
        [
            rule("s/x", "update", extra='allowed_parameters = { "k" = ["a"] }'),
            rule("s/x", "update", extra='allowed_parameters = { "k" = ["b"] }'),
        ],
        "update",
        "s/x",
        True,
        data={"k": "b"},
    ),
    C(
        "merge-allowed-values-other",
        [
            rule("s/x", "update", extra='allowed_parameters = { "k" = ["a"] }'),
            rule("s/x", "update", extra='allowed_parameters = { "k" = ["b"] }'),
        ],
        "update",
        "s/x",
        False,
        data={"k": "c"},
    ),
    C(
        "merge-allowed-empty-wins",
        [
            rule("s/x", "update", extra='allowed_parameters = { "k" = [] }'),
            rule("s/x", "update", extra='allowed_parameters = { "k" = ["b"] }'),
        ],
        "update",
        "s/x",
        True,
        data={"k": "anything"},
    ),
    C(
        "merge-denied-empty-wins",
        [
            rule("s/x", "update", extra='denied_parameters = { "k" = ["a"] }'),
            rule("s/x", "update", extra='denied_parameters = { "k" = [] }'),
        ],
        "update",
        "s/x",
        False,
        data={"k": "z"},
    ),
    C(
        "merge-required-union-missing",
        [
            rule("s/x", "update", extra='required_parameters = ["a"]'),
            rule("s/x", "update", extra='required_parameters = ["b"]'),
        ],
        "update",
        "s/x",
        False,
        data={"a": 1},
    ),
    C(
        "merge-required-union-ok",
        [
            rule("s/x", "update", extra='required_parameters = ["a"]'),
            rule("s/x", "update", extra='required_parameters = ["b"]'),
        ],
        "update",
        "s/x",
        True,
        data={"a": 1, "b": 2},
    ),
    C(
        "merge-lowest-max-ttl",
        [
            rule("s/x", "read", extra='max_wrapping_ttl = "60s"'),
            rule("s/x", "read", extra='max_wrapping_ttl = "30s"'),
        ],
        "read",
        "s/x",
        False,
        wrap_ttl=45,
    ),
    C(
        "merge-lowest-max-ttl-ok",
        [
            rule("s/x", "read", extra='max_wrapping_ttl = "60s"'),
            rule("s/x", "read", extra='max_wrapping_ttl = "30s"'),
        ],
        "read",
        "s/x",
        True,
        wrap_ttl=20,
    ),
    C(
        "merge-lowest-min-ttl",
        [
            rule("s/x", "read", extra='min_wrapping_ttl = "10s"'),
            rule("s/x", "read", extra='min_wrapping_ttl = "5s"'),
        ],
        "read",
        "s/x",
        True,
        wrap_ttl=7,
    ),
    # --- operations ---
    C("op-create-needs-create", [rule("s/x", "update")], "create", "s/x", False),
    C("op-update-needs-update", [rule("s/x", "create")], "update", "s/x", False),
    C("op-patch-needs-patch", [rule("s/x", "update")], "patch", "s/x", False),
    C("op-patch", [rule("s/x", "patch")], "patch", "s/x", True),
    C("op-delete", [rule("s/x", "delete")], "delete", "s/x", True),
    C("op-renew-needs-update", [rule("sys/leases/renew", "update")], "renew", "sys/leases/renew", True),
    C("op-revoke-needs-update", [rule("s/x", "read")], "revoke", "s/x", False),
    C("op-rollback-needs-update", [rule("s/x", "update")], "rollback", "s/x", True),
    C("op-help-always", [], "help", "anything/at/all", True),
    C("op-help-root-protected", [], "help", "sys/audit", True, root_protected=True),
    C("op-unknown", [rule("*", "read", "update")], "frobnicate", "s/x", False),
    C("op-leading-slash", [rule("s/x", "read")], "read", "/s/x", True),
    # --- sudo ---
    C(
        "sudo-missing",
        [rule("sys/audit", "read", "update")],
        "update",
        "sys/audit",
        False,
        root_protected=True,
    ),
    C(
        "sudo-present",
        [rule("sys/audit", "update", "sudo")],
        "update",
        "sys/audit",
        True,
        root_protected=True,
    ),
    C("sudo-not-needed", [rule("sys/audit", "update")], "update", "sys/audit", True),
    C("sudo-needs-op-too", [rule("sys/audit", "sudo")], "update", "sys/audit", False, root_protected=True),
    C("sudo-caps", [rule("sys/audit", "update", "sudo")], "", "sys/audit", caps=["sudo", "update"]),
    C("sudo-root", [], "update", "sys/audit", True, caps=["root"], root_protected=True, root=True),
    C("root-everything", [rule("s/x", "deny")], "delete", "s/x", True, caps=["root"], root=True),
    # --- wrapping TTLs ---
    C("wrap-max-no-wrap", [rule("s/x", "read", extra='max_wrapping_ttl = "90s"')], "read", "s/x", False),
    C(
        "wrap-max-inside",
        [rule("s/x", "read", extra='max_wrapping_ttl = "90s"')],
        "read",
        "s/x",
        True,
        wrap_ttl=60,
    ),
    C(
        "wrap-max-equal",
        [rule("s/x", "read", extra='max_wrapping_ttl = "90s"')],
        "read",
        "s/x",
        True,
        wrap_ttl=90,
    ),
    C(
        "wrap-max-over",
        [rule("s/x", "read", extra='max_wrapping_ttl = "90s"')],
        "read",
        "s/x",
        False,
        wrap_ttl=91,
    ),
    C("wrap-min-no-wrap", [rule("s/x", "read", extra="min_wrapping_ttl = 10")], "read", "s/x", False),
    C(
        "wrap-min-under",
        [rule("s/x", "read", extra="min_wrapping_ttl = 10")],
        "read",
        "s/x",
        False,
        wrap_ttl=5,
    ),
    C("wrap-min-ok", [rule("s/x", "read", extra="min_wrapping_ttl = 10")], "read", "s/x", True, wrap_ttl=20),
    C("wrap-none-configured", [rule("s/x", "read")], "read", "s/x", True, wrap_ttl=20),
    C(
        "wrap-merged-contradiction",
        [
            rule("s/x", "read", extra='min_wrapping_ttl = "60s"'),
            rule("s/x", "read", extra='max_wrapping_ttl = "30s"'),
        ],
        "read",
        "s/x",
        False,
        wrap_ttl=45,
    ),
    # --- parameters ---
    C(
        "param-required-missing",
        [rule("s/x", "update", extra='required_parameters = ["name"]')],
        "update",
        "s/x",
        False,
        data={"other": 1},
    ),
    C(
        "param-required-no-data",
        [rule("s/x", "update", extra='required_parameters = ["name"]')],
        "update",
        "s/x",
        False,
    ),
    C(
        "param-required-present",
        [rule("s/x", "update", extra='required_parameters = ["name"]')],
        "update",
        "s/x",
        True,
        data={"name": "n"},
    ),
    C(
        "param-required-case",
        [rule("s/x", "update", extra='required_parameters = ["Name"]')],
        "update",
        "s/x",
        True,
        data={"NAME": "n"},
    ),
    C(
        "param-no-data-passes",
        [rule("s/x", "update", extra='allowed_parameters = { "a" = ["1"] }')],
        "update",
        "s/x",
        True,
    ),
    C(
        "param-empty-data-passes",
        [rule("s/x", "update", extra='denied_parameters = { "*" = [] }')],
        "update",
        "s/x",
        True,
        data={},
    ),
    C(
        "param-denied-star",
        [rule("s/x", "update", extra='denied_parameters = { "*" = [] }')],
        "update",
        "s/x",
        False,
        data={"x": 1},
    ),
    C(
        "param-denied-key",
        [rule("s/x", "update", extra='denied_parameters = { "k" = [] }')],
        "update",
        "s/x",
        False,
        data={"k": "v"},
    ),
    C(
        "param-denied-key-case",
        [rule("s/x", "update", extra='denied_parameters = { "k" = [] }')],
        "update",
        "s/x",
        False,
        data={"K": "v"},
    ),
    C(
        "param-denied-other-key",
        [rule("s/x", "update", extra='denied_parameters = { "k" = [] }')],
        "update",
        "s/x",
        True,
        data={"j": "v"},
    ),
    C(
        "param-denied-value",
        [rule("s/x", "update", extra='denied_parameters = { "k" = ["bad"] }')],
        "update",
        "s/x",
        False,
        data={"k": "bad"},
    ),
    C(
        "param-denied-value-other",
        [rule("s/x", "update", extra='denied_parameters = { "k" = ["bad"] }')],
        "update",
        "s/x",
        True,
        data={"k": "good"},
    ),
    C(
        "param-denied-list-element",
        [rule("s/x", "update", extra='denied_parameters = { "k" = ["root"] }')],
        "update",
        "s/x",
        False,
        data={"k": ["default", "root"]},
    ),
    C(
        "param-denied-comma-element",
        [rule("s/x", "update", extra='denied_parameters = { "k" = ["root"] }')],
        "update",
        "s/x",
        False,
        data={"k": "default, root"},
    ),
    C(
        "param-denied-glob",
        [rule("s/x", "update", extra='denied_parameters = { "k" = ["adm*"] }')],
        "update",
        "s/x",
        False,
        data={"k": "admin"},
    ),
    C(
        "param-denied-lone-star",
        [rule("s/x", "update", extra='denied_parameters = { "k" = ["*"] }')],
        "update",
        "s/x",
        False,
        data={"k": "x"},
    ),
    C(
        "param-allowed-unlisted-key",
        [rule("s/x", "update", extra='allowed_parameters = { "a" = [] }')],
        "update",
        "s/x",
        False,
        data={"z": 1},
    ),
    C(
        "param-allowed-listed-key",
        [rule("s/x", "update", extra='allowed_parameters = { "a" = [] }')],
        "update",
        "s/x",
        True,
        data={"A": 1},
    ),
    C(
        "param-allowed-value",
        [rule("s/x", "update", extra='allowed_parameters = { "a" = ["zip", "zap"] }')],
        "update",
        "s/x",
        True,
        data={"a": "zap"},
    ),
    C(
        "param-allowed-bad-value",
        [rule("s/x", "update", extra='allowed_parameters = { "a" = ["zip", "zap"] }')],
        "update",
        "s/x",
        False,
        data={"a": "zop"},
    ),
    C(
        "param-allowed-star-key",
        [rule("s/x", "update", extra='allowed_parameters = { "*" = [], "a" = ["1"] }')],
        "update",
        "s/x",
        True,
        data={"z": 1},
    ),
    C(
        "param-allowed-star-still-checks",
        [rule("s/x", "update", extra='allowed_parameters = { "*" = [], "a" = ["1"] }')],
        "update",
        "s/x",
        False,
        data={"a": "2"},
    ),
    C(
        "param-allowed-glob-suffix",
        [rule("s/x", "update", extra='allowed_parameters = { "a" = ["foo*"] }')],
        "update",
        "s/x",
        True,
        data={"a": "foobar"},
    ),
    C(
        "param-allowed-glob-suffix-no",
        [rule("s/x", "update", extra='allowed_parameters = { "a" = ["foo*"] }')],
        "update",
        "s/x",
        False,
        data={"a": "barfoo"},
    ),
    C(
        "param-allowed-glob-prefix",
        [rule("s/x", "update", extra='allowed_parameters = { "a" = ["*foo"] }')],
        "update",
        "s/x",
        True,
        data={"a": "barfoo"},
    ),
    C(
        "param-allowed-glob-both",
        [rule("s/x", "update", extra='allowed_parameters = { "a" = ["*mid*"] }')],
        "update",
        "s/x",
        True,
        data={"a": "amidb"},
    ),
    C(
        "param-allowed-number",
        [rule("s/x", "update", extra='allowed_parameters = { "ttl" = [30, "1h"] }')],
        "update",
        "s/x",
        True,
        data={"ttl": 30},
    ),
    C(
        "param-allowed-number-as-string",
        [rule("s/x", "update", extra='allowed_parameters = { "ttl" = [30] }')],
        "update",
        "s/x",
        True,
        data={"ttl": "30"},
    ),
    C(
        "param-allowed-number-bad",
        [rule("s/x", "update", extra='allowed_parameters = { "ttl" = [30] }')],
        "update",
        "s/x",
        False,
        data={"ttl": 31},
    ),
    C(
        "param-allowed-list-all",
        [rule("s/x", "update", extra='allowed_parameters = { "p" = ["a", "b"] }')],
        "update",
        "s/x",
        True,
        data={"p": ["a", "b"]},
    ),
    C(
        "param-allowed-list-one-bad",
        [rule("s/x", "update", extra='allowed_parameters = { "p" = ["a", "b"] }')],
        "update",
        "s/x",
        False,
        data={"p": ["a", "c"]},
    ),
    C(
        "param-allowed-comma-bad",
        [rule("s/x", "update", extra='allowed_parameters = { "p" = ["a", "b"] }')],
        "update",
        "s/x",
        False,
        data={"p": "a,c"},
    ),
    C(
        "param-not-checked-for-delete",
        [rule("s/x", "delete", extra='allowed_parameters = { "a" = ["1"] }')],
        "delete",
        "s/x",
        True,
        data={"a": "2"},
    ),
    C(
        "param-not-checked-for-list",
        [rule("s/x/", "list", extra='denied_parameters = { "*" = [] }')],
        "list",
        "s/x/",
        True,
        data={"a": "2"},
    ),
    C(
        "param-checked-for-read",
        [rule("s/x", "read", extra='denied_parameters = { "*" = [] }')],
        "read",
        "s/x",
        False,
        data={"a": "2"},
    ),
    C(
        "param-checked-for-patch",
        [rule("s/x", "patch", extra='allowed_parameters = { "a" = [] }')],
        "patch",
        "s/x",
        False,
        data={"b": "2"},
    ),
    C(
        "param-checked-for-create",
        [rule("s/x", "create", extra='allowed_parameters = { "a" = [] }')],
        "create",
        "s/x",
        False,
        data={"b": "2"},
    ),
    # --- templates ---
    C(
        "tpl-name",
        [rule("secret/{{identity.entity.name}}/*", "read")],
        "read",
        "secret/bob/x",
        True,
        entity=ENTITY,
    ),
    C(
        "tpl-name-other",
        [rule("secret/{{identity.entity.name}}/*", "read")],
        "read",
        "secret/al/x",
        False,
        entity=ENTITY,
    ),
    C(
        "tpl-id-spaces",
        [rule("secret/{{ identity.entity.id }}", "read")],
        "read",
        "secret/ent-1",
        True,
        entity=ENTITY,
    ),
    C(
        "tpl-metadata",
        [rule("t/{{identity.entity.metadata.team}}/*", "read")],
        "read",
        "t/blue/x",
        True,
        entity=ENTITY,
    ),
    C(
        "tpl-no-entity-skipped",
        [rule("secret/{{identity.entity.id}}/*", "read") + rule("pub/*", "read")],
        "read",
        "pub/x",
        True,
    ),
    C("tpl-no-entity-denied", [rule("secret/{{identity.entity.id}}/*", "read")], "read", "secret//x", False),
    C(
        "tpl-missing-key-skipped",
        [rule("t/{{identity.entity.metadata.nope}}/*", "read")],
        "read",
        "t//x",
        False,
        entity=ENTITY,
    ),
    C(
        "tpl-empty-value-skipped",
        [rule("t/{{identity.entity.metadata.empty}}/*", "read")],
        "read",
        "t//x",
        False,
        entity=ENTITY,
    ),
    C(
        "tpl-unknown-directive",
        [rule("t/{{identity.entity.shoe_size}}", "read")],
        "read",
        "t/",
        False,
        entity=ENTITY,
    ),
    C(
        "tpl-star-no-widen",
        [rule("secret/{{identity.entity.metadata.evil_star}}/*", "read")],
        "read",
        "secret/other/x",
        False,
        entity=ENTITY,
    ),
    C(
        "tpl-star-skipped",
        [rule("secret/{{identity.entity.metadata.evil_star}}/*", "read")],
        "read",
        "secret/*/x",
        False,
        entity=ENTITY,
    ),
    C(
        "tpl-plus-no-widen",
        [rule("secret/{{identity.entity.metadata.evil_plus}}/x", "read")],
        "read",
        "secret/other/x",
        False,
        entity=ENTITY,
    ),
    C(
        "tpl-slash-no-widen",
        [rule("secret/{{identity.entity.metadata.evil_slash}}", "read")],
        "read",
        "secret/a/b",
        False,
        entity=ENTITY,
    ),
    C(
        "tpl-alias-by-accessor",
        [rule("t/{{identity.entity.aliases.auth_ldap_2.metadata.team}}", "read")],
        "read",
        "t/green",
        True,
        entity=ENTITY,
    ),
    C(
        "tpl-alias-other-mount",
        [rule("t/{{identity.entity.aliases.auth_ldap_2.metadata.team}}", "read")],
        "read",
        "t/red",
        False,
        entity=ENTITY,
    ),
    C(
        "tpl-alias-name",
        [rule("t/{{identity.entity.aliases.auth_userpass_1.name}}", "read")],
        "read",
        "t/bob-up",
        True,
        entity=ENTITY,
    ),
    C(
        "tpl-alias-unknown-accessor",
        [rule("t/{{identity.entity.aliases.nope.name}}", "read")],
        "read",
        "t/",
        False,
        entity=ENTITY,
    ),
    C(
        "tpl-group-name-to-id",
        [rule("g/{{identity.groups.names.eng.id}}", "read")],
        "read",
        "g/g-1",
        True,
        entity=ENTITY,
    ),
    C(
        "tpl-group-id-to-name",
        [rule("g/{{identity.groups.ids.g-1.name}}", "read")],
        "read",
        "g/eng",
        True,
        entity=ENTITY,
    ),
    C(
        "tpl-group-metadata",
        [rule("g/{{identity.groups.ids.g-1.metadata.site}}", "read")],
        "read",
        "g/paris",
        True,
        entity=ENTITY,
    ),
    C(
        "tpl-group-not-member",
        [rule("g/{{identity.groups.names.ops.id}}", "read")],
        "read",
        "g/",
        False,
        entity=ENTITY,
    ),
    C(
        "tpl-merges-with-literal",
        [rule("s/{{identity.entity.name}}", "read"), rule("s/bob", "deny")],
        "read",
        "s/bob",
        False,
        entity=ENTITY,
    ),
    # --- legacy keyword, JSON, base64 ---
    C("legacy-read-list", ['path "s/*" { policy = "read" }'], "list", "s/", True),
    C("legacy-read-no-update", ['path "s/*" { policy = "read" }'], "update", "s/x", False),
    C(
        "legacy-write",
        ['path "s/*" { policy = "write" }'],
        "",
        "s/x",
        caps=["create", "delete", "list", "read", "update"],
    ),
    C(
        "legacy-sudo",
        ['path "sys/audit" { policy = "sudo" }'],
        "update",
        "sys/audit",
        True,
        root_protected=True,
    ),
    C(
        "legacy-deny",
        ['path "s/*" { policy = "write" }', 'path "s/x" { policy = "deny" }'],
        "read",
        "s/x",
        False,
    ),
    C(
        "json-policy",
        ['{"path": {"s/*": {"capabilities": ["read"]}, "s/x": {"capabilities": ["deny"]}}}'],
        "read",
        "s/y",
        True,
    ),
    C(
        "json-policy-deny",
        ['{"path": {"s/*": {"capabilities": ["read"]}, "s/x": {"capabilities": ["deny"]}}}'],
        "read",
        "s/x",
        False,
    ),
    C("base64-policy", [base64.b64encode(rule("b64/*", "read").encode()).decode()], "read", "b64/x", True),
]


def _acl(case: Case) -> ACL:
    policies = [parse_policy(f"p{i}", text) for i, text in enumerate(case.policies)]
    if case.root:
        policies.append(root_policy())
    return ACL(policies, case.entity)


def test_table_is_big_enough() -> None:
    assert len(CASES) >= 60
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_acl_table(case: Case) -> None:
    acl = _acl(case)
    if case.allowed is not None:
        decision = acl.allow_operation(
            case.op, case.path, data=case.data, wrap_ttl=case.wrap_ttl, root_protected=case.root_protected
        )
        assert decision.allowed is case.allowed, decision
        assert decision.reason == ("" if case.allowed else "permission denied")
    if case.caps is not None:
        assert acl.capabilities(case.path) == case.caps


# --------------------------------------------------------------------------- decisions in detail


def test_decision_fields() -> None:
    acl = ACL([parse_policy("p", rule("sys/audit", "update", "sudo") + rule("s/x", "read"))])
    d = acl.allow_operation("update", "sys/audit", root_protected=True)
    assert d == Decision(allowed=True, sudo=True, capabilities=frozenset({"update", "sudo"}))
    d = acl.allow_operation("update", "s/x")
    assert not d.allowed and not d.sudo and d.capabilities == {"read"} and d.reason == "permission denied"
    d = acl.allow_operation("read", "nothing")
    assert not d.allowed and d.capabilities == frozenset()
    root = ACL([root_policy()])
    d = root.allow_operation("delete", "anything", data={"x": 1}, root_protected=True)
    assert d.allowed and d.is_root and d.sudo and d.capabilities == {"root"}
    assert root.is_root and not acl.is_root


def test_reason_never_contains_values() -> None:
    acl = ACL([parse_policy("p", rule("s/x", "update", extra='allowed_parameters = { "a" = ["ok"] }'))])
    d = acl.allow_operation("update", "s/x", data={"a": "s3cr3t-value"})
    assert not d.allowed
    assert "s3cr3t" not in d.reason and "s3cr3t" not in d.detail


def test_capabilities_root_and_default() -> None:
    assert ACL([root_policy()]).capabilities("any/path") == ["root"]
    default = parse_policy("default", DEFAULT_POLICY_HCL)
    acl = ACL([default], {"id": "e1", "name": "bob"})
    assert acl.capabilities("auth/token/lookup-self") == ["read"]
    assert acl.capabilities("identity/entity/id/e1") == ["read"]
    assert acl.capabilities("identity/entity/id/e2") == ["deny"]
    assert acl.capabilities("identity/entity/name/bob") == ["read"]
    assert acl.capabilities("cubbyhole/x") == ["create", "delete", "list", "read", "update"]
    assert acl.capabilities("identity/oidc/provider/p/authorize") == ["read", "update"]
    assert acl.capabilities("sys/tools/random") == ["deny"]
    no_entity = ACL([default])
    assert no_entity.capabilities("identity/entity/id/") == ["deny"]
    assert no_entity.capabilities("sys/capabilities-self") == ["update"]


def test_resolve_template() -> None:
    assert resolve_template("a/{{identity.entity.id}}/{{identity.entity.name}}", ENTITY) == "a/ent-1/bob"
    assert resolve_template("plain", None) == "plain"
    assert resolve_template("a/{{identity.entity.id}}", None) is None
    assert resolve_template("a/{{identity.entity.metadata.evil_star}}", ENTITY) is None
    assert resolve_template("a/{{identity.entity.aliases.auth_userpass_1.custom_metadata.x}}", ENTITY) is None
    assert resolve_template("a/{{identity.groups.ids.g-1.id}}", ENTITY) == "a/g-1"
    assert resolve_template("a/{{identity.groups.names.eng.name}}", ENTITY) == "a/eng"
    assert resolve_template("a/{{identity.groups.bogus.eng.name}}", ENTITY) is None
    assert resolve_template("a/{{time.now}}", ENTITY) is None
    assert resolve_template("a/{{identity.entity.metadata}}", ENTITY) is None


def test_many_rules_lookup_is_fast() -> None:
    lines = []
    for i in range(3000):
        lines.append(rule(f"team{i}/data/*", "read", "list"))
        lines.append(rule(f"team{i}/exact", "read"))
        lines.append(rule(f"team{i}/+/cfg", "update"))
    acl = ACL([parse_policy("big", "".join(lines))])
    assert acl.allow_operation("read", "team2999/data/x").allowed
    assert acl.allow_operation("update", "team17/a/cfg").allowed
    assert not acl.allow_operation("read", "team3000/data/x").allowed
    start = time.perf_counter()
    for i in range(20000):
        acl.allow_operation("read", f"team{i % 3000}/data/some/secret")
    elapsed = time.perf_counter() - start
    assert elapsed < 2.0, elapsed


# --------------------------------------------------------------------------- oracle comparison

SEGMENTS = ["a", "b", "ab"]
CAPS = ["read", "list", "update", "deny"]


@st.composite
def rule_strings(draw: st.DrawFn) -> str:
    segments = draw(st.lists(st.sampled_from([*SEGMENTS, "+"]), min_size=1, max_size=4))
    path = "/".join(segments)
    ending = draw(st.sampled_from(["", "*", "/*"]))
    if ending == "*" and path.endswith("+"):
        ending = "/*"
    return path + ending


@st.composite
def rule_sets(draw: st.DrawFn) -> list[list[tuple[str, list[str]]]]:
    """Several policies, each a list of (path, capabilities)."""
    pool = draw(st.lists(rule_strings(), min_size=1, max_size=8))
    policies = []
    for _ in range(draw(st.integers(1, 3))):
        chosen = draw(st.lists(st.sampled_from(pool), max_size=6))
        policies.append([(p, draw(st.lists(st.sampled_from(CAPS), max_size=3))) for p in chosen])
    return policies


@st.composite
def request_paths(draw: st.DrawFn) -> str:
    first = draw(st.sampled_from([*SEGMENTS, "abc"]))
    segments = draw(st.lists(st.sampled_from([*SEGMENTS, "abc", ""]), max_size=4))
    return "/".join([first, *segments]) + draw(st.sampled_from(["", "/"]))


def _oracle_info(rule_path: str) -> tuple[int, bool, int, int, str]:
    """(first wildcard offset, ends in *, number of +, length, text) of a wildcard rule."""
    is_prefix = rule_path.endswith("*")
    stem = rule_path[:-1] if is_prefix else rule_path
    m = re.search(r"(?:^|/)\+(?:/|$)", stem)
    if m is not None:
        first = m.start() + (1 if stem[m.start()] == "/" else 0)
    else:
        first = len(stem)
    plus = len([s for s in stem.split("/") if s == "+"])
    return first, is_prefix, plus, len(stem), stem


def _oracle_cmp(p1: str, p2: str) -> int:
    """Negative when p1 ranks lower than p2, per the five ordered rules of §5.3."""
    f1, pre1, n1, l1, s1 = _oracle_info(p1)
    f2, pre2, n2, l2, s2 = _oracle_info(p2)
    if f1 != f2:
        return -1 if f1 < f2 else 1
    if pre1 != pre2:
        return -1 if pre1 else 1
    if n1 != n2:
        return -1 if n1 > n2 else 1
    if l1 != l2:
        return -1 if l1 < l2 else 1
    if s1 != s2:
        return -1 if s1 < s2 else 1
    return 0


def _oracle_caps(policies: list[list[tuple[str, list[str]]]], path: str, list_op: bool) -> set[str] | None:
    merged: dict[str, set[str]] = {}
    for policy in policies:
        for rule_path, caps in policy:
            have = merged.setdefault(rule_path, set())
            if "deny" in have:
                continue
            if "deny" in caps:
                have.clear()
                have.add("deny")
            else:
                have.update(caps)

    def is_plus(r: str) -> bool:
        return "+" in r.split("/")

    exact = {r for r in merged if not is_plus(r) and not r.endswith("*")}
    if path in exact:
        return merged[path]
    if list_op and path.endswith("/") and path[:-1] in exact:
        return merged[path[:-1]]
    candidates = []
    prefixes = [r for r in merged if not is_plus(r) and r.endswith("*") and path.startswith(r[:-1])]
    if prefixes:
        candidates.append(max(prefixes, key=len))
    for r in merged:
        if not is_plus(r):
            continue
        is_prefix = r.endswith("*")
        stem = r[:-1] if is_prefix else r
        pattern = "/".join("[^/]*" if s == "+" else re.escape(s) for s in stem.split("/"))
        if re.fullmatch(pattern + (".*" if is_prefix else ""), path, re.DOTALL):
            candidates.append(r)
    if not candidates:
        return None
    return merged[max(candidates, key=functools.cmp_to_key(_oracle_cmp))]


def _to_hcl(policy: list[tuple[str, list[str]]]) -> str:
    return "".join(rule(p, *caps) for p, caps in policy)


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[list[list[tuple[str, list[str]]]], str]:
    """A rule set and a request path; half the paths are instances of one of the rules."""
    policies = draw(rule_sets())
    rules = [p for policy in policies for p, _ in policy]
    if not rules or draw(st.booleans()):
        return policies, draw(request_paths())
    template = draw(st.sampled_from(rules))
    is_prefix = template.endswith("*")
    stem = template[:-1] if is_prefix else template
    parts = [draw(st.sampled_from([*SEGMENTS, "abc"])) if s == "+" else s for s in stem.split("/")]
    path = "/".join(parts)
    if is_prefix:
        path += draw(st.sampled_from(["", "c", "/", "/c", "c/d", "b/a"]))
    elif draw(st.booleans()):
        path += "/"
    if path.startswith("/"):
        path = "a" + path
    return policies, path


@settings(max_examples=1000, deadline=None)
@given(scenarios())
def test_matcher_agrees_with_oracle(scenario: tuple[list[list[tuple[str, list[str]]]], str]) -> None:
    policies, path = scenario
    acl = ACL([parse_policy(f"p{i}", _to_hcl(p)) for i, p in enumerate(policies)])

    caps = _oracle_caps(policies, path, list_op=True)
    expected = ["deny"] if not caps or "deny" in caps else sorted(caps)
    assert acl.capabilities(path) == expected

    read = _oracle_caps(policies, path, list_op=False)
    assert acl.allow_operation("read", path).allowed == bool(read and "read" in read)

    list_path = path if path.endswith("/") else path + "/"
    listed = _oracle_caps(policies, list_path, list_op=True)
    assert acl.allow_operation("list", list_path).allowed == bool(listed and "list" in listed)


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["a", "b", "c"]), st.lists(st.sampled_from(["x", "y", "x*"]), max_size=2)
    ),
    st.dictionaries(st.sampled_from(["a", "b", "c"]), st.lists(st.sampled_from(["x", "y"]), max_size=2)),
    st.dictionaries(
        st.sampled_from(["a", "b", "c", "A"]), st.sampled_from(["x", "y", "xz", "x,y"]), max_size=3
    ),
)
def test_parameters_agree_with_oracle(
    allowed: dict[str, list[str]], denied: dict[str, list[str]], data: dict[str, str]
) -> None:
    def hcl_map(m: dict[str, list[str]]) -> str:
        return (
            "{ "
            + ", ".join(
                f'"{k}" = [{", ".join(repr(v).replace(chr(39), chr(34)) for v in vs)}]' for k, vs in m.items()
            )
            + " }"
        )

    extra = ""
    if allowed:
        extra += f"allowed_parameters = {hcl_map(allowed)}\n"
    if denied:
        extra += f"denied_parameters = {hcl_map(denied)}\n"
    acl = ACL([parse_policy("p", rule("s/x", "update", extra=extra))])

    def match(pattern: str, value: str) -> bool:
        return value.startswith(pattern[:-1]) if pattern.endswith("*") else value == pattern

    def oracle() -> bool:
        if not data:
            return True
        for key, value in data.items():
            pieces = [value] + ([p.strip() for p in value.split(",")] if "," in value else [])
            values = denied.get(key.lower())
            if values is not None and (not values or any(match(v, p) for v in values for p in pieces)):
                return False
        if not allowed:
            return True
        for key, value in data.items():
            values = allowed.get(key.lower())
            if values is None:
                return False
            if values and not any(match(v, value) for v in values):
                if "," not in value or not all(
                    any(match(v, p.strip()) for v in values) for p in value.split(",")
                ):
                    return False
        return True

    assert acl.allow_operation("update", "s/x", data=data).allowed == oracle()


@pytest.mark.parametrize(
    ("rules", "mount", "expected"),
    [
        ([rule("secret/foo", "read")], "secret/", True),
        ([rule("secret/*", "read")], "secret/", True),
        ([rule("sec*", "read")], "secret/", True),
        ([rule("secret", "list")], "secret/", True),
        ([rule("secret/foo/*", "list")], "secret/", True),
        ([rule("secret/+/x", "update")], "secret/", True),
        ([rule("+/x", "update")], "secret/", True),
        ([rule("other/+/x", "update")], "secret/", False),
        ([rule("secret/foo", "deny")], "secret/", False),
        ([rule("secret/foo", "subscribe")], "secret/", False),
        ([rule("secretive/x", "read")], "secret/", False),
        ([rule("secret/*", "deny"), rule("secret/foo", "read")], "secret/", True),
        ([], "secret/", False),
    ],
)
def test_has_access_under(rules: list[str], mount: str, expected: bool) -> None:
    acl = ACL([parse_policy(f"p{i}", text) for i, text in enumerate(rules)])
    assert acl.has_access_under(mount) is expected
    assert ACL([root_policy()]).has_access_under(mount)
