"""Watchers and pushes alone: who is handed which changed jobs, and how long a push may wait."""
from types import SimpleNamespace

import pytest

from dsage_core.server.watchers import PUSH_HOLD_MAX, Watchers, push_hold


class Session:
    """A client session: records each push it is handed."""

    def __init__(self):
        self.pushes = []

    def push_jobs(self, jobs, hold):
        self.pushes.append(([j.id for j in jobs], hold))


def job(jid, owner="alice", started=None, finished=None):
    return SimpleNamespace(id=jid, owner=owner, started=started, finished=finished)


def test_notify_hands_each_session_only_what_it_follows():
    """A session watching job 1 hears of job 1 only; one following alice hears of all of hers."""
    w = Watchers({})
    by_id, by_owner, other = Session(), Session(), Session()
    w.watch([1], by_id)
    w.watch_owner("alice", by_owner, True)
    w.watch_owner("bob", other, True)
    w.notify([job(1), job(2)], 0.01)
    assert by_id.pushes == [([1], 0.01)] and by_owner.pushes == [([1, 2], 0.01)] and other.pushes == []


def test_forget_and_ended_stop_pushes():
    """A forgotten session and the watches of ended jobs leave no trace."""
    w = Watchers({})
    s, t = Session(), Session()
    w.watch([1, 2], s)
    w.watch([2], t)
    w.watch_owner("alice", s, True)
    w.forget(s)
    assert w.by_job == {2: {t}} and w.by_owner == {} and not w.follows_owner("alice")
    w.ended([job(2)])
    w.notify([job(2)])
    assert w.by_job == {} and s.pushes == t.pushes == []


def test_the_jobs_of_one_watch_share_a_set_a_second_watcher_does_not_leak():
    """A batch's jobs share one frozen set of watchers; a second session watching one of them
    (or a forgotten one) changes that job's watchers only."""
    w = Watchers({})
    s, t = Session(), Session()
    w.watch([1, 2, 3], s)
    assert w.by_job[1] is w.by_job[2] is w.by_job[3] and w.by_job[1] == {s}
    w.watch([2], t)
    w.watch([3], s)   # already watching: unchanged
    assert w.by_job == {1: {s}, 2: {s, t}, 3: {s}}
    w.notify([job(1), job(2), job(3)])
    assert s.pushes == [([1, 2, 3], 0.0)] and t.pushes == [([2], 0.0)]
    w.forget(t)
    assert w.by_job == {1: {s}, 2: {s}, 3: {s}}


@pytest.mark.normal_latency
def test_push_hold_only_for_jobs_that_ran_a_while():
    """Short jobs are pushed at once; longer ones may wait a multiple of their run, capped."""
    assert push_hold(None) == 0.0 and push_hold(0.001) == 0.0
    assert push_hold(0.004) == 0.02 and push_hold(60.0) == PUSH_HOLD_MAX


def test_hold_for_is_zero_for_an_owner_with_nothing_left():
    """A batch's results wait only while their owner has more jobs to come, by the shortest run."""
    queued = {"alice": 3}
    w = Watchers(queued)
    batch = [job(1, started=0.0, finished=0.01), job(2, started=0.0, finished=0.004)]
    assert w.hold_for(batch) == push_hold(0.004)
    queued["alice"] = 0
    assert w.hold_for(batch) == 0.0
    assert Watchers({"alice": 1}).hold_for([job(3)]) == 0.0   # never started: no hold
