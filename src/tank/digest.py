"""Content digests (OCI image-spec "Digests"): parsing, hashing, verification.

Only ``sha256`` and ``sha512`` are registered algorithms. A digest string is validated before
anything (a URL, a path) is built from it: lower-case hex of exactly the algorithm's length, no
surrounding white space. Any other algorithm raises :class:`~tank.errors.UnsupportedDigest`: tank
never lets content through unverified.
"""

from __future__ import annotations

import hashlib
import queue
import re
import threading
from typing import TYPE_CHECKING, Final

from tank.errors import DigestMismatch, InvalidDigest, UnsupportedDigest

if TYPE_CHECKING:
    from collections.abc import Iterable

#: hex length of each supported algorithm
ALGORITHMS: Final[dict[str, int]] = {"sha256": 64, "sha512": 128}

# image-spec grammar: algorithm-component(separator algorithm-component)* ":" encoded
_GRAMMAR = re.compile(r"[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+")
_HEX = re.compile(r"[a-f0-9]+")


class Digest(str):
    """A validated digest string such as ``sha256:9f86d0…``; a ``str`` subclass.

    >>> d = Digest.parse("sha256:" + "a" * 64)
    >>> d.algorithm, len(d.hex)
    ('sha256', 64)
    """

    __slots__ = ()

    @classmethod
    def parse(cls, value: str) -> Digest:
        """Validate ``value``; raise :class:`InvalidDigest` or :class:`UnsupportedDigest`."""
        if isinstance(value, Digest):
            return value
        if not isinstance(value, str):
            raise InvalidDigest(repr(value), "not a string")
        if not _GRAMMAR.fullmatch(value):
            raise InvalidDigest(value, "not of the form algorithm:hex")
        algorithm, _, encoded = value.partition(":")
        length = ALGORITHMS.get(algorithm)
        if length is None:
            raise UnsupportedDigest(
                value, f"unsupported algorithm {algorithm!r} (tank verifies sha256 and sha512)"
            )
        if len(encoded) != length or not _HEX.fullmatch(encoded):
            raise InvalidDigest(
                value, f"{algorithm} needs exactly {length} lower-case hex characters"
            )
        return cls(value)

    @property
    def algorithm(self) -> str:
        """``"sha256"`` or ``"sha512"``."""
        return self.partition(":")[0]

    @property
    def hex(self) -> str:
        """The encoded part after the colon."""
        return self.partition(":")[2]

    def hasher(self) -> Hasher:
        """A fresh incremental hasher for this digest's algorithm."""
        return Hasher(self.algorithm)


def parse(value: str) -> Digest:
    """Validate a digest string (see :meth:`Digest.parse`)."""
    return Digest.parse(value)


def is_digest(value: str) -> bool:
    """Whether ``value`` looks like a digest (``alg:hex``) rather than a tag."""
    return ":" in value


class Hasher:
    """An incremental hash that also counts bytes; ``digest()`` gives a :class:`Digest`."""

    __slots__ = ("_h", "algorithm", "size")

    def __init__(self, algorithm: str = "sha256") -> None:
        if algorithm not in ALGORITHMS:
            raise UnsupportedDigest(f"{algorithm}:", f"unsupported algorithm {algorithm!r}")
        self.algorithm = algorithm
        self._h = hashlib.new(algorithm)
        self.size = 0

    def update(self, data: bytes | bytearray | memoryview) -> None:
        """Feed bytes."""
        self._h.update(data)
        self.size += len(data)

    def copy(self) -> Hasher:
        """An independent copy of the state so far."""
        other = Hasher.__new__(Hasher)
        other.algorithm = self.algorithm
        other._h = self._h.copy()
        other.size = self.size
        return other

    def digest(self) -> Digest:
        """The digest of everything fed so far."""
        return Digest(f"{self.algorithm}:{self._h.hexdigest()}")

    def verify(
        self,
        expected: str,
        *,
        what: str = "content",
        registry: str | None = None,
        repository: str | None = None,
    ) -> Digest:
        """Raise :class:`DigestMismatch` unless the bytes fed hash to ``expected``."""
        actual = self.digest()
        if actual != expected:
            raise DigestMismatch(
                expected, actual, what=what, registry=registry, repository=repository
            )
        return actual


class PipelinedHasher:
    """Hashes in a background thread, so the caller's reads and writes overlap with hashing.

    ``hashlib`` releases the GIL while it hashes large buffers; on the blob path (socket → hash
    → file) this turns ``recv + hash + write`` per chunk into ``max(recv + write, hash)``. The
    queue is bounded, so memory stays at most ``depth`` chunks. Feed immutable ``bytes``.
    :meth:`finish` waits for the thread and returns the wrapped :class:`Hasher`.
    """

    def __init__(self, hasher: Hasher, *, depth: int = 8) -> None:
        self.hasher = hasher
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=depth)
        self._thread = threading.Thread(target=self._run, name="tank-hasher", daemon=True)
        self._thread.start()
        self._finished = False

    def _run(self) -> None:
        get, update = self._queue.get, self.hasher.update
        while (chunk := get()) is not None:
            update(chunk)

    def update(self, data: bytes) -> None:
        """Queue ``data`` for hashing (blocks while ``depth`` chunks are waiting)."""
        self._queue.put(data)

    def finish(self) -> Hasher:
        """Wait until everything queued is hashed; return the hasher."""
        if not self._finished:
            self._finished = True
            self._queue.put(None)
            self._thread.join()
        return self.hasher


def compute(data: bytes | bytearray | memoryview, algorithm: str = "sha256") -> Digest:
    """The digest of ``data``."""
    h = Hasher(algorithm)
    h.update(data)
    return h.digest()


def compute_chunks(chunks: Iterable[bytes], algorithm: str = "sha256") -> Digest:
    """The digest of the concatenation of ``chunks``."""
    h = Hasher(algorithm)
    for chunk in chunks:
        h.update(chunk)
    return h.digest()


def verify(
    data: bytes | bytearray | memoryview,
    expected: str,
    *,
    what: str = "content",
    registry: str | None = None,
    repository: str | None = None,
) -> Digest:
    """Raise :class:`DigestMismatch` unless ``data`` hashes to ``expected`` (validated first)."""
    want = Digest.parse(expected)
    h = want.hasher()
    h.update(data)
    return h.verify(want, what=what, registry=registry, repository=repository)


__all__ = [
    "ALGORITHMS",
    "Digest",
    "Hasher",
    "PipelinedHasher",
    "compute",
    "compute_chunks",
    "is_digest",
    "parse",
    "verify",
]
