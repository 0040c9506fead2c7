"""dsage_core.progress: elapsed time, per-job ETA, and batches found in a stream of job updates
(every function takes the clock reading: the tests choose it)."""
from dataclasses import dataclass

from dsage_core.progress import Batch, Batches, elapsed, fmt_seconds, job_eta


@dataclass
class Up:
    """A JobInfo-like update."""
    id: int
    status: str = "queued"
    name: str = "f"
    kind: str = "function"
    created: float = 100.0
    started: float | None = None
    finished: float | None = None
    progress: float | None = None


def test_elapsed_counts_until_finished_or_now():
    """Not started: None; running: until now; finished: until it finished; never negative."""
    assert elapsed(Up(1), 50.0) is None
    assert elapsed(Up(1, "running", started=10.0), 14.5) == 4.5
    assert elapsed(Up(1, "completed", started=10.0, finished=12.0), 99.0) == 2.0
    assert elapsed(Up(1, "running", started=10.0), 9.0) == 0.0   # clocks a little apart


def test_job_eta_from_progress_and_only_while_running():
    """At 25 % after 10 s, 30 s are left; no progress, 0 %, 100 % or an end state: no ETA."""
    assert job_eta(Up(1, "running", started=0.0, progress=0.25), 10.0) == 30.0
    assert job_eta(Up(1, "running", started=0.0, progress=None), 10.0) is None
    assert job_eta(Up(1, "running", started=0.0, progress=0.0), 10.0) is None
    assert job_eta(Up(1, "running", started=0.0, progress=1.0), 10.0) is None
    assert job_eta(Up(1, "completed", started=0.0, progress=0.5), 10.0) is None
    assert job_eta(Up(1, "assigned", started=None, progress=0.5), 10.0) is None


def test_fmt_seconds():
    """Seconds, minutes with seconds, hours with minutes; None is empty."""
    assert fmt_seconds(None) == "" and fmt_seconds(4.24) == "4.2 s"
    assert fmt_seconds(185) == "3 min 05 s" and fmt_seconds(59.96) == "60.0 s"
    assert fmt_seconds(2 * 3600 + 61) == "2 h 01 min"


def test_batch_counts_and_eta_from_done_and_partial_progress():
    """done counts end states; the ETA uses finished jobs plus running jobs' progress."""
    b = Batch("b", first_created=0.0)
    for i in range(4):
        b.set(i, "queued")
    b.set(0, "completed")
    b.set(1, "failed")
    b.set(2, "running")
    b.partial[2] = 0.5
    assert b.total == 4 and b.done == 2 and b.counts() == {"completed": 1, "failed": 1, "running": 1, "queued": 1}
    assert b.eta(25.0) == 25.0 * (1 - 2.5 / 4) / (2.5 / 4)
    assert Batch("empty").eta(1.0) is None
    assert b.pop(2) == "running" and 2 not in b.partial and b.total == 3


def test_map_calls_are_one_batch_and_a_pause_starts_another():
    """Jobs of one name and kind created within the gap join one batch; later ones, or another name, do not."""
    bs = Batches(gap=2.0)
    bs.update([Up(i, created=100.0 + i * 0.5) for i in range(1, 5)], now=103.0)   # one map, 4 calls apart
    bs.update([Up(10, created=110.0)], now=110.0)                                 # the next map
    bs.update([Up(20, name="g", created=110.5)], now=110.5)                       # another function
    assert [b.total for b in bs.batches] == [4, 1, 1]
    cur, others = bs.current()
    assert cur is bs.batches[0] and others == 0   # only batches of two or more jobs count


def test_tracked_batch_takes_jobs_seen_before_the_submit_answer():
    """Updates that arrive before the app knows the ids (queued pushes) move into the tracked batch."""
    bs = Batches()
    bs.update([Up(1, created=5.0), Up(2, status="running", created=5.0, started=6.0, progress=0.4)], now=6.0)
    b = bs.track([1, 2, 3], "batch of 3 files")
    assert b.total == 3 and b.status == {1: "queued", 2: "running", 3: "queued"} and b.partial == {2: 0.4}
    assert b.first_created == 5.0 and all(x is b or x.total for x in bs.batches)   # the inferred one is gone
    assert bs.describe(b, 10.0).startswith("batch of 3 files: 0/3 done · 1 running · 2 queued · ETA ")


def test_describe_running_then_finished():
    """While running: done/total, the states and an ETA; once all are done: how long it took."""
    bs = Batches()
    b = bs.track([1, 2], "demo")
    assert bs.describe(b, 1.0) == "demo: 0/2 done · 2 queued · ETA unknown yet"
    bs.update([Up(1, "completed", created=1000.0, started=1000.5, finished=1001.0)], now=1002.0)
    assert bs.describe(b, 1002.0) == "demo: 1/2 done · 1 queued · ETA 2.0 s"
    bs.update([Up(2, "timed_out", created=1000.0, started=1001.0, finished=1003.0)], now=1003.0)
    assert b.finished_at == 1003.0 and bs.describe(b, 1050.0) == "demo: 2/2 done · 1 timed out · took 3.0 s"


def test_current_prefers_running_batches_and_counts_the_others():
    """The newest unfinished batch is shown, with how many more run; with none running, the newest."""
    bs = Batches()
    a, b, c = bs.track([1, 2], "a"), bs.track([3, 4], "b"), bs.track([5, 6], "c")
    bs.update([Up(5, "completed"), Up(6, "completed")], now=1.0)
    assert bs.current() == (b, 1)
    bs.update([Up(i, "completed") for i in (1, 2, 3, 4)], now=2.0)
    assert bs.current() == (c, 0)
    assert a.done == 2


def test_old_batches_are_forgotten():
    """Only the newest *keep* batches are kept, and their jobs' index goes with them."""
    bs = Batches(keep=3)
    for k in range(5):
        bs.track([10 * k, 10 * k + 1], f"b{k}")
    assert [b.label for b in bs.batches] == ["b2", "b3", "b4"]
    assert 0 not in bs._of and 41 in bs._of
