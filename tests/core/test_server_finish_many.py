"""The dones of one worker report ended in one pass (JobServer._finish_many): the fast path of a
plain completed result ends jobs exactly as the per-job path does, and every other done (failed,
too large, malformed, killed) still takes the per-job path."""
import msgpack
import pytest
from twisted.internet.task import Clock

from tests.core.fakes import Link
from dsage_core.limits import Limits
from dsage_core.server.core import COMMIT_DELAY, JobServer
from dsage_core.store import InlineRunner, SqliteStore

N = 6


def make(tmp_path, name, per_job):
    core = JobServer(SqliteStore(tmp_path / f"{name}.sqlite", InlineRunner()), Clock(), server_id="srv",
                     limits=Limits(max_result=100))
    core.restore()
    if per_job:   # the reference: every done through _finish_from_worker, one by one
        core._finish_many = lambda w, items: [core._finish_from_worker(w, j, d) for j, d in items]
    link = Link()
    w = core.worker_joined(link, {"slots": N}, "alice", False)
    ids = []
    job = ["x", "expr", 0, False, [], msgpack.packb({"k": "expr"}), None, None, None, None]
    core.submit("alice", [job] * N).addCallback(ids.extend)
    core.clock.advance(COMMIT_DELAY)
    attempts = {e[0]: e[1] for r in link.runs for e in r["jobs"]}
    return core, w, ids, attempts


def report(core, w, ids, attempts):
    a, b, c, d, e, f = ids
    core.report(w.id, [
        ["done", a, attempts[a], "completed", b"ok", "'ok'", None, 1.0, 2.0, 1.0],
        ["done", b, attempts[b], "completed", b"x" * 500, None, None, 1.0, 2.0, 1.0],   # too large
        ["done", c, attempts[c], "failed", None, None, "boom", 1.0, 2.0, 1.0],
        ["done", d, attempts[d], "completed", "not bytes", None, None, 1.0, 2.0, 1.0],
        ["done", e, attempts[e], "completed", None, None, 7, None, None, 1.0],   # odd fields, no times
        ["done", f, attempts[f], "completed", b"ok2", 3, "warn", 1.5, 0, 1.0],    # finished 0: now
    ])
    core.clock.advance(1)


def rows(core, ids):
    out = []
    for jid in ids:
        core.store.get_job(jid).addCallback(out.append)
    return out


def test_one_pass_ends_jobs_as_the_per_job_path_does(tmp_path):
    fast, wf, ids_f, att_f = make(tmp_path, "fast", per_job=False)
    slow, ws, ids_s, att_s = make(tmp_path, "slow", per_job=True)
    per_job = []
    real = fast._finish_from_worker
    fast._finish_from_worker = lambda w, job, d: (per_job.append(job.id), real(w, job, d))
    report(fast, wf, ids_f, att_f)
    assert per_job == ids_f[1:4]   # the too large, failed and malformed ones; the others in one pass
    report(slow, ws, ids_s, att_s)
    rf, rs = rows(fast, ids_f), rows(slow, ids_s)
    assert [r["status"] for r in rf] == ["completed", "failed", "failed", "failed", "completed", "completed"]
    assert rf == rs
    assert fast.counts == slow.counts and fast.queued_by_owner == slow.queued_by_owner == {"alice": 0}
    assert wf.jobs_done == ws.jobs_done == N and not fast.jobs and not slow.jobs
