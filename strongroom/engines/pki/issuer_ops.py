"""Field declarations and shared operations of the issuer and key endpoints."""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from cryptography import x509

from strongroom.engines.pki import keys, store
from strongroom.framework import Field, FieldData, FieldType
from strongroom.logical.errors import StrongroomError, UserError
from strongroom.logical.storage import Storage

if TYPE_CHECKING:
    from strongroom.engines.pki.backend import PkiBackend

log = logging.getLogger("strongroom.engines.pki")

S, L, B, N, D = FieldType.STRING, FieldType.COMMA_LIST, FieldType.BOOL, FieldType.INT, FieldType.DURATION

CA_COMMON: dict[str, Field] = {
    "common_name": Field(S, "The requested common name."),
    "alt_names": Field(S, "Requested Subject Alternative Names (DNS names or emails), comma-separated."),
    "ip_sans": Field(L, "Requested IP SANs."),
    "uri_sans": Field(L, "Requested URI SANs."),
    "other_sans": Field(L, "Requested other SANs: <oid>;UTF8:<value>."),
    "exclude_cn_from_sans": Field(B, "Keep the common name out of the SANs.", default=False),
    "ttl": Field(D, "Requested time to live of the certificate."),
    "not_after": Field(S, "A fixed NotAfter, YYYY-MM-DDTHH:MM:SSZ."),
    "not_before_duration": Field(D, "How far NotBefore is backdated.", default=30),
    "format": Field(S, "pem, der or pem_bundle.", default="pem", allowed=("pem", "der", "pem_bundle")),
    "private_key_format": Field(
        S, "der (PKCS#1/SEC1) or pkcs8.", default="der", allowed=("", "der", "pem", "pkcs8")
    ),
    "ou": Field(L, "OU (OrganizationalUnit)."),
    "organization": Field(L, "O (Organization)."),
    "country": Field(L, "C (Country)."),
    "locality": Field(L, "L (Locality/City)."),
    "province": Field(L, "ST (Province/State)."),
    "street_address": Field(L, "Street address."),
    "postal_code": Field(L, "Postal code."),
    "serial_number": Field(S, "The subject's serialNumber attribute (not the certificate serial)."),
}
KEYGEN: dict[str, Field] = {
    "key_type": Field(S, "rsa, ec or ed25519.", default="rsa", allowed=("rsa", "ec", "ed25519")),
    "key_bits": Field(N, "Key size; 0 picks RSA 2048 or EC P-256.", default=0),
    "signature_bits": Field(N, "Signature hash size; 0 is automatic.", default=0),
    "use_pss": Field(B, "Use RSA-PSS signatures.", default=False),
    "key_name": Field(S, "Name of the new key."),
    "key_ref": Field(S, "Existing key to use (existing type).", default="default"),
    "managed_key_name": Field(S, "Managed keys are not supported."),
    "managed_key_id": Field(S, "Managed keys are not supported."),
}
CA_ISSUE: dict[str, Field] = {
    "max_path_length": Field(N, "Maximum path length; -1 for none.", default=-1),
    "permitted_dns_domains": Field(L, "Name constraints: permitted DNS domains."),
    "excluded_dns_domains": Field(L, "Name constraints: excluded DNS domains."),
    "permitted_ip_ranges": Field(L, "Name constraints: permitted IP ranges (CIDR)."),
    "excluded_ip_ranges": Field(L, "Name constraints: excluded IP ranges (CIDR)."),
    "permitted_email_addresses": Field(L, "Name constraints: permitted email addresses."),
    "excluded_email_addresses": Field(L, "Name constraints: excluded email addresses."),
    "permitted_uri_domains": Field(L, "Name constraints: permitted URI domains."),
    "excluded_uri_domains": Field(L, "Name constraints: excluded URI domains."),
    "issuer_name": Field(S, "Name of the new issuer."),
}
ROOT_KEY_USAGE: dict[str, Field] = {
    "key_usage": Field(L, "Key usages added to CertSign,CRLSign.", default=["CertSign", "CRLSign"]),
    "ext_key_usage": Field(L, "Extended key usages."),
    "ext_key_usage_oids": Field(L, "Extended key usage OIDs."),
}
CSR_KEY_USAGE: dict[str, Field] = {"key_usage": Field(L, "Key usages to request in the CSR.", default=[])}
SIGN_INTERMEDIATE: dict[str, Field] = {
    "csr": Field(S, "PEM CSR to sign.", default=""),
    "use_csr_values": Field(B, "Take the subject and extensions from the CSR.", default=False),
    "skid": Field(S, "Subject Key Identifier to use (hex).", default=""),
    "signature_bits": Field(N, "Signature hash size; 0 is automatic.", default=0),
    "use_pss": Field(B, "Use RSA-PSS signatures.", default=False),
    "enforce_leaf_not_after_behavior": Field(B, "Apply the issuer's leaf_not_after_behavior.", default=False),
}
SIGN_SELF_ISSUED: dict[str, Field] = {
    "certificate": Field(S, "PEM self-issued CA certificate to re-sign."),
    "require_matching_certificate_algorithms": Field(B, "Refuse cross-algorithm signatures.", default=False),
}
ISSUER_REF: dict[str, Field] = {"issuer_ref": Field(S, "Issuer id, name or default.", default="default")}
ISSUER_UPDATE: dict[str, Field] = {
    "issuer_name": Field(S, "Name of the issuer."),
    "manual_chain": Field(L, "Issuer references making up the chain; the first must be self."),
    "leaf_not_after_behavior": Field(S, "err, truncate or permit.", default="err"),
    "usage": Field(L, "Issuer usages.", default=list(store.ALL_USAGES)),
    "revocation_signature_algorithm": Field(S, "Signature algorithm for CRLs.", default=""),
    "issuing_certificates": Field(L, "AIA issuing certificate URLs."),
    "crl_distribution_points": Field(L, "CRL distribution point URLs."),
    "delta_crl_distribution_points": Field(L, "Delta CRL distribution point URLs."),
    "ocsp_servers": Field(L, "OCSP server URLs."),
    "enable_aia_url_templating": Field(B, "Template the AIA URLs.", default=False),
}
IMPORT_FIELDS: dict[str, Field] = {
    "pem_bundle": Field(S, "PEM certificates and (where allowed) unencrypted keys."),
    "certificate": Field(S, "The signed intermediate, optionally followed by its chain."),
}
SIGNATURE_ALGORITHMS = {
    name.lower(): name
    for name in (
        "SHA256WithRSA",
        "SHA384WithRSA",
        "SHA512WithRSA",
        "SHA256WithRSAPSS",
        "SHA384WithRSAPSS",
        "SHA512WithRSAPSS",
        "ECDSAWithSHA256",
        "ECDSAWithSHA384",
        "ECDSAWithSHA512",
        "PureEd25519",
    )
}
_SUBJECT_AND_CONSTRAINTS = (
    "country",
    "province",
    "locality",
    "street_address",
    "postal_code",
    "organization",
    "ou",
    "serial_number",
    *[k for k in CA_ISSUE if k.startswith(("permitted_", "excluded_"))],
)


