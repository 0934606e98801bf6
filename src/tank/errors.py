"""Every exception tank raises, in one hierarchy a caller can catch at any level.

::

    TankError
    ├── InvalidReference        an image reference that does not parse (also a ValueError)
    ├── InvalidDigest           a malformed digest string (also a ValueError)
    │   └── UnsupportedDigest   a well-formed digest with an algorithm tank does not verify
    ├── IntegrityError          content that is not what it claims to be
    │   ├── DigestMismatch      bytes that do not hash to the expected digest
    │   ├── SizeMismatch        bytes longer or shorter than declared
    │   └── CorruptLayer        a compressed layer stream that does not decode
    ├── TransportError          the network failed: connect, TLS, reset, timeout, bad redirect
    │   └── TLSError            certificate or handshake failure (never a reason to fall back)
    ├── RegistryError           the registry answered, but not with what was asked for
    │   ├── AuthError           401/403, a challenge tank cannot answer, a token endpoint failure
    │   ├── NotFound            404: no such repository, manifest or blob
    │   │   └── PlatformNotFound  an index without the platform asked for
    │   ├── UnsupportedManifest schema 1, or a media type tank does not pull
    │   ├── ManifestTooLarge    a manifest over the size limit (refused before it is read whole)
    │   └── InvalidManifest     a manifest that is not a JSON object tank can trust
    ├── CacheMiss               the local cache lacks what was asked for (also a LookupError)
    ├── ConfigError             a configuration file, setting or certs.d folder tank cannot use,
    │   │                       or a registry the configuration blocks (also a ValueError)
    │   └── PolicyError         a signature policy (policy.json) or key tank cannot use
    ├── PolicyRefused           the signature policy refuses the image: which requirement failed,
    │                           for which signature
    ├── StorageError            the local disk failed: no space left, read-only, permissions
    ├── LayoutError             an OCI layout directory tank cannot write into
    ├── ArchiveError            a docker-archive tank cannot write
    ├── UnsupportedLayer        a layer media type tank cannot read
    ├── InvalidImageConfig      an image config that is not what the image spec says (a ValueError)
    ├── ImagePathError          a path inside an image that cannot be read as asked (a directory)
    │   └── PathNotFound        a path the image's tree lacks: missing, deleted, a dangling link
    └── UnpackError             a root filesystem tank cannot unpack: a refused entry, a bad target
        ├── UnsafeEntry         a layer entry refused as unsafe or absurd (an escape, a bad name)
        └── LayerTooLarge       a layer over a limit: uncompressed bytes, entries, header size

Every message names what was being fetched: the registry, the repository and the reference or
digest, and (for :class:`RegistryError`) the HTTP status and the registry's own error codes and
messages when it sent an OCI error body (``{"errors": [{"code": …, "message": …}]}``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class RegistryErrorDetail:
    """One entry of an OCI distribution error body."""

    code: str
    message: str
    detail: object = None

    def __str__(self) -> str:
        return f"{self.code}: {self.message}" if self.message else self.code


#: what never reaches a terminal from a message: C0 and C1 controls (escape sequences, bells,
#: carriage returns, line breaks) and the bidirectional overrides that reorder displayed text
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def printable(text: str) -> str:
    """``text`` as one line safe to print: every control character (an ANSI escape sequence,
    a line break, a bidi override) shown as an escape such as ``\\x1b`` instead of acting."""
    return _UNPRINTABLE.sub(lambda m: ascii(m.group())[1:-1], text)


class TankError(Exception):
    """The base of every error tank raises on purpose.

    Its message is always one printable line: whatever a server put in it (an error body, a
    realm, a header) has its control characters escaped (:func:`printable`), so nothing a
    registry sends can drive the terminal an error is printed to.

    :ivar retried: ``(attempts, seconds)`` when the error is the last of several tries that
        :mod:`tank.retry` gave up on; the message then ends with
        ``(gave up after N attempts over S s)``. ``None`` for an error raised at the first try.
    """

    retried: tuple[int, float] | None = None

    def _message(self) -> str:
        return super().__str__()

    def __str__(self) -> str:
        text = self._message()
        if self.retried is not None:
            attempts, seconds = self.retried
            text += f" (gave up after {attempts} attempts over {seconds:.1f} s)"
        return printable(text)


class InvalidReference(TankError, ValueError):
    """An image reference that cannot be parsed; the message says why."""

    def __init__(self, reference: str, reason: str) -> None:
        super().__init__(f"invalid reference {reference!r}: {reason}")
        self.reference = reference
        self.reason = reason


class InvalidDigest(TankError, ValueError):
    """A digest string that is not ``algorithm:hex`` with a valid hex part."""

    def __init__(self, digest: str, reason: str) -> None:
        super().__init__(f"invalid digest {digest!r}: {reason}")
        self.digest = digest
        self.reason = reason


class UnsupportedDigest(InvalidDigest):
    """A digest whose algorithm tank cannot verify (only sha256 and sha512 are)."""


def _where(registry: str | None, repository: str | None, what: str | None) -> str:
    """``registry/repository@what`` (or as much of it as is known) for messages."""
    place = "/".join(p for p in (registry, repository) if p)
    if what:
        sep = "@" if ":" in what and not what.startswith("/") else ":"
        place = f"{place}{sep}{what}" if place else what
    return place or "?"


class IntegrityError(TankError):
    """Content that does not match the digest or size it was fetched under."""

    def __init__(
        self, message: str, *, registry: str | None = None, repository: str | None = None,
        digest: str | None = None,
    ) -> None:
        super().__init__(message)
        self.registry, self.repository, self.digest = registry, repository, digest


class DigestMismatch(IntegrityError):
    """Bytes that hash to something other than the expected digest."""

    def __init__(
        self, expected: str, actual: str, *, what: str = "content",
        registry: str | None = None, repository: str | None = None,
    ) -> None:
        place = _where(registry, repository, None)
        where = f" from {place}" if registry or repository else ""
        super().__init__(
            f"digest mismatch for {what} {expected}{where}: the bytes received hash to {actual}",
            registry=registry, repository=repository, digest=expected,
        )
        self.expected, self.actual = expected, actual


class SizeMismatch(IntegrityError):
    """Content longer or shorter than its declared size."""

    def __init__(
        self, expected: int, actual: int, *, what: str, digest: str | None = None,
        registry: str | None = None, repository: str | None = None,
    ) -> None:
        place = _where(registry, repository, digest)
        relation = "more than" if actual > expected else "only"
        super().__init__(
            f"size mismatch for {what} {place}: expected {expected} bytes, received {relation} "
            f"{actual}", registry=registry, repository=repository, digest=digest,
        )
        self.expected, self.actual = expected, actual


class TransportError(TankError):
    """The connection to a registry (or its CDN, or its token endpoint) failed.

    ``permanent`` marks a failure no retry can cure (a redirect tank refuses to follow), as
    opposed to the network's failures (refused, reset, timed out, broken off), which are worth
    another try.
    """

    def __init__(self, message: str, *, url: str | None = None, permanent: bool = False) -> None:
        super().__init__(message)
        self.url = url
        self.permanent = permanent


class TLSError(TransportError):
    """A TLS handshake or certificate verification failed."""


class RegistryError(TankError):
    """The registry answered with an error.

    ``status`` is the HTTP status (``None`` when the error is not an HTTP answer), ``errors`` the
    parsed OCI error body (possibly empty), ``retry_after`` the seconds the server's
    ``Retry-After`` header asked the client to wait (``None`` when it sent none).
    """

    def __init__(
        self,
        message: str,
        *,
        registry: str | None = None,
        repository: str | None = None,
        reference: str | None = None,
        status: int | None = None,
        errors: tuple[RegistryErrorDetail, ...] = (),
        retry_after: float | None = None,
    ) -> None:
        place = _where(registry, repository, reference)
        text = message if place == "?" else f"{place}: {message}"
        if status is not None:
            text += f" (HTTP {status})"
        if errors:
            text += ": " + "; ".join(str(e) for e in errors)
        super().__init__(text)
        self.registry = registry
        self.repository = repository
        self.reference = reference
        self.status = status
        self.errors = errors
        self.retry_after = retry_after

    @property
    def codes(self) -> tuple[str, ...]:
        """The registry's error codes, e.g. ``("MANIFEST_UNKNOWN",)``."""
        return tuple(e.code for e in self.errors)


