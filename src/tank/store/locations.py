"""Where tank has seen each blob: per registry, the repositories that hold it.

A copy asks this memory where else on the destination registry a blob lives, and tries a
cross-repository mount from there before uploading it (as skopeo's blob-info cache does). Every
blob a copy finds present, mounts or uploads, and every blob a copy reads from a registry, is
recorded::

    locations/<registry>/<algorithm>-<hex>.json     ["team/app", "team/base", …]

Invariants:

- It is a hint, never trusted: a mount from a repository that no longer has the blob simply
  does not happen (the registry opens an upload instead), and nothing is ever read from a
  repository because of it.
- A record is a small JSON list, most recent first, at most :data:`MAX_REPOSITORIES` names; it is
  replaced whole (a temporary file renamed over it), so a crash leaves the old record or the new
  one, never a mix. A record that does not parse is treated as empty and rewritten.
- Names are validated as the refs are (:mod:`tank.reference`'s rules) before they reach a path.
- Two processes recording at once may lose one of their names (the last rename wins): a
  forgotten hint costs an upload, nothing else.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Final

from tank._fs import atomic_file
from tank.digest import Digest
from tank.errors import InvalidReference
from tank.reference import _DOMAIN, _PATH, api_host

if TYPE_CHECKING:
    from tank.store.content import Store

#: repositories remembered per blob and registry
MAX_REPOSITORIES: Final = 16
#: a record larger than this is treated as corrupt
MAX_RECORD: Final = 64 * 1024


class BlobLocations:
    """The blob-location memory of one cache (see the module).

    :param store: the cache it lives in (``<root>/locations``).
    """

    def __init__(self, store: Store) -> None:
        self.store = store

    def _path(self, registry: str, digest: str) -> Path:
        host = api_host(registry)
        if not isinstance(host, str) or not _DOMAIN.fullmatch(host):
            raise InvalidReference(str(registry), f"invalid registry host {registry!r}")
        d = Digest.parse(digest)
        return self.store.root / "locations" / host / f"{d.algorithm}-{d.hex}.json"

    def repositories(self, registry: str, digest: str) -> list[str]:
        """The repositories of ``registry`` known to hold ``digest``, most recent first."""
        path = self._path(registry, digest)
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | os.O_CLOEXEC)
        except OSError:
            return []
        try:
            raw = os.read(fd, MAX_RECORD + 1)
        except OSError:
            return []
        finally:
            os.close(fd)
        try:
            doc = json.loads(raw) if len(raw) <= MAX_RECORD else None
        except (UnicodeDecodeError, ValueError):
            doc = None
        if not isinstance(doc, list):
            return []
        return [r for r in doc if isinstance(r, str) and _PATH.fullmatch(r)][:MAX_REPOSITORIES]

    def record(self, registry: str, repository: str, digest: str) -> None:
        """Remember that ``registry/repository`` holds ``digest`` (first in its list)."""
        if not isinstance(repository, str) or not _PATH.fullmatch(repository):
            raise InvalidReference(str(repository), "invalid repository name")
        path = self._path(registry, digest)
        known = self.repositories(registry, digest)
        if known[:1] == [repository]:
            return
        names = [repository] + [r for r in known if r != repository]
        self.store.private_dir("locations")
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError), atomic_file(path, durable=False) as out:
            out.write(json.dumps(names[:MAX_REPOSITORIES]).encode())

    def record_many(self, registry: str, repository: str, digests: list[str]) -> None:
        """:meth:`record` for each of ``digests``."""
        for digest in digests:
            self.record(registry, repository, digest)


__all__ = ["MAX_REPOSITORIES", "BlobLocations"]
