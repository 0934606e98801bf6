"""Shared fixtures: a real registry (open and token-auth), a token server, fronts and a CDN."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.referees import write_policy
from tank.testing.fronts import CDN, Front, MakeCDN, MakeFront
from tank.testing.http import BlobStorage
from tank.testing.images import Pusher
from tank.testing.registry import REGISTRY_BINARY, LocalRegistry
from tank.testing.seed import Seeded, build_seed, seed_registry
from tank.testing.tls import LocalCA
from tank.testing.tokenserver import TokenServer


def _require_registry() -> None:
    if not os.access(REGISTRY_BINARY, os.X_OK):
        pytest.fail(
            f"{REGISTRY_BINARY} is missing: the tests need the CNCF registry "
            "(Debian: apt-get install docker-registry)",
            pytrace=False,
        )


@pytest.fixture(scope="session")
def seeded() -> Seeded:
    """The images pushed into ``registry`` and ``token_registry``."""
    return build_seed()


@pytest.fixture(scope="session")
def token_server() -> Iterator[TokenServer]:
    """A token server; anonymous users may pull every repository, alice may push, bob may
    only pull."""
    with TokenServer(users={"alice": "wonderland", "bob": "builder"}, read_only={"bob"}) as ts:
        yield ts


@pytest.fixture(scope="session")
def registry(seeded: Seeded) -> Iterator[LocalRegistry]:
    """An open (no auth) registry, seeded."""
    _require_registry()
    with LocalRegistry() as reg, Pusher(reg.url) as pusher:
        seed_registry(pusher, seeded)
        yield reg


@pytest.fixture(scope="session")
def token_registry(token_server: TokenServer, seeded: Seeded) -> Iterator[LocalRegistry]:
    """A token-auth registry trusting ``token_server``, seeded with a minted push token."""
    _require_registry()
    with (
        LocalRegistry(token=token_server) as reg,
        Pusher(reg.url, token=token_server.push_token(seeded.repo)) as pusher,
    ):
        seed_registry(pusher, seeded)
        yield reg


_HOST_SETTINGS = (
    "TANK_CONFIG", "TANK_CACHE", "REGISTRY_AUTH_FILE",
    "HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy",
    "ALL_PROXY", "all_proxy",
    "TANK_CONNECT_TIMEOUT", "TANK_READ_TIMEOUT", "TANK_SPEED_LIMIT", "TANK_SPEED_TIME",
)


@pytest.fixture(scope="session")
def _empty_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("host-settings")


@pytest.fixture(autouse=True)
def _host_settings_never_reach_tank(monkeypatch: pytest.MonkeyPatch, _empty_home: Path) -> None:
    """Nothing of this machine's configuration (proxies, config files, certs.d, credentials)
    changes a result: every place tank reads points at an empty directory. Tests that need a
    setting write it there themselves (see tests/support/isolated.py)."""
    for name in _HOST_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(_empty_home / "config"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(_empty_home / "run"))
    monkeypatch.setenv("DOCKER_CONFIG", str(_empty_home / "docker"))
    monkeypatch.setenv("TANK_CERTS_D", str(_empty_home / "certs.d"))
    monkeypatch.setenv("CONTAINERS_REGISTRIES_CONF", str(_empty_home / "registries.conf"))


@pytest.fixture(autouse=True)
def _reset_token_server_records(request: pytest.FixtureRequest) -> None:
    """Each test starts with an empty token-request log and no pending failures."""
    if "token_server" in request.fixturenames:
        ts: TokenServer = request.getfixturevalue("token_server")
        ts.reset()
        ts.token_field = "token"
        ts.expires_in = 300


@pytest.fixture(scope="session")
def ca(tmp_path_factory: pytest.TempPathFactory) -> LocalCA:
    """A trustme CA; ``ca.issue("127.0.0.1")`` writes a server cert and key, ``ca.ca_file``."""
    return LocalCA(tmp_path_factory.mktemp("ca"))


@pytest.fixture
def make_front() -> Iterator[MakeFront]:
    """Factory for Fronts, all closed at teardown."""
    made: list[Front] = []

    def make(backend_url: str, **kw: Any) -> Front:
        front = Front(backend_url, **kw)
        made.append(front)
        return front

    yield make
    for front in made:
        front.close()


@pytest.fixture
def make_cdn() -> Iterator[MakeCDN]:
    """Factory for CDNs, all closed at teardown."""
    made: list[CDN] = []

    def make(storage: BlobStorage, **kw: Any) -> CDN:
        cdn = CDN(storage, **kw)
        made.append(cdn)
        return cdn

    yield make
    for cdn in made:
        cdn.close()


@pytest.fixture
def policy(tmp_path: Path) -> str:
    """A containers-policy.json for skopeo that accepts anything (local, unsigned images)."""
    return write_policy(tmp_path)


@pytest.fixture
def blob_file(tmp_path: Path) -> Path:
    """A scratch path for large blob files."""
    return tmp_path / "blob.bin"
