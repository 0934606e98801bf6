"""Retries: backoff, jitter, Retry-After, what is and is not retried, and resumed downloads.

Against the real registry through the recording, fault-injecting Front. Policies are small so
the file stays fast; the waits are recorded through ``retry.call(sleep=…)`` where their length is
asserted, and really slept once (``Retry-After: 1``).
"""

from __future__ import annotations

import os
import threading
import time
from email.utils import formatdate
from pathlib import Path

import pytest

from tank import registry as api
from tank import retry
from tank.errors import (
    AuthError,
    DigestMismatch,
    NotFound,
    RegistryError,
    TankError,
    TLSError,
    TransportError,
)
from tank.retry import NO_RETRY, RetryPolicy, is_retryable, parse_retry_after
from tank.testing.fronts import MakeCDN, MakeFront, Recorded, Response
from tank.testing.images import Blob, Pusher
from tank.testing.registry import LocalRegistry
from tank.testing.seed import Seeded
from tank.testing.tls import LocalCA
from tank.testing.tokenserver import TokenServer
from tank.transport import Transport

FAST = RetryPolicy(attempts=4, base_delay=0.05, max_delay=0.2)
JSON = {"Content-Type": "application/json"}


def manifest_requests(front_requests: list[Recorded]) -> list[Recorded]:
    return [r for r in front_requests if "/manifests/" in r.path]


def blob_requests(front_requests: list[Recorded]) -> list[Recorded]:
    return [r for r in front_requests if "/blobs/" in r.path]


class Script:
    """A Front.respond hook that answers the matching requests from a list, then forwards."""

    def __init__(self, match: str, answers: list[Response]) -> None:
        self.match = match
        self.answers = list(answers)
        self.lock = threading.Lock()

    def __call__(self, r: Recorded) -> Response | None:
        if self.match not in r.path:
            return None
        with self.lock:
            return self.answers.pop(0) if self.answers else None


class Sleeps:
    """An injected ``sleep`` that records the delays instead of waiting."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


@pytest.fixture(scope="module")
def big(registry: LocalRegistry) -> Blob:
    """A 3 MiB blob: more than one chunk, so the pipelined hasher's state is what resumes."""
    blob = Blob.of(os.urandom(3 * 1024 * 1024 + 123), "application/octet-stream")
    with Pusher(registry.url) as pusher:
        pusher.push_blob("library/big", blob)
    return blob


# -- Retry-After and backoff against the registry --------------------------------------------


def test_429_with_retry_after_then_503_then_the_manifest(
    registry: LocalRegistry, make_front: MakeFront, seeded: Seeded
) -> None:
    front = make_front(registry.url)
    front.respond = Script(
        "/manifests/", [(429, {"Retry-After": "1"}, b""), (503, JSON, b'{"errors":[]}')]
    )
    started = time.monotonic()
    info, _ = api.manifest(front.host, seeded.repo, "latest", retry=FAST)
    elapsed = time.monotonic() - started
    assert info.raw == seeded.latest.manifest
    assert [r.method for r in manifest_requests(front.requests)] == ["GET"] * 3
    assert elapsed >= 1.0  # really waited as long as the server asked


def test_retry_after_as_an_http_date(
    registry: LocalRegistry, make_front: MakeFront, seeded: Seeded
) -> None:
    front = make_front(registry.url)
    when = formatdate(time.time() + 2, usegmt=True)
    front.respond = Script("/manifests/", [(503, {"Retry-After": when}, b"busy")])
    sleeps = Sleeps()
    info, _ = retry.call(
        lambda: api.manifest(front.host, seeded.repo, "latest", retry=NO_RETRY),
        policy=FAST, what="manifest", sleep=sleeps,
    )
    assert info.raw == seeded.latest.manifest
    (delay,) = sleeps.delays
    assert 1.0 < delay <= 2.0  # the date has whole seconds: between 1 and 2 s from now


