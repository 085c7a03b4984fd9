"""Fuzz every operation of our own OpenAPI document: no input may produce a 5xx.

The document is the one ``GET sys/internal/specs/openapi`` serves to a root token
on a core with kv v2 at ``kv/``, kv v1 at ``kv1/`` and approle at
``auth/approle/``, plus userpass at ``auth/userpass/`` once it is registered in
assemble.py (github and pki are registered but not mounted here: github's login calls
out to GitHub). It is
validated with openapi-spec-validator, then every (path template, method) in it
(but DENYLIST) runs in three token modes -- the root token, no token, and a token
whose policy grants a little -- each on its own fresh in-memory core:

1. a deterministic sweep: every path parameter, query parameter and body field gets
   each trap of PATH_TRAPS / QUERY_TRAPS / BODY_TRAPS alone (lone surrogates, NUL,
   10**5000, 1e400, NaN, wrong types, nesting, 10 000-character strings ...), and
   again with the other fields plausibly set;
2. hypothesis: path parameters from realistic and odd segments (unicode, spaces,
   ``%``, lone surrogates, very long), JSON bodies built from the operation's schema
   properties mixing valid values, wrong types, nulls, nested junk, numbers no
   Python ``int()`` accepts, long strings and unknown keys, query parameters likewise,
   sometimes a wrap TTL header. derandomize=True: the same examples on every run.

Every response must be < 500, every 4xx must be Vault's ``{"errors": [str, ...]}``
(kv v2's deliberate "Invalid path" 404 warning, and a status sys/health was asked for with
its ``*code`` parameters, aside), every 2xx JSON body must be
strict JSON (no NaN / Infinity), and nothing may take 2 s or more. A failure
quotes the request and the server's traceback (the app logs ``internal error
handling ...`` on ``strongroom.http``). 500s whose traceback matches a recorded
finding (FINDINGS) raise KnownFinding, and the cases known to hit one are
xfail(strict=True) -- see KNOWN_5XX; FIXED_FINDINGS keeps each fixed 500 as a fixed request.

Requests go straight into the ASGI app (no httpx) so the fuzzer controls the exact
path bytes. The targeted tests at the end cover security-and-reliability.md §6
item 1's Python traps as raw bodies and raw paths on representative write endpoints.
Deeper local run: STRONGROOM_FUZZ_SCALE=8 (examples x8; known-finding marks turn non-strict).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import time
from collections.abc import Callable, Iterator, MutableMapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from openapi_spec_validator import validate

from strongroom.core.mounts import MountEntry
from strongroom.core.tokens import TokenEntry
from strongroom.testing import Harness, running_core

pytestmark = pytest.mark.slow

# -- budget ----------------------------------------------------------------------------------------
# Hypothesis examples per operation and token mode, on top of the sweep. Measured on 2 cores:
# the whole file takes about 65 s of CPU (255 operations x 3 token modes, ~15k examples,
# ~29k sweep requests); more on a loaded machine.
_SCALE = float(os.environ.get("STRONGROOM_FUZZ_SCALE", "1"))
EXAMPLES = {mode: max(1, int(n * _SCALE)) for mode, n in {"root": 40, "none": 8, "limited": 10}.items()}
SLOW_SECONDS = 2.0

# -- what is not fuzzed, and why -------------------------------------------------------------------
# (method, path template) -> reason. Matching operations are left out of the run; the
# test below fails if one of these stops existing, so the list cannot silently rot.
DENYLIST: dict[tuple[str, str], str] = {
    ("post", "/sys/seal"): "seals the core: every later request of the operation would be a 503",
    ("post", "/sys/step-down"): "steps the node down: every later request would be a standby answer",
}
# Path-parameter values kept away from operations that would remove the mounts the
# rest of that operation's examples need (each operation has its own core, so this
# only protects the operation's own later examples).
PROTECTED_MOUNT_VALUES: dict[tuple[str, str], frozenset[str]] = {
    ("delete", "/sys/mounts/{path}"): frozenset({"kv", "kv/", "kv1", "kv1/"}),
    ("delete", "/sys/auth/{path}"): frozenset({"approle", "approle/"}),
}

LIMITED_POLICY = """
path "kv/data/seed*" { capabilities = ["create", "read", "update", "patch", "delete", "list"] }
path "kv/metadata/*" { capabilities = ["read", "list"] }
path "kv1/*" { capabilities = ["read", "list"] }
path "cubbyhole/*" { capabilities = ["create", "read", "update", "delete", "list"] }
path "auth/token/*" { capabilities = ["create", "read", "update"] }
path "auth/approle/role/seed/*" { capabilities = ["read", "update"] }
path "sys/policies/acl/seed" { capabilities = ["read", "update"] }
path "sys/tools/*" { capabilities = ["update"] }
path "sys/leases/*" { capabilities = ["update", "read", "list"] }
path "sys/mounts" { capabilities = ["read"] }
path "auth/userpass/users/seed*" { capabilities = ["read", "update"] }
"""

SERVER_LOGGER = "strongroom"


@pytest.fixture(autouse=True)
def _cheap_bcrypt(monkeypatch: pytest.MonkeyPatch) -> None:
    """userpass hashes at bcrypt cost 10 (~0.1 s a hash); cost 4 keeps thousands of requests cheap."""
    try:
        from strongroom.auth import userpass
    except ImportError:
        return
    if hasattr(userpass, "BCRYPT_COST"):
        monkeypatch.setattr(userpass, "BCRYPT_COST", 4)


# -- the harness -----------------------------------------------------------------------------------


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes
    seconds: float


@dataclass
class Sent:
    method: str
    raw_path: bytes
    query: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    def describe(self) -> str:
        headers = {k: ("<token>" if k == "x-vault-token" and v else v) for k, v in self.headers.items()}
        body = self.body if len(self.body) <= 2000 else self.body[:2000] + b"...(%d bytes)" % len(self.body)
        target = self.raw_path + (b"?" + self.query if self.query else b"")
        if len(target) > 600:
            target = target[:600] + b"...(%d bytes)" % len(target)
        return f"{self.method} {target!r}\n  headers: {headers}\n  body: {body!r}"


async def asgi_call(h: Harness, sent: Sent) -> Reply:
    """One request straight into the app, path bytes exactly as given."""
    chunks: list[MutableMapping[str, Any]] = []
    delivered = False

    async def receive() -> MutableMapping[str, Any]:
        nonlocal delivered
        if delivered:
            return {"type": "http.disconnect"}
        delivered = True
        return {"type": "http.request", "body": sent.body, "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        chunks.append(message)

    headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in sent.headers.items()]
    headers.append((b"content-length", str(len(sent.body)).encode()))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": sent.method,
        "scheme": "http",
        "path": sent.raw_path.decode("latin-1"),
        "raw_path": sent.raw_path,
        "query_string": sent.query,
        "headers": headers,
        "client": ("127.0.0.1", 12345),
        "server": ("strongroom.test", 80),
    }
    start = time.perf_counter()
    await h.app(scope, receive, send)
    seconds = time.perf_counter() - start
    head = next(m for m in chunks if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in chunks if m["type"] == "http.response.body")
    reply_headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in head.get("headers", [])}
    return Reply(head["status"], reply_headers, body, seconds)


async def _ok(h: Harness, method: str, path: str, body: Any = None, token: str | None = None) -> Any:
    r = await h.call(method, path, json=body, token=token)
    assert r.status_code < 300, (method, path, r.status_code, r.text)
    return r.json() if r.status_code == 200 else None


async def setup_core(h: Harness) -> dict[str, str]:
    """Mount the engines, seed a little state to hit, and mint the limited token."""
    await h.core.enable_mount(MountEntry("kv/", "kv", options={"version": "2"}))
    await h.core.enable_mount(MountEntry("kv1/", "kv", options={"version": "1"}))
    await h.core.enable_mount(MountEntry("approle/", "approle", table="auth"))
    if "userpass" in h.core.auth_factories:  # registered in assemble.py
        await h.core.enable_mount(MountEntry("userpass/", "userpass", table="auth"))
        await _ok(
            h, "POST", "auth/userpass/users/seed", {"password": "seed-password", "token_policies": ["seed"]}
        )
    await _ok(h, "POST", "sys/policies/acl/fuzz-limited", {"policy": LIMITED_POLICY})
    await _ok(h, "POST", "sys/policies/acl/seed", {"policy": 'path "kv/*" { capabilities = ["read"] }'})
    await _ok(h, "POST", "kv/data/seed", {"data": {"a": "1", "b": {"c": [1, 2]}}})
    await _ok(h, "POST", "kv/data/seed", {"data": {"a": "2"}})
    await _ok(h, "POST", "kv/data/seed/child", {"data": {"x": "y"}})
    await _ok(h, "POST", "kv1/seed", {"a": "1"})
    await _ok(h, "POST", "cubbyhole/seed", {"a": "1"})
    await _ok(h, "POST", "auth/approle/role/seed", {"token_policies": ["default"], "secret_id_num_uses": 0})
    secret = await _ok(h, "POST", "auth/approle/role/seed/secret-id", {})
    await _ok(h, "POST", "auth/token/roles/seed", {"allowed_policies": ["default", "seed"]})
    child = await _ok(h, "POST", "auth/token/create", {"policies": ["seed"], "ttl": "1h"})
    limited = await _ok(h, "POST", "auth/token/create", {"policies": ["fuzz-limited"], "ttl": "1h"})
    return {
        "root": h.root_token,
        "limited": limited["auth"]["client_token"],
        "none": "",
        "child_accessor": child["auth"]["accessor"],
        "secret_id_accessor": secret["data"]["secret_id_accessor"],
    }


async def fresh_token(h: Harness, mode: str) -> str:
    policies = ["root"] if mode == "root" else ["fuzz-limited"]
    return (await h.core.tokens.create(TokenEntry(id="", policies=policies))).id


@functools.cache
def openapi_document() -> dict[str, Any]:
    async def fetch() -> dict[str, Any]:
        async with running_core() as h:
            await setup_core(h)
            r = await h.call("GET", "sys/internal/specs/openapi")
            assert r.status_code == 200, r.text
            return dict(r.json())

    return asyncio.run(fetch())


@dataclass(frozen=True)
class Operation:
    method: str
    template: str
    path_params: tuple[str, ...]
    query_params: tuple[tuple[str, str], ...]  # (name, schema as JSON)
    body_schema: str  # JSON of the request-body schema's properties ("" when none)
    content_type: str

    @property
    def id(self) -> str:
        return f"{self.method.upper()} {self.template}"


def operations() -> list[Operation]:
    out = []
    for template, item in openapi_document()["paths"].items():
        common = [p for p in item.get("parameters", []) if p.get("in") == "path"]
        for method, entry in item.items():
            if not isinstance(entry, dict) or "responses" not in entry:
                continue
            if (method, template) in DENYLIST:
                continue
            params = common + [p for p in entry.get("parameters", []) if p.get("in") == "path"]
            query = [p for p in entry.get("parameters", []) if p.get("in") == "query"]
            body_schema, content_type = "", ""
            for ctype, content in (entry.get("requestBody") or {}).get("content", {}).items():
                content_type = ctype
                body_schema = json.dumps(content.get("schema", {}).get("properties", {}), sort_keys=True)
            out.append(
                Operation(
                    method,
                    template,
                    tuple(p["name"] for p in params),
                    tuple((p["name"], json.dumps(p.get("schema", {}), sort_keys=True)) for p in query),
                    body_schema,
                    content_type,
                )
            )
    return out


# -- strategies ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Raw:
    """JSON text inserted verbatim (for numbers Python cannot print or parse as int)."""

    text: str


HUGE = "1" + "0" * 5000  # 10**5000: past int()'s 4300-digit limit
RAW_NUMBERS = [
    Raw(HUGE),
    Raw("-" + HUGE),
    Raw("1" + "0" * 4299),  # just under the limit
    Raw("1e400"),
    Raw("-1e400"),
    Raw("1e-400"),
    Raw("NaN"),
    Raw("Infinity"),
    Raw("-Infinity"),
    Raw("18446744073709551616"),
    Raw("9223372036854775808"),
    Raw("-9223372036854775809"),
    Raw("1.5"),
    Raw("-0"),
    Raw("0." + "1" * 5000),
]
ODD_STRINGS = [
    "",
    " ",
    "\t\n",
    "%",
    "%%",
    "%00",
    "%zz",
    "%2e%2e",
    "..",
    ".",
    "../..",
    "*",
    "+",
    "a b",
    "a?b=c",
    "a#b",
    "\\",
    "{path}",
    "'\"",
    "<script>",
    "\x00",
    "a\x00b",
    "\x7f",
    "\u202e",
    "\ufeff",
    "ü",
    "日本語",
    "🔑",
    "\ud800",
    "\udfff",
    "a\udc80b",
    "x" * 300,
    "x" * 9000,
    "null",
    "true",
    "[]",
    "{}",
    "0x10",
    " 5 ",
    "١٢٣",
    HUGE,
    "-" + HUGE,
    "1e400",
    "NaN",
    "${jndi:ldap://x}",
    "%s%n",
    "default",
    "root",
]
REAL_SEGMENTS = [
    "seed",
    "seed/child",
    "x",
    "a/b/c",
    "kv",
    "kv1",
    "approle",
    "cubbyhole",
    "sys",
    "token",
    "secret",
    "identity",
    "default",
    "root",
    "fuzz-limited",
    "auth/token/",
    "kv/",
    "sha2-256",
    "sha3-512",
    "platform",
    "all",
    "16",
    "0",
    "-1",
    "131073",
]
DURATIONS = [
    "0",
    "1s",
    "30s",
    "5m",
    "1h",
    "768h",
    "1d",
    "-1s",
    "1h30m",
    "9" * 30 + "h",
    "1e400s",
    "1.5h",
    "h",
    "",
]


def _text(max_size: int = 24) -> st.SearchStrategy[str]:
    return st.text(max_size=max_size)


SCALAR_JUNK = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),
    _text(),
    st.sampled_from(ODD_STRINGS),
    st.sampled_from(RAW_NUMBERS),
)
JUNK = st.recursive(
    SCALAR_JUNK,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(_text(8), inner, max_size=4)),
    max_leaves=12,
)
# The strings Python chokes on (security-and-reliability.md §6 item 1), drawn often on purpose:
# hypothesis's text() never produces a lone surrogate.
TRAP_STRINGS = ["\ud800", "\udfff", "a\udc80b", "\udc00\ud800", "a\x00b", HUGE, "x" * 10000]
ANY_STRING = st.one_of(
    _text(), st.sampled_from(ODD_STRINGS), st.sampled_from(REAL_SEGMENTS), st.sampled_from(TRAP_STRINGS)
)


def valid_value(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    kind = schema.get("type")
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    if schema.get("format") == "duration":
        return st.one_of(st.sampled_from(DURATIONS), st.integers(min_value=-10, max_value=10**7))
    if kind == "string":
        return ANY_STRING
    if kind == "integer":
        return st.one_of(
            st.integers(min_value=-5, max_value=200),
            st.sampled_from([0, 2**31, 2**63, 2**64, -(2**63) - 1]),
            st.sampled_from(["5", "-1", "0", "1e3", HUGE]),
        )
    if kind == "boolean":
        return st.one_of(st.booleans(), st.sampled_from(["true", "false", "1", "0", "yes", "T"]))
    if kind == "array":
        items = valid_value(schema.get("items", {"type": "string"}))
        return st.one_of(st.lists(items, max_size=5), st.sampled_from(["a,b", "", ",,", "default, root"]))
    if kind == "object":
        return st.one_of(
            st.dictionaries(_text(8), st.one_of(ANY_STRING, SCALAR_JUNK), max_size=4),
            st.sampled_from(['{"a":"b"}', "a=b,c=d", "", "=", "k="]),
        )
    return JUNK


def field_value(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    # roughly 3 parts plausible, 1 part junk
    valid = valid_value(schema)
    return st.one_of(valid, valid, valid, JUNK)


def encode_json(value: Any) -> str:
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, dict):
        return "{" + ",".join(json.dumps(str(k)) + ":" + encode_json(v) for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(encode_json(v) for v in value) + "]"
    return json.dumps(value)


def query_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return encode_json(value)


def encode_component(text: str, mode: str) -> bytes:
    """A path or query piece: percent-encoded (with or without '/'), or raw bytes."""
    if mode == "raw":
        return text.encode("utf-8", "surrogatepass")
    safe = "/" if mode == "keep-slash" else ""
    return quote(text.encode("utf-8", "surrogatepass"), safe=safe).encode("ascii")


def _template_parts(template: str) -> Iterator[tuple[bool, str]]:
    rest = template
    while "{" in rest:
        before, _, after = rest.partition("{")
        name, _, rest = after.partition("}")
        yield False, before
        yield True, name
    yield False, rest


def draw_request(data: st.DataObject, op: Operation, token: str, extra: dict[str, str]) -> Sent:
    protected = PROTECTED_MOUNT_VALUES.get((op.method, op.template), frozenset())
    segment = st.one_of(
        st.sampled_from(REAL_SEGMENTS),
        st.sampled_from(REAL_SEGMENTS),
        st.sampled_from(ODD_STRINGS),
        st.sampled_from(TRAP_STRINGS[:5]),
        _text(16),
        st.sampled_from([extra["child_accessor"], extra["secret_id_accessor"]]),
    ).filter(lambda s: s.strip("/") not in {p.strip("/") for p in protected})
    mode = data.draw(st.sampled_from(["quote", "quote", "keep-slash", "raw"]), label="path encoding")
    raw_path = b"/v1"
    for is_param, piece in _template_parts(op.template):
        if is_param:
            raw_path += encode_component(data.draw(segment, label=piece), mode)
        else:
            raw_path += piece.encode()

    headers: dict[str, str] = {}
    if token:
        headers["x-vault-token"] = token
    if data.draw(st.integers(0, 9), label="wrap?") == 0:
        headers["x-vault-wrap-ttl"] = data.draw(st.sampled_from(["60", "1m", "-1", "abc", "1e400", HUGE]))

    method = op.method.upper()
    query: list[tuple[str, str]] = []
    for name, schema_text in op.query_params:
        schema = json.loads(schema_text)
        if name == "list" and schema.get("enum") == ["true"]:
            if data.draw(st.booleans(), label="LIST verb"):
                method = "LIST"
            else:
                query.append(("list", "true"))
            continue
        if data.draw(st.booleans(), label=f"send {name}?"):
            query.append((name, query_text(data.draw(field_value(schema), label=name))))
    if data.draw(st.integers(0, 7), label="extra query?") == 0:
        query.append(
            data.draw(st.tuples(st.sampled_from(["help", "list", "version", "x", ""]), ANY_STRING), label="q")
        )
    qmode = data.draw(st.sampled_from(["quote", "raw"]), label="query encoding")
    query_bytes = b"&".join(encode_component(k, qmode) + b"=" + encode_component(v, qmode) for k, v in query)

    body = b""
    if op.content_type:
        headers["content-type"] = op.content_type
        props = json.loads(op.body_schema) if op.body_schema else {}
        shape = data.draw(st.integers(0, 19), label="body shape")
        if shape == 0:  # not an object at all
            body = data.draw(
                st.sampled_from([b"", b"null", b"[]", b"1", b'"s"', b"{", b"{}}", b"\xff", HUGE.encode()])
            )
        elif shape == 1:  # form-encoded
            headers["content-type"] = "application/x-www-form-urlencoded"
            body = data.draw(st.sampled_from([b"a=b", b"policy=%ff", b"=&=", b"\xff\xfe", b"data=x"]))
        else:
            names = sorted(props)
            chosen = data.draw(st.lists(st.sampled_from(names), unique=True), label="fields") if names else []
            value: dict[str, Any] = {}
            for name in chosen:
                value[name] = data.draw(field_value(props[name]), label=name)
            if data.draw(st.integers(0, 3), label="unknown keys?") == 0:
                value.update(data.draw(st.dictionaries(_text(8), JUNK, max_size=3), label="unknown"))
            body = encode_json(value).encode("utf-8", "surrogatepass")
    return Sent(method, raw_path, query_bytes, headers, body)


# -- the deterministic sweep ------------------------------------------------------------------------
# Before hypothesis runs, every path parameter, query parameter and body field of the operation
# gets each of these traps alone, everything else harmless, and each body field gets CONTEXT_TRAPS
# again with the other fields plausibly set (for handlers that check those first). This finds the
# traps in every operation on every run, whatever hypothesis happens to draw.

PATH_TRAPS = [
    b"%ED%A0%80",
    b"%00",
    b"x" * 9000,
    b"..",
    b"%2e%2e",
    b"a%20b",
    b"%E6%97%A5",
    b"seed%2Fchild",
    b"%ff",
]
QUERY_TRAPS = ["\ud800", ".", "..", "\x00", HUGE, "-1", "x" * 9000, "a/../b"]
BODY_TRAPS: list[Any] = [
    "\ud800",
    "a\udc80",
    "a\x00b",
    Raw(HUGE),
    Raw("1e400"),
    Raw("NaN"),
    None,
    [],
    {},
    [[["x"]]],
    {"a": {"b": None}},
    "x" * 10000,
    True,
    -1,
    "",
]
CONTEXT_TRAPS: list[Any] = ["\ud800", "a\x00b", Raw(HUGE), None, {"a": [1]}]


def plausible(schema: dict[str, Any]) -> Any:
    if "enum" in schema:
        return schema["enum"][0]
    if schema.get("format") == "duration":
        return "1h"
    return {"string": "seed", "integer": 1, "boolean": True, "array": ["seed"], "object": {"k": "v"}}.get(
        schema.get("type", ""), "seed"
    )


def sweep_requests(op: Operation, token: Callable[[], str]) -> Iterator[Sent]:
    def build(
        params: dict[str, bytes], query: list[tuple[bytes, bytes]], body: dict[str, Any] | None
    ) -> Sent:
        raw_path = b"/v1"
        for is_param, piece in _template_parts(op.template):
            raw_path += params.get(piece, b"seed") if is_param else piece.encode()
        headers = {"x-vault-token": token()} if token() else {}
        method = op.method.upper()
        if any(name == "list" for name, _ in op.query_params):
            query = [(b"list", b"true"), *query]
        payload = b""
        if op.content_type:
            headers["content-type"] = op.content_type
            payload = encode_json(body or {}).encode("utf-8", "surrogatepass")
        return Sent(method, raw_path, b"&".join(k + b"=" + v for k, v in query), headers, payload)

    yield build({}, [], None)
    for name in op.path_params:
        for trap in PATH_TRAPS:
            yield build({name: trap}, [], None)
    for name, _ in op.query_params:
        if name == "list":
            continue
        for text in QUERY_TRAPS:
            yield build({}, [(name.encode(), encode_component(text, "quote"))], None)
    props = json.loads(op.body_schema) if op.body_schema else {}
    for name in sorted(props):
        for value in BODY_TRAPS:
            yield build({}, [], {name: value})
        # the same field again with every other field plausibly set, for handlers that check
        # their other inputs first
        context = {k: plausible(schema) for k, schema in props.items() if k != name}
        if context:
            for value in CONTEXT_TRAPS:
                yield build({}, [], {**context, name: value})


# -- checks ----------------------------------------------------------------------------------------


def server_log(caplog: pytest.LogCaptureFixture) -> str:
    formatter = logging.Formatter("%(levelname)s %(name)s: %(message)s")
    records = [r for r in caplog.records if r.levelno >= logging.ERROR and r.name.startswith(SERVER_LOGGER)]
    return "\n".join(formatter.format(r) for r in records) or "(nothing logged)"


def _no_constants(name: str) -> Any:
    raise ValueError(f"non-standard JSON constant {name}")


def strict_json(body: bytes) -> Any:
    """RFC 8259 JSON only: Python's NaN / Infinity / -Infinity are not JSON to any other client."""
    return json.loads(body, parse_constant=_no_constants)


