"""Proxies: which one a request goes through, and the ``CONNECT`` tunnel.

- ``HTTPS_PROXY``/``HTTP_PROXY`` (lower case wins) per scheme, ``NO_PROXY`` bypassing hosts by
  domain suffix, ``host:port``, IP or CIDR, or ``*`` for all, as :mod:`urllib.request` reads them
  (:func:`proxies_from_env`, :func:`bypass_proxy`).
- HTTPS goes through a ``CONNECT`` tunnel, plain HTTP is forwarded.
- ``user:password@`` in a proxy URL becomes ``Proxy-Authorization`` for the proxy alone
  (:class:`Proxy`), and never appears in an error.
"""

from __future__ import annotations

import base64
import ipaddress
import os
import socket
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from tank.errors import ConfigError


def proxies_from_env() -> dict[str, str]:
    """``{"https": url, "http": url, "no": "a,b"}`` from the environment, as urllib reads it.

    ``https_proxy``, ``http_proxy`` and ``no_proxy`` in any case, the lower-case spelling
    winning (an empty one unsets); under CGI (``REQUEST_METHOD`` set) upper-case ``HTTP_PROXY``
    is ignored, since a client can set it with a ``Proxy:`` header (CVE-2016-1000110).
    (:func:`urllib.request.getproxies_environment`, without importing urllib.request.)
    """
    out: dict[str, str] = {}
    for name, value in os.environ.items():
        key = name.lower()
        if value and key in ("https_proxy", "http_proxy", "no_proxy"):
            out[key[:-6]] = value
    if "REQUEST_METHOD" in os.environ:
        out.pop("http", None)
    for name, value in os.environ.items():
        if name in ("https_proxy", "http_proxy", "no_proxy"):
            if value:
                out[name[:-6]] = value
            else:
                out.pop(name[:-6], None)
    return out


def bypass_proxy(hostport: str, no_proxy: str) -> bool:
    """Whether ``NO_PROXY``-style ``no_proxy`` exempts ``hostport``.

    Entries are comma-separated: ``*`` (everything), a domain and its subdomains (a leading dot
    is ignored), ``host:port``, an IP address or a CIDR block (``10.0.0.0/8``).
    """
    parts = urlsplit(f"//{hostport}")
    host = (parts.hostname or "").lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    for raw in no_proxy.split(","):
        entry = raw.strip().lower()
        if not entry:
            continue
        if entry == "*":
            return True
        if ip is not None and "/" in entry:
            try:
                if ip in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                pass
            continue
        name, entry_port = entry.lstrip("."), ""
        if name.startswith("["):  # [v6] or [v6]:port
            name, _, rest = name[1:].partition("]")
            entry_port = rest.removeprefix(":")
        elif name.count(":") == 1:  # host:port (a bare v6 address has more colons)
            name, entry_port = name.split(":")
        if entry_port and (not entry_port.isdigit() or int(entry_port) != port):
            continue
        if host == name or host.endswith("." + name):
            return True
    return False


@dataclass(frozen=True)
class Proxy:
    """A proxy URL without its credentials, and the header carrying them.

    :ivar url: ``scheme://host[:port]``, safe to show.
    :ivar headers: ``Proxy-Authorization`` when the URL held ``user:password@``, for the proxy
        alone.
    """

    url: str
    headers: tuple[tuple[str, str], ...]

    @classmethod
    def parse(cls, value: str) -> Proxy:
        """A proxy from a URL (``proxy:3128`` means ``http://proxy:3128``, as curl reads it);
        a :class:`~tank.errors.ConfigError` unless it is ``http://`` or ``https://``."""
        text = value.strip()
        if "://" not in text:
            text = "http://" + text  # curl's reading of "proxy:3128"
        parts = urlsplit(text)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https") or not parts.hostname:
            shown = f"{scheme}://{parts.hostname or ''}"
            raise ConfigError(
                f"unsupported proxy {shown!r}: tank speaks to http:// and https:// proxies"
            )
        netloc = parts.netloc.rpartition("@")[2]
        headers: tuple[tuple[str, str], ...] = ()
        if parts.username is not None:
            pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            token = base64.b64encode(pair.encode()).decode()
            headers = (("Proxy-Authorization", f"Basic {token}"),)
        return cls(f"{scheme}://{netloc}", headers)


def connect_tunnel(proxy: Proxy, target: str, timeout: float | None) -> socket.socket:
    """A socket to ``target`` through an ``http://`` proxy's ``CONNECT`` (OSError on failure)."""
    parts = urlsplit(proxy.url)
    sock = socket.create_connection((parts.hostname or "", parts.port or 80), timeout=timeout)
    try:
        lines = [f"CONNECT {target} HTTP/1.1", f"Host: {target}"]
        lines += [f"{k}: {v}" for k, v in proxy.headers]
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            data = sock.recv(1)  # byte by byte: nothing past the header may be consumed
            if not data or len(head) > 16384:
                raise OSError("the proxy closed the CONNECT tunnel")
            head += data
        status = head.split(b"\r\n", 1)[0].split()
        if len(status) < 2 or not status[1].startswith(b"2"):
            raise OSError(f"the proxy refused CONNECT: {head.splitlines()[0]!r}")
    except BaseException:
        sock.close()
        raise
    return sock


__all__ = ["Proxy", "bypass_proxy", "connect_tunnel", "proxies_from_env"]
