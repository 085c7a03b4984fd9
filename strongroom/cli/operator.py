"""``operator``: init, unseal, seal, step-down, rotate, key-status, generate-root and rekey.

Unseal keys and OTPs are prompted for with hidden input when omitted so they stay out of
shell history. Key material is printed only where the operator asked for it (init, a
completed rekey, a decoded root token).
"""

from __future__ import annotations

import base64
import binascii
import secrets
import string
import sys
import textwrap
import uuid
from typing import Any

import click

from strongroom.api.client import Client
from strongroom.cli import output as out
from strongroom.cli.generic import print_seal_status

_BASE62 = string.ascii_letters + string.digits


def _wrap(text: str) -> str:
    return textwrap.fill(text, width=78)


def _prompt_key(label: str = "Unseal Key (will be hidden)") -> str:
    return str(click.prompt(label, hide_input=True, err=True)).strip()


@click.group(cls=out.Group)
def operator() -> None:
    """Cluster operations: init, unseal, seal, keys."""


@operator.command()
@click.option("--key-shares", "-n", type=int, default=5, show_default=True, help="Number of key shares.")
@click.option("--key-threshold", "-t", type=int, default=3, show_default=True, help="Shares to unseal.")
@click.option("--pgp-keys", help="Comma-separated PGP public keys, one per share.")
@click.option("--root-token-pgp-key", help="PGP public key to encrypt the root token.")
@click.option("--recovery-shares", type=int, help="Recovery key shares (auto-unseal only).")
@click.option("--recovery-threshold", type=int, help="Recovery key threshold (auto-unseal only).")
@click.option("--recovery-pgp-keys", help="Comma-separated PGP keys for recovery shares.")
@click.option("--status", "check_status", is_flag=True, help="Exit 0 if initialised, 2 if not.")
@out.api_options
def init(
    key_shares: int,
    key_threshold: int,
    pgp_keys: str | None,
    root_token_pgp_key: str | None,
    recovery_shares: int | None,
    recovery_threshold: int | None,
    recovery_pgp_keys: str | None,
    check_status: bool,
) -> None:
    """Initialise the server: split the root key into shares and create the root token."""
    client = out.client_from()
    if check_status:
        with out.api_errors("checking init status", code=1):
            inited = bool((client.sys.init_status() or {}).get("initialized"))
        click.echo("Strongroom is initialized" if inited else "Strongroom is not initialized")
        if not inited:
            raise click.exceptions.Exit(2)
        return
    extra: dict[str, Any] = {}
    if pgp_keys:
        extra["pgp_keys"] = pgp_keys.split(",")
    if root_token_pgp_key:
        extra["root_token_pgp_key"] = root_token_pgp_key
    if recovery_shares is not None:
        extra["recovery_shares"] = recovery_shares
    if recovery_threshold is not None:
        extra["recovery_threshold"] = recovery_threshold
    if recovery_pgp_keys:
        extra["recovery_pgp_keys"] = recovery_pgp_keys.split(",")
    with out.api_errors("initializing"):
        resp = client.sys.init(key_shares, key_threshold, **extra) or {}
    keys_hex = list(resp.get("keys") or [])
    keys_b64 = list(resp.get("keys_base64") or [])
    rec_hex = list(resp.get("recovery_keys") or [])
    rec_b64 = list(resp.get("recovery_keys_base64") or [])
    s = out.settings()
    if s.format != "table":
        machine = {
            "unseal_keys_b64": keys_b64,
            "unseal_keys_hex": keys_hex,
            "unseal_shares": key_shares if keys_hex else 1,
            "unseal_threshold": key_threshold if keys_hex else 1,
            "recovery_keys_b64": rec_b64,
            "recovery_keys_hex": rec_hex,
            "recovery_keys_shares": recovery_shares if recovery_shares is not None else 5,
            "recovery_keys_threshold": recovery_threshold if recovery_threshold is not None else 3,
            "root_token": resp.get("root_token", ""),
        }
        out.print_data(machine, s)
        return
    for i, key in enumerate(keys_hex):
        click.echo(f"Unseal Key {i + 1}: {keys_b64[i] if len(keys_b64) == len(keys_hex) else key}")
    for i, key in enumerate(rec_hex):
        click.echo(f"Recovery Key {i + 1}: {rec_b64[i] if len(rec_b64) == len(rec_hex) else key}")
    click.echo(f"\nInitial Root Token: {resp.get('root_token', '')}\n")
    if keys_hex:
        click.echo(
            _wrap(
                f"Strongroom initialized with {key_shares} key shares and a key threshold of "
                f"{key_threshold}. Please securely distribute the key shares printed above. When "
                f"the server is re-sealed, restarted, or stopped, you must supply at least "
                f"{key_threshold} of these keys to unseal it before it can start servicing requests."
            )
        )
        click.echo()
        click.echo(
            _wrap(
                f"Strongroom does not store the generated root key. Without at least {key_threshold} "
                f"keys to reconstruct the root key, it will remain permanently sealed!"
            )
        )
        click.echo()
        click.echo(
            _wrap(
                "It is possible to generate new unseal keys, provided you have a quorum of existing "
                'unseal keys shares. See "strongroom operator rekey" for more information.'
            )
        )
    else:
        click.echo("Success! Strongroom is initialized")


