"""tank.registry against the real CNCF registry: open, token-auth, TLS, and through fronts."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal

import pytest

from tank import mediatypes
from tank import registry as api
from tank.digest import Hasher
from tank.errors import (
    AuthError,
    DigestMismatch,
    InvalidManifest,
    InvalidReference,
    ManifestTooLarge,
    NotFound,
    RegistryError,
    SizeMismatch,
    TLSError,
    TransportError,
)
from tank.retry import NO_RETRY
from tank.testing.fronts import MakeCDN, MakeFront, Recorded, Response
from tank.testing.images import make_layer
from tank.testing.registry import LocalRegistry
from tank.testing.seed import Seeded
from tank.testing.tls import LocalCA
from tank.testing.tokenserver import TokenServer
from tank.transport import Transport


def host_of(url: str) -> str:
    return url.split("://", 1)[1]


def manifest_gets(front_requests: list[Recorded]) -> list[Recorded]:
    return [r for r in front_requests if "/manifests/" in r.path]


# -- the anonymous token flow ------------------------------------------------------------------


def test_401_token_200_and_the_token_is_threaded(
    token_registry: LocalRegistry, token_server: TokenServer, seeded: Seeded
) -> None:
    t = Transport()
    info, token = api.manifest(token_registry.host, seeded.repo, "latest", transport=t)
    assert token is not None
    assert info.raw == seeded.latest.manifest
    assert len(token_server.requests) == 1
    asked = token_server.requests[0]
    assert asked.query["scope"] == [f"repository:{seeded.repo}:pull"]
    assert asked.query["service"] == [token_server.service]
    assert "authorization" not in {k.lower() for k in asked.headers}  # anonymous

    # the caller threads the token: no new token request for a second manifest or for blobs
    again, same = api.manifest(
        token_registry.host, seeded.repo, "docker", token, transport=t
    )
    assert same == token
    assert again.raw == seeded.docker.manifest
    config = seeded.latest.config
    assert api.blob(token_registry.host, seeded.repo, config.digest, token, transport=t) == (
        config.data
    )
    assert len(token_server.requests) == 1


@pytest.mark.parametrize("field", ["access_token", "both"])
def test_token_or_access_token(
    field: Literal["access_token", "both"], token_registry: LocalRegistry,
    token_server: TokenServer, seeded: Seeded,
) -> None:
    token_server.token_field = field
    info, token = api.manifest(token_registry.host, seeded.repo, "latest")
    assert token
    assert info.raw == seeded.latest.manifest


def test_an_expired_or_refused_token_is_replaced_once(
    token_registry: LocalRegistry, token_server: TokenServer, seeded: Seeded
) -> None:
    _, token = api.manifest(token_registry.host, seeded.repo, "latest", "not-a-jwt")
    assert token
    assert token != "not-a-jwt"
    assert len(token_server.requests) == 1


def test_open_registry_needs_no_token(registry: LocalRegistry, seeded: Seeded) -> None:
    info, token = api.manifest(registry.host, seeded.repo, "latest")
    assert token is None
    assert info.digest == seeded.latest.manifest_digest


# -- what is asked and what comes back ---------------------------------------------------------


def test_accept_lists_the_four_manifest_types(
    registry: LocalRegistry, make_front: MakeFront, seeded: Seeded
) -> None:
    front = make_front(registry.url)
    api.manifest(front.host, seeded.repo, "latest")
    (get,) = manifest_gets(front.requests)
    accepted = [a.strip() for a in get.headers["accept"].split(",")]
    assert sorted(accepted) == sorted(
        [
            "application/vnd.oci.image.index.v1+json",
            "application/vnd.docker.distribution.manifest.list.v2+json",
            "application/vnd.oci.image.manifest.v1+json",
            "application/vnd.docker.distribution.manifest.v2+json",
        ]
    )


@pytest.mark.parametrize(
    ("tag", "media_type", "is_index"),
    [
        ("latest", mediatypes.OCI_MANIFEST, False),
        ("docker", mediatypes.DOCKER_MANIFEST, False),
        ("multi", mediatypes.OCI_INDEX, True),
        ("list", mediatypes.DOCKER_MANIFEST_LIST, True),
    ],
)
def test_media_types_of_indexes_and_manifests(
    tag: str, media_type: str, is_index: bool, token_registry: LocalRegistry, seeded: Seeded
) -> None:
    info, _ = api.manifest(token_registry.host, seeded.repo, tag)
    assert info.media_type == media_type
    assert info.is_index is is_index
    assert info.digest == seeded.tags[tag]
    assert info.json["schemaVersion"] == 2
    assert info.content_digest() == hashlib_digest(info.raw)


def hashlib_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_fetch_by_digest_verifies_the_bytes(registry: LocalRegistry, seeded: Seeded) -> None:
    child = seeded.multi.images[1]
    info, _ = api.manifest(registry.host, seeded.repo, child.manifest_digest)
    assert info.raw == child.manifest
    assert info.media_type == mediatypes.OCI_MANIFEST


def test_missing_digest_header_gives_none(
    registry: LocalRegistry, make_front: MakeFront, seeded: Seeded
) -> None:
    front = make_front(registry.url)
    front.strip_headers = {"Docker-Content-Digest"}
    info, _ = api.manifest(front.host, seeded.repo, "latest")
    assert info.digest is None
    assert info.content_digest() == seeded.latest.manifest_digest


def test_content_type_parameters_are_dropped_and_body_type_is_the_fallback(
    make_front: MakeFront, registry: LocalRegistry, seeded: Seeded
) -> None:
    front = make_front(registry.url)
    raw = seeded.list.manifest
    front.respond = lambda r: (
        (200, {"Content-Type": mediatypes.DOCKER_MANIFEST_LIST + "; charset=utf-8"}, raw)
        if "/manifests/a" in r.path
        else (200, {"Content-Type": "application/json"}, raw)
        if "/manifests/b" in r.path
        else None
    )
    a, _ = api.manifest(front.host, seeded.repo, "a")
    b, _ = api.manifest(front.host, seeded.repo, "b")
    assert a.media_type == b.media_type == mediatypes.DOCKER_MANIFEST_LIST


# -- integrity ---------------------------------------------------------------------------------


def flip_manifests(r: Recorded) -> bool:
    return "/manifests/" in r.path and r.method == "GET"


def test_wrong_manifest_bytes_against_the_header(
    registry: LocalRegistry, make_front: MakeFront, seeded: Seeded
) -> None:
    front = make_front(registry.url)
    front.corrupt = flip_manifests
    with pytest.raises(DigestMismatch) as info:
        api.manifest(front.host, seeded.repo, "latest")
    assert seeded.latest.manifest_digest in str(info.value)
    assert seeded.repo in str(info.value)


def test_wrong_manifest_bytes_against_the_digest_asked_for(
    registry: LocalRegistry, make_front: MakeFront, seeded: Seeded
) -> None:
    front = make_front(registry.url)
    front.corrupt = flip_manifests
    front.strip_headers = {"Docker-Content-Digest"}
    with pytest.raises(DigestMismatch, match="digest asked for"):
        api.manifest(front.host, seeded.repo, seeded.latest.manifest_digest)


def test_a_lying_digest_header_is_refused(
    registry: LocalRegistry, make_front: MakeFront, seeded: Seeded
) -> None:
    front = make_front(registry.url)
    other = seeded.docker.manifest_digest
    front.respond = lambda r: (
        (200, {"Content-Type": mediatypes.OCI_MANIFEST, "Docker-Content-Digest": other},
         seeded.latest.manifest)
        if flip_manifests(r) else None
    )
    with pytest.raises(DigestMismatch, match="header"):
        api.manifest(front.host, seeded.repo, "latest")


def test_wrong_blob_bytes(
    registry: LocalRegistry, make_front: MakeFront, seeded: Seeded, tmp_path: Path
) -> None:
    front = make_front(registry.url)
    front.corrupt = lambda r: "/blobs/" in r.path
    layer = seeded.latest.layers[0]
    with pytest.raises(DigestMismatch) as info:
        api.blob(front.host, seeded.repo, layer.digest)
    assert layer.digest in str(info.value)
    dest = tmp_path / "layer"
    with pytest.raises(DigestMismatch):
        api.download_blob(front.host, seeded.repo, layer.digest, None, dest)
    assert list(tmp_path.iterdir()) == []  # neither the file nor its temp file


def test_blob_size_is_enforced(registry: LocalRegistry, seeded: Seeded) -> None:
    layer = seeded.latest.layers[0]
    with pytest.raises(SizeMismatch, match="more than"):
        api.blob(registry.host, seeded.repo, layer.digest, size=layer.size - 1)
    with pytest.raises(SizeMismatch, match="only"):
        api.blob(registry.host, seeded.repo, layer.digest, size=layer.size + 1)
    assert api.blob(registry.host, seeded.repo, layer.digest, size=layer.size) == layer.data


def test_duplicate_keys_and_ambiguous_documents_are_refused(
    registry: LocalRegistry, make_front: MakeFront, seeded: Seeded
) -> None:
    front = make_front(registry.url)
    dup = b'{"schemaVersion":2,"layers":[],"layers":[{"digest":"x"}]}'
    both = json.dumps({"schemaVersion": 2, "manifests": [], "layers": []}).encode()
    bodies = {"/manifests/dup": dup, "/manifests/both": both}
    front.respond = lambda r: next(
        ((200, {"Content-Type": mediatypes.OCI_MANIFEST}, body)
         for suffix, body in bodies.items() if r.path.endswith(suffix)), None,
    )
    with pytest.raises(InvalidManifest, match="duplicate key 'layers'"):
        api.manifest(front.host, seeded.repo, "dup")
    with pytest.raises(InvalidManifest, match="ambiguous"):
        api.manifest(front.host, seeded.repo, "both")


@pytest.mark.parametrize("with_length", [True, False])
def test_manifest_over_4_mib_is_refused(
    with_length: bool, make_front: MakeFront, registry: LocalRegistry, seeded: Seeded
) -> None:
    front = make_front(registry.url)
    huge = b'{"x":"' + b"a" * (4 * 1024 * 1024) + b'"}'

    def respond(r: Recorded) -> Response | None:
        if not flip_manifests(r):
            return None
        headers = {"Content-Type": mediatypes.OCI_MANIFEST}
        if not with_length:
            headers["Transfer-Encoding"] = "chunked"
        return (200, headers, huge)

    front.respond = respond
    with pytest.raises(ManifestTooLarge, match="4194304"):
        api.manifest(front.host, seeded.repo, "latest")


# -- errors that name what failed -------------------------------------------------------------


def test_manifest_404_carries_the_registry_error_code(
    token_registry: LocalRegistry, seeded: Seeded
) -> None:
    with pytest.raises(NotFound) as info:
        api.manifest(token_registry.host, seeded.repo, "no-such-tag")
    err = info.value
    assert err.status == 404
    assert "MANIFEST_UNKNOWN" in err.codes
    text = str(err)
    assert token_registry.host in text
    assert f"{seeded.repo}:no-such-tag" in text
    assert "MANIFEST_UNKNOWN" in text


def test_blob_404(registry: LocalRegistry, seeded: Seeded) -> None:
    missing = "sha256:" + "0" * 64
    with pytest.raises(NotFound) as info:
        api.blob(registry.host, seeded.repo, missing)
    assert "BLOB_UNKNOWN" in info.value.codes
    assert missing in str(info.value)


def test_arguments_are_validated_before_any_request() -> None:
    with pytest.raises(InvalidReference):
        api.manifest("127.0.0.1:1", "../etc", "latest")
    with pytest.raises(InvalidReference):
        api.manifest("127.0.0.1:1", "a", "sha256:../../x")
    with pytest.raises(InvalidReference):
        api.blob("http://x", "a", "sha256:" + "0" * 64)


@pytest.mark.parametrize(
    ("challenge", "named"),
    [
        ('Negotiate', "Negotiate"),
        ('Basic realm="Sonatype Nexus Repository Manager"', "Basic"),
        ("", "none"),
    ],
)
def test_unsupported_auth_scheme_is_a_clear_error(
    challenge: str, named: str, registry: LocalRegistry, make_front: MakeFront, seeded: Seeded
) -> None:
    front = make_front(registry.url)
    headers = {"WWW-Authenticate": challenge} if challenge else {}
    front.respond = lambda r: (401, headers, b"")
    with pytest.raises(AuthError) as info:
        api.manifest(front.host, seeded.repo, "latest")
    assert named in str(info.value)
    assert "Bearer" in str(info.value)


def test_a_second_401_is_an_auth_error(
    token_registry: LocalRegistry, token_server: TokenServer, make_front: MakeFront,
    seeded: Seeded,
) -> None:
    front = make_front(token_registry.url)
    challenge = (
        f'Bearer realm="{token_server.realm}",service="{token_server.service}",'
        f'scope="repository:{seeded.repo}:pull"'
    )
    body = json.dumps({"errors": [{"code": "UNAUTHORIZED", "message": "no way"}]}).encode()
    front.respond = lambda r: (401, {"WWW-Authenticate": challenge}, body)
    with pytest.raises(AuthError) as info:
        api.manifest(front.host, seeded.repo, "latest")
    assert "second 401" in str(info.value)
    assert "UNAUTHORIZED" in info.value.codes
    assert len(token_server.requests) == 1  # exactly one retry


def test_token_endpoint_failure_is_an_auth_error(
    token_registry: LocalRegistry, token_server: TokenServer, seeded: Seeded
) -> None:
    token_server.fail_next(1, status=503)
    with pytest.raises(AuthError) as info:  # one try: test_retry.py retries it
        api.manifest(token_registry.host, seeded.repo, "latest", retry=NO_RETRY)
    assert "token endpoint" in str(info.value)
    assert info.value.status == 503


def test_repository_the_token_server_will_not_grant(seeded: Seeded) -> None:
    with (
        TokenServer(public={"library/other"}) as ts,
        LocalRegistry(token=ts) as reg,
        pytest.raises(AuthError, match="second 401"),
    ):
        api.manifest(reg.host, seeded.repo, "latest")


# -- redirects and credentials ----------------------------------------------------------------


@pytest.mark.parametrize("hops", [0, 2])
def test_cross_host_redirect_never_carries_authorization(
    hops: int, token_registry: LocalRegistry, make_front: MakeFront, make_cdn: MakeCDN,
    seeded: Seeded,
) -> None:
    cdn = make_cdn(token_registry, host="127.0.0.3", hops=hops)
    front = make_front(token_registry.url, host="127.0.0.2")
    front.redirect_blobs = cdn.url
    _, token = api.manifest(front.host, seeded.repo, "latest")
    layer = seeded.latest.layers[-1]
    assert api.blob(front.host, seeded.repo, layer.digest, token) == layer.data

    blob_requests = [r for r in front.requests if "/blobs/" in r.path]
    assert blob_requests
    assert all("authorization" in r.headers for r in blob_requests)  # the registry got it
    assert len(cdn.requests) == hops + 1
    for r in cdn.requests:  # the store never did, on any hop
        assert "authorization" not in r.headers
        assert "cookie" not in r.headers
        assert r.headers.get("accept-encoding") == "identity"


def test_same_host_other_port_is_another_origin(
    token_registry: LocalRegistry, make_front: MakeFront, make_cdn: MakeCDN, seeded: Seeded
) -> None:
    cdn = make_cdn(token_registry, host="127.0.0.2")
    front = make_front(token_registry.url, host="127.0.0.2")
    front.redirect_blobs = cdn.url
    _, token = api.manifest(front.host, seeded.repo, "latest")
    layer = seeded.latest.layers[0]
    assert api.blob(front.host, seeded.repo, layer.digest, token) == layer.data
    assert cdn.requests
    assert all("authorization" not in r.headers for r in cdn.requests)


@pytest.mark.parametrize(
    ("location", "why"),
    [("file:///etc/passwd", "not http"), ("ftp://127.0.0.3/x", "not http"), (None, "Location")],
)
def test_bad_redirects_are_refused(
    location: str | None, why: str, registry: LocalRegistry, make_front: MakeFront,
    seeded: Seeded,
) -> None:
    front = make_front(registry.url)
    headers = {"Location": location} if location else {}
    front.respond = lambda r: (302, headers, b"") if "/blobs/" in r.path else None
    with pytest.raises(TransportError, match=why):
        api.blob(front.host, seeded.repo, seeded.latest.config.digest)


def test_redirect_loop_is_bounded(
    registry: LocalRegistry, make_front: MakeFront, seeded: Seeded
) -> None:
    front = make_front(registry.url)
    front.respond = lambda r: (
        (302, {"Location": r.path}, b"") if "/blobs/" in r.path else None
    )
    with pytest.raises(TransportError, match="more than 10 redirects"):
        api.blob(front.host, seeded.repo, seeded.latest.config.digest)
    assert len([r for r in front.requests if "/blobs/" in r.path]) == 11


# -- connections and schemes -------------------------------------------------------------------


def test_five_calls_share_one_connection(
    token_registry: LocalRegistry, make_front: MakeFront, seeded: Seeded
) -> None:
    front = make_front(token_registry.url)
    t = Transport()
    _, token = api.manifest(front.host, seeded.repo, "latest", transport=t)
    front.reset()
    for tag in ("latest", "docker", "multi", "list"):
        api.manifest(front.host, seeded.repo, tag, token, transport=t)
    api.blob(front.host, seeded.repo, seeded.latest.config.digest, token, transport=t)
    assert len(front.requests) == 5
    assert front.connections == 1


def test_loopback_plain_http_is_found_and_remembered(
    registry: LocalRegistry, seeded: Seeded
) -> None:
    t = Transport()
    assert t.base_url(registry.host) == f"https://{registry.host}"
    api.manifest(registry.host, seeded.repo, "latest", transport=t)
    assert t.base_url(registry.host) == f"http://{registry.host}"


def test_loopback_tls_registry_is_verified_never_downgraded(
    ca: LocalCA, seeded: Seeded
) -> None:
    cert, key = ca.issue("127.0.0.1")
    with LocalRegistry(tls=(cert, key)) as reg:
        from tank.testing.images import Pusher

        with Pusher(reg.url, ca_file=str(ca.ca_file)) as pusher:
            pusher.push_image(seeded.repo, "latest", seeded.latest)
        trusted = Transport(ca_file=str(ca.ca_file))
        info, _ = api.manifest(reg.host, seeded.repo, "latest", transport=trusted)
        assert info.digest == seeded.latest.manifest_digest
        assert trusted.base_url(reg.host).startswith("https://")

        untrusted = Transport()
        with pytest.raises(TLSError, match="certificate"):
            api.manifest(reg.host, seeded.repo, "latest", transport=untrusted)
        assert untrusted.base_url(reg.host).startswith("https://")  # no fallback to http


def test_unreachable_registry_is_a_transport_error() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(TransportError, match="cannot connect"):
        api.manifest(f"127.0.0.1:{port}", "a", "latest", transport=Transport(), retry=NO_RETRY)


# -- streaming and ranges ----------------------------------------------------------------------


def test_open_blob_streams_and_verifies(registry: LocalRegistry, seeded: Seeded) -> None:
    layer = seeded.latest.layers[0]
    with api.open_blob(registry.host, seeded.repo, layer.digest, chunk_size=100) as stream:
        chunks = list(stream)
        assert stream.verified
    assert len(chunks) > 1
    assert b"".join(chunks) == layer.data


def test_open_blob_resumes_from_an_offset(registry: LocalRegistry, seeded: Seeded) -> None:
    layer = seeded.latest.layers[0]
    cut = layer.size // 3
    h = Hasher()
    h.update(layer.data[:cut])
    with api.open_blob(
        registry.host, seeded.repo, layer.digest, offset=cut, hasher=h
    ) as stream:
        rest = b"".join(stream)
        assert stream.offset == cut
        assert stream.verified
    assert rest == layer.data[cut:]


def test_a_range_the_server_ignores_restarts_from_zero(
    registry: LocalRegistry, make_front: MakeFront, seeded: Seeded
) -> None:
    front = make_front(registry.url)
    layer = seeded.latest.layers[0]
    front.respond = lambda r: (
        (200, {"Content-Type": "application/octet-stream"}, layer.data)
        if "/blobs/" in r.path else None
    )
    h = Hasher()
    h.update(layer.data[:10])
    with api.open_blob(front.host, seeded.repo, layer.digest, offset=10, hasher=h) as s:
        assert s.offset == 0
        assert b"".join(s) == layer.data
    (blob_request,) = [r for r in front.requests if "/blobs/" in r.path]
    assert blob_request.headers["range"] == "bytes=10-"


def test_a_wrong_content_range_is_refused(
    registry: LocalRegistry, make_front: MakeFront, seeded: Seeded
) -> None:
    front = make_front(registry.url)
    layer = seeded.latest.layers[0]
    front.respond = lambda r: (
        (206, {"Content-Range": f"bytes 0-{layer.size - 1}/{layer.size}"}, layer.data)
        if "/blobs/" in r.path else None
    )
    h = Hasher()
    h.update(layer.data[:10])
    with pytest.raises(RegistryError, match="Content-Range"):  # noqa: SIM117
        with api.open_blob(front.host, seeded.repo, layer.digest, offset=10, hasher=h):
            pass


def test_offset_without_the_prefix_hash_is_a_programming_error(
    registry: LocalRegistry, seeded: Seeded
) -> None:
    with pytest.raises(ValueError, match="hasher"):  # noqa: SIM117
        with api.open_blob(registry.host, seeded.repo, seeded.latest.config.digest, offset=3):
            pass


def test_blob_requests_ask_for_identity_encoding(
    registry: LocalRegistry, make_front: MakeFront, seeded: Seeded, tmp_path: Path
) -> None:
    front = make_front(registry.url)
    layer = make_layer({"etc/motd": b"hello\n" * 1000})
    from tank.testing.images import Pusher

    with Pusher(registry.url) as pusher:
        pusher.push_blob("library/enc", layer)
    dest = tmp_path / "x"
    n = api.download_blob(front.host, "library/enc", layer.digest, None, dest)
    assert n == layer.size
    assert dest.read_bytes() == layer.data
    (r,) = [r for r in front.requests if "/blobs/" in r.path]
    assert r.headers["accept-encoding"] == "identity"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x"]


def test_a_truncated_blob_is_a_transport_error_and_leaves_nothing(
    registry: LocalRegistry, make_front: MakeFront, seeded: Seeded, tmp_path: Path
) -> None:
    front = make_front(registry.url)
    layer = seeded.latest.layers[0]

    def short(r: Recorded) -> Response | None:
        if "/blobs/" not in r.path:
            return None
        # the server closes the connection half-way through the promised length
        headers = {"Content-Length": str(layer.size), "Connection": "close"}
        return (200, headers, layer.data[: layer.size // 2])

    front.respond = short
    with pytest.raises(TransportError, match="broke off"):
        api.download_blob(
            front.host, seeded.repo, layer.digest, None, tmp_path / "l", retry=NO_RETRY
        )
    assert list(tmp_path.iterdir()) == []


def test_a_stalled_blob_times_out_instead_of_hanging(
    registry: LocalRegistry, make_front: MakeFront, seeded: Seeded, tmp_path: Path
) -> None:
    front = make_front(registry.url)
    layer = seeded.latest.layers[0]
    # the promised length never arrives and the connection stays open
    front.respond = lambda r: (
        (200, {"Content-Length": str(layer.size)}, layer.data[:100])
        if "/blobs/" in r.path else None
    )
    t = Transport(read_timeout=0.5)
    with pytest.raises(TransportError, match="broke off after 100 bytes"):
        api.download_blob(
            front.host, seeded.repo, layer.digest, None, tmp_path / "l", transport=t,
            retry=NO_RETRY,
        )
    assert list(tmp_path.iterdir()) == []


# -- HEAD ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("tag", ["latest", "docker", "multi", "list"])
def test_manifest_head_gives_the_digest_without_a_body(
    tag: str, token_registry: LocalRegistry, make_front: MakeFront, seeded: Seeded
) -> None:
    front = make_front(token_registry.url)
    head, token = api.manifest_head(front.host, seeded.repo, tag)
    assert token is not None  # the 401 on HEAD was answered too
    assert head.digest == seeded.tags[tag]
    info, _ = api.manifest(front.host, seeded.repo, tag, token)
    assert head.media_type == info.media_type
    assert head.size == len(info.raw)
    heads = [r for r in front.requests if r.method == "HEAD"]
    assert heads
    assert all(r.headers["accept"] == mediatypes.MANIFEST_ACCEPT for r in heads)


def test_manifest_head_without_digest_header(
    registry: LocalRegistry, make_front: MakeFront, seeded: Seeded
) -> None:
    front = make_front(registry.url)
    front.strip_headers = {"Docker-Content-Digest"}
    head, _ = api.manifest_head(front.host, seeded.repo, "latest")
    assert head.digest is None


def test_manifest_head_404(registry: LocalRegistry, seeded: Seeded) -> None:
    with pytest.raises(NotFound):
        api.manifest_head(registry.host, seeded.repo, "nope")
