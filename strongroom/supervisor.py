"""One node, several processes: a supervisor and N HTTP workers sharing the sockets.

EC signing and JSON handling hold the GIL, so a node scales across cores with
processes (ARCHITECTURE.md decision 8). The layout:

- the **supervisor** binds the listening sockets, creates the shared
  invalidation counters (:mod:`strongroom.core.sync`) and ACME nonce table
  (:mod:`strongroom.engines.pki.acme.nonces`), forks the workers, and
  then runs the *primary* core: the only one that handles the seal lifecycle
  (init, unseal, seal, generate-root, rekey) and background jobs (lease
  expiry). Unseal progress therefore lives in one place per node;
- each **worker** runs its own core over the same storage and serves HTTP.
  Requests for the seal endpoints are forwarded to the supervisor over a
  private socket pair; when the primary unseals or seals, it pushes the
  keyring (or the seal) to every worker. A seal also bumps a shared counter,
  so a worker seals itself before answering its next request even if the push
  is still in flight.

The keyring travels only over socket pairs created before the fork; it is
never written anywhere.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import signal
import socket
import struct
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from strongroom.config import ServerConfig
from strongroom.core.assemble import build_core
from strongroom.core.core import Core
from strongroom.core.sync import Kind, SharedGenerations
from strongroom.engines.pki.acme.nonces import NonceTable
from strongroom.http.app import App
from strongroom.logical import errors
from strongroom.logical.request import Connection, Operation, RawResponse, Request, Response
from strongroom.physical.base import open_physical

log = logging.getLogger("strongroom.supervisor")

_HEADER = struct.Struct("<I")
_MAX_MESSAGE = 64 * 1024 * 1024


class Channel:
    """Length-prefixed JSON messages over a socket pair; calls and pushes multiplexed."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self._next = 0
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._lock = asyncio.Lock()

    async def send(self, message: dict[str, Any]) -> None:
        data = json.dumps(message, separators=(",", ":")).encode()
        async with self._lock:
            self.writer.write(_HEADER.pack(len(data)) + data)
            await self.writer.drain()

    async def receive(self) -> dict[str, Any] | None:
        try:
            head = await self.reader.readexactly(_HEADER.size)
            (size,) = _HEADER.unpack(head)
            if size > _MAX_MESSAGE:
                raise ValueError("control message too large")
            message: dict[str, Any] = json.loads(await self.reader.readexactly(size))
            return message
        except (asyncio.IncompleteReadError, ConnectionError):
            return None

    async def call(self, body: dict[str, Any]) -> dict[str, Any]:
        self._next += 1
        ident = self._next
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[ident] = future
        await self.send({"id": ident, **body})
        try:
            return await asyncio.wait_for(future, timeout=120)
        finally:
            self._pending.pop(ident, None)

    def resolve(self, message: dict[str, Any]) -> bool:
        future = self._pending.get(int(message.get("reply_to", 0)))
        if future is None or future.done():
            return False
        future.set_result(message)
        return True


# -- requests across the channel ---------------------------------------------------------------


def request_to_wire(req: Request) -> dict[str, Any]:
    return {
        "operation": req.operation.value,
        "path": req.path,
        "data": req.data,
        "client_token": req.client_token,
        "headers": req.headers,
        "query": req.query,
        "request_id": req.request_id,
        "wrap_ttl": req.wrap_ttl,
        "connection": {
            "remote_addr": req.connection.remote_addr,
            "remote_port": req.connection.remote_port,
            "tls": req.connection.tls,
            "client_cert_chain": req.connection.client_cert_chain,
        },
    }


def request_from_wire(raw: dict[str, Any]) -> Request:
    return Request(
        operation=Operation(raw["operation"]),
        path=raw["path"],
        data=raw["data"],
        client_token=raw["client_token"],
        headers=raw["headers"],
        query=raw["query"],
        request_id=raw["request_id"],
        wrap_ttl=raw["wrap_ttl"],
        connection=Connection(**raw["connection"]),
    )


def response_to_wire(resp: Response | None) -> dict[str, Any]:
    if resp is None:
        return {"none": True}
    if resp.raw is None:
        raise errors.StrongroomError("only raw responses cross the supervisor channel")
    raw = resp.raw
    return {
        "status": raw.status,
        "content_type": raw.content_type,
        "headers": raw.headers,
        "body": base64.b64encode(raw.body).decode(),
    }


