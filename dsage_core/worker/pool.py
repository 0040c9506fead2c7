"""The worker's slots: N child processes, a local queue, and the events reported to the server.

A job never takes the worker down: it runs in a child; a child that dies is replaced. This module
is the I/O layer: every decision (which child gets which job, when to read a pipe, what a child's
exit means: ``EXIT_TABLE``) is the pure ``SlotPlanner``'s (worker/planner.py), carried out here:

* killed by us for a timeout → ``timed_out``; killed on request → ``killed``
* SIGKILL we did not send (OOM killer, an operator, chaos) → handed back to the server (retried)
* any other signal or exit code while running (segfault, ``os._exit``) → ``failed`` with the reason
"""
from __future__ import annotations

import errno
import os
import shutil
import stat as _stat
from collections import deque
from itertools import repeat, starmap
from operator import attrgetter
from pathlib import Path
from typing import Any, Callable

from twisted.logger import Logger

from dsage_core import local_results
from dsage_core.result_files import ResultFileError, ResultsDir, scratch_result_path
from dsage_core.memory import tuned_env
from dsage_core.model.records import (BACK, DONE, OUT, PROGRESS, START, BackEvent, ChildDone, DoneEvent,
                                      OutEvent, ProgressEvent, RunEntry, StartEvent)
from dsage_core.model.status import JobStatus
from dsage_core.worker.envs import EnvCache, on_ready
from dsage_core.worker.reaping import ensure_reaper
from dsage_core.worker.children import Assigned, ChildEvents, ChildProcess, describe_exit
from dsage_core.worker.planner import (  # noqa: F401  (the tuning, named where it always was)
    HOLD_FRACTION, HOLD_MAX, HOLD_MIN_WALL, KILLED_BY_OWNER, SHUTTING_DOWN, START_MARK_DELAY,
    START_MARK_HOLD, WAKE_SLACK, Back, Done, ReadLazily, Requeue, Respawn, SlotPlanner, WakeAt,
    done_time, report_hold)

log = Logger(namespace="dsage.worker.pool")

Report = Callable[..., None]   #: report(events, hold=0.0): see Batcher.add_many

COMPLETED, FAILED, KILLED = JobStatus.COMPLETED.value, JobStatus.FAILED.value, JobStatus.KILLED.value


#: the shapes RunEntry.from_wire accepts (msgpack reads arrays as lists), for add_jobs' fast path
_LISTS = repeat(list)
_RUN_LENGTHS = frozenset(range(len(RunEntry._fields) - len(RunEntry._field_defaults), len(RunEntry._fields) + 1))
_has_ext = attrgetter("extra")
assert tuple(Assigned.__dataclass_fields__)[:len(RunEntry._fields)] == RunEntry._fields[:-1] + ("extra",)

#: what a job's environment never holds: where dsage keeps its keys, the desktop app's pid
PRIVATE_ENV = ("DSAGE_HOME", "DSAGE_SETTINGS_DIR", "DSAGE_EXIT_WITH_PID", "DSAGE_KEY")


def child_result_path(scratch: Path | None, a: Assigned) -> Path | None:
    """Where a child writes a large result of *a* (in its own scratch dir, beside the job's)."""
    return Path(scratch_result_path(scratch, a.job_id, a.attempt)) if scratch is not None else None


def child_env(environ: Any) -> dict[str, str]:
    """The environment job children start from: ours, tuned, without dsage's private names."""
    env = tuned_env(dict(environ))
    for name in PRIVATE_ENV:
        env.pop(name, None)
    return env


