"""Building and signing leaf certificates for issue/, sign/ and sign-verbatim/.

Pure: the caller loads the role and the :class:`~strongroom.engines.pki.store.SigningIssuer`
and stores the result; nothing here touches storage. The flow follows Vault's
``SignCert`` / ``GenerateCreationBundle`` / ``certutil.createCertificate``:

1. for a CSR: parse it (first PEM block), check its self-signature and that its key
   fits the role (:func:`parse_csr`, :func:`check_csr_key`);
2. decide the names (:func:`strongroom.engines.pki.names.resolve_names`) and the
   validity (:func:`compute_validity`: request ttl → role ttl → mount default,
   capped by role max_ttl → mount max with Vault's warning, then the issuer's
   ``leaf_not_after_behavior``);
3. build the whole certificate with one ``CertificateBuilder`` and sign it once with
   the issuer key (:func:`build_certificate`);
4. shape the response exactly as Vault does (:func:`response_data`).

RSA key generation for issue/ runs in a worker thread so the event loop keeps serving.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime as dt
import functools
import re
import warnings
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, ExtensionOID, NameOID

from strongroom.durations import format_duration
from strongroom.engines.pki.keys import (
    PrivateKey,
    export_private_key,
    generate_key_async,
    key_type_name,
    sign_certificate,
)
from strongroom.engines.pki.names import CsrNames, NameRequest, ResolvedNames, resolve_names
from strongroom.engines.pki.roles import RoleEntry, policy_oid
from strongroom.engines.pki.store import SigningIssuer, cert_pem, serial_to_str
from strongroom.logical.errors import UserError

FORMATS = ("pem", "der", "pem_bundle")
PRIVATE_KEY_FORMATS = ("", "der", "pem", "pkcs8")
BC_IGNORED_WARNING = "specified CSR contained a Basic Constraints extension that was ignored during issuance"
CA_CSR_REFUSED = "refusing to accept CSR with Basic Constraints extension with CA set to true"
EMPTY_PUBLIC_KEY = (
    "Refusing to sign CSR with empty PublicKey. This usually means the SubjectPublicKeyInfo field has an OID "
    "not recognized by Go, such as 1.2.840.113549.1.1.10 for rsaPSS."
)

_KEY_USAGES = {
    "digitalsignature": "digital_signature",
    "contentcommitment": "content_commitment",
    "keyencipherment": "key_encipherment",
    "dataencipherment": "data_encipherment",
    "keyagreement": "key_agreement",
    "certsign": "key_cert_sign",
    "crlsign": "crl_sign",
    "encipheronly": "encipher_only",
    "decipheronly": "decipher_only",
}
# Go's ExtKeyUsage names, in the order Vault's AddKeyUsages emits them
_EXT_KEY_USAGES: tuple[tuple[str, x509.ObjectIdentifier], ...] = (
    ("any", ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE),
    ("serverauth", ExtendedKeyUsageOID.SERVER_AUTH),
    ("clientauth", ExtendedKeyUsageOID.CLIENT_AUTH),
    ("codesigning", ExtendedKeyUsageOID.CODE_SIGNING),
    ("emailprotection", ExtendedKeyUsageOID.EMAIL_PROTECTION),
    ("ipsecendsystem", x509.ObjectIdentifier("1.3.6.1.5.5.7.3.5")),
    ("ipsectunnel", x509.ObjectIdentifier("1.3.6.1.5.5.7.3.6")),
    ("ipsecuser", x509.ObjectIdentifier("1.3.6.1.5.5.7.3.7")),
    ("timestamping", ExtendedKeyUsageOID.TIME_STAMPING),
    ("ocspsigning", ExtendedKeyUsageOID.OCSP_SIGNING),
    ("microsoftservergatedcrypto", x509.ObjectIdentifier("1.3.6.1.4.1.311.10.3.3")),
    ("netscapeservergatedcrypto", x509.ObjectIdentifier("2.16.840.1.113730.4.1")),
)
# CSR extensions sign-verbatim never copies: the CA decides these itself
_CA_OWNED_EXTENSIONS = {
    ExtensionOID.BASIC_CONSTRAINTS,
    ExtensionOID.SUBJECT_KEY_IDENTIFIER,
    ExtensionOID.AUTHORITY_KEY_IDENTIFIER,
    ExtensionOID.AUTHORITY_INFORMATION_ACCESS,
    ExtensionOID.CRL_DISTRIBUTION_POINTS,
    ExtensionOID.SUBJECT_ALTERNATIVE_NAME,
}
_PEM_BLOCK = re.compile(r"-----BEGIN ([^\r\n-]*)-----\r?\n(.*?)-----END \1-----", re.DOTALL)


@dataclass
class IssueInput:
    """An issue/sign request, minus the CSR."""

    names: NameRequest = field(default_factory=NameRequest)
    ttl: int = 0
    not_after: str = ""
    format: str = "pem"
    private_key_format: str = "der"
    remove_roots_from_chain: bool = False


@dataclass
class Validity:
    not_before: dt.datetime
    not_after: dt.datetime
    warnings: list[str] = field(default_factory=list)


@dataclass
class Issued:
    """A signed certificate and what the response needs besides the issuer."""

    certificate: x509.Certificate
    private_key: PrivateKey | None = None
    warnings: list[str] = field(default_factory=list)


# -- validity -------------------------------------------------------------------------------


def go_rfc3339(moment: dt.datetime) -> str:
    """Go's ``time.RFC3339Nano`` of a UTC time (fraction trimmed, ``Z``)."""
    moment = moment.astimezone(dt.UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond:
        text += "." + f"{moment.microsecond:06d}".rstrip("0")
    return text + "Z"


def parse_rfc3339(text: str) -> dt.datetime:
    """Go's ``time.Parse(time.RFC3339, ...)``: a date, ``T``, a time and a zone are required."""
    ok = re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})", text.strip())
    try:
        if ok is None:
            raise ValueError(text)
        return dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00")).astimezone(dt.UTC)
    except ValueError:
        raise UserError(
            f'parsing time "{text}" as "2006-01-02T15:04:05Z07:00": cannot parse "{text}" as "2006"'
        ) from None


