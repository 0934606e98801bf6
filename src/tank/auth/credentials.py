"""Registry credentials: the ones users already have, found where skopeo and docker look.

:class:`Credentials` is a username with a password, or an identity token (an OAuth2 refresh
token, which ``docker login`` stores instead of the password when the token server grants one).
Its ``repr`` never shows a secret.

:class:`CredentialStore` reads, in skopeo's order (the first that knows the registry wins):

1. ``$REGISTRY_AUTH_FILE``, else ``$XDG_RUNTIME_DIR/containers/auth.json`` (podman's and
   skopeo's file; its keys may name a namespace, ``quay.io/team``, matched most specific first);
2. ``$DOCKER_CONFIG/config.json``, else ``~/.docker/config.json``.

In each file, a registry's ``credHelpers`` entry, then the file's ``credsStore``, then its
``auths`` entry (``auth`` = base64 of ``user:password``, or ``username``/``password``, and
``identitytoken``). Helpers speak docker's protocol: ``docker-credential-NAME get`` with the
server on stdin, JSON on stdout (a ``Username`` of ``<token>`` means the secret is an identity
token); ``store`` and ``erase`` for ``tank login``/``tank logout``. A missing or failing helper is
an :class:`~tank.errors.AuthError` naming it.

Keys match one registry only: scheme and path of a docker key are dropped (``https://host/v1/``
is ``host``), host names compare case-insensitively, a port must match exactly. Docker Hub's
spellings (``https://index.docker.io/v1/``, ``index.docker.io``, ``docker.io``,
``registry-1.docker.io``) are one registry.

:meth:`CredentialStore.store` writes where docker does: the registry's helper, else the file's
``credsStore``, else ``auths`` in the docker config file, replaced atomically, mode ``0600``,
every key tank does not own kept as it was.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Protocol, runtime_checkable

from tank import _json
from tank._fs import atomic_file
from tank.errors import AuthError
from tank.reference import DOCKER_HUB, DOCKER_HUB_NAMES

if TYPE_CHECKING:
    import subprocess
    from collections.abc import Mapping

#: the config key docker uses for Docker Hub (and the server name its helpers are given)
DOCKER_HUB_KEY: Final = "https://index.docker.io/v1/"
#: Docker Hub's host names, and the legacy ``registry.hub.docker.com`` docker's keys may use
_HUB_NAMES: Final = DOCKER_HUB_NAMES | {"registry.hub.docker.com"}
#: the username a credential helper answers with when the secret is an identity token
TOKEN_USERNAME: Final = "<token>"  # noqa: S105 - a marker, not a password
#: seconds a credential helper may take
HELPER_TIMEOUT: Final = 60.0


@dataclass(frozen=True, repr=False)
class Credentials:
    """A username and password, or an identity token, for one registry.

    :ivar username: the user (may be empty with an identity token).
    :ivar password: the password (empty when only an identity token is known).
    :ivar identity_token: an OAuth2 refresh token (docker's ``identitytoken``); tank then asks the
        token server with ``grant_type=refresh_token`` instead of sending the password.
    :ivar source: where they were found (a file or ``docker-credential-NAME``), for messages.
    """

    username: str = ""
    password: str = ""
    identity_token: str = ""
    source: str = field(default="", compare=False)

    def __repr__(self) -> str:
        secret = "password=***" if self.password else "identity_token=***"
        return f"Credentials(username={self.username!r}, {secret})"

    __str__ = __repr__

    @property
    def has_password(self) -> bool:
        """Whether a username and password are known (what Basic auth needs)."""
        return bool(self.username and self.password)

    def basic_header(self) -> str:
        """The ``Authorization: Basic …`` value."""
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")

    @property
    def principal(self) -> str:
        """A one-way fingerprint of these credentials: tokens are cached per principal."""
        raw = "\0".join((self.username, self.password, self.identity_token)).encode()
        return hashlib.sha256(raw).hexdigest()[:32]

    def describe(self) -> str:
        """``user 'bob' (from FILE)`` or ``an identity token (from …)``, for messages."""
        who = f"user {self.username!r}" if self.username else "an identity token"
        return f"{who} (from {self.source})" if self.source else who


@runtime_checkable
class CredentialSource(Protocol):
    """Anything that finds the credentials for a registry, e.g. a :class:`CredentialStore`."""

    def lookup(self, registry: str, repository: str | None = None) -> Credentials | None:
        """The credentials for ``registry`` (``host[:port]``), or ``None``."""
        ...


#: what the ``credentials=`` keyword of tank's functions accepts
CredentialsArg = Credentials | tuple[str, str] | CredentialSource | None


def coerce(value: object) -> Credentials | CredentialSource | None:
    """A ``credentials=`` argument as :class:`Credentials` or a :class:`CredentialSource`."""
    if value is None or isinstance(value, Credentials | CredentialSource):
        return value
    if (
        isinstance(value, tuple) and len(value) == 2
        and all(isinstance(v, str) for v in value)
    ):
        return Credentials(value[0], value[1], source="the caller")
    raise TypeError(
        "credentials must be (username, password), a tank.auth.credentials.Credentials, or an "
        "object with a lookup(registry, repository) method such as CredentialStore"
    )


# -- registry names and config keys ---------------------------------------------------------------


def canonical_registry(registry: str) -> str:
    """``host[:port]`` lower-cased, with every Docker Hub spelling as ``docker.io``."""
    host = registry.strip().lower().rstrip("/")
    return DOCKER_HUB if host in _HUB_NAMES else host


def _key_name(key: str, *, namespaces: bool) -> str:
    """A config key as ``host[:port]`` (docker) or ``host[:port][/namespace]`` (auth.json)."""
    name = key.strip()
    lowered = name.lower()
    for scheme in ("https://", "http://"):
        if lowered.startswith(scheme):
            name = name[len(scheme):]
            namespaces = False  # a URL key names a registry; its path is an API version
            break
    name = name.rstrip("/")
    host, _, path = name.partition("/")
    host = canonical_registry(host)
    return f"{host}/{path}" if namespaces and path else host


def server_key(registry: str) -> str:
    """The key docker stores a registry under: ``https://index.docker.io/v1/`` or the host."""
    host = canonical_registry(registry)
    return DOCKER_HUB_KEY if host == DOCKER_HUB else host


def _candidates(registry: str, repository: str | None) -> list[str]:
    """The names a lookup matches, most specific first (``host/a/b``, ``host/a``, ``host``)."""
    host = canonical_registry(registry)
    out: list[str] = []
    if repository:
        parts = repository.strip("/").split("/")
        out.extend(f"{host}/{'/'.join(parts[:i])}" for i in range(len(parts), 0, -1))
    out.append(host)
    return out


# -- credential helpers ---------------------------------------------------------------------------


def _helper_error(name: str, action: str, registry: str, detail: str) -> AuthError:
    return AuthError(
        f"credential helper docker-credential-{name} ({action}) {detail}", registry=registry
    )


#: what a credential helper's name may be (``docker-credential-NAME`` is looked up on PATH)
_HELPER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def _run_helper(
    name: str, action: str, payload: str, *, registry: str, env: Mapping[str, str]
) -> subprocess.CompletedProcess[bytes]:
    if not _HELPER_NAME.fullmatch(name):
        # docker-credential-../x would resolve against the working directory, not PATH
        raise _helper_error(
            name[:100], action, registry,
            "is not a helper name (letters, digits, '.', '_' and '-' only; a path is refused)",
        )
    import shutil  # lazily, as subprocess: only a credential helper needs them (start-up time)
    import subprocess

    exe = shutil.which(f"docker-credential-{name}", path=env.get("PATH", os.defpath))
    if exe is None:
        raise _helper_error(
            name, action, registry,
            "is not installed: no executable docker-credential-" + name + " on PATH (install "
            "it, or remove it from credHelpers/credsStore in the config file)",
        )
    try:
        return subprocess.run(
            [exe, action], input=payload.encode(), capture_output=True,
            timeout=HELPER_TIMEOUT, env=dict(env), check=False,
        )
    except subprocess.TimeoutExpired:
        raise _helper_error(
            name, action, registry, f"did not answer within {HELPER_TIMEOUT:.0f} s"
        ) from None
    except OSError as exc:
        raise _helper_error(name, action, registry, f"could not be run: {exc}") from None


def _helper_message(proc: subprocess.CompletedProcess[bytes]) -> str:
    text = (proc.stdout or b"").decode("utf-8", "replace").strip()
    text = text or (proc.stderr or b"").decode("utf-8", "replace").strip()
    return text.splitlines()[0][:200] if text else "no message"


def _not_found(message: str) -> bool:
    return "credentials not found" in message.lower()


def _helper_answer(
    name: str, action: str, payload: str, *, registry: str, env: Mapping[str, str] | None
) -> bytes | None:
    """Run ``docker-credential-NAME ACTION``; its stdout, or ``None`` when it says it has
    nothing for the server (any other failure is an :class:`~tank.errors.AuthError`)."""
    proc = _run_helper(
        name, action, payload, registry=registry, env=os.environ if env is None else env
    )
    if proc.returncode == 0:
        return proc.stdout
    message = _helper_message(proc)
    if action != "store" and _not_found(message):
        return None
    raise _helper_error(name, action, registry, f"failed (exit {proc.returncode}): {message}")


def helper_get(
    name: str, server: str, *, registry: str, env: Mapping[str, str] | None = None
) -> Credentials | None:
    """``docker-credential-NAME get``: the credentials stored for ``server``, or ``None``."""
    answer = _helper_answer(name, "get", server, registry=registry, env=env)
    if answer is None:
        return None
    doc = _json.loads_object(
        answer, what="its answer",
        error=lambda message: _helper_error(name, "get", registry, message),
    )
    username, secret = doc.get("Username"), doc.get("Secret")
    if not isinstance(username, str) or not isinstance(secret, str) or not secret:
        return None
    source = f"docker-credential-{name}"
    if username == TOKEN_USERNAME:
        return Credentials("", "", secret, source=source)
    return Credentials(username, secret, source=source)


def helper_store(
    name: str, server: str, credentials: Credentials, *, registry: str,
    env: Mapping[str, str] | None = None,
) -> None:
    """``docker-credential-NAME store``."""
    environ = os.environ if env is None else env
    if credentials.identity_token:
        username, secret = TOKEN_USERNAME, credentials.identity_token
    else:
        username, secret = credentials.username, credentials.password
    payload = json.dumps({"ServerURL": server, "Username": username, "Secret": secret})
    _helper_answer(name, "store", payload, registry=registry, env=environ)


def helper_erase(
    name: str, server: str, *, registry: str, env: Mapping[str, str] | None = None
) -> bool:
    """``docker-credential-NAME erase``; whether something was erased."""
    return _helper_answer(name, "erase", server, registry=registry, env=env) is not None


# -- config files ---------------------------------------------------------------------------------


def _read_config(path: Path, *, registry: str) -> dict[str, Any] | None:
    """A config file's JSON object; ``None`` when the file does not exist."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise AuthError(
            f"cannot read the credentials file {path}: {exc}", registry=registry
        ) from None
    if not text.strip():
        return {}
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise AuthError(
            f"the credentials file {path} is not valid JSON: {exc}", registry=registry
        ) from None
    if not isinstance(doc, dict):
        raise AuthError(f"the credentials file {path} is not a JSON object", registry=registry)
    return doc


def _entry_credentials(entry: object, source: str) -> Credentials | None:
    """The credentials in one ``auths`` entry (``None`` when it holds none)."""
    if not isinstance(entry, dict):
        return None
    username = entry.get("username") if isinstance(entry.get("username"), str) else ""
    password = entry.get("password") if isinstance(entry.get("password"), str) else ""
    auth = entry.get("auth")
    if isinstance(auth, str) and auth.strip():
        try:
            decoded = base64.b64decode(auth.strip(), validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            decoded = ""
        if ":" in decoded:
            username, _, password = decoded.partition(":")
    token = entry.get("identitytoken")
    identity = token if isinstance(token, str) else ""
    if not password and not identity:
        return None
    return Credentials(str(username), str(password), identity, source=source)


def _lookup_file(
    doc: dict[str, Any], path: Path, names: list[str], *, namespaces: bool, registry: str,
    env: Mapping[str, str],
) -> Credentials | None:
    host = names[-1]
    helpers = doc.get("credHelpers")
    if isinstance(helpers, dict):
        for key, name in helpers.items():
            if isinstance(name, str) and name and _key_name(key, namespaces=False) == host:
                found = helper_get(name, server_key(registry), registry=registry, env=env)
                if found is not None:
                    return found
    store = doc.get("credsStore")
    if isinstance(store, str) and store:
        found = helper_get(store, server_key(registry), registry=registry, env=env)
        if found is not None:
            return found
    auths = doc.get("auths")
    if isinstance(auths, dict):
        matches: dict[str, object] = {}
        for key, entry in auths.items():
            if isinstance(key, str):
                matches.setdefault(_key_name(key, namespaces=namespaces), entry)
        for name in names:
            if name in matches:
                found = _entry_credentials(matches[name], str(path))
                if found is not None:
                    return found
    return None


class CredentialStore:
    """The credentials configured on this machine, for skopeo, podman and docker alike.

    Files are read at each :meth:`lookup` (answers are remembered per registry by this
    instance), so make one per pull or per command. ``environ`` replaces ``os.environ`` (it
    supplies ``REGISTRY_AUTH_FILE``, ``XDG_RUNTIME_DIR``, ``DOCKER_CONFIG``, ``HOME`` and the
    ``PATH`` helpers are looked up on). Thread-safe.
    """

    def __init__(
        self,
        environ: Mapping[str, str] | None = None,
        *,
        authfile: str | os.PathLike[str] | None = None,
    ) -> None:
        """``authfile`` (skopeo's ``--authfile``): read and write that file only, in the
        containers ``auth.json`` format (the docker config's ``auths`` and helpers)."""
        self.environ: Mapping[str, str] = os.environ if environ is None else environ
        self.authfile = Path(authfile).expanduser() if authfile is not None else None
        self._memo: dict[tuple[str, str | None], Credentials | None] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"CredentialStore(files={[str(p) for p, _ in self.files()]})"

    def files(self) -> list[tuple[Path, bool]]:
        """The files consulted, in order, each with whether its keys may name namespaces."""
        env = self.environ
        if self.authfile is not None:
            return [(self.authfile, True)]
        out: list[tuple[Path, bool]] = []
        if env.get("REGISTRY_AUTH_FILE"):
            out.append((Path(env["REGISTRY_AUTH_FILE"]), True))
        elif env.get("XDG_RUNTIME_DIR"):
            out.append((Path(env["XDG_RUNTIME_DIR"]) / "containers" / "auth.json", True))
        out.append((self.docker_config_path(), False))
        return out

    def docker_config_path(self) -> Path:
        """Where :meth:`store` writes: the ``authfile`` when one was given, else
        ``$DOCKER_CONFIG/config.json``, else ``~/.docker/config.json``."""
        if self.authfile is not None:
            return self.authfile
        env = self.environ
        if env.get("DOCKER_CONFIG"):
            return Path(env["DOCKER_CONFIG"]) / "config.json"
        home = env.get("HOME") or str(Path.home())
        return Path(home) / ".docker" / "config.json"

    def lookup(self, registry: str, repository: str | None = None) -> Credentials | None:
        """The credentials for ``registry`` (and ``repository``, for namespaced keys)."""
        memo_key = (canonical_registry(registry), repository)
        with self._lock:
            if memo_key in self._memo:
                return self._memo[memo_key]
        found = self._lookup(registry, repository)
        with self._lock:
            self._memo[memo_key] = found
        return found

    def _lookup(self, registry: str, repository: str | None) -> Credentials | None:
        for path, namespaces in self.files():
            doc = _read_config(path, registry=registry)
            if doc is None:
                continue
            names = _candidates(registry, repository if namespaces else None)
            found = _lookup_file(
                doc, path, names, namespaces=namespaces, registry=registry, env=self.environ
            )
            if found is not None:
                return found
        return None

    def _helper_for(self, doc: dict[str, Any], registry: str) -> str | None:
        host = canonical_registry(registry)
        helpers = doc.get("credHelpers")
        if isinstance(helpers, dict):
            for key, name in helpers.items():
                if isinstance(name, str) and name and _key_name(key, namespaces=False) == host:
                    return name
        store = doc.get("credsStore")
        return store if isinstance(store, str) and store else None

    def store(self, registry: str, credentials: Credentials) -> str:
        """Save ``credentials`` for ``registry`` where docker would; say where.

        A registry's ``credHelpers`` entry, else ``credsStore``, gets them through the helper's
        ``store`` (and ``auths`` an empty entry for the registry, as docker writes); otherwise
        they go into ``auths`` of the docker config file. The file is written atomically, mode
        ``0600``, its other keys kept. With an identity token, the password is not kept.
        """
        path = self.docker_config_path()
        doc = _read_config(path, registry=registry) or {}
        key = server_key(registry)
        helper = self._helper_for(doc, registry)
        if helper is not None:
            helper_store(helper, key, credentials, registry=registry, env=self.environ)
        auths = doc.get("auths")
        if not isinstance(auths, dict):
            auths = {}
        host = canonical_registry(registry)
        entry: dict[str, Any] = {}
        for old in [k for k in auths if _key_name(k, namespaces=False) == host]:
            previous = auths.pop(old)
            if old == key and isinstance(previous, dict):
                entry = previous
        for owned in ("auth", "username", "password", "identitytoken"):
            entry.pop(owned, None)
        if helper is None:
            password = "" if credentials.identity_token else credentials.password
            entry["auth"] = base64.b64encode(
                f"{credentials.username}:{password}".encode()
            ).decode("ascii")
            if credentials.identity_token:
                entry["identitytoken"] = credentials.identity_token
        # with a helper, docker keeps an empty entry in auths (it lists the registry); so does tank
        auths[key] = entry
        doc["auths"] = auths
        write_config(path, doc)
        self._forget(registry)
        return f"docker-credential-{helper}" if helper is not None else str(path)

    def erase(self, registry: str) -> bool:
        """Remove what :meth:`store` saved for ``registry``; whether anything was there."""
        path = self.docker_config_path()
        doc = _read_config(path, registry=registry)
        if doc is None:
            return False
        erased = False
        helper = self._helper_for(doc, registry)
        if helper is not None:
            erased = helper_erase(helper, server_key(registry), registry=registry,
                                  env=self.environ)
        auths = doc.get("auths")
        host = canonical_registry(registry)
        if isinstance(auths, dict):
            stale = [k for k in auths if _key_name(k, namespaces=False) == host]
            for key in stale:
                entry = auths.pop(key)
                erased = erased or _entry_credentials(entry, "") is not None
            if stale:
                write_config(path, doc)
        self._forget(registry)
        return erased

    def _forget(self, registry: str) -> None:
        host = canonical_registry(registry)
        with self._lock:
            for key in [k for k in self._memo if k[0] == host]:
                del self._memo[key]


def write_config(path: Path, doc: dict[str, Any]) -> None:
    """Replace the JSON file ``path`` atomically with ``doc``, mode ``0600``.

    A symlinked config is written through to its target, as docker does. The directory is
    created (mode ``0700``) when missing.
    """
    target = Path(os.path.realpath(path))
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    data = (json.dumps(doc, indent="\t") + "\n").encode()
    with atomic_file(target, mode=0o600) as out:
        out.write(data)


class LazyCredentials:
    """A ``credentials=`` argument resolved for one registry on first use, at most once."""

    def __init__(self, value: object, registry: str, repository: str | None) -> None:
        self._value = coerce(value)
        self._registry = registry
        self._repository = repository
        self._resolved: Credentials | None = None
        self._done = isinstance(self._value, Credentials) or self._value is None
        if isinstance(self._value, Credentials):
            self._resolved = self._value
        self._lock = threading.Lock()

    def lookup(self, registry: str, repository: str | None = None) -> Credentials | None:
        """:meth:`get` for this registry; ``None`` for any other (never another's credentials)."""
        if canonical_registry(registry) != canonical_registry(self._registry):
            return None
        return self.get()

    def get(self) -> Credentials | None:
        """The credentials (looking them up on the first call), or ``None``."""
        if self._done:
            return self._resolved
        with self._lock:
            if not self._done:
                source = self._value
                assert source is not None
                assert not isinstance(source, Credentials)
                self._resolved = source.lookup(self._registry, self._repository)
                self._done = True
        return self._resolved


def resolver(value: object, registry: str, repository: str | None = None) -> LazyCredentials:
    """A lazy, thread-safe view of a ``credentials=`` argument for one registry.

    A :class:`CredentialSource` is asked only when the registry first challenges, so open
    registries never cost a lookup (nor a helper process).
    """
    return LazyCredentials(value, registry, repository)


__all__ = [
    "DOCKER_HUB_KEY",
    "TOKEN_USERNAME",
    "CredentialSource",
    "CredentialStore",
    "Credentials",
    "CredentialsArg",
    "LazyCredentials",
    "canonical_registry",
    "coerce",
    "helper_erase",
    "helper_get",
    "helper_store",
    "resolver",
    "server_key",
    "write_config",
]
