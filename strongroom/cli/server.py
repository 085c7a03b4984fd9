"""``server``: run a node from a config file, or an in-memory dev node with ``-dev``.

The server modules are imported only when this command runs, so every other command works
in an install (or a checkout) where the server cannot be imported.
"""

from __future__ import annotations

import click

from strongroom.api.client import env
from strongroom.cli import output as out


@click.command(cls=out.Command)
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="Server configuration file.")
@click.option("--dev", is_flag=True, help="In-memory, initialised and unsealed dev server.")
@click.option("--dev-root-token-id", help="Root token ID in dev mode (env STRONGROOM_DEV_ROOT_TOKEN_ID).")
@click.option("--dev-listen-address", help="Dev listen address (env STRONGROOM_DEV_LISTEN_ADDRESS).")
def server(
    config_path: str | None, dev: bool, dev_root_token_id: str | None, dev_listen_address: str | None
) -> None:
    """Start a server; it runs until interrupted."""
    if not dev and not config_path:
        out.fail("A configuration file must be specified with -config, or use -dev")
    try:
        from strongroom.config import dev_config, load_config
        from strongroom.server import run_server
    except ImportError as exc:
        out.fail(f"Error loading the server: {exc}")
    try:
        if dev:
            overrides = {
                "root_token_id": dev_root_token_id or env("DEV_ROOT_TOKEN_ID"),
                "listen_address": dev_listen_address or env("DEV_LISTEN_ADDRESS"),
            }
            cfg = dev_config(**{k: v for k, v in overrides.items() if v})
        else:
            cfg = load_config(str(config_path))
    except (OSError, ValueError) as exc:
        out.fail(f"Error loading configuration: {exc}")
    try:
        run_server(cfg)
    except KeyboardInterrupt:
        pass
