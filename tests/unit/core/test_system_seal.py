"""Seal lifecycle over HTTP: init, unseal, seal, health, leader, generate-root, rekey, rotate."""

from __future__ import annotations

import base64
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from strongroom.core.assemble import build_core
from strongroom.core.core import Core
from strongroom.http.app import App
from strongroom.physical.inmem import InmemPhysical
from strongroom.testing import Harness, running_core

OTP = "BMjzW3wAsEzINXCM05Wbas3u9zSl"  # the OTP hvac's suite uses


@dataclass
class Fresh:
    core: Core
    client: httpx.AsyncClient

    async def call(
        self, method: str, path: str, json: Any = None, token: str = "", **kw: Any
    ) -> httpx.Response:
        headers = {"X-Vault-Token": token} if token else {}
        return await self.client.request(method, "/v1/" + path, json=json, headers=headers, **kw)


@asynccontextmanager
async def fresh_core() -> AsyncIterator[Fresh]:
    """An uninitialised, sealed core with empty storage behind the real ASGI app."""
    core = build_core(InmemPhysical())
    transport = httpx.ASGITransport(app=App(core.handle_request), client=("127.0.0.1", 23456))
    async with httpx.AsyncClient(transport=transport, base_url="http://strongroom.test") as client:
        try:
            yield Fresh(core, client)
        finally:
            await core.seal()


async def unseal_with(call: Any, keys: list[str]) -> dict[str, Any]:
    body: dict[str, Any] = {}
    for key in keys:
        resp = await call("PUT", "sys/unseal", {"key": key})
        assert resp.status_code == 200, resp.text
        body = resp.json()
    return body


def decode_token(encoded: str, otp: str) -> str:
    raw = base64.b64decode(encoded + "=" * (-len(encoded) % 4))
    return bytes(a ^ b for a, b in zip(raw, otp.encode(), strict=True)).decode()


# --- init, seal-status, unseal -------------------------------------------------------------------


async def test_uninitialised_core_answers_status_endpoints() -> None:
    async with fresh_core() as f:
        r = await f.call("GET", "sys/init")
        assert (r.status_code, r.json()) == (200, {"initialized": False})
        r = await f.call("GET", "sys/seal-status")
        body = r.json()
        assert body["initialized"] is False and body["sealed"] is True
        assert (body["t"], body["n"], body["progress"], body["nonce"]) == (0, 0, 0, "")
        assert body["type"] == "shamir" and body["version"] == "1.16.3" and body["storage_type"] == "inmem"
        assert "cluster_name" not in body and "cluster_id" not in body
        r = await f.call("GET", "sys/health")
        assert r.status_code == 501 and r.json()["initialized"] is False
        r = await f.call("GET", "sys/health", params={"uninitcode": "299"})
        assert r.status_code == 299
        r = await f.call("HEAD", "sys/health")
        assert r.status_code == 501 and r.content == b""
        r = await f.call("GET", "sys/generate-root/attempt")
        assert (r.status_code, r.json()) == (400, {"errors": ["server is not yet initialized"]})
        r = await f.call("GET", "sys/rekey/init")
        assert (r.status_code, r.json()) == (400, {"errors": ["server is not yet initialized"]})
        r = await f.call("PUT", "sys/unseal", {"key": "00" * 33})
        assert (r.status_code, r.json()) == (400, {"errors": ["Vault is not initialized"]})
        r = await f.call("GET", "sys/leader")
        assert r.status_code == 200 and r.json()["ha_enabled"] is False


