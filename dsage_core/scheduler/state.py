"""The scheduler: a pure state machine. ``handle(event) -> list[Action]``; no I/O, no clock.

Order: higher priority first, then FIFO (lower id first). There is one heap per job class
``(trusted_only, needs)``, so a job no connected worker may run never blocks the others: a worker
takes the best head among the classes it is eligible for. Killed queued jobs are deleted lazily.

After every event the scheduler dispatches: each worker with free allowance (see ``policy``) gets
at most one ``Dispatch`` per event, of at most ``max_dispatch_batch`` jobs. What does not fit comes
with the next event (a worker reporting finished jobs is one). Jobs are dealt in two phases: first
one job at a time to free slots (most free slots first, so two idle workers split a batch), then
the prefetch buffers, each worker taking an even share of what is left.

Sized jobs (a resource request: more than one slot, memory or gpus) have classes of their own and
are placed first, each on a worker whose free resources fit it now (fullest first: packing); a
worker that holds one gets no prefetch, so what it holds runs at once. When the best sized job fits
nowhere now but would fit an emptier worker, that worker gets no other jobs until it does (a
reservation: without it, a stream of one-slot jobs would keep it full forever).
"""
from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

from dsage_core.model.resources import Request, format_bytes
from dsage_core.scheduler import actions as act
from dsage_core.scheduler import events as ev
from dsage_core.scheduler.events import SchedJob
from dsage_core.scheduler.policy import JobClass, WorkerState, allowance, ewma, wants_top_up
from dsage_core.scheduler.replicas import Copies, ReplicaMoves

__all__ = ["InvalidTransition", "JobQueue", "Scheduler"]


class InvalidTransition(Exception):
    """An event that cannot happen in the current state (a bug in the caller)."""


