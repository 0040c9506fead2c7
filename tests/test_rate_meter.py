"""dsage_core.stats.RateMeter, the one rate meter: as the server uses it (reactor clock) and light to import."""
import subprocess
import sys

import pytest
from twisted.internet.task import Clock

from dsage_core.stats import RateMeter


def test_rate_meter_on_a_reactor_clock_gives_the_one_minute_rate():
    """With a 60 s window on Twisted's Clock, finished jobs count for a minute and then scroll out."""
    clock = Clock()
    clock.advance(1000.0)
    m = RateMeter(60, clock=clock.seconds)
    for _ in range(120):
        m.add()
    assert m.rate() == pytest.approx(2.0)
    clock.advance(30)
    m.add(60)
    assert m.rate() == pytest.approx(3.0)
    clock.advance(31)   # the first second left the window
    assert m.rate() == pytest.approx(1.0)
    clock.advance(3600)
    assert m.rate() == 0.0


def test_rate_meter_counts_a_second_it_came_back_to_after_a_gap():
    """A bucket reused after the window wrapped around starts from zero, not from its old count."""
    clock = Clock()
    m = RateMeter(5, clock=clock.seconds)
    m.add(7)
    clock.advance(5)     # same bucket index, five seconds later
    m.add(1)
    assert m.rate() == pytest.approx(1 / 5)


def test_importing_the_rate_meter_does_not_import_numpy():
    """The server imports RateMeter; numpy (only the GUI's chart buffers need it) stays unloaded."""
    code = "import sys, dsage_core.stats; assert 'numpy' not in sys.modules, 'numpy imported'"
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
