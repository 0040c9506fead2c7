"""The durable store: SQLite in WAL mode, all work on one dedicated thread (``thd_*`` functions).

One ``executemany`` and one commit per batch; ``synchronous=NORMAL`` survives a process crash
(an fsync per commit would put one on every round trip). A database that cannot be written makes
writes fail with :class:`StoreUnavailable` and a clear message; reads keep working.
"""
from __future__ import annotations

import hmac
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Callable, NamedTuple

from twisted.internet.defer import Deferred

from dsage_core.model.status import JobStatus
from dsage_core.result_files import ResultFileError, ResultsDir, result_name
from dsage_core.store.errors import InviteError, StoreError, StoreUnavailable
from dsage_core.store.checkpoint import Checkpointer
from dsage_core.store.runner import Runner
from dsage_core.store.schema import ENDED_JOBS, OPEN_JOBS, connect, migrate

#: list_jobs summaries: no payload, result, output or code (get_job has them)
JOB_COLUMNS = ("id, owner, name, kind, status, priority, trusted_only, needs, blob_id, timeout, "
               "created, started, finished, worker, attempts, failures, result_preview, error, progress, "
               "progress_message, ext")


class NewJob(NamedTuple):
    """A job to INSERT as 'queued' (``payload``/``limits`` are opaque bytes; ``code`` is display text)."""

    id: int
    owner: str
    name: str
    kind: str
    priority: int
    trusted_only: bool
    needs: str          #: comma-separated capabilities
    payload: bytes
    blob_id: str | None
    timeout: float | None
    limits: bytes | None
    code: str | None
    created: float
    ext: str | None = None   #: JSON of extra options (dsage_core.model.ext)


class RunningJob(NamedTuple):
    """A dispatch: the job's ``attempt`` number went to ``worker`` at ``started``."""

    id: int
    attempt: int
    worker: str
    started: float


class FinishedJob(NamedTuple):
    """A terminal outcome (``status`` completed/failed/killed/...); None keeps ``started``/``worker``."""

    id: int
    status: str
    result: bytes | None
    result_preview: str | None
    error: str | None
    output: str | None
    started: float | None
    finished: float
    worker: str | None
    result_file: str | None = None   #: a large result a local worker already wrote (relative name)
    #: the size a local worker reported for ``result_file``: the store checks the file (on its
    #: thread, see result_files) and records the job as failed if it is not that regular file
    verify_size: int | None = None
    exc: bytes | None = None   #: the exception a failed job raised (msgpack, see model/exc_info.py)
    untrusted: bool = False    #: its result came from a worker that may not pickle for its owner


#: a FinishedJob's UPDATE, its fields bound by position (?1 = id, ?2 = status, ...): the records go
#: to executemany as they are, with no parameter tuple built per row
_FINISH = ("UPDATE jobs SET status=?2, result=?3, result_file=?10, result_preview=?4, error=?5, output=?6, "
           "started=COALESCE(?7, started), finished=?8, worker=COALESCE(?9, worker), "
           "progress=CASE WHEN ?2='completed' THEN 1.0 ELSE progress END, payload=NULL, "
           "result_untrusted=CASE WHEN ?13 THEN 1 END WHERE id=?1")
assert FinishedJob._fields[:10] == ("id", "status", "result", "result_preview", "error", "output", "started",
                                    "finished", "worker", "result_file")
assert FinishedJob._fields[12:] == ("untrusted",)   # all 13 are bound (?11 verify_size, ?12 exc unused)


class Snapshot(NamedTuple):
    """What :meth:`SqliteStore.open` found: the id counter's seed and the queued/running jobs by id."""

    max_job_id: int
    active: list[dict[str, Any]]


LARGE_RESULT = 256 * 1024  #: results above this size are stored in files, not BLOBs
_UNWRITABLE = ("readonly", "read-only", "disk is full", "disk i/o error", "unable to open", "locked")


def _row(cur: sqlite3.Cursor, row: tuple[Any, ...]) -> dict[str, Any]:
    d = {c[0]: v for c, v in zip(cur.description, row)}
    if "needs" in d:
        d["needs"] = frozenset(n for n in (d["needs"] or "").split(",") if n)
    return d


