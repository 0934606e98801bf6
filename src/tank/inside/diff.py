"""``tank diff``: what differs between two images' final trees.

Both trees are built as :func:`~tank.inside.view.merge` builds one, with each file's content
hashed (sha256) as it is read. A layer the two images share (the same ``diff_id``) is read once:
its entries are kept (metadata and hashes) and applied to both trees.

A path is ``added`` (only in B), ``removed`` (only in A) or ``changed``, naming what changed:
``type`` (a file became a directory…), ``content`` (a file's bytes, a device's numbers),
``mode``, ``owner`` (uid or gid) and ``link`` (a symlink's target). Modification times and which
paths share a file (hard links) do not count. Everything under an added or removed directory is
listed too. Changes come in listing order (:mod:`tank.inside.view`): by path, a directory before
its content.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from tank.inside.entry import FileEntry
from tank.inside.read import Layer, hash_content
from tank.inside.tree import FILE, SYMLINK, Dir, Node, sort_key, walk
from tank.inside.view import ImageView, assemble, record
from tank.layers.tar import DEFAULT_MAX_ENTRIES, DEFAULT_MAX_LAYER_BYTES

#: what a change may name, in this order
FIELDS = ("type", "content", "mode", "owner", "link")


@dataclass(frozen=True)
class Change:
    """One path that differs between image A and image B.

    :ivar path: the absolute path inside the images.
    :ivar change: ``added`` (only in B), ``removed`` (only in A) or ``changed``.
    :ivar fields: for ``changed``, what changed, among :data:`FIELDS`.
    :ivar a: the entry in A (``None`` when added); :ivar b: the entry in B (``None`` when
        removed).
    """

    path: str
    change: str
    fields: tuple[str, ...]
    a: FileEntry | None
    b: FileEntry | None

    def to_json(self) -> dict[str, Any]:
        """The change as a JSON object (keys documented in docs/commands.md)."""
        return {
            "path": self.path,
            "change": self.change,
            "fields": list(self.fields),
            "a": self.a.to_json() if self.a is not None else None,
            "b": self.b.to_json() if self.b is not None else None,
        }

    def describe(self) -> str:
        """What changed, in words: ``content``, ``mode 0755 -> 4755``, ``type file -> dir``."""
        if self.a is None or self.b is None:
            return ""
        words = []
        for name in self.fields:
            if name == "type":
                words.append(f"type {_kind(self.a)} -> {_kind(self.b)}")
            elif name == "mode":
                words.append(f"mode {self.a.mode:04o} -> {self.b.mode:04o}")
            elif name == "owner":
                words.append(f"owner {self.a.uid}:{self.a.gid} -> {self.b.uid}:{self.b.gid}")
            elif name == "link":
                words.append(f"link {self.a.link_target} -> {self.b.link_target}")
            else:
                words.append(name)
        return ", ".join(words)


def _kind(entry: FileEntry) -> str:
    return "file" if entry.kind == "hardlink" else entry.kind


def merge_pair(
    a: Sequence[Layer], b: Sequence[Layer], *, references: tuple[str | None, str | None] = (
        None, None), jobs: int | None = None, max_layer_bytes: int = DEFAULT_MAX_LAYER_BYTES,
    max_entries: int = DEFAULT_MAX_ENTRIES,
) -> tuple[ImageView, ImageView]:
    """Both images' trees, files hashed; each distinct layer (by ``diff_id``) read once, several
    at a time."""
    distinct: dict[str, Layer] = {}
    for layer in (*a, *b):
        distinct.setdefault(layer.diff_id, layer)
    records = record(list(distinct.values()), lambda layer: hash_content, jobs=jobs,
                     max_layer_bytes=max_layer_bytes, max_entries=max_entries)
    by_diff_id = {layer.diff_id: found for layer, found in records.items()}
    return (assemble(a, lambda layer: by_diff_id[layer.diff_id], reference=references[0]),
            assemble(b, lambda layer: by_diff_id[layer.diff_id], reference=references[1]))


def compare(a: ImageView, b: ImageView) -> Iterator[Change]:
    """Every path that differs between the trees of ``a`` and ``b``, in listing order."""
    stack: list[tuple[tuple[str, ...], Node | None, Node | None]] = [((), a.root, b.root)]
    while stack:
        parts, x, y = stack.pop()
        if parts:
            change = _change(parts, x, y, a, b)
            if change is not None:
                yield change
            if not isinstance(x, Dir) or not isinstance(y, Dir):
                # only one side (or neither) is a directory: everything in it is added/removed
                if isinstance(x, Dir):
                    yield from (Change("/" + "/".join(p), "removed", (), a.entry(p, n), None)
                                for p, n in walk(x, parts))
                if isinstance(y, Dir):
                    yield from (Change("/" + "/".join(p), "added", (), None, b.entry(p, n))
                                for p, n in walk(y, parts))
                continue
        assert isinstance(x, Dir)
        assert isinstance(y, Dir)
        names = sorted(x.children.keys() | y.children.keys(), key=sort_key, reverse=True)
        stack.extend(((*parts, name), x.children.get(name), y.children.get(name))
                     for name in names)


def _change(
    parts: tuple[str, ...], x: Node | None, y: Node | None, a: ImageView, b: ImageView,
) -> Change | None:
    path = "/" + "/".join(parts)
    if x is None:
        assert y is not None
        return Change(path, "added", (), None, b.entry(parts, y))
    if y is None:
        return Change(path, "removed", (), a.entry(parts, x), None)
    fields = differences(x, y)
    if not fields:
        return None
    return Change(path, "changed", fields, a.entry(parts, x), b.entry(parts, y))


def differences(x: Node, y: Node) -> tuple[str, ...]:
    """What differs between two nodes, among :data:`FIELDS`."""
    out = []
    if x.kind != y.kind:
        out.append("type")
    elif (x.kind == FILE and (x.size != y.size or x.data != y.data)) or x.devices != y.devices:
        out.append("content")
    if x.mode != y.mode:
        out.append("mode")
    if (x.uid, x.gid) != (y.uid, y.gid):
        out.append("owner")
    if x.kind == SYMLINK == y.kind and x.link != y.link:
        out.append("link")
    return tuple(out)


__all__ = ["FIELDS", "Change", "compare", "differences", "merge_pair"]
