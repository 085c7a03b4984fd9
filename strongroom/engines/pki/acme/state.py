"""Stored ACME objects: configuration, accounts, orders, authorizations, EAB keys.

Everything lives in the mount's (barrier-encrypted) storage so that every worker
of a node, and a restarted node, sees the same accounts and orders. Layout:

- ``config/acme``                    the directory configuration (:class:`AcmeConfig`)
- ``acme/accounts/<kid>``            an account
- ``acme/thumbprints/<dir>/<thumb>`` the account that owns a key in a directory
- ``acme/orders/<kid>/<order id>``   an account's orders
- ``acme/authz/<kid>/<authz id>``    an account's authorizations (challenges inside)
- ``acme/eab/<key id>``              unused external account binding keys
- ``acme/cert-owner/<serial>``       which account an ACME certificate was issued to
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from strongroom.engines.pki import revocation
from strongroom.logical.storage import Storage, get_json, put_json

CONFIG_KEY = "config/acme"
ACCOUNTS = "acme/accounts/"
THUMBPRINTS = "acme/thumbprints/"
ORDERS = "acme/orders/"
AUTHZ = "acme/authz/"
EAB = "acme/eab/"
CERT_OWNER = "acme/cert-owner/"

EAB_POLICIES = ("not-required", "new-account-required", "always-required")
DEFAULT_MAX_TTL = 90 * 24 * 3600
ORDER_LIFETIME = 24 * 3600  # an order (and its authorizations) must be finished within a day
AUTHZ_LIFETIME = 24 * 3600
VALIDATION_DEADLINE = 240.0  # "processing" longer than this has failed (5 attempts of <= 30 s)


def new_id() -> str:
    """Object ids: 128 random bits, URL-safe (they appear in URLs and storage keys)."""
    return secrets.token_urlsafe(16)


def rfc3339(ts: float) -> str:
    """ACME timestamps: whole seconds, in the PKI engine's RFC 3339 form."""
    return revocation.rfc3339(int(ts))


@dataclass
class AcmeConfig:
    """``config/acme``: Vault's fields plus the validator knobs (strongroom extensions)."""

    enabled: bool = False
    allowed_issuers: list[str] = field(default_factory=lambda: ["*"])
    allowed_roles: list[str] = field(default_factory=lambda: ["*"])
    allow_role_ext_key_usage: bool = False
    default_directory_policy: str = "sign-verbatim"
    dns_resolver: str = ""
    eab_policy: str = "not-required"
    max_ttl: int = DEFAULT_MAX_TTL
    # where the validator connects and which addresses it may reach
    challenge_http_port: int = 80
    challenge_tls_port: int = 443
    challenge_permitted_ip_ranges: list[str] = field(default_factory=list)
    challenge_excluded_ip_ranges: list[str] = field(default_factory=list)

    @classmethod
    def from_json(cls, raw: dict[str, Any] | None) -> AcmeConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in (raw or {}).items() if k in known})

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


async def load_config(storage: Storage) -> AcmeConfig:
    return AcmeConfig.from_json(await get_json(storage, CONFIG_KEY))


async def save_config(storage: Storage, config: AcmeConfig) -> None:
    await put_json(storage, CONFIG_KEY, config.to_json())


# -- accounts ---------------------------------------------------------------------------------


@dataclass
class Account:
    id: str
    directory: str  # the directory prefix inside the mount, e.g. "acme/" or "roles/web/acme/"
    jwk: dict[str, Any]
    thumbprint: str
    status: str = "valid"  # valid | deactivated | revoked
    contact: list[str] = field(default_factory=list)
    tos_agreed: bool = False
    created_time: float = field(default_factory=time.time)
    revoked_time: float = 0.0
    eab: dict[str, Any] | None = None  # {"key_id", "directory", "created_time"} when bound

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Account:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in known})


async def load_account(storage: Storage, kid: str) -> Account | None:
    if not _safe_id(kid):
        return None
    raw = await get_json(storage, ACCOUNTS + kid)
    return None if raw is None else Account.from_json(raw)


async def save_account(storage: Storage, account: Account) -> None:
    await put_json(storage, ACCOUNTS + account.id, asdict(account))


