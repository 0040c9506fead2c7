"""The pure scheduler: plain asserts on returned actions, no reactor, no clock."""
import random

import pytest

from dsage_core.scheduler import InvalidTransition, SchedJob, Scheduler, actions as act, events as ev
from dsage_core.scheduler.policy import allowance

SAGE = frozenset({"sage"})


def dispatched(actions):
    """{worker_id: [job ids]} from the Dispatch actions."""
    return {a.worker_id: [j for j, _ in a.jobs] for a in actions if isinstance(a, act.Dispatch)}


def join(s, wid, slots=1, anonymous=False, caps=frozenset(), now=0.0):
    """A worker joins; returns the actions."""
    return s.handle(ev.WorkerJoined(wid, slots, anonymous, caps, now))


def submit(s, *ids, **kw):
    """Submit jobs with these ids (same keyword fields for all); returns the actions."""
    return s.handle(ev.JobsSubmitted([SchedJob(i, **kw) for i in ids]))


def finish(s, wid, ids, duration=0.01):
    """The worker reports these held jobs finished at their current attempt."""
    return s.handle(ev.JobsFinished(wid, [(j, s.job_location(j)[1], duration) for j in ids]))


# ---------------------------------------------------------------- order and eligibility

def test_order_priority_then_fifo():
    """Higher priority first, then lower id first."""
    s = Scheduler()
    s.handle(ev.JobsSubmitted([SchedJob(1, 0), SchedJob(2, 5), SchedJob(3, 0), SchedJob(4, 5)]))
    assert dispatched(join(s, "w", 4)) == {"w": [2, 4, 1, 3]}
    s.validate()


def test_order_priority_across_job_classes():
    """A worker takes the best head among every class it may run, not class by class."""
    s = Scheduler()
    s.handle(ev.JobsSubmitted([SchedJob(1, 1), SchedJob(2, 3, trusted_only=True), SchedJob(3, 2, needs=SAGE)]))
    assert dispatched(join(s, "w", 3, caps=SAGE)) == {"w": [2, 3, 1]}


def test_trusted_only_never_to_anonymous_and_does_not_block():
    """A trusted-only job at the head does not stop an anonymous worker from taking other jobs."""
    s = Scheduler()
    join(s, "anon", 2, anonymous=True)
    out = s.handle(ev.JobsSubmitted([SchedJob(1, 9, trusted_only=True), SchedJob(2), SchedJob(3)]))
    assert dispatched(out) == {"anon": [2, 3]}
    assert s.waiting_reason(1) == "trusted-only: waiting for a keyed (non-anonymous) worker"
    finish(s, "anon", [2, 3])
    assert s.is_queued(1) and s.held_by("anon") == []
    assert dispatched(join(s, "keyed", 1)) == {"keyed": [1]}
    s.validate()


def test_needs_capabilities():
    """Sage jobs go only to workers that can run Sage, and wait visibly otherwise."""
    s = Scheduler()
    join(s, "plain", 2)
    out = s.handle(ev.JobsSubmitted([SchedJob(1, 5, needs=SAGE), SchedJob(2)]))
    assert dispatched(out) == {"plain": [2]}
    assert s.waiting_reason(1) == "no connected worker can run sage jobs"
    assert dispatched(join(s, "sage", 1, caps=SAGE)) == {"sage": [1]}
    s.validate()


def test_waiting_reason_cases():
    """waiting_reason names what is missing, and is None for a job merely waiting its turn."""
    s = Scheduler()
    submit(s, 1, 2)
    s.handle(ev.JobsSubmitted([SchedJob(3, needs=frozenset({"a", "b"}))]))
    assert s.waiting_reason(1) == "no workers connected"
    join(s, "a", 1, caps=frozenset({"a"}))
    join(s, "b", 0, caps=frozenset({"b"}))
    assert s.waiting_reason(3) == "no connected worker has all of: a, b"
    assert s.waiting_reason(1) is None          # held by a
    assert s.waiting_reason(2) is None          # its turn will come
    s.handle(ev.WorkerPaused("a", True))
    assert s.waiting_reason(2) == "every worker that can run it is paused or has no slots"
    assert s.waiting_reason(99) is None


# ---------------------------------------------------------------- failures, results, kills

def test_requeue_on_worker_left():
    """A worker's death requeues its jobs with one more failure; the next dispatch is a new attempt."""
    s = Scheduler()
    submit(s, 1, 2)
    join(s, "a", 2)
    out = s.handle(ev.WorkerLeft("a", "connection lost"))
    assert out == [act.Requeued([(1, 1), (2, 1)])]
    assert s.queued_count == 2 and s.running_count == 0
    out = join(s, "b", 2)
    assert out == [act.Dispatch("b", [(1, 2), (2, 2)])]
    s.validate()


