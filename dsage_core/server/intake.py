"""Intake: a submitted batch checked field by field, given ids, and turned into jobs and rows.

Each packed job is parsed straight into its :class:`~dsage_core.server.jobs.ActiveJob` (no spec
map in between: on the path of every job, the intermediate shape cost as much as the checks);
:meth:`Intake.make_jobs` then gives the checked jobs their ids and creation time.

:class:`Intake` holds what a submit needs besides the job table: the next job id, the blob table
(a function job names a blob its owner uploaded), and the server's options for anonymous workers
(``--anonymous-packages``, ``--anonymous-replicas``). It does no I/O: the server stores the rows it
returns (:mod:`dsage_core.server.commits`).
"""
from __future__ import annotations

from typing import Any

from dsage_core.limits import Limits
from dsage_core.model.ext import check_ext, encode as ext_encode
from dsage_core.model.job import KINDS
from dsage_core.model.records import Submission
from dsage_core.model.resources import request_of, with_requests
from dsage_core.protocol.envelope import pack, unpack
from dsage_core.protocol.errors import BadRequest, QuotaExceeded, UnknownBlob
from dsage_core.server import replicas as rep
from dsage_core.server.jobs import ActiveJob
from dsage_core.store import NewJob

#: per-job limits a submit may carry: memory bytes, CPU seconds, output bytes
JOB_LIMITS = ("mem", "cpu", "out")
#: the wire form of one job of a submit; parse_submission unpacks it in this order
FIELDS = Submission._fields


class Intake:
    """Checks submits and makes their jobs; all on the reactor thread."""

    def __init__(self, limits: Limits, blob_table: Any) -> None:
        self.limits = limits
        self.blob_table = blob_table
        self.next_id = 1
        #: jobs with packages= may go to anonymous workers (``dsage server --anonymous-packages``)
        self.anonymous_packages = False
        #: copies of each job that may run on anonymous workers and does not ask for its own
        #: number (``dsage server --anonymous-replicas``)
        self.anonymous_replicas = 1

    def check(self, owner: str, raw_jobs: list[Any]) -> tuple[list[ActiveJob], dict[str, int]]:
        """The batch's jobs (of *owner*, without ids yet: :meth:`make_jobs`) and how many of them
        use each blob; raises :class:`BadRequest` (a malformed job, too many jobs) or
        :class:`UnknownBlob` (a blob *owner* does not hold)."""
        if len(raw_jobs) > self.limits.max_batch_jobs:
            raise BadRequest(f"too many jobs in one call: {len(raw_jobs)} > {self.limits.max_batch_jobs}")
        limits = self.limits
        specs = [parse_submission(r, limits, owner) for r in raw_jobs]
        uses: dict[str, int] = {}
        packages_trusted = not self.anonymous_packages
        for s in specs:
            if s.ext and packages_trusted and "packages" in s.ext:
                s.trusted_only = True   # an anonymous worker is nobody's to install packages on
            b = s.blob_id
            if b:
                uses[b] = uses.get(b, 0) + 1
        for b in uses:
            if not self.blob_table.has(owner, b):
                raise UnknownBlob(f"unknown function blob {b[:80]}: upload it first (a blob is "
                                  f"freed once no unfinished job of yours needs it)")
        return specs, uses

    def check_quota(self, queued: int, n: int) -> None:
        """Raise :class:`QuotaExceeded` if *n* more jobs would put a user over the queued quota."""
        if queued + n > self.limits.max_queued_per_user:
            raise QuotaExceeded(f"queued-jobs quota reached: {queued} queued, limit "
                                f"{self.limits.max_queued_per_user}; wait for some to finish")

    def make_jobs(self, owner: str, jobs: list[ActiveJob], uses: dict[str, int],
                  now: float) -> list[ActiveJob]:
        """The checked *jobs* (of *owner*), given the next ids and *now* as their creation time,
        one blob reference each, and the copies the server's replica option asks for."""
        jid = self.next_id
        self.next_id += len(jobs)
        for j in jobs:
            j.id = jid
            j.created = now
            jid += 1
            if j.blob_id is not None:
                j.blob_held = True
        for b, n in uses.items():   # one reference per job: the blob stays while any is unfinished
            self.blob_table.acquire(owner, b, n)
        if self.anonymous_replicas > 1 or any(j.ext for j in jobs):
            for j in jobs:
                if request_of(j.ext) is None:   # a sized job runs once (checked in _check_combinations)
                    j.ext = rep.with_replicas(j.ext, rep.replicas_wanted(j.ext, j.trusted_only,
                                                                         self.anonymous_replicas))
        return jobs


