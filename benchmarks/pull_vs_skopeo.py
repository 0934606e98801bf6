"""`tank pull -o oci:` against `skopeo copy docker:// oci:`, same machine, same run.

    .venv/bin/python benchmarks/pull_vs_skopeo.py [--rounds 5] [--only a,b,c] [--scale 1.0]

Starts the real registry on loopback (plain HTTP) and seeds three images:

- (a) about 1 GB in 8 gzip layers of uneven size: files of incompressible bytes and of
  text-like bytes (about 2:1 under gzip), as real layers mix binaries and text;
- (b) 40 small layers (5 to 50 kB each);
- (c) a 5 MB image in 3 layers.

Then, per image and round, alternating: a cold-cache ``tank pull REF -o oci:DIR:TAG -q`` and
``skopeo copy docker://REF oci:DIR:TAG``, each a fresh process into a fresh directory, timed by
wall clock with the child's peak RSS from ``wait4``. Prints medians, tank/skopeo ratios, peak RSS,
and for (a) the raw limit: every blob by four parallel ``curl``s (unverified, written to disk).
"""

from __future__ import annotations

import argparse
import gzip
import io
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from machine import machine_line  # beside this file: on sys.path when run as a script
from tank.testing.images import Blob, Image, Pusher, make_image, random_bytes_stream
from tank.testing.registry import LocalRegistry

MB = 1_000_000
LAYER_MB_A = (330, 220, 150, 110, 80, 60, 35, 15)  # compressed sizes, about 1 GB in all
# 16 letters, space and newline: random bytes mapped onto them gzip to about half their size
_TEXTISH = bytes((b"etaoinshrdlucmfw \n" * 15)[:256])


def _file_bytes(size: int, seed: str, textish: bool) -> bytes:
    data = b"".join(random_bytes_stream(size, seed=seed))
    return data.translate(_TEXTISH) if textish else data


