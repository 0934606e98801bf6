"""Tag lists over the wire: ``GET /v2/NAME/tags/list`` page by page, following ``Link``.

Each next page is the ``Link: <…>; rel="next"`` target, followed verbatim: relative ones against
the page they came from, absolute ones only on the registry's own origin (the request carries the
token). A page is read up to :data:`MAX_TAG_PAGE` bytes and every tag is checked against the tag
grammar.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urljoin, urlsplit

from tank import _json
from tank.errors import RegistryError
from tank.image import Where
from tank.reference import _TAG
from tank.responses import raise_for_status, read_capped

if TYPE_CHECKING:
    from tank.auth.session import Authenticator

#: a tag list page is read up to this many bytes (a 10 000-tag page is about 0.5 MB)
MAX_TAG_PAGE: Final = 16 * 1024 * 1024
#: pages followed at most, so a registry whose ``Link`` never ends cannot hold tank forever
MAX_TAG_PAGES: Final = 100_000
#: tags gathered at most into one list (memory); iterate the pages to go through more
MAX_TAGS: Final = 1_000_000

#: a ``Link`` header value longer than this is refused (real ones are one URL)
MAX_LINK_HEADER: Final = 16 * 1024


def _split_top(text: str, sep: str) -> list[str]:
    """``text`` split at ``sep`` outside double quotes and ``<…>``; one linear pass."""
    parts: list[str] = []
    start, quoted, angled, i = 0, False, False, 0
    while i < len(text):
        c = text[i]
        if quoted:
            if c == "\\":
                i += 1
            elif c == '"':
                quoted = False
        elif c == '"':
            quoted = True
        elif c == "<":
            angled = True
        elif c == ">":
            angled = False
        elif c == sep and not angled:
            parts.append(text[start:i])
            start = i + 1
        i += 1
    parts.append(text[start:])
    return parts


def _rels(params: list[str]) -> list[str]:
    """The relation types named by a link's ``rel`` parameter(s)."""
    out: list[str] = []
    for param in params:
        name, eq, value = param.partition("=")
        if eq and name.strip().lower() == "rel":
            out += value.strip().strip('"').lower().split()
    return out


def next_link(values: list[str]) -> str | None:
    """The target of the ``rel="next"`` link among ``Link`` header values (RFC 8288), parsed
    in linear time; a value over :data:`MAX_LINK_HEADER` characters is refused."""
    for value in values:
        if len(value) > MAX_LINK_HEADER:
            raise RegistryError(
                f"a Link header of {len(value)} characters (tank reads at most {MAX_LINK_HEADER})"
            )
        for link in _split_top(value, ","):
            target, _, rest = link.strip().partition(">")
            if not target.startswith("<"):
                continue
            if "next" in _rels(_split_top(rest, ";")[1:]):
                return target[1:].strip()
    return None


def same_origin_path(base: str, current: str, link: str, place: Where) -> str:
    """The path and query a ``Link`` target names, joined to ``current`` as written.

    A relative target is resolved against the page it came from; an absolute one must be on the
    registry's own origin (scheme, host and port), since the request carries the token.
    """
    target = urlsplit(urljoin(base + current, link))
    origin = urlsplit(base)

    def port(parts: Any) -> int | None:
        explicit: int | None = parts.port
        return explicit if explicit is not None else {"http": 80, "https": 443}.get(parts.scheme)

    try:
        same = (
            target.scheme.lower() == origin.scheme.lower()
            and (target.hostname or "").lower() == (origin.hostname or "").lower()
            and port(target) == port(origin)
        )
    except ValueError:  # a port that is not a number
        same = False
    if not same:
        raise RegistryError(
            f"the tag list's next page is on another origin ({link!r}); tank follows Link only "
            "on the registry's own origin", **place.kwargs(),
        )
    path = target.path or "/"
    return path + (f"?{target.query}" if target.query else "")


def get_tag_page(auth: Authenticator, path: str) -> tuple[list[str], str | None]:
    """One try at one page: its tags, and the ``Link: <…>; rel="next"`` target (or ``None``)."""
    place = Where(auth.registry, auth.repository, "")
    response = auth.send("GET", path, headers={"Accept": "application/json"})
    raise_for_status(response, what="tag list", **place.kwargs())
    body, complete = read_capped(response, MAX_TAG_PAGE)
    if not complete:
        raise RegistryError(
            f"the tag list page is over the {MAX_TAG_PAGE}-byte limit", **place.kwargs()
        )
    try:
        doc = _json.loads(body)
    except ValueError as exc:
        raise RegistryError(f"the tag list is not valid JSON: {exc}", **place.kwargs()) from None
    raw = doc.get("tags") if isinstance(doc, dict) else None
    if not isinstance(doc, dict) or not isinstance(raw, list | None):
        raise RegistryError(
            "the tag list is not a JSON object with a 'tags' list", **place.kwargs()
        )
    found: list[str] = []
    for tag in raw or []:
        if not isinstance(tag, str) or not _TAG.fullmatch(tag):
            raise RegistryError(
                f"the tag list holds an invalid tag {str(tag)[:140]!r}", **place.kwargs()
            )
        found.append(tag)
    return found, next_link(response.headers.getlist("Link"))


__all__ = [
    "MAX_LINK_HEADER",
    "MAX_TAGS",
    "MAX_TAG_PAGE",
    "MAX_TAG_PAGES",
    "get_tag_page",
    "next_link",
    "same_origin_path",
]
