"""A worker's inventory as the server checks it, and the worker as the server lists it."""
import pytest

from dsage_core.model.records import WorkerInfo
from dsage_core.protocol.errors import BadRequest
from dsage_core.server.workers import Worker, capabilities_of, clean_worker_info


def test_clean_worker_info_keeps_known_fields_checked():
    """A good inventory comes back as a WorkerInfo; unknown fields are dropped, text is cleaned."""
    i = clean_worker_info({"host": "box\x1b[31m", "pid": 42, "slots": 4, "capabilities": ["sage"],
                           "cpus": 8, "memory": 1 << 30, "gpus": 1, "evil": "x" * 10_000})
    assert isinstance(i, WorkerInfo)
    assert i.host.startswith("box") and "\x1b" not in i.host and (i.pid, i.slots, i.cpus, i.gpus) == (42, 4, 8, 1)
    assert capabilities_of(i) == frozenset({"sage"})


def test_clean_worker_info_defaults():
    """An empty inventory means one slot, no capabilities, unknown host, CPUs and memory."""
    i = clean_worker_info({})
    assert (i.host, i.slots, i.cpus, i.memory, i.local_token, list(i.capabilities)) == ("", 1, None, None, None, [])


@pytest.mark.parametrize("info, message", [
    ([], "must be a map"), ({"slots": 5000}, "slots must be an integer"),
    ({"slots": True}, "slots must be an integer"), ({"host": "h" * 300}, "host must be text"),
    ({"capabilities": "sage"}, "capabilities must be a list"), ({"sage": "yes"}, "sage must be true"),
    ({"local_token": 5}, "local_token must be short text"), ({"memory": -1}, "memory must be"),
])
def test_clean_worker_info_refuses_hostile_fields(info, message):
    """Wrong types, out-of-range numbers and oversize text are refused with a clear message."""
    with pytest.raises(BadRequest, match=message):
        clean_worker_info(info)


def test_describe_lists_the_worker_from_its_inventory():
    """describe() names host, slots and the sage capability from the checked inventory."""
    i = clean_worker_info({"host": "box", "pid": 7, "slots": 2, "capabilities": ["sage"], "os": "Linux"})
    d = Worker("box-7-1", None, "alice", False, i, 2, 1.0, 1.0).describe()
    assert (d["host"], d["slots"], d["sage"], d["os"], d["pid"], d["user"]) == ("box", 2, True, "Linux", 7, "alice")
    assert Worker("w", None, "u", True, WorkerInfo(), 1, 0.0, 0.0).describe()["host"] == "?"
