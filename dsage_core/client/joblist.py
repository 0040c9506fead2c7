"""``JobList``: what ``D.map`` and ``D.jobs()`` return. A plain ``list`` of :class:`Job` handles
(``list(D.map(...))``, indexing, slicing and ``dsage.as_completed`` work as before) that also
waits for all of its jobs with a progress bar and shows itself in a notebook."""
from __future__ import annotations

from typing import Any

from dsage_core.client.job import JobFailed
from dsage_core.model.status import JobStatus

#: jobs a repr lists in full
REPR_JOBS = 12


class JobList(list):
    """A batch of jobs. ``wait()`` returns the list once every job finished; ``results`` are
    their values (None for a job that did not complete); ``get()`` waits and returns the values,
    or raises :class:`JobFailed` for the first job that did not complete."""

    def wait(self, timeout: float | None = None, progress: bool | None = None) -> "JobList":
        """Block until every job is finished (any terminal state); TimeoutError after *timeout*.

        *progress*: a bar while waiting. None (the default) draws one when someone watches: in a
        notebook (an HTML bar in the cell) or on a terminal (on stderr, like ``dsage submit
        --wait``); True always, False never."""
        import time
        from dsage_core.client.display import BAR_INTERVAL, make_bar
        from dsage_core.waiting import as_completed, batch_progress
        jobs = list(self)
        for j in jobs[:1]:
            j._client._check_not_reactor_thread("JobList.wait")
        bar = make_bar(progress, len(jobs))
        if bar is None:
            for _ in as_completed(jobs, timeout=timeout):
                pass
            return self
        try:
            bar.update(batch_progress(jobs))
            last = time.monotonic()
            for _ in as_completed(jobs, timeout=timeout):
                now = time.monotonic()
                if now - last >= BAR_INTERVAL:
                    bar.update(batch_progress(jobs))
                    last = now
            bar.update(batch_progress(jobs))
        finally:
            bar.close()
        return self

    @property
    def results(self) -> list[Any]:
        """The jobs' values in order (None for a job that is not completed); never blocks."""
        return [j.result for j in self]

    def get(self, timeout: float | None = None, progress: bool | None = None) -> list[Any]:
        """Wait for every job and return their values in order; raise :class:`JobFailed` naming the
        first job that did not complete."""
        self.wait(timeout, progress)
        for j in self:
            if j.status != JobStatus.COMPLETED:
                raise JobFailed(f"job {j.id} {j.status}: {j.error or ''}".rstrip(": "))
        return self.results

    def done(self) -> bool:
        """True once every job reached a terminal state (never blocks)."""
        return all(j.done() for j in self)

    def progress(self) -> dict[str, Any]:
        """``{"done", "total", "fraction", "eta"}`` as :func:`dsage_core.batch_progress` computes it."""
        from dsage_core.waiting import batch_progress
        return batch_progress(self)

    def counts(self) -> dict[str, int]:
        """How many jobs are in each state."""
        from dsage_core.client.display import counts
        return counts(self)

    def kill(self) -> int:
        """Kill every unfinished job; returns how many were killed."""
        return sum(1 for j in self if not j.done() and j.kill())

    def __getitem__(self, i: Any) -> Any:
        r = super().__getitem__(i)
        return JobList(r) if isinstance(i, slice) else r

    def __repr__(self) -> str:
        """The list's repr when short; a long batch shows its ends and its counts (bounded)."""
        if len(self) <= REPR_JOBS:
            return super().__repr__()
        from dsage_core.client.display import summary
        head = ", ".join(repr(j) for j in list.__getitem__(self, slice(0, 3)))
        return f"[{head}, ..., {list.__getitem__(self, -1)!r}]  # {summary(list(self))}"

    def _repr_html_(self) -> str:
        """What Jupyter shows: counts by status, a progress bar with ETA, the first jobs."""
        from dsage_core.client.display import batch_html
        return batch_html(list(self))
