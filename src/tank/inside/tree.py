"""The merged tree of an image, in memory: each layer's entries applied as the unpack applies them.

:class:`Merger` applies tar entries (:class:`~tank.layers.tar.TarEntry`, as tank's own reader
gives them) to a tree of :class:`Node` objects, one per path, following the rules of
:class:`tank.outputs.rootfs.apply.Applier` step for step, so that the tree is the one
``tank pull -o rootfs:`` (and ``umoci unpack``) would write:

- Names are checked by :func:`~tank.layers.tar.split_name`; an entry's parent directories are
  resolved in the tree, following symlinks *inside* the root (an absolute target restarts at the
  root, ``..`` stops there, at most :data:`MAX_SYMLINKS` links and
  :data:`~tank.layers.tar.MAX_DEPTH` levels); a missing parent is made (mode 0755, owner 0:0,
  modification time 0: nothing in the image says otherwise); a parent that is neither a
  directory nor a symlink refuses the entry.
- An entry replaces whatever is at its path unless both are directories (a directory entry then
  only sets the directory's metadata). A file is always a new inode: a hard link made by a lower
  layer keeps the old content. A hard link shares the node of its target (a file, a symlink, a
  FIFO or a device, never a directory), resolved the same way.
- Whiteouts (:mod:`tank.layers.whiteout`): ``.wh.NAME`` removes NAME as the lower layers left it
  and ``.wh..wh..opq`` hides what the lower layers put in its directory; what the same layer
  writes, before or after the marker, stays (the layer's own paths are remembered, as umoci does).
- A directory's modification time is that of the last entry that named it. A symlink's mode is
  0777, as Linux gives every symlink whatever the tar said.

Errors are the unpack's: :class:`~tank.errors.UnsafeEntry` (an escape, a bad name, a hard link to
a directory, an unknown type) and :class:`~tank.errors.UnpackError` (a hard link to nothing),
naming the layer and the entry.

Memory: a node holds metadata only (no content), plus ``data``, one value the reader chose (where
the content was kept, or its hash); hard links share one node.

**Partial trees.** ``Merger(partial=True)`` applies only the *upper* layers of an image, over
lower layers it has not read: each directory then knows whether the layers below may add
children (``lower``) and which names it knows to be gone. Whenever a step depends on what the
lower layers hold (a parent the upper layers never named, a hard link into them), it raises
:class:`NeedLower`, and :func:`lookup` does the same for a path the upper layers do not decide:
the caller then reads one more layer down. Over an empty base (``partial=False``, or once the
bottom layer is included) nothing is unknown and :class:`NeedLower` is never raised. This is how
``tank cat`` reads only the layers it needs.
"""

from __future__ import annotations

import os
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

from tank.errors import UnpackError, UnsafeEntry
from tank.layers.tar import (
    MAX_DEPTH,
    PATH_MAX,
    REGULAR_TYPES,
    TarEntry,
    hardlink_target,
    split_name,
)
from tank.layers.whiteout import is_opaque, is_whiteout, whiteout_target

#: symlinks followed while resolving one path (Linux's MAXSYMLINKS, as the unpack)
MAX_SYMLINKS: Final = 40

FILE: Final = "file"
DIR: Final = "dir"
SYMLINK: Final = "symlink"
FIFO: Final = "fifo"
CHAR: Final = "char"
BLOCK: Final = "block"

_KINDS: Final = {
    tarfile.DIRTYPE: DIR, tarfile.SYMTYPE: SYMLINK, tarfile.FIFOTYPE: FIFO,
    tarfile.CHRTYPE: CHAR, tarfile.BLKTYPE: BLOCK,
}
_EMPTY: Final[dict[str, bytes]] = {}
_MODES: dict[int, int] = {}  # one int object per mode value (there are at most 4096)


class NeedLower(Exception):
    """A partial tree cannot tell: the answer depends on layers below the ones applied."""


