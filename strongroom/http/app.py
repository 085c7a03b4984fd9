"""The ASGI application: HTTP in, logical request to core, Vault's envelope out.

This layer only translates. It enforces the request-size and JSON-depth
limits, decodes and canonicalises the path before anything looks at it (so
``%2e%2e``, ``%2F`` and ``//`` cannot slip past a policy), and maps the error
tree to status codes. All semantics live in core.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl, unquote

import orjson

from strongroom.durations import parse_duration
from strongroom.http.envelope import error_body, render_response
from strongroom.logical.errors import (
    PayloadTooLarge,
    StrongroomError,
    UnsupportedMediaType,
    UnsupportedOperation,
    UnsupportedPath,
    UserError,
)
from strongroom.logical.request import Connection, Operation, Request, Response

log = logging.getLogger("strongroom.http")

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
Handler = Callable[[Request], Awaitable[Response | None]]

MAX_JSON_DEPTH = 500
DEFAULT_MAX_REQUEST_SIZE = 32 * 1024 * 1024

_METHODS = {
    "GET": Operation.READ,
    "HEAD": Operation.READ,
    "POST": Operation.UPDATE,
    "PUT": Operation.UPDATE,
    "DELETE": Operation.DELETE,
    "PATCH": Operation.PATCH,
    "LIST": Operation.LIST,
}
# bodies handed to the handler as bytes, not parsed as JSON or a form
_BINARY_TYPES = ("application/ocsp-request", "application/jose+json")  # engines parse these themselves
_BASE_HEADERS = [(b"cache-control", b"no-store"), (b"content-type", b"application/json")]


def _request_id() -> str:
    raw = os.urandom(16).hex()  # a random (version 4 layout) UUID, without uuid.UUID's overhead
    return f"{raw[:8]}-{raw[8:12]}-4{raw[13:16]}-{_VARIANT[int(raw[16], 16)]}{raw[17:20]}-{raw[20:]}"


_VARIANT = "89ab89ab89ab89ab"


def canonical_path(raw: str) -> str:
    """Decode and clean a request path; refuse anything that could escape a rule."""
    if (
        "%" not in raw
        and "//" not in raw
        and "/." not in raw
        and raw[:1] not in ("", ".", "/")
        and len(raw) <= 8192
    ):
        if "\x00" in raw:
            raise UserError("invalid request path")
        return raw  # already canonical: the common case costs no split and join
    path = unquote(raw, errors="strict")
    if "\x00" in path or len(path) > 8192:
        raise UserError("invalid request path")
    trailing = path.endswith("/")
    parts = [p for p in path.split("/") if p != ""]
    for part in parts:
        if part in (".", ".."):
            raise UserError("invalid request path: relative path segments are not allowed")
    clean = "/".join(parts)
    if trailing and clean:
        clean += "/"
    return clean


def json_depth_ok(body: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Check nesting depth before json.loads can hit a RecursionError."""
    depth = 0
    in_string = False
    escaped = False
    for byte in body:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:
                escaped = True
            elif byte == 0x22:
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x7B, 0x5B):
            depth += 1
            if depth > limit:
                return False
        elif byte in (0x7D, 0x5D):
            depth -= 1
    return True


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
# a run of digits long enough to be an integer orjson would turn into a float (beyond 64 bits)
_LONG_NUMBER = re.compile(rb"\d{19}")


def _no_constant(name: str) -> Any:
    raise ValueError("NaN and Infinity are not JSON")  # Python accepts them; no other client does


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError("number out of range")  # 1e400 would come back as the non-JSON Infinity
    return value


def _encodable(data: Any) -> bool:
    """Whether every string in ``data`` is valid Unicode (a JSON escape can encode half a pair)."""
    try:
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def parse_body(body: bytes, content_type: str) -> dict[str, Any]:
    stripped = body.strip()
    if not stripped:
        return {}
    if content_type.startswith("application/x-www-form-urlencoded") and stripped[:1] not in (b"{", b"["):
        try:
            return dict(parse_qsl(stripped.decode("utf-8"), keep_blank_values=True))
        except UnicodeDecodeError:
            raise UserError("failed to parse form body") from None
    if stripped[:1] == b"{":
        data = _fast_object(stripped)
        if data is not None:
            return data
    if b"{" in stripped[:1] or b"[" in stripped[:1]:
        if len(stripped) > 64 and not json_depth_ok(stripped):
            raise UserError("failed to parse JSON input: nesting depth exceeds the limit")
    try:
        text = stripped.decode("utf-8")  # strict: json.loads(bytes) would let lone surrogates through
        data = json.loads(text, parse_constant=_no_constant, parse_float=_finite_float)
    except UnicodeDecodeError:
        raise UserError("failed to parse JSON input: the body is not valid UTF-8") from None
    except (ValueError, RecursionError):
        raise UserError("failed to parse JSON input: malformed JSON body") from None
    if _SURROGATE_ESCAPE.search(text) and not _encodable(data):
        raise UserError("failed to parse JSON input: unpaired surrogate in a string")
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError("failed to parse JSON input: the body must be a JSON object")
    return data