class AuthError(RegistryError):
    """Authentication or authorisation failed; the message says at which step."""


class NotFound(RegistryError):
    """The repository, manifest or blob does not exist (or is hidden from this client)."""


class PlatformNotFound(NotFound):
    """An index offers no image for the platform asked for; ``available`` lists what it has."""

    def __init__(self, message: str, *, available: tuple[str, ...] = (), **kwargs: Any) -> None:
        offered = ", ".join(available) if available else "none"
        super().__init__(f"{message}; the index offers: {offered}", **kwargs)
        self.available = available


class UnsupportedManifest(RegistryError):
    """A manifest of a kind tank does not pull (Docker schema 1, an unknown media type)."""


class ManifestTooLarge(RegistryError):
    """A manifest larger than the limit, refused without reading it whole."""


class InvalidManifest(RegistryError):
    """A manifest that is not a JSON object, or is ambiguous (duplicate keys)."""


class StorageError(TankError):
    """The local disk failed tank: no space left, a read-only filesystem, permissions.

    ``errno`` is the operating system's error number; ``path`` the file being written.
    """

    def __init__(self, message: str, *, path: str | None = None, errno: int | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.errno = errno


class CacheMiss(TankError, LookupError):
    """Something asked of the local cache (:class:`tank.store.Store`) that is not in it.

    ``digest`` names the missing blob when the miss is a blob's.
    """

    def __init__(self, message: str, *, digest: str | None = None) -> None:
        super().__init__(message)
        self.digest = digest

    def _message(self) -> str:
        # the message itself, not LookupError's repr-style quoting
        return str(self.args[0])


class ConfigError(TankError, ValueError):
    """A configuration tank cannot use: a malformed config file or ``registries.conf``, a bad
    environment setting, an unreadable ``certs.d`` folder, a registry the configuration blocks.

    The message names the file or variable and the key.
    """


class PolicyError(ConfigError):
    """A signature policy tank cannot use: a ``policy.json`` that is not valid JSON or not the
    containers policy format (an unknown key or requirement type, a missing ``default``, an
    empty list of requirements), or a public key that cannot be read.

    ``path`` is the policy file (``None`` for a policy given as data).
    """

    def __init__(self, message: str, *, path: str | None = None) -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path


class PolicyRefused(TankError):
    """The signature policy refuses the image (nothing was written or tagged).

    The message names the image, the policy and its scope, each unmet requirement and, for each
    signature looked at, why it was refused.

    :ivar reference: the image as asked for; :ivar digest: the manifest judged (``None`` when
        the policy refused before anything was fetched).
    :ivar policy: where the policy came from (a file, or ``--verify-key``).
    :ivar scope: the policy scope that applied (``""`` for the transport's default,
        ``None`` for the policy's ``default``).
    :ivar failures: one line per requirement that was not met.
    """

    def __init__(
        self, message: str, *, reference: str, digest: str | None, policy: str,
        scope: str | None, failures: tuple[str, ...],
    ) -> None:
        super().__init__(message)
        self.reference, self.digest, self.policy = reference, digest, policy
        self.scope, self.failures = scope, failures


class LayoutError(TankError):
    """An OCI layout tank cannot write into: not a layout, or one with a broken index."""


class ArchiveError(TankError):
    """A docker-archive tank cannot write: inconsistent inputs, a missing blob, a bad target."""


class UnsupportedLayer(TankError):
    """A layer media type tank cannot decompress (not a tar, or an unknown compression)."""

    def __init__(self, media_type: object) -> None:
        super().__init__(
            f"unsupported layer media type {media_type!r}: tank reads tar layers, plain or "
            "compressed with gzip or zstd (application/vnd.oci.image.layer.v1.tar[+gzip|+zstd], "
            "application/vnd.docker.image.rootfs.diff.tar[.gzip])"
        )
        self.media_type = media_type


class CorruptLayer(IntegrityError):
    """A layer whose compressed stream cannot be decoded: truncated, corrupt, trailing garbage.

    ``path`` is the file that was read.
    """

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"corrupt layer {path}: {problem}")
        self.path = path


