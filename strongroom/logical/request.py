"""Logical requests and responses: what core hands an engine and gets back.

Engines never see HTTP. A :class:`Request` carries the operation, the path
relative to the mount, the decoded data and a storage view scoped to the
mount; a :class:`Response` carries data, warnings and, optionally, a secret
to lease or an auth block from which core mints a token.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from strongroom.logical.storage import Storage


class Operation(StrEnum):
    READ = "read"
    CREATE = "create"
    UPDATE = "update"
    PATCH = "patch"
    DELETE = "delete"
    LIST = "list"
    HELP = "help"
    RENEW = "renew"
    REVOKE = "revoke"
    ROLLBACK = "rollback"


WRITE_OPERATIONS = frozenset({Operation.CREATE, Operation.UPDATE, Operation.PATCH, Operation.DELETE})


@dataclass
class Connection:
    """What is known about the caller's connection."""

    remote_addr: str = ""
    remote_port: int = 0
    tls: bool = False
    client_cert_chain: list[str] = field(default_factory=list)  # PEM, leaf first


@dataclass
class SecretInfo:
    """A leased secret: set by an engine on a response, handed back on renew/revoke."""

    ttl: int = 0
    max_ttl: int = 0
    renewable: bool = True
    internal_data: dict[str, Any] = field(default_factory=dict)
    lease_id: str = ""
    issue_time: float = 0.0
    # False: show ttl as lease_duration without registering a lease (KV v1 does this)
    leased: bool = True


@dataclass
class Auth:
    """An auth block returned by a login (or token creation); core turns it into a token."""

    policies: list[str] = field(default_factory=list)
    token_policies: list[str] = field(default_factory=list)
    identity_policies: list[str] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)
    display_name: str = ""
    ttl: int = 0
    max_ttl: int = 0
    explicit_max_ttl: int = 0
    period: int = 0
    num_uses: int = 0
    renewable: bool = True
    no_default_policy: bool = False
    token_type: str = "service"  # noqa: S105 (a token kind, not a secret)
    entity_id: str = ""
    alias_name: str = ""
    alias_metadata: dict[str, str] = field(default_factory=dict)
    group_alias_names: list[str] = field(default_factory=list)
    bound_cidrs: list[str] = field(default_factory=list)
    internal_data: dict[str, Any] = field(default_factory=dict)
    # filled in by core once the token exists
    client_token: str = ""
    accessor: str = ""
    orphan: bool = True
    lease_duration: int = 0
    mfa_requirement: Any = None


@dataclass
class WrapInfo:
    token: str
    accessor: str
    ttl: int
    creation_time: str
    creation_path: str
    wrapped_accessor: str = ""
    format: str = ""


@dataclass
class RawResponse:
    """A non-JSON body (CRLs, certificates, metrics, ACME), sent as is.

    A header given a list of values is sent once per value (ACME's ``Link``).
    """

    body: bytes
    content_type: str = "application/octet-stream"
    status: int = 200
    headers: dict[str, str | list[str]] = field(default_factory=dict)


@dataclass
class Request:
    operation: Operation
    path: str
    data: dict[str, Any] = field(default_factory=dict)
    storage: Storage | None = None
    # the caller, as the engine may see it
    client_token: str = ""  # the real token for core backends; a per-mount salt for others
    client_token_accessor: str = ""
    display_name: str = ""
    entity_id: str = ""
    policies: list[str] = field(default_factory=list)
    # routing
    mount_point: str = ""
    mount_type: str = ""
    mount_accessor: str = ""
    request_id: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    query: dict[str, Any] = field(default_factory=dict)
    connection: Connection = field(default_factory=Connection)
    wrap_ttl: int = 0
    wrap_format: str = ""
    unauthenticated: bool = False
    # the undecoded body, for endpoints that speak a binary protocol (OCSP)
    raw_body: bytes = b""
    method: str = ""  # the HTTP method as sent (HEAD and GET both read; ACME tells them apart)
    # set for renew / revoke of a lease or of a token's auth
    secret: SecretInfo | None = None
    auth: Auth | None = None
    # core-only context (a TokenEntry for the token store and sys backends)
    token_entry: Any = None
    is_root: bool = False
    is_sudo: bool = False


@dataclass
class Response:
    data: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)
    secret: SecretInfo | None = None
    auth: Auth | None = None
    raw: RawResponse | None = None
    wrap_info: WrapInfo | None = None
    status: int = 0  # 0: let the HTTP layer choose (200 / 204)
    headers: dict[str, str] = field(default_factory=dict)
    copy_data_to_top_level: bool = False
    # an engine may insist on wrapping (e.g. sys/wrapping/wrap)
    wrap_required: bool = False

    def add_warning(self, text: str) -> None:
        self.warnings.append(text)