def test_429_without_retry_after_backs_off(
    registry: LocalRegistry, make_front: MakeFront, seeded: Seeded
) -> None:
    front = make_front(registry.url)
    front.respond = Script("/manifests/", [(429, {}, b"")] * 3)
    sleeps = Sleeps()
    calls: list[tuple[int, float]] = []
    retry.call(
        lambda: api.manifest(front.host, seeded.repo, "latest", retry=NO_RETRY),
        policy=FAST, what="manifest", sleep=sleeps,
        on_retry=lambda n, exc, d: calls.append((n, d)),
    )
    assert [n for n, _ in calls] == [1, 2, 3]
    assert [d for _, d in calls] == sleeps.delays
    for n, d in enumerate(sleeps.delays, 1):
        ceiling = min(FAST.max_delay, FAST.base_delay * 2 ** (n - 1))
        assert ceiling / 2 <= d <= ceiling


def test_a_503_then_the_blob(
    registry: LocalRegistry, make_front: MakeFront, seeded: Seeded
) -> None:
    front = make_front(registry.url)
    front.respond = Script("/blobs/", [(503, {"Retry-After": "0"}, b"")])
    config = seeded.latest.config
    assert api.blob(front.host, seeded.repo, config.digest, retry=FAST) == config.data
    assert len(blob_requests(front.requests)) == 2


def test_a_permanent_500_gives_up_after_the_attempts(
    registry: LocalRegistry, make_front: MakeFront, seeded: Seeded
) -> None:
    front = make_front(registry.url)
    front.respond = lambda r: (500, JSON, b'{"errors":[{"code":"UNKNOWN","message":"boom"}]}')
    config = seeded.latest.config
    with pytest.raises(RegistryError) as info:
        api.blob(front.host, seeded.repo, config.digest, retry=FAST)
    err = info.value
    assert len(blob_requests(front.requests)) == 4
    assert err.status == 500
    assert err.retried is not None
    assert err.retried[0] == 4
    text = str(err)
    assert "gave up after 4 attempts over" in text
    assert config.digest in text  # what was tried
    assert "(HTTP 500): UNKNOWN: boom" in text  # the message is otherwise the usual one


def test_manifest_head_and_open_blob_are_retried(
    registry: LocalRegistry, make_front: MakeFront, seeded: Seeded
) -> None:
    front = make_front(registry.url)
    front.respond = Script("/manifests/", [(502, {}, b""), (504, {}, b"")])
    head, _ = api.manifest_head(front.host, seeded.repo, "latest", retry=FAST)
    assert head.digest == seeded.latest.manifest_digest
    assert [r.method for r in manifest_requests(front.requests)] == ["HEAD"] * 3

    front.reset()
    front.respond = Script("/blobs/", [(408, {}, b""), (503, {}, b"")])
    layer = seeded.latest.layers[0]
    with api.open_blob(front.host, seeded.repo, layer.digest, retry=FAST) as stream:
        assert b"".join(stream) == layer.data
    assert len(blob_requests(front.requests)) == 3


def test_a_cdn_that_fails_is_asked_again_through_the_registry(
    registry: LocalRegistry, make_front: MakeFront, make_cdn: MakeCDN, seeded: Seeded
) -> None:
    cdn = make_cdn(registry)
    cdn.respond = Script("/blobs/", [(503, {}, b"")])
    front = make_front(registry.url)
    front.redirect_blobs = cdn.url
    layer = seeded.latest.layers[2]
    assert api.blob(front.host, seeded.repo, layer.digest, retry=FAST) == layer.data
    assert len(blob_requests(front.requests)) == 2  # a fresh redirect each time
    assert len(cdn.requests) == 2


# -- never retried ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "headers", "error"),
    [
        (404, JSON, NotFound),
        (401, {"WWW-Authenticate": 'Basic realm="nexus"'}, AuthError),
        (403, JSON, AuthError),
        (400, JSON, RegistryError),
    ],
)
def test_client_errors_are_not_retried(
    status: int, headers: dict[str, str], error: type[RegistryError], registry: LocalRegistry,
    make_front: MakeFront, seeded: Seeded,
) -> None:
    front = make_front(registry.url)
    front.respond = lambda r: (status, headers, b'{"errors":[]}')
    with pytest.raises(error) as info:
        api.manifest(front.host, seeded.repo, "latest", retry=FAST)
    assert len(front.requests) == 1
    assert info.value.retried is None
    assert "gave up" not in str(info.value)


