"""The SQLite store on a real file, and the PostgreSQL store on a real server (the same tests, the
``Pg*`` classes): schema and migrations, durability across reopen, every method, owner filtering,
invites, storage trouble, and FIFO on the dedicated thread."""
import queue
import sqlite3
import tempfile
import threading
from pathlib import Path

import pytest
from twisted.trial.unittest import SynchronousTestCase

from dsage_core.store import (FinishedJob, InlineRunner, InviteError, NewJob, RunningJob, SqliteStore,
                              StoreError, StoreUnavailable, ThreadRunner)
from dsage_core.store.schema import ENDED_JOBS, MIGRATIONS, OPEN_JOBS, migrate


def new(i, owner="alice", **kw):
    d = dict(id=i, owner=owner, name=f"j{i}", kind="expr", priority=0, trusted_only=False, needs="",
             payload=b"p", blob_id=None, timeout=None, limits=None, code="1+1", created=1.0)
    d.update(kw)
    return NewJob(**d)


def done(i, status="completed", result=b"P\x04", **kw):
    d = dict(id=i, status=status, result=result, result_preview="4", error=None, output="out",
             started=2.0, finished=3.0, worker="w")
    d.update(kw)
    return FinishedJob(**d)


class StoreCase(SynchronousTestCase):
    def setUp(self):
        self.path = Path(tempfile.mkdtemp()) / "db.sqlite"
        self.store = self.make_store()
        self.snap = self.successResultOf(self.store.open())

    def make_store(self):
        return SqliteStore(self.path, InlineRunner())

    def disk_full(self):
        """The exception this backend raises when its disk is full."""
        return sqlite3.OperationalError("database or disk is full")

    def tearDown(self):
        self.successResultOf(self.store.close())

    def ok(self, d):
        return self.successResultOf(d)

    def reopen(self):
        self.ok(self.store.close())
        self.store = self.make_store()
        return self.ok(self.store.open())


class SchemaTests(StoreCase):
    def test_open_fresh_creates_schema_and_pragmas(self):
        """A new file gets every table, the latest user_version, WAL and the durability pragmas."""
        c = self.store._conn()
        tables = {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        self.assertEqual(tables, {"jobs", "blobs", "users", "invites", "audit", "replica_answers",
                                  "job_exceptions"})
        self.assertEqual(c.execute("PRAGMA user_version").fetchone()[0], len(MIGRATIONS))
        self.assertEqual(c.execute("PRAGMA journal_mode").fetchone()[0], "wal")
        self.assertEqual(c.execute("PRAGMA synchronous").fetchone()[0], 1)  # NORMAL
        self.assertEqual(c.execute("PRAGMA foreign_keys").fetchone()[0], 1)
        self.assertEqual(c.execute("PRAGMA busy_timeout").fetchone()[0], 5000)
        # small pages: a job's commit rewrites ~5 of them (row + indexes); big results are files
        self.assertEqual(c.execute("PRAGMA page_size").fetchone()[0], 4096)
        self.assertEqual(self.snap, (0, []))

    def test_open_old_version_migrates_and_keeps_rows(self):
        """A database at schema version 1 is brought up to date without losing its jobs."""
        old = self.path.parent / "old.sqlite"
        c = sqlite3.connect(old, isolation_level=None)
        migrate(c, MIGRATIONS[:1])
        c.execute("INSERT INTO jobs (id, owner, status) VALUES (7, 'a', 'queued')")
        c.close()
        s = SqliteStore(old, InlineRunner())
        snap = self.ok(s.open())
        self.assertEqual((snap.max_job_id, [r["id"] for r in snap.active]), (7, [7]))
        cols = {r[1] for r in s._conn().execute("PRAGMA table_info(jobs)")}
        self.assertIn("result_file", cols)
        self.assertEqual(s._conn().execute("PRAGMA user_version").fetchone()[0], len(MIGRATIONS))
        self.ok(s.close())

    def test_migrate_status_index_to_partial_indexes(self):
        """A version-6 database (one status index over every job) gets the partial indexes of open
        and of ended-but-not-completed jobs; its rows, counts, listings and snapshot are unchanged,
        and the queries by status use the new indexes."""
        old = self.path.parent / "v6.sqlite"
        c = sqlite3.connect(old, isolation_level=None)
        migrate(c, MIGRATIONS[:6])
        for i, st in enumerate(["queued", "running", "completed", "completed", "failed", "killed"], 1):
            c.execute("INSERT INTO jobs (id, owner, status) VALUES (?, 'a', ?)", (i, st))
        c.close()
        s = SqliteStore(old, InlineRunner())
        snap = self.ok(s.open())
        self.assertEqual([r["id"] for r in snap.active], [1, 2])
        conn = s._conn()
        indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='index' "
                                              "AND tbl_name='jobs' AND sql IS NOT NULL")}
        self.assertEqual(indexes, {"jobs_owner", "jobs_open", "jobs_ended"})
        self.assertEqual(conn.execute("PRAGMA user_version").fetchone()[0], len(MIGRATIONS))
        self.assertEqual(self.ok(s.count_by_status()),
                         {"queued": 1, "running": 1, "completed": 2, "failed": 1, "killed": 1})
        for st, ids in [("queued", [1]), ("running", [2]), ("completed", [3, 4]), ("failed", [5]),
                        ("killed", [6]), ("lost", [])]:
            self.assertEqual([r["id"] for r in self.ok(s.list_jobs(status=st))], ids, st)
        self.assertEqual([r["id"] for r in self.ok(s.list_jobs(status="failed", newest_first=True))], [5])

        def plan(sql, *args):
            return " ".join(r[-1] for r in conn.execute("EXPLAIN QUERY PLAN " + sql, args))
        self.assertIn("jobs_open", plan(f"SELECT id FROM jobs WHERE {OPEN_JOBS} ORDER BY id"))
        self.assertIn("jobs_open", plan(f"SELECT id FROM jobs WHERE status=? AND {OPEN_JOBS} ORDER BY id",
                                        "queued"))
        self.assertIn("jobs_ended", plan(f"SELECT id FROM jobs WHERE status=? AND {ENDED_JOBS} ORDER BY id",
                                         "failed"))
        self.ok(s.close())
        # the empty store counts nothing (no completed key from the subtraction)
        self.assertEqual(self.ok(self.store.count_by_status()), {})

    def test_open_newer_schema_refused(self):
        """A database written by a newer dsage is refused with a clear error instead of being damaged."""
        self.store._conn().execute(f"PRAGMA user_version={len(MIGRATIONS) + 1}")
        s = SqliteStore(self.path, InlineRunner())
        f = self.failureResultOf(s.open(), sqlite3.DatabaseError)
        self.assertIn("newer than this dsage", str(f.value))
        self.ok(s.close())


