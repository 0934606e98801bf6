"""`tank` unpack against `umoci unpack` and plain `tar -xzf`, same run.

    .venv/bin/python benchmarks/unpack_vs_umoci.py [--rounds 3] [--dir /var/tmp] [--image a|small]

Builds image (a) of ``pull_vs_skopeo.py`` (about 1 GB in 8 gzip layers, 1.3 GB unpacked), or with
``--image small`` one layer of 57,000 small files (as a ``node_modules`` or a ``site-packages``
is: 2,400 folders, files of 100 B to 12 kB, text-like), and puts it in a fresh tank cache as if
pulled (layers already cached), and in an OCI layout for umoci.
Then, per round and in turn, each a fresh process into a fresh directory on the same filesystem,
timed by wall clock with its peak RSS (GNU time), after a ``sync`` so that no run pays for the
previous run's writeback:

- ``tank --no-rootfs-cache``: :func:`tank.unpack.unpack` straight into the directory;
- ``umoci unpack --rootless`` from the layout;
- ``tar -xzf`` of each layer in sequence into one directory (the practical limit: no hashing, no
  whiteouts, no checks);
- tank's cached path: build ``rootfs/<digest>`` in the cache and copy it out, then a second
  unpack of the same image, which only copies.

Prints medians, tank/tar and umoci/tank ratios. Target: tank no slower than ``tar -xzf`` in
sequence, and at least 2x faster than umoci.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from machine import machine_line  # beside this file: on sys.path when run as a script
from pull_vs_skopeo import _TEXTISH, build_images  # beside this file: on sys.path as a script
from tank.outputs.layout import write_image
from tank.store import Store
from tank.testing.images import Blob, Image, make_image

REF = "bench.test/unpack/a:v1"

_TANK = """
import os, sys
from tank import unpack
from tank.layers.compression import use_isal
use_isal(os.environ.get("TANK_INFLATE") != "zlib")
unpack(sys.argv[1], sys.argv[2], cache=sys.argv[3], rootfs_cache=sys.argv[4] == "cache")
"""


@dataclass
class Run:
    """One timed run."""

    seconds: float
    peak_rss_kib: int


def timed(cmd: Sequence[str], scratch: Path) -> Run:
    """``sync``, then run ``cmd`` under GNU time; its wall time and peak RSS."""
    subprocess.run(["sync"], check=True)
    rss = scratch / "rss"
    start = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", str(rss), *cmd],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.decode()}")
    return Run(seconds, int(rss.read_text().split()[-1]))


def remove(path: Path) -> None:
    """Remove a tree, outside the timing."""
    if path.exists():
        subprocess.run(["rm", "-rf", str(path)], check=True)


def small_files_image(files: int = 57_000, folders: int = 2_400) -> Image:
    """One gzip layer of ``files`` small text-like files in ``folders`` folders."""
    import gzip
    import hashlib
    import io
    import random
    import tarfile

    rng = random.Random(57)
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for i in range(files):  # in tree order, as a layer builder walks a folder
            d = i * folders // files
            folder = f"usr/lib/node_modules/pkg-{d // 40:02d}/lib-{d:04d}"
            if i == 0 or (i - 1) * folders // files != d:
                info = tarfile.TarInfo(folder)
                info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 1_700_000_000
                tar.addfile(info)
            size = min(12_000, max(100, int(rng.lognormvariate(7.3, 0.9))))
            data = rng.randbytes(size).translate(_TEXTISH)
            info = tarfile.TarInfo(f"{folder}/f{i}.js")
            info.size, info.mode, info.mtime = size, 0o644, 1_700_000_000
            tar.addfile(info, io.BytesIO(data))
    tar_bytes = raw.getvalue()
    diff_id = "sha256:" + hashlib.sha256(tar_bytes).hexdigest()
    layer = Blob.of(gzip.compress(tar_bytes, compresslevel=6, mtime=0),
                    "application/vnd.oci.image.layer.v1.tar+gzip", diff_id)
    return make_image([layer])


def seed(cache: Path, layout: Path, which: str = "a") -> list[Path]:
    """The image into a tank cache (as pulled) and an OCI layout; the layer files, in order."""
    print(f"building image ({which})…", file=sys.stderr)
    image = build_images()["a"] if which == "a" else small_files_image()
    store = Store(cache)
    for blob in image.blobs():
        store.put_bytes(blob.digest, blob.data)
    store.put_bytes(image.manifest_digest, image.manifest)
    store.set_ref("bench.test", "unpack/a", "v1", image.manifest_digest, image.media_type)
    blobs = {b.digest: store.blob_path(b.digest) for b in image.blobs()}
    blobs[image.manifest_digest] = store.blob_path(image.manifest_digest)
    write_image(layout, manifest_digest=image.manifest_digest,
                manifest_media_type=image.media_type, manifest_size=len(image.manifest),
                ref_name="v1", blobs=blobs, platform=image.platform)
    size = sum(b.size for b in image.layers)
    print(f"image ({which}): {len(image.layers)} layers, {size / 1e6:.0f} MB compressed",
          file=sys.stderr)
    return [store.blob_path(b.digest) for b in image.layers]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dir", default="/var/tmp", help="where to unpack (one filesystem)")
    parser.add_argument("--image", choices=("a", "small"), default="a",
                        help="a: the ~1 GB 8-layer image; small: 57,000 small files")
    parser.add_argument("--no-isal", action="store_true",
                        help="inflate gzip with zlib even when isal is installed")
    args = parser.parse_args()
    python = sys.executable
    if args.no_isal:
        os.environ["TANK_INFLATE"] = "zlib"
    from tank.layers.compression import use_isal

    inflate = use_isal(not args.no_isal)
    results: dict[str, list[Run]] = {k: [] for k in ("tank", "umoci", "tar", "build", "copy")}
    with tempfile.TemporaryDirectory(prefix="tank-unpack-bench-", dir=args.dir) as tmp_s:
        tmp = Path(tmp_s)
        cache, layout = tmp / "cache", tmp / "layout"
        layers = seed(cache, layout, args.image)
        unpacked = 0
        for i in range(args.rounds):
            dest = tmp / f"tank-{i}"
            results["tank"].append(timed(
                [python, "-c", _TANK, REF, str(dest), str(cache), "direct"], tmp))
            if not unpacked:
                unpacked = int(subprocess.run(["du", "-sb", str(dest)], capture_output=True,
                                              text=True, check=True).stdout.split()[0])
            remove(dest)

            bundle = tmp / f"umoci-{i}"
            results["umoci"].append(timed(
                [shutil.which("umoci") or "umoci", "unpack", "--rootless", "--image",
                 f"{layout}:v1", str(bundle)], tmp))
            remove(bundle)

            dest = tmp / f"tar-{i}"
            dest.mkdir()
            script = " && ".join(f"tar -xzf {p} -C {dest}" for p in layers)
            results["tar"].append(timed(["sh", "-c", script], tmp))
            remove(dest)

            first, second = tmp / f"cached-{i}", tmp / f"copied-{i}"
            results["build"].append(timed(
                [python, "-c", _TANK, REF, str(first), str(cache), "cache"], tmp))
            results["copy"].append(timed(
                [python, "-c", _TANK, REF, str(second), str(cache), "cache"], tmp))
            remove(first)
            remove(second)
            remove(cache / "rootfs")
            print("  round {}: tank {:.2f} s, umoci {:.2f} s, tar {:.2f} s, cached build+copy "
                  "{:.2f} s, copy {:.2f} s".format(i + 1, *(results[k][-1].seconds for k in
                                                           results)), file=sys.stderr)

    med = {k: statistics.median(r.seconds for r in runs) for k, runs in results.items()}
    rss = {k: max(r.peak_rss_kib for r in runs) / 1024 for k, runs in results.items()}
    print(machine_line())
    print(f"unpack of image ({args.image}): {len(layers)} gzip layers, "
          f"{unpacked / 1e9:.2f} GB unpacked, inflate {inflate}; "
          f"{args.rounds} rounds, medians, {os.cpu_count()} cores, as uid {os.geteuid()}")
    labels = {
        "tank": "tank --no-rootfs-cache",
        "umoci": "umoci unpack --rootless",
        "tar": "tar -xzf, layers in sequence",
        "build": "tank, cached: build + copy",
        "copy": "tank, cached: copy only",
    }
    for key, label in labels.items():
        print(f"  {label:<32}{med[key]:>8.2f} s{rss[key]:>8.0f} MB peak RSS")
    print(f"  tank / tar -xzf  = {med['tank'] / med['tar']:.2f}  (target <= 1.00)")
    print(f"  umoci / tank     = {med['umoci'] / med['tank']:.2f}  (target >= 2.00)")
    print(json.dumps({k: round(v, 3) for k, v in med.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
