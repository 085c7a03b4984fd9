"""sys/policies/acl, the legacy sys/policy and sys/capabilities* through the HTTP layer."""

from __future__ import annotations

import base64
import json

from strongroom.core.tokens import TokenEntry
from strongroom.testing import Harness, running_core

HCL = 'path "secret/*" {\n  capabilities = ["create", "read"]\n}\npath "secret/admin" { capabilities = ["deny"] }\n'
JSON_POLICY = json.dumps({"path": {"kv/data/*": {"capabilities": ["read", "list"]}}}, indent=2)


async def token(h: Harness, *policies: str) -> TokenEntry:
    return await h.core.tokens.create(TokenEntry(id="", policies=list(policies)))


async def test_acl_policy_crud_hcl_and_json() -> None:
    async with running_core() as h:
        r = await h.call("PUT", "sys/policies/acl/MyPolicy", json={"policy": HCL})
        assert r.status_code == 204, r.text
        r = await h.call("GET", "sys/policies/acl/mypolicy")
        assert r.json()["data"] == {"name": "mypolicy", "policy": HCL}
        r = await h.call("POST", "sys/policies/acl/js", json={"policy": JSON_POLICY})
        assert r.status_code == 204
        assert json.loads(
            (await h.call("GET", "sys/policies/acl/js")).json()["data"]["policy"]
        ) == json.loads(JSON_POLICY)

        r = await h.call("LIST", "sys/policies/acl")
        keys = r.json()["data"]["keys"]
        assert keys == ["default", "js", "mypolicy", "root"]
        assert (await h.call("GET", "sys/policies/acl?list=true")).json()["data"]["keys"] == keys

        assert (await h.call("DELETE", "sys/policies/acl/MYPOLICY")).status_code == 204
        assert (await h.call("GET", "sys/policies/acl/mypolicy")).status_code == 404
        assert (await h.call("DELETE", "sys/policies/acl/mypolicy")).status_code == 204  # missing is fine


async def test_base64_bad_and_missing_policy() -> None:
    async with running_core() as h:
        encoded = base64.b64encode(HCL.encode()).decode()
        assert (await h.call("PUT", "sys/policies/acl/b64", json={"policy": encoded})).status_code == 204
        assert (await h.call("GET", "sys/policies/acl/b64")).json()["data"]["policy"] == HCL
        r = await h.call(
            "PUT", "sys/policies/acl/bad", json={"policy": 'path "x" { capabilities = ["fly"] }'}
        )
        assert r.status_code == 400 and r.json()["errors"][0].startswith("failed to parse policy")
        r = await h.call("PUT", "sys/policies/acl/empty", json={})
        assert r.status_code == 400 and r.json()["errors"] == ["'policy' parameter not supplied or empty"]


async def test_builtin_policy_protections() -> None:
    async with running_core() as h:
        r = await h.call("PUT", "sys/policies/acl/root", json={"policy": HCL})
        assert r.status_code == 400 and r.json()["errors"] == ['cannot update "root" policy']
        r = await h.call("DELETE", "sys/policies/acl/Root")
        assert r.status_code == 400 and r.json()["errors"] == ['cannot delete "root" policy']
        r = await h.call("DELETE", "sys/policies/acl/default")
        assert r.status_code == 400 and r.json()["errors"] == ["cannot delete default policy"]
        r = await h.call("PUT", "sys/policies/acl/response-wrapping", json={"policy": HCL})
        assert r.status_code == 400
        assert (await h.call("PUT", "sys/policies/acl/default", json={"policy": HCL})).status_code == 204
        assert (await h.call("GET", "sys/policies/acl/default")).json()["data"]["policy"] == HCL
        keys = (await h.call("LIST", "sys/policies/acl")).json()["data"]["keys"]
        assert "response-wrapping" not in keys


async def test_legacy_sys_policy_shapes() -> None:
    async with running_core() as h:
        r = await h.call("PUT", "sys/policy/test", json={"policy": HCL})
        assert r.status_code == 204
        body = (await h.call("GET", "sys/policy")).json()
        assert body["data"]["policies"] == ["default", "test", "root"]
        assert body["keys"] == body["policies"] == body["data"]["keys"]
        assert (await h.call("LIST", "sys/policy")).json()["data"]["keys"] == body["keys"]
        r = await h.call("GET", "sys/policy/test")
        assert r.json()["data"] == {"name": "test", "rules": HCL}
        r = await h.call("POST", "sys/policy/old", json={"rules": HCL})
        assert r.status_code == 200 and r.json()["warnings"] == [
            "'rules' is deprecated, please use 'policy' instead"
        ]
        assert (await h.call("GET", "sys/policy/old")).json()["data"]["rules"] == HCL
        assert (await h.call("DELETE", "sys/policy/test")).status_code == 204
        assert (await h.call("GET", "sys/policy/test")).status_code == 404
        assert "test" not in (await h.call("GET", "sys/policy")).json()["keys"]


async def test_capabilities_root_limited_and_bad_token() -> None:
    async with running_core() as h:
        await h.call("PUT", "sys/policies/acl/p", json={"policy": HCL})
        limited = await token(h, "default", "p")

        body = (
            await h.call("POST", "sys/capabilities", json={"token": h.root_token, "path": "any/path"})
        ).json()
        assert body["capabilities"] == ["root"] and body["data"]["any/path"] == ["root"]

        r = await h.call("POST", "sys/capabilities", json={"token": limited.id, "paths": ["secret/foo"]})
        assert r.status_code == 200
        assert r.json()["secret/foo"] == ["create", "read"] and r.json()["capabilities"] == ["create", "read"]
        r = await h.call(
            "POST",
            "sys/capabilities",
            json={"token": limited.id, "paths": ["secret/admin", "nowhere", "secret/x"]},
        )
        data = r.json()["data"]
        assert data == {"secret/admin": ["deny"], "nowhere": ["deny"], "secret/x": ["create", "read"]}
        assert "capabilities" not in data

        r = await h.call("POST", "sys/capabilities", json={"token": "hvs.nope", "paths": ["a"]})
        assert r.status_code == 400 and r.json()["errors"] == ["invalid token"]
        r = await h.call("POST", "sys/capabilities", json={"token": limited.id})
        assert r.status_code == 400 and r.json()["errors"] == ["paths must be supplied"]


async def test_capabilities_self_and_accessor() -> None:
    async with running_core() as h:
        await h.call("PUT", "sys/policies/acl/p", json={"policy": HCL})
        limited = await token(h, "default", "p")
        # the default policy lets any token ask about itself
        r = await h.call(
            "POST", "sys/capabilities-self", json={"paths": "secret/a,cubbyhole/x"}, token=limited.id
        )
        assert r.status_code == 200, r.text
        assert r.json()["data"] == {
            "secret/a": ["create", "read"],
            "cubbyhole/x": ["create", "delete", "list", "read", "update"],
        }
        r = await h.call(
            "POST", "sys/capabilities-accessor", json={"accessor": limited.accessor, "path": "secret/a"}
        )
        assert r.json()["capabilities"] == ["create", "read"]
        r = await h.call("POST", "sys/capabilities-accessor", json={"accessor": "nope", "path": "secret/a"})
        assert r.status_code == 400 and r.json()["errors"] == ["invalid accessor"]
        # a limited token may not ask about other tokens, nor write policies
        r = await h.call(
            "POST", "sys/capabilities", json={"token": limited.id, "path": "x"}, token=limited.id
        )
        assert r.status_code == 403
        assert (
            await h.call("PUT", "sys/policies/acl/x", json={"policy": HCL}, token=limited.id)
        ).status_code == 403
