"""Commands that work on any path (read, write, list, delete, patch, unwrap, path-help),
plus ``status`` and ``login``, which every session starts with."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import click
import httpx

from strongroom.api.client import ApiError, Client, data_of, env, write_token_file
from strongroom.cli import output as out

# Methods whose login path ends with the user name (``auth/userpass/login/<name>``).
_USER_IN_PATH = {"userpass", "ldap", "okta", "radius"}


def parse_data(args: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """Vault's ``k=v`` arguments: ``k=@file`` reads a file, ``k=-`` reads stdin, a lone ``-``
    merges a JSON object from stdin, ``@file`` merges a JSON file, repeated keys make a list."""
    result: dict[str, Any] = {}
    for raw in args:
        if raw == "-":
            result.update(_json_object(sys.stdin.read(), "stdin"))
            continue
        if raw.startswith("@"):
            result.update(_json_object(_read_file(raw[1:]), raw[1:]))
            continue
        key, eq, value = raw.partition("=")
        if not eq:
            out.fail(f'Failed to parse K=V data: invalid key/value pair "{raw}": format must be key=value')
        if value.startswith("@"):
            value = _read_file(value[1:])
        elif value.startswith("\\@"):
            value = value[1:]
        elif value == "-":
            value = sys.stdin.read()
        if key in result:
            prior = result[key]
            result[key] = [*prior, value] if isinstance(prior, list) else [prior, value]
        else:
            result[key] = value
    return result


def _read_file(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except OSError as exc:
        out.fail(f"Failed to read {path}: {exc}")


def _json_object(text: str, source: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as exc:
        out.fail(f"Failed to parse JSON from {source}: {exc}")
    if not isinstance(value, dict):
        out.fail(f"Failed to parse JSON from {source}: expected an object")
    return value


def _strip(path: str) -> str:
    return path.strip().lstrip("/")


# --- status --------------------------------------------------------------------------------


def seal_status_table(status: dict[str, Any], leader: dict[str, Any] | None) -> str:
    prefix = "Recovery " if status.get("recovery_seal") else ""
    rows = [
        (f"{prefix}Seal Type", str(status.get("type", ""))),
        ("Initialized", out.go_value(bool(status.get("initialized")))),
        ("Sealed", out.go_value(bool(status.get("sealed")))),
        (f"Total {prefix}Shares", str(status.get("n", 0))),
        ("Threshold", str(status.get("t", 0))),
    ]
    if status.get("sealed"):
        rows.append(("Unseal Progress", f"{status.get('progress', 0)}/{status.get('t', 0)}"))
        rows.append(("Unseal Nonce", str(status.get("nonce") or "")))
    if status.get("migration"):
        rows.append(("Seal Migration in Progress", "true"))
    rows.append(("Version", str(status.get("version", ""))))
    if "build_date" in status:
        rows.append(("Build Date", str(status["build_date"])))
    rows.append(("Storage Type", str(status.get("storage_type", ""))))
    if status.get("cluster_name") and status.get("cluster_id"):
        rows.append(("Cluster Name", str(status["cluster_name"])))
        rows.append(("Cluster ID", str(status["cluster_id"])))
    ha = bool(leader and leader.get("ha_enabled"))
    rows.append(("HA Enabled", out.go_value(ha)))
    if ha and leader and not status.get("sealed"):
        rows.append(("HA Cluster", str(leader.get("leader_cluster_address") or "")))
        rows.append(("HA Mode", "active" if leader.get("is_self") else "standby"))
        if not leader.get("is_self"):
            rows.append(("Active Node Address", str(leader.get("leader_address") or "<none>")))
    return out.key_value_table(rows)


def print_seal_status(client: Client, status: dict[str, Any]) -> None:
    """Seal status as ``status`` and ``operator unseal`` show it, with HA details when unsealed."""
    leader: dict[str, Any] | None = None
    if not status.get("sealed"):
        try:
            leader = client.sys.leader()
        except (ApiError, httpx.HTTPError):
            leader = None  # a server without sys/leader still has a useful status
    merged = dict(status)
    if leader:
        merged.update({k: v for k, v in leader.items() if k not in merged})
    out.print_data(merged, table=lambda: seal_status_table(status, leader))


@click.command(cls=out.Command)
@out.api_options
def status() -> None:
    """Seal status; exit 0 when unsealed, 2 when sealed, 1 on error."""
    client = out.client_from()
    with out.api_errors("checking seal status", code=1):
        sealed = client.sys.seal_status() or {}
    print_seal_status(client, sealed)
    if sealed.get("sealed"):
        raise click.exceptions.Exit(2)


# --- login ---------------------------------------------------------------------------------


@click.command(cls=out.Command)
@click.option("--method", default="token", show_default=True, help="Auth method type.")
@click.option("--path", "mount", help="Mount path of the auth method (default: the method).")
@click.option("--no-store", is_flag=True, help="Do not save the token to ~/.strongroom-token.")
@click.option("--token-only", is_flag=True, help="Print only the token; implies -no-store.")
@click.argument("args", nargs=-1)
@out.api_options
def login(method: str, mount: str | None, no_store: bool, token_only: bool, args: tuple[str, ...]) -> None:
    """Authenticate and store the token: ``login TOKEN`` or ``login -method=userpass username=U``."""
    client = out.client_from()
    s = out.settings()
    if method == "token":
        secret, token = _login_token(client, args)
    else:
        secret = _login_method(client, method, (mount or method).strip("/"), args)
        auth = secret.get("auth") if secret else None
        if not isinstance(auth, dict) or not auth.get("client_token"):
            out.fail("Error authenticating: no token was returned", 2)
        token = str(auth["client_token"])
    if token_only:
        out.print_raw(token)
        return
    if not no_store:
        try:
            write_token_file(token)
        except OSError as exc:
            out.fail(f"Error storing token: {exc}", 2)
    if s.field or s.format != "table":
        out.print_secret(secret, s)
        return
    if env("TOKEN"):
        out.warn(
            "WARNING! The STRONGROOM_TOKEN or VAULT_TOKEN environment variable is set! It takes\n"
            "precedence over the stored token; unset it or update it if that is unwanted.\n"
        )
    if no_store:
        click.echo(
            "Success! You are now authenticated. The token information displayed below\nis not stored.\n"
        )
    else:
        click.echo(
            "Success! You are now authenticated. The token information displayed below\n"
            'is already stored in the token helper. You do NOT need to run "strongroom login"\n'
            "again. Future requests will automatically use this token.\n"
        )
    out.print_secret(secret, s)


def _login_token(client: Client, args: tuple[str, ...]) -> tuple[dict[str, Any], str]:
    values = [a.partition("=")[2] if a.startswith("token=") else a for a in args]
    if len(values) > 1:
        out.fail(f"Too many arguments (expected 1, got {len(values)})")
    supplied = values[0] if values else ""
    token = sys.stdin.read().strip() if supplied == "-" else supplied
    if not token:
        token = click.prompt("Token (will be hidden)", hide_input=True, err=True).strip()
    client.client_token = token
    with out.api_errors("authenticating"):
        lookup = data_of(client.token.lookup_self())
    policies = lookup.get("policies") or []
    identity = lookup.get("identity_policies") or []
    auth = {
        "client_token": token,
        "accessor": lookup.get("accessor", ""),
        "lease_duration": lookup.get("ttl") or 0,
        "renewable": bool(lookup.get("renewable")),
        "token_policies": policies,
        "identity_policies": identity,
        "policies": sorted({*policies, *identity}),
        "metadata": lookup.get("meta"),
    }
    return {"data": None, "auth": auth}, token


def _login_method(client: Client, method: str, mount: str, args: tuple[str, ...]) -> dict[str, Any]:
    data = parse_data(args)
    path = f"auth/{mount}/login"
    if method in _USER_IN_PATH:
        username = data.pop("username", None) or env("USERNAME") or os.environ.get("USER")
        if not username:
            out.fail("Missing username: pass username=NAME")
        if "password" not in data:
            data["password"] = click.prompt("Password (will be hidden)", hide_input=True, err=True)
        path = f"{path}/{username}"
    client.client_token = None  # a login must not carry a stale token
    with out.api_errors("authenticating"):
        return client.write(path, data) or {}


# --- generic path commands -----------------------------------------------------------------


@click.command(cls=out.Command)
@click.argument("path")
@click.argument("args", nargs=-1)
@out.api_options
def read(path: str, args: tuple[str, ...]) -> None:
    """Read data at PATH; extra k=v pairs are sent as query parameters."""
    path = _strip(path)
    client = out.client_from()
    params = parse_data(args) or None
    with out.api_errors(f"reading {path}"):
        secret = client.read(path, params=params)
    out.print_secret(out.require_content(secret, path))


@click.command(cls=out.Command)
@click.option("--force", "-f", is_flag=True, help="Allow a write with no data.")
@click.argument("path")
@click.argument("args", nargs=-1)
@out.api_options
def write(force: bool, path: str, args: tuple[str, ...]) -> None:
    """Write k=v data (``k=@file``, ``-`` for JSON on stdin) to PATH."""
    path = _strip(path)
    data = parse_data(args)
    if not data and not force:
        out.fail("Must supply data or use -force")
    client = out.client_from()
    with out.api_errors(f"writing data to {path}"):
        secret = client.write(path, data)
    _print_write_result(secret, path)


def _print_write_result(secret: dict[str, Any] | None, path: str) -> None:
    if secret is None:
        if out.settings().format == "table":
            out.success(f"Data written to: {path}")
        return
    out.print_secret(secret)


@click.command("list", cls=out.Command)
@click.argument("path")
@out.api_options
def list_(path: str) -> None:
    """List the keys under PATH."""
    path = _strip(path)
    client = out.client_from()
    with out.api_errors(f"listing {path}"):
        secret = client.list(path)
    keys = data_of(secret).get("keys") if secret else None
    if not keys:
        out.fail(f"No value found at {path}", 2)
    if out.settings().field:
        out.print_secret(secret or {})
        return
    out.print_warnings(secret or {})
    out.print_keys(list(keys))


@click.command(cls=out.Command)
@click.argument("path")
@click.argument("args", nargs=-1)
@out.api_options
def delete(path: str, args: tuple[str, ...]) -> None:
    """Delete data at PATH; extra k=v pairs are sent as query parameters."""
    path = _strip(path)
    client = out.client_from()
    params = parse_data(args) or None
    with out.api_errors(f"deleting {path}"):
        secret = client.delete(path, params=params)
    if secret is None:
        out.success(f"Data deleted (if it existed) at: {path}")
    else:
        out.print_secret(secret)


@click.command(cls=out.Command)
@click.argument("path")
@click.argument("args", nargs=-1)
@out.api_options
def patch(path: str, args: tuple[str, ...]) -> None:
    """Merge k=v data into PATH with a JSON merge patch."""
    path = _strip(path)
    data = parse_data(args)
    if not data:
        out.fail("Must supply data")
    client = out.client_from()
    with out.api_errors(f"writing data to {path}"):
        secret = client.patch(path, data)
    _print_write_result(secret, path)


@click.command(cls=out.Command)
@click.argument("wrapping_token", required=False)
@out.api_options
def unwrap(wrapping_token: str | None) -> None:
    """Unwrap a wrapped response; without TOKEN the current token is the wrapping token."""
    client = out.client_from()
    with out.api_errors("unwrapping"):
        secret = client.unwrap(wrapping_token)
    if not secret or (not secret.get("data") and not secret.get("auth")):
        click.echo("Successfully unwrapped. There was no data in the wrapped secret.")
        return
    out.print_secret(secret)


@click.command("path-help", cls=out.Command)
@click.argument("path")
@out.api_options
def path_help(path: str) -> None:
    """Show the server's help text for PATH."""
    path = _strip(path)
    client = out.client_from()
    with out.api_errors(f"retrieving help for {path}"):
        body = client.request("GET", path, params={"help": "1"}) or {}
    s = out.settings()
    if s.format != "table":
        click.echo(out.dump(body, s.format))
    else:
        click.echo(str(body.get("help", "")).rstrip("\n"))
