"""``sys/mounts``, ``sys/auth``, ``sys/remount`` and ``sys/internal/ui/mounts``.

Enabling, reading, tuning, moving and disabling secrets engines and auth
methods, with Vault's field names, defaults and error texts. The mount table
itself lives in :mod:`strongroom.core.mounts`; mounting and unmounting in
:class:`~strongroom.core.core.Core`.
"""

from __future__ import annotations

import logging
import posixpath
import uuid
from typing import TYPE_CHECKING, Any

from strongroom.core.mounts import MountConfig, MountEntry
from strongroom.core.system_policies import TokenPolicies, has_mount_access, token_policies
from strongroom.durations import parse_duration
from strongroom.framework import Field, FieldData, FieldType, Path, PathOperation
from strongroom.logical.errors import CodedError, InvalidToken, PermissionDenied, UserError
from strongroom.logical.request import Operation, Request, Response

if TYPE_CHECKING:
    from strongroom.core.core import Core

log = logging.getLogger("strongroom.core")

# Route prefixes that cannot be tuned, moved to or from (Vault's untunableMounts / protectedMounts).
_UNTUNABLE = ("cubbyhole/", "sys/", "audit/", "identity/")
_PROTECTED_MOUNTS = ("audit/", "auth/", "sys/", "cubbyhole/", "identity/")
_PROTECTED_AUTHS = ("auth/token",)
_VISIBILITY = ("", "hidden", "unauth")
_TOKEN_TYPES = {
    "": "default-service",
    "default-service": "default-service",
    "default-batch": "default-batch",
    "service": "service",
    "batch": "batch",
}
# auth methods whose user lockout can be tuned (Vault's GetSupportedUserLockoutsAuthMethods)
_LOCKOUT_TYPES = frozenset({"userpass", "ldap", "approle"})
# deprecated type names Vault still accepts, and what they mount
_MOUNT_ALIASES = {"generic": "kv"}
_KV_ALIASES = {"kv-v1": "1", "kv-v2": "2"}


def sanitize_path(path: str) -> str:
    """Vault's ``sanitizePath``: no leading ``/``, exactly one trailing ``/``."""
    path = path.lstrip("/")
    return path if path.endswith("/") else path + "/"


def find_mount(core: Core, route_path: str) -> MountEntry | None:
    """The mount serving ``route_path`` (longest prefix), from either table."""
    routed = core.router.match(route_path)
    return None if routed is None else routed[0].entry


def _text(value: Any, name: str) -> str:
    """A string field that may arrive as JSON null (hvac sends ``"description": null``)."""
    if value is None:
        return ""
    try:
        text: str = FieldType.STRING.coerce(value)
    except (ValueError, TypeError):
        raise UserError(f"error converting input for field {name!r}: expected type string") from None
    return text


def _ttl(value: Any) -> int:
    """A TTL given as seconds or a duration string; ``""`` and ``"system"`` mean the default (0)."""
    text = _text(value, "ttl").strip()
    if text in ("", "system"):
        return 0
    return parse_duration(text)


