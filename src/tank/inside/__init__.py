"""Inside an image without unpacking it: the merged view of its files, and what is built on it.

An image is layers; its filesystem is what they leave once applied in order, whiteouts and opaque
directories included. This package computes that final tree **in memory, metadata only**, by the
same rules as the unpack (:mod:`tank.outputs.rootfs`, conformance-tested against ``umoci
unpack``), from layers read by tank's own tar reader and checked against their ``diff_id``:

- :mod:`tank.inside.tree`: the tree and the rules (:class:`~tank.inside.tree.Merger`), also over
  unread lower layers (partial trees), and path lookups with symlinks resolved inside the root;
- :mod:`tank.inside.read`: reading layers from the cache, verified; file contents skipped, hashed,
  or spooled;
- :mod:`tank.inside.view`: :class:`~tank.inside.view.ImageView` and its listings
  (:class:`~tank.inside.entry.FileEntry`), and one layer's own entries;
- :mod:`tank.inside.cat`: files read top-down, only from the layers that decide them;
- :mod:`tank.inside.export`: the tree as one tar stream;
- :mod:`tank.inside.diff`: two trees compared.

Invariants:

- Nothing is shown from a layer before all of it hashed to its ``diff_id``; its blob was verified
  against its digest when it entered the cache.
- Every path stays inside the image's root: names are checked as the unpack checks them, and
  symlinks are only ever followed inside the tree, never on the host.
- Memory holds metadata, not contents: a file's bytes are streamed (``cat``), hashed as they go
  by (``diff``), or kept in unnamed scratch files on disk (``export``).

The public functions, which resolve a reference and get the layers into the cache first, are in
:mod:`tank` (``tank.files``, ``tank.cat``, ``tank.read_file``, ``tank.export``, ``tank.diff``).
"""

from __future__ import annotations

from tank.inside.diff import Change
from tank.inside.entry import FileEntry

__all__ = ["Change", "FileEntry"]
