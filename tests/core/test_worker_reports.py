"""The worker monitor's report events: their sizes (the report batch's byte limit) and how a
child's done frame becomes report events."""
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
