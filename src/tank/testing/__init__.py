"""Test infrastructure for tank: a local CNCF registry, a token server and an image builder.

Nothing here imports tank's library modules, so the harness works on its own.
"""

from tank.testing.images import (
    Blob,
    Image,
    Index,
    Pusher,
    make_image,
    make_index,
    make_layer,
    make_random_blob_file,
    sample_image,
    sample_index,
    sha256_digest,
)
from tank.testing.registry import LocalRegistry, RegistryError
from tank.testing.seed import SAMPLE_REPO, Seeded, build_seed, seed_registry
from tank.testing.tls import LocalCA
from tank.testing.tokenserver import TokenRequest, TokenServer, libtrust_key_id

__all__ = [
    "SAMPLE_REPO",
    "Blob",
    "Image",
    "Index",
    "LocalCA",
    "LocalRegistry",
    "Pusher",
    "RegistryError",
    "Seeded",
    "TokenRequest",
    "TokenServer",
    "build_seed",
    "libtrust_key_id",
    "make_image",
    "make_index",
    "make_layer",
    "make_random_blob_file",
    "sample_image",
    "sample_index",
    "seed_registry",
    "sha256_digest",
]
