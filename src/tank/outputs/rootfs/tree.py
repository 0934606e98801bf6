"""Resolving paths inside a root, by descriptor: never ``realpath`` then ``open``.

Paths are resolved component by component from a file descriptor of the root, each directory
opened with ``O_NOFOLLOW`` relative to its parent's descriptor. A symlink met on the way is
resolved *inside* the root, as ``securejoin`` and ``openat2(RESOLVE_IN_ROOT)`` do: an absolute
target restarts at the root, ``..`` stops at the root, and at most :data:`MAX_SYMLINKS` links are
followed; the result may be at most :data:`~tank.layers.tar.MAX_DEPTH` levels deep. Every write,
chmod, chown, utime and unlink then goes through the parent directory's descriptor and never
follows a final symlink (:mod:`tank.outputs.rootfs.apply`).
"""

from __future__ import annotations

import errno
import os
import stat
from collections import OrderedDict
from collections.abc import Sequence
from typing import Final

from tank.layers.tar import MAX_DEPTH

#: symlinks followed while resolving one path (Linux's MAXSYMLINKS)
MAX_SYMLINKS: Final = 40
#: open a directory, never through a symlink
O_DIR: Final = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
#: create a file that must not exist, never through a symlink
O_NEW: Final = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
#: open something for reading, never through a symlink
O_READ: Final = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
#: directory descriptors a :class:`Tree` keeps open between entries
FD_CACHE: Final = 64


class NotDirectory(Exception):
    """A path component that is neither a directory nor a symlink."""


class Tree:
    """Directory descriptors inside one root, found only by ``openat(…, O_NOFOLLOW)`` steps.

    Paths are handled as *real* paths: tuples of names, each a directory (no symlinks), from the
    root. :meth:`resolve` maps a name from a layer to one, following symlinks inside the root;
    :meth:`dir_fd` gives (cached) descriptors. Both caches are dropped whenever a directory or a
    symlink is removed (:meth:`invalidate`), the only changes that can make them wrong.
    """

    def __init__(self, root_fd: int) -> None:
        self.root_fd = root_fd
        self.fresh: set[tuple[str, ...]] = set()  # directories made (by anyone) since reset
        self._fds: OrderedDict[tuple[str, ...], int] = OrderedDict()
        self._lexical: dict[tuple[str, ...], tuple[str, ...]] = {}
        self._retired: list[int] = []

    def invalidate(self) -> None:
        """Forget every cached path and descriptor.

        The descriptors are closed only at the next :meth:`trim`: the entry being applied may
        still hold some (a parent whose child it just removed is still that parent).
        """
        self._lexical.clear()
        self._retired.extend(self._fds.values())
        self._fds.clear()

    def trim(self) -> None:
        """Between entries: close retired descriptors and the least recently used ones beyond
        the cache size."""
        for fd in self._retired:
            os.close(fd)
        self._retired.clear()
        while len(self._fds) > FD_CACHE:
            _, fd = self._fds.popitem(last=False)
            os.close(fd)
        if len(self._lexical) > 100_000:
            self._lexical.clear()

    def close(self) -> None:
        """Close every descriptor."""
        self.invalidate()
        self.trim()

    def dir_fd(self, real: tuple[str, ...]) -> int:
        """The directory at ``real``, opened step by step with ``O_NOFOLLOW`` (cached)."""
        if not real:
            return self.root_fd
        fd = self._fds.get(real)
        if fd is not None:
            self._fds.move_to_end(real)
            return fd
        # start from the deepest cached ancestor (usually the parent)
        start, fd = 0, self.root_fd
        for i in range(len(real) - 1, 0, -1):
            cached = self._fds.get(real[:i])
            if cached is not None:
                start, fd = i, cached
                break
        owned = False
        try:
            for name in real[start:]:
                step = os.open(name, O_DIR, dir_fd=fd)
                if owned:
                    os.close(fd)
                fd, owned = step, True
        except BaseException:
            if owned:
                os.close(fd)
            raise
        self._fds[real] = fd
        return fd

    def resolve(self, parts: Sequence[str], *, create: bool) -> tuple[str, ...] | None:
        """The real path of the directory named ``parts``, symlinks resolved inside the root.

        Missing directories are created (mode 0755) with ``create``; without it ``None`` is
        returned for a path that does not lead to a directory. With ``create``, a component that
        is not a directory raises :class:`NotDirectory`; too many symlinks or too deep a result
        raise :class:`ValueError`.
        """
        key = tuple(parts)
        hit = self._lexical.get(key)
        if hit is not None:
            return hit
        real: list[str] = []
        fd, owned = self.root_fd, False
        # start below the deepest ancestor already resolved (usually the parent)
        start = 0
        for i in range(len(key) - 1, 0, -1):
            known = self._lexical.get(key[:i])
            if known is not None:
                start, real, fd = i, list(known), self.dir_fd(known)
                break
        pending = list(reversed(key[start:]))
        links = 0
        try:
            while pending:
                name = pending.pop()
                if name in ("", "."):
                    continue
                if name == "..":
                    if real:
                        real.pop()
                        if owned:
                            os.close(fd)
                        fd, owned = os.dup(self.dir_fd(tuple(real))), True
                    continue
                try:
                    step = os.open(name, O_DIR, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        return None
                    try:
                        os.mkdir(name, 0o700, dir_fd=fd)
                    except FileExistsError:  # made under us since: look again (bounded)
                        links += 1
                        if links > MAX_SYMLINKS:
                            raise
                        pending.append(name)
                        continue
                    step = os.open(name, O_DIR, dir_fd=fd)
                    os.fchmod(step, 0o755)
                    self.fresh.add((*real, name))
                except OSError as exc:
                    if exc.errno not in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK):
                        raise
                    st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                    links += 1
                    if links > MAX_SYMLINKS:
                        raise ValueError(
                            f"more than {MAX_SYMLINKS} symlinks (or changes under way) while "
                            f"resolving {'/'.join(parts)!r}"
                        ) from None
                    if stat.S_ISDIR(st.st_mode):  # it changed under us: try again
                        pending.append(name)
                        continue
                    if not stat.S_ISLNK(st.st_mode):
                        if create:
                            raise NotDirectory("/".join((*real, name))) from None
                        return None
                    target = os.readlink(name, dir_fd=fd)
                    if target.startswith("/"):
                        real.clear()
                        if owned:
                            os.close(fd)
                        fd, owned = self.root_fd, False
                    pending.extend(reversed(target.split("/")))
                    continue
                if owned:
                    os.close(fd)
                fd, owned = step, True
                real.append(name)
                if len(real) > MAX_DEPTH:
                    raise ValueError(f"more than {MAX_DEPTH} levels once symlinks are resolved")
            result = tuple(real)
            if owned and result not in self._fds:
                self._fds[result] = fd
                owned = False
            self._lexical[key] = result
            return result
        finally:
            if owned:
                os.close(fd)


__all__ = ["FD_CACHE", "MAX_SYMLINKS", "O_DIR", "O_NEW", "O_READ", "NotDirectory", "Tree"]