def test_a_certificate_failure_is_not_retried(ca: LocalCA, seeded: Seeded) -> None:
    cert, key = ca.issue("127.0.0.1")
    with LocalRegistry(tls=(cert, key)) as reg:
        untrusted = Transport()
        started = time.monotonic()
        with pytest.raises(TLSError, match="certificate") as info:
            api.manifest(
                reg.host, seeded.repo, "latest", transport=untrusted,
                retry=RetryPolicy(attempts=5, base_delay=2.0),
            )
        assert time.monotonic() - started < 2.0  # no backoff was ever waited
        assert not is_retryable(info.value)
        assert info.value.retried is None


def test_a_refused_redirect_is_not_retried(
    registry: LocalRegistry, make_front: MakeFront, seeded: Seeded
) -> None:
    front = make_front(registry.url)
    front.respond = lambda r: (302, {"Location": "ftp://x/y"}, b"") if "/blobs/" in r.path else None
    with pytest.raises(TransportError, match="not http") as info:
        api.blob(front.host, seeded.repo, seeded.latest.config.digest, retry=FAST)
    assert info.value.permanent
    assert len(blob_requests(front.requests)) == 1


def test_a_digest_mismatch_is_not_retried(
    registry: LocalRegistry, make_front: MakeFront, seeded: Seeded, tmp_path: Path
) -> None:
    front = make_front(registry.url)
    front.corrupt = lambda r: "/blobs/" in r.path
    layer = seeded.latest.layers[2]
    with pytest.raises(DigestMismatch):
        api.download_blob(front.host, seeded.repo, layer.digest, None, tmp_path / "l", retry=FAST)
    assert len(blob_requests(front.requests)) == 1
    assert list(tmp_path.iterdir()) == []


# -- broken bodies: resumed with Range --------------------------------------------------------


def cut_short(blob: Blob, keep: int) -> Response:
    """Promise the whole blob, send ``keep`` bytes, close the connection."""
    return (200, {"Content-Length": str(blob.size), "Connection": "close"}, blob.data[:keep])


def test_a_truncated_body_is_resumed_with_range(
    registry: LocalRegistry, make_front: MakeFront, big: Blob, tmp_path: Path
) -> None:
    front = make_front(registry.url)
    keep = 2 * 1024 * 1024 + 77  # past the first chunk: the hashing thread was running
    front.respond = Script("/blobs/", [cut_short(big, keep)])
    dest = tmp_path / "big"
    n = api.download_blob(front.host, "library/big", big.digest, None, dest, size=big.size,
                          retry=FAST)
    assert n == big.size
    assert dest.read_bytes() == big.data
    first, second = blob_requests(front.requests)
    assert "range" not in first.headers
    assert second.headers["range"] == f"bytes={keep}-"  # answered 206 by the registry
    assert second.connection_id != first.connection_id  # the broken connection was not reused
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big"]


def test_a_resumed_request_answered_200_starts_over(
    registry: LocalRegistry, make_front: MakeFront, seeded: Seeded, tmp_path: Path
) -> None:
    front = make_front(registry.url)
    layer = seeded.latest.layers[2]
    front.respond = Script(
        "/blobs/",
        [cut_short(layer, 3000), (200, {"Content-Type": "application/octet-stream"}, layer.data)],
    )
    dest = tmp_path / "l"
    assert api.download_blob(front.host, seeded.repo, layer.digest, None, dest, retry=FAST) == (
        layer.size
    )
    assert dest.read_bytes() == layer.data
    _, second = blob_requests(front.requests)
    assert second.headers["range"] == "bytes=3000-"


