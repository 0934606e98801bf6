"""Applying layers: each entry of a layer made in the root, the layer's whiteouts applied.

The rules are the OCI image-spec's layer rules, applied as ``umoci unpack`` applies them:

- Whiteouts (:mod:`tank.layers.whiteout`): ``.wh.NAME`` removes NAME as the lower layers left it;
  ``.wh..wh..opq`` hides all the lower layers put in its directory, wherever it stands in the
  tar, and keeps what the same layer adds (the layer's own paths are remembered while it is
  applied, as umoci does). Whiteout files never appear in the result; other aufs metadata
  (``.wh..wh.*``) is ignored.
- Entry types: regular files, directories, symlinks (targets kept exactly as written, absolute
  ones too, and never followed while writing), hard links (to an entry of this or a lower layer),
  FIFOs, and device nodes: created when root, otherwise skipped with one :class:`UnpackWarning`.
  An entry replaces whatever was at its path when the types differ (only a directory merges
  into a directory). A file is always written as a new inode, so a hard link made by a lower
  layer keeps the old content.
- Metadata: modes exactly as the tar says (setuid, setgid and sticky included, root or not),
  modification times to the nanosecond (a directory's at the end of its layer, after its
  content), ownership from the tar's numeric ids when root (user and group names are never looked
  up) and the caller's own otherwise, extended attributes (PAX ``SCHILY.xattr.*`` and
  ``LIBARCHIVE.xattr.*``) where the filesystem and the privileges allow: any that cannot be set is
  skipped, with one warning per unpack. Rootless, a directory without ``u+rwx`` gets its mode at
  the very end, so that the caller can fill it first.

Safety: entries come from :class:`~tank.layers.tar.LayerReader` (names checked, limits kept);
every path is resolved inside the root by :class:`~tank.outputs.rootfs.tree.Tree`, and every
change goes through the parent directory's descriptor without following a final symlink. The
root itself may only be given directory metadata: an entry that would make it anything else is
refused. A hard link's target is resolved the same way and must exist in the root and not be a
directory; the link is made to the entry itself (a symlink is linked, not followed). A refused
entry is :class:`~tank.errors.UnsafeEntry`; one that cannot be made is
:class:`~tank.errors.UnpackError`, both naming the layer and the entry.
"""

from __future__ import annotations

import errno
import os
import stat
import tarfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Final

from tank.digest import Digest, PipelinedHasher
from tank.errors import UnpackError, UnsafeEntry
from tank.layers.feed import QUEUE_DEPTH, LayerFeed
from tank.layers.tar import (
    PATH_MAX,
    REGULAR_TYPES,
    LayerReader,
    TarEntry,
    hardlink_target,
    split_name,
)
from tank.layers.whiteout import is_opaque, is_whiteout, whiteout_target
from tank.outputs.rootfs.remove import rmtree_at
from tank.outputs.rootfs.tree import O_DIR, O_NEW, O_READ, NotDirectory, Tree

#: ``progress(layer_digest, bytes_done, bytes_total)``: see
#: :func:`~tank.outputs.rootfs.unpack_layers`
UnpackProgress = Callable[[str, int, int], None]

_NO_XATTR: Final = frozenset(
    {errno.EPERM, errno.EACCES, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSPC,
     errno.E2BIG, errno.ERANGE}
)


def _umask() -> int | None:
    """This process's umask, read without changing it (``/proc/self/status``, Linux 4.7 and
    later); ``None`` when it cannot be known (every mode is then set with fchmod)."""
    try:
        with open("/proc/self/status", "rb") as status:
            for line in status:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return None


class UnpackWarning(UserWarning):
    """Something an unpack skipped, said once per unpack: device nodes when not root, extended
    attributes that the filesystem or the caller's privileges refuse. (A warning, not an error:
    it is not a :class:`~tank.errors.TankError`.)"""


