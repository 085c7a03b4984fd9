"""TLS for listeners: request a client certificate, never reject the handshake over it.

Vault asks every TLS client for a certificate (Go's ``tls.RequestClientCert``) and leaves
judging it to the ``cert`` auth method. Clients rely on that: hvac presents an *expired*
self-signed certificate on every request. Python's ``ssl`` module cannot express this —
``CERT_OPTIONAL`` verifies whatever is sent and fails the handshake — and has no verify
callback, so TLS here is pyOpenSSL with an always-accepting callback, driven through
memory BIOs by an asyncio protocol that sits between the socket and the HTTP protocol.

The HTTP protocol sees a plaintext transport (:class:`TLSAppTransport`) whose
``get_extra_info("strongroom.tls")`` holds the client's certificate chain, which the
server hands to the ASGI app as ``scope["extensions"]["tls"]``.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from OpenSSL import SSL

from strongroom.config import ConfigError, ListenerConfig

__all__ = [
    "HANDSHAKE_TIMEOUT",
    "TLSAppTransport",
    "TLSServerProtocol",
    "build_server_context",
    "server_certificate_pem",
]

logger = logging.getLogger("strongroom.http.tls")

HANDSHAKE_TIMEOUT = 10.0  # seconds; a silent client must not hold a socket for ever
_READ_SIZE = 16384  # SSL_read returns at most one record (16 KiB of plaintext) per call
_BIO_READ_SIZE = 65536
# Plaintext writes made in one event-loop turn are encrypted and sent together (uvicorn writes
# a response's head and body separately; one TLS record and one send() instead of two),
# up to this many bytes, after which they go out at once to keep memory bounded.
_COALESCE_LIMIT = 65536
# TLS 1.2 suites with forward secrecy and AEAD only (TLS 1.3 suites are always AEAD).
_CIPHERS = b"ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!eNULL:!MD5:!DSS:!SHA1"


def _accept_any(conn: SSL.Connection, cert: Any, errnum: int, depth: int, ok: int) -> bool:
    """Verify callback that accepts every certificate: possession is proven, trust is judged later."""
    return True


def build_server_context(listener: ListenerConfig) -> SSL.Context:
    """A server context for ``listener``: TLS ≥ 1.2, client certificate requested but not required.

    With ``tls_require_and_verify_client_cert`` the context instead verifies the client
    against ``tls_client_ca_file`` (or the system store) and refuses clients without one,
    like Vault's option of the same name. Errors become ``ConfigError`` naming the file.
    """
    cert_file, key_file = listener.tls_cert_file, listener.tls_key_file
    if not cert_file or not key_file:
        raise ConfigError(f"listener {listener.address}: tls_cert_file and tls_key_file are required for TLS")
    for label, path in (("tls_cert_file", cert_file), ("tls_key_file", key_file)):
        if not os.path.isfile(path):
            raise ConfigError(f"listener {listener.address}: {label} {path!r} does not exist")
    ctx = SSL.Context(SSL.TLS_SERVER_METHOD)
    ctx.set_min_proto_version(SSL.TLS1_2_VERSION)
    ctx.set_options(SSL.OP_NO_COMPRESSION | SSL.OP_NO_RENEGOTIATION | SSL.OP_CIPHER_SERVER_PREFERENCE)
    ctx.set_cipher_list(_CIPHERS)
    try:
        ctx.use_certificate_chain_file(cert_file)
    except SSL.Error as exc:
        raise ConfigError(f"tls_cert_file {cert_file!r}: cannot load certificate chain: {exc}") from None
    try:
        ctx.use_privatekey_file(key_file)
        ctx.check_privatekey()
    except SSL.Error as exc:
        raise ConfigError(f"tls_key_file {key_file!r}: cannot load key or it does not match: {exc}") from None
    # Session resumption with VERIFY_PEER needs a session id context, else OpenSSL fails it.
    ctx.set_session_id(b"strongroom")

    ca_file = listener.tls_client_ca_file
    if ca_file:
        if not os.path.isfile(ca_file):
            raise ConfigError(f"tls_client_ca_file {ca_file!r} does not exist")
        try:
            # Advertise acceptable issuers in CertificateRequest, as Go does when ClientCAs is set.
            ctx.load_client_ca(os.fsencode(ca_file))
        except SSL.Error as exc:
            raise ConfigError(f"tls_client_ca_file {ca_file!r}: cannot load: {exc}") from None

    if listener.tls_require_and_verify_client_cert:
        if ca_file:
            ctx.load_verify_locations(ca_file)
        else:
            ctx.set_default_verify_paths()
        ctx.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, None)
    else:
        ctx.set_verify(SSL.VERIFY_PEER, _accept_any)
    return ctx


def server_certificate_pem(listener: ListenerConfig) -> str | None:
    """The leaf of the listener's certificate file as PEM (for the ASGI TLS extension's ``server_cert``)."""
    if not listener.tls_cert_file:
        return None
    try:
        with open(listener.tls_cert_file, "rb") as fp:
            cert = x509.load_pem_x509_certificate(fp.read())
    except (OSError, ValueError):
        return None
    return cert.public_bytes(Encoding.PEM).decode("ascii")


class TLSServerProtocol(asyncio.Protocol):
    """Socket-side protocol: ciphertext in and out, plaintext to an inner protocol.

    The inner (HTTP) protocol is created only once the handshake has finished, so it sees
    the client certificate from its first byte. Any TLS error closes this one connection
    and is logged at debug level: a bad client must never disturb the server.
    """

    def __init__(
        self,
        context: SSL.Context,
        app_protocol_factory: Callable[[], asyncio.Protocol],
        *,
        server_cert_pem: str | None = None,
        pending: set[TLSServerProtocol] | None = None,
        handshake_timeout: float = HANDSHAKE_TIMEOUT,
    ) -> None:
        self._context = context
        self._factory = app_protocol_factory
        self._server_cert_pem = server_cert_pem
        self._pending = pending
        self._handshake_timeout = handshake_timeout
        self._transport: asyncio.Transport | None = None
        self._conn: SSL.Connection | None = None
        self._app: asyncio.Protocol | None = None
        self._app_transport: TLSAppTransport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handshaked = False
        self._closing = False
        self._app_paused = False
        self._pump_scheduled = False
        self._out: list[bytes] = []  # plaintext written this loop turn, not yet encrypted
        self._out_size = 0
        self._flush_scheduled = False
        self.tls_info: dict[str, Any] = {}

    # --- socket side -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._loop = asyncio.get_running_loop()
        conn = SSL.Connection(self._context, None)
        conn.set_accept_state()
        self._conn = conn
        self._timer = self._loop.call_later(self._handshake_timeout, self._on_handshake_timeout)
        if self._pending is not None:
            self._pending.add(self)

    def data_received(self, data: bytes) -> None:
        conn = self._conn
        if conn is None or self._closing:
            return
        try:
            conn.bio_write(data)
        except SSL.Error as exc:
            self._fail("bio_write", exc)
            return
        if not self._handshaked and not self._handshake():
            return
        self._pump()

    def eof_received(self) -> bool | None:
        # TCP FIN without close_notify: treat as the end of the connection.
        if self._app is not None:
            self._app.eof_received()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        self._cancel_timer()
        if self._pending is not None:
            self._pending.discard(self)
        app, self._app = self._app, None
        if app is not None:
            app.connection_lost(exc)

    def pause_writing(self) -> None:
        if self._app is not None:
            self._app.pause_writing()

    def resume_writing(self) -> None:
        if self._app is not None:
            self._app.resume_writing()

    def abort(self) -> None:
        """Drop the connection at once (used for handshakes still pending at shutdown)."""
        self._closing = True
        self._out.clear()
        self._out_size = 0
        if self._transport is not None:
            self._transport.abort()

    # --- TLS machinery -----------------------------------------------------------------

    def _handshake(self) -> bool:
        conn = self._conn
        assert conn is not None and self._transport is not None
        try:
            conn.do_handshake()
        except SSL.WantReadError:
            self._flush()
            return False
        except SSL.Error as exc:
            self._fail("handshake", exc, graceful=True)
            return False
        self._handshaked = True
        self._cancel_timer()
        if self._pending is not None:
            self._pending.discard(self)
        self._flush()
        self.tls_info = self._collect_tls_info(conn)
        self._app_transport = TLSAppTransport(self)
        self._app = self._factory()
        self._app.connection_made(self._app_transport)
        return not self._closing

    def _collect_tls_info(self, conn: SSL.Connection) -> dict[str, Any]:
        """Client chain (leaf first, PEM) in the shape of the ASGI TLS extension, plus possession."""
        chain: list[str] = []
        name: str | None = None
        leaf = conn.get_peer_certificate(as_cryptography=True)
        if leaf is not None:
            certs = [leaf]
            # On the server side OpenSSL's peer chain excludes the leaf; tolerate either way.
            for cert in conn.get_peer_cert_chain(as_cryptography=True) or []:
                if cert != leaf:
                    certs.append(cert)
            chain = [c.public_bytes(Encoding.PEM).decode("ascii") for c in certs]
            try:
                name = leaf.subject.rfc4514_string()
            except ValueError:
                name = None
        return {
            "server_cert": self._server_cert_pem,
            "client_cert_chain": chain,
            "client_cert_name": name,
            "client_cert_error": None,
            "tls_version": conn.get_protocol_version(),
            "cipher_suite": None,
            # The handshake proved the client holds the key of the leaf it presented.
            "client_cert_verified_possession": leaf is not None,
        }

    def _pump(self) -> None:
        """Decrypt what is buffered and feed it to the app until it pauses or data runs out."""
        self._pump_scheduled = False
        conn = self._conn
        while not self._app_paused and not self._closing and conn is not None:
            try:
                chunk = conn.recv(_READ_SIZE)
            except SSL.WantReadError:
                break
            except SSL.ZeroReturnError:  # close_notify from the client
                self._flush()
                self._peer_closed()
                return
            except SSL.Error as exc:
                self._fail("read", exc)
                return
            app = self._app
            if app is None:
                break
            app.data_received(chunk)
        if not self._closing:
            # Reading can produce TLS output (alerts, post-handshake replies); send it this turn.
            self._schedule_flush()

    def _peer_closed(self) -> None:
        keep_open = self._app.eof_received() if self._app is not None else None
        if not keep_open:
            self._close()

    def _flush(self) -> None:
        """Move encrypted output from the memory BIO to the socket, in one write."""
        conn, transport = self._conn, self._transport
        if conn is None or transport is None or transport.is_closing():
            return
        chunks: list[bytes] = []
        while True:
            try:
                out = conn.bio_read(_BIO_READ_SIZE)
            except SSL.WantReadError:
                break
            chunks.append(out)
            if len(out) < _BIO_READ_SIZE:  # a memory BIO hands out all it has: drained
                break
        if len(chunks) == 1:
            transport.write(chunks[0])
        elif chunks:
            transport.write(b"".join(chunks))

    def _write_plain(self, data: bytes | bytearray | memoryview) -> None:
        if self._closing or self._conn is None or not data:
            return
        self._out.append(data if isinstance(data, bytes) else bytes(data))
        self._out_size += len(data)
        if self._out_size >= _COALESCE_LIMIT:
            self._flush_writes()
        else:
            self._schedule_flush()

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled and self._loop is not None:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush_writes)

    def _flush_writes(self) -> None:
        """Encrypt the plaintext gathered this turn and send all pending ciphertext."""
        self._flush_scheduled = False
        conn = self._conn
        if self._out and conn is not None and not self._closing:
            data = self._out[0] if len(self._out) == 1 else b"".join(self._out)
            self._out.clear()
            self._out_size = 0
            try:
                sent = conn.send(data)
                if sent < len(data):  # partial writes are on: one record per call
                    view = memoryview(data)[sent:]
                    while view:
                        sent = conn.send(view)
                        view = view[sent:]
            except SSL.Error as exc:
                self._fail("write", exc)
                return
        self._flush()

    def _close(self) -> None:
        """Graceful close: pending data, close_notify, then close the socket once writes drain."""
        if self._closing:
            return
        self._flush_writes()
        self._closing = True
        conn = self._conn
        if conn is not None and self._handshaked:
            try:
                conn.shutdown()
            except SSL.Error:
                pass
            self._flush()
        if self._transport is not None:
            self._transport.close()

    def _fail(self, stage: str, exc: BaseException, *, graceful: bool = False) -> None:
        peer = self._transport.get_extra_info("peername") if self._transport is not None else None
        logger.debug("TLS %s error from %s: %r", stage, peer, exc)
        if graceful:
            self._flush()  # send the alert OpenSSL prepared, if any
            self._close_transport_only()
        else:
            self.abort()

    def _close_transport_only(self) -> None:
        self._closing = True
        if self._transport is not None:
            self._transport.close()

    def _on_handshake_timeout(self) -> None:
        self._timer = None
        if not self._handshaked:
            logger.debug("TLS handshake timed out")
            self.abort()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # --- used by TLSAppTransport ---------------------------------------------------------

    def _pause_app_reading(self) -> None:
        if not self._app_paused:
            self._app_paused = True
            if self._transport is not None:
                self._transport.pause_reading()

    def _resume_app_reading(self) -> None:
        if self._app_paused:
            self._app_paused = False
            if self._transport is not None and not self._closing:
                self._transport.resume_reading()
            # Plaintext may already sit decrypted-able inside the SSL object: pump it soon.
            if not self._pump_scheduled and self._loop is not None and not self._closing:
                self._pump_scheduled = True
                self._loop.call_soon(self._pump)

    def _set_app_protocol(self, protocol: asyncio.Protocol) -> None:
        self._app = protocol

    def _get_app_protocol(self) -> asyncio.Protocol | None:
        return self._app

    @property
    def closing(self) -> bool:
        return self._closing or self._transport is None or self._transport.is_closing()


class TLSAppTransport(asyncio.Transport):
    """The plaintext side: what uvicorn's HTTP protocol writes to and reads connection facts from."""

    def __init__(self, tls: TLSServerProtocol) -> None:
        super().__init__()
        self._tls = tls

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._tls._write_plain(data)

    def writelines(self, list_of_data: Any) -> None:
        self._tls._write_plain(b"".join(list_of_data))

    def close(self) -> None:
        self._tls._close()

    def abort(self) -> None:
        self._tls.abort()

    def is_closing(self) -> bool:
        return self._tls.closing

    def can_write_eof(self) -> bool:
        return False

    def write_eof(self) -> None:
        raise NotImplementedError("TLS connections cannot half-close")

    def pause_reading(self) -> None:
        self._tls._pause_app_reading()

    def resume_reading(self) -> None:
        self._tls._resume_app_reading()

    def is_reading(self) -> bool:
        return not self._tls._app_paused

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        if self._tls._transport is not None:
            self._tls._transport.set_write_buffer_limits(high, low)

    def get_write_buffer_size(self) -> int:
        pending = self._tls._out_size
        if self._tls._transport is not None:
            pending += self._tls._transport.get_write_buffer_size()
        return pending

    def get_write_buffer_limits(self) -> tuple[int, int]:
        if self._tls._transport is None:
            return (0, 0)
        return self._tls._transport.get_write_buffer_limits()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        assert isinstance(protocol, asyncio.Protocol)
        self._tls._set_app_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        protocol = self._tls._get_app_protocol()
        assert protocol is not None
        return protocol

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        tls = self._tls
        if name == "sslcontext":
            return tls._context  # truthy: uvicorn sets scope["scheme"] = "https"
        if name == "strongroom.tls":
            return tls.tls_info
        if name == "ssl_object":
            return tls._conn
        if name == "peercert":
            chain = tls.tls_info.get("client_cert_chain")
            if not chain:
                return default
            return x509.load_pem_x509_certificate(chain[0].encode("ascii")).public_bytes(Encoding.DER)
        if name == "cipher":
            conn = tls._conn
            if conn is None:
                return default
            return (conn.get_cipher_name(), conn.get_cipher_version(), conn.get_cipher_bits())
        if tls._transport is None:
            return default
        return tls._transport.get_extra_info(name, default)