def field_values(d: FieldData) -> dict[str, Any]:
    """The subject and name-constraint fields a path declares, by name."""
    return {name: d[name] for name in _SUBJECT_AND_CONSTRAINTS if name in d.fields}


def issuer_view(entry: store.IssuerEntry) -> dict[str, Any]:
    """Vault's issuer read response."""
    aia = entry.aia
    data: dict[str, Any] = {
        "issuer_id": entry.id,
        "issuer_name": entry.name,
        "key_id": entry.key_id,
        "certificate": entry.certificate,
        "manual_chain": list(entry.manual_chain) or None,
        "ca_chain": list(entry.ca_chain),
        "leaf_not_after_behavior": entry.leaf_not_after_behavior,
        "usage": entry.usage_names(),
        "revocation_signature_algorithm": entry.revocation_signature_algorithm,
        "revoked": entry.revoked,
        "issuing_certificates": list(aia.issuing_certificates) if aia else [],
        "crl_distribution_points": list(aia.crl_distribution_points) if aia else [],
        "delta_crl_distribution_points": list(aia.delta_crl_distribution_points) if aia else [],
        "ocsp_servers": list(aia.ocsp_servers) if aia else [],
        "enable_aia_url_templating": bool(aia.enable_templating) if aia else False,
    }
    if entry.revoked:
        data["revocation_time"] = entry.revocation_time
        data["revocation_time_rfc3339"] = entry.revocation_time_utc
    return data


def bad_url(urls: list[str]) -> str:
    for url in urls:
        parsed = urlparse(url)
        if not parsed.scheme or not (parsed.netloc or parsed.scheme in ("ldap", "urn")):
            return url
    return ""


@dataclass
class ImportResult:
    mapping: dict[str, str] = field(default_factory=dict)
    imported_keys: list[str] = field(default_factory=list)
    imported_issuers: list[str] = field(default_factory=list)
    existing_keys: list[str] = field(default_factory=list)
    existing_issuers: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def data(self) -> dict[str, Any]:
        return {
            "mapping": self.mapping,
            "imported_keys": self.imported_keys or None,
            "imported_issuers": self.imported_issuers or None,
            "existing_keys": self.existing_keys or None,
            "existing_issuers": self.existing_issuers or None,
        }


