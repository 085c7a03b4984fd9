"""The LDAP auth method: a directory username and password in, a token with mapped policies out.

Paths, field names, defaults and error texts follow Vault's ``builtin/credential/ldap`` and
``sdk/helper/ldaputil``: ``config`` (read, write; ``bindpass`` and ``client_tls_key`` are
never shown), ``groups/<name>`` and ``users/<name>`` (LIST ``groups``, ``users``) and the
unauthenticated ``login/<username>``.

A login, as in Vault:

1. connect to the first reachable ``url`` (comma-separated for failover), with StartTLS
   when asked, and bind as ``binddn`` (or anonymously with ``discoverdn``);
2. find the DN to bind as: a search of ``userdn`` with ``userfilter`` (when a bind DN or
   ``discoverdn`` is configured), else ``<username>@<upndomain>``, else
   ``<userattr>=<username>,<userdn>``;
3. bind as that DN with the password: this is the credential check;
4. re-bind as ``binddn`` and search ``groupdn`` with ``groupfilter``; a group's name is
   its ``groupattr`` value (the CN of a DN-valued one);
5. policies = ``token_policies`` + the policies of the locally mapped user and of every
   group (the LDAP ones plus the user's local ``groups``), deduplicated.

What this module adds on top of Vault, and why:

* **Unknown user and wrong password look alike** (CVE-2020-35177, CVE-2023-3462): both
  answer 400 ``ldap operation failed: failed to bind as user``, and an unknown user still
  costs one bind (against a DN no entry has), so the directory's work is the same too.
* **One counter per user, whatever the spelling** (CVE-2025-6004): the lockout key is the
  trimmed, lower-cased name, whatever ``case_sensitive_names`` says, since directories
  match ``uid``/``cn`` case-insensitively and ignore surrounding spaces: ``Alice`` and
  ``alice `` would otherwise each get their own five guesses at the same account. The
  counter is the persisted :class:`~strongroom.auth.common.StoredLoginLockout` (shared by
  every worker), counted before the password is tried.
* **Filter and DN injection**: the username (and the user DN) are escaped for LDAP
  filters (RFC 4515) before they go into ``userfilter``/``groupfilter``, and for DNs
  (RFC 4514) before they go into a bind DN. Only ``{{.Username}}``, ``{{.UserDN}}`` and
  ``{{.UserAttr}}`` are understood in the templates; anything else is refused when the
  config is written rather than at the first login.
* **TLS verifies by default**: certificate and host name are checked unless
  ``insecure_tls``; ``certificate`` is the CA bundle to trust (else the system store).
* ldap3 is blocking; every directory call runs in a worker thread (``asyncio.to_thread``)
  so the event loop keeps serving while a slow directory answers.

Renewal (``RENEW`` on ``login/<username>``, asked by the token store) looks the user up
again, as Vault's ``pathLoginRenew`` does, and refuses (400) when the user is no longer
found or when ``token_policies`` + the mapped policies of the user and of its groups (found
again with ``groupfilter``) differ from the token's (``default`` aside). Unlike Vault, which
keeps the login password in the token's internal data and binds as the user again, the
password is not stored: the lookup binds as ``binddn`` (or anonymously with ``discoverdn``)
and searches, so a changed password or an account the directory would refuse to bind but
still lists is not noticed. Without ``binddn``/``bindpass`` or ``discoverdn`` the derived
DN (``<userattr>=<username>,<userdn>``, or the ``userPrincipalName`` search with
``upndomain``) is looked up over an anonymous bind; a directory refusing anonymous reads
then refuses every renewal (re-login instead). Nothing is written on a refusal.

Not supported: ``use_token_groups`` (Active Directory ``tokenGroups``) is stored and shown
but groups are always found with ``groupfilter``.

The bind password, the login password and the client key are never logged, echoed in
errors, or returned by a read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import secrets
import ssl
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import ldap3
from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from ldap3.core.exceptions import LDAPException
from ldap3.utils.conv import escape_filter_chars
from ldap3.utils.dn import escape_rdn, parse_dn

from strongroom.auth.common import (
    LockoutPolicy,
    StoredLoginLockout,
    TokenParams,
    check_cidrs,
    equivalent_policies,
    mount_lockout_policy,
    parse_policies,
    token_fields,
)
from strongroom.framework import Display, Field, FieldData, FieldType, FrameworkBackend, Path, PathOperation
from strongroom.framework.fields import MISSING
from strongroom.logical.backend import BackendConfig
from strongroom.logical.errors import PermissionDenied, UserError
from strongroom.logical.request import Auth, Operation, Request, Response
from strongroom.logical.storage import get_json, put_json

if TYPE_CHECKING:
    from strongroom.core.core import Core

__all__ = [
    "BIND_FAILED",
    "LdapBackend",
    "LdapConfig",
    "LdapError",
    "factory",
    "lockout_key",
    "render_filter",
]

log = logging.getLogger("strongroom.auth.ldap")

# Vault's errUserBindFailed: the one answer for an unknown user and for a wrong password.
BIND_FAILED = "ldap operation failed: failed to bind as user"
CONNECT_FAILED = "ldap operation failed: failed to connect to LDAP server"
REBIND_FAILED = "ldap operation failed: failed to re-bind with the BindDN user"
RENEW_LOOKUP_FAILED = (
    "ldap operation failed: cannot look the user up without a binddn: the directory refused an anonymous bind"
)
RENEW_USER_GONE = "user no longer exists in the directory, not renewing"
NULL_PASSWORD = "password cannot be of zero length when passwordless binds are being denied"  # noqa: S105

CONFIG_KEY = "config"
GROUP_PREFIX = "group/"
USER_PREFIX = "user/"

DEFAULT_URL = "ldap://127.0.0.1"
DEFAULT_USERFILTER = "({{.UserAttr}}={{.Username}})"
DEFAULT_GROUPFILTER = "(|(memberUid={{.Username}})(member={{.UserDN}})(uniqueMember={{.UserDN}}))"
TLS_VERSIONS = ("tls10", "tls11", "tls12", "tls13")
DEREF = {
    "never": ldap3.DEREF_NEVER,
    "finding": ldap3.DEREF_BASE,
    "searching": ldap3.DEREF_SEARCH,
    "always": ldap3.DEREF_ALWAYS,
}
_TLS_MIN = {
    "tls10": ssl.TLSVersion.TLSv1,
    "tls11": ssl.TLSVersion.TLSv1_1,
    "tls12": ssl.TLSVersion.TLSv1_2,
    "tls13": ssl.TLSVersion.TLSv1_3,
}
_TEMPLATE_ACTION = re.compile(r"\{\{-?\s*\.(\w+)\s*-?\}\}")

S, B, INT, DUR = FieldType.STRING, FieldType.BOOL, FieldType.INT, FieldType.DURATION

_CONFIG_FIELDS: dict[str, Field] = {
    "url": Field(
        S,
        "LDAP URL to connect to (default: ldap://127.0.0.1). Multiple URLs can be specified by "
        "concatenating them with commas; they will be tried in-order.",
        default=DEFAULT_URL,
    ),
    "userdn": Field(S, "LDAP domain to use for users (eg: ou=People,dc=example,dc=org)"),
    "binddn": Field(S, "LDAP DN for searching for the user DN (optional)"),
    "bindpass": Field(S, "LDAP password for searching for the user DN (optional)", sensitive=True),
    "groupdn": Field(
        S, "LDAP search base to use for group membership search (eg: ou=Groups,dc=example,dc=org)"
    ),
    "groupfilter": Field(
        S,
        "Go template for querying group membership of user (optional). The template can access "
        "the following context variables: UserDN, Username",
        default=DEFAULT_GROUPFILTER,
    ),
    "groupattr": Field(
        S,
        "LDAP attribute to follow on objects returned by <groupfilter> in order to enumerate "
        'user group membership. Examples: "cn" or "memberOf", etc. Default: cn',
        default="cn",
    ),
    "userfilter": Field(
        S,
        "Go template for LDAP user search filer (optional). The template can access the "
        "following context variables: UserAttr, Username",
        default=DEFAULT_USERFILTER,
    ),
    "upndomain": Field(S, "Enables userPrincipalDomain login with [username]@UPNDomain (optional)"),
    "userattr": Field(S, "Attribute used for users (default: cn)", default="cn"),
    "certificate": Field(
        S, "CA certificate to use when verifying LDAP server certificate, must be x509 PEM encoded (optional)"
    ),
    "client_tls_cert": Field(S, "Client certificate to provide to the LDAP server, must be x509 PEM encoded"),
    "client_tls_key": Field(
        S, "Client certificate key to provide to the LDAP server, must be x509 PEM encoded", sensitive=True
    ),
    "discoverdn": Field(B, "Use anonymous bind to discover the bind DN of a user (optional)"),
    "insecure_tls": Field(B, "Skip LDAP server SSL Certificate verification - VERY insecure (optional)"),
    "starttls": Field(B, "Issue a StartTLS command after establishing unencrypted connection (optional)"),
    "tls_min_version": Field(
        S,
        "Minimum TLS version to use. Accepted values are 'tls10', 'tls11', 'tls12' or 'tls13'.",
        default="tls12",
    ),
    "tls_max_version": Field(
        S,
        "Maximum TLS version to use. Accepted values are 'tls10', 'tls11', 'tls12' or 'tls13'.",
        default="tls12",
    ),
    "deny_null_bind": Field(
        B,
        "Denies an unauthenticated LDAP bind request if the user's password is empty; defaults to true",
        default=True,
    ),
    "case_sensitive_names": Field(
        B,
        "If true, case sensitivity will be used when comparing usernames and groups for matching policies.",
    ),
    "use_token_groups": Field(
        B,
        "If true, use the Active Directory tokenGroups constructed attribute of the user to find "
        "the group memberships. This will find all security groups including nested ones.",
    ),
    "anonymous_group_search": Field(
        B,
        "Use anonymous binds when performing LDAP group searches (if true the initial credentials will still be used for the initial connection test).",
    ),
    "request_timeout": Field(
        DUR,
        "Timeout, in seconds, for the connection when making requests against the server before returning back an error.",
        default=90,
    ),
    "connection_timeout": Field(
        DUR,
        "Timeout, in seconds, when attempting to connect to the LDAP server before trying the next URL in the configuration.",
        default=30,
    ),
    "dereference_aliases": Field(
        S,
        "When aliases should be dereferenced on search operations. Accepted values are 'never', "
        "'finding', 'searching', 'always'. Defaults to 'never'.",
        default="never",
        allowed=tuple(DEREF),
    ),
    "max_page_size": Field(
        INT,
        "If set to a value greater than 0, the LDAP backend will use the LDAP server's paged search control",
    ),
    "username_as_alias": Field(B, "If true, sets the alias name to the username"),
    **token_fields(),
}

# the names of everything LdapConfig stores besides the token settings
_SETTINGS: tuple[str, ...] = tuple(k for k in _CONFIG_FIELDS if not k.startswith("token_"))


class LdapError(Exception):
    """A directory step failed; the message is what the client may see (no secrets, no DNs)."""


# -- templates and names -------------------------------------------------------------------


def render_filter(template: str, values: dict[str, str]) -> str:
    """Substitute ``{{.Name}}`` actions (Vault's Go templates, reduced to what its docs use).

    ``values`` must already be escaped for an LDAP filter. Raises :class:`ValueError` for an
    action other than the known variables or a stray ``{{``/``}}``.
    """

    def sub(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise ValueError(f"unknown template variable {name!r}")
        return values[name]

    out = _TEMPLATE_ACTION.sub(sub, template)
    leftover = _TEMPLATE_ACTION.sub("", template)
    if "{{" in leftover or "}}" in leftover:
        raise ValueError("only {{.Variable}} actions are supported")
    return out


def check_template(template: str, names: tuple[str, ...]) -> None:
    render_filter(template, dict.fromkeys(names, "x"))


def lockout_key(username: str) -> str:
    """The lockout counter's key: trimmed and lower-cased, whatever ``case_sensitive_names`` says."""
    return username.strip().lower()


def group_cn(value: str) -> str:
    """Vault's ``getCN``: the CN of a DN-valued attribute (``memberOf``), else the value itself."""
    try:
        parts = parse_dn(value, escape=False, strip=True)
    except (LDAPException, ValueError, IndexError, TypeError):
        return value
    for attr, cn, _sep in parts:
        if attr.lower() == "cn":
            return str(cn)
    return value


def _check_certificate(pem: str, what: str) -> None:
    try:
        x509.load_pem_x509_certificate(pem.encode())
    except ValueError:
        raise UserError(f"failed to parse {what}: not a PEM encoded x509 certificate") from None


# -- config ----------------------------------------------------------------------------------


@dataclass
class LdapConfig:
    """The mount's stored ``config`` (the ldaputil ConfigEntry plus the token settings)."""

    settings: dict[str, Any] = field(default_factory=dict)
    token: TokenParams = field(default_factory=TokenParams)

    def __post_init__(self) -> None:
        for name in _SETTINGS:
            if name not in self.settings:
                spec = _CONFIG_FIELDS[name]
                self.settings[name] = spec.type.zero() if spec.default is MISSING else spec.default

    def get(self, name: str) -> Any:
        return self.settings[name]

    @property
    def case_sensitive(self) -> bool:
        return bool(self.settings["case_sensitive_names"])

    def to_json(self) -> dict[str, Any]:
        return {"settings": dict(self.settings), **self.token.to_json()}

    @classmethod
    def from_json(cls, raw: Any) -> LdapConfig:
        if not isinstance(raw, dict):
            return cls()
        settings = {k: v for k, v in dict(raw.get("settings") or {}).items() if k in _SETTINGS}
        return cls(settings=settings, token=TokenParams.from_json(raw))

    def to_api(self) -> dict[str, Any]:
        shown = {k: v for k, v in self.settings.items() if k not in ("bindpass", "client_tls_key")}
        return {**shown, **self.token.to_api()}


def _validated_settings(d: FieldData, current: dict[str, Any]) -> dict[str, Any]:
    """Merge the sent config fields over ``current`` and check them (ldaputil.NewConfigEntry)."""
    out = dict(current)
    for name in _SETTINGS:
        if d.sent(name):
            out[name] = d.get(name)
    out["url"] = str(out["url"]).strip().lower() or DEFAULT_URL
    out["userattr"] = str(out["userattr"]).strip().lower() or "cn"
    out["groupattr"] = str(out["groupattr"]).strip() or "cn"
    if not out["userfilter"]:
        out["userfilter"] = DEFAULT_USERFILTER
    for url in out["url"].split(","):
        parts = urlsplit(url.strip())
        if parts.scheme not in ("ldap", "ldaps") or not parts.hostname:
            raise UserError(f"invalid url: {url.strip()[:200]!r} is not an ldap:// or ldaps:// URL")
        try:
            _ = parts.port
        except ValueError:
            raise UserError(f"invalid url: {url.strip()[:200]!r} has an invalid port") from None
    try:
        check_template(out["groupfilter"], ("Username", "UserDN"))
    except ValueError as exc:
        raise UserError(f"invalid groupfilter: {exc}") from None
    try:
        check_template(out["userfilter"], ("Username", "UserAttr"))
    except ValueError as exc:
        raise UserError(f"invalid userfilter: {exc}") from None
    for name in ("tls_min_version", "tls_max_version"):
        if out[name] not in TLS_VERSIONS:
            raise UserError(f"invalid '{name}'")
    if TLS_VERSIONS.index(out["tls_max_version"]) < TLS_VERSIONS.index(out["tls_min_version"]):
        raise UserError("'tls_max_version' must be greater than or equal to 'tls_min_version'")
    if out["certificate"]:
        _check_certificate(out["certificate"], "certificate")
    if bool(out["client_tls_cert"]) != bool(out["client_tls_key"]):
        raise UserError("both client_tls_cert and client_tls_key must be set")
    if out["client_tls_cert"]:
        _check_certificate(out["client_tls_cert"], "client_tls_cert")
        try:
            load_pem_private_key(out["client_tls_key"].encode(), password=None)
        except (ValueError, TypeError):
            raise UserError("failed to parse client_tls_key: not a PEM encoded private key") from None
    if int(out["request_timeout"]) < 0 or int(out["connection_timeout"]) < 0:
        raise UserError("timeouts cannot be negative")
    if int(out["max_page_size"]) < 0:
        out["max_page_size"] = 0
    return out


# -- the directory client (blocking; runs in worker threads) ----------------------------------


@contextlib.contextmanager
def _client_files(cfg: LdapConfig) -> Iterator[tuple[str | None, str | None]]:
    """ldap3 reads a client certificate and key from files only: a private temp dir, removed after."""
    if not cfg.get("client_tls_cert"):
        yield None, None
        return
    with tempfile.TemporaryDirectory(prefix="strongroom-ldap-") as tmp:
        cert, key = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
        for path, text in ((cert, cfg.get("client_tls_cert")), (key, cfg.get("client_tls_key"))):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(text)
        yield cert, key


def _tls(cfg: LdapConfig, host: str, cert: str | None, key: str | None) -> ldap3.Tls:
    options = 0
    minimum = _TLS_MIN[cfg.get("tls_min_version")]
    for version, flag in (
        (ssl.TLSVersion.TLSv1, ssl.OP_NO_TLSv1),
        (ssl.TLSVersion.TLSv1_1, ssl.OP_NO_TLSv1_1),
        (ssl.TLSVersion.TLSv1_2, ssl.OP_NO_TLSv1_2),
    ):
        if version < minimum:
            options |= flag
    return ldap3.Tls(
        validate=ssl.CERT_NONE if cfg.get("insecure_tls") else ssl.CERT_REQUIRED,
        ca_certs_data=cfg.get("certificate") or None,
        local_certificate_file=cert,
        local_private_key_file=key,
        ssl_options=[options] if options else None,
        valid_names=[host],
    )


class Directory:
    """One login's connection to the directory (ldap3 SYNC strategy; one thread at a time).

    ``connection_factory`` exists for unit tests (ldap3's MOCK_SYNC strategy).
    """

    def __init__(
        self, cfg: LdapConfig, connection_factory: Callable[..., ldap3.Connection] | None = None
    ) -> None:
        self.cfg = cfg
        self._factory = connection_factory
        self.conn: ldap3.Connection | None = None
        self._files = _client_files(cfg)
        self._cert, self._key = self._files.__enter__()

    def close(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(Exception):
                self.conn.unbind()
            self.conn = None
        with contextlib.suppress(Exception):
            self._files.__exit__(None, None, None)

    # -- connecting ------------------------------------------------------------------------------

    def dial(self) -> ldap3.Connection:
        """Connect to the first URL that answers (and completes StartTLS when configured)."""
        failures: list[str] = []
        for url in [u.strip() for u in str(self.cfg.get("url")).split(",") if u.strip()]:
            try:
                return self._dial_one(url)
            except (LDAPException, OSError, ValueError) as exc:
                failures.append(f"{url}: {type(exc).__name__}: {exc}")
        log.warning("ldap: no server reachable: %s", "; ".join(failures))
        raise LdapError(CONNECT_FAILED)

    def _dial_one(self, url: str) -> ldap3.Connection:
        parts = urlsplit(url)
        host = parts.hostname or "127.0.0.1"
        use_ssl = parts.scheme == "ldaps"
        port = parts.port or (636 if use_ssl else 389)
        tls = _tls(self.cfg, host, self._cert, self._key) if use_ssl or self.cfg.get("starttls") else None
        if self._factory is not None:
            return self._factory(host=host, port=port, use_ssl=use_ssl, tls=tls)
        server = ldap3.Server(
            host,
            port=port,
            use_ssl=use_ssl,
            tls=tls,
            get_info=ldap3.NONE,
            connect_timeout=int(self.cfg.get("connection_timeout")) or None,
        )
        conn = ldap3.Connection(
            server,
            auto_bind=ldap3.AUTO_BIND_NONE,
            receive_timeout=int(self.cfg.get("request_timeout")) or None,
            raise_exceptions=False,
            read_only=True,
        )
        if not conn.open(read_server_info=False) and conn.closed:
            raise LdapError("open failed")
        if self.cfg.get("starttls") and not use_ssl:
            if not conn.start_tls(read_server_info=False):
                conn.unbind()
                raise LdapError(f"StartTLS refused: {conn.result.get('description', '')}")
        return conn

    def _connection(self) -> ldap3.Connection:
        if self.conn is None:
            self.conn = self.dial()
        return self.conn

    def bind(self, dn: str, password: str) -> bool:
        """A simple bind; False on invalid credentials (or any refusal), never an exception."""
        conn = self._connection()
        try:
            if dn or password:
                return bool(conn.rebind(user=dn, password=password, authentication=ldap3.SIMPLE))
            return bool(conn.rebind(authentication=ldap3.ANONYMOUS))
        except LDAPException as exc:
            log.debug("ldap bind refused: %s", type(exc).__name__)
            return False

    def search(self, base: str, flt: str, attributes: list[str]) -> list[tuple[str, dict[str, list[str]]]]:
        conn = self._connection()
        kwargs: dict[str, Any] = {
            "search_scope": ldap3.SUBTREE,
            "attributes": attributes or [ldap3.NO_ATTRIBUTES],
            "dereference_aliases": DEREF.get(self.cfg.get("dereference_aliases"), ldap3.DEREF_NEVER),
        }
        if int(self.cfg.get("max_page_size")) > 0:
            kwargs["paged_size"] = int(self.cfg.get("max_page_size"))
        out: list[tuple[str, dict[str, list[str]]]] = []
        cookie: Any = None
        while True:
            if cookie:
                kwargs["paged_cookie"] = cookie
            ok = conn.search(base, flt, **kwargs)
            if not ok and conn.result.get("result") not in (0, 32):  # 32: no such object
                raise LdapError(f"LDAP search failed: {conn.result.get('description', '')}")
            for entry in conn.response or []:
                if entry.get("type") != "searchResEntry":
                    continue
                attrs = entry.get("attributes") or {}
                values: dict[str, list[str]] = {}
                for key, value in attrs.items():
                    items = value if isinstance(value, list) else [value]
                    values[key.lower()] = [
                        v.decode(errors="replace") if isinstance(v, bytes) else str(v) for v in items
                    ]
                out.append((str(entry.get("dn", "")), values))
            controls = (conn.result.get("controls") or {}).get("1.2.840.113556.1.4.319")
            cookie = controls["value"]["cookie"] if controls else None
            if not cookie:
                return out

    # -- the login steps ---------------------------------------------------------------------

    def bind_service(self) -> None:
        """Bind as binddn, or anonymously (discoverdn without credentials)."""
        binddn, bindpass = self.cfg.get("binddn"), self.cfg.get("bindpass")
        if binddn and bindpass:
            if not self.bind(binddn, bindpass):
                log.warning("ldap: the configured binddn could not bind")
                raise LdapError(BIND_FAILED)
        elif self.cfg.get("discoverdn"):
            if not self.bind("", ""):
                raise LdapError(BIND_FAILED)

    def user_bind_dn(self, username: str) -> tuple[str | None, str]:
        """(the DN to bind as, the user's ``userattr`` value) — DN None: no such user.

        Vault's ``GetUserBindDN``: search when a bind DN or discoverdn is set, else derive it.
        """
        cfg = self.cfg
        if cfg.get("discoverdn") or (cfg.get("binddn") and cfg.get("bindpass")):
            self.bind_service()
            flt = render_filter(
                cfg.get("userfilter"),
                {"UserAttr": cfg.get("userattr"), "Username": escape_filter_chars(username)},
            )
            found = self.search(cfg.get("userdn"), flt, [cfg.get("userattr")])
            if len(found) != 1:
                return None, ""
            dn, attrs = found[0]
            values = attrs.get(cfg.get("userattr").lower()) or []
            return dn, values[0] if values else ""
        if cfg.get("upndomain"):
            return f"{escape_rdn(username)}@{cfg.get('upndomain')}", ""
        if cfg.get("userdn"):
            return f"{cfg.get('userattr')}={escape_rdn(username)},{cfg.get('userdn')}", ""
        raise LdapError("ldap operation failed: cannot derive UserBindDN")

    def user_dn(self, bind_dn: str, username: str) -> str:
        """Vault's ``GetUserDN``: with upndomain, find the entry whose userPrincipalName matches."""
        cfg = self.cfg
        if not cfg.get("upndomain"):
            return bind_dn
        flt = (
            f"(userPrincipalName={escape_filter_chars(username)}@{escape_filter_chars(cfg.get('upndomain'))})"
        )
        found = self.search(cfg.get("userdn"), flt, [])
        return found[0][0] if len(found) == 1 else bind_dn

    def renewal_user_dn(self, username: str) -> str | None:
        """The user's DN found again without their password (renewal); None: no longer there.

        With a service account (``binddn``/``bindpass``, or ``discoverdn``) the user is searched
        as at login; without one the DN a login would bind as is looked up anonymously.
        """
        cfg = self.cfg
        if cfg.get("discoverdn") or (cfg.get("binddn") and cfg.get("bindpass")):
            bind_dn, _ = self.user_bind_dn(username)
            return None if bind_dn is None else self.user_dn(bind_dn, username)
        if not self.bind("", ""):
            raise LdapError(RENEW_LOOKUP_FAILED)
        if cfg.get("upndomain"):
            flt = (
                f"(userPrincipalName={escape_filter_chars(username)}"
                f"@{escape_filter_chars(cfg.get('upndomain'))})"
            )
            found = self.search(cfg.get("userdn"), flt, [])
            return found[0][0] if len(found) == 1 else None
        if cfg.get("userdn"):
            dn = f"{cfg.get('userattr')}={escape_rdn(username)},{cfg.get('userdn')}"
            return dn if self.search(dn, "(objectClass=*)", []) else None
        raise LdapError("ldap operation failed: cannot derive UserBindDN")

    def groups(self, user_dn: str, username: str) -> list[str]:
        """The user's LDAP group names: ``groupfilter`` under ``groupdn``, named by ``groupattr``."""
        cfg = self.cfg
        if not cfg.get("groupfilter") or not cfg.get("groupdn"):
            return []
        flt = render_filter(
            cfg.get("groupfilter"),
            {"Username": escape_filter_chars(username), "UserDN": escape_filter_chars(user_dn)},
        )
        attr = cfg.get("groupattr")
        names: list[str] = []
        for dn, attrs in self.search(cfg.get("groupdn"), flt, [attr]):
            values = attrs.get(attr.lower()) or [dn]
            for value in values:
                name = group_cn(value)
                if name and name not in names:
                    names.append(name)
        return names


@dataclass
class LoginResult:
    user_dn: str
    alias_value: str
    groups: list[str]
    warning: str = ""


def _op(
    handler: Callable[[Request, FieldData], Awaitable[Response | None]], summary: str = ""
) -> PathOperation:
    return PathOperation(handler, summary=summary)


class LdapBackend(FrameworkBackend):
    """One ``ldap`` mount."""

    backend_type = "ldap"
    help_text = (
        'The "ldap" credential provider allows authentication querying a LDAP server, checking '
        "username and password, and associating groups to set of policies.\n\n"
        'Configuration of the server is done through the "config" and "groups" endpoints by a '
        'user with root access. Authentication is then done by supplying the two fields for "login".'
    )

    def __init__(self, config: BackendConfig, core: Core | None = None) -> None:
        self.core = core
        self.now: Callable[[], float] = time.time  # replaceable in tests
        self.lockout = StoredLoginLockout(config.storage, self._lockout_policy, now=lambda: self.now())
        # unit tests swap in ldap3's MOCK_SYNC connections
        self.connection_factory: Callable[..., ldap3.Connection] | None = None
        super().__init__(config)

    async def initialize(self) -> None:
        await self.lockout.initialize()

    async def cleanup(self) -> None:
        await self.lockout.close()

    def _lockout_policy(self) -> LockoutPolicy:
        return mount_lockout_policy(self.core, self.config.mount_accessor)

    # -- paths -------------------------------------------------------------------------------

    def build_paths(self) -> list[Path]:
        disp = Display(prefix="ldap")
        name = Field(S, "Name of the LDAP group.")
        username = Field(S, "Name of the LDAP user.")
        policies = Field(FieldType.COMMA_LIST, "A list of policies associated to the group.")
        return [
            Path(
                "config",
                {
                    Operation.READ: _op(self._config_read, "Read the LDAP configuration"),
                    Operation.UPDATE: _op(self._config_write, "Configure the LDAP server to connect to"),
                },
                fields=_CONFIG_FIELDS,
                synopsis="Configure the LDAP server to connect to, along with its options.",
                display=disp,
            ),
            Path(
                "groups/",
                {Operation.LIST: _op(self._group_list, "List the LDAP groups mapped to policies")},
                synopsis="Manage additional groups for users allowed to authenticate.",
                display=disp,
            ),
            Path(
                "groups/{name:path}",
                {
                    Operation.READ: _op(self._group_read, "Read an LDAP group's policies"),
                    Operation.UPDATE: _op(self._group_write, "Map an LDAP group to policies"),
                    Operation.DELETE: _op(self._group_delete, "Delete an LDAP group mapping"),
                },
                fields={"name": name, "policies": policies},
                synopsis="Manage additional groups for users allowed to authenticate.",
                display=disp,
            ),
            Path(
                "users/",
                {Operation.LIST: _op(self._user_list, "List the LDAP users mapped to policies")},
                synopsis="Manage users allowed to authenticate.",
                display=disp,
            ),
            Path(
                "users/{name:path}",
                {
                    Operation.READ: _op(self._user_read, "Read an LDAP user's groups and policies"),
                    Operation.UPDATE: _op(self._user_write, "Map an LDAP user to groups and policies"),
                    Operation.DELETE: _op(self._user_delete, "Delete an LDAP user mapping"),
                },
                fields={
                    "name": username,
                    "groups": Field(
                        FieldType.COMMA_LIST,
                        "Comma-separated list of additional groups associated with the user.",
                    ),
                    "policies": Field(
                        FieldType.COMMA_LIST, "Comma-separated list of policies associated with the user."
                    ),
                },
                synopsis="Manage users allowed to authenticate.",
                display=disp,
            ),
            Path(
                "login/{username:segment}",
                {
                    Operation.UPDATE: _op(self._login, "Log in with a username and password."),
                    Operation.RENEW: _op(self._renew, "Renew a token issued by this method."),
                },
                fields={
                    "username": Field(S, "DN (distinguished name) to be used for login."),
                    "password": Field(S, "Password for this user.", sensitive=True),
                },
                unauthenticated=True,
                synopsis="Log in with a username and password.",
                display=disp,
            ),
        ]

    # -- config ------------------------------------------------------------------------------

    async def load_config(self) -> LdapConfig:
        return LdapConfig.from_json(await get_json(self.storage, CONFIG_KEY))

    async def _config_read(self, req: Request, d: FieldData) -> Response | None:
        return Response(data=(await self.load_config()).to_api())

    async def _config_write(self, req: Request, d: FieldData) -> Response | None:
        async with self.storage.transaction() as txn:
            cfg = LdapConfig.from_json(await get_json(txn, CONFIG_KEY))
            cfg.settings = _validated_settings(d, cfg.settings)
            cfg.token = TokenParams.from_fields(d, cfg.token)
            await put_json(txn, CONFIG_KEY, cfg.to_json())
        return None

    # -- groups and users ------------------------------------------------------------------------

    async def _key_name(self, d: FieldData, field_name: str = "name") -> str:
        name = str(d.get(field_name)).strip()
        if not name:
            raise UserError(f"{field_name} cannot be empty" if field_name != "name" else "missing name")
        if not (await self.load_config()).case_sensitive:
            name = name.lower()
        return name

    async def _group_list(self, req: Request, d: FieldData) -> Response | None:
        return Response(data={"keys": await self.storage.list(GROUP_PREFIX)})

    async def _group_read(self, req: Request, d: FieldData) -> Response | None:
        raw = await get_json(self.storage, GROUP_PREFIX + await self._key_name(d))
        if not isinstance(raw, dict):
            return None
        return Response(data={"policies": list(raw.get("policies") or [])})

    async def _group_write(self, req: Request, d: FieldData) -> Response | None:
        await put_json(
            self.storage,
            GROUP_PREFIX + await self._key_name(d),
            {"policies": parse_policies(d.get("policies"))},
        )
        return None

    async def _group_delete(self, req: Request, d: FieldData) -> Response | None:
        await self.storage.delete(GROUP_PREFIX + await self._key_name(d))
        return None

    async def _user_list(self, req: Request, d: FieldData) -> Response | None:
        return Response(data={"keys": await self.storage.list(USER_PREFIX)})

    async def _user_read(self, req: Request, d: FieldData) -> Response | None:
        raw = await get_json(self.storage, USER_PREFIX + await self._key_name(d))
        if not isinstance(raw, dict):
            return None
        # Vault shows a user's groups as one comma-joined string and its policies as a list
        return Response(
            data={"groups": ",".join(raw.get("groups") or []), "policies": list(raw.get("policies") or [])}
        )

    async def _user_write(self, req: Request, d: FieldData) -> Response | None:
        groups: list[str] = []
        for group in d.get("groups"):
            text = str(group).strip()
            if text and text not in groups:
                groups.append(text)
        await put_json(
            self.storage,
            USER_PREFIX + await self._key_name(d),
            {"groups": groups, "policies": parse_policies(d.get("policies"))},
        )
        return None

    async def _user_delete(self, req: Request, d: FieldData) -> Response | None:
        await self.storage.delete(USER_PREFIX + await self._key_name(d))
        return None

    # -- login -------------------------------------------------------------------------------

    async def _login(self, req: Request, d: FieldData) -> Response | None:
        username = str(d.get("username")).strip()
        if not username:
            raise UserError("missing username")
        password = str(d.get("password"))
        cfg = await self.load_config()
        if not password:
            # An empty password would make most servers accept an "unauthenticated bind"
            # (RFC 4513 5.1.2) as a success; refuse it outright unless told otherwise.
            if cfg.get("deny_null_bind"):
                raise UserError(NULL_PASSWORD)
        key = lockout_key(username)
        directory = Directory(cfg, self.connection_factory)
        try:
            result = await self._authenticate(directory, cfg, username, password, key)
        finally:
            await asyncio.to_thread(directory.close)

        await self.lockout.success(key)
        return await self._grant(req, cfg, username, result)

    async def _authenticate(
        self, directory: Directory, cfg: LdapConfig, username: str, password: str, key: str
    ) -> LoginResult:
        try:
            bind_dn, alias_value = await asyncio.to_thread(directory.user_bind_dn, username)
        except LdapError as exc:
            if str(exc) == BIND_FAILED:
                # the service account failed: nothing about the user is known; count it anyway
                if not await self.lockout.attempt(key):
                    raise PermissionDenied() from None
                await self.lockout.failure(key)
            raise UserError(str(exc)) from None
        # Count before the password is tried. Only a name the directory search found is
        # labelled (listed by sys/locked-users); derived bind DNs prove nothing until the bind.
        searched = bool(cfg.get("discoverdn") or (cfg.get("binddn") and cfg.get("bindpass")))
        label = key if searched and bind_dn is not None else ""
        if not await self.lockout.attempt(key, label=label):
            raise PermissionDenied()
        target = bind_dn
        if target is None:
            # Same work for an unknown name: one bind the directory must refuse.
            target = f"{cfg.get('userattr')}=strongroom-absent-{secrets.token_hex(8)},{cfg.get('userdn')}"
        try:
            bound = await asyncio.to_thread(directory.bind, target, password)
        except LdapError:
            bound = False
        except BaseException:
            await self.lockout.failure(key, label=label)  # give the slot back as a failure
            raise
        if not bound or bind_dn is None:
            await self.lockout.failure(key, label=label)
            raise UserError(BIND_FAILED)
        try:
            return await asyncio.to_thread(self._after_bind, directory, bind_dn, alias_value, username)
        except LdapError as exc:
            await self.lockout.success(key)  # the password was right; the directory failed after
            raise UserError(str(exc)) from None

    @staticmethod
    def _after_bind(directory: Directory, bind_dn: str, alias_value: str, username: str) -> LoginResult:
        cfg = directory.cfg
        if cfg.get("binddn") and cfg.get("bindpass"):
            if not directory.bind(cfg.get("binddn"), cfg.get("bindpass")):
                raise LdapError(REBIND_FAILED)
        user_dn = directory.user_dn(bind_dn, username)
        if cfg.get("anonymous_group_search"):
            if not directory.bind("", ""):
                raise LdapError(CONNECT_FAILED)
        groups = directory.groups(user_dn, username)
        warning = ""
        if not groups:
            warning = (
                f"no LDAP groups found in groupDN '{cfg.get('groupdn')}'; "
                "only policies from locally-defined groups available"
            )
        return LoginResult(user_dn=user_dn, alias_value=alias_value, groups=groups, warning=warning)

    async def _mapped(
        self, cfg: LdapConfig, username: str, ldap_groups: list[str]
    ) -> tuple[list[str], list[str]]:
        """(all the user's groups, the policies they and the local user mapping grant)."""
        cs = cfg.case_sensitive
        local = await get_json(self.storage, USER_PREFIX + (username if cs else username.lower()))
        local = local if isinstance(local, dict) else {}
        all_groups = [str(g) for g in local.get("groups") or []] + ldap_groups
        policies: list[str] = []
        for group in all_groups:
            raw = await get_json(self.storage, GROUP_PREFIX + (group if cs else group.lower()))
            if isinstance(raw, dict):
                policies.extend(raw.get("policies") or [])
        policies.extend(local.get("policies") or [])
        return all_groups, policies

    async def _grant(self, req: Request, cfg: LdapConfig, username: str, result: LoginResult) -> Response:
        cs = cfg.case_sensitive
        canonical = username if cs else username.lower()
        all_groups, policies = await self._mapped(cfg, username, result.groups)

        if not check_cidrs(req.connection.remote_addr, cfg.token.bound_cidrs):
            raise PermissionDenied()
        if cfg.get("username_as_alias") or not result.alias_value:
            alias = canonical
        else:
            alias = result.alias_value if cs else result.alias_value.lower()
        auth = Auth(
            metadata={"username": username},
            display_name=username,
            alias_name=alias,
            alias_metadata={"name": username},
            group_alias_names=list(all_groups),
        )
        cfg.token.apply(auth)
        for policy in parse_policies(policies):
            if policy not in auth.policies:
                auth.policies.append(policy)
        resp = Response(auth=auth)
        if result.warning:
            resp.warnings.append(result.warning)
        return resp

    # -- renewal -----------------------------------------------------------------------------

    async def _renew(self, req: Request, d: FieldData) -> Response | None:
        """Look the user and its groups up again; refuse if gone or if the policies changed.

        No password: the lookup binds as ``binddn`` (see the module notes). Reads only.
        """
        if req.auth is None:
            raise UserError("request auth was nil")
        username = str(req.auth.metadata.get("username", "")).strip()
        if not username:
            raise UserError(RENEW_USER_GONE)
        cfg = await self.load_config()
        directory = Directory(cfg, self.connection_factory)
        try:
            ldap_groups = await asyncio.to_thread(self._renewal_lookup, directory, username)
        except LdapError as exc:
            raise UserError(str(exc)) from None
        finally:
            await asyncio.to_thread(directory.close)
        if ldap_groups is None:
            raise UserError(RENEW_USER_GONE)
        _, mapped = await self._mapped(cfg, username, ldap_groups)
        if not equivalent_policies(
            [*cfg.token.policies, *mapped], req.auth.token_policies or req.auth.policies
        ):
            raise UserError("policies have changed, not renewing")
        auth = req.auth
        cfg.token.apply_renewal(auth)
        return Response(auth=auth)

    @staticmethod
    def _renewal_lookup(directory: Directory, username: str) -> list[str] | None:
        """The user's LDAP groups now (None: the user is no longer found), as a login finds them."""
        user_dn = directory.renewal_user_dn(username)
        if user_dn is None:
            return None
        if directory.cfg.get("anonymous_group_search"):
            if not directory.bind("", ""):
                raise LdapError(CONNECT_FAILED)
        return directory.groups(user_dn, username)

    # -- sys/locked-users ----------------------------------------------------------------------

    async def locked_users(self) -> list[str]:
        """The users locked out now (what ``sys/locked-users`` lists for this mount)."""
        return await self.lockout.locked()

    async def unlock_user(self, alias: str) -> None:
        """Lift the lock on a user, however the name is spelt."""
        await self.lockout.unlock(lockout_key(alias))


async def factory(config: BackendConfig, core: Core) -> LdapBackend:
    """Build one ldap mount; core calls ``initialize`` next."""
    return LdapBackend(config, core)
