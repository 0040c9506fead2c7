"""The eager batcher: one call in flight, piles go next, nothing lost on failure."""
import pytest
from twisted.internet.defer import Deferred

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


def test_held_items_wait_for_company_until_the_hold_ends():
    """Items added with a hold wait (at most that long) so later ones share their message."""
    from twisted.internet.task import Clock
    clock, send = Clock(), FakeSend()
    b = Batcher(send, clock=clock)
    b.add_many([1], hold=0.01)
    clock.advance(0.004)
    b.add_many([2], hold=0.01)          # the earlier deadline stays
    assert send.calls == []
    clock.advance(0.006)
    assert [c[0] for c in send.calls] == [[1, 2]]
    assert clock.getDelayedCalls() == []


def test_held_items_in_the_last_half_of_a_hold_end_it_without_a_timer():
    """Held items arriving late in a running hold go at once with the held ones: the hold's timer
    would only have woken the process a few milliseconds later."""
    from twisted.internet.task import Clock
    clock, send = Clock(), FakeSend()
    b = Batcher(send, clock=clock)
    b.add_many([1], hold=0.01)
    clock.advance(0.006)
    assert send.calls == []
    b.add_many([2], hold=0.01)          # 4 ms left of 10: under half
    assert [c[0] for c in send.calls] == [[1, 2]]
    assert clock.getDelayedCalls() == []


def test_urgent_item_takes_held_ones_along_at_once():
    """Anything added without a hold ends the hold: nothing urgent waits behind held items."""
    from twisted.internet.task import Clock
    clock, send = Clock(), FakeSend()
    b = Batcher(send, clock=clock)
    b.add_many([1], hold=0.5)
    b.add(2)
    assert [c[0] for c in send.calls] == [[1, 2]]
    assert clock.getDelayedCalls() == []


def test_hold_ignored_when_other_items_already_wait():
    """Items queued behind a call in flight go with the answer; a hold does not delay them."""
    from twisted.internet.task import Clock
    clock, send = Clock(), FakeSend()
    b = Batcher(send, clock=clock)
    b.add(1)
    b.add(2)
    b.add_many([3], hold=0.5)
    send.calls[0][1].callback(None)
    assert [c[0] for c in send.calls] == [[1], [2, 3]]


@pytest.mark.normal_latency
def test_report_hold_policy():
    """A result waits only if its job ran a while and its slot has work ahead: at most 10× its run
    time, 200 ms, or half the time that work takes (the server must hear in time to top it up)."""
    from dsage_core.worker.pool import report_hold
    assert report_hold(0.0005, 10) == 0.0        # short job: its result is on someone's wait
    assert report_hold(0.02, 0) == 0.0           # the slot is idle: the server must hear now
    assert report_hold(0.01, 20) == pytest.approx(0.1)      # 10 × its run time
    assert report_hold(0.05, 20) == 0.2                     # never more than 200 ms
    assert report_hold(0.01, 12) == pytest.approx(0.06)     # half of 12 jobs of 10 ms
    assert report_hold(0.15, 1) == pytest.approx(0.075)     # one 150 ms job ahead: half-way
    assert report_hold(0.02, 2.5) == pytest.approx(0.025)   # little left in the queue: report soon


@pytest.mark.normal_latency
def test_idle_batch_goes_without_answer_then_answers_pace_the_rest():
    """After a quiet spell a batch goes through send_only; batches soon after wait for answers."""
    from twisted.internet.task import Clock
    clock, send, only = Clock(), FakeSend(), []
    b = Batcher(send, clock=clock, send_only=only.append)
    b.add(1)
    assert only == [[1]] and send.calls == []
    b.add(2)                              # within the idle gap: answered
    b.add(3)
    assert [c[0] for c in send.calls] == [[2]] and b.pending == 1
    send.calls[0][1].callback(None)
    assert [c[0] for c in send.calls] == [[2], [3]]
    send.calls[1][1].callback(None)
    clock.advance(1.0)
    b.add(4)
    assert only == [[1], [4]]


@pytest.mark.normal_latency
def test_a_slow_stream_is_still_paced_by_answers():
    """Lone batches spaced out in time go without answers, but at most 8 in a row: then one is
    answered, and until that answer comes items pile up (a slow receiver paces the sender)."""
    from twisted.internet.task import Clock
    clock, send, only = Clock(), FakeSend(), []
    b = Batcher(send, clock=clock, send_only=only.append)
    for i in range(10):
        b.add(i)
        clock.advance(0.002)
    assert len(only) == 8 and [c[0] for c in send.calls] == [[8]] and b.pending == 1
    send.calls[0][1].callback(None)
    assert only[-1] == [9]                 # answered: unanswered sends allowed again


@pytest.mark.normal_latency
def test_reactor_sleeps_past_cancelled_and_postponed_timers():
    """Twisted sizes its sleep from the head of its timer heap, cancelled or postponed calls
    included; sleep_past_dead_timers makes it sleep until the next live one."""
    from twisted.internet.selectreactor import SelectReactor
    from dsage_core.protocol.pacing import sleep_past_dead_timers
    r = SelectReactor()
    try:
        cancelled = r.callLater(1, lambda: None)
        postponed = r.callLater(2, lambda: None)
        r.callLater(30, lambda: None)
        assert r.timeout() <= 1.0            # all three are in the heap now
        cancelled.cancel()
        postponed.reset(20)
        assert r.timeout() <= 1.0            # Twisted alone would wake at the cancelled call
        sleep_past_dead_timers(r)
        sleep_past_dead_timers(r)            # installing twice is harmless
        assert 19 < r.timeout() <= 20        # the postponed call is the next live one
        assert postponed.active() and not cancelled.active()
    finally:
        r.waker.connectionLost(None)


def test_size_limit_holds_for_items_requeued_and_added_one_by_one():
    """Sizes are counted once as items come (add, add_many, requeue_front): a pile that fits goes
    whole, one that does not is split at max_bytes, and what is left is sized right after."""
    send = FakeSend()
    b = Batcher(None, max_in_flight=10, size_of=len, max_bytes=10)
    b.add(b"a" * 4)
    b.add_many([b"b" * 4, b"c" * 4])
    b.requeue_front([b"x" * 9, b"y"])
    b.attach(send)
    assert [c[0] for c in send.calls] == [[b"x" * 9, b"y"], [b"a" * 4, b"b" * 4], [b"c" * 4]]
    b.add_many([b"d" * 3, b"e" * 3, b"f" * 3])
    assert send.calls[-1][0] == [b"d" * 3, b"e" * 3, b"f" * 3]   # 9 bytes: whole
    assert b._bytes == 0 and not b._sizes
