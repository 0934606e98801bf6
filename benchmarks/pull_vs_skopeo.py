"""`tank pull -o oci:` against `skopeo copy docker:// oci:`, same machine, same run.

    .venv/bin/python benchmarks/pull_vs_skopeo.py [--rounds 5] [--only a,b,c] [--scale 1.0]

Starts the real registry on loopback (plain HTTP) and seeds three images:

- (a) about 1 GB in 8 gzip layers of uneven size: files of incompressible bytes and of
  text-like bytes (about 2:1 under gzip), as real layers mix binaries and text;
- (b) 40 small layers (5 to 50 kB each);
- (c) a 5 MB image in 3 layers.

Then, per image and round, alternating: a cold-cache ``tank pull REF -o oci:DIR:TAG -q`` and
``skopeo copy docker://REF oci:DIR:TAG``, each a fresh process into a fresh directory, timed by
wall clock with the child's peak RSS (GNU time). Prints medians, tank/skopeo ratios, peak RSS, and:

- for (a), tank with one connection per blob too (``--layer-connections 1``), and the bound of a
  verified, durable pull, each part measured in the same run: every blob by four parallel
  ``curl``s (unverified); the ``fsync`` of what they wrote; the largest blob / one core's SHA-256
  rate; all bytes / (cores x that rate). The bound is the largest of the four; tank's ratio to it
  is printed (target <= 1.5);
- for (b) and (c), the in-process figure (``tank.pull()`` timed inside a running interpreter,
  what a library user pays) and a warm re-pull (the tag pulled before: one ``HEAD``) against
  ``tank --version`` plus one ``curl -I`` of the manifest.
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


def curl_all(url: str, blobs: list[tuple[str, int]], out: Path) -> tuple[float, float]:
    """Every blob by four parallel curls, biggest first; wall seconds, then the seconds an
    ``fsync`` of every file they wrote takes."""
    subprocess.run(["sync"], check=True)
    out.mkdir(parents=True, exist_ok=True)
    digests = [d for d, _ in sorted(blobs, key=lambda b: -b[1])]
    start = time.perf_counter()
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda d: subprocess.run(
            ["curl", "-sf", "-o", str(out / d.replace(":", "-")), f"{url}/blobs/{d}"],
            check=True), digests))
    seconds = time.perf_counter() - start
    start = time.perf_counter()
    for path in out.iterdir():
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    synced = time.perf_counter() - start
    shutil.rmtree(out)
    return seconds, synced


def sha256_rate(mb: int = 256) -> float:
    """One core's SHA-256 rate here (hashlib, as tank uses it), bytes per second: best of 3."""
    import hashlib

    data = os.urandom(mb * MB)
    best = 0.0
    for _ in range(3):
        start = time.perf_counter()
        hashlib.sha256(data).digest()
        best = max(best, len(data) / (time.perf_counter() - start))
    return best


_IN_PROCESS = """
import sys, time
import tank
start = time.perf_counter()
tank.pull(sys.argv[1], cache=sys.argv[2], output=f"oci:{sys.argv[3]}:v1")
print(time.perf_counter() - start)
"""


def in_process(ref: str, cache: Path, dest: Path) -> float:
    """``tank.pull()`` timed inside a fresh interpreter, imports already done; seconds."""
    out = subprocess.run([sys.executable, "-c", "import tank._pull\n" + _IN_PROCESS, ref,
                          str(cache), str(dest)], capture_output=True, text=True, check=True)
    shutil.rmtree(cache)
    shutil.rmtree(dest)
    return float(out.stdout.split()[-1])


