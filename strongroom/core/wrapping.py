"""Response wrapping: a response stored in a single-use token's cubbyhole.

The wrapping token is an orphan service token with the fixed
``response-wrapping`` policy, one use and a TTL equal to the wrap TTL. The
original response waits at ``cubbyhole/response`` of that token; unwrapping
reads it once and the token's single use revokes it (and the cubbyhole).
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from strongroom.core.tokens import TokenEntry
from strongroom.engines import cubbyhole
from strongroom.logical.errors import UserError
from strongroom.logical.request import Auth, Request, Response, SecretInfo, WrapInfo
from strongroom.logical.storage import Storage

if TYPE_CHECKING:
    from strongroom.core.core import Core

WRAPPING_POLICY = "response-wrapping"
INVALID = "wrapping token is not valid or does not exist"


def rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _auth_to_json(auth: Auth) -> dict[str, Any]:
    return dict(auth.__dict__)


class Wrapper:
    def __init__(self, core: Core) -> None:
        self.core = core

    def _cubbyhole_storage(self) -> Storage | None:
        route = self.core.router.get("cubbyhole/")
        return None if route is None else route.storage

    async def destroy_cubbyhole(self, token: TokenEntry) -> None:
        storage = self._cubbyhole_storage()
        if storage is not None and token.type != "batch":
            await cubbyhole.destroy(self.core, storage, token.id)

    async def wrap(self, req: Request, token: TokenEntry | None, response: Response) -> Response:
        ttl = req.wrap_ttl
        if not ttl:
            raise UserError("endpoint requires response wrapping to be used")
        if response.raw is not None:
            return response  # raw bodies (CRLs, certificates) are never wrapped
        payload = {
            "data": response.data,
            "warnings": response.warnings,
            "auth": _auth_to_json(response.auth) if response.auth else None,
            "secret": dict(response.secret.__dict__) if response.secret else None,
            "mount_type": req.mount_type,
        }
        now = time.time()
        wrapped_accessor = response.auth.accessor if response.auth else ""
        entry = TokenEntry(
            id="",
            policies=[WRAPPING_POLICY],
            path=req.path,
            display_name="response-wrapping",
            num_uses=1,
            creation_time=now,
            creation_ttl=ttl,
            ttl=ttl,
            explicit_max_ttl=ttl,
            expire_time=now + ttl,
            orphan=True,
            renewable=False,
            internal_meta={
                "wrapping": True,
                "creation_path": req.path,
                "creation_time": rfc3339(now),
                "creation_ttl": ttl,
                "wrapped_accessor": wrapped_accessor,
            },
        )
        entry = await self.core.tokens.create(entry)
        if self.core.expiration is not None and hasattr(self.core.expiration, "track_token"):
            await self.core.expiration.track_token(entry)
        storage = self._cubbyhole_storage()
        if storage is None:
            raise UserError("response wrapping is unavailable: no cubbyhole mount")
        key = cubbyhole.token_prefix(self.core, entry.id) + "response"
        await storage.put(key, json.dumps(payload, default=str).encode())
        info = WrapInfo(
            token=entry.id,
            accessor=entry.accessor,
            ttl=ttl,
            creation_time=rfc3339(now),
            creation_path=req.path,
            wrapped_accessor=wrapped_accessor,
        )
        return Response(wrap_info=info, warnings=list(response.warnings))

    async def wrapping_entry(self, token_id: str, current: TokenEntry | None = None) -> TokenEntry:
        """The wrapping token's entry; ``current`` is the caller's own (maybe last-use) token."""
        if current is not None and token_id and current.id == token_id:
            entry: TokenEntry | None = current
        else:
            entry = await self.core.tokens.lookup(token_id) if token_id else None
        if entry is None or not entry.internal_meta.get("wrapping") or entry.policies != [WRAPPING_POLICY]:
            raise UserError(INVALID)
        return entry

    async def lookup(self, token_id: str) -> dict[str, Any]:
        entry = await self.wrapping_entry(token_id)
        meta = entry.internal_meta
        return {
            "creation_path": meta["creation_path"],
            "creation_time": meta["creation_time"],
            "creation_ttl": meta["creation_ttl"],
        }

    async def unwrap(self, token_id: str, current: TokenEntry | None = None) -> Response:
        """Return the wrapped response and revoke the wrapping token."""
        entry = await self.wrapping_entry(token_id, current)
        storage = self._cubbyhole_storage()
        raw = None
        if storage is not None:
            raw = await storage.get(cubbyhole.token_prefix(self.core, entry.id) + "response")
        await self.core.revoke_token(entry)
        if raw is None:
            raise UserError(INVALID)
        payload = json.loads(raw)
        response = Response(data=payload.get("data"), warnings=list(payload.get("warnings") or []))
        if payload.get("auth"):
            response.auth = Auth(**payload["auth"])
        if payload.get("secret"):
            response.secret = SecretInfo(**payload["secret"])
        return response

    async def rewrap(self, req: Request, token_id: str) -> Response:
        entry = await self.wrapping_entry(token_id, req.token_entry)
        storage = self._cubbyhole_storage()
        if storage is None:
            raise UserError(INVALID)
        raw = await storage.get(cubbyhole.token_prefix(self.core, entry.id) + "response")
        if raw is None:
            raise UserError(INVALID)
        await self.core.revoke_token(entry)
        payload = json.loads(raw)
        response = Response(data=payload.get("data"), warnings=list(payload.get("warnings") or []))
        if payload.get("auth"):
            response.auth = Auth(**payload["auth"])
        original = Request(
            operation=req.operation,
            path=entry.internal_meta["creation_path"],
            wrap_ttl=int(entry.internal_meta["creation_ttl"]),
        )
        return await self.wrap(original, None, response)