@operator.command()
@click.option("--reset", is_flag=True, help="Discard previously submitted keys.")
@click.option("--migrate", is_flag=True, help="Use the key for seal migration.")
@click.argument("key", required=False)
@out.api_options
def unseal(reset: bool, migrate: bool, key: str | None) -> None:
    """Submit one unseal key share (prompted, hidden, when omitted)."""
    client = out.client_from()
    if not reset and not key:
        key = _prompt_key()
    with out.api_errors("unsealing"):
        status = client.sys.unseal(key, reset=reset, migrate=migrate) or {}
    print_seal_status(client, status)


@operator.command()
@out.api_options
def seal() -> None:
    """Seal the server: key material leaves memory until it is unsealed again."""
    client = out.client_from()
    with out.api_errors("sealing"):
        client.sys.seal()
    out.success("Strongroom is sealed.")


@operator.command("step-down")
@out.api_options
def step_down() -> None:
    """Make the active node give up leadership."""
    client = out.client_from()
    with out.api_errors("stepping down"):
        client.sys.step_down()
    out.success(f"Stepped down: {client.address}")


def _key_status_table(data: dict[str, Any]) -> str:
    rows = [
        ("Key Term", str(data.get("term", ""))),
        ("Install Time", str(data.get("install_time", ""))),
        ("Encryption Count", str(data.get("encryptions", ""))),
    ]
    return out.columns(rows, underline=False)


@operator.command()
@out.api_options
def rotate() -> None:
    """Start a new encryption key term; older terms still decrypt."""
    client = out.client_from()
    with out.api_errors("rotating key"):
        client.sys.rotate()
    with out.api_errors("reading key status"):
        data = client.sys.key_status()
    if out.settings().format == "table":
        click.echo("Success! Rotated key\n")
    out.print_data(data, table=lambda: _key_status_table(data))


@operator.command("key-status")
@out.api_options
def key_status() -> None:
    """Show the current encryption key term."""
    client = out.client_from()
    with out.api_errors("reading key status"):
        data = client.sys.key_status()
    out.print_data(data, table=lambda: _key_status_table(data))


# --- generate-root -------------------------------------------------------------------------


def decode_root_token(encoded: str, otp: str) -> str:
    """Vault's roottoken.DecodeToken: base64 (raw std; padded and URL-safe also accepted) XOR otp.

    A legacy OTP (base64 of 16 bytes) gives a UUID token, as with Vault before 0.9.
    """
    raw = _b64decode(encoded.strip())
    otp = otp.strip()
    if len(raw) == len(otp):
        return bytes(a ^ b for a, b in zip(raw, otp.encode(), strict=True)).decode()
    otp_raw = _b64decode(otp)
    if len(otp_raw) != len(raw):
        raise ValueError("length of byte slices is not equivalent")
    token = bytes(a ^ b for a, b in zip(raw, otp_raw, strict=True))
    return str(uuid.UUID(bytes=token)) if len(token) == 16 else token.decode()


def _b64decode(text: str) -> bytes:
    padded = text + "=" * (-len(text) % 4)
    try:
        if "-" in text or "_" in text:
            return base64.urlsafe_b64decode(padded)
        return base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"error decoding base64'd token: {exc}") from exc


