"""The main job, end to end on this machine: ``python -m tank.testing.demo``.

Starts the real CNCF registry on loopback in Docker Hub's token-auth mode (with a local token
server), seeds it with a sample multi-platform image, then runs ``tank pull`` as a user would: it
resolves the tag, picks this host's platform from the index, downloads and verifies every blob
into a fresh cache, and writes an OCI image layout. Finally it prints the layout's ``index.json``
and what the registry saw.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from tank.testing.images import Pusher
from tank.testing.registry import LocalRegistry
from tank.testing.seed import build_seed, seed_registry
from tank.testing.tokenserver import TokenServer


def run(work: Path, *, platform: str | None = None, tag: str = "multi") -> int:
    """Seed a registry, ``tank pull`` from it into ``work``; return tank's exit code."""
    seeded = build_seed()
    with TokenServer() as tokens, LocalRegistry(token=tokens) as reg:
        with Pusher(reg.url, token=tokens.push_token(seeded.repo)) as pusher:
            seed_registry(pusher, seeded)
        tokens.reset()
        ref = f"{reg.host}/{seeded.repo}:{tag}"
        layout = work / "layout"
        print(f"registry: {reg.url} (token auth, realm {tokens.realm})", file=sys.stderr)
        cmd = [
            str(Path(sys.executable).with_name("tank")), "pull", ref,
            "-o", f"oci:{layout}:{tag}", "--cache", str(work / "cache"),
        ]
        if platform:
            cmd += ["--platform", platform]
        print("$ " + " ".join(cmd), file=sys.stderr)
        code = subprocess.run(cmd, check=False).returncode
        if code != 0:
            return code
        print(f"\n{layout}/index.json:", file=sys.stderr)
        print(json.dumps(json.loads((layout / "index.json").read_text()), indent=2))
        blobs = sorted((layout / "blobs" / "sha256").iterdir())
        print(f"{len(blobs)} blobs in the layout; the token server was asked "
              f"{len(tokens.requests)} time(s)", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, help="keep the cache and the layout in this directory")
    parser.add_argument("--platform", help="os/arch[/variant] (default: this host's)")
    args = parser.parse_args(argv)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        return run(args.out, platform=args.platform)
    with tempfile.TemporaryDirectory(prefix="tank-demo-") as tmp:
        return run(Path(tmp), platform=args.platform)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
