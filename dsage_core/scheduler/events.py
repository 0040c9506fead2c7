"""Events the scheduler handles.

Time always arrives inside an event (``now``); the scheduler never reads a clock. Every event is a
frozen value; ``SchedJob`` is the one mutable record: the scheduler owns the jobs handed to it in
``JobsSubmitted`` and updates their ``attempt`` and ``failures`` in place.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from dsage_core.model.resources import Request


@dataclass(slots=True)
class SchedJob:
    """A job as the scheduler sees it: identity, order, eligibility and retry counters."""

    id: int
    priority: int = 0                    #: higher runs first; FIFO (lower id first) among equals
    trusted_only: bool = False           #: never dispatched to an anonymous worker
    needs: frozenset[str] = frozenset()  #: capabilities the worker must have (e.g. {"sage"})
    attempt: int = 0                     #: times dispatched so far (the first dispatch makes it 1)
    failures: int = 0                    #: times its worker died while holding it
    res: Request | None = None           #: cpus/memory/gpus it asks for (None: one slot, the fast path)
    replicas: int = 1                    #: copies on distinct workers (dsage_core.model.replicas)
    #: answers of its copies already given (restored at server start): (attempt, digest, keyed, worker)
    answers: tuple[tuple[int, bytes, bool, str], ...] = ()


@dataclass(frozen=True, slots=True)
class JobsSubmitted:
    """New jobs, or queued jobs restored at server start (they keep their attempt and failures)."""

    jobs: list[SchedJob]


@dataclass(frozen=True, slots=True)
class WorkerJoined:
    """A worker connected and logged in at time *now*."""

    worker_id: str
    slots: int
    anonymous: bool
    capabilities: frozenset[str]
    now: float
    memory: int = 0                      #: bytes it offers to jobs that ask for memory (0: unknown)
    gpus: int = 0
    user: str = ""                       #: whose worker (copies of a job prefer distinct users)


@dataclass(frozen=True, slots=True)
class WorkerSlotsChanged:
    """A worker now runs *slots* jobs at once."""

    worker_id: str
    slots: int


@dataclass(frozen=True, slots=True)
class WorkerPaused:
    """A worker stopped (or resumed) taking new jobs; it keeps what it holds."""

    worker_id: str
    paused: bool


@dataclass(frozen=True, slots=True)
class WorkerHeartbeat:
    """A worker showed it is alive at time *now* (renews its lease)."""

    worker_id: str
    now: float


@dataclass(frozen=True, slots=True)
class WorkerLeft:
    """A worker disconnected: each job it held counts one failure and is requeued or lost."""

    worker_id: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class JobsFinished:
    """A worker reports finished jobs (completed or failed alike)."""

    worker_id: str
    results: list[tuple[int, int, float]]   #: (job_id, attempt, duration_s)


@dataclass(frozen=True, slots=True)
class ReplicasFinished:
    """A worker reports finished copies of replicated jobs, each with its answer's digest."""

    worker_id: str
    results: list[tuple[int, int, float, bytes]]   #: (job_id, attempt, duration_s, digest)


@dataclass(frozen=True, slots=True)
class JobsHandedBack:
    """A worker gives jobs back unfinished (shutdown, recycled child, ...)."""

    worker_id: str
    jobs: list[tuple[int, int, bool]]       #: (job_id, attempt, counts_as_failure)


@dataclass(frozen=True, slots=True)
class KillRequested:
    """The owner wants these jobs killed, queued or running."""

    job_ids: list[int]


@dataclass(frozen=True, slots=True)
class Tick:
    """Time passes: workers silent for longer than the lease expire."""

    now: float


Event = Union[JobsSubmitted, WorkerJoined, WorkerSlotsChanged, WorkerPaused, WorkerHeartbeat, WorkerLeft,
              JobsFinished, ReplicasFinished, JobsHandedBack, KillRequested, Tick]
