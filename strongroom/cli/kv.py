"""``kv``: the versioned key/value commands.

Like Vault's CLI, every command first asks ``sys/internal/ui/mounts/<path>`` where the mount
starts and which KV version it speaks, then inserts ``data/``, ``metadata/``, ``delete/`` ...
after the mount for v2. ``-mount=secret foo`` and ``secret/foo`` are the same path.
"""

from __future__ import annotations

from typing import Any

import click
import httpx

from strongroom.api.client import ApiError, Client, KvMount, data_of
from strongroom.cli import output as out
from strongroom.cli.generic import parse_data

_mount_option = click.option("--mount", help="KV mount path; the argument is then the path inside it.")


def _resolve(client: Client, path: str, mount: str | None) -> tuple[KvMount, str]:
    """The mount and the full logical path (``secret/foo``) for a command's arguments."""
    path = path.strip().lstrip("/")
    target = mount.strip().strip("/") if mount else path
    with out.api_errors(f"looking up the mount of {target}"):
        info = client.kv.mount_info(target)
    if mount:
        base = info.path or target.rstrip("/") + "/"
        info = KvMount(base, info.version)
        return info, base + path
    return info, path


def _require_v2(info: KvMount, what: str) -> None:
    if info.version != 2:
        out.fail(f"K/V engine mount must be version 2 for {what} support", 2)