def is_error_shape(body: Any) -> bool:
    return (
        isinstance(body, dict)
        and isinstance(body.get("errors"), list)
        and all(isinstance(e, str) for e in body["errors"])
    )


KV2_INVALID_PATH_WARNING = (
    "Invalid path for a versioned K/V secrets engine. See the API docs for the appropriate API "
    "endpoints to use. If using the Vault CLI, use 'vault kv get' for this operation."
)


def is_kv2_invalid_path(status: int, body: Any) -> bool:
    """The one deliberate 4xx without "errors": kv v2 answers a path outside data/, metadata/ ...
    with a 404 carrying a warning, as Vault's versioned kv does (strongroom/engines/kv/v2.py)."""
    return status == 404 and isinstance(body, dict) and body.get("warnings") == [KV2_INVALID_PATH_WARNING]


class KnownFinding(AssertionError):
    """Only replies matching a recorded finding (FINDINGS) went wrong."""


def health_code_requested(sent: Sent, status: int) -> bool:
    """sys/health answers whatever status its ``*code`` query parameters ask for, 5xx included."""
    if sent.raw_path.rstrip(b"/") != b"/v1/sys/health":
        return False
    query = parse_qsl(sent.query.decode("latin-1"), keep_blank_values=True)
    return any(k.endswith("code") and v.strip() == str(status) for k, v in query)


