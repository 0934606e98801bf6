"""The OCI Distribution (registry HTTP API v2) client: manifests and blobs.

Stateless with respect to authentication: each call takes the bearer token the caller holds (or
``None``) and, when the registry answers ``401`` with a Bearer challenge, exchanges it at the
challenge's realm for a pull token (anonymous, or asked with ``credentials=``), retries, and hands
the token that worked back (:func:`manifest` returns it; :class:`BlobStream` carries it) so the
caller threads it into the next call. A Basic challenge is answered with ``credentials=``. Pass a
:class:`~tank.auth.TokenCache` as ``token_cache=`` to share tokens across calls (and skip the
``401`` round trip once a registry's challenge is known); :func:`tank.pull` does. Credentials go
only to the registry and its token realm, over HTTPS or to loopback. :func:`check_login` checks
credentials as ``docker login`` does. Connections are pooled by a shared
:class:`~tank.transport.Transport`.

Everything that comes back is verified before it is returned: a manifest against the digest it was
asked by and against ``Docker-Content-Digest``; a blob against its digest (and size, when given).

Failures worth another try (the network, ``408``, ``429``, ``5xx``, honouring ``Retry-After``) are
retried with exponential backoff and jitter per each call's ``retry=`` policy (see
:mod:`tank.retry`); every retry rebuilds its request on a fresh or idle pooled connection.
:func:`download_blob` resumes a body that broke off with a ``Range`` request.

The positional signatures are frozen; every option is keyword-only.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypedDict

from tank import mediatypes
from tank.auth import Challenge, TokenCache, TokenKey, fetch_token, parse_challenges, pull_scope
from tank.auth.credentials import Credentials, LazyCredentials, coerce, resolver
from tank.config import default_transport
from tank.digest import Digest, Hasher, PipelinedHasher
from tank.errors import (
    AuthError,
    DigestMismatch,
    InvalidDigest,
    InvalidManifest,
    InvalidReference,
    ManifestTooLarge,
    NotFound,
    RegistryError,
    RegistryErrorDetail,
    SizeMismatch,
    TransportError,
)
from tank.reference import _DOMAIN, _PATH, _TAG, DOCKER_HUB_API
from tank.retry import DEFAULT_RETRY, RetryPolicy, call, parse_retry_after
from tank.transport import (
    Origin,
    Transport,
    discard,
    may_send_credentials,
    release,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping

    from urllib3 import BaseHTTPResponse

    from tank.auth.credentials import CredentialsArg
    from tank.transport import SpeedLimit

#: manifests larger than this are refused (the distribution server's own limit)
MAX_MANIFEST_SIZE: Final = 4 * 1024 * 1024
#: an error body is read up to this many bytes
MAX_ERROR_BODY: Final = 64 * 1024
#: bytes asked of the socket per read on the blob path
CHUNK_SIZE: Final = 1024 * 1024

_HUB_ALIASES: Final = frozenset({"docker.io", "index.docker.io"})
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


class _Place(TypedDict):
    """What an error names: where the thing being fetched lives."""

    registry: str
    repository: str
    reference: str


class _BlobPlace(TypedDict):
    registry: str
    repository: str


# -- argument checks: nothing from the caller reaches a URL unvalidated ------------------------


def _registry(registry: str) -> str:
    if registry in _HUB_ALIASES:
        return DOCKER_HUB_API
    if not isinstance(registry, str) or not _DOMAIN.fullmatch(registry):
        raise InvalidReference(str(registry), "invalid registry host (expected host[:port])")
    return registry


def _repository(repository: str) -> str:
    if not isinstance(repository, str) or not _PATH.fullmatch(repository):
        raise InvalidReference(str(repository), "invalid repository name")
    return repository


def _manifest_reference(reference: str) -> str | Digest:
    if isinstance(reference, str) and ":" in reference:
        try:
            return Digest.parse(reference)
        except InvalidDigest as exc:
            raise InvalidReference(reference, exc.reason) from None
    if not isinstance(reference, str) or not _TAG.fullmatch(reference):
        raise InvalidReference(str(reference), "invalid tag")
    return reference


# -- responses ----------------------------------------------------------------------------------


def _read_capped(response: BaseHTTPResponse, cap: int) -> tuple[bytes, bool]:
    """Up to ``cap`` bytes of the body, and whether that was all of it (connection released)."""
    try:
        data = response.read(cap + 1, decode_content=True)
    except Exception:
        discard(response)
        return b"", False
    if len(data) > cap:
        discard(response)
        return data[:cap], False
    release(response)
    return data, True


def _error_details(body: bytes) -> tuple[RegistryErrorDetail, ...]:
    try:
        doc = json.loads(body)
    except ValueError:
        return ()
    errors = doc.get("errors") if isinstance(doc, dict) else None
    if not isinstance(errors, list):
        return ()
    out = []
    for entry in errors[:20]:
        if isinstance(entry, dict):
            code = str(entry.get("code", "UNKNOWN"))[:200]
            message = str(entry.get("message", ""))[:500]
            out.append(RegistryErrorDetail(code, message, entry.get("detail")))
    return tuple(out)


def _raise_for_status(
    response: BaseHTTPResponse,
    *,
    what: str,
    registry: str,
    repository: str,
    reference: str,
) -> None:
    """Raise the error that fits a non-2xx answer (its body read, capped, and released)."""
    status = response.status
    if 200 <= status < 300:
        return
    body, _ = _read_capped(response, MAX_ERROR_BODY)
    errors = _error_details(body)
    kwargs: dict[str, Any] = {
        "registry": registry, "repository": repository, "reference": reference,
        "status": status, "errors": errors,
        "retry_after": parse_retry_after(response.headers.get("Retry-After")),
    }
    if status == 404:
        raise NotFound(f"{what} not found", **kwargs)
    if status in (401, 403):
        raise AuthError(f"access to the {what} denied", **kwargs)
    text = "" if errors else body[:200].decode("utf-8", "replace").strip()
    if status == 429:  # Docker Hub's pull rate limit: say how much is left, and how to get more
        text = _rate_limit_hint(response, text)
    raise RegistryError(f"fetching the {what} failed" + (f": {text}" if text else ""), **kwargs)


def _rate_limit_hint(response: BaseHTTPResponse, text: str) -> str:
    """``text`` plus what ``ratelimit-limit``/``ratelimit-remaining`` say, and a hint to log in.

    Docker Hub sends ``ratelimit-limit: 100;w=21600`` (pulls per window of seconds) and
    ``ratelimit-remaining: 0;w=21600``; anonymous pulls get the lowest limit.
    """
    limit = response.headers.get("ratelimit-limit")
    remaining = response.headers.get("ratelimit-remaining")
    if limit is None and remaining is None:
        return text

    def pulls(value: str | None) -> str:
        count, _, window = (value or "?").partition(";w=")
        return f"{count.strip()[:20]} per {window.strip()[:20]} s" if window else count[:20]

    parts = [f"rate limit {pulls(limit)}"] if limit is not None else []
    if remaining is not None:
        parts.append(f"{remaining.partition(';')[0].strip()[:20]} left")
    source = response.headers.get("docker-ratelimit-source")
    if source:
        parts.append(f"counted against {source.strip()[:64]}")
    hint = (
        f"too many pulls ({', '.join(parts)}); anonymous pulls have the lowest limit: log in "
        "with `tank login docker.io` (or docker login) to raise it, or wait"
    )
    return f"{text}; {hint}" if text else hint


class _Auth:
    """What one registry call knows about authentication: the caller's credentials (resolved
    lazily, on the first challenge) and the token cache; thread-safe as its parts are."""

    def __init__(
        self,
        credentials: object,
        token_cache: TokenCache | None,
        registry: str,
        repository: str | None,
        *,
        oauth: bool = False,
    ) -> None:
        self.credentials = credentials if isinstance(credentials, LazyCredentials) else (
            resolver(credentials, registry, repository)
        )
        self.cache = token_cache if token_cache is not None else TokenCache()
        self.oauth = oauth
        #: a refresh token the token endpoint granted (asked for with ``oauth``)
        self.refresh_token: str | None = None


def _anonymous(registry: str, repository: str | None) -> _Auth:
    return _Auth(None, None, registry, repository)


def _bearer(
    transport: Transport,
    auth: _Auth,
    challenge: Challenge,
    scopes: list[str],
    *,
    registry: str,
    repository: str,
    retry: RetryPolicy,
    refused: str | None,
) -> tuple[str, bool, TokenKey]:
    """A token for ``scopes`` at ``challenge``'s realm: cached, else fetched (retried per
    ``retry``); with whether it was fetched now, and its cache key."""
    creds = auth.credentials.get()
    key = TokenCache.key(challenge, scopes, creds.principal if creds is not None else "")
    fetch = functools.partial(
        fetch_token, transport, challenge, scopes=scopes, registry=registry,
        repository=repository or None, credentials=creds, oauth=auth.oauth,
    )
    token, fresh = auth.cache.obtain(
        key, lambda: call(fetch, policy=retry, what=f"token from {challenge.realm}"),
        refused=refused,
    )
    if token.refresh_token:
        auth.refresh_token = token.refresh_token
    return token.token, fresh, key


def _login_hint(registry: str) -> str:
    host = "docker.io" if registry == DOCKER_HUB_API else registry
    return f"log in with `tank login {host}`, or pass credentials= to the library"


def _send(
    transport: Transport,
    method: str,
    registry: str,
    repository: str,
    path: str,
    tokens: list[str | None],
    *,
    reference: str,
    headers: Mapping[str, str],
    retry: RetryPolicy,
    auth: _Auth | None = None,
) -> BaseHTTPResponse:
    """Send a request, answering ``401`` challenges; credentials only where they may go.

    Authorization, in order: the caller's token (``tokens[0]``) unless ``auth.cache`` issued it
    and it is due for renewal; else, for a registry whose challenge the cache remembers, a
    cached or freshly fetched token (Bearer) or the credentials (Basic), without waiting for a
    ``401``. On ``401``:

    - ``Bearer``: a token for the scope the challenge names (else pull on ``repository``),
      from the cache unless it is the one just refused, else from the realm, with the
      credentials when there are any (:func:`~tank.auth.fetch_token`). A ``401`` for a token
      fetched for that same scope during this call is an :class:`AuthError`; one asking for
      another scope (``error="insufficient_scope"``, as GitLab and Docker Hub send for
      cross-repository access) gets one more token.
    - ``Basic`` (only when no Bearer is offered): the credentials, once, and only over HTTPS or
      to loopback; a second ``401`` means they are wrong.
    - anything else, or Basic without credentials: an :class:`AuthError` that says so.

    ``tokens[0]`` is the token to send; a new one replaces it as soon as it is obtained, so that
    the caller's next try (or next call) reuses it even when this one fails afterwards. One try
    of the request itself (the caller retries the whole exchange); the token endpoint is retried
    here, per ``retry``. Credentials never appear in an error.
    """
    if auth is None:
        auth = _anonymous(registry, repository or None)
    cache = auth.cache
    scopes = [pull_scope(repository)] if repository else []
    send = dict(headers)
    fresh: set[TokenKey] = set()
    sent_token: str | None = None
    sent_basic = False

    def basic_allowed() -> bool:
        base = transport.base_url(registry)
        return may_send_credentials(base, Origin.of(base))

    caller = tokens[0]
    if caller and not cache.stale(caller):
        sent_token = caller
    else:
        known = cache.challenge(registry)
        if known is not None and known.scheme == "bearer":
            sent_token, now, key = _bearer(
                transport, auth, known, scopes, registry=registry, repository=repository,
                retry=retry, refused=None,
            )
            tokens[0] = sent_token
            if now:
                fresh.add(key)
        elif known is not None and known.scheme == "basic":
            creds = auth.credentials.get()
            if creds is not None and creds.has_password and basic_allowed():
                send["Authorization"] = creds.basic_header()
                sent_basic = True
    if sent_token:
        send["Authorization"] = f"Bearer {sent_token}"
    response = transport.request_registry(method, registry, path, headers=send)

    place = _Place(registry=registry, repository=repository, reference=reference)
    rounds = 0
    while response.status == 401:
        challenges = parse_challenges(response.headers.getlist("WWW-Authenticate"))
        body, _ = _read_capped(response, MAX_ERROR_BODY)
        errors = _error_details(body)
        bearer = next((c for c in challenges if c.scheme == "bearer"), None)
        basic = next((c for c in challenges if c.scheme == "basic"), None)
        if bearer is not None:
            cache.remember_challenge(registry, bearer)
            asked = bearer.params.get("scope")
            wanted = [s for s in asked.split(" ") if s] if asked else scopes
            creds = auth.credentials.get()
            key = TokenCache.key(bearer, wanted, creds.principal if creds is not None else "")
            if key in fresh or rounds >= 3:
                if creds is None:
                    message = (
                        f"the registry refused anonymous access (a second 401, with a token "
                        f"from {bearer.realm}): the repository is private or does not exist; "
                        + _login_hint(registry)
                    )
                else:
                    message = (
                        f"the registry refused the token {bearer.realm} issued for "
                        f"{creds.describe()} (a second 401): no access to this repository"
                    )
                raise AuthError(message, status=401, errors=errors, **place)
            sent_token, now, key = _bearer(
                transport, auth, bearer, wanted, registry=registry, repository=repository,
                retry=retry, refused=sent_token,
            )
            if now:
                fresh.add(key)
            tokens[0] = sent_token
            send["Authorization"] = f"Bearer {sent_token}"
        elif basic is not None:
            cache.remember_challenge(registry, basic)
            creds = auth.credentials.get()
            if creds is None or not creds.has_password:
                have = "" if creds is None else f" (only an identity token, from {creds.source})"
                raise AuthError(
                    f"the registry asks for Basic authentication and tank knows no username "
                    f"and password for it{have} (tank answers Bearer challenges anonymously, "
                    f"Basic ones only with credentials): " + _login_hint(registry),
                    status=401, errors=errors, **place,
                )
            if sent_basic:
                raise AuthError(
                    f"the registry refused the credentials of {creds.describe()}: wrong "
                    "username or password", status=401, errors=errors, **place,
                )
            if not basic_allowed():
                raise AuthError(
                    "refusing to send credentials over plain HTTP to a registry that is not "
                    "on loopback (they go only over HTTPS)", status=401, errors=errors, **place,
                )
            send["Authorization"] = creds.basic_header()
            sent_basic = True
        else:
            offered = ", ".join(sorted({c.scheme.capitalize() for c in challenges})) or "none"
            raise AuthError(
                f"the registry asks for authentication tank cannot answer (challenge schemes "
                f"offered: {offered}; tank answers Bearer and Basic)",
                status=401, errors=errors, **place,
            )
        rounds += 1
        response = transport.request_registry(method, registry, path, headers=send)
    return response


def check_login(
    registry: str,
    credentials: Credentials | tuple[str, str],
    *,
    transport: Transport | None = None,
    retry: RetryPolicy | None = None,
) -> Credentials:
    """Check ``credentials`` against ``registry`` as ``docker login`` does; return what to store.

    ``GET /v2/`` answering the challenge with them: Basic, or Bearer through the token
    endpoint's OAuth2 form (``grant_type=password``, ``access_type=offline``; a plain ``GET``
    with Basic auth when the endpoint does not take the form). When the endpoint grants a
    refresh token, the credentials returned hold it as their identity token and no password
    (docker stores it as ``identitytoken``); otherwise they are ``credentials`` themselves.

    :raises AuthError: the registry or its token endpoint refused them.
    """
    registry = _registry(registry)
    creds = coerce(credentials)
    if not isinstance(creds, Credentials):
        raise TypeError("check_login needs (username, password) or Credentials")
    t = transport or default_transport()
    policy = DEFAULT_RETRY if retry is None else retry
    auth = _Auth(creds, None, registry, None, oauth=True)
    place = _Place(registry=registry, repository="", reference="")

    def once() -> None:
        response = _send(
            t, "GET", registry, "", "/v2/", [None], reference="", headers={}, retry=policy,
            auth=auth,
        )
        _raise_for_status(response, what="API root (/v2/)", **place)
        release(response)

    call(once, policy=policy, what=f"GET {registry}/v2/")
    if auth.refresh_token:
        return Credentials(creds.username, "", auth.refresh_token)
    return creds


# -- manifests ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ManifestInfo:
    """A fetched, verified manifest.

    :ivar media_type: the ``Content-Type`` without parameters, else the body's ``mediaType``.
    :ivar digest: the ``Docker-Content-Digest`` header (verified against ``raw``), ``None`` when
        the registry omitted it; :meth:`content_digest` computes it.
    :ivar raw: the bytes exactly as served (their digest is the manifest's digest).
    :ivar json: ``raw`` parsed (a JSON object; duplicate keys are refused).
    """

    media_type: str | None
    digest: Digest | None
    raw: bytes
    json: dict[str, Any]

    def content_digest(self, algorithm: str = "sha256") -> Digest:
        """The digest of :attr:`raw` (equal to :attr:`digest` when the registry sent one)."""
        if self.digest is not None and self.digest.algorithm == algorithm:
            return self.digest
        h = Hasher(algorithm)
        h.update(self.raw)
        return h.digest()

    @property
    def is_index(self) -> bool:
        """Whether this is an OCI index or a Docker manifest list."""
        return mediatypes.is_index(self.media_type)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def parse_manifest(
    raw: bytes,
    content_type: str | None,
    *,
    registry: str | None = None,
    repository: str | None = None,
    reference: str | None = None,
) -> tuple[str | None, dict[str, Any]]:
    """Parse manifest bytes; return (media type, JSON object). Raise :class:`InvalidManifest`.

    Refused: invalid JSON, duplicate keys (the bytes verified and the structure used must not
    differ), a non-object, a document that is both an index and an image manifest, and a body
    ``mediaType`` that contradicts a manifest ``Content-Type``.
    """
    def bad(message: str) -> InvalidManifest:
        return InvalidManifest(
            message, registry=registry, repository=repository, reference=reference
        )

    try:
        doc = json.loads(raw, object_pairs_hook=_no_duplicates)
    except (ValueError, RecursionError) as exc:
        raise bad(f"manifest is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise bad("manifest is not a JSON object")
    if "manifests" in doc and ("layers" in doc or "config" in doc):
        raise bad("manifest is ambiguous: it has both 'manifests' and 'layers'/'config'")
    header_type = mediatypes.strip_parameters(content_type)
    body_type = doc.get("mediaType")
    if body_type is not None and not isinstance(body_type, str):
        raise bad("manifest 'mediaType' is not a string")
    known = set(mediatypes.MANIFEST_TYPES)
    if header_type in known and body_type in known and header_type != body_type:
        raise bad(f"Content-Type {header_type} contradicts the manifest's mediaType {body_type}")
    media_type = header_type
    if (media_type is None or media_type not in known) and body_type:
        media_type = body_type
    return media_type, doc


def manifest(
    registry: str,
    repo: str,
    reference: str,
    token: str | None = None,
    *,
    transport: Transport | None = None,
    max_size: int = MAX_MANIFEST_SIZE,
    retry: RetryPolicy | None = None,
    credentials: CredentialsArg = None,
    token_cache: TokenCache | None = None,
) -> tuple[ManifestInfo, str | None]:
    """Fetch the manifest ``registry/repo:reference`` (a tag or a digest).

    Sends ``Accept`` for the OCI index, Docker manifest list, OCI manifest and Docker v2 manifest
    types. A ``401`` is answered: a Bearer challenge with a token from its realm (anonymous, or
    asked with ``credentials``), a Basic one with ``credentials`` (sent only over HTTPS or to
    loopback, never to a redirect target). Returns the verified manifest and the token that
    worked (``token`` itself when it did, ``None`` when the registry needed none or took Basic).

    ``credentials`` is ``(username, password)``, a :class:`~tank.auth.credentials.Credentials`, or a
    :class:`~tank.auth.credentials.CredentialSource` such as
    :class:`~tank.auth.credentials.CredentialStore` (asked for this registry only, and only when it
    first challenges). ``token_cache`` (a :class:`~tank.auth.TokenCache`) shares tokens, and
    what each registry's challenge looks like, across calls; every registry function takes
    these two keywords.

    Failures worth another try (the network, ``408``, ``429``, ``5xx``, the token endpoint's
    too) are retried per ``retry`` (default :data:`~tank.retry.DEFAULT_RETRY`), the request
    rebuilt from scratch each time; see :mod:`tank.retry`.

    :raises NotFound: the registry has no such manifest (``errors`` holds its error codes).
    :raises AuthError: a second ``401``, a challenge tank cannot answer (Basic without
        credentials), refused credentials, or a token endpoint failure.
    :raises DigestMismatch: the bytes do not hash to the digest asked for, or to
        ``Docker-Content-Digest``.
    :raises ManifestTooLarge: over ``max_size`` bytes (refused without reading it whole).
    :raises InvalidManifest: not a JSON object tank can trust.
    :raises TransportError: the network failed.
    """
    registry = _registry(registry)
    repo = _repository(repo)
    ref = _manifest_reference(reference)
    t = transport or default_transport()
    policy = DEFAULT_RETRY if retry is None else retry
    tokens = [token]
    auth = _Auth(credentials, token_cache, registry, repo)
    info = call(
        lambda: _manifest_once(
            t, registry, repo, ref, tokens, max_size=max_size, retry=policy, auth=auth
        ),
        policy=policy, what=f"GET {registry}/{repo} manifest {ref}",
    )
    return info, tokens[0]


def _header_digest(response: BaseHTTPResponse, place: _Place) -> Digest | None:
    """The ``Docker-Content-Digest`` header, validated; ``None`` when the registry omitted it.

    Only the registry's word: the caller checks it against the bytes it fetches.
    """
    header = (response.headers.get("Docker-Content-Digest") or "").strip()
    if not header:
        return None
    try:
        return Digest.parse(header)
    except InvalidDigest as exc:
        raise RegistryError(
            f"invalid Docker-Content-Digest header: {exc.reason}", **place
        ) from None


def _manifest_once(
    t: Transport,
    registry: str,
    repo: str,
    ref: str | Digest,
    tokens: list[str | None],
    *,
    max_size: int,
    retry: RetryPolicy,
    auth: _Auth,
) -> ManifestInfo:
    """One try of :func:`manifest`; ``tokens[0]`` is the token in, and the one that worked out."""
    place = _Place(registry=registry, repository=repo, reference=str(ref))
    response = _send(
        t, "GET", registry, repo, f"/v2/{repo}/manifests/{ref}", tokens,
        reference=str(ref), headers={"Accept": mediatypes.MANIFEST_ACCEPT}, retry=retry,
        auth=auth,
    )
    _raise_for_status(response, what="manifest", **place)
    declared = response.headers.get("Content-Length")
    if declared is not None and declared.isdigit() and int(declared) > max_size:
        discard(response)
        raise ManifestTooLarge(
            f"manifest of {declared} bytes is over the {max_size}-byte limit", **place
        )
    try:
        raw = response.read(max_size + 1, decode_content=True)
    except Exception as exc:
        discard(response)
        raise TransportError(f"{registry}/{repo}: reading the manifest failed: {exc}") from exc
    if len(raw) > max_size:
        discard(response)
        raise ManifestTooLarge(f"manifest is over the {max_size}-byte limit", **place)
    release(response)

    header_digest = _header_digest(response, place)
    for expected, source in ((ref, "the digest asked for"), (header_digest, "the header")):
        if isinstance(expected, Digest):
            h = expected.hasher()
            h.update(raw)
            actual = h.digest()
            if actual != expected:
                raise DigestMismatch(
                    expected, actual, what=f"manifest ({source})", registry=registry,
                    repository=repo,
                )
    media_type, doc = parse_manifest(raw, response.headers.get("Content-Type"), **place)
    return ManifestInfo(media_type=media_type, digest=header_digest, raw=raw, json=doc)


@dataclass(frozen=True)
class ManifestHead:
    """What a ``HEAD`` on a manifest tells without its body.

    :ivar digest: ``Docker-Content-Digest`` (``None`` when the registry omitted it: fall back to
        :func:`manifest`, which computes it).
    :ivar media_type: ``Content-Type`` without parameters.
    :ivar size: ``Content-Length``.
    """

    digest: Digest | None
    media_type: str | None
    size: int | None


def manifest_head(
    registry: str,
    repo: str,
    reference: str,
    token: str | None = None,
    *,
    transport: Transport | None = None,
    retry: RetryPolicy | None = None,
    credentials: CredentialsArg = None,
    token_cache: TokenCache | None = None,
) -> tuple[ManifestHead, str | None]:
    """``HEAD`` a manifest with the same ``Accept`` as :func:`manifest`; return what it says.

    Cheap: no body is transferred, and Docker Hub does not count a ``HEAD`` against the pull rate
    limit. The digest is the registry's word only: verify it when the bytes are fetched.
    Retried like :func:`manifest`, per ``retry``.
    """
    registry = _registry(registry)
    repo = _repository(repo)
    ref = _manifest_reference(reference)
    t = transport or default_transport()
    policy = DEFAULT_RETRY if retry is None else retry
    tokens = [token]
    auth = _Auth(credentials, token_cache, registry, repo)
    head = call(
        lambda: _manifest_head_once(t, registry, repo, ref, tokens, retry=policy, auth=auth),
        policy=policy, what=f"HEAD {registry}/{repo} manifest {ref}",
    )
    return head, tokens[0]


def _manifest_head_once(
    t: Transport,
    registry: str,
    repo: str,
    ref: str | Digest,
    tokens: list[str | None],
    *,
    retry: RetryPolicy,
    auth: _Auth,
) -> ManifestHead:
    """One try of :func:`manifest_head`; ``tokens`` as for :func:`_manifest_once`."""
    place = _Place(registry=registry, repository=repo, reference=str(ref))
    response = _send(
        t, "HEAD", registry, repo, f"/v2/{repo}/manifests/{ref}", tokens,
        reference=str(ref), headers={"Accept": mediatypes.MANIFEST_ACCEPT}, retry=retry,
        auth=auth,
    )
    _raise_for_status(response, what="manifest", **place)
    release(response)
    digest = _header_digest(response, place)
    length = response.headers.get("Content-Length")
    return ManifestHead(
        digest=digest,
        media_type=mediatypes.strip_parameters(response.headers.get("Content-Type")),
        size=int(length) if length and length.isdigit() else None,
    )


# -- blobs --------------------------------------------------------------------------------------


class BlobStream:
    """A blob's bytes as they arrive, hashed on the way; iterate it once.

    The bytes are unverified until iteration ends: the end raises
    :class:`~tank.errors.DigestMismatch` (or :class:`~tank.errors.SizeMismatch`) when they are
    wrong, and sets :attr:`verified`. With ``offset`` the registry is asked for the rest of the
    blob; when it ignores ``Range`` and sends all of it, :attr:`offset` is 0 and hashing starts
    over: the caller must then discard what it had.

    :ivar offset: where the bytes being streamed start in the blob.
    :ivar total: the blob's full size when known (from ``size``, ``Content-Range`` or
        ``Content-Length``).
    :ivar token: the token that worked, for the caller to thread on.
    :ivar speed_limit: the transport's low-speed limit: a body slower than it is a
        :class:`~tank.errors.TransportError` (``None``: no limit).
    """

    def __init__(
        self,
        response: BaseHTTPResponse,
        digest: Digest,
        hasher: Hasher,
        *,
        offset: int,
        size: int | None,
        token: str | None,
        registry: str,
        repository: str,
        chunk_size: int,
        speed_limit: SpeedLimit | None = None,
    ) -> None:
        self.speed_limit = speed_limit
        self._response = response
        self.digest = digest
        self._hasher = hasher
        self.offset = offset
        self.size = size
        self.token = token
        self.registry = registry
        self.repository = repository
        self.chunk_size = chunk_size
        self.verified = False
        self._started = False
        self._received = hasher.size
        self.total = size
        if self.total is None:
            length = response.headers.get("Content-Length")
            if length is not None and length.isdigit():
                self.total = offset + int(length)

    def __iter__(self) -> Iterator[bytes]:
        if self._started:
            raise RuntimeError("a BlobStream can be iterated only once")
        self._started = True
        return self._chunks()

    def _chunks(self) -> Iterator[bytes]:
        response, size = self._response, self.size
        # read1: whatever the socket has (up to a chunk), so a stall loses nothing received
        read = response.read1
        chunk_size = self.chunk_size
        place = _BlobPlace(registry=self.registry, repository=self.repository)
        received = self._hasher.size  # bytes of the blob seen so far, counting from its start
        hashing: PipelinedHasher | None = None
        update: Callable[[bytes], None] = self._hasher.update
        # the low-speed limit (tank.transport.SpeedLimit): its clock starts with the first read
        speed = self.speed_limit.monitor() if self.speed_limit is not None else None
        try:
            while True:
                want = chunk_size
                if size is not None:  # never read more than size + 1 bytes
                    want = max(1, min(chunk_size, size + 1 - received))
                data = read(want, decode_content=False)
                if not data:
                    break
                if speed is not None:
                    speed.update(len(data))
                received += len(data)
                self._received = received
                if size is not None and received > size:
                    raise SizeMismatch(size, received, what="blob", digest=self.digest, **place)
                if hashing is None and received - self.offset > chunk_size:
                    # more than one chunk: hash in a thread, overlapping the socket and the disk
                    hashing = PipelinedHasher(self._hasher)
                    update = hashing.update
                update(data)
                yield data
        except (SizeMismatch, GeneratorExit):
            discard(response)
            raise
        except Exception as exc:
            discard(response)
            raise TransportError(
                f"{self.registry}/{self.repository}@{self.digest}: the blob download broke off "
                f"after {received - self.offset} bytes: {exc}"
            ) from exc
        finally:
            if hashing is not None:
                hashing.finish()
        release(response)
        if size is not None and received != size:
            raise SizeMismatch(size, received, what="blob", digest=self.digest, **place)
        self._hasher.verify(self.digest, what="blob", **place)
        self.verified = True

    def close(self) -> None:
        """Give the connection back (or close it when the body was not read to the end)."""
        if not self.verified:
            discard(self._response)

    @property
    def hasher(self) -> Hasher:
        """The hash state of the blob's bytes so far (complete once iteration has ended)."""
        return self._hasher

    @property
    def bytes_received(self) -> int:
        """How many bytes of the blob (counting from its start) have arrived so far."""
        return self._received