def compute_validity(
    role: RoleEntry,
    ttl: int,
    not_after: str,
    issuer: SigningIssuer,
    mount_default_ttl: int,
    mount_max_ttl: int,
    now: dt.datetime | None = None,
) -> Validity:
    """Vault's ``GetCertificateNotAfter`` plus the issuer's ``leaf_not_after_behavior``.

    A TTL above the cap is lowered with a warning (never an error); a NotAfter past
    the issuer's is an error (``err``), clamped (``truncate``) or kept (``permit``).
    """
    now = (now or dt.datetime.now(dt.UTC)).replace(microsecond=0)
    warnings: list[str] = []
    fixed = role.not_after or not_after
    if ttl > 0 and fixed:
        raise UserError(
            "Either ttl or not_after should be provided. Both should not be provided in the same request."
        )
    if ttl == 0 and role.ttl > 0:
        ttl = role.ttl
    max_ttl = role.max_ttl if role.max_ttl > 0 else mount_max_ttl
    if ttl == 0:
        ttl = mount_default_ttl
    if max_ttl > 0 and ttl > max_ttl:
        warnings.append(
            f'TTL "{format_duration(ttl)}" is longer than permitted maxTTL "{format_duration(max_ttl)}", '
            "so maxTTL is being used"
        )
        ttl = max_ttl
    end = parse_rfc3339(fixed) if fixed else now + dt.timedelta(seconds=ttl)
    end = end.replace(microsecond=0)

    ca_start, ca_end = _issuer_validity(issuer)
    if end > ca_end:
        behavior = issuer.leaf_not_after_behavior
        if behavior == "permit":
            pass
        elif behavior == "truncate":
            end = ca_end
        else:
            raise UserError(
                f"cannot satisfy request, as TTL would result in notAfter of {go_rfc3339(end)} that is beyond "
                f"the expiration of the CA certificate at {go_rfc3339(ca_end)}"
            )
    start = now - dt.timedelta(seconds=role.not_before_duration)
    if end < start:
        raise UserError("notAfter before notBefore")
    if start < ca_start:
        raise UserError("notBefore before signer's notBefore")
    return Validity(start, end, warnings)


def _issuer_validity(issuer: SigningIssuer) -> tuple[dt.datetime, dt.datetime]:
    """The issuer certificate's (NotBefore, NotAfter), read once per cached issuer."""
    cached = issuer.derived.get("validity")
    if cached is None:
        cert = issuer.certificate
        cached = issuer.derived["validity"] = (cert.not_valid_before_utc, cert.not_valid_after_utc)
    return cached