class Applier:
    """Applies layers, entry by entry, into one root; remembers what a layer's end must do."""

    def __init__(self, root_fd: int, *, rootless: bool) -> None:
        self.tree = Tree(root_fd)
        self.rootless = rootless
        self.upper: set[str] = set()  # real paths this layer wrote (and their parents)
        self.hidden: set[tuple[str, ...]] = set()  # whiteouts (or opaque dirs) applied
        self.dir_times: dict[tuple[str, ...], tuple[int, int]] = {}
        self.touched: dict[tuple[str, ...], tuple[int, int]] = {}  # times before the layer
        self.deferred_modes: dict[tuple[str, ...], int] = {}  # rootless: dirs without u+rwx
        self.skipped_devices: list[str] = []
        self.skipped_xattrs: list[tuple[str, str, str]] = []
        self._layer = ""
        # System calls a new file can do without (a layer of many small files is made of them):
        # the permission bits go to open() when the umask keeps them whole, and as root the
        # chown is skipped when the file already has the owner the entry asks for.
        self._umask = _umask()
        self._uid, self._gid = os.geteuid(), os.getegid()
        self._new_gid: dict[tuple[str, ...], int] = {}  # the group a new file in a folder gets

    # -- per layer

    def apply_layer(
        self, feed: LayerFeed, digest: str, path: Path, diff_id: Digest, *, max_layer_bytes: int,
        max_entries: int, progress: UnpackProgress | None,
    ) -> None:
        """Read one layer off ``feed`` and apply it; verify it against ``diff_id``."""
        self._layer = digest
        self._new_gid = {}
        self.upper = set()
        self.tree.fresh = set()
        self.hidden = set()
        self.dir_times = {}
        self.touched = {}
        hasher = PipelinedHasher(diff_id.hasher(), depth=QUEUE_DEPTH)
        try:
            reader = LayerReader(
                feed.get, digest=digest, source=str(path), max_layer_bytes=max_layer_bytes,
                max_entries=max_entries, hasher=hasher, progress=progress,
            )
            self._apply_entries(reader, digest)
        finally:
            done = hasher.finish()
        done.verify(diff_id, what=f"uncompressed layer {digest} (its diff_id)")
        if progress is not None:
            progress(digest, done.size, done.size)

    def _apply_entries(self, reader: LayerReader, digest: str) -> None:
        """Apply every entry ``reader`` gives; an error names the layer and the entry."""
        for entry in reader:
            self.tree.trim()
            try:
                self._apply(entry, reader)
            except UnpackError as exc:
                if exc.layer is None:
                    raise type(exc)(exc.reason, layer=digest, entry=entry.name) from None
                raise
            except (ValueError, NotDirectory) as exc:
                reason = str(exc)
                if isinstance(exc, NotDirectory):
                    reason = f"{reason!r} is not a directory"
                raise UnsafeEntry(reason, layer=digest, entry=entry.name) from None
            except OSError as exc:
                raise UnpackError(
                    f"{exc.strerror or exc}", layer=digest, entry=entry.name
                ) from exc
        self._set_dir_times()

    def _touch(self, real: tuple[str, ...], fd: int) -> None:
        """Note a directory's times before this layer changes its content (see below)."""
        if real not in self.touched:
            st = os.fstat(fd)
            self.touched[real] = (st.st_atime_ns, st.st_mtime_ns)

    def _set_dir_times(self) -> None:
        """Directories' times, now that the layer wrote their content: the layer's own entry's
        times, else the times the directory had before the layer changed its content (as umoci
        keeps them), so the result does not depend on when it was unpacked."""
        for real, times in self.touched.items():
            if real in self.dir_times:
                continue
            try:
                fd = self.tree.dir_fd(real)
            except OSError:
                continue
            os.utime(fd, ns=times)
        self.touched = {}
        for real, (atime, mtime) in self.dir_times.items():
            try:
                fd = self.tree.dir_fd(real)
            except OSError:
                continue  # removed or replaced later in the layer
            os.utime(fd, ns=(atime, mtime))
        self.dir_times = {}

    def finish(self) -> None:
        """After the last layer: the modes kept back so the unprivileged caller could write."""
        for real in sorted(self.deferred_modes, key=len, reverse=True):
            try:
                fd = self.tree.dir_fd(real)
            except OSError:
                continue
            os.fchmod(fd, self.deferred_modes[real])
        self.deferred_modes.clear()

    def close(self) -> None:
        """Close the descriptors."""
        self.tree.close()

    def warn(self) -> None:
        """One warning per kind of thing skipped."""
        if self.skipped_devices:
            first = self.skipped_devices[0]
            warnings.warn(
                f"skipped {len(self.skipped_devices)} device node(s) (first: {first}): creating "
                "them needs root", UnpackWarning, stacklevel=3,
            )
        if self.skipped_xattrs:
            name, where, why = self.skipped_xattrs[0]
            warnings.warn(
                f"skipped {len(self.skipped_xattrs)} extended attribute(s) the filesystem or "
                f"the privileges refused (first: {name} on {where}: {why})",
                UnpackWarning, stacklevel=3,
            )

    # -- per entry

    def _apply(self, entry: TarEntry, reader: LayerReader) -> None:
        """Apply one entry (reading its content, for a file)."""
        parts = split_name(entry.name)
        if not parts:
            if entry.kind != tarfile.DIRTYPE:
                raise UnsafeEntry("refusing to make the root directory anything but a directory")
            self._dir_metadata(self.tree.root_fd, (), entry)
            return
        name = parts[-1]
        if is_whiteout(name):
            self._whiteout(parts[:-1], name)
            return
        real_parent = self.tree.resolve(parts[:-1], create=True)
        assert real_parent is not None
        parent = self.tree.dir_fd(real_parent)
        self._touch(real_parent, parent)
        real = (*real_parent, name)
        self._mark_upper(real)
        kind = entry.kind
        if kind in REGULAR_TYPES:
            self._make_file(parent, real_parent, name, entry, reader)
        elif kind == tarfile.DIRTYPE:
            self._make_dir(parent, name, real, entry)
        elif kind == tarfile.SYMTYPE:
            self._make_symlink(parent, name, entry)
        elif kind == tarfile.LNKTYPE:
            self._make_hardlink(parent, name, entry)
        elif kind == tarfile.FIFOTYPE:
            self._make_fifo(parent, name, entry)
        elif kind in (tarfile.CHRTYPE, tarfile.BLKTYPE):
            self._make_device(parent, name, entry)
        else:
            raise UnsafeEntry(f"unsupported tar entry type {kind!r}")

    def _mark_upper(self, real: tuple[str, ...]) -> None:
        key = "/".join(real)
        upper = self.upper
        if key in upper:
            return
        upper.add(key)
        for i in range(len(real) - 1, 0, -1):
            prefix = "/".join(real[:i])
            if prefix in upper:
                break
            upper.add(prefix)

    def _clear_slot(
        self, parent: int, name: str, *, keep_dir: bool = False
    ) -> os.stat_result | None:
        """Remove whatever is at ``name`` (a directory with its content) unless it is a directory
        and ``keep_dir``; return its ``lstat`` when it is kept, else ``None``."""
        try:
            st = os.stat(name, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            return None
        if stat.S_ISDIR(st.st_mode):
            if keep_dir:
                return st
            self.tree.invalidate()
            self._new_gid.clear()
            rmtree_at(parent, name)
            if self.deferred_modes:
                self._forget_deferred()
        else:
            os.unlink(name, dir_fd=parent)
            if stat.S_ISLNK(st.st_mode):
                self.tree.invalidate()
        return None

    def _forget_deferred(self) -> None:
        """Drop the deferred modes of directories just removed, so that a directory made again
        at the same path (implicitly, as a parent) does not get the old one's mode."""
        for real in list(self.deferred_modes):
            try:
                self.tree.dir_fd(real)
            except OSError:
                del self.deferred_modes[real]

    def _make_file(
        self, parent: int, real_parent: tuple[str, ...], name: str, entry: TarEntry,
        reader: LayerReader,
    ) -> None:
        # the final permission bits at once, when the umask leaves them whole and there are no
        # setuid, setgid or sticky bits (fchmod them after the chown, which would clear them)
        umask, mode = self._umask, entry.mode
        at_once = umask is not None and not mode & 0o7000 and not mode & umask
        perm = mode & 0o777 if at_once else 0o600
        try:
            fd = os.open(name, O_NEW, perm, dir_fd=parent)
        except FileExistsError:
            self._clear_slot(parent, name)
            fd = os.open(name, O_NEW, perm, dir_fd=parent)
        try:
            if entry.size:
                reader.copy_to(fd)
            owned = self.rootless or (
                entry.uid == self._uid and entry.gid == self._group_of_new(real_parent, parent)
            )
            self._fd_metadata(fd, name, entry, chown=not owned, chmod=not at_once)
        finally:
            os.close(fd)

    def _group_of_new(self, real: tuple[str, ...], fd: int) -> int:
        """The group a file made in the folder ``real`` (open as ``fd``) gets: the folder's
        when it is setgid, else ours."""
        gid = self._new_gid.get(real)
        if gid is None:
            st = os.fstat(fd)
            gid = self._new_gid[real] = st.st_gid if st.st_mode & stat.S_ISGID else self._gid
        return gid

    def _fd_metadata(
        self, fd: int, name: str, entry: TarEntry, *, chown: bool = True, chmod: bool = True
    ) -> None:
        """Owner, mode, xattrs, then times (chown clears setuid bits; writes and chown clear
        ``security.capability``). ``chown``/``chmod`` false: the file has them already."""
        if chown and not self.rootless:
            os.fchown(fd, entry.uid, entry.gid)
        if chmod:
            os.fchmod(fd, entry.mode)
        for key, value in entry.xattrs.items():
            self._setxattr(fd, key, value, entry.name, follow=True)
        os.utime(fd, ns=(entry.atime_ns, entry.mtime_ns))

    def _dir_metadata(self, fd: int, real: tuple[str, ...], entry: TarEntry) -> None:
        self._new_gid.pop(real, None)  # its setgid bit or group may change
        if not self.rootless:
            os.fchown(fd, entry.uid, entry.gid)
        mode = entry.mode
        if self.rootless and mode & 0o700 != 0o700:
            self.deferred_modes[real] = mode
            mode |= 0o700
        else:
            self.deferred_modes.pop(real, None)
        os.fchmod(fd, mode)
        for key, value in entry.xattrs.items():
            self._setxattr(fd, key, value, entry.name, follow=True)
        self.dir_times[real] = (entry.atime_ns, entry.mtime_ns)

    def _make_dir(self, parent: int, name: str, real: tuple[str, ...], entry: TarEntry) -> None:
        try:
            os.mkdir(name, 0o700, dir_fd=parent)
            self.tree.fresh.add(real)
        except FileExistsError:
            if self._clear_slot(parent, name, keep_dir=True) is None:
                os.mkdir(name, 0o700, dir_fd=parent)
                self.tree.fresh.add(real)
        fd = self.tree.dir_fd(real)
        self._dir_metadata(fd, real, entry)

    def _make_symlink(self, parent: int, name: str, entry: TarEntry) -> None:
        target = entry.linkname
        if not target or "\0" in target or len(os.fsencode(target)) > PATH_MAX:
            raise UnsafeEntry("a symlink target that is empty, too long or holds a NUL byte")
        try:
            os.symlink(target, name, dir_fd=parent)
        except FileExistsError:
            self._clear_slot(parent, name)
            os.symlink(target, name, dir_fd=parent)
        self._link_metadata(parent, name, entry)

    def _link_metadata(self, parent: int, name: str, entry: TarEntry) -> None:
        """Metadata by name, for what cannot be opened: symlinks (never followed) and devices."""
        if not self.rootless:
            os.chown(name, entry.uid, entry.gid, dir_fd=parent, follow_symlinks=False)
        if entry.xattrs:
            proc = f"/proc/self/fd/{parent}/{name}"
            for key, value in entry.xattrs.items():
                self._setxattr(proc, key, value, entry.name, follow=False)
        os.utime(name, ns=(entry.atime_ns, entry.mtime_ns), dir_fd=parent, follow_symlinks=False)

    def _make_hardlink(self, parent: int, name: str, entry: TarEntry) -> None:
        target = hardlink_target(entry)
        target_parent = self.tree.resolve(target[:-1], create=False)
        if target_parent is None:
            raise UnpackError(f"the hard link target {entry.linkname!r} does not exist")
        target_fd = self.tree.dir_fd(target_parent)
        try:
            st = os.stat(target[-1], dir_fd=target_fd, follow_symlinks=False)
        except FileNotFoundError:
            raise UnpackError(f"the hard link target {entry.linkname!r} does not exist") from None
        if stat.S_ISDIR(st.st_mode):
            raise UnsafeEntry(f"a hard link to the directory {entry.linkname!r}")
        try:
            here = os.stat(name, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            pass
        else:
            if (here.st_dev, here.st_ino) == (st.st_dev, st.st_ino):
                return  # already that inode
            self._clear_slot(parent, name)
        os.link(target[-1], name, src_dir_fd=target_fd, dst_dir_fd=parent, follow_symlinks=False)

    def _make_fifo(self, parent: int, name: str, entry: TarEntry) -> None:
        try:
            os.mkfifo(name, 0o600, dir_fd=parent)
        except FileExistsError:
            self._clear_slot(parent, name)
            os.mkfifo(name, 0o600, dir_fd=parent)
        fd = os.open(name, O_READ | os.O_NONBLOCK, dir_fd=parent)
        try:
            self._fd_metadata(fd, name, entry)
        finally:
            os.close(fd)

    def _make_device(self, parent: int, name: str, entry: TarEntry) -> None:
        self._clear_slot(parent, name)
        if self.rootless:
            self.skipped_devices.append(f"{entry.name} in layer {self._layer}")
            return
        kind = stat.S_IFCHR if entry.kind == tarfile.CHRTYPE else stat.S_IFBLK
        try:
            os.mknod(name, 0o600 | kind, os.makedev(entry.devmajor, entry.devminor),
                     dir_fd=parent)
        except PermissionError:  # root without CAP_MKNOD (a container, a user namespace)
            self.skipped_devices.append(f"{entry.name} in layer {self._layer}")
            return
        os.chown(name, entry.uid, entry.gid, dir_fd=parent, follow_symlinks=False)
        os.chmod(name, entry.mode, dir_fd=parent)  # the node just made: no symlink to follow
        if entry.xattrs:
            proc = f"/proc/self/fd/{parent}/{name}"
            for key, value in entry.xattrs.items():
                self._setxattr(proc, key, value, entry.name, follow=False)
        os.utime(name, ns=(entry.atime_ns, entry.mtime_ns), dir_fd=parent, follow_symlinks=False)

    def _setxattr(self, target: int | str, key: str, value: bytes, where: str, *,
                  follow: bool) -> None:
        try:
            os.setxattr(target, key, value, follow_symlinks=follow)
        except OSError as exc:
            if exc.errno not in _NO_XATTR:
                raise
            self.skipped_xattrs.append((key, where, exc.strerror or str(exc)))

    # -- whiteouts

    def _whiteout(self, parent_parts: list[str], name: str) -> None:
        opaque = is_opaque(name)
        hidden = "" if opaque else whiteout_target(name)
        if hidden is None:
            return  # aufs metadata (.wh..wh.plnk, .wh..wh.aufs): nothing to apply
        real_parent = self.tree.resolve(parent_parts, create=False)
        if real_parent is None:
            return  # nothing there to hide
        # Lower entries can only be hidden once per layer: whatever a directory holds after that
        # was written by this layer. Remembering it keeps repeated whiteouts linear.
        marker = real_parent if opaque else (*real_parent, hidden)
        if marker in self.hidden or real_parent in self.tree.fresh:
            return
        self.hidden.add(marker)
        parent = self.tree.dir_fd(real_parent)
        self._touch(real_parent, parent)
        if opaque:
            for child in os.listdir(parent):
                self._hide(parent, real_parent, child)
        else:
            self._hide(parent, real_parent, hidden)

    def _hide(self, parent: int, real_parent: tuple[str, ...], name: str) -> None:
        """Remove ``name`` as the lower layers left it: keep what this layer wrote there."""
        real = (*real_parent, name)
        try:
            st = os.stat(name, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            return
        if "/".join(real) not in self.upper:
            self._clear_slot(parent, name)
            return
        if stat.S_ISDIR(st.st_mode) and real not in self.tree.fresh and real not in self.hidden:
            self.hidden.add(real)
            fd = os.open(name, O_DIR, dir_fd=parent)
            try:
                self._touch(real, fd)
                for child in os.listdir(fd):
                    self._hide(fd, real, child)
            finally:
                os.close(fd)


__all__ = ["Applier", "UnpackProgress", "UnpackWarning"]
