"""Timeouts: connect, read, and the low-speed limit (curl's --speed-limit/--speed-time), each a
keyword argument, a config key and an environment variable; a stall is an error, never a hang,
and a slow but steady transfer is never cut off."""

from __future__ import annotations

import hashlib
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from support.isolated import IsolatedEnv, isolated_fixture  # noqa: F401 (the fixture)
from tank import registry as api
from tank._pull import pull
from tank.errors import ConfigError, TransportError
from tank.retry import NO_RETRY
from tank.testing.fronts import MakeFront
from tank.testing.registry import LocalRegistry
from tank.testing.seed import Seeded
from tank.transport import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_READ_TIMEOUT,
    DEFAULT_SPEED_LIMIT,
    DEFAULT_SPEED_TIME,
    SpeedLimit,
    Transport,
)


class Trickle:
    """A blob endpoint that sends ``data`` at ``rate`` bytes/s, optionally stalling after
    ``stall_after`` bytes until closed (``GET /v2/<repo>/blobs/<digest>``, any repo)."""

    def __init__(self, data: bytes, rate: float, *, stall_after: int | None = None) -> None:
        self.data, self.rate, self.stall_after = data, rate, stall_after
        self.digest = "sha256:" + hashlib.sha256(data).hexdigest()
        self.closing = threading.Event()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                """Stay quiet."""

            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Length", str(len(owner.data)))
                self.end_headers()
                step = max(1, int(owner.rate / 20))  # 20 writes a second
                sent = 0
                try:
                    while sent < len(owner.data) and not owner.closing.is_set():
                        if owner.stall_after is not None and sent >= owner.stall_after:
                            owner.closing.wait(30)
                            return
                        self.wfile.write(owner.data[sent:sent + step])
                        self.wfile.flush()
                        sent += step
                        owner.closing.wait(step / owner.rate)
                except OSError:
                    return

        self._server = ThreadingHTTPServer(("127.0.0.5", 0), Handler)
        self._server.daemon_threads = True
        self.host = f"127.0.0.5:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                        daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop serving; end the stalled responses."""
        self.closing.set()
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def trickles() -> Iterator[list[Trickle]]:
    """Trickle servers made by a test, closed at teardown."""
    made: list[Trickle] = []
    yield made
    for t in made:
        t.close()


