"""The worker's slots: N child processes, a local queue, and the events reported to the server.

A job never takes the worker down: it runs in a child; a child that dies is replaced. Why a job
ended is decided here, from what the monitor did (timeout, kill) and how the child exited:

* killed by us for a timeout → ``timed_out``; killed on request → ``killed``
* SIGKILL we did not send (OOM killer, an operator, chaos) → handed back to the server (retried)
* any other signal or exit code while running (segfault, ``os._exit``) → ``failed`` with the reason
"""
from __future__ import annotations

import errno
import os
import shutil
import stat as _stat
import signal as _signal
from collections import deque
from pathlib import Path
from typing import Any, Callable

from twisted.logger import Logger

from dsage_core import latency, local_results
from dsage_core.result_files import ResultFileError, ResultsDir
from dsage_core.memory import tuned_env
from dsage_core.worker.envs import EnvCache, on_ready
from dsage_core.worker.reaping import ensure_reaper
from dsage_core.worker.children import Assigned, ChildEvents, ChildProcess, describe_exit, done_time

log = Logger(namespace="dsage.worker.pool")

Report = Callable[..., None]   #: report(events, hold=0.0): see Batcher.add_many

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
HOLD_FRACTION = latency.current().report_hold_fraction
HOLD_MIN_WALL = latency.current().report_hold_min_wall
HOLD_MAX = latency.current().report_hold_max


#: "start" marks (a job became current in its child: the server shows it running, not just
#: assigned) are not sent per job: the pool collects them and sends those of jobs still running
#: every START_MARK_DELAY seconds (a job that ended meanwhile needs none: its done says when it
#: started), held START_MARK_HOLD seconds so they ride with the next report. At most one small
#: event per slot per delay, however many jobs per second run.
START_MARK_DELAY = latency.current().start_mark_delay
START_MARK_HOLD = latency.current().start_mark_hold


def report_hold(wall: float | None, jobs_ahead: float) -> float:
    """How long a finished job's report may wait for company (0: send now). *jobs_ahead*: the jobs
    its slot still has to run before it would idle (0: the server must hear now)."""
    if not wall or wall < HOLD_MIN_WALL or jobs_ahead <= 0:
        return 0.0
    return min(HOLD_MAX, HOLD_FRACTION * wall, jobs_ahead * wall / 2)


#: what a job's environment never holds: where dsage keeps its keys, the desktop app's pid
PRIVATE_ENV = ("DSAGE_HOME", "DSAGE_SETTINGS_DIR", "DSAGE_EXIT_WITH_PID", "DSAGE_KEY")


def child_result_path(scratch: Path | None, a: Assigned) -> Path | None:
    """Where a child writes a large result of *a* (in its own scratch dir, beside the job's)."""
    return Path(scratch) / "results" / f"{a.job_id}-{a.attempt}.bin" if scratch is not None else None


def child_env(environ: Any) -> dict[str, str]:
    """The environment job children start from: ours, tuned, without dsage's private names."""
    env = tuned_env(dict(environ))
    for name in PRIVATE_ENV:
        env.pop(name, None)
    return env


