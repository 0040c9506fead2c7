"""Jobs as arguments, on the server: which jobs wait for which inputs (see ``model/inputs.py``).

A job naming inputs (the ``inputs`` ext option) enters the scheduler only once every input
completed and its result bytes are in hand; until then it is ``waiting``. The edges live here, in
memory; they are durable through the job's ext options (``jobs.ext``), from which
:meth:`InputLinks.attach` rebuilds them after a restart. An input that ends in any other state
fails its dependents ("input job N failed"), and those theirs, iteratively (a chain of any length).
Cycles cannot happen: a job may only name jobs that exist, so every edge points to an older job.

A value that is not plain data (a cloudpickle, a Sage pickle) is unpickled by the dependent's child,
so, as for exceptions (``JobServer.may_pickle_for``), it goes to a worker only if a keyed worker of
the job's owner produced it; otherwise the dependent fails saying so. Plain values always go.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.logger import Logger

from dsage_core import codec
from dsage_core.model.inputs import VALUES_KEY
from dsage_core.model.job import TERMINAL
from dsage_core.model.status import JobStatus
from dsage_core.protocol.errors import BadRequest

if TYPE_CHECKING:
    from dsage_core.server.core import JobServer
    from dsage_core.server.jobs import ActiveJob

log = Logger(namespace="dsage.server.deps")

COMPLETED, FAILED, WAITING = JobStatus.COMPLETED.value, JobStatus.FAILED.value, JobStatus.WAITING.value


def input_ids(ext: dict[str, Any] | None) -> list[int]:
    """The ids a job's ext options name as its inputs (checked by ``model.inputs.check_inputs``)."""
    return ext.get("inputs") or [] if ext else []