class JobQueue:
    """Queued job ids in one heap per job class; entries carry a token so stale ones are skipped."""

    def __init__(self) -> None:
        self._heaps: dict[JobClass, list[tuple[int, int, int]]] = {}  # (-priority, id, token)
        self._token: dict[int, int] = {}                                # queued id -> live token
        self._class: dict[int, JobClass] = {}
        self._seq = 0
        self._stale = 0
        self.sized = 0                                                   # queued sized jobs

    def __len__(self) -> int:
        return len(self._token)

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._token

    def __iter__(self) -> Iterator[int]:
        return iter(self._token)

    def job_class(self, job_id: int) -> JobClass:
        """The class of a queued job."""
        return self._class[job_id]

    def push(self, job: SchedJob) -> None:
        """Queue *job* (its priority and class are read now)."""
        self._seq += 1
        if job.res is None:
            cls: JobClass = (job.trusted_only, job.needs)
        else:
            cls = (job.trusted_only, job.needs, job.res)
            self.sized += 1
        self._token[job.id] = self._seq
        self._class[job.id] = cls
        heapq.heappush(self._heaps.setdefault(cls, []), (-job.priority, job.id, self._seq))

    def push_many(self, jobs: list[SchedJob]) -> None:
        """Queue *jobs*, as :meth:`push` one by one would (a submitted batch: its jobs mostly share
        one class, looked up once per run of equal classes)."""
        token, klass, heaps = self._token, self._class, self._heaps
        push = heapq.heappush
        last_trusted: Any = None
        last_needs: Any = None
        cls: Any = None
        h: list[tuple[int, int, int]] = []
        for job in jobs:
            if job.res is not None:   # sized: its own class (rare)
                self.push(job)
                last_needs = None
                continue
            if job.needs is not last_needs or job.trusted_only is not last_trusted:
                last_trusted, last_needs = job.trusted_only, job.needs
                cls = (last_trusted, last_needs)
                h = heaps.setdefault(cls, [])
            self._seq = seq = self._seq + 1
            jid = job.id
            token[jid] = seq
            klass[jid] = cls
            push(h, (-job.priority, jid, seq))

    def remove(self, job_id: int) -> bool:
        """Drop a queued job (lazily: its heap entry is skipped later). False if it was not queued."""
        if self._token.pop(job_id, None) is None:
            return False
        if len(self._class.pop(job_id)) == 3:
            self.sized -= 1
        self._stale += 1
        if self._stale > 1024 and self._stale > len(self._token):
            self._compact()
        return True

    def pop_many(self, can_run: Callable[[JobClass], bool], n: int,
                 skip: Callable[[int], bool] | None = None) -> list[int]:
        """Take up to *n* best job ids among the classes *can_run* accepts; ids *skip* names stay
        queued (a replicated job this worker may not take)."""
        heaps = [h for cls, h in self._heaps.items() if can_run(cls)]
        if len(heaps) == 1 and skip is None:
            return self._pop_one_heap(heaps[0], n)
        taken: list[int] = []
        passed: list[tuple[list[tuple[int, int, int]], tuple[int, int, int]]] = []
        while len(taken) < n:
            best: list[tuple[int, int, int]] | None = None
            for h in heaps:
                self._skip_stale(h)
                if h and (best is None or h[0] < best[0]):
                    best = h
            if best is None:
                break
            entry = heapq.heappop(best)
            job_id = entry[1]
            if skip is not None and skip(job_id):
                passed.append((best, entry))
                continue
            del self._token[job_id]
            if self.sized and len(self._class.pop(job_id)) == 3:
                self.sized -= 1
            else:
                self._class.pop(job_id, None)
            taken.append(job_id)
        for h, entry in passed:
            heapq.heappush(h, entry)
        return taken

    def _pop_one_heap(self, h: list[tuple[int, int, int]], n: int) -> list[int]:
        """:meth:`pop_many` when one heap is eligible and nothing is skipped (the common case):
        its best *n* live entries, stale ones dropped on the way."""
        token, klass = self._token, self._class
        taken: list[int] = []
        if n <= 0:
            return taken
        if 4 * n >= len(h):
            # a large share of the heap: sort it (a sorted list is a heap, and a heap of jobs
            # pushed in id order is nearly sorted already) and cut the taken prefix off
            h.sort()
            i = 0
            for entry in h:
                i += 1
                jid = entry[1]
                if token.get(jid) != entry[2]:
                    self._stale -= 1
                    continue
                del token[jid]
                if len(klass.pop(jid)) == 3:
                    self.sized -= 1
                taken.append(jid)
                if len(taken) == n:
                    break
            del h[:i]
            return taken
        pop = heapq.heappop
        while h:
            entry = pop(h)
            jid = entry[1]
            if token.get(jid) != entry[2]:
                self._stale -= 1
                continue
            del token[jid]
            if len(klass.pop(jid)) == 3:
                self.sized -= 1
            taken.append(jid)
            if len(taken) == n:
                break
        return taken

    def _skip_stale(self, h: list[tuple[int, int, int]]) -> None:
        while h and self._token.get(h[0][1]) != h[0][2]:
            heapq.heappop(h)
            self._stale -= 1

    def _compact(self) -> None:
        for h in self._heaps.values():
            h[:] = [e for e in h if self._token.get(e[1]) == e[2]]
            heapq.heapify(h)
        self._stale = 0

    def validate(self) -> None:
        """Every queued id has exactly one live heap entry, in the heap of its class."""
        live: dict[int, JobClass] = {}
        for cls, h in self._heaps.items():
            for _, job_id, token in h:
                if self._token.get(job_id) == token:
                    assert job_id not in live, f"job {job_id} has two live heap entries"
                    live[job_id] = cls
        assert live == self._class, "queue heaps out of sync with the queued set"
        assert set(self._class) == set(self._token), "queue class index out of sync"
        assert self.sized == sum(len(c) == 3 for c in self._class.values()), "sized count out of sync"

    def sized_heads(self) -> list[tuple[tuple[int, int, int], JobClass]]:
        """The best queued entry of each sized class, best first."""
        heads = []
        for cls, h in self._heaps.items():
            if len(cls) == 3:
                self._skip_stale(h)
                if h:
                    heads.append((h[0], cls))
        return sorted(heads)


