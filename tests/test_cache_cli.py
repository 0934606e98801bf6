"""`tank cache ls | du | prune` and `verify --fix`, on caches filled by real pulls; prune while a
pull is held mid-blob by a stalling front."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import filelock
import pytest

from tank._pull import pull
from tank.store import Store
from tank.store.maintenance import listing, parse_duration, prune, usage
from tank.testing.fronts import MakeFront, Recorded, Response
from tank.testing.images import Image, Pusher, make_image, make_layer, random_bytes_stream
from tank.testing.registry import LocalRegistry
from tank.testing.seed import Seeded

LS_KEYS = {"cache", "images", "blobs", "rootfs", "ingest"}
IMAGE_KEYS = {"reference", "digest", "mediaType", "updated", "cached", "size", "platforms"}
DU_KEYS = {"cache", "images", "blobs", "used", "unused", "ingest", "rootfs", "total"}
PRUNE_KEYS = {"dryRun", "images", "blobs", "ingest", "rootfs", "scratch", "bytesFreed", "keptInUse",
              "keptRecent", "windowSeconds"}


def tank_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tank", *args], capture_output=True, text=True, timeout=120,
        env=dict(os.environ),
    )


def backdate(cache: Path, seconds: float) -> None:
    """Make every blob and ingest file look ``seconds`` old."""
    when = time.time() - seconds
    for sub in ("blobs", "ingest"):
        for path in (cache / sub).rglob("*"):
            if path.is_file():
                os.utime(path, (when, when))


def digests_of(image: Image) -> set[str]:
    return {image.manifest_digest, *(b.digest for b in image.blobs())}


@pytest.fixture
def filled(registry: LocalRegistry, seeded: Seeded, tmp_path: Path) -> tuple[Path, set[str]]:
    """A cache holding ``multi`` (amd64), ``latest`` and ``docker``, recorded, and the arm64 image
    of ``list`` pulled by digest (not recorded); returns the cache and the unused digests."""
    cache = tmp_path / "cache"
    host, repo = registry.host, seeded.repo
    for tag in ("multi", "latest", "docker"):
        pull(f"{host}/{repo}:{tag}", platform="linux/amd64", cache=cache)
    arm = seeded.list.image_for("linux", "arm64", "v8")
    pull(f"{host}/{repo}@{arm.manifest_digest}", cache=cache)
    used = {seeded.multi.manifest_digest} | digests_of(seeded.latest) | digests_of(seeded.docker)
    return cache, digests_of(arm) - used


def test_ls_and_du(
    filled: tuple[Path, set[str]], registry: LocalRegistry, seeded: Seeded
) -> None:
    cache, unused = filled
    out = tank_cli("cache", "ls", "--cache", str(cache), "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert set(doc) == LS_KEYS
    assert doc["cache"] == str(cache)
    images = {i["reference"]: i for i in doc["images"]}
    ref = f"{registry.host}/{seeded.repo}"
    assert set(images) == {f"{ref}:multi", f"{ref}:latest", f"{ref}:docker"}
    for image in images.values():
        assert set(image) == IMAGE_KEYS
        assert image["cached"] is True
        assert image["platforms"] == ["linux/amd64"]
    multi = images[f"{ref}:multi"]
    assert multi["digest"] == seeded.multi.manifest_digest
    assert multi["mediaType"] == "application/vnd.oci.image.index.v1+json"
    assert multi["size"] == len(seeded.multi.manifest) + sum(
        len(b.data) for b in seeded.latest.blobs()) + len(seeded.latest.manifest)
    blobs = {b["digest"]: b for b in doc["blobs"]}
    assert {d for d, b in blobs.items() if not b["used"]} == unused
    assert doc["rootfs"] == []
    assert doc["ingest"] == []

    du = tank_cli("cache", "du", "--cache", str(cache), "--json")
    assert du.returncode == 0, du.stderr
    sizes = json.loads(du.stdout)
    assert set(sizes) == DU_KEYS
    assert sizes["images"] == 3
    assert sizes["unused"]["count"] == len(unused)
    assert sizes["used"]["count"] + sizes["unused"]["count"] == sizes["blobs"]["count"]
    assert sizes["blobs"]["size"] == sum(b["size"] for b in doc["blobs"])
    assert sizes["total"] == sizes["blobs"]["size"]

    text = tank_cli("cache", "ls", "--cache", str(cache))
    assert f"{ref}:docker" in text.stdout
    assert "linux/amd64" in text.stdout
    text = tank_cli("cache", "du", "--cache", str(cache))
    assert "unused" in text.stdout
    assert "total" in text.stdout


def test_prune_removes_only_what_no_recorded_image_uses(
    filled: tuple[Path, set[str]], registry: LocalRegistry, seeded: Seeded
) -> None:
    cache, unused = filled
    fresh = tank_cli("cache", "prune", "--cache", str(cache), "--json")
    assert fresh.returncode == 0, fresh.stderr
    doc = json.loads(fresh.stdout)
    assert set(doc) == PRUNE_KEYS
    assert doc["blobs"] == []  # written just now: a running pull might still need them
    assert set(doc["keptRecent"]) == unused

    backdate(cache, 3600)
    dry = json.loads(tank_cli("cache", "prune", "--cache", str(cache), "--json",
                              "--dry-run").stdout)
    assert dry["dryRun"] is True
    assert {b["digest"] for b in dry["blobs"]} == unused
    assert all(Store(cache).has_blob(d) for d in unused)

    out = tank_cli("cache", "prune", "--cache", str(cache), "--json")
    doc = json.loads(out.stdout)
    assert {b["digest"] for b in doc["blobs"]} == unused
    assert doc["bytesFreed"] == sum(b["size"] for b in doc["blobs"])
    assert doc["images"] == []
    store = Store(cache)
    assert not any(store.has_blob(d) for d in unused)
    for tag in ("multi", "latest", "docker"):  # every recorded image is still whole
        again = tank_cli("pull", f"{registry.host}/{seeded.repo}:{tag}", "--offline",
                         "--cache", str(cache), "--platform", "linux/amd64", "-q")
        assert again.returncode == 0, again.stderr
    assert tank_cli("cache", "verify", "--cache", str(cache)).returncode == 0
    assert json.loads(tank_cli("cache", "prune", "--cache", str(cache), "--json").stdout)[
        "blobs"] == []


def test_prune_older_than_forgets_images_not_pulled_since(
    registry: LocalRegistry, seeded: Seeded, tmp_path: Path
) -> None:
    old = make_image([make_layer({"etc/old": b"old\n"})])
    with Pusher(registry.url) as pusher:
        pusher.push_image("library/old", "v1", old)
    cache = tmp_path / "cache"
    pull(f"{registry.host}/library/old:v1", cache=cache)
    pull(f"{registry.host}/{seeded.repo}:latest", cache=cache)
    record = cache / "refs" / registry.host / "library" / "old" / "v1.json"
    doc = json.loads(record.read_text())
    doc["updated"] = (datetime.now(UTC) - timedelta(days=10)).isoformat(timespec="seconds")
    record.write_text(json.dumps(doc))
    backdate(cache, 8 * 86400)
    out = tank_cli("cache", "prune", "--cache", str(cache), "--older-than", "7d", "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["images"] == [f"{registry.host}/library/old:v1"]
    assert {b["digest"] for b in result["blobs"]} == digests_of(old)
    assert result["windowSeconds"] == 7 * 86400
    assert [i.reference for i in listing(cache).images] == [
        f"{registry.host}/{seeded.repo}:latest"
    ]
    assert all(Store(cache).has_blob(d) for d in digests_of(seeded.latest))


def test_prune_all(filled: tuple[Path, set[str]]) -> None:
    cache, _ = filled
    out = tank_cli("cache", "prune", "--cache", str(cache), "--all")
    assert out.returncode == 0, out.stderr
    assert listing(cache).images == ()
    assert listing(cache).blobs != ()  # written in the last 10 minutes: kept for now
    backdate(cache, 3600)
    out = tank_cli("cache", "prune", "--cache", str(cache), "--all")
    assert out.returncode == 0, out.stderr
    assert "removed" in out.stdout
    assert listing(cache).blobs == ()
    assert usage(cache).total == 0


@pytest.mark.parametrize(
    "args", [["--all", "--older-than", "1d"], ["--older-than", "7 days"], ["--older-than", "x"]]
)
def test_prune_usage_errors(args: list[str], tmp_path: Path) -> None:
    out = tank_cli("cache", "prune", "--cache", str(tmp_path), *args)
    assert out.returncode == 2
    assert out.stdout == ""


def test_parse_duration() -> None:
    assert parse_duration("7d") == 7 * 86400
    assert parse_duration("12h") == 12 * 3600
    assert parse_duration("1h30m") == 5400
    assert parse_duration("0") == parse_duration("0s") == 0
    assert parse_duration("2w") == 14 * 86400
    for bad in ("", "7", "d", "1x", "1d 2h", "-1d"):
        with pytest.raises(ValueError, match="invalid duration"):
            parse_duration(bad)


def test_prune_ingest_leftovers_and_root_filesystems(
    filled: tuple[Path, set[str]], seeded: Seeded
) -> None:
    cache, unused = filled
    store = Store(cache)
    ingest = cache / "ingest"
    ingest.mkdir(exist_ok=True)
    stale, fresh, held = ("sha256:" + c * 64 for c in "abc")
    for d in (stale, fresh, held):
        (ingest / f"sha256-{d[7:]}.part").write_bytes(b"partial")
    backdate(cache, 3600)
    os.utime(ingest / f"sha256-{fresh[7:]}.part")

    # root filesystems as tank.unpack lays them out: rootfs/[rootless/]<alg>/<hex>
    rootfs = cache / "rootfs"
    used_child = seeded.multi.image_for("linux", "amd64").manifest_digest
    keep = rootfs / "sha256" / used_child[7:]
    (keep / "etc").mkdir(parents=True)
    (keep / "etc" / "hostname").write_text("tank\n")
    rootless = rootfs / "rootless" / "sha256" / ("d" * 64)
    (rootless / "ro").mkdir(parents=True)
    (rootless / "ro" / "file").write_text("x" * 100)
    (rootless / "ro").chmod(0o555)
    flat = rootfs / ("sha256-" + "e" * 64)
    flat.mkdir()
    (flat / "f").write_text("y")
    crashed = rootfs / "sha256" / (".tmp-" + "f" * 64 + "-0a1b")
    crashed.mkdir()
    foreign = rootfs / "notes"
    foreign.mkdir()
    # a build in progress of the unused arm64 image: it reads that image's layers
    arm = seeded.list.image_for("linux", "arm64", "v8").manifest_digest
    building = rootfs / "sha256" / f".tmp-{arm[7:]}-beef"
    building.mkdir()

    found = listing(cache)
    assert {(str(r.digest), r.used, r.rootless, r.building) for r in found.rootfs} == {
        (used_child, True, False, False), ("sha256:" + "d" * 64, False, True, False),
        ("sha256:" + "e" * 64, False, False, False), ("sha256:" + "f" * 64, False, False, True),
        (arm, False, False, True),
    }
    assert {str(i.digest) for i in found.ingest} == {stale, fresh, held}

    locks = [store.ingest_lock(held), filelock.FileLock(cache / "locks" / f"rootfs-sha256-"
                                                        f"{arm[7:]}.lock")]
    for lock in locks:
        lock.acquire()
    try:
        assert {str(i.digest) for i in listing(cache).ingest if i.active} == {held}
        out = tank_cli("cache", "prune", "--cache", str(cache), "--json")
        assert out.returncode == 0, out.stderr
        doc = json.loads(out.stdout)
    finally:
        for lock in locks:
            lock.release()
    assert [i["digest"] for i in doc["ingest"]] == [stale]
    assert f"ingest {held}" in doc["keptInUse"]
    assert f"ingest {fresh}" in doc["keptRecent"]
    assert doc["rootfs"] == []  # built just now
    assert f"rootfs {arm}" in doc["keptInUse"]
    assert doc["blobs"] == []  # the build in progress keeps its image's blobs
    assert set(doc["keptInUse"]) >= unused
    assert (ingest / f"sha256-{held[7:]}.part").exists()

    result = prune(cache, grace=0)  # the recorded images stay; no safety window
    assert sorted(str(d) for d, _ in result.ingest) == sorted([fresh, held])
    assert sorted(str(d) for d, _ in result.rootfs) == sorted(
        ["sha256:" + c * 64 for c in "def"] + [arm]
    )
    assert {str(d) for d, _ in result.blobs} == unused
    assert keep.is_dir()
    assert foreign.is_dir()
    for gone in (rootless, flat, crashed, building):
        assert not gone.exists()
    assert [str(r.digest) for r in listing(cache).rootfs] == [used_child]


def test_prune_never_removes_a_blob_whose_lock_is_held(
    filled: tuple[Path, set[str]], seeded: Seeded
) -> None:
    cache, unused = filled
    store = Store(cache)
    loose = [b"held loose blob", b"free loose blob"]
    held, free = (f"sha256:{hashlib.sha256(data).hexdigest()}" for data in loose)
    for data, d in zip(loose, (held, free), strict=True):
        store.put_bytes(d, data)
    backdate(cache, 3600)
    # as a pull downloading the arm64 image's data layer would: its whole image stays
    layer = seeded.list.image_for("linux", "arm64", "v8").layers[2].digest
    locks = [store.ingest_lock(d) for d in (held, layer)]
    for lock in locks:
        lock.acquire()
    try:
        out = tank_cli("cache", "prune", "--cache", str(cache), "--json")
    finally:
        for lock in locks:
            lock.release()
    doc = json.loads(out.stdout)
    assert {b["digest"] for b in doc["blobs"]} == {free}
    assert set(doc["keptInUse"]) == unused | {held}
    assert all(store.has_blob(d) for d in unused | {held})
    assert {str(d) for d, _ in prune(cache).blobs} == unused | {held}


def test_verify_fix(registry: LocalRegistry, seeded: Seeded, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    ref = f"{registry.host}/{seeded.repo}:latest"
    image = pull(ref, cache=cache)
    layer = image.layers[1].digest
    path = image.blob_path(layer)
    path.chmod(0o644)
    data = bytearray(path.read_bytes())
    data[0] ^= 0xFF
    path.write_bytes(bytes(data))
    junk = cache / "blobs" / "sha256" / "not-a-digest"
    junk.write_text("junk")

    plain = tank_cli("cache", "verify", "--cache", str(cache))
    assert plain.returncode == 1
    assert path.exists()
    fixed = tank_cli("cache", "verify", "--cache", str(cache), "--fix")
    assert fixed.returncode == 0, fixed.stderr
    assert layer in fixed.stdout
    assert "removed" in fixed.stdout
    assert "not-a-digest" in fixed.stdout
    assert not path.exists()
    assert not junk.exists()
    assert all(Store(cache).has_blob(d) for d in digests_of(seeded.latest) if d != layer)
    assert tank_cli("cache", "verify", "--cache", str(cache)).returncode == 0
    again = pull(ref, cache=cache)
    assert again.bytes_downloaded == image.layers[1].size
    assert Store(cache).verify() == []


# -- prune while a pull is held mid-blob ---------------------------------------------------------


@pytest.fixture(scope="module")
def stall_image(registry: LocalRegistry) -> Image:
    """``library/stall:v1``: one 3 MB layer of incompressible bytes and a small one."""
    data = b"".join(random_bytes_stream(3_000_000, seed="prune-stall"))
    image = make_image([make_layer({"opt/big.bin": data}), make_layer({"etc/y": b"y\n"})])
    with Pusher(registry.url) as pusher:
        pusher.push_image("library/stall", "v1", image)
    return image


class Stall:
    """The first GET of ``digest`` sends ``cut`` bytes and closes; the retry (``Range``) is held
    until :attr:`release` is set, then forwarded to the registry."""

    def __init__(self, digest: str, data: bytes, cut: int) -> None:
        self.digest, self.data, self.cut = digest, data, cut
        self.release = threading.Event()
        self.held = threading.Event()
        self.calls = 0
        self.lock = threading.Lock()

    def __call__(self, r: Recorded) -> Response | None:
        if r.method != "GET" or not r.path.endswith(self.digest):
            return None
        with self.lock:
            self.calls += 1
            first = self.calls == 1
        if first:
            return (200, {"Content-Length": str(len(self.data)), "Connection": "close"},
                    self.data[: self.cut])
        self.held.set()
        self.release.wait(60)
        return None


def test_prune_while_a_pull_is_held_mid_blob(
    registry: LocalRegistry, make_front: MakeFront, seeded: Seeded, stall_image: Image,
    tmp_path: Path,
) -> None:
    cache = tmp_path / "cache"
    # something prune should remove: an image pulled by digest, never recorded, long ago
    other = seeded.list.image_for("linux", "arm", "v7")
    pull(f"{registry.host}/{seeded.repo}@{other.manifest_digest}", cache=cache)
    backdate(cache, 3600)

    layer = stall_image.layers[0]
    front = make_front(registry.url)
    stall = Stall(layer.digest, layer.data, 1_000_000)
    front.respond = stall
    ref = f"{front.host}/library/stall:v1"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tank", "pull", ref, "--cache", str(cache), "-q", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert stall.held.wait(60), "the pull never reached the stall"
        part = cache / "ingest" / f"sha256-{layer.digest[7:]}.part"
        assert part.stat().st_size == 1_000_000
        # the harshest prune: no safety window, and every recorded image forgotten
        out = tank_cli("cache", "prune", "--cache", str(cache), "--older-than", "0s", "--json")
        assert out.returncode == 0, out.stderr
        doc = json.loads(out.stdout)
        removed = {b["digest"] for b in doc["blobs"]}
        assert removed == digests_of(other) - digests_of(stall_image)
        assert stall_image.manifest_digest in doc["keptInUse"]
        assert f"ingest {layer.digest}" in doc["keptInUse"]
        assert part.stat().st_size == 1_000_000
        assert Store(cache).has_blob(stall_image.manifest_digest)
        assert Store(cache).has_blob(stall_image.config.digest)
    finally:
        stall.release.set()
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    assert json.loads(stdout)["digest"] == stall_image.manifest_digest
    ranges = [r.headers.get("range") for r in front.requests if r.path.endswith(layer.digest)]
    assert ranges == [None, "bytes=1000000-"]  # the pull carried on from where it was held
    verify = tank_cli("cache", "verify", "--cache", str(cache))
    assert verify.returncode == 0, verify.stderr
    offline = tank_cli("pull", ref, "--cache", str(cache), "--offline", "-q")
    assert offline.returncode == 0, offline.stderr
    assert Store(cache).blob_path(layer.digest).read_bytes() == layer.data


def test_prune_removes_what_stopped_writers_left_and_nothing_else(tmp_path: Path) -> None:
    """``atomic_file``'s temporaries and a copy's archive spools, once old and their process
    gone; never a file of another name, a fresh one, or a live process's spool."""
    cache = tmp_path / "cache"
    store = Store(cache)
    store.private_dir("ingest")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    gone_pid = int(dead.stdout)
    leftovers = [
        cache / "ingest" / f"archive-{gone_pid}-1234.gz",
        cache / "ingest" / f".tank-tmp-archive-{gone_pid}-1234.gz-0a1b2c3d4e5f",
        cache / "blobs" / "sha256" / (".tank-tmp-" + "a" * 24 + "-0a1b2c3d4e5f"),
        cache / "refs" / "r.example" / "app" / ".tank-tmp-v1.json-0a1b2c3d4e5f",
    ]
    kept = [
        cache / "ingest" / f"archive-{os.getpid()}-99.gz",  # this process is alive
        cache / "ingest" / "notes.txt",
        cache / "blobs" / "sha256" / "README",
    ]
    for path in leftovers + kept:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * 10)
        old = time.time() - 3600
        os.utime(path, (old, old))
    fresh = cache / "ingest" / ".tank-tmp-sha256-ab.part-0a1b2c3d4e5f"
    fresh.write_bytes(b"y")
    elsewhere = tmp_path / "outside"
    elsewhere.mkdir()
    (elsewhere / ".tank-tmp-x").write_bytes(b"z")
    os.utime(elsewhere / ".tank-tmp-x", (old, old))
    (cache / "locations").mkdir()
    (cache / "locations" / "link").symlink_to(elsewhere)

    dry = prune(cache, dry_run=True)
    assert sorted(p for p, _ in dry.scratch) == sorted(
        str(p.relative_to(cache)) for p in leftovers)
    assert all(p.exists() for p in leftovers)
    out = tank_cli("cache", "prune", "--cache", str(cache), "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert sorted(d["path"] for d in doc["scratch"]) == sorted(
        str(p.relative_to(cache)) for p in leftovers)
    assert doc["bytesFreed"] == 10 * len(leftovers)
    assert f"scratch {fresh.relative_to(cache)}" in doc["keptRecent"]
    assert not any(p.exists() for p in leftovers)
    assert all(p.exists() for p in kept)
    assert fresh.exists()
    assert (elsewhere / ".tank-tmp-x").exists()  # a symlink is never followed
