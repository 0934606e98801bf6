"""Writing manifests to a registry, and reading the answers to writes.

- :func:`put_manifest`: ``PUT /v2/NAME/manifests/REF`` with the bytes exactly as given (never
  re-serialised: their digest is the manifest's) and their media type as ``Content-Type``. The
  registry's ``Docker-Content-Digest``, when it sends one, must be the bytes' digest, and so
  must a digest reference.
- :func:`delete_manifest`: ``DELETE /v2/NAME/manifests/DIGEST``; a registry with deletion
  disabled (distribution answers ``405 UNSUPPORTED``) is said to be so in words.
- :func:`check_written`: a non-``2xx`` answer to a write becomes the error that fits, worded as
  a write (``404`` :class:`~tank.errors.NotFound`, ``401``/``403``
  :class:`~tank.errors.AuthError`, the rest :class:`~tank.errors.RegistryError` with the status,
  the registry's error codes and ``Retry-After``); its body is read capped and released.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tank.digest import Digest, Hasher
from tank.errors import DigestMismatch, RegistryError
from tank.image import Where
from tank.registry.manifests import header_digest
from tank.responses import MAX_ERROR_BODY, error_details, raise_status, read_capped
from tank.transport import release

if TYPE_CHECKING:
    from urllib3 import BaseHTTPResponse

    from tank.auth.session import Authenticator


def check_written(response: BaseHTTPResponse, *, doing: str, place: Where) -> None:
    """Raise the error a non-``2xx`` answer to a write means (see the module); ``doing`` says
    what was being done (``"pushing the manifest"``)."""
    raise_status(response, not_found=f"{doing}: not found", denied=f"{doing}: access denied",
                 failed=f"{doing} failed", **place.kwargs())


def put_manifest(auth: Authenticator, reference: str, raw: bytes, media_type: str) -> Digest:
    """One try at ``PUT /v2/NAME/manifests/REFERENCE`` (see the module); the manifest's digest."""
    algorithm = reference.partition(":")[0] if ":" in reference else "sha256"
    hasher = Hasher(algorithm)
    hasher.update(raw)
    digest = hasher.digest()
    place = Where(auth.registry, auth.repository, reference)
    if ":" in reference and Digest.parse(reference) != digest:
        raise DigestMismatch(reference, digest, what="manifest to push",
                             registry=auth.registry, repository=auth.repository)
    response = auth.send(
        "PUT", f"/v2/{auth.repository}/manifests/{reference}", reference=reference,
        headers={"Content-Type": media_type, "Content-Length": str(len(raw))}, body=bytes(raw),
    )
    check_written(response, doing="pushing the manifest", place=place)
    echoed = header_digest(response, place)
    release(response)
    if echoed is not None and echoed.algorithm == digest.algorithm and echoed != digest:
        raise DigestMismatch(digest, echoed, what="pushed manifest (the registry's "
                             "Docker-Content-Digest)", registry=auth.registry,
                             repository=auth.repository)
    return digest


def delete_manifest(auth: Authenticator, digest: Digest) -> None:
    """One try at ``DELETE /v2/NAME/manifests/DIGEST``."""
    place = Where(auth.registry, auth.repository, str(digest))
    response = auth.send("DELETE", f"/v2/{auth.repository}/manifests/{digest}",
                         reference=str(digest))
    if response.status == 405:
        body, _ = read_capped(response, MAX_ERROR_BODY)
        raise RegistryError(
            "the registry has deletion disabled (it refuses DELETE: distribution needs "
            "storage.delete.enabled: true)", status=405, errors=error_details(body),
            **place.kwargs(),
        )
    check_written(response, doing="deleting the manifest", place=place)
    release(response)


__all__ = ["check_written", "delete_manifest", "put_manifest"]
