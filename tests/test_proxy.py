"""Proxies: HTTPS_PROXY (CONNECT tunnels), HTTP_PROXY (forwarding), NO_PROXY, proxy credentials,
through a small forward proxy on 127.0.0.4 that counts what it carries."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from support.isolated import IsolatedEnv, isolated_fixture  # noqa: F401 (the fixture)
from tank._pull import pull
from tank.config import Config, load
from tank.errors import ConfigError, TLSError, TransportError
from tank.retry import NO_RETRY
from tank.testing.fronts import Proxy
from tank.testing.registry import LocalRegistry
from tank.testing.seed import Seeded
from tank.testing.tls import LocalCA
from tank.testing.tokenserver import TokenServer
from tank.transport import Transport, bypass_proxy, proxies_from_env

MakeProxy = Callable[..., Proxy]


@pytest.fixture
def make_proxy() -> Iterator[MakeProxy]:
    """Factory for Proxies, all closed at teardown."""
    made: list[Proxy] = []

    def make(**kw: Any) -> Proxy:
        proxy = Proxy(**kw)
        made.append(proxy)
        return proxy

    yield make
    for proxy in made:
        proxy.close()


@pytest.fixture(scope="module")
def named_tls_registry(ca: LocalCA, registry: LocalRegistry) -> Iterator[LocalRegistry]:
    """A TLS registry whose certificate names ``registry.test``, a name only the proxy knows."""
    cert, key = ca.issue("registry.test")
    with LocalRegistry(tls=(cert, key), storage_dir=registry.storage_dir) as reg:
        yield reg


# -- HTTPS_PROXY: CONNECT ------------------------------------------------------------------------


def test_https_goes_through_the_proxy_in_a_connect_tunnel(
    isolated: IsolatedEnv, ca: LocalCA, named_tls_registry: LocalRegistry,
    make_proxy: MakeProxy, seeded: Seeded, tmp_path: Path,
) -> None:
    proxy = make_proxy(hosts={"registry.test": "127.0.0.1"})
    host = f"registry.test:{named_tls_registry.port}"  # resolvable only by the proxy
    isolated.trust(host, ca.ca_file)
    isolated.setenv("HTTPS_PROXY", proxy.url)
    image = pull(f"{host}/{seeded.repo}:multi", cache=tmp_path / "lib", jobs=2)
    assert image.index_digest == seeded.multi.manifest_digest
    assert proxy.tunnels
    assert all(r.path == host for r in proxy.tunnels)
    assert len(proxy.tunnels) <= 3  # one per pooled connection, not one per request
    assert proxy.tunnelled_bytes > sum(b.size for b in seeded.multi.images[0].blobs())
    assert proxy.forwarded == []

    proxy.reset()
    done = isolated.tank("pull", f"{host}/{seeded.repo}:latest", "--json",
                         "--cache", str(tmp_path / "cli"))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["digest"] == seeded.latest.manifest_digest
    assert proxy.tunnels


def test_no_proxy_bypasses_https_too(
    isolated: IsolatedEnv, ca: LocalCA, named_tls_registry: LocalRegistry,
    make_proxy: MakeProxy, seeded: Seeded, tmp_path: Path,
) -> None:
    proxy = make_proxy(hosts={"registry.test": "127.0.0.1"})
    host = f"registry.test:{named_tls_registry.port}"
    isolated.trust(host, ca.ca_file)
    isolated.setenv("HTTPS_PROXY", proxy.url)
    isolated.setenv("NO_PROXY", ".test")
    with pytest.raises(TransportError, match="cannot connect"):  # direct: nobody knows the name
        pull(f"{host}/{seeded.repo}:latest", cache=tmp_path, retry=NO_RETRY)
    assert proxy.requests == []


# -- HTTP_PROXY: forwarding, and NO_PROXY ---------------------------------------------------------


def _plain(
    isolated: IsolatedEnv, registry: LocalRegistry, proxy: Proxy, name: str = "plain.test"
) -> tuple[str, Config]:
    """``name:port`` for ``registry``, a name only ``proxy`` resolves, allowed plain HTTP; both
    proxy variables point at ``proxy`` (the TLS probe goes through the tunnel)."""
    proxy.hosts[name] = registry.bind_host
    isolated.setenv("HTTPS_PROXY", proxy.url)
    isolated.setenv("HTTP_PROXY", proxy.url)
    host = f"{name}:{registry.port}"
    return host, load().with_options(insecure_registries=[host])


def test_plain_http_is_forwarded_by_http_proxy(
    isolated: IsolatedEnv, registry: LocalRegistry, make_proxy: MakeProxy, seeded: Seeded,
    tmp_path: Path,
) -> None:
    proxy = make_proxy()
    host, settings = _plain(isolated, registry, proxy)
    image = pull(f"{host}/{seeded.repo}:latest", cache=tmp_path, jobs=1, config=settings)
    assert image.digest == seeded.latest.manifest_digest
    paths = [r.path for r in proxy.forwarded]
    assert all(p.startswith(f"http://{host}/v2/{seeded.repo}/") for p in paths)
    assert len(paths) == 1 + len(list(seeded.latest.blobs()))  # the manifest, then each blob
    assert [r.path for r in proxy.tunnels] == [host]  # only the TLS probe


def test_loopback_is_never_proxied(
    isolated: IsolatedEnv, registry: LocalRegistry, make_proxy: MakeProxy, seeded: Seeded,
    tmp_path: Path,
) -> None:
    """As Go's HTTP client decides: what is meant for this machine never goes to a proxy."""
    proxy = make_proxy()
    isolated.setenv("HTTP_PROXY", proxy.url)
    isolated.setenv("HTTPS_PROXY", proxy.url)
    for host in (registry.host, f"localhost:{registry.port}"):
        image = pull(f"{host}/{seeded.repo}:latest", cache=tmp_path / host)
        assert image.digest == seeded.latest.manifest_digest
    assert proxy.requests == []