class Node:
    """One inode of the tree: a file, a symlink, a FIFO, a device (see :class:`Dir`).

    :ivar kind: ``file``, ``dir``, ``symlink``, ``fifo``, ``char`` or ``block``.
    :ivar layer: the index of the layer whose entry made it (0 is the base layer).
    :ivar ordinal: the entry's position in that layer (0 first); -1 for a directory made
        implicitly as a parent.
    :ivar data: what the reader kept for a file's content (a spool offset, a hash), or ``None``.
    :ivar nlink: how many paths of the tree lead to it.
    """

    __slots__ = ("data", "devices", "gid", "kind", "layer", "link", "mode", "mtime_ns",
                 "nlink", "ordinal", "size", "uid", "xattrs")

    def __init__(
        self, kind: str, entry: TarEntry | None, layer: int, ordinal: int, data: object = None,
    ) -> None:
        self.kind = kind
        self.layer = layer
        self.ordinal = ordinal
        self.data = data
        self.nlink = 0
        self.devices: tuple[int, int] | None = None
        if entry is None:  # a directory made as a parent
            self.mode, self.uid, self.gid, self.mtime_ns = 0o755, 0, 0, 0
            self.size, self.link, self.xattrs = 0, "", _EMPTY
            return
        mode = 0o777 if kind == SYMLINK else entry.mode  # as Linux has every symlink
        self.mode = _MODES.setdefault(mode, mode)
        self.uid = entry.uid
        self.gid = entry.gid
        self.mtime_ns = entry.mtime_ns
        self.size = entry.size if kind == FILE else 0
        self.link = entry.linkname if kind == SYMLINK else ""
        self.xattrs = entry.xattrs or _EMPTY
        if kind in (CHAR, BLOCK):
            self.devices = (entry.devmajor, entry.devminor)


class Dir(Node):
    """A directory: its children by name.

    :ivar lower: (partial trees) the layers below may hold children not listed here.
    :ivar gone: (partial trees) names known to be absent although ``lower`` is set.
    """

    __slots__ = ("children", "gone", "lower", "name", "parent", "upper")

    def __init__(
        self, entry: TarEntry | None, layer: int, ordinal: int, *, lower: bool = False,
    ) -> None:
        super().__init__(DIR, entry, layer, ordinal)
        self.children: dict[str, Node] = {}
        self.lower = lower
        self.gone: set[str] | None = None
        #: where it is (a directory has one path: no hard links to directories)
        self.parent: Dir | None = None
        self.name = ""
        #: the names of the children the layer being applied wrote (or wrote into)
        self.upper: set[str] | None = None

    def child(self, name: str) -> Node | None:
        """The child called ``name``; ``None`` if there is none; :class:`NeedLower` if only the
        lower layers can say."""
        node = self.children.get(name)
        if node is None and self.lower and (self.gone is None or name not in self.gone):
            raise NeedLower(name)
        return node

    def put(self, name: str, node: Node) -> None:
        """Make ``node`` the child ``name`` (the slot must be empty)."""
        self.children[name] = node
        node.nlink += 1
        if isinstance(node, Dir):
            node.parent, node.name = self, name
        if self.gone is not None:
            self.gone.discard(name)

    def forget_lower(self) -> None:
        """Whatever the lower layers put here is hidden: the children listed are all there is."""
        self.lower = False
        self.gone = None


class NotDirectory(Exception):
    """A path component that is neither a directory nor a symlink."""


@dataclass(frozen=True)
class Removal:
    """How a watched path left the tree: the layer, and why."""

    layer: int
    how: str  # "whiteout", "opaque", "replaced"


