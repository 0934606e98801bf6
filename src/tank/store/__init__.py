"""The local cache: content-addressed, crash-safe, shared by concurrent pulls."""

from __future__ import annotations

from tank.store.content import (
    BlobWriter,
    CacheWarning,
    CorruptBlob,
    RefRecord,
    Store,
    default_cache_dir,
)

__all__ = [
    "BlobWriter",
    "CacheWarning",
    "CorruptBlob",
    "RefRecord",
    "Store",
    "default_cache_dir",
]