async def test_init_rejects_unsupported_and_invalid_options() -> None:
    async with fresh_core() as f:
        cases: list[tuple[dict[str, Any], str]] = [
            ({"secret_shares": 5, "secret_threshold": 3, "pgp_keys": ["a", "b", "c", "d", "e"]}, "pgp_keys"),
            ({"secret_shares": 1, "secret_threshold": 1, "root_token_pgp_key": "abc"}, "root_token_pgp_key"),
            ({"secret_shares": 1, "secret_threshold": 1, "recovery_shares": 3}, "auto unseal"),
            ({"secret_shares": 3, "secret_threshold": 5}, "threshold"),
            ({"secret_shares": 0, "secret_threshold": 0}, "shares"),
        ]
        for body, fragment in cases:
            r = await f.call("PUT", "sys/init", body)
            assert r.status_code == 400, (body, r.text)
            assert fragment in r.json()["errors"][0]
        assert (await f.call("GET", "sys/init")).json() == {"initialized": False}


async def test_init_then_unseal_share_by_share() -> None:
    async with fresh_core() as f:
        r = await f.call("PUT", "sys/init", {"secret_shares": 5, "secret_threshold": 3})
        assert r.status_code == 200, r.text
        init = r.json()
        assert set(init) == {"keys", "keys_base64", "root_token"}
        keys, keys_b64, root = init["keys"], init["keys_base64"], init["root_token"]
        assert len(keys) == len(keys_b64) == 5 and len(set(keys)) == 5
        assert all(bytes.fromhex(k) == base64.b64decode(b) for k, b in zip(keys, keys_b64, strict=True))
        assert root.startswith("hvs.") and len(root) == 28

        again = await f.call("PUT", "sys/init", {"secret_shares": 1, "secret_threshold": 1})
        assert (again.status_code, again.json()) == (400, {"errors": ["Vault is already initialized"]})
        assert (await f.call("GET", "sys/init")).json() == {"initialized": True}

        status = (await f.call("GET", "sys/seal-status")).json()
        assert status["sealed"] is True and (status["t"], status["n"], status["progress"]) == (3, 5, 0)
        r = await f.call("GET", "sys/mounts", token=root)
        assert (r.status_code, r.json()) == (503, {"errors": ["Vault is sealed"]})
        assert (await f.call("GET", "sys/health")).status_code == 503
        assert (await f.call("GET", "sys/health", params={"sealedcode": "299"})).status_code == 299

        first = (await f.call("PUT", "sys/unseal", {"key": keys[0]})).json()
        assert first["sealed"] is True and first["progress"] == 1 and first["nonce"]
        # Vault ignores a share it already holds: no error, no progress.
        dup = (await f.call("PUT", "sys/unseal", {"key": keys[0]})).json()
        assert dup["progress"] == 1 and dup["nonce"] == first["nonce"]
        reset = (await f.call("PUT", "sys/unseal", {"reset": True, "key": keys[1]})).json()
        assert reset["sealed"] is True and reset["progress"] == 0 and reset["nonce"] == ""

        second = await unseal_with(f.call, keys[1:3])
        assert second["sealed"] is True and second["progress"] == 2
        done = (await f.call("PUT", "sys/unseal", {"key": keys_b64[4]})).json()  # base64 works too
        assert done["sealed"] is False and done["progress"] == 0 and done["nonce"] == ""
        assert done["cluster_name"] and done["cluster_id"]
        assert (await f.call("GET", "sys/mounts", token=root)).status_code == 200

        # already unsealed: another share is a no-op, a reset is refused
        assert (await f.call("PUT", "sys/unseal", {"key": keys[0]})).json()["sealed"] is False
        r = await f.call("PUT", "sys/unseal", {"reset": True})
        assert (r.status_code, r.json()) == (400, {"errors": ["vault is unsealed"]})


