"""tank.outputs.layout: OCI layouts, checked by hand and by skopeo, umoci and oci-image-tool."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import textwrap
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from support.referees import ok, run, tool
from tank.errors import InvalidDigest, InvalidReference, SizeMismatch, TankError
from tank.mediatypes import OCI_INDEX
from tank.outputs.layout import (
    FICLONE,
    LOCK_NAME,
    REF_NAME_ANNOTATION,
    LayoutError,
    LayoutTarget,
    write_image,
)
from tank.testing.images import Image, Index, sample_image, sample_index

# -- helpers -----------------------------------------------------------------------------------


def cache_blobs(cache: Path, items: Iterable[tuple[str, bytes]]) -> dict[str, Path]:
    """Write each blob as ``cache/<alg>/<hex>``, read-only like tank's cache; digest -> path."""
    blobs: dict[str, Path] = {}
    for digest, data in items:
        algorithm, _, hexpart = digest.partition(":")
        path = cache / algorithm / hexpart
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            path.chmod(0o444)
        blobs[digest] = path
    return blobs


def image_items(image: Image) -> list[tuple[str, bytes]]:
    """The manifest, config and layers of ``image``."""
    return [(image.manifest_digest, image.manifest)] + [(b.digest, b.data) for b in image.blobs()]


def index_items(index: Index) -> list[tuple[str, bytes]]:
    """The index and everything every child manifest reaches."""
    items = [(index.manifest_digest, index.manifest)]
    for child in index.children():
        items += image_items(child)
    return items


def write(layout: Path, image: Image, cache: Path, ref: str, **kw: Any) -> dict[str, Path]:
    """Put ``image`` into ``cache`` and write it to ``layout`` as ``ref``; return its blobs."""
    blobs = cache_blobs(cache, image_items(image))
    write_image(
        layout,
        manifest_digest=image.manifest_digest,
        manifest_media_type=image.media_type,
        manifest_size=len(image.manifest),
        ref_name=ref,
        blobs=blobs,
        **kw,
    )
    return blobs


def index_json(layout: Path) -> dict[str, Any]:
    """The layout's index.json, parsed."""
    doc = json.loads((layout / "index.json").read_bytes())
    assert isinstance(doc, dict)
    return doc


def ref_names(layout: Path) -> list[str]:
    """The ref names of the layout's index.json entries, in order."""
    return [
        m.get("annotations", {}).get(REF_NAME_ANNOTATION) for m in index_json(layout)["manifests"]
    ]


def temporaries(layout: Path) -> list[Path]:
    """Every leftover temporary file in the layout."""
    return [p for p in layout.rglob("*") if p.name.startswith(".tank-tmp-")]


def reflinks_work(directory: Path) -> bool:
    """Whether the filesystem under ``directory`` can clone files (then tank prefers it)."""
    if sys.platform != "linux":
        return False
    import fcntl

    src, dst = directory / ".probe-src", directory / ".probe-dst"
    src.write_bytes(b"probe")
    try:
        with src.open("rb") as fin, dst.open("wb") as fout:
            fcntl.ioctl(fout.fileno(), FICLONE, fin.fileno())
    except OSError:
        return False
    finally:
        src.unlink()
        dst.unlink(missing_ok=True)
    return True


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    """A scratch blob cache on the same filesystem as the layouts."""
    path = tmp_path / "cache"
    path.mkdir()
    return path


# -- LayoutTarget.parse ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "path", "tag"),
    [
        ("oci:/tmp/x", "/tmp/x", None),
        ("oci:/tmp/x:v1", "/tmp/x", "v1"),
        ("oci:rel/dir:latest", "rel/dir", "latest"),
        ("oci:/tmp/a:b/c", "/tmp/a:b/c", None),  # "b/c" is no tag: the colon is in the path
        ("oci:/tmp/x:1.0_rc-2", "/tmp/x", "1.0_rc-2"),
        ("oci:/tmp/x:.bad", "/tmp/x:.bad", None),  # a tag cannot start with "."
        ("oci:/tmp/x:" + "t" * 129, "/tmp/x:" + "t" * 129, None),  # longer than 128
        ("oci:/tmp/x:", "/tmp/x", None),
        ("oci:dir", "dir", None),
    ],
)
def test_parse_targets(spec: str, path: str, tag: str | None) -> None:
    target = LayoutTarget.parse(spec)
    assert target == LayoutTarget(Path(path), tag)


