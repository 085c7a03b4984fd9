"""pki fetch paths (ca, ca/pem, ca_chain, cert/*, issuer/*/{json,der,pem}) and config/urls."""

from __future__ import annotations

import json
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import AuthorityInformationAccessOID

from strongroom.core.mounts import MountEntry
from strongroom.engines.pki import store
from strongroom.testing import Harness, running_core

MERGE_PATCH = {"Content-Type": "application/merge-patch+json"}


async def _mount(h: Harness, path: str = "pki") -> None:
    await h.core.enable_mount(MountEntry(f"{path}/", "pki"))


async def _ok(h: Harness, method: str, path: str, body: Any = None) -> dict[str, Any]:
    headers = MERGE_PATCH if method == "PATCH" else None
    r = await h.call(method, path, json=body, headers=headers)
    assert r.status_code == 200, r.text
    return r.json()


async def _get(h: Harness, path: str) -> Any:
    """An unauthenticated GET (no token header at all)."""
    return await h.client.get(f"/v1/{path}")


async def test_fetch_before_any_issuer() -> None:
    async with running_core() as h:
        await _mount(h)
        for path in ("pki/ca", "pki/ca/pem", "pki/ca_chain", "pki/cert/ca/raw"):
            r = await _get(h, path)
            assert r.status_code == 204 and r.content == b"", path
        r = await _get(h, "pki/cert/ca")
        assert r.status_code == 400 and r.json()["errors"] == ["no default issuer currently configured"]
        r = await h.client.request("LIST", "/v1/pki/issuers")
        assert r.status_code == 404


async def test_ca_and_cert_fetches() -> None:
    async with running_core() as h:
        await _mount(h)
        root = (
            await _ok(
                h, "POST", "pki/root/generate/internal", {"common_name": "Fetch Root", "key_type": "ec"}
            )
        )["data"]
        cert = x509.load_pem_x509_certificate(root["certificate"].encode())
        der = cert.public_bytes(serialization.Encoding.DER)

        r = await _get(h, "pki/ca")
        assert (
            r.status_code == 200 and r.headers["content-type"] == "application/pkix-cert" and r.content == der
        )
        r = await _get(h, "pki/ca/pem")
        assert r.headers["content-type"] == "application/pem-certificate-chain"
        assert r.text == root["certificate"]
        r = await _get(h, "pki/ca_chain")
        assert r.headers["content-type"] == "application/pkix-cert" and r.text == root["certificate"]
        r = await _get(h, "pki/cert/ca_chain")
        data = r.json()["data"]
        assert data["certificate"] == root["certificate"] and data["ca_chain"] == root["certificate"]
        r = await _get(h, "pki/cert/ca")
        assert r.json()["data"] == {
            "certificate": root["certificate"],
            "revocation_time": 0,
            "revocation_time_rfc3339": "",
        }
        assert (await _get(h, "pki/cert/ca/raw")).content == der
        assert (await _get(h, "pki/cert/ca/raw/pem")).text == root["certificate"]

        serial = root["serial_number"]
        for form in (serial, serial.replace(":", "-"), serial.upper(), serial.replace(":", "")):
            r = await _get(h, f"pki/cert/{form}")
            assert r.status_code == 200, form
            data = r.json()["data"]
            assert data["certificate"] == root["certificate"]
            assert data["revocation_time"] == 0 and data["revocation_time_rfc3339"] == ""
            assert data["issuer_id"] == root["issuer_id"]
        r = await _get(h, f"pki/cert/{serial}/raw")
        assert r.headers["content-type"] == "application/pkix-cert" and r.content == der
        r = await _get(h, f"pki/cert/{serial}/raw/pem")
        assert (
            r.headers["content-type"] == "application/pem-certificate-chain" and r.text == root["certificate"]
        )
        # unknown serials: JSON 404, raw 204
        assert (await _get(h, "pki/cert/01:02:03")).status_code == 404
        assert (await _get(h, "pki/cert/01:02:03/raw")).status_code == 204


async def test_revocation_status_is_read_from_revoked_entries() -> None:
    async with running_core() as h:
        await _mount(h)
        root = (await _ok(h, "POST", "pki/root/generate/internal", {"common_name": "R", "key_type": "ec"}))[
            "data"
        ]
        serial = root["serial_number"]
        storage = h.core.router.get("pki/").storage
        record = {
            "serial_number": serial,
            "revocation_time": 1700000000,
            "revocation_time_rfc3339": "2023-11-14T22:13:20Z",
            "issuer_id": root["issuer_id"],
        }
        await storage.put(f"revoked/{serial}", json.dumps(record).encode())
        data = (await _get(h, f"pki/cert/{serial}")).json()["data"]
        assert data["revocation_time"] == 1700000000
        assert data["revocation_time_rfc3339"] == "2023-11-14T22:13:20Z"


