"""Wire a Core with its built-in backends and collaborators.

The one place that knows every engine and auth method type; core itself only
sees factories.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

from strongroom.core.core import Core
from strongroom.core.system import SystemBackend
from strongroom.logical.backend import Backend, BackendConfig
from strongroom.logical.storage import Storage

log = logging.getLogger("strongroom.core")

# (module, attribute) of optional collaborators; a missing module is skipped so
# the core keeps working while a piece is under construction.
_SYSTEM_PATH_MODULES = (
    "strongroom.core.system_mounts",
    "strongroom.core.system_policies",
    "strongroom.core.system_keys",
    "strongroom.core.system_leases",
    "strongroom.core.system_wrapping",
    "strongroom.core.system_internal",
    "strongroom.core.system_locked_users",
    "strongroom.core.system_audit",
)
_SECRET_ENGINES = {
    "kv": "strongroom.engines.kv.backend",
    "pki": "strongroom.engines.pki.backend",
    "cubbyhole": "strongroom.engines.cubbyhole",
    "identity": "strongroom.engines.identity",
}
_AUTH_METHODS = {
    "token": "strongroom.core.token_backend",
    "approle": "strongroom.auth.approle",
    "github": "strongroom.auth.github",
    "userpass": "strongroom.auth.userpass",
    "ldap": "strongroom.auth.ldap",
    "cert": "strongroom.auth.cert",
    "kubernetes": "strongroom.auth.kubernetes",
    "jwt": "strongroom.auth.jwt",
    "oidc": "strongroom.auth.jwt",
}


def _optional(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as err:
        if err.name and module.startswith(err.name):
            log.debug("optional module %s not available", module)
            return None
        raise


def build_core(physical: Storage, **options: Any) -> Core:
    core = Core(physical, **options)
    sources = []
    for name in _SYSTEM_PATH_MODULES:
        module = _optional(name)
        if module is not None:
            sources.append(module.paths)

    async def system_factory(config: BackendConfig) -> Backend:
        return SystemBackend(config, core, sources)

    core.factories["system"] = system_factory
    for table, registry in ((core.factories, _SECRET_ENGINES), (core.auth_factories, _AUTH_METHODS)):
        for kind, name in registry.items():
            module = _optional(name)
            factory = getattr(module, "factory", None) if module is not None else None
            if factory is None:
                if module is not None:
                    log.warning("%s has no factory; mount type %r is unavailable", name, kind)
                continue
            table[kind] = _bind(factory, core)

    seal_module = _optional("strongroom.core.system_seal")
    if seal_module is not None:
        core.seal_backend = seal_module.SealBackend(BackendConfig(storage=physical), core)
    expiration = _optional("strongroom.core.expiration")
    if expiration is not None:
        core.expiration = expiration.ExpirationManager(core)
    wrapping = _optional("strongroom.core.wrapping")
    if wrapping is not None:
        core.wrapping = wrapping.Wrapper(core)
    audit = _optional("strongroom.core.audit")
    if audit is not None:
        core.audit = audit.AuditBroker(core)
    return core


def _bind(factory: Any, core: Core) -> Any:
    """Engine factories take (config, core); core's table wants (config)."""

    async def make(config: BackendConfig) -> Backend:
        backend: Backend = await factory(config, core)
        return backend

    return make
