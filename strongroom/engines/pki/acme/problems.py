"""ACME problem documents (RFC 8555 §6.7, RFC 7807).

Every failure inside the ACME protocol is raised as :class:`AcmeProblem` and
rendered by the path layer as ``application/problem+json`` with a fresh nonce.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

NAMESPACE = "urn:ietf:params:acme:error:"

# the status each ACME error type is sent with unless the raiser says otherwise
DEFAULT_STATUS: dict[str, int] = {
    "accountDoesNotExist": 400,
    "alreadyRevoked": 400,
    "badCSR": 400,
    "badNonce": 400,
    "badPublicKey": 400,
    "badRevocationReason": 400,
    "badSignatureAlgorithm": 400,
    "caa": 403,
    "compound": 403,
    "connection": 400,
    "dns": 400,
    "externalAccountRequired": 400,
    "incorrectResponse": 403,
    "invalidContact": 400,
    "malformed": 400,
    "orderNotReady": 403,
    "rateLimited": 429,
    "rejectedIdentifier": 400,
    "serverInternal": 500,
    "tls": 400,
    "unauthorized": 403,
    "unsupportedContact": 400,
    "unsupportedIdentifier": 400,
    "userActionRequired": 403,
}


@dataclass
class AcmeProblem(Exception):
    """An ACME error: ``kind`` is the short type name, e.g. ``"badNonce"``."""

    kind: str
    detail: str
    status: int = 0
    identifier: dict[str, str] | None = None
    subproblems: list[AcmeProblem] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. {"algorithms": [...]}

    def __post_init__(self) -> None:
        if self.kind not in DEFAULT_STATUS:
            raise ValueError(f"unknown ACME error type {self.kind!r}")
        if not self.status:
            self.status = DEFAULT_STATUS[self.kind]
        super().__init__(self.detail)

    def __str__(self) -> str:
        return f"{self.kind}: {self.detail}"

    def document(self) -> dict[str, Any]:
        """The JSON problem document (also used inside challenge and authz objects)."""
        out: dict[str, Any] = {"type": NAMESPACE + self.kind, "detail": self.detail, "status": self.status}
        if self.identifier is not None:
            out["identifier"] = dict(self.identifier)
        if self.subproblems:
            out["subproblems"] = [p.document() for p in self.subproblems]
        out.update(self.extra)
        return out
