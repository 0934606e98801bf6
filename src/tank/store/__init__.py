"""The local cache: content-addressed, crash-safe, shared by concurrent pulls."""

from __future__ import annotations

from tank.store.content import (
    CacheWarning,
    CorruptBlob,
    RefRecord,
    Store,
    default_cache_dir,
)
from tank.store.ingest import BlobWriter

__all__ = [
    "BlobWriter",
    "CacheWarning",
    "CorruptBlob",
    "RefRecord",
    "Store",
    "default_cache_dir",
]
