"""``token``: create, lookup, renew, revoke and capabilities."""

from __future__ import annotations

from typing import Any

import click

from strongroom.cli import output as out
from strongroom.cli.generic import parse_data


@click.group(cls=out.Group)
def token() -> None:
    """Create and manage tokens."""


@token.command()
@click.option("--policy", "policies", multiple=True, help="Policy to attach (repeatable or comma-separated).")
@click.option("--ttl", help="Initial TTL, e.g. 1h.")
@click.option("--explicit-max-ttl", help="Hard limit on the token's life.")
@click.option("--period", help="Make a periodic token renewed by this period.")
@click.option("--orphan", is_flag=True, help="Create a token with no parent.")
@click.option("--use-limit", type=int, help="Number of uses (0 = unlimited).")
@click.option("--type", "token_type", type=click.Choice(["service", "batch", "default"]), help="Token type.")
@click.option("--display-name", help="Name shown in the token's metadata.")
@click.option("--metadata", multiple=True, help="k=v metadata (repeatable).")
@click.option("--renewable/--no-renewable", default=None, help="Allow renewal (default true).")
@click.option("--role", help="Create through this token role.")
@click.option("--no-default-policy", is_flag=True, help="Do not attach the default policy.")
@click.option("--id", "token_id", help="Explicit token ID (root only).")
@click.option("--entity-alias", help="Entity alias to attach (with -role).")
@out.api_options
def create(
    policies: tuple[str, ...],
    ttl: str | None,
    explicit_max_ttl: str | None,
    period: str | None,
    orphan: bool,
    use_limit: int | None,
    token_type: str | None,
    display_name: str | None,
    metadata: tuple[str, ...],
    renewable: bool | None,
    role: str | None,
    no_default_policy: bool,
    token_id: str | None,
    entity_alias: str | None,
) -> None:
    """Create a token; ``-field=token`` prints only the new token."""
    body: dict[str, Any] = {}
    names = [p.strip() for item in policies for p in item.split(",") if p.strip()]
    if names:
        body["policies"] = names
    for key, value in (
        ("ttl", ttl),
        ("explicit_max_ttl", explicit_max_ttl),
        ("period", period),
        ("display_name", display_name),
        ("type", token_type),
        ("id", token_id),
        ("entity_alias", entity_alias),
    ):
        if value:
            body[key] = value
    if use_limit:
        body["num_uses"] = use_limit
    if metadata:
        body["meta"] = {k: str(v) for k, v in parse_data(metadata).items()}
    if renewable is not None:
        body["renewable"] = renewable
    if orphan:
        body["no_parent"] = True
    if no_default_policy:
        body["no_default_policy"] = True
    client = out.client_from()
    with out.api_errors("creating token"):
        secret = client.token.create(body, role=role) or {}
    out.print_secret(secret)


@token.command()
@click.option("--accessor", is_flag=True, help="TOKEN is an accessor.")
@click.argument("value", required=False)
@out.api_options
def lookup(accessor: bool, value: str | None) -> None:
    """Show a token's properties (the current token when none is given)."""
    client = out.client_from()
    if accessor and not value:
        out.fail("Not enough arguments (expected 1, got 0)")
    with out.api_errors("looking up token"):
        if accessor:
            secret = client.token.lookup_accessor(str(value))
        elif value:
            secret = client.token.lookup(value)
        else:
            secret = client.token.lookup_self()
    out.print_secret(secret or {})


@token.command()
@click.option("--increment", "-i", help="Requested extension, e.g. 1h.")
@click.option("--accessor", is_flag=True, help="TOKEN is an accessor.")
@click.argument("value", required=False)
@out.api_options
def renew(increment: str | None, accessor: bool, value: str | None) -> None:
    """Extend a token's TTL (the current token when none is given)."""
    client = out.client_from()
    with out.api_errors("renewing token"):
        if accessor and value:
            secret = client.token.renew_accessor(value, increment)
        elif value:
            secret = client.token.renew(value, increment)
        else:
            secret = client.token.renew_self(increment)
    out.print_secret(secret or {})


@token.command()
@click.option("--self", "revoke_self", is_flag=True, help="Revoke the current token.")
@click.option("--accessor", is_flag=True, help="TOKEN is an accessor.")
@click.option("--mode", type=click.Choice(["orphan", "path"]), help="orphan: keep children; path: by prefix.")
@click.argument("value", required=False)
@out.api_options
def revoke(revoke_self: bool, accessor: bool, mode: str | None, value: str | None) -> None:
    """Revoke a token and, unless -mode=orphan, every token created from it."""
    if revoke_self and value:
        out.fail("Too many arguments (expected 0, got 1)")
    if not revoke_self and not value:
        out.fail("Not enough arguments (expected 1, got 0)")
    if accessor and mode:
        out.fail("Use of -mode is not supported with -accessor")
    client = out.client_from()
    with out.api_errors("revoking token"):
        if revoke_self:
            client.token.revoke_self()
        elif accessor:
            client.token.revoke_accessor(str(value))
        elif mode == "orphan":
            client.token.revoke_orphan(str(value))
        elif mode == "path":
            client.write(f"sys/leases/revoke-prefix/{str(value).strip('/')}", {})
        else:
            client.token.revoke(str(value))
    out.success("Revoked token (if it existed)")


@token.command()
@click.argument("args", nargs=-1, required=True)
@out.api_options
def capabilities(args: tuple[str, ...]) -> None:
    """Capabilities of a token on PATH: ``capabilities [TOKEN] PATH``."""
    if len(args) > 2:
        out.fail(f"Too many arguments (expected 1-2, got {len(args)})")
    value, path = (args[0], args[1]) if len(args) == 2 else (None, args[0])
    path = path.lstrip("/")
    client = out.client_from()
    with out.api_errors("listing capabilities"):
        data = client.sys.capabilities([path], token=value)
    caps = data.get(path, data.get("capabilities")) or []
    names = sorted(str(c) for c in caps)
    s = out.settings()
    if s.format != "table":
        click.echo(out.dump(names, s.format))
    else:
        click.echo(", ".join(names))
