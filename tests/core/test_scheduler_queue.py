"""The scheduler's job queue alone: its batch paths (push_many, the one-heap pop) take and give
exactly what the one-by-one paths do."""
import random

from dsage_core.model.resources import Request
from dsage_core.scheduler import SchedJob
from dsage_core.scheduler.state import JobQueue


def _jobs(rng, ids):
    classes = [(False, frozenset()), (True, frozenset()), (False, frozenset({"sage"}))]
    out = []
    for i in ids:
        trusted, needs = rng.choice(classes)
        res = Request(2, 0, 0) if rng.random() < 0.1 else None
        out.append(SchedJob(i, rng.choice([0, 0, 1, -1]), trusted, needs, res=res))
    return out


def _reference_pop(q, can_run, n):
    """pop_many through its general path (several heaps scanned per job)."""
    return q.pop_many(can_run, n, skip=lambda jid: False)


def test_push_many_queues_what_push_one_by_one_queues():
    """Same classes, tokens, sized count and order of taking as single pushes."""
    rng = random.Random(5)
    jobs = _jobs(rng, range(1, 400))
    a, b = JobQueue(), JobQueue()
    for j in jobs:
        a.push(j)
    b.push_many(jobs)
    a.validate()
    b.validate()
    assert a._token == b._token and a._class == b._class and a.sized == b.sized
    everything = lambda c: True  # noqa: E731
    assert _reference_pop(a, everything, 1000) == _reference_pop(b, everything, 1000)


def test_one_heap_pop_takes_the_best_live_jobs_in_order():
    """With one eligible class and no skip, the fast pop (sorting or popping, by share) takes the
    same jobs in the same order as the general path, skipping removed (stale) ones."""
    rng = random.Random(7)
    for n in (0, 1, 3, 50, 120, 500):
        jobs = [SchedJob(i, rng.choice([0, 0, 2])) for i in rng.sample(range(1, 1000), 300)]
        a, b = JobQueue(), JobQueue()
        a.push_many(jobs)
        b.push_many(jobs)
        for jid in [j.id for j in jobs][::7]:
            a.remove(jid)
            b.remove(jid)
        plain = lambda c: len(c) == 2  # noqa: E731
        got = a.pop_many(plain, n)
        assert got == _reference_pop(b, plain, n)
        assert len(got) == min(n, len(b) + len(got))
        a.validate()
        assert a._token == b._token
        assert a.pop_many(plain, 1000) == _reference_pop(b, plain, 1000)   # what is left, too