def _generate_root_table(status: dict[str, Any]) -> str:
    rows = [
        ("Nonce", str(status.get("nonce") or "")),
        ("Started", out.go_value(bool(status.get("started")))),
        ("Progress", f"{status.get('progress', 0)}/{status.get('required', 0)}"),
        ("Complete", out.go_value(bool(status.get("complete")))),
    ]
    if status.get("pgp_fingerprint"):
        rows.append(("PGP Fingerprint", str(status["pgp_fingerprint"])))
    if status.get("encoded_token"):
        rows.append(("Encoded Token", str(status["encoded_token"])))
    elif status.get("encoded_root_token"):
        rows.append(("Encoded Root Token", str(status["encoded_root_token"])))
    if status.get("otp"):
        rows.append(("OTP", str(status["otp"])))
    if status.get("otp_length"):
        rows.append(("OTP Length", str(status["otp_length"])))
    return out.columns(rows, underline=False)


def _print_generate_root(status: dict[str, Any]) -> None:
    if status.get("otp") and out.settings().format == "table":
        out.warn(
            _wrap(
                "A One-Time-Password has been generated for you and is shown in the OTP field. "
                "You will need this value to decode the resulting root token, so keep it safe."
            )
        )
    out.print_data(status, table=lambda: _generate_root_table(status))


@operator.command("generate-root")
@click.option("--init", "do_init", is_flag=True, help="Start a root token generation.")
@click.option("--otp", help="OTP for -init (older servers) or for -decode.")
@click.option("--pgp-key", help="PGP key to encrypt the resulting token.")
@click.option("--generate-otp", is_flag=True, help="Print a fresh OTP of the server's length.")
@click.option("--cancel", is_flag=True, help="Cancel the generation in progress.")
@click.option("--status", "show_status", is_flag=True, help="Show the generation progress.")
@click.option("--nonce", help="Nonce of the generation (read from the server if omitted).")
@click.option("--decode", help="Decode this encoded token with -otp ('-' reads stdin).")
@click.argument("key", required=False)
@out.api_options
def generate_root(
    do_init: bool,
    otp: str | None,
    pgp_key: str | None,
    generate_otp: bool,
    cancel: bool,
    show_status: bool,
    nonce: str | None,
    decode: str | None,
    key: str | None,
) -> None:
    """Generate a new root token from a quorum of unseal keys."""
    if decode is not None:
        _decode(decode, otp)
        return
    client = out.client_from()
    if generate_otp:
        with out.api_errors("getting root generation status"):
            length = int((client.sys.generate_root_status() or {}).get("otp_length") or 0)
        value = (
            "".join(secrets.choice(_BASE62) for _ in range(length))
            if length
            else base64.b64encode(secrets.token_bytes(16)).decode()
        )
        out.print_raw(value)
        return
    if cancel:
        with out.api_errors("canceling root token generation"):
            client.sys.generate_root_cancel()
        out.success("Root token generation canceled (if it was started)")
        return
    if show_status:
        with out.api_errors("getting root generation status"):
            status = client.sys.generate_root_status() or {}
        _print_generate_root(status)
        return
    if do_init:
        with out.api_errors("initializing root generation"):
            status = client.sys.generate_root_init(otp=otp, pgp_key=pgp_key) or {}
        _print_generate_root(status)
        return
    nonce = nonce or _current_nonce(client, "generate-root")
    key = key or _prompt_key("Unseal Key (will be hidden)")
    with out.api_errors("posting unseal key"):
        status = client.sys.generate_root_update(key, nonce) or {}
    _print_generate_root(status)


def _decode(encoded: str, otp: str | None) -> None:
    if encoded == "-":
        encoded = sys.stdin.read().strip()
    if not encoded:
        out.fail("Missing encoded value: use -decode=<string> to supply it")
    if not otp:
        out.fail("Missing otp: use -otp to supply it")
    try:
        token = decode_root_token(encoded, otp)
    except (ValueError, UnicodeDecodeError) as exc:
        out.fail(f"Error decoding root token: {exc}")
    s = out.settings()
    if s.format == "table":
        out.print_raw(token)
    else:
        out.print_data({"token": token}, s)


