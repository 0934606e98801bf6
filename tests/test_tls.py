"""TLS against the real registry with a CA the tests make: certs.d, --ca-file, insecure
registries, mutual TLS (``http.tls.clientcas``), and redirects that would downgrade to HTTP."""

from __future__ import annotations

import json
import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.isolated import IsolatedEnv, isolated_fixture  # noqa: F401 (the fixture)
from tank import registry as api
from tank._pull import pull
from tank.config import load
from tank.errors import ConfigError, TLSError, TransportError
from tank.retry import NO_RETRY
from tank.testing.fronts import MakeCDN, MakeFront
from tank.testing.registry import LocalRegistry
from tank.testing.seed import Seeded
from tank.testing.tls import LocalCA
from tank.transport import Transport


@pytest.fixture(scope="module")
def tls_registry(ca: LocalCA, registry: LocalRegistry) -> Iterator[LocalRegistry]:
    """A TLS registry (certificate for 127.0.0.1 and localhost) serving the seeded storage."""
    cert, key = ca.issue("127.0.0.1", "localhost")
    with LocalRegistry(tls=(cert, key), storage_dir=registry.storage_dir) as reg:
        yield reg


@pytest.fixture(scope="module")
def client_pair(ca: LocalCA) -> tuple[Path, Path]:
    """A client certificate and key signed by the test CA."""
    return ca.issue("tank-client.test")


@pytest.fixture(scope="module")
def mtls_registry(
    ca: LocalCA, registry: LocalRegistry, client_pair: tuple[Path, Path]
) -> Iterator[LocalRegistry]:
    """A registry with ``http.tls.clientcas``: no certificate from the test CA, no service."""
    cert, key = ca.issue("127.0.0.1")
    with LocalRegistry(
        tls=(cert, key), client_ca=ca.ca_file, client_cert=client_pair,
        storage_dir=registry.storage_dir,
    ) as reg:
        yield reg


def image_ref(reg: LocalRegistry, seeded: Seeded, tag: str = "latest") -> str:
    return f"{reg.host}/{seeded.repo}:{tag}"


# -- an untrusted certificate --------------------------------------------------------------------


def test_an_untrusted_registry_fails_saying_how_to_fix_it(
    isolated: IsolatedEnv, tls_registry: LocalRegistry, seeded: Seeded, tmp_path: Path
) -> None:
    host = tls_registry.host
    with pytest.raises(TLSError) as info:
        pull(image_ref(tls_registry, seeded), cache=tmp_path / "cache", retry=NO_RETRY)
    text = str(info.value)
    assert "certificate verify failed" in text
    assert str(isolated.certs_d / host / "ca.crt") in text  # where to put the CA
    assert f"/etc/docker/certs.d/{host}/" in text
    assert "--ca-file FILE" in text
    assert f"--insecure-registry {host}" in text
    assert not any((tmp_path / "cache").glob("blobs/sha256/*"))

    done = isolated.tank("pull", image_ref(tls_registry, seeded), "--retries", "0",
                         "--cache", str(tmp_path / "cli"))
    assert done.returncode == 6, done.stderr
    assert "certs.d" in done.stderr
    assert "--ca-file" in done.stderr


def test_certs_d_makes_the_registry_trusted(
    isolated: IsolatedEnv, ca: LocalCA, tls_registry: LocalRegistry, seeded: Seeded,
    tmp_path: Path,
) -> None:
    isolated.trust(tls_registry.host, ca.ca_file)
    image = pull(image_ref(tls_registry, seeded, "multi"), cache=tmp_path)
    assert image.index_digest == seeded.multi.manifest_digest
    # the CLI reads the same folder
    done = isolated.tank("pull", image_ref(tls_registry, seeded), "--json",
                         "--cache", str(tmp_path / "cli"))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["digest"] == seeded.latest.manifest_digest


def test_the_first_certs_d_root_with_the_host_wins(
    isolated: IsolatedEnv, ca: LocalCA, tls_registry: LocalRegistry, seeded: Seeded,
    tmp_path: Path,
) -> None:
    other = LocalCA(tmp_path / "other-ca")
    first, second = tmp_path / "first", tmp_path / "second"
    (second / tls_registry.host).mkdir(parents=True)
    shutil.copy(ca.ca_file, second / tls_registry.host / "ca.crt")
    isolated.setenv("TANK_CERTS_D", f"{tmp_path / 'empty'}:{first}:{second}")
    assert pull(image_ref(tls_registry, seeded), cache=tmp_path / "a").digest

    (first / tls_registry.host).mkdir(parents=True)  # docker's rule: the first folder found
    shutil.copy(other.ca_file, first / tls_registry.host / "ca.crt")
    with pytest.raises(TLSError, match="certificate verify failed"):
        pull(image_ref(tls_registry, seeded), cache=tmp_path / "b", retry=NO_RETRY)