def test_lost_after_max_failures():
    """A job is lost once its failures exceed max_failures; restored jobs keep their counters."""
    s = Scheduler(max_failures=1)
    submit(s, 1)
    s.handle(ev.JobsSubmitted([SchedJob(2, attempt=4, failures=1)]))
    join(s, "a", 2)
    assert s.job_location(2) == ("a", 5)
    out = s.handle(ev.WorkerLeft("a"))
    assert out == [act.Lost(2, 2), act.Requeued([(1, 1)])]
    join(s, "b", 1)
    out = s.handle(ev.WorkerLeft("b"))
    assert out == [act.Lost(1, 2)]
    assert s.queued_count == 0 and s.running_count == 0 and not s.jobs
    s.validate()


def test_results_discarded_unless_right_worker_and_attempt():
    """Exactly one Accepted per job: stale attempts, other workers, duplicates and unknowns are discarded."""
    s = Scheduler()
    submit(s, 1)
    join(s, "a", 1)
    s.handle(ev.JobsHandedBack("a", [(1, 1, False)]))      # comes straight back to a as attempt 2
    assert s.job_location(1) == ("a", 2)
    join(s, "b", 1)
    out = s.handle(ev.JobsFinished("a", [(1, 1, 0.1)]))
    assert out == [act.Discarded(1, 1, "stale attempt")]
    assert s.handle(ev.JobsFinished("b", [(1, 2, 0.1)])) == [act.Discarded(1, 2, "not held by this worker")]
    assert s.handle(ev.JobsFinished("zz", [(1, 2, 0.1)])) == [act.Discarded(1, 2, "unknown worker")]
    assert s.handle(ev.JobsFinished("a", [(1, 2, 0.1), (1, 2, 0.1)])) == [
        act.Discarded(1, 2, "unknown job"), act.Accepted([1])]
    assert s.handle(ev.JobsFinished("a", [(1, 2, 0.1)])) == [act.Discarded(1, 2, "unknown job")]
    s.validate()


def test_late_result_from_dead_worker_discarded():
    """A worker that left cannot complete the job that was requeued elsewhere."""
    s = Scheduler()
    submit(s, 1)
    join(s, "a", 1)
    s.handle(ev.WorkerLeft("a"))
    join(s, "b", 1)
    assert s.handle(ev.JobsFinished("a", [(1, 1, 0.1)])) == [act.Discarded(1, 1, "unknown worker")]
    assert act.Accepted([1]) in finish(s, "b", [1])


def test_handed_back_counts_failure_only_when_told():
    """Handed-back jobs are requeued; counts_as_failure adds a failure and can make a job lost."""
    s = Scheduler(max_failures=0)
    submit(s, 1, 2)
    join(s, "a", 2)
    s.handle(ev.WorkerPaused("a", True))
    out = s.handle(ev.JobsHandedBack("a", [(1, 1, False), (2, 1, True), (3, 1, True)]))
    assert out == [act.Lost(2, 1), act.Discarded(3, 1, "unknown job"), act.Requeued([(1, 0)])]
    assert s.is_queued(1)
    s.validate()


def test_kill_queued_and_running():
    """Killing a queued job removes it; killing a running one asks its worker and keeps it held."""
    s = Scheduler()
    join(s, "a", 1)
    submit(s, 1, 2)
    out = s.handle(ev.KillRequested([1, 2, 99]))
    assert out == [act.KillOnWorker("a", 1, 1), act.KilledQueued(2)]
    assert s.running_count == 1 and s.queued_count == 0
    assert finish(s, "a", [1]) == [act.Accepted([1])]
    s.validate()


def test_kill_pending_job_is_not_requeued():
    """A running job being killed whose worker dies is dropped as killed, never run again."""
    s = Scheduler()
    join(s, "a", 2)
    submit(s, 1, 2)
    s.handle(ev.KillRequested([1]))
    out = s.handle(ev.WorkerLeft("a"))
    assert out == [act.KilledQueued(1), act.Requeued([(2, 1)])]
    assert 1 not in s.jobs
    s.validate()


def test_killed_job_duration_does_not_open_the_prefetch():
    """A job killed right after it started reports a tiny duration: it must not count as the
    worker's pace, or the next batch of long jobs is all handed out at once (3 held on 2 slots)."""
    s = Scheduler()
    join(s, "a", 2)
    submit(s, 1)
    s.handle(ev.KillRequested([1]))
    finish(s, "a", [1], duration=0.001)
    out = submit(s, 2, 3, 4)
    assert dispatched(out) == {"a": [2, 3]}
    assert s.running_count == 2 and s.queued_count == 1 and s.allowance("a") == 2
    s.validate()


