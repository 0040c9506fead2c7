"""The job server's logic, free of any transport: what happens on submit, dispatch, report, kill.

``JobServer`` owns the in-memory view of unfinished jobs, the pure :class:`Scheduler`, and the
:class:`SqliteStore`. The Foolscap adapters in :mod:`dsage_core.server.remote` call it; it talks back
to peers only through the small ``WorkerLink`` / ``ClientLink`` objects they hand it.

Durability rule: a submit is acknowledged only after its INSERT committed; a result is announced to
clients only after its UPDATE committed. Dispatch does not wait for result commits.
"""
from __future__ import annotations

import os
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from twisted.internet.defer import Deferred, inlineCallbacks, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from dsage_core import codec, latency, local_results, textsafe
from dsage_core.limits import Limits
from dsage_core.model.job import HELD, TERMINAL
from dsage_core.result_files import ResultFileError, ResultsDir
from dsage_core.protocol.errors import BadRequest, NotFound, QuotaExceeded, ServerUnavailable, UnknownBlob
from dsage_core.scheduler import Scheduler, SchedJob, events as ev, actions as act
from dsage_core.model import exc_info
from dsage_core.model.ext import decode as ext_decode, encode as ext_encode, worker_view
from dsage_core.server.blobs import BlobTable
from dsage_core.model.resources import request_of
from dsage_core.server.deps import InputLinks, input_ids
from dsage_core.server.jobs import ActiveJob, parse_submission
from dsage_core.server import replicas as rep
from dsage_core.server.replica_core import ReplicaServer
from dsage_core.store import NewJob, RunningJob, FinishedJob, StoreError, StoreUnavailable

log = Logger(namespace="dsage.server")


class WorkerLink(Protocol):
    """How the server reaches one worker (a Foolscap reference, or a fake in tests)."""

    def run(self, batch: dict[str, Any]) -> Deferred: ...
    def kill(self, items: list[list[int]]) -> Deferred: ...
    def disconnect(self) -> None: ...


class ClientLink(Protocol):
    """How the server pushes to one client session."""

    def jobs_changed(self, updates: list[list[Any]]) -> Deferred: ...
    def stats(self, counters: dict[str, Any]) -> Deferred: ...
    def workers_changed(self, workers: list[dict[str, Any]]) -> Deferred: ...


@dataclass
class Worker:
    """A connected worker as the server sees it."""

    id: str
    link: Any
    user: str
    anonymous: bool
    info: dict[str, Any]
    slots: int
    joined: float
    last_heartbeat: float
    jobs_done: int = 0
    busy: int = 0
    paused: bool = False
    sent_blobs: set[str] = field(default_factory=set)
    dispatcher: Any = None
    local: bool = False   #: shares the server's home: writes large results as files there

    @property
    def capabilities(self) -> frozenset[str]:
        """What the worker said it can run (its inventory's ``capabilities`` list, e.g. sage)."""
        return capabilities_of(self.info)

    def describe(self) -> dict[str, Any]:
        i = self.info
        return {"id": self.id, "host": i.get("host", "?"), "slots": self.slots, "busy": self.busy,
                "cpus": i.get("cpus"), "memory": i.get("memory"), "gpus": i.get("gpus"), "os": i.get("os"),
                "python": i.get("python"), "anonymous": self.anonymous, "user": self.user,
                "last_heartbeat": self.last_heartbeat, "jobs_done": self.jobs_done,
                "sage": "sage" in self.capabilities, "paused": self.paused, "pid": i.get("pid"),
                "address": i.get("address", "")}


def capabilities_of(info: dict[str, Any]) -> frozenset[str]:
    """The capability names a worker's inventory lists (anything malformed counts as none)."""
    caps = info.get("capabilities")
    if not isinstance(caps, list):
        return frozenset()
    return frozenset(c for c in caps[:16] if isinstance(c, str) and 0 < len(c) < 32)


class RateMeter:
    """Completions per second over a sliding window, in per-second buckets (cost independent of jobs)."""

    def __init__(self, window: int = 60) -> None:
        self.window = window
        self.buckets: deque[list[float]] = deque()

    def add(self, now: float, n: int = 1) -> None:
        sec = float(int(now))
        if self.buckets and self.buckets[-1][0] == sec:
            self.buckets[-1][1] += n
        else:
            self.buckets.append([sec, n])
        self._trim(now)

    def _trim(self, now: float) -> None:
        while self.buckets and self.buckets[0][0] <= now - self.window:
            self.buckets.popleft()

    def rate(self, now: float) -> float:
        self._trim(now)
        return sum(b[1] for b in self.buckets) / self.window


