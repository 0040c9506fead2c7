"""A worker in a batch allocation hands its jobs back *margin* seconds before the allocation ends
(``SLURM_JOB_END_TIME``), on a fake clock."""
from twisted.internet.task import Clock

from dsage_core.worker import walltime


def test_end_time_reads_the_slurm_variable_and_ignores_junk():
    """A positive UNIX time is the end; a missing, empty, non-numeric, infinite or zero value is none."""
    assert walltime.end_time({"SLURM_JOB_END_TIME": "1764763200"}) == 1764763200.0
    for bad in ({}, {"SLURM_JOB_END_TIME": ""}, {"SLURM_JOB_END_TIME": "NONE"},
                {"SLURM_JOB_END_TIME": "inf"}, {"SLURM_JOB_END_TIME": "nan"}, {"SLURM_JOB_END_TIME": "0"}):
        assert walltime.end_time(bad) is None, bad


def test_stop_fires_margin_seconds_before_the_end_and_only_once():
    """With the end at t=1000 and a margin of 60, nothing happens until t=940, then the stop runs once."""
    clock = Clock()
    calls = []
    walltime.watch_end(clock, 1000.0, 60.0, lambda: calls.append(clock.seconds()))
    clock.advance(939.9)
    assert calls == []
    clock.advance(0.1)
    assert calls == [940.0]
    clock.advance(1000)
    assert calls == [940.0]


def test_an_end_already_inside_the_margin_stops_at_once():
    """A worker that starts less than *margin* before the end (a late start) stops on the next turn."""
    clock = Clock()
    clock.advance(990)
    calls = []
    walltime.watch_end(clock, 1000.0, 60.0, lambda: calls.append(clock.seconds()))
    clock.advance(0)
    assert calls == [990.0]


def test_no_end_schedules_nothing():
    """Outside an allocation (no end time) no stop is scheduled."""
    clock = Clock()
    assert walltime.watch_end(clock, None, 60.0, lambda: None) is None
    assert clock.getDelayedCalls() == []