async def test_issuer_fetches_and_chain_of_an_intermediate() -> None:
    async with running_core() as h:
        await _mount(h, "root")
        await _mount(h, "int")
        root = (
            await _ok(
                h,
                "POST",
                "root/root/generate/internal",
                {"common_name": "Root", "key_type": "ec", "issuer_name": "r"},
            )
        )["data"]
        csr = (
            await _ok(
                h, "POST", "int/intermediate/generate/internal", {"common_name": "Int", "key_type": "ec"}
            )
        )["data"]
        signed = (
            await _ok(h, "POST", "root/root/sign-intermediate", {"csr": csr["csr"], "common_name": "Int"})
        )["data"]
        await _ok(
            h,
            "POST",
            "int/intermediate/set-signed",
            {"certificate": signed["certificate"] + "\n" + root["certificate"]},
        )

        r = await _get(h, "int/ca_chain")
        assert r.text == signed["certificate"] + "\n" + root["certificate"]
        data = (await _get(h, "int/cert/ca_chain")).json()["data"]
        assert data["ca_chain"] == r.text
        assert (await _get(h, "int/ca/pem")).text == signed["certificate"]

        r = await _get(h, "root/issuer/r/json")
        data = r.json()["data"]
        assert data["issuer_id"] == root["issuer_id"] and data["issuer_name"] == "r"
        assert data["certificate"].strip() == root["certificate"]
        assert [c.strip() for c in data["ca_chain"]] == [root["certificate"]]
        r = await _get(h, "root/issuer/r/pem")
        assert r.headers["content-type"] == "application/pem-certificate-chain"
        assert r.text.strip() == root["certificate"]
        r = await _get(h, f"root/issuer/{root['issuer_id']}/der")
        assert r.headers["content-type"] == "application/pkix-cert"
        assert x509.load_der_x509_certificate(r.content).subject.rfc4514_string() == "CN=Root"
        assert (await _get(h, "root/issuer/nope/json")).status_code == 500
        # LIST issuers needs no token
        r = await h.client.request("LIST", "/v1/root/issuers")
        assert r.status_code == 200 and r.json()["data"]["keys"] == [root["issuer_id"]]
        # the issuer admin path does need one
        assert (await _get(h, "root/issuer/r")).status_code in (401, 403)


async def test_config_urls_and_aia() -> None:
    async with running_core() as h:
        await _mount(h)
        assert (await _get(h, "pki/config/urls")).status_code in (401, 403)
        empty = (await _ok(h, "GET", "pki/config/urls"))["data"]
        assert empty["issuing_certificates"] == [] and empty["enable_templating"] is False
        body = await _ok(
            h,
            "POST",
            "pki/config/urls",
            {
                "issuing_certificates": ["http://127.0.0.1:8200/v1/pki/ca"],
                "crl_distribution_points": "http://127.0.0.1:8200/v1/pki/crl",
                "ocsp_servers": "http://127.0.0.1:8200/v1/pki/ocsp",
            },
        )
        assert body["data"]["crl_distribution_points"] == ["http://127.0.0.1:8200/v1/pki/crl"]
        data = (await _ok(h, "GET", "pki/config/urls"))["data"]
        assert data["issuing_certificates"] == ["http://127.0.0.1:8200/v1/pki/ca"]
        assert data["ocsp_servers"] == ["http://127.0.0.1:8200/v1/pki/ocsp"]
        r = await h.call("POST", "pki/config/urls", json={"ocsp_servers": "not a url"})
        assert r.status_code == 400 and "ocsp_servers" in r.json()["errors"][0]

        root = (await _ok(h, "POST", "pki/root/generate/internal", {"common_name": "R", "key_type": "ec"}))[
            "data"
        ]
        assert not root.get("warnings")
        cert = x509.load_pem_x509_certificate(root["certificate"].encode())
        aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
        by_method = {d.access_method: d.access_location.value for d in aia}
        assert by_method[AuthorityInformationAccessOID.CA_ISSUERS] == "http://127.0.0.1:8200/v1/pki/ca"
        assert by_method[AuthorityInformationAccessOID.OCSP] == "http://127.0.0.1:8200/v1/pki/ocsp"
        cdp = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
        assert (
            cdp[0].full_name is not None and cdp[0].full_name[0].value == "http://127.0.0.1:8200/v1/pki/crl"
        )

        storage = h.core.router.get("pki/").storage
        signing = await store.load_signing_issuer(storage, "default")
        assert signing.aia.issuing_certificates == ["http://127.0.0.1:8200/v1/pki/ca"]
        # per-issuer AIA replaces the mount's
        await _ok(h, "PATCH", "pki/issuer/default", {"issuing_certificates": "http://issuer.example/ca"})
        signing = await store.load_signing_issuer(storage, "default")
        assert signing.aia.issuing_certificates == ["http://issuer.example/ca"]
        assert signing.aia.crl_distribution_points == []
        # templating needs config/cluster
        await _ok(
            h,
            "POST",
            "pki/issuer/default",
            {
                "issuing_certificates": "{{cluster_aia_path}}/issuer/{{issuer_id}}/der",
                "enable_aia_url_templating": True,
            },
        )
        await _ok(
            h,
            "POST",
            "pki/config/cluster",
            {"path": "https://vault.example/v1/pki", "aia_path": "http://cdn.example/pki"},
        )
        cluster = (await _ok(h, "GET", "pki/config/cluster"))["data"]
        assert cluster == {"path": "https://vault.example/v1/pki", "aia_path": "http://cdn.example/pki"}
        signing = await store.load_signing_issuer(storage, "default")
        assert signing.aia.issuing_certificates == [f"http://cdn.example/pki/issuer/{root['issuer_id']}/der"]
        r = await h.call("POST", "pki/config/cluster", json={"path": "ftp://nope"})
        assert r.status_code == 400
