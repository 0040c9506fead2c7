"""``job.wait(show_output=True)``: print a job's stdout/stderr as it arrives, then return.

The server keeps a running job's output (bounded by ``max_output``); this asks for it every
:data:`POLL` seconds while the job runs and once more when it ends, and prints what is new.
"""
from __future__ import annotations

import sys
import time
from typing import Any

#: seconds between two looks at a running job's output
POLL = 0.25


def wait_printing_output(job: Any, timeout: float | None, stream: Any = None) -> None:
    """Wait for *job* like ``job.wait(timeout)``, printing its new output to *stream* (stdout)."""
    out = stream if stream is not None else sys.stdout
    deadline = None if timeout is None else time.monotonic() + timeout
    shown = 0
    ev = job._s.event
    while True:
        left = None if deadline is None else deadline - time.monotonic()
        finished = ev.wait(POLL if left is None else max(0.0, min(POLL, left)))
        text = job.output or ""
        if len(text) > shown:
            out.write(text[shown:])
            out.flush()
            shown = len(text)
        if finished:
            return
        if left is not None and left <= POLL and not ev.is_set():
            raise TimeoutError(f"job {job.id} still {job.status} after {timeout} s")
