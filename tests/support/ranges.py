"""Helpers for the tests of ranged fetches (no tests here): the byte ranges requests asked for.

A ranged fetch asks its first range to the blob's end (``bytes=N-(size - 1)``) when nothing
after it is kept, and reads only what it needs of it (the rest of the blob is then other
requests' or the same response's): the bytes *fetched* are each range up to where the next one
starts.
"""

from __future__ import annotations

import re

from tank.testing.fronts import Recorded


def asked(r: Recorded, size: int) -> tuple[int, int]:
    """The bytes ``[start, end)`` a GET asked for (``bytes=a-b``, ``bytes=a-``, or none)."""
    m = re.fullmatch(r"bytes=(\d+)-(\d*)", r.headers.get("range", "bytes=0-"))
    assert m, r.headers
    return int(m[1]), int(m[2]) + 1 if m[2] else size


def fetched(ranges: list[tuple[int, int]]) -> int:
    """How many bytes ``ranges`` fetch when each is read only up to the next one's start."""
    spans = sorted(ranges)
    total = 0
    for i, (start, end) in enumerate(spans):
        stop = min(end, spans[i + 1][0]) if i + 1 < len(spans) else end
        total += max(0, stop - start)
    return total
