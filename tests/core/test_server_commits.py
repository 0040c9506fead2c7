"""When the server commits: a submit that went straight to a worker shares its transaction with the
first report after it (a group commit), and nothing overtakes a held commit.

A transport-free JobServer on a real SQLite file (inline runner) and Twisted's Clock."""
import msgpack
import pytest
from twisted.internet.task import Clock

from tests.core.fakes import Link
from dsage_core.server.core import COMMIT_DELAY, JobServer
from dsage_core.store import InlineRunner, SqliteStore


class Watcher:
    """A client session as the server sees it; records what reaches the client, in order."""

    def __init__(self, log):
        self.log = log

    def push_jobs(self, jobs, hold):
        self.log.extend(("push", j.id, j.status) for j in jobs)


@pytest.fixture
def server(tmp_path):
    store = SqliteStore(tmp_path / "dsage.sqlite", InlineRunner())
    core = JobServer(store, Clock(), server_id="srv")
    core.restore()
    core.commits = []
    record = store.record

    def counting(running, finished, new=None):
        core.commits.append((len(new or ()), len(running), len(finished)))
        return record(running, finished, new)
    store.record = counting
    return core


def submit(core, log, n=1):
    raw = [["x", "expr", 0, False, [], msgpack.packb({"k": "expr"}), None, None, None, None]] * n
    d = core.submit("alice", raw, Watcher(log))
    d.addCallback(lambda ids: log.append(("ids", *ids)))
    return d


def done(jid, attempt):
    return ["done", jid, attempt, "completed", msgpack.packb(4), "4", None, 1.0, 1.001, 0.001]


def status(core, jid):
    rows = []
    core.store.get_job(jid).addCallback(rows.append)
    return rows[0]["status"]


@pytest.mark.normal_latency
def test_a_submit_that_ran_at_once_commits_with_its_result(server):
    w = server.worker_joined(Link(), {"slots": 1}, "alice", False)
    log = []
    submit(server, log)
    server.clock.advance(0)
    assert server.commits == [] and log == [("push", 1, "assigned")]   # dispatched, not yet acknowledged
    attempt = w.link.runs[0]["jobs"][0][1]
    server.report(w.id, [done(1, attempt)])
    server.clock.advance(0)
    assert server.commits == [(1, 1, 1)]            # INSERT, dispatch and result: one transaction
    assert log[1:] == [("ids", 1), ("push", 1, "completed")]   # ids first: the client knows its job
    assert status(server, 1) == "completed"
    server.clock.advance(COMMIT_DELAY)
    assert server.commits == [(1, 1, 1)]            # the cancelled deadline wrote nothing more


@pytest.mark.normal_latency
def test_a_held_commit_is_made_after_commit_delay_without_a_report(server):
    server.worker_joined(Link(), {"slots": 1}, "alice", False)
    log = []
    submit(server, log)
    server.clock.advance(COMMIT_DELAY * 0.9)
    assert server.commits == [] and ("ids", 1) not in log
    server.clock.advance(COMMIT_DELAY * 0.1)
    assert server.commits == [(1, 1, 0)] and log[-1] == ("ids", 1)
    assert status(server, 1) == "running"


def test_a_submit_that_leaves_jobs_queued_commits_at_once(server):
    server.worker_joined(Link(), {"slots": 1}, "alice", False)
    log = []
    submit(server, log, n=3)                       # one slot: two of them wait
    assert server.commits == [(3, 1, 0)] and log[-1] == ("ids", 1, 2, 3)


def test_a_requeue_never_overtakes_a_held_commit(server):
    """The worker goes away before its job's INSERT committed: the job is queued in the database too,
    not left 'running' by an UPDATE that ran before the row existed."""
    w = server.worker_joined(Link(), {"slots": 1}, "alice", False)
    log = []
    submit(server, log)
    server.clock.advance(0)
    server.worker_left(w.id, "connection lost")
    server.clock.advance(COMMIT_DELAY)
    assert ("ids", 1) in log
    assert server.jobs[1].status == "queued" and status(server, 1) == "queued"


def test_a_failed_held_commit_refuses_the_submit_and_withdraws_its_jobs(server):
    from dsage_core.protocol.errors import ServerUnavailable
    from dsage_core.store import StoreUnavailable
    w = server.worker_joined(Link(), {"slots": 1}, "alice", False)

    def full(*a, **k):
        raise StoreUnavailable("disk full")
    server.store.fault_hook = full
    log, errors = [], []
    submit(server, log).addErrback(lambda f: errors.append(f.value))
    server.clock.advance(COMMIT_DELAY)
    assert len(errors) == 1 and isinstance(errors[0], ServerUnavailable)
    assert server.jobs[1].kill_requested and w.link.runs   # it had gone out: it is withdrawn


def test_reads_see_what_a_held_commit_will_write(server):
    """While a submit's commit is held, a kill of another (queued) job waits with it; a read of that
    job issued next must not overtake it and answer the old 'queued' row."""
    server.worker_joined(Link(), {"slots": 1}, "alice", False)
    log = []
    gpu = [["x", "expr", 0, False, ["gpu"], msgpack.packb({"k": "expr"}), None, None, None, None]]
    server.submit("alice", gpu, Watcher(log))     # job 1: no worker has a GPU, it stays queued
    server.clock.advance(0)
    submit(server, log)                           # job 2 goes to the worker: its commit is held
    server.kill("alice", False, [1])
    server.clock.advance(0)
    rows = []
    server.get_job("alice", False, 1, False).addCallback(rows.append)
    assert rows[0]["status"] == "killed"
    listed = []
    server.list_jobs("alice", False, {}).addCallback(listed.extend)
    assert [r["id"] for r in listed] == [1, 2]
