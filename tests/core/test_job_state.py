"""The client's JobTracker: waiters wake on every terminal state; no Event is made unless needed."""
import threading

from dsage_core.client.job import JobTracker
from dsage_core.model.records import JobUpdate


def update(jid, status, result=None):
    """The update a server pushes for job *jid*."""
    return JobUpdate(jid, status, "w1", 1.0, 2.0 if status == "completed" else None, result, None, None,
                     None, "", 0, "", 0.0, 0, "expr")


def test_no_event_or_callback_list_until_someone_waits():
    s = JobTracker(1)
    s.apply(update(1, "running"))
    s.apply(update(1, "completed", b"x"))
    assert s._event is None and s._callbacks is None
    assert s.done and s.event.is_set()          # made late, already set


def test_a_waiter_before_the_result_is_woken():
    s = JobTracker(2)
    ev = s.event
    woke = []
    t = threading.Thread(target=lambda: woke.append(ev.wait(10)))
    t.start()
    s.apply(update(2, "failed"))
    t.join(10)
    assert woke == [True]


def test_callbacks_run_once_at_the_end_or_at_once_if_finished():
    s = JobTracker(3)
    seen = []
    s.add_callback(lambda st: seen.append(("early", st.status)))
    s.apply(update(3, "running"))
    assert seen == []
    s.apply(update(3, "killed"))
    s.add_callback(lambda st: seen.append(("late", st.status)))
    s.apply(update(3, "completed"))              # stale: a job finishes once
    assert seen == [("early", "killed"), ("late", "killed")]


def test_result_is_visible_once_the_status_is_terminal():
    s = JobTracker(4)
    s.apply(update(4, "completed", b"P\x04"))
    assert s.status == "completed" and s.result_bytes == b"P\x04"


def test_state_table_keeps_unfinished_jobs_and_finished_ones_only_while_used():
    import gc
    from dsage_core.client.states import StateTable
    t = StateTable()
    running, kept, dropped = JobTracker(1), JobTracker(2), JobTracker(3)
    for s in (running, kept, dropped):
        t[s.id] = s
    for s in (kept, dropped):
        assert s.apply(update(s.id, "completed", b"x"))
        t.finished(s)
    del dropped, s
    gc.collect()
    del running                      # unfinished: the table itself keeps it
    assert 1 in t and t[1].status == "queued" and t.unfinished() == [1]
    assert t[2] is kept and 3 not in t and t.get(3) is None
    assert sorted(t) == [1, 2] and len(t) == 2


def test_state_table_does_not_grow_with_finished_jobs_nobody_holds():
    """Entries of finished states that were dropped are swept as jobs finish: the table stays
    bounded while many jobs finish and are dropped, and held ones stay reachable."""
    from dsage_core.client import states as st
    t = st.StateTable()
    held = []
    for i in range(1, 10 * st.SWEEP_MIN + 1):
        s = t.setdefault(i, JobTracker(i))
        s.apply(update(i, "completed", b"x"))
        t.finished(s)
        if i % 1000 == 0:
            held.append(s)
        del s
    assert len(t._done) < 2 * st.SWEEP_MIN + len(held)
    assert all(t[h.id] is h for h in held) and len(t) == len(held)


def test_subscribers_get_a_big_push_in_slices_one_turn_apart(tmp_path):
    """A push of many updates reaches subscribers (the desktop app) in slices, so a shared GUI
    loop is never blocked by one push; every update arrives, in order."""
    from twisted.internet.task import Clock
    from dsage_core.client.core import EMIT_SLICE, AsyncClient
    clock = Clock()
    c = AsyncClient(clock, tmp_path, "pb://x@tcp:127.0.0.1:1/login", None)
    seen = []
    c.subscribe(lambda kind, infos: kind == "jobs" and seen.append([i.id for i in infos]))
    n = 2 * EMIT_SLICE + 10
    c._on_updates([list(update(i, "completed").to_wire()) for i in range(n)])   # arrays, as unpacked
    assert seen == [list(range(EMIT_SLICE))]
    clock.advance(0)
    assert [len(s) for s in seen] == [EMIT_SLICE, EMIT_SLICE, 10]
    assert [i for s in seen for i in s] == list(range(n))


def test_a_push_of_15_16_or_17_fields_reads_as_one_job_update_record(tmp_path):
    """The client reads a pushed array as a JobUpdate whatever optional fields the server left off
    (extra, exc), and refuses an array of another length instead of misreading its fields."""
    import pytest
    from twisted.internet.task import Clock
    from dsage_core.client.core import AsyncClient
    c = AsyncClient(Clock(), tmp_path, "pb://x@tcp:127.0.0.1:1/login", None)
    base = list(update(1, "running").to_wire())
    exc = {"type": "ZeroDivisionError", "args": ["division by zero"]}
    assert len(base) == 15
    one, two, three = (c.states.setdefault(i, JobTracker(i)) for i in (1, 2, 3))   # held, as Job handles hold them
    c._on_updates([base, list(update(2, "running").to_wire()) + [{"replicas": "1/2"}],
                   list(update(3, "failed").to_wire()) + [None, exc]])
    assert (one.status, one.kind, one.extra, one.exc) == ("running", "expr", None, None)
    assert two.extra == {"replicas": "1/2"} and two.exc is None
    assert three.done and three.status == "failed" and three.exc == exc and three.extra is None
    with pytest.raises(TypeError):
        c._on_updates([base[:14]])
    with pytest.raises(TypeError):
        c._on_updates([base + [None, None, None]])
    assert c.states[1].status == "running"   # the refused arrays changed nothing
