"""Getting an image's manifests and blobs into the cache: from mirrors or the registry, in parallel.

A :class:`Fetcher` serves one reference. It knows the endpoints the image can come from
(:class:`Source`: mirrors first, then the registry itself, each a :class:`~tank.Repository` with
its own credentials, all sharing one connection pool and one token cache), reads manifests from the
cache when it may and from the registry otherwise (through the image model, :mod:`tank.image`),
and downloads blobs into the :class:`~tank.store.Store`, resuming what an earlier run left and
reporting :class:`ProgressEvent` objects from its worker threads.

How many at once: up to ``jobs`` blobs of :data:`SMALL_BLOB` bytes or more, and alongside them up
to four times as many smaller ones, at most :data:`SMALL_WINDOW` (a small blob costs a round
trip, not bandwidth; ``jobs=1`` fetches one blob at a time). A blob of at
least ``threshold`` bytes comes as byte ranges over ``connections`` connections
(:mod:`tank.registry.ranged`). Every download holds a slot of the pull's connection ``budget``
while it runs, and each extra range connection one more, so the pull never holds more
connections than the budget allows.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal, TypeVar

from tank._cancel import Cancel
from tank._fs import fsync_dir
from tank.auth.credentials import Credentials, CredentialsArg, coerce
from tank.auth.tokens import TokenCache
from tank.config import Config, Endpoint
from tank.digest import Digest, Hasher
from tank.errors import CacheMiss, DigestMismatch, InvalidManifest, TankError, UnsupportedManifest
from tank.image import Descriptor, Index, Manifest, Where, parse_manifest
from tank.image.manifest import MAX_MANIFEST_SIZE
from tank.reference import DEFAULT_TAG, Reference
from tank.registry import Client, Repository
from tank.registry.ranged import DEFAULT_FAST_RATE, DEFAULT_THRESHOLD
from tank.registry.rangeio import Budget
from tank.retry import RetryPolicy
from tank.store import BlobWriter, Store
from tank.transport import Transport

_T = TypeVar("_T")
_log = logging.getLogger("tank.pull")

#: blobs smaller than this are latency-bound: many of them are fetched at once
SMALL_BLOB = 1024 * 1024
#: how many small blobs are in flight at once (besides the ``jobs`` larger ones)
SMALL_WINDOW = 16

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


@dataclass(eq=False)
class Source:
    """One place the image can come from: a repository, and whether it is a mirror."""

    repo: Repository
    mirror: bool = False

    def __str__(self) -> str:
        return f"{self.repo.registry}/{self.repo.name}"


def open_sources(
    reference: Reference,
    endpoints: list[Endpoint],
    credentials: CredentialsArg,
    transport: Transport,
    retry: RetryPolicy,
) -> list[Source]:
    """A :class:`Source` per endpoint (:meth:`tank.config.Config.endpoints`), all on one pool
    and one token cache. The image's own registry gets the caller's credentials; another host
    only a credential *source*'s lookup for that host (a mirror never gets credentials meant for
    another). Each endpoint is insecure as its configuration entry says."""
    tokens = TokenCache()
    out = []
    for e in endpoints:
        creds: CredentialsArg = credentials
        if e.registry != reference.registry and isinstance(coerce(credentials), Credentials):
            creds = None  # the caller's credentials are for the image's registry only
        client = Client(
            e.registry, credentials=creds, transport=transport, retry=retry, token_cache=tokens,
            config=_UNBLOCKED, insecure=e.insecure,
        )
        out.append(Source(client.repository(e.repository), mirror=e.mirror))
    return out


class Endpoints:
    """The endpoints an image can come from, mirrors first, and which one serves it."""

    def __init__(self, sources: list[Source], retry: RetryPolicy) -> None:
        self.sources = sources
        self.retry = retry
        self.upstream = sources[-1]
        self.source = self.upstream
        self.source_known = len(sources) == 1

    def on(self, fn: Callable[[Source, RetryPolicy], _T], *, top: bool) -> _T:
        """``fn`` on the first endpoint that answers; a mirror's failure or miss falls through.

        For the top manifest (``top``), and for anything asked before it (a manifest found in
        the cache), every endpoint in order, mirrors with at most two tries each so that one that
        is down costs little; the one that answers the top manifest serves the rest: first it,
        then the registry itself when it was a mirror.
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

    @property
    def mirror(self) -> str | None:
        """The mirror that served, ``None`` when the registry itself did."""
        return str(self.source) if self.source.mirror else None


#: the endpoints are resolved already (blocked checked): their clients need no second look
_UNBLOCKED = Config()


