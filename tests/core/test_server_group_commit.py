"""The group commit alone, on a real SQLite file (inline runner) and Twisted's Clock: one
transaction per turn, a held commit that a report or a reader takes along, and what the owner is
told."""
import msgpack
import pytest
from twisted.internet.task import Clock

from dsage_core.server.commits import COMMIT_DELAY, GroupCommit
from dsage_core.store import FinishedJob, InlineRunner, NewJob, RunningJob, SqliteStore


class Owner:
    """What the server does on a committed or failed batch of ends: records it."""

    def __init__(self):
        self.committed, self.failed = [], []

    def on_committed(self, refused, jobs):
        self.committed.append((refused, jobs))

    def on_failed(self, f, jobs):
        self.failed.append((f.value, jobs))


@pytest.fixture
def gc(tmp_path):
    store = SqliteStore(tmp_path / "dsage.sqlite", InlineRunner())
    store.open()
    owner = Owner()
    g = GroupCommit(store, Clock(), owner.on_committed, owner.on_failed)
    g.owner = owner
    transactions = []
    record = store.record

    def counting(running, finished, new=None):
        transactions.append((len(new or ()), len(running), len(finished)))
        return record(running, finished, new)
    store.record = counting
    g.transactions = transactions
    return g


def new(jid):
    return NewJob(jid, "alice", "x", "expr", 0, False, "", msgpack.packb({}), None, None, None, None, 1.0, None)


def finished(jid):
    return FinishedJob(jid, "completed", msgpack.packb(4), "4", None, None, 1.0, 2.0, "w", None, None, None)


def status(g, jid):
    rows = []
    g.store.get_job(jid).addCallback(rows.append)
    return rows[0]["status"] if rows[0] else None


def test_one_transaction_per_turn(gc):
    """What several events of one turn leave pending goes in one transaction at the turn's end."""
    gc.new_rows += [new(1), new(2)]
    gc.schedule_flush()
    gc.running_rows.append(RunningJob(1, 1, "w", 1.5))
    gc.schedule_flush()
    assert gc.transactions == []
    gc.clock.advance(0)
    assert gc.transactions == [(2, 1, 0)] and status(gc, 1) == "running" and status(gc, 2) == "queued"


@pytest.mark.normal_latency
def test_a_held_commit_waits_for_its_delay_or_a_flush(gc):
    """flush_soon holds the commit up to COMMIT_DELAY; a flush before that takes it along and
    answers its waiter."""
    gc.new_rows.append(new(1))
    acks = []
    gc.flush_soon(COMMIT_DELAY).addCallback(acks.append)
    gc.clock.advance(COMMIT_DELAY * 0.5)
    assert acks == [] and gc.transactions == []
    gc.finished_rows.append((finished(1), "job 1"))
    gc.flush()
    assert acks == [None] and gc.transactions == [(1, 0, 1)] and status(gc, 1) == "completed"
    assert gc.owner.committed == [([], ["job 1"])]
    gc.clock.advance(COMMIT_DELAY)   # the cancelled deadline does nothing
    assert gc.transactions == [(1, 0, 1)]


@pytest.mark.normal_latency
def test_the_held_commit_fires_at_its_deadline(gc):
    """Nothing else comes: the held commit is made after COMMIT_DELAY."""
    gc.new_rows.append(new(1))
    acks = []
    gc.flush_soon(COMMIT_DELAY).addCallback(acks.append)
    gc.schedule_flush()   # a turn's flush defers to the held commit
    gc.clock.advance(0)
    assert acks == []
    gc.clock.advance(COMMIT_DELAY)
    assert acks == [None] and status(gc, 1) == "queued"


def test_settle_commits_a_held_commit_before_a_read(gc):
    """A reader settles first: the store then answers with what the held commit wrote."""
    gc.new_rows.append(new(3))
    gc.flush_soon(COMMIT_DELAY)
    gc.settle()
    assert status(gc, 3) == "queued"
    gc.settle()   # nothing held: nothing to do
    assert gc.transactions == [(1, 0, 0)]


