"""Platforms (``os/arch[/variant]``) and choosing an image from an index.

Normalisation follows containerd's ``platforms`` package: ``x86_64``/``x86-64`` → ``amd64``,
``aarch64`` → ``arm64`` (variant ``v8`` by default, so ``linux/arm64`` ≡ ``linux/arm64/v8``),
``armhf`` → ``arm/v7``, ``armel`` → ``arm/v6``, ``arm`` without a variant → ``arm/v7``,
``i386``/``i686`` → ``386``; variants ``8`` → ``v8``. Attestation entries (buildkit's
``vnd.docker.reference.type: attestation-manifest``, or platform ``unknown/unknown``) are never
chosen. An ``arm`` request falls back to older variants the CPU also runs (``v7`` runs ``v6``
and ``v5``), as containerd does; otherwise the match is exact.
"""

from __future__ import annotations

import platform as _host
from dataclasses import dataclass
from typing import Any, Final

from tank.errors import InvalidReference, PlatformNotFound

ATTESTATION_ANNOTATION: Final = "vnd.docker.reference.type"

_ARCH_ALIASES: Final = {
    "x86_64": ("amd64", None),
    "x86-64": ("amd64", None),
    "aarch64": ("arm64", None),
    "armhf": ("arm", "v7"),
    "armel": ("arm", "v6"),
    "i386": ("386", None),
    "i486": ("386", None),
    "i586": ("386", None),
    "i686": ("386", None),
}


@dataclass(frozen=True, order=True)
class Platform:
    """A normalised platform; ``str()`` gives ``os/arch[/variant]``."""

    os: str
    architecture: str
    variant: str | None = None

    @classmethod
    def parse(cls, text: str) -> Platform:
        """Parse ``os/arch[/variant]`` (normalised); :class:`InvalidReference` if malformed."""
        parts = text.strip().lower().split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise InvalidReference(text, "a platform is os/arch[/variant], e.g. linux/arm64/v8")
        return normalize(parts[0], parts[1], parts[2] if len(parts) == 3 else None)

    @classmethod
    def from_json(cls, doc: Any) -> Platform | None:
        """The platform of an index entry's ``platform`` object (``None`` when absent/invalid)."""
        if not isinstance(doc, dict):
            return None
        os_name, arch, variant = doc.get("os"), doc.get("architecture"), doc.get("variant")
        if not isinstance(os_name, str) or not isinstance(arch, str) or not os_name or not arch:
            return None
        return normalize(os_name, arch, variant if isinstance(variant, str) and variant else None)

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


def normalize(os_name: str, architecture: str, variant: str | None = None) -> Platform:
    """Normalise spellings (see the module docstring)."""
    os_name = os_name.lower()
    arch = architecture.lower()
    var = variant.lower() if variant else None
    if arch in _ARCH_ALIASES:
        arch, implied = _ARCH_ALIASES[arch]
        var = var or implied
    if var and var.isdigit():
        var = f"v{var}"
    if arch == "arm64" and var is None:
        var = "v8"
    elif arch == "arm" and var is None:
        var = "v7"
    elif arch == "amd64" and var == "v1":
        var = None
    return Platform(os_name, arch, var)


def host_platform() -> Platform:
    """This machine's platform (Linux images on any host, as docker does by default)."""
    return normalize("linux", _host.machine() or "amd64")


def is_attestation(descriptor: Any) -> bool:
    """Whether an index entry is an attestation manifest rather than a runnable image."""
    if not isinstance(descriptor, dict):
        return False
    annotations = descriptor.get("annotations")
    if isinstance(annotations, dict) and annotations.get(ATTESTATION_ANNOTATION) == (
        "attestation-manifest"
    ):
        return True
    plat = descriptor.get("platform")
    return isinstance(plat, dict) and plat.get("os") == "unknown" and (
        plat.get("architecture") == "unknown"
    )


def _candidates(want: Platform) -> list[Platform]:
    """``want`` and then what a machine of that platform also runs, best first."""
    out = [want]
    if want.architecture == "arm" and want.variant and want.variant[1:].isdigit():
        level = int(want.variant[1:])
        out += [Platform(want.os, "arm", f"v{v}") for v in range(level - 1, 4, -1)]
    if want.architecture == "arm64":
        out += [Platform(want.os, "arm64", None)]
    return out


def offered(index: dict[str, Any]) -> list[Platform]:
    """The runnable platforms an index offers, in its order (attestations left out)."""
    out = []
    for entry in index.get("manifests") or []:
        if is_attestation(entry):
            continue
        plat = Platform.from_json(entry.get("platform") if isinstance(entry, dict) else None)
        if plat is not None:
            out.append(plat)
    return out


def select(
    index: dict[str, Any],
    want: Platform,
    *,
    registry: str | None = None,
    repository: str | None = None,
    reference: str | None = None,
) -> dict[str, Any]:
    """The index entry (descriptor) for ``want``; raise :class:`PlatformNotFound` listing offers.

    An amd64 request without a variant accepts the first amd64 entry whatever its variant.
    """
    entries = [
        e for e in (index.get("manifests") or [])
        if isinstance(e, dict) and not is_attestation(e)
    ]
    parsed = [(e, Platform.from_json(e.get("platform"))) for e in entries]
    for candidate in _candidates(want):
        for entry, plat in parsed:
            if plat == candidate:
                return entry
    if want.variant is None:
        for entry, plat in parsed:
            if plat and (plat.os, plat.architecture) == (want.os, want.architecture):
                return entry
    raise PlatformNotFound(
        f"no image for {want}",
        available=tuple(str(p) for p in offered(index)),
        registry=registry, repository=repository, reference=reference,
    )


__all__ = [
    "Platform",
    "host_platform",
    "is_attestation",
    "normalize",
    "offered",
    "select",
]
