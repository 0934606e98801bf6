"""Prove the harness itself: registry modes, token server, fronts and CDN."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import urllib3

from tank.testing.fronts import MakeCDN, MakeFront, Recorded
from tank.testing.images import (
    DOCKER_LIST,
    DOCKER_MANIFEST,
    OCI_INDEX,
    OCI_MANIFEST,
    Pusher,
    make_image,
    make_layer,
    make_random_blob_file,
    sample_image,
)
from tank.testing.registry import LocalRegistry
from tank.testing.seed import Seeded
from tank.testing.tls import LocalCA
from tank.testing.tokenserver import TokenServer, libtrust_key_id

ALL_MANIFESTS = ", ".join([OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST])


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def challenge(header: str) -> tuple[str, dict[str, str]]:
    scheme, _, rest = header.partition(" ")
    return scheme, dict(re.findall(r'(\w+)="([^"]*)"', rest))


@pytest.fixture
def http() -> urllib3.PoolManager:
    return urllib3.PoolManager(retries=False)


def get_token(
    http: urllib3.PoolManager, ts: TokenServer, scope: str, auth: tuple[str, str] | None = None
) -> dict[str, Any]:
    headers = urllib3.make_headers(basic_auth=f"{auth[0]}:{auth[1]}") if auth else {}
    r = http.request(
        "GET", ts.realm, fields={"service": ts.service, "scope": scope}, headers=headers
    )
    assert r.status == 200, r.data
    body: dict[str, Any] = r.json()
    return body


# -- registry and token server ---------------------------------------------------------------


def test_registry_answers_v2(registry: LocalRegistry, http: urllib3.PoolManager) -> None:
    r = http.request("GET", registry.url + "/v2/")
    assert r.status == 200
    assert r.headers["Docker-Distribution-Api-Version"] == "registry/2.0"
    assert registry.host.startswith("127.0.0.1:")
    assert registry.storage_dir.is_dir()


def test_token_registry_challenges_with_bearer(
    token_registry: LocalRegistry,
    token_server: TokenServer,
    seeded: Seeded,
    http: urllib3.PoolManager,
) -> None:
    r = http.request("GET", f"{token_registry.url}/v2/{seeded.repo}/manifests/latest")
    assert r.status == 401
    scheme, params = challenge(r.headers["WWW-Authenticate"])
    assert scheme == "Bearer"
    assert params == {
        "realm": token_server.realm,
        "service": token_server.service,
        "scope": f"repository:{seeded.repo}:pull",
    }


@pytest.mark.parametrize("field", ["token", "access_token", "both"])
def test_anonymous_token_pulls_manifest(
    token_registry: LocalRegistry,
    token_server: TokenServer,
    seeded: Seeded,
    http: urllib3.PoolManager,
    field: str,
) -> None:
    token_server.token_field = field  # type: ignore[assignment]
    body = get_token(http, token_server, f"repository:{seeded.repo}:pull,push")
    assert set(body) & {"token", "access_token"} == (
        {"token", "access_token"} if field == "both" else {field}
    )
    token = body.get("token") or body["access_token"]
    claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    assert claims["access"] == [{"type": "repository", "name": seeded.repo, "actions": ["pull"]}]
    assert claims["sub"] == ""
    r = http.request(
        "GET",
        f"{token_registry.url}/v2/{seeded.repo}/manifests/latest",
        headers={"Authorization": f"Bearer {token}", "Accept": OCI_MANIFEST},
    )
    assert r.status == 200
    assert r.data == seeded.latest.manifest
    [req] = token_server.requests
    assert req.query["scope"] == [f"repository:{seeded.repo}:pull,push"]
    assert "authorization" not in req.headers


def test_minted_and_basic_tokens(
    token_registry: LocalRegistry,
    token_server: TokenServer,
    seeded: Seeded,
    http: urllib3.PoolManager,
) -> None:
    url = f"{token_registry.url}/v2/{seeded.repo}/manifests/multi"
    accept = {"Accept": ALL_MANIFESTS}
    minted = token_server.mint([{"type": "repository", "name": seeded.repo, "actions": ["pull"]}])
    r = http.request("GET", url, headers={**accept, "Authorization": f"Bearer {minted}"})
    assert r.status == 200
    assert r.headers["Content-Type"] == OCI_INDEX
    # A token for another repository is refused.
    other = token_server.mint([{"type": "repository", "name": "other", "actions": ["pull"]}])
    r = http.request("GET", url, headers={**accept, "Authorization": f"Bearer {other}"})
    assert r.status == 401
    # Basic credentials get everything asked; a bad password is refused.
    body = get_token(
        http, token_server, f"repository:{seeded.repo}:pull,push", ("alice", "wonderland")
    )
    claims = json.loads(base64.urlsafe_b64decode(body["token"].split(".")[1] + "=="))
    assert claims["access"][0]["actions"] == ["pull", "push"]
    assert claims["sub"] == "alice"
    bad = urllib3.make_headers(basic_auth="alice:nope")
    r = http.request("GET", token_server.realm, fields={"scope": "repository:x:pull"}, headers=bad)
    assert r.status == 401


def test_token_server_faults(token_server: TokenServer, http: urllib3.PoolManager) -> None:
    r = http.request("GET", token_server.realm, fields={"service": "nope"})
    assert r.status == 400
    token_server.fail_next(2, status=503)
    statuses = [http.request("GET", token_server.realm).status for _ in range(3)]
    assert statuses == [503, 503, 200]
    assert len(token_server.requests) == 4
    assert token_server.kid.count(":") == 11
    assert len(token_server.kid) == 59


def test_token_server_public_set(tmp_path: Path, http: urllib3.PoolManager) -> None:
    with TokenServer(public={"pub"}) as ts:
        ok = get_token(http, ts, "repository:pub:pull repository:priv:pull")
        claims = json.loads(base64.urlsafe_b64decode(ok["token"].split(".")[1] + "=="))
        assert claims["access"] == [{"type": "repository", "name": "pub", "actions": ["pull"]}]
        assert ts.rootcertbundle.read_text().startswith("-----BEGIN CERTIFICATE-----")
        assert libtrust_key_id.__name__ == "libtrust_key_id"


@pytest.mark.parametrize("tag", ["latest", "docker", "multi", "list"])
def test_manifest_content_type_and_digest(
    registry: LocalRegistry, seeded: Seeded, http: urllib3.PoolManager, tag: str
) -> None:
    expected = getattr(seeded, tag)
    r = http.request(
        "GET",
        f"{registry.url}/v2/{seeded.repo}/manifests/{tag}",
        headers={"Accept": ALL_MANIFESTS},
    )
    assert r.status == 200
    assert r.headers["Content-Type"] == expected.media_type
    assert r.headers["Docker-Content-Digest"] == sha(r.data) == expected.manifest_digest
    assert r.data == expected.manifest


def test_registry_needs_explicit_oci_accept(
    registry: LocalRegistry, seeded: Seeded, http: urllib3.PoolManager
) -> None:
    """distribution 2.8: OCI content is 404 unless Accept names it; Docker v2 without it
    is down-converted to schema 1, and a list asked as a v2 manifest gives linux/amd64."""
    base = f"{registry.url}/v2/{seeded.repo}/manifests"
    r = http.request("GET", f"{base}/latest", headers={"Accept": "*/*"})
    assert r.status == 404
    assert r.json()["errors"][0]["code"] == "MANIFEST_UNKNOWN"
    r = http.request("GET", f"{base}/docker")
    assert r.headers["Content-Type"] == "application/vnd.docker.distribution.manifest.v1+prettyjws"
    r = http.request("GET", f"{base}/list", headers={"Accept": DOCKER_MANIFEST})
    assert r.headers["Docker-Content-Digest"] == seeded.list.images[0].manifest_digest


def test_seeded_content(registry: LocalRegistry, seeded: Seeded) -> None:
    assert seeded.multi.images[0].manifest_digest == seeded.latest.manifest_digest
    assert seeded.docker.config.digest == seeded.latest.config.digest
    assert len(seeded.multi.attestations) == 3
    assert not seeded.list.attestations
    index = json.loads(seeded.multi.manifest)
    att = [m for m in index["manifests"] if m["platform"]["os"] == "unknown"]
    assert att[0]["annotations"]["vnd.docker.reference.type"] == "attestation-manifest"
    for blob in seeded.latest.blobs():
        assert registry.blob_path(blob.digest).read_bytes() == blob.data


# -- Front and CDN ---------------------------------------------------------------------------


def test_front_records_one_keepalive_connection(
    registry: LocalRegistry, seeded: Seeded, make_front: MakeFront
) -> None:
    front = make_front(registry.url)
    assert front.host.startswith("127.0.0.2:")
    pool = urllib3.PoolManager(retries=False, maxsize=1)
    r = pool.request("GET", front.url + "/v2/")
    assert r.status == 200
    r = pool.request(
        "HEAD", f"{front.url}/v2/{seeded.repo}/manifests/latest", headers={"Accept": OCI_MANIFEST}
    )
    assert r.status == 200
    assert r.headers["Content-Length"] == str(len(seeded.latest.manifest))
    layer = seeded.latest.layers[0]
    r = pool.request("GET", f"{front.url}/v2/{seeded.repo}/blobs/{layer.digest}")
    assert r.status == 200
    assert r.data == layer.data
    assert [(q.method, q.path) for q in front.requests] == [
        ("GET", "/v2/"),
        ("HEAD", f"/v2/{seeded.repo}/manifests/latest"),
        ("GET", f"/v2/{seeded.repo}/blobs/{layer.digest}"),
    ]
    assert front.requests[1].headers["accept"] == OCI_MANIFEST
    assert front.connections == 1
    urllib3.PoolManager(retries=False).request("GET", front.url + "/v2/")
    assert front.connections == 2
    front.reset()
    assert front.requests == []
    assert front.connections == 0


def test_front_strips_and_corrupts(
    registry: LocalRegistry, seeded: Seeded, make_front: MakeFront, http: urllib3.PoolManager
) -> None:
    front = make_front(registry.url)
    url = f"{front.url}/v2/{seeded.repo}/manifests/latest"
    front.strip_headers = {"docker-content-digest"}
    r = http.request("GET", url, headers={"Accept": OCI_MANIFEST})
    assert "Docker-Content-Digest" not in r.headers
    assert r.data == seeded.latest.manifest
    front.strip_headers = set()
    front.corrupt = lambda rec: "/blobs/" in rec.path
    r = http.request("GET", url, headers={"Accept": OCI_MANIFEST})
    assert r.data == seeded.latest.manifest  # not a blob: untouched
    layer = seeded.latest.layers[2]
    r = http.request("GET", f"{front.url}/v2/{seeded.repo}/blobs/{layer.digest}")
    assert len(r.data) == layer.size
    assert r.data != layer.data
    assert sum(a != b for a, b in zip(r.data, layer.data, strict=True)) == 1


def test_front_respond_override(
    registry: LocalRegistry, make_front: MakeFront, http: urllib3.PoolManager
) -> None:
    front = make_front(registry.url)
    calls: list[Recorded] = []

    def respond(rec: Recorded) -> tuple[int, dict[str, str], bytes] | None:
        calls.append(rec)
        return (503, {"Retry-After": "0"}, b"busy") if len(calls) == 1 else None

    front.respond = respond
    assert http.request("GET", front.url + "/v2/").status == 503
    assert http.request("GET", front.url + "/v2/").status == 200


@pytest.mark.parametrize("hops", [0, 2])
def test_front_redirects_blobs_to_cdn(
    token_registry: LocalRegistry,
    token_server: TokenServer,
    seeded: Seeded,
    make_front: MakeFront,
    make_cdn: MakeCDN,
    http: urllib3.PoolManager,
    hops: int,
) -> None:
    cdn = make_cdn(token_registry, hops=hops)
    front = make_front(token_registry.url)
    front.redirect_blobs = cdn.url
    layer = seeded.latest.layers[1]
    url = f"{front.url}/v2/{seeded.repo}/blobs/{layer.digest}"
    r = http.request("GET", url)  # no token: the backend's 401 is relayed
    assert r.status == 401
    assert "Bearer" in r.headers["WWW-Authenticate"]
    token = get_token(http, token_server, f"repository:{seeded.repo}:pull")["token"]
    r = http.request("GET", url, headers={"Authorization": f"Bearer {token}"})
    assert r.status == 307
    location = r.headers["Location"]
    assert location.startswith(f"{cdn.url}/blobs/{layer.digest}?sig=")
    r = urllib3.PoolManager(retries=urllib3.Retry(redirect=5)).request("GET", location)
    assert r.status == 200
    assert sha(r.data) == layer.digest
    assert len(cdn.requests) == hops + 1
    assert all("authorization" not in q.headers for q in cdn.requests)


def test_cdn_serves_blob_and_ranges(
    registry: LocalRegistry, seeded: Seeded, make_cdn: MakeCDN, http: urllib3.PoolManager
) -> None:
    cdn = make_cdn(registry)
    layer = seeded.latest.layers[2]
    r = http.request("GET", f"{cdn.url}/blobs/{layer.digest}")
    assert r.status == 200
    assert sha(r.data) == layer.digest
    assert r.headers["Content-Type"] == "application/octet-stream"
    r = http.request("GET", f"{cdn.url}/blobs/{layer.digest}", headers={"Range": "bytes=10-"})
    assert r.status == 206
    assert r.data == layer.data[10:]
    assert http.request("GET", f"{cdn.url}/blobs/sha256:{'0' * 64}").status == 404


def test_push_file_through_front(
    registry: LocalRegistry, make_front: MakeFront, blob_file: Path
) -> None:
    digest = make_random_blob_file(blob_file, 3 * 1024 * 1024 + 7, seed=42)
    front = make_front(registry.url)
    with Pusher(front.url) as pusher:
        assert pusher.push_blob("harness/big", blob_file) == digest
        assert pusher.blob_exists("harness/big", digest)
    assert registry.blob_path(digest).stat().st_size == 3 * 1024 * 1024 + 7
    methods = [q.method for q in front.requests]
    assert methods == ["HEAD", "POST", "PUT", "HEAD"]


# -- other registry modes --------------------------------------------------------------------


def test_htpasswd_mode(http: urllib3.PoolManager) -> None:
    with LocalRegistry(htpasswd={"bob": "secret"}) as reg:
        r = http.request("GET", reg.url + "/v2/")
        assert r.status == 401
        assert r.headers["WWW-Authenticate"].startswith("Basic ")
        auth = urllib3.make_headers(basic_auth="bob:secret")
        assert http.request("GET", reg.url + "/v2/", headers=auth).status == 200
        image = make_image([make_layer({"hello.txt": b"hi\n"})])
        with Pusher(reg.url, basic=("bob", "secret")) as pusher:
            assert pusher.push_image("h/p", "v1", image) == image.manifest_digest


def test_tls_mode(ca: LocalCA, make_front: MakeFront) -> None:
    cert, key = ca.issue("127.0.0.1")
    with LocalRegistry(tls=(cert, key)) as reg:
        assert reg.url.startswith("https://127.0.0.1:")
        verified = urllib3.PoolManager(ca_certs=str(ca.ca_file), retries=False)
        assert verified.request("GET", reg.url + "/v2/").status == 200
        image = sample_image()
        with Pusher(reg.url, ca_file=ca.ca_file) as pusher:
            pusher.push_image("t/s", "latest", image)
        # An HTTPS front on 127.0.0.2 relaying to the HTTPS registry.
        fcert, fkey = ca.issue("127.0.0.2")
        front = make_front(reg.url, tls=(fcert, fkey), backend_ca=ca.ca_file)
        r = verified.request(
            "GET", f"{front.url}/v2/t/s/manifests/latest", headers={"Accept": OCI_MANIFEST}
        )
        assert r.status == 200
        assert r.data == image.manifest
        with pytest.raises(urllib3.exceptions.SSLError):
            urllib3.PoolManager(retries=False).request("GET", reg.url + "/v2/")


def test_the_test_kit_without_its_extra_says_which_extra_to_install() -> None:
    code = (
        "import sys\n"
        "sys.modules['jwt'] = None\n"  # as if PyJWT were not installed
        "import importlib.util\n"
        "real = importlib.util.find_spec\n"
        "importlib.util.find_spec = lambda n, *a: None if n == 'jwt' else real(n, *a)\n"
        "try:\n"
        "    import tank.testing\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "tank-oci[testing]" in out.stdout
    assert "jwt" in out.stdout
