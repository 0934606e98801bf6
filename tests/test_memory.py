"""Memory stays flat: a 256 MB blob streamed by a fresh process that does nothing else."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tank.testing.images import Pusher, make_random_blob_file
from tank.testing.registry import LocalRegistry
from tank.testing.seed import Seeded

SIZE = 256 * 1024 * 1024
LIMIT_KIB = 64 * 1024

CHILD = """
import json, resource, sys
from tank import registry
host, repo, small, big, dest = sys.argv[1:]
# baseline: tank imported, the pool warm, a small blob already fetched
registry.blob(host, repo, small)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
n = registry.download_blob(host, repo, big, None, dest)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"baseline_kib": base, "peak_kib": peak, "bytes": n}))
"""


@pytest.mark.slow
def test_256_mb_blob_peaks_under_64_mb_above_baseline(
    registry: LocalRegistry, seeded: Seeded, tmp_path: Path
) -> None:
    source = tmp_path / "big.bin"
    digest = make_random_blob_file(source, SIZE, seed="memory")
    with Pusher(registry.url) as pusher:
        pusher.push_blob("library/big", source)
        pusher.push_blob("library/big", seeded.latest.config)
    source.unlink()
    dest = tmp_path / "out.bin"
    out = subprocess.run(
        [sys.executable, "-c", CHILD, registry.host, "library/big",
         seeded.latest.config.digest, digest, str(dest)],
        check=True, capture_output=True, text=True, timeout=240,
    )
    report = json.loads(out.stdout)
    assert report["bytes"] == SIZE == dest.stat().st_size
    growth = report["peak_kib"] - report["baseline_kib"]
    print(f"peak RSS growth streaming {SIZE >> 20} MiB: {growth / 1024:.1f} MiB")
    assert growth < LIMIT_KIB, report
