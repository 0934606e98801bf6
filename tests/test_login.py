"""``tank login`` / ``tank logout`` and ``tank pull`` with stored credentials, as a user runs them.

Each test has its own docker config directory, runtime directory and home; the CLI runs as a
subprocess with that environment, against the real registry (htpasswd and token mode).
"""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.credhelper import (
    helper_calls,
    htpasswd_registry,
    private_registry,
    read_db,
    write_helper,
)
from tank.testing.registry import LocalRegistry
from tank.testing.seed import Seeded
from tank.testing.tokenserver import TokenServer

USER, PASSWORD = "bob", "login-pw-123"
ALICE, ALICE_PW = "alice", "alice-pw-456"
#: what a user's config holds besides credentials: tank must keep all of it
OTHER_KEYS: dict[str, Any] = {
    "psFormat": "table {{.ID}}",
    "proxies": {"default": {"httpProxy": "http://proxy.example:3128"}},
    "auths": {"other.example": {"auth": base64.b64encode(b"o:opw").decode(), "email": "x@y"}},
    "experimental": "enabled",
}


@pytest.fixture(scope="module")
def basic_registry(seeded: Seeded) -> Iterator[LocalRegistry]:
    """A registry in htpasswd mode, seeded."""
    with htpasswd_registry(seeded, USER, PASSWORD) as reg:
        yield reg


@pytest.fixture(scope="module")
def private(seeded: Seeded) -> Iterator[tuple[TokenServer, LocalRegistry]]:
    """Token mode; ``seeded.repo`` is private to alice."""
    with private_registry(seeded, ALICE, ALICE_PW) as pair:
        yield pair


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """The CLI's environment: its own home, docker config, runtime dir and helper bin dir."""
    out = {k: v for k, v in os.environ.items() if k != "REGISTRY_AUTH_FILE"}
    (tmp_path / "home").mkdir()
    out.update(
        HOME=str(tmp_path / "home"),
        DOCKER_CONFIG=str(tmp_path / "docker"),
        XDG_RUNTIME_DIR=str(tmp_path / "run"),
        TANK_CACHE=str(tmp_path / "cache"),
        PATH=f"{tmp_path / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
    )
    return out


def tank(env: dict[str, str], *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tank", *args], input=stdin, capture_output=True, text=True,
        timeout=120, env=env, check=False,
    )


def config_path(env: dict[str, str]) -> Path:
    return Path(env["DOCKER_CONFIG"]) / "config.json"


def write_config(env: dict[str, str], doc: dict[str, Any]) -> Path:
    path = config_path(env)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))
    path.chmod(0o644)
    return path


def read_config(env: dict[str, str]) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(config_path(env).read_text())
    return doc


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def assert_other_keys_kept(doc: dict[str, Any]) -> None:
    for key, value in OTHER_KEYS.items():
        if key == "auths":
            assert doc["auths"]["other.example"] == value["other.example"]
        else:
            assert doc[key] == value


def test_login_pull_logout_with_the_config_file(
    basic_registry: LocalRegistry, seeded: Seeded, env: dict[str, str]
) -> None:
    host = basic_registry.host
    path = write_config(env, OTHER_KEYS)
    ref = f"{host}/{seeded.repo}:latest"
    denied = tank(env, "pull", ref)
    assert denied.returncode == 4
    assert f"tank login {host}" in denied.stderr

    out = tank(env, "login", host, "-u", USER, "--password-stdin", stdin=PASSWORD + "\n")
    assert out.returncode == 0, out.stderr
    assert "login succeeded" in out.stderr
    assert PASSWORD not in out.stdout + out.stderr
    doc = read_config(env)
    assert_other_keys_kept(doc)
    assert base64.b64decode(doc["auths"][host]["auth"]).decode() == f"{USER}:{PASSWORD}"
    assert mode(path) == 0o600
    assert not [p for p in path.parent.iterdir() if p.name != "config.json"]  # no temp left

    pulled = tank(env, "pull", ref, "--json")
    assert pulled.returncode == 0, pulled.stderr
    assert json.loads(pulled.stdout)["digest"] == seeded.latest.manifest_digest
    assert PASSWORD not in pulled.stdout + pulled.stderr

    out = tank(env, "logout", host)
    assert out.returncode == 0, out.stderr
    assert f"removed the credentials for {host}" in out.stderr
    doc = read_config(env)
    assert host not in doc["auths"]
    assert_other_keys_kept(doc)
    assert mode(path) == 0o600
    assert tank(env, "pull", ref, "--refresh").returncode == 4
    again = tank(env, "logout", host)
    assert again.returncode == 0
    assert f"not logged in to {host}" in again.stderr