def _fast_object(body: bytes) -> dict[str, Any] | None:
    """The common body, a JSON object, parsed by orjson; None sends it to the json module.

    orjson yields what ``json.loads`` yields for every body it accepts, except integers
    beyond 64 bits (it makes them floats: such bodies are left to the json module), and
    it refuses what we refuse (NaN, Infinity, numbers out of range, lone surrogates,
    invalid UTF-8), which the json module then refuses with our texts. Nesting is bounded
    by counting brackets: a body with at most MAX_JSON_DEPTH of them cannot nest deeper.
    """
    if body.count(b"{") + body.count(b"[") > MAX_JSON_DEPTH or _LONG_NUMBER.search(body):
        return None
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None


def parse_wrap_ttl(value: str) -> int:
    try:
        ttl = parse_duration(value)
    except ValueError:
        raise UserError("error parsing X-Vault-Wrap-TTL header") from None
    if ttl < 0:
        raise UserError("error parsing X-Vault-Wrap-TTL header")
    return ttl


class App:
    """ASGI entry point; ``handler`` is Core.handle_request (or a test double)."""

    def __init__(
        self,
        handler: Handler,
        *,
        max_request_size: int = DEFAULT_MAX_REQUEST_SIZE,
        ui: Callable[[Scope, Receive, Send], Awaitable[None]] | None = None,
    ) -> None:
        self.handler = handler
        self.max_request_size = max_request_size
        self.ui = ui

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
        if not raw_path.startswith(b"/v1/"):
            if self.ui is not None and (raw_path == b"/" or raw_path.startswith(b"/ui")):
                await self.ui(scope, receive, send)
                return
            await self._send(send, 404, error_body([]), scope["method"] == "HEAD")
            return
        method = scope["method"]
        head = method == "HEAD"
        try:
            req = await self._build_request(scope, receive)
            response = await self.handler(req)
            status, headers, body = render_response(req, response)
        except StrongroomError as err:
            status, headers, body = err.status, [], error_body(err.errors, err.data, err)
        except Exception:
            log.exception("internal error handling %s", scope.get("path"))
            status, headers, body = 500, [], error_body(["internal error"])
        await self._send(send, status, body, head, headers)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _send(
        self,
        send: Send,
        status: int,
        body: bytes,
        head: bool,
        extra: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        headers = list(_BASE_HEADERS)
        if extra:
            names = {name for name, _ in extra}
            headers = [h for h in headers if h[0] not in names] + extra
        if status == 204:
            body = b""
            headers = [h for h in headers if h[0] != b"content-type"]
        headers.append((b"content-length", str(0 if head else len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if head else body})

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes:
        limit = self.max_request_size
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    if int(value) > limit:
                        raise PayloadTooLarge("http: request body too large")
                except ValueError:
                    raise UserError("invalid Content-Length") from None
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge("http: request body too large")
            chunks.append(chunk)
            more = message.get("more_body", False)
        return b"".join(chunks)

    async def _build_request(self, scope: Scope, receive: Receive) -> Request:
        method = scope["method"]
        query_string = scope.get("query_string", b"")
        query = (
            dict(parse_qsl(query_string.decode("latin-1"), keep_blank_values=True)) if query_string else {}
        )
        op = _METHODS.get(method)
        if op is None:
            raise UnsupportedOperation()
        raw_path = (scope.get("raw_path") or scope["path"].encode())[4:].split(b"?", 1)[0]
        try:
            path = canonical_path(raw_path.decode("utf-8"))
        except UnicodeDecodeError:
            raise UserError("invalid request path") from None
        # ASGI servers send lower-case header names already
        headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}
        body = await self._read_body(scope, receive)
        content_type = headers.get("content-type", "")
        if op == Operation.READ and query.get("list", "").lower() in ("true", "1"):
            op = Operation.LIST
        if op == Operation.PATCH and not content_type.startswith("application/merge-patch+json"):
            raise UnsupportedMediaType(
                "PATCH requires Content-Type application/merge-patch+json, got " + repr(content_type[:64])
            )
        if op in (Operation.UPDATE, Operation.PATCH) and path.endswith("/"):
            raise UserError("cannot write to a path ending in '/'")
        if op in (Operation.UPDATE, Operation.PATCH):
            data = {} if content_type.startswith(_BINARY_TYPES) else parse_body(body, content_type)
        else:
            data = {k: v for k, v in query.items() if k not in ("list", "help")}
            if body.strip() and op == Operation.DELETE:
                data.update(parse_body(body, content_type))
        if query.get("help", "") not in ("", "0", "false"):
            op = Operation.HELP
        if op == Operation.LIST and not path.endswith("/") and path:
            path += "/"
        token = headers.get("x-vault-token", "")
        if not token:
            auth = headers.get("authorization", "")
            if auth[:7].lower() == "bearer ":
                token = auth[7:].strip()
        wrap_ttl = 0
        if "x-vault-wrap-ttl" in headers:
            wrap_ttl = parse_wrap_ttl(headers["x-vault-wrap-ttl"])
        client = scope.get("client") or ("", 0)
        tls = (scope.get("extensions") or {}).get("tls")
        connection = Connection(
            remote_addr=client[0] or "",
            remote_port=client[1] or 0,
            tls=scope.get("scheme") == "https",
            client_cert_chain=list(tls.get("client_cert_chain", [])) if tls else [],
        )
        if not path:
            raise UnsupportedPath()
        return Request(
            operation=op,
            path=path,
            data=data,
            client_token=token,
            request_id=_request_id(),
            headers=headers,
            query=query,
            connection=connection,
            wrap_ttl=wrap_ttl,
            wrap_format=headers.get("x-vault-wrap-format", ""),
            raw_body=body,
            method=method,
        )
