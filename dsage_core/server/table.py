"""The job table: every job the server is still responsible for, by id, and what it counts.

A job is in the table from its submit (or the restart that restored it) until its terminal state
committed (:mod:`dsage_core.server.commits`). The table also keeps the finished counts by status
since the database began, the queued (unfinished) count per owner for the quota, and the one rule
of who may see a job. Everything is O(1) per job; nothing here does I/O.
"""
from __future__ import annotations

from typing import Any, Iterable

from dsage_core.model.status import HELD, TERMINAL, JobStatus
from dsage_core.server.jobs import ActiveJob

ASSIGNED, RUNNING, PAUSED = JobStatus.ASSIGNED.value, JobStatus.RUNNING.value, JobStatus.PAUSED.value


class JobTable:
    """Unfinished jobs by id, finished counts by status, unfinished counts by owner."""

    def __init__(self) -> None:
        self.jobs: dict[int, ActiveJob] = {}
        self.counts: dict[str, int] = {s: 0 for s in TERMINAL}
        self.queued_by_owner: dict[str, int] = {}

    def add(self, jobs: Iterable[ActiveJob]) -> None:
        """Take *jobs* in (their owner's unfinished count is the caller's: :meth:`count_queued`)."""
        table = self.jobs
        for j in jobs:
            table[j.id] = j

    def get(self, job_id: int) -> ActiveJob | None:
        """The unfinished (or finishing) job *job_id*, or None."""
        return self.jobs.get(job_id)

    def remove(self, jobs: Iterable[ActiveJob]) -> None:
        """Jobs whose end committed leave the table."""
        pop = self.jobs.pop
        for j in jobs:
            pop(j.id, None)

    def count_queued(self, owner: str, n: int) -> None:
        """*owner* has *n* more (or fewer) unfinished jobs."""
        self.queued_by_owner[owner] = max(0, self.queued_by_owner.get(owner, 0) + n)

    def queued(self, owner: str) -> int:
        """How many unfinished jobs *owner* has."""
        return self.queued_by_owner.get(owner, 0)

    def count_finished(self, status: str) -> None:
        """One more job ended in *status*."""
        self.counts[status] = self.counts.get(status, 0) + 1

    def recount(self, was: str, now: str) -> None:
        """A finished job's counted status changed (e.g. its result file was refused)."""
        if was != now:
            self.counts[was] = max(0, self.counts.get(was, 0) - 1)
            self.counts[now] = self.counts.get(now, 0) + 1

    def restore_counts(self, counts: dict[str, int]) -> None:
        """The finished counts the store holds (at a start)."""
        for s in TERMINAL:
            self.counts[s] = counts.get(s, 0)

    def visible(self, viewer: str, admin: bool, job_owner: str | None) -> bool:
        """Whether *viewer* may see a job of *job_owner*: their own, or any for an admin."""
        return admin or job_owner == viewer

    def visible_job(self, viewer: str, admin: bool, job_id: int) -> ActiveJob | None:
        """The unfinished job *job_id* if *viewer* may see it (else None, as for an unknown id)."""
        job = self.jobs.get(job_id)
        return job if job is not None and (admin or job.owner == viewer) else None

    def held_counts(self, held_ids: Iterable[Iterable[int]]) -> dict[str, int]:
        """Of the jobs workers hold (*held_ids*: one id set per worker), how many are assigned
        (prefetched), running (started in a child) and paused (on a paused worker)."""
        counts = dict.fromkeys((ASSIGNED, RUNNING, PAUSED), 0)
        jobs = self.jobs
        for ids in held_ids:
            for jid in ids:
                job = jobs.get(jid)
                if job is not None and job.status in counts:
                    counts[job.status] += 1
        return counts

    def live_row(self, row: dict[str, Any]) -> None:
        """A stored row of a job, updated with what only memory knows while it runs."""
        job = self.jobs.get(row["id"])
        if job is not None:
            row.update(status=job.status, worker=job.worker, progress=job.progress,
                       progress_message=job.progress_message, attempts=job.attempt)
            if job.replicas is not None:
                row["extra"] = {"replicas": job.replicas.text()}


def held_status(job: ActiveJob, paused: bool) -> str:
    """The state of a job a worker holds."""
    if paused:
        return PAUSED
    return RUNNING if job.started is not None else ASSIGNED


__all__ = ["JobTable", "held_status", "HELD"]
