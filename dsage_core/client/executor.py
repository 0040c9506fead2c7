"""``D.executor()``: a standard ``concurrent.futures.Executor`` backed by dsage jobs.

``map`` submits in chunks (one job per chunk of *chunksize* elements, the function sent once) and
yields results in input order; a failed job raises :class:`JobFailed` from the iterator, as
``Executor.map`` does with the worker's exception.
"""
from __future__ import annotations

import concurrent.futures as cf
import itertools
import threading
import weakref
from typing import Any, Callable, Iterable, Iterator

from dsage_core.client.job import Job, JobFailed
from dsage_core.client.payload import Options, func_job, function_blob


def _apply_chunk(fn: Callable[..., Any], chunk: list[tuple[Any, ...]]) -> list[Any]:
    return [fn(*args) for args in chunk]


def _settle(fut: cf.Future, j: Job) -> None:
    if j.status == "completed":
        try:
            fut.set_result(j.result)
        except BaseException as e:  # noqa: BLE001 - a decoding error goes to the future
            fut.set_exception(e)
    else:
        fut.set_exception(JobFailed(f"job {j.id} {j.status}: {j.error or ''}".rstrip(": ")))


def _futures_for(jobs: list[Job]) -> list[cf.Future]:
    """One Future per job; their done-callbacks are registered in one hop to the reactor."""
    from dsage_core.waiting import on_done_many
    futs = []
    by_job: dict[int, cf.Future] = {}
    for job in jobs:
        fut: cf.Future = cf.Future()
        fut.set_running_or_notify_cancel()
        fut.dsage_job = job  # type: ignore[attr-defined]
        by_job[id(job)] = fut
        futs.append(fut)
    on_done_many(jobs, lambda j: _settle(by_job[id(j)], j))
    return futs


def _future_for(job: Job) -> cf.Future:
    return _futures_for([job])[0]


class DsageExecutor(cf.Executor):
    """Executor over a :class:`~dsage_core.client.api.Client`. Options apply to every job."""

    def __init__(self, client: Any, **options: Any) -> None:
        self._client = client
        self._options = Options.from_dict(options)
        self._shutdown = False
        self._lock = threading.Lock()
        self._futures: "weakref.WeakSet[cf.Future]" = weakref.WeakSet()
        self._map_jobs: list[Job] = []

    def _check(self) -> None:
        if self._shutdown:
            raise RuntimeError("cannot schedule new futures after shutdown")

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> cf.Future:
        self._check()
        job = self._client._submit([func_job(fn, args, kwargs, Options(**vars(self._options)))])[0]
        fut = _future_for(job)
        self._track(fut)
        return fut

    def _track(self, fut: cf.Future) -> None:
        with self._lock:
            self._futures.add(fut)  # a WeakSet: no per-future callback on the hot path

    def map(self, fn: Callable[..., Any], *iterables: Iterable[Any], timeout: float | None = None,
            chunksize: int = 1) -> Iterator[Any]:
        """Like ``Executor.map``; *chunksize* > 1 runs several calls per job (fewer, larger jobs).

        Jobs are submitted at once (the function sent once); results are read in order straight
        from the job handles, without a Future per element.
        """
        self._check()
        argsets = list(zip(*iterables))
        if chunksize <= 1:
            blob = function_blob(fn)
            subs = [func_job(fn, args, {}, Options(**vars(self._options)), blob=blob) for args in argsets]
        else:
            blob = function_blob(_apply_chunk)
            chunks = [argsets[i:i + chunksize] for i in range(0, len(argsets), chunksize)]
            subs = [func_job(_apply_chunk, (fn, c), {}, Options(**vars(self._options)), blob=blob)
                    for c in chunks]
        jobs = self._client._submit(subs)
        with self._lock:
            self._map_jobs.extend(jobs)
        return self._results(jobs, timeout, chunksize > 1)

    def _results(self, jobs: list[Job], timeout: float | None, chunked: bool) -> Iterator[Any]:
        import time
        self._client._check_not_reactor_thread("Executor.map results")
        end = None if timeout is None else time.monotonic() + timeout
        for j in jobs:
            s = j._s  # the hot loop reads the job state directly: one check, no per-item calls
            if not s.done:
                left = None if end is None else max(0.0, end - time.monotonic())
                if not s.event.wait(left):
                    raise cf.TimeoutError()
            if s.status != "completed":
                raise JobFailed(f"job {s.id} {s.status}: {s.error or ''}".rstrip(": "))
            if chunked:
                yield from s.value
            else:
                yield s.value

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._shutdown = True
        with self._lock:
            futs = list(self._futures)
            self._map_jobs = [j for j in self._map_jobs if not j.done()]
            jobs = [getattr(f, "dsage_job") for f in futs] + self._map_jobs
        if cancel_futures:
            for job in jobs:
                if not job.done():
                    job.kill()
        if wait:
            for job in jobs:
                job.wait()


def chunks(iterable: Iterable[Any], n: int) -> Iterator[list[Any]]:
    it = iter(iterable)
    while chunk := list(itertools.islice(it, n)):
        yield chunk