def _mount_config(raw: dict[str, Any], core: Core, *, auth: bool) -> MountConfig:
    """The ``config`` map of an enable request, validated the way ``handleMount`` does."""
    raw = {k: v for k, v in raw.items() if v is not None}
    config = MountConfig()
    for key, label in (("default_lease_ttl", "default"), ("max_lease_ttl", "max")):
        if key in raw:
            try:
                setattr(config, key, _ttl(raw[key]))
            except ValueError:
                raise UserError(
                    f"unable to parse {label} TTL: expected seconds or a duration such as 768h"
                ) from None
    if config.max_lease_ttl and config.default_lease_ttl > config.max_lease_ttl:
        raise UserError("given default lease TTL greater than given max lease TTL")
    if config.default_lease_ttl > core.max_lease_ttl and not config.max_lease_ttl:
        raise UserError(f"given default lease TTL greater than system max lease TTL of {core.max_lease_ttl}")
    try:
        config.force_no_cache = FieldType.BOOL.coerce(raw.get("force_no_cache", False))
        for name in (
            "audit_non_hmac_request_keys",
            "audit_non_hmac_response_keys",
            "passthrough_request_headers",
            "allowed_response_headers",
        ):
            setattr(config, name, FieldType.COMMA_LIST.coerce(raw.get(name, [])))
        visibility = FieldType.STRING.coerce(raw.get("listing_visibility", ""))
        token_type = FieldType.STRING.coerce(raw.get("token_type", ""))
        config.plugin_version = FieldType.STRING.coerce(raw.get("plugin_version", ""))
    except (ValueError, TypeError):
        raise UserError("unable to convert given mount config information") from None
    if visibility not in _VISIBILITY:
        raise UserError(f"invalid listing_visibility {visibility}")
    config.listing_visibility = visibility
    if auth:
        if token_type not in _TOKEN_TYPES:
            raise UserError("invalid value for 'token_type'")
        config.token_type = _TOKEN_TYPES[token_type]
    return config


def _lockout_config(raw: dict[str, Any], current: dict[str, Any]) -> dict[str, Any]:
    """Merge a tune's ``user_lockout_config`` into the stored one (``user_lockout_*`` keys)."""
    out = dict(current)
    raw = {k: v for k, v in raw.items() if v is not None}
    try:
        if _text(raw.get("lockout_threshold", ""), "lockout_threshold"):
            out["user_lockout_threshold"] = int(_text(raw["lockout_threshold"], "lockout_threshold"))
        for key, stored in (
            ("lockout_duration", "user_lockout_duration"),
            ("lockout_counter_reset_duration", "user_lockout_counter_reset_duration"),
        ):
            if _text(raw.get(key, ""), key):
                out[stored] = parse_duration(_text(raw[key], key))
    except ValueError:
        raise UserError("unable to parse user lockout config: expected integers and durations") from None
    if "lockout_disable" in raw:
        try:
            out["user_lockout_disable"] = FieldType.BOOL.coerce(raw["lockout_disable"])
        except ValueError:
            raise UserError("unable to convert given user lockout config information") from None
    for key, default in (
        ("user_lockout_threshold", 0),
        ("user_lockout_duration", 0),
        ("user_lockout_counter_reset_duration", 0),
        ("user_lockout_disable", False),
    ):
        out.setdefault(key, default)
    return out


def _tune_view(core: Core, entry: MountEntry) -> dict[str, Any]:
    """What ``GET .../tune`` shows: effective TTLs in seconds plus the tunables that are set."""
    cfg = entry.config
    data: dict[str, Any] = {
        "description": entry.description,
        "default_lease_ttl": cfg.default_lease_ttl or core.default_lease_ttl,
        "max_lease_ttl": cfg.max_lease_ttl or core.max_lease_ttl,
        "force_no_cache": cfg.force_no_cache,
    }
    if entry.external_entropy_access:
        data["external_entropy_access"] = True
    if entry.table == "auth":
        data["token_type"] = cfg.token_type or "default-service"
    for name in (
        "audit_non_hmac_request_keys",
        "audit_non_hmac_response_keys",
        "listing_visibility",
        "passthrough_request_headers",
        "allowed_response_headers",
    ):
        value = getattr(cfg, name)
        if value:
            data[name] = value
    if cfg.user_lockout_config:
        data.update(cfg.user_lockout_config)
    if entry.options:
        data["options"] = entry.options
    version = entry.plugin_version or cfg.plugin_version
    if version:
        data["plugin_version"] = version
    return data


async def _reload(core: Core, entry: MountEntry) -> None:
    """Rebuild a mount's backend (a KV upgrade re-reads ``options.version``).

    The router swaps the new route in for the old one, so the mount never goes missing;
    if the new backend fails to start, the old one keeps serving.
    """
    old = core.router.get(entry.route_path)
    await core._mount_backend(entry)  # Core has no public reload yet
    if old is not None:
        try:
            await old.backend.cleanup()
        except Exception:
            log.exception("backend cleanup failed for %s", entry.route_path)


