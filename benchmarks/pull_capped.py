"""Pulls through a real CDN-like front that caps each connection: tank's ranges against skopeo.

    .venv/bin/python benchmarks/pull_capped.py [--rounds 3] [--rate 25] [--size-mb 1000]
        [--only d,a] [--install]

CDNs cap what one connection gets (tens of MB/s is common), so a client that fetches a layer over
one connection waits for the cap whatever the link could carry. This puts Debian's
``nginx-light`` in front of the real registry (on loopback) as that CDN: ``limit_rate`` caps each
connection at ``--rate`` MiB/s (proxy buffering on, as it must be for the cap to hold; ``Range``
passes through as ``206``). ``--install`` installs ``nginx-light`` with apt first when it is
missing (a benchmark set-up step, never CI's).

Images: (d) one layer of about ``--size-mb`` MB, and (a) the ~1 GB 8-layer image of
``pull_vs_skopeo.py``. Per image and round, alternating, each a fresh process with a cold cache
into a fresh OCI layout: ``tank pull`` (defaults: 4 connections per blob of 64 MiB or more),
``tank pull --layer-connections 1`` (one connection per blob, as before ranges), and
``skopeo copy``. Prints the machine line, the cap, medians, peak RSS, and for (d) the bound:
bytes / (connections x cap).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import machine_line  # beside this file: on sys.path when run as a script
from pull_vs_skopeo import MB, Run, _layer, build_images, timed
from tank.testing.images import Pusher, make_image
from tank.testing.registry import LocalRegistry

NGINX = "/usr/sbin/nginx"

_CONF = """\
worker_processes 2;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
{user}
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/client;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    upstream registry {{ server {upstream}; keepalive 32; }}
    server {{
        listen 127.0.0.1:{port};
        client_max_body_size 0;
        location / {{
            proxy_pass http://registry;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            # the cap holds only with proxy buffering on (shared/README.md)
            proxy_buffering on;
            proxy_max_temp_file_size 0;
            proxy_buffers 8 1m;
            proxy_busy_buffers_size 2m;
            limit_rate {rate}m;
        }}
    }}
}}
"""


def ensure_nginx(install: bool) -> None:
    """Make sure nginx-light is there (installing it with apt when asked)."""
    if os.access(NGINX, os.X_OK):
        return
    if not install:
        raise SystemExit(f"{NGINX} is missing: apt-get install nginx-light, or pass --install")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "nginx-light"],
                   check=True, env=env)


class CappedFront:
    """nginx in front of ``upstream`` (``host:port``), each connection capped at ``rate`` MB/s."""

    def __init__(self, upstream: str, rate: int, prefix: Path) -> None:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        prefix.mkdir(parents=True, exist_ok=True)
        user = "user root root;" if os.geteuid() == 0 else ""
        conf = prefix / "nginx.conf"
        conf.write_text(_CONF.format(prefix=prefix, user=user, upstream=upstream, port=port,
                                     rate=rate))
        self.host = f"127.0.0.1:{port}"
        self.proc = subprocess.Popen([NGINX, "-c", str(conf), "-p", str(prefix)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    return
            except OSError:
                if self.proc.poll() is not None:
                    err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                    raise SystemExit(f"nginx failed to start: {err}") from None
                time.sleep(0.05)
        raise SystemExit("nginx did not start listening")

    def close(self) -> None:
        """Stop nginx (its own process only)."""
        self.proc.terminate()
        self.proc.wait(timeout=10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rate", type=int, default=25, help="the cap per connection, MiB/s")
    parser.add_argument("--size-mb", type=int, default=1000, help="image (d)'s one layer")
    parser.add_argument("--only", default="d,a")
    parser.add_argument("--install", action="store_true", help="apt-get install nginx-light")
    args = parser.parse_args()
    ensure_nginx(args.install)
    wanted = args.only.split(",")
    tank = str(Path(sys.executable).with_name("tank"))
    print("building the images…", file=sys.stderr)
    images = {}
    if "d" in wanted:
        images["d"] = make_image([_layer("d0", args.size_mb * MB)])
    if "a" in wanted:
        images["a"] = build_images()["a"]
    def command(key: str, ref: str, dest: Path, cache: Path) -> list[str]:
        if key == "skopeo":
            return ["skopeo", "copy", "--insecure-policy", "--src-tls-verify=false", "-q",
                    f"docker://{ref}", f"oci:{dest}:v1"]
        one = ["--layer-connections", "1"] if key == "tank-1" else []
        return [tank, "pull", ref, "-o", f"oci:{dest}:v1", "--cache", str(cache), "-q", *one]

    commands = ("tank", "tank-1", "skopeo")
    results: dict[str, dict[str, list[Run]]] = {}
    sizes: dict[str, tuple[int, int, int]] = {}
    with tempfile.TemporaryDirectory(prefix="tank-capped-", dir="/var/tmp") as tmp_s, \
            LocalRegistry() as reg:
        tmp = Path(tmp_s)
        with Pusher(reg.url) as pusher:
            for name, image in images.items():
                pusher.push_image(f"bench/{name}", "v1", image)
        sizes = {n: (sum(b.size for b in im.blobs()), len(im.layers),
                     max(b.size for b in im.layers)) for n, im in images.items()}
        del images
        front = CappedFront(reg.host, args.rate, tmp / "nginx")
        try:
            for name in sizes:
                ref = f"{front.host}/bench/{name}:v1"
                print(f"({name}) {sizes[name][1]} layers, {sizes[name][0] / MB:.0f} MB, "
                      f"{args.rate} MiB/s per connection", file=sys.stderr)
                runs: dict[str, list[Run]] = {k: [] for k in commands}
                for i in range(args.rounds):
                    for key in commands:
                        dest, cache = tmp / f"{key}-{name}-{i}", tmp / f"cache-{key}-{name}-{i}"
                        runs[key].append(timed(command(key, ref, dest, cache), tmp / "rss"))
                        shutil.rmtree(dest, ignore_errors=True)
                        shutil.rmtree(cache, ignore_errors=True)
                    print(f"  round {i + 1}: " + ", ".join(
                        f"{k} {v[-1].seconds:.1f} s" for k, v in runs.items()), file=sys.stderr)
                results[name] = runs
        finally:
            front.close()

    print(machine_line())
    print(f"pulls through nginx-light capped at {args.rate} MiB/s per connection (limit_rate "
          f"{args.rate}m), {args.rounds} alternating rounds, medians, cold cache")
    labels = {"d": f"(d) one {args.size_mb} MB layer", "a": "(a) ~1 GB, 8 layers"}
    for name, runs in results.items():
        total, _, largest = sizes[name]
        med = {k: statistics.median(r.seconds for r in v) for k, v in runs.items()}
        rss = {k: max(r.peak_rss_kib for r in v) / 1024 for k, v in runs.items()}
        print(f"{labels[name]}: {total / MB:.0f} MB, largest blob {largest / MB:.0f} MB")
        for key in runs:
            print(f"  {key:<8}{med[key]:>8.2f} s{rss[key]:>8.0f} MB peak RSS")
        print(f"  skopeo / tank = {med['skopeo'] / med['tank']:.2f}; "
              f"tank-1 / tank = {med['tank-1'] / med['tank']:.2f}")
        if name == "d":
            bound = total / (4 * args.rate * 2**20)  # nginx's "m" is MiB
            print(f"  bound: {total / MB:.0f} MB / (4 connections x {args.rate} MiB/s) = "
                  f"{bound:.2f} s; tank is at {med['tank'] / bound:.2f}x of it (target <= 1.3)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