class JobServer(ReplicaServer):
    """Transport-free server logic. All methods run on the reactor thread (replicated jobs:
    :class:`~dsage_core.server.replica_core.ReplicaServer`)."""

    def __init__(self, store: Any, clock: Any, *, limits: Limits | None = None,
                 scheduler: Scheduler | None = None, server_id: str = "",
                 make_dispatcher: Callable[[Worker], Any] | None = None) -> None:
        self.store = store
        self.clock = clock
        self.limits = limits or Limits()
        self.scheduler = scheduler or Scheduler()
        self.server_id = server_id
        self.jobs: dict[int, ActiveJob] = {}
        self.next_id = 1
        self.workers: dict[str, Worker] = {}
        self.clients: set[Any] = set()
        self.owner_watchers: dict[str, set[Any]] = {}   #: sessions that follow all of a user's jobs
        self.heartbeat_interval = max(0.5, self.scheduler.lease_timeout / 4)
        self.watchers: dict[int, set[Any]] = {}
        self.blob_table = BlobTable(self.limits)   #: who holds which function blob (quota, refs)
        self.blobs: dict[str, bytes] = self.blob_table.data
        self.counts: dict[str, int] = {s: 0 for s in TERMINAL}
        #: results and hand-backs that did not count since start (a stale attempt: from a worker
        #: whose lease expired, a duplicate after a reconnect, a killed job's late result)
        self.discarded = 0
        self.queued_by_owner: dict[str, int] = {}
        self.rate = RateMeter()
        self._worker_seq = 0
        self._workers_dirty = True
        self._make_dispatcher = make_dispatcher
        self._running_rows: list[RunningJob] = []
        self._new_rows: list[NewJob] = []
        self._finished_rows: list[tuple[FinishedJob, ActiveJob]] = []
        self._flush_scheduled = False
        self._flush_waiters: list[Deferred] = []   #: submits acknowledged at the next commit
        self._commit_timer: Any = None              #: the held commit's deadline (see COMMIT_DELAY)
        self._store_writes: set[Deferred] = set()
        self.home: Any = None            #: the server's home (set by the service)
        self.listen: str | None = None   #: the interface it listens on (set by the service)
        #: runs result-file reads off the reactor (a Runner, see store/runner.py; set by the
        #: service); None: read inline (unit tests)
        self.file_reader: Any = None
        self.local_token: str | None = None  #: see dsage_core.local_results
        self._results: ResultsDir | None = None   #: results/ of the home, for the file reader
        #: the furl of every server of a shared (PostgreSQL) database, told to peers so they follow
        #: a takeover (None: a server of its own)
        self.furl: str | None = None
        #: set when the server itself stops: the workers it drops are not to blame for the jobs
        #: they held, which stay "running" in the store until the next start requeues them
        self.closing = False
        #: copies of each job that may run on anonymous workers and does not ask for its own
        #: number (``dsage server --anonymous-replicas``)
        self.anonymous_replicas = 1
        #: jobs with packages= may go to anonymous workers (``dsage server --anonymous-packages``)
        self.anonymous_packages = False
        self.deps = InputLinks(self)   #: jobs as arguments: who waits for whom (server/deps.py)
        #: the server owner's user name (set by the service): a local worker (one that shares the
        #: home, so holds the owner's key anyway) counts as the owner's own for exception pickles
        self.owner_user: str | None = None

    # ------------------------------------------------------------------ start-up
    @inlineCallbacks
    def restore(self) -> Any:
        """Load unfinished jobs after a (re)start; jobs that were running go back to the queue."""
        snap = yield self.store.open()
        self.next_id = snap.max_job_id + 1
        counts = yield self.store.count_by_status(None)
        for s in TERMINAL:
            self.counts[s] = counts.get(s, 0)
        sched_jobs, requeue, linked = [], [], []
        for row in snap.active:
            job = ActiveJob(id=row["id"], owner=row["owner"], name=row["name"] or "", kind=row["kind"],
                            priority=row["priority"] or 0, trusted_only=bool(row["trusted_only"]),
                            needs=frozenset(row["needs"]), payload=row["payload"], blob_id=row["blob_id"],
                            timeout=row["timeout"], limits=_unpack_limits(row["limits"]),
                            created=row["created"], attempt=row["attempts"] or 0,
                            failures=row["failures"] or 0, ext=ext_decode(row["ext"]))
            if job.ext and job.ext.get("retries"):
                # runs that were neither worker deaths nor the current one count as retries used
                # (a hand-back at a worker's shutdown too: never more than `retries` extra runs)
                job.retried = max(0, job.attempt - job.failures - (row["status"] == "running"))
            if row["status"] == "running":
                requeue.append((job.id, job.failures))
            self.jobs[job.id] = job
            self._count_queued(job.owner, +1)
            if input_ids(job.ext):
                linked.append(job)
            else:
                sched_jobs.append(self._sched(job))
            if job.blob_id:
                if not self.blob_table.has(job.owner, job.blob_id):
                    data = yield self.store.get_blob(job.blob_id)
                    if data is not None:
                        self.blob_table.adopt(job.owner, job.blob_id, data)
                job.blob_held = self.blob_table.acquire(job.owner, job.blob_id)
        try:
            dropped = yield self.store.drop_unused_blobs()   # uploads no unfinished job needs
        except StoreError as e:   # e.g. a read-only database: they stay, harmless
            log.warn("dsage.server.unused_blobs_kept", error=str(e))
        else:
            if dropped:
                log.info("dsage.server.unused_blobs_removed", count=dropped)
        if requeue:
            yield self.store.requeue_jobs(requeue)
        if linked:  # jobs with inputs: waiting again, or ready (their inputs completed)
            ready = yield self.deps.restore(linked)
            sched_jobs += [self._sched(j) for j in ready]
        yield self._restore_replicas(sched_jobs)
        self._apply(self.scheduler.handle(ev.JobsSubmitted(sched_jobs)))
        log.info("dsage.server.restored", jobs=len(sched_jobs), requeued=len(requeue))
        return len(sched_jobs)

    # ------------------------------------------------------------------ clients
    @inlineCallbacks
    def submit(self, owner: str, raw_jobs: list[Any], watcher: Any = None) -> Any:
        """Store new jobs durably, queue them, and return their ids (after the commit)."""
        if len(raw_jobs) > self.limits.max_batch_jobs:
            raise BadRequest(f"too many jobs in one call: {len(raw_jobs)} > {self.limits.max_batch_jobs}")
        specs = [parse_submission(r, self.limits) for r in raw_jobs]
        if not self.anonymous_packages:
            for s in specs:   # an anonymous worker is nobody's to install packages on
                if s["ext"] and "packages" in s["ext"]:
                    s["trusted_only"] = True
        uses: dict[str, int] = {}
        for s in specs:
            b = s["blob_id"]
            if b:
                uses[b] = uses.get(b, 0) + 1
        for b in uses:
            if not self.blob_table.has(owner, b):
                raise UnknownBlob(f"unknown function blob {b[:80]}: upload it first (a blob is "
                                  f"freed once no unfinished job of yours needs it)")
        outcomes = None
        if any(s["ext"] and "inputs" in s["ext"] for s in specs):  # jobs as arguments
            outcomes = yield self.deps.lookup(owner, [s["ext"] for s in specs])
        queued = self.queued_by_owner.get(owner, 0)
        if queued + len(specs) > self.limits.max_queued_per_user:
            raise QuotaExceeded(f"queued-jobs quota reached: {queued} queued, limit "
                                f"{self.limits.max_queued_per_user}; wait for some to finish")
        now = self.clock.seconds()
        first = self.next_id
        self.next_id += len(specs)
        jobs = [ActiveJob(id=first + i, owner=owner, created=now, blob_held=s["blob_id"] is not None, **s)
                for i, s in enumerate(specs)]
        for b, n in uses.items():   # one reference per job: the blob stays while any is unfinished
            self.blob_table.acquire(owner, b, n)
        if self.anonymous_replicas > 1 or any(s["ext"] for s in specs):
            for j in jobs:
                if request_of(j.ext) is None:   # a sized job runs once (checked in _check_combinations)
                    j.ext = rep.with_replicas(j.ext, rep.replicas_wanted(j.ext, j.trusted_only,
                                                                         self.anonymous_replicas))
        rows = [NewJob(j.id, owner, j.name, j.kind, j.priority, j.trusted_only, ",".join(sorted(j.needs)),
                       j.payload, j.blob_id, j.timeout, _pack_limits(j.limits), j.code, now, ext_encode(j.ext)) for j in jobs]
        # Dispatch while the INSERT commits (the submit is still acknowledged only after the
        # commit): it takes the store round trip out of every job's latency. If the commit fails,
        # the jobs are withdrawn; a result of theirs finds no job and is discarded.
        optimistic = self.store.writable
        if optimistic:
            self._new_rows.extend(rows)
            # the INSERT rides in the same transaction
            inserted = self._accept(owner, jobs, watcher, outcomes)
        else:
            inserted = self.store.insert_jobs(rows)
        try:
            yield inserted
        except StoreUnavailable as e:
            if optimistic:
                self._withdraw(jobs)   # their end releases their blob references
            else:
                self._release_blobs(jobs)
            raise ServerUnavailable(f"the server refuses new work: {e}") from None
        except BaseException:
            if not optimistic:   # never taken in: their blob references go with them
                self._release_blobs(jobs)
            raise
        if not optimistic:
            self._accept(owner, jobs, watcher, outcomes).addErrback(_log_failure)  # the INSERT is stored
        return [j.id for j in jobs]

    def _sched(self, job: ActiveJob) -> SchedJob:
        return _sched_job(job, self._replicas_of(job) if job.ext else 1)

    def _accept(self, owner: str, jobs: list[ActiveJob], watcher: Any,
                rows: dict[int, Any] | None = None) -> Deferred:
        """Take jobs into memory and the scheduler, dispatch, and write everything pending in one
        transaction; returns that transaction's Deferred. *rows*: the stored outcomes of their
        inputs (from ``deps.lookup``), when some name inputs."""
        for j in jobs:
            self.jobs[j.id] = j
            if watcher is not None:
                self.watchers.setdefault(j.id, set()).add(watcher)
        self._count_queued(owner, len(jobs))
        to_schedule = jobs
        if rows is not None:
            linked = [j for j in jobs if input_ids(j.ext)]
            ready = {j.id for j in self.deps.attach(linked, rows)}
            to_schedule = [j for j in jobs if not input_ids(j.ext) or j.id in ready]
        self._apply(self.scheduler.handle(ev.JobsSubmitted([self._sched(j) for j in to_schedule])))
        if self.owner_watchers.get(owner):
            # sessions that follow all of the owner's jobs (the desktop app) see them from submit
            # on; dispatched ones were pushed by _dispatch already
            waiting = [j for j in jobs if j.status in ("queued", "waiting")]
            if waiting:
                self._notify(waiting)
        elif rows is not None:  # jobs with inputs: the client guessed waiting or queued; tell it
            shown = [j for j in jobs if j.status in ("queued", "waiting") and input_ids(j.ext)]
            if shown:
                self._notify(shown)
        if COMMIT_DELAY > 0 and all(j.status in HELD for j in jobs):
            return self._flush_soon(COMMIT_DELAY)
        return self._flush(want_result=True)

    def _withdraw(self, jobs: list[ActiveJob]) -> None:
        ids = [j.id for j in jobs]
        for j in jobs:
            j.kill_requested = True
            self.watchers.pop(j.id, None)
            if j.status == "waiting":
                j.error = "withdrawn: its submit was not stored"
                self._finalize(j, "killed")
        self._apply(self.scheduler.handle(ev.KillRequested(ids)))

    def release(self, jobs: list[ActiveJob]) -> None:
        """Waiting jobs whose inputs all completed go to the scheduler (see server/deps.py)."""
        limit = self.limits.max_payload + self.limits.max_result
        go = []
        for j in jobs:
            size = self.deps.input_bytes(j.id)
            if size > limit:
                j.error = (f"the inputs of this job are {size} bytes, over the limit of {limit} bytes "
                           "(max_payload + max_result)")
                self._finalize(j, "failed")
            else:
                j.status = "queued"
                go.append(j)
        self._apply(self.scheduler.handle(ev.JobsSubmitted([self._sched(j) for j in go])))
        self._notify([j for j in go if j.status == "queued"])
        self._schedule_flush()

    def put_blob(self, owner: str, blob_id: str, data: bytes) -> Deferred:
        """Keep a function blob (opaque bytes) of *owner* in memory and in the store, within the
        user's blob quota (:class:`QuotaExceeded` otherwise; see server/blobs.py)."""
        if len(data) > self.limits.max_blob:
            raise BadRequest(f"function too large: {len(data)} bytes > limit {self.limits.max_blob}")
        new, freed = self.blob_table.put(owner, blob_id, data, self.clock.seconds())
        self._delete_blobs(freed)
        if not new:
            return succeed(None)
        return self.store.put_blob(blob_id, data, owner)

    def has_blobs(self, owner: str, blob_ids: list[str]) -> list[bool]:
        """Which of the blobs *owner* holds (another user's blob is unknown to them)."""
        return [self.blob_table.has(owner, b) for b in blob_ids]

    def uploads_ended(self, owner: str, blob_ids: set[str]) -> None:
        """The connection that uploaded *blob_ids* ended: drop the ones no job used."""
        self._delete_blobs(self.blob_table.connection_ended(owner, blob_ids))

    def _release_blobs(self, jobs: list[ActiveJob]) -> None:
        for j in jobs:
            self._release_blob(j)

    def _release_blob(self, job: ActiveJob) -> None:
        if job.blob_held:
            job.blob_held = False
            self.blob_table.release(job.owner, job.blob_id, self.clock.seconds())

    def _delete_blobs(self, freed: list[str]) -> None:
        if freed:
            self._store_call(self.store.delete_blobs(freed))

    def _visible(self, owner: str, admin: bool, job_owner: str | None) -> bool:
        return admin or job_owner == owner

    @inlineCallbacks
    def watch(self, owner: str, admin: bool, job_ids: list[int], watcher: Any) -> Any:
        """Subscribe *watcher* to jobs; answer their current state (unknown / foreign ids are skipped)."""
        out = []
        for jid in job_ids:
            job = self.jobs.get(jid)
            if job is not None:
                if self._visible(owner, admin, job.owner):
                    self.watchers.setdefault(jid, set()).add(watcher)
                    out.append(_viewed(job.update(), job.owner, owner))
                continue
            self._settle()
            row = yield self.store.get_job(jid)
            if row is not None and self._visible(owner, admin, row["owner"]):
                out.append(_viewed(_row_update(row), row["owner"], owner))
        return out

    @inlineCallbacks
    def get_job(self, owner: str, admin: bool, job_id: int, with_result: bool) -> Any:
        """The full record of one job; another user's job is reported as unknown."""
        job = self.jobs.get(job_id)
        if job is not None and job.status not in TERMINAL:
            if not self._visible(owner, admin, job.owner):
                raise NotFound(f"no such job: {job_id}")
            d = _job_record(job)
            d["waiting_reason"] = self.deps.reason(job_id) or self.scheduler.waiting_reason(job_id)
            return d
        self._settle()
        row = yield self.store.get_job(job_id)
        if row is None and job is not None:  # finishing: terminal, commit pending
            row = _job_record(job)
            if job.result_file is not None and with_result:
                data = yield self.read_result_file_later(job.result_file)
                row["result"] = data if isinstance(data, bytes) else None
        if row is None or not self._visible(owner, admin, row["owner"]):
            raise NotFound(f"no such job: {job_id}")
        row = dict(row)
        row.pop("payload", None)
        row.pop("result_missing", None)
        row["needs"] = sorted(row.get("needs") or ())
        if "ext" in row:
            row["extra"] = rep.extra_of(row["ext"]) or {}
        if not isinstance(row.get("exc"), (dict, type(None))):
            row["exc"] = _unpack_exc(row["exc"])
        row["exc"] = exc_info.for_viewer(row.get("exc"), row["owner"], owner)
        if not with_result:
            row.pop("result", None)
        return row

    @inlineCallbacks
    def get_output(self, owner: str, admin: bool, job_id: int) -> Any:
        job = self.jobs.get(job_id)
        if job is not None:
            if not self._visible(owner, admin, job.owner):
                raise NotFound(f"no such job: {job_id}")
            return job.output_text()
        self._settle()
        row = yield self.store.get_job(job_id)
        if row is None or not self._visible(owner, admin, row["owner"]):
            raise NotFound(f"no such job: {job_id}")
        return row["output"] or ""

    def list_jobs(self, owner: str, admin: bool, query: dict[str, Any]) -> Deferred:
        limit, after_id = query.get("limit") or 1000, query.get("after_id") or 0
        status, text = query.get("status"), query.get("text")
        if type(limit) is not int or type(after_id) is not int or abs(after_id) > 2**62:
            raise BadRequest("query: limit and after_id must be integers")
        if status is not None and (not isinstance(status, str) or len(status) > 20):
            raise BadRequest("query: status must be a status name")
        if text is not None and (not isinstance(text, str) or len(text) > 200):
            raise BadRequest("query: text must be at most 200 characters")
        limit = max(0, min(limit, self.limits.max_list))   # a negative LIMIT means "all" to SQLite
        who = None if (admin and query.get("all")) else owner
        self._settle()
        # the store knows one state for every job a worker holds ('running'); memory knows which
        stored = "running" if status in HELD else "queued" if status == "waiting" else status
        d = self.store.list_jobs(owner=who, status=stored, text=text,
                                 after_id=after_id, limit=limit,
                                 newest_first=bool(query.get("newest_first")))
        d.addCallback(self._live_rows)
        if status in HELD or status in ("queued", "waiting"):
            d.addCallback(lambda rows: [r for r in rows if r["status"] == status])
        return d

    def _live_rows(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Stored rows, with the in-memory state of jobs still running (progress, status)."""
        for row in rows:
            row["needs"] = sorted(row.get("needs") or ())
            extra = rep.extra_of(row.pop("ext", None))
            if extra:
                row["extra"] = extra
            job = self.jobs.get(row["id"])
            if job is not None:
                row.update(status=job.status, worker=job.worker, progress=job.progress,
                           progress_message=job.progress_message, attempts=job.attempt)
                if job.replicas is not None:
                    row["extra"] = {"replicas": job.replicas.text()}
        return rows

    def kill(self, owner: str, admin: bool, job_ids: list[int], address: str = "",
             unstarted_only: bool = False) -> list[bool]:
        """Kill queued or running jobs the caller owns; False for unknown, foreign or finished ones.
        *unstarted_only* (an Executor's cancel): the worker spares a job it already runs."""
        ok, targets, waiting = [], [], []
        for jid in job_ids:
            job = self.jobs.get(jid)
            if job is None or job.status in TERMINAL or not self._visible(owner, admin, job.owner):
                ok.append(False)
                continue
            job.kill_requested = True
            job.cancel_only = unstarted_only and not job.kill_requested_hard
            job.kill_requested_hard = job.kill_requested_hard or not unstarted_only
            (waiting if job.status == "waiting" else targets).append(jid)
            ok.append(True)
        for jid in waiting:  # not in the scheduler yet (see server/deps.py)
            job = self.jobs[jid]
            job.error = "killed by its owner"
            self._finalize(job, "killed")
        targets += waiting  # for the audit line; the scheduler ignores ids it does not hold
        if targets:
            self.store.audit("kill", owner, address, ",".join(map(str, targets))).addErrback(_log_failure)
            self._apply(self.scheduler.handle(ev.KillRequested(targets)))
        return ok

    def stats(self) -> dict[str, Any]:
        """Counters by status, throughput over the last minute, slots (cost independent of job count)."""
        now = self.clock.seconds()
        s = self.scheduler
        d: dict[str, Any] = dict(self.counts)
        held = self._held_counts()
        d.update(time=now, queued=s.queued_count, waiting=len(self.deps.waiting), rate_1m=self.rate.rate(now),
                 busy_slots=s.slots_busy, held=s.running_count, discarded=self.discarded, **held,
                 total_slots=sum(w.slots for w in self.workers.values()), workers=len(self.workers))
        return d

    def _held_counts(self) -> dict[str, int]:
        """Jobs workers hold, by state: running (started in a child), assigned (prefetched), paused
        (on a paused worker). O(held jobs), which the prefetch policy bounds per slot."""
        counts = dict.fromkeys(("assigned", "running", "paused"), 0)
        jobs = self.jobs
        for w in self.scheduler.workers.values():
            for jid in w.held:
                job = jobs.get(jid)
                if job is not None and job.status in counts:
                    counts[job.status] += 1
        return counts

    def describe_workers(self) -> list[dict[str, Any]]:
        out = []
        for w in self.workers.values():
            d = w.describe()
            # busy slots from what the scheduler knows now, not from the last heartbeat
            d["busy"] = min(w.slots, len(self.scheduler.held_by(w.id))) if w.id in self.scheduler.workers else 0
            out.append(d)
        return out

    def watch_owner(self, owner: str, watcher: Any, enable: bool) -> None:
        """Push updates of every job of *owner* (the desktop app follows jobs submitted anywhere)."""
        ws = self.owner_watchers.setdefault(owner, set())
        if enable:
            ws.add(watcher)
        else:
            ws.discard(watcher)
        if not ws:
            del self.owner_watchers[owner]

    def forget_watcher(self, watcher: Any) -> None:
        """A client went away: stop pushing to it."""
        for owner in list(self.owner_watchers):
            self.watch_owner(owner, watcher, False)
        for jid in [j for j, ws in self.watchers.items() if watcher in ws]:
            ws = self.watchers[jid]
            ws.discard(watcher)
            if not ws:
                del self.watchers[jid]

    # ------------------------------------------------------------------ workers
    def worker_joined(self, link: Any, info: dict[str, Any], user: str, anonymous: bool) -> Worker:
        """A worker registered: give it an id and work."""
        info = clean_worker_info(info)   # raises BadRequest: nothing registered
        self._worker_seq += 1
        now = self.clock.seconds()
        host = info["host"] or "worker"
        wid = f"{host}-{info['pid']}-{self._worker_seq}"
        slots = info["slots"]
        caps = capabilities_of(info)
        w = Worker(wid, link, user, anonymous, info, slots, now, now)
        w.local = self.is_local(info.get("local_token")) and not anonymous
        if self._make_dispatcher is not None:
            w.dispatcher = self._make_dispatcher(w)
        self.workers[wid] = w
        self._workers_dirty = True
        log.info("dsage.server.worker_joined", worker=wid, slots=slots, anonymous=anonymous, user=user)
        self._apply(self.scheduler.handle(ev.WorkerJoined(wid, slots, anonymous, caps, now,
                                                          memory=info["memory"] or 0, gpus=info["gpus"],
                                                          user=user)))
        return w

    def is_local(self, proof: Any) -> bool:
        """True if *proof* was made from this run's local token: the peer read the server's results
        dir (the token itself never leaves the machine; see local_results.proof)."""
        import hmac
        return (self.local_token is not None and isinstance(proof, str)
                and hmac.compare_digest(proof, local_results.proof(self.local_token, self.server_id)))

    def worker_left(self, worker_id: str, reason: str) -> None:
        if worker_id not in self.workers:
            return
        if not self.closing:  # our own shutdown cut the link: no failure, restore() requeues its jobs
            log.info("dsage.server.worker_left", worker=worker_id, reason=reason)
            self._apply(self.scheduler.handle(ev.WorkerLeft(worker_id, reason)))
        self.workers.pop(worker_id, None)
        self._workers_dirty = True

    def heartbeat(self, worker_id: str, state: dict[str, Any]) -> None:
        w = self.workers.get(worker_id)
        if w is None:
            return
        now = self.clock.seconds()
        w.last_heartbeat = now
        busy = state.get("busy")
        if type(busy) is int and 0 <= busy <= 1024:
            w.busy = busy
        actions = self.scheduler.handle(ev.WorkerHeartbeat(worker_id, now))
        slots = state.get("slots")
        if isinstance(slots, int) and slots != w.slots and 0 <= slots <= 1024:
            w.slots = slots
            actions += self.scheduler.handle(ev.WorkerSlotsChanged(worker_id, slots))
            self._workers_dirty = True
        paused = state.get("paused")
        if isinstance(paused, bool) and paused != w.paused:
            w.paused = paused
            actions += self.scheduler.handle(ev.WorkerPaused(worker_id, paused))
            self._workers_dirty = True
            self._pause_held(w)
        self._apply(actions)

    def _pause_held(self, w: Worker) -> None:
        """The jobs a worker holds show its pause: ``paused``, and on resume ``running`` if they
        had started, else ``assigned``."""
        if w.id not in self.scheduler.workers:
            return
        changed = []
        for jid in self.scheduler.held_by(w.id):
            job = self.jobs.get(jid)
            if job is not None and job.status in HELD:
                status = _held_status(job, w.paused)
                if status != job.status:
                    job.status = status
                    changed.append(job)
        if changed:
            self._notify(changed)

    def tick(self) -> None:
        """Expire the leases of workers that stopped answering, and blobs nobody needs."""
        now = self.clock.seconds()
        self._apply(self.scheduler.handle(ev.Tick(now)))
        self._delete_blobs(self.blob_table.expire(now))

    def report(self, worker_id: str, events: list[Any]) -> None:
        """Events from a worker about jobs it holds: done, out, progress, back."""
        w = self.workers.get(worker_id)
        if w is None:
            return  # an expired worker's late report: its jobs already went elsewhere
        w.last_heartbeat = self.clock.seconds()
        dones, backs, started = [], [], []
        for e in events:
            if not isinstance(e, list) or len(e) < 3 or type(e[1]) is not int or type(e[2]) is not int:
                raise BadRequest("malformed report event: expected [kind, job_id, attempt, ...]")
            kind = e[0]
            if kind == "done":
                dones.append(e)
            elif kind == "out":
                self._on_output(w, e)
            elif kind == "progress":
                self._on_progress(w, e)
            elif kind == "back":
                if len(e) < 4:
                    raise BadRequest("malformed back event")
                backs.append(e)
            elif kind == "start":
                self._on_start(w, e, started)
            else:
                raise BadRequest(f"unknown report event {str(kind)[:20]!r}")
        if started:
            self._notify(started)
        if dones:
            self._on_done(w, dones)
            if self.deps._ended:
                self.deps.resolve()  # dependents of what just finished start in this turn
        if backs:
            items = [(b[1], b[2], bool(b[3])) for b in backs]
            actions = self.scheduler.handle(ev.JobsHandedBack(worker_id, items))
            self._warn_foreign(w, actions, {b[1] for b in backs})
            self._apply(actions)
        self._flush()  # now, not a reactor turn later: results are on the latency path

    def _held(self, w: Worker, e: list[Any]) -> ActiveJob | None:
        """The job an out/progress event names, if *w* holds that attempt of it (else None: the
        event is ignored, and logged when the job runs elsewhere)."""
        job = self.jobs.get(e[1])
        if job is not None and job.replicas is not None and job.status in HELD:
            return self._held_copy(w, job, e)
        if job is None or job.status not in HELD or job.attempt != e[2]:
            return None
        if job.worker != w.id:
            log.warn("dsage.server.foreign_report", worker=w.id, user=w.user, job=job.id,
                     holder=job.worker, kind=e[0])
            return None
        return job

    def _warn_foreign(self, w: Worker, actions: list[Any], ids: set[int]) -> None:
        for a in actions:
            if isinstance(a, act.Discarded) and a.job_id in ids and a.reason == "not held by this worker":
                log.warn("dsage.server.foreign_report", worker=w.id, user=w.user, job=a.job_id,
                         holder=self.jobs[a.job_id].worker if a.job_id in self.jobs else None,
                         kind="done/back")

    def _on_start(self, w: Worker, e: list[Any], started: list[ActiveJob]) -> None:
        # ["start", job_id, attempt, seconds since it started]: an age, so clocks need not agree
        if len(e) < 4 or isinstance(e[3], bool) or not isinstance(e[3], (int, float)):
            raise BadRequest("malformed start event")
        job = self._held(w, e)
        if job is None or job.started is not None:
            return  # stale (requeued, finished, another worker's now) or already known
        job.started = self.clock.seconds() - min(max(0.0, float(e[3])), 86400.0)
        job.status = _held_status(job, w.paused)
        started.append(job)

    def _on_output(self, w: Worker, e: list[Any]) -> None:
        job = self._held(w, e) if len(e) > 3 else None
        if job is not None and isinstance(e[3], str):
            job.add_output(e[3][: self.limits.max_output_chunk], self.limits.max_output)

    def _on_progress(self, w: Worker, e: list[Any]) -> None:
        job = self._held(w, e) if len(e) > 3 else None
        if job is None or isinstance(e[3], bool) or not isinstance(e[3], (int, float)) or e[3] != e[3]:
            return
        job.progress = min(1.0, max(0.0, float(e[3])))
        job.progress_message = str(e[4])[:200] if len(e) > 4 else ""
        self._notify([job])

    def _on_done(self, w: Worker, dones: list[list[Any]]) -> None:
        # ["done", job_id, attempt, status, result, preview, error, started, finished, cpu(, extra)]
        by_id = {}
        copies, retry = [], []
        for d in dones:
            if len(d) < 10:
                raise BadRequest("malformed done event")
            job = self.jobs.get(d[1])
            if job is not None and job.replicas is not None:
                copies.append(d)
            elif d[3] == "failed" and self._retries_left(w, d):
                retry.append(d)
            else:
                by_id[d[1]] = d
        if copies:
            self._on_copies_done(w, copies)
        if retry:
            self._retry(w, retry)
        if copies or retry:
            dones = [d for d in dones if d[1] in by_id]
            if not dones:
                return
        results = [(d[1], d[2], _duration(d)) for d in dones]
        actions = self.scheduler.handle(ev.JobsFinished(w.id, results))
        self._warn_foreign(w, actions, set(by_id))
        for a in actions:
            if isinstance(a, act.Accepted):
                for jid in a.job_ids:
                    self._finish_from_worker(w, self.jobs[jid], by_id[jid])
            elif isinstance(a, act.Discarded) and a.job_id in by_id:
                job = self.jobs.get(a.job_id)
                d = by_id[a.job_id]
                if job is not None and isinstance(d[2], int) and d[2] < job.attempt:
                    # a stale attempt of a job still running elsewhere: nobody will name its file.
                    # Never for a job that is gone: a resent report must not delete a stored result.
                    self._drop_result_file(w, d)
        self._apply([a for a in actions if not isinstance(a, act.Accepted)])

    def _retries_left(self, w: Worker, d: list[Any]) -> bool:
        """True if the failed done *d* (from its holder) raised an exception its job retries on."""
        job = self.jobs.get(d[1])
        if job is None or not job.ext or job.kill_requested:
            return False
        if job.retried >= (job.ext.get("retries") or 0):
            return False
        if self.scheduler.job_location(job.id) != (w.id, d[2]):
            return False   # a stale or foreign report: the scheduler discards it as usual
        return exc_info.matches(exc_info.clean(_exc_of(d), False), job.ext.get("retry_on"))

    def _retry(self, w: Worker, dones: list[list[Any]]) -> None:
        """Jobs that raised and have retries left go back to the queue (not a worker failure)."""
        for d in dones:
            job = self.jobs[d[1]]
            job.retried += 1
            w.jobs_done += 1
            error = d[6] if isinstance(d[6], str) else ""
            job.error = (f"attempt {d[2]} raised; retry {job.retried} of {job.ext['retries']}\n"
                         + error)[: self.limits.max_error]
            log.info("dsage.server.retry", job=job.id, attempt=d[2], retried=job.retried)
        self._apply(self.scheduler.handle(ev.JobsHandedBack(w.id, [(d[1], d[2], False) for d in dones])))

    def may_pickle_for(self, w: Worker, owner: str) -> bool:
        """Whether a pickle *w* made may reach *owner*'s client: only from a keyed worker of that
        same user (the server's local worker counts as its owner's)."""
        if w.anonymous:
            return False
        return w.user == owner or (w.local and self.owner_user is not None and owner == self.owner_user)

    def _finish_from_worker(self, w: Worker, job: ActiveJob, d: list[Any]) -> None:
        _, _, _, status, result, preview, error, started, finished, _cpu = d[:10]
        if status not in ("completed", "failed", "timed_out", "killed"):
            status, error = "failed", f"worker reported an unknown status {status!r}"
        hard_kill = job.kill_requested and not job.cancel_only   # a spared cancel ends as it ends
        if status == "failed" and not hard_kill:
            raw = _exc_of(d)
            if raw is not None:
                job.exc = exc_info.clean(raw, self.may_pickle_for(w, job.owner))
        rfile = _result_file_of(d)
        if rfile is not None and status == "completed":
            why = self._check_result_file(w, job, rfile)
            if why is not None:
                status, result, error = "failed", None, why
                self._drop_result_file(w, d)
            else:  # the file itself is checked on the store's thread, before the result commits
                result = None
                job.result_file, job.result_size = rfile["file"], rfile["size"]
        if result is not None and not isinstance(result, bytes):
            status, result, error = "failed", None, "worker sent a malformed result"
        if result is not None and len(result) > self.limits.max_result:
            status, error = "failed", (f"result too large: {len(result)} bytes > limit "
                                       f"{self.limits.max_result}")
            result = None
        if result is not None and w.anonymous and codec.text_form(result) is not None:
            result = codec.text_form(result)  # a Sage object: only its string form is passed on
        if result is not None and w.anonymous and not codec.is_plain(result):
            status, result = "failed", None
            error = ("the job's result is not plain data, and results produced by an anonymous worker "
                     "are never unpickled; return plain data (numbers, strings, lists, dicts...) or "
                     "submit with trusted_only=True")
        if hard_kill and status != "completed":
            status = "killed"
        w.jobs_done += 1
        job.result = result
        job.result_untrusted = not self.may_pickle_for(w, job.owner)   # for its dependents (server/deps.py)
        job.result_preview = preview if isinstance(preview, str) else None
        job.error = error[: self.limits.max_error] if isinstance(error, str) else None
        if isinstance(started, (int, float)):
            job.started = float(started)
        self._finalize(job, status, float(finished) if isinstance(finished, (int, float)) else None)

    def _drop_result_file(self, w: Worker, d: list[Any]) -> None:
        """Remove a result file no row will name (a stale attempt, or a result refused before it was
        recorded). Callers make sure of that; the name must be the one of that job and attempt."""
        rfile = _result_file_of(d)
        if rfile is None or not w.local or self.home is None:
            return
        if rfile.get("file") == local_results.result_name(d[1], d[2]):  # never any other name
            self.store.drop_result_file(rfile["file"]).addErrback(_log_failure)  # off the reactor

    def read_result_file_later(self, rel: str) -> Deferred:
        """:meth:`read_result_file` on the file reader's thread: a result file may be large, or no
        longer in the page cache, and the reactor must not wait for the disk."""
        if self.file_reader is None:
            return succeed(self.read_result_file(rel))
        return self.file_reader.run(self.read_result_file, rel)

    def read_result_file(self, rel: str) -> bytes | dict[str, str]:
        """The bytes of a result a local worker wrote (for peers that do not share the home), or a
        ``{"missing": reason}`` marker the client turns into a clear error when the result is read.
        Opened safely (see result_files: no link followed, a regular file of ours); never call it
        on the reactor."""
        try:
            if self._results is None:
                self._results = ResultsDir(self.home, uid=os.geteuid(), create=True)
            return self._results.read(rel)
        except (OSError, ResultFileError) as e:
            why = str(e) if isinstance(e, ResultFileError) else \
                f"the server cannot read the result file {rel}: {e.strerror or e}"
            log.error("dsage.server.result_file_unreadable", file=rel, error=why)
            return {"missing": why}

    def _check_result_file(self, w: Worker, job: ActiveJob, rfile: dict[str, Any]) -> str | None:
        """Why a result file named by a worker cannot be taken (None: its name and size may be the
        expected ones). No file I/O here, on the reactor: the store checks the file itself."""
        if not w.local or self.home is None:
            return "the worker sent a result as a file but does not share the server's home"
        rel, size = rfile.get("file"), rfile.get("size")
        if rel != local_results.result_name(job.id, job.attempt):
            return f"the worker named an unexpected result file {str(rel)[:100]!r}"
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            return "the worker sent a malformed result size"
        if size > self.limits.max_result:
            return f"result too large: {size} bytes > limit {self.limits.max_result}"
        return None

    def _finalize(self, job: ActiveJob, status: str, finished: float | None = None) -> None:
        now = self.clock.seconds()
        job.status = status
        job.finished = finished or now
        if status == "completed":
            job.progress = 1.0
        self.counts[status] = self.counts.get(status, 0) + 1
        self.rate.add(now)
        self._count_queued(job.owner, -1)
        if job.blob_held:
            self._release_blob(job)
        if self.deps.dependents or self.deps.values:
            self.deps.ended(job)
        self._finished_rows.append((FinishedJob(job.id, status, job.result, job.result_preview, job.error,
                                                job.output_text() or None, job.started, job.finished,
                                                job.worker, job.result_file,
                                                job.result_size if job.result_file else None,
                                                _pack_exc(job.exc) if job.exc else None,
                                                job.result_untrusted), job))
        self._schedule_flush()

    # ------------------------------------------------------------------ applying actions
    def _apply(self, actions: list[Any]) -> None:
        now = self.clock.seconds()
        for a in actions:
            if isinstance(a, act.Dispatch):
                self._dispatch(a, now)
            elif isinstance(a, act.Requeued):
                self._requeued(a.jobs)
            elif isinstance(a, act.Lost):
                job = self.jobs[a.job_id]
                job.error = (f"lost: the worker running this job died {a.failures} times "
                             f"(max_failures={self.scheduler.max_failures})")
                self._finalize(job, "lost")
            elif isinstance(a, act.KilledQueued):
                job = self.jobs.get(a.job_id)
                if job is not None:
                    job.error = "killed by its owner"
                    self._finalize(job, "killed")
            elif isinstance(a, act.KillOnWorker):
                w = self.workers.get(a.worker_id)
                if w is not None:
                    job = self.jobs.get(a.job_id)
                    item = [a.job_id, a.attempt] + ([1] if job is not None and job.cancel_only else [])
                    w.link.kill([item]).addErrback(_log_failure)
            elif isinstance(a, act.WorkerExpired):
                w = self.workers.pop(a.worker_id, None)
                self._workers_dirty = True
                log.warn("dsage.server.lease_expired", worker=a.worker_id)
                if w is not None:
                    w.link.disconnect()
            elif isinstance(a, act.Discarded):
                self.discarded += 1
                log.debug("dsage.server.discarded", job=a.job_id, attempt=a.attempt, reason=a.reason)
            elif isinstance(a, (act.ReplicasDecided, act.ReplicasDisagree)):
                self._replicas_decided(a)

    def _dispatch(self, a: Any, now: float) -> None:
        w = self.workers[a.worker_id]
        entries, blobs = [], {}
        for jid, attempt in a.jobs:
            job = self.jobs[jid]
            # assigned until the worker says a child started it (a "start" mark, or its done)
            if job.replicas is not None and job.status in HELD:
                job.attempt = attempt   # another copy: the first copies keep running as they are
            else:
                job.status = "paused" if w.paused else "assigned"
                job.attempt, job.worker, job.started = attempt, w.id, None
                job.output, job.output_len, job.output_truncated = [], 0, False
            self._running_rows.append(RunningJob(jid, attempt, w.id, now))
            if job.blob_id and job.blob_id not in w.sent_blobs:
                data = self.blobs.get(job.blob_id)
                if data is not None:   # else (its row was lost) the worker fails the job, clearly
                    blobs[job.blob_id] = data
                    w.sent_blobs.add(job.blob_id)
            entry = [jid, attempt, job.payload, job.blob_id, job.timeout, job.limits]
            wext = worker_view(job.ext)
            if job.ext is not None and "inputs" in job.ext:
                wext = self.deps.worker_view(jid, wext)
            if wext is not None:
                entry.append(wext)
            entries.append(entry)
        # the worker first: telling watchers that the jobs run is not on their latency path
        if w.dispatcher is not None:
            w.dispatcher.add_many(entries, blobs)
        else:
            w.link.run({"jobs": entries, "blobs": blobs}).addErrback(_log_failure)
        self._notify([self.jobs[jid] for jid, _ in a.jobs])
        self._schedule_flush()

    def _requeued(self, items: list[tuple[int, int]]) -> None:
        rows = []
        for jid, failures in items:
            job = self.jobs[jid]  # a job with a kill pending never comes back here: KilledQueued
            job.status, job.worker, job.started, job.failures = "queued", None, None, failures
            rows.append((jid, failures))
        if rows:
            self._settle()  # their INSERT or dispatch may be held: it must commit first
            self._store_call(self.store.requeue_jobs(rows))
            self._notify([self.jobs[j] for j, _ in rows])

    # ------------------------------------------------------------------ store writes and notifications
    def _flush_soon(self, delay: float) -> Deferred:
        """A Deferred for the commit that takes what is pending now, made within *delay* seconds
        (sooner if a report or another flush comes first)."""
        d: Deferred = Deferred()
        self._flush_waiters.append(d)
        if self._commit_timer is None:
            self._commit_timer = self.clock.callLater(delay, self._flush)
        return d

    def _settle(self) -> None:
        """Commit a held commit now: a store read issued next must see what it writes (the
        store runs calls in order)."""
        if self._commit_timer is not None:
            self._flush()

    def _schedule_flush(self) -> None:
        # one flush per reactor turn: everything a batch of events produced goes in one transaction
        if self._commit_timer is not None:
            return  # a held commit is due soon and takes this along
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.clock.callLater(0, self._turn_flush)

    def _turn_flush(self) -> None:
        if self._commit_timer is None:
            self._flush()
        else:
            self._flush_scheduled = False  # the held commit takes this turn's rows along

    def _flush(self, want_result: bool = False) -> Deferred | None:
        """Write what is pending in one transaction. With *want_result*, returns a Deferred that
        fires when it committed (errors go to that caller); otherwise errors are logged. Submits
        waiting on a held commit (:meth:`_flush_soon`) are answered by this one."""
        self._flush_scheduled = False
        timer, self._commit_timer = self._commit_timer, None
        if timer is not None and timer.active():
            timer.cancel()
        waiters, self._flush_waiters = self._flush_waiters, []
        mine: Deferred | None = Deferred() if want_result else None
        if mine is not None:
            waiters.append(mine)
        if not (self._running_rows or self._finished_rows or self._new_rows):
            for w in waiters:
                w.callback(None)
            return mine
        running, self._running_rows = self._running_rows, []
        batch, self._finished_rows = self._finished_rows, []
        new, self._new_rows = self._new_rows, []
        d = self.store.record(running, [r for r, _ in batch], new)
        if waiters:
            # submitters hear of their ids before any result of those jobs is pushed to them
            def answer(r: Any) -> Any:
                for w in waiters:
                    w.errback(r) if isinstance(r, Failure) else w.callback(None)
                return r
            d.addBoth(answer)
        if batch:
            jobs = [j for _, j in batch]
            d.addCallback(lambda r: (self._refused_files(r, jobs), self._committed(jobs), r)[1])
            d.addErrback(self._finish_failed, jobs)
        self._store_call(d, log_errors=not waiters)  # a submitter's error is theirs to report
        return mine

    def _store_call(self, d: Deferred, log_errors: bool = True) -> None:
        self._store_writes.add(d)

        def done(r: Any) -> Any:
            self._store_writes.discard(d)
            return r
        d.addBoth(done)
        d.addErrback(_log_failure if log_errors else lambda f: None)

    def _committed(self, jobs: list[ActiveJob]) -> None:
        for job in jobs:
            job.announced = True
        self._notify(jobs, self._push_hold(jobs))
        for job in jobs:
            self.jobs.pop(job.id, None)
            self.watchers.pop(job.id, None)

    def _refused_files(self, refused: Any, jobs: list[ActiveJob]) -> None:
        """The store refused these local workers' result files (a link, a FIFO, a file of another
        uid...: see result_files) and recorded their jobs as failed: so do we, before announcing."""
        if not refused:
            return
        by_id = {j.id: j for j in jobs}
        for jid, why in refused:
            job = by_id.get(jid)
            if job is None:
                continue
            log.warn("dsage.server.result_file_refused", job=jid, worker=job.worker, reason=why)
            if job.status != "failed":
                self.counts[job.status] = max(0, self.counts.get(job.status, 0) - 1)
                self.counts["failed"] = self.counts.get("failed", 0) + 1
            job.status, job.error, job.result_file, job.result_size = "failed", why, None, 0
            job.progress = None

    def _finish_failed(self, f: Any, jobs: list[ActiveJob]) -> Any:
        # the results could not be stored: keep them in memory and tell the watchers anyway
        log.failure("dsage.server.finish_not_stored", f)
        for job in jobs:
            job.announced = True
        self._notify(jobs)
        return f

    def _push_hold(self, jobs: list[ActiveJob]) -> float:
        """How long finished jobs may wait for company on their way to clients: only results of
        jobs that ran a while, of owners with more jobs still to come (nobody's single wait)."""
        shortest = None
        for j in jobs:
            if j.started is None or j.finished is None or self.queued_by_owner.get(j.owner, 0) == 0:
                return 0.0
            ran = j.finished - j.started
            shortest = ran if shortest is None else min(shortest, ran)
        return push_hold(shortest)

    def _notify(self, jobs: list[ActiveJob], hold: float = 0.0) -> None:
        per_watcher: dict[Any, list[ActiveJob]] = {}
        owners = self.owner_watchers
        for job in jobs:
            for w in self.watchers.get(job.id, ()):
                per_watcher.setdefault(w, []).append(job)
            for w in owners.get(job.owner, ()) if owners else ():
                per_watcher.setdefault(w, []).append(job)  # duplicates collapse in the pusher
        for w, js in per_watcher.items():
            w.push_jobs(js, hold)

    def pending_writes(self) -> Deferred:
        """Fires when every store write issued so far has finished (for shutdown and tests)."""
        from twisted.internet.defer import DeferredList
        self._flush()
        return DeferredList(list(self._store_writes), consumeErrors=True)

    def _count_queued(self, owner: str, n: int) -> None:
        self.queued_by_owner[owner] = max(0, self.queued_by_owner.get(owner, 0) + n)

    def take_workers_dirty(self) -> bool:
        dirty, self._workers_dirty = self._workers_dirty, False
        return dirty


#: Results of jobs that ran at least PUSH_HOLD_MIN seconds wait up to PUSH_HOLD_FRACTION times
#: their run time, at most PUSH_HOLD_MAX, before being pushed to clients, while their owner has
#: more jobs queued or running (a batch's throughput is unchanged; each result of it arrives at
#: most that much later). The same figures as the worker's report hold (worker/pool.py).
PUSH_HOLD_MIN = latency.current().push_hold_min
PUSH_HOLD_FRACTION = latency.current().push_hold_fraction
PUSH_HOLD_MAX = latency.current().push_hold_max

#: A submit whose jobs all went straight to workers is committed (and acknowledged) together with
#: the first report that follows, or after COMMIT_DELAY seconds: a short job's INSERT and result
#: then share one transaction, and its submitter gets its ids and its result in one reactor turn
#: (a group commit, as PostgreSQL's ``commit_delay``). Submits that leave jobs queued commit at once.
COMMIT_DELAY = latency.current().commit_delay


def push_hold(ran: float | None) -> float:
    if ran is None or ran < PUSH_HOLD_MIN:
        return 0.0
    return min(PUSH_HOLD_MAX, PUSH_HOLD_FRACTION * ran)


def _int_in(v: Any, lo: int, hi: int, what: str, default: int) -> int:
    if v is None:
        return default
    if type(v) is not int or not lo <= v <= hi:
        raise BadRequest(f"worker info: {what} must be an integer from {lo} to {hi}")
    return v


def _text_in(v: Any, max_len: int, what: str) -> str:
    if v is None:
        return ""
    if not isinstance(v, str) or len(v) > max_len:
        raise BadRequest(f"worker info: {what} must be text of at most {max_len} characters")
    return textsafe.line(v)


def clean_worker_info(info: Any) -> dict[str, Any]:
    """The worker inventory a peer registered, checked field by field (types and ranges; text
    without control characters); unknown fields are dropped. Raises :class:`BadRequest`."""
    if not isinstance(info, dict):
        raise BadRequest("worker info must be a map")
    caps = info.get("capabilities") or []
    if not isinstance(caps, list) or len(caps) > 32 or \
            not all(isinstance(c, str) and 0 < len(c) <= 64 for c in caps):
        raise BadRequest("worker info: capabilities must be a list of at most 32 short names")
    sage = info.get("sage", False)
    if not isinstance(sage, bool):
        raise BadRequest("worker info: sage must be true or false")
    gpus = _int_in(info.get("gpus"), 0, 1024, "gpus", default=0)
    token = info.get("local_token")
    if token is not None and (not isinstance(token, str) or len(token) > 200):
        raise BadRequest("worker info: local_token must be short text")
    return {"host": _text_in(info.get("host"), 255, "host")[:64],   # a DNS name has at most 253
            "pid": _int_in(info.get("pid"), 0, 2**32, "pid", default=0),
            "slots": _int_in(info.get("slots"), 0, 1024, "slots", default=1),
            "capabilities": [textsafe.line(c) for c in caps],
            "cpus": _int_in(info.get("cpus"), 0, 1 << 20, "cpus", default=0) or None,
            "memory": _int_in(info.get("memory"), 0, 1 << 62, "memory", default=0) or None,
            "os": _text_in(info.get("os"), 200, "os"), "python": _text_in(info.get("python"), 40, "python"),
            "version": _text_in(info.get("version"), 40, "version"), "sage": sage, "gpus": gpus,
            "local_token": token, "address": _text_in(info.get("address"), 200, "address")}


def _sched_job(job: ActiveJob, replicas: int = 1) -> SchedJob:
    """The scheduler's record of a job (its resource request and copies, from its ext options)."""
    return SchedJob(job.id, job.priority, job.trusted_only, job.needs, job.attempt, job.failures,
                    request_of(job.ext), replicas)


def _result_file_of(d: list[Any]) -> dict[str, Any] | None:
    """The ``{"file", "size"}`` a local worker put after a done event's ten fields, if any."""
    return d[10] if len(d) > 10 and isinstance(d[10], dict) and "file" in d[10] else None


def _exc_of(d: list[Any]) -> Any:
    """The ``{"exc": ...}`` a worker put after a failed done event's ten fields (unchecked)."""
    return d[10].get("exc") if len(d) > 10 and isinstance(d[10], dict) else None


def _pack_exc(info: dict[str, Any]) -> bytes:
    from dsage_core.protocol.envelope import pack
    return pack(info)


def _viewed(u: list[Any], job_owner: str, viewer: str) -> list[Any]:
    """An update as *viewer* may see it (another user's exception pickle stays on the server)."""
    if len(u) > 16:   # the exception (17th field): its pickle goes to the job's owner only
        u[16] = exc_info.for_viewer(u[16], job_owner, viewer)
    return u


def _unpack_exc(data: Any) -> dict[str, Any] | None:
    """A stored exception map (opaque to the server: never unpickled here)."""
    from dsage_core.protocol.envelope import unpack
    try:
        v = unpack(data) if isinstance(data, bytes) else None
    except Exception:  # noqa: BLE001 - a damaged row: no exception, the traceback text remains
        return None
    return v if isinstance(v, dict) else None


def _duration(d: list[Any]) -> float:
    started, finished = d[7], d[8]
    if isinstance(started, (int, float)) and isinstance(finished, (int, float)):
        ran = float(finished) - float(started)
        return ran if 0.0 <= ran < 1e9 else 0.0   # NaN, infinities, clocks gone wrong: no weight
    return 0.0


def _held_status(job: ActiveJob, paused: bool) -> str:
    """The state of a job a worker holds."""
    if paused:
        return "paused"
    return "running" if job.started is not None else "assigned"


def _pack_limits(limits: dict[str, Any] | None) -> bytes | None:
    from dsage_core.protocol.envelope import pack
    return pack(limits) if limits else None


def _unpack_limits(data: bytes | None) -> dict[str, Any] | None:
    from dsage_core.protocol.envelope import unpack
    return unpack(data) if data else None


def _job_record(job: ActiveJob) -> dict[str, Any]:
    return {"id": job.id, "owner": job.owner, "name": job.name, "kind": job.kind, "status": job.status,
            "priority": job.priority, "trusted_only": job.trusted_only, "needs": sorted(job.needs),
            "created": job.created, "started": job.started, "finished": job.finished, "worker": job.worker,
            "attempts": job.attempt, "failures": job.failures, "result": job.result,
            "result_preview": job.result_preview, "error": job.error, "output": job.output_text(),
            "progress": job.progress, "progress_message": job.progress_message, "code": job.code,
            "timeout": job.timeout, "blob_id": job.blob_id, "exc": job.exc,
            "extra": {"replicas": job.replicas.text()} if job.replicas is not None else {}}


def _row_update(row: dict[str, Any]) -> list[Any]:
    result = row.get("result")
    if result is None and row.get("result_missing"):   # the client raises it when the result is read
        result = {"missing": row["result_missing"]}
    u = [row["id"], row["status"], row["worker"], row["started"], row["finished"], result,
         row.get("result_preview"), row.get("error"), row.get("progress"), row.get("progress_message") or "",
         row.get("attempts") or 0, row.get("name") or "", row.get("created"), row.get("priority") or 0,
         row.get("kind")]
    extra = rep.extra_of(row.get("ext"))
    exc = _unpack_exc(row.get("exc"))
    if extra or exc is not None:
        u.append(extra or None)   # the optional 16th field
    if exc is not None:
        u.append(exc)             # the optional 17th
    return u


def _log_failure(f: Any) -> None:
    log.failure("dsage.server.background_call_failed", f)