def test_killed_queued_job_resubmitted_runs_once():
    """A killed queued job's stale heap entry never dispatches a later job with the same id twice."""
    s = Scheduler()
    submit(s, 1, priority=0)
    s.handle(ev.KillRequested([1]))
    submit(s, 1, priority=0)
    assert dispatched(join(s, "a", 3)) == {"a": [1]}
    s.validate()


# ---------------------------------------------------------------- leases, slots, pause

def test_lease_expiry_with_time_in_events():
    """A worker silent for longer than the lease loses its jobs; heartbeats keep it."""
    s = Scheduler(lease_timeout=15)
    join(s, "a", 1, now=100.0)
    submit(s, 1)
    assert s.handle(ev.Tick(110.0)) == []
    s.handle(ev.WorkerHeartbeat("a", 110.0))
    assert s.handle(ev.Tick(125.0)) == []
    out = s.handle(ev.Tick(125.5))
    assert out == [act.WorkerExpired("a"), act.Requeued([(1, 1)])]
    assert s.worker_ids() == []
    assert s.handle(ev.WorkerLeft("a")) == []          # the late disconnect changes nothing
    s.validate()


def test_slots_change_and_pause():
    """Fewer slots or a pause stop new dispatches; more slots take more."""
    s = Scheduler()
    join(s, "a", 1)
    submit(s, 1, 2, 3, 4, 5)
    assert s.running_count == 1 and s.slots_total == 1 and s.slots_busy == 1
    assert dispatched(s.handle(ev.WorkerSlotsChanged("a", 3))) == {"a": [2, 3]}
    s.handle(ev.WorkerPaused("a", True))
    assert dispatched(s.handle(ev.JobsFinished("a", [(1, 1, 1.0)]))) == {}
    assert dispatched(s.handle(ev.WorkerPaused("a", False))) == {"a": [4]}
    s.handle(ev.WorkerSlotsChanged("a", 1))
    assert dispatched(finish(s, "a", [2])) == {}       # still holds 2 jobs for 1 slot
    assert s.slots_busy == 1 and s.held_by("a") == [3, 4]
    s.validate()


# ---------------------------------------------------------------- credit and fairness

def test_allowance_formula():
    """allowance = slots + slots * clamp(floor(prefetch_seconds / avg), 0, max); 0 when paused."""
    assert allowance(4, None, False, 0.05, 500) == 4
    assert allowance(4, 0.01, False, 0.05, 500) == 4 + 4 * 5
    assert allowance(4, 0.0, False, 0.05, 500) == 4 + 4 * 500
    assert allowance(4, 1.0, False, 0.05, 500) == 4
    assert allowance(4, 0.01, True, 0.05, 500) == 0


def test_prefetch_grows_for_fast_jobs_only():
    """After short jobs a worker gets many jobs ahead; after long ones only a slot's worth."""
    s = Scheduler()
    join(s, "a", 2)
    submit(s, *range(1, 3001))
    assert len(s.held_by("a")) == 2
    finish(s, "a", s.held_by("a"), duration=0.0001)
    assert len(s.held_by("a")) == 1000                 # 2 + 2*500, in one Dispatch of max 1000
    slow = Scheduler()
    join(slow, "b", 2)
    submit(slow, *range(1, 30))
    finish(slow, "b", slow.held_by("b"), duration=10.0)
    assert len(slow.held_by("b")) == 2
    s.validate()
    slow.validate()


def test_dispatch_batch_cap_and_top_up():
    """One Dispatch per worker per event, at most max_dispatch_batch jobs; the rest follows later."""
    s = Scheduler(max_dispatch_batch=10)
    join(s, "a", 1)
    submit(s, *range(1, 101))
    out = finish(s, "a", s.held_by("a"), duration=0.001)   # allowance becomes 1 + 50
    assert [len(a.jobs) for a in out if isinstance(a, act.Dispatch)] == [10]
    out = s.handle(ev.WorkerHeartbeat("a", 1.0))
    assert [len(a.jobs) for a in out if isinstance(a, act.Dispatch)] == [10]


def test_prefetched_worker_topped_up_at_half_buffer():
    """A worker with a prefetch buffer is topped up only once half of it is used."""
    s = Scheduler(prefetch_seconds=0.05)
    join(s, "a", 1)
    submit(s, *range(1, 200))
    finish(s, "a", s.held_by("a"), duration=0.005)     # allowance 1 + 10
    assert len(s.held_by("a")) == 11
    assert dispatched(finish(s, "a", s.held_by("a")[:4], duration=0.005)) == {}
    assert dispatched(finish(s, "a", s.held_by("a")[:1], duration=0.005)) != {}
    assert len(s.held_by("a")) == 11


def test_fair_split_between_idle_workers():
    """A batch of four jobs and two idle 2-slot workers: two each."""
    s = Scheduler()
    join(s, "a", 2)
    join(s, "b", 2)
    d = dispatched(submit(s, 1, 2, 3, 4))
    assert sorted(len(v) for v in d.values()) == [2, 2]
    s.validate()


