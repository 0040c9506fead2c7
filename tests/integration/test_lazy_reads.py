"""Lazy reading of children's pipes (worker/children.py, LAZY_*): a worker whose children hold
several jobs of some milliseconds reads their dones on a timer instead of waking for each one.
Nothing may be lost, reordered, dated wrongly, run past its timeout or escape a kill because of it."""
import time

import pytest

pytestmark = pytest.mark.timeout(90)


def nap(x):
    import time
    time.sleep(30 if x == "long" else 0.02)
    return x


def nap_and_clock(x):
    import time
    time.sleep(0.02)
    return x, time.time()


def test_lazily_read_children_finish_everything_in_order(cluster):
    pool = cluster.workers[0].pool
    before = pool.lazy_reads
    jobs = cluster.client.map(nap_and_clock, range(40))
    assert [j.wait(30).result[0] for j in jobs] == list(range(40))
    assert pool.lazy_reads > before, "the children were never read lazily"
    # dated by the child's own end times, not by when the monitor read them
    late = [j.finished - j.result[1] for j in jobs]
    assert all(0 <= d < 0.01 for d in late), late


def test_timeout_of_a_job_behind_lazily_read_ones(cluster):
    """The timeout clock starts when the job really started (the done before it says when), and
    a lazy read is never later than the moment a queued job could time out."""
    args = list(range(10)) + ["long"] + list(range(10, 20))
    jobs = cluster.client.map(nap, args, timeout=2)
    for j in jobs:
        j.wait(60)
    long = jobs[10]
    assert long.status == "timed_out", long.error
    assert long.finished - long.started < 2 + 0.75
    assert [j.result for j in jobs if j is not long] == list(range(20))


def test_kill_of_a_job_in_a_lazily_read_child(cluster):
    args = list(range(10)) + ["long"] + list(range(10, 20))
    jobs = cluster.client.map(nap, args)
    jobs[9].wait(30)
    t = time.monotonic()
    assert jobs[10].kill() is True
    assert jobs[10].wait(30).status == "killed"
    assert time.monotonic() - t < 10
    assert [j.wait(30).result for j in jobs if j is not jobs[10]] == list(range(20))
