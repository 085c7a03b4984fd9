"""Revocation records, CRL state and CRL (re)building for the pki engine.

Storage (inside the mount's view):

- ``revoked/<serial colon hex>``  one small record per revoked certificate:
  ``{serial_number, revocation_time, revocation_time_rfc3339, issuer_id, not_after}``.
  One entry per serial means no storage entry grows with the number of revoked
  certificates (hashicorp/vault#2844), and OCSP is a single ``get``.
- ``config/crl``                   :class:`CrlConfig` (Vault's fields and defaults).
- ``crl/state/<issuer_id>``        ``{crl_number, full_number, delta_number,
  last_full_build, last_delta_build, next_update}``. ``crl_number`` is the last
  number handed out for that issuer, complete or delta (RFC 5280 §5.2.4: both
  share one sequence); it is allocated in a storage transaction before signing,
  so numbers strictly increase across rebuilds, restarts and processes.
- ``crl/full/<issuer_id>``, ``crl/delta/<issuer_id>``  the signed DER.
- ``crl/delta-wal/<serial>``       revocations not yet on a complete CRL (only
  kept when delta CRLs are enabled); a delta CRL lists exactly these.
- ``crl/dirty``                    present while a complete rebuild is owed;
  survives restarts so a revocation can never be lost from the CRL (the class of
  bug behind CVE-2022-41316); fetches rebuild lazily while it is set.

When CRLs are rebuilt: without ``auto_rebuild`` every revocation rebuilds
inline, as Vault does. With it, a revocation marks the CRL dirty (or, with
delta CRLs, appends to the WAL) and a background task rebuilds; a fetch of a
dirty CRL rebuilds first. A periodic tick (:meth:`RevocationManager.tick`)
rebuilds complete CRLs inside the grace period before NextUpdate and runs hooks
registered by other modules (auto-tidy).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import json
import logging
import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

import orjson
from cryptography import x509
from cryptography.exceptions import InvalidSignature

from strongroom.durations import parse_duration
from strongroom.engines.pki import store
from strongroom.engines.pki.crl import EncodedEntries, RevokedEntry, build_crl
from strongroom.logical.errors import StrongroomError, UserError
from strongroom.logical.request import Request, Response
from strongroom.logical.storage import Storage, get_json, put_json

if TYPE_CHECKING:
    from strongroom.framework.fields import FieldData

log = logging.getLogger("strongroom.engines.pki.revocation")

CONFIG_KEY = "config/crl"
REVOKED_PREFIX = "revoked/"
STATE_PREFIX = "crl/state/"
FULL_PREFIX = "crl/full/"
DELTA_PREFIX = "crl/delta/"
WAL_PREFIX = "crl/delta-wal/"
DIRTY_KEY = "crl/dirty"
DELTA_DIRTY_KEY = "crl/delta-dirty"
TICK_SECONDS = 60.0
THREAD_THRESHOLD = 2000  # build bigger CRLs off the event loop
PAGE = 4096  # revoked/ names read per page when rebuilding a complete CRL


def now() -> float:
    """The clock (tests replace it)."""
    return time.time()


def rfc3339(ts: float) -> str:
    """Go's RFC3339Nano rendering of a UTC instant (trailing zeros trimmed)."""
    moment = dt.datetime.fromtimestamp(ts, dt.UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond:
        text += "." + f"{moment.microsecond:06d}".rstrip("0")
    return text + "Z"


# -- configuration --------------------------------------------------------------------------


@dataclass
class CrlConfig:
    expiry: str = "72h"
    disable: bool = False
    ocsp_disable: bool = False
    ocsp_expiry: str = "12h"
    auto_rebuild: bool = False
    auto_rebuild_grace_period: str = "12h"
    enable_delta: bool = False
    delta_rebuild_interval: str = "15m"

    def seconds(self, name: str) -> int:
        try:
            return parse_duration(str(getattr(self, name)))
        except ValueError:
            return parse_duration(str(getattr(CrlConfig, name)))

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: dict[str, Any] | None) -> CrlConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in (raw or {}).items() if k in names})


async def load_config(storage: Storage) -> CrlConfig:
    return CrlConfig.from_json(await get_json(storage, CONFIG_KEY))


