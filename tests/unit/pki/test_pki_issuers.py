"""pki issuers and keys: root/intermediate generation, import, CA signing, issuer and key admin."""

from __future__ import annotations

import base64
import datetime as dt
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

from strongroom.core.mounts import MountEntry
from strongroom.engines.pki import store
from strongroom.testing import Harness, running_core


async def _mount(h: Harness, path: str = "pki") -> None:
    await h.core.enable_mount(MountEntry(f"{path}/", "pki"))


MERGE_PATCH = {"Content-Type": "application/merge-patch+json"}


async def _call(h: Harness, method: str, path: str, body: Any = None) -> Any:
    headers = MERGE_PATCH if method == "PATCH" else None
    return await h.call(method, path, json=body, headers=headers)


async def _ok(h: Harness, method: str, path: str, body: Any = None) -> dict[str, Any]:
    r = await _call(h, method, path, body)
    assert r.status_code == 200, r.text
    return r.json()


def _cert(pem: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem.encode())


def _self_ca(key: Any, cn: str, path_length: int | None = None) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(key, algorithm)


def _pem(obj: x509.Certificate) -> str:
    return obj.public_bytes(serialization.Encoding.PEM).decode()


def _key_pem(key: Any) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


# -- root generation ------------------------------------------------------------------------


@pytest.mark.parametrize("key_type", ["rsa", "ec", "ed25519"])
@pytest.mark.parametrize("exported", ["internal", "exported"])
async def test_generate_root(key_type: str, exported: str) -> None:
    async with running_core() as h:
        await _mount(h)
        body = await _ok(
            h,
            "POST",
            f"pki/root/generate/{exported}",
            {"common_name": "root.example.com", "key_type": key_type},
        )
        data = body["data"]
        cert = _cert(data["certificate"])
        assert data["issuing_ca"] == data["certificate"]
        assert not data["certificate"].endswith("\n")
        cert.verify_directly_issued_by(cert)  # self-signed
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
        assert bc.critical and bc.value.ca and bc.value.path_length is None
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        assert ku.key_cert_sign and ku.crl_sign and not ku.digital_signature
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert san.get_values_for_type(x509.DNSName) == ["root.example.com"]
        assert data["serial_number"] == store.serial_to_str(cert.serial_number)
        assert cert.serial_number.bit_length() > 64
        assert data["expiration"] == int(cert.not_valid_after_utc.timestamp())
        assert isinstance(data["expiration"], int)
        assert data["issuer_id"] and data["key_id"]
        assert data["issuer_name"] == "" and data["key_name"] == ""
        if exported == "exported":
            assert data["private_key_type"] == key_type
            key = serialization.load_pem_private_key(data["private_key"].encode(), None)
            assert key.public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            ) == cert.public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            header = {"rsa": "RSA PRIVATE KEY", "ec": "EC PRIVATE KEY", "ed25519": "PRIVATE KEY"}[key_type]
            assert data["private_key"].startswith(f"-----BEGIN {header}-----")
        else:
            assert "private_key" not in data and "private_key_type" not in data
        # the generated root is the default issuer and is stored under certs/
        listing = await _ok(h, "LIST", "pki/issuers")
        info = listing["data"]["key_info"][data["issuer_id"]]
        assert info["is_default"] and info["key_id"] == data["key_id"]
        stored = await h.call("GET", f"pki/cert/{data['serial_number']}")
        assert stored.json()["data"]["certificate"] == data["certificate"]


