"""Renewing a token asks the auth method that issued it (CVE-2026-39388: cert binding).

A cert-auth token renews only with the certificate that logged in; another valid
certificate from the same CA is refused.
"""

from __future__ import annotations

import json

from strongroom.core.mounts import MountConfig, MountEntry
from strongroom.testing import Harness, running_core


async def _post(h: Harness, path: str, body: dict, chain: list[str], token: str = "") -> tuple[int, dict]:
    headers = {"X-Vault-Token": token} if token else {}
    status, raw = await h.raw(
        "POST", path.encode(), json.dumps(body).encode(), headers, client_cert_chain=chain
    )
    return status, json.loads(raw or b"{}")


async def test_cert_token_renews_only_with_its_own_certificate() -> None:
    async with running_core() as h:
        await h.core.enable_mount(MountEntry("pki/", "pki", config=MountConfig(max_lease_ttl=87600 * 3600)))
        r = await h.call("POST", "pki/root/generate/internal", json={"common_name": "root", "key_type": "ec"})
        assert r.status_code == 200, r.text
        role = {"allow_any_name": True, "key_type": "ec", "client_flag": True, "max_ttl": "24h"}
        assert (await h.call("POST", "pki/roles/clients", json=role)).status_code in (200, 204)
        first = (await h.call("POST", "pki/issue/clients", json={"common_name": "svc", "ttl": "1h"})).json()[
            "data"
        ]
        second = (await h.call("POST", "pki/issue/clients", json={"common_name": "svc", "ttl": "1h"})).json()[
            "data"
        ]
        await h.core.enable_mount(MountEntry("cert/", "cert", table="auth"))
        r = await h.call(
            "POST", "auth/cert/certs/svc", json={"certificate": first["issuing_ca"], "ttl": "10m"}
        )
        assert r.status_code in (200, 204), r.text

        status, body = await _post(h, "/v1/auth/cert/login", {}, [first["certificate"]])
        assert status == 200, body
        token = body["auth"]["client_token"]

        status, body = await _post(h, "/v1/auth/token/renew-self", {}, [first["certificate"]], token)
        assert status == 200, body
        status, body = await _post(h, "/v1/auth/token/renew-self", {}, [second["certificate"]], token)
        assert status == 403, body
        status, body = await _post(h, "/v1/auth/token/renew-self", {}, [], token)
        assert status in (400, 403), body
