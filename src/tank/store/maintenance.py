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
:mod:`tank.outputs.rootfs` builds them (flat ``<alg>:<hex>`` and ``<alg>-<hex>`` names are read
too; :mod:`tank.store.rootfs` knows the names). One whose image is not recorded is unused. A tree
is removed under the lock its builder takes (``locks/rootfs-[rootless-]<alg>-<hex>.lock``), never
while it is held; a build in progress also keeps its image's blobs, which it reads. A crashed
build (``.tmp-<hex>-…``) is a stale leftover. Names that are not tank's are left alone. Lock files
are never removed: another process may be waiting on one.

The work is split by concept: :mod:`tank.store.inventory` (ls, du), :mod:`tank.store.prune`
(prune, verify --fix), :mod:`tank.store.rootfs` (the trees' names and locks), and two private
helpers (reading refs, ingest files and held locks; walking the cached manifests). This module
gathers the public names.
"""


from __future__ import annotations

from tank.store.inventory import (
    CachedBlob,
    CachedImage,
    CacheListing,
    CacheUsage,
    IngestEntry,
    RootfsEntry,
    listing,
    usage,
)
from tank.store.prune import PRUNE_GRACE, Fixed, PruneResult, fix, parse_duration, prune

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
