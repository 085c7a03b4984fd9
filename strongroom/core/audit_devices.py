"""Audit sinks: where formatted entries go (a file, a socket, syslog).

A device here knows nothing about entries, salts or HMAC (that is
:mod:`strongroom.core.audit`); it takes one finished line of bytes and either
delivers it or raises. The broker counts a raise as "this device did not
record the request", which is what makes audit fail closed, so a sink must
never swallow a failure it can see.

Choices worth knowing (security-and-reliability.md rows 30-35):

* **file** -- ``file_path`` (alias ``path``) must be absolute: a relative path
  would depend on the server's working directory, which is how a log ends up
  somewhere nobody meant. ``stdout`` and ``discard`` are special names.
  Paths under ``/proc``, ``/sys`` and ``/dev`` and inside the storage
  directory are refused (writing to ``/proc/sys/kernel/core_pattern`` as root,
  or over the SQLite file, is the kind of damage HCSEC-2025-14 was about), as
  is a ``mode`` with execute, setuid, setgid or sticky bits, an existing file
  that is not a regular file (device nodes, FIFOs) or that is executable, and
  a symlink as the last path component (``O_NOFOLLOW``: a planted link in
  ``/tmp`` must not redirect the log). The file is opened in append mode and
  each entry is one ``write(2)``, so several worker processes can share it.
  Before each write the path is ``stat``-ed: when it no longer names the open
  file (log rotation moved it, or somebody deleted it) the device reopens the
  path, so a deleted log is recreated rather than silently written into an
  unlinked inode, and a path that cannot be reopened makes the write fail.
  No fsync: an entry reaches the page cache before the request goes on.
* **socket** -- ``address`` (``host:port``, ``[v6]:port`` or a unix socket
  path), ``socket_type`` tcp (default), udp or unix, ``write_timeout`` (whole
  seconds, at least 1; default 2s). A write that does not drain in time fails
  and drops the connection (a partial line may have been sent); a connection
  the peer closed is noticed before the next write and re-established once.
  UDP is fire-and-forget: a lost datagram cannot be seen, as in Vault.
* **syslog** -- a datagram to the local syslog socket (``/dev/log``) with
  ``facility`` (AUTH) and ``tag`` (vault), RFC 3164 framing.
"""

from __future__ import annotations

import asyncio
import os
import socket
import stat
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Protocol

from strongroom.durations import parse_duration
from strongroom.logical.errors import UserError

DEFAULT_FILE_MODE = 0o600
DEFAULT_WRITE_TIMEOUT = 2.0
_FORBIDDEN_ROOTS = ("/proc", "/sys", "/dev")
_SYSLOG_SOCKETS = ("/dev/log", "/var/run/syslog", "/var/run/log")
_SYSLOG_FACILITIES = {
    "KERN": 0,
    "USER": 1,
    "MAIL": 2,
    "DAEMON": 3,
    "AUTH": 4,
    "SYSLOG": 5,
    "LPR": 6,
    "NEWS": 7,
    "UUCP": 8,
    "CRON": 9,
    "AUTHPRIV": 10,
    "FTP": 11,
    **{f"LOCAL{i}": 16 + i for i in range(8)},
}
_SEVERITY_INFO = 6


class DeviceError(Exception):
    """A sink could not deliver a line; the message names no entry content."""


class Device(Protocol):
    """What the broker needs from a sink."""

    async def open(self) -> None:
        """Make sure the sink is usable now (the sanity check when a device is enabled)."""
        ...

    async def write(self, line: bytes) -> None:
        """Deliver one whole entry (ending in a newline) or raise."""
        ...

    async def close(self) -> None: ...


def _os_reason(err: OSError) -> str:
    """An OSError without the file name (which ``str(err)`` would repeat back)."""
    return err.strerror or type(err).__name__


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        if written <= 0:
            raise DeviceError("short write")
        view = view[written:]


# -- file ----------------------------------------------------------------------------------------


def parse_file_mode(raw: str | None) -> int:
    """An octal mode string (Vault's ``"0600"``); refuse anything that grants execution."""
    if raw is None or raw.strip() == "":
        return DEFAULT_FILE_MODE
    text = raw.strip()
    if text.lower().startswith("0o"):
        text = text[2:]
    if not text.isdigit():
        raise UserError("mode must be an octal file mode such as 0600")
    try:
        mode = int(text, 8)
    except ValueError:
        raise UserError("mode must be an octal file mode such as 0600") from None
    if mode > 0o777:
        raise UserError("mode must not set the setuid, setgid or sticky bits")
    if mode & 0o111:
        raise UserError("mode must not grant execute permission")
    return mode


