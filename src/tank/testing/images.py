"""Build real, reproducible OCI / Docker images and push them through the registry API."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import random
import tarfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote, urljoin

import urllib3
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from tank.testing._closing import Closing

__all__ = [
    "DOCKER_CONFIG",
    "DOCKER_LAYER_GZIP",
    "DOCKER_LIST",
    "DOCKER_MANIFEST",
    "IN_TOTO",
    "OCI_CONFIG",
    "OCI_INDEX",
    "OCI_LAYER",
    "OCI_LAYER_GZIP",
    "OCI_MANIFEST",
    "Blob",
    "Image",
    "Index",
    "PushError",
    "Pusher",
    "make_image",
    "make_index",
    "make_layer",
    "make_random_blob_file",
    "random_bytes_stream",
    "sample_image",
    "sample_index",
    "sha256_digest",
]

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
IN_TOTO = "application/vnd.in-toto+json"

MediaTypes = Literal["oci", "docker"]
Compression = Literal["gzip", "none"]

_EPOCH = 1_700_000_000  # fixed mtime for reproducible tars
_CREATED = "2023-11-14T22:13:20Z"
_TO_DOCKER = {OCI_LAYER_GZIP: DOCKER_LAYER_GZIP, OCI_LAYER: DOCKER_LAYER}
_TO_OCI = {v: k for k, v in _TO_DOCKER.items()}
_CHUNK = 8 << 20


def sha256_digest(data: bytes) -> str:
    """``sha256:<hex>`` of ``data``."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _json(obj: Any) -> bytes:
    return json.dumps(obj, indent=3).encode()


@dataclass(frozen=True)
class Blob:
    """Bytes with their digest; layers also carry ``diff_id`` (sha256 of the plain tar)."""

    data: bytes = field(repr=False)
    digest: str
    size: int
    media_type: str
    diff_id: str | None = None

    @classmethod
    def of(cls, data: bytes, media_type: str, diff_id: str | None = None) -> Blob:
        """Wrap ``data``, computing digest and size."""
        return cls(data, sha256_digest(data), len(data), media_type, diff_id)

    def descriptor(self) -> dict[str, Any]:
        """The OCI descriptor for this blob."""
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}


@dataclass(frozen=True)
class Image:
    """A single-platform image: manifest bytes, config and layers."""

    manifest: bytes = field(repr=False)
    manifest_digest: str
    media_type: str
    config: Blob
    layers: tuple[Blob, ...]
    platform: dict[str, str]

    def blobs(self) -> Iterator[Blob]:
        """Config, then layers."""
        yield self.config
        yield from self.layers

    def descriptor(self, **extra: Any) -> dict[str, Any]:
        """The descriptor of the manifest, as listed in an index."""
        return {
            "mediaType": self.media_type,
            "digest": self.manifest_digest,
            "size": len(self.manifest),
            **extra,
        }


@dataclass(frozen=True)
class Index:
    """An OCI image index or Docker manifest list, with its child images."""

    manifest: bytes = field(repr=False)
    manifest_digest: str
    media_type: str
    images: tuple[Image, ...]
    attestations: tuple[Image, ...] = ()

    def children(self) -> Iterator[Image]:
        """Every manifest the index refers to (images, then attestations)."""
        yield from self.images
        yield from self.attestations

    def image_for(self, os: str, architecture: str, variant: str | None = None) -> Image:
        """The child image for a platform."""
        for image in self.images:
            p = image.platform
            if (
                p["os"] == os
                and p["architecture"] == architecture
                and (variant is None or p.get("variant") == variant)
            ):
                return image
        raise KeyError(f"{os}/{architecture}/{variant}")


# -- building --------------------------------------------------------------------------------