async def save_config(storage: Storage, config: CrlConfig) -> None:
    await put_json(storage, CONFIG_KEY, config.to_json())


# -- revocation records -----------------------------------------------------------------------


@dataclass
class RevokedRecord:
    serial_number: str
    revocation_time: int
    revocation_time_rfc3339: str
    issuer_id: str
    not_after: int

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> RevokedRecord:
        return cls(
            serial_number=str(raw.get("serial_number", "")),
            revocation_time=int(raw.get("revocation_time", 0)),
            revocation_time_rfc3339=str(raw.get("revocation_time_rfc3339", "")),
            issuer_id=str(raw.get("issuer_id", "")),
            not_after=int(raw.get("not_after", 0)),
        )

    def entry(self) -> RevokedEntry:
        serial = int(self.serial_number.replace(":", ""), 16)
        return RevokedEntry(serial, dt.datetime.fromtimestamp(self.revocation_time, dt.UTC))


async def load_revoked(storage: Storage, serial: str) -> RevokedRecord | None:
    raw = await storage.get(REVOKED_PREFIX + serial)  # OCSP asks this for every request: orjson
    return None if raw is None else RevokedRecord.from_json(orjson.loads(raw))


async def list_revoked_records(storage: Storage) -> list[RevokedRecord]:
    out: list[RevokedRecord] = []
    for name in await storage.list(REVOKED_PREFIX):
        if name.endswith("/"):
            continue
        record = await load_revoked(storage, name)
        if record is not None:
            out.append(record)
    return out


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


async def find_issuer_of(storage: Storage, cert: x509.Certificate) -> str:
    """Id of the mount issuer whose signature is on ``cert``, or ``""``."""
    for entry in await store.list_issuers(storage):
        if entry.cert().subject == cert.issuer and _issued_by(cert, entry.cert()):
            return entry.id
    return ""


# -- per-backend state ----------------------------------------------------------------------


