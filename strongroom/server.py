"""Run a server from a ServerConfig: storage, core, HTTP listeners, dev-mode set-up."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from pathlib import Path

from strongroom.config import ServerConfig
from strongroom.core.assemble import build_core
from strongroom.core.core import Core
from strongroom.core.mounts import MountEntry
from strongroom.http.app import App
from strongroom.physical.base import open_physical

log = logging.getLogger("strongroom.server")


async def setup_dev(core: Core, cfg: ServerConfig) -> tuple[str, str]:
    """Initialise with one share, unseal, mount kv v2 at secret/; return (unseal key, root token)."""
    parts, root = await core.initialize(1, 1)
    unseal_key = parts[0]
    await core.unseal_with_root_key(await core.seal_impl.root_key_from(unseal_key))
    if cfg.dev_root_token_id:
        wanted = await core.create_root_token(cfg.dev_root_token_id)
        generated = await core.tokens.lookup(root)
        if generated is not None:
            await core.revoke_token(generated)
        root = wanted.id
    await core.enable_mount(
        MountEntry("secret/", "kv", description="key/value secret storage", options={"version": "2"})
    )
    import base64

    return base64.b64encode(unseal_key).decode(), root


def _banner(cfg: ServerConfig, addresses: list[tuple[str, int]], unseal_key: str, root: str) -> str:
    host, port = addresses[0]
    addr = f"http://{host}:{port}"
    return (
        "WARNING! dev mode is enabled! In this mode, strongroom runs entirely in-memory\n"
        "and starts unsealed with a single unseal key. The root token is already\n"
        "authenticated to the CLI, so you can immediately begin using strongroom.\n\n"
        "You may need to set the following environment variables:\n\n"
        f"    $ export STRONGROOM_ADDR='{addr}'\n"
        f"    $ export VAULT_ADDR='{addr}'\n\n"
        "The unseal key and root token are displayed below in case you want to\n"
        "seal/unseal the server or re-authenticate.\n\n"
        f"Unseal Key: {unseal_key}\n"
        f"Root Token: {root}\n\n"
        "Development mode should NOT be used in production installations!\n\n"
        "Try it:\n"
        f'    $ curl -s -H \'X-Vault-Token: {root}\' -X POST -d \'{{"data":{{"foo":"world"}}}}\' {addr}/v1/secret/data/hello\n'
        "    $ strongroom kv get secret/hello\n"
    )


async def serve_config(cfg: ServerConfig, stop: asyncio.Event | None = None) -> None:
    from strongroom.http.server import serve

    physical = open_physical(cfg.storage_type, cfg.storage_options)
    core = build_core(
        physical,
        storage_type=physical.name,
        default_lease_ttl=cfg.default_lease_ttl,
        max_lease_ttl=cfg.max_lease_ttl,
        api_addr=cfg.api_addr or "",
    )
    await core.is_initialized()
    dev_secrets: tuple[str, str] | None = None
    if cfg.dev:
        dev_secrets = await setup_dev(core, cfg)
    max_size = max((listener.max_request_size for listener in cfg.listeners), default=32 * 1024 * 1024)
    app = App(core.handle_request, max_request_size=max_size)

    def on_ready(addresses: list[tuple[str, int]]) -> None:
        if dev_secrets is not None:
            unseal_key, root = dev_secrets
            token_file = Path.home() / ".strongroom-token"
            try:
                token_file.write_text(root)
                token_file.chmod(0o600)
            except OSError:
                pass
            sys.stdout.write(_banner(cfg, addresses, unseal_key, root))
        listening = ", ".join(f"{h}:{p}" for h, p in addresses)
        sys.stdout.write(f"==> strongroom server started! Listening on {listening}\n")
        sys.stdout.flush()

    try:
        await serve(app, cfg.listeners, on_ready=on_ready, stop=stop)
    finally:
        await core.seal()
        close = getattr(physical, "close", None)
        if close is not None:
            await close()


def worker_count(cfg: ServerConfig) -> int:
    """How many HTTP processes: in-memory storage cannot be shared, so it gets one."""
    if cfg.dev or cfg.storage_type == "inmem":
        return 1
    return cfg.workers or (os.cpu_count() or 1)


def run_server(cfg: ServerConfig) -> None:
    logging.basicConfig(
        level=getattr(logging, cfg.log_level.upper(), logging.INFO),
        format="%(asctime)s [%(levelname)s] %(name)s: %(message)s",
    )
    if hasattr(os, "setrlimit"):
        import resource

        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # no key material in core dumps

    workers = worker_count(cfg)
    if workers > 1:
        from strongroom.supervisor import run_supervised

        async def ready() -> None:
            listening = ", ".join(listener.address for listener in cfg.listeners)
            sys.stdout.write(f"==> strongroom server started! Listening on {listening} ({workers} workers)\n")
            sys.stdout.flush()

        run_supervised(cfg, workers, on_ready=ready)
        return

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await serve_config(cfg, stop)

    asyncio.run(main())
