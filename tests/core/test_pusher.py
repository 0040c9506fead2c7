"""Pushing job updates to a client: results at once, or held briefly to share a call."""
from types import SimpleNamespace

import pytest

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from dsage_core.protocol import envelope
from dsage_core.server.core import push_hold
from dsage_core.server.remote import KeyedPusher


class FakeRef:
    def __init__(self):
        self.calls = []

    def callRemote(self, name, data):
        d = Deferred()
        self.calls.append(([u[0] for u in envelope.unpack(data)], d))
        return d

    def callRemoteOnly(self, name, data):
        self.calls.append(([u[0] for u in envelope.unpack(data)], None))

    def isConnected(self):
        return True


def job(jid, status):
    return SimpleNamespace(id=jid, status=status, result=None, result_size=0, announced=True,
                           update=lambda: [jid, status, None, None, None, None, None, None, None, "", 0])


@pytest.mark.normal_latency
def test_results_go_at_once_running_updates_wait():
    clock, ref = Clock(), FakeRef()
    p = KeyedPusher(ref, clock)
    p.push_jobs([job(1, "running")])
    assert ref.calls == []
    p.push_jobs([job(2, "completed")])
    assert [c[0] for c in ref.calls] == [[1, 2]]
    assert clock.getDelayedCalls() == []


def test_held_results_share_one_call_and_never_wait_longer_than_the_hold():
    clock, ref = Clock(), FakeRef()
    p = KeyedPusher(ref, clock)
    p.push_jobs([job(1, "completed")], hold=0.01)
    clock.advance(0.004)
    p.push_jobs([job(2, "completed")], hold=0.01)
    assert ref.calls == []
    clock.advance(0.006)
    assert [c[0] for c in ref.calls] == [[1, 2]]
    assert clock.getDelayedCalls() == []


@pytest.mark.normal_latency
def test_a_hold_may_outlast_the_running_updates_delay_but_not_a_running_update():
    """A held result waits its whole hold (longer than running updates' 50 ms), unless a running
    update is pending: then both go when that one is due."""
    clock, ref = Clock(), FakeRef()
    p = KeyedPusher(ref, clock)
    p.push_jobs([job(1, "completed")], hold=0.09)
    clock.advance(0.06)
    assert ref.calls == []
    clock.advance(0.03)
    assert [c[0] for c in ref.calls] == [[1]]
    p.push_jobs([job(2, "completed"), job(3, "running")], hold=0.09)
    clock.advance(0.05)
    assert [c[0] for c in ref.calls][1:] == [[2, 3]]


def test_results_late_in_a_hold_go_at_once_with_the_held_ones():
    clock, ref = Clock(), FakeRef()
    p = KeyedPusher(ref, clock)
    p.push_jobs([job(1, "completed")], hold=0.01)
    clock.advance(0.006)
    p.push_jobs([job(2, "completed")], hold=0.01)   # 4 ms left of 10: no timer wake-up for them
    assert [c[0] for c in ref.calls] == [[1, 2]]
    assert clock.getDelayedCalls() == []


@pytest.mark.normal_latency
def test_a_lone_push_needs_no_answer_but_a_busy_stream_is_paced_by_answers():
    """After a quiet spell a push goes without an answer; pushes right after it wait for answers."""
    clock, ref = Clock(), FakeRef()
    p = KeyedPusher(ref, clock)
    p.push_jobs([job(1, "completed")])
    assert ref.calls == [([1], None)]                 # no answer asked
    p.push_jobs([job(2, "completed")])                # soon after: answered
    p.push_jobs([job(3, "completed")])                # piles up behind it
    p.push_jobs([job(4, "completed")])
    assert [c[0] for c in ref.calls] == [[1], [2]] and ref.calls[1][1] is not None
    ref.calls[1][1].callback(None)
    assert [c[0] for c in ref.calls] == [[1], [2], [3, 4]]
    clock.advance(1.0)
    p.push_jobs([job(5, "completed")])                # quiet again, but one call still unanswered
    assert len(ref.calls) == 3
    ref.calls[2][1].callback(None)
    assert [c[0] for c in ref.calls][-1] == [5]


def test_an_urgent_result_takes_held_ones_along():
    clock, ref = Clock(), FakeRef()
    p = KeyedPusher(ref, clock)
    p.push_jobs([job(1, "completed")], hold=0.02)
    p.push_jobs([job(2, "failed")])
    assert [c[0] for c in ref.calls] == [[1, 2]]
    assert clock.getDelayedCalls() == []


@pytest.mark.normal_latency
def test_push_hold_policy():
    assert push_hold(None) == 0.0 and push_hold(0.001) == 0.0
    assert push_hold(0.01) == pytest.approx(0.05) and push_hold(3.0) == 0.1


