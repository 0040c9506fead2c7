"""``as_completed`` and ``wait`` over job handles (and futures), as in concurrent.futures."""
from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any, Iterable, Iterator

from dsage_core.model.status import JobStatus

FIRST_COMPLETED = "FIRST_COMPLETED"
FIRST_EXCEPTION = "FIRST_EXCEPTION"
ALL_COMPLETED = "ALL_COMPLETED"


def on_done_many(jobs: list[Any], fn: Any) -> None:
    """``fn(job)`` when each job finishes; jobs of one client are registered in one reactor hop."""
    by_client: dict[int, list[Any]] = {}
    for j in jobs:
        client = getattr(j, "_client", None)
        if client is None or not hasattr(client, "aclient"):
            j.add_done_callback(fn)
        else:
            by_client.setdefault(id(client.aclient), []).append(j)
    for group in by_client.values():
        ac = group[0]._client.aclient
        ac.call_when_done_many([(j._s, (lambda s, j=j: fn(j))) for j in group])


class _Sink:
    """Where the reactor drops the states of finished jobs for one ``as_completed`` consumer: one
    bound method is every job's done-callback, and the consumer is woken only when it waits."""

    __slots__ = ("items", "ready")

    def __init__(self) -> None:
        self.items: deque[Any] = deque()
        self.ready = threading.Event()

    def put(self, item: Any) -> None:
        self.items.append(item)
        if not self.ready.is_set():
            self.ready.set()

    def take(self, timeout: float | None) -> bool:
        """Wait until something is there (False after *timeout*)."""
        ready = self.ready
        ready.clear()
        if self.items:   # checked after the clear: a put after it sets the event again
            return True
        return ready.wait(timeout) or bool(self.items)


def as_completed(jobs: Iterable[Any], timeout: float | None = None) -> Iterator[Any]:
    """Yield jobs as they finish (any terminal state); TimeoutError after *timeout* seconds."""
    jobs = list(jobs)
    sink = _Sink()
    # job handles of a client: their states go to the sink (one callback for all), and are
    # matched back to their handles here; anything else (futures...) puts itself
    by_state: dict[int, Any] = {}
    groups: dict[int, list[Any]] = {}
    others: list[Any] = []
    seen: set[int] = set()   #: the objects met so far (one given twice is yielded once)
    for j in jobs:
        # checked before done(): a job met again after it finished (done before the call, or
        # while the consumer ran between two yields) must not be yielded a second time
        if id(j) in seen:
            continue
        seen.add(id(j))
        if j.done():
            yield j
            continue
        client = getattr(j, "_client", None)
        s = getattr(j, "_s", None)
        if client is None or s is None or not hasattr(client, "aclient"):
            others.append(j)
        elif id(s) not in by_state:
            by_state[id(s)] = j
            groups.setdefault(id(client.aclient), []).append(s)
        else:
            others.append(j)   # the same job twice: its second handle comes back through others
    pending = len(others)
    del seen
    for states in groups.values():
        pending += len(states)
        by_state[id(states[0])]._client.aclient.call_each_when_done(states, sink.put)
    for j in others:
        j.add_done_callback(sink.put)
    deadline = None if timeout is None else time.monotonic() + timeout
    items = sink.items
    while pending:
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        if not items and not sink.take(left):
            raise TimeoutError(f"{pending} jobs still unfinished after {timeout} s") from None
        while items:
            x = items.popleft()
            j = by_state.pop(id(x), None)
            if j is None:   # not a state of ours: a handle or future that put itself
                j = x
            pending -= 1
            yield j


def wait(jobs: Iterable[Any], timeout: float | None = None,
         return_when: str = ALL_COMPLETED) -> tuple[set[Any], set[Any]]:
    """Like ``concurrent.futures.wait``: returns (done, not_done) sets of jobs."""
    jobs = list(jobs)
    done = {j for j in jobs if j.done()}
    not_done = set(jobs) - done

    def bad(j: Any) -> bool:
        return getattr(j, "status", JobStatus.COMPLETED) != JobStatus.COMPLETED

    def met(finished: int, failed: bool) -> bool:
        if return_when == FIRST_COMPLETED:
            return finished > 0
        if return_when == FIRST_EXCEPTION and failed:
            return True
        return finished == len(jobs)
    entries: dict[int, int] = {}   # how often each job is listed (counts as in len(jobs))
    for j in jobs:
        entries[id(j)] = entries.get(id(j), 0) + 1
    state = [sum(entries[id(j)] for j in done), any(bad(j) for j in done)]
    if not_done and not met(*state):
        # each finish counts once (one callback per job, registered in one hop per client); the
        # waiting thread wakes when the condition is met, not at every finish (that was O(n^2))
        cond = threading.Condition()
        ended = {id(j) for j in done}

        def finished(j: Any) -> None:
            with cond:
                if id(j) in ended:
                    return
                ended.add(id(j))
                state[0] += entries.get(id(j), 1)
                state[1] = state[1] or bad(j)
                if met(*state):
                    cond.notify_all()
        on_done_many(list(not_done), finished)
        deadline = None if timeout is None else time.monotonic() + timeout
        with cond:
            while not met(*state):
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    break
                cond.wait(left)
    done = {j for j in jobs if j.done()}
    return done, set(jobs) - done


def batch_progress(jobs: Iterable[Any], now: float | None = None) -> dict[str, Any]:
    """Aggregate progress of many jobs: done, total, fraction (job progress counts partly) and an ETA
    in seconds from the rate so far (None until something finished)."""
    jobs = list(jobs)
    now = time.time() if now is None else now
    done = sum(1 for j in jobs if j.done())
    partial = sum((j.progress or 0.0) for j in jobs if not j.done() and j.status == JobStatus.RUNNING)
    total = len(jobs)
    fraction = (done + partial) / total if total else 1.0
    started = min((j.created for j in jobs if j.created), default=None)
    eta = None
    if started is not None and 0 < fraction < 1:
        elapsed = max(1e-9, now - started)
        eta = elapsed * (1 - fraction) / fraction
    elif fraction >= 1:
        eta = 0.0
    return {"done": done, "total": total, "fraction": fraction, "eta": eta}