def reply_problems(sent: Sent, reply: Reply) -> list[str]:
    problems = []
    if reply.seconds >= SLOW_SECONDS:
        problems.append(f"took {reply.seconds:.2f} s")
    if health_code_requested(sent, reply.status):
        return problems
    if reply.status >= 500:
        problems.append(f"status {reply.status}")
    if 400 <= reply.status < 500:
        try:
            body = strict_json(reply.body)
        except ValueError:
            body = None
        if not (is_error_shape(body) or is_kv2_invalid_path(reply.status, body)):
            problems.append('4xx body is not {"errors": [str, ...]}')
    json_reply = reply.headers.get("content-type", "").startswith("application/json")
    if 200 <= reply.status < 300 and reply.body and json_reply:
        try:
            strict_json(reply.body)
        except ValueError as err:
            problems.append(f"2xx body is not strict JSON ({err})")
    return problems


def check_reply(
    sent: Sent, reply: Reply, caplog: pytest.LogCaptureFixture, known: list[str] | None = None
) -> None:
    """Raise AssertionError on a bad reply; with ``known``, a recorded finding is appended instead."""
    problems = reply_problems(sent, reply)
    if not problems:
        return
    log_text = server_log(caplog)
    text = (
        f"{'; '.join(problems)}\n  request: {sent.describe()}\n  reply: {reply.status} {reply.body[:2000]!r}\n"
        f"  server log:\n{log_text}"
    )
    if known is not None and problems == ["status 500"]:
        for name, signature in FINDING_SIGNATURES.items():
            if all(part in log_text for part in signature):
                known.append(f"[{name}] {text}")
                return
    raise AssertionError(text)


