"""Jobs as arguments and resource requests through the user's entry points: ``dsage.start_all()``
with its real server and worker processes, ``dsage worker --cpus N`` as a subprocess, and a
server killed and restarted (``dsage server``) with a job still waiting for its input."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import dsage_core as dsage
from dsage_core import keys
from dsage_core.client.job import JobFailed
from dsage_core.protocol.errors import BadRequest

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


def inc(x):
    return x + 1


def add(a, b=0):
    return a + b


def total(xs, scale=1):
    return sum(xs) * scale


def boom(x):
    raise ValueError(f"no {x}")


def wait_for(path):
    """A job that runs until *path* exists (the test creates it: no sleeps in the test itself)."""
    while not os.path.exists(path):
        time.sleep(0.01)
    return open(path).read()


def big(n):
    return b"z" * n


@pytest.fixture(scope="module")
def D(tmp_path_factory):
    """One start_all for the module (server and a 2-slot worker as child processes)."""
    client = dsage.start_all(workers=2, home=tmp_path_factory.mktemp("deps") / "home")
    yield client
    client.shutdown()


def test_chain_diamond_map_and_gather(D):
    """a→b→c, a diamond, D.map over jobs and the notebook one-liner give the right values."""
    a = D.submit(inc, 1)
    b = D.submit(inc, a)
    c = D.submit(add, b, b=a)
    assert c.get(60) == 3 + 2
    top = D.submit(inc, 10)
    left, right = D.submit(inc, top), D.submit(add, top, 100)
    diamond = D.submit(total, [left, right], scale=D.submit(inc, 0))
    assert diamond.get(60) == 12 + 111
    assert D.map(inc, [D.submit(inc, 1), 5, D.submit(add, 2, 3)]).wait(60).results == [3, 6, 6]
    xs = range(8)
    assert D.gather([D.submit(inc, D.submit(add, x, x)) for x in xs], timeout=60) == [2 * x + 1 for x in xs]


def test_a_dependent_waits_visibly(D, tmp_path):
    """While its input runs, a dependent is 'waiting' with the reason, in D.jobs(), `dsage jobs
    --status waiting` and `dsage job ID` too."""
    gate = tmp_path / "gate"
    a = D.submit(wait_for, str(gate))
    b = D.submit(inc, D.submit(len, a))
    blocked = D.submit(len, a)
    assert blocked.waiting_reason == f"waiting for job {a.id}"
    assert {j.id: j.status for j in D.jobs()}[blocked.id] == "waiting"
    assert blocked.status == "waiting"   # pushed before the answers to the calls above
    listed = _dsage(D.cluster.home, "jobs", "--status", "waiting")
    assert {ln.split()[0] for ln in listed.splitlines()[1:]} == {str(b.id - 1), str(b.id), str(blocked.id)}
    assert f"waiting for job {a.id}" in _dsage(D.cluster.home, "job", str(blocked.id))
    gate.write_text("four")
    assert b.get(60) == 5 and blocked.get(60) == 4


def test_failures_propagate_and_gather_raises(D):
    """A failing input fails its dependents (transitively) without running them."""
    bad = D.submit(boom, 1)
    mid = D.submit(inc, bad)
    last = D.submit(inc, mid)
    assert last.wait(60).status == "failed"
    assert last.error == f"input job {mid.id} failed: input job {bad.id} failed: ValueError: no 1"
    assert mid.error == f"input job {bad.id} failed: ValueError: no 1" and mid.started is None
    with pytest.raises(JobFailed, match=r"input job \d+ failed: ValueError: no 2"):
        D.gather([D.submit(inc, D.submit(boom, 2))], timeout=60)
    killed = D.submit(wait_for, "/nonexistent/never")
    after = D.submit(inc, killed)
    assert killed.kill() is True
    assert after.wait(60).error == f"input job {killed.id} failed (it ended killed): killed by its owner"


def test_large_results_are_inputs_too(D):
    """A result big enough to travel as a file (worker and server share the home) is an input."""
    assert D.submit(len, D.submit(big, 3_000_000)).get(60) == 3_000_000


def test_another_users_job_cannot_be_an_input(D, tmp_path):
    """Bob naming alice's job id, over the wire as the client would send it, gets 'unknown job N',
    the same answer as for an id that does not exist; his own jobs work."""
    mine = D.submit(inc, 1)
    mine.wait(60)
    priv = tmp_path / "bob_key"
    keys.generate_keypair(priv, tmp_path / "bob_key.pub")
    D.admin("user_add", "bob", keys.load_public_key(str(tmp_path / "bob_key.pub")), "client")
    bob = dsage.connect(D.furl, key=priv, home=D.cluster.home)
    try:
        for victim in (mine.id, 10**9):
            with pytest.raises(BadRequest, match=f"unknown job {victim}"):
                bob.submit(inc, 1, dsage_options={"inputs": [victim]})
        with pytest.raises(ValueError, match="another dsage connection"):
            bob.submit(inc, mine)
        assert bob.submit(inc, bob.submit(inc, 1)).get(60) == 3
    finally:
        bob.shutdown()


def test_memory_is_enforced(D):
    """memory= is the job's memory limit: allocating past it fails the job with a clear error."""
    j = D.submit(bytearray, 2 * 1024**3, dsage_options={"memory": "300M"})
    assert j.wait(60).status == "failed" and "memory limit of 300 MiB exceeded" in j.error
    assert D.submit(len, "fits", dsage_options={"memory": "300M"}).get(60) == 4


