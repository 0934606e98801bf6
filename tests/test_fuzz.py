"""Parsers fed arbitrary input raise tank's own errors or nothing (hypothesis, derandomized)."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tank import digest, reference
from tank.auth import parse_challenges
from tank.errors import TankError
from tank.image import Index, Where, parse_manifest
from tank.platform import Platform, select

FUZZ = settings(
    max_examples=600, derandomize=True, deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
PLACE = {"registry": "r.io", "repository": "a/b", "reference": "t"}

# text biased towards the characters these grammars care about
_pieces = st.sampled_from(
    [*"abcAB019:/@._-+= ,\"\\\t\n[]%é", "sha256:", "sha512:", "a" * 64, "localhost",
     "docker.io/", "realm=", "Bearer ", "scope="]
)
grammar_text = st.lists(_pieces, max_size=40).map("".join)
any_text = st.one_of(grammar_text, st.text(max_size=200))


@FUZZ
@given(any_text)
def test_reference_parser(text: str) -> None:
    try:
        ref = reference.parse(text)
    except TankError:
        return
    assert reference.parse(str(ref)) == ref  # what parses round-trips


@FUZZ
@given(any_text)
def test_digest_parser(text: str) -> None:
    try:
        d = digest.parse(text)
    except TankError:
        return
    assert d.algorithm in digest.ALGORITHMS


@FUZZ
@given(st.one_of(any_text, st.lists(any_text, max_size=4)))
def test_challenge_parser(value: str | list[str]) -> None:
    for c in parse_challenges(value):  # never raises at all
        assert c.scheme == c.scheme.lower()
        assert all(isinstance(v, str) for v in c.params.values())


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | any_text,
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(st.sampled_from(["mediaType", "digest", "size", "config", "layers",
                                       "manifests", "schemaVersion", "platform", "os",
                                       "architecture", "variant", "annotations", "x"]),
                      children, max_size=6),
    max_leaves=30,
)


def as_bytes(doc: Any) -> bytes:
    return json.dumps(doc).encode()


@FUZZ
@given(st.one_of(json_values.map(as_bytes), st.binary(max_size=200)),
       st.sampled_from([None, "application/json", "application/vnd.oci.image.index.v1+json",
                        "application/vnd.oci.image.manifest.v1+json"]))
def test_manifest_parser(raw: bytes, content_type: str | None) -> None:
    try:
        doc = parse_manifest(raw, content_type, place=Where(**PLACE))
        if isinstance(doc, Index):
            doc.select(Platform("linux", "amd64"), place=Where(**PLACE))
            select(dict(doc.json), Platform("linux", "amd64"), **PLACE)
    except TankError:
        return


@FUZZ
@given(json_values)
def test_platform_from_json(doc: Any) -> None:
    p = Platform.from_json(doc)
    assert p is None or str(Platform.parse(str(p))) == str(p)
