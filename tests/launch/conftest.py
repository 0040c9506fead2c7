"""Fixtures for the launch tests: a ``dsage server`` in its own home, a real sshd, a real
single-node Slurm. Each real component is started by its fixture and skipped with the reason
when it cannot start here."""
from __future__ import annotations

import pytest

import dsage_core as dsage
from tests.launch.debian import Unavailable
from tests.server_proc import serve


@pytest.fixture
def server(tmp_path):
    """``dsage server`` (a subprocess) in its own home; yields (home, furl)."""
    yield from serve(tmp_path / "server-home")


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
