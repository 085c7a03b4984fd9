"""The identity/ mount: every path of the identity store, and core's handle on it.

There is exactly one identity mount (core creates it at every unseal, and it cannot be
disabled or moved), so its factory is also where ``core.identity`` gets wired: the
:class:`~strongroom.engines.identity.service.IdentityService` core asks for a token's
entity policies and template context on each request, and for entities at login.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from strongroom.engines.identity import oidc, paths_alias, paths_entity, paths_group, paths_lookup
from strongroom.engines.identity.service import IdentityService
from strongroom.framework import FrameworkBackend, Path
from strongroom.logical.backend import BackendConfig

if TYPE_CHECKING:
    from strongroom.core.core import Core


class IdentityBackend(FrameworkBackend):
    backend_type = "identity"
    help_text = "The identity store: entities, their aliases on auth mounts, groups, and identity tokens."

    def __init__(self, config: BackendConfig, core: Core | None = None) -> None:
        self.core = core
        self.service = IdentityService(config.storage, core)
        super().__init__(config)

    def build_paths(self) -> list[Path]:
        return [
            *paths_entity.paths(self),
            *paths_alias.paths(self),
            *paths_group.paths(self),
            *paths_lookup.paths(self),
            *oidc.paths(self),
        ]


async def factory(config: BackendConfig, core: Core) -> IdentityBackend:
    backend = IdentityBackend(config, core)
    core.identity = backend.service
    return backend
