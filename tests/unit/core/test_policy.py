"""Policy parsing: HCL, JSON, base64, legacy keywords, validation errors."""

from __future__ import annotations

import base64

import pytest

from strongroom.core.policy import (
    CAPABILITIES,
    DEFAULT_POLICY_HCL,
    IMMUTABLE_POLICY_NAMES,
    NON_ASSIGNABLE_POLICY_NAMES,
    RESPONSE_WRAPPING_POLICY,
    Policy,
    _parse_wrapping_ttl,
    has_template,
    is_root_policy_name,
    normalize_policy_name,
    parse_policy,
    root_policy,
)
from strongroom.logical.errors import UserError


def test_basic_hcl() -> None:
    p = parse_policy(
        "Dev ",
        """
        name = "ignored"
        path "/secret/data/*" {
          capabilities        = ["create", "read", "update", "patch", "delete", "list"]
          required_parameters = ["Name"]
          allowed_parameters  = { "Bar" = ["zip", "zap"], "*" = [] }
          denied_parameters   = { "token_policies" = [] }
          min_wrapping_ttl    = "1s"
          max_wrapping_ttl    = "90s"
          comment             = "a comment"
          mfa_methods         = ["m"]
          subscribe_event_types = ["kv*"]
        }
        """,
    )
    assert p.name == "dev"
    assert not p.templated
    (rule,) = p.paths
    assert rule.path == "secret/data/*"
    assert rule.is_prefix and not rule.has_segment_wildcards
    assert rule.capabilities == {"create", "read", "update", "patch", "delete", "list"}
    assert rule.required_parameters == ("name",)
    assert rule.allowed_parameters == {"bar": ("zip", "zap"), "*": ()}
    assert rule.denied_parameters == {"token_policies": ()}
    assert (rule.min_wrapping_ttl, rule.max_wrapping_ttl) == (1, 90)


def test_json_policy() -> None:
    p = parse_policy(
        "j",
        '{"path": {"secret/+/x": {"capabilities": ["read"], "allowed_parameters": {"A": [1, true]}}}}',
    )
    (rule,) = p.paths
    assert rule.path == "secret/+/x"
    assert rule.has_segment_wildcards and not rule.is_prefix
    assert rule.allowed_parameters == {"a": (1, True)}


def test_json_policy_path_list_form() -> None:
    p = parse_policy("j", '{"path": [{"a": {"policy": "read"}}, {"b": {"capabilities": ["update"]}}]}')
    assert [r.path for r in p.paths] == ["a", "b"]


def test_base64_policy() -> None:
    text = 'path "secret/*" { capabilities = ["read"] }'
    p = parse_policy("b", base64.b64encode(text.encode()).decode())
    assert p.raw == text
    assert p.paths[0].capabilities == {"read"}


def test_base64_of_garbage_reports_original_error() -> None:
    with pytest.raises(UserError, match="failed to parse policy"):
        parse_policy("b", base64.b64encode(b"\x80 not utf8").decode())


def test_empty_policy_has_no_rules() -> None:
    assert parse_policy("e", "").paths == ()
    assert parse_policy("e", "  \n# only a comment\n").paths == ()


def test_duplicate_blocks_are_kept() -> None:
    p = parse_policy(
        "d",
        'path "a" { capabilities = ["read"] }\n'
        'path "a" { capabilities = ["deny"] }\n'
        'path "b" { policy = "read" }',
    )
    assert [(r.path, sorted(r.capabilities)) for r in p.paths] == [
        ("a", ["read"]),
        ("a", ["deny"]),
        ("b", ["list", "read"]),
    ]


def test_duplicate_blocks_json() -> None:
    p = parse_policy("d", '{"path": {"a": {"capabilities": ["read"]}, "a": {"capabilities": ["deny"]}}}')
    assert [sorted(r.capabilities) for r in p.paths] == [["read"], ["deny"]]


@pytest.mark.parametrize(
    ("legacy", "expected"),
    [
        ("read", {"read", "list"}),
        ("write", {"create", "read", "update", "delete", "list"}),
        ("sudo", {"create", "read", "update", "delete", "list", "sudo"}),
        ("deny", {"deny"}),
    ],
)
def test_legacy_policy_keyword(legacy: str, expected: set[str]) -> None:
    p = parse_policy("l", f'path "x" {{ policy = "{legacy}" }}')
    assert p.paths[0].capabilities == expected


def test_legacy_policy_adds_to_capabilities() -> None:
    p = parse_policy("l", 'path "x" { policy = "read"\n capabilities = ["update"] }')
    assert p.paths[0].capabilities == {"read", "list", "update"}


def test_deny_cancels_other_capabilities() -> None:
    p = parse_policy("d", 'path "x" { capabilities = ["read", "deny", "sudo"] }')
    assert p.paths[0].capabilities == {"deny"}


def test_all_capabilities_accepted() -> None:
    caps = ", ".join(f'"{c}"' for c in sorted(CAPABILITIES - {"deny"}))
    p = parse_policy("c", f'path "x" {{ capabilities = [{caps}] }}')
    assert p.paths[0].capabilities == CAPABILITIES - {"deny"}


def test_empty_block_is_accepted_and_grants_nothing() -> None:
    p = parse_policy("e", 'path "x" {}')
    assert p.paths[0].capabilities == frozenset()


def test_leading_slash_stripped_once() -> None:
    assert parse_policy("s", 'path "/a/b" { policy = "read" }').paths[0].path == "a/b"


def test_star_in_middle_is_literal() -> None:
    rule = parse_policy("s", 'path "a/*/b" { policy = "read" }').paths[0]
    assert not rule.is_prefix and not rule.has_segment_wildcards


