"""The ``approle`` auth method (see :mod:`strongroom.auth.approle.backend`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from strongroom.auth.approle.backend import AppRoleBackend
from strongroom.logical.backend import BackendConfig

if TYPE_CHECKING:
    from strongroom.core.core import Core

__all__ = ["AppRoleBackend", "factory"]


async def factory(config: BackendConfig, core: Core) -> AppRoleBackend:
    """Build one approle mount; core calls ``initialize`` next."""
    return AppRoleBackend(config, core)
