"""The same policy and credentials on every command (security review): ``--authfile``, ``--creds``
and ``--no-creds`` wherever a registry is reached, trust options on ``tank login``, skopeo's
``docker://REF`` spelling, other transports named by mistake, and a body cut short by its own
``Content-Length``."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

import tank
from support.credhelper import htpasswd_registry
from support.isolated import IsolatedEnv, isolated_fixture  # noqa: F401 (the fixture)
from tank.errors import InvalidReference
from tank.testing.fronts import MakeFront, Recorded, Response
from tank.testing.registry import LocalRegistry
from tank.testing.seed import Seeded
from tank.testing.tls import LocalCA

USER, PASSWORD = "carol", "s3cret-pw"


@pytest.fixture(scope="module")
def basic_registry(seeded: Seeded) -> Iterator[LocalRegistry]:
    """htpasswd mode: every request needs carol's password."""
    with htpasswd_registry(seeded, USER, PASSWORD) as reg:
        yield reg


def _auth_json(path: Path, host: str, user: str, password: str) -> Path:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    path.write_text(json.dumps({"auths": {host: {"auth": token}}}))
    return path


def _commands(host: str, seeded: Seeded, tmp_path: Path) -> list[list[str]]:
    ref = f"{host}/{seeded.repo}:latest"
    layer = seeded.latest.layers[0].digest
    return [
        ["pull", ref, "--cache", str(tmp_path / "cache"), "-q"],
        ["inspect", ref],
        ["inspect", "--raw", ref],
        ["digest", ref],
        ["tags", f"{host}/{seeded.repo}"],
        ["blob", ref, layer, "-o", str(tmp_path / "blob")],
        ["verify", ref],
        ["referrers", ref],
        ["ls", ref, "/etc", "--cache", str(tmp_path / "cache-ls"), "-q"],
        ["cat", ref, "/etc/os-release", "--cache", str(tmp_path / "cache-cat"), "-q"],
        ["export", ref, "-o", str(tmp_path / "flat.tar"), "--cache",
         str(tmp_path / "cache-export"), "-q"],
        ["diff", ref, ref, "--cache", str(tmp_path / "cache-diff"), "-q"],
    ]


def test_every_command_takes_creds_no_creds_and_authfile(
    isolated: IsolatedEnv, basic_registry: LocalRegistry, seeded: Seeded, tmp_path: Path
) -> None:
    host = basic_registry.host
    # the machine's own store holds a wrong password: only the options may succeed
    docker = tmp_path / "docker"
    docker.mkdir()
    _auth_json(docker / "config.json", host, USER, "wrong")
    isolated.setenv("DOCKER_CONFIG", str(docker))
    good = _auth_json(tmp_path / "auth.json", host, USER, PASSWORD)
    for argv in _commands(host, seeded, tmp_path):
        assert isolated.tank(*argv).returncode == 4, argv  # the stored, wrong one
        done = isolated.tank(*argv, "--creds", f"{USER}:{PASSWORD}")
        assert done.returncode == 0, (argv, done.stderr)
        done = isolated.tank(*argv, "--authfile", str(good))
        assert done.returncode == 0, (argv, done.stderr)
        done = isolated.tank(*argv, "--no-creds")
        assert done.returncode == 4, (argv, done.stderr)
        assert PASSWORD not in done.stderr + done.stdout


def test_creds_without_a_password_read_it_from_stdin(
    isolated: IsolatedEnv, basic_registry: LocalRegistry, seeded: Seeded
) -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "tank", "digest", f"{basic_registry.host}/{seeded.repo}:latest",
         "--creds", USER],
        input=PASSWORD + "\n", capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == seeded.latest.manifest_digest


def test_two_credential_options_at_once_are_a_usage_error(isolated: IsolatedEnv) -> None:
    done = isolated.tank("digest", "r.example/a:b", "--creds", "u:p", "--no-creds")
    assert done.returncode == 2
    assert "--creds and --no-creds" in done.stderr


