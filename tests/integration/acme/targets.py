"""ACME servers under test: pebble (the reference) and strongroom, each with a loopback DNS server.

An :class:`AcmeTarget` is everything a client script needs to know about a server: the directory
URL, the CA bundle for the server's own HTTPS, the ports its validator connects to for http-01
and tls-alpn-01 (the client must listen there), the fake DNS server every name resolves through,
and the server-side checks (EAB credentials, revocation status, the root that issued certificates).

``start_pebble`` and ``start_strongroom`` return a started target; ``target.stop()`` stops every
process the target started. Everything listens on 127.0.0.1 on free ports.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from cryptography import x509

from tests.integration.server_proc import ROOT, free_port

PEBBLE = "/usr/bin/pebble"
CHALLTESTSRV = "/usr/bin/pebble-challtestsrv"
START_TIMEOUT = 30.0


class EabUnsupported(RuntimeError):
    """The target hands out no External Account Binding credentials."""


class TargetError(RuntimeError):
    """A target process did not start or answered a management request badly."""


# -- processes ---------------------------------------------------------------------------------


class ManagedProcess:
    """A child process with its output in a log file; ``stop()`` ends it (TERM, then KILL)."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        log: Path,
        *,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.argv = argv
        self.log = log
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **(env or {})},
                cwd=cwd,
                start_new_session=True,
            )

    def running(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def check_alive(self) -> None:
        if not self.running():
            raise TargetError(f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


def wait_until(
    what: str,
    probe: Callable[[], bool],
    procs: list[ManagedProcess],
    timeout: float = START_TIMEOUT,
    interval: float = 0.1,
) -> None:
    """Call ``probe`` until it returns True: at most ``timeout`` seconds and ``timeout/interval`` tries."""
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout / interval) + 1):
        for p in procs:
            p.check_alive()
        try:
            if probe():
                return
        except (OSError, httpx.HTTPError):
            pass
        if time.monotonic() > deadline:
            break
        time.sleep(interval)
    tails = "\n".join(f"--- {p.name}:\n{p.log_tail()}" for p in procs)
    raise TargetError(f"{what} not ready after {timeout:.0f}s\n{tails}")


def _tcp_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


# -- TLS material for the servers' own HTTPS -----------------------------------------------------