def _norm(path: str) -> str:
    parts = [p for p in path.replace("\\", "/").split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        raise ValueError(f"bad layer path {path!r}")
    return "/".join(parts)


def make_layer(files: Mapping[str, bytes | None], *, compression: Compression = "gzip") -> Blob:
    """A reproducible tar layer: ``None`` values are directories, parents are implied."""
    entries: dict[str, bytes | None] = {}
    for raw, content in files.items():
        path = _norm(raw)
        parts = path.split("/")
        for i in range(1, len(parts)):
            entries.setdefault("/".join(parts[:i]), None)
        entries[path] = content
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(entries, key=lambda p: p.split("/")):
            content = entries[path]
            info = tarfile.TarInfo(path)
            info.mtime = _EPOCH
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            if content is None:
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                tar.addfile(info)
            else:
                info.mode = 0o644
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
    plain = buf.getvalue()
    diff_id = sha256_digest(plain)
    if compression == "gzip":
        return Blob.of(gzip.compress(plain, compresslevel=6, mtime=0), OCI_LAYER_GZIP, diff_id)
    if compression == "none":
        return Blob.of(plain, OCI_LAYER, diff_id)
    raise ValueError(f"unsupported compression {compression!r}")


def make_image(
    layers: Sequence[Blob],
    *,
    os: str = "linux",
    architecture: str = "amd64",
    variant: str | None = None,
    media_types: MediaTypes = "oci",
    config_extra: Mapping[str, Any] | None = None,
) -> Image:
    """Config JSON and a schema-2 manifest for ``layers`` in OCI or Docker media types."""
    to = _TO_DOCKER if media_types == "docker" else _TO_OCI
    typed = tuple(
        replace(layer, media_type=to.get(layer.media_type, layer.media_type)) for layer in layers
    )
    diff_ids = []
    for layer in typed:
        if layer.diff_id is None:
            raise ValueError(f"layer {layer.digest} has no diff_id")
        diff_ids.append(layer.diff_id)
    platform = {"architecture": architecture, "os": os}
    if variant:
        platform["variant"] = variant
    config: dict[str, Any] = {
        "created": _CREATED,
        **platform,
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": ["/bin/sh", "/bin/hello"],
        },
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [
            {"created": _CREATED, "created_by": f"tank.testing layer {i}"}
            for i in range(len(typed))
        ],
    }
    config.update(config_extra or {})
    oci = media_types == "oci"
    config_blob = Blob.of(_json(config), OCI_CONFIG if oci else DOCKER_CONFIG)
    media_type = OCI_MANIFEST if oci else DOCKER_MANIFEST
    manifest = _json(
        {
            "schemaVersion": 2,
            "mediaType": media_type,
            "config": config_blob.descriptor(),
            "layers": [layer.descriptor() for layer in typed],
        }
    )
    return Image(manifest, sha256_digest(manifest), media_type, config_blob, typed, platform)


def _attestation(image: Image) -> Image:
    """A buildkit-style attestation manifest (in-toto SPDX statement) for ``image``."""
    statement = {
        "_type": "https://in-toto.io/Statement/v0.1",
        "predicateType": "https://spdx.dev/Document",
        "subject": [
            {
                "name": f"pkg:docker/tank/sample@latest?platform={image.platform['os']}"
                f"%2F{image.platform['architecture']}",
                "digest": {"sha256": image.manifest_digest.partition(":")[2]},
            }
        ],
        "predicate": {"spdxVersion": "SPDX-2.3", "name": "sbom", "packages": []},
    }
    layer = Blob.of(_json(statement), IN_TOTO)
    platform = {"architecture": "unknown", "os": "unknown"}
    config = Blob.of(
        _json({**platform, "config": {}, "rootfs": {"type": "layers", "diff_ids": [layer.digest]}}),
        OCI_CONFIG,
    )
    manifest = _json(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": config.descriptor(),
            "layers": [
                {
                    **layer.descriptor(),
                    "annotations": {"in-toto.io/predicate-type": "https://spdx.dev/Document"},
                }
            ],
        }
    )
    return Image(manifest, sha256_digest(manifest), OCI_MANIFEST, config, (layer,), platform)


