"""registries.conf and tank's mirrors hold for every command and library entry point, whatever the
spelling of the name (security review, finding 4); ``insecure`` is decided per matched entry
(finding 5)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import tank
from support.isolated import IsolatedEnv, isolated_fixture  # noqa: F401 (the fixture)
from tank import registry as api
from tank.config import canonical_name, load
from tank.errors import ConfigError, TLSError
from tank.reference import parse as parse_reference
from tank.retry import NO_RETRY
from tank.testing.fronts import MakeFront
from tank.testing.registry import LocalRegistry
from tank.testing.seed import Seeded
from tank.testing.tls import LocalCA

BLOCKED = """
[[registry]]
prefix = "docker.io/library/alpine"
blocked = true

[[registry]]
prefix = "quay.io"
blocked = true
"""

SPELLINGS = [
    "alpine",
    "docker.io/alpine",
    "docker.io/library/alpine:3",
    "index.docker.io/library/alpine",
    "registry-1.docker.io/library/alpine",
    "registry-1.docker.io/alpine",
    "registry-1.docker.io:443/library/alpine",
    "docker.io:443/library/alpine",
    "REGISTRY-1.DOCKER.IO/library/alpine",
    "quay.io/a/b",
    "quay.io:443/a/b",
    "Quay.IO:443/a/b@sha256:" + "a" * 64,
]


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("registry-1.docker.io:443/alpine", "docker.io/library/alpine"),
        ("index.docker.io/library/alpine", "docker.io/library/alpine"),
        ("quay.io:443/a/b", "quay.io/a/b"),
        ("Registry.Example:5000/x", "registry.example:5000/x"),
    ],
)
def test_names_and_prefixes_are_normalised_the_same_way(text: str, canonical: str) -> None:
    assert canonical_name(text, image=True) == canonical


@pytest.mark.parametrize("name", SPELLINGS)
def test_no_spelling_escapes_a_blocked_rule_in_any_entry_point(
    name: str, isolated: IsolatedEnv
) -> None:
    isolated.registries_conf.write_text(BLOCKED)
    ref = parse_reference(name)
    repo = f"{ref.domain}/{ref.repository}"
    calls: list[Callable[[], Any]] = [
        lambda: tank.pull(name, cache=isolated.config_home / "cache"),
        lambda: tank.inspect(name),
        lambda: tank.resolve_digest(name),
        lambda: tank.list_tags(repo),
        lambda: tank.Client(ref.domain).repository(ref.repository),
        lambda: api.manifest(ref.domain, ref.repository, "latest"),
        lambda: api.blob(ref.domain, ref.repository, "sha256:" + "b" * 64),
    ]
    for call in calls:
        started = time.monotonic()
        with pytest.raises(ConfigError, match=r"is blocked by .*registries\.conf"):
            call()
        assert time.monotonic() - started < 2  # refused before any network access


@pytest.mark.parametrize(
    "argv",
    [
        ["pull", "registry-1.docker.io:443/library/alpine"],
        ["inspect", "index.docker.io/library/alpine"],
        ["inspect", "--raw", "quay.io:443/a/b"],
        ["digest", "docker.io/alpine"],
        ["tags", "quay.io:443/a/b"],
        ["blob", "registry-1.docker.io/alpine", "sha256:" + "c" * 64],
        ["verify", "Quay.IO/a/b:1"],
        ["referrers", "docker.io/library/alpine"],
        ["ls", "index.docker.io/alpine"],
        ["cat", "quay.io:443/a/b", "/etc/os-release"],
        ["export", "docker.io/alpine", "-o", "/dev/null"],
        ["diff", "docker.io/alpine", "quay.io/a/b"],
        ["copy", "docker.io/alpine", "oci:/tmp/never-written"],
        ["copy", "oci:/nonexistent-layout", "quay.io:443/a/b:1"],
        ["tag", "quay.io/a/b:1", "two"],
        ["delete", "quay.io/a/b:1"],
        ["artifact", "pull", "quay.io/a/b:1"],
    ],
)
def test_every_command_refuses_a_blocked_image_with_exit_2(
    argv: list[str], isolated: IsolatedEnv
) -> None:
    isolated.registries_conf.write_text(BLOCKED)
    done = isolated.tank(*argv, timeout=30)
    assert done.returncode == 2, done.stderr
    assert "blocked" in done.stderr
    assert str(isolated.registries_conf) in done.stderr


# -- mirrors and location rewrites serve every read command ------------------------------------


@pytest.fixture(scope="module")
def mirror_registry(registry: LocalRegistry) -> Iterator[LocalRegistry]:
    """A second registry holding everything the first one does."""
    with LocalRegistry(storage_dir=registry.storage_dir) as reg:
        yield reg


def test_inspect_digest_tags_and_blob_read_from_the_mirror(
    isolated: IsolatedEnv, registry: LocalRegistry, mirror_registry: LocalRegistry,
    make_front: MakeFront, seeded: Seeded, tmp_path: Path,
) -> None:
    upstream, mirror = make_front(registry.url), make_front(mirror_registry.url)
    isolated.write_config(f'[mirrors]\n"{upstream.host}" = ["{mirror.host}"]\n')
    ref = f"{upstream.host}/{seeded.repo}"
    assert tank.inspect(f"{ref}:latest").digest == seeded.latest.manifest_digest
    assert tank.resolve_digest(f"{ref}:multi") == seeded.multi.manifest_digest
    assert "latest" in tank.list_tags(ref)
    layer = seeded.latest.layers[0]
    done = isolated.tank("blob", f"{ref}:latest", layer.digest, "-o", str(tmp_path / "l"))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "l").read_bytes() == layer.data
    done = isolated.tank("inspect", "--raw", f"{ref}:latest")
    assert done.returncode == 0, done.stderr
    assert upstream.requests == []  # every read went to the mirror
    assert mirror.requests


def test_a_location_rewrite_applies_to_inspect_and_tags(
    isolated: IsolatedEnv, registry: LocalRegistry, make_front: MakeFront, seeded: Seeded,
) -> None:
    real = make_front(registry.url)
    isolated.registries_conf.write_text(
        f'[[registry]]\nprefix = "moved.example/old"\nlocation = "{real.host}/library"\n'
    )
    info = tank.inspect("moved.example/old/sample:latest")
    assert info.digest == seeded.latest.manifest_digest
    assert "latest" in tank.list_tags("moved.example/old/sample")
    assert {r.path.split("/")[2] for r in real.requests} == {"library"}


# -- 5. insecure on a namespace makes only that namespace insecure ----------------------------


@pytest.fixture(scope="module")
def untrusted_tls_registry(ca: LocalCA, registry: LocalRegistry) -> Iterator[LocalRegistry]:
    """A TLS registry whose certificate nobody here trusts (its CA is not in certs.d)."""
    cert, key = ca.issue("127.0.0.1")
    with LocalRegistry(tls=(cert, key), storage_dir=registry.storage_dir) as reg:
        yield reg


def test_insecure_on_a_namespace_does_not_make_the_whole_host_insecure(
    isolated: IsolatedEnv, untrusted_tls_registry: LocalRegistry, seeded: Seeded
) -> None:
    host = untrusted_tls_registry.host
    isolated.registries_conf.write_text(
        f'[[registry]]\nprefix = "{host}/library"\ninsecure = true\n'
    )
    assert host not in load().insecure()
    info = tank.inspect(f"{host}/{seeded.repo}:latest", retry=NO_RETRY)
    assert info.digest == seeded.latest.manifest_digest  # the entry's namespace: unverified TLS
    with pytest.raises(TLSError):  # another namespace on the same host: verified, and refused
        tank.inspect(f"{host}/other/app:latest", retry=NO_RETRY)
    done = isolated.tank("inspect", "--json", f"{host}/other/app:latest", "--retries", "0")
    assert done.returncode == 6, done.stderr
    done = isolated.tank("inspect", "--json", f"{host}/{seeded.repo}:latest")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["digest"] == seeded.latest.manifest_digest


def test_a_host_wide_insecure_entry_still_covers_the_host(
    isolated: IsolatedEnv, untrusted_tls_registry: LocalRegistry, seeded: Seeded
) -> None:
    host = untrusted_tls_registry.host
    isolated.registries_conf.write_text(f'[[registry]]\nprefix = "{host}"\ninsecure = true\n')
    assert host in load().insecure()
    assert tank.inspect(f"{host}/{seeded.repo}:latest").digest == seeded.latest.manifest_digest