def test_login_takes_the_trust_options_and_an_authfile(
    isolated: IsolatedEnv, ca: LocalCA, basic_registry: LocalRegistry, seeded: Seeded,
    tmp_path: Path,
) -> None:
    cert, key = ca.issue("127.0.0.1")
    with LocalRegistry(
        htpasswd={USER: PASSWORD}, tls=(cert, key), storage_dir=basic_registry.storage_dir
    ) as secure:
        authfile = tmp_path / "auth.json"
        argv = ["login", secure.host, "-u", USER, "--password-stdin", "--authfile",
                str(authfile)]
        import subprocess
        import sys

        def login(*extra: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, "-m", "tank", *argv, *extra], input=PASSWORD,
                capture_output=True, text=True, timeout=60,
            )

        assert login().returncode == 6  # the CA is not trusted: a TLS error
        done = login("--ca-file", str(ca.ca_file))
        assert done.returncode == 0, done.stderr
        stored = json.loads(authfile.read_text())["auths"][secure.host]["auth"]
        assert base64.b64decode(stored).decode() == f"{USER}:{PASSWORD}"
        done = isolated.tank("digest", f"{secure.host}/{seeded.repo}:latest", "--authfile",
                             str(authfile), "--ca-file", str(ca.ca_file))
        assert done.returncode == 0, done.stderr


# -- docker://REF, and other transports named by mistake ----------------------------------------


def test_docker_transport_spelling_is_accepted_everywhere(
    isolated: IsolatedEnv, registry: LocalRegistry, seeded: Seeded, tmp_path: Path
) -> None:
    ref = f"docker://{registry.host}/{seeded.repo}:latest"
    assert tank.pull(ref, cache=tmp_path / "lib").digest == seeded.latest.manifest_digest
    assert tank.inspect(ref).digest == seeded.latest.manifest_digest
    for argv in (["pull", ref, "--cache", str(tmp_path / "cli"), "-q"], ["inspect", ref],
                 ["digest", ref], ["tags", f"docker://{registry.host}/{seeded.repo}"]):
        done = isolated.tank(*argv)
        assert done.returncode == 0, (argv, done.stderr)


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("oci:./layout", "tank copy oci:./layout"),
        ("oci-archive:image.tar", "tank push oci-archive:image.tar"),
        ("docker-archive:image.tar:app:1", "tank copy docker-archive:image.tar:app:1"),
        ("containers-storage:alpine", "does not read"),
        ("docker-daemon:alpine:latest", "docker save"),
    ],
)
def test_another_transport_given_as_a_reference_names_the_right_command(
    spec: str, says: str, isolated: IsolatedEnv
) -> None:
    with pytest.raises(InvalidReference, match=r"not a registry image|does not read"):
        tank.inspect(spec)
    done = isolated.tank("inspect", spec)
    assert done.returncode == 2
    assert says in done.stderr


# -- a body that ends short because its Content-Length promised too little ---------------------


def test_a_body_cut_short_by_its_content_length_is_resumed(
    registry: LocalRegistry, make_front: MakeFront, seeded: Seeded, tmp_path: Path
) -> None:
    layer = seeded.latest.layers[2]
    front = make_front(registry.url)
    calls: list[Recorded] = []

    def short(r: Recorded) -> Response | None:
        if r.method == "GET" and r.path.endswith(layer.digest) and not calls:
            calls.append(r)
            half = layer.data[: layer.size // 2]  # a Content-Length that says "half"
            return (200, {"Content-Length": str(len(half))}, half)
        return None

    front.respond = short
    image = tank.pull(f"{front.host}/{seeded.repo}:latest", cache=tmp_path)
    assert image.blob_path(layer.digest).read_bytes() == layer.data
    gets = [r for r in front.requests if r.method == "GET" and r.path.endswith(layer.digest)]
    assert [r.headers.get("range") for r in gets] == [None, f"bytes={layer.size // 2}-"]
