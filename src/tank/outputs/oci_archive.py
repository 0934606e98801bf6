"""Write an image as an OCI archive: an OCI image layout in one tar, as skopeo's
``oci-archive:`` transport writes and reads it.

The tar holds exactly what an OCI layout directory holds (:mod:`tank.outputs.layout`)::

    oci-layout              {"imageLayoutVersion": "1.0.0"}
    index.json              one entry, named by org.opencontainers.image.ref.name
    blobs/<alg>/<hex>       every blob the image reaches

Invariants:

- Blobs stream from tank's cache into the tar (bounded memory, no staging directory).
- Deterministic: members in a fixed order (``oci-layout``, ``index.json``, then the blobs by
  digest), mtime 0, owner 0, mode 0644 (directories 0755), no user or group names. The same
  image gives the same archive, byte for byte.
- Written to a temporary file beside the destination, fsynced and renamed into place only when
  complete: the destination never holds a partial archive. An existing archive is replaced, as
  skopeo replaces it.
- A Docker v2 manifest is stored rewritten with OCI media types, as in a layout
  (:mod:`tank.outputs.image_layout`): layout readers refuse Docker media types.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from tank._fs import atomic_file
from tank.digest import Digest
from tank.errors import ArchiveError, SizeMismatch
from tank.image import Descriptor, Index, Manifest
from tank.outputs.image_layout import _platform_json, layout_plan
from tank.outputs.layout import LAYOUT_VERSION, LayoutTarget, index_entry
from tank.platform import Platform
from tank.store import Store

PREFIX: Final = "oci-archive:"


def parse_target(spec: str) -> LayoutTarget:
    """Parse ``oci-archive:FILE[:TAG]`` (the tag rule of ``oci:DIR[:TAG]``)."""
    from tank.errors import InvalidReference

    if not isinstance(spec, str) or not spec.startswith(PREFIX):
        raise InvalidReference(str(spec), "an OCI archive target is oci-archive:FILE[:TAG]")
    return LayoutTarget.parse("oci:" + spec[len(PREFIX):])


def _info(name: str, size: int = 0, *, directory: bool = False) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mode = 0o755 if directory else 0o644
    info.type = tarfile.DIRTYPE if directory else tarfile.REGTYPE
    return info


def write_oci_archive(
    path: str | os.PathLike[str],
    *,
    manifest_digest: str,
    manifest_media_type: str,
    manifest_size: int,
    ref_name: str,
    blobs: Mapping[str, Path],
    platform: Mapping[str, str] | None = None,
) -> None:
    """Write the archive at ``path``: the image ``manifest_digest`` named ``ref_name``, with
    every blob in ``blobs`` (digest → its file in the cache). See the module."""
    target = Path(path)
    top = Digest.parse(manifest_digest)
    sources = {Digest.parse(d): Path(p) for d, p in blobs.items()}
    if top not in sources:
        raise ArchiveError(f"{target}: the manifest {top} is not among the blobs given")
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
             "manifests": [index_entry(manifest_media_type, top, manifest_size, ref_name,
                                       platform)]}
    if target.is_dir():
        raise ArchiveError(f"{target}: is a directory (an OCI archive is a file)")
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(target, mode=0o644, buffering=1024 * 1024) as out, tarfile.open(
        fileobj=out, mode="w", format=tarfile.PAX_FORMAT
    ) as tar:
        for name, data in (
            ("oci-layout", json.dumps({"imageLayoutVersion": LAYOUT_VERSION}).encode()),
            ("index.json", json.dumps(index, separators=(",", ":")).encode()),
        ):
            tar.addfile(_info(name, len(data)), io.BytesIO(data))
        tar.addfile(_info("blobs", directory=True))
        for algorithm in sorted({d.algorithm for d in sources}):
            tar.addfile(_info(f"blobs/{algorithm}", directory=True))
        for digest in sorted(sources):
            source = sources[digest]
            with source.open("rb") as f:
                size = os.fstat(f.fileno()).st_size
                if digest == top and size != manifest_size:
                    raise SizeMismatch(manifest_size, size, what="manifest", digest=top)
                tar.addfile(_info(f"blobs/{digest.algorithm}/{digest.hex}", size), f)


def write_pulled_archive(
    store: Store,
    path: Path,
    tag: str,
    *,
    image: Manifest,
    index: Index | None,
    children: list[tuple[Descriptor, Manifest]],
    platform: Platform | None,
) -> Digest:
    """:func:`tank.outputs.image_layout.write_pulled`, into an OCI archive: ``image`` (or the
    whole ``index`` with its ``children``) from ``store``; the top manifest's digest in it."""
    (digest, media_type, size), paths, platform = layout_plan(store, image, index, children,
                                                              platform)
    write_oci_archive(
        path, manifest_digest=digest, manifest_media_type=media_type, manifest_size=size,
        ref_name=tag, blobs=paths,
        platform=_platform_json(platform) if platform is not None else None,
    )
    return digest


__all__ = ["PREFIX", "parse_target", "write_oci_archive", "write_pulled_archive"]
