"""Config loading (Vault's HCL and JSON shapes) and the shared duration parser."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from strongroom.config import (
    DEFAULT_LEASE_TTL,
    DEFAULT_MAX_REQUEST_SIZE,
    ConfigError,
    ListenerConfig,
    ServerConfig,
    dev_config,
    load_config,
    parse_address,
)
from strongroom.durations import MAX_SECONDS, format_duration, parse_duration

# hvac's tests/config_files/vault-tls.hcl, verbatim in shape.
HVAC_TLS_HCL = """
backend "inmem" {
}

listener "tcp" {
  tls_cert_file = "tests/config_files/server-cert.pem"
  tls_key_file  = "tests/config_files/server-key.pem"
}

disable_mlock = true
default_lease_ttl = "768h"
max_lease_ttl = "768h"
"""


def write(tmp_path: Path, text: str, name: str = "config.hcl") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_hvac_vault_tls_hcl(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, HVAC_TLS_HCL))
    assert cfg.storage_type == "inmem"
    assert cfg.storage_options == {}
    assert cfg.disable_mlock is True
    assert cfg.default_lease_ttl == cfg.max_lease_ttl == 768 * 3600
    [listener] = cfg.listeners
    assert listener.address == "127.0.0.1:8200"
    assert listener.tls_disable is False
    # Relative paths stay relative: hvac runs the server with cwd at its source root.
    assert listener.tls_cert_file == "tests/config_files/server-cert.pem"
    assert listener.tls_key_file == "tests/config_files/server-key.pem"
    assert listener.max_request_size == DEFAULT_MAX_REQUEST_SIZE
    assert cfg.warnings == []


def test_hvac_generated_json(tmp_path: Path) -> None:
    # What hvac's ServerManager.patch_config_port writes: pyhcl's dict, port patched, as JSON.
    import hcl

    document = hcl.loads(HVAC_TLS_HCL)
    document["listener"]["tcp"]["address"] = "127.0.0.1:51234"
    cfg = load_config(write(tmp_path, json.dumps(document), "vault-tls_solo.json"))
    assert cfg.listeners[0].address == "127.0.0.1:51234"
    assert cfg.listeners[0].host_port() == ("127.0.0.1", 51234)
    assert cfg.storage_type == "inmem"
    assert cfg.default_lease_ttl == 768 * 3600


def test_storage_block_with_options_and_everything_else(tmp_path: Path) -> None:
    text = """
    storage "postgresql" {
      connection_url = "postgres://u:p@localhost/db"
      ha_enabled = "true"
      max_parallel = 128
    }
    listener "tcp" {
      address = "0.0.0.0:8300"
      tls_disable = "1"
      max_request_size = 1048576
    }
    api_addr = "https://vault.example:8200"
    default_lease_ttl = "1h30m"
    max_lease_ttl = 86400
    ui = true
    cluster_name = "prod"
    log_level = "Warning"
    workers = 2
    """
    cfg = load_config(write(tmp_path, text))
    assert cfg.storage_type == "postgresql"
    assert cfg.storage_options == {
        "connection_url": "postgres://u:p@localhost/db",
        "ha_enabled": "true",
        "max_parallel": 128,
    }
    [listener] = cfg.listeners
    assert listener.tls_disable is True
    assert listener.max_request_size == 1048576
    assert listener.host_port() == ("0.0.0.0", 8300)
    assert cfg.api_addr == "https://vault.example:8200"
    assert cfg.default_lease_ttl == 5400
    assert cfg.max_lease_ttl == 86400
    assert cfg.ui is True
    assert cfg.cluster_name == "prod"
    assert cfg.log_level == "warn"
    assert cfg.workers == 2


def test_multiple_listeners_in_hcl(tmp_path: Path) -> None:
    text = """
    storage "inmem" {}
    listener "tcp" {
      address = "127.0.0.1:8200"
      tls_disable = true
    }
    listener "tcp" {
      address = "127.0.0.1:8201"
      tls_cert_file = "a.pem"
      tls_key_file = "a.key"
      tls_client_ca_file = "ca.pem"
    }
    listener "tcp" {
      address = "[::1]:8202"
      tls_disable = "true"
    }
    """
    cfg = load_config(write(tmp_path, text))
    assert [item.address for item in cfg.listeners] == ["127.0.0.1:8200", "127.0.0.1:8201", "[::1]:8202"]
    assert [item.tls_disable for item in cfg.listeners] == [True, False, True]
    assert cfg.listeners[1].tls_client_ca_file == "ca.pem"
    assert cfg.listeners[2].host_port() == ("::1", 8202)


def test_multiple_listeners_in_json_both_shapes(tmp_path: Path) -> None:
    as_list = {
        "storage": {"inmem": {}},
        "listener": [
            {"tcp": {"address": "127.0.0.1:1", "tls_disable": True}},
            {"tcp": {"address": "127.0.0.1:2", "tls_disable": "true"}},
        ],
    }
    cfg = load_config(write(tmp_path, json.dumps(as_list), "a.json"))
    assert [item.address for item in cfg.listeners] == ["127.0.0.1:1", "127.0.0.1:2"]
    nested = {
        "backend": {"inmem": {}},
        "listener": {
            "tcp": [
                {"address": "127.0.0.1:3", "tls_disable": 1},
                {"address": "127.0.0.1:4", "tls_disable": 1},
            ]
        },
    }
    cfg = load_config(write(tmp_path, json.dumps(nested), "b.json"))
    assert [item.address for item in cfg.listeners] == ["127.0.0.1:3", "127.0.0.1:4"]


def test_unknown_keys_are_accepted_with_warnings(tmp_path: Path) -> None:
    text = """
    storage "inmem" {}
    listener "tcp" {
      address = "127.0.0.1:8200"
      tls_disable = true
      proxy_protocol_behavior = "use_always"
    }
    telemetry {
      statsite_address = "127.0.0.1:8125"
    }
    plugin_directory = "/plugins"
    something_new = 1
    """
    cfg = load_config(write(tmp_path, text))
    text_warnings = "\n".join(cfg.warnings)
    assert "telemetry" in text_warnings
    assert "plugin_directory" in text_warnings
    assert "something_new" in text_warnings
    assert "proxy_protocol_behavior" in text_warnings


def test_max_request_size_zero_means_default(tmp_path: Path) -> None:
    text = 'storage "inmem" {}\nlistener "tcp" {\n tls_disable = 1\n max_request_size = 0\n}\n'
    assert load_config(write(tmp_path, text)).listeners[0].max_request_size == DEFAULT_MAX_REQUEST_SIZE


def test_ttl_defaults_when_absent(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, 'storage "inmem" {}\nlistener "tcp" { tls_disable = true }\n'))
    assert cfg.default_lease_ttl == cfg.max_lease_ttl == DEFAULT_LEASE_TTL
    assert cfg.log_level == "info"
    assert cfg.workers == 0  # one per CPU


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            'storage "inmem" {}\nlistener "tcp" { tls_disable = true }\ndefault_lease_ttl = "soon"',
            "default_lease_ttl",
        ),
        ('storage "inmem" {}\nlistener "tcp" { tls_disable = true }\nmax_lease_ttl = "-1h"', "negative"),
        ('storage "inmem" {}\nlistener "tcp" { tls_disable = true }\nmax_lease_ttl = "10x"', "max_lease_ttl"),
        (
            'storage "inmem" {}\nlistener "tcp" { tls_disable = true }\ndefault_lease_ttl = "2h"\nmax_lease_ttl = "1h"',
            "larger than",
        ),
        ('listener "tcp" { tls_disable = true }', "storage block is required"),
        ('storage "inmem" {}', "listener"),
        ('storage "inmem" {}\nbackend "inmem" {}\nlistener "tcp" { tls_disable = true }', "not both"),
        ('storage "inmem" {}\nstorage "file" {}\nlistener "tcp" { tls_disable = true }', "exactly one"),
        ('storage "inmem" {}\nlistener "tcp" {}', "tls_cert_file and tls_key_file required"),
        ('storage "inmem" {}\nlistener "tcp" { tls_cert_file = "a" }', "tls_key_file required"),
        ('storage "inmem" {}\nlistener "unix" { address = "/tmp/s" }', 'only "tcp"'),
        ('storage "inmem" {}\nlistener "tcp" {\n address = "nohost"\n tls_disable = true\n}', "address"),
        (
            'storage "inmem" {}\nlistener "tcp" {\n address = "127.0.0.1:99999"\n tls_disable = true\n}',
            "bad port",
        ),
        ('storage "inmem" {}\nlistener "tcp" { tls_disable = "maybe" }', "expected a boolean"),
        ('storage "inmem" {}\nlistener "tcp" { tls_disable = true }\nlog_level = "loud"', "log_level"),
        ('storage "inmem" {}\nlistener "tcp" { tls_disable = true }\nworkers = -1', "workers"),
        ('storage "inmem" {\nlistener "tcp" {', "cannot parse"),
    ],
)
def test_bad_configs_raise_config_error(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, text))


def test_bad_json_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot parse"):
        load_config(write(tmp_path, '{"storage": ', "x.json"))
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(str(tmp_path / "missing.hcl"))
    with pytest.raises(ConfigError):
        load_config(write(tmp_path, "[1, 2]", "y.json"))


def test_config_error_is_a_value_error() -> None:
    assert issubclass(ConfigError, ValueError)


def test_dev_config() -> None:
    cfg = dev_config()
    assert cfg.dev is True
    assert cfg.storage_type == "inmem"
    assert cfg.listeners == [ListenerConfig(address="127.0.0.1:8200", tls_disable=True)]
    assert cfg.dev_listen_address == "127.0.0.1:8200"
    assert cfg.dev_root_token_id is None
    cfg = dev_config("127.0.0.1:0", root_token_id="root")
    assert cfg.listeners[0].address == "127.0.0.1:0"
    assert cfg.dev_root_token_id == "root"
    with pytest.raises(ConfigError):
        dev_config("localhost")
    with pytest.raises(ConfigError):
        dev_config(root_token_id="  ")


def test_dataclass_defaults() -> None:
    listener = ListenerConfig()
    assert (listener.address, listener.tls_disable, listener.max_request_size) == (
        "127.0.0.1:8200",
        False,
        33554432,
    )
    assert listener.tls_require_and_verify_client_cert is False
    cfg = ServerConfig()
    assert cfg.storage_type == "inmem" and cfg.storage_options == {}
    assert cfg.default_lease_ttl == cfg.max_lease_ttl == 768 * 3600
    assert cfg.listeners == [ListenerConfig()]
    assert (cfg.ui, cfg.log_level, cfg.workers, cfg.dev) == (False, "info", 0, False)


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("127.0.0.1:8200", ("127.0.0.1", 8200)),
        ("0.0.0.0:0", ("0.0.0.0", 0)),
        (":8200", ("0.0.0.0", 8200)),
        ("localhost:1", ("localhost", 1)),
        ("[::]:8200", ("::", 8200)),
    ],
)
def test_parse_address(address: str, expected: tuple[str, int]) -> None:
    assert parse_address(address) == expected


@pytest.mark.parametrize("address", ["", "8200", "::1:8200", "[::1]8200", "host:", "host:-1", "host:x"])
def test_parse_address_rejects(address: str) -> None:
    with pytest.raises(ConfigError):
        parse_address(address)


# --- durations ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (0, 0),
        (3600, 3600),
        (90.9, 90),
        ("0", 0),
        ("", 0),
        ("3600", 3600),
        (" 42 ", 42),
        ("10s", 10),
        ("90m", 5400),
        ("1h30m", 5400),
        ("768h", 2764800),
        ("2160h0m0s", 7776000),
        ("1.5h", 5400),
        (".5m", 30),
        ("1h1m1s", 3661),
        ("1500ms", 1),
        ("999ms", 0),
        ("1000000us", 1),
        ("1000000µs", 1),
        ("1000000000ns", 1),
        ("7d", 604800),
        ("+5s", 5),
        ("1h1h", 7200),
    ],
)
def test_parse_duration(value: str | int | float, seconds: int) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize(
    "value",
    [
        "-1",
        "-5s",
        -1,
        -0.5,
        "soon",
        "1.5",
        "10x",
        "h",
        "1 h",
        "s10",
        "1h-5m",
        "1e3s",
        True,
        None,
        [1],
        float("inf"),
        float("nan"),
        "99999999999999999999s",
        str(MAX_SECONDS + 1),
        "1..5s",
    ],
)
def test_parse_duration_rejects(value: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(value)  # type: ignore[arg-type]


@pytest.mark.parametrize(("seconds", "text"), [(0, "0s"), (59, "59s"), (90, "1m30s"), (2764800, "768h0m0s")])
def test_format_duration_round_trips(seconds: int, text: str) -> None:
    assert format_duration(seconds) == text
    assert parse_duration(text) == seconds