def thumbprint_index(directory_prefix: str, thumbprint: str) -> str:
    """Where the account owning a key is found: accounts are per directory, so is the index."""
    scope = hashlib.sha256(directory_prefix.encode()).hexdigest()[:16]
    return f"{THUMBPRINTS}{scope}/{thumbprint}"


async def list_accounts(storage: Storage) -> list[str]:
    return sorted(k for k in await storage.list(ACCOUNTS) if not k.endswith("/"))


# -- orders and authorizations ----------------------------------------------------------------


@dataclass
class Challenge:
    type: str
    token: str
    status: str = "pending"  # pending | processing | valid | invalid
    validated: float = 0.0
    started: float = 0.0
    error: dict[str, Any] | None = None


@dataclass
class Authorization:
    id: str
    account_id: str
    identifier: dict[str, str]
    wildcard: bool
    expires: float
    status: str = "pending"  # pending | valid | invalid | deactivated | expired | revoked
    challenges: list[Challenge] = field(default_factory=list)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Authorization:
        challenges = [Challenge(**c) for c in raw.get("challenges", [])]
        known = {f.name for f in fields(cls)} - {"challenges"}
        return cls(**{k: v for k, v in raw.items() if k in known}, challenges=challenges)

    def effective_status(self, now: float) -> str:
        """The status a client sees now (expiry and abandoned validations applied)."""
        if self.status == "pending":
            if now > self.expires:
                return "expired"
            for ch in self.challenges:
                if ch.status == "processing" and now - ch.started > VALIDATION_DEADLINE:
                    return "invalid"
        return self.status


@dataclass
class Order:
    id: str
    account_id: str
    directory: str
    identifiers: list[dict[str, str]]
    authorization_ids: list[str]
    expires: float
    status: str = "pending"  # pending | ready | processing | valid | invalid
    created_time: float = field(default_factory=time.time)
    cert_serial: str = ""
    cert_expiry: float = 0.0
    certificate_chain: str = ""  # leaf then issuer chain, PEM
    error: dict[str, Any] | None = None

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Order:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in known})


def _safe_id(value: str) -> bool:
    return bool(value) and len(value) <= 64 and all(c.isalnum() or c in "-_" for c in value)


async def load_order(storage: Storage, kid: str, order_id: str) -> Order | None:
    if not (_safe_id(kid) and _safe_id(order_id)):
        return None
    raw = await get_json(storage, f"{ORDERS}{kid}/{order_id}")
    return None if raw is None else Order.from_json(raw)


async def save_order(storage: Storage, order: Order) -> None:
    await put_json(storage, f"{ORDERS}{order.account_id}/{order.id}", asdict(order))


async def list_orders(storage: Storage, kid: str) -> list[str]:
    if not _safe_id(kid):
        return []
    return sorted(await storage.list(f"{ORDERS}{kid}/"))


async def load_authz(storage: Storage, kid: str, authz_id: str) -> Authorization | None:
    if not (_safe_id(kid) and _safe_id(authz_id)):
        return None
    raw = await get_json(storage, f"{AUTHZ}{kid}/{authz_id}")
    return None if raw is None else Authorization.from_json(raw)


async def save_authz(storage: Storage, authz: Authorization) -> None:
    await put_json(storage, f"{AUTHZ}{authz.account_id}/{authz.id}", asdict(authz))


async def list_authz(storage: Storage, kid: str) -> list[str]:
    if not _safe_id(kid):
        return []
    return sorted(await storage.list(f"{AUTHZ}{kid}/"))


# -- external account binding -----------------------------------------------------------------


@dataclass
class EabKey:
    id: str
    key: str  # base64url HMAC key
    directory: str
    created_on: float = field(default_factory=time.time)
    key_type: str = "hs"

    def view(self) -> dict[str, Any]:
        """What the operator listing shows (never the key itself)."""
        return {
            "key_type": self.key_type,
            "acme_directory": self.directory,
            "created_on": rfc3339(self.created_on),
        }


async def load_eab(storage: Storage, key_id: str) -> EabKey | None:
    if not _safe_id(key_id):
        return None
    raw = await get_json(storage, EAB + key_id)
    return None if raw is None else EabKey(**raw)


async def save_eab(storage: Storage, key: EabKey) -> None:
    await put_json(storage, EAB + key.id, asdict(key))


async def list_eab(storage: Storage) -> list[str]:
    return sorted(await storage.list(EAB))
