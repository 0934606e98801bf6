"""`tank inspect`, `tank digest`, `tank blob`, errors, help and completion, against the real
registry (and the library's tank.inspect and tank.resolve_digest)."""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tank._inspect import inspect, resolve_digest
from tank.errors import NotFound, PlatformNotFound
from tank.testing.fronts import MakeFront, Recorded, Response
from tank.testing.images import Image, Pusher, make_image, make_layer, random_bytes_stream
from tank.testing.registry import LocalRegistry
from tank.testing.seed import Seeded
from tank.testing.tls import LocalCA
from tank.testing.tokenserver import TokenServer

IMAGE_KEYS = {
    "reference", "kind", "digest", "mediaType", "size", "indexDigest", "platform", "created",
    "config", "entrypoint", "cmd", "env", "user", "workingDir", "exposedPorts", "labels",
    "layers", "totalSize",
}
INDEX_KEYS = {"reference", "kind", "digest", "mediaType", "size", "platforms"}
ENTRY_KEYS = {"platform", "digest", "mediaType", "size", "imageSize", "attestation", "annotations"}
LAYER_KEYS = {"digest", "mediaType", "size", "createdBy", "annotations"}


def tank_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tank", *args], capture_output=True, text=True, timeout=120,
        env={**os.environ, **(env or {})},
    )


def tank_bytes(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "tank", *args], capture_output=True, timeout=120,
    )


@pytest.fixture(scope="module")
def rich(registry: LocalRegistry) -> tuple[Image, Image]:
    """Two images with a full config: ``library/rich:v1`` (history lines up, an ENV step with
    ``empty_layer``) and ``library/rich:odd`` (history does not line up with the layers)."""
    layers = [make_layer({"etc/base": b"base\n"}), make_layer({"bin/app": b"#!/bin/sh\n"})]
    run = {
        "Entrypoint": ["/bin/app"], "Cmd": ["--serve"], "Env": ["PATH=/bin", "MODE=prod"],
        "User": "1000:1000", "WorkingDir": "/srv", "Labels": {"org.example.team": "tank"},
        "ExposedPorts": {"8080/tcp": {}, "53/udp": {}},
    }
    history = [
        {"created_by": "ADD base /"},
        {"created_by": "ENV MODE=prod", "empty_layer": True},
        {"created_by": "COPY app /bin/app"},
    ]
    good = make_image(layers, config_extra={"config": run, "history": history})
    odd = make_image(layers, config_extra={"config": run, "history": history[:1]})
    with Pusher(registry.url) as pusher:
        pusher.push_image("library/rich", "v1", good)
        pusher.push_image("library/rich", "odd", odd)
    return good, odd


# -- the library ---------------------------------------------------------------------------------


def test_inspect_an_index_lists_its_platforms(registry: LocalRegistry, seeded: Seeded) -> None:
    info = inspect(f"{registry.host}/{seeded.repo}:multi", children=True)
    assert info.kind == "index"
    assert info.digest == seeded.multi.manifest_digest
    assert info.raw == seeded.multi.manifest
    children = list(seeded.multi.children())
    assert [e.digest for e in info.platforms] == [c.manifest_digest for c in children]
    assert [e.attestation for e in info.platforms] == [False] * 3 + [True] * 3
    assert [str(e.platform) for e in info.platforms[:3]] == [
        "linux/amd64", "linux/arm64/v8", "linux/arm/v7",
    ]
    for entry, child in zip(info.platforms, children, strict=True):
        assert entry.size == len(child.manifest)
        assert entry.image_size == sum(b.size for b in child.blobs())
    # tank.inspect is callable, whether or not the module tank.inspect was imported first
    package = importlib.import_module("tank")
    assert package.inspect(f"{registry.host}/{seeded.repo}:multi").digest == info.digest


@pytest.mark.parametrize("tag", ["multi", "list"])
def test_inspect_a_platform_of_an_index(tag: str, registry: LocalRegistry, seeded: Seeded) -> None:
    index = seeded.multi if tag == "multi" else seeded.list
    child = index.image_for("linux", "arm64", "v8")
    info = inspect(f"{registry.host}/{seeded.repo}:{tag}", platform="linux/arm64")
    assert info.kind == "image"
    assert info.digest == child.manifest_digest
    assert info.index_digest == index.manifest_digest
    assert info.media_type == child.media_type
    assert info.raw == child.manifest
    assert str(info.platform) == "linux/arm64/v8"
    assert info.config_raw == child.config.data
    assert [layer.digest for layer in info.layers] == [b.digest for b in child.layers]
    assert [layer.created_by for layer in info.layers] == [
        f"tank.testing layer {i}" for i in range(3)
    ]
    assert info.cmd == ["/bin/sh", "/bin/hello"]
    assert info.total_size == sum(b.size for b in child.blobs())
    with pytest.raises(PlatformNotFound) as exc:
        inspect(f"{registry.host}/{seeded.repo}:{tag}", platform="linux/s390x")
    assert set(exc.value.available) == {"linux/amd64", "linux/arm64/v8", "linux/arm/v7"}


