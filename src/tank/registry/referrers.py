"""What points at a manifest: OCI 1.1 referrers, and cosign's ``.sig`` tags.

**Referrers** (distribution-spec 1.1): the manifests whose ``subject`` is a given manifest
(signatures, SBOMs, attestations). :func:`referrers` asks the referrers API,
``GET /v2/NAME/referrers/DIGEST`` (``?artifactType=`` when filtering), following
``Link: <…>; rel="next"`` pages on the registry's own origin. A registry without the API
answers ``404``; then, as the spec says, the *referrers tag schema* is read: the tag
``<alg>-<hex>`` holding an OCI index of the referrers (no tag: no referrers). Either way the
answer is an :class:`~tank.image.Index` whose entries were each checked as descriptors, filtered
by ``artifactType`` on the client too (a registry may ignore the filter). The list is the
registry's word; each referrer is verified when fetched (:func:`attachments` checks its digest,
its size, and that its ``subject`` is the manifest asked about).

**Copying what is attached** (what ``tank copy --signatures --referrers`` carries):
:func:`attachments` lists, verified and in the order to write them, the ``sha256-<hex>.sig``
manifest (written back under that tag) and every referrer (written by digest, an index's
children before it), each with the blobs to copy first. On a destination without the referrers
API, :func:`tag_schema_index` gives the index to write under :func:`referrers_tag`.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import quote

from tank import _json, mediatypes
from tank.digest import Digest
from tank.errors import InvalidManifest, NotFound, RegistryError
from tank.image import Descriptor, Index, Manifest, Where, parse_manifest
from tank.image.manifest import MAX_INDEX_ENTRIES, MAX_MANIFEST_SIZE
from tank.registry.taglist import next_link, same_origin_path
from tank.responses import raise_for_status, read_capped
from tank.retry import call

if TYPE_CHECKING:
    from tank.auth.session import Authenticator
    from tank.registry.manifests import ManifestInfo
    from tank.registry.repository import Repository

#: pages of a referrers answer followed at most
MAX_REFERRERS_PAGES: Final = 1000


def referrers_tag(digest: str | Digest) -> str:
    """The referrers tag schema's tag for ``digest``: ``<alg>-<hex>`` (algorithm cut to 32
    characters, hex to 64, as the distribution spec says)."""
    d = Digest.parse(str(digest))
    return f"{d.algorithm[:32]}-{d.hex[:64]}"


def signature_tag(digest: str | Digest) -> str:
    """cosign's tag for the signatures of ``digest``: ``sha256-<hex>.sig``."""
    d = Digest.parse(str(digest))
    return f"{d.algorithm}-{d.hex}.sig"


_ATTACHMENT_TAG = re.compile(r"[a-z0-9]{1,32}-[0-9a-f]{32,64}(?:\.(?:sig|att|sbom))?")


def is_attachment_tag(tag: str) -> bool:
    """Whether ``tag`` names something attached to an image rather than an image: a referrers
    tag schema index (``sha256-<hex>``) or cosign's signatures, attestations or SBOM
    (``sha256-<hex>.sig``, ``.att``, ``.sbom``)."""
    return _ATTACHMENT_TAG.fullmatch(tag) is not None


def get_referrers_page(
    auth: Authenticator, path: str
) -> tuple[dict[str, Any] | None, str | None, bool]:
    """One try at one page of the referrers API: the index document (``None`` on ``404``: no
    API), the ``rel="next"`` target, and whether the registry applied the ``artifactType``
    filter (``OCI-Filters-Applied``)."""
    place = Where(auth.registry, auth.repository, "")
    response = auth.send("GET", path, headers={"Accept": mediatypes.OCI_INDEX})
    if response.status == 404:
        read_capped(response, 64 * 1024)
        return None, None, False
    raise_for_status(response, what="referrers list", **place.kwargs())
    body, complete = read_capped(response, MAX_MANIFEST_SIZE)
    if not complete:
        raise RegistryError(
            f"the referrers list is over the {MAX_MANIFEST_SIZE}-byte limit", **place.kwargs()
        )
    doc = _json.loads_object(
        body, what="the referrers list",
        error=lambda message: InvalidManifest(message, **place.kwargs()),
    )
    if not isinstance(doc.get("manifests"), list):
        raise InvalidManifest("the referrers list has no manifests list", **place.kwargs())
    applied = "artifacttype" in response.headers.get("OCI-Filters-Applied", "").lower()
    return doc, next_link(response.headers.getlist("Link")), applied


