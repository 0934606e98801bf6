"""tank.outputs.archive: docker-archive tars, checked by hand and by skopeo and umoci."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import json
import os
import tarfile
from pathlib import Path
from typing import Any

import pytest
import zstandard

from support.referees import ok, run, tool
from tank.errors import DigestMismatch, InvalidReference, TankError
from tank.layers.compression import CorruptLayer, UnsupportedLayer
from tank.outputs.archive import (
    ArchiveError,
    ArchiveTarget,
    familiar_name,
    repo_tag,
    write_docker_archive,
)
from tank.reference import parse
from tank.testing.images import Blob, Image, make_image, make_layer, sample_image

OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
SAMPLE_TAG = "127.0.0.1:5000/library/sample:latest"

# -- helpers -----------------------------------------------------------------------------------


def cache_blobs(cache: Path, image: Image) -> dict[str, Path]:
    """Each blob of ``image`` as a read-only file named by its digest; digest -> path."""
    cache.mkdir(exist_ok=True)
    paths = {}
    for blob in image.blobs():
        path = cache / blob.digest.replace(":", "-")
        if not path.exists():
            path.write_bytes(blob.data)
            path.chmod(0o444)
        paths[blob.digest] = path
    return paths


def write(dest: Path, image: Image, cache: Path, tags: list[str] | None = None, **kw: Any) -> None:
    """Archive ``image`` from blobs in ``cache``."""
    paths = cache_blobs(cache, image)
    arguments: dict[str, Any] = {
        "config_path": paths[image.config.digest],
        "config_digest": image.config.digest,
        "layers": [(b.digest, b.media_type, paths[b.digest]) for b in image.layers],
        "diff_ids": [b.diff_id for b in image.layers],
        "repo_tags": [SAMPLE_TAG] if tags is None else tags,
    }
    arguments.update(kw)
    write_docker_archive(dest, **arguments)


def members(archive: Path) -> dict[str, tuple[tarfile.TarInfo, bytes]]:
    """Every member of the archive, in order: name -> (header, content)."""
    out: dict[str, tuple[tarfile.TarInfo, bytes]] = {}
    with tarfile.open(archive, mode="r:") as tar:
        for info in tar:
            extracted = tar.extractfile(info) if info.isfile() else None
            out[info.name] = (info, extracted.read() if extracted else b"")
    return out


def plain_layer(blob: Blob) -> bytes:
    """The uncompressed tar of a layer blob made by the test builder (gzip, zstd or plain)."""
    if blob.data[:2] == b"\x1f\x8b":
        return gzip.decompress(blob.data)
    if blob.media_type == OCI_LAYER_ZSTD:
        return zstandard.ZstdDecompressor().stream_reader(io.BytesIO(blob.data)).read()
    return blob.data


def zstd_layer(files: dict[str, bytes | None]) -> Blob:
    """A zstd layer (the image builder makes gzip and plain ones)."""
    plain = make_layer(files, compression="none")
    data = zstandard.ZstdCompressor(level=3).compress(plain.data)
    return Blob.of(data, OCI_LAYER_ZSTD, plain.diff_id)


def mixed_image() -> Image:
    """gzip, zstd and plain layers in one OCI image."""
    return make_image(
        [
            make_layer({"etc/os-release": b"ID=tank\n", "etc/hostname": b"tank\n"}),
            zstd_layer({"usr/share/zstd.txt": b"compressed with zstd\n" * 500}),
            make_layer({"bin/hello": b"#!/bin/sh\necho hello\n"}, compression="none"),
        ]
    )


def temporaries(directory: Path) -> list[Path]:
    return [p for p in directory.iterdir() if p.name.startswith(".tank-tmp-")]


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# -- the archive's contents --------------------------------------------------------------------


@pytest.mark.parametrize("media_types", ["oci", "docker"])
def test_archive_layout(media_types: str, tmp_path: Path) -> None:
    image = sample_image(media_types="docker" if media_types == "docker" else "oci")
    dest = tmp_path / "out" / "sample.tar"  # the parent is created
    write(dest, image, tmp_path / "cache")

    found = members(dest)
    config_name = image.config.digest.removeprefix("sha256:") + ".json"
    diff_hexes = [str(b.diff_id).removeprefix("sha256:") for b in image.layers]
    layer_names = [f"{h}/layer.tar" for h in diff_hexes]
    assert list(found) == [
        "manifest.json",
        "repositories",
        config_name,
        *[name for h in diff_hexes for name in (h, f"{h}/layer.tar")],
    ]
    manifest = json.loads(found["manifest.json"][1])
    assert manifest == [{"Config": config_name, "RepoTags": [SAMPLE_TAG], "Layers": layer_names}]
    repositories = json.loads(found["repositories"][1])
    assert repositories == {"127.0.0.1:5000/library/sample": {"latest": diff_hexes[-1]}}
    assert found[config_name][1] == image.config.data

    config = json.loads(image.config.data)
    for name, layer, diff_id in zip(layer_names, image.layers, config["rootfs"]["diff_ids"],
                                    strict=True):
        data = found[name][1]
        assert sha256(data) == diff_id
        assert data == plain_layer(layer)

    for info, _ in found.values():
        assert (info.mtime, info.uid, info.gid, info.uname, info.gname) == (0, 0, 0, "", "")
        assert info.mode == (0o755 if info.isdir() else 0o644)
    assert os.stat(dest).st_mode & 0o777 == 0o644 & ~current_umask()
    assert temporaries(dest.parent) == []


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_zstd_gzip_and_plain_layers_are_all_stored_uncompressed(tmp_path: Path) -> None:
    image = mixed_image()
    assert [b.media_type.rpartition(".")[2] for b in image.layers] == [
        "tar+gzip", "tar+zstd", "tar"
    ]
    dest = tmp_path / "mixed.tar"
    write(dest, image, tmp_path / "cache")
    found = members(dest)
    for layer in image.layers:
        data = found[f"{str(layer.diff_id).removeprefix('sha256:')}/layer.tar"][1]
        assert sha256(data) == layer.diff_id
        assert data == plain_layer(layer)
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            assert tar.getnames()


def test_a_layer_used_twice_is_stored_once(tmp_path: Path) -> None:
    base = make_layer({"etc/base": b"base\n"})
    app = make_layer({"app/run": b"run\n"})
    image = make_image([base, app, base])
    dest = tmp_path / "twice.tar"
    write(dest, image, tmp_path / "cache")
    found = members(dest)
    base_name = f"{str(base.diff_id).removeprefix('sha256:')}/layer.tar"
    app_name = f"{str(app.diff_id).removeprefix('sha256:')}/layer.tar"
    assert [n for n in found if n.endswith("/layer.tar")] == [base_name, app_name]
    (manifest,) = json.loads(found["manifest.json"][1])
    assert manifest["Layers"] == [base_name, app_name, base_name]


def test_the_archive_is_deterministic(tmp_path: Path) -> None:
    image = mixed_image()
    write(tmp_path / "a.tar", image, tmp_path / "cache")
    write(tmp_path / "b.tar", image, tmp_path / "cache")
    assert (tmp_path / "a.tar").read_bytes() == (tmp_path / "b.tar").read_bytes()


def test_repo_tags_are_familiar_and_deduplicated(tmp_path: Path) -> None:
    dest = tmp_path / "tags.tar"
    tags = [
        "docker.io/library/sample:latest",
        "sample",  # the same, spelt short
        "index.docker.io/team/app:v1",
        "localhost:5000/library/sample:v2",
    ]
    write(dest, sample_image(), tmp_path / "cache", tags=tags)
    found = members(dest)
    (manifest,) = json.loads(found["manifest.json"][1])
    assert manifest["RepoTags"] == [
        "sample:latest", "team/app:v1", "localhost:5000/library/sample:v2"
    ]
    top = str(sample_image().layers[-1].diff_id).removeprefix("sha256:")
    assert json.loads(found["repositories"][1]) == {
        "sample": {"latest": top},
        "team/app": {"v1": top},
        "localhost:5000/library/sample": {"v2": top},
    }


def test_no_tags(tmp_path: Path) -> None:
    dest = tmp_path / "untagged.tar"
    write(dest, sample_image(), tmp_path / "cache", tags=[])
    found = members(dest)
    assert json.loads(found["manifest.json"][1])[0]["RepoTags"] == []
    assert json.loads(found["repositories"][1]) == {}


def test_an_existing_file_is_replaced(tmp_path: Path) -> None:
    dest = tmp_path / "sample.tar"
    dest.write_bytes(b"old")
    write(dest, sample_image(), tmp_path / "cache")
    assert "manifest.json" in members(dest)


# -- failures leave nothing behind -------------------------------------------------------------


def test_a_layer_that_does_not_match_its_diff_id(tmp_path: Path) -> None:
    """The config (and so the diff_ids) claims another tar than the blob holds."""
    good = make_layer({"etc/good": b"good\n"})
    claimed = make_layer({"etc/claimed": b"claimed\n"}).diff_id
    liar = dataclasses.replace(make_layer({"etc/bad": b"bad\n"}), diff_id=claimed)
    image = make_image([good, liar])
    dest = tmp_path / "bad.tar"
    with pytest.raises(DigestMismatch) as info:
        write(dest, image, tmp_path / "cache")
    assert info.value.expected == claimed
    assert info.value.actual == make_layer({"etc/bad": b"bad\n"}).diff_id
    assert liar.digest in str(info.value)
    assert str(claimed) in str(info.value)
    assert not dest.exists()
    assert temporaries(tmp_path) == []


def test_a_repeated_diff_id_from_another_blob_is_checked_too(tmp_path: Path) -> None:
    """Stored once, but a second blob claiming the same diff_id must decompress to it."""
    good = make_layer({"etc/good": b"good\n"})
    same = zstd_layer({"etc/good": b"good\n"})  # the same tar, compressed with zstd
    assert same.diff_id == good.diff_id
    assert same.digest != good.digest
    write(tmp_path / "ok.tar", make_image([good, same]), tmp_path / "cache")
    assert [n for n in members(tmp_path / "ok.tar") if n.endswith("layer.tar")] == [
        f"{str(good.diff_id).removeprefix('sha256:')}/layer.tar"
    ]
    liar = dataclasses.replace(make_layer({"etc/bad": b"bad\n"}), diff_id=good.diff_id)
    dest = tmp_path / "bad.tar"
    with pytest.raises(DigestMismatch, match=liar.digest):
        write(dest, make_image([good, liar]), tmp_path / "cache")
    assert not dest.exists()
    assert temporaries(tmp_path) == []


def test_a_failure_leaves_an_existing_archive_alone(tmp_path: Path) -> None:
    dest = tmp_path / "keep.tar"
    dest.write_bytes(b"the previous archive")
    layer = make_layer({"x": b"x"})
    truncated = dataclasses.replace(layer, data=layer.data[: len(layer.data) // 2])
    truncated = dataclasses.replace(truncated, digest=sha256(truncated.data))
    with pytest.raises(CorruptLayer, match="truncated gzip") as info:
        write(dest, make_image([truncated]), tmp_path / "cache")
    assert truncated.digest.replace(":", "-") in info.value.path
    assert dest.read_bytes() == b"the previous archive"
    assert temporaries(tmp_path) == []


def test_inputs_that_do_not_fit_together(tmp_path: Path) -> None:
    image = sample_image()
    cache = tmp_path / "cache"
    dest = tmp_path / "x.tar"
    paths = cache_blobs(cache, image)
    with pytest.raises(ArchiveError, match="3 layers but 2 diff_ids"):
        write(dest, image, cache, diff_ids=[b.diff_id for b in image.layers[:2]])
    with pytest.raises(ArchiveError, match=r"rootfs\.diff_ids"):
        write(dest, image, cache, diff_ids=[b.diff_id for b in reversed(image.layers)])
    with pytest.raises(DigestMismatch, match="config"):
        write(dest, image, cache, config_path=paths[image.layers[0].digest])
    with pytest.raises(ArchiveError, match="does not exist"):
        write(dest, image, cache,
              layers=[(b.digest, b.media_type, cache / "nope") for b in image.layers])
    with pytest.raises(UnsupportedLayer):
        write(dest, image, cache,
              layers=[(b.digest, "application/octet-stream", paths[b.digest])
                      for b in image.layers])
    with pytest.raises(InvalidReference):
        write(dest, image, cache, tags=["sample@sha256:" + "a" * 64])
    with pytest.raises(InvalidReference):
        write(dest, image, cache, tags=["sample:latest@sha256:" + "a" * 64])
    (tmp_path / "dir").mkdir()
    with pytest.raises(ArchiveError, match="is a directory"):
        write(tmp_path / "dir", image, cache)
    assert not dest.exists()
    assert temporaries(tmp_path) == []
    assert issubclass(ArchiveError, TankError)


# -- names -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        ("alpine", "alpine:latest"),
        ("docker.io/library/alpine:3.20", "alpine:3.20"),
        ("library/alpine:edge", "alpine:edge"),
        ("user/app:v1", "user/app:v1"),
        ("docker.io/library/team/app:v1", "library/team/app:v1"),
        ("127.0.0.1:5000/library/sample:latest", "127.0.0.1:5000/library/sample:latest"),
        ("ghcr.io/owner/app:1.0@sha256:" + "b" * 64, "ghcr.io/owner/app:1.0"),
        ("localhost/app", "localhost/app:latest"),
    ],
)
def test_repo_tag(reference: str, expected: str) -> None:
    assert repo_tag(parse(reference)) == expected


def test_repo_tag_needs_a_tag() -> None:
    with pytest.raises(InvalidReference, match="by tag"):
        repo_tag(parse("alpine@sha256:" + "c" * 64))
    assert familiar_name(parse("alpine@sha256:" + "c" * 64)) == "alpine"


@pytest.mark.parametrize(
    ("spec", "path", "ref"),
    [
        ("docker-archive:/tmp/a.tar", "/tmp/a.tar", None),
        ("docker-archive:a.tar", "a.tar", None),
        ("docker-archive:/tmp/a.tar:", "/tmp/a.tar", None),
        ("docker-archive:/tmp/a.tar:sample", "/tmp/a.tar", "sample"),
        ("docker-archive:/tmp/a.tar:sample:v1", "/tmp/a.tar", "sample:v1"),
        ("docker-archive:out/a.tar:localhost:5000/team/app:v2", "out/a.tar",
         "localhost:5000/team/app:v2"),
        ("docker-archive:a.tar:127.0.0.1:5000/library/sample", "a.tar",
         "127.0.0.1:5000/library/sample"),
    ],
)
def test_parse_targets(spec: str, path: str, ref: str | None) -> None:
    target = ArchiveTarget.parse(spec)
    assert target == ArchiveTarget(Path(path), ref)
    assert str(target) == spec.rstrip(":")
    if ref is None:
        assert target.reference is None
    else:
        assert target.reference == parse(ref)


def test_a_target_without_a_tag_means_latest() -> None:
    reference = ArchiveTarget.parse("docker-archive:a.tar:sample").reference
    assert reference is not None
    assert repo_tag(reference) == "sample:latest"


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        ("oci:/tmp/a", "docker-archive:FILE"),
        ("docker-archive", "docker-archive:FILE"),
        ("docker-archive:", "file is empty"),
        ("docker-archive::sample:v1", "file is empty"),
        ("docker-archive:a\0b.tar", "NUL"),
        ("docker-archive:a.tar:Sample:v1", "lowercase"),
        ("docker-archive:a.tar:sample:bad tag", "white space"),
        ("docker-archive:a.tar:sample:-v1", "invalid tag"),
        ("docker-archive:a.tar:sample@sha256:" + "d" * 64, "not by digest"),
        ("docker-archive:a.tar:sample:v1@sha256:" + "d" * 64, "not by digest"),
        ("docker-archive:a.tar:@1", "algorithm:hex"),  # skopeo's source index: not a target
        ("docker-archive:a.tar::v1", "invalid repository name"),
    ],
)
def test_parse_refuses(spec: str, reason: str) -> None:
    with pytest.raises(InvalidReference, match=reason) as info:
        ArchiveTarget.parse(spec)
    assert info.value.reference == spec


# -- interop: skopeo and umoci read what tank writes -------------------------------------------


def layer_files(image: Image) -> dict[str, bytes]:
    """Every regular file of ``image``'s layers, by path (later layers win)."""
    files: dict[str, bytes] = {}
    for layer in image.layers:
        with tarfile.open(fileobj=io.BytesIO(plain_layer(layer))) as tar:
            for member in tar.getmembers():
                extracted = tar.extractfile(member) if member.isfile() else None
                if extracted is not None:
                    files[member.name] = extracted.read()
    return files


