"""A worker inside a batch allocation (Slurm) stops before the allocation ends: it hands its jobs
back to the server while it still can, instead of being killed in the middle of them.

Slurm puts the allocation's projected end (a UNIX time) in ``SLURM_JOB_END_TIME``; the worker
stops *margin* seconds before it, exactly as after a SIGTERM (queued and running jobs go back to
the server, which runs them elsewhere).
"""
from __future__ import annotations

import math
import os
from typing import Any, Callable, Mapping

ENV = "SLURM_JOB_END_TIME"
#: seconds before the end at which a worker hands its jobs back by default
DEFAULT_MARGIN = 60.0


def end_time(environ: Mapping[str, str] = os.environ) -> float | None:
    """The allocation's end as a UNIX time, or None when there is none (not in a batch job, an
    unlimited job, or a value that is not a positive finite number)."""
    try:
        t = float(environ.get(ENV, ""))
    except ValueError:
        return None
    return t if math.isfinite(t) and t > 0 else None


def stop_delay(now: float, end: float, margin: float) -> float:
    """Seconds from *now* until the worker must start handing back (0 when that is past)."""
    return max(0.0, end - margin - now)


def watch_end(clock: Any, end: float | None, margin: float, on_end: Callable[[], None]) -> Any:
    """Call *on_end* once, *margin* seconds before *end* (by *clock*, whose ``seconds()`` is UNIX
    time on a real reactor); returns the delayed call, or None when there is no end."""
    if end is None:
        return None
    return clock.callLater(stop_delay(clock.seconds(), end, margin), on_end)
