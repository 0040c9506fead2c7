"""One child process seen from the monitor: pipes on the reactor, timeouts and kills from outside.

The child (``dsage_core.worker.child``) reads job frames on fd 0 and writes frames on fd 3; its fd 1
and 2 carry C-level output, attributed to the job it is running. Jobs run in the order sent, so the
monitor always knows which job is current without any "started" message.
"""
from __future__ import annotations

import os
import signal
import sys
from collections import deque
from itertools import repeat, starmap
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from twisted.internet import abstract, protocol
from twisted.logger import Logger

from dsage_core.model.records import ChildDone, ChildRun
from dsage_core.protocol.eagerwrite import write_now
from dsage_core.result_files import scratch_result_path
from dsage_core.worker import contain, planner
from dsage_core.worker.framing import FrameDecoder, pack_frame
from dsage_core.worker.planner import (  # noqa: F401  (the tuning, named where it always was)
    CPU_GRACE, LAZY_BATCH_MAX, LAZY_MAX_SLEEP, LAZY_MAX_WALL, LAZY_MIN_SLEEP, LAZY_MIN_WALL, LAZY_READ, LAZY_SPAN,
    Kill, ReadEagerly, SlotPlanner)

log = Logger(namespace="dsage.worker.child")

CHILD_ARGS = [sys.executable, "-m", "dsage_core.worker.child"]

#: Lazy reading and the other decisions on this child are the planner's (worker/planner.py):
#: this class carries them out on the child's pipes and the reactor's clock.
_PLANNER = SlotPlanner()


@dataclass(slots=True)
class Assigned:
    """A job the monitor holds: its server attempt, payload, and what happened to it locally."""

    job_id: int
    attempt: int
    payload: bytes
    blob_id: str | None
    timeout: float | None
    limits: dict[str, Any] | None
    extra: dict[str, Any] | None = None  #: options of dsage_core.model.ext the worker is given
    kill_reason: str | None = None   #: "killed" or "timed_out" once the monitor decided to kill it
    timer: Any = None
    started: float | None = None
    sent: float | None = None        #: when the monitor wrote it to its child
    cpu_mark: float | None = None    #: the child's CPU seconds when it became current
    cpu_timer: Any = None            #: the CPU-limit check (a job may lift its own RLIMIT_CPU)


@dataclass
class ChildEvents:
    """Callbacks from a child to its pool."""

    done: Callable[["ChildProcess", Assigned, ChildDone], None]
    output: Callable[[Assigned, str], None]
    progress: Callable[[Assigned, float, str], None]
    ended: Callable[["ChildProcess", list[Assigned], Any], None]
    ready: Callable[["ChildProcess"], None]
    drained: Callable[["ChildProcess"], None] = lambda child: None
    started: Callable[[Assigned], None] = lambda a: None   #: a job became current (see ChildPool)
    #: the dones of one frame at once: ``dones(child, [(job, ChildDone, ended)], now)`` (*ended*:
    #: planner.done_time of the done; None: ``done`` per job)
    dones: Callable[["ChildProcess", list, float], None] | None = None


def describe_exit(reason: Any) -> tuple[int | None, int | None]:
    """(exit code, signal number) from a processEnded reason."""
    v = getattr(reason, "value", None)
    return getattr(v, "exitCode", None), getattr(v, "signal", None)


