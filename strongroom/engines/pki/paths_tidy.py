"""tidy, tidy-status, tidy-cancel and config/auto-tidy: removing what has expired.

Tidy runs as a background asyncio task and answers 202 at once, as Vault does.
The one rule that matters for security (CVE-2021-29653): a revoked entry is only
removed once its certificate expired more than ``safety_buffer`` ago, so a
certificate revoked before its expiry stays on the CRL and OCSP keeps saying
``revoked`` until then, whatever tidy is asked to do. An entry whose expiry we
cannot establish is kept.

The work goes page by page through storage (so millions of certificates never
sit in memory at once) and yields to the event loop between entries; the
``pause_duration`` option adds a sleep per entry to spread the load, and
``tidy-cancel`` is honoured between entries.
"""

from __future__ import annotations

import asyncio
import json
import re
import weakref
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from strongroom.durations import format_duration
from strongroom.engines.pki import revocation, store
from strongroom.engines.pki.acme.tidy import tidy_acme
from strongroom.framework import Field, FieldData, FieldType, Path, PathOperation
from strongroom.logical.errors import UserError
from strongroom.logical.request import Operation, Request, Response
from strongroom.logical.storage import Storage, get_json, put_json

if TYPE_CHECKING:
    from strongroom.engines.pki.backend import PkiBackend

AUTO_TIDY_KEY = "config/auto-tidy"
LAST_RUN_KEY = "config/auto-tidy-last-run"
PAGE = 500
STARTED = (
    "Tidy operation successfully started. Any information from the operation will be printed to Vault's "
    "server logs."
)
ANY_TIDY = (
    "tidy_cert_store / tidy_revoked_certs / tidy_revoked_cert_issuer_associations / tidy_expired_issuers / "
    "tidy_move_legacy_ca_bundle / tidy_revocation_queue / tidy_cross_cluster_revoked_certs / tidy_acme"
)
FLAGS = (
    "tidy_cert_store",
    "tidy_revoked_certs",
    "tidy_revoked_cert_issuer_associations",
    "tidy_expired_issuers",
    "tidy_move_legacy_ca_bundle",
    "tidy_acme",
    "tidy_revocation_queue",
    "tidy_cross_cluster_revoked_certs",
    "tidy_cert_metadata",
    "tidy_cmpv2_nonce_store",
)
BUFFERS = {  # name -> default seconds
    "safety_buffer": 72 * 3600,
    "issuer_safety_buffer": 365 * 24 * 3600,
    "revocation_queue_safety_buffer": 48 * 3600,
    "acme_account_safety_buffer": 30 * 24 * 3600,
}
_PAUSE_TERM = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_PAUSE_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


class TidyCancelled(Exception):
    pass


def parse_pause(text: str) -> float:
    """A Go duration or bare seconds as float seconds (sub-second pauses are meaningful)."""
    text = text.strip()
    if not text:
        return 0.0
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    if text.startswith("-"):
        raise ValueError("negative")
    total, pos = 0.0, 0
    for match in _PAUSE_TERM.finditer(text):
        if match.start() != pos:
            raise ValueError(f"time: invalid duration {text!r}")
        total += float(match.group(1)) * _PAUSE_UNITS[match.group(2)]
        pos = match.end()
    if pos != len(text):
        raise ValueError(f"time: invalid duration {text!r}")
    return total


def _go_duration(seconds: float) -> str:
    whole = int(seconds)
    if whole == seconds:
        return format_duration(whole)
    return f"{seconds * 1000:g}ms" if seconds < 1 else f"{seconds:g}s"


