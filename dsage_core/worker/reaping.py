"""Make sure ended child processes are reaped even when the reactor runs without signal handlers
(a reactor on a background thread, or under pytest-qt): a SIGCHLD handler installed from the main
thread when possible, plus a slow periodic sweep as a backstop."""
from __future__ import annotations

import signal
import threading
from typing import Any

_installed: set[int] = set()


def ensure_reaper(reactor: Any) -> None:
    if id(reactor) in _installed:
        return
    _installed.add(id(reactor))
    from twisted.internet import process
    from twisted.internet.task import LoopingCall

    def sweep() -> None:
        process.reapAllProcesses()
    if threading.current_thread() is threading.main_thread():
        previous = signal.getsignal(signal.SIGCHLD)
        if previous in (signal.SIG_DFL, signal.SIG_IGN, None):
            def on_sigchld(signum: int, frame: Any) -> None:
                reactor.callFromThread(sweep)
            signal.signal(signal.SIGCHLD, on_sigchld)
            signal.siginterrupt(signal.SIGCHLD, False)
    lc = LoopingCall(sweep)
    lc.clock = reactor
    reactor.callFromThread(lambda: lc.start(0.5, now=False).addErrback(lambda f: None))
