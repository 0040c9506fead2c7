"""The scheduler: a pure state machine. ``handle(event) -> list[Action]``; no I/O, no clock.

Order: higher priority first, then FIFO (lower id first). One heap per job class
``(trusted_only, needs)`` so a job no connected worker may run never blocks the others.
A worker may hold ``slots + prefetch`` jobs; prefetch grows for short jobs (measured per worker)
so tiny jobs stream in big batches while long jobs are handed out one per free slot.
"""
from __future__ import annotations

import heapq
import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from dsage_core.scheduler import actions as act
from dsage_core.scheduler import events as ev
from dsage_core.scheduler.events import SchedJob

JobClass = tuple[bool, frozenset[str]]


class InvalidTransition(Exception):
    """An event that cannot happen in the current state (a bug in the caller)."""


@dataclass
class WorkerState:
    id: str
    slots: int
    anonymous: bool
    capabilities: frozenset[str]
    last_seen: float
    paused: bool = False
    held: dict[int, int] = field(default_factory=dict)   # job id -> attempt
    avg_duration: float | None = None

    def can_run(self, cls: JobClass) -> bool:
        trusted_only, needs = cls
        return not (trusted_only and self.anonymous) and needs <= self.capabilities


class Scheduler:
    """Decides which worker runs which job; see the module docstring."""

    def __init__(self, *, max_failures: int = 3, lease_timeout: float = 15.0, prefetch_seconds: float = 0.05,
                 max_prefetch_per_slot: int = 500, max_dispatch_batch: int = 1000) -> None:
        self.max_failures = max_failures
        self.lease_timeout = lease_timeout
        self.prefetch_seconds = prefetch_seconds
        self.max_prefetch_per_slot = max_prefetch_per_slot
        self.max_dispatch_batch = max_dispatch_batch
        self.jobs: dict[int, SchedJob] = {}            # every job the scheduler knows (queued or held)
        self.queued: set[int] = set()
        self.heaps: dict[JobClass, list[tuple[int, int]]] = {}
        self.location: dict[int, str] = {}              # held job -> worker id
        self.workers: dict[str, WorkerState] = {}
        self.kill_pending: set[int] = set()
        self.log: deque[Any] = deque(maxlen=1000)

    # ------------------------------------------------------------------ queries
    @property
    def queued_count(self) -> int:
        return len(self.queued)

    @property
    def running_count(self) -> int:
        return len(self.location)

    @property
    def slots_total(self) -> int:
        return sum(w.slots for w in self.workers.values())

    @property
    def slots_busy(self) -> int:
        return sum(min(len(w.held), w.slots) for w in self.workers.values())

    def worker_ids(self) -> list[str]:
        return list(self.workers)

    def held_by(self, worker_id: str) -> list[int]:
        return list(self.workers[worker_id].held)

    def job_location(self, job_id: int) -> tuple[str, int] | None:
        wid = self.location.get(job_id)
        return None if wid is None else (wid, self.workers[wid].held[job_id])

    def is_queued(self, job_id: int) -> bool:
        return job_id in self.queued

    def waiting_reason(self, job_id: int) -> str | None:
        """Why a queued job waits, when it is not simply its turn."""
        job = self.jobs.get(job_id)
        if job is None or job_id not in self.queued:
            return None
        if not self.workers:
            return "no workers connected"
        cls = (job.trusted_only, job.needs)
        if any(w.can_run(cls) for w in self.workers.values()):
            return None
        missing = sorted(job.needs - set().union(*(w.capabilities for w in self.workers.values())))
        if missing:
            return f"no connected worker can run {', '.join(missing)} jobs"
        return "trusted-only: waiting for a keyed (non-anonymous) worker"

    # ------------------------------------------------------------------ events
    def handle(self, event: Any) -> list[Any]:
        """Apply one event; returns the actions to carry out, dispatches included."""
        self.log.append(event)
        handler = _HANDLERS.get(type(event))
        if handler is None:
            raise InvalidTransition(f"unknown event {event!r}")
        out: list[Any] = []
        handler(self, event, out)
        self._dispatch(out)
        return out

    def _submitted(self, e: ev.JobsSubmitted, out: list[Any]) -> None:
        for job in e.jobs:
            if job.id in self.jobs:
                raise InvalidTransition(f"job {job.id} submitted twice")
            self.jobs[job.id] = job
            self._enqueue(job)

    def _joined(self, e: ev.WorkerJoined, out: list[Any]) -> None:
        if e.worker_id in self.workers:
            raise InvalidTransition(f"worker {e.worker_id} joined twice")
        self.workers[e.worker_id] = WorkerState(e.worker_id, max(0, e.slots), e.anonymous,
                                                frozenset(e.capabilities), e.now)

    def _slots(self, e: ev.WorkerSlotsChanged, out: list[Any]) -> None:
        self._worker(e.worker_id).slots = max(0, e.slots)

    def _paused(self, e: ev.WorkerPaused, out: list[Any]) -> None:
        self._worker(e.worker_id).paused = e.paused

    def _heartbeat(self, e: ev.WorkerHeartbeat, out: list[Any]) -> None:
        w = self.workers.get(e.worker_id)
        if w is not None:
            w.last_seen = max(w.last_seen, e.now)

    def _left(self, e: ev.WorkerLeft, out: list[Any]) -> None:
        if e.worker_id in self.workers:
            self._drop_worker(e.worker_id, out)

    def _finished(self, e: ev.JobsFinished, out: list[Any]) -> None:
        w = self.workers.get(e.worker_id)
        accepted = []
        for job_id, attempt, duration in e.results:
            if w is None or w.held.get(job_id) != attempt:
                why = "unknown worker" if w is None else (
                    "not held by this worker" if job_id not in w.held else "stale attempt")
                out.append(act.Discarded(job_id, attempt, why))
                continue
            del w.held[job_id]
            del self.location[job_id]
            del self.jobs[job_id]
            self.kill_pending.discard(job_id)
            accepted.append(job_id)
            d = max(0.0, float(duration))
            w.avg_duration = d if w.avg_duration is None else 0.8 * w.avg_duration + 0.2 * d
        if accepted:
            out.append(act.Accepted(accepted))

    def _handed_back(self, e: ev.JobsHandedBack, out: list[Any]) -> None:
        w = self.workers.get(e.worker_id)
        requeued = []
        for job_id, attempt, failure in e.jobs:
            if w is None or w.held.get(job_id) != attempt:
                out.append(act.Discarded(job_id, attempt, "not held by this worker"))
                continue
            del w.held[job_id]
            del self.location[job_id]
            self._return(self.jobs[job_id], failure, requeued, out)
        if requeued:
            out.append(act.Requeued(requeued))

    def _kill(self, e: ev.KillRequested, out: list[Any]) -> None:
        for job_id in e.job_ids:
            if job_id in self.queued:
                self.queued.discard(job_id)
                del self.jobs[job_id]
                out.append(act.KilledQueued(job_id))
            elif job_id in self.location:
                wid = self.location[job_id]
                self.kill_pending.add(job_id)
                out.append(act.KillOnWorker(wid, job_id, self.workers[wid].held[job_id]))

    def _tick(self, e: ev.Tick, out: list[Any]) -> None:
        for wid in [w.id for w in self.workers.values() if w.last_seen < e.now - self.lease_timeout]:
            out.append(act.WorkerExpired(wid))
            self._drop_worker(wid, out)

    # ------------------------------------------------------------------ internals
    def _worker(self, wid: str) -> WorkerState:
        w = self.workers.get(wid)
        if w is None:
            raise InvalidTransition(f"unknown worker {wid}")
        return w

    def _enqueue(self, job: SchedJob) -> None:
        self.queued.add(job.id)
        heapq.heappush(self.heaps.setdefault((job.trusted_only, job.needs), []), (-job.priority, job.id))

    def _return(self, job: SchedJob, failure: bool, requeued: list[tuple[int, int]], out: list[Any]) -> None:
        if failure:
            job.failures += 1
        if job.failures > self.max_failures:
            del self.jobs[job.id]
            self.kill_pending.discard(job.id)
            out.append(act.Lost(job.id, job.failures))
            return
        self._enqueue(job)
        requeued.append((job.id, job.failures))

    def _drop_worker(self, wid: str, out: list[Any]) -> None:
        w = self.workers.pop(wid)
        requeued: list[tuple[int, int]] = []
        for job_id in sorted(w.held):
            del self.location[job_id]
            self._return(self.jobs[job_id], True, requeued, out)
        if requeued:
            out.append(act.Requeued(requeued))

    def allowance(self, w: WorkerState) -> int:
        """How many jobs worker *w* may hold now."""
        if w.paused:
            return 0
        prefetch = 0
        if w.avg_duration is not None:
            per_slot = self.prefetch_seconds / max(w.avg_duration, 1e-9)
            prefetch = w.slots * max(0, min(self.max_prefetch_per_slot, math.floor(per_slot)))
        return w.slots + prefetch

    def _pop_for(self, w: WorkerState) -> SchedJob | None:
        best: tuple[int, int] | None = None
        best_cls: JobClass | None = None
        for cls, heap in self.heaps.items():
            if not w.can_run(cls):
                continue
            while heap and heap[0][1] not in self.queued:
                heapq.heappop(heap)  # lazily drop killed entries
            if heap and (best is None or heap[0] < best):
                best, best_cls = heap[0], cls
        if best is None or best_cls is None:
            return None
        heapq.heappop(self.heaps[best_cls])
        self.queued.discard(best[1])
        return self.jobs[best[1]]

    def _dispatch(self, out: list[Any]) -> None:
        if not self.queued:
            return
        room = {w.id: self.allowance(w) - len(w.held) for w in self.workers.values()}
        # Top a worker up only once half its prefetch is used: one call then carries several jobs.
        # Holding back never idles a slot: room < prefetch/2 means the worker holds more than
        # slots + prefetch/2 jobs, so all its slots are busy.
        def wants(w: WorkerState) -> bool:
            r = room[w.id]
            return r > 0 and r >= max(1, (self.allowance(w) - w.slots) // 2)
        order = sorted((w for w in self.workers.values() if wants(w)), key=lambda w: -room[w.id])
        batches: dict[str, list[tuple[int, int]]] = {}
        while order and self.queued:
            progressed = False
            for w in order:
                take = min(room[w.id], max(1, room[w.id] // max(1, len(order))),
                           self.max_dispatch_batch - len(batches.get(w.id, ())))
                for _ in range(take):
                    job = self._pop_for(w)
                    if job is None:
                        break
                    job.attempt += 1
                    w.held[job.id] = job.attempt
                    self.location[job.id] = w.id
                    batches.setdefault(w.id, []).append((job.id, job.attempt))
                    room[w.id] -= 1
                    progressed = True
            order = [w for w in order if room[w.id] > 0 and len(batches.get(w.id, ())) < self.max_dispatch_batch]
            if not progressed:
                break
        for wid, jobs in batches.items():
            out.append(act.Dispatch(wid, jobs))

    def validate(self) -> None:
        """Check invariants; raises AssertionError describing the first violation."""
        held = {}
        for w in self.workers.values():
            for j in w.held:
                assert j not in held, f"job {j} held by {held[j]} and {w.id}"
                held[j] = w.id
        assert held == self.location, "location index out of sync"
        assert not (self.queued & set(held)), "a job is both queued and held"
        assert set(self.jobs) == self.queued | set(held), "job table out of sync"


_HANDLERS: dict[type, Any] = {
    ev.JobsSubmitted: Scheduler._submitted, ev.WorkerJoined: Scheduler._joined,
    ev.WorkerSlotsChanged: Scheduler._slots, ev.WorkerPaused: Scheduler._paused,
    ev.WorkerHeartbeat: Scheduler._heartbeat, ev.WorkerLeft: Scheduler._left,
    ev.JobsFinished: Scheduler._finished, ev.JobsHandedBack: Scheduler._handed_back,
    ev.KillRequested: Scheduler._kill, ev.Tick: Scheduler._tick,
}
