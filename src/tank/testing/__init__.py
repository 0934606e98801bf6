"""tank's test kit, public: real registries and faults on loopback, for tank's tests and yours.

- :class:`LocalRegistry`: the CNCF distribution registry (``/usr/bin/docker-registry``) on a free
  loopback port, open, behind a :class:`TokenServer` (the Docker Hub token flow), with htpasswd, or
  with TLS from a :class:`LocalCA`.
- :mod:`tank.testing.images`: image, layer and index builders and a :class:`Pusher`.
- :mod:`tank.testing.fronts`: a recording, fault-injecting HTTP front, a blob CDN and a forward
  proxy (resets, truncation, 429/5xx, wrong bytes, cross-host redirects), loopback only.

It needs the ``testing`` extra (``pip install 'tank-oci[testing]'``: cryptography, PyJWT,
trustme, bcrypt); importing it without them fails with an :class:`ImportError` that says so.
Nothing here is imported by tank's library, and it imports nothing of the library's but
helpers, so the harness works on its own.
"""

import importlib.util as _util

_MISSING = [m for m in ("cryptography", "jwt", "trustme", "bcrypt") if _util.find_spec(m) is None]
if _MISSING:
    raise ImportError(
        "tank.testing needs the 'testing' extra: pip install 'tank-oci[testing]' "
        f"(missing: {', '.join(_MISSING)})",
        name=f"tank.testing ({_MISSING[0]})",
    )

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
