"""The sys/ endpoints that answer whether sealed or not: init, seal-status, unseal, seal,
step-down, health, leader, generate-root and rekey.

Vault serves these from its HTTP layer rather than the system backend, so the bodies are
bare JSON (no envelope) and the status codes and error texts follow ``http/sys_*.go`` and
``vault/{generate_root,rekey}.go``. Core routes ``sys/<rel>`` here, before its sealed check,
whenever one of these paths matches.

Unseal, generate-root and rekey progress lives in memory on this node only and is
forgotten when the node seals. Key shares are compared in constant time and never
logged or echoed in errors; the shares are the authorisation for generate-root and rekey,
so those endpoints take no token.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
import logging
import re
import secrets
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from strongroom.core.seal import (
    KEY_BYTES,
    SealConfig,
    ShamirSeal,
    ShareCollector,
    combine_keys,
    split_key,
    validate_shares,
)
from strongroom.core.tokens import random_base62
from strongroom.framework.backend import FrameworkBackend
from strongroom.framework.fields import Field, FieldData, FieldType
from strongroom.framework.path import Path, PathOperation, operations
from strongroom.logical.backend import BackendConfig
from strongroom.logical.errors import (
    CodedError,
    Sealed,
    StrongroomError,
    UnsupportedOperation,
    UserError,
)
from strongroom.logical.request import RawResponse, Request, Response

if TYPE_CHECKING:
    from strongroom.core.core import Core

log = logging.getLogger("strongroom.core.seal")

VERSION = "1.16.3"
BUILD_DATE = "2024-05-29T14:28:42Z"
OTP_LENGTH = 28  # len("hvs.") + 24: the OTP is XORed byte for byte with the root token
KEY_MIN = 16  # Vault's barrier.KeyLength() minimum ...
KEY_MAX = 32 + 1  # ... and maximum plus the one-byte Shamir share overhead

_WRONG_SHARES = "root key verification failed: the key shares do not match this server's root key"
_CODE_RE = re.compile(r"^[+-]?[0-9]{1,9}$")
_TRUE = {"1", "t", "T", "TRUE", "true", "True"}
_FALSE = {"0", "f", "F", "FALSE", "false", "False"}

_HEALTH_CODES = (
    ("standbycode", 429),
    ("activecode", 200),
    ("drsecondarycode", 472),
    ("performancestandbycode", 473),
    ("sealedcode", 503),
    ("uninitcode", 501),
    ("removedcode", 530),
    ("haunhealthycode", 474),
)


def _json(body: dict[str, Any], status: int = 200) -> Response:
    """A bare JSON body with a chosen status, as Vault's ``respondOk`` writes it."""
    raw = json.dumps(body, separators=(",", ":")).encode() + b"\n"
    return Response(raw=RawResponse(body=raw, content_type="application/json", status=status))


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def decode_share(text: str, missing: str) -> bytes:
    """Hex first (only if the length is plausible for a share), then standard base64."""
    if not text:
        raise UserError(missing)
    key = b""
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if not KEY_MIN <= len(key) <= KEY_MAX:
        try:
            key = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise UserError("'key' must be a valid hex or base64 string") from None
    return key


def check_share_length(key: bytes) -> None:
    if len(key) < KEY_MIN:
        raise UserError(f"key is shorter than minimum {KEY_MIN} bytes")
    if len(key) > KEY_MAX:
        raise UserError(f"key is longer than maximum {KEY_MAX} bytes")


def encode_root_token(token: str, otp: str) -> str:
    """Vault's roottoken.EncodeToken: unpadded standard base64 of token XOR otp."""
    token_bytes, otp_bytes = token.encode(), otp.encode()
    if len(token_bytes) != len(otp_bytes):
        raise StrongroomError("xor of root token failed: length of byte slices is not equivalent")
    mixed = bytes(a ^ b for a, b in zip(token_bytes, otp_bytes, strict=True))
    return base64.b64encode(mixed).decode().rstrip("=")


def _is_duplicate(collector: ShareCollector, key: bytes) -> bool:
    duplicate = False
    for existing in collector.parts:
        duplicate |= len(existing) == len(key) and hmac.compare_digest(existing, key)
    return duplicate


@dataclass
class _RootGeneration:
    nonce: str
    otp: str
    shares: ShareCollector = field(default_factory=ShareCollector)


