"""One large blob over several connections: byte ranges written at their offsets, hashed in order.

A CDN caps what one connection gets, so a single stream waits for the cap whatever the link could
carry. :func:`fetch_ranged` fetches a blob of known size as ranges (``Range: bytes=a-b``) over up
to ``connections`` connections at once, each range written at its offset into the one sink (the
cache's ingest file), and hashes the whole blob in order as the contiguous prefix grows.

Invariants:

- **Verified as ever.** The digest covers every byte of the blob in order; :func:`fetch_ranged`
  returns only once it matches (and the size), and the sink is then told :meth:`complete`. The
  cache commits nothing else (:meth:`tank.store.BlobWriter.commit` verifies again).
- **Only a matching ``206`` counts.** The first range asked is the probe: a ``206`` whose
  ``Content-Range`` is exactly the range asked, out of the descriptor's size, turns the other
  connections on. A ``200`` (the server ignores ``Range``) is read as the one plain stream it is,
  from byte 0: the blob is never downloaded twice. A ``206`` for another range is refused
  (:class:`~tank.errors.RegistryError`), a total other than the size is a
  :class:`~tank.errors.SizeMismatch`, and a range body never reads past its end + 1.
- **No second pass in the common case.** Bytes that arrive at the hash's frontier are hashed from
  memory; bytes of later ranges are kept in memory for the hash up to :data:`HASH_WINDOW` per
  blob, beyond that read back (from the page cache) when the frontier reaches them.
- **A CDN target is reused.** When the registry redirects the probe to another origin, the next
  ranges go straight to that URL (never with the registry's credentials); one that stops working
  (``401``, ``403``, ``404``, ``410``: an expired signed URL) is resolved again through the
  registry.
- **Resumable.** Finished ranges are reported to the sink (:meth:`RangedSink.keep`) from a
  thread of their own, which makes them durable and journals them (the cache's writer fsyncs the
  ingest file, then appends to a small fsynced journal beside it); a later run is given them back
  (:meth:`RangedSink.held`), re-hashes them, and fetches only the rest. A range that breaks off is
  resumed from its last byte, per the :class:`~tank.retry.RetryPolicy`.
- **Only when it helps.** The other connections open only when the first range arrives slower
  than ``fast`` bytes per second (timed over its first :data:`DECIDE_BYTES`, or all of it), and
  the whole pull too (the budget meters it): on a link that no cap holds back, or in a pull bound
  by the CPU, the rest of the blob comes after the first range as one plain stream
  (:func:`~tank.registry.blobs.fetch_into`, the cheapest path), or, when an earlier run left
  ranges to keep, in as few ranges as possible over the one connection.
- **Bounded.** Connections beyond the first take a slot of the pull's ``budget`` (a semaphore
  shared by every blob) for each range, so a pull never opens more than its connection budget.
"""

from __future__ import annotations

import bisect
import contextlib
import queue
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Final, Protocol

from tank._cancel import aborting
from tank.digest import Digest, Hasher
from tank.errors import DigestMismatch, RegistryError, SizeMismatch, TankError, TransportError
from tank.image import Where
from tank.registry.blobs import CHUNK_SIZE, BlobSink, BlobStream, fetch_into
from tank.registry.rangeio import (
    Budget,
    FileSink,
    Range,
    plan_ranges,
    range_size,
)
from tank.responses import raise_for_status
from tank.retry import DEFAULT_RETRY, RetryPolicy, is_retryable
from tank.transport import Origin, discard, release

if TYPE_CHECKING:
    from urllib3 import BaseHTTPResponse

    from tank.auth.session import Authenticator