# -- known findings --------------------------------------------------------------------------------
# Root causes of 500s this file has found and that are not fixed yet, recognised in the server's
# traceback (FINDINGS: name -> description; FINDING_SIGNATURES: name -> substrings of the logged
# traceback). A fuzz case that hits only
# these raises KnownFinding, and the (operation, token mode) cases listed in KNOWN_5XX are
# xfail(strict=True, raises=KnownFinding): anything else going wrong in them still fails, and once
# the finding is fixed they XPASS, fail, and the entries must go (to FIXED_FINDINGS below).
# Empty today: every 500 found so far was fixed in 16875ad.
FINDINGS: dict[str, str] = {}
FINDING_SIGNATURES: dict[str, tuple[str, ...]] = {}
# operation id ("POST /auth/token/lookup") -> (finding, token modes in which the sweep hits it)
KNOWN_5XX: dict[str, tuple[str, frozenset[str]]] = {}

# 500s found by this file and since fixed (16875ad), kept as fixed requests that must answer 400:
# name -> (method, path, query, raw JSON body, token mode). The body is ASCII but for raw bytes
# spelled \xNN. Before the fix each logged the traceback named in the comment.
FIXED_FINDINGS: dict[str, tuple[str, str, str, str, str]] = {
    # ValueError('invalid storage key') from storage.list in kv/v2.py _list_metadata: the
    # 'metadata/' route has no capture, so the query's 'path' was used uncanonicalised
    # (The kv/metadata/ LIST cases that 500ed here now ignore the query's 'path', as Vault's
    # capture does: see test_list_query_ignores_a_relative_path below.)
    # UnicodeEncodeError ('surrogates not allowed'): a lone surrogate reached a str.encode('utf-8')
    # in TokenStore.salt_id (lookup_raw, lookup_accessor, exists) ...
    "token-lookup": ("POST", "auth/token/lookup", "", '{"token": "\\ud800"}', "root"),
    "token-lookup-utf8-bytes": ("POST", "auth/token/lookup", "", '{"token": "\xed\xa0\x80"}', "root"),
    "token-lookup-accessor": (
        "POST",
        "auth/token/lookup-accessor",
        "",
        '{"accessor": "\\ud800"}',
        "root",
    ),
    "token-create-id": ("POST", "auth/token/create", "", '{"id": "\\ud800"}', "root"),
    "token-revoke": ("POST", "auth/token/revoke", "", '{"token": "\\ud800"}', "limited"),
    "token-renew-accessor": (
        "POST",
        "auth/token/renew-accessor",
        "",
        '{"accessor": "\\ud800"}',
        "root",
    ),
    "capabilities": ("POST", "sys/capabilities", "", '{"token": "\\ud800", "paths": ["kv/"]}', "root"),
    "capabilities-accessor": (
        "POST",
        "sys/capabilities-accessor",
        "",
        '{"accessor": "\\ud800", "paths": ["kv/"]}',
        "root",
    ),
    "wrapping-lookup-unauthenticated": (
        "POST",
        "sys/wrapping/lookup",
        "",
        '{"token": "\\ud800"}',
        "none",
    ),
    "wrapping-unwrap": ("POST", "sys/wrapping/unwrap", "", '{"token": "\\ud800"}', "root"),
    # ... in system_seal's generate-root attempt start ('otp', unauthenticated) ...
    "generate-root-otp-unauthenticated": (
        "POST",
        "sys/generate-root/attempt",
        "",
        '{"otp": "\\ud800"}',
        "none",
    ),
    # ... in the lockout hash auth/common.py _hash (approle login, unauthenticated) ...
    "approle-login-unauthenticated": (
        "POST",
        "auth/approle/login",
        "",
        '{"role_id": "\\ud800"}',
        "none",
    ),
    # ... and in approle's store hmac (role_id, secret_id, secret_id_accessor)
    "approle-role-id": (
        "POST",
        "auth/approle/role/seed/role-id",
        "",
        '{"role_id": "\\ud800"}',
        "root",
    ),
    "approle-custom-secret-id": (
        "POST",
        "auth/approle/role/seed/custom-secret-id",
        "",
        '{"secret_id": "\\ud800"}',
        "root",
    ),
    "approle-secret-id-accessor-lookup": (
        "POST",
        "auth/approle/role/seed/secret-id-accessor/lookup",
        "",
        '{"secret_id_accessor": "\\ud800"}',
        "root",
    ),
}


