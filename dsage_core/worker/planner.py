"""What the worker monitor decides, with no I/O and no clock: the slots' planner.

``ChildPool`` (worker/pool.py) and ``ChildProcess`` (worker/children.py) are the I/O layer: they
own the pipes, the processes and the reactor's timers, tell the planner what happened, and carry
out what it answers. Like ``dsage_core.scheduler``, nothing here reads a clock (the time arrives
with each event: *now*) or touches a file, a pipe or a process, so every decision is tested with
plain objects and a number for the time (tests/core/test_slot_planner.py).

============================  =====================================  ================================
event (method)                what it decides                        actions / answer
============================  =====================================  ================================
:meth:`SlotPlanner.fill`      jobs queued, a child drained or ready: :class:`Send` (child, jobs)
                              which child gets which jobs, how many
                              per frame and in flight
:meth:`SlotPlanner.reads`     after every pump: read each pipe at    :class:`ReadEagerly`,
                              once or lazily, when to wake           :class:`ReadLazily`,
                                                                     :class:`WakeAt`
:meth:`SlotPlanner.current`   a job became current in its child      its start time, :class:`Kill`
                              (start and timeout clocks)             or :class:`StartClock`
:meth:`SlotPlanner.timed_out` a job's timeout clock rang             :class:`Kill` or nothing
:meth:`SlotPlanner.kill`      the server asked to kill or cancel     :class:`Kill`, :class:`ReadEagerly`
:meth:`SlotPlanner.done`      a done was read                        how long its report may wait
:meth:`SlotPlanner.exited`    a child process ended                  :class:`Done`, :class:`Back`,
                                                                     :class:`Requeue`, :class:`Respawn`
============================  =====================================  ================================

A *child* here is anything with the attributes ``ChildProcess`` has (``inflight``, ``avg_wall``,
``avg_key``, ``lazy``, ``accepting``, ``readable``); a *job* anything with those of ``Assigned``.
Why a job ended when its child exited is one table, :data:`EXIT_TABLE`.
"""
from __future__ import annotations

import signal as _signal
from collections import deque
from typing import Any, Iterable, NamedTuple, Sequence

from dsage_core import latency
from dsage_core.model.status import JobStatus

# ---------------------------------------------------------------------------------------- tuning
#: A result of a job that ran a while may wait for company, at most this multiple of the job's
#: wall time, never more than HOLD_MAX seconds, and never longer than half the work its slot
#: still has ahead (its child's jobs and its share of the queue, at this job's pace): the server,
#: which tops a worker up once half its buffer is free, then hears in time for the new jobs to
#: arrive before the slot runs dry, even over a slow network; several results share one message.
#: On this 2-core VM every message wakes processes that preempt a busy child (~0.1 ms each, more on
#: cold caches). W3 rose by about one point from 1× / 20 ms to 2.5× / 50 ms, by about another half
#: point at 5× / 100 ms once children were read lazily, and by about another point at 10× / 200 ms
#: bounded by half the work ahead (server CPU per W3 job ~0.3 → ~0.2 ms). A batch's throughput is
#: unchanged; each of its results is seen at most that much later.
_POLICY = latency.current()   #: the tuning below (dsage_core/latency.py; plain() turns it off)
HOLD_FRACTION = _POLICY.report_hold_fraction
HOLD_MIN_WALL = _POLICY.report_hold_min_wall
HOLD_MAX = _POLICY.report_hold_max

#: "start" marks (a job became current in its child: the server shows it running, not just
#: assigned) are not sent per job: the pool collects them and sends those of jobs still running
#: every START_MARK_DELAY seconds (a job that ended meanwhile needs none: its done says when it
#: started), held START_MARK_HOLD seconds so they ride with the next report. At most one small
#: event per slot per delay, however many jobs per second run.
START_MARK_DELAY = _POLICY.start_mark_delay
START_MARK_HOLD = _POLICY.start_mark_hold

