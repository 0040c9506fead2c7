"""Job handles: what ``D('2+2')`` returns. Usable from plain threads, asyncio and Twisted."""
from __future__ import annotations

import threading
from typing import Any, Callable

from dsage_core import codec
from dsage_core.client.remote_error import JobFailed, rebuild
from dsage_core.model.job import TERMINAL, JobInfo
from dsage_core.model.records import UNTRUSTED_RESULT, JobUpdate
from dsage_core.model.status import JobStatus

_NO_RESULT = object()
_EVENT_LOCK = threading.Lock()   #: guards the lazy creation of JobTracker events


class JobTracker:
    """The client's copy of one job, updated on the reactor thread from pushed updates.

    A session may hold hundreds of thousands of these, and Python's full collections walk every
    one: the wake-up Event (five collected objects) and the callback list exist only once someone
    waits or registers a callback. ``status`` is assigned last in :meth:`apply`, so a thread that
    sees a terminal status also sees the result."""

    __slots__ = ("id", "name", "kind", "status", "worker", "created", "started", "finished", "result_bytes",
                 "result_preview", "error", "progress", "progress_message", "attempts", "priority",
                 "_event", "_callbacks", "_value", "code", "extra", "exc", "exc_obj", "__weakref__")

    def __init__(self, job_id: int, name: str = "", kind: str = "", created: float = 0.0) -> None:
        self.id = job_id
        self.name = name
        self.kind = kind
        self.status = JobStatus.QUEUED
        self.worker: str | None = None
        self.created = created
        self.started: float | None = None
        self.finished: float | None = None
        self.result_bytes: bytes | None = None
        self.result_preview: str | None = None
        self.error: str | None = None
        self.progress: float | None = None
        self.progress_message = ""
        self.attempts = 0
        self.priority = 0
        self.code: str | None = None
        self.extra: dict[str, Any] | None = None   #: the update's optional 16th field (replicas)
        self.exc: dict[str, Any] | None = None   #: the exception map of a job that raised (exc_info)
        self.exc_obj: BaseException | None = None   #: that exception, rebuilt once (Job.exception)
        self._event: threading.Event | None = None
        #: None, the one done-callback (most jobs have one), or a list of them
        self._callbacks: Any = None
        self._value: Any = _NO_RESULT

    @property
    def done(self) -> bool:
        return self.status in TERMINAL

    @property
    def event(self) -> threading.Event:
        """Set once the job is finished (made on first use, from any thread)."""
        ev = self._event
        if ev is None:
            with _EVENT_LOCK:
                ev = self._event
                if ev is None:
                    ev = threading.Event()
                    if self.status in TERMINAL:
                        ev.set()
                    self._event = ev
        return ev

    def wake(self) -> None:
        """The client closed: wake threads blocked in ``wait()`` (the job stays unfinished, and
        they raise :class:`ClientClosed`)."""
        with _EVENT_LOCK:
            ev = self._event
        if ev is not None:
            ev.set()

    def add_callback(self, fn: Callable[["JobTracker"], None]) -> None:
        """Run *fn(self)* when the job finishes (reactor thread only)."""
        cbs = self._callbacks
        if self.status in TERMINAL:
            fn(self)
        elif cbs is None:
            self._callbacks = fn   # a lone callback is kept as is: no list per job
        elif type(cbs) is list:
            cbs.append(fn)
        else:
            self._callbacks = [cbs, fn]

    def _finish(self) -> None:
        """Just became terminal: wake waiters, run the done-callbacks once."""
        with _EVENT_LOCK:
            ev = self._event
        if ev is not None:
            ev.set()
        cbs = self._callbacks
        if cbs is not None:
            self._callbacks = None
            if type(cbs) is list:
                for cb in cbs:
                    cb(self)
            else:
                cbs(self)

    def apply(self, u: JobUpdate) -> bool:
        """Apply a pushed :class:`~dsage_core.model.records.JobUpdate`; True if the job just became terminal."""
        if self.status in TERMINAL:
            return False  # a job finishes once: later updates are stale
        status = u.status
        self.worker, self.started, self.finished = u.worker, u.started, u.finished
        self.result_preview, self.error, self.progress = u.result_preview, u.error, u.progress
        self.progress_message = u.progress_message or ""
        self.attempts = u.attempts
        if u.result is not None:
            self.result_bytes = u.result
        self.name = u.name or self.name
        self.created = u.created or self.created
        self.priority = u.priority or 0
        self.kind = u.kind or self.kind
        if isinstance(u.extra, dict):
            self.extra = u.extra
        exc = u.exc
        if exc is not None:
            self.exc = exc if isinstance(exc, dict) else None
        self.status = status   # last: readers on other threads check it without a lock
        if status in TERMINAL:
            self._finish()
            return True
        return False

    def apply_wire(self, w: Any, local_home: Any) -> bool:
        """:meth:`apply` straight from the server's array (no JobUpdate built): the fields in
        :class:`~dsage_core.model.records.JobUpdate` order, the two optional trailing ones left
        off when empty; another length raises TypeError (nothing applied). A ``{"file", "size"}`` result becomes a
        :class:`LocalResult` of *local_home*."""
        n = len(w)
        if not 15 <= n <= 17:
            raise TypeError(f"a job update has 15 to 17 fields, not {n}")
        if self.status in TERMINAL:
            return False  # a job finishes once: later updates are stale
        if n == 15:
            (_, status, worker, started, finished, result, preview, error, progress, message,
             attempts, name, created, priority, kind) = w
            extra = exc = None
        elif n == 16:
            (_, status, worker, started, finished, result, preview, error, progress, message,
             attempts, name, created, priority, kind, extra) = w
            exc = None
        else:
            (_, status, worker, started, finished, result, preview, error, progress, message,
             attempts, name, created, priority, kind, extra, exc) = w
        self.worker, self.started, self.finished = worker, started, finished
        self.result_preview, self.error, self.progress = preview, error, progress
        self.progress_message = message or ""
        self.attempts = attempts
        if result is not None:
            self.result_bytes = LocalResult(local_home, result) if isinstance(result, dict) else result
        if name:
            self.name = name
        if created:
            self.created = created
        self.priority = priority or 0
        if kind:
            self.kind = kind
        if isinstance(extra, dict):
            self.extra = extra
        if exc is not None:
            self.exc = exc if isinstance(exc, dict) else None
        self.status = status   # last: readers on other threads check it without a lock
        if status in TERMINAL:
            self._finish()
            return True
        return False

    @property
    def value(self) -> Any:
        """The decoded result (decoded once); None unless completed."""
        v = self._value
        if v is not _NO_RESULT:
            return v
        data = self.result_bytes
        if self.status != JobStatus.COMPLETED or data is None:
            v = self._value  # another thread may just have decoded it (and dropped the bytes)
            return None if v is _NO_RESULT else v
        if isinstance(data, LocalResult):
            data = data.read()
        v = codec.decode_value(data, allow_pickle=not (self.extra and self.extra.get(UNTRUSTED_RESULT)))
        self._value = v             # set before the bytes go, for a thread reading concurrently
        self.result_bytes = None    # decoded once: do not keep a large result twice
        return v

    def info(self) -> JobInfo:
        return JobInfo(id=self.id, name=self.name, kind=self.kind, status=self.status, worker=self.worker,
                       created=self.created, started=self.started, finished=self.finished,
                       progress=self.progress, progress_message=self.progress_message,
                       attempts=self.attempts, result_preview=self.result_preview, error=self.error,
                       priority=self.priority, code=self.code, extra=dict(self.extra or {}))


