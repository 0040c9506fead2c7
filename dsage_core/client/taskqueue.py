"""Scatter-gather ("DsageNg"): tasks ``(args, kwargs)`` go down, results come up in completion order.

    q = D.scatter(f, [((1,), {}), ((2,), {})])
    q.add(3)                      # more work at any time
    for r in q.poll(): ...        # finished results, never blocks
    for index, value in q: ...    # blocks until every task added so far is done
"""
from __future__ import annotations

import queue
import threading
import time
from typing import Any, Callable, Iterable, Iterator

from dsage_core.client.job import Job
from dsage_core.client.payload import Options, func_job, function_blob
from dsage_core.model.status import JobStatus


class TaskResult:
    """One finished task: its index in the order added, its job, and ``value`` / ``error``."""

    __slots__ = ("index", "job")

    def __init__(self, index: int, job: Job) -> None:
        self.index = index
        self.job = job

    @property
    def ok(self) -> bool:
        return self.job.status == JobStatus.COMPLETED

    @property
    def value(self) -> Any:
        return self.job.result

    @property
    def error(self) -> str | None:
        return self.job.error if not self.ok else None

    def __iter__(self) -> Iterator[Any]:
        yield self.index
        yield self.value

    def __repr__(self) -> str:
        return f"TaskResult({self.index}, {self.value!r})" if self.ok else \
            f"TaskResult({self.index}, {self.job.status})"


class TaskQueue:
    """A queue of calls of one function; the function is pickled and sent once."""

    def __init__(self, client: Any, fn: Callable[..., Any], tasks: Iterable[Any] = (), **options: Any) -> None:
        self._client = client
        self._fn = fn
        self._blob = function_blob(fn)
        self._options = Options.from_dict(options)
        self._done: queue.SimpleQueue[TaskResult] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self.jobs: list[Job] = []
        self._taken = 0
        self.extend(tasks)

    @property
    def total(self) -> int:
        return len(self.jobs)

    @property
    def pending(self) -> int:
        """Tasks added whose results have not been taken yet."""
        return len(self.jobs) - self._taken

    def add(self, *args: Any, **kwargs: Any) -> int:
        """Add one task; returns its index."""
        return self.extend([(args, kwargs)])[0]

    def extend(self, tasks: Iterable[Any]) -> list[int]:
        """Add ``(args, kwargs)`` pairs (or bare ``args`` tuples); returns their indexes."""
        subs = []
        for t in tasks:
            args, kwargs = _split(t)
            subs.append(func_job(self._fn, args, kwargs, Options(**vars(self._options)), blob=self._blob))
        if not subs:
            return []
        jobs = self._client._submit(subs)
        with self._lock:
            first = len(self.jobs)
            self.jobs.extend(jobs)
        for i, j in enumerate(jobs):
            j.add_done_callback(lambda job, i=first + i: self._done.put(TaskResult(i, job)))
        return list(range(first, first + len(jobs)))

    def poll(self) -> list[TaskResult]:
        """Every result finished since the last poll/wait, without blocking."""
        out = []
        while True:
            try:
                out.append(self._done.get_nowait())
            except queue.Empty:
                break
        self._taken += len(out)
        return out

    def next(self, timeout: float | None = None) -> TaskResult:
        """Block for the next finished result (TimeoutError after *timeout*)."""
        if self.pending <= 0:
            raise StopIteration
        try:
            r = self._done.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"no result within {timeout} s ({self.pending} pending)") from None
        self._taken += 1
        return r

    def wait(self, timeout: float | None = None) -> list[TaskResult]:
        """Block until every task added so far is finished; returns the results not taken yet."""
        end = None if timeout is None else time.monotonic() + timeout
        out = []
        while self.pending > 0:
            left = None if end is None else max(0.0, end - time.monotonic())
            out.append(self.next(left))
        return out

    def __iter__(self) -> Iterator[TaskResult]:
        while self.pending > 0:
            yield self.next()

    @property
    def progress(self) -> dict[str, Any]:
        """Aggregate progress over every task added: done, total, fraction and ETA (seconds)."""
        from dsage_core.waiting import batch_progress
        return batch_progress(self.jobs)


def _split(t: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    if isinstance(t, tuple) and len(t) == 2 and isinstance(t[1], dict) and isinstance(t[0], (tuple, list)):
        return tuple(t[0]), dict(t[1])
    if isinstance(t, tuple):
        return t, {}
    return (t,), {}
