"""The pure scheduler: plain asserts on returned actions, no reactor, no clock."""
import random

import pytest

from dsage_core.scheduler import InvalidTransition, SchedJob, Scheduler, actions as act, events as ev


def dispatched(actions):
    return {a.worker_id: [j for j, _ in a.jobs] for a in actions if isinstance(a, act.Dispatch)}


def sched(**kw):
    s = Scheduler(**kw)
    return s


def test_priority_then_fifo():
    """Higher priority first, then lower id first."""
    s = sched()
    s.handle(ev.JobsSubmitted([SchedJob(1, 0), SchedJob(2, 5), SchedJob(3, 0), SchedJob(4, 5)]))
    out = s.handle(ev.WorkerJoined("w", 4, False, frozenset(), 0.0))
    assert dispatched(out) == {"w": [2, 4, 1, 3]}
    s.validate()


def test_trusted_only_never_to_anonymous_and_does_not_block():
    """A trusted-only job at the head does not stop an anonymous worker from taking other jobs."""
    s = sched()
    s.handle(ev.WorkerJoined("anon", 2, True, frozenset(), 0.0))
    out = s.handle(ev.JobsSubmitted([SchedJob(1, 9, trusted_only=True), SchedJob(2), SchedJob(3)]))
    assert dispatched(out) == {"anon": [2, 3]}
    assert s.waiting_reason(1) == "trusted-only: waiting for a keyed (non-anonymous) worker"
    out = s.handle(ev.WorkerJoined("keyed", 1, False, frozenset(), 0.0))
    assert dispatched(out) == {"keyed": [1]}


def test_needs_capabilities():
    """Sage jobs go only to workers that can run Sage, and wait visibly otherwise."""
    s = sched()
    s.handle(ev.WorkerJoined("plain", 2, False, frozenset(), 0.0))
    out = s.handle(ev.JobsSubmitted([SchedJob(1, needs=frozenset({"sage"}))]))
    assert dispatched(out) == {}
    assert s.waiting_reason(1) == "no connected worker can run sage jobs"
    out = s.handle(ev.WorkerJoined("sage", 1, False, frozenset({"sage"}), 0.0))
    assert dispatched(out) == {"sage": [1]}


def test_requeue_on_worker_left_and_lost_after_max_failures():
    """A worker's death requeues its jobs; past max_failures a job is lost."""
    s = sched(max_failures=1)
    s.handle(ev.JobsSubmitted([SchedJob(1)]))
    s.handle(ev.WorkerJoined("a", 1, False, frozenset(), 0.0))
    out = s.handle(ev.WorkerLeft("a"))
    assert act.Requeued([(1, 1)]) in out
    s.handle(ev.WorkerJoined("b", 1, False, frozenset(), 0.0))
    out = s.handle(ev.WorkerLeft("b"))
    assert act.Lost(1, 2) in out
    assert s.queued_count == 0 and s.running_count == 0
    s.validate()


def test_stale_and_duplicate_results_are_discarded():
    """Exactly one Accepted per job: a late result from an older attempt or a duplicate is discarded."""
    s = sched()
    s.handle(ev.JobsSubmitted([SchedJob(1)]))
    s.handle(ev.WorkerJoined("a", 1, False, frozenset(), 0.0))
    s.handle(ev.WorkerLeft("a"))
    s.handle(ev.WorkerJoined("b", 1, False, frozenset(), 0.0))
    assert s.job_location(1) == ("b", 2)
    out = s.handle(ev.JobsFinished("a", [(1, 1, 0.1)]))
    assert out == [act.Discarded(1, 1, "unknown worker")]
    out = s.handle(ev.JobsFinished("b", [(1, 2, 0.1)]))
    assert act.Accepted([1]) in out
    out = s.handle(ev.JobsFinished("b", [(1, 2, 0.1)]))
    assert out == [act.Discarded(1, 2, "not held by this worker")]


def test_kill_queued_and_running():
    """Killing a queued job removes it; killing a running one asks its worker."""
    s = sched()
    s.handle(ev.WorkerJoined("a", 1, False, frozenset(), 0.0))
    s.handle(ev.JobsSubmitted([SchedJob(1), SchedJob(2)]))
    out = s.handle(ev.KillRequested([1, 2, 99]))
    assert out == [act.KillOnWorker("a", 1, 1), act.KilledQueued(2)]
    assert s.running_count == 1


