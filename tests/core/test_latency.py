"""The latency policy: one place for every timing trick, chosen per process from DSAGE_LATENCY."""
import json
import os
import subprocess
import sys

import pytest

from dsage_core import latency
from dsage_core.latency import TRICKS, LatencyPolicy, from_environ


def test_plain_turns_every_trick_off():
    """plain() is normal() with each trick of TRICKS at its off value, and nothing else changed."""
    normal, plain = LatencyPolicy.normal(), LatencyPolicy.plain()
    assert plain.name == "plain" and normal.name == "normal"
    for trick, off in TRICKS.items():
        for field, value in off.items():
            assert getattr(plain, field) == value, (trick, field)
            assert getattr(normal, field) != value, f"{trick}: {field} is already off in normal"
    # reconnect pacing is not a latency trick: the same in both
    assert (plain.local_retry_start, plain.max_local_failures, plain.group_refresh) == \
        (normal.local_retry_start, normal.max_local_failures, normal.group_refresh)


def test_environment_chooses_the_policy():
    """DSAGE_LATENCY picks normal (the default) or plain; DSAGE_LATENCY_OFF turns single tricks off."""
    assert from_environ({}) == LatencyPolicy.normal()
    assert from_environ({"DSAGE_LATENCY": " Plain "}) == LatencyPolicy.plain()
    one = from_environ({"DSAGE_LATENCY_OFF": "commit_delay, lazy_read"})
    assert one.commit_delay == 0 and one.lazy_read is False and one.report_hold_max == 0.2
    assert one.name == "normal-commit_delay-lazy_read"


def test_bad_values_are_clear_errors():
    """A mistyped mode or trick names what is allowed instead of silently running normal."""
    with pytest.raises(ValueError, match="expected one of normal, plain"):
        from_environ({"DSAGE_LATENCY": "fast"})
    with pytest.raises(ValueError, match="unknown latency trick 'holds'.*push_hold"):
        from_environ({"DSAGE_LATENCY_OFF": "holds"})


def test_policy_is_frozen():
    """Nobody changes the process's policy behind the modules that read it once."""
    with pytest.raises(AttributeError):
        latency.current().commit_delay = 1.0  # type: ignore[misc]


def test_modules_read_the_policy_of_their_process():
    """A fresh interpreter with DSAGE_LATENCY=plain gets every module constant from plain()."""
    code = (
        "import json\n"
        "from dsage_core.server import core, remote\n"
        "from dsage_core.worker import pool, children, child, capture\n"
        "from dsage_core.protocol import eagerwrite, pacing\n"
        "from twisted.internet.task import Clock\n"
        "p = remote.KeyedPusher(None, Clock())\n"
        "print(json.dumps([core.push_hold(0.05), core.COMMIT_DELAY, pool.report_hold(0.02, 100),\n"
        "  pool.START_MARK_HOLD, children.LAZY_READ, child.COALESCE_S, child.CPU_CLOCK_MIN_WALL,\n"
        "  child.RSS_EVERY, capture.FLUSH_BYTES, eagerwrite.EAGER, p.lazy_delay,\n"
        "  p._pacer.max_unanswered]))\n")
    got = {}
    for mode in ("normal", "plain"):
        env = dict(os.environ, DSAGE_LATENCY=mode)
        env.pop("DSAGE_LATENCY_OFF", None)
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                             timeout=60, check=True)
        got[mode] = json.loads(out.stdout)
    assert got["plain"] == [0.0, 0.0, 0.0, 0.0, False, 0.0, 0.0, 1, 0, False, 0.0, 0]
    assert got["normal"] == [0.1, 0.002, 0.2, 0.05, True, 0.002, 0.0005, 16, 4096, True, 0.05, 8]


def test_plain_reactor_keeps_twisted_timers():
    """Under plain, sleep_past_dead_timers leaves the reactor's private timer heap alone."""
    code = ("from twisted.internet import reactor\n"
            "from dsage_core.protocol.pacing import sleep_past_dead_timers\n"
            "t = reactor.timeout\n"
            "sleep_past_dead_timers(reactor)\n"
            "print(reactor.timeout == t, getattr(reactor, '_dsage_live_timers', False))\n")
    for mode, expected in (("plain", "True False"), ("normal", "False True")):
        out = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, DSAGE_LATENCY=mode),
                             capture_output=True, text=True, timeout=60, check=True)
        assert out.stdout.strip() == expected, mode
