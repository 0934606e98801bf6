"""tank.config: tank's config.toml and containers' registries.conf, where they are found, what
they say, and what each image's endpoints become."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from support.isolated import IsolatedEnv, isolated_fixture  # noqa: F401 (the fixture)
from tank._pull import pull
from tank.config import (
    Config,
    Endpoint,
    Mirror,
    RegistryRule,
    Timeouts,
    config_path,
    load,
    registries_conf_path,
)
from tank.errors import ConfigError
from tank.reference import parse as parse_reference
from tank.testing.registry import LocalRegistry
from tank.testing.seed import Seeded

FULL = """
platform = "linux/aarch64"
jobs = 8
ca-file = "certs/company.pem"
insecure-registries = ["registry.lan:5000"]

[timeouts]
connect = 5
read = 30.5
speed-limit = 2048
speed-time = 20

[mirrors]
"docker.io" = ["mirror.gcr.io", { location = "registry.lan:5000/hub", insecure = true }]
"ghcr.io/org" = { location = "cache.lan/ghcr", pull-from-mirror = "digest-only" }
"""


def test_no_files_means_an_empty_configuration(isolated: IsolatedEnv) -> None:
    assert load() == Config()
    assert config_path() == isolated.config_file
    assert registries_conf_path() == isolated.registries_conf  # never the host's file


def test_the_whole_schema(isolated: IsolatedEnv) -> None:
    path = isolated.write_config(FULL)
    cfg = load()
    assert cfg.files == (str(path),)
    assert cfg.platform == "linux/arm64/v8"  # normalised as --platform is
    assert cfg.jobs == 8
    assert cfg.ca_file == str(path.parent / "certs/company.pem")  # relative to the file
    assert cfg.insecure_registries == ("registry.lan:5000",)
    assert cfg.timeouts == Timeouts(connect=5, read=30.5, speed_limit=2048, speed_time=20)
    assert cfg.mirrors == (
        RegistryRule("docker.io", mirrors=(
            Mirror("mirror.gcr.io"), Mirror("registry.lan:5000/hub", insecure=True),
        ), source=str(path)),
        RegistryRule("ghcr.io/org", mirrors=(
            Mirror("cache.lan/ghcr", pull_from_mirror="digest-only"),
        ), source=str(path)),
    )
    assert cfg.insecure() == {"registry.lan:5000"}


def test_tank_config_variable_and_explicit_paths(isolated: IsolatedEnv, tmp_path: Path) -> None:
    isolated.write_config("jobs = 2\n")
    other = tmp_path / "other.toml"
    other.write_text("jobs = 3\n")
    isolated.setenv("TANK_CONFIG", str(other))
    assert load().jobs == 3
    assert load(isolated.config_file).jobs == 2
    isolated.setenv("TANK_CONFIG", str(tmp_path / "missing.toml"))
    with pytest.raises(ConfigError, match=r"missing\.toml does not exist"):
        load()
    with pytest.raises(ConfigError, match=r"nope\.toml does not exist"):
        load(tmp_path / "nope.toml")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("jobs = 0", "jobs = 0: expected a whole number from 1 to 64"),
        ("jobs = true", "jobs = True: expected a whole number"),
        ('jobs = "4"', "jobs = '4': expected a whole number"),
        ('platform = "linux"', "platform = 'linux': a platform is os/arch"),
        ("speed-limit = 1", "unknown key 'speed-limit'"),
        ("[timeouts]\nspeed_limit = 1", r"\[timeouts\]: unknown key 'speed_limit'"),
        ("[timeouts]\nread = -1", "timeouts.read = -1: expected a number"),
        ('[timeouts]\nread = "soon"', "timeouts.read = 'soon'"),
        ('insecure-registries = "a:1"', "insecure-registries = 'a:1': expected a list"),
        ('[mirrors]\n"docker.io" = [1]', r"mirrors.'docker.io'\[0\] = 1: expected a location"),
        ('[mirrors]\n"docker.io" = ["https://m.io"]', "expected host\\[:port\\]\\[/path\\]"),
        ('[mirrors]\n"docker.io" = [{ location = "m.io", pull-from-mirror = "some" }]',
         "pull-from-mirror = 'some': expected one of all, digest-only, tag-only"),
        ('[mirrors]\n"docker.io" = [{ location = "m.io", insecur = true }]',
         "unknown key 'insecur'"),
        ("jobs = [", "not valid TOML"),
        ("layer-connections = 0", "layer-connections = 0: expected a whole number from 1 to 16"),
        ("layer-connections = 17", "layer-connections = 17: expected a whole number"),
        ("max-connections = 0", "max-connections = 0: expected a whole number from 1 to 256"),
        ('layer-chunk-threshold = "big"', "layer-chunk-threshold = 'big': expected a size"),
        ('layer-chunk-threshold = "1k"', "layer-chunk-threshold = '1k': expected at least 64KiB"),
        ("layer-chunk-threshold = -5", "expected a size of at least 0 bytes"),
        ('layer-fast-rate = "fast"', "layer-fast-rate = 'fast': expected a size"),
    ],
)
def test_mistakes_are_errors_naming_file_and_key(
    text: str, message: str, isolated: IsolatedEnv
) -> None:
    path = isolated.write_config(text + "\n")
    with pytest.raises(ConfigError, match=message) as info:
        load()
    assert str(path) in str(info.value)


def test_the_keys_of_large_blobs(isolated: IsolatedEnv) -> None:
    isolated.write_config(
        'layer-connections = 8\nlayer-chunk-threshold = "128MiB"\nmax-connections = 32\n'
        'layer-fast-rate = "100MB"\n'
    )
    config = load()
    assert (config.layer_connections, config.layer_chunk_threshold, config.max_connections,
            config.layer_fast_rate) == (8, 128 * 2**20, 32, 100_000_000)
    for text, size in (("1000000", 1_000_000), ('"64MB"', 64_000_000), ('"64 MiB"', 64 * 2**20),
                       ('"1GiB"', 2**30), ('"2g"', 2_000_000_000), ('"512KiB"', 512 * 1024)):
        isolated.write_config(f"layer-chunk-threshold = {text}\n")
        assert load().layer_chunk_threshold == size, text


def test_the_cli_exits_2_on_a_bad_config(isolated: IsolatedEnv, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("jobs = 100\n")
    done = isolated.tank("pull", "--config", str(bad), "example.test/a:b")
    assert done.returncode == 2
    assert f"{bad}: jobs = 100" in done.stderr
    done = isolated.tank("pull", "--config", str(tmp_path / "missing.toml"), "example.test/a:b")
    assert done.returncode == 2
    assert "does not exist" in done.stderr
    isolated.setenv("TANK_READ_TIMEOUT", "later")
    done = isolated.tank("pull", "example.test/a:b")
    assert done.returncode == 2
    assert "$TANK_READ_TIMEOUT = 'later'" in done.stderr


# -- registries.conf ----------------------------------------------------------------------------

REGISTRIES_CONF = """
unqualified-search-registries = ["quay.io", "docker.io"]   # ignored on purpose

