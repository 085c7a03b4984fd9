"""Storage layout of the PKI engine, reference resolution and the signing-issuer contract.

Keys inside the mount's (barrier-encrypted) view:

- ``issuer/<id>``                 :class:`IssuerEntry` (certificate, chain, usage, AIA ...)
- ``key/<id>``                    :class:`KeyEntry` (PKCS#8 PEM private key; never logged)
- ``config/issuers``              ``{default, default_follows_latest_issuer}``
- ``config/keys``                 ``{default}``
- ``config/issuers-generation``   counter bumped on every issuer/key change
- ``certs/<serial colon hex>``    :class:`StoredCert` JSON (issued and generated certificates)
- ``urls`` / ``config/cluster``   mount AIA URLs and cluster paths (paths_urls.py)

References (``issuer_ref`` / ``key_ref``) are an id, a name, or ``default``.

Caching: parsed signing material is cached per backend (:class:`IssuerCache`),
registered against the mount's storage view. A process invalidates its own cache
when it changes issuers; other processes notice through ``config/issuers-generation``,
re-read at most once per second, so they may use stale issuer data for up to a
second after a change made elsewhere (issuer changes are rare administrative acts).
"""

from __future__ import annotations

import base64
import json
import re
import time
import uuid
import weakref
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

from strongroom.engines.pki.keys import (
    PrivateKey,
    key_type_name,
    load_private_key,
    private_key_pkcs8_pem,
    public_key_der,
)
from strongroom.framework.fields import NAME_RE
from strongroom.logical.errors import StrongroomError, UserError
from strongroom.logical.storage import Storage, get_json, put_json

DEFAULT_REF = "default"
ALL_USAGES = ("read-only", "issuing-certificates", "crl-signing", "ocsp-signing")
LEAF_BEHAVIORS = ("err", "truncate", "permit", "always_enforce_err")
GENERATION_KEY = "config/issuers-generation"
GENERATION_RECHECK_S = 1.0
_PEM_BLOCK = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----.*?-----END \1-----", re.S)


class ReferenceNotFound(UserError):
    """An issuer or key reference resolved to nothing (Vault's IssuerRefNotFound)."""


# -- small helpers ------------------------------------------------------------------------