def test_ca_file_option_and_config_key(
    isolated: IsolatedEnv, ca: LocalCA, tls_registry: LocalRegistry, seeded: Seeded,
    tmp_path: Path,
) -> None:
    done = isolated.tank("pull", image_ref(tls_registry, seeded), "--ca-file", str(ca.ca_file),
                         "--json", "--cache", str(tmp_path / "cli"))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["digest"] == seeded.latest.manifest_digest

    isolated.write_config(f'ca-file = "{ca.ca_file}"\n')
    image = pull(image_ref(tls_registry, seeded), cache=tmp_path / "lib")
    assert image.digest == seeded.latest.manifest_digest
    assert Transport(ca_file=ca.ca_file).base_url(tls_registry.host).startswith("https://")


def test_an_insecure_registry_skips_verification_only_when_named(
    isolated: IsolatedEnv, tls_registry: LocalRegistry, seeded: Seeded, tmp_path: Path
) -> None:
    host = tls_registry.host
    settings = load().with_options(insecure_registries=[host])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no InsecureRequestWarning either: it was asked for
        image = pull(image_ref(tls_registry, seeded), cache=tmp_path / "a", config=settings)
    assert image.digest == seeded.latest.manifest_digest

    # the same server under another name is not named, so it is verified (and fails)
    port = host.rsplit(":", 1)[1]
    with pytest.raises(TLSError):
        pull(f"localhost:{port}/{seeded.repo}:latest", cache=tmp_path / "b",
                  config=settings, retry=NO_RETRY)

    done = isolated.tank("pull", image_ref(tls_registry, seeded), "--insecure-registry", host,
                         "--cache", str(tmp_path / "cli"))
    assert done.returncode == 0, done.stderr
    isolated.write_config(f'insecure-registries = ["{host}"]\n')
    done = isolated.tank("pull", image_ref(tls_registry, seeded), "--cache",
                         str(tmp_path / "cfg"))
    assert done.returncode == 0, done.stderr


# -- redirects ---------------------------------------------------------------------------------


def test_an_https_to_http_redirect_is_refused(
    isolated: IsolatedEnv, ca: LocalCA, registry: LocalRegistry, make_front: MakeFront,
    make_cdn: MakeCDN, seeded: Seeded,
) -> None:
    front = make_front(registry.url, host="127.0.0.2", tls=ca.issue("127.0.0.2"))
    plain_cdn = make_cdn(registry, host="127.0.0.3")
    front.redirect_blobs = plain_cdn.url
    t = Transport(ca_file=ca.ca_file)
    config = seeded.latest.config
    with pytest.raises(TransportError, match="from https to plain http") as info:
        api.blob(front.host, seeded.repo, config.digest, transport=t)
    assert info.value.permanent
    assert "sig=" not in str(info.value)  # the CDN's signed query stays out of messages
    assert plain_cdn.requests == []
    assert len([r for r in front.requests if "/blobs/" in r.path]) == 1  # never retried

    tls_cdn = make_cdn(registry, host="127.0.0.3", tls=ca.issue("127.0.0.3"))
    front.redirect_blobs = tls_cdn.url  # https to https is fine
    assert api.blob(front.host, seeded.repo, config.digest, transport=t) == config.data
    assert len(tls_cdn.requests) == 1


# -- mutual TLS --------------------------------------------------------------------------------


def test_mtls_is_refused_without_a_client_certificate(
    isolated: IsolatedEnv, ca: LocalCA, mtls_registry: LocalRegistry, seeded: Seeded,
    tmp_path: Path,
) -> None:
    folder = isolated.trust(mtls_registry.host, ca.ca_file)
    with pytest.raises(TLSError) as info:
        pull(image_ref(mtls_registry, seeded), cache=tmp_path, retry=NO_RETRY)
    text = str(info.value)
    assert "client certificate" in text
    assert f"client.cert and client.key in {folder}" in text


def test_mtls_is_served_with_client_cert_and_key_in_certs_d(
    isolated: IsolatedEnv, ca: LocalCA, mtls_registry: LocalRegistry,
    client_pair: tuple[Path, Path], seeded: Seeded, tmp_path: Path,
) -> None:
    folder = isolated.trust(mtls_registry.host, ca.ca_file)
    shutil.copy(client_pair[0], folder / "client.cert")
    shutil.copy(client_pair[1], folder / "client.key")
    image = pull(image_ref(mtls_registry, seeded, "list"), cache=tmp_path / "lib")
    assert image.index_digest == seeded.list.manifest_digest
    done = isolated.tank("pull", image_ref(mtls_registry, seeded), "--json",
                         "--cache", str(tmp_path / "cli"))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["digest"] == seeded.latest.manifest_digest


def test_a_client_certificate_needs_its_key(
    isolated: IsolatedEnv, ca: LocalCA, mtls_registry: LocalRegistry,
    client_pair: tuple[Path, Path], seeded: Seeded, tmp_path: Path,
) -> None:
    folder = isolated.trust(mtls_registry.host, ca.ca_file)
    shutil.copy(client_pair[0], folder / "client.cert")
    with pytest.raises(ConfigError, match=r"client\.cert: missing the client key client\.key"):
        pull(image_ref(mtls_registry, seeded), cache=tmp_path)
    done = isolated.tank("pull", image_ref(mtls_registry, seeded), "--cache", str(tmp_path))
    assert done.returncode == 2, done.stderr
