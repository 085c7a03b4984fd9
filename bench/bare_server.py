"""The ceiling of our HTTP stack: the same server and worker count, an app that only answers.

Run: ``python bench/bare_server.py PORT WORKERS``. Each worker serves a fixed
small JSON body through strongroom.http.server on sockets bound once and
shared, exactly as the real server's workers do.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from strongroom.config import ListenerConfig
from strongroom.http.server import bind_sockets, serve

BODY = b'{"request_id":"","lease_id":"","renewable":false,"lease_duration":0,"data":{"value":"x"}}'


async def app(
    scope: MutableMapping[str, Any],
    receive: Callable[[], Awaitable[MutableMapping[str, Any]]],
    send: Callable[[MutableMapping[str, Any]], Awaitable[None]],
) -> None:
    if scope["type"] != "http":
        return
    more = True
    while more:
        more = (await receive()).get("more_body", False)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": BODY})


def main() -> None:
    port, workers = int(sys.argv[1]), int(sys.argv[2])
    listeners = [ListenerConfig(address=f"127.0.0.1:{port}", tls_disable=True)]
    sockets = bind_sockets(listeners)
    children = []
    for _ in range(workers - 1):
        pid = os.fork()
        if pid == 0:
            children = []
            break
        children.append(pid)
    try:
        asyncio.run(serve(app, listeners, sockets=sockets, handle_signals=True))
    finally:
        for pid in children:  # the first process stops the others with it
            os.kill(pid, signal.SIGTERM)
            os.waitpid(pid, 0)


if __name__ == "__main__":
    main()
