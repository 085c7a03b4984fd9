"""AppRole secret IDs: issue (generated or custom), list, look up and destroy, by value or accessor.

A secret ID's limits may only narrow its role's; an accessor is only reachable through
the role it belongs to (CVE-2023-24999).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hmac
import json
import uuid
from datetime import UTC, datetime
from typing import Any

from strongroom.auth.approle.base import GO_ZERO_TIME, AppRoleBase
from strongroom.auth.approle.store import (
    MAX_HMAC_INPUT,
    Role,
    SecretID,
    load_role,
    load_secret,
)
from strongroom.auth.common import (
    cidrs_subset,
    parse_cidrs,
    validate_cidr_blocks,
)
from strongroom.framework import FieldData
from strongroom.logical.errors import NotFound, PermissionDenied, UserError
from strongroom.logical.request import Request, Response
from strongroom.logical.storage import get_json, put_json


def _time(ts: float) -> str:
    """A time the way Go marshals ``time.Time`` (Vault shows the zero time for 'never')."""
    if not ts:
        return GO_ZERO_TIME
    dt = datetime.fromtimestamp(ts, UTC)
    frac = f"{dt.microsecond:06d}".rstrip("0")
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + (f".{frac}" if frac else "") + "Z"


def parse_metadata(raw: Any) -> dict[str, str]:
    """Vault's ``strutil.ParseArbitraryKeyValues``: JSON (maybe base64) or ``k=v,k2=v2``."""
    if raw is None:
        return {}
    if isinstance(raw, dict):
        doc: Any = raw
    else:
        if not isinstance(raw, str):
            raise UserError("failed to parse metadata: expected a JSON object of strings")
        text = raw.strip()
        if not text:
            return {}
        with contextlib.suppress(binascii.Error, ValueError):
            text = base64.b64decode(text, validate=True).decode()
        try:
            doc = json.loads(text)
        except ValueError:
            doc = None
        if doc is None or not isinstance(doc, dict):
            out: dict[str, str] = {}
            for pair in text.split(","):
                key, sep, value = pair.partition("=")
                if not sep or not key.strip() or not value.strip():
                    raise UserError("failed to parse metadata: invalid <key,value> pair")
                out[key.strip()] = value.strip()
            return out
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in doc.items()):
        raise UserError("failed to parse metadata: values must be strings")
    return dict(doc)