@pytest.mark.parametrize("spec", ["docker://x", "oci:", "oci::v1", "OCI:/tmp/x", "/tmp/x", ""])
def test_parse_refuses_non_layout_specs(spec: str) -> None:
    with pytest.raises(InvalidReference) as info:
        LayoutTarget.parse(spec)
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, TankError)


# -- writing -----------------------------------------------------------------------------------


def test_write_one_image(tmp_path: Path, cache: Path) -> None:
    image = sample_image()
    layout = tmp_path / "deep" / "layout"
    blobs = write(layout, image, cache, "v1", platform=image.platform)

    assert json.loads((layout / "oci-layout").read_bytes()) == {"imageLayoutVersion": "1.0.0"}
    index = index_json(layout)
    assert index["schemaVersion"] == 2
    assert index["mediaType"] == OCI_INDEX
    assert index["manifests"] == [
        {
            "mediaType": image.media_type,
            "digest": image.manifest_digest,
            "size": len(image.manifest),
            "annotations": {REF_NAME_ANNOTATION: "v1"},
            "platform": {"architecture": "amd64", "os": "linux"},
        }
    ]
    cloned = reflinks_work(tmp_path)
    for digest, source in blobs.items():
        placed = layout / "blobs" / "sha256" / digest.removeprefix("sha256:")
        assert "sha256:" + hashlib.sha256(placed.read_bytes()).hexdigest() == digest
        # same filesystem: a hard link to the cache (a clone where the filesystem can)
        assert (placed.stat().st_ino == source.stat().st_ino) is not cloned
        assert placed.stat().st_mode & 0o777 == 0o444
    assert sorted(p.name for p in (layout / "blobs" / "sha256").iterdir()) == sorted(
        d.removeprefix("sha256:") for d in blobs
    )
    assert temporaries(layout) == []


def test_copy_true_makes_independent_read_only_copies(tmp_path: Path, cache: Path) -> None:
    image = sample_image()
    layout = tmp_path / "layout"
    blobs = write(layout, image, cache, "v1", copy=True)
    for digest, source in blobs.items():
        placed = layout / "blobs" / "sha256" / digest.removeprefix("sha256:")
        assert placed.stat().st_ino != source.stat().st_ino
        assert placed.stat().st_nlink == 1
        assert placed.read_bytes() == source.read_bytes()
        assert placed.stat().st_mode & 0o777 == 0o444
    assert temporaries(layout) == []


def test_across_filesystems_blobs_are_copied(tmp_path: Path) -> None:
    shm = Path("/dev/shm")
    if not shm.is_dir() or shm.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("needs /dev/shm on a filesystem other than the test's tmp_path")
    image = sample_image(architecture="arm64", variant="v8")
    cache = shm / f"tank-test-cache-{os.getpid()}"
    try:
        layout = tmp_path / "layout"
        blobs = write(layout, image, cache, "v1")
        for digest, source in blobs.items():
            placed = layout / "blobs" / "sha256" / digest.removeprefix("sha256:")
            assert placed.read_bytes() == source.read_bytes()
            assert placed.stat().st_mode & 0o777 == 0o444
        assert temporaries(layout) == []
    finally:
        for path in cache.rglob("*"):
            path.chmod(0o755)
        shutil.rmtree(cache, ignore_errors=True)