async def test_generate_root_options() -> None:
    async with running_core() as h:
        await _mount(h)
        data = (
            await _ok(
                h,
                "POST",
                "pki/root/generate/exported",
                {
                    "common_name": "Example Root",
                    "key_type": "ec",
                    "key_bits": 384,
                    "private_key_format": "pkcs8",
                    "issuer_name": "root-a",
                    "key_name": "root-a-key",
                    "organization": "Example Org",
                    "country": "NL",
                    "alt_names": "b.example.com,a.example.com",
                    "ip_sans": "10.0.0.1",
                    "uri_sans": "spiffe://example/ca",
                    "other_sans": "1.3.6.1.4.1.311.20.2.3;UTF8:ca@example.com",
                    "max_path_length": 2,
                    "permitted_dns_domains": "example.com,.example.org",
                    "excluded_ip_ranges": "10.1.0.0/16",
                    "permitted_email_addresses": "example.com",
                    "ttl": "48h",
                    "key_usage": "DigitalSignature",
                },
            )
        )["data"]
        cert = _cert(data["certificate"])
        assert data["private_key"].startswith("-----BEGIN PRIVATE KEY-----")
        assert data["issuer_name"] == "root-a" and data["key_name"] == "root-a-key"
        assert cert.signature_hash_algorithm is not None and cert.signature_hash_algorithm.name == "sha384"
        subject = {a.oid: a.value for a in cert.subject}
        assert subject[NameOID.ORGANIZATION_NAME] == "Example Org" and subject[NameOID.COUNTRY_NAME] == "NL"
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        # a CN that is not a hostname stays out of the DNS SANs; alt_names are sorted
        assert san.get_values_for_type(x509.DNSName) == ["a.example.com", "b.example.com"]
        assert [str(i) for i in san.get_values_for_type(x509.IPAddress)] == ["10.0.0.1"]
        assert san.get_values_for_type(x509.UniformResourceIdentifier) == ["spiffe://example/ca"]
        assert len(san.get_values_for_type(x509.OtherName)) == 1
        assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length == 2
        nc = cert.extensions.get_extension_for_class(x509.NameConstraints).value
        assert nc.permitted_subtrees is not None and nc.excluded_subtrees is not None
        assert [n.value for n in nc.permitted_subtrees if isinstance(n, x509.DNSName)] == [
            "example.com",
            ".example.org",
        ]
        assert [str(n.value) for n in nc.excluded_subtrees] == ["10.1.0.0/16"]
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        assert ku.key_cert_sign and ku.crl_sign and ku.digital_signature
        lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
        assert dt.timedelta(hours=48) <= lifetime <= dt.timedelta(hours=48, seconds=40)
        # the default TTL exceeds nothing; an over-long TTL is truncated with a warning
        body = await _ok(
            h, "POST", "pki/root/generate/internal", {"common_name": "x", "ttl": "87600h", "key_type": "ec"}
        )
        assert any("so was truncated" in w for w in body["warnings"])
        # issuer names are unique and "default" is reserved
        r = await h.call(
            "POST",
            "pki/root/generate/internal",
            json={"common_name": "x", "issuer_name": "root-a", "key_type": "ec"},
        )
        assert r.status_code == 400 and r.json()["errors"] == ["issuer name already in use"]
        r = await h.call(
            "POST", "pki/root/generate/internal", json={"common_name": "x", "issuer_name": "default"}
        )
        assert r.status_code == 400 and "reserved keyword" in r.json()["errors"][0]
        r = await h.call("POST", "pki/root/generate/bogus", json={"common_name": "x"})
        assert r.status_code == 400
        r = await h.call(
            "POST",
            "pki/root/generate/internal",
            json={"common_name": "x", "ttl": "1h", "not_after": "2030-01-01T00:00:00Z"},
        )
        assert r.status_code == 400


async def test_generate_root_der_and_pem_bundle_and_existing_key() -> None:
    async with running_core() as h:
        await _mount(h)
        data = (
            await _ok(
                h,
                "POST",
                "pki/root/generate/exported",
                {"common_name": "a", "key_type": "ec", "format": "der"},
            )
        )["data"]
        cert = x509.load_der_x509_certificate(base64.b64decode(data["certificate"]))
        serialization.load_der_private_key(base64.b64decode(data["private_key"]), None)
        assert cert.subject.rfc4514_string() == "CN=a"
        data = (
            await _ok(
                h,
                "POST",
                "pki/issuers/generate/root/exported",
                {"common_name": "b", "key_type": "ec", "format": "pem_bundle"},
            )
        )["data"]
        assert data["certificate"].startswith("-----BEGIN EC PRIVATE KEY-----")
        assert data["certificate"].endswith(data["issuing_ca"])
        # existing: reissue a root with the same key
        again = (
            await _ok(
                h, "POST", "pki/root/generate/existing", {"common_name": "b", "key_ref": data["key_id"]}
            )
        )["data"]
        assert again["key_id"] == data["key_id"]
        assert _cert(again["certificate"]).public_key() == _cert(data["issuing_ca"]).public_key()
        # both reissued roots list each other in their chains
        issuer = (await _ok(h, "GET", f"pki/issuer/{again['issuer_id']}"))["data"]
        assert len(issuer["ca_chain"]) == 2


# -- intermediates --------------------------------------------------------------------------


