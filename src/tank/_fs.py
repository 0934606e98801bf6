"""Filesystem helpers every writer shares: one of each, one failure behaviour.

- :func:`fsync_dir`: make the renames, links and unlinks in a directory durable.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from tank.errors import StorageError

#: errors that mean "this filesystem cannot fsync a directory" (some FUSE and network
#: filesystems): nothing more can be done there, so they are not failures
_NO_DIR_FSYNC = frozenset({errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EBADF})


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """fsync the directory ``path`` so that the entries renamed, linked or removed in it survive
    a crash.

    A filesystem that cannot fsync directories is accepted silently (there is nothing more to
    do); any other failure (``EIO``, a missing directory) is a :class:`~tank.errors.StorageError`,
    since the caller's durability promise would otherwise be broken without a word.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise StorageError(
            f"cannot open directory {Path(path)} to make it durable: {exc.strerror}",
            path=os.fspath(path), errno=exc.errno,
        ) from exc
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in _NO_DIR_FSYNC:
            raise StorageError(
                f"fsync of directory {Path(path)} failed: {exc.strerror}",
                path=os.fspath(path), errno=exc.errno,
            ) from exc
    finally:
        os.close(fd)


__all__ = ["fsync_dir"]
