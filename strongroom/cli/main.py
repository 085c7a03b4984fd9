"""The ``strongroom`` command: a click group with the habits of Vault's CLI.

Vault parses flags with Go's ``flag`` package, so people type ``-format=json`` and
``-key-shares 5``. Before click sees the arguments, :func:`convert_flags` turns a single-dash
long flag into the double-dash form click understands; ``--flag`` works as well. Exit codes
follow Vault: 0 success, 1 local or usage error, 2 API error.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from typing import Any

import click

from strongroom import __version__
from strongroom.api.client import Client
from strongroom.cli import generic, kv, operator, pki, policy, secrets, server, token
from strongroom.cli.output import Group, Settings

_SINGLE_DASH_FLAG = re.compile(r"^-[A-Za-z][A-Za-z0-9_-]+(=.*)?$", re.DOTALL)


def convert_flags(argv: Sequence[str]) -> list[str]:
    """``-foo``/``-foo=bar`` → ``--foo``/``--foo=bar``; leaves ``-``, ``-h``, ``-1`` and args after ``--``."""
    out: list[str] = []
    for i, arg in enumerate(argv):
        if arg == "--":
            out.extend(argv[i:])
            break
        out.append("-" + arg if _SINGLE_DASH_FLAG.match(arg) else arg)
    return out


def make_client(settings: Settings, **kwargs: Any) -> Client:
    """The one place the CLI builds its API client; tests replace this to inject a transport."""
    return Client(
        address=settings.address,
        cacert=settings.ca_cert,
        capath=settings.ca_path,
        client_cert=settings.client_cert,
        client_key=settings.client_key,
        skip_verify=settings.skip_verify,
        namespace=settings.namespace,
        wrap_ttl=settings.wrap_ttl,
        **kwargs,
    )


class RootGroup(Group):
    """Adds Vault's argument conventions and exit codes around click's own ``main``."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        argv = convert_flags(sys.argv[1:] if args is None else list(args))
        try:
            rv = super().main(argv, prog_name, complete_var, standalone_mode=False, **extra)
        except click.ClickException as exc:
            exc.show()
            rv = 1
        except click.Abort:
            click.echo("Aborted!", err=True)
            rv = 1
        code = rv if isinstance(rv, int) else 0
        if not standalone_mode:
            return code
        sys.exit(code)


@click.group(cls=RootGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", "-v", message="Strongroom v%(version)s")
def cli() -> None:
    """strongroom: a secrets manager that speaks Vault's HTTP API."""


@cli.command()
def version() -> None:
    """Print the version."""
    click.echo(f"Strongroom v{__version__}")


for _command in (
    server.server,
    generic.status,
    generic.login,
    generic.read,
    generic.write,
    generic.list_,
    generic.delete,
    generic.patch,
    generic.unwrap,
    generic.path_help,
    operator.operator,
    secrets.secrets,
    secrets.auth,
    kv.kv,
    pki.pki,
    policy.policy,
    token.token,
):
    cli.add_command(_command)


def main() -> None:
    """Console-script entry point."""
    cli.main(prog_name="strongroom")
