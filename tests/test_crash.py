"""Killed pulls, crowds of pulls and a full disk: the cache only ever holds verified blobs."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from support.ranges import asked, fetched
from tank._pull import pull
from tank.digest import Digest, compute
from tank.errors import StorageError
from tank.store import Store
from tank.store.ingest import journal_path, read_journal
from tank.testing.fronts import MakeFront
from tank.testing.images import Image, Pusher, make_image, make_layer, random_bytes_stream
from tank.testing.registry import LocalRegistry


def random_layer(seed: str, size: int) -> bytes:
    return b"".join(random_bytes_stream(size, seed=seed))


@pytest.fixture(scope="module")
def crowd(registry: LocalRegistry) -> list[Image]:
    """Three images sharing two layers, each with 4 MB+ of its own; pushed as library/crowd."""
    shared = [make_layer({"base/a": random_layer("shared-a", 1_500_000)}),
              make_layer({"base/b": random_layer("shared-b", 700_000)})]
    images = [
        make_image([*shared, make_layer({f"app/{i}": random_layer(f"own-{i}", 2_000_000 + i)}),
                    make_layer({f"etc/{i}": random_layer(f"own2-{i}", 2_100_000)})])
        for i in range(3)
    ]
    with Pusher(registry.url) as pusher:
        for i, image in enumerate(images):
            pusher.push_image("library/crowd", f"v{i}", image)
    return images


#: each crash test runs with blobs as one stream, and as ranges over several connections
#: (anything over 256 KiB, so every own layer of the crowd: a journal beside each ingest file)
MODES = pytest.mark.parametrize("chunked", [False, True], ids=["one-stream", "ranges"])
#: the kill test also runs with the probe timed as by default: on loopback it is read on as
#: one plain stream (no journal: the ingest file is one prefix)
KILL_MODES = pytest.mark.parametrize(
    "chunked", [False, True, "probe"], ids=["one-stream", "ranges", "probe"]
)


def mode_env(chunked: bool | str, tmp_path: Path) -> dict[str, str]:
    """The environment of a mode, for a ``tank`` process."""
    env = dict(os.environ)
    if chunked:
        config = tmp_path / "chunked.toml"
        fast = "" if chunked == "probe" else "layer-fast-rate = 0\n"
        config.write_text('layer-chunk-threshold = "256KiB"\n' + fast)
        env["TANK_CONFIG"] = str(config)
    return env


def tank_pull(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tank", "pull", *args, "-q"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )


def journaled(cache: Path, sizes: dict[str, int]) -> dict[str, list[tuple[int, int]]]:
    """digest -> the ranges the chunk journals of ``cache`` say are written."""
    out = {}
    for part in (cache / "ingest").glob("*.part") if (cache / "ingest").exists() else []:
        digest = Digest.parse(part.name.removesuffix(".part").replace("-", ":", 1))
        ranges = read_journal(journal_path(part), digest, sizes.get(digest))
        if ranges:
            out[str(digest)] = ranges
    return out


def assert_layout_blobs_are_whole(layout: Path) -> None:
    blobs = layout / "blobs" / "sha256"
    if not blobs.exists():
        return
    for path in blobs.iterdir():
        if path.name.startswith("."):
            continue  # a temporary name, never a digest
        assert compute(path.read_bytes()) == f"sha256:{path.name}", path


@pytest.mark.slow
@KILL_MODES
def test_sigkill_at_random_moments_never_corrupts_and_the_last_pull_resumes(
    registry: LocalRegistry, make_front: MakeFront, crowd: list[Image], tmp_path: Path,
    chunked: bool | str,
) -> None:
    cache, layout = tmp_path / "cache", tmp_path / "layout"
    env = mode_env(chunked, tmp_path)
    sizes = {b.digest: b.size for b in crowd[0].blobs()}
    interrupted_ranges = 0
    ref = f"{registry.host}/library/crowd:v0"
    rng = random.Random(20261127)
    store = Store(cache)
    deadline = time.monotonic() + 90
    kills = 0
    while kills < 30 and time.monotonic() < deadline:
        if cache.exists():  # start each round cold-ish: forget some committed blobs
            for _, path in list(store.iter_blobs()):
                if rng.random() < 0.5:
                    path.chmod(0o644)
                    path.unlink()
        proc = tank_pull(ref, "--cache", str(cache), "-o", f"oci:{layout}:v0", "-j", "2", env=env)
        time.sleep(rng.uniform(0.05, 0.6))
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
        kills += 1
        assert store.verify() == [], f"after kill {kills}"
        assert_layout_blobs_are_whole(layout)
        interrupted_ranges += bool(journaled(cache, sizes))
    assert kills == 30
    if chunked is True:  # the ranged path was killed mid-way more than once
        assert interrupted_ranges > 1

    front = make_front(registry.url)
    present = {str(d) for d, _ in store.iter_blobs()}
    journals = journaled(cache, sizes)
    partial = {  # digest -> bytes an interrupted stream left (an empty file is no head start;
        # beside a journal only the ranges it records count: none yet, or torn, is a restart)
        p.name.removesuffix(".part").replace("-", ":", 1): p.stat().st_size
        for p in (cache / "ingest").glob("*.part")
        if p.stat().st_size > 0 and not journal_path(p).exists()
    } if (cache / "ingest").exists() else {}
    final = subprocess.run(
        [sys.executable, "-m", "tank", "pull", f"{front.host}/library/crowd:v0", "--cache",
         str(cache), "-o", f"oci:{layout}:v0", "--json", "-q"],
        capture_output=True, text=True, timeout=120, env=env,
    )
    assert final.returncode == 0, final.stderr
    fetched = [r for r in front.requests if "/blobs/" in r.path]
    for r in fetched:
        digest = r.path.rsplit("/", 1)[1]
        assert digest not in present  # what was complete is never downloaded again
        if digest in journals:  # what a journal lists is kept, never fetched again
            start, end = asked(r, sizes[digest])
            assert all(end <= a or start >= b for a, b in journals[digest]), (r, journals)
        elif digest in partial:  # what was partly there is resumed, not started over
            assert asked(r, sizes[digest])[0] >= partial[digest]
            if not chunked:
                assert r.headers.get("range") == f"bytes={partial[digest]}-"
    verify = subprocess.run(
        [sys.executable, "-m", "tank", "cache", "verify", "--cache", str(cache)],
        capture_output=True, text=True, timeout=60,
    )
    assert verify.returncode == 0, verify.stdout
    assert_layout_blobs_are_whole(layout)
    subprocess.run(["oci-image-tool", "validate", "--type", "image", str(layout)], check=True,
                   capture_output=True)


@pytest.mark.slow
@MODES
def test_eight_processes_pulling_overlapping_images(
    registry: LocalRegistry, make_front: MakeFront, crowd: list[Image], tmp_path: Path,
    chunked: bool,
) -> None:
    front = make_front(registry.url)
    cache = tmp_path / "cache"
    env = mode_env(chunked, tmp_path)
    procs = [
        tank_pull(f"{front.host}/library/crowd:v{i % 3}", "--cache", str(cache), "--json",
                  env=env)
        for i in range(8)
    ]
    outs = [p.communicate(timeout=180) for p in procs]
    assert [p.returncode for p in procs] == [0] * 8, [err for _, err in outs]
    for i, (out, _) in enumerate(outs):
        assert json.loads(out)["digest"] == crowd[i % 3].manifest_digest
    sizes = {b.digest: b.size for image in crowd for b in image.blobs()}
    spans: dict[str, list[tuple[int, int]]] = {}
    for r in front.requests:
        if "/blobs/" in r.path and r.method == "GET":
            digest = r.path.rsplit("/", 1)[1]
            spans.setdefault(digest, []).append(asked(r, sizes[digest]))
    # each blob downloaded once, whoever needed it
    assert {d: fetched(s) for d, s in spans.items()} == sizes
    assert Store(cache).verify() == []


def test_a_full_disk_is_a_clear_error_and_leaves_no_partial_blob(
    registry: LocalRegistry, crowd: list[Image], tmp_path: Path
) -> None:
    if os.geteuid() != 0:
        if os.environ.get("CI") == "true":
            pytest.fail("CI runs as root: this test must run there")
        pytest.skip("mounting a small tmpfs needs root")
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)], check=True)
    try:
        with pytest.raises(StorageError, match="no space left") as info:
            pull(f"{registry.host}/library/crowd:v1", cache=mount / "cache", jobs=1)
        assert str(mount) in str(info.value)
        store = Store(mount / "cache")
        assert store.verify() == []
        image = crowd[1]
        committed = {str(d) for d, _ in store.iter_blobs()}
        assert committed < {b.digest for b in image.blobs()} | {image.manifest_digest}
        cli = subprocess.run(
            [sys.executable, "-m", "tank", "pull", f"{registry.host}/library/crowd:v1",
             "--cache", str(mount / "cache2")], capture_output=True, text=True, timeout=60,
        )
        assert cli.returncode == 1
        assert "no space left" in cli.stderr
        assert "Traceback" not in cli.stderr
    finally:
        subprocess.run(["umount", str(mount)], check=False)
