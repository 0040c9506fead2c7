"""The server's side of replicas: the answers of a replicated job's copies, checked and kept until
the scheduler's quorum decides (see ``dsage_core.model.replicas`` for the rules).

Durability: each answer is written to the ``replica_answers`` table as it is counted (before the
job's result, on the same store thread), so a restart mid-quorum keeps the answers already given and
places only the copies still missing. When the job is decided its agreement text goes into the job's
``ext`` (``"agreement"``) and its answer rows are deleted.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from dsage_core import codec
from dsage_core.limits import Limits
from dsage_core.model.records import DoneEvent
from dsage_core.model.replicas import agree_text, answer_digest, answer_line, disagreement_text
from dsage_core.model.status import WORKER_OUTCOMES, JobStatus

STATUSES = WORKER_OUTCOMES
COMPLETED, FAILED = JobStatus.COMPLETED.value, JobStatus.FAILED.value


@dataclass(slots=True)
class ReplicaAnswer:
    """One copy's answer, checked (a row of ``replica_answers``)."""

    attempt: int
    worker: str
    user: str
    anonymous: bool
    status: str
    result: bytes | None
    preview: str | None
    error: str | None
    started: float | None
    finished: float | None
    digest: bytes = b""

    def row(self, job_id: int) -> tuple[Any, ...]:
        return (job_id, self.attempt, self.worker, self.user, int(self.anonymous), self.status, self.digest,
                self.result, self.preview, self.error, self.started, self.finished)

    @classmethod
    def from_row(cls, r: dict[str, Any]) -> "ReplicaAnswer":
        return cls(r["attempt"], r["worker"], r["user"], bool(r["anonymous"]), r["status"], r["result"],
                   r["preview"], r["error"], r["started"], r["finished"], r["digest"])


@dataclass(slots=True)
class Replicas:
    """A replicated job's copies as the server sees them: k, the answers, and the verdict's text."""

    k: int
    answers: list[ReplicaAnswer] = field(default_factory=list)
    agreement: str | None = None   #: set once decided ("2/2 agree", "1/2 agree: disagreement ...")

    def text(self) -> str:
        """What clients are shown: the agreement once decided, else how many answered."""
        return self.agreement or f"{len(self.answers)}/{self.k} answered"

    def answer(self, attempt: int) -> ReplicaAnswer | None:
        return next((a for a in self.answers if a.attempt == attempt), None)

    def decided(self, agree: int, of: int, decided_by: str | None) -> str:
        self.agreement = agree_text(agree, of, decided_by)
        return self.agreement

    def disagreement(self, agree: int, of: int, why: str) -> str:
        """The failed job's error (every answer, bounded) and its agreement text."""
        self.agreement = f"{agree}/{of} agree: disagreement ({why})"
        lines = [answer_line(a.worker, "" if a.anonymous else a.user, a.status, a.preview, a.error)
                 for a in self.answers]
        return disagreement_text(agree, of, lines, why)


def replicas_wanted(ext: dict[str, Any] | None, trusted_only: bool, anonymous_default: int) -> int:
    """How many copies a job gets: its own ``replicas`` option, else the server's
    ``--anonymous-replicas`` default for jobs that may run on anonymous workers, else 1."""
    own = (ext or {}).get("replicas")
    if own is not None:
        return int(own)
    return 1 if trusted_only else max(1, anonymous_default)


def with_replicas(ext: dict[str, Any] | None, k: int) -> dict[str, Any] | None:
    """*ext* recording the number of copies (stored, and shown to the worker: no result files)."""
    if k <= 1:
        return ext
    return {**(ext or {}), "replicas": k}


def check_answer(d: DoneEvent, worker: str, user: str, anonymous: bool, limits: Limits) -> ReplicaAnswer:
    """A done event of a copy as an answer: the same checks as a one-copy result (status, bytes,
    size, plain data from anonymous workers); result files are refused (copies return bytes)."""
    attempt, status, result, preview, error = d.attempt, d.status, d.result, d.preview, d.error
    started, finished = d.started, d.finished
    if status not in STATUSES:
        status, error = FAILED, f"worker reported an unknown status {str(status)[:40]!r}"
    if d.extra is not None:
        status, result, error = FAILED, None, "a copy of a replicated job answered with a result file"
    if result is not None and not isinstance(result, bytes):
        status, result, error = FAILED, None, "worker sent a malformed result"
    if result is not None and len(result) > limits.max_result:
        status, result, error = FAILED, None, f"result too large: {len(result)} bytes > limit {limits.max_result}"
    if result is not None and anonymous and not codec.is_plain(result):
        status, result = FAILED, None
        error = ("the job's result is not plain data, and results produced by an anonymous worker "
                 "are never unpickled; return plain data (numbers, strings, lists, dicts...)")
    if status != COMPLETED:
        result = None
    a = ReplicaAnswer(attempt, worker, user, anonymous, status, result,
                      preview[:200] if isinstance(preview, str) else None,
                      error[: limits.max_error] if isinstance(error, str) else None,
                      float(started) if isinstance(started, (int, float)) else None,
                      float(finished) if isinstance(finished, (int, float)) else None)
    a.digest = answer_digest(a.status, a.result, a.error)
    return a


def extra_of(ext_json: str | None) -> dict[str, Any] | None:
    """The ``extra`` clients are shown for a stored job: ``{"replicas": agreement}`` or None."""
    if not ext_json or '"agreement"' not in ext_json:
        return None
    agreement = json.loads(ext_json).get("agreement")
    return {"replicas": agreement} if isinstance(agreement, str) else None