# -- CSRs -----------------------------------------------------------------------------------


def parse_csr(text: str) -> x509.CertificateSigningRequest:
    """The first PEM block of ``text`` as a CSR whose self-signature verifies (Vault's texts)."""
    return _parse_csr(text)[0]


def _parse_csr(text: str) -> tuple[x509.CertificateSigningRequest, Any]:
    """:func:`parse_csr` and the CSR's public key, taken out once."""
    if text.strip() == "":
        raise UserError('"csr" is empty')
    match = _PEM_BLOCK.search(text)
    der = b""
    if match is not None:
        try:
            der = base64.b64decode("".join(match.group(2).split()), validate=True)
        except (binascii.Error, ValueError):
            der = b""
    if not der:
        raise UserError("csr contains no data")
    try:
        csr = x509.load_der_x509_csr(der)
        _ = csr.extensions  # parse them now: a malformed extension is a malformed request
    except (ValueError, TypeError) as err:
        raise UserError(f"certificate request could not be parsed: {err}") from None
    try:
        public_key = csr.public_key()
    except (ValueError, UnsupportedAlgorithm):
        raise UserError(EMPTY_PUBLIC_KEY) from None
    try:
        valid = csr.is_signature_valid
    except (ValueError, UnsupportedAlgorithm):
        valid = False
    if not valid:
        raise UserError("request signature invalid")
    return csr, public_key


def csr_key_kind(public_key: Any) -> tuple[str, int]:
    """(Vault key type, bits) of a CSR's public key."""
    if isinstance(public_key, rsa.RSAPublicKey):
        return "rsa", public_key.key_size
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return "ec", public_key.curve.key_size
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return "ed25519", 0
    if isinstance(public_key, dsa.DSAPublicKey):
        return "DSA", public_key.key_size
    if isinstance(public_key, ed448.Ed448PublicKey):
        return "Ed448", 0
    return "unknown", 0


def check_csr_key(role: RoleEntry, csr: x509.CertificateSigningRequest) -> RoleEntry:
    """Vault's key checks of ``SignCert``; returns the role with key_bits fixed up for ``any``.

    The role comes back unchanged (the same object) unless it had to be fixed up; then
    it is a copy, so a shared (cached) role is never modified.
    """
    return _check_csr_key(role, csr.public_key())


def _check_csr_key(role: RoleEntry, public_key: Any) -> RoleEntry:
    actual, bits = csr_key_kind(public_key)
    if role.key_type in ("rsa", "ec", "ed25519"):
        if actual != role.key_type:
            raise UserError(f"role requires keys of type {role.key_type}")
    elif role.key_type == "any":
        if actual == "rsa" and bits < 2048:
            raise UserError("RSA keys < 2048 bits are unsafe and not supported")
        if actual not in ("rsa", "ec", "ed25519"):
            raise UserError(f"Unknown key type in CSR: {actual}")
        role = role.copy()
        role.key_bits = {"rsa": 2048, "ec": 224}.get(actual, 0)
        if actual == "rsa" and role.signature_bits == 0:
            role.signature_bits = 256
    else:
        raise UserError(f"unsupported key type value: {role.key_type}")
    if actual in ("rsa", "ec") and bits < role.key_bits:
        raise UserError(f"role requires a minimum of a {role.key_bits}-bit key, but CSR's key is {bits} bits")
    if actual == "rsa" and bits < 2048:
        raise UserError(f"Vault requires a minimum of a 2048-bit key, but CSR's key is {bits} bits")
    return role


def csr_basic_constraints(csr: x509.CertificateSigningRequest) -> x509.BasicConstraints | None:
    for ext in csr.extensions:  # a scan, not get_extension_for_class: no exception when absent
        if ext.oid == ExtensionOID.BASIC_CONSTRAINTS:
            return ext.value  # type: ignore[no-any-return]
    return None


# -- building -------------------------------------------------------------------------------


def key_usage_extension(names: list[str]) -> x509.KeyUsage | None:
    """Go KeyUsage names (case-insensitive, unknown ignored); None when empty."""
    ext = _key_usage_ext(tuple(names))
    return None if ext is None else ext.value


