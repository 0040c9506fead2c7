"""The worker monitor's report events: their sizes (the report batch's byte limit) and how a
child's done frame becomes report events."""
import pytest
from twisted.internet.defer import Deferred

from dsage_core.model.records import DoneEvent, OutEvent
from dsage_core.protocol.batcher import Batcher
from dsage_core.worker.service import _event_size


def test_a_done_event_counts_its_result_bytes():
    """A done's result, preview and traceback count in its size, whether or not it has extra."""
    big = DoneEvent.of(1, 1, "completed", b"r" * 600_000, "prev", None, 1.0, 2.0, 0.1)
    assert _event_size(big) >= 600_000 + 4
    assert _event_size(tuple(big.to_wire())) >= 600_000      # extra left off the wire
    failed = DoneEvent.of(2, 1, "failed", None, None, "t" * 1000, 1.0, 2.0, 0.1)
    assert _event_size(failed) >= 1000
    small = DoneEvent.of(3, 1, "completed", b"x", None, None, 1.0, 2.0, 0.1)
    assert _event_size(small) < 200
    assert _event_size(OutEvent("out", 1, 1, "o" * 500)) >= 500


def test_large_results_split_the_report_batches_at_the_byte_limit():
    """The worker's reports go at most 1 MiB a batch (one event may exceed it alone): large
    results no longer pile up in one report the server must refuse."""
    calls = []

    def send(items):
        calls.append(list(items))
        return Deferred()
    b = Batcher(send, max_items=5000, max_in_flight=10, size_of=_event_size, max_bytes=1024 * 1024)
    b.add_many([DoneEvent.of(i, 1, "completed", b"r" * 400_000, None, None, 1.0, 2.0, 0.1)
                for i in range(5)])
    assert [len(c) for c in calls] == [2, 2, 1]


class _Reactor:
    """A Clock with the few reactor calls a ChildPool makes outside spawning children."""

    def __init__(self):
        from twisted.internet.task import Clock
        self.clock = Clock()
        self.clock.advance(1000.0)

    def __getattr__(self, name):
        return getattr(self.clock, name)

    def callFromThread(self, f, *a):
        pass

    def addReader(self, r):
        pass

    def removeReader(self, r):
        pass


def _pool_with_child(tmp_path, monkeypatch):
    from dsage_core.worker import children as ch
    from dsage_core.worker.children import ChildEvents, ChildProcess
    from dsage_core.worker.pool import ChildPool

    class Pipe:
        pass

    class Transport:
        pipes = {0: Pipe()}
    monkeypatch.setattr(ch, "write_now", lambda pipe, data: None)
    reactor = _Reactor()
    reports = []
    pool = ChildPool(reactor, 0, lambda events, hold=0.0: reports.append((list(events), hold)),
                     scratch=tmp_path / "scratch")
    ev = ChildEvents(done=pool._on_done, output=pool._on_output, progress=pool._on_progress,
                     ended=pool._on_ended, ready=lambda c: None, drained=lambda c: None,
                     started=pool._on_started, dones=pool._on_dones)
    c = ChildProcess(1, reactor, {}, ev, None, pool.planner)
    c.transport, c.ready, c.alive = Transport(), True, True
    c.avg_wall, c.avg_key = 0.00003, "f"   # short jobs: many in flight
    pool.children.append(c)
    pool.target = 1
    return reactor, pool, c, reports


def test_a_frame_of_dones_is_one_report_and_only_the_next_current_job_gets_clocks(tmp_path, monkeypatch):
    """Four jobs, three of whose dones arrive in one frame: one report of three events, in order;
    the jobs that started and ended within the frame never got a timeout timer or a start mark,
    the job current after the frame did; each job's start is the end of the one before it."""
    from dsage_core.worker.framing import pack_frame
    reactor, pool, c, reports = _pool_with_child(tmp_path, monkeypatch)
    pool.add_jobs([[i, 1, b"p", "f", 30.0, None] for i in range(1, 5)], {"f": b"blob"})
    assert [a.job_id for a in c.inflight] == [1, 2, 3, 4]
    first_timer = c.inflight[0].timer
    assert first_timer is not None and first_timer.active()
    reactor.advance(1.0)
    now = reactor.seconds()
    frame = ["done", [[1, "completed", b"r1", None, "1", 0.001, 0.5, None, now - 0.3],
                      [2, "completed", b"r2", None, "2", 0.001, 0.1, None, now - 0.2],
                      [3, "completed", b"r3", None, "3", 0.001, 0.0, None, now - 0.1]]]
    del reports[:]   # job 1's start mark (its clock ran past START_MARK_DELAY)
    calls = []
    real = reactor.clock.callLater
    reactor.clock.callLater = lambda *a, **kw: calls.append(a[1]) or real(*a, **kw)
    c._fd3_data(pack_frame(frame))
    assert len(calls) == 2   # job 4's timeout and the start-mark timer: none for jobs 2 and 3
    assert len(reports) == 1
    events, hold = reports[0]
    assert [(e.job_id, e.status, e.result) for e in events] == [(1, "completed", b"r1"), (2, "completed", b"r2"),
                                                                (3, "completed", b"r3")]
    assert hold == 0.0
    assert events[1].finished == pytest.approx(now - 0.2) and events[1].started == pytest.approx(now - 0.3)
    assert events[2].started == pytest.approx(now - 0.2)     # wall 0: from when job 2 ended
    assert not first_timer.active()
    (head,) = c.inflight
    assert head.job_id == 4 and head.timer is not None and head.timer.active()
    assert list(pool._unmarked) == [4] and pool.jobs_done == 3
    live = [d for d in reactor.getDelayedCalls() if d.active()]
    assert len(live) == 2   # job 4's timeout and the one start-mark timer


