"""Copying trees out of the cache: ``DEST`` is a copy of the cached tree, never a hard link, so a
container writing in ``DEST`` changes neither the cache nor another copy.

Everything is copied: types, modes, owners (when root), times, extended attributes and hard-link
groups. File data goes by reflink where the filesystem can clone, else in the kernel
(:func:`tank._fs.copy_data`). As everywhere in :mod:`tank.outputs.rootfs`, entries are reached
by descriptor, never through a symlink.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

from tank._fs import copy_data, reflink
from tank.outputs.rootfs.tree import O_DIR, O_NEW, O_READ


class Copier:
    """Copies a tree (the cache's) into an empty directory: same types, modes, owners, times,
    xattrs and hard-link groups; file data by reflink where possible, else in the kernel."""

    def __init__(self, dest_fd: int, *, rootless: bool) -> None:
        self.dest_fd = dest_fd
        self.rootless = rootless
        self.can_clone = True
        self.links: dict[tuple[int, int], tuple[str, ...]] = {}
        self.euid = os.geteuid()

    def copy_dir(self, src: int, dst: int, rel: tuple[str, ...]) -> None:
        """Copy the content of ``src`` into ``dst`` (``rel`` is its path from the root)."""
        for name in os.listdir(src):
            st = os.stat(name, dir_fd=src, follow_symlinks=False)
            mode = st.st_mode
            if stat.S_ISDIR(mode):
                os.mkdir(name, 0o700, dir_fd=dst)
                sfd = self._open_src(src, name, st, directory=True)
                try:
                    dfd = os.open(name, O_DIR, dir_fd=dst)
                    try:
                        self.copy_dir(sfd, dfd, (*rel, name))
                        self.metadata_fd(sfd, dfd, st)
                    finally:
                        os.close(dfd)
                finally:
                    os.close(sfd)
                continue
            if st.st_nlink > 1:
                key = (st.st_dev, st.st_ino)
                first = self.links.get(key)
                if first is not None:
                    self._link(first, dst, name)
                    continue
                self.links[key] = (*rel, name)
            if stat.S_ISREG(mode):
                self._copy_file(src, dst, name, st)
            elif stat.S_ISLNK(mode):
                os.symlink(os.readlink(name, dir_fd=src), name, dir_fd=dst)
                self._name_metadata(src, dst, name, st)
            elif stat.S_ISFIFO(mode):
                os.mkfifo(name, 0o600, dir_fd=dst)
                fd = os.open(name, O_READ | os.O_NONBLOCK, dir_fd=dst)
                try:
                    sfd = os.open(name, O_READ | os.O_NONBLOCK, dir_fd=src)
                    try:
                        self.metadata_fd(sfd, fd, st)
                    finally:
                        os.close(sfd)
                finally:
                    os.close(fd)
            elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
                os.mknod(name, 0o600 | stat.S_IFMT(mode), st.st_rdev, dir_fd=dst)
                os.chmod(name, stat.S_IMODE(mode), dir_fd=dst)
                self._name_metadata(src, dst, name, st)

    def _open_src(self, parent: int, name: str, st: os.stat_result, *, directory: bool) -> int:
        flags = O_DIR if directory else O_READ
        try:
            return os.open(name, flags, dir_fd=parent)
        except PermissionError:
            if st.st_uid != self.euid:
                raise
        # our own entry without read (or search) permission: open it, then put the mode back
        os.chmod(name, stat.S_IMODE(st.st_mode) | (0o500 if directory else 0o400), dir_fd=parent)
        try:
            return os.open(name, flags, dir_fd=parent)
        finally:
            os.chmod(name, stat.S_IMODE(st.st_mode), dir_fd=parent)

    def _link(self, first: tuple[str, ...], dst: int, name: str) -> None:
        fd = self.dest_fd
        owned = False
        try:
            for part in first[:-1]:
                step = os.open(part, O_DIR, dir_fd=fd)
                if owned:
                    os.close(fd)
                fd, owned = step, True
            os.link(first[-1], name, src_dir_fd=fd, dst_dir_fd=dst, follow_symlinks=False)
        finally:
            if owned:
                os.close(fd)

    def _copy_file(self, src: int, dst: int, name: str, st: os.stat_result) -> None:
        sfd = self._open_src(src, name, st, directory=False)
        try:
            dfd = os.open(name, O_NEW, 0o600, dir_fd=dst)
            try:
                if st.st_size:
                    self._data(sfd, dfd, st.st_size)
                self.metadata_fd(sfd, dfd, st)
            finally:
                os.close(dfd)
        finally:
            os.close(sfd)

    def _data(self, sfd: int, dfd: int, size: int) -> None:
        if self.can_clone:
            if reflink(sfd, dfd):
                return
            self.can_clone = False  # this filesystem cannot clone: copy from now on
        copy_data(sfd, dfd, size)

    def metadata_fd(self, sfd: int, dfd: int, st: os.stat_result) -> None:
        """Owner, mode, xattrs and times of ``sfd`` onto ``dfd``."""
        if not self.rootless:
            os.fchown(dfd, st.st_uid, st.st_gid)
        os.fchmod(dfd, stat.S_IMODE(st.st_mode))
        with contextlib.suppress(OSError):
            for key in os.listxattr(sfd):
                with contextlib.suppress(OSError):
                    os.setxattr(dfd, key, os.getxattr(sfd, key))
        os.utime(dfd, ns=(st.st_atime_ns, st.st_mtime_ns))

    def _name_metadata(self, src: int, dst: int, name: str, st: os.stat_result) -> None:
        if not self.rootless:
            os.chown(name, st.st_uid, st.st_gid, dir_fd=dst, follow_symlinks=False)
        with contextlib.suppress(OSError):
            source, target = f"/proc/self/fd/{src}/{name}", f"/proc/self/fd/{dst}/{name}"
            for key in os.listxattr(source, follow_symlinks=False):
                with contextlib.suppress(OSError):
                    os.setxattr(target, key, os.getxattr(source, key, follow_symlinks=False),
                                follow_symlinks=False)
        os.utime(name, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=dst, follow_symlinks=False)


def copy_tree(source: Path, dest: Path, *, rootless: bool) -> None:
    """Copy the tree at ``source`` into the empty directory ``dest`` (root metadata included)."""
    src = os.open(source, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        dst = os.open(dest, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            st = os.fstat(src)
            copier = Copier(dst, rootless=rootless)
            copier.copy_dir(src, dst, ())
            copier.metadata_fd(src, dst, st)
        finally:
            os.close(dst)
    finally:
        os.close(src)


__all__ = ["Copier", "copy_tree"]