class JobTests(StoreCase):
    def test_reopen_keeps_queued_running_and_finished(self):
        """Queued jobs stay queued, running ones are listed for requeue, finished results stay readable."""
        s = self.store
        self.ok(s.insert_jobs([new(1), new(2), new(3, needs="sage,gpu", priority=5)]))
        self.ok(s.record([RunningJob(2, 1, "w", 5.0)], []))
        self.ok(s.record([], [done(1)]))
        snap = self.reopen()
        self.assertEqual(snap.max_job_id, 3)
        self.assertEqual([(r["id"], r["status"]) for r in snap.active], [(2, "running"), (3, "queued")])
        self.assertEqual((snap.active[1]["needs"], snap.active[1]["priority"]), (frozenset({"sage", "gpu"}), 5))
        self.assertEqual(snap.active[0]["attempts"], 1)
        row = self.ok(self.store.get_job(1))
        self.assertEqual((row["status"], row["result"], row["output"], row["progress"], row["worker"]),
                         ("completed", b"P\x04", "out", 1.0, "w"))

    def test_get_job_unknown_is_none(self):
        """get_job of an id never inserted fires with None."""
        self.assertIsNone(self.ok(self.store.get_job(99)))

    def test_finish_failed_records_error_without_full_progress(self):
        """A failed job gets the error text, no progress 1.0 (only completed jobs do) and needs as an
        empty frozenset."""
        s = self.store
        self.ok(s.insert_jobs([new(1)]))
        self.ok(s.record([], [done(1, "failed", None, error="ZeroDivisionError", started=None, worker=None)]))
        row = self.ok(s.get_job(1))
        self.assertEqual((row["status"], row["error"], row["needs"]), ("failed", "ZeroDivisionError", frozenset()))
        self.assertNotEqual(row["progress"], 1.0)
        self.assertIsNone(row["started"])

    def test_requeue_clears_worker_and_counts_failures(self):
        """A requeued job is queued again with its failure count, without worker or start time."""
        s = self.store
        self.ok(s.insert_jobs([new(1)]))
        self.ok(s.record([RunningJob(1, 1, "w", 5.0)], []))
        self.ok(s.requeue_jobs([(1, 1)]))
        row = self.ok(s.get_job(1))
        self.assertEqual((row["status"], row["failures"], row["worker"], row["started"], row["attempts"]),
                         ("queued", 1, None, None, 1))

    def test_set_status_marks_queued_job_terminal(self):
        """set_status records a killed queued job with its error and finish time; it leaves the snapshot."""
        s = self.store
        self.ok(s.insert_jobs([new(1), new(2)]))
        self.ok(s.set_status([(1, "killed", "killed by alice", 9.0)]))
        row = self.ok(s.get_job(1))
        self.assertEqual((row["status"], row["error"], row["finished"]), ("killed", "killed by alice", 9.0))
        self.assertEqual([r["id"] for r in self.reopen().active], [2])

    def test_record_writes_everything_in_one_transaction(self):
        """record() inserts, dispatches and finishes in one commit; a failure in it leaves nothing."""
        s = self.store
        self.ok(s.record([RunningJob(1, 1, "w", 2.0)], [done(2)], [new(1), new(2)]))
        self.assertEqual(self.ok(s.count_by_status()), {"running": 1, "completed": 1})
        self.failureResultOf(s.record([], [], [new(3), new(1)]), StoreError)  # duplicate id: rolled back
        self.assertIsNone(self.ok(s.get_job(3)))

    def test_dispatch_and_outcome_in_one_record_equal_them_apart(self):
        """A job dispatched and finished in one record() ends as after a dispatch and
        its outcome in two record() calls (attempt, start, worker), and a dispatch of a killed job is not revived."""
        s = self.store
        self.ok(s.insert_jobs([new(1), new(2), new(3), new(4)]))
        self.ok(s.set_status([(4, "killed", "killed by alice", 1.5)]))
        self.ok(s.record([RunningJob(1, 3, "w1", 2.5)], []))
        self.ok(s.record([], [done(1, started=None, worker=None)]))
        self.ok(s.record([RunningJob(2, 3, "w1", 2.5), RunningJob(3, 2, "w2", 2.0),
                          RunningJob(4, 2, "w2", 2.0)],
                         [done(2, started=None, worker=None), done(3), done(4, status="failed")]))
        cols = ("status", "attempts", "started", "worker", "finished", "progress", "payload", "result")
        one, two, three, four = (self.ok(s.get_job(i)) for i in (1, 2, 3, 4))
        self.assertEqual({k: one[k] for k in cols}, {k: two[k] for k in cols})
        self.assertEqual((two["attempts"], two["started"], two["worker"]), (3, 2.5, "w1"))
        self.assertEqual((three["attempts"], three["started"], three["worker"]), (2, 2.0, "w"))
        self.assertEqual((four["status"], four["attempts"]), ("failed", 0))

    def test_dispatch_with_its_insert_in_one_record_equals_them_apart(self):
        """A job inserted and dispatched (even twice) in one record() is stored as after
        insert_jobs then a dispatch in its own record(); one also finished there as after its outcome alone."""
        s = self.store
        self.ok(s.insert_jobs([new(1)]))
        self.ok(s.record([RunningJob(1, 1, "w1", 2.5)], []))
        self.ok(s.insert_jobs([new(2)]))
        self.ok(s.record([RunningJob(2, 1, "w1", 2.5)], []))
        self.ok(s.record([], [done(2, started=None, worker=None)]))
        self.ok(s.record([RunningJob(11, 1, "w2", 2.0), RunningJob(11, 1, "w1", 2.5),
                          RunningJob(12, 1, "w1", 2.5)],
                         [done(12, started=None, worker=None)], [new(11), new(12), new(13)]))
        cols = ("status", "attempts", "started", "worker", "finished", "progress", "payload", "result")
        for a, b in ((1, 11), (2, 12)):
            ra, rb = self.ok(s.get_job(a)), self.ok(s.get_job(b))
            self.assertEqual({k: ra[k] for k in cols}, {k: rb[k] for k in cols})
        self.assertEqual(self.ok(s.get_job(13))["status"], "queued")
        self.assertEqual([r["id"] for r in self.reopen().active], [1, 11, 13])

    def test_an_end_writes_each_column_it_names(self):
        """An end stores status, result, preview, error, output, finish time and the untrusted mark;
        a None start time or worker keeps the dispatch's; the payload goes; a completed job's
        progress is 1.0, another's is kept."""
        s = self.store
        self.ok(s.insert_jobs([new(1), new(2), new(3)]))
        self.ok(s.record([RunningJob(1, 1, "w1", 1.5), RunningJob(2, 1, "w2", 1.5), RunningJob(3, 1, "w3", 1.5)],
                         []))
        self.ok(s.record([], [done(1, untrusted=True),
                              done(2, status="failed", result=None, error="boom", output=None,
                                   started=None, worker=None, exc=b"\x80"),
                              done(3, untrusted=False, started=2.5, worker="w9")]))
        one, two, three = (self.ok(s.get_job(i)) for i in (1, 2, 3))
        self.assertEqual((one["status"], bytes(one["result"]), one["result_preview"], one["error"], one["output"],
                          one["started"], one["finished"], one["worker"], one["progress"], one["result_untrusted"],
                          one["payload"]),
                         ("completed", b"P\x04", "4", None, "out", 2.0, 3.0, "w", 1.0, 1, None))
        self.assertEqual((two["status"], two["result"], two["error"], two["output"], two["started"], two["worker"],
                          two["progress"], two["result_untrusted"], bytes(two["exc"])),
                         ("failed", None, "boom", None, 1.5, "w2", None, None, b"\x80"))
        self.assertEqual((three["started"], three["worker"], three["result_untrusted"]), (2.5, "w9", None))

    def test_large_results_live_in_files(self):
        """A result over the threshold is stored in a file beside the database and read back whole."""
        s = self.store
        big = b"P" + bytes(range(256)) * 4096
        self.ok(s.insert_jobs([new(1)]))
        self.ok(s.record([], [done(1, result=big)]))
        self.assertTrue(list((self.path.parent / "results").rglob("1.bin")))
        self.reopen()
        self.assertEqual(self.ok(self.store.get_job(1))["result"], big)

    def test_sweep_removes_only_result_files_no_row_names(self):
        """Orphans (a write that never committed, a lost worker report) go; named files and
        anything that is not a result file stay."""
        s = self.store
        big = b"P" + bytes(range(256)) * 4096
        self.ok(s.insert_jobs([new(1), new(2), new(3), new(1500)]))
        self.ok(s.record([], [done(1, result=big)]))                       # results/000000/1.bin
        sub = self.path.parent / "results" / "000000"
        (sub / "3-2.bin").write_bytes(big)                                  # a local worker's file
        self.ok(s.record([], [done(3, result=None, result_file="results/000000/3-2.bin")]))
        (sub / "2-1.bin").write_bytes(b"orphan of a lost report")
        (sub / "2.bin").write_bytes(b"orphan of a failed commit")
        (sub / "notes.txt").write_text("not ours")
        other = self.path.parent / "results" / "000001"
        other.mkdir()
        (other / "1500-3.bin").write_bytes(b"orphan")
        (self.path.parent / "results" / ".local-token").write_text("t")
        self.assertEqual(self.ok(s.sweep_result_files()), 3)
        self.assertEqual(sorted(p.name for p in sub.iterdir()), ["1.bin", "3-2.bin", "notes.txt"])
        self.assertEqual(list(other.iterdir()), [])
        self.assertTrue((self.path.parent / "results" / ".local-token").exists())
        self.assertEqual(self.ok(s.get_job(1))["result"], big)


