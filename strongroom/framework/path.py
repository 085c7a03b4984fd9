"""Path declarations: a template, its fields and its operations.

A template such as ``roles/{name}`` compiles to a regular expression and is,
at the same time, the OpenAPI path (``roles/{name}``), so routing and the
published document cannot drift apart. Captures:

- ``{name}``: Vault's generic name (``\\w(([\\w-.@]+)?\\w)?``);
- ``{name:segment}``: one path segment (``[^/]+``);
- ``{name:path}``: the rest of the path, slashes included (``.+``);
- ``{name:optpath}``: like ``path`` but may be empty.

A template ending in ``/`` is a listing path. An optional segment is written
as two templates.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from strongroom.framework.fields import Field
from strongroom.logical.request import Operation, Request, Response

if TYPE_CHECKING:
    from strongroom.framework.fields import FieldData

Handler = Callable[[Request, "FieldData"], Awaitable[Response | None]]
ExistenceCheck = Callable[[Request, "FieldData"], Awaitable[bool]]

_CONVERTERS: Mapping[str, str] = {
    "": r"\w(?:(?:[\w\-.@]+)?\w)?",
    "segment": r"[^/]+",
    "path": r".+",
    "optpath": r".*",
}
_CAPTURE = re.compile(r"\{(\w+)(?::(\w*))?\}")


def compile_template(template: str) -> tuple[re.Pattern[str], str, tuple[str, ...]]:
    """Return (regex, openapi path, capture names) for a template."""
    pattern = ["^"]
    names: list[str] = []
    pos = 0
    for match in _CAPTURE.finditer(template):
        pattern.append(re.escape(template[pos : match.start()]))
        name, kind = match.group(1), match.group(2) or ""
        if kind not in _CONVERTERS:
            raise ValueError(f"unknown capture type {kind!r} in {template!r}")
        pattern.append(f"(?P<{name}>{_CONVERTERS[kind]})")
        names.append(name)
        pos = match.end()
    pattern.append(re.escape(template[pos:]))
    pattern.append("$")
    openapi = _CAPTURE.sub(lambda m: "{" + m.group(1) + "}", template)
    return re.compile("".join(pattern)), openapi, tuple(names)


@dataclass(frozen=True)
class PathOperation:
    """One operation on a path: its handler and what the docs say of it."""

    handler: Handler
    summary: str = ""
    description: str = ""
    responses: Mapping[int, str] = field(default_factory=dict)
    forward_to_active: bool = False


@dataclass(frozen=True)
class Display:
    """How OpenAPI names the operations: ``<prefix>-<verb>-<suffix>``."""

    prefix: str = ""
    suffix: str = ""
    verbs: Mapping[Operation, str] = field(default_factory=dict)


@dataclass
class Path:
    template: str
    operations: Mapping[Operation, PathOperation]
    fields: Mapping[str, Field] = field(default_factory=dict)
    existence_check: ExistenceCheck | None = None
    synopsis: str = ""
    description: str = ""
    display: Display | None = None
    unauthenticated: bool = False
    sudo: bool = False
    accept_unknown: bool = False  # the handler reads arbitrary data (KV values)
    # a captured field may also be sent in the body; captures win (with a warning)
    regex: re.Pattern[str] = field(init=False, repr=False)
    openapi_path: str = field(init=False)
    captures: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        self.regex, self.openapi_path, self.captures = compile_template(self.template)
        for name in self.captures:
            if name not in self.fields:
                raise ValueError(f"capture {name!r} of {self.template!r} has no field declaration")

    def match(self, path: str) -> dict[str, Any] | None:
        m = self.regex.match(path)
        return None if m is None else m.groupdict()


def operations(**ops: PathOperation) -> dict[Operation, PathOperation]:
    """Build an operations map from keyword names (``read=``, ``update=``, ...)."""
    return {Operation(name): op for name, op in ops.items()}
