"""The scheduler's side of replicas: where the k copies of one job are, and what their answers decide.

A job with ``replicas > 1`` has a :class:`Copies` record. Each copy is a dispatch with its own
attempt number to a worker that never held a copy of that job before (``used``), preferring a user
that has none yet. The job stays queued while copies are still to be placed, so another worker can
take the next one. Answers arrive as digests (``dsage_core.model.replicas.answer_digest``);
:func:`verdict` says what they decide.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from dsage_core.model.replicas import quorum
from dsage_core.scheduler import actions as act
from dsage_core.scheduler import events as ev
from dsage_core.scheduler.events import SchedJob
from dsage_core.scheduler.policy import WorkerState, ewma


@dataclass(slots=True)
class Answer:
    """One copy's answer as the scheduler knows it."""

    attempt: int
    digest: bytes
    keyed: bool      #: from a keyed (non-anonymous) worker
    worker: str
    tiebreak: bool = False


@dataclass(slots=True)
class Copies:
    """Where the copies of one replicated job are."""

    k: int
    want: int                                                #: copies still to place
    holders: dict[str, int] = field(default_factory=dict)    #: worker id -> attempt
    used: set[str] = field(default_factory=set)              #: workers that held a copy
    users: set[str] = field(default_factory=set)             #: their users (see ``user_key``)
    answers: list[Answer] = field(default_factory=list)
    keyed_only: bool = False                                 #: the tie-break copy: keyed workers only

    def place(self, worker_id: str, user: str, attempt: int) -> None:
        """One copy went to *worker_id*."""
        self.holders[worker_id] = attempt
        self.used.add(worker_id)
        self.users.add(user)
        self.want -= 1

    def unplace(self, worker_id: str, user: str, answered: bool) -> None:
        """A copy left *worker_id*: answered, or back unanswered (then the worker may take it again)."""
        del self.holders[worker_id]
        if not answered:
            self.used.discard(worker_id)
            self.users.discard(user)


