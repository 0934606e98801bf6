"""Registry authentication: ``WWW-Authenticate`` challenges and the Docker token flow.

:func:`parse_challenges` is a real RFC 7235 tokenizer, not a regex: several challenges in one
header or in several headers, case-insensitive schemes and parameter names, quoted values with
escapes and with commas or spaces inside (``scope="repository:a/b:pull,push"``), unquoted values.

:func:`fetch_token` performs the Docker token exchange
(https://distribution.github.io/distribution/spec/auth/token/): ``GET realm?service=…&scope=…``,
anonymous or with Basic credentials, or the OAuth2 form (``POST``, ``grant_type=password`` or
``refresh_token``), and reads ``token`` (else ``access_token``) from the JSON answer, whose size
is capped. :class:`TokenCache` keeps tokens per (realm, service, scope) until shortly before
they expire.
"""

from __future__ import annotations

import string
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final
from urllib.parse import urlencode, urlsplit

from tank import _json
from tank.errors import AuthError, TransportError
from tank.retry import parse_retry_after
from tank.transport import Origin, Transport, discard, may_send_credentials, release
from tank.transport.deadline import read_small

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence

    from tank.auth.credentials import Credentials

#: a token endpoint's answer is read up to this many bytes
MAX_TOKEN_RESPONSE: Final = 1 << 20
#: Docker's default token lifetime when the answer has no ``expires_in``
DEFAULT_EXPIRES_IN: Final = 60
#: a cached token is renewed this many seconds before it expires (at most; see Token.renew_at)
EXPIRY_MARGIN: Final = 30.0
#: the OAuth2 ``client_id`` tank sends to token endpoints
CLIENT_ID: Final = "tank"
# answers to the OAuth2 form after which docker retries with a plain GET and Basic auth
_OAUTH_FALLBACK: Final = frozenset({400, 401, 404, 405})

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
    """A bearer token and when it stops being good.

    :ivar refresh_token: an OAuth2 refresh token the endpoint granted along with it (asked for
        by ``tank login``; docker stores it as the ``identitytoken``), else ``None``.
    """

    token: str = field(repr=False)
    expires_in: int
    obtained_at: float
    refresh_token: str | None = field(default=None, repr=False)

    @property
    def expires_at(self) -> float:
        """``time.time()`` value after which the registry refuses it."""
        return self.obtained_at + self.expires_in

    @property
    def renew_at(self) -> float:
        """``time.time()`` value from which tank asks for a new one instead: shortly before
        :attr:`expires_at` (a tenth of the lifetime, at most :data:`EXPIRY_MARGIN` seconds)."""
        return self.expires_at - min(EXPIRY_MARGIN, self.expires_in / 10)


# -- the token endpoint ------------------------------------------------------------------------


def _plain_http_refusal(
    realm: str, registry: str | None, repository: str | None
) -> AuthError:
    return AuthError(
        f"refusing to send the credentials for {registry or 'the registry'} to the token "
        f"endpoint {realm}: it is plain HTTP to another host (credentials go only over HTTPS, "
        "or to loopback)", registry=registry, repository=repository,
    )


def _exchange(
    transport: Transport,
    method: str,
    url: str,
    realm: str,
    *,
    headers: dict[str, str],
    body: bytes | None,
    registry: str | None,
    repository: str | None,
) -> tuple[int, bytes, float | None]:
    """One request to the token endpoint: (status, body capped, Retry-After)."""
    send = {"Accept": "application/json", **headers}
    try:
        response = transport.request(
            method, url, headers=send, credentials_origin=Origin.of(realm), body=body,
            secret_body=body is not None,
        )
    except TransportError as exc:
        raise AuthError(
            f"token endpoint {realm} unreachable: {exc}", registry=registry, repository=repository
        ) from exc
    try:
        data = read_small(response, MAX_TOKEN_RESPONSE + 1)
    except Exception as exc:
        discard(response)
        # the cause is a TransportError, so tank.retry treats this like any broken connection
        broken = TransportError(f"{realm}: {exc}", url=realm)
        broken.__cause__ = exc
        raise AuthError(
            f"token endpoint {realm} failed while answering: {exc}",
            registry=registry, repository=repository,
        ) from broken
    if len(data) > MAX_TOKEN_RESPONSE:
        discard(response)
        raise AuthError(
            f"token endpoint {realm} answered more than {MAX_TOKEN_RESPONSE} bytes",
            registry=registry, repository=repository,
        )
    release(response)
    return response.status, data, parse_retry_after(response.headers.get("Retry-After"))


def _refused(
    realm: str,
    status: int,
    data: bytes,
    retry_after: float | None,
    *,
    credentials: Credentials | None,
    registry: str | None,
    repository: str | None,
) -> AuthError:
    detail = data[:300].decode("utf-8", "replace").strip() or "no detail"
    if credentials is not None and status in (401, 403):
        what = f"refused the credentials of {credentials.describe()}"
    else:
        what = "refused the token request"
    return AuthError(
        f"token endpoint {realm} {what}: {detail}",
        registry=registry, repository=repository, status=status, retry_after=retry_after,
    )


