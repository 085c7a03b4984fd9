"""Run an ASGI app on one or more Vault-style listeners, on uvicorn's httptools fast path.

Two things stock uvicorn cannot do, and Vault clients need (ARCHITECTURE.md, decision 8):

* the ``LIST`` method (hvac, node-vault). llhttp, under httptools, only knows registered
  methods and answers ``LIST`` with 400. Vault defines ``LIST`` as ``GET`` with
  ``list=true``, so :class:`VaultHttpProtocol` rewrites the request line
  ``LIST <target> HTTP/1.x`` to ``GET <target>?list=true HTTP/1.x`` before the parser sees
  it. For every other method the check is a first-byte test per request; measured in
  process, the protocol costs ~0.7 µs more per request than stock uvicorn (~13 µs).
* TLS that requests but never enforces a client certificate: see :mod:`strongroom.http.tls`.

One thing it does slower than it needs to: uvicorn writes a response's head and its body
with two ``transport.write`` calls, so two ``send`` system calls (and, on loopback, two
trips through the peer's TCP receive path) per response. :class:`_CoalescingTransport`
holds the head until the body arrives and sends both in one write.

Limitation: the rewrite happens at request boundaries seen by ``data_received``: at the
start of a connection and after each complete request. A ``LIST`` *pipelined* behind
another request in the same TCP read is already inside the parser's buffer and gets 400.
No known Vault client pipelines.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import threading
from collections.abc import Callable, Generator, Sequence
from typing import Any

import uvicorn
from OpenSSL import SSL
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from strongroom.config import ListenerConfig
from strongroom.http.tls import TLSServerProtocol, build_server_context, server_certificate_pem

__all__ = [
    "MAX_HEADER_BYTES",
    "MAX_LIST_LINE",
    "TLSVaultHttpProtocol",
    "VaultHttpProtocol",
    "bind_sockets",
    "run",
    "serve",
]

logger = logging.getLogger("strongroom.http")

MAX_LIST_LINE = 16 * 1024  # longest LIST request line we buffer while waiting for its end
MAX_HEADER_BYTES = 1024 * 1024  # request-head bytes, as Go's http.DefaultMaxHeaderBytes
# Idle keep-alive, seconds. Vault's Go server allows 5 min; uvicorn's 5 s default makes pooled
# clients (requests, hvac) race the server's close. 65 s outlasts common pool idle times.
KEEP_ALIVE_TIMEOUT = 65
LIMIT_CONCURRENCY = 4096  # connections or in-flight requests per process before answering 503
GRACEFUL_SHUTDOWN_TIMEOUT = 30  # seconds to let in-flight requests finish
BACKLOG = 2048
# Connections one worker accepts per wake-up of its listening socket (asyncio takes up to BACKLOG)
ACCEPT_BATCH = 4

_MAYBE_LIST = (b"L", b"\r", b"\n")  # first byte at a boundary that needs a closer look


_STATUS_431 = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
    b"content-type: text/plain; charset=utf-8\r\ncontent-length: 31\r\nconnection: close\r\n\r\n"
    b"Request header fields too large"
)


_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class _CoalescingTransport:
    """The transport of one request/response cycle: the response head waits for the body.

    uvicorn's cycle writes, in order: possibly ``100 Continue`` (passed through at once),
    the response head (held), then body chunks (the first one goes out joined with the
    head). Anything else touching the transport -- ``close``, a HEAD response that
    writes no body (see ``VaultHttpProtocol.on_headers_complete``) -- sends the held
    head first, so nothing is reordered or lost.
    """

    __slots__ = ("_held", "_state", "_transport")

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._state = 0  # 0 waiting for the head, 1 holding it, 2 passing everything through
        self._held = b""

    def write(self, data: bytes) -> None:
        state = self._state
        if state == 2:
            self._transport.write(data)
        elif state == 1:
            self._state = 2
            self._transport.write(self._held + data)
            self._held = b""
        elif data == _CONTINUE:
            self._transport.write(data)
        else:
            self._state = 1
            self._held = bytes(data)

    def flush(self) -> None:
        if self._state == 1:
            self._state = 2
            self._transport.write(self._held)
            self._held = b""

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class VaultHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol plus the ``LIST`` rewrite and a cap on request-head size.

    Both work per ``data_received`` call and per request, never per header, so the cost
    over stock uvicorn is a few attribute checks per request. The head cap counts the
    bytes received while a request head is incomplete (uvicorn's httptools path has no
    limit of its own); it may count up to one read of body along with the head.
    """

    def __init__(
        self,
        config: uvicorn.Config,
        server_state: Any,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._at_boundary = True  # the next byte fed to the parser starts a request
        self._in_head = True  # a request head is (or may be) arriving
        self._head_bytes = 0
        self._head = b""  # start of a possible LIST request line, waiting for its end

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            if self._at_boundary and (self._head or data[:1] in _MAYBE_LIST):
                data = self._rewrite_list(data)
                if not data:
                    self._unset_keepalive_if_required()
                    return
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEADER_BYTES:
                self._reject_head()
                return
        super().data_received(data)

    def _rewrite_list(self, data: bytes) -> bytes:
        """Turn a leading ``LIST`` request line into ``GET ...list=true``; ``b""`` means "need more bytes"."""
        if self._head:
            data = self._head + data
            self._head = b""
        start = len(data) - len(data.lstrip(b"\r\n"))  # llhttp skips blank lines between requests
        prefix = data[start : start + 5]
        if not b"LIST ".startswith(prefix):
            return data
        eol = data.find(b"\n", start)
        if len(prefix) < 5 or eol < 0:
            if len(data) > MAX_LIST_LINE:
                return data  # let the parser reject it
            self._head = data
            return b""
        line_end = eol - 1 if data[eol - 1 : eol] == b"\r" else eol
        version_at = data.rfind(b" ", start + 5, line_end)
        if version_at <= start + 5:
            return data  # malformed; the parser answers 400
        target = data[start + 5 : version_at]
        fragment = b""
        if b"#" in target:
            target, hash_, rest = target.partition(b"#")
            fragment = hash_ + rest
        if b"?" not in target:
            target += b"?list=true"
        elif target.endswith((b"?", b"&")):
            target += b"list=true"
        else:
            target += b"&list=true"
        return b"".join((data[:start], b"GET ", target, fragment, data[version_at:]))

    def _reject_head(self) -> None:
        self.logger.warning("Request header fields too large.")
        self._in_head = False
        self.transport.write(_STATUS_431)
        self.transport.close()

    def on_message_begin(self) -> None:
        self._at_boundary = False
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_bytes = 0
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is not None and cycle.transport is self.transport:
            corked = _CoalescingTransport(self.transport)
            cycle.transport = corked  # type: ignore[assignment]
            done = cycle.on_response

            def on_response() -> None:
                corked.flush()  # a HEAD response ends without a body write
                done()

            cycle.on_response = on_response

    def on_message_complete(self) -> None:
        self._at_boundary = True
        self._in_head = True
        super().on_message_complete()


class TLSVaultHttpProtocol(VaultHttpProtocol):
    """The HTTP protocol behind a TLS listener: adds ``scope["extensions"]["tls"]``.

    Kept separate so the plain-HTTP path does not pay for the extension dict.
    """

    _tls_info: dict[str, Any]

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._tls_info = transport.get_extra_info("strongroom.tls") or {
            "client_cert_chain": [],
            "client_cert_verified_possession": False,
        }

    def on_message_begin(self) -> None:
        super().on_message_begin()
        info = dict(self._tls_info)
        info["client_cert_chain"] = list(info["client_cert_chain"])  # the app may mutate its copy
        self.scope["extensions"] = {"tls": info}  # type: ignore[dict-item]


def _uvicorn_config(app: Any) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        http=VaultHttpProtocol,
        loop="asyncio",  # uvloop is not a dependency
        ws="none",
        lifespan="off",
        interface="asgi3",
        log_config=None,  # leave logging set-up to the CLI
        access_log=False,
        proxy_headers=False,  # Vault trusts X-Forwarded-For only when configured to
        server_header=False,
        date_header=True,
        limit_concurrency=LIMIT_CONCURRENCY,
        backlog=BACKLOG,
        timeout_keep_alive=KEEP_ALIVE_TIMEOUT,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_TIMEOUT,
        h11_max_incomplete_event_size=MAX_HEADER_BYTES,
    )


