"""Start a real strongroom server process on 127.0.0.1 for a test, and stop it."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """``strongroom server -config=...`` with plain HTTP on a free loopback port."""

    def __init__(self, workdir: Path, storage: dict[str, Any], extra: dict[str, Any] | None = None) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.addr = f"http://127.0.0.1:{self.port}"
        self.config = workdir / "server.json"
        config = {
            "storage": storage,
            "listener": {"tcp": {"address": f"127.0.0.1:{self.port}", "tls_disable": True}},
            "disable_mlock": True,
        }
        config.update(extra or {})
        self.config.write_text(json.dumps(config))
        self.log = workdir / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 20.0) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "strongroom", "server", f"-config={self.config}"],
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("server exited early:\n" + self.log.read_text()[-3000:])
            try:
                httpx.get(self.addr + "/v1/sys/seal-status", timeout=1.0)
                return
            except httpx.HTTPError:
                time.sleep(0.05)
        raise RuntimeError("server did not start:\n" + self.log.read_text()[-3000:])

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()

    def init_and_unseal(self, shares: int = 3, threshold: int = 2) -> tuple[list[str], str]:
        r = httpx.put(
            self.addr + "/v1/sys/init", json={"secret_shares": shares, "secret_threshold": threshold}
        )
        r.raise_for_status()
        body = r.json()
        self.unseal(body["keys"][:threshold])
        return body["keys"], body["root_token"]

    def unseal(self, keys: list[str]) -> None:
        for key in keys:
            r = httpx.put(self.addr + "/v1/sys/unseal", json={"key": key})
            r.raise_for_status()
        assert r.json()["sealed"] is False
