"""What a copy carries along with an image: cosign's signatures and the OCI 1.1 referrers.

:func:`carry_attachments` writes, after the image itself, what
:func:`tank.registry.referrers.attachments` lists in the source repository, each verified there:
its blobs (skipped, mounted or uploaded like the image's), then its manifest byte for byte (the
``sha256-<hex>.sig`` tag under that same tag; a referrer by digest). A destination without the
referrers API (``GET /v2/NAME/referrers/DIGEST`` answers 404, as distribution 2.8 does) gets the
referrers tag schema instead: the index under ``sha256-<hex>``, merged with what it held.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from tank.digest import Digest
from tank.errors import NotFound
from tank.image import Descriptor, Index, parse_manifest
from tank.mediatypes import OCI_INDEX
from tank.registry import Repository
from tank.registry.referrers import (
    attachments,
    get_referrers_page,
    referrer_descriptor,
    referrers_tag,
    tag_schema_index,
)

if TYPE_CHECKING:
    from tank._copy import Pusher


def _has_referrers_api(repo: Repository, subject: Digest) -> bool:
    """Whether ``repo``'s registry answers the referrers API (a 404 says it has none)."""
    doc, _, _ = get_referrers_page(repo.auth, f"/v2/{repo.name}/referrers/{subject}")
    return doc is not None


def _existing_tag_index(repo: Repository, subject: Digest) -> Index | None:
    try:
        info = repo.manifest(referrers_tag(subject))
    except NotFound:
        return None
    doc = parse_manifest(info.raw, info.media_type, digest=info.digest)
    return doc if isinstance(doc, Index) else None


def carry_attachments(
    pusher: Pusher,
    source: Repository,
    subjects: Sequence[Digest],
    *,
    signatures: bool,
    referrers: bool,
) -> int:
    """Copy what is attached to each of ``subjects`` in ``source`` to ``pusher``'s repository
    (see the module); the number of manifests written."""
    written = 0
    for subject in subjects:
        items = attachments(source, subject, signatures=signatures, referrers_too=referrers)
        direct: list[Descriptor] = []
        for item in items:
            named = item.document.subject
            if item.tag is None and named is not None and named.digest == subject:
                direct.append(referrer_descriptor(item.document))
            role = "signature" if item.tag else "referrer"
            written += pusher.put_with_blobs(item.document, item.tag or str(item.digest),
                                             [(d, role) for d in item.blobs])
        if direct and not _has_referrers_api(pusher.repo, subject):
            existing = _existing_tag_index(pusher.repo, subject)
            raw = tag_schema_index(existing, direct)
            if existing is None or raw != existing.raw:
                pusher.repo.put_manifest(referrers_tag(subject), raw, OCI_INDEX)
                written += 1
    return written


__all__ = ["carry_attachments"]
