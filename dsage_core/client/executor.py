"""``D.executor()``: a standard ``concurrent.futures.Executor`` backed by dsage jobs.

``map`` submits in chunks (one job per chunk of *chunksize* elements, the function sent once) and
yields results in input order; a failed job raises :class:`JobFailed` from the iterator, as
``Executor.map`` does with the worker's exception.
"""
from __future__ import annotations

import concurrent.futures as cf
import itertools
import threading
from typing import Any, Callable, Iterable, Iterator

from dsage_core.client.job import Job, JobFailed
from dsage_core.client.payload import Options, func_job, function_blob


def _apply_chunk(fn: Callable[..., Any], chunk: list[tuple[Any, ...]]) -> list[Any]:
    return [fn(*args) for args in chunk]


def _future_for(job: Job, transform: Callable[[Any], Any] | None = None) -> cf.Future:
    fut: cf.Future = cf.Future()
    fut.set_running_or_notify_cancel()
    job_ref = job

    def done(j: Job) -> None:
        if j.status == "completed":
            try:
                v = j.result
                fut.set_result(transform(v) if transform else v)
            except BaseException as e:  # noqa: BLE001 - decoding error goes to the future
                fut.set_exception(e)
        else:
            fut.set_exception(JobFailed(f"job {j.id} {j.status}: {j.error or ''}".rstrip(": ")))
    job.add_done_callback(done)
    fut.dsage_job = job_ref  # type: ignore[attr-defined]
    return fut


class DsageExecutor(cf.Executor):
    """Executor over a :class:`~dsage_core.client.api.Client`. Options apply to every job."""

    def __init__(self, client: Any, **options: Any) -> None:
        self._client = client
        self._options = Options.pop_from(dict(options))
        self._shutdown = False
        self._lock = threading.Lock()
        self._futures: set[cf.Future] = set()

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
            self._futures.add(fut)
        fut.add_done_callback(lambda f: self._futures.discard(f))

    def map(self, fn: Callable[..., Any], *iterables: Iterable[Any], timeout: float | None = None,
            chunksize: int = 1) -> Iterator[Any]:
        """Like ``Executor.map``; *chunksize* > 1 runs several calls per job (fewer, larger jobs)."""
        self._check()
        argsets = list(zip(*iterables))
        if chunksize <= 1:
            blob = function_blob(fn)
            subs = [func_job(fn, args, {}, Options(**vars(self._options)), blob=blob) for args in argsets]
            futs = [_future_for(j) for j in self._client._submit(subs)]
        else:
            blob = function_blob(_apply_chunk)
            chunks = [argsets[i:i + chunksize] for i in range(0, len(argsets), chunksize)]
            subs = [func_job(_apply_chunk, (fn, c), {}, Options(**vars(self._options)), blob=blob)
                    for c in chunks]
            futs = [_future_for(j) for j in self._client._submit(subs)]
        for f in futs:
            self._track(f)
        return self._results(futs, timeout, chunksize > 1)

    @staticmethod
    def _results(futs: list[cf.Future], timeout: float | None, chunked: bool) -> Iterator[Any]:
        import time
        end = None if timeout is None else time.monotonic() + timeout
        try:
            for f in futs:
                left = None if end is None else max(0.0, end - time.monotonic())
                r = f.result(left)
                if chunked:
                    yield from r
                else:
                    yield r
        finally:
            for f in futs:
                f.cancel()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._shutdown = True
        with self._lock:
            futs = list(self._futures)
        if cancel_futures:
            for f in futs:
                job = getattr(f, "dsage_job", None)
                if job is not None and not job.done():
                    job.kill()
        if wait:
            cf.wait(futs)


def chunks(iterable: Iterable[Any], n: int) -> Iterator[list[Any]]:
    it = iter(iterable)
    while chunk := list(itertools.islice(it, n)):
        yield chunk