class ListingTests(StoreCase):
    def setUp(self):
        super().setUp()
        self.ok(self.store.insert_jobs([new(1), new(2, owner="bob"), new(3, code="factor(7)"),
                                        new(4, name="factorial"), new(5)]))
        self.ok(self.store.record([], [done(5)]))

    def ids(self, **kw):
        return [r["id"] for r in self.ok(self.store.list_jobs(**kw))]

    def test_list_jobs_filters_by_owner_status_and_text(self):
        """Owner, status and text (name or code) filters each narrow the listing."""
        self.assertEqual(self.ids(owner="alice"), [1, 3, 4, 5])
        self.assertEqual(self.ids(owner="bob"), [2])
        self.assertEqual(self.ids(status="completed"), [5])
        self.assertEqual(self.ids(text="factor"), [3, 4])
        self.assertEqual(self.ids(owner="bob", text="factor"), [])

    def test_list_jobs_pages_and_orders(self):
        """after_id, limit and newest_first page through the table."""
        self.assertEqual(self.ids(after_id=2, limit=2), [3, 4])
        self.assertEqual(self.ids(newest_first=True, limit=2), [5, 4])

    def test_list_jobs_summaries_carry_no_blobs(self):
        """Summaries leave out payload, result, output and code, but carry status and preview."""
        row = self.ok(self.store.list_jobs(status="completed"))[0]
        for heavy in ("payload", "result", "output", "code", "limits"):
            self.assertNotIn(heavy, row)
        self.assertEqual((row["result_preview"], row["needs"]), ("4", frozenset()))

    def test_count_by_status_per_owner(self):
        """count_by_status counts everyone's jobs or one owner's."""
        self.assertEqual(self.ok(self.store.count_by_status()), {"queued": 4, "completed": 1})
        self.assertEqual(self.ok(self.store.count_by_status("bob")), {"queued": 1})
        self.assertEqual(self.ok(self.store.count_by_status("nobody")), {})