def _open_once(
    t: Transport,
    registry: str,
    repo: str,
    want: Digest,
    tokens: list[str | None],
    *,
    offset: int,
    hasher: Hasher | None,
    size: int | None,
    chunk_size: int,
    retry: RetryPolicy,
    auth: _Auth | None = None,
) -> BlobStream:
    """One try at a blob's response, up to the first body byte; the caller closes the stream.

    ``tokens[0]`` is the token in, and the one that worked out. ``retry`` governs the token
    endpoint only.
    """
    place = _Place(registry=registry, repository=repo, reference=str(want))
    headers = {"Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    response = _send(
        t, "GET", registry, repo, f"/v2/{repo}/blobs/{want}", tokens,
        reference=str(want), headers=headers, retry=retry, auth=auth,
    )
    _raise_for_status(response, what="blob", **place)
    state = hasher if hasher is not None else want.hasher()
    start = 0
    if offset and response.status == 206:
        match = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", "").strip())
        if not match or int(match.group(1)) != offset:
            discard(response)
            raise RegistryError(
                f"asked for bytes from {offset} but the registry answered Content-Range "
                f"{response.headers.get('Content-Range')!r}", status=206, **place,
            )
        start = offset
    elif offset:
        state = want.hasher()  # the registry ignored Range: the whole blob comes again
    return BlobStream(
        response, want, state, offset=start, size=size, token=tokens[0], registry=registry,
        repository=repo, chunk_size=chunk_size, speed_limit=t.speed_limit,
    )


