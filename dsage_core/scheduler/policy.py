"""Credit policy: how many jobs a worker may hold, and when it is worth topping it up.

A worker may hold ``slots`` running jobs plus a prefetch buffer so short jobs never wait for a
round trip to the server: ``prefetch = slots * clamp(floor(prefetch_seconds / avg_duration), 0,
max_prefetch_per_slot)``. Before any duration is known the prefetch is 0, so long jobs are handed
out one per free slot and never sit behind each other on one worker while another is idle.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from dsage_core.model.resources import Request

JobClass = tuple  # (bool, frozenset[str]) or (bool, frozenset[str], Request)
"""``(trusted_only, needs)``, or ``(trusted_only, needs, request)`` for a job with a resource request
(a *sized* job): jobs of one class are eligible for exactly the same workers."""

EWMA_ALPHA = 0.2
"""Weight of the newest duration in a worker's moving average."""


def ewma(avg: float | None, sample: float, alpha: float = EWMA_ALPHA) -> float:
    """The moving average after one more *sample* (negative samples count as 0)."""
    sample = max(0.0, sample)
    return sample if avg is None else (1.0 - alpha) * avg + alpha * sample


def allowance(slots: int, avg_duration: float | None, paused: bool, prefetch_seconds: float,
              max_prefetch_per_slot: int) -> int:
    """How many jobs a worker may hold (running plus prefetched); 0 when paused."""
    if paused or slots <= 0:
        return 0
    if avg_duration is None:
        return slots
    if avg_duration > 0:
        per_slot = min(max_prefetch_per_slot, math.floor(prefetch_seconds / avg_duration))
    else:
        per_slot = max_prefetch_per_slot
    return slots + slots * max(0, per_slot)


def wants_top_up(held: int, slots: int, allowed: int) -> bool:
    """True when a worker should get jobs now.

    A worker with a free slot always does. Otherwise it waits until half its prefetch buffer is
    used, so one Dispatch carries many jobs instead of one per finished job. Holding back never
    idles a slot: ``room < prefetch / 2`` means it holds more than ``slots`` jobs.
    """
    room = allowed - held
    return room > 0 and room >= max(1, (allowed - slots) // 2)


@dataclass(slots=True)
class WorkerState:
    """What the scheduler knows about one connected worker."""

    id: str
    slots: int
    anonymous: bool
    capabilities: frozenset[str]
    last_seen: float                                      #: join time or last heartbeat
    paused: bool = False
    held: dict[int, int] = field(default_factory=dict)    #: job id -> attempt, in dispatch order
    avg_duration: float | None = None                     #: EWMA of reported durations (seconds)
    memory: int = 0                                       #: bytes offered (0: unknown, no check)
    gpus: int = 0
    sized: int = 0          #: held jobs with a resource request (see dsage_core.model.resources)
    cpus_extra: int = 0     #: slots those take beyond one each
    memory_used: int = 0
    gpus_used: int = 0
    user: str = ""                                        #: whose worker (for replicas)

    def can_run(self, cls: JobClass) -> bool:
        """Whether jobs of class *cls* may run here (trust and capabilities)."""
        trusted_only, needs = cls[0], cls[1]
        return not (trusted_only and self.anonymous) and needs <= self.capabilities

    def could_fit(self, res: Request) -> bool:
        """Whether a job asking for *res* fits this worker when it is empty."""
        return (res.cpus <= self.slots and res.gpus <= self.gpus
                and (not self.memory or res.memory <= self.memory))

    def fits_now(self, res: Request) -> bool:
        """Whether a job asking for *res* fits in what this worker has free now."""
        free = self.slots - len(self.held) - self.cpus_extra
        return (not self.paused and res.cpus <= free and res.gpus <= self.gpus - self.gpus_used
                and (not self.memory or res.memory <= self.memory - self.memory_used))

    def take(self, res: Request, sign: int = 1) -> None:
        """Count a sized job in (or out, *sign* -1) of what this worker has in use."""
        self.sized += sign
        self.cpus_extra += sign * (res.cpus - 1)
        self.memory_used += sign * res.memory
        self.gpus_used += sign * res.gpus
