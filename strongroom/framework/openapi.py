"""OpenAPI 3 from Path declarations.

Each template is one OpenAPI path. Read and list become ``get`` (list with a
required ``list=true`` query parameter, as Vault documents it), create and
update become ``post`` with a JSON body built from the fields, delete becomes
``delete`` and patch becomes ``patch`` with a merge-patch body.
"""

from __future__ import annotations

import re
from typing import Any

from strongroom.framework.path import Path
from strongroom.logical.request import Operation

_VERBS = {
    Operation.READ: "read",
    Operation.LIST: "list",
    Operation.CREATE: "write",
    Operation.UPDATE: "write",
    Operation.DELETE: "delete",
    Operation.PATCH: "patch",
}


def _operation_id(prefix: str, verb: str, template: str, suffix: str) -> str:
    if suffix:
        tail = suffix
    else:
        tail = re.sub(r"\{(\w+)(?::\w*)?\}", r"\1", template).strip("/")
    tail = re.sub(r"[^A-Za-z0-9]+", "-", tail).strip("-")
    parts = [p for p in (prefix, verb, tail) if p]
    return "-".join(parts) or "root"


def _error_responses() -> dict[str, Any]:
    return {
        "200": {"description": "OK"},
        "204": {"description": "empty body"},
        "400": {"description": "bad request"},
        "403": {"description": "permission denied"},
        "404": {"description": "not found"},
    }


def backend_paths_document(paths: list[Path], backend_type: str) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    for path in paths:
        item: dict[str, Any] = doc.setdefault("/" + path.openapi_path, {})
        params = [
            {
                "name": name,
                "in": "path",
                "required": True,
                "description": path.fields[name].description,
                "schema": {"type": "string"},
            }
            for name in path.captures
        ]
        if params:
            item["parameters"] = params
        if path.synopsis:
            item["description"] = path.synopsis
        prefix = path.display.prefix if path.display else backend_type
        suffix = path.display.suffix if path.display else ""
        body_fields = {k: f for k, f in path.fields.items() if k not in path.captures}
        for op in path.operations:
            verb = _VERBS.get(op)
            if verb is None:
                continue
            spec = path.operations[op]
            if path.display and op in path.display.verbs:
                verb = path.display.verbs[op]
            entry: dict[str, Any] = {
                "operationId": _operation_id(prefix, verb, path.template, suffix),
                "summary": spec.summary or path.synopsis or path.template,
                "responses": _error_responses(),
            }
            if op in (Operation.READ, Operation.LIST):
                method = "get"
                query: list[dict[str, Any]] = [
                    {"name": k, "in": "query", "schema": f.schema()}
                    for k, f in body_fields.items()
                    if f.query or op == Operation.LIST
                ]
                if op == Operation.LIST:
                    query.append(
                        {
                            "name": "list",
                            "in": "query",
                            "required": True,
                            "schema": {"type": "string", "enum": ["true"]},
                        }
                    )
                    if "get" in item:
                        # read and list share GET: Vault documents the list form separately.
                        method = "get"
                        entry = item["get"]
                        entry.setdefault("parameters", []).extend(query)
                        continue
                if query:
                    entry["parameters"] = query
            elif op in (Operation.CREATE, Operation.UPDATE):
                method = "post"
                if "post" in item:
                    continue
                if body_fields:
                    entry["requestBody"] = {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "properties": {k: f.schema() for k, f in body_fields.items()},
                                }
                            }
                        },
                    }
            elif op == Operation.DELETE:
                method = "delete"
                query = [
                    {"name": k, "in": "query", "schema": f.schema()}
                    for k, f in body_fields.items()
                    if f.query
                ]
                if query:
                    entry["parameters"] = query
            else:
                method = "patch"
                entry["requestBody"] = {
                    "required": True,
                    "content": {
                        "application/merge-patch+json": {
                            "schema": {
                                "type": "object",
                                "properties": {k: f.schema() for k, f in body_fields.items()},
                            }
                        }
                    },
                }
            item[method] = entry
    return doc


def merge_mount_documents(mounts: list[tuple[str, dict[str, Any]]], version: str) -> dict[str, Any]:
    """One document for the whole server: each mount's paths under its mount path."""
    paths: dict[str, Any] = {}
    seen_ids: set[str] = set()
    for mount_path, mount_paths in mounts:
        for sub, item in mount_paths.items():
            full = "/" + mount_path.rstrip("/") + sub
            for method, entry in item.items():
                if isinstance(entry, dict) and "operationId" in entry:
                    op_id = entry["operationId"]
                    base = re.sub(r"[^A-Za-z0-9]+", "-", mount_path.strip("/"))
                    candidate = op_id if op_id not in seen_ids else f"{base}-{op_id}"
                    n = 2
                    while candidate in seen_ids:
                        candidate = f"{base}-{op_id}-{n}"
                        n += 1
                    seen_ids.add(candidate)
                    item[method] = {**entry, "operationId": candidate}
            paths[full] = item
    return {
        "openapi": "3.0.2",
        "info": {
            "title": "strongroom",
            "description": "HTTP API that gives you full access to strongroom. All API routes are prefixed with `/v1/`.",
            "version": version,
            "license": {"name": "Mozilla Public License 2.0", "url": "https://www.mozilla.org/en-US/MPL/2.0"},
        },
        "paths": paths,
        "components": {"schemas": {}},
    }
