"""Credentials: where they are found, how challenges are answered with them, where they go.

The lookup tests write real config files and real helper executables; the rest runs against
the real CNCF registry in htpasswd mode and in token mode with a private repository.
"""

from __future__ import annotations

import base64
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import tank.registry as api
from support.credhelper import (
    helper_calls,
    htpasswd_registry,
    private_registry,
    write_broken_helper,
    write_helper,
)
from tank._pull import pull
from tank.auth import Challenge, Token, TokenCache, fetch_token
from tank.auth.credentials import (
    DOCKER_HUB_KEY,
    Credentials,
    CredentialStore,
    coerce,
    server_key,
)
from tank.errors import AuthError
from tank.testing.fronts import MakeCDN, MakeFront
from tank.testing.registry import LocalRegistry
from tank.testing.seed import Seeded
from tank.testing.tokenserver import TokenServer
from tank.transport import Transport

USER, PASSWORD = "bob", "s3cret-pw"
ALICE, ALICE_PW = "alice", "wonderland-pw"


# -- fixtures -------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A home, docker config dir, runtime dir and helper bin dir of the test's own."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    monkeypatch.delenv("REGISTRY_AUTH_FILE", raising=False)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}")
    return tmp_path


def write_json(path: Path, doc: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))
    return path


def auth_entry(user: str, password: str) -> dict[str, str]:
    return {"auth": base64.b64encode(f"{user}:{password}".encode()).decode()}


def docker_config(tmp_path: Path, doc: Any) -> Path:
    return write_json(tmp_path / "docker" / "config.json", doc)


@pytest.fixture(scope="module")
def basic_registry(seeded: Seeded) -> Iterator[LocalRegistry]:
    """A registry in htpasswd mode (bob), seeded."""
    with htpasswd_registry(seeded, USER, PASSWORD) as reg:
        yield reg


@pytest.fixture(scope="module")
def _private(seeded: Seeded) -> Iterator[tuple[TokenServer, LocalRegistry]]:
    with private_registry(seeded, ALICE, ALICE_PW) as pair:
        yield pair


@pytest.fixture
def private(_private: tuple[TokenServer, LocalRegistry]) -> tuple[TokenServer, LocalRegistry]:
    """Token mode where ``seeded.repo`` is private to alice; the token server's log is empty."""
    ts, reg = _private
    ts.reset()
    ts.oauth = True
    ts.expires_in = 300
    return ts, reg


# -- the credentials themselves -------------------------------------------------------------------


def test_credentials_never_show_their_secrets() -> None:
    creds = Credentials("bob", "hunter2", source="somewhere")
    token = Credentials("", "", "refresh-xyz")
    for text in (repr(creds), str(creds), repr(token), str([creds, token]), creds.describe()):
        assert "hunter2" not in text
        assert "refresh-xyz" not in text
    assert "bob" in repr(creds)
    assert creds.principal != Credentials("bob", "other").principal
    assert coerce(("bob", "hunter2")) == Credentials("bob", "hunter2")
    with pytest.raises(TypeError):
        coerce("bob:hunter2")


# -- where they are found -------------------------------------------------------------------------


def test_skopeo_order_auth_file_then_docker_config(
    isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_auth = write_json(
        isolated / "run" / "containers" / "auth.json",
        {"auths": {"r.example": auth_entry("from-xdg", "p1")}},
    )
    docker_config(isolated, {"auths": {
        "r.example": auth_entry("from-docker", "p2"), "d.example": auth_entry("d", "p3"),
    }})
    found = CredentialStore().lookup("r.example")
    assert found == Credentials("from-xdg", "p1")
    assert found is not None
    assert found.source == str(run_auth)
    assert CredentialStore().lookup("d.example") == Credentials("d", "p3")  # falls through

    explicit = write_json(isolated / "explicit.json",
                          {"auths": {"r.example": auth_entry("from-env", "p4")}})
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(explicit))  # replaces the XDG file
    assert CredentialStore().lookup("r.example") == Credentials("from-env", "p4")
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(isolated / "missing.json"))
    assert CredentialStore().lookup("r.example") == Credentials("from-docker", "p2")

    monkeypatch.delenv("DOCKER_CONFIG")  # then ~/.docker/config.json
    write_json(isolated / "home" / ".docker" / "config.json",
               {"auths": {"r.example": auth_entry("from-home", "p5")}})
    assert CredentialStore().lookup("r.example") == Credentials("from-home", "p5")


