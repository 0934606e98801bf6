"""One large blob over several connections: ranges, fallbacks, CDN targets, the journal, resume."""

from __future__ import annotations

import contextlib
import os
import re
import threading
from pathlib import Path

import pytest

from support.ranges import fetched
from tank._cancel import Cancel
from tank._pull import ProgressEvent, pull
from tank.config import Config
from tank.digest import Digest
from tank.errors import DigestMismatch, RegistryError, SizeMismatch
from tank.registry import Client
from tank.registry.ranged import Budget, range_size
from tank.retry import RetryPolicy
from tank.store import Store, ingest
from tank.store.ingest import journal_path, merge_ranges, read_journal
from tank.testing.fronts import MakeCDN, MakeFront, Recorded, Response
from tank.testing.images import Blob, Image, Pusher, make_image, make_layer, random_bytes_stream
from tank.testing.registry import LocalRegistry
from tank.transport import Transport

FAST = RetryPolicy(attempts=4, base_delay=0.01, max_delay=0.05)
#: ranges for anything over 256 KiB (16 ranges of 187,500 bytes for the 3 MB layer), split over
#: several connections however fast the first range came (loopback is fast)
CHUNKED = Config(layer_chunk_threshold=256 * 1024, layer_fast_rate=0)
SIZE = 3_000_000


@pytest.fixture(scope="module")
def wide(registry: LocalRegistry) -> Image:
    """An image with one 3 MB layer of incompressible bytes, pushed as library/wide:v1."""
    data = b"".join(random_bytes_stream(SIZE, seed="ranged"))
    image = make_image([make_layer({"opt/wide.bin": data}), make_layer({"etc/y": b"y\n"})])
    with Pusher(registry.url) as pusher:
        pusher.push_image("library/wide", "v1", image)
    return image


def ingest_part(cache: Path, layer: Blob) -> Path:
    """Where the cache ``cache`` keeps ``layer``'s ingest file (its folder made)."""
    ingest = cache / "ingest"
    ingest.mkdir(parents=True, exist_ok=True)
    return ingest / f"sha256-{Digest.parse(layer.digest).hex}.part"


def write_journal(part: Path, layer: Blob, *ranges: tuple[int, int]) -> None:
    """A chunk journal beside ``part`` recording ``ranges`` of ``layer`` as written."""
    body = "".join(f"{start} {end}\n" for start, end in ranges)
    journal_path(part).write_text(f"tank-ingest-journal 1 {layer.digest} {layer.size}\n{body}")


def layer_gets(requests: list[Recorded], digest: str) -> list[Recorded]:
    return [r for r in requests if r.method == "GET" and r.path.split("?")[0].endswith(digest)]


def ranges_of(gets: list[Recorded], size: int = SIZE + 10_000) -> list[tuple[int, int]]:
    """The byte ranges asked (``bytes=a-`` runs to ``size``)."""
    out = []
    for r in gets:
        m = re.fullmatch(r"bytes=(\d+)-(\d*)", r.headers.get("range", ""))
        assert m, r.headers
        out.append((int(m[1]), int(m[2]) + 1 if m[2] else size))
    return out


def test_range_sizes() -> None:
    assert range_size(10 * 2**30, 4, 64 * 2**20) == 32 * 2**20  # at most 32 MiB a request
    assert range_size(100 * 2**20, 4, 64 * 2**20) == 6_553_600  # four ranges per connection
    assert range_size(50 * 2**20, 4, 64 * 2**20) == 4 * 2**20  # at least 4 MiB
    assert range_size(SIZE, 4, 256 * 1024) == 187_500  # a small threshold: small ranges
    assert range_size(SIZE, 1, 256 * 1024) == 750_000


def test_a_large_blob_comes_as_ranges_over_several_connections(
    registry: LocalRegistry, make_front: MakeFront, wide: Image, tmp_path: Path
) -> None:
    layer = wide.layers[0]
    front = make_front(registry.url)
    events: list[ProgressEvent] = []
    image = pull(f"{front.host}/library/wide:v1", cache=tmp_path, config=CHUNKED,
                 layer_connections=4, progress=events.append)
    assert image.blob_path(layer.digest).read_bytes() == layer.data
    gets = layer_gets(front.requests, layer.digest)
    spans = ranges_of(gets, layer.size)
    assert spans[0] == (0, layer.size)  # the first range is asked to the end, read in part
    assert merge_ranges(spans) == [(0, layer.size)]
    assert fetched(spans) == layer.size  # every byte fetched once
    assert len({r.connection_id for r in gets}) > 1  # over several connections
    assert sum(e.amount for e in events if e.kind == "bytes" and e.digest == layer.digest) == (
        layer.size
    )
    assert list((tmp_path / "ingest").iterdir()) == []
    assert Store(tmp_path).verify() == []