async def test_unseal_rejects_bad_keys_and_wrong_quorum() -> None:
    async with running_core(shares=5, threshold=3) as h:
        assert (await h.call("PUT", "sys/seal")).status_code == 204
        bad = {
            "": "'key' must be specified in request body as JSON, or 'reset' set to true",
            "not a key!": "'key' must be a valid hex or base64 string",
            "abcd": "key is shorter than minimum 16 bytes",
            "00" * 40: "key is longer than maximum 33 bytes",
        }
        for key, message in bad.items():
            r = await h.call("PUT", "sys/unseal", {"key": key}, token="")
            assert (r.status_code, r.json()) == (400, {"errors": [message]}), key
        r = await h.call("PUT", "sys/unseal", {"key": h.keys[0], "migrate": True}, token="")
        assert r.status_code == 400

        await unseal_with(h.call, h.keys[:2])
        wrong = (bytes.fromhex(h.keys[2])[:-1] + bytes([bytes.fromhex(h.keys[2])[-1] ^ 0x55])).hex()
        r = await h.call("PUT", "sys/unseal", {"key": wrong}, token="")
        assert r.status_code == 400
        assert h.keys[2] not in r.text and wrong not in r.text
        status = (await h.call("GET", "sys/seal-status")).json()
        assert status["sealed"] is True and status["progress"] == 0
        assert (await unseal_with(h.call, h.keys[2:5]))["sealed"] is False


async def test_unsupported_method_is_405() -> None:
    async with running_core() as h:
        for method, path in [("DELETE", "sys/init"), ("PUT", "sys/seal-status"), ("GET", "sys/unseal")]:
            r = await h.call(method, path)
            assert (r.status_code, r.json()) == (405, {"errors": []}), path


# --- health, leader, seal, step-down ------------------------------------------------------------


async def test_health_codes_and_body() -> None:
    async with running_core() as h:
        r = await h.call("GET", "sys/health", token="")
        assert r.status_code == 200 and r.headers["content-type"] == "application/json"
        body = r.json()
        assert body["initialized"] is True and body["sealed"] is False and body["standby"] is False
        assert body["replication_performance_mode"] == body["replication_dr_mode"] == "disabled"
        assert body["cluster_name"] and body["cluster_id"] and body["enterprise"] is False
        assert isinstance(body["server_time_utc"], int) and body["version"] == "1.16.3"
        assert (await h.call("GET", "sys/health", params={"activecode": "299"})).status_code == 299
        assert (await h.call("GET", "sys/health", params={"standbyok": "true"})).status_code == 200
        assert (
            await h.call("GET", "sys/health", params={"standbycode": "200", "perfstandbyok": "1"})
        ).status_code == 200
        head = await h.call("HEAD", "sys/health", params={"activecode": "204"})
        assert head.status_code == 204 and head.content == b""
        head = await h.call("HEAD", "sys/health")
        assert head.status_code == 200 and head.content == b""
        for params in (
            {"activecode": "abc"},
            {"sealedcode": "2.5"},
            {"uninitcode": ""},
            {"standbyok": "maybe"},
        ):
            r = await h.call("GET", "sys/health", params=params)
            assert (r.status_code, r.json()) == (400, {"errors": []}), params
        await h.core.seal()
        r = await h.call("GET", "sys/health")
        assert r.status_code == 503 and r.json()["sealed"] is True and "cluster_id" not in r.json()
        assert (await h.call("HEAD", "sys/health")).status_code == 503


async def test_leader_is_not_ha() -> None:
    async with running_core() as h:
        expected = {
            "ha_enabled": False,
            "is_self": False,
            "active_time": "0001-01-01T00:00:00Z",
            "leader_address": "",
            "leader_cluster_address": "",
            "performance_standby": False,
            "performance_standby_last_remote_wal": 0,
        }
        assert (await h.call("GET", "sys/leader", token="")).json() == expected
        await h.core.seal()
        r = await h.call("GET", "sys/leader", token="")  # Vault checks HA before the seal
        assert (r.status_code, r.json()) == (200, expected)


