"""Job states and the job record clients see.

A job moves ``queued -> assigned -> running -> (completed | failed | killed | timed_out)``:
``assigned`` is handed to a worker ahead of time (its prefetch buffer), ``running`` has started in a
child process. A job on a paused worker is ``paused`` (running or assigned before the pause; it goes
back to that state on resume). A job whose worker died goes back to ``queued`` and, after
``max_failures`` such deaths, ends ``lost``. A job that takes other jobs' values as arguments is
``waiting`` until they completed (then ``queued``), and fails if one of them did not.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field, asdict
from typing import Any


class JobState(str, enum.Enum):
    WAITING = "waiting"      #: for its input jobs (jobs as arguments): not in the queue yet
    QUEUED = "queued"
    ASSIGNED = "assigned"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"
    KILLED = "killed"
    TIMED_OUT = "timed_out"
    LOST = "lost"

    def __str__(self) -> str:
        return self.value


TERMINAL: frozenset[str] = frozenset({"completed", "failed", "killed", "timed_out", "lost"})
ALL_STATES: tuple[str, ...] = tuple(s.value for s in JobState)
#: a worker holds the job (what the store records as 'running': requeued if the server restarts)
HELD: frozenset[str] = frozenset({"assigned", "running", "paused"})

#: job kinds as the payload names them
KINDS: frozenset[str] = frozenset({"expr", "exec", "func"})


@dataclass(slots=True)
class JobInfo:
    """What a client knows about one job (no result bytes; see ``Job`` for those). Slotted: the
    desktop app holds 100,000 of them, and full garbage collections walk every object."""

    id: int
    name: str = ""
    kind: str = "expr"
    status: str = "queued"
    owner: str = ""
    priority: int = 0
    trusted_only: bool = False
    created: float = 0.0
    started: float | None = None
    finished: float | None = None
    worker: str | None = None
    progress: float | None = None
    progress_message: str = ""
    attempts: int = 0
    result_preview: str | None = None
    error: str | None = None
    code: str | None = None
    output: str | None = None
    sage: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def done(self) -> bool:
        return self.status in TERMINAL

    @property
    def duration(self) -> float | None:
        if self.started is None:
            return None
        end = self.finished
        if end is None:
            return None
        return max(0.0, end - self.started)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "JobInfo":
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        return cls(**known)