def _cases() -> list[Any]:
    cases = []
    for op in operations():
        for mode in EXAMPLES:
            marks = []
            if op.id in KNOWN_5XX:
                finding, modes = KNOWN_5XX[op.id]
                if _SCALE != 1 or mode in modes:
                    # a bigger budget may hit a finding in more modes: not strict then
                    strict = _SCALE == 1
                    marks.append(
                        pytest.mark.xfail(strict=strict, raises=KnownFinding, reason=FINDINGS[finding])
                    )
            cases.append(pytest.param(op, mode, id=f"{op.id}-{mode}", marks=marks))
    return cases


# -- tests -----------------------------------------------------------------------------------------


def test_document_is_valid_openapi() -> None:
    doc = openapi_document()
    validate(doc)
    paths = doc["paths"]
    for prefix in ("/kv/data/", "/kv1/", "/auth/approle/role/", "/sys/mounts", "/auth/token/create"):
        assert any(p.startswith(prefix) for p in paths), prefix
    assert len(operations()) > 100


def test_denylist_and_known_lists_name_real_operations() -> None:
    """The lists above name operations by their exact template; keep them honest."""
    doc = openapi_document()["paths"]
    for method, template in [*DENYLIST, *PROTECTED_MOUNT_VALUES]:
        assert method in doc.get(template, {}), (method, template)
    ids = {op.id for op in operations()}
    assert not set(KNOWN_5XX) - ids, set(KNOWN_5XX) - ids