#: Lazy reading. A child whose jobs take a while and who holds several writes its dones at once,
#: but the monitor need not wake for each: it stops polling that child's pipe and reads it on a
#: timer, when the child is predicted to be half-way through its second-to-last job (or whenever
#: the monitor is awake anyway). On 2 cores every wake-up preempts a busy child and runs on cold
#: caches; for 20 ms jobs this was the monitor's one wake per job.
LAZY_READ = _POLICY.lazy_read   #: False (plain): every pipe is polled
LAZY_MIN_WALL = _POLICY.lazy_min_wall   #: shorter jobs: read at once (the child coalesces their dones itself)
LAZY_MAX_WALL = _POLICY.lazy_max_wall     #: longer jobs: read at once (they hold one job at a time anyway)
LAZY_MAX_SLEEP = _POLICY.lazy_max_sleep   #: never unread for longer (a pace just skewed by one long job)
LAZY_SPAN = _POLICY.lazy_span        #: a lazily-read child gets about this much extra work (in job time) ...
LAZY_BATCH_MAX = _POLICY.lazy_batch_max      #: ... but never more than this many extra jobs
LAZY_MIN_SLEEP = _POLICY.lazy_min_sleep  #: a pause shorter than this is not worth two epoll_ctl calls
WAKE_SLACK = 0.0005     #: a lazy-read timer within this of the wanted time is left as it is

FRAME_JOBS = 64         #: jobs in one "run" frame at most
SHORT_JOBS = 0.005      #: jobs under this: as many in flight as fill this much time ...
SHORT_MAX = 128         #: ... up to this many
PACE_WEIGHT = 0.2       #: a new job's weight in its child's running average wall time

CPU_GRACE = 1.0         #: seconds of CPU past a job's cpu_limit before the monitor kills it
CRASH_BURST = 5         #: this many crashes ...
CRASH_WINDOW = 5.0      #: ... within this many seconds ...
CRASH_DELAY = 2.0       #: ... and the next child starts this much later (no spinning CPU)


# --------------------------------------------------------------------------------------- actions
class Send(NamedTuple):
    """Write these jobs to the child in one frame."""
    child: Any
    jobs: list


class ReadEagerly(NamedTuple):
    """Poll the child's message pipe."""
    child: Any


class ReadLazily(NamedTuple):
    """Stop polling the child's message pipe (it is read at the next :class:`WakeAt`)."""
    child: Any


class WakeAt(NamedTuple):
    """Read every lazily-read child at *when* (None: no lazy read is due; cancel the timer)."""
    when: float | None


class Kill(NamedTuple):
    """SIGKILL the child and its process tree (it is replaced; its exit settles its jobs);
    *child* None: the child the event came from."""
    child: Any


class StartClock(NamedTuple):
    """Ring :meth:`SlotPlanner.timed_out` for *job* in *delay* seconds."""
    job: Any
    delay: float


class Done(NamedTuple):
    """Report *job* finished with *status* and *error* (no result)."""
    job: Any
    status: str
    error: str


class Back(NamedTuple):
    """Hand *job* back to the server unrun; *failed*: count it as a failure of the job."""
    job: Any
    failed: bool
    reason: str


class Requeue(NamedTuple):
    """Put *job* at the head of the local queue (it never started: another child runs it)."""
    job: Any


class Respawn(NamedTuple):
    """Start a child in place of the one that ended, *delay* seconds from now."""
    delay: float


# ----------------------------------------------------------------------------------- exit table
KILLED_BY_OWNER = "killed by its owner"
SHUTTING_DOWN = "worker shutting down"


class ExitRule(NamedTuple):
    """One row of :data:`EXIT_TABLE`: what to match (None: anything) and the outcome."""
    name: str
    kill_reason: str | None     #: the reason the monitor marked the job with ("timed_out", ...)
    handed_back: bool | None    #: True: the worker was handing its jobs back
    closing: bool | None        #: True: the worker is shutting down
    signal: Any                 #: a signal number, "other" (any signal but SIGKILL) or None
    outcome: str                #: "back" (to the server, unrun) or "done" (ended, with *status*)
    status: Any                 #: the job's status ("done"), or whether it counts as failed ("back")
    message: str                #: formatted with handed_back, timeout, cpu, code, sig, signame, hint