#: blobs at least this large are fetched as ranges by default (a setting)
DEFAULT_THRESHOLD: Final = 64 * 1024 * 1024
#: connections per large blob by default (a setting)
DEFAULT_CONNECTIONS: Final = 4
#: bytes that arrived ahead of the hash's frontier and are kept in memory for it, per blob
HASH_WINDOW: Final = 4 * 1024 * 1024
#: a first range that arrives at least this fast (bytes per second) keeps the blob on its one
#: connection: the link is not capped where splitting would help, and more connections would only
#: cost CPU and memory (a setting: ``layer-fast-rate``; 0 splits always)
DEFAULT_FAST_RATE: Final = 200_000_000
#: how much of the first range is timed before deciding whether to open more connections
DECIDE_BYTES: Final = 4 * 1024 * 1024
#: a range longer than this is journaled as it goes, each time this much more arrived
SYNC_EVERY: Final = 64 * 1024 * 1024
#: bytes asked of a range's socket per read: less than a single stream's, as a blob's several
#: connections (and several such blobs) read at once
READ_SIZE: Final = 256 * 1024
#: a target that answers one of these was a signed URL that expired: ask the registry again
_EXPIRED: Final = frozenset({401, 403, 404, 410})
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


class RangedSink(BlobSink, Protocol):
    """A :class:`~tank.registry.blobs.BlobSink` that can also take bytes at any offset.

    :attr:`written` is the contiguous prefix whose hash the caller holds; :meth:`held` the
    ranges beyond it already on disk from an earlier run.
    """

    def held(self) -> list[tuple[int, int]]:
        """Ranges ``(start, end)`` beyond :attr:`written` that the sink already holds."""
        ...

    def begin_ranged(self) -> None:
        """Called once before ranges are journaled or written apart from the prefix (the cache
        starts its journal); bytes written right after the prefix before it are one stream."""

    def write_at(self, offset: int, data: bytes) -> None:
        """Write ``data`` at ``offset`` of the blob."""

    def read_at(self, offset: int, size: int) -> bytes:
        """Up to ``size`` bytes written at ``offset`` (for the hash)."""
        ...

    def keep(self, ranges: list[tuple[int, int]]) -> None:
        """These ranges are written: make them durable and remember them for a resume."""

    def complete(self) -> None:
        """Every byte of the blob is written and verified."""

    def settle(self, prefix: int) -> None:
        """The first ``prefix`` bytes are written and hashed: go on as one stream after them
        (:meth:`write` appends there)."""