async def _root_and_intermediate(h: Harness) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    await _mount(h, "root")
    await _mount(h, "int")
    root = (
        await _ok(h, "POST", "root/root/generate/internal", {"common_name": "Root CA", "key_type": "ec"})
    )["data"]
    csr = (
        await _ok(
            h,
            "POST",
            "int/intermediate/generate/internal",
            {"common_name": "Intermediate CA", "key_type": "ec"},
        )
    )["data"]
    signed = (
        await _ok(
            h,
            "POST",
            "root/root/sign-intermediate",
            {"csr": csr["csr"], "common_name": "Intermediate CA", "ttl": "240h"},
        )
    )["data"]
    return root, csr, signed


async def test_intermediate_sign_set_signed_chain_and_openssl(tmp_path: Path) -> None:
    async with running_core() as h:
        root, csr, signed = await _root_and_intermediate(h)
        parsed_csr = x509.load_pem_x509_csr(csr["csr"].encode())
        assert parsed_csr.subject.rfc4514_string() == "CN=Intermediate CA" and csr["key_id"]
        assert "private_key" not in csr
        int_cert = _cert(signed["certificate"])
        root_cert = _cert(root["certificate"])
        int_cert.verify_directly_issued_by(root_cert)
        assert signed["issuing_ca"] == root["certificate"]
        assert signed["ca_chain"] == [signed["certificate"], root["certificate"]]
        assert int_cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        aki = int_cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
        ski = root_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        assert aki.key_identifier == ski.digest
        # set-signed with the chain: the intermediate gets its key, becomes default, chain [int, root]
        bundle = signed["certificate"] + "\n" + root["certificate"]
        imported = (await _ok(h, "POST", "int/intermediate/set-signed", {"certificate": bundle}))["data"]
        assert len(imported["imported_issuers"]) == 2 and imported["imported_keys"] is None
        int_id = next(i for i, k in imported["mapping"].items() if k)
        assert imported["mapping"][int_id] == csr["key_id"]
        issuer = (await _ok(h, "GET", "int/issuer/default"))["data"]
        assert issuer["issuer_id"] == int_id
        assert [c.strip() for c in issuer["ca_chain"]] == [signed["certificate"], root["certificate"]]
        # importing the same bundle again finds everything existing
        again = (await _ok(h, "POST", "int/intermediate/set-signed", {"certificate": bundle}))["data"]
        assert again["imported_issuers"] is None and len(again["existing_issuers"]) == 2
        # openssl agrees the chain verifies
        if shutil.which("openssl"):
            (tmp_path / "root.pem").write_text(root["certificate"] + "\n")
            (tmp_path / "int.pem").write_text(signed["certificate"] + "\n")
            out = subprocess.run(
                ["openssl", "verify", "-CAfile", str(tmp_path / "root.pem"), str(tmp_path / "int.pem")],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
            assert out.returncode == 0, out.stdout + out.stderr
        # the intermediate mount can now sign a further CA
        sub_csr = (
            await _ok(
                h, "POST", "int/intermediate/generate/exported", {"common_name": "Sub", "key_type": "ed25519"}
            )
        )["data"]
        assert sub_csr["private_key_type"] == "ed25519"
        sub = (
            await _ok(
                h,
                "POST",
                "int/issuer/default/sign-intermediate",
                {"csr": sub_csr["csr"], "use_csr_values": True},
            )
        )["data"]
        assert len(sub["ca_chain"]) == 3
        _cert(sub["certificate"]).verify_directly_issued_by(int_cert)
        # the signed intermediate is truncated to the issuer's NotAfter, with a warning
        r = await h.call(
            "POST",
            "int/issuer/default/sign-intermediate",
            json={"csr": sub_csr["csr"], "common_name": "Sub", "ttl": "8000h"},
        )
        assert r.status_code == 200
        assert _cert(r.json()["data"]["certificate"]).not_valid_after_utc == int_cert.not_valid_after_utc
        assert any("truncated" in w for w in r.json()["warnings"])


async def test_sign_intermediate_use_csr_values_and_cn() -> None:
    async with running_core() as h:
        await _mount(h)
        await _ok(h, "POST", "pki/root/generate/internal", {"common_name": "Root", "key_type": "ec"})
        key = ec.generate_private_key(ec.SECP256R1())
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(
                x509.Name(
                    [
                        x509.NameAttribute(NameOID.COMMON_NAME, "from-csr.example.com"),
                        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "CSR Org"),
                    ]
                )
            )
            .sign(key, hashes.SHA256())
        )
        pem = csr.public_bytes(serialization.Encoding.PEM).decode()
        data = (await _ok(h, "POST", "pki/root/sign-intermediate", {"csr": pem, "use_csr_values": True}))[
            "data"
        ]
        assert _cert(data["certificate"]).subject == csr.subject
        data = (await _ok(h, "POST", "pki/root/sign-intermediate", {"csr": pem, "organization": "Req Org"}))[
            "data"
        ]
        assert _cert(data["certificate"]).subject.rfc4514_string() == "CN=from-csr.example.com,O=Req Org"
        r = await h.call("POST", "pki/root/sign-intermediate", json={"csr": "garbage"})
        assert r.status_code == 400


