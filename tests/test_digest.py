"""Digest validation, hashing and verification (pure functions)."""

from __future__ import annotations

import hashlib

import pytest

from tank import digest
from tank.errors import DigestMismatch, InvalidDigest, UnsupportedDigest

DATA = b"hello, registry"
SHA256 = "sha256:" + hashlib.sha256(DATA).hexdigest()
SHA512 = "sha512:" + hashlib.sha512(DATA).hexdigest()


def test_parse_valid_digests() -> None:
    d = digest.parse(SHA256)
    assert (d.algorithm, d.hex) == ("sha256", SHA256[7:])
    assert digest.parse(SHA512).algorithm == "sha512"
    assert isinstance(d, str)


@pytest.mark.parametrize(
    "bad",
    [
        "sha256:../../../etc/passwd",
        "sha256:" + "A" * 64,
        "sha256:" + "a" * 63,
        "sha256:" + "a" * 65,
        "sha256:",
        "sha256:" + "a" * 64 + "\n",
        " sha256:" + "a" * 64,
        "sha512:" + "a" * 64,
        "sha256" + "a" * 64,
        "",
    ],
)
def test_malformed_digests_are_refused(bad: str) -> None:
    with pytest.raises(InvalidDigest):
        digest.parse(bad)


@pytest.mark.parametrize("algorithm", ["md5", "sha384", "blake3", "foo"])
def test_unsupported_algorithms_are_errors_not_passes(algorithm: str) -> None:
    with pytest.raises(UnsupportedDigest, match="unsupported algorithm"):
        digest.parse(f"{algorithm}:" + "a" * 64)
    with pytest.raises(UnsupportedDigest):
        digest.Hasher(algorithm)


def test_incremental_hasher_matches_one_shot() -> None:
    h = digest.Hasher()
    for i in range(0, len(DATA), 3):
        h.update(DATA[i : i + 3])
    assert h.digest() == SHA256 == digest.compute(DATA)
    assert h.size == len(DATA)
    assert digest.compute_chunks([DATA[:4], DATA[4:]], "sha512") == SHA512


def test_hasher_copy_is_independent() -> None:
    h = digest.Hasher()
    h.update(DATA[:5])
    c = h.copy()
    c.update(b"other")
    h.update(DATA[5:])
    assert h.digest() == SHA256
    assert c.digest() != SHA256


def test_pipelined_hasher_gives_the_same_digest() -> None:
    chunks = [bytes([i]) * 100_000 for i in range(50)]
    p = digest.PipelinedHasher(digest.Hasher("sha512"), depth=2)
    for c in chunks:
        p.update(c)
    h = p.finish()
    assert h.digest() == digest.compute(b"".join(chunks), "sha512")
    assert h.size == 5_000_000


def test_verify_names_expected_and_actual() -> None:
    assert digest.verify(DATA, SHA256) == SHA256
    assert digest.verify(DATA, SHA512) == SHA512
    with pytest.raises(DigestMismatch) as info:
        digest.verify(DATA + b"!", SHA256, what="blob", registry="r.io", repository="a/b")
    text = str(info.value)
    assert SHA256 in text
    assert "r.io/a/b" in text
    assert info.value.actual == digest.compute(DATA + b"!")
    with pytest.raises(UnsupportedDigest):
        digest.verify(DATA, "md5:" + "0" * 32)
