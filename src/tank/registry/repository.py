"""A repository on a registry: the session that owns its tokens, and everything read from it.

Made by :meth:`tank.Client.repository`. Every method verifies what it returns (manifests against
their digests and ``Docker-Content-Digest``; blobs against their digest and size) and retries the
failures worth another try per the client's :class:`~tank.retry.RetryPolicy` (the network,
``408``, ``429``, ``5xx``, honouring ``Retry-After``), each try rebuilt from scratch. Tokens are
obtained on the first challenge, renewed shortly before they expire, and upgraded when the
registry asks for another scope; the seed's stateless functions (:mod:`tank.registry`) are thin
wrappers over this class.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import threading
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar, cast

from tank._fs import atomic_file
from tank.auth.session import Authenticator, repository_scope
from tank.digest import Digest, Hasher
from tank.errors import AuthError, RegistryError
from tank.image import Descriptor, Where
from tank.image.manifest import MAX_MANIFEST_SIZE
from tank.registry.blobs import CHUNK_SIZE, BlobSink, BlobStream, fetch_into, open_stream
from tank.registry.manifests import ManifestHead, ManifestInfo, get_manifest, head_manifest
from tank.registry.names import manifest_reference
from tank.registry.ranged import DEFAULT_FAST_RATE, DEFAULT_THRESHOLD, RangedSink, fetch_ranged
from tank.registry.rangeio import Budget, FileSink
from tank.registry.taglist import MAX_TAG_PAGES, MAX_TAGS, get_tag_page, same_origin_path
from tank.registry.uploads import (
    UploadSource,
    blob_size,
    cancel_session,
    mount_sessions,
    upload,
    upload_stream,
)
from tank.registry.writes import delete_manifest, put_manifest
from tank.retry import RetryPolicy, call

if TYPE_CHECKING:
    from tank.image import Index
    from tank.registry.client import Client

_T = TypeVar("_T")


class _MemorySink:
    """A :class:`~tank.registry.blobs.BlobSink` in memory (for configs and other small blobs)."""

    def __init__(self) -> None:
        self.data = bytearray()

    @property
    def written(self) -> int:
        return len(self.data)

    def write(self, data: bytes) -> None:
        self.data += data

    def restart(self) -> None:
        self.data.clear()


class Repository:
    """One repository of a registry, and the session that reads it.

    :ivar client: the :class:`~tank.Client` it belongs to (transport, retry policy, tokens).
    :ivar name: the repository's name (``library/alpine``).
    """

    def __init__(
        self,
        client: Client,
        name: str,
        *,
        token: str | None = None,
        credentials: object = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.client = client
        self.name = name
        self.retry = retry if retry is not None else client.retry
        self._auth = Authenticator(
            client.transport, client.registry, name, credentials=credentials,
            token_cache=client.token_cache, token=token, retry=self.retry,
            insecure=client.insecure,
        )

    def __repr__(self) -> str:
        return f"<tank.Repository {self.registry}/{self.name}>"

    @property
    def registry(self) -> str:
        """The registry's ``host[:port]`` as the API addresses it."""
        return self.client.registry

    @property
    def token(self) -> str | None:
        """The bearer token this session currently holds (``None`` before any challenge, or
        when the registry takes Basic or nothing)."""
        return self._auth.token

    @property
    def auth(self) -> Authenticator:
        """The session's :class:`~tank.auth.session.Authenticator` (credentials and tokens)."""
        return self._auth

    def with_retry(self, retry: RetryPolicy) -> Repository:
        """This session (same tokens) with another retry policy."""
        twin = object.__new__(Repository)
        twin.client, twin.name, twin.retry, twin._auth = self.client, self.name, retry, self._auth
        return twin

    def _call(self, fn: Callable[[], _T], what: str) -> _T:
        return call(fn, policy=self.retry, what=f"{what} {self.registry}/{self.name}")

    # -- manifests ---------------------------------------------------------------------------

    def manifest(self, reference: str, *, max_size: int = MAX_MANIFEST_SIZE) -> ManifestInfo:
        """The manifest ``reference`` (a tag or a digest) names, verified.

        Unlike :func:`tank.registry.manifest`, :attr:`ManifestInfo.digest` is always set: the
        registry's ``Docker-Content-Digest`` (verified against the bytes), else the digest asked
        for, else computed. :attr:`ManifestInfo.document` gives the parsed model.

        :raises NotFound: no such manifest. :raises ManifestTooLarge: over ``max_size`` bytes.
        :raises DigestMismatch: bytes that do not hash to the digest asked for, or the header's.
        :raises InvalidManifest: not a JSON object tank can trust.
        """
        info = self.fetch_manifest(reference, max_size=max_size)
        if info.digest is None:
            ref = manifest_reference(reference)
            digest = ref if isinstance(ref, Digest) else info.content_digest()
            info = dataclasses.replace(info, digest=digest)
        return info

    def fetch_manifest(
        self, reference: str, *, max_size: int = MAX_MANIFEST_SIZE
    ) -> ManifestInfo:
        """:meth:`manifest`, but :attr:`ManifestInfo.digest` is the registry's word only
        (``None`` when it sent no ``Docker-Content-Digest``)."""
        ref = manifest_reference(reference)
        out = self._call(lambda: get_manifest(self._auth, ref, max_size=max_size),
                         f"GET manifest {ref} of")
        return out

    def manifest_head(self, reference: str) -> ManifestHead:
        """``HEAD`` the manifest ``reference``: digest, media type and size, no body.

        Cheap (Docker Hub does not count a ``HEAD`` against the pull rate limit). The digest is
        the registry's word only: verify it when the bytes are fetched.
        """
        ref = manifest_reference(reference)
        out = self._call(lambda: head_manifest(self._auth, ref), f"HEAD manifest {ref} of")
        return out

    # -- blobs -------------------------------------------------------------------------------

    def blob(self, digest: str, *, size: int | None = None) -> bytes:
        """A whole blob in memory, verified against ``digest`` (and ``size`` when given).

        For configs and other small blobs; stream layers with :meth:`open_blob` or
        :meth:`download_blob`. A body that breaks off is resumed where it stopped.
        """
        sink = _MemorySink()
        self.fetch_blob(digest, sink, size=size)
        return bytes(sink.data)

    @contextlib.contextmanager
    def open_blob(
        self,
        digest: str,
        *,
        offset: int = 0,
        hasher: Hasher | None = None,
        size: int | None = None,
        chunk_size: int = CHUNK_SIZE,
    ) -> Iterator[BlobStream]:
        """Open a blob for streaming: ``with repo.open_blob(d) as stream: for chunk in stream:``.

        Memory stays flat whatever the blob's size; the bytes are verified when iteration ends
        (:class:`~tank.errors.DigestMismatch` or :class:`~tank.errors.SizeMismatch` then).
        ``offset`` asks for the rest of the blob with ``Range: bytes=offset-``; ``hasher`` must
        then carry the hash of the first ``offset`` bytes. Getting the response is retried; the
        body is not: to resume, open again at the bytes kept, or use :meth:`fetch_blob`.
        """
        want = Digest.parse(digest)
        if offset < 0:
            raise ValueError("offset must be >= 0")
        if offset and (
            hasher is None or hasher.size != offset or hasher.algorithm != want.algorithm
        ):
            raise ValueError("offset > 0 needs the hasher of the first `offset` bytes of the blob")
        stream = self._call(
            lambda: open_stream(
                self._auth, want, offset=offset, hasher=hasher, size=size, chunk_size=chunk_size
            ),
            f"GET blob {want} of",
        )
        try:
            yield stream
        finally:
            stream.close()

    def fetch_blob(
        self,
        digest: str,
        sink: BlobSink,
        *,
        size: int | None = None,
        prefix: Hasher | None = None,
        on_bytes: Callable[[int], None] | None = None,
        on_restart: Callable[[int], None] | None = None,
        cancelled: threading.Event | None = None,
        connections: int = 1,
        threshold: int = DEFAULT_THRESHOLD,
        budget: Budget | None = None,
        fast: float = DEFAULT_FAST_RATE,
    ) -> Hasher:
        """Stream a blob into ``sink``, resuming where it breaks off; return its verified hash.

        The one resumable download loop (:func:`tank.registry.blobs.fetch_into`): ``prefix`` is
        the hash of what ``sink`` already holds, ``on_bytes``/``on_restart`` follow progress,
        ``cancelled`` stops it with :class:`KeyboardInterrupt` (the sink keeps its bytes).

        With ``connections`` > 1, a blob of at least ``threshold`` bytes (``size`` must be
        given) whose ``sink`` takes writes at offsets (a
        :class:`~tank.registry.ranged.RangedSink`, such as the cache's writer) is fetched as
        byte ranges over that many connections at once, within ``budget``
        (:func:`tank.registry.ranged.fetch_ranged`), unless its first range arrives at ``fast``
        bytes per second or more (``0``: always); a server that ignores ``Range`` gets one
        plain stream.
        """
        want = Digest.parse(digest)
        if (
            connections > 1 and size is not None and size >= threshold
            and callable(getattr(sink, "write_at", None))
        ):
            return fetch_ranged(
                self._auth, want, cast("RangedSink", sink), size=size, prefix=prefix,
                connections=connections, threshold=threshold, budget=budget, retry=self.retry,
                on_bytes=on_bytes, on_restart=on_restart, cancelled=cancelled, fast=fast,
            )
        return fetch_into(
            self._auth, want, sink, size=size, prefix=prefix, retry=self.retry,
            on_bytes=on_bytes, on_restart=on_restart, cancelled=cancelled,
        )

    def download_blob(
        self,
        digest: str,
        dest: str | os.PathLike[str],
        *,
        size: int | None = None,
        fsync: bool = True,
        cancelled: threading.Event | None = None,
        connections: int = 1,
        threshold: int = DEFAULT_THRESHOLD,
        fast: float = DEFAULT_FAST_RATE,
    ) -> int:
        """Stream a blob into the file ``dest``; return its size.

        ``dest`` appears only once the whole blob has verified: the bytes go to a temporary file
        beside it, which is flushed (and fsynced unless ``fsync=False``) and renamed. A body that
        breaks off is resumed with ``Range``. On any error (and when ``cancelled`` is set, which
        stops it at the next chunk) ``dest`` is untouched. With ``connections`` > 1 and a
        ``size`` of at least ``threshold``, the blob comes as ranges over that many connections
        (see :meth:`fetch_blob`).
        """
        target = Path(dest)
        with atomic_file(target, durable=fsync, readable=connections > 1) as out:
            sink = FileSink(out, size)
            self.fetch_blob(
                digest, sink, size=size, cancelled=cancelled, connections=connections,
                threshold=threshold, fast=fast,
            )
        return sink.written

    # -- tags --------------------------------------------------------------------------------

    def tag_pages(self, *, n: int | None = None) -> Generator[list[str], None, None]:
        """Each page of the repository's tags, in the registry's order, following ``Link``.

        ``n`` asks for pages of that many tags (``?n=``; a hint some registries ignore). Stop
        iterating to stop fetching. A page pointing back at one already read ends the list with
        a :class:`~tank.errors.RegistryError` rather than a loop.
        """
        if n is not None and (type(n) is not int or n < 1):
            raise ValueError("n must be a positive int")
        place = Where(self.registry, self.name, "")
        path: str | None = f"/v2/{self.name}/tags/list" + (f"?n={n}" if n is not None else "")
        seen: set[str] = set()
        while path is not None:
            if path in seen or len(seen) >= MAX_TAG_PAGES:
                raise RegistryError(
                    f"the tag list's pages do not end (page {len(seen) + 1} is {path!r})",
                    **place.kwargs(),
                )
            seen.add(path)
            current = path
            found, link = self._call(
                functools.partial(get_tag_page, self._auth, current), f"GET tags {current} of"
            )
            base = self._auth.base_url()
            path = None if link is None else same_origin_path(base, current, link, place)
            yield found

    def tags(self, *, n: int | None = None, limit: int | None = None) -> list[str]:
        """Every tag (or the first ``limit``), following ``Link`` to the last page needed."""
        if limit is not None and limit < 0:
            raise ValueError("limit must be >= 0")
        out: list[str] = []
        if limit == 0:
            return out
        pages = self.tag_pages(n=n)
        for page in pages:
            out.extend(page)
            if limit is not None and len(out) >= limit:
                pages.close()
                return out[:limit]
            if len(out) > MAX_TAGS:
                pages.close()
                raise RegistryError(
                    f"the tag list goes on past {MAX_TAGS} tags (ask for fewer with limit=, or "
                    "iterate tag_pages())", **Where(self.registry, self.name, "").kwargs(),
                )
        return out

    # -- referrers ---------------------------------------------------------------------------

    def referrers(self, digest: str, *, artifact_type: str | None = None) -> Index:
        """The manifests that refer to ``digest`` (their ``subject``): signatures, SBOMs,
        attestations, as an OCI index of descriptors (empty when there are none).

        The OCI 1.1 referrers API (``GET /v2/NAME/referrers/DIGEST``, every page), else, when
        the registry answers ``404``, the referrers tag schema (the index under the tag
        ``sha256-<hex>``). ``artifact_type`` keeps only the referrers of that
        ``artifactType`` (filtered here too: a registry may ignore the filter). The list is the
        registry's word: fetch each referrer with :meth:`manifest` to verify it
        (:func:`tank.registry.referrers.attachments` does, and checks its subject).
        """
        from tank.registry.referrers import referrers

        return referrers(self, Digest.parse(digest), artifact_type=artifact_type)


    # -- writing: blobs, mounts, manifests, tags (push) --------------------------------------

    def _pushing(self) -> Authenticator:
        """The session's authentication, asking for ``pull,push`` from now on."""
        if "push" not in self._auth.actions:
            self._auth.actions = ("pull", "push")
        return self._auth

    @contextlib.contextmanager
    def _refused_push(self) -> Iterator[None]:
        """An :class:`~tank.errors.AuthError` from a write names the scope it needed."""
        try:
            yield
        except AuthError as exc:
            if exc.status not in (401, 403):
                raise
            scope = f"repository:{self.name}:pull,push"
            refused = AuthError(
                f"pushing to {self.registry}/{self.name} was refused: it needs the scope "
                f"{scope}, which these credentials were not granted ({exc})",
                registry=self.registry, repository=self.name, reference=exc.reference,
                status=exc.status, errors=exc.errors,
            )
            raise refused from exc

    def _mount_auth(self, source: str) -> Authenticator:
        """Authentication asking for ``repository:NAME:pull,push`` and
        ``repository:SOURCE:pull`` (a mount needs both), sharing the client's token cache."""
        mounts: dict[str, Authenticator] = self.__dict__.setdefault("_mounts", {})
        auth = mounts.get(source)
        if auth is None:
            auth = Authenticator(
                self.client.transport, self.registry, self.name,
                credentials=self._auth.credentials, token_cache=self.client.token_cache,
                retry=self.retry,
            )
            auth.actions = ("pull", "push")
            auth.extra_scopes = (repository_scope(source, ("pull",)),)
            mounts[source] = auth
        return auth

    def blob_exists(self, digest: str) -> int | None:
        """``HEAD`` the blob: its size when the repository has it, ``None`` when not."""
        want = Digest.parse(digest)
        return self._call(lambda: blob_size(self._auth, want), f"HEAD blob {want} of")

    def upload_blob(
        self,
        source: UploadSource,
        *,
        digest: str | None = None,
        size: int | None = None,
        media_type: str = "application/octet-stream",
        chunk_size: int | None = None,
        mount_from: Sequence[str] = (),
        verify: bool = True,
        on_bytes: Callable[[int], None] | None = None,
        cancelled: threading.Event | None = None,
    ) -> Descriptor:
        """Upload a blob; return its descriptor (``media_type``, digest, size).

        ``source`` is a path, bytes, or a readable binary file (a seekable one is read from
        where it stands; another is spooled to a temporary file first). Blobs up to
        :data:`~tank.registry.uploads.MONOLITHIC_MAX` bytes go up in one ``POST`` + ``PUT``;
        larger ones stream in ``PATCH`` requests (one, or ``chunk_size`` bytes each, never
        below the registry's ``OCI-Chunk-Min-Length``); a failed one resumes from the offset
        the registry reports (:mod:`tank.registry.uploads` has every rule). The digest is
        computed while reading when not given; a source that does not hash to ``digest`` is
        never committed (:class:`~tank.errors.DigestMismatch`). ``mount_from`` names
        repositories of this registry to try a cross-repository mount from first.
        ``verify=False`` trusts a given digest (the registry still checks it).

        :raises AuthError: the credentials may not push here (the message names the scope).
        """
        want = Digest.parse(digest) if digest is not None else None
        auth = self._pushing()
        session = None
        with self._refused_push():
            if want is not None and mount_from:
                mounted, session = mount_sessions(self._mount_auth, want, mount_from,
                                                  self.retry)
                if mounted:
                    length = size if size is not None else self.blob_exists(want) or 0
                    return Descriptor(media_type, want, length)
            final, length = upload(
                auth, source, digest=want, size=size, retry=self.retry, chunk_size=chunk_size,
                verify=verify, session=session, on_bytes=on_bytes, cancelled=cancelled,
            )
        return Descriptor(media_type, final, length)

    def upload_blob_stream(
        self,
        chunks: Iterable[bytes],
        *,
        digest: str,
        size: int,
        on_bytes: Callable[[int], None] | None = None,
    ) -> None:
        """Upload a blob whose bytes can be read only once (``chunks``, say a download as it
        arrives): one streamed ``PATCH`` and ``PUT ?digest=``. Not resumed: when it fails,
        upload the blob again with :meth:`upload_blob`. The registry checks the digest."""
        want = Digest.parse(digest)
        auth = self._pushing()
        with self._refused_push():
            upload_stream(auth, chunks, digest=want, size=size, retry=self.retry,
                          on_bytes=on_bytes)

    def mount_blob(self, digest: str, from_repository: str) -> bool:
        """Mount a blob from another repository of this registry (``POST ?mount=&from=``):
        ``True`` when the registry mounted it (``201``), ``False`` when it opened an upload
        instead (that session is cancelled: upload the blob then). The token asks for
        ``repository:NAME:pull,push`` and ``repository:FROM:pull``."""
        want = Digest.parse(digest)
        self._pushing()
        with self._refused_push():
            mounted, session = mount_sessions(self._mount_auth, want, [from_repository],
                                              self.retry)
        if session is not None:
            cancel_session(self._auth, session)
        return mounted

    def put_manifest(self, reference: str, raw: bytes, media_type: str) -> Digest:
        """Push a manifest (or index) as ``reference`` (a tag or its digest); return its digest.

        The bytes are sent exactly as given, with ``media_type`` as their ``Content-Type``; the
        registry's ``Docker-Content-Digest`` must be their digest. Push every blob (and every
        child manifest of an index) first: registries refuse a manifest whose parts they lack.
        """
        ref = str(manifest_reference(reference))
        auth = self._pushing()
        with self._refused_push():
            return self._call(lambda: put_manifest(auth, ref, raw, media_type),
                              f"PUT manifest {ref} of")

    def delete_manifest(self, digest: str) -> None:
        """Delete the manifest ``digest`` (every tag pointing at it goes with it).

        :raises RegistryError: ``status`` 405 when the registry has deletion disabled.
        """
        want = Digest.parse(digest)
        auth = self._auth
        if "delete" not in auth.actions:
            auth.actions = (*auth.actions, "delete") if "push" in auth.actions else (
                "pull", "push", "delete")
        with self._refused_push():
            self._call(lambda: delete_manifest(auth, want), f"DELETE manifest {want} of")

    def tag(self, source_digest: str, tag: str) -> Digest:
        """Point ``tag`` at the manifest ``source_digest`` of this repository: its bytes are
        fetched and put again under the tag, unchanged (so the digest is the same)."""
        info = self.manifest(str(Digest.parse(source_digest)))
        media_type = info.media_type or str(info.json.get("mediaType") or "")
        return self.put_manifest(tag, info.raw, media_type)


__all__ = ["Repository"]