def test_a_wrong_content_range_on_resume_is_an_error(
    registry: LocalRegistry, make_front: MakeFront, seeded: Seeded, tmp_path: Path
) -> None:
    front = make_front(registry.url)
    layer = seeded.latest.layers[2]
    wrong = (206, {"Content-Range": f"bytes 0-{layer.size - 1}/{layer.size}"}, layer.data)
    front.respond = Script("/blobs/", [cut_short(layer, 1000)] + [wrong] * 10)
    with pytest.raises(RegistryError, match="Content-Range") as info:
        api.download_blob(front.host, seeded.repo, layer.digest, None, tmp_path / "l", retry=FAST)
    assert info.value.retried is None
    assert len(blob_requests(front.requests)) == 2
    assert list(tmp_path.iterdir()) == []


def test_a_body_that_keeps_breaking_gives_up(
    registry: LocalRegistry, make_front: MakeFront, seeded: Seeded, tmp_path: Path
) -> None:
    front = make_front(registry.url)
    layer = seeded.latest.layers[2]
    front.respond = lambda r: cut_short(layer, 10) if "/blobs/" in r.path else None
    with pytest.raises(TransportError, match="broke off") as info:
        api.download_blob(front.host, seeded.repo, layer.digest, None, tmp_path / "l", retry=FAST)
    assert "gave up after 4 attempts" in str(info.value)
    ranges = [r.headers.get("range") for r in blob_requests(front.requests)]
    # each 200 restarts the file from 0 and keeps the 10 bytes it sent: resumed from 10 again
    assert ranges == [None, "bytes=10-", "bytes=10-", "bytes=10-"]
    assert list(tmp_path.iterdir()) == []


def test_a_stall_times_out_and_is_resumed(
    registry: LocalRegistry, make_front: MakeFront, seeded: Seeded, tmp_path: Path
) -> None:
    front = make_front(registry.url)
    layer = seeded.latest.layers[2]
    # the promised length never arrives and the connection stays open
    stall = (200, {"Content-Length": str(layer.size)}, layer.data[:100])
    front.respond = Script("/blobs/", [stall])
    dest = tmp_path / "l"
    t = Transport(read_timeout=0.3)
    n = api.download_blob(front.host, seeded.repo, layer.digest, None, dest, transport=t,
                          retry=FAST)
    assert n == layer.size
    assert dest.read_bytes() == layer.data
    _, second = blob_requests(front.requests)
    assert second.headers["range"] == "bytes=100-"


def test_open_blob_does_not_retry_mid_body(
    registry: LocalRegistry, make_front: MakeFront, seeded: Seeded
) -> None:
    front = make_front(registry.url)
    layer = seeded.latest.layers[2]
    front.respond = Script("/blobs/", [cut_short(layer, 1000)])
    got = bytearray()

    def read_all(stream: api.BlobStream) -> None:
        for chunk in stream:
            got.extend(chunk)

    with (
        api.open_blob(front.host, seeded.repo, layer.digest, retry=FAST) as stream,
        pytest.raises(TransportError, match="broke off after 1000 bytes"),
    ):
        read_all(stream)
    assert bytes(got) == layer.data[:1000]
    assert len(blob_requests(front.requests)) == 1
    # the caller resumes with the stream's hash state
    with api.open_blob(
        front.host, seeded.repo, layer.digest, offset=len(got), hasher=stream.hasher
    ) as rest:
        assert got + b"".join(rest) == layer.data
        assert rest.verified


# -- the token endpoint -----------------------------------------------------------------------


def test_token_endpoint_failures_are_retried(
    token_registry: LocalRegistry, token_server: TokenServer, seeded: Seeded
) -> None:
    token_server.fail_next(2, status=503)
    info, token = api.manifest(token_registry.host, seeded.repo, "latest", retry=FAST)
    assert token
    assert info.raw == seeded.latest.manifest
    assert len(token_server.requests) == 3


def test_a_token_endpoint_that_keeps_failing_gives_up(
    token_registry: LocalRegistry, token_server: TokenServer, seeded: Seeded
) -> None:
    token_server.fail_next(10, status=503)
    with pytest.raises(AuthError) as info:
        api.manifest(token_registry.host, seeded.repo, "latest", retry=FAST)
    assert info.value.status == 503
    assert "token endpoint" in str(info.value)
    assert "gave up after 4 attempts" in str(info.value)
    assert len(token_server.requests) == 4  # not retried again by the manifest's own loop


