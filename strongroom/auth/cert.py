"""The ``cert`` auth method: log in with the TLS client certificate of the connection.

Paths, fields, defaults and error texts follow Vault's ``builtin/credential/cert``:
``certs/<name>`` (trusted certificates with constraints and the shared ``token_*`` settings;
LIST ``certs``), ``crls/<name>`` (revoked serials; LIST ``crls``), ``config`` and the
unauthenticated ``login`` (``{name?}``).

The TLS layer (:mod:`strongroom.http.tls`) asks every client for a certificate and accepts
whatever it gets, so a handshake proves only that the client holds the leaf's private key.
*Everything* about trust is decided here:

* **Chains are built and checked by this module**, with ``cryptography``'s
  ``verify_directly_issued_by`` (issuer name and signature) plus the checks Go's
  ``x509.Verify`` makes for Vault: every certificate of the path inside its validity
  period, issuers marked CA (and allowed to sign certificates when they carry a key
  usage), extended key usage allowing client authentication wherever one is present.
  ``cryptography.x509.verification.ClientVerifier`` was not used: its RFC 5280 profile
  refuses certificates Vault accepts and real clients present (hvac's self-signed
  ``CA:TRUE`` client certificate with no key usage, a trust anchor presented as the leaf).
* **A trusted non-CA certificate matches only itself, byte for byte** (CVE-2024-2048,
  CVE-2025-6037): Vault once matched such entries on serial number and issuer, so a
  certificate with the same serial and subject but another key logged in. A presented
  certificate that looks like a trusted leaf (same serial and subject) but is not it, and
  that no other entry accepts, is refused with 403.
* **Revocation**: ``crls/<name>`` keeps the revoked serials of a CRL with its issuer; a
  path containing a certificate revoked by a CRL of that certificate's issuer does not
  match. CRLs are read from storage on every login, so a restart never opens a window
  in which revoked certificates log in (Vault's CVE-2022-41316).
* **OCSP** (:mod:`strongroom.auth.cert_ocsp`): an entry with ``ocsp_enabled`` matches
  only once the leaf's status is known. After every other constraint of the entry holds,
  the leaf is checked with its issuer (the certificate above it in the verified path; for
  a pinned leaf, the presented or trusted certificate that issued it) at
  ``ocsp_servers_override``, else the leaf's AIA OCSP URLs. The response must be
  successful, signed by the issuer, by a delegated responder certificate the issuer gave
  the id-kp-OCSPSigning usage, or by a certificate of ``ocsp_ca_certificates`` (which
  are also trusted for https to the responders), about this CertID, echo our nonce if it
  echoes one, and be fresh (``this_update`` not in the future, not older than
  ``ocsp_this_update_max_age`` when set, ``next_update`` not passed). ``good`` → the
  entry matches; ``revoked`` → 403 ("permission denied", and the revoked serial) unless
  another entry without OCSP accepts the certificate; no definitive answer (no URL,
  responder down or timing out after ``ocsp_max_retries`` retries, HTTP error,
  ``unknown``) → refused with 400 unless ``ocsp_fail_open`` (then the login proceeds and
  a warning is logged); a forged or stale response → refused even with
  ``ocsp_fail_open`` (Vault's split). ``ocsp_query_all_servers`` asks every URL: any
  ``revoked`` wins, ``good`` needs them all. Definitive answers are cached per (issuer,
  serial) until ``next_update`` (at most an hour; 60 s without one), bounded by
  ``config.ocsp_cache_size``. A trust anchor presented as the leaf (self-signed) is not
  checked, as in Vault. Renewals run the same checks (unless ``disable_binding``).
* **Renewal binding** (CVE-2026-39388): the login stores the leaf's SHA-256 fingerprint
  (and, like Vault, its key ids) in the token's auth internal data, and the ``RENEW``
  handler of ``login`` refuses (403) a renewal presenting another certificate unless
  ``config.disable_binding`` is set. The token store asks this handler on every renewal
  of a token this mount issued, and renews with the TTLs it answers (the entry's current ones).

The alias name is the leaf's common name, as in Vault.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from strongroom.auth.cert_ocsp import OcspChecker, OcspResult, OcspSettings, Outcome, serial_hex
from strongroom.auth.common import TokenParams, check_cidrs, equivalent_policies, token_fields
from strongroom.framework import Display, Field, FieldData, FieldType, FrameworkBackend, Path, PathOperation
from strongroom.logical.backend import BackendConfig
from strongroom.logical.errors import PermissionDenied, UserError
from strongroom.logical.request import Auth, Operation, Request, Response
from strongroom.logical.storage import Storage, get_json, put_json

if TYPE_CHECKING:
    from strongroom.core.core import Core

__all__ = ["CertBackend", "CertEntry", "factory", "glob_match"]

log = logging.getLogger("strongroom.auth.cert")

CERT_PREFIX = "cert/"
CRL_PREFIX = "crls/"
CONFIG_KEY = "config"
MAX_CACHE_SIZE = 100_000
MAX_CHAIN_DEPTH = 8  # certificates above the leaf a path may have
MAX_CHAINS = 16  # paths kept per login; bounds the work a crafted chain can cause
MAX_PRESENTED = 16  # intermediates looked at
DEFAULT_OCSP_MAX_RETRIES = 4  # Vault's default

NO_CERT = "client certificate must be supplied"
NO_TRUST = "invalid certificate or no client certificate supplied"
NO_MATCH = "no chain matching all constraints could be found for this login certificate"

S, B, L = FieldType.STRING, FieldType.BOOL, FieldType.COMMA_LIST

_NAME = Field(S, "The name of the certificate")
_CERT_FIELDS: dict[str, Field] = {
    "name": _NAME,
    "certificate": Field(S, "The public certificate that should be trusted. Must be x509 PEM encoded."),
    "ocsp_enabled": Field(B, "Whether to attempt OCSP verification of certificates at login"),
    "ocsp_ca_certificates": Field(
        S, "Any additional CA certificates needed to communicate with OCSP servers"
    ),
    "ocsp_servers_override": Field(L, "A comma-separated list of OCSP server addresses."),
    "ocsp_fail_open": Field(B, "If true, a failed OCSP check lets the login proceed.", default=False),
    "ocsp_query_all_servers": Field(
        B,
        "If true, query all OCSP servers: any revoked answer refuses, and good needs every server.",
        default=False,
    ),
    "ocsp_this_update_max_age": Field(
        FieldType.DURATION,
        "If greater than 0, the maximum age of an OCSP response's thisUpdate field.",
        default=0,
    ),
    "ocsp_max_retries": Field(
        FieldType.INT, "The number of retries the OCSP client should attempt per query.", default=4
    ),
    "allowed_names": Field(
        L,
        "A comma-separated list of names. At least one must exist in either the Common Name or SANs. "
        "Supports globbing. Deprecated: use allowed_common_names, allowed_dns_sans, allowed_email_sans, "
        "allowed_uri_sans.",
    ),
    "allowed_common_names": Field(L, "At least one must exist in the Common Name. Supports globbing."),
    "allowed_dns_sans": Field(L, "At least one must exist in the DNS SANs. Supports globbing."),
    "allowed_email_sans": Field(L, "At least one must exist in the email SANs. Supports globbing."),
    "allowed_uri_sans": Field(L, "At least one must exist in the URI SANs. Supports globbing."),
    "allowed_organizational_units": Field(L, "At least one must exist in the OU field. Supports globbing."),
    "required_extensions": Field(
        L, 'Extensions formatted as "oid:value", each value an ASN.1 string; all must match (glob on value).'
    ),
    "allowed_metadata_extensions": Field(
        L, "OIDs of extensions copied into the login metadata (key: the OID with dashes for dots)."
    ),
    "display_name": Field(S, "The display name to use for clients using this certificate."),
    "lease": Field(FieldType.INT, 'Use "token_ttl" instead.', deprecated=True),
    **token_fields("policies", "ttl", "max_ttl", "period", "bound_cidrs"),
}
_LIST_FIELDS = (
    "allowed_names",
    "allowed_common_names",
    "allowed_dns_sans",
    "allowed_email_sans",
    "allowed_uri_sans",
    "allowed_organizational_units",
    "required_extensions",
    "allowed_metadata_extensions",
    "ocsp_servers_override",
)
_CONFIG_FIELDS: dict[str, Field] = {
    "disable_binding": Field(
        B, "If set, renewal skips matching the presented certificate with the login's.", default=False
    ),
    "enable_identity_alias_metadata": Field(
        B, "If set, the certificate's metadata is stored in the identity alias.", default=False
    ),
    "ocsp_cache_size": Field(FieldType.INT, "The size of the in-memory OCSP response cache", default=100),
}


# -- matching helpers --------------------------------------------------------------------------


def glob_match(pattern: str, subject: str) -> bool:
    """``github.com/ryanuber/go-glob``: ``*`` matches any run of characters, nothing else is special."""
    if pattern == "*":
        return True
    parts = pattern.split("*")
    if len(parts) == 1:
        return subject == pattern
    leading, trailing = pattern.startswith("*"), pattern.endswith("*")
    end = len(parts) - 1
    for i in range(end):
        idx = subject.find(parts[i])
        if i == 0:
            if not leading and idx != 0:
                return False
        elif idx < 0:
            return False
        subject = subject[idx + len(parts[i]) :]
    return trailing or subject.endswith(parts[end])


def _any_glob(patterns: Iterable[str], values: Iterable[str]) -> bool:
    vals = list(values)
    return any(glob_match(p, v) for p in patterns for v in vals)


def _hex_colon(raw: bytes) -> str:
    """certutil.GetHexFormatted: lower-case hex bytes joined by colons."""
    return ":".join(f"{b:02x}" for b in raw)


# DER string types Go's asn1.Unmarshal accepts into a string
_STRING_TAGS = {0x0C: "utf-8", 0x13: "ascii", 0x16: "ascii", 0x14: "latin-1", 0x12: "ascii", 0x1A: "ascii"}


def _der_string(raw: bytes) -> str:
    """The text of a DER-encoded ASN.1 string (what Vault compares required_extensions with); "" if not one."""
    if len(raw) < 2 or raw[0] not in _STRING_TAGS:
        return ""
    length, pos = raw[1], 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4 or len(raw) < 2 + count:
            return ""
        length, pos = int.from_bytes(raw[2 : 2 + count], "big"), 2 + count
    body = raw[pos : pos + length]
    if len(body) != length:
        return ""
    try:
        return body.decode(_STRING_TAGS[raw[0]])
    except UnicodeDecodeError:
        return ""


def _extension_values(cert: x509.Certificate) -> dict[str, str]:
    out: dict[str, str] = {}
    for ext in cert.extensions:
        value = ext.value
        try:
            raw = value.value if isinstance(value, x509.UnrecognizedExtension) else value.public_bytes()
        except (NotImplementedError, ValueError):
            continue
        out[ext.oid.dotted_string] = _der_string(raw)
    return out


def _common_name(cert: x509.Certificate) -> str:
    attrs = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    value = attrs[0].value if attrs else ""
    return value if isinstance(value, str) else value.decode("utf-8", "replace")


def _sans(cert: x509.Certificate) -> x509.SubjectAlternativeName | None:
    try:
        return cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None


def _ext(cert: x509.Certificate, kind: type[Any]) -> Any:
    try:
        return cert.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None


def _key_id(cert: x509.Certificate, kind: type[Any]) -> bytes:
    value = _ext(cert, kind)
    if value is None:
        return b""
    raw = value.digest if kind is x509.SubjectKeyIdentifier else value.key_identifier
    return bytes(raw or b"")


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def _same(a: x509.Certificate, b: x509.Certificate) -> bool:
    """Byte-identical certificates (constant time: a trusted leaf is compared with client input)."""
    return hmac.compare_digest(_der(a), _der(b))


def _is_ca(cert: x509.Certificate) -> bool:
    bc = _ext(cert, x509.BasicConstraints)
    return bool(bc is not None and bc.ca)


def _in_validity(cert: x509.Certificate, now: datetime) -> bool:
    return cert.not_valid_before_utc <= now <= cert.not_valid_after_utc


def _allows_client_auth(cert: x509.Certificate) -> bool:
    eku = _ext(cert, x509.ExtendedKeyUsage)
    if eku is None:
        return True
    usages = list(eku)
    return ExtendedKeyUsageOID.CLIENT_AUTH in usages or ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE in usages


def _issued_by(child: x509.Certificate, issuer: x509.Certificate, now: datetime) -> bool:
    """Whether ``issuer`` may have signed ``child`` and did: CA, in validity, names and signature."""
    if not _is_ca(issuer) or not _in_validity(issuer, now):
        return False
    ku = _ext(issuer, x509.KeyUsage)
    if ku is not None and not ku.key_cert_sign:
        return False
    try:
        child.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def build_chains(
    leaf: x509.Certificate,
    presented: list[x509.Certificate],
    anchors: list[x509.Certificate],
    now: datetime,
) -> list[list[x509.Certificate]]:
    """Every verified path (leaf first, anchor last) from ``leaf`` to one of ``anchors``.

    Presented intermediates may be used in any order; a leaf that *is* an anchor is a path
    of one (Go accepts a trusted self-signed client certificate so, and hvac relies on it).
    """
    chains: list[list[x509.Certificate]] = []
    if not _in_validity(leaf, now):
        return chains

    def walk(chain: list[x509.Certificate]) -> None:
        if len(chains) >= MAX_CHAINS:
            return
        current = chain[-1]
        for anchor in anchors:
            if _same(current, anchor):
                if _is_ca(anchor) and _in_validity(anchor, now):
                    chains.append(list(chain))
                return
        for anchor in anchors:
            if _issued_by(current, anchor, now):
                chains.append([*chain, anchor])
        if len(chain) > MAX_CHAIN_DEPTH:
            return
        for candidate in presented:
            if any(_same(candidate, seen) for seen in chain):
                continue
            if _issued_by(current, candidate, now):
                walk([*chain, candidate])

    walk([leaf])
    return [c for c in chains if all(_allows_client_auth(x) for x in c)]


def parse_pem_certs(text: str) -> list[x509.Certificate]:
    """All certificates of a PEM bundle; [] when there are none or it does not parse."""
    try:
        return list(x509.load_pem_x509_certificates(text.encode()))
    except ValueError:
        return []


# -- stored records ----------------------------------------------------------------------------


@dataclass
class CertEntry:
    """One trusted certificate entry (``cert/<name>``) with its constraints and token settings."""

    name: str
    certificate: str = ""
    display_name: str = ""
    lists: dict[str, list[str]] = field(default_factory=dict)
    ocsp_enabled: bool = False
    ocsp_ca_certificates: str = ""
    ocsp_fail_open: bool = False
    ocsp_query_all_servers: bool = False
    ocsp_this_update_max_age: int = 0
    ocsp_max_retries: int = DEFAULT_OCSP_MAX_RETRIES
    token: TokenParams = field(default_factory=TokenParams)

    def get(self, key: str) -> list[str]:
        return list(self.lists.get(key) or [])

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "certificate": self.certificate,
            "display_name": self.display_name,
            "lists": {k: list(v) for k, v in self.lists.items()},
            "ocsp_enabled": self.ocsp_enabled,
            "ocsp_ca_certificates": self.ocsp_ca_certificates,
            "ocsp_fail_open": self.ocsp_fail_open,
            "ocsp_query_all_servers": self.ocsp_query_all_servers,
            "ocsp_this_update_max_age": self.ocsp_this_update_max_age,
            "ocsp_max_retries": self.ocsp_max_retries,
            "token": self.token.to_json(),
        }

    @classmethod
    def from_json(cls, raw: Any) -> CertEntry | None:
        if not isinstance(raw, dict):
            return None
        return cls(
            name=str(raw.get("name", "")),
            certificate=str(raw.get("certificate", "")),
            display_name=str(raw.get("display_name", "")),
            lists={str(k): [str(x) for x in v] for k, v in (raw.get("lists") or {}).items()},
            ocsp_enabled=bool(raw.get("ocsp_enabled", False)),
            ocsp_ca_certificates=str(raw.get("ocsp_ca_certificates", "")),
            ocsp_fail_open=bool(raw.get("ocsp_fail_open", False)),
            ocsp_query_all_servers=bool(raw.get("ocsp_query_all_servers", False)),
            ocsp_this_update_max_age=int(raw.get("ocsp_this_update_max_age", 0) or 0),
            ocsp_max_retries=int(raw.get("ocsp_max_retries", DEFAULT_OCSP_MAX_RETRIES)),
            token=TokenParams.from_json(raw.get("token")),
        )

    def to_api(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "certificate": self.certificate,
            "display_name": self.display_name,
            "ocsp_enabled": self.ocsp_enabled,
            "ocsp_ca_certificates": self.ocsp_ca_certificates,
            "ocsp_fail_open": self.ocsp_fail_open,
            "ocsp_query_all_servers": self.ocsp_query_all_servers,
            "ocsp_this_update_max_age": self.ocsp_this_update_max_age,
            "ocsp_max_retries": self.ocsp_max_retries,
        }
        for key in _LIST_FIELDS:
            data[key] = self.get(key)
        data.update(self.token.to_api())
        return data


@dataclass
class _Trusted:
    entry: CertEntry
    certs: list[x509.Certificate]


@dataclass
class _Verified:
    entry: CertEntry
    leaf: x509.Certificate


def _crl_issuer_key(name: x509.Name) -> str:
    return name.rfc4514_string()


def _http_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
        return parts.scheme.lower() in ("http", "https") and bool(parts.hostname)
    except ValueError:
        return False


def _pinned_issuer(
    leaf: x509.Certificate, candidates: list[x509.Certificate], now: datetime
) -> tuple[bool, x509.Certificate | None]:
    """(whether OCSP applies, the issuer to ask about) for a trusted leaf presented as itself.

    A self-signed leaf has nobody to ask (Vault checks nothing for a path of one); otherwise
    its issuer is looked for among the entry's other certificates, the presented ones and the
    trusted CAs — not finding it leaves the status unknown.
    """
    if leaf.issuer == leaf.subject:
        try:
            leaf.verify_directly_issued_by(leaf)
            return False, None
        except (ValueError, TypeError, InvalidSignature):
            pass
    for cert in candidates:
        if not _same(cert, leaf) and _issued_by(leaf, cert, now):
            return True, cert
    return True, None


class _OcspRound:
    """OCSP verdicts of one login: memoized per (issuer, settings); refusals kept for the error."""

    def __init__(self, backend: CertBackend, leaf: x509.Certificate, now: datetime) -> None:
        self.backend, self.leaf, self.now = backend, leaf, now
        self.memo: dict[tuple[str, OcspSettings], OcspResult] = {}
        self.revoked = False
        self.errors: list[str] = []

    async def passes(
        self, entry: CertEntry, issuer: x509.Certificate | None, *, applies: bool = True
    ) -> bool:
        if not entry.ocsp_enabled or not applies:
            return True
        settings = self.backend._ocsp_settings(entry)
        if issuer is None:
            result = OcspResult(
                Outcome.UNAVAILABLE,
                f"the issuer of cert with serial number {serial_hex(self.leaf)} is not known, "
                "so its OCSP status cannot be checked",
            )
        else:
            key = (hashlib.sha256(_der(issuer)).hexdigest(), settings)
            found = self.memo.get(key)
            if found is None:
                found = await self.backend.ocsp.check(self.leaf, issuer, settings, self.now)
                self.memo[key] = found
            result = found
        return self._judge(entry, settings, result)

    def _judge(self, entry: CertEntry, settings: OcspSettings, result: OcspResult) -> bool:
        if result.outcome is Outcome.GOOD:
            return True
        serial = serial_hex(self.leaf)
        if result.outcome is Outcome.REVOKED:
            log.info("cert entry %s: OCSP says the certificate with serial %s is revoked", entry.name, serial)
            self.revoked = True
            return False
        if result.outcome is Outcome.UNAVAILABLE and settings.fail_open:
            log.warning(
                "cert entry %s: could not validate the OCSP status of the certificate with serial %s (%s), "
                "but continuing as ocsp_fail_open is set",
                entry.name,
                serial,
                result.detail,
            )
            return True
        if result.detail not in self.errors:
            self.errors.append(result.detail)
        return False

    def refuse(self, base: str) -> None:
        """Raise the OCSP refusal, if OCSP refused any entry that otherwise matched."""
        if self.revoked:
            raise PermissionDenied(
                "permission denied",
                f"certificate with serial number {serial_hex(self.leaf)} has been revoked",
            )
        if self.errors:
            raise UserError(f"{base}; additionally got errors during verification: {'; '.join(self.errors)}")


# -- the backend -------------------------------------------------------------------------------


def _op(handler: Callable[[Request, FieldData], Awaitable[Response | None]], summary: str) -> PathOperation:
    return PathOperation(handler, summary=summary)


class CertBackend(FrameworkBackend):
    """One ``cert`` mount."""

    backend_type = "cert"
    help_text = (
        "The TLS certificate credential provider authenticates clients by the certificate they "
        "present in the TLS handshake, checked against trusted certificates configured under certs/."
    )

    def __init__(self, config: BackendConfig, core: Core | None = None) -> None:
        self.core = core
        self.now: Callable[[], datetime] = lambda: datetime.now(UTC)  # replaceable in tests
        self._parsed: dict[str, list[x509.Certificate]] = {}
        self.ocsp = OcspChecker()  # per process: response cache, shared by every entry of the mount
        super().__init__(config)

    def build_paths(self) -> list[Path]:
        disp = Display(prefix="cert")
        return [
            Path(
                "login",
                {
                    Operation.UPDATE: _op(self._login, "Log in with the TLS client certificate."),
                    Operation.RENEW: _op(self._renew, "Renew a token issued by this method."),
                },
                fields={"name": Field(S, "The name of the certificate role to authenticate against.")},
                unauthenticated=True,
                synopsis="Log in with a TLS client certificate.",
                display=disp,
            ),
            Path(
                "certs/",
                {Operation.LIST: _op(self._cert_list, "List trusted certificates")},
                synopsis="Manage trusted certificates used for authentication.",
                display=disp,
            ),
            Path(
                "certs/{name}",
                {
                    Operation.READ: _op(self._cert_read, "Read a trusted certificate"),
                    Operation.UPDATE: _op(self._cert_write, "Create or update a trusted certificate"),
                    Operation.DELETE: _op(self._cert_delete, "Delete a trusted certificate"),
                },
                fields=_CERT_FIELDS,
                synopsis="Manage trusted certificates used for authentication.",
                description=(
                    "Create, read, update and delete trusted certificates. Deleting one does not revoke "
                    "the tokens it already issued."
                ),
                display=disp,
            ),
            Path(
                "crls/",
                {Operation.LIST: _op(self._crl_list, "List CRLs")},
                synopsis="Manage Certificate Revocation Lists checked during authentication.",
                display=disp,
            ),
            Path(
                "crls/{name}",
                {
                    Operation.READ: _op(self._crl_read, "Read a CRL's revoked serials"),
                    Operation.UPDATE: _op(self._crl_write, "Store a CRL"),
                    Operation.DELETE: _op(self._crl_delete, "Delete a CRL"),
                },
                fields={
                    "name": _NAME,
                    "crl": Field(S, "The public CRL, DER or PEM encoded."),
                    "url": Field(S, "The URL of a CRL distribution point (not supported)."),
                },
                synopsis="Manage Certificate Revocation Lists checked during authentication.",
                display=disp,
            ),
            Path(
                "config",
                {
                    Operation.READ: _op(self._config_read, "Read the method's configuration"),
                    Operation.UPDATE: _op(self._config_write, "Configure the method"),
                },
                fields=_CONFIG_FIELDS,
                synopsis="Configure the cert auth method.",
                display=disp,
            ),
        ]

    # -- storage -------------------------------------------------------------------------------

    async def _load_entry(self, storage: Storage, name: str) -> CertEntry | None:
        return CertEntry.from_json(await get_json(storage, CERT_PREFIX + name.lower()))

    async def _load_config(self) -> dict[str, Any]:
        raw = await get_json(self.storage, CONFIG_KEY)
        raw = raw if isinstance(raw, dict) else {}
        return {
            "disable_binding": bool(raw.get("disable_binding", False)),
            "enable_identity_alias_metadata": bool(raw.get("enable_identity_alias_metadata", False)),
            "ocsp_cache_size": int(raw.get("ocsp_cache_size", 100) or 100),
        }

    def _certs_of(self, entry: CertEntry) -> list[x509.Certificate]:
        """Parsed certificates of an entry, cached by the PEM's digest (parsing on every login is waste)."""
        return self._parse_cached(entry.certificate)

    def _parse_cached(self, pem: str) -> list[x509.Certificate]:
        key = hashlib.sha256(pem.encode()).hexdigest()
        found = self._parsed.get(key)
        if found is None:
            found = parse_pem_certs(pem)
            if len(self._parsed) > 1024:
                self._parsed.clear()
            self._parsed[key] = found
        return found

    def _ocsp_settings(self, entry: CertEntry) -> OcspSettings:
        pem = entry.ocsp_ca_certificates.strip()
        return OcspSettings(
            servers_override=tuple(entry.get("ocsp_servers_override")),
            ca_certificates=tuple(self._parse_cached(pem)) if pem else (),
            ca_pem_digest=hashlib.sha256(pem.encode()).hexdigest() if pem else "",
            fail_open=entry.ocsp_fail_open,
            query_all_servers=entry.ocsp_query_all_servers,
            this_update_max_age=entry.ocsp_this_update_max_age,
            max_retries=entry.ocsp_max_retries,
        )

    # -- certs/ --------------------------------------------------------------------------------

    async def _cert_list(self, req: Request, d: FieldData) -> Response | None:
        return Response(data={"keys": await self.storage.list(CERT_PREFIX)})

    async def _cert_read(self, req: Request, d: FieldData) -> Response | None:
        entry = await self._load_entry(self.storage, str(d.get("name")))
        return None if entry is None else Response(data=entry.to_api())

    async def _cert_delete(self, req: Request, d: FieldData) -> Response | None:
        await self.storage.delete(CERT_PREFIX + str(d.get("name")).lower())
        return None

    async def _cert_write(self, req: Request, d: FieldData) -> Response | None:
        name = str(d.get("name")).lower()
        async with self.storage.transaction() as txn:
            entry = await self._load_entry(txn, name) or CertEntry(name=name)
            if d.sent("certificate"):
                entry.certificate = str(d.get("certificate"))
            for key in ("ocsp_enabled", "ocsp_fail_open", "ocsp_query_all_servers"):
                if d.sent(key):
                    setattr(entry, key, bool(d.get(key)))
            if d.sent("ocsp_ca_certificates"):
                entry.ocsp_ca_certificates = str(d.get("ocsp_ca_certificates"))
                if entry.ocsp_ca_certificates.strip() and not parse_pem_certs(entry.ocsp_ca_certificates):
                    raise UserError("failed to parse ocsp_ca_certificates")
            if d.sent("ocsp_this_update_max_age"):
                entry.ocsp_this_update_max_age = int(d.get("ocsp_this_update_max_age"))
            if d.sent("ocsp_max_retries"):
                retries = int(d.get("ocsp_max_retries"))
                if retries < 0:
                    raise UserError("ocsp_max_retries can not be a negative number")
                entry.ocsp_max_retries = retries
            if d.sent("display_name"):
                entry.display_name = str(d.get("display_name"))
            for key in _LIST_FIELDS:
                if d.sent(key):
                    entry.lists[key] = [str(v).strip() for v in d.get(key) if str(v).strip()]
            entry.token = TokenParams.from_fields(d, entry.token)
            if d.sent("lease") and not d.sent("token_ttl") and not d.sent("ttl"):
                entry.token.ttl = int(d.get("lease"))
            if entry.token.max_ttl and entry.token.ttl > entry.token.max_ttl:
                raise UserError("ttl should be shorter than max_ttl")
            if not entry.display_name:
                entry.display_name = name
            parsed = parse_pem_certs(entry.certificate)
            if not parsed:
                raise UserError("failed to parse certificate")
            if not _is_ca(parsed[0]) and not _allows_client_auth(parsed[0]):
                raise UserError(
                    "nonCA certificates should have TLS client authentication set as an extended key usage"
                )
            for key in entry.get("required_extensions"):
                if len(key.split(":", 1)) != 2:
                    raise UserError(f'required_extensions entry {key[:80]!r} is not of the form "oid:value"')
            for url in entry.get("ocsp_servers_override"):
                if not _http_url(url):
                    raise UserError(f"ocsp_servers_override entry {url[:80]!r} is not an http or https URL")
            await put_json(txn, CERT_PREFIX + name, entry.to_json())
        return None

    # -- crls/ ---------------------------------------------------------------------------------

    async def _crl_list(self, req: Request, d: FieldData) -> Response | None:
        return Response(data={"keys": await self.storage.list(CRL_PREFIX)})

    async def _crl_read(self, req: Request, d: FieldData) -> Response | None:
        name = str(d.get("name")).lower()
        if not name:
            raise UserError('"name" parameter must be set')
        raw = await get_json(self.storage, CRL_PREFIX + name)
        if not isinstance(raw, dict):
            raise UserError(f"no such CRL {name}")
        return Response(data={"cdp": None, "serials": {s: {} for s in raw.get("serials", [])}})

    async def _crl_delete(self, req: Request, d: FieldData) -> Response | None:
        name = str(d.get("name")).lower()
        if not name:
            raise UserError('"name" parameter cannot be empty')
        if await self.storage.get(CRL_PREFIX + name) is None:
            raise UserError(f"no such CRL {name}")
        await self.storage.delete(CRL_PREFIX + name)
        return None

    async def _crl_write(self, req: Request, d: FieldData) -> Response | None:
        name = str(d.get("name")).lower()
        if not name:
            raise UserError('"name" parameter cannot be empty')
        text = str(d.get("crl") or "")
        if not text:
            if d.sent("url") and str(d.get("url")):
                raise UserError("fetching CRLs from a distribution point URL is not supported; send 'crl'")
            raise UserError("one of 'crl' or 'url' must be provided")
        crl = _parse_crl(text)
        serials = sorted({str(revoked.serial_number) for revoked in crl})
        await put_json(
            self.storage, CRL_PREFIX + name, {"issuer": _crl_issuer_key(crl.issuer), "serials": serials}
        )
        return None

    async def _revoked(self) -> dict[str, set[str]]:
        """Issuer → revoked serials (decimal), over every stored CRL; read fresh at each login."""
        out: dict[str, set[str]] = {}
        for name in await self.storage.list(CRL_PREFIX):
            raw = await get_json(self.storage, CRL_PREFIX + name)
            if isinstance(raw, dict):
                out.setdefault(str(raw.get("issuer", "")), set()).update(
                    str(s) for s in raw.get("serials", [])
                )
        return out

    # -- config --------------------------------------------------------------------------------

    async def _config_read(self, req: Request, d: FieldData) -> Response | None:
        return Response(data=await self._load_config())

    async def _config_write(self, req: Request, d: FieldData) -> Response | None:
        async with self.storage.transaction() as txn:
            raw = await get_json(txn, CONFIG_KEY)
            config = dict(raw) if isinstance(raw, dict) else {}
            for key in ("disable_binding", "enable_identity_alias_metadata"):
                if d.sent(key):
                    config[key] = bool(d.get(key))
            if d.sent("ocsp_cache_size"):
                size = int(d.get("ocsp_cache_size"))
                if size < 2 or size > MAX_CACHE_SIZE:
                    raise UserError(f"invalid cache size, must be >= 2 and <= {MAX_CACHE_SIZE}")
                config["ocsp_cache_size"] = size
            await put_json(txn, CONFIG_KEY, config)
        return None

    # -- login ---------------------------------------------------------------------------------

    async def _trusted(self, name: str) -> tuple[list[_Trusted], list[_Trusted]]:
        """(CA entries, non-CA entries) to check: all of them, or only ``name``."""
        names = [name] if name else await self.storage.list(CERT_PREFIX)
        cas: list[_Trusted] = []
        leaves: list[_Trusted] = []
        for entry_name in names:
            entry = await self._load_entry(self.storage, entry_name)
            if entry is None:
                continue
            certs = self._certs_of(entry)
            if not certs:
                continue
            (cas if _is_ca(certs[0]) else leaves).append(_Trusted(entry, certs))
        return cas, leaves

    async def verify(self, chain_pem: list[str], name: str) -> _Verified:
        """Find the entry that accepts the presented chain, or raise with Vault's texts."""
        if not chain_pem:
            raise UserError(NO_CERT)
        try:
            presented = [x509.load_pem_x509_certificate(p.encode()) for p in chain_pem[: MAX_PRESENTED + 1]]
        except ValueError:
            raise UserError(NO_TRUST) from None
        leaf, intermediates = presented[0], presented[1:]
        now = self.now()
        cas, leaves = await self._trusted(name.lower())
        revoked = await self._revoked()
        anchors = [c for t in cas for c in t.certs]
        ocsp = _OcspRound(self, leaf, now)

        impostor = False
        for trusted in leaves:
            tcert = trusted.certs[0]
            if _same(tcert, leaf):
                if (
                    _in_validity(leaf, now)
                    and _allows_client_auth(leaf)
                    and self._matches(leaf, [leaf], trusted, revoked)
                ):
                    applies, issuer = (
                        _pinned_issuer(leaf, [*trusted.certs[1:], *intermediates, *anchors], now)
                        if trusted.entry.ocsp_enabled
                        else (False, None)
                    )
                    if await ocsp.passes(trusted.entry, issuer, applies=applies):
                        return _Verified(trusted.entry, leaf)
            elif tcert.serial_number == leaf.serial_number and tcert.subject == leaf.subject:
                impostor = True  # CVE-2024-2048 / CVE-2025-6037: same serial and subject, not the same cert

        chains = build_chains(leaf, intermediates, anchors, now) if anchors else []
        if not chains:
            if impostor:
                raise PermissionDenied()
            ocsp.refuse(NO_TRUST)
            raise UserError(NO_TRUST)
        for trusted in cas:
            for tcert in trusted.certs:
                for chain in chains:
                    if any(_same(tcert, c) for c in chain) and self._matches(leaf, chain, trusted, revoked):
                        # a path of one is an anchor presented as the leaf: nothing above it to ask
                        issuer = chain[1] if len(chain) > 1 else None
                        if await ocsp.passes(trusted.entry, issuer, applies=issuer is not None):
                            return _Verified(trusted.entry, leaf)
        ocsp.refuse(NO_MATCH)
        raise UserError(NO_MATCH)

    @staticmethod
    def _matches(
        leaf: x509.Certificate, chain: list[x509.Certificate], trusted: _Trusted, revoked: dict[str, set[str]]
    ) -> bool:
        """Vault's ``matchesConstraints``: CRLs over the chain, then every allowed_* list and extension."""
        for cert in chain:
            if str(cert.serial_number) in revoked.get(_crl_issuer_key(cert.issuer), ()):
                return False
        entry = trusted.entry
        cn = _common_name(leaf)
        sans = _sans(leaf)
        dns = [str(v) for v in sans.get_values_for_type(x509.DNSName)] if sans else []
        emails = [str(v) for v in sans.get_values_for_type(x509.RFC822Name)] if sans else []
        uris = [str(v) for v in sans.get_values_for_type(x509.UniformResourceIdentifier)] if sans else []
        ous = [str(a.value) for a in leaf.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)]
        checks = (
            ("allowed_names", [cn, *dns, *emails]),
            ("allowed_common_names", [cn]),
            ("allowed_dns_sans", dns),
            ("allowed_email_sans", emails),
            ("allowed_uri_sans", uris),
            ("allowed_organizational_units", ous),
        )
        for key, values in checks:
            patterns = entry.get(key)
            if patterns and not _any_glob(patterns, values):
                return False
        required = entry.get("required_extensions")
        if required:
            present = _extension_values(leaf)
            for item in required:
                parts = item.split(":", 1)
                if len(parts) != 2 or parts[0] not in present or not glob_match(parts[1], present[parts[0]]):
                    return False
        return True

    async def _login(self, req: Request, d: FieldData) -> Response | None:
        config = await self._load_config()
        self.ocsp.resize(config["ocsp_cache_size"])
        found = await self.verify(req.connection.client_cert_chain, str(d.get("name") or ""))
        entry, leaf = found.entry, found.leaf
        if not check_cidrs(req.connection.remote_addr, entry.token.bound_cidrs):
            raise PermissionDenied()
        skid, akid = _key_id(leaf, x509.SubjectKeyIdentifier), _key_id(leaf, x509.AuthorityKeyIdentifier)
        metadata = {
            "cert_name": entry.name,
            "common_name": _common_name(leaf),
            "serial_number": str(leaf.serial_number),
            "subject_key_id": _hex_colon(skid),
            "authority_key_id": _hex_colon(akid),
        }
        allowed_meta = entry.get("allowed_metadata_extensions")
        if allowed_meta:
            present = _extension_values(leaf)
            for oid in allowed_meta:
                if oid in present:
                    metadata[oid.replace(".", "-")] = present[oid]
        auth = Auth(
            display_name=entry.display_name,
            metadata=metadata,
            alias_name=metadata["common_name"],
            internal_data={
                "subject_key_id": base64.b64encode(skid).decode(),
                "authority_key_id": base64.b64encode(akid).decode(),
                "cert_sha256": hashlib.sha256(_der(leaf)).hexdigest(),
            },
        )
        if config["enable_identity_alias_metadata"]:
            auth.alias_metadata = dict(metadata)
        entry.token.apply(auth)
        return Response(auth=auth)

    async def _renew(self, req: Request, d: FieldData) -> Response | None:
        """Renew only for the certificate that logged in (unless ``disable_binding``), and while the entry lives."""
        if req.auth is None:
            raise UserError("request auth was nil")
        cert_name = str(req.auth.metadata.get("cert_name", ""))
        config = await self._load_config()
        self.ocsp.resize(config["ocsp_cache_size"])
        if not config["disable_binding"]:
            found = await self.verify(req.connection.client_cert_chain, cert_name)
            presented = hashlib.sha256(_der(found.leaf)).hexdigest()
            expected = str(req.auth.internal_data.get("cert_sha256", ""))
            if not expected or not hmac.compare_digest(presented, expected):
                raise PermissionDenied()
        entry = await self._load_entry(self.storage, cert_name)
        if entry is None:
            raise PermissionDenied()
        if not equivalent_policies(entry.token.policies, req.auth.token_policies or req.auth.policies):
            raise UserError("policies have changed, not renewing")
        auth = req.auth
        entry.token.apply_renewal(auth)
        return Response(auth=auth)


def _parse_crl(text: str) -> x509.CertificateRevocationList:
    raw = text.strip().encode()
    try:
        if raw.startswith(b"-----BEGIN"):
            return x509.load_pem_x509_crl(raw)
        try:
            return x509.load_der_x509_crl(raw)
        except ValueError:
            return x509.load_der_x509_crl(base64.b64decode(raw, validate=False))
    except ValueError as exc:
        raise UserError(f"failed to parse CRL: {exc}") from None


async def factory(config: BackendConfig, core: Core) -> CertBackend:
    """Build one cert mount."""
    return CertBackend(config, core)
