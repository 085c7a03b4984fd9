"""Vault's name policy for issued certificates: which CNs and SANs a role allows.

This is a line-by-line port of Vault's ``issuing/issue_common.go``
(``ValidateNames``, ``ValidateCommonName``, ``ValidateOtherSANs``,
``ValidateURISAN``, ``ValidateUserId``, ``ValidateSerialNumber`` and the name
half of ``GenerateCreationBundle``), because clients depend on exactly which
names pass and on the error texts. Deliberate differences, each safer or
friendlier:

- SAN order is the order the client gave (OpenBao), deduplicated, not sorted;
- ``allowed_ip_sans_cidr`` (OpenBao) restricts IP SANs from the API *and* from a
  CSR (GHSA-g892-p242-8g86 was the CSR path being skipped);
- identity templates resolve through a callback that refuses values containing
  ``*``, ``+`` or ``/`` (GHSA-59w7-v8rr-pr4p), so a crafted entity name cannot
  widen ``allowed_domains``.

Wildcards follow RFC 6125 as Vault reads it: one ``*`` in the left-most label, and
a wildcard passes ``allowed_domains`` only through ``allow_subdomains`` or a glob,
never through ``allow_bare_domains`` (CVE-2022-25243).
"""

from __future__ import annotations

import functools
import ipaddress
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.x509.oid import ExtensionOID, NameOID

from strongroom.engines.pki.roles import RoleEntry
from strongroom.logical.errors import UserError

# A resolver for identity templates in allowed_domains / allowed_uri_sans: the
# resolved text, or None when the template cannot be resolved (that entry is skipped).
TemplateResolver = Callable[[str], "str | None"]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_LABEL = r"([a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9\-]*[a-zA-Z0-9])"
_LEFT_WILD_LABEL = rf"(\*|\*{_LABEL}|{_LABEL}\*|{_LABEL}\*{_LABEL})"
# Vault's wildHostnameRegex; \Z because Python's $ also matches before a final newline
WILD_HOSTNAME_RE = re.compile(rf"^({_LEFT_WILD_LABEL}\.)?({_LABEL}\.)*{_LABEL}\.?\Z")

UTF8_STRING_TAG = 0x0C


class IdnaError(ValueError):
    """A name Go's ``idna`` profile (StrictDomainName, VerifyDNSLength) refuses."""


class OtherSanError(ValueError):
    """A malformed ``oid;UTF8:value`` other SAN."""


def go_quote(text: str) -> str:
    """Go's ``%q`` for the texts we quote (close enough: JSON escaping of a str)."""
    return json.dumps(text, ensure_ascii=False)


def go_glob(pattern: str, subject: str) -> bool:
    """``github.com/ryanuber/go-glob``: ``*`` matches any run of characters, dots included."""
    if pattern == "":
        return subject == pattern
    if pattern == "*":
        return True
    parts = pattern.split("*")
    if len(parts) == 1:
        return subject == pattern
    leading = pattern.startswith("*")
    trailing = pattern.endswith("*")
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


@functools.lru_cache(maxsize=4096)  # pure, and a request checks the same name several times
def to_ascii(name: str) -> str:
    """Go ``idna.New(StrictDomainName(true), VerifyDNSLength(true)).ToASCII``.

    No mapping is applied: ASCII labels pass unchanged (even with characters a host
    name cannot have; the hostname regex rejects those later), non-ASCII labels are
    punycoded. Empty inner labels, labels over 63 octets and names over 253 fail.
    """
    if name == "":
        raise IdnaError('idna: invalid label ""')
    labels = name.split(".")
    trailing_dot = len(labels) > 1 and labels[-1] == ""
    if trailing_dot:
        labels = labels[:-1]
    out: list[str] = []
    for label in labels:
        if label == "":
            raise IdnaError(f"idna: invalid label {go_quote(name)}")
        if not label.isascii():
            try:
                label = "xn--" + label.encode("punycode").decode("ascii")
            except UnicodeError:
                raise IdnaError(f"idna: invalid label {go_quote(label)}") from None
        if len(label) > 63:
            raise IdnaError(f"idna: invalid label {go_quote(label)}")
        out.append(label)
    result = ".".join(out) + ("." if trailing_dot else "")
    if len(result.rstrip(".")) > 253:
        raise IdnaError(f"idna: invalid label {go_quote(result)}")
    return result


def is_wildcard_domain(name: str) -> bool:
    return "*" in name


def split_wildcard(name: str) -> tuple[str, str]:
    """(wildcard label, reduced name); ValueError unless one ``*`` sits in the left label."""
    if name.count("*") > 1:
        raise ValueError("expected only one wildcard identifier in the given domain name")
    label, dot, rest = name.partition(".")
    if not dot:
        return label, ""
    if "*" in rest:
        raise ValueError("expected wildcard to only be present in left-most domain label")
    return label, rest


def _resolve(entry: str, enabled: bool, resolve: TemplateResolver | None) -> str | None:
    """An allowed_* entry after identity templating (None: skip this entry)."""
    if not enabled or "{{" not in entry or resolve is None:
        return entry
    return resolve(entry)


def validate_names(
    role: RoleEntry,
    names: Iterable[str],
    *,
    display_name: str = "",
    resolve: TemplateResolver | None = None,
) -> str:
    """Vault's ``ValidateNames``: the first name the role does not allow, or ``""``."""
    for name in names:
        if not _name_allowed(role, name, display_name, resolve):
            return name
    return ""


def _name_allowed(role: RoleEntry, name: str, display_name: str, resolve: TemplateResolver | None) -> bool:
    reduced = name
    email_domain = name
    wildcard_label = ""
    is_email = False
    is_wildcard = False
    if "@" in reduced:
        parts = reduced.split("@")
        if len(parts) != 2:
            return False
        reduced = email_domain = parts[1]
        is_email = True
    if is_wildcard_domain(reduced):
        is_wildcard = True
        if not role.allow_wildcard_certificates:
            return False
        try:
            wildcard_label, reduced = split_wildcard(reduced)
        except ValueError:
            return False
    if is_email and is_wildcard:
        return False

    if role.enforce_hostnames and reduced != "":
        try:
            converted = to_ascii(reduced)
        except IdnaError:
            return False
        if is_wildcard:
            converted = wildcard_label + "." + converted
        if not WILD_HOSTNAME_RE.match(converted):
            return False

    if role.allow_any_name:
        return True

    if role.allow_localhost:
        if reduced in ("localhost", "localdomain") or (
            is_email and email_domain in ("localhost", "localdomain")
        ):
            return True
        if role.allow_subdomains:
            for base in ("localhost", "localdomain"):
                if reduced.endswith("." + base) or (is_wildcard and reduced == base):
                    return True

    if role.allow_token_displayname and display_name:
        if name == display_name:
            return True
        if role.allow_subdomains:
            if is_email and "@" in display_name:
                split = display_name.split("@")
                if len(split) == 2 and reduced.endswith("." + split[1]):
                    return True
            if reduced.endswith("." + display_name) or (is_wildcard and reduced == display_name):
                return True

    for raw_domain in role.allowed_domains:
        if raw_domain == "":
            continue
        domain = _resolve(raw_domain, role.allowed_domains_template, resolve)
        if domain is None:
            continue
        if role.allow_bare_domains and (
            name.lower() == domain.lower() or (is_email and email_domain.lower() == domain.lower())
        ):
            return True
        if role.allow_subdomains and (
            reduced.endswith("." + domain) or (is_wildcard and reduced.lower() == domain.lower())
        ):
            return True
        if role.allow_glob_domains and "*" in domain and go_glob(domain.lower(), name.lower()):
            return True
    return False


def validate_common_name(
    role: RoleEntry, name: str, *, display_name: str = "", resolve: TemplateResolver | None = None
) -> str:
    """Vault's ``ValidateCommonName``: the name policy, then the ``cn_validations`` kinds."""
    if role.cn_validations == ["disabled"]:
        return ""
    if validate_names(role, [name], display_name=display_name, resolve=resolve):
        return name
    if not role.cn_validations:
        return ""
    wanted = "email" if "@" in name else "hostname"
    return "" if wanted in role.cn_validations else name


def validate_serial_number(role: RoleEntry, serial_number: str) -> str:
    """The subject serialNumber if ``allowed_serial_numbers`` refuses it, else ``""``."""
    for allowed in role.allowed_serial_numbers:
        if allowed == "":
            continue
        if ("*" in allowed and go_glob(allowed, serial_number)) or allowed == serial_number:
            return ""
    return serial_number


def validate_user_id(role: RoleEntry, user_id: str) -> bool:
    """``allowed_user_ids``: case-insensitive exact entries or globs; empty allows none."""
    allowed = role.allowed_user_ids
    if not allowed:
        return False
    if any(a.lower() == user_id.lower() for a in allowed):
        return True
    return any(a and "*" in a and go_glob(a, user_id) for a in allowed)


def validate_uri_san(role: RoleEntry, uri: str, resolve: TemplateResolver | None = None) -> bool:
    for raw in role.allowed_uri_sans:
        allowed = _resolve(raw, role.allowed_uri_sans_template, resolve)
        if allowed is not None and go_glob(allowed, uri):
            return True
    return False


def parse_other_sans(values: Iterable[str]) -> dict[str, list[str]]:
    """``oid;UTF8:value`` entries to {oid: [values]} (insertion-ordered)."""
    result: dict[str, list[str]] = {}
    for other in values:
        oid, semi, rest = other.partition(";")
        if not semi:
            raise OtherSanError(f"expected a semicolon in other SAN {go_quote(other)}")
        kind, colon, value = rest.partition(":")
        if not colon:
            raise OtherSanError(f"expected a colon in other SAN {go_quote(other)}")
        if kind.lower() not in ("utf8", "utf-8"):
            raise OtherSanError(
                f"only utf8 other SANs are supported; found non-supported type in other SAN {go_quote(other)}"
            )
        result.setdefault(oid, []).append(value)
    return result


def validate_other_sans(role: RoleEntry, requested: dict[str, list[str]]) -> tuple[str, str]:
    """(bad oid, bad value): ``("", "")`` when every requested other SAN is allowed."""
    if role.allowed_other_sans == ["*"]:
        return "", ""
    try:
        allowed = parse_other_sans(role.allowed_other_sans)
    except OtherSanError as err:
        raise UserError(f"error parsing role's allowed SANs: {err}") from None
    for oid, values in requested.items():
        for value in values:
            if oid not in allowed:
                return oid, ""
            if not any(go_glob(pattern, value) for pattern in allowed[oid]):
                return oid, value
    return "", ""


def ip_allowed_by_cidr(role: RoleEntry, ip: IPAddress) -> bool:
    """OpenBao's ``allowed_ip_sans_cidr``; an empty list allows every address."""
    if not role.allowed_ip_sans_cidr:
        return True
    for cidr in role.allowed_ip_sans_cidr:
        try:
            network = ipaddress.ip_network(cidr.strip(), strict=False)
        except ValueError:
            continue
        candidate: IPAddress = ip
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None and network.version == 4:
            candidate = ip.ipv4_mapped
        if candidate.version == network.version and candidate in network:
            return True
    return False


# -- the names of one request ------------------------------------------------------------------


@dataclass
class NameRequest:
    """The naming parameters of an issue/sign request, as the client sent them."""

    common_name: str = ""
    alt_names: list[str] = field(default_factory=list)
    alt_names_sent: bool = False
    ip_sans: list[str] = field(default_factory=list)
    uri_sans: list[str] = field(default_factory=list)
    other_sans: list[str] = field(default_factory=list)
    serial_number: str = ""
    user_ids: list[str] = field(default_factory=list)
    exclude_cn_from_sans: bool = False


@dataclass
class ResolvedNames:
    """What the certificate will carry, every entry already allowed by the role."""

    common_name: str = ""
    serial_number: str = ""
    dns_names: list[str] = field(default_factory=list)
    emails: list[str] = field(default_factory=list)
    ips: list[IPAddress] = field(default_factory=list)
    uris: list[str] = field(default_factory=list)
    other_sans: dict[str, list[str]] = field(default_factory=dict)
    user_ids: list[str] = field(default_factory=list)


@dataclass
class CsrNames:
    """The names a CSR asks for (subject CN, serialNumber, UIDs and its SAN extension)."""

    common_name: str = ""
    serial_number: str = ""
    user_ids: list[str] = field(default_factory=list)
    dns_names: list[str] = field(default_factory=list)
    emails: list[str] = field(default_factory=list)
    ips: list[IPAddress] = field(default_factory=list)
    uris: list[str] = field(default_factory=list)
    other_sans: list[str] = field(default_factory=list)  # "oid;UTF-8:value"

    @classmethod
    def from_csr(cls, csr: x509.CertificateSigningRequest) -> CsrNames:
        out = cls()
        # one pass over the subject and the extensions: each ``csr.subject`` access builds
        # a new Name, and a missing extension costs an exception in get_extension_for_class
        serials: list[str] = []
        cns: list[str] = []
        for attr in csr.subject:
            oid = attr.oid
            if oid == NameOID.COMMON_NAME:
                cns.append(str(attr.value))
            elif oid == NameOID.SERIAL_NUMBER:
                serials.append(str(attr.value))
            elif oid == NameOID.USER_ID:
                out.user_ids.append(str(attr.value))
        out.common_name = cns[0] if cns else ""
        out.serial_number = serials[0] if serials else ""
        san: x509.SubjectAlternativeName | None = None
        for ext in csr.extensions:
            if ext.oid == ExtensionOID.SUBJECT_ALTERNATIVE_NAME:
                san = ext.value
                break
        if san is None:
            return out
        for name in san:
            if isinstance(name, x509.DNSName):
                out.dns_names.append(name.value)
            elif isinstance(name, x509.RFC822Name):
                out.emails.append(name.value)
            elif isinstance(name, x509.IPAddress) and isinstance(
                name.value, ipaddress.IPv4Address | ipaddress.IPv6Address
            ):
                out.ips.append(name.value)
            elif isinstance(name, x509.UniformResourceIdentifier):
                out.uris.append(name.value)
            elif isinstance(name, x509.OtherName):
                out.other_sans.append(f"{name.type_id.dotted_string};UTF-8:{_other_name_utf8(name.value)}")
        return out


def _other_name_utf8(der: bytes) -> str:
    """The UTF8String inside an OtherName value (Vault supports no other kind)."""
    if len(der) < 2 or der[0] != UTF8_STRING_TAG:
        raise UserError("could not parse requested other SAN: no UTF-8 string found in OtherName")
    length = der[1]
    offset = 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4 or len(der) < 2 + count:
            raise UserError("could not parse requested other SAN: no UTF-8 string found in OtherName")
        length = int.from_bytes(der[2 : 2 + count], "big")
        offset = 2 + count
    if len(der) != offset + length:
        raise UserError("could not parse requested other SAN: no UTF-8 string found in OtherName")
    try:
        return der[offset:].decode("utf-8")
    except UnicodeDecodeError:
        raise UserError("could not parse requested other SAN: no UTF-8 string found in OtherName") from None


def _dedupe(values: Iterable[str]) -> list[str]:
    seen: set[str] = set()
    out: list[str] = []
    for value in values:
        if value and value not in seen:
            seen.add(value)
            out.append(value)
    return out


def resolve_names(
    role: RoleEntry,
    req: NameRequest,
    csr: CsrNames | None = None,
    *,
    display_name: str = "",
    resolve: TemplateResolver | None = None,
) -> ResolvedNames:
    """Decide the certificate's names and check each against the role (Vault's order).

    Any single refused name rejects the whole request with Vault's 400 text.
    """
    out = ResolvedNames()
    cn = csr.common_name if csr is not None and role.use_csr_common_name else ""
    if cn == "":
        cn = req.common_name
        if cn == "" and role.require_cn:
            raise UserError(
                'the common_name field is required, or must be provided in a CSR with "use_csr_common_name" '
                'set to true, unless "require_cn" is set to false'
            )
    out.common_name = cn

    serial = req.serial_number
    if serial == "" and csr is not None and role.serial_number_source in ("", "json-csr"):
        serial = csr.serial_number
    out.serial_number = serial

    use_csr_sans = csr is not None and role.use_csr_sans
    dns: list[str] = list(csr.dns_names) if use_csr_sans and csr is not None else []
    emails: list[str] = list(csr.emails) if use_csr_sans and csr is not None else []

    if cn and not req.exclude_cn_from_sans:
        if "@" in cn:
            emails.insert(0, cn)
        else:
            converted = _ascii_or_400(cn)
            if WILD_HOSTNAME_RE.match(converted):
                dns.insert(0, converted)

    if not use_csr_sans:
        for alt in _dedupe(a.strip() for a in req.alt_names):
            if "@" in alt:
                emails.append(alt)
                continue
            converted = _ascii_or_400(alt)
            if not WILD_HOSTNAME_RE.match(converted):
                raise UserError(
                    f"subject alternate name {alt} is not a valid DNS name and cannot be included as a SAN"
                )
            dns.append(converted)

    if cn and validate_common_name(role, cn, display_name=display_name, resolve=resolve):
        raise UserError(f"common name {cn} not allowed by this role")
    if serial and validate_serial_number(role, serial):
        raise UserError(f"serial_number {serial} not allowed by this role")
    bad = validate_names(role, dns, display_name=display_name, resolve=resolve)
    if bad:
        raise UserError(f"subject alternate name {bad} not allowed by this role")
    bad = validate_names(role, emails, display_name=display_name, resolve=resolve)
    if bad:
        raise UserError(f"email address {bad} not allowed by this role")
    out.dns_names = _dedupe(dns)
    out.emails = _dedupe(emails)

    other_input = list(req.other_sans)
    if use_csr_sans and csr is not None:
        other_input.extend(csr.other_sans)
    if other_input:
        try:
            requested = parse_other_sans(other_input)
        except OtherSanError as err:
            raise UserError(f"could not parse requested other SAN: {err}") from None
        bad_oid, bad_value = validate_other_sans(role, requested)
        if bad_value:
            raise UserError(f"other SAN {bad_value} not allowed for OID {bad_oid} by this role")
        if bad_oid:
            raise UserError(f"other SAN OID {bad_oid} not allowed by this role")
        out.other_sans = {oid: _dedupe(values) for oid, values in requested.items()}

    out.ips = _resolve_ips(role, req, csr if use_csr_sans else None)
    out.uris = _resolve_uris(role, req, csr if use_csr_sans else None, resolve)
    out.user_ids = _resolve_user_ids(role, req, csr)
    return out


def _ascii_or_400(name: str) -> str:
    try:
        return to_ascii(name)
    except IdnaError as err:
        raise UserError(str(err)) from None


def _resolve_ips(role: RoleEntry, req: NameRequest, csr: CsrNames | None) -> list[IPAddress]:
    ips: list[IPAddress] = []
    if csr is not None:
        if csr.ips and not role.allow_ip_sans:
            raise UserError(
                "IP Subject Alternative Names are not allowed in this role, but was provided some via CSR"
            )
        ips = list(csr.ips)
    else:
        given = [v.strip() for v in req.ip_sans if v.strip()]
        if given and not role.allow_ip_sans:
            raise UserError(
                f"IP Subject Alternative Names are not allowed in this role, but was provided [{' '.join(given)}]"
            )
        for value in given:
            try:
                ips.append(ipaddress.ip_address(value))
            except ValueError:
                raise UserError(f"the value {go_quote(value)} is not a valid IP address") from None
    for ip in ips:
        if not ip_allowed_by_cidr(role, ip):
            raise UserError(f"IP Subject Alternative Name {ip} not allowed by this role")
    out: list[IPAddress] = []
    for ip in ips:
        if ip not in out:
            out.append(ip)
    return out


def _resolve_uris(
    role: RoleEntry, req: NameRequest, csr: CsrNames | None, resolve: TemplateResolver | None
) -> list[str]:
    source = "CSR" if csr is not None else "the API"
    uris = list(csr.uris) if csr is not None else [u.strip() for u in req.uri_sans if u.strip()]
    if not uris:
        return []
    if not role.allowed_uri_sans:
        raise UserError(
            f"URI Subject Alternative Names are not allowed in this role, but were provided via {source}"
        )
    for uri in uris:
        if not validate_uri_san(role, uri, resolve):
            raise UserError(
                f"URI Subject Alternative Names were provided via {source} which are not valid for this role"
            )
        if csr is None:
            try:
                urlsplit(uri)
                x509.UniformResourceIdentifier(uri)
            except (ValueError, TypeError):
                raise UserError(
                    f"the provided URI Subject Alternative Name {go_quote(uri)} is not a valid URI"
                ) from None
    return _dedupe(uris)


def _resolve_user_ids(role: RoleEntry, req: NameRequest, csr: CsrNames | None) -> list[str]:
    user_ids = [u for u in req.user_ids if u != ""]
    if not user_ids and csr is not None:
        user_ids = list(csr.user_ids)
    for user_id in user_ids:
        if not validate_user_id(role, user_id):
            raise UserError(f"user_id {user_id} is not allowed by this role")
    return user_ids
