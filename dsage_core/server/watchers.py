"""Watchers and pushes: which client sessions follow which jobs, and how long a push may wait.

A session watches jobs by id (it submitted them, or asked ``watch``) or all jobs of an owner (the
desktop app). :meth:`Watchers.notify` hands each session the changed jobs it follows, with a
*hold*: how long they may wait for company on their way (:func:`push_hold`); the session's pusher
(:mod:`dsage_core.server.remote`) batches and sends them.
"""
from __future__ import annotations

from typing import Any, Iterable

from dsage_core import latency

#: Results of jobs that ran at least PUSH_HOLD_MIN seconds wait up to PUSH_HOLD_FRACTION times
#: their run time, at most PUSH_HOLD_MAX, before being pushed to clients, while their owner has
#: more jobs queued or running (a batch's throughput is unchanged; each result of it arrives at
#: most that much later). The same figures as the worker's report hold (worker/pool.py).
PUSH_HOLD_MIN = latency.current().push_hold_min
PUSH_HOLD_FRACTION = latency.current().push_hold_fraction
PUSH_HOLD_MAX = latency.current().push_hold_max


def push_hold(ran: float | None) -> float:
    """How long the result of a job that ran *ran* seconds may wait before it is pushed."""
    if ran is None or ran < PUSH_HOLD_MIN:
        return 0.0
    return min(PUSH_HOLD_MAX, PUSH_HOLD_FRACTION * ran)


class Watchers:
    """Sessions by the job ids they watch and by the owners they follow; all on the reactor."""

    def __init__(self, queued_by_owner: dict[str, int]) -> None:
        self.by_job: dict[int, frozenset[Any]] = {}   #: shared by the jobs of one watch call
        self.by_owner: dict[str, set[Any]] = {}   #: sessions that follow all of a user's jobs
        self._queued_by_owner = queued_by_owner   #: the job table's (read for the hold)

    def watch(self, job_ids: Iterable[int], watcher: Any) -> None:
        """*watcher* follows these jobs until they end. The jobs of one call share one frozen set
        of watchers (a submitted batch: no set per job); a second watcher of a job replaces the
        job's set by a new one, so a shared set never changes under the jobs that share it."""
        by_job = self.by_job
        get = by_job.get
        alone = frozenset((watcher,))
        for jid in job_ids:
            ws = get(jid)
            if ws is None:
                by_job[jid] = alone
            elif watcher not in ws:
                by_job[jid] = ws | alone

    def follows_owner(self, owner: str) -> bool:
        """Whether some session follows all of *owner*'s jobs."""
        return bool(self.by_owner.get(owner))

    def watch_owner(self, owner: str, watcher: Any, enable: bool) -> None:
        """*watcher* follows (or stops following) every job of *owner*."""
        ws = self.by_owner.setdefault(owner, set())
        if enable:
            ws.add(watcher)
        else:
            ws.discard(watcher)
        if not ws:
            del self.by_owner[owner]

    def forget(self, watcher: Any) -> None:
        """A session went away: it follows nothing any more."""
        for owner in list(self.by_owner):
            self.watch_owner(owner, watcher, False)
        by_job = self.by_job
        for jid in [j for j, ws in by_job.items() if watcher in ws]:
            rest = by_job[jid] - {watcher}
            if rest:
                by_job[jid] = rest
            else:
                del by_job[jid]

    def ended(self, jobs: Iterable[Any]) -> None:
        """These jobs' ends were pushed: nobody watches them by id any more."""
        pop = self.by_job.pop
        for job in jobs:
            pop(job.id, None)

    def notify(self, jobs: list[Any], hold: float = 0.0) -> None:
        """Hand every session the jobs of *jobs* it follows (one call per session)."""
        per_watcher: dict[Any, list[Any]] = {}
        by_job = self.by_job
        owners = self.by_owner
        for job in jobs:
            for w in by_job.get(job.id, ()):
                per_watcher.setdefault(w, []).append(job)
            for w in owners.get(job.owner, ()) if owners else ():
                per_watcher.setdefault(w, []).append(job)  # duplicates collapse in the pusher
        for w, js in per_watcher.items():
            w.push_jobs(js, hold)

    def hold_for(self, jobs: list[Any]) -> float:
        """How long finished jobs may wait for company on their way to clients: only results of
        jobs that ran a while, of owners with more jobs still to come (nobody's single wait)."""
        shortest = None
        queued = self._queued_by_owner
        for j in jobs:
            if j.started is None or j.finished is None or queued.get(j.owner, 0) == 0:
                return 0.0
            ran = j.finished - j.started
            shortest = ran if shortest is None else min(shortest, ran)
        return push_hold(shortest)
