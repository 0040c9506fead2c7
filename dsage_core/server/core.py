"""The job server's logic, free of any transport: what happens on submit, dispatch, report, kill.

``JobServer`` is the façade the Foolscap adapters (:mod:`dsage_core.server.remote`) and the service
call. It composes small parts, each testable alone, and holds what ties them together (the pure
:class:`Scheduler`'s actions applied to jobs and workers):

* :mod:`~dsage_core.server.intake`: a submitted batch checked, given ids, made into jobs and rows;
* :mod:`~dsage_core.server.table`: the jobs still unfinished, by id, and the counts;
* :mod:`~dsage_core.server.commits`: the group commit (what waits for the next transaction);
* :mod:`~dsage_core.server.results`: result files and stored exceptions;
* :mod:`~dsage_core.server.watchers`: which session follows which job, and the pushes' hold;
* :mod:`~dsage_core.server.workers`: connected workers and the check of their inventory;
* :mod:`~dsage_core.server.deps`, :mod:`~dsage_core.server.blobs`,
  :mod:`~dsage_core.server.replica_core`: jobs as arguments, function blobs, replicated jobs.

Durability rule: a submit is acknowledged only after its INSERT committed; a result is announced to
clients only after its UPDATE committed. Dispatch does not wait for result commits.
"""
from __future__ import annotations

from typing import Any, Callable

from twisted.internet.defer import Deferred, inlineCallbacks, succeed
from twisted.logger import Logger

from dsage_core import codec, local_results
from dsage_core.limits import Limits
from dsage_core.model import exc_info
from dsage_core.model.ext import decode as ext_decode, worker_view
from dsage_core.model.records import (BACK, DONE, OUT, PROGRESS, UNTRUSTED_RESULT, DoneEvent, JobUpdate, KillItem, OutEvent,
                                      ProgressEvent, StartEvent, WireError, event_from_wire)
from dsage_core.model.resources import request_of
from dsage_core.model.status import HELD, TERMINAL, WORKER_OUTCOMES, JobStatus
from dsage_core.protocol.errors import BadRequest, NotFound, ServerUnavailable
from dsage_core.scheduler import Scheduler, SchedJob, events as ev, actions as act
from dsage_core.server import replicas as rep
from dsage_core.server.blobs import BlobTable
from dsage_core.server.commits import COMMIT_DELAY, GroupCommit, log_failure as _log_failure
from dsage_core.server.deps import InputLinks, input_ids
from dsage_core.server.intake import Intake, new_rows, unpack_limits
from dsage_core.server.jobs import ActiveJob
from dsage_core.server.replica_core import ReplicaServer
from dsage_core.server.results import ResultFiles, pack_exc, unpack_exc, viewed as _viewed
from dsage_core.server.table import JobTable, held_status as _held_status
from dsage_core.server.watchers import Watchers, push_hold
from dsage_core.server.workers import Worker, capabilities_of, clean_worker_info
from dsage_core.stats import RateMeter
from dsage_core.store import RunningJob, FinishedJob, StoreError, StoreUnavailable

log = Logger(namespace="dsage.server")

__all__ = ["JobServer", "Worker", "COMMIT_DELAY", "push_hold", "capabilities_of", "clean_worker_info"]