def test_a_fast_first_range_keeps_the_blob_on_one_connection(
    registry: LocalRegistry, make_front: MakeFront, wide: Image, tmp_path: Path
) -> None:
    layer = wide.layers[0]
    front = make_front(registry.url)
    fast = Config(layer_chunk_threshold=256 * 1024, layer_fast_rate=1)  # 1 byte/s: always fast
    image = pull(f"{front.host}/library/wide:v1", cache=tmp_path, config=fast)
    assert image.blob_path(layer.digest).read_bytes() == layer.data
    gets = layer_gets(front.requests, layer.digest)
    # the first range is asked to the end: timed fast, it is read on as one plain stream
    assert [r.headers["range"] for r in gets] == [f"bytes=0-{layer.size - 1}"]


def test_a_slow_first_range_opens_the_other_connections(
    registry: LocalRegistry, make_front: MakeFront, wide: Image, tmp_path: Path
) -> None:
    """The default rate: a connection capped at 4 MB/s (as a CDN caps) is slow, so it splits."""
    layer = wide.layers[0]
    front = make_front(registry.url)
    front.rate = 4_000_000
    image = pull(f"{front.host}/library/wide:v1", cache=tmp_path,
                 config=Config(layer_chunk_threshold=256 * 1024))
    assert image.blob_path(layer.digest).read_bytes() == layer.data
    gets = layer_gets(front.requests, layer.digest)
    assert len({r.connection_id for r in gets}) > 1


def test_a_fast_resume_keeps_what_it_holds_in_as_few_ranges_as_possible(
    registry: LocalRegistry, make_front: MakeFront, wide: Image, tmp_path: Path
) -> None:
    layer = wide.layers[0]
    part = ingest_part(tmp_path, layer)
    with part.open("wb") as f:
        f.seek(2_000_000)
        f.write(layer.data[2_000_000:2_100_000])
    write_journal(part, layer, (2_000_000, 2_100_000))
    front = make_front(registry.url)
    fast = Config(layer_chunk_threshold=256 * 1024, layer_fast_rate=1)
    image = pull(f"{front.host}/library/wide:v1", cache=tmp_path, config=fast)
    assert image.blob_path(layer.digest).read_bytes() == layer.data
    asked = ranges_of(layer_gets(front.requests, layer.digest), layer.size)
    step = range_size(layer.size, 4, 256 * 1024)
    assert asked == [(0, step), (step, 2_000_000), (2_100_000, layer.size)]


def test_one_connection_per_blob_is_one_plain_stream(
    registry: LocalRegistry, make_front: MakeFront, wide: Image, tmp_path: Path
) -> None:
    layer = wide.layers[0]
    front = make_front(registry.url)
    pull(f"{front.host}/library/wide:v1", cache=tmp_path, config=CHUNKED, layer_connections=1)
    (get,) = layer_gets(front.requests, layer.digest)
    assert "range" not in get.headers


def test_small_blobs_are_never_split(
    registry: LocalRegistry, make_front: MakeFront, wide: Image, tmp_path: Path
) -> None:
    front = make_front(registry.url)
    pull(f"{front.host}/library/wide:v1", cache=tmp_path, config=CHUNKED)
    (get,) = layer_gets(front.requests, wide.layers[1].digest)
    assert "range" not in get.headers


def whole_blob_for_a_range(layer_digest: str, data: bytes) -> object:
    def respond(r: Recorded) -> Response | None:
        if r.method == "GET" and r.path.endswith(layer_digest):
            return (200, {"Content-Length": str(len(data))}, data)
        return None

    return respond


def test_a_server_that_ignores_range_is_read_as_one_stream(
    registry: LocalRegistry, make_front: MakeFront, wide: Image, tmp_path: Path
) -> None:
    layer = wide.layers[0]
    front = make_front(registry.url)
    front.respond = whole_blob_for_a_range(layer.digest, layer.data)  # type: ignore[assignment]
    image = pull(f"{front.host}/library/wide:v1", cache=tmp_path, config=CHUNKED)
    assert image.blob_path(layer.digest).read_bytes() == layer.data
    assert len(layer_gets(front.requests, layer.digest)) == 1  # never downloaded twice


