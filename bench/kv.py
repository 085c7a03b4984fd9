"""KV v2 read and write throughput against the bare HTTP stack, measured in one run.

Starts a real strongroom server (SQLite storage, plain HTTP on 127.0.0.1, one
worker per CPU), loads it with wrk from another process with 64 connections,
then does the same against a bare endpoint on the same HTTP stack with the
same worker count, and prints requests/s, p50/p99 and the ratios. The goal
(issue 2): KV v2 reads at >= 50% of the bare-stack ceiling.

    .venv/bin/python bench/kv.py [--seconds 10] [--workers N]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, free_port, lua_request, wait_http, wrk


def start_strongroom(workdir: Path, workers: int) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    config = {
        "storage": {"sqlite": {"path": str(workdir / "strongroom.db")}},
        "listener": {"tcp": {"address": f"127.0.0.1:{port}", "tls_disable": True}},
        "workers": workers,
        "log_level": "warning",
    }
    (workdir / "server.json").write_text(json.dumps(config))
    log = open(workdir / "server.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "strongroom", "server", f"-config={workdir / 'server.json'}"],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    addr = f"http://127.0.0.1:{port}"
    wait_http(addr + "/v1/sys/seal-status")
    return proc, addr


def prepare(addr: str) -> str:
    init = httpx.put(addr + "/v1/sys/init", json={"secret_shares": 1, "secret_threshold": 1}).json()
    httpx.put(addr + "/v1/sys/unseal", json={"key": init["keys"][0]}).raise_for_status()
    root = init["root_token"]
    h = {"X-Vault-Token": root}
    httpx.post(addr + "/v1/sys/mounts/kv", json={"type": "kv-v2"}, headers=h).raise_for_status()
    policy = 'path "kv/data/*" { capabilities = ["create", "read", "update"] }'
    httpx.put(addr + "/v1/sys/policies/acl/bench", json={"policy": policy}, headers=h).raise_for_status()
    token = httpx.post(addr + "/v1/auth/token/create", json={"policies": ["bench"]}, headers=h).json()
    httpx.post(
        addr + "/v1/kv/data/bench/read", json={"data": {"password": "x" * 32}}, headers=h
    ).raise_for_status()
    return str(token["auth"]["client_token"])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        proc, addr = start_strongroom(Path(tmp), args.workers)
        try:
            token = prepare(addr)  # a non-root token whose policy allows the path
            headers = {"X-Vault-Token": token}
            read = wrk(addr + "/v1/kv/data/bench/read", seconds=args.seconds, lua=lua_request("GET", headers))
            write_lua = lua_request(
                "POST",
                {**headers, "Content-Type": "application/json"},
                json.dumps({"data": {"password": "y" * 32}}),
            )
            write = wrk(addr + "/v1/kv/data/bench/write", seconds=args.seconds, lua=write_lua)
        finally:
            proc.terminate()
            proc.wait(timeout=30)

    port = free_port()
    bare = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "bare_server.py"), str(port), str(args.workers)]
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/")
        ceiling = wrk(f"http://127.0.0.1:{port}/v1/kv/data/bench/read", seconds=args.seconds)
    finally:
        bare.terminate()
        bare.wait(timeout=30)

    print(f"strongroom KV v2, SQLite, {args.workers} workers, 64 connections, {args.seconds} s each (wrk)")
    print(read.row("KV v2 read (non-root token)"))
    print(write.row("KV v2 write (non-root token)"))
    print(ceiling.row("bare endpoint, same HTTP stack"))
    print(f"read / bare ceiling:  {read.requests_per_s / ceiling.requests_per_s:6.1%}   (goal >= 50%)")
    print(f"write / bare ceiling: {write.requests_per_s / ceiling.requests_per_s:6.1%}")
    for name, result in (("read", read), ("write", write)):
        if result.non_2xx or result.errors:
            print(f"WARNING: {name}: {result.non_2xx} non-2xx responses, {result.errors} socket errors")


if __name__ == "__main__":
    main()
