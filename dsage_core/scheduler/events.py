"""Events the scheduler handles (time always arrives inside events; the scheduler never reads a clock)."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class SchedJob:
    """A job as the scheduler sees it."""

    id: int
    priority: int = 0
    trusted_only: bool = False
    needs: frozenset[str] = frozenset()
    attempt: int = 0      #: times dispatched so far
    failures: int = 0     #: times its worker died while holding it


@dataclass(frozen=True, slots=True)
class JobsSubmitted:
    jobs: list[SchedJob]


@dataclass(frozen=True, slots=True)
class WorkerJoined:
    worker_id: str
    slots: int
    anonymous: bool
    capabilities: frozenset[str]
    now: float


@dataclass(frozen=True, slots=True)
class WorkerSlotsChanged:
    worker_id: str
    slots: int


@dataclass(frozen=True, slots=True)
class WorkerPaused:
    worker_id: str
    paused: bool


@dataclass(frozen=True, slots=True)
class WorkerHeartbeat:
    worker_id: str
    now: float


@dataclass(frozen=True, slots=True)
class WorkerLeft:
    worker_id: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class JobsFinished:
    worker_id: str
    results: list[tuple[int, int, float]]   #: (job_id, attempt, duration_s)


@dataclass(frozen=True, slots=True)
class JobsHandedBack:
    worker_id: str
    jobs: list[tuple[int, int, bool]]       #: (job_id, attempt, counts_as_failure)


@dataclass(frozen=True, slots=True)
class KillRequested:
    job_ids: list[int]


@dataclass(frozen=True, slots=True)
class Tick:
    now: float
