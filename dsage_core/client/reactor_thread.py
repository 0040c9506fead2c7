"""Run the Twisted reactor on a background thread (as Dask's client does) for plain-Python users.

If a reactor already runs (the desktop app), it is used as is. The thread is a daemon and is
stopped through ``threading._register_atexit`` so interpreter exit never hangs on it.
"""
from __future__ import annotations

import threading
from typing import Any, Callable

_lock = threading.Lock()
_thread: threading.Thread | None = None


def get_reactor() -> Any:
    from twisted.internet import reactor
    return reactor


def ensure_running() -> Any:
    """Start the reactor on a daemon thread unless it runs already; returns the reactor."""
    global _thread
    reactor = get_reactor()
    with _lock:
        if reactor.running or (_thread is not None and _thread.is_alive()):
            return reactor
        from dsage_core.protocol.pacing import sleep_past_dead_timers
        sleep_past_dead_timers(reactor)
        started = threading.Event()
        reactor.callWhenRunning(started.set)
        _thread = threading.Thread(target=reactor.run, kwargs={"installSignalHandlers": False},
                                   name="dsage-reactor", daemon=True)
        _thread.start()
        threading._register_atexit(_stop)  # type: ignore[attr-defined]  # runs before thread joins
        if not started.wait(30):
            raise RuntimeError("the Twisted reactor did not start")
    return reactor


def _stop() -> None:
    reactor = get_reactor()
    if reactor.running and _thread is not None:
        try:
            reactor.callFromThread(reactor.stop)
        except Exception:
            return
        _thread.join(5)


_is_io_thread: Callable[[], bool] | None = None


def in_reactor_thread() -> bool:
    global _is_io_thread
    if _is_io_thread is None:  # bound once: attribute access through twisted's module proxy is slow
        from twisted.python.threadable import isInIOThread
        _is_io_thread = isInIOThread
    return _is_io_thread()


def blocking(fn: Callable[..., Any], *args: Any, timeout: float | None = None, **kw: Any) -> Any:
    """Call *fn* on the reactor thread and wait for its (Deferred) result from this thread."""
    from twisted.internet.defer import maybeDeferred
    reactor = get_reactor()
    if in_reactor_thread():
        raise RuntimeError("this blocking call cannot run on the reactor thread; use the async API "
                           "(AsyncClient, job.deferred(), await job)")
    if not reactor.running:
        # callFromThread would queue the call on a loop that never runs again: a silent hang
        raise RuntimeError("dsage's Twisted reactor is not running (it was stopped, or the "
                           "interpreter is exiting): nothing can be sent")
    done = threading.Event()
    box: dict[str, Any] = {}

    def run() -> None:
        d = maybeDeferred(fn, *args, **kw)

        def ok(r: Any) -> None:
            box["r"] = r
            done.set()

        def err(f: Any) -> None:
            box["e"] = f.value
            done.set()
        d.addCallbacks(ok, err)
    reactor.callFromThread(run)
    if not done.wait(timeout):
        raise TimeoutError(f"no answer within {timeout} s")
    if "e" in box:
        raise box["e"]
    return box["r"]
