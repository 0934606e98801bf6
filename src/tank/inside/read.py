"""Reading an image's layers from the cache: entries in order, each layer checked against its
``diff_id``, file contents skipped, hashed or kept as the caller chooses.

Every layer is read by tank's own tar reader (:class:`~tank.layers.tar.LayerReader`: names,
limits, hostile input) while its uncompressed bytes are hashed; once its entries are exhausted the
hash must be the layer's ``diff_id`` (:class:`~tank.errors.DigestMismatch` otherwise). The blob
itself was verified against its digest when it entered the cache. Callers use what a layer gave
only after :func:`read_layers` returned, so nothing unverified is ever shown.

:func:`read_layers` reads layers in order, decompressing in a background thread a layer ahead
(:class:`~tank.layers.feed.LayerFeed`) and hashing in another
(:class:`~tank.digest.PipelinedHasher`): for a visitor that must see them in order (a merge as
it goes, in memory proportional to the tree). :func:`read_each` reads several layers at once, each
in its own thread with its own visitor (:class:`Recorder`), for the callers that keep what every
layer holds and merge afterwards (``export``, ``diff``): decompression, the slowest part, then
runs on every core.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Protocol

from tank.digest import Digest, Hasher, PipelinedHasher
from tank.layers.compression import open_layer
from tank.layers.feed import QUEUE_DEPTH, READ_SIZE, LayerFeed
from tank.layers.tar import (
    DEFAULT_MAX_ENTRIES,
    DEFAULT_MAX_LAYER_BYTES,
    REGULAR_TYPES,
    LayerReader,
    TarEntry,
)

#: what a small file's content may be to be kept from the first read (``tank cat``)
SMALL_FILE: Final = 1 << 20
#: what the small files kept from one layer may add up to
SMALL_TOTAL: Final = 16 << 20


@dataclass(frozen=True)
class Layer:
    """One layer of an image: where it stands, what it is, and its blob in the cache.

    :ivar index: its position, 0 for the base layer.
    :ivar digest: the blob's digest (compressed).
    :ivar diff_id: the digest of its uncompressed tar, from the image config.
    :ivar media_type: the blob's media type (gzip, zstd or plain tar).
    :ivar size: the blob's size.
    :ivar path: the blob in the cache.
    """

    index: int
    digest: str
    diff_id: str
    media_type: str
    size: int
    path: Path


class Visitor(Protocol):
    """What :func:`read_layers` tells, layer by layer and entry by entry."""

    def begin(self, layer: Layer) -> None:
        """A layer starts."""

    def entry(self, entry: TarEntry, ordinal: int, reader: LayerReader) -> None:
        """The ``ordinal``-th entry of the layer; its content, if any, is ``reader``'s to read
        (what is left unread is skipped)."""

    def end(self, layer: Layer) -> None:
        """A layer's entries are done (its ``diff_id`` is checked next)."""


def read_layers(
    layers: Sequence[Layer], visitor: Visitor, *, max_layer_bytes: int = DEFAULT_MAX_LAYER_BYTES,
    max_entries: int = DEFAULT_MAX_ENTRIES,
) -> None:
    """Read ``layers`` in the order given, telling ``visitor``; each layer is checked against its
    ``diff_id`` after its last entry.

    Raises what the tar reader raises (:class:`~tank.errors.CorruptLayer`,
    :class:`~tank.errors.LayerTooLarge`, :class:`~tank.errors.UnsafeEntry`), what the visitor
    raises, and :class:`~tank.errors.DigestMismatch` for a layer that is not its ``diff_id``.
    """
    if max_layer_bytes < 0 or max_entries < 0:
        raise ValueError("max_layer_bytes and max_entries must not be negative")
    if not layers:
        return
    with LayerFeed([(layer.path, layer.media_type) for layer in layers]) as feed:
        for layer in layers:
            _visit(layer, feed.get, visitor, max_layer_bytes, max_entries).verify(
                Digest.parse(layer.diff_id),
                what=f"uncompressed layer {layer.digest} (its diff_id)",
            )


def _visit(
    layer: Layer, chunk: Callable[[], bytes | None], visitor: Visitor, max_layer_bytes: int,
    max_entries: int,
) -> Hasher:
    """Tell ``visitor`` every entry of ``layer``, read from ``chunk``; the hash of its
    uncompressed bytes (for the caller to check against the ``diff_id``)."""
    hasher = PipelinedHasher(Digest.parse(layer.diff_id).hasher(), depth=QUEUE_DEPTH)
    try:
        reader = LayerReader(
            chunk, digest=layer.digest, source=str(layer.path),
            max_layer_bytes=max_layer_bytes, max_entries=max_entries, hasher=hasher,
        )
        visitor.begin(layer)
        ordinal = 0
        while (entry := reader.next_entry()) is not None:
            visitor.entry(entry, ordinal, reader)
            ordinal += 1
        visitor.end(layer)
    finally:
        done = hasher.finish()
    return done


