"""Every record that crosses a hop, defined once. Both ends build and read them here.

A job crosses five hops (``docs/ARCHITECTURE.md``) and each hop carries positional records, because
thousands cross per second and a msgpack array is both the smallest and the fastest form. These
named tuples *are* those arrays: a record packs as the array it names (msgpack and Foolscap take
tuples as lists), ``Record.from_wire(seq)`` reads one from the array the other end sent, and no
module reads a wire field by its index. A record's optional trailing fields are left off the wire
when empty (``to_wire()``), as the peers have always sent them.

==========================  =================  =======================================
record                      hop                carried in
==========================  =================  =======================================
:class:`Submission`         client -> server   ``ClientSession.submit`` batch
:class:`RunEntry`           server -> monitor  ``WorkerRunner.run`` ``{"jobs": [...]}``
:class:`ChildRun`           monitor -> child   ``["run", [...]]`` frame
:class:`ChildDone`          child -> monitor   ``["done", [...]]`` frame
:class:`DoneEvent` & co     monitor -> server  ``WorkerSession.report`` events
:class:`KillItem`           server -> monitor  ``WorkerRunner.kill`` items
:class:`JobUpdate`          server -> client   ``jobs_changed`` pushes, ``watch`` answers
:class:`WorkerInfo`         monitor -> server  ``register`` (a map on the wire)
==========================  =================  =======================================

``from_wire`` checks the number of fields only; the receiving end checks types and ranges (the
server trusts no peer). It raises :class:`WireError`, a ``ValueError`` with a message naming the
record, which the server turns into a ``BadRequest``.
"""
from __future__ import annotations

from typing import Any, NamedTuple, Sequence


class WireError(ValueError):
    """A record arrived with the wrong shape (not a list, or too few or too many fields)."""


def _fields(cls: type, seq: Any, lo: int) -> tuple:
    """*seq* as the positional arguments of *cls*, if it has between *lo* and all of its fields."""
    if not isinstance(seq, (list, tuple)):
        raise WireError(f"malformed {cls.__name__}: expected a list, got {type(seq).__name__}")
    n = len(seq)
    hi = len(cls._fields)  # type: ignore[attr-defined]
    if not lo <= n <= hi:
        want = str(lo) if lo == hi else f"{lo} to {hi}"
        raise WireError(f"malformed {cls.__name__}: expected {want} fields, got {n}")
    return tuple(seq)


# ---------------------------------------------------------------------------------- client -> server
class Submission(NamedTuple):
    """One job of a submit batch, as the client built it (checked by ``server/jobs.py``)."""

    name: str
    kind: str                      #: "expr", "exec" or "func" (dsage_core.model.job.KINDS)
    priority: int
    trusted_only: bool
    needs: list                    #: capability names
    payload: bytes                 #: opaque msgpack map (docs/ARCHITECTURE.md "Job payload")
    blob_id: str | None            #: the function's blob (func jobs)
    timeout: float | None
    limits: dict | None            #: ``mem``/``cpu``/``out``
    code: str | None               #: what the job list shows
    ext: dict | None = None        #: the options of dsage_core.model.ext

    def to_wire(self) -> tuple:
        return self if self.ext is not None else self[:10]

    @classmethod
    def from_wire(cls, seq: Any) -> "Submission":
        return cls(*_fields(cls, seq, 10))


# --------------------------------------------------------------------------------- server -> monitor
class RunEntry(NamedTuple):
    """One job a worker is given to run."""

    job_id: int
    attempt: int
    payload: bytes
    blob_id: str | None
    timeout: float | None
    limits: dict | None
    ext: dict | None = None        #: the worker's view of the job's ext options (model/ext.py)

    def to_wire(self) -> tuple:
        return self if self.ext is not None else self[:6]

    @classmethod
    def from_wire(cls, seq: Any) -> "RunEntry":
        return cls(*_fields(cls, seq, 6))


