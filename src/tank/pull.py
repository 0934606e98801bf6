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

import json
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypedDict

from tank import mediatypes
from tank.digest import Digest
from tank.errors import (
    CacheMiss,
    InvalidDigest,
    InvalidManifest,
    UnsupportedManifest,
)
from tank.platform import Platform, host_platform, select
from tank.reference import DEFAULT_TAG, Reference
from tank.reference import parse as parse_reference
from tank.registry import manifest, manifest_head, open_blob, parse_manifest
from tank.store import Store
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


EventKind = Literal["manifest", "started", "bytes", "finished", "cached"]


@dataclass(frozen=True)
class ProgressEvent:
    """Something happened to one blob (or manifest).

    ``kind``: ``manifest`` (a manifest was resolved: ``digest``, ``what`` = ``index``/``image``),
    ``started`` (a download began), ``bytes`` (``amount`` more bytes arrived), ``finished`` (the
    blob verified and is in the cache), ``cached`` (it was there already; nothing fetched).
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
    :ivar output: the OCI layout directory written, if any, and ``output_tag`` its image name.
    :ivar output_digest: the manifest digest in the layout: :attr:`digest`, except for a Docker v2
        manifest, which a layout holds rewritten with OCI media types (as skopeo does).
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
                f"oci:{self.output}:{self.output_tag}" if self.output is not None else None
            ),
            "outputDigest": str(self.output_digest) if self.output_digest else None,
            "seconds": round(self.seconds, 3),
            "bytesDownloaded": self.bytes_downloaded,
            "bytesCached": self.bytes_cached,
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


def _kind(media_type: str | None, doc: dict[str, Any]) -> str:
    """``index`` or ``image``; raise for schema 1 and for what tank does not pull."""
    if media_type in _SCHEMA1_TYPES or doc.get("schemaVersion") == 1:
        raise UnsupportedManifest(
            "Docker schema 1 manifests are not supported (deprecated since 2017; ask the "
            "image's publisher for a schema 2 or OCI image)"
        )
    if media_type in mediatypes.INDEX_TYPES or (media_type is None and "manifests" in doc):
        return "index"
    if media_type in mediatypes.IMAGE_MANIFEST_TYPES or (media_type is None and "config" in doc):
        return "image"
    raise UnsupportedManifest(f"unsupported manifest media type {media_type!r}")


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
    ) -> None:
        self.ref = ref
        self.store = store
        self.transport = transport
        self.offline = offline
        self.refresh = refresh
        self.jobs = jobs
        self.progress = progress
        self.token: str | None = None
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

    # -- manifests ---------------------------------------------------------------------------

    def _cached_manifest(self, digest: Digest) -> tuple[str | None, dict[str, Any], bytes]:
        raw = self.store.read_blob(digest)
        media_type, doc = parse_manifest(raw, None, **self.place)
        return media_type, doc, raw

    def _fetch_manifest(self, reference: str) -> tuple[Digest, str | None, dict[str, Any], int]:
        info, token = manifest(
            self.ref.registry, self.ref.repository, reference, self.token,
            transport=self.transport,
        )
        self.token = token
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
            head, self.token = manifest_head(
                ref.registry, ref.repository, tag, self.token, transport=self.transport
            )
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
        _, media_type, doc, size = self._fetch_manifest(digest)
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
            with open_blob(
                self.ref.registry, self.ref.repository, desc.digest, self.token,
                size=desc.size, transport=self.transport,
            ) as stream:
                write, emit = writer.write, self.emit
                for chunk in stream:
                    write(chunk)
                    emit(ProgressEvent("bytes", desc.digest, desc.size, len(chunk), what))
                if stream.token and stream.token != self.token:
                    with self._token_lock:
                        self.token = stream.token
            writer.commit(stream.hasher)
        self._count(downloaded=desc.size)
        self.emit(ProgressEvent("finished", desc.digest, desc.size, what=what))

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
        with ThreadPoolExecutor(max_workers=self.jobs, thread_name_prefix="tank-pull") as pool:
            futures: list[Future[None]] = [pool.submit(self.fetch_blob, d, w) for d, w in blobs]
            _, pending = wait(futures, return_when=FIRST_EXCEPTION)
            for f in pending:
                f.cancel()
            for f in futures:
                if f.done() and not f.cancelled() and f.exception() is not None:
                    raise f.exception()  # type: ignore[misc]


def pull(
    ref: str | Reference,
    *,
    platform: str | Platform | None = None,
    output: str | None = None,
    cache: str | os.PathLike[str] | Store | None = None,
    jobs: int = 4,
    offline: bool = False,
    refresh: bool = False,
    progress: ProgressCallback | None = None,
    copy: bool = False,
    transport: Transport | None = None,
) -> PulledImage:
    """Pull an image into the cache (and into ``output``); return what was pulled.

    :param ref: an image reference (``alpine``, ``ghcr.io/o/r:tag``, ``name@sha256:…``).
    :param platform: ``os/arch[/variant]`` to choose from an index; the host's by default.
    :param output: ``oci:DIR[:TAG]`` writes an OCI image layout (TAG defaults to the
        reference's tag, or ``latest`` for a digest reference).
    :param cache: the cache directory (or a :class:`~tank.store.Store`); default
        ``$TANK_CACHE``, else ``$XDG_CACHE_HOME/tank``, else ``~/.cache/tank``.
    :param jobs: blobs downloaded at once (each over its own pooled connection).
    :param offline: never touch the network; raise :class:`~tank.errors.CacheMiss` naming what
        is missing.
    :param refresh: re-fetch the manifest and the blobs even when cached.
    :param progress: called with :class:`ProgressEvent` objects, from worker threads.
    :param copy: write the layout's blobs as copies, never hard links to the cache.
    :param transport: connection pool and TLS settings (a fresh pool sized for ``jobs``).
    """
    started = time.perf_counter()
    reference = parse_reference(ref) if isinstance(ref, str) else ref
    if jobs < 1:
        raise ValueError("jobs must be at least 1")
    target = None
    if output is not None:
        from tank.layout import LayoutTarget

        target = LayoutTarget.parse(output)
    want = (
        Platform.parse(platform) if isinstance(platform, str)
        else platform if platform is not None else None
    )
    store = cache if isinstance(cache, Store) else Store(cache)
    t = transport or Transport(pool_size=max(8, jobs))
    puller = _Puller(
        reference, store, transport=t, offline=offline, refresh=refresh, jobs=jobs,
        progress=progress,
    )
    place = puller.place

    top_digest, media_type, doc, top_size = puller.resolve_top()
    kind = _kind(media_type, doc)
    puller.emit(ProgressEvent("manifest", top_digest, top_size, what=kind))
    index_digest: Digest | None = None
    chosen: Platform | None = None
    image_digest, image_type, image_doc, image_size = top_digest, media_type, doc, top_size
    if kind == "index":
        index_digest = top_digest
        chosen = want or host_platform()
        entry = select(doc, chosen, **place)
        child = _descriptor(entry, where="the index entry", place=place)
        image_type, image_doc, image_size = puller.child(child)
        image_digest = child.digest
        if _kind(image_type, image_doc) != "image":
            raise UnsupportedManifest(
                f"the index entry for {chosen} is itself an index (nested indexes are not "
                "supported)", **place,
            )
        puller.emit(ProgressEvent("manifest", image_digest, image_size, what="image"))
    image_type = image_type or mediatypes.OCI_MANIFEST

    config_desc = _descriptor(image_doc.get("config"), where="the config descriptor", place=place)
    raw_layers = image_doc.get("layers")
    if not isinstance(raw_layers, list):
        raise InvalidManifest("the image manifest has no layers list", **place)
    layers = tuple(
        _descriptor(layer, where=f"layer {i}", place=place)
        for i, layer in enumerate(raw_layers, 1)
    )
    blobs = [(config_desc, "config"), *((layer, "layer") for layer in layers)]
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
    if target is not None:
        from tank.layout import write_image

        out_tag = target.tag or reference.tag or DEFAULT_TAG
        out_path = target.path
        out_digest, out_type, out_size = image_digest, image_type, image_size
        if image_type == mediatypes.DOCKER_MANIFEST:
            # OCI layouts take OCI media types only: rewrite the manifest, as skopeo does
            from tank.convert import docker_to_oci
            from tank.digest import compute

            converted = docker_to_oci(image_doc)
            out_digest, out_type, out_size = compute(converted), mediatypes.OCI_MANIFEST, len(
                converted
            )
            store.put_bytes(out_digest, converted)
        paths = {str(out_digest): store.blob_path(out_digest)}
        for desc, _ in blobs:
            paths[str(desc.digest)] = store.blob_path(desc.digest)
        plat = None
        if index_digest is not None and chosen is not None:
            plat = {"os": chosen.os, "architecture": chosen.architecture}
            if chosen.variant:
                plat["variant"] = chosen.variant
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
    return PulledImage(
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
    )


__all__ = ["Descriptor", "ProgressCallback", "ProgressEvent", "PulledImage", "pull"]
