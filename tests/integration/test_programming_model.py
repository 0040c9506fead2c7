"""Programming model over real processes: DistributedFunction, scatter-gather, Executor, asyncio,
progress from inside jobs, and Sage mode."""
import asyncio
import concurrent.futures as cf

import pytest

import dsage_core as dsage
from dsage_core.client.payload import SubmitError
from dsage_core.distributed import DistributedFunctionError

pytestmark = pytest.mark.timeout(90)


def triple(x):
    return 3 * x


def fails_on_odd(x):
    if x % 2:
        raise ValueError(f"odd {x}")
    return x


class Doubling(dsage.DistributedFunction):
    """Sums 2**k for k < n, submitting the next job from process_result (adaptive)."""

    def __init__(self, n):
        super().__init__()
        self.n, self.total, self.k = n, 0, 0

    def start(self):
        self.submit(pow, 2, 0)

    def process_result(self, job):
        self.total += job.result
        self.k += 1
        if self.k < self.n:
            self.submit(pow, 2, self.k)
        else:
            self.finish(self.total)


class Stops(Doubling):
    """Saves itself to disk after three results and stops, as a client that goes away would."""

    path = None

    def process_result(self, job):
        super().process_result(job)
        if self.k == 3 and not self.done:
            self.save(self.path)
            raise KeyboardInterrupt  # the user's session dies here


class Failing(dsage.DistributedFunction):
    def start(self):
        for i in range(6):
            self.submit(fails_on_odd, i)

    def process_result(self, job):
        self.result = (self.result or 0) + job.result


def test_distributed_function_adds_jobs_from_results(cluster):
    """process_result can submit more jobs; run() returns the finished result and progress is 1."""
    f = Doubling(6)
    assert f.run(cluster.client, timeout=60) == 2**6 - 1
    assert f.done and f.progress == 1.0 and f.jobs_submitted == 6


def test_distributed_function_save_and_restore(cluster, tmp_path):
    """A computation saved mid-run resumes in a new client and ends with the right answer."""
    f = Stops(8)
    Stops.path = tmp_path / "state.dsage"
    with pytest.raises(KeyboardInterrupt):
        f.run(cluster.client, timeout=60)
    other = cluster.connect()
    try:
        g = Doubling.restore(Stops.path)
        g.__class__ = Doubling  # continue with the plain behaviour
        assert g.run(other, timeout=60) == 2**8 - 1
    finally:
        other.shutdown()


def test_distributed_function_failures_end_with_a_report(cluster):
    """Failing jobs do not hang the computation; the report names them."""
    f = Failing()
    assert f.run(cluster.client, timeout=60) == 0 + 2 + 4
    assert len(f.failures) == 3 and "ValueError" in f.error_report
    with pytest.raises(DistributedFunctionError, match="3 of 6 jobs"):
        Failing().run(cluster.client, timeout=60, raise_on_failure=True)


def test_scatter_queue_poll_add_and_iterate(cluster):
    """Tasks go down, results come up with their index; poll never blocks; more tasks can be added."""
    q = cluster.client.scatter(triple, [((i,), {}) for i in range(5)])
    first = q.poll()  # returns at once with whatever is done (maybe nothing)
    assert all(r.ok for r in first)
    q.add(10)
    results = dict(first + q.wait(60))
    assert results == {0: 0, 1: 3, 2: 6, 3: 9, 4: 12, 5: 30}
    assert q.pending == 0 and q.poll() == []


def test_executor_map_equals_builtin_map(cluster):
    """Executor.map gives what map gives, with and without chunking; submit returns a Future."""
    with cluster.client.executor() as ex:
        assert list(ex.map(triple, range(30))) == list(map(triple, range(30)))
        assert list(ex.map(triple, range(30), chunksize=7)) == list(map(triple, range(30)))
        fut = ex.submit(triple, 14)
        assert isinstance(fut, cf.Future) and fut.result(30) == 42
        bad = ex.submit(fails_on_odd, 3)
        with pytest.raises(Exception, match="odd 3"):
            bad.result(30)


def test_wait_first_completed(cluster):
    """dsage.wait with FIRST_COMPLETED returns as soon as one job is done."""
    slow = cluster.client.eval("import time\ntime.sleep(20)")
    fast = cluster.client("1")
    done, not_done = dsage.wait([slow, fast], timeout=30, return_when=dsage.FIRST_COMPLETED)
    assert fast in done and slow in not_done
    slow.kill()


