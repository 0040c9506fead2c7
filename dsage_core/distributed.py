"""``DistributedFunction``: subclass it to write a distributed computation (the seeds' "advanced usage").

    class Squares(DistributedFunction):
        def start(self):
            for x in range(10):
                self.submit(pow, x, 2)
        def process_result(self, job):
            self.total = getattr(self, "total", 0) + job.result
            if self.jobs_done == 10:
                self.finish(self.total)

    f = Squares()
    print(f.run(D))            # 285

``process_result`` runs in the caller's thread (never on the reactor) and may submit more jobs
(adaptive refinement). A job that did not complete goes to ``process_failure`` (default: recorded
in ``failures``); when no job is outstanding and ``finish`` was not called, the computation ends
anyway with ``error_report`` set — it never hangs. ``save(path)`` / ``restore(path, client)``
resume after the client or server restarts: outstanding jobs are found again by id.
"""
from __future__ import annotations

import queue
import time
from pathlib import Path
from typing import Any, Callable

import cloudpickle

from dsage_core.client.job import Job
from dsage_core.model.status import JobStatus


class DistributedFunctionError(RuntimeError):
    """The computation ended without a result because jobs failed."""


class DistributedFunction:
    """Base class; override :meth:`start` and :meth:`process_result` (and maybe :meth:`process_failure`)."""

    #: job options applied to every job this computation submits
    job_options: dict[str, Any] = {}

    def __init__(self) -> None:
        self.done = False
        self.result: Any = None
        self.failures: list[dict[str, Any]] = []
        self.jobs_submitted = 0
        self.jobs_done = 0
        self.started = False
        self._outstanding: dict[int, str] = {}   # job id -> tag
        self._client: Any = None
        self._q: queue.SimpleQueue[Job] | None = None

    # ---------------------------------------------------------------- to override
    def start(self) -> None:
        """Submit the first jobs."""
        raise NotImplementedError

    def process_result(self, job: Job) -> None:
        """Handle one completed job; may submit more jobs and may call :meth:`finish`."""
        raise NotImplementedError

    def process_failure(self, job: Job) -> None:
        """Handle a job that failed, timed out, was killed or lost. Default: record it."""
        last = (job.error or "").strip().splitlines()[-1:] or [job.status]
        self.failures.append({"job": job.id, "status": job.status, "tag": self.tag_of(job), "error": last[0]})

    # ---------------------------------------------------------------- for subclasses
    def submit(self, fn: Callable[..., Any], *args: Any, tag: str = "", **kwargs: Any) -> Job:
        """Submit ``fn(*args, **kwargs)`` as part of this computation."""
        job = self._client.submit(fn, *args, dsage_options=dict(self.job_options), **kwargs)
        self._track(job, tag)
        return job

    def eval(self, code: str, tag: str = "", **options: Any) -> Job:
        """Submit a code job (result: ``DSAGE_RESULT``) as part of this computation."""
        opts = {**self.job_options, **options}
        job = self._client.eval(code, **opts)
        self._track(job, tag)
        return job

    def finish(self, result: Any = None) -> None:
        """Declare the computation done; outstanding jobs are killed."""
        self.result = result
        self.done = True
        for jid in list(self._outstanding):
            try:
                self._client.kill(jid)
            except Exception:
                pass

    def tag_of(self, job: Job) -> str:
        """The tag given when *job* was submitted (also while its result is being processed)."""
        if job.id in self._outstanding:
            return self._outstanding[job.id]
        return getattr(self, "_current_tag", "")

    # ---------------------------------------------------------------- state
    @property
    def outstanding(self) -> int:
        return len(self._outstanding)

    @property
    def progress(self) -> float:
        """Jobs done / jobs known so far (0.0 before start)."""
        return self.jobs_done / self.jobs_submitted if self.jobs_submitted else 0.0

    @property
    def error_report(self) -> str:
        if not self.failures:
            return ""
        lines = [f"{len(self.failures)} of {self.jobs_submitted} jobs did not complete:"]
        lines += [f"  job {f['job']} {f['status']}{' [' + f['tag'] + ']' if f['tag'] else ''}: {f['error']}"
                  for f in self.failures[:20]]
        if len(self.failures) > 20:
            lines.append(f"  ... and {len(self.failures) - 20} more")
        return "\n".join(lines)

    # ---------------------------------------------------------------- running
    def _track(self, job: Job, tag: str) -> None:
        self._outstanding[job.id] = tag
        self.jobs_submitted += 1
        assert self._q is not None
        job.add_done_callback(self._q.put)

    def attach(self, client: Any) -> None:
        self._client = client
        self._q = queue.SimpleQueue()

    def run(self, client: Any, timeout: float | None = None, raise_on_failure: bool = False) -> Any:
        """Run (or resume) to the end; returns :attr:`result`."""
        if self._client is not client:
            self.attach(client)
            self._reattach()
        if not self.started:
            self.started = True
            self.start()
        end = None if timeout is None else time.monotonic() + timeout
        assert self._q is not None
        while not self.done and self._outstanding:
            left = None if end is None else end - time.monotonic()
            if left is not None and left <= 0:
                raise TimeoutError(f"{self.outstanding} jobs still outstanding")
            try:
                job = self._q.get(timeout=left)
            except queue.Empty:
                continue
            if job.id not in self._outstanding:
                continue
            self.step(job)
        self.done = True
        if raise_on_failure and self.failures:
            raise DistributedFunctionError(self.error_report)
        return self.result

    def step(self, job: Job) -> None:
        """Process one finished job (what :meth:`run` does for each)."""
        # forget the job first: a save() made inside process_result must not list it as outstanding
        self._current_tag = self._outstanding.pop(job.id, "")
        self.jobs_done += 1
        if job.status == JobStatus.COMPLETED:
            self.process_result(job)
        else:
            self.process_failure(job)

    def _reattach(self) -> None:
        for jid, tag in list(self._outstanding.items()):
            try:
                job = self._client.get_job(jid)
            except KeyError:
                self._outstanding.pop(jid)
                self.failures.append({"job": jid, "status": JobStatus.LOST.value, "tag": tag,
                                      "error": "the server does not know this job any more"})
                continue
            assert self._q is not None
            job.add_done_callback(self._q.put)

    # ---------------------------------------------------------------- persistence
    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_client"] = None
        state["_q"] = None
        return state

    def save(self, path: str | Path) -> None:
        """Write the computation's state (not the client) to *path*, atomically."""
        p = Path(path)
        tmp = p.with_suffix(p.suffix + ".tmp")
        tmp.write_bytes(cloudpickle.dumps(self))
        tmp.replace(p)

    @classmethod
    def restore(cls, path: str | Path, client: Any = None) -> "DistributedFunction":
        """Load a saved computation; pass *client* (or call ``run(client)``) to resume it."""
        obj = cloudpickle.loads(Path(path).read_bytes())
        if not isinstance(obj, DistributedFunction):
            raise TypeError(f"{path} does not hold a DistributedFunction")
        if client is not None:
            obj.attach(client)
            obj._reattach()
        return obj