def _layer(seed: str, target_compressed: int) -> Blob:
    """A gzip tar layer whose compressed size is about ``target_compressed`` bytes."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        made = 0
        i = 0
        # half the compressed size from random files, half from text-like ones (2x bigger raw)
        while made < target_compressed:
            textish = i % 2 == 1
            size = min(8 * MB, max(4096, (target_compressed - made) * (2 if textish else 1)))
            data = _file_bytes(size, f"{seed}-{i}", textish)
            info = tarfile.TarInfo(f"usr/share/bench/{seed}/file-{i:04d}")
            info.size = len(data)
            info.mode = 0o644
            info.mtime = 1_700_000_000
            tar.addfile(info, io.BytesIO(data))
            made += size // (2 if textish else 1)
            i += 1
    tar_bytes = raw.getvalue()
    compressed = gzip.compress(tar_bytes, compresslevel=1, mtime=0)
    import hashlib

    diff_id = "sha256:" + hashlib.sha256(tar_bytes).hexdigest()
    return Blob.of(compressed, "application/vnd.oci.image.layer.v1.tar+gzip", diff_id)


def build_images() -> dict[str, Image]:
    """The three benchmark images."""
    a = make_image([_layer(f"a{i}", n * MB) for i, n in enumerate(LAYER_MB_A)])
    b = make_image([_layer(f"b{i}", 5_000 + 1_200 * i) for i in range(40)])
    c = make_image([_layer(f"c{i}", n) for i, n in enumerate((3_000_000, 1_500_000, 500_000))])
    return {"a": a, "b": b, "c": c}


@dataclass
class Run:
    seconds: float
    peak_rss_kib: int


def timed(cmd: Sequence[str], rss_file: Path) -> Run:
    """Run ``cmd``; its wall time and peak RSS.

    The RSS comes from GNU time, whose child is forked from a small process: a child forked
    straight from this one would count this process's pages (the images) as its own.
    """
    start = time.perf_counter()
    proc = subprocess.run(
        ["/usr/bin/time", "-f", "%M", "-o", str(rss_file), *cmd],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False,
    )
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.decode()}")
    return Run(seconds, int(rss_file.read_text().split()[-1]))


def curl_all(url: str, blobs: list[tuple[str, int]], out: Path) -> float:
    """Every blob by four parallel curls, biggest first; wall seconds."""
    out.mkdir(parents=True, exist_ok=True)
    digests = [d for d, _ in sorted(blobs, key=lambda b: -b[1])]
    start = time.perf_counter()
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda d: subprocess.run(
            ["curl", "-sf", "-o", str(out / d.replace(":", "-")), f"{url}/blobs/{d}"],
            check=True), digests))
    seconds = time.perf_counter() - start
    shutil.rmtree(out)
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--only", default="a,b,c")
    args = parser.parse_args()
    wanted = args.only.split(",")
    tank_cmd = [str(Path(sys.executable).with_name("tank"))]
    print("building the images…", file=sys.stderr)
    images = {k: v for k, v in build_images().items() if k in wanted}
    results: dict[str, dict[str, list[Run]]] = {}
    raw: list[float] = []
    with tempfile.TemporaryDirectory(prefix="tank-bench-", dir="/var/tmp") as tmp_s, \
            LocalRegistry() as reg:
        tmp = Path(tmp_s)
        with Pusher(reg.url) as pusher:
            for name, image in images.items():
                pusher.push_image(f"bench/{name}", "v1", image)
        # keep only what the timing needs: (digest, size) per blob
        shapes = {name: [(b.digest, b.size) for b in image.blobs()]
                  for name, image in images.items()}
        layer_counts = {name: len(image.layers) for name, image in images.items()}
        del images
        for name, blobs in shapes.items():
            ref = f"{reg.host}/bench/{name}:v1"
            size = sum(s for _, s in blobs)
            print(f"({name}) {layer_counts[name]} layers, {size / MB:.1f} MB", file=sys.stderr)
            runs: dict[str, list[Run]] = {"tank": [], "skopeo": []}
            for i in range(args.rounds):
                cache, dest = tmp / f"cache-{name}-{i}", tmp / f"tank-{name}-{i}"
                runs["tank"].append(timed(
                    [*tank_cmd, "pull", ref, "-o", f"oci:{dest}:v1", "--cache", str(cache),
                     "-q"], tmp / "rss"))
                shutil.rmtree(cache)
                shutil.rmtree(dest)
                dest = tmp / f"skopeo-{name}-{i}"
                runs["skopeo"].append(timed(
                    ["skopeo", "copy", "--insecure-policy", "--src-tls-verify=false", "-q",
                     f"docker://{ref}", f"oci:{dest}:v1"], tmp / "rss"))
                shutil.rmtree(dest)
                print(f"  round {i + 1}: tank {runs['tank'][-1].seconds:.2f} s, "
                      f"skopeo {runs['skopeo'][-1].seconds:.2f} s", file=sys.stderr)
            results[name] = runs
            if name == "a":
                raw = [curl_all(f"{reg.url}/v2/bench/a", blobs, tmp / f"curl-{i}")
                       for i in range(args.rounds)]

    print(machine_line())
    print(f"tank pull vs skopeo copy, {args.rounds} alternating rounds, medians, cold cache, "
          f"{os.cpu_count()} cores")
    print(f"{'image':<28}{'tank s':>8}{'skopeo s':>10}{'ratio':>7}{'tank RSS':>10}"
          f"{'skopeo RSS':>12}")
    labels = {"a": "(a) ~1 GB, 8 layers", "b": "(b) 40 small layers", "c": "(c) 5 MB, 3 layers"}
    for name, runs in results.items():
        t = statistics.median(r.seconds for r in runs["tank"])
        s = statistics.median(r.seconds for r in runs["skopeo"])
        tr = max(r.peak_rss_kib for r in runs["tank"]) / 1024
        sr = max(r.peak_rss_kib for r in runs["skopeo"]) / 1024
        print(f"{labels[name]:<28}{t:>8.2f}{s:>10.2f}{t / s:>7.2f}{tr:>8.0f} MB{sr:>10.0f} MB")
        if name == "a" and raw:
            r = statistics.median(raw)
            print(f"    raw limit (4 parallel curls, unverified): {r:.2f} s; "
                  f"tank is {t / r:.2f}x of it")
        if name == "b":
            print(f"    target 0.75x skopeo = {0.75 * s:.2f} s; tank is at {t / s:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
