"""The error tree every layer raises; the HTTP layer turns each into Vault's error body.

    StrongroomError (500)            an error with no more specific meaning
    ├── UserError (400)              bad input; also failed logins, CAS mismatch, ...
    ├── PermissionDenied (403)       ACL denied the request
    │   └── InvalidToken (403)       token missing, expired, revoked or malformed
    ├── NotFound (404)               a missing entry: ``{"errors": []}``
    ├── UnsupportedPath (404)        no path matched / no mount
    ├── UnsupportedOperation (405)   the path exists but not with this operation
    ├── PayloadTooLarge (413)
    ├── UnsupportedMediaType (415)
    ├── NotInitialized (501)
    ├── Sealed (503)
    └── CodedError (any)             an explicit status code

Messages never carry secret values: raise with a description of what was
wrong, not of what was sent.
"""

from __future__ import annotations

from typing import Any


class StrongroomError(Exception):
    """Base error; ``status`` is the HTTP status, ``errors`` the list of messages."""

    status: int = 500

    def __init__(self, *errors: str, data: Any = None) -> None:
        super().__init__(*errors)
        self.errors: list[str] = list(errors)
        self.data = data

    def __str__(self) -> str:
        return "; ".join(self.errors) if self.errors else self.__class__.__name__


class UserError(StrongroomError):
    status = 400


class PermissionDenied(StrongroomError):
    status = 403

    def __init__(self, *errors: str, data: Any = None) -> None:
        super().__init__(*(errors or ("permission denied",)), data=data)


class InvalidToken(PermissionDenied):
    """Vault answers an unknown token with a two-item multierror."""

    def __init__(self, *errors: str, data: Any = None) -> None:
        super().__init__(*(errors or ("permission denied", "invalid token")), data=data)


class NotFound(StrongroomError):
    status = 404


class UnsupportedPath(StrongroomError):
    status = 404

    def __init__(self, *errors: str, data: Any = None) -> None:
        super().__init__(*(errors or ("unsupported path",)), data=data)


class UnsupportedOperation(StrongroomError):
    status = 405

    def __init__(self, *errors: str, data: Any = None) -> None:
        super().__init__(*(errors or ("unsupported operation",)), data=data)


class PayloadTooLarge(StrongroomError):
    status = 413


class UnsupportedMediaType(StrongroomError):
    status = 415


class NotInitialized(StrongroomError):
    status = 501

    def __init__(self, *errors: str, data: Any = None) -> None:
        super().__init__(*(errors or ("Vault is not initialized",)), data=data)


class Sealed(StrongroomError):
    status = 503

    def __init__(self, *errors: str, data: Any = None) -> None:
        super().__init__(*(errors or ("Vault is sealed",)), data=data)


class CodedError(StrongroomError):
    def __init__(self, status: int, *errors: str, data: Any = None) -> None:
        super().__init__(*errors, data=data)
        self.status = status


def multierror(errors: list[str]) -> str:
    """Format messages the way go-multierror does; clients match on this text."""
    noun = "error" if len(errors) == 1 else "errors"
    lines = "".join(f"\t* {e}\n" for e in errors)
    return f"{len(errors)} {noun} occurred:\n{lines}\n"