@pytest.mark.parametrize(("op", "mode"), _cases())
def test_operation_never_5xx(op: Operation, mode: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger=SERVER_LOGGER)
    known: list[str] = []
    sweep_problems: list[str] = []
    fuzz_error: Exception | None = None
    with asyncio.Runner() as runner:
        context = running_core()
        h = runner.run(context.__aenter__())
        try:
            extra = runner.run(setup_core(h))
            tokens = {"root": extra["root"], "limited": extra["limited"], "none": ""}

            def send(sent: Sent) -> None:
                caplog.clear()
                check_reply(sent, runner.run(asgi_call(h, sent)), caplog, known)
                # a request may revoke the caller (revoke-self, revoke-prefix ...): re-mint it
                if mode != "none" and runner.run(h.core.tokens.lookup(tokens[mode])) is None:
                    tokens[mode] = runner.run(fresh_token(h, mode))

            @settings(
                max_examples=EXAMPLES[mode],
                deadline=None,
                derandomize=True,
                database=None,
                phases=[Phase.explicit, Phase.generate, Phase.shrink],
                suppress_health_check=[
                    HealthCheck.too_slow,
                    HealthCheck.data_too_large,
                    HealthCheck.filter_too_much,
                    HealthCheck.large_base_example,
                ],
            )
            @given(data=st.data())
            def fuzz(data: st.DataObject) -> None:
                send(draw_request(data, op, tokens[mode], extra))

            for sent in sweep_requests(op, lambda: tokens[mode]):
                try:
                    send(sent)
                except AssertionError as err:
                    sweep_problems.append(str(err))
            try:
                fuzz()
            except Exception as err:  # reported together with the sweep's, if any
                fuzz_error = err
        finally:
            runner.run(context.__aexit__(None, None, None))
    if sweep_problems:
        shown = "\n\n".join(sweep_problems[:3])
        raise AssertionError(
            f"the sweep found {len(sweep_problems)} bad replies; the first:\n{shown}"
        ) from fuzz_error
    if fuzz_error is not None:
        raise fuzz_error
    if known:
        names = sorted({k[1 : k.index("]")] for k in known})
        raise KnownFinding(f"{len(known)} replies hit known findings {names}; the first:\n{known[0]}")