def test_lease_expiry_with_time_in_events():
    """A worker silent for longer than the lease loses its jobs; heartbeats keep it."""
    s = sched(lease_timeout=15)
    s.handle(ev.WorkerJoined("a", 1, False, frozenset(), 100.0))
    s.handle(ev.JobsSubmitted([SchedJob(1)]))
    assert s.handle(ev.Tick(110.0)) == []
    s.handle(ev.WorkerHeartbeat("a", 110.0))
    assert s.handle(ev.Tick(124.0)) == []
    out = s.handle(ev.Tick(126.0))
    assert out[0] == act.WorkerExpired("a") and act.Requeued([(1, 1)]) in out


def test_slots_change_and_pause():
    """Fewer slots or a pause stop new dispatches; more slots take more."""
    s = sched()
    s.handle(ev.WorkerJoined("a", 1, False, frozenset(), 0.0))
    s.handle(ev.JobsSubmitted([SchedJob(i) for i in range(1, 5)]))
    assert s.running_count == 1
    assert dispatched(s.handle(ev.WorkerSlotsChanged("a", 3))) == {"a": [2, 3]}
    s.handle(ev.WorkerPaused("a", True))
    assert dispatched(s.handle(ev.JobsFinished("a", [(1, 1, 1.0)]))) == {}
    assert dispatched(s.handle(ev.WorkerPaused("a", False))) == {"a": [4]}


def test_prefetch_grows_for_fast_jobs_only():
    """After short jobs a worker gets many jobs ahead; after long ones only a slot's worth."""
    s = sched()
    s.handle(ev.WorkerJoined("a", 2, False, frozenset(), 0.0))
    s.handle(ev.JobsSubmitted([SchedJob(i) for i in range(1, 3001)]))
    held = s.held_by("a")
    assert len(held) == 2
    s.handle(ev.JobsFinished("a", [(j, 1, 0.0001) for j in held]))
    assert len(s.held_by("a")) > 500
    slow = sched()
    slow.handle(ev.WorkerJoined("b", 2, False, frozenset(), 0.0))
    slow.handle(ev.JobsSubmitted([SchedJob(i) for i in range(1, 30)]))
    slow.handle(ev.JobsFinished("b", [(j, 1, 10.0) for j in slow.held_by("b")]))
    assert len(slow.held_by("b")) == 2


def test_fair_split_between_idle_workers():
    """A batch of four jobs and two idle 2-slot workers: two each."""
    s = sched()
    s.handle(ev.WorkerJoined("a", 2, False, frozenset(), 0.0))
    s.handle(ev.WorkerJoined("b", 2, False, frozenset(), 0.0))
    d = dispatched(s.handle(ev.JobsSubmitted([SchedJob(i) for i in range(1, 5)])))
    assert sorted(len(v) for v in d.values()) == [2, 2]


def test_invalid_transitions():
    """Duplicate job ids and duplicate worker ids are caller bugs."""
    s = sched()
    s.handle(ev.JobsSubmitted([SchedJob(1)]))
    with pytest.raises(InvalidTransition):
        s.handle(ev.JobsSubmitted([SchedJob(1)]))
    s.handle(ev.WorkerJoined("a", 1, False, frozenset(), 0.0))
    with pytest.raises(InvalidTransition):
        s.handle(ev.WorkerJoined("a", 1, False, frozenset(), 0.0))


def test_random_flow_every_job_accepted_exactly_once():
    """10,000 jobs, workers joining, dying and finishing at random: each job accepted once or lost."""
    rng = random.Random(42)
    s = sched(max_failures=3)
    s.handle(ev.JobsSubmitted([SchedJob(i, rng.randint(0, 3)) for i in range(1, 10001)]))
    accepted, lost, seq = [], [], 0
    for step in range(100000):
        if not s.jobs:
            break
        r = rng.random()
        if r < 0.01 or not s.workers:
            seq += 1
            out = s.handle(ev.WorkerJoined(f"w{seq}", rng.randint(1, 4), rng.random() < 0.3, frozenset(), 0.0))
        elif r < 0.015:
            out = s.handle(ev.WorkerLeft(rng.choice(s.worker_ids())))
        else:
            w = rng.choice(s.worker_ids())
            held = s.held_by(w)[: rng.randint(1, 50)]
            out = s.handle(ev.JobsFinished(w, [(j, s.job_location(j)[1], 0.001) for j in held]))
        for a in out:
            if isinstance(a, act.Accepted):
                accepted += a.job_ids
            elif isinstance(a, act.Lost):
                lost.append(a.job_id)
        s.validate()
    assert len(accepted) == len(set(accepted))
    assert sorted(accepted + lost) == list(range(1, 10001))
