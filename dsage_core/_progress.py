"""``dsage_core.progress(fraction, message="")``: report progress from inside a job.

Inside a worker's child it sends the value to the monitor (at most 10 per second; the latest
suppressed value is sent before the job ends, and 1.0 always goes out). Outside a job it does
nothing, so job code can be tried locally unchanged.
"""
from __future__ import annotations

import time
from typing import Any

_job: int | None = None
_chan: Any = None
_last = 0.0
_pending: tuple[float, str] | None = None
MIN_INTERVAL = 0.1


def progress(fraction: float, message: str = "") -> None:
    """Report that the current job is *fraction* (0..1) done, with an optional short message."""
    global _last, _pending
    if _job is None:
        return
    f = min(1.0, max(0.0, float(fraction)))
    msg = str(message)[:200]
    now = time.monotonic()
    if f >= 1.0 or now - _last >= MIN_INTERVAL:
        _last = now
        _pending = None
        _chan.send(["progress", _job, f, msg])
    else:
        _pending = (f, msg)


def _set_sender(job_id: int, chan: Any) -> None:
    global _job, _chan, _last, _pending
    _job, _chan, _last, _pending = job_id, chan, 0.0, None


def _flush_and_clear() -> None:
    global _job, _pending
    if _job is not None and _pending is not None:
        _chan.send(["progress", _job, _pending[0], _pending[1]])
    _job, _pending = None, None
