"""Result files from workers that share the server's home: what the server takes, keeps and removes.

A transport-free JobServer on a real SQLite file (inline runner) and Twisted's Clock."""
import msgpack
import pytest
from twisted.internet.task import Clock

from dsage_core import local_results as lr
from tests.core.fakes import Link
from dsage_core.server.core import COMMIT_DELAY, JobServer
from dsage_core.store import InlineRunner, SqliteStore

BIG = 300_000


@pytest.fixture
def server(tmp_path):
    core = JobServer(SqliteStore(tmp_path / "dsage.sqlite", InlineRunner()), Clock(), server_id="srv")
    core.home = tmp_path
    core.local_token = lr.write_token(tmp_path)
    core.restore()
    return core


def join(core, local=True, anonymous=False):
    link = Link()
    info = {"slots": 1}
    if local:
        info["local_token"] = lr.proof(core.local_token, "srv")
    return core.worker_joined(link, info, "alice", anonymous), link


def submit(core):
    ids = []
    core.submit("alice", [["x", "expr", 0, False, [], msgpack.packb({"k": "expr"}), None, None, None, None]]
                ).addCallback(ids.extend)
    core.clock.advance(COMMIT_DELAY)  # it went straight to the worker: its commit was held
    return ids[0]


def done(jid, attempt, rel, size=BIG):
    return ["done", jid, attempt, "completed", None, "b'xx...'", None, 1.0, 2.0, 0.1, {"file": rel, "size": size}]


def stored(core, jid):
    rows = []
    core.store.get_job(jid).addCallback(rows.append)
    return rows[0]


def test_only_a_proof_bound_to_this_server_makes_a_worker_local(server):
    assert join(server)[0].local
    assert not join(server, local=False)[0].local
    assert not join(server, anonymous=True)[0].local
    assert not server.is_local(lr.proof(server.local_token, "another-server"))
    assert not server.is_local(server.local_token)   # the token itself is not a proof


def test_file_result_is_stored_and_survives_a_resent_report(server):
    """The answer to a report is lost, the worker reconnects and resends: the stored file stays."""
    w, link = join(server)
    jid = submit(server)
    attempt = link.runs[0]["jobs"][0][1]
    rel = lr.write_result(server.home, jid, attempt, b"x" * BIG)
    server.report(w.id, [done(jid, attempt, rel)])
    server.clock.advance(0)
    assert stored(server, jid)["result"] == b"x" * BIG
    server.worker_left(w.id, "connection lost")
    w2, _ = join(server)
    server.report(w2.id, [done(jid, attempt, rel)])
    server.clock.advance(0)
    assert (server.home / rel).exists() and stored(server, jid)["result"] == b"x" * BIG


def test_file_from_a_worker_that_is_not_local_fails_the_job(server):
    w, link = join(server, local=False)
    jid = submit(server)
    attempt = link.runs[0]["jobs"][0][1]
    rel = lr.write_result(server.home, jid, attempt, b"x" * BIG)
    server.report(w.id, [done(jid, attempt, rel)])
    server.clock.advance(0)
    row = stored(server, jid)
    assert row["status"] == "failed" and "does not share the server's home" in row["error"]


def test_wrong_size_fails_the_job_and_removes_the_file(server):
    w, link = join(server)
    jid = submit(server)
    attempt = link.runs[0]["jobs"][0][1]
    rel = lr.write_result(server.home, jid, attempt, b"x" * BIG)
    server.report(w.id, [done(jid, attempt, rel, size=BIG + 1)])
    server.clock.advance(0)
    row = stored(server, jid)
    assert row["status"] == "failed" and "not the" in row["error"] and not (server.home / rel).exists()


def test_stale_attempt_file_of_a_job_running_elsewhere_is_removed(server):
    w, link = join(server)
    jid = submit(server)
    old = link.runs[0]["jobs"][0][1]
    server.worker_left(w.id, "connection lost")        # the job goes back to the queue...
    w2, link2 = join(server)                          # ...and runs again, as a new attempt
    new = link2.runs[0]["jobs"][0][1]
    assert new > old
    rel_old = lr.write_result(server.home, jid, old, b"y" * BIG)
    server.report(w2.id, [done(jid, old, rel_old)])   # a late result of the old attempt
    server.clock.advance(0)
    assert not (server.home / rel_old).exists()
    assert server.jobs[jid].status == "assigned"  # held by w2 (no start mark yet)


def test_stats_count_the_results_that_did_not_count(server):
    """``stats()["discarded"]`` counts late results: one of an old attempt while the job runs
    elsewhere, one resent after the job completed; the job itself completes once."""
    w, link = join(server, local=False)
    jid = submit(server)
    old = link.runs[0]["jobs"][0][1]
    server.worker_left(w.id, "connection lost")
    w2, link2 = join(server, local=False)
    new = link2.runs[0]["jobs"][0][1]
    plain = ["done", jid, old, "completed", msgpack.packb(1), "1", None, 1.0, 2.0, 0.1]
    assert server.stats()["discarded"] == 0
    server.report(w2.id, [plain])
    server.report(w2.id, [plain[:2] + [new] + plain[3:]])
    server.report(w2.id, [plain[:2] + [new] + plain[3:]])
    server.clock.advance(0)
    s = server.stats()
    assert s["discarded"] == 2 and s["completed"] == 1
    assert stored(server, jid)["status"] == "completed"