@contextlib.contextmanager
def open_blob(
    registry: str,
    repo: str,
    digest: str,
    token: str | None = None,
    *,
    offset: int = 0,
    hasher: Hasher | None = None,
    size: int | None = None,
    transport: Transport | None = None,
    chunk_size: int = CHUNK_SIZE,
    retry: RetryPolicy | None = None,
    credentials: CredentialsArg = None,
    token_cache: TokenCache | None = None,
) -> Iterator[BlobStream]:
    """Open a blob for streaming: ``with open_blob(…) as stream: for chunk in stream: …``.

    Memory stays flat whatever the blob's size. ``size`` (the descriptor's) makes a longer or
    shorter body an error (at most ``size + 1`` bytes are read). ``offset`` asks for the rest of
    the blob with ``Range: bytes=offset-``; then ``hasher`` must carry the hash of the first
    ``offset`` bytes (so the end can still verify the whole blob), and only a ``206`` whose
    ``Content-Range`` starts exactly at ``offset`` is accepted (a ``200`` restarts from 0).
    Requests send ``Accept-Encoding: identity`` and bytes are hashed exactly as they arrive.

    Getting the response is retried per ``retry`` (default :data:`~tank.retry.DEFAULT_RETRY`)
    until a ``2xx`` whose body is about to stream. The body itself is not: when iteration breaks
    off (a :class:`~tank.errors.TransportError`), resume by opening again with ``offset`` set to
    the bytes kept and ``hasher`` to :attr:`BlobStream.hasher` (:func:`download_blob` does).
    """
    registry = _registry(registry)
    repo = _repository(repo)
    want = Digest.parse(digest)
    if offset < 0:
        raise ValueError("offset must be >= 0")
    if offset and (hasher is None or hasher.size != offset or hasher.algorithm != want.algorithm):
        raise ValueError("offset > 0 needs the hasher of the first `offset` bytes of the blob")
    t = transport or default_transport()
    policy = DEFAULT_RETRY if retry is None else retry
    tokens = [token]
    auth = _Auth(credentials, token_cache, registry, repo)
    stream = call(
        lambda: _open_once(
            t, registry, repo, want, tokens, offset=offset, hasher=hasher, size=size,
            chunk_size=chunk_size, retry=policy, auth=auth,
        ),
        policy=policy, what=f"GET {registry}/{repo} blob {want}",
    )
    try:
        yield stream
    finally:
        stream.close()