_T, _K, _F = JobStatus.TIMED_OUT.value, JobStatus.KILLED.value, JobStatus.FAILED.value
#: What a child's exit means for the job it was running; the first matching row wins.
EXIT_TABLE: tuple[ExitRule, ...] = (
    ExitRule("handed back", None, True, None, None, "back", False, "{handed_back}"),
    ExitRule("timed out", _T, None, None, None, "done", _T,
             "timed out: the job ran longer than its {timeout:g} s timeout and was killed"),
    ExitRule("killed by its owner", _K, None, None, None, "done", _K, KILLED_BY_OWNER),
    ExitRule("cpu limit", "cpu_limit", None, None, None, "done", _F,
             "CPU time limit of {cpu:g} s exceeded (the job went on past its own limit; the worker killed it)"),
    ExitRule("closing", None, None, True, None, "back", False, SHUTTING_DOWN),
    # not our doing: the OOM killer, an operator, or the machine going down: retry elsewhere
    ExitRule("SIGKILL", None, None, None, _signal.SIGKILL, "back", True, "child process was killed (SIGKILL)"),
    ExitRule("signal", None, None, None, "other", "done", _F,
             "the job's process died from {signame} (signal {sig}){hint}; the worker restarted the slot"),
    ExitRule("exit code", None, None, None, None, "done", _F,
             "the job's process exited with code {code} before finishing (os._exit or sys.exit in a "
             "C extension?); the worker restarted the slot"),
)


def signame(sig: int) -> str:
    """``SIGSEGV`` for 11; ``signal 99`` for a number with no name."""
    try:
        return _signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"


def exit_outcome(job: Any, code: int | None, sig: int | None, handed_back: str | None = None,
                 closing: bool = False) -> Done | Back:
    """What *job* (current in a child that exited with *code* / *sig*) becomes: one row of
    :data:`EXIT_TABLE`."""
    for rule in EXIT_TABLE:
        if rule.kill_reason is not None and job.kill_reason != rule.kill_reason:
            continue
        if rule.handed_back and not handed_back:
            continue
        if rule.closing and not closing:
            continue
        if rule.signal == "other":
            if sig is None or sig == _signal.SIGKILL:
                continue
        elif rule.signal is not None and sig != rule.signal:
            continue
        limits = job.limits or {}
        mem = limits.get("mem")
        text = rule.message.format(
            handed_back=handed_back, timeout=job.timeout or 0.0, cpu=limits.get("cpu") or 0.0,
            code=code, sig=sig, signame=signame(sig) if sig is not None else "",
            hint=(f" (its memory limit of {int(mem) // 2**20} MiB was probably exceeded: "
                  f"an allocation in C code failed)" if mem else ""))
        return Back(job, rule.status, text) if rule.outcome == "back" else Done(job, rule.status, text)
    raise AssertionError("the exit table's last row matches every exit")  # pragma: no cover


# ------------------------------------------------------------------------------ pure decisions
def report_hold(wall: float | None, jobs_ahead: float) -> float:
    """How long a finished job's report may wait for company (0: send now). *jobs_ahead*: the jobs
    its slot still has to run before it would idle (0: the server must hear now)."""
    if not wall or wall < HOLD_MIN_WALL or jobs_ahead <= 0:
        return 0.0
    return min(HOLD_MAX, HOLD_FRACTION * wall, jobs_ahead * wall / 2)


def allowance(child: Any, key: str | None = None) -> int:
    """How many jobs of function *key* the child may hold: 1 for slow jobs (none waits behind a
    long one); for jobs up to LAZY_MAX_WALL, 2 plus a lazy-reading batch (the next job is there
    when one ends, and the monitor reads dones a batch at a time); more for short jobs."""
    if not child.accepting:
        return 0
    avg = child.avg_wall if key == child.avg_key else None  # another function: duration unknown
    if avg is None or avg > LAZY_MAX_WALL:
        return 1
    if avg >= LAZY_MIN_WALL:
        return 2 + max(1, min(LAZY_BATCH_MAX, int(LAZY_SPAN / avg)))
    return max(2, min(SHORT_MAX, int(SHORT_JOBS / max(avg, 1e-6))))


def wants_more(child: Any, key: str | None = None, extra: int = 0) -> int:
    """How many jobs to send now: top up only once the child's pipeline is half empty, so frames
    carry many jobs when jobs are short (one frame per job caps the hop at ~45k/s); a lazily-read
    child is topped up whenever it is read, so the next read comes as late as it can. *extra*:
    jobs already planned for it, not yet in its ``inflight``."""
    allow = allowance(child, key)
    load = len(child.inflight) + extra
    if load > allow // 2 and not child.lazy:
        return 0
    return allow - load