class InputLinks:
    """The dependency edges of one :class:`~dsage_core.server.core.JobServer`; all on the reactor."""

    def __init__(self, server: "JobServer") -> None:
        self.server = server
        self.waiting: dict[int, set[int]] = {}        #: waiting job -> inputs it still waits for
        self.dependents: dict[int, list[int]] = {}    #: input -> waiting jobs that wait for it
        self.values: dict[int, dict[int, bytes]] = {}  #: job with inputs -> their result bytes
        self._ended: list["ActiveJob"] = []           #: inputs that ended, not handled yet
        self._reading: set[int] = set()               #: inputs whose result file is being read
        self._scheduled = False

    # ------------------------------------------------------------------ submit and restore
    @inlineCallbacks
    def lookup(self, owner: str, ext_maps: list[dict[str, Any] | None]) -> Any:
        """Check that every input the jobs name is a job of *owner* (else :class:`BadRequest`
        "unknown job N", another user's job included); fires with the stored outcomes of those no
        longer in memory. The caller must :meth:`attach` in the same reactor turn as this fires."""
        srv = self.server
        ids = {i for e in ext_maps for i in input_ids(e)}
        rows: dict[int, dict[str, Any]] = {}
        while True:  # a job in memory at one look may be committed and gone at the next
            missing = sorted(i for i in ids if i not in srv.jobs and i not in rows)
            if not missing:
                break
            srv._settle()
            got = yield srv.store.job_outcomes(missing)
            for i in missing:
                if i not in got:
                    raise BadRequest(f"unknown job {i}")
            rows.update(got)
        for i in ids:
            j = srv.jobs.get(i)
            if (j.owner if j is not None else rows[i]["owner"]) != owner:
                raise BadRequest(f"unknown job {i}")
        return rows

    def attach(self, jobs: list["ActiveJob"], rows: dict[int, dict[str, Any]]) -> list["ActiveJob"]:
        """Link jobs (already in the server's table) to their inputs; returns those whose inputs all
        completed (to schedule now). The others are ``waiting``, or failed by a failed input."""
        srv = self.server
        ready, failed = [], []
        for j in jobs:
            vals: dict[int, bytes] = {}
            self.values[j.id] = vals
            pending: set[int] = set()
            why = None
            for i in input_ids(j.ext):
                src = srv.jobs.get(i)
                if src is not None and src.status not in TERMINAL:
                    pending.add(i)
                    continue
                status, result, rfile, untrusted = (
                    (src.status, src.result, src.result_file, src.result_untrusted) if src is not None
                    else (rows[i]["status"], rows[i].get("result"), None, bool(rows[i].get("result_untrusted"))))
                if status != COMPLETED:
                    why = _failed(i, status, src.error if src is not None else rows[i].get("error"))
                    break
                if result is not None:
                    why = foreign_pickle(i, result, untrusted)
                    if why is not None:
                        break
                    vals[i] = result
                elif rfile is not None:
                    pending.add(i)
                    self._read_file(i, rfile, untrusted)
                else:
                    why = f"input job {i}'s result cannot be read: {(rows.get(i) or {}).get('error') or 'missing'}"
                    break
            if why is not None:
                failed.append((j, why))
            elif pending:
                j.status = WAITING
                self.waiting[j.id] = pending
                for i in pending:
                    self.dependents.setdefault(i, []).append(j.id)
            else:
                ready.append(j)
        for j, why in failed:
            self._fail(j, why)
        return ready

    @inlineCallbacks
    def restore(self, jobs: list["ActiveJob"]) -> Any:
        """After a restart: link restored jobs that name inputs (their edges come from ext); fires
        with those to schedule now."""
        srv = self.server
        missing = sorted({i for j in jobs for i in input_ids(j.ext) if i not in srv.jobs})
        rows = (yield srv.store.job_outcomes(missing)) if missing else {}
        linkable = []
        for j in jobs:
            gone = [i for i in input_ids(j.ext) if i not in srv.jobs and i not in rows]
            if gone:  # only if the store was edited by hand: fail, never wait forever
                self.values[j.id] = {}
                self._fail(j, f"input job {gone[0]} no longer exists")
            else:
                linkable.append(j)
        return self.attach(linkable, rows)

    # ------------------------------------------------------------------ inputs ending
    def ended(self, job: "ActiveJob") -> None:
        """A job reached its terminal state (``_finalize``): its dependents may go on or fail."""
        self.values.pop(job.id, None)
        for i in self.waiting.pop(job.id, ()):  # a waiting job that ended (killed) waits no more
            deps = self.dependents.get(i)
            if deps is not None and job.id in deps:
                deps.remove(job.id)
                if not deps:
                    del self.dependents[i]
        if job.id in self.dependents:
            self._ended.append(job)
            if not self._scheduled:
                self._scheduled = True
                self.server.clock.callLater(0, self.resolve)

    def resolve(self) -> None:
        """Hand the inputs that ended to their dependents (the server calls it at the end of a
        report too, so a dependent starts in the turn its input's result arrived)."""
        ready: list["ActiveJob"] = []
        while self._ended:
            src = self._ended.pop()
            deps = self.dependents.pop(src.id, [])
            if src.status != COMPLETED:
                why = _failed(src.id, src.status, src.error)
                for d in deps:
                    self._fail_id(d, why)
            elif src.result is not None:
                for d in deps:
                    self._got(d, src.id, src.result, ready, src.result_untrusted)
            elif src.result_file is not None:
                self.dependents[src.id] = deps
                self._read_file(src.id, src.result_file, src.result_untrusted)
            else:
                for d in deps:
                    self._fail_id(d, f"input job {src.id}'s result is missing")
        self._scheduled = False
        if ready:
            self.server.release(ready)

    def _read_file(self, input_id: int, rel: str, untrusted: bool) -> None:
        """Read a large input result from its file, off the reactor, then hand it on."""
        if input_id in self._reading:
            return
        self._reading.add(input_id)
        d: Deferred = self.server.read_result_file_later(rel)
        d.addCallback(self._file_read, input_id, untrusted)
        d.addErrback(lambda f: self._file_read({"missing": f.getErrorMessage()}, input_id, untrusted))

    def _file_read(self, data: Any, input_id: int, untrusted: bool) -> None:
        self._reading.discard(input_id)
        ready: list["ActiveJob"] = []
        for d in self.dependents.pop(input_id, []):
            if isinstance(data, bytes):
                self._got(d, input_id, data, ready, untrusted)
            else:
                self._fail_id(d, f"input job {input_id}'s result cannot be read: {data.get('missing')}")
        if ready:
            self.server.release(ready)

    def _got(self, job_id: int, input_id: int, data: bytes, ready: list["ActiveJob"], untrusted: bool) -> None:
        job = self.server.jobs.get(job_id)
        pending = self.waiting.get(job_id)
        if job is None or job.status != WAITING or pending is None:
            return
        why = foreign_pickle(input_id, data, untrusted)
        if why is not None:
            self._fail(job, why)
            return
        self.values[job_id][input_id] = data
        pending.discard(input_id)
        if not pending:
            del self.waiting[job_id]
            ready.append(job)

    def _fail_id(self, job_id: int, why: str) -> None:
        job = self.server.jobs.get(job_id)
        if job is not None and job.status == WAITING:
            self._fail(job, why)

    def _fail(self, job: "ActiveJob", why: str) -> None:
        job.error = why
        self.server._finalize(job, FAILED)   # calls ended(job): its own dependents follow

    # ------------------------------------------------------------------ dispatch
    def worker_view(self, job_id: int, view: dict[str, Any] | None) -> dict[str, Any] | None:
        """The run entry's extra field with the job's input values added (None: it has none)."""
        vals = self.values.get(job_id)
        if not vals:
            return view
        return dict(view or {}, **{VALUES_KEY: [[i, b] for i, b in vals.items()]})

    def input_bytes(self, job_id: int) -> int:
        """Bytes of the input values a job carries to its worker."""
        return sum(len(b) for b in self.values.get(job_id, {}).values())

    def reason(self, job_id: int) -> str | None:
        """Why a waiting job waits: ``waiting for jobs 3, 4``."""
        pending = self.waiting.get(job_id)
        if not pending:
            return None
        ids = sorted(pending)
        more = f" and {len(ids) - 10} more" if len(ids) > 10 else ""
        return f"waiting for job{'s' if len(ids) > 1 else ''} {', '.join(map(str, ids[:10]))}{more}"


def foreign_pickle(input_id: int, data: bytes, untrusted: bool) -> str | None:
    """Why input *input_id*'s value may not reach the dependent's worker, or None: it is not plain
    data and a worker that may not pickle for the job's owner made it (another user's, anonymous)."""
    if not untrusted or codec.is_plain(data):
        return None
    return (f"input job {input_id}'s value {FOREIGN_PICKLE} (another user's or an anonymous worker ran "
            "it), and such values are never unpickled on this job's worker: make that job return plain "
            "data (numbers, strings, lists, dicts...) or run it on your own workers")


#: what a dependent's error says when an input's value is refused (see :func:`foreign_pickle`)
FOREIGN_PICKLE = "is not plain data and was not produced by your own worker"


def _failed(input_id: int, status: str, error: str | None = None) -> str:
    """``input job 3 failed: ValueError: no``: the input's last error line says why (bounded)."""
    why = f"input job {input_id} failed" + ("" if status == FAILED else f" (it ended {status})")
    last = (error or "").strip().rsplit("\n", 1)[-1].strip()
    return f"{why}: {last[:MAX_CAUSE]}" if last else why


#: characters of an input's last error line quoted in its dependents' errors
MAX_CAUSE = 300