def test_a_token_obtained_before_a_failure_is_reused(
    token_registry: LocalRegistry, token_server: TokenServer, make_front: MakeFront,
    seeded: Seeded,
) -> None:
    front = make_front(token_registry.url)
    failed: list[Recorded] = []

    def fail_once_with_the_token(r: Recorded) -> Response | None:
        if "authorization" in r.headers and not failed:
            failed.append(r)
            return (503, {}, b"")
        return None

    front.respond = fail_once_with_the_token
    _, token = api.manifest(front.host, seeded.repo, "latest", retry=FAST)
    assert token
    assert len(token_server.requests) == 1  # the retry sent the token it already had
    first, with_token, retried = manifest_requests(front.requests)
    assert "authorization" not in first.headers
    assert retried.headers["authorization"] == with_token.headers["authorization"]


def test_a_token_endpoint_4xx_is_not_retried(
    token_registry: LocalRegistry, token_server: TokenServer, seeded: Seeded
) -> None:
    token_server.fail_next(10, status=400)
    with pytest.raises(AuthError) as info:
        api.manifest(token_registry.host, seeded.repo, "latest", retry=FAST)
    assert info.value.status == 400
    assert len(token_server.requests) == 1


# -- unit: parse_retry_after, RetryPolicy, is_retryable, call ---------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("120", 120.0),
        (" 3 ", 3.0),
        ("0", 0.0),
        ("1.5", 1.5),
        ("-5", 0.0),
        ("soon", None),
        ("", None),
        (None, None),
        ("inf", None),
        ("nan", None),
        ("Sun, 09 Sep 2001 01:47:10 GMT", 30.0),  # now = 1_000_000_000 = 01:46:40
        ("Sunday, 09-Sep-01 01:47:10 GMT", 30.0),  # RFC 850, obsolete but allowed
        ("Sun Sep  9 01:47:10 2001", 30.0),  # asctime
        ("Sun, 09 Sep 2001 01:46:00 GMT", 0.0),  # in the past
        ("Sun, 32 Foo 2001 99:99:99 GMT", None),
    ],
)
def test_parse_retry_after(value: str | None, seconds: float | None) -> None:
    assert parse_retry_after(value, now=1_000_000_000) == seconds


def test_parse_retry_after_defaults_to_the_clock() -> None:
    soon = parse_retry_after(formatdate(time.time() + 60, usegmt=True))
    assert soon is not None
    assert 58 <= soon <= 60


def test_backoff_doubles_up_to_the_ceiling_with_jitter() -> None:
    policy = RetryPolicy(attempts=10, base_delay=1.0, max_delay=8.0)
    err = TransportError("reset")
    for attempt, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 8.0), (9, 8.0)]:
        assert policy.backoff(attempt) == ceiling
        samples = [policy.delay(attempt, err) for _ in range(200)]
        assert all(ceiling / 2 <= s <= ceiling for s in samples)
        assert max(samples) - min(samples) > ceiling / 10  # jittered, not constant
    assert RetryPolicy(base_delay=1.0, max_delay=8.0).backoff(10_000) == 8.0  # no overflow


def test_retry_after_is_a_floor_and_is_capped() -> None:
    policy = RetryPolicy(base_delay=0.1, max_delay=1.0, max_retry_after=60.0)

    def asked(seconds: float) -> RegistryError:
        return RegistryError("busy", status=503, retry_after=seconds)

    assert all(policy.delay(1, asked(3.0)) == 3.0 for _ in range(50))  # never jittered below
    assert policy.delay(1, asked(3600.0)) == 60.0  # capped
    zero = [policy.delay(3, asked(0.0)) for _ in range(50)]
    assert all(0.2 <= s <= 0.4 for s in zero)  # "now" still backs off a little
    long_backoff = RetryPolicy(base_delay=10.0, max_delay=10.0)
    assert all(5.0 <= long_backoff.delay(1, asked(1.0)) <= 10.0 for _ in range(50))


