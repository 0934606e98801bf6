"""A Docker-Hub-style token server for the registry's token auth mode.

Spec: https://distribution.github.io/distribution/spec/auth/token/

Facts checked against CNCF distribution 2.8.2:

* the JWT header must carry ``kid`` = the *libtrust* fingerprint of the signing key
  (an RFC 7638 thumbprint is rejected);
* ``aud`` must be a plain string equal to the registry's ``service``, ``iss`` its ``issuer``;
* ``exp``/``nbf``/``iat`` are integers (the registry allows 60 s of leeway on expiry);
* ``access`` is a list of ``{type, name, actions}``; ``sub`` may be ``""`` (anonymous).

Besides the token spec's ``GET /token`` (anonymous, or with Basic credentials), it takes the
OAuth2 form (https://distribution.github.io/distribution/spec/auth/oauth/): ``POST /token`` with
``grant_type=password`` (``username``, ``password``; ``access_type=offline`` adds a
``refresh_token`` to the answer) or ``grant_type=refresh_token``. ``oauth = False`` makes the
POST answer ``404``, as GCR does, for testing clients' fallback to the GET.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import json
import secrets
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tank.testing._closing import Closing, stop_server

__all__ = ["TokenRequest", "TokenServer", "libtrust_key_id"]

TokenField = Literal["token", "access_token", "both"]


def libtrust_key_id(public_key: ec.EllipticCurvePublicKey) -> str:
    """Return the libtrust key ID: base32 of sha256(DER SPKI)[:30], in 12 groups of 4."""
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    b32 = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode("ascii").rstrip("=")
    return ":".join(b32[i : i + 4] for i in range(0, len(b32), 4))


@dataclass(frozen=True)
class TokenRequest:
    """One request seen by the token server (header names in lower case)."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    form: dict[str, list[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class _Scope:
    type: str
    name: str
    actions: tuple[str, ...]


def _parse_scope(scope: str) -> _Scope | None:
    """Parse ``type:name:actions`` (the name may itself hold colons)."""
    head, sep, actions = scope.rpartition(":")
    if not sep:
        return None
    rtype, sep, name = head.partition(":")
    if not sep or not rtype or not name:
        return None
    return _Scope(rtype, name, tuple(a for a in actions.split(",") if a))


@dataclass
class _FailPlan:
    remaining: int = 0
    status: int = 503


@dataclass
class _State:
    lock: threading.Lock = field(default_factory=threading.Lock)
    requests: list[TokenRequest] = field(default_factory=list)
    fail: _FailPlan = field(default_factory=_FailPlan)


