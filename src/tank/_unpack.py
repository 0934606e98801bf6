"""``tank.unpack``: a pulled image (or a reference already in the cache) into a root filesystem.

The work is :mod:`tank.outputs.rootfs`'s; this module resolves what to unpack.
"""

from __future__ import annotations

import os

from tank._pull import PulledImage, pull
from tank.image.config import ImageConfig
from tank.outputs.rootfs import (
    DEFAULT_MAX_ENTRIES,
    DEFAULT_MAX_LAYER_BYTES,
    UnpackProgress,
    unpack_image,
)
from tank.store import Store


def unpack(
    image: PulledImage | str,
    dest: str | os.PathLike[str],
    *,
    cache: str | os.PathLike[str] | Store | None = None,
    rootfs_cache: bool = True,
    max_layer_bytes: int = DEFAULT_MAX_LAYER_BYTES,
    max_entries: int = DEFAULT_MAX_ENTRIES,
    progress: UnpackProgress | None = None,
    rootless: bool | None = None,
) -> ImageConfig:
    """Unpack ``image`` into the directory ``dest``; return the image's parsed config.

    :param image: a :class:`~tank.PulledImage`, or a reference already pulled into the cache
        (resolved offline: :class:`~tank.errors.CacheMiss` if it is not there).
    :param dest: the root filesystem to create. It may exist if it is an empty directory; a
        ``dest`` that exists and is not one is refused (:class:`~tank.errors.UnpackError`) and left
        untouched. Missing parents are created.
    :param cache: the cache (default: the image's, else :func:`tank.store.default_cache_dir`).
    :param rootfs_cache: build the tree once in the cache (``rootfs/…``) and copy it out (see
        :mod:`tank.outputs.rootfs`); ``False`` unpacks the layers straight into ``dest``.
    :param max_layer_bytes: ceiling on a layer's uncompressed size.
    :param max_entries: ceiling on a layer's number of entries.
    :param progress: called from this thread as ``progress(layer_digest, done, total)`` while a
        layer is applied: ``done`` counts its uncompressed bytes so far and ``total`` is ``-1``
        until the layer is complete, when a last call has ``done == total``. Nothing is reported
        for a tree found in the cache.
    :param rootless: behave as an unprivileged user (keep the caller's ownership, skip device
        nodes); default: whether the effective uid is not 0.

    On any error ``dest`` is left as it was found (removed if this call created it) and the cache
    keeps no partial tree.
    """
    store = cache if isinstance(cache, Store) else None if cache is None else Store(cache)
    if isinstance(image, str):
        image = pull(image, cache=store, offline=True)
    if store is None:
        store = Store(image.cache)
    config = ImageConfig.from_json(image.config)
    unpack_image(
        store, str(image.digest), config,
        [(str(d.digest), d.media_type, image.blob_path(d.digest)) for d in image.layers],
        dest, rootfs_cache=rootfs_cache, max_layer_bytes=max_layer_bytes,
        max_entries=max_entries, progress=progress, rootless=rootless,
        what=str(image.reference),
    )
    return config


__all__ = ["unpack"]