@dataclass
class TidyConfig:
    enabled: bool = False
    interval_duration: int = 12 * 3600
    min_startup_backoff_duration: int = 300
    max_startup_backoff_duration: int = 900
    flags: dict[str, bool] = field(default_factory=lambda: dict.fromkeys(FLAGS, False))
    buffers: dict[str, int] = field(default_factory=lambda: dict(BUFFERS))
    pause_duration: float = 0.0
    maintain_stored_certificate_counts: bool = False
    publish_stored_certificate_count_metrics: bool = False

    def any_enabled(self) -> bool:
        return any(self.flags.values())

    def view(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "enabled": self.enabled,
            "interval_duration": self.interval_duration,
            "min_startup_backoff_duration": self.min_startup_backoff_duration,
            "max_startup_backoff_duration": self.max_startup_backoff_duration,
            "pause_duration": _go_duration(self.pause_duration),
            "maintain_stored_certificate_counts": self.maintain_stored_certificate_counts,
            "publish_stored_certificate_count_metrics": self.publish_stored_certificate_count_metrics,
        }
        out.update(self.flags)
        out.update(self.buffers)
        return out

    @classmethod
    def from_view(cls, raw: dict[str, Any] | None) -> TidyConfig:
        config = cls()
        raw = raw or {}
        for name in (
            "enabled",
            "maintain_stored_certificate_counts",
            "publish_stored_certificate_count_metrics",
        ):
            setattr(config, name, bool(raw.get(name, getattr(config, name))))
        for name in ("interval_duration", "min_startup_backoff_duration", "max_startup_backoff_duration"):
            setattr(config, name, int(raw.get(name, getattr(config, name))))
        config.flags = {f: bool(raw.get(f, False)) for f in FLAGS}
        config.buffers = {b: int(raw.get(b, d)) for b, d in BUFFERS.items()}
        config.pause_duration = parse_pause(str(raw.get("pause_duration", "0s")))
        return config


@dataclass
class TidyStatus:
    state: str = "Inactive"
    config: TidyConfig | None = None
    error: str | None = None
    time_started: float | None = None
    time_finished: float | None = None
    message: str | None = None
    counts: dict[str, int] = field(default_factory=dict)


