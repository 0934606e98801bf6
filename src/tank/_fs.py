"""Filesystem helpers every writer shares: one of each, one failure behaviour.

- :func:`fsync_dir`: make the renames, links and unlinks in a directory durable. A filesystem
  that cannot fsync directories is accepted; any other failure is a
  :class:`~tank.errors.StorageError`. (A caller that removes things best-effort suppresses that
  error itself, and says why.)
- :func:`temp_name` and :func:`new_file`: a fresh temporary sibling of a final name, created
  exclusively (never through a symlink planted there) and removed again if writing it fails.
- :func:`write_atomically`: a small file replaced whole (temporary file, fsync, rename, fsync of
  the directory): a reader sees the old content or the new, never a part.
- :class:`Dir`: a directory worked in through its descriptor: subdirectories opened with
  ``O_NOFOLLOW`` (a symlink planted at ``blobs/`` is refused, never followed), files created with
  ``O_EXCL | O_NOFOLLOW``, renames and links relative to the descriptor. Outputs that other users
  might have prepared (an OCI layout) are written only this way.
- :func:`reflink` and :func:`copy_data`: a file's content copied by the cheapest means the kernel
  offers: a copy-on-write clone (``FICLONE``), else ``copy_file_range`` (in the kernel, and a
  server-side copy on NFS), else ``read`` and ``write``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Final

from tank.errors import StorageError

#: Linux ``FICLONE`` (``_IOW(0x94, 9, int)``): clone the source fd's extents into the target
FICLONE: Final = 0x40049409
#: the prefix of tank's temporary files beside the files they become (see :func:`temp_name`)
TMP_PREFIX: Final = ".tank-tmp-"

#: errors that mean "this filesystem cannot fsync a directory" (some FUSE and network
#: filesystems): nothing more can be done there, so they are not failures
_NO_DIR_FSYNC = frozenset({errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EBADF})
#: bytes per ``read`` when the kernel cannot copy by itself
_CHUNK: Final = 1 << 20
#: bytes asked of one ``copy_file_range`` call when copying to the end
_RANGE: Final = 1 << 30


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """fsync the directory ``path`` so that the entries renamed, linked or removed in it survive
    a crash.

    A filesystem that cannot fsync directories is accepted silently (there is nothing more to
    do); any other failure (``EIO``, a missing directory) is a :class:`~tank.errors.StorageError`,
    since the caller's durability promise would otherwise be broken without a word.
    """
    doing = "opening"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        doing = "fsync of"
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        if doing == "opening" or exc.errno not in _NO_DIR_FSYNC:
            raise StorageError(
                f"{doing} directory {Path(path)} to make it durable failed: {exc.strerror}",
                path=os.fspath(path), errno=exc.errno,
            ) from exc


def temp_name(final: Path, *, prefix: str = TMP_PREFIX) -> Path:
    """A fresh temporary name beside ``final``: ``<prefix><up to 24 characters of its
    name>-<12 random hex digits>``, so a crashed writer's leftovers are recognisable by
    ``prefix``."""
    return final.with_name(f"{prefix}{final.name[:24]}-{secrets.token_hex(6)}")


@contextlib.contextmanager
def new_file(path: Path, mode: int = 0o644, *, readable: bool = False) -> Iterator[int]:
    """Create ``path`` exclusively (``O_EXCL``: never an existing file, never through a symlink)
    and yield its descriptor, open for writing (and reading with ``readable``); ``mode`` is
    subject to the umask. The descriptor is closed at the end of the block; if the block fails,
    the file is removed too."""
    access = os.O_RDWR if readable else os.O_WRONLY
    fd = os.open(path, access | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        yield fd
    except BaseException:
        os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        raise
    os.close(fd)


def write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    """``os.write`` until every byte is written (a write may be partial)."""
    view = memoryview(data).cast("B")
    while view:
        view = view[os.write(fd, view) :]


@contextlib.contextmanager
def atomic_file(
    path: Path,
    *,
    mode: int | None = None,
    durable: bool = True,
    readable: bool = False,
    buffering: int = -1,
) -> Iterator[BinaryIO]:
    """Write the file ``path`` whole or not at all: the block writes a temporary sibling (created
    exclusively, never through a symlink); when it ends without error the file is flushed, given
    ``mode`` (exactly; else ``0o644`` less the umask), fsynced (with ``durable``), renamed over
    ``path``, and the directory fsynced. When it fails, the temporary file is removed and
    ``path`` is untouched.

    :raises OSError: the write or the rename failed.
    :raises ~tank.errors.StorageError: the directory could not be made durable.
    """
    tmp = temp_name(path)
    try:
        with (
            new_file(tmp, readable=readable) as fd,
            open(fd, "w+b" if readable else "wb", buffering=buffering, closefd=False) as out,
        ):
            if mode is not None:
                os.fchmod(fd, mode)  # on the open descriptor: never a path swapped in between
            yield out
            out.flush()
            if durable:
                os.fsync(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    if durable:
        fsync_dir(path.parent)


def write_atomically(path: Path, data: bytes, *, mode: int | None = None) -> None:
    """Replace the file ``path`` with ``data`` whole (see :func:`atomic_file`)."""
    with atomic_file(path, mode=mode) as out:
        out.write(data)


_O_DIR: Final = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class Dir:
    """An open directory, and the operations tank does inside it without following a symlink.

    :ivar path: the directory's path (for messages only: every operation goes through
        :attr:`fd`).
    :ivar fd: its descriptor.
    """

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self.fd = fd

    @classmethod
    def open(cls, path: Path, *, follow: bool = True) -> Dir:
        """Open the directory ``path`` (its last component followed only with ``follow``)."""
        flags = _O_DIR if not follow else _O_DIR & ~os.O_NOFOLLOW
        return cls(path, os.open(path, flags))

    def close(self) -> None:
        """Close the descriptor."""
        os.close(self.fd)

    def __enter__(self) -> Dir:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def subdir(self, name: str, *, create: bool = False, mode: int = 0o755) -> Dir:
        """The subdirectory ``name`` (created first with ``create``), opened with
        ``O_NOFOLLOW``: a symlink there is an :class:`OSError` (``ELOOP``/``ENOTDIR``)."""
        if create:
            with contextlib.suppress(FileExistsError):
                os.mkdir(name, mode, dir_fd=self.fd)
        return Dir(self.path / name, os.open(name, _O_DIR, dir_fd=self.fd))

    def lstat(self, name: str) -> os.stat_result | None:
        """``lstat`` of ``name`` here; ``None`` when there is none."""
        try:
            return os.stat(name, dir_fd=self.fd, follow_symlinks=False)
        except FileNotFoundError:
            return None

    def read(self, name: str, cap: int) -> bytes | None:
        """Up to ``cap + 1`` bytes of the regular file ``name`` (never through a symlink);
        ``None`` when there is no such entry."""
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=self.fd)
        except FileNotFoundError:
            return None
        with open(fd, "rb") as f:
            return f.read(cap + 1)

    @contextlib.contextmanager
    def new_file(self, name: str, mode: int = 0o644) -> Iterator[int]:
        """Create ``name`` exclusively (``O_EXCL | O_NOFOLLOW``) and yield its descriptor; on
        failure the file is removed."""
        fd = os.open(
            name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode,
            dir_fd=self.fd,
        )
        try:
            yield fd
        except BaseException:
            os.close(fd)
            self.remove(name)
            raise
        os.close(fd)

    def link_from(self, source: Path, name: str) -> bool:
        """Hard-link ``source`` here as ``name``; False where the filesystem refuses."""
        try:
            os.link(source, name, dst_dir_fd=self.fd)
        except OSError:  # EXDEV across filesystems, EPERM (protected_hardlinks), EMLINK, …
            return False
        return True

    def rename(self, name: str, final: str) -> None:
        """Rename ``name`` over ``final`` (an entry already there, a symlink included, is
        replaced itself, never followed)."""
        os.rename(name, final, src_dir_fd=self.fd, dst_dir_fd=self.fd)

    def remove(self, name: str) -> None:
        """Unlink ``name`` if it is there."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name, dir_fd=self.fd)

    def temp_name(self, final: str) -> str:
        """A fresh temporary name beside ``final`` (see :func:`temp_name`)."""
        return temp_name(Path(final)).name

    def write_atomically(self, name: str, data: bytes, mode: int | None = None) -> None:
        """Replace ``name`` whole with ``data``: temporary file, fsync, rename, fsync here."""
        tmp = self.temp_name(name)
        with self.new_file(tmp) as fd:
            write_all(fd, data)
            if mode is not None:
                os.fchmod(fd, mode)
            os.fsync(fd)
        try:
            self.rename(tmp, name)
        except BaseException:
            self.remove(tmp)
            raise
        self.fsync()

    def fsync(self) -> None:
        """Make the entries renamed, linked or removed here durable (see :func:`fsync_dir`)."""
        try:
            os.fsync(self.fd)
        except OSError as exc:
            if exc.errno not in _NO_DIR_FSYNC:
                raise StorageError(
                    f"fsync of directory {self.path} failed: {exc.strerror}",
                    path=str(self.path), errno=exc.errno,
                ) from exc