def test_adding_images_keeps_others_and_retagging_replaces(tmp_path: Path, cache: Path) -> None:
    layout = tmp_path / "layout"
    amd64 = sample_image()
    arm64 = sample_image(architecture="arm64", variant="v8")
    write(layout, amd64, cache, "v1")
    write(layout, arm64, cache, "v2")
    assert ref_names(layout) == ["v1", "v2"]
    entries = {m["annotations"][REF_NAME_ANNOTATION]: m for m in index_json(layout)["manifests"]}
    assert entries["v1"]["digest"] == amd64.manifest_digest
    assert entries["v2"]["digest"] == arm64.manifest_digest

    # re-point v1 at the arm64 image: one entry per name, the other image's blobs stay
    write(layout, arm64, cache, "v1")
    assert sorted(ref_names(layout)) == ["v1", "v2"]
    manifests = index_json(layout)["manifests"]
    assert [m["digest"] for m in manifests] == [arm64.manifest_digest] * 2
    for digest, _ in image_items(amd64) + image_items(arm64):
        assert (layout / "blobs" / "sha256" / digest.removeprefix("sha256:")).is_file()
    assert temporaries(layout) == []


def test_unknown_keys_and_foreign_entries_are_kept(tmp_path: Path, cache: Path) -> None:
    layout = tmp_path / "layout"
    image = sample_image()
    write(layout, image, cache, "v1")
    doc = index_json(layout)
    foreign = {
        "mediaType": image.media_type,
        "digest": image.manifest_digest,
        "size": len(image.manifest),
        "annotations": {"org.example.note": "written by another tool"},
        "x-extra": [1, 2, 3],
    }
    doc["manifests"].append(foreign)
    doc["annotations"] = {"org.example.layout": "mine"}
    doc["x-custom"] = {"nested": True}
    (layout / "index.json").write_text(json.dumps(doc))

    write(layout, sample_image(architecture="arm64", variant="v8"), cache, "v2")
    write(layout, image, cache, "v1")  # replaces only its own entry
    after = index_json(layout)
    assert after["annotations"] == {"org.example.layout": "mine"}
    assert after["x-custom"] == {"nested": True}
    assert foreign in after["manifests"]
    assert ref_names(layout) == [None, "v2", "v1"]


def test_present_blobs_are_left_alone_and_stale_temporaries_swept(
    tmp_path: Path, cache: Path
) -> None:
    layout = tmp_path / "layout"
    image = sample_image()
    write(layout, image, cache, "v1", copy=True)
    placed = layout / "blobs" / "sha256" / image.layers[0].digest.removeprefix("sha256:")
    inode = placed.stat().st_ino
    stale = [layout / ".tank-tmp-index.json-dead", layout / "blobs/sha256/.tank-tmp-abc-dead"]
    for path in stale:
        path.write_bytes(b"left by a crashed writer")

    write(layout, image, cache, "again")
    assert placed.stat().st_ino == inode  # already there with the right size: not replaced
    assert temporaries(layout) == []


def test_a_wrong_sized_blob_in_the_layout_is_replaced(tmp_path: Path, cache: Path) -> None:
    layout = tmp_path / "layout"
    image = sample_image()
    write(layout, image, cache, "v1", copy=True)
    placed = layout / "blobs" / "sha256" / image.layers[2].digest.removeprefix("sha256:")
    placed.chmod(0o644)
    placed.write_bytes(b"truncated")
    write(layout, image, cache, "v1")
    assert placed.read_bytes() == image.layers[2].data


def test_sha512_blobs_go_under_their_algorithm(tmp_path: Path, cache: Path) -> None:
    layout = tmp_path / "layout"
    image = sample_image()
    extra = b"a blob addressed by sha512"
    digest = "sha512:" + hashlib.sha512(extra).hexdigest()
    blobs = cache_blobs(cache, [*image_items(image), (digest, extra)])
    write_image(
        layout,
        manifest_digest=image.manifest_digest,
        manifest_media_type=image.media_type,
        manifest_size=len(image.manifest),
        ref_name="v1",
        blobs=blobs,
    )
    assert (layout / "blobs" / "sha512" / digest.removeprefix("sha512:")).read_bytes() == extra