def make_index(
    images: Sequence[Image], *, media_types: MediaTypes = "oci", attestations: bool = False
) -> Index:
    """An OCI index or Docker manifest list over ``images`` (plus attestation manifests)."""
    media_type = OCI_INDEX if media_types == "oci" else DOCKER_LIST
    entries = [image.descriptor(platform=dict(image.platform)) for image in images]
    atts: list[Image] = []
    if attestations:
        for image in images:
            att = _attestation(image)
            atts.append(att)
            entries.append(
                att.descriptor(
                    platform=dict(att.platform),
                    annotations={
                        "vnd.docker.reference.digest": image.manifest_digest,
                        "vnd.docker.reference.type": "attestation-manifest",
                    },
                )
            )
    manifest = _json({"schemaVersion": 2, "mediaType": media_type, "manifests": entries})
    return Index(manifest, sha256_digest(manifest), media_type, tuple(images), tuple(atts))


def sample_image(
    *,
    media_types: MediaTypes = "oci",
    architecture: str = "amd64",
    variant: str | None = None,
    os: str = "linux",
) -> Image:
    """A small realistic three-layer image; the same arguments give the same digests."""
    plat = f"{os}/{architecture}" + (f"/{variant}" if variant else "")
    base = make_layer(
        {
            "etc/os-release": b'NAME="Tank Test Linux"\nID=tank\nVERSION_ID=1.0\n',
            "etc/hostname": b"tank\n",
            "tmp": None,
        }
    )
    app = make_layer({"bin/hello": f'#!/bin/sh\necho "hello from {plat}"\n'.encode()})
    rng = random.Random(f"tank-sample-{plat}")  # noqa: S311 - reproducible test data
    data = make_layer({"usr/share/tank/data.bin": rng.randbytes(6000)})
    return make_image(
        [base, app, data],
        os=os,
        architecture=architecture,
        variant=variant,
        media_types=media_types,
    )


SAMPLE_PLATFORMS: tuple[tuple[str, str, str | None], ...] = (
    ("linux", "amd64", None),
    ("linux", "arm64", "v8"),
    ("linux", "arm", "v7"),
)


def sample_index(*, media_types: MediaTypes = "oci", attestations: bool | None = None) -> Index:
    """linux/amd64 + linux/arm64/v8 + linux/arm/v7; attestations default to OCI only.

    The amd64 child equals ``sample_image(media_types=...)``.
    """
    images = [
        sample_image(media_types=media_types, os=o, architecture=a, variant=v)
        for o, a, v in SAMPLE_PLATFORMS
    ]
    with_att = media_types == "oci" if attestations is None else attestations
    return make_index(images, media_types=media_types, attestations=with_att)


def random_bytes_stream(size: int, seed: int | str = 0) -> Iterator[bytes]:
    """Deterministic pseudo-random bytes (AES-CTR keyed by ``seed``) in chunks of 8 MiB."""
    key = hashlib.sha256(f"tank-random-{seed}".encode()).digest()
    encryptor = Cipher(algorithms.AES(key), modes.CTR(bytes(16))).encryptor()
    zeros = bytes(_CHUNK)
    left = size
    while left > 0:
        n = min(_CHUNK, left)
        yield encryptor.update(zeros if n == _CHUNK else bytes(n))
        left -= n


def make_random_blob_file(path: str | Path, size: int, seed: int | str = 0) -> str:
    """Write ``size`` deterministic pseudo-random bytes to ``path``; return their digest."""
    h = hashlib.sha256()
    with open(path, "wb") as f:
        for chunk in random_bytes_stream(size, seed):
            h.update(chunk)
            f.write(chunk)
    return "sha256:" + h.hexdigest()


# -- pushing ---------------------------------------------------------------------------------


class PushError(RuntimeError):
    """The registry refused a push."""

    def __init__(self, method: str, url: str, status: int, body: bytes) -> None:
        """Keep the status and body for the message."""
        super().__init__(f"{method} {url} -> {status}: {body[:500]!r}")
        self.status = status
        self.body = body


