"""The machine line every benchmark prints: a figure means little without it.

SHA-256 bounds every verified transfer, and its speed depends on whether the CPU has the SHA
extensions (``sha_ni`` on x86, ``sha2`` on ARM, in ``/proc/cpuinfo``): about 1.2 GB/s with them,
about 0.36 GB/s without. So each benchmark names the architecture, the cores and that flag.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path


def cpu_flags(cpuinfo: str | None = None) -> set[str]:
    """The CPU's feature flags (x86 ``flags``, ARM ``Features``) from ``/proc/cpuinfo``."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return set()
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            flags.update(value.split())
    return flags


def has_sha_extensions(cpuinfo: str | None = None) -> bool:
    """Whether the CPU hashes SHA-256 in hardware (``sha_ni`` on x86, ``sha2`` on ARM)."""
    return bool(cpu_flags(cpuinfo) & {"sha_ni", "sha2"})


def cpu_model(cpuinfo: str | None = None) -> str:
    """The CPU's model name, or the architecture when ``/proc/cpuinfo`` does not say."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = ""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and value.strip():
            return value.strip()
    return platform.machine()


def machine_line() -> str:
    """``machine: x86_64, 2 cores, AMD EPYC, with SHA extensions (sha_ni)``, or ``without``."""
    if has_sha_extensions():
        sha = "with SHA extensions (sha_ni)"
    else:
        sha = "without SHA extensions (no sha_ni)"
    return f"machine: {platform.machine()}, {os.cpu_count()} cores, {cpu_model()}, {sha}"
