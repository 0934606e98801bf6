"""The blob hot path (socket → SHA-256 → file) against curl, on this machine, in one run.

    .venv/bin/python benchmarks/blob_throughput.py [--size-mb 400] [--rounds 7]

Starts the real registry on loopback, pushes one pseudo-random blob, then alternates, round by
round: ``curl`` writing the blob to /dev/shm (no hashing: the raw limit) and a fresh Python
process running ``tank.download_blob`` to /dev/shm (hashing and verifying, fsync on). Prints the
medians, tank's ratio to curl, and the SHA-256 speed of this CPU, which bounds any verified
download from above (hashlib runs at whatever OpenSSL does here: about 1.2 GB/s with the SHA
extensions, about 0.36 GB/s without them).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import machine_line  # beside this file: on sys.path when run as a script
from tank.testing.images import Pusher, make_random_blob_file
from tank.testing.registry import LocalRegistry

TANK_ROUND = """
import json, resource, sys, time
from tank import registry
host, repo, digest, dest = sys.argv[1:]
t = time.perf_counter()
n = registry.download_blob(host, repo, digest, None, dest)
seconds = time.perf_counter() - t
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"bytes": n, "seconds": seconds, "peak_rss_kib": peak}))
"""


def sha256_speed(size: int = 256 << 20) -> float:
    """Bytes per second hashlib.sha256 reaches here on 1 MiB updates."""
    chunk = os.urandom(1 << 20)
    h = hashlib.sha256()
    t = time.perf_counter()
    for _ in range(size >> 20):
        h.update(chunk)
    return size / (time.perf_counter() - t)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--size-mb", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    size = args.size_mb * 1_000_000
    shm = Path("/dev/shm")
    with tempfile.TemporaryDirectory(prefix="tank-bench-") as tmp, LocalRegistry() as reg:
        source = Path(tmp) / "blob"
        digest = make_random_blob_file(source, size, seed="bench")
        with Pusher(reg.url) as pusher:
            pusher.push_blob("bench/blob", source)
        source.unlink()
        url = f"{reg.url}/v2/bench/blob/blobs/{digest}"
        curl_out, tank_out = shm / "tank-bench-curl", shm / "tank-bench-tank"
        curl_s: list[float] = []
        tank_s: list[float] = []
        peaks: list[int] = []
        hash_rates: list[float] = []
        try:
            for i in range(args.rounds):
                t = time.perf_counter()
                subprocess.run(["curl", "-sf", "-o", str(curl_out), url], check=True)
                curl_s.append(time.perf_counter() - t)
                curl_out.unlink()
                out = subprocess.run(
                    [sys.executable, "-c", TANK_ROUND, reg.host, "bench/blob", digest,
                     str(tank_out)],
                    check=True, capture_output=True, text=True,
                )
                report = json.loads(out.stdout)
                assert report["bytes"] == size
                tank_s.append(report["seconds"])
                peaks.append(report["peak_rss_kib"])
                tank_out.unlink()
                hash_rates.append(sha256_speed())
                print(f"round {i + 1}: curl {size / curl_s[-1] / 1e6:6.0f} MB/s   "
                      f"tank {size / tank_s[-1] / 1e6:6.0f} MB/s   "
                      f"sha256 {hash_rates[-1] / 1e6:6.0f} MB/s", file=sys.stderr)
        finally:
            for p in (curl_out, tank_out):
                p.unlink(missing_ok=True)
    curl_rate = size / statistics.median(curl_s)
    tank_rate = size / statistics.median(tank_s)
    hash_rate = statistics.median(hash_rates)
    print(machine_line())
    print(f"blob: {size / 1e6:.0f} MB, {args.rounds} alternating rounds, medians, "
          "files on /dev/shm")
    print(f"curl (no hashing):           {curl_rate / 1e6:7.0f} MB/s")
    print(f"tank download_blob (verified): {tank_rate / 1e6:5.0f} MB/s   "
          f"= {tank_rate / curl_rate:.2f}x curl")
    print(f"sha256 alone on this CPU:    {hash_rate / 1e6:7.0f} MB/s   "
          f"(tank reaches {tank_rate / hash_rate:.2f}x of it)")
    print(f"tank peak RSS: {max(peaks) / 1024:.0f} MiB (whole process)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
