"""The Backend contract every engine and auth method implements.

Core routes a :class:`~strongroom.logical.request.Request` to a backend with a
storage view scoped to its mount. A backend also declares which of its paths
need no token (``unauthenticated``) and which need sudo (``root``), and
describes itself for ``help`` and the OpenAPI document.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from strongroom.logical.request import Request, Response
from strongroom.logical.storage import Storage


@dataclass(frozen=True)
class SpecialPaths:
    """Path globs (relative to the mount; a trailing ``*`` is a prefix glob)."""

    unauthenticated: tuple[str, ...] = ()
    root: tuple[str, ...] = ()


class SystemView(Protocol):
    """The narrow window an engine has on core."""

    def default_lease_ttl(self) -> int: ...

    def max_lease_ttl(self) -> int: ...


@dataclass
class StaticSystemView:
    """A SystemView with fixed values, for tests and built-in backends."""

    default_ttl: int = 768 * 3600
    max_ttl: int = 768 * 3600

    def default_lease_ttl(self) -> int:
        return self.default_ttl

    def max_lease_ttl(self) -> int:
        return self.max_ttl


@dataclass
class BackendConfig:
    storage: Storage
    system: SystemView = field(default_factory=StaticSystemView)
    config: dict[str, Any] = field(default_factory=dict)
    mount_path: str = ""
    mount_type: str = ""
    mount_accessor: str = ""


class Backend(Protocol):
    backend_type: str
    special_paths: SpecialPaths

    async def handle_request(self, req: Request) -> Response | None: ...

    async def existence_check(self, req: Request) -> tuple[bool, bool]:
        """Return (has_check, exists) so core can tell create from update."""
        ...

    def openapi_paths(self) -> dict[str, Any]: ...

    async def initialize(self) -> None: ...

    async def cleanup(self) -> None: ...

    def route_exists(self, path: str) -> bool:
        """Whether any declared path matches (so core can tell 404 from 405)."""
        ...


Factory = Callable[[BackendConfig], Awaitable[Backend]]