class IssuerOps:
    """Operations shared by the issuer and key handlers."""

    def __init__(self, backend: PkiBackend) -> None:
        self.backend = backend

    @property
    def storage(self) -> Storage:
        return self.backend.storage

    async def new_issuer_name(self, d: FieldData) -> str:
        value, sent = d.get_ok("issuer_name")
        if not sent:
            return ""
        name = store.check_new_name(str(value), "issuer")
        if not name:
            raise UserError("expected non-empty issuer name")
        if await store.issuer_name_in_use(self.storage, name):
            raise UserError("issuer name already in use")
        return name

    async def new_key_name(self, d: FieldData) -> str:
        value, sent = d.get_ok("key_name")
        if not sent:
            return ""
        name = store.check_new_name(str(value), "key")
        if name and await store.key_name_in_use(self.storage, name):
            raise UserError("key name already in use")
        return name

    async def templated_aia(self, aia: store.AIAUrls, issuer_id: str) -> store.AIAUrls:
        if not aia.enable_templating:
            return aia
        cluster = await store.get_cluster_config(self.storage)
        return aia.templated(issuer_id, cluster["path"], cluster["aia_path"])

    async def issuers_changed(self) -> list[str]:
        """After any issuer/key change: rebuild chains, drop caches, rebuild CRLs (P3) if present."""
        await store.rebuild_chains(self.storage)
        self.backend.invalidate_issuers()
        try:
            revocation = importlib.import_module("strongroom.engines.pki.revocation")
        except ModuleNotFoundError as err:
            if err.name != "strongroom.engines.pki.revocation":
                raise
            return []
        try:
            warnings: list[str] = await revocation.rebuild(self.storage, revocation.manager_for(self.backend))
        except UserError as err:
            return [f"Error during CRL building: {err}"]
        return warnings

    async def issuer_for_admin(self, d: FieldData) -> store.IssuerEntry:
        """The issuer of an ``issuer/{ref}`` admin path; unknown references fail as in Vault (500)."""
        ref = str(d["issuer_ref"]).strip()
        if not ref:
            raise UserError("missing issuer reference")
        try:
            return await store.issuer_by_ref(self.storage, ref)
        except store.ReferenceNotFound as err:
            raise StrongroomError(*err.errors) from None

    async def apply_issuer_update(self, entry: store.IssuerEntry, d: FieldData, patch: bool) -> list[str]:
        """POST replaces every field (omitted ones reset); PATCH changes only what was sent."""
        warnings: list[str] = []

        def wanted(name: str) -> bool:
            return not patch or d.sent(name)

        if wanted("issuer_name"):
            name = store.check_new_name(str(d["issuer_name"]), "issuer")
            if patch and not name:
                raise UserError("expected non-empty issuer name")
            if name != entry.name and await store.issuer_name_in_use(self.storage, name, entry.id):
                raise UserError("issuer name already in use")
            entry.name = name
        if wanted("leaf_not_after_behavior"):
            behavior = str(d["leaf_not_after_behavior"])
            if behavior not in store.LEAF_BEHAVIORS:
                raise UserError(
                    "Unknown value for field `leaf_not_after_behavior`. Possible values are `err`, `truncate`, "
                    "and `permit`."
                )
            entry.leaf_not_after_behavior = behavior
        if wanted("usage"):
            entry.usage = self._checked_usage(entry, list(d["usage"]))
        if wanted("revocation_signature_algorithm"):
            entry.revocation_signature_algorithm = self._checked_sig_alg(
                entry, str(d["revocation_signature_algorithm"])
            )
        self._apply_aia(entry, d, wanted)
        manual = list(d["manual_chain"]) if wanted("manual_chain") else None
        if manual is not None:
            entry.manual_chain = await self._resolve_manual_chain(entry, manual)
        await store.write_issuer(self.storage, entry)
        return warnings

    @staticmethod
    def _checked_usage(entry: store.IssuerEntry, names: list[str]) -> list[str]:
        clean = {n.strip().lower() for n in names if n.strip()}
        if clean - set(store.ALL_USAGES):
            raise UserError(
                f"Unable to parse specified usages: [{' '.join(names)}] - valid values are "
                + ",".join(store.ALL_USAGES)
            )
        clean.add("read-only")
        if entry.revoked and "issuing-certificates" in clean:
            raise UserError(
                "This issuer was revoked; unable to modify its usage to include certificate signing again. "
                "Reissue this certificate (preferably with a new key) and modify that entry instead."
            )
        if "crl-signing" in clean and "crl-signing" not in entry.usage:
            try:
                usage = entry.cert().extensions.get_extension_for_class(x509.KeyUsage).value
                can_sign_crl = usage.crl_sign
            except x509.ExtensionNotFound:
                can_sign_crl = False
            if not can_sign_crl:
                raise UserError(
                    "This issuer's underlying certificate lacks the CRLSign KeyUsage value; unable to set "
                    "CRLSigningUsage on this issuer as a result."
                )
        return [u for u in store.ALL_USAGES if u in clean]

    @staticmethod
    def _checked_sig_alg(entry: store.IssuerEntry, name: str) -> str:
        if not name:
            return ""
        canonical = SIGNATURE_ALGORITHMS.get(name.lower())
        if canonical is None:
            raise UserError(
                f"Unknown signature algorithm value: {name} - valid values are {', '.join(SIGNATURE_ALGORITHMS)}"
            )
        kind = keys.key_type_name(entry.cert().public_key())
        fits = {
            "rsa": "rsa" in canonical.lower(),
            "ec": "ecdsa" in canonical.lower(),
            "ed25519": "ed25519" in canonical.lower(),
        }
        if not fits.get(kind, False):
            raise UserError(f"unable to use signature algorithm {canonical} with this issuer's {kind} key")
        return canonical

    @staticmethod
    def _apply_aia(entry: store.IssuerEntry, d: FieldData, wanted: Any) -> None:
        aia = entry.aia or store.AIAUrls()
        templating = (
            bool(d["enable_aia_url_templating"])
            if wanted("enable_aia_url_templating")
            else aia.enable_templating
        )
        for name in (
            "issuing_certificates",
            "crl_distribution_points",
            "delta_crl_distribution_points",
            "ocsp_servers",
        ):
            if not wanted(name):
                continue
            urls = [u for u in d[name] if u]
            bad = bad_url(urls)
            if bad and not templating:
                raise UserError(
                    f"invalid URL found in Authority Information Access (AIA) parameter {name}: {bad}"
                )
            setattr(aia, name, urls)
        aia.enable_templating = templating
        entry.aia = None if aia.empty() else aia

    async def _resolve_manual_chain(self, entry: store.IssuerEntry, refs: list[str]) -> list[str]:
        chain: list[str] = []
        for index, ref in enumerate(refs):
            if index == 0 and ref == "self":
                ref = entry.id
            resolved = await store.resolve_issuer_ref(self.storage, ref)
            if index == 0 and resolved != entry.id:
                raise UserError(
                    f"expected first cert in chain to be a self-reference, but was: {ref}/{resolved}"
                )
            chain.append(resolved)
        return chain

    async def import_material(self, certs: list[x509.Certificate], pems: list[str]) -> ImportResult:
        result = ImportResult()
        for index, pem in enumerate(pems):
            try:
                key = keys.load_private_key(pem)
            except UserError as err:
                raise UserError(f"Error parsing key {index}: {err}") from None
            entry, existed = await store.import_key(self.storage, key)
            (result.existing_keys if existed else result.imported_keys).append(entry.id)
        for cert in certs:
            issuer, existed = await store.import_issuer(self.storage, cert)
            result.mapping[issuer.id] = issuer.key_id
            (result.existing_issuers if existed else result.imported_issuers).append(issuer.id)
        with_keys = [i for i in result.imported_issuers if result.mapping.get(i)]
        config = await store.get_issuers_config(self.storage)
        if result.imported_issuers and config.default_follows_latest_issuer:
            if len(with_keys) == 1:
                config.default = with_keys[0]
                await store.put_issuers_config(self.storage, config)
            elif len(with_keys) > 1:
                result.warnings.append(
                    "Default issuer left unchanged: could not select new issuer automatically as multiple "
                    "imported issuers had key material in Vault."
                )
        if config.default and result.mapping.get(config.default, None) == "":
            result.warnings.append(
                "The default issuer has no key associated with it. Some operations like issuing certificates "
                "and signing CRLs will be unavailable with the requested default issuer until a key is imported "
                "or the default issuer is changed."
            )
        return result

    async def has_other_parent(self, entry: store.IssuerEntry) -> bool:
        cert = entry.cert()
        for other in await store.list_issuers(self.storage):
            if other.id != entry.id and store.directly_issued_by(cert, other.cert()):
                return True
        return False
