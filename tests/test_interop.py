"""`tank pull -o oci:` output read by the referees: oci-image-tool, skopeo and umoci."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from support.referees import ok
from tank._pull import pull
from tank.testing.images import Image
from tank.testing.registry import LocalRegistry
from tank.testing.seed import Seeded


def files_of(image: Image) -> dict[str, bytes]:
    import gzip
    import io
    import tarfile

    out: dict[str, bytes] = {}
    for layer in image.layers:
        with tarfile.open(fileobj=io.BytesIO(gzip.decompress(layer.data))) as tar:
            for member in tar.getmembers():
                f = tar.extractfile(member)
                if f is not None:
                    out[member.name] = f.read()
    return out


@pytest.mark.parametrize(
    ("tag", "platform", "child"),
    [("latest", None, None), ("docker", None, None), ("multi", "linux/arm64", ("arm64", "v8")),
     ("list", "linux/arm/v7", ("arm", "v7"))],
)
def test_layout_passes_every_referee(
    tag: str, platform: str | None, child: tuple[str, str] | None, registry: LocalRegistry,
    seeded: Seeded, tmp_path: Path, policy: str,
) -> None:
    layout = tmp_path / "layout"
    image = pull(f"{registry.host}/{seeded.repo}:{tag}", platform=platform,
                 output=f"oci:{layout}:v1", cache=tmp_path / "cache")
    expected = (
        getattr(seeded, tag).image_for("linux", *child) if child else getattr(seeded, tag)
    )

    index = json.loads((layout / "index.json").read_text())
    (entry,) = index["manifests"]
    assert entry["annotations"]["org.opencontainers.image.ref.name"] == "v1"
    assert entry["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert entry["digest"] == image.output_digest
    if tag in ("docker", "list"):  # rewritten with OCI media types; config and layers untouched
        assert image.output_digest != image.digest
    else:
        assert image.output_digest == image.digest

    ok("oci-image-tool", "validate", "--type", "image", "--ref", "name=v1", str(layout))

    out = tmp_path / "dir"
    ok("skopeo", "--policy", policy, "copy", f"oci:{layout}:v1", f"dir:{out}")
    for blob in expected.blobs():
        assert (out / blob.digest.split(":")[1]).read_bytes() == blob.data

    bundle = tmp_path / "bundle"
    ok("umoci", "unpack", "--rootless", "--image", f"{layout}:v1", str(bundle))
    for name, data in files_of(expected).items():
        assert (bundle / "rootfs" / name).read_bytes() == data


def test_cli_writes_a_layout_named_by_the_reference_tag(
    registry: LocalRegistry, seeded: Seeded, tmp_path: Path
) -> None:
    layout = tmp_path / "l"
    out = subprocess.run(
        [sys.executable, "-m", "tank", "pull", f"{registry.host}/{seeded.repo}:latest",
         "-o", f"oci:{layout}", "--cache", str(tmp_path / "c"), "-q"],
        capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert f"-> oci:{layout}:latest" in out.stdout
    index = json.loads((layout / "index.json").read_text())
    assert [m["annotations"]["org.opencontainers.image.ref.name"] for m in index["manifests"]] == [
        "latest"
    ]
    # a digest reference is named "latest"; a second image is added beside the first
    digest_ref = f"{registry.host}/{seeded.repo}@{seeded.docker.manifest_digest}"
    pull(digest_ref, output=f"oci:{layout}:docker", cache=tmp_path / "c")
    pull(digest_ref, output=f"oci:{tmp_path / 'd'}", cache=tmp_path / "c")
    names = {
        m["annotations"]["org.opencontainers.image.ref.name"]
        for m in json.loads((layout / "index.json").read_text())["manifests"]
    }
    assert names == {"latest", "docker"}
    index_d = json.loads((tmp_path / "d" / "index.json").read_text())
    assert index_d["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"] == "latest"


@pytest.mark.parametrize("tag", ["latest", "docker"])
def test_docker_archive_output_is_read_by_skopeo(
    tag: str, registry: LocalRegistry, seeded: Seeded, tmp_path: Path
) -> None:
    import hashlib
    import tarfile

    archive = tmp_path / "image.tar"
    out = subprocess.run(
        [sys.executable, "-m", "tank", "pull", f"{registry.host}/{seeded.repo}:{tag}",
         "-o", f"docker-archive:{archive}", "--cache", str(tmp_path / "c"), "-q", "--json"],
        capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    repo_tag = f"{registry.host}/{seeded.repo}:{tag}"
    assert doc["output"] == f"docker-archive:{archive}:{repo_tag}"
    inspected = json.loads(ok("skopeo", "inspect", f"docker-archive:{archive}:{repo_tag}").stdout)
    expected: Image = getattr(seeded, tag)
    config = json.loads(expected.config.data)
    assert inspected["Layers"] == config["rootfs"]["diff_ids"]
    with tarfile.open(archive) as tar:
        manifest = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
        assert manifest[0]["RepoTags"] == [repo_tag]
        for path, diff_id in zip(manifest[0]["Layers"], config["rootfs"]["diff_ids"],
                                 strict=True):
            data = tar.extractfile(path).read()  # type: ignore[union-attr]
            assert "sha256:" + hashlib.sha256(data).hexdigest() == diff_id


@pytest.mark.parametrize("cached", [True, False])
def test_cli_pull_into_a_root_filesystem(
    cached: bool, registry: LocalRegistry, seeded: Seeded, tmp_path: Path
) -> None:
    root = tmp_path / "root"
    args = [sys.executable, "-m", "tank", "pull", f"{registry.host}/{seeded.repo}:multi",
            "--platform", "linux/arm64", "-o", f"rootfs:{root}", "--cache", str(tmp_path / "c"),
            "-q", "--json"]
    if not cached:
        args.append("--no-rootfs-cache")
    out = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["output"] == f"rootfs:{root}"
    child = seeded.multi.image_for("linux", "arm64", "v8")
    for name, data in files_of(child).items():
        assert (root / name).read_bytes() == data
    assert (tmp_path / "c" / "rootfs").exists() is cached
    again = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert again.returncode == 2  # DEST exists and is not empty
    assert "not empty" in again.stderr