class TokenServer(Closing):
    """A threaded token server on loopback, signing ES256 JWTs the registry trusts."""

    def __init__(
        self,
        *,
        users: Mapping[str, str] | None = None,
        public: Iterable[str] | None = None,
        service: str = "tank-test-registry",
        issuer: str = "tank-test-token-server",
        host: str = "127.0.0.1",
        expires_in: int = 300,
        realm_host: str | None = None,
        read_only: Iterable[str] = (),
    ) -> None:
        """Start serving at once; ``public=None`` lets anonymous users pull every repository.
        Users named in ``read_only`` are granted ``pull`` only, whatever they ask for.

        ``realm_host`` names the realm's host in challenges instead of ``host`` (a name only a
        test proxy resolves, say), while the server listens on ``host``."""
        self.users: dict[str, str] = dict(users or {})
        self.read_only: set[str] = set(read_only)
        self.public: set[str] | None = None if public is None else set(public)
        self.service = service
        self.issuer = issuer
        self.expires_in = expires_in
        self.token_field: TokenField = "token"
        #: whether ``POST /token`` (the OAuth2 form) is served; ``False`` answers it ``404``
        self.oauth = True
        self._refresh_tokens: dict[str, str] = {}
        self._state = _State()
        self._key = ec.generate_private_key(ec.SECP256R1())
        self.kid = libtrust_key_id(self._key.public_key())
        self._dir = Path(tempfile.mkdtemp(prefix="tank-token-"))
        self.rootcertbundle = self._dir / "token-root.pem"
        self.rootcertbundle.write_bytes(self._self_signed_cert())
        self._server = ThreadingHTTPServer((host, 0), self._handler_class())
        self._server.daemon_threads = True
        port = self._server.server_address[1]
        self.realm = f"http://{realm_host or host}:{port}/token"
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            args=(0.05,),
            name="tank-token-server",
            daemon=True,
        )
        self._thread.start()
        self._closed = False

    # -- public API -------------------------------------------------------------------------

    @property
    def requests(self) -> list[TokenRequest]:
        """A snapshot of the recorded requests."""
        with self._state.lock:
            return list(self._state.requests)

    def reset(self) -> None:
        """Forget recorded requests and any pending failures."""
        with self._state.lock:
            self._state.requests.clear()
            self._state.fail = _FailPlan()

    def fail_next(self, n: int, status: int = 503) -> None:
        """Make the next ``n`` token requests fail with ``status``."""
        with self._state.lock:
            self._state.fail = _FailPlan(n, status)

    def mint(
        self,
        access: list[dict[str, Any]],
        subject: str = "admin",
        expires_in: int | None = None,
    ) -> str:
        """Sign a token granting ``access`` (a list of ``{type, name, actions}``)."""
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "sub": subject,
            "aud": self.service,
            "exp": now + (self.expires_in if expires_in is None else expires_in),
            "nbf": now - 1,
            "iat": now,
            "jti": secrets.token_hex(12),
            "access": access,
        }
        return jwt.encode(claims, self._key, algorithm="ES256", headers={"kid": self.kid})

    def issue_refresh_token(self, user: str) -> str:
        """A refresh token for ``user`` (what docker stores as ``identitytoken``)."""
        if user not in self.users:
            raise ValueError(f"unknown user {user!r}")
        refresh = "rt-" + secrets.token_urlsafe(24)
        with self._state.lock:
            self._refresh_tokens[refresh] = user
        return refresh

    def push_token(self, *repos: str) -> str:
        """A token allowing pull and push on each of ``repos``."""
        return self.mint(
            [{"type": "repository", "name": r, "actions": ["pull", "push"]} for r in repos]
        )

    def close(self) -> None:
        """Stop the server and remove its files."""
        if not self._closed:
            self._closed = True
            stop_server(self._server, self._thread)
            for p in self._dir.iterdir():
                p.unlink()
            self._dir.rmdir()

    # -- internals --------------------------------------------------------------------------

    def _self_signed_cert(self) -> bytes:
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tank test token signer")])
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=365))
            .sign(self._key, hashes.SHA256())
        )
        return cert.public_bytes(serialization.Encoding.PEM)

    def _authenticate(self, authorization: str | None) -> tuple[bool, str | None]:
        """Return (credentials ok, user); no header means anonymous (ok, None)."""
        if not authorization:
            return True, None
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() != "basic":
            return False, None
        try:
            user, _, password = base64.b64decode(value.strip()).decode("utf-8").partition(":")
        except (ValueError, binascii.Error):
            return False, None
        if user in self.users and secrets.compare_digest(self.users[user], password):
            return True, user
        return False, None

    def _grant(self, user: str | None, scopes: list[_Scope]) -> list[dict[str, Any]]:
        access: list[dict[str, Any]] = []
        for s in scopes:
            if user is not None and user in self.read_only:
                actions = [a for a in s.actions if a == "pull"]
            elif user is not None:
                actions = list(s.actions)
            elif s.type == "repository" and (self.public is None or s.name in self.public):
                actions = [a for a in s.actions if a == "pull"]
            else:
                actions = []
            if actions:
                access.append({"type": s.type, "name": s.name, "actions": actions})
        return access

    def _answer(self, query: dict[str, list[str]], headers: dict[str, str]) -> tuple[int, Any]:
        with self._state.lock:
            if self._state.fail.remaining > 0:
                self._state.fail.remaining -= 1
                return self._state.fail.status, {"errors": [{"code": "UNAVAILABLE"}]}
        service = query.get("service", [None])[0]
        if service is not None and service != self.service:
            return 400, {"errors": [{"code": "BAD_SERVICE", "message": f"unknown {service!r}"}]}
        ok, user = self._authenticate(headers.get("authorization"))
        if not ok:
            return 401, {"details": "incorrect username or password"}
        scopes: list[_Scope] = []
        for raw in query.get("scope", []):
            for part in raw.split(" "):  # some clients join scopes with spaces
                parsed = _parse_scope(part) if part else None
                if parsed is not None:
                    scopes.append(parsed)
        expires_in = self.expires_in
        token = self.mint(self._grant(user, scopes), subject=user or "", expires_in=expires_in)
        body: dict[str, Any] = {
            "expires_in": expires_in,
            "issued_at": dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z"),
        }
        if self.token_field in ("token", "both"):
            body["token"] = token
        if self.token_field in ("access_token", "both"):
            body["access_token"] = token
        return 200, body

    def _answer_oauth(self, form: dict[str, list[str]]) -> tuple[int, Any]:
        """The OAuth2 form: ``grant_type=password`` or ``refresh_token``."""
        with self._state.lock:
            if self._state.fail.remaining > 0:
                self._state.fail.remaining -= 1
                return self._state.fail.status, {"errors": [{"code": "UNAVAILABLE"}]}

        def one(name: str) -> str:
            return form.get(name, [""])[0]

        service = one("service")
        if service and service != self.service:
            return 400, {"error": "invalid_request", "error_description": "unknown service"}
        grant = one("grant_type")
        refresh: str | None = None
        if grant == "password":
            user = one("username")
            if user not in self.users or not secrets.compare_digest(
                self.users[user], one("password")
            ):
                return 401, {"error": "invalid_grant", "details": "incorrect username or password"}
            if one("access_type") == "offline":
                refresh = self.issue_refresh_token(user)
        elif grant == "refresh_token":
            refresh = one("refresh_token")
            with self._state.lock:
                known = self._refresh_tokens.get(refresh)
            if known is None:
                return 401, {"error": "invalid_grant", "details": "unknown refresh token"}
            user = known
        else:
            return 400, {"error": "unsupported_grant_type"}
        scopes = [
            parsed for part in one("scope").split(" ")
            if part and (parsed := _parse_scope(part)) is not None
        ]
        token = self.mint(self._grant(user, scopes), subject=user, expires_in=self.expires_in)
        body: dict[str, Any] = {
            "access_token": token,
            "expires_in": self.expires_in,
            "scope": one("scope"),
            "issued_at": dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z"),
        }
        if refresh is not None:
            body["refresh_token"] = refresh
        return 200, body

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                """Stay quiet."""

            def _send(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                split = urlsplit(self.path)
                query = parse_qs(split.query, keep_blank_values=True)
                headers = {k.lower(): v for k, v in self.headers.items()}
                form: dict[str, list[str]] = {}
                if self.command == "POST" and "x-www-form-urlencoded" in headers.get(
                    "content-type", ""
                ):
                    form = parse_qs(raw.decode("utf-8", "replace"), keep_blank_values=True)
                with outer._state.lock:
                    outer._state.requests.append(
                        TokenRequest(self.command, split.path, query, headers, form)
                    )
                if split.path != "/token":
                    self._send(404, {"errors": [{"code": "NOT_FOUND"}]})
                elif self.command == "POST" and outer.oauth:
                    self._send(*outer._answer_oauth(form))
                elif self.command != "GET":
                    self._send(404, {"errors": [{"code": "UNSUPPORTED"}]})
                else:
                    self._send(*outer._answer(query, headers))

            do_GET = _handle
            do_POST = _handle
            do_HEAD = _handle

        return Handler
