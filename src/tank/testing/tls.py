"""A throw-away certificate authority (trustme) writing PEM files for loopback servers."""

from __future__ import annotations

import itertools
from pathlib import Path

import trustme

__all__ = ["LocalCA"]


class LocalCA:
    """A trustme CA whose certificate lives at ``ca_file``; ``issue()`` writes server certs."""

    def __init__(self, directory: str | Path) -> None:
        """Create the CA and write its certificate into ``directory``."""
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ca = trustme.CA()
        self.ca_file = self.dir / "ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_file))
        self._n = itertools.count()

    def issue(self, *hosts: str) -> tuple[Path, Path]:
        """Issue a server certificate for ``hosts`` (default 127.0.0.1); return (cert, key)."""
        names = hosts or ("127.0.0.1",)
        cert = self.ca.issue_cert(*names)
        n = next(self._n)
        cert_file = self.dir / f"server-{n}.pem"
        key_file = self.dir / f"server-{n}.key"
        # The chain: leaf first, then any intermediates.
        cert_file.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
        cert.private_key_pem.write_to_path(str(key_file))
        return cert_file, key_file
