"""Throughput history for charts: fixed-size ring buffers fed by the server's periodic counters.

Qt-free; the GUI only renders it. The cost per sample is constant, whatever the number of jobs.
"""
from __future__ import annotations

from typing import Any

import numpy as np

SERIES = ("completed_per_s", "queued", "running", "busy_slots")


class History:
    """The last *capacity* samples of each series, with their times."""

    def __init__(self, capacity: int = 3600) -> None:
        self.capacity = capacity
        self.t = np.zeros(capacity)
        self.values = {name: np.zeros(capacity) for name in SERIES}
        self.n = 0
        self._last_done: tuple[float, int] | None = None

    def add(self, stats: dict[str, Any]) -> None:
        """One counters sample from the server (``time``, ``completed``, ``queued``...)."""
        now = float(stats.get("time", 0.0))
        done = sum(int(stats.get(k, 0)) for k in ("completed", "failed", "killed", "timed_out", "lost"))
        rate = 0.0
        if self._last_done is not None and now > self._last_done[0]:
            rate = max(0.0, (done - self._last_done[1]) / (now - self._last_done[0]))
        self._last_done = (now, done)
        i = self.n % self.capacity
        self.t[i] = now
        self.values["completed_per_s"][i] = rate
        for name in ("queued", "running", "busy_slots"):
            self.values[name][i] = float(stats.get(name, 0))
        self.n += 1

    def window(self, seconds: float) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Samples of the last *seconds*, oldest first."""
        k = min(self.n, self.capacity)
        if k == 0:
            return np.zeros(0), {name: np.zeros(0) for name in SERIES}
        start = self.n - k
        idx = np.arange(start, self.n) % self.capacity
        t = self.t[idx]
        keep = t >= t[-1] - seconds
        return t[keep], {name: v[idx][keep] for name, v in self.values.items()}