def test_two_threads_write_one_layout(tmp_path: Path, cache: Path) -> None:
    layout = tmp_path / "layout"
    images = [sample_image(), sample_image(architecture="arm64", variant="v8")]
    for image in images:
        cache_blobs(cache, image_items(image))
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def run(n: int) -> None:
        try:
            start.wait()
            for i in range(10):
                write(layout, images[n], cache, f"t{n}-{i}")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(ref_names(layout)) == sorted(f"t{n}-{i}" for n in range(2) for i in range(10))
    assert temporaries(layout) == []


_WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from tank.outputs.layout import write_image

    layout, go, tag, manifest, media_type, size = sys.argv[1:7]
    blobs = {a: Path(b) for a, b in zip(sys.argv[7::2], sys.argv[8::2])}
    while not Path(go).exists():
        time.sleep(0.001)
    for i in range(15):
        write_image(layout, manifest_digest=manifest, manifest_media_type=media_type,
                    manifest_size=int(size), ref_name=f"{tag}-{i}", blobs=blobs)
    """
)


def test_two_processes_write_one_layout(tmp_path: Path, cache: Path) -> None:
    layout = tmp_path / "new" / "layout"  # not there yet: both race to create it too
    go = tmp_path / "go"
    procs = []
    for tag, image in (
        ("a", sample_image()),
        ("b", sample_image(architecture="arm", variant="v7")),
    ):
        blobs = cache_blobs(cache, image_items(image))
        args = [str(layout), str(go), tag, image.manifest_digest, image.media_type]
        args.append(str(len(image.manifest)))
        for digest, path in blobs.items():
            args += [digest, str(path)]
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", _WRITER, *args], stderr=subprocess.PIPE, text=True
            )
        )
    time.sleep(0.5)  # let both interpreters start and spin on the go file
    go.touch()
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    names = ref_names(layout)  # valid JSON, or this raises
    assert sorted(names) == sorted(f"{t}-{i}" for t in "ab" for i in range(15))
    assert temporaries(layout) == []


def test_a_non_empty_directory_that_is_not_a_layout_is_refused(tmp_path: Path, cache: Path) -> None:
    target = tmp_path / "home"
    target.mkdir()
    (target / "notes.txt").write_text("mine")
    with pytest.raises(LayoutError, match="not an OCI layout"):
        write(target, sample_image(), cache, "v1")
    assert sorted(p.name for p in target.iterdir()) == ["notes.txt"]  # not even a lock file

    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(LayoutError, match="not a directory"):
        write(a_file, sample_image(), cache, "v1")


def test_an_empty_directory_is_fine(tmp_path: Path, cache: Path) -> None:
    target = tmp_path / "empty"
    target.mkdir()
    write(target, sample_image(), cache, "v1")
    assert ref_names(target) == ["v1"]
    assert (target / LOCK_NAME).exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"{not json", "not valid JSON"), (b"[]", "not a JSON object"), (b'{"manifests": 3}', "list")],
)
def test_a_broken_index_is_refused_before_anything_is_placed(
    tmp_path: Path, cache: Path, content: bytes, message: str
) -> None:
    layout = tmp_path / "layout"
    layout.mkdir()
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (layout / "index.json").write_bytes(content)
    with pytest.raises(LayoutError, match=message):
        write(layout, sample_image(), cache, "v1")
    assert (layout / "index.json").read_bytes() == content
    assert not (layout / "blobs").exists()


def test_an_unknown_layout_version_is_refused(tmp_path: Path, cache: Path) -> None:
    layout = tmp_path / "layout"
    layout.mkdir()
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "2.0.0"}')
    with pytest.raises(LayoutError, match="imageLayoutVersion"):
        write(layout, sample_image(), cache, "v1")


def test_the_manifest_must_be_given_or_present(tmp_path: Path, cache: Path) -> None:
    image = sample_image()
    blobs = cache_blobs(cache, image_items(image))
    del blobs[image.manifest_digest]
    common: dict[str, Any] = {
        "manifest_digest": image.manifest_digest,
        "manifest_media_type": image.media_type,
        "ref_name": "v1",
    }
    with pytest.raises(LayoutError, match="neither among the blobs"):
        write_image(tmp_path / "a", manifest_size=len(image.manifest), blobs=blobs, **common)
    assert not (tmp_path / "a" / "index.json").exists()

    with pytest.raises(SizeMismatch):
        write_image(
            tmp_path / "b",
            manifest_size=len(image.manifest) + 1,
            blobs=cache_blobs(cache, image_items(image)),
            **common,
        )

    # once the manifest is in the layout, a later write may name it without passing it again
    write(tmp_path / "c", image, cache, "v1")
    common["ref_name"] = "v2"
    write_image(tmp_path / "c", manifest_size=len(image.manifest), blobs={}, **common)
    assert ref_names(tmp_path / "c") == ["v1", "v2"]


def test_bad_digests_never_become_paths(tmp_path: Path, cache: Path) -> None:
    image = sample_image()
    blobs = cache_blobs(cache, image_items(image))
    bad = {**blobs, "sha256:../../../etc/passwd": blobs[image.manifest_digest]}
    with pytest.raises(InvalidDigest):
        write_image(
            tmp_path / "layout",
            manifest_digest=image.manifest_digest,
            manifest_media_type=image.media_type,
            manifest_size=len(image.manifest),
            ref_name="v1",
            blobs=bad,
        )
    assert not (tmp_path / "layout").exists()


# -- interop: the reference tools read what tank writes ----------------------------------------

@pytest.fixture
def sample_layout(tmp_path: Path, cache: Path) -> tuple[Path, Image]:
    """The OCI sample image written as ``latest`` (after another image, to exercise lookup)."""
    layout = tmp_path / "layout"
    write(layout, sample_image(architecture="arm64", variant="v8"), cache, "other")
    image = sample_image()
    write(layout, image, cache, "latest", platform=image.platform)
    return layout, image


def layer_files(image: Image) -> dict[str, bytes]:
    """Every regular file of ``image``'s layers, by path (later layers win)."""
    files: dict[str, bytes] = {}
    for layer in image.layers:
        with tarfile.open(fileobj=io.BytesIO(layer.data), mode="r:*") as tar:
            for member in tar.getmembers():
                if member.isfile():
                    extracted = tar.extractfile(member)
                    assert extracted is not None
                    files[member.name] = extracted.read()
    return files