def _index(entries: Sequence[Descriptor]) -> Index:
    doc = {"schemaVersion": 2, "mediaType": mediatypes.OCI_INDEX,
           "manifests": [dict(e.json) if e.json is not None else e.to_json() for e in entries]}
    raw = json.dumps(doc, separators=(",", ":")).encode()
    index = parse_manifest(raw, mediatypes.OCI_INDEX)
    assert isinstance(index, Index)
    return index


def _filtered(index: Index, artifact_type: str | None) -> Index:
    if artifact_type is None:
        return index
    kept = [d for d in index.manifests if d.artifact_type == artifact_type]
    return index if len(kept) == len(index.manifests) else _index(kept)


def _api(repo: Repository, subject: Digest, artifact_type: str | None) -> Index | None:
    """The referrers API's answer, every page; ``None`` when the registry has no API."""
    place = Where(repo.registry, repo.name, str(subject))
    path: str | None = f"/v2/{repo.name}/referrers/{subject}" + (
        f"?artifactType={quote(artifact_type, safe='')}" if artifact_type else ""
    )
    seen: set[str] = set()
    entries: list[Descriptor] = []
    while path is not None:
        if path in seen or len(seen) >= MAX_REFERRERS_PAGES:
            raise RegistryError(f"the referrers list's pages do not end ({path!r})",
                                **place.kwargs())
        seen.add(path)
        current = path
        doc, link, _ = call(functools.partial(get_referrers_page, repo.auth, current),
                            policy=repo.retry, what=f"GET referrers {current} of")
        if doc is None:
            if not entries and len(seen) == 1:
                return None
            raise NotFound("a later page of the referrers list is gone", **place.kwargs())
        entries.extend(
            Descriptor.from_json(e, where=f"referrer {len(entries) + i}", place=place)
            for i, e in enumerate(doc["manifests"], 1)
        )
        if len(entries) > MAX_INDEX_ENTRIES:
            raise InvalidManifest(f"the referrers list has over {MAX_INDEX_ENTRIES} entries",
                                  **place.kwargs())
        base = repo.client.transport.base_url(repo.registry)
        path = None if link is None else same_origin_path(base, current, link, place)
    return _index(entries)


def referrers(repo: Repository, subject: Digest, *, artifact_type: str | None = None) -> Index:
    """The referrers of ``subject`` in ``repo``: the API, else the tag schema (see the module);
    an empty index when there are none."""
    found = _api(repo, subject, artifact_type)
    if found is None:
        try:
            info = repo.manifest(referrers_tag(subject))
        except NotFound:
            return _index([])
        doc = info.document
        if not isinstance(doc, Index):
            raise InvalidManifest(
                f"the referrers tag {referrers_tag(subject)} holds an image manifest, not an "
                "index", registry=repo.registry, repository=repo.name,
                reference=referrers_tag(subject),
            )
        found = doc
    return _filtered(found, artifact_type)


# -- what a copy carries ---------------------------------------------------------------------


@dataclass(frozen=True)
class Attached:
    """A manifest attached to a subject, fetched and verified, to write at the destination.

    :ivar tag: the tag to write it under (the ``.sig`` tag), or ``None`` to write it by digest
        (a referrer, or an index referrer's child).
    :ivar info: the manifest exactly as served (:attr:`ManifestInfo.raw`, verified).
    :ivar document: ``info`` parsed.
    :ivar blobs: what to copy before the manifest: its config and layers (none for an index,
        whose children come earlier in the list).
    """

    tag: str | None
    info: ManifestInfo
    document: Manifest | Index

    @property
    def digest(self) -> Digest:
        """The manifest's digest."""
        return self.document.digest

    @property
    def blobs(self) -> tuple[Descriptor, ...]:
        """See the class."""
        doc = self.document
        return (doc.config, *doc.layers) if isinstance(doc, Manifest) else ()


