"""The merged view of an image: its layers read into one :class:`~tank.inside.tree.Merger` tree,
and the entries that tree holds, as :class:`~tank.inside.entry.FileEntry` objects.

:func:`merge` reads every layer (verified, see :mod:`tank.inside.read`) into an
:class:`ImageView`; :func:`layer_entries` lists one layer as its tar has it, whiteouts included.
Listings are in one order everywhere (``tank ls -R``, ``tank export``, ``tank diff``): depth
first, a directory before its content, names sorted by their bytes. Among the paths of one hard
linked file, the first in that order is listed as the file and the others as ``hardlink`` entries
naming it.
"""

from __future__ import annotations

import tarfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from tank.errors import ImagePathError, PathNotFound, UnsafeEntry
from tank.inside.entry import FileEntry
from tank.inside.read import (
    Content,
    Layer,
    Recorder,
    Records,
    Visitor,
    default_jobs,
    read_each,
    read_layers,
    skip_content,
)
from tank.inside.tree import DIR, Dir, Found, Merger, Node, lookup, user_parts, walk
from tank.layers.tar import (
    DEFAULT_MAX_ENTRIES,
    DEFAULT_MAX_LAYER_BYTES,
    REGULAR_TYPES,
    LayerReader,
    TarEntry,
    split_name,
)
from tank.layers.whiteout import is_opaque, is_whiteout, whiteout_target

_TAR_KINDS = {
    tarfile.DIRTYPE: "dir", tarfile.SYMTYPE: "symlink", tarfile.LNKTYPE: "hardlink",
    tarfile.FIFOTYPE: "fifo", tarfile.CHRTYPE: "char", tarfile.BLKTYPE: "block",
}


class Merging:
    """A :class:`~tank.inside.read.Visitor` that applies each entry to a merger as it is read;
    ``content`` decides each file's ``data``."""

    def __init__(self, merger: Merger, content: Content = skip_content) -> None:
        self.merger = merger
        self.content = content

    def begin(self, layer: Layer) -> None:
        """Start applying the layer."""
        self.merger.begin_layer(layer.index, layer.digest)

    def entry(self, entry: TarEntry, ordinal: int, reader: LayerReader) -> None:
        """Apply one entry."""
        data = self.content(entry, reader) if entry.kind in REGULAR_TYPES else None
        self.merger.apply(entry, ordinal, data)

    def end(self, layer: Layer) -> None:
        """The layer is applied."""
        self.merger.end_layer()


def replay(merger: Merger, layer: Layer, records: Records) -> None:
    """Apply the recorded entries of ``layer`` to ``merger``."""
    merger.begin_layer(layer.index, layer.digest)
    for ordinal, (entry, data) in enumerate(records.entries):
        merger.apply(entry, ordinal, data)
    merger.end_layer()


@dataclass
class ImageView:
    """An image's final tree (metadata only) and its layers, bottom first.

    :ivar reference: what the image was asked for as (for messages), or ``None``.
    """

    root: Dir
    layers: tuple[Layer, ...]
    reference: str | None = None
    _primaries: dict[int, str] | None = field(default=None, repr=False)

    def primaries(self) -> dict[int, str]:
        """``id(node)`` → the first path (in listing order) of each file with several paths."""
        if self._primaries is None:
            found: dict[int, str] = {}
            for parts, node in walk(self.root):
                if node.nlink > 1 and node.kind != DIR and id(node) not in found:
                    found[id(node)] = "/" + "/".join(parts)
            self._primaries = found
        return self._primaries

    def entry(self, parts: tuple[str, ...], node: Node, *, links: bool = True) -> FileEntry:
        """The :class:`FileEntry` of ``node``, found at ``parts``; without ``links`` a file with
        several paths is a ``file`` at each (no walk of the tree to find its first path)."""
        path = "/" + "/".join(parts)
        kind, target = node.kind, node.link
        if links and node.nlink > 1 and kind != DIR:
            first = self.primaries().get(id(node), path)
            if first != path:
                kind, target = "hardlink", first
        digest = self.layers[node.layer].digest if 0 <= node.layer < len(self.layers) else ""
        return FileEntry(
            path=path, kind=kind, mode=node.mode, uid=node.uid, gid=node.gid, size=node.size,
            mtime_ns=node.mtime_ns, link_target=target, layer=max(node.layer, 0),
            layer_digest=digest, nlink=max(node.nlink, 1), devices=node.devices,
            xattrs=node.xattrs,
        )

    def find(self, path: str, *, follow: bool = True) -> Found:
        """Where ``path`` leads (see :func:`~tank.inside.tree.lookup`); ``ValueError`` for a
        path that cannot be one (a NUL byte, too long)."""
        return lookup(self.root, user_parts(path), follow=follow)

    def stat(self, path: str, *, follow: bool = True) -> FileEntry:
        """The entry at ``path``; :class:`~tank.errors.PathNotFound` if there is none."""
        found = self._found(path, follow=follow)
        assert found.node is not None
        return self.entry(found.real, found.node)

    def entries(
        self, path: str = "/", *, recursive: bool = False, follow: bool = True,
    ) -> Iterator[FileEntry]:
        """What ``path`` holds: a directory's children (with ``recursive``, everything under
        it), in listing order; for anything else, its own entry.

        :raises ~tank.errors.PathNotFound: nothing is at ``path`` (raised by this call, before
            any entry is asked for).
        """
        found = self._found(path, follow=follow)
        return self._entries(found, recursive=recursive)

    def _entries(self, found: Found, *, recursive: bool) -> Iterator[FileEntry]:
        node = found.node
        if not isinstance(node, Dir):
            assert node is not None
            yield self.entry(found.real, node)
            return
        if recursive:
            for parts, child in walk(node, found.real):
                yield self.entry(parts, child)
            return
        for name in sorted(node.children, key=_bytes):
            yield self.entry((*found.real, name), node.children[name])

    def _found(self, path: str, *, follow: bool) -> Found:
        try:
            found = self.find(path, follow=follow)
        except ValueError as exc:
            raise PathNotFound(str(exc), path=path, reference=self.reference) from None
        if found.node is None:
            raise not_found(path, found, reference=self.reference)
        return found


