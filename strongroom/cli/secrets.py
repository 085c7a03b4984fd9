"""``secrets`` and ``auth``: enable, disable, list, tune and move mounts.

Both mount tables have the same shape, so the two groups share option sets and printers.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import click

from strongroom.api.client import Client, data_of
from strongroom.cli import output as out

F = TypeVar("F", bound=Callable[..., Any])


def _config_options(f: F) -> F:
    """Flags that land in a mount's ``config`` block (enable and tune)."""
    for decorator in (
        click.option("--description", help="Human-friendly description."),
        click.option("--default-lease-ttl", help="Default lease TTL, e.g. 1h."),
        click.option("--max-lease-ttl", help="Maximum lease TTL, e.g. 24h."),
        click.option("--listing-visibility", type=click.Choice(["unauth", "hidden"]), help="UI listing."),
        click.option("--audit-non-hmac-request-keys", multiple=True, help="Request keys not HMACed."),
        click.option("--audit-non-hmac-response-keys", multiple=True, help="Response keys not HMACed."),
        click.option("--passthrough-request-header", multiple=True, help="Header passed to the plugin."),
        click.option("--allowed-response-header", multiple=True, help="Header the plugin may set."),
        click.option("--options", "mount_options", multiple=True, help="Mount option k=v (repeatable)."),
        click.option("--version", "kv_version", type=int, help="Shorthand for -options=version=N."),
    ):
        f = decorator(f)
    return f


def _config(params: dict[str, Any]) -> dict[str, Any]:
    config: dict[str, Any] = {}
    for key in ("default_lease_ttl", "max_lease_ttl", "listing_visibility"):
        if params.get(key):
            config[key] = params[key]
    for flag, key in (
        ("audit_non_hmac_request_keys", "audit_non_hmac_request_keys"),
        ("audit_non_hmac_response_keys", "audit_non_hmac_response_keys"),
        ("passthrough_request_header", "passthrough_request_headers"),
        ("allowed_response_header", "allowed_response_headers"),
    ):
        if params.get(flag):
            config[key] = list(params[flag])
    if params.get("force_no_cache"):
        config["force_no_cache"] = True
    return config


def _options(params: dict[str, Any]) -> dict[str, str]:
    options: dict[str, str] = {}
    for item in params.get("mount_options") or ():
        key, eq, value = item.partition("=")
        if not eq:
            out.fail(f'Invalid -options value "{item}": format must be key=value')
        options[key] = value
    if params.get("kv_version"):
        options["version"] = str(params["kv_version"])
    return options