def payload(size: int) -> bytes:
    return bytes(range(256)) * (size // 256)


# -- connect -----------------------------------------------------------------------------------


@pytest.fixture
def full_backlog() -> Iterator[str]:
    """``host:port`` of a listener whose accept queue is full: a connect there never completes."""
    server = socket.socket()
    server.bind(("127.0.0.6", 0))
    server.listen(0)
    held = socket.create_connection(server.getsockname())  # takes the one backlog slot
    host, port = server.getsockname()
    yield f"{host}:{port}"
    held.close()
    server.close()


def test_connect_timeout_keyword_and_environment(
    isolated: IsolatedEnv, full_backlog: str
) -> None:
    started = time.monotonic()
    with pytest.raises(TransportError, match="timed out"):
        api.manifest(full_backlog, "a/b", "latest", transport=Transport(connect_timeout=0.3),
                     retry=NO_RETRY)
    assert time.monotonic() - started < 3  # the probe and the request: 0.3 s each

    isolated.setenv("TANK_CONNECT_TIMEOUT", "0.3")
    assert Transport().connect_timeout == 0.3
    started = time.monotonic()
    with pytest.raises(TransportError, match=r"timed out after 0\.3 s \(connect timeout"):
        api.manifest(full_backlog, "a/b", "latest", transport=Transport(), retry=NO_RETRY)
    assert time.monotonic() - started < 3


# -- read ------------------------------------------------------------------------------------


def test_read_timeout_everywhere(
    isolated: IsolatedEnv, registry: LocalRegistry, make_front: MakeFront, seeded: Seeded,
    tmp_path: Path,
) -> None:
    stall = threading.Event()
    front = make_front(registry.url)
    front.respond = lambda r: (stall.wait(20), None)[1] if "/manifests/" in r.path else None
    ref = f"{front.host}/{seeded.repo}:latest"
    try:
        started = time.monotonic()
        with pytest.raises(TransportError, match="timed out"):
            api.manifest(front.host, seeded.repo, "latest",
                         transport=Transport(read_timeout=0.3), retry=NO_RETRY)
        assert time.monotonic() - started < 3

        isolated.write_config("[timeouts]\nread = 0.3\n")  # the config key
        started = time.monotonic()
        with pytest.raises(TransportError, match=r"no data for 0\.3 s \(read timeout"):
            pull(ref, cache=tmp_path / "a", retry=NO_RETRY)
        assert time.monotonic() - started < 3

        isolated.write_config("[timeouts]\nread = 300\n")
        isolated.setenv("TANK_READ_TIMEOUT", "0.3")  # the environment beats the file
        started = time.monotonic()
        done = isolated.tank("pull", ref, "--retries", "0", "--cache", str(tmp_path / "b"))
        assert done.returncode == 6, done.stderr
        assert "timed out" in done.stderr
        assert time.monotonic() - started < 10
    finally:
        stall.set()


# -- the low-speed limit ---------------------------------------------------------------------------


def test_a_transfer_below_the_speed_limit_fails(
    isolated: IsolatedEnv, trickles: list[Trickle], tmp_path: Path
) -> None:
    slow = Trickle(payload(64 * 1024), rate=2000)
    trickles.append(slow)
    t = Transport(speed_limit=8000, speed_time=0.5)
    started = time.monotonic()
    with pytest.raises(TransportError, match="slower than the low-speed limit of 8000 bytes/s"):
        api.download_blob(slow.host, "a/b", slow.digest, None, tmp_path / "blob",
                          transport=t, retry=NO_RETRY)
    assert time.monotonic() - started < 3
    assert not (tmp_path / "blob").exists()

    isolated.setenv("TANK_SPEED_LIMIT", "8000")
    isolated.setenv("TANK_SPEED_TIME", "0.5")
    with pytest.raises(TransportError, match="low-speed limit"):
        api.blob(slow.host, "a/b", slow.digest, transport=Transport(), retry=NO_RETRY)


def test_a_slow_but_steady_transfer_is_never_cut_off(
    trickles: list[Trickle], tmp_path: Path
) -> None:
    steady = Trickle(payload(48 * 1024), rate=24 * 1024)  # two seconds
    trickles.append(steady)
    t = Transport(speed_limit=4096, speed_time=0.4, read_timeout=1)
    started = time.monotonic()
    size = api.download_blob(steady.host, "a/b", steady.digest, None, tmp_path / "blob",
                             transport=t, retry=NO_RETRY)
    assert size == len(steady.data)
    assert time.monotonic() - started > 1.5  # longer than any of the limits: no deadline


def test_a_stall_mid_body_fails_within_the_speed_window(
    trickles: list[Trickle], tmp_path: Path
) -> None:
    stalls = Trickle(payload(64 * 1024), rate=64 * 1024, stall_after=16 * 1024)
    trickles.append(stalls)
    t = Transport(speed_limit=1024, speed_time=0.5, read_timeout=60)
    started = time.monotonic()
    with pytest.raises(TransportError, match="broke off after"):
        api.download_blob(stalls.host, "a/b", stalls.digest, None, tmp_path / "blob",
                          transport=t, retry=NO_RETRY)
    assert time.monotonic() - started < 3  # not the 60 s read timeout


def test_a_pull_retries_a_blob_that_stalls_past_the_speed_window(
    isolated: IsolatedEnv, registry: LocalRegistry, make_front: MakeFront, seeded: Seeded,
    tmp_path: Path,
) -> None:
    front = make_front(registry.url)
    layer = seeded.latest.layers[0]
    stalled = threading.Event()

    def slow_once(r: Any) -> None:
        if layer.digest in r.path and not stalled.is_set():
            stalled.set()
            time.sleep(1.0)  # the whole answer waits: longer than the speed window
        return None

    front.respond = slow_once
    isolated.write_config("[timeouts]\nspeed-limit = 1000\nspeed-time = 0.3\n")
    image = pull(f"{front.host}/{seeded.repo}:latest", cache=tmp_path)
    assert image.blob_path(layer.digest).read_bytes() == layer.data
    assert len([r for r in front.requests if layer.digest in r.path]) == 2


# -- the settings ----------------------------------------------------------------------------


def test_defaults_keywords_and_environment(isolated: IsolatedEnv) -> None:
    t = Transport()
    assert (t.connect_timeout, t.read_timeout) == (DEFAULT_CONNECT_TIMEOUT, DEFAULT_READ_TIMEOUT)
    assert t.speed_limit == SpeedLimit(DEFAULT_SPEED_LIMIT, DEFAULT_SPEED_TIME)
    assert t.timeout.read_timeout == DEFAULT_READ_TIMEOUT
    t = Transport(speed_limit=100, speed_time=5, read_timeout=60)
    assert t.timeout.read_timeout == 5  # a read waiting longer than the window is too slow
    assert Transport(speed_limit=0).speed_limit is None
    isolated.setenv("TANK_CONNECT_TIMEOUT", "2.5")
    assert Transport().connect_timeout == 2.5
    assert Transport(connect_timeout=1).connect_timeout == 1
    for bad in ("-1", "soon", "inf"):
        isolated.setenv("TANK_SPEED_TIME", bad)
        with pytest.raises(ConfigError, match=f"TANK_SPEED_TIME = '{bad}'"):
            Transport()
    with pytest.raises(ConfigError, match="read_timeout"):
        Transport(read_timeout=-1)


def test_the_speed_monitor_counts_windows() -> None:
    monitor = SpeedLimit(1000, 0.2).monitor()
    monitor.update(10)
    time.sleep(0.25)
    with pytest.raises(TransportError, match="slower than the low-speed limit"):
        monitor.update(10)
    steady = SpeedLimit(1000, 0.2).monitor()
    for _ in range(3):
        time.sleep(0.1)
        steady.update(500)  # 5000 bytes/s: fine, window after window
