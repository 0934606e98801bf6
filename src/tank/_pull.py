"""The pull: reference → manifest → platform → verified blobs in the cache → outputs.

:func:`pull` is the library's main entry point. It never prints; it reports progress through
the ``progress`` callback, which receives :class:`ProgressEvent` objects **from worker threads**
(up to ``jobs`` at once), so a callback must be thread-safe.

Network use, by case:

- a tag the cache has resolved before: one ``HEAD`` (same ``Accept`` as a ``GET``); the manifest
  is fetched only when the digest moved;
- a digest reference whose manifest is cached: no request at all;
- ``offline=True``: never any request; a missing piece raises
  :class:`~tank.errors.CacheMiss` saying exactly what is missing;
- blobs already in the cache are never downloaded again (``refresh=True`` re-fetches them).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, TypedDict, TypeVar

from tank import mediatypes
from tank.auth import TokenCache
from tank.auth.credentials import Credentials, CredentialsArg, LazyCredentials, coerce, resolver
from tank.config import Config, Endpoint
from tank.config import load as load_config
from tank.digest import Digest, Hasher
from tank.errors import (
    CacheMiss,
    DigestMismatch,
    InvalidDigest,
    InvalidManifest,
    InvalidReference,
    TankError,
    UnsupportedManifest,
)
from tank.platform import Platform, host_platform, select
from tank.reference import DEFAULT_TAG, Reference
from tank.reference import parse as parse_reference
from tank.registry import (
    BlobStream,
    ManifestHead,
    ManifestInfo,
    manifest,
    manifest_head,
    open_blob,
    parse_manifest,
)
from tank.retry import DEFAULT_RETRY, RetryPolicy, is_retryable
from tank.store import BlobWriter, Store
from tank.transport import Transport

_SCHEMA1_TYPES = frozenset(
    {
        "application/vnd.docker.distribution.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v1+prettyjws",
    }
)

class _Place(TypedDict):
    registry: str
    repository: str
    reference: str


EventKind = Literal["manifest", "started", "bytes", "restarted", "finished", "cached"]


@dataclass(frozen=True)
class ProgressEvent:
    """Something happened to one blob (or manifest).

    ``kind``: ``manifest`` (a manifest was resolved: ``digest``, ``what`` = ``index``/``image``),
    ``started`` (a download began), ``bytes`` (``amount`` more bytes arrived, or were found in a
    resumed ingest file), ``restarted`` (the ``amount`` bytes so far were discarded: the registry
    ignored ``Range``), ``finished`` (the blob verified and is in the cache), ``cached`` (it was
    there already; nothing fetched).
    """

    kind: EventKind
    digest: str
    size: int | None = None
    amount: int = 0
    what: str = ""


ProgressCallback = Callable[[ProgressEvent], None]


@dataclass(frozen=True)
class Descriptor:
    """A content descriptor (OCI image-spec): what a manifest says about a blob."""

    media_type: str
    digest: Digest
    size: int
    annotations: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The descriptor as it appears in JSON."""
        out: dict[str, Any] = {
            "mediaType": self.media_type, "digest": str(self.digest), "size": self.size,
        }
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out