def test_a_two_cpu_job_waits_for_a_worker_it_fits(tmp_path):
    """On a 1-slot start_all, cpus=2 waits with its reason; `dsage worker --cpus 2` joining runs it."""
    home = tmp_path / "home"
    D = dsage.start_all(workers=1, home=home)
    w = None
    try:
        j = D.submit(inc, 1, dsage_options={"cpus": 2})
        assert D.submit(inc, 2).get(60) == 3   # the small worker keeps working
        assert j.status == "queued" and j.waiting_reason == "needs 2 cpus; the largest worker has 1"
        w = subprocess.Popen([sys.executable, "-m", "dsage_core", "worker", "--home", str(home),
                              "--cpus", "2", "--memory", "4G", "--quiet"])
        assert j.get(60) == 2
        assert any(x.get("slots") == 2 and x.get("memory") == 4 * 1024**3 for x in D.workers())
    finally:
        if w is not None:
            w.send_signal(signal.SIGTERM)
            w.wait(30)
        D.shutdown()


def _dsage(home: Path, *args: str) -> str:
    env = dict(os.environ, DSAGE_HOME=str(home))
    return subprocess.run([sys.executable, "-m", "dsage_core", *args], env=env, check=True,
                          capture_output=True, text=True, timeout=60).stdout


def test_a_waiting_dependent_survives_a_server_restart(tmp_path):
    """The server is SIGKILLed while b waits for a; after the restart b is waiting again and runs
    with a's value once a (requeued) completes."""
    home, gate = tmp_path / "home", tmp_path / "gate"
    _dsage(home, "setup", "--yes")
    env = dict(os.environ, DSAGE_HOME=str(home))

    def server():
        p = subprocess.Popen([sys.executable, "-m", "dsage_core", "server", "--quiet"], env=env,
                             stdout=subprocess.PIPE, text=True)
        p.stdout.readline()
        return p
    procs = [server()]
    procs.append(subprocess.Popen([sys.executable, "-m", "dsage_core", "worker", "-n", "1", "--quiet"], env=env))
    D = dsage.connect(home=home)
    try:
        a = D.submit(wait_for, str(gate))
        b = D.submit(add, a, "!")
        assert b.status == "waiting"
        ids = a.id, b.id
        procs[0].send_signal(signal.SIGKILL)
        procs[0].wait()
        procs[0] = server()
        D.shutdown()
        D = dsage.connect(home=home)
        b = D.get_job(ids[1])
        assert b.status == "waiting" and b.waiting_reason == f"waiting for job {ids[0]}"
        gate.write_text("done")
        assert b.get(60) == "done!"
    finally:
        D.shutdown()
        for p in reversed(procs):
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