def bind_sockets(listeners: Sequence[ListenerConfig]) -> list[socket.socket]:
    """Bind and listen on every listener's address (port 0 picks a free port).

    Separate from :func:`serve` so a supervisor can bind once and share the sockets with
    worker processes (decision 8). On failure, sockets already bound are closed.
    """
    sockets: list[socket.socket] = []
    try:
        for listener in listeners:
            host, port = listener.host_port()
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
            # One address per listener, as Go's net.Listen; prefer IPv4 for names like localhost.
            infos.sort(key=lambda info: info[0] != socket.AF_INET)
            family, socktype, proto, _, sockaddr = infos[0]
            sock = socket.socket(family, socktype, proto)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.bind(sockaddr)
                sock.listen(BACKLOG)
                sock.setblocking(False)
            except OSError as exc:
                sock.close()
                raise OSError(exc.errno, f"cannot listen on {listener.address}: {exc.strerror}") from exc
            sockets.append(sock)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


class _Server(uvicorn.Server):
    """uvicorn's server loop (ticks, graceful shutdown) with our own listeners and protocols."""

    def __init__(
        self,
        config: uvicorn.Config,
        listeners: Sequence[ListenerConfig],
        sockets: Sequence[socket.socket],
        contexts: Sequence[SSL.Context | None],
        on_ready: Callable[[list[tuple[str, int]]], None] | None,
        handle_signals: bool,
    ) -> None:
        super().__init__(config)
        self._listeners = list(listeners)
        self._sockets = list(sockets)
        self._contexts = list(contexts)
        self._on_ready = on_ready
        self._handle_signals = handle_signals
        self._handshaking: set[TLSServerProtocol] = set()
        self.servers: list[asyncio.Server] = []

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await self.lifespan.startup()
        config, state = self.config, self.server_state
        loop = asyncio.get_running_loop()
        _limit_accept_batch(loop)
        app_state = self.lifespan.state

        def plain() -> asyncio.Protocol:
            return VaultHttpProtocol(config=config, server_state=state, app_state=app_state, _loop=loop)

        def tls_app() -> asyncio.Protocol:
            return TLSVaultHttpProtocol(config=config, server_state=state, app_state=app_state, _loop=loop)

        bound: list[tuple[str, int]] = []
        for listener, sock, context in zip(self._listeners, self._sockets, self._contexts, strict=True):
            factory: Callable[[], asyncio.Protocol]
            if context is None:
                factory = plain
            else:
                factory = self._tls_factory(listener, context, tls_app)
            server = await loop.create_server(factory, sock=sock, backlog=BACKLOG)
            self.servers.append(server)
            host, port = sock.getsockname()[:2]
            bound.append((str(host), int(port)))
            scheme = "http" if listener.tls_disable else "https"
            logger.info("listening on %s://%s", scheme, _format_hostport(str(host), int(port)))

        await self.on_tick(0)  # date header ready before the first request
        self.started = True
        if self._on_ready is not None:
            self._on_ready(bound)

    def _tls_factory(
        self, listener: ListenerConfig, context: SSL.Context, tls_app: Callable[[], asyncio.Protocol]
    ) -> Callable[[], asyncio.Protocol]:
        server_cert = server_certificate_pem(listener)
        pending = self._handshaking

        def factory() -> asyncio.Protocol:
            return TLSServerProtocol(context, tls_app, server_cert_pem=server_cert, pending=pending)

        return factory

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for protocol in list(self._handshaking):
            protocol.abort()
        await super().shutdown(sockets)

    def close_now(self) -> None:
        """Stop listening and drop connections; for when ``serve`` is cancelled or fails."""
        for server in self.servers:
            server.close()
        for protocol in list(self._handshaking):
            protocol.abort()
        for connection in list(self.server_state.connections):
            transport = getattr(connection, "transport", None)
            if transport is not None:
                transport.abort()

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        """SIGINT/SIGTERM start a graceful shutdown (a second SIGINT forces it).

        Unlike uvicorn we do not re-raise the signal afterwards: ``run`` returns normally
        so the CLI exits 0 after a clean stop.
        """
        if not self._handle_signals or threading.current_thread() is not threading.main_thread():
            yield
            return
        handled = (signal.SIGINT, signal.SIGTERM)
        original = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)