def test_inspect_reads_the_whole_config(
    registry: LocalRegistry, rich: tuple[Image, Image]
) -> None:
    good, odd = rich
    info = inspect(f"{registry.host}/library/rich:v1")
    assert info.digest == good.manifest_digest
    assert info.index_digest is None
    assert info.entrypoint == ["/bin/app"]
    assert info.cmd == ["--serve"]
    assert info.env == ["PATH=/bin", "MODE=prod"]
    assert info.user == "1000:1000"
    assert info.working_dir == "/srv"
    assert info.exposed_ports == ["53/udp", "8080/tcp"]
    assert info.labels == {"org.example.team": "tank"}
    assert info.created == "2023-11-14T22:13:20Z"
    # the ENV step made no layer: history lines up once it is skipped
    assert [layer.created_by for layer in info.layers] == ["ADD base /", "COPY app /bin/app"]
    lopsided = inspect(f"{registry.host}/library/rich:odd")
    assert lopsided.digest == odd.manifest_digest
    assert [layer.created_by for layer in lopsided.layers] == [None, None]


def test_inspect_a_missing_tag(registry: LocalRegistry, seeded: Seeded) -> None:
    with pytest.raises(NotFound) as exc:
        inspect(f"{registry.host}/{seeded.repo}:nope")
    assert exc.value.codes == ("MANIFEST_UNKNOWN",)


def test_resolve_digest_is_one_head(
    registry: LocalRegistry, make_front: MakeFront, seeded: Seeded
) -> None:
    front = make_front(registry.url)
    ref = f"{front.host}/{seeded.repo}:multi"
    assert resolve_digest(ref) == seeded.multi.manifest_digest
    assert [(r.method, r.path) for r in front.requests] == [
        ("HEAD", f"/v2/{seeded.repo}/manifests/multi"),
    ]
    front.reset()
    child = seeded.multi.image_for("linux", "arm", "v7")
    assert resolve_digest(ref, platform="linux/arm/v7") == child.manifest_digest
    assert [r.method for r in front.requests] == ["GET"]


# -- tank digest -------------------------------------------------------------------------------


def test_cli_digest_sends_one_head_and_no_get(
    registry: LocalRegistry, make_front: MakeFront, seeded: Seeded
) -> None:
    front = make_front(registry.url)
    out = tank_cli("digest", f"{front.host}/{seeded.repo}:list")
    assert out.returncode == 0, out.stderr
    assert out.stdout == seeded.list.manifest_digest + "\n"
    assert [(r.method, r.path) for r in front.requests] == [
        ("HEAD", f"/v2/{seeded.repo}/manifests/list"),
    ]
    assert "application/vnd.oci.image.index.v1+json" in front.requests[0].headers["accept"]


def test_cli_digest_falls_back_to_get_without_the_header(
    registry: LocalRegistry, make_front: MakeFront, seeded: Seeded
) -> None:
    front = make_front(registry.url)
    front.strip_headers = {"Docker-Content-Digest"}
    out = tank_cli("digest", f"{front.host}/{seeded.repo}:docker")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == seeded.docker.manifest_digest
    assert [r.method for r in front.requests] == ["HEAD", "GET"]


def test_cli_digest_of_a_platform(
    registry: LocalRegistry, make_front: MakeFront, seeded: Seeded
) -> None:
    front = make_front(registry.url)
    child = seeded.list.image_for("linux", "arm64", "v8")
    out = tank_cli("digest", f"{front.host}/{seeded.repo}:list", "--platform", "linux/aarch64")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == child.manifest_digest
    assert [r.method for r in front.requests] == ["GET"]
    # a single-platform image is its own answer
    out = tank_cli("digest", f"{registry.host}/{seeded.repo}:latest", "--platform", "linux/amd64")
    assert out.stdout.strip() == seeded.latest.manifest_digest


