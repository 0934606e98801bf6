"""JSON from untrusted sources, read one way everywhere.

:func:`loads` refuses what :func:`json.loads` lets through or crashes on: duplicate keys (the
bytes a digest covers and the structure used must not differ: two readers could pick different
values), nesting deep enough to exhaust the interpreter's stack (``RecursionError`` is turned into
:class:`ValueError`), and bytes that are not UTF-8. Callers turn the :class:`ValueError` into the
:class:`~tank.errors.TankError` that fits (an invalid manifest, a bad token answer, …).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Final

#: deeper nesting than this is refused (real manifests, configs and answers nest a few levels)
MAX_DEPTH: Final = 64


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _depth(value: Any, limit: int) -> None:
    """Raise ValueError when ``value`` nests deeper than ``limit`` (iteratively: no recursion)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if level > limit:
            raise ValueError(f"nested deeper than {limit} levels")
        stack.extend((child, level + 1) for child in children if isinstance(child, dict | list))


def loads(data: bytes | str, *, max_depth: int = MAX_DEPTH) -> Any:
    """Parse ``data`` strictly; :class:`ValueError` (with a one-line reason) when it is not JSON,
    has a duplicate key, or nests deeper than ``max_depth``."""
    try:
        value = json.loads(data, object_pairs_hook=_no_duplicates)
    except RecursionError:
        raise ValueError(f"nested deeper than {max_depth} levels") from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8: {exc.reason}") from None
    _depth(value, max_depth)
    return value


def loads_object(
    data: bytes | str, *, what: str, error: Callable[[str], Exception]
) -> dict[str, Any]:
    """``data`` as one JSON object, read by :func:`loads`; else ``error(message)`` is raised, the
    message saying ``what`` is not valid JSON (and why) or not a JSON object."""
    try:
        value = loads(data)
    except ValueError as exc:
        raise error(f"{what} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise error(f"{what} is not a JSON object")
    return value


__all__ = ["MAX_DEPTH", "loads", "loads_object"]
