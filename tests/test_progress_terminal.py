"""The pull's progress as a person sees it: `tank pull` in a real terminal (a 120x30 tmux pane),
against a registry behind a front that caps each connection at 20 MB/s, the pane captured every
0.2 s and resized mid-pull (120 → 90 → 120 columns).

On every screen: each blob's short digest at most once, no blob shown as a bar once it was
shown finished, an overall row while the display runs. On the final screen: no unfinished bar,
each blob once as a finished line, the overall row at 100%.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tank.testing.fronts import MakeFront
from tank.testing.images import Blob, Image, Pusher, make_image, random_bytes_stream
from tank.testing.registry import LocalRegistry

MB = 1_000_000
LAYER_SIZES = (40 * MB, 30 * MB, 25 * MB, 20 * MB, 15 * MB, 10 * MB, 6 * MB, 4 * MB)
RATE = 20 * MB
CAPTURE_EVERY = 0.2


@pytest.fixture(scope="module")
def big(registry: LocalRegistry) -> Image:
    """``library/progress:v1``: 150 MB in 8 layers of random bytes (plain tar media type)."""
    layers = []
    for i, size in enumerate(LAYER_SIZES):
        data = b"".join(random_bytes_stream(size, seed=f"progress-{i}"))
        blob = Blob.of(data, "application/vnd.oci.image.layer.v1.tar")
        layers.append(Blob(blob.data, blob.digest, blob.size, blob.media_type, blob.digest))
    image = make_image(layers)
    with Pusher(registry.url) as pusher:
        pusher.push_image("library/progress", "v1", image)
    return image


@dataclass
class Pane:
    """A detached tmux server with one pane, on its own socket."""

    socket: str

    def tmux(self, *args: str) -> str:
        out = subprocess.run(["tmux", "-L", self.socket, "-f", "/dev/null", *args],
                             capture_output=True, text=True, timeout=10, check=True)
        return out.stdout

    def capture(self) -> list[str]:
        return self.tmux("capture-pane", "-p", "-t", "pull").splitlines()

    def resize(self, columns: int) -> None:
        self.tmux("resize-window", "-t", "pull", "-x", str(columns), "-y", "30")


@pytest.fixture
def pane(tmp_path: Path) -> Iterator[Pane]:
    if shutil.which("tmux") is None:
        pytest.fail("tmux is missing: the terminal tests need it (scripts/bootstrap installs "
                    "it)", pytrace=False)
    made = Pane(f"tank-test-{os.getpid()}-{tmp_path.name}")
    yield made
    subprocess.run(["tmux", "-L", made.socket, "kill-server"], capture_output=True, check=False)


def _short(digest: str) -> str:
    return digest.split(":", 1)[1][:12]


def test_pull_progress_in_a_resized_terminal(
    registry: LocalRegistry, make_front: MakeFront, big: Image, pane: Pane, tmp_path: Path
) -> None:
    front = make_front(registry.url)
    front.rate = RATE
    rc_file = tmp_path / "rc"
    command = [sys.executable, "-m", "tank", "pull", f"{front.host}/library/progress:v1",
               "-o", f"oci:{tmp_path / 'layout'}", "--cache", str(tmp_path / "cache")]
    script = tmp_path / "run.sh"
    script.write_text(
        "clear\n" + shlex.join(command) + f"\necho $? > {shlex.quote(str(rc_file))}\nsleep 60\n"
    )
    started = time.monotonic()
    pane.tmux("new-session", "-d", "-s", "pull", "-x", "120", "-y", "30",
              f"sh {shlex.quote(str(script))}")
    screens: list[tuple[int, list[str]]] = []  # (width, lines)
    width, resized_at = 120, None
    while not rc_file.exists() and time.monotonic() - started < 60:
        time.sleep(CAPTURE_EVERY)
        screens.append((width, pane.capture()))
        live = any(line.startswith("total ") for line in screens[-1][1])
        if live and resized_at is None:
            pane.resize(90)
            width, resized_at = 90, time.monotonic()
        elif resized_at is not None and width == 90 and time.monotonic() - resized_at > 0.8:
            pane.resize(120)
            width = 120
    time.sleep(0.3)
    final = pane.capture()
    assert rc_file.read_text().strip() == "0", "\n".join(final)
    assert time.monotonic() - started < 30

    blobs = {_short(b.digest): b for b in big.blobs()}
    finished: set[str] = set()
    drawn = [(w, s) for w, s in screens if any(line.startswith("total ") for line in s)]
    assert len(drawn) >= 5, "the display was not captured while it ran"
    assert any(w == 90 for w, _ in drawn), "no capture while the terminal was narrow"
    for number, (columns, screen) in enumerate([*screens, (120, final)]):
        text = "\n".join(screen)
        for short in blobs:
            assert text.count(short) <= 1, f"screen {number}: {short} shown twice\n{text}"
        for line in screen:
            assert len(line.rstrip()) <= columns, f"screen {number}: a line over {columns}"
            match = re.match(r"(config|layer) ([0-9a-f]{12}) ", line)
            if match is None:
                continue
            if line.rstrip().endswith(("downloaded", "cached")):
                finished.add(match[2])
            else:
                assert match[2] not in finished, f"screen {number}: {match[2]} again\n{text}"
        if any(line.startswith(("config ", "layer ")) and "%" in line for line in screen):
            assert any(line.startswith("total ") for line in screen), (
                f"screen {number}: bars without the overall row\n{text}"
            )

    text = "\n".join(final)
    bars = [line for line in final if "%" in line]
    assert len(bars) == 1, f"an unfinished bar on the final screen\n{text}"
    assert bars[0].startswith("total 9/9 blobs"), text
    assert "100%" in bars[0], text
    assert "150.0/150.0 MB" in bars[0]
    for short in blobs:
        assert [line for line in final if short in line and line.rstrip().endswith(
            "downloaded")], f"{short} is not on the final screen as finished\n{text}"