def test_cli_digest_through_token_auth(
    token_registry: LocalRegistry, token_server: TokenServer, seeded: Seeded
) -> None:
    out = tank_cli("digest", f"{token_registry.host}/{seeded.repo}:multi")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == seeded.multi.manifest_digest
    assert len(token_server.requests) == 1


# -- tank inspect -----------------------------------------------------------------------------


def test_cli_inspect_json_of_an_index(
    registry: LocalRegistry, make_front: MakeFront, seeded: Seeded
) -> None:
    front = make_front(registry.url)
    out = tank_cli("inspect", f"{front.host}/{seeded.repo}:multi", "--json")
    assert out.returncode == 0, out.stderr
    assert [r.method for r in front.requests] == ["GET"]  # one manifest: rate-limit friendly
    plain = json.loads(out.stdout)
    assert [e["imageSize"] for e in plain["platforms"]] == [None] * 6
    assert [e["size"] for e in plain["platforms"]] == [
        len(c.manifest) for c in seeded.multi.children()
    ]
    out = tank_cli("inspect", f"{registry.host}/{seeded.repo}:multi", "--json", "--sizes")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert set(doc) == INDEX_KEYS
    assert doc["kind"] == "index"
    assert doc["digest"] == seeded.multi.manifest_digest
    assert doc["mediaType"] == "application/vnd.oci.image.index.v1+json"
    assert doc["size"] == len(seeded.multi.manifest)
    for entry in doc["platforms"]:
        assert set(entry) == ENTRY_KEYS
    assert [e["platform"] for e in doc["platforms"] if not e["attestation"]] == [
        "linux/amd64", "linux/arm64/v8", "linux/arm/v7",
    ]
    amd64 = seeded.multi.image_for("linux", "amd64")
    assert doc["platforms"][0]["digest"] == amd64.manifest_digest
    assert doc["platforms"][0]["imageSize"] == sum(b.size for b in amd64.blobs())