class RevocationManager:
    """Locks, background rebuilds and the periodic tick of one pki mount."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self.rebuild_lock = asyncio.Lock()
        self.revoke_lock = asyncio.Lock()
        self.periodic_hooks: list[Callable[[], Awaitable[None]]] = []
        self._wanted: set[str] = set()
        self._worker: asyncio.Task[None] | None = None
        self._ticker: asyncio.Task[None] | None = None

    # background rebuilds ------------------------------------------------------------------

    def schedule(self, kind: str) -> None:
        """Ask for a ``full`` or ``delta`` rebuild soon; concurrent asks coalesce."""
        self._wanted.add(kind)
        if self._worker is None or self._worker.done():
            self._worker = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        while self._wanted:
            kinds, self._wanted = self._wanted, set()
            try:
                if "full" in kinds:
                    await rebuild(self.storage, self)
                else:
                    await rebuild_delta(self.storage, self)
            except Exception:  # logged; the next fetch or tick retries
                log.exception("background CRL rebuild failed")

    async def wait_idle(self) -> None:
        """Wait for scheduled rebuilds (tests and shutdown)."""
        while self._worker is not None and not self._worker.done():
            await asyncio.shield(self._worker)

    # periodic work --------------------------------------------------------------------------

    def ensure_ticking(self) -> None:
        if self._ticker is None or self._ticker.done():
            self._ticker = asyncio.get_running_loop().create_task(self._tick_forever())

    async def stop(self) -> None:
        for task in (self._ticker, self._worker):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self._ticker = self._worker = None

    async def _tick_forever(self) -> None:
        while True:
            await asyncio.sleep(TICK_SECONDS)
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("periodic pki revocation work failed")

    async def tick(self) -> None:
        """One round of periodic work (Vault's periodicFunc): CRL expiry, deltas, hooks."""
        config = await load_config(self.storage)
        if config.auto_rebuild and not config.disable:
            horizon = now() + config.seconds("auto_rebuild_grace_period")
            due = await self.storage.get(DIRTY_KEY) is not None
            for entry in await store.list_issuers(self.storage):
                if entry.key_id and "crl-signing" in entry.usage:  # only issuers that get a CRL
                    due = (
                        due
                        or float((await load_state(self.storage, entry.id)).get("next_update", 0)) <= horizon
                    )
            if due:
                await rebuild(self.storage, self)
            elif config.enable_delta and await self.storage.get(DELTA_DIRTY_KEY) is not None:
                await rebuild_delta(self.storage, self)
        for hook in list(self.periodic_hooks):
            await hook()


_MANAGERS: weakref.WeakKeyDictionary[Any, RevocationManager] = weakref.WeakKeyDictionary()


def manager_for(backend: Any) -> RevocationManager:
    """The backend's manager, created on first use (keyed weakly by the backend)."""
    manager = _MANAGERS.get(backend)
    if manager is None:
        manager = RevocationManager(backend.storage)
        _MANAGERS[backend] = manager
    return manager


async def start_background(backend: Any) -> None:
    """Start the periodic tick (for the backend's ``initialize``)."""
    manager_for(backend).ensure_ticking()


async def stop_background(backend: Any) -> None:
    """Stop the tick and any rebuild in flight (for the backend's ``cleanup``)."""
    manager = _MANAGERS.get(backend)
    if manager is not None:
        await manager.stop()


# -- CRL state and building ---------------------------------------------------------------


async def load_state(storage: Storage, issuer_id: str) -> dict[str, Any]:
    return dict(await get_json(storage, STATE_PREFIX + issuer_id) or {})


async def _allocate_number(storage: Storage, members: list[str]) -> int:
    """Next CRL number for a group of issuers sharing a CRL, persisted before signing."""
    async with storage.transaction() as txn:
        states = [await load_state(txn, m) for m in members]
        number = max((int(s.get("crl_number", 0)) for s in states), default=0) + 1
        for member, state in zip(members, states, strict=True):
            state["crl_number"] = number
            await put_json(txn, STATE_PREFIX + member, state)
    return number


async def _store_crl(
    storage: Storage, members: list[str], der: bytes, number: int, *, delta: bool, next_update: int
) -> None:
    """Write a signed CRL unless a newer one (higher number) was stored meanwhile."""
    stamp = int(now())
    async with storage.transaction() as txn:
        for member in members:
            state = await load_state(txn, member)
            field = "delta_number" if delta else "full_number"
            if int(state.get(field, 0)) >= number:
                continue
            state[field] = number
            if delta:
                state["last_delta_build"] = stamp
            else:
                state["last_full_build"] = stamp
                state["next_update"] = next_update
                state["delta_number"] = 0
            await put_json(txn, STATE_PREFIX + member, state)
            # an older delta stays valid against a newer base (RFC 5280 §5.2.4) until replaced
            await txn.put((DELTA_PREFIX if delta else FULL_PREFIX) + member, der)


@dataclass
class _Group:
    members: list[str]
    signer: str  # issuer id used to sign, "" when none may sign CRLs


def _groups(issuers: list[store.IssuerEntry]) -> tuple[list[_Group], dict[str, int]]:
    """Issuers with the same key and subject share one CRL (as in Vault)."""
    by_key: dict[tuple[str, bytes], _Group] = {}
    index: dict[str, int] = {}
    groups: list[_Group] = []
    for entry in issuers:
        if not entry.key_id:
            continue
        key = (entry.key_id, entry.cert().subject.public_bytes())
        group = by_key.get(key)
        if group is None:
            group = _Group([], "")
            by_key[key] = group
            groups.append(group)
        group.members.append(entry.id)
        index[entry.id] = groups.index(group)
        if not group.signer and "crl-signing" in entry.usage:
            group.signer = entry.id
    return groups, index


async def _sign_group(
    storage: Storage,
    group: _Group,
    entries: list[RevokedEntry] | EncodedEntries,
    config: CrlConfig,
    *,
    delta_base: int | None,
) -> None:
    signer = await store.load_signing_issuer(storage, group.signer)
    number = await _allocate_number(storage, group.members)
    moment = now()
    next_update_ts = int(moment) + config.seconds("expiry")
    build = functools.partial(
        build_crl,
        issuer_cert=signer.certificate,
        issuer_key=signer.private_key,
        entries=entries,
        crl_number=number,
        this_update=dt.datetime.fromtimestamp(moment, dt.UTC),
        next_update=dt.datetime.fromtimestamp(next_update_ts, dt.UTC),
        delta_base=delta_base,
        revocation_sig_alg=signer.revocation_signature_algorithm,
        freshest_crl_urls=signer.aia.delta_crl_distribution_points if config.enable_delta else [],
    )
    der = await asyncio.to_thread(build) if len(entries) > THREAD_THRESHOLD else build()
    await _store_crl(
        storage, group.members, der, number, delta=delta_base is not None, next_update=next_update_ts
    )


def _assign(
    records: list[RevokedRecord], issuers: list[store.IssuerEntry], index: dict[str, int], default_id: str
) -> dict[int, list[RevokedEntry]]:
    """Group index -> entries. Unknown issuers land on the default issuer's CRL."""
    issuer_serials = {e.serial_number for e in issuers}
    out: dict[int, list[RevokedEntry]] = {}
    fallback = index.get(default_id)
    for record in records:
        if record.serial_number in issuer_serials:
            continue  # an issuer is never listed via revoked/ (issuer revocation is separate)
        slot = index.get(record.issuer_id, fallback)
        if slot is None:
            continue
        out.setdefault(slot, []).append(record.entry())
    # Revoked issuers go on the CRLs of the issuers that signed them.
    certs = {e.id: e.cert() for e in issuers}
    for entry in issuers:
        if not entry.revoked:
            continue
        when = dt.datetime.fromtimestamp(entry.revocation_time or now(), dt.UTC)
        for other_id, slot in index.items():
            if other_id != entry.id and _issued_by(certs[entry.id], certs[other_id]):
                out.setdefault(slot, []).append(RevokedEntry(certs[entry.id].serial_number, when))
    return out


async def _stored_entries(
    storage: Storage, issuers: list[store.IssuerEntry], index: dict[str, int], default_id: str
) -> dict[int, EncodedEntries]:
    """Group index -> every ``revoked/`` record, encoded for the CRL as it is read.

    :func:`_assign`'s rules (issuers never listed through ``revoked/``, unknown issuers
    on the default issuer's CRL), but streaming: names come a page at a time and each
    record is reduced to its ~40 DER bytes at once, so a million revocations never
    exist as a million Python objects. The event loop gets a turn between pages.
    """
    issuer_serials = {e.serial_number for e in issuers}
    fallback = index.get(default_id)
    out: dict[int, EncodedEntries] = {}
    after = ""
    while True:
        names = await storage.list_page(REVOKED_PREFIX, after, PAGE)
        for name in names:
            if name.endswith("/"):
                continue
            raw = await storage.get(REVOKED_PREFIX + name)
            if raw is None:
                continue  # tidied meanwhile
            record = orjson.loads(raw)
            serial = str(record.get("serial_number") or name)
            slot = index.get(str(record.get("issuer_id", "")), fallback)
            if slot is None or serial in issuer_serials:
                continue
            entries = out.get(slot)
            if entries is None:
                entries = out[slot] = EncodedEntries()
            entries.add_stored(serial, int(record.get("revocation_time", 0)))
        if len(names) < PAGE:
            return out
        after = names[-1]
        await asyncio.sleep(0)


def _lock(manager: RevocationManager | None) -> asyncio.Lock:
    return manager.rebuild_lock if manager is not None else asyncio.Lock()


async def rebuild(
    storage: Storage, manager: RevocationManager | None = None, *, force: bool = False
) -> list[str]:
    """Rebuild every complete CRL (and an empty delta when deltas are on). Returns warnings.

    Vault's rules: a disabled CRL is not rebuilt unless forced (rotate, config
    change), and then it is signed empty.
    """
    async with _lock(manager):
        return await _rebuild_locked(storage, force)


async def _rebuild_locked(storage: Storage, force: bool) -> list[str]:
    config = await load_config(storage)
    dirty = await storage.get(DIRTY_KEY)
    if config.disable and not force:
        await _clear_marker(storage, DIRTY_KEY, dirty)
        return []
    # Snapshot the WAL before listing revocations: every snapshotted entry is then on
    # the new complete CRL; later ones stay in the WAL for the next delta.
    wal = [n for n in await storage.list(WAL_PREFIX) if not n.endswith("/")]
    issuers = await store.list_issuers(storage)
    groups, index = _groups(issuers)
    default_id = (await store.get_issuers_config(storage)).default
    assigned = {} if config.disable else await _stored_entries(storage, issuers, index, default_id)
    for slot, revoked_issuers in _assign([], issuers, index, default_id).items():
        entries = assigned.get(slot)
        if entries is None:
            entries = assigned[slot] = EncodedEntries()
        for entry in revoked_issuers:
            entries.add(entry)
    warnings: list[str] = []
    for slot, group in enumerate(groups):
        if not group.signer:
            warnings.append(f"no issuer among {', '.join(group.members)} has the crl-signing usage; skipped")
            continue
        await _sign_group(storage, group, assigned.get(slot) or EncodedEntries(), config, delta_base=None)
    for name in wal:
        await storage.delete(WAL_PREFIX + name)
    await _clear_marker(storage, DIRTY_KEY, dirty)
    if config.enable_delta and not config.disable:
        warnings += await _rebuild_delta_locked(storage)
    return warnings


async def rebuild_delta(storage: Storage, manager: RevocationManager | None = None) -> list[str]:
    """Sign a delta CRL per group: the WAL entries, based on the group's last complete CRL."""
    async with _lock(manager):
        return await _rebuild_delta_locked(storage)


async def _rebuild_delta_locked(storage: Storage) -> list[str]:
    config = await load_config(storage)
    dirty = await storage.get(DELTA_DIRTY_KEY)
    if config.disable or not config.enable_delta:
        await _clear_marker(storage, DELTA_DIRTY_KEY, dirty)
        return []
    issuers = await store.list_issuers(storage)
    groups, index = _groups(issuers)
    default_id = (await store.get_issuers_config(storage)).default
    records: list[RevokedRecord] = []
    for name in await storage.list(WAL_PREFIX):
        record = None if name.endswith("/") else await load_revoked(storage, name)
        if record is not None:
            records.append(record)
    assigned = _assign(records, [], index, default_id) if records else {}
    warnings: list[str] = []
    for slot, group in enumerate(groups):
        if not group.signer:
            continue
        states = [await load_state(storage, m) for m in group.members]
        base = max(int(state.get("full_number", 0)) for state in states)
        if base == 0:
            warnings.append("no complete CRL to base a delta CRL on; rebuild the complete CRL first")
            continue
        await _sign_group(storage, group, assigned.get(slot, []), config, delta_base=base)
    await _clear_marker(storage, DELTA_DIRTY_KEY, dirty)
    return warnings


async def _full_owed(storage: Storage, issuer_id: str) -> tuple[bool, bool]:
    """(rebuild needed, CRL missing): missing, past NextUpdate, or a revocation not on it yet."""
    missing = await storage.get(FULL_PREFIX + issuer_id) is None
    entry = await store.fetch_issuer(storage, issuer_id)
    if entry is None or not entry.key_id:
        return False, missing  # an issuer without a key here never has a CRL of its own
    if missing:  # a rebuild cannot help an issuer that may not sign CRLs (or a keyless group)
        return "crl-signing" in entry.usage, True
    config = await load_config(storage)
    state = await load_state(storage, issuer_id)
    expired = not config.disable and float(state.get("next_update", 0)) <= now()
    return expired or await storage.get(DIRTY_KEY) is not None, False


async def crl_der(
    storage: Storage, manager: RevocationManager | None, issuer_id: str, *, delta: bool
) -> bytes:
    """The stored CRL of one issuer, rebuilt first when owed.

    The need is checked again under the rebuild lock, so a crowd of clients
    fetching an expired CRL at once causes one rebuild, not one each.
    """
    if (await _full_owed(storage, issuer_id))[0]:
        async with _lock(manager):
            owed, missing = await _full_owed(storage, issuer_id)
            if owed:
                await _rebuild_locked(storage, force=missing)
    if not delta:
        return await storage.get(FULL_PREFIX + issuer_id) or b""
    if await storage.get(DELTA_DIRTY_KEY) is not None:
        async with _lock(manager):
            if await storage.get(DELTA_DIRTY_KEY) is not None:
                await _rebuild_delta_locked(storage)
    return await storage.get(DELTA_PREFIX + issuer_id) or b""


async def _clear_marker(storage: Storage, key: str, seen: bytes | None) -> None:
    """Delete a dirty marker unless it changed since ``seen`` was read (a newer revocation)."""
    if seen is None:
        return
    async with storage.transaction() as txn:
        if await txn.get(key) == seen:
            await txn.delete(key)


# -- revoking -------------------------------------------------------------------------------


def revoked_response(record: RevokedRecord) -> Response:
    return Response(
        data={
            "revocation_time": record.revocation_time,
            "revocation_time_rfc3339": record.revocation_time_rfc3339,
            "state": "revoked",
        }
    )


async def revoke_certificate(
    storage: Storage, manager: RevocationManager, cert: x509.Certificate, issuer_id: str = ""
) -> Response:
    """Record ``cert`` as revoked and get it onto the CRL (Vault's ``revokeCert``)."""
    serial = store.serial_to_str(cert.serial_number)
    issuers = await store.list_issuers(storage)
    for entry in issuers:
        if entry.serial_number == serial and entry.cert() == cert:
            raise UserError(f"adding issuer (id: {entry.id}) to its own CRL is not allowed")
    async with manager.revoke_lock:
        existing = await load_revoked(storage, serial)
        if existing is not None:
            return revoked_response(existing)
        not_after = cert.not_valid_after_utc.timestamp()
        if not_after < now() + 2:  # leases have second granularity: a little wiggle room
            resp = Response()
            resp.add_warning(f"certificate with serial {serial} already expired; refusing to add to CRL")
            return resp
        known = {e.id for e in issuers}
        if issuer_id not in known or not _issued_by(
            cert, next(e for e in issuers if e.id == issuer_id).cert()
        ):
            issuer_id = next((e.id for e in issuers if _issued_by(cert, e.cert())), "")
        moment = now()
        record = RevokedRecord(serial, int(moment), rfc3339(moment), issuer_id, int(not_after))
        config = await load_config(storage)
        async with storage.transaction() as txn:
            if await txn.get(REVOKED_PREFIX + serial) is not None:  # another process won the race
                raced = await load_revoked(txn, serial)
                assert raced is not None
                return revoked_response(raced)
            await put_json(txn, REVOKED_PREFIX + serial, asdict(record))
            marker = json.dumps({"serial": serial, "at": moment}).encode()
            if config.auto_rebuild and config.enable_delta:
                await txn.put(WAL_PREFIX + serial, b"{}")
                await txn.put(DELTA_DIRTY_KEY, marker)
            elif config.auto_rebuild:
                await txn.put(DIRTY_KEY, marker)
    resp = revoked_response(record)
    if not config.auto_rebuild:
        try:
            warnings = await rebuild(storage, manager)
        except UserError as err:
            raise UserError(f"Error during CRL building: {err}") from err
        except StrongroomError:
            raise
        except Exception as err:
            raise StrongroomError(f"error encountered during CRL building: {err}") from err
        for number, warning in enumerate(warnings, 1):
            resp.add_warning(f"Warning {number} during CRL rebuild: {warning}")
    else:
        manager.schedule("delta" if config.enable_delta else "full")
    return resp


# -- lease revocation -----------------------------------------------------------------------


async def revoke_lease(backend: Any, req: Request) -> Response | None:
    """Revoke the certificate behind a PKI lease (``generate_lease=true``).

    Like Vault's secret revoke: a tidied (missing), already revoked or expired
    certificate is not an error — there is nothing left to undo.
    """
    if req.secret is None:
        raise StrongroomError("secret is nil in request")
    internal = req.secret.internal_data or {}
    serial = internal.get("serial_number") or internal.get("serial")
    if not serial:
        raise StrongroomError("could not find serial in internal secret data")
    storage = req.storage or backend.storage
    stored = await store.load_certificate(storage, str(serial))
    if stored is None:
        return None
    try:
        basic = stored.certificate.extensions.get_extension_for_class(x509.BasicConstraints).value
        if basic.ca:
            return None  # compatibility: CAs issued with leases are never revoked by them
    except x509.ExtensionNotFound:
        pass
    resp = await revoke_certificate(storage, manager_for(backend), stored.certificate, stored.issuer_id)
    return None if resp.data is None else resp


def revoke_lease_handler(backend: Any) -> Callable[[Request, FieldData], Awaitable[Response | None]]:
    """The ``Operation.REVOKE`` handler for issue/sign paths (wired by P2's paths_issue)."""

    async def handler(req: Request, _data: FieldData) -> Response | None:
        return await revoke_lease(backend, req)

    return handler
