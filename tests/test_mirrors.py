"""Mirrors: two real registries, one configured as a mirror of the other, each behind a recording
front; registries.conf rewrites and blocks; Docker Hub's rate-limit answer."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.isolated import IsolatedEnv, isolated_fixture  # noqa: F401 (the fixture)
from tank import registry as api
from tank._pull import pull
from tank.errors import ConfigError, RegistryError
from tank.retry import NO_RETRY
from tank.store import Store
from tank.testing.fronts import Front, MakeFront, Recorded
from tank.testing.registry import LocalRegistry
from tank.testing.seed import Seeded
from tank.testing.tokenserver import TokenServer
from tank.transport import Transport


@pytest.fixture(scope="module")
def mirror_registry(registry: LocalRegistry) -> Iterator[LocalRegistry]:
    """A second registry holding everything the first one does."""
    with LocalRegistry(storage_dir=registry.storage_dir) as reg:
        yield reg


@pytest.fixture(scope="module")
def empty_registry() -> Iterator[LocalRegistry]:
    """A registry holding nothing."""
    with LocalRegistry() as reg:
        yield reg


def blob_gets(front: Front) -> list[Recorded]:
    return [r for r in front.requests if "/blobs/" in r.path and r.method == "GET"]


def mirrors_config(isolated: IsolatedEnv, upstream: str, *mirrors: str) -> None:
    items = ", ".join(f'"{m}"' for m in mirrors)
    isolated.write_config(f'[mirrors]\n"{upstream}" = [{items}]\n')


def closed_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


# -- tank's [mirrors] ------------------------------------------------------------------------------


def test_served_from_the_mirror_when_it_has_the_image(
    isolated: IsolatedEnv, registry: LocalRegistry, mirror_registry: LocalRegistry,
    make_front: MakeFront, seeded: Seeded, tmp_path: Path,
) -> None:
    upstream, mirror = make_front(registry.url), make_front(mirror_registry.url)
    mirrors_config(isolated, upstream.host, mirror.host)
    image = pull(f"{upstream.host}/{seeded.repo}:multi", cache=tmp_path / "lib",
                      platform="linux/arm64")
    assert image.index_digest == seeded.multi.manifest_digest
    assert image.mirror == f"{mirror.host}/{seeded.repo}"
    assert upstream.requests == []
    amd64, arm64 = seeded.multi.images[0], seeded.multi.images[1]
    assert image.digest == arm64.manifest_digest != amd64.manifest_digest
    assert len(blob_gets(mirror)) == len(list(arm64.blobs()))

    done = isolated.tank("pull", f"{upstream.host}/{seeded.repo}:latest", "--json",
                         "--cache", str(tmp_path / "cli"))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["mirror"] == f"{mirror.host}/{seeded.repo}"
    assert upstream.requests == []


def test_upstream_when_the_mirror_lacks_the_image(
    isolated: IsolatedEnv, registry: LocalRegistry, empty_registry: LocalRegistry,
    make_front: MakeFront, seeded: Seeded, tmp_path: Path,
) -> None:
    upstream, mirror = make_front(registry.url), make_front(empty_registry.url)
    mirrors_config(isolated, upstream.host, mirror.host)
    image = pull(f"{upstream.host}/{seeded.repo}:latest", cache=tmp_path)
    assert image.digest == seeded.latest.manifest_digest
    assert image.mirror is None
    assert [(r.method, r.path) for r in mirror.requests] == [
        ("GET", f"/v2/{seeded.repo}/manifests/latest")  # a miss is not retried
    ]
    assert len(blob_gets(upstream)) == len(list(seeded.latest.blobs()))


def test_upstream_when_the_mirrors_are_down(
    isolated: IsolatedEnv, registry: LocalRegistry, make_front: MakeFront, seeded: Seeded,
    tmp_path: Path,
) -> None:
    upstream = make_front(registry.url)
    mirrors_config(isolated, upstream.host, closed_port(), closed_port())
    started = time.monotonic()
    image = pull(f"{upstream.host}/{seeded.repo}:latest", cache=tmp_path)
    assert time.monotonic() - started < 5  # two quick tries per mirror, not a full backoff
    assert image.digest == seeded.latest.manifest_digest
    assert image.mirror is None
    assert blob_gets(upstream)


def test_mirrors_are_tried_in_order(
    isolated: IsolatedEnv, registry: LocalRegistry, mirror_registry: LocalRegistry,
    empty_registry: LocalRegistry, make_front: MakeFront, seeded: Seeded, tmp_path: Path,
) -> None:
    upstream = make_front(registry.url)
    empty, full = make_front(empty_registry.url), make_front(mirror_registry.url)
    mirrors_config(isolated, upstream.host, closed_port(), empty.host, full.host)
    image = pull(f"{upstream.host}/{seeded.repo}:latest", cache=tmp_path)
    assert image.mirror == f"{full.host}/{seeded.repo}"
    assert len(empty.requests) == 1
    assert upstream.requests == []


def test_a_blob_the_mirror_lacks_or_corrupts_comes_from_upstream(
    isolated: IsolatedEnv, registry: LocalRegistry, mirror_registry: LocalRegistry,
    make_front: MakeFront, seeded: Seeded, tmp_path: Path,
) -> None:
    upstream, mirror = make_front(registry.url), make_front(mirror_registry.url)
    missing, corrupt = seeded.latest.layers[0].digest, seeded.latest.layers[-1].digest
    mirror.respond = lambda r: (
        (404, {"Content-Type": "application/json"}, b'{"errors":[{"code":"BLOB_UNKNOWN"}]}')
        if missing in r.path else None
    )
    mirror.corrupt = lambda r: corrupt in r.path
    mirrors_config(isolated, upstream.host, mirror.host)
    image = pull(f"{upstream.host}/{seeded.repo}:latest", cache=tmp_path, jobs=1)
    assert image.mirror == f"{mirror.host}/{seeded.repo}"
    assert sorted(r.path.rsplit("/", 1)[1] for r in blob_gets(upstream)) == sorted(
        [missing, corrupt]
    )
    assert Store(tmp_path).verify() == []  # nothing unverified was kept
    for blob in seeded.latest.blobs():
        assert image.blob_path(blob.digest).read_bytes() == blob.data


def test_pull_from_mirror_digest_only(
    isolated: IsolatedEnv, registry: LocalRegistry, mirror_registry: LocalRegistry,
    make_front: MakeFront, seeded: Seeded, tmp_path: Path,
) -> None:
    upstream, mirror = make_front(registry.url), make_front(mirror_registry.url)
    isolated.write_config(
        f'[mirrors]\n"{upstream.host}" = [{{ location = "{mirror.host}", '
        'pull-from-mirror = "digest-only" }]\n'
    )
    by_tag = pull(f"{upstream.host}/{seeded.repo}:latest", cache=tmp_path / "a")
    assert by_tag.mirror is None
    assert mirror.requests == []
    digest = seeded.latest.manifest_digest
    by_digest = pull(f"{upstream.host}/{seeded.repo}@{digest}", cache=tmp_path / "b")
    assert by_digest.mirror == f"{mirror.host}/{seeded.repo}"


def test_a_mirror_never_gets_the_upstream_credentials(
    isolated: IsolatedEnv, registry: LocalRegistry, token_registry: LocalRegistry,
    token_server: TokenServer, seeded: Seeded, tmp_path: Path,
) -> None:
    with LocalRegistry(token=token_server, storage_dir=token_registry.storage_dir) as mirror:
        mirrors_config(isolated, registry.host, mirror.host)
        image = pull(f"{registry.host}/{seeded.repo}:latest", cache=tmp_path,
                          credentials=("alice", "wonderland"))
    assert image.mirror == f"{mirror.host}/{seeded.repo}"
    assert token_server.requests  # the mirror challenged…
    assert all("authorization" not in r.headers for r in token_server.requests)  # …anonymously


# -- containers' registries.conf -------------------------------------------------------------------


def test_registries_conf_mirror_and_location(
    isolated: IsolatedEnv, registry: LocalRegistry, mirror_registry: LocalRegistry,
    make_front: MakeFront, seeded: Seeded, tmp_path: Path,
) -> None:
    upstream, mirror = make_front(registry.url), make_front(mirror_registry.url)
    namespace, name = seeded.repo.split("/", 1)
    isolated.registries_conf.write_text(
        '[[registry]]\nprefix = "example.test/team"\n'
        f'location = "{upstream.host}/{namespace}"\n'
        f'[[registry.mirror]]\nlocation = "{mirror.host}/{namespace}"\n'
    )
    image = pull(f"example.test/team/{name}:latest", cache=tmp_path / "a")
    assert image.mirror == f"{mirror.host}/{seeded.repo}"
    assert image.digest == seeded.latest.manifest_digest

    mirror.respond = lambda r: (503, {}, b"")  # the mirror fails: the location serves
    image = pull(f"example.test/team/{name}:latest", cache=tmp_path / "b",
                      retry=NO_RETRY)
    assert image.mirror is None
    assert f"/v2/{seeded.repo}/manifests/latest" in [r.path for r in upstream.requests]


def test_registries_conf_blocked(
    isolated: IsolatedEnv, registry: LocalRegistry, seeded: Seeded, tmp_path: Path
) -> None:
    isolated.registries_conf.write_text(
        f'[[registry]]\nlocation = "{registry.host}"\nblocked = true\n'
    )
    with pytest.raises(ConfigError, match=f"{registry.host}/{seeded.repo} is blocked"):
        pull(f"{registry.host}/{seeded.repo}:latest", cache=tmp_path)
    done = isolated.tank("pull", f"{registry.host}/{seeded.repo}:latest", "--cache",
                         str(tmp_path))
    assert done.returncode == 2
    assert "blocked" in done.stderr
    assert str(isolated.registries_conf) in done.stderr


# -- Docker Hub's rate limit -----------------------------------------------------------------------


def test_a_rate_limit_answer_reports_the_headers_and_says_to_log_in(
    isolated: IsolatedEnv, registry: LocalRegistry, make_front: MakeFront, seeded: Seeded,
    tmp_path: Path,
) -> None:
    front = make_front(registry.url)
    body = (b'{"errors":[{"code":"TOOMANYREQUESTS","message":"You have reached your pull rate '
            b'limit."}]}')
    front.respond = lambda r: (429, {
        "Content-Type": "application/json", "RateLimit-Limit": "100;w=21600",
        "RateLimit-Remaining": "0;w=21600", "Docker-RateLimit-Source": "203.0.113.7",
    }, body) if "/manifests/" in r.path else None
    with pytest.raises(RegistryError) as info:
        api.manifest(front.host, seeded.repo, "latest", transport=Transport(),
                     retry=NO_RETRY)
    text = str(info.value)
    assert info.value.status == 429
    assert "rate limit 100 per 21600 s, 0 left, counted against 203.0.113.7" in text
    assert "tank login docker.io" in text
    assert "TOOMANYREQUESTS" in text

    done = isolated.tank("pull", f"{front.host}/{seeded.repo}:latest", "--retries", "0",
                         "--cache", str(tmp_path))
    assert done.returncode == 6
    assert "0 left" in done.stderr
    assert "tank login" in done.stderr


# -- a real pull-through cache: distribution in proxy mode, in front of the token registry -----


def test_a_pull_through_cache_serves_many_clients_and_the_registry_sees_none(
    isolated: IsolatedEnv, token_registry: LocalRegistry, token_server: TokenServer,
    make_front: MakeFront, seeded: Seeded, tmp_path: Path,
) -> None:
    """How a fleet outgrows one machine: tank clients behind one caching mirror (the CNCF
    registry with ``proxy: remoteurl:``, answering the token registry's challenges itself)."""
    import subprocess
    import sys

    with LocalRegistry(proxy_remote=token_registry.url) as cache_registry:
        upstream, mirror = make_front(token_registry.url), make_front(cache_registry.url)
        mirrors_config(isolated, upstream.host, mirror.host)
        ref = f"{upstream.host}/{seeded.repo}:multi"
        clients = [
            subprocess.Popen(
                [sys.executable, "-m", "tank", "pull", ref, "--platform", "linux/arm64",
                 "--cache", str(tmp_path / f"client{i}"), "--json", "-q"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )
            for i in range(3)
        ]
        for client in clients:
            out, err = client.communicate(timeout=120)
            assert client.returncode == 0, err
            doc = json.loads(out)
            assert doc["indexDigest"] == seeded.multi.manifest_digest
            assert doc["mirror"] == f"{mirror.host}/{seeded.repo}"
        assert upstream.requests == []  # tank never reached the registry itself
        assert token_server.requests  # the cache answered the registry's challenges
        arm64 = seeded.multi.image_for("linux", "arm64", "v8")
        for blob in arm64.blobs():  # the cache keeps what it served, for the next client
            assert cache_registry.blob_path(blob.digest).exists()
        image = pull(f"{upstream.host}/{seeded.repo}:multi", cache=tmp_path / "last",
                     platform="linux/arm64")
        assert image.mirror == f"{mirror.host}/{seeded.repo}"
