"""Retries with exponential backoff, full jitter and ``Retry-After``.

What is retried (:func:`is_retryable`): failures that another try can plausibly cure.

- A :class:`~tank.errors.TransportError`: refused or reset connections, timeouts, bodies that
  broke off before their promised length. Not one marked ``permanent`` (a redirect tank refuses
  to follow), and not a :class:`~tank.errors.TLSError`, except when the handshake merely broke
  off (EOF, reset or timeout): a certificate that does not verify, or a protocol the server
  refuses, fails the same way every time.
- A :class:`~tank.errors.RegistryError` (an :class:`~tank.errors.AuthError` from a token endpoint
  included) whose HTTP status is ``408``, ``429`` or ``5xx``, and one whose cause is a retryable
  transport failure (a token endpoint that could not be reached).

Never anything else: no other 4xx (``400``, ``401`` after the token exchange, ``403``, ``404``…),
no integrity error, no programming error. An error that already carries :attr:`retried` was given
up on by an inner retry loop (the token exchange inside a manifest request, say), and is not
retried again by an outer one: attempts never multiply.

How long to wait (:meth:`RetryPolicy.delay`): before retry *n* (``n = 1`` after the first
failure), ``min(max_delay, base_delay * 2 ** (n - 1))`` scaled by a random factor in
``[0.5, 1.0]``, so that clients failing together do not come back together. When the server
said ``Retry-After`` (seconds or an HTTP-date), the wait is at least that long, capped at
:attr:`RetryPolicy.max_retry_after`. The cap is a choice: a server asking for an hour is waited
on for ``max_retry_after`` and then asked again (and :attr:`RetryPolicy.attempts` still bounds the
whole), rather than refused outright or obeyed for an hour.

When :func:`call` gives up, the last error is raised with ``retried = (attempts, seconds)`` set,
which :class:`~tank.errors.TankError` renders as ``… (gave up after 4 attempts over 3.2 s)``.
"""

from __future__ import annotations

import logging
import math
import random
import ssl
import time
from dataclasses import dataclass
from datetime import UTC
from typing import TYPE_CHECKING, Final, TypeVar

from tank.errors import RegistryError, TankError, TLSError, TransportError

if TYPE_CHECKING:
    from collections.abc import Callable

T = TypeVar("T")

#: HTTP statuses worth another try: request timeout, too many requests, and every 5xx
RETRYABLE_STATUSES: Final = frozenset({408, 429})

_log = logging.getLogger("tank.retry")