def test_await_under_asyncio(cluster):
    """Jobs are awaitable, and eval_async works inside a running asyncio loop."""
    async def main():
        j = await cluster.client("6*7")
        k = await cluster.client.eval_async("DSAGE_RESULT = 'async'")
        return j.result, k.result
    assert asyncio.run(main()) == (42, "async")


def test_progress_values_arrive_in_order(cluster):
    """progress() inside a job updates job.progress live; values arrive in order and end at 1.0."""
    seen = []
    code = ("import dsage_core, time\n"
            "for i in range(1, 6):\n"
            "    dsage_core.progress(i / 5, f'step {i}')\n"
            "    time.sleep(0.15)\n"
            "DSAGE_RESULT = 'ok'")
    j = cluster.client.eval(code)
    client = cluster.client.aclient
    client.subscribe(lambda kind, infos: kind == "jobs" and seen.extend(
        (i.progress, i.progress_message) for i in infos if i.id == j.id and i.progress is not None))
    assert j.wait(60).result == "ok"
    values = [p for p, _ in seen]
    assert values == sorted(values) and values[-1] == 1.0 and len(values) >= 3


def test_sage_job(cluster):
    """kind='sage' runs preparsed Sage code and returns plain data (or the extra is named)."""
    from dsage_core.client.sage_check import sage_available
    if not sage_available():
        with pytest.raises(SubmitError, match=r"dsage\[sage\]"):
            cluster.client("factor(2^64+1)", kind="sage")
        pytest.skip("Sage extra not installed: checked the submit-time error instead")
    j = cluster.client("factor(2^64+1)", kind="sage").wait(90)
    assert j.status == "completed", j.error
    assert str(j.result) == "274177 * 67280421310721"
    # 6 * n: always composite with at least two primes, so the factorisation always shows a "*"
    j = cluster.client.eval("DSAGE_RESULT = factor(6 * randint(10^20, 10^30))", kind="sage").wait(90)
    assert j.status == "completed" and "*" in str(j.result)
    assert cluster.client("2^10", kind="sage").wait(60).result == 1024


def test_batch_progress_and_eta(cluster):
    """Batches report done/total and an ETA that reaches 0 when everything finished."""
    q = cluster.client.scatter(triple, [((i,), {}) for i in range(8)])
    q.wait(60)
    p = q.progress
    assert (p["done"], p["total"], p["fraction"], p["eta"]) == (8, 8, 1.0, 0.0)
    import dsage_core
    jobs = [cluster.client.eval("import time\ntime.sleep(5)") for _ in range(4)]
    mid = dsage_core.batch_progress(jobs)
    assert mid["done"] == 0 and mid["eta"] is None
    for j in jobs:
        j.kill()


def test_sage_jobs_wait_visibly_without_a_sage_worker(tmp_path):
    """A Sage job on a cluster whose workers cannot run Sage says why it waits."""
    from tests.integration.cluster import start_cluster
    c = start_cluster(tmp_path / "home", workers=0)
    try:
        from dsage_core.client.sage_check import sage_available
        if not sage_available():
            pytest.skip("Sage extra not installed")
        c.add_worker(1)
        c.server.core.scheduler.workers[next(iter(c.server.core.scheduler.workers))].capabilities = frozenset()
        j = c.client("factor(6)", kind="sage")
        assert "no connected worker can run sage jobs" in j.waiting_reason
        j.kill()
    finally:
        c.stop()


def test_gather_values_in_input_order_and_first_failure(cluster):
    """D.gather returns values in the order of the jobs given, and raises the exception one of them raised."""
    D = cluster.client
    jobs = [D.submit(triple, x) for x in (5, 1, 4)]
    assert D.gather(list(reversed(jobs))) == [12, 3, 15]
    assert D.gather([]) == []
    with pytest.raises(ValueError, match="odd 3"):
        D.gather([D.submit(fails_on_odd, 2), D.submit(fails_on_odd, 3)])


def test_gather_raises_a_failure_without_waiting_for_the_rest(cluster):
    """D.gather raises as soon as one job failed, while another job is still running (fail-fast)."""
    import time
    D = cluster.client
    slow = D.submit(time.sleep, 600)
    try:
        with pytest.raises(ValueError, match="odd 5"):
            D.gather([slow, D.submit(fails_on_odd, 5)], timeout=60)
        assert not slow.done()
    finally:
        D.kill(slow.id)