@functools.lru_cache(maxsize=256)
def _key_usage_ext(names: tuple[str, ...]) -> x509.Extension[x509.KeyUsage] | None:
    """The critical KeyUsage extension of a role's key_usage (roles repeat: memoised)."""
    flags = dict.fromkeys(_KEY_USAGES.values(), False)
    for name in names:
        attr = _KEY_USAGES.get(name.strip().lower())
        if attr is not None:
            flags[attr] = True
    if not any(flags.values()):
        return None
    if (flags["encipher_only"] or flags["decipher_only"]) and not flags["key_agreement"]:
        raise UserError("EncipherOnly and DecipherOnly key usages require KeyAgreement")
    return x509.Extension(ExtensionOID.KEY_USAGE, True, x509.KeyUsage(**flags))


def ext_key_usage_oids(role: RoleEntry) -> list[x509.ObjectIdentifier]:
    """The role's flags and ext_key_usage names, then ext_key_usage_oids (Vault's order)."""
    ext = _eku_ext(role)
    return [] if ext is None else list(ext.value)


def _eku_ext(role: RoleEntry) -> x509.Extension[x509.ExtendedKeyUsage] | None:
    return _eku_ext_of(
        tuple(role.ext_key_usage),
        role.server_flag,
        role.client_flag,
        role.code_signing_flag,
        role.email_protection_flag,
        tuple(role.ext_key_usage_oids),
    )


@functools.lru_cache(maxsize=256)
def _eku_ext_of(
    names: tuple[str, ...],
    server: bool,
    client: bool,
    code_signing: bool,
    email_protection: bool,
    oids: tuple[str, ...],
) -> x509.Extension[x509.ExtendedKeyUsage] | None:
    wanted = {name.strip().lower() for name in names}
    if server:
        wanted.add("serverauth")
    if client:
        wanted.add("clientauth")
    if code_signing:
        wanted.add("codesigning")
    if email_protection:
        wanted.add("emailprotection")
    out = [oid for name, oid in _EXT_KEY_USAGES if name in wanted]
    for text in oids:
        oid = x509.ObjectIdentifier(text.strip())
        if oid not in out:
            out.append(oid)
    if not out:
        return None
    return x509.Extension(ExtensionOID.EXTENDED_KEY_USAGE, False, x509.ExtendedKeyUsage(out))


def policies_extension(policies: list[str]) -> x509.CertificatePolicies | None:
    infos = []
    for policy in policies:
        oid, cps, notice = policy_oid(policy)
        qualifiers: list[str | x509.UserNotice] = []
        if cps:
            qualifiers.append(cps)
        if notice:
            qualifiers.append(x509.UserNotice(None, notice))
        infos.append(x509.PolicyInformation(x509.ObjectIdentifier(oid), qualifiers or None))
    return x509.CertificatePolicies(infos) if infos else None


def subject_name(role: RoleEntry, names: ResolvedNames) -> x509.Name:
    """Go's ``pkix.Name.ToRDNSequence`` order: C, ST, L, street, postalCode, O, OU, CN, serialNumber, UIDs."""
    attrs: list[x509.NameAttribute[str]] = []

    def add(oid: x509.ObjectIdentifier, values: list[str]) -> None:
        for value in _dedupe(values):
            attrs.append(x509.NameAttribute(oid, value, _validate=False))

    if role.country:
        # Go does not insist on 2-letter countries; cryptography would refuse (or, unvalidated, warn)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            add(NameOID.COUNTRY_NAME, role.country)
    add(NameOID.STATE_OR_PROVINCE_NAME, role.province)
    add(NameOID.LOCALITY_NAME, role.locality)
    add(NameOID.STREET_ADDRESS, role.street_address)
    add(NameOID.POSTAL_CODE, role.postal_code)
    add(NameOID.ORGANIZATION_NAME, role.organization)
    add(NameOID.ORGANIZATIONAL_UNIT_NAME, role.ou)
    if names.common_name:
        add(NameOID.COMMON_NAME, [names.common_name])
    if names.serial_number:
        add(NameOID.SERIAL_NUMBER, [names.serial_number])
    for user_id in names.user_ids:
        attrs.append(x509.NameAttribute(NameOID.USER_ID, user_id))
    return x509.Name(attrs)


def _dedupe(values: list[str]) -> list[str]:
    out: list[str] = []
    for value in values:
        if value not in out:
            out.append(value)
    return out


