"""PKI roles: the issuance policy a client is held to, with Vault's defaults and checks.

A role is stored at ``role/<name>`` as the JSON of :class:`RoleEntry` (our own field
names; nothing but this engine reads it). Behaviour that clients depend on:

- ``POST roles/:name`` *replaces* the role: every omitted field takes its default
  (:func:`role_from_input` with no base); ``PATCH`` merges over the stored role;
- reads return durations as integer seconds and list fields as JSON lists
  (:func:`role_response`), the shape Vault's ``ToResponseData`` has;
- ``key_bits=0`` is stored as the effective size (RSA 2048, EC 256) and RSA's
  ``signature_bits=0`` as 256, as Vault's ``validateRole`` rewrites them, so a read
  after a write shows what issuance will use.

Everything here is pure: no storage, no clock. Error texts are Vault's, because
clients and tests match on them.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from strongroom.logical.errors import UserError

DEFAULT_KEY_USAGE: tuple[str, ...] = ("DigitalSignature", "KeyAgreement", "KeyEncipherment")
DEFAULT_CN_VALIDATIONS: tuple[str, ...] = ("email", "hostname")
KEY_TYPES = ("rsa", "ec", "ed25519", "any")
RSA_KEY_BITS = (2048, 3072, 4096, 8192)
EC_KEY_BITS = (224, 256, 384, 521)
SIGNATURE_BITS = (256, 384, 512)

GENERATE_LEASE_WARNING = (
    "it is encouraged to disable generate_lease and rely on PKI's native capabilities when possible; "
    "this option can cause Vault-wide issues with large numbers of issued certificates"
)
NO_STORE_LEASE_WARNING = (
    "mutually exclusive values no_store=true and generate_lease=true were both specified; "
    "no_store=true takes priority"
)

_OID_RE = re.compile(r"^[0-9]+(\.[0-9]+)+$")


@dataclass
class RoleEntry:
    """Every role parameter of Vault's PKI engine, with Vault's defaults."""

    ttl: int = 0  # seconds; 0 falls back to the mount's default lease TTL
    max_ttl: int = 0  # seconds; 0 falls back to the mount's max lease TTL
    allow_localhost: bool = True
    allowed_domains: list[str] = field(default_factory=list)
    allowed_domains_template: bool = False
    allow_bare_domains: bool = False
    allow_subdomains: bool = False
    allow_glob_domains: bool = False
    allow_wildcard_certificates: bool = True
    allow_any_name: bool = False
    allow_token_displayname: bool = False
    enforce_hostnames: bool = True
    allow_ip_sans: bool = True
    allowed_ip_sans_cidr: list[str] = field(default_factory=list)  # OpenBao; empty: any address
    allowed_uri_sans: list[str] = field(default_factory=list)
    allowed_uri_sans_template: bool = False
    allowed_other_sans: list[str] = field(default_factory=list)
    allowed_serial_numbers: list[str] = field(default_factory=list)
    allowed_user_ids: list[str] = field(default_factory=list)
    server_flag: bool = True
    client_flag: bool = True
    code_signing_flag: bool = False
    email_protection_flag: bool = False
    key_type: str = "rsa"
    key_bits: int = 0
    signature_bits: int = 0
    use_pss: bool = False
    key_usage: list[str] = field(default_factory=lambda: list(DEFAULT_KEY_USAGE))
    ext_key_usage: list[str] = field(default_factory=list)
    ext_key_usage_oids: list[str] = field(default_factory=list)
    use_csr_common_name: bool = True
    use_csr_sans: bool = True
    serial_number_source: str = "json-csr"
    ou: list[str] = field(default_factory=list)
    organization: list[str] = field(default_factory=list)
    country: list[str] = field(default_factory=list)
    locality: list[str] = field(default_factory=list)
    province: list[str] = field(default_factory=list)
    street_address: list[str] = field(default_factory=list)
    postal_code: list[str] = field(default_factory=list)
    generate_lease: bool = False
    no_store: bool = False
    no_store_metadata: bool = False
    require_cn: bool = True
    cn_validations: list[str] = field(default_factory=lambda: list(DEFAULT_CN_VALIDATIONS))
    policy_identifiers: list[str] = field(default_factory=list)
    basic_constraints_valid_for_non_ca: bool = False
    not_before_duration: int = 30  # seconds NotBefore is backdated
    not_after: str = ""  # fixed NotAfter, RFC 3339
    issuer_ref: str = "default"
    max_path_length: int | None = None  # hidden in Vault; only shown when set

    # -- storage ------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> RoleEntry:
        """Load a stored role; unknown keys are ignored, missing ones take the defaults."""
        known = {f.name for f in fields(cls)}
        entry = cls(**{k: v for k, v in raw.items() if k in known})
        if not entry.issuer_ref:
            entry.issuer_ref = "default"
        if not entry.cn_validations:
            entry.cn_validations = list(DEFAULT_CN_VALIDATIONS)
        return entry

    def copy(self) -> RoleEntry:
        """A copy to adjust for one request: scalars are shared, lists and dicts rebuilt."""
        clone = object.__new__(type(self))  # no __init__: every field is copied below
        state = dict(self.__dict__)
        for f in _CONTAINER_FIELDS:
            value = state.get(f)
            if isinstance(value, list):
                state[f] = list(value)
            elif isinstance(value, dict):
                state[f] = dict(value)
        clone.__dict__.update(state)
        return clone


_CONTAINER_FIELDS: tuple[str, ...] = tuple(
    f.name for f in fields(RoleEntry) if "list" in str(f.type) or "dict" in str(f.type)
)

# Field names a client may set on ``roles/:name`` (the same names as RoleEntry's).
ROLE_PARAMETERS: tuple[str, ...] = tuple(f.name for f in fields(RoleEntry) if f.name != "max_path_length")


def role_response(role: RoleEntry) -> dict[str, Any]:
    """The ``data`` of a role read or write, shaped like Vault's ``ToResponseData``."""
    out = {name: getattr(role, name) for name in ROLE_PARAMETERS}
    for name, value in out.items():
        if isinstance(value, list):
            out[name] = list(value)
    if role.max_path_length is not None:
        out["max_path_length"] = role.max_path_length
    return out


