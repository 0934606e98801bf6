"""The public API: names, lazy imports, the CLI's version, the error hierarchy."""

from __future__ import annotations

import subprocess
import sys

import pytest

import tank
from tank import errors


@pytest.mark.parametrize("name", tank.__all__)
def test_every_public_name_resolves(name: str) -> None:
    assert getattr(tank, name) is not None


def test_import_tank_is_cheap() -> None:
    code = "import sys, tank; print('urllib3' in sys.modules, 'tank.registry' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.split() == ["False", "False"]


def test_tank_version() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "tank", "--version"], check=True, capture_output=True, text=True
    )
    assert out.stdout.strip() == f"tank, version {tank.__version__}"


def test_every_error_is_a_tank_error() -> None:
    for name in errors.__all__:
        obj = getattr(errors, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, errors.TankError), name
    assert issubclass(errors.NotFound, errors.RegistryError)
    assert issubclass(errors.AuthError, errors.RegistryError)
    assert issubclass(errors.DigestMismatch, errors.IntegrityError)
    assert issubclass(errors.TLSError, errors.TransportError)


def test_registry_error_message_names_place_status_and_codes() -> None:
    err = errors.NotFound(
        "manifest not found", registry="r.io", repository="a/b", reference="v1", status=404,
        errors=(errors.RegistryErrorDetail("MANIFEST_UNKNOWN", "manifest unknown"),),
    )
    assert str(err) == (
        "r.io/a/b:v1: manifest not found (HTTP 404): MANIFEST_UNKNOWN: manifest unknown"
    )
    d = "sha256:" + "0" * 64
    assert "r.io/a/b@" + d in str(errors.NotFound("blob not found", registry="r.io",
                                                  repository="a/b", reference=d))


def test_pull_inspect_and_unpack_are_plain_functions_with_their_keywords() -> None:
    code = (
        "import importlib, inspect, pkgutil, tank, types\n"
        "for m in pkgutil.walk_packages(tank.__path__, 'tank.'):\n"
        "    if not m.name.startswith(('tank.testing', 'tank.cli', 'tank.__main__')):\n"
        "        importlib.import_module(m.name)\n"
        "for name in ('pull', 'inspect', 'unpack'):\n"
        "    fn = getattr(tank, name)\n"
        "    assert isinstance(fn, types.FunctionType), (name, fn)\n"
        "    print(name, *inspect.signature(fn).parameters)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    params = {line.split()[0]: line.split()[1:] for line in out.stdout.splitlines()}
    assert {"platform", "output", "all_platforms", "cache", "jobs", "progress"} <= set(
        params["pull"]
    )
    assert {"platform", "children"} <= set(params["inspect"])
    assert {"image", "dest", "rootfs_cache", "rootless"} <= set(params["unpack"])
