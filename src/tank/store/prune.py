"""Removing what the cache no longer needs: :func:`prune` (``tank cache prune``) and
:func:`fix` (``tank cache verify --fix``). See :mod:`tank.store.maintenance` for what counts as
used and why this is safe against pulls running at the same time."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import filelock

from tank._fs import fsync_dir, temp_name
from tank.digest import Digest
from tank.errors import InvalidDigest, StorageError
from tank.store._scan import Ref, held_locks, iter_ingest, iter_refs, iter_scratch, regular
from tank.store._walk import _in_flight, _Walker
from tank.store.content import CorruptBlob, RefRecord, Store
from tank.store.rootfs import RootfsTree, iter_trees, tree_size, try_build_lock

#: what :func:`prune` keeps however unused: anything changed less than this many seconds ago
PRUNE_GRACE: Final = 10 * 60.0

_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> float:
    """``"7d"``, ``"12h"``, ``"1h30m"``, ``"45s"``, ``"2w"``, ``"0"`` → seconds.

    :raises ValueError: anything else.
    """
    spec = text.strip().lower()
    if spec == "0":
        return 0.0
    pos, total = 0, 0.0
    for match in _DURATION.finditer(spec):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if not spec or pos != len(spec):
        raise ValueError(
            f"invalid duration {text!r}: a number and a unit (s, m, h, d, w), e.g. 7d, 12h, 1h30m"
        )
    return total


@dataclass
class PruneResult:
    """What :func:`prune` removed (or, with ``dry_run``, would remove) and what it kept.

    :ivar images: references whose records were forgotten.
    :ivar blobs: blobs removed, with their sizes.
    :ivar ingest: partial downloads removed, with their sizes.
    :ivar rootfs: root filesystems removed, with their sizes.
    :ivar scratch: leftovers of writers that stopped (temporary files, archive spools), by path
        relative to the cache, with their sizes.
    :ivar in_use: unused blobs, partial downloads and root filesystems kept because a running
        pull holds them (or an image it is pulling needs them).
    :ivar recent: ones kept because they changed within the window.
    """

    images: list[str] = field(default_factory=list)
    blobs: list[tuple[Digest, int]] = field(default_factory=list)
    ingest: list[tuple[Digest, int]] = field(default_factory=list)
    rootfs: list[tuple[Digest, int]] = field(default_factory=list)
    scratch: list[tuple[str, int]] = field(default_factory=list)
    in_use: list[str] = field(default_factory=list)
    recent: list[str] = field(default_factory=list)
    window: float = PRUNE_GRACE
    dry_run: bool = False

    @property
    def freed(self) -> int:
        """Bytes removed."""
        return sum(size for part in (self.blobs, self.ingest, self.rootfs) for _, size in part) + (
            sum(size for _, size in self.scratch))

    def to_json(self) -> dict[str, Any]:
        """The ``tank cache prune --json`` document."""
        return {
            "dryRun": self.dry_run,
            "images": list(self.images),
            "blobs": [{"digest": str(d), "size": s} for d, s in self.blobs],
            "ingest": [{"digest": str(d), "size": s} for d, s in self.ingest],
            "rootfs": [{"digest": str(d), "size": s} for d, s in self.rootfs],
            "scratch": [{"path": p, "size": s} for p, s in self.scratch],
            "bytesFreed": self.freed,
            "keptInUse": list(self.in_use),
            "keptRecent": list(self.recent),
            "windowSeconds": self.window,
        }


def _updated(record: RefRecord) -> float | None:
    try:
        return datetime.fromisoformat(record.updated).timestamp()
    except ValueError:
        return None


def _forget(ref: Ref) -> bool:
    """Remove a ref record, unless a pull rewrote it since it was read."""
    try:
        now = json.loads(ref.path.read_bytes())
    except (OSError, ValueError):
        return False
    if not isinstance(now, dict) or now.get("updated") != ref.record.updated or (
        now.get("digest") != ref.record.digest
    ):
        return False
    try:
        ref.path.unlink()
    except FileNotFoundError:
        return False
    return True


def _remove_under_lock(
    store: Store, digest: Digest, path: Path, cutoff: float, *, dry_run: bool
) -> tuple[str, int]:
    """Remove ``path`` (a blob or an ingest file of ``digest``) under its ingest lock.

    Returns ``("removed", size)``, or ``("in-use", 0)`` when the lock is held, or
    ``("recent", 0)`` when the file changed after ``cutoff`` (checked again under the lock), or
    ``("gone", 0)``.
    """
    lock = store.ingest_lock(digest)
    try:
        lock.acquire(timeout=0)
    except filelock.Timeout:
        return "in-use", 0
    try:
        st = regular(path)
        if st is None:
            return "gone", 0
        if st.st_mtime > cutoff:
            return "recent", 0
        if not dry_run:
            try:
                path.unlink()
            except FileNotFoundError:
                return "gone", 0
        return "removed", st.st_size
    finally:
        lock.release()


def _remove_tree(path: Path) -> None:
    """Move a directory aside (atomically), then delete it: it is never seen half-removed."""
    aside = temp_name(path, prefix=".tank-prune-")
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return

    def writable(func: Any, name: str, _exc: Any) -> None:  # read-only dirs in a root fs
        parent = os.path.dirname(name)
        with contextlib.suppress(OSError):
            os.chmod(parent, 0o700)
            if os.path.isdir(name) and not os.path.islink(name):
                os.chmod(name, 0o700)
        with contextlib.suppress(OSError):
            func(name)

    shutil.rmtree(aside, onerror=writable)


def _remove_tree_under_lock(
    store: Store, tree: RootfsTree, cutoff: float, *, dry_run: bool
) -> tuple[str, int]:
    """Remove a root filesystem (or a stale build) under the lock :mod:`tank.unpack` builds it
    under; outcomes as for :func:`_remove_under_lock`."""
    lock = try_build_lock(store, tree.digest, rootless=tree.rootless)
    if lock is None:
        return "in-use", 0
    try:
        try:
            st = tree.path.lstat()
        except OSError:
            return "gone", 0
        # a tree's own mtime comes from the image; its ctime says when it was built
        if max(st.st_mtime, st.st_ctime) > cutoff:
            return "recent", 0
        size = tree_size(tree.path)
        if not dry_run:
            _remove_tree(tree.path)
        return "removed", size
    finally:
        lock.release()


def prune(
    store: Store | str | os.PathLike[str] | None = None,
    *,
    all_images: bool = False,
    older_than: float | None = None,
    grace: float = PRUNE_GRACE,
    dry_run: bool = False,
) -> PruneResult:
    """Remove what no recorded image uses: blobs, stale partial downloads, root filesystems,
    and what writers that stopped left behind (temporary files, a copy's archive spools).

    :param all_images: also forget every recorded image first, so that all of it goes.
    :param older_than: seconds; also forget the images last pulled longer ago than this, and
        keep only what changed within this window (instead of ``grace``).
    :param grace: seconds; what changed more recently is kept however unused (a pull that is
        running may need it before it records its image). Ignored when ``older_than`` is given.
    :param dry_run: change nothing; report what would be removed.

    Safe against concurrent pulls (see the module docstring): nothing whose ingest lock is held,
    no image a running pull is downloading, nothing changed within the window.
    """
    store = store if isinstance(store, Store) else Store(store)
    if older_than is not None and older_than < 0:
        raise ValueError("older_than must be >= 0")
    window = older_than if older_than is not None else grace
    now = time.time()
    cutoff = now - window
    result = PruneResult(window=window, dry_run=dry_run)
    walker = _Walker(store)
    # locks first: a pull that holds none now has recorded its image before refs are read
    protected = _in_flight(store, walker, held_locks(store))

    used: set[Digest] = set()
    for ref in iter_refs(store):
        stamp = _updated(ref.record)
        stale = older_than is not None and (stamp is None or stamp < now - older_than)
        if (all_images or stale) and (dry_run or _forget(ref)):
            result.images.append(ref.reference)
            continue
        used |= walker.tree(ref.record.digest)

    touched: set[Path] = set()
    for d, path in list(store.iter_blobs()):
        if d in used:
            continue
        if d in protected:
            result.in_use.append(str(d))
            continue
        outcome, size = _remove_under_lock(store, d, path, cutoff, dry_run=dry_run)
        if outcome == "removed":
            result.blobs.append((d, size))
            touched.add(path.parent)
        elif outcome == "in-use":
            result.in_use.append(str(d))
        elif outcome == "recent":
            result.recent.append(str(d))
    for d, path, _ in list(iter_ingest(store)):
        outcome, size = _remove_under_lock(store, d, path, cutoff, dry_run=dry_run)
        if outcome == "removed":
            result.ingest.append((d, size))
            touched.add(path.parent)
        elif outcome == "in-use":
            result.in_use.append(f"ingest {d}")
        elif outcome == "recent":
            result.recent.append(f"ingest {d}")
    for tree in list(iter_trees(store)):
        d, label = tree.digest, f"rootfs {tree.digest}"
        if not tree.building and d in used:
            continue
        if not tree.building and d in protected:
            result.in_use.append(label)
            continue
        outcome, size = _remove_tree_under_lock(store, tree, cutoff, dry_run=dry_run)
        if outcome == "removed":
            result.rootfs.append((d, size))
        elif outcome == "in-use":
            result.in_use.append(label)
        elif outcome == "recent":
            result.recent.append(label)
    for path, st in list(iter_scratch(store)):
        if st.st_mtime >= cutoff:
            result.recent.append(f"scratch {path.relative_to(store.root)}")
            continue
        if not dry_run:
            try:
                path.unlink()
            except FileNotFoundError:
                continue
            touched.add(path.parent)
        result.scratch.append((str(path.relative_to(store.root)), st.st_size))
    for folder in touched:
        # best effort, as ever: what was removed is unused, and a removal lost in a crash is
        # found again by the next prune
        with contextlib.suppress(StorageError):
            fsync_dir(folder)
    return result


# -- verify --fix --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fixed:
    """One problem :func:`fix` dealt with: the problem, and whether its file was removed."""

    problem: CorruptBlob
    removed: bool
    note: str = ""


def fix(store: Store | str | os.PathLike[str] | None = None) -> list[Fixed]:
    """Verify every blob (:meth:`Store.verify`) and remove each corrupt one; the next pull
    fetches it again.

    A blob is removed under its ingest lock, after hashing it once more there (so a blob that a
    pull has just replaced with good bytes stays); one whose lock is held is left (a pull is
    replacing it). Entries that are not blobs at all (bad names, directories, links) are removed
    too.
    """
    store = store if isinstance(store, Store) else Store(store)
    out: list[Fixed] = []
    for problem in store.verify():
        out.append(_fix_one(store, problem))
    return out


def _removed(problem: CorruptBlob) -> Fixed:
    """Remove what ``problem`` names (a tree when it is a real directory); what happened."""
    path = problem.path
    try:
        if path.is_dir() and not path.is_symlink():
            _remove_tree(path)
        else:
            path.unlink()
    except FileNotFoundError:
        pass
    except OSError as exc:
        return Fixed(problem, False, f"cannot remove: {exc.strerror or exc}")
    return Fixed(problem, True)


def _fix_one(store: Store, problem: CorruptBlob) -> Fixed:
    path = problem.path
    try:
        d = Digest.parse(problem.digest)
    except InvalidDigest:
        d = None
    if d is None or regular(path) is None:  # not a blob at all: a bad name, a directory, a link
        return _removed(problem)
    lock = store.ingest_lock(d)
    try:
        lock.acquire(timeout=0)
    except filelock.Timeout:
        return Fixed(problem, False, "a pull is writing this blob now")
    try:
        if path.exists() and _hash_ok(path, d):
            return Fixed(problem, False, "it verifies now (replaced meanwhile)")
        fixed = _removed(problem)
        # best effort: a corrupt blob whose removal a crash loses is found again by the next fix
        with contextlib.suppress(StorageError):
            fsync_dir(path.parent)
        return fixed
    finally:
        lock.release()


def _hash_ok(path: Path, digest: Digest) -> bool:
    hasher = digest.hasher()
    try:
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                hasher.update(chunk)
    except OSError:
        return False
    return hasher.digest() == digest


__all__ = [
    "PRUNE_GRACE",
    "Fixed",
    "PruneResult",
    "fix",
    "parse_duration",
    "prune",
]
