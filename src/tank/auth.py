"""Registry authentication: ``WWW-Authenticate`` challenges and the Docker token flow.

:func:`parse_challenges` is a real RFC 7235 tokenizer, not a regex: several challenges in one
header or in several headers, case-insensitive schemes and parameter names, quoted values with
escapes and with commas or spaces inside (``scope="repository:a/b:pull,push"``), unquoted values.

:func:`fetch_token` performs the Docker token exchange
(https://distribution.github.io/distribution/spec/auth/token/): ``GET realm?service=…&scope=…``
and reads ``token`` (else ``access_token``) from the JSON answer, whose size is capped.
"""

from __future__ import annotations

import json
import string
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final
from urllib.parse import urlencode, urlsplit

from tank.errors import AuthError, TransportError
from tank.retry import parse_retry_after
from tank.transport import Transport, discard, release

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

#: a token endpoint's answer is read up to this many bytes
MAX_TOKEN_RESPONSE: Final = 1 << 20
#: Docker's default token lifetime when the answer has no ``expires_in``
DEFAULT_EXPIRES_IN: Final = 60

_TCHAR: Final = frozenset(string.ascii_letters + string.digits + "!#$%&'*+-.^_`|~")


@dataclass(frozen=True)
class Challenge:
    """One challenge: a scheme (lower case) and its parameters (names lower case)."""

    scheme: str
    params: dict[str, str] = field(default_factory=dict)

    @property
    def realm(self) -> str | None:
        """The ``realm`` parameter."""
        return self.params.get("realm")


class _Scanner:
    def __init__(self, text: str) -> None:
        self.s = text
        self.i = 0

    def at_end(self) -> bool:
        return self.i >= len(self.s)

    def peek(self) -> str:
        return self.s[self.i] if self.i < len(self.s) else ""

    def skip_ws(self) -> None:
        while self.peek() in (" ", "\t") and not self.at_end():
            self.i += 1

    def token(self) -> str:
        start = self.i
        while not self.at_end() and self.s[self.i] in _TCHAR:
            self.i += 1
        return self.s[start : self.i]

    def bare(self) -> str:
        # an unquoted value: RFC 7235 says token, but real servers send URLs unquoted too
        start = self.i
        while not self.at_end() and self.s[self.i] not in ', \t"':
            self.i += 1
        return self.s[start : self.i]

    def quoted(self) -> str:
        # precondition: at '"'
        self.i += 1
        out: list[str] = []
        while not self.at_end():
            c = self.s[self.i]
            self.i += 1
            if c == "\\" and not self.at_end():
                out.append(self.s[self.i])
                self.i += 1
            elif c == '"':
                break
            else:
                out.append(c)
        return "".join(out)

    def skip_to_comma(self) -> None:
        while not self.at_end() and self.s[self.i] != ",":
            if self.s[self.i] == '"':
                self.quoted()
            else:
                self.i += 1


def _parse_one(text: str) -> list[Challenge]:
    sc = _Scanner(text)
    challenges: list[Challenge] = []
    while True:
        while sc.peek() in (",", " ", "\t") and not sc.at_end():
            sc.i += 1
        if sc.at_end():
            break
        scheme = sc.token()
        if not scheme:
            sc.skip_to_comma()
            continue
        params: dict[str, str] = {}
        sc.skip_ws()
        while not sc.at_end():
            sc.skip_ws()
            save = sc.i
            name = sc.token()
            if not name:
                if sc.peek() == ",":
                    sc.i += 1
                    continue
                # token68 or junk: not something tank needs; skip it
                sc.skip_to_comma()
                continue
            sc.skip_ws()
            if sc.peek() != "=":
                sc.i = save  # a token not followed by '=' starts the next challenge
                break
            sc.i += 1
            sc.skip_ws()
            value = sc.quoted() if sc.peek() == '"' else sc.bare()
            params.setdefault(name.lower(), value)
            sc.skip_ws()
            if sc.peek() == ",":
                sc.i += 1
            elif not sc.at_end():
                sc.skip_to_comma()
        challenges.append(Challenge(scheme.lower(), params))
    return challenges


