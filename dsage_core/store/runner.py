"""Where store work runs: one dedicated thread (production) or inline (unit tests)."""
from __future__ import annotations

import queue
import threading
from typing import Any, Callable, Protocol

from twisted.internet.defer import Deferred, fail, succeed
from twisted.python.failure import Failure

from dsage_core.store.errors import StoreError


class Runner(Protocol):
    """Runs callables in submission order and reports each result through a Deferred."""

    def start(self) -> None:
        """Make the runner ready; calls queued before ``start`` run once it started."""

    def stop(self) -> None:
        """Finish what was queued, then stop; later ``run`` calls fail with :class:`StoreError`."""

    def run(self, fn: Callable[..., Any], *args: Any, **kw: Any) -> Deferred:
        """Run ``fn(*args, **kw)`` after every earlier call; the Deferred fires on the reactor thread."""


class ThreadRunner:
    """One dedicated daemon thread fed by a queue: calls run FIFO, so an UPDATE always follows its INSERT.

    Leaner than Twisted's ``ThreadPool(1, 1)`` + ``deferToThreadPool`` (no worker-team coordination per
    call): the hand-off is on every job's latency path, since a result is announced only after its commit.
    Results come back through ``reactor.callFromThread``. The thread is a daemon, so a forgotten
    ``stop()`` never hangs interpreter exit; a reactor shutdown stops it too.
    """

    def __init__(self, reactor: Any, name: str = "dsage-db") -> None:
        self.reactor = reactor
        self.name = name
        self._queue: "queue.SimpleQueue[Any]" = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._trigger: Any = None
        self._stopped = False

    def start(self) -> None:
        """Start the thread (idempotent)."""
        self._stopped = False
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name=self.name, daemon=True)
            self._thread.start()
            # if the reactor stops first, the thread must not keep work pending
            self._trigger = self.reactor.addSystemEventTrigger("during", "shutdown", self.stop)

    def stop(self) -> None:
        """Let the thread finish the queued calls, then join it (at most 10 s)."""
        self._stopped = True
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
        """Queue ``fn`` for the thread; the Deferred fires with its result or failure."""
        if self._stopped:
            return fail(StoreError("the database thread was stopped (store closed)"))
        d: Deferred = Deferred()
        self._queue.put((d, fn, args, kw))
        return d

    def _work(self) -> None:
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
        """Nothing to start."""

    def stop(self) -> None:
        """Nothing to stop."""

    def run(self, fn: Callable[..., Any], *args: Any, **kw: Any) -> Deferred:
        """Call ``fn`` now; return an already-fired Deferred."""
        try:
            return succeed(fn(*args, **kw))
        except BaseException:
            return fail()