# -- building a role from request input ------------------------------------------------------


def role_from_input(sent: Mapping[str, Any], base: RoleEntry | None = None) -> tuple[RoleEntry, list[str]]:
    """Apply the parameters a client sent over ``base`` (PATCH) or the defaults (POST).

    ``sent`` holds only the parameters present in the request, already coerced by the
    path's field declarations (durations as seconds, comma lists as lists).
    ``policy_identifiers`` may still be raw (a JSON string of qualifier objects).
    Returns the validated role and the warnings Vault attaches to the write.
    """
    entry = base.copy() if base is not None else RoleEntry()
    lease_sent = "generate_lease" in sent
    for name, value in sent.items():
        if name not in ROLE_PARAMETERS or value is None:
            continue
        if name == "policy_identifiers":
            value = parse_policy_identifiers(value)
        elif name == "allowed_other_sans":
            value = [str(v) for v in value]
            check_allowed_other_sans(value)
        elif isinstance(getattr(entry, name), list):
            value = [str(v) for v in value]
        setattr(entry, name, value)
    if not entry.issuer_ref:
        entry.issuer_ref = "default"

    warnings: list[str] = []
    requested_lease = bool(sent["generate_lease"]) if lease_sent else entry.generate_lease
    if entry.no_store:
        entry.generate_lease = False
        if requested_lease:
            warnings.append(NO_STORE_LEASE_WARNING)
    elif entry.generate_lease:
        warnings.append(GENERATE_LEASE_WARNING)
    validate_role(entry)
    return entry, warnings


def validate_role(entry: RoleEntry) -> None:
    """Vault's ``validateRole``: reject bad combinations and normalise key sizes in place."""
    if entry.max_ttl > 0 and entry.ttl > entry.max_ttl:
        raise UserError('"ttl" value must be less than "max_ttl" value')
    entry.key_type = entry.key_type.strip().lower() if entry.key_type else "rsa"
    entry.key_bits, entry.signature_bits = key_type_signature_defaults(
        entry.key_type, entry.key_bits, entry.signature_bits
    )
    if entry.serial_number_source not in ("", "json-csr", "json"):
        raise UserError(f"unknown serial_number_source {entry.serial_number_source}")
    if not entry.serial_number_source:
        entry.serial_number_source = "json-csr"
    for oid in entry.ext_key_usage_oids:
        if not _OID_RE.match(oid.strip()):
            raise UserError(f"{json.dumps(oid)} could not be parsed as a valid oid for an extended key usage")
    for policy in entry.policy_identifiers:
        policy_oid(policy)
    for cidr in entry.allowed_ip_sans_cidr:
        try:
            ipaddress.ip_network(cidr.strip(), strict=False)
        except ValueError:
            raise UserError(f"invalid CIDR in allowed_ip_sans_cidr: {cidr}") from None
    if entry.not_before_duration < 0:
        raise UserError("not_before_duration must not be negative")
    entry.cn_validations = check_cn_validations(entry.cn_validations)


