"""Shared CLI plumbing: Vault's per-command flags, output formats and error reporting.

Every API command takes Vault's HTTP flags (``-address``, ``-ca-cert``, ``-tls-skip-verify``,
...) and output flags (``-format``, ``-field``). They are stored in ``ctx.meta`` rather than
passed to each callback, so commands stay short. Tables copy Vault's layout (``Key``/``Value``
columns four spaces apart, ``n/a`` for empty values, Go-style ``%v`` values) because people
and scripts read them.
"""

from __future__ import annotations

import json
import ssl
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar

import click
import httpx
import yaml

from strongroom.api.client import ApiError, Client, env

F = TypeVar("F", bound=Callable[..., Any])
_META = "strongroom.settings"
FORMATS = ("table", "json", "yaml")
_TRUE = {"1", "t", "T", "true", "TRUE", "True"}
_FALSE = {"0", "f", "F", "false", "FALSE", "False"}


@dataclass
class Settings:
    """The HTTP and output flags given to the current command."""

    address: str | None = None
    ca_cert: str | None = None
    ca_path: str | None = None
    client_cert: str | None = None
    client_key: str | None = None
    skip_verify: bool | None = None
    namespace: str | None = None
    wrap_ttl: str | None = None
    format: str = "table"
    field: str | None = None


