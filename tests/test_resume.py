"""A pull that survives the network: resume with Range, Ctrl-C, token renewal, all platforms."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.ranges import asked, fetched
from support.referees import write_policy
from tank._pull import ProgressEvent, pull
from tank.config import Config
from tank.errors import RegistryError
from tank.retry import RetryPolicy
from tank.store import Store
from tank.testing.fronts import MakeFront, Recorded, Response
from tank.testing.images import Image, Pusher, make_image, make_layer, random_bytes_stream
from tank.testing.registry import LocalRegistry
from tank.testing.seed import Seeded
from tank.testing.tokenserver import TokenServer

FAST = RetryPolicy(attempts=4, base_delay=0.01, max_delay=0.05)
#: every fault test runs twice: blobs as one stream, and large ones as ranges over several
#: connections (anything over 256 KiB: the 3 MB layer comes as 16 ranges)
MODES = pytest.mark.parametrize("chunked", [False, True], ids=["one-stream", "ranges"])
CHUNKED_TOML = 'layer-chunk-threshold = "256KiB"\nlayer-fast-rate = 0\n'


def mode(chunked: bool) -> Config | None:
    """The config of a mode, for an in-process pull (``None``: the default files, none here)."""
    return Config(layer_chunk_threshold=256 * 1024, layer_fast_rate=0) if chunked else None


def mode_env(chunked: bool, tmp_path: Path) -> dict[str, str]:
    """The environment of a mode, for a ``tank`` process."""
    env = dict(os.environ)
    if chunked:
        config = tmp_path / "chunked.toml"
        config.write_text(CHUNKED_TOML)
        env["TANK_CONFIG"] = str(config)
    return env


def first_range(size: int) -> str:
    """The Range header of the probe of a chunked download from byte 0: to the blob's end."""
    return f"bytes=0-{size - 1}"


@pytest.fixture(scope="module")
def big(registry: LocalRegistry) -> Image:
    """An image with one 3 MB layer of incompressible bytes, pushed as library/big:v1."""
    data = b"".join(random_bytes_stream(3_000_000, seed="resume"))
    image = make_image([make_layer({"opt/blob.bin": data}), make_layer({"etc/x": b"x\n"})])
    with Pusher(registry.url) as pusher:
        pusher.push_image("library/big", "v1", image)
    return image


def layer_gets(front_requests: list[Recorded], digest: str) -> list[Recorded]:
    return [r for r in front_requests if r.method == "GET" and r.path.endswith(digest)]


class CutOnce:
    """The first GET of ``digest`` stops after ``cut`` bytes; the retry gets ``then``."""

    def __init__(self, digest: str, data: bytes, cut: int, *, then: str = "forward",
                 close: bool = True) -> None:
        self.digest, self.data, self.cut, self.then, self.close = digest, data, cut, then, close
        self.calls = 0
        self.lock = threading.Lock()

    def __call__(self, r: Recorded) -> Response | None:
        if r.method != "GET" or not r.path.endswith(self.digest):
            return None
        with self.lock:
            self.calls += 1
            call = self.calls
        size = len(self.data)
        if call == 1:
            headers = {"Content-Length": str(size)}
            if self.close:
                headers["Connection"] = "close"
            return (200, headers, self.data[: self.cut])
        if self.then == "ignore-range":
            return (200, {"Content-Length": str(size)}, self.data)
        if self.then == "wrong-range":
            return (206, {"Content-Range": f"bytes 0-{size - 1}/{size}"}, self.data)
        return None  # forward: the registry answers the Range itself


@MODES
def test_a_cut_blob_resumes_with_range(
    registry: LocalRegistry, make_front: MakeFront, big: Image, tmp_path: Path, chunked: bool
) -> None:
    layer = big.layers[0]
    cut = 1_234_567
    front = make_front(registry.url)
    front.respond = CutOnce(layer.digest, layer.data, cut)  # a 200, even to a range
    events: list[ProgressEvent] = []
    image = pull(f"{front.host}/library/big:v1", cache=tmp_path, retry=FAST,
                 progress=events.append, config=mode(chunked))
    gets = layer_gets(front.requests, layer.digest)
    first = first_range(layer.size) if chunked else None
    assert [r.headers.get("range") for r in gets] == [first, f"bytes={cut}-"]
    assert image.blob_path(layer.digest).read_bytes() == layer.data
    assert not any(e.kind == "restarted" for e in events)
    assert Store(tmp_path).verify() == []


