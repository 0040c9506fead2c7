"""Fixtures for the launch tests: a ``dsage server`` in its own home, a real sshd, a real
single-node Slurm. Each real component is started by its fixture and skipped with the reason
when it cannot start here."""
from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

import dsage_core as dsage
from tests.launch.debian import Unavailable


def dsage_cmd(home, *args, timeout=120, check=True, env=None):
    """Run ``dsage ARGS`` with DSAGE_HOME=home and wait for it."""
    p = subprocess.run([sys.executable, "-m", "dsage_core", *args], capture_output=True, text=True,
                       timeout=timeout, env=dict(os.environ, DSAGE_HOME=str(home), **(env or {})))
    if check and p.returncode != 0:
        raise AssertionError(f"dsage {' '.join(args)} -> {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p


@pytest.fixture
def server(tmp_path):
    """``dsage server`` (a subprocess) in its own home; yields (home, furl)."""
    home = tmp_path / "server-home"
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


@pytest.fixture
def client(server):
    """The server owner's API client."""
    home, furl = server
    D = dsage.connect(furl, home=home, timeout=20)
    yield D
    D.shutdown()


@pytest.fixture
def sshd(tmp_path):
    """A real sshd on 127.0.0.1 whose aliases box1, box2 (and 'unreachable') its ssh config names."""
    from tests.launch.sshd import Sshd
    try:
        s = Sshd(tmp_path / "sshd")
    except Unavailable as e:
        pytest.skip(str(e))
    yield s
    s.stop()


@pytest.fixture
def slurm():
    """A private single-node Slurm (munged, slurmctld, slurmd) for one test."""
    from tests.launch.slurmbed import Slurm
    try:
        s = Slurm()
    except Unavailable as e:
        pytest.skip(str(e))
    yield s
    s.stop()