class Fetcher:
    """Manifests and blobs of one reference, into one store (see the module)."""

    def __init__(
        self,
        ref: Reference,
        store: Store,
        sources: list[Source],
        *,
        retry: RetryPolicy,
        offline: bool = False,
        refresh: bool = False,
        jobs: int = 4,
        progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
        connections: int = 1,
        threshold: int = DEFAULT_THRESHOLD,
        budget: Budget | None = None,
        fast: float = DEFAULT_FAST_RATE,
    ) -> None:
        self.ref = ref
        self.store = store
        self.endpoints = Endpoints(sources, retry)
        self.retry = retry
        self.offline = offline
        self.refresh = refresh
        self.jobs = jobs
        self.connections = connections
        self.threshold = threshold
        self.budget = budget
        self.fast = fast
        self.progress = progress
        #: set (by Ctrl-C, a failed worker or the caller's ``cancel``): downloads stop at their
        #: next chunk with KeyboardInterrupt, keeping their ingest files for a resume
        self.cancelled = cancel if cancel is not None else Cancel()
        self.downloaded = 0
        self.cached = 0
        self._count_lock = threading.Lock()
        #: folders of blobs committed without fsyncing the folder: fsynced once, at the end
        self._unsynced: set[Path] = set()
        self.place = Where(ref.registry, ref.repository, ref.fetch_reference)

    def emit(self, event: ProgressEvent) -> None:
        """Report ``event`` to the progress callback, if any."""
        if self.progress is not None:
            self.progress(event)

    def on_sources(self, fn: Callable[[Source, RetryPolicy], _T], *, top: bool) -> _T:
        """:meth:`Endpoints.on`: ``fn`` on the endpoint that serves (mirrors fall through)."""
        return self.endpoints.on(fn, top=top)

    @property
    def source(self) -> Source:
        """The endpoint serving the pull (the registry itself until a mirror answered)."""
        return self.endpoints.source

    @property
    def upstream(self) -> Source:
        """The image's own registry (always the last endpoint)."""
        return self.endpoints.upstream

    # -- manifests ---------------------------------------------------------------------------

    def cached_manifest(self, digest: Digest) -> Manifest | Index:
        """A manifest from the cache (verified as it is read, capped like one from a registry)."""
        raw = self.store.read_blob(digest, max_size=MAX_MANIFEST_SIZE)
        return parse_manifest(raw, None, digest=digest, place=self.place)

    def fetch_manifest(self, reference: str, *, top: bool = True) -> Manifest | Index:
        """A manifest from the first endpoint that has it, verified and put in the cache."""

        def one(src: Source, policy: RetryPolicy) -> Manifest | Index:
            info = src.repo.with_retry(policy).fetch_manifest(reference)
            digest = info.content_digest()
            doc = parse_manifest(info.raw, info.media_type, digest=digest, place=self.place)
            self.store.put_bytes(digest, info.raw)
            return doc

        return self.on_sources(one, top=top)

    def resolve_top(self) -> Manifest | Index:
        """The manifest the reference names: from the cache when it may, else the registry."""
        ref = self.ref
        if ref.digest is not None:
            if self.store.has_blob(ref.digest) and not self.refresh:
                return self.cached_manifest(ref.digest)
            if self.offline:
                raise CacheMiss(f"offline, and the manifest {ref.digest} of {ref} is not cached")
            return self.fetch_manifest(ref.digest)
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
            return self.cached_manifest(record.digest)
        if record is not None and known and not self.refresh:
            head = self.on_sources(
                lambda src, policy: src.repo.with_retry(policy).manifest_head(tag), top=True
            )
            if head.digest == record.digest:
                return self.cached_manifest(record.digest)
        return self.fetch_manifest(tag)

    def child(self, descriptor: Descriptor) -> Manifest:
        """An index entry's image manifest, from the cache or the registry, verified by digest
        and by the size the index declares."""
        digest = descriptor.digest
        if self.store.has_blob(digest) and not self.refresh:
            doc = self.cached_manifest(digest)
        elif self.offline:
            raise CacheMiss(f"offline, and the manifest {digest} of {self.ref} is not cached")
        else:
            doc = self.fetch_manifest(digest, top=False)
            if doc.size != descriptor.size:
                raise InvalidManifest(
                    f"the index says manifest {digest} has {descriptor.size} bytes, it has "
                    f"{doc.size}", **self.place.kwargs(),
                )
        if not isinstance(doc, Manifest):
            raise UnsupportedManifest(
                f"the index entry {digest} is itself an index (nested indexes are not "
                "supported)", **self.place.kwargs(),
            )
        return doc

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
            with self._slot():
                try:
                    hasher = self._download_any(desc, writer, what)
                except DigestMismatch:
                    if not writer.resumed:
                        raise
                    # the bytes an earlier run left were not this blob's: start over once
                    self.emit(ProgressEvent(
                        "restarted", desc.digest, desc.size, _held(writer), what
                    ))
                    writer.restart()
                    writer.resumed = 0
                    hasher = self._download_any(desc, writer, what)
                path = writer.commit(hasher, sync_dir=False)
            with self._count_lock:
                self._unsynced.add(path.parent)
        self._count(downloaded=desc.size)
        self.emit(ProgressEvent("finished", desc.digest, desc.size, what=what))

    def _download_any(self, desc: Descriptor, writer: BlobWriter, what: str) -> Hasher:
        """:meth:`_download` from the endpoint serving the pull; when that mirror fails or lacks
        the blob, from the registry itself, starting over from byte 0."""
        last = self.upstream

        def one(src: Source, policy: RetryPolicy) -> Hasher:
            try:
                return self._download(desc, writer, what, src, policy)
            except TankError:
                if src is not last and _held(writer):
                    self.emit(
                        ProgressEvent("restarted", desc.digest, desc.size, _held(writer), what)
                    )
                    writer.restart()
                    writer.resumed = 0
                raise

        return self.on_sources(one, top=False)

    def _download(
        self, desc: Descriptor, writer: BlobWriter, what: str, src: Source, policy: RetryPolicy
    ) -> Hasher:
        """Stream ``desc`` into ``writer`` from where it stands (see
        :meth:`tank.Repository.fetch_blob`); return the hash of all of it."""
        digest, size, emit, budget = desc.digest, desc.size, self.emit, self.budget

        def on_bytes(n: int) -> None:
            if budget is not None:
                budget.count(n)
            emit(ProgressEvent("bytes", digest, size, n, what))

        return src.repo.with_retry(policy).fetch_blob(
            digest, writer, size=size,
            prefix=writer.prefix_hasher if writer.written else None,
            on_bytes=on_bytes,
            on_restart=lambda n: emit(ProgressEvent("restarted", digest, size, n, what)),
            cancelled=self.cancelled, connections=self.connections, threshold=self.threshold,
            budget=self.budget, fast=self.fast,
        )

    @contextlib.contextmanager
    def _slot(self) -> Iterator[None]:
        """Hold one connection of the budget while a download runs (waiting for one, unless
        the pull is cancelled meanwhile)."""
        budget = self.budget
        if budget is None:
            yield
            return
        while not budget.acquire(0.1):
            if self.cancelled.is_set():
                raise KeyboardInterrupt
        try:
            yield
        finally:
            budget.release()

    def _count(self, *, downloaded: int = 0, cached: int = 0) -> None:
        with self._count_lock:
            self.downloaded += downloaded
            self.cached += cached

    def small_window(self, count: int) -> int:
        """How many of ``count`` small blobs are fetched at once: four times ``jobs``, at most
        :data:`SMALL_WINDOW`; one at a time with ``jobs=1``."""
        if self.jobs == 1:
            return 1
        return max(1, min(SMALL_WINDOW, 4 * self.jobs, count))

    def fetch_all(self, blobs: list[tuple[Descriptor, str]]) -> None:
        """Fetch every blob: up to ``jobs`` large ones and :data:`SMALL_WINDOW` small ones at
        once, each kind in order of submission; the first error wins.

        Each blob's file is fsynced before it is renamed into ``blobs/``; the folder itself is
        fsynced once, when every blob is in (or the pull fails), not once per blob."""
        try:
            self._fetch_all(blobs)
        finally:
            with self._count_lock:
                folders, self._unsynced = self._unsynced, set()
            for folder in folders:
                fsync_dir(folder)

    def _fetch_all(self, blobs: list[tuple[Descriptor, str]]) -> None:
        if not blobs:
            return
        if self.source.repo.token is None and not self.offline:
            # one token for the whole pull: answer the challenge once, before fanning out
            self.fetch_blob(*blobs[0])
            blobs = blobs[1:]
        small = [b for b in blobs if b[0].size < SMALL_BLOB]
        large = [b for b in blobs if b[0].size >= SMALL_BLOB]
        pools = [
            ThreadPoolExecutor(max_workers=n, thread_name_prefix="tank-pull")
            for n in (self.jobs, self.small_window(len(small)))
        ]
        try:
            futures: list[Future[None]] = [
                pool.submit(self.fetch_blob, d, w)
                for pool, part in zip(pools, (large, small), strict=True) for d, w in part
            ]
            _, pending = wait(futures, return_when=FIRST_EXCEPTION)
        except BaseException:  # Ctrl-C: stop the workers at their next chunk; keep ingest files
            self.cancelled.set()
            for pool in pools:
                pool.shutdown(wait=False, cancel_futures=True)
            raise
        if pending:  # one failed: stop the others rather than finish them
            self.cancelled.set()
        for pool in pools:
            pool.shutdown(wait=True, cancel_futures=True)
        errors = [
            f.exception() for f in futures if f.done() and not f.cancelled() and f.exception()
        ]
        real = [e for e in errors if not isinstance(e, KeyboardInterrupt)]
        if real or errors:
            raise (real or errors)[0]  # type: ignore[misc]


def _held(writer: BlobWriter) -> int:
    """How many bytes ``writer`` holds: its prefix and the ranges journaled beyond it."""
    return writer.written + sum(end - start for start, end in writer.held())


__all__ = [
    "SMALL_BLOB",
    "SMALL_WINDOW",
    "Endpoints",
    "EventKind",
    "Fetcher",
    "ProgressCallback",
    "ProgressEvent",
    "Source",
    "open_sources",
]