def test_a_failed_commit_goes_to_its_waiter_and_the_owner(gc):
    """If the transaction fails, the submitter's Deferred errs and the owner hears of the ends."""
    def broken(running, finished, new=None):
        raise OSError("disk full")
    gc.store.record = lambda *a: gc.store.runner.run(broken, *a)
    gc.new_rows.append(new(1))
    gc.finished_rows.append((finished(9), "job 9"))
    errors = []
    gc.flush(want_result=True).addErrback(lambda f: errors.append(f.value))
    assert [str(e) for e in errors] == ["disk full"]
    assert [(str(e), jobs) for e, jobs in gc.owner.failed] == [("disk full", ["job 9"])]


def test_pending_writes_waits_for_every_write(gc):
    """pending_writes flushes and fires once the writes issued so far finished."""
    gc.new_rows.append(new(1))
    done = []
    gc.pending_writes().addCallback(done.append)
    assert done and status(gc, 1) == "queued"


class SlowStore:
    """A store whose record() answers only when the test says so (a commit in flight)."""

    def __init__(self):
        self.calls = []   # (running, finished, new, deferred)

    def record(self, running, finished, new=None):
        from twisted.internet.defer import Deferred
        d = Deferred()
        self.calls.append((list(running), list(finished), list(new or ()), d))
        return d


@pytest.fixture
def slow():
    owner = Owner()
    g = GroupCommit(SlowStore(), Clock(), owner.on_committed, owner.on_failed)
    g.owner = owner
    return g


def test_one_commit_in_flight(slow):
    """Flushes while a commit runs wait for it and then go as one transaction; what waited is
    acknowledged only once that transaction committed."""
    slow.new_rows.append(new(1))
    first = slow.flush(want_result=True)
    slow.finished_rows.append((finished(1), "job1"))
    slow.flush()
    slow.new_rows.append(new(2))
    second = slow.flush(want_result=True)
    slow.finished_rows.append((finished(2), "job2"))
    slow.flush()
    assert len(slow.store.calls) == 1
    assert second is not None and not second.called
    slow.store.calls[0][3].callback([])
    assert first.called and not second.called
    assert len(slow.store.calls) == 2   # everything that waited, in one transaction
    _, ends, news, d = slow.store.calls[1]
    assert [r.id for r in news] == [2] and [r.id for r, in zip(ends)] == [1, 2]
    assert slow.owner.committed == []
    d.callback([])
    assert second.called
    assert slow.owner.committed == [([], ["job1", "job2"])]
    slow.flush()
    assert len(slow.store.calls) == 2   # nothing pending, nothing written


def test_settle_issues_a_waiting_flush(slow):
    """A reader's settle() does not wait for the commit in flight: what waits is issued now (the
    store runs calls in order, so the read issued next sees it); pending_writes() too."""
    slow.new_rows.append(new(1))
    slow.flush()
    slow.new_rows.append(new(2))
    slow.flush()
    assert len(slow.store.calls) == 1
    slow.settle()
    assert [r.id for r in slow.store.calls[1][2]] == [2]
    slow.settle()   # nothing waits: no empty transaction
    assert len(slow.store.calls) == 2
    slow.new_rows.append(new(3))
    slow.flush()
    done = slow.pending_writes()
    assert [r.id for r in slow.store.calls[2][2]] == [3]
    for call in slow.store.calls:
        call[3].callback([])
    assert done.called
    assert len(slow.store.calls) == 3


def test_failed_commit_in_flight_lets_the_next_go(slow):
    """A commit that failed still lets the flush that waited for it go (and fail on its own)."""
    slow.finished_rows.append((finished(1), "job1"))
    slow.flush()
    slow.finished_rows.append((finished(2), "job2"))
    slow.flush()
    slow.store.calls[0][3].errback(RuntimeError("disk"))
    assert len(slow.store.calls) == 2
    slow.store.calls[1][3].callback([])
    assert [jobs for _, jobs in slow.owner.failed] == [["job1"]]
    assert slow.owner.committed == [([], ["job2"])]
