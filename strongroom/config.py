"""Server configuration: Vault's HCL/JSON config file format, and the ``server --dev`` defaults.

We read the keys existing Vault set-ups (and hvac's integration harness) actually write, so a
Vault config file starts strongroom unchanged: ``storage``/``backend`` blocks, ``listener "tcp"``
blocks, lease TTLs, ``api_addr``, ``ui``, ``disable_mlock``, ``cluster_name``, ``log_level``.
Keys Vault knows but we do not use are accepted and reported in ``ServerConfig.warnings``
rather than refused, because real config files carry many of them (telemetry, seal, ...).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from strongroom.durations import parse_duration

__all__ = [
    "DEFAULT_LEASE_TTL",
    "DEFAULT_MAX_REQUEST_SIZE",
    "ConfigError",
    "ListenerConfig",
    "ServerConfig",
    "dev_config",
    "load_config",
    "parse_address",
]

DEFAULT_LEASE_TTL = 768 * 3600  # Vault's system default and maximum: 32 days
DEFAULT_MAX_REQUEST_SIZE = 32 * 1024 * 1024
DEFAULT_ADDRESS = "127.0.0.1:8200"
LOG_LEVELS = ("trace", "debug", "info", "warn", "error")
_LOG_LEVEL_ALIASES = {"warning": "warn", "err": "error"}


class ConfigError(ValueError):
    """The configuration is unreadable or invalid; the message says where and why."""


@dataclass
class ListenerConfig:
    """One ``listener "tcp"`` block.

    ``max_request_size`` follows Vault: 0 in the file means the 32 MiB default, a negative
    value disables the limit. ``tls_client_ca_file`` never decides whether a handshake
    succeeds (client certificates are requested, not verified, as Vault does) unless
    ``tls_require_and_verify_client_cert`` is set.
    """

    address: str = DEFAULT_ADDRESS
    tls_disable: bool = False
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    tls_client_ca_file: str | None = None
    max_request_size: int = DEFAULT_MAX_REQUEST_SIZE
    tls_require_and_verify_client_cert: bool = False

    def host_port(self) -> tuple[str, int]:
        """The address split for binding; raises ``ConfigError`` when malformed."""
        return parse_address(self.address)


@dataclass
class ServerConfig:
    """Everything ``strongroom server`` needs to start; durations are whole seconds."""

    storage_type: str = "inmem"
    storage_options: dict[str, Any] = field(default_factory=dict)
    listeners: list[ListenerConfig] = field(default_factory=lambda: [ListenerConfig()])
    api_addr: str | None = None
    default_lease_ttl: int = DEFAULT_LEASE_TTL
    max_lease_ttl: int = DEFAULT_LEASE_TTL
    ui: bool = False
    disable_mlock: bool = False
    cluster_name: str | None = None
    log_level: str = "info"
    workers: int = 0  # 0: one HTTP worker per CPU (a single process for inmem storage)
    dev: bool = False
    dev_root_token_id: str | None = None
    dev_listen_address: str | None = None
    warnings: list[str] = field(default_factory=list)


def parse_address(address: str) -> tuple[str, int]:
    """Split ``host:port`` / ``[v6]:port`` / ``:port`` (all interfaces), as Go's net.Listen takes them."""
    text = address.strip()
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or text[end + 1 : end + 2] != ":":
            raise ConfigError(f"invalid listener address {address!r}: expected [ipv6]:port")
        host, port_text = text[1:end], text[end + 2 :]
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep or ":" in host:
            raise ConfigError(f"invalid listener address {address!r}: expected host:port")
    if not port_text.isdigit() or int(port_text) > 65535:
        raise ConfigError(f"invalid listener address {address!r}: bad port {port_text!r}")
    return (host or "0.0.0.0", int(port_text))


def dev_config(listen_address: str = DEFAULT_ADDRESS, root_token_id: str | None = None) -> ServerConfig:
    """The configuration of ``server --dev``: in-memory storage, plain HTTP, UI on, as Vault's dev mode."""
    parse_address(listen_address)
    if root_token_id is not None and not root_token_id.strip():
        raise ConfigError("dev root token id must not be empty")
    return ServerConfig(
        storage_type="inmem",
        listeners=[ListenerConfig(address=listen_address, tls_disable=True)],
        ui=True,
        disable_mlock=True,
        dev=True,
        dev_root_token_id=root_token_id,
        dev_listen_address=listen_address,
    )


