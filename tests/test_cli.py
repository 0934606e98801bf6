"""The `tank` command as a package: failures mapped to exit codes and hints in one place (by
class and attributes, never by message text), a lean start-up, and `inspect --raw` fetching
manifests only."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tank.cli.errors import exit_code, hint
from tank.errors import (
    AuthError,
    CacheMiss,
    ConfigError,
    DigestMismatch,
    InvalidDigest,
    InvalidReference,
    NotFound,
    PlatformNotFound,
    RegistryError,
    RegistryErrorDetail,
    StorageError,
    TankError,
    TLSError,
    TransportError,
)
from tank.testing.fronts import MakeFront
from tank.testing.registry import LocalRegistry
from tank.testing.seed import Seeded

#: words the old CLI searched error messages for; a hint must not change when they appear
TRAP = "blob tag list tank login --ca-file in the cache dir"


def tank(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "tank", *args], capture_output=True, timeout=120,
        env=dict(os.environ),
    )


def _codes(*codes: str) -> tuple[RegistryErrorDetail, ...]:
    return tuple(RegistryErrorDetail(c, "") for c in codes)


# -- exit codes and hints ------------------------------------------------------------------------


@pytest.mark.parametrize(("exc", "code"), [
    (InvalidReference("x y", "bad"), 2),
    (InvalidDigest("sha256:x", "bad"), 2),
    (ConfigError("bad key"), 2),
    (NotFound("manifest not found", status=404), 3),
    (PlatformNotFound("no image", available=("linux/amd64",)), 3),
    (CacheMiss("offline"), 3),
    (AuthError("denied", status=401), 4),
    (AuthError("token endpoint failing", status=503), 4),
    (DigestMismatch("sha256:" + "0" * 64, "sha256:" + "1" * 64), 5),
    (TransportError("reset"), 6),
    (TLSError("bad certificate"), 6),
    (RegistryError("slow down", status=429), 6),
    (RegistryError("broken", status=502), 6),
    (RegistryError("bad request", status=400), 1),
    (StorageError("no space", errno=errno.ENOSPC), 1),
    (TankError("other"), 1),
    (OSError(errno.EACCES, "Permission denied"), 1),
    (KeyboardInterrupt(), 130),
])
def test_exit_codes_follow_the_class_and_status(exc: BaseException, code: int) -> None:
    assert exit_code(exc) == code


def test_not_found_hints_follow_the_codes_and_the_reference() -> None:
    blob = NotFound("x", registry="r.example", repository="a/b", reference="sha256:" + "0" * 64,
                    status=404, errors=_codes("BLOB_UNKNOWN"))
    assert "check the digest" in str(hint(blob))
    repo = NotFound("x", registry="r.example", repository="a/b", reference="v1", status=404,
                    errors=_codes("NAME_UNKNOWN"))
    assert "check the repository name (" in str(hint(repo))
    tag_list = NotFound("x", registry="r.example", repository="a/b", reference="", status=404)
    assert hint(tag_list) == hint(repo)
    by_digest = NotFound("x", registry="r.example", repository="a/b",
                         reference="sha256:" + "0" * 64, status=404)
    assert hint(by_digest) == "check the repository name and the digest"
    tag = NotFound("x", registry="registry-1.docker.io", repository="library/alpine",
                   reference="nope", status=404, errors=_codes("MANIFEST_UNKNOWN"))
    assert "`tank tags docker.io/library/alpine`" in str(hint(tag))
    assert "--platform" in str(hint(PlatformNotFound("no", available=("linux/amd64",))))
    assert "no runnable image" in str(hint(PlatformNotFound("no")))


def test_auth_hints_follow_the_status_and_the_cause() -> None:
    # a 401's message names the fix already (log in, or the credentials were refused)
    assert hint(AuthError("refused", registry="r.example", status=401)) is None
    forbidden = AuthError("denied", registry="r.example", repository="a/b", status=403)
    assert hint(forbidden) == "if the image is private, log in first: tank login r.example"
    unreachable = AuthError("token endpoint unreachable", registry="r.example")
    unreachable.__cause__ = TransportError("refused")
    assert "token endpoint could not be reached" in str(hint(unreachable))
    tls = AuthError("token endpoint unreachable", registry="r.example")
    tls.__cause__ = TLSError("certificate verify failed. To trust it, pass --ca-file FILE")
    assert hint(tls) is None
    assert hint(AuthError("credential helper failed", registry="r.example")) is None


def test_network_storage_and_other_hints() -> None:
    assert hint(TLSError("handshake failed")) is None  # the transport says how to fix it
    assert "--retries" in str(hint(TransportError("reset")))
    assert hint(TransportError("refused redirect", permanent=True)) is None
    assert "wait and try again" in str(hint(RegistryError("slow", status=429)))
    assert "try again later" in str(hint(RegistryError("broken", status=503)))
    assert "corrupt data" in str(hint(DigestMismatch("sha256:" + "0" * 64, "sha256:" + "1" * 64)))
    assert "--offline" in str(hint(CacheMiss("offline")))
    assert "[REGISTRY/]REPOSITORY" in str(hint(InvalidReference("x y", "bad")))
    assert "sha256:" in str(hint(InvalidDigest("sha256:x", "bad")))
    assert hint(TankError("other")) is None
    assert hint(OSError("other")) is None


def test_storage_hints_follow_errno_and_path(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    full = StorageError("write failed", path=str(cache / "blobs" / "x"), errno=errno.ENOSPC)
    assert "free some space" in str(hint(full, cache_dir=str(cache)))
    denied = StorageError("write failed", path=str(cache / "blobs" / "x"), errno=errno.EACCES)
    assert "cache directory" in str(hint(denied, cache_dir=str(cache)))
    elsewhere = StorageError("write failed", path=str(tmp_path / "out"), errno=errno.EACCES)
    assert "that you may write there" in str(hint(elsewhere, cache_dir=str(cache)))


@pytest.mark.parametrize("make", [
    lambda m: NotFound(m, registry="r.example", repository="a/b", reference="v1", status=404),
    lambda m: NotFound(m, registry="r.example", repository="a/b", reference="sha256:" + "0" * 64,
                       status=404),
    lambda m: AuthError(m, registry="r.example", repository="a/b", status=401),
    lambda m: AuthError(m, registry="r.example", repository="a/b", status=403),
    lambda m: TLSError(m),
    lambda m: TransportError(m),
    lambda m: RegistryError(m, status=503),
    lambda m: StorageError(m, path="/nonexistent/x", errno=errno.EACCES),
    lambda m: TankError(m),
])
def test_hints_never_depend_on_the_message(make: object) -> None:
    assert callable(make)
    plain, trap = make("it failed"), make(f"it failed: {TRAP}")
    assert hint(plain, cache_dir="/nonexistent") == hint(trap, cache_dir="/nonexistent")
    assert exit_code(plain) == exit_code(trap)


# -- start-up ----------------------------------------------------------------------------------


def _modules_after(code: str) -> set[str]:
    probe = (
        "import sys\n" + code + "\n"
        "print(' '.join(m for m in sys.modules if m.startswith('tank') or "
        "m.split('.')[0] in ('rich', 'tqdm', 'urllib3')))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         timeout=60, check=True)
    return set(out.stdout.split())


def test_startup_imports_only_what_version_and_help_need() -> None:
    version = _modules_after(
        "from tank.cli import main\ntry:\n    main(['--version'])\nexcept SystemExit:\n    pass"
    )
    cli = {m for m in version if m.startswith("tank.cli")}
    assert cli == {"tank.cli", "tank.cli.app", "tank.cli.errors", "tank.cli.options"}
    assert not {m for m in version if m.split(".")[0] in ("rich", "tqdm", "urllib3")}
    assert not {"tank.registry", "tank._pull", "tank.store", "tank.transport"} & version
    helped = _modules_after(
        "from tank.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass"
    )
    # --help lists every command (so loads their modules), but nothing of the library
    assert {"tank.cli.pull", "tank.cli.remote", "tank.cli.cache"} <= helped
    assert not {"tank.cli.progress", "tank.cli.bars", "tank.registry", "tank._pull",
                "rich", "urllib3"} & helped


def test_version_and_unknown_command() -> None:
    out = tank("--version")
    assert out.returncode == 0
    assert out.stdout.startswith(b"tank, version ")
    wrong = tank("pulll")
    assert wrong.returncode == 2
    assert b"No such command" in wrong.stderr


# -- inspect --raw: manifests only -----------------------------------------------------------------


def test_inspect_raw_prints_a_manifest_whose_config_is_unreachable(
    registry: LocalRegistry, make_front: MakeFront, seeded: Seeded
) -> None:
    front = make_front(registry.url)
    front.respond = lambda r: (
        (404, {"Content-Type": "application/json"},
         b'{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown"}]}')
        if "/blobs/" in r.path else None
    )
    ref = f"{front.host}/{seeded.repo}"
    raw = tank("inspect", f"{ref}:latest", "--raw")
    assert raw.returncode == 0, raw.stderr
    assert raw.stdout == seeded.latest.manifest
    assert [(r.method, r.path) for r in front.requests] == [
        ("GET", f"/v2/{seeded.repo}/manifests/latest"),
    ]
    # the front bites: without --raw the config is needed, and is not there
    front.reset()
    full = tank("inspect", f"{ref}:latest", "--retries", "0")
    assert full.returncode == 3
    assert any("/blobs/" in r.path for r in front.requests)

    # an index with --platform: the index, then that platform's manifest by digest; no blob
    front.reset()
    child = seeded.multi.image_for("linux", "arm", "v7")
    raw = tank("inspect", f"{ref}:multi", "--platform", "linux/armhf", "--raw")
    assert raw.returncode == 0, raw.stderr
    assert raw.stdout == child.manifest
    assert [(r.method, r.path) for r in front.requests] == [
        ("GET", f"/v2/{seeded.repo}/manifests/multi"),
        ("GET", f"/v2/{seeded.repo}/manifests/{child.manifest_digest}"),
    ]
    # a Docker manifest list too; and without --platform the index itself
    docker_child = seeded.list.image_for("linux", "arm64", "v8")
    raw = tank("inspect", f"{ref}:list", "--platform", "linux/arm64", "--raw")
    assert raw.stdout == docker_child.manifest
    raw = tank("inspect", f"{ref}:list", "--raw")
    assert raw.stdout == seeded.list.manifest
    # --platform on a single-platform image is ignored, as for the other forms
    raw = tank("inspect", f"{ref}:latest", "--platform", "linux/s390x", "--raw")
    assert raw.stdout == seeded.latest.manifest


def test_inspect_raw_errors(registry: LocalRegistry, seeded: Seeded) -> None:
    ref = f"{registry.host}/{seeded.repo}"
    wrong = tank("inspect", f"{ref}:multi", "--platform", "linux/s390x", "--raw")
    assert wrong.returncode == 3
    assert b"--platform" in wrong.stderr
    assert wrong.stdout == b""
    missing = tank("inspect", f"{ref}:nope", "--raw")
    assert missing.returncode == 3
    assert b"check the repository name and the tag" in missing.stderr
