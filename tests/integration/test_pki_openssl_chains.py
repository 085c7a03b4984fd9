"""`openssl verify` accepts root → intermediate → leaf chains the engine builds, for RSA, EC and Ed25519."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from strongroom.core.mounts import MountConfig, MountEntry
from strongroom.testing import Harness, running_core

LONG = MountConfig(max_lease_ttl=87600 * 3600)


async def _ok(h: Harness, method: str, path: str, body: dict) -> dict:
    r = await h.call(method, path, json=body)
    assert r.status_code in (200, 204), r.text
    return r.json()["data"] if r.status_code == 200 else {}


@pytest.mark.parametrize("key_type,key_bits", [("rsa", 2048), ("ec", 256), ("ed25519", 0)])
async def test_openssl_verifies_root_intermediate_leaf(key_type: str, key_bits: int, tmp_path: Path) -> None:
    if shutil.which("openssl") is None:
        pytest.fail("openssl is required (make test installs it)")
    key = {"key_type": key_type, "key_bits": key_bits}
    async with running_core() as h:
        await h.core.enable_mount(MountEntry("root/", "pki", config=LONG))
        await h.core.enable_mount(MountEntry("int/", "pki", config=LONG))
        root = await _ok(
            h, "POST", "root/root/generate/internal", {"common_name": "Root", "ttl": "87000h", **key}
        )
        csr = await _ok(
            h, "POST", "int/intermediate/generate/internal", {"common_name": "Intermediate", **key}
        )
        signed = await _ok(
            h,
            "POST",
            "root/root/sign-intermediate",
            {"csr": csr["csr"], "ttl": "43800h", "format": "pem_bundle"},
        )
        await _ok(h, "POST", "int/intermediate/set-signed", {"certificate": signed["certificate"]})
        await _ok(
            h,
            "POST",
            "int/roles/web",
            {"allowed_domains": "example.com", "allow_subdomains": True, "max_ttl": "72h", **key},
        )
        leaf = await _ok(h, "POST", "int/issue/web", {"common_name": "app.example.com", "ttl": "1h"})

    (tmp_path / "root.pem").write_text(root["certificate"] + "\n")
    (tmp_path / "chain.pem").write_text("\n".join(leaf["ca_chain"]) + "\n")
    (tmp_path / "leaf.pem").write_text(leaf["certificate"] + "\n")
    out = subprocess.run(
        ["openssl", "verify", "-CAfile", "root.pem", "-untrusted", "chain.pem", "leaf.pem"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0 and "leaf.pem: OK" in out.stdout, out.stdout + out.stderr