def test_auths_entry_forms(isolated: Path) -> None:
    docker_config(isolated, {"auths": {
        "a.example": auth_entry("u1", "pw:with:colons"),
        "b.example": {"username": "u2", "password": "p2"},
        "c.example": {"auth": base64.b64encode(b"u3:").decode(), "identitytoken": "rt-3"},
        "e.example": {},
        "f.example": {"auth": "not base64!"},
    }})
    store = CredentialStore()
    assert store.lookup("a.example") == Credentials("u1", "pw:with:colons")
    assert store.lookup("b.example") == Credentials("u2", "p2")
    assert store.lookup("c.example") == Credentials("u3", "", "rt-3")
    assert store.lookup("e.example") is None
    assert store.lookup("f.example") is None
    assert store.lookup("z.example") is None


@pytest.mark.parametrize("key", [DOCKER_HUB_KEY, "docker.io", "index.docker.io",
                                 "https://index.docker.io/v1", "registry-1.docker.io"])
@pytest.mark.parametrize("registry", ["registry-1.docker.io", "docker.io", "index.docker.io"])
def test_docker_hub_spellings_match(key: str, registry: str, isolated: Path) -> None:
    docker_config(isolated, {"auths": {key: auth_entry("hubuser", "hubpw")}})
    assert CredentialStore().lookup(registry) == Credentials("hubuser", "hubpw")
    assert server_key(registry) == DOCKER_HUB_KEY


@pytest.mark.parametrize(
    "registry",
    ["example.com:5000", "evil-example.com", "example.com.evil.net", "sub.example.com",
     "example.co", "quay.io", "ghcr.io"],
)
def test_a_registrys_credentials_are_never_used_for_another(registry: str, isolated: Path) -> None:
    docker_config(isolated, {"auths": {
        "example.com": auth_entry("u", "p"), "https://example.com/v1/": auth_entry("u", "p"),
        DOCKER_HUB_KEY: auth_entry("hub", "p"),
    }})
    write_json(isolated / "run" / "containers" / "auth.json",
               {"auths": {"quay.io/team": auth_entry("team", "p")}})
    assert CredentialStore().lookup(registry, "other/repo") is None


def test_urls_ports_and_case_in_keys(isolated: Path) -> None:
    docker_config(isolated, {"auths": {
        "https://Registry.Example.com:5000/v2/": auth_entry("u", "p"),
    }})
    assert CredentialStore().lookup("registry.example.com:5000") == Credentials("u", "p")
    assert CredentialStore().lookup("registry.example.com") is None


def test_auth_json_namespaces_most_specific_first(isolated: Path) -> None:
    write_json(isolated / "run" / "containers" / "auth.json", {"auths": {
        "quay.io": auth_entry("any", "p0"),
        "quay.io/team": auth_entry("team", "p1"),
        "quay.io/team/app": auth_entry("app", "p2"),
    }})
    store = CredentialStore()
    assert store.lookup("quay.io", "team/app") == Credentials("app", "p2")
    assert store.lookup("quay.io", "team/other") == Credentials("team", "p1")
    assert store.lookup("quay.io", "teamx/app") == Credentials("any", "p0")
    assert store.lookup("quay.io") == Credentials("any", "p0")


def test_cred_helpers_and_creds_store(isolated: Path) -> None:
    db = isolated / "helper.json"
    write_helper(isolated / "bin", "test", db)
    write_json(db, {"h.example": ["helped", "hpw"], "s.example": ["stored", "spw"],
                    "t.example": ["<token>", "rt-from-helper"],
                    DOCKER_HUB_KEY: ["hub", "hubpw"]})
    docker_config(isolated, {
        "credHelpers": {"h.example": "test"},
        "auths": {"h.example": auth_entry("file", "fpw"), "n.example": auth_entry("n", "npw")},
    })
    found = CredentialStore().lookup("h.example")
    assert found == Credentials("helped", "hpw")
    assert found is not None
    assert found.source == "docker-credential-test"
    assert CredentialStore().lookup("n.example") == Credentials("n", "npw")
    assert helper_calls(db) == ["get h.example"]  # asked about its own registry only

    docker_config(isolated, {"credsStore": "test", "auths": {"n.example": auth_entry("n", "x")}})
    assert CredentialStore().lookup("s.example") == Credentials("stored", "spw")
    assert CredentialStore().lookup("t.example") == Credentials("", "", "rt-from-helper")
    assert CredentialStore().lookup("docker.io") == Credentials("hub", "hubpw")
    # not in the store: the file's own entry, else nothing
    assert CredentialStore().lookup("n.example") == Credentials("n", "x")
    assert CredentialStore().lookup("zz.example") is None
    assert f"get {DOCKER_HUB_KEY}" in helper_calls(db)