class ChildProcess(protocol.ProcessProtocol):
    """Drives one child; the planner decides, this class does the pipes and the clock."""

    def __init__(self, index: int, reactor: Any, env: dict[str, str], events: ChildEvents,
                 policy: dict[str, Any] | None = None, planner: SlotPlanner | None = None) -> None:
        self.index = index
        self.planner = planner or _PLANNER
        #: what the child contains itself in (worker/contain.py), sent as its first frame
        self.policy = policy
        self.reactor = reactor
        self.env = env
        self.events = events
        self.inflight: deque[Assigned] = deque()
        self.blobs_sent: set[str] = set()
        self.decoder = FrameDecoder()
        self.pid: int | None = None
        self.capabilities: dict[str, Any] = {}
        self.alive = False
        self.ready = False
        self.recycling = False
        self.stopped = False
        self.avg_wall: float | None = None
        self.avg_key: str | None = None   #: the function (blob id) avg_wall was measured on
        self._ended = False
        self.messages: _PipeReader | None = None
        self._lazy = False
        self._in_data = False   #: handling frames now: a nested read would reorder them
        self._kill_pending = False
        #: the server's home when it shares ours: the child writes large results as files
        self.result_home: Path | None = None
        self.scratch: Path | None = None   #: the child's own directory (set by its pool)

    # ---------------------------------------------------------------- lifecycle
    def spawn(self) -> None:
        # fd 3 is our own pipe, read 1 MiB at a time (Twisted's process pipes read 8 KiB per
        # reactor turn, which caps large results at a few tens of MB/s)
        rfd, wfd = os.pipe()
        os.set_blocking(rfd, False)
        _grow_pipe(wfd)
        env = dict(self.env)
        if self.policy is not None:
            env["DSAGE_CONTAIN_FRAME"] = "1"
        try:
            self.reactor.spawnProcess(self, CHILD_ARGS[0], CHILD_ARGS, env=env,
                                      childFDs={0: "w", 1: "r", 2: "r", 3: wfd})
        finally:
            os.close(wfd)
        if self.policy is not None:   # over the pipe: no path of it in the child's environment
            self.transport.writeToChild(0, pack_frame(["contain", self.policy]))
        self.messages = _PipeReader(self.reactor, rfd, self._fd3_data)
        self.reactor.addReader(self.messages)

    def connectionMade(self) -> None:
        self.pid = self.transport.pid
        self.alive = True

    def stop(self) -> None:
        """Ask the child to exit after its current work (used at shutdown and on slot removal)."""
        self.stopped = True
        if self.alive:
            try:
                self.transport.writeToChild(0, pack_frame(["exit"]))
                self.transport.closeChildFD(0)
            except Exception:
                self.signal("KILL")

    def signal(self, name: str) -> None:
        if self.alive:
            if name == "KILL" and self.pid:
                contain.kill_tree(self.pid)   # the job's processes too, even those in a new session
            try:
                self.transport.signalProcess(name)
            except Exception:
                pass

    def pause(self, paused: bool) -> None:
        """SIGSTOP / SIGCONT the child (the tray's Pause); timeouts keep counting wall time."""
        if self.alive and self.pid:
            contain.signal_tree(self.pid, signal.SIGSTOP if paused else signal.SIGCONT)

    # ---------------------------------------------------------------- sending
    @property
    def load(self) -> int:
        return len(self.inflight)

    @property
    def accepting(self) -> bool:
        """It takes jobs: started, not asked to be recycled, not stopping."""
        return self.ready and not self.recycling and not self.stopped

    @property
    def readable(self) -> bool:
        """It may be read lazily: accepting, and its message pipe is open."""
        return self.accepting and self.messages is not None and self.messages.fd >= 0

    def allowance(self, key: str | None = None) -> int:
        """How many jobs of function *key* this child may hold (see planner.allowance)."""
        return planner.allowance(self, key)

    def send(self, jobs: list[Assigned], blobs: dict[str, bytes]) -> None:
        entries = []
        now = self.reactor.seconds()
        for a in jobs:
            a.sent = now
            blob = None
            if a.blob_id and a.blob_id not in self.blobs_sent:
                blob = blobs.get(a.blob_id)
                self.blobs_sent.add(a.blob_id)
            # in its own scratch dir (the monitor moves it into the server's results dir): a job
            # child can neither see nor write the home
            # a copy of a replicated job answers in bytes: the server compares them
            rfile = (scratch_result_path(self.scratch, a.job_id, a.attempt)
                     if self.result_home is not None and self.scratch is not None
                     and not (a.extra and a.extra.get("replicas")) else None)
            entries.append(ChildRun(a.job_id, a.payload, a.blob_id, blob, a.limits or {}, rfile, a.extra))
            self.inflight.append(a)
        if len(self.inflight) == len(jobs):
            self._became_current()
        pipe = self.transport.pipes.get(0)
        if pipe is None:  # its stdin is gone: it is exiting; processEnded hands these back
            return
        write_now(pipe, pack_frame(["run", entries]))

    # ---------------------------------------------------------------- lazy reading
    @property
    def lazy(self) -> bool:
        """True while the monitor does not poll this child's message pipe (see LAZY_MIN_WALL)."""
        return self._lazy

    def lazy_until(self, now: float) -> float | None:
        """When this child's pipe must be read next if read lazily; None: at once (planner.lazy_until)."""
        return planner.lazy_until(self, now)

    def read_lazily(self) -> None:
        if not self._lazy and self.messages is not None and self.messages.fd >= 0:
            self.reactor.removeReader(self.messages)
            self._lazy = True

    def read_eagerly(self) -> None:
        if self._lazy:
            self._lazy = False
            if self.messages is not None and self.messages.fd >= 0:
                self.reactor.addReader(self.messages)

    def catch_up(self) -> None:
        """Handle everything the child has written so far (no-op while already handling it)."""
        if self.messages is not None and not self._in_data:
            self.messages.read_available()

    def kill_job(self, job_id: int, reason: str, unstarted_only: bool = False) -> bool:
        """Kill the job if this child holds it: the whole child goes (it restarts). With
        *unstarted_only* (a cancel) the job that is running now is spared."""
        self.catch_up()  # the job that is current now, not the one current at the last read
        actions = self.planner.kill(self, job_id, reason, unstarted_only)
        if actions is None:
            return False
        for act in actions:
            if type(act) is Kill:
                self.signal("KILL")
            elif type(act) is ReadEagerly:
                self.read_eagerly()  # see at once when it becomes current
        return True

    def _became_current(self, started: float | None = None) -> None:
        """The head of the queue is running: since *started* (the end of the job before it, as
        the child wrote it), else since now. Its timeout counts from then."""
        if not self.inflight:
            return
        a = self.inflight[0]
        for act in self.planner.current(a, started, self.reactor.seconds()):
            if type(act) is Kill:
                self._kill_pending = True
                if not self._in_data:
                    self._kill_if_current_marked()
                return
            a.timer = self.reactor.callLater(act.delay, self._timed_out, a)   # a StartClock
        cpu = (a.limits or {}).get("cpu")
        if cpu and self.pid:
            # the child's RLIMIT_CPU is a soft limit the job can lift: check from outside too
            a.cpu_mark = process_cpu(self.pid)
            a.cpu_timer = self.reactor.callLater(float(cpu) + CPU_GRACE, self._check_cpu, a)
        self.events.started(a)

    def _check_cpu(self, a: Assigned) -> None:
        a.cpu_timer = None
        self.catch_up()
        if not (self.inflight and self.inflight[0] is a) or a.kill_reason or self.pid is None:
            return
        act = self.planner.cpu_check(a, process_cpu(self.pid))
        if type(act) is Kill:
            self.signal("KILL")
        elif act is not None:
            a.cpu_timer = self.reactor.callLater(act, self._check_cpu, a)

    def _timed_out(self, a: Assigned) -> None:
        a.timer = None
        self.catch_up()  # it may have ended, unread
        if self.planner.timed_out(self, a):
            self.signal("KILL")

    # ---------------------------------------------------------------- receiving
    def _fd3_data(self, data: bytes) -> None:
        self._in_data = True
        try:
            msgs = self.decoder.feed(data)
            if any(m[0] == "recycle" for m in msgs):
                self.recycling = True  # it takes no more jobs: refills for its dones go elsewhere
            for msg in msgs:
                self._message(msg)
        finally:
            self._in_data = False
        self._kill_if_current_marked()

    def _kill_if_current_marked(self) -> None:
        """Kill the child if the job it runs now is marked. Decided after a whole read: while
        handling a batch of dones, the job they make current may itself have ended (its done is
        further on), and killing then would kill the innocent job after it."""
        if self._kill_pending:
            self._kill_pending = False
            if self.inflight and self.inflight[0].kill_reason:
                self.signal("KILL")

    def childDataReceived(self, fd: int, data: bytes) -> None:
        if self._lazy:
            self.catch_up()  # C-level output belongs to the job running now
        if self.inflight:
            self.events.output(self.inflight[0], data.decode("utf-8", "replace"))
        else:
            log.debug("dsage.worker.child_output", child=self.index, text=data[:200])

    def _message(self, msg: list[Any]) -> None:
        kind = msg[0]
        if kind == "done":
            self._dones(msg[1])
            self.events.drained(self)
        elif kind == "out":
            a = self._find(msg[1])
            if a is not None:
                self.events.output(a, msg[2])
        elif kind == "progress":
            a = self._find(msg[1])
            if a is not None:
                self.events.progress(a, msg[2], msg[3])
        elif kind == "hello":
            self.capabilities = msg[2] or {}
            self.ready = True
            self.events.ready(self)
        elif kind == "recycle":
            self.recycling = True

    def _find(self, job_id: int) -> Assigned | None:
        for a in self.inflight:
            if a.job_id == job_id:
                return a
        return None

    def _dones(self, entries: list[Any]) -> None:
        """The dones of one frame, handled as one unit: each job leaves the pipeline in order, and
        a job that became current and ended within the frame gets no clocks (no timeout or CPU
        timer, no start mark: its done says when it ran); only the job current after the frame
        does. The pool then hears of all of them in one call (ChildEvents.dones). A malformed
        entry ends the frame there: the ones before it are handled, then its error is raised."""
        error: Exception | None = None
        if all(map(isinstance, entries, _LISTS)) and set(map(len, entries)) <= _DONE_LENGTHS:
            dones = list(starmap(ChildDone, entries))   # ChildDone.from_wire of each, at C speed
        else:
            dones = []
            for entry in entries:
                try:
                    dones.append(ChildDone.from_wire(entry))
                except Exception as e:
                    error = e
                    break
        inflight = self.inflight
        now = self.reactor.seconds()
        ended: list[tuple[Assigned, ChildDone, float | None]] = []
        pace, done_time = planner.pace, planner.done_time
        last = len(dones) - 1
        for i, done in enumerate(dones):
            if not inflight or inflight[0].job_id != done.job_id:
                log.warn("dsage.worker.unexpected_done", child=self.index, job=done.job_id)
                continue
            a = inflight.popleft()
            if a.timer is not None or a.cpu_timer is not None:
                _cancel_timers(a)
            self.avg_wall, self.avg_key = pace(self.avg_wall, self.avg_key, a.blob_id, done.wall or 0.0)
            t = done_time(done.end_time, now)
            if inflight:
                nxt = inflight[0]
                if i < last and dones[i + 1].job_id == nxt.job_id:
                    # it ends in this frame too: only when it started (as planner.current sets it)
                    s0 = now if t is None else t
                    nxt.started = s0 if nxt.sent is None or s0 >= nxt.sent else nxt.sent
                else:
                    self._became_current(t)
            ended.append((a, done, t))
        if ended:
            if self.events.dones is not None:
                self.events.dones(self, ended, now)
            else:
                for a, done, _ in ended:
                    self.events.done(self, a, done)
        if error is not None:
            raise error

    def wants_more(self, key: str | None = None) -> int:
        """How many jobs to send now (see planner.wants_more)."""
        return planner.wants_more(self, key)

    def processEnded(self, reason: Any) -> None:
        if self._ended:
            return
        self._ended = True
        self.alive = False
        self.ready = False   # the dones read below must not refill a dead child
        if self.messages is not None:
            self.messages.drain()  # the child is gone: everything it wrote is in the pipe now
        left = list(self.inflight)
        self.inflight.clear()
        for a in left:
            _cancel_timers(a)
        self.events.ended(self, left, reason)


