"""KV v2's pure pieces: metadata records, version bookkeeping, merge patch, subkeys.

Nothing here touches storage, so the rules (max_versions pruning,
delete_version_after, check-and-set) are testable as plain functions.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from strongroom.logical.errors import UserError

DEFAULT_MAX_VERSIONS = 10


def now_rfc3339(ts: float | None = None) -> str:
    ts = time.time() if ts is None else ts
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_rfc3339(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()


@dataclass
class VersionMeta:
    created_time: str
    deletion_time: str = ""
    destroyed: bool = False

    def deleted(self, now: float | None = None) -> bool:
        if not self.deletion_time:
            return False
        return parse_rfc3339(self.deletion_time) <= (time.time() if now is None else now)


@dataclass
class KeyMetadata:
    created_time: str
    updated_time: str
    current_version: int = 0
    oldest_version: int = 0
    max_versions: int = 0
    cas_required: bool = False
    delete_version_after: int = 0
    custom_metadata: dict[str, str] | None = None
    versions: dict[str, VersionMeta] = field(default_factory=dict)

    @classmethod
    def new(cls) -> KeyMetadata:
        ts = now_rfc3339()
        return cls(created_time=ts, updated_time=ts)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> KeyMetadata:
        raw = dict(raw)
        versions = {k: VersionMeta(**v) for k, v in raw.pop("versions", {}).items()}
        return cls(versions=versions, **raw)

    def version_view(self, version: int) -> dict[str, Any]:
        meta = self.versions.get(str(version))
        if meta is None:
            return {}
        return {
            "created_time": meta.created_time,
            "custom_metadata": self.custom_metadata,
            "deletion_time": meta.deletion_time,
            "destroyed": meta.destroyed,
            "version": version,
        }

    def api_view(self, delete_after_text: str) -> dict[str, Any]:
        return {
            "cas_required": self.cas_required,
            "created_time": self.created_time,
            "current_version": self.current_version,
            "custom_metadata": self.custom_metadata,
            "delete_version_after": delete_after_text,
            "max_versions": self.max_versions,
            "oldest_version": self.oldest_version,
            "updated_time": self.updated_time,
            "versions": {k: asdict(v) for k, v in sorted(self.versions.items(), key=lambda kv: int(kv[0]))},
        }


def check_cas(meta: KeyMetadata | None, cas: int | None, cas_required: bool) -> None:
    if cas is None:
        if cas_required:
            raise UserError("check-and-set parameter required for this call")
        return
    current = meta.current_version if meta is not None else 0
    if cas != current:
        raise UserError("check-and-set parameter did not match the current version")


def add_version(meta: KeyMetadata, delete_after: int, max_versions: int) -> tuple[int, list[int]]:
    """Record a new version; return it and the versions pruned by max_versions."""
    now = time.time()
    ts = now_rfc3339(now)
    version = meta.current_version + 1
    deletion = now_rfc3339(now + delete_after) if delete_after > 0 else ""
    meta.versions[str(version)] = VersionMeta(created_time=ts, deletion_time=deletion)
    meta.current_version = version
    meta.updated_time = ts
    if meta.oldest_version == 0:
        meta.oldest_version = 1
    return version, prune(meta, max_versions)


def prune(meta: KeyMetadata, max_versions: int) -> list[int]:
    limit = max_versions or DEFAULT_MAX_VERSIONS
    numbers = sorted(int(v) for v in meta.versions)
    pruned: list[int] = []
    while len(numbers) > limit:
        oldest = numbers.pop(0)
        del meta.versions[str(oldest)]
        pruned.append(oldest)
    if numbers:
        meta.oldest_version = numbers[0]
    return pruned


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396 JSON merge patch."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def subkeys(data: Any, depth: int, level: int = 1) -> Any:
    """The structure of ``data`` with every leaf replaced by None (``depth`` 0 = unlimited)."""
    if not isinstance(data, dict):
        return None
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict) and (depth == 0 or level < depth):
            out[key] = subkeys(value, depth, level + 1)
        else:
            out[key] = None
    return out
