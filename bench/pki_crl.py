"""CRL build time and peak memory, each measured in a fresh process (ru_maxrss is per process).

Two modes, each printing one JSON object:

``direct N``   the engine's own builder (``strongroom.engines.pki.crl.build_crl``)
               fed N entries with random 159-bit serials, signed by an EC P-256 CA.
``storage N``  the engine's revocation storage: N ``revoked/<serial>`` records
               written into a PKI mount over SQLite (through the barrier), then
               ``revocation.rebuild`` reads them back and builds and stores the CRL
               the way a revocation or a fetch would. Peak RSS is taken right after
               the rebuild; reading every record into a list
               (``revocation.list_revoked_records``) is timed after that, for context.

    python bench/pki_crl.py direct 1000000
    python bench/pki_crl.py storage 20000
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import resource
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from strongroom.engines.pki.crl import RevokedEntry, build_crl
from strongroom.engines.pki.issuing import random_serial

MIB = 1024 * 1024


def rss_mib() -> float:
    """Current resident set size."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / MIB


def peak_rss_mib() -> float:
    """The resident-set high-water mark (VmHWM), since start or the last reset_peak()."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def reset_peak() -> None:
    """Start the high-water mark again from the current RSS (Linux: clear_refs 5), if allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass  # then the peak also covers the set-up before it


def make_ca() -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench CRL CA")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(random_serial())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def direct(count: int) -> dict[str, Any]:
    ca, key = make_ca()
    serials = [random_serial() for _ in range(count)]  # the input, as storage would hold it
    base = rss_mib()
    now = dt.datetime.now(dt.UTC)
    t0 = time.perf_counter()
    entries = [RevokedEntry(s, now) for s in serials]  # what revocation._assign hands over
    t1 = time.perf_counter()
    der = build_crl(
        issuer_cert=ca,
        issuer_key=key,
        entries=entries,
        crl_number=1,
        this_update=now,
        next_update=now + dt.timedelta(hours=72),
    )
    t2 = time.perf_counter()
    peak = peak_rss_mib()
    crl = x509.load_der_x509_crl(der)
    found = crl.get_revoked_certificate_by_serial_number(serials[count // 2]) is not None
    t3 = time.perf_counter()
    if len(crl) != count or not found or not crl.is_signature_valid(key.public_key()):
        raise SystemExit(f"CRL check failed: {len(crl)} entries, lookup {found}")
    return {
        "entries": count,
        "entries_s": t1 - t0,
        "build_s": t2 - t1,
        "total_s": t2 - t0,
        "parse_lookup_s": t3 - t2,
        "der_bytes": len(der),
        "rss_before_mib": base,
        "peak_rss_mib": peak,
    }


async def through_storage(count: int, workdir: Path) -> dict[str, Any]:
    from strongroom.core.mounts import MountEntry
    from strongroom.engines.pki import revocation, store
    from strongroom.logical.storage import put_json
    from strongroom.physical.sqlite import SqlitePhysical
    from strongroom.testing import running_core

    physical = SqlitePhysical({"path": str(workdir / "crl.db")})
    async with running_core(physical) as h:
        await h.core.enable_mount(MountEntry("pki/", "pki"))
        route = h.core.router.get("pki/")
        assert route is not None
        storage = route.storage
        r = await h.call("POST", "pki/root/generate/internal", json={"common_name": "crl", "key_type": "ec"})
        r.raise_for_status()
        issuer_id = str(r.json()["data"]["issuer_id"])
        await revocation.save_config(storage, revocation.CrlConfig(auto_rebuild=True))  # no inline rebuild
        moment = time.time()
        t0 = time.perf_counter()
        written = 0

        async def write_one() -> None:
            serial = store.serial_to_str(random_serial())
            record = revocation.RevokedRecord(
                serial, int(moment), revocation.rfc3339(moment), issuer_id, int(moment) + 86400
            )
            await put_json(storage, revocation.REVOKED_PREFIX + serial, asdict(record))

        while written < count:  # concurrent writes share commits: the set-up, not the measurement
            batch = min(5000, count - written)
            await asyncio.gather(*(write_one() for _ in range(batch)))
            written += batch
        t1 = time.perf_counter()
        base = rss_mib()
        reset_peak()  # the peak of the rebuild, not of writing the records
        warnings = await revocation.rebuild(storage, force=True)
        t2 = time.perf_counter()
        peak = peak_rss_mib()
        der = await revocation.crl_der(storage, None, issuer_id, delta=False)
        crl = x509.load_der_x509_crl(der)
        if len(crl) != count or warnings:
            raise SystemExit(f"CRL check failed: {len(crl)} entries, warnings {warnings}")
        t3 = time.perf_counter()
        records = await revocation.list_revoked_records(storage)
        t4 = time.perf_counter()
        del records
        await revocation.manager_for(route.backend).stop()
    return {
        "entries": count,
        "write_s": t1 - t0,
        "rebuild_s": t2 - t1,
        "read_records_s": t4 - t3,
        "der_bytes": len(der),
        "rss_before_mib": base,
        "peak_rss_mib": peak,
    }


def main() -> None:
    mode, count = sys.argv[1], int(sys.argv[2])
    if mode == "direct":
        result = direct(count)
    elif mode == "storage":
        with tempfile.TemporaryDirectory() as tmp:
            result = asyncio.run(through_storage(count, Path(tmp)))
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
