"""Jobs as arguments on the server (server/deps.py): waiting jobs, their edges, input values to the
worker, failure propagation, ownership, kills and restarts. A transport-free JobServer on a real
SQLite file (inline runner), Twisted's Clock and fake worker links."""
import msgpack
import pytest
from twisted.internet.task import Clock

from dsage_core import codec
from dsage_core.protocol.errors import BadRequest
from dsage_core.server.core import JobServer
from dsage_core.store import InlineRunner, SqliteStore
from tests.core.fakes import Link


def _server(path):
    core = JobServer(SqliteStore(path, InlineRunner()), Clock(), server_id="srv")
    core.restore()
    return core


@pytest.fixture
def core(tmp_path):
    return _server(tmp_path / "d.sqlite")


def submit(core, *inputs, owner="alice"):
    """One job naming *inputs*; returns its id (raises what the server refused with)."""
    rec = ["x", "expr", 0, False, [], msgpack.packb({"k": "expr"}), None, None, None, None]
    if inputs:
        rec.append({"inputs": list(inputs)})
    ids, errors = [], []
    core.submit(owner, [rec]).addCallbacks(ids.extend, errors.append)
    core.clock.advance(1)
    if errors:
        errors[0].raiseException()
    return ids[0]


def join(core, slots=4):
    link = Link()
    core.worker_joined(link, {"slots": slots}, "alice", False)
    core.clock.advance(0)
    return link


def sent(link):
    """Run entries the worker got, by job id (the last one of each)."""
    return {e[0]: e for batch in link.runs for e in batch["jobs"]}


def done(core, link, job_id, value=None, status="completed"):
    """The worker reports *job_id* ended (its value encoded as a child would)."""
    e = sent(link)[job_id]
    result = codec.encode_value(value) if status == "completed" else None
    w = next(iter(core.workers))
    core.report(w, [["done", job_id, e[1], status, result, repr(value), None if result else "boom", 1.0, 2.0, 0.1]])
    core.clock.advance(1)


def status(core, job_id):
    rows = []
    core.get_job("alice", False, job_id, False).addCallback(rows.append)
    return rows[0]["status"], rows[0].get("waiting_reason") or rows[0].get("error")


def values(link, job_id):
    extra = sent(link)[job_id][6]
    return {i: codec.decode_value(b) for i, b in extra["input_values"]}


def test_a_chain_waits_then_runs_with_the_values(core):
    """b waits for a and c for b (status waiting, with the reason); each goes to the worker with its
    input's result bytes once that input completed."""
    link = join(core)
    a = submit(core)
    b = submit(core, a)
    c = submit(core, b)
    assert status(core, b) == ("waiting", f"waiting for job {a}")
    assert b not in sent(link) and c not in sent(link)
    done(core, link, a, 41)
    assert values(link, b) == {a: 41} and status(core, c)[0] == "waiting"
    done(core, link, b, 42)
    assert values(link, c) == {b: 42}
    done(core, link, c, 43)
    assert status(core, c)[0] == "completed"
    assert not (core.deps.waiting or core.deps.dependents or core.deps.values)


def test_a_diamond_waits_for_both_inputs(core):
    """d needs b and c (both need a): it runs only after both, with both values."""
    link = join(core)
    a = submit(core)
    b, c = submit(core, a), submit(core, a)
    d = submit(core, b, c)
    done(core, link, a, 1)
    done(core, link, b, 2)
    assert status(core, d) == ("waiting", f"waiting for job {c}")
    done(core, link, c, 3)
    assert values(link, d) == {b: 2, c: 3}


def test_an_input_that_already_completed_is_read_from_the_store(core, tmp_path):
    """A job naming a finished job (no longer in memory) runs at once with its stored value."""
    link = join(core)
    a = submit(core)
    done(core, link, a, [1, 2])
    assert a not in core.jobs
    b = submit(core, a)
    assert values(link, b) == {a: [1, 2]}


