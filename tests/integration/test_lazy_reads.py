"""Lazy reading of children's pipes (worker/children.py, LAZY_*): a worker whose children hold
several jobs of some milliseconds reads their dones on a timer instead of waking for each one.
Nothing may be lost, reordered, dated wrongly, run past its timeout, run twice or escape a kill
because of it."""
import time

import pytest

pytestmark = pytest.mark.timeout(90)


def nap(x, log=None):
    """Sleep 20 ms (30 s for "long", exit the process for "die"); note each run in *log*."""
    import os
    import time
    if log:
        with open(log, "a") as f:
            f.write(f"{x} {time.time()}\n")
    if x == "die":
        os._exit(3)
    time.sleep(30 if x == "long" else 0.02)
    return x, time.time()


def runs(log):
    out = {}
    for line in log.read_text().split("\n"):
        if line:
            x, t = line.split()
            out.setdefault(x, []).append(float(t))
    return out


@pytest.mark.normal_latency
def test_lazily_read_children_finish_everything(cluster):
    pool = cluster.workers[0].pool
    before = pool.lazy_reads
    jobs = cluster.client.map(nap, range(40))
    assert [j.wait(30).result[0] for j in jobs] == list(range(40))
    assert pool.lazy_reads > before, "the children were never read lazily"
    # dated by the child's own end times, not by when the monitor read them (up to 150 ms later)
    late = [j.finished - j.result[1] for j in jobs]
    assert all(0 <= d < 0.05 for d in late), late


def test_timeout_of_a_job_behind_lazily_read_ones(cluster, tmp_path):
    """The timeout clock starts when the job really started (from the end time the child wrote
    for the job before it), not earlier and not when the monitor got round to reading it."""
    log = tmp_path / "runs"
    args = list(range(10)) + ["long"] + list(range(10, 20))
    jobs = cluster.client.map(nap, args, [str(log)] * len(args), timeout=0.3)
    for j in jobs:
        j.wait(60)
    long = jobs[10]
    assert long.status == "timed_out", long.error
    started = runs(log)["long"][0]
    # never early; late only by reaping (a periodic sweep backs up SIGCHLD in some test orders)
    assert 0.3 - 0.005 <= long.finished - started < 0.3 + 0.6
    assert all(j.status == "completed" for j in jobs if j is not long), [(j.status, j.error) for j in jobs]
    assert [j.result[0] for j in jobs if j is not long] == list(range(20))


@pytest.mark.normal_latency
def test_kills_in_lazily_read_children_hit_only_their_job(cluster, tmp_path):
    """A job killed while queued in a lazily-read child (behind the one it runs) ends killed; the
    job the child runs next is never killed in its place, and nothing runs twice."""
    from dsage_core.client import reactor_thread as rt
    pool = cluster.workers[0].pool

    def queued_in_a_lazy_child():
        for c in pool.children:
            if c.lazy and len(c.inflight) >= 3:
                return c.inflight[1].job_id
        return None
    log = tmp_path / "runs"
    n = 200
    jobs = cluster.client.map(nap, range(n), [str(log)] * n)
    index = {j.id: i for i, j in enumerate(jobs)}
    victims: list[int] = []
    deadline = time.monotonic() + 30
    while len(victims) < 6 and not jobs[-1].done() and time.monotonic() < deadline:
        jid = rt.blocking(lambda: queued_in_a_lazy_child(), timeout=10)  # a look on the reactor thread
        if jid in index and index[jid] not in victims and (not victims or index[jid] > victims[-1] + 5):
            victims.append(index[jid])
            jobs[index[jid]].kill()
    assert victims, "no job was ever caught queued in a lazily-read child"
    for j in jobs:
        j.wait(30)
    ran = runs(log)
    assert all(len(ran.get(str(i), [])) == 1 for i in range(n) if i not in victims), ran
    assert all(jobs[i].status == "completed" for i in range(n) if i not in victims)
    assert all(jobs[v].status in ("killed", "completed") for v in victims)
    assert any(jobs[v].status == "killed" for v in victims)


def test_a_lazily_read_child_that_dies_loses_nothing(cluster):
    """A child that exits mid-stream with unread dones: those jobs complete, its job fails, the
    jobs it held but never started run on a new child."""
    args = list(range(25)) + ["die"] + list(range(25, 50))
    jobs = cluster.client.map(nap, args)
    for j in jobs:
        j.wait(60)
    assert jobs[25].status == "failed" and "exited with code 3" in jobs[25].error
    assert [j.result[0] for j in jobs if j is not jobs[25]] == list(range(50))


@pytest.mark.normal_latency
def test_jobs_queued_in_a_recycled_child_run_elsewhere(tmp_path, monkeypatch):
    """A child that exits to be recycled (memory threshold) held jobs it never started: they run
    on its successor, not fail."""
    from tests.integration.cluster import start_cluster
    monkeypatch.setenv("DSAGE_CHILD_MAX_RSS", "1")   # every check recycles
    c = start_cluster(tmp_path / "home", slots=1)
    try:
        jobs = c.client.map(nap_briefly, range(40))
        assert [j.wait(60).result for j in jobs] == list(range(40)), [j.error for j in jobs if j.error]
    finally:
        c.stop()


def nap_briefly(x):
    import time
    time.sleep(0.01)   # a child holds up to 6 of these; it recycles after 0.1 s of them
    return x