def test_a_206_for_another_range_is_refused(
    registry: LocalRegistry, make_front: MakeFront, wide: Image, tmp_path: Path
) -> None:
    layer = wide.layers[0]
    front = make_front(registry.url)
    front.respond = lambda r: (
        (206, {"Content-Range": f"bytes 0-{layer.size - 1}/{layer.size}"}, layer.data)
        if r.method == "GET" and r.path.endswith(layer.digest) else None
    )
    with pytest.raises(RegistryError, match="Content-Range"):
        pull(f"{front.host}/library/wide:v1", cache=tmp_path, config=CHUNKED, retry=FAST)
    assert not Store(tmp_path).has_blob(layer.digest)
    assert Store(tmp_path).verify() == []


def test_a_content_range_out_of_another_size_is_a_size_mismatch(
    registry: LocalRegistry, make_front: MakeFront, wide: Image, tmp_path: Path
) -> None:
    layer = wide.layers[0]
    front = make_front(registry.url)

    def other_total(r: Recorded) -> Response | None:
        m = re.fullmatch(r"bytes=(\d+)-(\d+)", r.headers.get("range", ""))
        if r.method != "GET" or not r.path.endswith(layer.digest) or m is None:
            return None
        a, b = int(m[1]), int(m[2])
        return (206, {"Content-Range": f"bytes {a}-{b}/{layer.size + 5}"}, layer.data[a:b + 1])

    front.respond = other_total
    with pytest.raises(SizeMismatch):
        pull(f"{front.host}/library/wide:v1", cache=tmp_path, config=CHUNKED, retry=FAST)
    assert not Store(tmp_path).has_blob(layer.digest)


def test_flipped_bytes_in_one_range_fail_the_blob(
    registry: LocalRegistry, make_front: MakeFront, wide: Image, tmp_path: Path
) -> None:
    layer = wide.layers[0]
    front = make_front(registry.url)
    seventh = 7 * range_size(layer.size, 4, 256 * 1024)
    front.corrupt = lambda r: r.headers.get("range", "").startswith(f"bytes={seventh}-")
    with pytest.raises(DigestMismatch):
        pull(f"{front.host}/library/wide:v1", cache=tmp_path, config=CHUNKED, retry=FAST)
    store = Store(tmp_path)
    assert not store.has_blob(layer.digest)
    assert store.verify() == []
    assert not any(p.suffix in (".part", ".journal") for p in (tmp_path / "ingest").iterdir())


class CutRange:
    """The first GET of the range starting at ``start`` stops after ``cut`` bytes."""

    def __init__(self, digest: str, data: bytes, start: int, cut: int) -> None:
        self.digest, self.data, self.start, self.cut = digest, data, start, cut
        self.done = threading.Event()

    def __call__(self, r: Recorded) -> Response | None:
        m = re.fullmatch(r"bytes=(\d+)-(\d+)", r.headers.get("range", ""))
        if r.method != "GET" or not r.path.endswith(self.digest) or m is None:
            return None
        a, b = int(m[1]), int(m[2])
        if a != self.start or self.done.is_set():
            return None
        self.done.set()
        headers = {"Content-Range": f"bytes {a}-{b}/{len(self.data)}",
                   "Content-Length": str(b - a + 1), "Connection": "close"}
        return (206, headers, self.data[a:a + self.cut])


def test_a_range_cut_off_resumes_from_its_last_byte(
    registry: LocalRegistry, make_front: MakeFront, wide: Image, tmp_path: Path
) -> None:
    layer = wide.layers[0]
    front = make_front(registry.url)
    step = range_size(layer.size, 4, 256 * 1024)
    front.respond = CutRange(layer.digest, layer.data, 3 * step, 1000)
    image = pull(f"{front.host}/library/wide:v1", cache=tmp_path, config=CHUNKED, retry=FAST)
    assert image.blob_path(layer.digest).read_bytes() == layer.data
    asked = ranges_of(layer_gets(front.requests, layer.digest))
    assert (3 * step + 1000, 4 * step) in asked
    assert Store(tmp_path).verify() == []


