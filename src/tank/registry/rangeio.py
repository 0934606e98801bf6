"""What a ranged fetch (:mod:`tank.registry.ranged`) writes into and draws connections from.

- :class:`Budget`: the connections a whole pull may hold at once, shared by its blobs.
- :class:`FileSink`: a :class:`~tank.registry.ranged.RangedSink` over an open file, for
  :meth:`tank.Repository.download_blob` (the cache's writer is the other one).
- :class:`Range`, :func:`plan_ranges`, :func:`range_size`: how a blob is cut into ranges.
"""

from __future__ import annotations

import os
import threading
import time
from typing import BinaryIO, Final

#: the largest range one request asks for
MAX_RANGE: Final = 32 * 1024 * 1024
#: the smallest, unless the threshold itself is smaller
MIN_RANGE: Final = 4 * 1024 * 1024


class Budget:
    """The connections a whole pull may hold at once: a counting semaphore of ``total`` slots.

    Each blob download holds one slot while it runs; a blob fetched as ranges takes one more
    for each range its other connections fetch, when one is free. It also meters the pull's
    bytes (:meth:`count`, :meth:`rate`): a pull that already moves fast gains nothing from
    more connections.
    """

    def __init__(self, total: int) -> None:
        if total < 1:
            raise ValueError("a connection budget needs at least one connection")
        self.total = total
        self._sem = threading.Semaphore(total)
        self._lock = threading.Lock()
        self._bytes = 0
        self._since: float | None = None

    def count(self, amount: int) -> None:
        """``amount`` more bytes arrived, for any blob of the pull."""
        with self._lock:
            if self._since is None:
                self._since = time.monotonic()
            self._bytes += amount

    def rate(self) -> float:
        """The pull's bytes per second since its first byte (0 before any)."""
        with self._lock:
            since, amount = self._since, self._bytes
        if since is None:
            return 0.0
        return amount / max(time.monotonic() - since, 0.005)

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

    def settle(self, prefix: int) -> None:
        """Go on as one stream after the first ``prefix`` bytes."""
        self.out.seek(prefix)
        self.written = prefix


def range_size(size: int, connections: int, threshold: int) -> int:
    """How many bytes each range request asks for: about four ranges per connection, between
    :data:`MIN_RANGE` (or a quarter of ``threshold`` per connection, when that is smaller)
    and :data:`MAX_RANGE`."""
    smallest = max(64 * 1024, min(MIN_RANGE, threshold // max(1, connections)))
    return max(smallest, min(MAX_RANGE, -(-size // (connections * 4))))


class Range:
    """One range to fetch: ``[start, end)``, ``pos`` the next byte not yet written."""

    __slots__ = ("attempts", "end", "pos", "start")

    def __init__(self, start: int, end: int, pos: int | None = None) -> None:
        self.start, self.end = start, end
        self.pos = start if pos is None else pos
        self.attempts = 0


def plan_ranges(written: int, held: list[tuple[int, int]], size: int, step: int) -> list[Range]:
    """Ranges covering ``[written, size)``: those held (already done), the rest in ``step``s."""
    out: list[Range] = []
    pos = written
    for start, end in sorted(held):
        start, end = max(start, pos), min(end, size)
        if end <= start:
            continue
        out.extend(Range(a, min(a + step, start)) for a in range(pos, start, step))
        out.append(Range(start, end, pos=end))
        pos = end
    out.extend(Range(a, min(a + step, size)) for a in range(pos, size, step))
    return out


__all__ = ["MAX_RANGE", "MIN_RANGE", "Budget", "FileSink", "Range", "plan_ranges", "range_size"]
