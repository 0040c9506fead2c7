"""Throughput history for charts: fixed-size ring buffers fed by the server's periodic counters,
and the one rate meter (the server's ``rate_1m``, the GUI's updates/s).

Qt-free; the GUI only renders it. The cost per sample is constant, whatever the number of jobs.
Time is never read here except through the clock a caller injects (``RateMeter(clock=...)``).
numpy is imported by the chart buffers only: the server imports :class:`RateMeter` without it.
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Callable

from dsage_core.model.status import JobStatus

if TYPE_CHECKING:
    import numpy as np

#: the server's counters of jobs by status are keyed by the status's string
_GAUGES = (JobStatus.QUEUED.value, JobStatus.RUNNING.value, "busy_slots")
SERIES = ("completed_per_s", *_GAUGES)
FINISHED_COUNTERS = tuple(s.value for s in (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.KILLED,
                                            JobStatus.TIMED_OUT, JobStatus.LOST))


class RingBuffer:
    """The last *capacity* floats pushed, readable oldest first."""

    def __init__(self, capacity: int) -> None:
        import numpy as np
        self.capacity = capacity
        self.data = np.zeros(capacity)
        self.n = 0

    def push(self, value: float) -> None:
        self.data[self.n % self.capacity] = value
        self.n += 1

    def __len__(self) -> int:
        return min(self.n, self.capacity)

    def values(self) -> np.ndarray:
        """A copy, oldest first."""
        import numpy as np
        k = len(self)
        return self.data[np.arange(self.n - k, self.n) % self.capacity]


class History:
    """The last *capacity* counter samples of each series, with their (server) times."""

    def __init__(self, capacity: int = 3600) -> None:
        self.capacity = capacity
        self.t = RingBuffer(capacity)
        self.series = {name: RingBuffer(capacity) for name in SERIES}
        self._last_done: tuple[float, int] | None = None

    @property
    def n(self) -> int:
        return self.t.n

    def add(self, stats: dict[str, Any]) -> None:
        """One counters sample from the server (``time``, ``completed``, ``queued``...); the completion
        rate is the change of the finished counters over the change of the server's time."""
        now = float(stats.get("time", 0.0))
        done = sum(int(stats.get(k, 0)) for k in FINISHED_COUNTERS)
        rate = 0.0
        if self._last_done is not None and now > self._last_done[0]:
            rate = max(0.0, (done - self._last_done[1]) / (now - self._last_done[0]))
        self._last_done = (now, done)
        self.t.push(now)
        self.series["completed_per_s"].push(rate)
        for name in _GAUGES:
            self.series[name].push(float(stats.get(name, 0)))

    def window(self, seconds: float) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Samples of the last *seconds* (counted back from the newest sample), oldest first."""
        import numpy as np
        t = self.t.values()
        if len(t) == 0:
            return t, {name: np.zeros(0) for name in SERIES}
        keep = t >= t[-1] - seconds
        return t[keep], {name: b.values()[keep] for name, b in self.series.items()}


class RateMeter:
    """Events per second over the last *window* seconds, in one-second buckets.

    ``clock`` is injected (``time.monotonic`` by default) so tests drive it by hand; the server
    passes its reactor's ``seconds``. :meth:`add` is O(1) (it runs once per finished job on the
    server): only a change of second clears the buckets that scrolled out.
    """

    def __init__(self, window: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.window = max(1, int(window))
        self.clock = clock
        self.buckets = [0] * self.window
        self._second = int(clock())

    def _advance(self, now: int) -> None:
        gap = now - self._second
        if gap >= self.window:
            self.buckets = [0] * self.window
        else:
            for s in range(self._second + 1, now + 1):
                self.buckets[s % self.window] = 0
        self._second = max(self._second, now)

    def add(self, count: int = 1) -> None:
        """Count *count* events now."""
        now = int(self.clock())
        if now != self._second:
            self._advance(now)
        self.buckets[now % self.window] += count

    def rate(self) -> float:
        """Mean events/s over the full window (the current, partial second included)."""
        self._advance(int(self.clock()))
        return sum(self.buckets) / self.window
