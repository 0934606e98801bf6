"""Cache maintenance: what the cache holds (:func:`listing`, :func:`usage`), :func:`prune` and
:func:`fix` (the logic behind ``tank cache ls | du | prune`` and ``tank cache verify --fix``).

What counts as used: every image recorded under ``refs/`` (what a tag last resolved to), walked
from its manifest to the index's children and to each image's config and layers, as far as they
are in the cache. Everything else under ``blobs/`` is unused: manifests of tags that moved, images
pulled by digest (those are not recorded), the layers only they had.

Safe against a pull running at the same time, in three ways:

- Nothing whose per-digest ingest lock is held is removed: each blob and ingest file is removed
  under its lock, taken without waiting (a held lock means "in use": it is skipped).
- A pull that is downloading holds the lock of some blob; every cached manifest whose tree reaches
  such a blob is kept, with its whole tree (index, child manifests, config, layers), although the
  pull has not recorded its tag yet (it does so at its end).
- Anything written less than :data:`PRUNE_GRACE` ago is kept (``older_than`` changes the window):
  this covers a pull between two downloads, when it holds no lock.

Root filesystems are the trees under ``rootfs/``, each named by the digest of the image manifest
it was built from: ``rootfs/<alg>/<hex>`` and ``rootfs/rootless/<alg>/<hex>`` as
:mod:`tank.unpack` builds them (flat ``<alg>:<hex>`` and ``<alg>-<hex>`` names are read too). One
whose image is not recorded is unused. A tree is removed under the lock its builder takes
(``locks/rootfs-[rootless-]<alg>-<hex>.lock``), never while it is held; a build in progress also
keeps its image's blobs, which it reads. A crashed build (``.tmp-<hex>-…``) is a stale leftover.
Names that are not tank's are left alone. Lock files are never removed: another process may be
waiting on one.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import stat
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import filelock

from tank.digest import ALGORITHMS, Digest
from tank.errors import InvalidDigest, InvalidReference
from tank.platform import Platform, is_attestation
from tank.reference import DOCKER_HUB, DOCKER_HUB_API
from tank.store import CorruptBlob, RefRecord, Store

if TYPE_CHECKING:
    from collections.abc import Iterator

#: what :func:`prune` keeps however unused: anything changed less than this many seconds ago
PRUNE_GRACE: Final = 10 * 60.0
#: cached manifests larger than this are not walked (the registry client's own limit)
MAX_MANIFEST: Final = 4 * 1024 * 1024
#: how deep indexes may nest when walking (real ones are one level deep)
MAX_DEPTH: Final = 8

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


# -- reading the cache without changing it -----------------------------------------------------


def _display(registry: str, repository: str, tag: str) -> str:
    domain = DOCKER_HUB if registry == DOCKER_HUB_API else registry
    return f"{domain}/{repository}:{tag}"


@dataclass(frozen=True)
class _Ref:
    registry: str
    repository: str
    tag: str
    record: RefRecord
    path: Path

    @property
    def reference(self) -> str:
        return _display(self.registry, self.repository, self.tag)


def _iter_refs(store: Store) -> Iterator[_Ref]:
    """Every valid ref record, sorted by path; invalid names and corrupt records are skipped."""
    base = store.root / "refs"
    found: list[Path] = []
    for folder, dirs, files in os.walk(base):
        dirs.sort()
        found.extend(
            Path(folder, name) for name in sorted(files)
            if name.endswith(".json") and not name.startswith(".")
        )
    for path in found:
        parts = path.relative_to(base).parts
        if len(parts) < 3:
            continue
        registry, repository, tag = parts[0], "/".join(parts[1:-1]), parts[-1][: -len(".json")]
        try:
            record = store.get_ref(registry, repository, tag)
        except (InvalidReference, OSError):
            continue
        if record is not None:
            yield _Ref(registry, repository, tag, record, path)


def _regular(path: Path) -> os.stat_result | None:
    try:
        st = path.lstat()
    except OSError:
        return None
    return st if stat.S_ISREG(st.st_mode) else None


def _read_json_blob(store: Store, digest: str, cap: int = MAX_MANIFEST) -> dict[str, Any] | None:
    """A cached blob parsed as a JSON object, verified against its digest; else ``None``.

    Unlike :meth:`Store.read_blob` it never removes anything (a corrupt blob is simply not
    read): listing the cache does not change it.
    """
    try:
        d = Digest.parse(digest)
    except InvalidDigest:
        return None
    path = store.blob_path(d)
    st = _regular(path)
    if st is None or st.st_size > cap:
        return None
    try:
        with open(path, "rb") as f:
            data = f.read(cap + 1)
    except OSError:
        return None
    hasher = d.hasher()
    hasher.update(data)
    if hasher.digest() != d:
        return None
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError):
        return None
    return doc if isinstance(doc, dict) else None


def _digest_of(descriptor: Any) -> Digest | None:
    if not isinstance(descriptor, dict):
        return None
    try:
        return Digest.parse(descriptor.get("digest") or "")
    except InvalidDigest:
        return None


def _is_manifest(doc: dict[str, Any]) -> bool:
    return isinstance(doc.get("manifests"), list) or (
        isinstance(doc.get("config"), dict) and isinstance(doc.get("layers"), list)
    )


class _Walker:
    """Walks manifests in the cache, remembering each one's tree."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._docs: dict[str, dict[str, Any] | None] = {}

    def doc(self, digest: str) -> dict[str, Any] | None:
        if digest not in self._docs:
            self._docs[digest] = _read_json_blob(self.store, digest)
        return self._docs[digest]

    def tree(self, digest: Digest, depth: int = 0) -> set[Digest]:
        """``digest`` and everything it refers to, as far as the cached manifests tell."""
        out = {digest}
        doc = self.doc(digest)
        if doc is None or depth > MAX_DEPTH or not _is_manifest(doc):
            return out
        for entry in doc.get("manifests") or []:
            child = _digest_of(entry)
            if child is not None and child not in out:
                out |= self.tree(child, depth + 1)
        config = _digest_of(doc.get("config"))
        if config is not None:
            out.add(config)
        for layer in doc.get("layers") or []:
            d = _digest_of(layer)
            if d is not None:
                out.add(d)
        return out

    def platforms(self, digest: Digest) -> list[str]:
        """The platforms of the image(s) under ``digest`` whose every blob is cached."""
        doc = self.doc(digest)
        if doc is None:
            return []
        if isinstance(doc.get("manifests"), list):
            out = []
            for entry in doc["manifests"]:
                child = _digest_of(entry)
                spec = entry.get("platform") if isinstance(entry, dict) else None
                plat = Platform.from_json(spec)
                if child is None or plat is None or is_attestation(entry):
                    continue
                if self._complete(child):
                    out.append(str(plat))
            return out
        if not self._complete(digest):
            return []
        config = _digest_of(doc.get("config"))
        config_doc = _read_json_blob(self.store, config, 8 * MAX_MANIFEST) if config else None
        plat = Platform.from_json(config_doc)
        return [str(plat)] if plat is not None else []

    def _complete(self, digest: Digest) -> bool:
        if self.doc(digest) is None:
            return False
        return all(self.store.has_blob(d) for d in self.tree(digest))


