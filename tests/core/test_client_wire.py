"""The client applying pushed job updates straight from the server's arrays
(``JobTracker.apply_wire``, ``AsyncClient._on_updates``) and its done-callbacks (a lone one kept
without a list). No network: trackers and an unstarted AsyncClient on a Clock."""
from __future__ import annotations

import pytest
from twisted.internet.task import Clock

from dsage_core import codec
from dsage_core.client.core import AsyncClient
from dsage_core.client.job import JobTracker, LocalResult
from dsage_core.model.records import JobUpdate
from dsage_core.model.status import JobStatus

FURL = "pb://" + "n" * 32 + "@tcp:127.0.0.1:1/login"


def upd(jid, status, *, result=None, worker="w1", extra=None, exc=None, name="", kind=None,
        priority=0, created=0.0, message="", progress=None, attempts=1, error=None):
    return JobUpdate(jid, status, worker, 1.0, 2.0 if status in ("completed", "failed") else None,
                     result, None if result is None else "preview", error, progress, message,
                     attempts, name, created, priority, kind, extra, exc)


def old_path(s, w, home):
    """What ``_on_updates`` did before apply_wire: the array padded and made a JobUpdate, a
    ``{"file", "size"}`` result made a LocalResult, then ``JobTracker.apply``."""
    u = JobUpdate._make(w if len(w) == 17 else list(w) + [None, None][len(w) - 15:])
    if isinstance(u.result, dict):
        u = u._replace(result=LocalResult(home, u.result))
    return s.apply(u)


FIELDS = [f for f in JobTracker.__slots__ if f not in ("_event", "_callbacks", "_value", "__weakref__")]


def snapshot(s):
    out = {}
    for f in FIELDS:
        v = getattr(s, f)
        if isinstance(v, LocalResult):
            v = ("LocalResult", v.home, v.name, v.size, v.problem)
        out[f] = v
    return out


SEQUENCES = [
    [upd(1, "queued", name="job", kind="func", priority=3, created=5.0),
     upd(1, "running", progress=0.5, message="half"),
     upd(1, "completed", result=codec.encode_value(7))],
    [upd(1, "running", extra={"replicas": "1/2 answered"}),
     upd(1, "failed", error="boom", exc={"type": "ValueError", "msg": "x"})],
    [upd(1, "running", exc="not a map"),            # a non-dict exc clears it, as before
     upd(1, "completed", result={"file": "r-1-abc", "size": 3})],
    [upd(1, "completed", result={"missing": "gone"}, name="", kind=None, priority=None)],
    [upd(1, "assigned", name="n1", kind="expr", created=3.0),
     upd(1, "running", name="", kind="", created=0.0, message=None)],   # empty fields keep the old values
    [upd(1, "killed"), upd(1, "running"), upd(1, "completed", result=b"late")],   # stale after terminal
]


@pytest.mark.parametrize("seq", SEQUENCES)
def test_apply_wire_sets_the_same_state_as_the_old_record_path(seq, tmp_path):
    """Every field (status, result, worker, progress, name, extra, exc...) ends as the old
    JobUpdate path left it, after each update, with the wire arrays of 15, 16 and 17 fields the
    server sends; and both report the same 'just became terminal'."""
    old, new = JobTracker(1, "sub", "func", 1.0), JobTracker(1, "sub", "func", 1.0)
    for u in seq:
        w = list(u.to_wire())
        assert len(w) in (15, 16, 17)
        assert old_path(old, w, tmp_path) == new.apply_wire(w, tmp_path)
        assert snapshot(new) == snapshot(old)


def test_apply_wire_fills_each_field_and_makes_a_local_result(tmp_path):
    s = JobTracker(4)
    assert not s.apply_wire(list(upd(4, "running", worker="wX", progress=0.25, message="m",
                                         attempts=2, name="nm", kind="func", priority=5,
                                         created=9.0).to_wire()), tmp_path)
    assert (s.status, s.worker, s.progress, s.progress_message, s.attempts, s.name, s.kind,
            s.priority, s.created, s.started) == ("running", "wX", 0.25, "m", 2, "nm", "func", 5, 9.0, 1.0)
    assert s.apply_wire(list(upd(4, "completed", result={"file": "r-4-x", "size": 1},
                                 extra={"replicas": "2/2 agree"}).to_wire()), tmp_path)
    assert isinstance(s.result_bytes, LocalResult) and s.result_bytes.home == tmp_path
    assert s.extra == {"replicas": "2/2 agree"} and s.done and s.finished == 2.0
    s2 = JobTracker(5)
    assert s2.apply_wire(list(upd(5, "completed", result=codec.encode_value([1, 2])).to_wire()), None)
    assert s2.value == [1, 2]


@pytest.mark.parametrize("n", [0, 14, 18])
def test_apply_wire_refuses_a_wrong_length_and_applies_nothing(n):
    s = JobTracker(1)
    w = (list(upd(1, "completed", result=b"x")) + [None, None])[:n]
    with pytest.raises(TypeError, match="15 to 17"):
        s.apply_wire(w, None)
    assert s.status == JobStatus.QUEUED and s.result_bytes is None and s.worker is None