class BlobUserAuditTests(StoreCase):
    def test_blobs_stored_once(self):
        """put_blob keeps the first bytes for an id; get_blob returns them, or None for an unknown id."""
        s = self.store
        self.ok(s.put_blob("h1", b"fn", "alice"))
        self.ok(s.put_blob("h1", b"other", "bob"))
        self.assertEqual(self.ok(s.get_blob("h1")), b"fn")
        self.assertIsNone(self.ok(s.get_blob("h2")))

    def test_users_unique_by_name_and_key(self):
        """Users are unique by name and by key; lookups, count and removal report what they find."""
        s = self.store
        self.ok(s.add_user("a", "ssh-ed25519 AAA", "admin"))
        self.ok(s.add_user("b", "ssh-ed25519 BBB", "worker"))
        f = self.failureResultOf(s.add_user("a", "ssh-ed25519 CCC", "client"), StoreError)
        self.assertIn("already exists", str(f.value))
        self.failureResultOf(s.add_user("c", "ssh-ed25519 AAA", "client"), StoreError)
        self.assertEqual(self.ok(s.user_by_pubkey("ssh-ed25519 AAA"))["name"], "a")
        self.assertEqual(self.ok(s.user_by_name("b"))["role"], "worker")
        self.assertIsNone(self.ok(s.user_by_name("c")))
        self.assertEqual([u["name"] for u in self.ok(s.list_users())], ["a", "b"])
        self.assertEqual(self.ok(s.user_count()), 2)
        self.assertTrue(self.ok(s.remove_user("a")))
        self.assertFalse(self.ok(s.remove_user("a")))
        self.assertIsNone(self.ok(s.user_by_pubkey("ssh-ed25519 AAA")))

    def test_audit_newest_first(self):
        """Audit records come back newest first, at most ``limit`` of them."""
        s = self.store
        for i in range(3):
            self.ok(s.audit("login", f"u{i}", "127.0.0.1", "ok"))
        rows = self.ok(s.recent_audit(2))
        self.assertEqual([(r["event"], r["user"]) for r in rows], [("login", "u2"), ("login", "u1")])
        self.assertEqual(rows[0]["address"], "127.0.0.1")


