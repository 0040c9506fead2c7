"""Extra job options (dsage_core.model.ext): checked on both ends, stored, restored after a restart,
and handed to the worker only when declared for it."""
import msgpack
import pytest
from twisted.internet.task import Clock

from tests.core.fakes import Link
from dsage_core.client.payload import Options, SubmitError, UnknownOption, code_job
from dsage_core.model import ext
from dsage_core.model.records import Submission
from dsage_core.protocol.errors import BadRequest
from dsage_core.server.core import JobServer
from dsage_core.store import InlineRunner, SqliteStore


def _positive(v):
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ValueError(f"probe must be a positive int, not {v!r}")
    return v


@pytest.fixture
def options():
    """Two throw-away options: one the worker is given, one it is not."""
    added = [ext.register(ext.ExtOption("probe", _positive, to_worker=True)),
             ext.register(ext.ExtOption("secret", lambda v: str(v)[:10]))]
    yield added
    for o in added:
        del ext.REGISTRY[o.name]


def _server(path):
    core = JobServer(SqliteStore(path, InlineRunner()), Clock(), server_id="srv")
    core.restore()
    return core


def _raw(extra):
    rec = ["x", "expr", 0, False, [], msgpack.packb({"k": "expr"}), None, None, None, None]
    return rec + [extra] if extra is not ... else rec


def test_the_client_refuses_an_unknown_or_bad_extra_option(options):
    """A typo names the valid options; a bad value is refused before anything is sent."""
    with pytest.raises(UnknownOption, match="probe"):
        Options.from_dict({"prob": 2})
    with pytest.raises(SubmitError, match="probe must be a positive int"):
        Options.from_dict({"probe": 0})
    sub = code_job("1+1", "expr", Options.from_dict({"probe": 3}))
    assert Submission.from_wire(sub.wire()).ext == {"probe": 3}
    assert len(code_job("1+1", "expr", Options()).wire()) == 10   # no options: the ext field is left off


def test_the_server_refuses_what_a_peer_sends_unchecked(tmp_path, options):
    """The server runs the same checks: unknown keys, bad values, non-maps and oversize maps."""
    core = _server(tmp_path / "d.sqlite")
    for bad, msg in [({"nope": 1}, "unknown ext job option"), ({"probe": -1}, "positive int"),
                     ([1], "must be a map"), ({"probe": 1, **{f"k{i}": 1 for i in range(20)}}, "too many")]:
        errors = []
        core.submit("alice", [_raw(bad)]).addErrback(errors.append)
        assert errors and errors[0].check(BadRequest) and msg in str(errors[0].value), bad


def test_extra_options_survive_a_restart_and_reach_the_worker_only_if_declared(tmp_path, options):
    """Stored as JSON with the job: after a restart the worker gets ``probe`` but not ``secret``."""
    core = _server(tmp_path / "d.sqlite")
    ids = []
    core.submit("alice", [_raw({"probe": 5, "secret": "s3"}), _raw(...)]).addCallback(ids.extend)
    core.clock.advance(1)
    assert len(ids) == 2
    assert core.jobs[ids[0]].ext == {"probe": 5, "secret": "s3"}
    again = _server(tmp_path / "d.sqlite")
    assert again.jobs[ids[0]].ext == {"probe": 5, "secret": "s3"} and again.jobs[ids[1]].ext is None
    link = Link()
    again.worker_joined(link, {"slots": 2}, "alice", False)
    again.clock.advance(0)
    entries = {e[0]: e for batch in link.runs for e in batch["jobs"]}
    assert entries[ids[0]][6:] == [{"probe": 5}]
    assert len(entries[ids[1]]) == 6


def test_replicas_of_a_sized_job_are_refused_on_both_ends():
    """A sized job (cpus/memory/gpus) runs once: asking it for copies is a clear error."""
    with pytest.raises(SubmitError, match="replicas= cannot be combined with cpus="):
        Options.from_dict({"replicas": 2, "cpus": 2})
    with pytest.raises(ValueError, match="cannot be combined"):
        ext.check_ext({"replicas": 3, "memory": 2**30})
    assert ext.check_ext({"replicas": 1, "cpus": 2}) == {"replicas": 1, "cpus": 2}
