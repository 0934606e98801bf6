"""OCI 1.1 artifacts for tests: a manifest with ``artifactType`` and a ``subject``, as oras and
cosign's attestations write them."""

from __future__ import annotations

import json

from tank.testing.images import Blob

EMPTY = "application/vnd.oci.empty.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
SPDX = "application/spdx+json"
INTOTO = "application/vnd.in-toto+json"


def artifact(subject: str, subject_size: int, artifact_type: str, body: bytes,
             annotations: dict[str, str] | None = None) -> tuple[bytes, Blob, Blob]:
    """An OCI 1.1 artifact manifest (an image manifest with artifactType and subject): its
    bytes, its empty config and its one layer ``body``."""
    config = Blob.of(b"{}", EMPTY)
    layer = Blob.of(body, artifact_type)
    doc = {
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": artifact_type,
        "config": config.descriptor(), "layers": [layer.descriptor()],
        "subject": {"mediaType": OCI_MANIFEST, "digest": subject, "size": subject_size},
    }
    if annotations:
        doc["annotations"] = annotations
    return json.dumps(doc).encode(), config, layer