# statuses as the plain strings they are (a member's attribute lookup costs on the hot path)
WAITING, QUEUED, ASSIGNED = JobStatus.WAITING.value, JobStatus.QUEUED.value, JobStatus.ASSIGNED.value
RUNNING, PAUSED = JobStatus.RUNNING.value, JobStatus.PAUSED.value
COMPLETED, FAILED, KILLED = JobStatus.COMPLETED.value, JobStatus.FAILED.value, JobStatus.KILLED.value
LOST = JobStatus.LOST.value
_make_record = tuple.__new__   # a NamedTuple from a sequence of exactly its fields (its _make)


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
        self.table = JobTable()
        self.jobs = self.table.jobs                        # the same dicts, for the mixins and deps
        self.counts = self.table.counts
        self.queued_by_owner = self.table.queued_by_owner
        self._count_queued = self.table.count_queued
        self.blob_table = BlobTable(self.limits)   #: who holds which function blob (quota, refs)
        self.blobs: dict[str, bytes] = self.blob_table.data
        self.intake = Intake(self.limits, self.blob_table)
        self.group_commit = GroupCommit(store, clock, self._batch_committed, self._finish_failed)
        # bound once: no extra call per use on the hot path
        self._flush, self._settle = self.group_commit.flush, self.group_commit.settle
        self._schedule_flush, self._store_call = self.group_commit.schedule_flush, self.group_commit.store_call
        self.results = ResultFiles(self.limits, store)
        self.watching = Watchers(self.queued_by_owner)
        self.watchers = self.watching.by_job
        self.owner_watchers = self.watching.by_owner
        self._notify = self.watching.notify
        self.workers: dict[str, Worker] = {}
        self.clients: set[Any] = set()
        self.heartbeat_interval = max(0.5, self.scheduler.lease_timeout / 4)
        #: results and hand-backs that did not count since start (a stale attempt: from a worker
        #: whose lease expired, a duplicate after a reconnect, a killed job's late result)
        self.discarded = 0
        self.rate = RateMeter(60, clock=clock.seconds)   #: completions per second, last minute
        self._worker_seq = 0
        self._workers_dirty = True
        self._make_dispatcher = make_dispatcher
        self.listen: str | None = None   #: the interface it listens on (set by the service)
        self.local_token: str | None = None  #: see dsage_core.local_results
        #: the furl of every server of a shared (PostgreSQL) database, told to peers so they follow
        #: a takeover (None: a server of its own)
        self.furl: str | None = None
        #: set when the server itself stops: the workers it drops are not to blame for the jobs
        #: they held, which stay "running" in the store until the next start requeues them
        self.closing = False
        self.deps = InputLinks(self)   #: jobs as arguments: who waits for whom (server/deps.py)
        #: the server owner's user name (set by the service): a local worker (one that shares the
        #: home, so holds the owner's key anyway) counts as the owner's own for exception pickles
        self.owner_user: str | None = None

    # ------------------------------------------------------------------ settings kept by the parts
    @property
    def next_id(self) -> int:
        """The id the next submitted job gets."""
        return self.intake.next_id

    @next_id.setter
    def next_id(self, v: int) -> None:
        self.intake.next_id = v

    @property
    def anonymous_replicas(self) -> int:
        """Copies of each job that may run on anonymous workers (``--anonymous-replicas``)."""
        return self.intake.anonymous_replicas

    @anonymous_replicas.setter
    def anonymous_replicas(self, v: int) -> None:
        self.intake.anonymous_replicas = v

    @property
    def anonymous_packages(self) -> bool:
        """Whether jobs with packages= may go to anonymous workers (``--anonymous-packages``)."""
        return self.intake.anonymous_packages

    @anonymous_packages.setter
    def anonymous_packages(self, v: bool) -> None:
        self.intake.anonymous_packages = v

    @property
    def home(self) -> Any:
        """The server's home (set by the service; None in unit tests: no result files)."""
        return self.results.home

    @home.setter
    def home(self, v: Any) -> None:
        self.results.home = v

    @property
    def file_reader(self) -> Any:
        """Runs result-file reads off the reactor (set by the service; None: inline)."""
        return self.results.file_reader

    @file_reader.setter
    def file_reader(self, v: Any) -> None:
        self.results.file_reader = v

    # ------------------------------------------------------------------ start-up
    @inlineCallbacks
    def restore(self) -> Any:
        """Load unfinished jobs after a (re)start; jobs that were running go back to the queue."""
        snap = yield self.store.open()
        self.next_id = snap.max_job_id + 1
        counts = yield self.store.count_by_status(None)
        self.table.restore_counts(counts)
        sched_jobs, requeue, linked = [], [], []
        for row in snap.active:
            job = ActiveJob(id=row["id"], owner=row["owner"], name=row["name"] or "", kind=row["kind"],
                            priority=row["priority"] or 0, trusted_only=bool(row["trusted_only"]),
                            needs=frozenset(row["needs"]), payload=row["payload"], blob_id=row["blob_id"],
                            timeout=row["timeout"], limits=unpack_limits(row["limits"]),
                            created=row["created"], attempt=row["attempts"] or 0,
                            failures=row["failures"] or 0, ext=ext_decode(row["ext"]))
            if job.ext and job.ext.get("retries"):
                # runs that were neither worker deaths nor the current one count as retries used
                # (a hand-back at a worker's shutdown too: never more than `retries` extra runs)
                job.retried = max(0, job.attempt - job.failures - (row["status"] == RUNNING))
            if row["status"] == RUNNING:
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
        specs, uses = self.intake.check(owner, raw_jobs)
        outcomes = None
        if any(s.ext and "inputs" in s.ext for s in specs):  # jobs as arguments
            outcomes = yield self.deps.lookup(owner, [s.ext for s in specs])
        self.intake.check_quota(self.table.queued(owner), len(specs))
        now = self.clock.seconds()
        jobs = self.intake.make_jobs(owner, specs, uses, now)
        rows = new_rows(jobs, now)
        # Dispatch while the INSERT commits (the submit is still acknowledged only after the
        # commit): it takes the store round trip out of every job's latency. If the commit fails,
        # the jobs are withdrawn; a result of theirs finds no job and is discarded.
        optimistic = self.store.writable
        if optimistic:
            self.group_commit.new_rows.extend(rows)
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
        self.table.add(jobs)
        if watcher is not None:
            self.watching.watch([j.id for j in jobs], watcher)
        self._count_queued(owner, len(jobs))
        to_schedule = jobs
        if rows is not None:
            linked = [j for j in jobs if input_ids(j.ext)]
            ready = {j.id for j in self.deps.attach(linked, rows)}
            to_schedule = [j for j in jobs if not input_ids(j.ext) or j.id in ready]
        sched = self._sched   # a plain job (no ext options): its record built here, one call less
        self._apply(self.scheduler.handle(ev.JobsSubmitted([
            sched(j) if j.ext else SchedJob(j.id, j.priority, j.trusted_only, j.needs, j.attempt, j.failures)
            for j in to_schedule])))
        if self.watching.follows_owner(owner):
            # sessions that follow all of the owner's jobs (the desktop app) see them from submit
            # on; dispatched ones were pushed by _dispatch already
            waiting = [j for j in jobs if j.status in (QUEUED, WAITING)]
            if waiting:
                self._notify(waiting)
        elif rows is not None:  # jobs with inputs: the client guessed waiting or queued; tell it
            shown = [j for j in jobs if j.status in (QUEUED, WAITING) and input_ids(j.ext)]
            if shown:
                self._notify(shown)
        if COMMIT_DELAY > 0 and all(j.status in HELD for j in jobs):
            return self.group_commit.flush_soon(COMMIT_DELAY)
        return self._flush(want_result=True)

    def _withdraw(self, jobs: list[ActiveJob]) -> None:
        ids = [j.id for j in jobs]
        for j in jobs:
            j.kill_requested = True
            self.watchers.pop(j.id, None)
            if j.status == WAITING:
                j.error = "withdrawn: its submit was not stored"
                self._finalize(j, KILLED)
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
                self._finalize(j, FAILED)
            else:
                j.status = QUEUED
                go.append(j)
        self._apply(self.scheduler.handle(ev.JobsSubmitted([self._sched(j) for j in go])))
        self._notify([j for j in go if j.status == QUEUED])
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
        return self.table.visible(owner, admin, job_owner)

    @inlineCallbacks
    def watch(self, owner: str, admin: bool, job_ids: list[int], watcher: Any) -> Any:
        """Subscribe *watcher* to jobs; answer their current state (unknown / foreign ids are skipped)."""
        out = []
        for jid in job_ids:
            job = self.jobs.get(jid)
            if job is not None:
                if self._visible(owner, admin, job.owner):
                    self.watching.watch((jid,), watcher)
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
        if row.get("result_untrusted"):
            row["extra"] = {**(row.get("extra") or {}), UNTRUSTED_RESULT: 1}
        if not isinstance(row.get("exc"), (dict, type(None))):
            row["exc"] = unpack_exc(row["exc"])
        row["exc"] = exc_info.for_viewer(row.get("exc"), row["owner"], owner)
        if not with_result:
            row.pop("result", None)
        return row

    @inlineCallbacks
    def get_output(self, owner: str, admin: bool, job_id: int) -> Any:
        """The output a job printed so far; another user's job is reported as unknown."""
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
        """A page of the caller's jobs (any user's for an admin asking ``all``), by *query*."""
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
        stored = RUNNING if status in HELD else QUEUED if status == WAITING else status
        d = self.store.list_jobs(owner=who, status=stored, text=text,
                                 after_id=after_id, limit=limit,
                                 newest_first=bool(query.get("newest_first")))
        d.addCallback(self._live_rows)
        if status in HELD or status in (QUEUED, WAITING):
            d.addCallback(lambda rows: [r for r in rows if r["status"] == status])
        return d

    def _live_rows(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Stored rows, with the in-memory state of jobs still running (progress, status)."""
        for row in rows:
            row["needs"] = sorted(row.get("needs") or ())
            extra = rep.extra_of(row.pop("ext", None))
            if extra:
                row["extra"] = extra
            self.table.live_row(row)
        return rows

    def kill(self, owner: str, admin: bool, job_ids: list[int], address: str = "",
             unstarted_only: bool = False) -> list[bool]:
        """Kill queued or running jobs the caller owns; False for unknown, foreign or finished ones.
        *unstarted_only* (an Executor's cancel): the worker spares a job it already runs."""
        ok, targets, waiting = [], [], []
        for jid in job_ids:
            job = self.table.visible_job(owner, admin, jid)
            if job is None or job.status in TERMINAL:
                ok.append(False)
                continue
            job.kill_requested = True
            job.cancel_only = unstarted_only and not job.kill_requested_hard
            job.kill_requested_hard = job.kill_requested_hard or not unstarted_only
            (waiting if job.status == WAITING else targets).append(jid)
            ok.append(True)
        for jid in waiting:  # not in the scheduler yet (see server/deps.py)
            job = self.jobs[jid]
            job.error = "killed by its owner"
            self._finalize(job, KILLED)
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
        held = self.table.held_counts(w.held for w in s.workers.values())
        d.update(time=now, queued=s.queued_count, waiting=len(self.deps.waiting), rate_1m=self.rate.rate(),
                 busy_slots=s.slots_busy, held=s.running_count, discarded=self.discarded, **held,
                 total_slots=sum(w.slots for w in self.workers.values()), workers=len(self.workers))
        return d

    def describe_workers(self) -> list[dict[str, Any]]:
        """Every connected worker, with its busy slots as the scheduler knows them now."""
        out = []
        for w in self.workers.values():
            d = w.describe()
            # busy slots from what the scheduler knows now, not from the last heartbeat
            d["busy"] = min(w.slots, len(self.scheduler.held_by(w.id))) if w.id in self.scheduler.workers else 0
            out.append(d)
        return out

    def watch_owner(self, owner: str, watcher: Any, enable: bool) -> None:
        """Push updates of every job of *owner* (the desktop app follows jobs submitted anywhere)."""
        self.watching.watch_owner(owner, watcher, enable)

    def forget_watcher(self, watcher: Any) -> None:
        """A client went away: stop pushing to it."""
        self.watching.forget(watcher)

    # ------------------------------------------------------------------ workers
    def worker_joined(self, link: Any, info: dict[str, Any], user: str, anonymous: bool) -> Worker:
        """A worker registered: give it an id and work."""
        i = clean_worker_info(info)   # raises BadRequest: nothing registered
        self._worker_seq += 1
        now = self.clock.seconds()
        wid = f"{i.host or 'worker'}-{i.pid}-{self._worker_seq}"
        w = Worker(wid, link, user, anonymous, i, i.slots, now, now)
        w.local = self.is_local(i.local_token) and not anonymous
        if self._make_dispatcher is not None:
            w.dispatcher = self._make_dispatcher(w)
        self.workers[wid] = w
        self._workers_dirty = True
        log.info("dsage.server.worker_joined", worker=wid, slots=i.slots, anonymous=anonymous, user=user)
        self._apply(self.scheduler.handle(ev.WorkerJoined(wid, i.slots, anonymous, capabilities_of(i), now,
                                                          memory=i.memory or 0, gpus=i.gpus, user=user)))
        return w

    def is_local(self, proof: Any) -> bool:
        """True if *proof* was made from this run's local token: the peer read the server's results
        dir (the token itself never leaves the machine; see local_results.proof)."""
        import hmac
        return (self.local_token is not None and isinstance(proof, str)
                and hmac.compare_digest(proof, local_results.proof(self.local_token, self.server_id)))

    def worker_left(self, worker_id: str, reason: str) -> None:
        """A worker's connection ended: its jobs go back to the queue (unless the server stops)."""
        if worker_id not in self.workers:
            return
        if not self.closing:  # our own shutdown cut the link: no failure, restore() requeues its jobs
            log.info("dsage.server.worker_left", worker=worker_id, reason=reason)
            self._apply(self.scheduler.handle(ev.WorkerLeft(worker_id, reason)))
        self.workers.pop(worker_id, None)
        self._workers_dirty = True

    def heartbeat(self, worker_id: str, state: dict[str, Any]) -> None:
        """A worker is alive; *state* may change its slots, busy count and pause."""
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
        """Events from a worker about jobs it holds: done, out, progress, back, start
        (:mod:`dsage_core.model.records`)."""
        w = self.workers.get(worker_id)
        if w is None:
            return  # an expired worker's late report: its jobs already went elsewhere
        w.last_heartbeat = self.clock.seconds()
        dones, backs, started = [], [], []
        for raw in events:
            if type(raw) is list and raw and raw[0] == DONE and 10 <= len(raw) <= 11:
                # the common case: what DoneEvent._make does, its length checked here (a third of
                # the cost of DoneEvent(*raw), on the path of every job)
                e = _make_record(DoneEvent, raw if len(raw) == 11 else (*raw, None))
            else:
                try:
                    e = event_from_wire(raw)
                except WireError as x:
                    raise BadRequest(str(x)) from None
            if type(e.job_id) is not int or type(e.attempt) is not int:
                raise BadRequest("malformed report event: expected [kind, job_id, attempt, ...]")
            kind = e.kind
            if kind == DONE:
                dones.append(e)
            elif kind == OUT:
                self._on_output(w, e)
            elif kind == PROGRESS:
                self._on_progress(w, e)
            elif kind == BACK:
                backs.append(e)
            else:
                self._on_start(w, e, started)
        if started:
            self._notify(started)
        if dones:
            self._on_done(w, dones)
            if self.deps._ended:
                self.deps.resolve()  # dependents of what just finished start in this turn
        if backs:
            items = [(b.job_id, b.attempt, bool(b.failed)) for b in backs]
            actions = self.scheduler.handle(ev.JobsHandedBack(worker_id, items))
            self._warn_foreign(w, actions, {b.job_id for b in backs})
            self._apply(actions)
        self._flush()  # now, not a reactor turn later: results are on the latency path

    def _held(self, w: Worker, e: OutEvent | ProgressEvent | StartEvent) -> ActiveJob | None:
        """The job an out/progress/start event names, if *w* holds that attempt of it (else None:
        the event is ignored, and logged when the job runs elsewhere)."""
        job = self.jobs.get(e.job_id)
        if job is not None and job.replicas is not None and job.status in HELD:
            return self._held_copy(w, job, e)
        if job is None or job.status not in HELD or job.attempt != e.attempt:
            return None
        if job.worker != w.id:
            log.warn("dsage.server.foreign_report", worker=w.id, user=w.user, job=job.id,
                     holder=job.worker, kind=e.kind)
            return None
        return job

    def _warn_foreign(self, w: Worker, actions: list[Any], ids: set[int]) -> None:
        for a in actions:
            if isinstance(a, act.Discarded) and a.job_id in ids and a.reason == "not held by this worker":
                log.warn("dsage.server.foreign_report", worker=w.id, user=w.user, job=a.job_id,
                         holder=self.jobs[a.job_id].worker if a.job_id in self.jobs else None,
                         kind="done/back")

    def _on_start(self, w: Worker, e: StartEvent, started: list[ActiveJob]) -> None:
        # an age, so clocks need not agree
        if isinstance(e.age, bool) or not isinstance(e.age, (int, float)):
            raise BadRequest("malformed start event")
        job = self._held(w, e)
        if job is None or job.started is not None:
            return  # stale (requeued, finished, another worker's now) or already known
        job.started = self.clock.seconds() - min(max(0.0, float(e.age)), 86400.0)
        job.status = _held_status(job, w.paused)
        started.append(job)

    def _on_output(self, w: Worker, e: OutEvent) -> None:
        job = self._held(w, e)
        if job is not None and isinstance(e.text, str):
            job.add_output(e.text[: self.limits.max_output_chunk], self.limits.max_output)

    def _on_progress(self, w: Worker, e: ProgressEvent) -> None:
        job = self._held(w, e)
        f = e.fraction
        if job is None or isinstance(f, bool) or not isinstance(f, (int, float)) or f != f:
            return
        job.progress = min(1.0, max(0.0, float(f)))
        job.progress_message = str(e.message)[:200]
        self._notify([job])

    def _on_done(self, w: Worker, dones: list[DoneEvent]) -> None:
        by_id = {}
        copies, retry = [], []
        jobs = self.jobs
        for d in dones:
            job = jobs.get(d.job_id)
            if job is not None and job.replicas is not None:
                copies.append(d)
            elif d.status == FAILED and self._retries_left(w, d):
                retry.append(d)
            else:
                by_id[d.job_id] = d
        if copies:
            self._on_copies_done(w, copies)
        if retry:
            self._retry(w, retry)
        if copies or retry:
            dones = [d for d in dones if d.job_id in by_id]
            if not dones:
                return
        results = [(d.job_id, d.attempt, d.duration) for d in dones]
        actions = self.scheduler.handle(ev.JobsFinished(w.id, results))
        self._warn_foreign(w, actions, by_id)
        for a in actions:
            if isinstance(a, act.Accepted):
                self._finish_many(w, [(jobs[jid], by_id[jid]) for jid in a.job_ids])
            elif isinstance(a, act.Discarded) and a.job_id in by_id:
                job = jobs.get(a.job_id)
                d = by_id[a.job_id]
                if job is not None and isinstance(d.attempt, int) and d.attempt < job.attempt:
                    # a stale attempt of a job still running elsewhere: nobody will name its file.
                    # Never for a job that is gone: a resent report must not delete a stored result.
                    self.results.drop(w, d.job_id, d.attempt, d.result_file)
        self._apply([a for a in actions if not isinstance(a, act.Accepted)])

    def _retries_left(self, w: Worker, d: DoneEvent) -> bool:
        """True if the failed done *d* (from its holder) raised an exception its job retries on."""
        job = self.jobs.get(d.job_id)
        if job is None or not job.ext or job.kill_requested:
            return False
        if job.retried >= (job.ext.get("retries") or 0):
            return False
        if self.scheduler.job_location(job.id) != (w.id, d.attempt):
            return False   # a stale or foreign report: the scheduler discards it as usual
        return exc_info.matches(exc_info.clean(d.exc, False), job.ext.get("retry_on"))

    def _retry(self, w: Worker, dones: list[DoneEvent]) -> None:
        """Jobs that raised and have retries left go back to the queue (not a worker failure)."""
        for d in dones:
            job = self.jobs[d.job_id]
            job.retried += 1
            w.jobs_done += 1
            error = d.error if isinstance(d.error, str) else ""
            job.error = (f"attempt {d.attempt} raised; retry {job.retried} of {job.ext['retries']}\n"
                         + error)[: self.limits.max_error]
            log.info("dsage.server.retry", job=job.id, attempt=d.attempt, retried=job.retried)
        self._apply(self.scheduler.handle(ev.JobsHandedBack(w.id, [(d.job_id, d.attempt, False) for d in dones])))

    def may_pickle_for(self, w: Worker, owner: str) -> bool:
        """Whether a pickle *w* made may reach *owner*'s client: only from a keyed worker of that
        same user (the server's local worker counts as its owner's)."""
        if w.anonymous:
            return False
        return w.user == owner or (w.local and self.owner_user is not None and owner == self.owner_user)

    def _finish_from_worker(self, w: Worker, job: ActiveJob, d: DoneEvent) -> None:
        # the record unpacked once by its field order (cheaper than reading fields by name)
        _, _, _, status, result, preview, error, started, finished, _, extra = d
        if status not in WORKER_OUTCOMES:
            status, error = FAILED, f"worker reported an unknown status {status!r}"
        hard_kill = job.kill_requested and not job.cancel_only   # a spared cancel ends as it ends
        if status == FAILED and not hard_kill and extra is not None:
            raw = d.exc
            if raw is not None:
                job.exc = exc_info.clean(raw, self.may_pickle_for(w, job.owner))
        if extra is not None:
            rfile = d.result_file
            if rfile is not None and status == COMPLETED:
                why = self.results.check(w, job, rfile)
                if why is not None:
                    status, result, error = FAILED, None, why
                    self.results.drop(w, d.job_id, d.attempt, rfile)
                else:  # the file itself is checked on the store's thread, before the result commits
                    result = None
                    job.result_file, job.result_size = rfile["file"], rfile["size"]
        if result is not None and not isinstance(result, bytes):
            status, result, error = FAILED, None, "worker sent a malformed result"
        if result is not None and len(result) > self.limits.max_result:
            status, error = FAILED, (f"result too large: {len(result)} bytes > limit "
                                     f"{self.limits.max_result}")
            result = None
        if result is not None and w.anonymous and codec.text_form(result) is not None:
            result = codec.text_form(result)  # a Sage object: only its string form is passed on
        if result is not None and w.anonymous and not codec.is_plain(result):
            status, result = FAILED, None
            error = ("the job's result is not plain data, and results produced by an anonymous worker "
                     "are never unpickled; return plain data (numbers, strings, lists, dicts...) or "
                     "submit with trusted_only=True")
        if hard_kill and status != COMPLETED:
            status = KILLED
        w.jobs_done += 1
        job.result = result
        job.result_untrusted = not self.may_pickle_for(w, job.owner)   # for its dependents (server/deps.py)
        job.result_preview = preview if isinstance(preview, str) else None
        job.error = error[: self.limits.max_error] if isinstance(error, str) else None
        if isinstance(started, (int, float)):
            job.started = float(started)
        self._finalize(job, status, float(finished) if isinstance(finished, (int, float)) else None)

    def _finish_many(self, w: Worker, items: list[tuple[ActiveJob, DoneEvent]]) -> None:
        """The accepted dones of one report, in one pass: a job that completed with a plain result
        (no extra, no kill, a keyed worker, within the size limit: nearly every one) is ended
        here, exactly as :meth:`_finish_from_worker` and :meth:`_finalize` would end it; any other
        goes through them."""
        max_result, max_error = self.limits.max_result, self.limits.max_error
        slow = w.anonymous   # an anonymous worker's results are checked for plain data
        now = self.clock.seconds()
        counts = self.counts
        rows = self.group_commit.finished_rows
        deps = self.deps
        untrusted_of: dict[str, bool] = {}
        ended_by_owner: dict[str, int] = {}
        fast = 0
        for job, d in items:
            # the record unpacked once by its field order (cheaper than reading fields by name)
            _, _, _, status, result, preview, error, started, finished, _, extra = d
            if (slow or status != COMPLETED or extra is not None or job.kill_requested
                    or (result is not None and (type(result) is not bytes or len(result) > max_result))):
                self._finish_from_worker(w, job, d)
                continue
            fast += 1
            owner = job.owner
            untrusted = untrusted_of.get(owner)
            if untrusted is None:
                untrusted = untrusted_of[owner] = not self.may_pickle_for(w, owner)
            job.result = result
            job.result_untrusted = untrusted   # for its dependents (server/deps.py)
            job.result_preview = preview if isinstance(preview, str) else None
            job.error = error[:max_error] if isinstance(error, str) else None
            if isinstance(started, (int, float)):
                job.started = float(started)
            job.status = COMPLETED
            job.finished = (float(finished) if isinstance(finished, (int, float)) else None) or now
            job.progress = 1.0
            ended_by_owner[owner] = ended_by_owner.get(owner, 0) + 1
            if job.blob_held:
                self._release_blob(job)
            if deps.dependents or deps.values:
                deps.ended(job)
            rows.append((_make_record(FinishedJob, (
                job.id, COMPLETED, result, job.result_preview, job.error, job.output_text() or None,
                job.started, job.finished, job.worker, job.result_file,
                job.result_size if job.result_file else None, pack_exc(job.exc) if job.exc else None,
                untrusted)), job))
        if fast:
            w.jobs_done += fast
            counts[COMPLETED] = counts.get(COMPLETED, 0) + fast
            for owner, n in ended_by_owner.items():
                self._count_queued(owner, -n)
            self._schedule_flush()

    def read_result_file_later(self, rel: str) -> Deferred:
        """The bytes of a result file (or a ``{"missing": why}`` marker), read off the reactor."""
        return self.results.read_later(rel)

    def read_result_file(self, rel: str) -> bytes | dict[str, str]:
        """:meth:`ResultFiles.read` (never on the reactor)."""
        return self.results.read(rel)

    def _finalize(self, job: ActiveJob, status: str, finished: float | None = None) -> None:
        now = self.clock.seconds()
        job.status = status
        job.finished = finished or now
        if status == COMPLETED:
            job.progress = 1.0
        counts = self.counts
        counts[status] = counts.get(status, 0) + 1
        self._count_queued(job.owner, -1)
        if job.blob_held:
            self._release_blob(job)
        if self.deps.dependents or self.deps.values:
            self.deps.ended(job)
        self.group_commit.finished_rows.append((FinishedJob(job.id, status, job.result, job.result_preview, job.error,
                                                       job.output_text() or None, job.started, job.finished,
                                                       job.worker, job.result_file,
                                                       job.result_size if job.result_file else None,
                                                       pack_exc(job.exc) if job.exc else None,
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
                self._finalize(job, LOST)
            elif isinstance(a, act.KilledQueued):
                job = self.jobs.get(a.job_id)
                if job is not None:
                    job.error = "killed by its owner"
                    self._finalize(job, KILLED)
            elif isinstance(a, act.KillOnWorker):
                w = self.workers.get(a.worker_id)
                if w is not None:
                    job = self.jobs.get(a.job_id)
                    cancel = 1 if job is not None and job.cancel_only else 0
                    w.link.kill([list(KillItem(a.job_id, a.attempt, cancel).to_wire())]).addErrback(_log_failure)
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
        jobs = self.jobs
        running_rows = self.group_commit.running_rows
        wid = w.id
        for jid, attempt in a.jobs:
            job = jobs[jid]
            # assigned until the worker says a child started it (a "start" mark, or its done)
            if job.replicas is not None and job.status in HELD:
                job.attempt = attempt   # another copy: the first copies keep running as they are
            else:
                job.status = PAUSED if w.paused else ASSIGNED
                job.attempt, job.worker, job.started = attempt, w.id, None
                job.output, job.output_len, job.output_truncated = [], 0, False
            running_rows.append(_make_record(RunningJob, (jid, attempt, wid, now)))
            if job.blob_id and job.blob_id not in w.sent_blobs:
                data = self.blobs.get(job.blob_id)
                if data is not None:   # else (its row was lost) the worker fails the job, clearly
                    blobs[job.blob_id] = data
                    w.sent_blobs.add(job.blob_id)
            wext = None
            if job.ext is not None:
                wext = worker_view(job.ext)
                if "inputs" in job.ext:
                    wext = self.deps.worker_view(jid, wext)
            # a RunEntry's wire form (model/records.py), without its optional ext when there is none
            entry = [jid, attempt, job.payload, job.blob_id, job.timeout, job.limits]
            if wext is not None:
                entry.append(wext)
            entries.append(entry)
        # the worker first: telling watchers that the jobs run is not on their latency path
        if w.dispatcher is not None:
            w.dispatcher.add_many(entries, blobs)
        else:
            w.link.run({"jobs": entries, "blobs": blobs}).addErrback(_log_failure)
        self._notify([jobs[jid] for jid, _ in a.jobs])
        self._schedule_flush()

    def _requeued(self, items: list[tuple[int, int]]) -> None:
        rows = []
        for jid, failures in items:
            job = self.jobs[jid]  # a job with a kill pending never comes back here: KilledQueued
            job.status, job.worker, job.started, job.failures = QUEUED, None, None, failures
            rows.append((jid, failures))
        if rows:
            self._settle()  # their INSERT or dispatch may be held: it must commit first
            self._store_call(self.store.requeue_jobs(rows))
            self._notify([self.jobs[j] for j, _ in rows])

    # ------------------------------------------------------------------ after a commit
    def _batch_committed(self, refused: Any, jobs: list[ActiveJob]) -> None:
        """The ends of *jobs* committed (the store refused the result files in *refused*): they
        are announced, pushed, and leave the table."""
        self._refused_files(refused, jobs)
        self.rate.add(len(jobs))   # once per batch: the meter costs a microsecond per call
        for job in jobs:
            job.announced = True
        self._notify(jobs, self.watching.hold_for(jobs))
        pop_job, pop_watchers = self.jobs.pop, self.watchers.pop   # they leave table and watchers
        for job in jobs:
            pop_job(job.id, None)
            pop_watchers(job.id, None)

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
            self.table.recount(job.status, FAILED)
            job.status, job.error, job.result_file, job.result_size = FAILED, why, None, 0
            job.progress = None

    def _finish_failed(self, f: Any, jobs: list[ActiveJob]) -> Any:
        # the results could not be stored: keep them in memory and tell the watchers anyway
        log.failure("dsage.server.finish_not_stored", f)
        self.rate.add(len(jobs))
        for job in jobs:
            job.announced = True
        self._notify(jobs)
        return f

    def pending_writes(self) -> Deferred:
        """Fires when every store write issued so far has finished (for shutdown and tests)."""
        return self.group_commit.pending_writes()

    def take_workers_dirty(self) -> bool:
        """Whether the worker list changed since the last call (then pushed to sessions)."""
        dirty, self._workers_dirty = self._workers_dirty, False
        return dirty


def _sched_job(job: ActiveJob, replicas: int = 1) -> SchedJob:
    """The scheduler's record of a job (its resource request and copies, from its ext options)."""
    return SchedJob(job.id, job.priority, job.trusted_only, job.needs, job.attempt, job.failures,
                    request_of(job.ext), replicas)


def _job_record(job: ActiveJob) -> dict[str, Any]:
    return {"id": job.id, "owner": job.owner, "name": job.name, "kind": job.kind, "status": job.status,
            "priority": job.priority, "trusted_only": job.trusted_only, "needs": sorted(job.needs),
            "created": job.created, "started": job.started, "finished": job.finished, "worker": job.worker,
            "attempts": job.attempt, "failures": job.failures, "result": job.result,
            "result_preview": job.result_preview, "error": job.error, "output": job.output_text(),
            "progress": job.progress, "progress_message": job.progress_message, "code": job.code,
            "timeout": job.timeout, "blob_id": job.blob_id, "exc": job.exc,
            "extra": _extra_of(job)}


def _extra_of(job: ActiveJob) -> dict[str, Any]:
    extra: dict[str, Any] = {"replicas": job.replicas.text()} if job.replicas is not None else {}
    if job.result_untrusted:
        extra[UNTRUSTED_RESULT] = 1
    return extra


def _row_update(row: dict[str, Any]) -> list[Any]:
    """The update of a stored job (a :class:`JobUpdate`'s wire form)."""
    result = row.get("result")
    if result is None and row.get("result_missing"):   # the client raises it when the result is read
        result = {"missing": row["result_missing"]}
    exc = unpack_exc(row.get("exc"))
    extra = rep.extra_of(row.get("ext"))
    if row.get("result_untrusted"):   # stored with the result: holds after a restart
        extra = {**(extra or {}), UNTRUSTED_RESULT: 1}
    u = JobUpdate(row["id"], row["status"], row["worker"], row["started"], row["finished"], result,
                  row.get("result_preview"), row.get("error"), row.get("progress"),
                  row.get("progress_message") or "", row.get("attempts") or 0, row.get("name") or "",
                  row.get("created"), row.get("priority") or 0, row.get("kind"),
                  extra or None, exc)
    return list(u.to_wire())