def _versions(value: str | None) -> list[int]:
    if not value:
        return []
    try:
        return [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        out.fail(f'Invalid -versions value "{value}": expected comma-separated integers')


def output_path(path: str, header: str) -> None:
    click.echo(out.pad_equal_signs(header, len(path)))
    click.echo(path)
    click.echo()


def _print_metadata_section(metadata: dict[str, Any]) -> None:
    click.echo(out.header_for_map("Metadata", metadata))
    click.echo(out.key_value_table(out.data_rows(metadata)))


@click.group(cls=out.Group)
def kv() -> None:
    """Read and write key/value secrets (v1 and v2 mounts)."""


@kv.command()
@click.option("--version", "version", type=int, help="Read this version (v2).")
@_mount_option
@click.argument("path")
@out.api_options
def get(version: int | None, mount: str | None, path: str) -> None:
    """Read a secret."""
    client = out.client_from()
    info, full = _resolve(client, path, mount)
    api_path = info.api_path(full, "data")
    with out.api_errors(f"reading {api_path}"):
        found = client.kv.get(full, version if version and version > 0 else None, mount=info)
    secret = out.require_content(found, api_path)
    s = out.settings()
    v2 = info.version == 2
    inner = data_of(secret).get("data") if v2 else None
    if s.field:
        if not v2:
            out.print_secret(secret, s)
            return
        if not isinstance(inner, dict):
            out.fail(f"No data found at {api_path}", 2)
        if s.field not in inner:
            out.fail(f'Field "{s.field}" not present in secret')
        out.print_field(inner[s.field], s)
        return
    if secret.get("wrap_info") or s.format != "table":
        out.print_secret(secret, s)
        return
    out.print_warnings(secret)
    if not v2:
        data = data_of(secret)
        click.echo(out.header_for_map("Data", data))
        click.echo(out.key_value_table(out.data_rows(data)))
        return
    output_path(api_path, "Secret Path")
    metadata = data_of(secret).get("metadata")
    if isinstance(metadata, dict):
        _print_metadata_section(metadata)
        click.echo()
    if isinstance(inner, dict):
        click.echo(out.header_for_map("Data", inner))
        click.echo(out.key_value_table(out.data_rows(inner)))


def _print_written(secret: dict[str, Any] | None, api_path: str) -> None:
    """After put/patch: the new version's metadata (v2) or a success line (v1)."""
    s = out.settings()
    if secret is None:
        out.success(f"Data written to: {api_path}")
        return
    if s.field or s.format != "table":
        out.print_secret(secret, s)
        return
    out.print_warnings(secret)
    output_path(api_path, "Secret Path")
    _print_metadata_section(data_of(secret))


@kv.command()
@click.option("--cas", type=int, help="Check-and-set: write only if the current version is N (v2).")
@_mount_option
@click.argument("path")
@click.argument("args", nargs=-1)
@out.api_options
def put(cas: int | None, mount: str | None, path: str, args: tuple[str, ...]) -> None:
    """Write a secret, replacing any previous data (a new version on v2)."""
    data = parse_data(args)
    if not data:
        out.fail("Must supply data")
    client = out.client_from()
    info, full = _resolve(client, path, mount)
    api_path = info.api_path(full, "data")
    with out.api_errors(f"writing data to {api_path}"):
        secret = client.kv.put(full, data, cas if cas is not None and cas >= 0 else None, mount=info)
    _print_written(secret, api_path)


@kv.command()
@click.option("--cas", type=int, help="Check-and-set version.")
@click.option("--method", type=click.Choice(["patch", "rw"]), help="Force PATCH or read-then-write.")
@_mount_option
@click.argument("path")
@click.argument("args", nargs=-1)
@out.api_options
def patch(cas: int | None, method: str | None, mount: str | None, path: str, args: tuple[str, ...]) -> None:
    """Merge new keys into the latest version; falls back to read-then-write when PATCH is denied."""
    data = parse_data(args)
    if not data:
        out.fail("Must supply data")
    client = out.client_from()
    info, full = _resolve(client, path, mount)
    _require_v2(info, "patch")
    api_path = info.api_path(full, "data")
    secret: dict[str, Any] | None = None
    if method != "rw":
        try:
            secret = client.kv.patch(full, data, cas, mount=info)
        except ApiError as exc:
            if method == "patch" or exc.status not in (403, 405):
                out.fail(f"Error writing data to {api_path}: {exc}", 2)
            method = "rw"
        except httpx.HTTPError as exc:
            out.fail(f"Error writing data to {api_path}: {exc}", 2)
    if method == "rw":
        secret = _read_then_write(client, info, full, api_path, data, cas)
    _print_written(secret, api_path)


def _read_then_write(
    client: Client, info: KvMount, full: str, api_path: str, data: dict[str, Any], cas: int | None
) -> dict[str, Any] | None:
    with out.api_errors(f"doing pre-read at {api_path}"):
        current = client.kv.get(full, mount=info)
    if current is None:
        out.fail(f"No value found at {api_path}", 2)
    body = data_of(current)
    existing = body.get("data")
    if not isinstance(existing, dict):
        out.fail(f"No data found at {api_path}; the secret may be deleted or destroyed", 2)
    metadata = body.get("metadata") if isinstance(body.get("metadata"), dict) else {}
    if cas is None and metadata and metadata.get("version") is not None:
        cas = int(metadata["version"])
    with out.api_errors(f"writing data to {api_path}"):
        return client.kv.put(full, {**existing, **data}, cas, mount=info)


@kv.command("list")
@_mount_option
@click.argument("path", default="")
@out.api_options
def list_(mount: str | None, path: str) -> None:
    """List keys under a path."""
    client = out.client_from()
    info, full = _resolve(client, path, mount)
    api_path = info.api_path(full, "metadata")
    with out.api_errors(f"listing {api_path}"):
        secret = client.kv.list(full, mount=info)
    keys = data_of(secret).get("keys") if secret else None
    if not keys:
        out.fail(f"No value found at {api_path}", 2)
    out.print_keys(list(keys))


@kv.command()
@click.option("--versions", help="Comma-separated versions to soft-delete (v2).")
@_mount_option
@click.argument("path")
@out.api_options
def delete(versions: str | None, mount: str | None, path: str) -> None:
    """Delete the latest version (or -versions) of a secret; v2 deletes can be undone."""
    client = out.client_from()
    info, full = _resolve(client, path, mount)
    numbers = _versions(versions)
    api_path = info.api_path(full, "delete" if numbers and info.version == 2 else "data")
    with out.api_errors(f"deleting {api_path}"):
        client.kv.delete(full, numbers or None, mount=info)
    out.success(f"Data deleted (if it existed) at: {api_path}")


@kv.command()
@click.option("--versions", required=True, help="Comma-separated versions to restore.")
@_mount_option
@click.argument("path")
@out.api_options
def undelete(versions: str, mount: str | None, path: str) -> None:
    """Restore soft-deleted versions (v2)."""
    _versions_action("undelete", versions, mount, path)


def _versions_action(action: str, versions: str, mount: str | None, path: str) -> None:
    """``kv undelete`` and ``kv destroy``: the same request shape on another v2 path."""
    client = out.client_from()
    info, full = _resolve(client, path, mount)
    _require_v2(info, action)
    numbers = _versions(versions)
    if not numbers:
        out.fail(f"No versions provided, use the -versions flag to specify the version to {action}.")
    api_path = info.api_path(full, action)
    call = client.kv.undelete if action == "undelete" else client.kv.destroy
    with out.api_errors(f"writing data to {api_path}"):
        call(full, numbers, mount=info)
    out.success(f"Data written to: {api_path}")


@kv.command()
@click.option("--versions", required=True, help="Comma-separated versions to destroy.")
@_mount_option
@click.argument("path")
@out.api_options
def destroy(versions: str, mount: str | None, path: str) -> None:
    """Permanently remove versions (v2)."""
    _versions_action("destroy", versions, mount, path)


@kv.group(cls=out.Group)
def metadata() -> None:
    """Versioning settings and history of a secret (v2)."""


@metadata.command("get")
@_mount_option
@click.argument("path")
@out.api_options
def metadata_get(mount: str | None, path: str) -> None:
    """Show a secret's metadata and every version's state."""
    client = out.client_from()
    info, full = _resolve(client, path, mount)
    _require_v2(info, "metadata")
    api_path = info.api_path(full, "metadata")
    with out.api_errors(f"reading {api_path}"):
        secret = client.kv.read_metadata(full, mount=info)
    if secret is None:
        out.fail(f"No value found at {api_path}", 2)
    s = out.settings()
    if s.field or s.format != "table":
        out.print_secret(secret, s)
        return
    data = dict(data_of(secret))
    versions = data.pop("versions", None) or {}
    output_path(api_path, "Metadata Path")
    click.echo(out.header_for_map("Metadata", data))
    click.echo(out.key_value_table(out.data_rows(data)))
    for number in sorted(versions, key=lambda v: int(v) if str(v).isdigit() else 0):
        entry = versions[number] if isinstance(versions[number], dict) else {}
        click.echo()
        click.echo(out.header_for_map(f"Version {number}", entry))
        click.echo(out.key_value_table(out.data_rows(entry)))


@metadata.command("put")
@click.option("--max-versions", type=int, help="Versions to keep (0 = the mount's setting).")
@click.option("--cas-required/--no-cas-required", default=None, help="Require -cas on writes.")
@click.option("--delete-version-after", help="Delete versions after this long, e.g. 720h.")
@click.option("--custom-metadata", multiple=True, help="k=v to store with the secret (repeatable).")
@_mount_option
@click.argument("path")
@out.api_options
def metadata_put(
    max_versions: int | None,
    cas_required: bool | None,
    delete_version_after: str | None,
    custom_metadata: tuple[str, ...],
    mount: str | None,
    path: str,
) -> None:
    """Create or update a secret's metadata; adds no version."""
    body: dict[str, Any] = {}
    if max_versions is not None:
        body["max_versions"] = max_versions
    if cas_required is not None:
        body["cas_required"] = cas_required
    if delete_version_after:
        body["delete_version_after"] = delete_version_after
    if custom_metadata:
        body["custom_metadata"] = {k: str(v) for k, v in parse_data(custom_metadata).items()}
    client = out.client_from()
    info, full = _resolve(client, path, mount)
    _require_v2(info, "metadata")
    api_path = info.api_path(full, "metadata")
    with out.api_errors(f"writing data to {api_path}"):
        client.kv.write_metadata(full, body, mount=info)
    out.success(f"Data written to: {api_path}")


@metadata.command("delete")
@_mount_option
@click.argument("path")
@out.api_options
def metadata_delete(mount: str | None, path: str) -> None:
    """Delete every version of a secret and its metadata."""
    client = out.client_from()
    info, full = _resolve(client, path, mount)
    _require_v2(info, "metadata")
    api_path = info.api_path(full, "metadata")
    with out.api_errors(f"deleting {api_path}"):
        client.kv.delete_metadata(full, mount=info)
    out.success(f"Data deleted (if it existed) at: {api_path}")
