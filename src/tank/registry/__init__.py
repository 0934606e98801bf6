"""The OCI Distribution (registry HTTP API v2) client."""

from __future__ import annotations

from tank.registry.client import (
    CHUNK_SIZE,
    MAX_MANIFEST_SIZE,
    MAX_TAG_PAGE,
    BlobStream,
    ManifestHead,
    ManifestInfo,
    blob,
    check_login,
    download_blob,
    manifest,
    manifest_head,
    open_blob,
    parse_manifest,
    tag_pages,
    tags,
)

__all__ = [
    "CHUNK_SIZE",
    "MAX_MANIFEST_SIZE",
    "MAX_TAG_PAGE",
    "BlobStream",
    "ManifestHead",
    "ManifestInfo",
    "blob",
    "check_login",
    "download_blob",
    "manifest",
    "manifest_head",
    "open_blob",
    "parse_manifest",
    "tag_pages",
    "tags",
]
