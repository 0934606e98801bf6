"""One repository's conversation with a registry's authentication: the ``401`` dance.

An :class:`Authenticator` sends a request and answers the registry's challenges, the way docker
and containerd do:

- Authorization, in order: the token it holds, unless the :class:`~tank.auth.tokens.TokenCache`
  issued it and it is due for renewal; else, for a registry whose challenge the cache remembers, a
  cached or freshly fetched token (Bearer) or the credentials (Basic), without waiting for a
  ``401``.
- ``401`` with ``Bearer``: a token for the scope the challenge names (else this session's scopes),
  from the cache unless it is the one just refused, else from the realm, with the credentials
  when there are any (:func:`~tank.auth.tokens.fetch_token`). A second ``401`` for a token fetched
  for that same scope is an :class:`~tank.errors.AuthError`; a challenge asking for another scope
  (``error="insufficient_scope"``, as GitLab and Docker Hub send for cross-repository access) gets
  one more token.
- ``401`` with ``Basic`` (only when no Bearer is offered): the credentials, once, and only over
  HTTPS or to loopback; a second ``401`` means they are wrong.
- Anything else, or Basic without credentials: an :class:`~tank.errors.AuthError` that says so.

Credentials never appear in an error, go only to the registry's own origin and its token realm,
and never over plain HTTP to another machine (see :mod:`tank.transport`).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from tank.auth.credentials import LazyCredentials, resolver
from tank.auth.tokens import Challenge, TokenCache, TokenKey, fetch_token, parse_challenges
from tank.errors import AuthError, TransportError
from tank.reference import DOCKER_HUB, DOCKER_HUB_API
from tank.responses import MAX_ERROR_BODY, error_details, read_capped
from tank.retry import DEFAULT_RETRY, RetryPolicy, call
from tank.transport import Origin, Transport, discard, may_send_credentials
from tank.transport.origins import strip_query

if TYPE_CHECKING:
    from urllib3 import BaseHTTPResponse

    from tank.auth.credentials import Credentials
    from tank.errors import RegistryErrorDetail
    from tank.transport.client import Body

#: how many challenges one request answers at most (a registry that never settles is refused)
MAX_ROUNDS = 3


def login_hint(registry: str) -> str:
    """How to give tank credentials for ``registry``."""
    host = DOCKER_HUB if registry == DOCKER_HUB_API else registry
    return f"log in with `tank login {host}`, or pass credentials= to the library"


def repository_scope(repository: str, actions: Sequence[str] = ("pull",)) -> str:
    """The token scope for ``actions`` on ``repository``: ``repository:NAME:pull,push``."""
    return f"repository:{repository}:{','.join(actions)}"


class _Round:
    """What one :meth:`Authenticator.send` has done so far (tokens fetched, Basic sent)."""

    def __init__(self) -> None:
        self.fresh: set[TokenKey] = set()
        self.sent_basic = False
        self.rounds = 0


class Authenticator:
    """Authentication for one repository (or the registry's root, ``repository=""``).

    :param transport: the connection pool.
    :param registry: ``host[:port]`` as the transport addresses it.
    :param repository: the repository whose scopes tokens are asked for (``""``: none).
    :param credentials: ``(username, password)``, :class:`~tank.auth.credentials.Credentials`,
        a credential source, or ``None`` (anonymous); looked up on the first challenge only.
    :param token_cache: tokens and challenges shared with other sessions (default: its own).
    :param token: a bearer token to start with (the stateless functions' ``token=``).
    :param retry: how the token endpoint is retried.
    :param oauth: ask the token endpoint for a refresh token (``tank login``).

    Thread-safe: threads of one pull share an authenticator; the token they hold is replaced as
    soon as a new one is obtained, so every thread picks it up on its next request.
    """

    def __init__(
        self,
        transport: Transport,
        registry: str,
        repository: str = "",
        *,
        credentials: object = None,
        token_cache: TokenCache | None = None,
        token: str | None = None,
        retry: RetryPolicy = DEFAULT_RETRY,
        oauth: bool = False,
        insecure: bool = False,
    ) -> None:
        self.transport = transport
        #: plain HTTP or unverified TLS allowed for this registry (its configuration entry)
        self.insecure = insecure
        self.registry = registry
        self.repository = repository
        self.credentials = credentials if isinstance(credentials, LazyCredentials) else (
            resolver(credentials, registry, repository or None)
        )
        self.cache = token_cache if token_cache is not None else TokenCache()
        self.token = token
        self.retry = retry
        self.oauth = oauth
        #: the actions tokens are asked for on :attr:`repository` (a push adds ``push``)
        self.actions: tuple[str, ...] = ("pull",)
        #: more scopes to ask for along (a cross-repository mount reads its source)
        self.extra_scopes: tuple[str, ...] = ()
        #: a refresh token the token endpoint granted (asked for with ``oauth``)
        self.refresh_token: str | None = None

    def scopes(self) -> list[str]:
        """The scopes a token for this session is asked for when a challenge names none."""
        own = [repository_scope(self.repository, self.actions)] if self.repository else []
        return own + [s for s in self.extra_scopes if s not in own]

    def _principal(self, creds: Credentials | None) -> str:
        return creds.principal if creds is not None else ""

    def _bearer(
        self, challenge: Challenge, scopes: list[str], *, refused: str | None
    ) -> tuple[str, bool, TokenKey]:
        """A token for ``scopes`` at ``challenge``'s realm: cached, else fetched (retried);
        with whether it was fetched now, and its cache key."""
        creds = self.credentials.get()
        key = TokenCache.key(challenge, scopes, self._principal(creds))
        fetch = functools.partial(
            fetch_token, self.transport, challenge, scopes=scopes, registry=self.registry,
            repository=self.repository or None, credentials=creds, oauth=self.oauth,
        )
        token, fresh = self.cache.obtain(
            key, lambda: call(fetch, policy=self.retry, what=f"token from {challenge.realm}"),
            refused=refused,
        )
        if token.refresh_token:
            self.refresh_token = token.refresh_token
        self.token = token.token
        return token.token, fresh, key

    def base_url(self) -> str:
        """``scheme://registry`` as this session reaches it."""
        return self.transport.base_url(self.registry, insecure=self.insecure)

    def _basic_allowed(self) -> bool:
        base = self.base_url()
        return may_send_credentials(base, Origin.of(base))

    def _authorize(self, send: dict[str, str], state: _Round) -> None:
        """Put the Authorization this session already knows to send into ``send``."""
        held = self.token
        if held and not self.cache.stale(held):
            send["Authorization"] = f"Bearer {held}"
            return
        known = self.cache.challenge(self.registry)
        if known is not None and known.scheme == "bearer":
            token, now, key = self._bearer(known, self.scopes(), refused=None)
            if now:
                state.fresh.add(key)
            send["Authorization"] = f"Bearer {token}"
        elif known is not None and known.scheme == "basic":
            creds = self.credentials.get()
            if creds is not None and creds.has_password and self._basic_allowed():
                send["Authorization"] = creds.basic_header()
                state.sent_basic = True

    def send(
        self,
        method: str,
        path: str,
        *,
        reference: str = "",
        headers: Mapping[str, str] | None = None,
        body: Body | None = None,
    ) -> BaseHTTPResponse:
        """Send ``method path`` to the registry, answering ``401`` challenges (see the module).

        One try of the request itself (callers retry the whole exchange); the token endpoint is
        retried here. The response is returned whatever its status but ``401``; its body is
        left unread. ``reference`` names what is fetched in errors. A request ``body`` goes to
        the registry's own origin only. Bytes are sent again after a challenge; a streamed body
        (an iterable of chunks, an upload's) is sent once: a ``401`` to it is answered (the
        token renewed or upgraded) and then returned, its body read, for the caller to resume
        the upload from where the registry says it stands.
        """
        send = dict(headers or {})
        state = _Round()
        self._authorize(send, state)

        def request() -> BaseHTTPResponse:
            return self.transport.request_registry(
                method, self.registry, path, headers=send, body=body, insecure=self.insecure
            )

        response = request()
        while response.status == 401:
            self._check_origin(response, reference)
            self._answer(response, send, state, reference)
            state.rounds += 1
            if body is not None and not isinstance(body, bytes):
                return response  # a stream cannot be sent twice: the caller resumes it
            response = request()
        return response

    def _check_origin(self, response: BaseHTTPResponse, reference: str) -> None:
        """Refuse a ``401`` that did not come from the registry itself (a CDN, or whoever holds a
        dangling bucket name a blob was redirected to): answering it would hand the registry's
        credentials or tokens to that host's realm. Nothing is sent and nothing is remembered
        (containerd closed this class after CVE-2020-15157)."""
        answered = response.url or ""
        own = Origin.of(self.base_url())
        try:
            same = Origin.of(answered) == own if "://" in answered else True
        except TransportError:
            same = False
        if same:
            return
        discard(response)
        raise AuthError(
            f"a redirect target ({strip_query(answered)}) answered 401 asking for "
            "authentication; tank authenticates only to the registry itself and sends its "
            "credentials nowhere else", status=401, registry=self.registry,
            repository=self.repository, reference=reference,
        )

    def _answer(
        self, response: BaseHTTPResponse, send: dict[str, str], state: _Round, reference: str
    ) -> None:
        """Put into ``send`` the Authorization that answers ``response``'s challenge, or raise."""
        challenges = parse_challenges(response.headers.getlist("WWW-Authenticate"))
        body, _ = read_capped(response, MAX_ERROR_BODY)
        errors = error_details(body)
        bearer = next((c for c in challenges if c.scheme == "bearer"), None)
        basic = next((c for c in challenges if c.scheme == "basic"), None)
        if bearer is not None:
            self._answer_bearer(bearer, send, state, reference, errors)
        elif basic is not None:
            self._answer_basic(basic, send, state, reference, errors)
        else:
            offered = ", ".join(sorted({c.scheme.capitalize() for c in challenges})) or "none"
            raise self._error(
                f"the registry asks for authentication tank cannot answer (challenge schemes "
                f"offered: {offered}; tank answers Bearer and Basic)", reference, errors,
            )

    def _error(
        self, message: str, reference: str, errors: tuple[RegistryErrorDetail, ...]
    ) -> AuthError:
        return AuthError(
            message, status=401, errors=errors, registry=self.registry,
            repository=self.repository, reference=reference,
        )

    def _answer_bearer(
        self, bearer: Challenge, send: dict[str, str], state: _Round, reference: str,
        errors: tuple[RegistryErrorDetail, ...],
    ) -> None:
        self.cache.remember_challenge(self.registry, bearer)
        asked = bearer.params.get("scope")
        wanted = [s for s in asked.split(" ") if s] if asked else self.scopes()
        creds = self.credentials.get()
        key = TokenCache.key(bearer, wanted, self._principal(creds))
        if key in state.fresh or state.rounds >= MAX_ROUNDS:
            if creds is None:
                message = (
                    f"the registry refused anonymous access (a second 401, with a token from "
                    f"{bearer.realm}): the repository is private or does not exist; "
                    + login_hint(self.registry)
                )
            else:
                message = (
                    f"the registry refused the token {bearer.realm} issued for "
                    f"{creds.describe()} (a second 401): no access to this repository"
                )
            raise self._error(message, reference, errors)
        sent = send.get("Authorization", "")
        refused = sent[len("Bearer "):] if sent.startswith("Bearer ") else None
        token, now, key = self._bearer(bearer, wanted, refused=refused)
        if now:
            state.fresh.add(key)
        send["Authorization"] = f"Bearer {token}"

    def _answer_basic(
        self, basic: Challenge, send: dict[str, str], state: _Round, reference: str,
        errors: tuple[RegistryErrorDetail, ...],
    ) -> None:
        self.cache.remember_challenge(self.registry, basic)
        creds = self.credentials.get()
        if creds is None or not creds.has_password:
            have = "" if creds is None else f" (only an identity token, from {creds.source})"
            raise self._error(
                f"the registry asks for Basic authentication and tank knows no username and "
                f"password for it{have} (tank answers Bearer challenges anonymously, Basic ones "
                f"only with credentials): " + login_hint(self.registry), reference, errors,
            )
        if state.sent_basic:
            raise self._error(
                f"the registry refused the credentials of {creds.describe()}: wrong username or "
                "password", reference, errors,
            )
        if not self._basic_allowed():
            raise self._error(
                "refusing to send credentials over plain HTTP to a registry that is not on "
                "loopback (they go only over HTTPS)", reference, errors,
            )
        send["Authorization"] = creds.basic_header()
        state.sent_basic = True


__all__ = ["MAX_ROUNDS", "Authenticator", "login_hint", "repository_scope"]