def _utf8_der(value: str) -> bytes:
    raw = value.encode("utf-8")
    if len(raw) < 0x80:
        return bytes([0x0C, len(raw)]) + raw
    size = len(raw).to_bytes((len(raw).bit_length() + 7) // 8, "big")
    return bytes([0x0C, 0x80 | len(size)]) + size + raw


def san_entries(names: ResolvedNames) -> list[x509.GeneralName]:
    """Other names first, then DNS, email, IP and URI, as Vault's marshalling orders them."""
    out: list[x509.GeneralName] = []
    for oid, values in names.other_sans.items():
        for value in values:
            try:
                out.append(x509.OtherName(x509.ObjectIdentifier(oid), _utf8_der(value)))
            except ValueError:
                raise UserError(f"could not parse requested other SAN: invalid OID {oid}") from None
    try:
        out.extend(x509.DNSName(n) for n in names.dns_names)
        out.extend(x509.RFC822Name(e) for e in names.emails)
        out.extend(x509.IPAddress(ip) for ip in names.ips)
        out.extend(x509.UniformResourceIdentifier(u) for u in names.uris)
    except ValueError as err:
        raise UserError(f"invalid subject alternative name: {err}") from None
    return out


def _aki(issuer_cert: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    try:
        ski = issuer_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_cert.public_key())  # type: ignore[arg-type]
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


@dataclass
class _IssuerExtensions:
    """What every leaf of one issuer carries alike, built once per cached SigningIssuer."""

    aki: x509.Extension[x509.AuthorityKeyIdentifier]
    aia: x509.Extension[x509.AuthorityInformationAccess] | None
    crl_distribution_points: x509.Extension[x509.CRLDistributionPoints] | None


def _issuer_extensions(issuer: SigningIssuer) -> _IssuerExtensions:
    cached = issuer.derived.get("leaf_extensions")
    if isinstance(cached, _IssuerExtensions):
        return cached
    aki = x509.Extension(ExtensionOID.AUTHORITY_KEY_IDENTIFIER, False, _aki(issuer.certificate))
    access = [
        x509.AccessDescription(AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(url))
        for url in issuer.aia.ocsp_servers
    ] + [
        x509.AccessDescription(AuthorityInformationAccessOID.CA_ISSUERS, x509.UniformResourceIdentifier(url))
        for url in issuer.aia.issuing_certificates
    ]
    aia = (
        x509.Extension(
            ExtensionOID.AUTHORITY_INFORMATION_ACCESS, False, x509.AuthorityInformationAccess(access)
        )
        if access
        else None
    )
    points = [
        x509.DistributionPoint([x509.UniformResourceIdentifier(url)], None, None, None)
        for url in issuer.aia.crl_distribution_points
    ]
    cdp = (
        x509.Extension(ExtensionOID.CRL_DISTRIBUTION_POINTS, False, x509.CRLDistributionPoints(points))
        if points
        else None
    )
    parts = _IssuerExtensions(aki, aia, cdp)
    issuer.derived["leaf_extensions"] = parts
    return parts


_NOT_CA = x509.Extension(
    ExtensionOID.BASIC_CONSTRAINTS, True, x509.BasicConstraints(ca=False, path_length=None)
)


def _naive_utc(moment: dt.datetime) -> dt.datetime:
    """What CertificateBuilder's setters store: naive UTC, on or after 1950."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(dt.UTC).replace(tzinfo=None)
    if moment < _EARLIEST_UTC:
        raise UserError("unable to create certificate: validity dates must be on or after 1950 January 1")
    return moment


_EARLIEST_UTC = dt.datetime(1950, 1, 1)


def random_serial() -> int:
    """A positive CSPRNG serial below 2^159 (at most 20 octets), as RFC 5280 and the BRs ask."""
    while True:
        serial = x509.random_serial_number()
        if serial > 0:
            return serial


def build_certificate(
    role: RoleEntry,
    names: ResolvedNames,
    public_key: Any,
    issuer: SigningIssuer,
    validity: Validity,
    *,
    ec_signature_bits: int = 0,
    verbatim_csr: x509.CertificateSigningRequest | None = None,
) -> x509.Certificate:
    """One CertificateBuilder pass and one signature with the issuer key.

    ``verbatim_csr`` (sign-verbatim) takes the subject from the CSR and copies its
    extensions except those the CA owns; a CSR KeyUsage / ExtendedKeyUsage replaces
    the defaults, as Go's ExtraExtensions do in Vault.
    """
    subject = verbatim_csr.subject if verbatim_csr is not None else subject_name(role, names)
    copied: dict[x509.ObjectIdentifier, x509.Extension[x509.ExtensionType]] = {}
    if verbatim_csr is not None:
        copied = {ext.oid: ext for ext in verbatim_csr.extensions if ext.oid not in _CA_OWNED_EXTENSIONS}

    # The whole extension list at once, in the order the add_extension calls used to make
    # (the builder's one-at-a-time setters re-copy it and re-check the key type each step).
    extensions: list[x509.Extension[Any]] = []
    key_usage = _key_usage_ext(tuple(role.key_usage))
    if key_usage is not None and ExtensionOID.KEY_USAGE not in copied:
        extensions.append(key_usage)
    ekus = _eku_ext(role)
    if ekus is not None and ExtensionOID.EXTENDED_KEY_USAGE not in copied:
        extensions.append(ekus)
    if role.basic_constraints_valid_for_non_ca:
        extensions.append(_NOT_CA)
    try:
        ski = x509.SubjectKeyIdentifier.from_public_key(public_key)
    except (TypeError, ValueError) as err:
        raise UserError(f"unable to create certificate: {err}") from None
    extensions.append(x509.Extension(ExtensionOID.SUBJECT_KEY_IDENTIFIER, False, ski))
    shared = _issuer_extensions(issuer)
    extensions.append(shared.aki)
    if shared.aia is not None:
        extensions.append(shared.aia)
    sans = san_entries(names)
    if sans:
        critical = len(subject) == 0
        extensions.append(
            x509.Extension(ExtensionOID.SUBJECT_ALTERNATIVE_NAME, critical, x509.SubjectAlternativeName(sans))
        )
    policies = policies_extension(role.policy_identifiers) if role.policy_identifiers else None
    if policies is not None and ExtensionOID.CERTIFICATE_POLICIES not in copied:
        extensions.append(x509.Extension(ExtensionOID.CERTIFICATE_POLICIES, False, policies))
    if shared.crl_distribution_points is not None:
        extensions.append(shared.crl_distribution_points)
    seen = {ext.oid for ext in extensions}
    for ext in copied.values():
        if ext.oid in seen:
            raise UserError(f"unable to create certificate: this extension has already been set: {ext.oid}")
        extensions.append(ext)
    builder = x509.CertificateBuilder(
        issuer_name=issuer.certificate.subject,
        subject_name=subject,
        public_key=public_key,
        serial_number=random_serial(),
        not_valid_before=_naive_utc(validity.not_before),
        not_valid_after=_naive_utc(validity.not_after),
        extensions=extensions,
    )

    key = issuer.private_key
    bits = ec_signature_bits if isinstance(key, ec.EllipticCurvePrivateKey) else role.signature_bits
    try:
        return sign_certificate(builder, key, bits if bits in (256, 384, 512) else 0, role.use_pss)
    except ValueError as err:
        raise UserError(f"unable to create certificate: {err}") from None


# -- the three flows ------------------------------------------------------------------------


async def issue_certificate(
    role: RoleEntry,
    inp: IssueInput,
    issuer: SigningIssuer,
    mount_default_ttl: int,
    mount_max_ttl: int,
    *,
    display_name: str = "",
    resolve: Any = None,
    rsa_pool: Any = None,
) -> Issued:
    """issue/: the server generates the key pair (role key_type / key_bits).

    ``rsa_pool`` (a :class:`~strongroom.engines.pki.keypool.RsaKeyPool`) hands out RSA
    keys generated ahead of demand; without it the key is generated now.
    """
    if role.key_type == "any":
        raise UserError('role key type "any" not allowed for issuing certificates, only signing')
    check_output_formats(inp)
    names = resolve_names(role, inp.names, None, display_name=display_name, resolve=resolve)
    validity = compute_validity(role, inp.ttl, inp.not_after, issuer, mount_default_ttl, mount_max_ttl)
    if role.key_type == "rsa" and rsa_pool is not None:
        key = await rsa_pool.take(role.key_bits or 2048)
    else:
        key = await generate_key_async(role.key_type, role.key_bits)
    cert = await _build_off_loop(role, names, key.public_key(), issuer, validity, 0, None)
    return Issued(cert, key, validity.warnings)


async def sign_certificate_request(
    role: RoleEntry,
    inp: IssueInput,
    csr_pem: str,
    issuer: SigningIssuer,
    mount_default_ttl: int,
    mount_max_ttl: int,
    *,
    verbatim: bool = False,
    display_name: str = "",
    resolve: Any = None,
) -> Issued:
    """sign/ (role-checked names) and sign-verbatim/ (the CSR's subject and extensions)."""
    check_output_formats(inp)
    csr, public_key = _parse_csr(csr_pem)
    role = _check_csr_key(role, public_key)
    warnings: list[str] = []
    constraints = csr_basic_constraints(csr)
    if constraints is not None:
        if verbatim and constraints.ca:
            raise UserError(CA_CSR_REFUSED)
        warnings.append(BC_IGNORED_WARNING)
    names = resolve_names(role, inp.names, CsrNames.from_csr(csr), display_name=display_name, resolve=resolve)
    validity = compute_validity(role, inp.ttl, inp.not_after, issuer, mount_default_ttl, mount_max_ttl)
    cert = await _build_off_loop(
        role, names, public_key, issuer, validity, role.signature_bits, csr if verbatim else None
    )
    return Issued(cert, None, validity.warnings + warnings)


async def _build_off_loop(
    role: RoleEntry,
    names: ResolvedNames,
    public_key: Any,
    issuer: SigningIssuer,
    validity: Validity,
    ec_signature_bits: int,
    verbatim_csr: x509.CertificateSigningRequest | None,
) -> x509.Certificate:
    """Sign in a worker thread when the issuer key is RSA (a 4096-bit signature takes milliseconds)."""
    build = functools.partial(
        build_certificate,
        role,
        names,
        public_key,
        issuer,
        validity,
        ec_signature_bits=ec_signature_bits,
        verbatim_csr=verbatim_csr,
    )
    if isinstance(issuer.private_key, rsa.RSAPrivateKey):
        return await asyncio.to_thread(build)
    return build()


# -- the response ---------------------------------------------------------------------------


def check_output_formats(inp: IssueInput) -> None:
    if inp.format not in FORMATS:
        raise UserError('the "format" path parameter must be "pem", "der", or "pem_bundle"')
    if inp.private_key_format not in PRIVATE_KEY_FORMATS:
        raise UserError('the "private_key_format" parameter must be "", "der", "pem" or "pkcs8"')


def _der_b64(cert: x509.Certificate) -> str:
    return base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()


def response_data(issued: Issued, issuer: SigningIssuer, inp: IssueInput) -> dict[str, Any]:
    """The response ``data``, as Vault's ``signIssueApiResponse`` shapes it.

    ``ca_chain`` is the issuer's chain (issuer first, up to the root), present only when
    non-empty, minus self-signed entries with ``remove_roots_from_chain``; ``pem_bundle``
    puts key (traditional form), certificate and the full chain in ``certificate``.
    The chain's PEM and DER forms come from the cached issuer (:meth:`SigningIssuer.chain`).
    """
    cert = issued.certificate
    chain = issuer.chain()
    if inp.remove_roots_from_chain:
        keep = [not root for root in chain.self_signed]
    else:
        keep = [True] * len(chain.self_signed)
    data: dict[str, Any] = {
        "expiration": int(cert.not_valid_after_utc.timestamp()),
        "serial_number": serial_to_str(cert.serial_number),
    }
    key = issued.private_key
    if inp.format == "der":
        data["certificate"] = _der_b64(cert)
        data["issuing_ca"] = chain.issuing_der_b64
        shown = [d for d, k in zip(chain.ders_b64, keep, strict=True) if k]
        if shown:
            data["ca_chain"] = shown
        if key is not None:
            data["private_key"] = export_private_key(key, inp.private_key_format, "der")
    else:
        data["issuing_ca"] = chain.issuing_pem
        if inp.format == "pem_bundle":
            parts = [export_private_key(key, "der")] if key is not None else []
            parts += [cert_pem(cert), *chain.pems]
            data["certificate"] = "\n".join(parts)
        else:
            data["certificate"] = cert_pem(cert)
        shown = [p for p, k in zip(chain.pems, keep, strict=True) if k]
        if shown:
            data["ca_chain"] = shown
        if key is not None:
            data["private_key"] = export_private_key(key, inp.private_key_format, "pem")
    if key is not None:
        data["private_key_type"] = key_type_name(key)
    return data