class InviteTests(StoreCase):
    keys = 0

    def use(self, iid="i1", secret="h", now=50.0):
        """Redeem the invite for a new key, as a joining peer does; fires with the role it granted."""
        self.keys += 1
        n = self.keys
        d = self.store.redeem_invite(iid, secret, now, f"ssh-ed25519 K{n}", lambda role: f"{role}-{n}")
        return d.addCallback(lambda r: r[1])

    def error(self, **kw):
        return str(self.failureResultOf(self.use(**kw), InviteError).value)

    def test_invite_used_up_after_its_uses(self):
        """A two-use invite grants its role twice, then says it was already used."""
        self.ok(self.store.add_invite("i1", "h", "worker", 100.0, 2))
        self.assertEqual([self.ok(self.use()), self.ok(self.use())], ["worker", "worker"])
        self.assertIn("already used", self.error())
        self.assertEqual(self.ok(self.store.list_invites())[0]["uses_left"], 0)

    def test_invite_errors_are_clear(self):
        """Unknown code, wrong secret, expired and revoked each fail with their own message."""
        s = self.store
        self.ok(s.add_invite("i1", "h", "client", 100.0, 5))
        self.assertIn("unknown invite code", self.error(iid="nope"))
        self.assertIn("wrong secret", self.error(secret="bad"))
        self.assertIn("expired", self.error(now=101.0))
        self.assertTrue(self.ok(s.revoke_invite("i1")))
        self.assertFalse(self.ok(s.revoke_invite("nope")))
        self.assertIn("revoked", self.error())
        inv = self.ok(s.list_invites())
        self.assertEqual([(i["id"], i["revoked"], i["uses_left"]) for i in inv], [("i1", 1, 5)])


class UnwritableTests(StoreCase):
    def test_disk_full_refuses_writes_and_keeps_reads(self):
        """A write failing for lack of space gives StoreUnavailable; reads work; the next write recovers."""
        s = self.store
        self.ok(s.insert_jobs([new(1)]))

        err = self.disk_full()

        def disk_full():
            raise err
        s.fault_hook = disk_full
        f = self.failureResultOf(s.insert_jobs([new(2)]), StoreUnavailable)
        self.assertIn("database", str(f.value))
        self.assertIn(f"cannot be written ({err})", str(f.value))
        self.assertEqual((s.writable, s.last_error), (False, str(err)))
        self.assertEqual(self.ok(s.get_job(1))["id"], 1)
        self.assertIsNone(self.ok(s.get_job(2)))
        s.fault_hook = None
        self.ok(s.insert_jobs([new(2)]))
        self.assertEqual((s.writable, s.last_error), (True, None))

    def test_readonly_database_rolls_back_and_keeps_reads(self):
        """SQLite's own readonly error (query_only) fails every kind of write cleanly, mid-batch too."""
        s = self.store
        self.ok(s.insert_jobs([new(1)]))
        s._conn().execute("PRAGMA query_only=ON")
        f = self.failureResultOf(s.insert_jobs([new(5)]), StoreUnavailable)
        self.assertIn("readonly", str(f.value))
        self.failureResultOf(s.record([], [done(1)]), StoreUnavailable)
        self.failureResultOf(s.add_user("a", "k", "admin"), StoreUnavailable)
        self.assertFalse(s.writable)
        self.assertEqual(self.ok(s.get_job(1))["status"], "queued")
        self.assertFalse(s._conn().in_transaction)
        s._conn().execute("PRAGMA query_only=OFF")
        self.ok(s.record([], [done(1)]))
        self.assertTrue(s.writable)

    def no_such_column(self):
        return sqlite3.OperationalError("no such column: nope")

    def test_other_operational_error_is_store_error_not_unavailable(self):
        """An error that is not about writing (a bug) is a StoreError and leaves ``writable`` alone."""
        bad = self.no_such_column()

        def bug():
            raise bad
        self.store.fault_hook = bug
        f = self.failureResultOf(self.store.insert_jobs([new(1)]), StoreError)
        self.assertNotIsInstance(f.value, StoreUnavailable)
        self.assertTrue(self.store.writable)


