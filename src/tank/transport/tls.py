"""TLS trust: the certs.d convention, SSL contexts, and the probe for servers without TLS.

- **Trust.** HTTPS is verified against the system store, plus ``ca_file``, plus the per-host CA
  bundles of docker's ``certs.d`` convention (:func:`certs_dirs`): ``HOST[:PORT]/*.crt`` are
  trusted for that host, and ``*.cert`` with its ``*.key`` (``client.cert``/``client.key``) is
  the client certificate presented to it (mTLS). A certificate error is an error, never a reason
  to fall back to plain HTTP; only a registry named in ``insecure_registries`` is spoken to over
  TLS without verification. Trust stores are loaded on first HTTPS use (:func:`ssl_context`).
- **The probe.** :func:`speaks_tls` tells a plain-HTTP server from a TLS one by a handshake
  alone, without checking certificates: it decides a scheme, never trust.
- **Messages.** A TLS failure says how to fix it (:func:`tls_hint`): certs.d, ``--ca-file`` or
  ``--insecure-registry``.
"""

from __future__ import annotations

import os
import re
import socket
import ssl
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final
from urllib.parse import urlsplit

from urllib3.exceptions import InsecureRequestWarning

from tank.errors import ConfigError
from tank.transport.proxies import Proxy, connect_tunnel

if TYPE_CHECKING:
    from collections.abc import Iterable

#: overrides the certs.d roots (``os.pathsep``-separated); see :func:`certs_dirs`
CERTS_D_ENV: Final = "TANK_CERTS_D"
#: OpenSSL's reasons when the peer answered a ClientHello with something that is not TLS
NOT_TLS_REASONS: Final = frozenset(
    {
        "WRONG_VERSION_NUMBER",
        "RECORD_LAYER_FAILURE",
        "HTTP_REQUEST",
        "PACKET_LENGTH_TOO_LONG",
        "UNKNOWN_PROTOCOL",
        "UNEXPECTED_EOF_WHILE_READING",
    }
)
# OpenSSL's words for "the server wants a client certificate"
_CLIENT_CERT_WANTED = re.compile(
    r"CERTIFICATE_REQUIRED|certificate required|BAD_CERTIFICATE|bad certificate|"
    r"HANDSHAKE_FAILURE|handshake failure",
)


# -- certs.d ----------------------------------------------------------------------------------


def certs_dirs() -> list[Path]:
    """The roots searched for ``HOST[:PORT]/`` trust folders, first match wins.

    ``$TANK_CERTS_D`` (``os.pathsep``-separated) replaces the defaults:
    ``$XDG_CONFIG_HOME/tank/certs.d`` (``~/.config/tank/certs.d``),
    ``$XDG_CONFIG_HOME/containers/certs.d``, ``/etc/containers/certs.d`` and
    ``/etc/docker/certs.d``.
    """
    override = os.environ.get(CERTS_D_ENV)
    if override is not None:
        return [Path(p) for p in override.split(os.pathsep) if p]
    config = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return [
        Path(config, "tank", "certs.d"),
        Path(config, "containers", "certs.d"),
        Path("/etc/containers/certs.d"),
        Path("/etc/docker/certs.d"),
    ]


@dataclass(frozen=True)
class HostTLS:
    """What ``certs.d`` says about one ``HOST[:PORT]``.

    :ivar directory: the folder found, or ``None``.
    :ivar ca_files: its ``*.crt`` files, trusted for this host on top of the system store.
    :ivar client_cert: its first ``*.cert`` and the ``*.key`` of the same name.
    """

    directory: Path | None = None
    ca_files: tuple[str, ...] = ()
    client_cert: tuple[str, str] | None = None


def host_tls(hostport: str, roots: Iterable[Path] | None = None) -> HostTLS:
    """Look ``hostport`` up in the certs.d ``roots`` (default :func:`certs_dirs`).

    As docker does: ``*.crt`` are CA certificates; each ``NAME.cert`` needs ``NAME.key`` (and
    each ``NAME.key`` its ``NAME.cert``), else a :class:`~tank.errors.ConfigError`.
    """
    for root in certs_dirs() if roots is None else roots:
        folder = root / hostport.lower()
        if not folder.is_dir():
            continue
        try:
            names = sorted(p.name for p in folder.iterdir())
        except OSError as exc:
            raise ConfigError(f"cannot read {folder}: {exc.strerror or exc}") from exc
        cas = tuple(str(folder / n) for n in names if n.endswith(".crt"))
        pairs: list[tuple[str, str]] = []
        for n in names:
            stem, _, ext = n.rpartition(".")
            if ext == "cert":
                if f"{stem}.key" not in names:
                    raise ConfigError(f"{folder / n}: missing the client key {stem}.key beside it")
                pairs.append((str(folder / n), str(folder / f"{stem}.key")))
            elif ext == "key" and f"{stem}.cert" not in names:
                raise ConfigError(f"{folder / n}: missing the client certificate {stem}.cert")
        return HostTLS(folder, cas, pairs[0] if pairs else None)
    return HostTLS()


