"""The policy at work: signatures read from the registry, a pull's gate, ``tank verify``.

- :func:`find_signatures`: the signatures of one manifest, from its ``sha256-<hex>.sig`` tag
  (the first repository that has the tag: the mirror that served the pull, then the registry
  itself). The tag's manifest and every payload are fetched through a
  :class:`~tank.Repository`, so each is verified against its digest (and a payload against the
  size its descriptor declares, at most :data:`~tank.policy.sigstore.MAX_PAYLOAD` bytes) before
  it is judged. Attachments that are not signatures are never downloaded.
- :func:`gate`: a pull's policy, loaded and pre-judged before the network is touched (a
  ``reject`` refuses there, a malformed policy or unreadable key is a
  :class:`~tank.errors.PolicyError`, an ``--offline`` pull that needs signatures a
  :class:`~tank.errors.CacheMiss`); :meth:`Gate.check` then judges the resolved manifests,
  before any layer is downloaded or anything written.
- :func:`verify`: what ``tank verify REF`` does, without the cache.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Final

from tank import mediatypes
from tank.errors import CacheMiss, InvalidManifest, NotFound, TankError, UnsupportedManifest
from tank.image import Index, Manifest, Where, parse_manifest
from tank.policy.judge import Document, Found, Verdict, judge, precheck
from tank.policy.lookup import PolicyArg, load_policy
from tank.policy.sigstore import MAX_PAYLOAD, SIMPLE_SIGNING, Signature
from tank.reference import Reference
from tank.registry.referrers import signature_tag

if TYPE_CHECKING:
    from tank.auth.credentials import CredentialsArg
    from tank.config import Config
    from tank.digest import Digest
    from tank.platform import Platform
    from tank.policy.document import Policy
    from tank.registry import Repository
    from tank.retry import RetryPolicy
    from tank.transport import Transport

#: signatures read at most from one ``.sig`` tag (the rest are noted, not judged)
MAX_SIGNATURES: Final = 100


def _read_tag(repo: Repository, tag: str, subject: Digest) -> Found:
    """The signatures under ``tag`` (its manifest and payloads fetched, each verified)."""
    info = repo.manifest(tag)
    place = Where(repo.registry, repo.name, tag)
    try:
        doc = parse_manifest(info.raw, info.media_type, digest=info.digest, place=place)
    except (InvalidManifest, UnsupportedManifest) as exc:
        return Found(notes=(f"{tag} is not a signature manifest: {exc}",))
    if not isinstance(doc, Manifest) or doc.media_type != mediatypes.OCI_MANIFEST:
        return Found(notes=(f"{tag} holds a {doc.media_type}, not an OCI image manifest",))
    signatures: list[Signature] = []
    notes: list[str] = []
    others = 0
    for n, layer in enumerate(doc.layers, 1):
        where = f"{tag} layer {n}"
        if layer.media_type != SIMPLE_SIGNING:
            others += 1
        elif len(signatures) >= MAX_SIGNATURES:
            notes.append(f"{tag}: more than {MAX_SIGNATURES} signatures; the rest were not read")
            break
        elif layer.size > MAX_PAYLOAD:
            notes.append(f"{where}: a payload of {layer.size} bytes (over {MAX_PAYLOAD})")
        else:
            try:
                payload = repo.blob(layer.digest, size=layer.size)
            except NotFound:
                notes.append(f"{where}: its payload {layer.digest} is missing")
                continue
            signatures.append(Signature(layer.media_type, payload, dict(layer.annotations),
                                        subject, where))
    if others:
        notes.append(f"{tag}: {others} attachment{'s' if others > 1 else ''} that "
                     f"{'are' if others > 1 else 'is'} not a signature")
    return Found(tuple(signatures), tuple(notes))


def find_signatures(repos: Sequence[Repository], doc: Document) -> Found:
    """The signatures of the manifest ``doc``, from the first of ``repos`` that has its
    ``sha256-<hex>.sig`` tag; a mirror's failure falls through to the next repository, the
    last one's is raised (a network failure is not a refusal)."""
    tag = signature_tag(doc.digest)
    for i, repo in enumerate(repos):
        try:
            return _read_tag(repo, tag, doc.digest)
        except NotFound:
            continue
        except TankError:
            if i == len(repos) - 1:
                raise
    return Found(notes=(f"no {tag} tag",))


