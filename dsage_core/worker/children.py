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

from dsage_core import local_results
from dsage_core.protocol.eagerwrite import write_now
from dsage_core.worker.framing import FrameDecoder, pack_frame

log = Logger(namespace="dsage.worker.child")

CHILD_ARGS = [sys.executable, "-m", "dsage_core.worker.child"]


@dataclass(slots=True)
class Assigned:
    """A job the monitor holds: its server attempt, payload, and what happened to it locally."""

    job_id: int
    attempt: int
    payload: bytes
    blob_id: str | None
    timeout: float | None
    limits: dict[str, Any] | None
    kill_reason: str | None = None   #: "killed" or "timed_out" once the monitor decided to kill it
    timer: Any = None
    started: float | None = None


@dataclass
class ChildEvents:
    """Callbacks from a child to its pool."""

    done: Callable[["ChildProcess", Assigned, list[Any]], None]
    output: Callable[[Assigned, str], None]
    progress: Callable[[Assigned, float, str], None]
    ended: Callable[["ChildProcess", list[Assigned], Any], None]
    ready: Callable[["ChildProcess"], None]
    drained: Callable[["ChildProcess"], None] = lambda child: None


def describe_exit(reason: Any) -> tuple[int | None, int | None]:
    """(exit code, signal number) from a processEnded reason."""
    v = getattr(reason, "value", None)
    return getattr(v, "exitCode", None), getattr(v, "signal", None)


class ChildProcess(protocol.ProcessProtocol):
    """Drives one child; the pool decides what to send, this class does the pipes and the clock."""

    def __init__(self, index: int, reactor: Any, env: dict[str, str], events: ChildEvents) -> None:
        self.index = index
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
        #: the server's home when it shares ours: the child writes large results there itself
        self.result_home: Path | None = None

    # ---------------------------------------------------------------- lifecycle
    def spawn(self) -> None:
        # fd 3 is our own pipe, read 1 MiB at a time (Twisted's process pipes read 8 KiB per
        # reactor turn, which caps large results at a few tens of MB/s)
        rfd, wfd = os.pipe()
        os.set_blocking(rfd, False)
        _grow_pipe(wfd)
        try:
            self.reactor.spawnProcess(self, CHILD_ARGS[0], CHILD_ARGS, env=self.env,
                                      childFDs={0: "w", 1: "r", 2: "r", 3: wfd})
        finally:
            os.close(wfd)
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
            try:
                self.transport.signalProcess(name)
            except Exception:
                pass

    def pause(self, paused: bool) -> None:
        """SIGSTOP / SIGCONT the child (the tray's Pause); timeouts keep counting wall time."""
        if self.alive and self.pid:
            try:
                os.kill(self.pid, signal.SIGSTOP if paused else signal.SIGCONT)
            except OSError:
                pass

    # ---------------------------------------------------------------- sending
    @property
    def load(self) -> int:
        return len(self.inflight)

    def allowance(self, key: str | None = None) -> int:
        """How many jobs this child may hold: 1 for slow jobs (none waits behind a long one), 2 for
        jobs up to 0.1 s (the next is there when one ends: no idle gap for the monitor's round trip),
        more for short jobs."""
        if not self.ready or self.recycling or self.stopped:
            return 0
        avg = self.avg_wall if key == self.avg_key else None  # another function: duration unknown
        if avg is None or avg > 0.1:
            return 1
        if avg > 0.005:
            return 2
        return max(2, min(128, int(0.005 / max(avg, 1e-6))))

    def send(self, jobs: list[Assigned], blobs: dict[str, bytes]) -> None:
        entries = []
        for a in jobs:
            blob = None
            if a.blob_id and a.blob_id not in self.blobs_sent:
                blob = blobs.get(a.blob_id)
                self.blobs_sent.add(a.blob_id)
            rfile = (f"{self.result_home}/{local_results.result_name(a.job_id, a.attempt)}"
                     if self.result_home is not None else None)
            entries.append([a.job_id, a.payload, a.blob_id, blob, a.limits or {}, rfile])
            self.inflight.append(a)
        if len(self.inflight) == len(jobs):
            self._became_current()
        write_now(self.transport.pipes[0], pack_frame(["run", entries]))

    def kill_job(self, job_id: int, reason: str) -> bool:
        """Kill the job if this child holds it: the whole child goes (it restarts)."""
        for a in self.inflight:
            if a.job_id == job_id:
                a.kill_reason = reason
                if a is self.inflight[0]:
                    self.signal("KILL")
                return True
        return False

    def _became_current(self) -> None:
        if not self.inflight:
            return
        a = self.inflight[0]
        a.started = self.reactor.seconds()
        if a.kill_reason:
            self.signal("KILL")
        elif a.timeout:
            a.timer = self.reactor.callLater(a.timeout, self._timed_out, a)

    def _timed_out(self, a: Assigned) -> None:
        a.timer = None
        if self.inflight and self.inflight[0] is a:
            a.kill_reason = "timed_out"
            self.signal("KILL")

    # ---------------------------------------------------------------- receiving
    def _fd3_data(self, data: bytes) -> None:
        for msg in self.decoder.feed(data):
            self._message(msg)

    def childDataReceived(self, fd: int, data: bytes) -> None:
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
        if a.timer is not None and a.timer.active():
            a.timer.cancel()
        wall = entry[6] or 0.0
        if self.avg_wall is None or a.blob_id != self.avg_key:
            self.avg_wall, self.avg_key = wall, a.blob_id
        else:
            self.avg_wall = 0.8 * self.avg_wall + 0.2 * wall
        self._became_current()
        self.events.done(self, a, entry)

    def wants_more(self, key: str | None = None) -> int:
        """How many jobs to send now: top up only once the child's pipeline is half empty, so
        frames carry many jobs when jobs are short (one frame per job caps the hop at ~45k/s)."""
        allow = self.allowance(key)
        if self.load > allow // 2:
            return 0
        return allow - self.load

    def processEnded(self, reason: Any) -> None:
        if self._ended:
            return
        self._ended = True
        if self.messages is not None:
            self.messages.drain()  # the child is gone: everything it wrote is in the pipe now
        self.alive = False
        self.ready = False
        left = list(self.inflight)
        self.inflight.clear()
        for a in left:
            if a.timer is not None and a.timer.active():
                a.timer.cancel()
        self.events.ended(self, left, reason)


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

    def drain(self) -> None:
        while self.fd >= 0:
            try:
                data = os.read(self.fd, 1 << 20)
            except BlockingIOError:
                break
            except OSError:
                data = b""
            if not data:
                break
            self.on_data(data)
        self.close()

    def close(self) -> None:
        if self.fd >= 0:
            self.reactor.removeReader(self)
            os.close(self.fd)
            self.fd = -1

    def connectionLost(self, reason: Any) -> None:
        self.close()
