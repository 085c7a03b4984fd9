"""The AppRole auth method: roles, role IDs, secret IDs and the login that trades them for a token.

A machine logs in with a ``role_id`` (an identifier, like a user name) and a
``secret_id`` (a password issued per machine, limited in uses, lifetime and source
addresses). The login returns an ``auth`` block; core's expiration manager mints the
token from it. Semantics, defaults and error texts follow Vault's
``builtin/credential/approle``; where Vault answers a user mistake with a 500 (a role_id
already in use, a role without constraints) we answer 400.

Failed logins are indistinguishable: an unknown role_id and a wrong secret_id give the
same 400 ``invalid role or secret ID`` after the same work (HMACs, storage reads).
Every use of a secret ID is consumed inside a storage transaction, under a lock.
"""

from __future__ import annotations

import asyncio
import hmac
import logging

from strongroom.auth.approle.base import (
    ACCESSOR_FIELD,
    ROLE_FIELDS,
    ROLE_NAME_FIELD,
    SECRET_ID_FIELD,
    SECRET_ID_FIELDS,
    S,
    op,
)
from strongroom.auth.approle.roles import RoleHandlers
from strongroom.auth.approle.secret_ids import SecretIDHandlers
from strongroom.auth.approle.store import (
    ACCESSOR_PREFIX,
    MAX_HMAC_INPUT,
    ROLE_PREFIX,
    SECRET_PREFIX,
    Role,
    SecretID,
    load_decoy,
    load_role,
    load_secret,
)
from strongroom.auth.common import (
    check_cidrs,
    cidrs_subset,
)
from strongroom.framework import Display, Field, FieldData, Path
from strongroom.logical.errors import PermissionDenied, UserError
from strongroom.logical.request import Auth, Operation, Request, Response
from strongroom.logical.storage import get_json, put_json

log = logging.getLogger("strongroom.auth.approle")

INVALID_LOGIN = "invalid role or secret ID"
TIDY_STARTED = (
    "Tidy operation successfully started. Any information from the operation will be printed to "
    "Vault's server logs."
)


