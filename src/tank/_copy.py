"""``tank.copy``: an image (or a whole index) from one place to another, digests preserved.

Either side is a registry reference (bare, or ``docker://REF``), an OCI layout ``oci:DIR[:TAG]``,
an OCI archive ``oci-archive:FILE[:TAG]`` or a docker-archive ``docker-archive:FILE[:REF]``
(:mod:`tank._sources`). To a registry (:class:`Pusher`):

- **Digests are preserved.** Manifests and indexes go up as the bytes they were read as, so
  ``DST@digest`` is ``SRC@digest``. With ``all_platforms`` an index is copied whole: every
  child first, then the index; otherwise the platform's image alone (the host's, or
  ``platform``), as a single manifest.
- **Nothing twice.** A destination whose tag already names the image costs one ``HEAD``; one that
  has the manifest under another tag gets the manifest put, nothing else. Blobs the destination
  has are skipped (``HEAD``); blobs in another repository of the same registry are mounted
  (``POST ?mount=&from=``): the source repository when it is on the destination's registry,
  else the repositories tank remembers holding the blob there (:mod:`tank.store.locations`); the
  rest stream through the verified cache, ``jobs`` at once, and are uploaded
  (:mod:`tank.registry.uploads`). A blob already in the cache is not downloaded again, a partly
  downloaded one resumes, so an interrupted copy resumes and a finished one run again uploads
  nothing.
- **Order.** Manifests are put only after everything they reference is there (blobs, then
  children, then the top), so a copy stopped at any point leaves no manifest naming what the
  destination lacks.

To a local destination the image goes through the cache into an OCI layout, an OCI archive or a
docker-archive (from a registry that is :func:`tank.pull` with ``output=``).

Extra manifests (a signature's ``.sig`` tag, referrers) fit the same pattern: push each with
:meth:`Pusher.push_tree` after the image, since its blobs and its subject are then present.
"""

from __future__ import annotations

import dataclasses
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, Literal

from tank._attach import carry_attachments
from tank._cancel import Cancel
from tank._fetch import Fetcher, open_sources
from tank._fetch import ProgressEvent as _FetchEvent
from tank._sources import ImageSource, Location, RegistrySource, open_source, parse_location
from tank.auth.credentials import CredentialsArg
from tank.auth.tokens import TokenCache
from tank.config import Config
from tank.config import load as load_config
from tank.digest import Digest
from tank.errors import InvalidReference, NotFound, TankError, TransportError
from tank.image import Descriptor, ImageConfig, Index, Manifest
from tank.platform import Platform, host_platform
from tank.policy.check import gate as policy_gate
from tank.policy.lookup import PolicyArg
from tank.reference import DEFAULT_TAG
from tank.registry import Client, Repository
from tank.retry import DEFAULT_RETRY, RetryPolicy
from tank.store import BlobWriter, Store
from tank.store.locations import BlobLocations
from tank.transport import Transport

CopyEventKind = Literal[
    "manifest", "downloaded", "present", "mounted", "uploading", "bytes", "uploaded", "pushed",
]


@dataclass(frozen=True)
class CopyEvent:
    """Something happened to one blob or manifest of a copy (from worker threads).

    ``kind``: ``manifest`` (the source's manifest was read: ``what`` = ``index``/``image``),
    ``downloaded`` (a blob came into the cache from the source registry), ``present`` (the
    destination had it: skipped), ``mounted`` (mounted from ``source``, a repository of the
    destination's registry), ``uploading`` then ``bytes`` (``amount`` more bytes sent) then
    ``uploaded``, ``pushed`` (a manifest was put: ``what`` is the tag or digest).
    """

    kind: CopyEventKind
    digest: str
    size: int | None = None
    amount: int = 0
    what: str = ""
    source: str = ""


CopyCallback = Callable[[CopyEvent], None]


