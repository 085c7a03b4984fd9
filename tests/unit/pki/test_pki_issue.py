"""Issuance: pure certificate building (issuing.py) and the issue/sign/sign-verbatim paths.

Every certificate is parsed back with cryptography and checked for exactly the names,
usages and validity the role permits; cert-manager's request shape is replayed as it
sends it; refusals carry Vault's texts.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import json
import subprocess
import tempfile
import warnings
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, SignatureAlgorithmOID

from strongroom.engines.pki import store
from strongroom.engines.pki.issuing import (
    Issued,
    IssueInput,
    build_certificate,
    check_csr_key,
    compute_validity,
    parse_csr,
    response_data,
)
from strongroom.engines.pki.names import NameRequest, resolve_names
from strongroom.engines.pki.roles import RoleEntry
from strongroom.engines.pki.store import AIAUrls, SigningIssuer
from strongroom.logical.errors import UserError
from strongroom.testing import Harness, running_core

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)


# -- helpers --------------------------------------------------------------------------------


def make_ca(
    key: Any = None,
    *,
    cn: str = "Test CA",
    parent: tuple[x509.Certificate, Any] | None = None,
    days: float = 3650,
    behavior: str = "err",
    aia: AIAUrls | None = None,
) -> SigningIssuer:
    key = key or ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    issuer_name, signer = (subject, key) if parent is None else (parent[0].subject, parent[1])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(hours=1))
        .not_valid_after(NOW + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    algorithm = None if isinstance(signer, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    cert = builder.sign(signer, algorithm)
    chain = [store.cert_pem(cert)] + ([] if parent is None else [store.cert_pem(parent[0])])
    return SigningIssuer(
        issuer_id="issuer-1",
        issuer_name=cn,
        certificate=cert,
        private_key=key,
        chain_pem=chain,
        leaf_not_after_behavior=behavior,
        usage=set(store.ALL_USAGES),
        aia=aia or AIAUrls(),
    )


def make_csr(
    key: Any = None,
    *,
    cn: str | None = "a.example.com",
    dns: tuple[str, ...] = (),
    ips: tuple[str, ...] = (),
    uris: tuple[str, ...] = (),
    ca: bool | None = None,
    eku: list[x509.ObjectIdentifier] | None = None,
    extra_subject: tuple[x509.NameAttribute[str], ...] = (),
) -> str:
    key = key or ec.generate_private_key(ec.SECP256R1())
    attrs = list(extra_subject) + ([x509.NameAttribute(NameOID.COMMON_NAME, cn)] if cn else [])
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(attrs))
    sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
    sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    sans += [x509.UniformResourceIdentifier(u) for u in uris]
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    if ca is not None:
        builder = builder.add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    if eku:
        builder = builder.add_extension(x509.ExtendedKeyUsage(eku), critical=False)
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(key, algorithm).public_bytes(serialization.Encoding.PEM).decode()


def leaf(data: dict[str, Any]) -> x509.Certificate:
    return x509.load_pem_x509_certificate(data["certificate"].encode())


def san_of(cert: x509.Certificate) -> dict[str, list[str]]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return {"dns": [], "ip": [], "uri": [], "email": []}
    return {
        "dns": san.get_values_for_type(x509.DNSName),
        "ip": [str(i) for i in san.get_values_for_type(x509.IPAddress)],
        "uri": san.get_values_for_type(x509.UniformResourceIdentifier),
        "email": san.get_values_for_type(x509.RFC822Name),
    }


def cn_of(cert: x509.Certificate) -> str:
    attrs = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(attrs[0].value) if attrs else ""


def ext(cert: x509.Certificate, cls: type[Any]) -> Any:
    return cert.extensions.get_extension_for_class(cls)


# -- validity (pure) ------------------------------------------------------------------------


def test_ttl_order_request_then_role_then_mount_capped_with_warning() -> None:
    issuer = make_ca()
    role = RoleEntry()
    v = compute_validity(role, 0, "", issuer, 3600, 7200, NOW)
    assert (v.not_after - NOW, v.warnings) == (dt.timedelta(hours=1), [])  # mount default
    v = compute_validity(RoleEntry(ttl=600), 0, "", issuer, 3600, 7200, NOW)
    assert v.not_after - NOW == dt.timedelta(minutes=10)  # role ttl
    v = compute_validity(RoleEntry(ttl=600), 60, "", issuer, 3600, 7200, NOW)
    assert v.not_after - NOW == dt.timedelta(minutes=1)  # request ttl
    v = compute_validity(RoleEntry(max_ttl=1800), 3600, "", issuer, 3600, 7200, NOW)
    assert v.not_after - NOW == dt.timedelta(minutes=30)
    assert v.warnings == ['TTL "1h0m0s" is longer than permitted maxTTL "30m0s", so maxTTL is being used']
    v = compute_validity(role, 90000, "", issuer, 3600, 7200, NOW)  # mount max caps too
    assert v.not_after - NOW == dt.timedelta(hours=2)
    assert v.warnings == ['TTL "25h0m0s" is longer than permitted maxTTL "2h0m0s", so maxTTL is being used']


def test_not_after_and_not_before() -> None:
    issuer = make_ca()
    fixed = (NOW + dt.timedelta(days=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
    v = compute_validity(RoleEntry(), 0, fixed, issuer, 3600, 10**7, NOW)
    assert v.not_after == NOW + dt.timedelta(days=3)
    assert v.not_before == NOW - dt.timedelta(seconds=30)
    assert compute_validity(RoleEntry(not_before_duration=0), 0, "", issuer, 60, 60, NOW).not_before == NOW
    with pytest.raises(UserError) as err:
        compute_validity(RoleEntry(), 60, fixed, issuer, 3600, 10**7, NOW)
    assert err.value.errors == [
        "Either ttl or not_after should be provided. Both should not be provided in the same request."
    ]
    with pytest.raises(UserError, match='parsing time "tomorrow"'):
        compute_validity(RoleEntry(), 0, "tomorrow", issuer, 3600, 10**7, NOW)
    with pytest.raises(UserError, match="^notAfter before notBefore$"):
        past = (NOW - dt.timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        compute_validity(RoleEntry(), 0, past, issuer, 3600, 10**7, NOW)
    with pytest.raises(UserError, match="^notBefore before signer's notBefore$"):
        compute_validity(RoleEntry(not_before_duration=7200), 0, "", issuer, 3600, 10**7, NOW)


@pytest.mark.parametrize("behavior", ["err", "truncate", "permit"])
def test_leaf_not_after_behavior(behavior: str) -> None:
    issuer = make_ca(days=1, behavior=behavior)
    ca_end = issuer.certificate.not_valid_after_utc
    if behavior == "err":
        with pytest.raises(UserError) as err:
            compute_validity(RoleEntry(), 3 * 86400, "", issuer, 3600, 10**7, NOW)
        want_end = (NOW + dt.timedelta(days=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
        assert err.value.errors == [
            f"cannot satisfy request, as TTL would result in notAfter of {want_end} that is beyond the expiration "
            f"of the CA certificate at {ca_end.strftime('%Y-%m-%dT%H:%M:%SZ')}"
        ]
        return
    v = compute_validity(RoleEntry(), 3 * 86400, "", issuer, 3600, 10**7, NOW)
    assert v.not_after == (ca_end if behavior == "truncate" else NOW + dt.timedelta(days=3))


# -- CSRs (pure) ----------------------------------------------------------------------------


def test_bad_csrs_have_vaults_texts() -> None:
    cases = {
        "": '"csr" is empty',
        "hello": "csr contains no data",
        "-----BEGIN CERTIFICATE REQUEST-----\n!!!!\n-----END CERTIFICATE REQUEST-----": "csr contains no data",
    }
    for text, message in cases.items():
        with pytest.raises(UserError) as err:
            parse_csr(text)
        assert err.value.errors == [message]
    junk = base64.b64encode(b"\x30\x03\x02\x01\x00").decode()
    with pytest.raises(UserError, match="^certificate request could not be parsed: "):
        parse_csr(f"-----BEGIN CERTIFICATE REQUEST-----\n{junk}\n-----END CERTIFICATE REQUEST-----")


def tamper_signature(pem: str) -> str:
    csr = x509.load_pem_x509_csr(pem.encode())
    der = bytearray(csr.public_bytes(serialization.Encoding.DER))
    der[-3] ^= 0x01  # inside the signature value
    body = base64.encodebytes(bytes(der)).decode()
    return f"-----BEGIN CERTIFICATE REQUEST-----\n{body}-----END CERTIFICATE REQUEST-----\n"


def test_csr_signature_is_verified() -> None:
    with pytest.raises(UserError) as err:
        parse_csr(tamper_signature(make_csr()))
    assert err.value.errors == ["request signature invalid"]
    # the first PEM block counts, whatever else surrounds it
    assert parse_csr("junk before\n" + make_csr() + "junk after").subject


def test_csr_key_must_fit_the_role() -> None:
    ec_csr = parse_csr(make_csr(ec.generate_private_key(ec.SECP256R1())))
    rsa_csr = parse_csr(make_csr(rsa.generate_private_key(public_exponent=65537, key_size=2048)))
    with pytest.raises(UserError, match="^role requires keys of type rsa$"):
        check_csr_key(RoleEntry(key_type="rsa", key_bits=2048), ec_csr)
    with pytest.raises(
        UserError, match="^role requires a minimum of a 384-bit key, but CSR's key is 256 bits$"
    ):
        check_csr_key(RoleEntry(key_type="ec", key_bits=384), ec_csr)
    with pytest.raises(
        UserError, match="^role requires a minimum of a 4096-bit key, but CSR's key is 2048 bits$"
    ):
        check_csr_key(RoleEntry(key_type="rsa", key_bits=4096, signature_bits=256), rsa_csr)
    weak = parse_csr(make_csr(rsa.generate_private_key(public_exponent=65537, key_size=1024)))
    with pytest.raises(UserError, match="^RSA keys < 2048 bits are unsafe and not supported$"):
        check_csr_key(RoleEntry(key_type="any"), weak)
    assert check_csr_key(RoleEntry(key_type="any"), ec_csr).key_bits == 224


# -- building (pure) ------------------------------------------------------------------------


def build(role: RoleEntry, issuer: SigningIssuer, **names: Any) -> x509.Certificate:
    resolved = resolve_names(role, NameRequest(**names))
    validity = compute_validity(role, 3600, "", issuer, 3600, 86400, NOW)
    key = ec.generate_private_key(ec.SECP256R1())
    return build_certificate(role, resolved, key.public_key(), issuer, validity)


def test_extensions_are_exactly_what_the_role_says() -> None:
    aia = AIAUrls(
        issuing_certificates=["http://ca.test/ca"],
        crl_distribution_points=["http://ca.test/crl"],
        ocsp_servers=["http://ca.test/ocsp"],
    )
    issuer = make_ca(aia=aia)
    role = RoleEntry(
        allow_any_name=True,
        key_usage=["DigitalSignature", "contentcommitment"],
        ext_key_usage=["TimeStamping"],
        ext_key_usage_oids=["1.3.6.1.4.1.311.20.2.2"],
        code_signing_flag=True,
        client_flag=False,
        basic_constraints_valid_for_non_ca=True,
        policy_identifiers=[
            '{"oid":"1.3.6.1.4.1.44947.1.2.4","cps":"https://example.com/cps","notice":"hi"}',
            "2.23.140.1.2.1",
        ],
        organization=["Acme"],
        ou=["Ops", "Ops"],
        country=["US"],
    )
    cert = build(role, issuer, common_name="svc.test")
    ku = ext(cert, x509.KeyUsage)
    assert ku.critical and ku.value.digital_signature and ku.value.content_commitment
    assert not ku.value.key_encipherment and not ku.value.key_agreement
    assert ext(cert, x509.ExtendedKeyUsage).value._usages == [
        ExtendedKeyUsageOID.SERVER_AUTH,
        ExtendedKeyUsageOID.CODE_SIGNING,
        ExtendedKeyUsageOID.TIME_STAMPING,
        x509.ObjectIdentifier("1.3.6.1.4.1.311.20.2.2"),
    ]
    bc = ext(cert, x509.BasicConstraints)
    assert bc.critical and bc.value.ca is False
    policies = ext(cert, x509.CertificatePolicies).value
    assert [p.policy_identifier.dotted_string for p in policies] == [
        "1.3.6.1.4.1.44947.1.2.4",
        "2.23.140.1.2.1",
    ]
    assert policies[0].policy_qualifiers[0] == "https://example.com/cps"
    assert policies[0].policy_qualifiers[1].explicit_text == "hi"
    access = ext(cert, x509.AuthorityInformationAccess).value
    assert [(a.access_method._name, a.access_location.value) for a in access] == [
        ("OCSP", "http://ca.test/ocsp"),
        ("caIssuers", "http://ca.test/ca"),
    ]
    crl = ext(cert, x509.CRLDistributionPoints).value
    assert [p.full_name[0].value for p in crl] == ["http://ca.test/crl"]
    issuer_ski = ext(issuer.certificate, x509.SubjectKeyIdentifier).value.digest
    assert ext(cert, x509.AuthorityKeyIdentifier).value.key_identifier == issuer_ski
    want_ski = x509.SubjectKeyIdentifier.from_public_key(cert.public_key())
    assert ext(cert, x509.SubjectKeyIdentifier).value == want_ski
    assert cert.subject.rfc4514_string() == "CN=svc.test,OU=Ops,O=Acme,C=US"
    cert.verify_directly_issued_by(issuer.certificate)


def test_subject_accepts_what_go_accepts() -> None:
    role = RoleEntry(
        allow_any_name=True,
        country=["USA"],
        province=["CA"],
        locality=["SF"],
        street_address=["1 Main"],
        postal_code=["94000"],
    )
    cert = build(role, make_ca(), common_name="a.test")
    with warnings.catch_warnings():  # cryptography warns about a 3-letter country when parsing
        warnings.simplefilter("ignore", UserWarning)
        oids = [a.oid for a in cert.subject]
    assert oids == [
        NameOID.COUNTRY_NAME,
        NameOID.STATE_OR_PROVINCE_NAME,
        NameOID.LOCALITY_NAME,
        NameOID.STREET_ADDRESS,
        NameOID.POSTAL_CODE,
        NameOID.COMMON_NAME,
    ]


def test_defaults_no_basic_constraints_and_critical_san_for_empty_subject() -> None:
    issuer = make_ca()
    role = RoleEntry(allow_any_name=True, require_cn=False, allowed_uri_sans=["spiffe://*"])
    cert = build(role, issuer, uri_sans=["spiffe://td/ns/x"])
    with pytest.raises(x509.ExtensionNotFound):
        ext(cert, x509.BasicConstraints)
    assert len(cert.subject) == 0
    assert ext(cert, x509.SubjectAlternativeName).critical is True
    ku = ext(cert, x509.KeyUsage).value
    assert ku.digital_signature and ku.key_agreement and ku.key_encipherment
    assert ext(cert, x509.ExtendedKeyUsage).value._usages == [
        ExtendedKeyUsageOID.SERVER_AUTH,
        ExtendedKeyUsageOID.CLIENT_AUTH,
    ]


def test_signature_algorithm_follows_issuer_and_role() -> None:
    rsa_issuer = make_ca(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    anyname = RoleEntry(allow_any_name=True, signature_bits=384)
    assert (
        build(anyname, rsa_issuer, common_name="a.test").signature_algorithm_oid
        == SignatureAlgorithmOID.RSA_WITH_SHA384
    )
    pss = RoleEntry(allow_any_name=True, signature_bits=256, use_pss=True)
    cert = build(pss, rsa_issuer, common_name="a.test")
    assert cert.signature_algorithm_oid == SignatureAlgorithmOID.RSASSA_PSS
    assert isinstance(cert.signature_algorithm_parameters, padding.PSS)
    p384 = make_ca(ec.generate_private_key(ec.SECP384R1()))
    assert (
        build(anyname, p384, common_name="a.test").signature_algorithm_oid
        == SignatureAlgorithmOID.ECDSA_WITH_SHA384
    )
    ed = make_ca(ed25519.Ed25519PrivateKey.generate())
    assert build(anyname, ed, common_name="a.test").signature_algorithm_oid == SignatureAlgorithmOID.ED25519


def test_response_shapes() -> None:
    root_key = ec.generate_private_key(ec.SECP256R1())
    root = make_ca(root_key, cn="Root")
    inter = make_ca(cn="Intermediate", parent=(root.certificate, root_key))
    role = RoleEntry(allow_any_name=True)
    cert = build(role, inter, common_name="x.test")
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    issued = Issued(cert, key)

    pem = response_data(issued, inter, IssueInput())
    assert pem["serial_number"] == store.serial_to_str(cert.serial_number)
    assert pem["expiration"] == int(cert.not_valid_after_utc.timestamp())
    assert pem["issuing_ca"] == store.cert_pem(inter.certificate)
    assert pem["ca_chain"] == [store.cert_pem(inter.certificate), store.cert_pem(root.certificate)]
    assert pem["private_key"].startswith("-----BEGIN RSA PRIVATE KEY-----") and not pem[
        "private_key"
    ].endswith("\n")
    assert pem["private_key_type"] == "rsa" and not pem["certificate"].endswith("\n")

    pkcs8 = response_data(issued, inter, IssueInput(private_key_format="pkcs8"))
    assert pkcs8["private_key"].startswith("-----BEGIN PRIVATE KEY-----")

    der = response_data(issued, inter, IssueInput(format="der"))
    assert x509.load_der_x509_certificate(base64.b64decode(der["certificate"])) == cert
    assert [x509.load_der_x509_certificate(base64.b64decode(c)) for c in der["ca_chain"]] == [
        inter.certificate,
        root.certificate,
    ]
    serialization.load_der_private_key(base64.b64decode(der["private_key"]), None)

    bundle = response_data(issued, inter, IssueInput(format="pem_bundle", private_key_format="pkcs8"))
    parts = bundle["certificate"].split("\n-----BEGIN")
    assert bundle["certificate"].startswith("-----BEGIN RSA PRIVATE KEY-----")  # the bundle keeps PKCS#1
    assert len(parts) == 4 and x509.load_pem_x509_certificates(bundle["certificate"].encode())[0] == cert
    assert bundle["private_key"].startswith("-----BEGIN PRIVATE KEY-----")

    trimmed = response_data(Issued(cert), inter, IssueInput(remove_roots_from_chain=True))
    assert trimmed["ca_chain"] == [store.cert_pem(inter.certificate)]
    assert "private_key" not in trimmed and "private_key_type" not in trimmed
    assert "ca_chain" not in response_data(
        Issued(build(role, root, common_name="r.test")), root, IssueInput(remove_roots_from_chain=True)
    )


# -- over HTTP ------------------------------------------------------------------------------


@pytest.fixture
async def pki() -> AsyncIterator[Harness]:
    async with running_core() as h:
        mount = {"type": "pki", "config": {"max_lease_ttl": "87600h"}}
        assert (await h.call("POST", "sys/mounts/pki", json=mount)).status_code == 204
        r = await h.call(
            "POST",
            "pki/root/generate/internal",
            json={"common_name": "Issue Root", "key_type": "ec", "ttl": "87600h"},
        )
        assert r.status_code == 200, r.text
        yield h


async def role(h: Harness, name: str, body: dict[str, Any], mount: str = "pki") -> None:
    r = await h.call("POST", f"{mount}/roles/{name}", json=body)
    assert r.status_code == 200, r.text


async def post(h: Harness, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    r = await h.call("POST", path, json=body)
    return r.status_code, r.json() if r.content else {}


RESTRICTIONS: list[tuple[str, dict[str, Any], dict[str, Any], str | dict[str, list[str]]]] = [
    # (label, role, request, Vault's 400 text or the exact SANs issued)
    (
        "bare ok",
        {"allowed_domains": "example.com", "allow_bare_domains": True},
        {"common_name": "example.com"},
        {"dns": ["example.com"]},
    ),
    (
        "bare no sub",
        {"allowed_domains": "example.com", "allow_bare_domains": True},
        {"common_name": "a.example.com"},
        "common name a.example.com not allowed by this role",
    ),
    (
        "bare no wildcard",
        {"allowed_domains": "example.com", "allow_bare_domains": True},
        {"common_name": "*.example.com"},
        "common name *.example.com not allowed by this role",
    ),
    (
        "sub ok",
        {"allowed_domains": "example.com", "allow_subdomains": True},
        {"common_name": "a.example.com", "alt_names": "b.example.com,*.example.com"},
        {"dns": ["a.example.com", "b.example.com", "*.example.com"]},
    ),
    (
        "sub not bare",
        {"allowed_domains": "example.com", "allow_subdomains": True},
        {"common_name": "example.com"},
        "common name example.com not allowed by this role",
    ),
    (
        "wildcards off",
        {"allowed_domains": "example.com", "allow_subdomains": True, "allow_wildcard_certificates": False},
        {"common_name": "*.example.com"},
        "common name *.example.com not allowed by this role",
    ),
    (
        "glob ok",
        {"allowed_domains": "ftp*.example.com", "allow_glob_domains": True},
        {"common_name": "ftp7.example.com"},
        {"dns": ["ftp7.example.com"]},
    ),
    (
        "glob no",
        {"allowed_domains": "ftp*.example.com", "allow_glob_domains": True},
        {"common_name": "www.example.com"},
        "common name www.example.com not allowed by this role",
    ),
    ("localhost", {}, {"common_name": "localhost"}, {"dns": ["localhost"]}),
    (
        "no localhost",
        {"allow_localhost": False},
        {"common_name": "localhost"},
        "common name localhost not allowed by this role",
    ),
    ("any name", {"allow_any_name": True}, {"common_name": "whatever.test"}, {"dns": ["whatever.test"]}),
    (
        "hostnames enforced",
        {"allow_any_name": True},
        {"common_name": "not_a_host.test"},
        "common name not_a_host.test not allowed by this role",
    ),
    (
        "hostnames free",
        {"allow_any_name": True, "enforce_hostnames": False},
        {"common_name": "My Service"},
        {"dns": []},
    ),
    (
        "email cn",
        {"allowed_domains": "example.com", "allow_bare_domains": True},
        {"common_name": "me@example.com"},
        {"dns": [], "email": ["me@example.com"]},
    ),
    (
        "email refused",
        {"allowed_domains": "example.com", "allow_bare_domains": True, "cn_validations": "hostname"},
        {"common_name": "me@example.com"},
        "common name me@example.com not allowed by this role",
    ),
    (
        "ip ok",
        {"allow_any_name": True},
        {"common_name": "a.test", "ip_sans": "10.0.0.1,::1"},
        {"dns": ["a.test"], "ip": ["10.0.0.1", "::1"]},
    ),
    (
        "ip off",
        {"allow_any_name": True, "allow_ip_sans": False},
        {"common_name": "a.test", "ip_sans": "10.0.0.1"},
        "IP Subject Alternative Names are not allowed in this role, but was provided [10.0.0.1]",
    ),
    (
        "ip cidr ok",
        {"allow_any_name": True, "allowed_ip_sans_cidr": "10.0.0.0/8"},
        {"common_name": "a.test", "ip_sans": "10.9.9.9"},
        {"dns": ["a.test"], "ip": ["10.9.9.9"]},
    ),
    (
        "ip cidr no",
        {"allow_any_name": True, "allowed_ip_sans_cidr": "10.0.0.0/8"},
        {"common_name": "a.test", "ip_sans": "192.168.0.1"},
        "IP Subject Alternative Name 192.168.0.1 not allowed by this role",
    ),
    (
        "uri ok",
        {"allow_any_name": True, "allowed_uri_sans": "spiffe://td/*"},
        {"common_name": "a.test", "uri_sans": "spiffe://td/ns/a"},
        {"dns": ["a.test"], "uri": ["spiffe://td/ns/a"]},
    ),
    (
        "uri no",
        {"allow_any_name": True, "allowed_uri_sans": "spiffe://td/*"},
        {"common_name": "a.test", "uri_sans": "spiffe://evil/x"},
        "URI Subject Alternative Names were provided via the API which are not valid for this role",
    ),
    (
        "exclude cn",
        {"allow_any_name": True},
        {"common_name": "a.test", "alt_names": "b.test", "exclude_cn_from_sans": True},
        {"dns": ["b.test"]},
    ),
    (
        "require cn",
        {"allow_any_name": True},
        {"alt_names": "b.test"},
        'the common_name field is required, or must be provided in a CSR with "use_csr_common_name" set to true, unless "require_cn" is set to false',
    ),
    (
        "no cn needed",
        {"allow_any_name": True, "require_cn": False},
        {"alt_names": "b.test"},
        {"dns": ["b.test"]},
    ),
    (
        "other san ok",
        {"allow_any_name": True, "allowed_other_sans": "1.3.6.1.4.1.311.20.2.3;UTF8:*@example.com"},
        {"common_name": "a.test", "other_sans": "1.3.6.1.4.1.311.20.2.3;UTF8:me@example.com"},
        {"dns": ["a.test"]},
    ),
    (
        "other san no",
        {"allow_any_name": True, "allowed_other_sans": "1.3.6.1.4.1.311.20.2.3;UTF8:*@example.com"},
        {"common_name": "a.test", "other_sans": "1.3.6.1.4.1.311.20.2.3;UTF8:me@evil.com"},
        "other SAN me@evil.com not allowed for OID 1.3.6.1.4.1.311.20.2.3 by this role",
    ),
    (
        "serial ok",
        {"allow_any_name": True, "allowed_serial_numbers": "dev-*"},
        {"common_name": "a.test", "serial_number": "dev-1"},
        {"dns": ["a.test"]},
    ),
    (
        "serial no",
        {"allow_any_name": True},
        {"common_name": "a.test", "serial_number": "dev-1"},
        "serial_number dev-1 not allowed by this role",
    ),
    (
        "user id ok",
        {"allow_any_name": True, "allowed_user_ids": "alice"},
        {"common_name": "a.test", "user_ids": "alice"},
        {"dns": ["a.test"]},
    ),
    (
        "user id no",
        {"allow_any_name": True, "allowed_user_ids": "alice"},
        {"common_name": "a.test", "user_ids": "bob"},
        "user_id bob is not allowed by this role",
    ),
]


@pytest.mark.parametrize(
    ("label", "role_body", "request_body", "expected"), RESTRICTIONS, ids=[r[0] for r in RESTRICTIONS]
)
async def test_every_role_restriction_both_ways(
    pki: Harness,
    label: str,
    role_body: dict[str, Any],
    request_body: dict[str, Any],
    expected: str | dict[str, list[str]],
) -> None:
    await role(pki, "r", {"key_type": "ec", "ttl": "1h", **role_body})
    status, body = await post(pki, "pki/issue/r", request_body)
    if isinstance(expected, str):
        assert (status, body.get("errors")) == (400, [expected])
        return
    assert status == 200, body
    cert = leaf(body["data"])
    sans = san_of(cert)
    for kind in ("dns", "ip", "uri", "email"):
        assert sans[kind] == expected.get(kind, []), kind
    assert cn_of(cert) == request_body.get("common_name", "")
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == dt.timedelta(hours=1, seconds=30)
    if "other_sans" in request_body:
        others = ext(cert, x509.SubjectAlternativeName).value.get_values_for_type(x509.OtherName)
        assert [o.value for o in others] == [b"\x0c\x0eme@example.com"]
    if "serial_number" in request_body:
        assert cert.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)[0].value == "dev-1"
    if "user_ids" in request_body:
        assert cert.subject.get_attributes_for_oid(NameOID.USER_ID)[0].value == "alice"


async def test_issued_key_types_and_formats(pki: Harness) -> None:
    await role(pki, "rsa", {"allow_any_name": True, "key_type": "rsa", "key_bits": 3072})
    await role(pki, "ed", {"allow_any_name": True, "key_type": "ed25519"})
    await role(pki, "p384", {"allow_any_name": True, "key_type": "ec", "key_bits": 384})
    status, body = await post(pki, "pki/issue/rsa", {"common_name": "a.test", "private_key_format": "pkcs8"})
    assert status == 200, body
    key = serialization.load_pem_private_key(body["data"]["private_key"].encode(), None)
    assert isinstance(key, rsa.RSAPrivateKey) and key.key_size == 3072
    assert body["data"]["private_key"].startswith("-----BEGIN PRIVATE KEY-----")
    assert leaf(body["data"]).public_key() == key.public_key()
    status, body = await post(pki, "pki/issue/ed", {"common_name": "a.test", "format": "der"})
    assert body["data"]["private_key_type"] == "ed25519"
    assert isinstance(
        serialization.load_der_private_key(base64.b64decode(body["data"]["private_key"]), None),
        ed25519.Ed25519PrivateKey,
    )
    status, body = await post(pki, "pki/issue/p384", {"common_name": "a.test", "format": "pem_bundle"})
    assert body["data"]["private_key"].startswith("-----BEGIN EC PRIVATE KEY-----")
    assert body["data"]["certificate"].startswith("-----BEGIN EC PRIVATE KEY-----")
    status, body = await post(pki, "pki/issue/p384", {"common_name": "a.test", "format": "pkcs12"})
    assert (status, body["errors"]) == (
        400,
        ['the "format" path parameter must be "pem", "der", or "pem_bundle"'],
    )


async def test_any_key_type_cannot_issue(pki: Harness) -> None:
    await role(pki, "any", {"allow_any_name": True, "key_type": "any"})
    status, body = await post(pki, "pki/issue/any", {"common_name": "a.test"})
    assert (status, body["errors"]) == (
        400,
        ['role key type "any" not allowed for issuing certificates, only signing'],
    )


async def test_unknown_role_and_unknown_issuer(pki: Harness) -> None:
    for path in ("pki/issue/x", "pki/sign/x", "pki/sign-verbatim/x", "pki/issuer/default/issue/x"):
        status, body = await post(pki, path, {"common_name": "a.test", "csr": make_csr()})
        assert (status, body["errors"]) == (400, ["unknown role: x"]), path
    await role(pki, "r", {"allow_any_name": True, "key_type": "ec"})
    status, body = await post(pki, "pki/issuer/nope/issue/r", {"common_name": "a.test"})
    assert (status, body["errors"]) == (
        400,
        ["could not fetch the CA certificate (was one set?): unable to find PKI issuer for reference: nope"],
    )
    await role(pki, "dangling", {"allow_any_name": True, "key_type": "ec", "issuer_ref": "nope"})
    status, body = await post(pki, "pki/issue/dangling", {"common_name": "a.test"})
    assert status == 400 and "unable to find PKI issuer for reference: nope" in body["errors"][0]


async def test_issuer_ref_from_role_and_from_path(pki: Harness) -> None:
    r = await pki.call(
        "POST",
        "pki/root/generate/internal",
        json={"common_name": "Second Root", "issuer_name": "second", "key_type": "ec"},
    )
    assert r.status_code == 200, r.text
    await role(pki, "first", {"allow_any_name": True, "key_type": "ec"})
    await role(pki, "second", {"allow_any_name": True, "key_type": "ec", "issuer_ref": "second"})
    _, body = await post(pki, "pki/issue/first", {"common_name": "a.test"})
    assert leaf(body["data"]).issuer.rfc4514_string() == "CN=Issue Root"
    _, body = await post(pki, "pki/issue/second", {"common_name": "a.test"})
    assert leaf(body["data"]).issuer.rfc4514_string() == "CN=Second Root"
    _, body = await post(pki, "pki/issuer/second/issue/first", {"common_name": "a.test"})
    assert leaf(body["data"]).issuer.rfc4514_string() == "CN=Second Root"
    _, body = await post(pki, "pki/issuer/second/sign/first", {"csr": make_csr(cn="b.test")})
    assert leaf(body["data"]).issuer.rfc4514_string() == "CN=Second Root"


async def make_intermediate(h: Harness) -> str:
    """A second mount holding an intermediate signed by ``pki``'s root; returns its mount."""
    assert (await h.call("POST", "sys/mounts/pki_int", json={"type": "pki"})).status_code == 204
    r = await h.call(
        "POST",
        "pki_int/intermediate/generate/internal",
        json={"common_name": "Issue Intermediate", "key_type": "ec"},
    )
    assert r.status_code == 200, r.text
    csr = r.json()["data"]["csr"]
    r = await h.call(
        "POST",
        "pki/root/sign-intermediate",
        json={"csr": csr, "common_name": "Issue Intermediate", "ttl": "43800h"},
    )
    assert r.status_code == 200, r.text
    signed = r.json()["data"]["certificate"]
    root = (await h.call("GET", "pki/cert/ca")).json()["data"]["certificate"]
    r = await h.call("POST", "pki_int/intermediate/set-signed", json={"certificate": signed + "\n" + root})
    assert r.status_code == 200, r.text
    return "pki_int"