def lazy_until(child: Any, now: float) -> float | None:
    """When the child's pipe must be read next if it is read lazily; None: read it at once.

    The child must hold at least 3 jobs of the function its pace was measured on, none of them
    marked for a kill. The read comes half-way through the second-to-last job, and no later than
    the earliest moment a queued job could reach its timeout."""
    if not child.readable:
        return None
    inflight, avg = child.inflight, child.avg_wall
    load = len(inflight)
    if not LAZY_READ or load < 3 or avg is None or not LAZY_MIN_WALL <= avg <= LAZY_MAX_WALL:
        return None
    current = inflight[0]
    s0 = current.started if current.started is not None else now
    t = s0 + (load - 1.5) * avg
    key = child.avg_key
    for a in inflight:
        if a.blob_id != key or a.kill_reason:
            return None
        if a is not current and a.timeout:
            t = min(t, s0 + a.timeout)  # it cannot have started before the current job
    if t - now < LAZY_MIN_SLEEP:
        return None
    return min(t, now + LAZY_MAX_SLEEP)


def pace(avg: float | None, avg_key: str | None, key: str | None, wall: float) -> tuple[float, str | None]:
    """A child's running average wall time after a job of function *key* that took *wall*."""
    if avg is None or key != avg_key:
        return wall, key
    return (1.0 - PACE_WEIGHT) * avg + PACE_WEIGHT * wall, key


def done_time(end_time: Any, now: float) -> float | None:
    """When the job of a done ended (the child's ``time.time()``), if the child said so and it is
    plausible on the monitor's clock *now* (a test's fake clock is not)."""
    return end_time if isinstance(end_time, float) and now - 3600 < end_time <= now else None