async def caller_policies(core: Core, req: Request) -> TokenPolicies | None:
    """The caller's policies on a token-optional path: None without a token, 403 for a bad one."""
    if not req.client_token:
        return None
    token = req.token_entry
    if token is None:
        token = await core.tokens.lookup(req.client_token)
    if token is None:
        raise InvalidToken()
    return await token_policies(core, token)


async def visible_mounts(core: Core, tp: TokenPolicies | None) -> list[MountEntry]:
    """Mounts listed by ``sys/internal/ui/mounts``: ``unauth`` ones, plus those the token can use."""
    out: list[MountEntry] = []
    for entry in [*core.mounts.entries.values(), *core.auth_mounts.entries.values()]:
        if entry.config.listing_visibility == "unauth" or (
            tp is not None and await has_mount_access(core, tp, entry.route_path)
        ):
            out.append(entry)
    return out


# -- field declarations -------------------------------------------------------------------------

_PATH = {"path": Field(FieldType.STRING, "The path of the mount.")}
_ENABLE_FIELDS = {
    **_PATH,
    "type": Field(FieldType.STRING, "The type of the backend, such as kv, kv-v2 or userpass."),
    "description": Field(FieldType.ANY, "User-friendly description for this mount (a string)."),
    "config": Field(FieldType.MAP, "Configuration for this mount, such as default_lease_ttl."),
    "options": Field(FieldType.KV_PAIRS, "Backend-specific options, such as version for kv."),
    "local": Field(FieldType.BOOL, "Mark the mount as local (not replicated).", default=False),
    "seal_wrap": Field(FieldType.BOOL, "Whether to turn on seal wrapping for the mount.", default=False),
    "external_entropy_access": Field(
        FieldType.BOOL, "Whether to give the mount access to external entropy.", default=False
    ),
    "plugin_name": Field(FieldType.ANY, "Name of the plugin, for type 'plugin' (a string).", deprecated=True),
    "plugin_version": Field(FieldType.STRING, "The semantic version of the plugin to use."),
}
_TUNE_FIELDS = {
    **_PATH,
    "default_lease_ttl": Field(FieldType.STRING, "The default lease TTL ('system' for the default)."),
    "max_lease_ttl": Field(FieldType.STRING, "The max lease TTL ('system' for the default)."),
    "description": Field(FieldType.STRING, "User-friendly description for this mount."),
    "force_no_cache": Field(FieldType.BOOL, "Whether to disable caching for the mount."),
    "audit_non_hmac_request_keys": Field(FieldType.COMMA_LIST, "Request keys audit devices do not HMAC."),
    "audit_non_hmac_response_keys": Field(FieldType.COMMA_LIST, "Response keys audit devices do not HMAC."),
    "listing_visibility": Field(
        FieldType.STRING, "Whether to list the mount in the UI listing endpoint ('unauth', 'hidden' or '')."
    ),
    "passthrough_request_headers": Field(FieldType.COMMA_LIST, "Request headers passed to the backend."),
    "allowed_response_headers": Field(FieldType.COMMA_LIST, "Response headers the backend may set."),
    "token_type": Field(FieldType.STRING, "Token type for an auth mount (default-service, batch, ...)."),
    "user_lockout_config": Field(FieldType.MAP, "User lockout configuration of an auth mount."),
    "options": Field(FieldType.KV_PAIRS, "Backend-specific options, upserted (an empty value removes one)."),
    "plugin_version": Field(FieldType.STRING, "The semantic version of the plugin to use."),
}


