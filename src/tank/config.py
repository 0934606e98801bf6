"""tank's configuration: its own ``config.toml``, and containers' ``registries.conf``.

Two files, both optional:

- **tank's** (:func:`config_path`): ``$TANK_CONFIG``, else ``$XDG_CONFIG_HOME/tank/config.toml``
  (``~/.config/tank/config.toml``)::

      platform = "linux/arm64"                 # default for --platform
      jobs = 8                                 # default for -j/--jobs
      layer-connections = 4                    # per large blob; default for --layer-connections
      layer-chunk-threshold = "64MiB"          # blobs this large come as ranges (bytes or units)
      max-connections = 16                     # connections one pull holds at once, at most
      layer-fast-rate = "200MB"                # a first range this fast (per s) is not split
      ca-file = "/etc/ssl/company-ca.pem"      # trusted for every registry, like --ca-file
      insecure-registries = ["registry.lan:5000"]   # plain HTTP or unverified TLS
      policy = "/etc/tank/policy.json"         # the signature policy (containers' format)

      [timeouts]                               # seconds; each also an environment variable
      connect = 30                             # TANK_CONNECT_TIMEOUT
      read = 60                                # TANK_READ_TIMEOUT
      speed-limit = 1024                       # TANK_SPEED_LIMIT (bytes/s; 0 = off) …
      speed-time = 60                          # TANK_SPEED_TIME  … sustained this long

      [mirrors]                                # tried in order, then the registry itself
      "docker.io" = ["mirror.gcr.io", { location = "registry.lan:5000/hub", insecure = true }]

  A key of ``[mirrors]`` is a registry or a repository prefix (``docker.io``,
  ``docker.io/library``, ``ghcr.io/org``); a mirror's ``location`` replaces that prefix in the
  image's name. Unknown keys and wrong types are errors (:class:`~tank.errors.ConfigError`), so
  a typo never goes unnoticed. Relative paths are relative to the file.

- **containers'** (:func:`registries_conf_path`): ``$CONTAINERS_REGISTRIES_CONF``, else
  ``$XDG_CONFIG_HOME/containers/registries.conf``, else ``~/.config/containers/registries.conf``,
  else ``/etc/containers/registries.conf``; then the ``*.conf`` drop-ins of the folder of the
  same name plus ``.d``, in name order. Read are the ``[[registry]]`` tables (``prefix``,
  ``location``, ``insecure``, ``blocked``, ``mirror-by-digest-only``, and ``[[registry.mirror]]``
  with ``location``, ``insecure`` and ``pull-from-mirror``) and the v1 lists
  ``[registries.insecure]`` / ``[registries.block]``. Everything else in it is ignored, on purpose
  ``unqualified-search-registries``: a short name always means Docker Hub.

For one image (:meth:`Config.endpoints`): the longest matching ``registries.conf`` prefix may
rewrite its location or block it; the mirrors are tank's own first, then ``registries.conf``'s;
the registry itself comes last. Environment variables beat the file's timeouts; explicit
arguments and command-line options beat both.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

from tank.errors import ConfigError, InvalidReference
from tank.reference import DOCKER_HUB, DOCKER_HUB_API, DOCKER_HUB_NAMES

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from tank.reference import Reference
    from tank.transport import Transport

CONFIG_ENV: Final = "TANK_CONFIG"
REGISTRIES_CONF_ENV: Final = "CONTAINERS_REGISTRIES_CONF"
_PULL_FROM_MIRROR: Final = ("all", "digest-only", "tag-only")

PullFromMirror = Literal["all", "digest-only", "tag-only"]


@dataclass(frozen=True)
class Mirror:
    """One mirror of a registry (or of a repository prefix).

    :ivar location: ``host[:port][/namespace]``; it replaces the prefix in the image's name.
    :ivar insecure: the mirror may use plain HTTP or unverified TLS.
    :ivar pull_from_mirror: ``all``, or only ``digest-only`` / ``tag-only`` references.
    """

    location: str
    insecure: bool = False
    pull_from_mirror: PullFromMirror = "all"


@dataclass(frozen=True)
class RegistryRule:
    """What one configuration entry says about the images under ``prefix``.

    :ivar prefix: ``host[:port][/path]``, or ``*.domain`` for every host under that domain.
    :ivar location: where those images really are (``registries.conf``'s ``location``), or
        ``None`` to keep the prefix.
    :ivar source: the file it came from.
    """

    prefix: str
    location: str | None = None
    mirrors: tuple[Mirror, ...] = ()
    insecure: bool = False
    blocked: bool = False
    source: str = ""

    def match(self, name: str) -> int:
        """How many characters of the image ``name`` (``domain/repo``) this rule covers; 0: none."""
        if self.prefix.startswith("*."):  # every host under the domain, whatever its port
            host = name.split("/", 1)[0]
            hostname = host if host.endswith("]") else host.rsplit(":", 1)[0]
            return len(host) if hostname.endswith(self.prefix[1:]) else 0
        if name == self.prefix or name.startswith(self.prefix + "/"):
            return len(self.prefix)
        return 0


@dataclass(frozen=True)
class Endpoint:
    """Where one image can be pulled from: a mirror, or the registry itself.

    :ivar registry: the API host (``registry-1.docker.io`` for Docker Hub).
    :ivar repository: the repository there.
    :ivar mirror: ``False`` for the image's own registry.
    """

    registry: str
    repository: str
    mirror: bool = False
    insecure: bool = False

    def __str__(self) -> str:
        return f"{self.registry}/{self.repository}"


@dataclass(frozen=True)
class Timeouts:
    """The ``[timeouts]`` table; ``None`` leaves the value to the environment or the default."""

    connect: float | None = None
    read: float | None = None
    speed_limit: float | None = None
    speed_time: float | None = None


@dataclass(frozen=True)
class Config:
    """Everything the configuration files say (empty: :class:`Config()` means no files).

    :ivar platform: the default platform (``os/arch[/variant]``).
    :ivar jobs: the default number of parallel downloads.
    :ivar layer_connections: connections per large blob (``layer-connections``).
    :ivar layer_chunk_threshold: blobs of at least this many bytes are fetched as ranges over
        ``layer_connections`` connections (``layer-chunk-threshold``).
    :ivar max_connections: the connections one pull holds at once, at most
        (``max-connections``).
    :ivar layer_fast_rate: bytes per second: a large blob whose first range arrives at least
        this fast stays on one connection (``layer-fast-rate``; ``0``: always split).
    :ivar ca_file: a PEM bundle trusted for every registry.
    :ivar insecure_registries: ``host[:port]`` names allowed plain HTTP or unverified TLS.
    :ivar mirrors: tank's ``[mirrors]``, one rule per key.
    :ivar registries: ``registries.conf``'s ``[[registry]]`` entries (and v1 lists).
    :ivar files: the files read, in order.
    :ivar policy: the signature policy file (``policy.json``) named by the config file; ``None``
        leaves it to containers' locations (:func:`tank.policy.policy_path`).
    """

    platform: str | None = None
    jobs: int | None = None
    ca_file: str | None = None
    layer_connections: int | None = None
    layer_chunk_threshold: int | None = None
    max_connections: int | None = None
    layer_fast_rate: int | None = None
    insecure_registries: tuple[str, ...] = ()
    timeouts: Timeouts = field(default_factory=Timeouts)
    mirrors: tuple[RegistryRule, ...] = ()
    registries: tuple[RegistryRule, ...] = ()
    files: tuple[str, ...] = ()
    policy: str | None = None

    def with_options(
        self, *, ca_file: str | os.PathLike[str] | None = None,
        insecure_registries: Iterable[str] = (),
    ) -> Config:
        """A copy with command-line options applied: ``ca_file`` replaces, insecure adds."""
        return dataclasses.replace(
            self,
            ca_file=os.fspath(ca_file) if ca_file is not None else self.ca_file,
            insecure_registries=(*self.insecure_registries, *insecure_registries),
        )

    def insecure(self) -> frozenset[str]:
        """Every ``host[:port]`` insecure as a whole: the ``insecure-registries`` list, and
        insecure entries and mirrors that name a host without a path. An entry with a path makes
        only the images under it insecure (:meth:`endpoints` decides per entry)."""
        from tank.transport import normalize_registry

        names = {normalize_registry(n) for n in self.insecure_registries}
        for rule in (*self.mirrors, *self.registries):
            where = rule.location or rule.prefix
            if rule.insecure and not rule.prefix.startswith("*.") and "/" not in where:
                names.add(_host(where))
            names.update(_host(m.location) for m in rule.mirrors
                         if m.insecure and "/" not in m.location)
        return frozenset(names)

    def _best(self, rules: tuple[RegistryRule, ...], name: str) -> RegistryRule | None:
        best, length = None, 0
        for rule in rules:
            n = rule.match(name)
            if n > length:
                best, length = rule, n
        return best

    def check_allowed(self, registry: str, repository: str) -> None:
        """Raise :class:`~tank.errors.ConfigError` when ``registries.conf`` blocks
        ``registry/repository`` (whatever its spelling: see :func:`canonical_name`)."""
        name = canonical_name(f"{registry}/{repository}", image=True)
        rule = self._best(self.registries, name)
        if rule is not None and rule.blocked:
            raise ConfigError(
                f"{name} is blocked by {rule.source or 'the configuration'} "
                f"(registry prefix {rule.prefix!r} has blocked = true); nothing was sent"
            )

    def endpoints(self, ref: Reference) -> list[Endpoint]:
        """Where to read ``ref`` from, in order: its mirrors, then its registry (always last).

        Every command goes through this (pull, copy, inspect, digest, tags, blob). Mirrors are
        used as their ``pull-from-mirror`` says (``digest-only`` ones for references by digest
        only, as containers/image does); ``insecure`` is decided per matched entry, so an
        insecure namespace never makes the rest of its host insecure.

        Raises :class:`~tank.errors.ConfigError` when ``registries.conf`` blocks the image.
        """
        self.check_allowed(ref.domain, ref.repository)
        name = canonical_name(f"{ref.domain}/{ref.repository}", image=True)
        rule = self._best(self.registries, name)
        own = self._best(self.mirrors, name)
        hosts = self.insecure()
        out: list[Endpoint] = []
        for r in (own, rule):
            if r is None:
                continue
            rest = name[r.match(name):]
            for m in r.mirrors:
                if m.pull_from_mirror == "digest-only" and ref.digest is None:
                    continue
                if m.pull_from_mirror == "tag-only" and ref.digest is not None:
                    continue
                out.append(_endpoint(m.location + rest, mirror=True, insecure=m.insecure,
                                     hosts=hosts))
        upstream = name
        if rule is not None and rule.location and not rule.prefix.startswith("*."):
            upstream = rule.location + name[rule.match(name):]
        last = _endpoint(upstream, mirror=False, insecure=rule is not None and rule.insecure,
                         hosts=hosts)
        seen: set[tuple[str, str]] = {(last.registry, last.repository)}
        unique = []
        for e in out:
            if (e.registry, e.repository) not in seen:
                seen.add((e.registry, e.repository))
                unique.append(e)
        return [*unique, last]

    def transport(
        self,
        *,
        pool_size: int = 8,
        proxies: Mapping[str, str] | None = None,
        **overrides: Any,
    ) -> Transport:
        """A :class:`~tank.transport.Transport` with this configuration's trust and timeouts.

        Each timeout comes from ``overrides`` (the keywords of :class:`Transport`), else its
        environment variable, else this file's ``[timeouts]``, else the default.
        """
        from tank.transport import Transport, timeout_from_env

        t = self.timeouts
        kwargs: dict[str, Any] = {}
        for keyword, value in (
            ("connect_timeout", t.connect), ("read_timeout", t.read),
            ("speed_limit", t.speed_limit), ("speed_time", t.speed_time),
        ):
            env = timeout_from_env(keyword)
            kwargs[keyword] = env if env is not None else value
        kwargs.update(overrides)
        insecure = set(self.insecure()) | set(kwargs.pop("insecure_registries", ()))
        return Transport(
            ca_file=kwargs.pop("ca_file", None) or self.ca_file,
            insecure_registries=insecure, pool_size=pool_size, proxies=proxies, **kwargs,
        )


def _host(location: str) -> str:
    """The ``host[:port]`` of a ``host[:port][/path]`` location (Docker Hub: its API host)."""
    from tank.transport import normalize_registry

    host = normalize_registry(location.split("/", 1)[0])
    return DOCKER_HUB_API if host in DOCKER_HUB_NAMES else host


def _endpoint(name: str, *, mirror: bool, insecure: bool, hosts: frozenset[str]) -> Endpoint:
    """An :class:`Endpoint` from ``host[:port]/repository``; insecure when its entry says so,
    or its host is insecure as a whole (``hosts``)."""
    domain, _, repository = name.partition("/")
    if not repository:
        raise ConfigError(f"{name!r} names no repository (a location is host[:port][/path])")
    registry = _host(domain)
    if registry == DOCKER_HUB_API and "/" not in repository:
        repository = f"library/{repository}"
    return Endpoint(registry, repository, mirror=mirror, insecure=insecure or registry in hosts)


# -- locating the files -----------------------------------------------------------------------


def _config_home() -> Path:
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")


def config_path() -> Path:
    """tank's config file: ``$TANK_CONFIG``, else ``$XDG_CONFIG_HOME/tank/config.toml``."""
    explicit = os.environ.get(CONFIG_ENV)
    if explicit:
        return Path(explicit).expanduser()
    return _config_home() / "tank" / "config.toml"


def registries_conf_path() -> Path | None:
    """containers' ``registries.conf`` to read (see the module's documentation), or ``None``."""
    explicit = os.environ.get(REGISTRIES_CONF_ENV)
    if explicit:
        return Path(explicit).expanduser()
    candidates = []
    if os.environ.get("XDG_CONFIG_HOME"):
        candidates.append(Path(os.environ["XDG_CONFIG_HOME"], "containers", "registries.conf"))
    candidates.append(Path.home() / ".config" / "containers" / "registries.conf")
    candidates.append(Path("/etc/containers/registries.conf"))
    for path in candidates:
        if path.is_file():
            return path
    return None


def _read_toml(path: Path) -> dict[str, Any] | None:
    """The TOML document at ``path``; ``None`` when there is no such file."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from exc
    try:
        return tomllib.loads(data.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


# -- tank's config.toml -----------------------------------------------------------------------


def _want(value: Any, kind: type | tuple[type, ...], where: str, expected: str) -> Any:
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise ConfigError(f"{where} = {value!r}: expected {expected}")
    return value


def _no_unknown(table: Mapping[str, Any], known: Iterable[str], where: str) -> None:
    allowed = set(known)
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(allowed))})"
        )


def _mirror(value: Any, where: str) -> Mirror:
    if isinstance(value, str):
        value = {"location": value}
    _want(value, dict, where, "a location string or a table with location")
    _no_unknown(value, ("location", "insecure", "pull-from-mirror"), where)
    location = _want(value.get("location"), str, f"{where}.location", "host[:port][/path]")
    if not location.strip() or "://" in location:
        raise ConfigError(f"{where}.location = {location!r}: expected host[:port][/path]")
    insecure = _want(value.get("insecure", False), bool, f"{where}.insecure", "true or false")
    mode = value.get("pull-from-mirror", "all")
    if mode not in _PULL_FROM_MIRROR:
        raise ConfigError(
            f"{where}.pull-from-mirror = {mode!r}: expected one of {', '.join(_PULL_FROM_MIRROR)}"
        )
    return Mirror(location.strip().rstrip("/"), insecure, mode)


def canonical_name(text: str, *, image: bool = False) -> str:
    """``host[:port][/path]`` as rules and images are compared: the host lower-cased, HTTPS's
    default port dropped (``quay.io:443`` is ``quay.io``), every spelling of Docker Hub
    (``docker.io``, ``index.docker.io``, ``registry-1.docker.io``, with or without ``:443``) made
    ``docker.io``, and (for an ``image`` name) a one-part Docker Hub repository given
    ``library/``. Both a rule's prefix and the name it is matched against go through this, so
    no spelling escapes a rule."""
    text = text.strip().rstrip("/")
    host, sep, rest = text.partition("/")
    host = host.lower()
    if host.endswith(":443") and not host.startswith("*."):
        host = host[: -len(":443")]
    if host in DOCKER_HUB_NAMES:
        host = DOCKER_HUB
        if image and rest and "/" not in rest:
            rest = f"library/{rest}"
    return host + sep + rest


_prefix = canonical_name


def _parse_tank(doc: dict[str, Any], path: Path) -> dict[str, Any]:
    """tank's config document as :class:`Config` fields."""
    where = str(path)
    _no_unknown(
        doc, ("platform", "jobs", "ca-file", "insecure-registries", "timeouts", "mirrors",
              "policy", *_TRANSFER_KEYS), where,
    )
    out: dict[str, Any] = {}
    if "platform" in doc:
        from tank.platform import Platform

        text = _want(doc["platform"], str, f"{where}: platform", "os/arch[/variant]")
        try:
            out["platform"] = str(Platform.parse(text))
        except InvalidReference as exc:
            raise ConfigError(f"{where}: platform = {text!r}: {exc.reason}") from None
    if "jobs" in doc:
        jobs = _want(doc["jobs"], int, f"{where}: jobs", "a whole number from 1 to 64")
        if not 1 <= jobs <= 64:
            raise ConfigError(f"{where}: jobs = {jobs}: expected a whole number from 1 to 64")
        out["jobs"] = jobs
    out.update(_parse_transfer(doc, where))
    if "ca-file" in doc:
        ca = _want(doc["ca-file"], str, f"{where}: ca-file", "a path")
        out["ca_file"] = str(path.parent / Path(ca).expanduser())
    if "policy" in doc:
        policy = _want(doc["policy"], str, f"{where}: policy", "a path")
        out["policy"] = str(path.parent / Path(policy).expanduser())
    if "insecure-registries" in doc:
        names = _want(doc["insecure-registries"], list, f"{where}: insecure-registries",
                      "a list of host[:port]")
        for n in names:
            _want(n, str, f"{where}: insecure-registries item", "host[:port]")
        out["insecure_registries"] = tuple(names)
    if "timeouts" in doc:
        from tank.transport import check_timeout

        table = _want(doc["timeouts"], dict, f"{where}: timeouts", "a table")
        keys = {"connect": "connect", "read": "read", "speed-limit": "speed_limit",
                "speed-time": "speed_time"}
        _no_unknown(table, keys, f"{where}: [timeouts]")
        out["timeouts"] = Timeouts(**{
            keys[k]: check_timeout(v, where=f"{where}: timeouts.{k}") for k, v in table.items()
        })
    if "mirrors" in doc:
        table = _want(doc["mirrors"], dict, f"{where}: mirrors", "a table")
        rules = []
        for key, value in table.items():
            item = f"{where}: mirrors.{key!r}"
            entries = value if isinstance(value, list) else [value]
            mirrors = tuple(_mirror(v, f"{item}[{i}]") for i, v in enumerate(entries))
            rules.append(RegistryRule(_prefix(key), mirrors=mirrors, source=where))
        out["mirrors"] = tuple(rules)
    return out


_TRANSFER_KEYS: Final = (
    "layer-connections", "layer-chunk-threshold", "max-connections", "layer-fast-rate",
)
_UNITS: Final = {
    "": 1, "b": 1, "k": 1000, "kb": 1000, "kib": 1024, "m": 1000**2, "mb": 1000**2,
    "mib": 1024**2, "g": 1000**3, "gb": 1000**3, "gib": 1024**3,
}


def parse_size(value: Any, where: str) -> int:
    """A byte count: an int, or a string such as ``"64MiB"``, ``"64MB"``, ``"1 GiB"``."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise ConfigError(f"{where} = {value!r}: expected a size of at least 0 bytes")
        return value
    if isinstance(value, str):
        text = value.strip().lower().replace(" ", "")
        digits = text.rstrip("kmgib")
        unit = text[len(digits):]
        if digits.isdigit() and unit in _UNITS:
            return int(digits) * _UNITS[unit]
    raise ConfigError(f"{where} = {value!r}: expected a size (bytes, or such as \"64MiB\")")


def _parse_transfer(doc: Mapping[str, Any], where: str) -> dict[str, Any]:
    """``layer-connections``, ``layer-chunk-threshold``, ``max-connections`` and
    ``layer-fast-rate``."""
    out: dict[str, Any] = {}
    for key, field_name, top in (
        ("layer-connections", "layer_connections", 16),
        ("max-connections", "max_connections", 256),
    ):
        if key in doc:
            n = _want(doc[key], int, f"{where}: {key}", f"a whole number from 1 to {top}")
            if not 1 <= n <= top:
                raise ConfigError(f"{where}: {key} = {n}: expected a whole number from 1 to {top}")
            out[field_name] = n
    if "layer-chunk-threshold" in doc:
        size = parse_size(doc["layer-chunk-threshold"], f"{where}: layer-chunk-threshold")
        if size < 64 * 1024:
            raise ConfigError(
                f"{where}: layer-chunk-threshold = {doc['layer-chunk-threshold']!r}: expected at "
                "least 64KiB"
            )
        out["layer_chunk_threshold"] = size
    if "layer-fast-rate" in doc:
        out["layer_fast_rate"] = parse_size(doc["layer-fast-rate"], f"{where}: layer-fast-rate")
    return out


# -- containers' registries.conf --------------------------------------------------------------


def _parse_registries_conf(doc: dict[str, Any], path: Path) -> list[RegistryRule]:
    """The rules of one registries.conf (v2 ``[[registry]]`` and the v1 lists)."""
    where = str(path)
    rules: list[RegistryRule] = []
    entries = doc.get("registry", [])
    _want(entries, list, f"{where}: registry", "an array of [[registry]] tables")
    for i, entry in enumerate(entries):
        item = f"{where}: [[registry]] #{i + 1}"
        _want(entry, dict, item, "a table")
        location = entry.get("location", "")
        prefix = entry.get("prefix", "") or location
        _want(location, str, f"{item}.location", "a string")
        _want(prefix, str, f"{item}.prefix", "a string")
        if not prefix:
            raise ConfigError(f"{item}: neither prefix nor location is set")
        insecure = _want(entry.get("insecure", False), bool, f"{item}.insecure", "true or false")
        blocked = _want(entry.get("blocked", False), bool, f"{item}.blocked", "true or false")
        by_digest = _want(entry.get("mirror-by-digest-only", False), bool,
                          f"{item}.mirror-by-digest-only", "true or false")
        raw_mirrors = entry.get("mirror", [])
        _want(raw_mirrors, list, f"{item}.mirror", "an array of [[registry.mirror]] tables")
        mirrors = []
        for j, m in enumerate(raw_mirrors):
            _want(m, dict, f"{item}.mirror #{j + 1}", "a table")
            known = {k: m[k] for k in ("location", "insecure", "pull-from-mirror") if k in m}
            mirror = _mirror(known, f"{item}.mirror #{j + 1}")
            if by_digest and "pull-from-mirror" not in m:
                mirror = dataclasses.replace(mirror, pull_from_mirror="digest-only")
            mirrors.append(mirror)
        rules.append(RegistryRule(
            _prefix(prefix), location=_prefix(location) if location else None,
            mirrors=tuple(mirrors), insecure=insecure, blocked=blocked, source=where,
        ))
    v1 = doc.get("registries", {})
    if isinstance(v1, dict):
        for kind in ("insecure", "block"):
            table = v1.get(kind, {})
            names = table.get("registries", []) if isinstance(table, dict) else []
            _want(names, list, f"{where}: registries.{kind}.registries", "a list of hosts")
            for n in names:
                _want(n, str, f"{where}: registries.{kind}.registries item", "a host")
                rules.append(RegistryRule(
                    _prefix(n), insecure=kind == "insecure", blocked=kind == "block",
                    source=where,
                ))
    return rules


def _registries_conf(path: Path) -> tuple[list[RegistryRule], list[str]]:
    """The rules of ``path`` and its ``.d`` drop-ins (a later entry replaces one of the same
    prefix), and the files read."""
    by_prefix: dict[str, RegistryRule] = {}
    files: list[str] = []
    drop_ins = Path(str(path) + ".d")
    extra = sorted(drop_ins.glob("*.conf")) if drop_ins.is_dir() else []
    for p in (path, *extra):
        doc = _read_toml(p)
        if doc is None:
            continue
        files.append(str(p))
        for rule in _parse_registries_conf(doc, p):
            by_prefix[rule.prefix] = rule
    return list(by_prefix.values()), files


def load(
    path: str | os.PathLike[str] | None = None,
    *,
    registries_conf: str | os.PathLike[str] | Literal[False] | None = None,
) -> Config:
    """Read the configuration.

    :param path: tank's config file; by default :func:`config_path`, which may be missing. A
        file named here (or by ``$TANK_CONFIG``) must exist.
    :param registries_conf: containers' file; by default :func:`registries_conf_path`;
        ``False`` reads none.
    :raises ConfigError: a file that cannot be read or parsed, or a key with a wrong value.
    """
    fields: dict[str, Any] = {}
    files: list[str] = []
    explicit = path is not None or bool(os.environ.get(CONFIG_ENV))
    tank_file = Path(path).expanduser() if path is not None else config_path()
    doc = _read_toml(tank_file)
    if doc is None and explicit:
        raise ConfigError(f"the config file {tank_file} does not exist")
    if doc is not None:
        fields.update(_parse_tank(doc, tank_file))
        files.append(str(tank_file))
    if registries_conf is not False:
        conf = Path(registries_conf) if registries_conf is not None else registries_conf_path()
        if conf is not None:
            rules, read = _registries_conf(conf)
            fields["registries"] = tuple(rules)
            files.extend(read)
    return Config(files=tuple(files), **fields)


def _stamp(path: Path | None) -> tuple[str, int] | None:
    if path is None:
        return None
    try:
        return str(path), path.stat().st_mtime_ns
    except OSError:
        return str(path), -1


_configs: dict[tuple[object, ...], Config] = {}
_configs_lock = threading.Lock()


def default_config() -> Config:
    """:func:`load`'s configuration, read again only when a file it reads changed (or the
    variables that find them): what the library uses when a caller passes no ``config=``, so
    ``registries.conf``'s ``blocked`` holds for every entry point."""
    conf = registries_conf_path()
    drop_ins = Path(f"{conf}.d") if conf is not None else None
    key = (
        os.environ.get(CONFIG_ENV), _stamp(config_path()), _stamp(conf), _stamp(drop_ins),
        *(_stamp(p) for p in (sorted(drop_ins.glob("*.conf")) if drop_ins is not None
                                   and drop_ins.is_dir() else [])),
    )
    with _configs_lock:
        found = _configs.get(key)
    if found is None:
        found = load()
        with _configs_lock:
            if len(_configs) > 64:
                _configs.clear()
            _configs[key] = found
    return found


_default: Transport | None = None
_default_lock = threading.Lock()


def default_transport() -> Transport:
    """The process-wide transport used when a caller passes none.

    Made on first use from the configuration files (:func:`load`): their CA file,
    insecure registries and timeouts, under the environment's.
    """
    global _default
    with _default_lock:
        if _default is None:
            _default = load().transport()
        return _default


__all__ = [
    "CONFIG_ENV",
    "REGISTRIES_CONF_ENV",
    "Config",
    "Endpoint",
    "Mirror",
    "RegistryRule",
    "Timeouts",
    "canonical_name",
    "config_path",
    "default_config",
    "default_transport",
    "load",
    "parse_size",
    "registries_conf_path",
]