def blob(
    registry: str,
    repo: str,
    digest: str,
    token: str | None = None,
    *,
    size: int | None = None,
    transport: Transport | None = None,
    retry: RetryPolicy | None = None,
    credentials: CredentialsArg = None,
    token_cache: TokenCache | None = None,
) -> bytes:
    """A whole blob in memory, verified against ``digest`` (and ``size`` when given).

    For configs and other small blobs; stream layers with :func:`open_blob` or
    :func:`download_blob`. A failure worth another try (see :mod:`tank.retry`) fetches the whole
    blob again, per ``retry`` (default :data:`~tank.retry.DEFAULT_RETRY`).
    """
    registry = _registry(registry)
    repo = _repository(repo)
    want = Digest.parse(digest)
    t = transport or default_transport()
    policy = DEFAULT_RETRY if retry is None else retry
    tokens = [token]
    auth = _Auth(credentials, token_cache, registry, repo)

    def once() -> bytes:
        stream = _open_once(
            t, registry, repo, want, tokens, offset=0, hasher=None, size=size,
            chunk_size=CHUNK_SIZE, retry=policy, auth=auth,
        )
        try:
            return b"".join(stream)
        finally:
            stream.close()

    return call(once, policy=policy, what=f"GET {registry}/{repo} blob {want}")