class AppRoleBackend(RoleHandlers, SecretIDHandlers):
    """One ``approle`` mount."""

    backend_type = "approle"
    help_text = (
        "Any registered Role can authenticate itself with Vault. The credentials depend on the "
        "constraints that are set on the Role. One common required credential is the 'role_id'."
    )

    # -- paths -------------------------------------------------------------------------------

    def build_paths(self) -> list[Path]:
        disp = Display(prefix="app-role")
        name_only = {"role_name": ROLE_NAME_FIELD}
        paths = [
            Path(
                "login",
                {
                    Operation.UPDATE: op(self._login, "Log in with a role_id and secret_id"),
                    Operation.RENEW: op(self._renew, "Renew a token issued by this method."),
                },
                fields={
                    "role_id": Field(S, "Unique identifier of the Role."),
                    "secret_id": Field(S, "SecretID belonging to the role", default="", sensitive=True),
                },
                unauthenticated=True,
                synopsis="Issue a token based on the credentials supplied",
                display=disp,
            ),
            Path(
                "role/",
                {Operation.LIST: op(self._role_list, "List the roles")},
                synopsis="Lists all the roles registered with the backend.",
                display=disp,
            ),
            Path(
                "role/{role_name}",
                {
                    Operation.READ: op(self._role_read, "Read a role"),
                    Operation.CREATE: op(self._role_write, "Create a role"),
                    Operation.UPDATE: op(self._role_write, "Update a role"),
                    Operation.DELETE: op(self._role_delete, "Delete a role"),
                },
                fields=ROLE_FIELDS,
                existence_check=self._role_exists,
                synopsis="Register an role with the backend.",
                display=disp,
            ),
            Path(
                "role/{role_name}/local-secret-ids",
                {Operation.READ: op(self._local_secret_ids_read)},
                fields=name_only,
                synopsis="Whether the secret IDs of the role are cluster local.",
                display=disp,
            ),
            Path(
                "role/{role_name}/role-id",
                {
                    Operation.READ: op(self._role_id_read, "Read the role_id of a role"),
                    Operation.UPDATE: op(self._role_id_write, "Set a custom role_id"),
                },
                fields={**name_only, "role_id": Field(S, "Identifier of the role. Defaults to a UUID.")},
                synopsis="Returns the 'role_id' of the role.",
                display=disp,
            ),
            Path(
                "role/{role_name}/secret-id/",
                {Operation.LIST: op(self._secret_id_list, "List the accessors of the role's secret IDs")},
                fields=name_only,
                synopsis="Lists the accessors of the secret IDs issued against the role.",
                display=disp,
            ),
            Path(
                "role/{role_name}/secret-id",
                {Operation.UPDATE: op(self._secret_id_generate, "Generate a secret ID")},
                fields=SECRET_ID_FIELDS,
                synopsis="Generate a SecretID against this role.",
                display=disp,
            ),
            Path(
                "role/{role_name}/custom-secret-id",
                {Operation.UPDATE: op(self._secret_id_custom, "Assign a chosen secret ID")},
                fields={**SECRET_ID_FIELDS, "secret_id": SECRET_ID_FIELD},
                synopsis="Assign a SecretID of choice against the role.",
                display=disp,
            ),
            Path(
                "role/{role_name}/secret-id/lookup",
                {Operation.UPDATE: op(self._secret_id_lookup, "Read the properties of a secret ID")},
                fields={**name_only, "secret_id": SECRET_ID_FIELD},
                synopsis="Read the properties of an issued secret_id",
                display=disp,
            ),
            Path(
                "role/{role_name}/secret-id/destroy",
                {
                    Operation.UPDATE: op(self._secret_id_destroy, "Invalidate a secret ID"),
                    Operation.DELETE: op(self._secret_id_destroy, "Invalidate a secret ID"),
                },
                fields={**name_only, "secret_id": SECRET_ID_FIELD},
                synopsis="Invalidate an issued secret_id",
                display=disp,
            ),
            Path(
                "role/{role_name}/secret-id-accessor/lookup",
                {Operation.UPDATE: op(self._accessor_lookup, "Read a secret ID by its accessor")},
                fields={**name_only, "secret_id_accessor": ACCESSOR_FIELD},
                synopsis="Read an issued secret_id, using its accessor",
                display=disp,
            ),
            Path(
                "role/{role_name}/secret-id-accessor/destroy",
                {
                    Operation.UPDATE: op(self._accessor_destroy, "Delete a secret ID by its accessor"),
                    Operation.DELETE: op(self._accessor_destroy, "Delete a secret ID by its accessor"),
                },
                fields={**name_only, "secret_id_accessor": ACCESSOR_FIELD},
                synopsis="Delete an issued secret_id, using its accessor",
                display=disp,
            ),
            Path(
                "tidy/secret-id",
                {Operation.UPDATE: op(self._tidy, "Remove expired secret IDs and dangling accessors")},
                synopsis="Trigger the clean-up of expired SecretID entries.",
                display=disp,
            ),
        ]
        return paths + self._field_paths(disp)

    # -- login -------------------------------------------------------------------------------

    async def _login(self, req: Request, d: FieldData) -> Response | None:
        role_id = str(d.get("role_id")).strip()
        if not role_id:
            raise UserError("missing role_id")
        secret_id = str(d.get("secret_id")).strip()
        if len(role_id) > MAX_HMAC_INPUT or len(secret_id) > MAX_HMAC_INPUT:
            raise UserError(INVALID_LOGIN)
        # a slot is taken before the check (cleared on success, a failure otherwise), so
        # parallel guesses across workers cannot outrun the threshold
        if not await self.lockout.attempt(role_id):
            raise PermissionDenied()
        try:
            role, metadata, token_cidrs = await self._check_credentials(req, role_id, secret_id)
        except (UserError, PermissionDenied):
            await self.lockout.failure(role_id)
            raise
        await self.lockout.success(role_id)
        metadata["role_name"] = role.name
        auth = Auth(
            metadata=metadata,
            display_name=role.name,
            alias_name=role.role_id,
            alias_metadata=dict(metadata),
            internal_data={"role_name": role.name},
        )
        role.token.apply(auth)
        if token_cidrs:
            auth.bound_cidrs = token_cidrs
        return Response(auth=auth)

    async def _renew(self, req: Request, d: FieldData) -> Response | None:
        """Vault's ``pathLoginRenew``: only while the role exists, with its current token TTLs."""
        if req.auth is None:
            raise UserError("request auth was nil")
        name = str(req.auth.internal_data.get("role_name", ""))
        if not name:
            raise UserError("failed to fetch role_name during renewal")
        role = await load_role(self.storage, name)
        if role is None:
            raise UserError(f"role {name!r} does not exist during renewal")
        auth = req.auth
        role.token.apply_renewal(auth)
        return Response(auth=auth)

    async def _check_credentials(
        self, req: Request, role_id: str, secret_id: str
    ) -> tuple[Role, dict[str, str], list[str]]:
        """The role behind ``role_id`` when ``secret_id`` (and the source address) fit it."""
        # The same reads, decryptions and HMACs happen whether or not the role_id exists.
        index = await get_json(self.storage, await self.keys.role_id(role_id))
        role: Role | None = None
        if isinstance(index, dict):
            role = await load_role(self.storage, str(index.get("name", "")))
        known = role is not None
        if role is None:
            _, role = await load_decoy(self.storage)
        folder = await self.keys.role_secrets(role.name)
        remote = req.connection.remote_addr

        metadata: dict[str, str] = {}
        token_cidrs: list[str] = []
        if role.bind_secret_id or not known:
            if not secret_id:  # the same answer whether or not the role_id exists
                raise UserError("missing secret_id")
            secret_hmac = await self.keys.hmac("secret_id", secret_id)
            entry = await self._use_secret(role, folder + secret_hmac, secret_hmac, remote)
            if entry is None or not known:
                raise UserError(INVALID_LOGIN)
            metadata = dict(entry.metadata)
            token_cidrs = list(entry.token_bound_cidrs)
        elif not check_cidrs(remote, role.secret_id_bound_cidrs):
            raise UserError(f'source address "{remote}" unauthorized by CIDR restrictions on the role')

        return role, metadata, token_cidrs

    async def _use_secret(self, role: Role, key: str, secret_hmac: str, remote: str) -> SecretID | None:
        """Check a secret ID and consume one of its uses, atomically; None when it is not valid.

        An expired secret ID, or one whose accessor is gone, is deleted on the way. Source
        address checks come before the use is consumed, so a refused login costs nothing.
        """
        expired = False
        async with self._lock:
            async with self.storage.transaction() as txn:
                entry = await load_secret(txn, key)
                if entry is None or not hmac.compare_digest(entry.secret_id_hmac, secret_hmac):
                    return None
                accessor_key = await self.keys.accessor(entry.accessor)
                if await txn.get(accessor_key) is None:
                    await txn.delete(key)
                    expired = True
                elif entry.expired(self.now()):
                    await txn.delete(key)
                    await txn.delete(accessor_key)
                    expired = True
                else:
                    if not cidrs_subset(entry.cidr_list, role.secret_id_bound_cidrs):
                        raise UserError("the CIDR blocks on the secret ID are no longer within the role's")
                    if not check_cidrs(remote, entry.cidr_list):
                        raise UserError(
                            f'source address "{remote}" unauthorized through CIDR restrictions on the secret ID'
                        )
                    if not check_cidrs(remote, role.secret_id_bound_cidrs):
                        raise UserError(
                            f'source address "{remote}" unauthorized by CIDR restrictions on the role'
                        )
                    if entry.num_uses == 1:
                        await txn.delete(accessor_key)
                        await txn.delete(key)
                    elif entry.num_uses > 1:
                        entry.num_uses -= 1
                        entry.last_updated_time = self.now()
                        await put_json(txn, key, entry.to_json())
        return None if expired else entry

    # -- tidy --------------------------------------------------------------------------------

    async def _tidy(self, req: Request, d: FieldData) -> Response | None:
        if self._tidy_task is not None and not self._tidy_task.done():
            return Response(warnings=["Tidy operation already in progress."])
        self._tidy_task = asyncio.create_task(self._tidy_run(), name="approle-tidy")
        return Response(warnings=[TIDY_STARTED], status=202)

    async def tidy(self) -> int:
        """Remove expired secret IDs, those of deleted roles, and dangling accessors; return how many.

        Each entry is re-checked under the lock just before it goes, so logins keep running
        while a large mount is tidied.
        """
        removed = 0
        live_roles = {await self.keys.hmac("role", n) for n in await self.storage.list(ROLE_PREFIX)}
        for folder in await self.storage.list(SECRET_PREFIX):
            if not folder.endswith("/"):
                continue
            prefix = SECRET_PREFIX + folder
            role_gone = folder[:-1] not in live_roles
            for name in await self.storage.list(prefix):
                key = prefix + name
                async with self._lock:
                    entry = await load_secret(self.storage, key)
                    if entry is None:
                        continue
                    accessor_key = await self.keys.accessor(entry.accessor)
                    dangling = await self.storage.get(accessor_key) is None
                    if not (role_gone or dangling or entry.expired(self.now())):
                        continue
                    async with self.storage.transaction() as txn:
                        await txn.delete(accessor_key)
                        await txn.delete(key)
                    removed += 1
        for name in await self.storage.list(ACCESSOR_PREFIX):
            key = ACCESSOR_PREFIX + name
            async with self._lock:
                index = await get_json(self.storage, key)
                if not isinstance(index, dict):
                    continue
                secret_key = f"{SECRET_PREFIX}{index.get('role_hmac', '')}/{index.get('secret_id_hmac', '')}"
                if await self.storage.get(secret_key) is None:
                    await self.storage.delete(key)
                    removed += 1
        return removed

    async def _tidy_run(self) -> None:
        try:
            removed = await self.tidy()
            log.info("approle tidy of %s removed %d entries", self.config.mount_path, removed)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("approle tidy of %s failed", self.config.mount_path)
