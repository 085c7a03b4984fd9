"""PKI engine throughput, latency, OCSP and CRL against cfssl and the crypto-only ceiling, in one run.

Starts a real strongroom server (SQLite storage, plain HTTP on 127.0.0.1, one
worker per CPU) with two PKI mounts (an EC P-256 root and an RSA-2048 root made
by ``root/generate/internal``) and two ``cfssl serve`` peers with CAs of the
same key types, then loads both with wrk from another process (64
connections, POST bodies from a Lua script). Every strongroom request carries
a non-root token whose policy allows exactly the measured path. Before each
measurement one request of exactly that shape must succeed (cfssl: ``"success":
true``), and wrk's non-2xx count must stay 0 (a warning is printed otherwise).

Measured (issue 3's goals):

1. ``sign/<role>``, EC P-256 CSR, EC CA, ``no_store`` true / false vs cfssl ``sign``
2. ``issue/<role>``, EC P-256 keys made by the server vs cfssl ``newcert``
3. ``sign/<role>``, RSA-2048 CSR, RSA-2048 CA vs cfssl ``sign`` with an RSA-2048 CA
4. ``issue/<role>`` with RSA-2048 keys: latency at a fixed 10 requests/s (bench/paced.py)
5. OCSP responses/s (POST ``application/ocsp-request`` for a known, revoked serial)
6. a CRL of 1,000,000 entries through the revocation storage (records in SQLite behind the
   barrier, ``revocation.rebuild``): build time and peak RSS; the builder alone for context
   (bench/pki_crl.py, fresh processes; writing the million records first takes ~70 s)
7. the crypto-only ceiling: ``cryptography`` alone doing each request's crypto

Benchmarks print figures; they assert nothing about timings.

    .venv/bin/python bench/pki.py [--seconds 10] [--warmup 2] [--workers N] [--crl-entries 1000000]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cfssl_peer import CfsslPeer, newcert_body
from common import ROOT, WrkResult, lua_request, wrk
from kv import start_strongroom

BENCH = Path(__file__).resolve().parent
CN = "leaf.example.com"
CPUS = len(os.sched_getaffinity(0))


def note(text: str) -> None:
    """Progress, on stderr: stdout carries the report."""
    print(f"... {text}", file=sys.stderr, flush=True)


# -- request material ---------------------------------------------------------------------------


def make_csr(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> str:
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CN)]))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(CN)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def lua_bytes(data: bytes) -> str:
    """A Lua string literal holding arbitrary bytes (decimal escapes)."""
    return '"' + "".join(f"\\{b}" for b in data) + '"'


# -- crypto-only ceiling ------------------------------------------------------------------------


def self_signed_ca(key: Any, name: str) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )


def leaf(public_key: Any, ca: x509.Certificate, ca_key: Any) -> x509.Certificate:
    """A leaf with the extensions a role adds (KU, EKU, BC, SKI, AKI, SAN), 24 h."""
    now = dt.datetime.now(dt.UTC)
    aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
        ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    )
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CN)]))
        .issuer_name(ca.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(seconds=30))
        .not_valid_after(now + dt.timedelta(hours=24))
        .add_extension(
            x509.KeyUsage(True, False, True, False, True, False, False, False, False), critical=True
        )
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(aki, critical=False)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(CN)]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )


def per_op_us(fn: Callable[[], object], seconds: float = 0.4) -> float:
    """Mean µs per call, over at least ``seconds`` of calls (after one untimed call)."""
    fn()
    count, start = 0, time.perf_counter()
    while True:
        for _ in range(20):
            fn()
        count += 20
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return 1e6 * elapsed / count


@dataclass
class Ceiling:
    ops_us: dict[str, float]  # one operation, one core
    requests_us: dict[str, float]  # the crypto of one request of each scenario
    rsa_keygen_median_ms: float

    def per_s(self, scenario: str) -> float:
        """The 2-process (CPU-count) ceiling: one core's rate times the CPUs."""
        return 1e6 / self.requests_us[scenario] * CPUS


