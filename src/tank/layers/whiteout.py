"""Whiteouts: how a layer says that something of the layers below it is gone (image-spec
``layer.md``, the aufs names).

- ``DIR/.wh.NAME`` removes ``DIR/NAME`` as the lower layers left it.
- ``DIR/.wh..wh..opq`` (opaque) hides everything the lower layers put in ``DIR``, wherever it
  stands in the tar; what the same layer adds there stays.
- Other ``.wh..wh.*`` names are aufs metadata (``.wh..wh.plnk``, ``.wh..wh.aufs``): nothing to
  apply.

None of these entries is itself part of the merged tree. These helpers look at one path
component (the entry's last); applying whiteouts to a tree is the caller's (see
:mod:`tank.outputs.rootfs`).
"""

from __future__ import annotations

from typing import Final

from tank.errors import UnsafeEntry

#: the prefix of every whiteout (and of aufs metadata)
WHITEOUT_PREFIX: Final = ".wh."
#: the name that makes its directory opaque
OPAQUE: Final = ".wh..wh..opq"
#: the prefix of aufs metadata (the opaque marker among them)
AUFS_META_PREFIX: Final = ".wh..wh."


def is_whiteout(name: str) -> bool:
    """Whether the component ``name`` is a whiteout, an opaque marker or aufs metadata: an
    entry that says something about the tree and is never in it."""
    return name.startswith(WHITEOUT_PREFIX)


def is_opaque(name: str) -> bool:
    """Whether the component ``name`` makes its directory opaque."""
    return name == OPAQUE


def whiteout_target(name: str) -> str | None:
    """The name a whiteout ``.wh.NAME`` removes; ``None`` for the opaque marker, aufs metadata
    and names that are not whiteouts.

    :raises ~tank.errors.UnsafeEntry: a whiteout that names no entry (``.wh.``, ``.wh..``,
        ``.wh...``).
    """
    if not name.startswith(WHITEOUT_PREFIX) or name.startswith(AUFS_META_PREFIX):
        return None
    hidden = name[len(WHITEOUT_PREFIX) :]
    if hidden in ("", ".", ".."):
        raise UnsafeEntry(f"a whiteout {name!r} naming no entry")
    return hidden


__all__ = [
    "AUFS_META_PREFIX",
    "OPAQUE",
    "WHITEOUT_PREFIX",
    "is_opaque",
    "is_whiteout",
    "whiteout_target",
]