def test_a_completed_push_before_queued_or_assigned_ones_stays_completed():
    """Pushes out of order: the terminal one first; the later non-terminal ones change nothing
    and callbacks run once."""
    s = JobTracker(1)
    calls = []
    s.add_callback(calls.append)
    assert s.apply_wire(list(upd(1, "completed", result=codec.encode_value(3), worker="wA").to_wire()), None)
    for st in ("queued", "assigned", "running", "failed"):
        assert not s.apply_wire(list(upd(1, st, worker="wB", error="e").to_wire()), None)
    assert s.status == JobStatus.COMPLETED and s.worker == "wA" and s.error is None and s.value == 3
    assert calls == [s]


# ----------------------------------------------------------------------- through AsyncClient._on_updates
@pytest.fixture
def aclient(tmp_path):
    return AsyncClient(Clock(), tmp_path, FURL, None)


def test_on_updates_applies_each_array_to_its_state(aclient):
    a, b = JobTracker(1), JobTracker(2)
    aclient.states[1], aclient.states[2] = a, b
    done = []
    a.add_callback(done.append)
    aclient._on_updates([list(upd(1, "running").to_wire()), list(upd(2, "queued", name="bee").to_wire()),
                         list(upd(1, "completed", result=codec.encode_value("v")).to_wire())])
    assert a.status == JobStatus.COMPLETED and a.value == "v" and done == [a]
    assert b.status == JobStatus.QUEUED and b.name == "bee"
    assert aclient.states.unfinished() == [2]   # a finished: kept only while referred to
    assert aclient.states.get(1) is a


def test_on_updates_for_an_unknown_id_leaves_the_known_states_alone(aclient):
    """A push naming a job this client has no state for (e.g. follow_all, or after its state was
    dropped) touches no other state; it is kept as a new state (as the record path did), a
    finished one only while referred to. A malformed array raises before the table keeps it."""
    known = JobTracker(1)
    aclient.states[1] = known
    aclient._on_updates([list(upd(99, "running", name="other").to_wire())])
    assert known.status == JobStatus.QUEUED and known.worker is None
    assert aclient.states[99].status == JobStatus.RUNNING and aclient.states[99].name == "other"
    aclient._on_updates([list(upd(98, "completed", result=b"x").to_wire())])
    assert 98 not in aclient.states._live      # finished: not kept alive by the table
    with pytest.raises(TypeError):
        aclient._on_updates([[97, "running"]])
    assert 97 not in aclient.states
    assert sorted(aclient.states.unfinished()) == [1, 99]


def test_on_updates_out_of_order_in_one_push_ends_terminal(aclient):
    s = JobTracker(5)
    aclient.states[5] = s
    aclient._on_updates([list(upd(5, "completed", result=codec.encode_value(1)).to_wire()),
                         list(upd(5, "queued").to_wire()), list(upd(5, "assigned").to_wire())])
    assert s.status == JobStatus.COMPLETED and s.value == 1
    assert aclient.states.unfinished() == []


def test_on_updates_emits_to_subscribers_only(aclient):
    got = []
    aclient.subscribe(lambda kind, payload: got.append((kind, [i.status for i in payload])))
    aclient._on_updates([list(upd(1, "running").to_wire()), list(upd(2, "completed").to_wire())])
    assert got == [("jobs", ["running", "completed"])]


# ----------------------------------------------------------------------- done-callbacks
def test_a_lone_callback_is_kept_without_a_list_and_runs_once():
    s = JobTracker(1)
    calls = []
    cb = lambda st: calls.append(("a", st))   # noqa: E731
    s.add_callback(cb)
    assert s._callbacks is cb
    s.apply_wire(list(upd(1, "running").to_wire()), None)
    assert calls == []
    s.apply_wire(list(upd(1, "failed", error="x").to_wire()), None)
    s.apply_wire(list(upd(1, "completed").to_wire()), None)
    assert calls == [("a", s)] and s._callbacks is None


def test_a_second_callback_turns_it_into_a_list_and_both_run_once_in_order():
    s = JobTracker(1)
    calls = []
    s.add_callback(lambda st: calls.append("first"))
    s.add_callback(lambda st: calls.append("second"))
    assert type(s._callbacks) is list and len(s._callbacks) == 2
    s.add_callback(lambda st: calls.append("third"))
    s.apply(upd(1, "killed"))
    s.apply(upd(1, "completed"))
    assert calls == ["first", "second", "third"] and s._callbacks is None


def test_the_same_function_twice_runs_twice():
    """Two registrations of one function are two callbacks (as a list of them was)."""
    s = JobTracker(1)
    calls = []
    s.add_callback(calls.append)
    s.add_callback(calls.append)
    s.apply_wire(list(upd(1, "completed").to_wire()), None)
    assert calls == [s, s]


def test_a_callback_added_after_completion_runs_at_once():
    s = JobTracker(1)
    first = []
    s.add_callback(first.append)
    s.apply_wire(list(upd(1, "timed_out").to_wire()), None)
    late = []
    s.add_callback(late.append)
    assert late == [s] and first == [s] and s._callbacks is None
    s.add_callback(late.append)
    assert late == [s, s]


def test_finishing_sets_the_event_and_runs_callbacks():
    s = JobTracker(1)
    ev = s.event
    seen = []
    s.add_callback(lambda st: seen.append(ev.is_set()))
    s.apply_wire(list(upd(1, "lost").to_wire()), None)
    assert ev.is_set() and seen == [True]