def check_file_path(path: str, storage_dir: str | None) -> str:
    """Refuse destinations an audit log must never be written to; return the path as given."""
    if path in ("stdout", "discard"):
        return path
    if "\x00" in path or not path:
        raise UserError("file_path is invalid")
    if not os.path.isabs(path):
        raise UserError("file_path must be an absolute path (or stdout / discard)")
    if path.endswith("/"):
        raise UserError("file_path must name a file, not a directory")
    real = os.path.realpath(path)
    for candidate in {path, real}:
        parts = PurePosixPath(os.path.normpath(candidate))
        for root in _FORBIDDEN_ROOTS:
            if parts == PurePosixPath(root) or PurePosixPath(root) in parts.parents:
                raise UserError(f"file_path must not be under {root}")
    if storage_dir:
        store = PurePosixPath(os.path.realpath(storage_dir))
        here = PurePosixPath(real)
        if here == store or store in here.parents:
            raise UserError("file_path must not be inside the storage directory")
    return path


class FileDevice:
    """Appends lines to a file, reopening it when the path stops naming the open file."""

    def __init__(self, path: str, mode: int = DEFAULT_FILE_MODE) -> None:
        self.path = path
        self.mode = mode
        self._fd: int | None = None
        self._ident: tuple[int, int] | None = None

    def _reopen(self) -> None:
        self._close_fd()
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW
        try:
            fd = os.open(self.path, flags, self.mode or DEFAULT_FILE_MODE)
        except OSError as err:
            raise DeviceError(f"cannot open the audit log file: {_os_reason(err)}") from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise DeviceError("the audit log path is not a regular file")
            if st.st_mode & 0o111:
                raise DeviceError("refusing to append to an executable file")
            if self.mode and stat.S_IMODE(st.st_mode) != self.mode:
                os.fchmod(fd, self.mode)
        except OSError as err:
            os.close(fd)
            raise DeviceError(f"cannot prepare the audit log file: {_os_reason(err)}") from None
        except DeviceError:
            os.close(fd)
            raise
        self._fd, self._ident = fd, (st.st_dev, st.st_ino)

    def _moved(self) -> bool:
        try:
            st = os.stat(self.path, follow_symlinks=False)
        except OSError:
            return True
        return (st.st_dev, st.st_ino) != self._ident

    def _close_fd(self) -> None:
        if self._fd is not None:
            try:
                os.close(self._fd)
            except OSError:
                pass
        self._fd, self._ident = None, None

    async def open(self) -> None:
        self._reopen()

    async def write(self, line: bytes) -> None:
        # a small blocking write: cheaper than a thread hop, and the page cache absorbs it
        if self._fd is None or self._moved():
            self._reopen()
        assert self._fd is not None
        try:
            _write_all(self._fd, line)
        except OSError as err:
            self._close_fd()  # reopen on the next write: the file may come back
            raise DeviceError(f"cannot write the audit log file: {_os_reason(err)}") from None

    async def close(self) -> None:
        self._close_fd()


class StdoutDevice:
    """``file_path=stdout``: entries go to the server's standard output."""

    async def open(self) -> None:
        return None

    async def write(self, line: bytes) -> None:
        try:
            sys.stdout.flush()
            _write_all(sys.stdout.fileno(), line)
        except (OSError, ValueError) as err:
            raise DeviceError(f"cannot write to stdout: {type(err).__name__}") from None

    async def close(self) -> None:
        return None


class DiscardDevice:
    """``file_path=discard``: formats and drops every entry (counts as recorded, as in Vault)."""

    async def open(self) -> None:
        return None

    async def write(self, line: bytes) -> None:
        return None

    async def close(self) -> None:
        return None


# -- socket --------------------------------------------------------------------------------------


def parse_timeout(raw: str | None) -> float:
    if raw is None or raw.strip() == "":
        return DEFAULT_WRITE_TIMEOUT
    try:
        seconds = parse_duration(raw.strip())
    except ValueError:
        raise UserError("write_timeout must be a duration such as 2s") from None
    return float(max(seconds, 1))