def new_rows(jobs: list[ActiveJob], now: float) -> list[NewJob]:
    """The store rows that insert *jobs*."""
    # tuple.__new__ with all 14 fields: what NewJob(...) makes, without its Python-level __new__
    return [_make(NewJob, (j.id, j.owner, j.name, j.kind, j.priority, j.trusted_only,
                           ",".join(sorted(j.needs)) if j.needs else "", j.payload, j.blob_id, j.timeout,
                           pack(j.limits) if j.limits else None, j.code, now,
                           ext_encode(j.ext) if j.ext else None))
            for j in jobs]


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


def _limits_of(jlimits: Any) -> dict[str, Any] | None:
    if jlimits is None:
        return None
    if not isinstance(jlimits, dict) or len(jlimits) > 8:
        raise BadRequest("limits must be a small map")
    for k, v in jlimits.items():
        if k not in JOB_LIMITS:
            raise BadRequest(f"unknown job limit {k!r}; valid: {', '.join(JOB_LIMITS)}")
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0:
            raise BadRequest(f"bad job limit {k!r}={v!r} (a positive number)")
    return jlimits


_NO_NEEDS: frozenset[str] = frozenset()
_make = tuple.__new__   # a NamedTuple from a tuple of exactly its fields


def parse_submission(raw: Any, limits: Limits, owner: str = "") -> ActiveJob:
    """Validate one packed job (a :class:`~dsage_core.model.records.Submission`) of *owner*; raise
    :class:`BadRequest` with a clear message. The job has no id yet (0; see :meth:`Intake.make_jobs`)."""
    if not isinstance(raw, list) or len(raw) not in (10, 11):
        raise BadRequest("each job must be a list of 10 or 11 fields")
    # unpacked in Submission's field order (Submission.from_wire would build the same fields by
    # name; on the path of every job, unpacking costs a third of it)
    if len(raw) == 11:
        name, kind, priority, trusted, needs, payload, blob_id, timeout, jlimits, code, ext = raw
    else:
        name, kind, priority, trusted, needs, payload, blob_id, timeout, jlimits, code = raw
        ext = None
    try:
        ext = check_ext(ext)
    except ValueError as e:
        raise BadRequest(str(e)) from None
    name = _str(name, "job name", limits.max_name)
    if kind not in KINDS:
        raise BadRequest(f"unknown job kind {kind!r}")
    if isinstance(priority, bool) or not isinstance(priority, int) or abs(priority) > 2**31:
        raise BadRequest("priority must be an int")
    if not isinstance(trusted, bool):
        raise BadRequest("trusted_only must be a bool")
    if not isinstance(needs, list) or len(needs) > 8 or (
            needs and not all(isinstance(n, str) and len(n) < 32 for n in needs)):
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
        jlimits = _limits_of(jlimits)
    code = _str(code, "code", limits.max_code, optional=True)
    if ext:  # resource requests: needs= joins the needs field, memory= is also the memory limit
        needs, jlimits = with_requests(ext, needs, jlimits)
    # positional, in ActiveJob's field order (its keyword form costs more on every job)
    return ActiveJob(0, owner, name, kind, priority, trusted, frozenset(needs) if needs else _NO_NEEDS,
                     payload, blob_id, timeout, jlimits, 0.0, code, ext)


def pack_limits(limits: dict[str, Any] | None) -> bytes | None:
    """A job's limits as the store keeps them."""
    return pack(limits) if limits else None


def unpack_limits(data: bytes | None) -> dict[str, Any] | None:
    """A stored job's limits."""
    return unpack(data) if data else None
