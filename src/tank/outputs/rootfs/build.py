"""The entry points: an image's layers into a directory (:func:`unpack_layers`), and a cached
image into one, through the cache of built trees (:func:`unpack_image`).

The cache: with ``rootfs_cache`` (the default) :func:`unpack_image` builds the tree once per
image, in ``rootfs/<algorithm>/<hex>`` of the cache, named by the image manifest's digest
(rootless builds, whose ownership and device nodes differ, in
``rootfs/rootless/<algorithm>/<hex>``; :mod:`tank.store.rootfs` holds the names and the locks).
It is built in a temporary sibling and renamed into place only when every layer verified, under
a per-image lock, so concurrent unpacks build it once. ``DEST`` is then a copy of it
(:mod:`tank.outputs.rootfs.copy`).

On any error the destination is left as it was found (removed if the call created it, emptied
otherwise) and the cache keeps no partial tree.
"""

from __future__ import annotations

import os
import stat
import warnings
from collections.abc import Sequence
from pathlib import Path

from tank._fs import foreign_owner
from tank.digest import Digest
from tank.errors import CacheMiss, InvalidImageConfig, UnpackError, UnsupportedLayer
from tank.image.config import ImageConfig
from tank.layers.compression import layer_compression
from tank.layers.feed import LayerFeed
from tank.layers.tar import DEFAULT_MAX_ENTRIES, DEFAULT_MAX_LAYER_BYTES
from tank.outputs.rootfs.apply import Applier, UnpackProgress
from tank.outputs.rootfs.copy import copy_tree
from tank.outputs.rootfs.remove import clear_dir, clear_fd, remove_path
from tank.outputs.rootfs.tree import O_DIR
from tank.store import CacheWarning, Store
from tank.store.rootfs import build_lock, build_path, stale_builds, tree_path


def unpack_image(
    store: Store,
    manifest_digest: str,
    config: ImageConfig,
    layers: Sequence[tuple[str, str, Path]],
    dest: str | os.PathLike[str],
    *,
    rootfs_cache: bool = True,
    max_layer_bytes: int = DEFAULT_MAX_LAYER_BYTES,
    max_entries: int = DEFAULT_MAX_ENTRIES,
    progress: UnpackProgress | None = None,
    rootless: bool | None = None,
    what: str = "",
) -> None:
    """Unpack an image whose blobs are in ``store`` into the directory ``dest``.

    ``layers`` are ``(digest, media_type, path)`` in manifest order and ``config`` the image's
    parsed config (its ``diff_ids`` one per layer). The keywords are :func:`tank.unpack`'s; ``what``
    names the image in a :class:`~tank.errors.CacheMiss`.

    On any error ``dest`` is left as it was found (removed if this call created it) and the cache
    keeps no partial tree.
    """
    if len(config.diff_ids) != len(layers):
        raise InvalidImageConfig(
            f"image {manifest_digest}: the config lists {len(config.diff_ids)} diff_ids for "
            f"{len(layers)} layers"
        )
    for _, media_type, _ in layers:
        check_media_type(media_type)  # UnsupportedLayer before anything is written
    for digest, _, path in layers:
        if not path.is_file():
            raise CacheMiss(f"layer {digest} of {what or manifest_digest} is not in the cache at "
                            f"{store.root}", digest=digest)
    rootless = is_rootless(rootless)
    target = Path(dest)
    created = _prepare_dest(target)
    try:
        if rootfs_cache:
            built = _cached_tree(
                store, manifest_digest, layers, config.diff_ids, rootless=rootless,
                max_layer_bytes=max_layer_bytes, max_entries=max_entries, progress=progress,
            )
            copy_tree(built, target, rootless=rootless)
        else:
            unpack_layers(
                layers, config.diff_ids, target, max_layer_bytes=max_layer_bytes,
                max_entries=max_entries, progress=progress, rootless=rootless,
            )
    except BaseException:
        if created:
            remove_path(target)
        else:
            clear_dir(target)
        raise


def unpack_layers(
    layers: Sequence[tuple[str, str, Path]], diff_ids: Sequence[str], dest: Path, *,
    max_layer_bytes: int = DEFAULT_MAX_LAYER_BYTES, max_entries: int = DEFAULT_MAX_ENTRIES,
    progress: UnpackProgress | None = None, rootless: bool | None = None,
) -> None:
    """Apply ``layers`` in order into ``dest``, an existing empty directory.

    :param layers: ``(digest, media_type, blob_path)`` per layer, bottom first.
    :param diff_ids: each layer's ``diff_id`` (the digest of its uncompressed bytes), same order.
    :param progress: ``progress(layer_digest, done, total)`` as for :func:`unpack`.
    :param rootless: as for :func:`unpack`.

    Raises :class:`~tank.errors.UnsupportedLayer` (before writing anything),
    :class:`~tank.errors.UnsafeEntry`, :class:`~tank.errors.LayerTooLarge`,
    :class:`~tank.errors.UnpackError` (an entry that cannot be created, naming the layer and the
    entry), :class:`~tank.errors.CorruptLayer` (a stream that does not decode, or is not a tar)
    and :class:`~tank.errors.DigestMismatch` (a layer that does not hash to its diff_id). On any
    error ``dest`` is emptied again.
    """
    if len(layers) != len(diff_ids):
        raise ValueError(f"{len(layers)} layers but {len(diff_ids)} diff_ids")
    expected = [Digest.parse(d) for d in diff_ids]
    for _, media_type, _ in layers:
        check_media_type(media_type)
    if max_layer_bytes < 0 or max_entries < 0:
        raise ValueError("max_layer_bytes and max_entries must not be negative")
    dest = Path(dest)
    root_fd = os.open(dest, O_DIR)  # O_NOFOLLOW: never a symlink swapped in since the check
    try:
        if os.listdir(root_fd):
            raise UnpackError(f"{dest} is not empty")
        feed = LayerFeed([(path, media_type) for _, media_type, path in layers])
        applier = Applier(root_fd, rootless=is_rootless(rootless))
        try:
            for (digest, _, path), diff_id in zip(layers, expected, strict=True):
                applier.apply_layer(
                    feed, digest, path, diff_id, max_layer_bytes=max_layer_bytes,
                    max_entries=max_entries, progress=progress,
                )
            applier.finish()
        except BaseException:
            feed.close()
            applier.close()
            clear_fd(root_fd)
            raise
        feed.close()
        applier.close()
    finally:
        os.close(root_fd)
    applier.warn()