def load_config(path: str) -> ServerConfig:
    """Read a Vault-style HCL or JSON config file; relative paths inside stay relative to the cwd."""
    try:
        with open(path, encoding="utf-8") as fp:
            text = fp.read()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path!r}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {path!r} is not UTF-8 text") from exc
    try:
        raw = _parse_text(text)
    except Exception as exc:  # pyhcl raises assorted types on malformed input
        raise ConfigError(f"cannot parse config file {path!r}: {exc}") from exc
    try:
        return config_from_dict(raw)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc


def _parse_text(text: str) -> Any:
    stripped = text.lstrip()
    if stripped.startswith("{"):
        return json.loads(text)
    return _hcl_parser().parse(text)


@lru_cache(maxsize=1)
def _hcl_parser() -> Any:
    """A pyhcl parser that keeps repeated top-level blocks apart.

    Stock pyhcl merges two ``listener "tcp" {...}`` blocks key by key (the last address
    wins), silently dropping a listener. This subclass turns repeats into a list of blocks,
    the shape Vault's JSON configs use (``"listener": [{"tcp": {...}}, ...]``).
    """
    from hcl.parser import HclParser

    class _BlockPreservingParser(HclParser):  # type: ignore[misc]
        def objectlist_flat(self, lt: list[tuple[Any, Any]], replace: bool) -> dict[str, Any]:
            if not replace:  # nested objects: pyhcl already lists duplicates there
                return super().objectlist_flat(lt, replace)  # type: ignore[no-any-return]
            out: dict[str, Any] = {}
            for key, value in lt:
                prior = out.get(key)
                if isinstance(value, dict) and isinstance(prior, dict):
                    out[key] = [prior, value]
                elif isinstance(value, dict) and isinstance(prior, list):
                    prior.append(value)
                else:
                    out[key] = value
            return out

    return _BlockPreservingParser()


_KNOWN_IGNORED = {
    # Vault keys that have no effect here yet; reported, not refused.
    "cluster_addr",
    "telemetry",
    "seal",
    "ha_storage",
    "plugin_directory",
    "pid_file",
    "raw_storage_endpoint",
    "disable_cache",
    "cache_size",
    "disable_clustering",
    "disable_performance_standby",
    "enable_response_header_hostname",
    "enable_response_header_raft_node_id",
    "introspection_endpoint",
    "log_format",
    "log_file",
    "license_path",
    "service_registration",
    "entropy",
    "user_lockout",
    "api_addr_header",
}


def config_from_dict(raw: Any) -> ServerConfig:
    """Build a ``ServerConfig`` from the parsed (HCL or JSON) document."""
    if not isinstance(raw, dict):
        raise ConfigError("the configuration must be an object at the top level")
    cfg = ServerConfig(listeners=[])
    for key, value in raw.items():
        if key in ("storage", "backend"):
            continue
        if key == "listener":
            cfg.listeners = _listeners(value, cfg.warnings)
        elif key == "api_addr":
            cfg.api_addr = _opt_str(value, key)
        elif key in ("default_lease_ttl", "max_lease_ttl"):
            setattr(cfg, key, _duration(value, key) or DEFAULT_LEASE_TTL)
        elif key == "ui":
            cfg.ui = _bool(value, key)
        elif key == "disable_mlock":
            cfg.disable_mlock = _bool(value, key)
        elif key == "cluster_name":
            cfg.cluster_name = _opt_str(value, key)
        elif key == "log_level":
            cfg.log_level = _log_level(value)
        elif key == "workers":
            cfg.workers = _int(value, key)
            if cfg.workers < 0:
                raise ConfigError("workers must be 0 (one per CPU) or more")
        elif key in _KNOWN_IGNORED:
            cfg.warnings.append(f"{key!r} is not supported and is ignored")
        else:
            cfg.warnings.append(f"unknown configuration key {key!r} ignored")

    cfg.storage_type, cfg.storage_options = _storage(raw)
    if not cfg.listeners:
        raise ConfigError('at least one listener "tcp" block is required')
    if cfg.default_lease_ttl > cfg.max_lease_ttl:
        raise ConfigError(
            f"default_lease_ttl ({cfg.default_lease_ttl}s) cannot be larger than "
            f"max_lease_ttl ({cfg.max_lease_ttl}s)"
        )
    return cfg


