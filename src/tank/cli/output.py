"""Small output helpers for the commands: sizes and ages in words, safe text, tables, bytes.

Invariants: stdout carries only data (summary lines, tables, ``--json`` documents, raw bytes);
anything a registry sent goes through :func:`clean` before it reaches a terminal.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Collection, Sequence
from typing import Any

import click


def human_bytes(n: int | float) -> str:
    """``1234567`` → ``'1.2 MB'`` (decimal units, as registries and docker print sizes)."""
    value = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"  # pragma: no cover


def age(seconds: float) -> str:
    """``90`` → ``'2m'``: a duration in its largest whole-ish unit (d, h, m, s)."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"


def clean(text: object) -> str:
    """A registry's string made safe for a terminal: control characters escaped."""
    out = []
    for ch in str(text):
        code = ord(ch)
        out.append(ch if code >= 0x20 and not 0x7F <= code < 0xA0 else f"\\x{code:02x}")
    return "".join(out)


def short_type(media_type: str) -> str:
    """``application/vnd.oci.image.layer.v1.tar+gzip`` → ``oci tar+gzip``."""
    for prefix, name in (
        ("application/vnd.oci.image.layer.v1.", "oci "),
        ("application/vnd.docker.image.rootfs.diff.", "docker "),
        ("application/vnd.oci.image.", "oci "),
        ("application/vnd.docker.distribution.", "docker "),
    ):
        if media_type.startswith(prefix):
            return name + media_type[len(prefix):]
    return media_type


def write_bytes(data: bytes) -> None:
    """Write ``data`` to stdout exactly (no newline added) and flush."""
    out = sys.stdout.buffer
    out.write(data)
    out.flush()


def print_json(doc: Any) -> None:
    """Print a ``--json`` document on stdout (indented, one trailing newline)."""
    click.echo(json.dumps(doc, indent=2))


def table(
    rows: Sequence[Sequence[str]],
    *,
    right: Collection[int] = (),
    min_widths: Sequence[int] = (),
    indent: str = "",
) -> list[str]:
    """The lines of a plain table: columns two spaces apart, each as wide as its widest cell
    (or its entry in ``min_widths``), those in ``right`` aligned right (sizes). The last column
    is not padded unless aligned right, so no line ends in spaces."""
    if not rows:
        return []
    count = max(len(row) for row in rows)
    widths = [
        max([len(row[i]) for row in rows if i < len(row)]
            + [min_widths[i] if i < len(min_widths) else 0])
        for i in range(count)
    ]
    lines = []
    for row in rows:
        cells = []
        for i, cell in enumerate(row):
            if i in right:
                cells.append(cell.rjust(widths[i]))
            elif i == len(row) - 1:
                cells.append(cell)
            else:
                cells.append(cell.ljust(widths[i]))
        lines.append(indent + "  ".join(cells))
    return lines