@dataclass(frozen=True)
class CopyResult:
    """What a copy did.

    :ivar digest: the top manifest's digest at the destination (the source's, for a registry
        destination; a layout holds a Docker manifest rewritten with OCI media types).
    :ivar platforms: the platforms copied (every child's with ``all_platforms``).
    :ivar manifests_pushed: manifests put (0 when the destination already had the image).
    """

    source: str
    destination: str
    digest: Digest
    media_type: str
    platforms: tuple[Platform, ...]
    manifests_pushed: int
    blobs_present: int
    blobs_mounted: int
    blobs_uploaded: int
    bytes_uploaded: int
    bytes_downloaded: int
    seconds: float

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` document (keys documented in docs/commands.md)."""
        return {
            "source": self.source, "destination": self.destination, "digest": str(self.digest),
            "mediaType": self.media_type, "platforms": [str(p) for p in self.platforms],
            "manifestsPushed": self.manifests_pushed, "blobsPresent": self.blobs_present,
            "blobsMounted": self.blobs_mounted, "blobsUploaded": self.blobs_uploaded,
            "bytesUploaded": self.bytes_uploaded, "bytesDownloaded": self.bytes_downloaded,
            "seconds": round(self.seconds, 3),
        }


Document = Manifest | Index


@dataclass
class Plan:
    """What to write: ``top`` (an index, or one image), the index's ``children`` taken (with
    their entries), and the image whose platform was chosen."""

    top: Document
    children: list[tuple[Descriptor, Manifest]]
    image: Manifest
    index: Index | None

    def images(self) -> list[Manifest]:
        """Every image manifest the plan writes."""
        return [c for _, c in self.children] if self.children else [self.image]

    def blobs(self) -> list[tuple[Descriptor, str]]:
        """Every config and layer, each once, the chosen image's first."""
        out: list[tuple[Descriptor, str]] = []
        seen: set[Digest] = set()
        images = [self.image] + [m for m in self.images() if m is not self.image]
        for image in images:
            for d, what in ((image.config, "config"), *((x, "layer") for x in image.layers)):
                if d.digest not in seen:
                    seen.add(d.digest)
                    out.append((d, what))
        return out


def plan(source: ImageSource, want: Platform | None, all_platforms: bool) -> Plan:
    """Read the source's manifests: the top, and the children the copy takes."""
    top = source.top()
    if isinstance(top, Manifest):
        return Plan(top, [], top, None)
    if all_platforms:
        children = [(e, source.child(e)) for e in top.manifests]
        entry = top.select(want or host_platform(), place=source.place)
        image = next((c for e, c in children if e.digest == entry.digest), children[0][1])
        return Plan(top, children, image, top)
    entry = top.select(want or host_platform(), place=source.place)
    child = source.child(entry)
    return Plan(child, [], child, top)


# -- to a registry -----------------------------------------------------------------------------


class _Feed:
    """Chunks from a download to an upload running in another thread, a few at a time
    (bounded memory). The download never blocks on an upload that gave up."""

    _END = object()

    def __init__(self, depth: int = 4) -> None:
        self._queue: queue.Queue[object] = queue.Queue(maxsize=depth)
        self._abandoned = threading.Event()

    def put(self, item: object) -> None:
        while not self._abandoned.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def close(self) -> None:
        """Every chunk is in: the upload may finish."""
        self.put(self._END)

    def fail(self) -> None:
        """The bytes fed are not the blob (the download restarted or failed): stop the upload."""
        self.put(_Broken())

    def abandon(self) -> None:
        """The upload gave up: take no more chunks."""
        self._abandoned.set()

    def __iter__(self) -> Iterator[bytes]:
        while True:
            item = self._queue.get()
            if item is self._END:
                return
            if isinstance(item, _Broken):
                raise TransportError("the download feeding this upload broke off")
            assert isinstance(item, bytes)
            yield item


class _Broken:
    """The feed's poison pill."""


class _TeeSink:
    """A :class:`~tank.registry.blobs.BlobSink` writing into the cache and feeding an upload."""

    def __init__(self, writer: BlobWriter, feed: _Feed) -> None:
        self.writer = writer
        self.feed = feed

    @property
    def written(self) -> int:
        """The bytes held."""
        return self.writer.written

    def write(self, data: bytes) -> None:
        """Into the cache, and on to the upload."""
        self.writer.write(data)
        self.feed.put(data)

    def restart(self) -> None:
        """The download starts over: so must the upload (from the cache, later)."""
        self.writer.restart()
        self.feed.fail()


class Pusher:
    """Puts images into one repository (see the module); counts what it did.

    :param repo: the destination session.
    :param source: where blobs come from.
    :param locations: the blob-location memory (``None``: no mounts but the source's).
    """

    def __init__(
        self, repo: Repository, source: ImageSource, *, locations: BlobLocations | None,
        jobs: int, progress: CopyCallback | None, cancel: threading.Event,
        chunk_size: int | None = None,
    ) -> None:
        self.repo = repo
        self.source = source
        self.locations = locations
        self.jobs = jobs
        self.progress = progress
        self.cancel = cancel
        self.chunk_size = chunk_size
        self.present = self.mounted = self.uploaded = self.bytes_uploaded = 0
        self.downloaded = 0
        self.manifests = 0
        self._lock = threading.Lock()

    def emit(self, event: CopyEvent) -> None:
        """Hand ``event`` to the progress callback, if any."""
        if self.progress is not None:
            self.progress(event)

    def _count(self, field: str, n: int = 1) -> None:
        with self._lock:
            setattr(self, field, getattr(self, field) + n)

    def _remember(self, digest: Digest) -> None:
        if self.locations is not None:
            self.locations.record(self.repo.registry, self.repo.name, digest)
            if self.source.remote is not None:
                self.locations.record(*self.source.remote, digest)

    def _mount_candidates(self, digest: Digest) -> list[str]:
        out: list[str] = []
        remote = self.source.remote
        if remote is not None and remote[0] == self.repo.registry and remote[1] != self.repo.name:
            out.append(remote[1])
        if self.locations is not None:
            out += [r for r in self.locations.repositories(self.repo.registry, digest)
                    if r != self.repo.name and r not in out]
        return out[:3]

    def blob(self, desc: Descriptor, what: str) -> None:
        """Make sure the destination has ``desc``: present, mounted, or uploaded."""
        repo, digest = self.repo, desc.digest
        if self.cancel.is_set():
            raise KeyboardInterrupt
        if repo.blob_exists(digest) is not None:
            self._count("present")
            self._remember(digest)
            self.emit(CopyEvent("present", digest, desc.size, what=what))
            return
        for candidate in self._mount_candidates(digest):
            if repo.mount_blob(digest, candidate):
                self._count("mounted")
                self._remember(digest)
                self.emit(CopyEvent("mounted", digest, desc.size, what=what, source=candidate))
                return
        self.emit(CopyEvent("uploading", digest, desc.size, what=what))

        def sent(n: int) -> None:
            self._count("bytes_uploaded", n)
            self.emit(CopyEvent("bytes", digest, desc.size, n, what))

        if not self._tee(desc, what, sent):
            path, verified = self.source.blob_file(desc, what)
            repo.upload_blob(path, digest=digest, size=desc.size, verify=not verified,
                             chunk_size=self.chunk_size, on_bytes=sent, cancelled=self.cancel)
        self._count("uploaded")
        self._remember(digest)
        self.emit(CopyEvent("uploaded", digest, desc.size, what=what))

    def _tee(self, desc: Descriptor, what: str, sent: Callable[[int], None]) -> bool:
        """From a registry, a blob not yet cached: download it into the cache and upload the
        same bytes as they arrive, at once. ``True`` when the upload went through; otherwise
        (a resumed ingest file, a download that restarted, a failed upload) the blob is left
        to the ordinary path: into the cache (resumed), then uploaded from there."""
        src = self.source
        if not isinstance(src, RegistrySource) or self.chunk_size is not None:
            return False
        store = src.store
        if store.has_blob(desc.digest, desc.size):
            return False
        feed = _Feed()
        outcome: list[BaseException | None] = []

        def upload() -> None:
            try:
                self.repo.upload_blob_stream(feed, digest=desc.digest, size=desc.size,
                                             on_bytes=sent)
                outcome.append(None)
            except BaseException as exc:  # reported below; the download carries on alone
                outcome.append(exc)
                feed.abandon()

        thread = threading.Thread(target=upload, name="tank-copy-upload", daemon=True)
        try:
            with store.writer(desc.digest, desc.size) as writer:
                if writer is None or writer.written:
                    return False  # cached meanwhile, or resuming an earlier run's bytes
                thread.start()
                hasher = src.fetcher.source.repo.fetch_blob(
                    desc.digest, _TeeSink(writer, feed), size=desc.size, cancelled=self.cancel,
                )
                writer.commit(hasher)
                feed.close()
        except TankError:
            feed.fail()
            thread.join()
            return False  # the ordinary path retries, resumes, or tries the registry itself
        except BaseException:
            feed.fail()
            raise
        finally:
            if thread.is_alive() or thread.ident is not None:
                thread.join()
        self._count("downloaded", desc.size)
        self.emit(CopyEvent("downloaded", desc.digest, desc.size, what=what))
        return bool(outcome) and outcome[0] is None

    def blobs(self, blobs: list[tuple[Descriptor, str]]) -> None:
        """:meth:`blob` for each, ``jobs`` at once; the first failure stops the rest."""
        if not blobs:
            return
        self.blob(*blobs[0])  # the challenges answered once, before fanning out
        pool = ThreadPoolExecutor(max_workers=self.jobs, thread_name_prefix="tank-copy")
        try:
            futures: list[Future[None]] = [pool.submit(self.blob, d, w) for d, w in blobs[1:]]
            _, pending = wait(futures, return_when=FIRST_EXCEPTION)
        except BaseException:
            self.cancel.set()
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        if pending:
            self.cancel.set()
        pool.shutdown(wait=True, cancel_futures=True)
        errors = [f.exception() for f in futures if f.done() and not f.cancelled()
                  and f.exception()]
        real = [e for e in errors if not isinstance(e, KeyboardInterrupt)]
        if real or errors:
            raise (real or errors)[0]  # type: ignore[misc]

    def has_manifest(self, reference: str) -> Digest | None:
        """The digest ``reference`` names at the destination, ``None`` when it names none."""
        try:
            head = self.repo.manifest_head(reference)
        except NotFound:
            return None
        return head.digest or self.repo.manifest(reference).digest

    def put(self, doc: Document, reference: str) -> None:
        """Put one manifest (its bytes as read) as ``reference``."""
        self.repo.put_manifest(reference, doc.raw, doc.media_type)
        self._count("manifests")
        self.emit(CopyEvent("pushed", doc.digest, doc.size, what=reference))

    def put_with_blobs(self, doc: Document, reference: str,
                       blobs: list[tuple[Descriptor, str]]) -> bool:
        """Put ``doc`` as ``reference`` after its ``blobs``, unless ``reference`` already names
        it; whether it was put."""
        if self.has_manifest(reference) == doc.digest:
            self.emit(CopyEvent("present", doc.digest, doc.size, what=reference))
            return False
        self.blobs(blobs)
        self.put(doc, reference)
        return True

    def push_tree(self, top: Document, children: list[Manifest], blobs: list[tuple[Descriptor,
                  str]], reference: str) -> None:
        """Put ``top`` as ``reference`` with everything it needs first: nothing when the
        reference already names it; the manifest alone when the destination has it by digest;
        else the blobs, then each child it lacks, then the top."""
        if self.has_manifest(reference) == top.digest:
            self.emit(CopyEvent("present", top.digest, top.size, what=reference))
            return
        if reference != str(top.digest) and self.has_manifest(str(top.digest)) == top.digest:
            self.put(top, reference)
            return
        self.blobs(blobs)
        for child in children:
            if self.has_manifest(str(child.digest)) != child.digest:
                self.put(child, str(child.digest))
        self.put(top, reference)


# -- the copy ----------------------------------------------------------------------------------


def _destination_reference(dst: Location, source: ImageSource, top: Document) -> str:
    ref = dst.reference
    assert ref is not None
    if ref.digest is not None:
        if ref.digest != top.digest:
            raise InvalidReference(dst.text, f"it names {ref.digest}, but the image copied is "
                                             f"{top.digest}")
        return str(ref.digest)
    return ref.tag or source.tag or DEFAULT_TAG


def _registry_source(
    loc: Location, store: Store, cfg: Config, credentials: CredentialsArg, t: Transport,
    policy: RetryPolicy, jobs: int, cancel: threading.Event,
    progress: CopyCallback | None,
) -> ImageSource:
    assert loc.reference is not None

    def relay(event: _FetchEvent) -> None:
        if progress is None:
            return
        if event.kind == "manifest":
            progress(CopyEvent("manifest", event.digest, event.size, what=event.what))
        elif event.kind == "finished":
            progress(CopyEvent("downloaded", event.digest, event.size, what=event.what))

    fetcher = Fetcher(
        loc.reference, store,
        open_sources(loc.reference, cfg.endpoints(loc.reference), credentials, t, policy),
        retry=policy, jobs=jobs, progress=relay, cancel=cancel,
    )
    return open_source(loc, store, fetcher)


def copy(
    source: str,
    destination: str,
    *,
    platform: str | Platform | None = None,
    all_platforms: bool = False,
    jobs: int | None = None,
    cache: str | os.PathLike[str] | Store | None = None,
    source_credentials: CredentialsArg = None,
    dest_credentials: CredentialsArg = None,
    progress: CopyCallback | None = None,
    retry: RetryPolicy | None = None,
    transport: Transport | None = None,
    config: Config | None = None,
    chunk_size: int | None = None,
    cancel: threading.Event | None = None,
    policy: PolicyArg = None,
    signatures: bool = False,
    referrers: bool = False,
) -> CopyResult:
    """Copy an image from ``source`` to ``destination``; return what was done.

    :param source: a registry reference (``ghcr.io/o/app:1``, or ``docker://…``),
        ``oci:DIR[:TAG]``, ``oci-archive:FILE[:TAG]`` or ``docker-archive:FILE[:REF]``.
    :param destination: the same kinds. A registry destination without a tag takes the
        source's tag (else ``latest``); one with a digest must name the image's digest.
    :param platform: ``os/arch[/variant]`` to take from an index (default: the config's
        platform, else this host's); written as a single manifest.
    :param all_platforms: copy a whole index: every child first, then the index.
    :param jobs: blobs in flight at once (default: the config's ``jobs``, else 4).
    :param cache: the cache directory (or :class:`~tank.store.Store`) blobs stream through.
    :param source_credentials: for the source's registry (as :func:`tank.pull`'s
        ``credentials``); ``dest_credentials`` for the destination's.
    :param progress: called with :class:`CopyEvent` objects, from worker threads.
    :param chunk_size: upload ``PATCH`` chunks of this many bytes (default: one per blob).
    :param cancel: set it to stop the copy (:class:`KeyboardInterrupt`); what was uploaded
        stays, and the next copy skips it.
    :param policy: the signature policy a registry source is judged by (as for
        :func:`tank.pull`): checked once the source's manifests are resolved, before anything
        is written or tagged (:class:`~tank.errors.PolicyRefused` otherwise).
    :param signatures: carry cosign's signatures along (the ``sha256-<hex>.sig`` tags of the
        image, and of each image of an index copied whole), byte for byte.
    :param referrers: carry the OCI 1.1 referrers (signatures, SBOMs, attestations); on a
        destination without the referrers API, its referrers tag (``sha256-<hex>``) is written.
    :raises AuthError: the destination refused the push (the message names the scope).
    """
    started = time.perf_counter()
    src = parse_location(source)
    dst = parse_location(destination)
    cfg = config if config is not None else load_config()
    for where in (src, dst):  # a blocked name on either side: refused before anything is read
        if where.reference is not None:
            cfg.check_allowed(where.reference.domain, where.reference.repository)
    jobs = jobs if jobs is not None else cfg.jobs or 4
    if jobs < 1:
        raise ValueError("jobs must be at least 1")
    platform = platform if platform is not None else cfg.platform
    want = Platform.parse(platform) if isinstance(platform, str) else platform
    store = cache if isinstance(cache, Store) else Store(cache)
    retry_policy = retry or DEFAULT_RETRY
    stop = cancel if cancel is not None else Cancel()
    if (signatures or referrers) and not (src.is_registry and dst.is_registry):
        raise InvalidReference(
            destination if src.is_registry else source,
            "signatures and referrers are carried only from a registry to a registry")
    if src.is_registry and not dst.is_registry:
        return _pull_to(src, dst, store=store, want=want, all_platforms=all_platforms, jobs=jobs,
                        credentials=source_credentials, retry=retry_policy, transport=transport,
                        config=cfg, cancel=stop, started=started, policy=policy)
    t = transport or cfg.transport(pool_size=max(8, 2 * jobs))
    trust = (
        policy_gate(policy, src.reference, config=cfg)
        if src.is_registry and src.reference is not None else None
    )
    image_source = (
        _registry_source(src, store, cfg, source_credentials, t, retry_policy, jobs, stop,
                         progress)
        if src.is_registry else open_source(src, store)
    )
    chosen = plan(image_source, want, all_platforms)
    if trust is not None and isinstance(image_source, RegistrySource):
        fetcher = image_source.fetcher
        trust.check(chosen.top, chosen.images(),  # before anything is written or tagged
                    [s.repo for s in dict.fromkeys((fetcher.source, fetcher.upstream))])
    if progress is not None and not src.is_registry:
        progress(CopyEvent("manifest", chosen.top.digest, chosen.top.size,
                           what=chosen.top.kind))
    if not dst.is_registry:
        digest = write_local(chosen, image_source, dst, store)
        return _result(src, dst, chosen, digest, started)
    assert dst.reference is not None
    client = Client(dst.reference.registry, credentials=dest_credentials, transport=t,
                    retry=retry_policy, token_cache=TokenCache(), config=cfg)
    repo = client.repository(dst.reference.repository)
    pusher = Pusher(repo, image_source, locations=BlobLocations(store), jobs=jobs,
                    progress=progress, cancel=stop, chunk_size=chunk_size)
    reference = _destination_reference(dst, image_source, chosen.top)
    pusher.push_tree(chosen.top, [c for _, c in chosen.children], chosen.blobs(), reference)
    if (signatures or referrers) and isinstance(image_source, RegistrySource):
        subjects = [chosen.top.digest, *(c.digest for _, c in chosen.children)]
        carry_attachments(pusher, image_source.fetcher.source.repo, subjects,
                          signatures=signatures, referrers=referrers)
    downloaded = pusher.downloaded + (
        image_source.fetcher.downloaded if isinstance(image_source, RegistrySource) else 0
    )
    return dataclasses.replace(
        _result(src, dst, chosen, chosen.top.digest, started),
        manifests_pushed=pusher.manifests, blobs_present=pusher.present,
        blobs_mounted=pusher.mounted, blobs_uploaded=pusher.uploaded,
        bytes_uploaded=pusher.bytes_uploaded, bytes_downloaded=downloaded,
        seconds=time.perf_counter() - started,
    )


def _result(src: Location, dst: Location, chosen: Plan, digest: Digest, started: float
            ) -> CopyResult:
    platforms = tuple(e.platform for e, _ in chosen.children if e.platform is not None)
    return CopyResult(
        source=src.text, destination=dst.text, digest=digest, media_type=chosen.top.media_type,
        platforms=platforms, manifests_pushed=0, blobs_present=0, blobs_mounted=0,
        blobs_uploaded=0, bytes_uploaded=0, bytes_downloaded=0,
        seconds=time.perf_counter() - started,
    )


def _pull_to(
    src: Location, dst: Location, *, store: Store, want: Platform | None, all_platforms: bool,
    jobs: int, credentials: CredentialsArg, retry: RetryPolicy, transport: Transport | None,
    config: Config, cancel: threading.Event, started: float, policy: PolicyArg = None,
) -> CopyResult:
    """A registry to a local destination: :func:`tank.pull` with ``output=``."""
    from tank._pull import pull

    assert src.reference is not None
    pulled = pull(src.reference, platform=want, all_platforms=all_platforms, output=dst.text,
                  cache=store, jobs=jobs, retry=retry, transport=transport,
                  credentials=credentials, config=config, cancel=cancel, policy=policy)
    return CopyResult(
        source=src.text, destination=dst.text,
        digest=pulled.output_digest or pulled.index_digest or pulled.digest,
        media_type=pulled.media_type, platforms=pulled.platforms, manifests_pushed=0,
        blobs_present=0, blobs_mounted=0, blobs_uploaded=0, bytes_uploaded=0,
        bytes_downloaded=pulled.bytes_downloaded, seconds=time.perf_counter() - started,
    )


def write_local(chosen: Plan, source: ImageSource, dst: Location, store: Store) -> Digest:
    """Write the plan into a layout, an OCI archive or a docker-archive, through the cache;
    return the top manifest's digest there."""
    from tank.outputs.image_layout import write_pulled
    from tank.outputs.oci_archive import write_pulled_archive

    for desc, what in chosen.blobs():
        source.to_cache(desc, what)
    for doc in [chosen.top, *(c for _, c in chosen.children)]:
        store.put_bytes(doc.digest, doc.raw)
    assert dst.path is not None
    index = chosen.index if chosen.children else None
    chosen_platform = None
    if chosen.index is not None and index is None:
        entry = next((e for e in chosen.index.manifests if e.digest == chosen.image.digest), None)
        chosen_platform = entry.platform if entry is not None else None
    if dst.kind in ("oci", "oci-archive"):
        tag = dst.name or source.tag or DEFAULT_TAG
        write = write_pulled if dst.kind == "oci" else write_pulled_archive
        kwargs: dict[str, Any] = {"copy": False} if dst.kind == "oci" else {}
        return write(store, dst.path, tag, image=chosen.image, index=index,
                     children=chosen.children, platform=chosen_platform, **kwargs)
    return _write_docker_archive(chosen, source, dst, store)


def _write_docker_archive(chosen: Plan, source: ImageSource, dst: Location, store: Store
                          ) -> Digest:
    from tank.outputs.archive import write_docker_archive

    assert dst.path is not None
    if chosen.children:
        raise InvalidReference(dst.text, "a docker-archive holds one platform's image")
    image = chosen.image
    config = ImageConfig.from_json(
        _config_json(store, image), require_rootfs=True,
    )
    tags = [dst.name] if dst.name else []
    write_docker_archive(
        dst.path, config_path=store.blob_path(image.config.digest),
        config_digest=image.config.digest,
        layers=[(d.digest, d.media_type, store.blob_path(d.digest)) for d in image.layers],
        diff_ids=list(config.diff_ids), repo_tags=tags,
    )
    return image.digest


def _config_json(store: Store, image: Manifest) -> dict[str, Any]:
    from tank import _json
    from tank.errors import InvalidManifest
    from tank.image import MAX_CONFIG_SIZE

    raw = store.read_blob(image.config.digest, max_size=MAX_CONFIG_SIZE)
    return _json.loads_object(raw, what="the image config", error=InvalidManifest)


__all__ = ["CopyCallback", "CopyEvent", "CopyResult", "Plan", "Pusher", "copy", "plan"]