def user_key(user: str, anonymous: bool, worker_id: str) -> str:
    """Whose copy a worker runs: its user, or for anonymous workers the worker itself (nothing
    tells one anonymous stranger from another)."""
    return f"anonymous:{worker_id}" if anonymous else user


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the answers decide: ``accept`` an attempt, ``tiebreak`` on a keyed worker, ``fail``, or
    ``wait`` for more answers."""

    kind: str
    attempt: int = 0
    agree: int = 0
    decided_by: str | None = None
    why: str = ""


def verdict(c: Copies, keyed_worker_free: bool) -> Verdict:
    """Decide from *c*'s answers. *keyed_worker_free*: a connected keyed worker that never held a
    copy could run the job (a tie-break is possible)."""
    plain = [a for a in c.answers if not a.tiebreak]
    counts = Counter(a.digest for a in plain)
    best, n = counts.most_common(1)[0] if counts else (b"", 0)
    tie = next((a for a in c.answers if a.tiebreak), None)
    if tie is not None:
        return Verdict("accept", tie.attempt, counts.get(tie.digest, 0), decided_by=tie.worker)
    if n >= quorum(c.k):
        return Verdict("accept", next(a.attempt for a in plain if a.digest == best), n)
    if n + c.want + len(c.holders) >= quorum(c.k):
        return Verdict("wait")
    keyed = [a for a in plain if a.keyed]
    if keyed and len({a.digest for a in keyed}) == 1:
        return Verdict("accept", keyed[0].attempt, counts[keyed[0].digest], decided_by=keyed[0].worker)
    if keyed:
        return Verdict("fail", agree=n, why="keyed workers disagree too")
    if keyed_worker_free:
        return Verdict("tiebreak", agree=n)
    return Verdict("fail", agree=n, why="no keyed worker to decide")


class ReplicaMoves:
    """The :class:`~dsage_core.scheduler.state.Scheduler`'s transitions for replicated jobs (a
    mixin: it reads and changes the scheduler's own tables; kept apart so state.py stays the story
    of one-copy jobs)."""

    jobs: dict[int, Any]
    workers: dict[str, WorkerState]
    _copies: dict[int, Copies]
    _queue: Any

    def copy_holders(self, job_id: int) -> dict[str, int]:
        """``{worker_id: attempt}`` of a replicated job's copies out now (empty for other jobs)."""
        c = self._copies.get(job_id)
        return dict(c.holders) if c is not None else {}

    def _new_copies(self, job: SchedJob, out: list[Any]) -> bool:
        """Set up a replicated job's copies at submit or restore; False if its restored answers
        already decided it (then it is not queued)."""
        c = Copies(job.replicas, job.replicas)
        for attempt, digest, keyed, worker in job.answers:
            c.answers.append(Answer(attempt, digest, keyed, worker, tiebreak=len(c.answers) >= job.replicas))
        c.want = max(0, job.replicas - len(c.answers))
        self._copies[job.id] = c
        # workers reconnect after a restart: a restored disagreement waits for a keyed one
        if c.answers and self._decide(job, c, out, restoring=True):
            return False
        return c.want > 0

    def _may_take(self, w: WorkerState, job_id: int) -> bool:
        """Whether *w* may take the next copy of *job_id*: never a second copy, keyed only for a
        tie-break, and not a user that has one while a worker of another user could take it."""
        c = self._copies[job_id]
        if w.id in c.used or (c.keyed_only and w.anonymous):
            return False
        if user_key(w.user, w.anonymous, w.id) not in c.users:
            return True
        cls = self._queue.job_class(job_id)
        return not any(v.id not in c.used and user_key(v.user, v.anonymous, v.id) not in c.users
                       and v.can_run(cls) and len(v.held) < self.allowance(v.id)   # type: ignore[attr-defined]
                       for v in self.workers.values() if v is not w)

    def _placed(self, w: WorkerState, job: SchedJob) -> bool:
        """A copy of *job* went to *w*; True if more copies are still to place."""
        c = self._copies[job.id]
        c.place(w.id, user_key(w.user, w.anonymous, w.id), job.attempt)
        return c.want > 0

    def _replicas_finished(self, e: ev.ReplicasFinished, out: list[Any]) -> None:
        w = self.workers.get(e.worker_id)
        plain: list[tuple[int, int, float]] = []
        for job_id, attempt, duration, digest in e.results:
            c = self._copies.get(job_id)
            why = self._stale_reason(w, job_id, attempt)  # type: ignore[attr-defined]
            if c is None or why:
                if c is None and not why:
                    plain.append((job_id, attempt, duration))
                else:
                    out.append(act.Discarded(job_id, attempt, why))
                continue
            assert w is not None
            del w.held[job_id]
            c.unplace(w.id, user_key(w.user, w.anonymous, w.id), answered=True)
            w.avg_duration = ewma(w.avg_duration, float(duration))
            c.answers.append(Answer(attempt, digest, not w.anonymous, w.id, tiebreak=c.keyed_only))
            out.append(act.ReplicaAnswered(job_id, attempt, w.id))
            self._decide(self.jobs[job_id], c, out)
        if plain:
            self._finished(ev.JobsFinished(e.worker_id, plain), out)  # type: ignore[attr-defined]

    def _decide(self, job: SchedJob, c: Copies, out: list[Any], restoring: bool = False) -> bool:
        """Act on what the answers say; True if the job is decided (and forgotten)."""
        v = verdict(c, keyed_worker_free=restoring or any(
            not w.anonymous and w.id not in c.used and w.can_run((job.trusted_only, job.needs))
            for w in self.workers.values()))
        if v.kind == "wait":
            return False
        if v.kind == "tiebreak":
            self._recall(job.id, c, out)
            c.keyed_only, c.want = True, 1
            if job.id not in self._queue and not restoring:
                self._queue.push(job)   # (a restored job is queued by the caller)
            return False
        self._forget_copies(job.id, c, out)
        if v.kind == "accept":
            out.append(act.ReplicasDecided(job.id, v.attempt, v.agree, c.k, v.decided_by))
        else:
            out.append(act.ReplicasDisagree(job.id, v.agree, c.k, v.why))
        return True

    def _recall(self, job_id: int, c: Copies, out: list[Any]) -> None:
        """Kill every copy still running (their answers no longer count)."""
        for wid, attempt in list(c.holders.items()):
            w = self.workers[wid]
            del w.held[job_id]
            c.unplace(wid, user_key(w.user, w.anonymous, wid), answered=True)
            out.append(act.KillOnWorker(wid, job_id, attempt))

    def _forget_copies(self, job_id: int, c: Copies, out: list[Any]) -> None:
        """The job is over: recall its copies, take it out of the queue, forget it."""
        self._recall(job_id, c, out)
        self._queue.remove(job_id)
        del self._copies[job_id]
        self.jobs.pop(job_id, None)

    def _kill_copies(self, job_id: int, out: list[Any]) -> None:
        """A kill of a replicated job reaches every copy at once; the job ends ``killed``."""
        self._forget_copies(job_id, self._copies[job_id], out)
        out.append(act.KilledQueued(job_id))

    def _copy_back(self, w: WorkerState, job: SchedJob, failure: bool, requeued: list[tuple[int, int]],
                   out: list[Any]) -> None:
        """A copy came back unanswered (its worker left or handed it back): place it again."""
        c = self._copies[job.id]
        c.unplace(w.id, user_key(w.user, w.anonymous, w.id), answered=False)
        c.want += 1
        if failure:
            job.failures += 1
        if job.failures > self.max_failures:   # type: ignore[attr-defined]
            self._forget_copies(job.id, c, out)
            out.append(act.Lost(job.id, job.failures))
            return
        if job.id not in self._queue:
            self._queue.push(job)
        if not c.holders:
            requeued.append((job.id, job.failures))

    def _validate_copies(self) -> None:
        for job_id, c in self._copies.items():
            for wid, attempt in c.holders.items():
                assert self.workers[wid].held.get(job_id) == attempt, f"job {job_id}: copy on {wid} not held"
            assert (c.want > 0) == (job_id in self._queue), f"job {job_id}: queued iff copies wanted"
