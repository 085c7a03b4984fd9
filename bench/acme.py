"""ACME http-01 orders, newOrder to certificate download, against pebble in the same session.

Issue 4's figure: the time from sending newOrder to receiving the certificate for a one-name
http-01 order, p50 and p99, with 20 concurrent clients, next to the same flow against pebble.

Targets, one after the other (never at once: the machine is small), each started and stopped
here with the pieces of ``tests/integration/acme/targets.py`` (every name resolves to
127.0.0.1 through pebble-challtestsrv):

* pebble (Debian) with ``PEBBLE_VA_NOSLEEP=1 PEBBLE_AUTHZREUSE=0 PEBBLE_WFE_NONCEREJECT=0``:
  every order really is validated, at once, and no good nonce is refused
* strongroom set up as ``start_strongroom`` does (TLS, a ``pki`` mount with ACME on), twice:
  in-memory storage (always one process) and SQLite storage with one HTTP worker per CPU
  (the multi-process deployment: nonces and orders cross processes)

The load generator is this process: an asyncio ACME client (ES256 JWS with ``cryptography``,
httpx over HTTP/1.1 and TLS, one Replay-Nonce carried from each response to the next request;
a badNonce is retried with the nonce it came with and counted) and one shared http-01
responder on the target's validation port. Each client owns an account made before timing
starts and repeats: newOrder (``b<client>-<n>.example.com``) -> POST-as-GET authz -> POST the
http-01 challenge ``{}`` -> poll the authz every ``--poll`` s until valid -> finalize (a P-256
CSR made before the order) -> poll the order until valid -> download the certificate. One
order's time runs from sending newOrder to receiving the certificate. Both targets get the
same client, the same poll interval, and ``--warmup`` untimed orders per client first.

Benchmarks print figures; they assert nothing about timings.

    .venv/bin/python bench/acme.py [--orders 400] [--clients 20] [--rounds 3] [--poll 0.05] [--keep DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import functools
import importlib.util
import json
import math
import os
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.integration.acme.targets import (  # noqa: E402
    AcmeTarget,
    StrongroomTarget,
    start_pebble,
    start_strongroom,
)
from tests.unit.pki.acme_testclient import b64, csr_der, ec_jwk, jws, thumbprint  # noqa: E402

if importlib.util.find_spec("sniffio") is None:
    # httpcore tries ``import sniffio`` for every lock it sets up; without sniffio installed each
    # failed import searches sys.path again (~30 µs, several times a request). Answer it directly.
    import httpcore._synchronization

    httpcore._synchronization.current_async_library = lambda: "asyncio"

CPUS = len(os.sched_getaffinity(0))
JOSE = {"Content-Type": "application/jose+json"}
STEPS = ("newOrder", "authz", "challenge", "authz poll", "finalize", "order poll", "certificate")
PHASES = ("newOrder+authz+challenge", "validation (polls)", "finalize (+polls)", "download")


def note(text: str) -> None:
    """Progress, on stderr: stdout carries the report."""
    print(f"... {text}", file=sys.stderr, flush=True)


# -- strongroom with a chosen storage --------------------------------------------------------------


def start_strongroom_with(tmpdir: Path, storage: dict[str, Any], workers: int) -> StrongroomTarget:
    """``start_strongroom`` with this storage and worker count (inmem storage is always one process)."""
    return start_strongroom(
        tmpdir, storage=storage, workers=workers, name="strongroom-" + next(iter(storage))
    )


@dataclass
class TargetSpec:
    key: str
    label: str
    start: Callable[[Path], AcmeTarget]


def pebble_version() -> str:
    r = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "pebble"], capture_output=True, text=True)
    return r.stdout.split("+")[0] if r.returncode == 0 else "?"


# -- the http-01 responder ------------------------------------------------------------------------


class Responder:
    """Answers ``GET /.well-known/acme-challenge/<token>`` from ``tokens``; one request per connection."""

    PREFIX = "/.well-known/acme-challenge/"

    def __init__(self) -> None:
        self.tokens: dict[str, str] = {}
        self.hits = 0
        self.misses = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10.0)
            parts = head.split(b"\r\n", 1)[0].decode("latin-1").split()
            path = parts[1] if len(parts) > 1 else ""
            body = self.tokens.get(path[len(self.PREFIX) :]) if path.startswith(self.PREFIX) else None
            if body is None:
                self.misses += 1
                status, data = "404 Not Found", b"no such token\n"
            else:
                self.hits += 1
                status, data = "200 OK", body.encode()
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {len(data)}\r\n"
                f"Connection: close\r\n\r\n".encode()
                + data
            )
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, OSError):
            pass
        finally:
            writer.close()


# -- the ACME client ------------------------------------------------------------------------------


class AcmeError(Exception):
    """An order step answered something unexpected (the message is the error's category)."""


@dataclass
class Counters:
    requests: int = 0
    bad_nonce: int = 0
    nonce_fetches: int = 0
    errors: collections.Counter[str] = field(default_factory=collections.Counter)
    step_seconds: dict[str, list[float]] = field(default_factory=lambda: collections.defaultdict(list))
    retry_after: collections.Counter[str] = field(default_factory=collections.Counter)  # value -> answers


def problem_type(r: httpx.Response) -> str:
    try:
        return str(r.json().get("type", "")).rsplit(":", 1)[-1]
    except ValueError:
        return ""


class Account:
    """One client: an ES256 account key, its kid, and the Replay-Nonce carried to the next request."""

    def __init__(self, http: httpx.AsyncClient, directory: dict[str, Any], counters: Counters) -> None:
        self.http, self.directory, self.counters = http, directory, counters
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.jwk = ec_jwk(self.key)
        self.thumbprint = thumbprint(self.jwk)
        self.kid = ""
        self.nonce = ""

    async def post(self, url: str, payload: Any, *, use_jwk: bool = False) -> httpx.Response:
        """A JWS POST (``payload`` "" is POST-as-GET); badNonce is retried with the nonce it brought."""
        for _ in range(4):
            if not self.nonce:
                r = await self.http.head(self.directory["newNonce"])
                self.counters.nonce_fetches += 1
                self.nonce = r.headers.get("replay-nonce", "")
                if not self.nonce:
                    raise AcmeError(f"newNonce: HTTP {r.status_code}, no Replay-Nonce")
            protected: dict[str, Any] = {"alg": "ES256", "nonce": self.nonce, "url": url}
            if use_jwk:
                protected["jwk"] = self.jwk
            else:
                protected["kid"] = self.kid
            body = json.dumps(jws(self.key, protected, payload)).encode()
            self.nonce = ""
            r = await self.http.post(url, content=body, headers=JOSE)
            self.counters.requests += 1
            self.nonce = r.headers.get("replay-nonce", "")
            if "retry-after" in r.headers:
                self.counters.retry_after[r.headers["retry-after"]] += 1
            if r.status_code == 400 and problem_type(r) == "badNonce":
                self.counters.bad_nonce += 1
                continue
            return r
        raise AcmeError("badNonce four times in a row")

    async def expect(self, what: str, url: str, payload: Any, ok: tuple[int, ...] = (200,)) -> httpx.Response:
        start = time.perf_counter()
        try:
            r = await self.post(url, payload)
        except httpx.HTTPError as err:
            raise AcmeError(f"{what}: {type(err).__name__}") from err
        self.counters.step_seconds[what].append(time.perf_counter() - start)
        if r.status_code not in ok:
            raise AcmeError(f"{what}: HTTP {r.status_code} {problem_type(r) or r.text[:80]}")
        return r

    async def register(self) -> None:
        r = await self.post(self.directory["newAccount"], {"termsOfServiceAgreed": True}, use_jwk=True)
        if r.status_code not in (200, 201):
            raise AcmeError(f"newAccount: HTTP {r.status_code} {r.text[:200]}")
        self.kid = r.headers["location"]

    async def poll(self, what: str, url: str, want: str, interval: float, limit: float) -> dict[str, Any]:
        """POST-as-GET ``url`` until its status is ``want``: at most ``limit/interval`` + 1 polls."""
        for _ in range(int(limit / interval) + 1):
            body: dict[str, Any] = (await self.expect(what, url, "")).json()
            if body["status"] == want:
                return body
            if body["status"] not in ("pending", "processing", "ready"):
                detail = body.get("error") or next(
                    (c.get("error") for c in body.get("challenges", []) if c.get("error")), None
                )
                kind = str((detail or {}).get("type", "")).rsplit(":", 1)[-1]
                raise AcmeError(f"{what}: status {body['status']} {kind}".rstrip())
            await asyncio.sleep(interval)
        raise AcmeError(f"{what}: not {want} after {limit:g} s")

    async def order(self, name: str, responder: Responder, interval: float) -> tuple[float, list[float]]:
        """One http-01 order for ``name``: (seconds from newOrder to certificate, phase seconds)."""
        csr, _ = csr_der([name])  # made before the clock starts
        finalize_payload = {"csr": b64(csr)}
        t0 = time.perf_counter()
        r = await self.expect(
            "newOrder", self.directory["newOrder"], {"identifiers": [{"type": "dns", "value": name}]}, (201,)
        )
        order_url, order = r.headers["location"], r.json()
        authz_url = order["authorizations"][0]
        authz = (await self.expect("authz", authz_url, "")).json()
        challenge = next((c for c in authz["challenges"] if c["type"] == "http-01"), None)
        if challenge is None:
            raise AcmeError("authz: no http-01 challenge")
        responder.tokens[challenge["token"]] = f"{challenge['token']}.{self.thumbprint}"
        try:
            await self.expect("challenge", challenge["url"], {})
            t1 = time.perf_counter()
            await self.poll("authz poll", authz_url, "valid", interval, 30.0)
        finally:
            responder.tokens.pop(challenge["token"], None)
        t2 = time.perf_counter()
        order = (await self.expect("finalize", order["finalize"], finalize_payload)).json()
        if order["status"] != "valid":
            order = await self.poll("order poll", order_url, "valid", interval, 30.0)
        t3 = time.perf_counter()
        r = await self.expect("certificate", order["certificate"], "")
        t4 = time.perf_counter()
        leaf = x509.load_pem_x509_certificates(r.content)[0]
        sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        if sans.get_values_for_type(x509.DNSName) != [name]:
            raise AcmeError("certificate: wrong names")
        return t4 - t0, [t1 - t0, t2 - t1, t3 - t2, t4 - t3]


# -- one run against one target -------------------------------------------------------------------


@dataclass
class Result:
    latencies: list[float]  # seconds, completed orders only
    phases: list[list[float]]
    seconds: float  # wall clock of the measured phase
    counters: Counters
    stopped_early: bool
    loop_lag: float  # the client's worst event-loop delay (s): above ~0.1 the client itself was stalled
    target_cpu: float = math.nan  # CPU seconds of the target's processes during the measured phase
    client_cpu: float = math.nan  # CPU seconds of this process (client and responder) during it

    def cpu_ms_per_order(self, seconds: float) -> float:
        return 1000 * seconds / len(self.latencies) if self.latencies else math.nan

    @property
    def errors(self) -> int:
        return sum(self.counters.errors.values())

    def pct(self, p: float) -> float:
        """Nearest-rank percentile in ms (NaN without samples)."""
        xs = sorted(self.latencies)
        return 1000 * xs[max(0, math.ceil(p / 100 * len(xs)) - 1)] if xs else math.nan

    @property
    def mean_ms(self) -> float:
        return 1000 * statistics.fmean(self.latencies) if self.latencies else math.nan

    @property
    def per_s(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else math.nan

    def phase_p50_ms(self, index: int) -> float:
        return 1000 * statistics.median(p[index] for p in self.phases) if self.phases else math.nan

    def step_ms(self, step: str, p: float) -> float:
        """Nearest-rank percentile in ms of one step's request times (badNonce retries included)."""
        xs = sorted(self.counters.step_seconds.get(step, []))
        return 1000 * xs[max(0, math.ceil(p / 100 * len(xs)) - 1)] if xs else math.nan


async def drive(
    accounts: list[Account], responder: Responder, orders: int, interval: float, cap: float, serial: list[int]
) -> Result:
    """Run ``orders`` orders over the accounts (one task each); stop starting new ones after ``cap`` s."""
    counters = Counters()
    for account in accounts:
        account.counters = counters
    latencies: list[float] = []
    phases: list[list[float]] = []
    left = [orders]
    start = time.perf_counter()
    deadline = start + cap

    async def client(index: int, account: Account) -> None:
        while left[0] > 0 and time.perf_counter() < deadline:
            left[0] -= 1
            serial[index] += 1
            try:
                took, parts = await asyncio.wait_for(
                    account.order(f"b{index}-{serial[index]}.example.com", responder, interval), 90.0
                )
            except AcmeError as err:
                counters.errors[str(err)] += 1
            except TimeoutError:
                counters.errors["order took over 90 s"] += 1
            else:
                latencies.append(took)
                phases.append(parts)

    async def watch_loop() -> None:
        while True:
            due = time.perf_counter() + 0.02
            await asyncio.sleep(0.02)
            lag[0] = max(lag[0], time.perf_counter() - due)

    lag = [0.0]
    watcher = asyncio.create_task(watch_loop())
    try:
        await asyncio.gather(*(client(i, a) for i, a in enumerate(accounts)))
    finally:
        watcher.cancel()
    seconds = time.perf_counter() - start
    return Result(latencies, phases, seconds, counters, left[0] > 0, lag[0])


def session_cpu(target: AcmeTarget) -> float:
    """CPU seconds used so far by every process of the target's sessions (launched with a new session)."""
    sessions = {p.proc.pid for p in target.processes}
    ticks = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[3]) in sessions:  # fields after the command: state ppid pgrp session ...
            ticks += int(fields[11]) + int(fields[12])  # utime stime
    return ticks / os.sysconf("SC_CLK_TCK")


async def load(target: AcmeTarget, args: argparse.Namespace) -> Result:
    responder = Responder()
    server = await asyncio.start_server(responder.handle, "127.0.0.1", target.http_port, backlog=256)
    ctx = ssl.create_default_context(cafile=str(target.ca_bundle))
    # one client, one connection (as separate ACME clients have): httpcore scans its whole pool on
    # every request, so a shared 20-connection pool costs the client more CPU than the target
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    try:
        async with contextlib.AsyncExitStack() as stack:
            https = [
                await stack.enter_async_context(
                    httpx.AsyncClient(verify=ctx, http2=False, limits=limits, timeout=60.0)
                )
                for _ in range(args.clients)
            ]
            r = await https[0].get(target.directory_url)
            r.raise_for_status()
            directory = r.json()
            accounts = [Account(http, directory, Counters()) for http in https]
            await asyncio.gather(*(a.register() for a in accounts))
            serial = [0] * args.clients
            if args.warmup:
                warm = await drive(
                    accounts, responder, args.warmup * args.clients, args.poll, args.max_seconds, serial
                )
                if warm.errors:
                    note(f"    warm-up: {warm.errors} failed orders: {dict(warm.counters.errors)}")
            target_cpu, client_cpu = session_cpu(target), time.process_time()
            result = await drive(accounts, responder, args.orders, args.poll, args.max_seconds, serial)
            result.target_cpu = session_cpu(target) - target_cpu
            result.client_cpu = time.process_time() - client_cpu
            if responder.misses:
                note(f"    http-01 responder: {responder.misses} requests for unknown tokens")
            return result
    finally:
        server.close()
        await server.wait_closed()


def log_findings(target: AcmeTarget) -> list[str]:
    """Lines of strongroom's log at WARNING or above (and tracebacks), grouped: 'count x line'."""
    found: collections.Counter[str] = collections.Counter()
    for proc in target.processes:
        try:
            text = proc.log.read_text(errors="replace")
        except OSError:
            continue
        for line in text.splitlines():
            if any(w in line for w in ("WARNING", "ERROR", "CRITICAL", "Traceback", "Error:")):
                found[line.strip()[:160]] += 1
    return [f"{n} x {line}" for line, n in found.most_common(8)]


def run_target(spec: TargetSpec, args: argparse.Namespace, workdir: Path) -> tuple[Result, list[str]]:
    note(f"{spec.label}: starting")
    target = spec.start(workdir)
    try:
        note(f"{spec.label}: {args.clients} clients, {args.warmup} warm-up + {args.orders} timed orders")
        result = asyncio.run(load(target, args))
        for p in target.processes:
            p.check_alive()
        findings = log_findings(target) if isinstance(target, StrongroomTarget) else []
    finally:
        target.stop()
    if args.keep:  # the raw samples next to the logs: seconds per phase of every completed order
        (workdir / "orders.json").write_text(json.dumps({"phases": PHASES, "orders": result.phases}))
    note(
        f"    {len(result.latencies)} orders in {result.seconds:.1f} s: p50 {result.pct(50):.0f} ms, "
        f"p99 {result.pct(99):.0f} ms, {result.per_s:.1f}/s, errors {result.errors}, "
        f"badNonce {result.counters.bad_nonce}"
    )
    return result, findings


# -- report ---------------------------------------------------------------------------------------


@dataclass
class Row:
    spec: TargetSpec
    results: list[Result] = field(default_factory=list)
    findings: list[str] = field(default_factory=list)

    def median(self, fn: Callable[[Result], float]) -> float:
        values = [v for v in (fn(r) for r in self.results) if not math.isnan(v)]
        return statistics.median(values) if values else math.nan

    def spread(self, fn: Callable[[Result], float]) -> str:
        values = sorted(fn(r) for r in self.results)
        return f"{values[0]:.0f}..{values[-1]:.0f}" if len(values) > 1 else ""


def ms(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.0f}"


def report(rows: list[Row], args: argparse.Namespace, started: float, load_before: float) -> None:
    print()
    print(
        f"ACME http-01 order, newOrder sent -> certificate received: {args.clients} concurrent clients "
        f"(one account each), {args.orders} timed orders per run after {args.warmup} warm-up order(s) per "
        f"client, polls every {1000 * args.poll:.0f} ms; {args.rounds} round(s), medians over rounds; "
        f"{CPUS} CPUs, targets run one after the other"
    )
    print()
    header = (
        f"  {'target':<34} {'p50 ms':>8} {'p99 ms':>8} {'mean ms':>8} {'orders/s':>9} {'orders':>7} "
        f"{'errors':>6} {'badNonce':>8} {'req/order':>9}"
    )
    print(header)
    print("  " + "-" * (len(header) - 2))
    for row in rows:
        done = sum(len(r.latencies) for r in row.results)
        reqs = sum(r.counters.requests + r.counters.nonce_fetches for r in row.results)
        print(
            f"  {row.spec.label:<34} {row.median(lambda r: r.pct(50)):8.0f} {row.median(lambda r: r.pct(99)):8.0f} "
            f"{row.median(lambda r: r.mean_ms):8.0f} {row.median(lambda r: r.per_s):9.1f} "
            f"{done:>7} {sum(r.errors for r in row.results):>6} "
            f"{sum(r.counters.bad_nonce for r in row.results):>8} "
            f"{reqs / max(1, done + sum(r.errors for r in row.results)):9.1f}"
        )
    if args.rounds > 1:
        print()
        print("  spread over rounds (min..max)")
        for row in rows:
            print(
                f"  {row.spec.label:<34} p50 {row.spread(lambda r: r.pct(50)):>11} ms   "
                f"p99 {row.spread(lambda r: r.pct(99)):>11} ms   orders/s {row.spread(lambda r: r.per_s):>9}"
            )
    print()
    print("  phases, p50 ms (each from the end of the one before)")
    print(f"  {'target':<34} " + " ".join(f"{p:>26}" for p in PHASES))
    for row in rows:
        cells = " ".join(
            f"{row.median(functools.partial(Result.phase_p50_ms, index=i)):26.0f}" for i in range(len(PHASES))
        )
        print(f"  {row.spec.label:<34} {cells}")
    print()
    print("  one request's time per step, p50 / p99 ms (client-side: queueing in the target included)")
    print(f"  {'target':<34} " + " ".join(f"{step:>13}" for step in STEPS))
    for row in rows:
        cells = " ".join(
            f"{ms(row.median(functools.partial(Result.step_ms, step=step, p=50))):>5} /"
            f"{ms(row.median(functools.partial(Result.step_ms, step=step, p=99))):>6}"
            for step in STEPS
        )
        print(f"  {row.spec.label:<34} {cells}")
    print()
    print("  CPU per timed order (target's processes / this process: client + http-01 responder)")
    for row in rows:
        target_ms = row.median(lambda r: r.cpu_ms_per_order(r.target_cpu))
        client_ms = row.median(lambda r: r.cpu_ms_per_order(r.client_cpu))
        lag = max(r.loop_lag for r in row.results)
        print(
            f"  {row.spec.label:<34} target {target_ms:6.1f} ms   client {client_ms:6.1f} ms   "
            f"(client event loop's worst delay {1000 * lag:.0f} ms)"
        )
    peer = next((row for row in rows if row.spec.key == "pebble"), None)
    if peer is not None and len(rows) > 1:
        print()
        print("  strongroom / pebble (latency: above 1 is slower; orders/s: below 1 is slower)")
        for row in rows:
            if row is peer:
                continue
            ratios = []
            for name, fn in (
                ("p50", lambda r: r.pct(50)),
                ("p99", lambda r: r.pct(99)),
                ("mean", lambda r: r.mean_ms),
                ("orders/s", lambda r: r.per_s),
            ):
                ratios.append(f"{name} {row.median(fn) / peer.median(fn):5.2f}x")
            print(f"  {row.spec.label:<34} " + "   ".join(ratios))
    print()
    for row in rows:
        errors: collections.Counter[str] = collections.Counter()
        for r in row.results:
            errors.update(r.counters.errors)
        for text, n in errors.most_common(5):
            print(f"WARNING: {row.spec.label}: {n} failed orders: {text}")
        if any(r.stopped_early for r in row.results):
            print(
                f"WARNING: {row.spec.label}: the {args.max_seconds:g} s cap stopped a run before its orders"
            )
        asked: collections.Counter[str] = collections.Counter()
        for r in row.results:
            asked.update(r.counters.retry_after)
        if asked:
            values = ", ".join(f"{v} s x {n}" for v, n in asked.most_common(3))
            print(f"NOTE: {row.spec.label}: answers with Retry-After ({values}); polls ignore it")
        lag = max(r.loop_lag for r in row.results)
        if lag > 0.2:
            print(f"NOTE: {row.spec.label}: the client's event loop stalled up to {1000 * lag:.0f} ms")
        for line in row.findings[:5]:
            print(f"NOTE: {row.spec.label} server log: {line}")
    print(f"total run time {time.monotonic() - started:.0f} s")
    print(
        f"1-minute load average {load_before:.2f} before the run, {os.getloadavg()[0]:.2f} at its end "
        f"(client, responder and target share the {CPUS} CPUs)"
    )
    if load_before > 0.5:
        print("NOTE: something else was using the CPUs when the run started: figures are noisier than usual")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--orders", type=int, default=400, help="timed orders per target per round")
    parser.add_argument("--clients", type=int, default=20, help="concurrent clients (one account each)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed orders per client before timing")
    parser.add_argument(
        "--rounds", type=int, default=3, help="repeat every target (~20 s a round); medians are reported"
    )
    parser.add_argument("--poll", type=float, default=0.05, help="seconds between authz/order polls")
    parser.add_argument("--max-seconds", type=float, default=120.0, help="cap on one run's wall clock")
    parser.add_argument("--workers", type=int, default=CPUS, help="HTTP workers of the SQLite strongroom")
    parser.add_argument(
        "--targets", default="pebble,inmem,sqlite", help="comma-separated subset of pebble,inmem,sqlite"
    )
    parser.add_argument("--keep", type=Path, help="keep the targets' work directories (logs) here")
    args = parser.parse_args()
    if args.orders < 1 or args.clients < 1 or args.rounds < 1 or args.poll <= 0:
        parser.error("--orders, --clients and --rounds must be positive, --poll above 0")
    specs = {
        "pebble": TargetSpec("pebble", f"pebble {pebble_version()}", start_pebble),
        "inmem": TargetSpec(
            "inmem", "strongroom inmem (1 process)", lambda d: start_strongroom_with(d, {"inmem": {}}, 1)
        ),
        "sqlite": TargetSpec(
            "sqlite",
            f"strongroom sqlite ({args.workers} workers)",
            lambda d: start_strongroom_with(d, {"sqlite": {"path": str(d / "strongroom.db")}}, args.workers),
        ),
    }
    chosen = [k.strip() for k in args.targets.split(",") if k.strip()]
    if not chosen or any(k not in specs for k in chosen):
        parser.error(f"--targets: choose from {', '.join(specs)}")
    rows = [Row(specs[k]) for k in chosen]

    # SIGTERM ends the run as Ctrl-C does (asyncio.run cancels the load cleanly on SIGINT), then the
    # finally blocks stop every process started. SIGINT is taken even when started in the background.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: os.kill(os.getpid(), signal.SIGINT))
    started, load_before = time.monotonic(), os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-acme-") as tmp:
        base = args.keep or Path(tmp)
        for round_ in range(args.rounds):
            if args.rounds > 1:
                note(f"round {round_ + 1} of {args.rounds}")
            for i in range(len(rows)):  # one target at a time; each round starts one target later
                row = rows[(round_ + i) % len(rows)]
                result, findings = run_target(row.spec, args, base / f"{row.spec.key}-{round_ + 1}")
                row.results.append(result)
                row.findings = sorted(set(row.findings) | set(findings))
    report(rows, args, started, load_before)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit("interrupted: every process this benchmark started has been stopped")
