"""OCI artifacts, as oras makes them: files pushed as the layers of an OCI 1.1 image manifest,
and pulled back into a directory.

:func:`push_artifact` writes a manifest with ``artifactType`` (default
:data:`DEFAULT_ARTIFACT_TYPE`), the empty config descriptor (``application/vnd.oci.empty.v1+json``,
``{}``) unless a config file is given, and one layer per file, titled by
``org.opencontainers.image.title`` (the file's name). A directory is packed as a tar+gzip layer
annotated ``io.deis.oras.content.unpack: "true"`` (and ``io.deis.oras.content.digest``, the
tar's digest), as oras packs it: deterministically, so pushing it again uploads nothing.

:func:`pull_artifact` writes every titled layer into a directory, verified. A title is an
untrusted path: it must be relative, without ``..``, and never reach through a symlink out of
the directory; an existing file is never overwritten unless asked. A packed directory is
unpacked with tank's own tar reader, regular files and directories only (a link or a device in
it is refused), under the same rules.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import stat
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from tank import mediatypes
from tank.auth.credentials import CredentialsArg
from tank.config import Config
from tank.config import load as load_config
from tank.digest import Digest, Hasher
from tank.errors import InvalidReference, UnsafeEntry, UnsupportedManifest
from tank.image import Manifest
from tank.layers.tar import REGULAR_TYPES, LayerReader, split_name
from tank.reference import DEFAULT_TAG
from tank.reference import parse as parse_reference
from tank.registry import Client, Repository
from tank.retry import RetryPolicy
from tank.transport import Transport

#: oras's default artifact type
DEFAULT_ARTIFACT_TYPE: Final = "application/vnd.unknown.artifact.v1"
#: the media type of a file layer when none is given (as oras)
DEFAULT_FILE_TYPE: Final = "application/vnd.oci.image.layer.v1.tar"
EMPTY_TYPE: Final = "application/vnd.oci.empty.v1+json"
TITLE: Final = "org.opencontainers.image.title"
UNPACK: Final = "io.deis.oras.content.unpack"
CONTENT_DIGEST: Final = "io.deis.oras.content.digest"


@dataclass(frozen=True)
class ArtifactResult:
    """An artifact pushed or pulled: its manifest digest, and each file (title, digest, size,
    and for a pull where it was written)."""

    reference: str
    digest: Digest
    artifact_type: str | None
    files: tuple[tuple[str, Digest, int, Path | None], ...]

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` document."""
        return {
            "reference": self.reference, "digest": str(self.digest),
            "artifactType": self.artifact_type,
            "files": [{"title": t, "digest": str(d), "size": s,
                       "path": str(p) if p is not None else None} for t, d, s, p in self.files],
        }


def _split_type(spec: str) -> tuple[str, str | None]:
    """``FILE[:MEDIATYPE]``: a suffix is a media type only when it has a ``/``."""
    path, colon, media_type = spec.rpartition(":")
    if colon and path and "/" in media_type:
        return path, media_type
    return spec, None


