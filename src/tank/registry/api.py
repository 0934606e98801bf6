"""The seed's stateless functions: one call, one answer, the token threaded by the caller.

Each is a thin wrapper over a :class:`~tank.Client` / :class:`~tank.Repository` made for the call:
it takes the bearer token the caller holds (or ``None``), answers a ``401`` (a Bearer challenge
with a token from its realm, anonymous or asked with ``credentials=``; a Basic one with
``credentials=``), and hands the token that worked back (:func:`manifest` returns it;
:class:`~tank.registry.blobs.BlobStream` carries it) so the caller threads it into the next
call. Pass a :class:`~tank.auth.tokens.TokenCache` as ``token_cache=`` to share tokens across
calls (and skip the ``401`` round trip once a registry's challenge is known). Credentials go only
to the registry and its token realm, over HTTPS or to loopback.

Everything that comes back is verified: a manifest against the digest it was asked by and
against ``Docker-Content-Digest``; a blob against its digest (and size, when given). Failures
worth another try are retried per ``retry=`` (default :data:`~tank.retry.DEFAULT_RETRY`).

The positional signatures are frozen; every option is keyword-only.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Generator, Iterator
from typing import TYPE_CHECKING

from tank.auth.credentials import Credentials, coerce
from tank.auth.session import Authenticator
from tank.image import Where
from tank.image.manifest import MAX_MANIFEST_SIZE
from tank.registry.blobs import CHUNK_SIZE, BlobStream
from tank.registry.client import Client
from tank.registry.manifests import ManifestHead, ManifestInfo
from tank.registry.names import registry_host
from tank.responses import raise_for_status
from tank.retry import DEFAULT_RETRY, RetryPolicy, call
from tank.transport import release

if TYPE_CHECKING:
    from tank.auth.credentials import CredentialsArg
    from tank.auth.tokens import TokenCache
    from tank.digest import Hasher
    from tank.registry.repository import Repository
    from tank.transport import Transport


def _repository(
    registry: str, repo: str, token: str | None, transport: Transport | None,
    retry: RetryPolicy | None, credentials: CredentialsArg, token_cache: TokenCache | None,
) -> Repository:
    client = Client(
        registry, credentials=credentials, transport=transport, retry=retry,
        token_cache=token_cache,
    )
    return client.repository(repo, token=token)


def manifest(
    registry: str, repo: str, reference: str, token: str | None = None, *,
    max_size: int = MAX_MANIFEST_SIZE, transport: Transport | None = None,
    retry: RetryPolicy | None = None, credentials: CredentialsArg = None,
    token_cache: TokenCache | None = None,
) -> tuple[ManifestInfo, str | None]:
    """Fetch the manifest ``registry/repo:reference`` (a tag or a digest).

    Sends ``Accept`` for the OCI index, Docker manifest list, OCI manifest and Docker v2 manifest
    types. A ``401`` is answered: a Bearer challenge with a token from its realm (anonymous, or
    asked with ``credentials``), a Basic one with ``credentials`` (sent only over HTTPS or to
    loopback, never to a redirect target). Returns the verified manifest and the token that
    worked (``token`` itself when it did, ``None`` when the registry needed none or took Basic).
    ``info.digest`` is the ``Docker-Content-Digest`` header, ``None`` when the registry omitted it.

    ``credentials`` is ``(username, password)``, a :class:`~tank.Credentials`, or a credential
    source such as :class:`~tank.CredentialStore` (asked for this registry only, and only when it
    first challenges). ``token_cache`` (a :class:`~tank.TokenCache`) shares tokens, and what each
    registry's challenge looks like, across calls; every registry function takes these two
    keywords.

    :raises NotFound: the registry has no such manifest (``errors`` holds its error codes).
    :raises AuthError: a second ``401``, a challenge tank cannot answer (Basic without
        credentials), refused credentials, or a token endpoint failure.
    :raises DigestMismatch: the bytes do not hash to the digest asked for, or to
        ``Docker-Content-Digest``.
    :raises ManifestTooLarge: over ``max_size`` bytes (refused without reading it whole).
    :raises InvalidManifest: not a JSON object tank can trust.
    :raises TransportError: the network failed.
    """
    session = _repository(registry, repo, token, transport, retry, credentials, token_cache)
    info = session.fetch_manifest(reference, max_size=max_size)
    return info, session.token


def manifest_head(
    registry: str, repo: str, reference: str, token: str | None = None, *,
    transport: Transport | None = None, retry: RetryPolicy | None = None,
    credentials: CredentialsArg = None, token_cache: TokenCache | None = None,
) -> tuple[ManifestHead, str | None]:
    """``HEAD`` a manifest with the same ``Accept`` as :func:`manifest`; return what it says.

    Cheap: no body is transferred, and Docker Hub does not count a ``HEAD`` against the pull rate
    limit. The digest is the registry's word only: verify it when the bytes are fetched.
    """
    session = _repository(registry, repo, token, transport, retry, credentials, token_cache)
    return session.manifest_head(reference), session.token


def blob(
    registry: str, repo: str, digest: str, token: str | None = None, *, size: int | None = None,
    transport: Transport | None = None, retry: RetryPolicy | None = None,
    credentials: CredentialsArg = None, token_cache: TokenCache | None = None,
) -> bytes:
    """A whole blob in memory, verified against ``digest`` (and ``size`` when given).

    For configs and other small blobs; stream layers with :func:`open_blob` or
    :func:`download_blob`. A failure worth another try fetches the whole blob again.
    """
    session = _repository(registry, repo, token, transport, retry, credentials, token_cache)
    return session.blob(digest, size=size)


@contextlib.contextmanager
def open_blob(
    registry: str, repo: str, digest: str, token: str | None = None, *, offset: int = 0,
    hasher: Hasher | None = None, size: int | None = None, chunk_size: int = CHUNK_SIZE,
    transport: Transport | None = None, retry: RetryPolicy | None = None,
    credentials: CredentialsArg = None, token_cache: TokenCache | None = None,
) -> Iterator[BlobStream]:
    """Open a blob for streaming: ``with open_blob(…) as stream: for chunk in stream: …``.

    Memory stays flat whatever the blob's size. ``size`` (the descriptor's) makes a longer or
    shorter body an error (at most ``size + 1`` bytes are read). ``offset`` asks for the rest of
    the blob with ``Range: bytes=offset-``; then ``hasher`` must carry the hash of the first
    ``offset`` bytes (so the end can still verify the whole blob), and only a ``206`` whose
    ``Content-Range`` starts exactly at ``offset`` is accepted (a ``200`` restarts from 0).
    Requests send ``Accept-Encoding: identity`` and bytes are hashed exactly as they arrive.

    Getting the response is retried per ``retry`` until a ``2xx`` whose body is about to stream.
    The body itself is not: when iteration breaks off (a :class:`~tank.errors.TransportError`),
    resume by opening again with ``offset`` set to the bytes kept and ``hasher`` to
    :attr:`BlobStream.hasher` (:func:`download_blob` does).
    """
    session = _repository(registry, repo, token, transport, retry, credentials, token_cache)
    with session.open_blob(
        digest, offset=offset, hasher=hasher, size=size, chunk_size=chunk_size
    ) as stream:
        yield stream


def download_blob(
    registry: str, repo: str, digest: str, token: str | None, dest: str | os.PathLike[str], *,
    size: int | None = None, fsync: bool = True, transport: Transport | None = None,
    retry: RetryPolicy | None = None, credentials: CredentialsArg = None,
    token_cache: TokenCache | None = None,
) -> int:
    """Stream a blob into ``dest``; return its size.

    ``dest`` appears only once the whole blob has verified: the bytes go to a temporary file
    beside it, which is flushed (and fsynced unless ``fsync=False``) and then renamed. On any
    error the temporary file is removed and ``dest`` is untouched. A body that broke off is
    resumed where it stopped with ``Range: bytes=N-``, carrying the hash on; a registry that
    answers ``200`` instead of ``206`` sends the whole blob again, and the file starts over.
    """
    session = _repository(registry, repo, token, transport, retry, credentials, token_cache)
    return session.download_blob(digest, dest, size=size, fsync=fsync)


def tag_pages(
    registry: str, repo: str, token: str | None = None, *, n: int | None = None,
    transport: Transport | None = None, retry: RetryPolicy | None = None,
    credentials: CredentialsArg = None, token_cache: TokenCache | None = None,
) -> Generator[tuple[list[str], str | None], None, None]:
    """Yield ``(tags, token)`` for each page of ``GET /v2/REPO/tags/list``, in the registry's order.

    The first request asks for ``?n=N`` when ``n`` is given (a hint: Docker Hub, Quay and ECR
    page by it, distribution 2.8 ignores it). Each next page is the ``Link: <…>; rel="next"``
    target (see :mod:`tank.registry.taglist`). Stop iterating to stop fetching.

    :raises NotFound: no such repository (``NAME_UNKNOWN``).
    :raises AuthError: access denied.
    """
    session = _repository(registry, repo, token, transport, retry, credentials, token_cache)
    pages = session.tag_pages(n=n)
    try:
        for page in pages:
            yield page, session.token
    finally:
        pages.close()


def tags(
    registry: str, repo: str, token: str | None = None, *, n: int | None = None,
    transport: Transport | None = None, retry: RetryPolicy | None = None,
    credentials: CredentialsArg = None, token_cache: TokenCache | None = None,
) -> tuple[list[str], str | None]:
    """Every tag of ``registry/repo``, following ``Link`` to the last page; and the token."""
    session = _repository(registry, repo, token, transport, retry, credentials, token_cache)
    return session.tags(n=n), session.token


def check_login(
    registry: str, credentials: Credentials | tuple[str, str], *,
    transport: Transport | None = None, retry: RetryPolicy | None = None,
) -> Credentials:
    """Check ``credentials`` against ``registry`` as ``docker login`` does; return what to store.

    ``GET /v2/`` answering the challenge with them: Basic, or Bearer through the token
    endpoint's OAuth2 form (``grant_type=password``, ``access_type=offline``; a plain ``GET``
    with Basic auth when the endpoint does not take the form). When the endpoint grants a
    refresh token, the credentials returned hold it as their identity token and no password
    (docker stores it as ``identitytoken``); otherwise they are ``credentials`` themselves.

    :raises AuthError: the registry or its token endpoint refused them.
    """
    host = registry_host(registry)
    creds = coerce(credentials)
    if not isinstance(creds, Credentials):
        raise TypeError("check_login needs (username, password) or Credentials")
    client = Client(host, transport=transport, retry=retry)
    policy = retry if retry is not None else DEFAULT_RETRY
    auth = Authenticator(client.transport, host, "", credentials=creds, retry=policy, oauth=True)

    def once() -> None:
        response = auth.send("GET", "/v2/")
        raise_for_status(response, what="API root (/v2/)", **Where(host, "", "").kwargs())
        release(response)

    call(once, policy=policy, what=f"GET {host}/v2/")
    if auth.refresh_token:
        return Credentials(creds.username, "", auth.refresh_token)
    return creds