class SecretIDHandlers(AppRoleBase):
    """Handlers for the secret IDs of a role."""

    # -- secret IDs --------------------------------------------------------------------------

    async def _secret_id_generate(self, req: Request, d: FieldData) -> Response | None:
        return await self._issue(d, str(uuid.uuid4()))

    async def _secret_id_custom(self, req: Request, d: FieldData) -> Response | None:
        return await self._issue(d, str(d.get("secret_id")))

    async def _issue(self, d: FieldData, secret_id: str) -> Response:
        """Register a secret ID whose limits may only narrow the role's (Vault's handleRoleSecretIDCommon)."""
        name = self._name(d)
        if not secret_id:
            raise UserError("missing secret_id")
        if len(secret_id) > MAX_HMAC_INPUT:
            raise UserError(f"secret_id is longer than maximum of {MAX_HMAC_INPUT} bytes")
        role = await load_role(self.storage, name)
        if role is None:
            raise NotFound(f'role "{name}" does not exist')
        if not role.bind_secret_id:
            raise UserError("bind_secret_id is not set on the role")

        cidr_list = [c.strip() for c in d.get("cidr_list") if c.strip()]
        if cidr_list and not validate_cidr_blocks(cidr_list):
            raise UserError("failed to validate CIDR blocks")
        if not cidrs_subset(cidr_list, role.secret_id_bound_cidrs):
            raise UserError(
                "failed to verify subset relationship between CIDR blocks on the role "
                f"{role.secret_id_bound_cidrs} and CIDR blocks on the secret ID {cidr_list}"
            )
        token_cidrs = [c.strip() for c in d.get("token_bound_cidrs") if c.strip()]
        if token_cidrs and not validate_cidr_blocks(token_cidrs):
            raise UserError("failed to validate token CIDR blocks")
        token_cidrs = parse_cidrs(token_cidrs, "token_bound_cidrs")
        if not cidrs_subset(token_cidrs, role.token.bound_cidrs):
            raise UserError(
                "failed to verify subset relationship between CIDR blocks on the role "
                f"{role.token.bound_cidrs} and CIDR blocks on the secret ID {token_cidrs}"
            )

        num_uses = role.secret_id_num_uses
        if d.sent("num_uses"):
            num_uses = int(d.get("num_uses"))
            if num_uses < 0:
                raise UserError("num_uses cannot be negative")
            limit = role.secret_id_num_uses
            if limit > 0 and (num_uses == 0 or num_uses > limit):
                raise UserError("num_uses cannot be higher than the role's secret_id_num_uses")
        ttl = role.secret_id_ttl
        if d.sent("ttl"):
            ttl = int(d.get("ttl"))
            limit = role.secret_id_ttl
            if limit > 0 and (ttl == 0 or ttl > limit):
                raise UserError("ttl cannot be longer than the role's secret_id_ttl")
        metadata = parse_metadata(d.get("metadata"))

        now = self.now()
        effective_ttl = self._derive_secret_ttl(ttl)
        secret_hmac = await self.keys.hmac("secret_id", secret_id)
        entry = SecretID(
            secret_id_hmac=secret_hmac,
            accessor=str(uuid.uuid4()),
            num_uses=num_uses,
            ttl=ttl,
            creation_time=now,
            expiration_time=now + effective_ttl if effective_ttl else 0.0,
            last_updated_time=now,
            metadata=metadata,
            cidr_list=cidr_list,
            token_bound_cidrs=token_cidrs,
        )
        key = await self.keys.role_secrets(name) + secret_hmac
        accessor_key = await self.keys.accessor(entry.accessor)
        async with self._lock, self.storage.transaction() as txn:
            if await txn.get(key) is not None:
                raise UserError("SecretID is already registered")
            await put_json(txn, accessor_key, {"secret_id_hmac": secret_hmac, "role_hmac": key.split("/")[1]})
            await put_json(txn, key, entry.to_json())
        return Response(
            data={
                "secret_id": secret_id,
                "secret_id_accessor": entry.accessor,
                "secret_id_ttl": effective_ttl,
                "secret_id_num_uses": num_uses,
            }
        )

    @staticmethod
    def _secret_view(entry: SecretID) -> dict[str, Any]:
        return {
            "secret_id_accessor": entry.accessor,
            "secret_id_num_uses": entry.num_uses,
            "secret_id_ttl": entry.ttl,
            "creation_time": _time(entry.creation_time),
            "expiration_time": _time(entry.expiration_time),
            "last_updated_time": _time(entry.last_updated_time),
            "metadata": dict(entry.metadata),
            "cidr_list": list(entry.cidr_list),
            "token_bound_cidrs": list(entry.token_bound_cidrs),
        }

    async def _role_for_secret_op(self, d: FieldData) -> Role:
        role = await self._role(d)
        if role is None:
            raise UserError(f'role "{self._name(d)}" does not exist')
        return role

    async def _secret_id_list(self, req: Request, d: FieldData) -> Response | None:
        role = await self._role(d)
        if role is None:
            raise UserError(f'role "{self._name(d)}" does not exist')
        folder = await self.keys.role_secrets(role.name)
        accessors: list[str] = []
        for name in await self.storage.list(folder):
            entry = None if name.endswith("/") else await load_secret(self.storage, folder + name)
            if entry is not None:
                accessors.append(entry.accessor)
        return Response(data={"keys": sorted(accessors)})

    async def _secret_key(self, role: Role, d: FieldData) -> str:
        secret_id = str(d.get("secret_id"))
        if not secret_id:
            raise UserError("missing secret_id")
        if len(secret_id) > MAX_HMAC_INPUT:
            raise UserError(f"secret_id is longer than maximum of {MAX_HMAC_INPUT} bytes")
        return await self.keys.role_secrets(role.name) + await self.keys.hmac("secret_id", secret_id)

    async def _secret_id_lookup(self, req: Request, d: FieldData) -> Response | None:
        role = await self._role_for_secret_op(d)
        key = await self._secret_key(role, d)
        async with self._lock:
            entry = await load_secret(self.storage, key)
            if entry is None:
                return None
            if await self.storage.get(await self.keys.accessor(entry.accessor)) is None:
                await self.storage.delete(key)  # a secret ID without its accessor is revoked at once
                raise UserError("invalid secret id")
        return Response(data=self._secret_view(entry))

    async def _secret_id_destroy(self, req: Request, d: FieldData) -> Response | None:
        role = await self._role_for_secret_op(d)
        key = await self._secret_key(role, d)
        async with self._lock, self.storage.transaction() as txn:
            entry = await load_secret(txn, key)
            if entry is not None:
                await txn.delete(await self.keys.accessor(entry.accessor))
                await txn.delete(key)
        return None

    async def _by_accessor(self, role: Role, d: FieldData) -> tuple[str, str, SecretID | None]:
        """(accessor key, secret key, entry) for an accessor of *this* role (CVE-2023-24999)."""
        accessor = str(d.get("secret_id_accessor")).strip()
        if not accessor:
            raise UserError("missing secret_id_accessor")
        accessor_key = await self.keys.accessor(accessor)
        index = await get_json(self.storage, accessor_key)
        if index is None:
            raise NotFound(f'failed to find accessor entry for secret_id_accessor: "{accessor[:128]}"')
        secret_key = await self.keys.role_secrets(role.name) + str(index.get("secret_id_hmac", ""))
        entry = await load_secret(self.storage, secret_key)
        if entry is not None and not hmac.compare_digest(entry.accessor, accessor):
            entry = None
        return accessor_key, secret_key, entry

    async def _accessor_lookup(self, req: Request, d: FieldData) -> Response | None:
        role = await self._role_for_secret_op(d)
        _, _, entry = await self._by_accessor(role, d)
        if entry is None:
            return None
        return Response(data=self._secret_view(entry))

    async def _accessor_destroy(self, req: Request, d: FieldData) -> Response | None:
        role = await self._role_for_secret_op(d)
        async with self._lock:
            accessor_key, secret_key, entry = await self._by_accessor(role, d)
            if entry is None:
                # another role's accessor (or a dangling one): never reachable through this role
                raise PermissionDenied("invalid secret id accessor")
            async with self.storage.transaction() as txn:
                await txn.delete(accessor_key)
                await txn.delete(secret_key)
        return None