class Tidier:
    """One mount's tidy runner and status (Vault keeps the same in memory only)."""

    def __init__(self, backend: PkiBackend) -> None:
        self.storage: Storage = backend.storage
        self.manager = revocation.manager_for(backend)
        self.status = TidyStatus()
        self.task: asyncio.Task[None] | None = None
        self.cancel_requested = False

    def running(self) -> bool:
        return self.task is not None and not self.task.done()

    def start(self, config: TidyConfig) -> None:
        self.cancel_requested = False
        self.status = TidyStatus(state="Running", config=config, time_started=revocation.now())
        self.status.counts = dict.fromkeys(
            ("cert_store_deleted_count", "revoked_cert_deleted_count", "missing_issuer_cert_count"), 0
        )
        self.task = asyncio.get_running_loop().create_task(self._run(config))

    async def _run(self, config: TidyConfig) -> None:
        try:
            if config.flags["tidy_cert_store"]:
                await self._tidy_cert_store(config)
            self._check_cancel()
            if config.flags["tidy_revoked_certs"] or config.flags["tidy_revoked_cert_issuer_associations"]:
                await self._tidy_revoked(config)
            self._check_cancel()
            if config.flags["tidy_expired_issuers"]:
                await self._tidy_expired_issuers(config)
            self._check_cancel()
            if config.flags["tidy_acme"]:
                counts = await tidy_acme(
                    self.storage,
                    config.buffers["safety_buffer"],
                    config.buffers["acme_account_safety_buffer"],
                )
                self.status.counts.update(asdict(counts))
        except TidyCancelled:
            self._finish("Cancelled")
        except Exception as err:
            revocation.log.exception("error running tidy")
            self.status.error = str(err)
            self._finish("Error")
        else:
            self.status.message = None
            self._finish("Finished")
            await put_json(self.storage, LAST_RUN_KEY, {"time": revocation.now()})

    def _finish(self, state: str) -> None:
        self.status.state = state
        self.status.time_finished = revocation.now()

    def _check_cancel(self) -> None:
        if self.cancel_requested:
            self.cancel_requested = False
            raise TidyCancelled()

    async def _between(self, config: TidyConfig, index: int) -> None:
        self._check_cancel()
        if config.pause_duration > 0:
            await asyncio.sleep(config.pause_duration)
        elif index % 64 == 0:
            await asyncio.sleep(0)

    async def _pages(self, prefix: str) -> Any:
        after = ""
        while True:
            names = await self.storage.list_page(prefix, after, PAGE)
            if not names:
                return
            for name in names:
                if not name.endswith("/"):
                    yield name
            after = names[-1]

    def _expired_past(self, not_after: float, buffer: int) -> bool:
        return not_after > 0 and revocation.now() - not_after > buffer

    async def _tidy_cert_store(self, config: TidyConfig) -> None:
        index = 0
        async for serial in self._pages("certs/"):
            index += 1
            self.status.message = f"Tidying certificate store: checking entry {index}"
            await self._between(config, index)
            try:
                stored = await store.load_certificate(self.storage, serial)
            except Exception:  # kept: an entry we cannot read is not proven expired
                revocation.log.warning("tidy: stored certificate %s could not be parsed; kept", serial)
                continue
            if stored is None:
                continue
            not_after = stored.certificate.not_valid_after_utc.timestamp()
            if self._expired_past(not_after, config.buffers["safety_buffer"]):
                await self.storage.delete("certs/" + serial)
                self.status.counts["cert_store_deleted_count"] += 1

    async def _tidy_revoked(self, config: TidyConfig) -> None:
        issuers = {e.id for e in await store.list_issuers(self.storage)}
        rebuild = False
        index = 0
        async for serial in self._pages(revocation.REVOKED_PREFIX):
            index += 1
            self.status.message = f"Tidying revoked certificates: checking certificate {index}"
            await self._between(config, index)  # never sleeps holding the revocation lock
            async with self.manager.revoke_lock:
                rebuild = await self._tidy_one_revoked(config, serial, issuers) or rebuild
        if rebuild and not (await revocation.load_config(self.storage)).auto_rebuild:
            await revocation.rebuild(self.storage, self.manager)

    async def _tidy_one_revoked(self, config: TidyConfig, serial: str, issuers: set[str]) -> bool:
        """Fix or drop one revocation record; True when it left the CRL."""
        record = await revocation.load_revoked(self.storage, serial)
        if record is None:
            return False
        changed = False
        stored = None
        if record.issuer_id not in issuers or not record.not_after:
            stored = await store.load_certificate(self.storage, serial)
        if stored is not None and not record.not_after:
            record.not_after = int(stored.certificate.not_valid_after_utc.timestamp())
            changed = True
        if config.flags["tidy_revoked_cert_issuer_associations"] and record.issuer_id not in issuers:
            self.status.counts["missing_issuer_cert_count"] += 1
            found = (
                "" if stored is None else await revocation.find_issuer_of(self.storage, stored.certificate)
            )
            changed = changed or found != record.issuer_id
            record.issuer_id = found
        if config.flags["tidy_revoked_certs"] and self._expired_past(
            record.not_after, config.buffers["safety_buffer"]
        ):
            # only now, well past its expiry, may the serial leave the CRL (CVE-2021-29653)
            await self.storage.delete(revocation.REVOKED_PREFIX + serial)
            await self.storage.delete("certs/" + serial)
            self.status.counts["revoked_cert_deleted_count"] += 1
            return True
        if changed:
            await put_json(self.storage, revocation.REVOKED_PREFIX + serial, record.__dict__)
        return False

    async def _tidy_expired_issuers(self, config: TidyConfig) -> None:
        default = (await store.get_issuers_config(self.storage)).default
        removed = False
        for entry in await store.list_issuers(self.storage):
            not_after = entry.cert().not_valid_after_utc.timestamp()
            if entry.id == default or not self._expired_past(
                not_after, config.buffers["issuer_safety_buffer"]
            ):
                continue
            revocation.log.info("tidy: removing expired issuer %s (%s)", entry.id, entry.name)
            await store.delete_issuer(self.storage, entry.id)
            removed = True
        if removed:
            await store.rebuild_chains(self.storage)
            await revocation.rebuild(self.storage, self.manager)

    def view(self) -> dict[str, Any]:
        status = self.status
        data: dict[str, Any] = {
            "state": status.state,
            "error": status.error,
            "time_started": None,
            "time_finished": None,
            "message": status.message,
            "last_auto_tidy_finished": None,
            "internal_backend_uuid": None,
            "current_cert_store_count": None,
            "current_revoked_cert_count": None,
            "revocation_queue_deleted_count": None,
            "cross_revoked_cert_deleted_count": None,
            "total_acme_account_count": None,
            "acme_account_deleted_count": None,
            "acme_account_revoked_count": None,
            "acme_orders_deleted_count": None,
            "cert_metadata_deleted_count": None,
            "cmpv2_nonce_deleted_count": None,
            "cert_store_deleted_count": None,
            "revoked_cert_deleted_count": None,
            "missing_issuer_cert_count": None,
        }
        data.update(dict.fromkeys(FLAGS))
        data.update(dict.fromkeys(BUFFERS))
        data["pause_duration"] = None
        if status.config is None:
            return data
        data.update(status.config.flags)
        data.update(status.config.buffers)
        data["pause_duration"] = _go_duration(status.config.pause_duration)
        data.update(status.counts)
        data["time_started"] = revocation.rfc3339(status.time_started or 0)
        if status.time_finished is not None and status.state in ("Finished", "Error", "Cancelled"):
            data["time_finished"] = revocation.rfc3339(status.time_finished)
        if status.state != "Error":
            data["error"] = None
        return data