def split_host_port(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UserError("address must be host:port")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


class StreamSocketDevice:
    """TCP or unix stream socket: one connection, reconnected once when it broke."""

    def __init__(self, socket_type: str, address: str, timeout: float) -> None:
        self.socket_type = socket_type
        self.address = address
        self.timeout = timeout
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._lock = asyncio.Lock()

    async def _connect(self) -> None:
        try:
            if self.socket_type == "unix":
                conn = asyncio.open_unix_connection(self.address)
            else:
                host, port = split_host_port(self.address)
                conn = asyncio.open_connection(host, port)
            reader, writer = await asyncio.wait_for(conn, self.timeout)
        except (OSError, UserError) as err:
            raise DeviceError(f"cannot connect to the audit socket: {type(err).__name__}") from None
        # drain() then waits until the line has left our buffer for the kernel
        writer.transport.set_write_buffer_limits(high=0)
        self._reader, self._writer = reader, writer

    async def _drop(self) -> None:
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            writer.close()
            try:
                await asyncio.wait_for(writer.wait_closed(), 0.1)
            except (OSError, TimeoutError):
                pass

    def _usable(self) -> bool:
        return (
            self._writer is not None
            and self._reader is not None
            and not self._writer.is_closing()
            and not self._reader.at_eof()
        )

    async def open(self) -> None:
        async with self._lock:
            if not self._usable():
                await self._drop()
                await self._connect()

    async def write(self, line: bytes) -> None:
        # Writes are serialised so lines never interleave. Waiting for the lock is bounded
        # by the write timeout too: behind a hung peer each request gives up after about
        # one timeout instead of queueing behind every earlier request's full timeout.
        try:
            await asyncio.wait_for(self._lock.acquire(), self.timeout)
        except TimeoutError:
            raise DeviceError("timed out waiting for earlier writes to the audit socket") from None
        try:
            await self._write_locked(line)
        finally:
            self._lock.release()

    async def _write_locked(self, line: bytes) -> None:
        for attempt in (1, 2):
            try:
                if not self._usable():
                    await self._drop()
                    await self._connect()
                assert self._writer is not None
                self._writer.write(line)
                await asyncio.wait_for(self._writer.drain(), self.timeout)
                return
            except TimeoutError:
                await self._drop()  # the peer may hold half a line: start over next time
                raise DeviceError("timed out writing to the audit socket") from None
            except (OSError, RuntimeError) as err:
                await self._drop()
                if attempt == 2:
                    raise DeviceError(f"cannot write to the audit socket: {type(err).__name__}") from None

    async def close(self) -> None:
        async with self._lock:
            await self._drop()


class UdpSocketDevice:
    """UDP: each line is one datagram; delivery cannot be confirmed."""

    def __init__(self, address: str) -> None:
        self.address = address
        self._transport: asyncio.DatagramTransport | None = None

    async def open(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            return
        host, port = split_host_port(self.address)
        loop = asyncio.get_running_loop()
        try:
            transport, _ = await loop.create_datagram_endpoint(
                asyncio.DatagramProtocol, remote_addr=(host, port)
            )
        except OSError as err:
            raise DeviceError(f"cannot open the audit socket: {_os_reason(err)}") from None
        self._transport = transport

    async def write(self, line: bytes) -> None:
        await self.open()
        assert self._transport is not None
        self._transport.sendto(line)

    async def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
        self._transport = None


# -- syslog --------------------------------------------------------------------------------------


class SyslogDevice:
    """RFC 3164 datagrams to the local syslog daemon."""

    def __init__(self, facility: str, tag: str, timeout: float = DEFAULT_WRITE_TIMEOUT) -> None:
        code = _SYSLOG_FACILITIES.get(facility.upper())
        if code is None:
            raise UserError("unknown syslog facility")
        if not tag or any(c in tag for c in "\r\n\x00 "):
            raise UserError("tag must be a non-empty word")
        self._header = f"<{code * 8 + _SEVERITY_INFO}>{tag}[{os.getpid()}]: ".encode()
        self.timeout = timeout
        self._sock: socket.socket | None = None

    async def open(self) -> None:
        if self._sock is not None:
            return
        for path in _SYSLOG_SOCKETS:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            sock.setblocking(False)
            try:
                sock.connect(path)
            except OSError:
                sock.close()
                continue
            self._sock = sock
            return
        raise DeviceError("no local syslog socket")

    async def write(self, line: bytes) -> None:
        await self.open()
        assert self._sock is not None
        loop = asyncio.get_running_loop()
        try:
            await asyncio.wait_for(
                loop.sock_sendall(self._sock, self._header + line.rstrip(b"\n")), self.timeout
            )
        except (OSError, TimeoutError) as err:
            await self.close()
            raise DeviceError(f"cannot write to syslog: {type(err).__name__}") from None

    async def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
        self._sock = None


# -- construction --------------------------------------------------------------------------------


@dataclass(frozen=True)
class SinkSpec:
    """A validated device configuration (what ``build`` turns into a sink)."""

    type: str
    options: Mapping[str, str]
    storage_dir: str | None = None


DEVICE_TYPES = ("file", "socket", "syslog")


def build(spec: SinkSpec) -> Device:
    """Validate the type-specific options and return an unopened sink (UserError on bad input)."""
    opts = spec.options
    if spec.type == "file":
        path = opts.get("file_path") or opts.get("path") or ""
        if not path:
            raise UserError("file_path is required")
        check_file_path(path, spec.storage_dir)
        mode = parse_file_mode(opts.get("mode"))
        if path == "stdout":
            return StdoutDevice()
        if path == "discard":
            return DiscardDevice()
        return FileDevice(path, mode)
    if spec.type == "socket":
        address = opts.get("address", "")
        if not address:
            raise UserError("address is required")
        socket_type = (opts.get("socket_type") or "tcp").lower()
        timeout = parse_timeout(opts.get("write_timeout"))
        if socket_type in ("tcp", "tcp4", "tcp6"):
            split_host_port(address)
            return StreamSocketDevice("tcp", address, timeout)
        if socket_type == "unix":
            if not os.path.isabs(address):
                raise UserError("a unix socket address must be an absolute path")
            return StreamSocketDevice("unix", address, timeout)
        if socket_type in ("udp", "udp4", "udp6"):
            split_host_port(address)
            return UdpSocketDevice(address)
        raise UserError("socket_type must be tcp, udp or unix")
    if spec.type == "syslog":
        return SyslogDevice(opts.get("facility") or "AUTH", opts.get("tag") or "vault")
    raise UserError(f"unknown backend type: {spec.type}")
