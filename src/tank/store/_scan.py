"""Reading the cache's state without changing it, for maintenance (:mod:`tank.store.maintenance`):
the recorded refs, the partial downloads, and the locks held right now."""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import filelock

from tank._fs import TMP_PREFIX
from tank.digest import Digest
from tank.errors import InvalidDigest, InvalidReference
from tank.reference import DOCKER_HUB, DOCKER_HUB_API
from tank.store import rootfs
from tank.store.content import RefRecord, Store


def display(registry: str, repository: str, tag: str) -> str:
    """``registry/repository:tag`` as a user spells it (Docker Hub as ``docker.io``)."""
    domain = DOCKER_HUB if registry == DOCKER_HUB_API else registry
    return f"{domain}/{repository}:{tag}"


@dataclass(frozen=True)
class Ref:
    """A ref record as found under ``refs/``, with the file it was read from."""

    registry: str
    repository: str
    tag: str
    record: RefRecord
    path: Path

    @property
    def reference(self) -> str:
        """The reference, as :func:`display` spells it."""
        return display(self.registry, self.repository, self.tag)


def iter_refs(store: Store) -> Iterator[Ref]:
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
            yield Ref(registry, repository, tag, record, path)


def regular(path: Path) -> os.stat_result | None:
    """``lstat`` of ``path`` when it is a regular file, else ``None`` (errors included)."""
    try:
        st = path.lstat()
    except OSError:
        return None
    return st if stat.S_ISREG(st.st_mode) else None


def iter_ingest(store: Store) -> Iterator[tuple[Digest, Path, os.stat_result]]:
    """Ingest files (``ingest/<alg>-<hex>.part``) with their ``lstat``."""
    for d, path in store.iter_ingest():
        st = regular(path)
        if st is not None:
            yield d, path, st


def held(store: Store, digest: str) -> bool:
    """Whether someone holds ``digest``'s ingest lock right now (tested without waiting)."""
    lock = store.ingest_lock(digest)
    try:
        lock.acquire(timeout=0)
    except filelock.Timeout:
        return True
    lock.release()
    return False


def held_locks(store: Store) -> set[Digest]:
    """Every digest whose lock is held now: blobs running pulls are writing (ingest locks), and
    images whose root filesystem is being built (:func:`tank.store.rootfs.lock_name`), which
    reads the image's layers from the cache."""
    out: set[Digest] = set()
    try:
        names = sorted(os.listdir(store.root / "locks"))
    except OSError:
        return out
    for name in names:
        tree = rootfs.parse_lock_name(name)
        if tree is not None:
            digest, rootless = tree
            lock = rootfs.try_build_lock(store, digest, rootless=rootless)
            if lock is None:
                out.add(digest)
            else:
                lock.release()
            continue
        stem, _, suffix = name.rpartition(".")
        if suffix != "lock" or stem.startswith(rootfs.LOCK_PREFIX):
            continue  # not a lock, or a tree's lock with a name that is not a digest
        algorithm, _, hex_part = stem.partition("-")
        try:
            d = Digest.parse(f"{algorithm}:{hex_part}")
        except InvalidDigest:
            continue
        if held(store, d):
            out.add(d)
    return out


#: what a crashed writer leaves: ``atomic_file``'s temporary names, and a copy's archive spools
#: (``ingest/archive-<pid>-<n>.gz``, see :mod:`tank._sources`)
_SPOOL = re.compile(r"(?:\.tank-tmp-)?archive-(\d+)-")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return pid > 0
    return True


def iter_scratch(store: Store) -> Iterator[tuple[Path, os.stat_result]]:
    """Leftovers of writers that stopped (see :data:`_SPOOL`) under ``ingest/``, ``blobs/``,
    ``refs/`` and ``locations/``, with their ``lstat``; an archive spool whose process still
    runs is left out. Symlinks are never followed."""
    for top in ("ingest", "blobs", "refs", "locations"):
        if (store.root / top).is_symlink():
            continue
        for folder, dirs, files in os.walk(store.root / top):
            dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(folder, d))]
            for name in files:
                spool = _SPOOL.match(name) if top == "ingest" else None
                if not (name.startswith(TMP_PREFIX) or spool):
                    continue
                if spool and _alive(int(spool.group(1))):
                    continue
                path = Path(folder, name)
                st = regular(path)
                if st is not None:
                    yield path, st