def _storage(raw: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    present = [k for k in ("storage", "backend") if k in raw]
    if not present:
        raise ConfigError('a storage block is required, for example storage "inmem" {}')
    if len(present) > 1:
        raise ConfigError('use either "storage" or its legacy name "backend", not both')
    key = present[0]
    blocks = _blocks(raw[key], key)
    if len(blocks) != 1:
        raise ConfigError(f"exactly one {key} block is allowed, found {len(blocks)}")
    kind, body = blocks[0]
    return kind, dict(body)


def _blocks(value: Any, key: str) -> list[tuple[str, dict[str, Any]]]:
    """Flatten the shapes a ``<key> "<type>" {...}`` stanza takes after parsing.

    pyhcl gives ``{type: body}``, ``{type: [body, ...]}`` or (repeated blocks, JSON) a list
    of ``{type: body}`` objects; each body must be an object.
    """
    items = value if isinstance(value, list) else [value]
    out: list[tuple[str, dict[str, Any]]] = []
    for item in items:
        if not isinstance(item, dict) or not item:
            raise ConfigError(f'{key}: expected {key} "<type>" {{ ... }}')
        for kind, body in item.items():
            bodies = body if isinstance(body, list) else [body]
            for b in bodies:
                if not isinstance(b, dict):
                    raise ConfigError(f'{key} "{kind}": expected a block of settings')
                out.append((str(kind), b))
    return out


_LISTENER_KEYS = {
    "address",
    "tls_disable",
    "tls_cert_file",
    "tls_key_file",
    "tls_client_ca_file",
    "max_request_size",
    "tls_require_and_verify_client_cert",
}


def _listeners(value: Any, warnings: list[str]) -> list[ListenerConfig]:
    result: list[ListenerConfig] = []
    for index, (kind, body) in enumerate(_blocks(value, "listener")):
        where = f'listener "{kind}" #{index + 1}'
        if kind != "tcp":
            raise ConfigError(f'{where}: only "tcp" listeners are supported')
        listener = ListenerConfig()
        for key, item in body.items():
            if key == "address":
                listener.address = _str(item, f"{where}: address")
            elif key in ("tls_disable", "tls_require_and_verify_client_cert"):
                setattr(listener, key, _bool(item, f"{where}: {key}"))
            elif key in ("tls_cert_file", "tls_key_file", "tls_client_ca_file"):
                setattr(listener, key, _opt_str(item, f"{where}: {key}") or None)
            elif key == "max_request_size":
                size = _int(item, f"{where}: max_request_size")
                listener.max_request_size = size if size != 0 else DEFAULT_MAX_REQUEST_SIZE
            else:
                warnings.append(f"{where}: setting {key!r} is not supported and is ignored")
        try:
            parse_address(listener.address)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        if not listener.tls_disable:
            missing = [k for k in ("tls_cert_file", "tls_key_file") if not getattr(listener, k)]
            if missing:
                raise ConfigError(f"{where}: {' and '.join(missing)} required unless tls_disable is true")
        if listener.tls_require_and_verify_client_cert and listener.tls_disable:
            raise ConfigError(f"{where}: tls_require_and_verify_client_cert needs TLS (tls_disable is true)")
        result.append(listener)
    return result


def _bool(value: Any, where: str) -> bool:
    """Vault's parseutil.ParseBool: booleans, 0/1, and Go's strconv.ParseBool spellings."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        text = value.strip()
        if text in ("1", "t", "T", "true", "TRUE", "True"):
            return True
        if text in ("0", "f", "F", "false", "FALSE", "False"):
            return False
    raise ConfigError(f"{where}: expected a boolean, got {value!r}")


def _int(value: Any, where: str) -> int:
    if isinstance(value, bool):
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    raise ConfigError(f"{where}: expected an integer, got {value!r}")


def _str(value: Any, where: str) -> str:
    if isinstance(value, str):
        return value
    raise ConfigError(f"{where}: expected a string, got {value!r}")


def _opt_str(value: Any, where: str) -> str | None:
    return None if value is None else _str(value, where)


def _duration(value: Any, where: str) -> int:
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _log_level(value: Any) -> str:
    text = _str(value, "log_level").strip().lower()
    text = _LOG_LEVEL_ALIASES.get(text, text)
    if text not in LOG_LEVELS:
        raise ConfigError(f"log_level: expected one of {', '.join(LOG_LEVELS)}, got {value!r}")
    return text