# -- SSL contexts -----------------------------------------------------------------------------


@dataclass(frozen=True)
class TLSProfile:
    """Everything an SSL context depends on; contexts are cached per profile.

    :ivar verify: whether certificates are checked (``False`` only for an insecure registry).
    :ivar ca_files: PEM bundles trusted on top of the system store.
    :ivar client_cert: the client certificate and its key, or ``None``.
    """

    verify: bool
    ca_files: tuple[str, ...]
    client_cert: tuple[str, str] | None


def ssl_context(profile: TLSProfile) -> ssl.SSLContext:
    """A new SSL context for ``profile`` (loading the system store costs milliseconds).

    A CA bundle or client certificate that cannot be loaded is a
    :class:`~tank.errors.ConfigError` naming the file.
    """
    context = ssl.create_default_context()
    if not profile.verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    for ca in profile.ca_files:
        try:
            context.load_verify_locations(cafile=ca)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"cannot load the CA certificates in {ca}: {exc}") from exc
    if profile.client_cert is not None:
        cert, key = profile.client_cert
        try:
            context.load_cert_chain(cert, key)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"cannot load the client certificate {cert} with {key}: {exc}"
            ) from exc
    return context


_quiet_lock = threading.Lock()


def quiet_insecure_warning(host: str) -> None:
    """Silence urllib3's unverified-HTTPS warning for a host named insecure on purpose (called
    before each such request: whoever resets the warning filters meanwhile, such as
    ``warnings.catch_warnings``, does not bring the warning back)."""
    with _quiet_lock:
        warnings.filterwarnings(
            "ignore", category=InsecureRequestWarning,
            message=rf"Unverified HTTPS request is being made to host '{re.escape(host)}'",
        )


# -- the probe and the hints ------------------------------------------------------------------


def speaks_tls(registry: str, timeout: float | None, proxy: Proxy | None = None) -> bool:
    """Whether the server at ``registry`` (loopback or insecure) answers a TLS handshake.

    Only the handshake is attempted, with no certificate check: its one purpose is telling a
    plain-HTTP server from a TLS one. Real requests then verify certificates as everywhere else,
    so a TLS server with a bad certificate fails there, and is never downgraded. A server that
    cannot be reached counts as TLS, so the real request reports the real error. Through an
    ``http://`` proxy the handshake goes through a ``CONNECT`` tunnel.
    """
    parts = urlsplit(f"//{registry}")
    host, port = parts.hostname or "localhost", parts.port or 443
    probe = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    probe.check_hostname = False
    probe.verify_mode = ssl.CERT_NONE
    if proxy is not None and not proxy.url.startswith("http://"):
        return True  # an https proxy: assume TLS, the real request says otherwise
    try:
        if proxy is None:
            sock = socket.create_connection((host, port), timeout=timeout)
        else:
            sock = connect_tunnel(proxy, registry, timeout)
    except OSError:
        return True
    try:
        with probe.wrap_socket(sock, server_hostname=host):
            return True
    except ssl.SSLError as exc:
        return not (exc.reason in NOT_TLS_REASONS or isinstance(exc, ssl.SSLEOFError))
    except (ConnectionError, TimeoutError):
        return False
    finally:
        sock.close()


def tls_hint(hostport: str, entry: HostTLS, roots: list[Path], reason: str) -> str:
    """How to fix a TLS failure with ``hostport`` whose ``reason`` OpenSSL gave.

    ``entry`` is the host's certs.d entry and ``roots`` the certs.d roots searched; the hint
    names certs.d, ``--ca-file`` or ``--insecure-registry``, whichever fits the failure.
    """
    where = roots[0] / hostport if roots else Path("certs.d") / hostport
    if any(name in reason for name in NOT_TLS_REASONS):
        return (
            f". The server does not seem to speak TLS; if {hostport} is a plain-HTTP "
            f"registry, name it with --insecure-registry {hostport}"
        )
    if _CLIENT_CERT_WANTED.search(reason) and "verify failed" not in reason:
        if entry.client_cert is not None:
            return (
                f". The registry refused the client certificate {entry.client_cert[0]} "
                "(is it signed by a CA the registry trusts, and still valid?)"
            )
        return (
            f". The registry may want a client certificate: put client.cert and "
            f"client.key in {entry.directory or where}/"
        )
    return (
        f". To trust the registry's certificate authority, put its certificate in "
        f"{where}/ca.crt (or /etc/docker/certs.d/{hostport}/ca.crt), or pass --ca-file FILE "
        f"(Transport(ca_file=…)); --insecure-registry {hostport} skips verification "
        "(only on a network you trust)"
    )


__all__ = [
    "CERTS_D_ENV",
    "NOT_TLS_REASONS",
    "HostTLS",
    "TLSProfile",
    "certs_dirs",
    "host_tls",
    "quiet_insecure_warning",
    "speaks_tls",
    "ssl_context",
    "tls_hint",
]
