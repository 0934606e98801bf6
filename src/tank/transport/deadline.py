"""Deadlines for what must be small and quick: response headers, and small bodies.

A read timeout bounds one wait for data, not a whole answer: a server that sends a byte every
two seconds never trips it, and could hold ``tank inspect`` for half an hour. So the parts of an
answer that are small by nature get an overall deadline, a few multiples of the read timeout
(:data:`DEADLINE_FACTOR`):

- the status line and headers of every response: the pools' connections
  (:data:`POOL_CLASSES`) start a watchdog around ``getresponse()`` that shuts the socket down when
  the deadline passes;
- small bodies (manifests, token answers, tag pages, error bodies), read with
  :func:`read_small`, under the same kind of watchdog.

Blob bodies are not small: the low-speed limit (:class:`~tank.transport.timeouts.SpeedLimit`)
governs them instead. A deadline that passes is a :class:`~tank.errors.TransportError` that says
so (and is retried like any other network failure).
"""

from __future__ import annotations

import contextlib
import heapq
import socket
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Final

from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from tank.errors import TransportError
from tank.transport.origins import strip_query

if TYPE_CHECKING:
    from urllib3 import BaseHTTPResponse
    from urllib3.response import HTTPResponse

#: the deadline for headers and small bodies, in multiples of the read timeout
DEADLINE_FACTOR: Final = 4

_local = threading.local()
#: each response's deadline for its (small) body, in seconds, as the transport set it
_deadlines: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()


class _Watch:
    """A deadline that calls ``abort`` once ``seconds`` pass, unless cancelled first."""

    __slots__ = ("_abort", "cancelled", "fired")

    def __init__(self, abort: Callable[[], None]) -> None:
        self.fired = False
        self.cancelled = False
        self._abort = abort

    def _fire(self) -> None:
        if self.cancelled:
            return
        self.fired = True
        with contextlib.suppress(Exception):
            self._abort()


class _Clock:
    """One daemon thread for every watch of the process: a heap of deadlines, fired in order.

    Starting a timer thread per request cost more than the request itself on small blobs; a
    cancelled watch stays in the heap until its time, and is then dropped unfired.
    """

    def __init__(self) -> None:
        self._cv = threading.Condition()
        self._heap: list[tuple[float, int, _Watch]] = []
        self._seq = 0
        self._thread: threading.Thread | None = None

    def add(self, seconds: float, watch: _Watch) -> None:
        """Fire ``watch`` in ``seconds`` unless it is cancelled by then."""
        with self._cv:
            self._seq += 1
            heapq.heappush(self._heap, (time.monotonic() + seconds, self._seq, watch))
            if self._thread is None or not self._thread.is_alive():  # first use, or a fork
                self._thread = threading.Thread(
                    target=self._run, name="tank-deadlines", daemon=True
                )
                self._thread.start()
            elif self._heap[0][2] is watch:
                self._cv.notify()

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._heap:
                    self._cv.wait()
                due, _, watch = self._heap[0]
                wait = due - time.monotonic()
                if wait > 0:
                    self._cv.wait(wait)
                    continue
                heapq.heappop(self._heap)
            watch._fire()


_clock = _Clock()


@contextlib.contextmanager
def watchdog(seconds: float | None, abort: Callable[[], None]) -> Iterator[_Watch]:
    """Run the block; call ``abort`` (from the deadline thread) if it lasts over ``seconds``."""
    watch = _Watch(abort)
    if seconds:
        _clock.add(seconds, watch)
    try:
        yield watch
    finally:
        watch.cancelled = True
        watch._abort = _nothing  # what it would abort is not kept alive until its deadline


def _nothing() -> None:
    """What a cancelled watch calls."""


@contextlib.contextmanager
def header_deadline(seconds: float | None) -> Iterator[_Watch | None]:
    """Give the next response headers read by this thread ``seconds`` (see the module);
    yields the watch (``fired`` says whether the deadline passed) once the headers are in."""
    _local.deadline = seconds
    _local.watch = None
    try:
        yield None
    finally:
        _local.deadline = None


def headers_timed_out() -> bool:
    """Whether the last header read of this thread was cut off by its deadline."""
    watch = getattr(_local, "watch", None)
    return bool(watch is not None and watch.fired)


def _get_response(connection: HTTPConnection, get: Callable[[], HTTPResponse]) -> HTTPResponse:
    """``get()`` under a watchdog that shuts the socket down at the deadline; a response cut
    short that way (http.client may take the end of the socket for the end of the headers) is
    a :class:`TimeoutError`."""
    seconds = getattr(_local, "deadline", None)

    def abort() -> None:
        sock = connection.sock
        if sock is not None:
            sock.shutdown(socket.SHUT_RDWR)

    with watchdog(seconds, abort) as watch:
        _local.watch = watch
        response = get()
    if watch.fired:
        response.close()
        raise TimeoutError(f"the response headers took more than {seconds:g} s")
    return response


class DeadlineHTTPConnection(HTTPConnection):
    """An HTTP connection whose response headers have a deadline (see the module)."""

    def getresponse(self) -> HTTPResponse:  # type: ignore[override]
        """:meth:`urllib3.connection.HTTPConnection.getresponse`, under the deadline."""
        return _get_response(self, super().getresponse)


class DeadlineHTTPSConnection(HTTPSConnection):
    """An HTTPS connection whose response headers have a deadline (see the module)."""

    def getresponse(self) -> HTTPResponse:  # type: ignore[override]
        """:meth:`urllib3.connection.HTTPConnection.getresponse`, under the deadline."""
        return _get_response(self, super().getresponse)


class DeadlineHTTPConnectionPool(HTTPConnectionPool):
    """A pool of :class:`DeadlineHTTPConnection`."""

    ConnectionCls = DeadlineHTTPConnection


class DeadlineHTTPSConnectionPool(HTTPSConnectionPool):
    """A pool of :class:`DeadlineHTTPSConnection`."""

    ConnectionCls = DeadlineHTTPSConnection


#: ``PoolManager.pool_classes_by_scheme`` for pools whose headers have deadlines
POOL_CLASSES: Final = {"http": DeadlineHTTPConnectionPool, "https": DeadlineHTTPSConnectionPool}


def set_body_deadline(response: BaseHTTPResponse, seconds: float | None) -> None:
    """Give ``response``'s body, when read with :func:`read_small`, ``seconds`` at most."""
    if seconds:
        _deadlines[response] = seconds


def read_small(response: BaseHTTPResponse, amount: int) -> bytes:
    """``response.read(amount)`` under the body's deadline (see :func:`set_body_deadline`): a
    body still arriving when it passes is a :class:`~tank.errors.TransportError`."""
    seconds = _deadlines.get(response)
    started = time.monotonic()
    with watchdog(seconds, response.shutdown) as watch:
        try:
            data = response.read(amount, decode_content=True)
        except Exception:
            if not watch.fired:
                raise
            data = b""
    if watch.fired:
        where = strip_query(getattr(response, "url", "") or "") or "the server"
        took = time.monotonic() - started
        raise TransportError(
            f"{where}: a small body (a manifest, a token or an error) still arriving after "
            f"{took:.0f} s: the server is too slow (the deadline is a few read timeouts: "
            "TANK_READ_TIMEOUT)", url=where,
        )
    return data


__all__ = [
    "DEADLINE_FACTOR",
    "POOL_CLASSES",
    "header_deadline",
    "headers_timed_out",
    "read_small",
    "set_body_deadline",
    "watchdog",
]