def response_from_wire(raw: dict[str, Any]) -> Response | None:
    if "error" in raw:
        err = raw["error"]
        cls = getattr(errors, err["type"], None)
        if isinstance(cls, type) and issubclass(cls, errors.StrongroomError) and cls is not errors.CodedError:
            exc = cls(*err["errors"])
            exc.status = err["status"]
            raise exc
        raise errors.CodedError(err["status"], *err["errors"])
    if raw.get("none"):
        return None
    return Response(
        raw=RawResponse(
            body=base64.b64decode(raw["body"]),
            content_type=raw["content_type"],
            status=raw["status"],
            headers=raw["headers"],
        )
    )


class ForwardingSealBackend:
    """In a worker: the seal endpoints, answered by the supervisor's primary core."""

    def __init__(self, local: Any, channel: Channel) -> None:
        self._local = local  # the real SealBackend, used only to recognise its paths
        self._channel = channel

    def route_exists(self, path: str) -> bool:
        return bool(self._local.route_exists(path))

    async def handle_request(self, req: Request) -> Response | None:
        req.path = "sys/" + req.path
        reply = await self._channel.call({"op": "request", "request": request_to_wire(req)})
        return response_from_wire(reply["response"])

    def __getattr__(self, name: str) -> Any:
        return getattr(self._local, name)


# -- the two sides ----------------------------------------------------------------------------


def _keyring_message(core: Core) -> dict[str, Any]:
    blob = core.barrier.export_keyring()
    return {"op": "unseal", "blob": base64.b64encode(blob).decode()}


async def _apply_push(core: Core, sync: SharedGenerations, message: dict[str, Any]) -> None:
    op = message.get("op")
    if op == "seal":
        await core.seal()
    elif op == "unseal":
        blob = base64.b64decode(message["blob"])
        root_key = base64.b64decode(json.loads(blob)["root_key"])
        sync.acknowledge(Kind.SEAL)
        if not core.sealed:
            await core.seal()
        await core.unseal_from_export(root_key, blob)


def _build_core(cfg: ServerConfig) -> Core:
    physical = open_physical(cfg.storage_type, cfg.storage_options)
    return build_core(
        physical,
        storage_type=physical.name,
        default_lease_ttl=cfg.default_lease_ttl,
        max_lease_ttl=cfg.max_lease_ttl,
        api_addr=cfg.api_addr or "",
    )


async def _worker_main(
    cfg: ServerConfig,
    sockets: list[socket.socket],
    control: socket.socket,
    sync: SharedGenerations,
    nonces: NonceTable,
) -> None:
    from strongroom.http.server import serve

    core = _build_core(cfg)
    core.sync = sync
    core.acme_nonces = nonces
    core.background_jobs = False
    await core.is_initialized()
    reader, writer = await asyncio.open_unix_connection(sock=control)
    channel = Channel(reader, writer)
    core.seal_backend = ForwardingSealBackend(core.seal_backend, channel)
    background: set[asyncio.Task[None]] = set()

    def schedule_remotely(key: str, when: float) -> None:
        task = asyncio.create_task(channel.send({"op": "schedule", "key": key, "when": when}))
        background.add(task)
        task.add_done_callback(background.discard)

    if core.expiration is not None:
        core.expiration.remote_schedule = schedule_remotely
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    async def pump() -> None:
        while True:
            message = await channel.receive()
            if message is None:
                stop.set()  # the supervisor is gone
                return
            if "reply_to" in message:
                channel.resolve(message)
                continue
            try:
                await _apply_push(core, sync, message)
            except Exception:
                log.exception("worker failed to apply a push from the supervisor")
            if "id" in message:
                await channel.send({"reply_to": message["id"]})  # applied: the supervisor may answer

    pumping = asyncio.create_task(pump())
    await channel.send({"op": "hello"})
    max_size = max((listener.max_request_size for listener in cfg.listeners), default=32 * 1024 * 1024)
    app = App(core.handle_request, max_request_size=max_size)
    try:
        await serve(app, cfg.listeners, sockets=sockets, stop=stop)
    finally:
        pumping.cancel()
        await core.seal()