def _current_nonce(client: Client, kind: str) -> str:
    with out.api_errors(f"getting {kind} status"):
        status = (
            client.sys.generate_root_status() if kind == "generate-root" else client.sys.rekey_status()
        ) or {}
    if not status.get("started") or not status.get("nonce"):
        out.fail(f"No {kind} operation is in progress; start one with -init")
    return str(status["nonce"])


# --- rekey ---------------------------------------------------------------------------------


def _rekey_table(status: dict[str, Any]) -> str:
    rows = [
        ("Nonce", str(status.get("nonce") or "")),
        ("Started", out.go_value(bool(status.get("started")))),
        ("Rekey Progress", f"{status.get('progress', 0)}/{status.get('required', 0)}"),
        ("New Shares", str(status.get("n", 0))),
        ("New Threshold", str(status.get("t", 0))),
        ("Verification Required", out.go_value(bool(status.get("verification_required")))),
    ]
    if status.get("pgp_fingerprints"):
        rows.append(("PGP Fingerprints", out.go_value(status["pgp_fingerprints"])))
    if status.get("backup"):
        rows.append(("Backup", "true"))
    return out.key_value_table(rows)


@operator.command()
@click.option("--init", "do_init", is_flag=True, help="Start a rekey.")
@click.option("--key-shares", "-n", type=int, default=5, show_default=True, help="New number of shares.")
@click.option("--key-threshold", "-t", type=int, default=3, show_default=True, help="New threshold.")
@click.option("--pgp-keys", help="Comma-separated PGP keys for the new shares.")
@click.option("--backup", is_flag=True, help="Store PGP-encrypted shares on the server.")
@click.option("--verify", is_flag=True, help="Require verification with the new shares.")
@click.option("--cancel", is_flag=True, help="Cancel the rekey in progress.")
@click.option("--status", "show_status", is_flag=True, help="Show the rekey progress.")
@click.option("--nonce", help="Nonce of the rekey (read from the server if omitted).")
@click.argument("key", required=False)
@out.api_options
def rekey(
    do_init: bool,
    key_shares: int,
    key_threshold: int,
    pgp_keys: str | None,
    backup: bool,
    verify: bool,
    cancel: bool,
    show_status: bool,
    nonce: str | None,
    key: str | None,
) -> None:
    """Replace the unseal key shares, authorised by a quorum of the current ones."""
    client = out.client_from()
    if cancel:
        with out.api_errors("canceling rekey"):
            client.sys.rekey_cancel()
        out.success("Canceled rekeying (if it was started)")
        return
    if show_status:
        with out.api_errors("getting rekey status"):
            status = client.sys.rekey_status() or {}
        out.print_data(status, table=lambda: _rekey_table(status))
        return
    if do_init:
        extra: dict[str, Any] = {}
        if pgp_keys:
            extra["pgp_keys"] = pgp_keys.split(",")
        if backup:
            extra["backup"] = True
        if verify:
            extra["require_verification"] = True
        with out.api_errors("initializing rekey"):
            status = client.sys.rekey_init(key_shares, key_threshold, **extra) or {}
        out.print_data(status, table=lambda: _rekey_table(status))
        return
    nonce = nonce or _current_nonce(client, "rekey")
    key = key or _prompt_key()
    with out.api_errors("posting unseal key"):
        status = client.sys.rekey_update(key, nonce) or {}
    if not status.get("complete"):
        out.print_data(status, table=lambda: _rekey_table(status))
        return
    s = out.settings()
    if s.format != "table":
        out.print_data(status, s)
        return
    keys = list(status.get("keys_base64") or status.get("keys") or [])
    for i, new_key in enumerate(keys):
        click.echo(f"Key {i + 1}: {new_key}")
    click.echo(f"\nOperation nonce: {status.get('nonce', nonce)}\n")
    threshold = f" and a key threshold of {status['t']}" if status.get("t") else ""
    click.echo(
        _wrap(
            f"Strongroom rekeyed with {len(keys)} key shares{threshold}. Please securely distribute "
            "the key shares printed above. When the server is re-sealed, restarted, or stopped, you "
            "must supply a quorum of these keys to unseal it."
        )
    )