def _token_from(
    realm: str, data: bytes, *, registry: str | None, repository: str | None
) -> Token:
    answer = _json.loads_object(
        data, what=f"the answer of token endpoint {realm}",
        error=lambda message: AuthError(message, registry=registry, repository=repository),
    )
    token = answer.get("token") or answer.get("access_token")
    if not isinstance(token, str) or not token:
        raise AuthError(
            f"token endpoint {realm} answered without a token",
            registry=registry, repository=repository,
        )
    expires_in = answer.get("expires_in")
    if not isinstance(expires_in, int) or isinstance(expires_in, bool) or expires_in <= 0:
        expires_in = DEFAULT_EXPIRES_IN
    refresh = answer.get("refresh_token")
    return Token(
        token=token, expires_in=expires_in, obtained_at=time.time(),
        refresh_token=refresh if isinstance(refresh, str) and refresh else None,
    )


def _usable_realm(realm: str) -> bool:
    """Whether ``realm`` is an absolute http(s) URL that parses (host, and a valid port)."""
    try:
        parts = urlsplit(realm)
        _ = parts.port  # ValueError for a port outside 0-65535
    except ValueError:
        return False
    return parts.scheme.lower() in ("http", "https") and bool(parts.hostname)


def fetch_token(
    transport: Transport,
    challenge: Challenge,
    *,
    scopes: Sequence[str] = (),
    registry: str | None = None,
    repository: str | None = None,
    credentials: Credentials | None = None,
    oauth: bool = False,
) -> Token:
    """Exchange a Bearer challenge at its realm for a token, anonymously or with credentials.

    The challenge's own ``scope`` is asked for when it names one, else ``scopes``. How, as
    docker and containerd do it:

    - no credentials: ``GET realm?service=…&scope=…``;
    - an identity token: the OAuth2 form, ``POST`` with ``grant_type=refresh_token``;
    - a username and password: ``GET`` with Basic auth; with ``oauth=True`` (``tank login``)
      first the OAuth2 form, ``POST`` with ``grant_type=password`` and ``access_type=offline``
      (which asks for a refresh token), falling back to the ``GET`` when the endpoint answers
      ``400``, ``401``, ``404`` or ``405`` (GCR, Artifactory, ACR do not take the form).

    Credentials go to the realm only over HTTPS or to loopback (else :class:`AuthError`), never
    to a host the realm redirects to, and never into an error message.

    Raises :class:`~tank.errors.AuthError` when the realm is missing or not http(s), when the
    endpoint fails, refuses or answers without a token. One request (two with the fallback), no
    retries: callers wrap it in :func:`tank.retry.call`, which retries the failures worth it
    (the endpoint unreachable or answering ``408``, ``429`` or ``5xx``; its ``Retry-After`` is
    in ``retry_after``).
    """
    realm = challenge.realm
    if not realm or not _usable_realm(realm):
        raise AuthError(
            f"Bearer challenge without a usable realm ({(realm or '')[:200]!r})",
            registry=registry, repository=repository,
        )
    service = challenge.params.get("service") or ""
    asked = challenge.params.get("scope")
    # GitLab sends several space-separated scopes in one challenge parameter
    wanted = [s for s in (asked.split(" ") if asked else scopes) if s]
    if credentials is not None and not may_send_credentials(realm, Origin.of(realm)):
        raise _plain_http_refusal(realm, registry, repository)

    form_kind = None
    if credentials is not None and credentials.identity_token:
        form_kind = "refresh_token"
    elif credentials is not None and credentials.has_password and oauth:
        form_kind = "password"
    if form_kind is not None and credentials is not None:
        form: list[tuple[str, str]] = [("grant_type", form_kind)]
        if service:
            form.append(("service", service))
        if wanted:
            form.append(("scope", " ".join(wanted)))
        form.append(("client_id", CLIENT_ID))
        if form_kind == "refresh_token":
            form.append(("refresh_token", credentials.identity_token))
        else:
            form += [
                ("username", credentials.username), ("password", credentials.password),
                ("access_type", "offline"),
            ]
        status, data, retry_after = _exchange(
            transport, "POST", realm, realm,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            body=urlencode(form).encode(), registry=registry, repository=repository,
        )
        if status == 200:
            return _token_from(realm, data, registry=registry, repository=repository)
        if not (credentials.has_password and status in _OAUTH_FALLBACK):
            raise _refused(
                realm, status, data, retry_after, credentials=credentials, registry=registry,
                repository=repository,
            )

    query: list[tuple[str, str]] = []
    if service:
        query.append(("service", service))
    query += [("scope", scope) for scope in wanted]
    url = realm + ("&" if "?" in realm else "?") + urlencode(query) if query else realm
    headers: dict[str, str] = {}
    if credentials is not None and credentials.has_password:
        headers["Authorization"] = credentials.basic_header()
    elif credentials is not None:
        credentials = None  # an identity token alone cannot go as Basic: ask anonymously
    status, data, retry_after = _exchange(
        transport, "GET", url, realm, headers=headers, body=None, registry=registry,
        repository=repository,
    )
    if status != 200:
        raise _refused(
            realm, status, data, retry_after, credentials=credentials, registry=registry,
            repository=repository,
        )
    return _token_from(realm, data, registry=registry, repository=repository)


