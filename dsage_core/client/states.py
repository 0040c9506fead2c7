"""The client's table of job states: unfinished jobs are kept, finished ones only while something
(a handle, a list of results, the caller's own variable) still refers to them.

A notebook that maps millions of jobs and keeps only the sums must not keep every result (1 MiB
results pile up by the GiB) nor every state (full garbage collections walk all of them). A finished
job whose state was dropped is still on the server: ``get_job(id)`` fetches it again.
"""
from __future__ import annotations

import weakref
from typing import Iterator

from dsage_core.client.job import JobTracker


class StateTable:
    """Mapping job id → :class:`JobTracker`, updated on the reactor thread.

    Finished states are held by plain weak references (no callback: a ``WeakValueDictionary``
    entry costs a Python-level ``KeyedRef`` per job, ~3 us of the client's reactor time per
    no-op job); entries whose state is gone are swept when the table has doubled since the last
    sweep, so memory stays flat and each finish costs O(1) amortised.
    """

    def __init__(self) -> None:
        self._live: dict[int, JobTracker] = {}
        self._done: dict[int, "weakref.ref[JobTracker]"] = {}
        self._sweep_at = SWEEP_MIN

    def _get_done(self, job_id: int) -> JobTracker | None:
        r = self._done.get(job_id)
        return None if r is None else r()

    def get(self, job_id: int, default: JobTracker | None = None) -> JobTracker | None:
        s = self._live.get(job_id)
        if s is None:
            s = self._get_done(job_id)
        return default if s is None else s

    def __getitem__(self, job_id: int) -> JobTracker:
        s = self.get(job_id)
        if s is None:
            raise KeyError(job_id)
        return s

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._live or self._get_done(job_id) is not None  # type: ignore[arg-type]

    def __setitem__(self, job_id: int, state: JobTracker) -> None:
        if state.done:
            self._live.pop(job_id, None)
            self._keep_done(job_id, state)
        else:
            self._live[job_id] = state

    def _keep_done(self, job_id: int, state: JobTracker) -> None:
        self._done[job_id] = weakref.ref(state)
        if len(self._done) >= self._sweep_at:
            self._sweep()

    def _sweep(self) -> None:
        """Drop the entries whose state is gone; the next sweep is due at twice what is left."""
        dead = [k for k, r in self._done.items() if r() is None]
        for k in dead:
            del self._done[k]
        self._sweep_at = max(SWEEP_MIN, 2 * len(self._done))

    def setdefault(self, job_id: int, state: JobTracker) -> JobTracker:
        s = self.get(job_id)
        if s is None:
            self[job_id] = s = state
        return s

    def finished(self, state: JobTracker) -> None:
        """*state* just became terminal: from now on only its users keep it."""
        if self._live.pop(state.id, None) is not None:
            self._keep_done(state.id, state)

    def unfinished(self) -> list[int]:
        return list(self._live)

    def __len__(self) -> int:
        self._sweep()
        return len(self._live) + len(self._done)

    def __iter__(self) -> Iterator[int]:
        yield from list(self._live)
        yield from [k for k, r in list(self._done.items()) if r() is not None]


#: the finished-states table is swept once it holds this many entries, or twice as many as
#: after the last sweep
SWEEP_MIN = 4096
