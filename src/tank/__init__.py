"""tank: fast, verified container-image transfers.

The public API, importable from ``tank`` itself (heavier modules load on first use, so
``import tank`` stays cheap)::

    import tank

    image = tank.pull("alpine", output="oci:./alpine-layout")   # cache + OCI layout
    image.digest, image.config["config"]["Cmd"], image.blob_path(image.layers[0].digest)

    info, token = tank.manifest("registry-1.docker.io", "library/alpine", "latest")
    config = tank.blob("registry-1.docker.io", "library/alpine", digest, token)
    tank.download_blob(registry, repo, layer_digest, token, "layer.tar.gz")

- :func:`pull`, :class:`PulledImage`, :class:`ProgressEvent` — the whole pull (:mod:`tank.pull`).
- :func:`copy`, :class:`CopyResult`, :class:`CopyEvent`, :func:`sync` — copies between
  registries, layouts and archives, and mirrors; :func:`push_artifact`, :func:`pull_artifact`,
  :class:`ArtifactResult` — OCI artifacts.
- :class:`Store` — the content-addressed cache (:mod:`tank.store`).
- :func:`unpack`, :class:`ImageConfig` — root filesystems (:mod:`tank.unpack`).
- :func:`inspect`, :func:`list_tags`, :func:`resolve_digest` — what ``tank inspect``, ``tank
  tags`` and ``tank digest`` do (:mod:`tank.inspect`).
- :func:`files`, :func:`cat`, :func:`read_file`, :func:`export`, :func:`diff`, :class:`FileEntry`,
  :class:`Change` — inside an image without unpacking it: ``tank ls``, ``cat``, ``export`` and
  ``diff`` (:mod:`tank.inside`).
- :class:`Credentials`, :class:`CredentialStore`, :class:`TokenCache` — credentials
  (:mod:`tank.auth.credentials`, :mod:`tank.auth`); :class:`Config`, :func:`load_config` — the
  config files (:mod:`tank.config`).
- :class:`Platform` — ``os/arch[/variant]`` (:mod:`tank.platform`).
- :func:`verify`, :class:`Policy`, :class:`Verdict` — who signed an image, judged by the
  containers signature policy (:mod:`tank.policy`); ``tank.pull(policy=…)`` enforces it.
- :func:`manifest`, :func:`manifest_head`, :func:`blob`, :func:`open_blob`, :func:`download_blob`,
  :class:`ManifestInfo`, :class:`BlobStream` — the registry client (:mod:`tank.registry`).
- :func:`parse_reference` and :class:`Reference` — image references (:mod:`tank.reference`).
- :class:`Digest` and :class:`Hasher` — content digests (:mod:`tank.digest`).
- :class:`Transport` — TLS trust, timeouts and connection pooling (:mod:`tank.transport`).
- :class:`RetryPolicy`, :data:`DEFAULT_RETRY`, :data:`NO_RETRY` — the ``retry=`` of the registry
  client's functions: backoff, jitter and ``Retry-After`` (:mod:`tank.retry`).
- Every exception, rooted at :class:`TankError` (:mod:`tank.errors`).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from tank._version import __version__
from tank.errors import (
    ArchiveError,
    AuthError,
    CacheMiss,
    ConfigError,
    CorruptLayer,
    DigestMismatch,
    ImagePathError,
    IntegrityError,
    InvalidDigest,
    InvalidImageConfig,
    InvalidManifest,
    InvalidReference,
    LayerTooLarge,
    LayoutError,
    ManifestTooLarge,
    NotFound,
    PathNotFound,
    PlatformNotFound,
    PolicyError,
    PolicyRefused,
    RegistryError,
    SizeMismatch,
    StorageError,
    TankError,
    TLSError,
    TransportError,
    UnpackError,
    UnsafeEntry,
    UnsupportedDigest,
    UnsupportedLayer,
    UnsupportedManifest,
)

if TYPE_CHECKING:
    from tank._artifact import ArtifactResult, pull_artifact, push_artifact
    from tank._copy import CopyEvent, CopyResult, copy
    from tank._inside import cat, diff, export, files, read_file
    from tank._inspect import IndexEntry, Inspection, LayerInfo, inspect, list_tags, resolve_digest
    from tank._pull import ProgressEvent, PulledImage, pull
    from tank._sync import sync
    from tank._unpack import unpack
    from tank.auth import TokenCache
    from tank.auth.credentials import Credentials, CredentialStore
    from tank.config import Config
    from tank.config import load as load_config
    from tank.digest import Digest, Hasher
    from tank.image.config import ImageConfig
    from tank.inside import Change, FileEntry
    from tank.platform import Platform
    from tank.policy import Policy, Verdict
    from tank.policy.check import verify
    from tank.reference import Reference
    from tank.reference import parse as parse_reference
    from tank.registry import (
        BlobStream,
        Client,
        ManifestInfo,
        Repository,
        blob,
        download_blob,
        manifest,
        manifest_head,
        open_blob,
        tags,
    )
    from tank.retry import DEFAULT_RETRY, NO_RETRY, RetryPolicy
    from tank.store import Store
    from tank.transport import Transport

_LAZY = {
    "copy": ("tank._copy", "copy"),
    "CopyResult": ("tank._copy", "CopyResult"),
    "CopyEvent": ("tank._copy", "CopyEvent"),
    "sync": ("tank._sync", "sync"),
    "push_artifact": ("tank._artifact", "push_artifact"),
    "pull_artifact": ("tank._artifact", "pull_artifact"),
    "ArtifactResult": ("tank._artifact", "ArtifactResult"),
    "unpack": ("tank._unpack", "unpack"),
    "ImageConfig": ("tank.image.config", "ImageConfig"),
    "inspect": ("tank._inspect", "inspect"),
    "list_tags": ("tank._inspect", "list_tags"),
    "resolve_digest": ("tank._inspect", "resolve_digest"),
    "Inspection": ("tank._inspect", "Inspection"),
    "IndexEntry": ("tank._inspect", "IndexEntry"),
    "LayerInfo": ("tank._inspect", "LayerInfo"),
    "files": ("tank._inside", "files"),
    "cat": ("tank._inside", "cat"),
    "read_file": ("tank._inside", "read_file"),
    "export": ("tank._inside", "export"),
    "diff": ("tank._inside", "diff"),
    "FileEntry": ("tank.inside.entry", "FileEntry"),
    "Change": ("tank.inside.diff", "Change"),
    "tags": ("tank.registry", "tags"),
    "Credentials": ("tank.auth.credentials", "Credentials"),
    "CredentialStore": ("tank.auth.credentials", "CredentialStore"),
    "TokenCache": ("tank.auth.tokens", "TokenCache"),
    "Config": ("tank.config", "Config"),
    "load_config": ("tank.config", "load"),
    "pull": ("tank._pull", "pull"),
    "PulledImage": ("tank._pull", "PulledImage"),
    "ProgressEvent": ("tank._pull", "ProgressEvent"),
    "Store": ("tank.store.content", "Store"),
    "Platform": ("tank.platform", "Platform"),
    "manifest_head": ("tank.registry", "manifest_head"),
    "BlobStream": ("tank.registry", "BlobStream"),
    "ManifestInfo": ("tank.registry", "ManifestInfo"),
    "blob": ("tank.registry", "blob"),
    "download_blob": ("tank.registry", "download_blob"),
    "manifest": ("tank.registry", "manifest"),
    "open_blob": ("tank.registry", "open_blob"),
    "Reference": ("tank.reference", "Reference"),
    "parse_reference": ("tank.reference", "parse"),
    "Digest": ("tank.digest", "Digest"),
    "Hasher": ("tank.digest", "Hasher"),
    "Transport": ("tank.transport", "Transport"),
    "RetryPolicy": ("tank.retry", "RetryPolicy"),
    "DEFAULT_RETRY": ("tank.retry", "DEFAULT_RETRY"),
    "NO_RETRY": ("tank.retry", "NO_RETRY"),
    "Client": ("tank.registry.client", "Client"),
    "Repository": ("tank.registry.repository", "Repository"),
    "verify": ("tank.policy.check", "verify"),
    "Policy": ("tank.policy.document", "Policy"),
    "Verdict": ("tank.policy.judge", "Verdict"),
}


def __getattr__(name: str) -> Any:
    try:
        module, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'tank' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [  # noqa: RUF022 (grouped by topic, not sorted)
    # the work
    "pull", "PulledImage", "ProgressEvent", "unpack", "ImageConfig",
    "copy", "CopyResult", "CopyEvent", "sync", "push_artifact", "pull_artifact",
    "ArtifactResult",
    "inspect", "Inspection", "IndexEntry", "LayerInfo", "list_tags", "resolve_digest",
    "verify", "Policy", "Verdict",
    "files", "cat", "read_file", "export", "diff", "FileEntry", "Change",
    # the session, and the seed's stateless functions
    "Client", "Repository", "ManifestInfo", "BlobStream",
    "manifest", "manifest_head", "blob", "open_blob", "download_blob", "tags",
    # the parts
    "Store", "Config", "load_config", "Credentials", "CredentialStore", "TokenCache",
    "Transport", "RetryPolicy", "DEFAULT_RETRY", "NO_RETRY",
    "Reference", "parse_reference", "Digest", "Hasher", "Platform", "__version__",
    # every error, as tank.errors draws the tree
    "TankError", "InvalidReference", "InvalidDigest", "UnsupportedDigest",
    "IntegrityError", "DigestMismatch", "SizeMismatch", "CorruptLayer",
    "TransportError", "TLSError",
    "RegistryError", "AuthError", "NotFound", "PlatformNotFound", "UnsupportedManifest",
    "ManifestTooLarge", "InvalidManifest",
    "CacheMiss", "ConfigError", "PolicyError", "PolicyRefused", "StorageError", "LayoutError",
    "ArchiveError",
    "UnsupportedLayer", "InvalidImageConfig", "ImagePathError", "PathNotFound",
    "UnpackError", "UnsafeEntry", "LayerTooLarge",
]  # fmt: skip
