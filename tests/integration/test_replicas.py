"""Replicas against a lying worker (issue 15, untrusted results), as users run them: ``dsage server``
and ``dsage worker`` processes on loopback, a client through ``dsage_core.client.api.connect`` and
``dsage job``, and a lying anonymous worker: a raw Foolscap peer in the test process that logs in
anonymously and answers every job it is sent with a wrong value at once."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from foolscap.api import Referenceable
from zope.interface import implementer

from dsage_core import codec
from dsage_core.client import reactor_thread as rt
from dsage_core.client.api import connect
from dsage_core.protocol import envelope, tubs
from dsage_core.protocol.interfaces import RIWorkerRunner
from tests.integration.test_cli import dsage
from tests.integration.test_join_by_invite import Proc

pytestmark = pytest.mark.timeout(180)


@implementer(RIWorkerRunner)
class LyingRunner(Referenceable):
    """The liar's runner: every job it is sent is answered 'lie' straight away."""

    def __init__(self) -> None:
        self.session = None
        self.got: list[int] = []

    def remote_run(self, batch):
        jobs = envelope.unpack(batch)["jobs"]
        t = time.time()
        self.got += [e[0] for e in jobs]
        lies = [["done", e[0], e[1], "completed", codec.encode_value("lie"), "'lie'", None, t, t, 0.0]
                for e in jobs]
        self.session.callRemote("report", envelope.pack(lies)).addErrback(lambda f: None)

    def remote_kill(self, job_ids):
        pass

    def remote_ping(self):
        pass


class Liar:
    """An anonymous worker, by hand over Foolscap, that lies."""

    def __init__(self, furl: str, home) -> None:
        home.mkdir()
        self.tub = tubs.peer_tub(home)
        self.tub.startService()
        self.runner = LyingRunner()

        def join():
            d = self.tub.getReference(furl)
            d.addCallback(lambda login: login.callRemote("login_anonymous", "worker"))

            def registered(session):
                self.runner.session = session
                info = {"host": "liar", "pid": os.getpid(), "slots": 4, "cpus": 1, "memory": 1 << 30}
                return session.callRemote("register", self.runner, envelope.pack(info))
            return d.addCallback(registered)
        rt.blocking(join, timeout=30)

    def close(self) -> None:
        rt.blocking(self.tub.stopService, timeout=15)


@pytest.fixture
def make(tmp_path):
    """Start things that are stopped at the end: the server, honest workers, the liar, clients."""
    started: list = []
    home = tmp_path / "server-home"
    dsage(home, "setup", "--yes")
    rt.ensure_running()

    class Make:
        furl = None

        def server(self, *args):
            p = subprocess.Popen([sys.executable, "-m", "dsage_core", "server", "--quiet", "--allow-anonymous",
                                  "--lease-timeout", "300", *args], stdout=subprocess.PIPE, text=True,
                                 env=dict(os.environ, DSAGE_HOME=str(home)))
            started.append(p)
            self.furl = p.stdout.readline().strip()   # printed once it listens
            assert self.furl.startswith("pb://"), self.furl
            return p

        def honest(self, name, anonymous=True):
            args = ["worker", "-n", "1"]
            if anonymous:
                args += ["--anonymous", "--server", self.furl, "--home", str(tmp_path / name)]
            p = Proc(home, *args)
            started.append(p)
            p.wait_for("dsage worker: connected")
            return p

        def liar(self):
            lie = Liar(self.furl, tmp_path / f"liar-{len(started)}")
            started.append(lie)
            return lie

        def client(self):
            D = connect(self.furl, home=home, timeout=30)
            started.append(D)
            return D

    yield Make()
    for thing in reversed(started):
        if isinstance(thing, Proc):
            thing.stop()
        elif isinstance(thing, subprocess.Popen):
            thing.terminate()
            thing.wait(30)
        elif isinstance(thing, Liar):
            thing.close()
        else:
            thing.shutdown()


def test_anonymous_replicas_catch_a_liar_and_a_keyed_worker_decides(make, tmp_path):
    """With ``--anonymous-replicas 2``, a liar and an honest anonymous worker: a job without the
    option fails showing both answers (no keyed worker yet); a gated replicas=2 job disagrees
    after a keyed worker joined, is re-run there and completes with the true value (``dsage job``
    prints the agreement); the server answers other clients meanwhile; a trusted-only job runs once."""
    home = tmp_path / "server-home"
    make.server("--anonymous-replicas", "2")
    liar = make.liar()
    make.honest("anon-1")
    D = make.client()

    j = D("6*7")    # no replicas option: the server's default applies
    j.wait(60)
    assert j.status == "failed" and j.id in liar.runner.got
    assert "replicas disagree (1/2 agree; no keyed worker to decide)" in j.error
    assert "'lie'" in j.error and ": 42" in j.error
    assert j.replicas.startswith("1/2 agree: disagreement")
    assert [i.info().extra for i in D.jobs() if i.id == j.id] == [{"replicas": j.replicas}]
    assert make.client().get_job(j.id).replicas == j.replicas   # from the store, in a new session

    gate = tmp_path / "gate"            # made before the keyed worker starts: inside its reach
    gate.mkdir()
    started, release, passed = gate / "started", gate / "release", gate / "passed"
    os.mkfifo(started)
    os.mkfifo(release)
    code = (f"import os\nif not os.path.exists({str(passed)!r}):\n"
            f"    open({str(started)!r}, 'w').close()\n    open({str(release)!r}).read()\nDSAGE_RESULT = 42")
    job = D.eval(code, replicas=2)
    with open(started) as f:            # the honest copy runs (the liar answered already)
        f.read()
    make.honest("keyed", anonymous=False)
    other = subprocess.run([sys.executable, "-m", "dsage_core", "job", str(job.id)], capture_output=True,
                           text=True, timeout=60, env=dict(os.environ, DSAGE_HOME=str(home)))
    assert other.returncode == 0 and "replicas: 1/2 answered" in other.stdout, other.stdout + other.stderr
    assert make.client().stats()["workers"] == 3   # another client, served while the quorum waits
    passed.touch()
    with open(release, "w") as f:
        f.write("go")
    job.wait(60)
    assert job.status == "completed" and job.result == 42, job.error
    assert job.replicas.startswith("1/2 agree: disagreement, decided by keyed worker")
    out = dsage(home, "job", str(job.id)).stdout
    assert "replicas: 1/2 agree: disagreement, decided by keyed worker" in out and "42" in out

    t = D("6*7", trusted_only=True).wait(60)
    assert t.status == "completed" and t.result == 42 and t.replicas is None


def test_three_copies_two_honest_outvote_a_liar(make):
    """replicas=3 on a liar and two honest anonymous workers: 2/3 agree on the true value."""
    make.server()
    liar = make.liar()
    make.honest("anon-1")
    make.honest("anon-2")
    D = make.client()
    j = D("6*7", replicas=3).wait(60)
    assert j.status == "completed" and j.result == 42 and j.id in liar.runner.got
    assert j.replicas == "2/3 agree"
    once = D("6*7").wait(60)   # no --anonymous-replicas: a job without the option runs once
    assert once.replicas is None