async def test_path_length_enforcement() -> None:
    async with running_core() as h:
        await _mount(h)
        await _ok(
            h,
            "POST",
            "pki/root/generate/internal",
            {"common_name": "Root", "key_type": "ec", "max_path_length": 1},
        )
        csr = (
            await _ok(
                h, "POST", "pki/intermediate/generate/internal", {"common_name": "Int", "key_type": "ec"}
            )
        )["data"]["csr"]
        for bad in (1, 2, -1):
            r = await h.call(
                "POST",
                "pki/root/sign-intermediate",
                json={"csr": csr, "common_name": "Int", "max_path_length": bad},
            )
            assert r.status_code == 400, r.text
            assert "is not allowed: the signing CA has a pathLenConstraint of 1" in r.json()["errors"][0]
        r = await h.call(
            "POST",
            "pki/root/sign-intermediate",
            json={"csr": csr, "common_name": "Int", "max_path_length": -2},
        )
        assert r.status_code == 400
        # not sent: the child inherits parent - 1
        data = (await _ok(h, "POST", "pki/root/sign-intermediate", {"csr": csr, "common_name": "Int"}))[
            "data"
        ]
        child = _cert(data["certificate"])
        assert child.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length == 0
        # a pathLen-0 issuer cannot sign CAs at all
        await _mount(h, "leafonly")
        await _ok(
            h,
            "POST",
            "leafonly/root/generate/internal",
            {"common_name": "Zero", "key_type": "ec", "max_path_length": 0},
        )
        r = await h.call("POST", "leafonly/root/sign-intermediate", json={"csr": csr, "common_name": "Int"})
        assert r.status_code == 400 and "max path length of zero" in r.json()["errors"][0]
        # an unconstrained root honours an explicit value
        await _mount(h, "open")
        await _ok(h, "POST", "open/root/generate/internal", {"common_name": "Open", "key_type": "ec"})
        data = (
            await _ok(
                h,
                "POST",
                "open/root/sign-intermediate",
                {"csr": csr, "common_name": "Int", "max_path_length": 5},
            )
        )["data"]
        assert (
            _cert(data["certificate"])
            .extensions.get_extension_for_class(x509.BasicConstraints)
            .value.path_length
            == 5
        )


async def test_cross_sign_and_rotation() -> None:
    async with running_core() as h:
        await _mount(h)
        first = (
            await _ok(
                h,
                "POST",
                "pki/root/generate/internal",
                {"common_name": "Root A", "key_type": "ec", "issuer_name": "a"},
            )
        )["data"]
        rotated = (
            await _ok(h, "POST", "pki/root/rotate/internal", {"common_name": "Root B", "key_type": "ec"})
        )["data"]
        assert rotated["issuer_name"] == "next"
        assert (await _ok(h, "GET", "pki/config/issuers"))["data"]["default"] == first["issuer_id"]
        replaced = (await _ok(h, "POST", "pki/root/replace", {}))["data"]
        assert replaced["default"] == rotated["issuer_id"]
        # cross-sign: a CSR reusing B's key, signed by A, imported: B's chain gains A
        csr = (
            await _ok(
                h,
                "POST",
                "pki/intermediate/cross-sign",
                {"common_name": "Root B", "key_ref": rotated["key_id"]},
            )
        )["data"]
        assert csr["key_id"] == rotated["key_id"]
        cross = (
            await _ok(
                h, "POST", "pki/issuer/a/sign-intermediate", {"csr": csr["csr"], "common_name": "Root B"}
            )
        )["data"]
        imported = (await _ok(h, "POST", "pki/issuers/import/cert", {"pem_bundle": cross["certificate"]}))[
            "data"
        ]
        cross_id = imported["imported_issuers"][0]
        assert imported["mapping"][cross_id] == rotated["key_id"]
        chain = (await _ok(h, "GET", f"pki/issuer/{cross_id}"))["data"]["ca_chain"]
        assert [c.strip() for c in chain] == [cross["certificate"], first["certificate"]]
        # manual_chain overrides the computed one; the first entry must be self
        body = await _ok(h, "PATCH", f"pki/issuer/{cross_id}", {"manual_chain": ["self", "a"]})
        assert body["data"]["manual_chain"] == [cross_id, first["issuer_id"]]
        r = await _call(h, "PATCH", f"pki/issuer/{cross_id}", {"manual_chain": ["a"]})
        assert r.status_code == 400 and "self-reference" in r.json()["errors"][0]