class _Transfer:
    """The state one :func:`fetch_ranged` shares between its workers, its hash and its journal
    threads."""

    def __init__(
        self, auth: Authenticator, digest: Digest, sink: RangedSink, size: int, hasher: Hasher,
        plan: list[Range], *, retry: RetryPolicy, budget: Budget | None,
        on_bytes: Callable[[int], None] | None, cancelled: threading.Event | None,
        fast: float = DEFAULT_FAST_RATE,
    ) -> None:
        self.auth, self.digest, self.sink, self.size = auth, digest, sink, size
        self.hasher, self.ranges, self.retry, self.budget = hasher, plan, retry, budget
        self.on_bytes, self.cancelled = on_bytes, cancelled
        self.place = Where(auth.registry, auth.repository, str(digest)).kwargs()
        self.starts = [r.start for r in plan]
        self.todo: deque[Range] = deque(r for r in plan if r.pos < r.end)
        self.cv = threading.Condition()
        self.pieces: dict[int, bytes] = {}
        self.window = 0
        self.frontier = hasher.size
        self.error: BaseException | None = None
        self.started = time.monotonic()
        self.target: str | None = None  # a CDN URL that answered a range
        self.own = Origin.of(auth.transport.base_url(auth.registry))
        self.responses: set[BaseHTTPResponse] = set()
        self.journal: queue.SimpleQueue[tuple[int, int] | None] = queue.SimpleQueue()
        self.fast = fast
        #: the first range while it is timed: (the range, its first byte asked, when it was)
        self.probe: tuple[Range, int, float] | None = None
        #: opens the other connections (set by the caller; called at most once)
        self.spawn: Callable[[], None] | None = None
        #: bytes asked of the socket per read: less when several connections read at once
        self.read_size = READ_SIZE
        #: where the ranges end and one plain stream takes over (an uncapped link, see decide)
        self.handoff: int | None = None
        #: the first range when it was asked to the blob's end (nothing held after it)
        self.open_ended: Range | None = None
        #: that response, handed over at :attr:`handoff` to be read on as one plain stream
        self.rest: BaseHTTPResponse | None = None

    # -- requests

    def open(self, start: int, end: int) -> BaseHTTPResponse:
        """The response to ``Range: bytes=start-(end-1)``: from the CDN target that served the
        last range while it works, else through the registry (whose redirect may name a new
        target). Statuses other than 2xx raise."""
        headers = {"Accept-Encoding": "identity", "Range": f"bytes={start}-{end - 1}"}
        target = self.target
        if target is not None:
            try:
                response = self.auth.transport.request("GET", target, headers=headers)
            except TankError:
                self.target = None  # the next try asks the registry again
                raise
            if response.status not in _EXPIRED:
                raise_for_status(response, what="blob", **self.place)
                return response
            release(response)
            self.target = None  # an expired signed URL: the registry gives a fresh one
        response = self.auth.send(
            "GET", f"/v2/{self.auth.repository}/blobs/{self.digest}", reference=str(self.digest),
            headers=headers,
        )
        raise_for_status(response, what="blob", **self.place)
        answered = response.url or ""
        if "://" in answered and Origin.of(answered) != self.own:
            self.target = answered
        return response

    def check_range(self, response: BaseHTTPResponse, start: int, end: int) -> None:
        """Refuse a ``206`` that is not exactly ``[start, end)`` of a blob of :attr:`size`."""
        value = response.headers.get("Content-Range", "").strip()
        match = _CONTENT_RANGE.fullmatch(value)
        if match is None or (int(match[1]), int(match[2]) + 1) != (start, end):
            discard(response)
            raise RegistryError(
                f"asked for bytes {start}-{end - 1} but the server answered Content-Range "
                f"{value!r}", status=206, **self.place,
            )
        if match[3] != "*" and int(match[3]) != self.size:
            discard(response)
            raise SizeMismatch(
                self.size, int(match[3]), what="blob", digest=self.digest,
                registry=self.auth.registry, repository=self.auth.repository,
            )

    # -- workers

    def take(self) -> Range | None:
        """The next range to fetch, or ``None`` when none is left or the transfer stopped."""
        with self.cv:
            if self.error is not None or not self.todo:
                return None
            return self.todo.popleft()

    def work(self, first: tuple[Range, BaseHTTPResponse] | None = None, *, extra: bool) -> None:
        """Fetch ranges until none is left; ``first`` is one whose response is open already.
        An ``extra`` worker holds a slot of the budget (when there is one) for each range."""
        if first is not None and (not self.run(*first) or self.handoff is not None):
            return  # stopped; or the rest comes as one plain stream (see decide)
        budget = self.budget if extra else None
        while True:
            if budget is not None:
                while not budget.acquire(0.05):
                    if self.stopped() or not self.todo:
                        return
            try:
                item = self.take()
                if item is None or not self.run(item, None):
                    return
            finally:
                if budget is not None:
                    budget.release()

    def run(self, item: Range, response: BaseHTTPResponse | None) -> bool:
        """:meth:`fetch` one range; whether the worker goes on (see :meth:`failed`)."""
        try:
            self.fetch(item, response)
        except BaseException as exc:
            return self.failed(item, exc)
        return True

    def fetch(self, item: Range, response: BaseHTTPResponse | None) -> None:
        """Fetch the rest of one range into the sink."""
        if response is None:
            response = self.open(item.pos, item.end)
            if response.status != 206:
                discard(response)
                self.target = None
                raise TransportError(
                    f"{self.auth.registry}/{self.auth.repository}@{self.digest}: asked for a "
                    f"range, the server answered {response.status} (it answered ranges before)"
                )
            self.check_range(response, item.pos, item.end)
        with self.cv:
            self.responses.add(response)
        speed = self.auth.transport.speed_limit
        monitor = speed.monitor() if speed is not None else None
        read, write_at, cv, on_bytes = response.read1, self.sink.write_at, self.cv, self.on_bytes
        try:
            while item.pos < item.end:
                if self.stopped():
                    raise KeyboardInterrupt
                data = read(min(self.read_size, item.end - item.pos), decode_content=False)
                if not data:
                    raise TransportError(
                        f"{self.auth.registry}/{self.auth.repository}@{self.digest}: the range "
                        f"{item.start}-{item.end - 1} broke off at byte {item.pos}"
                    )
                if monitor is not None:
                    monitor.update(len(data))
                at = item.pos
                write_at(at, data)
                with cv:
                    item.pos = at + len(data)
                    if at == self.frontier or self.window + len(data) <= HASH_WINDOW:
                        self.pieces[at] = data
                        self.window += len(data)
                    cv.notify_all()
                if on_bytes is not None:
                    on_bytes(len(data))
                if (item.pos - item.start) // SYNC_EVERY != (at - item.start) // SYNC_EVERY:
                    # a long range: journal its progress (which starts its writeback) as it goes
                    self.journal.put((item.start, item.pos))
                probe = self.probe
                if probe is not None and probe[0] is item and (
                    item.pos - probe[1] >= DECIDE_BYTES or item.pos == item.end
                ):
                    self.decide(item.pos - probe[1], time.monotonic() - probe[2])
                    if self.handoff is not None:
                        self.rest = response  # read on as one plain stream (see _run)
                        return
            if item is not self.open_ended and read(1, decode_content=False):
                raise RegistryError(  # never more than the range asked + 1 byte
                    f"the server sent more than the range {item.start}-{item.end - 1} asked",
                    status=206, **self.place,
                )
        except BaseException as exc:
            discard(response)
            if isinstance(exc, (TankError, KeyboardInterrupt)):
                raise
            raise TransportError(
                f"{self.auth.registry}/{self.auth.repository}@{self.digest}: the range "
                f"{item.start}-{item.end - 1} broke off at byte {item.pos}: {exc}"
            ) from exc
        finally:
            with self.cv:
                self.responses.discard(response)
        if item is self.open_ended and item.end < self.size:
            discard(response)  # the rest of its body is other ranges': close the connection
        else:
            release(response)
        self.journal.put((item.start, item.end))

    def decide(self, amount: int, seconds: float) -> None:
        """The first range brought ``amount`` bytes in ``seconds``: open the other connections
        unless that, or the whole pull's rate (its :class:`Budget`'s), is at least
        :attr:`fast` bytes per second."""
        probe, self.probe = self.probe, None
        pull = self.budget.rate() if self.budget is not None else 0.0
        if self.fast > 0 and max(amount / max(seconds, 1e-9), pull) >= self.fast:
            self.read_size = CHUNK_SIZE
            with self.cv:
                first = probe[0] if probe is not None else None
                if first is not None and first is self.open_ended:
                    # nothing held after it: the rest of its response is one plain stream
                    self.handoff = first.pos
                    self.todo.clear()
                    self.cv.notify_all()
                    return
            self.sink.begin_ranged()
            self.coalesce()  # one connection: the rest in as few requests as possible
            return
        self.sink.begin_ranged()
        spawn, self.spawn = self.spawn, None
        if spawn is not None:
            spawn()

    def coalesce(self) -> None:
        """Make each run of adjacent ranges still to fetch one range."""
        with self.cv:
            todo = set(map(id, self.todo))
            merged: list[Range] = []
            for r in self.ranges:
                last = merged[-1] if merged else None
                if (
                    last is not None and id(r) in todo and id(last) in todo
                    and last.end == r.start
                ):
                    last.end = r.end
                    continue
                merged.append(r)
            kept = set(map(id, merged))
            self.todo = deque(r for r in self.todo if id(r) in kept)
            self.ranges = merged
            self.starts = [r.start for r in merged]

    def failed(self, item: Range, exc: BaseException) -> bool:
        """Record a range's failure: requeue it after the backoff when another try may cure it
        (``True``: the worker goes on), else stop the transfer (``False``). A failure after
        the transfer stopped is that stop's doing, and not recorded."""
        if self.stopped():
            return False
        if self.probe is not None and self.probe[0] is item:
            self.decide(0, 1.0)  # the first range failed: a troubled link, use them all
        item.attempts += 1
        if isinstance(exc, TankError) and is_retryable(exc) and item.attempts < self.retry.attempts:
            delay = self.retry.delay(item.attempts, exc)
            if self.cancelled is not None:
                if self.cancelled.wait(delay):
                    self.stop(KeyboardInterrupt())
                    return False
            else:
                time.sleep(delay)
            with self.cv:
                self.todo.appendleft(item)
            return True
        if isinstance(exc, TankError) and item.attempts > 1 and is_retryable(exc):
            exc.retried = (item.attempts, time.monotonic() - self.started)
        self.stop(exc)
        return False

    def stopped(self) -> bool:
        """Whether the transfer stopped (an error, or ``cancelled``)."""
        if self.cancelled is not None and self.cancelled.is_set() and self.error is None:
            self.stop(KeyboardInterrupt())
        return self.error is not None

    def stop(self, exc: BaseException) -> None:
        """Stop every worker (their blocked reads return at once); the first error wins."""
        with self.cv:
            if self.error is None:
                self.error = exc
            responses = list(self.responses)
            self.cv.notify_all()
        for response in responses:
            with contextlib.suppress(Exception):
                response.shutdown()

    # -- the hash, in order

    def on_disk(self, at: int) -> int:
        """How far the bytes from ``at`` on are written (``at`` itself when not yet)."""
        i = bisect.bisect_right(self.starts, at) - 1
        if i < 0:
            return at
        r = self.ranges[i]
        return r.pos if r.start <= at < r.end else at

    def hash_all(self) -> None:
        """Hash the blob from the frontier to its end, as the bytes arrive (the hash thread)."""
        try:
            while True:
                with self.cv:
                    while True:
                        end = self.size if self.handoff is None else self.handoff
                        if self.error is not None or self.frontier >= end:
                            return
                        piece = self.pieces.pop(self.frontier, None)
                        if piece is not None:
                            self.window -= len(piece)
                            break
                        upto = self.on_disk(self.frontier)
                        if upto > self.frontier:
                            ahead = [k for k in self.pieces if k > self.frontier]
                            upto = min([upto, *ahead])
                            break
                        self.cv.wait()
                if piece is None:  # written, but not kept in memory: read it back
                    piece = self.sink.read_at(self.frontier, min(CHUNK_SIZE, upto - self.frontier))
                    if not piece:
                        raise TransportError(f"the ingest file ended early at {self.frontier}")
                self.hasher.update(piece)
                with self.cv:
                    self.frontier += len(piece)
                    self.cv.notify_all()
        except BaseException as exc:
            self.stop(exc)

    def journal_all(self) -> None:
        """Report finished ranges to the sink (durable, journaled), batching what is queued;
        until ``None`` is queued (the journal thread)."""
        try:
            done = False
            while not done:
                batch: list[tuple[int, int]] = []
                item = self.journal.get()
                while True:
                    if item is None:
                        done = True
                        break
                    batch.append(item)
                    try:
                        item = self.journal.get_nowait()
                    except queue.Empty:
                        break
                if batch:
                    self.sink.keep(batch)
        except BaseException as exc:
            self.stop(exc)