@pytest.mark.parametrize(
    "no_proxy", ["{ip}", "{host}", "127.0.0.0/8", "*", "other.test, {ip}", ".0.0.1"]
)
def test_no_proxy_bypasses_the_proxy(
    no_proxy: str, isolated: IsolatedEnv, registry: LocalRegistry, make_proxy: MakeProxy,
    seeded: Seeded, tmp_path: Path,
) -> None:
    proxy = make_proxy()
    isolated.setenv("HTTP_PROXY", proxy.url)
    isolated.setenv("NO_PROXY", no_proxy.format(ip=registry.bind_host, host=registry.host))
    image = pull(f"{registry.host}/{seeded.repo}:latest", cache=tmp_path)
    assert image.digest == seeded.latest.manifest_digest
    assert proxy.requests == []


def test_no_proxy_for_another_host_or_port_still_proxies(
    isolated: IsolatedEnv, registry: LocalRegistry, make_proxy: MakeProxy, seeded: Seeded,
    tmp_path: Path,
) -> None:
    proxy = make_proxy()
    host, settings = _plain(isolated, registry, proxy)
    isolated.setenv("no_proxy", "other.test,plain.test:1,10.0.0.0/8")
    pull(f"{host}/{seeded.repo}:latest", cache=tmp_path, config=settings)
    assert proxy.forwarded


@pytest.fixture(scope="module")
def named_token_registry(
    ca: LocalCA, token_registry: LocalRegistry
) -> Iterator[tuple[LocalRegistry, TokenServer]]:
    """A TLS token registry named ``tokens.test`` (the seeded storage) whose realm is
    ``http://auth.test:…``: names only a proxy resolves, so both are reached through it."""
    cert, key = ca.issue("tokens.test")
    with (
        TokenServer(realm_host="auth.test") as ts,
        LocalRegistry(token=ts, tls=(cert, key), storage_dir=token_registry.storage_dir) as reg,
    ):
        yield reg, ts


def test_the_token_endpoint_goes_through_the_proxy_too(
    isolated: IsolatedEnv, ca: LocalCA, named_token_registry: tuple[LocalRegistry, TokenServer],
    make_proxy: MakeProxy, seeded: Seeded, tmp_path: Path,
) -> None:
    registry, token_server = named_token_registry
    proxy = make_proxy(hosts={"auth.test": "127.0.0.1", "tokens.test": "127.0.0.1"})
    isolated.setenv("HTTPS_PROXY", proxy.url)
    isolated.setenv("HTTP_PROXY", proxy.url)
    host = f"tokens.test:{registry.port}"
    isolated.trust(host, ca.ca_file)
    pull(f"{host}/{seeded.repo}:latest", cache=tmp_path)
    assert [r.path for r in proxy.forwarded if r.path.startswith(token_server.realm)]
    assert proxy.tunnels
    assert all(r.path == host for r in proxy.tunnels)
    assert len(token_server.requests) == 1


# -- proxy credentials ---------------------------------------------------------------------------


def test_proxy_credentials_from_the_url(
    isolated: IsolatedEnv, registry: LocalRegistry, make_proxy: MakeProxy, seeded: Seeded,
    tmp_path: Path,
) -> None:
    proxy = make_proxy(auth=("proxyuser", "s3cret pw"))
    host, settings = _plain(isolated, registry, proxy)
    isolated.setenv("HTTP_PROXY", f"http://proxyuser:s3cret%20pw@{proxy.host}")
    isolated.setenv("HTTPS_PROXY", f"http://proxyuser:s3cret%20pw@{proxy.host}")
    pull(f"{host}/{seeded.repo}:latest", cache=tmp_path / "ok", config=settings)
    assert proxy.forwarded
    assert all("proxy-authorization" in r.headers for r in proxy.forwarded)

    isolated.setenv("HTTP_PROXY", f"http://proxyuser:wrongpass@{proxy.host}")
    with pytest.raises(TransportError, match="407") as info:
        pull(f"{host}/{seeded.repo}:latest", cache=tmp_path / "bad", config=settings)
    assert info.value.permanent
    assert "wrongpass" not in str(info.value)


