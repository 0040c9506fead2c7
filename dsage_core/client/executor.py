"""``D.executor()``: a standard ``concurrent.futures.Executor`` backed by dsage jobs.

``map`` submits in chunks (one job per chunk of *chunksize* elements, the function sent once) and
yields results in input order; a failed job raises its own exception from the iterator (see
``Job.exception``), as ``Executor.map`` does with the worker's exception.
"""
from __future__ import annotations

import concurrent.futures as cf
import itertools
import threading
import weakref
from typing import Any, Callable, Iterable, Iterator

from dsage_core.client.job import Job
from dsage_core.client.payload import Options, func_job, function_blob
from dsage_core.model.status import JobStatus


#: a job in these states has not started in a child yet: its future can still be cancelled
CANCELLABLE = frozenset({JobStatus.QUEUED, JobStatus.ASSIGNED})
_RUNNING = frozenset({JobStatus.RUNNING, JobStatus.PAUSED})


def _apply_chunk(fn: Callable[..., Any], chunk: list[tuple[Any, ...]]) -> list[Any]:
    return [fn(*args) for args in chunk]


class JobFuture(cf.Future):
    """The Future of one dsage job (``dsage_job``). ``cancel()`` cancels the job on the server while
    no child runs it yet (queued, or assigned to a worker ahead of time: the worker spares a job
    it already started); a running job's future cannot be cancelled, as with any Executor."""

    def __init__(self, job: Job) -> None:
        super().__init__()
        self.dsage_job = job
        self.cancel_sent = False   #: a cancel went to the server: "killed" means cancelled

    def running(self) -> bool:
        return not self.done() and self.dsage_job.status in _RUNNING

    def cancel(self) -> bool:
        if not self._cancel_here():
            return self.cancelled()
        j = self.dsage_job
        try:
            j._client._sync(j._client.aclient.kill_many, [j.id], True)
        except Exception:  # noqa: BLE001 - closed or unreachable: the future is cancelled anyway
            pass
        return True

    def _cancel_here(self) -> bool:
        """Cancel the future (not the job) if its job has not started; True if it did."""
        if self.done() or self.dsage_job.status not in CANCELLABLE or not super().cancel():
            return False
        self.set_running_or_notify_cancel()   # wakes wait() and as_completed()
        return True


def _settle(fut: cf.Future, j: Job) -> None:
    if fut.done():
        return   # cancelled: its job was killed
    if j.status == JobStatus.KILLED and getattr(fut, "cancel_sent", False) and Future_cancel(fut):
        fut.set_running_or_notify_cancel()   # shutdown(cancel_futures=True) cancelled its job
        return
    try:
        if j.status == JobStatus.COMPLETED:
            try:
                value = j.result
            except BaseException as e:  # noqa: BLE001 - a decoding error goes to the future
                fut.set_exception(e)
            else:
                fut.set_result(value)
        else:
            fut.set_exception(j._exception())   # the job's own exception when it raised one
    except cf.InvalidStateError:
        pass   # cancelled in between, from another thread


Future_cancel = cf.Future.cancel   #: the plain Future's cancel (no server call)


def _futures_for(jobs: list[Job]) -> list[cf.Future]:
    """One Future per job; their done-callbacks are registered in one hop to the reactor."""
    from dsage_core.waiting import on_done_many
    futs = []
    by_job: dict[int, cf.Future] = {}
    for job in jobs:
        fut = JobFuture(job)
        by_job[id(job)] = fut
        futs.append(fut)
    on_done_many(jobs, lambda j: _settle(by_job.pop(id(j)), j))
    return futs


def _future_for(job: Job) -> cf.Future:
    return _futures_for([job])[0]


