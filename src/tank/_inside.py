"""Looking inside images: ``tank.files``, ``tank.cat``, ``tank.read_file``, ``tank.export`` and
``tank.diff``. Each resolves a reference (or takes a :class:`~tank.PulledImage`), gets the layers
it needs verified into the cache, and hands them to :mod:`tank.inside`.

- :func:`files`, :func:`export` and :func:`diff` need every layer: they pull the image
  (:func:`tank.pull`: every blob verified, the tag recorded in the cache).
- :func:`cat` and :func:`read_file`, and :func:`files` with ``layer=N``, resolve the manifest and
  the config as a pull does, then fetch only the layers they read, one at a time from the top
  (each verified against its digest as it arrives; nothing is recorded under the tag, since the
  image is not all there).

Every keyword a pull takes means what it means there (``platform``, ``cache``, ``offline``,
``jobs``, ``progress``, ``retry``, ``transport``, ``credentials``, ``config``), and
``max_layer_bytes`` and ``max_entries`` are the unpack's limits (:func:`tank.unpack`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from tank import mediatypes
from tank._fetch import Fetcher, ProgressCallback, open_sources
from tank._fs import atomic_file
from tank._pull import PulledImage, _read_config, _resolve, pull
from tank.auth.credentials import CredentialsArg
from tank.config import Config
from tank.config import load as load_config
from tank.errors import (
    CacheMiss,
    InvalidImageConfig,
    PathNotFound,
    StorageError,
)
from tank.image import Descriptor, ImageConfig
from tank.inside.cat import Cat, Located, Writable
from tank.inside.diff import Change, compare, merge_pair
from tank.inside.entry import FileEntry
from tank.inside.export import BinaryWriter, TarOutput, write_tar
from tank.inside.read import Layer, Spool
from tank.inside.view import ImageView, assemble, in_layer, layer_entries, merge, record
from tank.layers.tar import DEFAULT_MAX_ENTRIES, DEFAULT_MAX_LAYER_BYTES
from tank.outputs.rootfs.build import check_media_type
from tank.platform import Platform
from tank.policy.check import gate as policy_gate
from tank.reference import Reference
from tank.reference import parse as parse_reference
from tank.retry import DEFAULT_RETRY, RetryPolicy
from tank.store import Store
from tank.transport import Transport

#: what :func:`files`, :func:`cat`, :func:`export` and :func:`diff` take as an image
ImageRef = str | Reference | PulledImage

_IMAGE_CONFIG_TYPES = frozenset({mediatypes.OCI_CONFIG, mediatypes.DOCKER_CONFIG})


@dataclass
class Opened:
    """An image resolved: its layers (blobs in the cache, or to be fetched one by one)."""

    reference: str
    store: Store
    layers: list[Layer]
    descriptors: tuple[Descriptor, ...]
    fetcher: Fetcher | None

    def layer(self, index: int) -> Layer:
        """The layer at ``index``, its blob fetched into the cache (verified) if need be."""
        desc = self.descriptors[index]
        if self.fetcher is not None:
            self.fetcher.fetch_blob(desc, "layer")
        elif not self.store.has_blob(desc.digest, desc.size):
            raise CacheMiss(f"layer {desc.digest} of {self.reference} is not in the cache at "
                            f"{self.store.root}", digest=desc.digest)
        return self.layers[index]


@dataclass(frozen=True)
class Options:
    """The pull keywords, passed on as they are."""

    platform: str | Platform | None
    cache: str | os.PathLike[str] | Store | None
    offline: bool
    jobs: int | None
    progress: ProgressCallback | None
    retry: RetryPolicy | None
    transport: Transport | None
    credentials: CredentialsArg
    config: Config | None


def _layers(
    reference: str, store: Store, config: ImageConfig, layers: Sequence[Descriptor],
) -> list[Layer]:
    """The layers as :mod:`tank.inside` reads them; refused before anything is read when the
    config does not list one diff_id per layer or a layer is of a type tank cannot read."""
    if len(config.diff_ids) != len(layers):
        raise InvalidImageConfig(
            f"{reference}: the config lists {len(config.diff_ids)} diff_ids for {len(layers)} "
            "layers"
        )
    for desc in layers:
        check_media_type(desc.media_type)
    return [
        Layer(i, str(d.digest), diff_id, d.media_type, d.size, store.blob_path(d.digest))
        for i, (d, diff_id) in enumerate(zip(layers, config.diff_ids, strict=True))
    ]


def _image_config(reference: str, media_type: str, doc: object) -> ImageConfig:
    if media_type not in _IMAGE_CONFIG_TYPES or not isinstance(doc, dict):
        raise InvalidImageConfig(
            f"{reference} is not a container image: its config is {media_type!r}, not an image "
            "config (it may be an artifact)"
        )
    return ImageConfig.from_json(doc)


def _from_pulled(image: PulledImage, reference: str | None = None) -> Opened:
    store = Store(image.cache)
    name = reference or str(image.reference)
    config = _image_config(name, image.config_descriptor.media_type, image.config)
    return Opened(name, store, _layers(name, store, config, image.layers), image.layers, None)


def open_image(ref: ImageRef, options: Options, *, lazy: bool) -> Opened:
    """Resolve ``ref``; with ``lazy`` fetch only the manifest and the config (the layers come
    when :meth:`Opened.layer` asks for them), else pull the whole image."""
    if isinstance(ref, PulledImage):
        return _from_pulled(ref)
    name = ref if isinstance(ref, str) else str(ref)
    if not lazy:
        pulled = pull(
            ref, platform=options.platform, cache=options.cache, jobs=options.jobs,
            offline=options.offline, progress=options.progress, retry=options.retry,
            transport=options.transport, credentials=options.credentials,
            config=options.config,
        )
        return _from_pulled(pulled, name)
    reference = parse_reference(ref) if isinstance(ref, str) else ref
    cfg = options.config if options.config is not None else load_config()
    jobs = options.jobs if options.jobs is not None else cfg.jobs or 4
    if jobs < 1:
        raise ValueError("jobs must be at least 1")
    platform = options.platform if options.platform is not None else cfg.platform
    want = Platform.parse(platform) if isinstance(platform, str) else platform
    store = options.cache if isinstance(options.cache, Store) else Store(options.cache)
    policy = options.retry or DEFAULT_RETRY
    transport = options.transport or cfg.transport(pool_size=max(8, jobs))
    endpoints = cfg.endpoints(reference)  # blocked names refused here, before the network
    trust = policy_gate(None, reference, config=cfg, offline=options.offline)
    fetcher = Fetcher(
        reference, store,
        open_sources(reference, endpoints, options.credentials, transport, policy),
        retry=policy, offline=options.offline, jobs=jobs, progress=options.progress,
    )
    resolved = _resolve(fetcher, want, False)
    trust.check(resolved.top, [child for _, child in resolved.children],  # as a pull judges
                [s.repo for s in dict.fromkeys((fetcher.source, fetcher.upstream))])
    image = resolved.image
    fetcher.fetch_blob(image.config, "config")
    doc, _ = _read_config(store, image, fetcher)
    config = _image_config(name, image.config.media_type, doc)
    return Opened(name, store, _layers(name, store, config, image.layers), image.layers,
                  fetcher)


def _options(
    platform: str | Platform | None, cache: str | os.PathLike[str] | Store | None,
    offline: bool, jobs: int | None, progress: ProgressCallback | None,
    retry: RetryPolicy | None, transport: Transport | None, credentials: CredentialsArg,
    config: Config | None,
) -> Options:
    return Options(platform, cache, offline, jobs, progress, retry, transport, credentials,
                    config)


# -- files ---------------------------------------------------------------------------------------


def files(
    ref: ImageRef,
    path: str = "/",
    *,
    recursive: bool = True,
    follow: bool = True,
    layer: int | None = None,
    platform: str | Platform | None = None,
    cache: str | os.PathLike[str] | Store | None = None,
    offline: bool = False,
    jobs: int | None = None,
    progress: ProgressCallback | None = None,
    retry: RetryPolicy | None = None,
    transport: Transport | None = None,
    credentials: CredentialsArg = None,
    config: Config | None = None,
    max_layer_bytes: int = DEFAULT_MAX_LAYER_BYTES,
    max_entries: int = DEFAULT_MAX_ENTRIES,
) -> Iterator[FileEntry]:
    """The entries of the image's final filesystem under ``path``, after whiteouts and opaque
    directories, in listing order (depth first, a directory before its content, names sorted by
    their bytes)::

        for entry in tank.files("alpine", "/etc", recursive=False):
            print(entry.mode_string, entry.size, entry.path, entry.layer)

    The image is pulled first (every layer verified into the cache), then read into memory,
    metadata only; the entries are yielded from there.

    :param ref: a reference, or a :class:`~tank.PulledImage`.
    :param path: a directory (its content is listed; with ``recursive``, everything under it) or
        anything else (its own entry). Symlinks are followed inside the image, never on the host;
        the last one too with ``follow``.
    :param layer: list the entries of this one layer instead, as its tar has them (0 is the base
        layer, -1 the top one), whiteouts and opaque markers included (kinds ``whiteout`` and
        ``opaque``); only that layer is fetched.
    :raises ~tank.errors.PathNotFound: nothing at ``path`` (or no such layer).
    """
    options = _options(platform, cache, offline, jobs, progress, retry, transport, credentials,
                       config)
    return list_files(ref, path, options, recursive=recursive, follow=follow, layer=layer,
                      max_layer_bytes=max_layer_bytes, max_entries=max_entries)


def list_files(
    ref: ImageRef, path: str, options: Options, *, recursive: bool, follow: bool,
    layer: int | None, max_layer_bytes: int = DEFAULT_MAX_LAYER_BYTES,
    max_entries: int = DEFAULT_MAX_ENTRIES,
) -> Iterator[FileEntry]:
    """:func:`files` with its pull keywords gathered in ``options``."""
    if layer is not None:
        opened = open_image(ref, options, lazy=True)
        count = len(opened.layers)
        if not -count <= layer < count:
            raise PathNotFound(f"layer {layer}: the image has {count} layers (0 to {count - 1})",
                               path="", reference=opened.reference)
        found = layer_entries(opened.layer(layer % count), max_layer_bytes=max_layer_bytes,
                              max_entries=max_entries)
        return iter(in_layer(found, path, recursive=recursive))
    view = view_of(ref, options, max_layer_bytes=max_layer_bytes, max_entries=max_entries)
    return view.entries(path, recursive=recursive, follow=follow)


def view_of(
    ref: ImageRef, options: Options, *, max_layer_bytes: int, max_entries: int,
) -> ImageView:
    """The whole image read into an :class:`~tank.inside.view.ImageView`, metadata only (the
    layers read in order, merged as they are read)."""
    opened = open_image(ref, options, lazy=False)
    for i in range(len(opened.layers)):
        opened.layer(i)
    return merge(opened.layers, reference=opened.reference, max_layer_bytes=max_layer_bytes,
                 max_entries=max_entries)


# -- cat -----------------------------------------------------------------------------------------


def locate(
    ref: ImageRef, paths: Sequence[str], options: Options, *,
    max_layer_bytes: int = DEFAULT_MAX_LAYER_BYTES, max_entries: int = DEFAULT_MAX_ENTRIES,
) -> tuple[Cat, list[Located]]:
    """Find each path's file, fetching and reading layers from the top down (see
    :mod:`tank.inside.cat`); nothing is written yet."""
    if isinstance(paths, str):
        paths = [paths]
    if not paths:
        raise ValueError("no path given")
    opened = open_image(ref, options, lazy=True)
    finder = Cat(opened.layers, opened.layer, reference=opened.reference,
                 max_layer_bytes=max_layer_bytes, max_entries=max_entries)
    return finder, finder.locate(paths)


def cat(
    ref: ImageRef,
    paths: str | Sequence[str],
    out: BinaryIO | Writable,
    *,
    platform: str | Platform | None = None,
    cache: str | os.PathLike[str] | Store | None = None,
    offline: bool = False,
    jobs: int | None = None,
    progress: ProgressCallback | None = None,
    retry: RetryPolicy | None = None,
    transport: Transport | None = None,
    credentials: CredentialsArg = None,
    config: Config | None = None,
    max_layer_bytes: int = DEFAULT_MAX_LAYER_BYTES,
    max_entries: int = DEFAULT_MAX_ENTRIES,
) -> list[FileEntry]:
    """Write the content of each file in ``paths`` to ``out`` (anything with ``write(bytes)``),
    in order; return their entries::

        with open("os-release", "wb") as f:
            tank.cat("debian:12", "/etc/os-release", f)

    Layers are fetched and read from the top down, and the search stops at the first layer that
    has the file or deletes it: a file in the top layer needs only that layer. Symlinks are
    resolved inside the image's root, never on the host. Every path is found before anything is
    written; a large file is streamed in chunks.

    :raises ~tank.errors.PathNotFound: a path that is missing, deleted by a layer, or a symlink
        leading nowhere in the image.
    :raises ~tank.errors.ImagePathError: a directory, a FIFO or a device.
    """
    options = _options(platform, cache, offline, jobs, progress, retry, transport, credentials,
                       config)
    finder, located = locate(ref, [paths] if isinstance(paths, str) else paths, options,
                             max_layer_bytes=max_layer_bytes, max_entries=max_entries)
    for item in located:
        finder.write(item, out)
    return [item.entry for item in located]


def read_file(
    ref: ImageRef,
    path: str,
    *,
    platform: str | Platform | None = None,
    cache: str | os.PathLike[str] | Store | None = None,
    offline: bool = False,
    jobs: int | None = None,
    progress: ProgressCallback | None = None,
    retry: RetryPolicy | None = None,
    transport: Transport | None = None,
    credentials: CredentialsArg = None,
    config: Config | None = None,
    max_layer_bytes: int = DEFAULT_MAX_LAYER_BYTES,
    max_entries: int = DEFAULT_MAX_ENTRIES,
) -> bytes:
    """One file's content, in memory (see :func:`cat`, which streams it)::

        tank.read_file("alpine", "/etc/alpine-release")   # b'3.19.1\\n'
    """
    import io

    out = io.BytesIO()
    cat(ref, [path], out, platform=platform, cache=cache, offline=offline, jobs=jobs,
        progress=progress, retry=retry, transport=transport, credentials=credentials,
        config=config, max_layer_bytes=max_layer_bytes, max_entries=max_entries)
    return out.getvalue()


# -- export --------------------------------------------------------------------------------------


class Exporting:
    """An image read, each layer's file contents in a spool of its own, ready to be written as
    a tar (:meth:`write`); :meth:`close` drops the spools."""

    def __init__(self, view: ImageView, spools: dict[int, Spool]) -> None:
        self.view = view
        self.spools = spools

    def write(self, out: str | os.PathLike[str] | BinaryIO | BinaryWriter, *,
              gzip: bool = False) -> int:
        """Write the tar to ``out`` (a path: the file appears whole, or not at all); the number
        of entries."""
        fds = {index: spool.fd for index, spool in self.spools.items()}
        if isinstance(out, str | os.PathLike):
            target = Path(out)
            try:
                with atomic_file(target, durable=False) as f:
                    return write_tar(self.view.root, TarOutput(f.fileno(), gzip=gzip), fds)
            except OSError as exc:
                raise StorageError(f"cannot write {target}: {exc.strerror or exc}",
                                   path=str(target), errno=exc.errno) from exc
        fd = _fileno(out)
        if fd is not None:
            flush = getattr(out, "flush", None)
            if flush is not None:
                flush()  # what the caller wrote before goes first
            return write_tar(self.view.root, TarOutput(fd, gzip=gzip), fds)
        return write_tar(self.view.root, TarOutput(writer=out, gzip=gzip), fds)

    def close(self) -> None:
        """Drop the spools."""
        for spool in self.spools.values():
            spool.close()
        self.spools = {}


def _fileno(out: object) -> int | None:
    try:
        fd = out.fileno()  # type: ignore[attr-defined]
    except (AttributeError, OSError, ValueError):
        return None
    return fd if isinstance(fd, int) else None


def prepare_export(
    ref: ImageRef, options: Options, *, scratch: str | os.PathLike[str] | None = None,
    max_layer_bytes: int = DEFAULT_MAX_LAYER_BYTES, max_entries: int = DEFAULT_MAX_ENTRIES,
) -> Exporting:
    """Pull the image and read its layers, several at once, each layer's file contents into an
    unnamed scratch file of its own (see :func:`export`); then merge them."""
    opened = open_image(ref, options, lazy=False)
    for i in range(len(opened.layers)):
        opened.layer(i)
    if scratch is None:
        scratch = opened.store.private_dir()
    spools: dict[int, Spool] = {}

    def spool_for(layer: Layer) -> Spool:
        spool = spools[layer.index] = Spool(scratch)
        return spool

    try:
        records = record(opened.layers, spool_for, max_layer_bytes=max_layer_bytes,
                         max_entries=max_entries)
        view = assemble(opened.layers, records.__getitem__, reference=opened.reference)
    except BaseException:
        for spool in spools.values():
            spool.close()
        raise
    return Exporting(view, spools)


def export(
    ref: ImageRef,
    out: str | os.PathLike[str] | BinaryIO | BinaryWriter,
    *,
    gzip: bool = False,
    scratch: str | os.PathLike[str] | None = None,
    platform: str | Platform | None = None,
    cache: str | os.PathLike[str] | Store | None = None,
    offline: bool = False,
    jobs: int | None = None,
    progress: ProgressCallback | None = None,
    retry: RetryPolicy | None = None,
    transport: Transport | None = None,
    credentials: CredentialsArg = None,
    config: Config | None = None,
    max_layer_bytes: int = DEFAULT_MAX_LAYER_BYTES,
    max_entries: int = DEFAULT_MAX_ENTRIES,
) -> int:
    """Write the image's flattened root filesystem as one tar to ``out``; return the number of
    entries::

        tank.export("alpine", "alpine.tar")
        tank.export("alpine", sys.stdout.buffer, gzip=True)

    The entries come in listing order (a directory before its content, names sorted by their
    bytes); a file with several paths is written once and linked at the others; there are no
    whiteouts and nothing a layer removed. Extracted by GNU tar, it is the tree
    ``tank pull -o rootfs:`` writes (and ``umoci unpack``). Nothing is written before every
    layer verified.

    :param out: a path (written whole or not at all) or a binary file object.
    :param gzip: compress (gzip level 6, no name, time 0: the same bytes every time).
    :param scratch: where the unnamed scratch files (one per layer) holding the file contents
        while the layers are read go (default: the cache directory); they take up to the
        image's uncompressed size, and vanish with the process.
    """
    options = _options(platform, cache, offline, jobs, progress, retry, transport, credentials,
                       config)
    exporting = prepare_export(ref, options, scratch=scratch, max_layer_bytes=max_layer_bytes,
                               max_entries=max_entries)
    try:
        return exporting.write(out, gzip=gzip)
    finally:
        exporting.close()


# -- diff ----------------------------------------------------------------------------------------


def views_of(
    ref_a: ImageRef, ref_b: ImageRef, options: Options, *,
    max_layer_bytes: int = DEFAULT_MAX_LAYER_BYTES, max_entries: int = DEFAULT_MAX_ENTRIES,
) -> tuple[ImageView, ImageView]:
    """Both images pulled and read (a layer they share read once)."""
    a = open_image(ref_a, options, lazy=False)
    b = open_image(ref_b, options, lazy=False)
    for opened in (a, b):
        for i in range(len(opened.layers)):
            opened.layer(i)
    return merge_pair(a.layers, b.layers, references=(a.reference, b.reference),
                      max_layer_bytes=max_layer_bytes, max_entries=max_entries)


def diff(
    ref_a: ImageRef,
    ref_b: ImageRef,
    *,
    platform: str | Platform | None = None,
    cache: str | os.PathLike[str] | Store | None = None,
    offline: bool = False,
    jobs: int | None = None,
    progress: ProgressCallback | None = None,
    retry: RetryPolicy | None = None,
    transport: Transport | None = None,
    credentials: CredentialsArg = None,
    config: Config | None = None,
    max_layer_bytes: int = DEFAULT_MAX_LAYER_BYTES,
    max_entries: int = DEFAULT_MAX_ENTRIES,
) -> list[Change]:
    """What differs between the final trees of two images, sorted by path (a directory before
    its content); empty when they are the same::

        for change in tank.diff("app:1.0", "app:1.1"):
            print(change.change, change.path, change.describe())

    A path is ``added``, ``removed`` or ``changed`` (its ``fields`` say what: ``type``,
    ``content``, ``mode``, ``owner``, ``link``); modification times do not count. A layer both
    images have (the same ``diff_id``) is read once. ``platform`` applies to both.
    """
    options = _options(platform, cache, offline, jobs, progress, retry, transport, credentials,
                       config)
    a, b = views_of(ref_a, ref_b, options, max_layer_bytes=max_layer_bytes,
                    max_entries=max_entries)
    return list(compare(a, b))

__all__ = [
    "Exporting",
    "ImageRef",
    "Opened",
    "Options",
    "cat",
    "diff",
    "export",
    "files",
    "list_files",
    "locate",
    "open_image",
    "prepare_export",
    "read_file",
    "view_of",
    "views_of",
]
