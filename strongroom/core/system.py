"""The ``sys/`` backend: one FrameworkBackend assembled from resource modules.

Each ``system_*`` module declares its paths as data (``paths(core) -> list[Path]``);
this class only concatenates them, so the router, ACL, help and OpenAPI treat
``sys/`` like any engine.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from strongroom.framework.backend import FrameworkBackend
from strongroom.framework.path import Path
from strongroom.logical.backend import BackendConfig

if TYPE_CHECKING:
    from strongroom.core.core import Core

PathSource = Callable[["Core"], list[Path]]

# Modules register their path builders here at import time (see strongroom.core.assemble).
SYSTEM_PATH_SOURCES: list[PathSource] = []


class SystemBackend(FrameworkBackend):
    backend_type = "system"

    def __init__(self, config: BackendConfig, core: Core, sources: list[PathSource] | None = None) -> None:
        self.core = core
        self._sources = list(SYSTEM_PATH_SOURCES if sources is None else sources)
        super().__init__(config)

    def build_paths(self) -> list[Path]:
        paths: list[Path] = []
        for source in self._sources:
            paths.extend(source(self.core))
        return paths
