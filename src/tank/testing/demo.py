"""The main job, end to end on this machine: ``python -m tank.testing.demo``.

Starts the real CNCF registry on loopback in Docker Hub's token-auth mode (with a local token
server), seeds it with a sample multi-platform image, then uses tank's registry client as a user
would: resolve the tag, pick the linux/amd64 image from the index, fetch its config and download
every layer (streamed, digest-verified), printing what came back.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from tank.testing.images import Pusher
from tank.testing.registry import LocalRegistry
from tank.testing.seed import build_seed, seed_registry
from tank.testing.tokenserver import TokenServer


def run(out_dir: Path, *, platform: str = "linux/amd64") -> dict[str, object]:
    """Run the demo, writing layers into ``out_dir``; return a summary."""
    import tank

    seeded = build_seed()
    with TokenServer() as tokens, LocalRegistry(token=tokens) as reg:
        with Pusher(reg.url, token=tokens.push_token(seeded.repo)) as pusher:
            seed_registry(pusher, seeded)
        tokens.reset()
        ref = tank.parse_reference(f"{reg.host}/{seeded.repo}:multi")
        print(f"registry   {reg.url} (token auth, realm {tokens.realm})")
        print(f"reference  {ref}")
        started = time.perf_counter()
        calls = 0

        index, token = tank.manifest(ref.registry, ref.repository, ref.fetch_reference)
        calls += 1
        entries = index.json.get("manifests", [])
        print(f"index      {index.media_type} {index.digest} ({len(entries)} entries)")
        os_name, arch, *variant = platform.split("/")
        child = next(
            m for m in entries
            if m.get("platform", {}).get("os") == os_name
            and m.get("platform", {}).get("architecture") == arch
            and (not variant or m.get("platform", {}).get("variant") == variant[0])
        )
        image, token = tank.manifest(ref.registry, ref.repository, child["digest"], token)
        calls += 1
        print(f"manifest   {platform} {image.media_type} {image.digest}")

        config_desc = image.json["config"]
        config = json.loads(
            tank.blob(ref.registry, ref.repository, config_desc["digest"], token,
                      size=config_desc["size"])
        )
        calls += 1
        print(
            f"config     {config_desc['digest']} os={config.get('os')} "
            f"arch={config.get('architecture')} cmd={config.get('config', {}).get('Cmd')}"
        )
        total = 0
        for i, layer in enumerate(image.json["layers"], 1):
            dest = out_dir / layer["digest"].replace(":", "-")
            n = tank.download_blob(
                ref.registry, ref.repository, layer["digest"], token, dest, size=layer["size"]
            )
            calls += 1
            total += n
            print(f"layer {i}    {layer['digest']} {n} bytes, verified -> {dest}")
        seconds = time.perf_counter() - started
        print(
            f"done       {calls} calls, {len(tokens.requests)} token request(s), "
            f"{total} layer bytes in {seconds:.3f} s"
        )
        return {
            "reference": str(ref), "index": index.digest, "manifest": image.digest,
            "layers": len(image.json["layers"]), "bytes": total,
            "token_requests": len(tokens.requests), "calls": calls,
        }


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, help="keep the downloaded layers in this directory")
    parser.add_argument("--platform", default="linux/amd64", help="os/arch[/variant]")
    args = parser.parse_args(argv)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        run(args.out, platform=args.platform)
    else:
        with tempfile.TemporaryDirectory(prefix="tank-demo-") as tmp:
            run(Path(tmp), platform=args.platform)
    return 0


if __name__ == "__main__":
    sys.exit(main())