def make_tls_cert(folder: Path) -> tuple[Path, Path, Path]:
    """With openssl: a throwaway CA and a server certificate for 127.0.0.1 and localhost.

    Returns ``(ca_pem, cert_pem, key_pem)``; clients trust ``ca_pem``.
    """
    folder.mkdir(parents=True, exist_ok=True)
    ca_key, ca_pem = folder / "tls-ca-key.pem", folder / "tls-ca.pem"
    key, csr, cert = folder / "tls-key.pem", folder / "tls.csr", folder / "tls-cert.pem"
    ext = folder / "tls-ext.cnf"
    ext.write_text(
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
    )
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    steps = [
        [
            "openssl",
            "req",
            "-x509",
            *ec,
            "-keyout",
            str(ca_key),
            "-out",
            str(ca_pem),
            "-days",
            "3",
            "-subj",
            "/CN=acme test TLS CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
        ["openssl", "req", "-new", *ec, "-keyout", str(key), "-out", str(csr), "-subj", "/CN=localhost"],
        [
            "openssl",
            "x509",
            "-req",
            "-in",
            str(csr),
            "-CA",
            str(ca_pem),
            "-CAkey",
            str(ca_key),
            "-CAcreateserial",
            "-out",
            str(cert),
            "-days",
            "2",
            "-extfile",
            str(ext),
        ],
    ]
    for argv in steps:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            raise TargetError(f"{' '.join(argv)} failed:\n{r.stderr}")
    return ca_pem, cert, key


# -- the loopback DNS server -------------------------------------------------------------------


class ChallTestSrv:
    """``pebble-challtestsrv`` as the DNS server: every A query answers 127.0.0.1, TXT as set here."""

    def __init__(self, workdir: Path) -> None:
        self.dns_port = free_port()
        self.management_port = free_port()
        self.management_url = f"http://127.0.0.1:{self.management_port}"
        self.process = ManagedProcess(
            "pebble-challtestsrv",
            [
                CHALLTESTSRV,
                "-defaultIPv4",
                "127.0.0.1",
                "-defaultIPv6",
                "",
                "-dns01",
                f"127.0.0.1:{self.dns_port}",
                "-http01",
                "",
                "-https01",
                "",
                "-tlsalpn01",
                "",
                "-management",
                f"127.0.0.1:{self.management_port}",
            ],
            workdir / "challtestsrv.log",
        )
        try:
            wait_until(
                "pebble-challtestsrv",
                lambda: _tcp_open(self.dns_port) and _tcp_open(self.management_port),
                [self.process],
            )
        except BaseException:
            self.process.stop()
            raise

    @property
    def resolver(self) -> str:
        return f"127.0.0.1:{self.dns_port}"

    def _post(self, path: str, body: dict[str, Any]) -> None:
        r = httpx.post(self.management_url + path, json=body, timeout=10.0)
        if r.status_code != 200:
            raise TargetError(f"challtestsrv {path} {body}: {r.status_code} {r.text}")

    @staticmethod
    def _fqdn(host: str) -> str:
        return host if host.endswith(".") else host + "."

    def set_txt(self, host: str, value: str) -> None:
        """Add a TXT value for ``host`` (e.g. ``_acme-challenge.x.example.com``)."""
        self._post("/set-txt", {"host": self._fqdn(host), "value": value})

    def clear_txt(self, host: str) -> None:
        self._post("/clear-txt", {"host": self._fqdn(host)})

    def add_a(self, host: str, ip: str) -> None:
        self._post("/add-a", {"host": self._fqdn(host), "addresses": [ip]})

    def stop(self) -> None:
        self.process.stop()


# -- the target --------------------------------------------------------------------------------


def cert_serial(pem: str | bytes) -> int:
    data = pem.encode() if isinstance(pem, str) else pem
    return x509.load_pem_x509_certificate(data).serial_number


@dataclass
class AcmeTarget:
    """An ACME server under test. Subclasses fill in the server-side checks."""

    name: str
    directory_url: str
    ca_bundle: Path  # PEM the clients trust for the server's HTTPS
    http_port: int  # the validator's http-01 port: clients listen here on 127.0.0.1
    tls_port: int  # the validator's tls-alpn-01 port
    dns: ChallTestSrv
    workdir: Path
    eab_required: bool = False
    processes: list[ManagedProcess] = field(default_factory=list)

    def new_eab(self) -> tuple[str, str]:
        """A fresh External Account Binding ``(kid, base64url HMAC key)``."""
        raise EabUnsupported(f"{self.name} has no EAB credentials")

    def cert_status(self, serial: int) -> str:
        """``"valid"`` or ``"revoked"`` for a certificate this server issued."""
        raise NotImplementedError

    def is_revoked(self, pem: str | bytes) -> bool:
        return self.cert_status(cert_serial(pem)) == "revoked"

    def issuing_roots(self) -> list[x509.Certificate]:
        """The root certificate(s) the server's issued certificates chain to."""
        raise NotImplementedError

    def issuing_roots_pem(self, path: Path) -> Path:
        from cryptography.hazmat.primitives.serialization import Encoding

        path.write_bytes(b"".join(c.public_bytes(Encoding.PEM) for c in self.issuing_roots()))
        return path

    def log_tail(self, chars: int = 4000) -> str:
        procs = [*self.processes, self.dns.process]
        return "\n".join(f"--- {p.name} ({p.log}):\n{p.log_tail(chars)}" for p in procs)

    def stop(self) -> None:
        for p in reversed(self.processes):
            p.stop()
        self.dns.stop()


def _http(ca: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca))


# -- pebble --------------------------------------------------------------------------------------


@dataclass
class PebbleTarget(AcmeTarget):
    management_url: str = ""
    eab_keys: list[tuple[str, str]] = field(default_factory=list)

    def _mgmt(self, path: str) -> httpx.Response:
        return httpx.get(self.management_url + path, verify=_http(self.ca_bundle), timeout=10.0)

    def new_eab(self) -> tuple[str, str]:
        if not self.eab_keys:
            raise EabUnsupported(f"{self.name}: no unused EAB keys left in its config")
        return self.eab_keys.pop(0)

    def cert_status(self, serial: int) -> str:
        r = self._mgmt(f"/cert-status-by-serial/{serial:x}")
        if r.status_code != 200:
            raise TargetError(f"pebble cert-status-by-serial/{serial:x}: {r.status_code} {r.text}")
        return str(r.json()["Status"]).lower()

    def issuing_roots(self) -> list[x509.Certificate]:
        r = self._mgmt("/roots/0")
        r.raise_for_status()
        return x509.load_pem_x509_certificates(r.content)


