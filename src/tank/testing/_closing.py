"""A mixin for the harness's servers: ``with X(...) as x:`` calls ``x.close()`` at the end."""

from __future__ import annotations

import threading
from http.server import HTTPServer
from types import TracebackType
from typing import Self


class Closing:
    """Context-manager protocol for classes with a ``close()`` method."""

    def close(self) -> None:
        """Release what the object holds (subclasses override)."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def stop_server(server: HTTPServer, thread: threading.Thread) -> None:
    """Stop ``server``'s ``serve_forever`` loop, close its socket and wait for its thread."""
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)
