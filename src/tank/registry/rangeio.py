"""What a ranged fetch (:mod:`tank.registry.ranged`) writes into and draws connections from.

- :class:`Budget`: the connections a whole pull may hold at once, shared by its blobs.
- :class:`FileSink`: a :class:`~tank.registry.ranged.RangedSink` over an open file, for
  :meth:`tank.Repository.download_blob` (the cache's writer is the other one).
"""

from __future__ import annotations

import os
import threading
from typing import BinaryIO


class Budget:
    """The connections a whole pull may hold at once: a counting semaphore of ``total`` slots.

    Each blob download holds one slot while it runs; a blob fetched as ranges takes one more
    for each range its other connections fetch, when one is free.
    """

    def __init__(self, total: int) -> None:
        if total < 1:
            raise ValueError("a connection budget needs at least one connection")
        self.total = total
        self._sem = threading.Semaphore(total)

    def acquire(self, timeout: float | None = None) -> bool:
        """Take a slot, waiting at most ``timeout`` seconds (``None``: until one is free);
        whether one was taken."""
        return self._sem.acquire(timeout=timeout)

    def release(self) -> None:
        """Give a slot back."""
        self._sem.release()


class FileSink:
    """A :class:`RangedSink` over an open, readable file (:meth:`tank.Repository.download_blob`'s
    temporary file): ranges are written at their offsets; nothing is journaled."""

    def __init__(self, out: BinaryIO, size: int | None) -> None:
        self.out, self.size, self.written = out, size, 0

    def write(self, data: bytes) -> None:
        """Append ``data``."""
        self.out.write(data)
        self.written += len(data)

    def restart(self) -> None:
        """Discard everything written."""
        self.out.seek(0)
        self.out.truncate()
        self.written = 0

    def held(self) -> list[tuple[int, int]]:
        """Nothing is held from an earlier run."""
        return []

    def begin_ranged(self) -> None:
        """Flush what was appended before the first write at an offset."""
        self.out.flush()

    def write_at(self, offset: int, data: bytes) -> None:
        """Write ``data`` at ``offset``."""
        view, fd = memoryview(data), self.out.fileno()
        while view:
            done = os.pwrite(fd, view, offset)
            view, offset = view[done:], offset + done

    def read_at(self, offset: int, size: int) -> bytes:
        """Up to ``size`` bytes at ``offset``."""
        return os.pread(self.out.fileno(), size, offset)

    def keep(self, ranges: list[tuple[int, int]]) -> None:
        """Nothing to journal: a failed download leaves no file to resume."""

    def complete(self) -> None:
        """The file holds the whole blob."""
        if self.size is not None:
            self.written = self.size


__all__ = ["Budget", "FileSink"]