def start_pebble(tmpdir: Path, eab_required: bool = False, eab_key_count: int = 16) -> PebbleTarget:
    """pebble + pebble-challtestsrv on free loopback ports; validation goes to ``http_port``/``tls_port``.

    ``PEBBLE_AUTHZREUSE=0`` so that every order is really validated (pebble reuses half by default),
    ``PEBBLE_WFE_NONCEREJECT=0`` so that no good nonce is rejected (5% by default).
    With ``eab_required`` the config lists ``eab_key_count`` EAB keys that ``new_eab()`` hands out.
    """
    tmpdir.mkdir(parents=True, exist_ok=True)
    ca_pem, cert, key = make_tls_cert(tmpdir)
    dns = ChallTestSrv(tmpdir)
    try:
        port, mgmt, http_port, tls_port = free_port(), free_port(), free_port(), free_port()
        eab_keys = [
            (
                f"kid-{i}-{secrets.token_hex(4)}",
                base64.urlsafe_b64encode(secrets.token_bytes(48)).decode().rstrip("="),
            )
            for i in range(eab_key_count if eab_required else 0)
        ]
        config: dict[str, Any] = {
            "listenAddress": f"127.0.0.1:{port}",
            "managementListenAddress": f"127.0.0.1:{mgmt}",
            "certificate": str(cert),
            "privateKey": str(key),
            "httpPort": http_port,
            "tlsPort": tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": eab_required,
        }
        if eab_required:
            config["externalAccountMACKeys"] = dict(eab_keys)
        cfg = tmpdir / "pebble.json"
        cfg.write_text(json.dumps({"pebble": config}, indent=2))
        proc = ManagedProcess(
            "pebble",
            [PEBBLE, "-config", str(cfg), "-dnsserver", dns.resolver],
            tmpdir / "pebble.log",
            env={"PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0", "PEBBLE_AUTHZREUSE": "0"},
            cwd=tmpdir,
        )
        target = PebbleTarget(
            name="pebble-eab" if eab_required else "pebble",
            directory_url=f"https://127.0.0.1:{port}/dir",
            ca_bundle=ca_pem,
            http_port=http_port,
            tls_port=tls_port,
            dns=dns,
            workdir=tmpdir,
            eab_required=eab_required,
            processes=[proc],
            management_url=f"https://127.0.0.1:{mgmt}",
            eab_keys=eab_keys,
        )
    except BaseException:
        dns.stop()
        raise
    try:
        ctx = _http(ca_pem)

        def ready() -> bool:
            d = httpx.get(target.directory_url, verify=ctx, timeout=2.0)
            return (
                d.status_code == 200
                and "newOrder" in d.json()
                and target._mgmt("/roots/0").status_code == 200
            )

        wait_until("pebble", ready, [proc, dns.process])
    except BaseException:
        target.stop()
        raise
    return target


# -- strongroom --------------------------------------------------------------------------------


@dataclass
class StrongroomTarget(AcmeTarget):
    addr: str = ""
    root_token: str = ""
    mount: str = "pki"

    def api(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.addr,
            verify=_http(self.ca_bundle),
            timeout=30.0,
            headers={"X-Vault-Token": self.root_token},
        )

    def new_eab(self) -> tuple[str, str]:
        with self.api() as c:
            r = c.post(f"/v1/{self.mount}/acme/new-eab", json={})
        if r.status_code != 200:
            raise EabUnsupported(f"{self.name}: POST {self.mount}/acme/new-eab: {r.status_code} {r.text}")
        data = r.json()["data"]
        return str(data["id"]), str(data["key"])

    def cert_status(self, serial: int) -> str:
        hexed = f"{serial:x}"
        hexed = ("0" + hexed) if len(hexed) % 2 else hexed
        colon = ":".join(hexed[i : i + 2] for i in range(0, len(hexed), 2))
        with self.api() as c:
            r = c.get(f"/v1/{self.mount}/cert/{colon}")
        if r.status_code != 200:
            raise TargetError(f"GET {self.mount}/cert/{colon}: {r.status_code} {r.text}")
        return "revoked" if int(r.json()["data"].get("revocation_time") or 0) > 0 else "valid"

    def issuing_roots(self) -> list[x509.Certificate]:
        with self.api() as c:
            r = c.get(f"/v1/{self.mount}/ca/pem")
        r.raise_for_status()
        return x509.load_pem_x509_certificates(r.content)


def _check(r: httpx.Response, what: str) -> httpx.Response:
    if r.status_code >= 300:
        raise TargetError(f"strongroom {what}: {r.status_code} {r.text}")
    return r


