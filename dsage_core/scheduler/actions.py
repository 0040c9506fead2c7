"""Actions the scheduler asks its owner to carry out."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Dispatch:
    worker_id: str
    jobs: list[tuple[int, int]]     #: (job_id, attempt)


@dataclass(frozen=True, slots=True)
class Requeued:
    jobs: list[tuple[int, int]]     #: (job_id, failures)


@dataclass(frozen=True, slots=True)
class Lost:
    job_id: int
    failures: int


@dataclass(frozen=True, slots=True)
class KilledQueued:
    job_id: int


@dataclass(frozen=True, slots=True)
class KillOnWorker:
    worker_id: str
    job_id: int
    attempt: int


@dataclass(frozen=True, slots=True)
class Accepted:
    job_ids: list[int]


@dataclass(frozen=True, slots=True)
class Discarded:
    job_id: int
    attempt: int
    reason: str


@dataclass(frozen=True, slots=True)
class WorkerExpired:
    worker_id: str