def not_found(
    path: str, found: Found, *, reference: str | None, removed: tuple[int, str] | None = None,
    layers: Sequence[Layer] = (),
) -> PathNotFound:
    """The :class:`~tank.errors.PathNotFound` for a lookup that led nowhere: a loop, a dangling
    symlink, a path a layer deleted (``removed``: its index and how), or nothing."""
    shown = "/" + "/".join(user_parts(path))
    index: int | None = None
    if found.loop:
        via = f" (from /{found.broken})" if found.broken else ""
        text = f"{shown}: too many levels of symlinks{via}"
    elif found.broken is not None:
        text = f"{shown}: the symlink /{found.broken} -> {found.target} leads nowhere in the image"
    elif removed is not None:
        index, how = removed
        by = {"whiteout": "a whiteout", "opaque": "an opaque directory",
              "replaced": "a parent replaced"}.get(how, how)
        digest = f" ({layers[index].digest})" if 0 <= index < len(layers) else ""
        text = f"{shown}: deleted by layer {index}{digest}: {by}"
    else:
        text = f"{shown}: no such file or directory in the image"
    return PathNotFound(readable(text), path=path, reference=reference, layer=index)


def not_a_file(path: str, kind: str, *, reference: str | None) -> ImagePathError:
    """The :class:`~tank.errors.ImagePathError` for ``tank cat`` of something without content."""
    shown = "/" + "/".join(user_parts(path))
    what = {"dir": "a directory", "fifo": "a FIFO", "char": "a character device",
            "block": "a block device"}.get(kind, kind)
    return ImagePathError(readable(f"{shown} is {what}, not a regular file"), path=path,
                          reference=reference)


def readable(text: str) -> str:
    """``text`` with the bytes of names that are not UTF-8 (kept as surrogate escapes) shown as
    ``\\xNN``, so that it can be printed anywhere."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def merge(
    layers: Sequence[Layer], *, content: Content = skip_content, reference: str | None = None,
    max_layer_bytes: int = DEFAULT_MAX_LAYER_BYTES, max_entries: int = DEFAULT_MAX_ENTRIES,
) -> ImageView:
    """Read every layer, bottom first, into one tree: the image's final filesystem."""
    merger = Merger()
    read_layers(layers, Merging(merger, content), max_layer_bytes=max_layer_bytes,
                max_entries=max_entries)
    return ImageView(merger.root, tuple(layers), reference)


def record(
    layers: Sequence[Layer], content_for: Callable[[Layer], Content], *, jobs: int | None = None,
    max_layer_bytes: int = DEFAULT_MAX_LAYER_BYTES, max_entries: int = DEFAULT_MAX_ENTRIES,
) -> dict[Layer, Records]:
    """Each layer's :class:`~tank.inside.read.Records`, the layers read at once
    (:func:`~tank.inside.read.read_each`); ``content_for(layer)`` decides the files' ``data``."""
    recorders: dict[Layer, Recorder] = {}

    def visitor_for(layer: Layer) -> Visitor:
        recorder = Recorder(content=content_for(layer))
        recorders[layer] = recorder
        return recorder

    read_each(layers, visitor_for, jobs=jobs or default_jobs(), max_layer_bytes=max_layer_bytes,
              max_entries=max_entries)
    return {layer: recorder.done[layer.diff_id] for layer, recorder in recorders.items()}


