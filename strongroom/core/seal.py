"""The Shamir seal: key shares → unseal key → root key → barrier keyring.

``core/seal-config`` (plaintext: type, shares, threshold) and
``core/root-key`` (the root key encrypted with the unseal key) live in
physical storage outside the barrier, since they are needed to open it. With
one share the unseal key is the share itself, as in Vault.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import secrets
from dataclasses import dataclass, field
from typing import Any

from strongroom.core import shamir
from strongroom.core.barrier import BarrierError, decrypt_with, encrypt_with
from strongroom.logical.errors import UserError
from strongroom.logical.storage import Storage

SEAL_CONFIG_KEY = "core/seal-config"
ROOT_KEY_KEY = "core/root-key"
KEY_BYTES = 32


@dataclass
class SealConfig:
    type: str = "shamir"
    secret_shares: int = 1
    secret_threshold: int = 1

    def to_json(self) -> bytes:
        return json.dumps(self.__dict__).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> SealConfig:
        data = json.loads(raw)
        return cls(
            type=data.get("type", "shamir"),
            secret_shares=int(data["secret_shares"]),
            secret_threshold=int(data["secret_threshold"]),
        )


def validate_shares(shares: int, threshold: int) -> None:
    if shares < 1:
        raise UserError("invalid seal configuration: number of shares must be at least one")
    if threshold < 1:
        raise UserError("invalid seal configuration: threshold must be at least one")
    if shares > 1 and threshold < 2:
        raise UserError("invalid seal configuration: threshold must be greater than one for multiple shares")
    if shares > 255:
        raise UserError("invalid seal configuration: shares must be less than 256")
    if threshold > shares:
        raise UserError("invalid seal configuration: threshold cannot be larger than shares")


def split_key(key: bytes, shares: int, threshold: int) -> list[bytes]:
    if shares == 1:
        return [key]
    return shamir.split(key, shares, threshold)


def combine_keys(parts: list[bytes], config: SealConfig) -> bytes:
    if config.secret_threshold == 1:
        return parts[0]
    try:
        return shamir.combine(parts)
    except ValueError:
        raise UserError("failed to compute the unseal key from the shares provided") from None


def decode_key_share(text: str) -> bytes:
    """Shares arrive as hex or base64; Vault accepts either."""
    text = text.strip()
    if not text:
        raise UserError("'key' must be specified in request body as JSON, or 'reset' set to true")
    try:
        return bytes.fromhex(text)
    except ValueError:
        pass
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise UserError("'key' must be a valid hex or base64 string") from None


@dataclass
class ShareCollector:
    """Progress of a quorum of shares (unseal, generate-root, rekey), kept in memory only."""

    nonce: str = ""
    parts: list[bytes] = field(default_factory=list)

    def reset(self) -> None:
        for i in range(len(self.parts)):
            self.parts[i] = b""
        self.parts = []

    def add(self, part: bytes) -> None:
        for existing in self.parts:
            if len(existing) == len(part) and hmac.compare_digest(existing, part):
                raise UserError("given key has already been provided during this generation operation")
        self.parts.append(part)

    @property
    def progress(self) -> int:
        return len(self.parts)


class ShamirSeal:
    def __init__(self, physical: Storage) -> None:
        self.physical = physical
        self.config: SealConfig | None = None

    async def load_config(self) -> SealConfig | None:
        raw = await self.physical.get(SEAL_CONFIG_KEY)
        self.config = None if raw is None else SealConfig.from_json(raw)
        return self.config

    async def initialize(self, shares: int, threshold: int) -> tuple[list[bytes], bytes]:
        """Create a new unseal key and root key; return (shares, root key)."""
        validate_shares(shares, threshold)
        unseal_key = secrets.token_bytes(KEY_BYTES)
        root_key = secrets.token_bytes(KEY_BYTES)
        config = SealConfig("shamir", shares, threshold)
        await self.store_root_key(unseal_key, root_key)
        await self.physical.put(SEAL_CONFIG_KEY, config.to_json())
        self.config = config
        return split_key(unseal_key, shares, threshold), root_key

    async def store_root_key(self, unseal_key: bytes, root_key: bytes) -> None:
        await self.physical.put(ROOT_KEY_KEY, encrypt_with(unseal_key, ROOT_KEY_KEY.encode(), root_key))

    async def root_key_from(self, unseal_key: bytes) -> bytes:
        """Decrypt the root key; a wrong unseal key is a user error, not a crash."""
        blob = await self.physical.get(ROOT_KEY_KEY)
        if blob is None:
            raise UserError("server is not initialized")
        try:
            return decrypt_with(unseal_key, ROOT_KEY_KEY.encode(), blob)
        except BarrierError:
            raise UserError("failed to unseal: the unseal key does not decrypt the root key") from None

    async def set_config(self, config: SealConfig) -> None:
        await self.physical.put(SEAL_CONFIG_KEY, config.to_json())
        self.config = config

    def status_fields(self) -> dict[str, Any]:
        config = self.config
        return {
            "type": "shamir",
            "t": config.secret_threshold if config else 0,
            "n": config.secret_shares if config else 0,
        }
