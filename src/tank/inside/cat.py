"""``tank cat``: files of an image's final tree, reading only the layers that decide them.

Layers are read from the top down. After each one, the layers read so far are applied as a
*partial* tree over the unread ones (:class:`~tank.inside.tree.Merger` with ``partial=True``, the
unpack's rules exactly). Each path asked for is looked up there, symlinks resolved inside the
image's root: when the upper layers decide it (the file is there, or a whiteout, an opaque
directory or a replaced parent deletes it) the search stops; when the answer depends on what lies
below (a parent these layers never named, which a lower layer may have made a symlink), one more
layer is read. A file in the top layer whose parents that layer lists needs only that layer.

The content then comes from the layer that holds it: from memory when the file is small and its
name was asked for (kept during the first read), else by reading that layer again up to the entry
and streaming it, chunk by chunk, so a file of several GB never sits in memory. Every layer read
was first checked against its ``diff_id`` (:mod:`tank.inside.read`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import BinaryIO, Protocol

from tank.errors import CorruptLayer, ImagePathError
from tank.inside.entry import FileEntry
from tank.inside.read import Layer, Recorder, Records, read_layers
from tank.inside.tree import FILE, Found, Merger, NeedLower, lookup, user_parts
from tank.inside.view import ImageView, not_a_file, not_found, replay
from tank.layers.tar import DEFAULT_MAX_ENTRIES, DEFAULT_MAX_LAYER_BYTES, read_layer


class Writable(Protocol):
    """Where ``tank cat`` writes: anything with ``write(bytes)``."""

    def write(self, data: bytes, /) -> object:
        """Take the next bytes."""


@dataclass(frozen=True)
class Located:
    """A file found: its entry, and where its content is."""

    entry: FileEntry
    layer: Layer
    ordinal: int
    small: bytes | None


class Cat:
    """The files of one image, found top-down (see the module).

    :param layers: the image's layers, bottom first; their blobs need not be in the cache yet.
    :param fetch: makes sure the blob of the layer at an index is in the cache (verified) and
        returns the layer with its path; called for each layer read, top layer first.
    """

    def __init__(
        self, layers: Sequence[Layer], fetch: Callable[[int], Layer], *,
        reference: str | None = None, max_layer_bytes: int = DEFAULT_MAX_LAYER_BYTES,
        max_entries: int = DEFAULT_MAX_ENTRIES,
    ) -> None:
        self.layers = list(layers)
        self.fetch = fetch
        self.reference = reference
        self.max_layer_bytes = max_layer_bytes
        self.max_entries = max_entries
        self._records: dict[int, Records] = {}  # by layer index
        #: the layers read, by index
        self.read: list[int] = []

    def locate(self, paths: Sequence[str]) -> list[Located]:
        """Find each path's file, reading layers from the top down until all are decided.

        :raises ~tank.errors.PathNotFound: a path that is missing, deleted or a dangling symlink
            (the first such path, in the order given).
        :raises ~tank.errors.ImagePathError: a path that is a directory, a FIFO or a device.
        """
        wanted = [user_parts(p) for p in paths]
        names = frozenset(parts[-1] for parts in wanted if parts)
        watch = tuple(tuple(p) for p in wanted if ".." not in p)
        if not self.layers:
            raise not_found(paths[0], Found(None, tuple(wanted[0])), reference=self.reference)
        lowest = len(self.layers) - 1
        while True:
            self._read_down_to(lowest, names)
            merger = Merger(partial=lowest > 0, watch=watch)
            try:
                for index in range(lowest, len(self.layers)):
                    replay(merger, self.layers[index], self._records[index])
                found = [lookup(merger.root, parts) for parts in wanted]
            except NeedLower:
                lowest -= 1
                continue
            return [self._located(path, f, merger) for path, f in zip(paths, found, strict=True)]

    def _read_down_to(self, lowest: int, names: frozenset[str]) -> None:
        for index in range(len(self.layers) - 1, lowest - 1, -1):
            if index in self._records:
                continue
            layer = self.fetch(index)
            self.layers[index] = layer
            recorder = Recorder(keep=names)
            read_layers([layer], recorder, max_layer_bytes=self.max_layer_bytes,
                        max_entries=self.max_entries)
            self._records[index] = recorder.done[layer.diff_id]
            self.read.append(index)

    def _located(self, path: str, found: Found, merger: Merger) -> Located:
        node = found.node
        if node is None:
            parts = tuple(user_parts(path))
            removal = merger.removed.get(parts)
            removed = None
            if removal is not None and found.broken is None and parts[: len(found.real)] == (
                    found.real):  # no symlink on the way: the path itself was removed
                removed = (removal.layer, removal.how)
            raise not_found(path, found, reference=self.reference, removed=removed,
                            layers=self.layers)
        if node.kind != FILE:
            raise not_a_file(path, node.kind, reference=self.reference)
        view = ImageView(merger.root, tuple(self.layers), self.reference)
        entry = view.entry(found.real, node, links=False)
        records = self._records[node.layer]
        return Located(entry, self.layers[node.layer], node.ordinal,
                       records.small.get(node.ordinal))

    def write(self, located: Located, out: Writable) -> None:
        """Write a located file's content to ``out``, streaming it from its layer when it was
        not kept."""
        if located.small is not None:
            out.write(located.small)
            return
        layer = located.layer
        with read_layer(layer.path, layer.media_type, digest=layer.digest,
                        max_layer_bytes=self.max_layer_bytes,
                        max_entries=self.max_entries) as reader:
            for ordinal, entry in enumerate(reader):
                if ordinal == located.ordinal:
                    if entry.size != located.entry.size:  # the cache changed under us
                        break
                    for chunk in reader.chunks():
                        out.write(chunk)
                    return
        raise CorruptLayer(str(layer.path), f"layer {layer.digest}: the entry of "
                           f"{located.entry.path} is not where the first read found it")


def cat(
    layers: Sequence[Layer], fetch: Callable[[int], Layer], paths: Sequence[str],
    out: BinaryIO | Writable, *, reference: str | None = None,
    max_layer_bytes: int = DEFAULT_MAX_LAYER_BYTES, max_entries: int = DEFAULT_MAX_ENTRIES,
) -> list[FileEntry]:
    """Write each path's content to ``out``, in order; every path is found (or refused) before
    anything is written. Returns the entries written."""
    if not paths:
        raise ImagePathError("no path given", path="")
    finder = Cat(layers, fetch, reference=reference, max_layer_bytes=max_layer_bytes,
                 max_entries=max_entries)
    located = finder.locate(paths)
    for item in located:
        finder.write(item, out)
    return [item.entry for item in located]


__all__ = ["Cat", "Located", "Writable", "cat"]
