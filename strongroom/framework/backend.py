"""FrameworkBackend: a Backend whose behaviour comes from Path declarations.

Routing takes the first declared path that matches, in declaration order.
Captured values are merged over the body (a differing body value earns a
warning), every sent field is coerced before the handler runs (bad types
answer 400), and unknown parameters earn Vault's warning. Help and the
OpenAPI fragment come from the same declarations.
"""

from __future__ import annotations

import json
import re
from typing import Any

from strongroom.framework.fields import FieldData
from strongroom.framework.openapi import backend_paths_document
from strongroom.framework.path import Path, PathOperation
from strongroom.logical.backend import BackendConfig, SpecialPaths
from strongroom.logical.errors import UnsupportedOperation, UnsupportedPath
from strongroom.logical.request import Operation, RawResponse, Request, Response
from strongroom.logical.storage import Storage


def template_glob(template: str) -> str:
    """Turn a template into the ACL-style glob core matches special paths with."""
    glob = re.sub(r"\{\w+:(?:path|optpath)\}", "*", template)
    glob = re.sub(r"\{\w+(?::\w*)?\}", "+", glob)
    if "*" in glob:
        glob = glob[: glob.index("*") + 1]
    return glob


class FrameworkBackend:
    """Base class for engines and auth methods built from Path declarations."""

    backend_type: str = ""
    extra_special_paths: SpecialPaths = SpecialPaths()
    help_text: str = ""

    def __init__(self, config: BackendConfig) -> None:
        self.config = config
        self._route_memo: dict[str, tuple[Path, dict[str, Any]] | None] = {}
        self.paths: list[Path] = self.build_paths()
        unauth = [template_glob(p.template) for p in self.paths if p.unauthenticated]
        root = [template_glob(p.template) for p in self.paths if p.sudo]
        self.special_paths = SpecialPaths(
            unauthenticated=tuple(unauth) + self.extra_special_paths.unauthenticated,
            root=tuple(root) + self.extra_special_paths.root,
        )

    # -- hooks for subclasses ---------------------------------------------------------------

    def build_paths(self) -> list[Path]:
        raise NotImplementedError

    async def initialize(self) -> None:
        return None

    async def cleanup(self) -> None:
        return None

    @property
    def storage(self) -> Storage:
        return self.config.storage

    # -- routing ------------------------------------------------------------------------------

    def _route(self, path: str) -> tuple[Path, dict[str, Any]] | None:
        """First declared match; memoised, since a request routes twice and paths repeat."""
        memo = self._route_memo
        if path in memo:
            return memo[path]
        found: tuple[Path, dict[str, Any]] | None = None
        for candidate in self.paths:
            captures = candidate.match(path)
            if captures is not None:
                found = (candidate, captures)
                break
        if len(memo) >= 4096:
            memo.clear()
        memo[path] = found
        return found

    def route_exists(self, path: str) -> bool:
        return self._route(path) is not None

    def _field_data(self, path: Path, captures: dict[str, Any], req: Request) -> tuple[FieldData, list[str]]:
        warnings: list[str] = []
        raw = dict(req.data)
        for name, value in captures.items():
            if name in raw and raw[name] != value:
                warnings.append(f"Value for field {name!r} taken from the path, not the request body")
            raw[name] = value
        return FieldData(path.fields, raw), warnings

    async def existence_check(self, req: Request) -> tuple[bool, bool]:
        routed = self._route(req.path)
        if routed is None or routed[0].existence_check is None:
            return False, False
        path, captures = routed
        data, _ = self._field_data(path, captures, req)
        data.validate()
        return True, await path.existence_check(req, data)  # type: ignore[misc]

    def _operation(self, path: Path, op: Operation) -> PathOperation | None:
        found = path.operations.get(op)
        if found is None and op == Operation.CREATE:
            found = path.operations.get(Operation.UPDATE)
        return found

    async def handle_request(self, req: Request) -> Response | None:
        routed = self._route(req.path)
        if routed is None:
            raise UnsupportedPath()
        path, captures = routed
        if req.operation == Operation.HELP:
            return self.help_response(path)
        op = self._operation(path, req.operation)
        if op is None:
            raise UnsupportedOperation()
        if req.operation in (Operation.REVOKE, Operation.RENEW):
            # these carry the stored response of a lease, not client input: the handler
            # reads req.secret and req.data itself; only the path captures are fields
            return await op.handler(req, FieldData(path.fields, captures))
        data, warnings = self._field_data(path, captures, req)
        data.validate()
        unknown = [] if path.accept_unknown else data.unknown()
        response = await op.handler(req, data)
        if unknown and req.operation not in (Operation.READ, Operation.LIST, Operation.DELETE):
            warnings.append("Endpoint ignored these unrecognized parameters: [" + " ".join(unknown) + "]")
        if warnings:
            if response is None:
                response = Response()
            response.warnings.extend(warnings)
        return response

    # -- documentation ----------------------------------------------------------------------

    def help_response(self, path: Path) -> Response:
        """Vault answers ``?help=1`` with a bare ``{"help", "openapi"}`` object, no envelope."""
        text = f"## PATH\n\n    {path.template}\n\n{path.synopsis}\n\n{path.description}".rstrip() + "\n"
        body = json.dumps({"help": text, "openapi": self.openapi_document()}, separators=(",", ":"))
        return Response(raw=RawResponse(body.encode(), content_type="application/json"))

    def openapi_paths(self) -> dict[str, Any]:
        return backend_paths_document(self.paths, self.backend_type)

    def openapi_document(self) -> dict[str, Any]:
        return {
            "openapi": "3.0.2",
            "info": {"title": "strongroom", "version": "1.16.3"},
            "paths": self.openapi_paths(),
        }