async def _primary_main(
    cfg: ServerConfig,
    channels: list[socket.socket],
    pids: list[int],
    sync: SharedGenerations,
    nonces: NonceTable,
    on_ready: Callable[[], Awaitable[None]] | None,
) -> None:
    core = _build_core(cfg)
    core.sync = sync
    core.acme_nonces = nonces
    await core.is_initialized()
    workers: list[Channel] = []
    for sock in channels:
        reader, writer = await asyncio.open_unix_connection(sock=sock)
        workers.append(Channel(reader, writer))

    async def push(channel: Channel, message: dict[str, Any]) -> None:
        try:
            await channel.call(message)
        except (ConnectionError, RuntimeError, TimeoutError):
            log.warning("a worker did not confirm a seal-state change")

    async def broadcast(message: dict[str, Any]) -> None:
        """Tell every worker, and wait until each has applied it, before answering."""
        await asyncio.gather(*(push(channel, message) for channel in workers))

    async def unsealed() -> None:
        await broadcast(_keyring_message(core))

    async def sealed() -> None:
        sync.bump(Kind.SEAL)
        await broadcast({"op": "seal"})

    core.on_unsealed.append(unsealed)
    core.on_sealed.append(sealed)

    async def answer(channel: Channel, message: dict[str, Any]) -> None:
        reply: dict[str, Any] = {"reply_to": message["id"]}
        try:
            req = request_from_wire(message["request"])
            was_rekey = req.path.startswith("sys/rekey")
            reply["response"] = response_to_wire(await core.handle_request(req))
            if was_rekey and not core.sealed:
                await broadcast(_keyring_message(core))  # the root key may have changed
        except errors.StrongroomError as err:
            reply["response"] = {
                "error": {"type": type(err).__name__, "status": err.status, "errors": err.errors}
            }
        except Exception:
            log.exception("supervisor failed a forwarded request")
            reply["response"] = {
                "error": {"type": "StrongroomError", "status": 500, "errors": ["internal error"]}
            }
        await channel.send(reply)

    async def serve_worker(channel: Channel) -> None:
        # requests run as tasks so this loop keeps reading the worker's confirmations
        running: set[asyncio.Task[None]] = set()
        while True:
            message = await channel.receive()
            if message is None:
                return
            if "reply_to" in message:
                channel.resolve(message)
            elif message.get("op") == "hello":
                if not core.sealed:
                    await channel.send(_keyring_message(core))
            elif message.get("op") == "schedule":
                if core.expiration is not None:
                    core.expiration.schedule(str(message["key"]), float(message["when"]))
            elif message.get("op") == "request":
                task = asyncio.create_task(answer(channel, message))
                running.add(task)
                task.add_done_callback(running.discard)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    tasks = [asyncio.create_task(serve_worker(channel)) for channel in workers]
    if on_ready is not None:
        await on_ready()

    async def watch_children() -> None:
        while not stop.is_set():
            for pid in list(pids):
                try:
                    done, status = os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    done, status = pid, 0
                if done:
                    pids.remove(pid)
                    log.error(
                        "worker %d exited (status %d); the node keeps serving with %d", pid, status, len(pids)
                    )
            if not pids:
                stop.set()
            await asyncio.sleep(0.5)

    watcher = asyncio.create_task(watch_children())
    await stop.wait()
    watcher.cancel()
    for task in tasks:
        task.cancel()
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    core.on_sealed.remove(sealed)  # the workers are stopping: nobody to tell
    await core.seal()


def _die_with_parent() -> None:
    """Linux: a worker gets SIGKILL the moment its supervisor dies, even by SIGKILL.

    Otherwise orphaned workers would keep the listening socket (and the keyring) after
    the supervisor is killed, and a restarted server could not bind its port.
    """
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL)
    except (OSError, AttributeError):
        log.warning("workers will not follow the supervisor if it is killed (no prctl)")


def run_supervised(
    cfg: ServerConfig, workers: int, on_ready: Callable[[], Awaitable[None]] | None = None
) -> None:
    """Fork ``workers`` HTTP workers and run the primary core in this process."""
    from strongroom.http.server import bind_sockets

    sockets = bind_sockets(cfg.listeners)
    sync = SharedGenerations(workers + 1)
    nonces = NonceTable()  # ACME Replay-Nonces: issued at one worker, spent at any
    parent_ends: list[socket.socket] = []
    pids: list[int] = []
    for index in range(workers):
        parent_end, child_end = socket.socketpair()
        pid = os.fork()
        if pid == 0:  # worker
            _die_with_parent()
            for other in parent_ends:
                other.close()
            parent_end.close()
            sync.attach(index + 1)
            code = 0
            try:
                asyncio.run(_worker_main(cfg, sockets, child_end, sync, nonces))
            except Exception:
                log.exception("worker crashed")
                code = 1
            finally:
                sys.stdout.flush()
                os._exit(code)
        child_end.close()
        parent_ends.append(parent_end)
        pids.append(pid)
    sync.attach(0)
    for sock in sockets:
        sock.close()  # only the workers accept connections
    asyncio.run(_primary_main(cfg, parent_ends, pids, sync, nonces, on_ready))
    for pid in pids:
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass
