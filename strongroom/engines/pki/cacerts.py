"""Building CA material: subjects, SANs, name constraints, CA certificates and CSRs.

Pure functions over ``cryptography``; the issuer paths feed them request values.
Names follow Vault: key usages are Go's ``x509.KeyUsage`` names without the prefix,
other SANs are ``<oid>;UTF8:<value>``, ``not_after`` is ``YYYY-MM-DDTHH:MM:SSZ``.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import (
    AuthorityInformationAccessOID,
    ExtendedKeyUsageOID,
    NameOID,
    ObjectIdentifier,
    SignatureAlgorithmOID,
)

from strongroom.durations import format_duration
from strongroom.engines.pki.keys import PrivateKey, sign_certificate, sign_csr
from strongroom.engines.pki.store import AIAUrls
from strongroom.logical.errors import UserError

HOSTNAME_RE = re.compile(
    r"^(\*\.)?(([a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9\-]*[a-zA-Z0-9])\.)*"
    r"([A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9\-]*[A-Za-z0-9])\.?$"
)

KEY_USAGES = (
    "digitalsignature",
    "contentcommitment",
    "keyencipherment",
    "dataencipherment",
    "keyagreement",
    "certsign",
    "crlsign",
    "encipheronly",
    "decipheronly",
)
EXT_KEY_USAGES: dict[str, ObjectIdentifier] = {
    "any": ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE,
    "serverauth": ExtendedKeyUsageOID.SERVER_AUTH,
    "clientauth": ExtendedKeyUsageOID.CLIENT_AUTH,
    "codesigning": ExtendedKeyUsageOID.CODE_SIGNING,
    "emailprotection": ExtendedKeyUsageOID.EMAIL_PROTECTION,
    "ipsecendsystem": ObjectIdentifier("1.3.6.1.5.5.7.3.5"),
    "ipsectunnel": ObjectIdentifier("1.3.6.1.5.5.7.3.6"),
    "ipsecuser": ObjectIdentifier("1.3.6.1.5.5.7.3.7"),
    "timestamping": ExtendedKeyUsageOID.TIME_STAMPING,
    "ocspsigning": ExtendedKeyUsageOID.OCSP_SIGNING,
    "microsoftservergatedcrypto": ObjectIdentifier("1.3.6.1.4.1.311.10.3.3"),
    "netscapeservergatedcrypto": ObjectIdentifier("2.16.840.1.113730.4.1"),
    "microsoftcommercialcodesigning": ObjectIdentifier("1.3.6.1.4.1.311.2.1.22"),
    "microsoftkernelcodesigning": ObjectIdentifier("1.3.6.1.4.1.311.61.1.1"),
}
_SUBJECT_FIELDS = (
    ("country", NameOID.COUNTRY_NAME),
    ("province", NameOID.STATE_OR_PROVINCE_NAME),
    ("locality", NameOID.LOCALITY_NAME),
    ("street_address", NameOID.STREET_ADDRESS),
    ("postal_code", NameOID.POSTAL_CODE),
    ("organization", NameOID.ORGANIZATION_NAME),
    ("ou", NameOID.ORGANIZATIONAL_UNIT_NAME),
)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


# -- subject and SANs ---------------------------------------------------------------------


def build_subject(common_name: str, values: dict[str, Any]) -> x509.Name:
    """A subject in Go's order: C, ST, L, street, postalCode, O, OU, CN, serialNumber."""
    attrs: list[x509.NameAttribute[Any]] = []
    for name, oid in _SUBJECT_FIELDS:
        for item in values.get(name) or []:
            if item:
                attrs.append(x509.NameAttribute(oid, str(item)))
    if common_name:
        attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    serial = values.get("serial_number") or ""
    if serial:
        attrs.append(x509.NameAttribute(NameOID.SERIAL_NUMBER, str(serial)))
    try:
        return x509.Name([x509.RelativeDistinguishedName([a]) for a in attrs])
    except ValueError as err:
        raise UserError(f"invalid subject: {err}") from None


def _der_utf8(value: str) -> bytes:
    raw = value.encode()
    n = len(raw)
    if n < 0x80:
        length = bytes([n])
    else:
        size = (n.bit_length() + 7) // 8
        length = bytes([0x80 | size]) + n.to_bytes(size, "big")
    return b"\x0c" + length + raw


def parse_other_san(spec: str) -> x509.OtherName:
    """``<oid>;UTF8:<value>`` (Vault's only supported other-SAN type)."""
    oid_text, sep, rest = spec.partition(";")
    kind, sep2, value = rest.partition(":")
    if not sep or not sep2 or kind.strip().lower() not in ("utf8", "utf-8"):
        raise UserError(f"error parsing other SAN {spec!r}: expected the format <oid>;UTF8:<value>")
    try:
        oid = ObjectIdentifier(oid_text.strip())
    except ValueError:
        raise UserError(f"error parsing other SAN {spec!r}: invalid OID") from None
    return x509.OtherName(oid, _der_utf8(value))


def _dns_name(name: str) -> x509.DNSName:
    if not name.isascii():
        try:
            name = name.encode("idna").decode()
        except UnicodeError:
            raise UserError(f"invalid DNS name {name!r}") from None
    return x509.DNSName(name)


@dataclass
class SanParams:
    dns: list[str] = field(default_factory=list)
    emails: list[str] = field(default_factory=list)
    ips: list[str] = field(default_factory=list)
    uris: list[str] = field(default_factory=list)
    other: list[str] = field(default_factory=list)

    def general_names(self) -> list[x509.GeneralName]:
        names: list[x509.GeneralName] = [_dns_name(n) for n in self.dns]
        names += [x509.RFC822Name(e) for e in self.emails]
        for ip in self.ips:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(ip.strip())))
            except ValueError:
                raise UserError(f"the value {ip!r} is not a valid IP address") from None
        names += [x509.UniformResourceIdentifier(u) for u in self.uris]
        names += [parse_other_san(o) for o in self.other]
        return names

    def extension(self) -> x509.SubjectAlternativeName | None:
        names = self.general_names()
        return x509.SubjectAlternativeName(names) if names else None


def collect_sans(
    common_name: str,
    alt_names: str | Sequence[str],
    ip_sans: Sequence[str],
    uri_sans: Sequence[str],
    other_sans: Sequence[str],
    exclude_cn_from_sans: bool,
) -> SanParams:
    """Vault's SAN assembly: CN joins the DNS (or email) SANs unless excluded."""
    sans = SanParams()
    if common_name and not exclude_cn_from_sans:
        if "@" in common_name:
            sans.emails.append(common_name)
        elif HOSTNAME_RE.match(common_name):
            sans.dns.append(common_name)
    raw = alt_names.split(",") if isinstance(alt_names, str) else list(alt_names)
    for name in sorted({n.strip().lower() for n in raw if n.strip()}):
        (sans.emails if "@" in name else sans.dns).append(name)
    sans.dns = list(dict.fromkeys(sans.dns))
    sans.emails = list(dict.fromkeys(sans.emails))
    sans.ips = [i for i in ip_sans if i]
    sans.uris = [u for u in uri_sans if u]
    sans.other = [o for o in other_sans if o]
    return sans


# -- constraints and usages ---------------------------------------------------------------


def name_constraints(values: dict[str, Any]) -> x509.NameConstraints | None:
    """RFC 5280 name constraints from the permitted_*/excluded_* request fields."""

    def subtrees(prefix: str) -> list[x509.GeneralName]:
        out: list[x509.GeneralName] = []
        out += [_dns_name(d) for d in values.get(f"{prefix}_dns_domains") or []]
        for cidr in values.get(f"{prefix}_ip_ranges") or []:
            try:
                out.append(x509.IPAddress(ipaddress.ip_network(cidr, strict=False)))
            except ValueError:
                raise UserError(f"invalid IP range {cidr!r} in {prefix}_ip_ranges") from None
        out += [x509.RFC822Name(e) for e in values.get(f"{prefix}_email_addresses") or []]
        out += [x509.UniformResourceIdentifier(u) for u in values.get(f"{prefix}_uri_domains") or []]
        return out

    permitted, excluded = subtrees("permitted"), subtrees("excluded")
    if not permitted and not excluded:
        return None
    return x509.NameConstraints(permitted_subtrees=permitted or None, excluded_subtrees=excluded or None)


def key_usage(names: Sequence[str], base: Sequence[str] = ()) -> tuple[x509.KeyUsage | None, list[str]]:
    """A KeyUsage from Go names (case-insensitive); unknown names are returned as warnings."""
    chosen: set[str] = {b.lower() for b in base}
    unknown: list[str] = []
    for name in names:
        clean = name.strip().lower().removeprefix("keyusage")
        if clean in KEY_USAGES:
            chosen.add(clean)
        elif clean:
            unknown.append(name)
    if not chosen:
        return None, unknown
    agreement = "keyagreement" in chosen
    usage = x509.KeyUsage(
        digital_signature="digitalsignature" in chosen,
        content_commitment="contentcommitment" in chosen,
        key_encipherment="keyencipherment" in chosen,
        data_encipherment="dataencipherment" in chosen,
        key_agreement=agreement,
        key_cert_sign="certsign" in chosen,
        crl_sign="crlsign" in chosen,
        encipher_only=agreement and "encipheronly" in chosen,
        decipher_only=agreement and "decipheronly" in chosen,
    )
    return usage, unknown


def ext_key_usage(names: Sequence[str], oids: Sequence[str]) -> x509.ExtendedKeyUsage | None:
    usages: list[ObjectIdentifier] = []
    for name in names:
        clean = name.strip().lower().removeprefix("extkeyusage")
        if clean not in EXT_KEY_USAGES:
            raise UserError(f"unknown ext_key_usage {name!r}")
        usages.append(EXT_KEY_USAGES[clean])
    for text in oids:
        try:
            usages.append(ObjectIdentifier(text.strip()))
        except ValueError:
            raise UserError(f"invalid ext_key_usage_oids entry {text!r}") from None
    return x509.ExtendedKeyUsage(list(dict.fromkeys(usages))) if usages else None


# -- validity -----------------------------------------------------------------------------


def parse_not_after(text: str) -> dt.datetime:
    try:
        return dt.datetime.strptime(text.strip(), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
    except ValueError:
        raise UserError(f"failed to parse not_after {text!r}: expected YYYY-MM-DDTHH:MM:SSZ") from None


def validity(
    ttl: int, not_after: str, not_before_duration: int, default_ttl: int, max_ttl: int
) -> tuple[dt.datetime, dt.datetime, list[str]]:
    """(not_before, not_after, warnings) the way Vault computes them for CA material."""
    if ttl and not_after:
        raise UserError(
            "Either ttl or not_after should be provided. Both should not be provided in the same request."
        )
    now = utcnow()
    warnings: list[str] = []
    if not_after:
        end = parse_not_after(not_after)
    else:
        ttl = ttl or default_ttl
        if max_ttl and ttl > max_ttl:
            warnings.append(
                f'TTL "{format_duration(ttl)}" is longer than permitted maxTTL "{format_duration(max_ttl)}", '
                "so was truncated"
            )
            ttl = max_ttl
        end = now + dt.timedelta(seconds=ttl)
    start = now - dt.timedelta(seconds=max(0, not_before_duration))
    if end <= start:
        raise UserError("the requested validity period ends before it begins")
    return start, end, warnings


# -- certificates -------------------------------------------------------------------------


def aia_extensions(aia: AIAUrls | None) -> list[x509.ExtensionType]:
    if aia is None:
        return []
    out: list[x509.ExtensionType] = []
    descriptions = [
        x509.AccessDescription(AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(u))
        for u in aia.ocsp_servers
    ] + [
        x509.AccessDescription(AuthorityInformationAccessOID.CA_ISSUERS, x509.UniformResourceIdentifier(u))
        for u in aia.issuing_certificates
    ]
    if descriptions:
        out.append(x509.AuthorityInformationAccess(descriptions))
    if aia.crl_distribution_points:
        points = [
            x509.DistributionPoint([x509.UniformResourceIdentifier(u)], None, None, None)
            for u in aia.crl_distribution_points
        ]
        out.append(x509.CRLDistributionPoints(points))
    if aia.delta_crl_distribution_points:
        points = [
            x509.DistributionPoint([x509.UniformResourceIdentifier(u)], None, None, None)
            for u in aia.delta_crl_distribution_points
        ]
        out.append(x509.FreshestCRL(points))
    return out


@dataclass
class CASpec:
    """What goes into a CA certificate besides the keys."""

    subject: x509.Name
    not_before: dt.datetime
    not_after: dt.datetime
    max_path_length: int = -1
    sans: SanParams = field(default_factory=SanParams)
    constraints: x509.NameConstraints | None = None
    key_usage: x509.KeyUsage | None = None
    ext_key_usage: x509.ExtendedKeyUsage | None = None
    aia: AIAUrls | None = None
    skid: bytes | None = None
    signature_bits: int = 0
    use_pss: bool = False


def build_ca_certificate(
    spec: CASpec,
    public_key: CertificatePublicKeyTypes,
    signer_key: PrivateKey,
    signer_cert: x509.Certificate | None = None,
) -> x509.Certificate:
    """A CA certificate; self-signed when ``signer_cert`` is None. Serial: 159 random bits."""
    skid = (
        x509.SubjectKeyIdentifier(spec.skid)
        if spec.skid
        else x509.SubjectKeyIdentifier.from_public_key(public_key)
    )
    if signer_cert is None:
        issuer_name = spec.subject
        akid = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(skid)
    else:
        issuer_name = signer_cert.subject
        try:
            parent_skid = signer_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
            akid = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(parent_skid)
        except x509.ExtensionNotFound:
            akid = x509.AuthorityKeyIdentifier.from_issuer_public_key(signer_cert.public_key())  # type: ignore[arg-type]
    path_len = None if spec.max_path_length < 0 else spec.max_path_length
    builder = (
        x509.CertificateBuilder()
        .subject_name(spec.subject)
        .issuer_name(issuer_name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(spec.not_before)
        .not_valid_after(spec.not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_len), critical=True)
        .add_extension(skid, critical=False)
        .add_extension(akid, critical=False)
    )
    usage = spec.key_usage or key_usage([], ["certsign", "crlsign"])[0]
    builder = builder.add_extension(usage, critical=True)  # type: ignore[arg-type]
    if spec.ext_key_usage is not None:
        builder = builder.add_extension(spec.ext_key_usage, critical=False)
    san = spec.sans.extension()
    if san is not None:
        builder = builder.add_extension(san, critical=False)
    if spec.constraints is not None:
        builder = builder.add_extension(spec.constraints, critical=False)
    for ext in aia_extensions(spec.aia):
        builder = builder.add_extension(ext, critical=False)
    return sign_certificate(builder, signer_key, spec.signature_bits, spec.use_pss)


def build_csr(
    subject: x509.Name,
    key: PrivateKey,
    sans: SanParams,
    add_basic_constraints: bool,
    usage: x509.KeyUsage | None,
    signature_bits: int = 0,
) -> x509.CertificateSigningRequest:
    builder = x509.CertificateSigningRequestBuilder().subject_name(subject)
    san = sans.extension()
    if san is not None:
        builder = builder.add_extension(san, critical=False)
    if add_basic_constraints:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    if usage is not None:
        builder = builder.add_extension(usage, critical=True)
    return sign_csr(builder, key, signature_bits)


def csr_sans(csr: x509.CertificateSigningRequest) -> SanParams:
    """The SANs a CSR asks for."""
    try:
        ext = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return SanParams()
    sans = SanParams(
        dns=ext.get_values_for_type(x509.DNSName),
        emails=ext.get_values_for_type(x509.RFC822Name),
        ips=[str(i) for i in ext.get_values_for_type(x509.IPAddress)],
        uris=ext.get_values_for_type(x509.UniformResourceIdentifier),
    )
    return sans


def csr_other_names(csr: x509.CertificateSigningRequest) -> list[x509.OtherName]:
    try:
        ext = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return list(ext.get_values_for_type(x509.OtherName))


def resign_self_issued(
    cert: x509.Certificate, signer_cert: x509.Certificate, signer_key: PrivateKey, aia: AIAUrls
) -> x509.Certificate:
    """Re-sign a self-issued CA certificate: only issuer DN, AKID and distribution points change."""
    replaced = (
        x509.AuthorityKeyIdentifier,
        x509.AuthorityInformationAccess,
        x509.CRLDistributionPoints,
        x509.FreshestCRL,
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(cert.subject)
        .issuer_name(signer_cert.subject)
        .public_key(cert.public_key())
        .serial_number(cert.serial_number)
        .not_valid_before(cert.not_valid_before_utc)
        .not_valid_after(cert.not_valid_after_utc)
    )
    for ext in cert.extensions:
        if not isinstance(ext.value, replaced):
            builder = builder.add_extension(ext.value, critical=ext.critical)
    try:
        parent_skid = signer_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(parent_skid), critical=False
        )
    except x509.ExtensionNotFound:
        pass
    for ext_value in aia_extensions(aia):
        builder = builder.add_extension(ext_value, critical=False)
    return sign_certificate(builder, signer_key)


def path_length_of(cert: x509.Certificate) -> int | None:
    """The pathLenConstraint of a CA certificate (None: unconstrained or not a CA)."""
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length
    except x509.ExtensionNotFound:
        return None


def is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


GO_SIGNATURE_NAMES: dict[ObjectIdentifier, str] = {
    SignatureAlgorithmOID.RSA_WITH_SHA256: "SHA256WithRSA",
    SignatureAlgorithmOID.RSA_WITH_SHA384: "SHA384WithRSA",
    SignatureAlgorithmOID.RSA_WITH_SHA512: "SHA512WithRSA",
    SignatureAlgorithmOID.ECDSA_WITH_SHA256: "ECDSAWithSHA256",
    SignatureAlgorithmOID.ECDSA_WITH_SHA384: "ECDSAWithSHA384",
    SignatureAlgorithmOID.ECDSA_WITH_SHA512: "ECDSAWithSHA512",
    SignatureAlgorithmOID.ED25519: "PureEd25519",
}


def go_signature_name(cert: x509.Certificate) -> str:
    """Go's certutil name of a certificate's signature algorithm (PSS included)."""
    oid = cert.signature_algorithm_oid
    if oid == SignatureAlgorithmOID.RSASSA_PSS:
        algorithm = cert.signature_hash_algorithm
        bits = algorithm.digest_size * 8 if algorithm is not None else 256
        return f"SHA{bits}WithRSAPSS"
    return GO_SIGNATURE_NAMES.get(oid, "")
