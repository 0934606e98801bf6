"""``tank.pull``: reference → manifest → platform → verified blobs in the cache → outputs.

:func:`pull` is the library's main entry point. It never prints; it reports progress through
the ``progress`` callback, which receives :class:`~tank.ProgressEvent` objects **from worker
threads** (up to ``jobs`` at once), so a callback must be thread-safe.

Network use, by case:

- a tag the cache has resolved before: one ``HEAD`` (same ``Accept`` as a ``GET``); the manifest
  is fetched only when the digest moved;
- a digest reference whose manifest is cached: no request at all;
- ``offline=True``: never any request; a missing piece raises
  :class:`~tank.errors.CacheMiss` saying exactly what is missing;
- blobs already in the cache are never downloaded again (``refresh=True`` re-fetches them).

The fetching itself is :class:`tank._fetch.Fetcher`'s; the outputs are :mod:`tank.outputs`'.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tank import _json, mediatypes
from tank._fetch import Fetcher, ProgressCallback, ProgressEvent, open_sources
from tank.auth.credentials import CredentialsArg
from tank.config import Config
from tank.config import load as load_config
from tank.digest import Digest
from tank.errors import InvalidManifest, InvalidReference
from tank.image import MAX_CONFIG_SIZE, Descriptor, ImageConfig, Index, Manifest
from tank.platform import Platform, host_platform
from tank.policy.check import gate as policy_gate
from tank.policy.lookup import PolicyArg
from tank.reference import DEFAULT_TAG, Reference
from tank.reference import parse as parse_reference
from tank.registry.ranged import DEFAULT_CONNECTIONS, DEFAULT_FAST_RATE, DEFAULT_THRESHOLD
from tank.registry.rangeio import Budget
from tank.retry import DEFAULT_RETRY, RetryPolicy
from tank.store import Store
from tank.transport import Transport

#: the connections one pull holds at once, at most, unless the config says otherwise
MAX_CONNECTIONS = 16

#: config media types parsed as image configs (others, an artifact's, are kept as they are)
_IMAGE_CONFIG_TYPES = frozenset({mediatypes.OCI_CONFIG, mediatypes.DOCKER_CONFIG})


@dataclass(frozen=True)
class PulledImage:
    """A pulled image: what it is and where everything is on disk.

    :ivar reference: the reference as parsed (``docker.io/library/alpine:latest``).
    :ivar digest: the image manifest's digest (the platform's manifest when pulled via an index).
    :ivar media_type: the image manifest's media type.
    :ivar index_digest: the index's digest when the reference named one, else ``None``.
    :ivar platform: the platform chosen from the index (or the config's own).
    :ivar config: the image config, as a JSON object.
    :ivar config_descriptor: the config's descriptor; :ivar layers: the layers' descriptors.
    :ivar platforms: with ``all_platforms``, every platform the index offers (all were pulled).
    :ivar output: the OCI layout directory, docker-archive file or root filesystem written, if
        any (``output_kind`` says which), and ``output_tag`` the name the image has there.
    :ivar output_digest: the manifest digest in the layout: :attr:`digest`, except for a Docker v2
        manifest, which a layout holds rewritten with OCI media types (as skopeo does).
    :ivar mirror: the mirror (``registry/repository``) that served the image, ``None`` when it
        came from its own registry (or from the cache alone).
    """

    reference: Reference
    digest: Digest
    media_type: str
    index_digest: Digest | None
    platform: Platform | None
    config: dict[str, Any]
    config_descriptor: Descriptor
    layers: tuple[Descriptor, ...]
    cache: Path
    output: Path | None
    output_tag: str | None
    output_digest: Digest | None
    bytes_downloaded: int
    bytes_cached: int
    seconds: float
    output_kind: str | None = None
    platforms: tuple[Platform, ...] = ()
    mirror: str | None = None

    def blob_path(self, digest: str) -> Path:
        """Where a blob of this image is in the cache."""
        return Store(self.cache).blob_path(digest)

    @property
    def manifest_path(self) -> Path:
        """The image manifest's file in the cache."""
        return self.blob_path(self.digest)

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` document (keys documented in docs/commands.md)."""
        output = None
        if self.output is not None:
            output = f"{self.output_kind}:{self.output}"
            if self.output_tag:
                output += f":{self.output_tag}"
        return {
            "reference": str(self.reference),
            "digest": str(self.digest),
            "mediaType": self.media_type,
            "indexDigest": str(self.index_digest) if self.index_digest else None,
            "platform": str(self.platform) if self.platform else None,
            "config": self.config_descriptor.to_json(),
            "layers": [_descriptor_json(layer) for layer in self.layers],
            "cache": str(self.cache),
            "output": output,
            "platforms": [str(p) for p in self.platforms],
            "outputDigest": str(self.output_digest) if self.output_digest else None,
            "seconds": round(self.seconds, 3),
            "bytesDownloaded": self.bytes_downloaded,
            "bytesCached": self.bytes_cached,
            "mirror": self.mirror,
        }


def _descriptor_json(d: Descriptor) -> dict[str, Any]:
    out: dict[str, Any] = {"mediaType": d.media_type, "digest": str(d.digest), "size": d.size}
    if d.annotations:
        out["annotations"] = dict(d.annotations)
    return out


# -- outputs ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Output:
    """What ``output=`` asks for, checked before anything is fetched."""

    kind: str | None = None  # "oci", "oci-archive", "docker-archive", "rootfs"
    target: Any = None  # LayoutTarget, ArchiveTarget or Path


def _plan_output(output: str | None, all_platforms: bool) -> _Output:
    if output is None:
        return _Output()
    if output.startswith("rootfs:"):
        path = output[len("rootfs:"):]
        if not path:
            raise InvalidReference(output, "rootfs: needs a directory (rootfs:DIR)")
        target = Path(path)
        if target.exists() and (not target.is_dir() or any(target.iterdir())):
            raise InvalidReference(output, f"{target} exists and is not empty")
        if all_platforms:
            raise InvalidReference(output, "a root filesystem holds one platform's image")
        return _Output("rootfs", target)
    if output.startswith("docker-archive:"):
        from tank.outputs.archive import ArchiveTarget

        if all_platforms:
            raise InvalidReference(output, "a docker-archive holds one platform's image")
        return _Output("docker-archive", ArchiveTarget.parse(output))
    if output.startswith("oci-archive:"):
        from tank.outputs.oci_archive import parse_target

        return _Output("oci-archive", parse_target(output))
    from tank.outputs.layout import LayoutTarget

    return _Output("oci", LayoutTarget.parse(output))


# -- the pull -----------------------------------------------------------------------------------


@dataclass
class _Resolved:
    """What the references resolved to: the top document, the chosen image, the children."""

    top: Manifest | Index
    image: Manifest
    index: Index | None
    chosen: Platform | None
    children: list[tuple[Descriptor, Manifest]]


def _resolve(
    fetcher: Fetcher, want: Platform | None, all_platforms: bool
) -> _Resolved:
    top = fetcher.resolve_top()
    fetcher.emit(ProgressEvent("manifest", top.digest, top.size, what=top.kind))
    if isinstance(top, Manifest):
        return _Resolved(top, top, None, None, [])
    chosen = want or host_platform()
    entry = top.select(chosen, place=fetcher.place)
    entries = list(top.manifests) if all_platforms else [entry]
    children: list[tuple[Descriptor, Manifest]] = []
    image: Manifest | None = None
    for e in entries:
        child = fetcher.child(e)
        children.append((e, child))
        fetcher.emit(ProgressEvent("manifest", e.digest, child.size, what="image"))
        if e is entry:
            image = child
    assert image is not None
    return _Resolved(top, image, top, chosen, children)


def _blobs_of(resolved: _Resolved) -> list[tuple[Descriptor, str]]:
    """Every config and layer to fetch, the chosen image's first, each once."""
    images = [resolved.image] + [c for _, c in resolved.children if c is not resolved.image]
    blobs: list[tuple[Descriptor, str]] = []
    seen: set[Digest] = set()
    for image in images:
        for d, what in ((image.config, "config"), *((layer, "layer") for layer in image.layers)):
            if d.digest not in seen:
                seen.add(d.digest)
                blobs.append((d, what))
    return blobs


def _read_config(
    store: Store, image: Manifest, fetcher: Fetcher
) -> tuple[dict[str, Any], ImageConfig | None]:
    """The config as JSON, and parsed strictly when it is an image config (not an artifact's)."""
    raw = store.read_blob(image.config.digest, max_size=MAX_CONFIG_SIZE)
    doc = _json.loads_object(
        raw, what="the image config",
        error=lambda message: InvalidManifest(message, **fetcher.place.kwargs()),
    )
    if image.config.media_type not in _IMAGE_CONFIG_TYPES:
        return doc, None
    return doc, ImageConfig.from_json(doc, require_rootfs=False)


_OUTPUT_MODULES = {
    "oci": "tank.outputs.image_layout",
    "docker-archive": "tank.outputs.archive",
    "rootfs": "tank.outputs.rootfs",
}


def _import_ahead(plan: _Output) -> None:
    """Import the output's modules on a thread while the blobs download (the network leaves
    the interpreter idle then); the output step finds them loaded."""
    name = _OUTPUT_MODULES.get(plan.kind or "")
    if name is None:
        return
    import contextlib
    import importlib

    def load() -> None:
        with contextlib.suppress(Exception):  # imported again where it is used, raised there
            importlib.import_module(name)

    threading.Thread(target=load, name="tank-import", daemon=True).start()


def _connections(
    cfg: Config, jobs: int, layer_connections: int | None
) -> tuple[int, dict[str, Any]]:
    """The pull's connection budget (at least ``jobs``), and the :class:`Fetcher`'s keywords
    about connections: per large blob, from what size, and when not to split."""
    connections = layer_connections if layer_connections is not None else (
        cfg.layer_connections or DEFAULT_CONNECTIONS
    )
    if connections < 1:
        raise ValueError("layer_connections must be at least 1")
    budget = max(jobs, cfg.max_connections or MAX_CONNECTIONS)
    return budget, {
        "connections": connections, "budget": Budget(budget),
        "threshold": cfg.layer_chunk_threshold or DEFAULT_THRESHOLD,
        "fast": DEFAULT_FAST_RATE if cfg.layer_fast_rate is None else cfg.layer_fast_rate,
    }


def pull(
    ref: str | Reference,
    *,
    platform: str | Platform | None = None,
    all_platforms: bool = False,
    output: str | None = None,
    cache: str | os.PathLike[str] | Store | None = None,
    jobs: int | None = None,
    offline: bool = False,
    refresh: bool = False,
    progress: ProgressCallback | None = None,
    copy: bool = False,
    rootfs_cache: bool = True,
    retry: RetryPolicy | None = None,
    transport: Transport | None = None,
    credentials: CredentialsArg = None,
    config: Config | None = None,
    cancel: threading.Event | None = None,
    policy: PolicyArg = None,
    layer_connections: int | None = None,
) -> PulledImage:
    """Pull an image into the cache (and into ``output``); return what was pulled.

    :param ref: an image reference (``alpine``, ``ghcr.io/o/r:tag``, ``name@sha256:…``).
    :param platform: ``os/arch[/variant]`` to choose from an index; default the config's
        ``platform``, else the host's.
    :param all_platforms: with an index, fetch every entry (attestations too) and write the
        whole index to an ``oci:`` output, a faithful copy; the returned image is still the
        ``platform`` one.
    :param output: ``oci:DIR[:TAG]`` writes an OCI image layout (TAG defaults to the
        reference's tag, or ``latest`` for a digest reference); ``oci-archive:FILE[:TAG]`` the
        same layout in one tar (as skopeo's ``oci-archive:``); ``docker-archive:FILE[:REF]``
        writes a tar that ``docker load`` reads (REF defaults to the reference);
        ``rootfs:DIR`` unpacks the image into DIR (see :func:`tank.unpack`).
    :param cache: the cache directory (or a :class:`~tank.store.Store`); default
        ``$TANK_CACHE``, else ``$XDG_CACHE_HOME/tank``, else ``~/.cache/tank``.
    :param jobs: blobs downloaded at once (each over its own pooled connection); default the
        config's ``jobs``, else 4.
    :param offline: never touch the network; raise :class:`~tank.errors.CacheMiss` naming what
        is missing.
    :param refresh: re-fetch the manifest and the blobs even when cached.
    :param progress: called with :class:`~tank.ProgressEvent` objects, from worker threads.
    :param copy: write the layout's blobs as copies, never hard links to the cache.
    :param rootfs_cache: with ``output="rootfs:DIR"``, build the root filesystem once in the
        cache and copy it out (``False``: unpack straight into DIR); see :func:`tank.unpack`.
    :param retry: how transient failures are retried (default
        :data:`~tank.retry.DEFAULT_RETRY`); an interrupted blob resumes where it stopped.
    :param transport: connection pool, proxies, TLS settings and timeouts (default: the
        config's, :meth:`tank.config.Config.transport`, a fresh pool sized for ``jobs``).
    :param credentials: for the image's registry: ``(username, password)``, a
        :class:`~tank.Credentials`, or a credential source such as :class:`~tank.CredentialStore`
        (what ``tank pull`` passes: the machine's docker/podman credentials), asked only when the
        registry first challenges. ``None``: anonymous. One token serves the whole pull, renewed
        shortly before it expires.
    :param config: mirrors, insecure registries, trust, timeouts, default platform and jobs
        (:class:`tank.config.Config`); default :func:`tank.config.load`, the configuration
        files. A mirror that fails or lacks the image falls back to the next, then the registry.
    :param cancel: set it (from any thread) to stop the pull: downloads stop at their next chunk
        and :class:`KeyboardInterrupt` is raised, as on Ctrl-C; partial downloads stay in the
        cache's ``ingest/`` and the next pull resumes them (:mod:`tank.aio` uses this).
    :param policy: the signature policy, a :class:`tank.policy.Policy` or a ``policy.json`` path
        (default: :func:`tank.policy.load_policy`'s), judged before any layer is fetched.
    :param layer_connections: connections per blob of at least the config's
        ``layer-chunk-threshold`` (64 MiB): it comes as byte ranges over that many connections
        at once (``1``: one stream per blob); default the config's ``layer-connections``, else
        4. The pull holds at most the config's ``max-connections`` (16) at once.
    """
    started = time.perf_counter()
    reference = parse_reference(ref) if isinstance(ref, str) else ref
    cfg = config if config is not None else load_config()
    endpoints = cfg.endpoints(reference)
    trust = policy_gate(policy, reference, config=cfg, offline=offline)  # before the network
    jobs = jobs if jobs is not None else cfg.jobs or 4
    platform = platform if platform is not None else cfg.platform
    if jobs < 1:
        raise ValueError("jobs must be at least 1")
    budget, transfer = _connections(cfg, jobs, layer_connections)
    plan = _plan_output(output, all_platforms)
    want = Platform.parse(platform) if isinstance(platform, str) else platform
    store = cache if isinstance(cache, Store) else Store(cache)
    retry_policy = retry or DEFAULT_RETRY
    t = transport or cfg.transport(pool_size=budget)
    fetcher = Fetcher(
        reference, store, open_sources(reference, endpoints, credentials, t, retry_policy),
        retry=retry_policy, offline=offline, refresh=refresh, jobs=jobs, progress=progress,
        cancel=cancel, **transfer,
    )
    _import_ahead(plan)
    resolved = _resolve(fetcher, want, all_platforms)
    trust.check(resolved.top, [child for _, child in resolved.children],  # before any layer
                [s.repo for s in dict.fromkeys((fetcher.source, fetcher.upstream))])
    blobs = _blobs_of(resolved)
    fetcher.fetch_all(blobs)
    image = resolved.image
    config_doc, image_config = _read_config(store, image, fetcher)
    if reference.digest is None and not offline:
        top = resolved.top
        store.set_ref(
            reference.registry, reference.repository, reference.tag or DEFAULT_TAG,
            top.digest, top.media_type,
        )
    pulled = _pulled(reference, store, resolved, fetcher, config_doc, image_config,
                     all_platforms=all_platforms)
    pulled = _write_output(plan, pulled, resolved, store, image_config, copy=copy,
                           rootfs_cache=rootfs_cache, all_platforms=all_platforms)
    return dataclasses.replace(pulled, seconds=time.perf_counter() - started)


def _pulled(
    reference: Reference,
    store: Store,
    resolved: _Resolved,
    fetcher: Fetcher,
    config_doc: Any,
    image_config: ImageConfig | None,
    *,
    all_platforms: bool,
) -> PulledImage:
    """What a pull hands back before its output is written."""
    image = resolved.image
    return PulledImage(
        reference=reference,
        digest=image.digest,
        media_type=image.media_type,
        index_digest=resolved.index.digest if resolved.index is not None else None,
        platform=resolved.chosen or (image_config.platform if image_config else None),
        config=config_doc,
        config_descriptor=image.config,
        layers=image.layers,
        cache=store.root,
        output=None,
        output_tag=None,
        output_digest=None,
        bytes_downloaded=fetcher.downloaded,
        bytes_cached=fetcher.cached,
        seconds=0.0,
        platforms=tuple(
            d.platform for d, _ in resolved.children if d.platform is not None
        ) if all_platforms else (),
        mirror=str(fetcher.source) if fetcher.source.mirror else None,
    )


def _write_output(
    plan: _Output,
    pulled: PulledImage,
    resolved: _Resolved,
    store: Store,
    image_config: ImageConfig | None,
    *,
    copy: bool,
    rootfs_cache: bool,
    all_platforms: bool,
) -> PulledImage:
    """Write ``plan``'s output; return ``pulled`` with where it went."""
    reference, image = pulled.reference, resolved.image
    if plan.kind in ("oci", "oci-archive"):
        from tank.outputs.image_layout import write_pulled
        from tank.outputs.oci_archive import write_pulled_archive

        tag = plan.target.tag or reference.tag or DEFAULT_TAG
        whole = resolved.index if all_platforms else None
        platform = pulled.platform if resolved.index is not None and whole is None else None
        if plan.kind == "oci":
            digest = write_pulled(
                store, plan.target.path, tag, image=image, index=whole,
                children=resolved.children, platform=platform, copy=copy,
            )
        else:
            digest = write_pulled_archive(
                store, plan.target.path, tag, image=image, index=whole,
                children=resolved.children, platform=platform,
            )
        return dataclasses.replace(
            pulled, output=plan.target.path, output_tag=tag, output_digest=digest,
            output_kind=plan.kind,
        )
    if plan.kind == "docker-archive":
        from tank.outputs.archive import repo_tag, write_docker_archive

        tag = plan.target.ref or repo_tag(reference)
        diff_ids = image_config.diff_ids if image_config is not None else ()
        if len(diff_ids) != len(image.layers):
            raise InvalidManifest(
                "the image config's rootfs.diff_ids does not list one entry per layer",
                registry=reference.registry, repository=reference.repository,
                reference=reference.fetch_reference,
            )
        write_docker_archive(
            plan.target.path,
            config_path=store.blob_path(image.config.digest),
            config_digest=image.config.digest,
            layers=[(d.digest, d.media_type, store.blob_path(d.digest)) for d in image.layers],
            diff_ids=list(diff_ids),
            repo_tags=[tag],
        )
        return dataclasses.replace(
            pulled, output=plan.target.path, output_tag=tag, output_kind="docker-archive"
        )
    if plan.kind == "rootfs":
        from tank.outputs.rootfs import unpack_image

        unpack_image(
            store, str(image.digest), ImageConfig.from_json(pulled.config),
            [(str(d.digest), d.media_type, store.blob_path(d.digest)) for d in image.layers],
            plan.target, rootfs_cache=rootfs_cache, what=str(reference),
        )
        return dataclasses.replace(pulled, output=plan.target, output_kind="rootfs")
    return pulled


__all__ = ["ProgressCallback", "ProgressEvent", "PulledImage", "pull"]
