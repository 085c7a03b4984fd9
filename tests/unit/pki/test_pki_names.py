"""Vault's name policy (names.py): every role switch allowing and refusing, with Vault's texts."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from strongroom.engines.pki.names import (
    CsrNames,
    IdnaError,
    NameRequest,
    OtherSanError,
    go_glob,
    parse_other_sans,
    resolve_names,
    to_ascii,
    validate_common_name,
    validate_names,
    validate_other_sans,
    validate_serial_number,
    validate_uri_san,
    validate_user_id,
)
from strongroom.engines.pki.roles import RoleEntry
from strongroom.logical.errors import UserError


def role(**kw: object) -> RoleEntry:
    return RoleEntry(**kw)  # type: ignore[arg-type]


def allowed(r: RoleEntry, name: str) -> bool:
    return validate_names(r, [name]) == ""


# -- go-glob and idna ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "subject", "expected"),
    [
        ("*", "anything.at.all", True),
        ("", "", True),
        ("", "x", False),
        ("a.example.com", "a.example.com", True),
        ("*.example.com", "a.b.example.com", True),  # * crosses labels
        ("*.example.com", "example.com", False),
        ("ftp*.example.com", "ftp1.example.com", True),
        ("ftp*.example.com", "www.example.com", False),
        ("spiffe://td/*", "spiffe://td/ns/a/sa/b", True),
        ("spiffe://td/*", "spiffe://other/ns", False),
        ("a*b*c", "axxbyyc", True),
        ("a*b*c", "axxcyyb", False),
        ("*mid*", "xxmidyy", True),
    ],
)
def test_go_glob(pattern: str, subject: str, expected: bool) -> None:
    assert go_glob(pattern, subject) is expected


@given(st.text(alphabet="ab*.", max_size=8), st.text(alphabet="ab.", max_size=8))
def test_go_glob_star_free_patterns_are_equality(pattern: str, subject: str) -> None:
    if "*" not in pattern:
        assert go_glob(pattern, subject) == (pattern == subject)


def test_to_ascii_like_go_idna() -> None:
    assert to_ascii("Example.COM") == "Example.COM"  # no mapping
    assert to_ascii("example.com.") == "example.com."
    assert to_ascii("bücher.example") == "xn--bcher-kva.example"
    assert to_ascii("has space") == "has space"  # passes; the hostname regex refuses it later
    for bad in ("", ".example.com", "a..b", "x" * 64 + ".com", ".".join(["abcdefgh"] * 30)):
        with pytest.raises(IdnaError):
            to_ascii(bad)


# -- ValidateNames ------------------------------------------------------------------------


def test_allowed_domains_bare_subdomain_glob() -> None:
    bare = role(allowed_domains=["example.com"], allow_bare_domains=True)
    assert allowed(bare, "example.com")
    assert allowed(bare, "EXAMPLE.com")  # bare match is case-insensitive
    assert not allowed(bare, "a.example.com")

    sub = role(allowed_domains=["example.com"], allow_subdomains=True)
    assert allowed(sub, "a.example.com")
    assert allowed(sub, "a.b.example.com")
    assert not allowed(sub, "example.com")
    assert not allowed(sub, "badexample.com")

    glob = role(allowed_domains=["ftp*.example.com"], allow_glob_domains=True)
    assert allowed(glob, "ftp1.example.com")
    assert not allowed(glob, "www.example.com")
    # without allow_glob_domains the * is literal and nothing matches
    assert not allowed(role(allowed_domains=["ftp*.example.com"]), "ftp1.example.com")


def test_wildcard_needs_subdomains_cve_2022_25243() -> None:
    bare_only = role(allowed_domains=["example.com"], allow_bare_domains=True)
    assert not allowed(bare_only, "*.example.com")
    sub = role(allowed_domains=["example.com"], allow_subdomains=True)
    assert allowed(sub, "*.example.com")
    assert allowed(sub, "*.a.example.com")
    no_wild = role(allowed_domains=["example.com"], allow_subdomains=True, allow_wildcard_certificates=False)
    assert not allowed(no_wild, "*.example.com")
    assert allowed(no_wild, "a.example.com")


def test_wildcard_shapes_rfc6125() -> None:
    sub = role(allowed_domains=["example.com"], allow_subdomains=True)
    for good in ("*.example.com", "b*z.example.com", "*baz.example.com", "baz*.example.com"):
        assert allowed(sub, good), good
    for bad in ("**.example.com", "a.*.example.com", "*.*.example.com", "user@*.example.com"):
        assert not allowed(sub, bad), bad


def test_allow_any_name_still_enforces_hostnames_and_wildcards() -> None:
    anyname = role(allow_any_name=True)
    assert allowed(anyname, "whatever.test")
    assert not allowed(anyname, "not a host")
    assert not allowed(anyname, "bad_host.test")
    assert allowed(role(allow_any_name=True, enforce_hostnames=False), "not a host")
    assert not allowed(role(allow_any_name=True, allow_wildcard_certificates=False), "*.test")


def test_localhost_and_localdomain() -> None:
    r = role()
    assert allowed(r, "localhost")
    assert allowed(r, "localdomain")
    assert allowed(r, "admin@localhost")
    assert not allowed(r, "a.localhost")
    assert allowed(role(allow_subdomains=True), "a.localhost")
    assert allowed(role(allow_subdomains=True), "*.localdomain")
    assert not allowed(role(allow_localhost=False), "localhost")


def test_emails_use_their_domain() -> None:
    r = role(allowed_domains=["example.com"], allow_bare_domains=True)
    assert allowed(r, "user@example.com")
    assert not allowed(r, "user@other.com")
    assert not allowed(r, "a@b@example.com")
    sub = role(allowed_domains=["example.com"], allow_subdomains=True)
    assert allowed(sub, "user@mail.example.com")


def test_token_display_name() -> None:
    r = role(allow_token_displayname=True)
    assert validate_names(r, ["svc1"], display_name="svc1") == ""
    assert validate_names(r, ["svc2"], display_name="svc1") == "svc2"


def test_identity_templates_resolve_through_callback() -> None:
    r = role(
        allowed_domains=["{{identity.entity.name}}.example.com"],
        allowed_domains_template=True,
        allow_bare_domains=True,
    )
    assert (
        validate_names(
            r, ["alice.example.com"], resolve=lambda t: t.replace("{{identity.entity.name}}", "alice")
        )
        == ""
    )
    assert validate_names(
        r, ["bob.example.com"], resolve=lambda t: t.replace("{{identity.entity.name}}", "alice")
    )
    # an unresolvable template skips the entry instead of matching anything
    assert validate_names(r, ["alice.example.com"], resolve=lambda t: None)


def test_common_name_validations() -> None:
    r = role(allow_any_name=True)
    assert validate_common_name(r, "host.test") == ""
    assert validate_common_name(r, "me@host.test") == ""
    only_host = role(allow_any_name=True, cn_validations=["hostname"])
    assert validate_common_name(only_host, "me@host.test") == "me@host.test"
    only_email = role(allow_any_name=True, cn_validations=["email"])
    assert validate_common_name(only_email, "host.test") == "host.test"
    disabled = role(cn_validations=["disabled"])
    assert validate_common_name(disabled, "Any Thing At All") == ""


def test_serial_numbers_user_ids_uris() -> None:
    r = role(allowed_serial_numbers=["abc-*", "exact"])
    assert validate_serial_number(r, "abc-123") == ""
    assert validate_serial_number(r, "exact") == ""
    assert validate_serial_number(r, "nope") == "nope"
    assert validate_serial_number(role(), "x") == "x"

    u = role(allowed_user_ids=["Alice", "svc-*"])
    assert validate_user_id(u, "alice")  # exact entries are case-insensitive
    assert validate_user_id(u, "svc-web")
    assert not validate_user_id(u, "bob")
    assert not validate_user_id(role(), "anyone")
    assert validate_user_id(role(allowed_user_ids=["*"]), "anyone")

    s = role(allowed_uri_sans=["spiffe://cluster.local/*"])
    assert validate_uri_san(s, "spiffe://cluster.local/ns/a/sa/b")
    assert not validate_uri_san(s, "spiffe://evil/ns")


def test_other_sans_parse_and_policy() -> None:
    assert parse_other_sans(["1.2.3.4;UTF8:a", "1.2.3.4;utf-8:b"]) == {"1.2.3.4": ["a", "b"]}
    for bad, text in (
        ("1.2.3.4:UTF8:a", "expected a semicolon"),
        ("1.2.3.4;UTF8", "expected a colon"),
        ("1.2.3.4;IA5:a", "only utf8 other SANs are supported"),
    ):
        with pytest.raises(OtherSanError, match=text):
            parse_other_sans([bad])
    r = role(allowed_other_sans=["1.2.3.4;UTF8:dev-*"])
    assert validate_other_sans(r, {"1.2.3.4": ["dev-1"]}) == ("", "")
    assert validate_other_sans(r, {"1.2.3.4": ["prod-1"]}) == ("1.2.3.4", "prod-1")
    assert validate_other_sans(r, {"1.2.3.5": ["dev-1"]}) == ("1.2.3.5", "")
    assert validate_other_sans(role(allowed_other_sans=["*"]), {"9.9": ["x"]}) == ("", "")


# -- resolve_names: the request as a whole ----------------------------------------------------


def resolve(r: RoleEntry, csr: CsrNames | None = None, **kw: Any) -> object:
    return resolve_names(r, NameRequest(**kw), csr)


def test_names_of_an_api_request() -> None:
    r = role(allowed_domains=["example.com"], allow_subdomains=True, allowed_uri_sans=["spiffe://*"])
    out = resolve_names(
        r,
        NameRequest(
            common_name="www.example.com",
            alt_names=["api.example.com", "www.example.com", "ops@mail.example.com"],
            ip_sans=["10.0.0.1", "::1"],
            uri_sans=["spiffe://td/x"],
        ),
    )
    assert out.dns_names == ["www.example.com", "api.example.com"]
    assert out.emails == ["ops@mail.example.com"]
    assert out.ips == [ipaddress.ip_address("10.0.0.1"), ipaddress.ip_address("::1")]
    assert out.uris == ["spiffe://td/x"]


def test_exclude_cn_from_sans_still_checks_the_cn() -> None:
    r = role(allowed_domains=["example.com"], allow_subdomains=True)
    out = resolve_names(r, NameRequest(common_name="a.example.com", exclude_cn_from_sans=True))
    assert out.dns_names == [] and out.common_name == "a.example.com"
    with pytest.raises(UserError, match="^common name evil.com not allowed by this role$"):
        resolve_names(r, NameRequest(common_name="evil.com", exclude_cn_from_sans=True))


@pytest.mark.parametrize(
    ("kw", "text"),
    [
        ({"common_name": "evil.com"}, "common name evil.com not allowed by this role"),
        (
            {"common_name": "a.example.com", "alt_names": ["evil.com"]},
            "subject alternate name evil.com not allowed by this role",
        ),
        (
            {"common_name": "a.example.com", "alt_names": ["x@evil.com"]},
            "email address x@evil.com not allowed by this role",
        ),
        (
            {"common_name": "a.example.com", "alt_names": ["bad_name"]},
            "subject alternate name bad_name is not a valid DNS name and cannot be included as a SAN",
        ),
        ({"common_name": "a.example.com", "ip_sans": ["nope"]}, 'the value "nope" is not a valid IP address'),
        (
            {"common_name": "a.example.com", "uri_sans": ["spiffe://x"]},
            "URI Subject Alternative Names are not allowed in this role, but were provided via the API",
        ),
        (
            {"common_name": "a.example.com", "other_sans": ["1.2.3;UTF8:x"]},
            "other SAN OID 1.2.3 not allowed by this role",
        ),
        (
            {"common_name": "a.example.com", "other_sans": ["1.2.3"]},
            'could not parse requested other SAN: expected a semicolon in other SAN "1.2.3"',
        ),
        (
            {"common_name": "a.example.com", "serial_number": "s1"},
            "serial_number s1 not allowed by this role",
        ),
        ({"common_name": "a.example.com", "user_ids": ["bob"]}, "user_id bob is not allowed by this role"),
        (
            {},
            'the common_name field is required, or must be provided in a CSR with "use_csr_common_name" set to true, unless "require_cn" is set to false',
        ),
    ],
)
def test_refusals_carry_vaults_texts(kw: dict[str, Any], text: str) -> None:
    r = role(allowed_domains=["example.com"], allow_subdomains=True)
    with pytest.raises(UserError) as err:
        resolve(r, **kw)
    assert err.value.errors == [text]


def test_ip_sans_switch_and_cidr_for_api_and_csr() -> None:
    no_ips = role(allow_any_name=True, allow_ip_sans=False)
    with pytest.raises(UserError) as err:
        resolve(no_ips, common_name="a.test", ip_sans=["127.0.0.1", "10.0.0.1"])
    assert err.value.errors == [
        "IP Subject Alternative Names are not allowed in this role, but was provided [127.0.0.1 10.0.0.1]"
    ]
    csr = CsrNames(common_name="a.test", ips=[ipaddress.ip_address("10.0.0.1")])
    with pytest.raises(UserError, match="but was provided some via CSR"):
        resolve(no_ips, csr)

    cidr = role(allow_any_name=True, allowed_ip_sans_cidr=["10.0.0.0/8", "2001:db8::/32"])
    assert resolve_names(cidr, NameRequest(common_name="a.test", ip_sans=["10.1.2.3", "2001:db8::1"])).ips
    with pytest.raises(
        UserError, match="IP Subject Alternative Name 169.254.169.254 not allowed by this role"
    ):
        resolve(cidr, common_name="a.test", ip_sans=["169.254.169.254"])
    # GHSA-g892-p242-8g86: the CIDR also binds IP SANs that come from a CSR
    metadata = CsrNames(common_name="a.test", ips=[ipaddress.ip_address("169.254.169.254")])
    with pytest.raises(UserError, match="169.254.169.254 not allowed"):
        resolve(cidr, metadata)


def test_csr_names_win_over_json_when_the_role_says_so() -> None:
    r = role(allowed_domains=["example.com"], allow_subdomains=True, allowed_uri_sans=["spiffe://td/*"])
    csr = CsrNames(common_name="csr.example.com", dns_names=["alt.example.com"], uris=["spiffe://td/a"])
    out = resolve_names(r, NameRequest(common_name="json.example.com", alt_names=["json2.example.com"]), csr)
    assert out.common_name == "csr.example.com"
    assert out.dns_names == ["csr.example.com", "alt.example.com"]
    assert out.uris == ["spiffe://td/a"]
    with pytest.raises(UserError) as err:
        resolve(r, CsrNames(common_name="a.example.com", uris=["spiffe://evil/a"]))
    assert err.value.errors == [
        "URI Subject Alternative Names were provided via CSR which are not valid for this role"
    ]

    json_names = role(
        allowed_domains=["example.com"], allow_subdomains=True, use_csr_common_name=False, use_csr_sans=False
    )
    out = resolve_names(
        json_names, NameRequest(common_name="json.example.com", alt_names=["j2.example.com"]), csr
    )
    assert out.common_name == "json.example.com"
    assert out.dns_names == ["json.example.com", "j2.example.com"]


def test_istio_workload_csr_has_only_a_uri() -> None:
    r = role(require_cn=False, allowed_uri_sans=["spiffe://cluster.local/*"])
    out = resolve_names(r, NameRequest(common_name=""), CsrNames(uris=["spiffe://cluster.local/ns/a/sa/b"]))
    assert out.common_name == "" and out.dns_names == [] and out.uris == ["spiffe://cluster.local/ns/a/sa/b"]


def test_serial_number_source() -> None:
    r = role(allow_any_name=True, allowed_serial_numbers=["*"])
    csr = CsrNames(common_name="a.test", serial_number="from-csr")
    assert resolve_names(r, NameRequest(), csr).serial_number == "from-csr"
    assert resolve_names(r, NameRequest(serial_number="from-json"), csr).serial_number == "from-json"
    json_only = role(allow_any_name=True, allowed_serial_numbers=["*"], serial_number_source="json")
    assert resolve_names(json_only, NameRequest(), csr).serial_number == ""