async def test_sign_self_issued() -> None:
    async with running_core() as h:
        await _mount(h)
        root = (
            await _ok(h, "POST", "pki/root/generate/internal", {"common_name": "Signer", "key_type": "ec"})
        )["data"]
        other = _self_ca(rsa.generate_private_key(65537, 2048), "Other CA")
        data = (await _ok(h, "POST", "pki/root/sign-self-issued", {"certificate": _pem(other)}))["data"]
        resigned = _cert(data["certificate"])
        assert resigned.subject == other.subject and resigned.serial_number == other.serial_number
        resigned.verify_directly_issued_by(_cert(root["certificate"]))
        assert data["issuing_ca"] == root["certificate"]
        # a certificate that does not parse, or is not self-issued, is refused
        r = await h.call("POST", "pki/root/sign-self-issued", json={"certificate": _pem(other)[:50]})
        assert r.status_code == 400


# -- import ---------------------------------------------------------------------------------


async def test_import_bundle_config_ca() -> None:
    async with running_core() as h:
        await _mount(h)
        key = ec.generate_private_key(ec.SECP256R1())
        ca = _self_ca(key, "Imported CA")
        bundle = _key_pem(key) + _pem(ca)
        data = (await _ok(h, "POST", "pki/config/ca", {"pem_bundle": bundle}))["data"]
        assert len(data["imported_issuers"]) == 1 and len(data["imported_keys"]) == 1
        issuer_id = data["imported_issuers"][0]
        assert data["mapping"] == {issuer_id: data["imported_keys"][0]}
        issuer = (await _ok(h, "GET", "pki/issuer/default"))["data"]
        assert issuer["issuer_id"] == issuer_id and issuer["key_id"] == data["imported_keys"][0]
        assert issuer["certificate"] == _pem(ca)
        assert issuer["leaf_not_after_behavior"] == "err"
        assert issuer["usage"] == "read-only,issuing-certificates,crl-signing,ocsp-signing"
        # the imported key signs: sign an intermediate with it
        csr = (
            await _ok(h, "POST", "pki/intermediate/generate/internal", {"common_name": "i", "key_type": "ec"})
        )["data"]["csr"]
        signed = (await _ok(h, "POST", "pki/root/sign-intermediate", {"csr": csr}))["data"]
        _cert(signed["certificate"]).verify_directly_issued_by(ca)
        # importing again reports existing material
        data = (await _ok(h, "POST", "pki/issuers/import/bundle", {"pem_bundle": bundle}))["data"]
        assert data["imported_issuers"] is None and data["existing_issuers"] == [issuer_id]
        # keys are refused on the cert-only path; non-CA certificates are refused
        r = await h.call("POST", "pki/issuers/import/cert", json={"pem_bundle": bundle})
        assert r.status_code == 400
        leaf = _cert(signed["certificate"])
        assert leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        non_ca_key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "leaf")])
        now = dt.datetime.now(dt.UTC)
        non_ca = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(non_ca_key.public_key())
            .serial_number(1)
            .not_valid_before(now)
            .not_valid_after(now + dt.timedelta(days=1))
            .sign(non_ca_key, hashes.SHA256())
        )
        r = await h.call("POST", "pki/config/ca", json={"pem_bundle": _pem(non_ca)})
        assert r.status_code == 400
        r = await h.call("POST", "pki/config/ca", json={"pem_bundle": "not pem"})
        assert r.status_code == 400


