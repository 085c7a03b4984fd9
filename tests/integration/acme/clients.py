"""The real ACME clients as subprocesses: certbot (the venv's), lego and uacme (Debian's).

Every run has a time limit; a failed run raises :class:`ClientError` carrying the command, its
exit status, the tail of its output and of its own log file. Issued certificates come back as
:class:`Issued` and are checked by :func:`verify_issued` (names, key type, private key match,
``openssl verify`` up to the target's issuing root).
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tests.integration.acme.targets import AcmeTarget

CERTBOT = str(Path(sys.executable).parent / "certbot")
LEGO = "/usr/bin/lego"
UACME = "/usr/bin/uacme"
SYSTEM_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
CLIENT_TIMEOUT = 120.0


class ClientError(RuntimeError):
    """A client exited non-zero (or timed out)."""

    def __init__(self, message: str, run: ClientRun) -> None:
        super().__init__(message)
        self.run = run


@dataclass
class ClientRun:
    argv: list[str]
    returncode: int
    output: str
    log: Path | None = None

    def log_text(self) -> str:
        if self.log is None or not self.log.exists():
            return ""
        return self.log.read_text(errors="replace")

    def text(self) -> str:
        """Output and log together, for assertions on what the server answered."""
        return self.output + "\n" + self.log_text()

    def describe(self, chars: int = 4000) -> str:
        parts = [
            f"$ {shlex.join(self.argv)}",
            f"exit status {self.returncode}",
            "--- output:",
            self.output[-chars:],
        ]
        if self.log is not None:
            parts += [f"--- log {self.log}:", self.log_text()[-chars:]]
        return "\n".join(parts)


def run_client(
    argv: list[str],
    *,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = CLIENT_TIMEOUT,
    log: Path | None = None,
    check: bool = True,
) -> ClientRun:
    """Run one client command in its own session; kill the whole session after ``timeout``."""
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate(timeout=10)
        run = ClientRun(argv, -9, out.decode(errors="replace"), log)
        raise ClientError(f"timed out after {timeout:.0f}s\n{run.describe()}", run) from None
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    run = ClientRun(argv, proc.returncode, out.decode(errors="replace"), log)
    if check and run.returncode != 0:
        raise ClientError(f"client failed\n{run.describe()}", run)
    return run


def expect_failure(run: ClientRun, *needles: str) -> ClientRun:
    """Assert that a run failed and that its output/log mention one of ``needles`` (case-insensitive)."""
    if run.returncode == 0:
        raise AssertionError(f"expected the client to fail\n{run.describe()}")
    text = run.text().lower()
    if needles and not any(n.lower() in text for n in needles):
        raise AssertionError(f"client failed, but without any of {needles}\n{run.describe()}")
    return run


def unique_name(label: str) -> str:
    """A fresh DNS name under example.com (the challtestsrv answers 127.0.0.1 for every name)."""
    return f"{label}-{secrets.token_hex(3)}.example.com"


# -- certificates --------------------------------------------------------------------------------


@dataclass
class Issued:
    """Files a client wrote for one certificate."""

    names: list[str]
    fullchain: Path  # leaf first, then the chain the server sent
    key: Path

    def pem(self) -> bytes:
        """The leaf certificate, PEM."""
        return self.leaf().public_bytes(serialization.Encoding.PEM)

    def certs(self) -> list[x509.Certificate]:
        return x509.load_pem_x509_certificates(self.fullchain.read_bytes())

    def leaf(self) -> x509.Certificate:
        return self.certs()[0]

    @property
    def serial(self) -> int:
        return self.leaf().serial_number


def key_spec(public_key: object) -> str:
    """``rsa2048``, ``ec256`` / ``ec384``... for a public key."""
    if isinstance(public_key, rsa.RSAPublicKey):
        return f"rsa{public_key.key_size}"
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return f"ec{public_key.curve.key_size}"
    return type(public_key).__name__


def verify_issued(issued: Issued, target: AcmeTarget, *, key: str, workdir: Path) -> x509.Certificate:
    """The certificate names exactly ``issued.names``, has a ``key`` key (e.g. ``ec256``, ``rsa2048``)
    matching the private key file, and ``openssl verify`` chains it to ``target``'s issuing root."""
    certs = issued.certs()
    assert certs, f"no certificate in {issued.fullchain}"
    leaf = certs[0]
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sorted(san.get_values_for_type(x509.DNSName)) == sorted(issued.names), (
        f"SAN {san.get_values_for_type(x509.DNSName)} != requested {issued.names}"
    )
    assert key_spec(leaf.public_key()) == key, f"certificate key {key_spec(leaf.public_key())}, wanted {key}"
    # openssl rather than cryptography: GnuTLS (uacme) writes EC private values without leading zeros,
    # which cryptography refuses to load
    pub = subprocess.run(
        ["openssl", "pkey", "-in", str(issued.key), "-pubout", "-outform", "DER"],
        capture_output=True,
        timeout=30,
    )
    assert pub.returncode == 0, f"openssl pkey {issued.key}: {pub.stderr.decode(errors='replace')}"
    spki = leaf.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert pub.stdout == spki, f"{issued.key} does not match the certificate"
    workdir.mkdir(parents=True, exist_ok=True)
    roots = target.issuing_roots_pem(workdir / "issuing-roots.pem")
    leaf_file = workdir / "leaf.pem"
    leaf_file.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    argv = ["openssl", "verify", "-purpose", "sslserver", "-CAfile", str(roots)]
    if len(certs) > 1:
        chain = workdir / "untrusted.pem"
        chain.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs[1:]))
        argv += ["-untrusted", str(chain)]
    r = subprocess.run([*argv, str(leaf_file)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, f"openssl verify failed for {issued.fullchain}:\n{r.stdout}{r.stderr}"
    return leaf


# -- certbot -----------------------------------------------------------------------------------


CERTBOT_KEYS = {
    "rsa2048": ["--key-type", "rsa", "--rsa-key-size", "2048"],
    "ec256": ["--key-type", "ecdsa", "--elliptic-curve", "secp256r1"],
    "ec384": ["--key-type", "ecdsa", "--elliptic-curve", "secp384r1"],
}


class Certbot:
    """certbot with its config, work and logs directories under ``workdir``."""

    def __init__(self, target: AcmeTarget, workdir: Path) -> None:
        self.target = target
        self.dir = workdir
        self.config_dir = workdir / "config"
        self.log = workdir / "logs" / "letsencrypt.log"
        workdir.mkdir(parents=True, exist_ok=True)

    def run(self, *args: str, check: bool = True, timeout: float = CLIENT_TIMEOUT) -> ClientRun:
        argv = [
            CERTBOT,
            *args,
            "--non-interactive",
            "--server",
            self.target.directory_url,
            "--config-dir",
            str(self.config_dir),
            "--work-dir",
            str(self.dir / "work"),
            "--logs-dir",
            str(self.dir / "logs"),
        ]
        # certbot's log is rotated per run: the tail of a failure is always in letsencrypt.log
        return run_client(
            argv,
            env={"REQUESTS_CA_BUNDLE": str(self.target.ca_bundle)},
            log=self.log,
            check=check,
            timeout=timeout,
        )

    def _http01(self) -> list[str]:
        return [
            "--standalone",
            "--preferred-challenges",
            "http",
            "--http-01-port",
            str(self.target.http_port),
            "--http-01-address",
            "127.0.0.1",
        ]

    @staticmethod
    def _account(email: str | None, eab: tuple[str, str] | None) -> list[str]:
        args = ["--agree-tos"]
        args += ["-m", email] if email else ["--register-unsafely-without-email"]
        if eab is not None:
            args += ["--eab-kid", eab[0], "--eab-hmac-key", eab[1]]
        return args

    def register(
        self, email: str | None = None, eab: tuple[str, str] | None = None, check: bool = True
    ) -> ClientRun:
        return self.run("register", *self._account(email, eab), check=check)

    def certonly(
        self,
        names: Sequence[str],
        *,
        key: str = "ec256",
        email: str | None = None,
        eab: tuple[str, str] | None = None,
        check: bool = True,
    ) -> ClientRun:
        domains = [a for n in names for a in ("-d", n)]
        return self.run(
            "certonly",
            *self._http01(),
            *CERTBOT_KEYS[key],
            *self._account(email, eab),
            "--cert-name",
            names[0],
            *domains,
            check=check,
        )

    def issued(self, names: Sequence[str]) -> Issued:
        live = self.config_dir / "live" / names[0]
        return Issued(list(names), live / "fullchain.pem", live / "privkey.pem")

    def renew(self, force: bool = True) -> ClientRun:
        args = ["renew", "--no-random-sleep-on-renew", *self._http01()[1:]]
        if force:
            args.append("--force-renewal")
        return self.run(*args)

    def update_account(self, email: str) -> ClientRun:
        return self.run("update_account", "-m", email)

    def show_account(self, check: bool = True) -> ClientRun:
        return self.run("show_account", check=check)

    def revoke(self, cert_name: str, reason: str = "keycompromise") -> ClientRun:
        return self.run("revoke", "--cert-name", cert_name, "--reason", reason, "--no-delete-after-revoke")

    def unregister(self) -> ClientRun:
        return self.run("unregister")

    @property
    def accounts_dir(self) -> Path:
        return self.config_dir / "accounts"


# -- lego --------------------------------------------------------------------------------------


LEGO_DNS_HOOK = """#!{python}
# lego's "exec" DNS provider: argv = present|cleanup FQDN VALUE; the TXT goes to pebble-challtestsrv.
import json, sys, urllib.request
with open({log!r}, "a") as log:
    log.write(" ".join(sys.argv[1:]) + "\\n")
if len(sys.argv) >= 3 and sys.argv[1] in ("present", "cleanup"):
    path = "/set-txt" if sys.argv[1] == "present" else "/clear-txt"
    body = {{"host": sys.argv[2]}}
    if sys.argv[1] == "present":
        body["value"] = sys.argv[3]
    req = urllib.request.Request({url!r} + path, data=json.dumps(body).encode(), method="POST")
    with urllib.request.urlopen(req, timeout=10) as r:
        r.read()
"""


class Lego:
    """lego with its account and certificates under ``workdir``."""

    def __init__(self, target: AcmeTarget, workdir: Path, email: str = "lego@example.com") -> None:
        self.target = target
        self.dir = workdir
        self.email = email
        workdir.mkdir(parents=True, exist_ok=True)
        self.dns_log = workdir / "dns-hook.log"

    def run(
        self,
        *args: str,
        eab: tuple[str, str] | None = None,
        key: str = "ec256",
        env: dict[str, str] | None = None,
        check: bool = True,
    ) -> ClientRun:
        argv = [
            LEGO,
            "--server",
            self.target.directory_url,
            "--accept-tos",
            "--email",
            self.email,
            "--path",
            str(self.dir / "lego"),
            "--key-type",
            key,
        ]
        if eab is not None:
            argv += ["--eab", "--kid", eab[0], "--hmac", eab[1]]
        argv += list(args)
        return run_client(
            argv, env={"LEGO_CA_CERTIFICATES": str(self.target.ca_bundle), **(env or {})}, check=check
        )

    @staticmethod
    def _domains(names: Sequence[str]) -> list[str]:
        return [a for n in names for a in ("--domains", n)]

    def issue_http01(
        self,
        names: Sequence[str],
        *,
        key: str = "ec256",
        eab: tuple[str, str] | None = None,
        check: bool = True,
    ) -> ClientRun:
        return self.run(
            "--http",
            "--http.port",
            f"127.0.0.1:{self.target.http_port}",
            *self._domains(names),
            "run",
            eab=eab,
            key=key,
            check=check,
        )

    def issue_tls_alpn01(self, names: Sequence[str], *, key: str = "ec256") -> ClientRun:
        return self.run(
            "--tls", "--tls.port", f"127.0.0.1:{self.target.tls_port}", *self._domains(names), "run", key=key
        )

    def issue_dns01(self, names: Sequence[str], *, key: str = "ec256") -> ClientRun:
        hook = self.dir / "dns-hook.py"
        hook.write_text(
            LEGO_DNS_HOOK.format(
                python=sys.executable, log=str(self.dns_log), url=self.target.dns.management_url
            )
        )
        hook.chmod(0o755)
        # exec is a "sequential" provider: lego waits EXEC_SEQUENCE_INTERVAL (60 s) between names
        env = {
            "EXEC_PATH": str(hook),
            "EXEC_PROPAGATION_TIMEOUT": "30",
            "EXEC_POLLING_INTERVAL": "1",
            "EXEC_SEQUENCE_INTERVAL": "1",
        }
        return self.run(
            "--dns",
            "exec",
            "--dns.resolvers",
            self.target.dns.resolver,
            "--dns.disable-cp",
            *self._domains(names),
            "run",
            key=key,
            env=env,
        )

    def revoke(self, names: Sequence[str], reason: int = 1) -> ClientRun:
        return self.run(*self._domains(names), "revoke", "--keep", "--reason", str(reason))

    def issued(self, names: Sequence[str]) -> Issued:
        stem = self.dir / "lego" / "certificates" / names[0].replace("*", "_")
        return Issued(list(names), stem.with_name(stem.name + ".crt"), stem.with_name(stem.name + ".key"))


# -- uacme -------------------------------------------------------------------------------------


UACME_HOOK = """#!/bin/sh
# uacme challenge hook: METHOD TYPE IDENT TOKEN AUTH; only http-01, served from the webroot.
echo "$*" >> {log}
dir={webroot}/.well-known/acme-challenge
case "$1:$2" in
  begin:http-01) mkdir -p "$dir" && printf '%s' "$5" > "$dir/$4" ;;
  done:http-01|failed:http-01) rm -f "$dir/$4" ;;
  *) exit 1 ;;
esac
"""


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def serve_webroot(webroot: Path, port: int) -> Iterator[None]:
    """Serve ``webroot`` over plain HTTP on 127.0.0.1:``port`` (the http-01 validator's port)."""
    handler = functools.partial(_QuietHandler, directory=str(webroot))
    http.server.ThreadingHTTPServer.allow_reuse_address = True
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


class Uacme:
    """uacme with its confdir under ``workdir``; runs in a mount namespace where the system CA bundle
    is replaced by one that also trusts the target (uacme has no option for a CA file)."""

    def __init__(self, target: AcmeTarget, workdir: Path, confdir: Path | None = None) -> None:
        self.target = target
        self.dir = workdir
        self.confdir = confdir or workdir / "uacme"
        self.webroot = workdir / "webroot"
        self.hook_log = workdir / "hook.log"
        workdir.mkdir(parents=True, exist_ok=True)
        self.webroot.mkdir(exist_ok=True)
        self.bundle = workdir / "ca-bundle.pem"
        system = SYSTEM_CA_BUNDLE.read_bytes() if SYSTEM_CA_BUNDLE.exists() else b""
        self.bundle.write_bytes(system + b"\n" + target.ca_bundle.read_bytes())
        self.hook = workdir / "hook.sh"
        self.hook.write_text(
            UACME_HOOK.format(log=shlex.quote(str(self.hook_log)), webroot=shlex.quote(str(self.webroot)))
        )
        self.hook.chmod(0o755)

    def run(self, *args: str, check: bool = True) -> ClientRun:
        inner = [UACME, "-v", "-a", self.target.directory_url, "-c", str(self.confdir), "-o", *args]
        argv = [
            "unshare",
            "--mount",
            "--",
            "sh",
            "-c",
            'mount --bind "$0" /etc/ssl/certs/ca-certificates.crt && exec "$@"',
            str(self.bundle),
            *inner,
        ]
        return run_client(argv, check=check)

    def new(
        self, email: str | None = None, eab: tuple[str, str] | None = None, check: bool = True
    ) -> ClientRun:
        args = ["-y"]
        if eab is not None:
            args += ["-e", f"{eab[0]}:{eab[1]}"]
        return self.run(*args, "new", *([email] if email else []), check=check)

    def issue(self, names: Sequence[str], *, key: str = "ec256", force: bool = False) -> ClientRun:
        kind, bits = ("RSA", key[3:]) if key.startswith("rsa") else ("EC", key[2:])
        args = ["-h", str(self.hook), "-t", kind, "-b", bits, *(["-f"] if force else []), "issue", *names]
        with serve_webroot(self.webroot, self.target.http_port):
            return self.run(*args)

    def newkey(self, key: str = "ec256") -> ClientRun:
        kind, bits = ("RSA", key[3:]) if key.startswith("rsa") else ("EC", key[2:])
        return self.run("-t", kind, "-b", bits, "newkey")

    def update(self, email: str, check: bool = True) -> ClientRun:
        return self.run("-n", "update", email, check=check)

    @property
    def account_key(self) -> Path:
        return self.confdir / "private" / "key.pem"

    def issued(self, names: Sequence[str]) -> Issued:
        ident = names[0].removeprefix("*.")
        return Issued(
            list(names), self.confdir / ident / "cert.pem", self.confdir / "private" / ident / "key.pem"
        )


def copy_tree(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, symlinks=True)
    return dst


# -- the acme library (certbot's), for requests the CLI clients refuse to send ---------------------


class AcmeProblem(RuntimeError):
    """The server answered with an RFC 7807 problem document."""

    def __init__(self, typ: str, detail: str) -> None:
        super().__init__(f"{typ}: {detail}")
        self.typ = typ
        self.detail = detail


def acme_library_new_account(
    target: AcmeTarget, *, eab: tuple[str, str] | None = None, email: str | None = None
) -> str:
    """newAccount through the ``acme`` library with a fresh P-256 key; returns the account URL.

    certbot, lego and uacme all stop on the directory's ``externalAccountRequired`` before asking
    the server, so this is how a test sees the *server* refuse an account without (valid) EAB.
    Raises :class:`AcmeProblem` with the problem type the server sent.
    """
    from acme import client, errors, messages
    from josepy.jwa import ES256
    from josepy.jwk import JWKEC

    key = JWKEC(key=ec.generate_private_key(ec.SECP256R1()))
    net = client.ClientNetwork(
        key,
        alg=ES256,
        verify_ssl=str(target.ca_bundle),  # type: ignore[arg-type]
        user_agent="strongroom-acme-tests",
        timeout=30,
    )
    directory = client.ClientV2.get_directory(target.directory_url, net)
    acme = client.ClientV2(directory, net)
    binding = None
    if eab is not None:
        binding = messages.ExternalAccountBinding.from_data(
            account_public_key=key.public_key(), kid=eab[0], hmac_key=eab[1], directory=directory
        )
    reg = messages.NewRegistration.from_data(
        email=email, terms_of_service_agreed=True, external_account_binding=binding
    )
    try:
        return str(acme.new_account(reg).uri)
    except messages.Error as err:
        raise AcmeProblem(str(err.typ), str(err.detail)) from err
    except errors.Error as err:
        raise AcmeProblem(type(err).__name__, str(err)) from err