_TIDIERS: weakref.WeakKeyDictionary[Any, Tidier] = weakref.WeakKeyDictionary()


def tidier_for(backend: PkiBackend) -> Tidier:
    tidier = _TIDIERS.get(backend)
    if tidier is None:
        tidier = Tidier(backend)
        _TIDIERS[backend] = tidier
    return tidier


async def load_auto_tidy(storage: Storage) -> TidyConfig:
    return TidyConfig.from_view(await get_json(storage, AUTO_TIDY_KEY))


async def last_run(storage: Storage) -> float:
    raw = await get_json(storage, LAST_RUN_KEY)
    return float((raw or {}).get("time", 0.0))


def _config_from_fields(d: FieldData, base: TidyConfig, *, partial: bool) -> TidyConfig:
    """Apply the sent tidy fields to ``base`` (a full tidy request uses defaults for the rest)."""
    for name in FLAGS:
        value, sent = d.get_ok(name)
        if sent or not partial:
            base.flags[name] = bool(value)
    legacy, sent = d.get_ok("tidy_revocation_list")
    if sent and legacy:
        base.flags["tidy_revoked_certs"] = True
    for name, default in BUFFERS.items():
        value, sent = d.get_ok(name)
        if sent or not partial:
            seconds = int(value) if sent else default
            if seconds < 1:
                if partial:
                    raise UserError(f"given {name} must be at least one second; got: {value}")
                raise UserError(f"{name} must be greater than zero")
            base.buffers[name] = seconds
    pause, sent = d.get_ok("pause_duration")
    if sent:
        try:
            base.pause_duration = parse_pause(str(pause))
        except ValueError as err:
            if "negative" in str(err):
                raise UserError("received invalid, negative pause_duration") from None
            raise UserError(f"Error parsing pause_duration: {err}") from None
    if base.flags["tidy_cert_metadata"]:
        raise UserError("certificate metadata is only supported on Vault Enterprise")
    return base


