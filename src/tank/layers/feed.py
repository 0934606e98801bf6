"""Decompressing layers in a background thread, ahead of whoever reads them.

A :class:`LayerFeed` inflates the layers one after another (the next layer's inflate overlaps the
current layer's use) into a small bounded queue; the caller's thread takes the chunks off it.
``zlib``, ``zstd``, ``hashlib`` and ``os.write`` release the GIL, so an unpack keeps two cores
busy: one inflating, one hashing and writing.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Final

from tank.layers.compression import open_layer

#: chunks (of :data:`READ_SIZE` bytes) the thread may be ahead of its reader
QUEUE_DEPTH: Final = 4
#: bytes read from the decompressor at a time (larger reads halve its overhead per byte)
READ_SIZE: Final = 4 << 20


class LayerFeed:
    """Decompresses the layers one after another in a thread, into a bounded queue of chunks.

    :meth:`get` returns the next chunk of the current layer, ``None`` at the end of a layer (the
    next call starts the next layer), and raises whatever the thread met (a corrupt stream:
    :class:`~tank.errors.CorruptLayer`). :meth:`close` (or leaving a ``with`` block) stops the
    thread, wherever it is.
    """

    def __init__(self, layers: Sequence[tuple[Path, str]]) -> None:
        """Start inflating ``layers``, ``(blob_path, media_type)`` each, in order."""
        self._layers = list(layers)
        self._queue: queue.Queue[bytes | BaseException | None] = queue.Queue(QUEUE_DEPTH)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tank-unpack-inflate", daemon=True)
        self._thread.start()

    def _put(self, item: bytes | BaseException | None) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
            except queue.Full:
                continue
            return True
        return False

    def _run(self) -> None:
        try:
            for path, media_type in self._layers:
                with open_layer(path, media_type) as stream:
                    while chunk := stream.read(READ_SIZE):
                        if not self._put(chunk):
                            return
                if not self._put(None):
                    return
        except BaseException as exc:  # handed to the consumer, which raises it
            self._put(exc)

    def get(self) -> bytes | None:
        """The next chunk, ``None`` at a layer's end; raises the decompressor's error."""
        item = self._queue.get()
        if isinstance(item, BaseException):
            self._stop.set()
            raise item
        return item

    def close(self) -> None:
        """Stop the thread (it may be ahead, in the next layer) and wait for it."""
        self._stop.set()
        with contextlib.suppress(queue.Empty):
            while True:
                self._queue.get_nowait()
        self._thread.join()

    def __enter__(self) -> LayerFeed:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


__all__ = ["QUEUE_DEPTH", "READ_SIZE", "LayerFeed"]
