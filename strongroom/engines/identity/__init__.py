"""The identity secrets engine: entities, aliases, groups, lookups and identity tokens."""

from strongroom.engines.identity.backend import IdentityBackend, factory
from strongroom.engines.identity.service import IdentityService

__all__ = ["IdentityBackend", "IdentityService", "factory"]
