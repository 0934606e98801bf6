"""The security review's findings (issue 12): each class of problem, pinned by a test that failed
on the code before the fix. Numbers follow the review; docs/guarantees.md has a line for each.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import stat
import threading
import time
import tracemalloc
from pathlib import Path

import pytest

import tank
from support.unpacking import IS_ROOT, NOBODY, E, build, layer, seed_store, unprivileged
from tank import pull, unpack
from tank import registry as api
from tank.auth.credentials import CredentialStore
from tank.auth.tokens import TokenCache
from tank.digest import compute
from tank.errors import (
    ArchiveError,
    AuthError,
    LayoutError,
    RegistryError,
    TankError,
    TransportError,
    UnpackError,
)
from tank.mediatypes import OCI_INDEX, OCI_MANIFEST
from tank.outputs.rootfs import rootfs_path
from tank.registry.taglist import next_link
from tank.retry import NO_RETRY
from tank.store import CacheWarning, Store
from tank.testing.fronts import MakeCDN, MakeFront, Recorded, Response
from tank.testing.images import Image, Pusher, make_image, make_layer, random_bytes_stream
from tank.testing.registry import LocalRegistry
from tank.testing.seed import Seeded
from tank.transport import Origin, Transport, is_loopback

# -- 1. a 401 from a redirect target never gets the registry's credentials ---------------------


@pytest.mark.parametrize("scheme", ["Bearer", "Basic"])
def test_a_401_from_a_redirect_target_gets_no_credentials_and_is_not_remembered(
    scheme: str, registry: LocalRegistry, make_front: MakeFront, make_cdn: MakeCDN,
    seeded: Seeded,
) -> None:
    cdn = make_cdn(registry, host="127.0.0.3")
    realm = f"{cdn.url}/token"

    def challenge(r: Recorded) -> Response | None:
        if "/blobs/" in r.path:
            value = f'Bearer realm="{realm}",service="evil"' if scheme == "Bearer" else (
                'Basic realm="evil"'
            )
            return (401, {"WWW-Authenticate": value}, b"")
        return None

    cdn.respond = challenge
    front = make_front(registry.url, host="127.0.0.2")
    front.redirect_blobs = cdn.url
    cache = TokenCache()
    layer = seeded.latest.layers[0]
    with pytest.raises(AuthError, match="redirect target") as info:
        api.blob(
            front.host, seeded.repo, layer.digest, credentials=("alice", "wonderland"),
            token_cache=cache,
        )
    assert "wonderland" not in str(info.value)
    assert not [r for r in cdn.requests if r.path.startswith("/token")]  # the realm: never asked
    assert all("authorization" not in r.headers for r in cdn.requests)
    assert cache.challenge(front.host) is None  # nothing learnt from the impostor


def test_a_401_from_the_registry_itself_is_still_answered(
    registry: LocalRegistry, make_front: MakeFront, seeded: Seeded
) -> None:
    front = make_front(registry.url)
    layer = seeded.latest.layers[0]
    calls: list[Recorded] = []

    def once(r: Recorded) -> Response | None:
        if "/blobs/" in r.path and not calls:
            calls.append(r)
            return (401, {"WWW-Authenticate": 'Basic realm="registry"'}, b"")
        return None

    front.respond = once
    assert api.blob(front.host, seeded.repo, layer.digest, credentials=("u", "p")) == layer.data
    basic = [r for r in front.requests if r.headers.get("authorization", "").startswith("Basic")]
    assert basic  # the registry's own challenge got the credentials


# -- 2. outputs never follow links planted in them, and (as root) never another user's ---------


def _layout_with(tmp_path: Path) -> tuple[Path, Path]:
    """An existing layout directory and a victim directory outside it."""
    layout = tmp_path / "layout"
    layout.mkdir()
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep").write_text("keep")
    return layout, victim


@pytest.mark.parametrize("planted", ["blobs", "blobs/sha256", "index.json", ".tank.lock"])
def test_an_oci_layout_with_a_planted_symlink_is_refused(
    planted: str, registry: LocalRegistry, seeded: Seeded, tmp_path: Path
) -> None:
    layout, victim = _layout_with(tmp_path)
    link = layout / planted
    link.parent.mkdir(parents=True, exist_ok=True)
    target = victim if planted.startswith("blobs") else victim / "keep"
    link.symlink_to(target)
    with pytest.raises(LayoutError, match=r"symlink|not a directory|not a regular"):
        pull(f"{registry.host}/{seeded.repo}:latest", cache=tmp_path / "cache",
             output=f"oci:{layout}:v1")
    assert sorted(p.name for p in victim.iterdir()) == ["keep"]  # nothing written through
    assert (victim / "keep").read_text() == "keep"  # a symlinked lock truncated nothing


@pytest.mark.skipif(not IS_ROOT, reason="the ownership rule applies when tank runs as root")
def test_as_root_another_users_layout_rootfs_or_archive_directory_is_refused(
    registry: LocalRegistry, seeded: Seeded, tmp_path: Path
) -> None:
    ref = f"{registry.host}/{seeded.repo}:latest"
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    os.chown(theirs, NOBODY, NOBODY)
    with pytest.raises(LayoutError, match="belongs to uid"):
        pull(ref, cache=tmp_path / "c", output=f"oci:{theirs}:v1")
    with pytest.raises(UnpackError, match="belongs to uid"):
        pull(ref, cache=tmp_path / "c", output=f"rootfs:{theirs}")
    with pytest.raises(ArchiveError, match="belongs to uid"):
        pull(ref, cache=tmp_path / "c", output=f"docker-archive:{theirs / 'a.tar'}")
    assert list(theirs.iterdir()) == []


def test_a_rootfs_destination_that_is_a_symlink_is_refused(
    registry: LocalRegistry, seeded: Seeded, tmp_path: Path
) -> None:
    victim = tmp_path / "victim"
    victim.mkdir()
    dest = tmp_path / "dest"
    dest.symlink_to(victim)
    with pytest.raises(UnpackError, match="symbolic link"):
        pull(f"{registry.host}/{seeded.repo}:latest", cache=tmp_path / "c",
             output=f"rootfs:{dest}")
    assert list(victim.iterdir()) == []


def test_a_docker_archive_replaces_a_planted_symlink_instead_of_writing_through_it(
    registry: LocalRegistry, seeded: Seeded, tmp_path: Path
) -> None:
    victim = tmp_path / "victim"
    victim.write_text("keep")
    archive = tmp_path / "out.tar"
    archive.symlink_to(victim)
    pull(f"{registry.host}/{seeded.repo}:latest", cache=tmp_path / "c",
         output=f"docker-archive:{archive}")
    assert victim.read_text() == "keep"
    assert not archive.is_symlink()
    assert archive.stat().st_size > 1024


# -- 3. the rootfs cache exposes nothing to other local users ---------------------------------


def test_the_rootfs_cache_keeps_setuid_files_and_devices_from_other_users(
    tmp_path: Path,
) -> None:
    entries = [E("bin", "dir"), E("bin/sh", data=b"#!/bin/sh\n", mode=0o4755)]
    if IS_ROOT:
        entries.append(E("dev", "dir"))
        entries.append(E("dev/sda", "block", mode=0o666, major=8, minor=0))
    built = build(tmp_path / "image", [layer(entries)])
    cache = tmp_path / "cache"
    ref = seed_store(cache, built)
    unpack(ref, tmp_path / "root", cache=cache)
    tree = rootfs_path(Store(cache), built.image.manifest_digest)
    assert (tree / "bin" / "sh").stat().st_mode & 0o4000  # kept, as umoci keeps it
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700
    assert stat.S_IMODE((cache / "rootfs").stat().st_mode) == 0o700
    if IS_ROOT:  # another local user cannot reach the setuid shell or the disk node
        probe = unprivileged(["/bin/ls", "-l", str(tree / "bin" / "sh"), str(tree / "dev")])
        assert probe.returncode != 0
        assert "Permission denied" in probe.stderr


def test_a_cache_open_to_others_is_made_private_with_a_warning(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o755)
    cache.chmod(0o755)
    built = build(tmp_path / "image", [layer([E("etc", "dir"), E("etc/x", data=b"x")])])
    with pytest.warns(CacheWarning, match="open to other users"):
        ref = seed_store(cache, built)
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700
    (cache / "rootfs").mkdir(mode=0o755)
    (cache / "rootfs").chmod(0o755)
    with pytest.warns(CacheWarning, match="rootfs"):
        unpack(ref, tmp_path / "root", cache=cache)
    assert stat.S_IMODE((cache / "rootfs").stat().st_mode) == 0o700


# -- 6. secrets in a request body obey the rules of credential headers; loopback is never proxied


def test_a_loopback_realm_gets_the_password_directly_never_through_a_proxy(
    token_registry: LocalRegistry,
) -> None:
    """``tank login`` posts the password in the OAuth2 form: with a proxy set for another
    machine, a loopback registry and realm are still reached directly (as Go's client does)."""
    elsewhere = {"http": "http://proxy.invalid:3128", "https": "http://proxy.invalid:3128"}
    transport = Transport(proxies=elsewhere, connect_timeout=2)
    creds = api.check_login(token_registry.host, ("alice", "wonderland"), transport=transport,
                            retry=NO_RETRY)
    assert creds.username == "alice"


@pytest.mark.parametrize(
    "url", ["http://auth.example/token", "https://other.example/token"]
)
def test_a_secret_body_is_refused_where_credential_headers_would_be(url: str) -> None:
    transport = Transport(proxies={"http": "http://proxy.invalid:3128"}, connect_timeout=2)
    allowed = Origin.of("https://auth.example/token")
    with pytest.raises(TransportError, match="refusing to send credentials in a request body"):
        transport.request("POST", url, body=b"password=hunter2", credentials_origin=allowed,
                          secret_body=True)


# -- 7. hostile URLs are tank's errors, never a bare ValueError --------------------------------


@pytest.mark.parametrize(
    "location", ["http://[zz/blob", "http://127.0.0.1:99999/blob", "http://[::1/x"]
)
def test_a_malformed_redirect_location_is_a_clear_error(
    location: str, registry: LocalRegistry, make_front: MakeFront, seeded: Seeded
) -> None:
    front = make_front(registry.url)
    front.respond = lambda r: (302, {"Location": location}, b"") if "/blobs/" in r.path else None
    with pytest.raises(TransportError, match="malformed") as info:
        api.blob(front.host, seeded.repo, seeded.latest.layers[0].digest)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("realm", ["http://[zz/token", "http://127.0.0.1:70000/token", ""])
def test_a_malformed_realm_is_a_clear_error(
    realm: str, registry: LocalRegistry, make_front: MakeFront, seeded: Seeded
) -> None:
    front = make_front(registry.url)
    header = f'Bearer realm="{realm}",service="x"'
    front.respond = lambda r: (401, {"WWW-Authenticate": header}, b"")
    with pytest.raises(AuthError, match="realm"):
        api.manifest(front.host, seeded.repo, "latest")


def test_origins_of_malformed_urls_are_tank_errors() -> None:
    for url in ("http://[zz", "http://h:65536/x", "https://[::1:443/"):
        with pytest.raises(TankError):
            Origin.of(url)


class Trickle:
    """A server on loopback that answers every request a byte every 0.2 s: its headers
    (``mode="headers"``) or a manifest body (``mode="body"``), never slow enough for a read
    timeout of 1 s, never finishing."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.host = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        self.sock.settimeout(0.2)
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            conn.recv(65536)
            if self.mode == "headers":
                conn.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: ")
            else:
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.manifest.v1+json"
                    b"\r\nContent-Length: 100000\r\n\r\n{"
                )
            while not self.stop.wait(0.2):
                conn.sendall(b"a" if self.mode == "headers" else b" ")

    def close(self) -> None:
        self.stop.set()
        self.sock.close()


@pytest.mark.parametrize("mode", ["headers", "body"])
def test_a_trickling_server_meets_a_deadline_not_an_endless_wait(mode: str) -> None:
    server = Trickle(mode)
    try:
        transport = Transport(read_timeout=1, proxies={})
        started = time.monotonic()
        with pytest.raises(TankError, match="too slow"):
            api.manifest(server.host, "a/b", "latest", transport=transport, retry=NO_RETRY)
        assert time.monotonic() - started < 10  # the deadline is 4 read timeouts
    finally:
        server.close()


@pytest.fixture(scope="module")
def large_layer(registry: LocalRegistry) -> Image:
    """An image with one 24 MB layer, pushed as library/large:v1."""
    data = b"".join(random_bytes_stream(24_000_000, seed="review"))
    image = make_image([make_layer({"big.bin": data}, compression="none")])
    with Pusher(registry.url) as pusher:
        pusher.push_image("library/large", "v1", image)
    return image


def test_an_index_naming_a_cached_layer_as_a_manifest_is_not_read_into_memory(
    registry: LocalRegistry, make_front: MakeFront, large_layer: Image, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    pull(f"{registry.host}/library/large:v1", cache=cache)
    layer = large_layer.layers[0]
    index = {
        "schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [{
            "mediaType": OCI_MANIFEST, "digest": layer.digest, "size": layer.size,
            "platform": {"os": "linux", "architecture": "amd64"},
        }],
    }
    front = make_front(registry.url)
    body = json.dumps(index).encode()
    front.respond = lambda r: (
        (200, {"Content-Type": OCI_INDEX}, body) if r.path.endswith("/manifests/evil") else None
    )
    tracemalloc.start()
    try:
        with pytest.raises(TankError):
            pull(f"{front.host}/library/large:evil", cache=cache, platform="linux/amd64")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8_000_000, f"{peak} bytes held for a 4 KiB index"
    assert Store(cache).has_blob(layer.digest)  # the cached layer is left alone


def test_a_link_header_is_parsed_in_linear_time_and_capped() -> None:
    started = time.monotonic()
    assert next_link(["<" * 16_000]) is None
    assert next_link([" ;" * 8_000]) is None
    assert next_link(['<a>; title="' + "," * 15_000 + '", <b>; rel=next']) == "b"
    assert time.monotonic() - started < 0.5
    with pytest.raises(RegistryError, match="Link header"):
        next_link(["<" * 32_000])


def test_a_tag_list_that_never_ends_is_capped(
    registry: LocalRegistry, seeded: Seeded, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("tank.registry.repository.MAX_TAGS", 2)
    with pytest.raises(RegistryError, match="past 2 tags"):
        tank.list_tags(f"{registry.host}/{seeded.repo}")
    assert tank.list_tags(f"{registry.host}/{seeded.repo}", limit=2)


# -- 8. error messages: nothing from a server drives the terminal; no URL query is printed ----


def test_control_characters_from_a_server_never_reach_a_message(
    registry: LocalRegistry, make_front: MakeFront, seeded: Seeded
) -> None:
    hostile = "\x1b[2J\x1b]0;pwned\x07evil\r\nline\u202eabc".encode()
    front = make_front(registry.url)
    front.respond = lambda r: (500, {"Content-Type": "text/plain"}, hostile)
    with pytest.raises(RegistryError) as info:
        api.manifest(front.host, seeded.repo, "latest", retry=NO_RETRY)
    text = str(info.value)
    assert "evil" in text
    assert not any(c in text for c in "\x1b\x07\r\n\u202e")
    assert "\\x1b" in text  # shown, inert


def test_a_signed_redirect_url_never_shows_its_query(
    registry: LocalRegistry, make_front: MakeFront, seeded: Seeded
) -> None:
    front = make_front(registry.url)
    signed = "http://127.0.0.1:1/bucket/blob?X-Amz-Credential=AKIA123&X-Amz-Signature=deadbeef"
    front.respond = lambda r: (307, {"Location": signed}, b"") if "/blobs/" in r.path else None
    with pytest.raises(TransportError) as info:
        api.blob(front.host, seeded.repo, seeded.latest.layers[0].digest, retry=NO_RETRY)
    assert "/bucket/blob" in str(info.value)
    assert "X-Amz" not in str(info.value)
    assert "deadbeef" not in str(info.value)
    assert "X-Amz" not in (info.value.url or "")


# -- 9. smaller findings


def test_resuming_an_ingest_file_never_changes_a_file_swapped_in_behind_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ingest file is checked, then replaced by a symlink to a read-only file elsewhere
    before the writer opens it (a race another local user could win): nothing outside the
    cache changes mode."""
    import tank.store.ingest as content

    store = Store(tmp_path / "cache")
    data = b"x" * 1000
    digest = compute(data)
    store.private_dir("ingest")
    ingest = store.root / "ingest" / f"{digest.algorithm}-{digest.hex}.part"
    ingest.write_bytes(data[:500])
    victim = tmp_path / "victim"
    victim.write_bytes(b"do not touch")
    victim.chmod(0o400)
    real = content._regular_stat

    def swap(path: Path) -> os.stat_result | None:
        st = real(path)
        if path == ingest and st is not None:
            path.unlink()
            path.symlink_to(victim)
        return st

    monkeypatch.setattr(content, "_regular_stat", swap)
    with store.writer(digest, len(data)) as writer:
        assert writer is not None
        assert writer.resumed == 0  # the swapped file is not trusted: a fresh start
        writer.write(data)
        writer.commit()
    assert stat.S_IMODE(victim.stat().st_mode) == 0o400
    assert victim.read_bytes() == b"do not touch"
    assert store.read_blob(digest) == data


@pytest.mark.parametrize("host", ["::1", "[::1]", "[::1]:5000", "127.0.0.1", "localhost:80"])
def test_every_spelling_of_loopback_is_loopback(host: str) -> None:
    assert is_loopback(host)


@pytest.mark.parametrize("host", ["::2", "[2001:db8::1]:5000", "10.0.0.1", "example.com"])
def test_other_hosts_are_not_loopback(host: str) -> None:
    assert not is_loopback(host)


@pytest.mark.parametrize("name", ["sub/evil", "../evil", "/tmp/evil"])
def test_a_credential_helper_named_by_a_path_is_refused(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "ran"
    work = tmp_path / "cwd"
    evil = work / f"docker-credential-{name}" if not name.startswith("/") else Path(
        f"docker-credential-{name}"
    )
    if not name.startswith("/"):
        evil.parent.mkdir(parents=True, exist_ok=True)
        evil.write_text(f"#!/bin/sh\ntouch {marker}\necho '{{}}'\n")
        evil.chmod(0o755)
    work.mkdir(exist_ok=True)
    monkeypatch.chdir(work)
    docker = tmp_path / "docker"
    docker.mkdir()
    (docker / "config.json").write_text(json.dumps({"credHelpers": {"r.example": name}}))
    store = CredentialStore({"DOCKER_CONFIG": str(docker), "PATH": "/usr/bin:/bin"})
    with pytest.raises(AuthError, match="not a helper name"):
        store.lookup("r.example")
    assert not marker.exists()
