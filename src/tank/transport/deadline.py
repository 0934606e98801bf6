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
    """A timer that calls ``abort`` once ``seconds`` pass, unless the block ends first."""

    def __init__(self, seconds: float, abort: Callable[[], None]) -> None:
        self.fired = False
        self._abort = abort
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True

    def _fire(self) -> None:
        self.fired = True
        with contextlib.suppress(Exception):
            self._abort()


@contextlib.contextmanager
def watchdog(seconds: float | None, abort: Callable[[], None]) -> Iterator[_Watch]:
    """Run the block; call ``abort`` (from a timer thread) if it lasts over ``seconds``."""
    watch = _Watch(seconds or 0, abort)
    if seconds:
        watch._timer.start()
    try:
        yield watch
    finally:
        watch._timer.cancel()


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