async def test_import_cert_then_key_links_them() -> None:
    async with running_core() as h:
        await _mount(h)
        key = ec.generate_private_key(ec.SECP384R1())
        ca = _self_ca(key, "Late Key CA")
        data = (await _ok(h, "POST", "pki/issuers/import/cert", {"pem_bundle": _pem(ca)}))["data"]
        issuer_id = data["imported_issuers"][0]
        assert data["mapping"] == {issuer_id: ""}
        # an issuer without a key is not the default; signing with it fails with Vault's text
        r = await h.call("POST", f"pki/issuer/{issuer_id}/sign-intermediate", json={"csr": "x"})
        assert r.status_code == 400 and "unable to fetch corresponding key" in r.json()["errors"][0]
        body = await _ok(h, "POST", "pki/keys/import", {"pem_bundle": _key_pem(key), "key_name": "late"})
        assert body["data"]["key_type"] == "ec" and body["data"]["key_name"] == "late"
        issuer = (await _ok(h, "GET", f"pki/issuer/{issuer_id}"))["data"]
        assert issuer["key_id"] == body["data"]["key_id"]
        assert (await _ok(h, "GET", "pki/config/issuers"))["data"]["default"] == issuer_id


# -- issuer admin ----------------------------------------------------------------------------


async def test_issuer_read_update_patch_delete_default() -> None:
    async with running_core() as h:
        await _mount(h)
        a = (
            await _ok(
                h,
                "POST",
                "pki/root/generate/internal",
                {"common_name": "A", "key_type": "ec", "issuer_name": "a"},
            )
        )["data"]
        b = (await _ok(h, "POST", "pki/root/generate/internal", {"common_name": "B", "key_type": "ec"}))[
            "data"
        ]
        issuer = (await _ok(h, "GET", "pki/issuer/a"))["data"]
        assert issuer["issuer_id"] == a["issuer_id"] and issuer["manual_chain"] is None
        assert issuer["revocation_signature_algorithm"] == "ECDSAWithSHA256"
        assert issuer["issuing_certificates"] == [] and issuer["enable_aia_url_templating"] is False
        # PATCH changes only what is sent
        body = await _ok(
            h,
            "PATCH",
            "pki/issuer/a",
            {"leaf_not_after_behavior": "truncate", "issuing_certificates": "http://a.example/ca"},
        )
        assert body["data"]["issuer_name"] == "a" and body["data"]["leaf_not_after_behavior"] == "truncate"
        assert body["data"]["issuing_certificates"] == ["http://a.example/ca"]
        # POST replaces: omitted fields reset (the name is cleared, usage back to all)
        await _ok(h, "PATCH", "pki/issuer/a", {"usage": "read-only,crl-signing"})
        body = await _ok(h, "POST", f"pki/issuer/{a['issuer_id']}", {"issuer_name": "renamed"})
        assert body["data"]["issuer_name"] == "renamed"
        assert body["data"]["leaf_not_after_behavior"] == "err"
        assert body["data"]["usage"] == "read-only,issuing-certificates,crl-signing,ocsp-signing"
        assert body["data"]["issuing_certificates"] == []
        for bad in (
            {"leaf_not_after_behavior": "sometimes"},
            {"usage": "bogus"},
            {"issuer_name": "default"},
            {"revocation_signature_algorithm": "SHA256WithRSA"},  # an EC issuer
            {"issuing_certificates": "not a url"},
        ):
            r = await _call(h, "PATCH", "pki/issuer/renamed", bad)
            assert r.status_code == 400, (bad, r.text)
        r = await _call(h, "PATCH", f"pki/issuer/{b['issuer_id']}", {"issuer_name": "renamed"})
        assert r.status_code == 400 and r.json()["errors"] == ["issuer name already in use"]
        # default issuer selection
        r = await h.call("POST", "pki/config/issuers", json={"default": "nope"})
        assert r.status_code == 400
        assert r.json()["errors"] == [
            "Error resolving issuer reference: unable to find PKI issuer for reference: nope"
        ]
        body = await _ok(
            h,
            "POST",
            "pki/config/issuers",
            {"default": b["issuer_id"], "default_follows_latest_issuer": True},
        )
        assert body["data"] == {"default": b["issuer_id"], "default_follows_latest_issuer": True}
        c = (await _ok(h, "POST", "pki/root/generate/internal", {"common_name": "C", "key_type": "ec"}))[
            "data"
        ]
        assert (await _ok(h, "GET", "pki/config/issuers"))["data"]["default"] == c["issuer_id"]
        # delete the default: warning, default cleared, reads of it fail like Vault (500)
        r = await h.call("DELETE", f"pki/issuer/{c['issuer_id']}")
        assert r.status_code == 200 and "this was configured as the default issuer" in r.json()["warnings"][0]
        assert (await _ok(h, "GET", "pki/config/issuers"))["data"]["default"] == ""
        r = await h.call("GET", f"pki/issuer/{c['issuer_id']}")
        assert r.status_code == 500
        assert r.json()["errors"] == [f"unable to find PKI issuer for reference: {c['issuer_id']}"]
        r = await h.call("GET", "pki/issuer/default")
        assert r.status_code == 500 and r.json()["errors"] == ["no default issuer currently configured"]
        # deleting something unknown succeeds quietly
        assert (await h.call("DELETE", "pki/issuer/unknown")).status_code == 204
        listing = (await _ok(h, "LIST", "pki/issuers"))["data"]
        assert sorted(listing["keys"]) == sorted([a["issuer_id"], b["issuer_id"]])