async def test_seal_needs_a_sudo_token() -> None:
    async with running_core() as h:
        r = await h.call("PUT", "sys/seal", token="")
        assert r.status_code == 403 and not h.core.sealed
        r = await h.call("PUT", "sys/seal", token="hvs.not-a-real-token-at-all")
        assert r.status_code == 403 and not h.core.sealed
        assert (await h.call("PUT", "sys/step-down", token="")).status_code == 403
        assert (await h.call("PUT", "sys/step-down")).status_code == 204
        r = await h.call("PUT", "sys/seal")
        assert r.status_code == 204 and r.content == b"" and h.core.sealed
        # sealing a sealed node is a no-op, as in Vault
        assert (await h.call("PUT", "sys/seal", token="")).status_code == 204
        assert (await h.call("GET", "sys/seal-status")).json()["sealed"] is True
        await unseal_with(h.call, h.keys)
        assert not h.core.sealed


# --- generate-root -------------------------------------------------------------------------------


async def test_generate_root_with_otp_end_to_end() -> None:
    async with running_core(shares=5, threshold=3) as h:
        status = (await h.call("GET", "sys/generate-root/attempt", token="")).json()
        assert status["started"] is False and status["required"] == 3 and status["otp_length"] == 28
        start = await h.call("PUT", "sys/generate-root/attempt", {"otp": OTP}, token="")
        assert start.status_code == 200, start.text
        started = start.json()
        assert (
            started["started"] is True
            and started["nonce"]
            and started["otp"] == ""
            and started["progress"] == 0
        )
        nonce = started["nonce"]
        assert (await h.call("GET", "sys/generate-root/attempt", token="")).json()["nonce"] == nonce

        again = await h.call("PUT", "sys/generate-root/attempt", {"otp": OTP}, token="")
        assert again.json() == {"errors": ["root generation already in progress"]}
        r = await h.call("PUT", "sys/generate-root/update", {"key": h.keys[0], "nonce": "nope"}, token="")
        assert r.status_code == 400 and "incorrect nonce supplied" in r.json()["errors"][0]
        r = await h.call("PUT", "sys/generate-root/update", {"nonce": nonce}, token="")
        assert r.json() == {"errors": ["'key' must be specified in request body as JSON"]}

        first = (
            await h.call("PUT", "sys/generate-root/update", {"key": h.keys[0], "nonce": nonce}, token="")
        ).json()
        assert first["progress"] == 1 and first["complete"] is False and first["encoded_token"] == ""
        dup = await h.call("PUT", "sys/generate-root/update", {"key": h.keys[0], "nonce": nonce}, token="")
        assert (dup.status_code, dup.json()) == (
            400,
            {"errors": ["given key has already been provided during this generation operation"]},
        )
        await h.call("PUT", "sys/generate-root/update", {"key": h.keys[1], "nonce": nonce}, token="")
        last = (
            await h.call("PUT", "sys/generate-root/update", {"key": h.keys[4], "nonce": nonce}, token="")
        ).json()
        assert last["complete"] is True and last["progress"] == 3 and last["nonce"] == nonce
        assert last["encoded_token"] == last["encoded_root_token"] != ""
        assert "=" not in last["encoded_token"]  # Vault: base64.RawStdEncoding

        token = decode_token(last["encoded_root_token"], OTP)
        assert token.startswith("hvs.") and len(token) == 28 and token != h.root_token
        entry = await h.core.tokens.lookup(token)
        assert entry is not None and entry.policies == ["root"] and entry.is_root
        assert (await h.call("GET", "sys/key-status", token=token)).status_code == 200
        assert (await h.call("GET", "sys/generate-root/attempt", token="")).json()["started"] is False


