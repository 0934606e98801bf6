"""OCI artifacts: tank pushes what oras-py pulls, tank pulls what oras-py pushed, and a title is
an untrusted path (no ``..``, no absolute path, no symlink out, no silent overwrite)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tank._artifact import pull_artifact, push_artifact
from tank.digest import compute
from tank.errors import UnsafeEntry
from tank.registry import Client
from tank.testing.registry import LocalRegistry


def oras_client(host: str) -> object:
    import oras.client

    return oras.client.OrasClient(hostname=host, insecure=True)


def test_tank_pushes_what_oras_py_pulls(
    registry: LocalRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = tmp_path / "in"
    files.mkdir()
    (files / "notes.md").write_text("# hello\n")
    (files / "data.bin").write_bytes(os.urandom(3000))
    ref = f"{registry.host}/art/facts:v1"
    result = push_artifact(ref, [files / "notes.md", f"{files / 'data.bin'}:application/x-bin"],
                           artifact_type="application/x-tank-test",
                           annotations={"purpose": "test"})
    doc = Client(registry.host).repository("art/facts").manifest("v1").json
    assert doc["artifactType"] == "application/x-tank-test"
    assert doc["config"]["mediaType"] == "application/vnd.oci.empty.v1+json"
    assert doc["config"]["digest"] == compute(b"{}")
    assert [layer["annotations"]["org.opencontainers.image.title"] for layer in doc["layers"]
            ] == ["notes.md", "data.bin"]
    assert doc["layers"][1]["mediaType"] == "application/x-bin"
    assert doc["annotations"] == {"purpose": "test"}
    assert result.digest == Client(registry.host).repository("art/facts").manifest("v1").digest
    out = tmp_path / "oras-out"
    monkeypatch.chdir(tmp_path)
    oras_client(registry.host).pull(target=ref, outdir=str(out))  # type: ignore[attr-defined]
    assert (out / "notes.md").read_text() == "# hello\n"
    assert (out / "data.bin").read_bytes() == (files / "data.bin").read_bytes()


def test_tank_pulls_what_oras_py_pushed(
    registry: LocalRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("report.txt").write_text("all green\n")
    ref = f"{registry.host}/art/oras:v1"
    oras_client(registry.host).push(target=ref, files=["report.txt"])  # type: ignore[attr-defined]
    out = tmp_path / "tank-out"
    result = pull_artifact(ref, out, cache=tmp_path / "cache")
    assert (out / "report.txt").read_text() == "all green\n"
    assert [f[0] for f in result.files] == ["report.txt"]
    with pytest.raises(UnsafeEntry, match="exists"):
        pull_artifact(ref, out, cache=tmp_path / "cache")
    (out / "report.txt").write_text("changed")
    pull_artifact(ref, out, overwrite=True, cache=tmp_path / "cache")
    assert (out / "report.txt").read_text() == "all green\n"


def test_a_directory_round_trips_packed_as_oras_packs_it(
    registry: LocalRegistry, tmp_path: Path
) -> None:
    site = tmp_path / "site"
    (site / "css").mkdir(parents=True)
    (site / "index.html").write_text("<h1>hi</h1>")
    (site / "css" / "a.css").write_text("h1{}")
    ref = f"{registry.host}/art/site:v1"
    first = push_artifact(ref, [site])
    again = push_artifact(ref, [site])
    assert first.digest == again.digest  # packed deterministically
    layer = Client(registry.host).repository("art/site").manifest("v1").json["layers"][0]
    assert layer["annotations"]["io.deis.oras.content.unpack"] == "true"
    out = tmp_path / "out"
    pull_artifact(ref, out, cache=tmp_path / "cache")
    assert (out / "site" / "css" / "a.css").read_text() == "h1{}"


@pytest.mark.parametrize("title", ["../escape.txt", "/etc/passwd-copy", "a/../../b", "link/x"])
def test_a_title_never_reaches_outside_the_directory(
    registry: LocalRegistry, tmp_path: Path, title: str
) -> None:
    repo = Client(registry.host).repository("art/hostile")
    blob = repo.upload_blob(b"payload")
    empty = repo.upload_blob(b"{}")
    doc = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
           "artifactType": "application/x-evil",
           "config": {"mediaType": "application/vnd.oci.empty.v1+json",
                      "digest": empty.digest, "size": 2},
           "layers": [{"mediaType": "application/octet-stream", "digest": blob.digest,
                       "size": blob.size,
                       "annotations": {"org.opencontainers.image.title": title}}]}
    repo.put_manifest("evil", json.dumps(doc).encode(), doc["mediaType"])  # type: ignore[arg-type]
    out = tmp_path / "out"
    out.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (out / "link").symlink_to(outside)
    with pytest.raises(UnsafeEntry):
        pull_artifact(f"{registry.host}/art/hostile:evil", out, cache=tmp_path / "c")
    assert not (tmp_path / "escape.txt").exists()
    assert not list(outside.iterdir())


def test_the_artifact_commands(registry: LocalRegistry, tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("A")
    ref = f"{registry.host}/art/cli:v1"

    def tank(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "tank", *args], capture_output=True,
                              text=True, timeout=60, check=False, cwd=tmp_path)

    pushed = tank("artifact", "push", ref, "a.txt:text/plain", "--annotation", "k=v", "--json")
    assert pushed.returncode == 0, pushed.stderr
    digest = json.loads(pushed.stdout)["digest"]
    pulled = tank("artifact", "pull", ref, "-o", "got", "--cache", str(tmp_path / "c"))
    assert pulled.returncode == 0, pulled.stderr
    assert digest in pulled.stdout
    assert (tmp_path / "got" / "a.txt").read_text() == "A"