def paths(backend: PkiBackend) -> list[Path]:
    tidier = tidier_for(backend)

    async def auto_tidy_hook() -> None:
        config = await load_auto_tidy(tidier.storage)
        if not config.enabled or tidier.running() or not config.any_enabled():
            return
        # claim the run in a transaction: in a multi-process node only one worker starts it
        async with tidier.storage.transaction() as txn:
            if revocation.now() - await last_run(txn) < config.interval_duration:
                return
            await put_json(txn, LAST_RUN_KEY, {"time": revocation.now()})
        tidier.start(config)

    tidier.manager.periodic_hooks.append(auto_tidy_hook)

    async def tidy(req: Request, d: FieldData) -> Response | None:
        config = _config_from_fields(d, TidyConfig(enabled=True, interval_duration=0), partial=False)
        if tidier.running():
            return Response(warnings=["Tidy operation already in progress."])
        await put_json(tidier.storage, LAST_RUN_KEY, {"time": revocation.now()})
        tidier.start(config)
        resp = Response(status=202)
        if config.any_enabled():
            resp.add_warning(STARTED)
        else:
            resp.add_warning(
                "Manual tidy requested but no tidy operations were set. Enable at least one tidy operation "
                f"to be run ({ANY_TIDY})."
            )
        return resp

    async def status_view(storage: Storage) -> Response:
        data = tidier.view()
        ran = await last_run(storage)
        data["last_auto_tidy_finished"] = revocation.rfc3339(ran) if ran else "0001-01-01T00:00:00Z"
        return Response(data=data)

    async def tidy_status(req: Request, d: FieldData) -> Response | None:
        return await status_view(req.storage or tidier.storage)

    async def tidy_cancel(req: Request, d: FieldData) -> Response | None:
        if not tidier.running():
            return Response(warnings=["Tidy operation cannot be cancelled as none is currently running."])
        tidier.cancel_requested = True
        tidier.status.state = "Cancelling"
        return await status_view(req.storage or tidier.storage)

    async def read_auto(req: Request, d: FieldData) -> Response | None:
        return Response(data=(await load_auto_tidy(req.storage or tidier.storage)).view())

    async def write_auto(req: Request, d: FieldData) -> Response | None:
        storage = req.storage or tidier.storage
        config = _config_from_fields(d, await load_auto_tidy(storage), partial=True)
        enabled, sent = d.get_ok("enabled")
        turning_on = sent and bool(enabled) and not config.enabled
        if sent:
            config.enabled = bool(enabled)
        for name in ("min_startup_backoff_duration", "max_startup_backoff_duration"):
            value, sent = d.get_ok(name)
            if sent:
                if int(value) < 1:
                    raise UserError(f"{name} must be at least 1 second: parsed: {value}s")
                setattr(config, name, int(value))
        if config.min_startup_backoff_duration > config.max_startup_backoff_duration:
            raise UserError(
                f"max_startup_backoff_duration {config.max_startup_backoff_duration}s must be greater or equal "
                f"to min_startup_backoff_duration {config.min_startup_backoff_duration}s"
            )
        interval, sent = d.get_ok("interval_duration")
        if sent:
            config.interval_duration = int(interval)
        for name in ("maintain_stored_certificate_counts", "publish_stored_certificate_count_metrics"):
            value, sent = d.get_ok(name)
            if sent:
                setattr(config, name, bool(value))
        if config.enabled and not config.any_enabled():
            raise UserError(
                "Auto-tidy enabled but no tidy operations were requested. Enable at least one tidy operation "
                f"to be run ({ANY_TIDY})."
            )
        if config.publish_stored_certificate_count_metrics and not config.maintain_stored_certificate_counts:
            raise UserError(
                "Can not publish a running storage metrics count to metrics without first maintaining that "
                "count.  Enable `maintain_stored_certificate_counts` to enable "
                "`publish_stored_certificate_count_metrics`."
            )
        await storage.put(AUTO_TIDY_KEY, json.dumps(config.view(), sort_keys=True).encode())
        if turning_on:
            await put_json(storage, LAST_RUN_KEY, {"time": revocation.now()})
        if config.enabled:
            tidier.manager.ensure_ticking()
        return Response(data=config.view())

    tidy_fields: dict[str, Field] = {
        name: Field(FieldType.BOOL, f"Set to true to run {name}.") for name in FLAGS
    }
    tidy_fields["tidy_revocation_list"] = Field(FieldType.BOOL, "Deprecated alias of tidy_revoked_certs.")
    tidy_fields["tidy_invalid_certs"] = Field(FieldType.BOOL, "Accepted for OpenBao compatibility; no-op.")
    for name, default in BUFFERS.items():
        tidy_fields[name] = Field(
            FieldType.DURATION, f"{name} (seconds or a duration string).", default=default
        )
    tidy_fields["pause_duration"] = Field(FieldType.STRING, "Pause between entries.", default="0s")
    auto_fields = dict(tidy_fields)
    auto_fields.update(
        {
            "enabled": Field(FieldType.BOOL, "Set to true to enable automatic tidy operations."),
            "interval_duration": Field(FieldType.DURATION, "Time between auto-tidy runs.", default=43200),
            "min_startup_backoff_duration": Field(FieldType.DURATION, "Minimum start-up delay.", default=300),
            "max_startup_backoff_duration": Field(FieldType.DURATION, "Maximum start-up delay.", default=900),
            "maintain_stored_certificate_counts": Field(
                FieldType.BOOL, "Keep a count of stored certificates."
            ),
            "publish_stored_certificate_count_metrics": Field(
                FieldType.BOOL, "Publish the count as metrics."
            ),
        }
    )
    op = PathOperation
    return [
        Path(
            "tidy",
            fields=tidy_fields,
            operations={Operation.UPDATE: op(tidy, "Start a tidy operation.")},
            synopsis="Tidy up the backend by removing expired certificates, revocation information, or both.",
        ),
        Path(
            "tidy-status",
            operations={Operation.READ: op(tidy_status, "Status of the current or last tidy operation.")},
            synopsis="Returns the status of the tidy operation.",
        ),
        Path(
            "tidy-cancel",
            operations={Operation.UPDATE: op(tidy_cancel, "Cancel the running tidy operation.")},
            synopsis="Cancels a currently running tidy operation.",
        ),
        Path(
            "config/auto-tidy",
            fields=auto_fields,
            operations={
                Operation.READ: op(read_auto, "Read the auto-tidy configuration."),
                Operation.UPDATE: op(write_auto, "Configure automatic tidy."),
            },
            synopsis="Modifies the current configuration for automatic tidy execution.",
        ),
    ]