class KillItem(NamedTuple):
    """A job the server asks a worker to kill; a *cancel* spares it if it already runs."""

    job_id: int
    attempt: int
    cancel: int = 0

    def to_wire(self) -> tuple:
        return self if self.cancel else self[:2]

    @classmethod
    def from_wire(cls, seq: Any) -> "KillItem":
        return cls(*_fields(cls, seq, 2))


# ---------------------------------------------------------------------------------- monitor <-> child
class ChildRun(NamedTuple):
    """One job as the monitor hands it to a child process."""

    job_id: int
    payload: bytes
    blob_id: str | None
    blob: bytes | None             #: the function's bytes, the first time this child needs them
    limits: dict | None            #: ``mem`` (RLIMIT_AS), ``cpu`` (seconds), ``out`` (output bytes)
    result_path: str | None = None  #: where a large result goes when the server shares the home
    ext: dict | None = None        #: ext options the child acts on (inputs, env_path, ...)

    def to_wire(self) -> tuple:
        if self.ext is not None:
            return self
        return self[:6] if self.result_path is not None else self[:5]

    @classmethod
    def from_wire(cls, seq: Any) -> "ChildRun":
        return cls(*_fields(cls, seq, 5))


class ChildDone(NamedTuple):
    """What a child says of a job it ran."""

    job_id: int
    status: str                    #: JobStatus.COMPLETED or FAILED (model/status.py CHILD_OUTCOMES)
    result: bytes | None           #: dsage_core.codec bytes, or None (failed, or in a file)
    error: str | None              #: bounded traceback text
    preview: str | None
    cpu: float
    wall: float
    file_size: int | None = None   #: the result went to ChildRun.result_path, this many bytes
    end_time: float | None = None  #: the child's time.time() when the job ended
    exc: dict | None = None        #: the exception, as model/exc_info.describe maps it

    def to_wire(self) -> tuple:
        return self if self.exc is not None else self[:9]

    @classmethod
    def from_wire(cls, seq: Any) -> "ChildDone":
        return cls(*_fields(cls, seq, 7))


# --------------------------------------------------------------------------------- monitor -> server
DONE, OUT, PROGRESS, BACK, START = "done", "out", "progress", "back", "start"


class DoneEvent(NamedTuple):
    """A job a worker finished (its result or failure)."""

    kind: str                      #: always DONE
    job_id: int
    attempt: int
    status: str                    #: model/status.py WORKER_OUTCOMES
    result: bytes | None
    preview: str | None
    error: str | None
    started: float
    finished: float
    cpu: float
    extra: dict | None = None      #: ``{"file", "size"}`` (a local result file) or ``{"exc"}``

    @classmethod
    def of(cls, job_id: int, attempt: int, status: str, result: bytes | None, preview: str | None,
           error: str | None, started: float, finished: float, cpu: float,
           extra: dict | None = None) -> "DoneEvent":
        return cls(DONE, job_id, attempt, status, result, preview, error, started, finished, cpu, extra)

    def to_wire(self) -> tuple:
        return self if self.extra is not None else self[:10]

    @property
    def result_file(self) -> dict | None:
        """The ``{"file", "size"}`` of a result the worker left in the server's home, if any."""
        x = self.extra
        return x if isinstance(x, dict) and "file" in x else None

    @property
    def exc(self) -> Any:
        """The exception map a failed job's worker sent (unchecked: see model/exc_info.clean)."""
        x = self.extra
        return x.get("exc") if isinstance(x, dict) else None

    @property
    def duration(self) -> float:
        """How long it ran, in seconds (0.0 when the times make no sense)."""
        s, f = self.started, self.finished
        if isinstance(s, (int, float)) and isinstance(f, (int, float)):
            ran = float(f) - float(s)
            return ran if 0.0 <= ran < 1e9 else 0.0   # NaN, infinities, clocks gone wrong
        return 0.0


class OutEvent(NamedTuple):
    """Output a running job printed."""

    kind: str                      #: always OUT
    job_id: int
    attempt: int
    text: str


