"""In-process harness for tests: a Core over in-memory storage behind the real ASGI app.

``async with running_core() as h`` gives an initialised, unsealed core, its
root token and unseal keys, and an httpx client that speaks to the app without
sockets (``h.client.request("LIST", "/v1/...")`` works).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from strongroom.core.assemble import build_core
from strongroom.core.core import Core
from strongroom.http.app import App
from strongroom.logical.storage import Storage
from strongroom.physical.inmem import InmemPhysical


@dataclass
class Harness:
    core: Core
    app: App
    client: httpx.AsyncClient
    root_token: str
    keys: list[str]
    physical: Storage

    def headers(self, token: str | None = None) -> dict[str, str]:
        return {"X-Vault-Token": self.root_token if token is None else token}

    async def raw(
        self,
        method: str,
        raw_path: bytes,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        client_cert_chain: list[str] | None = None,
    ) -> tuple[int, bytes]:
        """Call the app with a crafted ASGI request: a path exactly as given (httpx would
        normalise ``..``) and, optionally, the client certificate chain a TLS listener hands
        over. Returns (status, body)."""
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: Any) -> None:
            sent.append(dict(message))

        scope: dict[str, Any] = {
            "type": "http",
            "scheme": "https" if client_cert_chain is not None else "http",
            "method": method,
            "path": raw_path.decode("latin-1"),
            "raw_path": raw_path,
            "query_string": b"",
            "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
            "client": ("127.0.0.1", 40000),
        }
        if client_cert_chain is not None:
            chain = list(client_cert_chain)
            scope["extensions"] = {
                "tls": {"client_cert_chain": chain, "client_cert_verified_possession": bool(chain)}
            }
        await self.app(scope, receive, send)
        return int(sent[0]["status"]), bytes(sent[1].get("body", b""))

    async def call(
        self, method: str, path: str, json: Any = None, token: str | None = None, **kw: Any
    ) -> httpx.Response:
        headers = dict(kw.pop("headers", {}) or {})
        headers.update(self.headers(token))
        return await self.client.request(method, "/v1/" + path.lstrip("/"), json=json, headers=headers, **kw)


@asynccontextmanager
async def running_core(
    physical: Storage | None = None, *, shares: int = 1, threshold: int = 1, **core_options: Any
) -> AsyncIterator[Harness]:
    physical = physical or InmemPhysical()
    core = build_core(physical, **core_options)
    parts, root = await core.initialize(shares, threshold)
    keys = [p.hex() for p in parts]
    for key in keys[:threshold]:
        await core.submit_unseal_key(key)
    app = App(core.handle_request)
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 12345))
    async with httpx.AsyncClient(transport=transport, base_url="http://strongroom.test") as client:
        try:
            yield Harness(core, app, client, root, keys, physical)
        finally:
            await core.seal()