def test_a_failure_propagates_down_a_chain(core):
    """a fails: b fails with "input job a failed" and a's last error line, c with "input job b
    failed" and b's; nothing runs."""
    link = join(core)
    a = submit(core)
    b = submit(core, a)
    c = submit(core, b)
    done(core, link, a, status="failed")
    assert status(core, b) == ("failed", f"input job {a} failed: boom")
    assert status(core, c) == ("failed", f"input job {b} failed: input job {a} failed: boom")
    assert set(sent(link)) == {a}
    d = submit(core, a)   # naming a failed job later fails at once too
    assert status(core, d) == ("failed", f"input job {a} failed: boom")


def test_killing_a_waiting_job_fails_its_dependents(core):
    """A waiting job can be killed; a job waiting for it then fails, saying how it ended."""
    a = submit(core)
    b = submit(core, a)
    c = submit(core, b)
    assert core.kill("alice", False, [b]) == [True]
    core.clock.advance(1)
    assert status(core, b)[0] == "killed"
    assert status(core, c) == ("failed", f"input job {b} failed (it ended killed): killed by its owner")
    assert core.deps.dependents == {} and core.deps.waiting == {}


def test_another_users_job_is_an_unknown_job(core):
    """Bob naming alice's job (in memory or stored) is refused exactly as a job that does not exist."""
    link = join(core)
    a = submit(core)
    with pytest.raises(BadRequest, match=f"^unknown job {a}$"):
        submit(core, a, owner="bob")
    done(core, link, a, 1)
    with pytest.raises(BadRequest, match=f"^unknown job {a}$"):
        submit(core, a, owner="bob")
    with pytest.raises(BadRequest, match="^unknown job 999$"):
        submit(core, 999, owner="bob")
    with pytest.raises(BadRequest, match="inputs must be job ids"):
        submit(core, "1", owner="bob")
    assert core.queued_by_owner.get("bob", 0) == 0


def test_a_restart_rebuilds_waiting_jobs(tmp_path):
    """After a restart b waits for x again (its edge came back from the store) and runs with x's
    value; c and d, whose input completed before the restart (c was running, d queued), go to the
    new worker with that value at once."""
    core = _server(tmp_path / "d.sqlite")
    link = join(core, slots=2)
    a = submit(core)
    done(core, link, a, "first")
    x = submit(core)          # running
    b = submit(core, x)
    c = submit(core, a)       # running, with a's value
    d = submit(core, a)       # queued: both slots are taken
    assert values(link, c) == {a: "first"}
    assert status(core, b)[0] == "waiting" and status(core, d)[0] == "queued"
    again = _server(tmp_path / "d.sqlite")
    assert status(again, b) == ("waiting", f"waiting for job {x}")
    link2 = join(again, slots=3)
    assert values(link2, c) == {a: "first"} and values(link2, d) == {a: "first"}
    done(again, link2, x, "second")
    assert values(link2, b) == {x: "second"}


def test_worker_resources_are_checked(core):
    """A worker's gpus must be a small non-negative integer; its memory and gpus reach the scheduler."""
    for bad in ("lots", -1, 2.5, True):
        with pytest.raises(BadRequest, match="gpus must be an integer"):
            core.worker_joined(Link(), {"slots": 1, "gpus": bad}, "alice", False)
    w = core.worker_joined(Link(), {"slots": 2, "gpus": 1, "memory": 1 << 33}, "alice", False)
    state = core.scheduler.workers[w.id]
    assert (state.slots, state.gpus, state.memory) == (2, 1, 1 << 33)
    assert core.describe_workers()[0]["gpus"] == 1


def test_large_input_results_in_files_are_read_off_the_reactor(core, tmp_path):
    """An input whose result the store keeps as a file reaches the dependent's worker as bytes."""
    link = join(core)
    a = submit(core)
    big = "y" * 600_000
    done(core, link, a, big)
    assert core.store.path.parent.joinpath("results").exists()
    b = submit(core, a)
    assert values(link, b) == {a: big}
