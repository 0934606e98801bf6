"""Docker v2 manifests rewritten with OCI media types, for OCI image layouts.

An OCI layout's tools (umoci, skopeo's ``oci:`` transport, oci-image-tool) accept only OCI media
types, so, like ``skopeo copy docker://… oci:…``, tank rewrites a Docker v2 manifest when it writes
one into a layout. Config and layer bytes are untouched (their digests stay the same); only the
manifest's own bytes, and so its digest, change.
"""

from __future__ import annotations

import json
from typing import Any, Final

from tank import mediatypes
from tank.errors import UnsupportedManifest

LAYER_TYPES: Final = {
    mediatypes.DOCKER_LAYER_GZIP: mediatypes.OCI_LAYER_GZIP,
    "application/vnd.docker.image.rootfs.diff.tar": mediatypes.OCI_LAYER_TAR,
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip": (
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
    ),
    # already OCI (docker writes zstd layers with the OCI type)
    mediatypes.OCI_LAYER_GZIP: mediatypes.OCI_LAYER_GZIP,
    mediatypes.OCI_LAYER_ZSTD: mediatypes.OCI_LAYER_ZSTD,
    mediatypes.OCI_LAYER_TAR: mediatypes.OCI_LAYER_TAR,
}


def docker_to_oci(manifest: dict[str, Any]) -> bytes:
    """The OCI image manifest equivalent to a Docker v2 image manifest, as JSON bytes.

    Raises :class:`~tank.errors.UnsupportedManifest` for a layer type it cannot map.
    """
    config = dict(manifest["config"])
    config["mediaType"] = mediatypes.OCI_CONFIG
    layers = []
    for layer in manifest["layers"]:
        new = dict(layer)
        media_type = layer.get("mediaType")
        if media_type not in LAYER_TYPES:
            raise UnsupportedManifest(
                f"cannot write layer {layer.get('digest')} of type {media_type!r} into an OCI "
                "layout"
            )
        new["mediaType"] = LAYER_TYPES[media_type]
        layers.append(new)
    out: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": mediatypes.OCI_MANIFEST,
        "config": config,
        "layers": layers,
    }
    if isinstance(manifest.get("annotations"), dict):
        out["annotations"] = manifest["annotations"]
    return json.dumps(out, separators=(",", ":")).encode()


__all__ = ["LAYER_TYPES", "docker_to_oci"]