def test_login_creates_the_config_when_there_is_none(
    basic_registry: LocalRegistry, env: dict[str, str]
) -> None:
    out = tank(env, "login", f"http://{basic_registry.host}/", "-u", USER, "--password-stdin",
               stdin=PASSWORD)
    assert out.returncode == 0, out.stderr
    path = config_path(env)
    assert mode(path) == 0o600
    assert mode(path.parent) == 0o700
    assert list(read_config(env)["auths"]) == [basic_registry.host]


def test_login_with_a_wrong_password_changes_nothing(
    basic_registry: LocalRegistry, env: dict[str, str]
) -> None:
    path = write_config(env, OTHER_KEYS)
    before = path.read_bytes()
    out = tank(env, "login", basic_registry.host, "-u", USER, "--password-stdin",
               stdin="not-the-password")
    assert out.returncode == 4
    assert basic_registry.host in out.stderr
    assert "wrong username or password" in out.stderr
    assert "not-the-password" not in out.stderr
    assert path.read_bytes() == before
    assert mode(path) == 0o644


def test_login_pull_logout_with_a_file_backed_helper(
    basic_registry: LocalRegistry, seeded: Seeded, env: dict[str, str], tmp_path: Path
) -> None:
    host = basic_registry.host
    db = tmp_path / "helper-db.json"
    write_helper(tmp_path / "bin", "test", db)
    path = write_config(env, {**OTHER_KEYS, "credHelpers": {host: "test"}})

    out = tank(env, "login", host, "-u", USER, "--password-stdin", stdin=PASSWORD)
    assert out.returncode == 0, out.stderr
    assert "docker-credential-test" in out.stderr
    assert read_db(db) == {host: [USER, PASSWORD]}
    doc = read_config(env)
    assert_other_keys_kept(doc)
    assert doc["credHelpers"] == {host: "test"}
    assert doc["auths"][host] == {}  # as docker writes: the secret is in the helper only
    assert PASSWORD not in path.read_text()
    assert mode(path) == 0o600

    pulled = tank(env, "pull", f"{host}/{seeded.repo}:latest")
    assert pulled.returncode == 0, pulled.stderr
    assert f"get {host}" in helper_calls(db)

    out = tank(env, "logout", host)
    assert out.returncode == 0, out.stderr
    assert read_db(db) == {}
    assert f"erase {host}" in helper_calls(db)
    doc = read_config(env)
    assert host not in doc["auths"]
    assert_other_keys_kept(doc)
    assert mode(path) == 0o600


def test_login_with_creds_store_helper(
    basic_registry: LocalRegistry, env: dict[str, str], tmp_path: Path
) -> None:
    db = tmp_path / "store-db.json"
    write_helper(tmp_path / "bin", "teststore", db)
    write_config(env, {"credsStore": "teststore"})
    out = tank(env, "login", basic_registry.host, "-u", USER, "--password-stdin",
               stdin=PASSWORD)
    assert out.returncode == 0, out.stderr
    assert read_db(db) == {basic_registry.host: [USER, PASSWORD]}


def test_token_login_stores_an_identity_token(
    private: tuple[TokenServer, LocalRegistry], seeded: Seeded, env: dict[str, str]
) -> None:
    ts, reg = private
    ts.reset()
    write_config(env, OTHER_KEYS)
    out = tank(env, "login", reg.host, "-u", ALICE, "--password-stdin", stdin=ALICE_PW)
    assert out.returncode == 0, out.stderr
    entry = read_config(env)["auths"][reg.host]
    assert base64.b64decode(entry["auth"]).decode() == f"{ALICE}:"  # no password kept
    assert entry["identitytoken"].startswith("rt-")
    assert ALICE_PW not in config_path(env).read_text()

    ts.reset()
    pulled = tank(env, "pull", f"{reg.host}/{seeded.repo}:multi", "-j", "4")
    assert pulled.returncode == 0, pulled.stderr
    (asked,) = ts.requests  # one token for the whole pull, by the refresh_token grant
    assert asked.method == "POST"
    assert asked.form["grant_type"] == ["refresh_token"]
    assert asked.form["refresh_token"] == [entry["identitytoken"]]


def test_usage_errors(env: dict[str, str]) -> None:
    out = tank(env, "login", "registry.example", "--password-stdin", stdin="x")
    assert out.returncode == 2
    assert "--username" in out.stderr
    assert tank(env, "login", "not a registry!", "-u", "x", "--password-stdin").returncode == 2
    assert tank(env, "login", "registry.example", "-u", "x").returncode == 2  # no terminal