def test_a_cdn_target_is_reused_for_the_ranges_and_re_resolved_when_it_expires(
    registry: LocalRegistry, make_front: MakeFront, make_cdn: MakeCDN, wide: Image,
    tmp_path: Path,
) -> None:
    layer = wide.layers[0]
    cdn = make_cdn(registry)
    front = make_front(registry.url)
    signed = iter(range(1000))
    front.respond = lambda r: (  # a signed URL on the CDN, for ranges too
        (307, {"Location": f"{cdn.url}/blobs/{layer.digest}?sig={next(signed)}"}, b"")
        if r.method == "GET" and r.path.endswith(layer.digest) else None
    )
    served = 0
    lock = threading.Lock()

    def expire_after_ten(r: Recorded) -> Response | None:
        nonlocal served
        if "range" not in r.headers:
            return None
        with lock:
            served += 1
            if served == 10:  # the signed URL expires once
                return (403, {"Content-Type": "application/xml"}, b"<Error>expired</Error>")
        return None

    cdn.respond = expire_after_ten
    image = pull(f"{front.host}/library/wide:v1", cache=tmp_path, config=CHUNKED, retry=FAST)
    assert image.blob_path(layer.digest).read_bytes() == layer.data
    via_front = layer_gets(front.requests, layer.digest)
    via_cdn = layer_gets(cdn.requests, layer.digest)
    # resolved through the registry for the probe and once more after the 403, no more
    assert 2 <= len(via_front) <= 5
    assert len(via_cdn) > len(via_front) * 3
    assert all("authorization" not in r.headers for r in cdn.requests)


def test_download_blob_over_several_connections(
    registry: LocalRegistry, make_front: MakeFront, wide: Image, tmp_path: Path
) -> None:
    layer = wide.layers[0]
    front = make_front(registry.url)
    repo = Client(front.host).repository("library/wide")
    dest = tmp_path / "layer.tgz"
    n = repo.download_blob(layer.digest, dest, size=layer.size, connections=3,
                           threshold=256 * 1024, fast=0)
    assert n == layer.size
    assert dest.read_bytes() == layer.data
    assert len(layer_gets(front.requests, layer.digest)) > 3
    assert os.listdir(tmp_path) == ["layer.tgz"]


def test_a_connection_budget_of_one_is_one_connection_at_a_time(
    registry: LocalRegistry, make_front: MakeFront, wide: Image, tmp_path: Path
) -> None:
    layer = wide.layers[0]
    front = make_front(registry.url)
    budget = Budget(1)
    budget.acquire()  # the blob's own connection, as the pull's fetcher holds it
    repo = Client(front.host).repository("library/wide")
    store = Store(tmp_path)
    with store.writer(layer.digest, layer.size) as w:
        assert w is not None
        hasher = repo.fetch_blob(layer.digest, w, size=layer.size, connections=4,
                                 threshold=256 * 1024, budget=budget, fast=0)
        w.commit(hasher)
    # one connection at a time: the first (asked to the end, closed after its range), then
    # one more for every other range in turn
    assert len({r.connection_id for r in layer_gets(front.requests, layer.digest)}) == 2


# -- the journal and resuming -----------------------------------------------------------------


def test_an_interrupted_ranged_download_resumes_from_its_journal(
    registry: LocalRegistry, make_front: MakeFront, wide: Image, tmp_path: Path
) -> None:
    layer = wide.layers[0]
    front = make_front(registry.url)
    front.rate = 400_000  # 400 kB/s per connection: stopped well before the end
    cancel = Cancel()
    threading.Timer(0.5, cancel.set).start()
    with pytest.raises(KeyboardInterrupt):
        pull(f"{front.host}/library/wide:v1", cache=tmp_path, config=CHUNKED, cancel=cancel)
    d = Digest.parse(layer.digest)
    part = tmp_path / "ingest" / f"sha256-{d.hex}.part"
    kept = read_journal(journal_path(part), d, layer.size)
    assert kept, "nothing was journaled"
    have = sum(e - s for s, e in kept)
    assert 0 < have < layer.size

    front.rate = None
    front.reset()
    events: list[ProgressEvent] = []
    image = pull(f"{front.host}/library/wide:v1", cache=tmp_path, config=CHUNKED,
                 progress=events.append)
    assert image.blob_path(layer.digest).read_bytes() == layer.data
    asked = ranges_of(layer_gets(front.requests, layer.digest), layer.size)
    for a, b in asked:  # nothing journaled is fetched again
        assert all(b <= s or a >= e for s, e in kept), (a, b, kept)
    assert fetched(asked) == layer.size - have
    resumed = [e.amount for e in events if e.kind == "bytes" and e.digest == layer.digest]
    assert resumed[0] == have  # the head start, reported first
    assert not part.exists()
    assert not journal_path(part).exists()


