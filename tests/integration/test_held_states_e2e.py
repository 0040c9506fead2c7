"""The truth about held jobs, end to end (real server, real worker, real children, the user's
``D``): jobs prefetched by a worker are ``assigned``, jobs a child runs are ``running``, a paused
worker's jobs are ``paused`` — in ``D.jobs()`` and ``D.stats()`` — and the worker's start marks stay
few however many jobs run."""
import time

import pytest

from dsage_core.client import reactor_thread as rt

pytestmark = pytest.mark.timeout(120)


def quick(x):
    """A job of microseconds."""
    return x


def gate(path):
    """Run until *path* exists."""
    import os
    import time
    while not os.path.exists(path):
        time.sleep(0.005)
    return "through"


def wait_until(cond, timeout=20.0):
    """Poll *cond* (a query of the user's view) until true; fail after *timeout* seconds."""
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)


def statuses(D, jobs):
    ids = {j.id for j in jobs}
    return sorted(j.status for j in D.jobs() if j.id in ids)


def held(D):
    s = D.stats()
    return s["running"], s["assigned"], s["paused"]


def test_assigned_running_and_paused_in_d_jobs_and_stats(cluster, tmp_path):
    """2 slots, 4 long jobs after a warm-up (the worker now prefetches): 2 running and 2 assigned;
    pausing the worker shows all 4 paused; resuming gives back 2 running and 2 assigned."""
    D, worker = cluster.client, cluster.workers[0]
    assert [j.wait(30).result for j in D.map(quick, range(20))] == list(range(20))
    flag = tmp_path / "open"
    jobs = D.map(gate, [str(flag)] * 4)
    wait_until(lambda: held(D) == (2, 2, 0))
    assert statuses(D, jobs) == ["assigned", "assigned", "running", "running"]
    assert all(j.started is not None for j in D.jobs() if j.status == "running")
    rt.blocking(lambda: worker.pause(True), timeout=10)
    wait_until(lambda: held(D) == (0, 0, 4))
    assert statuses(D, jobs) == ["paused"] * 4
    assert [j.status for j in D.jobs(status="paused")] == ["paused"] * 4
    rt.blocking(lambda: worker.pause(False), timeout=10)
    wait_until(lambda: held(D) == (2, 2, 0))
    flag.write_text("")
    assert [j.wait(30).result for j in jobs] == ["through"] * 4


@pytest.mark.normal_latency
def test_start_marks_are_few_for_many_short_jobs(cluster):
    """2,000 jobs of microseconds: the worker sends at most a few start marks per slot per
    START_MARK_DELAY, not one per job (the hot path stays as it was)."""
    from dsage_core.worker.pool import START_MARK_DELAY
    pool = cluster.workers[0].pool
    marks = []
    orig = pool.report

    def counting(events, hold=0.0):
        marks.extend(e for e in events if e[0] == "start")
        return orig(events, hold)
    pool.report = counting
    try:
        t0 = time.monotonic()
        jobs = cluster.client.map(quick, range(2000))
        assert [j.wait(60).result for j in jobs][-1] == 1999
        elapsed = time.monotonic() - t0
    finally:
        pool.report = orig
    bound = 2 * (elapsed / START_MARK_DELAY + 2)
    assert len(marks) <= bound, (len(marks), elapsed)


def test_a_long_job_is_running_with_its_start_time(cluster, tmp_path):
    """A job a child runs shows running (not assigned) within a fraction of a second, with a start
    time, while it still runs."""
    D = cluster.client
    flag = tmp_path / "open"
    (job,) = D.map(gate, [str(flag)])
    t0 = time.time()
    wait_until(lambda: statuses(D, [job]) == ["running"], timeout=10)
    (info,) = [j for j in D.jobs() if j.id == job.id]
    assert info.started is not None and t0 - 1 <= info.started <= time.time()
    flag.write_text("")
    assert job.wait(30).result == "through"
