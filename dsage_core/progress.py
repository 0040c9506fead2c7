"""Elapsed time and ETA of jobs, and batches of jobs seen in a stream of updates (Qt-free; the
desktop app renders them). Every function takes the clock reading *now*: nothing here reads a clock.

A batch is what one submit, one ``map`` or one drop made. The app names the batches it submits
itself (:meth:`Batches.track`); jobs submitted elsewhere (a notebook's ``D.map``) are grouped as
they arrive: a new job joins the open batch of the same name and kind if it was created within
``gap`` seconds of that batch's newest job (one ``map`` reaches the server as calls of 500 jobs,
each with its own creation time).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

from dsage_core.model.job import TERMINAL
from dsage_core.model.status import JobStatus


def elapsed(job: Any, now: float) -> float | None:
    """Seconds the job has run: until it finished, or until *now* while it runs (None if it never
    started)."""
    if job.started is None:
        return None
    end = job.finished if job.finished is not None else now
    return max(0.0, end - job.started)


def job_eta(job: Any, now: float) -> float | None:
    """Seconds left for a running job, from its reported progress (None without progress)."""
    p = job.progress
    if job.status in TERMINAL or job.started is None or p is None or not 0 < p < 1:
        return None
    return max(0.0, (now - job.started) * (1 - p) / p)


def fmt_seconds(s: float | None) -> str:
    """``4.2 s``, ``3 min 05 s``, ``2 h 01 min``; empty for None."""
    if s is None:
        return ""
    if s < 60:
        return f"{s:.1f} s"
    m, sec = divmod(int(s + 0.5), 60)
    if m < 60:
        return f"{m} min {sec:02d} s"
    h, m = divmod(m, 60)
    return f"{h} h {m:02d} min"


@dataclass
class Batch:
    """Jobs of one submission as the app saw them."""

    label: str
    name: str = ""
    kind: str = ""
    first_created: float = 0.0
    last_created: float = 0.0
    status: dict[int, str] = field(default_factory=dict)   #: job id -> latest status
    partial: dict[int, float] = field(default_factory=dict)  #: running job id -> progress
    inferred: bool = True
    finished_at: float | None = None
    by_status: dict[str, int] = field(default_factory=dict)  #: kept with ``status`` (O(1) per update)

    def set(self, job_id: int, status: str) -> None:
        """Record a job's latest status."""
        old = self.status.get(job_id)
        if old == status:
            return
        if old is not None:
            self.by_status[old] -= 1
        self.status[job_id] = status
        self.by_status[status] = self.by_status.get(status, 0) + 1

    def pop(self, job_id: int) -> str:
        """Forget a job (it belongs to another batch); returns its status."""
        status = self.status.pop(job_id)
        self.by_status[status] -= 1
        self.partial.pop(job_id, None)
        return status

    @property
    def total(self) -> int:
        return len(self.status)

    @property
    def done(self) -> int:
        return sum(n for s, n in self.by_status.items() if s in TERMINAL)

    def counts(self) -> dict[str, int]:
        return {s: n for s, n in self.by_status.items() if n}

    def eta(self, now: float) -> float | None:
        """Seconds left at the pace so far (finished jobs, plus the progress of running ones)."""
        total = self.total
        if not total:
            return None
        frac = (self.done + sum(self.partial.values())) / total
        if frac >= 1:
            return 0.0
        if frac <= 0:
            return None
        return max(0.0, now - self.first_created) * (1 - frac) / frac


class Batches:
    """Groups job updates into batches; see the module docstring."""

    def __init__(self, gap: float = 2.0, keep: int = 50) -> None:
        self.gap = gap
        self.keep = keep
        self.batches: list[Batch] = []
        self._of: dict[int, Batch] = {}

    def track(self, ids: Iterable[int], label: str) -> Batch:
        """The app submitted these jobs together: one batch, named *label*."""
        b = Batch(label, inferred=False)
        for jid in ids:
            old = self._of.get(jid)
            if old is not None:  # seen (queued) before the submit's answer named it
                progress = old.partial.get(jid)
                b.set(jid, old.pop(jid))
                if progress is not None:
                    b.partial[jid] = progress
                b.first_created = min(b.first_created or old.first_created, old.first_created)
                b.last_created = max(b.last_created, old.last_created)
                if not old.status and old in self.batches:
                    self.batches.remove(old)
            else:
                b.set(jid, JobStatus.QUEUED)
            self._of[jid] = b
        self._add(b)
        return b

    def update(self, infos: Iterable[Any], now: float) -> None:
        """Apply job updates (``JobInfo``-like: id, name, kind, status, created, progress)."""
        for i in infos:
            b = self._of.get(i.id)
            if b is None:
                b = self._place(i)
            b.set(i.id, i.status)
            if i.status in TERMINAL:
                b.partial.pop(i.id, None)
            elif i.progress is not None and i.started is not None:
                b.partial[i.id] = min(1.0, max(0.0, i.progress))
            if i.created:
                b.first_created = min(b.first_created or i.created, i.created)
                b.last_created = max(b.last_created, i.created)
            if b.finished_at is None and b.done == b.total:
                b.finished_at = now
            elif b.done < b.total:
                b.finished_at = None

    def _place(self, i: Any) -> Batch:
        created = i.created or 0.0
        for b in reversed(self.batches[-8:]):
            if (b.inferred and b.name == i.name and b.kind == i.kind
                    and abs(created - b.last_created) <= self.gap):
                break
        else:
            b = Batch(i.name or f"job {i.id}", name=i.name, kind=i.kind, first_created=created,
                      last_created=created)
            self._add(b)
        self._of[i.id] = b
        return b

    def _add(self, b: Batch) -> None:
        self.batches.append(b)
        while len(self.batches) > self.keep:
            old = self.batches.pop(0)
            for jid in old.status:
                if self._of.get(jid) is old:
                    del self._of[jid]

    def current(self, min_size: int = 2) -> tuple[Batch | None, int]:
        """The newest batch of at least *min_size* jobs (running ones first), and how many other
        such batches still run."""
        big = [b for b in self.batches if b.total >= min_size]
        active = [b for b in big if b.done < b.total]
        if active:
            return active[-1], len(active) - 1
        return (big[-1] if big else None), 0

    def describe(self, b: Batch, now: float) -> str:
        """One line: ``batch 'f' · 120/500 done · 3 failed · 2 running · ETA 12.0 s``."""
        c = b.counts()
        parts = [f"{b.label}: {b.done}/{b.total} done"]
        for s in (JobStatus.FAILED, JobStatus.TIMED_OUT, JobStatus.KILLED, JobStatus.LOST, JobStatus.RUNNING,
                  JobStatus.PAUSED, JobStatus.ASSIGNED, JobStatus.QUEUED, JobStatus.WAITING):
            if c.get(s):
                parts.append(f"{c[s]} {s.replace('_', ' ')}")
        if b.done < b.total:
            eta = b.eta(now)
            parts.append(f"ETA {fmt_seconds(eta)}" if eta is not None else "ETA unknown yet")
        else:
            took = (b.finished_at or now) - b.first_created if b.first_created else None
            if took is not None:
                parts.append(f"took {fmt_seconds(took)}")
        return " · ".join(parts)
