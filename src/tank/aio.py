"""tank for programs that live in an event loop: the same functions, awaitable.

::

    import asyncio
    import tank.aio

    async def main() -> None:
        image = await tank.aio.pull("alpine", output="oci:./alpine")
        info = await tank.aio.inspect("alpine", platform="linux/arm64")
        release = await tank.aio.read_file("alpine", "/etc/alpine-release")
        await tank.aio.copy("alpine", "registry.local:5000/alpine", all_platforms=True)
        repo = tank.aio.Client("ghcr.io").repository("owner/app")
        manifest = await repo.manifest("v1")
        async with repo.open_blob(manifest.document.config.digest) as stream:
            async for chunk in stream:
                ...

    asyncio.run(main())

Each call runs tank's synchronous code on the event loop's default thread pool
(:meth:`asyncio.loop.run_in_executor`), so the loop is never blocked and several calls run at
once. Results, errors (:mod:`tank.errors`) and keywords are those of the synchronous functions.

Cancelling a task that awaits :func:`pull` (or :meth:`AsyncRepository.download_blob`) stops the
work itself, as Ctrl-C does: downloads stop at their next chunk, partial downloads stay in the
cache's ``ingest/`` and the next pull resumes them. The task's :class:`asyncio.CancelledError` is
raised once the worker thread has stopped, so nothing is still writing when it is seen. Calls
that are one short request (:func:`inspect`, :meth:`AsyncRepository.manifest`, …) cannot be
interrupted mid-request: cancelling them stops waiting at once and the request finishes in the
background.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from tank._cancel import Cancel
from tank._inspect import Inspection
from tank._inspect import inspect as _inspect
from tank._inspect import list_tags as _list_tags
from tank._inspect import resolve_digest as _resolve_digest
from tank._pull import PulledImage
from tank._pull import pull as _pull
from tank.registry import Client as _Client
from tank.registry import Repository

if TYPE_CHECKING:
    from tank._copy import CopyResult
    from tank.digest import Digest, Hasher
    from tank.inside import Change, FileEntry
    from tank.policy import Verdict
    from tank.reference import Reference
    from tank.registry import BlobStream, ManifestHead, ManifestInfo

_T = TypeVar("_T")


class _Stopped(Exception):
    """The worker thread stopped because its task was cancelled."""


def _guarded(fn: Callable[[], _T], cancel: threading.Event | None) -> _T:
    try:
        return fn()
    except KeyboardInterrupt:
        if cancel is not None and cancel.is_set():
            raise _Stopped from None  # never a BaseException out of a pool thread
        raise


async def _in_thread(fn: Callable[[], _T], cancel: threading.Event | None = None) -> _T:
    """Run ``fn`` on the loop's thread pool; on cancellation set ``cancel`` and, when there is
    one, wait for the thread to stop before re-raising."""
    loop = asyncio.get_running_loop()
    future = loop.run_in_executor(None, _guarded, fn, cancel)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        if cancel is not None:
            cancel.set()
            with contextlib.suppress(BaseException):
                await future  # the pull is stopping at its next chunk
        raise


async def pull(ref: str | Reference, **kwargs: Any) -> PulledImage:
    """:func:`tank.pull`, awaitable and cancellable (see the module). Takes the same keywords
    (``platform``, ``output``, ``cache``, ``jobs``, ``progress``, …); ``progress`` is called from
    worker threads, not the event loop."""
    cancel = kwargs.pop("cancel", None) or Cancel()
    return await _in_thread(functools.partial(_pull, ref, cancel=cancel, **kwargs), cancel)


async def inspect(ref: str | Reference, **kwargs: Any) -> Inspection:
    """:func:`tank.inspect`, awaitable; same keywords."""
    return await _in_thread(functools.partial(_inspect, ref, **kwargs))


async def resolve_digest(ref: str | Reference, **kwargs: Any) -> Digest:
    """:func:`tank.resolve_digest`, awaitable; same keywords."""
    return await _in_thread(functools.partial(_resolve_digest, ref, **kwargs))


async def list_tags(repository: str | Reference, **kwargs: Any) -> list[str]:
    """:func:`tank.list_tags`, awaitable; same keywords."""
    return await _in_thread(functools.partial(_list_tags, repository, **kwargs))


async def copy(source: str, destination: str, **kwargs: Any) -> CopyResult:
    """:func:`tank.copy`, awaitable and cancellable as :func:`pull` is (what was uploaded
    stays, and the next copy skips it); same keywords."""
    from tank._copy import copy as _copy

    cancel = kwargs.pop("cancel", None) or Cancel()
    return await _in_thread(
        functools.partial(_copy, source, destination, cancel=cancel, **kwargs), cancel)


async def verify(ref: str | Reference, **kwargs: Any) -> Verdict:
    """:func:`tank.verify`, awaitable; same keywords."""
    from tank.policy import verify as _verify

    return await _in_thread(functools.partial(_verify, ref, **kwargs))


async def files(ref: str | Reference, path: str = "/", **kwargs: Any) -> list[FileEntry]:
    """:func:`tank.files`, awaitable: the whole listing at once, as a list; same keywords."""
    from tank._inside import files as _files

    return await _in_thread(lambda: list(_files(ref, path, **kwargs)))


async def read_file(ref: str | Reference, path: str, **kwargs: Any) -> bytes:
    """:func:`tank.read_file`, awaitable; same keywords."""
    from tank._inside import read_file as _read_file

    return await _in_thread(functools.partial(_read_file, ref, path, **kwargs))


async def export(ref: str | Reference, out: str | os.PathLike[str], **kwargs: Any) -> int:
    """:func:`tank.export` into the file ``out``, awaitable; same keywords."""
    from tank._inside import export as _export

    return await _in_thread(functools.partial(_export, ref, out, **kwargs))


async def diff(ref_a: str | Reference, ref_b: str | Reference, **kwargs: Any) -> list[Change]:
    """:func:`tank.diff`, awaitable; same keywords."""
    from tank._inside import diff as _diff

    return await _in_thread(functools.partial(_diff, ref_a, ref_b, **kwargs))


class AsyncBlobStream:
    """A :class:`~tank.registry.BlobStream` read chunk by chunk on the thread pool:
    ``async for chunk in stream``. Verified when iteration ends, as the synchronous one."""

    def __init__(self, stream: BlobStream) -> None:
        self.stream = stream
        self._chunks: Iterator[bytes] = iter(stream)

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[bytes]:
        done = object()
        while True:
            chunk = await _in_thread(functools.partial(next, self._chunks, done))
            if chunk is done:
                return
            assert isinstance(chunk, bytes)
            yield chunk

    @property
    def verified(self) -> bool:
        """Whether every byte arrived and matched the digest."""
        return self.stream.verified


class AsyncRepository:
    """A :class:`~tank.Repository` whose read methods are awaitable (same arguments, results
    and errors). :attr:`sync` is the synchronous session underneath (tokens are shared)."""

    def __init__(self, repository: Repository) -> None:
        self.sync = repository

    def __repr__(self) -> str:
        return f"<tank.aio.AsyncRepository {self.sync.registry}/{self.sync.name}>"

    async def manifest(self, reference: str, **kwargs: Any) -> ManifestInfo:
        """:meth:`tank.Repository.manifest`."""
        return await _in_thread(functools.partial(self.sync.manifest, reference, **kwargs))

    async def manifest_head(self, reference: str) -> ManifestHead:
        """:meth:`tank.Repository.manifest_head`."""
        return await _in_thread(functools.partial(self.sync.manifest_head, reference))

    async def blob(self, digest: str, **kwargs: Any) -> bytes:
        """:meth:`tank.Repository.blob`."""
        return await _in_thread(functools.partial(self.sync.blob, digest, **kwargs))

    async def tags(self, **kwargs: Any) -> list[str]:
        """:meth:`tank.Repository.tags`."""
        return await _in_thread(functools.partial(self.sync.tags, **kwargs))

    async def download_blob(
        self, digest: str, dest: str | os.PathLike[str], *, size: int | None = None
    ) -> int:
        """:meth:`tank.Repository.download_blob`, cancellable: a cancelled download stops at its
        next chunk and leaves ``dest`` untouched."""
        cancel = Cancel()
        run = functools.partial(
            self.sync.download_blob, digest, dest, size=size, cancelled=cancel
        )
        return await _in_thread(run, cancel)

    @contextlib.asynccontextmanager
    async def open_blob(
        self, digest: str, *, offset: int = 0, hasher: Hasher | None = None,
        size: int | None = None,
    ) -> AsyncIterator[AsyncBlobStream]:
        """:meth:`tank.Repository.open_blob` as ``async with … as stream: async for chunk in
        stream``."""
        manager = self.sync.open_blob(digest, offset=offset, hasher=hasher, size=size)
        stream = await _in_thread(manager.__enter__)
        try:
            yield AsyncBlobStream(stream)
        finally:
            await _in_thread(functools.partial(manager.__exit__, None, None, None))


class Client:
    """:class:`tank.Client` whose repositories are :class:`AsyncRepository` objects. Same
    arguments; :attr:`sync` is the synchronous client."""

    def __init__(self, registry: str, **kwargs: Any) -> None:
        self.sync = _Client(registry, **kwargs)

    def __repr__(self) -> str:
        return f"<tank.aio.Client {self.sync.registry}>"

    def repository(self, name: str, *, token: str | None = None) -> AsyncRepository:
        """:meth:`tank.Client.repository`, awaitable."""
        return AsyncRepository(self.sync.repository(name, token=token))


__all__ = [
    "AsyncBlobStream",
    "AsyncRepository",
    "Client",
    "copy",
    "diff",
    "export",
    "files",
    "inspect",
    "list_tags",
    "pull",
    "read_file",
    "resolve_digest",
    "verify",
]