def _attached(repo: Repository, descriptor: Descriptor, tag: str | None) -> Attached:
    info = repo.manifest(str(descriptor.digest))
    doc = info.document
    if doc.size != descriptor.size:
        raise InvalidManifest(
            f"{descriptor.digest} has {doc.size} bytes, the referrers list says "
            f"{descriptor.size}", registry=repo.registry, repository=repo.name,
            reference=str(descriptor.digest),
        )
    return Attached(tag, info, doc)


def _with_children(repo: Repository, item: Attached) -> list[Attached]:
    """``item`` after its children (an index referrer's manifests), each verified."""
    if not isinstance(item.document, Index):
        return [item]
    out: list[Attached] = []
    for entry in item.document.manifests:
        child = _attached(repo, entry, None)
        if isinstance(child.document, Index):
            raise InvalidManifest(
                f"the referrer {item.digest} names an index {entry.digest} (nested indexes are "
                "not copied)", registry=repo.registry, repository=repo.name,
                reference=str(item.digest),
            )
        out.append(child)
    return [*out, item]


def attachments(
    repo: Repository,
    subject: str | Digest,
    *,
    signatures: bool = True,
    referrers_too: bool = True,
    artifact_type: str | None = None,
) -> list[Attached]:
    """What is attached to ``subject`` in ``repo``, in the order to write it elsewhere.

    With ``signatures``, cosign's ``sha256-<hex>.sig`` manifest (if the tag exists), to write
    byte for byte under the same tag; with ``referrers_too``, every referrer (only those of
    ``artifact_type`` when given), each checked: its digest and size as listed, and its
    ``subject`` is ``subject``. Write each item's :attr:`Attached.blobs`, then its manifest
    (under :attr:`Attached.tag`, else by digest), in list order.

    :raises InvalidManifest: a listed referrer whose subject is another manifest, or whose size
        is not the one listed.
    """
    want = Digest.parse(str(subject))
    out: list[Attached] = []
    if signatures:
        tag = signature_tag(want)
        try:
            info = repo.manifest(tag)
        except NotFound:
            pass
        else:
            out.append(Attached(tag, info, info.document))
    if referrers_too:
        for entry in referrers(repo, want, artifact_type=artifact_type).manifests:
            item = _attached(repo, entry, None)
            named = item.document.subject
            if named is None or named.digest != want:
                raise InvalidManifest(
                    f"the registry lists {entry.digest} as a referrer of {want}, but its subject "
                    f"is {named.digest if named else 'missing'}", registry=repo.registry,
                    repository=repo.name, reference=str(entry.digest),
                )
            out.extend(_with_children(repo, item))
    return out


def referrer_descriptor(document: Manifest | Index) -> Descriptor:
    """The entry a referrers index holds for ``document``: its media type, digest and size,
    ``artifactType`` (the manifest's, else its config's media type) and annotations."""
    artifact_type = document.artifact_type
    if artifact_type is None and isinstance(document, Manifest):
        artifact_type = document.config.media_type
    entry: dict[str, Any] = {"mediaType": document.media_type, "digest": str(document.digest),
                             "size": document.size}
    if artifact_type:
        entry["artifactType"] = artifact_type
    if document.annotations:
        entry["annotations"] = dict(document.annotations)
    return Descriptor.from_json(entry)


def tag_schema_index(existing: Index | None, added: Sequence[Descriptor]) -> bytes:
    """The referrers tag schema's index after adding ``added`` to ``existing`` (the index the
    destination's :func:`referrers_tag` holds, if any): its entries kept as they are, each
    digest once, as the bytes to write under that tag."""
    entries = list(existing.manifests) if existing is not None else []
    seen = {e.digest for e in entries}
    for d in added:
        if d.digest not in seen:
            seen.add(d.digest)
            entries.append(d)
    return _index(entries).raw


__all__ = [
    "MAX_REFERRERS_PAGES",
    "Attached",
    "attachments",
    "get_referrers_page",
    "is_attachment_tag",
    "referrer_descriptor",
    "referrers",
    "referrers_tag",
    "signature_tag",
    "tag_schema_index",
]