def _pack_directory(root: Path) -> bytes:
    """``root`` as a deterministic tar+gzip (names relative to its parent, sorted, mtime 0)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in [root, *sorted(root.rglob("*"))]:
            info = tar.gettarinfo(str(path), arcname=str(path.relative_to(root.parent)))
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            if info.isreg():
                with path.open("rb") as f:
                    tar.addfile(info, f)
            else:
                tar.addfile(info)
    return buffer.getvalue()


def _repository(reference: str, credentials: CredentialsArg, transport: Transport | None,
                retry: RetryPolicy | None, config: Config | None) -> tuple[Repository, str]:
    ref = parse_reference(reference.removeprefix("docker://"))
    cfg = config if config is not None else load_config()
    client = Client(ref.registry, credentials=credentials, transport=transport or cfg.transport(),
                    retry=retry, config=cfg)
    return client.repository(ref.repository), ref.digest or ref.tag or DEFAULT_TAG


def push_artifact(
    reference: str,
    files: Sequence[str | os.PathLike[str]],
    *,
    artifact_type: str | None = None,
    annotations: Mapping[str, str] | None = None,
    config_file: str | os.PathLike[str] | None = None,
    credentials: CredentialsArg = None,
    transport: Transport | None = None,
    retry: RetryPolicy | None = None,
    config: Config | None = None,
) -> ArtifactResult:
    """Push ``files`` (each ``PATH[:MEDIATYPE]``; a directory is packed) as an OCI artifact
    named ``reference``; return its digest and layers. ``config_file`` (``PATH[:MEDIATYPE]``)
    replaces the empty config. See the module."""
    repo, tag = _repository(reference, credentials, transport, retry, config)
    layers: list[dict[str, Any]] = []
    pushed: list[tuple[str, Digest, int, Path | None]] = []
    for spec in files:
        path_text, media_type = _split_type(os.fspath(spec))
        path = Path(path_text)
        title = path.name
        if not title:
            raise InvalidReference(path_text, "an artifact file needs a name")
        notes = {TITLE: title}
        if path.is_dir():
            packed = _pack_directory(path)
            tar_digest = Hasher()
            tar_digest.update(packed)
            data = gzip.compress(packed, mtime=0)
            notes[UNPACK] = "true"
            notes[CONTENT_DIGEST] = str(tar_digest.digest())
            desc = repo.upload_blob(data, media_type=media_type or mediatypes.OCI_LAYER_GZIP)
        else:
            desc = repo.upload_blob(path, media_type=media_type or DEFAULT_FILE_TYPE)
        layers.append({"mediaType": desc.media_type, "digest": str(desc.digest),
                       "size": desc.size, "annotations": notes})
        pushed.append((title, desc.digest, desc.size, None))
    if config_file is not None:
        config_path, config_type = _split_type(os.fspath(config_file))
        cdesc = repo.upload_blob(Path(config_path), media_type=config_type or EMPTY_TYPE)
        config_json: dict[str, Any] = {"mediaType": cdesc.media_type,
                                       "digest": str(cdesc.digest), "size": cdesc.size}
    else:
        empty = repo.upload_blob(b"{}", media_type=EMPTY_TYPE)
        config_json = {"mediaType": EMPTY_TYPE, "digest": str(empty.digest), "size": 2,
                       "data": "e30="}
    kind = artifact_type or (None if config_file is not None else DEFAULT_ARTIFACT_TYPE)
    doc: dict[str, Any] = {"schemaVersion": 2, "mediaType": mediatypes.OCI_MANIFEST}
    if kind:
        doc["artifactType"] = kind
    doc["config"] = config_json
    doc["layers"] = layers
    if annotations:
        doc["annotations"] = dict(annotations)
    raw = json.dumps(doc, separators=(",", ":")).encode()
    digest = repo.put_manifest(tag, raw, mediatypes.OCI_MANIFEST)
    return ArtifactResult(f"{repo.registry}/{repo.name}:{tag}", digest, kind, tuple(pushed))


# -- pulling -----------------------------------------------------------------------------------


def _safe_target(root: Path, title: str) -> Path:
    """``root/title`` for an untrusted ``title``: relative, no ``..``, no symlink on the way."""
    if not title or title.startswith("/") or "\0" in title:
        raise UnsafeEntry("the title is empty, absolute or holds a NUL byte", entry=title)
    parts = title.split("/")
    if any(p in ("..",) for p in parts):
        raise UnsafeEntry("the title climbs out of the directory (..)", entry=title)
    parts = split_name(title, "artifact title")
    if not parts:
        raise UnsafeEntry("the title names the directory itself", entry=title)
    current = root
    for part in parts[:-1]:
        current = current / part
        try:
            st = os.lstat(current)
        except FileNotFoundError:
            current.mkdir()
            continue
        if not stat.S_ISDIR(st.st_mode):
            raise UnsafeEntry(f"{current} is not a directory (a symlink?)", entry=title)
    target = current / parts[-1]
    try:
        st = os.lstat(target)
    except FileNotFoundError:
        return target
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISREG(st.st_mode):
        raise UnsafeEntry(f"{target} exists and is not a regular file", entry=title)
    return target


def _write_file(target: Path, data_path: Path, overwrite: bool, title: str) -> None:
    if target.exists() and not overwrite:
        raise UnsafeEntry(f"{target} exists (pass overwrite=True / --overwrite)", entry=title)
    tmp = target.with_name(f".tank-{target.name}.part")
    with data_path.open("rb") as src, open(tmp, "wb") as out:
        while chunk := src.read(1 << 20):
            out.write(chunk)
    os.replace(tmp, target)


def _unpack(root: Path, blob: Path, title: str, overwrite: bool) -> None:
    """A packed directory into ``root``: regular files and directories only, safely."""
    with gzip.open(blob, "rb") as stream:
        reader = LayerReader(lambda: stream.read(1 << 20), digest=title, source=str(blob))
        for entry in reader:
            name = "/".join(split_name(entry.name, "archive member"))
            if not name:
                continue
            if entry.kind == tarfile.DIRTYPE:
                target = _safe_target(root, name + "/x").parent
                target.mkdir(exist_ok=True)
                continue
            if entry.kind not in REGULAR_TYPES:
                raise UnsafeEntry("an artifact's packed directory holds only files and "
                                  "directories", entry=entry.name)
            target = _safe_target(root, name)
            if target.exists() and not overwrite:
                raise UnsafeEntry(f"{target} exists (pass --overwrite)", entry=entry.name)
            with open(target, "wb") as out:
                for chunk in reader.chunks():
                    out.write(chunk)


def pull_artifact(
    reference: str,
    output: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    cache: str | os.PathLike[str] | None = None,
    credentials: CredentialsArg = None,
    transport: Transport | None = None,
    retry: RetryPolicy | None = None,
    config: Config | None = None,
) -> ArtifactResult:
    """Write every titled layer of the artifact ``reference`` into the directory ``output``
    (created if needed), each verified through the cache; return what was written. See the
    module for the rules on titles.

    :raises UnsafeEntry: a title that is absolute, climbs out with ``..``, passes a symlink, or
        names an existing file (without ``overwrite``).
    """
    from tank.store import Store

    repo, ref = _repository(reference, credentials, transport, retry, config)
    info = repo.manifest(ref)
    doc = info.document
    if not isinstance(doc, Manifest):
        raise UnsupportedManifest("an artifact is an image manifest, not an index",
                                  registry=repo.registry, repository=repo.name, reference=ref)
    root = Path(output)
    root.mkdir(parents=True, exist_ok=True)
    store = Store(cache)
    written: list[tuple[str, Digest, int, Path | None]] = []
    for layer in doc.layers:
        title = layer.annotations.get(TITLE)
        if not title:
            continue
        unpack = layer.annotations.get(UNPACK) == "true"
        target = root if unpack else _safe_target(root, title)
        if not unpack and target.exists() and not overwrite:
            raise UnsafeEntry(f"{target} exists (pass --overwrite)", entry=title)
        with store.writer(layer.digest, layer.size) as writer:
            if writer is not None:
                prefix = writer.prefix_hasher if writer.written else None
                writer.commit(repo.fetch_blob(layer.digest, writer, size=layer.size,
                                              prefix=prefix))
        blob = store.blob_path(layer.digest)
        if unpack:
            _unpack(root, blob, title, overwrite)
            written.append((title, layer.digest, layer.size, root / title))
        else:
            _write_file(target, blob, overwrite, title)
            written.append((title, layer.digest, layer.size, target))
    return ArtifactResult(f"{repo.registry}/{repo.name}:{ref}", info.digest or doc.digest,
                          doc.artifact_type or doc.config.media_type, tuple(written))


__all__ = ["DEFAULT_ARTIFACT_TYPE", "ArtifactResult", "pull_artifact", "push_artifact"]
