"""The content-addressed cache: real files, real threads, real processes."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

import pytest

from tank.digest import Digest, Hasher
from tank.errors import (
    CacheMiss,
    DigestMismatch,
    InvalidDigest,
    InvalidReference,
    SizeMismatch,
    UnsupportedDigest,
)
from tank.store import BlobWriter, Store, default_cache_dir

DATA = bytes(range(256)) * 4096  # 1 MiB
DIGEST = "sha256:" + hashlib.sha256(DATA).hexdigest()
SMALL = b'{"schemaVersion": 2}'
SMALL_DIGEST = "sha256:" + hashlib.sha256(SMALL).hexdigest()
SMALL_512 = "sha512:" + hashlib.sha512(SMALL).hexdigest()
INDEX = "application/vnd.oci.image.index.v1+json"


def _files(root: Path) -> list[Path]:
    """Every regular file below ``root``."""
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def _flip_byte(path: Path, offset: int = 10) -> None:
    """Corrupt a (read-only) committed blob in place."""
    path.chmod(0o644)
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))
    path.chmod(0o444)


def _ingest(store: Store, digest: str, data: bytes, *, pieces: int = 4) -> Path | None:
    """Stream ``data`` into the store in ``pieces`` chunks (continuing a leftover ingest file, as
    a puller does); the blob path, or None if cached."""
    with store.writer(digest, len(data)) as w:
        if w is None:
            return None
        hasher = w.prefix_hasher or Digest.parse(digest).hasher()
        step = max(1, len(data) // pieces)
        for i in range(w.resumed, len(data), step):
            chunk = data[i : i + step]
            hasher.update(chunk)
            w.write(chunk)
        return w.commit(hasher)


# -- where the cache lives ---------------------------------------------------------------------


@pytest.mark.skipif(sys.platform != "linux", reason="XDG paths are the Linux convention")
def test_default_cache_dir_honours_tank_cache_then_xdg_then_home(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("TANK_CACHE", str(tmp_path / "tank-cache"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "tank-cache"
    assert Store().root == tmp_path / "tank-cache"

    monkeypatch.delenv("TANK_CACHE")
    assert default_cache_dir() == tmp_path / "xdg" / "tank"

    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "tank"
    assert Store().root == tmp_path / "home" / ".cache" / "tank"
    assert not (tmp_path / "home").exists()  # nothing is created until something is written


# -- writing and reading blobs -----------------------------------------------------------------


def test_writer_commits_a_read_only_verified_blob(tmp_path: Path) -> None:
    store = Store(tmp_path / "cache")
    assert not store.has_blob(DIGEST)
    path = _ingest(store, DIGEST, DATA, pieces=7)

    assert path == store.blob_path(DIGEST) == tmp_path / "cache/blobs/sha256" / DIGEST[7:]
    assert path.read_bytes() == DATA
    assert stat.S_IMODE(path.stat().st_mode) == 0o444
    assert store.has_blob(DIGEST)
    assert store.has_blob(DIGEST, len(DATA))
    assert not store.has_blob(DIGEST, len(DATA) - 1)
    assert store.read_blob(DIGEST) == DATA
    assert _files(tmp_path / "cache/ingest") == []
    # already cached: the writer yields None and nothing is written again
    assert _ingest(store, DIGEST, DATA) is None
    assert list(store.iter_blobs()) == [(DIGEST, path)]


def test_commit_without_a_hasher_hashes_the_ingest_file(tmp_path: Path) -> None:
    store = Store(tmp_path)
    with store.writer(SMALL_512, None) as w:
        assert w is not None
        w.write(memoryview(SMALL))
        assert w.written == len(SMALL)
        path = w.commit()
    assert path == tmp_path / "blobs/sha512" / SMALL_512[7:]
    assert store.read_blob(SMALL_512) == SMALL


def test_read_blob_verifies_and_drops_a_corrupt_file(tmp_path: Path) -> None:
    store = Store(tmp_path)
    path = store.put_bytes(SMALL_DIGEST, SMALL)
    assert store.read_blob(SMALL_DIGEST, max_size=len(SMALL)) == SMALL
    with pytest.raises(SizeMismatch):
        store.read_blob(SMALL_DIGEST, max_size=len(SMALL) - 1)

    _flip_byte(path, 3)
    with pytest.raises(DigestMismatch) as caught:
        store.read_blob(SMALL_DIGEST)
    assert caught.value.expected == SMALL_DIGEST
    assert SMALL_DIGEST in str(caught.value)
    # the damaged file is gone, so the next pull fetches the blob again
    assert not store.has_blob(SMALL_DIGEST)
    assert store.put_bytes(SMALL_DIGEST, SMALL) == path
    assert store.read_blob(SMALL_DIGEST) == SMALL


def test_read_blob_of_a_missing_blob_is_a_cache_miss(tmp_path: Path) -> None:
    store = Store(tmp_path / "cache")
    with pytest.raises(CacheMiss) as caught:
        store.read_blob(DIGEST)
    assert isinstance(caught.value, LookupError)
    assert caught.value.digest == DIGEST
    assert DIGEST in str(caught.value)
    assert not (tmp_path / "cache").exists()


def test_put_bytes_verifies_first_and_is_idempotent(tmp_path: Path) -> None:
    store = Store(tmp_path)
    with pytest.raises(DigestMismatch):
        store.put_bytes(SMALL_DIGEST, SMALL + b" ")
    assert _files(tmp_path) == []
    path = store.put_bytes(SMALL_DIGEST, SMALL)
    inode = path.stat().st_ino
    assert store.put_bytes(SMALL_DIGEST, SMALL) == path
    assert path.stat().st_ino == inode  # not rewritten


def test_commit_with_a_wrong_hash_leaves_nothing(tmp_path: Path) -> None:
    store = Store(tmp_path)
    with store.writer(DIGEST, len(DATA)) as w:
        assert w is not None
        w.write(DATA)
        wrong = Hasher()
        wrong.update(b"\0" * len(DATA))
        with pytest.raises(DigestMismatch) as caught:
            w.commit(wrong)
        assert caught.value.expected == DIGEST
        assert DIGEST in str(caught.value)
        assert w.path.exists()
        part = w.path
    assert not part.exists()
    assert _files(tmp_path / "blobs") == []
    assert _files(tmp_path / "ingest") == []
    assert not store.has_blob(DIGEST)


def test_size_overflow_and_shortfall_are_refused(tmp_path: Path) -> None:
    store = Store(tmp_path)
    with store.writer(DIGEST, 100) as w:
        assert w is not None
        w.write(DATA[:60])
        with pytest.raises(SizeMismatch) as caught:
            w.write(DATA[60:120])
        assert (caught.value.expected, caught.value.actual) == (100, 120)
        assert caught.value.digest == DIGEST
        assert w.written == 60
        with pytest.raises(RuntimeError, match="more than"):
            w.commit(Hasher())

    with store.writer(DIGEST, len(DATA)) as w:
        assert w is not None
        w.write(DATA[:-1])
        hasher = Hasher()
        hasher.update(DATA[:-1])
        with pytest.raises(SizeMismatch):
            w.commit(hasher)

    with store.writer(DIGEST, None) as w:
        assert w is not None
        w.write(DATA)
        hasher = Hasher()
        hasher.update(DATA[:-1])  # the hasher saw other bytes than were written
        with pytest.raises(SizeMismatch):
            w.commit(hasher)
    assert _files(tmp_path / "blobs") == []
    assert _files(tmp_path / "ingest") == []


def _fail_midway(store: Store, seen: list[BlobWriter]) -> None:
    with store.writer(DIGEST, len(DATA)) as w:
        assert w is not None
        seen.append(w)
        w.write(DATA[:1000])
        raise OSError("the network went away")


def test_an_interruption_keeps_the_ingest_file_and_the_next_writer_resumes(
    tmp_path: Path,
) -> None:
    store = Store(tmp_path)
    seen: list[BlobWriter] = []
    with pytest.raises(OSError, match="went away"):
        _fail_midway(store, seen)
    assert seen[0].path.read_bytes() == DATA[:1000]  # kept for a resume
    assert _files(tmp_path / "blobs") == []
    with pytest.raises(RuntimeError, match="closed"):
        seen[0].write(b"late")
    # the lock was released; the next writer continues from byte 1000
    with store.writer(DIGEST, len(DATA)) as w:
        assert w is not None
        assert (w.resumed, w.written) == (1000, 1000)
        assert w.prefix_hasher is not None
        hasher = w.prefix_hasher
        hasher.update(DATA[1000:])
        w.write(DATA[1000:])
        w.commit(hasher)
    assert store.read_blob(DIGEST) == DATA
    assert not seen[0].path.exists()


def test_a_content_error_removes_the_ingest_file(tmp_path: Path) -> None:
    store = Store(tmp_path)

    def ingest_wrong_bytes() -> None:
        with store.writer(DIGEST, len(DATA)) as w:
            assert w is not None
            w.write(DATA[:-1] + b"!")
            w.commit()  # raises out of the block

    with pytest.raises(DigestMismatch):
        ingest_wrong_bytes()
    assert _files(tmp_path / "ingest") == []
    assert _files(tmp_path / "blobs") == []


def test_restart_discards_what_was_written(tmp_path: Path) -> None:
    store = Store(tmp_path)
    seen: list[BlobWriter] = []
    with pytest.raises(OSError, match="went away"):
        _fail_midway(store, seen)
    with store.writer(DIGEST, len(DATA)) as w:
        assert w is not None
        assert w.resumed == 1000
        w.restart()  # the server ignored Range: the whole blob comes again
        assert (w.written, w.prefix_hasher) == (0, None)
        w.write(DATA)
        w.commit()
    assert store.read_blob(DIGEST) == DATA


def test_leaving_the_block_without_commit_removes_the_ingest_file(tmp_path: Path) -> None:
    store = Store(tmp_path)
    with store.writer(DIGEST, len(DATA)) as w:
        assert w is not None
        w.write(DATA)
        part = w.path
    assert not part.exists()
    assert not store.has_blob(DIGEST)


def test_a_cached_blob_of_another_size(tmp_path: Path) -> None:
    store = Store(tmp_path)
    path = store.put_bytes(SMALL_DIGEST, SMALL)
    # intact blob: the declared size is what is wrong
    with pytest.raises(SizeMismatch), store.writer(SMALL_DIGEST, len(SMALL) + 5):
        pass
    assert store.has_blob(SMALL_DIGEST)
    # a truncated (damaged) blob is replaced
    path.chmod(0o644)
    path.write_bytes(SMALL[:5])
    assert _ingest(store, SMALL_DIGEST, SMALL) == path
    assert store.read_blob(SMALL_DIGEST) == SMALL


def test_bytes_from_memory_or_a_file_never_append_to_a_leftover(tmp_path: Path) -> None:
    """An ingest file left by a killed writer (all of the blob, part of it, or other bytes)
    is discarded by the writers that write from the first byte (``put_bytes``,
    ``resume=False``), never appended to."""
    store = Store(tmp_path)
    part = tmp_path / "ingest" / f"sha256-{SMALL_DIGEST[7:]}.part"
    for leftover in (SMALL, SMALL[:7], b"x" * len(SMALL)):
        part.parent.mkdir(parents=True, exist_ok=True)
        part.write_bytes(leftover)
        assert store.put_bytes(SMALL_DIGEST, SMALL) == store.blob_path(SMALL_DIGEST)
        assert store.read_blob(SMALL_DIGEST) == SMALL
        assert not part.exists()
        assert store.remove_blob(SMALL_DIGEST)
    part.write_bytes(SMALL[:7])
    with store.writer(SMALL_DIGEST, len(SMALL), resume=False) as w:
        assert w is not None
        assert (w.written, w.resumed) == (0, 0)
        assert part.stat().st_size == 0
        w.write(SMALL)
        w.commit()
    assert store.read_blob(SMALL_DIGEST) == SMALL


@pytest.mark.parametrize(
    ("bad", "error"),
    [
        ("sha256:../../etc/passwd", InvalidDigest),
        ("sha256:" + "A" * 64, InvalidDigest),
        ("SHA256:" + "a" * 64, InvalidDigest),
        ("sha256:" + "a" * 63, InvalidDigest),
        ("md5:" + "a" * 32, UnsupportedDigest),
        ("../../etc/passwd", InvalidDigest),
    ],
)
def test_invalid_digests_never_reach_a_path(
    tmp_path: Path, bad: str, error: type[InvalidDigest]
) -> None:
    store = Store(tmp_path / "cache")
    with pytest.raises(error):
        store.blob_path(bad)
    with pytest.raises(error):
        store.has_blob(bad)
    with pytest.raises(error):
        store.read_blob(bad)
    with pytest.raises(error), store.writer(bad, 3):
        pass
    with pytest.raises(error):
        store.put_bytes(bad, b"abc")
    with pytest.raises(error):
        store.remove_blob(bad)
    with pytest.raises(error):
        store.set_ref("example.com", "app", "v1", bad, None)
    assert not (tmp_path / "cache").exists()


# -- concurrency -------------------------------------------------------------------------------

_CHILD = r"""
import json, sys, time
from pathlib import Path
from tank.digest import Digest
from tank.store import Store