class ChildPool:
    """Keeps *slots* children busy with jobs from a local queue; *report* receives event lists."""

    def __init__(self, reactor: Any, slots: int, report: Report, *, scratch: Path,
                 env: dict[str, str] | None = None, default_limits: dict[str, Any] | None = None,
                 nice: int = 10, contain: dict[str, Any] | None = None, env_cache: Path | None = None) -> None:
        self.reactor = reactor
        #: the packages jobs ask for (worker/envs.py), and the jobs waiting for their install
        self.envs = EnvCache(reactor, env_cache)
        self.installing: list[Assigned] = []
        self.report = report
        self.scratch = scratch
        #: the containment policy each child gets (worker/contain.py): paths to hide, process limit
        self.contain = contain
        self.base_env = child_env(env or os.environ)
        self.base_env["DSAGE_NICE"] = str(nice)
        self.default_limits = default_limits or {}
        self.queue: deque[Assigned] = deque()
        self.blobs: dict[str, bytes] = {}
        self.children: list[ChildProcess] = []
        self.target = 0
        self.paused = False
        self.closing = False
        self.jobs_done = 0
        self._seq = 0
        #: every decision (which child gets which job, when to read, what an exit means)
        self.planner = SlotPlanner()
        self._idle_waiters: list[Any] = []
        self.capabilities: dict[str, Any] = {}
        self.cpu_fraction = 1.0
        self._duty: Any = None
        self._local_home: Path | None = None
        self._gathering = False   #: reading every lazily-read child: refill once, after all of them
        self._lazy_call: Any = None
        self.lazy_reads = 0       #: timer wake-ups that read lazily-read children
        self.max_result = 64 * 1024 * 1024    #: the server's limit (from its register answer)
        self._unmarked: dict[int, Assigned] = {}   #: started, no start mark or done reported yet
        self._mark_call: Any = None
        ensure_reaper(reactor)
        self.set_slots(slots)

    @property
    def local_home(self) -> Path | None:
        """The server's home when it shares ours (local_results): children write large results
        there themselves, so they never cross the pipe to this process."""
        return self._local_home

    @local_home.setter
    def local_home(self, home: Path | None) -> None:
        self._local_home = home
        for c in self.children:
            c.result_home = home

    # ---------------------------------------------------------------- slots
    @property
    def slots(self) -> int:
        return self.target

    @property
    def busy(self) -> int:
        return sum(1 for c in self.children if c.inflight)

    @property
    def held(self) -> int:
        return len(self.queue) + sum(c.load for c in self.children)

    def set_slots(self, n: int) -> None:
        """Change the number of children live: extra ones finish their job and exit."""
        self.target = max(0, n)
        live = [c for c in self.children if not c.stopped]
        for c in live[self.target:]:
            c.stop()
        for _ in range(self.target - len(live)):
            self._spawn()
        self._pump()

    def _spawn(self) -> None:
        self._seq += 1
        idx = self._seq
        scratch = self.scratch / f"{os.getpid()}-{idx}"
        scratch.mkdir(parents=True, exist_ok=True)
        env = dict(self.base_env)
        policy = dict(self.contain, scratch=str(scratch)) if self.contain is not None else None
        env.update(DSAGE_SCRATCH=str(scratch), TMPDIR=str(scratch), DOT_SAGE=str(scratch / ".sage"),
                   CYSIGNALS_CRASH_NDEBUG="1", PYTHONUNBUFFERED="1")
        events = ChildEvents(done=self._on_done, output=self._on_output, progress=self._on_progress,
                             ended=self._on_ended, ready=lambda c: self._on_ready(c),
                             drained=lambda c: self._pump(), started=self._on_started, dones=self._on_dones)
        child = ChildProcess(idx, self.reactor, env, events, policy, self.planner)
        child.scratch = scratch  # type: ignore[attr-defined]
        child.result_home = self._local_home
        self.children.append(child)
        child.spawn()

    def _on_ready(self, child: ChildProcess) -> None:
        self.capabilities = dict(child.capabilities)
        self._pump()

    # ---------------------------------------------------------------- jobs in
    def add_jobs(self, jobs: list[list[Any]], blobs: dict[str, bytes]) -> None:
        """Jobs from the server: ``[job_id, attempt, payload, blob_id, timeout, limits(, extra)]``
        (*extra*: the options of ``dsage_core.model.ext`` the worker is given)."""
        self.blobs.update(blobs)
        if (not self.default_limits and all(map(isinstance, jobs, _LISTS))
                and set(map(len, jobs)) <= _RUN_LENGTHS):
            # RunEntry's fields are Assigned's first ones: each job at C speed, no record between
            new = list(starmap(Assigned, jobs))
            if any(map(_has_ext, new)):
                for a in new:
                    if a.extra and a.extra.get("packages"):
                        self._with_packages(a, a.extra["packages"])
                    else:
                        self.queue.append(a)
            else:
                self.queue.extend(new)
            self._pump()
            return
        for entry in jobs:
            r = RunEntry.from_wire(entry)
            lim = dict(self.default_limits)
            lim.update(r.limits or {})
            extra = r.ext
            a = Assigned(r.job_id, r.attempt, r.payload, r.blob_id, r.timeout, lim or None, extra=extra)
            if extra and extra.get("packages"):
                self._with_packages(a, extra["packages"])
            else:
                self.queue.append(a)
        self._pump()

    def _with_packages(self, a: Assigned, requirements: list[str]) -> None:
        """Queue *a* once its packages are installed (at once when cached); an install that fails
        fails the job with the installer's message."""
        self.installing.append(a)

        def ok(path: Path) -> None:
            if a not in self.installing:   # killed or handed back meanwhile
                return
            self.installing.remove(a)
            a.extra = {**(a.extra or {}), "env_path": str(path)}
            self.queue.appendleft(a)
            self._pump()

        def failed(message: str) -> None:
            if a in self.installing:
                self.installing.remove(a)
                self._report_done(a, FAILED, None, None, message, 0.0, 0.0)
        on_ready(self.envs.ensure(requirements), ok, failed)

    def kill(self, job_id: int, attempt: int, unstarted_only: bool = False) -> None:
        """Kill a job this worker holds; *unstarted_only* (a cancel): only if it has not started."""
        for a in self.installing:
            if a.job_id == job_id and a.attempt == attempt:
                self.installing.remove(a)
                self._report_done(a, KILLED, None, None, KILLED_BY_OWNER, 0.0, 0.0)
                return
        for a in self.queue:
            if a.job_id == job_id and a.attempt == attempt:
                self.queue.remove(a)
                self._report_done(a, KILLED, None, None, KILLED_BY_OWNER, 0.0, 0.0)
                return
        for c in self.children:
            if c.kill_job(job_id, KILLED, unstarted_only):
                return

    def pause(self, paused: bool) -> None:
        """Stop (SIGSTOP) or continue (SIGCONT) every child; no new jobs start while paused."""
        self.paused = paused
        for c in self.children:
            c.pause(paused)
        self._pump()

    def hand_back_running(self, reason: str) -> None:
        """Give every job this worker holds back to the server (not a failure), e.g. after a pause
        longer than the tray's limit: the children are killed and restarted, the jobs run elsewhere."""
        self.hand_back_queued(reason)
        for c in self.children:
            if c.inflight:
                c.handing_back = reason  # type: ignore[attr-defined]
                c.signal("KILL")
                c.pause(False)  # a stopped process must be continued to die

    def set_cpu_fraction(self, fraction: float, period: float = 0.2) -> None:
        """Duty-cycle the children: run them *fraction* of the time (the tray's "CPU time: 50 %")."""
        self.cpu_fraction = min(1.0, max(0.05, fraction))
        if self._duty is not None and self._duty.active():
            self._duty.cancel()
        self._duty = None
        if self.cpu_fraction < 1.0:
            self._duty_phase(True, period)
        elif not self.paused:
            for c in self.children:
                c.pause(False)
        self._plan_reads()  # a duty-cycled child's pace is no guide to when to read it

    def _duty_phase(self, running: bool, period: float) -> None:
        if self.cpu_fraction >= 1.0 or self.closing:
            return
        if not self.paused:
            for c in self.children:
                c.pause(not running)
        share = self.cpu_fraction if running else 1.0 - self.cpu_fraction
        self._duty = self.reactor.callLater(period * share, self._duty_phase, not running, period)

    def hand_back_queued(self, reason: str) -> None:
        """Return jobs not yet started to the server (e.g. before a long pause or on quit)."""
        while self.installing:
            a = self.installing.pop()
            self.report([BackEvent(BACK, a.job_id, a.attempt, False, reason)])
        while self.queue:
            a = self.queue.popleft()
            self.report([BackEvent(BACK, a.job_id, a.attempt, False, reason)])

    def _pump(self, gathered: bool = False) -> None:
        if self._gathering:
            return
        if not (self.paused or self.closing):
            if self.queue and not gathered and any(c.lazy for c in self.children):
                self._gather()  # fresh loads before dealing: a stale one would unbalance the tail
            self._fill()
        self._plan_reads()
        self._check_idle()

    def _fill(self) -> None:
        """Top children up from the queue, as the planner deals the jobs (SlotPlanner.fill)."""
        if self.queue:
            blobs = self.blobs
            for send in self.planner.fill(self.queue, self.children):
                send.child.send(send.jobs, blobs)

    # ---------------------------------------------------------------- lazy reading (children.py)
    def _gather(self) -> None:
        """Handle what every lazily-read child has written; pumps wait until all are read."""
        self._gathering = True
        try:
            for c in list(self.children):
                if c.lazy:
                    try:
                        c.catch_up()
                    except Exception:  # one child's bad frame must not leave the others unread
                        log.failure("dsage.worker.lazy_read_failed", child=c.index)
        finally:
            self._gathering = False

    def _plan_reads(self) -> None:
        """Read each child's pipe at once or lazily, and set the one timer for the lazy ones."""
        eager = self.paused or self.closing or self.cpu_fraction < 1.0
        wake = None
        for act in self.planner.reads(self.children, self.reactor.seconds(), eager):
            if type(act) is WakeAt:
                wake = act.when
            elif type(act) is ReadLazily:
                act.child.read_lazily()
            else:
                act.child.read_eagerly()
        call = self._lazy_call
        if wake is None:
            if call is not None and call.active():
                call.cancel()
            self._lazy_call = None
        elif call is not None and call.active():
            if abs(call.getTime() - wake) > WAKE_SLACK:
                call.reset(max(0.0, wake - self.reactor.seconds()))
        else:
            self._lazy_call = self.reactor.callLater(max(0.0, wake - self.reactor.seconds()), self._lazy_wake)

    def _lazy_wake(self) -> None:
        self._lazy_call = None
        self.lazy_reads += 1
        try:
            self._gather()
        finally:
            self._pump(gathered=True)  # always plans the next read

    # ---------------------------------------------------------------- events from children
    def _on_started(self, a: Assigned) -> None:
        self._unmarked[a.job_id] = a
        if self._mark_call is None:
            self._mark_call = self.reactor.callLater(START_MARK_DELAY, self._send_start_marks)

    def _send_start_marks(self) -> None:
        """``["start", job_id, attempt, seconds_since_it_started]`` for jobs still running (an age,
        not a time: the worker's clock need not agree with the server's)."""
        self._mark_call = None
        marks, self._unmarked = self._unmarked, {}
        if marks and not self.closing:
            now = self.reactor.seconds()
            self.report([StartEvent(START, a.job_id, a.attempt, max(0.0, now - (a.started or now)))
                         for a in marks.values()], START_MARK_HOLD)

    def _on_done(self, child: ChildProcess, a: Assigned, done: ChildDone) -> None:
        status, result, error, exc = done.status, done.result, done.error, done.exc
        in_file = done.file_size if isinstance(done.file_size, int) else None
        if status != FAILED:
            exc = None   # see model/exc_info.py
        if a.kill_reason == KILLED:
            status, result, error, exc = KILLED, None, KILLED_BY_OWNER, None
        if in_file is not None and status != COMPLETED:
            self._drop_result_file(a, child)
            in_file = None
        if in_file is not None:
            why = self._adopt_result_file(child, a, in_file)
            if why:
                status, result, error, in_file = FAILED, None, why, None
        now = self.reactor.seconds()
        ended = done_time(done.end_time, now)
        ahead = 0.0 if self.closing else child.load + len(self.queue) / max(1, self.target)
        hold = self.planner.done(child, a, done.wall, ahead, now, ended)
        self._report_done(a, status, result, done.preview, error, done.cpu, done.wall, hold, in_file, ended, exc)

    def _on_dones(self, child: ChildProcess, ended: list[tuple[Assigned, ChildDone, float | None]],
                  now: float) -> None:
        """The dones of one frame of *child* (in order, each with when it ended: planner.done_time;
        *now*: when the frame was read), as one report.

        A plain done (completed, its result in the done and small enough to go as it is, the job
        not marked for a kill) becomes its DoneEvent right here; any other goes through
        :meth:`_on_done`, after the plain ones before it (the order stays the child's). The
        frame's report may wait as long as its most urgent done may (planner.done, per job)."""
        events: list[DoneEvent] = []
        hold: float | None = None
        unmarked = self._unmarked
        limit = self.max_result if self.local_home is None else min(self.max_result, local_results.LARGE)
        closing = self.closing
        queued = len(self.queue) / max(1, self.target)
        load = child.load + len(ended)   # the jobs its slot had ahead as each done was read
        plan = self.planner.done
        for a, done, t in ended:
            load -= 1
            result = done.result
            if (done.status != COMPLETED or a.kill_reason is not None or isinstance(done.file_size, int)
                    or not (result is None or (type(result) is bytes and len(result) <= limit))):
                if events:
                    self.jobs_done += len(events)
                    self.report(events, hold or 0.0)
                    events, hold = [], None
                self._on_done(child, a, done)
                continue
            if unmarked:
                unmarked.pop(a.job_id, None)
            fin = now if t is None else t
            wall = done.wall
            if hold != 0.0:
                h = plan(child, a, wall, 0.0 if closing else load + queued, now, t)
                hold = h if hold is None or h < hold else hold
            started = fin - wall if wall else (a.started if a.started is not None else fin)
            events.append(DoneEvent(DONE, a.job_id, a.attempt, COMPLETED, result, done.preview, done.error,
                                    started, fin, done.cpu))
        if events:
            self.jobs_done += len(events)
            self.report(events, hold or 0.0)

    def _adopt_result_file(self, child: ChildProcess, a: Assigned, size: int) -> str | None:
        """Move the large result the child wrote in its own scratch directory (the only place it
        can write; it cannot see the home) to where the server expects it. A rename on the same
        file system: the bytes are not copied. Returns why it could not, or None."""
        src = child_result_path(getattr(child, "scratch", None), a)
        if src is None or self._local_home is None:
            return "the job's result file has no place to go"
        dst = self._local_home / local_results.result_name(a.job_id, a.attempt)
        try:
            fd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW)
            try:
                st = os.fstat(fd)
            finally:
                os.close(fd)
            if not _stat.S_ISREG(st.st_mode) or st.st_size != size or st.st_nlink != 1:
                os.unlink(src)
                return "the job's result file was not the regular file of the size its child reported"
            dst.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.rename(src, dst)
            except OSError as e:
                if e.errno != errno.EXDEV:
                    raise
                with open(src, "rb") as f:   # scratch on another file system: copy it once
                    local_results.write_result_at(dst, f.read())
                os.unlink(src)
                return None
            moved = os.lstat(dst)
            if (moved.st_ino, moved.st_dev) != (st.st_ino, st.st_dev):   # swapped in between
                os.unlink(dst)
                return "the job's result file changed while the worker moved it"
        except OSError as e:
            return f"the job's result file could not be moved: {e}"
        return None

    def _drop_result_file(self, a: Assigned, child: ChildProcess | None = None) -> None:
        src = child_result_path(getattr(child, "scratch", None), a) if child is not None else None
        if src is not None:
            try:
                os.unlink(src)
            except OSError:
                pass
        if self._local_home is not None:   # through a descriptor of results/: never a planted link
            try:
                rd = ResultsDir(self._local_home)
            except ResultFileError:
                return
            rd.unlink(local_results.result_name(a.job_id, a.attempt))
            rd.close()

    def _report_done(self, a: Assigned, status: str, result: Any, preview: Any, error: Any,
                     cpu: float, wall: float, hold: float = 0.0, in_file: int | None = None,
                     ended: float | None = None, exc: Any = None) -> None:
        """*in_file*: the child wrote the result (that many bytes) to the file the server expects;
        *ended*: when the child says the job ended (it may have been read a little later); *exc*:
        the exception the job raised, as its child described it (the done event's ``{"exc"}``)."""
        now = ended if ended is not None else self.reactor.seconds()
        self.jobs_done += 1
        self._unmarked.pop(a.job_id, None)
        started = a.started if a.started is not None else now - (wall or 0.0)
        if wall:
            started = now - wall
        size = in_file if in_file is not None else len(result) if isinstance(result, bytes) else 0
        if size > self.max_result:
            # never send what the server must refuse (a report that size would not even arrive)
            status, result, error = FAILED, None, (f"result too large: {size} bytes > limit "
                                                     f"{self.max_result}")
            if in_file is not None:
                self._drop_result_file(a)
                in_file = None
        if exc is not None and status == FAILED:
            self.report([DoneEvent(DONE, a.job_id, a.attempt, status, result, preview, error, started, now,
                                   cpu, {"exc": exc})], hold)
            return
        if in_file is not None:
            self.report([DoneEvent(DONE, a.job_id, a.attempt, status, None, preview, error, started, now, cpu,
                                   {"file": local_results.result_name(a.job_id, a.attempt), "size": in_file})],
                        hold)
            return
        if (self.local_home is not None and status == COMPLETED and isinstance(result, bytes)
                and len(result) > local_results.LARGE):
            try:  # the server reads it where it expects it; only the name crosses the network
                rel = local_results.write_result(self.local_home, a.job_id, a.attempt, result)
                self.report([DoneEvent(DONE, a.job_id, a.attempt, status, None, preview, error, started, now,
                                       cpu, {"file": rel, "size": len(result)})], hold)
                return
            except OSError as e:
                log.warn("dsage.worker.result_file_failed", job=a.job_id, error=str(e))
        self.report([DoneEvent(DONE, a.job_id, a.attempt, status, result, preview, error, started, now, cpu)],
                    hold)

    def _on_output(self, a: Assigned, text: str) -> None:
        self.report(self._start_mark_now(a) + [OutEvent(OUT, a.job_id, a.attempt, text)])

    def _on_progress(self, a: Assigned, fraction: float, message: str) -> None:
        self.report(self._start_mark_now(a) + [ProgressEvent(PROGRESS, a.job_id, a.attempt, fraction, message)])

    def _start_mark_now(self, a: Assigned) -> list[Any]:
        """The job's pending start mark, to go before its first output or progress: a job that
        reports progress is running, never shown as merely assigned (the mark is otherwise held
        up to START_MARK_DELAY)."""
        if self._unmarked.pop(a.job_id, None) is None:
            return []
        now = self.reactor.seconds()
        return [StartEvent(START, a.job_id, a.attempt, max(0.0, now - (a.started or now)))]

    def _on_ended(self, child: ChildProcess, left: list[Assigned], reason: Any) -> None:
        self.children.remove(child)
        shutil.rmtree(getattr(child, "scratch", ""), ignore_errors=True)
        code, sig = describe_exit(reason)
        if not (child.stopped or child.recycling or self.closing):  # closing: we killed it
            log.warn("dsage.worker.child_died", child=child.index, code=code, signal=sig)
        live = len([c for c in self.children if not c.stopped])
        for act in self.planner.exited(left, code, sig, recycling=child.recycling, stopped=child.stopped,
                                       handed_back=getattr(child, "handing_back", None),
                                       closing=self.closing, live=live, target=self.target,
                                       now=self.reactor.seconds()):
            kind = type(act)
            if kind is Requeue:
                self.queue.appendleft(act.job)
            elif kind is Back:
                self._unmarked.pop(act.job.job_id, None)
                self.report([BackEvent(BACK, act.job.job_id, act.job.attempt, act.failed, act.reason)])
            elif kind is Done:
                self._report_done(act.job, act.status, None, None, act.error, 0.0, 0.0)
            elif kind is Respawn:
                self.reactor.callLater(act.delay, self._respawn)
        self._check_idle()

    def _respawn(self) -> None:
        if not self.closing and len([c for c in self.children if not c.stopped]) < self.target:
            self._spawn()

    # ---------------------------------------------------------------- shutdown
    def when_idle(self) -> Any:
        from twisted.internet.defer import Deferred
        d: Deferred = Deferred()
        self._idle_waiters.append(d)
        self._check_idle()
        return d

    def _check_idle(self) -> None:
        if self._idle_waiters and not self.queue and not any(c.inflight for c in self.children):
            ws, self._idle_waiters = self._idle_waiters, []
            for d in ws:
                d.callback(None)

    def close(self) -> Any:
        """Stop every child; fires when they are all gone. Jobs still held are handed back."""
        from twisted.internet.defer import Deferred, DeferredList
        self.closing = True
        if self._duty is not None and self._duty.active():
            self._duty.cancel()
        if self._mark_call is not None and self._mark_call.active():
            self._mark_call.cancel()
        self._mark_call = None
        self._plan_reads()  # every pipe read at once from now on
        self.hand_back_queued("worker shutting down")
        ds = []
        for c in list(self.children):
            d: Deferred = Deferred()
            orig = c.events.ended

            def ended(child: Any, left: Any, reason: Any, d: Deferred = d, orig: Any = orig) -> None:
                orig(child, left, reason)
                d.callback(None)
            c.events.ended = ended
            c.signal("KILL")
            ds.append(d)
        return DeferredList(ds)
