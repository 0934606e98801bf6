"""One pooled HTTP client for registries, their CDNs and their token endpoints.

:class:`Transport` (built on urllib3) owns the transport policies, each stated in full in the
module that implements it:

- **Which scheme** (:mod:`tank.transport.client`). HTTPS everywhere; a loopback registry, or one
  named in ``insecure_registries``, is spoken to over plain HTTP only when a TLS handshake shows
  that it does not speak TLS at all.
- **Trust** (:mod:`tank.transport.tls`). The system store, plus ``ca_file``, plus docker's
  per-host ``certs.d`` (CA bundles and client certificates). A certificate error is an error,
  never a reason to fall back to plain HTTP; only an insecure registry skips verification.
- **Proxies** (:mod:`tank.transport.proxies`). ``HTTPS_PROXY``/``HTTP_PROXY``/``NO_PROXY`` as
  :mod:`urllib.request` reads them; HTTPS through a ``CONNECT`` tunnel; proxy credentials go to
  the proxy alone and never appear in an error.
- **Redirects** (:mod:`tank.transport.client`, :mod:`tank.transport.origins`). Followed by hand,
  at most :data:`MAX_REDIRECTS`, never from ``https`` down to ``http``; credentials go only to the
  registry's own origin, never in clear text off this machine, and once dropped on a hop they are
  never restored.
- **Timeouts** (:mod:`tank.transport.timeouts`). A connect timeout, a read timeout and a
  low-speed limit on blob bodies, from keyword, else environment (:data:`TIMEOUT_ENV`), else
  default: a stalled server is an error, never a hang, and no fixed deadline cuts a slow but
  healthy transfer.
- **Errors** (:mod:`tank.transport.client`). Every network failure is a
  :class:`~tank.errors.TransportError` (TLS failures a :class:`~tank.errors.TLSError` saying how
  to fix them) naming the URL. This package never retries.

The modules of this package import one another directly, never through this ``__init__``.
"""

from __future__ import annotations

from tank.transport.client import MAX_REDIRECTS, USER_AGENT, Transport, discard, release
from tank.transport.origins import (
    SENSITIVE_HEADERS,
    Origin,
    is_loopback,
    may_send_credentials,
    normalize_registry,
)
from tank.transport.proxies import bypass_proxy, proxies_from_env
from tank.transport.timeouts import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_READ_TIMEOUT,
    DEFAULT_SPEED_LIMIT,
    DEFAULT_SPEED_TIME,
    TIMEOUT_ENV,
    SpeedLimit,
    SpeedMonitor,
    check_timeout,
    timeout_from_env,
)
from tank.transport.tls import CERTS_D_ENV, HostTLS, certs_dirs, host_tls

__all__ = [
    "CERTS_D_ENV",
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_READ_TIMEOUT",
    "DEFAULT_SPEED_LIMIT",
    "DEFAULT_SPEED_TIME",
    "MAX_REDIRECTS",
    "SENSITIVE_HEADERS",
    "TIMEOUT_ENV",
    "USER_AGENT",
    "HostTLS",
    "Origin",
    "SpeedLimit",
    "SpeedMonitor",
    "Transport",
    "bypass_proxy",
    "certs_dirs",
    "check_timeout",
    "discard",
    "host_tls",
    "is_loopback",
    "may_send_credentials",
    "normalize_registry",
    "proxies_from_env",
    "release",
    "timeout_from_env",
]
