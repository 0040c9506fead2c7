"""Where store work runs: one dedicated thread (production) or inline (unit tests)."""
from __future__ import annotations

import queue
import threading
from typing import Any, Callable, Protocol

from twisted.internet.defer import Deferred, fail, succeed


class Runner(Protocol):
    def start(self) -> None: ...
    def stop(self) -> None: ...
    def run(self, fn: Callable[..., Any], *args: Any, **kw: Any) -> Deferred: ...


class ThreadRunner:
    """One dedicated thread fed by a queue: calls run FIFO, so an UPDATE always follows its INSERT.

    Leaner than Twisted's ThreadPool (no team coordination per call): the hand-off is on every
    job's latency path (a result is announced only after its commit).
    """

    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor
        self._queue: "queue.SimpleQueue[Any]" = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._trigger: Any = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="dsage-db", daemon=True)
            self._thread.start()
            # if the reactor stops first, the thread must not keep work pending
            self._trigger = self.reactor.addSystemEventTrigger("during", "shutdown", self.stop)

    def stop(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            if threading.current_thread() is not self._thread:
                self._thread.join(10)
            self._thread = None
        if self._trigger is not None:
            try:
                self.reactor.removeSystemEventTrigger(self._trigger)
            except (KeyError, ValueError, TypeError):
                pass
            self._trigger = None

    def run(self, fn: Callable[..., Any], *args: Any, **kw: Any) -> Deferred:
        d: Deferred = Deferred()
        self._queue.put((d, fn, args, kw))
        return d

    def _work(self) -> None:
        from twisted.python.failure import Failure
        while True:
            item = self._queue.get()
            if item is None:
                return
            d, fn, args, kw = item
            try:
                result = fn(*args, **kw)
            except BaseException:
                self.reactor.callFromThread(d.errback, Failure())
            else:
                self.reactor.callFromThread(d.callback, result)


class InlineRunner:
    """Runs each call synchronously (for tests with ``successResultOf`` and one-shot CLI use)."""

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def run(self, fn: Callable[..., Any], *args: Any, **kw: Any) -> Deferred:
        try:
            return succeed(fn(*args, **kw))
        except BaseException:
            return fail()
