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


def test_tank_pull_and_inspect_stay_callable_after_their_modules_are_imported() -> None:
    code = (
        "import tank.pull, tank.inspect, tank.unpack, tank\n"
        "from tank.pull import ProgressEvent\n"
        "print(callable(tank.pull), callable(tank.inspect), callable(tank.unpack))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.split() == ["True", "True", "True"]