def foreign_owner(st: os.stat_result) -> int | None:
    """When tank runs as root, the uid of another user who owns what ``st`` describes (and
    could redirect or reach what root writes there); ``None`` otherwise."""
    if os.geteuid() == 0 and st.st_uid != 0:
        return st.st_uid
    return None


def reflink(src_fd: int, dst_fd: int) -> bool:
    """Make the file ``dst_fd`` a copy-on-write clone of ``src_fd`` (Linux ``FICLONE``: btrfs,
    XFS, bcachefs, …); ``False``, with nothing written, where the filesystem cannot
    (``EOPNOTSUPP``, ``EXDEV``, ``EINVAL``, ``ENOTTY`` …) or the platform is not Linux."""
    if sys.platform != "linux":
        return False
    import fcntl

    try:
        fcntl.ioctl(dst_fd, FICLONE, src_fd)
    except OSError:
        return False
    return True


def copy_data(src_fd: int, dst_fd: int, size: int | None = None) -> None:
    """Copy ``size`` bytes (or everything up to the end) from ``src_fd``'s position to
    ``dst_fd``'s: with ``copy_file_range`` where the kernel can, else by ``read`` and ``write``.

    ``copy_file_range`` failing before it copied anything (``EXDEV`` on older kernels,
    ``ENOSYS``, ``EINVAL`` or ``EOPNOTSUPP`` on some filesystems) is not an error: the plain copy
    runs instead (and a real I/O error meets it there again). A failure after some bytes were
    copied is raised.
    """
    if _copy_range(src_fd, dst_fd, size):
        return
    left = size
    while left is None or left > 0:
        chunk = os.read(src_fd, _CHUNK if left is None else min(left, _CHUNK))
        if not chunk:
            break
        write_all(dst_fd, chunk)
        if left is not None:
            left -= len(chunk)


def _copy_range(src_fd: int, dst_fd: int, size: int | None) -> bool:
    """Copy with ``os.copy_file_range``; ``False`` if it copied nothing and cannot here."""
    copy_range = getattr(os, "copy_file_range", None)
    if copy_range is None:
        return False
    copied = 0
    try:
        while size is None or copied < size:
            n = copy_range(src_fd, dst_fd, _RANGE if size is None else size - copied)
            if not n:
                break
            copied += n
    except OSError:
        if copied:
            raise
        return False
    return True


__all__ = [
    "FICLONE",
    "TMP_PREFIX",
    "Dir",
    "atomic_file",
    "copy_data",
    "foreign_owner",
    "fsync_dir",
    "new_file",
    "reflink",
    "temp_name",
    "write_all",
    "write_atomically",
]