async def test_generate_root_generated_otp_cancel_and_errors() -> None:
    async with running_core(shares=3, threshold=2) as h:
        for body, message in [
            ({"otp": "short"}, "OTP string is wrong length"),
            ({"pgp_key": "mQENBF..."}, "pgp_key"),
        ]:
            r = await h.call("PUT", "sys/generate-root/attempt", body, token="")
            assert r.status_code == 400 and message in r.json()["errors"][0]
        r = await h.call("PUT", "sys/generate-root/update", {"key": h.keys[0], "nonce": "x"}, token="")
        assert r.json() == {"errors": ["no root generation in progress"]}

        started = (await h.call("PUT", "sys/generate-root/attempt", token="")).json()
        otp = started["otp"]
        assert len(otp) == 28 and otp.isalnum() and started["otp_length"] == 28
        assert (await h.call("GET", "sys/generate-root/attempt")).json()["otp"] == ""  # never shown again
        cancel = await h.call("DELETE", "sys/generate-root/attempt", token="")
        assert cancel.status_code == 204
        assert (await h.call("GET", "sys/generate-root/attempt")).json()["started"] is False

        # shares of another server fail verification; the attempt stays, its progress resets
        async with running_core(shares=3, threshold=2) as other:
            nonce = (await h.call("PUT", "sys/generate-root/attempt", {"otp": OTP})).json()["nonce"]
            for key in other.keys[:1]:
                await h.call("PUT", "sys/generate-root/update", {"key": key, "nonce": nonce})
            r = await h.call("PUT", "sys/generate-root/update", {"key": other.keys[1], "nonce": nonce})
            assert r.status_code == 400 and r.json()["errors"][0].startswith("root generation aborted")
            assert other.keys[1] not in r.text
        status = (await h.call("GET", "sys/generate-root/attempt")).json()
        assert status["started"] is True and status["progress"] == 0
        token_count = len(await h.core.tokens.accessors())
        for key in h.keys[:2]:
            last = (await h.call("PUT", "sys/generate-root/update", {"key": key, "nonce": nonce})).json()
        assert last["complete"] is True
        assert len(await h.core.tokens.accessors()) == token_count + 1

        await h.core.seal()
        for method in ("GET", "PUT", "DELETE"):
            r = await h.call(method, "sys/generate-root/attempt", {"otp": OTP} if method == "PUT" else None)
            assert (r.status_code, r.json()) == (503, {"errors": ["Vault is sealed"]}), method


# --- rekey ---------------------------------------------------------------------------------------


async def rekey(h: Harness, old_keys: list[str], **init: Any) -> dict[str, Any]:
    start = await h.call("PUT", "sys/rekey/init", init, token="")
    assert start.status_code == 200, start.text
    nonce = start.json()["nonce"]
    result: dict[str, Any] = {}
    for key in old_keys:  # like hvac's rekey_multi: stop once complete
        result = (await h.call("PUT", "sys/rekey/update", {"key": key, "nonce": nonce}, token="")).json()
        if result.get("complete"):
            break
    return result