def test_a_missing_or_failing_helper_is_named(isolated: Path) -> None:
    docker_config(isolated, {"credHelpers": {"m.example": "nosuch"}, "credsStore": "broken"})
    with pytest.raises(AuthError) as info:
        CredentialStore().lookup("m.example")
    assert "docker-credential-nosuch" in str(info.value)
    assert "PATH" in str(info.value)
    assert "m.example" in str(info.value)

    write_broken_helper(isolated / "bin", "broken", "keychain is locked")
    with pytest.raises(AuthError) as info:
        CredentialStore().lookup("other.example")
    assert "docker-credential-broken" in str(info.value)
    assert "keychain is locked" in str(info.value)


def test_a_malformed_config_is_named(isolated: Path) -> None:
    path = isolated / "docker" / "config.json"
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    with pytest.raises(AuthError, match=r"config\.json is not valid JSON"):
        CredentialStore().lookup("x.example")


# -- the token cache ------------------------------------------------------------------------------


def test_token_cache_expiry_scope_and_principal() -> None:
    cache = TokenCache()
    realm = Challenge("bearer", {"realm": "https://t/token", "service": "s"})
    key = TokenCache.key(realm, ["repository:a:pull"], "p1")
    now = time.time()
    cache.put(key, Token("tok", 300, now))
    assert cache.get(key) is not None
    assert cache.get(key, now=now + 269) is not None  # renewed 30 s before expiry
    assert cache.get(key, now=now + 271) is None
    assert cache.stale("tok", now=now + 271)
    assert not cache.stale("someone-elses")
    assert cache.get(TokenCache.key(realm, ["repository:a:pull"], "p2")) is None
    assert cache.get(TokenCache.key(realm, ["repository:b:pull"], "p1")) is None
    short = TokenCache.key(realm, ["x"], "")
    cache.put(short, Token("short", 60, now))  # no expires_in: 60 s, renewed 6 s early
    assert cache.get(short, now=now + 53) is not None
    assert cache.get(short, now=now + 55) is None