[[registry]]
prefix = "docker.io"
location = "docker.io"
[[registry.mirror]]
location = "hub-mirror.lan"
[[registry.mirror]]
location = "insecure-mirror.lan:5000/hub"
insecure = true

[[registry]]
prefix = "example.com/team"
location = "internal.lan:5000/team"
mirror-by-digest-only = true
[[registry.mirror]]
location = "team-mirror.lan"

[[registry]]
location = "old.example.com"
blocked = true

[[registry]]
prefix = "*.corp.example"
insecure = true
[[registry.mirror]]
location = "corp-cache.lan"

[registries.insecure]
registries = ["v1-insecure.lan"]
[registries.block]
registries = ["v1-blocked.lan"]

[aliases]
"sample" = "quay.io/foo/sample"
"""


def test_registries_conf_entries(isolated: IsolatedEnv) -> None:
    isolated.registries_conf.write_text(REGISTRIES_CONF)
    cfg = load()
    assert cfg.files == (str(isolated.registries_conf),)

    def endpoints(ref: str) -> list[tuple[str, str, bool, bool]]:
        return [(e.registry, e.repository, e.mirror, e.insecure)
                for e in cfg.endpoints(parse_reference(ref))]

    assert endpoints("alpine") == [  # a short name is Docker Hub, whatever the search list
        ("hub-mirror.lan", "library/alpine", True, False),
        ("insecure-mirror.lan:5000", "hub/library/alpine", True, True),
        ("registry-1.docker.io", "library/alpine", False, False),
    ]
    assert endpoints("example.com/team/app:1") == [  # mirror-by-digest-only
        ("internal.lan:5000", "team/app", False, False),
    ]
    digest = "sha256:" + "a" * 64
    assert endpoints(f"example.com/team/app@{digest}") == [
        ("team-mirror.lan", "app", True, False),  # the location replaces the prefix
        ("internal.lan:5000", "team/app", False, False),
    ]
    assert endpoints("example.com/other/app") == [("example.com", "other/app", False, False)]
    assert endpoints("git.corp.example:8443/x/y") == [
        ("corp-cache.lan", "x/y", True, False),
        ("git.corp.example:8443", "x/y", False, True),  # the wildcard entry is insecure
    ]
    assert "v1-insecure.lan" in cfg.insecure()
    assert "insecure-mirror.lan:5000" not in cfg.insecure()  # only its /hub entry is insecure
    for blocked in ("old.example.com/a/b", "v1-blocked.lan/c"):
        with pytest.raises(ConfigError, match=r"is blocked by .*registries\.conf"):
            cfg.endpoints(parse_reference(blocked))


def test_registries_conf_drop_ins_replace_entries_by_prefix(isolated: IsolatedEnv) -> None:
    isolated.registries_conf.write_text(
        '[[registry]]\nlocation = "a.lan"\nblocked = true\n'
        '[[registry]]\nlocation = "b.lan"\n[[registry.mirror]]\nlocation = "b-mirror.lan"\n'
    )
    drop_ins = Path(f"{isolated.registries_conf}.d")
    drop_ins.mkdir()
    (drop_ins / "10-unblock.conf").write_text('[[registry]]\nlocation = "a.lan"\n')
    (drop_ins / "README").write_text("not a .conf: ignored")
    cfg = load()
    assert cfg.files == (str(isolated.registries_conf), str(drop_ins / "10-unblock.conf"))
    assert cfg.endpoints(parse_reference("a.lan/x"))[-1] == Endpoint("a.lan", "x")
    assert cfg.endpoints(parse_reference("b.lan/x"))[0] == Endpoint(
        "b-mirror.lan", "x", mirror=True
    )


def test_where_registries_conf_is_found(
    isolated: IsolatedEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CONTAINERS_REGISTRIES_CONF")
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    in_home = home / ".config" / "containers" / "registries.conf"
    in_xdg = isolated.config_home / "containers" / "registries.conf"
    for path in (in_home, in_xdg):
        path.parent.mkdir(parents=True)
        path.write_text(f'[[registry]]\nlocation = "{path.parent.parent.name}.lan"\n')
    assert registries_conf_path() == in_xdg
    in_xdg.unlink()
    assert registries_conf_path() == in_home
    assert load().registries[0].prefix == ".config.lan"
    monkeypatch.setenv("CONTAINERS_REGISTRIES_CONF", str(tmp_path / "given.conf"))
    assert registries_conf_path() == tmp_path / "given.conf"
    assert load().registries == ()  # named but absent: nothing
    assert load(registries_conf=False).files == ()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[registry]]\nblocked = true", "neither prefix nor location"),
        ('[[registry]]\nlocation = "a.lan"\ninsecure = "yes"', "insecure = 'yes'"),
        ("registry = 1", "expected an array of \\[\\[registry\\]\\] tables"),
        ("[[registry]", "not valid TOML"),
    ],
)
def test_a_broken_registries_conf_is_an_error(
    text: str, message: str, isolated: IsolatedEnv
) -> None:
    isolated.registries_conf.write_text(text + "\n")
    with pytest.raises(ConfigError, match=message):
        load()


# -- endpoints ---------------------------------------------------------------------------------


def test_docker_hub_spellings_and_the_order_of_mirrors(isolated: IsolatedEnv) -> None:
    isolated.write_config(
        '[mirrors]\n"index.docker.io" = ["mirror.gcr.io", "docker.io/mirrored"]\n'
        '"docker.io/library" = ["library-cache.lan/lib"]\n'
    )
    isolated.registries_conf.write_text(
        '[[registry]]\nlocation = "docker.io"\n'
        '[[registry.mirror]]\nlocation = "mirror.gcr.io"\n'  # the same: listed once
        '[[registry.mirror]]\nlocation = "podman-cache.lan"\n'
    )
    cfg = load()
    assert [str(e) for e in cfg.endpoints(parse_reference("alpine"))] == [
        "library-cache.lan/lib/alpine",  # tank's longest prefix…
        "mirror.gcr.io/library/alpine",  # …then registries.conf's mirrors
        "podman-cache.lan/library/alpine",
        "registry-1.docker.io/library/alpine",  # the registry itself, always last
    ]
    assert [str(e) for e in cfg.endpoints(parse_reference("bitnami/redis"))] == [
        "mirror.gcr.io/bitnami/redis",
        "registry-1.docker.io/mirrored/bitnami/redis",
        "podman-cache.lan/bitnami/redis",
        "registry-1.docker.io/bitnami/redis",
    ]
    assert [str(e) for e in cfg.endpoints(parse_reference("quay.io/a/b"))] == ["quay.io/a/b"]


def test_transport_settings_and_their_precedence(isolated: IsolatedEnv) -> None:
    isolated.write_config(FULL)
    cfg = load()
    t = cfg.transport()
    assert (t.connect_timeout, t.read_timeout) == (5, 30.5)
    assert t.speed_limit is not None
    assert (t.speed_limit.bytes_per_second, t.speed_limit.seconds) == (2048, 20)
    assert t.is_insecure("registry.lan:5000")
    assert not t.is_insecure("registry.lan")
    assert t.ca_file == cfg.ca_file
    isolated.setenv("TANK_READ_TIMEOUT", "7")
    isolated.setenv("TANK_SPEED_LIMIT", "0")  # 0 turns the low-speed check off
    t = cfg.transport()
    assert (t.read_timeout, t.connect_timeout, t.speed_limit) == (7, 5, None)
    assert cfg.transport(read_timeout=2).read_timeout == 2  # arguments beat the environment
    with_options = cfg.with_options(ca_file="/x.pem", insecure_registries=["other:1"])
    assert with_options.ca_file == "/x.pem"
    assert with_options.transport().is_insecure("other:1")


# -- defaults for the pull -----------------------------------------------------------------------


def test_default_platform_and_jobs(
    isolated: IsolatedEnv, registry: LocalRegistry, seeded: Seeded, tmp_path: Path
) -> None:
    image = pull(f"{registry.host}/{seeded.repo}:multi", cache=tmp_path / "a",
                      config=Config(platform="linux/arm/v7", jobs=1))
    assert str(image.platform) == "linux/arm/v7"
    assert image.digest == seeded.multi.images[2].manifest_digest

    isolated.write_config('platform = "linux/arm64"\njobs = 2\n')
    done = isolated.tank("pull", f"{registry.host}/{seeded.repo}:multi", "--json",
                         "--cache", str(tmp_path / "b"))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["platform"] == "linux/arm64/v8"
    done = isolated.tank("pull", f"{registry.host}/{seeded.repo}:multi", "--json",
                         "--platform", "linux/amd64", "--cache", str(tmp_path / "b"))
    assert json.loads(done.stdout)["platform"] == "linux/amd64"  # the option wins
