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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from twisted.internet import abstract, protocol
from twisted.logger import Logger

from dsage_core import latency
from dsage_core.protocol.eagerwrite import write_now
from dsage_core.worker import contain
from dsage_core.worker.framing import FrameDecoder, pack_frame

log = Logger(namespace="dsage.worker.child")

CHILD_ARGS = [sys.executable, "-m", "dsage_core.worker.child"]

#: Lazy reading. A child whose jobs take a while and who holds several writes its dones at once,
#: but the monitor need not wake for each: it stops polling that child's pipe and reads it on a
#: timer, when the child is predicted to be half-way through its second-to-last job (or whenever
#: the monitor is awake anyway). On 2 cores every wake-up preempts a busy child and runs on cold
#: caches; for 20 ms jobs this was the monitor's one wake per job.
LAZY_READ = latency.current().lazy_read            #: False (plain): every pipe is polled
LAZY_MIN_WALL = latency.current().lazy_min_wall    #: shorter jobs: read at once (the child coalesces their dones itself)
LAZY_MAX_WALL = latency.current().lazy_max_wall    #: longer jobs: read at once (they hold one job at a time anyway)
LAZY_MAX_SLEEP = latency.current().lazy_max_sleep  #: never unread for longer (a pace just skewed by one long job)
LAZY_SPAN = latency.current().lazy_span            #: a lazily-read child gets about this much extra work (in job time) ...
LAZY_BATCH_MAX = latency.current().lazy_batch_max  #: ... but never more than this many extra jobs
LAZY_MIN_SLEEP = latency.current().lazy_min_sleep  #: a pause shorter than this is not worth two epoll_ctl calls


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

    done: Callable[["ChildProcess", Assigned, list[Any]], None]
    output: Callable[[Assigned, str], None]
    progress: Callable[[Assigned, float, str], None]
    ended: Callable[["ChildProcess", list[Assigned], Any], None]
    ready: Callable[["ChildProcess"], None]
    drained: Callable[["ChildProcess"], None] = lambda child: None
    started: Callable[[Assigned], None] = lambda a: None   #: a job became current (see ChildPool)


def describe_exit(reason: Any) -> tuple[int | None, int | None]:
    """(exit code, signal number) from a processEnded reason."""
    v = getattr(reason, "value", None)
    return getattr(v, "exitCode", None), getattr(v, "signal", None)