class SqliteStore:
    """The durable store. Every public method returns a Deferred; the work runs on the runner's
    single thread, FIFO, so an UPDATE always follows its INSERT. Thread-side code is named ``thd_*``.

    ``writable`` turns False when a write failed because the database cannot be written (read-only,
    disk full, I/O error) and True again after the next successful write; ``last_error`` says why.
    """

    #: results above this many bytes go to files beside the database (see _thd_write_result)
    large_result: float = LARGE_RESULT

    def __init__(self, path: str | Path, runner: Runner) -> None:
        self.path = Path(path)
        self.runner = runner
        self.writable = True
        self.last_error: str | None = None
        self._local = threading.local()
        self.fault_hook: Callable[[], None] | None = None   #: tests: called inside every write transaction
        #: ``results/`` beside the database, held open (see result_files); opened by :meth:`open`
        self.results: ResultsDir | None = None
        self.checkpointer = Checkpointer(self.path)

    # ------------------------------------------------------------------ plumbing
    def _conn(self) -> sqlite3.Connection:
        """This thread's connection, created on first use (i.e. on the DB thread)."""
        c = getattr(self._local, "conn", None)
        if c is None:
            c = self._local.conn = connect(str(self.path))
            c.execute("PRAGMA wal_autocheckpoint=0")  # the Checkpointer's thread does it, off any wait
        return c

    def _read(self, fn: Callable[..., Any], *args: Any) -> Deferred:
        return self.runner.run(self._thd_read, fn, args)

    def _thd_read(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        try:
            return fn(self._conn(), *args)
        except sqlite3.Error as e:
            raise StoreError(f"the server's database {self.path} cannot be read ({e})") from None

    def _write(self, fn: Callable[..., Any], *args: Any) -> Deferred:
        return self.runner.run(self._thd_write, fn, args)

    def _thd_write(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        """``fn(conn, *args)`` in one IMMEDIATE transaction: committed whole or rolled back whole."""
        c = self._conn()
        try:
            c.execute("BEGIN IMMEDIATE")
            if self.fault_hook is not None:
                self.fault_hook()
            r = fn(c, *args)
            c.execute("COMMIT")
            self.checkpointer.committed()
        except sqlite3.OperationalError as e:
            self._thd_rollback(c)
            raise self._thd_translate(e) from None
        except sqlite3.Error as e:  # e.g. a duplicate id: a bug upstream, reported as a store error
            self._thd_rollback(c)
            raise StoreError(f"database write rejected: {e}") from None
        except BaseException:
            self._thd_rollback(c)
            raise
        self.writable = True
        self.last_error = None
        return r

    @staticmethod
    def _thd_rollback(c: sqlite3.Connection) -> None:
        if c.in_transaction:
            try:
                c.execute("ROLLBACK")
            except sqlite3.Error:
                pass  # SQLite rolls back by itself when the connection cannot; the write failed either way

    def _thd_translate(self, e: sqlite3.OperationalError) -> StoreError:
        msg = str(e).lower()
        if not any(s in msg for s in _UNWRITABLE):
            return StoreError(str(e))
        self.writable = False
        self.last_error = str(e)
        return StoreUnavailable(f"the server's database {self.path} cannot be written ({e}); "
                                f"acknowledged jobs are safe, new work is refused until this is fixed")

    # ------------------------------------------------------------------ life cycle
    def open(self) -> Deferred:
        """Start the runner, create or migrate the schema; fires with a :class:`Snapshot`."""
        self.runner.start()
        d = self.runner.run(self._thd_open)
        d.addCallback(lambda snap: (self.checkpointer.start(), snap)[1])
        return d

    def _thd_open(self) -> Snapshot:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.results is None:
            self.results = ResultsDir(self.path.parent, uid=os.geteuid(), create=True)
        c = self._conn()
        try:
            migrate(c)
        except sqlite3.OperationalError as e:
            raise self._thd_translate(e) from None
        return self._thd_snapshot(c)

    @staticmethod
    def _thd_snapshot(c: Any) -> Snapshot:
        """The id counter's seed and every queued or running job."""
        max_id = c.execute("SELECT COALESCE(MAX(id), 0) FROM jobs").fetchone()[0]
        cur = c.execute("SELECT id, owner, name, kind, status, priority, trusted_only, needs, payload, blob_id, "
                        "timeout, limits, code, created, attempts, failures, ext FROM jobs "
                        f"WHERE {OPEN_JOBS} ORDER BY id")
        return Snapshot(max_id, [_row(cur, r) for r in cur.fetchall()])

    def close(self) -> Deferred:
        """Close the connection after every queued call, then stop the runner."""
        def thd() -> None:
            self.checkpointer.stop()
            c = getattr(self._local, "conn", None)
            if c is not None:
                c.close()   # the last connection: SQLite checkpoints and removes the WAL
                self._local.conn = None
            if self.results is not None:
                self.results.close()
                self.results = None
        d = self.runner.run(thd)
        d.addBoth(lambda r: (self.runner.stop(), r)[1])
        return d

    # ------------------------------------------------------------------ jobs
    def insert_jobs(self, rows: list[NewJob]) -> Deferred:
        """INSERT new jobs as 'queued' (one executemany, one commit)."""
        return self._write(self._thd_insert, rows)

    @staticmethod
    def _thd_running(c: sqlite3.Connection, rows: list[RunningJob]) -> None:
        c.executemany("UPDATE jobs SET status='running', attempts=?, worker=?, started=? WHERE id=? "
                      "AND status IN ('queued','running')",
                      [(r.attempt, r.worker, r.started, r.id) for r in rows])

    def _thd_finished(self, c: sqlite3.Connection, rows: list[FinishedJob],
                      dispatched: dict[int, RunningJob] | None = None) -> list[tuple[int, str]]:
        """Record outcomes; returns ``(job id, why)`` for the local workers' result files refused
        (those jobs are recorded as failed with that reason and the files removed). *dispatched*:
        dispatches of this transaction whose UPDATE was not run; each is folded into its job's
        first outcome here (one row write instead of two; see :meth:`record`)."""
        params: list[FinishedJob] = []
        refused: list[tuple[int, str]] = []
        folded = []
        large = self.large_result
        for r in rows:
            result, result_file = r.result, r.result_file
            if result is not None and len(result) > large:
                r = r._replace(result=None, result_file=self._thd_write_result(r.id, result))
            elif result_file is not None and r.verify_size is not None:
                why = self._thd_check_result_file(result_file, r.verify_size)
                if why is not None:
                    refused.append((r.id, why))
                    r = r._replace(status=JobStatus.FAILED, error=why, result_file=None)
            run = dispatched.pop(r.id, None) if dispatched else None
            if run is not None:
                status = r.status
                folded.append((status, r.result, r.result_file, r.result_preview, r.error, r.output, run.attempt,
                               r.started, run.started, r.finished, r.worker, run.worker, status,
                               1 if r.untrusted else None, r.id))
                continue
            params.append(r)   # bound as it is: _FINISH names FinishedJob's fields by position
        if folded:   # as _thd_running then the UPDATE below: SET reads the row as it was before
            c.executemany("UPDATE jobs SET status=?, result=?, result_file=?, result_preview=?, error=?, "
                          "output=?, attempts=CASE WHEN status IN ('queued','running') THEN ? ELSE attempts END, "
                          "started=COALESCE(?, CASE WHEN status IN ('queued','running') THEN ? ELSE started END), "
                          "finished=?, "
                          "worker=COALESCE(?, CASE WHEN status IN ('queued','running') THEN ? ELSE worker END), "
                          "progress=CASE WHEN ?='completed' THEN 1.0 ELSE progress END, payload=NULL, "
                          "result_untrusted=? WHERE id=?", folded)
        c.executemany(_FINISH, params)
        self._thd_exceptions(c, rows)
        return refused

    @staticmethod
    def _thd_exceptions(c: Any, rows: list[FinishedJob]) -> None:
        """Keep the exceptions failed jobs raised (portable SQL: the PostgreSQL store uses it too)."""
        excs = [(r.id, r.exc) for r in rows if r.exc is not None]
        if excs:
            c.executemany("DELETE FROM job_exceptions WHERE id=?", [(i,) for i, _ in excs])
            c.executemany("INSERT INTO job_exceptions (id, data) VALUES (?, ?)", excs)

    def _thd_check_result_file(self, rel: str, size: int) -> str | None:
        """Why a local worker's result file is refused (it is then removed), or None."""
        assert self.results is not None
        why = self.results.check(rel, size)
        if why is not None:
            self.results.unlink(rel)
        return why

    def drop_result_file(self, rel: str) -> Deferred:
        """Remove a result file no row will name (a link there is removed, never followed);
        fires with whether one was removed."""
        return self.runner.run(lambda: self.results is not None and self.results.unlink(rel))

    def _thd_write_result(self, job_id: int, data: bytes) -> str:
        """A large result goes to a file beside the database (5-10x faster than a BLOB); written
        before the row that names it commits, and as durable as the WAL with synchronous=NORMAL.
        Written in place (no temporary and rename): only a committed row makes a file visible, and
        a job's result is committed once."""
        assert self.results is not None
        rel = result_name(job_id)
        try:
            self.results.write(rel, data)
        except (OSError, ResultFileError) as e:
            raise sqlite3.OperationalError(f"disk I/O error writing a result file: {e}") from None
        return rel

    def sweep_result_files(self) -> Deferred:
        """Remove result files no job row names (fires with how many): a store write that failed
        after its file was written, or a local worker's file whose report was lost with its
        connection (the job ran again under a new attempt). Call it before peers connect: a file a
        worker is writing now is not named yet either."""
        return self.runner.run(self._thd_sweep_result_files)

    def _thd_sweep_result_files(self) -> int:
        if self.results is None:
            return 0
        c = self._conn()

        def named(sub: str, names: list[str]) -> set[str]:
            lo = int(sub) * 1000
            return {r[0] for r in c.execute("SELECT result_file FROM jobs WHERE id BETWEEN ? AND ? "
                                            "AND result_file IS NOT NULL", (lo, lo + 999))}
        try:
            return self.results.sweep(named)
        except OSError:
            return 0

    def _thd_read_result(self, row: dict[str, Any]) -> None:
        rf = row.pop("result_file", None)
        if rf and row.get("result") is None:
            try:
                assert self.results is not None
                row["result"] = self.results.read(rf)
            except (OSError, ResultFileError) as e:
                why = str(e) if isinstance(e, ResultFileError) else f"the result file {rf} cannot be read: {e}"
                row["result"] = None
                row["result_missing"] = why   #: the client raises this when the result is read
                row["error"] = (row.get("error") or "") + f"\n[dsage: {why}]"

    @staticmethod
    def _thd_insert(c: sqlite3.Connection, rows: list[NewJob]) -> None:
        c.executemany("INSERT INTO jobs (id, owner, name, kind, priority, trusted_only, needs, payload, "
                      "blob_id, timeout, limits, code, created, ext, status) "
                      "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,'queued')", rows)

    def record(self, running: list[RunningJob], finished: list[FinishedJob],
               new: list[NewJob] | None = None) -> Deferred:
        """New jobs, dispatches and results of one reactor turn, in one transaction (one commit);
        fires with the ``(job id, why)`` of local workers' result files refused (see _thd_finished)."""
        def thd(c: sqlite3.Connection) -> list[tuple[int, str]]:
            # a dispatch is written with its job's INSERT when both are in this transaction (a
            # job dispatched as it arrives), else with its outcome (dispatched and finished at
            # once): one row write instead of two, the status index written once. Same rows as
            # INSERT, then each UPDATE in order (for one job, the last dispatch is what stays).
            dispatched = {r.id: r for r in running} if running else {}
            if new:
                if dispatched:
                    queued = [n for n in new if n.id not in dispatched]
                    self._thd_insert_running(c, [(n, dispatched.pop(n.id)) for n in new
                                                 if n.id in dispatched])
                    new_rows = queued
                else:
                    new_rows = new
                if new_rows:
                    self._thd_insert(c, new_rows)
            if not finished:
                if dispatched:
                    self._thd_running(c, list(dispatched.values()))
                return []
            ended = {r.id for r in finished}
            rest = [r for r in dispatched.values() if r.id not in ended]
            if rest:
                self._thd_running(c, rest)
            return self._thd_finished(c, finished, {i: r for i, r in dispatched.items() if i in ended})
        return self._write(thd)

    @staticmethod
    def _thd_insert_running(c: sqlite3.Connection, rows: list[tuple[NewJob, RunningJob]]) -> None:
        """INSERT new jobs already dispatched: as _thd_insert then _thd_running, in one write."""
        c.executemany("INSERT INTO jobs (id, owner, name, kind, priority, trusted_only, needs, payload, "
                      "blob_id, timeout, limits, code, created, ext, status, attempts, worker, started) "
                      "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,'running',?,?,?)",
                      [(*n, r.attempt, r.worker, r.started) for n, r in rows])

    # ------------------------------------------------------------------ replicas (server/replicas.py)
    def put_replica_answers(self, rows: list[tuple[Any, ...]]) -> Deferred:
        """Keep copies' answers ``(job_id, attempt, worker, user, anonymous, status, digest, result,
        preview, error, started, finished)`` until their job is decided."""
        def thd(c: sqlite3.Connection) -> None:
            # portable SQL (the PostgreSQL store runs it too): no INSERT OR REPLACE
            c.executemany("DELETE FROM replica_answers WHERE job_id=? AND attempt=?", [r[:2] for r in rows])
            c.executemany('INSERT INTO replica_answers (job_id, attempt, worker, "user", anonymous, '
                          "status, digest, result, preview, error, started, finished) "
                          "VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", rows)
        return self._write(thd)

    def replica_answers(self, job_ids: list[int]) -> Deferred:
        """Fires with ``{job_id: [answer rows as dicts, by attempt]}`` for these jobs."""
        def thd(c: sqlite3.Connection) -> dict[int, list[dict[str, Any]]]:
            out: dict[int, list[dict[str, Any]]] = {}
            for k in range(0, len(job_ids), 500):
                part = job_ids[k:k + 500]
                cur = c.execute(f"SELECT * FROM replica_answers WHERE job_id IN ({','.join('?' * len(part))}) "
                                "ORDER BY job_id, attempt", part)
                for r in cur.fetchall():
                    row = _row(cur, r)
                    out.setdefault(row["job_id"], []).append(row)
            return out
        return self._read(thd)

    def replicas_decided(self, job_id: int, ext: str) -> Deferred:
        """A replicated job is decided: its ``ext`` records the agreement, its answers go."""
        def thd(c: sqlite3.Connection) -> None:
            c.execute("UPDATE jobs SET ext=? WHERE id=?", (ext, job_id))
            c.execute("DELETE FROM replica_answers WHERE job_id=?", (job_id,))
        return self._write(thd)

    def requeue_jobs(self, rows: list[tuple[int, int]]) -> Deferred:
        """Put ``(id, failures)`` jobs back to 'queued' (worker and start time cleared)."""
        def thd(c: sqlite3.Connection) -> None:
            c.executemany("UPDATE jobs SET status='queued', failures=?, worker=NULL, started=NULL WHERE id=?",
                          [(f, i) for i, f in rows])
        return self._write(thd)

    def set_status(self, rows: list[tuple[int, str, str | None, float]]) -> Deferred:
        """Set ``(id, status, error, finished)`` directly, e.g. a queued job killed or lost."""
        def thd(c: sqlite3.Connection) -> None:
            c.executemany("UPDATE jobs SET status=?, error=?, finished=? WHERE id=?",
                          [(s, e, f, i) for i, s, e, f in rows])
        return self._write(thd)

    def get_job(self, job_id: int) -> Deferred:
        """Fires with every column of one job (``needs`` as a frozenset, the result read back), or None."""
        def thd(c: sqlite3.Connection) -> dict[str, Any] | None:
            cur = c.execute("SELECT * FROM jobs WHERE id=?", (job_id,))
            r = cur.fetchone()
            if r is None:
                return None
            row = _row(cur, r)
            self._thd_read_result(row)
            exc = c.execute("SELECT data FROM job_exceptions WHERE id=?", (job_id,)).fetchone()
            row["exc"] = exc[0] if exc else None
            return row
        return self._read(thd)

    def job_outcomes(self, job_ids: list[int]) -> Deferred:
        """Fires with ``{id: {"owner", "status", "result", "error", "result_untrusted"}}`` for those of
        *job_ids* that exist (a result stored as a file is read back): what a job that names them as
        inputs needs."""
        def thd(c: sqlite3.Connection) -> dict[int, dict[str, Any]]:
            out: dict[int, dict[str, Any]] = {}
            ids = list(job_ids)
            for i in range(0, len(ids), 500):
                chunk = ids[i:i + 500]
                cur = c.execute("SELECT id, owner, status, result, result_file, error, result_untrusted FROM jobs "
                                "WHERE id IN "
                                f"({','.join('?' * len(chunk))})", chunk)
                for r in cur.fetchall():
                    row = _row(cur, r)
                    if row["status"] == JobStatus.COMPLETED:
                        self._thd_read_result(row)
                    out[row["id"]] = row
            return out
        return self._read(thd)

    def list_jobs(self, owner: str | None = None, status: str | None = None, text: str | None = None,
                  after_id: int = 0, limit: int = 1000, newest_first: bool = False) -> Deferred:
        """Fires with job summaries (no payload, result, output or code) with ``id > after_id``,
        filtered by owner, status and ``text`` (in name or code), oldest or newest first."""
        def thd(c: sqlite3.Connection) -> list[dict[str, Any]]:
            where, args = ["id > ?"], [after_id]
            if owner is not None:
                where.append("owner = ?")
                args.append(owner)
            if status:
                where.append("status = ?")
                args.append(status)
                if status in (JobStatus.QUEUED, JobStatus.RUNNING):   # the partial indexes (schema.py)
                    where.append(OPEN_JOBS)
                elif status != JobStatus.COMPLETED:
                    where.append(ENDED_JOBS)
            if text:
                where.append("(name LIKE ? OR code LIKE ?)")
                args += [f"%{text}%", f"%{text}%"]
            order = "DESC" if newest_first else "ASC"
            cur = c.execute(f"SELECT {JOB_COLUMNS} FROM jobs WHERE {' AND '.join(where)} "
                            f"ORDER BY id {order} LIMIT ?", (*args, limit))
            return [_row(cur, r) for r in cur.fetchall()]
        return self._read(thd)

    def count_by_status(self, owner: str | None = None) -> Deferred:
        """Fires with ``{status: count}``, for one owner or everyone."""
        def thd(c: sqlite3.Connection) -> dict[str, int]:
            if owner is None:   # the partial indexes, not the table: completed = all - the rest
                counts = dict(c.execute(f"SELECT status, COUNT(*) FROM jobs WHERE {OPEN_JOBS} "
                                        "GROUP BY status").fetchall())
                counts.update(c.execute(f"SELECT status, COUNT(*) FROM jobs WHERE {ENDED_JOBS} "
                                        "GROUP BY status").fetchall())
                completed = c.execute("SELECT COUNT(*) FROM jobs").fetchone()[0] - sum(counts.values())
                if completed:
                    counts[JobStatus.COMPLETED] = completed
                return counts
            else:
                rows = c.execute("SELECT status, COUNT(*) FROM jobs WHERE owner=? GROUP BY status",
                                 (owner,)).fetchall()
            return dict(rows)
        return self._read(thd)

    # ------------------------------------------------------------------ blobs
    def put_blob(self, blob_id: str, data: bytes, owner: str) -> Deferred:
        """Store a function blob once (a second put of the same id is a no-op)."""
        def thd(c: sqlite3.Connection) -> None:
            c.execute("INSERT OR IGNORE INTO blobs (id, data, owner, created) VALUES (?,?,?,?)",
                      (blob_id, data, owner, time.time()))
        return self._write(thd)

    def delete_blobs(self, blob_ids: list[str]) -> Deferred:
        """Remove blobs nobody holds any more (see server/blobs.py)."""
        return self._write(lambda c: c.executemany("DELETE FROM blobs WHERE id=?", [(b,) for b in blob_ids]))

    def drop_unused_blobs(self) -> Deferred:
        """At start-up: remove the blobs no queued or running job names (uploads whose jobs all
        finished, or that no job ever used); fires with how many went."""
        return self._write(lambda c: c.execute(
            "DELETE FROM blobs WHERE id NOT IN (SELECT blob_id FROM jobs WHERE blob_id IS NOT NULL "
            f"AND {OPEN_JOBS})").rowcount)

    def get_blob(self, blob_id: str) -> Deferred:
        """Fires with a blob's bytes, or None."""
        def thd(c: sqlite3.Connection) -> bytes | None:
            r = c.execute("SELECT data FROM blobs WHERE id=?", (blob_id,)).fetchone()
            return None if r is None else bytes(r[0])
        return self._read(thd)

    # ------------------------------------------------------------------ users
    def add_user(self, name: str, pubkey: str, role: str) -> Deferred:
        """Add a user; :class:`StoreError` if the name or the key is taken."""
        def thd(c: sqlite3.Connection) -> None:
            # looked up first: a failed INSERT ends a PostgreSQL transaction (no query after it)
            taken = c.execute("SELECT name FROM users WHERE name=? OR pubkey=?", (name, pubkey)).fetchone()
            if taken is not None:
                raise StoreError(f"a user with that name or key already exists ({taken[0]})")
            try:
                c.execute("INSERT INTO users (name, pubkey, role, created) VALUES (?,?,?,?)",
                          (name, pubkey, role, time.time()))
            except sqlite3.IntegrityError:
                raise StoreError(f"a user with that name or key already exists ({name})") from None
        return self._write(thd)

    def remove_user(self, name: str) -> Deferred:
        """Remove a user; fires with whether one was removed."""
        return self._write(lambda c: c.execute("DELETE FROM users WHERE name=?", (name,)).rowcount > 0)

    def list_users(self) -> Deferred:
        """Fires with every user (name, pubkey, role, created), by name."""
        def thd(c: sqlite3.Connection) -> list[dict[str, Any]]:
            cur = c.execute("SELECT name, pubkey, role, created FROM users ORDER BY name")
            return [_row(cur, r) for r in cur.fetchall()]
        return self._read(thd)

    def _user_where(self, clause: str, value: str) -> Deferred:
        def thd(c: sqlite3.Connection) -> dict[str, Any] | None:
            cur = c.execute(f"SELECT name, pubkey, role, created FROM users WHERE {clause}=?", (value,))
            r = cur.fetchone()
            return None if r is None else _row(cur, r)
        return self._read(thd)

    def user_by_pubkey(self, pubkey: str) -> Deferred:
        """Fires with the user holding this public key, or None."""
        return self._user_where("pubkey", pubkey)

    def user_by_name(self, name: str) -> Deferred:
        """Fires with the user of this name, or None."""
        return self._user_where("name", name)

    def user_count(self) -> Deferred:
        """Fires with the number of users."""
        return self._read(lambda c: c.execute("SELECT COUNT(*) FROM users").fetchone()[0])

    # ------------------------------------------------------------------ invites
    def add_invite(self, invite_id: str, secret_hash: str, role: str, expires: float, uses: int) -> Deferred:
        """Store an invite: only the secret's hash, the role it grants, expiry and number of uses."""
        def thd(c: sqlite3.Connection) -> None:
            c.execute("INSERT INTO invites (id, secret_hash, role, expires, uses_left, created) "
                      "VALUES (?,?,?,?,?,?)", (invite_id, secret_hash, role, expires, uses, time.time()))
        return self._write(thd)

    def redeem_invite(self, invite_id: str, secret_hash: str, now: float, pubkey: str,
                      name_for: Callable[[str], str], session: str | None = None,
                      session_roles: frozenset[str] = frozenset()) -> Deferred:
        """Register *pubkey* with an invite, in one transaction: the invite loses a use only if the
        user row was written (any failure rolls both back, so the code stays usable).

        Fires with ``(name, role, spent)``. A key that is already registered keeps its user and
        spends nothing (a retry after a lost answer must not need a new code). *session*
        (``"worker"`` or ``"client"``), when given, is what the caller will log in as: an invite
        whose role is not in *session_roles* is refused before anything is spent.
        """

        def thd(c: sqlite3.Connection) -> tuple[str, str, bool]:
            r = _thd_invite(c, invite_id, secret_hash)
            known = c.execute("SELECT name, role FROM users WHERE pubkey=?", (pubkey,)).fetchone()
            if known is not None:
                user, user_role = known
                return str(user), str(user_role), False
            _check_usable(r, now)
            role = str(r.role)
            if session is not None and role not in session_roles:
                raise InviteError(f"this invite code is for a {role}, not a {session} (it was not used): "
                                  f"ask for 'dsage invite --role {session}'")
            name = name_for(role)
            taken = c.execute("SELECT 1 FROM users WHERE name=?", (name,)).fetchone()
            if taken is not None:
                raise InviteError(f"a user named {name!r} already exists with another key, so this key "
                                  f"cannot be registered (the invite was not used): ask the server's "
                                  f"admin to rename or remove that user")
            c.execute("INSERT INTO users (name, pubkey, role, created) VALUES (?,?,?,?)",
                      (name, pubkey, role, time.time()))
            c.execute("UPDATE invites SET uses_left = uses_left - 1 WHERE id=?", (invite_id,))
            return name, role, True
        return self._write(thd)

    def list_invites(self) -> Deferred:
        """Fires with every invite, oldest first."""
        def thd(c: sqlite3.Connection) -> list[dict[str, Any]]:
            cur = c.execute("SELECT id, secret_hash, role, expires, uses_left, created, revoked FROM invites "
                            "ORDER BY created")
            return [_row(cur, r) for r in cur.fetchall()]
        return self._read(thd)

    def revoke_invite(self, invite_id: str) -> Deferred:
        """Revoke an invite; fires with whether it existed."""
        return self._write(lambda c: c.execute("UPDATE invites SET revoked=1 WHERE id=?",
                                               (invite_id,)).rowcount > 0)

    # ------------------------------------------------------------------ audit
    def audit(self, event: str, user: str, address: str, detail: str) -> Deferred:
        """Append an audit record (time is now)."""
        def thd(c: sqlite3.Connection) -> None:
            c.execute('INSERT INTO audit (time, event, "user", address, detail) VALUES (?,?,?,?,?)',
                      (time.time(), event, user, address, detail))
        return self._write(thd)

    def recent_audit(self, limit: int = 100) -> Deferred:
        """Fires with the newest audit records, newest first."""
        def thd(c: sqlite3.Connection) -> list[dict[str, Any]]:
            cur = c.execute('SELECT time, event, "user", address, detail FROM audit ORDER BY id DESC LIMIT ?',
                            (limit,))
            return [_row(cur, r) for r in cur.fetchall()]
        return self._read(thd)


class _Invite(NamedTuple):
    """An invite row, as :func:`_thd_invite` selects it."""

    secret_hash: str
    role: str
    expires: float | None
    uses_left: int | None
    revoked: int


def _thd_invite(c: sqlite3.Connection, invite_id: str, secret_hash: str) -> _Invite:
    """The invite row, if the secret matches and it is not revoked (else :class:`InviteError`)."""
    row = c.execute(f"SELECT {', '.join(_Invite._fields)} FROM invites WHERE id=?", (invite_id,)).fetchone()
    r = None if row is None else _Invite(*row)
    if r is None or not hmac.compare_digest(str(r.secret_hash), secret_hash):
        # one message for both: an attacker must not learn which invite ids exist
        raise InviteError("unknown invite code or wrong secret (check that it was copied whole)")
    if r.revoked:
        raise InviteError("this invite code was revoked")
    return r


def _check_usable(r: _Invite, now: float) -> None:
    """Refuse an invite row that expired or has no uses left."""
    if r.expires is not None and now > r.expires:
        raise InviteError("this invite code has expired; ask for a new one")
    if r.uses_left is not None and r.uses_left <= 0:
        raise InviteError("this invite code was already used (no uses left); ask for a new one")
