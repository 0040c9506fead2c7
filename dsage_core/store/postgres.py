"""The durable store on PostgreSQL (psycopg 3): the SQLite store's queries, another database.

:class:`PgStore` keeps every query, batch and rule of :class:`SqliteStore` (one dedicated thread,
one transaction and one commit per batch, acknowledged only after the commit) and replaces the
plumbing: the connection (with :mod:`dsage_core.store.pg_schema` rewriting each statement),
transactions, error translation, and results, which all live in the database (a standby server on
another host must be able to read them; there is no result file beside a PostgreSQL database).
New jobs go in with ``COPY``.

A PostgreSQL commit waits for its WAL to reach the disk (~3 ms here, where SQLite's NORMAL commit
costs microseconds), so the store commits in groups: calls queue up while one group runs on the
thread, and the next group takes them all, in order, consecutive writes in one transaction (each in
its own savepoint, so a failing one takes only itself back) and one commit. Each caller still hears
only after the commit that holds its write. Reads run in queue order between the groups.
 PostgreSQL's default ``synchronous_commit=on`` makes every
acknowledged commit survive the loss of the database host's power too; a URL's
``options=-c synchronous_commit=off`` trades that for latency.
"""
from __future__ import annotations

import threading
from typing import Any, Callable

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from dsage_core.model.status import JobStatus
from dsage_core.store import pg_schema
from dsage_core.store.errors import StoreError, StoreUnavailable
from dsage_core.store.runner import Runner
from dsage_core.store.sqlite import FinishedJob, NewJob, RunningJob, Snapshot, SqliteStore

_WRITES = ("w", "rec")
_COPY_JOBS = ("COPY jobs (id, owner, name, kind, priority, trusted_only, needs, payload, blob_id, timeout, "
              "limits, code, created, ext, status) FROM STDIN")


class PgConn:
    """The sqlite3-style calls the shared queries make (``execute``/``executemany`` with ``?``
    placeholders, returning a cursor), on a psycopg connection."""

    def __init__(self, raw: Any) -> None:
        self.raw = raw

    def execute(self, sql: str, params: Any = ()) -> Any:
        return self.raw.execute(pg_schema.dml(sql), params)

    def executemany(self, sql: str, seq: Any) -> Any:
        cur = self.raw.cursor()
        cur.executemany(pg_schema.dml(sql), list(seq))
        return cur

    def close(self) -> None:
        self.raw.close()

    @property
    def usable(self) -> bool:
        return not (self.raw.closed or self.raw.broken)


class _NoCheckpoints:
    """PostgreSQL checkpoints by itself."""

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def committed(self) -> None:
        pass


