"""The client's cost stays flat as work grows (issue 18): job states whose handles are gone are
forgotten, whether the handles go before or after their jobs finish; live handles keep theirs."""
import gc
import threading

import pytest

from dsage_core.model.job import TERMINAL

pytestmark = pytest.mark.timeout(180)

N = 3000


def noop(x):
    return x


class Finished:
    """Counts terminal updates the client pushes to subscribers (its public event API)."""

    def __init__(self, client):
        self.ids = set()
        self.cond = threading.Condition()
        self.unsubscribe = client.subscribe(self._event)

    def _event(self, kind, payload):
        if kind == "jobs":
            with self.cond:
                self.ids.update(i.id for i in payload if i.status in TERMINAL)
                self.cond.notify_all()

    def wait_for(self, ids, timeout):
        with self.cond:
            assert self.cond.wait_for(lambda: ids <= self.ids, timeout), f"{len(ids - self.ids)} not finished"


def settled_count(D):
    """The client's state count once the reactor thread is idle (a round trip) and garbage is collected."""
    D.stats()
    gc.collect()
    return D.aclient.state_count()


def test_states_of_dropped_handles_are_forgotten(cluster):
    """N jobs whose handles are dropped while they still run: once they finish the client keeps no
    state for them; the few handles still held get their results, and then go too."""
    D = cluster.client
    before = settled_count(D)
    done = Finished(D.aclient)
    try:
        jobs = D.map(noop, range(N))
        ids = {j.id for j in jobs}
        kept = jobs[::600]
        assert D.aclient.state_count() >= before + N   # unfinished ones are the client's to keep
        del jobs
        done.wait_for(ids, 150)
    finally:
        done.unsubscribe()
    assert settled_count(D) == before + len(kept)
    assert [j.wait(30).result for j in kept] == list(range(0, N, 600))
    assert all(D.aclient.job_state(j.id) is j._s for j in kept)
    kept_ids = [j.id for j in kept]
    del kept
    assert settled_count(D) == before
    assert all(D.aclient.job_state(i) is None for i in kept_ids)
    assert D.get_job(kept_ids[1]).result == 600     # still on the server


def test_states_of_finished_jobs_go_with_their_last_handle(cluster):
    """Handles dropped after their jobs finished (results read) leave no state behind either."""
    D = cluster.client
    before = settled_count(D)
    jobs = D.map(noop, range(N))
    assert sum(j.wait(60).result for j in jobs) == N * (N - 1) // 2
    assert settled_count(D) == before + N
    del jobs
    assert settled_count(D) == before
