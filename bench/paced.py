"""A tiny paced (open-loop) load generator: N requests/s for S seconds, latency percentiles as JSON.

wrk2 is not in Debian; this does the one thing the PKI benchmark needs from
it. Request ``i`` is due at ``start + i / rate`` whether or not earlier ones
have finished, and its latency is measured from that due time (so a stalled
server shows up in the figures instead of slowing the load down: no
coordinated omission).

    python bench/paced.py URL --rate 10 --seconds 20 --header 'X-Vault-Token: ...' --body-file body.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
from pathlib import Path

import httpx


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


async def run(
    url: str, headers: dict[str, str], body: bytes, rate: float, seconds: float, warmup: int
) -> dict[str, object]:
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(limits=limits, timeout=60.0) as client:
        for _ in range(warmup):  # open a connection and warm the server's path; not counted
            await client.post(url, content=body, headers=headers)
        loop = asyncio.get_running_loop()
        count = int(rate * seconds)
        start = loop.time() + 0.05

        async def one(i: int) -> tuple[float, int]:
            due = start + i / rate
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            try:
                status = (await client.post(url, content=body, headers=headers)).status_code
            except httpx.HTTPError:
                status = 0
            return loop.time() - due, status

        results = await asyncio.gather(*(one(i) for i in range(count)))
        elapsed = loop.time() - start
    latencies = [1000 * lat for lat, _ in results]
    return {
        "requests": count,
        "achieved_rate": count / elapsed,
        "non_2xx": sum(1 for _, status in results if not 200 <= status < 300),
        "p50_ms": percentile(latencies, 50),
        "p90_ms": percentile(latencies, 90),
        "p99_ms": percentile(latencies, 99),
        "max_ms": max(latencies),
        "mean_ms": statistics.fmean(latencies),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--rate", type=float, default=10.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--header", action="append", default=[], help="'Name: value', repeatable")
    parser.add_argument("--body-file", type=Path, required=True)
    parser.add_argument("--warmup", type=int, default=3, help="requests sent (not counted) before pacing")
    args = parser.parse_args()
    headers = dict(h.split(": ", 1) for h in args.header)
    result = asyncio.run(
        run(args.url, headers, args.body_file.read_bytes(), args.rate, args.seconds, args.warmup)
    )
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