class ProgressEvent(NamedTuple):
    """A running job's ``dsage.progress(fraction, message)``."""

    kind: str                      #: always PROGRESS
    job_id: int
    attempt: int
    fraction: float
    message: str = ""


class BackEvent(NamedTuple):
    """A job the worker hands back unrun (it stops, or cannot run it); *failed* counts a failure."""

    kind: str                      #: always BACK
    job_id: int
    attempt: int
    failed: bool
    reason: str = ""               #: why, for the server's log (workers have always sent it)


class StartEvent(NamedTuple):
    """A child started the job *age* seconds ago (an age: the clocks need not agree)."""

    kind: str                      #: always START
    job_id: int
    attempt: int
    age: float


#: kind -> (record, fewest fields on the wire)
EVENTS: dict[str, tuple[type, int]] = {DONE: (DoneEvent, 10), OUT: (OutEvent, 4),
                                       PROGRESS: (ProgressEvent, 4), BACK: (BackEvent, 4),
                                       START: (StartEvent, 4)}


def event_from_wire(seq: Any) -> Any:
    """The event record a worker's report item is; :class:`WireError` if it is none of them."""
    if not isinstance(seq, (list, tuple)) or not seq:
        raise WireError("malformed report event: expected [kind, job_id, attempt, ...]")
    spec = EVENTS.get(seq[0]) if isinstance(seq[0], str) else None
    if spec is None:
        raise WireError(f"unknown report event {str(seq[0])[:20]!r}")
    cls, lo = spec
    return cls(*_fields(cls, seq, lo))


# ---------------------------------------------------------------------------------- server -> client
#: the key in :attr:`JobUpdate.extra` that says the result was made by a worker that may not pickle
#: for the job's owner (another user's or an anonymous worker): its client must not unpickle it
UNTRUSTED_RESULT = "untrusted"


class JobUpdate(NamedTuple):
    """What a client learns of a job: pushed on every change, returned by ``watch``."""

    id: int
    status: str                    #: model/status.py JobStatus
    worker: str | None
    started: float | None
    finished: float | None
    result: Any                    #: codec bytes, ``{"file", "size"}``, ``{"missing": why}`` or None
    result_preview: str | None
    error: str | None
    progress: float | None
    progress_message: str
    attempts: int
    name: str
    created: float | None
    priority: int
    kind: str | None
    extra: dict | None = None      #: what only some jobs have, e.g. ``{"replicas": "2/2 agree"}``
    exc: dict | None = None        #: a failed job's exception (model/exc_info.py)

    def to_wire(self) -> tuple:
        if self.exc is not None:
            return self
        return self[:16] if self.extra is not None else self[:15]

    @classmethod
    def from_wire(cls, seq: Any) -> "JobUpdate":
        return cls(*_fields(cls, seq, 15))

    def as_dict(self) -> dict[str, Any]:
        return self._asdict()


# ---------------------------------------------------------------------------------- worker inventory
class WorkerInfo(NamedTuple):
    """What a worker says of itself when it registers (a map on the wire; the server checks every
    field: ``server/core.py`` ``clean_worker_info``)."""

    host: str = ""
    pid: int = 0
    slots: int = 1
    capabilities: Sequence[str] = ()
    cpus: int | None = None
    memory: int | None = None
    os: str = ""
    python: str = ""
    version: str = ""
    sage: bool = False
    gpus: int = 0
    local_token: str | None = None  #: proof that the worker shares the server's home
    address: str = ""

    def to_wire(self) -> dict[str, Any]:
        d = self._asdict()
        d["capabilities"] = list(self.capabilities)
        return d

    @classmethod
    def from_wire(cls, m: Any) -> "WorkerInfo":
        """The known fields of map *m* (unknown ones are dropped; missing ones take defaults)."""
        if not isinstance(m, dict):
            raise WireError(f"malformed WorkerInfo: expected a map, got {type(m).__name__}")
        return cls(**{k: m[k] for k in cls._fields if k in m})
