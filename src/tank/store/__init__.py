"""The local cache: content-addressed, crash-safe, shared by concurrent pulls."""

from __future__ import annotations

from tank.store.content import (
    BlobWriter,
    CorruptBlob,
    RefRecord,
    Store,
    default_cache_dir,
)

__all__ = [
    "BlobWriter",
    "CorruptBlob",
    "RefRecord",
    "Store",
    "default_cache_dir",
]
