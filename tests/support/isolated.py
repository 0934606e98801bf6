"""An environment where nothing of this machine's configuration reaches tank.

tank reads ``$TANK_CONFIG``/``~/.config/tank/config.toml``, containers' ``registries.conf``
(Debian ships ``/etc/containers/registries.conf``), the certs.d folders
(``/etc/docker/certs.d``…), the proxy variables and the timeout variables. The ``isolated``
fixture points every one of them at empty places under the test's temporary directory, so the
host never changes a result; tests then write exactly the configuration they mean. A test module
imports ``isolated_fixture`` and asks for ``isolated``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tank.transport import TIMEOUT_ENV

__all__ = ["IsolatedEnv", "isolated_fixture"]

CLEARED = (
    "TANK_CONFIG",
    "HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy",
    "ALL_PROXY", "all_proxy", "REQUEST_METHOD",
    *TIMEOUT_ENV.values(),
)


@dataclass
class IsolatedEnv:
    """The temporary places the environment points at."""

    config_home: Path  # $XDG_CONFIG_HOME (empty)
    certs_d: Path  # $TANK_CERTS_D, the only certs.d root
    registries_conf: Path  # $CONTAINERS_REGISTRIES_CONF (absent until written)
    monkeypatch: pytest.MonkeyPatch

    @property
    def config_file(self) -> Path:
        """tank's default config file under the isolated ``$XDG_CONFIG_HOME``."""
        return self.config_home / "tank" / "config.toml"

    def write_config(self, text: str) -> Path:
        """Write tank's default config file."""
        self.config_file.parent.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(text)
        return self.config_file

    def trust(self, hostport: str, ca_file: str | Path, *extra: str | Path) -> Path:
        """Put ``ca_file`` (as ``ca.crt``) and any ``extra`` files in certs.d/``hostport``/."""
        folder = self.certs_d / hostport
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(ca_file, folder / "ca.crt")
        for path in extra:
            shutil.copy(path, folder / Path(path).name)
        return folder

    def setenv(self, name: str, value: str) -> None:
        """Set a variable for this test (and the CLI processes it starts)."""
        self.monkeypatch.setenv(name, value)

    def tank(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run ``python -m tank ARGS`` in this environment."""
        return subprocess.run(
            [sys.executable, "-m", "tank", *args], capture_output=True, text=True,
            timeout=timeout, env=dict(os.environ),
        )


@pytest.fixture(name="isolated")
def isolated_fixture(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> IsolatedEnv:
    """No host configuration, certs.d, proxies or timeout settings; see the module docstring."""
    root = tmp_path / "isolated"
    env = IsolatedEnv(
        config_home=root / "config", certs_d=root / "certs.d",
        registries_conf=root / "registries.conf", monkeypatch=monkeypatch,
    )
    env.config_home.mkdir(parents=True)
    env.certs_d.mkdir()
    for name in CLEARED:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(env.config_home))
    monkeypatch.setenv("TANK_CERTS_D", str(env.certs_d))
    monkeypatch.setenv("CONTAINERS_REGISTRIES_CONF", str(env.registries_conf))
    return env