def crypto_ceiling(csr_ec: str, csr_rsa: str, rsa_keys: int) -> Ceiling:
    ec_key = ec.generate_private_key(ec.SECP256R1())
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_ca, rsa_ca = self_signed_ca(ec_key, "ceiling EC CA"), self_signed_ca(rsa_key, "ceiling RSA CA")
    leaf_key = ec.generate_private_key(ec.SECP256R1()).public_key()

    def load_csr(pem: str) -> Callable[[], object]:
        data = pem.encode()

        def run() -> object:
            csr = x509.load_pem_x509_csr(data)
            if not csr.is_signature_valid:
                raise RuntimeError("CSR signature does not verify")
            return csr.public_key()

        return run

    cert = leaf(leaf_key, ec_ca, ec_key)
    ocsp_req = (
        ocsp.OCSPRequestBuilder()
        .add_certificate(cert, ec_ca, hashes.SHA1())
        .build()
        .public_bytes(serialization.Encoding.DER)
    )

    def ocsp_response(ca: x509.Certificate, key: Any) -> Callable[[], object]:
        def run() -> object:
            req = ocsp.load_der_ocsp_request(ocsp_req)
            now = dt.datetime.now(dt.UTC).replace(microsecond=0)
            builder = (
                ocsp.OCSPResponseBuilder()
                .add_response_by_hash(
                    issuer_name_hash=req.issuer_name_hash,
                    issuer_key_hash=req.issuer_key_hash,
                    serial_number=req.serial_number,
                    algorithm=req.hash_algorithm,
                    cert_status=ocsp.OCSPCertStatus.REVOKED,
                    this_update=now,
                    next_update=now + dt.timedelta(hours=12),
                    revocation_time=now,
                    revocation_reason=None,
                )
                .responder_id(ocsp.OCSPResponderEncoding.HASH, ca)
            )
            return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)

        return run

    def pem_out(c: x509.Certificate) -> Callable[[], object]:
        return lambda: c.public_bytes(serialization.Encoding.PEM)

    key_pem = ec.generate_private_key(ec.SECP256R1())
    ops = {
        "CSR load + verify (EC P-256)": per_op_us(load_csr(csr_ec)),
        "CSR load + verify (RSA-2048)": per_op_us(load_csr(csr_rsa)),
        "leaf build + sign, EC CA": per_op_us(lambda: leaf(leaf_key, ec_ca, ec_key)),
        "leaf build + sign, RSA-2048 CA": per_op_us(lambda: leaf(leaf_key, rsa_ca, rsa_key)),
        "certificate to PEM": per_op_us(pem_out(cert)),
        "EC P-256 key generation": per_op_us(lambda: ec.generate_private_key(ec.SECP256R1())),
        "EC private key to PEM": per_op_us(
            lambda: key_pem.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.TraditionalOpenSSL,
                serialization.NoEncryption(),
            )
        ),
        "OCSP request parse + response, EC CA": per_op_us(ocsp_response(ec_ca, ec_key)),
        "OCSP request parse + response, RSA CA": per_op_us(ocsp_response(rsa_ca, rsa_key)),
    }
    times = []
    for _ in range(rsa_keys):
        start = time.perf_counter()
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        times.append(1e6 * (time.perf_counter() - start))
    ops["RSA-2048 key generation (mean)"] = statistics.fmean(times)
    pem = ops["certificate to PEM"]
    requests = {
        "sign_ec": ops["CSR load + verify (EC P-256)"] + ops["leaf build + sign, EC CA"] + pem,
        "issue_ec": ops["EC P-256 key generation"]
        + ops["leaf build + sign, EC CA"]
        + pem
        + ops["EC private key to PEM"],
        "sign_rsa": ops["CSR load + verify (RSA-2048)"] + ops["leaf build + sign, RSA-2048 CA"] + pem,
        "issue_rsa": ops["RSA-2048 key generation (mean)"] + ops["leaf build + sign, RSA-2048 CA"] + pem,
        "ocsp": ops["OCSP request parse + response, EC CA"],
    }
    return Ceiling(ops, requests, statistics.median(times) / 1000)