# -- the token cache ----------------------------------------------------------------------------

#: (realm, service, scopes, principal): what one cached token answers
TokenKey = tuple[str, str, str, str]


class TokenCache:
    """Bearer tokens per (realm, service, scope), until shortly before they expire.

    Also keyed by the principal (a fingerprint of the credentials, ``""`` for anonymous), so
    one cache can serve callers with different credentials without ever mixing them up. It
    remembers the challenge each registry last sent (realm and service only), so that a later
    request to that registry carries a token at once instead of collecting a ``401`` first.
    Thread-safe: threads asking for the same key wait for one fetch, then share its token.
    One cache serves a whole :func:`tank.pull`; pass ``token_cache=`` to the registry
    functions to share one across calls.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens: dict[TokenKey, Token] = {}
        self._keys_of: dict[str, TokenKey] = {}
        self._fetching: dict[TokenKey, threading.Lock] = {}
        self._challenges: dict[str, Challenge] = {}

    @staticmethod
    def key(challenge: Challenge, scopes: Iterable[str], principal: str = "") -> TokenKey:
        """The cache key for a token asked at ``challenge``'s realm for ``scopes``."""
        return (
            challenge.realm or "", challenge.params.get("service") or "",
            " ".join(sorted(set(scopes))), principal,
        )

    def get(self, key: TokenKey, *, now: float | None = None) -> Token | None:
        """The cached token for ``key`` when it is not due for renewal, else ``None``."""
        when = time.time() if now is None else now
        with self._lock:
            token = self._tokens.get(key)
        return token if token is not None and when < token.renew_at else None

    def put(self, key: TokenKey, token: Token) -> None:
        """Remember ``token`` for ``key``."""
        with self._lock:
            old = self._tokens.get(key)
            if old is not None:
                self._keys_of.pop(old.token, None)
            self._tokens[key] = token
            self._keys_of[token.token] = key

    def discard(self, token: str) -> None:
        """Forget a token (the registry refused it)."""
        with self._lock:
            key = self._keys_of.pop(token, None)
            held = self._tokens.get(key) if key is not None else None
            if key is not None and held is not None and held.token == token:
                del self._tokens[key]

    def stale(self, token: str, *, now: float | None = None) -> bool:
        """Whether ``token`` came from this cache and is due for renewal (or was discarded).

        A token the cache never saw is not stale: it is the caller's, sent as it is.
        """
        when = time.time() if now is None else now
        with self._lock:
            key = self._keys_of.get(token)
            if key is None:
                return False
            held = self._tokens.get(key)
        return held is None or held.token != token or when >= held.renew_at

    def obtain(
        self, key: TokenKey, fetch: Callable[[], Token], *, refused: str | None = None
    ) -> tuple[Token, bool]:
        """The cached token for ``key``, else one from ``fetch()`` (cached); and whether it
        was fetched now. ``refused`` names a token the registry just refused: never it again.
        """
        with self._lock:
            gate = self._fetching.setdefault(key, threading.Lock())
        with gate:  # one fetch per key at a time; the others then find its token
            if refused is not None:
                self.discard(refused)
            cached = self.get(key)
            if cached is not None and cached.token != refused:
                return cached, False
            token = fetch()
            self.put(key, token)
            return token, True

    def remember_challenge(self, registry: str, challenge: Challenge) -> None:
        """Remember how ``registry`` challenges (scheme, realm and service; not the scope)."""
        kept = {k: v for k, v in challenge.params.items() if k in ("realm", "service")}
        with self._lock:
            self._challenges[registry] = Challenge(challenge.scheme, kept)

    def challenge(self, registry: str) -> Challenge | None:
        """The challenge ``registry`` last sent (without scope or error), if any."""
        with self._lock:
            return self._challenges.get(registry)

    def clear(self) -> None:
        """Forget every token and challenge."""
        with self._lock:
            self._tokens.clear()
            self._keys_of.clear()
            self._challenges.clear()


__all__ = [
    "CLIENT_ID",
    "DEFAULT_EXPIRES_IN",
    "EXPIRY_MARGIN",
    "MAX_TOKEN_RESPONSE",
    "Challenge",
    "Token",
    "TokenCache",
    "TokenKey",
    "fetch_token",
    "parse_challenges",
    "pull_scope",
]