def check_media_type(media_type: str) -> None:
    """:class:`~tank.errors.UnsupportedLayer` unless tank unpacks layers of this type.

    Foreign (Docker) and non-distributable (OCI) layers are refused by name, not skipped: their
    content is meant to come from elsewhere, and an image without it is not the image.
    """
    layer_compression(media_type)
    if "foreign" in media_type or "nondistributable" in media_type:
        raise UnsupportedLayer(media_type)


def is_rootless(rootless: bool | None) -> bool:
    """Whether to unpack rootless: ``rootless`` when given, else whether the caller is not
    root."""
    return os.geteuid() != 0 if rootless is None else rootless


def _prepare_dest(dest: Path) -> bool:
    """Check ``dest`` is absent or an empty directory; create it if absent. Whether it was.

    A ``dest`` that is a symlink is refused (it would send the tree elsewhere), and so is, when
    tank runs as root, one owned by another user (who could then reach the image's setuid files
    and device nodes, or swap what is inside)."""
    try:
        st = dest.lstat()
    except FileNotFoundError:
        dest.mkdir(parents=True)
        return True
    if stat.S_ISLNK(st.st_mode):
        raise UnpackError(f"{dest} is a symbolic link; tank unpacks only into a real directory")
    if not stat.S_ISDIR(st.st_mode):
        raise UnpackError(f"{dest} exists and is not a directory")
    owner = foreign_owner(st)
    if owner is not None:
        raise UnpackError(
            f"{dest} belongs to uid {owner}; as root, tank unpacks only into directories root "
            "owns (another user could reach the image's setuid files and device nodes)"
        )
    if any(True for _ in os.scandir(dest)):
        raise UnpackError(f"{dest} exists and is not empty")
    return False


def rootfs_path(store: Store, manifest_digest: str, *, rootless: bool | None = None) -> Path:
    """Where the cache keeps the tree of the image whose manifest is ``manifest_digest``."""
    return tree_path(store, Digest.parse(manifest_digest), rootless=is_rootless(rootless))


def _private_rootfs(store: Store, tree: Path) -> None:
    """Create the directories above ``tree`` under ``rootfs/``, with ``rootfs/`` itself ``0700``
    (repaired with a warning when looser): the trees hold images' setuid files and device nodes,
    which no other local user may reach through the cache (moby CVE-2021-41091's pattern)."""
    top = store.private_dir() / "rootfs"
    top.mkdir(mode=0o700, exist_ok=True)
    st = os.lstat(top)
    if st.st_mode & 0o077:
        os.chmod(top, 0o700)
        warnings.warn(
            f"{top} was open to other users (mode {stat.S_IMODE(st.st_mode):04o}); made it 0700",
            CacheWarning, stacklevel=4,
        )
    tree.parent.mkdir(parents=True, exist_ok=True)


def _cached_tree(
    store: Store, manifest_digest: str, layers: Sequence[tuple[str, str, Path]],
    diff_ids: Sequence[str], *, rootless: bool, max_layer_bytes: int, max_entries: int,
    progress: UnpackProgress | None,
) -> Path:
    """The image's tree in the cache, built now (under the image's lock) if it is not there."""
    digest = Digest.parse(manifest_digest)
    final = tree_path(store, digest, rootless=rootless)
    if final.is_dir():
        return final
    _private_rootfs(store, final)
    with build_lock(store, digest, rootless=rootless):
        if final.is_dir():
            return final
        for stale in stale_builds(final):
            remove_path(stale)  # a build that crashed: we hold the lock, nobody else builds
        tmp = build_path(final)
        tmp.mkdir()
        try:
            os.chmod(tmp, 0o755)  # noqa: S103 - a root filesystem's root is 0755
            unpack_layers(
                layers, diff_ids, tmp, max_layer_bytes=max_layer_bytes,
                max_entries=max_entries, progress=progress, rootless=rootless,
            )
            os.rename(tmp, final)
        except BaseException:
            remove_path(tmp)
            raise
    return final


__all__ = [
    "check_media_type",
    "is_rootless",
    "rootfs_path",
    "unpack_image",
    "unpack_layers",
]