def test_kept_ranges_that_are_not_the_blobs_start_over(
    registry: LocalRegistry, make_front: MakeFront, wide: Image, tmp_path: Path
) -> None:
    layer = wide.layers[0]
    part = ingest_part(tmp_path, layer)
    wrong = bytearray(layer.data)
    wrong[2_000_000] ^= 0xFF
    part.write_bytes(bytes(wrong[:2_500_000]))
    write_journal(part, layer, (0, 1_000_000), (1_500_000, 2_500_000))
    front = make_front(registry.url)
    events: list[ProgressEvent] = []
    image = pull(f"{front.host}/library/wide:v1", cache=tmp_path, config=CHUNKED,
                 progress=events.append)
    assert image.blob_path(layer.digest).read_bytes() == layer.data
    assert [e.amount for e in events if e.kind == "restarted"] == [layer.size]
    asked = ranges_of(layer_gets(front.requests, layer.digest))
    assert asked[0][0] == 1_000_000  # first only what was missing, then everything again
    assert merge_ranges(asked) == [(0, layer.size)]


def test_a_foreign_or_broken_journal_is_no_journal(tmp_path: Path) -> None:
    d = Digest.parse("sha256:" + "a" * 64)
    other = Digest.parse("sha256:" + "b" * 64)
    path = tmp_path / "j"
    assert read_journal(path, d, 100) == []  # none
    head = f"tank-ingest-journal 1 {d} 100\n"
    cases = {
        head + "0 10\n20 30\n10 20\n": [(0, 30)],
        head + "0 10\n50 6": [(0, 10)],  # a torn last line is ignored
        head + "0 10\nbad\n": None,
        head + "0 200\n": None,  # past the size
        head + "10 10\n": None,  # empty
        f"tank-ingest-journal 1 {other} 100\n0 10\n": None,
        f"tank-ingest-journal 1 {d} 101\n0 10\n": None,
    }
    for text, want in cases.items():
        path.write_text(text)
        assert read_journal(path, d, 100) == want, text
    path.write_text(head)
    assert read_journal(path, d, None) is None


def test_a_journal_describing_more_than_the_file_holds_starts_over(
    registry: LocalRegistry, wide: Image, tmp_path: Path
) -> None:
    layer = wide.layers[0]
    part = ingest_part(tmp_path, layer)
    part.write_bytes(layer.data[:1000])
    write_journal(part, layer, (0, 2_000))
    store = Store(tmp_path)
    with store.writer(layer.digest, layer.size) as w:
        assert w is not None
        assert (w.written, w.resumed, w.held()) == (0, 0, [])
    assert not journal_path(part).exists()


def test_a_journal_that_records_no_range_yet_starts_over(wide: Image, tmp_path: Path) -> None:
    """Killed after the journal's header, before its first range: the bytes at offsets are no
    prefix of the blob, so nothing of them is kept."""
    layer = wide.layers[0]
    part = ingest_part(tmp_path, layer)
    with part.open("wb") as f:
        f.seek(1_000_000)
        f.write(layer.data[1_000_000:1_400_000])
    write_journal(part, layer)
    with Store(tmp_path).writer(layer.digest, layer.size) as w:
        assert w is not None
        assert (w.written, w.resumed, w.held()) == (0, 0, [])
        assert part.stat().st_size == 0
    assert not journal_path(part).exists()


def test_ranges_past_the_end_of_a_truncated_ingest_file_are_dropped(
    wide: Image, tmp_path: Path
) -> None:
    """Killed between the truncation to the prefix and the journal's removal (a ranged download
    going on as one stream): the prefix is kept, the ranges that were cut off are not."""
    layer = wide.layers[0]
    part = ingest_part(tmp_path, layer)
    part.write_bytes(layer.data[:700_000])
    write_journal(part, layer, (0, 700_000), (2_000_000, 2_100_000))
    with Store(tmp_path).writer(layer.digest, layer.size) as w:
        assert w is not None
        assert (w.written, w.resumed, w.held()) == (700_000, 700_000, [])


