"""The one record schema: each record packs as the array peers always sent and reads back from it."""
import msgpack
import pytest

from dsage_core.model import records as r
from dsage_core.model.status import ALL_STATES, HELD, TERMINAL, JobStatus


def _round(rec):
    return msgpack.unpackb(msgpack.packb(rec.to_wire()), raw=False)


def test_run_entry_leaves_an_empty_ext_off_the_wire_and_reads_both_forms():
    """A run entry without ext options is the six-field array; with them, seven."""
    e = r.RunEntry(7, 1, b"p", None, None, None)
    assert _round(e) == [7, 1, b"p", None, None, None]
    assert r.RunEntry.from_wire(_round(e)) == e
    x = e._replace(ext={"inputs": [1]})
    assert r.RunEntry.from_wire(_round(x)).ext == {"inputs": [1]}


def test_from_wire_refuses_wrong_shapes_with_the_record_named():
    """Too few or too many fields, or no list at all, is a WireError that names the record."""
    with pytest.raises(r.WireError, match="RunEntry: expected 6 to 7 fields, got 5"):
        r.RunEntry.from_wire([1, 2, 3, 4, 5])
    with pytest.raises(r.WireError, match="JobUpdate"):
        r.JobUpdate.from_wire(list(range(18)))
    with pytest.raises(r.WireError, match="expected a list"):
        r.ChildDone.from_wire({"a": 1})
    assert isinstance(r.WireError("x"), ValueError)


def test_done_event_fields_and_extras():
    """A done event reads its result file, exception and duration by name."""
    d = r.DoneEvent.of(3, 2, JobStatus.FAILED, None, None, "tb", 10.0, 10.5, 0.1, {"exc": {"type": "ValueError"}})
    w = _round(d)
    assert w[0] == "done" and w[3] == "failed" and len(w) == 11
    back = r.event_from_wire(w)
    assert isinstance(back, r.DoneEvent) and back.exc == {"type": "ValueError"} and back.result_file is None
    assert back.duration == 0.5
    assert r.DoneEvent.of(3, 2, "completed", b"x", "1", None, 5.0, float("nan"), 0.0).duration == 0.0
    assert len(_round(back._replace(extra=None))) == 10


def test_event_from_wire_knows_every_kind_and_refuses_others():
    """Each report kind maps to its record; an unknown kind or a short event is refused."""
    assert isinstance(r.event_from_wire(["out", 1, 1, "hi"]), r.OutEvent)
    assert r.event_from_wire(["progress", 1, 1, 0.5]).message == ""
    assert r.event_from_wire(["back", 1, 1, True]).failed is True
    assert r.event_from_wire(["start", 1, 1, 0.25]).age == 0.25
    with pytest.raises(r.WireError, match="unknown report event"):
        r.event_from_wire(["boom", 1, 1])
    with pytest.raises(r.WireError):
        r.event_from_wire(["done", 1, 1])
    with pytest.raises(r.WireError):
        r.event_from_wire([])


def test_job_update_trims_optional_fields():
    """A job update carries extra and exc only when it has them (15, 16 or 17 fields)."""
    u = r.JobUpdate(1, "completed", "w", 1.0, 2.0, b"P", "4", None, None, "", 1, "j", 0.5, 0, "expr")
    assert len(_round(u)) == 15
    assert len(_round(u._replace(extra={"replicas": "2/2"}))) == 16
    full = _round(u._replace(exc={"type": "E"}))
    assert len(full) == 17 and full[15] is None
    assert r.JobUpdate.from_wire(full).exc == {"type": "E"}


def test_child_records_and_kill_items():
    """Child run/done entries and kill items keep their short wire forms."""
    assert len(_round(r.ChildRun(1, b"p", None, None, None))) == 5
    assert len(_round(r.ChildRun(1, b"p", None, None, None, "/x"))) == 6
    assert len(_round(r.ChildRun(1, b"p", None, None, None, ext={"a": 1}))) == 7
    done = r.ChildDone(1, "completed", b"x", None, "1", 0.0, 0.001, None, 12.5)
    assert len(_round(done)) == 9 and r.ChildDone.from_wire(_round(done)).end_time == 12.5
    assert _round(r.KillItem(4, 2)) == [4, 2] and r.KillItem.from_wire([4, 2, 1]).cancel == 1


def test_worker_info_is_a_map_and_drops_unknown_fields():
    """WorkerInfo travels as a map; unknown keys are dropped, missing ones take defaults."""
    w = r.WorkerInfo.from_wire({"host": "h", "slots": 4, "evil": 1})
    assert w.host == "h" and w.slots == 4 and w.gpus == 0
    assert "evil" not in w.to_wire() and w.to_wire()["capabilities"] == []
    with pytest.raises(r.WireError):
        r.WorkerInfo.from_wire([1])


def test_status_enum_members_are_their_strings():
    """JobStatus members compare, hash and pack as the stored strings; the sets hold plain strings."""
    assert JobStatus.QUEUED == "queued" and "completed" in TERMINAL and JobStatus.RUNNING in HELD
    assert msgpack.unpackb(msgpack.packb(JobStatus.LOST)) == "lost"
    assert ALL_STATES[0] == "waiting" and set(ALL_STATES) == {s.value for s in JobStatus}
    assert all(type(s) is str for s in TERMINAL | HELD)