def start_strongroom(
    tmpdir: Path,
    eab_required: bool = False,
    storage: dict[str, Any] | None = None,
    workers: int = 2,
    name: str = "",
) -> StrongroomTarget:
    """A strongroom server over TLS with a ``pki`` mount whose ACME directory is enabled for loopback tests.

    The default is a SQLite node of two HTTP workers, so nonces and orders cross processes;
    ``storage`` / ``workers`` change that (the benchmark's rows). Server-side assumptions
    (what the ACME implementation must accept) are listed in ``tests/integration/acme/README.md``.
    """
    tmpdir.mkdir(parents=True, exist_ok=True)
    ca_pem, cert, key = make_tls_cert(tmpdir)
    dns = ChallTestSrv(tmpdir)
    try:
        port, http_port, tls_port = free_port(), free_port(), free_port()
        addr = f"https://127.0.0.1:{port}"
        config = {
            "storage": storage or {"sqlite": {"path": str(tmpdir / "strongroom.db")}},
            "listener": {
                "tcp": {"address": f"127.0.0.1:{port}", "tls_cert_file": str(cert), "tls_key_file": str(key)}
            },
            "disable_mlock": True,
            "workers": workers,
        }
        cfg = tmpdir / "server.json"
        cfg.write_text(json.dumps(config, indent=2))
        proc = ManagedProcess(
            "strongroom",
            [sys.executable, "-m", "strongroom", "server", f"-config={cfg}"],
            tmpdir / "server.log",
            env={"PYTHONUNBUFFERED": "1"},
            cwd=ROOT,
        )
        target = StrongroomTarget(
            name=name or ("strongroom-eab" if eab_required else "strongroom"),
            directory_url=f"{addr}/v1/pki/acme/directory",
            ca_bundle=ca_pem,
            http_port=http_port,
            tls_port=tls_port,
            dns=dns,
            workdir=tmpdir,
            eab_required=eab_required,
            processes=[proc],
            addr=addr,
        )
    except BaseException:
        dns.stop()
        raise
    try:
        ctx = _http(ca_pem)
        wait_until(
            "strongroom",
            lambda: httpx.get(addr + "/v1/sys/seal-status", verify=ctx, timeout=2.0).status_code == 200,
            [proc, dns.process],
        )
        with httpx.Client(base_url=addr, verify=ctx, timeout=30.0) as c:
            init = _check(c.put("/v1/sys/init", json={"secret_shares": 1, "secret_threshold": 1}), "init")
            body = init.json()
            _check(c.put("/v1/sys/unseal", json={"key": body["keys"][0]}), "unseal")
        target.root_token = body["root_token"]
        _configure_strongroom_pki(target)
    except BaseException:
        target.stop()
        raise
    return target


def _configure_strongroom_pki(target: StrongroomTarget) -> None:
    mount_url = f"{target.addr}/v1/{target.mount}"
    with target.api() as c:
        _check(
            c.post(
                f"/v1/sys/mounts/{target.mount}",
                json={
                    "type": "pki",
                    "config": {
                        "max_lease_ttl": "87600h",
                        # What Vault's ACME documentation asks of the mount; harmless if unused.
                        "allowed_response_headers": ["Last-Modified", "Location", "Replay-Nonce", "Link"],
                        "passthrough_request_headers": ["If-Modified-Since"],
                    },
                },
            ),
            "mount pki",
        )
        _check(
            c.post(
                f"/v1/{target.mount}/root/generate/internal",
                json={"common_name": "strongroom test root", "ttl": "87600h"},
            ),
            "root/generate/internal",
        )
        _check(
            c.post(f"/v1/{target.mount}/config/cluster", json={"path": mount_url, "aia_path": mount_url}),
            "config/cluster",
        )
        _check(
            c.post(
                f"/v1/{target.mount}/config/acme",
                json={
                    "enabled": True,
                    "dns_resolver": target.dns.resolver,
                    "challenge_http_port": target.http_port,
                    "challenge_tls_port": target.tls_port,
                    "challenge_permitted_ip_ranges": ["127.0.0.0/8"],
                    "eab_policy": "always-required" if target.eab_required else "not-required",
                },
            ),
            "config/acme",
        )
        directory = _check(c.get(target.directory_url), "GET acme/directory")
        if "newOrder" not in directory.json():
            raise TargetError(f"strongroom ACME directory lacks newOrder: {directory.text}")
