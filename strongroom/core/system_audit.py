"""``sys/audit``, ``sys/audit/:path`` and ``sys/audit-hash/:path``: manage audit devices.

Listing, enabling and disabling need sudo (they decide what is recorded about
everyone); ``audit-hash`` does not, as in Vault: it only lets a caller who
already knows a value find it in the log. The broker itself lives in
:mod:`strongroom.core.audit`; these handlers only translate the API.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from strongroom.framework import Field, FieldData, FieldType, Path, PathOperation
from strongroom.logical.errors import UserError
from strongroom.logical.request import Operation, Request, Response

if TYPE_CHECKING:
    from strongroom.core.audit import AuditBroker
    from strongroom.core.core import Core

_PATH = {"path": Field(FieldType.STRING, "The path of the audit device (not a file path).")}
_ENABLE_FIELDS = {
    **_PATH,
    "type": Field(FieldType.STRING, "The type of the audit device: file, socket or syslog."),
    "description": Field(FieldType.STRING, "A human-friendly description of the audit device."),
    "options": Field(
        FieldType.MAP,
        "Device options: file_path (or path) and mode for file; address, socket_type and "
        "write_timeout for socket; facility and tag for syslog; hmac_accessor, log_raw, "
        "elide_list_responses, format and prefix for every type.",
    ),
    "local": Field(FieldType.BOOL, "Mark the device local-only (kept for API compatibility).", default=False),
}
_HASH_FIELDS = {**_PATH, "input": Field(FieldType.STRING, "The value to hash.", sensitive=True)}


def paths(core: Core) -> list[Path]:
    def broker() -> AuditBroker:
        if core.audit is None:
            raise UserError("audit devices are unavailable")
        b: AuditBroker = core.audit
        return b

    async def list_devices(req: Request, d: FieldData) -> Response | None:
        return Response(data=broker().table_view(), copy_data_to_top_level=True)

    async def enable(req: Request, d: FieldData) -> Response | None:
        device_type = str(d["type"]).strip().lower()
        if not device_type:
            raise UserError("type is required")
        await broker().enable(
            str(d["path"]), device_type, str(d["description"]), d["options"], bool(d["local"])
        )
        return None

    async def disable(req: Request, d: FieldData) -> Response | None:
        await broker().disable(str(d["path"]))
        return None

    async def audit_hash(req: Request, d: FieldData) -> Response | None:
        digest = await broker().hash(str(d["path"]), str(d["input"]))
        return Response(data={"hash": digest}, copy_data_to_top_level=True)

    return [
        Path(
            "audit",
            sudo=True,
            operations={Operation.READ: PathOperation(list_devices, "List the enabled audit devices.")},
            synopsis="List the enabled audit devices.",
        ),
        Path(
            "audit/",
            sudo=True,
            operations={Operation.LIST: PathOperation(list_devices, "List the enabled audit devices.")},
            synopsis="List the enabled audit devices.",
        ),
        Path(
            "audit/{path:path}",
            fields=_ENABLE_FIELDS,
            sudo=True,
            operations={
                Operation.UPDATE: PathOperation(enable, "Enable an audit device."),
                Operation.DELETE: PathOperation(disable, "Disable an audit device."),
            },
            synopsis="Enable or disable an audit device.",
            description="Each device has its own salt; disabling a device discards it, so "
            "re-enabling the same path hashes values differently.",
        ),
        Path(
            "audit-hash/{path:path}",
            fields=_HASH_FIELDS,
            operations={Operation.UPDATE: PathOperation(audit_hash, "Hash a value with a device's salt.")},
            synopsis="Compute the hash an audit device logs for a value.",
        ),
    ]