def test_oci_image_tool_validates_the_layout(sample_layout: tuple[Path, Image]) -> None:
    layout, _ = sample_layout
    oci_image_tool = tool("oci-image-tool")
    # 1.0.0-rc1 has no "imageLayout" type: "image" on a directory validates it as a layout,
    # following every index.json entry through manifest, config and layers.
    done = ok(oci_image_tool, "validate", "--type", "image", str(layout))
    assert "Validation succeeded" in done.stdout
    done = ok(oci_image_tool, "validate", "--type", "image", "--ref", "name=latest", str(layout))
    assert "reference [name=latest]: OK" in done.stdout


def test_oci_image_tool_notices_a_corrupt_blob(sample_layout: tuple[Path, Image]) -> None:
    """The validator is a real referee, and ``--ref name=`` selects by the ref-name annotation.

    Flip one byte of a layer of the image named ``other``: validating every ref or that one
    fails, validating ``latest`` alone still passes. (rc1 reports an absent name as OK when the
    index has several entries, so a missing name proves nothing and is not asserted.)
    """
    layout, _ = sample_layout
    other = sample_image(architecture="arm64", variant="v8")
    placed = layout / "blobs" / "sha256" / other.layers[2].digest.removeprefix("sha256:")
    data = bytearray(placed.read_bytes())
    data[100] ^= 1
    placed.unlink()  # a hard link to the cache: replace it rather than write through it
    placed.write_bytes(bytes(data))
    oci_image_tool = tool("oci-image-tool")
    for argv in ([], ["--ref", "name=other"]):
        done = run(oci_image_tool, "validate", "--type", "image", *argv, str(layout))
        assert done.returncode != 0, argv
        assert "digest mismatch" in done.stderr
    ok(oci_image_tool, "validate", "--type", "image", "--ref", "name=latest", str(layout))


