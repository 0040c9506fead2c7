"""What the server says about jobs a worker holds: ``assigned`` (prefetched), ``running`` (a child
started it: the worker's "start" mark or its done), ``paused`` (on a paused worker); queued jobs are
pushed to sessions that follow the owner from submit on; the counters tell them apart.

A transport-free JobServer on a real SQLite file (inline runner) and Twisted's Clock."""
import msgpack
import pytest
from twisted.internet.task import Clock

from dsage_core.protocol.errors import BadRequest
from dsage_core.server.core import COMMIT_DELAY, JobServer
from dsage_core.store import InlineRunner, SqliteStore
from tests.core.fakes import Link


class Watcher:
    """A session following all of alice's jobs; records (id, status, started) of each push."""

    def __init__(self):
        self.log = []

    def push_jobs(self, jobs, hold):
        self.log.extend((j.id, j.status, j.started) for j in jobs)

    def last(self, jid):
        return [e for e in self.log if e[0] == jid][-1]


@pytest.fixture
def server(tmp_path):
    core = JobServer(SqliteStore(tmp_path / "dsage.sqlite", InlineRunner()), Clock(), server_id="srv")
    core.restore()
    core.clock.advance(1000)
    return core


def submit(core, n=1):
    raw = [["x", "expr", 0, False, [], msgpack.packb({"k": "expr"}), None, None, None, None]] * n
    ids = []
    core.submit("alice", raw).addCallback(ids.extend)
    core.clock.advance(COMMIT_DELAY)
    return ids


def done(jid, attempt):
    return ["done", jid, attempt, "completed", msgpack.packb(4), "4", None, 1000.0, 1000.001, 0.001]


def held(server, link):
    return [(jid, attempt) for run in link.runs for jid, attempt, *_ in run["jobs"]]


def test_queued_jobs_are_pushed_to_owner_watchers_at_submit(server):
    """With no worker, a session following the owner sees the new jobs as queued at once."""
    w = Watcher()
    server.watch_owner("alice", w, True)
    ids = submit(server, 3)
    assert [(i, s) for i, s, _ in w.log] == [(i, "queued") for i in ids]


def test_dispatched_job_is_assigned_until_its_start_mark(server):
    """A job handed to a worker is 'assigned' with no start time; the start mark makes it
    'running', dated from the age the worker sent (not the worker's clock); then it completes."""
    w = Watcher()
    server.watch_owner("alice", w, True)
    wk = server.worker_joined(Link(), {"slots": 1}, "alice", False)
    (jid,) = submit(server)
    assert server.jobs[jid].status == "assigned" and server.jobs[jid].started is None
    assert w.last(jid)[1] == "assigned"
    ((_, attempt),) = held(server, wk.link)
    server.clock.advance(5)
    server.report(wk.id, [["start", jid, attempt, 2.0]])
    assert w.last(jid) == (jid, "running", server.clock.seconds() - 2.0)
    assert server.stats()["running"] == 1 and server.stats()["assigned"] == 0
    server.report(wk.id, [done(jid, attempt)])
    server.clock.advance(0)
    assert w.last(jid)[1] == "completed"


def test_prefetched_jobs_stay_assigned_while_one_runs(server):
    """A worker that holds more jobs than slots runs one: the counters say 1 running and the rest
    assigned, never 'N running' for one slot."""
    wk = server.worker_joined(Link(), {"slots": 1}, "alice", False)
    (first,) = submit(server)
    a1 = held(server, wk.link)[0][1]
    server.report(wk.id, [done(first, a1)])  # a duration: the worker now gets a prefetch buffer
    server.clock.advance(0)
    ids = submit(server, 5)
    got = [(j, a) for j, a in held(server, wk.link) if j in ids]
    assert len(got) == 5
    server.report(wk.id, [["start", got[0][0], got[0][1], 0.0]])
    s = server.stats()
    assert (s["running"], s["assigned"], s["paused"], s["busy_slots"]) == (1, 4, 0, 1)
    assert [server.jobs[j].status for j, _ in got] == ["running"] + ["assigned"] * 4