class PgStore(SqliteStore):
    """The store on a PostgreSQL database named by a ``postgresql://`` URL (see the module doc).

    ``fence(reason)`` refuses every later write at once (the server lost its database lock: a
    standby may be serving from the same tables now); reads keep working.
    """

    large_result = float("inf")   # every result in the database: another host may serve it next

    def __init__(self, url: str, runner: Runner) -> None:
        self.url = url
        self.path = pg_schema.redacted(url)   # what messages name  # type: ignore[assignment]
        self.runner = runner
        self.writable = True
        self.last_error: str | None = None
        self._local = threading.local()
        self.fault_hook: Callable[[], None] | None = None
        self._result_dirs: set[str] = set()
        self.checkpointer = _NoCheckpoints()  # type: ignore[assignment]
        self.fenced: str | None = None
        self._queue: list[tuple[str, Callable[..., Any], tuple[Any, ...], Deferred]] = []
        self._draining = False
        self.groups = 0   #: write groups committed (one commit each)

    def fence(self, reason: str) -> None:
        """Refuse every write from now on (callable from any thread)."""
        self.fenced = reason

    # ------------------------------------------------------------------ the queue (reactor side)
    def _read(self, fn: Callable[..., Any], *args: Any) -> Deferred:
        return self._enqueue("r", fn, args)

    def _write(self, fn: Callable[..., Any], *args: Any) -> Deferred:
        return self._enqueue("w", fn, args)

    def _enqueue(self, kind: str, fn: Callable[..., Any], args: tuple[Any, ...]) -> Deferred:
        d: Deferred = Deferred()
        self._queue.append((kind, fn, args, d))
        if not self._draining:
            self._drain()
        return d

    def _drain(self) -> None:
        items, self._queue = self._queue, []
        self._draining = True
        self.runner.run(self._thd_run, items).addBoth(self._drained, items)

    def _drained(self, outcome: Any, items: list[Any]) -> None:
        self._draining = False
        if self._queue:
            self._drain()   # keep the thread busy before anyone hears back
        if isinstance(outcome, Failure):   # the runner refused the whole group (stopped)
            outcomes = [(False, outcome)] * len(items)
        else:
            outcomes = outcome
        for (_, _, _, d), (ok, value) in zip(items, outcomes):
            if ok:
                d.callback(value)
            else:
                d.errback(value)

    def close(self) -> Deferred:
        """Close the connection after every queued call, then stop the runner."""
        d = self._enqueue("x", self._thd_close, ())
        d.addBoth(lambda r: (self.runner.stop(), r)[1])
        return d

    def _thd_close(self) -> None:
        c = getattr(self._local, "conn", None)
        if c is not None:
            c.close()
            self._local.conn = None

    # ------------------------------------------------------------------ the queue (thread side)
    def _thd_run(self, items: list[Any]) -> list[tuple[bool, Any]]:
        """Run queued calls in order: reads and plain calls one by one, each run of consecutive
        writes as one group (one transaction)."""
        out: list[tuple[bool, Any]] = []
        i = 0
        while i < len(items):
            kind, fn, args, _ = items[i]
            if kind in _WRITES:
                j = i
                while j < len(items) and items[j][0] in _WRITES:
                    j += 1
                out.extend(self._thd_group([it[:3] for it in items[i:j]]))
                i = j
                continue
            try:
                out.append((True, self._thd_read(fn, args) if kind == "r" else fn(*args)))
            except BaseException:
                out.append((False, Failure()))
            i += 1
        return out

    def _thd_group(self, group: list[tuple[str, Any, tuple[Any, ...]]]) -> list[tuple[bool, Any]]:
        """Writes in one transaction and one commit. Consecutive ``record()`` calls merge into one
        COPY and one UPDATE per kind; with more than one unit, each runs in a savepoint (a merged
        one that fails is retried call by call, so only the failing call fails)."""
        import psycopg
        n = len(group)
        if self.fenced is not None:
            err = StoreUnavailable(f"this server no longer holds the database ({self.fenced}); "
                                   f"nothing more is written")
            return [(False, Failure(err))] * n
        units: list[list[int]] = []
        for k, (kind, _, _) in enumerate(group):
            if kind == "rec" and units and group[units[-1][-1]][0] == "rec":
                units[-1].append(k)
            else:
                units.append([k])
        out: list[Any] = [None] * n
        try:
            c = self._conn()
            with c.raw.transaction():
                if len(units) == 1 and n == 1:
                    self._thd_unit(c, group, units[0], out)
                else:
                    for u in units:
                        self._thd_saved(c, group, u, out)
        except psycopg.Error as e:   # the commit (or the one write) failed: nothing of it stands
            return [(False, Failure(self._pg_translate(e)))] * n
        except Exception:
            return [(False, Failure())] * n
        self.groups += 1
        if any(ok for ok, _ in out):
            self.writable = True
            self.last_error = None
        return out

    def _thd_unit(self, c: Any, group: list[Any], idxs: list[int], out: list[Any]) -> None:
        if self.fault_hook is not None:
            self.fault_hook()
        kind, fn, args = group[idxs[0]]
        if kind != "rec":
            out[idxs[0]] = (True, fn(c, *args))
            return
        running: list[RunningJob] = []
        finished: list[FinishedJob] = []
        new: list[NewJob] = []
        for k in idxs:
            r, f, nw = group[k][2]
            running += r
            finished += f
            new += nw
        if new:
            self._thd_insert(c, new)
        if running:
            self._thd_running(c, running)
        if finished:
            self._thd_finished(c, finished)
        for k in idxs:
            out[k] = (True, None)

    def _thd_saved(self, c: Any, group: list[Any], idxs: list[int], out: list[Any]) -> None:
        import psycopg
        try:
            with c.raw.transaction():   # a savepoint
                self._thd_unit(c, group, idxs, out)
        except Exception as e:
            if len(idxs) > 1:
                for k in idxs:
                    self._thd_saved(c, group, [k], out)
            elif isinstance(e, psycopg.Error):
                out[idxs[0]] = (False, Failure(self._pg_translate(e)))
            else:
                out[idxs[0]] = (False, Failure())

    def record(self, running: list[RunningJob], finished: list[FinishedJob],
               new: list[NewJob] | None = None) -> Deferred:
        """As the SQLite store's; queued calls merge into one batch per kind (see _thd_group)."""
        return self._enqueue("rec", None, (running, finished, new or []))

    # ------------------------------------------------------------------ plumbing
    def _conn(self) -> PgConn:  # type: ignore[override]
        c = getattr(self._local, "conn", None)
        if c is None or not c.usable:
            if c is not None:
                c.close()
            self._local.conn = None
            c = self._local.conn = PgConn(pg_schema.connect(self.url))
        return c

    def _thd_read(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        import psycopg
        try:
            return fn(self._conn(), *args)
        except psycopg.Error as e:
            raise StoreError(f"the server's database {self.path} cannot be read "
                             f"({pg_schema.describe_error(e)})") from None

    def _thd_write(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        """``fn(conn, *args)`` in one transaction: committed whole or rolled back whole."""
        ok, value = self._thd_group([("w", fn, args)])[0]
        if not ok:
            value.raiseException()
        return value

    def _pg_translate(self, e: Exception) -> StoreError:
        import psycopg
        why = pg_schema.describe_error(e)
        if isinstance(e, psycopg.IntegrityError):   # e.g. a duplicate id: a bug upstream
            return StoreError(f"database write rejected: {why}")
        unwritable = (isinstance(e, psycopg.OperationalError)    # connection lost, disk full, shutdown
                      or getattr(e, "sqlstate", None) in ("25006", "42501"))  # read-only, no privilege
        if not unwritable:
            return StoreError(why)
        self.writable = False
        self.last_error = why
        return StoreUnavailable(f"the server's database {self.path} cannot be written ({why}); "
                                f"acknowledged jobs are safe, new work is refused until this is fixed")

    # ------------------------------------------------------------------ life cycle
    def _thd_open(self) -> Snapshot:
        import psycopg
        try:
            c = self._conn()
            pg_schema.migrate(c.raw)
            return self._thd_snapshot(c)
        except pg_schema.SchemaTooNew:
            raise
        except (psycopg.Error, ValueError) as e:
            raise StoreError(f"cannot open the PostgreSQL store {self.path}: "
                             f"{pg_schema.describe_error(e)}") from None

    def sweep_result_files(self) -> Deferred:
        """No result files here (fires with 0)."""
        return self.runner.run(lambda: 0)

    # ------------------------------------------------------------------ jobs
    # one statement per batch (arrays through unnest), where SQLite's executemany runs one per
    # row: a PostgreSQL statement costs a round trip, and the store's thread shares the GIL with
    # the reactor. The last row of a job in a batch wins, as it does with executemany.
    @staticmethod
    def _thd_running(c: Any, rows: list[RunningJob]) -> None:   # type: ignore[override]
        last = list({r.id: r for r in rows}.values())
        c.raw.execute("UPDATE jobs SET status='running', attempts=u.attempt, worker=u.worker, started=u.started "
                      "FROM unnest(%s::bigint[], %s::integer[], %s::text[], %s::float8[]) "
                      "AS u(id, attempt, worker, started) "
                      "WHERE jobs.id=u.id AND jobs.status IN ('queued','running')",
                      ([r.id for r in last], [r.attempt for r in last], [r.worker for r in last],
                       [_float(r.started) for r in last]))

    def _thd_finished(self, c: Any, rows: list[FinishedJob]) -> list[tuple[int, str]]:
        last = list({r.id: r for r in rows}.values())
        c.raw.execute("UPDATE jobs SET status=u.status, result=u.result, result_file=u.result_file, "
                      "result_preview=u.preview, error=u.error, output=u.output, "
                      "started=COALESCE(u.started, jobs.started), finished=u.finished, "
                      "worker=COALESCE(u.worker, jobs.worker), "
                      "progress=CASE WHEN u.status='completed' THEN 1.0 ELSE jobs.progress END, payload=NULL, "
                      "result_untrusted=u.untrusted "
                      "FROM unnest(%s::bigint[], %s::text[], %s::bytea[], %s::text[], %s::text[], %s::text[], "
                      "%s::text[], %s::float8[], %s::float8[], %s::text[], %s::int[]) "
                      "AS u(id, status, result, result_file, preview, error, output, started, finished, worker, "
                      "untrusted) WHERE jobs.id=u.id",
                      ([r.id for r in last], [r.status for r in last], [r.result for r in last],
                       [r.result_file for r in last], [r.result_preview for r in last],
                       [r.error for r in last], [r.output for r in last], [_float(r.started) for r in last],
                       [_float(r.finished) for r in last], [r.worker for r in last],
                       [1 if r.untrusted else None for r in last]))
        self._thd_exceptions(c, last)
        return []   # a PostgreSQL server has no local result files to refuse

    @staticmethod
    def _thd_insert(c: Any, rows: list[NewJob]) -> None:   # type: ignore[override]
        """New jobs through one COPY (about 5x faster than executemany here)."""
        with c.raw.cursor().copy(_COPY_JOBS) as cp:
            for r in rows:
                cp.write_row((*r, JobStatus.QUEUED))


def _float(x: Any) -> float | None:
    return None if x is None else float(x)
