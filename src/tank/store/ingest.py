"""Writing one blob into the cache: the ingest file, resumed after an interruption, verified,
then committed read-only under its digest (see :mod:`tank.store.content` for the layout).

A blob fetched as ranges over several connections (:mod:`tank.registry.ranged`) is written at
offsets into the same ingest file, with a **chunk journal** beside it
(``ingest/<alg>-<hex>.journal``): a header naming the digest and size, then one line
``START END`` per range known written. A range is journaled only after the ingest file was
fdatasynced, and the journal is fdatasynced too, so it never claims bytes a crash could lose; a
journal that cannot be read whole (a torn last line is ignored), or that records no range yet,
leaves nothing known, and the ingest file is then started over; ranges past the ingest file's
end (truncated away when the download went on as one stream) are dropped. The ingest file is
truncated before its journal is removed, so without a journal its bytes are one prefix of the
blob, as a single stream writes them. Whatever is kept is hashed again before the blob is committed:
the journal only saves downloading, never verifying.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import threading
from pathlib import Path
from typing import Final

from tank._fs import fsync_dir, write_all
from tank.digest import Digest, Hasher
from tank.errors import SizeMismatch, StorageError

#: chunk size for re-hashing blobs on disk
READ_CHUNK: Final = 1024 * 1024
#: committed blobs are read-only
BLOB_MODE: Final = 0o444
#: the first line of a chunk journal (then the digest and the size)
JOURNAL_MAGIC: Final = b"tank-ingest-journal 1"
#: a blob written as one stream is fdatasynced on a thread each time this much more arrived, so
#: its writeback overlaps the download and the commit's fsync finds little left to do
SYNC_EVERY: Final = 64 * 1024 * 1024
#: a chunk journal larger than this is not read (it is discarded with its ingest file)
MAX_JOURNAL: Final = 1024 * 1024
_NOFOLLOW_CLOEXEC: Final[int] = getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
_OPEN_READ: Final = os.O_RDONLY | _NOFOLLOW_CLOEXEC
_OPEN_NEW: Final = os.O_RDWR | os.O_CREAT | os.O_EXCL | _NOFOLLOW_CLOEXEC  # ranges read back
_OPEN_RESUME: Final = os.O_RDWR | _NOFOLLOW_CLOEXEC
_OPEN_JOURNAL: Final = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND | _NOFOLLOW_CLOEXEC


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


def _quiet_fdatasync(fd: int) -> None:
    """Start the writeback of what was written so far (the commit's fsync reports errors)."""
    with contextlib.suppress(OSError):
        os.fdatasync(fd)


def journal_path(ingest: Path) -> Path:
    """The chunk journal beside the ingest file ``ingest`` (``<alg>-<hex>.journal``)."""
    return ingest.with_suffix(".journal")


def _journal_header(digest: Digest, size: int | None) -> bytes:
    return JOURNAL_MAGIC + f" {digest} {size}\n".encode()


def read_journal(path: Path, digest: Digest, size: int | None) -> list[tuple[int, int]] | None:
    """The merged ranges a chunk journal records; ``[]`` when there is none, ``None`` when it
    cannot be trusted (another blob's, unreadable, or a complete line that is not a range)."""
    try:
        fd = os.open(path, _OPEN_READ)
    except FileNotFoundError:
        return []
    except OSError:
        return None
    try:
        raw = os.read(fd, MAX_JOURNAL + 1)
    except OSError:
        return None
    finally:
        os.close(fd)
    header = _journal_header(digest, size)
    if len(raw) > MAX_JOURNAL or not raw.startswith(header) or size is None:
        return None
    lines = raw[len(header):].split(b"\n")[:-1]  # a torn last line has no newline: ignored
    ranges: list[tuple[int, int]] = []
    for line in lines:
        parts = line.split(b" ")
        if len(parts) != 2 or not all(p.isdigit() for p in parts):
            return None
        start, end = int(parts[0]), int(parts[1])
        if not 0 <= start < end <= size:
            return None
        ranges.append((start, end))
    return merge_ranges(ranges)


def merge_ranges(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """``ranges`` sorted, with those that touch or overlap made one."""
    out: list[tuple[int, int]] = []
    for start, end in sorted(ranges):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


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
        self._journal = journal_path(path)
        self._journal_fd: int | None = None
        self._held: list[tuple[int, int]] = []
        self._journaled = False  # a journal describes the ingest file (resumed, or begun)
        self._synced = 0  # bytes of the stream an fdatasync has been started for
        self._syncing: threading.Thread | None = None
        st = _regular_stat(path)
        fd = None
        ranges: list[tuple[int, int]] | None = []
        if resume and st is not None and st.st_size > 0 and (size is None or st.st_size <= size):
            ranges = read_journal(self._journal, digest, size)
            if ranges is not None:  # a range past the file's end was truncated away since
                ranges = [(start, end) for start, end in ranges if end <= st.st_size]
            if ranges == [] and _regular_stat(self._journal) is not None:
                ranges = None  # a journal with no range: written at offsets, nothing known
            if ranges is not None:
                fd = _reopen_writable(path)
        if fd is not None and ranges:
            try:
                self._resume_ranges(fd, ranges)
            except BaseException:
                os.close(fd)
                raise
            self._fd = fd
        elif fd is not None:
            try:
                self.prefix_hasher = _hash_fd(fd, digest.algorithm)
            except BaseException:
                os.close(fd)
                raise
            self._fd = fd  # positioned at the end: writes append
            self.written = self.resumed = self.prefix_hasher.size
        else:
            _unlink(path)  # a crashed writer's leftover (possibly already read-only)
            _unlink(self._journal)
            self._fd = os.open(path, _OPEN_NEW, 0o644)

    def _resume_ranges(self, fd: int, ranges: list[tuple[int, int]]) -> None:
        """Continue a ranged download: hash the journaled prefix, hold the ranges after it."""
        prefix = ranges[0][1] if ranges[0][0] == 0 else 0
        hasher = Hasher(self.digest.algorithm)
        at = 0
        while at < prefix:
            chunk = os.pread(fd, min(READ_CHUNK, prefix - at), at)
            if not chunk:
                break
            hasher.update(chunk)
            at += len(chunk)
        os.lseek(fd, prefix, os.SEEK_SET)
        self.prefix_hasher = hasher
        self.written = hasher.size
        self._held = [r for r in ranges if r[0] > 0]
        self._journaled = True
        self.resumed = self.written + sum(end - start for start, end in self._held)

    def restart(self) -> None:
        """Throw away what was written (the server ignored ``Range`` and sends it all again)."""
        fd = self._open_fd()
        os.ftruncate(fd, 0)  # before the journal goes: never ranged bytes without their journal
        self._drop_journal()
        os.lseek(fd, 0, os.SEEK_SET)
        self.written = self._synced = 0
        self.prefix_hasher = None
        self._held = []
        self._broken = None

    # -- ranges at offsets (tank.registry.ranged.RangedSink)

    def held(self) -> list[tuple[int, int]]:
        """Ranges ``(start, end)`` beyond :attr:`written` that an earlier run journaled."""
        return list(self._held)

    def begin_ranged(self) -> None:
        """Start the chunk journal (before the first :meth:`write_at`), recording the prefix
        and the ranges already held; fsynced."""
        self._open_fd()
        if self._journal_fd is not None:
            return
        try:
            jfd = os.open(self._journal, _OPEN_JOURNAL, 0o644)
        except OSError as exc:
            raise _storage_error(exc, self._journal, f"journaling blob {self.digest}") from exc
        self._journal_fd = jfd
        self._journaled = True
        kept = ([(0, self.written)] if self.written else []) + self._held
        self._append(kept, header=True)

    def write_at(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        """Write ``data`` at ``offset`` (thread-safe); :class:`~tank.errors.SizeMismatch` past
        :attr:`size`."""
        fd = self._open_fd()
        view = memoryview(data).cast("B")
        if self.size is not None and offset + view.nbytes > self.size:
            self._broken = f"bytes past the expected {self.size} were written"
            raise SizeMismatch(self.size, offset + view.nbytes, what="blob", digest=self.digest)
        try:
            while view:
                done = os.pwrite(fd, view, offset)
                view, offset = view[done:], offset + done
        except OSError as exc:
            raise _storage_error(exc, self.path, f"writing blob {self.digest}") from exc

    def read_at(self, offset: int, size: int) -> bytes:
        """Up to ``size`` bytes of the ingest file at ``offset``."""
        try:
            return os.pread(self._open_fd(), size, offset)
        except OSError as exc:
            raise _storage_error(exc, self.path, f"reading blob {self.digest}") from exc

    def keep(self, ranges: list[tuple[int, int]]) -> None:
        """Make the ingest file durable, then journal ``ranges`` as written (fsynced)."""
        try:
            os.fdatasync(self._open_fd())
        except OSError as exc:
            raise _storage_error(exc, self.path, f"writing blob {self.digest}") from exc
        self._append(ranges)

    def _append(self, ranges: list[tuple[int, int]], *, header: bool = False) -> None:
        jfd = self._journal_fd
        if jfd is None:
            return
        body = b"".join(f"{start} {end}\n".encode() for start, end in ranges if end > start)
        if header:
            body = _journal_header(self.digest, self.size) + body
        try:
            write_all(jfd, body)
            os.fdatasync(jfd)
        except OSError as exc:
            raise _storage_error(exc, self._journal, f"journaling blob {self.digest}") from exc

    def complete(self) -> None:
        """Every byte is written and verified: the ingest file holds the whole blob."""
        if self.size is not None:
            self.written = self.size
        self._held = []

    def settle(self, prefix: int) -> None:
        """The first ``prefix`` bytes are written (and hashed by the caller): go on as one
        stream after them. The journal stays until the first byte appended (:meth:`write`
        then drops it, and the ingest file is one prefix again)."""
        fd = self._open_fd()
        self.written = prefix
        os.lseek(fd, prefix, os.SEEK_SET)
        self.prefix_hasher = None
        self._held = []

    def _drop_journal(self) -> None:
        """Forget the ranges: close and remove the journal."""
        if self._journal_fd is not None:
            fd, self._journal_fd = self._journal_fd, None
            os.close(fd)
        _unlink(self._journal)
        self._held = []
        self._journaled = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Append ``data``; :class:`~tank.errors.SizeMismatch` if that goes past :attr:`size`.

        After a size overflow the writer is spoilt: :meth:`commit` refuses.
        """
        fd = self._open_fd()
        count = memoryview(data).nbytes
        if self._journaled:  # ranges before: go on as one stream from the prefix
            os.ftruncate(fd, self.written)  # first: the file is one prefix when the journal goes
            self._drop_journal()
            os.lseek(fd, self.written, os.SEEK_SET)
        if self.size is not None and self.written + count > self.size:
            self._broken = f"more than the expected {self.size} bytes were written"
            raise SizeMismatch(self.size, self.written + count, what="blob", digest=self.digest)
        try:  # at ``written`` itself, whatever the descriptor's position (ranges use pwrite)
            view, at = memoryview(data).cast("B"), self.written
            while view:
                done = os.pwrite(fd, view, at)
                view, at = view[done:], at + done
        except OSError as exc:
            raise _storage_error(exc, self.path, f"writing blob {self.digest}") from exc
        self.written += count
        if self.written - self._synced >= SYNC_EVERY and not self._sync_running():
            self._synced = self.written
            self._syncing = threading.Thread(
                target=_quiet_fdatasync, args=(fd,), name="tank-writeback", daemon=True
            )
            self._syncing.start()

    def _sync_running(self) -> bool:
        return self._syncing is not None and self._syncing.is_alive()

    def _settle(self) -> None:
        """Wait for the writeback started in the background (before the descriptor closes)."""
        if self._syncing is not None:
            self._syncing.join()
            self._syncing = None

    def commit(self, hasher: Hasher | None = None, *, sync_dir: bool = True) -> Path:
        """Verify, fsync, make read-only and rename into ``blobs/``; return the blob's path.

        With ``sync_dir=False`` the directory is not fsynced after the rename: the caller does
        it once for many blobs (a pull, when its blobs are all in). The file itself is always
        fsynced before the rename, so a crash can lose the rename, never leave a partial file.

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
            self._settle()
            os.fsync(fd)
            self._drop_journal()  # before the rename: a crash now leaves a whole ingest file
            os.fchmod(fd, BLOB_MODE)
            self._close()
            os.replace(self.path, self._target)
        except OSError as exc:
            raise _storage_error(exc, self.path, f"committing blob {self.digest}") from exc
        self.committed = True
        if sync_dir:
            fsync_dir(self._target.parent)
        return self._target

    def _open_fd(self) -> int:
        if self._fd is None:
            state = "committed" if self.committed else "closed"
            raise RuntimeError(f"the writer for {self.digest} is already {state}")
        return self._fd

    def _close(self) -> None:
        self._settle()
        if self._journal_fd is not None:
            jfd, self._journal_fd = self._journal_fd, None
            os.close(jfd)
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    def _discard(self, *, keep: bool = False) -> None:
        """Close, and remove the ingest file unless committed (or kept for a later resume)."""
        self._close()
        held = self.written > 0 or _regular_stat(self._journal) is not None
        if not self.committed and not (keep and held and self._broken is None):
            _unlink(self.path)
            _unlink(self._journal)


# -- the store ---------------------------------------------------------------------------------
