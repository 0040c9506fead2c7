"""Replicated jobs in the transport-free JobServer (real SQLite file, inline runner, Clock): one
result per job, the agreement recorded, answers kept across a restart, hostile copies refused."""
import msgpack
from twisted.internet.task import Clock

from dsage_core import codec
from tests.core.fakes import Link
from dsage_core.server.core import COMMIT_DELAY, JobServer
from dsage_core.store import InlineRunner, SqliteStore


def server(path, anonymous_replicas=1):
    core = JobServer(SqliteStore(path, InlineRunner()), Clock(), server_id="srv")
    core.anonymous_replicas = anonymous_replicas
    core.restore()
    return core


def join(core, user="alice", anonymous=False):
    link = Link()
    return core.worker_joined(link, {"slots": 1}, "anonymous" if anonymous else user, anonymous), link


def submit(core, ext=None, trusted_only=False):
    ids = []
    rec = ["x", "expr", 0, trusted_only, [], msgpack.packb({"k": "expr"}), None, None, None, None]
    core.submit("alice", [rec + [ext]] if ext else [rec]).addCallback(ids.extend)
    core.clock.advance(COMMIT_DELAY)
    return ids[0]


def attempt_of(link, jid):
    return [e[1] for b in link.runs for e in b["jobs"] if e[0] == jid][-1]


def done(jid, attempt, value):
    return ["done", jid, attempt, "completed", codec.encode_value(value), repr(value), None, 1.0, 2.0, 0.1]


def stored(core, jid):
    rows = []
    core.store.get_job(jid).addCallback(rows.append)
    return rows[0]


def record(core, jid):
    out = []
    core.get_job("alice", False, jid, True).addCallback(out.append)
    return out[0]


def test_two_agreeing_copies_give_one_result_and_the_agreement(tmp_path):
    """replicas=2 on two workers: both answer 42, the job completes once with "2/2 agree" stored."""
    core = server(tmp_path / "d.sqlite")
    (w1, l1), (w2, l2) = join(core, "alice"), join(core, "bob")
    jid = submit(core, {"replicas": 2})
    assert attempt_of(l1, jid) != attempt_of(l2, jid)
    core.report(w1.id, [done(jid, attempt_of(l1, jid), 42)])
    assert record(core, jid)["extra"] == {"replicas": "1/2 answered"}
    core.report(w2.id, [done(jid, attempt_of(l2, jid), 42)])
    core.clock.advance(1)
    row = stored(core, jid)
    assert row["status"] == "completed" and codec.decode_value(row["result"]) == 42
    assert record(core, jid)["extra"] == {"replicas": "2/2 agree"}
    assert core.counts["completed"] == 1


def test_a_second_report_of_the_same_copy_counts_once(tmp_path):
    """A worker resending its answer (or answering twice) cannot make a quorum by itself."""
    core = server(tmp_path / "d.sqlite")
    (w1, l1), _ = join(core, "alice"), join(core, "bob")
    jid = submit(core, {"replicas": 2})
    a1 = attempt_of(l1, jid)
    core.report(w1.id, [done(jid, a1, 42)])
    core.report(w1.id, [done(jid, a1, 42)])
    core.clock.advance(1)
    assert core.jobs[jid].status in ("assigned", "running")
    assert len(core.jobs[jid].replicas.answers) == 1


def test_disagreement_without_keyed_worker_fails_showing_both_answers(tmp_path):
    """Two anonymous copies disagree and no keyed worker is connected: failed, both previews shown."""
    core = server(tmp_path / "d.sqlite", anonymous_replicas=2)
    (w1, l1), (w2, l2) = join(core, anonymous=True), join(core, anonymous=True)
    jid = submit(core)   # no option: the server's --anonymous-replicas applies
    core.report(w1.id, [done(jid, attempt_of(l1, jid), "lie")])
    core.report(w2.id, [done(jid, attempt_of(l2, jid), 42)])
    core.clock.advance(1)
    row = stored(core, jid)
    assert row["status"] == "failed" and "replicas disagree" in row["error"]
    assert "'lie'" in row["error"] and "42" in row["error"]
    assert record(core, jid)["extra"]["replicas"].startswith("1/2 agree: disagreement")


def test_trusted_only_jobs_run_once_despite_anonymous_replicas(tmp_path):
    """--anonymous-replicas is for jobs that may meet anonymous workers: trusted-only ones run once."""
    core = server(tmp_path / "d.sqlite", anonymous_replicas=3)
    jid = submit(core, trusted_only=True)
    assert core.jobs[jid].replicas is None and core.jobs[jid].ext is None


def test_a_restart_mid_quorum_keeps_the_answer_and_places_one_copy(tmp_path):
    """One of two answers is in when the server restarts: after it, one more copy runs, not two."""
    path = tmp_path / "d.sqlite"
    core = server(path)
    (w1, l1), _ = join(core, "alice"), join(core, "bob")
    jid = submit(core, {"replicas": 2})
    core.report(w1.id, [done(jid, attempt_of(l1, jid), 42)])
    core.clock.advance(1)
    again = server(path)
    assert len(again.jobs[jid].replicas.answers) == 1
    w3, l3 = join(again, "carol")
    w4, l4 = join(again, "dave")
    sent = [b for link in (l3, l4) for b in link.runs for e in b["jobs"] if e[0] == jid]
    assert len(sent) == 1
    holder, link = (w3, l3) if l3.runs else (w4, l4)
    again.report(holder.id, [done(jid, attempt_of(link, jid), 42)])
    again.clock.advance(1)
    assert stored(again, jid)["status"] == "completed"
    assert record(again, jid)["extra"] == {"replicas": "2/2 agree"}


