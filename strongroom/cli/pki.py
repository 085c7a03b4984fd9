"""``pki``: certificates from a PKI mount without hand-written ``write`` calls.

``strongroom write pki/issue/web common_name=...`` prints the private key to the terminal
and leaves the person to cut PEM blocks into files. These commands do the part everyone
otherwise scripts, and do it safely:

* ``issue`` writes the certificate, its CA chain and the key (mode 0600), refuses to
  overwrite files without ``-force`` and refuses to issue at all when the key would be
  thrown away (no ``-out-dir`` and no ``-show-key``);
* ``sign`` sends a CSR read from a file and can write the certificate to a file;
* ``revoke`` takes a serial number, or the certificate file itself (the only way to revoke
  a certificate from a ``no_store`` role);
* ``list`` shows ``certs/detailed`` as a table of serial, common name, expiry and status;
* ``health-check`` reports on a mount in the manner of ``vault pki health-check``.

The mount comes first in every argument (``pki/web`` is role ``web`` on mount ``pki``;
``team/pki/web`` works for nested mounts). ``-format`` takes ``pem`` as well as
table/json/yaml for ``issue`` and ``sign``. Exit codes are the CLI's (0 ok, 1 local or
usage error, 2 API error) except for ``health-check``, which keeps Vault's so that
monitoring written for Vault keeps working: 0 healthy, 1 could not run, 2 informational,
3 warning, 4 critical, 6 permission denied on an endpoint a check needed.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Any, TypeVar

import click
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from strongroom.api.client import ApiError, Client, Json, data_of, env
from strongroom.cli import output as out
from strongroom.durations import parse_duration

F = TypeVar("F", bound=Callable[..., Any])
CERT_FORMATS = ("table", "json", "yaml", "pem")
DATA_FORMATS = ("table", "json", "yaml")
DAY = 86400


# --- arguments, errors and output formats ---------------------------------------------------


def _mount(path: str) -> str:
    mount = path.strip().strip("/")
    if not mount:
        out.fail("Missing mount path (for example: pki)")
    return mount


def _mount_and_role(target: str) -> tuple[str, str]:
    """``pki/web`` → (``pki``, ``web``); everything before the last slash is the mount."""
    mount, _, role = target.strip().strip("/").rpartition("/")
    if not mount or not role:
        out.fail(f'Invalid argument "{target}": expected MOUNT/ROLE, for example pki/web')
    return mount, role


def _no_route(exc: ApiError) -> bool:
    """A 404 from the router (nothing mounted there), not from an engine that found nothing."""
    return exc.status == 404 and any(
        "no handler for route" in e or "route entry not found" in e for e in exc.errors
    )


@contextmanager
def _api(what: str, mount: str, code: int = 2) -> Iterator[None]:
    """:func:`out.api_errors`, plus a plain sentence for the common mistake of a wrong mount."""
    with out.api_errors(what, code):
        try:
            yield
        except ApiError as exc:
            if _no_route(exc):
                out.fail(
                    f"Error {what}: nothing is mounted at {mount}/ "
                    "(check the mount path with: strongroom secrets list)",
                    code,
                )
            raise


def _format_option(choices: tuple[str, ...]) -> Callable[[F], F]:
    """``-format``, owned by the command because ``pem`` is not one of the CLI's formats."""
    return click.option(
        "--format", "fmt", help=f"Output format: {', '.join(choices)} (env STRONGROOM_FORMAT)."
    )


def _output_format(value: str | None, choices: tuple[str, ...]) -> str:
    fmt = (value or env("FORMAT") or "table").lower()
    if fmt not in choices:
        out.fail(f"Invalid output format: {fmt} (expected one of {', '.join(choices)})")
    return fmt


def _client() -> Client:
    return out.client_from()