def _limit_accept_batch(loop: asyncio.AbstractEventLoop) -> None:
    """Make this loop accept at most ACCEPT_BATCH connections each time a listener is readable.

    Worker processes share one listening socket and all wake when connections arrive.
    asyncio's selector loop then accepts up to ``backlog`` (2048) at once, so the first
    worker to run takes a whole burst: 64 connections opened together all landed on one
    of two workers in about half of our benchmark runs, leaving the other idle for the
    life of those keep-alive connections. Taking a few at a time lets every awake worker
    take its share. ``_accept_connection`` is CPython's selector-loop internal; on a loop
    without it (another implementation) nothing changes.
    """
    original = getattr(loop, "_accept_connection", None)
    if original is None or getattr(original, "_strongroom_batch", None) is not None:
        return

    def accept(
        protocol_factory: Any,
        sock: socket.socket,
        sslcontext: Any = None,
        server: Any = None,
        backlog: int = 100,
        *rest: Any,
        **options: Any,
    ) -> Any:
        return original(
            protocol_factory, sock, sslcontext, server, min(backlog, ACCEPT_BATCH), *rest, **options
        )

    accept._strongroom_batch = ACCEPT_BATCH  # type: ignore[attr-defined]
    loop._accept_connection = accept  # type: ignore[attr-defined]


