"""The durable store: SQLite in WAL mode, all work on one dedicated thread (``thd_*`` functions).

One ``executemany`` and one commit per batch; ``synchronous=NORMAL`` survives a process crash
(an fsync per commit would put one on every round trip). A database that cannot be written makes
writes fail with :class:`StoreUnavailable` and a clear message; reads keep working.
"""
from __future__ import annotations

import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Callable, NamedTuple

from twisted.internet.defer import Deferred

from dsage_core.store.errors import InviteError, StoreError, StoreUnavailable
from dsage_core.store.schema import MIGRATIONS

JOB_COLUMNS = ("id, owner, name, kind, status, priority, trusted_only, needs, blob_id, timeout, code, "
               "created, started, finished, worker, attempts, failures, result_preview, error, progress, "
               "progress_message")


class NewJob(NamedTuple):
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


class RunningJob(NamedTuple):
    id: int
    attempt: int
    worker: str
    started: float


class FinishedJob(NamedTuple):
    id: int
    status: str
    result: bytes | None
    result_preview: str | None
    error: str | None
    output: str | None
    started: float | None
    finished: float
    worker: str | None


class Snapshot(NamedTuple):
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
    """Every public method returns a Deferred and runs on the runner's single thread, FIFO."""

    def __init__(self, path: str | Path, runner: Any) -> None:
        self.path = Path(path)
        self.runner = runner
        self.writable = True
        self.last_error: str | None = None
        self._local = threading.local()
        self.fault_hook: Callable[[], None] | None = None   #: tests: raise inside every write

    # ------------------------------------------------------------------ plumbing
    def _conn(self) -> sqlite3.Connection:
        c = getattr(self._local, "conn", None)
        if c is None:
            c = sqlite3.connect(str(self.path), isolation_level=None, timeout=5.0)
            c.execute("PRAGMA page_size=16384")  # new databases only: large results write faster
            c.execute("PRAGMA journal_mode=WAL")
            c.execute("PRAGMA synchronous=NORMAL")
            c.execute("PRAGMA foreign_keys=ON")
            c.execute("PRAGMA busy_timeout=5000")
            self._local.conn = c
        return c

    def _read(self, fn: Callable[..., Any], *args: Any) -> Deferred:
        return self.runner.run(lambda: fn(self._conn(), *args))

    def _write(self, fn: Callable[..., Any], *args: Any) -> Deferred:
        return self.runner.run(self._thd_write, fn, args)

    def _thd_write(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        c = self._conn()
        try:
            c.execute("BEGIN IMMEDIATE")
            if self.fault_hook is not None:
                self.fault_hook()
            r = fn(c, *args)
            c.execute("COMMIT")
        except sqlite3.OperationalError as e:
            if c.in_transaction:
                c.execute("ROLLBACK")
            msg = str(e).lower()
            if any(s in msg for s in _UNWRITABLE):
                self.writable = False
                self.last_error = str(e)
                raise StoreUnavailable(f"the server's database {self.path} cannot be written ({e}); "
                                       f"acknowledged jobs are safe, new work is refused") from None
            raise StoreError(str(e)) from None
        except BaseException:
            if c.in_transaction:
                c.execute("ROLLBACK")
            raise
        self.writable = True
        self.last_error = None
        return r

    # ------------------------------------------------------------------ life cycle
    def open(self) -> Deferred:
        """Create or migrate the schema; returns a :class:`Snapshot` of unfinished jobs."""
        self.runner.start()
        return self.runner.run(self._thd_open)

    def _thd_open(self) -> Snapshot:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        c = self._conn()
        version = c.execute("PRAGMA user_version").fetchone()[0]
        for i, sql in enumerate(MIGRATIONS[version:], start=version + 1):
            c.executescript(f"BEGIN; {sql}; PRAGMA user_version={i}; COMMIT;")
        max_id = c.execute("SELECT COALESCE(MAX(id), 0) FROM jobs").fetchone()[0]
        cur = c.execute("SELECT id, owner, name, kind, status, priority, trusted_only, needs, payload, blob_id, "
                        "timeout, limits, code, created, attempts, failures FROM jobs "
                        "WHERE status IN ('queued', 'running') ORDER BY id")
        return Snapshot(max_id, [_row(cur, r) for r in cur.fetchall()])

    def close(self) -> Deferred:
        def thd() -> None:
            c = getattr(self._local, "conn", None)
            if c is not None:
                c.close()
                self._local.conn = None
        d = self.runner.run(thd)
        d.addBoth(lambda r: (self.runner.stop(), r)[1])
        return d

    # ------------------------------------------------------------------ jobs
    def insert_jobs(self, rows: list[NewJob]) -> Deferred:
        return self._write(self._thd_insert, rows)

    @staticmethod
    def _thd_running(c: sqlite3.Connection, rows: list[RunningJob]) -> None:
        c.executemany("UPDATE jobs SET status='running', attempts=?, worker=?, started=? WHERE id=? "
                      "AND status IN ('queued','running')",
                      [(r.attempt, r.worker, r.started, r.id) for r in rows])

    def _thd_finished(self, c: sqlite3.Connection, rows: list[FinishedJob]) -> None:
        params = []
        for r in rows:
            result, result_file = r.result, None
            if result is not None and len(result) > LARGE_RESULT:
                result_file = self._thd_write_result(r.id, result)
                result = None
            params.append((r.status, result, result_file, r.result_preview, r.error, r.output, r.started,
                           r.finished, r.worker, r.status, r.id))
        c.executemany("UPDATE jobs SET status=?, result=?, result_file=?, result_preview=?, error=?, output=?, "
                      "started=COALESCE(?, started), finished=?, worker=COALESCE(?, worker), "
                      "progress=CASE WHEN ?='completed' THEN 1.0 ELSE progress END, payload=NULL "
                      "WHERE id=?", params)

    def _thd_write_result(self, job_id: int, data: bytes) -> str:
        """A large result goes to a file beside the database (5-10x faster than a BLOB); written
        before the row that names it commits, and as durable as the WAL with synchronous=NORMAL."""
        d = self.path.parent / "results" / f"{job_id // 1000:06d}"
        d.mkdir(parents=True, exist_ok=True)
        p = d / f"{job_id}.bin"
        tmp = p.with_suffix(".tmp")
        try:
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, p)
        except OSError as e:
            raise sqlite3.OperationalError(f"disk I/O error writing a result file: {e}") from None
        return str(p.relative_to(self.path.parent))

    def _thd_read_result(self, row: dict[str, Any]) -> None:
        rf = row.pop("result_file", None)
        if rf and row.get("result") is None:
            try:
                row["result"] = (self.path.parent / rf).read_bytes()
            except OSError:
                row["result"] = None
                row["error"] = (row.get("error") or "") + f"\n[dsage: the stored result file {rf} is missing]"

    def mark_running(self, rows: list[RunningJob]) -> Deferred:
        return self._write(self._thd_running, rows)

    def finish_jobs(self, rows: list[FinishedJob]) -> Deferred:
        return self._write(self._thd_finished, rows)

    @staticmethod
    def _thd_insert(c: sqlite3.Connection, rows: list[NewJob]) -> None:
        c.executemany("INSERT INTO jobs (id, owner, name, kind, priority, trusted_only, needs, payload, "
                      "blob_id, timeout, limits, code, created, status) "
                      "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,'queued')", rows)

    def record(self, running: list[RunningJob], finished: list[FinishedJob],
               new: list[NewJob] | None = None) -> Deferred:
        """New jobs, dispatches and results of one reactor turn, in one transaction (one commit)."""
        def thd(c: sqlite3.Connection) -> None:
            if new:
                self._thd_insert(c, new)
            if running:
                self._thd_running(c, running)
            if finished:
                self._thd_finished(c, finished)
        return self._write(thd)

    def requeue_jobs(self, rows: list[tuple[int, int]]) -> Deferred:
        def thd(c: sqlite3.Connection) -> None:
            c.executemany("UPDATE jobs SET status='queued', failures=?, worker=NULL, started=NULL WHERE id=?",
                          [(f, i) for i, f in rows])
        return self._write(thd)

    def set_status(self, rows: list[tuple[int, str, str | None, float]]) -> Deferred:
        def thd(c: sqlite3.Connection) -> None:
            c.executemany("UPDATE jobs SET status=?, error=?, finished=? WHERE id=?",
                          [(s, e, f, i) for i, s, e, f in rows])
        return self._write(thd)

    def update_progress(self, rows: list[tuple[int, float, str]]) -> Deferred:
        def thd(c: sqlite3.Connection) -> None:
            c.executemany("UPDATE jobs SET progress=?, progress_message=? WHERE id=?",
                          [(p, m, i) for i, p, m in rows])
        return self._write(thd)

    def get_job(self, job_id: int) -> Deferred:
        def thd(c: sqlite3.Connection) -> dict[str, Any] | None:
            cur = c.execute("SELECT * FROM jobs WHERE id=?", (job_id,))
            r = cur.fetchone()
            if r is None:
                return None
            row = _row(cur, r)
            self._thd_read_result(row)
            return row
        return self._read(thd)

    def list_jobs(self, owner: str | None = None, status: str | None = None, text: str | None = None,
                  after_id: int = 0, limit: int = 1000, newest_first: bool = False) -> Deferred:
        def thd(c: sqlite3.Connection) -> list[dict[str, Any]]:
            where, args = ["id > ?"], [after_id]
            if owner is not None:
                where.append("owner = ?")
                args.append(owner)
            if status:
                where.append("status = ?")
                args.append(status)
            if text:
                where.append("(name LIKE ? OR code LIKE ?)")
                args += [f"%{text}%", f"%{text}%"]
            order = "DESC" if newest_first else "ASC"
            cur = c.execute(f"SELECT {JOB_COLUMNS} FROM jobs WHERE {' AND '.join(where)} "
                            f"ORDER BY id {order} LIMIT ?", (*args, limit))
            return [_row(cur, r) for r in cur.fetchall()]
        return self._read(thd)

    def count_by_status(self, owner: str | None = None) -> Deferred:
        def thd(c: sqlite3.Connection) -> dict[str, int]:
            if owner is None:
                rows = c.execute("SELECT status, COUNT(*) FROM jobs GROUP BY status").fetchall()
            else:
                rows = c.execute("SELECT status, COUNT(*) FROM jobs WHERE owner=? GROUP BY status",
                                 (owner,)).fetchall()
            return dict(rows)
        return self._read(thd)

    # ------------------------------------------------------------------ blobs
    def put_blob(self, blob_id: str, data: bytes, owner: str) -> Deferred:
        def thd(c: sqlite3.Connection) -> None:
            c.execute("INSERT OR IGNORE INTO blobs (id, data, owner, created) VALUES (?,?,?,?)",
                      (blob_id, data, owner, time.time()))
        return self._write(thd)

    def get_blob(self, blob_id: str) -> Deferred:
        def thd(c: sqlite3.Connection) -> bytes | None:
            r = c.execute("SELECT data FROM blobs WHERE id=?", (blob_id,)).fetchone()
            return None if r is None else bytes(r[0])
        return self._read(thd)

    # ------------------------------------------------------------------ users
    def add_user(self, name: str, pubkey: str, role: str) -> Deferred:
        def thd(c: sqlite3.Connection) -> None:
            try:
                c.execute("INSERT INTO users (name, pubkey, role, created) VALUES (?,?,?,?)",
                          (name, pubkey, role, time.time()))
            except sqlite3.IntegrityError:
                taken = c.execute("SELECT name FROM users WHERE name=? OR pubkey=?", (name, pubkey)).fetchone()
                raise StoreError(f"a user with that name or key already exists ({taken[0] if taken else name})")
        return self._write(thd)

    def remove_user(self, name: str) -> Deferred:
        return self._write(lambda c: c.execute("DELETE FROM users WHERE name=?", (name,)).rowcount > 0)

    def list_users(self) -> Deferred:
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
        return self._user_where("pubkey", pubkey)

    def user_by_name(self, name: str) -> Deferred:
        return self._user_where("name", name)

    def user_count(self) -> Deferred:
        return self._read(lambda c: c.execute("SELECT COUNT(*) FROM users").fetchone()[0])

    # ------------------------------------------------------------------ invites
    def add_invite(self, invite_id: str, secret_hash: str, role: str, expires: float, uses: int) -> Deferred:
        def thd(c: sqlite3.Connection) -> None:
            c.execute("INSERT INTO invites (id, secret_hash, role, expires, uses_left, created) "
                      "VALUES (?,?,?,?,?,?)", (invite_id, secret_hash, role, expires, uses, time.time()))
        return self._write(thd)

    def use_invite(self, invite_id: str, secret_hash: str, now: float) -> Deferred:
        def thd(c: sqlite3.Connection) -> str:
            r = c.execute("SELECT secret_hash, role, expires, uses_left, revoked FROM invites WHERE id=?",
                          (invite_id,)).fetchone()
            if r is None or r[0] != secret_hash:
                raise InviteError("unknown invite code (check that it was copied whole)")
            if r[4]:
                raise InviteError("this invite code was revoked")
            if r[2] is not None and now > r[2]:
                raise InviteError("this invite code has expired; ask for a new one")
            if r[3] is not None and r[3] <= 0:
                raise InviteError("this invite code was already used")
            c.execute("UPDATE invites SET uses_left = uses_left - 1 WHERE id=?", (invite_id,))
            return str(r[1])
        return self._write(thd)

    def list_invites(self) -> Deferred:
        def thd(c: sqlite3.Connection) -> list[dict[str, Any]]:
            cur = c.execute("SELECT id, secret_hash, role, expires, uses_left, created, revoked FROM invites "
                            "ORDER BY created")
            return [_row(cur, r) for r in cur.fetchall()]
        return self._read(thd)

    def revoke_invite(self, invite_id: str) -> Deferred:
        return self._write(lambda c: c.execute("UPDATE invites SET revoked=1 WHERE id=?",
                                               (invite_id,)).rowcount > 0)

    # ------------------------------------------------------------------ audit
    def audit(self, event: str, user: str, address: str, detail: str) -> Deferred:
        def thd(c: sqlite3.Connection) -> None:
            c.execute("INSERT INTO audit (time, event, user, address, detail) VALUES (?,?,?,?,?)",
                      (time.time(), event, user, address, detail))
        return self._write(thd)

    def recent_audit(self, limit: int = 100) -> Deferred:
        def thd(c: sqlite3.Connection) -> list[dict[str, Any]]:
            cur = c.execute("SELECT time, event, user, address, detail FROM audit ORDER BY id DESC LIMIT ?",
                            (limit,))
            return [_row(cur, r) for r in cur.fetchall()]
        return self._read(thd)