class Merger:
    """Applies layers, entry by entry, to one in-memory tree (see the module's docstring).

    Call :meth:`begin_layer`, then :meth:`apply` for each entry, then :meth:`end_layer`. An
    error raised by :meth:`apply` names the layer and the entry; after one, the tree is not to
    be used.
    """

    def __init__(self, *, partial: bool = False, watch: tuple[tuple[str, ...], ...] = ()) -> None:
        """A new tree: an empty root, or with ``partial`` an unknown base (see the module).

        ``watch``: paths (as components) whose removal to remember, for messages
        (:attr:`removed`).
        """
        self.root = Dir(None, -1, -1, lower=partial)
        self.partial = partial
        self.watch = watch
        #: watched path → how it was last removed
        self.removed: dict[tuple[str, ...], Removal] = {}
        self.layer = -1
        self.digest = ""
        self._marked: list[Dir] = []  # directories whose ``upper`` this layer filled
        self._fresh: set[tuple[str, ...]] = set()  # directories made in this layer
        self._hidden: set[tuple[str, ...]] = set()  # whiteouts (or opaque dirs) applied
        self._resolved: dict[tuple[str, ...], tuple[tuple[str, ...], Dir]] = {}
        self._how = "replaced"

    # -- layers

    def begin_layer(self, index: int, digest: str) -> None:
        """Start applying the layer ``index`` (``digest`` names it in errors)."""
        self.layer, self.digest = index, digest
        self.end_layer()

    def end_layer(self) -> None:
        """The layer is applied: forget what only mattered while it was."""
        for node in self._marked:
            node.upper = None
        self._marked = []
        self._fresh = set()
        self._hidden = set()

    def apply(self, entry: TarEntry, ordinal: int, data: object = None) -> None:
        """Apply one entry, the ``ordinal``-th of the layer; ``data`` is kept on a file's node.

        :raises ~tank.errors.UnsafeEntry: a refused entry, naming the layer and the entry.
        :raises ~tank.errors.UnpackError: an entry that cannot be made (a hard link to nothing).
        :raises NeedLower: (partial trees) the layers below decide where the entry goes.
        """
        try:
            self._apply(entry, ordinal, data)
        except UnpackError as exc:
            if exc.layer is None:
                raise type(exc)(exc.reason, layer=self.digest, entry=entry.name) from None
            raise
        except (ValueError, NotDirectory) as exc:
            reason = str(exc)
            if isinstance(exc, NotDirectory):
                reason = f"{reason!r} is not a directory"
            raise UnsafeEntry(reason, layer=self.digest, entry=entry.name) from None

    # -- entries

    def _apply(self, entry: TarEntry, ordinal: int, data: object) -> None:
        parts = split_name(entry.name)
        if not parts:
            if entry.kind != tarfile.DIRTYPE:
                raise UnsafeEntry("refusing to make the root directory anything but a directory")
            self._dir_metadata(self.root, entry, ordinal)
            return
        name = parts[-1]
        if is_whiteout(name):
            self._whiteout(parts[:-1], name)
            return
        real_parent, parent = self.resolve(parts[:-1], create=True)  # type: ignore[misc]
        real = (*real_parent, name)
        self._mark_upper(parent, name)
        kind = entry.kind
        if kind in REGULAR_TYPES:
            self._replace(parent, real, Node(FILE, entry, self.layer, ordinal, data))
        elif kind == tarfile.DIRTYPE:
            self._make_dir(parent, real, entry, ordinal)
        elif kind == tarfile.SYMTYPE:
            target = entry.linkname
            if not target or "\0" in target or len(os.fsencode(target)) > PATH_MAX:
                raise UnsafeEntry("a symlink target that is empty, too long or holds a NUL byte")
            self._replace(parent, real, Node(SYMLINK, entry, self.layer, ordinal))
        elif kind == tarfile.LNKTYPE:
            self._make_hardlink(parent, real, entry)
        elif kind in (tarfile.FIFOTYPE, tarfile.CHRTYPE, tarfile.BLKTYPE):
            self._replace(parent, real, Node(_KINDS[kind], entry, self.layer, ordinal))
        else:
            raise UnsafeEntry(f"unsupported tar entry type {kind!r}")

    def _mark_upper(self, parent: Dir, name: str) -> None:
        """Remember that this layer wrote ``name`` in ``parent``, and so into each directory
        above. (The unpack keeps these as paths; kept on the directories they are in, they mean
        the same: they are asked of directories the layer did not make, and those keep their
        path for the whole layer.)"""
        node: Dir | None = parent
        while node is not None:
            if node.upper is None:
                node.upper = set()
                self._marked.append(node)
            elif name in node.upper:
                break  # and so is everything above
            node.upper.add(name)
            name, node = node.name, node.parent

    def _occupant(self, parent: Dir, name: str) -> Node | None:
        """What is at ``name`` now; ``None`` when nothing is (or, in a partial tree, when only
        the lower layers know: whatever it is, the caller replaces it)."""
        node = parent.children.get(name)
        if node is None and parent.lower:
            if parent.gone is None:
                parent.gone = set()
            parent.gone.add(name)  # replaced, whatever it was
        return node

    def _replace(self, parent: Dir, real: tuple[str, ...], node: Node) -> None:
        """Put ``node`` at ``real``, removing what was there."""
        name = real[-1]
        if self._occupant(parent, name) is not None:
            self._remove(parent, real)
        parent.put(name, node)

    def _make_dir(self, parent: Dir, real: tuple[str, ...], entry: TarEntry, ordinal: int) -> None:
        name = real[-1]
        node = parent.children.get(name)
        if isinstance(node, Dir):
            self._dir_metadata(node, entry, ordinal)
            return
        if node is None and parent.lower and (parent.gone is None or name not in parent.gone):
            # a partial tree: a lower directory is kept (with its children), anything else is
            # replaced by a fresh one; either way its listed children are this layer's
            fresh = Dir(entry, self.layer, ordinal, lower=True)
            parent.put(name, fresh)
            return
        if node is not None:
            self._remove(parent, real)
        fresh = Dir(entry, self.layer, ordinal)
        parent.put(name, fresh)
        self._fresh.add(real)

    def _dir_metadata(self, node: Dir, entry: TarEntry, ordinal: int) -> None:
        """A directory entry over an existing directory: its metadata (extended attributes are
        added to the ones it has, as ``setxattr`` does)."""
        node.mode, node.uid, node.gid = entry.mode, entry.uid, entry.gid
        node.mtime_ns = entry.mtime_ns
        node.layer, node.ordinal = self.layer, ordinal
        if entry.xattrs:
            node.xattrs = {**node.xattrs, **entry.xattrs}

    def _make_hardlink(self, parent: Dir, real: tuple[str, ...], entry: TarEntry) -> None:
        target = hardlink_target(entry)
        found = self.resolve(target[:-1], create=False)
        if found is None:
            raise UnpackError(f"the hard link target {entry.linkname!r} does not exist")
        node = found[1].child(target[-1])
        if node is None:
            raise UnpackError(f"the hard link target {entry.linkname!r} does not exist")
        if node.kind == DIR:
            raise UnsafeEntry(f"a hard link to the directory {entry.linkname!r}")
        name = real[-1]
        here = self._occupant(parent, name)
        if here is node:
            return  # already that inode
        if here is not None:
            self._remove(parent, real)
            if isinstance(here, Dir) and found[0][: len(real)] == real:
                # the target was inside what the link replaces: gone with it (the unpack's
                # link() then fails the same way)
                raise UnpackError("No such file or directory")
        parent.put(name, node)

    # -- removing

    def _remove(self, parent: Dir, real: tuple[str, ...]) -> None:
        """Take the node at ``real`` out of the tree (a directory with everything in it)."""
        name = real[-1]
        node = parent.children.pop(name)
        if parent.lower:
            if parent.gone is None:
                parent.gone = set()
            parent.gone.add(name)
        if isinstance(node, Dir) or node.kind == SYMLINK:
            self._resolved.clear()
        _unlink(node)
        self._note(real)

    def _note(self, real: tuple[str, ...]) -> None:
        """Remember the removal of ``real`` for the watched paths it takes away."""
        for path in self.watch:
            if path[: len(real)] == real:
                self.removed[path] = Removal(self.layer, self._how)

    # -- whiteouts

    def _whiteout(self, parent_parts: list[str], name: str) -> None:
        opaque = is_opaque(name)
        hidden = "" if opaque else whiteout_target(name)
        if hidden is None:
            return  # aufs metadata (.wh..wh.plnk, .wh..wh.aufs): nothing to apply
        found = self.resolve(parent_parts, create=False)
        if found is None:
            return  # nothing there to hide
        real_parent, parent = found
        marker = real_parent if opaque else (*real_parent, hidden)
        if marker in self._hidden or real_parent in self._fresh:
            return
        self._hidden.add(marker)
        self._how = "opaque" if opaque else "whiteout"
        try:
            if opaque:
                for child in list(parent.children):
                    self._hide(parent, real_parent, child)
                parent.forget_lower()
            else:
                self._hide(parent, real_parent, hidden)
        finally:
            self._how = "replaced"

    def _hide(self, parent: Dir, real_parent: tuple[str, ...], name: str) -> None:
        """Remove ``name`` as the lower layers left it: keep what this layer wrote there."""
        real = (*real_parent, name)
        node = parent.children.get(name)
        if node is None:
            if parent.lower:  # whatever the lower layers had there, this layer did not write
                if parent.gone is None:
                    parent.gone = set()
                parent.gone.add(name)
                self._note(real)
            return
        if parent.upper is None or name not in parent.upper:
            self._remove(parent, real)
            return
        if isinstance(node, Dir) and real not in self._fresh and real not in self._hidden:
            self._hidden.add(real)
            for child in list(node.children):
                self._hide(node, real, child)
            node.forget_lower()

    # -- resolving

    def resolve(
        self, parts: list[str] | tuple[str, ...], *, create: bool,
    ) -> tuple[tuple[str, ...], Dir] | None:
        """The real path and node of the directory ``parts`` names, symlinks resolved inside
        the root.

        Missing directories are made with ``create`` (and a component that is not a directory
        raises :class:`NotDirectory`); without it ``None`` is returned for a path that does not
        lead to a directory. Too many symlinks or too deep a result raise :class:`ValueError`.
        """
        key = tuple(parts)
        hit = self._resolved.get(key)
        if hit is not None:
            return hit
        real: list[str] = []
        nodes: list[Dir] = [self.root]
        pending = list(reversed(key))
        links = 0
        while pending:
            name = pending.pop()
            if name in ("", "."):
                continue
            if name == "..":
                if real:
                    real.pop()
                    nodes.pop()
                continue
            here = nodes[-1]
            node = here.child(name)
            if node is None:
                if not create:
                    return None
                node = Dir(None, self.layer, -1)
                here.put(name, node)
                self._fresh.add((*real, name))
            elif node.kind == SYMLINK:
                links += 1
                if links > MAX_SYMLINKS:
                    raise ValueError(
                        f"more than {MAX_SYMLINKS} symlinks (or changes under way) while "
                        f"resolving {'/'.join(parts)!r}"
                    )
                if node.link.startswith("/"):
                    real.clear()
                    del nodes[1:]
                pending.extend(reversed(node.link.split("/")))
                continue
            elif not isinstance(node, Dir):
                if create:
                    raise NotDirectory("/".join((*real, name)))
                return None
            real.append(name)
            nodes.append(node)
            if len(real) > MAX_DEPTH:
                raise ValueError(f"more than {MAX_DEPTH} levels once symlinks are resolved")
        result = (tuple(real), nodes[-1])
        if len(self._resolved) > 100_000:
            self._resolved.clear()
        self._resolved[key] = result
        return result


