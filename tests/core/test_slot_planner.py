"""The worker monitor's planner (dsage_core/worker/planner.py), driven with plain objects and a fake
clock: events in, actions out, no process, pipe or reactor."""
import signal
from collections import deque

import pytest

from dsage_core.model.records import BackEvent, event_from_wire
from dsage_core.worker import planner as p
from dsage_core.worker.children import Assigned

pytestmark = pytest.mark.timeout(10)


class Slot:
    """A child as the planner sees it (the attributes ChildProcess has)."""

    def __init__(self, avg=None, key="f", lazy=False, accepting=True, readable=True):
        self.inflight = deque()
        self.avg_wall, self.avg_key = avg, key
        self.lazy, self.accepting, self.readable = lazy, accepting, readable

    def take(self, send):
        """Carry out a Send the way ChildProcess.send does (the jobs join its pipeline)."""
        self.inflight.extend(send.jobs)


def job(i, key="f", timeout=None, limits=None, started=None, sent=None):
    a = Assigned(i, 1, b"", key, timeout, limits)
    a.started, a.sent = started, sent
    return a


class Clock:
    """A fake clock: the planner never reads one, the test hands it the time."""

    def __init__(self, t=1000.0):
        self.t = t

    def advance(self, dt):
        self.t += dt
        return self.t


def carry_out(sends):
    for s in sends:
        s.child.take(s)


# ------------------------------------------------------------------------------ dealing
def test_fill_spreads_a_short_tail_evenly_and_bounds_jobs_in_flight():
    """A queue too short to fill every child goes to the least loaded one, job by job; a long
    queue fills each child to its allowance, never more than FRAME_JOBS per frame."""
    a, b = Slot(avg=0.02), Slot(avg=0.02)
    planner = p.SlotPlanner()
    q = deque(job(i) for i in range(3))
    sends = planner.fill(q, [a, b])
    assert [len(s.jobs) for s in sends] == [2, 1] and not q
    carry_out(sends)
    nine = job(9)
    assert planner.fill(deque([nine]), [a, b]) == [p.Send(b, [nine])]   # the least loaded child
    carry_out([p.Send(a, [job(10)])])
    assert planner.fill(deque([job(11)]), [a]) == []   # 3 of its allowance of 4: past half of it
    fast = [Slot(avg=0.00001), Slot(avg=0.00001)]
    q = deque(job(i) for i in range(1000))
    sends = planner.fill(q, fast)
    assert all(len(s.jobs) == p.FRAME_JOBS for s in sends)          # frames of at most 64 jobs ...
    for c in fast:                                                   # ... up to the allowance (128)
        assert sum(len(s.jobs) for s in sends if s.child is c) == p.SHORT_MAX
    assert len(q) == 1000 - 2 * p.SHORT_MAX


def test_fill_counts_jobs_dealt_in_an_earlier_round():
    """Jobs of a second function are dealt knowing what the first round already gave each child."""
    a = Slot(avg=0.02, key="g")   # allowance 4 for "g"; "f" is unmeasured here: 1
    q = deque([job(1, "f")] + [job(i, "g") for i in range(2, 6)])
    sends = p.SlotPlanner().fill(q, [a])
    assert [[j.job_id for j in s.jobs] for s in sends] == [[1], [2, 3, 4]]
    assert [j.job_id for j in q] == [5]


def test_no_jobs_for_a_child_that_is_not_accepting():
    """A child not ready, recycling or stopping gets nothing; a lazily-read one is topped up."""
    assert p.allowance(Slot(avg=0.02, accepting=False), "f") == 0
    c = Slot(avg=0.02, lazy=True)
    c.inflight.extend(job(i) for i in range(3))
    assert p.wants_more(c, "f") == 1           # allowance 4, topped up while lazily read
    c.lazy = False
    assert p.wants_more(c, "f") == 0           # eagerly read: waits until half empty


# ------------------------------------------------------------------------------ lazy reads
@pytest.mark.normal_latency
def test_reads_plan_lazy_children_and_one_wake_up():
    """Children with a deep pipeline of measured 20 ms jobs are read lazily, at the earliest of
    their predicted reads; paused, closing or duty-cycled: everything eagerly, no wake-up."""
    clock = Clock()
    a, b, idle = Slot(avg=0.02), Slot(avg=0.02), Slot(avg=0.02)
    for c, n in ((a, 4), (b, 6)):
        c.inflight.extend(job(i, started=clock.t) for i in range(n))
    acts = p.SlotPlanner().reads([a, b, idle], clock.t, eager=False)
    assert acts[:3] == [p.ReadLazily(a), p.ReadLazily(b), p.ReadEagerly(idle)]
    assert acts[3].when == pytest.approx(clock.t + 2.5 * 0.02)
    acts = p.SlotPlanner().reads([a, b], clock.advance(0.049), eager=False)
    assert acts[0] == p.ReadEagerly(a)         # too close to its read to be worth a pause
    assert p.SlotPlanner().reads([a, b], clock.t, eager=True) == [p.ReadEagerly(a), p.ReadEagerly(b),
                                                                  p.WakeAt(None)]