class InvalidImageConfig(TankError, ValueError):
    """An image config that is not what the image spec says: a field of the wrong type, or
    ``rootfs.diff_ids`` that do not match the manifest's layers."""


class ImagePathError(TankError):
    """A path inside an image that cannot be read as asked: ``tank cat`` of a directory, a FIFO
    or a device.

    ``path`` is the path as asked for; ``reference`` names the image (or is ``None``).
    """

    def __init__(self, message: str, *, path: str, reference: str | None = None) -> None:
        super().__init__(f"{reference}: {message}" if reference else message)
        self.path = path
        self.reference = reference


class PathNotFound(ImagePathError, LookupError):
    """A path the image's final tree does not have: never there, deleted by a layer (a whiteout,
    an opaque directory, a parent replaced), or behind a symlink that leads nowhere in the image.

    ``layer`` is the index of the layer that deleted it, when one did (else ``None``).
    """

    def __init__(
        self, message: str, *, path: str, reference: str | None = None, layer: int | None = None,
    ) -> None:
        super().__init__(message, path=path, reference=reference)
        self.layer = layer

    def _message(self) -> str:
        # the message itself, not LookupError's repr-style quoting
        return str(self.args[0])


class UnpackError(TankError):
    """A root filesystem that cannot be unpacked (:mod:`tank.unpack`).

    ``layer`` is the layer's digest and ``entry`` the tar entry's name, when the problem is one
    entry's; either may be ``None``. ``reason`` is what went wrong.
    """

    def __init__(self, reason: str, *, layer: str | None = None, entry: str | None = None) -> None:
        where = ""
        if layer is not None:
            where = f"layer {layer}"
            if entry is not None:
                where += f", entry {entry!r}"
        elif entry is not None:
            where = f"entry {entry!r}"
        super().__init__(f"cannot unpack {where}: {reason}" if where else reason)
        self.reason = reason
        self.layer = layer
        self.entry = entry


class UnsafeEntry(UnpackError):
    """A layer entry refused: it would reach outside the root (``..``, a hard link or symlinked
    path leading out), or has an absurd name or an entry type tank does not create."""


class LayerTooLarge(UnpackError):
    """A layer over one of the unpack's limits: uncompressed bytes, entry count, header size."""


__all__ = [
    "ArchiveError",
    "AuthError",
    "CacheMiss",
    "ConfigError",
    "CorruptLayer",
    "DigestMismatch",
    "ImagePathError",
    "IntegrityError",
    "InvalidDigest",
    "InvalidImageConfig",
    "InvalidManifest",
    "InvalidReference",
    "LayerTooLarge",
    "LayoutError",
    "ManifestTooLarge",
    "NotFound",
    "PathNotFound",
    "PlatformNotFound",
    "PolicyError",
    "PolicyRefused",
    "RegistryError",
    "RegistryErrorDetail",
    "SizeMismatch",
    "StorageError",
    "TLSError",
    "TankError",
    "TransportError",
    "UnpackError",
    "UnsafeEntry",
    "UnsupportedDigest",
    "UnsupportedLayer",
    "UnsupportedManifest",
]
