"""The local cache: content-addressed, crash-safe, shared by concurrent pulls.

Layout under the cache root (:func:`default_cache_dir` unless given)::

    blobs/<algorithm>/<hex>                 committed blobs: complete, verified, read-only
    ingest/<algorithm>-<hex>.part           a blob being written (same filesystem as blobs/)
    locks/<algorithm>-<hex>.lock            the per-digest ingest lock (filelock)
    refs/<registry>/<repository>/<tag>.json what a tag pointed at when it was last resolved
    rootfs/…, locks/rootfs-….lock           root filesystems built from images, and their
                                            locks (:mod:`tank.store.rootfs`)

Invariants:

- A file under ``blobs/`` is always complete and correct. Bytes go to an ingest file first; only
  once they are verified against the digest (and size) are they fsynced, made read-only and
  renamed into place, and the directory is fsynced. A crash leaves at most an ingest file, which
  :meth:`Store.clean_ingest` removes.
- Paths are built only from digests validated by :meth:`tank.digest.Digest.parse`, and refs only
  from registry hosts, repositories and tags that pass :mod:`tank.reference`'s rules.
- Concurrent pulls into one cache (threads or processes) cooperate through the per-digest lock:
  whoever takes it first downloads; the others wait, then find the blob committed and download
  nothing (:meth:`Store.writer` yields ``None``).

Writing a blob, with the registry client hashing as the bytes stream (so nothing is hashed
twice)::

    with store.writer(digest, size, resume=False) as w:
        if w is not None:
            hasher = Digest.parse(digest).hasher()
            with tank.open_blob(registry, repo, digest, token, size=size, hasher=hasher) as s:
                for chunk in s:
                    w.write(chunk)
            w.commit(hasher)
    path = store.blob_path(digest)
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Final

from tank._fs import fsync_dir, write_atomically
from tank.digest import ALGORITHMS, Digest
from tank.errors import (
    CacheMiss,
    DigestMismatch,
    IntegrityError,
    InvalidDigest,
    InvalidReference,
    SizeMismatch,
)
from tank.reference import _DOMAIN, _PATH, _TAG, NAME_TOTAL_LENGTH_MAX, api_host
from tank.store.ingest import (
    _NOFOLLOW_CLOEXEC,
    READ_CHUNK,
    BlobWriter,
    _hash_file,
    _regular_stat,
    _unlink,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

    import filelock

#: ref records larger than this are treated as corrupt
MAX_REF_SIZE: Final = 64 * 1024

_OPEN_READ: Final = os.O_RDONLY | _NOFOLLOW_CLOEXEC


def default_cache_dir() -> Path:
    """``$TANK_CACHE``, else platformdirs' user cache dir for ``tank``.

    On Linux that honours ``$XDG_CACHE_HOME`` and is otherwise ``~/.cache/tank``.
    """
    configured = os.environ.get("TANK_CACHE")
    if configured:
        return Path(configured).expanduser().absolute()
    import platformdirs  # lazily: only when $TANK_CACHE is not set

    return Path(platformdirs.user_cache_dir("tank", appauthor=False)).absolute()


# -- small filesystem helpers ----------------------------------------------------------------


# -- records -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RefRecord:
    """What a tag resolved to: the manifest digest, its media type and when it was recorded."""

    digest: Digest
    media_type: str | None
    updated: str


@dataclass(frozen=True)
class CorruptBlob:
    """A problem :meth:`Store.verify` found under ``blobs/``.

    ``digest`` is the digest the file's location claims (``algorithm:name``, which may itself be
    invalid), ``actual`` the digest of its bytes when they could be hashed, ``reason`` what is
    wrong.
    """

    digest: str
    path: Path
    actual: str | None
    reason: str


# -- writing blobs -----------------------------------------------------------------------------


class CacheWarning(UserWarning):
    """Something about the cache tank repaired: a cache directory another user could enter."""


def _make_private(root: Path) -> None:
    """Create ``root`` mode ``0700``, or make an existing one so (with a warning)."""
    try:
        root.mkdir(mode=0o700, parents=True)
        return
    except FileExistsError:
        pass
    st = os.lstat(root)
    if stat.S_ISLNK(st.st_mode):
        st = os.stat(root)  # a cache root that is a symlink is the user's choice: its target
    if st.st_uid == os.geteuid() and st.st_mode & 0o077:
        os.chmod(root, stat.S_IMODE(st.st_mode) & 0o700)
        warnings.warn(
            f"the tank cache {root} was open to other users (mode "
            f"{stat.S_IMODE(st.st_mode):04o}); made it 0700", CacheWarning, stacklevel=3,
        )


class Store:
    """A content-addressed blob cache plus tag records, safe to share between processes.

    Directories are created on first use, race-free. Nothing is created by reading.
    """

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        """Use ``root`` (default: :func:`default_cache_dir`) as the cache directory."""
        self.root: Path = (
            Path(root).expanduser().absolute() if root is not None else default_cache_dir()
        )
        self._private = False

    def private_dir(self, *parts: str) -> Path:
        """``root/parts…``, created if needed; the root itself is made private first.

        The cache root is ``0700`` (created so, and repaired with a :class:`CacheWarning` when a
        looser mode is found): as root, the trees under ``rootfs/`` hold images' setuid files and
        device nodes, which no other local user may reach (moby CVE-2021-41091's pattern).
        """
        if not self._private:
            _make_private(self.root)
            self._private = True
        path = self.root.joinpath(*parts)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def __repr__(self) -> str:
        return f"Store({str(self.root)!r})"

    # -- paths

    def blob_path(self, digest: str) -> Path:
        """``root/blobs/<algorithm>/<hex>``; the digest is validated first."""
        d = Digest.parse(digest)
        return self.root / "blobs" / d.algorithm / d.hex

    def _ingest_path(self, d: Digest) -> Path:
        return self.root / "ingest" / f"{d.algorithm}-{d.hex}.part"

    def _lock(self, d: Digest) -> filelock.BaseFileLock:
        import filelock  # lazily: it costs start-up time, and a cached pull may need no lock

        locks = self.root / "locks"
        self.private_dir("locks")
        return filelock.FileLock(locks / f"{d.algorithm}-{d.hex}.lock")

    # -- blobs

    def has_blob(self, digest: str, size: int | None = None) -> bool:
        """Whether the blob is committed (and, when ``size`` is given, has that size)."""
        st = _regular_stat(self.blob_path(digest))
        return st is not None and (size is None or st.st_size == size)

    def read_blob(self, digest: str, *, max_size: int | None = None) -> bytes:
        """A whole (small) blob, verified against its digest as it is read.

        Raises :class:`~tank.errors.CacheMiss` when it is not cached,
        :class:`~tank.errors.SizeMismatch` when it is larger than ``max_size``, and
        :class:`~tank.errors.DigestMismatch` when the file is corrupt; a corrupt file is then
        removed, so the next pull fetches the blob again.
        """
        d = Digest.parse(digest)
        path = self.blob_path(d)
        try:
            fd = os.open(path, _OPEN_READ)
        except (FileNotFoundError, NotADirectoryError):
            raise self._miss(d) from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise self._miss(d)
            if max_size is not None and st.st_size > max_size:
                raise SizeMismatch(max_size, st.st_size, what="cached blob", digest=d)
            limit = st.st_size if max_size is None else max_size
            parts: list[bytes] = []
            got = 0
            while chunk := os.read(fd, max(1, min(READ_CHUNK, limit + 1 - got))):
                parts.append(chunk)
                got += len(chunk)
                if got > limit:  # the file grew under us: it is not a committed blob
                    break
        finally:
            os.close(fd)
        data = b"".join(parts)
        hasher = d.hasher()
        hasher.update(data)
        if hasher.digest() != d:
            self._discard_blob(d, st)
            raise DigestMismatch(d, hasher.digest(), what="cached blob")
        return data

    def _miss(self, d: Digest) -> CacheMiss:
        return CacheMiss(f"blob {d} is not in the cache at {self.root}", digest=d)

    def remove_blob(self, digest: str) -> bool:
        """Remove a committed blob (under its ingest lock); whether there was one."""
        d = Digest.parse(digest)
        with self._lock(d):
            removed = _unlink(self.blob_path(d))
            if removed:
                fsync_dir(self.blob_path(d).parent)
            return removed

    def _discard_blob(self, d: Digest, seen: os.stat_result) -> None:
        """Remove a blob found corrupt, unless it has been replaced since ``seen`` was taken."""
        path = self.blob_path(d)
        with self._lock(d):
            now = _regular_stat(path)
            if now is not None and (now.st_dev, now.st_ino) == (seen.st_dev, seen.st_ino):
                _unlink(path)

    @contextlib.contextmanager
    def writer(
        self, digest: str, size: int | None, *, replace: bool = False, resume: bool = True
    ) -> Iterator[BlobWriter | None]:
        """Ingest one blob: ``with store.writer(d, size) as w: if w: …; w.commit(hasher)``.

        Takes the per-digest ingest lock (``root/locks/<alg>-<hex>.lock``), waiting while another
        thread or process holds it. If the blob is (now) committed, yields ``None``: nothing to
        download. Otherwise yields a :class:`BlobWriter` on ``root/ingest/<alg>-<hex>.part``. When
        the block ends by an exception or without :meth:`BlobWriter.commit`, the ingest file is
        removed. The lock is released at the end.

        A committed blob whose size differs from ``size`` is re-hashed: if it is intact the
        declared size is wrong (:class:`~tank.errors.SizeMismatch`); if it is damaged it is
        replaced. With ``replace=True`` (a forced refresh) a writer is yielded even when the blob
        is committed, and its commit atomically replaces the old file.

        Resuming: an ingest file left by an interrupted download (connection lost, Ctrl-C, the
        process killed) is continued by the next writer (see :attr:`BlobWriter.resumed`). When the
        block ends with an interruption (anything but a content error such as
        :class:`~tank.errors.DigestMismatch`), the bytes written so far are kept for that; after
        a content error they are removed. A caller that writes the blob from its first byte
        whatever the writer holds (bytes from memory, a file, an archive) passes
        ``resume=False``: a leftover is then discarded, never appended to.
        """
        d = Digest.parse(digest)
        if size is not None and (not isinstance(size, int) or size < 0):
            raise ValueError(f"size must be a non-negative int or None, not {size!r}")
        target = self.blob_path(d)
        ingest = self._ingest_path(d)
        with self._lock(d):
            st = None if replace else _regular_stat(target)
            if st is not None:
                if size is None or st.st_size == size:
                    yield None
                    return
                if _hash_file(target, d.algorithm).digest() == d:
                    raise SizeMismatch(size, st.st_size, what="blob", digest=d)
                _unlink(target)  # damaged: ingest it again
            self.private_dir("blobs", d.algorithm)
            self.private_dir("ingest")
            writer = BlobWriter(ingest, d, size, target, resume=resume and not replace)
            try:
                yield writer
            except IntegrityError:
                writer._discard()
                raise
            except BaseException:
                writer._discard(keep=True)
                raise
            writer._discard()

    def put_bytes(self, digest: str, data: bytes) -> Path:
        """Commit a small blob held in memory (a manifest, a config); no-op if already cached.

        ``data`` is verified against ``digest`` before anything is written
        (:class:`~tank.errors.DigestMismatch`).
        """
        d = Digest.parse(digest)
        hasher = d.hasher()
        hasher.update(data)
        hasher.verify(d, what="blob")
        with self.writer(d, len(data), resume=False) as w:
            if w is None:
                return self.blob_path(d)
            w.write(data)
            return w.commit(hasher)

    def iter_blobs(self) -> Iterator[tuple[Digest, Path]]:
        """Every committed blob (regular files under ``blobs/`` with valid digest names)."""
        blobs = self.root / "blobs"
        for algorithm in sorted(ALGORITHMS):
            folder = blobs / algorithm
            try:
                entries = sorted(os.scandir(folder), key=lambda e: e.name)
            except (FileNotFoundError, NotADirectoryError):
                continue
            for entry in entries:
                try:
                    d = Digest.parse(f"{algorithm}:{entry.name}")
                except InvalidDigest:
                    continue
                if entry.is_file(follow_symlinks=False):
                    yield d, Path(entry.path)

    def verify(self) -> list[CorruptBlob]:
        """Re-hash every file under ``blobs/``; the problems found (empty when all is well).

        Reported: bytes that do not hash to the file's name, names that are not valid digests,
        entries that are not regular files, and files that cannot be read.
        """
        problems: list[CorruptBlob] = []
        blobs = self.root / "blobs"
        try:
            folders = sorted(os.scandir(blobs), key=lambda e: e.name)
        except (FileNotFoundError, NotADirectoryError):
            return problems
        for folder in folders:
            path = Path(folder.path)
            if not folder.is_dir(follow_symlinks=False):
                problems.append(
                    CorruptBlob(folder.name, path, None, "not an algorithm directory")
                )
                continue
            for entry in sorted(os.scandir(path), key=lambda e: e.name):
                problem = self._verify_entry(folder.name, entry)
                if problem is not None:
                    problems.append(problem)
        return problems

    @staticmethod
    def _verify_entry(algorithm: str, entry: os.DirEntry[str]) -> CorruptBlob | None:
        claimed = f"{algorithm}:{entry.name}"
        path = Path(entry.path)
        try:
            d = Digest.parse(claimed)
        except InvalidDigest as exc:
            return CorruptBlob(claimed, path, None, f"not a valid digest name: {exc.reason}")
        if not entry.is_file(follow_symlinks=False):
            return CorruptBlob(d, path, None, "not a regular file")
        try:
            actual = _hash_file(path, d.algorithm).digest()
        except OSError as exc:
            return CorruptBlob(d, path, None, f"unreadable: {exc.strerror or exc}")
        if actual != d:
            return CorruptBlob(d, path, actual, f"content hashes to {actual}")
        return None

    def iter_ingest(self) -> Iterator[tuple[Digest, Path]]:
        """Every ingest file (``ingest/<alg>-<hex>.part``), by name order, with its digest.

        Files that are not named so are not tank's and are left out.
        """
        ingest = self.root / "ingest"
        try:
            entries = sorted(os.scandir(ingest), key=lambda e: e.name)
        except (FileNotFoundError, NotADirectoryError):
            return
        for entry in entries:
            stem, dot, suffix = entry.name.partition(".")
            algorithm, _, hex_part = stem.partition("-")
            if not dot or suffix != "part":
                continue
            try:
                d = Digest.parse(f"{algorithm}:{hex_part}")
            except InvalidDigest:
                continue
            yield d, Path(entry.path)

    def clean_ingest(self) -> int:
        """Remove ingest files left by crashed writers; how many were removed.

        An ingest file whose lock someone holds (a download in progress) is left alone.
        """
        removed = 0
        for d, path in self.iter_ingest():
            lock = self._lock(d)
            try:
                lock.acquire(timeout=0)
            except TimeoutError:  # filelock.Timeout is a TimeoutError
                continue  # being written right now
            try:
                if _unlink(path):
                    removed += 1
            finally:
                lock.release()
        return removed

    # -- refs

    def _ref_path(self, registry: str, repository: str, tag: str) -> Path:
        """Validate the parts, then build ``root/refs/<registry>/<repository>/<tag>.json``."""
        registry = api_host(registry)
        what = f"{registry}/{repository}:{tag}"
        if not isinstance(registry, str) or not _DOMAIN.fullmatch(registry):
            raise InvalidReference(what, f"invalid registry host {registry!r}")
        if not isinstance(repository, str) or not _PATH.fullmatch(repository):
            raise InvalidReference(what, f"invalid repository name {repository!r}")
        if len(registry) + 1 + len(repository) > NAME_TOTAL_LENGTH_MAX:
            raise InvalidReference(
                what, f"repository name must not be more than {NAME_TOTAL_LENGTH_MAX} characters"
            )
        if not isinstance(tag, str) or not _TAG.fullmatch(tag):
            raise InvalidReference(what, f"invalid tag {tag!r}")
        return self.root.joinpath("refs", registry, *repository.split("/"), f"{tag}.json")

    def set_ref(
        self, registry: str, repository: str, tag: str, digest: str, media_type: str | None
    ) -> None:
        """Record that ``registry/repository:tag`` resolved to ``digest`` (atomically)."""
        path = self._ref_path(registry, repository, tag)
        d = Digest.parse(digest)
        if media_type is not None and not isinstance(media_type, str):
            raise TypeError(f"media_type must be a str or None, not {type(media_type).__name__}")
        record = {
            "digest": str(d),
            "mediaType": media_type,
            "updated": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        body = (json.dumps(record, indent=2) + "\n").encode()
        self.private_dir()
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, body, mode=0o644)

    def get_ref(self, registry: str, repository: str, tag: str) -> RefRecord | None:
        """The recorded ref, or ``None`` when there is none or its record is corrupt."""
        path = self._ref_path(registry, repository, tag)
        try:
            fd = os.open(path, _OPEN_READ)
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP, errno.EISDIR):
                return None
            raise
        try:
            raw = os.read(fd, MAX_REF_SIZE + 1)
        except IsADirectoryError:
            return None
        finally:
            os.close(fd)
        if len(raw) > MAX_REF_SIZE:
            return None
        try:
            record = json.loads(raw)
        except (UnicodeDecodeError, ValueError):
            return None
        if not isinstance(record, dict):
            return None
        digest, media_type, updated = (
            record.get("digest"), record.get("mediaType"), record.get("updated")
        )
        if not isinstance(digest, str) or not isinstance(updated, str):
            return None
        if media_type is not None and not isinstance(media_type, str):
            return None
        try:
            d = Digest.parse(digest)
        except InvalidDigest:
            return None
        return RefRecord(digest=d, media_type=media_type, updated=updated)

    def ingest_lock(self, digest: str) -> filelock.BaseFileLock:
        """The per-digest ingest lock (``root/locks/<alg>-<hex>.lock``) that writers hold.

        For cache maintenance (:mod:`tank.store.maintenance`): whoever removes a blob or an ingest
        file takes this lock first, and leaves alone what someone else holds. The lock file
        itself is never removed (another process may be waiting on it).
        """
        return self._lock(Digest.parse(digest))
