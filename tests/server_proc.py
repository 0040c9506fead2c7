"""A real ``dsage server`` subprocess in its own home, and ``dsage ARGS`` run as a user types them:
shared by the tests that join a server from a second home (invites, launches, the tray)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Iterator


def dsage_cmd(home, *args, timeout=120, check=True, env=None):
    """Run ``dsage ARGS`` with DSAGE_HOME=home and wait for it."""
    p = subprocess.run([sys.executable, "-m", "dsage_core", *args], capture_output=True, text=True,
                       timeout=timeout, env=dict(os.environ, DSAGE_HOME=str(home), **(env or {})))
    if check and p.returncode != 0:
        raise AssertionError(f"dsage {' '.join(args)} -> {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p


def serve(home: Path) -> Iterator[tuple[Path, str]]:
    """Set up *home*, run ``dsage server`` on it; yields (home, furl) once it listens, then stops it."""
    dsage_cmd(home, "setup", "--yes")
    p = subprocess.Popen([sys.executable, "-m", "dsage_core", "server", "--quiet"], text=True,
                         stdout=subprocess.PIPE, env=dict(os.environ, DSAGE_HOME=str(home)))
    furl = p.stdout.readline().strip()  # printed once it listens
    assert furl.startswith("pb://"), furl
    yield home, furl
    p.send_signal(signal.SIGTERM)
    try:
        p.wait(20)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