def test_wrong_proxy_credentials_for_a_tunnel(
    isolated: IsolatedEnv, ca: LocalCA, named_tls_registry: LocalRegistry,
    make_proxy: MakeProxy, seeded: Seeded, tmp_path: Path,
) -> None:
    proxy = make_proxy(hosts={"registry.test": "127.0.0.1"}, auth=("u", "right"))
    host = f"registry.test:{named_tls_registry.port}"
    isolated.trust(host, ca.ca_file)
    isolated.setenv("HTTPS_PROXY", f"http://u:topsecret@{proxy.host}")
    with pytest.raises(TransportError, match="407") as info:
        pull(f"{host}/{seeded.repo}:latest", cache=tmp_path)
    assert info.value.permanent
    assert "topsecret" not in str(info.value)
    assert len(proxy.tunnels) == 1  # refused for good: not retried

    isolated.setenv("HTTPS_PROXY", f"http://u:right@{proxy.host}")
    assert pull(f"{host}/{seeded.repo}:latest", cache=tmp_path).digest


# -- insecure registries behind a proxy ------------------------------------------------------------


def test_an_insecure_plain_http_registry_through_the_proxies(
    isolated: IsolatedEnv, registry: LocalRegistry, make_proxy: MakeProxy, seeded: Seeded,
    tmp_path: Path,
) -> None:
    proxy = make_proxy(hosts={"plain.test": "127.0.0.1"})
    isolated.setenv("HTTPS_PROXY", proxy.url)
    isolated.setenv("HTTP_PROXY", proxy.url)
    host = f"plain.test:{registry.port}"
    with pytest.raises(TLSError, match=f"--insecure-registry {host}"):  # never a downgrade
        pull(f"{host}/{seeded.repo}:latest", cache=tmp_path / "a", retry=NO_RETRY)
    proxy.reset()
    settings = load().with_options(insecure_registries=[host])
    image = pull(f"{host}/{seeded.repo}:latest", cache=tmp_path / "b", config=settings)
    assert image.digest == seeded.latest.manifest_digest
    assert [r.path for r in proxy.tunnels] == [host]  # the TLS probe, through the tunnel
    assert proxy.forwarded
    assert all(r.path.startswith(f"http://{host}/") for r in proxy.forwarded)


# -- the rules -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hostport", "no_proxy", "bypass"),
    [
        ("registry.example.com", "example.com", True),
        ("registry.example.com", ".example.com", True),
        ("example.com:5000", "example.com", True),
        ("badexample.com", "example.com", False),
        ("example.com:5000", "example.com:5000", True),
        ("example.com:5001", "example.com:5000", False),
        ("10.1.2.3:5000", "10.0.0.0/8", True),
        ("11.1.2.3", "10.0.0.0/8", False),
        ("[::1]:5000", "::1", True),
        ("[::1]:5000", "[::1]:5000", True),
        ("[fd00::1]", "fd00::/8", True),
        ("anything", "*", True),
        ("Registry.Example.COM", "example.com", True),
        ("registry.example.com", " , other.org ,", False),
    ],
)
def test_no_proxy_rules(hostport: str, no_proxy: str, bypass: bool) -> None:
    assert bypass_proxy(hostport, no_proxy) is bypass


def test_proxy_settings(isolated: IsolatedEnv) -> None:
    isolated.setenv("HTTPS_PROXY", "http://upper:3128")
    isolated.setenv("https_proxy", "proxy.lan:3128")  # lower case wins; no scheme means http
    isolated.setenv("HTTP_PROXY", "http://user:pw@plain.lan:8080")
    t = Transport()
    assert t.proxy_for("https://ghcr.io/v2/") == "http://proxy.lan:3128"
    assert t.proxy_for("http://registry.lan/v2/") == "http://plain.lan:8080"  # no credentials
    assert Transport(proxies={}).proxy_for("https://ghcr.io/v2/") is None
    assert Transport(proxies={"https": "http://p:1", "no": "ghcr.io"}).proxy_for(
        "https://ghcr.io/v2/") is None
    with pytest.raises(ConfigError, match="unsupported proxy 'socks5://"):
        Transport(proxies={"https": "socks5://user:pw@p:1080"})
    isolated.setenv("https_proxy", "")  # an empty lower-case spelling unsets
    isolated.setenv("REQUEST_METHOD", "GET")  # CGI: HTTP_PROXY may come from a request header
    assert proxies_from_env() == {}