def _unlink(node: Node) -> None:
    """``node`` lost a path: for a directory, everything in it goes too."""
    node.nlink -= 1
    if isinstance(node, Dir):
        stack = [node]
        while stack:
            for child in stack.pop().children.values():
                child.nlink -= 1
                if isinstance(child, Dir):
                    stack.append(child)


# -- looking paths up in a finished tree --------------------------------------------------------


@dataclass(frozen=True)
class Found:
    """Where a path leads in a tree: the node (``None`` when nothing is there) and the real path
    it was found at; ``broken`` names the symlink that led nowhere, ``loop`` says there were too
    many."""

    node: Node | None
    real: tuple[str, ...]
    broken: str | None = None
    loop: bool = False
    target: str = ""  # the target of the symlink ``broken``


def user_parts(path: str) -> list[str]:
    """A path as a user gives it (``/etc/os-release``, ``etc/``, ``./a/../b``): its components,
    ``..`` kept (it is resolved inside the root, stopping there)."""
    if "\0" in path:
        raise ValueError("a NUL byte in the path")
    if len(os.fsencode(path)) > PATH_MAX:
        raise ValueError(f"a path longer than {PATH_MAX} bytes")
    return [p for p in path.split("/") if p and p != "."]


def lookup(root: Dir, parts: list[str], *, follow: bool = True) -> Found:
    """The node at ``parts``, symlinks resolved inside the root (an absolute target restarts at
    the root, ``..`` stops there); the last component's symlink too with ``follow``.

    :raises NeedLower: (partial trees) the upper layers do not decide the path.
    """
    real: list[str] = []
    nodes: list[Dir] = [root]
    pending = list(reversed(parts))
    links = 0
    via: str | None = None  # the last symlink followed
    target = ""
    while pending:
        name = pending.pop()
        if name in ("", "."):
            continue
        if name == "..":
            if real:
                real.pop()
                nodes.pop()
            continue
        node = nodes[-1].child(name)
        last = not pending
        if node is None:
            return Found(None, (*real, name), broken=via, target=target)
        if node.kind == SYMLINK and (follow or not last):
            links += 1
            if links > MAX_SYMLINKS:
                return Found(None, (*real, name), broken=via or "/".join((*real, name)),
                             loop=True)
            via, target = "/".join((*real, name)), node.link
            if node.link.startswith("/"):
                real.clear()
                del nodes[1:]
            pending.extend(reversed([p for p in node.link.split("/") if p and p != "."]))
            continue
        if last:
            return Found(node, (*real, name))
        if not isinstance(node, Dir):
            return Found(None, (*real, name), broken=via, target=target)
        real.append(name)
        nodes.append(node)
        if len(real) > MAX_DEPTH:
            return Found(None, tuple(real), broken=via, loop=True)
    return Found(nodes[-1], tuple(real))


def walk(top: Dir, prefix: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Node]]:
    """Every node under ``top`` (not ``top`` itself), depth first, children sorted by name's
    bytes; a directory before what it holds."""
    stack: list[tuple[tuple[str, ...], Node]] = [
        ((*prefix, name), top.children[name]) for name in _sorted_desc(top.children)
    ]
    while stack:
        path, node = stack.pop()
        yield path, node
        if isinstance(node, Dir) and node.children:
            stack.extend(((*path, name), node.children[name])
                         for name in _sorted_desc(node.children))


def sort_key(name: str) -> bytes:
    """The order of names: by their bytes, as ``LC_ALL=C ls`` and tar ``--sort=name`` do."""
    return name.encode("utf-8", "surrogateescape")


def _sorted_desc(children: dict[str, Node]) -> list[str]:
    return sorted(children, key=sort_key, reverse=True)


__all__ = [
    "BLOCK",
    "CHAR",
    "DIR",
    "FIFO",
    "FILE",
    "MAX_SYMLINKS",
    "SYMLINK",
    "Dir",
    "Found",
    "Merger",
    "NeedLower",
    "Node",
    "Removal",
    "lookup",
    "sort_key",
    "user_parts",
    "walk",
]
