"""Acknowledged writes survive SIGKILL: 32 concurrent KV writers on SQLite, server killed mid-stream."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest

from tests.integration.server_proc import ServerProcess

pytestmark = pytest.mark.slow

CLIENTS = 32
MAX_WRITES_PER_CLIENT = 400
WRITE_PHASE_SECONDS = 2.0


async def _writer(client: httpx.AsyncClient, n: int, acked: dict[str, str], stop: asyncio.Event) -> None:
    for i in range(MAX_WRITES_PER_CLIENT):
        if stop.is_set():
            return
        key, value = f"c{n}/k{i}", f"value-{n}-{i}-" + "x" * (i % 50)
        try:
            r = await client.post(f"/v1/kv/data/{key}", json={"data": {"v": value}})
        except httpx.HTTPError:
            return  # the server died under us: this write was never acknowledged
        if 200 <= r.status_code < 300:
            acked[key] = value


async def _load(addr: str, token: str, server: ServerProcess) -> dict[str, str]:
    acked: dict[str, str] = {}
    stop = asyncio.Event()
    limits = httpx.Limits(max_connections=CLIENTS)
    async with httpx.AsyncClient(
        base_url=addr, headers={"X-Vault-Token": token}, limits=limits, timeout=10.0
    ) as client:
        tasks = [asyncio.create_task(_writer(client, n, acked, stop)) for n in range(CLIENTS)]
        await asyncio.sleep(WRITE_PHASE_SECONDS)
        server.kill()  # SIGKILL while writes are in flight
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=30)
    return acked


def test_acknowledged_writes_survive_sigkill(tmp_path: Path) -> None:
    storage = {"sqlite": {"path": str(tmp_path / "data" / "strongroom.db")}}
    server = ServerProcess(tmp_path, storage)
    server.start()
    try:
        keys, root = server.init_and_unseal()
        r = httpx.post(
            server.addr + "/v1/sys/mounts/kv",
            json={"type": "kv", "options": {"version": "2"}},
            headers={"X-Vault-Token": root},
        )
        assert r.status_code == 204, r.text
        started = time.monotonic()
        acked = asyncio.run(_load(server.addr, root, server))
        assert time.monotonic() - started < 60
        assert len(acked) > CLIENTS, "the load phase should have acknowledged some writes"

        server.start()
        server.unseal(keys[:2])
        lost = []
        with httpx.Client(base_url=server.addr, headers={"X-Vault-Token": root}, timeout=10.0) as client:
            for key, value in acked.items():
                r = client.get(f"/v1/kv/data/{key}")
                if r.status_code != 200 or r.json()["data"]["data"] != {"v": value}:
                    lost.append((key, r.status_code))
        assert not lost, f"{len(lost)} of {len(acked)} acknowledged writes lost, e.g. {lost[:5]}"
        print(f"{len(acked)} acknowledged writes all read back after SIGKILL")
    finally:
        server.stop()