def test_writing_on_as_one_stream_truncates_before_the_journal_goes(
    wide: Image, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whenever the journal is gone the ingest file is one prefix: held ranges are cut off by
    the first byte appended, and by a restart, before the journal is removed."""
    layer = wide.layers[0]
    part = ingest_part(tmp_path, layer)
    sizes_when_the_journal_went: list[int] = []
    unlink = ingest._unlink

    def watched(path: Path) -> bool:  # what a crash right after the removal would leave
        if path == journal_path(part) and path.exists():
            sizes_when_the_journal_went.append(part.stat().st_size)
        return unlink(path)

    monkeypatch.setattr(ingest, "_unlink", watched)
    for restart in (False, True):
        sizes_when_the_journal_went.clear()
        with part.open("wb") as f:
            f.write(layer.data[:700_000])
            f.seek(2_000_000)
            f.write(layer.data[2_000_000:2_100_000])
        write_journal(part, layer, (0, 700_000), (2_000_000, 2_100_000))
        with contextlib.suppress(KeyboardInterrupt), \
                Store(tmp_path).writer(layer.digest, layer.size) as w:
            assert w is not None
            assert w.held() == [(2_000_000, 2_100_000)]
            if restart:
                w.restart()
                assert part.stat().st_size == 0
            else:
                w.write(layer.data[700_000:800_000])
                assert part.stat().st_size == 800_000
            assert not journal_path(part).exists()
            assert sizes_when_the_journal_went == [0 if restart else 700_000]
            raise KeyboardInterrupt  # interrupted: kept for a resume
        if restart:  # nothing held: nothing kept
            assert not part.exists()
        else:
            assert part.read_bytes() == layer.data[:800_000]


def test_a_single_stream_after_ranges_keeps_the_prefix(
    registry: LocalRegistry, make_front: MakeFront, wide: Image, tmp_path: Path
) -> None:
    """A resume with one connection continues the journaled prefix and drops the rest."""
    layer = wide.layers[0]
    part = ingest_part(tmp_path, layer)
    with part.open("wb") as f:
        f.write(layer.data[:700_000])
        f.seek(2_000_000)
        f.write(layer.data[2_000_000:2_100_000])
    write_journal(part, layer, (2_000_000, 2_100_000), (0, 700_000))
    front = make_front(registry.url)
    image = pull(f"{front.host}/library/wide:v1", cache=tmp_path, config=CHUNKED,
                 layer_connections=1)
    assert image.blob_path(layer.digest).read_bytes() == layer.data
    (get,) = layer_gets(front.requests, layer.digest)
    assert get.headers.get("range") == "bytes=700000-"
    assert not journal_path(part).exists()


def test_a_stalled_range_times_out_and_is_resumed(
    registry: LocalRegistry, make_front: MakeFront, wide: Image, tmp_path: Path
) -> None:
    layer = wide.layers[0]
    front = make_front(registry.url)
    step = range_size(layer.size, 4, 256 * 1024)
    stalled = threading.Event()

    def stall_once(r: Recorded) -> Response | None:
        if r.headers.get("range", "").startswith(f"bytes={2 * step}-") and not stalled.is_set():
            stalled.set()  # 100 bytes of the range, then nothing, the connection left open
            headers = {"Content-Range": f"bytes {2 * step}-{3 * step - 1}/{layer.size}",
                       "Content-Length": str(step)}
            return (206, headers, layer.data[2 * step:2 * step + 100])
        return None

    front.respond = stall_once
    repo = Client(front.host, transport=Transport(read_timeout=0.3)).repository("library/wide")
    dest = tmp_path / "layer"
    repo.with_retry(FAST).download_blob(layer.digest, dest, size=layer.size, connections=4,
                                        threshold=256 * 1024, fast=0)
    assert dest.read_bytes() == layer.data
    assert (2 * step + 100, 3 * step) in ranges_of(layer_gets(front.requests, layer.digest))


def test_bytes_ahead_of_the_hash_are_read_back_when_the_window_is_full(
    registry: LocalRegistry, make_front: MakeFront, wide: Image, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import tank.registry.ranged as ranged

    monkeypatch.setattr(ranged, "HASH_WINDOW", 0)  # only bytes at the frontier stay in memory
    layer = wide.layers[0]
    front = make_front(registry.url)
    image = pull(f"{front.host}/library/wide:v1", cache=tmp_path, config=CHUNKED)
    assert image.blob_path(layer.digest).read_bytes() == layer.data
    assert Store(tmp_path).verify() == []