@MODES
def test_a_front_that_ignores_range_makes_tank_start_over(
    registry: LocalRegistry, make_front: MakeFront, big: Image, tmp_path: Path, chunked: bool
) -> None:
    layer = big.layers[0]
    front = make_front(registry.url)
    front.respond = CutOnce(layer.digest, layer.data, 1_000_000, then="ignore-range")
    events: list[ProgressEvent] = []
    image = pull(f"{front.host}/library/big:v1", cache=tmp_path, retry=FAST,
                 progress=events.append, config=mode(chunked))
    assert image.blob_path(layer.digest).read_bytes() == layer.data
    gets = layer_gets(front.requests, layer.digest)
    assert gets[1].headers.get("range") == "bytes=1000000-"
    assert [e.amount for e in events if e.kind == "restarted"] == [1_000_000]


@MODES
def test_a_wrong_content_range_is_refused(
    registry: LocalRegistry, make_front: MakeFront, big: Image, tmp_path: Path, chunked: bool
) -> None:
    layer = big.layers[0]
    front = make_front(registry.url)
    front.respond = CutOnce(layer.digest, layer.data, 1_000_000, then="wrong-range")
    with pytest.raises(RegistryError, match="Content-Range"):
        pull(f"{front.host}/library/big:v1", cache=tmp_path, retry=FAST, config=mode(chunked))
    assert not Store(tmp_path).has_blob(layer.digest)
    assert Store(tmp_path).verify() == []


def _ingest_size(cache: Path) -> int:
    sizes = [0]
    for part in (cache / "ingest").glob("*.part"):  # other blobs commit meanwhile
        with contextlib.suppress(FileNotFoundError):
            sizes.append(part.stat().st_size)
    return max(sizes)


@contextlib.contextmanager
def ctrl_c_delivered() -> Iterator[None]:
    """Let a child see SIGINT even when this run inherited it ignored (a test run started in the
    background, ``cmd &`` or ``nohup``, passes SIGINT on as ignored, and a Python child then keeps
    ignoring it, as a background job should)."""
    before = signal.getsignal(signal.SIGINT)
    if before is not signal.SIG_IGN:
        yield
        return
    signal.signal(signal.SIGINT, signal.default_int_handler)  # a child starts with SIG_DFL
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, before)


