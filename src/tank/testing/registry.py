"""Run a real CNCF distribution registry (``/usr/bin/docker-registry``) on loopback."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from tank.testing._closing import Closing

if TYPE_CHECKING:
    from tank.testing.tokenserver import TokenServer

__all__ = ["REGISTRY_BINARY", "LocalRegistry", "RegistryError"]

REGISTRY_BINARY = os.environ.get("TANK_REGISTRY_BINARY", "/usr/bin/docker-registry")
_READY_TIMEOUT = 20.0
_BIND_ATTEMPTS = 5


class RegistryError(RuntimeError):
    """The registry could not be started."""


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def _q(value: str | Path) -> str:
    """Quote a scalar for YAML (JSON strings are valid YAML)."""
    return json.dumps(str(value))


def _htpasswd_line(user: str, password: str) -> str:
    import bcrypt

    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=5)).decode()
    return f"{user}:{hashed}\n"


class LocalRegistry(Closing):
    """A ``docker-registry serve`` process with its own storage, config and log.

    Modes: open (default), ``token=TokenServer``, ``htpasswd={"user": "pw"}``,
    ``tls=(certfile, keyfile)``, and with TLS, mutual TLS: ``client_ca=PEM``
    (``http.tls.clientcas``: a client must present a certificate that CA signed;
    ``client_cert=(cert, key)`` is the one the readiness probe presents). ``storage_dir``
    serves another registry's storage (read-only use: a second registry, e.g. a mirror or a TLS
    twin, without pushing again); it is kept at :meth:`close`.
    """

    def __init__(
        self,
        *,
        token: TokenServer | None = None,
        htpasswd: Mapping[str, str] | None = None,
        tls: tuple[str | Path, str | Path] | None = None,
        host: str = "127.0.0.1",
        binary: str = REGISTRY_BINARY,
        client_ca: str | Path | None = None,
        client_cert: tuple[str | Path, str | Path] | None = None,
        storage_dir: str | Path | None = None,
        proxy_remote: str | None = None,
        delete: bool = True,
    ) -> None:
        """Start the registry and wait until ``GET /v2/`` answers (``delete=False``: with
        deletion disabled, as most registries run).

        ``proxy_remote`` (a registry's URL) runs it as a pull-through cache of that registry
        (distribution's ``proxy: remoteurl:``): what it lacks it fetches from there (answering
        the upstream's token challenges itself), stores, and serves.
        """
        self._proxy_remote = proxy_remote
        if token is not None and htpasswd is not None:
            raise ValueError("choose token or htpasswd auth, not both")
        if client_ca is not None and (tls is None or client_cert is None):
            raise ValueError("client_ca needs tls=(cert, key) and a client_cert for the probe")
        self._client_ca = client_ca
        self._client_cert = client_cert
        self._delete = delete
        if not os.access(binary, os.X_OK):
            raise RegistryError(
                f"{binary} not found: install the CNCF registry (apt-get install docker-registry)"
            )
        self.bind_host = host
        self.scheme = "https" if tls else "http"
        self._binary = binary
        self._token = token
        self._tls = tls
        self._dir = Path(tempfile.mkdtemp(prefix="tank-registry-"))
        if storage_dir is not None:
            self.storage_dir = Path(storage_dir)
        else:
            self.storage_dir = self._dir / "storage"
            self.storage_dir.mkdir()
        self.log_path = self._dir / "registry.log"
        self.config_path = self._dir / "config.yml"
        self._htpasswd_path: Path | None = None
        if htpasswd is not None:
            self._htpasswd_path = self._dir / "htpasswd"
            self._htpasswd_path.write_text(
                "".join(_htpasswd_line(u, p) for u, p in htpasswd.items())
            )
        self._proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        try:
            self._start()
        except BaseException:
            self.close()
            raise

    # -- public API -------------------------------------------------------------------------

    @property
    def host(self) -> str:
        """``HOST:PORT`` as a client would write it in a reference."""
        return f"{self.bind_host}:{self.port}"

    @property
    def url(self) -> str:
        """``scheme://host:port``."""
        return f"{self.scheme}://{self.host}"

    def blob_path(self, digest: str) -> Path:
        """The file in storage holding the blob ``digest`` (``sha256:...``)."""
        algo, _, hexpart = digest.partition(":")
        return self.storage_dir / "docker/registry/v2/blobs" / algo / hexpart[:2] / hexpart / "data"

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of the registry's log."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def close(self) -> None:
        """Stop the process (terminate, then kill) and remove the temporary directory."""
        self._stop()
        shutil.rmtree(self._dir, ignore_errors=True)

    # -- internals --------------------------------------------------------------------------

    def _config(self) -> str:
        lines = [
            "version: 0.1",
            "log:",
            "  level: warn",
            "  formatter: text",
            "  accesslog:",
            "    disabled: true",
            "storage:",
            "  filesystem:",
            f"    rootdirectory: {_q(self.storage_dir)}",
            "  delete:",
            f"    enabled: {'true' if self._delete else 'false'}",
            "  maintenance:",
            "    uploadpurging:",
            "      enabled: false",
            "http:",
            f"  addr: {_q(self.host)}",
            f"  secret: {_q(os.urandom(16).hex())}",
            "  headers:",
            "    X-Content-Type-Options: [nosniff]",
        ]
        if self._tls:
            cert, key = self._tls
            lines += ["  tls:", f"    certificate: {_q(cert)}", f"    key: {_q(key)}"]
            if self._client_ca is not None:
                lines += ["    clientcas:", f"      - {_q(self._client_ca)}"]
        lines += ["health:", "  storagedriver:", "    enabled: false"]
        if self._proxy_remote is not None:
            lines += ["proxy:", f"  remoteurl: {_q(self._proxy_remote)}"]
        if self._token is not None:
            t = self._token
            lines += [
                "auth:",
                "  token:",
                f"    realm: {_q(t.realm)}",
                f"    service: {_q(t.service)}",
                f"    issuer: {_q(t.issuer)}",
                f"    rootcertbundle: {_q(t.rootcertbundle)}",
            ]
        elif self._htpasswd_path is not None:
            lines += [
                "auth:",
                "  htpasswd:",
                '    realm: "tank-test-registry"',
                f"    path: {_q(self._htpasswd_path)}",
            ]
        return "\n".join(lines) + "\n"

    def _start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
        last = ""
        for _ in range(_BIND_ATTEMPTS):
            self.port = _free_port(self.bind_host)
            self.config_path.write_text(self._config())
            with self.log_path.open("ab") as log:
                self._proc = subprocess.Popen(
                    [self._binary, "serve", str(self.config_path)],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    cwd=self._dir,
                )
            if self._wait_ready():
                return
            last = self.log_tail()
            self._stop()
            if "address already in use" not in last:
                break
        raise RegistryError(f"registry did not become ready on {self.url}; log tail:\n{last}")

    def _probe(self) -> bool:
        """True when /v2/ answers 200 or 401 as a distribution registry."""
        conn: http.client.HTTPConnection
        if self.scheme == "https":
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            if self._client_cert is not None:
                ctx.load_cert_chain(str(self._client_cert[0]), str(self._client_cert[1]))
            conn = http.client.HTTPSConnection(self.bind_host, self.port, timeout=2, context=ctx)
        else:
            conn = http.client.HTTPConnection(self.bind_host, self.port, timeout=2)
        try:
            conn.request("GET", "/v2/")
            resp = conn.getresponse()
            resp.read()
        except (OSError, http.client.HTTPException):
            return False
        finally:
            conn.close()
        return resp.status in (200, 401) and resp.getheader(
            "Docker-Distribution-Api-Version", ""
        ).startswith("registry/2")

    def _wait_ready(self) -> bool:
        assert self._proc is not None
        deadline = time.monotonic() + _READY_TIMEOUT
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                return False
            if self._probe():
                # Another process may own the port: make sure ours is still alive.
                time.sleep(0.05)
                return self._proc.poll() is None
            time.sleep(0.05)
        return False

    def _stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
