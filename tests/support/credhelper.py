"""Tiny docker credential helpers for the tests: real executables on a PATH the test sets.

``write_helper(bin_dir, "test", db)`` writes ``bin_dir/docker-credential-test``, a Python script
speaking docker's helper protocol (``get``/``store``/``erase``/``list``) and keeping its
credentials in the JSON file ``db`` (``{server: [username, secret]}``). Every call is appended
to ``db`` + ``.log`` as ``ACTION SERVER`` (never the secret). ``write_broken_helper`` writes one
that always fails with a message.
"""

from __future__ import annotations

import contextlib
import json
import stat
import sys
from collections.abc import Iterator
from pathlib import Path

from tank.testing.images import Pusher
from tank.testing.registry import LocalRegistry
from tank.testing.seed import Seeded, seed_registry
from tank.testing.tokenserver import TokenServer

__all__ = [
    "helper_calls",
    "htpasswd_registry",
    "private_registry",
    "read_db",
    "write_broken_helper",
    "write_helper",
]


@contextlib.contextmanager
def htpasswd_registry(seeded: Seeded, user: str, password: str) -> Iterator[LocalRegistry]:
    """A registry in htpasswd mode with one account, seeded."""
    with (
        LocalRegistry(htpasswd={user: password}) as reg,
        Pusher(reg.url, basic=(user, password)) as pusher,
    ):
        seed_registry(pusher, seeded)
        yield reg


@contextlib.contextmanager
def private_registry(
    seeded: Seeded, user: str, password: str
) -> Iterator[tuple[TokenServer, LocalRegistry]]:
    """Token mode where ``seeded.repo`` is private to ``user`` (``library/public`` is public)."""
    with (
        TokenServer(users={user: password}, public={"library/public"}) as ts,
        LocalRegistry(token=ts) as reg,
        Pusher(reg.url, token=ts.push_token(seeded.repo)) as pusher,
    ):
        seed_registry(pusher, seeded)
        yield ts, reg

_SCRIPT = '''#!{python}
import json, pathlib, sys
DB = pathlib.Path({db!r})
LOG = pathlib.Path({log!r})
action = sys.argv[1] if len(sys.argv) > 1 else ""
data = sys.stdin.read()
db = json.loads(DB.read_text()) if DB.exists() else {{}}
server = json.loads(data)["ServerURL"] if action == "store" else data.strip()
with LOG.open("a") as log:
    log.write(f"{{action}} {{server}}\\n")
if action == "get":
    if server not in db:
        print("credentials not found in native keychain")
        sys.exit(1)
    user, secret = db[server]
    print(json.dumps({{"ServerURL": server, "Username": user, "Secret": secret}}))
elif action == "store":
    doc = json.loads(data)
    db[server] = [doc["Username"], doc["Secret"]]
    DB.write_text(json.dumps(db))
elif action == "erase":
    if server not in db:
        print("credentials not found in native keychain")
        sys.exit(1)
    del db[server]
    DB.write_text(json.dumps(db))
elif action == "list":
    print(json.dumps({{k: v[0] for k, v in db.items()}}))
else:
    print(f"unknown action {{action!r}}")
    sys.exit(2)
'''

_BROKEN = '''#!{python}
import sys
sys.stdin.read()
print({message!r})
sys.exit(3)
'''


def _install(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def write_helper(bin_dir: Path, name: str, db: Path) -> Path:
    """Write the file-backed helper ``docker-credential-NAME`` into ``bin_dir``."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    text = _SCRIPT.format(python=sys.executable, db=str(db), log=str(db) + ".log")
    return _install(bin_dir / f"docker-credential-{name}", text)


def write_broken_helper(bin_dir: Path, name: str, message: str) -> Path:
    """Write ``docker-credential-NAME``, which prints ``message`` and exits 3."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    text = _BROKEN.format(python=sys.executable, message=message)
    return _install(bin_dir / f"docker-credential-{name}", text)


def read_db(db: Path) -> dict[str, list[str]]:
    """The helper's stored credentials."""
    if not db.exists():
        return {}
    doc: dict[str, list[str]] = json.loads(db.read_text())
    return doc


def helper_calls(db: Path) -> list[str]:
    """``ACTION SERVER`` for each call the helper answered, oldest first."""
    log = Path(str(db) + ".log")
    return log.read_text().splitlines() if log.exists() else []
