"""Referrers: the OCI 1.1 API (scripted through a front: the CNCF registry here predates it),
the referrers tag schema it falls back to on the real registry, `tank referrers`, and what a
copy must carry (tank.registry.referrers.attachments)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass

import pytest

from support.artifacts import EMPTY, INTOTO, OCI_INDEX, OCI_MANIFEST, SPDX, artifact
from support.cosign import Signer, sign_image
from tank.errors import InvalidManifest, RegistryError
from tank.image import Index, Manifest, parse_manifest
from tank.registry import Client
from tank.registry.referrers import (
    attachments,
    referrer_descriptor,
    referrers_tag,
    signature_tag,
    tag_schema_index,
)
from tank.testing.fronts import MakeFront
from tank.testing.http import Recorded, Response
from tank.testing.images import Pusher, sample_image, sha256_digest
from tank.testing.registry import LocalRegistry


@dataclass(frozen=True)
class Attached:
    host: str
    url: str
    repo: str
    subject: str
    sbom: str
    provenance: str
    stray: str


@pytest.fixture(scope="module")
def attached(registry: LocalRegistry) -> Attached:
    """``refs/app:1`` with an SBOM and a provenance referrer listed under the referrers tag (the
    registry has no referrers API), a cosign signature, and a stray manifest naming another
    subject."""
    image = sample_image()
    repo = "refs/app"
    size = len(image.manifest)
    with Pusher(registry.url) as p:
        p.push_image(repo, "1", image)
        pushed = []
        for kind, body, notes in ((SPDX, b'{"spdxVersion":"SPDX-2.3"}',
                                   {"org.opencontainers.image.created": "2026-01-01T00:00:00Z"}),
                                  (INTOTO, b'{"_type":"https://in-toto.io/Statement/v1"}', None)):
            raw, config, layer = artifact(image.manifest_digest, size, kind, body, notes)
            p.push_blob(repo, config)
            p.push_blob(repo, layer)
            pushed.append(p.push_manifest(repo, sha256_digest(raw), raw, OCI_MANIFEST))
        raw, config, layer = artifact("sha256:" + "b" * 64, 10, SPDX, b"stray")
        p.push_blob(repo, config)
        p.push_blob(repo, layer)
        stray = p.push_manifest(repo, sha256_digest(raw), raw, OCI_MANIFEST)
        docs = []
        for digest in pushed:
            info = Client(registry.host).repository(repo).manifest(digest)
            docs.append(referrer_descriptor(info.document))
        index = tag_schema_index(None, docs)
        p.push_manifest(repo, referrers_tag(image.manifest_digest), index, OCI_INDEX)
        sign_image(p, repo, image.manifest_digest, f"{registry.host}/{repo}", Signer())
    return Attached(registry.host, registry.url, repo, image.manifest_digest, pushed[0],
                    pushed[1], stray)


def test_a_registry_without_the_api_falls_back_to_the_referrers_tag(attached: Attached) -> None:
    repo = Client(attached.host).repository(attached.repo)
    found = repo.referrers(attached.subject)
    assert [str(d.digest) for d in found.manifests] == [attached.sbom, attached.provenance]
    sbom = found.manifests[0]
    assert sbom.artifact_type == SPDX
    assert sbom.annotations == {"org.opencontainers.image.created": "2026-01-01T00:00:00Z"}
    only = repo.referrers(attached.subject, artifact_type=INTOTO)
    assert [str(d.digest) for d in only.manifests] == [attached.provenance]
    none = repo.referrers(attached.provenance)  # no referrers tag: none
    assert isinstance(none, Index)
    assert none.manifests == ()


def test_the_referrers_api_is_asked_first_every_page_followed(
    attached: Attached, make_front: MakeFront
) -> None:
    front = make_front(attached.url)
    repo = Client(front.host).repository(attached.repo)
    base = f"/v2/{attached.repo}/referrers/{attached.subject}"
    page1 = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": attached.sbom, "size": 10, "artifactType": SPDX}]}
    page2 = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": attached.provenance, "size": 11,
         "artifactType": INTOTO}]}

    def respond(rec: Recorded) -> Response | None:
        if rec.path == f"{base}?page=2":
            return 200, {"Content-Type": OCI_INDEX}, json.dumps(page2).encode()
        if rec.path == base or rec.path.startswith(base + "?"):
            return (200, {"Content-Type": OCI_INDEX, "Link": f'<{base}?page=2>; rel="next"'},
                    json.dumps(page1).encode())
        return None

    front.respond = respond
    found = repo.referrers(attached.subject)
    assert [str(d.digest) for d in found.manifests] == [attached.sbom, attached.provenance]
    assert [r.path for r in front.requests] == [base, f"{base}?page=2"]
    assert front.requests[0].headers["accept"] == OCI_INDEX
    front.reset()
    # the filter is asked for, and applied here too (this registry ignores it)
    only = repo.referrers(attached.subject, artifact_type=INTOTO)
    assert [str(d.digest) for d in only.manifests] == [attached.provenance]
    assert front.requests[0].path == f"{base}?artifactType=application%2Fvnd.in-toto%2Bjson"
    assert not [r for r in front.requests if "/manifests/" in r.path]  # no tag fallback


def test_a_referrers_page_on_another_origin_or_not_an_index_is_refused(
    attached: Attached, make_front: MakeFront
) -> None:
    front = make_front(attached.url)
    repo = Client(front.host).repository(attached.repo)
    answers: dict[str, Response] = {
        "origin": (200, {"Content-Type": OCI_INDEX,
                         "Link": '<https://elsewhere.example/v2/x?page=2>; rel="next"'},
                   b'{"schemaVersion":2,"manifests":[]}'),
        "shape": (200, {"Content-Type": OCI_INDEX}, b'{"manifests": {}}'),
        "entry": (200, {"Content-Type": OCI_INDEX}, b'{"manifests": [{"digest": "../x"}]}'),
    }
    for name, answer in answers.items():
        front.respond = lambda rec, answer=answer: answer if "/referrers/" in rec.path else None
        with pytest.raises(RegistryError) as info:
            repo.referrers(attached.subject)
        assert info.value.registry == front.host, name


def test_attachments_lists_what_a_copy_carries_verified(attached: Attached) -> None:
    repo = Client(attached.host).repository(attached.repo)
    items = attachments(repo, attached.subject)
    assert [i.tag for i in items] == [signature_tag(attached.subject), None, None]
    sig, sbom, provenance = items
    assert isinstance(sig.document, Manifest)
    assert [d.media_type for d in sig.blobs][1:] == [
        "application/vnd.dev.cosign.simplesigning.v1+json"]
    assert (str(sbom.digest), str(provenance.digest)) == (attached.sbom, attached.provenance)
    for item in items:  # the bytes exactly as served: their digest is the manifest's
        assert str(parse_manifest(item.info.raw).digest) == str(item.digest)
    assert [d.media_type for d in sbom.blobs] == [EMPTY, SPDX]
    only_sigs = attachments(repo, attached.subject, referrers_too=False)
    assert [i.tag for i in only_sigs] == [signature_tag(attached.subject)]
    assert attachments(repo, attached.sbom) == []


def test_a_listed_referrer_with_another_subject_is_refused(
    attached: Attached, registry: LocalRegistry
) -> None:
    repo = Client(attached.host).repository(attached.repo)
    stray = referrer_descriptor(repo.manifest(attached.stray).document)
    existing = repo.referrers(attached.subject)
    with Pusher(registry.url) as p:
        p.push_manifest(attached.repo, referrers_tag(attached.provenance),
                        tag_schema_index(None, [stray]), OCI_INDEX)
    with pytest.raises(InvalidManifest, match="but its subject is sha256:bbbb"):
        attachments(repo, attached.provenance, signatures=False)
    assert len(existing.manifests) == 2


def test_the_tag_schema_index_keeps_what_it_had_and_adds_each_digest_once(
    attached: Attached,
) -> None:
    repo = Client(attached.host).repository(attached.repo)
    existing = repo.referrers(attached.subject)
    odd = dict(existing.manifests[0].json or {})
    odd["x-vendor"] = "kept"
    with_odd = parse_manifest(json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX,
                                          "manifests": [odd]}).encode())
    assert isinstance(with_odd, Index)
    stray = referrer_descriptor(repo.manifest(attached.stray).document)
    merged = json.loads(tag_schema_index(with_odd, [existing.manifests[0], stray]))
    assert [m["digest"] for m in merged["manifests"]] == [attached.sbom, attached.stray]
    assert merged["manifests"][0]["x-vendor"] == "kept"
    assert merged["mediaType"] == OCI_INDEX
    assert referrers_tag("sha512:" + "c" * 128) == "sha512-" + "c" * 64


def _tank(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tank", *args], capture_output=True, text=True,
                          timeout=120, env=dict(os.environ))


def test_tank_referrers(attached: Attached) -> None:
    ref = f"{attached.host}/{attached.repo}:1"
    done = _tank("referrers", ref)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert [line.split()[:2] for line in lines] == [[attached.sbom, SPDX],
                                                    [attached.provenance, INTOTO]]
    doc = json.loads(_tank("referrers", ref, "--json", "--artifact-type", SPDX).stdout)
    assert doc["subject"] == attached.subject
    assert [m["digest"] for m in doc["manifests"]] == [attached.sbom]
    by_digest = _tank("referrers", f"{attached.host}/{attached.repo}@{attached.subject}")
    assert by_digest.stdout == done.stdout