def test_policy_validation_and_presets() -> None:
    assert NO_RETRY.attempts == 1
    assert RetryPolicy() == retry.DEFAULT_RETRY
    assert retry.DEFAULT_RETRY.attempts > 1
    with pytest.raises(ValueError, match="attempts"):
        RetryPolicy(attempts=0)
    with pytest.raises(ValueError, match="base_delay"):
        RetryPolicy(base_delay=-1)


def test_is_retryable() -> None:
    assert is_retryable(TransportError("connection reset"))
    assert not is_retryable(TransportError("bad redirect", permanent=True))
    for status in (408, 429, 500, 502, 503, 504, 599):
        assert is_retryable(RegistryError("x", status=status)), status
        assert is_retryable(AuthError("token endpoint", status=status)), status
    for status in (400, 401, 403, 404, 405, 416, 206, 200):
        assert not is_retryable(RegistryError("x", status=status)), status
    assert not is_retryable(NotFound("gone", status=404))
    assert not is_retryable(RegistryError("bad header"))  # no status: not an HTTP failure
    assert not is_retryable(DigestMismatch("sha256:" + "0" * 64, "sha256:" + "1" * 64))
    assert not is_retryable(ValueError("a programming error"))
    assert not is_retryable(KeyError("x"))
    assert not is_retryable(TLSError("https://x/: TLS failure: certificate verify failed"))

    unreachable = AuthError("token endpoint unreachable")
    unreachable.__cause__ = TransportError("cannot connect")
    assert is_retryable(unreachable)

    given_up = TransportError("reset")
    given_up.retried = (4, 1.0)
    assert not is_retryable(given_up)  # an inner loop already gave up on it


def test_call_retries_then_gives_up_with_what_was_tried() -> None:
    tries: list[int] = []

    def flaky() -> str:
        tries.append(1)
        raise TransportError(f"reset #{len(tries)}")

    sleeps = Sleeps()
    seen: list[tuple[int, str, float]] = []
    with pytest.raises(TransportError) as info:
        retry.call(
            flaky, policy=RetryPolicy(attempts=3, base_delay=0.01), what="flaky", sleep=sleeps,
            on_retry=lambda n, exc, d: seen.append((n, str(exc), d)),
        )
    assert len(tries) == 3
    assert [(n, text) for n, text, _ in seen] == [(1, "reset #1"), (2, "reset #2")]
    assert [d for *_, d in seen] == sleeps.delays
    err = info.value
    assert err.retried is not None
    assert err.retried[0] == 3
    assert str(err).startswith("reset #3 (gave up after 3 attempts over ")
    assert str(err).endswith(" s)")


def test_call_returns_what_succeeds_and_raises_the_rest_at_once() -> None:
    answers: list[BaseException | str] = [TransportError("reset"), "ok"]

    def once() -> str:
        answer = answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    sleeps = Sleeps()
    assert retry.call(once, policy=FAST, what="x", sleep=sleeps) == "ok"
    assert len(sleeps.delays) == 1

    def missing() -> None:
        raise NotFound("gone", status=404)

    with pytest.raises(NotFound) as info:
        retry.call(missing, policy=FAST, what="x", sleep=sleeps)
    assert info.value.retried is None
    assert len(sleeps.delays) == 1

    def reset() -> None:
        raise TransportError("r")

    with pytest.raises(TransportError) as no_retry:
        retry.call(reset, policy=NO_RETRY, what="x", sleep=sleeps)
    assert no_retry.value.retried is None  # one try: nothing to say about retries
    assert str(no_retry.value) == "r"


def test_messages_are_unchanged_unless_retried() -> None:
    err = NotFound("manifest not found", registry="r.io", repository="a/b", reference="v1",
                   status=404)
    assert str(err) == "r.io/a/b:v1: manifest not found (HTTP 404)"
    assert err.retry_after is None
    err.retried = (5, 12.345)
    assert str(err) == (
        "r.io/a/b:v1: manifest not found (HTTP 404) (gave up after 5 attempts over 12.3 s)"
    )
    assert str(TankError("plain")) == "plain"