#: the shapes ChildDone.from_wire accepts (msgpack reads arrays as lists), checked a frame at a time
_LISTS = repeat(list)
_DONE_LENGTHS = frozenset(range(len(ChildDone._fields) - len(ChildDone._field_defaults), len(ChildDone._fields) + 1))

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def process_cpu(pid: int) -> float | None:
    """CPU seconds (user + system, all threads) of process *pid*, from /proc (Linux)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _TICKS
    except (OSError, IndexError, ValueError):
        return None


def _cancel_timers(a: Assigned) -> None:
    for t in (a.timer, a.cpu_timer):
        if t is not None and t.active():
            t.cancel()


def _grow_pipe(fd: int, size: int = 1 << 20) -> None:
    """Let a 1 MiB result cross the pipe in one write (Linux; silently skipped elsewhere)."""
    try:
        import fcntl
        fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), size)
    except OSError:
        pass


class _PipeReader(abstract.FileDescriptor):
    """Reads the child's message pipe on the reactor in large chunks."""

    def __init__(self, reactor: Any, fd: int, on_data: Callable[[bytes], None]) -> None:
        super().__init__(reactor)
        self.fd = fd
        self.on_data = on_data

    def fileno(self) -> int:
        return self.fd

    def doRead(self) -> Any:
        try:
            data = os.read(self.fd, 1 << 20)
        except BlockingIOError:
            return None
        except OSError:
            data = b""
        if not data:
            self.close()
            return None
        self.on_data(data)
        return None

    def read_available(self) -> None:
        """Read until the pipe is empty; at end of file, close it."""
        while self.fd >= 0:
            try:
                data = os.read(self.fd, 1 << 20)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self.close()
                return
            self.on_data(data)

    def drain(self) -> None:
        self.read_available()
        self.close()

    def close(self) -> None:
        if self.fd >= 0:
            self.reactor.removeReader(self)
            os.close(self.fd)
            self.fd = -1

    def connectionLost(self, reason: Any) -> None:
        self.close()