def test_templates_kept_as_text() -> None:
    p = parse_policy("t", 'path "secret/{{ identity.entity.id }}/*" { policy = "read" }')
    assert p.templated and p.paths[0].templated
    assert p.paths[0].path == "secret/{{ identity.entity.id }}/*"


def test_parameter_names_merged_case_insensitively() -> None:
    p = parse_policy("p", 'path "x" { allowed_parameters = { "A" = ["1"], "a" = ["2"] } }')
    assert p.paths[0].allowed_parameters == {"a": ("1", "2")}
    p = parse_policy("p", 'path "x" { denied_parameters = { "A" = ["1"], "a" = [] } }')
    assert p.paths[0].denied_parameters == {"a": ()}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('path "x" { capabilities = ["read", "frobnicate"] }', 'invalid capability "frobnicate"'),
        ('path "x" { capabilities = ["root"] }', 'invalid capability "root"'),
        ('path "x/+*" { capabilities = ["read"] }', "'+*' is forbidden"),
        ('path "x/+*/y" { capabilities = ["read"] }', "'+*' is forbidden"),
        ('foo "x" { capabilities = ["read"] }', 'invalid key "foo"'),
        ('bar = "baz"', 'invalid key "bar"'),
        ('path "x" { capabilities = ["read"]\n bogus = 1 }', 'invalid key "bogus"'),
        ('path "x" { policy = "admin" }', 'invalid policy "admin"'),
        ('path "x" { capabilities = [1] }', "capabilities must be a list of strings"),
        ('path "x" "y" { capabilities = ["read"] }', 'invalid key "y"'),
        ('path = ["a"]', "'path' must be a block"),
        ('path "x" { min_wrapping_ttl = "soon" }', "min_wrapping_ttl"),
        ('path "x" { max_wrapping_ttl = "-5s" }', "max_wrapping_ttl"),
        ('path "x" { min_wrapping_ttl = "2m"\n max_wrapping_ttl = "1m" }', "cannot be less than"),
        ('path "x" { allowed_parameters = { "fo*" = [] } }', "cannot contain wildcards"),
        ('path "x" { denied_parameters = { "/data/x" = [] } }', "JSON-pointer"),
        ('path "x" { allowed_parameters = ["a"] }', "must be a map"),
        ('path "x" { required_parameters = ["a*"] }', "wildcard is not permitted"),
        ('path "secret/{{identity.entity.id" { policy = "read" }', "unbalanced templating"),
        ('path "secret/identity.entity.id}}" { policy = "read" }', "unbalanced templating"),
        ("path { {", "failed to parse policy"),
        ("{not json", "failed to parse policy"),
        ('["a"]', "failed to parse policy"),
        ('{"path": "x"}', "'path' must be a block"),
        ('{"path": {"x": {"capabilities": "read", "nope": 1}}}', 'invalid key "nope"'),
    ],
)
def test_parse_errors(text: str, message: str) -> None:
    with pytest.raises(UserError) as info:
        parse_policy("bad", text)
    assert str(info.value).startswith("failed to parse policy")
    assert message in str(info.value)
    assert info.value.status == 400


def test_capabilities_may_be_a_single_string() -> None:
    assert parse_policy("s", 'path "x" { capabilities = "read" }').paths[0].capabilities == {"read"}


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (None, 0),
        ("", 0),
        (0, 0),
        (30, 30),
        (1.5, 1),
        ("45", 45),
        ("1s", 1),
        ("90s", 90),
        ("5m", 300),
        ("1h", 3600),
        ("1h30m", 5400),
        ("1.5h", 5400),
        ("2d", 172800),
        ("1500ms", 1),
    ],
)
def test_wrapping_ttl_parser(value: object, seconds: int) -> None:
    assert _parse_wrapping_ttl(value) == seconds


@pytest.mark.parametrize("value", ["abc", "1x", "-1s", -3, True, [1], "1h junk", "h"])
def test_wrapping_ttl_parser_rejects(value: object) -> None:
    with pytest.raises(ValueError):
        _parse_wrapping_ttl(value)


def test_names() -> None:
    assert normalize_policy_name("  MyPolicy\t") == "mypolicy"
    assert is_root_policy_name(" ROOT ")
    assert not is_root_policy_name("rooty")
    assert root_policy() == Policy(name="root")
    assert root_policy().is_root
    assert "root" in IMMUTABLE_POLICY_NAMES and "response-wrapping" in IMMUTABLE_POLICY_NAMES
    assert "control-group" in NON_ASSIGNABLE_POLICY_NAMES and "default" not in NON_ASSIGNABLE_POLICY_NAMES


def test_builtin_policies_parse() -> None:
    default = parse_policy("default", DEFAULT_POLICY_HCL)
    paths = {r.path: r.capabilities for r in default.paths}
    assert default.templated
    assert paths["auth/token/lookup-self"] == {"read"}
    assert paths["cubbyhole/*"] == {"create", "read", "update", "delete", "list"}
    assert paths["identity/oidc/provider/+/authorize"] == {"read", "update"}
    assert "identity/entity/id/{{identity.entity.id}}" in paths
    assert len(default.paths) == 18
    wrapping = parse_policy("response-wrapping", RESPONSE_WRAPPING_POLICY)
    assert {r.path: r.capabilities for r in wrapping.paths} == {
        "cubbyhole/response": {"create", "read"},
        "sys/wrapping/unwrap": {"update"},
    }


def test_has_template() -> None:
    assert has_template("a/{{x}}/b")
    assert not has_template("a/b")
    with pytest.raises(ValueError):
        has_template("a/}}")


def test_parser_is_reusable_after_errors() -> None:
    for _ in range(3):
        with pytest.raises(UserError):
            parse_policy("x", "path {{{")
        assert parse_policy("x", 'path "a" { policy = "read" }').paths[0].path == "a"