async def test_rekey_replaces_shares_and_root_key() -> None:
    async with running_core(shares=5, threshold=3) as h:
        await h.core.barrier.put("test/secret", b"kept across rekey")
        state = h.core.barrier._shared.state
        assert state is not None
        old_root = bytes(state.root_key)
        status = (await h.call("GET", "sys/rekey/init", token="")).json()
        assert status == {
            "nonce": "",
            "started": False,
            "t": 0,
            "n": 0,
            "progress": 0,
            "required": 3,
            "pgp_fingerprints": None,
            "backup": False,
            "verification_required": False,
        }
        start = (await h.call("PUT", "sys/rekey/init", {"secret_shares": 3, "secret_threshold": 2})).json()
        assert start["started"] is True and (start["t"], start["n"], start["required"]) == (2, 3, 3)
        assert (
            await h.call("PUT", "sys/rekey/init", {"secret_shares": 3, "secret_threshold": 2})
        ).json() == {"errors": ["rekey already in progress"]}
        assert (await h.call("DELETE", "sys/rekey/init", token="")).status_code == 204
        assert (await h.call("GET", "sys/rekey/init")).json()["started"] is False

        nonce = (await h.call("PUT", "sys/rekey/init", {"secret_shares": 3, "secret_threshold": 2})).json()[
            "nonce"
        ]
        r = await h.call("PUT", "sys/rekey/update", {"key": h.keys[0], "nonce": "wrong"})
        assert r.status_code == 400 and "incorrect nonce supplied" in r.json()["errors"][0]
        step = (await h.call("PUT", "sys/rekey/update", {"key": h.keys[0], "nonce": nonce})).json()
        assert step["started"] is True and step["progress"] == 1 and "complete" not in step
        dup = await h.call("PUT", "sys/rekey/update", {"key": h.keys[0], "nonce": nonce})
        assert dup.status_code == 400 and "already been provided" in dup.json()["errors"][0]
        await h.call("PUT", "sys/rekey/update", {"key": h.keys[1], "nonce": nonce})
        done = (await h.call("PUT", "sys/rekey/update", {"key": h.keys[2], "nonce": nonce})).json()
        assert done["complete"] is True and done["nonce"] == nonce and done["verification_required"] is False
        assert len(done["keys"]) == len(done["keys_base64"]) == 3
        assert "verification_nonce" not in done
        new_keys: list[str] = done["keys"]
        assert not set(new_keys) & set(h.keys)

        state = h.core.barrier._shared.state
        assert state is not None and bytes(state.root_key) != old_root
        status = (await h.call("GET", "sys/seal-status")).json()
        assert (status["t"], status["n"]) == (2, 3)
        assert (await h.call("GET", "sys/rekey/init")).json()["started"] is False

        await h.core.seal()
        r = await h.call("PUT", "sys/unseal", {"key": h.keys[0]})
        assert r.status_code == 200
        r = await h.call("PUT", "sys/unseal", {"key": h.keys[1]})
        assert r.status_code == 400 and h.core.sealed  # old shares no longer open the barrier
        assert (await unseal_with(h.call, new_keys[1:]))["sealed"] is False
        assert await h.core.barrier.get("test/secret") == b"kept across rekey"
        assert (await h.call("GET", "sys/mounts")).status_code == 200


async def test_rekey_with_verification() -> None:
    async with running_core(shares=3, threshold=2) as h:
        done = await rekey(h, h.keys, secret_shares=5, secret_threshold=3, require_verification=True)
        assert done["complete"] is True and done["verification_required"] is True
        vnonce = done["verification_nonce"]
        new_keys: list[str] = done["keys"]
        status = (await h.call("GET", "sys/rekey/init")).json()
        assert status["verification_required"] is True and status["verification_nonce"] == vnonce
        r = await h.call("PUT", "sys/rekey/update", {"key": h.keys[0], "nonce": status["nonce"]})
        assert r.status_code == 400 and "verification must be performed" in r.json()["errors"][0]
        # not active yet: the seal config is unchanged
        assert (await h.call("GET", "sys/seal-status")).json()["t"] == 2

        verify = (await h.call("GET", "sys/rekey/verify", token="")).json()
        assert verify == {"nonce": vnonce, "started": True, "t": 3, "n": 5, "progress": 0}
        r = await h.call("PUT", "sys/rekey/verify", {"key": new_keys[0], "nonce": "wrong"})
        assert r.status_code == 400 and "incorrect nonce supplied" in r.json()["errors"][0]

        # three wrong shares (of the right length): failure rotates the nonce
        for i in range(3):
            junk = os.urandom(32).hex() + f"{i + 1:02x}"
            r = await h.call("PUT", "sys/rekey/verify", {"key": junk, "nonce": vnonce})
        assert (r.status_code, r.json()) == (
            400,
            {"errors": ["rekey verification failed; incorrect key shares supplied"]},
        )
        restarted = (await h.call("GET", "sys/rekey/verify")).json()
        assert restarted["nonce"] != vnonce and restarted["progress"] == 0
        vnonce = restarted["nonce"]

        step = (await h.call("PUT", "sys/rekey/verify", {"key": new_keys[4], "nonce": vnonce})).json()
        assert step["progress"] == 1
        dup = await h.call("PUT", "sys/rekey/verify", {"key": new_keys[4], "nonce": vnonce})
        assert dup.json() == {"errors": ["given key has already been provided during this verify operation"]}
        restart = (await h.call("DELETE", "sys/rekey/verify")).json()
        assert restart["progress"] == 0 and restart["nonce"] != vnonce
        vnonce = restart["nonce"]
        result: dict[str, Any] = {}
        for key in new_keys[1:4]:
            result = (await h.call("PUT", "sys/rekey/verify", {"key": key, "nonce": vnonce})).json()
        assert result == {"nonce": vnonce, "complete": True}
        assert (await h.call("GET", "sys/seal-status")).json()["t"] == 3
        r = await h.call("GET", "sys/rekey/verify")
        assert (r.status_code, r.json()) == (400, {"errors": ["no rekey configuration found"]})

        await h.core.seal()
        assert (await unseal_with(h.call, new_keys[2:5]))["sealed"] is False