@pytest.mark.normal_latency
def test_a_slow_client_is_probed_every_eight_pushes():
    clock, ref = Clock(), FakeRef()
    p = KeyedPusher(ref, clock)
    for i in range(10):
        p.push_jobs([job(i, "completed")])
        clock.advance(0.002)
    assert [c[1] is None for c in ref.calls] == [True] * 8 + [False]
    assert list(p.pending) == [9]          # waits for the answer


def test_pushes_wait_for_result_files_read_off_the_reactor_and_keep_their_order():
    """materialize may return a Deferred (result files read on a thread): nothing is sent until
    it fires, and what came meanwhile goes after it, never before."""
    clock, ref = Clock(), FakeRef()
    reads = []

    def materialize(updates):
        d = Deferred()
        reads.append(d)
        return d.addCallback(lambda _: updates)
    p = KeyedPusher(ref, clock, materialize=materialize)
    p.push_jobs([job(1, "completed")])
    p.push_jobs([job(2, "completed")])
    assert ref.calls == [] and len(reads) == 1
    reads[0].callback(None)
    assert [c[0] for c in ref.calls] == [[1]]
    if ref.calls[0][1] is not None:
        ref.calls[0][1].callback(None)   # an answered push: the next goes after the answer
    assert len(reads) == 2
    reads[1].callback(None)
    assert [c[0] for c in ref.calls] == [[1], [2]]


@pytest.mark.normal_latency
def test_a_finished_job_is_pushed_only_once_its_commit_is_done():
    """A job pending as 'running' that finished in memory (commit in flight) is not sent from memory
    by an unrelated push: its result goes after its commit, once, never before the client's ids."""
    clock, ref = Clock(), FakeRef()
    p = KeyedPusher(ref, clock)
    j1 = SimpleNamespace(id=1, status="running", result=None, result_size=0, announced=False)
    j1.update = lambda: [1, j1.status, None, None, None, None, None, None, None, "", 0]
    p.push_jobs([j1])                       # its running update waits (lazy)
    j1.status = "completed"                 # the report came; the commit is in flight
    p.push_jobs([job(2, "completed")])      # another job's committed result goes at once...
    assert [c[0] for c in ref.calls] == [[2]]   # ...without job 1's uncommitted result
    ref.calls[0][1] and ref.calls[0][1].callback(None)
    j1.announced = True                     # committed
    p.push_jobs([j1])
    assert [c[0] for c in ref.calls][-1] == [1]
    assert sum(c[0].count(1) for c in ref.calls) == 1


def test_an_assigned_update_waits_its_delay_for_the_jobs_result_which_replaces_it():
    """A just-dispatched job's 'assigned' update is not taken along by another job's result: its
    own result, coming within the delay, replaces it (one update for the job, its end)."""
    clock, ref = Clock(), FakeRef()
    p = KeyedPusher(ref, clock, lazy_delay=0.05)
    j1 = SimpleNamespace(id=1, status="assigned", result=None, result_size=0, announced=True)
    j1.update = lambda: [1, j1.status, None, None, None, None, None, None, None, "", 0]
    sent = []
    real_update = j1.update
    j1.update = lambda: (sent.append(j1.status), real_update())[1]
    p.push_jobs([j1])
    p.push_jobs([job(2, "completed")])
    assert [c[0] for c in ref.calls] == [[2]]
    clock.advance(0.02)
    j1.status = "completed"
    p.push_jobs([j1])
    if ref.calls[-1][1] is not None:
        ref.calls[-1][1].callback(None)
    assert [c[0] for c in ref.calls] == [[2], [1]] and sent == ["completed"]
    clock.advance(1)
    assert len(ref.calls) == 2 and not p.young


def test_an_assigned_update_not_replaced_goes_when_its_delay_is_over():
    """A longer job's 'assigned' update goes after the delay (alone, or with what is pending), and
    a running update of the job replaces a waiting assigned one at once."""
    clock, ref = Clock(), FakeRef()
    p = KeyedPusher(ref, clock, lazy_delay=0.05)
    p.push_jobs([job(1, "assigned")])
    clock.advance(0.03)
    p.push_jobs([job(2, "assigned")])
    assert ref.calls == []
    clock.advance(0.02)
    assert [c[0] for c in ref.calls] == [[1]]     # job 2's delay is not over yet
    if ref.calls[-1][1] is not None:
        ref.calls[-1][1].callback(None)
    clock.advance(0.03)
    assert [c[0] for c in ref.calls] == [[1], [2]]
    if ref.calls[-1][1] is not None:
        ref.calls[-1][1].callback(None)
    p.push_jobs([job(3, "assigned")])
    p.push_jobs([job(3, "running"), job(4, "completed")])   # running: no longer waits as assigned
    assert [c[0] for c in ref.calls][-1] == [3, 4] and not p.young
