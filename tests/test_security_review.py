"""The security review's findings (issue 12): each class of problem, pinned by a test that failed
on the code before the fix. Numbers follow the review; docs/guarantees.md has a line for each.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time

import pytest

from tank import registry as api
from tank.auth.tokens import TokenCache
from tank.errors import AuthError, TankError, TransportError
from tank.retry import NO_RETRY
from tank.testing.fronts import MakeCDN, MakeFront, Recorded, Response
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


# -- 9. smaller findings -----------------------------------------------------------------------


@pytest.mark.parametrize("host", ["::1", "[::1]", "[::1]:5000", "127.0.0.1", "localhost:80"])
def test_every_spelling_of_loopback_is_loopback(host: str) -> None:
    assert is_loopback(host)


@pytest.mark.parametrize("host", ["::2", "[2001:db8::1]:5000", "10.0.0.1", "example.com"])
def test_other_hosts_are_not_loopback(host: str) -> None:
    assert not is_loopback(host)
