"""``sys/internal/specs/openapi`` and the general-purpose ``sys/tools/{hash,random}``."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from strongroom.core.core import VERSION
from strongroom.core.system_mounts import caller_policies, visible_mounts
from strongroom.framework import Field, FieldData, FieldType, Path, PathOperation
from strongroom.framework.openapi import merge_mount_documents
from strongroom.logical.errors import UserError
from strongroom.logical.request import Operation, RawResponse, Request, Response

if TYPE_CHECKING:
    from strongroom.core.core import Core

log = logging.getLogger("strongroom.core")

_HASHES: dict[str, Callable[[bytes], Any]] = {
    "sha2-224": hashlib.sha224,
    "sha2-256": hashlib.sha256,
    "sha2-384": hashlib.sha384,
    "sha2-512": hashlib.sha512,
    "sha3-224": hashlib.sha3_224,
    "sha3-256": hashlib.sha3_256,
    "sha3-384": hashlib.sha3_384,
    "sha3-512": hashlib.sha3_512,
}
_RANDOM_SOURCES = ("platform", "seal", "all")
_MAX_RANDOM_BYTES = 128 * 1024


def _encode(raw: bytes, fmt: str) -> str:
    if fmt == "hex":
        return raw.hex()
    if fmt == "base64":
        return base64.b64encode(raw).decode()
    raise UserError(f'unsupported encoding format {fmt}; must be "hex" or "base64"')


def _byte_count(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise UserError(f'error parsing url-set byte count: "{text}" is not an integer') from None


_HASH_FIELDS = {
    "input": Field(FieldType.STRING, "The base64-encoded input data.", sensitive=True),
    "algorithm": Field(
        FieldType.STRING, "Algorithm: sha2-224, sha2-256, sha2-384, sha2-512 or sha3-*.", default="sha2-256"
    ),
    "urlalgorithm": Field(FieldType.STRING, "Algorithm, given in the URL."),
    "format": Field(FieldType.STRING, 'Encoding of the sum: "hex" or "base64".', default="hex"),
}
_RANDOM_FIELDS = {
    "bytes": Field(FieldType.INT, "The number of bytes to generate.", default=32),
    "format": Field(FieldType.STRING, 'Encoding of the bytes: "base64" or "hex".', default="base64"),
    "source": Field(FieldType.STRING, 'Entropy source: "platform", "seal" or "all".'),
    "urlbytes": Field(FieldType.STRING, "The number of bytes (or, alone, the source), given in the URL."),
}


def paths(core: Core) -> list[Path]:
    """The OpenAPI document and the tools paths of the system backend."""

    async def openapi(req: Request, d: FieldData) -> Response | None:
        tp = await caller_policies(core, req)
        documents: list[tuple[str, dict[str, Any]]] = []
        for entry in sorted(await visible_mounts(core, tp), key=lambda e: e.route_path):
            route = core.router.get(entry.route_path)
            if route is None:
                continue
            try:
                paths_doc = route.backend.openapi_paths()
                if entry.type == "system" and core.seal_backend is not None:
                    # init, seal-status, unseal, health, ... are served before routing
                    paths_doc = {**core.seal_backend.openapi_paths(), **paths_doc}
                documents.append((entry.route_path, paths_doc))
            except Exception:  # one broken backend must not take the whole document down
                log.exception("OpenAPI paths of %s failed", entry.route_path)
        doc = merge_mount_documents(documents, VERSION)
        body = json.dumps(doc, separators=(",", ":")).encode()
        return Response(raw=RawResponse(body, content_type="application/json"))

    async def hash_input(req: Request, d: FieldData) -> Response | None:
        algorithm = d["urlalgorithm"] or d["algorithm"]
        try:
            data = base64.b64decode(d["input"], validate=True)
        except (binascii.Error, ValueError):
            raise UserError("unable to decode input as base64: illegal base64 data") from None
        fmt = d["format"]
        if fmt not in ("hex", "base64"):
            raise UserError(f'unsupported encoding format {fmt}; must be "hex" or "base64"')
        hasher = _HASHES.get(algorithm)
        if hasher is None:
            raise UserError(f"unsupported algorithm {algorithm}")
        return Response(data={"sum": _encode(hasher(data).digest(), fmt)})

    async def random_bytes(req: Request, d: FieldData) -> Response | None:
        source, url_bytes = d["source"], d["urlbytes"]
        if source:  # {source}/{urlbytes}
            count = _byte_count(url_bytes)
        elif url_bytes in _RANDOM_SOURCES:  # a lone segment naming the source
            source, count = url_bytes, d["bytes"]
        elif url_bytes:
            count = _byte_count(url_bytes)
        else:
            count = d["bytes"]
        if source and source not in _RANDOM_SOURCES:
            raise UserError(f'unsupported entropy source "{source}"; must be "platform" or "seal", or "all"')
        if count < 1:
            raise UserError('"bytes" cannot be less than 1')
        if count > _MAX_RANDOM_BYTES:
            raise UserError(f'"bytes" cannot be greater than {_MAX_RANDOM_BYTES}')
        fmt = d["format"]
        if fmt not in ("hex", "base64"):
            raise UserError(f'unsupported encoding format {fmt}; must be "hex" or "base64"')
        # every source is the platform's CSPRNG here: there is no seal entropy augmentation
        return Response(data={"random_bytes": _encode(secrets.token_bytes(count), fmt)})

    def hash_path(template: str) -> Path:
        return Path(
            template,
            fields=_HASH_FIELDS,
            operations={Operation.UPDATE: PathOperation(hash_input, "Generate a hash sum for input data.")},
            synopsis="Generate a hash sum for input data.",
        )

    def random_path(template: str) -> Path:
        return Path(
            template,
            fields=_RANDOM_FIELDS,
            operations={Operation.UPDATE: PathOperation(random_bytes, "Generate random bytes.")},
            synopsis="Generate random bytes.",
        )

    return [
        Path(
            "internal/specs/openapi",
            unauthenticated=True,
            operations={
                Operation.READ: PathOperation(
                    openapi, "An OpenAPI 3 document of the mounts the caller can see."
                )
            },
            synopsis="Generate an OpenAPI 3 document of all mounted paths the caller may use.",
        ),
        hash_path("tools/hash"),
        hash_path("tools/hash/{urlalgorithm}"),
        random_path("tools/random"),
        random_path("tools/random/{urlbytes}"),
        random_path("tools/random/{source}/{urlbytes}"),
        random_path("random"),
        random_path("random/{urlbytes}"),
        random_path("random/{source}/{urlbytes}"),
    ]
