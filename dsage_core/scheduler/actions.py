"""Actions the scheduler asks its owner to carry out (the owner does the I/O)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Union


@dataclass(frozen=True, slots=True)
class Dispatch:
    """Send these jobs to this worker; the attempt numbers are new (results must quote them)."""

    worker_id: str
    jobs: list[tuple[int, int]]     #: (job_id, attempt)


@dataclass(frozen=True, slots=True)
class Requeued:
    """These jobs went back to the queue (their worker died or handed them back)."""

    jobs: list[tuple[int, int]]     #: (job_id, failures)


@dataclass(frozen=True, slots=True)
class Lost:
    """A job's workers died more than ``max_failures`` times: the scheduler forgot it."""

    job_id: int
    failures: int


@dataclass(frozen=True, slots=True)
class KilledQueued:
    """A killed job the scheduler dropped without it running to the end.

    Either it was still queued, or it came back from a worker (worker died, or handed it back)
    while its kill was pending; in both cases it will never be dispatched again.
    """

    job_id: int


@dataclass(frozen=True, slots=True)
class KillOnWorker:
    """Ask this worker to kill a running job; it stays held until the worker reports it."""

    worker_id: str
    job_id: int
    attempt: int


@dataclass(frozen=True, slots=True)
class Accepted:
    """These results are the real ones (right worker, right attempt): record them, exactly once."""

    job_ids: list[int]


@dataclass(frozen=True, slots=True)
class Discarded:
    """A result or hand-back that does not count (stale attempt, other worker, unknown job)."""

    job_id: int
    attempt: int
    reason: str


@dataclass(frozen=True, slots=True)
class WorkerExpired:
    """A worker's lease ran out: disconnect it (its jobs were handled as if it had left)."""

    worker_id: str


@dataclass(frozen=True, slots=True)
class ReplicaAnswered:
    """A copy's answer counts (right worker, right attempt): keep it; the job is not decided yet."""

    job_id: int
    attempt: int
    worker_id: str


@dataclass(frozen=True, slots=True)
class ReplicasDecided:
    """The copies' answers decided: the job's result is the answer of *attempt* (recorded once).
    *agree* of *of* answers agreed; *decided_by*: the keyed worker that settled a disagreement."""

    job_id: int
    attempt: int
    agree: int
    of: int
    decided_by: str | None = None


@dataclass(frozen=True, slots=True)
class ReplicasDisagree:
    """No quorum and nobody to settle it: the job fails, showing every answer."""

    job_id: int
    agree: int
    of: int
    why: str


Action = Union[Dispatch, Requeued, Lost, KilledQueued, KillOnWorker, Accepted, Discarded, WorkerExpired,
               ReplicaAnswered, ReplicasDecided, ReplicasDisagree]