class ChildProcess(protocol.ProcessProtocol):
    """Drives one child; the pool decides what to send, this class does the pipes and the clock."""

    def __init__(self, index: int, reactor: Any, env: dict[str, str], events: ChildEvents,
                 policy: dict[str, Any] | None = None) -> None:
        self.index = index
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

    def allowance(self, key: str | None = None) -> int:
        """How many jobs this child may hold: 1 for slow jobs (none waits behind a long one); for
        jobs up to 0.1 s, 2 plus a lazy-reading batch (the next job is there when one ends, and
        the monitor reads dones a batch at a time); more for short jobs."""
        if not self.ready or self.recycling or self.stopped:
            return 0
        avg = self.avg_wall if key == self.avg_key else None  # another function: duration unknown
        if avg is None or avg > LAZY_MAX_WALL:
            return 1
        if avg >= LAZY_MIN_WALL:
            return 2 + max(1, min(LAZY_BATCH_MAX, int(LAZY_SPAN / avg)))
        return max(2, min(128, int(0.005 / max(avg, 1e-6))))

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
            rfile = (f"{self.scratch}/results/{a.job_id}-{a.attempt}.bin"
                     if self.result_home is not None and self.scratch is not None
                     and not (a.extra and a.extra.get("replicas")) else None)
            entries.append([a.job_id, a.payload, a.blob_id, blob, a.limits or {}, rfile, a.extra])
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
        """When this child's pipe must be read next if it is read lazily; None: read it at once.

        The child must hold at least 3 jobs of the function its pace was measured on, none of
        them marked for a kill. The read comes half-way through the second-to-last job, and no
        later than the earliest moment a queued job could reach its timeout."""
        if not self.ready or self.stopped or self.recycling or self.messages is None or self.messages.fd < 0:
            return None
        load, avg = len(self.inflight), self.avg_wall
        if not LAZY_READ or load < 3 or avg is None or not LAZY_MIN_WALL <= avg <= LAZY_MAX_WALL:
            return None
        current = self.inflight[0]
        s0 = current.started if current.started is not None else now
        t = s0 + (load - 1.5) * avg
        for a in self.inflight:
            if a.blob_id != self.avg_key or a.kill_reason:
                return None
            if a is not current and a.timeout:
                t = min(t, s0 + a.timeout)  # it cannot have started before the current job
        if t - now < LAZY_MIN_SLEEP:
            return None
        return min(t, now + LAZY_MAX_SLEEP)

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
        for a in self.inflight:
            if a.job_id == job_id:
                if unstarted_only and a is self.inflight[0]:
                    return True   # running: a cancel comes too late
                a.kill_reason = reason
                if a is self.inflight[0]:
                    self.signal("KILL")
                else:
                    self.read_eagerly()  # see at once when it becomes current
                return True
        return False

    def _became_current(self, started: float | None = None) -> None:
        """The head of the queue is running: since *started* (the end of the job before it, as
        the child wrote it), else since now. Its timeout counts from then."""
        if not self.inflight:
            return
        a = self.inflight[0]
        now = self.reactor.seconds()
        if started is None:
            started = now
        # it cannot have started before it was sent (the done before it may be older)
        a.started = max(started, a.sent) if a.sent is not None else started
        if a.kill_reason:
            self._kill_pending = True
            if not self._in_data:
                self._kill_if_current_marked()
            return
        elif a.timeout:
            a.timer = self.reactor.callLater(max(0.0, a.timeout - (now - a.started)), self._timed_out, a)
        cpu = (a.limits or {}).get("cpu")
        if cpu and self.pid and not a.kill_reason:
            # the child's RLIMIT_CPU is a soft limit the job can lift: check from outside too
            a.cpu_mark = process_cpu(self.pid)
            a.cpu_timer = self.reactor.callLater(float(cpu) + CPU_GRACE, self._check_cpu, a)
        self.events.started(a)

    def _check_cpu(self, a: Assigned) -> None:
        a.cpu_timer = None
        self.catch_up()
        if not (self.inflight and self.inflight[0] is a) or a.kill_reason or self.pid is None:
            return
        budget = float((a.limits or {}).get("cpu") or 0) + CPU_GRACE
        now, mark = process_cpu(self.pid), a.cpu_mark
        if now is None or mark is None:
            return
        if now - mark >= budget:
            a.kill_reason = "cpu_limit"
            self.signal("KILL")
        else:
            a.cpu_timer = self.reactor.callLater(max(0.05, budget - (now - mark)), self._check_cpu, a)

    def _timed_out(self, a: Assigned) -> None:
        a.timer = None
        self.catch_up()  # it may have ended, unread
        if self.inflight and self.inflight[0] is a:
            a.kill_reason = "timed_out"
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
            for entry in msg[1]:
                self._done(entry)
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

    def _done(self, entry: list[Any]) -> None:
        if not self.inflight or self.inflight[0].job_id != entry[0]:
            log.warn("dsage.worker.unexpected_done", child=self.index, job=entry[0])
            return
        a = self.inflight.popleft()
        _cancel_timers(a)
        wall = entry[6] or 0.0
        if self.avg_wall is None or a.blob_id != self.avg_key:
            self.avg_wall, self.avg_key = wall, a.blob_id
        else:
            self.avg_wall = 0.8 * self.avg_wall + 0.2 * wall
        self._became_current(done_time(entry, self.reactor.seconds()))
        self.events.done(self, a, entry)

    def wants_more(self, key: str | None = None) -> int:
        """How many jobs to send now: top up only once the child's pipeline is half empty, so
        frames carry many jobs when jobs are short (one frame per job caps the hop at ~45k/s); a
        lazily-read child is filled up at every read, so the next read comes as late as it can."""
        allow = self.allowance(key)
        if self.load > allow // 2 and not self._lazy:
            return 0
        return allow - self.load  # a lazily-read child is topped up whenever it is read

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


#: seconds of CPU a job may use past its cpu_limit before the monitor kills it (its own SIGXCPU
#: comes first and fails it with a clear error, unless it lifted its limit)
CPU_GRACE = 1.0
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


def done_time(entry: list[Any], now: float) -> float | None:
    """When the job of a done entry ended (the child's ``time.time()``), if the child said so and
    it is plausible on the monitor's clock *now* (a test's fake clock is not)."""
    t = entry[8] if len(entry) > 8 else None
    return t if isinstance(t, float) and now - 3600 < t <= now else None


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