def fetch_ranged(
    auth: Authenticator,
    digest: Digest,
    sink: RangedSink,
    *,
    size: int,
    prefix: Hasher | None = None,
    connections: int = DEFAULT_CONNECTIONS,
    threshold: int = DEFAULT_THRESHOLD,
    budget: Budget | None = None,
    retry: RetryPolicy = DEFAULT_RETRY,
    on_bytes: Callable[[int], None] | None = None,
    on_restart: Callable[[int], None] | None = None,
    cancelled: threading.Event | None = None,
    fast: float = DEFAULT_FAST_RATE,
) -> Hasher:
    """Fetch blob ``digest`` (``size`` bytes) into ``sink`` as ranges over up to ``connections``
    connections; return its verified hash (see the module).

    ``prefix`` is the hash of the ``sink.written`` bytes it holds (without it they are
    discarded), and :meth:`RangedSink.held` names more ranges held beyond them; both are kept,
    hashed again in order, and only the rest is fetched. When the kept bytes turn out not to
    belong to the blob, it starts over once from nothing (``on_restart`` is told). The other
    arguments are :func:`~tank.registry.blobs.fetch_into`'s; ``fast`` is the rate (bytes per
    second) of a first range that keeps the blob on one connection (``0``: always split).
    """
    hasher = prefix.copy() if prefix is not None and prefix.size == sink.written else None
    if hasher is None and not sink.written:
        hasher = digest.hasher()  # held ranges without a prefix: nothing to discard
    held = sink.held() if hasher is not None else []
    if hasher is None and (sink.written or held):
        if on_restart is not None:
            on_restart(sink.written)
        sink.restart()
    kept = bool(sink.written or held)
    state = _Transfer(
        auth, digest, sink, size, hasher or digest.hasher(),
        plan_ranges(sink.written, held, size, range_size(size, connections, threshold)),
        retry=retry, budget=budget, on_bytes=on_bytes, cancelled=cancelled, fast=fast,
    )
    try:
        return _run(state, connections, on_restart)
    except DigestMismatch:
        if not kept:
            raise
    # the bytes an earlier run left were not this blob's: start over once, from nothing
    if on_restart is not None:
        on_restart(size)
    sink.restart()
    return fetch_ranged(
        auth, digest, sink, size=size, connections=connections, threshold=threshold,
        budget=budget, retry=retry, on_bytes=on_bytes, on_restart=on_restart,
        cancelled=cancelled, fast=fast,
    )


