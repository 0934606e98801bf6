"""Which policy file applies: ``--policy``, tank's config, then where containers tools look.

In order (the first that applies wins, and is then required to be a valid policy):

1. a policy passed explicitly (``--policy FILE``, ``policy=`` in the library);
2. ``policy = "FILE"`` in tank's ``config.toml`` (:attr:`tank.config.Config.policy`; a relative
   path is relative to the config file);
3. ``~/.config/containers/policy.json`` (``$HOME``, as containers/image looks it up), if it
   exists;
4. ``/etc/containers/policy.json``, if it exists.

With none of them, there is no policy: tank accepts every image, as it always has, and says
nothing (:func:`load_policy` returns ``None``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Final

from tank.policy.document import Policy

if TYPE_CHECKING:
    from tank.config import Config

#: the per-user policy, under the home directory (containers/image's ``userPolicyFile``)
USER_POLICY: Final = Path(".config", "containers", "policy.json")
#: the system-wide policy
SYSTEM_POLICY: Final = Path("/etc/containers/policy.json")

PolicyArg = Policy | str | os.PathLike[str] | None


def policy_path(config: Config | None = None) -> Path | None:
    """The policy file that applies without ``--policy`` (see the module), or ``None``."""
    if config is not None and config.policy:
        return Path(config.policy)
    try:
        user = Path.home() / USER_POLICY
    except RuntimeError:  # no home directory
        user = None
    for candidate in (user, SYSTEM_POLICY):
        if candidate is not None and candidate.is_file():
            return candidate
    return None


def load_policy(policy: PolicyArg = None, *, config: Config | None = None) -> Policy | None:
    """The policy that applies: ``policy`` itself (a :class:`~tank.policy.Policy`, or a file
    read now), else the file :func:`policy_path` finds; ``None`` when there is none.

    :raises PolicyError: a policy file that cannot be read or is not a valid policy.
    """
    if isinstance(policy, Policy):
        return policy
    path = Path(policy) if policy is not None else policy_path(config)
    return Policy.from_file(path) if path is not None else None


__all__ = ["SYSTEM_POLICY", "USER_POLICY", "PolicyArg", "load_policy", "policy_path"]