def _store(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    ctx.meta.setdefault(_META, {})[param.name] = value
    return value


def _opt(*decls: str, **kw: Any) -> Callable[[F], F]:
    return click.option(*decls, expose_value=False, callback=_store, **kw)


def http_options(f: F) -> F:
    """Vault's HTTP flags; values left unset fall back to the environment in the client."""
    for decorator in (
        _opt("--address", help="Server address (env STRONGROOM_ADDR / VAULT_ADDR)."),
        _opt("--ca-cert", help="PEM CA bundle to verify the server."),
        _opt("--ca-path", help="Directory of PEM CA certificates."),
        _opt("--client-cert", help="PEM client certificate for TLS auth."),
        _opt("--client-key", help="PEM key for -client-cert."),
        _opt("--tls-skip-verify", is_flag=True, default=None, help="Do not verify the server cert."),
        _opt("--namespace", "--ns", help="Namespace for the request."),
        _opt("--wrap-ttl", help="Wrap the response with this TTL."),
    ):
        f = decorator(f)
    return f


def output_options(f: F) -> F:
    """``-format`` (env STRONGROOM_FORMAT / VAULT_FORMAT) and ``-field``."""
    f = _opt("--field", help="Print only this field, with no trailing newline.")(f)
    f = _opt("--format", help="Output format: table, json or yaml.")(f)
    return f


def api_options(f: F) -> F:
    return http_options(output_options(f))


def settings(ctx: click.Context | None = None) -> Settings:
    raw = (ctx or click.get_current_context()).meta.get(_META, {})
    fmt = (raw.get("format") or env("FORMAT") or "table").lower()
    if fmt not in FORMATS:
        fail(f"Invalid output format: {fmt} (expected one of {', '.join(FORMATS)})")
    return Settings(
        address=raw.get("address"),
        ca_cert=raw.get("ca_cert"),
        ca_path=raw.get("ca_path"),
        client_cert=raw.get("client_cert"),
        client_key=raw.get("client_key"),
        skip_verify=True if raw.get("tls_skip_verify") else None,
        namespace=raw.get("namespace"),
        wrap_ttl=raw.get("wrap_ttl"),
        format=fmt,
        field=raw.get("field"),
    )


def client_from(ctx: click.Context | None = None) -> Client:
    """Build the client through ``strongroom.cli.main.make_client`` (tests replace it)."""
    from strongroom.cli import main  # imported late: main imports this module

    s = settings(ctx)
    try:
        return main.make_client(s)
    except (OSError, ssl.SSLError, ValueError) as exc:
        fail(f"Error initializing client: {exc}")


def parse_go_bool(value: str) -> bool | None:
    """Go's strconv.ParseBool, which Vault's flags use; None when it is not a bool."""
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    return None


def _rewrite_bool_flags(cmd: click.Command, args: list[str]) -> list[str]:
    """Accept Go's ``-flag=true|false`` for boolean flags (``-renewable=false``)."""
    flags: dict[str, click.Option] = {}
    for param in cmd.params:
        if isinstance(param, click.Option) and param.is_flag and param.is_bool_flag:
            for opt in param.opts:
                flags[opt] = param
    out: list[str] = []
    for i, arg in enumerate(args):
        if arg == "--":
            out.extend(args[i:])
            break
        name, eq, value = arg.partition("=")
        option = flags.get(name) if eq else None
        parsed = parse_go_bool(value) if option is not None else None
        if option is None or parsed is None:
            out.append(arg)
        elif parsed:
            out.append(name)
        elif option.secondary_opts:
            out.append(option.secondary_opts[0])
    return out


class Command(click.Command):
    """A command that also takes Go's ``-flag=false`` form for its boolean flags."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, _rewrite_bool_flags(self, args))


class Group(click.Group):
    """A group whose subcommands and subgroups accept Go-style boolean flags."""

    command_class = Command
    group_class = type


# --- errors and plain output ---------------------------------------------------------------


def fail(message: str, code: int = 1) -> NoReturn:
    click.echo(message, err=True)
    raise click.exceptions.Exit(code)


@contextmanager
def api_errors(what: str, code: int = 2) -> Iterator[None]:
    """Turn an API or connection error into ``Error <what>: ...`` on stderr and an exit code."""
    try:
        yield
    except ApiError as exc:
        fail(f"Error {what}: {exc}", code)
    except httpx.RequestError as exc:  # connection refused, TLS failure, timeout
        fail(f'Error {what}: {exc.request.method} "{exc.request.url}": {exc}', code)
    except httpx.HTTPError as exc:
        fail(f"Error {what}: {exc}", code)


def success(message: str) -> None:
    click.echo(f"Success! {message}")


def print_raw(value: str) -> None:
    """A bare value for scripts: no newline unless a person is looking (Vault's PrintRaw)."""
    click.echo(value, nl=sys.stdout.isatty())


def warn(message: str) -> None:
    click.echo(message, err=True)


# --- value formatting ----------------------------------------------------------------------


def go_value(value: Any) -> str:
    """Format like Go's ``%v``, which is what Vault's tables show."""
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, list):
        return "[" + " ".join(go_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{go_value(value[k])}" for k in sorted(value)) + "]"
    return str(value)


def quoted_list(values: Any) -> str:
    """Go's ``%q`` of a string slice: ``["default" "root"]``."""
    items = values if isinstance(values, list) else []
    return "[" + " ".join(json.dumps(str(v)) for v in items) + "]"


def human_duration(seconds: Any) -> str:
    """Vault's humanDuration: 2764800 → ``768h``, 90 → ``1m30s``."""
    try:
        total = int(seconds)
    except (TypeError, ValueError):
        return go_value(seconds)
    if total == 0:
        return "0s"
    sign = "-" if total < 0 else ""
    total = abs(total)
    hours, rem = divmod(total, 3600)
    minutes, secs = divmod(rem, 60)
    if hours:
        text = f"{hours}h{minutes}m{secs}s"
    elif minutes:
        text = f"{minutes}m{secs}s"
    else:
        text = f"{secs}s"
    if text.endswith("m0s"):
        text = text[:-2]
    idx = text.find("h0m")
    if idx > 0:
        text = text[: idx + 1] + text[idx + 3 :]
    return sign + text


def _looks_like_duration(key: str) -> bool:
    return key in ("period", "ttl") or key.endswith(("_period", "_ttl"))


def columns(rows: Sequence[Sequence[str]], *, underline: bool = True) -> str:
    """Align rows in columns four spaces apart; the first row is the header."""
    cells = [[c if c != "" else "n/a" for c in row] for row in rows]
    if underline and cells:
        cells.insert(1, ["-" * len(c) for c in cells[0]])
    width = max((len(r) for r in cells), default=0)
    sizes = [max((len(r[i]) for r in cells if i < len(r)), default=0) for i in range(width)]
    lines = []
    for row in cells:
        padded = [c.ljust(sizes[i]) if i < len(row) - 1 else c for i, c in enumerate(row)]
        lines.append("    ".join(padded))
    return "\n".join(lines)


def key_value_table(rows: Sequence[tuple[str, str]]) -> str:
    return columns([("Key", "Value"), *rows])


def pad_equal_signs(header: str, total_len: int) -> str:
    """Vault's section headers: ``== Secret Path ==`` sized to the table below."""
    signs = total_len - (len(header) + 2)
    if signs <= 0:
        signs = 4
    if signs % 2:
        signs += 1
    return f"{'=' * (signs // 2)} {header} {'=' * (signs // 2)}"


def header_for_map(header: str, data: dict[str, Any]) -> str:
    width = max((len(k) for k in data), default=0)
    return pad_equal_signs(header, width + 4 + 5)


# --- structured output ---------------------------------------------------------------------


def dump(value: Any, fmt: str) -> str:
    if fmt == "yaml":
        return yaml.safe_dump(value, default_flow_style=False, sort_keys=False, allow_unicode=True).rstrip(
            "\n"
        )
    return json.dumps(value, indent=2)


def secret_rows(secret: dict[str, Any]) -> list[tuple[str, str]]:
    """The rows Vault prints for a response: lease, auth, wrap info, then sorted data."""
    rows: list[tuple[str, str]] = []
    lease = secret.get("lease_duration") or 0
    if lease:
        if secret.get("lease_id"):
            rows.append(("lease_id", str(secret["lease_id"])))
            rows.append(("lease_duration", human_duration(lease)))
            rows.append(("lease_renewable", go_value(bool(secret.get("renewable")))))
        else:
            rows.append(("refresh_interval", human_duration(lease)))
    auth = secret.get("auth")
    if isinstance(auth, dict):
        rows.extend(auth_rows(auth))
    wrap = secret.get("wrap_info")
    if isinstance(wrap, dict):
        rows.append(("wrapping_token:", str(wrap.get("token", ""))))
        rows.append(("wrapping_accessor:", str(wrap.get("accessor", ""))))
        rows.append(("wrapping_token_ttl:", human_duration(wrap.get("ttl", 0))))
        rows.append(("wrapping_token_creation_time:", str(wrap.get("creation_time", ""))))
        rows.append(("wrapping_token_creation_path:", str(wrap.get("creation_path", ""))))
        if wrap.get("wrapped_accessor"):
            rows.append(("wrapped_accessor:", str(wrap["wrapped_accessor"])))
    data = secret.get("data")
    if isinstance(data, dict):
        rows.extend(data_rows(data))
    return rows


def auth_rows(auth: dict[str, Any]) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    if auth.get("client_token"):
        rows.append(("token", str(auth["client_token"])))
    rows.append(("token_accessor", str(auth.get("accessor") or "")))
    duration = auth.get("lease_duration") or 0
    rows.append(("token_duration", human_duration(duration) if duration else "∞"))
    rows.append(("token_renewable", go_value(bool(auth.get("renewable")))))
    rows.append(("token_policies", quoted_list(auth.get("token_policies", auth.get("policies")))))
    rows.append(("identity_policies", quoted_list(auth.get("identity_policies"))))
    rows.append(("policies", quoted_list(auth.get("policies"))))
    meta = auth.get("metadata")
    if isinstance(meta, dict):
        rows.extend((f"token_meta_{k}", go_value(meta[k])) for k in sorted(meta))
    return rows


def data_rows(data: dict[str, Any]) -> list[tuple[str, str]]:
    rows = []
    for key in sorted(data):
        value = data[key]
        text = (
            human_duration(value) if _looks_like_duration(key) and isinstance(value, int) else go_value(value)
        )
        rows.append((key, text))
    return rows


def lookup_field(secret: dict[str, Any], field: str) -> tuple[bool, Any]:
    """``-field``: look in ``data``, then the table rows (``token``...), then ``auth``."""
    data = secret.get("data")
    if isinstance(data, dict) and field in data:
        return True, data[field]
    auth = secret.get("auth") if isinstance(secret.get("auth"), dict) else {}
    named = {"token": "client_token", "token_accessor": "accessor", "token_renewable": "renewable"}
    if field in named and auth and named[field] in auth:
        return True, auth[named[field]]
    rows = dict(secret_rows({k: v for k, v in secret.items() if k != "data"}))
    for key in (field, field + ":"):
        if key in rows:
            return True, rows[key]
    if auth and field in auth:
        return True, auth[field]
    return False, None


def print_field(value: Any, s: Settings) -> None:
    if s.format == "table":
        print_raw(value if isinstance(value, str) else go_value(value))
    else:
        click.echo(dump(value, s.format))


def print_warnings(secret: dict[str, Any]) -> None:
    warnings = secret.get("warnings") or []
    if warnings:
        warn("WARNING! The following warnings were returned from the server:\n")
        for item in warnings:
            warn(f"  * {item}")
        warn("")


def require_content(secret: dict[str, Any] | None, path: str) -> dict[str, Any]:
    """A read that found nothing (404, or an envelope with only warnings) exits 2, like Vault."""
    if secret is not None and any(secret.get(k) is not None for k in ("data", "auth", "wrap_info")):
        return secret
    if secret is not None:
        print_warnings(secret)
    fail(f"No value found at {path}", 2)


def print_secret(secret: dict[str, Any], s: Settings | None = None) -> None:
    """Print a whole response as Vault's OutputSecret does."""
    s = s or settings()
    if s.field:
        found, value = lookup_field(secret, s.field)
        if not found:
            fail(f'Field "{s.field}" not present in secret')
        print_field(value, s)
        return
    if s.format != "table":
        click.echo(dump(secret, s.format))
        return
    print_warnings(secret)
    rows = secret_rows(secret)
    if rows:
        click.echo(key_value_table(rows))


def print_data(data: Any, s: Settings | None = None, *, table: Callable[[], str] | None = None) -> None:
    """Print a plain structure: JSON/YAML as is, tables by ``table()`` or as Key/Value rows."""
    s = s or settings()
    if s.field and isinstance(data, dict):
        if s.field not in data:
            fail(f'Field "{s.field}" not present in secret')
        print_field(data[s.field], s)
    elif s.format != "table":
        click.echo(dump(data, s.format))
    elif table is not None:
        click.echo(table())
    elif isinstance(data, dict):
        click.echo(key_value_table(data_rows(data)))
    else:
        click.echo(go_value(data))


def print_keys(keys: list[Any], s: Settings | None = None) -> None:
    """A list response: a ``Keys`` column, or the bare list as JSON/YAML."""
    s = s or settings()
    if s.format != "table":
        click.echo(dump(keys, s.format))
        return
    click.echo(columns([("Keys",), *[(str(k),) for k in keys]]))
