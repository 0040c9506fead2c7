"""dsage_core.stats: ring buffers, history windows and a rate meter with an injected clock (no Qt)."""
import pytest

from dsage_core.stats import History, RateMeter, RingBuffer


def test_ring_buffer_keeps_the_newest_values_oldest_first():
    """Past capacity the oldest values are overwritten; values() stays in arrival order."""
    b = RingBuffer(3)
    for v in range(5):
        b.push(v)
    assert len(b) == 3 and list(b.values()) == [2, 3, 4]


def test_history_rate_comes_from_counter_deltas_and_server_time():
    """completed/s is the change of the finished counters over the change of the server's time."""
    h = History(capacity=100)
    h.add({"time": 10.0, "completed": 0, "queued": 5})
    h.add({"time": 12.0, "completed": 6, "failed": 2, "queued": 3})
    t, s = h.window(600)
    assert list(t) == [10.0, 12.0] and list(s["completed_per_s"]) == [0.0, 4.0] and list(s["queued"]) == [5, 3]


def test_history_window_counts_back_from_the_newest_sample():
    """window(seconds) keeps only samples within *seconds* of the newest one."""
    h = History(capacity=50)
    for k in range(100):
        h.add({"time": float(k)})
    t, _ = h.window(10)
    assert list(t) == [float(k) for k in range(89, 100)]


def test_rate_meter_with_a_fake_clock():
    """Events/s over the window, forgetting seconds that scrolled out (clock driven by hand)."""
    now = [100.0]
    m = RateMeter(window=10, clock=lambda: now[0])
    m.add(50)
    assert m.rate() == pytest.approx(5.0)
    now[0] = 105.5
    m.add(50)
    assert m.rate() == pytest.approx(10.0)
    now[0] = 110.2  # the first second left the window
    assert m.rate() == pytest.approx(5.0)
    now[0] = 500.0
    assert m.rate() == 0.0