class LocalResult:
    """A large result the server stored in a file of the home this client shares with it. Read
    safely (see :mod:`dsage_core.result_files`): only a name the server makes, opened from a
    descriptor of ``results/`` without following links, and only a regular file with one link,
    owned by the owner of ``results/`` (the server)."""

    __slots__ = ("home", "name", "size", "problem")

    def __init__(self, home: Any, marker: dict[str, Any]) -> None:
        from dsage_core.result_files import NAME
        name = str(marker.get("file", ""))
        self.home, self.name, self.size, self.problem = home, name, 0, None
        size = marker.get("size", 0)
        if "missing" in marker:
            self.problem = str(marker["missing"])[:500]
        elif home is None or not NAME.fullmatch(name) or type(size) is not int or size < 0:
            self.problem = f"the server sent a result file name this client cannot use: {name[:100]!r}"
        else:
            self.size = size

    @property
    def path(self) -> Any:
        """Where the file is (None when the marker was unusable)."""
        from pathlib import Path
        return None if self.problem is not None else Path(self.home) / self.name

    def read(self) -> bytes:
        from dsage_core.result_files import ResultFileError, ResultsDir
        if self.problem is not None:
            raise ResultUnavailable(self.problem)
        try:
            rd = ResultsDir(self.home)
            try:
                return rd.read(self.name, self.size)
            finally:
                rd.close()
        except (OSError, ResultFileError) as e:
            raise ResultUnavailable(f"{e}; the server still has it: D.get_job(id).result fetches it "
                                    f"over the network") from None


