"""`tank tags` and tank.list_tags / tank.registry.taglist: every page, following Link verbatim.

distribution 2.8.2 ignores ``n`` on tag lists and never pages, so paging is exercised through a
front that splits the registry's real list into pages of three and sets ``Link``, as Quay, ECR
and Docker Hub do.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from urllib.parse import parse_qs, urlsplit

import pytest
import urllib3

from tank._inspect import list_tags
from tank.errors import NotFound, RegistryError
from tank.registry import tag_pages, tags
from tank.testing.fronts import Front, MakeFront, Recorded, Response
from tank.testing.images import Pusher, sample_image
from tank.testing.registry import LocalRegistry
from tank.testing.tokenserver import TokenServer

REPO = "library/tagged"
TAGS = ["v1", "v2", "v3", "beta", "latest", "stable", "edge", "old"]


def tank_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tank", *args], capture_output=True, text=True, timeout=120,
        env=dict(os.environ),
    )


def _push_tags(url: str, token: str | None = None) -> None:
    image = sample_image()
    with Pusher(url, token=token) as pusher:
        pusher.push_image(REPO, TAGS[0], image)
        for tag in TAGS[1:]:
            pusher.push_manifest(REPO, tag, image.manifest, image.media_type)


@pytest.fixture(scope="module")
def tagged(registry: LocalRegistry) -> list[str]:
    """``library/tagged`` with eight tags; returns them in the registry's own order."""
    _push_tags(registry.url)
    http = urllib3.PoolManager()
    doc = json.loads(http.request("GET", f"{registry.url}/v2/{REPO}/tags/list").data)
    assert sorted(doc["tags"]) == sorted(TAGS)
    return list(doc["tags"])


class Pager:
    """Answers ``GET /v2/REPO/tags/list`` in pages of ``size``, from the backend's real list,
    with ``Link: <…>; rel="next"`` (relative, or absolute when ``absolute`` is set)."""

    def __init__(self, front: Front, backend: str, *, size: int = 3,
                 headers: dict[str, str] | None = None, link: str = "relative") -> None:
        self.front, self.backend, self.size, self.link = front, backend, size, link
        self.headers = headers or {}
        self.http = urllib3.PoolManager()
        self.lock = threading.Lock()

    def __call__(self, r: Recorded) -> Response | None:
        split = urlsplit(r.path)
        if r.method != "GET" or not split.path.endswith("/tags/list"):
            return None
        upstream = self.http.request(
            "GET", f"{self.backend}{split.path}",
            headers={k: v for k, v in r.headers.items() if k == "authorization"},
        )
        if upstream.status != 200:
            return (upstream.status, dict(upstream.headers), upstream.data)
        doc = json.loads(upstream.data)
        everything: list[str] = doc["tags"]
        last = parse_qs(split.query).get("last", [None])[0]
        start = everything.index(last) + 1 if last else 0
        page = everything[start:start + self.size]
        headers = {"Content-Type": "application/json", **self.headers}
        if start + self.size < len(everything):
            target = f"{split.path}?n={self.size}&last={page[-1]}"
            if self.link == "absolute":
                target = self.front.url + target
            elif self.link == "other-origin":
                target = "http://127.0.0.9:1" + target
            elif self.link == "loop":
                target = r.path
            headers["Link"] = f'<{target}>; rel="next"'
        return (200, headers, json.dumps({"name": doc["name"], "tags": page}).encode())


def _tag_gets(front: Front) -> list[str]:
    return [r.path for r in front.requests if "/tags/list" in r.path]


def test_three_pages_through_a_paging_front(
    registry: LocalRegistry, make_front: MakeFront, tagged: list[str]
) -> None:
    front = make_front(registry.url)
    front.respond = Pager(front, registry.url)
    found, token = tags(front.host, REPO)
    assert found == tagged
    assert token is None
    assert _tag_gets(front) == [
        f"/v2/{REPO}/tags/list",
        f"/v2/{REPO}/tags/list?n=3&last={tagged[2]}",
        f"/v2/{REPO}/tags/list?n=3&last={tagged[5]}",
    ]


def test_cli_tags_follows_link_to_the_end(
    registry: LocalRegistry, make_front: MakeFront, tagged: list[str]
) -> None:
    front = make_front(registry.url)
    front.respond = Pager(front, registry.url, link="absolute")
    out = tank_cli("tags", f"{front.host}/{REPO}")
    assert out.returncode == 0, out.stderr
    assert out.stdout == "".join(f"{t}\n" for t in tagged)
    assert len(_tag_gets(front)) == 3

    front.reset()
    out = tank_cli("tags", f"{front.host}/{REPO}", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"repository": f"{front.host}/{REPO}", "tags": tagged}


