"""The :class:`~dsage_core.server.core.JobServer`'s handling of replicated jobs (a mixin: the
scheduler places the copies and decides; this keeps their answers, durably, and records the one
result). See :mod:`dsage_core.server.replicas`."""
from __future__ import annotations

from typing import Any

from twisted.internet.defer import inlineCallbacks
from twisted.logger import Logger

from dsage_core.model.ext import encode as ext_encode
from dsage_core.model.records import OUT, DoneEvent
from dsage_core.model.status import JobStatus
from dsage_core.scheduler import actions as act, events as ev
from dsage_core.server import replicas as rep
from dsage_core.server.jobs import ActiveJob

log = Logger(namespace="dsage.server")

COMPLETED, FAILED = JobStatus.COMPLETED.value, JobStatus.FAILED.value


class ReplicaServer:
    """Replicated jobs on the server; mixed into ``JobServer`` (uses its store, scheduler, jobs)."""

    jobs: dict[int, ActiveJob]
    store: Any
    scheduler: Any
    limits: Any

    def _replicas_of(self, job: ActiveJob) -> int:
        """The job's number of copies (from its ext); sets up its :class:`rep.Replicas` if over 1."""
        k = int((job.ext or {}).get("replicas") or 1)
        if k > 1 and job.replicas is None:
            job.replicas = rep.Replicas(k)
        return k

    @inlineCallbacks
    def _restore_replicas(self, sched_jobs: list[Any]) -> Any:
        """After a restart: the answers stored for replicated jobs go back to them and to the
        scheduler, which then places only the copies still missing."""
        ids = [j.id for j in sched_jobs if j.replicas > 1]
        if not ids:
            return
        stored = yield self.store.replica_answers(ids)
        for sj in sched_jobs:
            rows = stored.get(sj.id)
            if not rows:
                continue
            job = self.jobs[sj.id]
            job.replicas.answers = [rep.ReplicaAnswer.from_row(r) for r in rows]
            sj.answers = tuple((a.attempt, a.digest, not a.anonymous, a.worker) for a in job.replicas.answers)
        log.info("dsage.server.replica_answers_restored", jobs=len(stored))

    def _held_copy(self, w: Any, job: ActiveJob, e: Any) -> ActiveJob | None:
        """An out/progress/start event about a copy: only from a worker that holds that attempt;
        output only from the earliest copy still out (one job, one output)."""
        holders = self.scheduler.copy_holders(job.id)
        if holders.get(w.id) != e.attempt:
            if w.id not in holders:
                log.warn("dsage.server.foreign_report", worker=w.id, user=w.user, job=job.id,
                         holder=job.worker, kind=e.kind)
            return None
        if e.kind == OUT and e.attempt != min(holders.values()):
            return None
        return job

    def _on_copies_done(self, w: Any, dones: list[DoneEvent]) -> None:
        """Done events of copies: check each answer, let the scheduler count it, keep the ones
        that count (durably, before any result), then apply what the scheduler decided."""
        answers = {}
        results = []
        for d in dones:
            a = rep.check_answer(d, w.id, w.user, w.anonymous, self.limits)
            if type(a.attempt) is not int:
                continue
            answers[(d.job_id, a.attempt)] = a
            started, finished = a.started, a.finished
            ran = finished - started if started is not None and finished is not None else 0.0
            results.append((d.job_id, a.attempt, ran if 0.0 <= ran < 1e9 else 0.0, a.digest))
        actions = self.scheduler.handle(ev.ReplicasFinished(w.id, results))
        rows = []
        for x in actions:
            if isinstance(x, act.ReplicaAnswered):
                job = self.jobs[x.job_id]
                a = answers[(x.job_id, x.attempt)]
                job.replicas.answers.append(a)
                rows.append(a.row(x.job_id))
                w.jobs_done += 1
        if rows:
            self._settle()   # type: ignore[attr-defined]  # a held INSERT commits first
            self._store_call(self.store.put_replica_answers(rows))   # type: ignore[attr-defined]
            changed = [self.jobs[x.job_id] for x in actions if isinstance(x, act.ReplicaAnswered)]
            self._notify([j for j in changed if j.status not in (COMPLETED, FAILED)])  # type: ignore[attr-defined]
        self._apply([x for x in actions if not isinstance(x, act.ReplicaAnswered)])  # type: ignore[attr-defined]

    def _replicas_decided(self, a: Any) -> None:
        """The scheduler decided a replicated job: record its one result (or its disagreement)."""
        job = self.jobs.get(a.job_id)
        if job is None or job.replicas is None:
            return
        r = job.replicas
        win = r.answer(a.attempt) if isinstance(a, act.ReplicasDecided) else None
        if isinstance(a, act.ReplicasDecided):
            r.decided(a.agree, a.of, a.decided_by)
            status = win.status if win is not None else FAILED
            if win is not None:
                job.result, job.result_preview, job.error = win.result, win.preview, win.error
                job.result_untrusted = win.anonymous or win.user != job.owner   # see server/deps.py
                job.worker, job.started, job.attempt = win.worker, win.started or job.started, win.attempt
            else:
                job.error = "replicas: the deciding answer is missing"
        else:
            status = FAILED
            job.result, job.result_preview = None, None
            job.error = r.disagreement(a.agree, a.of, a.why)[: self.limits.max_error]
        log.info("dsage.server.replicas_decided", job=job.id, agreement=r.agreement)
        self._settle()   # type: ignore[attr-defined]
        self._store_call(self.store.replicas_decided(  # type: ignore[attr-defined]
            job.id, ext_encode({**(job.ext or {}), "agreement": r.agreement})))
        win = r.answer(a.attempt) if isinstance(a, act.ReplicasDecided) else None
        self._finalize(job, status, win.finished if win is not None else None)   # type: ignore[attr-defined]