async def test_rekey_cancelled_during_verification_keeps_old_keys() -> None:
    async with running_core(shares=3, threshold=2) as h:
        done = await rekey(h, h.keys, secret_shares=3, secret_threshold=2, require_verification=True)
        assert done["verification_required"] is True
        assert (await h.call("DELETE", "sys/rekey/init")).status_code == 204
        await h.core.seal()
        assert (await unseal_with(h.call, h.keys[:2]))["sealed"] is False


async def test_rekey_init_validation_backup_and_sealed() -> None:
    async with running_core(shares=3, threshold=2) as h:
        cases = [
            ({"secret_shares": 3, "secret_threshold": 4}, "provided threshold greater than the total shares"),
            (
                {"secret_shares": 3, "secret_threshold": 2, "backup": True},
                "cannot request a backup of the new keys without providing PGP keys for encryption",
            ),
            ({"secret_shares": 3, "secret_threshold": 1}, "invalid rekey seal configuration: "),
        ]
        for body, message in cases:
            r = await h.call("PUT", "sys/rekey/init", body, token="")
            assert r.status_code == 400 and r.json()["errors"][0].startswith(message), r.text
        r = await h.call(
            "PUT", "sys/rekey/init", {"secret_shares": 2, "secret_threshold": 2, "pgp_keys": ["a", "b"]}
        )
        assert r.status_code == 400 and "pgp_keys" in r.json()["errors"][0]
        assert (await h.call("GET", "sys/rekey/init")).json()["started"] is False
        r = await h.call("PUT", "sys/rekey/update", {"key": h.keys[0], "nonce": "x"})
        assert r.json() == {"errors": ["no barrier rekey in progress"]}
        r = await h.call("PUT", "sys/rekey/verify", {"key": h.keys[0], "nonce": "x"})
        assert r.json() == {"errors": ["no rekey in progress"]}
        r = await h.call("GET", "sys/rekey-recovery-key/init")
        assert (r.status_code, r.json()) == (400, {"errors": ["recovery rekeying not supported"]})

        r = await h.call("GET", "sys/rekey/backup")
        assert (r.status_code, r.json()) == (400, {"errors": ["no backed-up keys found"]})
        assert (await h.call("GET", "sys/rekey/recovery-key-backup")).status_code == 400
        assert (await h.call("DELETE", "sys/rekey/backup")).status_code == 204
        assert (await h.call("GET", "sys/rekey/backup", token="")).status_code == 403

        await h.call("PUT", "sys/rekey/init", {"secret_shares": 3, "secret_threshold": 2})
        await h.core.seal()
        for method, path in [
            ("GET", "sys/rekey/init"),
            ("PUT", "sys/rekey/update"),
            ("GET", "sys/rekey/verify"),
        ]:
            r = await h.call(method, path, {"key": h.keys[0], "nonce": "x"} if method == "PUT" else None)
            assert (r.status_code, r.json()) == (503, {"errors": ["Vault is sealed"]}), path
        await unseal_with(h.call, h.keys[:2])
        # progress does not survive a seal
        assert (await h.call("GET", "sys/rekey/init")).json()["started"] is False