# -- strongroom set-up --------------------------------------------------------------------------


class Api:
    def __init__(self, addr: str, token: str) -> None:
        self.addr, self.token = addr, token

    def __call__(self, method: str, path: str, body: Any = None, token: str | None = None) -> Any:
        r = httpx.request(
            method,
            f"{self.addr}/v1/{path}",
            json=body,
            headers={"X-Vault-Token": token or self.token},
            timeout=60,
        )
        if r.status_code >= 300:
            raise RuntimeError(f"{method} {path}: {r.status_code} {r.text[:300]}")
        return r.json() if r.content else {}

    def token_for(self, path: str) -> str:
        """A non-root token whose only policy allows ``update`` on exactly ``path``."""
        name = "bench-" + path.replace("/", "-")
        policy = f'path "{path}" {{ capabilities = ["update"] }}'
        self("PUT", f"sys/policies/acl/{name}", {"policy": policy})
        made = self("POST", "auth/token/create", {"policies": [name], "no_default_policy": True})
        return str(made["auth"]["client_token"])


def init_strongroom(addr: str) -> Api:
    init = httpx.put(addr + "/v1/sys/init", json={"secret_shares": 1, "secret_threshold": 1}).json()
    httpx.put(addr + "/v1/sys/unseal", json={"key": init["keys"][0]}).raise_for_status()
    return Api(addr, init["root_token"])


def setup_pki(api: Api) -> dict[str, x509.Certificate]:
    cas = {}
    for mount, key_type, bits in (("pki-ec", "ec", 256), ("pki-rsa", "rsa", 2048)):
        api("POST", f"sys/mounts/{mount}", {"type": "pki", "config": {"max_lease_ttl": "87600h"}})
        root = api(
            "POST",
            f"{mount}/root/generate/internal",
            {"common_name": f"strongroom bench {key_type} root", "key_type": key_type, "key_bits": bits},
        )
        cas[mount] = x509.load_pem_x509_certificate(root["data"]["certificate"].encode())
    role = {
        "allowed_domains": ["example.com"],
        "allow_subdomains": True,
        "ttl": "24h",
        "max_ttl": "24h",
    }
    api("POST", "pki-ec/roles/ec-nostore", {**role, "key_type": "ec", "key_bits": 256, "no_store": True})
    api("POST", "pki-ec/roles/ec-store", {**role, "key_type": "ec", "key_bits": 256, "no_store": False})
    api("POST", "pki-rsa/roles/rsa-nostore", {**role, "key_type": "rsa", "key_bits": 2048, "no_store": True})
    return cas


def check_issued(data: dict[str, Any], ca: x509.Certificate, with_key: bool) -> None:
    cert = x509.load_pem_x509_certificate(data["certificate"].encode())
    cert.verify_directly_issued_by(ca)
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    if cn != CN or with_key != ("private_key" in data):
        raise RuntimeError(f"unexpected certificate: CN {cn!r}, keys {sorted(data)}")


# -- runs ---------------------------------------------------------------------------------------


@dataclass
class Run:
    name: str
    results: list[WrkResult]  # one per round

    @property
    def median(self) -> WrkResult:
        """The round with the median requests/s (the middle one of an odd count)."""
        ordered = sorted(self.results, key=lambda r: r.requests_per_s)
        return ordered[(len(ordered) - 1) // 2]


def measure(name: str, url: str, lua: str, args: argparse.Namespace, run: Run) -> None:
    if args.warmup > 0:
        wrk(url, connections=args.connections, seconds=args.warmup, lua=lua)
    note(f"{name}: {args.seconds} s of wrk")
    result = wrk(url, connections=args.connections, seconds=args.seconds, lua=lua)
    note(f"    {result.requests_per_s:,.0f} req/s, non-2xx {result.non_2xx}, socket errors {result.errors}")
    run.results.append(result)


def json_lua(headers: dict[str, str], body: Any) -> str:
    return lua_request("POST", {**headers, "Content-Type": "application/json"}, json.dumps(body))


def paced(
    url: str, headers: dict[str, str], body: Any, rate: float, seconds: float, tmp: Path
) -> dict[str, Any]:
    body_file = tmp / "paced-body.json"
    body_file.write_text(json.dumps(body))
    cmd = [sys.executable, str(BENCH / "paced.py"), url, f"--rate={rate}", f"--seconds={seconds}"]
    cmd += [f"--body-file={body_file}", "--header=Content-Type: application/json"]
    cmd += [f"--header={k}: {v}" for k, v in headers.items()]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return dict(json.loads(out))


def crl_child(mode: str, count: int) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, str(BENCH / "pki_crl.py"), mode, str(count)],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    ).stdout
    return dict(json.loads(out))