def _rfc3339(ts: Any) -> str:
    try:
        moment = dt.datetime.fromtimestamp(int(ts), dt.UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return str(ts)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _colon_serial(serial: str) -> str:
    """Any of Vault's serial spellings (``1a:2b``, ``1a-2b``, ``1A2B``) in the colon form."""
    text = serial.strip().lower().replace("-", ":")
    if ":" in text:
        return ":".join(p.zfill(2) for p in text.split(":") if p)
    if len(text) % 2:
        text = "0" + text
    return ":".join(text[i : i + 2] for i in range(0, len(text), 2))


def _read_input(path: str) -> str:
    """A file's text, or stdin for ``-``; a missing file is a usage error (exit 1)."""
    if path == "-":
        return sys.stdin.read()
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        out.fail(f"Error reading {path}: {exc}")


def _pem_join(parts: list[str]) -> str:
    return "".join(p.strip() + "\n" for p in parts if p and p.strip())


def _chain_of(data: Json) -> list[str]:
    """The CA chain of an issue/sign answer (issuer first); ``issuing_ca`` when there is none."""
    chain = data.get("ca_chain")
    if isinstance(chain, list) and chain:
        return [str(c) for c in chain]
    issuing = data.get("issuing_ca")
    return [str(issuing)] if issuing else []


# --- files ----------------------------------------------------------------------------------


def _file_base(common_name: str) -> str:
    """A safe file name from a common name: ``*.example.com`` → ``wildcard.example.com``."""
    name = re.sub(r"[^A-Za-z0-9._@-]+", "_", common_name.strip().replace("*", "wildcard"))
    return name.strip("._") or "certificate"


def _check_writable(paths: list[Path], force: bool) -> None:
    """Refuse before the API call, so that a name clash does not cost an issued certificate."""
    for path in paths:
        if path.exists() and not force:
            out.fail(f"Refusing to overwrite {path}: it exists (use -force to replace it)")
        if path.is_dir():
            out.fail(f"Cannot write {path}: it is a directory")
    for parent in {p.parent for p in paths}:
        if not os.access(parent, os.W_OK | os.X_OK):
            out.fail(f"Cannot write to {parent}: permission denied")


def write_file(path: Path, text: str, *, mode: int, force: bool) -> None:
    """Write ``text`` with exactly ``mode``; never replace a file unless ``force``.

    Without force the file is created with ``O_EXCL``, so a file that appeared since the
    pre-check is left alone. With force the content goes to a temporary file (created 0600
    by ``mkstemp``) that is renamed over the old one, so a key is never briefly readable by
    others and a reader never sees half a file.
    """
    data = text.encode("utf-8")
    if not force:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        try:
            os.fchmod(fd, mode)  # the umask may have taken bits off
            os.write(fd, data)
        finally:
            os.close(fd)
        return
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.replace(tmp, path)
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _write_all(files: list[tuple[Path, str, int]], force: bool, serial: str, mount: str) -> None:
    """Write every file; on failure say that the certificate exists and how to revoke it."""
    for path, text, mode in files:
        try:
            write_file(path, text, mode=mode, force=force)
        except OSError as exc:
            out.fail(
                f"Error writing {path}: {exc}\nThe certificate {serial} was issued; if it is not "
                f"wanted, revoke it with: strongroom pki revoke {mount} {serial}"
            )


# --- the group ------------------------------------------------------------------------------


@click.group(cls=out.Group)
def pki() -> None:
    """Issue, sign, revoke and list certificates; check a PKI mount's health."""


def _print_cert_response(secret: Json, fmt: str, *, show_key: bool) -> None:
    """json/yaml: the API answer, minus the private key unless asked; pem: the PEM blocks."""
    data = data_of(secret)
    if fmt == "pem":
        parts = [str(data.get("certificate") or ""), *_chain_of(data)]
        if show_key and data.get("private_key"):
            parts.append(str(data["private_key"]))
        click.echo(_pem_join(parts), nl=False)
        return
    shown = dict(secret)
    if not show_key and "private_key" in data:
        shown["data"] = {k: v for k, v in data.items() if k != "private_key"}
    if fmt == "table":
        out.print_secret(shown, out.Settings(format="table"))
    else:
        click.echo(out.dump(shown, fmt))


def _print_written(secret: Json, rows: list[tuple[str, str]], what: str) -> None:
    data = data_of(secret)
    out.print_warnings(secret)
    serial = str(data.get("serial_number", ""))
    out.success(f"{what} {serial}")
    base = [("serial_number", serial), ("expiration", _rfc3339(data.get("expiration")))]
    click.echo(out.key_value_table(base + rows))


def _sans_body(alt_names: str | None, ip_sans: str | None, uri_sans: str | None) -> Json:
    body: Json = {}
    for name, value in (("alt_names", alt_names), ("ip_sans", ip_sans), ("uri_sans", uri_sans)):
        if value:
            body[name] = value
    return body


@pki.command()
@click.option("--common-name", required=True, help="The certificate's common name.")
@click.option("--alt-names", help="Comma-separated DNS names and email addresses to add as SANs.")
@click.option("--ip-sans", help="Comma-separated IP addresses to add as SANs.")
@click.option("--uri-sans", help="Comma-separated URIs to add as SANs.")
@click.option("--ttl", help="Requested lifetime (e.g. 720h); the role's max_ttl caps it.")
@click.option(
    "--out-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write <name>.crt, <name>.chain.pem and <name>.key (mode 0600) here; created if missing.",
)
@click.option("--name", "file_name", help="Base name of the files (default: the common name).")
@click.option("--force", is_flag=True, help="Replace files that already exist.")
@click.option("--show-key", is_flag=True, help="Also print the private key.")
@_format_option(CERT_FORMATS)
@click.argument("target", metavar="MOUNT/ROLE")
@out.http_options
def issue(
    common_name: str,
    alt_names: str | None,
    ip_sans: str | None,
    uri_sans: str | None,
    ttl: str | None,
    out_dir: Path | None,
    file_name: str | None,
    force: bool,
    show_key: bool,
    fmt: str | None,
    target: str,
) -> None:
    """Issue a certificate and private key under a role.

    With -out-dir the certificate, CA chain and key are written to files and only the
    serial number and expiry are printed. The private key is printed only with -show-key;
    with neither, nothing is issued, since the key would be lost.
    """
    fmt = _output_format(fmt, CERT_FORMATS)
    mount, role = _mount_and_role(target)
    if out_dir is None and not show_key:
        out.fail(
            "Refusing to issue a certificate whose private key would be thrown away: "
            "use -out-dir DIR to write it to a file, or -show-key to print it"
        )
    files: list[Path] = []
    if out_dir is not None:
        base = _file_base(file_name or common_name)
        files = [out_dir / f"{base}.crt", out_dir / f"{base}.chain.pem", out_dir / f"{base}.key"]
        try:
            out_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            out.fail(f"Error creating {out_dir}: {exc}")
        _check_writable(files, force)
    body: Json = {"common_name": common_name, "format": "pem", **_sans_body(alt_names, ip_sans, uri_sans)}
    if ttl:
        body["ttl"] = ttl
    client = _client()
    path = f"{mount}/issue/{role}"
    with _api(f"issuing a certificate from {path}", mount):
        secret = client.write(path, body)
    data = data_of(secret)
    if secret is None or not data.get("certificate"):
        out.fail(f"Error issuing a certificate from {path}: the server returned no certificate", 2)
    if out_dir is not None:
        cert_file, chain_file, key_file = files
        serial = str(data.get("serial_number", ""))
        if not data.get("private_key"):
            out.fail(f"Error issuing a certificate from {path}: the server returned no private key", 2)
        _write_all(
            [
                (key_file, _pem_join([str(data["private_key"])]), 0o600),
                (cert_file, _pem_join([str(data["certificate"])]), 0o644),
                (chain_file, _pem_join(_chain_of(data)), 0o644),
            ],
            force,
            serial,
            mount,
        )
        if fmt == "table":
            rows = [
                ("certificate", str(cert_file)),
                ("ca_chain", str(chain_file)),
                ("private_key", str(key_file)),
            ]
            _print_written(secret, rows, "Issued certificate")
            return
    _print_cert_response(secret, fmt, show_key=show_key)


@pki.command()
@click.option(
    "--out",
    "out_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the signed certificate (PEM) to this file.",
)
@click.option(
    "--chain-out", type=click.Path(dir_okay=False, path_type=Path), help="Write the CA chain (PEM) here."
)
@click.option("--ttl", help="Requested lifetime (e.g. 720h); the role's max_ttl caps it.")
@click.option("--force", is_flag=True, help="Replace files that already exist.")
@_format_option(CERT_FORMATS)
@click.argument("target", metavar="MOUNT/ROLE")
@click.argument("csr_file", type=click.Path(dir_okay=False, allow_dash=True))
@out.http_options
def sign(
    out_file: Path | None,
    chain_out: Path | None,
    ttl: str | None,
    force: bool,
    fmt: str | None,
    target: str,
    csr_file: str,
) -> None:
    """Sign a PEM certificate request (CSR_FILE, or - for stdin) under a role.

    The key never leaves the machine that made the CSR. The role decides the names: by
    default it takes the common name and SANs from the CSR.
    """
    fmt = _output_format(fmt, CERT_FORMATS)
    mount, role = _mount_and_role(target)
    csr_pem = _read_input(csr_file)
    try:
        x509.load_pem_x509_csr(csr_pem.strip().encode())
    except ValueError as exc:
        out.fail(f"{csr_file} does not hold a PEM certificate request: {exc}")
    targets = [p for p in (out_file, chain_out) if p is not None]
    _check_writable(targets, force)
    body: Json = {"csr": csr_pem, "format": "pem"}
    if ttl:
        body["ttl"] = ttl
    client = _client()
    path = f"{mount}/sign/{role}"
    with _api(f"signing the request at {path}", mount):
        secret = client.write(path, body)
    data = data_of(secret)
    if secret is None or not data.get("certificate"):
        out.fail(f"Error signing the request at {path}: the server returned no certificate", 2)
    rows: list[tuple[str, str]] = []
    files: list[tuple[Path, str, int]] = []
    if out_file is not None:
        files.append((out_file, _pem_join([str(data["certificate"])]), 0o644))
        rows.append(("certificate", str(out_file)))
    if chain_out is not None:
        files.append((chain_out, _pem_join(_chain_of(data)), 0o644))
        rows.append(("ca_chain", str(chain_out)))
    _write_all(files, force, str(data.get("serial_number", "")), mount)
    if files and fmt == "table":
        _print_written(secret, rows, "Signed certificate")
        return
    _print_cert_response(secret, fmt, show_key=False)


@pki.command()
@click.option(
    "--cert",
    "cert_file",
    type=click.Path(dir_okay=False, allow_dash=True),
    help="Revoke the certificate in this PEM file (works for no_store roles too).",
)
@_format_option(DATA_FORMATS)
@click.argument("mount")
@click.argument("serial", required=False)
@out.http_options
def revoke(cert_file: str | None, fmt: str | None, mount: str, serial: str | None) -> None:
    """Revoke a certificate by SERIAL (colon, hyphen or bare hex) or with -cert FILE."""
    fmt = _output_format(fmt, DATA_FORMATS)
    mount = _mount(mount)
    if (serial is None) == (cert_file is None):
        out.fail("Give either a serial number or -cert FILE (exactly one)")
    body: Json
    if cert_file is not None:
        try:
            cert = x509.load_pem_x509_certificate(_read_input(cert_file).strip().encode())
        except ValueError as exc:
            out.fail(f"{cert_file} does not hold a PEM certificate: {exc}")
        shown = _colon_serial(f"{cert.serial_number:x}")
        # only the first certificate: a file with the chain appended must not revoke more
        body = {"certificate": cert.public_bytes(serialization.Encoding.PEM).decode()}
    else:
        assert serial is not None
        shown = _colon_serial(serial)
        if not shown or not re.fullmatch(r"[0-9a-f]{2}(:[0-9a-f]{2})*", shown):
            out.fail(f'Invalid serial number "{serial}": expected hex such as 1a:2b:3c')
        body = {"serial_number": shown}
    client = _client()
    path = f"{mount}/revoke"
    with _api(f"revoking certificate {shown}", mount):
        try:
            secret = client.write(path, body)
        except ApiError as exc:
            if cert_file is None and exc.status == 400 and any("not found" in e for e in exc.errors):
                out.fail(
                    f"Error revoking certificate {shown}: {exc}\n\nThe mount stores no certificate with "
                    "this serial. Certificates from a role with no_store=true are not stored: revoke "
                    "them with -cert FILE.",
                    2,
                )
            raise
    data = data_of(secret)
    if fmt != "table":
        click.echo(out.dump(secret or {}, fmt))
        return
    if secret is not None:
        out.print_warnings(secret)
    if not data.get("revocation_time"):
        click.echo(f"Certificate {shown} was not added to the CRL (see the warnings above).")
        return
    moment = data.get("revocation_time_rfc3339") or _rfc3339(data["revocation_time"])
    out.success(f"Revoked certificate {shown} at {moment}.")


def _status(info: Json, now: float) -> str:
    if info.get("revoked"):
        return "revoked"
    try:
        expired = int(info.get("not_after") or 0) < now
    except (TypeError, ValueError):
        expired = False
    return "expired" if expired else "valid"


@pki.command("list")
@click.option("--limit", type=click.IntRange(min=1), help="Show at most N certificates.")
@click.option("--after", help="Start after this serial number (for paging).")
@_format_option(DATA_FORMATS)
@click.argument("mount")
@out.http_options
def list_(limit: int | None, after: str | None, fmt: str | None, mount: str) -> None:
    """List a mount's stored certificates: serial, common name, expiry and status.

    Status is valid, revoked or expired. Certificates from no_store roles are not stored
    and so not listed. With -limit, the command says how to ask for the next page.
    """
    fmt = _output_format(fmt, DATA_FORMATS)
    mount = _mount(mount)
    params: Json = {}
    if limit:
        params["limit"] = str(limit)
    if after:
        params["after"] = _colon_serial(after)
    client = _client()
    path = f"{mount}/certs/detailed"
    with _api(f"listing {path}", mount):
        try:
            secret = client.request("LIST", path, params=params or None)
        except ApiError as exc:
            if exc.status != 404 or _no_route(exc):
                raise
            secret = None
    data = data_of(secret)
    keys = [str(k) for k in data.get("keys") or []]
    raw_info = data.get("key_info")
    info: Json = raw_info if isinstance(raw_info, dict) else {}
    if not keys:
        where = f"after {params['after']} " if after else ""
        out.fail(f"No certificates found {where}in {mount}/", 2)
    now = time.time()
    entries: list[Json] = []
    for key in keys:
        found = info.get(key)
        entry: Json = dict(found) if isinstance(found, dict) else {"serial_number": key}
        entry.setdefault("serial_number", key)
        entry["status"] = _status(entry, now)
        entries.append(entry)
    if fmt != "table":
        click.echo(out.dump(entries, fmt))
    else:
        rows = [("Serial Number", "Common Name", "Not After", "Status")]
        for e in entries:
            rows.append(
                (
                    str(e["serial_number"]),
                    str(e.get("common_name") or ""),
                    _rfc3339(e.get("not_after")),
                    e["status"],
                )
            )
        click.echo(out.columns(rows))
    if limit and len(keys) >= limit:
        out.warn(
            f"More certificates may follow: strongroom pki list -limit={limit} -after={keys[-1]} {mount}"
        )


# --- health-check ---------------------------------------------------------------------------


class Status(IntEnum):
    """Vault's result statuses; the number is also the exit code (above ``ok``)."""

    NOT_APPLICABLE = 0
    OK = 1
    INFORMATIONAL = 2
    WARNING = 3
    CRITICAL = 4
    INVALID_VERSION = 5
    INSUFFICIENT_PERMISSIONS = 6

    @property
    def display(self) -> str:
        return self.name.lower()


@dataclass(frozen=True)
class Finding:
    status: Status
    endpoint: str
    message: str

    def to_json(self) -> Json:
        """Vault's result object, so scripts written for ``vault pki health-check`` parse it."""
        return {
            "status_code": int(self.status),
            "status": self.status.display,
            "endpoint": self.endpoint,
            "message": self.message,
        }


@dataclass(frozen=True)
class Thresholds:
    """The limits the checks judge by (Vault's are configurable too, by -health-config)."""

    expiry_warning: int = 30 * DAY
    expiry_critical: int = 7 * DAY
    max_ttl_warning: int = 90 * DAY
    crl_used_pct_warning: int = 95


class Denied(Exception):
    """The token may not read an endpoint a check needs; the check says so and goes on."""

    def __init__(self, endpoint: str) -> None:
        super().__init__(endpoint)
        self.endpoint = endpoint


@dataclass
class IssuerInfo:
    id: str
    name: str
    certificate: x509.Certificate
    aia: Json | None  # the issuer's own AIA lists; None when the token may not read them


class HealthContext:
    """What the checks share: one client, and each endpoint fetched at most once."""

    def __init__(self, client: Client, mount: str, thresholds: Thresholds, now: float | None = None) -> None:
        self.client = client
        self.mount = mount
        self.thresholds = thresholds
        self.now = time.time() if now is None else now
        self._cache: dict[tuple[str, str], Any] = {}
        self._issuers: list[IssuerInfo] | None = None

    def endpoint(self, path: str) -> str:
        return f"/{self.mount}/{path}"

    def fetch(self, path: str, *, method: str = "GET", absolute: bool = False) -> Json | None:
        """The answer's envelope; None for 404; :class:`Denied` for 403 (remembered)."""
        full = path if absolute else f"{self.mount}/{path}"
        key = (method, full)
        if key not in self._cache:
            try:
                self._cache[key] = self.client.request(method, full)
            except ApiError as exc:
                if exc.status == 403:
                    self._cache[key] = Denied("/" + full)
                elif exc.status == 404 and not _no_route(exc):
                    self._cache[key] = None
                else:
                    raise
        value = self._cache[key]
        if isinstance(value, Denied):
            raise value
        return value if isinstance(value, dict) else None

    def data(self, path: str, **kwargs: Any) -> Json:
        return data_of(self.fetch(path, **kwargs))

    def issuers(self) -> list[IssuerInfo]:
        if self._issuers is None:
            self._issuers = []
            for issuer_id in self.data("issuers", method="LIST").get("keys") or []:
                self._issuers.append(self._issuer(str(issuer_id)))
        return self._issuers

    def _issuer(self, issuer_id: str) -> IssuerInfo:
        aia: Json | None
        try:
            data = self.data(f"issuer/{issuer_id}")
            aia = data
        except Denied:  # issuer/<ref>/json needs no token; only the AIA settings are lost
            data = self.data(f"issuer/{issuer_id}/json")
            aia = None
        cert = x509.load_pem_x509_certificate(str(data.get("certificate", "")).strip().encode())
        return IssuerInfo(issuer_id, str(data.get("issuer_name") or ""), cert, aia)

    def crl_config(self) -> Json:
        return self.data("config/crl")


def _days(seconds: float) -> str:
    days = seconds / DAY
    return f"{days:.0f} days" if abs(days) >= 2 else f"{seconds / 3600:.0f} hours"


def _date(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%d")


def _denied(exc: Denied, what: str) -> Finding:
    return Finding(
        Status.INSUFFICIENT_PERMISSIONS,
        exc.endpoint,
        f"This token may not read {exc.endpoint}, so {what} could not be checked.",
    )


def check_ca_validity(ctx: HealthContext) -> list[Finding]:
    """Issuers close to expiry: leaves cannot outlive them, and replacing a CA takes time."""
    t = ctx.thresholds
    findings = []
    issuers = ctx.issuers()
    if not issuers:
        return [
            Finding(
                Status.WARNING,
                ctx.endpoint("issuers"),
                "The mount has no issuer, so it can issue nothing: generate a root with "
                f"strongroom write {ctx.mount}/root/generate/internal common_name=... or import one.",
            )
        ]
    for issuer in issuers:
        end = issuer.certificate.not_valid_after_utc
        start = issuer.certificate.not_valid_before_utc
        left = end.timestamp() - ctx.now
        where = ctx.endpoint(f"issuer/{issuer.id}")
        if left <= 0:
            status, msg = (
                Status.CRITICAL,
                f"Issuer expired on {_date(end)}: nothing it signed is trusted any more.",
            )
        elif left <= t.expiry_critical:
            status = Status.CRITICAL
            msg = f"Issuer expires on {_date(end)}, in {_days(left)}: rotate it now."
        elif left <= t.expiry_warning:
            status = Status.WARNING
            msg = (
                f"Issuer expires on {_date(end)}, in {_days(left)}: plan its rotation; certificates "
                "issued now are cut short at its expiry or refused."
            )
        else:
            status, msg = Status.OK, f"Issuer's validity ({_date(start)} to {_date(end)}) is OK."
        findings.append(Finding(status, where, msg))
    return findings


def _urls(aia: Json, name: str) -> list[str]:
    value = aia.get(name)
    return [str(v) for v in value if v] if isinstance(value, list) else []


_AIA_NAMES = ("issuing_certificates", "crl_distribution_points", "ocsp_servers")


def check_aia(ctx: HealthContext) -> list[Finding]:
    """Certificates without AIA URLs leave relying parties unable to find the chain or revocation."""
    findings: list[Finding] = []
    mount_aia: Json | None
    try:
        mount_aia = ctx.data("config/urls")
    except Denied as exc:
        mount_aia = None
        findings.append(_denied(exc, "the mount's AIA URLs"))
    try:
        crl = ctx.crl_config()
    except Denied:
        crl = {}
    revocation_off = bool(crl.get("disable")) and bool(crl.get("ocsp_disable"))
    write = f"strongroom write {ctx.mount}/config/urls"
    for issuer in ctx.issuers():
        if issuer.aia is None:
            findings.append(
                _denied(Denied(ctx.endpoint(f"issuer/{issuer.id}")), f"issuer {issuer.id}'s AIA URLs")
            )
            continue
        own = any(_urls(issuer.aia, n) for n in _AIA_NAMES)
        if own:
            aia, where = issuer.aia, ctx.endpoint(f"issuer/{issuer.id}")
        elif mount_aia is not None:
            aia, where = mount_aia, ctx.endpoint("config/urls")
        else:
            continue
        label = f"Issuer {issuer.name or issuer.id}"
        problems = []
        if not _urls(aia, "crl_distribution_points") and not _urls(aia, "ocsp_servers"):
            status = Status.INFORMATIONAL if revocation_off else Status.WARNING
            problems.append(
                Finding(
                    status,
                    where,
                    f"{label}: issued certificates name no CRL distribution point and no OCSP "
                    "server, so relying parties cannot learn of revocations. Set one with: "
                    f"{write} crl_distribution_points=<address>/v1/{ctx.mount}/crl",
                )
            )
        if not _urls(aia, "issuing_certificates"):
            problems.append(
                Finding(
                    Status.INFORMATIONAL,
                    where,
                    f"{label}: issued certificates carry no AIA issuing-certificate URL, so a client "
                    "missing the chain cannot fetch it. Set one with: "
                    f"{write} issuing_certificates=<address>/v1/{ctx.mount}/ca",
                )
            )
        findings.extend(problems or [Finding(Status.OK, where, f"{label}: AIA URLs are set.")])
    return findings


def _crl_finding(ctx: HealthContext, pem: str, where: str, label: str, disabled: bool) -> Finding:
    try:
        crl = x509.load_pem_x509_crl(pem.strip().encode())
    except ValueError as exc:
        return Finding(Status.CRITICAL, where, f"{label} could not be parsed: {exc}")
    this = crl.last_update_utc
    nxt = crl.next_update_utc
    if nxt is None:
        return Finding(
            Status.WARNING, where, f"{label} has no NextUpdate: clients cannot tell when it is stale."
        )
    total = (nxt - this).total_seconds()
    used = ctx.now - this.timestamp()
    status, msg = Status.OK, f"{label} is valid from {_date(this)} to {_date(nxt)}."
    if ctx.now >= nxt.timestamp():
        status = Status.CRITICAL
        msg = (
            f"{label} went stale at {nxt.strftime('%Y-%m-%dT%H:%M:%SZ')}: clients that check CRLs "
            f"reject every certificate. Rebuild it: strongroom read {ctx.mount}/crl/rotate"
        )
    elif total > 0 and used >= total * ctx.thresholds.crl_used_pct_warning / 100:
        status = Status.WARNING
        msg = (
            f"{label} is due: {ctx.thresholds.crl_used_pct_warning}% of its validity has passed and it "
            f"goes stale at {nxt.strftime('%Y-%m-%dT%H:%M:%SZ')}. Consider config/crl auto_rebuild=true."
        )
    if disabled and status > Status.OK:
        status = Status.INFORMATIONAL
        msg += " CRL building is disabled, so this matters less."
    return Finding(status, where, msg)


def check_crl(ctx: HealthContext) -> list[Finding]:
    """A CRL past its NextUpdate makes strict clients reject every certificate of the issuer."""
    findings: list[Finding] = []
    try:
        config = ctx.crl_config()
    except Denied as exc:
        config = {}
        findings.append(_denied(exc, "whether CRLs are disabled"))
    disabled = bool(config.get("disable"))
    if disabled:
        status = Status.WARNING if config.get("ocsp_disable") else Status.INFORMATIONAL
        how = "and OCSP is disabled too: revocation reaches no one" if status == Status.WARNING else ""
        findings.append(
            Finding(
                status,
                ctx.endpoint("config/crl"),
                f"CRL building is disabled (disable=true){' ' + how if how else ''}.",
            )
        )
    kinds = [("crl", "CRL")] + ([("crl/delta", "Delta CRL")] if config.get("enable_delta") else [])
    for issuer in ctx.issuers():
        for suffix, kind in kinds:
            path = f"issuer/{issuer.id}/{suffix}"
            label = f"{kind} of issuer {issuer.name or issuer.id}"
            try:
                pem = str(ctx.data(path).get("crl") or "")
            except Denied as exc:
                findings.append(_denied(exc, label))
                continue
            except ApiError as exc:
                findings.append(
                    Finding(
                        Status.WARNING,
                        ctx.endpoint(path),
                        f"{label} could not be fetched: {'; '.join(exc.errors)}",
                    )
                )
                continue
            if not pem.strip():
                if suffix == "crl" and not disabled:
                    findings.append(
                        Finding(Status.WARNING, ctx.endpoint(path), f"{label}: none is published.")
                    )
                continue
            findings.append(_crl_finding(ctx, pem, ctx.endpoint(path), label, disabled))
    return findings


def _roles(ctx: HealthContext) -> tuple[dict[str, Json], list[Finding]]:
    """Every role's settings; unreadable ones become permission findings."""
    problems: list[Finding] = []
    roles: dict[str, Json] = {}
    try:
        names = ctx.data("roles", method="LIST").get("keys") or []
    except Denied as exc:
        return {}, [_denied(exc, "the roles")]
    for name in names:
        try:
            roles[str(name)] = ctx.data(f"roles/{name}")
        except Denied as exc:
            problems.append(_denied(exc, f"role {name}"))
    return roles, problems


def _mount_max_ttl(ctx: HealthContext) -> int | None:
    try:
        value = ctx.data(f"sys/mounts/{ctx.mount}/tune", absolute=True).get("max_lease_ttl")
    except Denied:
        return None
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _seconds(value: Any) -> int:
    try:
        return parse_duration(value)
    except ValueError:
        return 0


def check_roles(ctx: HealthContext) -> list[Finding]:
    """Roles that let anyone who may use them get names or lifetimes nobody meant to allow."""
    roles, findings = _roles(ctx)
    if not roles and not findings:
        return [Finding(Status.NOT_APPLICABLE, ctx.endpoint("roles"), "No roles to check.")]
    limit = ctx.thresholds.max_ttl_warning
    for name, role in roles.items():
        where = ctx.endpoint(f"roles/{name}")
        problems: list[Finding] = []
        wildcards = bool(role.get("allow_wildcard_certificates"))
        if role.get("allow_any_name"):
            problems.append(
                Finding(
                    Status.WARNING,
                    where,
                    "Role allows any name (allow_any_name=true)"
                    + (", wildcards included" if wildcards else "")
                    + ": whoever may use it can get a certificate for any host. Restrict it with "
                    "allowed_domains.",
                )
            )
        globbed = [str(d) for d in role.get("allowed_domains") or [] if "*" in str(d)]
        if wildcards and role.get("allow_glob_domains") and globbed:
            problems.append(
                Finding(
                    Status.WARNING,
                    where,
                    f"Role allows wildcard certificates together with glob domains ({', '.join(globbed)}): "
                    "a glob can match wildcards at any depth. Disable allow_wildcard_certificates or split "
                    "the role in two.",
                )
            )
        max_ttl = _seconds(role.get("max_ttl") or 0)
        source = "max_ttl"
        if max_ttl == 0:
            max_ttl = _mount_max_ttl(ctx) or 0
            source = "max_ttl unset, so the mount's max_lease_ttl"
        if max_ttl > limit:
            problems.append(
                Finding(
                    Status.WARNING,
                    where,
                    f"Role lets certificates live {_days(max_ttl)} ({source}), more than {_days(limit)}: "
                    "a leaked key stays useful that long. Lower max_ttl.",
                )
            )
        findings.extend(problems or [Finding(Status.OK, where, "Role restricts names and lifetimes.")])
    return findings


def check_role_leases(ctx: HealthContext) -> list[Finding]:
    """generate_lease puts a lease per certificate in the expiration manager: costly at scale."""
    roles, _ = _roles(ctx)  # unreadable roles are reported once, by check_roles
    findings: list[Finding] = []
    for name, role in roles.items():
        if role.get("generate_lease") and not role.get("no_store"):
            findings.append(
                Finding(
                    Status.INFORMATIONAL,
                    ctx.endpoint(f"roles/{name}"),
                    "Every certificate from this role gets a lease (generate_lease=true): at many "
                    "certificates the leases dominate storage and start-up. Prefer short TTLs without "
                    "leases, and revoke by serial.",
                )
            )
    if roles and not findings:
        findings.append(Finding(Status.OK, ctx.endpoint("roles"), "No role attaches leases to certificates."))
    return findings


CHECKS: list[tuple[str, Callable[[HealthContext], list[Finding]]]] = [
    ("ca_validity_period", check_ca_validity),
    ("aia_urls", check_aia),
    ("crl_validity_period", check_crl),
    ("role_allows_too_much", check_roles),
    ("role_generate_lease", check_role_leases),
]
RETURN_INDICATORS = ("default", "informational", "warning", "critical", "permission")


def run_checks(ctx: HealthContext) -> dict[str, list[Finding]]:
    """Every check in order; one that cannot get what it needs reports that instead of aborting."""
    results: dict[str, list[Finding]] = {}
    for name, check in CHECKS:
        try:
            results[name] = check(ctx)
        except Denied as exc:
            results[name] = [_denied(exc, name)]
        except ValueError as exc:  # e.g. a certificate the server sent that does not parse
            results[name] = [Finding(Status.WARNING, ctx.endpoint(""), f"{name} could not run: {exc}")]
    return results


def exit_code(results: dict[str, list[Finding]], indicator: str = "default") -> int:
    """Vault's ``selectRetCode``: the worst status, if it reaches the indicator's cut-off."""
    worst = max((f.status for fs in results.values() for f in fs), default=Status.NOT_APPLICABLE)
    cutoff = {
        "default": Status.INFORMATIONAL,
        "informational": Status.INFORMATIONAL,
        "warning": Status.WARNING,
        "critical": Status.CRITICAL,
        "permission": Status.INVALID_VERSION,
    }[indicator]
    return int(worst) if worst >= cutoff else 0


def _duration_option(value: str, name: str) -> int:
    try:
        return parse_duration(value)
    except ValueError as exc:
        out.fail(f"Invalid -{name} {value!r}: {exc}")


def _preflight(ctx: HealthContext) -> None:
    """Say plainly when the mount is missing or is not a PKI engine, before any check runs."""
    try:
        body = ctx.client.request("GET", f"sys/internal/ui/mounts/{ctx.mount}")
    except ApiError:
        body = None  # the endpoint may be denied; the checks will find out themselves
    kind = data_of(body).get("type")
    if kind and kind != "pki":
        out.fail(f"{ctx.mount}/ is a {kind} mount, not pki")
    try:
        ctx.client.request("LIST", f"{ctx.mount}/issuers")
    except ApiError as exc:
        if _no_route(exc):
            out.fail(
                f"Nothing is mounted at {ctx.mount}/ (check the mount path with: strongroom secrets list)"
            )


@pki.command("health-check")
@click.option(
    "--return-indicator",
    type=click.Choice(RETURN_INDICATORS),
    default="default",
    help="Lowest status that makes the exit code non-zero (default: informational).",
)
@click.option("--expiry-warning", default="30d", help="Warn when an issuer expires within this (30d).")
@click.option("--expiry-critical", default="7d", help="Critical when an issuer expires within this (7d).")
@click.option("--max-ttl-warning", default="90d", help="Warn about roles whose max_ttl exceeds this (90d).")
@_format_option(DATA_FORMATS)
@click.argument("mount")
@out.http_options
def health_check(
    return_indicator: str,
    expiry_warning: str,
    expiry_critical: str,
    max_ttl_warning: str,
    fmt: str | None,
    mount: str,
) -> None:
    """Check a PKI mount: issuer expiry, AIA URLs, CRL freshness and over-generous roles.

    Each finding is ok, informational, warning or critical (or insufficient_permissions
    when the token may not read what a check needs). The exit code is Vault's: 0 when
    everything is ok, otherwise the worst status — 2 informational, 3 warning, 4
    critical, 6 insufficient permissions — and 1 when the check could not run.
    -return-indicator=warning (or critical, permission) ignores findings below it.
    """
    fmt = _output_format(fmt, DATA_FORMATS)
    thresholds = Thresholds(
        expiry_warning=_duration_option(expiry_warning, "expiry-warning"),
        expiry_critical=_duration_option(expiry_critical, "expiry-critical"),
        max_ttl_warning=_duration_option(max_ttl_warning, "max-ttl-warning"),
    )
    ctx = HealthContext(_client(), _mount(mount), thresholds)
    with out.api_errors(f"running the health check of {ctx.mount}/", code=1):
        _preflight(ctx)
        results = run_checks(ctx)
    if fmt != "table":
        click.echo(out.dump({name: [f.to_json() for f in fs] for name, fs in results.items()}, fmt))
    else:
        for name, findings in results.items():
            click.echo(name)
            click.echo("-" * len(name))
            rows = [("status", "endpoint", "message")]
            rows += [(f.status.display, f.endpoint, f.message) for f in findings]
            click.echo(out.columns(rows))
            click.echo()
    raise click.exceptions.Exit(exit_code(results, return_indicator))