def _probe(state: _Transfer) -> tuple[Range, BaseHTTPResponse] | BaseHTTPResponse | None:
    """Open the first missing range, retried per the policy: the range and its ``206``, or the
    ``200`` of a server that ignores ``Range``, or ``None`` when nothing is missing."""
    if not state.todo:
        return None
    first = state.todo.popleft()
    while True:
        if state.cancelled is not None and state.cancelled.is_set():
            raise KeyboardInterrupt
        # nothing held after it: ask to the blob's end, so that an uncapped link reads on
        end = first.end if any(r.pos == r.end for r in state.ranges) else state.size
        try:
            state.probe = (first, first.pos, time.monotonic())
            response = state.open(first.pos, end)
            if response.status == 206:
                state.check_range(response, first.pos, end)
                state.open_ended = first if end != first.end else None
                return first, response
            return response
        except TankError as exc:
            first.attempts += 1
            if not is_retryable(exc) or first.attempts >= state.retry.attempts:
                if first.attempts > 1 and is_retryable(exc):
                    exc.retried = (first.attempts, time.monotonic() - state.started)
                raise
            delay = state.retry.delay(first.attempts, exc)
            if state.cancelled is not None:
                if state.cancelled.wait(delay):
                    raise KeyboardInterrupt from None
            else:
                time.sleep(delay)


