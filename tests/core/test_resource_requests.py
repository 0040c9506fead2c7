"""Resource requests on the server: checked options, needs= joining the needs field, memory= as the
job's memory limit, and the request reaching the scheduler, also after a restart."""
import msgpack
import pytest
from twisted.internet.task import Clock

from dsage_core.client.payload import Options, SubmitError
from dsage_core.model.resources import Request, parse_bytes
from dsage_core.protocol.errors import BadRequest
from dsage_core.server.core import JobServer
from dsage_core.store import InlineRunner, SqliteStore
from tests.core.fakes import Link


def _server(path):
    core = JobServer(SqliteStore(path, InlineRunner()), Clock(), server_id="srv")
    core.restore()
    return core


def _submit(core, ext, limits=None):
    rec = ["x", "expr", 0, False, [], msgpack.packb({"k": "expr"}), None, None, limits, None, ext]
    ids, errors = [], []
    core.submit("alice", [rec]).addCallbacks(ids.extend, errors.append)
    core.clock.advance(1)
    if errors:
        errors[0].raiseException()
    return ids[0]


def test_sizes_and_bad_values_are_refused_on_both_ends(tmp_path):
    """Sizes read as powers of 1024; zero, negative, fractional or non-numeric requests are refused
    by the client before sending and by the server from a raw peer."""
    assert parse_bytes("8G") == 8 << 30 and parse_bytes("512M") == 512 << 20 and parse_bytes(7) == 7
    for bad in [{"cpus": 0}, {"cpus": 1.5}, {"memory": "lots"}, {"memory": -1}, {"gpus": -1},
                {"needs": [""]}, {"cpus": True}]:
        with pytest.raises(SubmitError):
            Options.from_dict(bad)
        with pytest.raises(BadRequest):
            _submit(_server(tmp_path / f"{len(str(bad))}.sqlite"), bad)


def test_requests_reach_the_scheduler_and_survive_a_restart(tmp_path):
    """needs= joins the needs, memory= becomes the memory limit (a smaller mem limit stays), and the
    scheduler sees the request, before and after a restart."""
    core = _server(tmp_path / "d.sqlite")
    a = _submit(core, {"cpus": 2, "memory": "1G", "needs": ["big-box"]})
    b = _submit(core, {"memory": 1 << 30}, limits={"mem": 1 << 20})
    job = core.jobs[a]
    assert job.needs == frozenset({"big-box"}) and job.limits == {"mem": 1 << 30}
    assert core.jobs[b].limits == {"mem": 1 << 20}
    assert core.scheduler.jobs[a].res == Request(2, 1 << 30, 0)
    again = _server(tmp_path / "d.sqlite")
    assert again.scheduler.jobs[a].res == Request(2, 1 << 30, 0)
    link = Link()
    again.worker_joined(link, {"slots": 4, "memory": 4 << 30}, "alice", False)
    again.clock.advance(0)
    assert again.scheduler.waiting_reason(a) == "no connected worker can run big-box jobs"
    sent = {e[0]: e for batch in link.runs for e in batch["jobs"]}
    assert b in sent and sent[b][5] == {"mem": 1 << 20}
