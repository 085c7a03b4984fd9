"""What every part of an approle mount shares: its fields, state, and role storage helpers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from strongroom.auth.approle.store import (
    MAX_HMAC_INPUT,
    Keys,
    Role,
    ensure_decoy,
    load_role,
)
from strongroom.auth.common import (
    LockoutPolicy,
    StoredLoginLockout,
    token_fields,
)
from strongroom.framework import Field, FieldData, FieldType, FrameworkBackend, PathOperation
from strongroom.logical.backend import BackendConfig
from strongroom.logical.errors import UnsupportedPath, UserError
from strongroom.logical.request import Request, Response
from strongroom.logical.storage import get_json, put_json

if TYPE_CHECKING:
    from strongroom.core.core import Core


GO_ZERO_TIME = "0001-01-01T00:00:00Z"

S, N, B, D, L = FieldType.STRING, FieldType.INT, FieldType.BOOL, FieldType.DURATION, FieldType.COMMA_LIST
ROLE_NAME_FIELD = Field(S, f"Name of the role. Must be less than {MAX_HMAC_INPUT} bytes.")
SECRET_ID_FIELD = Field(S, "SecretID attached to the role.", sensitive=True)
ACCESSOR_FIELD = Field(S, "Accessor of the SecretID")
ROLE_FIELDS: dict[str, Field] = {
    "role_name": ROLE_NAME_FIELD,
    "bind_secret_id": Field(
        B,
        "Impose secret_id to be presented when logging in using this role. Defaults to 'true'.",
        default=True,
    ),
    "bound_cidr_list": Field(L, 'Use "secret_id_bound_cidrs" instead.', deprecated=True),
    "secret_id_bound_cidrs": Field(
        L, "Comma separated string or list of CIDR blocks which can perform the login operation."
    ),
    "secret_id_num_uses": Field(N, "Number of times a SecretID can access the role (0: unlimited)."),
    "secret_id_ttl": Field(
        D, "Duration in seconds after which the issued SecretID should expire (0: never)."
    ),
    "role_id": Field(S, "Identifier of the role. Defaults to a UUID."),
    "local_secret_ids": Field(
        B, "If set, the secret IDs generated using this role will be cluster local (creation only)."
    ),
    **token_fields("policies", "period"),
}
SECRET_ID_FIELDS: dict[str, Field] = {
    "role_name": ROLE_NAME_FIELD,
    "metadata": Field(
        FieldType.ANY,
        "Metadata to be tied to the SecretID: a JSON string of string values, or key=value pairs.",
    ),
    "cidr_list": Field(L, "CIDR blocks this SecretID may be used from; a subset of the role's."),
    "token_bound_cidrs": Field(L, "CIDR blocks the returned token may be used from; a subset of the role's."),
    "num_uses": Field(N, "Uses of this SecretID; may not exceed the role's secret_id_num_uses."),
    "ttl": Field(D, "Lifetime of this SecretID; may not exceed the role's secret_id_ttl."),
}


def op(
    handler: Callable[[Request, FieldData], Awaitable[Response | None]], summary: str = ""
) -> PathOperation:
    return PathOperation(handler, summary=summary)


class AppRoleBase(FrameworkBackend):
    """State and role storage for one ``approle`` mount; the handlers live in the subclasses."""

    def __init__(self, config: BackendConfig, core: Core | None = None) -> None:
        self.core = core
        self.keys = Keys(config.storage)
        self.now: Callable[[], float] = time.time
        self._lock = asyncio.Lock()  # roles, secret IDs and logins change one at a time
        # counters live in the mount's storage: every worker of a node shares them
        self.lockout = StoredLoginLockout(config.storage, self._lockout_policy, now=lambda: self.now())
        self._tidy_task: asyncio.Task[None] | None = None
        super().__init__(config)

    async def initialize(self) -> None:
        await self.keys.salt()
        await ensure_decoy(self.storage)
        await self.lockout.initialize()

    async def cleanup(self) -> None:
        if self._tidy_task is not None and not self._tidy_task.done():
            self._tidy_task.cancel()
        await self.lockout.close()

    @property
    def tidy_task(self) -> asyncio.Task[None] | None:
        """The running (or last) tidy, so callers and tests can await it."""
        return self._tidy_task

    async def unlock_user(self, alias: str) -> None:
        """``sys/locked-users/<accessor>/unlock/<role_id>``."""
        await self.lockout.unlock(alias)

    def _lockout_policy(self) -> LockoutPolicy:
        entry = None
        if self.core is not None and self.config.mount_accessor:
            entry = self.core.auth_mounts.find_by_accessor(self.config.mount_accessor)
        return LockoutPolicy.from_mount_config(entry.config.user_lockout_config if entry else None)

    # -- role storage ------------------------------------------------------------------------

    @staticmethod
    def _name(d: FieldData) -> str:
        name = str(d.get("role_name"))
        if not name:
            raise UserError("missing role_name")
        if len(name) > MAX_HMAC_INPUT:
            raise UserError(f"role_name is longer than maximum of {MAX_HMAC_INPUT} bytes")
        return name.lower()

    async def _role(self, d: FieldData) -> Role | None:
        return await load_role(self.storage, self._name(d))

    async def _existing_role(self, d: FieldData) -> Role:
        role = await self._role(d)
        if role is None:
            raise UnsupportedPath()
        return role

    async def _save_role(self, role: Role, previous_role_id: str) -> None:
        """Persist a role and keep the role_id index unique (callers hold ``_lock``)."""
        if not role.has_constraint():
            raise UserError("at least one constraint should be enabled on the role")
        index_key = await self.keys.role_id(role.role_id)
        previous_key = await self.keys.role_id(previous_role_id) if previous_role_id else ""
        async with self.storage.transaction() as txn:
            owner = await get_json(txn, index_key)
            if owner is not None and owner.get("name") != role.name:
                raise UserError("role_id already in use")
            if previous_key and previous_key != index_key:
                await txn.delete(previous_key)
            await put_json(txn, Keys.role(role.name), role.to_json())
            if owner is None:
                await put_json(txn, index_key, {"name": role.name})

    def _max_lease_ttl(self) -> int:
        return int(self.config.system.max_lease_ttl())

    def _derive_secret_ttl(self, ttl: int) -> int:
        """Vault's deriveSecretIDTTL: the mount's max lease TTL caps a secret ID's lifetime."""
        ceiling = self._max_lease_ttl()
        return ceiling if ttl < 0 or ttl > ceiling else ttl