def _run(
    state: _Transfer, connections: int, on_restart: Callable[[int], None] | None
) -> Hasher:
    """Probe, then fetch every missing range and hash the blob; return the verified hash."""
    sink = state.sink
    opened = _probe(state)
    if opened is not None and not isinstance(opened, tuple):
        return _single(state, opened, on_restart)
    threads = [
        threading.Thread(target=state.hash_all, name="tank-range-hash", daemon=True),
        threading.Thread(target=state.journal_all, name="tank-range-journal", daemon=True),
    ]

    def spawn() -> None:  # from the first range's worker, once it is timed
        for _ in range(max(0, min(connections - 1, len(state.todo)))):
            t = threading.Thread(target=state.work, kwargs={"extra": True}, name="tank-range",
                                 daemon=True)
            threads.append(t)
            t.start()

    state.spawn = spawn
    for t in threads:
        t.start()
    if opened is None:
        state.probe = None
    elif state.fast <= 0:  # always split: no need to time the first range
        state.decide(0, 1.0)
    with aborting(state.cancelled, lambda: state.stop(KeyboardInterrupt())):
        try:
            if opened is not None:
                state.work(opened, extra=False)
            state.spawn = None
            for t in threads[2:]:
                t.join()
            threads[0].join()
        except BaseException as exc:
            state.stop(exc)
            state.spawn = None
            for t in (threads[0], *threads[2:]):
                t.join()
            raise
        finally:
            _journal_progress(state)
            threads[1].join()
    if state.error is not None:
        raise state.error
    auth = state.auth
    if state.rest is not None and state.frontier == state.handoff:
        sink.settle(state.frontier)  # an uncapped link: the rest as one plain, resumable stream
        return _stream_rest(state, state.rest, state.hasher, on_restart)
    if state.frontier != state.size or state.hasher.size != state.size:
        raise SizeMismatch(
            state.size, state.hasher.size, what="blob", digest=state.digest,
            registry=auth.registry, repository=auth.repository,
        )
    state.hasher.verify(
        state.digest, what="blob", registry=auth.registry, repository=auth.repository
    )
    sink.complete()
    return state.hasher


