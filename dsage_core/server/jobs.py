"""In-memory record of a job the server is still responsible for, and input validation."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dsage_core.limits import Limits
from dsage_core.model.ext import check_ext
from dsage_core.model.resources import with_requests
from dsage_core.protocol.errors import BadRequest

TRUNCATED = "\n[dsage: output truncated after {n} bytes]\n"

#: per-job limits a submit may carry: memory bytes, CPU seconds, output bytes
JOB_LIMITS = ("mem", "cpu", "out")


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
    status: str = "queued"
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
        """The positional update record (see ``protocol.updates``)."""
        result: Any = self.result
        if result is None and self.result_file is not None:
            result = {"file": self.result_file, "size": self.result_size}  # see local_results
        rec = [self.id, self.status, self.worker, self.started, self.finished, result,
               self.result_preview, self.error, self.progress, self.progress_message,
               self.attempt, self.name, self.created, self.priority, self.kind]
        extra = {"replicas": self.replicas.text()} if self.replicas is not None else None
        if extra is not None or self.exc is not None:
            rec.append(extra)   # the optional 16th field
        if self.exc is not None:
            rec.append(self.exc)   # the optional 17th
        return rec


def _str(v: Any, what: str, limit: int, *, optional: bool = False) -> str | None:
    if v is None and optional:
        return None
    if not isinstance(v, str):
        raise BadRequest(f"{what} must be a string")
    if len(v) > limit:
        raise BadRequest(f"{what} too long: {len(v)} > limit {limit}")
    return v


def _num(v: Any, what: str, *, optional: bool = False, lo: float | None = None) -> float | None:
    if v is None and optional:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise BadRequest(f"{what} must be a number")
    if lo is not None and v < lo:
        raise BadRequest(f"{what} must be >= {lo}")
    return float(v)


def parse_submission(raw: Any, limits: Limits) -> dict[str, Any]:
    """Validate one packed job ``[name, kind, priority, trusted_only, needs, payload, blob_id,
    timeout, limits, code(, ext)]``; raise :class:`BadRequest` with a clear message."""
    if not isinstance(raw, list) or len(raw) not in (10, 11):
        raise BadRequest("each job must be a list of 10 or 11 fields")
    name, kind, priority, trusted, needs, payload, blob_id, timeout, jlimits, code = raw[:10]
    try:
        ext = check_ext(raw[10] if len(raw) == 11 else None)
    except ValueError as e:
        raise BadRequest(str(e)) from None
    name = _str(name, "job name", limits.max_name)
    if kind not in ("expr", "exec", "func"):
        raise BadRequest(f"unknown job kind {kind!r}")
    if isinstance(priority, bool) or not isinstance(priority, int) or abs(priority) > 2**31:
        raise BadRequest("priority must be an int")
    if not isinstance(trusted, bool):
        raise BadRequest("trusted_only must be a bool")
    if not isinstance(needs, list) or len(needs) > 8 or not all(isinstance(n, str) and len(n) < 32 for n in needs):
        raise BadRequest("needs must be a short list of capability names")
    if not isinstance(payload, bytes):
        raise BadRequest("payload must be bytes")
    if len(payload) > limits.max_payload:
        raise BadRequest(f"job payload too large: {len(payload)} bytes > limit {limits.max_payload}")
    blob_id = _str(blob_id, "blob id", 80, optional=True)
    if kind == "func" and blob_id is None:
        raise BadRequest("a function job needs a blob id")
    timeout = _num(timeout, "timeout", optional=True, lo=0)
    if jlimits is not None:
        if not isinstance(jlimits, dict) or len(jlimits) > 8:
            raise BadRequest("limits must be a small map")
        for k, v in jlimits.items():
            if k not in JOB_LIMITS:
                raise BadRequest(f"unknown job limit {k!r}; valid: {', '.join(JOB_LIMITS)}")
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0:
                raise BadRequest(f"bad job limit {k!r}={v!r} (a positive number)")
    code = _str(code, "code", limits.max_code, optional=True)
    if ext:  # resource requests: needs= joins the needs field, memory= is also the memory limit
        needs, jlimits = with_requests(ext, needs, jlimits)
    return dict(name=name, kind=kind, priority=priority, trusted_only=trusted,
                needs=frozenset(needs), payload=payload, blob_id=blob_id, timeout=timeout,
                limits=jlimits, code=code, ext=ext)