def test_skopeo_copies_out_of_the_layout(
    sample_layout: tuple[Path, Image], tmp_path: Path, policy: str
) -> None:
    layout, image = sample_layout
    skopeo = tool("skopeo")
    out = tmp_path / "out"
    ok(skopeo, "--policy", policy, "copy", f"oci:{layout}:latest", f"dir:{out}")
    assert (out / "manifest.json").read_bytes() == image.manifest
    for blob in image.blobs():
        path = out / blob.digest.removeprefix("sha256:")
        assert "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest() == blob.digest
    raw = ok(skopeo, "--policy", policy, "inspect", "--raw", f"oci:{layout}:latest").stdout
    assert raw.encode() == image.manifest


def test_skopeo_reads_an_index_from_the_layout(tmp_path: Path, cache: Path, policy: str) -> None:
    index = sample_index()
    layout = tmp_path / "layout"
    write_image(
        layout,
        manifest_digest=index.manifest_digest,
        manifest_media_type=index.media_type,
        manifest_size=len(index.manifest),
        ref_name="multi",
        blobs=cache_blobs(cache, index_items(index)),
    )
    skopeo = tool("skopeo")
    raw = ok(skopeo, "--policy", policy, "inspect", "--raw", f"oci:{layout}:multi").stdout
    assert raw.encode() == index.manifest
    out = tmp_path / "out"
    ok(
        skopeo,
        "--policy",
        policy,
        "--override-os",
        "linux",
        "--override-arch",
        "arm64",
        "--override-variant",
        "v8",
        "copy",
        f"oci:{layout}:multi",
        f"dir:{out}",
    )
    assert (out / "manifest.json").read_bytes() == index.image_for("linux", "arm64").manifest


def test_umoci_unpacks_the_layout(sample_layout: tuple[Path, Image], tmp_path: Path) -> None:
    layout, image = sample_layout
    bundle = tmp_path / "bundle"
    ok(tool("umoci"), "unpack", "--rootless", "--image", f"{layout}:latest", str(bundle))
    files = layer_files(image)
    assert set(files) >= {"etc/os-release", "bin/hello", "usr/share/tank/data.bin"}
    for name, data in files.items():
        assert (bundle / "rootfs" / name).read_bytes() == data
    assert (bundle / "config.json").is_file()


def test_docker_media_types_are_stored_as_is_and_the_oci_tools_refuse_them(
    tmp_path: Path, cache: Path, policy: str
) -> None:
    """tank does not convert: a Docker v2 manifest goes into the layout byte for byte.

    skopeo (containers/image) only looks up OCI manifest/index entries by name, umoci only
    unpacks OCI manifests and oci-image-tool rejects the descriptor's media type. This pins that
    limitation: if it starts passing, the tools learnt Docker types and the docs can say so.
    """
    image = sample_image(media_types="docker")
    layout = tmp_path / "layout"
    write(layout, image, cache, "latest")
    manifest = layout / "blobs" / "sha256" / image.manifest_digest.removeprefix("sha256:")
    assert manifest.read_bytes() == image.manifest
    assert index_json(layout)["manifests"][0]["mediaType"] == image.media_type

    validate = run(tool("oci-image-tool"), "validate", "--type", "image", str(layout))
    assert validate.returncode != 0
    assert "invalid descriptor MediaType" in validate.stderr
    copy = run(
        tool("skopeo"), "--policy", policy, "copy", f"oci:{layout}:latest", f"dir:{tmp_path / 'o'}"
    )
    assert copy.returncode != 0
    assert "no descriptor found" in copy.stderr
    unpack = run(
        tool("umoci"), "unpack", "--rootless", "--image", f"{layout}:latest", str(tmp_path / "b")
    )
    assert unpack.returncode != 0
