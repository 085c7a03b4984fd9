"""The kv engine: version 1 or 2, chosen by the mount's ``options.version``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from strongroom.engines.kv.v1 import KVv1Backend
from strongroom.engines.kv.v2 import KVv2Backend
from strongroom.framework import FrameworkBackend
from strongroom.logical.backend import BackendConfig

if TYPE_CHECKING:
    from strongroom.core.core import Core


async def factory(config: BackendConfig, core: Core | None = None) -> FrameworkBackend:
    options = config.config.get("options") or {}
    if str(options.get("version", "1")) == "2":
        return KVv2Backend(config)
    return KVv1Backend(config)
