"""The registry client: :class:`Client`, one registry's session factory.

::

    import tank

    client = tank.Client("ghcr.io", credentials=tank.CredentialStore())
    repo = client.repository("owner/app")
    info = repo.manifest("v1")                 # verified; info.document is the parsed model
    config = repo.blob(info.document.config.digest)

A client holds what every repository of one registry shares: the connection pool
(:class:`~tank.transport.Transport`), the retry policy, the credentials and a
:class:`~tank.auth.tokens.TokenCache`, so repositories made from it reuse tokens and the
registry's known challenge instead of collecting a ``401`` each.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tank.auth.tokens import TokenCache
from tank.config import Config, default_config, default_transport
from tank.reference import DOCKER_HUB_API
from tank.registry.names import registry_host, repository_name
from tank.registry.repository import Repository
from tank.retry import DEFAULT_RETRY, RetryPolicy

if TYPE_CHECKING:
    from tank.auth.credentials import CredentialsArg
    from tank.transport import Transport


class Client:
    """A session with one registry.

    :param registry: ``host[:port]`` (``docker.io`` and ``index.docker.io`` mean Docker Hub).
    :param credentials: ``(username, password)``, a :class:`~tank.Credentials`, a credential
        source such as :class:`~tank.CredentialStore` (asked for this registry only, on its first
        challenge), or ``None`` for anonymous access.
    :param transport: the connection pool, TLS trust, proxies and timeouts (default: from
        ``config``, else the process-wide :func:`tank.config.default_transport`).
    :param retry: how failures worth another try are retried (default
        :data:`~tank.retry.DEFAULT_RETRY`).
    :param config: the configuration (:class:`~tank.config.Config`) the transport is made from
        when none is given.
    :param token_cache: tokens to share with other clients (default: the client's own).
    :param insecure: plain HTTP or unverified TLS allowed for this registry (as a configuration
        entry's ``insecure = true`` allows it for its images); the transport's own list of
        insecure registries applies in any case.
    """

    def __init__(
        self,
        registry: str,
        *,
        credentials: CredentialsArg = None,
        transport: Transport | None = None,
        retry: RetryPolicy | None = None,
        config: Config | None = None,
        token_cache: TokenCache | None = None,
        insecure: bool = False,
    ) -> None:
        self.registry = registry_host(registry)
        self.config = config
        self.insecure = insecure
        if transport is None:
            transport = config.transport() if config is not None else default_transport()
        self.transport: Transport = transport
        self.retry = retry if retry is not None else DEFAULT_RETRY
        self.credentials = credentials
        self.token_cache = token_cache if token_cache is not None else TokenCache()

    def __repr__(self) -> str:
        return f"<tank.Client {self.registry}>"

    def repository(self, name: str, *, token: str | None = None) -> Repository:
        """The repository ``name`` of this registry (on Docker Hub a one-part name gets
        ``library/``, as ``docker pull alpine`` does). ``token`` starts the session with a
        bearer token the caller already holds.

        :raises ConfigError: ``registries.conf`` blocks it (checked before any request, with the
            client's ``config``, else :func:`tank.config.default_config`).
        """
        if self.registry == DOCKER_HUB_API and isinstance(name, str) and "/" not in name:
            name = f"library/{name}"
        name = repository_name(name)
        (self.config or default_config()).check_allowed(self.registry, name)
        return Repository(self, name, token=token, credentials=self.credentials)


__all__ = ["Client"]
