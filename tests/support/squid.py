"""A real forward proxy from Debian (squid) on a loopback port, for the tests.

squid resolves the test's host names from its own ``hosts_file`` (names only it knows, mapped to
loopback addresses), so tank reaches a registry through it by a name that is not loopback to
tank (loopback itself is never proxied). Its access log says what it carried.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

SQUID = "/usr/sbin/squid"


@dataclass
class Squid:
    """A running squid: its URL and its access log."""

    url: str
    log: Path

    def requests(self) -> list[str]:
        """``METHOD URL`` of each request squid carried so far."""
        try:
            lines = self.log.read_text().splitlines()
        except FileNotFoundError:
            return []
        return [" ".join(line.split()[5:7]) for line in lines if len(line.split()) > 6]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def squid(hosts: Mapping[str, str]) -> Iterator[Squid]:
    """Run squid with ``hosts`` (name → loopback address) as its only names."""
    if not os.access(SQUID, os.X_OK):
        raise RuntimeError(f"{SQUID} is missing (Debian: apt-get install squid)")
    workdir = Path(tempfile.mkdtemp(prefix="tank-squid-"))
    workdir.chmod(0o777)
    port = _free_port()
    (workdir / "hosts").write_text("".join(f"{ip} {name}\n" for name, ip in hosts.items()))
    (workdir / "squid.conf").write_text(f"""
http_port 127.0.0.1:{port}
hosts_file {workdir}/hosts
acl localnet src 127.0.0.0/8
http_access allow localnet
http_access deny all
cache deny all
pid_filename {workdir}/squid.pid
access_log stdio:{workdir}/access.log
cache_log {workdir}/cache.log
coredump_dir {workdir}
shutdown_lifetime 0 seconds
buffered_logs off
""")
    proc = subprocess.Popen(
        [SQUID, "-N", "-f", str(workdir / "squid.conf")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                log = workdir / "cache.log"
                text = log.read_text() if log.exists() else ""
                raise RuntimeError(f"squid did not start: {text[-2000:]}")
            time.sleep(0.1)
        yield Squid(f"http://127.0.0.1:{port}", workdir / "access.log")
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(workdir, ignore_errors=True)
