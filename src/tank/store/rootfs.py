"""The cache's root filesystems: their names, their builds in progress, and their locks.

This module is the only place that knows these names; the builder
(:mod:`tank.outputs.rootfs`) and cache maintenance (:mod:`tank.store.maintenance`) both use it.
Under the cache root::

    rootfs/<alg>/<hex>                       the tree of the image whose manifest is <alg>:<hex>
    rootfs/rootless/<alg>/<hex>              the same, built rootless (ownership and device
                                             nodes differ)
    rootfs/[rootless/]<alg>/.tmp-<hex>-<random>
                                             a build in progress, or one that crashed
    locks/rootfs-[rootless-]<alg>-<hex>.lock held by whoever builds or removes that tree

Flat names directly under ``rootfs/`` (and ``rootfs/rootless/``), ``<alg>:<hex>`` or
``<alg>-<hex>``, are read too (:func:`iter_trees`); anything else there is not tank's.

Invariants:

- A tree at its final name is complete: it is built under its lock in a temporary sibling
  (:func:`build_path`) and renamed into place once every layer verified. Whoever holds the lock
  may remove the leftovers of a crashed build (:func:`stale_builds`): nobody else is building.
- A tree is removed only under its lock (:func:`try_build_lock`), so never while it is built.
- Lock files are never removed: another process may be waiting on one.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import filelock

from tank.digest import ALGORITHMS, Digest
from tank.errors import InvalidDigest
from tank.store.content import Store

#: the directory of the trees, under the cache root
ROOTFS_DIR: Final = "rootfs"
#: the subdirectory of ``rootfs/`` for trees built rootless
ROOTLESS_DIR: Final = "rootless"
#: how a tree being built is named: ``rootfs/<alg>/.tmp-<hex>-<random>``
BUILD_PREFIX: Final = ".tmp-"
#: the prefix of a tree's lock: ``locks/rootfs-[rootless-]<alg>-<hex>.lock``
LOCK_PREFIX: Final = "rootfs-"

_FLAT_NAME: Final = re.compile(r"(sha256|sha512)[:_-]([0-9a-f]+)")


def tree_path(store: Store, digest: Digest, *, rootless: bool) -> Path:
    """Where the cache keeps the tree of the image whose manifest is ``digest``."""
    base = store.root / ROOTFS_DIR
    if rootless:
        base = base / ROOTLESS_DIR
    return base / digest.algorithm / digest.hex


def lock_name(digest: Digest, *, rootless: bool) -> str:
    """The name (in ``locks/``) of the lock guarding the tree of ``digest``."""
    tag = f"{ROOTLESS_DIR}-" if rootless else ""
    return f"{LOCK_PREFIX}{tag}{digest.algorithm}-{digest.hex}.lock"


def parse_lock_name(name: str) -> tuple[Digest, bool] | None:
    """The digest and rootless flag a tree's lock file ``name`` is for; ``None`` when ``name``
    is not one (ingest locks are named ``<alg>-<hex>.lock``, see :class:`Store`)."""
    stem, _, suffix = name.rpartition(".")
    if suffix != "lock" or not stem.startswith(LOCK_PREFIX):
        return None
    stem = stem.removeprefix(LOCK_PREFIX)
    rootless = stem.startswith(f"{ROOTLESS_DIR}-")
    algorithm, _, hex_part = stem.removeprefix(f"{ROOTLESS_DIR}-").partition("-")
    try:
        return Digest.parse(f"{algorithm}:{hex_part}"), rootless
    except InvalidDigest:
        return None


def build_lock(store: Store, digest: Digest, *, rootless: bool) -> filelock.BaseFileLock:
    """The lock guarding the tree of ``digest`` (not yet acquired); ``locks/`` is created."""
    locks = store.private_dir("locks")
    return filelock.FileLock(locks / lock_name(digest, rootless=rootless))


def try_build_lock(
    store: Store, digest: Digest, *, rootless: bool
) -> filelock.BaseFileLock | None:
    """The lock guarding the tree of ``digest``, acquired without waiting (release it); ``None``
    when someone holds it: a build is under way."""
    lock = build_lock(store, digest, rootless=rootless)
    try:
        lock.acquire(timeout=0)
    except filelock.Timeout:
        return None
    return lock


def build_path(final: Path) -> Path:
    """A fresh temporary sibling of the tree ``final`` to build it in (hold its lock)."""
    return final.parent / f"{BUILD_PREFIX}{final.name}-{secrets.token_hex(4)}"


def stale_builds(final: Path) -> list[Path]:
    """The temporary siblings that builds of ``final`` left; under the lock, crashed ones."""
    return list(final.parent.glob(f"{BUILD_PREFIX}{final.name}-*"))


@dataclass(frozen=True)
class RootfsTree:
    """A tree found under ``rootfs/`` (:func:`iter_trees`).

    :ivar digest: the image manifest's digest the tree was (or is being) built from.
    :ivar rootless: under ``rootfs/rootless/``.
    :ivar building: a build in progress or a crashed one (``.tmp-<hex>-…``).
    """

    digest: Digest
    path: Path
    rootless: bool
    building: bool

    @property
    def lock_name(self) -> str:
        """The lock the builder holds while building this tree."""
        return lock_name(self.digest, rootless=self.rootless)


def _subdirs(path: Path) -> list[os.DirEntry[str]]:
    try:
        return sorted(
            (e for e in os.scandir(path) if e.is_dir(follow_symlinks=False)),
            key=lambda e: e.name,
        )
    except OSError:
        return []


def iter_trees(store: Store) -> Iterator[RootfsTree]:
    """The trees under ``rootfs/``: ``<alg>/<hex>`` (and ``rootless/<alg>/<hex>``), their
    ``.tmp-<hex>-…`` builds, and flat ``<alg>:<hex>`` or ``<alg>-<hex>`` names. Anything else is
    not tank's and is left out."""
    base = store.root / ROOTFS_DIR
    for top, rootless in ((base, False), (base / ROOTLESS_DIR, True)):
        for entry in _subdirs(top):
            if entry.name in ALGORITHMS:
                for sub in _subdirs(Path(entry.path)):
                    name, building = sub.name, sub.name.startswith(BUILD_PREFIX)
                    if building:
                        name = name[len(BUILD_PREFIX) :].partition("-")[0]
                    with contextlib.suppress(InvalidDigest):
                        d = Digest.parse(f"{entry.name}:{name}")
                        yield RootfsTree(d, Path(sub.path), rootless, building)
                continue
            match = _FLAT_NAME.fullmatch(entry.name)
            if match is not None:
                with contextlib.suppress(InvalidDigest):
                    d = Digest.parse(f"{match.group(1)}:{match.group(2)}")
                    yield RootfsTree(d, Path(entry.path), rootless, False)


def tree_size(path: Path) -> int:
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


__all__ = [
    "BUILD_PREFIX",
    "LOCK_PREFIX",
    "ROOTFS_DIR",
    "ROOTLESS_DIR",
    "RootfsTree",
    "build_lock",
    "build_path",
    "iter_trees",
    "lock_name",
    "parse_lock_name",
    "stale_builds",
    "tree_path",
    "tree_size",
    "try_build_lock",
]
