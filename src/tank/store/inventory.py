"""What the cache holds (:func:`listing`, ``tank cache ls``) and how much disk it takes
(:func:`usage`, ``tank cache du``). Reads only; see :mod:`tank.store.maintenance` for what counts
as used."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tank.digest import Digest
from tank.store._scan import held, iter_ingest, iter_refs, regular
from tank.store._walk import _Walker
from tank.store.content import Store
from tank.store.rootfs import iter_trees, tree_size


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
    sizes = {d: st.st_size for d, p in store.iter_blobs() if (st := regular(p)) is not None}
    for ref in iter_refs(store):
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
                t.digest, t.path, tree_size(t.path), t.digest in used and not t.building,
                t.rootless, t.building,
            )
            for t in iter_trees(store)
        ),
        ingest=tuple(
            IngestEntry(d, path, st.st_size, held(store, d))
            for d, path, st in iter_ingest(store)
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


__all__ = [
    "CacheListing",
    "CacheUsage",
    "CachedBlob",
    "CachedImage",
    "IngestEntry",
    "RootfsEntry",
    "listing",
    "usage",
]
