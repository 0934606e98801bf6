"""tank.aio: the library awaitable from an event loop, concurrent, and cancellable like Ctrl-C."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

import pytest

import tank
import tank.aio
import tank.image
from tank.digest import Digest
from tank.store import Store
from tank.testing.fronts import MakeFront, Recorded, Response
from tank.testing.images import Image, Pusher, make_image, make_layer, random_bytes_stream
from tank.testing.registry import LocalRegistry
from tank.testing.seed import Seeded


@pytest.fixture(scope="module")
def big(registry: LocalRegistry) -> Image:
    """One 6 MB incompressible layer, pushed as library/aio-big:v1."""
    data = b"".join(random_bytes_stream(6_000_000, seed="aio"))
    image = make_image([make_layer({"opt/blob.bin": data}), make_layer({"etc/x": b"x\n"})])
    with Pusher(registry.url) as pusher:
        pusher.push_image("library/aio-big", "v1", image)
    return image


class Stall:
    """Blob GETs of ``digest`` send ``cut`` bytes and then hang with the connection open."""

    def __init__(self, digest: str, data: bytes, cut: int) -> None:
        self.digest, self.data, self.cut = digest, data, cut

    def __call__(self, r: Recorded) -> Response | None:
        if r.method == "GET" and r.path.endswith(self.digest) and "range" not in r.headers:
            return (200, {"Content-Length": str(len(self.data))}, self.data[: self.cut])
        return None


def test_the_read_side_runs_concurrently_in_a_loop(
    registry: LocalRegistry, seeded: Seeded, tmp_path: Path
) -> None:
    ref = f"{registry.host}/{seeded.repo}"

    async def main() -> None:
        pulled, info, tags, digest = await asyncio.gather(
            tank.aio.pull(f"{ref}:latest", cache=tmp_path / "cache"),
            tank.aio.inspect(f"{ref}:multi", platform="linux/arm64"),
            tank.aio.list_tags(ref),
            tank.aio.resolve_digest(f"{ref}:multi"),
        )
        assert isinstance(pulled, tank.PulledImage)
        assert pulled.digest == seeded.latest.manifest_digest
        assert info.kind == "image"
        assert str(info.platform) == "linux/arm64/v8"
        assert set(seeded.tags) <= set(tags)
        assert digest == seeded.multi.manifest_digest

        repo = tank.aio.Client(registry.host).repository(seeded.repo)
        manifest = await repo.manifest("latest")
        assert manifest.digest == seeded.latest.manifest_digest
        assert (await repo.manifest_head("latest")).digest == manifest.digest
        document = manifest.document
        assert isinstance(document, tank.image.Manifest)
        config = document.config
        assert Digest.parse(config.digest) == seeded.latest.config.digest
        assert await repo.blob(config.digest) == seeded.latest.config.data
        layer = seeded.latest.layers[0]
        received = bytearray()
        async with repo.open_blob(layer.digest, size=layer.size) as stream:
            async for chunk in stream:
                received += chunk
        assert stream.verified
        assert bytes(received) == layer.data
        dest = tmp_path / "layer.bin"
        assert await repo.download_blob(layer.digest, dest) == layer.size
        assert dest.read_bytes() == layer.data

    asyncio.run(main())


def test_a_cancelled_pull_stops_at_once_and_the_next_pull_resumes(
    registry: LocalRegistry, make_front: MakeFront, big: Image, tmp_path: Path
) -> None:
    layer = big.layers[0]
    cut = 2_500_000
    front = make_front(registry.url)
    front.respond = Stall(layer.digest, layer.data, cut)
    cache = tmp_path / "cache"
    ref = f"{front.host}/library/aio-big:v1"

    def ingest_size() -> int:
        sizes = [0]
        for part in (cache / "ingest").glob("*.part"):  # other blobs commit meanwhile
            with contextlib.suppress(FileNotFoundError):
                sizes.append(part.stat().st_size)
        return max(sizes)

    async def pull_then_cancel() -> float:
        task = asyncio.create_task(tank.aio.pull(ref, cache=cache))
        deadline = time.monotonic() + 30
        while ingest_size() < cut and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert ingest_size() == cut, "the download never reached the stall"
        started = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return time.monotonic() - started

    took = asyncio.run(pull_then_cancel())
    assert took < 5, f"cancelling took {took:.1f} s: a stalled read was not interrupted"
    assert ingest_size() == cut  # kept for the next pull, as after Ctrl-C
    assert not Store(cache).has_blob(layer.digest)

    front.respond = None
    front.reset()
    image = tank.pull(ref, cache=cache)
    gets = [r for r in front.requests if r.method == "GET" and r.path.endswith(layer.digest)]
    assert [r.headers.get("range") for r in gets] == [f"bytes={cut}-"]
    assert image.blob_path(layer.digest).read_bytes() == layer.data
    assert Store(cache).verify() == []


def test_a_cancelled_download_leaves_no_file(
    registry: LocalRegistry, make_front: MakeFront, big: Image, tmp_path: Path
) -> None:
    layer = big.layers[0]
    front = make_front(registry.url)
    front.respond = Stall(layer.digest, layer.data, 1_000_000)
    dest = tmp_path / "out" / "layer.bin"
    dest.parent.mkdir()

    async def main() -> None:
        repo = tank.aio.Client(front.host).repository("library/aio-big")
        task = asyncio.create_task(repo.download_blob(layer.digest, dest))
        await asyncio.sleep(1.0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 5)

    asyncio.run(main())
    assert list(dest.parent.iterdir()) == []


def test_copy_verify_and_the_inside_functions_are_awaitable(
    registry: LocalRegistry, seeded: Seeded, tmp_path: Path
) -> None:
    ref = f"{registry.host}/{seeded.repo}:latest"
    cache = tmp_path / "cache"

    async def main() -> None:
        copied, verdict, release = await asyncio.gather(
            tank.aio.copy(ref, f"{registry.host}/aio/copied:v1", cache=cache),
            tank.aio.verify(ref, policy=tank.Policy.from_json(
                {"default": [{"type": "insecureAcceptAnything"}]})),
            tank.aio.read_file(ref, "/etc/os-release", cache=cache),
        )
        assert copied.digest == seeded.latest.manifest_digest
        assert verdict.digest == seeded.latest.manifest_digest
        assert release == tank.read_file(ref, "/etc/os-release", cache=cache)
        listing = await tank.aio.files(ref, "/etc", recursive=False, cache=cache)
        assert [e.path for e in listing] == [
            e.path for e in tank.files(ref, "/etc", recursive=False, cache=cache)]
        assert "/etc/os-release" in [e.path for e in listing]
        assert await tank.aio.diff(ref, f"{registry.host}/aio/copied:v1", cache=cache) == []
        out = tmp_path / "flat.tar"
        count = await tank.aio.export(ref, out, cache=cache)
        assert count > 0
        assert out.stat().st_size > 0

    asyncio.run(main())
