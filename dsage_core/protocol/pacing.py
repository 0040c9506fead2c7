"""Timing helpers shared by the senders (:class:`~dsage_core.protocol.batcher.Batcher` and the
server's ``KeyedPusher``): when a message may go without an answer, a timer that only ever moves
earlier, and a reactor that sleeps until its next *live* timer."""
from __future__ import annotations

from heapq import heappop, heappush
from typing import Any, Callable

from dsage_core import latency


def sleep_past_dead_timers(reactor: Any) -> None:
    """Let *reactor* sleep until its next live timer, not until a cancelled or postponed one.

    Twisted drops a cancelled DelayedCall (and re-files a postponed one) only when its old time
    comes, and sizes its sleep from the head of its heap: every cancelled hold cost a wake-up for
    nothing, and on 2 cores every wake-up preempts a busy child. This wraps ``reactor.timeout`` to
    do that tidying first, exactly as ``runUntilCurrent`` would at the old time. A reactor without
    Twisted's timer heap (``Clock``) is left as it is; installing twice is harmless. The server and
    worker CLIs and the client's reactor thread install it; the desktop app does not (yet).
    """
    if getattr(reactor, "_dsage_live_timers", False) or not latency.current().live_timers:
        return
    heap = getattr(reactor, "_pendingTimedCalls", None)
    insert = getattr(reactor, "_insertNewDelayedCalls", None)
    original = getattr(reactor, "timeout", None)
    if not isinstance(heap, list) or insert is None or original is None:
        return

    def timeout() -> float | None:
        insert()
        heap = reactor._pendingTimedCalls
        while heap:
            call = heap[0]
            if call.cancelled:
                heappop(heap)
                reactor._cancellations -= 1
            elif call.delayed_time > 0:
                heappop(heap)
                call.activate_delay()
                heappush(heap, call)
            else:
                break
        return original()
    reactor.timeout = timeout
    reactor._dsage_live_timers = True


class AnswerPacer:
    """Decides whether a send may skip Foolscap's answer (``callRemoteOnly``).

    A lone message may: nothing in flight and nothing sent for *idle_gap* seconds. Messages soon
    after it are answered, so under load answers pace the sender; and at most *max_unanswered* go
    in a row, so a slow receiver is probed. Calls on one connection are processed in order, so an
    answer means everything sent before it was taken.
    """

    def __init__(self, clock: Any, idle_gap: float | None = None, max_unanswered: int | None = None) -> None:
        self.clock = clock
        policy = latency.current()
        self.idle_gap = policy.answer_idle_gap if idle_gap is None else idle_gap
        self.max_unanswered = policy.max_unanswered if max_unanswered is None else max_unanswered
        self.unanswered = 0
        self._last_send = float("-inf")

    def may_skip_answer(self, in_flight: bool) -> bool:
        """Call once per send; True if this one may go without an answer."""
        now = self.clock.seconds()
        idle = (not in_flight and now - self._last_send >= self.idle_gap
                and self.unanswered < self.max_unanswered)
        self._last_send = now
        return idle

    def sent_without_answer(self) -> None:
        self.unanswered += 1

    def answered(self) -> None:
        self.unanswered = 0


class EarliestTimer:
    """Calls *fn* at the earliest deadline asked for (later requests never postpone it)."""

    def __init__(self, clock: Any, fn: Callable[[], None]) -> None:
        self.clock = clock
        self.fn = fn
        self._call: Any = None
        self._due = 0.0

    @property
    def active(self) -> bool:
        return self._call is not None and self._call.active()

    def within(self, delay: float) -> None:
        """Make sure *fn* runs at most *delay* seconds from now."""
        due = self.clock.seconds() + delay
        if self.active:
            if self._due <= due:
                return
            self._call.cancel()
        self._due = due
        self._call = self.clock.callLater(delay, self._fire)

    def due_within(self, seconds: float) -> bool:
        """True if *fn* is due within *seconds* from now."""
        return self.active and self._due - self.clock.seconds() <= seconds

    def cancel(self) -> None:
        if self.active:
            self._call.cancel()
        self._call = None

    def _fire(self) -> None:
        self._call = None
        self.fn()
