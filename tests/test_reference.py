"""Image reference parsing, checked against docker/distribution's normalisation rules."""

from __future__ import annotations

import pytest

from tank.errors import InvalidReference, TankError
from tank.reference import Reference, parse

D = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("text", "domain", "registry", "repository", "tag", "digest", "canonical"),
    [
        ("alpine", "docker.io", "registry-1.docker.io", "library/alpine", "latest", None,
         "docker.io/library/alpine:latest"),
        ("alpine:3.20", "docker.io", "registry-1.docker.io", "library/alpine", "3.20", None,
         "docker.io/library/alpine:3.20"),
        ("docker.io/alpine", "docker.io", "registry-1.docker.io", "library/alpine", "latest",
         None, "docker.io/library/alpine:latest"),
        ("index.docker.io/library/alpine", "docker.io", "registry-1.docker.io",
         "library/alpine", "latest", None, "docker.io/library/alpine:latest"),
        ("bitnami/redis", "docker.io", "registry-1.docker.io", "bitnami/redis", "latest", None,
         "docker.io/bitnami/redis:latest"),
        ("localhost/app", "localhost", "localhost", "app", "latest", None,
         "localhost/app:latest"),
        ("localhost:5000/team/app:v1", "localhost:5000", "localhost:5000", "team/app", "v1",
         None, "localhost:5000/team/app:v1"),
        ("ghcr.io/o/r/deep/name:t", "ghcr.io", "ghcr.io", "o/r/deep/name", "t", None,
         "ghcr.io/o/r/deep/name:t"),
        ("127.0.0.1:5000/x", "127.0.0.1:5000", "127.0.0.1:5000", "x", "latest", None,
         "127.0.0.1:5000/x:latest"),
        ("[::1]:5000/x:y", "[::1]:5000", "[::1]:5000", "x", "y", None, "[::1]:5000/x:y"),
        (f"alpine@{D}", "docker.io", "registry-1.docker.io", "library/alpine", None, D,
         f"docker.io/library/alpine@{D}"),
        (f"alpine:3@{D}", "docker.io", "registry-1.docker.io", "library/alpine", "3", D,
         f"docker.io/library/alpine:3@{D}"),
        ("a_b-c__d/e-f.g_h", "docker.io", "registry-1.docker.io", "a_b-c__d/e-f.g_h",
         "latest", None, "docker.io/a_b-c__d/e-f.g_h:latest"),
        # a first component that is not all lower case is a registry host (distribution's rule)
        ("Registry/app", "Registry", "Registry", "app", "latest", None,
         "Registry/app:latest"),
        # no '/' at all: a port-looking suffix is a tag, as docker reads it
        ("registry.com:5000", "docker.io", "registry-1.docker.io", "library/registry.com",
         "5000", None, "docker.io/library/registry.com:5000"),
    ],
)
def test_parse_normalises_like_docker(
    text: str, domain: str, registry: str, repository: str, tag: str | None,
    digest: str | None, canonical: str,
) -> None:
    ref = parse(text)
    assert ref == Reference(domain, repository, tag, digest)  # type: ignore[arg-type]
    assert ref.registry == registry
    assert str(ref) == canonical
    assert parse(str(ref)) == ref  # the canonical form round-trips


def test_digest_wins_for_fetching() -> None:
    assert parse(f"alpine:3@{D}").fetch_reference == D
    assert parse("alpine:3").fetch_reference == "3"


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "empty"),
        ("Alpine", "lowercase"),
        ("docker.io/Library/alpine", "lowercase"),
        ("a b", "white space"),
        (" alpine", "white space"),
        ("alpine:", "invalid tag"),
        ("alpine:-x", "invalid tag"),
        ("alpine:" + "t" * 129, "invalid tag"),
        ("alpine@sha256:abc", "64"),
        ("alpine@md5:" + "a" * 32, "unsupported algorithm"),
        ("alpine@sha256:" + "A" * 64, "lower-case hex"),
        ("a" * 64, "image ID"),
        ("x.io/" + "a" * 251, "255"),
        ("x.io/a//b", "invalid repository"),
        ("x.io/a/../b", "invalid repository"),
        ("x.io/-a", "invalid repository"),
        ("x.io/a-", "invalid repository"),
        ("x.io:port/a", "invalid registry host"),
        ("-x.io/a", "invalid registry host"),
        ("x.io/", "missing repository"),
    ],
)
def test_invalid_references_say_why(text: str, why: str) -> None:
    with pytest.raises(InvalidReference) as info:
        parse(text)
    assert why in str(info.value)
    assert isinstance(info.value, TankError)
    assert isinstance(info.value, ValueError)


def test_name_length_limit_counts_the_registry() -> None:
    ok = "x.io/" + "a" * 250  # 255 characters in all
    assert parse(ok).repository == "a" * 250
