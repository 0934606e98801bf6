"""Removing trees by descriptor: what an entry replaces, and what a failed unpack wrote.

Nothing here follows a symlink: each directory is opened with ``O_NOFOLLOW`` relative to its
parent's descriptor and its entries are unlinked through it. A directory the (unprivileged)
caller cannot write or search is made so first, when the caller owns it (a layer may well make
its own directories read-only).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from pathlib import Path

from tank.outputs.rootfs.tree import O_DIR


def rmtree_at(parent: int, name: str) -> None:
    """Remove the directory ``name`` in ``parent`` and everything in it, never following a link.

    A directory the (unprivileged) caller cannot write or search is made so first, when the
    caller owns it.
    """
    fd = _open_dir_for_removal(parent, name)
    try:
        for child in os.listdir(fd):
            try:
                os.unlink(child, dir_fd=fd)
            except IsADirectoryError:
                rmtree_at(fd, child)
            except PermissionError:  # Linux answers EPERM for unlink() of a directory
                st = os.stat(child, dir_fd=fd, follow_symlinks=False)
                if not stat.S_ISDIR(st.st_mode):
                    raise
                rmtree_at(fd, child)
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=parent)


def _open_dir_for_removal(parent: int, name: str) -> int:
    try:
        fd = os.open(name, O_DIR, dir_fd=parent)
    except PermissionError:
        fd = -1
    if fd >= 0:
        st = os.fstat(fd)
        if st.st_mode & 0o700 == 0o700 or os.geteuid() == 0:
            return fd
        os.fchmod(fd, stat.S_IMODE(st.st_mode) | 0o700)
        return fd
    st = os.stat(name, dir_fd=parent, follow_symlinks=False)
    if not stat.S_ISDIR(st.st_mode):
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), name)
    os.chmod(name, stat.S_IMODE(st.st_mode) | 0o700, dir_fd=parent)
    return os.open(name, O_DIR, dir_fd=parent)


def clear_fd(fd: int) -> None:
    """Empty the directory open as ``fd`` (best effort: used while an error propagates)."""
    with contextlib.suppress(OSError):
        st = os.fstat(fd)
        if st.st_mode & 0o700 != 0o700 and os.geteuid() != 0:
            os.fchmod(fd, stat.S_IMODE(st.st_mode) | 0o700)
    for child in _listdir(fd):
        with contextlib.suppress(OSError):
            try:
                os.unlink(child, dir_fd=fd)
            except (IsADirectoryError, PermissionError):
                rmtree_at(fd, child)


def _listdir(fd: int) -> list[str]:
    try:
        return os.listdir(fd)
    except OSError:
        return []


def clear_dir(path: Path) -> None:
    """Empty ``path`` (best effort)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        clear_fd(fd)
    finally:
        os.close(fd)


def remove_path(path: Path) -> None:
    """Remove the directory ``path`` and its content (best effort)."""
    parent = path.absolute().parent
    try:
        fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            rmtree_at(fd, path.name)
    finally:
        os.close(fd)


__all__ = ["clear_dir", "clear_fd", "remove_path", "rmtree_at"]
