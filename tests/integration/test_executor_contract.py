"""``D.executor()`` keeps the Executor/Future contract (our own tests of the cases CPython's
test_concurrent_futures names, so they run without CPython's test suite too; see
test_executor_cpython.py), and cancelling really kills the job on the server."""
import concurrent.futures as cf
import gc
import time
import weakref

import pytest

pytestmark = pytest.mark.timeout(120)


class Thing:
    """A result object whose lifetime the tests follow."""

    def method(self):
        return 1


def make_thing(_):
    return Thing()


def blocker():
    time.sleep(600)


def _busy(D, n=4):
    """Jobs that keep every slot busy (and fill the prefetch) until killed."""
    return [D.submit(blocker) for _ in range(n)]


def test_map_exception(cluster):
    """map yields the good values, then raises the first failing item's own exception."""
    with cluster.client.executor() as ex:
        it = ex.map(divmod, [1, 1, 1, 1], [2, 3, 0, 5])
        assert next(it) == (0, 1) and next(it) == (0, 1)
        with pytest.raises(ZeroDivisionError):
            next(it)


@pytest.mark.parametrize("chunksize", [1, 3])
def test_free_reference(cluster, chunksize):
    """The map iterator keeps no reference to the results it handed out."""
    with cluster.client.executor() as ex:
        for obj in ex.map(make_thing, range(10), chunksize=chunksize):
            wr = weakref.ref(obj)
            del obj
            gc.collect()
            assert wr() is None


def test_no_stale_references(cluster):
    """A discarded future keeps neither its function nor its arguments alive."""
    with cluster.client.executor() as ex:
        thing = Thing()
        wr = weakref.ref(thing)
        fut = ex.submit(thing.method)
        del thing
        gc.collect()
        assert wr() is None
        assert fut.result(30) == 1


def test_map_timeout(cluster):
    """The timeout counts from the map call; the items before it are yielded; what has not
    started is cancelled when the iterator gives up."""
    D = cluster.client
    with D.executor() as ex:
        results = []
        t0 = time.monotonic()
        with pytest.raises(cf.TimeoutError):
            for r in ex.map(time.sleep, [0, 0, 600], timeout=2):
                results.append(r)
        assert results == [None, None] and time.monotonic() - t0 < 30
        for j in D.jobs(status="running"):
            j.kill()


def test_future_cancel_kills_a_queued_job_on_the_server(cluster):
    """cancel() of a future whose job waits kills it on the server; a finished one is not cancelled."""
    D = cluster.client
    busy = _busy(D)
    try:
        with D.executor() as ex:
            fut = ex.submit(pow, 2, 3)
            assert fut.dsage_job.status in ("queued", "assigned")
            assert fut.cancel() and fut.cancelled() and fut.cancel()
            assert fut.dsage_job.wait(30).status == "killed"
            assert D.get_job(fut.dsage_job.id).status == "killed"
            with pytest.raises(cf.CancelledError):
                fut.result()
            done = ex.submit(pow, 2, 2)
            for j in busy:   # slots for it
                j.kill()
            assert done.result(30) == 4 and not done.cancel() and not done.cancelled()
    finally:
        for j in busy:
            j.kill()


def test_cancel_futures(cluster):
    """shutdown(cancel_futures=True) kills the jobs that have not started and waits for the rest,
    which complete normally."""
    D = cluster.client
    ex = D.executor()
    fs = [ex.submit(time.sleep, 0.2) for _ in range(30)]
    assert fs[0].result(30) is None   # some ran before the shutdown
    ex.shutdown(cancel_futures=True)
    cancelled = [f for f in fs if f.cancelled()]
    others = [f for f in fs if not f.cancelled()]
    assert len(cancelled) > 10 and others
    assert all(f.done() and f.exception() is None for f in others)
    # killed on the server (one handed to a worker ahead of time may just have finished first)
    ended = [f.dsage_job.wait(30).status for f in cancelled]
    assert set(ended) <= {"killed", "completed"} and ended.count("killed") > 10
    with pytest.raises(RuntimeError, match="after shutdown"):
        ex.submit(pow, 2, 2)


def test_shutdown_race_and_map_jobs_are_waited_for(cluster):
    """shutdown() right after map waits for the map's jobs, held or not."""
    D = cluster.client
    ex = D.executor()
    it = ex.map(str, [2] * 5)
    ids = list(ex._map_ids)
    ex.shutdown()
    assert {D.get_job(i).status for i in ids} == {"completed"}
    assert list(it) == ["2"] * 5


def test_max_workers_must_be_positive(cluster):
    """max_workers is accepted as Executor constructors take it, and refused when not positive."""
    for n in (0, -1):
        with pytest.raises(ValueError, match="max_workers must be greater than 0"):
            cluster.client.executor(max_workers=n)
    cluster.client.executor(max_workers=4).shutdown()