def test_cli_inspect_json_of_an_image(
    registry: LocalRegistry, rich: tuple[Image, Image], seeded: Seeded
) -> None:
    good, _ = rich
    out = tank_cli("inspect", f"{registry.host}/library/rich:v1", "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert set(doc) == IMAGE_KEYS
    assert doc["kind"] == "image"
    assert doc["digest"] == good.manifest_digest
    assert doc["indexDigest"] is None
    assert doc["platform"] == "linux/amd64"
    assert doc["config"] == good.config.descriptor()
    assert (doc["entrypoint"], doc["cmd"], doc["user"], doc["workingDir"]) == (
        ["/bin/app"], ["--serve"], "1000:1000", "/srv",
    )
    assert doc["env"] == ["PATH=/bin", "MODE=prod"]
    assert doc["exposedPorts"] == ["53/udp", "8080/tcp"]
    assert doc["labels"] == {"org.example.team": "tank"}
    for layer in doc["layers"]:
        assert set(layer) == LAYER_KEYS
    assert [layer["createdBy"] for layer in doc["layers"]] == ["ADD base /", "COPY app /bin/app"]
    assert doc["totalSize"] == sum(b.size for b in good.blobs())

    child = seeded.multi.image_for("linux", "arm", "v7")
    out = tank_cli("inspect", f"{registry.host}/{seeded.repo}:multi", "--platform",
                   "linux/armhf", "--json")
    doc = json.loads(out.stdout)
    assert (doc["digest"], doc["indexDigest"], doc["platform"]) == (
        child.manifest_digest, seeded.multi.manifest_digest, "linux/arm/v7",
    )


def test_cli_inspect_raw_and_config_bytes(registry: LocalRegistry, seeded: Seeded) -> None:
    ref = f"{registry.host}/{seeded.repo}"
    raw = tank_bytes("inspect", f"{ref}:multi", "--raw")
    assert raw.returncode == 0, raw.stderr
    assert raw.stdout == seeded.multi.manifest
    assert "sha256:" + hashlib.sha256(raw.stdout).hexdigest() == seeded.multi.manifest_digest
    child = seeded.list.image_for("linux", "arm64", "v8")
    raw = tank_bytes("inspect", f"{ref}:list", "--platform", "linux/arm64", "--raw")
    assert raw.stdout == child.manifest
    config = tank_bytes("inspect", f"{ref}:list", "--platform", "linux/arm64", "--config")
    assert config.returncode == 0, config.stderr
    assert config.stdout == child.config.data
    config = tank_bytes("inspect", f"{ref}:docker", "--config")
    assert config.stdout == seeded.docker.config.data
    both = tank_cli("inspect", f"{ref}:docker", "--config", "--json")
    assert both.returncode == 2


def test_cli_inspect_readable(registry: LocalRegistry, rich: tuple[Image, Image]) -> None:
    good, _ = rich
    out = tank_cli("inspect", f"{registry.host}/library/rich:v1")
    assert out.returncode == 0, out.stderr
    text = out.stdout
    for needle in (good.manifest_digest, "linux/amd64", '["/bin/app"]', "1000:1000", "/srv",
                   "53/udp, 8080/tcp", "org.example.team=tank", "MODE=prod", "COPY app /bin/app",
                   good.layers[1].digest):
        assert needle in text, needle


def test_cli_inspect_escapes_control_characters(
    registry: LocalRegistry, make_front: MakeFront, seeded: Seeded
) -> None:
    image = make_image([make_layer({"x": b"x"})],
                       config_extra={"config": {"Labels": {"evil": "\x1b[2Jgone"}}})
    with Pusher(registry.url) as pusher:
        pusher.push_image("library/evil", "v1", image)
    out = tank_cli("inspect", f"{registry.host}/library/evil:v1")
    assert out.returncode == 0, out.stderr
    assert "\x1b" not in out.stdout
    assert "evil=\\x1b[2Jgone" in out.stdout


# -- errors, with what to try --------------------------------------------------------------------


def test_errors_say_what_to_try(
    registry: LocalRegistry, make_front: MakeFront, seeded: Seeded
) -> None:
    ref = f"{registry.host}/{seeded.repo}"
    wrong = tank_cli("inspect", f"{ref}:multi", "--platform", "linux/s390x")
    assert wrong.returncode == 3
    assert wrong.stdout == ""
    [line] = wrong.stderr.splitlines()
    assert "linux/amd64, linux/arm64/v8, linux/arm/v7" in line
    assert "--platform" in line

    missing = tank_cli("digest", f"{ref}:nope")
    assert missing.returncode == 3
    [line] = missing.stderr.splitlines()
    assert "check the repository name and the tag" in line
    assert f"tank tags {ref}" in line

    front = make_front(registry.url)
    front.respond = lambda r: (
        401, {"WWW-Authenticate": 'Bearer realm="http://127.0.0.1:1/token",service="x"'}, b"",
    ) if "/manifests/" in r.path else None
    denied = tank_cli("inspect", f"{front.host}/{seeded.repo}:latest", "--retries", "0")
    assert denied.returncode in (4, 6), denied.stderr
    assert len(denied.stderr.splitlines()) == 1

    front.respond = lambda r: (
        (401, {"WWW-Authenticate": 'Basic realm="private"'}, b"") if "/manifests/" in r.path
        else None
    )
    basic = tank_cli("inspect", f"{front.host}/{seeded.repo}:latest")
    assert basic.returncode == 4
    assert f"tank login {front.host}" in basic.stderr
    assert len(basic.stderr.splitlines()) == 1

    bad = tank_cli("inspect", "Not A Reference")
    assert bad.returncode == 2
    assert "[REGISTRY/]REPOSITORY[:TAG][@DIGEST]" in bad.stderr

    debug = tank_cli("--debug", "inspect", f"{ref}:nope")
    assert debug.returncode == 3
    assert "Traceback (most recent call last)" in debug.stderr
    assert "status=404" in debug.stderr
    assert "MANIFEST_UNKNOWN" in debug.stderr


def test_tls_errors_point_at_ca_file(ca: LocalCA, seeded: Seeded) -> None:
    from tank.testing.seed import seed_registry

    cert, key = ca.issue("127.0.0.1")
    with LocalRegistry(tls=(cert, key)) as reg:
        with Pusher(reg.url, ca_file=str(ca.ca_file)) as pusher:
            seed_registry(pusher, seeded)
        ref = f"{reg.host}/{seeded.repo}:latest"
        untrusted = tank_cli("digest", ref, "--retries", "0")
        assert untrusted.returncode == 6, untrusted.stderr
        assert "--ca-file" in untrusted.stderr
        assert len(untrusted.stderr.splitlines()) == 1
        trusted = tank_cli("digest", ref, "--ca-file", str(ca.ca_file))
        assert trusted.returncode == 0, trusted.stderr
        assert trusted.stdout.strip() == seeded.latest.manifest_digest


# -- tank blob ---------------------------------------------------------------------------------


def test_cli_blob_to_stdout_and_to_a_file(
    registry: LocalRegistry, seeded: Seeded, tmp_path: Path
) -> None:
    layer = seeded.latest.layers[2]
    out = tank_bytes("blob", f"{registry.host}/{seeded.repo}:latest", layer.digest)
    assert out.returncode == 0, out.stderr
    assert out.stdout == layer.data
    dest = tmp_path / "layer.tar.gz"
    out = tank_bytes("blob", f"{registry.host}/{seeded.repo}", layer.digest, "-o", str(dest))
    assert out.returncode == 0, out.stderr
    assert out.stdout == b""
    assert dest.read_bytes() == layer.data
    missing = tank_cli("blob", f"{registry.host}/{seeded.repo}", "sha256:" + "0" * 64)
    assert missing.returncode == 3
    assert "check the digest" in missing.stderr
    invalid = tank_cli("blob", f"{registry.host}/{seeded.repo}", "sha256:xyz")
    assert invalid.returncode == 2


def test_cli_blob_refuses_corrupt_bytes(
    registry: LocalRegistry, make_front: MakeFront, seeded: Seeded, tmp_path: Path
) -> None:
    front = make_front(registry.url)
    front.corrupt = lambda r: "/blobs/" in r.path
    layer = seeded.latest.layers[2]
    dest = tmp_path / "layer.tar.gz"
    out = tank_cli("blob", f"{front.host}/{seeded.repo}", layer.digest, "-o", str(dest))
    assert out.returncode == 5
    assert "digest mismatch" in out.stderr
    assert not dest.exists()
    assert list(tmp_path.iterdir()) == []
    streamed = tank_bytes("blob", f"{front.host}/{seeded.repo}", layer.digest)
    assert streamed.returncode == 5


def test_cli_blob_to_stdout_resumes_a_cut_download(
    registry: LocalRegistry, make_front: MakeFront
) -> None:
    data = b"".join(random_bytes_stream(2_500_000, seed="blob-stdout"))
    image = make_image([make_layer({"opt/data.bin": data})])
    with Pusher(registry.url) as pusher:
        pusher.push_image("library/cut", "v1", image)
    layer = image.layers[0]
    calls: list[str | None] = []
    lock = threading.Lock()

    def cut_once(r: Recorded) -> Response | None:
        if r.method != "GET" or not r.path.endswith(layer.digest):
            return None
        with lock:
            calls.append(r.headers.get("range"))
            if len(calls) == 1:
                return (200, {"Content-Length": str(layer.size), "Connection": "close"},
                        layer.data[:1_000_000])
        return None

    front = make_front(registry.url)
    front.respond = cut_once
    out = tank_bytes("blob", f"{front.host}/library/cut", layer.digest)
    assert out.returncode == 0, out.stderr
    assert out.stdout == layer.data
    assert calls == [None, "bytes=1000000-"]


# -- help and completion -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [[], ["pull"], ["inspect"], ["digest"], ["tags"], ["blob"], ["cache"], ["cache", "ls"],
     ["cache", "du"], ["cache", "prune"], ["cache", "verify"], ["completion"]],
)
def test_help_has_examples(command: list[str]) -> None:
    out = tank_cli(*command, "--help")
    assert out.returncode == 0, out.stderr
    assert "Examples:" in out.stdout
    assert re.search(r"\n +tank ", out.stdout.split("Examples:", 1)[1])


