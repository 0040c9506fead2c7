"""In-memory record of a job the server is still responsible for (checks of a submit:
:mod:`dsage_core.server.intake`)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dsage_core.model.records import UNTRUSTED_RESULT
from dsage_core.model.status import JobStatus

TRUNCATED = "\n[dsage: output truncated after {n} bytes]\n"


@dataclass(slots=True)
class ActiveJob:
    """A job that is queued, running, or finishing (terminal but not yet committed)."""

    id: int
    owner: str
    name: str
    kind: str
    priority: int
    trusted_only: bool
    needs: frozenset[str]
    payload: bytes
    blob_id: str | None
    timeout: float | None
    limits: dict[str, Any] | None
    created: float
    code: str | None = None
    ext: dict[str, Any] | None = None   #: extra options (dsage_core.model.ext)
    status: str = JobStatus.QUEUED.value
    attempt: int = 0
    failures: int = 0
    worker: str | None = None
    started: float | None = None
    finished: float | None = None
    output: list[str] = field(default_factory=list)
    output_len: int = 0
    output_truncated: bool = False
    progress: float | None = None
    progress_message: str = ""
    kill_requested: bool = False
    result: bytes | None = None
    result_preview: str | None = None
    error: str | None = None
    result_file: str | None = None   #: a large result in a file a local worker wrote
    result_size: int = 0
    blob_held: bool = False   #: counts as a reference to its function blob (see server/blobs.py)
    #: its terminal state was committed (or its commit failed): only then may pushes carry it
    announced: bool = False
    replicas: Any = None   #: a replicated job's copies and answers (server.replicas.Replicas)
    #: the exception it raised (model/exc_info.py, as the server keeps it), once failed
    exc: dict[str, Any] | None = None
    retried: int = 0   #: runs that raised and were retried (the ``retries`` option)
    cancel_only: bool = False         #: its kill is a cancel: a worker spares it once running
    kill_requested_hard: bool = False  #: a plain kill was asked for (it wins over a cancel)
    #: its result came from a worker that may not pickle for its owner (see server/deps.py)
    result_untrusted: bool = False

    def add_output(self, text: str, limit: int) -> None:
        """Append captured output, keeping at most *limit* characters and marking the cut."""
        if self.output_truncated:
            return
        room = limit - self.output_len
        if len(text) > room:
            text = text[:max(room, 0)] + TRUNCATED.format(n=limit)
            self.output_truncated = True
        self.output.append(text)
        self.output_len += len(text)

    def output_text(self) -> str:
        if len(self.output) > 1:
            self.output[:] = ["".join(self.output)]
        return self.output[0] if self.output else ""

    def update(self) -> list[Any]:
        """The job as clients see it: a :class:`~dsage_core.model.records.JobUpdate`'s wire form,
        built as a list in its field order (once per push: the record's constructor would cost
        more than the rest of this method; ``tests/core/test_server_table.py`` checks the order)."""
        result: Any = self.result
        if result is None and self.result_file is not None:
            result = {"file": self.result_file, "size": self.result_size}  # see local_results
        rec = [self.id, self.status, self.worker, self.started, self.finished, result,
               self.result_preview, self.error, self.progress, self.progress_message,
               self.attempt, self.name, self.created, self.priority, self.kind]
        extra = {"replicas": self.replicas.text()} if self.replicas is not None else None
        if self.result_untrusted:   # the client must not unpickle this result (model/records.py)
            extra = {**(extra or {}), UNTRUSTED_RESULT: 1}
        if extra is not None or self.exc is not None:
            rec.append(extra)   # the optional 16th field
        if self.exc is not None:
            rec.append(self.exc)   # the optional 17th
        return rec