async def test_unknown_reference_on_signing_is_400() -> None:
    async with running_core() as h:
        await _mount(h)
        csr = (
            await _ok(h, "POST", "pki/intermediate/generate/internal", {"common_name": "i", "key_type": "ec"})
        )["data"]["csr"]
        r = await h.call("POST", "pki/root/sign-intermediate", json={"csr": csr})
        assert r.status_code == 400
        assert r.json()["errors"] == [
            "could not fetch the CA certificate (was one set?): no default issuer currently configured"
        ]
        r = await h.call("POST", "pki/issuer/missing/sign-intermediate", json={"csr": csr})
        assert r.status_code == 400
        assert r.json()["errors"] == [
            "could not fetch the CA certificate (was one set?): unable to find PKI issuer for reference: missing"
        ]
        with pytest.raises(store.ReferenceNotFound, match="unable to find PKI issuer for reference: missing"):
            await store.load_signing_issuer(h.core.router.get("pki/").storage, "missing")


async def test_revoke_issuer() -> None:
    async with running_core() as h:
        await _mount(h)
        root = (await _ok(h, "POST", "pki/root/generate/internal", {"common_name": "R", "key_type": "ec"}))[
            "data"
        ]
        body = await _ok(h, "POST", f"pki/issuer/{root['issuer_id']}/revoke")
        assert body["data"]["revoked"] is True and body["data"]["revocation_time"] > 0
        assert "issuing-certificates" not in body["data"]["usage"]
        r = await _call(h, "PATCH", "pki/issuer/default", {"usage": "issuing-certificates"})
        assert r.status_code == 400
        csr = (
            await _ok(h, "POST", "pki/intermediate/generate/internal", {"common_name": "i", "key_type": "ec"})
        )["data"]["csr"]
        r = await h.call("POST", "pki/root/sign-intermediate", json={"csr": csr})
        assert r.status_code == 400 and "requested usage issuing-certificates" in r.json()["errors"][0]


# -- keys -----------------------------------------------------------------------------------


async def test_keys_list_read_update_delete() -> None:
    async with running_core() as h:
        await _mount(h)
        root = (
            await _ok(
                h,
                "POST",
                "pki/root/generate/internal",
                {"common_name": "R", "key_type": "ec", "key_name": "rk"},
            )
        )["data"]
        gen = (await _ok(h, "POST", "pki/keys/generate/exported", {"key_type": "rsa", "key_name": "spare"}))[
            "data"
        ]
        assert gen["key_type"] == "rsa" and gen["private_key"].startswith("-----BEGIN RSA PRIVATE KEY-----")
        listing = (await _ok(h, "LIST", "pki/keys"))["data"]
        assert sorted(listing["keys"]) == sorted([root["key_id"], gen["key_id"]])
        assert listing["key_info"][gen["key_id"]] == {"key_name": "spare"}
        key = (await _ok(h, "GET", "pki/key/rk"))["data"]
        assert key["key_id"] == root["key_id"] and key["key_type"] == "ec" and ":" in key["subject_key_id"]
        assert "private_key" not in key
        # the default key is the first one
        assert (await _ok(h, "GET", "pki/config/keys"))["data"]["default"] == root["key_id"]
        await _ok(h, "POST", "pki/config/keys", {"default": "spare"})
        # rename; duplicate names refused
        assert (await _ok(h, "POST", "pki/key/spare", {"key_name": "extra"}))["data"]["key_name"] == "extra"
        r = await h.call("POST", "pki/key/extra", json={"key_name": "rk"})
        assert r.status_code == 400
        # a key in use by an issuer cannot be deleted
        r = await h.call("DELETE", "pki/key/rk")
        assert r.status_code == 400 and r.json()["errors"] == [
            f"Failed to Delete Key.  Key in Use by Issuer: {root['issuer_id']}"
        ]
        r = await h.call("DELETE", "pki/key/extra")
        assert r.status_code == 200 and "default key" in r.json()["warnings"][0]
        await h.call("DELETE", f"pki/issuer/{root['issuer_id']}")
        assert (await h.call("DELETE", "pki/key/rk")).status_code == 204
        assert (await h.call("LIST", "pki/keys")).status_code == 404
        assert (await h.call("GET", "pki/key/rk")).status_code == 500
        r = await h.call("POST", "pki/keys/generate/internal", json={"key_type": "rsa", "key_bits": 1024})
        assert r.status_code == 400


