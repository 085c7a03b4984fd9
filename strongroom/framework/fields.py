"""Typed fields with Vault's lenient coercion, and the data a handler reads.

Clients send the same value in many shapes: ``"1h"`` or ``3600`` for a
duration, ``"a,b"`` or ``["a","b"]`` for a list, ``"true"`` or ``true`` for a
flag (cert-manager sends every value as a string). ``FieldType.coerce`` turns
any accepted shape into one Python type or raises ``ValueError`` without
echoing the value (it may be a secret).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any, Final

from strongroom.durations import parse_duration
from strongroom.logical.errors import UserError

NAME_RE: Final = re.compile(r"^\w(([\w\-.@]+)?\w)?$")

_TRUE = {"1", "t", "T", "TRUE", "true", "True"}
_FALSE = {"0", "f", "F", "FALSE", "false", "False"}


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final[Any] = _Missing()


def _to_str(raw: object) -> str:
    if isinstance(raw, str):
        return raw
    if isinstance(raw, bool):
        return "true" if raw else "false"
    if isinstance(raw, int | float):
        return str(int(raw)) if isinstance(raw, float) and raw.is_integer() else str(raw)
    raise ValueError("expected a string")


def _to_int(raw: object) -> int:
    if isinstance(raw, bool):
        return int(raw)
    if isinstance(raw, int):
        return raw
    if isinstance(raw, float):
        if not raw.is_integer():
            raise ValueError("expected an integer")
        return int(raw)
    if isinstance(raw, str):
        text = raw.strip()
        if text == "":
            return 0
        if len(text) > 30:
            raise ValueError("expected an integer")
        try:
            return int(text)
        except ValueError:
            return int(float(text)) if _is_integral_float(text) else _fail("expected an integer")
    raise ValueError("expected an integer")


def _is_integral_float(text: str) -> bool:
    try:
        value = float(text)
    except ValueError:
        return False
    return value.is_integer()


def _fail(message: str) -> int:
    raise ValueError(message)


def _to_bool(raw: object) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, int | float):
        return raw != 0
    if isinstance(raw, str):
        text = raw.strip()
        if text in _TRUE:
            return True
        if text in _FALSE or text == "":
            return False
    raise ValueError("expected a boolean")


def _to_duration(raw: object) -> int:
    if isinstance(raw, bool):
        raise ValueError("expected a duration")
    if isinstance(raw, int | float | str):
        if isinstance(raw, str) and raw.strip() == "":
            return 0
        return parse_duration(raw)
    raise ValueError("expected a duration")


def _to_comma_list(raw: object) -> list[str]:
    if raw is None:
        return []
    if isinstance(raw, str):
        return [part.strip() for part in raw.split(",") if part.strip() != ""]
    if isinstance(raw, list | tuple):
        return [_to_str(item).strip() for item in raw]
    return [_to_str(raw)]


def _to_str_list(raw: object) -> list[str]:
    if raw is None:
        return []
    if isinstance(raw, list | tuple):
        return [_to_str(item) for item in raw]
    return [_to_str(raw)]


def _to_comma_int_list(raw: object) -> list[int]:
    if isinstance(raw, str):
        return [_to_int(part) for part in raw.split(",") if part.strip()]
    if isinstance(raw, list | tuple):
        return [_to_int(item) for item in raw]
    return [_to_int(raw)]


def _to_map(raw: object) -> dict[str, Any]:
    if raw is None:
        return {}
    if isinstance(raw, str):
        if raw.strip() == "":
            return {}
        try:
            raw = json.loads(raw)
        except ValueError:
            raise ValueError("expected a map") from None
    if isinstance(raw, dict):
        return dict(raw)
    raise ValueError("expected a map")


def _to_kv_pairs(raw: object) -> dict[str, str]:
    if isinstance(raw, list | tuple):
        out: dict[str, str] = {}
        for item in raw:
            text = _to_str(item)
            if "=" not in text:
                raise ValueError("expected key=value pairs")
            key, _, value = text.partition("=")
            out[key] = value
        return out
    return {str(k): _to_str(v) for k, v in _to_map(raw).items()}


def _to_name(raw: object) -> str:
    text = _to_str(raw)
    if not NAME_RE.match(text):
        raise ValueError("invalid name")
    return text


def _to_any(raw: object) -> object:
    return raw


def _to_float(raw: object) -> float:
    if isinstance(raw, bool):
        raise ValueError("expected a number")
    if isinstance(raw, int | float):
        return float(raw)
    if isinstance(raw, str):
        return float(raw)
    raise ValueError("expected a number")


class FieldType(Enum):
    STRING = "string"
    LOWERCASE_STRING = "lowercase_string"
    NAME = "name"
    INT = "int"
    FLOAT = "float"
    BOOL = "bool"
    DURATION = "duration"
    COMMA_LIST = "comma_list"
    STRING_LIST = "string_list"
    COMMA_INT_LIST = "comma_int_list"
    MAP = "map"
    KV_PAIRS = "kv_pairs"
    ANY = "any"

    def coerce(self, raw: object) -> Any:
        return _COERCERS[self](raw)

    def zero(self) -> Any:
        return _ZERO[self]()

    def schema(self) -> dict[str, Any]:
        return dict(_SCHEMAS[self])


_COERCERS: dict[FieldType, Any] = {
    FieldType.STRING: _to_str,
    FieldType.LOWERCASE_STRING: lambda raw: _to_str(raw).lower(),
    FieldType.NAME: _to_name,
    FieldType.INT: _to_int,
    FieldType.FLOAT: _to_float,
    FieldType.BOOL: _to_bool,
    FieldType.DURATION: _to_duration,
    FieldType.COMMA_LIST: _to_comma_list,
    FieldType.STRING_LIST: _to_str_list,
    FieldType.COMMA_INT_LIST: _to_comma_int_list,
    FieldType.MAP: _to_map,
    FieldType.KV_PAIRS: _to_kv_pairs,
    FieldType.ANY: _to_any,
}

_ZERO: dict[FieldType, Any] = {
    FieldType.STRING: str,
    FieldType.LOWERCASE_STRING: str,
    FieldType.NAME: str,
    FieldType.INT: int,
    FieldType.FLOAT: float,
    FieldType.BOOL: bool,
    FieldType.DURATION: int,
    FieldType.COMMA_LIST: list,
    FieldType.STRING_LIST: list,
    FieldType.COMMA_INT_LIST: list,
    FieldType.MAP: dict,
    FieldType.KV_PAIRS: dict,
    FieldType.ANY: lambda: None,
}

_SCHEMAS: dict[FieldType, dict[str, Any]] = {
    FieldType.STRING: {"type": "string"},
    FieldType.LOWERCASE_STRING: {"type": "string"},
    FieldType.NAME: {"type": "string"},
    FieldType.INT: {"type": "integer"},
    FieldType.FLOAT: {"type": "number"},
    FieldType.BOOL: {"type": "boolean"},
    FieldType.DURATION: {"type": "string", "format": "duration"},
    FieldType.COMMA_LIST: {"type": "array", "items": {"type": "string"}},
    FieldType.STRING_LIST: {"type": "array", "items": {"type": "string"}},
    FieldType.COMMA_INT_LIST: {"type": "array", "items": {"type": "integer"}},
    FieldType.MAP: {"type": "object"},
    FieldType.KV_PAIRS: {"type": "object"},
    FieldType.ANY: {},
}


@dataclass(frozen=True)
class Field:
    """One declared parameter of a path."""

    type: FieldType
    description: str = ""
    default: Any = MISSING
    required: bool = False
    allowed: tuple[Any, ...] = ()
    sensitive: bool = False
    query: bool = False  # sent in the query string (GET / DELETE)
    deprecated: bool = False

    def schema(self) -> dict[str, Any]:
        out = self.type.schema()
        if self.description:
            out["description"] = self.description
        if self.default is not MISSING and self.default is not None:
            out["default"] = self.default
        if self.allowed:
            out["enum"] = list(self.allowed)
        if self.deprecated:
            out["deprecated"] = True
        return out


class FieldData:
    """The request's raw data, read through the path's field declarations."""

    __slots__ = ("_cache", "fields", "raw")

    def __init__(self, fields: Mapping[str, Field], raw: Mapping[str, Any]) -> None:
        self.fields = fields
        self.raw = raw
        self._cache: dict[str, Any] = {}

    def validate(self) -> None:
        """Coerce every sent field now so type errors answer 400 before the handler runs."""
        for name, spec in self.fields.items():
            if self.raw.get(name) is not None:
                self._coerce(name, spec)
            elif spec.required:
                raise UserError(f"missing required field {name!r}")

    def _coerce(self, name: str, spec: Field) -> Any:
        if name in self._cache:
            return self._cache[name]
        raw = self.raw[name]
        try:
            value = spec.type.coerce(raw)
        except (ValueError, TypeError, OverflowError):
            raise UserError(
                f"error converting input for field {name!r}: expected type {spec.type.value}"
            ) from None
        if spec.allowed and value not in spec.allowed:
            allowed = ", ".join(str(a) for a in spec.allowed)
            raise UserError(f"invalid value for field {name!r}; allowed values are: {allowed}")
        self._cache[name] = value
        return value

    def get_ok(self, name: str) -> tuple[Any, bool]:
        """The coerced value and whether the client sent it."""
        spec = self.fields.get(name)
        if spec is None:
            raise KeyError(f"undeclared field {name!r}")
        if self.raw.get(name) is not None:  # JSON null means "not sent", as in Vault
            return self._coerce(name, spec), True
        return self._default(spec), False

    @staticmethod
    def _default(spec: Field) -> Any:
        if spec.default is MISSING:
            return spec.type.zero()
        if isinstance(spec.default, list | dict):
            return type(spec.default)(spec.default)
        return spec.default

    def get(self, name: str) -> Any:
        return self.get_ok(name)[0]

    def __getitem__(self, name: str) -> Any:
        return self.get_ok(name)[0]

    def sent(self, name: str) -> bool:
        return self.raw.get(name) is not None

    def unknown(self) -> list[str]:
        return sorted(k for k in self.raw if k not in self.fields)