def test_a_frame_keeps_its_order_around_a_done_that_needs_more(tmp_path, monkeypatch):
    """A failure with an exception and a killed job in a frame go their own way, after the plain
    dones before them and before those after them; a malformed entry ends the frame, the dones
    before it are reported."""
    from dsage_core.model.records import WireError
    from dsage_core.worker.framing import pack_frame
    reactor, pool, c, reports = _pool_with_child(tmp_path, monkeypatch)
    pool.add_jobs([[i, 1, b"p", "f", None, None] for i in range(1, 7)], {"f": b"blob"})
    c.inflight[3].kill_reason = "killed"
    frame = ["done", [[1, "completed", b"r1", None, None, 0.0, 0.01],
                      [2, "failed", None, "Traceback", None, 0.0, 0.01, None, None, {"type": "E"}],
                      [3, "completed", b"r3", None, None, 0.0, 0.01],
                      [4, "completed", b"r4", None, None, 0.0, 0.01],
                      [5, "completed", b"r5", None, None, 0.0, 0.01],
                      "bad"]]
    with pytest.raises(WireError):
        c._fd3_data(pack_frame(frame))
    got = [[(e.job_id, e.status) for e in events] for events, _ in reports]
    assert got == [[(1, "completed")], [(2, "failed")], [(3, "completed")], [(4, "killed")], [(5, "completed")]]
    assert reports[1][0][0].extra == {"exc": {"type": "E"}}
    assert pool.jobs_done == 5 and [a.job_id for a in c.inflight] == [6]


def test_dones_without_a_frame_handler_go_one_by_one(tmp_path, monkeypatch):
    """A pool that gives no ``dones`` callback hears of each done through ``done``."""
    from dsage_core.worker.framing import pack_frame
    reactor, pool, c, reports = _pool_with_child(tmp_path, monkeypatch)
    c.events.dones = None
    pool.add_jobs([[i, 1, b"p", "f", None, None] for i in range(1, 4)], {"f": b"blob"})
    c._fd3_data(pack_frame(["done", [[1, "completed", b"r1", None, None, 0.0, 0.01],
                                     [2, "completed", b"r2", None, None, 0.0, 0.01]]]))
    assert [[e.job_id for e in events] for events, _ in reports] == [[1], [2]]


def test_jobs_from_the_server_are_read_the_same_on_the_fast_and_the_general_path(tmp_path, monkeypatch):
    """Well-formed run entries become jobs at once (no RunEntry between); default limits or a
    malformed entry take the general path (limits merged; WireError as before)."""
    from dsage_core.model.records import WireError
    reactor, pool, c, reports = _pool_with_child(tmp_path, monkeypatch)
    c.ready = False   # keep them queued
    pool.add_jobs([[1, 2, b"p", "f", 5.0, {"cpu": 1.0}], [3, 1, b"q", None, None, None, {"replicas": 2}]], {})
    a, b = pool.queue
    assert (a.job_id, a.attempt, a.payload, a.blob_id, a.timeout, a.limits, a.extra) == \
        (1, 2, b"p", "f", 5.0, {"cpu": 1.0}, None)
    assert (b.job_id, b.limits, b.extra) == (3, None, {"replicas": 2})
    pool.queue.clear()
    pool.default_limits = {"mem": 100}
    pool.add_jobs([[1, 2, b"p", "f", 5.0, {"cpu": 1.0}]], {})
    assert pool.queue[0].limits == {"mem": 100, "cpu": 1.0}
    with pytest.raises(WireError):
        pool.add_jobs([[1, 2, b"p"]], {})
