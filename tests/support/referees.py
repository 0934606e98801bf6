"""Running the interop referees (skopeo, umoci, oci-image-tool from Debian) in tests."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

__all__ = ["POLICY", "ok", "run", "tool", "write_policy"]

#: a containers policy that accepts anything: the images are local and unsigned
POLICY = {"default": [{"type": "insecureAcceptAnything"}]}


def tool(name: str) -> str:
    """The path of a Debian interop tool; fail (not skip) with the fix when it is missing."""
    path = f"/usr/bin/{name}"
    if not os.access(path, os.X_OK):
        pytest.fail(
            f"{path} is missing: the interop tests need skopeo, umoci and oci-image-tool "
            "(Debian: apt-get install skopeo umoci oci-image-tool; scripts/bootstrap does it)",
            pytrace=False,
        )
    return path


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    """Run a tool, capturing its output."""
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)


def ok(*argv: str) -> subprocess.CompletedProcess[str]:
    """Run a tool and require success, showing its output otherwise."""
    done = run(*argv)
    assert done.returncode == 0, f"{' '.join(argv)}\n{done.stdout}\n{done.stderr}"
    return done


def write_policy(directory: Path) -> str:
    """Write :data:`POLICY` as ``policy.json`` in ``directory``; its path."""
    path = directory / "policy.json"
    path.write_text(json.dumps(POLICY))
    return str(path)