def warm(tank: str, ref: str, cache: Path, dest: Path, url: str, rss: Path) -> tuple[Run, float]:
    """A re-pull of a tag already pulled (one HEAD); and ``tank --version`` + one curl -I."""
    subprocess.run([tank, "pull", ref, "--cache", str(cache), "-q"], check=True,
                   stdout=subprocess.DEVNULL)
    again = timed([tank, "pull", ref, "--cache", str(cache), "-q"], rss)
    start = time.perf_counter()
    subprocess.run([tank, "--version"], check=True, stdout=subprocess.DEVNULL)
    subprocess.run(["curl", "-sfI", "-H", "Accept: application/vnd.oci.image.manifest.v1+json",
                    f"{url}/manifests/v1"], check=True, stdout=subprocess.DEVNULL)
    floor = time.perf_counter() - start
    shutil.rmtree(cache)
    shutil.rmtree(dest, ignore_errors=True)
    return again, floor


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
    raw: list[tuple[float, float]] = []
    inproc: dict[str, list[float]] = {}
    warms: dict[str, list[tuple[Run, float]]] = {}
    rate = sha256_rate()
    with tempfile.TemporaryDirectory(prefix="tank-bench-", dir="/var/tmp") as tmp_s, \
            LocalRegistry() as reg:
        tmp = Path(tmp_s)
        with Pusher(reg.url) as pusher:
            for name, image in images.items():
                pusher.push_image(f"bench/{name}", "v1", image)
        # keep only what the timing needs: (digest, size) per blob; and the layers' sizes
        shapes = {name: [(b.digest, b.size) for b in image.blobs()]
                  for name, image in images.items()}
        layer_counts = {name: len(image.layers) for name, image in images.items()}
        del images
        for name, blobs in shapes.items():
            ref = f"{reg.host}/bench/{name}:v1"
            size = sum(s for _, s in blobs)
            print(f"({name}) {layer_counts[name]} layers, {size / MB:.1f} MB", file=sys.stderr)
            runs: dict[str, list[Run]] = {"tank": [], "skopeo": []}
            if name == "a":
                runs["tank-1"] = []
            for i in range(args.rounds):
                for key in runs:
                    if key == "skopeo":
                        continue
                    one = ["--layer-connections", "1"] if key == "tank-1" else []
                    cache, dest = tmp / f"cache-{name}-{i}", tmp / f"tank-{name}-{i}"
                    runs[key].append(timed(
                        [*tank_cmd, "pull", ref, "-o", f"oci:{dest}:v1", "--cache", str(cache),
                         "-q", *one], tmp / "rss"))
                    shutil.rmtree(cache)
                    shutil.rmtree(dest)
                dest = tmp / f"skopeo-{name}-{i}"
                runs["skopeo"].append(timed(
                    ["skopeo", "copy", "--insecure-policy", "--src-tls-verify=false", "-q",
                     f"docker://{ref}", f"oci:{dest}:v1"], tmp / "rss"))
                shutil.rmtree(dest)
                print(f"  round {i + 1}: " + ", ".join(
                    f"{k} {v[-1].seconds:.2f} s" for k, v in runs.items()), file=sys.stderr)
                if name != "a":
                    inproc.setdefault(name, []).append(
                        in_process(ref, tmp / f"ip-cache-{name}-{i}", tmp / f"ip-{name}-{i}"))
                    warms.setdefault(name, []).append(warm(
                        tank_cmd[0], ref, tmp / f"w-cache-{name}-{i}", tmp / f"w-{name}-{i}",
                        f"{reg.url}/v2/bench/{name}", tmp / "rss"))
            results[name] = runs
            if name == "a":
                raw = [curl_all(f"{reg.url}/v2/bench/a", blobs, tmp / f"curl-{i}")
                       for i in range(args.rounds)]

    print(machine_line())
    print(f"tank pull vs skopeo copy, {args.rounds} alternating rounds, medians, cold cache, "
          f"{os.cpu_count()} cores; SHA-256 on one core: {rate / 1e9:.2f} GB/s")
    print(f"{'image':<28}{'tank s':>8}{'skopeo s':>10}{'ratio':>7}{'tank RSS':>10}"
          f"{'skopeo RSS':>12}")
    labels = {"a": "(a) ~1 GB, 8 layers", "b": "(b) 40 small layers", "c": "(c) 5 MB, 3 layers"}
    for name, runs in results.items():
        t = statistics.median(r.seconds for r in runs["tank"])
        s = statistics.median(r.seconds for r in runs["skopeo"])
        tr = max(r.peak_rss_kib for r in runs["tank"]) / 1024
        sr = max(r.peak_rss_kib for r in runs["skopeo"]) / 1024
        print(f"{labels[name]:<28}{t:>8.2f}{s:>10.2f}{t / s:>7.2f}{tr:>8.0f} MB{sr:>10.0f} MB")
        if "tank-1" in runs:
            t1 = statistics.median(r.seconds for r in runs["tank-1"])
            r1 = max(r.peak_rss_kib for r in runs["tank-1"]) / 1024
            label = "    one connection per blob"
            print(f"{label:<28}{t1:>8.2f}{'':>10}{t1 / s:>7.2f}{r1:>8.0f} MB")
        if name == "a" and raw:
            shape = shapes[name]
            total, largest = sum(n for _, n in shape), max(n for _, n in shape)
            curl = statistics.median(c for c, _ in raw)
            sync = statistics.median(f for _, f in raw)
            parts = {"4 curls": curl, "fsync": sync, "largest blob / SHA-256": largest / rate,
                     "all bytes / (cores x SHA-256)": total / ((os.cpu_count() or 1) * rate)}
            bound = max(parts.values())
            print("    bound: " + ", ".join(f"{k} {v:.2f} s" for k, v in parts.items()))
            print(f"    bound = {bound:.2f} s; tank is at {t / bound:.2f}x of it (target <= 1.5)")
        if name in inproc:
            ip = statistics.median(inproc[name])
            again = statistics.median(r.seconds for r, _ in warms[name])
            floor = statistics.median(f for _, f in warms[name])
            print(f"    in process (tank.pull()): {ip:.3f} s; warm re-pull {again:.3f} s vs "
                  f"tank --version + one curl -I {floor:.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