def assemble(
    layers: Sequence[Layer], records: Callable[[Layer], Records], *,
    reference: str | None = None,
) -> ImageView:
    """The tree of ``layers`` from their records (``records(layer)``), applied bottom first."""
    merger = Merger()
    for layer in layers:
        replay(merger, layer, records(layer))
    return ImageView(merger.root, tuple(layers), reference)


# -- one layer, as its tar has it ---------------------------------------------------------------


class _Listing(Visitor):
    def __init__(self) -> None:
        self.found: list[FileEntry] = []
        self.layer: Layer | None = None

    def begin(self, layer: Layer) -> None:
        self.layer = layer

    def entry(self, entry: TarEntry, ordinal: int, reader: LayerReader) -> None:
        assert self.layer is not None
        self.found.append(layer_entry(entry, self.layer))

    def end(self, layer: Layer) -> None:
        pass


def layer_entry(entry: TarEntry, layer: Layer) -> FileEntry:
    """One tar entry of ``layer`` as a :class:`FileEntry`: a whiteout is listed at the path it
    deletes, an opaque marker at its directory.

    :raises ~tank.errors.UnsafeEntry: a name the unpack would refuse.
    """
    try:
        parts = split_name(entry.name)
        kind = "file" if entry.kind in REGULAR_TYPES else _TAR_KINDS.get(entry.kind)
        target = entry.linkname if entry.kind == tarfile.SYMTYPE else ""
        if entry.kind == tarfile.LNKTYPE:
            target = "/" + "/".join(split_name(entry.linkname, "hard link target"))
        if parts and is_whiteout(parts[-1]):
            if is_opaque(parts[-1]):
                kind, parts = "opaque", parts[:-1]
            else:
                hidden = whiteout_target(parts[-1])
                if hidden is not None:
                    kind, parts = "whiteout", [*parts[:-1], hidden]
    except ValueError as exc:
        raise UnsafeEntry(str(exc), layer=layer.digest, entry=entry.name) from None
    except UnsafeEntry as exc:
        raise UnsafeEntry(exc.reason, layer=layer.digest, entry=entry.name) from None
    if kind is None:
        raise UnsafeEntry(f"unsupported tar entry type {entry.kind!r}", layer=layer.digest,
                          entry=entry.name)
    devices = (entry.devmajor, entry.devminor) if kind in ("char", "block") else None
    return FileEntry(
        path="/" + "/".join(parts), kind=kind, mode=entry.mode, uid=entry.uid, gid=entry.gid,
        size=entry.size, mtime_ns=entry.mtime_ns, link_target=target, layer=layer.index,
        layer_digest=layer.digest, devices=devices, xattrs=entry.xattrs,
    )


def layer_entries(
    layer: Layer, *, max_layer_bytes: int = DEFAULT_MAX_LAYER_BYTES,
    max_entries: int = DEFAULT_MAX_ENTRIES,
) -> list[FileEntry]:
    """Every entry of one layer, in the tar's order (verified against its ``diff_id`` first)."""
    listing = _Listing()
    read_layers([layer], listing, max_layer_bytes=max_layer_bytes, max_entries=max_entries)
    return listing.found


def in_layer(
    found: Sequence[FileEntry], path: str, *, recursive: bool,
) -> list[FileEntry]:
    """The entries of a layer listing under ``path`` (its children; with ``recursive``,
    everything below; the entry itself when ``path`` names no directory of the layer), sorted
    in listing order (entries of one path in the tar's order). Paths are taken as the layer
    writes them: nothing is resolved through symlinks."""
    parts = tuple(user_parts(path))
    depth = len(parts)
    keyed = [(_parts(e.path), e) for e in found]
    inside = [
        (key, e) for key, e in keyed
        if key[:depth] == parts and (len(key) == depth + 1 or (recursive and len(key) > depth))
    ]
    if not inside:
        inside = [(key, e) for key, e in keyed if key == parts]
    inside.sort(key=lambda item: [_bytes(p) for p in item[0]])
    return [e for _, e in inside]


def _parts(path: str) -> tuple[str, ...]:
    return tuple(p for p in path.split("/") if p)


def _bytes(name: str) -> bytes:
    return name.encode("utf-8", "surrogateescape")


__all__ = [
    "ImageView",
    "Merging",
    "assemble",
    "in_layer",
    "layer_entries",
    "layer_entry",
    "merge",
    "not_a_file",
    "not_found",
    "readable",
    "record",
    "replay",
]