def key_type_signature_defaults(key_type: str, key_bits: int, signature_bits: int) -> tuple[int, int]:
    """Vault's ``ValidateDefaultOrValueKeyTypeSignatureLength``: effective (key_bits, signature_bits)."""
    if key_bits == 0:
        key_bits = {"rsa": 2048, "ec": 256}.get(key_type, 0)
    if key_type == "rsa":
        if key_bits < 2048:
            raise UserError(f"RSA keys < 2048 bits are unsafe and not supported: got {key_bits}")
        if key_bits not in RSA_KEY_BITS:
            raise UserError(f"unsupported bit length for RSA key: {key_bits}")
        if signature_bits == 0:
            signature_bits = 256
        if signature_bits not in SIGNATURE_BITS:
            raise UserError(f"unsupported hash signature algorithm: {signature_bits}")
    elif key_type == "ec":
        if key_bits not in EC_KEY_BITS:
            raise UserError(f"unsupported bit length for EC key: {key_bits}")
    elif key_type in ("ed25519", "any"):
        # Ed25519 hashes internally and "any" cannot know its hash yet: Vault stores 0
        signature_bits = 0
    else:
        raise UserError(f"unknown key type {key_type}")
    return key_bits, signature_bits


def check_cn_validations(validations: list[str]) -> list[str]:
    """Vault's ``checkCNValidations``: email/hostname in any combination, or ``disabled`` alone."""
    if not validations:
        return list(DEFAULT_CN_VALIDATIONS)
    seen: set[str] = set()
    out: list[str] = []
    for raw in validations:
        value = raw.lower()
        if value not in ("disabled", "email", "hostname"):
            raise UserError(f"cn_validations value incorrect: unknown type: `{raw}`")
        if value in seen:
            raise UserError(f"cn_validations value incorrect: `{value}` specified multiple times")
        seen.add(value)
        out.append(value)
    if "disabled" in seen and len(seen) > 1:
        raise UserError(
            "cn_validations value incorrect: cannot specify `disabled` along with `email` or `hostname`"
        )
    return out


def check_allowed_other_sans(values: list[str]) -> None:
    """A lone ``*`` allows anything; otherwise every entry must parse as ``oid;UTF8:value``."""
    if not values or values == ["*"]:
        return
    from strongroom.engines.pki.names import OtherSanError, parse_other_sans

    try:
        parse_other_sans(values)
    except OtherSanError as err:
        raise UserError(f"error parsing allowed_other_sans: {err}") from None


# -- policy identifiers ------------------------------------------------------------------------


def parse_policy_identifiers(raw: Any) -> list[str]:
    """Accept OIDs (a list or comma string) or qualified entries (a JSON list of objects).

    Qualified entries are kept as compact JSON strings ``{"oid":..,"cps":..,"notice":..}``
    the way Vault stores them; plain OIDs stay plain strings.
    """
    if raw is None:
        return []
    if isinstance(raw, str):
        text = raw.strip()
        if text.startswith("["):
            try:
                decoded = json.loads(text)
            except ValueError:
                decoded = None
            if isinstance(decoded, list):
                return parse_policy_identifiers(decoded)
        return [part.strip() for part in text.split(",") if part.strip()]
    if isinstance(raw, Mapping):
        return [_policy_json(raw)]
    if isinstance(raw, list | tuple):
        out: list[str] = []
        for item in raw:
            if isinstance(item, Mapping):
                out.append(_policy_json(item))
            elif isinstance(item, str) and item.strip():
                out.append(item.strip())
            elif item is not None and not isinstance(item, str):
                raise UserError("policy_identifiers must be OIDs or objects with an oid")
        return out
    raise UserError("policy_identifiers must be OIDs or objects with an oid")


def _policy_json(entry: Mapping[str, Any]) -> str:
    oid = str(entry.get("oid", "")).strip()
    out: dict[str, str] = {"oid": oid}
    for key in ("cps", "notice"):
        if entry.get(key):
            out[key] = str(entry[key])
    return json.dumps(out, separators=(",", ":"))


def policy_oid(policy: str) -> tuple[str, str, str]:
    """(oid, cps url, user notice) of one stored policy identifier; UserError if malformed."""
    text = policy.strip()
    cps = notice = ""
    if text.startswith("{"):
        try:
            decoded = json.loads(text)
        except ValueError:
            raise UserError(f"invalid policy identifier: {policy}") from None
        text = str(decoded.get("oid", "")).strip()
        cps = str(decoded.get("cps", "") or "")
        notice = str(decoded.get("notice", "") or "")
    if not _OID_RE.match(text):
        raise UserError(f"invalid policy identifier: {policy}")
    return text, cps, notice
