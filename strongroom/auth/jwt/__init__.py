"""The jwt and oidc auth methods (one backend, as in Vault): see ``backend.py``."""

from strongroom.auth.jwt.backend import JWTBackend, factory
from strongroom.auth.jwt.keys import Fetcher

__all__ = ["Fetcher", "JWTBackend", "factory"]