@pytest.mark.parametrize(("shell", "needle"), [
    ("bash", "_TANK_COMPLETE=bash_complete"),
    ("zsh", "_TANK_COMPLETE=zsh_complete"),
    ("fish", "_TANK_COMPLETE=fish_complete"),
])
def test_completion_scripts(shell: str, needle: str) -> None:
    out = tank_cli("completion", shell)
    assert out.returncode == 0, out.stderr
    assert needle in out.stdout
    assert "tank" in out.stdout


def test_completion_completes(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("tank")
    env = {**os.environ, "_TANK_COMPLETE": "bash_complete", "COMP_WORDS": "tank ca",
           "COMP_CWORD": "1"}
    out = subprocess.run([str(script)], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "plain,cache" in out.stdout.splitlines()
    env.update(COMP_WORDS="tank inspect x --platform linux/arm", COMP_CWORD="4")
    out = subprocess.run([str(script)], capture_output=True, text=True, env=env, timeout=60)
    assert {"plain,linux/arm64", "plain,linux/arm/v7"} <= set(out.stdout.splitlines())
    env.update(COMP_WORDS="tank cache p", COMP_CWORD="2")
    out = subprocess.run([str(script)], capture_output=True, text=True, env=env, timeout=60)
    assert "plain,prune" in out.stdout.splitlines()