class FakeReactor:
    """callFromThread puts callables on a queue the test drains: deterministic, no real reactor."""

    def __init__(self):
        self.q = queue.Queue()
        self.triggers = []

    def callFromThread(self, f, *a, **kw):
        self.q.put((f, a, kw))

    def addSystemEventTrigger(self, phase, event, fn):
        self.triggers.append(fn)
        return fn

    def removeSystemEventTrigger(self, t):
        self.triggers.remove(t)

    def drain_until(self, d, timeout=10):
        results = []
        d.addBoth(results.append)
        while not results:
            f, a, kw = self.q.get(timeout=timeout)
            f(*a, **kw)
        return results[0]


def test_thread_runner_is_fifo(tmp_path):
    """On the dedicated thread each UPDATE issued right after its INSERT sees the rows, in order."""
    r = FakeReactor()
    s = SqliteStore(tmp_path / "db.sqlite", ThreadRunner(r))
    r.drain_until(s.open())
    for b in range(4):
        s.insert_jobs([new(i) for i in range(b * 250 + 1, b * 250 + 251)])
        s.record([RunningJob(i, 1, "w", 2.0) for i in range(b * 250 + 1, b * 250 + 251)], [])
    s.record([], [done(i) for i in range(1, 11)])
    assert r.drain_until(s.count_by_status(None)) == {"running": 990, "completed": 10}
    r.drain_until(s.close())


def test_thread_runner_runs_on_one_thread_and_reports_errors():
    """Every call runs on the same non-reactor thread; exceptions arrive as failures via callFromThread."""
    r = FakeReactor()
    runner = ThreadRunner(r)
    runner.start()
    names = [r.drain_until(runner.run(lambda: threading.current_thread().name)) for _ in range(3)]
    assert names == ["dsage-db"] * 3
    failure = r.drain_until(runner.run(lambda: 1 / 0))
    assert failure.check(ZeroDivisionError)
    runner.stop()


def test_thread_runner_stop_joins_and_refuses_later_work():
    """stop() finishes queued work, joins the thread, drops the shutdown trigger; later calls fail."""
    r = FakeReactor()
    runner = ThreadRunner(r)
    runner.start()
    thread = runner._thread
    d = runner.run(lambda: "queued before stop")
    assert r.triggers == [runner.stop]
    runner.stop()
    assert not thread.is_alive()
    assert r.triggers == []
    assert r.drain_until(d) == "queued before stop"
    with pytest.raises(StoreError):
        r.drain_until(runner.run(lambda: 1)).raiseException()


def test_inline_runner_fires_at_once():
    """InlineRunner returns already-fired Deferreds for results and failures."""
    got = []
    InlineRunner().run(lambda x: x + 1, 1).addBoth(got.append)
    InlineRunner().run(lambda: 1 / 0).addBoth(got.append)
    assert got[0] == 2 and got[1].check(ZeroDivisionError)


def test_a_worker_may_only_name_the_expected_result_file(tmp_path):
    """The server takes a result file only under the name it expects, with the size reported."""
    from dsage_core import local_results as lr
    rel = lr.write_result(tmp_path, 1234, 2, b"x" * 10)
    assert rel == "results/000001/1234-2.bin"
    assert lr.check_result(tmp_path, 1234, 2, rel, 10) is None
    assert "unexpected result file" in lr.check_result(tmp_path, 1234, 3, rel, 10)
    assert "unexpected result file" in lr.check_result(tmp_path, 1234, 2, "../../etc/passwd", 10)
    assert "not the 11" in lr.check_result(tmp_path, 1234, 2, rel, 11)
    assert "missing" in lr.check_result(tmp_path, 99, 1, lr.result_name(99, 1), 0)
    assert "malformed" in lr.check_result(tmp_path, 1234, 2, rel, "10")
    token = lr.write_token(tmp_path)
    assert lr.read_token(tmp_path) == token and lr.read_token(tmp_path / "nowhere") is None


