"""Timeouts and the low-speed limit: a stalled server is an error, never a hang.

- ``connect_timeout`` bounds establishing a connection, ``read_timeout`` any single read, and a
  low-speed limit (:class:`SpeedLimit`, curl's ``--speed-limit``/``--speed-time``) applies to blob
  bodies: slower than ``speed_limit`` bytes/s for ``speed_time`` seconds is an error.
- Each comes from its keyword argument, else its environment variable (:data:`TIMEOUT_ENV`), else
  the default (:func:`pick_timeout`); a value that is not a number >= 0 is a
  :class:`~tank.errors.ConfigError` (:func:`check_timeout`).
- No fixed deadline ever cuts a slow but healthy transfer.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Final

from tank.errors import ConfigError, TransportError

#: defaults: seconds to connect, seconds a read may wait, and the low-speed limit (bytes/s
#: sustained over seconds)
DEFAULT_CONNECT_TIMEOUT: Final = 30.0
DEFAULT_READ_TIMEOUT: Final = 60.0
DEFAULT_SPEED_LIMIT: Final = 1024.0
DEFAULT_SPEED_TIME: Final = 60.0
#: the environment variable behind each timeout keyword
TIMEOUT_ENV: Final = {
    "connect_timeout": "TANK_CONNECT_TIMEOUT",
    "read_timeout": "TANK_READ_TIMEOUT",
    "speed_limit": "TANK_SPEED_LIMIT",
    "speed_time": "TANK_SPEED_TIME",
}


@dataclass(frozen=True)
class SpeedLimit:
    """Fail a transfer slower than ``bytes_per_second`` sustained over ``seconds``.

    curl's ``--speed-limit``/``--speed-time``: throughput is measured over consecutive windows of
    ``seconds``; a window whose average is under the limit is an error. A slow but steady link
    above the limit is never cut off, however long the transfer takes.
    """

    bytes_per_second: float
    seconds: float

    def monitor(self) -> SpeedMonitor:
        """A fresh monitor for one transfer; its clock starts now."""
        return SpeedMonitor(self)


class SpeedMonitor:
    """Counts one transfer's bytes against a :class:`SpeedLimit`; see :meth:`update`."""

    __slots__ = ("_bytes", "_start", "limit")

    def __init__(self, limit: SpeedLimit) -> None:
        self.limit = limit
        self._start = time.monotonic()
        self._bytes = 0

    def update(self, amount: int) -> None:
        """Count ``amount`` more bytes; raise :class:`TransportError` when the window was slow."""
        self._bytes += amount
        now = time.monotonic()
        elapsed = now - self._start
        if elapsed < self.limit.seconds:
            return
        if self._bytes < self.limit.bytes_per_second * elapsed:
            rate = self._bytes / elapsed
            raise TransportError(
                f"the transfer was slower than the low-speed limit of "
                f"{self.limit.bytes_per_second:g} bytes/s for {elapsed:.1f} s ({rate:.0f} "
                f"bytes/s; set TANK_SPEED_LIMIT/TANK_SPEED_TIME to change it)"
            )
        self._start, self._bytes = now, 0


def timeout_from_env(keyword: str) -> float | None:
    """The value of the environment variable behind ``keyword`` (see :data:`TIMEOUT_ENV`).

    ``None`` when unset or empty; a :class:`~tank.errors.ConfigError` when it is not a number
    >= 0.
    """
    name = TIMEOUT_ENV[keyword]
    text = os.environ.get(name, "").strip()
    if not text:
        return None
    return check_timeout(text, where=f"${name}")


def check_timeout(value: object, *, where: str) -> float:
    """``value`` as a finite float >= 0, or a :class:`~tank.errors.ConfigError` naming ``where``."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        number = float("nan")
    if isinstance(value, bool) or not (number >= 0 and number != float("inf")):
        raise ConfigError(f"{where} = {value!r}: expected a number of seconds (or bytes/s) >= 0")
    return number


def pick_timeout(keyword: str, given: float | None, default: float) -> float:
    """The setting ``keyword``: ``given`` (checked), else its environment variable, else
    ``default``."""
    if given is not None:
        return check_timeout(given, where=keyword)
    from_env = timeout_from_env(keyword)
    return default if from_env is None else from_env


__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_READ_TIMEOUT",
    "DEFAULT_SPEED_LIMIT",
    "DEFAULT_SPEED_TIME",
    "TIMEOUT_ENV",
    "SpeedLimit",
    "SpeedMonitor",
    "check_timeout",
    "pick_timeout",
    "timeout_from_env",
]
