"""The registry's write side (tank.Repository): uploads, resumption, quirks, mounts, manifests.

Against the real registry (open, token auth, deletion on and off) and through the recording,
fault-injecting front: a PATCH reset mid-body resumes at the offset the registry reports, a
relative Location and ``Range: bytes=0-N`` are followed, a registry that refuses PATCH gets a
monolithic PUT, a 401 in the middle of an upload renews the token and resumes.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest
import urllib3

from tank.digest import compute
from tank.errors import AuthError, DigestMismatch, RegistryError
from tank.registry import Client, Repository
from tank.registry.uploads import MONOLITHIC_MAX
from tank.testing.fronts import MakeFront, Recorded, Response
from tank.testing.registry import LocalRegistry
from tank.testing.tokenserver import TokenServer

BIG = MONOLITHIC_MAX + 3 * 1024 * 1024 + 17


def repo_at(url_host: str, name: str, **kw: object) -> Repository:
    return Client(url_host, **kw).repository(name)  # type: ignore[arg-type]


def patches(requests: list[Recorded]) -> list[Recorded]:
    return [r for r in requests if r.method == "PATCH"]


def test_blobs_of_every_kind_of_source_go_up_verified(
    registry: LocalRegistry, tmp_path: Path
) -> None:
    repo = repo_at(registry.host, "push/sources")
    small = os.urandom(1000)
    path = tmp_path / "big.bin"
    path.write_bytes(os.urandom(BIG))

    class Pipe(io.RawIOBase):  # readable, not seekable: spooled first
        def __init__(self, data: bytes) -> None:
            self.stream = io.BytesIO(data)

        def readable(self) -> bool:
            return True

        def readinto(self, b: bytearray) -> int:  # type: ignore[override]
            data = self.stream.read(len(b))
            b[: len(data)] = data
            return len(data)

    piped = os.urandom(MONOLITHIC_MAX + 1)
    for source, data in ((small, small), (path, path.read_bytes()), (Pipe(piped), piped)):
        desc = repo.upload_blob(source)  # type: ignore[arg-type]
        assert desc.digest == compute(data)
        assert desc.size == len(data)
        assert repo.blob_exists(desc.digest) == len(data)
        assert repo.blob(desc.digest) == data
    assert repo.blob_exists(compute(b"never pushed")) is None


def test_a_source_that_is_not_its_digest_is_never_committed(registry: LocalRegistry) -> None:
    repo = repo_at(registry.host, "push/mismatch")
    claimed = compute(b"something else")
    for data in (b"small", os.urandom(BIG)):
        with pytest.raises(DigestMismatch):
            repo.upload_blob(data, digest=claimed)
    assert repo.blob_exists(claimed) is None


def test_chunks_are_never_smaller_than_the_registrys_minimum(
    registry: LocalRegistry, make_front: MakeFront
) -> None:
    front = make_front(registry.url)
    minimum = 3 * 1024 * 1024

    def announce(rec: Recorded) -> Response | None:
        if rec.method != "POST":
            return None
        answer = urllib3.request("POST", registry.url + rec.path, redirect=False)
        return 202, {"Location": answer.headers["Location"].replace(registry.url, ""),
                     "OCI-Chunk-Min-Length": str(minimum), "Range": "0-0"}, b""

    front.respond = announce
    data = os.urandom(BIG)
    desc = repo_at(front.host, "push/chunks").upload_blob(data, chunk_size=1024 * 1024)
    assert desc.digest == compute(data)
    sizes = [int(p.headers["content-length"]) for p in patches(front.requests)]
    assert sizes == [minimum, minimum, len(data) - 2 * minimum]
    ranges = [p.headers["content-range"] for p in patches(front.requests)]
    assert ranges[1] == f"{minimum}-{2 * minimum - 1}"


def test_a_patch_reset_mid_body_resumes_at_the_offset_the_registry_reports(
    registry: LocalRegistry, make_front: MakeFront
) -> None:
    front = make_front(registry.url)
    half = BIG // 2
    cuts: list[int] = []

    def cut(rec: Recorded) -> int | None:
        if rec.method == "PATCH" and not cuts:
            cuts.append(half)
            return half
        return None

    front.cut_upload = cut
    data = os.urandom(BIG)
    desc = repo_at(front.host, "push/resume").upload_blob(data)
    assert desc.digest == compute(data)
    methods = [(r.method, r.headers.get("content-range")) for r in front.requests
               if r.method in ("PATCH", "GET", "PUT")]
    assert methods[:3] == [("PATCH", f"0-{BIG - 1}"), ("GET", None),
                           ("PATCH", f"{half}-{BIG - 1}")]
    assert repo_at(registry.host, "push/resume").blob(desc.digest) == data


def test_a_relative_location_and_a_bytes_range_are_followed(
    registry: LocalRegistry, make_front: MakeFront
) -> None:
    front = make_front(registry.url)
    front.relative_locations = True
    front.range_prefix = "bytes="
    done: list[bool] = []

    def cut(rec: Recorded) -> int | None:
        if rec.method == "PATCH" and not done:
            done.append(True)
            return 1024 * 1024
        return None

    front.cut_upload = cut
    data = os.urandom(BIG)
    desc = repo_at(front.host, "push/quirks").upload_blob(data)
    assert desc.digest == compute(data)
    resumed = patches(front.requests)[-1]
    assert resumed.headers["content-range"] == f"{1024 * 1024}-{BIG - 1}"
    # every request after the POST went to the relative Location, through the front
    assert all(r.path.startswith("/v2/push/quirks/blobs/uploads/") for r in front.requests
               if r.method in ("PATCH", "GET", "PUT"))


def test_a_registry_that_refuses_chunks_gets_one_monolithic_put(
    registry: LocalRegistry, make_front: MakeFront
) -> None:
    front = make_front(registry.url)
    front.respond = lambda rec: (
        (405, {"Content-Type": "application/json"},
         b'{"errors":[{"code":"UNSUPPORTED","message":"chunked uploads"}]}')
        if rec.method == "PATCH" else None
    )
    repo = repo_at(front.host, "push/monolithic")
    first, second = os.urandom(BIG), os.urandom(BIG + 1)
    for data in (first, second):
        desc = repo.upload_blob(data)
        assert desc.digest == compute(data)
    puts = [r for r in front.requests if r.method == "PUT"]
    assert [int(r.headers["content-length"]) for r in puts] == [len(first), len(second)]
    assert len(patches(front.requests)) == 1  # refused once, then remembered


def test_a_401_in_the_middle_of_an_upload_renews_the_token_and_resumes(
    token_registry: LocalRegistry, token_server: TokenServer, make_front: MakeFront
) -> None:
    front = make_front(token_registry.url)
    refused: list[bool] = []
    challenge = (f'Bearer realm="{token_server.realm}",service="{token_server.service}",'
                 'scope="repository:push/renew:pull,push",error="invalid_token"')

    def expire(rec: Recorded) -> Response | None:
        if rec.method == "PATCH" and not refused:
            refused.append(True)
            return 401, {"WWW-Authenticate": challenge, "Content-Type": "application/json"}, (
                b'{"errors":[{"code":"UNAUTHORIZED","message":"token expired"}]}')
        return None

    front.respond = expire
    repo = repo_at(front.host, "push/renew", credentials=("alice", "wonderland"))
    data = os.urandom(BIG)
    desc = repo.upload_blob(data)
    assert desc.digest == compute(data)
    tokens = [r for r in token_server.requests if r.path == "/token"]
    assert len(tokens) >= 2  # the first token, and the one after the 401
    assert [r.method for r in front.requests if r.method == "PATCH"] == ["PATCH", "PATCH"]


def test_a_mount_is_used_when_the_blob_is_in_a_sibling_repository(
    token_registry: LocalRegistry, token_server: TokenServer, make_front: MakeFront
) -> None:
    front = make_front(token_registry.url)
    creds = ("alice", "wonderland")
    data = os.urandom(5000)
    source = repo_at(front.host, "team/base", credentials=creds)
    desc = source.upload_blob(data)
    front.reset()
    token_server.reset()
    target = repo_at(front.host, "team/app", credentials=creds)
    assert target.mount_blob(desc.digest, "team/base") is True
    assert target.blob_exists(desc.digest) == len(data)
    posts = [r for r in front.requests if r.method == "POST"]  # the first may meet a 401
    assert posts
    assert all(f"mount={desc.digest}" in p.path and "from=team/base" in p.path for p in posts)
    assert not [r for r in front.requests if r.method in ("PATCH", "PUT")]  # nothing uploaded
    scopes = {s for r in token_server.requests for s in r.query.get("scope", [])}
    assert "repository:team/base:pull" in " ".join(scopes)
    assert target.mount_blob(compute(b"absent"), "team/base") is False


def test_manifests_go_up_byte_for_byte_and_tags_and_deletes_follow(
    registry: LocalRegistry,
) -> None:
    repo = repo_at(registry.host, "push/manifests")
    config = repo.upload_blob(b"{}")
    layer = repo.upload_blob(os.urandom(100))
    doc = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                      "digest": config.digest, "size": config.size},
           "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                       "digest": layer.digest, "size": layer.size}]}
    raw = json.dumps(doc, indent=7).encode() + b"\n\n"  # odd spacing: never re-serialised
    digest = repo.put_manifest("v1", raw, doc["mediaType"])  # type: ignore[arg-type]
    assert digest == compute(raw)
    assert repo.manifest("v1").raw == raw
    assert repo.tag(digest, "v2") == digest
    assert sorted(repo.tags()) == ["v1", "v2"]
    with pytest.raises(DigestMismatch):
        repo.put_manifest(str(compute(b"x")), raw, doc["mediaType"])  # type: ignore[arg-type]
    repo.delete_manifest(digest)
    assert repo.tags() == []


def test_deletion_disabled_is_said_in_words(tmp_path: Path) -> None:
    with LocalRegistry(delete=False) as reg:
        repo = repo_at(reg.host, "push/nodelete")
        config = repo.upload_blob(b"{}")
        raw = json.dumps({"schemaVersion": 2,
                          "mediaType": "application/vnd.oci.image.manifest.v1+json",
                          "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                     "digest": config.digest, "size": 2},
                          "layers": []}).encode()
        digest = repo.put_manifest("v1", raw, "application/vnd.oci.image.manifest.v1+json")
        with pytest.raises(RegistryError, match="deletion disabled") as caught:
            repo.delete_manifest(digest)
        assert caught.value.status == 405


def test_a_user_who_may_only_pull_is_refused_naming_the_scope(
    token_registry: LocalRegistry,
) -> None:
    repo = repo_at(token_registry.host, "library/sample", credentials=("bob", "builder"))
    assert repo.tags()  # bob reads
    with pytest.raises(AuthError, match=r"repository:library/sample:pull,push"):
        repo.upload_blob(b"bob was here")
    with pytest.raises(AuthError, match="pull,push"):
        repo.tag(repo.manifest("latest").digest or "", "bobs")
    assert "bobs" not in repo.tags()


def test_htpasswd_registries_take_pushes_with_basic_credentials() -> None:
    with LocalRegistry(htpasswd={"carol": "secret"}) as reg:
        repo = repo_at(reg.host, "push/basic", credentials=("carol", "secret"))
        data = os.urandom(BIG)
        assert repo.upload_blob(data).digest == compute(data)
        with pytest.raises(AuthError):
            repo_at(reg.host, "push/basic").upload_blob(b"anonymous")
