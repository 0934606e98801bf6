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
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar, cast

from tank._fs import atomic_file
from tank.auth.session import Authenticator
from tank.digest import Digest, Hasher
from tank.errors import RegistryError
from tank.image import Where
from tank.image.manifest import MAX_MANIFEST_SIZE
from tank.registry.blobs import CHUNK_SIZE, BlobSink, BlobStream, fetch_into, open_stream
from tank.registry.manifests import ManifestHead, ManifestInfo, get_manifest, head_manifest
from tank.registry.names import manifest_reference
from tank.registry.ranged import DEFAULT_FAST_RATE, DEFAULT_THRESHOLD, RangedSink, fetch_ranged
from tank.registry.rangeio import Budget, FileSink
from tank.registry.taglist import MAX_TAG_PAGES, MAX_TAGS, get_tag_page, same_origin_path
from tank.retry import RetryPolicy, call

if TYPE_CHECKING:
    from tank.registry.client import Client

_T = TypeVar("_T")


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
        :meth:`download_blob`. A failure worth another try fetches the whole blob again.
        """
        want = Digest.parse(digest)

        def once() -> bytes:
            stream = open_stream(self._auth, want, size=size)
            try:
                return b"".join(stream)
            finally:
                stream.close()

        out = self._call(once, f"GET blob {want} of")
        return out

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
            base = self.client.transport.base_url(self.registry)
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


__all__ = ["Repository"]