def parse_challenges(headers: str | Iterable[str]) -> list[Challenge]:
    """Every challenge in one ``WWW-Authenticate`` value or in several, in order.

    >>> [c.scheme for c in parse_challenges('Basic realm="a, b", Bearer realm="https://t/x"')]
    ['basic', 'bearer']
    """
    values = [headers] if isinstance(headers, str) else list(headers)
    out: list[Challenge] = []
    for value in values:
        out.extend(_parse_one(value))
    return out


def pull_scope(repository: str) -> str:
    """The token scope that lets a client pull ``repository``."""
    return f"repository:{repository}:pull"


@dataclass(frozen=True)
class Token:
    """A bearer token and when it stops being good."""

    token: str
    expires_in: int
    obtained_at: float

    @property
    def expires_at(self) -> float:
        """``time.time()`` value after which the registry refuses it."""
        return self.obtained_at + self.expires_in


def fetch_token(
    transport: Transport,
    challenge: Challenge,
    *,
    scopes: Sequence[str] = (),
    registry: str | None = None,
    repository: str | None = None,
) -> Token:
    """Exchange a Bearer challenge at its realm for an anonymous token.

    The challenge's own ``scope`` is asked for when it names one, else ``scopes``. Raises
    :class:`~tank.errors.AuthError` when the realm is missing or not http(s), when the endpoint
    fails or answers without a token. One request, no retries: callers wrap it in
    :func:`tank.retry.call`, which retries the failures worth it (the endpoint unreachable or
    answering ``408``, ``429`` or ``5xx``; its ``Retry-After`` is in ``retry_after``).
    """
    realm = challenge.realm
    if not realm or urlsplit(realm).scheme.lower() not in ("http", "https"):
        raise AuthError(
            f"Bearer challenge without a usable realm ({realm!r})",
            registry=registry, repository=repository,
        )
    query: list[tuple[str, str]] = []
    if challenge.params.get("service"):
        query.append(("service", challenge.params["service"]))
    asked = challenge.params.get("scope")
    # GitLab sends several space-separated scopes in one challenge parameter
    for scope in (asked.split(" ") if asked else scopes):
        if scope:
            query.append(("scope", scope))
    url = realm + ("&" if "?" in realm else "?") + urlencode(query) if query else realm
    try:
        response = transport.request("GET", url, headers={"Accept": "application/json"})
    except TransportError as exc:
        raise AuthError(
            f"token endpoint {realm} unreachable: {exc}", registry=registry, repository=repository
        ) from exc
    try:
        body = response.read(MAX_TOKEN_RESPONSE + 1, decode_content=True)
    except Exception as exc:
        discard(response)
        # the cause is a TransportError, so tank.retry treats this like any broken connection
        broken = TransportError(f"{url}: {exc}", url=url)
        broken.__cause__ = exc
        raise AuthError(
            f"token endpoint {realm} failed while answering: {exc}",
            registry=registry, repository=repository,
        ) from broken
    if len(body) > MAX_TOKEN_RESPONSE:
        discard(response)
        raise AuthError(
            f"token endpoint {realm} answered more than {MAX_TOKEN_RESPONSE} bytes",
            registry=registry, repository=repository,
        )
    release(response)
    if response.status != 200:
        detail = body[:300].decode("utf-8", "replace").strip()
        raise AuthError(
            f"token endpoint {realm} refused the token request: {detail or 'no detail'}",
            registry=registry, repository=repository, status=response.status,
            retry_after=parse_retry_after(response.headers.get("Retry-After")),
        )
    try:
        answer = json.loads(body)
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        raise AuthError(
            f"token endpoint {realm} answered something that is not a JSON object",
            registry=registry, repository=repository,
        )
    token = answer.get("token") or answer.get("access_token")
    if not isinstance(token, str) or not token:
        raise AuthError(
            f"token endpoint {realm} answered without a token",
            registry=registry, repository=repository,
        )
    expires_in = answer.get("expires_in")
    if not isinstance(expires_in, int) or expires_in <= 0:
        expires_in = DEFAULT_EXPIRES_IN
    return Token(token=token, expires_in=expires_in, obtained_at=time.time())


__all__ = [
    "DEFAULT_EXPIRES_IN",
    "MAX_TOKEN_RESPONSE",
    "Challenge",
    "Token",
    "fetch_token",
    "parse_challenges",
    "pull_scope",
]
