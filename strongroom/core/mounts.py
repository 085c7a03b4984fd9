"""Mount entries and the two mount tables (secrets engines and auth methods).

A mount is a path prefix served by one backend instance with its own storage
view (``logical/<uuid>/`` or ``auth/<uuid>/``). Tables persist through the
barrier at ``core/mounts`` and ``core/auth``.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

from strongroom.logical.storage import Storage, get_json, put_json

MOUNTS_KEY = "core/mounts"
AUTH_KEY = "core/auth"

# types that always exist and cannot be disabled, moved or mounted twice
SINGLETON_TYPES = frozenset({"system", "cubbyhole", "identity", "token"})


def new_accessor(mount_type: str, table: str) -> str:
    kind = mount_type.replace("-", "_")
    prefix = f"auth_{kind}" if table == "auth" else kind
    return f"{prefix}_{secrets.token_hex(4)}"


@dataclass
class MountConfig:
    default_lease_ttl: int = 0
    max_lease_ttl: int = 0
    force_no_cache: bool = False
    audit_non_hmac_request_keys: list[str] = field(default_factory=list)
    audit_non_hmac_response_keys: list[str] = field(default_factory=list)
    listing_visibility: str = ""
    passthrough_request_headers: list[str] = field(default_factory=list)
    allowed_response_headers: list[str] = field(default_factory=list)
    token_type: str = ""
    user_lockout_config: dict[str, Any] = field(default_factory=dict)
    plugin_version: str = ""


@dataclass
class MountEntry:
    path: str  # with trailing slash, e.g. "secret/"
    type: str
    table: str = "mounts"  # or "auth"
    description: str = ""
    uuid: str = field(default_factory=lambda: str(uuid.uuid4()))
    accessor: str = ""
    config: MountConfig = field(default_factory=MountConfig)
    options: dict[str, str] | None = None
    local: bool = False
    seal_wrap: bool = False
    external_entropy_access: bool = False
    plugin_version: str = ""
    running_plugin_version: str = ""

    def __post_init__(self) -> None:
        if not self.accessor:
            self.accessor = new_accessor(self.type, self.table)

    @property
    def storage_prefix(self) -> str:
        if self.type == "system":
            return "sys/"
        if self.type == "token":
            return "sys/token/"
        if self.table == "auth":
            return f"auth/{self.uuid}/"
        return f"logical/{self.uuid}/"

    @property
    def route_path(self) -> str:
        """The path prefix requests use: ``auth/<p>`` for auth mounts."""
        return "auth/" + self.path if self.table == "auth" else self.path

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> MountEntry:
        raw = dict(raw)
        config = MountConfig(**raw.pop("config", {}))
        return cls(config=config, **raw)

    def api_view(self) -> dict[str, Any]:
        """The entry as ``sys/mounts`` and ``sys/auth`` show it."""
        config: dict[str, Any] = {
            "default_lease_ttl": self.config.default_lease_ttl,
            "max_lease_ttl": self.config.max_lease_ttl,
            "force_no_cache": self.config.force_no_cache,
        }
        for name in (
            "audit_non_hmac_request_keys",
            "audit_non_hmac_response_keys",
            "passthrough_request_headers",
            "allowed_response_headers",
        ):
            value = getattr(self.config, name)
            if value:
                config[name] = value
        if self.config.listing_visibility:
            config["listing_visibility"] = self.config.listing_visibility
        if self.table == "auth" and self.type == "token":
            config["token_type"] = self.config.token_type or "default-service"
        elif self.config.token_type:
            config["token_type"] = self.config.token_type
        if self.config.user_lockout_config:
            config["user_lockout_config"] = self.config.user_lockout_config
        return {
            "type": self.type,
            "description": self.description,
            "accessor": self.accessor,
            "uuid": self.uuid,
            "config": config,
            "options": self.options,
            "local": self.local,
            "seal_wrap": self.seal_wrap,
            "external_entropy_access": self.external_entropy_access,
            "plugin_version": self.plugin_version,
            "running_plugin_version": self.running_plugin_version or ("v1.16.3+builtin.vault"),
            "running_sha256": "",
            "deprecation_status": "supported",
        }


class MountTable:
    """An ordered set of mounts, persisted as one barrier entry."""

    def __init__(self, key: str, entries: list[MountEntry] | None = None) -> None:
        self.key = key
        self.entries: dict[str, MountEntry] = {e.path: e for e in entries or []}

    @classmethod
    async def load(cls, storage: Storage, key: str) -> MountTable | None:
        raw = await get_json(storage, key)
        if raw is None:
            return None
        return cls(key, [MountEntry.from_json(e) for e in raw["entries"]])

    async def save(self, storage: Storage) -> None:
        await put_json(storage, self.key, {"entries": [e.to_json() for e in self.entries.values()]})

    def find_by_accessor(self, accessor: str) -> MountEntry | None:
        for entry in self.entries.values():
            if entry.accessor == accessor:
                return entry
        return None