def enforce(
    policy: Policy, ref: Reference, top: Document, images: Sequence[Manifest],
    repos: Sequence[Repository],
) -> Verdict:
    """Judge ``images`` (reached through ``top``, an index; or ``top`` itself when it is an
    image manifest and ``images`` is empty) pulled as ``ref``, their signatures read from
    ``repos``. Each manifest's signatures are fetched at most once.

    :raises PolicyRefused: an image the policy does not accept.
    """
    cache: dict[str, Found] = {}

    def find(doc: Document) -> Found:
        if doc.digest not in cache:
            cache[doc.digest] = find_signatures(repos, doc)
        return cache[doc.digest]

    if isinstance(top, Manifest) or not images:
        return judge(policy, ref, top, find)
    verdicts = [judge(policy, ref, top, find, then=[image]) for image in images]
    return replace(verdicts[0], images=tuple(image.digest for image in images))


@dataclass(frozen=True)
class Gate:
    """A pull's policy (see the module); ``policy`` is ``None`` when there is none."""

    policy: Policy | None
    reference: Reference

    def check(
        self, top: Document, images: Sequence[Manifest], repos: Sequence[Repository]
    ) -> Verdict | None:
        """Judge the resolved manifests (see :func:`enforce`); ``None`` without a policy."""
        if self.policy is None:
            return None
        return enforce(self.policy, self.reference, top, images, repos)


def gate(
    policy: PolicyArg, ref: Reference, *, config: Config | None = None, offline: bool = False
) -> Gate:
    """Load the policy for a pull of ``ref`` and judge what needs no signature (see the
    module); before any network use."""
    loaded = load_policy(policy, config=config)
    if loaded is None:
        return Gate(None, ref)
    scope = precheck(loaded, ref)
    if offline and scope.needs_signatures:
        raise CacheMiss(
            f"offline, and the signature policy {loaded.source} ({scope.describe()}) needs the "
            f"signatures of {ref} from its registry"
        )
    return Gate(loaded, ref)


def verify(
    ref: str | Reference,
    *,
    policy: PolicyArg = None,
    platform: str | Platform | None = None,
    transport: Transport | None = None,
    retry: RetryPolicy | None = None,
    credentials: CredentialsArg = None,
    config: Config | None = None,
) -> Verdict:
    """Judge an image against the signature policy without pulling it: ``tank verify``.

    Fetches the manifest ``ref`` names and the signatures the policy needs; for an index whose
    own signatures are not enough, also the ``platform`` entry's (the config's platform, else
    the host's) and its signatures. Nothing else, and nothing is cached.

    :param policy: a :class:`~tank.policy.Policy` or a ``policy.json`` path; default as a pull
        finds it (:func:`~tank.policy.load_policy`).
    :returns: the :class:`~tank.policy.Verdict`: the scope, and the key and identity of the
        signature that met each requirement. Without any policy file the verdict has
        ``policy=None`` and nothing met: tank accepts every image.
    :raises PolicyRefused: the policy does not accept the image (each unmet requirement, with
        why each signature was refused). :raises PolicyError: a policy tank cannot use.
    """
    from tank.config import load as load_config
    from tank.platform import Platform, host_platform
    from tank.reference import parse as parse_reference
    from tank.registry import Client

    reference = parse_reference(ref) if isinstance(ref, str) else ref
    cfg = config if config is not None else load_config()
    loaded = load_policy(policy, config=cfg)
    if loaded is not None:
        precheck(loaded, reference)
    endpoint = cfg.endpoints(reference)[-1]
    client = Client(endpoint.registry, credentials=credentials, transport=transport, retry=retry,
                    config=cfg)
    repo = client.repository(endpoint.repository)
    place = Where(reference.registry, reference.repository, reference.fetch_reference)
    top = repo.manifest(reference.fetch_reference).document

    def platform_image() -> Iterator[Manifest]:
        """The index's entry for the platform, fetched only if its signatures are needed."""
        assert isinstance(top, Index)
        want = platform if platform is not None else cfg.platform
        chosen = Platform.parse(want) if isinstance(want, str) else want or host_platform()
        entry = top.select(chosen, place=place)
        child = repo.manifest(entry.digest).document
        if not isinstance(child, Manifest) or child.size != entry.size:
            raise InvalidManifest(
                f"the index entry {entry.digest} is not an image manifest of {entry.size} bytes",
                **place.kwargs(),
            )
        yield child

    if loaded is None:
        images = (top.digest,) if isinstance(top, Manifest) else ()
        return Verdict(reference, top.digest, images, None, None, ())
    then = platform_image() if isinstance(top, Index) else iter(())
    return judge(loaded, reference, top, functools.partial(find_signatures, [repo]), then=then)


__all__ = ["MAX_SIGNATURES", "Gate", "enforce", "find_signatures", "gate", "verify"]