# -- report -------------------------------------------------------------------------------------


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else "yes" if ok else "NO (missed)"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10, help="wrk duration of each measured run")
    parser.add_argument("--warmup", type=int, default=2, help="wrk warm-up before each run (not counted)")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="repeat the wrk runs and report the median; a round takes ~100 s",
    )
    parser.add_argument("--workers", type=int, default=CPUS)
    parser.add_argument("--rate", type=float, default=10.0, help="requests/s of the paced RSA issue run")
    parser.add_argument("--paced-seconds", type=float, default=15.0)
    parser.add_argument("--crl-entries", type=int, default=1_000_000)
    parser.add_argument("--crl-storage-entries", type=int, default=1_000_000)
    args = parser.parse_args()
    started = time.monotonic()
    load_before = os.getloadavg()[0]

    csr_ec = make_csr(ec.generate_private_key(ec.SECP256R1()))
    csr_rsa = make_csr(rsa.generate_private_key(public_exponent=65537, key_size=2048))

    note("crypto-only ceiling")
    ceiling = crypto_ceiling(csr_ec, csr_rsa, rsa_keys=40)
    note(f"CRL of {args.crl_entries:,} entries (engine builder, fresh process)")
    crl_direct = crl_child("direct", args.crl_entries)
    note(
        f"CRL through revocation storage, {args.crl_storage_entries:,} records (fresh process; set-up writes first)"
    )
    crl_store = crl_child("storage", args.crl_storage_entries)

    rsa_paced: dict[str, Any]
    cfssl_rsa_paced: dict[str, Any]
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        peers = {
            "ec": CfsslPeer(tmp / "cfssl-ec", "ecdsa", 256),
            "rsa": CfsslPeer(tmp / "cfssl-rsa", "rsa", 2048),
        }
        (tmp / "strongroom").mkdir()
        proc, addr = start_strongroom(tmp / "strongroom", args.workers)
        try:
            for peer in peers.values():
                peer.start()
            peers["ec"].check(csr_ec, CN, "ecdsa", 256)
            peers["rsa"].check(csr_rsa, CN, "rsa", 2048)
            api = init_strongroom(addr)
            cas = setup_pki(api)

            # one scenario = (strongroom path, body, CA, returns a key) and its cfssl twin
            scenarios = {
                "sign_ec": ("pki-ec/sign/ec-nostore", {"csr": csr_ec}, "pki-ec", False),
                "sign_ec_store": ("pki-ec/sign/ec-store", {"csr": csr_ec}, "pki-ec", False),
                "issue_ec": ("pki-ec/issue/ec-nostore", {"common_name": CN}, "pki-ec", True),
                "sign_rsa": ("pki-rsa/sign/rsa-nostore", {"csr": csr_rsa}, "pki-rsa", False),
                "issue_rsa": ("pki-rsa/issue/rsa-nostore", {"common_name": CN}, "pki-rsa", True),
            }
            tokens = {}
            for key, (path, body, mount, with_key) in scenarios.items():
                tokens[key] = api.token_for(path)
                check_issued(api("POST", path, body, token=tokens[key])["data"], cas[mount], with_key)

            # OCSP: a certificate issued and stored by the engine, then revoked; a prebuilt request
            issued = api("POST", "pki-ec/issue/ec-store", {"common_name": CN})["data"]
            api("POST", "pki-ec/revoke", {"serial_number": issued["serial_number"]})
            revoked = x509.load_pem_x509_certificate(issued["certificate"].encode())
            ocsp_der = (
                ocsp.OCSPRequestBuilder()
                .add_certificate(revoked, cas["pki-ec"], hashes.SHA1())
                .build()
                .public_bytes(serialization.Encoding.DER)
            )
            ocsp_token = api.token_for("pki-ec/ocsp")
            ocsp_headers = {"X-Vault-Token": ocsp_token, "Content-Type": "application/ocsp-request"}
            answer = httpx.post(addr + "/v1/pki-ec/ocsp", content=ocsp_der, headers=ocsp_headers)
            parsed = ocsp.load_der_ocsp_response(answer.content)
            if (
                answer.status_code != 200
                or parsed.response_status != ocsp.OCSPResponseStatus.SUCCESSFUL
                or parsed.certificate_status != ocsp.OCSPCertStatus.REVOKED
                or parsed.serial_number != revoked.serial_number
            ):
                raise RuntimeError(f"OCSP check failed: HTTP {answer.status_code}")

            def sr(key: str) -> tuple[str, str]:
                path, body, _, _ = scenarios[key]
                return f"{addr}/v1/{path}", json_lua({"X-Vault-Token": tokens[key]}, body)

            def cf(peer: str, endpoint: str, body: Any) -> tuple[str, str]:
                return f"{peers[peer].url}/api/v1/cfssl/{endpoint}", json_lua({}, body)

            plan = [
                ("sign_ec", "strongroom sign/ EC CSR, EC CA, no_store", sr("sign_ec")),
                ("cf_sign_ec", "cfssl sign, EC CA", cf("ec", "sign", {"certificate_request": csr_ec})),
                ("sign_ec_store", "strongroom sign/ EC, EC CA, stored", sr("sign_ec_store")),
                ("issue_ec", "strongroom issue/ EC P-256, no_store", sr("issue_ec")),
                (
                    "cf_issue_ec",
                    "cfssl newcert EC P-256",
                    cf("ec", "newcert", newcert_body(CN, "ecdsa", 256)),
                ),
                ("sign_rsa", "strongroom sign/ RSA CSR, RSA CA", sr("sign_rsa")),
                (
                    "cf_sign_rsa",
                    "cfssl sign, RSA CA",
                    cf("rsa", "sign", {"certificate_request": csr_rsa}),
                ),
            ]
            ocsp_lua = lua_request("POST", ocsp_headers) + f"wrk.body = {lua_bytes(ocsp_der)}\n"
            plan.append(("ocsp", "strongroom OCSP (POST, revoked)", (addr + "/v1/pki-ec/ocsp", ocsp_lua)))
            by_key = {key: Run(name, []) for key, name, _ in plan}
            runs = list(by_key.values())
            for round_ in range(args.rounds):  # rounds interleave the peers: drift hits both alike
                if args.rounds > 1:
                    note(f"round {round_ + 1} of {args.rounds}")
                for key, name, (url, lua) in plan:
                    measure(name, url, lua, args, by_key[key])
            results = {key: run.median for key, run in by_key.items()}

            note(f"issue/ RSA-2048 at {args.rate:g}/s for {args.paced_seconds:g} s (paced)")
            rsa_paced = paced(
                f"{addr}/v1/pki-rsa/issue/rsa-nostore",
                {"X-Vault-Token": tokens["issue_rsa"]},
                {"common_name": CN},
                args.rate,
                args.paced_seconds,
                tmp,
            )
            note(
                f"cfssl newcert RSA-2048 at {args.rate:g}/s for {args.paced_seconds:g} s (paced, for context)"
            )
            cfssl_rsa_paced = paced(
                f"{peers['rsa'].url}/api/v1/cfssl/newcert",
                {},
                newcert_body(CN, "rsa", 2048),
                args.rate,
                args.paced_seconds,
                tmp,
            )
        finally:
            proc.terminate()
            proc.wait(timeout=30)
            for peer in peers.values():
                peer.stop()

    # -- the report ---------------------------------------------------------------------------
    cfssl_version = subprocess.run(["cfssl", "version"], capture_output=True, text=True).stdout.split()[1]
    print()
    print(
        f"strongroom PKI vs cfssl {cfssl_version}, one run on this machine: {CPUS} CPUs, strongroom "
        f"{args.workers} workers (SQLite), wrk 2 threads, {args.connections} connections, "
        f"{args.seconds} s per run after {args.warmup} s warm-up; non-root tokens"
    )
    print()
    print("Throughput (wrk)")
    for run in runs:
        r = run.median
        failed = sum(x.non_2xx + x.errors for x in run.results)
        spread = ""
        if len(run.results) > 1:
            rates = sorted(x.requests_per_s for x in run.results)
            spread = f"   (rounds {rates[0]:,.0f}..{rates[-1]:,.0f})"
        print(
            f"  {run.name:<42} {r.requests_per_s:8,.0f} req/s   p50 {r.p50_ms:7.2f} ms   p99 {r.p99_ms:7.2f} ms"
            f"   non-2xx/errors {failed}{spread}{'   <- failures!' if failed else ''}"
        )
    print()
    print(
        f"Latency at a fixed {args.rate:g} requests/s, {args.paced_seconds:g} s (bench/paced.py, open loop)"
    )
    for name, p in (("strongroom issue/ RSA-2048", rsa_paced), ("cfssl newcert RSA-2048", cfssl_rsa_paced)):
        print(
            f"  {name:<34} p50 {p['p50_ms']:7.1f} ms   p90 {p['p90_ms']:7.1f} ms   p99 {p['p99_ms']:7.1f} ms"
            f"   max {p['max_ms']:7.1f} ms   ({p['requests']} requests, {p['achieved_rate']:.1f}/s, "
            f"non-2xx {p['non_2xx']})"
        )
    print()
    print("Crypto-only ceiling (cryptography alone, this process, one core)")
    for name, us in ceiling.ops_us.items():
        print(f"  {name:<40} {us:10.1f} µs   {1e6 / us:10.0f}/s per core")
    print(f"  {'RSA-2048 key generation (median)':<40} {1000 * ceiling.rsa_keygen_median_ms:10.1f} µs")
    print()
    print("CRL")
    d = crl_direct
    print(
        f"  engine builder (crl.build_crl), {d['entries']:,} entries, EC CA: {d['total_s']:.2f} s "
        f"({d['entries_s']:.2f} s entry list + {d['build_s']:.2f} s build_crl), "
        f"{d['der_bytes'] / 2**20:.1f} MiB DER; peak RSS {d['peak_rss_mib']:.0f} MiB "
        f"({d['rss_before_mib']:.0f} MiB before, input serials included); parse + lookup {d['parse_lookup_s']:.2f} s"
    )
    s = crl_store
    print(
        f"  through revocation storage (SQLite, barrier), {s['entries']:,} records: revocation.rebuild "
        f"{s['rebuild_s']:.2f} s, {s['der_bytes'] / 2**20:.1f} MiB DER, peak RSS {s['peak_rss_mib']:.0f} MiB "
        f"({s['rss_before_mib']:.0f} MiB before); for context, reading every record into a list "
        f"(list_revoked_records) {s['read_records_s']:.2f} s; writing them (set-up) {s['write_s']:.0f} s"
    )

    # goals
    print()
    print("Goals (issue 3)")
    header = f"  {'scenario':<42} {'strongroom':>12} {'cfssl':>10} {'ratio':>7} {'goal':>12}  {'of ceiling':>10}  met"
    print(header)
    print("  " + "-" * (len(header) - 2))

    full_crl = s["entries"] >= 1_000_000  # a smaller CRL says nothing about the goal

    def rps(key: str) -> float:
        return results[key].requests_per_s

    def row(name: str, ours: str, peer: str, ratio: str, goal: str, share: str, ok: bool | None) -> None:
        print(f"  {name:<42} {ours:>12} {peer:>10} {ratio:>7} {goal:>12}  {share:>10}  {verdict(ok)}")

    for key, peer_key, name, target, crypto in (
        ("sign_ec", "cf_sign_ec", "1 sign/ EC CSR, EC CA, no_store", 1.0, "sign_ec"),
        ("sign_ec_store", "cf_sign_ec", "1 sign/ EC CSR, EC CA, stored", 0.5, "sign_ec"),
        ("issue_ec", "cf_issue_ec", "2 issue/ EC P-256, no_store", 1.2, "issue_ec"),
        ("sign_rsa", "cf_sign_rsa", "3 sign/ RSA-2048 CSR, RSA-2048 CA", 1.5, "sign_rsa"),
    ):
        ratio = rps(key) / rps(peer_key)
        share = f"{rps(key) / ceiling.per_s(crypto):.0%}"
        row(
            name,
            f"{rps(key):,.0f}/s",
            f"{rps(peer_key):,.0f}/s",
            f"{ratio:.2f}x",
            f">= {target}x",
            share,
            ratio >= target,
        )
    row(
        f"4 issue/ RSA-2048 p50 at {args.rate:g}/s",
        f"{rsa_paced['p50_ms']:.1f} ms",
        f"{cfssl_rsa_paced['p50_ms']:.1f} ms",
        "",
        "<= 20 ms",
        f"keygen {ceiling.rsa_keygen_median_ms:.0f} ms",
        rsa_paced["p50_ms"] <= 20,
    )
    row(
        "5 OCSP responses/s (EC CA)",
        f"{rps('ocsp'):,.0f}/s",
        "",
        "",
        ">= 5,000/s",
        f"{rps('ocsp') / ceiling.per_s('ocsp'):.0%}",
        rps("ocsp") >= 5000,
    )
    row(
        f"6 CRL {s['entries']:,} entries (storage): build",
        f"{s['rebuild_s']:.1f} s",
        "",
        "",
        "<= 15 s",
        "",
        s["rebuild_s"] <= 15 if full_crl else None,
    )
    row(
        f"6 CRL {s['entries']:,} entries (storage): peak RSS",
        f"{s['peak_rss_mib']:.0f} MiB",
        "",
        "",
        "<= 512 MiB",
        "",
        s["peak_rss_mib"] <= 512 if full_crl else None,
    )
    print()
    print(f"Crypto-only ceiling x {CPUS} processes (the limit each figure above is a fraction of)")
    labels = {
        "sign_ec": "sign/ EC CSR, EC CA",
        "issue_ec": "issue/ EC P-256",
        "sign_rsa": "sign/ RSA CSR, RSA CA",
        "issue_rsa": "issue/ RSA-2048 (key generation bound)",
        "ocsp": "OCSP response, EC CA",
    }
    for key, label in labels.items():
        print(f"  {label:<40} {ceiling.requests_us[key]:10.1f} µs/request   {ceiling.per_s(key):10,.0f}/s")

    failures = [r.name for r in runs if any(x.non_2xx or x.errors for x in r.results)]
    failures += [
        n for n, p in (("issue/ RSA paced", rsa_paced), ("cfssl RSA paced", cfssl_rsa_paced)) if p["non_2xx"]
    ]
    print()
    for name in failures:
        print(
            f"WARNING: {name}: failed requests during the run (non-2xx or socket errors); its figure is not valid"
        )
    load_after = os.getloadavg()[0]
    print(f"total run time {time.monotonic() - started:.0f} s")
    print(
        f"1-minute load average {load_before:.2f} before the run, {load_after:.2f} at its end "
        f"(the benchmark alone keeps about {CPUS} CPUs busy)"
    )
    if load_before > 0.5:
        print("NOTE: something else was using the CPUs when the run started: figures are noisier than usual")


if __name__ == "__main__":
    main()