# ------------------------------------------------------------------------------------- planner
class SlotPlanner:
    """The monitor's decisions, event by event. State: the recent crash times (start-up backoff)."""

    def __init__(self) -> None:
        self._crash_times: deque[float] = deque(maxlen=CRASH_BURST)

    # -------------------------------------------------------------- jobs to children
    def fill(self, queue: deque, children: Sequence[Any]) -> list[Send]:
        """Take jobs off the head of *queue* for the children, by function (each child's pace is
        per function). When the queue cannot fill every child, jobs go one by one to the least
        loaded one, so a batch's last jobs spread evenly and its children finish together."""
        sends: list[Send] = []
        given: dict[Any, int] = {}   #: jobs sent in earlier rounds (the child counts them when sent)
        while queue:
            key = queue[0].blob_id
            rooms = {}
            for c in children:
                room = min(wants_more(c, key, given.get(c, 0)), FRAME_JOBS)
                if room > 0:
                    rooms[c] = room
            if not rooms:
                break
            batches: dict[Any, list[Any]] = {c: [] for c in rooms}
            if len(queue) >= sum(rooms.values()):
                for c, room in rooms.items():
                    batch = batches[c]
                    while len(batch) < room and queue[0].blob_id == key:
                        batch.append(queue.popleft())
            else:
                while queue and rooms and queue[0].blob_id == key:
                    c = min(rooms, key=lambda c: len(c.inflight) + given.get(c, 0) + len(batches[c]))
                    batches[c].append(queue.popleft())
                    rooms[c] -= 1
                    if not rooms[c]:
                        del rooms[c]
            for c, batch in batches.items():
                if batch:
                    sends.append(Send(c, batch))
                    given[c] = given.get(c, 0) + len(batch)
        return sends

    def reads(self, children: Iterable[Any], now: float, eager: bool) -> list[Any]:
        """Read each child's pipe at once or lazily (*eager*: paused, closing or duty-cycled: every
        pipe at once), and the one wake-up for the lazy ones (the last action, a :class:`WakeAt`)."""
        out: list[Any] = []
        wake = None
        for c in children:
            t = None if eager else lazy_until(c, now)
            if t is None:
                out.append(ReadEagerly(c))
            else:
                out.append(ReadLazily(c))
                wake = t if wake is None or t < wake else wake
        out.append(WakeAt(wake))
        return out

    # -------------------------------------------------------------- clocks and kills
    def current(self, job: Any, started: float | None, now: float) -> list[Any]:
        """*job* became current in its child since *started* (the end of the job before it, as the
        child wrote it; None: now). Sets ``job.started``; a job marked for a kill is killed, else
        its timeout clock starts."""
        if started is None:
            started = now
        # it cannot have started before it was sent (the done before it may be older)
        job.started = max(started, job.sent) if job.sent is not None else started
        if job.kill_reason:
            return [Kill(None)]
        if job.timeout:
            return [StartClock(job, max(0.0, job.timeout - (now - job.started)))]
        return []

    def timed_out(self, child: Any, job: Any) -> list[Kill]:
        """*job*'s timeout rang (its child read first): kill it if it is still the current one."""
        if child.inflight and child.inflight[0] is job:
            job.kill_reason = JobStatus.TIMED_OUT.value
            return [Kill(child)]
        return []

    def kill(self, child: Any, job_id: int, reason: str, unstarted_only: bool = False) -> list[Any] | None:
        """The server asks to kill *job_id* (*unstarted_only*: a cancel, which spares a running
        job). None: the child does not hold it. A queued job is marked and its child read at once,
        so it is killed the moment it becomes current; the current job kills the child."""
        inflight = child.inflight
        for a in inflight:
            if a.job_id == job_id:
                if unstarted_only and a is inflight[0]:
                    return []   # running: a cancel comes too late
                a.kill_reason = reason
                return [Kill(child)] if a is inflight[0] else [ReadEagerly(child)]
        return None

    def cpu_check(self, job: Any, cpu_now: float | None) -> float | None | Kill:
        """The CPU clock of *job*'s child reads *cpu_now*: a :class:`Kill` past its limit, else
        the seconds until the next check (None: cannot tell, stop checking)."""
        budget = float((job.limits or {}).get("cpu") or 0) + CPU_GRACE
        mark = job.cpu_mark
        if cpu_now is None or mark is None:
            return None
        if cpu_now - mark >= budget:
            job.kill_reason = "cpu_limit"
            return Kill(None)
        return max(0.05, budget - (cpu_now - mark))

    # -------------------------------------------------------------- dones and exits
    def done(self, child: Any, job: Any, wall: float, ahead: float, now: float,
             ended: float | None) -> float:
        """A done of *job* was read: how long its report may be held (*ahead*: the jobs its slot
        still has; *ended*: when the child says it ended; the child's pace is :func:`pace`)."""
        hold = report_hold(wall, ahead)
        if hold and ended is not None:  # read late (lazy reading): the hold counts from its end
            hold = max(0.0, hold - max(0.0, now - ended))
        return hold

    def exited(self, left: list[Any], code: int | None, sig: int | None, *, recycling: bool,
               stopped: bool, handed_back: str | None, closing: bool, live: int, target: int,
               now: float) -> list[Any]:
        """A child ended holding *left* (its jobs in order, the first one current unless it asked
        to be recycled and exited cleanly); *live*: the other children not stopping. Its current
        job gets an :data:`EXIT_TABLE` outcome, the others never started: requeued (killed ones
        reported, all handed back when the worker stops), and a replacement child is started."""
        out: list[Any] = []
        if left:
            # a child that asked to be recycled ran nothing after its last done
            current, rest = (None, left) if recycling and code == 0 else (left[0], left[1:])
            if current is not None:
                out.append(exit_outcome(current, code, sig, handed_back, closing))
            for a in reversed(rest):  # never started: run them on another child, not a failure
                if a.kill_reason == JobStatus.KILLED.value:
                    out.append(Done(a, JobStatus.KILLED.value, KILLED_BY_OWNER))
                elif closing or handed_back:
                    out.append(Back(a, False, SHUTTING_DOWN))
                else:
                    out.append(Requeue(a))
        if not closing and live < target:
            out.append(Respawn(self.respawn_delay(not (stopped or recycling), now)))
        return out

    def respawn_delay(self, crashed: bool, now: float) -> float:
        """Seconds before a replacement child starts: 0, or CRASH_DELAY after CRASH_BURST crashes
        within CRASH_WINDOW (a child that dies at start-up must not spin the CPU)."""
        if not crashed:
            return 0.0
        times = self._crash_times
        times.append(now)
        if len(times) == CRASH_BURST and now - times[0] < CRASH_WINDOW:
            return CRASH_DELAY
        return 0.0