# ------------------------------------------------------------------------------ clocks and kills
def test_timeout_clock_counts_from_the_real_start_and_kills_only_the_current_job():
    """A job that became current when the job before it ended (as the child wrote) has its
    timeout counted from then, never before it was sent; the clock kills it only if current."""
    clock = Clock()
    planner = p.SlotPlanner()
    c = Slot()
    a, nxt = job(1, timeout=2.0, sent=clock.t), job(2, timeout=2.0, sent=clock.t)
    c.inflight.extend([a, nxt])
    acts = planner.current(a, clock.t - 5.0, clock.advance(0.5))   # ended long ago, sent 0.5 s ago
    assert a.started == 1000.0 and acts == [p.StartClock(a, pytest.approx(1.5))]
    assert planner.timed_out(c, nxt) == []                  # not current: nothing to kill
    assert planner.timed_out(c, a) == [p.Kill(c)] and a.kill_reason == "timed_out"
    assert planner.current(job(3, timeout=None), None, clock.t) == []


def test_kill_of_the_current_job_kills_the_child_and_a_queued_one_waits_its_turn():
    """Kill asked: the current job takes its child down; a queued job is marked (and its child
    read at once) so it dies when it becomes current; a cancel spares a running job."""
    planner = p.SlotPlanner()
    c = Slot()
    first, second = job(1), job(2)
    c.inflight.extend([first, second])
    assert planner.kill(c, 9, "killed") is None
    assert planner.kill(c, 1, "killed", unstarted_only=True) == [] and first.kill_reason is None
    assert planner.kill(c, 2, "killed") == [p.ReadEagerly(c)] and second.kill_reason == "killed"
    assert planner.kill(c, 1, "killed") == [p.Kill(c)]
    c.inflight.popleft()
    assert planner.current(second, None, 5.0) == [p.Kill(None)]   # marked: killed on becoming current


def test_cpu_limit_is_checked_from_outside():
    """A job whose child used its CPU limit plus the grace is killed; otherwise the next check is
    due when it could have; no CPU reading: no more checks."""
    a = job(1, limits={"cpu": 2})
    a.cpu_mark = 10.0
    assert p.SlotPlanner().cpu_check(a, 11.0) == pytest.approx(2.0)
    assert p.SlotPlanner().cpu_check(a, 13.0) == p.Kill(None) and a.kill_reason == "cpu_limit"
    assert p.SlotPlanner().cpu_check(job(2), None) is None


# ------------------------------------------------------------------------------ dones
@pytest.mark.normal_latency
def test_report_hold_counts_from_the_jobs_end():
    """A done read late (lazily) may wait for company only what is left of its hold."""
    planner = p.SlotPlanner()
    assert planner.done(None, job(1), 0.02, 10, 100.0, None) == pytest.approx(0.1)
    assert planner.done(None, job(1), 0.02, 10, 100.0, 99.95) == pytest.approx(0.05)
    assert planner.done(None, job(1), 0.02, 0, 100.0, None) == 0.0   # the slot idles: now


def test_pace_is_per_function():
    """A child's pace is a running average for one function, restarted on another."""
    assert p.pace(None, None, "f", 0.1) == (0.1, "f")
    assert p.pace(0.1, "f", "f", 0.2) == (pytest.approx(0.12), "f")
    assert p.pace(0.1, "f", "g", 0.3) == (0.3, "g")
    assert p.done_time(99.5, 100.0) == 99.5 and p.done_time(1.0, 100000.0) is None
    assert p.done_time(None, 100.0) is None and p.done_time(101.0, 100.0) is None


# ------------------------------------------------------------------------------ exits
KILL, SEGV = signal.SIGKILL, signal.SIGSEGV


