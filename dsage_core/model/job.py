"""The job record clients see. Its statuses and their life cycle: dsage_core.model.status."""
from __future__ import annotations

from dataclasses import dataclass, field, asdict
from typing import Any

# the statuses live in model/status.py; these names stay importable from here
from dsage_core.model.status import ALL_STATES, HELD, TERMINAL, JobStatus  # noqa: F401

#: job kinds as the payload names them
KINDS: frozenset[str] = frozenset({"expr", "exec", "func"})


@dataclass(slots=True)
class JobInfo:
    """What a client knows about one job (no result bytes; see ``Job`` for those). Slotted: the
    desktop app holds 100,000 of them, and full garbage collections walk every object."""

    id: int
    name: str = ""
    kind: str = "expr"
    status: str = JobStatus.QUEUED.value
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