def serial_to_str(serial: int) -> str:
    """Vault's serial form: lower-case colon hex of the minimal big-endian bytes."""
    return serial.to_bytes(max(1, (serial.bit_length() + 7) // 8), "big").hex(":")


def normalize_serial(serial: str) -> str:
    """Accept colon, hyphen or bare hex in any case; return the colon form (storage key)."""
    text = serial.strip().lower().replace("-", ":")
    if ":" in text:
        parts = [p.zfill(2) for p in text.split(":") if p]
        return ":".join(parts)
    if len(text) % 2:
        text = "0" + text
    return ":".join(text[i : i + 2] for i in range(0, len(text), 2))


def cert_pem(cert: x509.Certificate) -> str:
    """PEM of a certificate, trimmed (Vault trims PEM strings in responses)."""
    return cert.public_bytes(serialization.Encoding.PEM).decode().strip()


def parse_cert_pem(text: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(text.encode())


def is_self_signed(cert: x509.Certificate) -> bool:
    if cert.issuer != cert.subject:
        return False
    try:
        cert.verify_directly_issued_by(cert)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def directly_issued_by(child: x509.Certificate, parent: x509.Certificate) -> bool:
    try:
        child.verify_directly_issued_by(parent)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _now() -> int:
    return int(time.time())


def new_id() -> str:
    return str(uuid.uuid4())


def split_pem_bundle(text: str) -> tuple[list[x509.Certificate], list[str]]:
    """Certificates and private-key PEM blocks of a bundle (CRLs and EC parameters are skipped).

    Certificates are deduplicated; text between blocks (OpenSSL's dumps) is ignored.
    """
    certs: list[x509.Certificate] = []
    seen: set[bytes] = set()
    keys: list[str] = []
    for match in _PEM_BLOCK.finditer(text):
        label, block = match.group(1), match.group(0)
        if label in ("CERTIFICATE", "X509 CERTIFICATE"):
            try:
                cert = x509.load_pem_x509_certificate(
                    block.replace("X509 CERTIFICATE", "CERTIFICATE").encode()
                )
            except ValueError:
                raise UserError("unable to parse a certificate in the PEM bundle") from None
            der = cert.public_bytes(serialization.Encoding.DER)
            if der not in seen:
                seen.add(der)
                certs.append(cert)
        elif label in ("CRL", "X509 CRL", "EC PARAMS", "EC PARAMETERS"):
            continue
        else:
            keys.append(block)
    if not certs and not keys:
        raise UserError("provided PEM block contained no data")
    return certs, keys


def parse_pem_certificates(text: str) -> list[x509.Certificate]:
    """Every certificate in a PEM text (UserError when one does not parse)."""
    try:
        return x509.load_pem_x509_certificates(text.strip().encode()) if text.strip() else []
    except ValueError:
        raise UserError("error parsing certificate: no valid PEM certificate found") from None


# -- entries ------------------------------------------------------------------------------


@dataclass
class AIAUrls:
    """Authority Information Access URLs (mount-wide in ``urls``, or per issuer)."""

    issuing_certificates: list[str] = field(default_factory=list)
    crl_distribution_points: list[str] = field(default_factory=list)
    ocsp_servers: list[str] = field(default_factory=list)
    delta_crl_distribution_points: list[str] = field(default_factory=list)
    enable_templating: bool = False

    def empty(self) -> bool:
        return not (
            self.issuing_certificates
            or self.crl_distribution_points
            or self.ocsp_servers
            or self.delta_crl_distribution_points
        )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: dict[str, Any] | None) -> AIAUrls:
        raw = raw or {}
        return cls(
            issuing_certificates=list(raw.get("issuing_certificates") or []),
            crl_distribution_points=list(raw.get("crl_distribution_points") or []),
            ocsp_servers=list(raw.get("ocsp_servers") or []),
            delta_crl_distribution_points=list(raw.get("delta_crl_distribution_points") or []),
            enable_templating=bool(raw.get("enable_templating", False)),
        )

    def templated(self, issuer_id: str, cluster_path: str, cluster_aia_path: str) -> AIAUrls:
        """Substitute ``{{issuer_id}}``, ``{{cluster_path}}`` and ``{{cluster_aia_path}}``."""
        if not self.enable_templating:
            return self

        def sub(url: str) -> str:
            if "{{cluster_path}}" in url and not cluster_path:
                raise UserError("unable to template AIA URLs: config/cluster 'path' is not set")
            if "{{cluster_aia_path}}" in url and not cluster_aia_path:
                raise UserError("unable to template AIA URLs: config/cluster 'aia_path' is not set")
            return (
                url.replace("{{issuer_id}}", issuer_id)
                .replace("{{cluster_path}}", cluster_path)
                .replace("{{cluster_aia_path}}", cluster_aia_path)
            )

        return AIAUrls(
            [sub(u) for u in self.issuing_certificates],
            [sub(u) for u in self.crl_distribution_points],
            [sub(u) for u in self.ocsp_servers],
            [sub(u) for u in self.delta_crl_distribution_points],
            False,
        )


@dataclass
class IssuerEntry:
    """One issuer: a CA certificate, optionally linked to a key held by the mount."""

    id: str
    name: str = ""
    key_id: str = ""
    certificate: str = ""  # PEM with a trailing newline, as Vault stores it
    ca_chain: list[str] = field(default_factory=list)
    manual_chain: list[str] = field(default_factory=list)
    serial_number: str = ""
    leaf_not_after_behavior: str = "err"
    usage: list[str] = field(default_factory=lambda: list(ALL_USAGES))
    revocation_signature_algorithm: str = ""
    revoked: bool = False
    revocation_time: int = 0
    revocation_time_utc: str = ""
    aia: AIAUrls | None = None
    last_modified: int = 0

    def cert(self) -> x509.Certificate:
        return parse_cert_pem(self.certificate)

    def usage_names(self) -> str:
        return ",".join(u for u in ALL_USAGES if u in self.usage)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["aia"] = None if self.aia is None else self.aia.to_json()
        return out

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> IssuerEntry:
        known = {k: v for k, v in raw.items() if k in cls.__dataclass_fields__ and k != "aia"}
        entry = cls(**known)
        entry.aia = None if raw.get("aia") is None else AIAUrls.from_json(raw["aia"])
        return entry


@dataclass
class KeyEntry:
    """One private key held by the mount (PKCS#8 PEM inside the barrier)."""

    id: str
    name: str = ""
    private_key_type: str = ""
    private_key: str = ""

    def key(self) -> PrivateKey:
        return load_private_key(self.private_key)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> KeyEntry:
        return cls(**{k: v for k, v in raw.items() if k in cls.__dataclass_fields__})

    @classmethod
    def new(cls, key: PrivateKey, name: str = "") -> KeyEntry:
        return cls(str(uuid.uuid4()), name, key_type_name(key), private_key_pkcs8_pem(key))


@dataclass
class StoredCert:
    """A certificate kept under ``certs/<serial>``."""

    serial: str
    certificate: x509.Certificate
    issuer_id: str = ""

    @property
    def pem(self) -> str:
        return cert_pem(self.certificate)

    @property
    def der(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.DER)


@dataclass
class IssuerChain:
    """An issuer's ca_chain parsed and serialised once, for every response that carries it."""

    certificates: list[x509.Certificate]  # issuing certificate first, up to the root
    pems: list[str]  # trimmed PEM of each (as cert_pem gives it)
    ders_b64: list[str]  # base64 DER of each
    self_signed: list[bool]
    issuing_pem: str
    issuing_der_b64: str


@dataclass
class SigningIssuer:
    """Everything needed to sign with an issuer (the contract P2/P3 code against).

    ``derived`` holds what code using the issuer computes from it once (the leaf
    extensions every certificate shares, the serialised chain): a SigningIssuer is
    cached and reused until issuers change, so those are computed once per change.
    """

    issuer_id: str
    issuer_name: str
    certificate: x509.Certificate
    private_key: PrivateKey
    chain_pem: list[str]  # issuing cert first, then up to the root (ca_chain)
    leaf_not_after_behavior: str  # "err" | "truncate" | "permit"
    usage: set[str]  # read-only, issuing-certificates, crl-signing, ocsp-signing
    aia: AIAUrls  # issuing_certificates, crl_distribution_points, ocsp_servers
    key_id: str = ""
    revocation_signature_algorithm: str = ""
    revoked: bool = False
    derived: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def certificate_pem(self) -> str:
        chain = self.derived.get("chain")
        return chain.issuing_pem if isinstance(chain, IssuerChain) else cert_pem(self.certificate)

    def chain(self) -> IssuerChain:
        """``chain_pem`` parsed, re-serialised and checked for self-signatures, once."""
        cached = self.derived.get("chain")
        if isinstance(cached, IssuerChain):
            return cached
        certs = [x509.load_pem_x509_certificate(p.encode()) for p in self.chain_pem] or [self.certificate]
        ders = [c.public_bytes(serialization.Encoding.DER) for c in certs]
        issuing_der = self.certificate.public_bytes(serialization.Encoding.DER)
        chain = IssuerChain(
            certificates=certs,
            pems=[cert_pem(c) for c in certs],
            ders_b64=[base64.b64encode(d).decode() for d in ders],
            self_signed=[is_self_signed(c) for c in certs],
            issuing_pem=cert_pem(self.certificate),
            issuing_der_b64=base64.b64encode(issuing_der).decode(),
        )
        self.derived["chain"] = chain
        return chain

    def require_usage(self, usage: str) -> None:
        """Refuse with Vault's text when the issuer lacks ``usage``."""
        if usage not in self.usage:
            have = ",".join(u for u in ALL_USAGES if u in self.usage)
            raise UserError(
                f"error while attempting to use issuer {self.issuer_id}: requested usage {usage} "
                f"for issuer {self.issuer_id} but only had usage {have}"
            )


# -- generation counter and cache --------------------------------------------------------


class IssuerCache:
    """Per-backend cache of parsed signing issuers and resolved references."""

    def __init__(self) -> None:
        self.signing: dict[str, SigningIssuer] = {}
        self.refs: dict[str, str] = {}
        self.generation: int | None = None
        self.checked_at = 0.0
        self.version = 0  # changes whenever this cache is dropped: a key for caches built on it

    def invalidate(self) -> None:
        self.signing.clear()
        self.refs.clear()
        self.checked_at = 0.0
        self.version += 1

    async def refresh(self, storage: Storage) -> None:
        """Drop everything if another process bumped the generation (checked ≤ once a second)."""
        now = time.monotonic()
        if now - self.checked_at < GENERATION_RECHECK_S:
            return
        generation = await read_generation(storage)
        if generation != self.generation:
            self.signing.clear()
            self.refs.clear()
            self.generation = generation
            self.version += 1
        self.checked_at = now


_CACHES: weakref.WeakKeyDictionary[Any, IssuerCache] = weakref.WeakKeyDictionary()


def register_cache(storage: Storage, cache: IssuerCache) -> None:
    """Let the contract functions find a backend's cache from its storage view."""
    _CACHES[storage] = cache


def cache_for(storage: Storage) -> IssuerCache | None:
    try:
        return _CACHES.get(storage)
    except TypeError:  # an object that cannot be weakly referenced
        return None


async def read_generation(storage: Storage) -> int:
    raw = await storage.get(GENERATION_KEY)
    return int(raw) if raw else 0


async def bump_generation(storage: Storage) -> None:
    """Record an issuer/key change: other processes drop their caches; ours at once."""
    generation = await read_generation(storage) + 1
    await storage.put(GENERATION_KEY, str(generation).encode())
    cache = cache_for(storage)
    if cache is not None:
        cache.invalidate()


# -- configs ------------------------------------------------------------------------------


@dataclass
class IssuersConfig:
    default: str = ""
    default_follows_latest_issuer: bool = False


async def get_issuers_config(storage: Storage) -> IssuersConfig:
    raw = await get_json(storage, "config/issuers") or {}
    return IssuersConfig(str(raw.get("default", "")), bool(raw.get("default_follows_latest_issuer", False)))


async def put_issuers_config(storage: Storage, config: IssuersConfig) -> None:
    await put_json(storage, "config/issuers", asdict(config))
    await bump_generation(storage)


async def get_keys_default(storage: Storage) -> str:
    raw = await get_json(storage, "config/keys") or {}
    return str(raw.get("default", ""))


async def put_keys_default(storage: Storage, key_id: str) -> None:
    await put_json(storage, "config/keys", {"default": key_id})
    await bump_generation(storage)


async def get_mount_aia(storage: Storage) -> AIAUrls:
    return AIAUrls.from_json(await get_json(storage, "urls"))


async def get_cluster_config(storage: Storage) -> dict[str, str]:
    raw = await get_json(storage, "config/cluster") or {}
    return {"path": str(raw.get("path", "")), "aia_path": str(raw.get("aia_path", ""))}


# -- issuers ------------------------------------------------------------------------------


async def list_issuer_ids(storage: Storage) -> list[str]:
    return [n for n in await storage.list("issuer/") if not n.endswith("/")]


async def fetch_issuer(storage: Storage, issuer_id: str) -> IssuerEntry | None:
    raw = await get_json(storage, f"issuer/{issuer_id}")
    return None if raw is None else IssuerEntry.from_json(raw)


async def list_issuers(storage: Storage) -> list[IssuerEntry]:
    """Every issuer of the mount (for CRL building and OCSP lookups)."""
    out = []
    for issuer_id in await list_issuer_ids(storage):
        entry = await fetch_issuer(storage, issuer_id)
        if entry is not None:
            out.append(entry)
    return out


async def write_issuer(storage: Storage, entry: IssuerEntry) -> None:
    entry.last_modified = _now()
    await put_json(storage, f"issuer/{entry.id}", entry.to_json())
    await bump_generation(storage)


async def resolve_issuer_ref(storage: Storage, ref: str) -> str:
    """Issuer id for an id, a name or ``default``; ReferenceNotFound with Vault's text."""
    ref = ref.strip()
    if ref.lower() == DEFAULT_REF:
        config = await get_issuers_config(storage)
        if not config.default:
            raise ReferenceNotFound("no default issuer currently configured")
        return config.default
    if len(ref) == 36 and await storage.get(f"issuer/{ref}") is not None:
        return ref
    for entry in await list_issuers(storage):
        if entry.name and entry.name == ref:
            return entry.id
    raise ReferenceNotFound(f"unable to find PKI issuer for reference: {ref}")


async def issuer_by_ref(storage: Storage, ref: str) -> IssuerEntry:
    issuer_id = await resolve_issuer_ref(storage, ref)
    entry = await fetch_issuer(storage, issuer_id)
    if entry is None:
        raise ReferenceNotFound(f"unable to find PKI issuer for reference: {ref}")
    return entry


def check_new_name(name: str, kind: str) -> str:
    """Vault's checks on a new issuer or key name (uniqueness is checked by the caller)."""
    name = name.strip()
    if name.lower() == DEFAULT_REF:
        raise UserError(f"reserved keyword 'default' can not be used as {kind} name")
    if name and not NAME_RE.match(name):
        raise UserError(f"{kind} name contained invalid characters")
    return name


async def issuer_name_in_use(storage: Storage, name: str, exclude_id: str = "") -> bool:
    return any(e.name == name and e.id != exclude_id for e in await list_issuers(storage)) if name else False


async def key_name_in_use(storage: Storage, name: str, exclude_id: str = "") -> bool:
    return any(k.name == name and k.id != exclude_id for k in await list_keys(storage)) if name else False


async def delete_issuer(storage: Storage, issuer_id: str) -> bool:
    """Delete one issuer; return whether it was the default (the default is then cleared)."""
    await storage.delete(f"issuer/{issuer_id}")
    config = await get_issuers_config(storage)
    was_default = config.default == issuer_id
    if was_default:
        config.default = ""
        await put_issuers_config(storage, config)
    await bump_generation(storage)
    return was_default


# -- keys ---------------------------------------------------------------------------------


async def list_key_ids(storage: Storage) -> list[str]:
    return [n for n in await storage.list("key/") if not n.endswith("/")]


async def fetch_key(storage: Storage, key_id: str) -> KeyEntry | None:
    raw = await get_json(storage, f"key/{key_id}")
    return None if raw is None else KeyEntry.from_json(raw)


async def list_keys(storage: Storage) -> list[KeyEntry]:
    out = []
    for key_id in await list_key_ids(storage):
        entry = await fetch_key(storage, key_id)
        if entry is not None:
            out.append(entry)
    return out


async def write_key(storage: Storage, entry: KeyEntry) -> None:
    await put_json(storage, f"key/{entry.id}", entry.to_json())
    await bump_generation(storage)


async def resolve_key_ref(storage: Storage, ref: str) -> str:
    ref = ref.strip()
    if ref.lower() == DEFAULT_REF:
        default = await get_keys_default(storage)
        if not default:
            raise ReferenceNotFound("no default key currently configured")
        return default
    if len(ref) == 36 and await storage.get(f"key/{ref}") is not None:
        return ref
    for entry in await list_keys(storage):
        if entry.name and entry.name == ref:
            return entry.id
    raise ReferenceNotFound(f"unable to find PKI key for reference: {ref}")


async def key_by_ref(storage: Storage, ref: str) -> KeyEntry:
    key_id = await resolve_key_ref(storage, ref)
    entry = await fetch_key(storage, key_id)
    if entry is None:
        raise ReferenceNotFound(f"unable to find PKI key for reference: {ref}")
    return entry


async def delete_key(storage: Storage, key_id: str) -> bool:
    await storage.delete(f"key/{key_id}")
    was_default = await get_keys_default(storage) == key_id
    if was_default:
        await put_keys_default(storage, "")
    await bump_generation(storage)
    return was_default


async def import_key(storage: Storage, key: PrivateKey, name: str = "") -> tuple[KeyEntry, bool]:
    """Store a key unless the mount already has it; link issuers lacking a key. (entry, existed)."""
    spki = public_key_der(key)
    for entry in await list_keys(storage):
        if public_key_der(entry.key()) == spki:
            return entry, True
    entry = KeyEntry.new(key, name)
    await write_key(storage, entry)
    if not await get_keys_default(storage):
        await put_keys_default(storage, entry.id)
    config = await get_issuers_config(storage)
    for issuer in await list_issuers(storage):
        if not issuer.key_id and public_key_der(issuer.cert().public_key()) == spki:
            issuer.key_id = entry.id
            await write_issuer(storage, issuer)
            if not config.default:
                config.default = issuer.id
                await put_issuers_config(storage, config)
    return entry, False


async def import_issuer(
    storage: Storage,
    cert: x509.Certificate,
    name: str = "",
    leaf_not_after_behavior: str = "err",
    issuer_id: str = "",
) -> tuple[IssuerEntry, bool]:
    """Store a CA certificate unless present; link it to a matching key. (entry, existed)."""
    der = cert.public_bytes(serialization.Encoding.DER)
    for entry in await list_issuers(storage):
        if entry.cert().public_bytes(serialization.Encoding.DER) == der:
            return entry, True
    spki = public_key_der(cert.public_key())
    key_id = ""
    for key in await list_keys(storage):
        if public_key_der(key.key()) == spki:
            key_id = key.id
            break
    entry = IssuerEntry(
        id=issuer_id or new_id(),
        name=name,
        key_id=key_id,
        certificate=cert_pem(cert) + "\n",
        serial_number=serial_to_str(cert.serial_number),
        leaf_not_after_behavior=leaf_not_after_behavior,
    )
    await write_issuer(storage, entry)
    config = await get_issuers_config(storage)
    if not config.default and key_id:
        config.default = entry.id
        await put_issuers_config(storage, config)
    return entry, False


# -- chains -------------------------------------------------------------------------------


def _computed_chain(
    entry: IssuerEntry, by_id: dict[str, IssuerEntry], certs: dict[str, x509.Certificate]
) -> list[str]:
    """[self, parents..., root]: breadth-first over issuers in the mount that signed us."""
    order = [entry.id]
    queue = [entry.id]
    while queue:
        current = queue.pop(0)
        cert = certs[current]
        for other_id, other in certs.items():
            if other_id in order or other.subject != cert.issuer:
                continue
            if directly_issued_by(cert, other):
                order.append(other_id)
                queue.append(other_id)
    return [by_id[i].certificate for i in order]


async def rebuild_chains(storage: Storage) -> None:
    """Recompute every issuer's ca_chain (manual_chain wins) after issuers change."""
    entries = await list_issuers(storage)
    by_id = {e.id: e for e in entries}
    certs = {e.id: e.cert() for e in entries}
    for entry in entries:
        if entry.manual_chain:
            chain = [by_id[i].certificate for i in entry.manual_chain if i in by_id]
        else:
            chain = _computed_chain(entry, by_id, certs)
        if chain != entry.ca_chain:
            entry.ca_chain = chain
            await put_json(storage, f"issuer/{entry.id}", entry.to_json())
    await bump_generation(storage)


# -- the signing contract -----------------------------------------------------------------


async def _resolve_cached(storage: Storage, ref: str, cache: IssuerCache | None) -> str:
    if cache is None:
        return await resolve_issuer_ref(storage, ref)
    issuer_id = cache.refs.get(ref)
    if issuer_id is None:
        issuer_id = await resolve_issuer_ref(storage, ref)
        cache.refs[ref] = issuer_id
    return issuer_id


async def load_signing_issuer(storage: Storage, ref: str) -> SigningIssuer:
    """The issuer named by ``ref`` (id, name or ``default``) with its private key.

    UserError with Vault's text when the reference is unknown, no default is
    configured, or the issuer has no key in this mount.
    """
    cache = cache_for(storage)
    if cache is not None:
        await cache.refresh(storage)
    issuer_id = await _resolve_cached(storage, ref, cache)
    if cache is not None and issuer_id in cache.signing:
        return cache.signing[issuer_id]
    entry = await fetch_issuer(storage, issuer_id)
    if entry is None:
        raise ReferenceNotFound(f"unable to find PKI issuer for reference: {ref}")
    key = await fetch_key(storage, entry.key_id) if entry.key_id else None
    if key is None:
        raise UserError(
            f"unable to fetch corresponding key for issuer {issuer_id}; unable to use this issuer for signing"
        )
    aia = entry.aia if entry.aia is not None and not entry.aia.empty() else await get_mount_aia(storage)
    if aia.enable_templating:
        cluster = await get_cluster_config(storage)
        aia = aia.templated(entry.id, cluster["path"], cluster["aia_path"])
    signing = SigningIssuer(
        issuer_id=entry.id,
        issuer_name=entry.name,
        certificate=entry.cert(),
        private_key=key.key(),
        chain_pem=[c.strip() for c in entry.ca_chain] or [entry.certificate.strip()],
        leaf_not_after_behavior=entry.leaf_not_after_behavior,
        usage=set(entry.usage),
        aia=aia,
        key_id=entry.key_id,
        revocation_signature_algorithm=entry.revocation_signature_algorithm,
        revoked=entry.revoked,
    )
    if cache is not None:
        cache.signing[issuer_id] = signing
    return signing


# -- certificates -------------------------------------------------------------------------


async def store_certificate(storage: Storage, cert: x509.Certificate, issuer_id: str) -> None:
    """Keep a certificate under ``certs/<serial colon hex>``."""
    serial = serial_to_str(cert.serial_number)
    der = cert.public_bytes(serialization.Encoding.DER)
    cn = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    record = {
        "serial_number": serial,
        "certificate": base64.b64encode(der).decode(),
        "issuer_id": issuer_id,
        "not_after": int(cert.not_valid_after_utc.timestamp()),
        "common_name": str(cn[0].value) if cn else "",
    }
    # put_json's layout (compact, sorted keys) through orjson; text may be UTF-8 rather than \u escapes
    await storage.put(f"certs/{serial}", orjson.dumps(record, option=orjson.OPT_SORT_KEYS))


async def load_certificate(storage: Storage, serial: str) -> StoredCert | None:
    """A stored certificate by serial (colon, hyphen or bare hex, any case)."""
    try:
        key = normalize_serial(serial)
    except ValueError:
        return None
    if not key or any(c not in "0123456789abcdef:" for c in key):
        return None
    raw = await storage.get(f"certs/{key}")
    if raw is None:
        return None
    record = json.loads(raw)
    try:
        cert = x509.load_der_x509_certificate(base64.b64decode(record["certificate"]))
    except (ValueError, KeyError) as err:
        raise StrongroomError("stored certificate could not be parsed") from err
    return StoredCert(key, cert, str(record.get("issuer_id", "")))