def _enable_body(engine_type: str, params: dict[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = {"type": engine_type}
    if params.get("description") is not None:
        body["description"] = params["description"]
    config = _config(params)
    if config:
        body["config"] = config
    options = _options(params)
    if options:
        body["options"] = options
    for flag in ("local", "seal_wrap", "external_entropy_access"):
        if params.get(flag):
            body[flag] = True
    if params.get("plugin_version"):
        body["plugin_version"] = params["plugin_version"]
    return body


def _mount_path(path: str) -> str:
    return path.strip().strip("/") + "/"


def _ttl(value: Any) -> str:
    return "system" if not value else out.human_duration(value)


def _mount_table(mounts: dict[str, Any], detailed: bool) -> str:
    if not detailed:
        short: list[tuple[str, ...]] = [("Path", "Type", "Accessor", "Description")]
        for path in sorted(mounts):
            m = mounts[path] if isinstance(mounts[path], dict) else {}
            short.append(
                (path, str(m.get("type", "")), str(m.get("accessor", "")), str(m.get("description", "")))
            )
        return out.columns(short)
    rows: list[tuple[str, ...]] = [
        (
            "Path",
            "Plugin",
            "Accessor",
            "Default TTL",
            "Max TTL",
            "Force No Cache",
            "Replication",
            "Seal Wrap",
            "External Entropy Access",
            "Options",
            "Description",
            "UUID",
        )
    ]
    for path in sorted(mounts):
        m = mounts[path] if isinstance(mounts[path], dict) else {}
        config = m.get("config") or {}
        rows.append(
            (
                path,
                str(m.get("type", "")),
                str(m.get("accessor", "")),
                _ttl(config.get("default_lease_ttl")),
                _ttl(config.get("max_lease_ttl")),
                out.go_value(bool(config.get("force_no_cache"))),
                "local" if m.get("local") else "replicated",
                out.go_value(bool(m.get("seal_wrap"))),
                out.go_value(bool(m.get("external_entropy_access"))),
                out.go_value(m.get("options")),
                str(m.get("description", "")),
                str(m.get("uuid", "")),
            )
        )
    return out.columns(rows)


def _only_mounts(data: dict[str, Any]) -> dict[str, Any]:
    """Keep the ``path/`` entries (a top-level copy may also hold envelope keys)."""
    return {k: v for k, v in data.items() if k.endswith("/")}


def _move(client: Client, source: str, destination: str, kind: str) -> None:
    with out.api_errors(f"moving {kind} {source} to {destination}"):
        resp = client.sys.remount(source, destination) or {}
    migration = data_of(resp).get("migration_id")
    if not migration:
        out.success(f"Moved {kind} {source} to: {destination}")
        return
    click.echo(f"Started moving {kind} {source} to {destination}, with migration ID {migration}")
    while True:
        with out.api_errors("checking migration status"):
            info = client.sys.remount_status(str(migration)).get("migration_info") or {}
        state = info.get("status")
        if state == "success":
            out.success(f"Finished moving {kind} {source} to {destination}, with migration ID {migration}")
            return
        if state == "failure":
            out.fail(f"Failure! Error encountered moving {kind} {source} to {destination}", 2)
        time.sleep(1)


def _mount_flags(f: F) -> F:
    for decorator in (
        click.option("--path", help="Where to mount (default: the type)."),
        click.option("--local", is_flag=True, help="Do not replicate this mount."),
        click.option("--seal-wrap", is_flag=True, help="Seal-wrap the mount's storage."),
        click.option("--external-entropy-access", is_flag=True, help="Allow external entropy."),
        click.option("--force-no-cache", is_flag=True, help="Disable caching for the mount."),
        click.option("--plugin-version", help="Plugin version to mount."),
    ):
        f = decorator(f)
    return f


# --- secrets -------------------------------------------------------------------------------


@click.group(cls=out.Group)
def secrets() -> None:
    """Secrets engines: enable, disable, list, tune, move."""


@secrets.command()
@_mount_flags
@_config_options
@click.argument("engine_type")
@out.api_options
def enable(path: str | None, engine_type: str, **params: Any) -> None:
    """Enable a secrets engine of TYPE (``kv-v2`` means kv with version 2)."""
    mount = _mount_path(path or engine_type)
    if engine_type in ("kv-v1", "kv-v2"):
        params["kv_version"] = params.get("kv_version") or int(engine_type[-1])
        engine_type = "kv"
    client = out.client_from()
    with out.api_errors(f"enabling: {engine_type}"):
        client.sys.enable_mount(mount, _enable_body(engine_type, params))
    out.success(f"Enabled the {engine_type} secrets engine at: {mount}")


@secrets.command()
@click.argument("path")
@out.api_options
def disable(path: str) -> None:
    """Disable the secrets engine at PATH, deleting its data."""
    mount = _mount_path(path)
    client = out.client_from()
    with out.api_errors(f"disabling secrets engine at {mount}"):
        client.sys.disable_mount(mount)
    out.success(f"Disabled the secrets engine (if it existed) at: {mount}")


@secrets.command("list")
@click.option("--detailed", is_flag=True, help="Show TTLs, options and more.")
@out.api_options
def list_secrets(detailed: bool) -> None:
    """List enabled secrets engines."""
    client = out.client_from()
    with out.api_errors("listing secrets engines"):
        mounts = _only_mounts(client.sys.list_mounts())
    out.print_data(mounts, table=lambda: _mount_table(mounts, detailed))


@secrets.command()
@click.option("--force-no-cache", is_flag=True, default=None, help="Disable caching for the mount.")
@_config_options
@click.argument("path")
@out.api_options
def tune(path: str, **params: Any) -> None:
    """Tune the configuration of the secrets engine at PATH."""
    mount = _mount_path(path)
    body = _tune_body(params)
    client = out.client_from()
    with out.api_errors("tuning secrets engine"):
        client.sys.tune_mount(mount, body)
    out.success(f"Tuned the secrets engine at: {mount}")


def _tune_body(params: dict[str, Any]) -> dict[str, Any]:
    body = _config(params)
    if params.get("description") is not None:
        body["description"] = params["description"]
    options = _options(params)
    if options:
        body["options"] = options
    return body


@secrets.command()
@click.argument("source")
@click.argument("destination")
@out.api_options
def move(source: str, destination: str) -> None:
    """Move a secrets engine to a new path (its leases are revoked)."""
    _move(out.client_from(), _mount_path(source), _mount_path(destination), "secrets engine")


# --- auth ----------------------------------------------------------------------------------


@click.group(cls=out.Group)
def auth() -> None:
    """Auth methods: enable, disable, list, tune, move."""


@auth.command("enable")
@_mount_flags
@_config_options
@click.argument("method_type")
@out.api_options
def auth_enable(path: str | None, method_type: str, **params: Any) -> None:
    """Enable an auth method of TYPE."""
    mount = _mount_path(path or method_type)
    client = out.client_from()
    with out.api_errors(f"enabling {method_type} auth"):
        client.sys.enable_auth(mount, _enable_body(method_type, params))
    out.success(f"Enabled {method_type} auth method at: {mount}")


@auth.command("disable")
@click.argument("path")
@out.api_options
def auth_disable(path: str) -> None:
    """Disable the auth method at PATH, revoking its tokens."""
    mount = _mount_path(path)
    client = out.client_from()
    with out.api_errors(f"disabling auth method at {mount}"):
        client.sys.disable_auth(mount)
    out.success(f"Disabled the auth method (if it existed) at: {mount}")


@auth.command("list")
@click.option("--detailed", is_flag=True, help="Show TTLs, options and more.")
@out.api_options
def auth_list(detailed: bool) -> None:
    """List enabled auth methods."""
    client = out.client_from()
    with out.api_errors("listing enabled authentications"):
        mounts = _only_mounts(client.sys.list_auth())
    out.print_data(mounts, table=lambda: _mount_table(mounts, detailed))


@auth.command("tune")
@_config_options
@click.argument("path")
@out.api_options
def auth_tune(path: str, **params: Any) -> None:
    """Tune the auth method at PATH (through ``sys/mounts/auth/<path>/tune``, as Vault's CLI does)."""
    mount = _mount_path(path)
    client = out.client_from()
    with out.api_errors("tuning auth method"):
        client.sys.tune_mount(f"auth/{mount}", _tune_body(params))
    out.success(f"Tuned the auth method at: {mount}")


@auth.command("move")
@click.argument("source")
@click.argument("destination")
@out.api_options
def auth_move(source: str, destination: str) -> None:
    """Move an auth method to a new path."""
    src, dst = _mount_path(source), _mount_path(destination)
    _move(out.client_from(), f"auth/{src}", f"auth/{dst}", "auth method")
