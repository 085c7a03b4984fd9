"""``sys/rotate``, ``sys/rotate/config``, ``sys/key-status`` and ``sys/rekey/backup``.

Normal sys paths behind authentication and ACL (``rotate`` also needs sudo). Rotation adds
a keyring term; older terms keep decrypting what they wrote. The rotation config is stored
through the barrier; automatic rotation by it is not enforced yet. Strongroom never backs
up PGP-encrypted shares (it has no PGP support), so the backup paths report none.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from strongroom.framework.fields import Field, FieldData, FieldType
from strongroom.framework.path import Path, PathOperation, operations
from strongroom.logical.errors import UserError
from strongroom.logical.request import Request, Response
from strongroom.logical.storage import get_json, put_json

if TYPE_CHECKING:
    from strongroom.core.core import Core

ROTATE_CONFIG_KEY = "core/rotate-config"
MIN_OPERATIONS = 1_000_000
MAX_OPERATIONS = 3_865_470_566  # Vault's absoluteOperationMaximum: 2^32 * 0.9
MIN_INTERVAL = 24 * 3600


def go_duration(seconds: int) -> str:
    """Whole seconds the way Go's time.Duration.String prints them (``24h0m0s``)."""
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


def paths(core: Core) -> list[Path]:
    async def rotate(req: Request, d: FieldData) -> Response | None:
        await core.barrier.rotate()
        return None

    async def load_config() -> dict[str, Any]:
        stored = await get_json(core.barrier, ROTATE_CONFIG_KEY) or {}
        return {
            "max_operations": int(stored.get("max_operations", MAX_OPERATIONS)),
            "interval": int(stored.get("interval", 0)),
            "enabled": bool(stored.get("enabled", True)),
        }

    async def read_config(req: Request, d: FieldData) -> Response:
        config = await load_config()
        interval = config["interval"]
        return Response(
            data={
                "max_operations": config["max_operations"],
                "enabled": config["enabled"],
                "interval": go_duration(interval) if interval > 0 else 0,
            }
        )

    async def write_config(req: Request, d: FieldData) -> Response | None:
        config = await load_config()
        for name in ("max_operations", "interval", "enabled"):
            value, sent = d.get_ok(name)
            if sent:
                config[name] = value
        if config["interval"] and config["interval"] < MIN_INTERVAL:
            raise UserError(f"interval must be greater or equal to {go_duration(MIN_INTERVAL)}")
        if not MIN_OPERATIONS <= config["max_operations"] <= MAX_OPERATIONS:
            raise UserError(f"max_operations must be in the range [{MIN_OPERATIONS},{MAX_OPERATIONS}]")
        await put_json(core.barrier, ROTATE_CONFIG_KEY, config)
        return None

    async def key_status(req: Request, d: FieldData) -> Response:
        return Response(data=core.barrier.key_status(), copy_data_to_top_level=True)

    async def no_backup(req: Request, d: FieldData) -> Response:
        raise UserError("no backed-up keys found")

    async def delete_backup(req: Request, d: FieldData) -> Response | None:
        return None  # nothing is ever backed up

    return [
        Path(
            "rotate",
            operations(update=PathOperation(rotate, summary="Rotate the encryption key.")),
            synopsis="Add a new barrier encryption key; older keys still decrypt what they wrote.",
            sudo=True,
        ),
        Path(
            "rotate/config",
            operations(
                read=PathOperation(read_config, summary="Read the rotation configuration."),
                update=PathOperation(write_config, summary="Configure automatic rotation."),
            ),
            fields={
                "max_operations": Field(
                    FieldType.INT, "Encryptions before the key should rotate.", default=MAX_OPERATIONS
                ),
                "interval": Field(FieldType.DURATION, "Time between rotations (0 or at least 24h)."),
                "enabled": Field(FieldType.BOOL, "Whether automatic rotation is enabled.", default=True),
            },
            synopsis="Configure automatic rotation of the barrier encryption key.",
        ),
        Path(
            "key-status",
            operations(read=PathOperation(key_status, summary="Active encryption key status.")),
            synopsis="Term, install time and encryption count of the active barrier key.",
        ),
        *(
            Path(
                template,
                operations(
                    read=PathOperation(no_backup, summary="Read the backed-up PGP-encrypted shares."),
                    delete=PathOperation(delete_backup, summary="Delete the backed-up shares."),
                ),
                synopsis="Backed-up PGP-encrypted key shares (never created by strongroom).",
            )
            for template in ("rekey/backup", "rekey/recovery-key-backup")
        ),
    ]