def read_each(
    layers: Sequence[Layer], visitor_for: Callable[[Layer], Visitor], *, jobs: int = 2,
    max_layer_bytes: int = DEFAULT_MAX_LAYER_BYTES, max_entries: int = DEFAULT_MAX_ENTRIES,
) -> None:
    """Read each layer in a thread of its own, up to ``jobs`` at once, the largest first, telling
    the visitor ``visitor_for(layer)`` made for it; each layer is checked against its
    ``diff_id`` after its last entry. The first failure stops the others at their next chunk
    and is raised (see :func:`read_layers` for what may be)."""
    if max_layer_bytes < 0 or max_entries < 0:
        raise ValueError("max_layer_bytes and max_entries must not be negative")
    stop = threading.Event()

    def one(layer: Layer) -> None:
        visitor = visitor_for(layer)
        with open_layer(layer.path, layer.media_type) as stream:

            def chunk() -> bytes | None:
                return None if stop.is_set() else stream.read(READ_SIZE)

            done = _visit(layer, chunk, visitor, max_layer_bytes, max_entries)
        if not stop.is_set():
            done.verify(Digest.parse(layer.diff_id),
                        what=f"uncompressed layer {layer.digest} (its diff_id)")

    order = sorted(layers, key=lambda layer: -layer.size)
    pool = ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="tank-read")
    try:
        futures = [pool.submit(one, layer) for layer in order]
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        failed = [f for f in futures if f in done and f.exception() is not None]
        if failed:
            stop.set()
            raise failed[0].exception()  # type: ignore[misc]
    except BaseException:
        stop.set()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def default_jobs() -> int:
    """Layers read at once by :func:`read_each`: one per core, at most 4."""
    return max(1, min(4, os.cpu_count() or 1))


# -- what to do with file contents --------------------------------------------------------------


Content = Callable[[TarEntry, LayerReader], object]


def skip_content(entry: TarEntry, reader: LayerReader) -> None:
    """Keep nothing of a file's content (it is skipped)."""
    return None


def hash_content(entry: TarEntry, reader: LayerReader) -> str:
    """The sha256 (hex) of a file's content."""
    h = hashlib.sha256()
    for chunk in reader.chunks():
        h.update(chunk)
    return h.hexdigest()


class Spool:
    """File contents kept in an unnamed scratch file, each at an offset, to be copied out later
    in any order (``tank export``). The file has no name: it is gone when closed, or when the
    process dies."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        """An empty spool in ``directory`` (on the filesystem that will hold the bytes)."""
        import tempfile

        self.file = tempfile.TemporaryFile(dir=directory)  # noqa: SIM115 - closed by close()
        self.fd = self.file.fileno()
        self.size = 0

    def __call__(self, entry: TarEntry, reader: LayerReader) -> int | None:
        """Append the file's content; its offset (``None`` for an empty file)."""
        if not entry.size:
            return None
        offset = self.size
        reader.copy_to(self.fd)
        self.size += entry.size
        return offset

    def close(self) -> None:
        """Drop the spool."""
        self.file.close()


@dataclass
class Records:
    """One layer's entries, kept (metadata only) to be applied again, and the content of the
    small files asked for: what ``tank cat`` and ``tank diff`` read once and use more than once.
    """

    entries: list[tuple[TarEntry, object]] = field(default_factory=list)
    #: ordinal → content of the small files kept
    small: dict[int, bytes] = field(default_factory=dict)


class Recorder:
    """A :class:`Visitor` keeping each layer's :class:`Records`.

    :param content: what becomes each file's ``data`` (:func:`skip_content`, :func:`hash_content`).
    :param keep: the last path components (names) whose small files' content to keep.

    :attr:`done` holds each layer's records by its ``diff_id`` (a layer is what its bytes are).
    """

    def __init__(self, content: Content = skip_content, keep: frozenset[str] = frozenset()):
        self.content = content
        self.keep = keep
        self.done: dict[str, Records] = {}
        self._current: Records | None = None
        self._kept = 0

    def begin(self, layer: Layer) -> None:
        """Start the layer's records."""
        self._current = Records()
        self._kept = 0

    def entry(self, entry: TarEntry, ordinal: int, reader: LayerReader) -> None:
        """Record the entry (and keep its content when asked for and small)."""
        assert self._current is not None
        data = None
        if entry.kind in REGULAR_TYPES:
            if (
                self.keep and entry.size <= SMALL_FILE and self._kept + entry.size <= SMALL_TOTAL
                and entry.name.rstrip("/").rpartition("/")[2] in self.keep
            ):
                content = b"".join(reader.chunks())
                self._current.small[ordinal] = content
                self._kept += len(content)
            else:
                data = self.content(entry, reader)
        self._current.entries.append((entry, data))

    def end(self, layer: Layer) -> None:
        """The layer's records are complete."""
        assert self._current is not None
        self.done[layer.diff_id] = self._current
        self._current = None


__all__ = [
    "SMALL_FILE",
    "SMALL_TOTAL",
    "Content",
    "Layer",
    "Recorder",
    "Records",
    "Spool",
    "Visitor",
    "default_jobs",
    "hash_content",
    "read_each",
    "read_layers",
    "skip_content",
]
