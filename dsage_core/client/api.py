"""The user-facing client: ``D = dsage.start_all()`` or ``D = dsage.connect(furl)``, then ``D('2+2')``.

Works from a plain prompt or Jupyter (the reactor runs on a background thread); every call here
blocks the calling thread only, never the reactor.
"""
from __future__ import annotations

import os
from typing import Any, Iterable

from dsage_core.client import reactor_thread as rt
from dsage_core.client.job import Job, JobTracker
from dsage_core.client.payload import (Options, SubmitError, _is_plain, code_job, file_job, func_job,
                                      func_jobs, function_blob, refuse_unknown)
from dsage_core.model.status import JobStatus
from dsage_core.protocol.errors import ClientClosed
from dsage_core.client.joblist import JobList

#: argument types that cannot hold a job: ``map`` skips the search for jobs among them
_SCALARS = frozenset((int, float, str, bytes, bool, type(None), complex))


def _may_hold_job(x: Any) -> bool:
    """False for what surely holds no :class:`Job` (plain data); True otherwise (then searched)."""
    return not _is_plain(x)


class Client:
    """A blocking facade over :class:`AsyncClient` for one user on one server."""

    def __init__(self, aclient: Any, cluster: Any = None) -> None:
        self.aclient = aclient
        self.cluster = cluster
        self._closed = False

    # ------------------------------------------------------------------ plumbing
    def _sync(self, fn: Any, *args: Any, timeout: float | None = 60.0, **kw: Any) -> Any:
        self._check_open()
        return rt.blocking(fn, *args, timeout=timeout, **kw)

    def _check_open(self, what: str = "") -> None:
        """Raise :class:`ClientClosed` after :meth:`shutdown`: nothing would ever answer."""
        if self._closed:
            raise ClientClosed(what)

    def _check_not_reactor_thread(self, what: str) -> None:
        if rt.in_reactor_thread():
            raise RuntimeError(f"{what} would block the reactor thread; use 'await job' or job.deferred()")

    def _submit(self, subs: list[Any]) -> list[Job]:
        self._check_open("submitting")
        states = self._sync(self.aclient.submit_many, subs, timeout=None)
        return [Job(self, s) for s in states]

    @property
    def furl(self) -> str:
        return self.aclient.furl

    @property
    def user(self) -> str:
        return self.aclient.user

    # ------------------------------------------------------------------ submitting
    def __call__(self, expr: str, **options: Any) -> Job:
        """Evaluate an expression remotely; the job's result is its value. ``kind="sage"`` for Sage."""
        self._check_open("submitting")
        return self.eval(expr, _mode="expr", **options)

    def eval(self, code: str, user_vars: dict[str, Any] | None = None,
             load_files: Iterable[str | os.PathLike[str]] = (), *, kind: str = "python",
             _mode: str = "exec", **options: Any) -> Job:
        """Run code remotely; the result is the value the code assigns to ``DSAGE_RESULT``."""
        self._check_open("submitting")
        opts = Options.pop_from(options)
        _no_extra(options)
        sage = _sage_kind(kind)
        return self._submit([code_job(code, _mode, opts, user_vars=user_vars, load_files=load_files,
                                      sage=sage)])[0]

    def eval_file(self, path: str | os.PathLike[str], name: str | None = None, **options: Any) -> Job:
        """Run a file's content remotely (the content travels, not the path); result: ``DSAGE_RESULT``."""
        self._check_open("submitting")
        opts = Options.pop_from(options)
        _no_extra(options)
        opts.name = name or opts.name
        sub = file_job(path, opts)
        if "sage" in sub.needs:
            _sage_kind("sage")
        return self._submit([sub])[0]

    def submit(self, fn: Any, *args: Any, **kwargs: Any) -> Job:
        """Run ``fn(*args, **kwargs)`` remotely (cloudpickle). Job options go in ``dsage_options={...}``."""
        self._check_open("submitting")
        opts = Options.from_dict(kwargs.pop("dsage_options", None))
        args, kwargs = self._job_inputs(args, kwargs, opts)
        return self._submit([func_job(fn, args, kwargs, opts)])[0]

    def map(self, fn: Any, *iterables: Iterable[Any], **options: Any) -> JobList:
        """One job per element (like builtin map), as a :class:`JobList` (a list of jobs in input
        order, with ``wait()``, ``results`` and a notebook view); the function is pickled and sent once."""
        self._check_open("submitting")
        opts = Options.pop_from(options)
        _no_extra(options)
        blob = function_blob(fn)   # the function is pickled once per map
        subs: list[Any] = []
        shared: Options | None = None   # one Options for every job whose arguments hold no job
        run: list[tuple[Any, ...]] = []   # consecutive such jobs: one Submission of many payloads

        def flush() -> None:
            if run:
                subs.extend(func_jobs(fn, run, shared, blob))
                run.clear()
        scalars = _SCALARS
        for args in zip(*iterables):
            for a in args:
                if type(a) not in scalars and _may_hold_job(a):
                    break
            else:   # no Job among them: nothing to replace
                if shared is None:
                    shared = Options(**vars(opts))
                    shared.ext = dict(opts.ext)
                run.append(args)
                continue
            flush()
            o = Options(**vars(opts))
            o.ext = dict(opts.ext)   # copies share the ext dict otherwise
            args, _ = self._job_inputs(args, {}, o)
            subs.append(func_job(fn, args, {}, o, blob=blob))
        flush()
        return JobList(self._submit(subs))

    def _job_inputs(self, args: tuple[Any, ...], kwargs: dict[str, Any], opts: Options
                    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Jobs among the arguments become placeholders the worker fills with their values; their
        ids go in the ``inputs`` option, and the server runs this job once they completed."""
        from dsage_core.model.inputs import MAX_SEARCH, JobInput, check_inputs, replace
        ids: list[int] = []

        def swap(x: Any) -> Any:
            if type(x) is Job:
                if x._client is not self:
                    raise SubmitError(f"job {x.id} belongs to another dsage connection: pass its value")
                ids.append(x.id)
                return JobInput(x.id)
            return x
        budget = [MAX_SEARCH]
        args, kwargs = replace(args, swap, 0, budget), replace(kwargs, swap, 0, budget)
        if ids:
            try:
                opts.ext["inputs"] = check_inputs(ids + list(opts.ext.get("inputs") or []))
            except ValueError as e:
                raise SubmitError(str(e)) from None
        return args, kwargs

    def gather(self, jobs: Iterable[Any], timeout: float | None = None) -> list[Any]:
        """The values of *jobs* in input order; raises the first failure seen (as ``job.get`` does:
        the exception the job raised, else :class:`JobFailed`) as soon as it happens, without
        waiting for the rest; TimeoutError after *timeout* seconds."""
        from dsage_core.waiting import as_completed
        self._check_not_reactor_thread("gather()")
        jobs = list(jobs)
        for j in as_completed(jobs, timeout=timeout):
            if j.status != JobStatus.COMPLETED:
                j.get()  # raises the job's exception (or JobFailed)
        return [j.result for j in jobs]

    # ------------------------------------------------------------------ standard interfaces
    def executor(self, **options: Any) -> Any:
        """A ``concurrent.futures.Executor`` whose work runs as dsage jobs."""
        self._check_open("submitting")
        from dsage_core.client.executor import DsageExecutor
        return DsageExecutor(self, **options)

    def scatter(self, fn: Any, tasks: Iterable[Any] = (), **options: Any) -> Any:
        """A scatter-gather :class:`TaskQueue` of calls of *fn*; add more tasks at any time."""
        self._check_open("submitting")
        from dsage_core.client.taskqueue import TaskQueue
        return TaskQueue(self, fn, tasks, **options)

    async def eval_async(self, code: str, **options: Any) -> Job:
        """Submit without blocking the running asyncio loop; awaits the finished job."""
        import asyncio
        job = await asyncio.get_running_loop().run_in_executor(None, lambda: self.eval(code, **options))
        return await job

    async def submit_async(self, fn: Any, *args: Any, **kwargs: Any) -> Job:
        """``submit`` for asyncio code: awaits the finished job."""
        import asyncio
        job = await asyncio.get_running_loop().run_in_executor(None, lambda: self.submit(fn, *args, **kwargs))
        return await job

    # ------------------------------------------------------------------ looking at jobs
    def get_job(self, job_id: int | str) -> Job:
        """A handle on an existing job (e.g. from an earlier session); KeyError if unknown.

        *job_id* is an int or a string of digits (``"46"``, as the CLI prints it); anything else
        raises TypeError (bools, floats, None) or ValueError (other strings) before any call."""
        import operator
        what = f"job id must be an integer, got {job_id!r}"
        if isinstance(job_id, bool):  # an int subclass, but get_job(True) is surely a mistake
            raise TypeError(what)
        try:
            jid = int(job_id) if isinstance(job_id, str) else operator.index(job_id)
        except ValueError:
            raise ValueError(what) from None
        except TypeError:
            raise TypeError(what) from None
        states = self._sync(self.aclient.watch, [jid])
        if jid not in states:
            raise KeyError(f"no such job: {jid}")
        return Job(self, states[jid])

    def jobs(self, status: str | None = None, limit: int = 1000) -> JobList:
        """This user's jobs (oldest first), as live handles in a :class:`JobList`."""
        infos = self._sync(self.aclient.list_jobs, status=status, limit=limit)
        ids = [i.id for i in infos]
        states: dict[int, JobTracker] = {}
        for k in range(0, len(ids), 10_000):
            states.update(self._sync(self.aclient.watch, ids[k:k + 10_000]))
        return JobList(Job(self, states[i]) for i in ids if i in states)

    def kill(self, job_id: int) -> bool:
        return self._sync(self.aclient.kill, int(job_id))

    def workers(self) -> list[dict[str, Any]]:
        """Connected workers: host, slots, busy, cpus, memory, anonymous, last heartbeat, jobs done."""
        return self._sync(self.aclient.workers)

    def stats(self) -> dict[str, Any]:
        """Counts by status, jobs/s over the last minute, busy/free slots."""
        s = self._sync(self.aclient.stats)
        s["free_slots"] = max(0, s.get("total_slots", 0) - s.get("busy_slots", 0))
        return s

    def admin(self, command: str, *args: Any) -> Any:
        return self._sync(self.aclient.admin, command, *args)

    # ------------------------------------------------------------------ life cycle
    def shutdown(self) -> None:
        """Close the connection; with ``start_all``, also stop the server and worker it started."""
        if self._closed:
            return
        self._closed = True
        try:
            rt.blocking(self.aclient.close, timeout=10)
        except Exception:
            pass
        if self.cluster is not None:
            self.cluster.stop()

    close = shutdown

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.shutdown()

    def __repr__(self) -> str:
        return f"<dsage Client {self.aclient.user}@{self.aclient.server_label}>"


def _no_extra(options: dict[str, Any]) -> None:
    """What is left after the known options were taken out is a mistake: refuse it, listing the
    valid options (``retries=``, ``timout=`` were silently ignored once)."""
    refuse_unknown(options)


def _sage_kind(kind: str) -> bool:
    if kind not in ("python", "sage"):
        raise SubmitError(f"kind must be 'python' or 'sage', not {kind!r}")
    if kind == "sage":
        from dsage_core.client.sage_check import require_sage_extra
        require_sage_extra()
        return True
    return False


def connect(server: str | os.PathLike[str] | None = None, key: str | os.PathLike[str] | None = None,
            home: str | os.PathLike[str] | None = None, timeout: float = 10.0) -> Client:
    """Connect to a running server (furl or furl file; default ``DSAGE_HOME/server.furl``)."""
    from dsage_core.client.core import START_GRACE, connect_async
    from dsage_core.home import resolve_home
    from dsage_core.protocol.connect import read_own_furl
    h = resolve_home(home)
    srv = str(server) if server is not None else read_own_furl(h, START_GRACE)
    rt.ensure_running()
    ac = rt.blocking(connect_async, srv, str(key) if key else None, str(h), rt.get_reactor(),
                     timeout, timeout=timeout + 5)
    return Client(ac)


def start_all(workers: int = 2, home: str | os.PathLike[str] | None = None, *,
              timeout: float = 60.0) -> Client:
    """Start a server and one worker with *workers* slots as child processes, and connect to them.

    Both stop at ``D.shutdown()`` or when this interpreter exits.
    """
    from dsage_core.cluster import LocalCluster
    cluster = LocalCluster.spawn(home, workers)
    try:
        D = connect(cluster.furl, home=cluster.home, timeout=timeout)
    except BaseException:
        cluster.stop()
        raise
    D.cluster = cluster
    return D