root, sync, name, digest = sys.argv[1], Path(sys.argv[2]), sys.argv[3], Digest.parse(sys.argv[4])
data = bytes(range(256)) * 4096
store = Store(root)
(sync / f"{name}.ready").touch()
deadline = time.monotonic() + 30
while not (sync / "go").exists():
    if time.monotonic() > deadline:
        sys.exit("never told to go")
    time.sleep(0.002)
asked = time.monotonic()
with store.writer(digest, len(data)) as w:
    entered = time.monotonic()
    if w is None:
        print(json.dumps({"wrote": False, "asked": asked, "entered": entered}))
    else:
        hasher = digest.hasher()
        step = len(data) // 8
        for i in range(0, len(data), step):
            chunk = data[i : i + step]
            hasher.update(chunk)
            w.write(chunk)
            time.sleep(0.06)  # a slow download
        w.commit(hasher)
        done = time.monotonic()
        print(json.dumps({"wrote": True, "asked": asked, "entered": entered, "done": done}))
"""


def test_two_processes_ingesting_one_digest_download_it_once(tmp_path: Path) -> None:
    root, sync = tmp_path / "cache", tmp_path / "sync"
    sync.mkdir()
    children = [
        subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(root), str(sync), name, DIGEST],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("a", "b")
    ]
    try:
        deadline = time.monotonic() + 30
        while not all((sync / f"{n}.ready").exists() for n in ("a", "b")):
            assert time.monotonic() < deadline, "the children did not start"
            assert all(c.poll() is None for c in children), [c.communicate() for c in children]
            time.sleep(0.005)
        (sync / "go").touch()  # both ask for the lock at (nearly) the same moment
        outputs = [c.communicate(timeout=30) for c in children]
    finally:
        for c in children:
            if c.poll() is None:
                c.kill()
                c.wait()
    assert [c.returncode for c in children] == [0, 0], outputs
    reports = [json.loads(out) for out, _ in outputs]
    writers = [r for r in reports if r["wrote"]]
    waiters = [r for r in reports if not r["wrote"]]
    assert len(writers) == 1, reports
    assert len(waiters) == 1, reports
    writer, waiter = writers[0], waiters[0]
    # the second asked while the first was still writing, and got the lock only after the commit
    assert waiter["asked"] < writer["done"]
    assert waiter["entered"] >= writer["done"]

    store = Store(root)
    assert store.read_blob(DIGEST) == DATA
    assert store.verify() == []
    assert _files(root / "ingest") == []


def test_eight_threads_ingesting_one_digest_write_it_once(tmp_path: Path) -> None:
    store = Store(tmp_path)
    barrier = threading.Barrier(8)
    results: list[bool] = []
    errors: list[BaseException] = []
    guard = threading.Lock()

    def work() -> None:
        try:
            barrier.wait()
            with store.writer(DIGEST, len(DATA)) as w:
                if w is not None:
                    hasher = Hasher()
                    for i in range(0, len(DATA), len(DATA) // 4):
                        chunk = DATA[i : i + len(DATA) // 4]
                        hasher.update(chunk)
                        w.write(chunk)
                        time.sleep(0.02)
                    w.commit(hasher)
                with guard:
                    results.append(w is not None)
        except BaseException as exc:
            with guard:
                errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert errors == []
    assert sorted(results) == [False] * 7 + [True]
    assert store.read_blob(DIGEST) == DATA
    assert _files(tmp_path / "ingest") == []


# -- refs --------------------------------------------------------------------------------------


def test_refs_round_trip(tmp_path: Path) -> None:
    store = Store(tmp_path)
    assert store.get_ref("127.0.0.1:5000", "team/sub/app", "v1.2") is None
    store.set_ref("127.0.0.1:5000", "team/sub/app", "v1.2", DIGEST, INDEX)

    record = store.get_ref("127.0.0.1:5000", "team/sub/app", "v1.2")
    assert record is not None
    assert (record.digest, record.media_type) == (DIGEST, INDEX)
    assert isinstance(record.digest, Digest)
    assert datetime.fromisoformat(record.updated).tzinfo is not None
    path = tmp_path / "refs/127.0.0.1:5000/team/sub/app/v1.2.json"
    assert json.loads(path.read_text())["digest"] == DIGEST

    # overwritten atomically, no temporary files left beside it
    store.set_ref("127.0.0.1:5000", "team/sub/app", "v1.2", SMALL_512, None)
    record = store.get_ref("127.0.0.1:5000", "team/sub/app", "v1.2")
    assert record is not None
    assert (record.digest, record.media_type) == (SMALL_512, None)
    assert [p.name for p in path.parent.iterdir()] == ["v1.2.json"]

    # other tags and repositories are separate; a tag never collides with a nested repository
    assert store.get_ref("127.0.0.1:5000", "team/sub", "app") is None
    assert store.get_ref("127.0.0.1:5000", "team/sub/app", "latest") is None
    store.set_ref("127.0.0.1:5000", "team/sub", "app", DIGEST, None)
    assert store.get_ref("127.0.0.1:5000", "team/sub/app", "v1.2") is not None

    # Docker Hub's aliases are one registry
    store.set_ref("docker.io", "library/alpine", "3", DIGEST, INDEX)
    assert store.get_ref("registry-1.docker.io", "library/alpine", "3") is not None


@pytest.mark.parametrize(
    ("registry", "repository", "tag"),
    [
        ("example.com", "../x", "v1"),
        ("example.com", "a/../../x", "v1"),
        ("example.com", "/abs", "v1"),
        ("example.com", "Upper/case", "v1"),
        ("example.com", "app", "../x"),
        ("example.com", "app", ".hidden"),
        ("example.com", "app", "a/b"),
        ("example.com", "app", ""),
        ("..", "app", "v1"),
        ("evil.com/..", "app", "v1"),
        ("", "app", "v1"),
    ],
)
def test_refs_refuse_path_traversal(
    tmp_path: Path, registry: str, repository: str, tag: str
) -> None:
    store = Store(tmp_path / "cache")
    with pytest.raises(InvalidReference):
        store.set_ref(registry, repository, tag, DIGEST, None)
    with pytest.raises(InvalidReference):
        store.get_ref(registry, repository, tag)
    assert not (tmp_path / "cache").exists()


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"\xff\xfe",
        b"[1, 2]",
        b'{"digest": "sha256:../../etc/passwd", "mediaType": null, "updated": "x"}',
        b'{"digest": "' + DIGEST.encode() + b'", "mediaType": 7, "updated": "x"}',
        b'{"digest": "' + DIGEST.encode() + b'", "mediaType": null}',
        b'{"digest": "' + DIGEST.encode() + b'", "updated": "' + b" " * 70000 + b'"}',
    ],
)
def test_a_corrupt_ref_record_reads_as_none(tmp_path: Path, body: bytes) -> None:
    store = Store(tmp_path)
    store.set_ref("example.com", "app", "v1", DIGEST, None)
    (tmp_path / "refs/example.com/app/v1.json").write_bytes(body)
    assert store.get_ref("example.com", "app", "v1") is None


# -- verify and clean --------------------------------------------------------------------------


def test_verify_finds_damage_and_passes_a_clean_store(tmp_path: Path) -> None:
    store = Store(tmp_path)
    assert store.verify() == []
    big = _ingest(store, DIGEST, DATA)
    assert big is not None
    small = store.put_bytes(SMALL_512, SMALL)
    assert store.verify() == []
    assert sorted(d for d, _ in store.iter_blobs()) == sorted([DIGEST, SMALL_512])

    _flip_byte(big, len(DATA) - 1)
    (tmp_path / "blobs/sha256/not-a-digest").write_bytes(b"junk")
    (tmp_path / "blobs/md5").mkdir()
    (tmp_path / "blobs/md5" / ("0" * 32)).write_bytes(b"junk")
    (tmp_path / "blobs/sha256" / ("a" * 64)).mkdir()

    problems = {p.digest: p for p in store.verify()}
    assert set(problems) == {
        DIGEST, "sha256:not-a-digest", "md5:" + "0" * 32, "sha256:" + "a" * 64,
    }
    flipped = problems[DIGEST]
    assert flipped.path == big
    assert flipped.actual is not None
    assert flipped.actual != DIGEST
    assert flipped.actual in flipped.reason
    assert problems["sha256:not-a-digest"].actual is None
    assert "not a valid digest" in problems["sha256:not-a-digest"].reason
    assert "not a regular file" in problems["sha256:" + "a" * 64].reason
    assert small.exists()
    # only well-named regular files are blobs
    assert sorted(d for d, _ in store.iter_blobs()) == sorted([DIGEST, SMALL_512])


def test_clean_ingest_removes_stale_files_but_not_a_download_in_progress(tmp_path: Path) -> None:
    store = Store(tmp_path)
    assert store.clean_ingest() == 0
    ingest = tmp_path / "ingest"
    ingest.mkdir()
    stale = ingest / f"sha256-{SMALL_DIGEST[7:]}.part"
    stale.write_bytes(b"half a blo")
    stale.chmod(0o444)  # a crash between chmod and rename
    unrelated = ingest / "README"
    unrelated.write_text("not an ingest file")

    with store.writer(DIGEST, len(DATA)) as w:
        assert w is not None
        w.write(DATA[:1000])
        assert store.clean_ingest() == 1
        assert not stale.exists()
        assert w.path.exists()  # its lock is held: left alone
        w.write(DATA[1000:])
        hasher = Hasher()
        hasher.update(DATA)
        w.commit(hasher)
    assert store.read_blob(DIGEST) == DATA
    assert unrelated.exists()
    assert store.clean_ingest() == 0

    # a leftover that is not a prefix of the blob fails verification once, and is then gone
    stale.write_bytes(b"junk")
    stale.chmod(0o444)
    with pytest.raises(DigestMismatch):
        _ingest(store, SMALL_DIGEST, SMALL)
    assert not stale.exists()
    assert _ingest(store, SMALL_DIGEST, SMALL) is not None
    assert store.read_blob(SMALL_DIGEST) == SMALL


def test_replace_rewrites_a_cached_blob(tmp_path: Path) -> None:
    store = Store(tmp_path)
    path = store.put_bytes(SMALL_DIGEST, SMALL)
    inode = path.stat().st_ino
    with store.writer(SMALL_DIGEST, len(SMALL), replace=True) as w:
        assert w is not None
        assert path.read_bytes() == SMALL  # the old blob stays until the commit
        w.write(SMALL)
        w.commit()
    assert path.stat().st_ino != inode
    assert stat.S_IMODE(path.stat().st_mode) == 0o444
    assert store.read_blob(SMALL_DIGEST) == SMALL


def test_remove_blob(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.put_bytes(SMALL_DIGEST, SMALL)
    assert store.remove_blob(SMALL_DIGEST)
    assert not store.has_blob(SMALL_DIGEST)
    assert not store.remove_blob(SMALL_DIGEST)


def test_store_root_is_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    store = Store("rel")
    assert store.root == tmp_path / "rel"
    assert os.path.isabs(store.blob_path(DIGEST))