@pytest.mark.parametrize("name", list(FIXED_FINDINGS))
async def test_fixed_findings_stay_fixed(name: str, caplog: pytest.LogCaptureFixture) -> None:
    """Each 500 this file found, as a fixed request independent of what hypothesis draws: now a 400."""
    caplog.set_level(logging.ERROR, logger=SERVER_LOGGER)
    method, path, query, body, mode = FIXED_FINDINGS[name]
    async with running_core() as h:
        extra = await setup_core(h)
        headers = {"content-type": "application/json"}
        if extra[mode]:
            headers["x-vault-token"] = extra[mode]
        sent = Sent(method, b"/v1/" + path.encode(), query.encode(), headers, body.encode("latin-1"))
        _expect_4xx(sent, await asgi_call(h, sent), caplog)


# -- targeted raw bodies: the Python traps of security-and-reliability.md §6 item 1 ---------------

# endpoint -> body template; @S@ sits inside a JSON string, @V@ is a JSON value
WRITE_ENDPOINTS = {
    "sys/policies/acl/x": '{"policy": "path \\"kv/@S@\\" { capabilities = [\\"read\\"] }", "extra": @V@}',
    "kv/data/x": '{"data": {"k": "@S@", "n": @V@}, "options": {}}',
    "auth/token/create": '{"display_name": "@S@", "meta": {"k": "@S@"}, "num_uses": @V@}',
    "sys/mounts/x": '{"type": "kv", "description": "@S@", "config": {"default_lease_ttl": @V@}}',
}
VALID_S, VALID_V = b"ok", b"1"

# case -> (string-site bytes, value-site bytes); each must answer a 4xx
RAW_CASES: dict[str, tuple[bytes, bytes]] = {
    "invalid-utf8": (b"\xff\xfe\xc3\x28", VALID_V),
    "overlong-utf8": (b"\xc0\xaf", VALID_V),
    "utf8-encoded-surrogate": (b"\xed\xa0\x80", VALID_V),
    "lone-high-surrogate-escape": (b"\\ud800", VALID_V),
    "lone-low-surrogate-escape": (b"a\\udfffb", VALID_V),
    "reversed-surrogate-pair": (b"\\udc00\\ud800", VALID_V),
    "huge-int-10e5000": (VALID_S, HUGE.encode()),
    "huge-negative-int": (VALID_S, b"-" + HUGE.encode()),
    "depth-600-lists": (VALID_S, b"[" * 600 + b"]" * 600),
    "depth-600-objects": (VALID_S, b'{"a":' * 600 + b"1" + b"}" * 600),
}

# (endpoint, case) -> finding, for raw cases known not to give a 4xx (xfail strict). Lone
# surrogates were accepted with a 2xx until 16875ad.
KNOWN_RAW: dict[tuple[str, str], str] = {}


def _fill(endpoint: str, s: bytes, v: bytes) -> bytes:
    return WRITE_ENDPOINTS[endpoint].encode().replace(b"@S@", s).replace(b"@V@", v)


def _raw_cases() -> list[Any]:
    out = []
    for endpoint in WRITE_ENDPOINTS:
        for case in RAW_CASES:
            reason = KNOWN_RAW.get((endpoint, case))
            marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
            out.append(pytest.param(endpoint, case, id=f"{endpoint}-{case}", marks=marks))
    return out


async def _raw(
    h: Harness, method: str, path: bytes, body: bytes = b"", token: str | None = None, **extra: str
) -> tuple[Sent, Reply]:
    headers = {"x-vault-token": h.root_token if token is None else token, "content-type": "application/json"}
    headers.update({k.replace("_", "-"): v for k, v in extra.items()})
    raw_path = path if path.startswith(b"/") else b"/v1/" + path
    sent = Sent(method, raw_path, b"", headers, body)
    return sent, await asgi_call(h, sent)


def _expect_4xx(sent: Sent, reply: Reply, caplog: pytest.LogCaptureFixture) -> None:
    check_reply(sent, reply, caplog)
    assert 400 <= reply.status < 500, f"expected a 4xx, got {reply.status}: {sent.describe()}\n{reply.body!r}"


@pytest.mark.parametrize(("endpoint", "case"), _raw_cases())
async def test_raw_body_traps_are_4xx(endpoint: str, case: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger=SERVER_LOGGER)
    async with running_core() as h:
        await setup_core(h)
        # the template with harmless values is a valid request (to another name, so the
        # trap's own write is not refused for a name already in use)
        control = endpoint[:-1] + "control" if endpoint.endswith("/x") else endpoint
        sent, reply = await _raw(h, "POST", control.encode(), _fill(endpoint, VALID_S, VALID_V))
        check_reply(sent, reply, caplog)
        assert reply.status < 300, (reply.status, reply.body)
        s, v = RAW_CASES[case]
        sent, reply = await _raw(h, "POST", endpoint.encode(), _fill(endpoint, s, v))
        _expect_4xx(sent, reply, caplog)