@pytest.mark.parametrize("which", ["oci", "docker", "mixed"])
def test_skopeo_inspects_the_archive(which: str, tmp_path: Path) -> None:
    image = {"oci": sample_image, "docker": lambda: sample_image(media_types="docker"),
             "mixed": mixed_image}[which]()
    dest = tmp_path / "sample.tar"
    write(dest, image, tmp_path / "cache", tags=[SAMPLE_TAG, "team/app:v1"])
    skopeo = tool("skopeo")
    config = json.loads(image.config.data)

    inspected = json.loads(ok(skopeo, "inspect", f"docker-archive:{dest}").stdout)
    assert inspected["Layers"] == config["rootfs"]["diff_ids"]
    assert (inspected["Architecture"], inspected["Os"]) == ("amd64", "linux")
    raw_config = ok(skopeo, "inspect", "--config", "--raw", f"docker-archive:{dest}").stdout
    assert raw_config.encode() == image.config.data

    # skopeo picks an image by its RepoTags entry, normalised the way it normalises the ref
    for ref in (SAMPLE_TAG, "team/app:v1", "docker.io/team/app:v1"):
        picked = json.loads(ok(skopeo, "inspect", f"docker-archive:{dest}:{ref}").stdout)
        assert picked["Layers"] == config["rootfs"]["diff_ids"]
    done = run(skopeo, "inspect", f"docker-archive:{dest}:team/app:v2")
    assert done.returncode != 0
    assert "not found" in done.stderr