def test_fair_split_fills_free_slots_before_prefetch():
    """A worker with a big prefetch buffer does not take a small batch while another slot is idle."""
    s = Scheduler()
    join(s, "fast", 1)
    submit(s, 1)
    finish(s, "fast", [1], duration=0.0001)            # fast now has room for 501
    join(s, "idle", 2)
    assert dispatched(submit(s, 2, 3, 4)) == {"idle": [2, 4], "fast": [3]}
    s.validate()


# ---------------------------------------------------------------- caller bugs, log, validate

def test_invalid_transitions():
    """Duplicate job or worker ids and unknown workers are caller bugs; a bad batch changes nothing."""
    s = Scheduler()
    submit(s, 1)
    with pytest.raises(InvalidTransition):
        submit(s, 1)
    with pytest.raises(InvalidTransition):
        submit(s, 2, 3, 2)
    assert s.queued_count == 1
    join(s, "a", 0)
    with pytest.raises(InvalidTransition):
        join(s, "a", 1)
    with pytest.raises(InvalidTransition):
        s.handle(ev.WorkerSlotsChanged("nobody", 2))
    with pytest.raises(InvalidTransition):
        s.handle(ev.WorkerPaused("nobody", True))
    with pytest.raises(InvalidTransition):
        s.handle("not an event")
    s.validate()


def test_log_is_bounded():
    """The event log keeps the last 1000 events."""
    s = Scheduler()
    for t in range(1500):
        s.handle(ev.Tick(float(t)))
    assert len(s.log) == 1000 and s.log[-1] == ev.Tick(1499.0)


def test_validate_detects_corruption():
    """validate() fails when a held job is also queued."""
    s = Scheduler()
    join(s, "a", 1)
    submit(s, 1)
    s._queue.push(s.jobs[1])
    with pytest.raises(AssertionError, match="both queued and held"):
        s.validate()


def test_random_flow_every_job_accepted_exactly_once():
    """10,000 jobs under random joins, deaths, pauses, hand-backs, kills and results: each ends once."""
    rng = random.Random(42)
    s = Scheduler(max_failures=3)
    n = 10_000
    s.handle(ev.JobsSubmitted([SchedJob(i, rng.randint(0, 3), trusted_only=rng.random() < 0.1,
                                        needs=SAGE if rng.random() < 0.1 else frozenset())
                               for i in range(1, n + 1)]))
    accepted, ended, seq, now = [], [], 0, 0.0
    for step in range(200_000):
        if not s.jobs:
            break
        now += 0.01
        r = rng.random()
        if r < 0.01 or not s.workers:
            seq += 1
            caps = SAGE if rng.random() < 0.5 else frozenset()
            out = join(s, f"w{seq}", rng.randint(0, 4), rng.random() < 0.3, caps, now)
        elif r < 0.015:
            out = s.handle(ev.WorkerLeft(rng.choice(s.worker_ids())))
        elif r < 0.02:
            out = s.handle(ev.WorkerPaused(rng.choice(s.worker_ids()), rng.random() < 0.5))
        elif r < 0.025:
            out = s.handle(ev.WorkerSlotsChanged(rng.choice(s.worker_ids()), rng.randint(1, 4)))
        elif r < 0.03:
            out = s.handle(ev.KillRequested([rng.randint(1, n) for _ in range(3)]))
        elif r < 0.04:
            w = rng.choice(s.worker_ids())
            out = s.handle(ev.JobsHandedBack(w, [(j, s.job_location(j)[1], rng.random() < 0.5)
                                                 for j in s.held_by(w)[:3]]))
        else:
            w = rng.choice(s.worker_ids())
            s.handle(ev.WorkerHeartbeat(w, now))
            held = s.held_by(w)[: rng.randint(1, 50)]
            results = [(j, s.job_location(j)[1], rng.choice([0.001, 0.5])) for j in held]
            out = s.handle(ev.JobsFinished(w, results + results[:2]))   # duplicates are discarded
        for a in out:
            if isinstance(a, act.Accepted):
                accepted += a.job_ids
            elif isinstance(a, (act.Lost, act.KilledQueued)):
                ended.append(a.job_id)
            elif isinstance(a, act.Dispatch):
                wk = s.workers[a.worker_id]
                assert not wk.paused
                assert all(wk.can_run((s.jobs[j].trusted_only, s.jobs[j].needs)) for j, _ in a.jobs)
        if step % 20 == 0 or len(s.jobs) < 200:
            s.validate()
    assert not s.jobs
    assert len(accepted) == len(set(accepted))
    assert sorted(accepted + ended) == list(range(1, n + 1))
