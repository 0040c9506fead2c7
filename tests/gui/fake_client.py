"""An in-process fake of the AsyncClient contract: Deferreds fired on the next reactor turn.

Tests drive it with :meth:`FakeClient.finish`, :meth:`FakeClient.set_output` and :meth:`FakeClient.emit`.
``tests/gui/test_panes.py`` checks its method signatures against the real ``AsyncClient``.
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, Callable

from twisted.internet.defer import Deferred

from dsage_core.model.job import JobInfo

WORKER = {"id": "w1", "host": "h", "slots": 2, "busy": 1, "cpus": 2, "memory": 2**33, "os": "Linux",
          "python": "3.11", "anonymous": False, "user": "tester", "last_heartbeat": 0.0, "jobs_done": 3,
          "sage": False}


class FakeClient:
    server_label = "fake:0"
    user = "tester"

    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor
        self.subscribers: list[Callable[[str, Any], None]] = []
        self.submitted: list[tuple[str, Any, dict[str, Any]]] = []
        self.jobs: dict[int, JobInfo] = {}
        self.results: dict[int, bytes] = {}   #: encoded results (see finish(result=...))
        self.killed: list[int] = []
        self.get_job_calls = 0
        self.workers_list = [dict(WORKER, last_heartbeat=time.time())]
        self.next_id = 1
        self.closed = False

    def _later(self, value: Any) -> Deferred:
        d: Deferred = Deferred()
        self.reactor.callLater(0, d.callback, value)
        return d

    def _fail_later(self, exc: Exception) -> Deferred:
        d: Deferred = Deferred()
        self.reactor.callLater(0, d.errback, exc)
        return d

    # ------------------------------------------------------------ driving the fake from tests
    def emit(self, kind: str, payload: Any) -> None:
        for cb in list(self.subscribers):
            cb(kind, payload)

    def finish(self, job_id: int, status: str = "completed", result_preview: str | None = None,
               error: str | None = None, result: Any = None) -> JobInfo:
        """The job ends now; subscribers get one ``jobs`` event. *result*: its whole value (the
        default: the preview's text)."""
        from dsage_core import codec
        j = self.jobs[job_id]
        if status == "completed":
            self.results[job_id] = codec.encode_value(result if result is not None else result_preview)
        now = time.time()
        j.status, j.started, j.finished = status, j.started or now, now
        j.result_preview, j.error, j.worker = result_preview, error, "w1"
        self.emit("jobs", [dataclasses.replace(j, code=None, output=None)])
        return j

    def set_output(self, job_id: int, output: str, status: str = "running") -> None:
        j = self.jobs[job_id]
        j.output, j.status, j.started = output, status, j.started or time.time()

    # ------------------------------------------------------------ the contract
    def subscribe(self, callback: Callable[[str, Any], None]) -> Callable[[], None]:
        self.subscribers.append(callback)
        return lambda: self.subscribers.remove(callback)

    def _new(self, name: str, code: str | None, kind: str = "expr", sage: bool = False,
             priority: int = 0, trusted_only: bool = False) -> int:
        jid = self.next_id
        self.next_id += 1
        info = JobInfo(id=jid, name=name, kind=kind, status="queued", owner=self.user, created=time.time(),
                       code=code, sage=sage, priority=priority, trusted_only=trusted_only)
        self.jobs[jid] = info
        self.emit("jobs", [dataclasses.replace(info, code=None)])
        return jid

    def submit_code(self, code: str, *, mode: str = "expr", sage: bool = False, name: str | None = None,
                    timeout: float | None = None, priority: int = 0, trusted_only: bool = False) -> Deferred:
        opts = dict(mode=mode, sage=sage, name=name, timeout=timeout, priority=priority, trusted_only=trusted_only)
        self.submitted.append(("code", code, opts))
        first = (code.strip().splitlines() or [""])[0][:60]
        return self._later(self._new(name or first, code, mode, sage, priority, trusted_only))

    def submit_file(self, path: str, *, name: str | None = None, timeout: float | None = None,
                    priority: int = 0, trusted_only: bool = False) -> Deferred:
        suffix = Path(path).suffix
        if suffix not in (".py", ".sage"):
            return self._fail_later(ValueError(f"{path}: only .py and .sage files can be submitted"))
        self.submitted.append(("file", path, dict(name=name, timeout=timeout, priority=priority,
                                                  trusted_only=trusted_only)))
        code = Path(path).read_text() if Path(path).is_file() else None
        return self._later(self._new(name or Path(path).name, code, "exec", suffix == ".sage", priority,
                                     trusted_only))

    def kill(self, job_id: int) -> Deferred:
        self.killed.append(job_id)
        return self._later(job_id in self.jobs and not self.jobs[job_id].done)

    def list_jobs(self, *, status: str | None = None, limit: int = 1000, after_id: int = 0,
                  newest_first: bool = False, **kw: Any) -> Deferred:
        rows = [dataclasses.replace(j, code=None, output=None) for j in self.jobs.values()
                if j.id > after_id and (status is None or j.status == status)]
        rows.sort(key=lambda j: j.id, reverse=newest_first)
        return self._later(rows[:limit])

    def get_job(self, job_id: int, with_result: bool = False) -> Deferred:
        self.get_job_calls += 1
        if job_id not in self.jobs:
            return self._fail_later(KeyError(job_id))
        return self._later(dataclasses.replace(self.jobs[job_id]))

    def get_record(self, job_id: int, with_result: bool = True) -> Deferred:
        if job_id not in self.jobs:
            return self._fail_later(KeyError(job_id))
        row = dataclasses.asdict(self.jobs[job_id])
        if with_result:
            row["result"] = self.results.get(job_id)
        return self._later(row)

    def workers(self) -> Deferred:
        return self._later([dict(w) for w in self.workers_list])

    def stats(self) -> Deferred:
        return self._later({"time": time.time(), "queued": sum(not j.done for j in self.jobs.values())})

    def close(self) -> Deferred:
        self.closed = True
        return self._later(None)