class CheckpointCase(StoreCase):
    """WAL checkpoints run on their own thread, not inside a commit (SQLite's automatic one took
    15-20 ms of some unlucky commit here)."""

    def test_the_writer_never_checkpoints(self):
        c = self.store._conn()
        assert c.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0

    def test_checkpointer_runs_after_enough_commits(self):
        cp = self.store.checkpointer
        cp.ran.clear()
        for i in range(1, cp.every_commits + 1):
            self.ok(self.store.insert_jobs([new(i)]))
        assert cp.ran.wait(10), "no checkpoint after every_commits commits"
        assert cp.checkpoints >= 1
        assert len(self.ok(self.store.list_jobs("alice", False, {}))) == cp.every_commits


# ---------------------------------------------------------------------- the same on PostgreSQL
class PgBackend:
    """Mixed into a StoreCase: the PostgreSQL store on a fresh database of the session's server."""

    @pytest.fixture(autouse=True)
    def _database(self, pg_url):
        self.url = pg_url

    def make_store(self):
        from dsage_core.store.postgres import PgStore
        return PgStore(self.url, InlineRunner())

    def disk_full(self):
        import psycopg.errors
        return psycopg.errors.DiskFull("could not extend file: No space left on device")

    def no_such_column(self):
        import psycopg.errors
        return psycopg.errors.UndefinedColumn('column "nope" does not exist')


class PgJobTests(PgBackend, JobTests):
    def test_large_results_live_in_files(self):
        """On PostgreSQL a large result lives in the database (a standby on another host reads it)."""
        s = self.store
        big = b"P" + bytes(range(256)) * 4096
        self.ok(s.insert_jobs([new(1)]))
        self.ok(s.record([], [done(1, result=big)]))
        self.assertFalse((self.path.parent / "results").exists())
        self.reopen()
        self.assertEqual(self.ok(self.store.get_job(1))["result"], big)

    def test_sweep_removes_only_result_files_no_row_names(self):
        """There are no result files to sweep on PostgreSQL."""
        self.assertEqual(self.ok(self.store.sweep_result_files()), 0)


class PgListingTests(PgBackend, ListingTests):
    pass


class PgBlobUserAuditTests(PgBackend, BlobUserAuditTests):
    pass


class PgInviteTests(PgBackend, InviteTests):
    pass


