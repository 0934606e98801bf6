"""`tank copy` against `skopeo copy docker:// docker://`, registry to registry, same run.

    .venv/bin/python benchmarks/copy_vs_skopeo.py [--rounds 5]

Starts the real registry on loopback (plain HTTP) and seeds it with image (a) of
``pull_vs_skopeo.py`` (about 1 GB in 8 gzip layers). Then, per round, alternating, each a fresh
process timed by wall clock with its peak RSS (GNU time):

- ``tank copy A/bench/a:v1 B/tank-N:v1 -q`` with a cold cache, into a fresh registry B;
- ``tank copy`` of the same image to the same place again (everything present);
- ``skopeo copy docker://A/bench/a:v1 docker://B/skopeo-N:v1``, into another fresh registry;
- the floor: ``curl`` uploading the same blobs from A's storage files straight into a fresh
  registry (``POST`` + a streamed ``PUT ?digest=``, 4 at once, nothing downloaded or hashed on
  the client). No copy between two registries on this machine can beat it by much: the
  destination registry hashes and stores every byte either way, on the same cores.

Prints medians, the ratios (to skopeo and to the floor), and the targets: tank at most 0.6x
skopeo's wall time, a repeated copy at most 0.3 s, tank's peak RSS under 100 MB.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from machine import machine_line  # beside this file: on sys.path when run as a script
from pull_vs_skopeo import Run, build_images, timed
from tank.testing.images import Pusher
from tank.testing.registry import LocalRegistry

MB = 1_000_000

#: ``put.sh URL DIGEST FILE``: one blob into the repository ``URL`` (``http://host/v2/name``)
PUT_ONE = r"""#!/bin/bash
set -euo pipefail
loc=$(curl -sf -X POST -D - -o /dev/null "$1/blobs/uploads/" | tr -d '\r' \
      | awk 'tolower($1) == "location:" {print $2}')
case "$loc" in /*) loc="${1%%/v2/*}$loc";; esac
case "$loc" in *\?*) sep="&";; *) sep="?";; esac
curl -sf -T "$3" -H "Content-Type: application/octet-stream" -o /dev/null "$loc${sep}digest=$2"
"""


def floor_cmd(script: Path, blobs: list[tuple[str, Path]], url: str) -> list[str]:
    """Upload ``blobs`` ((digest, file) pairs) into ``url`` with curl, 4 at once."""
    pairs = " ".join(f"{d} {p}" for d, p in blobs)
    return ["bash", "-c", f"printf '%s %s\\n' {pairs} | xargs -P 4 -n 2 bash {script} {url}"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    tank_cmd = [str(Path(sys.executable).with_name("tank"))]
    print("building the image…", file=sys.stderr)
    image = build_images()["a"]
    size = sum(b.size for b in image.blobs())
    runs: dict[str, list[Run]] = {"tank": [], "skopeo": [], "again": [], "floor": []}
    digests = [b.digest for b in image.blobs()]
    with tempfile.TemporaryDirectory(prefix="tank-bench-", dir="/var/tmp") as tmp_s, \
            LocalRegistry() as a:
        tmp = Path(tmp_s)
        with Pusher(a.url) as pusher:
            pusher.push_image("bench/a", "v1", image)
        layers = len(image.layers)
        del image
        src = f"{a.host}/bench/a:v1"
        script = tmp / "put.sh"
        script.write_text(PUT_ONE)
        files = [(d, a.blob_path(d)) for d in digests]
        print(f"{layers} layers, {size / MB:.1f} MB", file=sys.stderr)
        for i in range(args.rounds):
            cache = tmp / f"cache-{i}"
            # a fresh destination registry per tool and round: skopeo's blob-info cache (and
            # tank's blob-location memory) would otherwise mount from the previous round
            with LocalRegistry() as b:
                dest = f"{b.host}/tank-{i}:v1"
                runs["tank"].append(timed([*tank_cmd, "copy", src, dest, "--cache",
                                           str(cache), "-q"], tmp / "rss"))
                runs["again"].append(timed([*tank_cmd, "copy", src, dest, "--cache",
                                            str(cache), "-q"], tmp / "rss"))
            with LocalRegistry() as b:
                runs["skopeo"].append(timed(
                    ["skopeo", "copy", "--insecure-policy", "--src-tls-verify=false",
                     "--dest-tls-verify=false", "-q", f"docker://{src}",
                     f"docker://{b.host}/skopeo-{i}:v1"], tmp / "rss"))
            with LocalRegistry() as b:
                runs["floor"].append(timed(floor_cmd(script, files, f"{b.url}/v2/floor-{i}"),
                                           tmp / "rss"))
            shutil.rmtree(cache)
            print(f"  round {i + 1}: tank {runs['tank'][-1].seconds:.2f} s, skopeo "
                  f"{runs['skopeo'][-1].seconds:.2f} s, again {runs['again'][-1].seconds:.2f} s, "
                  f"floor {runs['floor'][-1].seconds:.2f} s", file=sys.stderr)
    print(machine_line())
    print(f"tank copy vs skopeo copy, registry to registry, {args.rounds} alternating rounds, "
          f"medians, {os.cpu_count()} cores; {layers} layers, {size / MB:.0f} MB")
    t = statistics.median(r.seconds for r in runs["tank"])
    s = statistics.median(r.seconds for r in runs["skopeo"])
    again = statistics.median(r.seconds for r in runs["again"])
    rss = max(r.peak_rss_kib for r in runs["tank"]) / 1024
    srss = max(r.peak_rss_kib for r in runs["skopeo"]) / 1024
    floor = statistics.median(r.seconds for r in runs["floor"])
    print(f"tank {t:.2f} s, skopeo {s:.2f} s, ratio {t / s:.2f} (target <= 0.6)")
    print(f"floor (curl uploading the blobs from files) {floor:.2f} s: tank {t / floor:.2f}x "
          f"it, skopeo {s / floor:.2f}x it")
    print(f"repeated tank copy {again:.2f} s (target <= 0.3 s)")
    print(f"peak RSS: tank {rss:.0f} MB (target < 100 MB), skopeo {srss:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
