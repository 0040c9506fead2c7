"""The eager batcher: one call in flight, piles go next, nothing lost on failure."""
from twisted.internet.defer import Deferred, succeed

from dsage_core.protocol.batcher import Batcher


class FakeSend:
    def __init__(self):
        self.calls = []

    def __call__(self, items):
        d = Deferred()
        self.calls.append((list(items), d))
        return d


def test_idle_sends_at_once_and_busy_accumulates():
    """An idle batcher sends the first item alone; items added meanwhile go as one batch."""
    send = FakeSend()
    b = Batcher(send)
    b.add(1)
    assert [c[0] for c in send.calls] == [[1]]
    b.add(2)
    b.add(3)
    assert len(send.calls) == 1 and b.pending == 2
    send.calls[0][1].callback(None)
    assert [c[0] for c in send.calls] == [[1], [2, 3]]


def test_max_items_splits_batches():
    """A pile larger than max_items goes in several calls, in order."""
    send = FakeSend()
    b = Batcher(send, max_items=3, max_in_flight=5)
    b.add_many(list(range(7)))
    assert [c[0] for c in send.calls] == [[0, 1, 2], [3, 4, 5], [6]]


def test_failure_handler_can_requeue_until_reattached():
    """A failed batch handed back with requeue_front waits for attach() and is sent first."""
    send = FakeSend()
    b = Batcher(send, on_failure=lambda items, f: (b.requeue_front(items), b.attach(None)))
    b.add_many([1, 2])
    b.add(3)
    send.calls[0][1].errback(RuntimeError("connection lost"))
    assert b.pending == 3 and b.in_flight == 0
    send2 = FakeSend()
    b.attach(send2)
    assert send2.calls[0][0] == [1, 2, 3]


def test_when_idle_fires_after_everything_sent():
    """when_idle waits for queued and in-flight items."""
    send = FakeSend()
    b = Batcher(send)
    b.add(1)
    b.add(2)
    fired = []
    b.when_idle().addCallback(fired.append)
    send.calls[0][1].callback(None)
    assert not fired
    send.calls[1][1].callback(None)
    assert fired == [None]


def test_size_limit_caps_bytes_per_batch():
    """With size_of, one batch never exceeds max_bytes (but always carries at least one item)."""
    send = FakeSend()
    b = Batcher(send, max_in_flight=10, size_of=len, max_bytes=10)
    b.add_many([b"x" * 6, b"y" * 6, b"z" * 20, b"w"])
    assert [len(c[0]) for c in send.calls] == [1, 1, 1, 1]
