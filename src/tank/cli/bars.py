"""The pull's live progress on a terminal (rich): imported only when stderr is one.

Invariants (the display a person sees):

- The live area at the bottom holds one row per blob in flight, then one overall row: blobs
  done of those planned, bytes done of those planned (cached ones count as done), the download
  speed over the last few seconds (once all is done: the average), and the time left.
- A blob that finishes (or is found cached) leaves the live area (which is redrawn at once),
  then is printed above it as one line; so no screen shows a blob twice, nor a finished blob as
  unfinished.
- On success the live area ends as the overall row alone; on failure it is erased.
- Every redraw first erases the rows the previous frame occupies at the terminal's width *now*
  (:class:`ReflowLiveRender`): after a terminal got narrower, its old lines were re-wrapped onto
  more rows, and erasing one row per line drawn would leave stale copies behind.
- :meth:`Bars.handle` does constant work under one lock (for ``bytes``: two dict operations
  and two additions); rich's tasks get the numbers on rich's refresh thread, before a frame.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, cast

from rich.console import Console, ConsoleOptions, RenderableType, RenderResult
from rich.control import Control
from rich.live_render import LiveRender
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TaskProgressColumn,
    TextColumn,
)
from rich.segment import ControlType, Segment
from rich.table import Column, Table
from rich.text import Text

from tank.cli.output import human_bytes

if TYPE_CHECKING:
    from tank._pull import ProgressEvent

#: how far back the speeds look, in seconds
SPEED_WINDOW = 5.0
#: redraws per second
REFRESH_PER_SECOND = 10
#: the live rows' width at most: a terminal made narrower re-wraps longer rows (and may push
#: the extra rows into its scrollback, out of reach), so rows are kept short
MAX_WIDTH = 80


class Totals:
    """What the overall row shows: the blobs planned (digest → size) and done, the bytes
    downloaded and found cached, and the download speed (cached bytes arrive at no speed)."""

    def __init__(self) -> None:
        self.planned: dict[str, int] = {}
        self.done: set[str] = set()
        self.downloaded = 0
        self.cached = 0
        self.first: float | None = None  # when the first download started
        self.last: float | None = None  # when the last one finished
        self._samples: deque[tuple[float, int]] = deque()

    def average(self) -> float | None:
        """Bytes downloaded per second from the first download's start to the last one's end."""
        if self.first is None or self.last is None or self.last <= self.first:
            return None
        return self.downloaded / (self.last - self.first)

    def speed(self) -> float | None:
        """Bytes downloaded per second over the last :data:`SPEED_WINDOW` seconds, sampled at
        each redraw; ``None`` for the first half second."""
        now = time.monotonic()
        self._samples.append((now, self.downloaded))
        while len(self._samples) > 2 and self._samples[1][0] < now - SPEED_WINDOW:
            self._samples.popleft()
        then, before = self._samples[0]
        if now - then < 0.5:
            return None
        return max(0.0, (self.downloaded - before) / (now - then))


class SpeedColumn(ProgressColumn):
    """Bytes per second: a blob's own, or on the overall row the whole download's."""

    def __init__(self, totals: Totals) -> None:
        super().__init__()
        self.totals = totals

    def render(self, task: Task) -> Text:
        """``20.0 MB/s``, or ``?`` before there is a measure."""
        speed = _speed(task, self.totals)
        return Text("?" if speed is None else f"{human_bytes(speed)}/s",
                    style="progress.data.speed")


class EtaColumn(ProgressColumn):
    """The time left at the current speed, ``H:MM:SS``."""

    def __init__(self, totals: Totals) -> None:
        super().__init__()
        self.totals = totals

    def render(self, task: Task) -> Text:
        """``0:00:12``; ``-:--:--`` when unknown."""
        left: float | None = None
        if task.total is not None and task.completed >= task.total:
            left = 0.0
        elif task.total is not None:
            speed = _speed(task, self.totals)
            if speed:
                left = (task.total - task.completed) / speed
        if left is None:
            return Text("-:--:--", style="progress.remaining")
        seconds = int(left + 0.999)
        return Text(f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}",
                    style="progress.remaining")


def _speed(task: Task, totals: Totals) -> float | None:
    if task.fields.get("overall"):
        return totals.average() if task.finished else totals.speed()
    return task.finished_speed or task.speed


class ReflowLiveRender(LiveRender):
    """A :class:`rich.live_render.LiveRender` that, before a redraw, moves up over the rows the
    last frame occupies at the terminal's width now, not over one row per line drawn: a
    terminal that got narrower re-wraps each longer line onto several rows."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._widths: list[int] = []  # the cell width of each line of the last frame
        self._console: Console | None = None

    def _rows(self) -> int:
        """How many terminal rows the last frame takes now."""
        if self._console is None:
            return len(self._widths)
        width = max(1, self._console.size.width)
        return sum(max(1, -(-w // width)) for w in self._widths)

    def position_cursor(self) -> Control:
        """Erase the last frame's rows, leaving the cursor where it began."""
        rows = self._rows()
        if not rows:
            return Control()
        return Control(
            ControlType.CARRIAGE_RETURN, (ControlType.ERASE_IN_LINE, 2),
            *(((ControlType.CURSOR_UP, 1), (ControlType.ERASE_IN_LINE, 2)) * (rows - 1)),
        )

    def restore_cursor(self) -> Control:
        """Erase the last frame and put the cursor on the row above it."""
        rows = self._rows()
        if not rows:
            return Control()
        return Control(
            ControlType.CARRIAGE_RETURN,
            *(((ControlType.CURSOR_UP, 1), (ControlType.ERASE_IN_LINE, 2)) * rows),
        )

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        """Render as rich does, noting each line's width."""
        self._console = console
        segments = list(super().__rich_console__(console, options))
        widths = [0]
        for segment in segments:
            if not isinstance(segment, Segment) or segment.control:
                continue
            if segment.text == "\n":
                widths.append(0)
            else:
                widths[-1] += segment.cell_length
        self._widths = widths if segments else []
        yield from segments


class _Progress(Progress):
    """rich's Progress, drawn as the display wants: the numbers taken from :class:`Bars` just
    before each frame, the overall row last, at most :data:`MAX_WIDTH` columns wide, and on a
    narrow terminal fewer columns rather than cells wrapped onto a second row (under 72 columns
    no speed and ETA; under 48 no bar either)."""

    def __init__(self, *columns: ProgressColumn, console: Console, **kwargs: Any) -> None:
        self._out = console  # rich renders once before it sets self.live
        self.before_frame: Callable[[], None] | None = None
        super().__init__(*columns, console=console, **kwargs)

    def get_renderables(self) -> Iterable[RenderableType]:
        """One table: a row per blob in flight, then the overall row."""
        with self._lock:  # no task comes or goes while the frame is made
            if self.before_frame is not None:
                self.before_frame()
            tasks = list(self._tasks.values())
            rows = [t for t in tasks if not t.fields.get("overall")]
            rows += [t for t in tasks if t.fields.get("overall")]
            width = min(self._out.width, MAX_WIDTH)
            shown = list(self.columns)
            if width < 72:
                shown = shown[:4] if width >= 48 else [shown[0], shown[2]]
            table = Table.grid(
                *(cast("ProgressColumn", c).get_table_column().copy() for c in shown),
                padding=(0, 1), expand=True,
            )
            table.width = width
            for task in rows:
                table.add_row(*(cast("ProgressColumn", c)(task) for c in shown))
        yield table


class Bars:
    """The live display of one pull: rows for the blobs in flight, then the overall row.

    The events only count (under :attr:`lock`); rich's tasks get the counts when a frame is
    drawn (:meth:`_sync`, on rich's refresh thread), so a ``bytes`` event costs a lock, two dict
    operations and two additions. Only a blob that starts or ends touches rich from the event's
    thread.

    :param cache_dir: the pull's cache, where each image manifest is read (when the pull
        announces it) for the blobs and bytes to come.
    """

    def __init__(self, cache_dir: str | None) -> None:
        self.cache_dir = cache_dir
        self.totals = Totals()
        self.console = Console(stderr=True, highlight=False)
        self.progress = _Progress(
            TextColumn("{task.description}", table_column=Column(no_wrap=True)),
            BarColumn(bar_width=None), TaskProgressColumn(),
            DownloadColumn(), SpeedColumn(self.totals), EtaColumn(self.totals),
            console=self.console, refresh_per_second=REFRESH_PER_SECOND,
            speed_estimate_period=SPEED_WINDOW, expand=True,
            redirect_stdout=False, redirect_stderr=True,
        )
        live = self.progress.live
        # rich has no public hook for this: the renderer is what draws the live area
        live._live_render = ReflowLiveRender(
            live.get_renderable(), vertical_overflow=live.vertical_overflow
        )
        self.overall = self.progress.add_task("", total=None, overall=True)
        self.tasks: dict[str, TaskID] = {}  # the blobs in flight: digest → task
        self.got: dict[str, int] = {}  # their bytes so far
        self.lock = threading.Lock()
        self.closed = False
        self.progress.before_frame = self._sync

    def start(self) -> None:
        """Start drawing (rich's refresh thread)."""
        self.progress.start()

    def handle(self, event: ProgressEvent) -> None:
        """Take one event, from any thread."""
        with self.lock:
            if self.closed:
                return
            if event.kind == "bytes":
                if event.digest in self.got:
                    self.got[event.digest] += event.amount
                    self.totals.downloaded += event.amount
            elif event.kind == "started":
                self._started(event)
            elif event.kind in ("finished", "cached"):
                self._finished(event)
            elif event.kind == "restarted":
                self._restarted(event)
            elif event.kind == "manifest" and event.what == "image":
                self._plan(event.digest)

    def _sync(self) -> None:
        """Give rich's tasks the counts (called under rich's progress lock, before a frame)."""
        got = dict(self.got)  # one C-level copy: no event thread changes it midway
        for digest, task in dict(self.tasks).items():
            if digest in got:
                self.progress.update(task, completed=got[digest])
        totals = self.totals
        self.progress.update(
            self.overall, total=sum(totals.planned.values()) or None,
            completed=totals.downloaded + totals.cached,
            description=f"total {len(totals.done)}/{len(totals.planned)} blobs",
        )

    def _started(self, event: ProgressEvent) -> None:
        digest = event.digest
        if digest in self.tasks or digest in self.totals.done:
            return
        self.tasks[digest] = self.progress.add_task(
            f"{event.what} {_short(digest)}", total=event.size
        )
        self.got[digest] = 0
        if self.totals.first is None:
            self.totals.first = time.monotonic()
        self.totals.planned.setdefault(digest, event.size or 0)

    def _finished(self, event: ProgressEvent) -> None:
        digest, size = event.digest, event.size or 0
        if digest in self.totals.done:
            return
        task = self.tasks.pop(digest, None)
        got = self.got.pop(digest, 0)
        if task is not None:
            self.progress.remove_task(task)
        if event.kind == "finished":
            self.totals.downloaded += size - got
            self.totals.last = time.monotonic()
        else:
            self.totals.cached += size - got
        self.totals.done.add(digest)
        self.totals.planned.setdefault(digest, size)
        state = "downloaded" if event.kind == "finished" else "cached"
        # Redraw the live area without the blob first: printing above it redraws the frame of
        # the last refresh, which may still hold the blob's bar.
        self.progress.refresh()
        self.console.print(
            f"{event.what + ' ' + _short(digest):<19} {human_bytes(size):>9}  {state}",
            highlight=False, markup=False, soft_wrap=True,
        )

    def _restarted(self, event: ProgressEvent) -> None:
        task = self.tasks.get(event.digest)
        if task is None:
            return
        self.totals.downloaded -= self.got[event.digest]
        self.got[event.digest] = 0
        self.progress.reset(task, total=event.size)

    def _plan(self, digest: str) -> None:
        """Add the config and layers of the image manifest ``digest`` to the plan."""
        try:
            from tank.store import Store

            doc = json.loads(Store(self.cache_dir).read_blob(digest, max_size=1 << 22))
            for d in [doc.get("config"), *(doc.get("layers") or [])]:
                if isinstance(d, dict) and isinstance(d.get("size"), int):
                    self.totals.planned.setdefault(str(d.get("digest")), d["size"])
        except Exception:  # a nicety: without it the totals grow as the blobs start
            return

    def close(self, *, failed: bool) -> None:
        """Stop drawing; erase the live area when ``failed``. Later events are ignored."""
        with self.lock:
            if self.closed:
                return
            self.closed = True
            for task in self.tasks.values():
                self.progress.remove_task(task)
            self.tasks.clear()
            self.got.clear()
            if failed:
                self.progress.live.transient = True
        self.progress.stop()


def _short(digest: str) -> str:
    """``sha256:0123456789abcdef…`` → ``0123456789ab``."""
    return digest.split(":", 1)[-1][:12]