def _journal_progress(state: _Transfer) -> None:
    """Queue what unfinished ranges got (for a resume), then end the journal thread. (After a
    hand-off there is no journal: the ingest file is one prefix.)"""
    with state.cv:
        partial = [] if state.handoff is not None else [
            (r.start, r.pos) for r in state.ranges if r.start < r.pos < r.end
        ]
    for item in partial:
        state.journal.put(item)
    state.journal.put(None)


def _single(
    state: _Transfer, response: BaseHTTPResponse, on_restart: Callable[[int], None] | None
) -> Hasher:
    """The server answered the probe with the whole blob (``200``): read it as one stream from
    byte 0."""
    sink = state.sink
    held = sink.written + sum(end - start for start, end in sink.held())
    if held:
        if on_restart is not None:
            on_restart(held)
        sink.restart()
    return _stream_rest(state, response, state.digest.hasher(), on_restart)


def _stream_rest(
    state: _Transfer, response: BaseHTTPResponse, hasher: Hasher,
    on_restart: Callable[[int], None] | None,
) -> Hasher:
    """Read ``response`` on into the sink as one plain stream (the blob's hot path), from byte
    ``hasher.size``, whose hash ``hasher`` holds; resumed (per
    :func:`~tank.registry.blobs.fetch_into`) if it breaks off."""
    sink, auth = state.sink, state.auth
    stream = BlobStream(
        response, state.digest, hasher, offset=hasher.size, size=state.size,
        token=auth.token, registry=auth.registry, repository=auth.repository,
        chunk_size=CHUNK_SIZE, speed_limit=auth.transport.speed_limit,
    )
    try:
        with aborting(state.cancelled, stream.abort):
            for chunk in stream:
                if state.cancelled is not None and state.cancelled.is_set():
                    raise KeyboardInterrupt
                sink.write(chunk)
                if state.on_bytes is not None:
                    state.on_bytes(len(chunk))
        return stream.hasher
    except TankError as exc:
        if not is_retryable(exc) or (state.cancelled is not None and state.cancelled.is_set()):
            raise
    finally:
        stream.close()
    prefix = stream.hasher if stream.hasher.size == sink.written else None
    return fetch_into(
        auth, state.digest, sink, size=state.size, prefix=prefix, retry=state.retry,
        on_bytes=state.on_bytes, on_restart=on_restart, cancelled=state.cancelled,
    )


__all__ = [
    "DEFAULT_CONNECTIONS",
    "DEFAULT_FAST_RATE",
    "DEFAULT_THRESHOLD",
    "HASH_WINDOW",
    "Budget",
    "FileSink",
    "RangedSink",
    "fetch_ranged",
    "range_size",
]
