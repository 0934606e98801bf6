"""The image model: descriptors, manifests, indexes and configs, parsed from untrusted bytes.

Every rule about untrusted documents lives here, once: pull, inspect, unpack and the cache's
maintenance all read manifests through :func:`parse_manifest` and configs through
:func:`parse_config`. Objects keep the bytes they were parsed from, so a digest is never
recomputed from re-serialised JSON.

::

    from tank.image import parse_manifest

    doc = parse_manifest(raw, content_type)        # a Manifest or an Index
    if doc.kind == "index":
        entry = doc.select(Platform.parse("linux/arm64"))
    else:
        doc.config.digest, [layer.size for layer in doc.layers]
"""

from __future__ import annotations

from tank.image.config import ImageConfig, parse_config
from tank.image.descriptor import Descriptor, Where
from tank.image.manifest import (
    MAX_INDEX_ENTRIES,
    MAX_LAYERS,
    MAX_MANIFEST_SIZE,
    Index,
    Manifest,
    kind_of,
    load_json,
    parse_manifest,
)

#: a config blob larger than this is refused (real ones are a few kB; Docker's limit is 8 MB)
MAX_CONFIG_SIZE = 8 * 1024 * 1024

__all__ = [
    "MAX_CONFIG_SIZE",
    "MAX_INDEX_ENTRIES",
    "MAX_LAYERS",
    "MAX_MANIFEST_SIZE",
    "Descriptor",
    "ImageConfig",
    "Index",
    "Manifest",
    "Where",
    "kind_of",
    "load_json",
    "parse_config",
    "parse_manifest",
]
