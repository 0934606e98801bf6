"""What a listing shows of one path of an image: :class:`FileEntry`, and its long and JSON forms.

Paths are absolute inside the image (``/etc/os-release``; the root is ``/``), whatever the tar
wrote (``./etc/os-release``, ``etc/os-release``). Names are kept as the layer has them: bytes that
are not UTF-8 stay as surrogate escapes (``os.fsencode`` gives the bytes back), and
:meth:`FileEntry.to_json` escapes them.
"""

from __future__ import annotations

import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

#: the type letter of each kind in a long listing (``ls -l`` and ``tar -tv``'s, and ``w``/``o``
#: for a layer's whiteouts and opaque markers)
TYPE_LETTERS: Final = {
    "file": "-", "dir": "d", "symlink": "l", "hardlink": "h", "fifo": "p", "char": "c",
    "block": "b", "whiteout": "w", "opaque": "o",
}
#: every kind an entry may have: the merged tree's, plus ``whiteout`` and ``opaque`` in a layer
KINDS: Final = tuple(TYPE_LETTERS)
_NS: Final = 1_000_000_000


@dataclass(slots=True)
class FileEntry:
    """One path of an image's final tree (or of one layer, with ``tank ls --layer``): a value,
    made afresh for each listing (not frozen, only because that makes a million of them
    cheaper to create).

    :ivar path: the absolute path inside the image (``/usr/bin/env``).
    :ivar kind: ``file``, ``dir``, ``symlink``, ``hardlink`` (another name of a file listed
        earlier: ``link_target`` names it), ``fifo``, ``char``, ``block``; in one layer's listing
        also ``whiteout`` (``path`` is what it deletes) and ``opaque`` (``path`` is the directory
        whose lower content it hides).
    :ivar mode: the permission bits, setuid, setgid and sticky included.
    :ivar uid: the numeric owner; :ivar gid: the numeric group.
    :ivar size: a file's size in bytes (a hard link's too); 0 for the rest.
    :ivar mtime_ns: the modification time, nanoseconds since the epoch (a directory that no
        layer lists, made as a parent, has 0).
    :ivar link_target: a symlink's target as written, or the path a hard link shares its file
        with; ``""`` for the rest.
    :ivar layer: the index of the layer the entry came from (0 is the base layer).
    :ivar layer_digest: that layer's digest.
    :ivar nlink: how many paths of the tree share this file (hard links).
    :ivar devices: a device node's ``(major, minor)``.
    :ivar xattrs: extended attributes, name → value.
    """

    path: str
    kind: str
    mode: int
    uid: int
    gid: int
    size: int
    mtime_ns: int
    link_target: str
    layer: int
    layer_digest: str
    nlink: int = 1
    devices: tuple[int, int] | None = None
    xattrs: Mapping[str, bytes] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """The last component of :attr:`path` (``/`` for the root)."""
        return self.path.rstrip("/").rpartition("/")[2] or "/"

    @property
    def mode_string(self) -> str:
        """``-rw-r--r--``, as ``ls -l`` writes it (type letter from :data:`TYPE_LETTERS`)."""
        return TYPE_LETTERS.get(self.kind, "?") + stat.filemode(self.mode)[1:]

    @property
    def mtime(self) -> str:
        """The modification time as RFC 3339 in UTC, to the nanosecond when it has a fraction."""
        return format_time(self.mtime_ns)

    def to_json(self) -> dict[str, Any]:
        """The entry as a JSON object (keys documented in docs/commands.md)."""
        doc: dict[str, Any] = {
            "path": self.path,
            "type": self.kind,
            "mode": f"{self.mode:04o}",
            "uid": self.uid,
            "gid": self.gid,
            "size": self.size,
            "mtime": self.mtime,
            "linkTarget": self.link_target or None,
            "layer": self.layer,
            "layerDigest": self.layer_digest,
            "nlink": self.nlink,
        }
        if self.devices is not None:
            doc["devices"] = list(self.devices)
        if self.xattrs:
            doc["xattrs"] = sorted(self.xattrs)
        return doc


def format_time(ns: int) -> str:
    """Nanoseconds since the epoch as RFC 3339 in UTC (``2023-11-14T22:13:20Z``, a fraction only
    when there is one); a time outside what a calendar date can say is given in seconds."""
    seconds, fraction = divmod(ns, _NS)
    try:
        text = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    except (OverflowError, OSError, ValueError):
        return f"{ns / _NS:.9f}s"
    return f"{text}.{fraction:09d}Z" if fraction else f"{text}Z"


__all__ = ["KINDS", "TYPE_LETTERS", "FileEntry", "format_time"]
