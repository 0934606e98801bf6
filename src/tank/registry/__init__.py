"""The OCI Distribution (registry HTTP API v2) client.

- :class:`Client` (one registry: transport, retry policy, credentials, tokens) and
  :class:`Repository` (one repository's session: manifests, blobs, tags), the way to talk to a
  registry from a program (also as ``tank.Client`` / ``tank.Repository``).
- The seed's stateless functions, thin wrappers over them with frozen positional signatures:
  :func:`manifest`, :func:`manifest_head`, :func:`blob`, :func:`open_blob`,
  :func:`download_blob`, :func:`tags`, :func:`tag_pages`, and :func:`check_login`.

Modules: :mod:`~tank.registry.manifests`, :mod:`~tank.registry.blobs` (the streaming hot path and
the one resumable download loop), :mod:`~tank.registry.taglist`, :mod:`~tank.registry.names` (what a
caller may name), :mod:`~tank.registry.api` (the stateless functions).
"""

from __future__ import annotations

from tank.image.manifest import MAX_MANIFEST_SIZE
from tank.registry.api import (
    blob,
    check_login,
    download_blob,
    manifest,
    manifest_head,
    open_blob,
    tag_pages,
    tags,
)
from tank.registry.blobs import CHUNK_SIZE, BlobSink, BlobStream
from tank.registry.client import Client
from tank.registry.manifests import ManifestHead, ManifestInfo
from tank.registry.manifests import parse_manifest_bytes as parse_manifest
from tank.registry.repository import Repository
from tank.registry.taglist import MAX_TAG_PAGE

__all__ = [
    "CHUNK_SIZE",
    "MAX_MANIFEST_SIZE",
    "MAX_TAG_PAGE",
    "BlobSink",
    "BlobStream",
    "Client",
    "ManifestHead",
    "ManifestInfo",
    "Repository",
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