@pytest.mark.parametrize("endpoint", list(WRITE_ENDPOINTS))
async def test_hundred_thousand_keys_is_not_5xx(endpoint: str, caplog: pytest.LogCaptureFixture) -> None:
    """A 100k-key object (top level and nested) may be accepted or refused, quickly, never 5xx."""
    caplog.set_level(logging.ERROR, logger=SERVER_LOGGER)
    many = ("{" + ",".join(f'"k{i}":{i}' for i in range(100_000)) + "}").encode()
    async with running_core() as h:
        await setup_core(h)
        for body in (many, _fill(endpoint, VALID_S, many)):
            sent, reply = await _raw(h, "POST", endpoint.encode(), body)
            check_reply(sent, reply, caplog)


@pytest.mark.parametrize("endpoint", list(WRITE_ENDPOINTS))
@pytest.mark.parametrize(
    "tail",
    [b"x%00y", b"x\x00y", b"%00", b"x" * 65536, b"%41" * 22000, b"x/" + b"y" * 65536, b"\xff\xfe", b"%ff"],
    ids=[
        "pct-nul",
        "raw-nul",
        "only-nul",
        "64k-segment",
        "64k-escaped",
        "64k-second",
        "raw-bad-utf8",
        "pct-bad-utf8",
    ],
)
async def test_bad_paths_are_4xx(endpoint: str, tail: bytes, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger=SERVER_LOGGER)
    async with running_core() as h:
        await setup_core(h)
        base = endpoint.rsplit("/", 1)[0].encode() + b"/"
        for method in ("POST", "GET", "DELETE"):
            body = _fill(endpoint, VALID_S, VALID_V) if method == "POST" else b""
            sent, reply = await _raw(h, method, base + tail, body)
            _expect_4xx(sent, reply, caplog)


# -- numbers Python parses but JSON has not: refused, or at least never echoed as non-JSON -------

NON_STANDARD_NUMBERS = {"1e400": b"1e400", "-1e400": b"-1e400", "NaN": b"NaN", "Infinity": b"Infinity"}
# store -> (write path, body template with @V@, read method, read path)
STORES = {
    "kv2": ("kv/data/n", b'{"data": {"n": @V@}}', "GET", "kv/data/n"),
    "kv1": ("kv1/n", b'{"n": @V@}', "GET", "kv1/n"),
    "cubbyhole": ("cubbyhole/n", b'{"n": @V@}', "GET", "cubbyhole/n"),
    "wrapping": ("sys/wrapping/wrap", b'{"n": @V@}', "POST", "sys/wrapping/unwrap"),
}
_NON_JSON_ECHO = (
    "json.loads turns 1e400 / NaN / Infinity into float inf / nan; {store} stores them and the read "
    "answers 2xx with the literal Infinity / NaN, which is not JSON (Go, JS and jq clients fail); "
    "Vault refuses NaN/Infinity and keeps 1e400 as a json.Number"
)
# Fixed: the HTTP layer refuses NaN / Infinity and out-of-range numbers with a 400.
KNOWN_NON_JSON: dict[str, str] = {}


@pytest.mark.parametrize("literal", list(NON_STANDARD_NUMBERS))
@pytest.mark.parametrize(
    "store",
    [
        pytest.param(name, marks=[pytest.mark.xfail(strict=True, reason=KNOWN_NON_JSON[name])])
        if name in KNOWN_NON_JSON
        else name
        for name in STORES
    ],
)
async def test_non_standard_numbers_never_come_back_as_non_json(
    store: str, literal: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger=SERVER_LOGGER)
    write_path, template, read_method, read_path = STORES[store]
    async with running_core() as h:
        await setup_core(h)
        wrap = {"x_vault_wrap_ttl": "60"} if store == "wrapping" else {}
        body = template.replace(b"@V@", NON_STANDARD_NUMBERS[literal])
        sent, reply = await _raw(h, "POST", write_path.encode(), body, **wrap)
        check_reply(sent, reply, caplog)
        if reply.status >= 300:
            return  # refused: fine
        if store == "wrapping":
            token = strict_json(reply.body)["wrap_info"]["token"]
            sent, reply = await _raw(h, "POST", read_path.encode(), b"", token=token)
        else:
            sent, reply = await _raw(h, read_method, read_path.encode())
        check_reply(sent, reply, caplog)
        assert reply.status == 200, (reply.status, reply.body)


# -- found while fuzzing: a list grant widened by the query string -------------------------------


@pytest.mark.parametrize("query", ["path=.", "path=..", "path=%00", "path=team"])
async def test_list_query_ignores_a_relative_path(query: str) -> None:
    """LIST kv/metadata/ lists the root whatever ``path`` the query sends (once a 500)."""
    async with running_core() as h:
        await setup_core(h)
        await h.call("POST", "kv/data/team/db-password", json={"data": {"p": "x"}})
        r = await h.client.request("LIST", f"/v1/kv/metadata/?{query}", headers=h.headers())
        assert r.status_code == 200 and "team/" in r.json()["data"]["keys"]


async def test_list_query_path_cannot_widen_a_list_grant() -> None:
    async with running_core() as h:
        await setup_core(h)
        await h.call("POST", "kv/data/team/db-password", json={"data": {"p": "x"}})
        await h.core.policies.put("toplist", 'path "kv/metadata/" { capabilities = ["list"] }')
        token = (await h.core.tokens.create(TokenEntry(id="", policies=["toplist"]))).id
        direct = await h.client.request("LIST", "/v1/kv/metadata/team", headers=h.headers(token))
        assert direct.status_code == 403
        widened = await h.client.request("LIST", "/v1/kv/metadata/?path=team", headers=h.headers(token))
        assert "db-password" not in widened.text, widened.text