class PgUnwritableTests(PgBackend, UnwritableTests):
    def test_readonly_database_rolls_back_and_keeps_reads(self):
        """A read-only PostgreSQL session fails every kind of write cleanly; reads work; it recovers."""
        s = self.store
        self.ok(s.insert_jobs([new(1)]))
        s._conn().raw.execute("SET default_transaction_read_only = on")
        f = self.failureResultOf(s.insert_jobs([new(5)]), StoreUnavailable)
        self.assertIn("read-only", str(f.value))
        self.failureResultOf(s.record([], [done(1)]), StoreUnavailable)
        self.failureResultOf(s.add_user("a", "k", "admin"), StoreUnavailable)
        self.assertFalse(s.writable)
        self.assertEqual(self.ok(s.get_job(1))["status"], "queued")
        s._conn().raw.execute("SET default_transaction_read_only = off")
        self.ok(s.record([], [done(1)]))
        self.assertTrue(s.writable)

    def test_fenced_store_refuses_writes_and_keeps_reads(self):
        """A store whose server lost the database lock writes nothing more, and says why."""
        s = self.store
        self.ok(s.insert_jobs([new(1)]))
        s.fence("the lock connection was lost")
        f = self.failureResultOf(s.record([], [done(1)]), StoreUnavailable)
        self.assertIn("no longer holds the database (the lock connection was lost)", str(f.value))
        self.assertEqual(self.ok(s.get_job(1))["status"], "queued")

    def test_lost_connection_is_unavailable_then_reconnects(self):
        """A store connection the database drops fails that write as unavailable; the next one reconnects."""
        s = self.store
        self.ok(s.insert_jobs([new(1)]))
        pid = s._conn().raw.info.backend_pid
        import psycopg
        with psycopg.connect(self.url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        self.failureResultOf(s.insert_jobs([new(2)]), StoreUnavailable)
        self.ok(s.insert_jobs([new(2)]))
        self.assertEqual([r["id"] for r in self.ok(s.list_jobs())], [1, 2])


class PgSchemaTests(PgBackend, StoreCase):
    def test_open_fresh_creates_the_sqlite_schema(self):
        """A new database gets the SQLite schema's tables, columns and version (REAL as 8 bytes)."""
        from dsage_core.store.schema import connect as sqlite_connect
        c = self.store._conn()
        cols = {(t, col): typ for t, col, typ in c.execute(
            "SELECT table_name, column_name, data_type FROM information_schema.columns "
            "WHERE table_schema='public'").fetchall()}
        sq = sqlite_connect(str(self.path))
        migrate(sq)
        expected = {(t, r[1]) for t in ("jobs", "blobs", "users", "invites", "audit", "replica_answers", "job_exceptions")
                    for r in sq.execute(f"PRAGMA table_info({t})")}
        self.assertEqual({k for k in cols if k[0] != "dsage_schema"}, expected)
        self.assertEqual((cols["jobs", "created"], cols["jobs", "payload"], cols["audit", "user"]),
                         ("double precision", "bytea", "text"))
        self.assertEqual(c.execute("SELECT version FROM dsage_schema").fetchone()[0], len(MIGRATIONS))
        self.assertEqual(self.snap, (0, []))

    def test_open_old_version_migrates_and_keeps_rows(self):
        """A database at schema version 1 is brought up to date without losing its jobs."""
        from dsage_core.store import pg_schema
        self.ok(self.store.close())
        import psycopg
        with psycopg.connect(self.url, autocommit=True) as c:
            c.execute("DROP TABLE jobs, blobs, users, invites, audit, replica_answers, job_exceptions, dsage_schema")
            pg_schema.migrate(c, pg_schema.migrations()[:1])
            c.execute("INSERT INTO jobs (id, owner, status) VALUES (7, 'a', 'queued')")
        snap = self.reopen()
        self.assertEqual((snap.max_job_id, [r["id"] for r in snap.active]), (7, [7]))
        self.assertEqual(self.ok(self.store.get_job(7))["ext"], None)

    def test_open_newer_schema_refused(self):
        """A database written by a newer dsage is refused with a clear error instead of being damaged."""
        self.store._conn().execute("UPDATE dsage_schema SET version=?", (len(MIGRATIONS) + 1,))
        s = self.make_store()
        f = self.failureResultOf(s.open(), StoreError)
        self.assertIn("newer than this dsage", str(f.value))
        self.ok(s.close())

    def test_unreachable_database_is_one_clear_line(self):
        """A database that does not exist, or a server that does not answer, fails open() in one line."""
        from dsage_core.store.postgres import PgStore
        for url in (self.url.replace("///", "///nosuchdb_"), "postgresql://u:secret@127.0.0.1:9/db"):
            s = PgStore(url, InlineRunner())
            f = self.failureResultOf(s.open(), StoreError)
            msg = str(f.value)
            self.assertIn("cannot open the PostgreSQL store", msg)
            self.assertNotIn("\n", msg)
            self.assertNotIn("secret", msg)
            self.ok(s.close())


def test_pg_thread_runner_is_fifo(pg_url):
    """The PostgreSQL store on its dedicated thread: each UPDATE right after its INSERT sees the rows."""
    from dsage_core.store.postgres import PgStore
    r = FakeReactor()
    s = PgStore(pg_url, ThreadRunner(r))
    r.drain_until(s.open())
    for b in range(4):
        s.insert_jobs([new(i) for i in range(b * 250 + 1, b * 250 + 251)])
        s.record([RunningJob(i, 1, "w", 2.0) for i in range(b * 250 + 1, b * 250 + 251)], [])
    s.record([], [done(i) for i in range(1, 11)])
    assert r.drain_until(s.count_by_status(None)) == {"running": 990, "completed": 10}
    r.drain_until(s.close())


def test_pg_group_commit_merges_calls_and_isolates_a_failing_one(pg_url):
    """Calls that queue while a group runs go in the next group, in one transaction and one commit:
    record() calls merge, and a failing one (a duplicate id) fails alone; the others are stored."""
    from dsage_core.store.postgres import PgStore
    r = FakeReactor()
    s = PgStore(pg_url, ThreadRunner(r))
    r.drain_until(s.open())
    first = s.insert_jobs([new(1)])          # runs at once; the next three queue behind it
    a = s.record([], [], [new(2)])
    b = s.record([], [done(9)], [new(1)])    # job 1 exists: rejected, with its result
    c = s.record([RunningJob(2, 1, "w", 2.0)], [], [new(3)])
    assert r.drain_until(first) is None
    groups = s.groups
    assert r.drain_until(a) is None
    assert "database write rejected" in str(r.drain_until(b).value)
    assert r.drain_until(c) is None
    assert s.groups == groups + 1            # a, b and c: one commit
    assert r.drain_until(s.count_by_status(None)) == {"queued": 2, "running": 1}
    r.drain_until(s.close())
