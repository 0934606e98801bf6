"""The pull's progress on stderr: live bars on a terminal, plain lines elsewhere, or nothing.

:class:`PullProgress` is the ``progress=`` callback of :func:`tank.pull`. Events
(:class:`tank.ProgressEvent`) come from the pull's worker threads, any number at once.

Invariants:

- ``-q``: nothing at all.
- stderr not a terminal: one plain line per manifest (``WHAT DIGEST``) and per blob once it is
  in the cache (``WHAT DIGEST SIZE downloaded|cached``), never a control character.
- stderr a terminal: live rows, one per blob in flight, then an overall row (blobs, bytes,
  speed, ETA); a finished blob becomes one line above them (:mod:`tank.cli.bars`; rich is
  imported only then).
- Events may come from any thread; the callback does constant work per event.
"""

from __future__ import annotations

import sys
import threading
from types import TracebackType
from typing import TYPE_CHECKING

import click

from tank.cli.output import human_bytes

if TYPE_CHECKING:
    from tank._pull import ProgressEvent
    from tank.cli.bars import Bars


class PullProgress:
    """The ``progress=`` callback for a pull, and a context manager that closes its display.

    :param quiet: draw nothing (``-q``).
    :param cache_dir: the pull's cache (``None``: the default): on a terminal the overall line
        reads each image manifest from it, as soon as the pull announces it, to know the bytes
        and blobs to come.
    """

    def __init__(self, *, quiet: bool, cache_dir: str | None = None) -> None:
        self.quiet = quiet
        self.tty = not quiet and sys.stderr.isatty()
        self._lock = threading.Lock()
        self._bars: Bars | None = None
        if self.tty:
            from tank.cli.bars import Bars  # rich, only on a terminal

            self._bars = Bars(cache_dir)

    def __call__(self, event: ProgressEvent) -> None:
        """Take one event (from any thread)."""
        if self.quiet:
            return
        if self._bars is not None:
            self._bars.handle(event)
            return
        with self._lock:
            if event.kind == "manifest":
                click.echo(f"{event.what} {event.digest}", err=True)
            elif event.kind in ("finished", "cached"):
                state = "downloaded" if event.kind == "finished" else "cached"
                size = human_bytes(event.size or 0)
                click.echo(f"{event.what} {event.digest} {size} {state}", err=True)

    def close(self, *, failed: bool = False) -> None:
        """Stop drawing: the live area ends as the overall line, or is erased when ``failed``.
        Later events are ignored."""
        if self._bars is not None:
            self._bars.close(failed=failed)

    def __enter__(self) -> PullProgress:
        if self._bars is not None:
            self._bars.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close(failed=exc is not None)


