"""A worker that another process started for itself (the desktop app's local worker) ends with
that process, even when it is killed outright and never gets to stop its worker.

The starter puts its pid in :data:`ENV`. On Linux the kernel then sends the worker SIGTERM when
the starter exits (``PR_SET_PDEATHSIG``), and the worker stops as after any SIGTERM: it hands its
jobs back and exits. Elsewhere a slow check of the parent pid does the same.
"""
from __future__ import annotations

import os
import signal
from typing import Any, Callable

ENV = "DSAGE_EXIT_WITH_PID"
CHECK_INTERVAL = 2.0  #: seconds between parent checks where the kernel cannot tell us


def take_parent_pid(environ: Any = os.environ) -> int | None:
    """The pid this process must not outlive, if its starter named one (taken out of the
    environment: the worker's own children and their jobs are not tied to it)."""
    try:
        pid = int(environ.pop(ENV, ""))
    except ValueError:
        return None
    return pid if pid > 1 else None


def _kernel_watches_parent() -> bool:
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(1, signal.SIGTERM, 0, 0, 0) == 0  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return False


def watch_parent(reactor: Any, pid: int | None, on_orphaned: Callable[[], None]) -> Any:
    """Call *on_orphaned* once (on the reactor) when process *pid* is no longer our parent;
    returns the LoopingCall that checks, or None when the kernel watches or *pid* is None."""
    if pid is None:
        return None
    kernel = _kernel_watches_parent()
    if os.getppid() != pid:  # it died before the kernel could be asked
        reactor.callWhenRunning(on_orphaned)
        return None
    if kernel:
        return None
    from twisted.internet.task import LoopingCall

    def check() -> None:
        if os.getppid() != pid:
            lc.stop()
            on_orphaned()
    lc = LoopingCall(check)
    lc.clock = reactor
    lc.start(CHECK_INTERVAL, now=False)
    return lc


def read_stdin_line(limit: int = 4096, fd: int = 0) -> str:
    """One line from *fd* (stdin), read byte by byte so nothing after it is consumed (how
    ``dsage worker --invite -`` takes its code before stdin becomes its lifeline)."""
    data = b""
    while len(data) < limit:
        c = os.read(fd, 1)
        if not c or c == b"\n":
            break
        data += c
    return data.decode("ascii", "replace").strip()


class _StdinWatch:
    """A reactor reader on fd 0 that calls back once when it reaches end of file (or fails).

    Not Twisted's ``StandardIO``: that also takes over stdout (made non-blocking), where the
    worker prints its state lines."""

    def __init__(self, reactor: Any, on_closed: Callable[[], None], fd: int = 0) -> None:
        self.reactor, self.on_closed, self.fd = reactor, on_closed, fd
        self.fired = False

    def fileno(self) -> int:
        return self.fd

    def logPrefix(self) -> str:
        return "dsage-stdin-lifeline"

    def doRead(self) -> Any:
        try:
            data = os.read(self.fd, 65536)
        except BlockingIOError:
            return None
        except OSError:
            data = b""
        if not data:
            self._closed()
        return None   # anything written to it is ignored: only its end matters

    def connectionLost(self, reason: Any) -> None:
        self._closed()

    def _closed(self) -> None:
        if not self.fired:
            self.fired = True
            self.reactor.removeReader(self)
            self.on_closed()


def watch_stdin(reactor: Any, on_closed: Callable[[], None], fd: int = 0) -> _StdinWatch:
    """Call *on_closed* once (on the reactor) when *fd* (stdin) reaches end of file: a worker
    started over ssh (``dsage launch ssh``) ends with its ssh session, which closes the remote
    command's stdin however the session ends (Ctrl+C, a killed ssh, a dropped link)."""
    w = _StdinWatch(reactor, on_closed, fd)
    reactor.addReader(w)
    return w