def test_skopeo_copies_to_oci_and_umoci_unpacks_it(tmp_path: Path) -> None:
    image = mixed_image()
    dest = tmp_path / "mixed.tar"
    write(dest, image, tmp_path / "cache")
    layout = tmp_path / "layout"
    ok(tool("skopeo"), "--insecure-policy", "copy", f"docker-archive:{dest}", f"oci:{layout}:v1")
    bundle = tmp_path / "bundle"
    ok(tool("umoci"), "unpack", "--rootless", "--image", f"{layout}:v1", str(bundle))
    files = layer_files(image)
    assert set(files) == {"etc/os-release", "etc/hostname", "usr/share/zstd.txt", "bin/hello"}
    for name, data in files.items():
        assert (bundle / "rootfs" / name).read_bytes() == data


def test_skopeo_copies_a_repeated_layer(tmp_path: Path) -> None:
    base = make_layer({"etc/base": b"base\n"})
    image = make_image([base, make_layer({"app/run": b"run\n"}), base])
    dest = tmp_path / "twice.tar"
    write(dest, image, tmp_path / "cache")
    out = tmp_path / "dir"
    ok(tool("skopeo"), "--insecure-policy", "copy", f"docker-archive:{dest}", f"dir:{out}")
    manifest = json.loads((out / "manifest.json").read_text())
    digests = [layer["digest"] for layer in manifest["layers"]]
    assert digests == [b.diff_id for b in image.layers]
    for digest in set(digests):
        assert sha256((out / digest.removeprefix("sha256:")).read_bytes()) == digest
