"""Debian packages a launch test needs, installed on first use (``apt-get update`` at most once per
test run); a test skips with the reason when that is not possible."""
from __future__ import annotations

import os
import shutil
import subprocess

_updated: list[bool] = []


class Unavailable(Exception):
    """A package cannot be had on this machine; the message says why."""


def ensure(binary: str, *packages: str) -> str:
    """The path of *binary* (a name on PATH or an absolute path), installing *packages* if it is
    missing."""
    found = binary if os.path.isabs(binary) and os.path.exists(binary) else shutil.which(binary)
    if found:
        return found
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        raise Unavailable(f"{binary} is missing and cannot be installed here (needs root and apt-get: "
                          f"apt-get install {' '.join(packages)})")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if not _updated:
        subprocess.run(["apt-get", "update", "-q"], capture_output=True, timeout=600, env=env)
        _updated.append(True)
    p = subprocess.run(["apt-get", "install", "-y", "-q", *packages], capture_output=True, text=True,
                       timeout=900, env=env)
    found = binary if os.path.isabs(binary) and os.path.exists(binary) else shutil.which(binary)
    if not found:
        raise Unavailable(f"{binary} is missing and 'apt-get install {' '.join(packages)}' failed: "
                          f"{(p.stderr or p.stdout).strip()[-300:]}")
    return found