def download_blob(
    registry: str,
    repo: str,
    digest: str,
    token: str | None,
    dest: str | os.PathLike[str],
    *,
    size: int | None = None,
    fsync: bool = True,
    transport: Transport | None = None,
    retry: RetryPolicy | None = None,
    credentials: CredentialsArg = None,
    token_cache: TokenCache | None = None,
) -> int:
    """Stream a blob into ``dest``; return its size.

    ``dest`` appears only once the whole blob has verified: the bytes go to a temporary file
    beside it, which is flushed (and fsynced unless ``fsync=False``) and then renamed. On any
    error the temporary file is removed and ``dest`` is untouched.

    Failures worth another try are retried per ``retry`` (default
    :data:`~tank.retry.DEFAULT_RETRY`; see :mod:`tank.retry`). A body that broke off is resumed
    where it stopped: the retry asks for ``Range: bytes=N-`` (N = the bytes already in the
    temporary file), carrying their hash on; a registry that answers ``200`` instead of ``206``
    sends the whole blob again, and the temporary file starts over.
    """
    registry = _registry(registry)
    repo = _repository(repo)
    want = Digest.parse(digest)
    t = transport or default_transport()
    policy = DEFAULT_RETRY if retry is None else retry
    target = Path(dest)
    tokens = [token]
    auth = _Auth(credentials, token_cache, registry, repo)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            # the hash of exactly the bytes in `out` (None: nothing kept, start from 0)
            kept: Hasher | None = None

            def once() -> int:
                nonlocal kept
                offset = out.tell()
                if offset and (
                    kept is None or kept.size != offset or (size is not None and offset >= size)
                ):
                    offset, kept = 0, None  # nothing trustworthy to resume from
                if offset == 0:
                    out.seek(0)
                    out.truncate()
                stream = _open_once(
                    t, registry, repo, want, tokens, offset=offset, hasher=kept, size=size,
                    chunk_size=CHUNK_SIZE, retry=policy, auth=auth,
                )
                try:
                    if stream.offset != offset:  # Range ignored: the whole blob comes again
                        out.seek(0)
                        out.truncate()
                    # from here on `out` holds exactly what the stream's hasher has seen, also
                    # when the body breaks off (it is hashed before it is handed over)
                    kept = stream.hasher
                    write = out.write
                    for chunk in stream:
                        write(chunk)
                    return stream.bytes_received
                finally:
                    stream.close()

            total = call(once, policy=policy, what=f"GET {registry}/{repo} blob {want}")
            if fsync:
                out.flush()
                os.fsync(out.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    if fsync:
        _fsync_dir(target.parent)
    return total


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


__all__ = [
    "CHUNK_SIZE",
    "MAX_MANIFEST_SIZE",
    "BlobStream",
    "ManifestHead",
    "ManifestInfo",
    "blob",
    "check_login",
    "download_blob",
    "manifest",
    "manifest_head",
    "open_blob",
    "parse_manifest",
]


# -- tags ---------------------------------------------------------------------------------------

if TYPE_CHECKING:
    from collections.abc import Generator

#: a tag list page is read up to this many bytes (a 10 000-tag page is about 0.5 MB)
MAX_TAG_PAGE: Final = 16 * 1024 * 1024
#: pages followed at most, so a registry whose ``Link`` never ends cannot hold tank forever
MAX_TAG_PAGES: Final = 100_000

_LINK = re.compile(r"<([^>]*)>((?:\s*;\s*[^;,]*)*)")
_LINK_REL = re.compile(r"""rel\s*=\s*(?:"([^"]*)"|([^\s;,"]+))""", re.IGNORECASE)


def _next_link(values: list[str]) -> str | None:
    """The target of the ``rel="next"`` link among ``Link`` header values (RFC 8288)."""
    for value in values:
        for match in _LINK.finditer(value):
            for rel in _LINK_REL.finditer(match.group(2)):
                if "next" in (rel.group(1) or rel.group(2) or "").lower().split():
                    return match.group(1).strip()
    return None


def _same_origin_path(base: str, current: str, link: str, place: _Place) -> str:
    """The path and query a ``Link`` target names, joined to ``current`` as written.

    A relative target is resolved against the page it came from; an absolute one must be on the
    registry's own origin (scheme, host and port), since the request carries the token.
    """
    from urllib.parse import urljoin, urlsplit

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
            "on the registry's own origin", **place,
        )
    path = target.path or "/"
    return path + (f"?{target.query}" if target.query else "")


