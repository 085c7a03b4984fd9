"""The router: which mounted backend serves a path.

Longest-prefix match on whole segments, done as at most one dict lookup per
path segment so routing cost does not grow with the number of mounts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from strongroom.core.mounts import MountEntry
from strongroom.logical.backend import Backend
from strongroom.logical.storage import Storage


@dataclass
class RouteEntry:
    entry: MountEntry
    backend: Backend
    storage: Storage
    unauth_exact: frozenset[str]
    unauth_prefix: tuple[str, ...]
    unauth_plus: tuple[tuple[str, ...], ...]
    root_exact: frozenset[str]
    root_prefix: tuple[str, ...]
    root_plus: tuple[tuple[str, ...], ...]
    # answers of is_unauthenticated per relative path: a mount with many "+" globs (PKI's
    # ACME directories) would otherwise scan them all on every request
    _unauth_seen: dict[str, bool] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def build(cls, entry: MountEntry, backend: Backend, storage: Storage) -> RouteEntry:
        ue, up, uplus = _split_globs(backend.special_paths.unauthenticated)
        re_, rp, rplus = _split_globs(backend.special_paths.root)
        return cls(entry, backend, storage, ue, up, uplus, re_, rp, rplus)

    def is_unauthenticated(self, rel: str) -> bool:
        seen = self._unauth_seen.get(rel)
        if seen is None:
            seen = _glob_match(rel, self.unauth_exact, self.unauth_prefix, self.unauth_plus)
            if len(self._unauth_seen) >= 4096:  # bounded: paths carry ids and serials
                self._unauth_seen.clear()
            self._unauth_seen[rel] = seen
        return seen

    def is_root_path(self, rel: str) -> bool:
        return _glob_match(rel, self.root_exact, self.root_prefix, self.root_plus)


def _split_globs(
    globs: tuple[str, ...],
) -> tuple[frozenset[str], tuple[str, ...], tuple[tuple[str, ...], ...]]:
    exact: set[str] = set()
    prefix: list[str] = []
    plus: list[tuple[str, ...]] = []
    for glob in globs:
        if "+" in glob.split("/"):
            plus.append(tuple(glob.split("/")))
        elif glob.endswith("*"):
            prefix.append(glob[:-1])
        else:
            exact.add(glob)
    return frozenset(exact), tuple(prefix), tuple(plus)


def _glob_match(
    path: str, exact: frozenset[str], prefix: tuple[str, ...], plus: tuple[tuple[str, ...], ...]
) -> bool:
    if path in exact or any(path.startswith(p) for p in prefix):
        return True
    if not plus:
        return False
    segments = path.split("/")
    for pattern in plus:
        trailing = pattern[-1].endswith("*")
        if trailing:
            head, last = pattern[:-1], pattern[-1][:-1]
            if len(segments) < len(head) + 1:
                continue
        elif len(segments) != len(pattern):
            continue
        else:
            head, last = pattern, None
        if all(p == "+" or p == s for p, s in zip(head, segments, strict=False)):
            if last is None or segments[len(head)].startswith(last) or last == "":
                return True
    return False


class Router:
    def __init__(self) -> None:
        self._routes: dict[str, RouteEntry] = {}

    def mount(self, route: RouteEntry) -> None:
        self._routes[route.entry.route_path] = route

    def unmount(self, route_path: str) -> None:
        self._routes.pop(route_path, None)

    def clear(self) -> None:
        self._routes.clear()

    def routes(self) -> list[RouteEntry]:
        return list(self._routes.values())

    def get(self, route_path: str) -> RouteEntry | None:
        return self._routes.get(route_path)

    def match(self, path: str) -> tuple[RouteEntry, str] | None:
        """Return the route and the path relative to its mount."""
        routes = self._routes
        end = len(path)
        while end > 0:
            slash = path.rfind("/", 0, end)
            if slash < 0:
                break
            route = routes.get(path[: slash + 1])
            if route is not None:
                return route, path[slash + 1 :]
            end = slash
        # a path equal to a mount without its trailing slash ("secret") routes to it
        route = routes.get(path + "/")
        if route is not None:
            return route, ""
        return None

    def match_prefix(self, path: str) -> RouteEntry | None:
        found = self.match(path)
        return None if found is None else found[0]
