"""``as_completed`` and ``wait`` over job handles (and futures), as in concurrent.futures."""
from __future__ import annotations

import queue
import threading
import time
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


def as_completed(jobs: Iterable[Any], timeout: float | None = None) -> Iterator[Any]:
    """Yield jobs as they finish (any terminal state); TimeoutError after *timeout* seconds."""
    jobs = list(jobs)
    q: queue.SimpleQueue[Any] = queue.SimpleQueue()
    pending = 0
    waiting = []
    for j in jobs:
        if j.done():
            yield j
        else:
            pending += 1
            waiting.append(j)
    on_done_many(waiting, q.put)
    deadline = None if timeout is None else time.monotonic() + timeout
    seen: set[int] = set()
    while pending:
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            j = q.get(timeout=left)
        except queue.Empty:
            raise TimeoutError(f"{pending} jobs still unfinished after {timeout} s") from None
        if id(j) in seen:
            continue
        seen.add(id(j))
        pending -= 1
        yield j


def wait(jobs: Iterable[Any], timeout: float | None = None,
         return_when: str = ALL_COMPLETED) -> tuple[set[Any], set[Any]]:
    """Like ``concurrent.futures.wait``: returns (done, not_done) sets of jobs."""
    jobs = list(jobs)
    done = {j for j in jobs if j.done()}
    not_done = set(jobs) - done
    cond = threading.Condition()

    def finished(j: Any) -> None:
        with cond:
            cond.notify_all()
    for j in not_done:
        j.add_done_callback(finished)
    deadline = None if timeout is None else time.monotonic() + timeout

    def satisfied() -> bool:
        d = [j for j in jobs if j.done()]
        if return_when == FIRST_COMPLETED:
            return bool(d)
        if return_when == FIRST_EXCEPTION:
            return any(getattr(j, "status", JobStatus.COMPLETED) != JobStatus.COMPLETED for j in d) or len(d) == len(jobs)
        return len(d) == len(jobs)
    with cond:
        while not satisfied():
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
