"""Stopping work from another thread, including a read that is blocked on the network.

A :class:`Cancel` is a :class:`threading.Event` that also runs the abort hooks registered while
it is set: a blob download registers its response's ``shutdown()``, so setting the event stops a
read that is waiting on a stalled server at once, not after the read timeout. Ctrl-C in the CLI
and a cancelled :mod:`tank.aio` task both set one.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator


class Cancel(threading.Event):
    """An event whose :meth:`set` also calls the hooks registered with :meth:`hook`."""

    def __init__(self) -> None:
        super().__init__()
        self._hooks_lock = threading.Lock()
        self._hooks: dict[int, Callable[[], None]] = {}
        self._next = 0

    def set(self) -> None:
        """Set the event, then call every registered hook (errors in a hook are ignored)."""
        super().set()
        with self._hooks_lock:
            hooks = list(self._hooks.values())
        for hook in hooks:
            with contextlib.suppress(Exception):
                hook()

    @contextlib.contextmanager
    def hook(self, abort: Callable[[], None]) -> Iterator[None]:
        """Call ``abort`` if the event is set while the block runs (at once if it is already)."""
        with self._hooks_lock:
            key = self._next
            self._next += 1
            self._hooks[key] = abort
        try:
            if self.is_set():
                abort()
            yield
        finally:
            with self._hooks_lock:
                self._hooks.pop(key, None)


@contextlib.contextmanager
def aborting(cancelled: threading.Event | None, abort: Callable[[], None]) -> Iterator[None]:
    """:meth:`Cancel.hook` when ``cancelled`` is a :class:`Cancel`; nothing otherwise."""
    if isinstance(cancelled, Cancel):
        with cancelled.hook(abort):
            yield
    else:
        yield


__all__ = ["Cancel", "aborting"]
