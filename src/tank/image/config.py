"""The image config (image-spec ``config.md``): what a runtime needs, parsed strictly.

One parser serves ``tank pull``, ``tank inspect`` and ``tank.unpack``: fields of the wrong type
are errors (:class:`~tank.errors.InvalidImageConfig`) everywhere, never guessed at. Only
``rootfs.diff_ids`` is optional for a caller that does not unpack (``require_rootfs=False``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from tank import _json
from tank.digest import Digest
from tank.errors import InvalidDigest, InvalidImageConfig
from tank.platform import Platform


@dataclass(frozen=True)
class ImageConfig:
    """What a runtime needs from an image's config (image-spec ``config.md``), parsed and checked.

    ``entrypoint`` and ``cmd`` are ``None`` when the image sets none (which differs from an empty
    list); ``env`` holds ``NAME=value`` strings in the image's order; ``user`` and ``working_dir``
    are ``""`` when unset; ``exposed_ports`` are the keys of ``ExposedPorts`` (``"80/tcp"``), in
    the image's order; ``diff_ids`` the layers' uncompressed digests; ``raw`` the whole config
    document as parsed.
    """

    entrypoint: tuple[str, ...] | None
    cmd: tuple[str, ...] | None
    env: tuple[str, ...]
    user: str
    working_dir: str
    exposed_ports: tuple[str, ...]
    labels: Mapping[str, str] = field(hash=False)
    os: str
    architecture: str
    variant: str | None
    diff_ids: tuple[str, ...]
    raw: Mapping[str, Any] = field(repr=False, compare=False, hash=False)
    #: ``created`` (RFC 3339), if any
    created: str | None = None
    #: ``history`` entries (objects), in order
    history: tuple[Mapping[str, Any], ...] = field(default=(), compare=False, hash=False)

    @property
    def platform(self) -> Platform | None:
        """``os``/``architecture``/``variant`` as a :class:`~tank.platform.Platform`."""
        return Platform.from_json(dict(self.raw))

    def created_by(self, layers: int) -> tuple[str | None, ...]:
        """Each layer's ``history[].created_by``, where the history lines up with ``layers``
        (its entries without ``empty_layer`` are exactly that many); else ``None`` each."""
        steps = [h for h in self.history if not h.get("empty_layer")]
        if len(steps) != layers:
            return (None,) * layers
        return tuple(
            str(h["created_by"]) if isinstance(h.get("created_by"), str) else None for h in steps
        )

    @property
    def argv(self) -> tuple[str, ...]:
        """What a runtime runs by default: ``entrypoint`` followed by ``cmd``."""
        return (self.entrypoint or ()) + (self.cmd or ())

    @property
    def env_dict(self) -> dict[str, str]:
        """``env`` as a mapping (a later duplicate wins; an entry without ``=`` maps to ``""``)."""
        out: dict[str, str] = {}
        for item in self.env:
            name, _, value = item.partition("=")
            out[name] = value
        return out

    @classmethod
    def from_json(cls, doc: Mapping[str, Any], *, require_rootfs: bool = True) -> ImageConfig:
        """Parse a config document; :class:`~tank.errors.InvalidImageConfig` if a field is off.

        ``require_rootfs=False`` accepts a config without ``rootfs`` (``diff_ids`` is then
        empty): enough to describe an image, not to unpack it."""
        if not isinstance(doc, Mapping):
            raise InvalidImageConfig(f"an image config is a JSON object, not {_kind(doc)}")
        inner = doc.get("config")
        if inner is None:
            inner = {}
        if not isinstance(inner, Mapping):
            raise InvalidImageConfig(f"image config: 'config' is {_kind(inner)}, not an object")
        rootfs = doc.get("rootfs")
        if rootfs is None and not require_rootfs:
            rootfs = {"diff_ids": []}
        if not isinstance(rootfs, Mapping):
            raise InvalidImageConfig("image config: 'rootfs' is missing or not an object")
        diff_ids = _strings(rootfs.get("diff_ids"), "rootfs.diff_ids")
        if diff_ids is None:
            if require_rootfs:
                raise InvalidImageConfig("image config: 'rootfs.diff_ids' is missing")
            diff_ids = ()
        for diff_id in diff_ids:
            try:
                Digest.parse(diff_id)
            except InvalidDigest as exc:
                raise InvalidImageConfig(f"image config: rootfs.diff_ids: {exc}") from None
        ports = inner.get("ExposedPorts")
        if ports is not None and not isinstance(ports, Mapping):
            raise InvalidImageConfig("image config: 'config.ExposedPorts' is not an object")
        labels = inner.get("Labels")
        if labels is not None and (
            not isinstance(labels, Mapping)
            or not all(isinstance(v, str) for v in labels.values())
        ):
            raise InvalidImageConfig("image config: 'config.Labels' is not an object of strings")
        return cls(
            entrypoint=_strings(inner.get("Entrypoint"), "config.Entrypoint"),
            cmd=_strings(inner.get("Cmd"), "config.Cmd"),
            env=_strings(inner.get("Env"), "config.Env") or (),
            user=_string(inner.get("User"), "config.User"),
            working_dir=_string(inner.get("WorkingDir"), "config.WorkingDir"),
            exposed_ports=tuple(ports or ()),
            labels=MappingProxyType(dict(labels or {})),
            os=_string(doc.get("os"), "os"),
            architecture=_string(doc.get("architecture"), "architecture"),
            variant=_string(doc.get("variant"), "variant") or None,
            diff_ids=diff_ids,
            raw=MappingProxyType(dict(doc)),
            created=_string(doc.get("created"), "created") or None,
            history=_history(doc.get("history")),
        )


def parse_config(raw: bytes, *, require_rootfs: bool = True) -> ImageConfig:
    """Parse config bytes (already verified against their digest) strictly: JSON as
    :func:`tank._json.loads` reads it, then :meth:`ImageConfig.from_json`."""
    doc = _json.loads_object(raw, what="the image config", error=InvalidImageConfig)
    return ImageConfig.from_json(doc, require_rootfs=require_rootfs)


def _history(value: object) -> tuple[Mapping[str, Any], ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise InvalidImageConfig("image config: 'history' is not a list of objects")
    return tuple(MappingProxyType(v) for v in value)


def _kind(value: object) -> str:
    return "null" if value is None else type(value).__name__


def _strings(value: object, key: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidImageConfig(f"image config: {key!r} is not a list of strings")
    return tuple(value)


def _string(value: object, key: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidImageConfig(f"image config: {key!r} is {_kind(value)}, not a string")
    return value


__all__ = ["ImageConfig", "parse_config"]