class Scheduler(ReplicaMoves):
    """Decides which worker runs which job; see the module docstring. Replicated jobs (k copies on
    distinct workers) are handled by :class:`~dsage_core.scheduler.replicas.ReplicaMoves`.

    Public read-only state (for queries, the server's describe views and tests): ``jobs`` (every
    job queued or held, by id), ``workers`` (``WorkerState`` by id), ``log`` (the last 1000 events).
    """

    def __init__(self, *, max_failures: int = 3, lease_timeout: float = 15.0, prefetch_seconds: float = 0.2,
                 max_prefetch_per_slot: int = 500, max_dispatch_batch: int = 1000) -> None:
        self.max_failures = max_failures
        self.lease_timeout = lease_timeout
        self.prefetch_seconds = prefetch_seconds
        self.max_prefetch_per_slot = max_prefetch_per_slot
        self.max_dispatch_batch = max_dispatch_batch
        self.jobs: dict[int, SchedJob] = {}
        self.workers: dict[str, WorkerState] = {}
        self.log: deque[ev.Event] = deque(maxlen=1000)
        self._queue = JobQueue()
        self._location: dict[int, str] = {}       # held job id -> worker id
        self._kill_pending: set[int] = set()      # held jobs whose kill was requested
        self._copies: dict[int, Copies] = {}      # replicated jobs (replicas > 1)

    # ------------------------------------------------------------------ queries
    @property
    def queued_count(self) -> int:
        """Jobs waiting in the queue."""
        return len(self._queue)

    @property
    def running_count(self) -> int:
        """Jobs held by workers (running or prefetched; a replicated job counts once)."""
        if self._copies:
            return len(self._location) + sum(1 for c in self._copies.values() if c.holders)
        return len(self._location)

    @property
    def slots_total(self) -> int:
        """Slots over all connected workers."""
        return sum(w.slots for w in self.workers.values())

    @property
    def slots_busy(self) -> int:
        """Slots with a job: per worker, min(held, slots)."""
        return sum(min(len(w.held), w.slots) for w in self.workers.values())

    def worker_ids(self) -> list[str]:
        """Connected workers, in join order."""
        return list(self.workers)

    def held_by(self, worker_id: str) -> list[int]:
        """Job ids a worker holds, in dispatch order."""
        return list(self.workers[worker_id].held)

    def job_location(self, job_id: int) -> tuple[str, int] | None:
        """``(worker_id, attempt)`` of a held job, else None."""
        wid = self._location.get(job_id)
        if wid is None and job_id in self._copies:
            wid = next(iter(self._copies[job_id].holders), None)  # its first copy still out
        return None if wid is None else (wid, self.workers[wid].held[job_id])

    def is_queued(self, job_id: int) -> bool:
        """Whether the job waits in the queue."""
        return job_id in self._queue

    def allowance(self, worker_id: str) -> int:
        """How many jobs a worker may hold now (running plus prefetched)."""
        w = self.workers[worker_id]
        a = allowance(w.slots, w.avg_duration, w.paused, self.prefetch_seconds, self.max_prefetch_per_slot)
        if w.sized:  # no prefetch beside a sized job: the worker runs what it holds at once
            a = min(a, w.slots)
        return max(0, a - w.cpus_extra)

    def waiting_reason(self, job_id: int) -> str | None:
        """Why a queued job cannot run on any connected worker; None when it simply waits its turn."""
        if job_id not in self._queue:
            return None
        cls = self._queue.job_class(job_id)
        trusted_only, needs = cls[0], cls[1]
        if not self.workers:
            return "no workers connected"
        trusted = [w for w in self.workers.values() if not (trusted_only and w.anonymous)]
        if not trusted:
            return "trusted-only: waiting for a keyed (non-anonymous) worker"
        capable = [w for w in trusted if needs <= w.capabilities]
        if not capable:
            missing = sorted(needs - frozenset().union(*(w.capabilities for w in trusted)))
            if missing:
                return f"no connected worker can run {', '.join(missing)} jobs"
            return f"no connected worker has all of: {', '.join(sorted(needs))}"
        if len(cls) == 3 and not any(w.could_fit(cls[2]) for w in capable):
            return _too_big(cls[2], capable)
        if not any(self.allowance(w.id) for w in capable):
            return "every worker that can run it is paused or has no slots"
        c = self._copies.get(job_id)
        if c is not None:
            if c.keyed_only:
                return "replicas disagree: waiting for a keyed (non-anonymous) worker to decide"
            if all(w.id in c.used for w in capable):
                return (f"replicas: {c.k - c.want} of {c.k} copies placed; waiting for another "
                        "worker (never two copies on one worker)")
        return None

    # ------------------------------------------------------------------ events
    def handle(self, event: ev.Event) -> list[act.Action]:
        """Apply one event; returns the actions to carry out, dispatches last."""
        self.log.append(event)
        handler = _TRANSITIONS.get(type(event))
        if handler is None:
            raise InvalidTransition(f"unknown event {event!r}")
        out: list[act.Action] = []
        handler(self, event, out)
        self._dispatch(out)
        return out

    def _submitted(self, e: ev.JobsSubmitted, out: list[act.Action]) -> None:
        ids = [job.id for job in e.jobs]
        if len(set(ids)) != len(ids) or any(i in self.jobs for i in ids):
            dup = next(i for n, i in enumerate(ids) if i in self.jobs or i in ids[:n])
            raise InvalidTransition(f"job {dup} submitted twice")
        jobs = self.jobs
        queued = []
        for job in e.jobs:
            jobs[job.id] = job
            if job.replicas <= 1 or self._new_copies(job, out):
                queued.append(job)
        self._queue.push_many(queued)

    def _joined(self, e: ev.WorkerJoined, out: list[act.Action]) -> None:
        if e.worker_id in self.workers:
            raise InvalidTransition(f"worker {e.worker_id} joined twice")
        self.workers[e.worker_id] = WorkerState(e.worker_id, max(0, e.slots), e.anonymous,
                                                frozenset(e.capabilities), e.now,
                                                memory=max(0, e.memory), gpus=max(0, e.gpus), user=e.user)

    def _slots_changed(self, e: ev.WorkerSlotsChanged, out: list[act.Action]) -> None:
        self._worker(e.worker_id).slots = max(0, e.slots)

    def _paused(self, e: ev.WorkerPaused, out: list[act.Action]) -> None:
        self._worker(e.worker_id).paused = e.paused

    def _heartbeat(self, e: ev.WorkerHeartbeat, out: list[act.Action]) -> None:
        w = self.workers.get(e.worker_id)
        if w is not None:  # a late heartbeat from a worker that already expired is harmless
            w.last_seen = max(w.last_seen, e.now)

    def _left(self, e: ev.WorkerLeft, out: list[act.Action]) -> None:
        if e.worker_id in self.workers:  # unknown: it already expired, its jobs went back then
            self._drop_worker(e.worker_id, out)

    def _tick(self, e: ev.Tick, out: list[act.Action]) -> None:
        deadline = e.now - self.lease_timeout
        for wid in [w.id for w in self.workers.values() if w.last_seen < deadline]:
            out.append(act.WorkerExpired(wid))
            self._drop_worker(wid, out)

    def _finished(self, e: ev.JobsFinished, out: list[act.Action]) -> None:
        w = self.workers.get(e.worker_id)
        accepted: list[int] = []
        for job_id, attempt, duration in e.results:
            why = self._stale_reason(w, job_id, attempt) or (
                "a copy of a replicated job reported without its answer" if job_id in self._copies else "")
            if why:
                out.append(act.Discarded(job_id, attempt, why))
                continue
            assert w is not None
            self._release(w, job_id)
            del self.jobs[job_id]
            accepted.append(job_id)
            if job_id in self._kill_pending:
                # a killed job's run time says nothing about the worker's pace: one killed right
                # after it started would make every job look instant and open the prefetch wide
                self._kill_pending.discard(job_id)
            else:
                w.avg_duration = ewma(w.avg_duration, float(duration))
        if accepted:
            out.append(act.Accepted(accepted))

    def _handed_back(self, e: ev.JobsHandedBack, out: list[act.Action]) -> None:
        w = self.workers.get(e.worker_id)
        requeued: list[tuple[int, int]] = []
        for job_id, attempt, counts_as_failure in e.jobs:
            why = self._stale_reason(w, job_id, attempt)
            if why:
                out.append(act.Discarded(job_id, attempt, why))
                continue
            assert w is not None
            if job_id in self._copies:
                del w.held[job_id]
                self._copy_back(w, self.jobs[job_id], counts_as_failure, requeued, out)
                continue
            self._release(w, job_id)
            self._return(self.jobs[job_id], counts_as_failure, requeued, out)
        if requeued:
            out.append(act.Requeued(requeued))

    def _kill(self, e: ev.KillRequested, out: list[act.Action]) -> None:
        for job_id in e.job_ids:
            if job_id in self._copies:
                self._kill_copies(job_id, out)
            elif self._queue.remove(job_id):
                del self.jobs[job_id]
                out.append(act.KilledQueued(job_id))
            elif job_id in self._location:
                wid = self._location[job_id]
                self._kill_pending.add(job_id)
                out.append(act.KillOnWorker(wid, job_id, self.workers[wid].held[job_id]))

    # ------------------------------------------------------------------ internals
    def _worker(self, wid: str) -> WorkerState:
        w = self.workers.get(wid)
        if w is None:
            raise InvalidTransition(f"unknown worker {wid}")
        return w

    def _stale_reason(self, w: WorkerState | None, job_id: int, attempt: int) -> str:
        """Why a report about (job_id, attempt) from worker *w* does not count; "" when it does."""
        if w is None:
            return "unknown worker"
        held = w.held.get(job_id)
        if held == attempt:
            return ""
        if held is not None:
            return "stale attempt"
        return "not held by this worker" if job_id in self.jobs else "unknown job"

    def _release(self, w: WorkerState, job_id: int) -> None:
        del w.held[job_id]
        del self._location[job_id]
        if w.sized:
            res = self.jobs[job_id].res
            if res is not None:
                w.take(res, -1)

    def _return(self, job: SchedJob, failure: bool, requeued: list[tuple[int, int]],
                out: list[act.Action]) -> None:
        """A job came back from a worker: killed, lost, or queued again."""
        if failure:
            job.failures += 1
        if job.id in self._kill_pending:
            self._kill_pending.discard(job.id)
            del self.jobs[job.id]
            out.append(act.KilledQueued(job.id))
        elif job.failures > self.max_failures:
            del self.jobs[job.id]
            out.append(act.Lost(job.id, job.failures))
        else:
            self._queue.push(job)
            requeued.append((job.id, job.failures))

    def _drop_worker(self, wid: str, out: list[act.Action]) -> None:
        w = self.workers.pop(wid)
        requeued: list[tuple[int, int]] = []
        for job_id in w.held:
            if job_id in self._copies:
                self._copy_back(w, self.jobs[job_id], True, requeued, out)
                continue
            del self._location[job_id]
            self._return(self.jobs[job_id], True, requeued, out)
        if requeued:
            out.append(act.Requeued(requeued))

    def _dispatch(self, out: list[act.Action]) -> None:
        if not self._queue:
            return
        batches: dict[str, list[tuple[int, int]]] = {}
        reserved = self._place_sized(batches) if self._queue.sized else ()
        budget: dict[str, int] = {}
        for w in self.workers.values():
            if w.id in reserved:
                continue
            allowed = self.allowance(w.id)
            if wants_top_up(len(w.held), w.slots, allowed):
                budget[w.id] = min(allowed - len(w.held), self.max_dispatch_batch)
        if budget:
            self._deal_budget(budget, batches)
        out.extend(act.Dispatch(wid, jobs) for wid, jobs in batches.items())

    def _deal_budget(self, budget: dict[str, int], batches: dict[str, list[tuple[int, int]]]) -> None:
        ws = self.workers
        free = {wid: min(b, ws[wid].slots - len(ws[wid].held) - ws[wid].cpus_extra) for wid, b in budget.items()}
        self._deal(free, batches, one_at_a_time=True)
        rest = {wid: b - len(batches.get(wid, ())) for wid, b in budget.items()}
        self._deal(rest, batches, one_at_a_time=False)

    def _place_sized(self, batches: dict[str, list[tuple[int, int]]]) -> set[str]:
        """Place sized jobs where they fit now, fullest worker first; returns the workers reserved
        for the sized jobs that fit nowhere yet (see the module docstring)."""
        def free(w: WorkerState) -> int:
            return w.slots - len(w.held) - w.cpus_extra
        for w in sorted(self.workers.values(), key=lambda w: (free(w), w.id)):
            while free(w) > 0:
                ids = self._queue.pop_many(lambda c: len(c) == 3 and w.can_run(c) and w.fits_now(c[2]), 1)
                if not ids:
                    break
                self._assign(w, ids[0], batches.setdefault(w.id, []))
        reserved: set[str] = set()
        for _, cls in self._queue.sized_heads():
            able = [w for w in self.workers.values() if w.id not in reserved and not w.paused
                    and w.can_run(cls) and w.could_fit(cls[2])]
            if able:
                reserved.add(max(able, key=lambda w: (free(w), w.id)).id)
        return reserved

    def _deal(self, caps: dict[str, int], batches: dict[str, list[tuple[int, int]]], one_at_a_time: bool) -> None:
        """Deal queued jobs to workers in rounds, most capacity first, up to ``caps[worker]`` each."""
        active = sorted((wid for wid, c in caps.items() if c > 0), key=lambda wid: (-caps[wid], wid))
        while active and self._queue:
            share = 1 if one_at_a_time else -(-len(self._queue) // len(active))
            still: list[str] = []
            for wid in active:
                want = min(caps[wid], share)
                got = self._give(self.workers[wid], want, batches)
                caps[wid] -= got
                if got == want and caps[wid] > 0:  # fewer than asked: nothing left it may run
                    still.append(wid)
            active = still

    def _give(self, w: WorkerState, n: int, batches: dict[str, list[tuple[int, int]]]) -> int:
        copies = self._copies
        skip = (lambda jid: jid in copies and not self._may_take(w, jid)) if copies else None
        ids = self._queue.pop_many(lambda c: len(c) == 2 and w.can_run(c), n, skip)
        batch = batches.setdefault(w.id, []) if ids else []
        for job_id in ids:  # one-slot jobs only (sized ones go through _assign)
            job = self.jobs[job_id]
            job.attempt += 1
            w.held[job_id] = job.attempt
            if job_id in copies:
                if self._placed(w, job):
                    self._queue.push(job)   # the next copy: another worker may take it now
            else:
                self._location[job_id] = w.id
            batch.append((job_id, job.attempt))
        return len(ids)

    def _assign(self, w: WorkerState, job_id: int, batch: list[tuple[int, int]]) -> None:
        job = self.jobs[job_id]
        job.attempt += 1
        w.held[job_id] = job.attempt
        self._location[job_id] = w.id
        if job.res is not None:
            w.take(job.res)
        batch.append((job_id, job.attempt))

    def validate(self) -> None:
        """Check the invariants; raises AssertionError describing the first violation."""
        held: dict[int, str] = {}
        copies: set[int] = set()
        for w in self.workers.values():
            for job_id, attempt in w.held.items():
                assert job_id in self.jobs, f"held job {job_id} unknown"
                if job_id in self._copies:
                    assert self._copies[job_id].holders.get(w.id) == attempt, f"job {job_id}: stray copy"
                    copies.add(job_id)
                    continue
                assert job_id not in held, f"job {job_id} held by {held[job_id]} and {w.id}"
                assert self.jobs[job_id].attempt == attempt, f"job {job_id}: held attempt is not its latest"
                held[job_id] = w.id
        assert held == self._location, "location index out of sync with the workers"
        queued = set(self._queue)
        assert not (queued & set(held)), f"jobs both queued and held: {sorted(queued & set(held))[:5]}"
        assert set(self.jobs) == queued | set(held) | copies, "job table is not exactly queued + held"
        assert self._kill_pending <= set(held), "a pending kill for a job no worker holds"
        assert set(self._copies) <= set(self.jobs), "copies of a forgotten job"
        if not self._copies:
            assert self.queued_count + self.running_count == len(self.jobs), "counts inconsistent"
        for w in self.workers.values():
            reqs = [r for r in (self.jobs[j].res for j in w.held) if r is not None]
            assert (w.sized, w.cpus_extra, w.memory_used, w.gpus_used) == (
                len(reqs), sum(r.cpus - 1 for r in reqs), sum(r.memory for r in reqs),
                sum(r.gpus for r in reqs)), f"worker {w.id}: resources in use out of sync"
        self._validate_copies()
        self._queue.validate()


def _too_big(res: Request, workers: list[WorkerState]) -> str:
    """Why a sized job fits none of *workers*, even empty: the first resource none has enough of."""
    most = max(w.slots for w in workers)
    if res.cpus > most:
        return f"needs {res.cpus} cpus; the largest worker has {most}"
    fit = [w for w in workers if res.cpus <= w.slots]
    most_gpus = max(w.gpus for w in fit)
    if res.gpus > most_gpus:
        return f"needs {res.gpus} gpus; the most any worker with {res.cpus} cpus has is {most_gpus}"
    mem = max(w.memory for w in fit if res.gpus <= w.gpus)
    return (f"needs {format_bytes(res.memory)} of memory; the largest worker with the cpus and gpus "
            f"it asks for has {format_bytes(mem)}")


_TRANSITIONS: dict[type, Callable[[Scheduler, Any, list[act.Action]], None]] = {
    ev.JobsSubmitted: Scheduler._submitted,
    ev.WorkerJoined: Scheduler._joined,
    ev.WorkerSlotsChanged: Scheduler._slots_changed,
    ev.WorkerPaused: Scheduler._paused,
    ev.WorkerHeartbeat: Scheduler._heartbeat,
    ev.WorkerLeft: Scheduler._left,
    ev.JobsFinished: Scheduler._finished,
    ev.ReplicasFinished: Scheduler._replicas_finished,
    ev.JobsHandedBack: Scheduler._handed_back,
    ev.KillRequested: Scheduler._kill,
    ev.Tick: Scheduler._tick,
}
"""Which method handles which event (dask's ``_TRANSITIONS_TABLE`` idea)."""
