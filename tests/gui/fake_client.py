"""An in-process fake of the AsyncClient contract: Deferreds fired on the next reactor turn."""
from __future__ import annotations

import time
from typing import Any, Callable

from twisted.internet.defer import Deferred

from dsage_core.model.job import JobInfo


class FakeClient:
    server_label = "fake:0"
    user = "tester"

    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor
        self.subscribers: list[Callable[[str, Any], None]] = []
        self.submitted: list[tuple[str, Any, dict[str, Any]]] = []
        self.jobs: dict[int, JobInfo] = {}
        self.killed: list[int] = []
        self.next_id = 1

    def _later(self, value: Any) -> Deferred:
        d: Deferred = Deferred()
        self.reactor.callLater(0, d.callback, value)
        return d

    def subscribe(self, cb: Callable[[str, Any], None]) -> Callable[[], None]:
        self.subscribers.append(cb)
        return lambda: self.subscribers.remove(cb)

    def emit(self, kind: str, payload: Any) -> None:
        for cb in list(self.subscribers):
            cb(kind, payload)

    def _new(self, name: str, code: str | None) -> int:
        jid = self.next_id
        self.next_id += 1
        info = JobInfo(id=jid, name=name, status="queued", created=time.time(), code=code)
        self.jobs[jid] = info
        self.emit("jobs", [info])
        return jid

    def submit_code(self, code: str, **opts: Any) -> Deferred:
        self.submitted.append(("code", code, opts))
        return self._later(self._new(opts.get("name") or code.strip().splitlines()[0][:60], code))

    def submit_file(self, path: str, **opts: Any) -> Deferred:
        self.submitted.append(("file", path, opts))
        return self._later(self._new(path.rsplit("/", 1)[-1], None))

    def kill(self, job_id: int) -> Deferred:
        self.killed.append(job_id)
        return self._later(True)

    def list_jobs(self, **kw: Any) -> Deferred:
        return self._later(list(self.jobs.values()))

    def get_job(self, job_id: int, with_result: bool = False) -> Deferred:
        return self._later(self.jobs[job_id])

    def workers(self) -> Deferred:
        return self._later([{"id": "w1", "host": "h", "slots": 2, "busy": 1, "cpus": 2, "memory": 2**33,
                             "anonymous": False, "user": "tester", "last_heartbeat": time.time(),
                             "jobs_done": 3}])

    def stats(self) -> Deferred:
        return self._later({})

    def close(self) -> Deferred:
        return self._later(None)