def _signame(sig: int) -> str:
    try:
        return _signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"


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
        self._crash_times: deque[float] = deque(maxlen=5)
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
                             drained=lambda c: self._pump(), started=self._on_started)
        child = ChildProcess(idx, self.reactor, env, events, policy)
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
        for entry in jobs:
            jid, attempt, payload, blob_id, timeout, limits = entry[:6]
            lim = dict(self.default_limits)
            lim.update(limits or {})
            extra = entry[6] if len(entry) > 6 else None
            a = Assigned(jid, attempt, payload, blob_id, timeout, lim or None, extra=extra)
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
                self._report_done(a, "failed", None, None, message, 0.0, 0.0)
        on_ready(self.envs.ensure(requirements), ok, failed)

    def kill(self, job_id: int, attempt: int, unstarted_only: bool = False) -> None:
        """Kill a job this worker holds; *unstarted_only* (a cancel): only if it has not started."""
        for a in self.installing:
            if a.job_id == job_id and a.attempt == attempt:
                self.installing.remove(a)
                self._report_done(a, "killed", None, None, "killed by its owner", 0.0, 0.0)
                return
        for a in self.queue:
            if a.job_id == job_id and a.attempt == attempt:
                self.queue.remove(a)
                self._report_done(a, "killed", None, None, "killed by its owner", 0.0, 0.0)
                return
        for c in self.children:
            if c.kill_job(job_id, "killed", unstarted_only):
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
            self.report([["back", a.job_id, a.attempt, False, reason]])
        while self.queue:
            a = self.queue.popleft()
            self.report([["back", a.job_id, a.attempt, False, reason]])

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
        """Top children up from the queue, by function (each child's pace is per function). When
        the queue cannot fill every child, jobs go one by one to the least loaded one, so a
        batch's last jobs spread evenly and its children finish together."""
        while self.queue:
            key = self.queue[0].blob_id
            rooms = {}
            for c in self.children:
                room = min(c.wants_more(key), 64)
                if room > 0:
                    rooms[c] = room
            if not rooms:
                return
            batches: dict[ChildProcess, list[Assigned]] = {c: [] for c in rooms}
            if len(self.queue) >= sum(rooms.values()):
                for c, room in rooms.items():
                    while len(batches[c]) < room and self.queue[0].blob_id == key:
                        batches[c].append(self.queue.popleft())
            else:
                while self.queue and rooms and self.queue[0].blob_id == key:
                    c = min(rooms, key=lambda c: c.load + len(batches[c]))
                    batches[c].append(self.queue.popleft())
                    rooms[c] -= 1
                    if not rooms[c]:
                        del rooms[c]
            for c, batch in batches.items():
                if batch:
                    c.send(batch, self.blobs)

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
        wake = None
        if not (self.paused or self.closing or self.cpu_fraction < 1.0):
            now = self.reactor.seconds()
            for c in self.children:
                t = c.lazy_until(now)
                if t is None:
                    c.read_eagerly()
                else:
                    c.read_lazily()
                    wake = t if wake is None or t < wake else wake
        else:
            for c in self.children:
                c.read_eagerly()
        call = self._lazy_call
        if wake is None:
            if call is not None and call.active():
                call.cancel()
            self._lazy_call = None
        elif call is not None and call.active():
            if abs(call.getTime() - wake) > 0.0005:
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
            self.report([["start", a.job_id, a.attempt, max(0.0, now - (a.started or now))]
                         for a in marks.values()], START_MARK_HOLD)

    def _on_done(self, child: ChildProcess, a: Assigned, entry: list[Any]) -> None:
        _, status, result, error, preview, cpu, wall = entry[:7]
        in_file = entry[7] if len(entry) > 7 and isinstance(entry[7], int) else None
        exc = entry[9] if len(entry) > 9 and status == "failed" else None   # see model/exc_info.py
        if a.kill_reason == "killed":
            status, result, error, exc = "killed", None, "killed by its owner", None
        if in_file is not None and status != "completed":
            self._drop_result_file(a, child)
            in_file = None
        if in_file is not None:
            why = self._adopt_result_file(child, a, in_file)
            if why:
                status, result, error, in_file = "failed", None, why, None
        ended = done_time(entry, self.reactor.seconds())
        ahead = 0.0 if self.closing else child.load + len(self.queue) / max(1, self.target)
        hold = report_hold(wall, ahead)
        if hold and ended is not None:  # read late (lazy reading): the hold counts from its end
            hold = max(0.0, hold - max(0.0, self.reactor.seconds() - ended))
        self._report_done(a, status, result, preview, error, cpu, wall, hold, in_file, ended, exc)

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
            status, result, error = "failed", None, (f"result too large: {size} bytes > limit "
                                                     f"{self.max_result}")
            if in_file is not None:
                self._drop_result_file(a)
                in_file = None
        event = ["done", a.job_id, a.attempt, status, result, preview, error, started, now, cpu]
        if exc is not None and status == "failed":
            event.append({"exc": exc})
            self.report([event], hold)
            return
        if in_file is not None:
            event[4] = None
            event.append({"file": local_results.result_name(a.job_id, a.attempt), "size": in_file})
            self.report([event], hold)
            return
        if (self.local_home is not None and status == "completed" and isinstance(result, bytes)
                and len(result) > local_results.LARGE):
            try:  # the server reads it where it expects it; only the name crosses the network
                rel = local_results.write_result(self.local_home, a.job_id, a.attempt, result)
                event[4] = None
                event.append({"file": rel, "size": len(result)})
            except OSError as e:
                log.warn("dsage.worker.result_file_failed", job=a.job_id, error=str(e))
        self.report([event], hold)

    def _on_output(self, a: Assigned, text: str) -> None:
        self.report(self._start_mark_now(a) + [["out", a.job_id, a.attempt, text]])

    def _on_progress(self, a: Assigned, fraction: float, message: str) -> None:
        self.report(self._start_mark_now(a) + [["progress", a.job_id, a.attempt, fraction, message]])

    def _start_mark_now(self, a: Assigned) -> list[list[Any]]:
        """The job's pending start mark, to go before its first output or progress: a job that
        reports progress is running, never shown as merely assigned (the mark is otherwise held
        up to START_MARK_DELAY)."""
        if self._unmarked.pop(a.job_id, None) is None:
            return []
        now = self.reactor.seconds()
        return [["start", a.job_id, a.attempt, max(0.0, now - (a.started or now))]]

    def _on_ended(self, child: ChildProcess, left: list[Assigned], reason: Any) -> None:
        self.children.remove(child)
        shutil.rmtree(getattr(child, "scratch", ""), ignore_errors=True)
        code, sig = describe_exit(reason)
        if left:
            # a child that asked to be recycled ran nothing after its last done
            current, rest = (None, left) if child.recycling and code == 0 else (left[0], left[1:])
            if current is not None:
                self._settle_current(current, code, sig, getattr(child, "handing_back", None))
            for a in reversed(rest):  # never started: run them on another child, not a failure
                if a.kill_reason == "killed":
                    self._report_done(a, "killed", None, None, "killed by its owner", 0.0, 0.0)
                elif self.closing or getattr(child, "handing_back", None):
                    self.report([["back", a.job_id, a.attempt, False, "worker shutting down"]])
                else:
                    self.queue.appendleft(a)
        if not (child.stopped or child.recycling or self.closing):  # closing: we killed it
            log.warn("dsage.worker.child_died", child=child.index, code=code, signal=sig)
        if not self.closing and len([c for c in self.children if not c.stopped]) < self.target:
            self._respawn_later(crashed=not (child.stopped or child.recycling))
        self._check_idle()

    def _settle_current(self, a: Assigned, code: int | None, sig: int | None,
                        handed_back: str | None = None) -> None:
        self._unmarked.pop(a.job_id, None)
        if handed_back:
            self.report([["back", a.job_id, a.attempt, False, handed_back]])
        elif a.kill_reason == "timed_out":
            self._report_done(a, "timed_out", None, None,
                              f"timed out: the job ran longer than its {a.timeout:g} s timeout and was killed",
                              0.0, 0.0)
        elif a.kill_reason == "killed":
            self._report_done(a, "killed", None, None, "killed by its owner", 0.0, 0.0)
        elif a.kill_reason == "cpu_limit":
            self._report_done(a, "failed", None, None,
                              f"CPU time limit of {(a.limits or {}).get('cpu'):g} s exceeded (the job "
                              f"went on past its own limit; the worker killed it)", 0.0, 0.0)
        elif self.closing:
            self.report([["back", a.job_id, a.attempt, False, "worker shutting down"]])
        elif sig == _signal.SIGKILL:
            # not our doing: the OOM killer, an operator, or the machine going down: retry elsewhere
            self.report([["back", a.job_id, a.attempt, True, "child process was killed (SIGKILL)"]])
        elif sig is not None:
            mem = (a.limits or {}).get("mem")
            hint = (f" (its memory limit of {int(mem) // 2**20} MiB was probably exceeded: "
                    f"an allocation in C code failed)" if mem else "")
            self._report_done(a, "failed", None, None,
                              f"the job's process died from {_signame(sig)} (signal {sig}){hint}; "
                              f"the worker restarted the slot", 0.0, 0.0)
        else:
            self._report_done(a, "failed", None, None,
                              f"the job's process exited with code {code} before finishing "
                              f"(os._exit or sys.exit in a C extension?); the worker restarted the slot",
                              0.0, 0.0)

    def _respawn_later(self, crashed: bool) -> None:
        now = self.reactor.seconds()
        delay = 0.0
        if crashed:
            self._crash_times.append(now)
            if len(self._crash_times) == self._crash_times.maxlen and now - self._crash_times[0] < 5:
                delay = 2.0  # a child that dies at start-up must not spin the CPU
        self.reactor.callLater(delay, self._respawn)

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
