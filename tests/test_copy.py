"""tank copy / push / sync / tag / delete: between two real registries, layouts and archives.

Referees: skopeo reads what tank pushed (``skopeo inspect``, ``skopeo copy docker://… oci:…``)
and oci-image-tool validates it; what skopeo pushed tank copies with the same digests; an OCI
archive tank writes, skopeo reads. A kill -9 in the middle of a copy is followed by a rerun that
completes, and a third run uploads nothing.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.referees import ok
from tank._copy import CopyEvent, copy
from tank._sync import sync
from tank.errors import NotFound
from tank.registry import Client
from tank.testing.fronts import MakeFront, Recorded
from tank.testing.images import Pusher, make_image, make_layer
from tank.testing.registry import LocalRegistry
from tank.testing.seed import Seeded
from tank.testing.tokenserver import TokenServer


@pytest.fixture(scope="module")
def second() -> Iterator[LocalRegistry]:
    """An empty open registry: the destination of cross-registry copies."""
    with LocalRegistry() as reg:
        yield reg


def tank_cli(*args: str, cache: Path | None, stdin: str | None = None
             ) -> subprocess.CompletedProcess[str]:
    more = ["--cache", str(cache)] if cache is not None else []
    return subprocess.run([sys.executable, "-m", "tank", *args, *more],
                          capture_output=True, text=True, timeout=120, input=stdin,
                          check=False)


def test_registry_to_registry_preserves_digests_and_a_second_run_uploads_nothing(
    registry: LocalRegistry, second: LocalRegistry, seeded: Seeded, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    for tag in ("latest", "docker", "multi", "list"):
        result = copy(f"{registry.host}/{seeded.repo}:{tag}", f"{second.host}/mirror/a:{tag}",
                      all_platforms=True, cache=cache)
        assert result.digest == seeded.tags[tag]
        head = Client(second.host).repository("mirror/a").manifest(tag)
        assert head.digest == seeded.tags[tag]
        assert head.raw == Client(registry.host).repository(seeded.repo).manifest(tag).raw
    again = copy(f"{registry.host}/{seeded.repo}:multi", f"{second.host}/mirror/a:multi",
                 all_platforms=True, cache=cache)
    assert (again.blobs_uploaded, again.manifests_pushed, again.bytes_uploaded) == (0, 0, 0)


def test_one_platform_is_copied_as_a_single_manifest(
    registry: LocalRegistry, second: LocalRegistry, seeded: Seeded, tmp_path: Path
) -> None:
    result = copy(f"{registry.host}/{seeded.repo}:multi", f"{second.host}/mirror/one:arm",
                  platform="linux/arm64", cache=tmp_path)
    child = seeded.multi.image_for("linux", "arm64", "v8")
    assert result.digest == child.manifest_digest
    info = Client(second.host).repository("mirror/one").manifest("arm")
    assert info.digest == child.manifest_digest
    assert not info.is_index


def test_blobs_in_a_sibling_repository_are_mounted_not_uploaded(
    registry: LocalRegistry, second: LocalRegistry, seeded: Seeded, tmp_path: Path,
    make_front: MakeFront,
) -> None:
    front = make_front(second.url)
    events: list[CopyEvent] = []
    copy(f"{registry.host}/{seeded.repo}:latest", f"{front.host}/team/base:1", cache=tmp_path)
    result = copy(f"{registry.host}/{seeded.repo}:latest", f"{front.host}/team/app:1",
                  cache=tmp_path, progress=events.append)
    assert result.blobs_mounted == len(seeded.latest.layers) + 1
    assert result.blobs_uploaded == 0
    mounts = [r for r in front.requests if r.method == "POST" and "mount=" in r.path]
    assert mounts
    assert all("from=team/base" in r.path for r in mounts)
    assert {e.source for e in events if e.kind == "mounted"} == {"team/base"}


def test_within_one_registry_the_source_repository_is_mounted_from(
    registry: LocalRegistry, seeded: Seeded, tmp_path: Path
) -> None:
    result = copy(f"{registry.host}/{seeded.repo}:docker",
                  f"{registry.host}/copies/docker:1", cache=tmp_path / "fresh")
    assert result.blobs_uploaded == 0
    assert result.blobs_mounted == len(seeded.docker.layers) + 1
    assert result.bytes_downloaded == 0


def test_a_push_the_credentials_may_not_make_exits_4_naming_the_scope(
    token_registry: LocalRegistry, second: LocalRegistry, seeded: Seeded, tmp_path: Path,
    token_server: TokenServer,
) -> None:
    done = tank_cli("copy", f"{token_registry.host}/{seeded.repo}:latest",
                    f"docker://{token_registry.host}/library/bobs:1", "--dest-creds", "bob",
                    "-q", cache=tmp_path, stdin="builder\n")
    assert done.returncode == 4, done.stderr
    assert "repository:library/bobs:pull,push" in done.stderr
    admin = token_server.push_token("library/bobs")
    repo = Client(token_registry.host).repository("library/bobs", token=admin)
    with pytest.raises(NotFound):
        repo.tags()
    allowed = tank_cli("copy", f"{token_registry.host}/{seeded.repo}:latest",
                       f"{token_registry.host}/library/alices:1",
                       "--dest-creds", "alice:wonderland", "--json", cache=tmp_path)
    assert allowed.returncode == 0, allowed.stderr
    assert json.loads(allowed.stdout)["digest"] == seeded.tags["latest"]


def test_what_tank_pushed_passes_every_referee(
    registry: LocalRegistry, second: LocalRegistry, seeded: Seeded, tmp_path: Path, policy: str
) -> None:
    copy(f"{registry.host}/{seeded.repo}:multi", f"{second.host}/ref/multi:1",
         all_platforms=True, cache=tmp_path / "c")
    inspected = ok("skopeo", "--policy", policy, "inspect", "--tls-verify=false", "--raw",
                   f"docker://{second.host}/ref/multi:1")
    assert json.loads(inspected.stdout)["manifests"]
    layout = tmp_path / "layout"
    ok("skopeo", "--policy", policy, "copy", "--src-tls-verify=false",
       f"docker://{second.host}/ref/multi:1", f"oci:{layout}:v1")
    ok("oci-image-tool", "validate", "--type", "image", "--ref", "name=v1", str(layout))


def test_what_skopeo_pushed_tank_copies_with_the_same_digests(
    registry: LocalRegistry, second: LocalRegistry, seeded: Seeded, tmp_path: Path, policy: str
) -> None:
    layout = tmp_path / "l"
    ok("skopeo", "--policy", policy, "copy", "--src-tls-verify=false",
       f"docker://{registry.host}/{seeded.repo}:latest", f"oci:{layout}:x")
    ok("skopeo", "--policy", policy, "copy", "--dest-tls-verify=false", f"oci:{layout}:x",
       f"docker://{registry.host}/skopeo/pushed:1")
    theirs = Client(registry.host).repository("skopeo/pushed").manifest("1")
    result = copy(f"docker://{registry.host}/skopeo/pushed:1",
                  f"docker://{second.host}/skopeo/copied:1", cache=tmp_path / "c")
    assert result.digest == theirs.digest
    assert Client(second.host).repository("skopeo/copied").manifest("1").raw == theirs.raw


def test_layouts_and_archives_on_either_side(
    registry: LocalRegistry, second: LocalRegistry, seeded: Seeded, tmp_path: Path, policy: str
) -> None:
    cache = tmp_path / "c"
    source = f"{registry.host}/{seeded.repo}"
    copy(f"{source}:multi", f"oci:{tmp_path / 'layout'}:m", all_platforms=True, cache=cache)
    result = copy(f"oci:{tmp_path / 'layout'}:m", f"{second.host}/local/layout:m",
                  all_platforms=True, cache=tmp_path / "other")
    assert result.digest == seeded.tags["multi"]
    # oci-archive written by tank pull -o, read by skopeo, pushed back by tank
    archive = tmp_path / "image.tar"
    pulled = tank_cli("pull", f"{source}:latest", "-o", f"oci-archive:{archive}:v1", "-q",
                      cache=cache)
    assert pulled.returncode == 0, pulled.stderr
    ok("skopeo", "--policy", policy, "copy", f"oci-archive:{archive}:v1",
       f"dir:{tmp_path / 'dir'}")
    assert (tmp_path / "dir" / "manifest.json").read_bytes() == seeded.latest.manifest
    pushed = tank_cli("push", f"oci-archive:{archive}:v1", f"{second.host}/local/archive:v1",
                      "--json", cache=tmp_path / "fresh")
    assert pushed.returncode == 0, pushed.stderr
    assert json.loads(pushed.stdout)["digest"] == seeded.tags["latest"]
    # an archive skopeo wrote, pushed by tank
    ok("skopeo", "--policy", policy, "copy", "--src-tls-verify=false",
       f"docker://{registry.host}/{seeded.repo}:latest", f"oci-archive:{tmp_path / 's.tar'}:s")
    again = copy(f"oci-archive:{tmp_path / 's.tar'}:s", f"{second.host}/local/skarchive:s",
                 cache=cache)
    assert again.digest == seeded.tags["latest"]


def test_a_docker_archive_is_pushed_with_gzip_layers_and_its_own_config(
    registry: LocalRegistry, second: LocalRegistry, seeded: Seeded, tmp_path: Path, policy: str
) -> None:
    archive = tmp_path / "d.tar"
    copy(f"{registry.host}/{seeded.repo}:latest", f"docker-archive:{archive}:app:v1",
         cache=tmp_path / "c")
    result = copy(f"docker-archive:{archive}", f"{second.host}/from/docker:v1",
                  cache=tmp_path / "c2")
    info = Client(second.host).repository("from/docker").manifest("v1")
    doc = info.json
    assert doc["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
    assert {layer["mediaType"] for layer in doc["layers"]} == {
        "application/vnd.docker.image.rootfs.diff.tar.gzip"}
    assert doc["config"]["digest"] == seeded.latest.config.digest  # the config, unchanged
    ok("skopeo", "--policy", policy, "copy", "--src-tls-verify=false",
       f"docker://{second.host}/from/docker:v1", f"oci:{tmp_path / 'check'}:x")
    again = copy(f"docker-archive:{archive}", f"{second.host}/from/docker:v1",
                 cache=tmp_path / "c3")
    assert again.digest == result.digest  # deterministic compression: nothing new
    assert again.blobs_uploaded == 0


def test_a_copy_killed_mid_transfer_completes_on_the_rerun(
    registry: LocalRegistry, second: LocalRegistry, tmp_path: Path, make_front: MakeFront
) -> None:
    image = make_image([make_layer({"big": os.urandom(6_000_000)}),
                        make_layer({"small": b"x" * 1000})])
    with Pusher(registry.url) as pusher:
        pusher.push_image("kill/me", "1", image)
    front = make_front(registry.url)
    front.rate = 1_500_000
    cache = tmp_path / "cache"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tank", "copy", f"{front.host}/kill/me:1",
         f"{second.host}/kill/me:1", "--cache", str(cache), "-q"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not any(
        "/blobs/sha256:" in r.path and r.method == "GET" for r in front.requests
    ):
        time.sleep(0.05)
    time.sleep(0.8)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    front.rate = None
    rerun = tank_cli("copy", f"{front.host}/kill/me:1", f"{second.host}/kill/me:1", "--json",
                     cache=cache)
    assert rerun.returncode == 0, rerun.stderr
    assert json.loads(rerun.stdout)["digest"] == image.manifest_digest
    third = tank_cli("copy", f"{front.host}/kill/me:1", f"{second.host}/kill/me:1", "--json",
                     cache=cache)
    doc = json.loads(third.stdout)
    assert (doc["blobsUploaded"], doc["manifestsPushed"], doc["bytesUploaded"]) == (0, 0, 0)


def test_sync_mirrors_tags_by_pattern_and_a_second_run_transfers_nothing(
    registry: LocalRegistry, second: LocalRegistry, seeded: Seeded, tmp_path: Path
) -> None:
    plan = tmp_path / "mirror.toml"
    plan.write_text(f'''
[[sync]]
source = "{registry.host}/{seeded.repo}"
destination = "{second.host}/synced/sample"
tags = ["l*", "docker"]
all-platforms = true

[[sync]]
source = "docker://{registry.host}/{seeded.repo}"
destination = "oci:{tmp_path / 'layouts'}"
tags = ["latest"]
''')
    first = sync(plan, cache=tmp_path / "c")
    assert sorted(r.destination.rsplit(":", 1)[1] for r in first) == [
        "docker", "latest", "latest", "list"]
    assert sorted(Client(second.host).repository("synced/sample").tags()) == [
        "docker", "latest", "list"]
    index = json.loads((tmp_path / "layouts" / seeded.repo / "index.json").read_text())
    assert index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"] == "latest"
    again = sync(plan, cache=tmp_path / "c")
    assert sum(r.blobs_uploaded + r.manifests_pushed + r.bytes_downloaded for r in again) == 0
    cli = tank_cli("sync", str(plan), "--json", cache=tmp_path / "c")
    assert cli.returncode == 0, cli.stderr
    assert len(json.loads(cli.stdout)) == 4


def test_copy_all_tags_tag_and_delete_from_the_command_line(
    registry: LocalRegistry, second: LocalRegistry, seeded: Seeded, tmp_path: Path
) -> None:
    done = tank_cli("copy", "--all-tags", f"{registry.host}/{seeded.repo}",
                    f"{second.host}/all/tags", "--all-platforms", "-q", cache=tmp_path)
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) == 4
    repo = Client(second.host).repository("all/tags")
    assert sorted(repo.tags()) == sorted(seeded.tags)
    tagged = tank_cli("tag", f"{second.host}/all/tags:latest", "stable", cache=None)
    assert tagged.returncode == 0, tagged.stderr
    assert repo.manifest("stable").digest == seeded.tags["latest"]
    deleted = tank_cli("delete", f"{second.host}/all/tags:docker", cache=None)
    assert deleted.returncode == 0, deleted.stderr
    assert seeded.tags["docker"] in deleted.stdout
    assert "docker" not in repo.tags()
    with LocalRegistry(delete=False) as locked:
        copy(f"{registry.host}/{seeded.repo}:latest", f"{locked.host}/keep/it:1",
             cache=tmp_path)
        refused = tank_cli("delete", f"{locked.host}/keep/it:1", cache=None)
        assert refused.returncode == 1
        assert "deletion disabled" in refused.stderr


def test_a_blob_corrupted_on_the_way_is_never_pushed_and_the_copy_recovers(
    registry: LocalRegistry, second: LocalRegistry, tmp_path: Path, make_front: MakeFront
) -> None:
    image = make_image([make_layer({"data": os.urandom(5_000_000)})])
    with Pusher(registry.url) as pusher:
        pusher.push_image("tee/corrupt", "1", image)
    front = make_front(registry.url)
    flipped: list[str] = []

    def once(rec: Recorded) -> bool:
        path = rec.path
        if "/blobs/" in path and image.layers[0].digest in path and not flipped:
            flipped.append(path)
            return True
        return False

    front.corrupt = once
    result = copy(f"{front.host}/tee/corrupt:1", f"{second.host}/tee/corrupt:1",
                  cache=tmp_path / "c")
    assert flipped  # the first download of the layer was corrupted (and teed to the upload)
    assert result.digest == image.manifest_digest
    dest = Client(second.host).repository("tee/corrupt")
    assert dest.blob(image.layers[0].digest) == image.layers[0].data


def test_archives_skopeo_wrote_are_pushed_and_local_copies_are_read_back(
    registry: LocalRegistry, second: LocalRegistry, seeded: Seeded, tmp_path: Path, policy: str
) -> None:
    archive = tmp_path / "sk.tar"
    ok("skopeo", "--policy", policy, "copy", "--src-tls-verify=false",
       f"docker://{registry.host}/{seeded.repo}:docker", f"docker-archive:{archive}:sk:v1")
    result = copy(f"docker-archive:{archive}:sk:v1", f"{second.host}/from/skopeo:v1",
                  cache=tmp_path / "c")
    doc = Client(second.host).repository("from/skopeo").manifest("v1").json
    assert doc["config"]["digest"] == seeded.docker.config.digest
    assert result.blobs_uploaded >= 1
    # a layout to a docker-archive, locally, read back by skopeo
    copy(f"{registry.host}/{seeded.repo}:latest", f"oci:{tmp_path / 'l'}:v1",
         cache=tmp_path / "c")
    copy(f"oci:{tmp_path / 'l'}:v1", f"docker-archive:{tmp_path / 'out.tar'}:local/app:v1",
         cache=tmp_path / "c")
    ok("skopeo", "--policy", policy, "copy", f"docker-archive:{tmp_path / 'out.tar'}",
       f"oci:{tmp_path / 'back'}:x")
    copy(f"oci:{tmp_path / 'l'}:v1", f"oci-archive:{tmp_path / 'o.tar'}:v2",
         cache=tmp_path / "c")
    ok("skopeo", "--policy", policy, "inspect", f"oci-archive:{tmp_path / 'o.tar'}:v2")
