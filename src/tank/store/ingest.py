"""Writing one blob into the cache: the ingest file, resumed after an interruption, verified,
then committed read-only under its digest (see :mod:`tank.store.content` for the layout)."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import Final

from tank._fs import fsync_dir, write_all
from tank.digest import Digest, Hasher
from tank.errors import SizeMismatch, StorageError

#: chunk size for re-hashing blobs on disk
READ_CHUNK: Final = 1024 * 1024
#: committed blobs are read-only
BLOB_MODE: Final = 0o444
_NOFOLLOW_CLOEXEC: Final[int] = getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
_OPEN_READ: Final = os.O_RDONLY | _NOFOLLOW_CLOEXEC
_OPEN_NEW: Final = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW_CLOEXEC
_OPEN_RESUME: Final = os.O_RDWR | _NOFOLLOW_CLOEXEC


def _unlink(path: Path) -> bool:
    """Remove ``path`` if it exists; whether it did."""
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True


def _regular_stat(path: Path) -> os.stat_result | None:
    """``lstat`` of ``path`` when it is a regular file, else ``None``."""
    try:
        st = path.lstat()
    except (FileNotFoundError, NotADirectoryError):
        return None
    return st if stat.S_ISREG(st.st_mode) else None


def _hash_fd(fd: int, algorithm: str) -> Hasher:
    """Hash an open file from its current position to the end, in :data:`READ_CHUNK` reads."""
    hasher = Hasher(algorithm)
    while chunk := os.read(fd, READ_CHUNK):
        hasher.update(chunk)
    return hasher


def _hash_file(path: Path, algorithm: str) -> Hasher:
    """Hash a file (not following a symlink at ``path``)."""
    fd = os.open(path, _OPEN_READ)
    try:
        return _hash_fd(fd, algorithm)
    finally:
        os.close(fd)


def _storage_error(exc: OSError, path: Path, doing: str) -> StorageError:
    """A :class:`StorageError` saying what failed where, in words (ENOSPC → "no space left")."""
    reason = exc.strerror or str(exc)
    if exc.errno == errno.ENOSPC:
        reason = "no space left on the device"
    return StorageError(
        f"the cache failed {doing} at {path}: {reason}", path=str(path), errno=exc.errno
    )


def _reopen_writable(path: Path) -> int | None:
    """An interrupted ingest file, opened for appending; ``None`` when it cannot be trusted.

    A crash between the commit's ``fchmod`` and its rename leaves the file read-only, so it is
    made writable again first: through a descriptor opened with ``O_NOFOLLOW`` (never a chmod
    by path, which a swapped-in symlink would redirect), and the file opened for writing must be
    that same inode.
    """
    try:
        ro = os.open(path, os.O_RDONLY | _NOFOLLOW_CLOEXEC)
    except OSError:
        return None
    try:
        seen = os.fstat(ro)
        if not stat.S_ISREG(seen.st_mode):
            return None
        os.fchmod(ro, 0o644)
    finally:
        os.close(ro)
    try:
        fd = os.open(path, _OPEN_RESUME)
    except OSError:
        return None
    now = os.fstat(fd)
    if (now.st_dev, now.st_ino) != (seen.st_dev, seen.st_ino):
        os.close(fd)
        return None
    return fd  # at the start: the caller hashes what it holds, ending at its end


class BlobWriter:
    """An ingest file for one blob, yielded by :meth:`Store.writer`; write, then :meth:`commit`.

    :ivar path: the ingest file.
    :ivar digest: the digest the bytes must hash to.
    :ivar size: the size they must have, when known.
    :ivar written: bytes written so far (counting the ones resumed from a previous run).
    :ivar resumed: how many bytes an interrupted earlier download had left in the ingest file,
        which this writer continues; :attr:`prefix_hasher` holds their hash.
    """

    def __init__(
        self, path: Path, digest: Digest, size: int | None, target: Path, *, resume: bool = True
    ) -> None:
        """Open the ingest file ``path``; ``target`` is the blob path.

        With ``resume`` a leftover of an interrupted download is continued: its bytes are
        re-hashed (as containerd does) so the final verification still covers the whole blob. A
        leftover longer than ``size`` is discarded.
        """
        self.path = path
        self.digest = digest
        self.size = size
        self.written = 0
        self.resumed = 0
        self.prefix_hasher: Hasher | None = None
        self.committed = False
        self._target = target
        self._broken: str | None = None
        self._fd: int | None = None
        st = _regular_stat(path)
        fd = None
        if resume and st is not None and st.st_size > 0 and (size is None or st.st_size <= size):
            fd = _reopen_writable(path)
        if fd is not None:
            try:
                self.prefix_hasher = _hash_fd(fd, digest.algorithm)
            except BaseException:
                os.close(fd)
                raise
            self._fd = fd  # positioned at the end: writes append
            self.written = self.resumed = self.prefix_hasher.size
        else:
            _unlink(path)  # a crashed writer's leftover (possibly already read-only)
            self._fd = os.open(path, _OPEN_NEW, 0o644)

    def restart(self) -> None:
        """Throw away what was written (the server ignored ``Range`` and sends it all again)."""
        fd = self._open_fd()
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        self.written = 0
        self.prefix_hasher = None
        self._broken = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Append ``data``; :class:`~tank.errors.SizeMismatch` if that goes past :attr:`size`.

        After a size overflow the writer is spoilt: :meth:`commit` refuses.
        """
        fd = self._open_fd()
        count = memoryview(data).nbytes
        if self.size is not None and self.written + count > self.size:
            self._broken = f"more than the expected {self.size} bytes were written"
            raise SizeMismatch(self.size, self.written + count, what="blob", digest=self.digest)
        try:
            write_all(fd, data)
        except OSError as exc:
            raise _storage_error(exc, self.path, f"writing blob {self.digest}") from exc
        self.written += count

    def commit(self, hasher: Hasher | None = None) -> Path:
        """Verify, fsync, make read-only and rename into ``blobs/``; return the blob's path.

        ``hasher`` is the hash of the bytes as the caller streamed them (the registry client's
        :class:`~tank.registry.BlobStream` hashes them anyway, so the store does not hash
        twice); its digest must be :attr:`digest` and its byte count :attr:`written` (and
        :attr:`size`, when known), else :class:`~tank.errors.DigestMismatch` or
        :class:`~tank.errors.SizeMismatch` is raised and nothing is committed. Without a
        ``hasher`` the ingest file is read back and hashed.
        """
        fd = self._open_fd()
        if self._broken is not None:
            raise RuntimeError(f"cannot commit {self.digest}: {self._broken}")
        if self.size is not None and self.written != self.size:
            raise SizeMismatch(self.size, self.written, what="blob", digest=self.digest)
        if hasher is None:
            hasher = _hash_file(self.path, self.digest.algorithm)
        if hasher.size != self.written:
            raise SizeMismatch(
                self.written, hasher.size, what="blob (bytes hashed vs. written)",
                digest=self.digest,
            )
        hasher.verify(self.digest, what="blob")
        try:
            os.fsync(fd)
            os.fchmod(fd, BLOB_MODE)
            self._close()
            os.replace(self.path, self._target)
        except OSError as exc:
            raise _storage_error(exc, self.path, f"committing blob {self.digest}") from exc
        self.committed = True
        fsync_dir(self._target.parent)
        return self._target

    def _open_fd(self) -> int:
        if self._fd is None:
            state = "committed" if self.committed else "closed"
            raise RuntimeError(f"the writer for {self.digest} is already {state}")
        return self._fd

    def _close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    def _discard(self, *, keep: bool = False) -> None:
        """Close, and remove the ingest file unless committed (or kept for a later resume)."""
        self._close()
        if not self.committed and not (keep and self.written > 0 and self._broken is None):
            _unlink(self.path)


# -- the store ---------------------------------------------------------------------------------