def _tag_page_once(
    t: Transport,
    registry: str,
    repo: str,
    path: str,
    tokens: list[str | None],
    *,
    retry: RetryPolicy,
    auth: _Auth,
) -> tuple[list[str], str | None]:
    """One try at one page: its tags, and the ``Link: <…>; rel="next"`` target (or ``None``)."""
    place = _Place(registry=registry, repository=repo, reference="")
    response = _send(
        t, "GET", registry, repo, path, tokens, reference="",
        headers={"Accept": "application/json"}, retry=retry, auth=auth,
    )
    _raise_for_status(response, what="tag list", **place)
    body, complete = _read_capped(response, MAX_TAG_PAGE)
    if not complete:
        raise RegistryError(f"the tag list page is over the {MAX_TAG_PAGE}-byte limit", **place)
    try:
        doc = json.loads(body)
    except ValueError as exc:
        raise RegistryError(f"the tag list is not valid JSON: {exc}", **place) from None
    raw = doc.get("tags") if isinstance(doc, dict) else None
    if not isinstance(doc, dict) or not isinstance(raw, list | None):
        raise RegistryError("the tag list is not a JSON object with a 'tags' list", **place)
    found: list[str] = []
    for tag in raw or []:
        if not isinstance(tag, str) or not _TAG.fullmatch(tag):
            raise RegistryError(f"the tag list holds an invalid tag {str(tag)[:140]!r}", **place)
        found.append(tag)
    return found, _next_link(response.headers.getlist("Link"))


