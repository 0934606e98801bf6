"""Platform normalisation and selection from an index (pure functions)."""

from __future__ import annotations

from typing import Any

import pytest

from tank.errors import InvalidReference, PlatformNotFound
from tank.platform import Platform, host_platform, is_attestation, offered, select


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("linux/amd64", "linux/amd64"),
        ("linux/x86_64", "linux/amd64"),
        ("Linux/AMD64", "linux/amd64"),
        ("linux/amd64/v1", "linux/amd64"),
        ("linux/amd64/v3", "linux/amd64/v3"),
        ("linux/arm64", "linux/arm64/v8"),
        ("linux/aarch64", "linux/arm64/v8"),
        ("linux/arm64/8", "linux/arm64/v8"),
        ("linux/arm", "linux/arm/v7"),
        ("linux/armhf", "linux/arm/v7"),
        ("linux/armel", "linux/arm/v6"),
        ("linux/arm/v6", "linux/arm/v6"),
        ("linux/i686", "linux/386"),
        ("windows/amd64", "windows/amd64"),
    ],
)
def test_normalisation(text: str, canonical: str) -> None:
    assert str(Platform.parse(text)) == canonical


@pytest.mark.parametrize("bad", ["linux", "linux/", "/amd64", "a/b/c/d", ""])
def test_malformed_platforms(bad: str) -> None:
    with pytest.raises(InvalidReference, match="os/arch"):
        Platform.parse(bad)


def test_host_platform_is_linux() -> None:
    assert host_platform().os == "linux"


def entry(os: str, arch: str, variant: str | None = None, **extra: Any) -> dict[str, Any]:
    plat = {"os": os, "architecture": arch}
    if variant:
        plat["variant"] = variant
    return {"mediaType": "m", "digest": f"sha256:{os}-{arch}-{variant}", "size": 1,
            "platform": plat, **extra}


ATTESTATION = {
    "mediaType": "m", "digest": "sha256:att", "size": 1,
    "platform": {"os": "unknown", "architecture": "unknown"},
    "annotations": {"vnd.docker.reference.type": "attestation-manifest",
                    "vnd.docker.reference.digest": "sha256:x"},
}
INDEX = {
    "manifests": [
        ATTESTATION,
        entry("linux", "amd64"),
        entry("linux", "arm64", "v8"),
        entry("linux", "arm", "v6"),
        entry("linux", "ppc64le"),
    ]
}


@pytest.mark.parametrize(
    ("want", "chosen"),
    [
        ("linux/amd64", "sha256:linux-amd64-None"),
        ("linux/arm64", "sha256:linux-arm64-v8"),
        ("linux/arm64/v8", "sha256:linux-arm64-v8"),
        ("linux/arm/v6", "sha256:linux-arm-v6"),
        ("linux/arm/v7", "sha256:linux-arm-v6"),  # v7 runs v6: containerd's fallback
        ("linux/ppc64le", "sha256:linux-ppc64le-None"),
    ],
)
def test_select(want: str, chosen: str) -> None:
    assert select(INDEX, Platform.parse(want))["digest"] == chosen


def test_arm64_entry_without_variant_matches() -> None:
    index = {"manifests": [entry("linux", "arm64")]}
    assert select(index, Platform.parse("linux/arm64/v8"))["digest"] == "sha256:linux-arm64-None"


def test_amd64_without_variant_accepts_a_variant_entry() -> None:
    index = {"manifests": [entry("linux", "amd64", "v3")]}
    assert select(index, Platform.parse("linux/amd64"))["digest"] == "sha256:linux-amd64-v3"


def test_attestations_are_never_chosen_nor_offered() -> None:
    assert is_attestation(ATTESTATION)
    assert is_attestation({"platform": {"os": "unknown", "architecture": "unknown"}})
    assert not is_attestation(entry("linux", "amd64"))
    assert "unknown/unknown" not in [str(p) for p in offered(INDEX)]
    with pytest.raises(PlatformNotFound):
        select({"manifests": [ATTESTATION]}, Platform("unknown", "unknown"))


def test_no_match_lists_what_the_index_offers() -> None:
    with pytest.raises(PlatformNotFound) as info:
        select(INDEX, Platform.parse("linux/s390x"), registry="r.io", repository="a",
               reference="t")
    err = info.value
    assert err.available == ("linux/amd64", "linux/arm64/v8", "linux/arm/v6", "linux/ppc64le")
    assert "no image for linux/s390x" in str(err)
    assert "linux/arm64/v8" in str(err)
    assert "r.io/a:t" in str(err)


def test_arm_v6_request_does_not_take_v7() -> None:
    index = {"manifests": [entry("linux", "arm", "v7")]}
    with pytest.raises(PlatformNotFound):
        select(index, Platform.parse("linux/arm/v6"))
