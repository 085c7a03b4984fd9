"""The userpass auth method: users with a bcrypt-hashed password log in for a token.

Paths, field names, defaults and error texts follow Vault's ``builtin/credential/userpass``:
``users/<name>`` (create, read, update, delete; LIST ``users``), ``users/<name>/password``,
``users/<name>/policies`` and the unauthenticated ``login/<name>``. A user carries the
shared ``token_*`` settings of :mod:`strongroom.auth.common` plus the legacy ``policies``,
``ttl``, ``max_ttl`` and ``bound_cidrs`` names Vault still accepts.

What this module adds on top of Vault's behaviour, and why:

* **One user, one counter, whatever the spelling** (CVE-2025-6004): a username is trimmed
  and lower-cased before anything else looks at it, so ``Alice``, ``alice `` and ``ALICE``
  are the same user *and* the same lockout counter. The login path accepts any single
  segment (not only Vault's name pattern) so that such variants reach that normalisation
  instead of a 404 that would bypass the counter.
* **Unknown user and wrong password are indistinguishable** (CVE-2025-6011): both answer
  400 ``invalid username or password`` after the same work — the user read, the lockout
  transaction, and a ``bcrypt.checkpw`` against, for an unknown user, a dummy hash of the
  configured cost. Failed attempts on unknown names are counted too (unlisted, keyed by
  an HMAC), so the 403 of a lock cannot tell existing users from made-up ones either.
  (Vault counts existing users only.)
* **Lockout state lives in the mount's storage** (:class:`~strongroom.auth.common.StoredLoginLockout`),
  so every HTTP worker of a node shares one counter per user and a lock survives a
  restart (approle and ldap keep theirs the same way).
* **bcrypt cost** :data:`BCRYPT_COST` is 10, Vault's ``bcrypt.DefaultCost``: about 0.1 s per
  hash on the 2-core reference box (cost 11 ≈ 0.2 s, 12 ≈ 0.28 s), keeping a login well
  under 250 ms with room for the token write. Hashing runs in a worker thread
  (``asyncio.to_thread``) so the event loop keeps serving. An imported hash of another cost
  is re-hashed at the configured cost at its first successful login, after which its
  timing matches the dummy's.
* Passwords longer than 72 bytes (bcrypt's limit) are refused when set; at login such a
  password is checked against the dummy hash (same work, never a match).

Renewal, as Vault's ``pathLoginRenew``: the token store asks ``login/<name>`` (``RENEW``),
which refuses (400) once the user is deleted or its ``token_policies`` no longer equal the
token's (``default`` aside). Deleting a user does not revoke its tokens; they just stop renewing.

Passwords and hashes are never logged, echoed in errors, or returned by a read.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import bcrypt

from strongroom.auth.common import (
    LockoutPolicy,
    StoredLoginLockout,
    TokenParams,
    check_cidrs,
    equivalent_policies,
    mount_lockout_policy,
    token_fields,
)
from strongroom.framework import Display, Field, FieldData, FieldType, FrameworkBackend, Path, PathOperation
from strongroom.framework.fields import NAME_RE
from strongroom.logical.backend import BackendConfig
from strongroom.logical.errors import PermissionDenied, UserError
from strongroom.logical.request import Auth, Operation, Request, Response
from strongroom.logical.storage import Storage, get_json, put_json

if TYPE_CHECKING:
    from strongroom.core.core import Core

__all__ = [
    "BCRYPT_COST",
    "INVALID_LOGIN",
    "UserpassBackend",
    "factory",
    "normalize_username",
]

log = logging.getLogger("strongroom.auth.userpass")

# bcrypt work factor for new hashes and for the dummy an unknown user is checked against.
# Tests lower it (a module-level setting, read at each use).
BCRYPT_COST = 10
# Imported hashes: bcrypt's own minimum, and a ceiling so one login cannot burn minutes of CPU.
MIN_IMPORT_COST = 4
MAX_IMPORT_COST = 14
MAX_PASSWORD_BYTES = 72

INVALID_LOGIN = "invalid username or password"
USER_PREFIX = "user/"
# A stored user-shaped entry that an unknown name reads and decodes in place of a user, and a
# key that never exists, read by a known name in turn: every login does one hit and one miss.
_DECOY_KEY = "decoy-user"
_ABSENT_KEY = "absent-user"
_BCRYPT_HASH = re.compile(r"^\$2[aby]\$(\d\d)\$[./A-Za-z0-9]{53}$")

S = FieldType.STRING
_USERNAME = Field(S, "Username for this user.")
_PASSWORD = Field(S, "Password for this user.", sensitive=True)
_PASSWORD_HASH = Field(
    S, "Pre-hashed password for this user in bcrypt format. Mutually exclusive with password.", sensitive=True
)
_USER_FIELDS: dict[str, Field] = {
    "username": _USERNAME,
    "password": _PASSWORD,
    "password_hash": _PASSWORD_HASH,
    **token_fields("policies", "ttl", "max_ttl", "bound_cidrs"),
}
_POLICY_FIELDS: dict[str, Field] = {
    "username": _USERNAME,
    **{k: v for k, v in token_fields("policies").items() if k in ("token_policies", "policies")},
}


def normalize_username(raw: str) -> str:
    """The one spelling of a username that storage, login and lockout all use: trimmed, lower-cased."""
    return raw.strip().lower()


def _encode(password: str) -> bytes:
    # JSON may carry lone surrogates; keep them as bytes rather than failing with a 500
    return password.encode("utf-8", "surrogatepass")


def _hash_cost(hashed: str) -> int:
    match = _BCRYPT_HASH.match(hashed)
    return int(match.group(1)) if match else 0


def parse_password_hash(text: str) -> str:
    """Validate an imported bcrypt hash (``$2a$``/``$2b$``/``$2y$``, cost 4..14); the message never echoes it."""
    text = text.strip()
    match = _BCRYPT_HASH.match(text)
    if match is None:
        raise UserError("password_hash is not a valid bcrypt hash")
    cost = int(match.group(1))
    if not MIN_IMPORT_COST <= cost <= MAX_IMPORT_COST:
        raise UserError(
            f"password_hash has bcrypt cost {cost}; accepted costs are {MIN_IMPORT_COST} to {MAX_IMPORT_COST}"
        )
    try:  # bcrypt itself must accept the salt; checked at cost 4 so this costs ~2 ms, not the hash's cost
        bcrypt.hashpw(b"", (text[:4] + "04$" + text[7:29]).encode())
    except ValueError:
        raise UserError("password_hash is not a valid bcrypt hash") from None
    return text


async def hash_password(password: str) -> str:
    """bcrypt-hash a password at :data:`BCRYPT_COST`, off the event loop."""
    encoded = _encode(password)
    if len(encoded) > MAX_PASSWORD_BYTES:
        raise UserError(f"password is longer than {MAX_PASSWORD_BYTES} bytes, the most bcrypt can use")
    cost = BCRYPT_COST
    hashed: bytes = await asyncio.to_thread(bcrypt.hashpw, encoded, bcrypt.gensalt(cost))
    return hashed.decode()


_dummy_hashes: dict[int, bytes] = {}


async def dummy_hash(cost: int) -> bytes:
    """A hash of a random secret at ``cost``: what an unknown user's password is checked against.

    It is made once per cost (on mount start-up for the configured one) so the first
    unknown-user login does not pay for it; no password can match it.
    """
    found = _dummy_hashes.get(cost)
    if found is None:
        found = await asyncio.to_thread(bcrypt.hashpw, secrets.token_bytes(32), bcrypt.gensalt(cost))
        _dummy_hashes[cost] = found
    return found


def _checkpw(password: bytes, hashed: bytes) -> bool:
    try:
        return bool(bcrypt.checkpw(password, hashed))
    except ValueError:  # a damaged stored hash: a failed login, not a 500
        log.warning("userpass: a stored password hash could not be checked")
        return False


@dataclass
class User:
    """One stored user: the bcrypt hash and its token settings (``user/<name>``)."""

    password_hash: str = ""
    token: TokenParams = field(default_factory=TokenParams)

    def to_json(self) -> dict[str, Any]:
        return {"password_hash": self.password_hash, **self.token.to_json()}

    @classmethod
    def from_json(cls, raw: Any) -> User | None:
        if not isinstance(raw, dict):
            return None
        return cls(password_hash=str(raw.get("password_hash", "")), token=TokenParams.from_json(raw))


async def load_user(storage: Storage, name: str) -> User | None:
    return User.from_json(await get_json(storage, USER_PREFIX + name))


async def load_user_evenly(storage: Storage, name: str | None) -> User | None:
    """The user ``name`` (None: a name that cannot be stored), after the same storage work either way.

    A known user costs a hit (read, decrypt, decode) plus a miss; an unknown one a miss
    plus a hit on the decoy entry, decoded the same way and then thrown away.
    """
    first = await storage.get(USER_PREFIX + name if name else _ABSENT_KEY)
    second = await storage.get(_DECOY_KEY if first is None else _ABSENT_KEY)
    raw = first if first is not None else second
    record = User.from_json(json.loads(raw)) if raw is not None else None
    return record if first is not None else None


async def ensure_decoy(storage: Storage) -> None:
    """Write the decoy entry once per mount (a user-shaped record no name reaches)."""
    if await storage.get(_DECOY_KEY) is not None:
        return
    decoy = User(password_hash=(await dummy_hash(BCRYPT_COST)).decode())  # hashed outside the transaction
    async with storage.transaction() as txn:
        if await txn.get(_DECOY_KEY) is None:
            await put_json(txn, _DECOY_KEY, decoy.to_json())


def op(
    handler: Callable[[Request, FieldData], Awaitable[Response | None]], summary: str = ""
) -> PathOperation:
    return PathOperation(handler, summary=summary)


class UserpassBackend(FrameworkBackend):
    """One ``userpass`` mount."""

    backend_type = "userpass"
    help_text = (
        'The "userpass" credential provider allows authentication using a combination of a '
        "username and password. No additional factors are supported.\n\n"
        'The username/password combination is configured using the "users/" endpoints by a user '
        'with root access. Authentication is then done by supplying the two fields for "login".'
    )

    def __init__(self, config: BackendConfig, core: Core | None = None) -> None:
        self.core = core
        self.now: Callable[[], float] = time.time  # replaceable in tests
        self.lockout = StoredLoginLockout(config.storage, self._lockout_policy, now=lambda: self.now())
        super().__init__(config)

    async def initialize(self) -> None:
        await self.lockout.initialize()
        await ensure_decoy(self.storage)
        await dummy_hash(BCRYPT_COST)

    async def cleanup(self) -> None:
        await self.lockout.close()

    def _lockout_policy(self) -> LockoutPolicy:
        return mount_lockout_policy(self.core, self.config.mount_accessor)

    # -- paths -------------------------------------------------------------------------------

    def build_paths(self) -> list[Path]:
        disp = Display(prefix="userpass")
        return [
            Path(
                "login/{username:segment}",
                {
                    Operation.UPDATE: op(self._login, "Log in with a username and password."),
                    Operation.RENEW: op(self._renew, "Renew a token issued by this method."),
                },
                fields={
                    "username": Field(S, "Username of the user."),
                    "password": Field(S, "Password for this user.", sensitive=True),
                },
                unauthenticated=True,
                synopsis="Log in with a username and password.",
                description="This endpoint authenticates using a username and password.",
                display=disp,
            ),
            Path(
                "users/",
                {Operation.LIST: op(self._user_list, "List the users")},
                synopsis="Manage users allowed to authenticate.",
                display=disp,
            ),
            Path(
                "users/{username}/password",
                {Operation.UPDATE: op(self._password_write, "Reset a user's password")},
                fields={"username": _USERNAME, "password": _PASSWORD, "password_hash": _PASSWORD_HASH},
                synopsis="Reset user's password.",
                description="This endpoint allows resetting the user's password.",
                display=disp,
            ),
            Path(
                "users/{username}/policies",
                {Operation.UPDATE: op(self._policies_write, "Update the policies of a user")},
                fields=_POLICY_FIELDS,
                synopsis="Update the policies associated with the username.",
                description="This endpoint allows updating the policies associated with the username.",
                display=disp,
            ),
            Path(
                "users/{username}",
                {
                    Operation.READ: op(self._user_read, "Read a user"),
                    Operation.CREATE: op(self._user_write, "Create a user"),
                    Operation.UPDATE: op(self._user_write, "Update a user"),
                    Operation.DELETE: op(self._user_delete, "Delete a user"),
                },
                fields=_USER_FIELDS,
                existence_check=self._user_exists,
                synopsis="Manage users allowed to authenticate.",
                description=(
                    "This endpoint allows you to create, read, update, and delete users that are "
                    "allowed to authenticate. Deleting a user does not revoke the tokens it already has."
                ),
                display=disp,
            ),
        ]

    # -- users -------------------------------------------------------------------------------

    @staticmethod
    def _name(d: FieldData) -> str:
        name = normalize_username(str(d.get("username")))
        if not name:
            raise UserError("missing username")
        return name

    async def _user_exists(self, req: Request, d: FieldData) -> bool:
        return await load_user(self.storage, self._name(d)) is not None

    async def _user_list(self, req: Request, d: FieldData) -> Response | None:
        return Response(data={"keys": await self.storage.list(USER_PREFIX)})

    async def _user_read(self, req: Request, d: FieldData) -> Response | None:
        user = await load_user(self.storage, self._name(d))
        if user is None:
            return None
        return Response(data=user.token.to_api())

    async def _user_delete(self, req: Request, d: FieldData) -> Response | None:
        name = self._name(d)
        await self.storage.delete(USER_PREFIX + name)
        await self.lockout.unlock(name)
        return None

    async def _new_hash(self, d: FieldData, *, required: bool) -> str | None:
        """The hash to store from ``password`` or ``password_hash`` (None: neither sent)."""
        password, has_password = d.get_ok("password")
        imported, has_hash = d.get_ok("password_hash")
        has_password = has_password and password != ""
        has_hash = has_hash and imported != ""
        if has_password and has_hash:
            raise UserError('only one of "password" or "password_hash" may be given')
        if has_hash:
            return parse_password_hash(str(imported))
        if has_password:
            return await hash_password(str(password))
        if required:
            raise UserError("missing password")
        return None

    async def _user_write(self, req: Request, d: FieldData) -> Response | None:
        name = self._name(d)
        create = req.operation == Operation.CREATE
        new_hash = await self._new_hash(d, required=create)  # hashed before the transaction opens
        async with self.storage.transaction() as txn:
            user = await load_user(txn, name)
            created = user is None
            if user is None:
                if new_hash is None:
                    raise UserError("missing password")
                user = User()
            user.token = TokenParams.from_fields(d, user.token)
            if new_hash is not None:
                user.password_hash = new_hash
            await put_json(txn, USER_PREFIX + name, user.to_json())
        if created:
            # failures counted against this name before it existed must not lock the new user
            await self.lockout.unlock(name)
        return None

    async def _existing(self, txn: Storage, name: str) -> User:
        user = await load_user(txn, name)
        if user is None:
            raise UserError("username does not exist")
        return user

    async def _password_write(self, req: Request, d: FieldData) -> Response | None:
        name = self._name(d)
        await self._existing(self.storage, name)  # fail before hashing
        new_hash = await self._new_hash(d, required=True)
        if new_hash is None:  # required=True raised already; this keeps the type checker informed
            raise UserError("missing password")
        async with self.storage.transaction() as txn:
            user = await self._existing(txn, name)
            user.password_hash = new_hash
            await put_json(txn, USER_PREFIX + name, user.to_json())
        return None

    async def _policies_write(self, req: Request, d: FieldData) -> Response | None:
        name = self._name(d)
        if not d.sent("token_policies") and not d.sent("policies"):
            raise UserError("policies must be set")
        async with self.storage.transaction() as txn:
            user = await self._existing(txn, name)
            user.token = TokenParams.from_fields(d, user.token)
            await put_json(txn, USER_PREFIX + name, user.to_json())
        return None

    # -- login -------------------------------------------------------------------------------

    async def _login(self, req: Request, d: FieldData) -> Response | None:
        name = normalize_username(str(d.get("username")))
        if not name:
            raise UserError("missing username")
        password = str(d.get("password"))
        if not password:
            raise UserError("missing password")

        # The same reads, writes and bcrypt work whether or not the user exists.
        valid_name = NAME_RE.match(name) is not None  # only such names can be stored (users/<name>)
        user = await load_user_evenly(self.storage, name if valid_name else None)
        if not await self.lockout.attempt(name, label=name if user is not None else ""):
            raise PermissionDenied()
        encoded = _encode(password)
        usable = user is not None and len(encoded) <= MAX_PASSWORD_BYTES
        target = user.password_hash.encode() if user is not None and usable else await dummy_hash(BCRYPT_COST)
        try:
            matched = await asyncio.to_thread(_checkpw, encoded[:MAX_PASSWORD_BYTES], target)
        except BaseException:
            await self.lockout.failure(name)  # give the slot back as a failure
            raise
        if not matched or not usable or user is None:
            await self.lockout.failure(name)
            raise UserError(INVALID_LOGIN)

        # the password is right: the counter starts over, whatever happens next
        await self.lockout.success(name)
        if not check_cidrs(req.connection.remote_addr, user.token.bound_cidrs):
            raise PermissionDenied()
        if _hash_cost(user.password_hash) != BCRYPT_COST:
            await self._rehash(name, user.password_hash, password)

        auth = Auth(metadata={"username": name}, display_name=name, alias_name=name)
        user.token.apply(auth)
        return Response(auth=auth)

    async def _renew(self, req: Request, d: FieldData) -> Response | None:
        """Renew only while the user exists with the token's policies (Vault's ``pathLoginRenew``).

        Reads only: a refusal leaves the user, the lockout counter and the token untouched.
        """
        if req.auth is None:
            raise UserError("request auth was nil")
        name = normalize_username(str(req.auth.metadata.get("username", "")))
        user = await load_user(self.storage, name) if name else None
        if user is None:
            raise UserError("user no longer exists, not renewing")
        if not equivalent_policies(user.token.policies, req.auth.token_policies or req.auth.policies):
            raise UserError("policies have changed, not renewing")
        auth = req.auth
        user.token.apply_renewal(auth)
        return Response(auth=auth)

    async def _rehash(self, name: str, old_hash: str, password: str) -> None:
        """Re-hash an imported (or older) hash at :data:`BCRYPT_COST`, unless it changed meanwhile."""
        try:
            new_hash = await hash_password(password)
        except UserError:
            return
        async with self.storage.transaction() as txn:
            user = await load_user(txn, name)
            if user is not None and user.password_hash == old_hash:
                user.password_hash = new_hash
                await put_json(txn, USER_PREFIX + name, user.to_json())

    # -- sys/locked-users ----------------------------------------------------------------------

    async def locked_users(self) -> list[str]:
        """The users locked out now (what ``sys/locked-users`` lists for this mount)."""
        return await self.lockout.locked()

    async def unlock_user(self, alias: str) -> None:
        """Lift the lock on a user, however the name is spelt (``sys/locked-users/.../unlock``)."""
        await self.lockout.unlock(normalize_username(alias))


async def factory(config: BackendConfig, core: Core) -> UserpassBackend:
    """Build one userpass mount; core calls ``initialize`` next."""
    return UserpassBackend(config, core)