def tag_pages(
    registry: str,
    repo: str,
    token: str | None = None,
    *,
    n: int | None = None,
    transport: Transport | None = None,
    retry: RetryPolicy | None = None,
    credentials: CredentialsArg = None,
    token_cache: TokenCache | None = None,
) -> Generator[tuple[list[str], str | None], None, None]:
    """Yield ``(tags, token)`` for each page of ``GET /v2/REPO/tags/list``, in the registry's order.

    The first request asks for ``?n=N`` when ``n`` is given (a hint: Docker Hub, Quay and ECR
    page by it, distribution 2.8 ignores it). Each next page is the ``Link: <…>; rel="next"``
    target, followed verbatim: relative ones against the page they came from, absolute ones only
    on the registry's own origin (:class:`~tank.errors.RegistryError` otherwise). A page that
    points back at one already read ends the list with an error rather than a loop. Stop
    iterating to stop fetching. Each page is retried per ``retry``; a ``401`` is answered as
    :func:`manifest` answers it (``credentials``, ``token_cache``), and the token the next pages
    reuse comes back with each page.

    :raises NotFound: no such repository (``NAME_UNKNOWN``).
    :raises AuthError: access denied.
    """
    registry = _registry(registry)
    repo = _repository(repo)
    if n is not None and (type(n) is not int or n < 1):
        raise ValueError("n must be a positive int")
    t = transport or default_transport()
    policy = DEFAULT_RETRY if retry is None else retry
    tokens = [token]
    auth = _Auth(credentials, token_cache, registry, repo)
    place = _Place(registry=registry, repository=repo, reference="")
    path: str | None = f"/v2/{repo}/tags/list" + (f"?n={n}" if n is not None else "")
    seen: set[str] = set()
    while path is not None:
        if path in seen or len(seen) >= MAX_TAG_PAGES:
            raise RegistryError(
                f"the tag list's pages do not end (page {len(seen) + 1} is {path!r})", **place
            )
        seen.add(path)
        current = path
        found, link = call(
            functools.partial(
                _tag_page_once, t, registry, repo, current, tokens, retry=policy, auth=auth
            ),
            policy=policy, what=f"GET {registry}/{repo} tags {current}",
        )
        path = (
            None if link is None
            else _same_origin_path(t.base_url(registry), current, link, place)
        )
        yield found, tokens[0]


def tags(
    registry: str,
    repo: str,
    token: str | None = None,
    *,
    n: int | None = None,
    transport: Transport | None = None,
    retry: RetryPolicy | None = None,
    credentials: CredentialsArg = None,
    token_cache: TokenCache | None = None,
) -> tuple[list[str], str | None]:
    """Every tag of ``registry/repo``, following ``Link`` to the last page; and the token.

    See :func:`tag_pages` for paging, ``n`` and errors.
    """
    out: list[str] = []
    tok = token
    pages = tag_pages(
        registry, repo, token, n=n, transport=transport, retry=retry, credentials=credentials,
        token_cache=token_cache,
    )
    for page, latest in pages:
        out.extend(page)
        tok = latest
    return out, tok


__all__ += ["MAX_TAG_PAGE", "tag_pages", "tags"]