def paths(core: Core) -> list[Path]:
    """The mount-management paths of the system backend."""
    migrations: dict[str, dict[str, str]] = {}

    # -- enable / read / disable --------------------------------------------------------------

    async def list_mounts(req: Request, d: FieldData) -> Response | None:
        data = {path: entry.api_view() for path, entry in core.mounts.entries.items()}
        return Response(data=data, copy_data_to_top_level=True)

    async def list_auth(req: Request, d: FieldData) -> Response | None:
        data = {path: entry.api_view() for path, entry in core.auth_mounts.entries.items()}
        return Response(data=data, copy_data_to_top_level=True)

    def new_entry(d: FieldData, table: str) -> MountEntry:
        path = sanitize_path(d["path"])
        if path == "/":
            raise UserError("backend path must be specified")
        mount_type = d["type"]
        options: dict[str, str] | None = dict(d["options"]) or None
        config = _mount_config(d["config"], core, auth=table == "auth")
        if mount_type == "plugin":
            mount_type = _text(d["config"].get("plugin_name"), "plugin_name") or _text(
                d["plugin_name"], "plugin_name"
            )
            if not mount_type:
                raise UserError("plugin_name must be provided for plugin backend")
        if not mount_type:
            raise UserError("backend type must be specified as a string")
        if table == "mounts" and mount_type in _KV_ALIASES:
            options = {**(options or {}), "version": _KV_ALIASES[mount_type]}
            mount_type = "kv"
        elif mount_type != "kv" and options and options.get("version"):
            kind = "secrets engine" if table == "mounts" else "auth method"
            raise UserError(f'{kind} "{mount_type}" does not allow setting a version')
        if table == "mounts" and mount_type not in core.factories:
            mount_type = _MOUNT_ALIASES.get(mount_type, mount_type)
        return MountEntry(
            path,
            mount_type,
            table=table,
            description=_text(d["description"], "description"),
            config=config,
            options=options,
            local=d["local"],
            seal_wrap=d["seal_wrap"],
            external_entropy_access=d["external_entropy_access"],
            plugin_version=d["plugin_version"] or config.plugin_version,
        )

    async def enable_mount(req: Request, d: FieldData) -> Response | None:
        entry = new_entry(d, "mounts")
        if entry.path.startswith(_PROTECTED_MOUNTS):
            raise CodedError(403, f'cannot mount "{entry.path}"')
        await core.enable_mount(entry)
        return None

    async def enable_auth(req: Request, d: FieldData) -> Response | None:
        entry = new_entry(d, "auth")
        if entry.type == "token":
            raise UserError("token credential backend cannot be instantiated")
        await core.enable_mount(entry)
        return None

    async def read_mount(req: Request, d: FieldData) -> Response | None:
        path = sanitize_path(d["path"])
        entry = find_mount(core, path)
        if entry is None:
            raise UserError(f"No secret engine mount at {path}")
        return Response(data=entry.api_view())

    async def read_auth(req: Request, d: FieldData) -> Response | None:
        path = sanitize_path(d["path"])
        entry = find_mount(core, "auth/" + path)
        if entry is None or entry.table != "auth":
            raise UserError(f"No auth engine at {path}")
        return Response(data=entry.api_view())

    async def disable_mount(req: Request, d: FieldData) -> Response | None:
        path = sanitize_path(d["path"])
        if path in core.mounts.entries:  # a missing mount is a success, as in Vault
            await core.disable_mount("mounts", path)
        return None

    async def disable_auth(req: Request, d: FieldData) -> Response | None:
        path = sanitize_path(d["path"])
        entry = core.auth_mounts.entries.get(path)
        if entry is None:
            return None
        if entry.type == "token":
            raise UserError("token credential backend cannot be disabled")
        await core.disable_mount("auth", path)
        return None

    # -- tune ------------------------------------------------------------------------------------

    async def tune_read(route_path: str) -> Response:
        route_path = sanitize_path(route_path)
        entry = find_mount(core, route_path)
        if entry is None:
            raise UserError(f'cannot fetch sysview for path "{route_path}"')
        return Response(data=_tune_view(core, entry))

    async def tune_write(route_path: str, d: FieldData) -> Response | None:
        route_path = sanitize_path(route_path)
        if route_path.startswith(_UNTUNABLE):
            raise UserError(f'cannot tune "{route_path}"')
        entry = find_mount(core, route_path)
        if entry is None:
            raise UserError(f'tune of path "{route_path}" failed: no mount entry found')
        cfg = entry.config
        # validate everything first, then apply and persist once
        new_default, new_max = cfg.default_lease_ttl, cfg.max_lease_ttl
        try:
            if d["default_lease_ttl"]:
                new_default = _ttl(d["default_lease_ttl"])
            if d["max_lease_ttl"]:
                new_max = _ttl(d["max_lease_ttl"])
        except ValueError as err:
            raise UserError(str(err)) from None
        if new_default and new_max and new_max < new_default:
            raise UserError(
                f"backend max lease TTL of {new_max} would be less than backend default lease TTL"
                f" of {new_default}"
            )
        lockout = cfg.user_lockout_config
        if d["user_lockout_config"]:
            if entry.type not in _LOCKOUT_TYPES:
                raise UserError(f'tuning of lockout configuration for auth type "{entry.type}" not allowed')
            lockout = _lockout_config(d["user_lockout_config"], lockout)
        visibility = d["listing_visibility"] if d.sent("listing_visibility") else cfg.listing_visibility
        if visibility not in _VISIBILITY:
            raise UserError(f"invalid listing_visibility {visibility}")
        token_type = cfg.token_type
        if d.sent("token_type"):
            if entry.table != "auth":
                raise UserError("'token_type' can only be modified on auth mounts")
            if entry.type == "token":
                raise UserError("'token_type' cannot be set for 'token' or 'ns_token' auth mounts")
            if d["token_type"] not in _TOKEN_TYPES:
                raise UserError("invalid value for 'token_type'")
            token_type = _TOKEN_TYPES[d["token_type"]]
        options, response, upgraded = entry.options, None, False
        if d["options"]:
            options, response, upgraded = _tune_options(entry.options, d["options"])

        cfg.default_lease_ttl, cfg.max_lease_ttl = new_default, new_max
        cfg.user_lockout_config = lockout
        cfg.listing_visibility = visibility
        cfg.token_type = token_type
        if d.sent("description"):
            entry.description = d["description"]
        if d.sent("force_no_cache"):
            cfg.force_no_cache = d["force_no_cache"]
        for name in (
            "audit_non_hmac_request_keys",
            "audit_non_hmac_response_keys",
            "passthrough_request_headers",
            "allowed_response_headers",
        ):
            if d.sent(name):
                setattr(cfg, name, d[name])
        if d.sent("plugin_version"):
            entry.plugin_version = cfg.plugin_version = d["plugin_version"]
        entry.options = options
        await core.save_mount(entry)
        if upgraded:
            await _reload(core, entry)
        return response

    async def mount_tune_read(req: Request, d: FieldData) -> Response | None:
        return await tune_read(d["path"])

    async def mount_tune_write(req: Request, d: FieldData) -> Response | None:
        return await tune_write(d["path"], d)

    async def auth_tune_read(req: Request, d: FieldData) -> Response | None:
        return await tune_read("auth/" + d["path"])

    async def auth_tune_write(req: Request, d: FieldData) -> Response | None:
        return await tune_write("auth/" + d["path"], d)

    # -- remount ---------------------------------------------------------------------------------

    async def remount(req: Request, d: FieldData) -> Response | None:
        raw_from, raw_to = d["from"], d["to"]
        if not raw_from or not raw_to:
            raise UserError("both 'from' and 'to' path must be specified as a string")
        if raw_from != raw_from.strip():
            raise UserError("'from' path cannot contain trailing whitespace")
        if raw_to != raw_to.strip():
            raise UserError("'to' path cannot contain trailing whitespace")
        src, dst = sanitize_path(raw_from), sanitize_path(raw_to)
        cleaned = posixpath.normpath("/" + dst).lstrip("/") + "/"
        if cleaned != dst:
            raise UserError(
                f"invalid destination mount: path '{dst}' does not match cleaned path '{cleaned}'"
            )
        if src.startswith("auth/"):
            if not dst.startswith("auth/") or dst == "auth/":
                raise UserError(f'cannot remount auth mount to non-auth mount "{dst}"')
            if src.startswith(_PROTECTED_AUTHS):
                raise UserError(f'cannot remount "{src}"')
            if dst.startswith(_PROTECTED_AUTHS):
                raise UserError(f'cannot remount to destination "{dst}"')
            table, from_rel, to_rel = "auth", src[len("auth/") :], dst[len("auth/") :]
        else:
            if src.startswith(_PROTECTED_MOUNTS):
                raise UserError(f'cannot remount "{src}"')
            if dst.startswith(_PROTECTED_MOUNTS):
                raise UserError(f"cannot remount to destination {dst}")
            table, from_rel, to_rel = "mounts", src, dst
        if from_rel not in core.table_for(table).entries:
            raise UserError(f'no matching mount at "{src}"')
        for route in core.router.routes():
            other = route.entry.route_path
            if dst.startswith(other) or other.startswith(dst):
                raise UserError(f'path already in use at "{other}"')
        await core.remount(table, from_rel, to_rel)
        migration_id = str(uuid.uuid4())
        migrations[migration_id] = {"source_mount": src, "target_mount": dst, "status": "success"}
        return Response(data={"migration_id": migration_id}, copy_data_to_top_level=True)

    async def remount_status(req: Request, d: FieldData) -> Response | None:
        migration_id = d["migration_id"]
        info = migrations.get(migration_id)
        if info is None:
            return None
        return Response(data={"migration_id": migration_id, "migration_info": dict(info)})

    # -- internal/ui/mounts ----------------------------------------------------------------------

    async def ui_mounts(req: Request, d: FieldData) -> Response | None:
        tp = await caller_policies(core, req)
        secret: dict[str, Any] = {}
        auth: dict[str, Any] = {}
        for entry in await visible_mounts(core, tp):
            view = (
                entry.api_view()
                if tp is not None
                else {"type": entry.type, "description": entry.description, "options": entry.options}
            )
            (auth if entry.table == "auth" else secret)[entry.path] = view
        return Response(data={"auth": auth, "secret": secret})

    async def ui_mount(req: Request, d: FieldData) -> Response | None:
        path = sanitize_path(d["path"])
        denied = PermissionDenied(
            "preflight capability check returned 403, please ensure client's policies grant access to"
            f' path "{path}"'
        )
        entry = find_mount(core, path)
        if entry is None:
            raise denied  # not 404: the endpoint must not reveal which mounts exist
        tp = await caller_policies(core, req)
        if tp is None:
            raise PermissionDenied()
        if not await has_mount_access(core, tp, entry.route_path):
            raise denied
        data = entry.api_view()
        data["path"] = entry.path
        return Response(data=data)

    read = Operation.READ
    update = Operation.UPDATE
    delete = Operation.DELETE
    return [
        Path(
            "mounts",
            operations={read: PathOperation(list_mounts, "List the mounted secrets engines.")},
            synopsis="List the currently mounted secrets engines.",
        ),
        # tune paths before mounts/{path}, which would match ".../tune" too
        Path(
            "mounts/auth/{path:path}/tune",
            fields=_TUNE_FIELDS,
            operations={
                read: PathOperation(auth_tune_read, "Read the tuning of an auth mount."),
                update: PathOperation(auth_tune_write, "Tune an auth mount (no sudo needed here)."),
            },
            synopsis="Tune an auth mount without sudo.",
        ),
        Path(
            "mounts/{path:path}/tune",
            fields=_TUNE_FIELDS,
            operations={
                read: PathOperation(mount_tune_read, "Read the tuning of a mount."),
                update: PathOperation(mount_tune_write, "Tune a mount."),
            },
            synopsis="Tune the configuration of a mount.",
        ),
        Path(
            "mounts/{path:path}",
            fields=_ENABLE_FIELDS,
            operations={
                read: PathOperation(read_mount, "Read the configuration of a secrets engine mount."),
                update: PathOperation(enable_mount, "Enable a new secrets engine at the given path."),
                delete: PathOperation(disable_mount, "Disable the mount at the given path."),
            },
            synopsis="Enable, read or disable a secrets engine.",
        ),
        Path(
            "auth",
            operations={read: PathOperation(list_auth, "List the enabled auth methods.")},
            synopsis="List the currently enabled auth methods.",
        ),
        Path(
            "auth/{path:path}/tune",
            fields=_TUNE_FIELDS,
            sudo=True,
            operations={
                read: PathOperation(auth_tune_read, "Read the tuning of an auth mount."),
                update: PathOperation(auth_tune_write, "Tune an auth mount."),
            },
            synopsis="Tune the configuration of an auth method (sudo).",
        ),
        Path(
            "auth/{path:path}",
            fields=_ENABLE_FIELDS,
            sudo=True,
            operations={
                read: PathOperation(read_auth, "Read the configuration of an auth mount."),
                update: PathOperation(enable_auth, "Enable a new auth method at the given path."),
                delete: PathOperation(disable_auth, "Disable the auth method at the given path."),
            },
            synopsis="Enable, read or disable an auth method (sudo).",
        ),
        Path(
            "remount",
            fields={
                "from": Field(FieldType.STRING, "The previous mount point."),
                "to": Field(FieldType.STRING, "The new mount point."),
            },
            sudo=True,
            operations={update: PathOperation(remount, "Move a mount to a new path.")},
            synopsis="Move a secrets engine or auth method to a new path (sudo).",
        ),
        Path(
            "remount/status/{migration_id:segment}",
            fields={"migration_id": Field(FieldType.STRING, "The ID of the migration operation.")},
            operations={read: PathOperation(remount_status, "Check the status of a mount migration.")},
            synopsis="Check the status of a mount move.",
        ),
        Path(
            "internal/ui/mounts",
            unauthenticated=True,
            operations={read: PathOperation(ui_mounts, "List the enabled and visible mounts.")},
            synopsis="Mounts the caller may see: listing_visibility=unauth ones and, with a token, usable ones.",
        ),
        Path(
            "internal/ui/mounts/{path:path}",
            fields=_PATH,
            unauthenticated=True,
            operations={read: PathOperation(ui_mount, "Information about the mount holding a path.")},
            synopsis="The mount holding a path (the CLI's preflight before every kv command).",
        ),
    ]


def _tune_options(
    current: dict[str, str] | None, given: dict[str, str]
) -> tuple[dict[str, str] | None, Response | None, bool]:
    """Upsert tuned options; ``version`` may go 1 → 2 but never down. Returns (options, response, upgraded)."""
    current = current or {}
    response: Response | None = None
    upgraded = False
    if "version" in given:
        try:
            have = int(current.get("version") or 0)
            want = int(given["version"] or 0)
        except ValueError:
            raise UserError("unable to parse options: version must be an integer") from None
        if want not in (1, 2):
            raise UserError(f"invalid version provided: {want}")
        if have > want:
            raise UserError(f"cannot downgrade mount from version {have}")
        if have < want:
            upgraded = True
            response = Response(
                warnings=[
                    f"Upgrading mount from version {have} to version {want}. This mount will be unavailable"
                    " for a brief period and will resume service shortly."
                ]
            )
    merged = dict(current)
    for key, value in given.items():
        if value == "" and key != "version":
            merged.pop(key, None)
        else:
            merged[key] = value
    return (merged or None), response, upgraded
