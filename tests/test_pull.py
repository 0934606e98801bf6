"""tank.pull and `tank pull` against the real registry, counted at a recording front."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import tank
from tank._pull import ProgressEvent, pull
from tank.errors import CacheMiss, DigestMismatch, PlatformNotFound, UnsupportedManifest
from tank.store import Store
from tank.testing.fronts import MakeFront, Recorded
from tank.testing.registry import LocalRegistry
from tank.testing.seed import Seeded
from tank.testing.tokenserver import TokenServer


def blob_gets(requests: list[Recorded]) -> list[Recorded]:
    return [r for r in requests if "/blobs/" in r.path and r.method == "GET"]


def tank_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tank", *args], capture_output=True, text=True, timeout=120,
        env={**os.environ, **(env or {})},
    )


def test_pull_an_image_into_the_cache(
    token_registry: LocalRegistry, token_server: TokenServer, seeded: Seeded, tmp_path: Path
) -> None:
    events: list[ProgressEvent] = []
    image = pull(f"{token_registry.host}/{seeded.repo}:latest", cache=tmp_path,
                 progress=events.append)
    assert image.digest == seeded.latest.manifest_digest
    assert image.index_digest is None
    assert [layer.digest for layer in image.layers] == [b.digest for b in seeded.latest.layers]
    assert image.config["architecture"] == "amd64"
    for blob in seeded.latest.blobs():
        assert image.blob_path(blob.digest).read_bytes() == blob.data
    assert image.manifest_path.read_bytes() == seeded.latest.manifest
    assert image.bytes_downloaded == sum(b.size for b in seeded.latest.blobs())
    assert image.bytes_cached == 0
    assert len(token_server.requests) == 1  # one token for the whole pull
    finished = {e.digest for e in events if e.kind == "finished"}
    assert finished == {b.digest for b in seeded.latest.blobs()}
    assert sum(e.amount for e in events if e.kind == "bytes") == image.bytes_downloaded


@pytest.mark.parametrize(
    ("platform", "arch", "variant"),
    [("linux/amd64", "amd64", None), ("linux/arm64", "arm64", "v8"),
     ("linux/arm/v7", "arm", "v7")],
)
@pytest.mark.parametrize("tag", ["multi", "list"])
def test_platform_resolution_from_an_index(
    tag: str, platform: str, arch: str, variant: str | None, registry: LocalRegistry,
    seeded: Seeded, tmp_path: Path,
) -> None:
    index = seeded.multi if tag == "multi" else seeded.list
    child = index.image_for("linux", arch, variant)
    image = pull(f"{registry.host}/{seeded.repo}:{tag}", platform=platform, cache=tmp_path)
    assert image.index_digest == index.manifest_digest
    assert image.digest == child.manifest_digest
    assert str(image.platform) == str(tank.platform.Platform.parse(platform))
    assert image.config["architecture"] == arch


def test_no_matching_platform_lists_the_offer(
    registry: LocalRegistry, seeded: Seeded, tmp_path: Path
) -> None:
    with pytest.raises(PlatformNotFound) as info:
        pull(f"{registry.host}/{seeded.repo}:multi", platform="linux/s390x", cache=tmp_path)
    assert set(info.value.available) == {"linux/amd64", "linux/arm64/v8", "linux/arm/v7"}
    # attestation entries are never offered nor chosen
    with pytest.raises(PlatformNotFound):
        pull(f"{registry.host}/{seeded.repo}:multi", platform="unknown/unknown", cache=tmp_path)


def test_warm_repull_sends_one_head_and_no_blob_request(
    registry: LocalRegistry, make_front: MakeFront, seeded: Seeded, tmp_path: Path
) -> None:
    front = make_front(registry.url)
    ref = f"{front.host}/{seeded.repo}:multi"
    first = pull(ref, platform="linux/arm64", cache=tmp_path)
    assert blob_gets(front.requests)
    front.reset()
    again = pull(ref, platform="linux/arm64", cache=tmp_path)
    assert again.digest == first.digest
    assert [(r.method, "/manifests/" in r.path) for r in front.requests] == [("HEAD", True)]
    assert again.bytes_downloaded == 0
    assert again.bytes_cached == first.bytes_downloaded


def test_digest_repull_sends_nothing(
    registry: LocalRegistry, make_front: MakeFront, seeded: Seeded, tmp_path: Path
) -> None:
    front = make_front(registry.url)
    ref = f"{front.host}/{seeded.repo}@{seeded.latest.manifest_digest}"
    pull(ref, cache=tmp_path)
    front.reset()
    image = pull(ref, cache=tmp_path)
    assert front.requests == []
    assert image.digest == seeded.latest.manifest_digest


def test_a_moved_tag_is_fetched_again(
    registry: LocalRegistry, seeded: Seeded, tmp_path: Path
) -> None:
    from tank.testing.images import Pusher

    ref = f"{registry.host}/library/moving:tag"
    with Pusher(registry.url) as pusher:
        pusher.push_image("library/moving", "tag", seeded.latest)
        first = pull(ref, cache=tmp_path)
        pusher.push_image("library/moving", "tag", seeded.docker)
    second = pull(ref, cache=tmp_path)
    assert first.digest == seeded.latest.manifest_digest
    assert second.digest == seeded.docker.manifest_digest


def test_offline(registry: LocalRegistry, seeded: Seeded, tmp_path: Path) -> None:
    ref = f"{registry.host}/{seeded.repo}:latest"
    with pytest.raises(CacheMiss, match="never been pulled"):
        pull(ref, cache=tmp_path, offline=True)
    digest_ref = f"{registry.host}/{seeded.repo}@{seeded.docker.manifest_digest}"
    with pytest.raises(CacheMiss, match=seeded.docker.manifest_digest):
        pull(digest_ref, cache=tmp_path, offline=True)
    online = pull(ref, cache=tmp_path)
    offline = pull(ref, cache=tmp_path, offline=True)
    assert offline.digest == online.digest
    assert offline.bytes_downloaded == 0
    # a missing layer is named
    layer = seeded.latest.layers[-1].digest
    path = Store(tmp_path).blob_path(layer)
    path.chmod(0o644)
    path.unlink()
    with pytest.raises(CacheMiss, match=layer):
        pull(ref, cache=tmp_path, offline=True)


def test_wrong_layer_bytes_fail_and_leave_nothing_unverified(
    registry: LocalRegistry, make_front: MakeFront, seeded: Seeded, tmp_path: Path
) -> None:
    front = make_front(registry.url)
    bad = seeded.latest.layers[1].digest
    front.corrupt = lambda r: r.path.endswith(bad)
    with pytest.raises(DigestMismatch, match=bad):
        pull(f"{front.host}/{seeded.repo}:latest", cache=tmp_path)
    store = Store(tmp_path)
    assert not store.has_blob(bad)
    assert store.verify() == []


def test_schema1_is_refused_clearly(
    registry: LocalRegistry, make_front: MakeFront, seeded: Seeded, tmp_path: Path
) -> None:
    front = make_front(registry.url)
    body = json.dumps({"schemaVersion": 1, "name": "x", "tag": "y", "fsLayers": []}).encode()
    front.respond = lambda r: (
        (200, {"Content-Type": "application/vnd.docker.distribution.manifest.v1+prettyjws"},
         body) if "/manifests/" in r.path else None
    )
    with pytest.raises(UnsupportedManifest, match="schema 1"):
        pull(f"{front.host}/{seeded.repo}:old", cache=tmp_path)


def test_two_processes_one_cache_each_blob_fetched_once(
    registry: LocalRegistry, make_front: MakeFront, seeded: Seeded, tmp_path: Path
) -> None:
    front = make_front(registry.url)
    cache = tmp_path / "cache"
    ref = f"{front.host}/{seeded.repo}:latest"
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "tank", "pull", ref, "--cache", str(cache), "-q", "--json"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    digests = {json.loads(out)["digest"] for out, _ in outs}
    assert digests == {seeded.latest.manifest_digest}
    fetched = [r.path.rsplit("/", 1)[1] for r in blob_gets(front.requests)]
    assert sorted(fetched) == sorted(b.digest for b in seeded.latest.blobs())
    verify = tank_cli("cache", "verify", "--cache", str(cache))
    assert verify.returncode == 0, verify.stderr


def test_cache_verify_catches_a_flipped_byte(
    registry: LocalRegistry, seeded: Seeded, tmp_path: Path
) -> None:
    image = pull(f"{registry.host}/{seeded.repo}:latest", cache=tmp_path)
    layer = image.layers[0].digest
    path = image.blob_path(layer)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.chmod(0o644)
    path.write_bytes(bytes(data))
    result = tank_cli("cache", "verify", "--cache", str(tmp_path))
    assert result.returncode == 1
    assert layer in result.stdout
    assert str(image.layers[1].digest) not in result.stdout


# -- the command ---------------------------------------------------------------------------------


def test_cli_pull_json_and_summary(
    registry: LocalRegistry, seeded: Seeded, tmp_path: Path
) -> None:
    ref = f"{registry.host}/{seeded.repo}:multi"
    out = tank_cli("pull", ref, "--cache", str(tmp_path), "--platform", "linux/arm64", "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    child = seeded.multi.image_for("linux", "arm64", "v8")
    assert doc["digest"] == child.manifest_digest
    assert doc["indexDigest"] == seeded.multi.manifest_digest
    assert doc["platform"] == "linux/arm64/v8"
    assert doc["reference"] == ref
    assert [layer["digest"] for layer in doc["layers"]] == [b.digest for b in child.layers]
    assert doc["bytesDownloaded"] == sum(b.size for b in child.blobs())
    assert set(doc) >= {"mediaType", "config", "output", "seconds", "bytesCached", "cache"}
    # stderr had plain progress lines (not a TTY), one per blob
    assert out.stderr.count(" downloaded") == len(child.layers) + 1

    again = tank_cli("pull", ref, "--cache", str(tmp_path), "--platform", "linux/arm64")
    assert again.returncode == 0
    assert again.stdout.count("\n") == 1
    assert child.manifest_digest in again.stdout
    assert "0 B downloaded" in again.stdout

    quiet = tank_cli("pull", ref, "--cache", str(tmp_path), "--platform", "linux/arm64", "-q")
    assert quiet.stderr == ""


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["pull", "{host}/library/sample:nope"], 3),
        (["pull", "{host}/library/sample:multi", "--platform", "linux/s390x"], 3),
        (["pull", "Bad Reference"], 2),
        (["pull", "{host}/library/sample:latest", "--platform", "linux"], 2),
        (["pull", "127.0.0.1:1/x:y", "--retries", "0"], 6),
        (["pull", "{host}/library/sample:latest", "--offline"], 3),
        (["pull"], 2),
    ],
)
def test_cli_exit_codes(
    args: list[str], code: int, registry: LocalRegistry, tmp_path: Path
) -> None:
    out = tank_cli(*(a.format(host=registry.host) for a in args), "--cache", str(tmp_path))
    assert out.returncode == code, out.stderr
    assert out.stdout == ""
    assert "tank: error:" in out.stderr or out.stderr.startswith("Usage:"), out.stderr


def test_cli_integrity_exit_code(
    registry: LocalRegistry, make_front: MakeFront, seeded: Seeded, tmp_path: Path
) -> None:
    front = make_front(registry.url)
    front.corrupt = lambda r: "/blobs/" in r.path
    out = tank_cli("pull", f"{front.host}/{seeded.repo}:latest", "--cache", str(tmp_path))
    assert out.returncode == 5
    assert "digest mismatch" in out.stderr


def test_cli_auth_exit_code(
    registry: LocalRegistry, make_front: MakeFront, seeded: Seeded, tmp_path: Path
) -> None:
    front = make_front(registry.url)
    front.respond = lambda r: (401, {"WWW-Authenticate": 'Basic realm="x"'}, b"")
    out = tank_cli("pull", f"{front.host}/{seeded.repo}:latest", "--cache", str(tmp_path))
    assert out.returncode == 4
    assert "Basic" in out.stderr


def test_progress_bars_on_a_terminal_only(
    registry: LocalRegistry, seeded: Seeded, tmp_path: Path
) -> None:
    import fcntl
    import pty
    import struct
    import termios

    ref = f"{registry.host}/{seeded.repo}:latest"
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, "-m", "tank", "pull", ref, "--cache", str(tmp_path)],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=follower,
    )
    os.close(follower)
    seen = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    proc.wait(timeout=60)
    os.close(leader)
    assert proc.returncode == 0
    text = seen.decode("utf-8", "replace")
    # the live display draws bars: percentages, a bar and carriage returns
    assert "100%" in text
    assert "\r" in text
    assert "layer " in text
    # piped: no bar at all
    piped = tank_cli("pull", ref, "--cache", str(tmp_path / "other"))
    assert "%" not in piped.stderr
    assert "\r" not in piped.stderr
