"""Root filesystems: an image's layers applied, in order, into a directory, safely.

:func:`tank.unpack` turns a pulled image into the directory a container runtime pivots into and
hands back the parsed image config for the runtime to apply; its work is :func:`unpack_image`'s.
:func:`unpack_layers` is the core: layer blobs in, a tree out. The rules are the OCI image-spec's
layer rules, applied as ``umoci unpack`` applies them (a conformance test compares the two trees
entry by entry):

- Layers apply in manifest order. Media types: gzip, zstd and plain tar, OCI and Docker spellings
  (:func:`~tank.layers.compression.layer_compression`); an unknown type fails before anything is
  written, and so do foreign and non-distributable layers. Each layer's uncompressed bytes are
  hashed as they are extracted and must hash to the layer's ``rootfs.diff_ids`` entry
  (:class:`~tank.errors.DigestMismatch` otherwise).
- Whiteouts, entry types and metadata: :mod:`tank.outputs.rootfs.apply`.

Safety (a layer is hostile until proven otherwise):

- The tar is read by tank's own reader (:mod:`tank.layers.tar`): names checked (no ``..``, no
  NUL, at most ``PATH_MAX`` bytes, ``NAME_MAX`` per component, :data:`MAX_DEPTH` levels), a
  linear PAX parser, limits on the layer's uncompressed size (``max_layer_bytes``), its entry
  count (``max_entries``) and extended headers (:data:`MAX_HEADER_BYTES`); GNU sparse entries
  and unknown entry types are refused.
- Paths are resolved inside the root by descriptor, symlinks included, and nothing is ever
  written through a symlink (:mod:`tank.outputs.rootfs.tree`).
- A refused entry fails the unpack with :class:`~tank.errors.UnsafeEntry` (or
  :class:`~tank.errors.LayerTooLarge`) naming the layer digest and the entry; whatever was written
  is removed (:mod:`tank.outputs.rootfs.remove`).

Speed: a background thread decompresses the layers one after another
(:class:`~tank.layers.feed.LayerFeed`: the next layer's inflate overlaps the current layer's
extraction); the caller's thread hashes and writes.

The cache of built trees, and copies out of it: :mod:`tank.outputs.rootfs.build` and
:mod:`tank.outputs.rootfs.copy`.

The modules: ``build`` (the entry points), ``apply`` (entries into a root), ``tree`` (resolving
paths in the root), ``remove`` (removing trees by descriptor), ``copy`` (copying trees out of the
cache).
"""

from __future__ import annotations

from tank.layers.tar import (
    DEFAULT_MAX_ENTRIES,
    DEFAULT_MAX_LAYER_BYTES,
    MAX_DEPTH,
    MAX_HEADER_BYTES,
    NAME_MAX,
    PATH_MAX,
)
from tank.outputs.rootfs.apply import UnpackProgress, UnpackWarning
from tank.outputs.rootfs.build import rootfs_path, unpack_image, unpack_layers

__all__ = [
    "DEFAULT_MAX_ENTRIES",
    "DEFAULT_MAX_LAYER_BYTES",
    "MAX_DEPTH",
    "MAX_HEADER_BYTES",
    "NAME_MAX",
    "PATH_MAX",
    "UnpackProgress",
    "UnpackWarning",
    "rootfs_path",
    "unpack_image",
    "unpack_layers",
]