@dataclass(frozen=True)
class RetryPolicy:
    """How often to try, and how long to wait in between.

    :ivar attempts: tries in all, the first included (``1`` never retries).
    :ivar base_delay: seconds before the first retry, doubled for each one after.
    :ivar max_delay: the backoff never exceeds this many seconds (before jitter).
    :ivar max_retry_after: a ``Retry-After`` longer than this many seconds is capped to it.
    """

    attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 20.0
    max_retry_after: float = 60.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts must be at least 1")
        for name in ("base_delay", "max_delay", "max_retry_after"):
            value = getattr(self, name)
            if not (value >= 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a finite number >= 0")

    def backoff(self, attempt: int) -> float:
        """The un-jittered backoff before retry ``attempt`` (1 = after the first failure)."""
        exponent = min(max(attempt - 1, 0), 64)  # 2**64 * anything is past any max_delay
        return float(min(self.max_delay, self.base_delay * 2.0**exponent))

    def delay(self, attempt: int, exc: BaseException) -> float:
        """Seconds to wait before retry ``attempt`` (1 = after the first failure) of ``exc``.

        The backoff with full jitter: ``backoff(attempt) * uniform(0.5, 1.0)``. When ``exc``
        carries a ``retry_after`` (the server's ``Retry-After``), never less than that, capped at
        :attr:`max_retry_after`; jitter only ever lengthens the server's wait.
        """
        jittered = self.backoff(attempt) * random.uniform(0.5, 1.0)  # noqa: S311 - not crypto
        retry_after = getattr(exc, "retry_after", None)
        if isinstance(retry_after, int | float) and retry_after >= 0:
            return max(min(float(retry_after), self.max_retry_after), jittered)
        return jittered


#: one try, no retries
NO_RETRY: Final = RetryPolicy(attempts=1)
#: what the registry client uses when the caller names no policy: 5 tries over at most ~8 s
#: of backoff (more when the server asks for it with ``Retry-After``)
DEFAULT_RETRY: Final = RetryPolicy()


def _causes(exc: BaseException) -> list[BaseException]:
    """``exc`` and its chain of causes/contexts (and urllib3's ``reason``), innermost last."""
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and all(current is not s for s in seen) and len(seen) < 20:
        seen.append(current)
        reason = getattr(current, "reason", None)
        current = (
            reason if isinstance(reason, BaseException)
            else current.__cause__ or current.__context__
        )
    return seen


def _tls_failure_is_transient(exc: TLSError) -> bool:
    """Whether a TLS failure was the connection breaking (EOF, reset, timeout) mid-handshake."""
    chain = _causes(exc)
    if any(isinstance(c, ssl.SSLCertVerificationError) for c in chain):
        return False
    if "certificate" in str(exc).lower():
        return False
    return any(
        isinstance(c, ssl.SSLEOFError | ssl.SSLZeroReturnError | ConnectionError | TimeoutError)
        for c in chain[1:]
    )


def is_retryable(exc: BaseException) -> bool:
    """Whether another try might cure ``exc`` (see the module's documentation)."""
    if not isinstance(exc, TankError) or exc.retried is not None:
        return False
    if isinstance(exc, TLSError):
        return _tls_failure_is_transient(exc)
    if isinstance(exc, TransportError):
        return not exc.permanent
    if isinstance(exc, RegistryError):
        status = exc.status
        if status is not None:
            return status in RETRYABLE_STATUSES or 500 <= status <= 599
        # e.g. a token endpoint that could not be reached: as retryable as the failure itself
        cause = exc.__cause__
        return isinstance(cause, TransportError) and is_retryable(cause)
    return False


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value: delta-seconds or an HTTP-date.

    A past date or a negative number gives ``0``; a missing or unparsable value ``None``.
    ``now`` (a :func:`time.time` value) is the reference for HTTP-dates.

    >>> parse_retry_after("120"), parse_retry_after("soon")
    (120.0, None)
    """
    from email.utils import parsedate_to_datetime  # lazily: email costs start-up time

    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return max(seconds, 0.0) if math.isfinite(seconds) else None
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # "-0000": RFC 5322's "UTC, but the local zone is unknown"
        when = when.replace(tzinfo=UTC)
    reference = time.time() if now is None else now
    return max(when.timestamp() - reference, 0.0)


def call(
    fn: Callable[[], T],
    *,
    policy: RetryPolicy,
    what: str,
    sleep: Callable[[float], None] = time.sleep,
    on_retry: Callable[[int, BaseException, float], None] | None = None,
) -> T:
    """Run ``fn``, retrying the errors :func:`is_retryable` accepts, as ``policy`` says.

    ``what`` names the operation in debug logs. Before each retry ``on_retry(attempt, exc,
    delay)`` is called (``attempt`` = the try that just failed, from 1), then ``sleep(delay)``.
    ``fn`` must rebuild its request from scratch each time it is called.

    When the tries run out, the last error is re-raised with ``exc.retried = (attempts,
    elapsed_seconds)``. An error that is not retryable is re-raised at once, untouched.
    """
    start = time.monotonic()
    attempt = 1
    while True:
        try:
            return fn()
        except Exception as exc:
            if not is_retryable(exc):
                raise
            if attempt >= policy.attempts:
                if attempt > 1 and isinstance(exc, TankError):
                    exc.retried = (attempt, time.monotonic() - start)
                raise
            wait = policy.delay(attempt, exc)
            _log.debug("%s: try %d failed (%s); retrying in %.2f s", what, attempt, exc, wait)
            if on_retry is not None:
                on_retry(attempt, exc, wait)
            sleep(wait)
            attempt += 1


__all__ = [
    "DEFAULT_RETRY",
    "NO_RETRY",
    "RETRYABLE_STATUSES",
    "RetryPolicy",
    "call",
    "is_retryable",
    "parse_retry_after",
]