@dataclass
class _Rekey:
    nonce: str
    config: SealConfig  # the new shares / threshold
    require_verification: bool
    shares: ShareCollector = field(default_factory=ShareCollector)
    verification_nonce: str = ""
    verification_key: bytearray | None = None
    verification_shares: ShareCollector = field(default_factory=ShareCollector)

    def wipe(self) -> None:
        self.shares.reset()
        self.verification_shares.reset()
        if self.verification_key is not None:
            self.verification_key[:] = bytes(len(self.verification_key))
            self.verification_key = None


def _shares_fields() -> dict[str, Field]:
    return {
        "secret_shares": Field(FieldType.INT, "Number of key shares to split the new unseal key into."),
        "secret_threshold": Field(FieldType.INT, "Number of shares required to rebuild the unseal key."),
        "stored_shares": Field(FieldType.INT, "Deprecated; ignored for the Shamir seal."),
        "pgp_keys": Field(FieldType.COMMA_LIST, "PGP keys to encrypt the shares with (not supported)."),
    }


_KEY_FIELDS = {
    "key": Field(FieldType.STRING, "One key share, hex or base64.", sensitive=True),
    "nonce": Field(FieldType.STRING, "The nonce of the operation in progress."),
}


class SealBackend(FrameworkBackend):
    """init / seal / unseal / health / leader / generate-root / rekey, served while sealed too."""

    backend_type = "system"

    def __init__(self, config: BackendConfig, core: Core) -> None:
        self.core = core
        self._lock = asyncio.Lock()
        self._root_gen: _RootGeneration | None = None
        self._rekey: _Rekey | None = None
        super().__init__(config)
        core.on_sealed.append(self._forget_progress)

    async def _forget_progress(self) -> None:
        """On seal: drop generate-root and rekey progress (never takes the lock)."""
        if self._root_gen is not None:
            self._root_gen.shares.reset()
        self._root_gen = None
        if self._rekey is not None:
            self._rekey.wipe()
        self._rekey = None

    async def handle_request(self, req: Request) -> Response | None:
        try:
            return await super().handle_request(req)
        except UnsupportedOperation:
            raise CodedError(405) from None  # Vault: 405 {"errors":[]}

    # -- shared helpers -----------------------------------------------------------------------

    async def _seal_config(self) -> SealConfig | None:
        seal = self.core.seal_impl
        return seal.config or await seal.load_config()

    def _require_unsealed(self) -> None:
        if self.core.sealed:
            raise Sealed()

    def _root_key_matches(self, candidate: bytes) -> bool:
        """Constant-time comparison with the barrier's in-memory root key (Vault's VerifyRoot)."""
        state = self.core.barrier._shared.state  # no public verify method on Barrier yet
        if state is None:
            raise Sealed()
        return len(candidate) == len(state.root_key) and hmac.compare_digest(bytes(state.root_key), candidate)

    async def _shares_open_barrier(self, parts: list[bytes], config: SealConfig) -> bool:
        """Rebuild the unseal key from shares and check that it yields this barrier's root key."""
        unseal_key = combine_keys(parts, config)
        try:
            root_key = await self.core.seal_impl.root_key_from(unseal_key)
        except UserError:
            return False
        return self._root_key_matches(root_key)

    async def _seal_status(self) -> dict[str, Any]:
        core = self.core
        initialized = await core.is_initialized()
        config = await self._seal_config() if initialized else None
        sealed = core.sealed
        progress = core.unseal_progress.progress if sealed else 0
        status: dict[str, Any] = {
            "type": "shamir",
            "initialized": initialized,
            "sealed": sealed,
            "t": config.secret_threshold if config else 0,
            "n": config.secret_shares if config else 0,
            "progress": progress,
            "nonce": core.unseal_progress.nonce if progress else "",
            "version": VERSION,
            "build_date": BUILD_DATE,
            "migration": False,
        }
        if not sealed:
            status["cluster_name"] = core.cluster_name
            status["cluster_id"] = core.cluster_id
        status["recovery_seal"] = False
        status["storage_type"] = core.storage_type
        status["removed_from_cluster"] = False
        return status

    # -- paths --------------------------------------------------------------------------------

    def build_paths(self) -> list[Path]:
        return [
            Path(
                "init",
                operations(
                    read=PathOperation(self._init_status, summary="Whether the server is initialised."),
                    update=PathOperation(self._init, summary="Initialise a new server."),
                ),
                fields={
                    **_shares_fields(),
                    "root_token_pgp_key": Field(
                        FieldType.STRING, "PGP key for the root token (not supported)."
                    ),
                    "recovery_shares": Field(FieldType.INT, "Auto-unseal only (not supported)."),
                    "recovery_threshold": Field(FieldType.INT, "Auto-unseal only (not supported)."),
                    "recovery_pgp_keys": Field(FieldType.COMMA_LIST, "Auto-unseal only (not supported)."),
                },
                synopsis="Initialise the server: create the unseal key shares and the root token.",
                unauthenticated=True,
            ),
            Path(
                "seal-status",
                operations(read=PathOperation(self._seal_status_op, summary="Seal status.")),
                synopsis="Whether the server is sealed, and the unseal progress.",
                unauthenticated=True,
            ),
            Path(
                "unseal",
                operations(update=PathOperation(self._unseal, summary="Submit one unseal key share.")),
                fields={
                    "key": Field(FieldType.STRING, "One unseal key share, hex or base64.", sensitive=True),
                    "reset": Field(FieldType.BOOL, "Discard the shares submitted so far."),
                    "migrate": Field(FieldType.BOOL, "Seal migration (not supported)."),
                },
                synopsis="Submit unseal key shares; the server unseals once the threshold is reached.",
                unauthenticated=True,
            ),
            Path(
                "seal",
                operations(update=PathOperation(self._seal, summary="Seal the server.")),
                synopsis="Seal the server (root or sudo on sys/seal).",
                sudo=True,
            ),
            Path(
                "step-down",
                operations(update=PathOperation(self._step_down, summary="Give up active duty.")),
                synopsis="Step down from active duty (a no-op on a single node).",
                sudo=True,
            ),
            Path(
                "health",
                operations(read=PathOperation(self._health, summary="Health check.")),
                fields={
                    "standbyok": Field(FieldType.STRING, "Answer the active code on a standby.", query=True),
                    "perfstandbyok": Field(
                        FieldType.STRING, "Answer the active code on a performance standby.", query=True
                    ),
                    **{
                        name: Field(FieldType.STRING, f"Status code to answer (default {code}).", query=True)
                        for name, code in _HEALTH_CODES
                    },
                },
                synopsis="Health of this node; the status code tells the state.",
                unauthenticated=True,
            ),
            Path(
                "leader",
                operations(read=PathOperation(self._leader, summary="HA leader status.")),
                synopsis="High-availability status and the current leader.",
                unauthenticated=True,
            ),
            Path(
                "generate-root/attempt",
                operations(
                    read=PathOperation(self._root_attempt_status, summary="Root generation progress."),
                    update=PathOperation(self._root_attempt_start, summary="Start a root generation."),
                    delete=PathOperation(self._root_attempt_cancel, summary="Cancel the root generation."),
                ),
                fields={
                    "otp": Field(
                        FieldType.STRING, "28-character OTP to encode the token with.", sensitive=True
                    ),
                    "pgp_key": Field(FieldType.STRING, "PGP key to encrypt the token with (not supported)."),
                },
                synopsis="Generate a new root token from a quorum of unseal key shares.",
                unauthenticated=True,
            ),
            Path(
                "generate-root/update",
                operations(update=PathOperation(self._root_update, summary="Submit one unseal key share.")),
                fields=dict(_KEY_FIELDS),
                synopsis="Submit a key share for the root generation in progress.",
                unauthenticated=True,
            ),
            Path(
                "rekey/init",
                operations(
                    read=PathOperation(self._rekey_status_op, summary="Rekey progress."),
                    update=PathOperation(self._rekey_start, summary="Start a rekey."),
                    delete=PathOperation(self._rekey_cancel, summary="Cancel the rekey."),
                ),
                fields={
                    **_shares_fields(),
                    "backup": Field(FieldType.BOOL, "Back up PGP-encrypted shares (needs pgp_keys)."),
                    "require_verification": Field(
                        FieldType.BOOL, "Activate the new shares only after they are submitted back."
                    ),
                    "nonce": Field(FieldType.STRING, "Nonce of the rekey to cancel (optional)."),
                },
                synopsis="Replace the unseal key shares and the root key.",
                unauthenticated=True,
            ),
            Path(
                "rekey/update",
                operations(update=PathOperation(self._rekey_update, summary="Submit one current key share.")),
                fields=dict(_KEY_FIELDS),
                synopsis="Submit a current key share for the rekey in progress.",
                unauthenticated=True,
            ),
            Path(
                "rekey/verify",
                operations(
                    read=PathOperation(self._rekey_verify_status_op, summary="Verification progress."),
                    update=PathOperation(self._rekey_verify, summary="Submit one new key share."),
                    delete=PathOperation(self._rekey_verify_restart, summary="Restart the verification."),
                ),
                fields=dict(_KEY_FIELDS),
                synopsis="Prove the new key shares before they replace the old ones.",
                unauthenticated=True,
            ),
            *(
                Path(
                    f"rekey-recovery-key/{op}",
                    operations(
                        read=PathOperation(self._no_recovery_keys),
                        update=PathOperation(self._no_recovery_keys),
                        delete=PathOperation(self._no_recovery_keys),
                    ),
                    synopsis="Recovery keys exist only with auto-unseal seals.",
                    unauthenticated=True,
                )
                for op in ("init", "update", "verify")
            ),
        ]

    # -- init / seal-status / unseal ----------------------------------------------------------

    async def _init_status(self, req: Request, d: FieldData) -> Response:
        return _json({"initialized": await self.core.is_initialized()})

    async def _init(self, req: Request, d: FieldData) -> Response:
        if d["recovery_shares"] or d["recovery_threshold"] or d["recovery_pgp_keys"]:
            raise UserError("parameters specific to auto unseal seals present")
        if d["pgp_keys"]:
            raise UserError("pgp_keys is not supported: strongroom returns the key shares unencrypted")
        if d["root_token_pgp_key"]:
            raise UserError(
                "root_token_pgp_key is not supported: strongroom returns the root token unencrypted"
            )
        async with self._lock:
            parts, root_token = await self.core.initialize(d["secret_shares"], d["secret_threshold"])
        log.info("storage initialised with %d key shares", len(parts))
        return _json(
            {
                "keys": [p.hex() for p in parts],
                "keys_base64": [base64.b64encode(p).decode() for p in parts],
                "root_token": root_token,
            }
        )

    async def _seal_status_op(self, req: Request, d: FieldData) -> Response:
        return _json(await self._seal_status())

    async def _unseal(self, req: Request, d: FieldData) -> Response:
        core = self.core
        async with self._lock:
            if d["reset"]:
                if not core.sealed:
                    raise UserError("vault is unsealed")
                await core.submit_unseal_key(None, reset=True)
                return _json(await self._seal_status())
            key = decode_share(
                d["key"], "'key' must be specified in request body as JSON, or 'reset' set to true"
            )
            if d["migrate"]:
                raise UserError("can't perform a seal migration, no migration seal found")
            if not await core.is_initialized():
                raise UserError("Vault is not initialized")
            check_share_length(key)
            # Vault ignores a share it already holds (the progress stays where it was).
            if core.sealed and not _is_duplicate(core.unseal_progress, key):
                if core.unseal_progress.progress == 0:
                    core.unseal_progress.nonce = str(uuid.uuid4())
                await core.submit_unseal_key(key.hex())
                if not core.sealed:
                    log.info("unsealed with a quorum of key shares")
            return _json(await self._seal_status())

    # -- seal / step-down / leader / health ---------------------------------------------------

    async def _seal(self, req: Request, d: FieldData) -> Response | None:
        core = self.core
        if core.sealed:
            return None  # Vault: sealing a sealed node is a no-op
        await core.check_token(req, "sys/seal", sudo=True)
        async with self._lock:
            await core.seal()
        log.info("sealed on request")
        return None

    async def _step_down(self, req: Request, d: FieldData) -> Response | None:
        if self.core.sealed:
            return None
        await self.core.check_token(req, "sys/step-down", sudo=True)
        return None  # single node without HA: nothing to give up

    async def _leader(self, req: Request, d: FieldData) -> Response:
        # Not HA-enabled: Vault answers this before looking at the seal.
        return _json(
            {
                "ha_enabled": False,
                "is_self": False,
                "active_time": "0001-01-01T00:00:00Z",
                "leader_address": "",
                "leader_cluster_address": "",
                "performance_standby": False,
                "performance_standby_last_remote_wal": 0,
            }
        )

    async def _health(self, req: Request, d: FieldData) -> Response:
        raw = d.raw
        codes: dict[str, int] = {}
        for name in ("standbyok", "perfstandbyok"):
            value = raw.get(name)
            if value is not None and str(value) not in _TRUE | _FALSE:
                raise UserError()
        for name, default in _HEALTH_CODES:
            value = raw.get(name)
            if value is None:
                codes[name] = default
                continue
            text = str(value)
            if not _CODE_RE.match(text) or not 100 <= int(text) <= 999:
                raise UserError()  # Vault: 400 {"errors":[]}
            codes[name] = int(text)
        core = self.core
        initialized = await core.is_initialized()
        sealed = core.sealed
        if not initialized:
            status = codes["uninitcode"]
        elif sealed:
            status = codes["sealedcode"]
        else:
            status = codes["activecode"]  # never a standby: a single node is always active
        body: dict[str, Any] = {
            "initialized": initialized,
            "sealed": sealed,
            "standby": False,
            "performance_standby": False,
            "replication_performance_mode": "disabled",
            "replication_dr_mode": "disabled",
            "server_time_utc": int(time.time()),
            "version": VERSION,
            "enterprise": False,
        }
        if not sealed:
            body["cluster_name"] = core.cluster_name
            body["cluster_id"] = core.cluster_id
        body["echo_duration_ms"] = 0
        body["clock_skew_ms"] = 0
        body["replication_primary_canary_age_ms"] = 0
        return _json(body, status)

    # -- generate-root ------------------------------------------------------------------------

    async def _root_status(self, otp: str = "") -> dict[str, Any]:
        config = await self._seal_config()
        if config is None:
            raise UserError("server is not yet initialized")
        self._require_unsealed()
        gen = self._root_gen
        return {
            "nonce": gen.nonce if gen else "",
            "started": gen is not None,
            "progress": gen.shares.progress if gen else 0,
            "required": config.secret_threshold,
            "complete": False,
            "encoded_token": "",
            "encoded_root_token": "",
            "pgp_fingerprint": "",
            "otp": otp,
            "otp_length": OTP_LENGTH,
        }

    async def _root_attempt_status(self, req: Request, d: FieldData) -> Response:
        return _json(await self._root_status())

    async def _root_attempt_start(self, req: Request, d: FieldData) -> Response:
        otp, pgp_key = d["otp"], d["pgp_key"]
        generated = not otp and not pgp_key
        if generated:
            otp = random_base62(OTP_LENGTH)
        if otp:
            if len(otp.encode()) != OTP_LENGTH:
                raise UserError("OTP string is wrong length")
        else:
            raise UserError("pgp_key is not supported: start the root generation with an OTP instead")
        async with self._lock:
            self._require_unsealed()
            if self._root_gen is not None:
                raise UserError("root generation already in progress")
            self._root_gen = _RootGeneration(nonce=str(uuid.uuid4()), otp=otp)
            log.info("root generation initialized (nonce %s)", self._root_gen.nonce)
            return _json(await self._root_status(otp if generated else ""))

    async def _root_attempt_cancel(self, req: Request, d: FieldData) -> Response | None:
        async with self._lock:
            self._require_unsealed()
            if self._root_gen is not None:
                self._root_gen.shares.reset()
            self._root_gen = None
        return None

    async def _root_update(self, req: Request, d: FieldData) -> Response:
        key = decode_share(d["key"], "'key' must be specified in request body as JSON")
        nonce: str = d["nonce"]
        check_share_length(key)
        async with self._lock:
            config = await self._seal_config()
            if config is None:
                raise UserError("Vault is not initialized")
            self._require_unsealed()
            gen = self._root_gen
            if gen is None:
                raise UserError("no root generation in progress")
            if not _same(nonce, gen.nonce):
                raise UserError(
                    f'incorrect nonce supplied; nonce for this root generation operation is "{gen.nonce}"'
                )
            gen.shares.add(key)
            progress = gen.shares.progress
            body: dict[str, Any] = {
                "nonce": nonce,
                "started": True,
                "progress": progress,
                "required": config.secret_threshold,
                "complete": False,
                "encoded_token": "",
                "encoded_root_token": "",
                "pgp_fingerprint": "",
                "otp": "",
                "otp_length": 0,
            }
            if progress < config.secret_threshold:
                return _json(body)
            parts = list(gen.shares.parts)
            gen.shares.reset()
            if not await self._shares_open_barrier(parts, config):
                log.warning("root generation aborted: the key shares failed verification")
                raise UserError(f"root generation aborted: {_WRONG_SHARES}")
            entry = await self.core.create_root_token()
            try:
                encoded = encode_root_token(entry.id, gen.otp)
            except StrongroomError:
                await self.core.revoke_token(entry)
                raise
            self._root_gen = None
            log.info("root generation finished (nonce %s)", gen.nonce)
            body.update(complete=True, encoded_token=encoded, encoded_root_token=encoded)
            return _json(body)

    # -- rekey ----------------------------------------------------------------------------------

    async def _rekey_status(self) -> dict[str, Any]:
        config = await self._seal_config()
        if config is None:
            raise UserError("server is not yet initialized")
        self._require_unsealed()
        status: dict[str, Any] = {
            "nonce": "",
            "started": False,
            "t": 0,
            "n": 0,
            "progress": 0,
            "required": config.secret_threshold,
            "pgp_fingerprints": None,
            "backup": False,
            "verification_required": False,
        }
        rk = self._rekey
        if rk is not None:
            status.update(
                nonce=rk.nonce,
                started=True,
                t=rk.config.secret_threshold,
                n=rk.config.secret_shares,
                progress=rk.shares.progress,
                verification_required=rk.require_verification,
            )
            if rk.verification_nonce:
                status["verification_nonce"] = rk.verification_nonce
        return status

    async def _rekey_status_op(self, req: Request, d: FieldData) -> Response:
        return _json(await self._rekey_status())

    async def _rekey_start(self, req: Request, d: FieldData) -> Response:
        shares, threshold = d["secret_shares"], d["secret_threshold"]
        if d["backup"] and not d["pgp_keys"]:
            raise UserError(
                "cannot request a backup of the new keys without providing PGP keys for encryption"
            )
        if d["pgp_keys"]:
            raise UserError("pgp_keys is not supported: strongroom returns the new key shares unencrypted")
        if threshold > shares:
            raise UserError("provided threshold greater than the total shares")
        try:
            validate_shares(shares, threshold)
        except UserError as err:
            detail = str(err).removeprefix("invalid seal configuration: ")
            raise UserError(f"invalid rekey seal configuration: {detail}") from None
        async with self._lock:
            self._require_unsealed()
            if self._rekey is not None:
                raise UserError("rekey already in progress")
            self._rekey = _Rekey(
                nonce=str(uuid.uuid4()),
                config=SealConfig("shamir", shares, threshold),
                require_verification=bool(d["require_verification"]),
            )
            log.info(
                "rekey initialized (nonce %s, shares %d, threshold %d, verification %s)",
                self._rekey.nonce,
                shares,
                threshold,
                self._rekey.require_verification,
            )
            return _json(await self._rekey_status())

    async def _rekey_cancel(self, req: Request, d: FieldData) -> Response | None:
        async with self._lock:
            self._require_unsealed()
            rk = self._rekey
            if rk is not None:
                nonce, sent = d.get_ok("nonce")
                if sent and nonce and not _same(nonce, rk.nonce):
                    raise UserError("invalid request")
                rk.wipe()
            self._rekey = None
        return None

    async def _rekey_update(self, req: Request, d: FieldData) -> Response:
        key = decode_share(d["key"], "'key' must be specified in request body as JSON")
        nonce: str = d["nonce"]
        async with self._lock:
            self._require_unsealed()
            check_share_length(key)
            config = await self._seal_config()
            if config is None:
                raise UserError("Vault is not initialized")
            rk = self._rekey
            if rk is None:
                raise UserError("no barrier rekey in progress")
            if rk.verification_key is not None:
                raise UserError(
                    "rekey operation already finished; verification must be performed; "
                    f'nonce for the verification operation is "{rk.verification_nonce}"'
                )
            if not _same(nonce, rk.nonce):
                raise UserError(f'incorrect nonce supplied; nonce for this rekey operation is "{rk.nonce}"')
            rk.shares.add(key)
            if rk.shares.progress < config.secret_threshold:
                return _json(await self._rekey_status())
            parts = list(rk.shares.parts)
            rk.shares.reset()
            if not await self._shares_open_barrier(parts, config):
                log.warning("rekey: the key shares failed verification")
                raise UserError(_WRONG_SHARES)
            new_key = secrets.token_bytes(KEY_BYTES)
            new_shares = split_key(new_key, rk.config.secret_shares, rk.config.secret_threshold)
            body: dict[str, Any] = {
                "nonce": nonce,
                "complete": True,
                "keys": [s.hex() for s in new_shares],
                "keys_base64": [base64.b64encode(s).decode() for s in new_shares],
                "pgp_fingerprints": None,
                "backup": False,
                "verification_required": False,
            }
            if rk.require_verification:
                rk.verification_nonce = str(uuid.uuid4())
                rk.verification_key = bytearray(new_key)
                body["verification_required"] = True
                body["verification_nonce"] = rk.verification_nonce
                log.info("rekey shares generated; waiting for verification (nonce %s)", rk.verification_nonce)
                return _json(body)
            await self._perform_rekey(new_key, rk.config)
            rk.wipe()
            self._rekey = None
            return _json(body)

    async def _perform_rekey(self, new_unseal_key: bytes, new_config: SealConfig) -> None:
        """Replace the root key and the unseal key: keyring first, then root key and seal config together."""
        core = self.core
        state = core.barrier._shared.state
        if state is None:
            raise Sealed()
        old_root = bytes(state.root_key)
        new_root = secrets.token_bytes(KEY_BYTES)
        await core.barrier.rekey_root(new_root)
        try:
            async with core.physical.transaction() as txn:
                staged = ShamirSeal(txn)
                await staged.store_root_key(new_unseal_key, new_root)
                await staged.set_config(new_config)
        except BaseException:
            # The keyring is already under the new root key; put it back under the old one,
            # which the old shares still unlock, rather than leave storage unopenable.
            log.error("rekey failed while storing the new root key; restoring the previous root key")
            await core.barrier.rekey_root(old_root)
            raise
        core.seal_impl.config = new_config
        core.unseal_progress.reset()
        log.info(
            "security barrier rekeyed (shares %d, threshold %d)",
            new_config.secret_shares,
            new_config.secret_threshold,
        )

    # -- rekey verification -------------------------------------------------------------------

    async def _rekey_verify_status(self) -> dict[str, Any]:
        config = await self._seal_config()
        if config is None:
            raise UserError("server is not yet initialized")
        self._require_unsealed()
        rk = self._rekey
        if rk is None:
            raise UserError("no rekey configuration found")
        return {
            "nonce": rk.verification_nonce,
            "started": rk.verification_key is not None,
            "t": rk.config.secret_threshold,
            "n": rk.config.secret_shares,
            "progress": rk.verification_shares.progress,
        }

    async def _rekey_verify_status_op(self, req: Request, d: FieldData) -> Response:
        return _json(await self._rekey_verify_status())

    async def _rekey_verify_restart(self, req: Request, d: FieldData) -> Response:
        async with self._lock:
            self._require_unsealed()
            rk = self._rekey
            if rk is not None:
                rk.verification_shares.reset()
                rk.verification_nonce = str(uuid.uuid4())
            return _json(await self._rekey_verify_status())

    async def _rekey_verify(self, req: Request, d: FieldData) -> Response:
        key = decode_share(d["key"], "'key' must be specified in request body as JSON")
        nonce: str = d["nonce"]
        async with self._lock:
            self._require_unsealed()
            check_share_length(key)
            rk = self._rekey
            if rk is None:
                raise UserError("no rekey in progress")
            if rk.verification_key is None:
                raise UserError("no rekey verification in progress")
            if not _same(nonce, rk.verification_nonce):
                raise UserError(
                    f'incorrect nonce supplied; nonce for this verify operation is "{rk.verification_nonce}"'
                )
            if _is_duplicate(rk.verification_shares, key):
                raise UserError("given key has already been provided during this verify operation")
            rk.verification_shares.add(key)
            if rk.verification_shares.progress < rk.config.secret_threshold:
                return _json(await self._rekey_verify_status())
            parts = list(rk.verification_shares.parts)
            rk.verification_shares.reset()
            try:
                recovered = combine_keys(parts, rk.config)
                matches = hmac.compare_digest(recovered, bytes(rk.verification_key))
            except UserError:
                matches = False
            if not matches:
                rk.verification_nonce = str(uuid.uuid4())  # Vault rotates the nonce on failure
                log.warning("rekey verification failed")
                raise UserError("rekey verification failed; incorrect key shares supplied")
            await self._perform_rekey(bytes(rk.verification_key), rk.config)
            verification_nonce = rk.verification_nonce
            rk.wipe()
            self._rekey = None
            return _json({"nonce": verification_nonce, "complete": True})

    async def _no_recovery_keys(self, req: Request, d: FieldData) -> Response:
        raise UserError("recovery rekeying not supported")
