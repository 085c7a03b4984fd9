"""The pki engine: a FrameworkBackend assembled from the ``paths_*`` modules.

Each module exposes ``paths(backend) -> list[Path]``; a module that does not
exist yet is skipped, so issuers/fetch/urls (P1), roles/issue (P2) and
revoke/tidy (P3) plug in independently. Routing takes the first matching path.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
from typing import TYPE_CHECKING

from strongroom.engines.pki.keypool import RsaKeyPool
from strongroom.engines.pki.store import IssuerCache, register_cache
from strongroom.framework import FrameworkBackend, Path
from strongroom.logical.backend import BackendConfig

if TYPE_CHECKING:
    from strongroom.core.core import Core

log = logging.getLogger("strongroom.engines.pki")

PATH_MODULES = (
    "strongroom.engines.pki.paths_issuers",
    "strongroom.engines.pki.paths_fetch",
    "strongroom.engines.pki.paths_urls",
    "strongroom.engines.pki.paths_roles",
    "strongroom.engines.pki.paths_issue",
    "strongroom.engines.pki.paths_revoke",
    "strongroom.engines.pki.paths_tidy",
    "strongroom.engines.pki.acme.paths_acme",
)


def _import_optional(name: str) -> object | None:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as err:
        if err.name == name:
            log.debug("pki path module %s not present", name)
            return None
        raise


class PkiBackend(FrameworkBackend):
    """Vault-compatible PKI secrets engine."""

    backend_type = "pki"
    help_text = "The PKI backend dynamically generates X509 server and client certificates."

    def __init__(self, config: BackendConfig, core: Core | None = None) -> None:
        self.core = core
        self.issuer_cache = IssuerCache()
        self.issuers_lock = asyncio.Lock()  # serialises issuer/key changes in this process
        self.rsa_pool = RsaKeyPool()  # leaf keys for issue/ with RSA, generated ahead of demand
        super().__init__(config)
        register_cache(config.storage, self.issuer_cache)

    def build_paths(self) -> list[Path]:
        paths: list[Path] = []
        for name in PATH_MODULES:
            module = _import_optional(name)
            if module is not None:
                paths.extend(module.paths(self))  # type: ignore[attr-defined]
        return paths

    async def initialize(self) -> None:
        revocation = _import_optional("strongroom.engines.pki.revocation")
        if revocation is not None and hasattr(revocation, "start_background"):
            await revocation.start_background(self)

    async def cleanup(self) -> None:
        await self.rsa_pool.close()
        for task in list(self.__dict__.get("_acme_tasks", ())):  # ACME validations in flight
            task.cancel()
        revocation = _import_optional("strongroom.engines.pki.revocation")
        if revocation is not None and hasattr(revocation, "stop_background"):
            await revocation.stop_background(self)

    def invalidate_issuers(self) -> None:
        """Forget cached signing material (called after this process changes issuers)."""
        self.issuer_cache.invalidate()


async def factory(config: BackendConfig, core: Core | None = None) -> PkiBackend:
    return PkiBackend(config, core)