def test_max_stops_fetching(
    registry: LocalRegistry, make_front: MakeFront, tagged: list[str]
) -> None:
    front = make_front(registry.url)
    front.respond = Pager(front, registry.url)
    out = tank_cli("tags", f"{front.host}/{REPO}", "--max", "4")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == tagged[:4]
    assert len(_tag_gets(front)) == 2  # the third page was never asked for
    front.reset()
    assert list_tags(f"{front.host}/{REPO}", limit=3) == tagged[:3]
    assert len(_tag_gets(front)) == 1


def test_link_with_several_relations(
    registry: LocalRegistry, make_front: MakeFront, tagged: list[str]
) -> None:
    front = make_front(registry.url)
    pager = Pager(front, registry.url, size=5)
    front.respond = pager

    def with_prev(r: Recorded) -> Response | None:
        answer = pager(r)
        if answer is not None and "Link" in answer[1]:
            status, headers, body = answer
            headers = {**headers, "Link": f'</v2/{REPO}/tags/list>; rel="prev", '
                                          + headers["Link"].replace('"next"', '"next last"')}
            return status, headers, body
        return answer

    front.respond = with_prev
    assert list_tags(f"{front.host}/{REPO}") == tagged


def test_first_request_sends_n(
    registry: LocalRegistry, make_front: MakeFront, tagged: list[str]
) -> None:
    front = make_front(registry.url)
    pages = list(tag_pages(front.host, REPO, n=50))
    assert [page for page, _ in pages] == [tagged]  # distribution 2.8.2 ignores n
    assert _tag_gets(front) == [f"/v2/{REPO}/tags/list?n=50"]


def test_a_link_to_another_origin_is_refused(
    registry: LocalRegistry, make_front: MakeFront, tagged: list[str]
) -> None:
    front = make_front(registry.url)
    front.respond = Pager(front, registry.url, link="other-origin")
    with pytest.raises(RegistryError, match="another origin"):
        tags(front.host, REPO)
    assert len(_tag_gets(front)) == 1
    out = tank_cli("tags", f"{front.host}/{REPO}")
    assert out.returncode == 1
    assert "another origin" in out.stderr


def test_a_link_that_loops_is_an_error(
    registry: LocalRegistry, make_front: MakeFront, tagged: list[str]
) -> None:
    front = make_front(registry.url)
    front.respond = Pager(front, registry.url, link="loop")
    with pytest.raises(RegistryError, match="do not end"):
        tags(front.host, REPO)


def test_invalid_tags_are_refused(registry: LocalRegistry, make_front: MakeFront) -> None:
    front = make_front(registry.url)
    body = json.dumps({"name": REPO, "tags": ["ok", "\x1b[2Jbad"]}).encode()
    front.respond = lambda r: (200, {"Content-Type": "application/json"}, body)
    with pytest.raises(RegistryError, match="invalid tag"):
        tags(front.host, REPO)


def test_an_empty_or_missing_repository(registry: LocalRegistry, tagged: list[str]) -> None:
    with pytest.raises(NotFound) as exc:
        list_tags(f"{registry.host}/library/absent")
    assert exc.value.codes == ("NAME_UNKNOWN",)
    out = tank_cli("tags", f"{registry.host}/library/absent")
    assert out.returncode == 3
    assert "check the repository name" in out.stderr
    out = tank_cli("tags", f"{registry.host}/{REPO}:v1")
    assert out.returncode == 2
    assert "without a tag" in out.stderr


def test_token_auth_pages_share_one_token(
    token_registry: LocalRegistry, token_server: TokenServer, make_front: MakeFront,
    seeded: object,
) -> None:
    _push_tags(token_registry.url, token_server.push_token(REPO))
    token_server.reset()
    front = make_front(token_registry.url)
    front.respond = Pager(front, token_registry.url)
    out = tank_cli("tags", f"{front.host}/{REPO}")
    assert out.returncode == 0, out.stderr
    assert sorted(out.stdout.split()) == sorted(TAGS)
    assert len(token_server.requests) == 1
    gets = [r for r in front.requests if "/tags/list" in r.path]
    assert len(gets) == 4  # the 401, then three pages with the one token
    assert all("authorization" in r.headers for r in gets[1:])
