"""PKI roles over HTTP: Vault's defaults, POST replaces / PATCH merges, read shapes, validation texts."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from strongroom.engines.pki.roles import RoleEntry, key_type_signature_defaults, role_from_input
from strongroom.logical.errors import UserError
from strongroom.testing import Harness, running_core

MERGE = {"Content-Type": "application/merge-patch+json"}

VAULT_DEFAULTS: dict[str, Any] = {
    "ttl": 0,
    "max_ttl": 0,
    "allow_localhost": True,
    "allowed_domains": [],
    "allowed_domains_template": False,
    "allow_bare_domains": False,
    "allow_subdomains": False,
    "allow_glob_domains": False,
    "allow_wildcard_certificates": True,
    "allow_any_name": False,
    "allow_token_displayname": False,
    "enforce_hostnames": True,
    "allow_ip_sans": True,
    "allowed_ip_sans_cidr": [],
    "allowed_uri_sans": [],
    "allowed_uri_sans_template": False,
    "allowed_other_sans": [],
    "allowed_serial_numbers": [],
    "allowed_user_ids": [],
    "server_flag": True,
    "client_flag": True,
    "code_signing_flag": False,
    "email_protection_flag": False,
    "key_type": "rsa",
    "key_bits": 2048,
    "signature_bits": 256,
    "use_pss": False,
    "key_usage": ["DigitalSignature", "KeyAgreement", "KeyEncipherment"],
    "ext_key_usage": [],
    "ext_key_usage_oids": [],
    "use_csr_common_name": True,
    "use_csr_sans": True,
    "serial_number_source": "json-csr",
    "ou": [],
    "organization": [],
    "country": [],
    "locality": [],
    "province": [],
    "street_address": [],
    "postal_code": [],
    "generate_lease": False,
    "no_store": False,
    "no_store_metadata": False,
    "require_cn": True,
    "cn_validations": ["email", "hostname"],
    "policy_identifiers": [],
    "basic_constraints_valid_for_non_ca": False,
    "not_before_duration": 30,
    "not_after": "",
    "issuer_ref": "default",
}


@pytest.fixture
async def pki() -> AsyncIterator[Harness]:
    async with running_core() as h:
        r = await h.call("POST", "sys/mounts/pki", json={"type": "pki"})
        assert r.status_code == 204, r.text
        r = await h.call(
            "POST", "pki/root/generate/internal", json={"common_name": "Roles Root", "key_type": "ec"}
        )
        assert r.status_code == 200, r.text
        yield h


async def write(h: Harness, name: str, body: dict[str, Any]) -> httpx.Response:
    return await h.call("POST", f"pki/roles/{name}", json=body)


async def read(h: Harness, name: str) -> dict[str, Any]:
    r = await h.call("GET", f"pki/roles/{name}")
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()["data"]
    return data


async def test_new_role_has_vaults_defaults_and_write_answers_the_role(pki: Harness) -> None:
    r = await write(pki, "plain", {})
    assert r.status_code == 200, r.text
    assert r.json()["data"] == VAULT_DEFAULTS
    assert await read(pki, "plain") == VAULT_DEFAULTS


async def test_durations_read_as_seconds_and_comma_strings_as_lists(pki: Harness) -> None:
    r = await write(
        pki,
        "shapes",
        {
            "ttl": "1h",
            "max_ttl": "2160h0m0s",
            "not_before_duration": "1m",
            "allowed_domains": "a.example.com,b.example.com",
            "key_usage": "DigitalSignature",
            "ou": "x,y",
            "allow_subdomains": "true",  # cert-manager style strings
            "enforce_hostnames": "false",
        },
    )
    assert r.status_code == 200, r.text
    data = await read(pki, "shapes")
    assert (data["ttl"], data["max_ttl"], data["not_before_duration"]) == (3600, 7776000, 60)
    assert data["allowed_domains"] == ["a.example.com", "b.example.com"]
    assert data["key_usage"] == ["DigitalSignature"]
    assert data["ou"] == ["x", "y"]
    assert data["allow_subdomains"] is True and data["enforce_hostnames"] is False


async def test_post_replaces_and_patch_merges(pki: Harness) -> None:
    await write(pki, "r", {"allow_subdomains": True, "allowed_domains": ["example.com"], "ttl": 60})
    r = await write(pki, "r", {"ttl": 120})
    assert r.status_code == 200
    data = await read(pki, "r")
    assert data["ttl"] == 120
    assert data["allow_subdomains"] is False and data["allowed_domains"] == []  # omitted → defaults

    await write(pki, "r", {"allow_subdomains": True, "allowed_domains": ["example.com"], "ttl": 60})
    r = await pki.call("PATCH", "pki/roles/r", json={"ttl": "2m", "organization": "Acme"}, headers=MERGE)
    assert r.status_code == 200, r.text
    data = await read(pki, "r")
    assert data["ttl"] == 120 and data["organization"] == ["Acme"]
    assert data["allow_subdomains"] is True and data["allowed_domains"] == ["example.com"]


async def test_patch_of_a_missing_role_is_refused(pki: Harness) -> None:
    r = await pki.call("PATCH", "pki/roles/ghost", json={"ttl": 1}, headers=MERGE)
    assert r.status_code == 400
    assert r.json()["errors"] == ["Unable to fetch role entry to patch"]


async def test_list_read_delete(pki: Harness) -> None:
    r = await pki.client.request("LIST", "/v1/pki/roles", headers=pki.headers())
    assert r.status_code == 404  # empty LIST
    for name in ("b-role", "a-role"):
        assert (await write(pki, name, {})).status_code == 200
    r = await pki.client.request("LIST", "/v1/pki/roles", headers=pki.headers())
    assert r.json()["data"]["keys"] == ["a-role", "b-role"]
    r = await pki.call("GET", "pki/roles?list=true")
    assert r.json()["data"]["keys"] == ["a-role", "b-role"]
    assert (await pki.call("DELETE", "pki/roles/a-role")).status_code == 204
    assert (await pki.call("GET", "pki/roles/a-role")).status_code == 404
    assert (await pki.call("DELETE", "pki/roles/a-role")).status_code == 204


@pytest.mark.parametrize(
    ("body", "text"),
    [
        ({"key_bits": 1024}, "RSA keys < 2048 bits are unsafe and not supported: got 1024"),
        ({"key_bits": 2049}, "unsupported bit length for RSA key: 2049"),
        ({"key_type": "ec", "key_bits": 255}, "unsupported bit length for EC key: 255"),
        ({"key_type": "dsa"}, "unknown key type dsa"),
        ({"signature_bits": 123}, "unsupported hash signature algorithm: 123"),
        ({"ttl": "2h", "max_ttl": "1h"}, '"ttl" value must be less than "max_ttl" value'),
        ({"cn_validations": "email,bogus"}, "cn_validations value incorrect: unknown type: `bogus`"),
        (
            {"cn_validations": "email,email"},
            "cn_validations value incorrect: `email` specified multiple times",
        ),
        (
            {"cn_validations": "disabled,email"},
            "cn_validations value incorrect: cannot specify `disabled` along with `email` or `hostname`",
        ),
        (
            {"ext_key_usage_oids": "1.2.x"},
            '"1.2.x" could not be parsed as a valid oid for an extended key usage',
        ),
        (
            {"allowed_other_sans": "1.2.3:UTF8:x"},
            'error parsing allowed_other_sans: expected a semicolon in other SAN "1.2.3:UTF8:x"',
        ),
        ({"serial_number_source": "csr"}, "unknown serial_number_source csr"),
        ({"allowed_ip_sans_cidr": "10.0.0.0/33"}, "invalid CIDR in allowed_ip_sans_cidr: 10.0.0.0/33"),
        ({"policy_identifiers": "not-an-oid"}, "invalid policy identifier: not-an-oid"),
    ],
)
async def test_invalid_roles_answer_400_with_vaults_texts(
    pki: Harness, body: dict[str, Any], text: str
) -> None:
    r = await write(pki, "bad", body)
    assert r.status_code == 400, r.text
    assert r.json()["errors"] == [text]
    assert (await pki.call("GET", "pki/roles/bad")).status_code == 404


async def test_key_size_defaults_per_type(pki: Harness) -> None:
    await write(pki, "ec", {"key_type": "ec"})
    await write(pki, "ed", {"key_type": "ed25519", "key_bits": 4096})
    await write(pki, "any", {"key_type": "any", "signature_bits": 384})
    ec, ed, anything = await read(pki, "ec"), await read(pki, "ed"), await read(pki, "any")
    assert (ec["key_bits"], ec["signature_bits"]) == (256, 0)
    assert (ed["key_type"], ed["signature_bits"]) == ("ed25519", 0)
    assert (anything["key_bits"], anything["signature_bits"]) == (0, 0)


async def test_lease_and_issuer_warnings(pki: Harness) -> None:
    r = await write(pki, "leased", {"generate_lease": True})
    assert any("encouraged to disable generate_lease" in w for w in r.json()["warnings"])
    assert r.json()["data"]["generate_lease"] is True

    r = await write(pki, "nostore", {"generate_lease": True, "no_store": True})
    assert r.json()["data"]["generate_lease"] is False
    assert any("no_store=true takes priority" in w for w in r.json()["warnings"])

    r = await write(pki, "dangling", {"issuer_ref": "nope"})
    assert r.status_code == 200
    assert r.json()["warnings"] == [
        "Issuing Certificate was set to nope but no issuing certificate currently has that name"
    ]
    assert r.json()["data"]["issuer_ref"] == "nope"


async def test_default_issuer_warning_without_any_issuer() -> None:
    async with running_core() as h:
        await h.call("POST", "sys/mounts/bare", json={"type": "pki"})
        r = await h.call("POST", "bare/roles/x", json={})
        assert r.status_code == 200
        assert r.json()["warnings"] == [
            "Issuing Certificate was set to default, but no default issuing certificate "
            "(configurable at /config/issuers) is currently set"
        ]


async def test_policy_identifiers_plain_and_qualified(pki: Harness) -> None:
    await write(pki, "p1", {"policy_identifiers": "1.2.3.4,1.2.3.5"})
    assert (await read(pki, "p1"))["policy_identifiers"] == ["1.2.3.4", "1.2.3.5"]
    qualified = json.dumps(
        [
            {"oid": "1.3.6.1.4.1.7.8", "notice": "I am a user Notice"},
            {"oid": "1.3.6.1.4.1.44947.1.2.4", "cps": "https://example.com"},
        ]
    )
    await write(pki, "p2", {"policy_identifiers": qualified})
    stored = (await read(pki, "p2"))["policy_identifiers"]
    assert [json.loads(p) for p in stored] == [
        {"oid": "1.3.6.1.4.1.7.8", "notice": "I am a user Notice"},
        {"oid": "1.3.6.1.4.1.44947.1.2.4", "cps": "https://example.com"},
    ]


async def test_existence_check_separates_create_from_update(pki: Harness) -> None:
    policy = 'path "pki/roles/*" { capabilities = ["create"] }'
    assert (
        await pki.call("PUT", "sys/policies/acl/role-creator", json={"policy": policy})
    ).status_code == 204
    r = await pki.call("POST", "auth/token/create", json={"policies": ["role-creator"]})
    token = r.json()["auth"]["client_token"]
    assert (await pki.call("POST", "pki/roles/fresh", json={}, token=token)).status_code == 200
    r = await pki.call("POST", "pki/roles/fresh", json={"ttl": 5}, token=token)
    assert r.status_code == 403  # the role exists now: that is an update


def test_role_model_is_pure_and_normalises() -> None:
    role, warnings = role_from_input({"key_type": "EC", "cn_validations": ["Email"]})
    assert (role.key_type, role.key_bits, role.cn_validations, warnings) == ("ec", 256, ["email"], [])
    patched, _ = role_from_input({"ttl": 5}, role)
    assert patched.key_type == "ec" and patched.ttl == 5 and role.ttl == 0  # base untouched
    assert RoleEntry.from_json(role.to_json()) == role
    assert key_type_signature_defaults("rsa", 0, 0) == (2048, 256)
    with pytest.raises(UserError):
        key_type_signature_defaults("rsa", 8191, 0)