def test_token_cache_one_fetch_for_many_threads() -> None:
    cache = TokenCache()
    key = TokenCache.key(Challenge("bearer", {"realm": "https://t"}), ["s"])
    fetched: list[int] = []

    def fetch() -> Token:
        fetched.append(1)
        time.sleep(0.1)
        return Token(f"t{len(fetched)}", 300, time.time())

    got: list[str] = []
    threads = [
        threading.Thread(target=lambda: got.append(cache.obtain(key, fetch)[0].token))
        for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got == ["t1"] * 8
    assert len(fetched) == 1
    token, fresh = cache.obtain(key, fetch, refused="t1")  # the registry refused it
    assert (token.token, fresh) == ("t2", True)


def test_credentials_never_go_to_a_plain_http_realm_off_this_machine() -> None:
    challenge = Challenge("bearer", {"realm": "http://auth.example.invalid/token"})
    with pytest.raises(AuthError, match="refusing to send the credentials") as info:
        fetch_token(Transport(), challenge, registry="r.example.invalid",
                    credentials=Credentials("u", "hunter2"))
    assert "hunter2" not in str(info.value)


# -- htpasswd (Basic) -----------------------------------------------------------------------------


def test_basic_without_credentials_says_how_to_log_in(
    basic_registry: LocalRegistry, seeded: Seeded
) -> None:
    with pytest.raises(AuthError) as info:
        api.manifest(basic_registry.host, seeded.repo, "latest")
    text = str(info.value)
    assert "Basic" in text
    assert f"tank login {basic_registry.host}" in text


def test_basic_wrong_password_names_the_registry(
    basic_registry: LocalRegistry, seeded: Seeded
) -> None:
    with pytest.raises(AuthError) as info:
        api.manifest(basic_registry.host, seeded.repo, "latest", credentials=(USER, "wrong-pw"))
    err = info.value
    assert err.status == 401
    assert err.registry == basic_registry.host
    assert basic_registry.host in str(err)
    assert "wrong username or password" in str(err)
    assert "wrong-pw" not in str(err)
    assert err.retried is None  # refused credentials are not retried


def test_basic_with_explicit_credentials(basic_registry: LocalRegistry, seeded: Seeded) -> None:
    creds = Credentials(USER, PASSWORD)
    info, token = api.manifest(basic_registry.host, seeded.repo, "latest", credentials=creds)
    assert info.raw == seeded.latest.manifest
    assert token is None  # Basic: no token to thread
    config = seeded.latest.config
    assert api.blob(
        basic_registry.host, seeded.repo, config.digest, credentials=(USER, PASSWORD)
    ) == config.data


def test_basic_from_docker_config(
    basic_registry: LocalRegistry, seeded: Seeded, isolated: Path
) -> None:
    docker_config(isolated, {"auths": {basic_registry.host: auth_entry(USER, PASSWORD)}})
    image = pull(f"{basic_registry.host}/{seeded.repo}:latest", cache=isolated / "cache",
                 credentials=CredentialStore())
    assert image.digest == seeded.latest.manifest_digest


def test_basic_from_a_credential_helper(
    basic_registry: LocalRegistry, seeded: Seeded, isolated: Path
) -> None:
    db = write_json(isolated / "helper.json", {basic_registry.host: [USER, PASSWORD]})
    write_helper(isolated / "bin", "test", db)
    docker_config(isolated, {"credHelpers": {basic_registry.host: "test"}})
    image = pull(f"{basic_registry.host}/{seeded.repo}:multi", cache=isolated / "cache",
                 credentials=CredentialStore())
    assert image.index_digest == seeded.multi.manifest_digest
    assert helper_calls(db) == [f"get {basic_registry.host}"]  # once for the whole pull


def test_basic_credentials_stay_off_the_cdn(
    basic_registry: LocalRegistry, seeded: Seeded, isolated: Path, make_front: MakeFront,
    make_cdn: MakeCDN,
) -> None:
    cdn = make_cdn(basic_registry, host="127.0.0.3", hops=1)
    front = make_front(basic_registry.url, host="127.0.0.2")
    front.redirect_blobs = cdn.url
    image = pull(f"{front.host}/{seeded.repo}:latest", cache=isolated / "cache", jobs=3,
                 credentials=(USER, PASSWORD))
    assert image.bytes_downloaded > 0
    expected = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    registry_side = front.requests
    assert [r for r in registry_side if "authorization" not in r.headers] == registry_side[:1]
    assert all(r.headers["authorization"] == f"Basic {expected}" for r in registry_side[1:])
    assert len(cdn.requests) == 2 * len(list(seeded.latest.blobs()))  # one hop each
    for r in cdn.requests:
        assert "authorization" not in r.headers
        assert expected not in json.dumps(r.headers)


# -- token mode with a private repository --------------------------------------------------------


def test_private_repository_anonymously_is_a_clear_denial(
    private: tuple[TokenServer, LocalRegistry], seeded: Seeded
) -> None:
    ts, reg = private
    with pytest.raises(AuthError) as info:
        api.manifest(reg.host, seeded.repo, "latest")
    text = str(info.value)
    assert "refused anonymous access" in text
    assert f"tank login {reg.host}" in text
    assert [r.headers.get("authorization") for r in ts.requests] == [None]


def test_private_repository_with_credentials(
    private: tuple[TokenServer, LocalRegistry], seeded: Seeded, isolated: Path
) -> None:
    ts, reg = private
    image = pull(f"{reg.host}/{seeded.repo}:multi", cache=isolated / "cache", jobs=4,
                 credentials=(ALICE, ALICE_PW))
    assert image.index_digest == seeded.multi.manifest_digest
    (asked,) = ts.requests  # one token, reused by every request of the pull
    assert asked.method == "GET"
    assert asked.query["scope"] == [f"repository:{seeded.repo}:pull"]
    basic = base64.b64encode(f"{ALICE}:{ALICE_PW}".encode()).decode()
    assert asked.headers["authorization"] == f"Basic {basic}"


def test_private_repository_wrong_password(
    private: tuple[TokenServer, LocalRegistry], seeded: Seeded
) -> None:
    ts, reg = private
    with pytest.raises(AuthError) as info:
        api.manifest(reg.host, seeded.repo, "latest", credentials=(ALICE, "nope-nope"))
    err = info.value
    assert err.status == 401
    assert reg.host in str(err)
    assert "refused the credentials of user 'alice'" in str(err)
    assert "nope-nope" not in str(err)
    assert len(ts.requests) == 1


def test_identity_token_uses_the_refresh_token_grant(
    private: tuple[TokenServer, LocalRegistry], seeded: Seeded, isolated: Path
) -> None:
    ts, reg = private
    refresh = ts.issue_refresh_token(ALICE)
    docker_config(isolated, {"auths": {
        reg.host: {"auth": base64.b64encode(f"{ALICE}:".encode()).decode(),
                   "identitytoken": refresh},
    }})
    image = pull(f"{reg.host}/{seeded.repo}:latest", cache=isolated / "cache",
                 credentials=CredentialStore())
    assert image.digest == seeded.latest.manifest_digest
    (asked,) = ts.requests
    assert asked.method == "POST"
    assert asked.form["grant_type"] == ["refresh_token"]
    assert asked.form["refresh_token"] == [refresh]
    assert asked.form["scope"] == [f"repository:{seeded.repo}:pull"]
    assert asked.form["service"] == [ts.service]
    assert "authorization" not in asked.headers


def test_a_token_is_reused_until_shortly_before_it_expires(
    private: tuple[TokenServer, LocalRegistry], seeded: Seeded
) -> None:
    ts, reg = private
    ts.expires_in = 2  # renewed from 1.8 s on
    cache = TokenCache()
    creds = Credentials(ALICE, ALICE_PW)
    for tag in ("latest", "docker", "multi"):
        api.manifest(reg.host, seeded.repo, tag, credentials=creds, token_cache=cache)
    assert len(ts.requests) == 1  # the 401 once, then the cached token up front
    time.sleep(2.0)
    _, token = api.manifest(reg.host, seeded.repo, "latest", credentials=creds,
                            token_cache=cache)
    assert len(ts.requests) == 2  # expired: a new one, fetched before asking the registry
    # a token the cache issued and that expired is not sent even when the caller threads it
    time.sleep(2.0)
    api.manifest(reg.host, seeded.repo, "latest", token, credentials=creds, token_cache=cache)
    assert len(ts.requests) == 3


def test_one_cache_never_mixes_principals(
    private: tuple[TokenServer, LocalRegistry], seeded: Seeded
) -> None:
    _, reg = private
    cache = TokenCache()
    api.manifest(reg.host, seeded.repo, "latest", credentials=(ALICE, ALICE_PW),
                 token_cache=cache)
    with pytest.raises(AuthError, match="refused anonymous access"):
        api.manifest(reg.host, seeded.repo, "latest", token_cache=cache)


def test_check_login_gets_a_refresh_token(
    private: tuple[TokenServer, LocalRegistry],
) -> None:
    ts, reg = private
    stored = api.check_login(reg.host, (ALICE, ALICE_PW))
    assert stored.username == ALICE
    assert stored.password == ""
    assert stored.identity_token.startswith("rt-")
    (asked,) = ts.requests
    assert asked.method == "POST"
    assert asked.form["grant_type"] == ["password"]
    assert asked.form["access_type"] == ["offline"]
    with pytest.raises(AuthError, match="refused the credentials") as info:
        api.check_login(reg.host, (ALICE, "bad-password"))
    assert "bad-password" not in str(info.value)


def test_check_login_falls_back_to_get_without_the_oauth_form(
    private: tuple[TokenServer, LocalRegistry],
) -> None:
    ts, reg = private
    ts.oauth = False  # POST answers 404, as GCR does
    stored = api.check_login(reg.host, (ALICE, ALICE_PW))
    assert stored == Credentials(ALICE, ALICE_PW)
    assert [r.method for r in ts.requests] == ["POST", "GET"]


def test_check_login_basic(basic_registry: LocalRegistry) -> None:
    assert api.check_login(basic_registry.host, (USER, PASSWORD)) == Credentials(USER, PASSWORD)
    with pytest.raises(AuthError, match="wrong username or password"):
        api.check_login(basic_registry.host, (USER, "wrong"))