def verify_with_openssl(root_pem: str, chain: list[str], leaf_pem: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root_path, chain_path, leaf_path = (
            Path(tmp, "root.pem"),
            Path(tmp, "chain.pem"),
            Path(tmp, "leaf.pem"),
        )
        root_path.write_text(root_pem + "\n")
        chain_path.write_text("\n".join(chain) + "\n")
        leaf_path.write_text(leaf_pem + "\n")
        out = subprocess.run(
            ["openssl", "verify", "-CAfile", str(root_path), "-untrusted", str(chain_path), str(leaf_path)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert out.returncode == 0, out.stdout + out.stderr


async def test_cert_manager_replay(pki: Harness) -> None:
    mount = await make_intermediate(pki)
    await role(
        pki,
        "example-dot-com",
        {"allowed_domains": "example.com", "allow_subdomains": True, "max_ttl": "2160h", "key_type": "any"},
        mount,
    )
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    csr = make_csr(key, cn="www.example.com", dns=("www.example.com", "api.example.com"), ips=("10.0.0.7",))
    body = {  # cert-manager's internal/vault: every value a string, no Content-Type
        "common_name": "www.example.com",
        "alt_names": "www.example.com,api.example.com",
        "ip_sans": "10.0.0.7",
        "uri_sans": "",
        "ttl": "2160h0m0s",
        "csr": csr,
        "exclude_cn_from_sans": "true",
    }
    r = await pki.client.post(
        f"/v1/{mount}/sign/example-dot-com", content=json.dumps(body).encode(), headers=pki.headers()
    )
    assert r.status_code == 200, r.text
    assert "Content-Type" not in r.request.headers
    data = r.json()["data"]
    assert isinstance(data["ca_chain"], list) and isinstance(data["serial_number"], str)
    assert "private_key" not in data and "private_key_type" not in data
    cert = leaf(data)
    assert cert.public_key() == key.public_key()
    assert san_of(cert) == {
        "dns": ["www.example.com", "api.example.com"],
        "ip": ["10.0.0.7"],
        "uri": [],
        "email": [],
    }
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == dt.timedelta(hours=2160, seconds=30)
    # one unbroken chain: certificate ← issuing_ca = ca_chain[0] ← ... ← self-signed root
    chain = [x509.load_pem_x509_certificate(p.encode()) for p in data["ca_chain"]]
    assert data["issuing_ca"] == data["ca_chain"][0]
    cert.verify_directly_issued_by(chain[0])
    for child, parent in zip(chain, chain[1:], strict=False):
        child.verify_directly_issued_by(parent)
    assert store.is_self_signed(chain[-1]) and len(chain) == 2
    verify_with_openssl(data["ca_chain"][-1], data["ca_chain"][:-1], data["certificate"])
    assert any("use_csr_common_name" in w for w in r.json()["warnings"])
    assert any("use_csr_sans" in w for w in r.json()["warnings"])


async def test_istio_workload_csr(pki: Harness) -> None:
    await role(
        pki,
        "istio",
        {
            "require_cn": False,
            "allowed_uri_sans": "spiffe://cluster.local/*",
            "max_ttl": "1h",
            "key_type": "any",
        },
    )
    csr = make_csr(cn=None, uris=("spiffe://cluster.local/ns/default/sa/web",))
    status, body = await post(
        pki,
        "pki/sign/istio",
        {
            "common_name": "",
            "csr": csr,
            "ttl": "1h0m0s",
            "alt_names": "",
            "ip_sans": "",
            "uri_sans": "spiffe://cluster.local/ns/default/sa/web",
            "exclude_cn_from_sans": "true",
        },
    )
    assert status == 200, body
    cert = leaf(body["data"])
    assert len(cert.subject) == 0 and san_of(cert)["uri"] == ["spiffe://cluster.local/ns/default/sa/web"]
    bad = make_csr(cn=None, uris=("spiffe://other.domain/ns/x",))
    status, body = await post(pki, "pki/sign/istio", {"csr": bad})
    assert (status, body["errors"]) == (
        400,
        ["URI Subject Alternative Names were provided via CSR which are not valid for this role"],
    )


async def test_csr_ip_sans_obey_the_cidr(pki: Harness) -> None:
    await role(pki, "cidr", {"allow_any_name": True, "allowed_ip_sans_cidr": "10.0.0.0/8", "key_type": "ec"})
    status, body = await post(pki, "pki/sign/cidr", {"csr": make_csr(cn="a.test", ips=("169.254.169.254",))})
    assert (status, body["errors"]) == (
        400,
        ["IP Subject Alternative Name 169.254.169.254 not allowed by this role"],
    )
    status, body = await post(pki, "pki/sign/cidr", {"csr": make_csr(cn="a.test", ips=("10.1.1.1",))})
    assert status == 200 and san_of(leaf(body["data"]))["ip"] == ["10.1.1.1"]


async def test_bad_csrs_over_http(pki: Harness) -> None:
    await role(pki, "r", {"allow_any_name": True, "key_type": "ec"})
    cases = [
        ("pki/sign/r", {"csr": "garbage"}, "csr contains no data"),
        ("pki/sign/r", {}, '"csr" is empty'),
        ("pki/sign/r", {"csr": tamper_signature(make_csr(cn="a.test"))}, "request signature invalid"),
        (
            "pki/sign/r",
            {"csr": make_csr(rsa.generate_private_key(public_exponent=65537, key_size=2048))},
            "role requires keys of type ec",
        ),
        (
            "pki/sign-verbatim",
            {"csr": make_csr(cn="Evil CA", ca=True)},
            "refusing to accept CSR with Basic Constraints extension with CA set to true",
        ),
        (
            "pki/sign-verbatim/r",
            {"csr": make_csr(cn="Evil CA", ca=True)},
            "refusing to accept CSR with Basic Constraints extension with CA set to true",
        ),
    ]
    for path, body, text in cases:
        status, answer = await post(pki, path, body)
        assert (status, answer.get("errors")) == (400, [text]), path


async def test_sign_ignores_csr_basic_constraints_with_a_warning(pki: Harness) -> None:
    await role(pki, "r", {"allow_any_name": True, "key_type": "ec"})
    status, body = await post(pki, "pki/sign/r", {"csr": make_csr(cn="a.test", ca=True)})
    assert status == 200
    assert (
        "specified CSR contained a Basic Constraints extension that was ignored during issuance"
        in body["warnings"]
    )
    with pytest.raises(x509.ExtensionNotFound):
        ext(leaf(body["data"]), x509.BasicConstraints)


async def test_sign_verbatim_keeps_the_csr_subject_and_extensions(pki: Harness) -> None:
    extra = (
        x509.NameAttribute(NameOID.COUNTRY_NAME, "DE"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Verbatim Org"),
    )
    csr = make_csr(
        cn="Not A Hostname",
        dns=("x.internal",),
        eku=[ExtendedKeyUsageOID.EMAIL_PROTECTION],
        extra_subject=extra,
        ca=False,
    )
    status, body = await post(pki, "pki/sign-verbatim", {"csr": csr, "ttl": "2h"})
    assert status == 200, body
    cert = leaf(body["data"])
    assert cert.subject == x509.load_pem_x509_csr(csr.encode()).subject
    assert ext(cert, x509.ExtendedKeyUsage).value._usages == [
        ExtendedKeyUsageOID.EMAIL_PROTECTION
    ]  # the CSR's wins
    assert ext(cert, x509.KeyUsage).value.key_encipherment  # default key_usage applies
    assert san_of(cert)["dns"] == ["x.internal"]
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == dt.timedelta(hours=2, seconds=30)
    assert body["warnings"] == [
        "specified CSR contained a Basic Constraints extension that was ignored during issuance"
    ]
    with pytest.raises(x509.ExtensionNotFound):
        ext(cert, x509.BasicConstraints)

    await role(pki, "short", {"ttl": "10m", "max_ttl": "20m", "key_type": "ec"})
    status, body = await post(
        pki, "pki/sign-verbatim/short", {"csr": make_csr(cn="anything at all"), "ttl": "1h"}
    )
    assert status == 200, body
    cert = leaf(body["data"])
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == dt.timedelta(minutes=20, seconds=30)
    assert body["warnings"] == [
        'TTL "1h0m0s" is longer than permitted maxTTL "20m0s", so maxTTL is being used'
    ]


async def test_ttl_past_ca_expiry_err_truncate_permit() -> None:
    async with running_core() as h:
        await h.call("POST", "sys/mounts/short", json={"type": "pki"})
        r = await h.call(
            "POST",
            "short/root/generate/internal",
            json={"common_name": "Short Root", "ttl": "2h", "key_type": "ec"},
        )
        assert r.status_code == 200, r.text
        ca = x509.load_pem_x509_certificate(r.json()["data"]["certificate"].encode())
        await role(h, "r", {"allow_any_name": True, "key_type": "ec", "ttl": "10h"}, "short")
        status, body = await post(h, "short/issue/r", {"common_name": "a.test"})
        assert status == 400
        assert body["errors"][0].startswith("cannot satisfy request, as TTL would result in notAfter of ")
        assert body["errors"][0].endswith(
            f"that is beyond the expiration of the CA certificate at {ca.not_valid_after_utc.strftime('%Y-%m-%dT%H:%M:%SZ')}"
        )
        r = await h.call("POST", "short/issuer/default", json={"leaf_not_after_behavior": "truncate"})
        assert r.status_code == 200, r.text
        status, body = await post(h, "short/issue/r", {"common_name": "a.test"})
        assert status == 200, body
        assert leaf(body["data"]).not_valid_after_utc == ca.not_valid_after_utc
        r = await h.call("POST", "short/issuer/default", json={"leaf_not_after_behavior": "permit"})
        assert r.status_code == 200, r.text
        status, body = await post(h, "short/issue/r", {"common_name": "a.test"})
        assert status == 200, body
        assert leaf(body["data"]).not_valid_after_utc > ca.not_valid_after_utc + dt.timedelta(hours=7)


async def test_serials_unique_random_and_wide(pki: Harness) -> None:
    await role(pki, "bulk", {"allow_any_name": True, "key_type": "ec", "no_store": True})
    csr = make_csr(cn="bulk.test")
    serials: set[int] = set()
    for _ in range(2000):
        status, body = await post(pki, "pki/sign/bulk", {"csr": csr})
        assert status == 200
        serial = leaf(body["data"]).serial_number
        assert body["data"]["serial_number"] == store.serial_to_str(serial)
        assert 64 < serial.bit_length() <= 159  # ≥ 64 random bits, at most 20 octets, positive
        serials.add(serial)
    assert len(serials) == 2000


async def test_storage_no_store_and_generate_lease(pki: Harness) -> None:
    route = pki.core.router.get("pki/")
    assert route is not None
    storage = route.backend.storage  # type: ignore[attr-defined]
    await role(pki, "kept", {"allow_any_name": True, "key_type": "ec"})
    await role(pki, "dropped", {"allow_any_name": True, "key_type": "ec", "no_store": True})
    await role(pki, "leased", {"allow_any_name": True, "key_type": "ec", "generate_lease": True, "ttl": "1h"})
    _, body = await post(pki, "pki/issue/kept", {"common_name": "a.test"})
    stored = await store.load_certificate(storage, body["data"]["serial_number"])
    assert stored is not None and stored.certificate == leaf(body["data"])
    assert body["lease_id"] == "" and body["lease_duration"] == 0
    _, body = await post(pki, "pki/issue/dropped", {"common_name": "a.test"})
    assert await store.load_certificate(storage, body["data"]["serial_number"]) is None
    r = await pki.call("POST", "pki/issue/leased", json={"common_name": "a.test"})
    leased = r.json()
    assert leased["lease_id"].startswith("pki/issue/leased/") and leased["renewable"] is False
    assert 3500 <= leased["lease_duration"] <= 3600


async def test_sign_with_json_names_when_role_ignores_csr(pki: Harness) -> None:
    await role(
        pki,
        "json",
        {
            "allowed_domains": "example.com",
            "allow_subdomains": True,
            "use_csr_common_name": False,
            "use_csr_sans": False,
            "key_type": "ec",
        },
    )
    csr = make_csr(cn="csr.example.com", dns=("csr2.example.com",))
    status, body = await post(
        pki, "pki/sign/json", {"csr": csr, "common_name": "json.example.com", "alt_names": "j2.example.com"}
    )
    assert status == 200, body
    cert = leaf(body["data"])
    assert cn_of(cert) == "json.example.com"
    assert san_of(cert)["dns"] == ["json.example.com", "j2.example.com"]
    assert body["warnings"] is None


async def test_revoking_the_lease_revokes_the_certificate(pki: Harness) -> None:
    await role(pki, "leased", {"allow_any_name": True, "key_type": "ec", "generate_lease": True})
    r = await pki.call("POST", "pki/issue/leased", json={"common_name": "a.test"})
    assert r.status_code == 200, r.text
    lease_id, serial = r.json()["lease_id"], r.json()["data"]["serial_number"]
    before = (await pki.call("GET", f"pki/cert/{serial}")).json()["data"]
    assert before.get("revocation_time", 0) == 0
    assert (await pki.call("PUT", "sys/leases/revoke", json={"lease_id": lease_id})).status_code == 204
    after = (await pki.call("GET", f"pki/cert/{serial}")).json()["data"]
    assert after["revocation_time"] > 0


# -- what issuance computes once and shares ---------------------------------------------------


def test_extension_order_is_the_add_order_vault_uses() -> None:
    aia = AIAUrls(
        issuing_certificates=["http://ca.test/ca"],
        crl_distribution_points=["http://ca.test/crl"],
        ocsp_servers=["http://ca.test/ocsp"],
    )
    role = RoleEntry(
        allow_any_name=True, basic_constraints_valid_for_non_ca=True, policy_identifiers=["2.23.140.1.2.1"]
    )
    cert = build(role, make_ca(aia=aia), common_name="svc.test")
    assert [e.value.__class__.__name__ for e in cert.extensions] == [
        "KeyUsage",
        "ExtendedKeyUsage",
        "BasicConstraints",
        "SubjectKeyIdentifier",
        "AuthorityKeyIdentifier",
        "AuthorityInformationAccess",
        "SubjectAlternativeName",
        "CertificatePolicies",
        "CRLDistributionPoints",
    ]


def test_the_issuers_shared_parts_are_built_once_and_follow_its_aia() -> None:
    issuer = make_ca(aia=AIAUrls(ocsp_servers=["http://ocsp.test/"]))
    role = RoleEntry(allow_any_name=True)
    first, second = build(role, issuer, common_name="a.test"), build(role, issuer, common_name="b.test")
    assert ext(first, x509.AuthorityInformationAccess) == ext(second, x509.AuthorityInformationAccess)
    assert issuer.chain() is issuer.chain()
    assert issuer.certificate_pem == store.cert_pem(issuer.certificate)
    other = make_ca()  # another issuer (no AIA) gets its own, not the first one's
    with pytest.raises(x509.ExtensionNotFound):
        ext(build(role, other, common_name="c.test"), x509.AuthorityInformationAccess)


def test_checking_a_csr_key_never_changes_the_role_given() -> None:
    shared = RoleEntry(key_type="any", signature_bits=0)
    rsa_csr = parse_csr(make_csr(rsa.generate_private_key(public_exponent=65537, key_size=2048)))
    fitted = check_csr_key(shared, rsa_csr)
    assert (fitted.key_bits, fitted.signature_bits) == (2048, 256)
    assert (shared.key_bits, shared.signature_bits) == (0, 0) and fitted is not shared
    fixed = RoleEntry(key_type="ec", key_bits=256)
    assert check_csr_key(fixed, parse_csr(make_csr())) is fixed  # nothing to fit: no copy


def test_role_copy_is_independent() -> None:
    role = RoleEntry(allowed_domains=["a.test"], key_type="ec")
    clone = role.copy()
    assert clone == role and clone is not role
    clone.allowed_domains.append("b.test")
    clone.key_type = "rsa"
    assert role.allowed_domains == ["a.test"] and role.key_type == "ec"


def test_issue_input_defaults_and_sent_values() -> None:
    from strongroom.engines.pki.paths_issue import COMMON_FIELDS, issue_input
    from strongroom.framework import FieldData

    empty = issue_input(FieldData(COMMON_FIELDS, {"common_name": " a.test "}))
    assert empty == IssueInput(names=NameRequest(common_name="a.test"))
    sent = issue_input(
        FieldData(
            COMMON_FIELDS,
            {
                "common_name": "a.test",
                "alt_names": "b.test,c.test",
                "ip_sans": ["10.0.0.1"],
                "ttl": "2160h0m0s",
                "format": "der",
                "private_key_format": "pkcs8",
                "exclude_cn_from_sans": "true",
                "remove_roots_from_chain": True,
                "format_ignored": None,
            },
        )
    )
    assert sent.names.alt_names == ["b.test", "c.test"] and sent.names.alt_names_sent
    assert sent.names.ip_sans == ["10.0.0.1"] and sent.names.exclude_cn_from_sans
    assert (sent.ttl, sent.format, sent.private_key_format) == (2160 * 3600, "der", "pkcs8")
    assert sent.remove_roots_from_chain
    nulls = issue_input(FieldData(COMMON_FIELDS, {"common_name": "a.test", "format": None, "alt_names": []}))
    assert nulls.format == "pem" and not nulls.names.alt_names_sent


async def test_signing_with_an_any_role_leaves_the_cached_role_alone(pki: Harness) -> None:
    from strongroom.engines.pki.paths_roles import role_cache

    await role(pki, "anykey", {"allow_any_name": True, "key_type": "any"})
    route = pki.core.router.get("pki/")
    assert route is not None
    rsa_csr = make_csr(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    status, body = await post(pki, "pki/sign/anykey", {"csr": rsa_csr})
    assert status == 200, body
    cached = await role_cache(route.backend).get("anykey")
    assert cached is not None and (cached.key_bits, cached.signature_bits) == (0, 0)
    status, body = await post(pki, "pki/sign/anykey", {"csr": make_csr()})
    assert status == 200, body
    cert = leaf(body["data"])
    assert cert.signature_algorithm_oid == SignatureAlgorithmOID.ECDSA_WITH_SHA256


# -- the certificate encoding against cryptography's builder ---------------------------------


def _rebuilt(cert: x509.Certificate, key: Any, **sign: Any) -> x509.Certificate:
    """The same certificate's content through CertificateBuilder, signed with ``key``."""
    builder = x509.CertificateBuilder(
        issuer_name=cert.issuer,
        subject_name=cert.subject,
        public_key=cert.public_key(),  # type: ignore[arg-type]
        serial_number=cert.serial_number,
        not_valid_before=cert.not_valid_before_utc,
        not_valid_after=cert.not_valid_after_utc,
        extensions=list(cert.extensions),
    )
    return builder.sign(key, sign.pop("algorithm", None), **sign)


RICH_ROLE = RoleEntry(
    allow_any_name=True,
    enforce_hostnames=False,
    allow_ip_sans=True,
    allowed_uri_sans=["*"],
    allowed_other_sans=["*"],
    allowed_user_ids=["*"],
    allowed_serial_numbers=["*"],
    basic_constraints_valid_for_non_ca=True,
    key_usage=["DigitalSignature", "CertSign", "KeyAgreement", "EncipherOnly"],
    ext_key_usage=["TimeStamping", "OCSPSigning"],
    ext_key_usage_oids=["1.3.6.1.4.1.311.20.2.2", "1.2.3.4.5.6.7.8.9.10.123456789"],
    policy_identifiers=[
        '{"oid":"1.3.6.1.4.1.44947.1.2.4","cps":"https://x.test/cps","notice":"hi"}',
        "2.5.29.32.0",
    ],
    country=["USA"],
    organization=["Ünïcode Org"],
    ou=["a", "b"],
)
RICH_NAMES: dict[str, Any] = {
    "common_name": "svc.example.test",
    "alt_names": ["b.example.test", "m@example.test"],
    "ip_sans": ["10.0.0.1", "2001:db8::1"],
    "uri_sans": ["spiffe://td/ns/x"],
    "other_sans": ["1.3.6.1.4.1.311.20.2.3;UTF8:user@example.test"],
    "serial_number": "SN-1",
    "user_ids": ["u1"],
}
FULL_AIA = AIAUrls(
    issuing_certificates=["http://ca.test/ca", "http://ca2.test/ca"],
    crl_distribution_points=["http://ca.test/crl"],
    ocsp_servers=["http://ca.test/ocsp"],
)


@pytest.mark.parametrize(
    "serial", [1, 0x7F, 0x80, 0xFFFF, 2**159 - 1, 2**158 + 0x1234, 0x00FF00FF00FF00FF00FF]
)
def test_leaves_are_byte_for_byte_what_cryptography_builds(
    serial: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    from strongroom.engines.pki import issuing

    monkeypatch.setattr(issuing, "random_serial", lambda: serial)
    issuer = make_ca(ed25519.Ed25519PrivateKey.generate(), aia=FULL_AIA)  # deterministic signatures
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the 3-letter country
        for role, names in (
            (RICH_ROLE, RICH_NAMES),
            (RoleEntry(allow_any_name=True), {"common_name": "plain.test"}),
            (
                RoleEntry(allow_any_name=True, require_cn=False, allowed_uri_sans=["*"]),
                {"uri_sans": ["urn:x"]},
            ),
        ):
            for leaf_key in (
                ec.generate_private_key(ec.SECP384R1()),
                rsa.generate_private_key(public_exponent=65537, key_size=2048),
                ed25519.Ed25519PrivateKey.generate(),
            ):
                resolved = resolve_names(role, NameRequest(**names))
                validity = compute_validity(role, 3600, "", issuer, 3600, 86400, NOW)
                cert = build_certificate(role, resolved, leaf_key.public_key(), issuer, validity)
                assert cert.serial_number == serial
                assert cert.public_bytes(serialization.Encoding.DER) == _rebuilt(
                    cert, issuer.private_key
                ).public_bytes(serialization.Encoding.DER)
                cert.verify_directly_issued_by(issuer.certificate)


def test_validity_past_2049_is_generalized_time_as_cryptography_writes_it() -> None:
    issuer = make_ca(ed25519.Ed25519PrivateKey.generate(), days=365 * 40, behavior="permit")
    role = RoleEntry(allow_any_name=True)
    validity = compute_validity(role, 0, "2061-03-04T05:06:07Z", issuer, 3600, 86400 * 365 * 50, NOW)
    resolved = resolve_names(role, NameRequest(common_name="long.test"))
    cert = build_certificate(
        role, resolved, ec.generate_private_key(ec.SECP256R1()).public_key(), issuer, validity
    )
    assert cert.not_valid_after_utc == dt.datetime(2061, 3, 4, 5, 6, 7, tzinfo=dt.UTC)
    assert cert.public_bytes(serialization.Encoding.DER) == _rebuilt(cert, issuer.private_key).public_bytes(
        serialization.Encoding.DER
    )


@pytest.mark.parametrize("kind", ["ec256", "ec384", "ec521", "rsa", "rsa-pss", "rsa-512"])
def test_leaves_of_every_issuer_key_verify_and_match_the_builders_tbs(kind: str) -> None:
    keys: dict[str, Any] = {
        "ec256": lambda: ec.generate_private_key(ec.SECP256R1()),
        "ec384": lambda: ec.generate_private_key(ec.SECP384R1()),
        "ec521": lambda: ec.generate_private_key(ec.SECP521R1()),
    }
    key = keys.get(kind, lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048))()
    issuer = make_ca(key, aia=FULL_AIA)
    role = RoleEntry(
        allow_any_name=True, use_pss=kind == "rsa-pss", signature_bits=512 if kind == "rsa-512" else 0
    )
    resolved = resolve_names(role, NameRequest(common_name="k.test"))
    validity = compute_validity(role, 3600, "", issuer, 3600, 86400, NOW)
    cert = build_certificate(
        role, resolved, ec.generate_private_key(ec.SECP256R1()).public_key(), issuer, validity
    )
    cert.verify_directly_issued_by(issuer.certificate)
    if kind == "rsa-pss":
        assert isinstance(cert.signature_algorithm_parameters, padding.PSS)
        sign: dict[str, Any] = {
            "algorithm": cert.signature_hash_algorithm,
            "rsa_padding": cert.signature_algorithm_parameters,
        }
    else:
        sign = {"algorithm": cert.signature_hash_algorithm}
    reference = _rebuilt(cert, key, **sign)
    assert cert.tbs_certificate_bytes == reference.tbs_certificate_bytes
    assert cert.signature_algorithm_oid == reference.signature_algorithm_oid
    if kind == "rsa-512":
        assert cert.signature_hash_algorithm.name == "sha512"  # type: ignore[union-attr]


def test_sign_verbatim_copies_are_encoded_as_the_builder_would(monkeypatch: pytest.MonkeyPatch) -> None:
    from strongroom.engines.pki.paths_issue import verbatim_role

    issuer = make_ca(ed25519.Ed25519PrivateKey.generate())
    csr_key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "v.test")]))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("v.test")]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=True)
        .add_extension(x509.OCSPNoCheck(), critical=False)
        .add_extension(
            x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.99999.1"), b"\x04\x02hi"),
            critical=False,
        )
        .sign(csr_key, hashes.SHA256())
    )
    shim = {
        "key_usage": ["DigitalSignature"],
        "ext_key_usage": [],
        "ext_key_usage_oids": [],
        "signature_bits": 0,
        "use_pss": False,
    }
    role = verbatim_role(shim, None)  # type: ignore[arg-type]
    resolved = resolve_names(role, NameRequest(), None)
    validity = compute_validity(role, 3600, "", issuer, 3600, 86400, NOW)
    cert = build_certificate(role, resolved, csr_key.public_key(), issuer, validity, verbatim_csr=csr)
    assert ext(cert, x509.ExtendedKeyUsage).critical
    assert (
        cert.extensions.get_extension_for_oid(x509.ObjectIdentifier("1.3.6.1.4.1.99999.1")).value.value
        == b"\x04\x02hi"
    )
    assert cert.public_bytes(serialization.Encoding.DER) == _rebuilt(cert, issuer.private_key).public_bytes(
        serialization.Encoding.DER
    )


def test_csr_names_and_basic_constraints_from_one_pass() -> None:
    from strongroom.engines.pki.issuing import csr_basic_constraints
    from strongroom.engines.pki.names import CsrNames

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, "first.test"),
            x509.NameAttribute(NameOID.COMMON_NAME, "second.test"),
            x509.NameAttribute(NameOID.SERIAL_NUMBER, "SN-9"),
            x509.NameAttribute(NameOID.USER_ID, "u1"),
            x509.NameAttribute(NameOID.USER_ID, "u2"),
        ]
    )
    bare = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
    names = CsrNames.from_csr(bare)
    assert (names.common_name, names.serial_number, names.user_ids) == ("first.test", "SN-9", ["u1", "u2"])
    assert names.dns_names == [] and csr_basic_constraints(bare) is None
    with_ext = parse_csr(make_csr(key, cn=None, dns=("a.test", "b.test"), ips=("10.1.2.3",), ca=False))
    names = CsrNames.from_csr(with_ext)
    assert names.common_name == "" and names.dns_names == ["a.test", "b.test"]
    assert [str(ip) for ip in names.ips] == ["10.1.2.3"]
    constraints = csr_basic_constraints(with_ext)
    assert constraints is not None and constraints.ca is False
