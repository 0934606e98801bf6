"""`tank cat` and `tank export` of the ~1 GB image against unpacking it, same run.

    .venv/bin/python benchmarks/inside_vs_unpack.py [--rounds 3] [--dir /var/tmp] [--files N]

Builds image (a) of ``pull_vs_skopeo.py`` (about 1 GB in 8 gzip layers, 1.3 GB unpacked) with a
small ninth layer on top holding ``etc/os-release`` (and its parent directory, as ``docker
build`` writes layers), pushes it to the real registry on loopback, then per round, each command
a fresh process timed by wall clock with its peak RSS (GNU time), after a ``sync``:

``cat``, each with a cold cache:

- ``tank cat REF /etc/os-release``: manifest, config and the top layer only;
- ``tank pull REF -o rootfs:DIR --no-rootfs-cache`` then ``cat DIR/etc/os-release``.

``export``, the blobs already in the cache (the pull is not what is measured):

- ``tank export REF -o FILE``;
- ``tank pull REF -o rootfs:DIR --no-rootfs-cache`` then ``tar -cf FILE -C DIR .``;
- the layers read with tar, as ``crane export`` reads them: ``tar -xzf`` of each layer in
  sequence into DIR (no whiteouts, no checks), then ``tar -cf FILE -C DIR .``.

With ``--files N`` it also pushes an image of one layer of N empty files in N/1000 directories
and times ``tank ls REF -R`` (cache warm), reporting the peak RSS per file.

Prints medians and ratios. Targets: ``tank cat`` reads only the top layer; ``tank export`` is at
least as fast as both other ways to a tar.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from machine import machine_line  # beside this file: on sys.path when run as a script
from pull_vs_skopeo import build_images  # beside this file: on sys.path when run as a script
from tank.inside.export import header
from tank.store import Store
from tank.testing.images import Blob, Image, Pusher, make_image, make_layer
from tank.testing.registry import LocalRegistry
from unpack_vs_umoci import Run, remove, timed  # beside this file

OS_RELEASE = b'PRETTY_NAME="Tank Bench"\nID=bench\n'


def bench_image() -> Image:
    """Image (a) with a small top layer holding etc/os-release."""
    a = build_images()["a"]
    top = make_layer({"etc/os-release": OS_RELEASE})
    return make_image([*a.layers, top])


def files_image(count: int) -> Image:
    """One layer of ``count`` empty files, 1000 to a directory."""
    raw = io.BytesIO()
    for d in range(max(1, count // 1000)):
        raw.write(header(f"data/d{d:05d}/", tarfile.DIRTYPE, mode=0o755,
                         mtime_ns=1_700_000_000 * 10**9))
        for f in range(min(1000, count - d * 1000)):
            raw.write(header(f"data/d{d:05d}/file-{f:04d}.txt", tarfile.REGTYPE,
                             mtime_ns=(1_700_000_000 + f) * 10**9))
    raw.write(bytes(1024))
    plain = raw.getvalue()
    return make_image([Blob.of(gzip.compress(plain, 1, mtime=0),
                               "application/vnd.oci.image.layer.v1.tar+gzip",
                               "sha256:" + hashlib.sha256(plain).hexdigest())])


def tank_cmd() -> str:
    return str(Path(sys.executable).with_name("tank"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dir", default="/var/tmp", help="where to write (one filesystem)")
    parser.add_argument("--files", type=int, default=0, help="also list an image of N files")
    args = parser.parse_args()
    tank = tank_cmd()
    print("building the image…", file=sys.stderr)
    image = bench_image()
    results: dict[str, list[Run]] = {k: [] for k in (
        "cat", "pull+cat", "export", "pull+tar", "tar+tar")}
    with tempfile.TemporaryDirectory(prefix="tank-inside-bench-", dir=args.dir) as tmp_s, \
            LocalRegistry() as reg:
        tmp = Path(tmp_s)
        with Pusher(reg.url) as pusher:
            pusher.push_image("bench/inside", "v1", image)
        ref = f"{reg.host}/bench/inside:v1"
        warm = tmp / "warm"
        subprocess.run([tank, "pull", ref, "-q", "--cache", str(warm)], check=True)
        layers = [Store(warm).blob_path(b.digest) for b in image.layers]
        top_only = None
        for i in range(args.rounds):
            cold = tmp / f"cold-{i}"
            out = tmp / "os-release"
            results["cat"].append(timed(["sh", "-c", f"{tank} cat {ref} /etc/os-release -q "
                                         f"--cache {cold} > {out}"], tmp))
            assert out.read_bytes() == OS_RELEASE
            cached = [b.digest for b in image.layers if Store(cold).has_blob(b.digest)]
            top_only = cached == [image.layers[-1].digest]
            remove(cold)

            root = tmp / f"root-{i}"
            results["pull+cat"].append(timed(["sh", "-c", (
                f"{tank} pull {ref} -q --cache {cold} -o rootfs:{root} --no-rootfs-cache && "
                f"cat {root}/etc/os-release > {out}")], tmp))
            remove(cold)
            remove(root)

            tar = tmp / "export.tar"
            results["export"].append(timed([tank, "export", ref, "-q", "--cache", str(warm),
                                            "-o", str(tar)], tmp))
            size = tar.stat().st_size
            tar.unlink()

            results["pull+tar"].append(timed(["sh", "-c", (
                f"{tank} pull {ref} -q --cache {warm} -o rootfs:{root} --no-rootfs-cache && "
                f"tar -cf {tar} -C {root} .")], tmp))
            remove(root)
            tar.unlink()

            root.mkdir()
            script = " && ".join(f"tar -xzf {p} -C {root}" for p in layers)
            results["tar+tar"].append(timed(["sh", "-c", f"{script} && tar -cf {tar} -C "
                                             f"{root} ."], tmp))
            remove(root)
            tar.unlink()
            print(f"  round {i + 1}: " + ", ".join(
                f"{k} {v[-1].seconds:.2f} s" for k, v in results.items()), file=sys.stderr)

        listing = None
        if args.files:
            print(f"building an image of {args.files} files…", file=sys.stderr)
            with Pusher(reg.url) as pusher:
                pusher.push_image("bench/files", "v1", files_image(args.files))
            many = f"{reg.host}/bench/files:v1"
            subprocess.run([tank, "pull", many, "-q", "--cache", str(warm)], check=True)
            runs = []
            for _ in range(args.rounds):
                runs.append(timed(["sh", "-c", f"{tank} ls {many} -R -q --cache {warm} | "
                                   "wc -l > /dev/null"], tmp))
            listing = (statistics.median(r.seconds for r in runs),
                       max(r.peak_rss_kib for r in runs))

    med = {k: statistics.median(r.seconds for r in runs) for k, runs in results.items()}
    rss = {k: max(r.peak_rss_kib for r in runs) / 1024 for k, runs in results.items()}
    print(machine_line())
    print(f"image (a) + a top layer: {len(image.layers)} gzip layers, "
          f"{sum(b.size for b in image.layers) / 1e6:.0f} MB compressed; export tar "
          f"{size / 1e9:.2f} GB; {args.rounds} rounds, medians, {os.cpu_count()} cores, "
          f"as uid {os.geteuid()}")
    labels = {
        "cat": "tank cat (cold cache)",
        "pull+cat": "tank pull -o rootfs: + cat (cold)",
        "export": "tank export -o FILE (warm)",
        "pull+tar": "tank pull -o rootfs: + tar -c (warm)",
        "tar+tar": "tar -xzf per layer + tar -c",
    }
    for key, label in labels.items():
        print(f"  {label:<38}{med[key]:>8.2f} s{rss[key]:>8.0f} MB peak RSS")
    print(f"  tank cat fetched only the top layer: {top_only}")
    print(f"  (pull + cat) / cat        = {med['pull+cat'] / med['cat']:.1f}")
    print(f"  export / (pull + tar -c)  = {med['export'] / med['pull+tar']:.2f}  (target <= 1)")
    print(f"  export / (tar -x + tar -c) = {med['export'] / med['tar+tar']:.2f}  (target <= 1)")
    if listing is not None:
        seconds, peak = listing
        print(f"  tank ls -R of {args.files} files: {seconds:.2f} s, {peak / 1024:.0f} MB peak "
              f"RSS ({peak * 1024 / args.files:.0f} B a file, interpreter included)")
    print(json.dumps({k: round(v, 3) for k, v in med.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