def test_pause_shows_paused_and_resume_restores_running_and_assigned(server):
    """A paused worker's jobs are 'paused' (pushed to watchers); on resume the started one is
    'running' again and the others 'assigned'. A start mark during the pause keeps it paused."""
    w = Watcher()
    server.watch_owner("alice", w, True)
    wk = server.worker_joined(Link(), {"slots": 2}, "alice", False)
    ids = submit(server, 2)
    (j1, a1), (j2, a2) = held(server, wk.link)
    server.report(wk.id, [["start", j1, a1, 0.1]])
    server.heartbeat(wk.id, {"paused": True})
    assert w.last(j1)[1] == w.last(j2)[1] == "paused"
    assert server.stats()["paused"] == 2 and server.stats()["running"] == 0
    server.report(wk.id, [["start", j2, a2, 0.0]])
    assert server.jobs[j2].status == "paused" and server.jobs[j2].started is not None
    server.heartbeat(wk.id, {"paused": False})
    assert w.last(j1)[1] == "running" and w.last(j2)[1] == "running"
    assert sorted(ids) == sorted([j1, j2])


def test_resume_puts_unstarted_jobs_back_to_assigned(server):
    """A job that never started before the pause is 'assigned' after it, not 'running'."""
    wk = server.worker_joined(Link(), {"slots": 1}, "alice", False)
    (jid,) = submit(server)
    server.heartbeat(wk.id, {"paused": True})
    assert server.jobs[jid].status == "paused"
    server.heartbeat(wk.id, {"paused": False})
    assert server.jobs[jid].status == "assigned"


def test_dispatch_to_a_paused_worker_is_paused(server):
    """Jobs a worker got just before its pause was known are shown paused once it is."""
    wk = server.worker_joined(Link(), {"slots": 1}, "alice", False)
    server.heartbeat(wk.id, {"paused": True})
    (jid,) = submit(server)
    assert server.jobs[jid].status == "queued"  # a paused worker gets nothing new
    server.heartbeat(wk.id, {"paused": False})
    assert server.jobs[jid].status == "assigned"


def test_start_marks_of_others_and_stale_attempts_are_ignored(server):
    """A start mark from a worker that does not hold the job, or for an older attempt, changes
    nothing; a malformed one is refused."""
    wk = server.worker_joined(Link(), {"slots": 1}, "alice", False)
    other = server.worker_joined(Link(), {"slots": 0}, "mallory", False)
    (jid,) = submit(server)
    ((_, attempt),) = held(server, wk.link)
    server.report(other.id, [["start", jid, attempt, 0.0]])
    server.report(wk.id, [["start", jid, attempt - 1, 0.0]])
    assert server.jobs[jid].status == "assigned"
    for bad in (["start", jid, attempt], ["start", jid, attempt, "soon"], ["start", jid, attempt, True]):
        with pytest.raises(BadRequest):
            server.report(wk.id, [bad])
    assert server.jobs[jid].status == "assigned"


def test_a_requeued_job_is_queued_again_without_a_start(server):
    """A worker that leaves gives its jobs back: queued, no start time; a late mark is ignored."""
    wk = server.worker_joined(Link(), {"slots": 1}, "alice", False)
    (jid,) = submit(server)
    ((_, attempt),) = held(server, wk.link)
    server.report(wk.id, [["start", jid, attempt, 0.0]])
    server.worker_left(wk.id, "connection lost")
    assert server.jobs[jid].status == "queued" and server.jobs[jid].started is None
    server.report(wk.id, [["start", jid, attempt, 0.0]])
    assert server.jobs[jid].status == "queued"


def test_list_jobs_filters_by_held_state(server):
    """Listing by 'assigned' or 'running' answers from the in-memory truth (the store has one
    'running' for every held job)."""
    wk = server.worker_joined(Link(), {"slots": 2}, "alice", False)
    submit(server, 2)
    (j1, a1), (j2, _) = held(server, wk.link)
    server.report(wk.id, [["start", j1, a1, 0.0]])
    out = {}
    for st in ("assigned", "running", "paused"):
        server.list_jobs("alice", False, {"status": st}).addCallback(lambda rows, st=st: out.setdefault(st, rows))
    assert [r["id"] for r in out["running"]] == [j1]
    assert [r["id"] for r in out["assigned"]] == [j2]
    assert out["paused"] == []
