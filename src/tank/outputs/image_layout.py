"""A pulled image, from the cache into an OCI image layout, as layout tools can read it.

A Docker v2 manifest is rewritten with OCI media types (as ``skopeo copy docker://… oci:…`` does),
because umoci, skopeo and oci-image-tool refuse Docker media types in a layout; config and layer
bytes are unchanged, only the manifest digest differs. An OCI index of OCI manifests is kept byte
for byte; a Docker manifest list, or an index with a Docker child, is rewritten as an OCI index of
the converted children. Rewritten documents go into the cache first (they are blobs like any
other), then :func:`tank.outputs.layout.write_image` places everything.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tank import mediatypes
from tank.digest import Digest, compute
from tank.image import Descriptor, Index, Manifest
from tank.image.convert import docker_to_oci
from tank.outputs.layout import write_image
from tank.platform import Platform
from tank.store import Store


def manifest_for_layout(store: Store, image: Manifest) -> tuple[Digest, str, int]:
    """``(digest, media type, size)`` of ``image`` as a layout holds it (converted if Docker)."""
    if image.media_type != mediatypes.DOCKER_MANIFEST:
        return image.digest, image.media_type, image.size
    converted = docker_to_oci(dict(image.json))
    new = compute(converted)
    store.put_bytes(new, converted)
    return new, mediatypes.OCI_MANIFEST, len(converted)


def index_for_layout(
    store: Store, index: Index, children: list[tuple[Descriptor, Manifest]], paths: dict[str, Path]
) -> tuple[Digest, str, int]:
    """``(digest, media type, size)`` of ``index`` as a layout holds it; ``paths`` gets the
    files of the (possibly converted) children."""
    rewritten = []
    changed = index.media_type != mediatypes.OCI_INDEX
    for entry, child in children:
        digest, ctype, csize = manifest_for_layout(store, child)
        paths[str(digest)] = store.blob_path(digest)
        changed = changed or digest != entry.digest
        out: dict[str, Any] = {"mediaType": ctype, "digest": str(digest), "size": csize}
        raw_entry = entry.json or {}
        if raw_entry.get("platform") is not None:
            out["platform"] = raw_entry["platform"]
        if entry.annotations:
            out["annotations"] = dict(entry.annotations)
        rewritten.append(out)
    if not changed:
        return index.digest, mediatypes.OCI_INDEX, index.size
    doc: dict[str, Any] = {
        "schemaVersion": 2, "mediaType": mediatypes.OCI_INDEX, "manifests": rewritten,
    }
    if isinstance(index.json.get("annotations"), dict):
        doc["annotations"] = index.json["annotations"]
    raw = json.dumps(doc, separators=(",", ":")).encode()
    new = compute(raw)
    store.put_bytes(new, raw)
    return new, mediatypes.OCI_INDEX, len(raw)


def _platform_json(p: Platform) -> dict[str, str]:
    out = {"os": p.os, "architecture": p.architecture}
    if p.variant:
        out["variant"] = p.variant
    return out


def layout_plan(
    store: Store,
    image: Manifest,
    index: Index | None,
    children: list[tuple[Descriptor, Manifest]],
    platform: Platform | None,
) -> tuple[tuple[Digest, str, int], dict[str, Path], Platform | None]:
    """What a layout (or an OCI archive) of ``image`` (or the whole ``index``) holds: the top
    manifest as written there (digest, media type, size: converted to OCI when it is Docker's),
    every blob's cache file by digest, and the platform its entry carries (none for an index)."""
    images = [image] + [c for _, c in children if c is not image]
    paths: dict[str, Path] = {}
    for m in images:
        for d in (m.config, *m.layers):
            paths[str(d.digest)] = store.blob_path(d.digest)
    if index is not None:
        top = index_for_layout(store, index, children, paths)
        platform = None
    else:
        top = manifest_for_layout(store, image)
    paths[str(top[0])] = store.blob_path(top[0])
    return top, paths, platform


def write_pulled(
    store: Store,
    path: Path,
    tag: str,
    *,
    image: Manifest,
    index: Index | None,
    children: list[tuple[Descriptor, Manifest]],
    platform: Platform | None,
    copy: bool,
) -> Digest:
    """Write ``image`` (or the whole ``index`` with its ``children``) from ``store`` into the
    layout at ``path`` named ``tag``; return the top manifest's digest in the layout.
    ``platform`` goes on the layout's entry (for an image chosen from an index)."""
    (digest, media_type, size), paths, platform = layout_plan(store, image, index, children,
                                                              platform)
    write_image(
        path,
        manifest_digest=digest,
        manifest_media_type=media_type,
        manifest_size=size,
        ref_name=tag,
        blobs=paths,
        platform=_platform_json(platform) if platform is not None else None,
        copy=copy,
    )
    return digest


__all__ = ["index_for_layout", "layout_plan", "manifest_for_layout", "write_pulled"]