async def test_delete_root_removes_everything() -> None:
    async with running_core() as h:
        await _mount(h)
        await _ok(h, "POST", "pki/root/generate/internal", {"common_name": "R", "key_type": "ec"})
        await _ok(h, "POST", "pki/keys/generate/internal", {"key_type": "ec"})
        r = await h.call("DELETE", "pki/root")
        assert r.status_code == 200 and "DELETE /root deletes all keys and issuers" in r.json()["warnings"][0]
        assert (await h.call("LIST", "pki/issuers")).status_code == 404
        assert (await h.call("LIST", "pki/keys")).status_code == 404
        assert (await h.client.get("/v1/pki/ca")).status_code == 204
        # a new root can be generated afterwards
        await _ok(h, "POST", "pki/root/generate/internal", {"common_name": "R2", "key_type": "ec"})


async def test_special_paths_declared() -> None:
    async with running_core() as h:
        await _mount(h)
        backend = h.core.router.get("pki/").backend
        assert "root" in backend.special_paths.root
        assert "root/sign-self-issued" in backend.special_paths.root
        assert "issuer/+/sign-self-issued" in backend.special_paths.root
        assert "issuers/" in backend.special_paths.unauthenticated


# -- signing-issuer contract and cache --------------------------------------------------------


async def test_load_signing_issuer_and_cache_generation(monkeypatch: pytest.MonkeyPatch) -> None:
    async with running_core() as h:
        await _mount(h)
        root = (
            await _ok(
                h,
                "POST",
                "pki/root/generate/internal",
                {"common_name": "R", "key_type": "ec", "issuer_name": "r"},
            )
        )["data"]
        storage = h.core.router.get("pki/").storage
        first = await store.load_signing_issuer(storage, "default")
        assert first.issuer_id == root["issuer_id"] and first.issuer_name == "r"
        assert first.chain_pem == [root["certificate"]]
        assert first.leaf_not_after_behavior == "err"
        assert first.usage == set(store.ALL_USAGES)
        assert isinstance(first.private_key, ec.EllipticCurvePrivateKey)
        assert await store.load_signing_issuer(storage, "r") is first  # cached
        # a change through the API invalidates this process's cache at once
        await _ok(h, "PATCH", "pki/issuer/r", {"leaf_not_after_behavior": "permit"})
        second = await store.load_signing_issuer(storage, "r")
        assert second is not first and second.leaf_not_after_behavior == "permit"
        # a change by another process (simulated: raw storage write + generation bump) is seen
        # once the generation is re-read
        monkeypatch.setattr(store, "GENERATION_RECHECK_S", 0.0)
        entry = await store.fetch_issuer(storage, root["issuer_id"])
        assert entry is not None
        entry.leaf_not_after_behavior = "truncate"
        await storage.put(f"issuer/{entry.id}", json.dumps(entry.to_json()).encode())
        generation = await store.read_generation(storage)
        await storage.put(store.GENERATION_KEY, str(generation + 1).encode())
        third = await store.load_signing_issuer(storage, "r")
        assert third.leaf_not_after_behavior == "truncate"


def test_serial_helpers() -> None:
    assert store.serial_to_str(0x1A2B) == "1a:2b"
    assert store.serial_to_str(5) == "05"
    assert store.normalize_serial("1A-2B") == "1a:2b"
    assert store.normalize_serial("1a2b") == "1a:2b"
    assert store.normalize_serial("a2b") == "0a:2b"