class ResultUnavailable(RuntimeError):
    """A result stored in a shared file could not be read."""


class Job:
    """A handle on one job.

    ``wait()`` returns the job once it reaches any terminal state (completed, failed, killed,
    timed_out, lost); ``result`` is the value (None unless completed); ``error`` the traceback text;
    ``get()`` waits and returns the value or raises :class:`JobFailed`. The repr is always
    ``<Job 7 completed: 4>``, never the bare value.
    """

    def __init__(self, client: Any, state: JobTracker) -> None:
        self._client = client
        self._s = state

    def __reduce__(self) -> Any:
        raise TypeError(f"job {self.id} cannot be pickled: a job is an argument of another job only "
                        "at the top level of D.submit/D.map or inside lists, tuples, dicts and sets")

    # --- identity and state
    @property
    def id(self) -> int:
        return self._s.id

    @property
    def name(self) -> str:
        return self._s.name

    @property
    def status(self) -> str:
        return self._s.status

    @property
    def worker(self) -> str | None:
        return self._s.worker

    @property
    def created(self) -> float:
        return self._s.created

    @property
    def started(self) -> float | None:
        return self._s.started

    @property
    def finished(self) -> float | None:
        return self._s.finished

    @property
    def progress(self) -> float | None:
        return self._s.progress

    @property
    def progress_message(self) -> str:
        return self._s.progress_message

    @property
    def attempts(self) -> int:
        return self._s.attempts

    @property
    def replicas(self) -> str | None:
        """How a replicated job's copies agreed (``"2/2 agree"``, ``"1/2 answered"``...); None
        for a job run once."""
        return (self._s.extra or {}).get("replicas")

    def done(self) -> bool:
        """True once the job reached a terminal state (never blocks)."""
        return self._s.status in TERMINAL

    @property
    def result(self) -> Any:
        return self._s.value

    @property
    def error(self) -> str | None:
        return self._s.error

    def get(self, timeout: float | None = None) -> Any:
        """Wait and return the result. A job that raised raises its exception here (see
        :meth:`exception`); one that ended otherwise (killed, timed out, lost, crashed) raises
        :class:`JobFailed` with the error."""
        self.wait(timeout)
        if self.status != JobStatus.COMPLETED:
            raise self._exception()
        return self.result

    def exception(self, timeout: float | None = None) -> BaseException | None:
        """Wait, then: None if the job completed; the exception it raised if it raised one (the
        original, when it came from a keyed worker of yours and unpickles here, else a
        :class:`~dsage_core.RemoteError` subclass named after the remote type), with the remote
        traceback text as ``__cause__``; otherwise a :class:`JobFailed` naming what happened."""
        self.wait(timeout)
        return None if self.status == JobStatus.COMPLETED else self._exception()

    def _exception(self) -> BaseException:
        s = self._s
        summary = f"job {self.id} {self.status}: {self.error or ''}".rstrip(": ")
        exc = s.exc_obj
        if exc is None:
            exc = (rebuild(s.exc, s.error, summary) if s.status == JobStatus.FAILED else None) or JobFailed(summary)
            s.exc_obj = exc   # one object per job, as a Future keeps its exception
        return exc

    @property
    def output(self) -> str:
        """stdout/stderr captured so far (fetched live from the server)."""
        return self._client._sync(self._client.aclient.get_output, self.id)

    def wait(self, timeout: float | None = None, show_output: bool = False) -> "Job":
        """Block until the job is finished (in any terminal state) and return the job (its value is
        ``.result``); raise TimeoutError after *timeout*. ``show_output=True`` prints the job's
        stdout/stderr to this process's stdout as it arrives (into the cell, in a notebook)."""
        self._client._check_not_reactor_thread("Job.wait")
        if not self._s.done:
            self._check_open("waiting on a job")
        if show_output:
            from dsage_core.client.streaming import wait_printing_output
            wait_printing_output(self, timeout)
        elif not self._s.done and not self._s.event.wait(timeout):
            raise TimeoutError(f"job {self.id} still {self.status} after {timeout} s")
        if not self._s.done:   # woken by shutdown(): nothing will ever finish it here
            from dsage_core.protocol.errors import ClientClosed
            raise ClientClosed(f"job {self.id}: waiting on a job")
        return self

    def kill(self) -> bool:
        """Ask the server to kill the job; False if it had already finished."""
        return self._client._sync(self._client.aclient.kill, self.id)

    def info(self) -> JobInfo:
        return self._s.info()

    def _check_open(self, what: str) -> None:
        check = getattr(self._client, "_check_open", None)  # absent on the GUI's async handles
        if check is not None:
            check(f"job {self.id}: {what}")

    @property
    def waiting_reason(self) -> str | None:
        """Why a queued job is not running yet, when it is not simply its turn (e.g. no Sage worker,
        or ``needs 2 cpus; the largest worker has 1``); for a waiting job, the jobs it waits for."""
        if self.status not in (JobStatus.QUEUED, JobStatus.WAITING):
            return None
        return self._client._sync(self._client.aclient.get_record, self.id, False).get("waiting_reason")

    # --- async interfaces
    def add_done_callback(self, fn: Callable[["Job"], None]) -> None:
        """Call *fn(job)* on the reactor thread when the job finishes (at once if it has)."""
        if not self._s.done:
            self._check_open("waiting on a job")
        self._client.aclient.call_when_done(self._s, lambda s: fn(self))

    def deferred(self) -> Any:
        """A Twisted Deferred that fires with this job when it finishes (use on the reactor thread)."""
        from twisted.internet.defer import Deferred
        d: Deferred = Deferred()
        self.add_done_callback(d.callback)
        return d

    def __await__(self) -> Any:
        import asyncio
        loop = asyncio.get_running_loop()
        fut = loop.create_future()

        def fire(job: "Job") -> None:
            loop.call_soon_threadsafe(lambda: fut.done() or fut.set_result(job))
        self.add_done_callback(fire)
        return fut.__await__()

    def __repr__(self) -> str:
        """Always ``<Job ID STATUS...>`` (a bounded result preview when completed): a job is never
        mistaken for its value; the value is ``.result``."""
        from dsage_core.client.display import job_repr
        return job_repr(self)

    def _repr_html_(self) -> str:
        """What Jupyter shows: status, worker, elapsed time, result preview or progress."""
        from dsage_core.client.display import job_html
        return job_html(self)