def test_an_anonymous_copy_cannot_answer_with_a_pickle_or_a_file(tmp_path):
    """A copy's answer gets the one-copy checks: a pickle from an anonymous worker or a result file
    is a failed answer (which then disagrees), never a result."""
    core = server(tmp_path / "d.sqlite")
    (w1, l1), (w2, l2) = join(core, anonymous=True), join(core, anonymous=True)
    jid = submit(core, {"replicas": 2})
    pickle_done = ["done", jid, attempt_of(l1, jid), "completed", b"C" + b"x" * 10, "x", None, 1.0, 2.0, 0.1]
    file_done = done(jid, attempt_of(l2, jid), 1) + [{"file": "results/000000/1-1.bin", "size": 5}]
    core.report(w1.id, [pickle_done])
    core.report(w2.id, [file_done])
    core.clock.advance(1)
    row = stored(core, jid)
    assert row["status"] == "failed" and row["result"] is None


def test_a_worker_without_a_copy_cannot_answer_or_write_output(tmp_path):
    """An anonymous worker that holds no copy names a copy's id and attempt: its done and out are
    ignored; the holders' answers decide."""
    core = server(tmp_path / "d.sqlite")
    (w1, l1), (w2, l2) = join(core, "alice"), join(core, "bob")
    jid = submit(core, {"replicas": 2})
    intruder, _ = join(core, anonymous=True)
    a1 = attempt_of(l1, jid)
    core.report(intruder.id, [["out", jid, a1, "INJECTED"], done(jid, a1, "lie")])
    assert core.jobs[jid].replicas.answers == [] and "INJECTED" not in core.jobs[jid].output_text()
    core.report(w1.id, [["out", jid, a1, "genuine\n"], done(jid, a1, 42)])
    core.report(w2.id, [["out", jid, attempt_of(l2, jid), "second copy\n"], done(jid, attempt_of(l2, jid), 42)])
    core.clock.advance(1)
    row = stored(core, jid)
    assert row["status"] == "completed" and codec.decode_value(row["result"]) == 42


class KillLink(Link):
    """A worker link that records the kills it was asked for."""

    def __init__(self):
        super().__init__()
        self.kills = []

    def kill(self, items):
        self.kills += items
        return super().kill(items)


def test_a_kill_reaches_every_copy_and_ends_the_job_once(tmp_path):
    """Killing a replicated job asks each worker holding a copy to kill it; the job ends killed
    once, and the copies' late reports change nothing."""
    core = server(tmp_path / "d.sqlite")
    links = [KillLink(), KillLink()]
    ws = [core.worker_joined(link, {"slots": 1}, u, False) for link, u in zip(links, ("alice", "bob"))]
    jid = submit(core, {"replicas": 2})
    assert core.kill("alice", False, [jid]) == [True]
    assert [k[0] for link in links for k in link.kills] == [jid, jid]
    for w, link in zip(ws, links):
        a = attempt_of(link, jid)
        core.report(w.id, [["done", jid, a, "killed", None, None, "killed", 1.0, 2.0, 0.1]])
    core.clock.advance(1)
    assert stored(core, jid)["status"] == "killed" and core.counts["killed"] == 1


def test_a_lost_copy_is_placed_again_on_another_worker(tmp_path):
    """A worker holding a copy disconnects: the copy goes to the next worker that joins."""
    core = server(tmp_path / "d.sqlite")
    (w1, l1), (w2, _) = join(core, "alice"), join(core, "bob")
    jid = submit(core, {"replicas": 2})
    core.worker_left(w2.id, "gone")
    w3, l3 = join(core, "carol")
    assert [e[0] for b in l3.runs for e in b["jobs"]] == [jid]
    core.report(w1.id, [done(jid, attempt_of(l1, jid), 42)])
    core.report(w3.id, [done(jid, attempt_of(l3, jid), 42)])
    core.clock.advance(1)
    assert stored(core, jid)["status"] == "completed"


def test_bad_replicas_values_are_refused_on_both_ends(tmp_path):
    """replicas must be an int from 1 to 9: the client refuses before sending, the server again."""
    import pytest
    from dsage_core.client.payload import Options, SubmitError
    from dsage_core.protocol.errors import BadRequest
    for bad in (0, 10, "2", True, 2.0, None):
        with pytest.raises(SubmitError, match="replicas must be an integer from 1 to 9"):
            Options.from_dict({"replicas": bad})
    core = server(tmp_path / "d.sqlite")
    rec = ["x", "expr", 0, False, [], msgpack.packb({"k": "expr"}), None, None, None, None]
    for bad in (0, 10, "2", True, -1, 2**40):
        errors = []
        core.submit("alice", [rec + [{"replicas": bad}]]).addErrback(errors.append)
        assert errors and errors[0].check(BadRequest) and "replicas must be" in str(errors[0].value)