# --- rotate, key-status, rotate/config ----------------------------------------------------------


async def test_rotate_increments_term_and_old_data_stays_readable() -> None:
    async with running_core() as h:
        await h.core.barrier.put("test/before", b"written under term 1")
        r = await h.call("GET", "sys/key-status")
        assert r.status_code == 200
        body = r.json()
        assert body["data"]["term"] == body["term"] == 1 and body["install_time"].endswith("Z")
        assert (await h.call("PUT", "sys/rotate", token="")).status_code == 403
        r = await h.call("PUT", "sys/rotate")
        assert r.status_code == 204 and r.content == b""
        assert (await h.call("GET", "sys/key-status")).json()["term"] == 2
        await h.core.barrier.put("test/after", b"written under term 2")
        assert await h.core.barrier.get("test/before") == b"written under term 1"
        await h.core.seal()
        await unseal_with(h.call, h.keys)
        assert await h.core.barrier.get("test/before") == b"written under term 1"
        assert await h.core.barrier.get("test/after") == b"written under term 2"
        assert (await h.call("GET", "sys/key-status")).json()["term"] == 2


async def test_rotate_config() -> None:
    async with running_core() as h:
        r = await h.call("GET", "sys/rotate/config")
        assert r.json()["data"] == {"max_operations": 3865470566, "enabled": True, "interval": 0}
        assert (await h.call("POST", "sys/rotate/config", {"interval": "1h"})).json() == {
            "errors": ["interval must be greater or equal to 24h0m0s"]
        }
        assert (await h.call("POST", "sys/rotate/config", {"max_operations": 5})).json() == {
            "errors": ["max_operations must be in the range [1000000,3865470566]"]
        }
        r = await h.call(
            "POST", "sys/rotate/config", {"interval": "48h", "max_operations": 2000000, "enabled": False}
        )
        assert r.status_code == 204
        data = (await h.call("GET", "sys/rotate/config")).json()["data"]
        assert data == {"max_operations": 2000000, "enabled": False, "interval": "48h0m0s"}


@pytest.mark.parametrize("threshold", [1, 2])
async def test_generate_root_and_rekey_with_small_quorums(threshold: int) -> None:
    async with running_core(shares=threshold, threshold=threshold) as h:
        nonce = (await h.call("PUT", "sys/generate-root/attempt", {"otp": OTP})).json()["nonce"]
        for key in h.keys:
            last = (await h.call("PUT", "sys/generate-root/update", {"key": key, "nonce": nonce})).json()
        assert last["complete"] is True
        assert (await h.core.tokens.lookup(decode_token(last["encoded_token"], OTP))) is not None
        done = await rekey(h, h.keys, secret_shares=1, secret_threshold=1)
        assert done["complete"] is True and len(done["keys"]) == 1
        await h.core.seal()
        assert (await unseal_with(h.call, done["keys"]))["sealed"] is False


async def test_failed_rekey_write_restores_the_old_root_key(monkeypatch: pytest.MonkeyPatch) -> None:
    from strongroom.core import seal as seal_module

    async def broken(self: Any, unseal_key: bytes, root_key: bytes) -> None:
        raise RuntimeError("disk full")

    async with running_core(shares=3, threshold=2) as h:
        await h.core.barrier.put("test/secret", b"still here")
        monkeypatch.setattr(seal_module.ShamirSeal, "store_root_key", broken)
        done = await rekey(h, h.keys[:2], secret_shares=3, secret_threshold=2)
        assert done == {"errors": ["internal error"]}
        monkeypatch.undo()
        await h.core.seal()
        assert (await unseal_with(h.call, h.keys[:2]))["sealed"] is False
        assert await h.core.barrier.get("test/secret") == b"still here"