class Pusher(Closing):
    """Push blobs and manifests with plain urllib3 (monolithic uploads)."""

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        basic: tuple[str, str] | None = None,
        ca_file: str | Path | None = None,
    ) -> None:
        """``url`` is the registry base (``http://127.0.0.1:5000``)."""
        self.url = url.rstrip("/")
        self.headers: dict[str, str] = {}
        if token is not None:
            self.headers["Authorization"] = f"Bearer {token}"
        elif basic is not None:
            self.headers.update(urllib3.make_headers(basic_auth=f"{basic[0]}:{basic[1]}"))
        kw: dict[str, Any] = {}
        if ca_file is not None:
            kw["ca_certs"] = str(ca_file)
        self._http = urllib3.PoolManager(
            retries=False,
            timeout=urllib3.Timeout(connect=10, read=300),
            blocksize=1 << 20,
            **kw,
        )

    def _request(
        self,
        method: str,
        url: str,
        *,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        ok: tuple[int, ...] = (200,),
    ) -> urllib3.BaseHTTPResponse:
        resp = self._http.request(
            method, url, body=body, headers={**self.headers, **(headers or {})}, redirect=False
        )
        if resp.status not in ok:
            raise PushError(method, url, resp.status, resp.data)
        return resp

    def blob_exists(self, repo: str, digest: str) -> bool:
        """HEAD the blob."""
        url = f"{self.url}/v2/{repo}/blobs/{digest}"
        return self._request("HEAD", url, ok=(200, 404)).status == 200

    def push_blob(self, repo: str, data: bytes | Blob | str | os.PathLike[str]) -> str:
        """Upload bytes, a Blob or a file (streamed from disk); skip it if present."""
        if isinstance(data, Blob):
            data = data.data
        if isinstance(data, bytes):
            digest, size = sha256_digest(data), len(data)
        else:
            path = Path(data)
            with path.open("rb") as f:
                digest = "sha256:" + hashlib.file_digest(f, "sha256").hexdigest()
            size = path.stat().st_size
        if self.blob_exists(repo, digest):
            return digest
        start = self._request("POST", f"{self.url}/v2/{repo}/blobs/uploads/", ok=(202,))
        location = start.headers.get("Location")
        if not location:
            raise PushError("POST", f"{self.url}/v2/{repo}/blobs/uploads/", 202, b"no Location")
        put_url = urljoin(self.url + "/", location)
        put_url += ("&" if "?" in put_url else "?") + "digest=" + quote(digest, safe="")
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size)}
        if isinstance(data, bytes):
            self._request("PUT", put_url, body=data, headers=headers, ok=(201,))
        else:
            with Path(data).open("rb") as f:
                self._request("PUT", put_url, body=f, headers=headers, ok=(201,))
        return digest

    def push_manifest(self, repo: str, ref: str, manifest: bytes, media_type: str) -> str:
        """PUT a manifest by tag or digest; return its digest."""
        url = f"{self.url}/v2/{repo}/manifests/{ref}"
        resp = self._request(
            "PUT", url, body=manifest, headers={"Content-Type": media_type}, ok=(201,)
        )
        return resp.headers.get("Docker-Content-Digest") or sha256_digest(manifest)

    def push_image(self, repo: str, ref: str, image: Image) -> str:
        """Push every blob, then the manifest under ``ref`` (tag or digest)."""
        for blob in image.blobs():
            self.push_blob(repo, blob)
        return self.push_manifest(repo, ref, image.manifest, image.media_type)

    def push_index(self, repo: str, ref: str, index: Index) -> str:
        """Push every child manifest by digest, then the index under ``ref``."""
        for child in index.children():
            self.push_image(repo, child.manifest_digest, child)
        return self.push_manifest(repo, ref, index.manifest, index.media_type)

    def close(self) -> None:
        """Close pooled connections."""
        self._http.clear()