class DsageExecutor(cf.Executor):
    """Executor over a :class:`~dsage_core.client.api.Client`. Options apply to every job.

    It keeps CPython's Executor contract: futures are cancellable until their job starts,
    ``shutdown(cancel_futures=True)`` kills the jobs that have not started, ``map`` raises the
    exception of the first failing item when iteration reaches it (and cancels the rest if the
    iterator is left early), and neither futures nor iterators keep the function, its arguments
    or results they handed out (the function and arguments travel pickled; ``map`` forgets each
    job as it yields its value). ``max_workers`` is accepted for compatibility (it must be > 0);
    the server's slots decide how many jobs run at once."""

    def __init__(self, client: Any, max_workers: int | None = None, **options: Any) -> None:
        if max_workers is not None and max_workers <= 0:
            raise ValueError("max_workers must be greater than 0")
        self._client = client
        self._options = Options.from_dict(options)
        self._shutdown = False
        self._lock = threading.Lock()
        self._futures: "weakref.WeakSet[cf.Future]" = weakref.WeakSet()
        self._map_ids: list[int] = []   #: ids of map jobs (their states: the client's table)
        self._map_pruned = 0

    def _check(self) -> None:
        if self._shutdown:
            raise RuntimeError("cannot schedule new futures after shutdown")

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> cf.Future:
        with self._lock:
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
        from the job handles, without a Future per element. *timeout* counts from this call.
        """
        import time
        end = None if timeout is None else time.monotonic() + timeout
        with self._lock:
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
        del argsets
        jobs = self._client._submit(subs)
        del subs
        with self._lock:
            self._map_ids.extend(j.id for j in jobs)
            if len(self._map_ids) > 2 * self._map_pruned + 10_000:
                self._map_ids = [s.id for s in self._live(self._map_ids)]
                self._map_pruned = len(self._map_ids)
        jobs.reverse()   # popped from the end, in input order
        return self._results(jobs, end, chunksize > 1)

    def _results(self, jobs: list[Job], end: float | None, chunked: bool) -> Iterator[Any]:
        import time
        self._client._check_not_reactor_thread("Executor.map results")
        try:
            while jobs:
                left = None if end is None else max(0.0, end - time.monotonic())
                if chunked:
                    values = _value_of(jobs.pop()._s, left)
                    values.reverse()
                    while values:
                        yield values.pop()
                else:
                    yield _value_of(jobs.pop()._s, left)  # the job is forgotten before its value goes
        finally:
            if jobs:   # left early (an exception, a timeout, close()): cancel what has not started
                self._kill([j._s for j in jobs if j._s.status in CANCELLABLE])

    def _live(self, ids: list[int]) -> list[Any]:
        states = self._client.aclient.states
        return [s for s in map(states.get, ids) if s is not None and not s.done]

    def _kill(self, states: list[Any]) -> None:
        """Cancel these jobs on the server (a worker spares those it already runs)."""
        if not states:
            return
        ids = [s.id for s in states]
        try:
            for k in range(0, len(ids), 1000):   # the server's bound on one kill call
                self._client._sync(self._client.aclient.kill_many, ids[k:k + 1000], True)
        except Exception:  # noqa: BLE001 - closed or unreachable: nothing more to cancel
            pass

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self._shutdown = True
            futs = [f for f in self._futures if not f.done()]
            mapped = self._live(self._map_ids)
            self._map_ids, self._map_pruned = [], 0
        if cancel_futures:
            # queued jobs and those a worker holds but has not started are cancelled on the
            # server; a future is cancelled when its job ends killed (see _settle)
            targets = [f for f in futs if not f.done() and f.dsage_job.status in CANCELLABLE]
            for f in targets:
                f.cancel_sent = True
            self._kill([f.dsage_job._s for f in targets] + [s for s in mapped if s.status in CANCELLABLE])
        if wait:
            self._client._check_not_reactor_thread("Executor.shutdown")
            cf.wait(futs)   # the futures themselves: they are settled just after their jobs end
            for s in mapped:
                s.event.wait()


def _value_of(s: Any, timeout: float | None) -> Any:
    """The value of a map job once done: its exception raised (CancelledError for a killed job),
    ``cf.TimeoutError`` if it is not done within *timeout*."""
    if not s.done and not s.event.wait(timeout):
        raise cf.TimeoutError()
    if s.status == JobStatus.COMPLETED:
        return s.value
    if s.status == JobStatus.KILLED:
        raise cf.CancelledError()
    from dsage_core.client.job import Job
    raise Job(None, s)._exception()


def chunks(iterable: Iterable[Any], n: int) -> Iterator[list[Any]]:
    it = iter(iterable)
    while chunk := list(itertools.islice(it, n)):
        yield chunk