@dataclass(frozen=True)
class PulledImage:
    """A pulled image: what it is and where everything is on disk.

    :ivar reference: the reference as parsed (``docker.io/library/alpine:latest``).
    :ivar digest: the image manifest's digest (the platform's manifest when pulled via an index).
    :ivar media_type: the image manifest's media type.
    :ivar index_digest: the index's digest when the reference named one, else ``None``.
    :ivar platform: the platform chosen from the index (or the config's own).
    :ivar config: the parsed image config.
    :ivar platforms: with ``all_platforms``, every platform the index offers (all were pulled).
    :ivar output: the OCI layout directory or docker-archive file written, if any
        (``output_kind`` says which), and ``output_tag`` the name the image has there.
    :ivar output_digest: the manifest digest in the layout: :attr:`digest`, except for a Docker v2
        manifest, which a layout holds rewritten with OCI media types (as skopeo does).
    :ivar mirror: the mirror (``registry/repository``) that served the image, ``None`` when it
        came from its own registry (or from the cache alone).
    """

    reference: Reference
    digest: Digest
    media_type: str
    index_digest: Digest | None
    platform: Platform | None
    config: dict[str, Any]
    config_descriptor: Descriptor
    layers: tuple[Descriptor, ...]
    cache: Path
    output: Path | None
    output_tag: str | None
    output_digest: Digest | None
    bytes_downloaded: int
    bytes_cached: int
    seconds: float
    output_kind: str | None = None
    platforms: tuple[Platform, ...] = ()
    mirror: str | None = None

    def blob_path(self, digest: str) -> Path:
        """Where a blob of this image is in the cache."""
        return Store(self.cache).blob_path(digest)

    @property
    def manifest_path(self) -> Path:
        """The image manifest's file in the cache."""
        return self.blob_path(self.digest)

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` document (keys documented in the README)."""
        return {
            "reference": str(self.reference),
            "digest": str(self.digest),
            "mediaType": self.media_type,
            "indexDigest": str(self.index_digest) if self.index_digest else None,
            "platform": str(self.platform) if self.platform else None,
            "config": self.config_descriptor.to_json(),
            "layers": [layer.to_json() for layer in self.layers],
            "cache": str(self.cache),
            "output": (
                None if self.output is None
                else f"{self.output_kind}:{self.output}" + (
                    f":{self.output_tag}" if self.output_tag else ""
                )
            ),
            "platforms": [str(p) for p in self.platforms],
            "outputDigest": str(self.output_digest) if self.output_digest else None,
            "seconds": round(self.seconds, 3),
            "bytesDownloaded": self.bytes_downloaded,
            "bytesCached": self.bytes_cached,
            "mirror": self.mirror,
        }


# -- descriptors and manifests ------------------------------------------------------------------


def _descriptor(doc: Any, *, where: str, place: _Place) -> Descriptor:
    if not isinstance(doc, dict):
        raise InvalidManifest(f"{where} is not a descriptor object", **place)
    media_type, digest, size = doc.get("mediaType"), doc.get("digest"), doc.get("size")
    if not isinstance(media_type, str) or not media_type:
        raise InvalidManifest(f"{where} has no mediaType", **place)
    if not isinstance(digest, str):
        raise InvalidManifest(f"{where} has no digest", **place)
    try:
        parsed = Digest.parse(digest)
    except InvalidDigest as exc:
        raise InvalidManifest(f"{where}: {exc}", **place) from None
    if type(size) is not int or size < 0:
        raise InvalidManifest(f"{where} has an invalid size {size!r}", **place)
    annotations = doc.get("annotations")
    clean = (
        {str(k): str(v) for k, v in annotations.items()} if isinstance(annotations, dict) else {}
    )
    return Descriptor(media_type, parsed, size, clean)


#: more layers than this in one manifest is refused (real images have tens; overlay stops at 128)
MAX_LAYERS = 10_000
#: more entries than this in one index is refused
MAX_INDEX_ENTRIES = 10_000


def _kind(media_type: str | None, doc: dict[str, Any], place: _Place | None = None) -> str:
    """``index`` or ``image``; raise for schema 1 and for what tank does not pull."""
    where = place or _Place(registry="", repository="", reference="")
    if media_type in _SCHEMA1_TYPES or doc.get("schemaVersion") == 1:
        raise UnsupportedManifest(
            "Docker schema 1 manifests are not supported (deprecated since 2017; ask the "
            "image's publisher for a schema 2 or OCI image)", **where,
        )
    if media_type in mediatypes.INDEX_TYPES or (media_type is None and "manifests" in doc):
        entries = doc.get("manifests")
        if not isinstance(entries, list):
            raise InvalidManifest("the index has no manifests list", **where)
        if len(entries) > MAX_INDEX_ENTRIES:
            raise InvalidManifest(
                f"the index lists {len(entries)} manifests (tank's limit is "
                f"{MAX_INDEX_ENTRIES})", **where,
            )
        return "index"
    if media_type in mediatypes.IMAGE_MANIFEST_TYPES or (media_type is None and "config" in doc):
        return "image"
    raise UnsupportedManifest(f"unsupported manifest media type {media_type!r}", **where)


_T = TypeVar("_T")
_log = logging.getLogger("tank.pull")


@dataclass(eq=False)
class _Source:
    """Mirrors: one place the image can come from (tank.config.Endpoint), with its own token and
    credentials (a mirror never gets the credentials meant for another registry)."""

    registry: str
    repository: str
    credentials: LazyCredentials
    mirror: bool = False
    token: str | None = None

    def __str__(self) -> str:
        return f"{self.registry}/{self.repository}"


class _Puller:
    def __init__(
        self,
        ref: Reference,
        store: Store,
        *,
        transport: Transport,
        offline: bool,
        refresh: bool,
        jobs: int,
        progress: ProgressCallback | None,
        retry: RetryPolicy,
        credentials: CredentialsArg = None,
        endpoints: list[Endpoint] | None = None,
    ) -> None:
        self.ref = ref
        self.retry = retry
        # credentials for this registry (looked up on its first challenge), and one token cache
        # for the whole pull: every thread reuses the token until shortly before it expires
        self.credentials = resolver(credentials, ref.registry, ref.repository)
        self.token_cache = TokenCache()
        self.cancelled = threading.Event()
        self.store = store
        self.transport = transport
        self.offline = offline
        self.refresh = refresh
        self.jobs = jobs
        self.progress = progress
        # -- mirrors: the endpoints in order (mirrors, then the registry); `source` serves the
        # pull once the top manifest resolved; `token` is the source's
        self.sources = [
            self._source(e, credentials)
            for e in endpoints or [Endpoint(ref.registry, ref.repository)]
        ]
        self.upstream = self.sources[-1]
        self.source = self.upstream
        self.source_known = len(self.sources) == 1
        self._token_lock = threading.Lock()
        self.downloaded = 0
        self.cached = 0
        self._count_lock = threading.Lock()
        self.place = _Place(
            registry=ref.registry, repository=ref.repository, reference=ref.fetch_reference
        )

    def emit(self, event: ProgressEvent) -> None:
        if self.progress is not None:
            self.progress(event)

    # -- mirrors (tank.config): which endpoint serves the pull --------------------------------

    def _source(self, endpoint: Endpoint, credentials: CredentialsArg) -> _Source:
        """A :class:`_Source` for ``endpoint``. The image's own registry gets the caller's
        credentials; another host only a credential *source*'s lookup for that host."""
        if endpoint.registry == self.ref.registry:
            creds = self.credentials
        elif isinstance(coerce(credentials), Credentials):  # the caller's, for its registry only
            creds = resolver(None, endpoint.registry, endpoint.repository)
        else:  # a credential source (or none): ask it for this host's own
            creds = resolver(credentials, endpoint.registry, endpoint.repository)
        return _Source(endpoint.registry, endpoint.repository, creds, mirror=endpoint.mirror)

    @property
    def token(self) -> str | None:
        """The token of the endpoint serving the pull."""
        return self.source.token

    @token.setter
    def token(self, value: str | None) -> None:
        self.source.token = value

    def _on_sources(self, fn: Callable[[_Source, RetryPolicy], _T], *, top: bool) -> _T:
        """``fn`` on the first endpoint that answers; a mirror's failure or miss falls through.

        For the top manifest (``top``), and for anything asked before it (a manifest found in
        the cache), every endpoint in order, mirrors with at most two tries each so that one that
        is down costs little; the one that answers the top manifest serves the rest of the pull:
        first it, then the registry itself when it was a mirror.
        """
        known = self.source_known and not top
        if known:
            candidates = [self.source] if self.source is self.upstream else [
                self.source, self.upstream,
            ]
        else:
            candidates = self.sources
        quick = replace(
            self.retry, attempts=min(self.retry.attempts, 2),
            max_retry_after=min(self.retry.max_retry_after, 5.0),
        )
        for src in candidates[:-1]:
            try:
                result = fn(src, self.retry if known else quick)
            except TankError as exc:
                _log.debug("mirror %s: %s; trying the next endpoint", src, exc)
                continue
            if top:
                self.source, self.source_known = src, True
            return result
        result = fn(candidates[-1], self.retry)
        if top:
            self.source, self.source_known = candidates[-1], True
        return result

    # -- manifests ---------------------------------------------------------------------------

    def _cached_manifest(self, digest: Digest) -> tuple[str | None, dict[str, Any], bytes]:
        raw = self.store.read_blob(digest)
        media_type, doc = parse_manifest(raw, None, **self.place)
        return media_type, doc, raw

    def _fetch_manifest(
        self, reference: str, *, top: bool = True
    ) -> tuple[Digest, str | None, dict[str, Any], int]:
        def one(src: _Source, policy: RetryPolicy) -> ManifestInfo:
            info, src.token = manifest(
                src.registry, src.repository, reference, src.token,
                transport=self.transport, retry=policy,
                credentials=src.credentials, token_cache=self.token_cache,
            )
            return info

        info = self._on_sources(one, top=top)  # mirrors: first endpoint that has it
        digest = info.content_digest()
        self.store.put_bytes(digest, info.raw)
        return digest, info.media_type, info.json, len(info.raw)

    def resolve_top(self) -> tuple[Digest, str | None, dict[str, Any], int]:
        """The manifest the reference names: (digest, media type, document, size)."""
        ref = self.ref
        if ref.digest is not None:
            if self.store.has_blob(ref.digest) and not self.refresh:
                media_type, doc, raw = self._cached_manifest(ref.digest)
                return ref.digest, media_type, doc, len(raw)
            if self.offline:
                raise CacheMiss(f"offline, and the manifest {ref.digest} of {ref} is not cached")
            return self._fetch_manifest(ref.digest)
        tag = ref.tag or DEFAULT_TAG
        record = self.store.get_ref(ref.registry, ref.repository, tag)
        known = record is not None and self.store.has_blob(record.digest)
        if self.offline:
            if record is None or not known:
                raise CacheMiss(
                    f"offline, and {ref} has never been pulled into this cache"
                    if record is None
                    else f"offline, and the manifest {record.digest} of {ref} is not cached"
                )
            media_type, doc, raw = self._cached_manifest(record.digest)
            return record.digest, media_type, doc, len(raw)
        if record is not None and known and not self.refresh:
            def one(src: _Source, policy: RetryPolicy) -> ManifestHead:
                head, src.token = manifest_head(
                    src.registry, src.repository, tag, src.token, transport=self.transport,
                    retry=policy, credentials=src.credentials, token_cache=self.token_cache,
                )
                return head

            head = self._on_sources(one, top=True)  # mirrors: first endpoint that answers
            if head.digest == record.digest:
                media_type, doc, raw = self._cached_manifest(record.digest)
                return record.digest, media_type, doc, len(raw)
        return self._fetch_manifest(tag)

    def child(self, descriptor: Descriptor) -> tuple[str | None, dict[str, Any], int]:
        """An index entry's manifest, from the cache or the registry, verified by digest."""
        digest = descriptor.digest
        if self.store.has_blob(digest) and not self.refresh:
            media_type, doc, raw = self._cached_manifest(digest)
            return media_type, doc, len(raw)
        if self.offline:
            raise CacheMiss(f"offline, and the manifest {digest} of {self.ref} is not cached")
        _, media_type, doc, size = self._fetch_manifest(digest, top=False)
        if size != descriptor.size:
            raise InvalidManifest(
                f"the index says manifest {digest} has {descriptor.size} bytes, it has {size}",
                **self.place,
            )
        return media_type, doc, size

    # -- blobs -------------------------------------------------------------------------------

    def fetch_blob(self, desc: Descriptor, what: str) -> None:
        """Make sure ``desc`` is in the cache, downloading it when it is not."""
        store = self.store
        if not self.refresh and store.has_blob(desc.digest, desc.size):
            self._count(cached=desc.size)
            self.emit(ProgressEvent("cached", desc.digest, desc.size, what=what))
            return
        if self.offline:
            raise CacheMiss(f"offline, and the {what} {desc.digest} of {self.ref} is not cached")
        with store.writer(desc.digest, desc.size, replace=self.refresh) as writer:
            if writer is None:  # another process fetched it while this one waited
                self._count(cached=desc.size)
                self.emit(ProgressEvent("cached", desc.digest, desc.size, what=what))
                return
            self.emit(ProgressEvent("started", desc.digest, desc.size, what=what))
            if writer.resumed:
                self.emit(ProgressEvent("bytes", desc.digest, desc.size, writer.resumed, what))
            hasher = self._download_any(desc, writer, what)
            try:
                writer.commit(hasher)
            except DigestMismatch:
                if not writer.resumed:
                    raise
                # the bytes an earlier run left were not a prefix of this blob: start over once
                self.emit(ProgressEvent("restarted", desc.digest, desc.size, writer.written, what))
                writer.restart()
                writer.resumed = 0
                writer.commit(self._download_any(desc, writer, what))
        self._count(downloaded=desc.size)
        self.emit(ProgressEvent("finished", desc.digest, desc.size, what=what))

    def _download_any(self, desc: Descriptor, writer: BlobWriter, what: str) -> Hasher:
        """Mirrors: :meth:`_download` from the endpoint serving the pull; when that mirror fails
        or lacks the blob, from the registry itself, starting over from byte 0."""
        last = self.upstream

        def one(src: _Source, policy: RetryPolicy) -> Hasher:
            try:
                return self._download(desc, writer, what, src, policy)
            except TankError:
                if src is not last and writer.written:
                    self.emit(ProgressEvent("restarted", desc.digest, desc.size, writer.written,
                                            what))
                    writer.restart()
                    writer.resumed = 0
                raise

        return self._on_sources(one, top=False)

    def _download(
        self, desc: Descriptor, writer: BlobWriter, what: str, src: _Source | None = None,
        policy: RetryPolicy | None = None,
    ) -> Hasher:
        """Stream ``desc`` into ``writer`` from where it stands; return the hash of all of it.

        A retryable failure mid-body (a reset, a timeout, a truncated body, a 5xx or 429 when
        reconnecting) resumes with ``Range`` from the last byte written, after the policy's
        backoff; a registry that answers ``200`` instead of ``206`` sends the blob again from 0.
        """
        policy = policy or self.retry
        src = src or self.source
        started = time.monotonic()
        hasher = writer.prefix_hasher.copy() if writer.written and writer.prefix_hasher else None
        if hasher is not None and writer.written == desc.size:
            # an earlier run received every byte but stopped before committing
            if hasher.digest() == desc.digest:
                return hasher
            hasher = None
        attempt = 1
        while True:
            if self.cancelled.is_set():
                raise KeyboardInterrupt
            offset = writer.written if hasher is not None else 0
            if offset == 0 and writer.written:
                writer.restart()
            stream: BlobStream | None = None
            try:
                with open_blob(
                    src.registry, src.repository, desc.digest, src.token,
                    offset=offset, hasher=hasher, size=desc.size, transport=self.transport,
                    retry=policy, credentials=src.credentials, token_cache=self.token_cache,
                ) as stream:
                    if stream.offset != offset:  # the registry ignored Range
                        self.emit(ProgressEvent("restarted", desc.digest, desc.size, offset, what))
                        writer.restart()
                    write, emit, cancelled = writer.write, self.emit, self.cancelled
                    for chunk in stream:
                        if cancelled.is_set():
                            raise KeyboardInterrupt
                        write(chunk)
                        emit(ProgressEvent("bytes", desc.digest, desc.size, len(chunk), what))
                    if stream.token and stream.token != src.token:
                        with self._token_lock:
                            src.token = stream.token
                    return stream.hasher
            except TankError as exc:
                if not is_retryable(exc) or attempt >= policy.attempts:
                    if attempt > 1:
                        exc.retried = (attempt, time.monotonic() - started)
                    raise
                delay = policy.delay(attempt, exc)
                attempt += 1
                # continue from what arrived: the stream's hash covers exactly what was written
                if stream is not None and stream.hasher.size == writer.written:
                    hasher = stream.hasher.copy()
                if self.cancelled.wait(delay):
                    raise KeyboardInterrupt from None

    def _count(self, *, downloaded: int = 0, cached: int = 0) -> None:
        with self._count_lock:
            self.downloaded += downloaded
            self.cached += cached

    def fetch_all(self, blobs: list[tuple[Descriptor, str]]) -> None:
        """Fetch every blob, up to ``jobs`` at once, in order of submission; first error wins."""
        if not blobs:
            return
        if self.token is None and not self.offline:
            # one token for the whole pull: answer the challenge once, before fanning out
            first, rest = blobs[0], blobs[1:]
            self.fetch_blob(*first)
            blobs = rest
        pool = ThreadPoolExecutor(max_workers=self.jobs, thread_name_prefix="tank-pull")
        try:
            futures: list[Future[None]] = [pool.submit(self.fetch_blob, d, w) for d, w in blobs]
            _, pending = wait(futures, return_when=FIRST_EXCEPTION)
        except BaseException:  # Ctrl-C: stop the workers at their next chunk; keep ingest files
            self.cancelled.set()
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        if pending:  # one failed: stop the others rather than finish them
            self.cancelled.set()
        pool.shutdown(wait=True, cancel_futures=True)
        errors = [
            f.exception() for f in futures if f.done() and not f.cancelled() and f.exception()
        ]
        real = [e for e in errors if not isinstance(e, KeyboardInterrupt)]
        if real or errors:
            raise (real or errors)[0]  # type: ignore[misc]


def _image_parts(doc: dict[str, Any], place: _Place) -> tuple[Descriptor, tuple[Descriptor, ...]]:
    """An image manifest's config and layer descriptors, validated."""
    config = _descriptor(doc.get("config"), where="the config descriptor", place=place)
    raw_layers = doc.get("layers")
    if not isinstance(raw_layers, list):
        raise InvalidManifest("the image manifest has no layers list", **place)
    if len(raw_layers) > MAX_LAYERS:
        raise InvalidManifest(
            f"the image manifest lists {len(raw_layers)} layers (tank's limit is {MAX_LAYERS})",
            **place,
        )
    layers = tuple(
        _descriptor(layer, where=f"layer {i}", place=place)
        for i, layer in enumerate(raw_layers, 1)
    )
    return config, layers


def _for_layout(
    store: Store, digest: Digest, media_type: str, doc: dict[str, Any], size: int
) -> tuple[Digest, str, int]:
    """The manifest as an OCI layout holds it: a Docker v2 manifest is rewritten (as skopeo
    does), since layout tools refuse Docker media types; anything else is kept as it is."""
    if media_type != mediatypes.DOCKER_MANIFEST:
        return digest, media_type, size
    from tank.digest import compute
    from tank.image.convert import docker_to_oci

    converted = docker_to_oci(doc)
    new = compute(converted)
    store.put_bytes(new, converted)
    return new, mediatypes.OCI_MANIFEST, len(converted)


def _platform_json(p: Platform) -> dict[str, str]:
    out = {"os": p.os, "architecture": p.architecture}
    if p.variant:
        out["variant"] = p.variant
    return out


@dataclass
class _Child:
    descriptor: Descriptor
    media_type: str
    doc: dict[str, Any]
    size: int
    platform_json: Any


def pull(
    ref: str | Reference,
    *,
    platform: str | Platform | None = None,
    all_platforms: bool = False,
    output: str | None = None,
    cache: str | os.PathLike[str] | Store | None = None,
    jobs: int | None = None,
    offline: bool = False,
    refresh: bool = False,
    progress: ProgressCallback | None = None,
    copy: bool = False,
    rootfs_cache: bool = True,
    retry: RetryPolicy | None = None,
    transport: Transport | None = None,
    credentials: CredentialsArg = None,
    config: Config | None = None,
) -> PulledImage:
    """Pull an image into the cache (and into ``output``); return what was pulled.

    :param ref: an image reference (``alpine``, ``ghcr.io/o/r:tag``, ``name@sha256:…``).
    :param platform: ``os/arch[/variant]`` to choose from an index; default the config's
        ``platform``, else the host's.
    :param all_platforms: with an index, fetch every entry (attestations too) and write the
        whole index to an ``oci:`` output, a faithful copy; the returned image is still the
        ``platform`` one.
    :param output: ``oci:DIR[:TAG]`` writes an OCI image layout (TAG defaults to the
        reference's tag, or ``latest`` for a digest reference); ``docker-archive:FILE[:REF]``
        writes a tar that ``docker load`` reads (REF defaults to the reference);
        ``rootfs:DIR`` unpacks the image into DIR (see :func:`tank.unpack.unpack`).
    :param cache: the cache directory (or a :class:`~tank.store.Store`); default
        ``$TANK_CACHE``, else ``$XDG_CACHE_HOME/tank``, else ``~/.cache/tank``.
    :param jobs: blobs downloaded at once (each over its own pooled connection); default the
        config's ``jobs``, else 4.
    :param offline: never touch the network; raise :class:`~tank.errors.CacheMiss` naming what
        is missing.
    :param refresh: re-fetch the manifest and the blobs even when cached.
    :param progress: called with :class:`ProgressEvent` objects, from worker threads.
    :param copy: write the layout's blobs as copies, never hard links to the cache.
    :param rootfs_cache: with ``output="rootfs:DIR"``, build the root filesystem once in the
        cache and copy it out (``False``: unpack straight into DIR); see :func:`tank.unpack.unpack`.
    :param retry: how transient failures are retried (default
        :data:`~tank.retry.DEFAULT_RETRY`); an interrupted blob resumes where it stopped.
    :param transport: connection pool, proxies, TLS settings and timeouts (default: the
        config's, :meth:`tank.config.Config.transport`, a fresh pool sized for ``jobs``).
    :param config: mirrors, insecure registries, trust, timeouts, default platform and jobs
        (:class:`tank.config.Config`); default :func:`tank.config.load`, the configuration
        files. A mirror that fails or lacks the image falls back to the next, then the registry.
    :param credentials: for the image's registry: ``(username, password)``, a
        :class:`~tank.Credentials`, or a :class:`~tank.auth.credentials.CredentialSource`
        such as :class:`~tank.auth.credentials.CredentialStore` (what ``tank pull`` passes: the
        machine's docker/podman credentials), asked only when the registry first challenges.
        ``None``: anonymous. One token serves the whole pull, renewed shortly before it expires.
    """
    started = time.perf_counter()
    reference = parse_reference(ref) if isinstance(ref, str) else ref
    # the configuration (tank.config): mirrors, trust, timeouts, default platform and jobs
    cfg = config if config is not None else load_config()
    endpoints = cfg.endpoints(reference)
    jobs = jobs if jobs is not None else cfg.jobs or 4
    platform = platform if platform is not None else cfg.platform
    if jobs < 1:
        raise ValueError("jobs must be at least 1")
    layout_target = archive_target = None
    rootfs_target: Path | None = None
    if output is not None:
        if output.startswith("rootfs:"):
            rootfs_target = Path(output[len("rootfs:"):])
            if not output[len("rootfs:"):]:
                raise InvalidReference(output, "rootfs: needs a directory (rootfs:DIR)")
            if rootfs_target.exists() and (
                not rootfs_target.is_dir() or any(rootfs_target.iterdir())
            ):
                raise InvalidReference(output, f"{rootfs_target} exists and is not empty")
            if all_platforms:
                raise InvalidReference(output, "a root filesystem holds one platform's image")
        elif output.startswith("docker-archive:"):
            from tank.outputs.archive import ArchiveTarget

            archive_target = ArchiveTarget.parse(output)
            if all_platforms:
                raise InvalidReference(output, "a docker-archive holds one platform's image")
        else:
            from tank.outputs.layout import LayoutTarget

            layout_target = LayoutTarget.parse(output)
    want = (
        Platform.parse(platform) if isinstance(platform, str)
        else platform if platform is not None else None
    )
    store = cache if isinstance(cache, Store) else Store(cache)
    t = transport or cfg.transport(pool_size=max(8, jobs))
    puller = _Puller(
        reference, store, transport=t, offline=offline, refresh=refresh, jobs=jobs,
        progress=progress, retry=retry or DEFAULT_RETRY, credentials=credentials,
        endpoints=endpoints,
    )
    place = puller.place

    top_digest, media_type, doc, top_size = puller.resolve_top()
    kind = _kind(media_type, doc, place)
    puller.emit(ProgressEvent("manifest", top_digest, top_size, what=kind))
    index_digest: Digest | None = None
    chosen: Platform | None = None
    image_digest, image_type, image_doc, image_size = top_digest, media_type, doc, top_size
    children: list[_Child] = []
    if kind == "index":
        index_digest = top_digest
        chosen = want or host_platform()
        entry = select(doc, chosen, **place)
        entries = [entry]
        if all_platforms:
            entries = [e for e in doc.get("manifests") or [] if isinstance(e, dict)]
        for e in entries:
            child = _descriptor(e, where="an index entry", place=place)
            ctype, cdoc, csize = puller.child(child)
            if _kind(ctype, cdoc, place) != "image":
                raise UnsupportedManifest(
                    f"the index entry {child.digest} is itself an index (nested indexes are "
                    "not supported)", **place,
                )
            ctype = ctype or child.media_type
            children.append(_Child(child, ctype, cdoc, csize, e.get("platform")))
            puller.emit(ProgressEvent("manifest", child.digest, csize, what="image"))
            if e is entry:
                image_digest, image_type, image_doc, image_size = (
                    child.digest, ctype, cdoc, csize,
                )
    image_type = image_type or mediatypes.OCI_MANIFEST

    config_desc, layers = _image_parts(image_doc, place)
    blobs: list[tuple[Descriptor, str]] = [
        (config_desc, "config"), *((layer, "layer") for layer in layers),
    ]
    seen = {d.digest for d, _ in blobs}
    for c in children:
        cconfig, clayers = _image_parts(c.doc, place)
        for d, what in ((cconfig, "config"), *((layer, "layer") for layer in clayers)):
            if d.digest not in seen:
                seen.add(d.digest)
                blobs.append((d, what))
    puller.fetch_all(blobs)
    config_raw = store.read_blob(config_desc.digest)
    try:
        config = json.loads(config_raw)
    except ValueError as exc:
        raise InvalidManifest(f"the image config is not JSON: {exc}", **place) from None
    if not isinstance(config, dict):
        raise InvalidManifest("the image config is not a JSON object", **place)
    if chosen is None:
        chosen = Platform.from_json(config)

    if reference.digest is None and not offline:
        store.set_ref(
            reference.registry, reference.repository, reference.tag or DEFAULT_TAG,
            top_digest, media_type,
        )

    out_path: Path | None = None
    out_tag: str | None = None
    out_digest: Digest | None = None
    if layout_target is not None:
        from tank.outputs.layout import write_image

        out_tag = layout_target.tag or reference.tag or DEFAULT_TAG
        out_path = layout_target.path
        paths = {str(d.digest): store.blob_path(d.digest) for d, _ in blobs}
        plat: dict[str, str] | None = None
        if all_platforms and index_digest is not None:
            out_digest, out_type, out_size = _index_for_layout(
                store, index_digest, media_type, doc, top_size, children, paths
            )
        else:
            out_digest, out_type, out_size = _for_layout(
                store, image_digest, image_type, image_doc, image_size
            )
            if index_digest is not None and chosen is not None:
                plat = _platform_json(chosen)
        paths[str(out_digest)] = store.blob_path(out_digest)
        write_image(
            out_path,
            manifest_digest=out_digest,
            manifest_media_type=out_type,
            manifest_size=out_size,
            ref_name=out_tag,
            blobs=paths,
            platform=plat,
            copy=copy,
        )
    elif archive_target is not None:
        from tank.outputs.archive import repo_tag, write_docker_archive

        out_path = archive_target.path
        out_tag = archive_target.ref or repo_tag(reference)
        diff_ids = (config.get("rootfs") or {}).get("diff_ids")
        if not isinstance(diff_ids, list) or len(diff_ids) != len(layers):
            raise InvalidManifest(
                "the image config's rootfs.diff_ids does not list one entry per layer", **place
            )
        write_docker_archive(
            out_path,
            config_path=store.blob_path(config_desc.digest),
            config_digest=config_desc.digest,
            layers=[(d.digest, d.media_type, store.blob_path(d.digest)) for d in layers],
            diff_ids=diff_ids,
            repo_tags=[out_tag],
        )
    pulled = PulledImage(
        reference=reference,
        digest=image_digest,
        media_type=image_type,
        index_digest=index_digest,
        platform=chosen,
        config=config,
        config_descriptor=config_desc,
        layers=layers,
        cache=store.root,
        output=out_path,
        output_tag=out_tag,
        output_digest=out_digest,
        bytes_downloaded=puller.downloaded,
        bytes_cached=puller.cached,
        seconds=time.perf_counter() - started,
        output_kind="docker-archive" if archive_target is not None else (
            "oci" if layout_target is not None else None
        ),
        platforms=tuple(
            p for p in (Platform.from_json(c.platform_json) for c in children) if p is not None
        ) if all_platforms else (),
        mirror=str(puller.source) if puller.source.mirror else None,
    )
    if rootfs_target is None:
        return pulled
    from tank.image.config import ImageConfig
    from tank.outputs.rootfs import unpack_image

    unpack_image(
        store, str(pulled.digest), ImageConfig.from_json(config),
        [(str(d.digest), d.media_type, store.blob_path(d.digest)) for d in layers],
        rootfs_target, rootfs_cache=rootfs_cache, what=str(reference),
    )
    return dataclasses.replace(
        pulled, output=rootfs_target, output_kind="rootfs", output_tag=None,
        seconds=time.perf_counter() - started,
    )


def _index_for_layout(
    store: Store,
    index_digest: Digest,
    media_type: str | None,
    doc: dict[str, Any],
    size: int,
    children: list[_Child],
    paths: dict[str, Path],
) -> tuple[Digest, str, int]:
    """The index (and its children) as an OCI layout holds them.

    An OCI index of OCI manifests is kept byte for byte. A Docker manifest list, or any Docker
    child, is rewritten: children with OCI media types, and a new OCI index pointing at them.
    """
    rewritten = []
    changed = media_type != mediatypes.OCI_INDEX
    for c in children:
        digest, ctype, csize = _for_layout(
            store, c.descriptor.digest, c.media_type, c.doc, c.size
        )
        paths[str(digest)] = store.blob_path(digest)
        changed = changed or digest != c.descriptor.digest
        entry: dict[str, Any] = {"mediaType": ctype, "digest": str(digest), "size": csize}
        if c.platform_json is not None:
            entry["platform"] = c.platform_json
        if c.descriptor.annotations:
            entry["annotations"] = dict(c.descriptor.annotations)
        rewritten.append(entry)
    if not changed:
        return index_digest, mediatypes.OCI_INDEX, size
    from tank.digest import compute

    new_doc: dict[str, Any] = {
        "schemaVersion": 2, "mediaType": mediatypes.OCI_INDEX, "manifests": rewritten,
    }
    if isinstance(doc.get("annotations"), dict):
        new_doc["annotations"] = doc["annotations"]
    raw = json.dumps(new_doc, separators=(",", ":")).encode()
    new = compute(raw)
    store.put_bytes(new, raw)
    return new, mediatypes.OCI_INDEX, len(raw)


__all__ = ["Descriptor", "ProgressCallback", "ProgressEvent", "PulledImage", "pull"]