def _size_of_tree(path: Path) -> int:
    """Bytes of the regular files under ``path`` (hard links counted once); never follows links."""
    total = 0
    seen: set[tuple[int, int]] = set()
    stack = [path]
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except OSError:
            continue
        for entry in entries:
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISDIR(st.st_mode):
                stack.append(Path(entry.path))
            elif stat.S_ISREG(st.st_mode) and (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_size
    return total


_ROOTFS_NAME = re.compile(r"(sha256|sha512)[:_-]([0-9a-f]+)")
#: how :mod:`tank.unpack` names a tree being built: ``rootfs/<alg>/.tmp-<hex>-<random>``
ROOTFS_TMP_PREFIX: Final = ".tmp-"


@dataclass(frozen=True)
class _Tree:
    digest: Digest
    path: Path
    rootless: bool
    building: bool

    @property
    def lock_name(self) -> str:
        """The lock :mod:`tank.unpack` holds while building this image's tree."""
        tag = "rootless-" if self.rootless else ""
        return f"rootfs-{tag}{self.digest.algorithm}-{self.digest.hex}.lock"


def _scan(path: Path) -> list[os.DirEntry[str]]:
    try:
        return sorted(
            (e for e in os.scandir(path) if e.is_dir(follow_symlinks=False)),
            key=lambda e: e.name,
        )
    except OSError:
        return []


def _iter_rootfs(store: Store) -> Iterator[_Tree]:
    """The trees under ``rootfs/``: ``<alg>/<hex>`` (and ``rootless/<alg>/<hex>``) as
    :mod:`tank.unpack` names them, their ``.tmp-<hex>-…`` builds, and flat ``<alg>:<hex>`` or
    ``<alg>-<hex>`` names. Anything else is not tank's and is left out."""
    base = store.root / "rootfs"
    for top, rootless in ((base, False), (base / "rootless", True)):
        for entry in _scan(top):
            if entry.name in ALGORITHMS:
                for sub in _scan(Path(entry.path)):
                    name, building = sub.name, sub.name.startswith(ROOTFS_TMP_PREFIX)
                    if building:
                        name = name[len(ROOTFS_TMP_PREFIX):].partition("-")[0]
                    with contextlib.suppress(InvalidDigest):
                        d = Digest.parse(f"{entry.name}:{name}")
                        yield _Tree(d, Path(sub.path), rootless, building)
                continue
            match = _ROOTFS_NAME.fullmatch(entry.name)
            if match is not None:
                with contextlib.suppress(InvalidDigest):
                    d = Digest.parse(f"{match.group(1)}:{match.group(2)}")
                    yield _Tree(d, Path(entry.path), rootless, False)


def _iter_ingest(store: Store) -> Iterator[tuple[Digest, Path, os.stat_result]]:
    """Ingest files (``ingest/<alg>-<hex>.part``) with their ``lstat``."""
    for d, path in store.iter_ingest():
        st = _regular(path)
        if st is not None:
            yield d, path, st


def _held(store: Store, digest: str) -> bool:
    """Whether someone holds ``digest``'s ingest lock right now (tested without waiting)."""
    lock = store.ingest_lock(digest)
    try:
        lock.acquire(timeout=0)
    except filelock.Timeout:
        return True
    lock.release()
    return False


def _try_lock(store: Store, name: str) -> filelock.BaseFileLock | None:
    """The lock ``root/locks/<name>``, acquired without waiting; ``None`` when someone holds it."""
    locks = store.root / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    lock = filelock.FileLock(locks / name)
    try:
        lock.acquire(timeout=0)
    except filelock.Timeout:
        return None
    return lock


def _held_locks(store: Store) -> set[Digest]:
    """Every digest whose lock is held now: blobs running pulls are writing (ingest locks), and
    images whose root filesystem is being built (``rootfs-[rootless-]<alg>-<hex>.lock``), which
    reads the image's layers from the cache."""
    out: set[Digest] = set()
    try:
        names = sorted(os.listdir(store.root / "locks"))
    except OSError:
        return out
    for name in names:
        stem, _, suffix = name.rpartition(".")
        if suffix != "lock":
            continue
        tree = stem.startswith("rootfs-")
        stem = stem.removeprefix("rootfs-").removeprefix("rootless-") if tree else stem
        algorithm, _, hex_part = stem.partition("-")
        try:
            d = Digest.parse(f"{algorithm}:{hex_part}")
        except InvalidDigest:
            continue
        if tree:
            lock = _try_lock(store, name)
            if lock is None:
                out.add(d)
            else:
                lock.release()
        elif _held(store, d):
            out.add(d)
    return out


def _cached_manifests(store: Store) -> Iterator[Digest]:
    """Every cached blob that is a manifest (small, JSON, with ``manifests`` or ``config``)."""
    for d, path in store.iter_blobs():
        st = _regular(path)
        if st is None or st.st_size > MAX_MANIFEST or st.st_size < 2:
            continue
        try:
            with open(path, "rb") as f:
                first = f.read(1)
        except OSError:
            continue
        if first == b"{":
            yield d


def _in_flight(store: Store, walker: _Walker, held: set[Digest]) -> set[Digest]:
    """``held``, plus the whole tree of every cached manifest whose tree reaches into it."""
    if not held:
        return set()
    out = set(held)
    for d in _cached_manifests(store):
        doc = walker.doc(d)
        if doc is None or not _is_manifest(doc):
            continue
        tree = walker.tree(d)
        if tree & held:
            out |= tree
    return out


# -- ls and du -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CachedImage:
    """An image recorded in the cache: a tag and the manifest it last resolved to.

    :ivar reference: ``registry/repository:tag`` (Docker Hub spelled ``docker.io``).
    :ivar cached: whether the manifest itself is in the cache.
    :ivar size: bytes of the image's blobs that are in the cache (manifests, configs, layers).
    :ivar platforms: the platforms whose image is wholly in the cache.
    :ivar updated: when the tag was last resolved (RFC 3339, UTC).
    """

    reference: str
    digest: Digest
    media_type: str | None
    updated: str
    cached: bool
    size: int
    platforms: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        """As ``tank cache ls --json`` prints it."""
        return {
            "reference": self.reference,
            "digest": str(self.digest),
            "mediaType": self.media_type,
            "updated": self.updated,
            "cached": self.cached,
            "size": self.size,
            "platforms": list(self.platforms),
        }


@dataclass(frozen=True)
class CachedBlob:
    """A committed blob, its size and whether a recorded image uses it."""

    digest: Digest
    size: int
    used: bool

    def to_json(self) -> dict[str, Any]:
        """As ``tank cache ls --json`` prints it."""
        return {"digest": str(self.digest), "size": self.size, "used": self.used}


@dataclass(frozen=True)
class RootfsEntry:
    """An assembled root filesystem under ``rootfs/``, named by its image manifest's digest.

    :ivar used: whether a recorded image has that manifest.
    :ivar rootless: built rootless (``rootfs/rootless/…``).
    :ivar building: a build in progress, or one that crashed (``.tmp-<hex>-…``).
    """

    digest: Digest
    path: Path
    size: int
    used: bool
    rootless: bool = False
    building: bool = False

    def to_json(self) -> dict[str, Any]:
        """As ``tank cache ls --json`` prints it."""
        return {
            "digest": str(self.digest), "path": str(self.path), "size": self.size,
            "used": self.used, "rootless": self.rootless, "building": self.building,
        }


@dataclass(frozen=True)
class IngestEntry:
    """A partial download under ``ingest/``; ``active`` when a pull is writing it now."""

    digest: Digest
    path: Path
    size: int
    active: bool

    def to_json(self) -> dict[str, Any]:
        """As ``tank cache ls --json`` prints it."""
        return {
            "digest": str(self.digest), "path": str(self.path), "size": self.size,
            "active": self.active,
        }


@dataclass(frozen=True)
class CacheListing:
    """Everything the cache holds (:func:`listing`)."""

    root: Path
    images: tuple[CachedImage, ...]
    blobs: tuple[CachedBlob, ...]
    rootfs: tuple[RootfsEntry, ...]
    ingest: tuple[IngestEntry, ...]

    def to_json(self) -> dict[str, Any]:
        """The ``tank cache ls --json`` document."""
        return {
            "cache": str(self.root),
            "images": [i.to_json() for i in self.images],
            "blobs": [b.to_json() for b in self.blobs],
            "rootfs": [r.to_json() for r in self.rootfs],
            "ingest": [i.to_json() for i in self.ingest],
        }


def listing(store: Store | str | os.PathLike[str] | None = None) -> CacheListing:
    """What the cache holds: recorded images, blobs (used or not), root filesystems, downloads.

    Reads only; a corrupt manifest is not followed (``tank cache verify`` names it).
    """
    store = store if isinstance(store, Store) else Store(store)
    walker = _Walker(store)
    images: list[CachedImage] = []
    used: set[Digest] = set()
    sizes = {d: st.st_size for d, p in store.iter_blobs() if (st := _regular(p)) is not None}
    for ref in _iter_refs(store):
        tree = walker.tree(ref.record.digest)
        used |= tree
        images.append(
            CachedImage(
                reference=ref.reference,
                digest=ref.record.digest,
                media_type=ref.record.media_type,
                updated=ref.record.updated,
                cached=ref.record.digest in sizes,
                size=sum(sizes.get(d, 0) for d in tree),
                platforms=tuple(walker.platforms(ref.record.digest)),
            )
        )
    return CacheListing(
        root=store.root,
        images=tuple(images),
        blobs=tuple(CachedBlob(d, size, d in used) for d, size in sizes.items()),
        rootfs=tuple(
            RootfsEntry(
                t.digest, t.path, _size_of_tree(t.path), t.digest in used and not t.building,
                t.rootless, t.building,
            )
            for t in _iter_rootfs(store)
        ),
        ingest=tuple(
            IngestEntry(d, path, st.st_size, _held(store, d))
            for d, path, st in _iter_ingest(store)
        ),
    )


@dataclass(frozen=True)
class CacheUsage:
    """Disk use by kind (:func:`usage`): counts and bytes."""

    root: Path
    images: int
    blobs: tuple[int, int]
    used: tuple[int, int]
    unused: tuple[int, int]
    ingest: tuple[int, int]
    rootfs: tuple[int, int]

    @property
    def total(self) -> int:
        """Bytes of blobs, partial downloads and root filesystems together."""
        return self.blobs[1] + self.ingest[1] + self.rootfs[1]

    def to_json(self) -> dict[str, Any]:
        """The ``tank cache du --json`` document."""

        def pair(value: tuple[int, int]) -> dict[str, int]:
            return {"count": value[0], "size": value[1]}

        return {
            "cache": str(self.root),
            "images": self.images,
            "blobs": pair(self.blobs),
            "used": pair(self.used),
            "unused": pair(self.unused),
            "ingest": pair(self.ingest),
            "rootfs": pair(self.rootfs),
            "total": self.total,
        }


def usage(store: Store | str | os.PathLike[str] | None = None) -> CacheUsage:
    """How much of the disk the cache takes, by kind (see :class:`CacheUsage`)."""
    found = listing(store)

    def tally(sizes: list[int]) -> tuple[int, int]:
        return len(sizes), sum(sizes)

    return CacheUsage(
        root=found.root,
        images=len(found.images),
        blobs=tally([b.size for b in found.blobs]),
        used=tally([b.size for b in found.blobs if b.used]),
        unused=tally([b.size for b in found.blobs if not b.used]),
        ingest=tally([i.size for i in found.ingest]),
        rootfs=tally([r.size for r in found.rootfs]),
    )


# -- prune ---------------------------------------------------------------------------------------


@dataclass
class PruneResult:
    """What :func:`prune` removed (or, with ``dry_run``, would remove) and what it kept.

    :ivar images: references whose records were forgotten.
    :ivar blobs: blobs removed, with their sizes.
    :ivar ingest: partial downloads removed, with their sizes.
    :ivar rootfs: root filesystems removed, with their sizes.
    :ivar in_use: unused blobs, partial downloads and root filesystems kept because a running
        pull holds them (or an image it is pulling needs them).
    :ivar recent: ones kept because they changed within the window.
    """

    images: list[str] = field(default_factory=list)
    blobs: list[tuple[Digest, int]] = field(default_factory=list)
    ingest: list[tuple[Digest, int]] = field(default_factory=list)
    rootfs: list[tuple[Digest, int]] = field(default_factory=list)
    in_use: list[str] = field(default_factory=list)
    recent: list[str] = field(default_factory=list)
    window: float = PRUNE_GRACE
    dry_run: bool = False

    @property
    def freed(self) -> int:
        """Bytes removed."""
        return sum(size for part in (self.blobs, self.ingest, self.rootfs) for _, size in part)

    def to_json(self) -> dict[str, Any]:
        """The ``tank cache prune --json`` document."""
        return {
            "dryRun": self.dry_run,
            "images": list(self.images),
            "blobs": [{"digest": str(d), "size": s} for d, s in self.blobs],
            "ingest": [{"digest": str(d), "size": s} for d, s in self.ingest],
            "rootfs": [{"digest": str(d), "size": s} for d, s in self.rootfs],
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


def _forget(ref: _Ref) -> bool:
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
        st = _regular(path)
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


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _remove_tree(path: Path) -> None:
    """Move a directory aside (atomically), then delete it: it is never seen half-removed."""
    aside = path.parent / f".tank-prune-{secrets.token_hex(6)}"
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
    store: Store, tree: _Tree, cutoff: float, *, dry_run: bool
) -> tuple[str, int]:
    """Remove a root filesystem (or a stale build) under the lock :mod:`tank.unpack` builds it
    under; outcomes as for :func:`_remove_under_lock`."""
    lock = _try_lock(store, tree.lock_name)
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
        size = _size_of_tree(tree.path)
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
    """Remove what no recorded image uses: blobs, stale partial downloads, root filesystems.

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
    protected = _in_flight(store, walker, _held_locks(store))

    used: set[Digest] = set()
    for ref in _iter_refs(store):
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
    for d, path, _ in list(_iter_ingest(store)):
        outcome, size = _remove_under_lock(store, d, path, cutoff, dry_run=dry_run)
        if outcome == "removed":
            result.ingest.append((d, size))
            touched.add(path.parent)
        elif outcome == "in-use":
            result.in_use.append(f"ingest {d}")
        elif outcome == "recent":
            result.recent.append(f"ingest {d}")
    for tree in list(_iter_rootfs(store)):
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
    for folder in touched:
        _fsync_dir(folder)
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


def _fix_one(store: Store, problem: CorruptBlob) -> Fixed:
    path = problem.path
    try:
        d = Digest.parse(problem.digest)
    except InvalidDigest:
        d = None
    st = _regular(path)
    if d is None or st is None:  # not a blob at all: a bad name, a directory, a link
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
    lock = store.ingest_lock(d)
    try:
        lock.acquire(timeout=0)
    except filelock.Timeout:
        return Fixed(problem, False, "a pull is writing this blob now")
    try:
        if path.exists() and _hash_ok(path, d):
            return Fixed(problem, False, "it verifies now (replaced meanwhile)")
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            return Fixed(problem, False, f"cannot remove: {exc.strerror or exc}")
        _fsync_dir(path.parent)
        return Fixed(problem, True)
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
    "CacheListing",
    "CacheUsage",
    "CachedBlob",
    "CachedImage",
    "Fixed",
    "IngestEntry",
    "PruneResult",
    "RootfsEntry",
    "fix",
    "listing",
    "parse_duration",
    "prune",
    "usage",
]
