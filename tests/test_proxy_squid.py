"""Proxies, with a real forward proxy from Debian: squid carries tank's CONNECT tunnels (HTTPS)
and forwarded plain-HTTP requests to registries it knows by names tank cannot resolve."""

from __future__ import annotations

import gc
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import tank
from support.isolated import IsolatedEnv, isolated_fixture  # noqa: F401 (the fixture)
from support.squid import Squid, squid
from tank.config import load
from tank.testing.registry import LocalRegistry
from tank.testing.seed import Seeded
from tank.testing.tls import LocalCA


@pytest.fixture(scope="module")
def named_tls_registry(ca: LocalCA, registry: LocalRegistry) -> Iterator[LocalRegistry]:
    """The seeded storage over TLS, with a certificate for ``secure.test``."""
    cert, key = ca.issue("secure.test")
    with LocalRegistry(tls=(cert, key), storage_dir=registry.storage_dir) as reg:
        yield reg


@pytest.fixture(scope="module")
def proxy() -> Iterator[Squid]:
    with squid({"secure.test": "127.0.0.1", "plain.test": "127.0.0.1"}) as s:
        yield s


def test_https_through_squid_in_a_connect_tunnel(
    isolated: IsolatedEnv, ca: LocalCA, named_tls_registry: LocalRegistry, proxy: Squid,
    seeded: Seeded, tmp_path: Path,
) -> None:
    host = f"secure.test:{named_tls_registry.port}"
    isolated.trust(host, ca.ca_file)
    isolated.setenv("HTTPS_PROXY", proxy.url)
    transport = load().transport()
    image = tank.pull(f"{host}/{seeded.repo}:multi", cache=tmp_path / "lib", transport=transport)
    assert image.index_digest == seeded.multi.manifest_digest
    transport.clear()  # squid logs a tunnel when it closes (and some close only when collected)
    gc.collect()
    deadline = time.monotonic() + 10
    while f"CONNECT {host}" not in proxy.requests() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert f"CONNECT {host}" in proxy.requests(), proxy.log.read_text()
    done = isolated.tank("inspect", "--json", f"{host}/{seeded.repo}:latest")
    assert done.returncode == 0, done.stderr


def test_plain_http_through_squid_is_forwarded(
    isolated: IsolatedEnv, registry: LocalRegistry, proxy: Squid, seeded: Seeded,
    tmp_path: Path,
) -> None:
    host = f"plain.test:{registry.port}"
    isolated.setenv("HTTP_PROXY", proxy.url)
    isolated.setenv("HTTPS_PROXY", proxy.url)  # the TLS probe goes through the tunnel
    settings = load().with_options(insecure_registries=[host])
    image = tank.pull(f"{host}/{seeded.repo}:latest", cache=tmp_path, config=settings)
    assert image.digest == seeded.latest.manifest_digest
    carried = proxy.requests()
    assert f"GET http://{host}/v2/{seeded.repo}/manifests/latest" in carried
    assert any(r.startswith(f"GET http://{host}/v2/{seeded.repo}/blobs/") for r in carried)
