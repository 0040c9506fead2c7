"""The SQLite store on a real file: schema, durability across reopen, owner filtering, invites,
storage trouble, and FIFO on the dedicated thread."""
import queue
import sqlite3

import pytest
from twisted.trial.unittest import SynchronousTestCase

from dsage_core.store import (FinishedJob, InlineRunner, InviteError, NewJob, RunningJob, SqliteStore,
                              StoreError, StoreUnavailable, ThreadRunner)


def new(i, owner="alice", **kw):
    d = dict(id=i, owner=owner, name=f"j{i}", kind="expr", priority=0, trusted_only=False, needs="",
             payload=b"p", blob_id=None, timeout=None, limits=None, code="1+1", created=1.0)
    d.update(kw)
    return NewJob(**d)


class StoreTests(SynchronousTestCase):
    def setUp(self):
        import tempfile
        from pathlib import Path
        self.path = Path(tempfile.mkdtemp()) / "db.sqlite"
        self.store = SqliteStore(self.path, InlineRunner())
        self.successResultOf(self.store.open())

    def reopen(self):
        self.successResultOf(self.store.close())
        self.store = SqliteStore(self.path, InlineRunner())
        return self.successResultOf(self.store.open())

    def test_survives_reopen(self):
        """Queued jobs stay queued, running ones are listed for requeue, finished results stay readable."""
        s = self.store
        self.successResultOf(s.insert_jobs([new(1), new(2), new(3, needs="sage")]))
        self.successResultOf(s.record([RunningJob(2, 1, "w", 5.0)], []))
        self.successResultOf(s.finish_jobs([FinishedJob(1, "completed", b"P\x04", "4", None, "out", 2.0, 3.0, "w")]))
        snap = self.reopen()
        self.assertEqual(snap.max_job_id, 3)
        self.assertEqual([(r["id"], r["status"]) for r in snap.active], [(2, "running"), (3, "queued")])
        self.assertEqual(snap.active[1]["needs"], frozenset({"sage"}))
        row = self.successResultOf(self.store.get_job(1))
        self.assertEqual((row["status"], row["result"], row["output"], row["progress"]),
                         ("completed", b"P\x04", "out", 1.0))

    def test_large_results_live_in_files(self):
        """A result over the threshold is stored in a file beside the database and read back whole."""
        s = self.store
        big = b"P" + bytes(range(256)) * 4096
        self.successResultOf(s.insert_jobs([new(1)]))
        self.successResultOf(s.finish_jobs([FinishedJob(1, "completed", big, "b'...'", None, None, 1.0, 2.0, "w")]))
        self.assertTrue(list((self.path.parent / "results").rglob("1.bin")))
        self.reopen()
        self.assertEqual(self.successResultOf(self.store.get_job(1))["result"], big)

    def test_owner_filter_and_listing(self):
        """list_jobs filters by owner, status and text and never returns payloads."""
        s = self.store
        self.successResultOf(s.insert_jobs([new(1), new(2, owner="bob"), new(3, code="factor(7)")]))
        rows = self.successResultOf(s.list_jobs(owner="alice"))
        self.assertEqual([r["id"] for r in rows], [1, 3])
        self.assertNotIn("payload", rows[0])
        self.assertEqual([r["id"] for r in self.successResultOf(s.list_jobs(text="factor"))], [3])
        self.assertEqual(self.successResultOf(s.count_by_status("bob")), {"queued": 1})

    def test_users(self):
        """Users are unique by name and by key; removal reports whether it did anything."""
        s = self.store
        self.successResultOf(s.add_user("a", "ssh-ed25519 AAA", "admin"))
        self.failureResultOf(s.add_user("a", "ssh-ed25519 BBB", "client"), StoreError)
        self.failureResultOf(s.add_user("b", "ssh-ed25519 AAA", "client"), StoreError)
        self.assertEqual(self.successResultOf(s.user_by_pubkey("ssh-ed25519 AAA"))["name"], "a")
        self.assertTrue(self.successResultOf(s.remove_user("a")))
        self.assertFalse(self.successResultOf(s.remove_user("a")))

    def test_invites(self):
        """An invite is used once; wrong secret, expired and revoked codes fail with clear messages."""
        s = self.store
        self.successResultOf(s.add_invite("i1", "h", "worker", 100.0, 1))
        self.failureResultOf(s.use_invite("i1", "wrong", 50.0), InviteError)
        self.assertEqual(self.successResultOf(s.use_invite("i1", "h", 50.0)), "worker")
        f = self.failureResultOf(s.use_invite("i1", "h", 50.0), InviteError)
        self.assertIn("already used", str(f.value))
        self.successResultOf(s.add_invite("i2", "h", "client", 100.0, 5))
        self.assertIn("expired", str(self.failureResultOf(s.use_invite("i2", "h", 101.0), InviteError).value))
        self.successResultOf(s.revoke_invite("i2"))
        self.assertIn("revoked", str(self.failureResultOf(s.use_invite("i2", "h", 50.0), InviteError).value))

    def test_unwritable_database_refuses_writes_and_keeps_reads(self):
        """A database that cannot be written fails writes with StoreUnavailable; reads work; recovery clears it."""
        s = self.store
        self.successResultOf(s.insert_jobs([new(1)]))

        def disk_full():
            raise sqlite3.OperationalError("database or disk is full")
        s.fault_hook = disk_full
        f = self.failureResultOf(s.insert_jobs([new(2)]), StoreUnavailable)
        self.assertIn("cannot be written", str(f.value))
        self.assertFalse(s.writable)
        self.assertEqual(self.successResultOf(s.get_job(1))["id"], 1)
        self.assertIsNone(self.successResultOf(s.get_job(2)))
        s.fault_hook = None
        self.successResultOf(s.insert_jobs([new(2)]))
        self.assertTrue(s.writable)

    def test_readonly_file(self):
        """A database file opened read-only (query_only) gives StoreUnavailable, not a crash."""
        s = self.store
        s._conn().execute("PRAGMA query_only=ON")
        self.failureResultOf(s.insert_jobs([new(5)]), StoreUnavailable)


class FakeReactor:
    """callFromThread puts callables on a queue the test drains: deterministic, no real reactor."""

    def __init__(self):
        self.q = queue.Queue()

    def callFromThread(self, f, *a, **kw):
        self.q.put((f, a, kw))

    def addSystemEventTrigger(self, *a):
        return None

    def removeSystemEventTrigger(self, t):
        pass

    def drain_until(self, d, timeout=10):
        results = []
        d.addBoth(results.append)
        while not results:
            f, a, kw = self.q.get(timeout=timeout)
            f(*a, **kw)
        return results[0]


def test_thread_runner_is_fifo(tmp_path):
    """On the dedicated thread an UPDATE issued after an INSERT sees the row."""
    r = FakeReactor()
    s = SqliteStore(tmp_path / "db.sqlite", ThreadRunner(r))
    r.drain_until(s.open())
    s.insert_jobs([new(i) for i in range(1, 501)])
    s.record([RunningJob(i, 1, "w", 2.0) for i in range(1, 501)], [])
    d = s.count_by_status(None)
    assert r.drain_until(d) == {"running": 500}
    r.drain_until(s.close())
