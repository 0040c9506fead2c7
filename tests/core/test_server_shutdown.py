"""A server that stops does not blame the jobs its workers were running: they come back queued,
with no failure counted, when it starts again (a job is "lost" only after workers died under it).

A transport-free JobServer on a real SQLite file (inline runner) and Twisted's Clock."""
import msgpack
import pytest
from twisted.internet.task import Clock

from tests.core.fakes import Link
from dsage_core.server.core import COMMIT_DELAY, JobServer
from dsage_core.store import InlineRunner, SqliteStore


def start(path):
    core = JobServer(SqliteStore(path, InlineRunner()), Clock(), server_id="srv")
    core.restore()
    return core


def row(core, jid):
    rows = []
    core.store.get_job(jid).addCallback(rows.append)
    return rows[0]


def run_one_job(core):
    w = core.worker_joined(Link(), {"slots": 1}, "alice", False)
    raw = [["x", "expr", 0, False, [], msgpack.packb({"k": "expr"}), None, None, None, None]]
    core.submit("alice", raw)
    core.clock.advance(COMMIT_DELAY)  # the held commit: the job is stored as running
    assert row(core, 1)["status"] == "running"
    return w


@pytest.mark.parametrize("closing, failures", [(True, 0), (False, 1)])
def test_jobs_of_workers_dropped_by_a_stopping_server_come_back_without_a_failure(tmp_path, closing, failures):
    path = tmp_path / "dsage.sqlite"
    core = start(path)
    w = run_one_job(core)
    core.closing = closing
    core.worker_left(w.id, "connection lost")
    core.clock.advance(0)
    assert core.workers == {}
    assert row(core, 1)["status"] == ("running" if closing else "queued")
    core.store.close()

    again = start(path)
    assert row(again, 1)["status"] == "queued" and row(again, 1)["failures"] == failures
    w = again.worker_joined(Link(), {"slots": 1}, "alice", False)
    assert [e[0] for e in w.link.runs[0]["jobs"]] == [1]   # and it runs on the next worker