@MODES
def test_sigint_exits_130_and_the_next_pull_resumes(
    registry: LocalRegistry, make_front: MakeFront, big: Image, tmp_path: Path, chunked: bool
) -> None:
    layer = big.layers[0]
    cut = 2_000_000
    front = make_front(registry.url)
    # the first GET sends 2 MB of 3 and then stalls with the connection open
    front.respond = CutOnce(layer.digest, layer.data, cut, close=False)
    cache = tmp_path / "cache"
    ref = f"{front.host}/library/big:v1"
    env = mode_env(chunked, tmp_path)
    with ctrl_c_delivered():
        proc = subprocess.Popen(
            [sys.executable, "-m", "tank", "pull", ref, "--cache", str(cache), "-q"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )
    deadline = time.monotonic() + 30
    while _ingest_size(cache) < cut and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _ingest_size(cache) == cut, "the download never reached the stall"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "interrupted" in err
    assert _ingest_size(cache) == cut  # kept for the next run

    front.respond = None
    front.reset()
    out = subprocess.run(
        [sys.executable, "-m", "tank", "pull", ref, "--cache", str(cache), "--json", "-q"],
        capture_output=True, text=True, timeout=60, env=env,
    )
    assert out.returncode == 0, out.stderr
    gets = layer_gets(front.requests, layer.digest)
    if chunked:  # the rest, as ranges: from the byte it stopped at, each byte once
        assert gets[0].headers["range"] == f"bytes={cut}-{layer.size - 1}"
        assert fetched([asked(r, layer.size) for r in gets]) == layer.size - cut
    else:
        (get,) = gets
        assert get.headers.get("range") == f"bytes={cut}-"
    assert Store(cache).blob_path(layer.digest).read_bytes() == layer.data
    doc = json.loads(out.stdout)
    assert doc["digest"] == big.manifest_digest


def test_a_token_refused_mid_pull_is_renewed_once(
    token_registry: LocalRegistry, token_server: TokenServer, make_front: MakeFront,
    seeded: Seeded, tmp_path: Path,
) -> None:
    front = make_front(token_registry.url)
    layer = seeded.latest.layers[0].digest
    expired = threading.Event()
    challenge = (
        f'Bearer realm="{token_server.realm}",service="{token_server.service}",'
        f'scope="repository:{seeded.repo}:pull",error="invalid_token"'
    )

    def expire_once(r: Recorded) -> Response | None:
        if r.path.endswith(layer) and "authorization" in r.headers and not expired.is_set():
            expired.set()
            return (401, {"WWW-Authenticate": challenge}, b'{"errors":[]}')
        return None

    front.respond = expire_once
    image = pull(f"{front.host}/{seeded.repo}:latest", cache=tmp_path, jobs=1)
    assert expired.is_set()
    assert image.blob_path(layer).read_bytes() == seeded.latest.layers[0].data
    assert len(token_server.requests) == 2  # the first token, and one renewal


def test_insufficient_scope_asks_for_the_scope_the_challenge_names(
    token_registry: LocalRegistry, token_server: TokenServer, make_front: MakeFront,
    seeded: Seeded, tmp_path: Path,
) -> None:
    front = make_front(token_registry.url)
    asked = f"repository:{seeded.repo}:pull repository:library/base:pull"
    challenge = (
        f'Bearer realm="{token_server.realm}",service="{token_server.service}",'
        f'scope="{asked}",error="insufficient_scope"'
    )
    once = threading.Event()

    def insufficient(r: Recorded) -> Response | None:
        if "/manifests/" in r.path and "authorization" in r.headers and not once.is_set():
            once.set()
            return (401, {"WWW-Authenticate": challenge}, b"")
        return None

    front.respond = insufficient
    pull(f"{front.host}/{seeded.repo}:latest", cache=tmp_path)
    scopes = [req.query.get("scope") for req in token_server.requests]
    assert scopes[-1] == asked.split(" ")


def test_all_platforms_into_a_layout(
    registry: LocalRegistry, seeded: Seeded, tmp_path: Path
) -> None:
    layout = tmp_path / "layout"
    image = pull(f"{registry.host}/{seeded.repo}:multi", all_platforms=True,
                 platform="linux/arm64", output=f"oci:{layout}:multi", cache=tmp_path / "c")
    assert image.digest == seeded.multi.image_for("linux", "arm64", "v8").manifest_digest
    assert {str(p) for p in image.platforms} >= {"linux/amd64", "linux/arm64/v8", "linux/arm/v7"}
    (entry,) = json.loads((layout / "index.json").read_text())["manifests"]
    assert entry["digest"] == seeded.multi.manifest_digest  # the OCI index, byte for byte
    blobs = {p.name for p in (layout / "blobs" / "sha256").iterdir()}
    for child in (*seeded.multi.images, *seeded.multi.attestations):
        assert child.manifest_digest.split(":")[1] in blobs
        for blob in child.blobs():
            assert blob.digest.split(":")[1] in blobs

    policy = write_policy(tmp_path)
    out = subprocess.run(
        ["skopeo", "--policy", str(policy), "copy", "--all", f"oci:{layout}:multi",
         f"oci:{tmp_path / 'copy'}:multi"], capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stderr


def test_all_platforms_of_a_docker_list_become_an_oci_index(
    registry: LocalRegistry, seeded: Seeded, tmp_path: Path
) -> None:
    layout = tmp_path / "layout"
    pull(f"{registry.host}/{seeded.repo}:list", all_platforms=True,
         output=f"oci:{layout}:list", cache=tmp_path / "c")
    (entry,) = json.loads((layout / "index.json").read_text())["manifests"]
    assert entry["mediaType"] == "application/vnd.oci.image.index.v1+json"
    index_path = layout / "blobs" / "sha256" / entry["digest"].split(":")[1]
    index = json.loads(index_path.read_text())
    assert len(index["manifests"]) == len(seeded.list.images)
    assert {m["mediaType"] for m in index["manifests"]} == {
        "application/vnd.oci.image.manifest.v1+json"
    }
    out = subprocess.run(
        ["oci-image-tool", "validate", "--type", "image", "--ref", "name=list", str(layout)],
        capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr


@MODES
def test_interrupted_download_is_kept_and_resumed_in_process(
    registry: LocalRegistry, make_front: MakeFront, big: Image, tmp_path: Path, chunked: bool
) -> None:
    """A permanent failure mid-blob keeps the ingest file; the next pull continues it."""
    layer = big.layers[0]
    front = make_front(registry.url)
    front.respond = lambda r: (
        (200, {"Content-Length": str(layer.size), "Connection": "close"}, layer.data[:500_000])
        if r.method == "GET" and r.path.endswith(layer.digest) else None
    )
    with pytest.raises(Exception, match="gave up after 2 attempts"):
        pull(f"{front.host}/library/big:v1", cache=tmp_path, config=mode(chunked),
             retry=RetryPolicy(attempts=2, base_delay=0.01, max_delay=0.01))
    assert _ingest_size(tmp_path) == 500_000
    front.respond = None
    front.reset()
    pull(f"{front.host}/library/big:v1", cache=tmp_path, config=mode(chunked))
    gets = layer_gets(front.requests, layer.digest)
    if chunked:  # the rest as ranges, from the byte it stopped at
        assert gets[0].headers["range"] == f"bytes=500000-{layer.size - 1}"
        assert fetched([asked(r, layer.size) for r in gets]) == layer.size - 500_000
    else:
        (get,) = gets
        assert get.headers.get("range") == "bytes=500000-"
    assert os.listdir(tmp_path / "ingest") == [] or all(
        not p.endswith(".part") for p in os.listdir(tmp_path / "ingest")
    )


@MODES
def test_a_complete_uncommitted_ingest_is_committed_without_a_request(
    registry: LocalRegistry, make_front: MakeFront, big: Image, tmp_path: Path, chunked: bool
) -> None:
    layer = big.layers[0]
    store = Store(tmp_path)

    def stop_before_commit() -> None:
        with store.writer(layer.digest, layer.size) as w:
            assert w is not None
            w.write(layer.data)
            raise KeyboardInterrupt  # killed between the last byte and the commit

    with pytest.raises(KeyboardInterrupt):
        stop_before_commit()
    assert _ingest_size(tmp_path) == layer.size
    front = make_front(registry.url)
    image = pull(f"{front.host}/library/big:v1", cache=tmp_path, config=mode(chunked))
    assert layer_gets(front.requests, layer.digest) == []
    assert image.blob_path(layer.digest).read_bytes() == layer.data


def test_a_token_that_really_expires_mid_pull_is_renewed(
    token_registry: LocalRegistry, token_server: TokenServer, make_front: MakeFront,
    seeded: Seeded, tmp_path: Path,
) -> None:
    """The registry allows 60 s of leeway past ``exp``: a token issued 55 s "expired" is good for
    about 5 s. The manifest is fetched with it; the blob requests are held until it has lapsed,
    so the registry itself refuses it, and tank must fetch a new one and carry on."""
    token_server.expires_in = -55
    front = make_front(token_registry.url)
    held = threading.Event()

    def hold_first_blob(r: Recorded) -> Response | None:
        if "/blobs/" in r.path and not held.is_set():
            held.set()
            token_server.expires_in = 300  # the renewal gets a good token
            time.sleep(6.5)
        return None  # forward to the real registry

    front.respond = hold_first_blob
    image = pull(f"{front.host}/{seeded.repo}:latest", cache=tmp_path, jobs=1)
    assert held.is_set()
    assert image.blob_path(seeded.latest.config.digest).read_bytes() == seeded.latest.config.data
    assert len(token_server.requests) == 2
    statuses = [r.headers.get("authorization", "")[:7] for r in front.requests]
    assert statuses.count("Bearer ") >= 3
