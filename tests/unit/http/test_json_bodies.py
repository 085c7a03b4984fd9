"""Request bodies and response envelopes: the orjson fast path gives what the json module gave."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest

from strongroom.http.app import MAX_JSON_DEPTH, parse_body
from strongroom.http.envelope import _dumps, error_body
from strongroom.logical.errors import UserError

ACCEPTED = [
    b'{"csr": "-----BEGIN CERTIFICATE REQUEST-----\\nMIIB\\n-----END CERTIFICATE REQUEST-----\\n"}',
    b'{"common_name":"a.example.com","ttl":"2160h0m0s","alt_names":"b,c","exclude_cn_from_sans":true}',
    b'  {"a": 1, "a": 2}  ',
    b'{"n": 18446744073709551616, "m": -9223372036854775809, "k": 123456789012345678901234567890}',
    b'{"f": 1.5e300, "g": -0.0, "h": 1e-320, "i": 0.1}',
    b'{"s": "\\ud83d\\ude00 \\u0000 caf\\u00e9", "t": "caf\xc3\xa9"}',
    b'{"nested": {"list": [1, [2, [3, {"x": null}]]], "empty": {}}}',
    b'{"deep": ' + b"[" * (MAX_JSON_DEPTH - 1) + b"]" * (MAX_JSON_DEPTH - 1) + b"}",
    b"null",
    b"{}",
]

REFUSED = [
    (b'{"a": NaN}', "malformed JSON body"),
    (b'{"a": Infinity}', "malformed JSON body"),
    (b'{"a": 1e400}', "malformed JSON body"),
    (b'{"a": "\\ud800"}', "unpaired surrogate"),
    (b'{"a": "\\udc00\\ud800"}', "unpaired surrogate"),
    (b'{"a": "\xed\xa0\x80"}', "not valid UTF-8"),
    (b'{"a": "\xff"}', "not valid UTF-8"),
    (b'\xef\xbb\xbf{"a": 1}', "malformed JSON body"),
    (b'{"a": 1,}', "malformed JSON body"),
    (b'{"deep": ' + b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH + b"}", "nesting depth"),
    (b"[1, 2]", "must be a JSON object"),
    (b'"text"', "must be a JSON object"),
]


@pytest.mark.parametrize("body", ACCEPTED)
def test_accepted_bodies_parse_as_the_json_module_parses_them(body: bytes) -> None:
    want = json.loads(body.strip().decode("utf-8"))
    got = parse_body(body, "application/json")
    assert got == (want if want is not None else {})
    assert json.dumps(got, sort_keys=True) == json.dumps(want or {}, sort_keys=True)  # ints stay ints


@pytest.mark.parametrize(("body", "text"), REFUSED)
def test_refused_bodies_keep_their_texts(body: bytes, text: str) -> None:
    with pytest.raises(UserError, match=text):
        parse_body(body, "application/json")


def test_forms_are_not_json() -> None:
    assert parse_body(b"a=1&b=", "application/x-www-form-urlencoded") == {"a": "1", "b": ""}


def _nested(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


@dataclass
class _Thing:
    name: str


def test_envelope_json_matches_the_json_module() -> None:
    value: dict[str, Any] = {
        "data": {"certificate": "-----BEGIN-----\nx\n-----END-----", "n": 3, "f": 0.5, "ok": True},
        "warnings": None,
        "when": datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),  # default=str, as before
        "thing": _Thing("x"),  # not turned into an object: default=str, as before
        "text": "café ✓",
    }
    out = _dumps(value)
    assert json.loads(out) == json.loads(json.dumps(value, default=str))
    assert "café ✓".encode() in out  # UTF-8, as Go writes it
    assert b'": ' not in out and b', "' not in out  # compact separators


@pytest.mark.parametrize(
    "value",
    [
        {1: "int key"},
        {"big": 2**70},
        {"lone": "\ud800"},
        {"deep": _nested(300)},
    ],
)
def test_what_orjson_refuses_is_encoded_as_before(value: Any) -> None:
    assert _dumps(value) == json.dumps(value, separators=(",", ":"), default=str).encode()


def test_error_body() -> None:
    assert error_body(["no handler"]) == b'{"errors":["no handler"]}'