def _format_hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def serve(
    app: Any,
    listeners: Sequence[ListenerConfig],
    *,
    on_ready: Callable[[list[tuple[str, int]]], None] | None = None,
    stop: asyncio.Event | None = None,
    sockets: Sequence[socket.socket] | None = None,
    handle_signals: bool = False,
) -> None:
    """Serve ``app`` on every listener until ``stop`` is set (or a signal, with ``handle_signals``).

    ``on_ready`` receives the bound ``(host, port)`` pairs, in listener order, once every
    socket accepts connections. ``sockets`` may carry sockets already bound by
    :func:`bind_sockets` (one per listener, e.g. inherited by a worker process); otherwise
    they are bound here. TLS configuration errors raise ``ConfigError`` before anything
    is bound; a busy address raises ``OSError``.
    """
    if not listeners:
        raise ValueError("at least one listener is required")
    # TLS contexts first: a bad cert/key path fails before anything is bound.
    contexts = [None if listener.tls_disable else build_server_context(listener) for listener in listeners]
    owned = sockets is None
    socks = bind_sockets(listeners) if sockets is None else list(sockets)
    if len(socks) != len(listeners):
        raise ValueError("one socket per listener is required")
    server = _Server(_uvicorn_config(app), listeners, socks, contexts, on_ready, handle_signals)
    watcher: asyncio.Task[None] | None = None
    if stop is not None:
        watcher = asyncio.create_task(_stop_when_set(stop, server))
    clean = False
    try:
        await server.serve()
        clean = True
    finally:
        if watcher is not None:
            watcher.cancel()
        if not clean:
            server.close_now()
        if owned:
            for sock in socks:
                sock.close()


async def _stop_when_set(stop: asyncio.Event, server: _Server) -> None:
    await stop.wait()
    server.should_exit = True


def run(
    app: Any,
    listeners: Sequence[ListenerConfig],
    on_ready: Callable[[list[tuple[str, int]]], None] | None = None,
) -> None:
    """Blocking entry point: serve until SIGINT or SIGTERM, then shut down gracefully."""
    asyncio.run(serve(app, listeners, on_ready=on_ready, handle_signals=True))
