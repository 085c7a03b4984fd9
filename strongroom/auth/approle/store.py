"""AppRole's records and where they live in the mount's storage.

    salt                                   per-mount random HMAC key (created once)
    role/<name>                            a role (names are lower-cased)
    role_id/<hmac(role_id)>                role_id -> role name (role ids are unique)
    secret_id/<hmac(role)>/<hmac(secret)>  one secret ID of a role
    accessor/<hmac(accessor)>              accessor -> (role, secret) HMACs

Secret IDs and role IDs are credentials: only their HMACs are stored, keyed by a salt
that never leaves the mount. A secret ID is found by its HMAC under its own role's
prefix, so an accessor or secret of one role can never be reached through another.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from dataclasses import asdict, dataclass, field
from typing import Any

from strongroom.auth.common import TokenParams
from strongroom.logical.storage import Storage, get_json, put_json

MAX_HMAC_INPUT = 4096  # Vault's maxHmacInputLength
SALT_KEY = "salt"
ROLE_PREFIX = "role/"
ROLE_ID_PREFIX = "role_id/"
SECRET_PREFIX = "secret_id/"  # noqa: S105 (a storage folder)
ACCESSOR_PREFIX = "accessor/"
# A stand-in role read when a login names an unknown role_id, so that path does the
# same decrypting and parsing as a known one (no timing oracle for role ids).
DECOY_INDEX = "decoy/index"
DECOY_ROLE = "decoy/role"
DECOY_NAME = "-"  # never a valid role name


@dataclass
class Role:
    """One AppRole role; durations in seconds."""

    name: str
    role_id: str = ""
    bind_secret_id: bool = True
    secret_id_bound_cidrs: list[str] = field(default_factory=list)
    secret_id_num_uses: int = 0
    secret_id_ttl: int = 0
    local_secret_ids: bool = False
    token: TokenParams = field(default_factory=TokenParams)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["token"] = self.token.to_json()
        return out

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Role:
        raw = dict(raw)
        token = TokenParams.from_json(raw.pop("token", None))
        known = {k: v for k, v in raw.items() if k in cls.__dataclass_fields__}
        return cls(token=token, **known)

    def has_constraint(self) -> bool:
        """Vault's validateRoleConstraints: a role must bind something."""
        return self.bind_secret_id or bool(self.secret_id_bound_cidrs) or bool(self.token.bound_cidrs)


@dataclass
class SecretID:
    """One issued secret ID (never the value itself: its HMAC)."""

    secret_id_hmac: str
    accessor: str
    num_uses: int = 0
    ttl: int = 0
    creation_time: float = 0.0
    expiration_time: float = 0.0  # 0: never
    last_updated_time: float = 0.0
    metadata: dict[str, str] = field(default_factory=dict)
    cidr_list: list[str] = field(default_factory=list)
    token_bound_cidrs: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> SecretID:
        return cls(**{k: v for k, v in raw.items() if k in cls.__dataclass_fields__})

    def expired(self, now: float) -> bool:
        return bool(self.expiration_time) and now >= self.expiration_time


class Keys:
    """Storage keys and HMACs for one mount (the salt is loaded, or made, once)."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self._salt: bytes | None = None

    async def salt(self) -> bytes:
        if self._salt is None:
            raw = await get_json(self.storage, SALT_KEY)
            if raw is None:
                raw = {"key": secrets.token_hex(32)}
                await put_json(self.storage, SALT_KEY, raw)
            self._salt = bytes.fromhex(raw["key"])
        return self._salt

    async def hmac(self, kind: str, value: str) -> str:
        """HMAC-SHA256 of ``value`` in a domain (``kind``), hex; never reversible to the value."""
        salt = await self.salt()
        return hmac.new(salt, f"{kind}\x00{value}".encode(), hashlib.sha256).hexdigest()

    @staticmethod
    def role(name: str) -> str:
        return ROLE_PREFIX + name.lower()

    async def role_id(self, role_id: str) -> str:
        return ROLE_ID_PREFIX + await self.hmac("role_id", role_id)

    async def role_secrets(self, name: str) -> str:
        """The folder (ending in ``/``) of a role's secret IDs."""
        return SECRET_PREFIX + await self.hmac("role", name.lower()) + "/"

    async def accessor(self, accessor: str) -> str:
        return ACCESSOR_PREFIX + await self.hmac("accessor", accessor)


async def load_role(storage: Storage, name: str) -> Role | None:
    raw = await get_json(storage, Keys.role(name))
    return None if raw is None else Role.from_json(raw)


async def ensure_decoy(storage: Storage) -> None:
    if await storage.get(DECOY_ROLE) is None:
        await put_json(storage, DECOY_INDEX, {"name": DECOY_NAME})
        await put_json(storage, DECOY_ROLE, Role(name=DECOY_NAME, role_id=secrets.token_hex(18)).to_json())


async def load_decoy(storage: Storage) -> tuple[dict[str, Any], Role]:
    """Read the decoy index and role exactly as a known role_id's are read."""
    index = await get_json(storage, DECOY_INDEX)
    raw = await get_json(storage, DECOY_ROLE)
    role = Role.from_json(raw) if isinstance(raw, dict) else Role(name=DECOY_NAME)
    return (index if isinstance(index, dict) else {}), role


async def load_secret(storage: Storage, key: str) -> SecretID | None:
    raw = await storage.get(key)
    return None if raw is None else SecretID.from_json(json.loads(raw))
