"""Docker Hub's names, defined once in :mod:`tank.reference` and read the same way everywhere."""

from __future__ import annotations

import pytest

from tank.auth.credentials import canonical_registry, server_key
from tank.reference import (
    DOCKER_HUB,
    DOCKER_HUB_ALIASES,
    DOCKER_HUB_API,
    DOCKER_HUB_NAMES,
    api_host,
    parse,
)


def test_the_names() -> None:
    assert sorted(DOCKER_HUB_ALIASES) == ["docker.io", "index.docker.io"]
    assert sorted(DOCKER_HUB_NAMES) == ["docker.io", "index.docker.io", "registry-1.docker.io"]
    assert DOCKER_HUB in DOCKER_HUB_ALIASES
    assert DOCKER_HUB_API not in DOCKER_HUB_ALIASES  # distribution keeps it a registry of its own


@pytest.mark.parametrize("alias", sorted(DOCKER_HUB_ALIASES))
def test_an_alias_in_a_reference_is_docker_hub(alias: str) -> None:
    ref = parse(f"{alias}/alpine")
    assert (ref.domain, ref.registry, ref.repository) == (
        DOCKER_HUB, DOCKER_HUB_API, "library/alpine"
    )
    assert api_host(alias) == DOCKER_HUB_API


@pytest.mark.parametrize(
    "name", ["registry-1.docker.io", "ghcr.io", "localhost:5000", "Docker.io", "docker.io:443"]
)
def test_api_host_leaves_every_other_name_as_it_is(name: str) -> None:
    assert api_host(name) == name


@pytest.mark.parametrize(
    "name", [*sorted(DOCKER_HUB_NAMES), "registry.hub.docker.com", "Index.Docker.IO"]
)
def test_credentials_know_every_spelling_as_one_registry(name: str) -> None:
    assert canonical_registry(name) == DOCKER_HUB
    assert server_key(name) == "https://index.docker.io/v1/"