@pytest.mark.parametrize("reason,handed,closing,code,sig,expect", [
    ("timed_out", None, False, None, KILL, ("done", "timed_out", "longer than its 3 s timeout")),
    ("killed", None, False, None, KILL, ("done", "killed", "killed by its owner")),
    ("cpu_limit", None, False, None, KILL, ("done", "failed", "CPU time limit of 2 s exceeded")),
    (None, "paused too long", False, None, KILL, ("back", False, "paused too long")),
    ("timed_out", "paused too long", False, None, KILL, ("back", False, "paused too long")),
    (None, None, True, None, KILL, ("back", False, "worker shutting down")),
    (None, None, False, None, KILL, ("back", True, "child process was killed (SIGKILL)")),
    (None, None, False, None, SEGV, ("done", "failed", "died from SIGSEGV (signal 11) (its memory limit of 64 MiB")),
    (None, None, False, 3, None, ("done", "failed", "exited with code 3 before finishing")),
    (None, None, False, 0, None, ("done", "failed", "exited with code 0 before finishing")),
])
def test_exit_table(reason, handed, closing, code, sig, expect):
    """What a child's exit means for its current job: one row of EXIT_TABLE per case."""
    a = job(1, timeout=3.0, limits={"cpu": 2, "mem": 64 * 2**20})
    a.kill_reason = reason
    out = p.exit_outcome(a, code, sig, handed, closing)
    if expect[0] == "back":
        assert out == p.Back(a, expect[1], expect[2])
    else:
        assert type(out) is p.Done and out.status == expect[1] and expect[2] in out.error


def test_exit_table_rows_have_names_and_the_last_matches_everything():
    """Every row is named; the catch-all row is last (an exit always has an outcome)."""
    last = p.EXIT_TABLE[-1]
    assert last.name == "exit code" and (last.kill_reason, last.handed_back, last.closing, last.signal) == (None,) * 4
    assert len({r.name for r in p.EXIT_TABLE}) == len(p.EXIT_TABLE)
    assert p.signame(99) == "signal 99"


def test_a_child_crashing_mid_job_fails_its_job_requeues_the_rest_and_is_replaced():
    """Crash mid-job: the current job fails with the reason, the unstarted ones go back to the
    head of the local queue in order, and a new child starts at once."""
    planner = p.SlotPlanner()
    current, q1, q2 = job(1), job(2), job(3)
    out = planner.exited([current, q1, q2], None, SEGV, recycling=False, stopped=False, handed_back=None,
                         closing=False, live=1, target=2, now=10.0)
    assert type(out[0]) is p.Done and out[0].job is current and out[0].status == "failed"
    assert out[1:] == [p.Requeue(q2), p.Requeue(q1), p.Respawn(0.0)]   # appendleft: q1 ends first


def test_a_recycled_child_ran_nothing_after_its_last_done():
    """A child that asked to be recycled and exited cleanly: all its jobs are requeued, none failed,
    and its replacement is no crash (no back-off)."""
    planner = p.SlotPlanner()
    jobs = [job(1), job(2)]
    out = planner.exited(jobs, 0, None, recycling=True, stopped=False, handed_back=None, closing=False,
                         live=0, target=1, now=1.0)
    assert out == [p.Requeue(jobs[1]), p.Requeue(jobs[0]), p.Respawn(0.0)]


def test_unstarted_jobs_when_the_worker_stops_or_they_were_killed():
    """Unstarted jobs of an exited child: handed back when the worker stops, reported killed when
    their owner killed them; no replacement while closing or with enough children."""
    planner = p.SlotPlanner()
    killed, other = job(2), job(3)
    killed.kill_reason = "killed"
    out = planner.exited([job(1), killed, other], None, KILL, recycling=False, stopped=False,
                         handed_back=None, closing=True, live=0, target=2, now=1.0)
    assert out[1:] == [p.Back(other, False, "worker shutting down"),
                       p.Done(killed, "killed", "killed by its owner")]
    assert planner.exited([], 0, None, recycling=False, stopped=True, handed_back=None, closing=False,
                          live=2, target=2, now=1.0) == []


def test_children_that_die_at_start_up_back_off():
    """Five crashes within five seconds delay the next child by CRASH_DELAY; stops do not count."""
    clock = Clock(0.0)
    planner = p.SlotPlanner()
    delays = [planner.respawn_delay(True, clock.advance(0.5)) for _ in range(5)]
    assert delays == [0.0] * 4 + [p.CRASH_DELAY]
    assert planner.respawn_delay(False, clock.t) == 0.0
    clock.advance(10.0)
    assert planner.respawn_delay(True, clock.t) == 0.0   # the burst is over


def test_back_events_keep_their_reason_on_the_wire():
    """A back event as the pool sends it (with its reason) reads back as a BackEvent."""
    e = event_from_wire(["back", 1, 2, True, "child process was killed (SIGKILL)"])
    assert e == BackEvent("back", 1, 2, True, "child process was killed (SIGKILL)")


def test_the_planner_is_pure():
    """The planner imports neither Twisted nor anything that does I/O."""
    import ast
    import inspect
    tree = ast.parse(inspect.getsource(p))
    names = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    names |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not {n for n in names if n and n.split(".")[0] in ("twisted", "foolscap", "os", "time")}
