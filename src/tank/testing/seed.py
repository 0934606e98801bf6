"""The standard content every test registry holds (``library/sample``)."""

from __future__ import annotations

from dataclasses import dataclass

from tank.testing.images import Image, Index, Pusher, sample_image, sample_index

__all__ = ["SAMPLE_REPO", "Seeded", "build_seed", "seed_registry"]

SAMPLE_REPO = "library/sample"


@dataclass(frozen=True)
class Seeded:
    """What a seeded registry holds in ``repo`` (the same digests in every registry)."""

    repo: str
    latest: Image  # tag "latest": OCI image (linux/amd64)
    docker: Image  # tag "docker": the same content as a Docker v2 manifest
    multi: Index  # tag "multi": OCI index, 3 platforms + attestation manifests
    list: Index  # tag "list": Docker manifest list, 3 platforms

    @property
    def tags(self) -> dict[str, str]:
        """Tag -> manifest digest."""
        return {
            "latest": self.latest.manifest_digest,
            "docker": self.docker.manifest_digest,
            "multi": self.multi.manifest_digest,
            "list": self.list.manifest_digest,
        }


def build_seed(repo: str = SAMPLE_REPO) -> Seeded:
    """Build (but do not push) the standard content."""
    return Seeded(
        repo=repo,
        latest=sample_image(),
        docker=sample_image(media_types="docker"),
        multi=sample_index(media_types="oci", attestations=True),
        list=sample_index(media_types="docker", attestations=False),
    )


def seed_registry(pusher: Pusher, seeded: Seeded) -> None:
    """Push the seeded images and tags through ``pusher``."""
    pusher.push_image(seeded.repo, "latest", seeded.latest)
    pusher.push_image(seeded.repo, "docker", seeded.docker)
    pusher.push_index(seeded.repo, "multi", seeded.multi)
    pusher.push_index(seeded.repo, "list", seeded.list)
