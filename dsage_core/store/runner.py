"""Where store work runs: one dedicated thread (production) or inline (unit tests)."""
from __future__ import annotations

from typing import Any, Callable, Protocol

from twisted.internet.defer import Deferred, fail, succeed


class Runner(Protocol):
    def start(self) -> None: ...
    def stop(self) -> None: ...
    def run(self, fn: Callable[..., Any], *args: Any, **kw: Any) -> Deferred: ...


class ThreadRunner:
    """A one-thread pool: calls run FIFO, so an UPDATE always follows its INSERT."""

    def __init__(self, reactor: Any) -> None:
        from twisted.python.threadpool import ThreadPool
        self.reactor = reactor
        self.pool = ThreadPool(minthreads=1, maxthreads=1, name="dsage-db")
        self._trigger: Any = None

    def start(self) -> None:
        if not self.pool.started:
            self.pool.start()
            # if the reactor stops first, the pool must not keep the interpreter alive
            self._trigger = self.reactor.addSystemEventTrigger("during", "shutdown", self.stop)

    def stop(self) -> None:
        if self.pool.started:
            self.pool.stop()
        if self._trigger is not None:
            try:
                self.reactor.removeSystemEventTrigger(self._trigger)
            except (KeyError, ValueError, TypeError):
                pass
            self._trigger = None

    def run(self, fn: Callable[..., Any], *args: Any, **kw: Any) -> Deferred:
        from twisted.internet.threads import deferToThreadPool
        return deferToThreadPool(self.reactor, self.pool, fn, *args, **kw)


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
