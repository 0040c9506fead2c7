"""Resource requests in the pure scheduler: sized jobs (cpus, memory, gpus) packed onto workers whose
free resources fit, with visible reasons for jobs that fit nowhere. Plain asserts, no reactor."""
from dsage_core.model.resources import Request
from dsage_core.scheduler import SchedJob, Scheduler, actions as act, events as ev

GiB = 1 << 30


def dispatched(actions):
    """{worker_id: [job ids]} from the Dispatch actions."""
    return {a.worker_id: [j for j, _ in a.jobs] for a in actions if isinstance(a, act.Dispatch)}


def join(s, wid, slots=1, memory=0, gpus=0):
    out = s.handle(ev.WorkerJoined(wid, slots, False, frozenset(), 0.0, memory=memory, gpus=gpus))
    s.validate()
    return out


def submit(s, *jobs):
    out = s.handle(ev.JobsSubmitted(list(jobs)))
    s.validate()
    return out


def sized(i, cpus=1, memory=0, gpus=0, **kw):
    return SchedJob(i, res=Request(cpus, memory, gpus), **kw)


def finish(s, wid, ids, duration=0.01):
    out = s.handle(ev.JobsFinished(wid, [(j, s.job_location(j)[1], duration) for j in ids]))
    s.validate()
    return out


def test_a_two_cpu_job_takes_two_slots():
    """On a 3-slot worker a cpus=2 job leaves room for exactly one one-slot job, and no prefetch."""
    s = Scheduler()
    join(s, "w", 3)
    assert dispatched(submit(s, sized(1, cpus=2), *[SchedJob(i) for i in range(2, 6)])) == {"w": [1, 2]}
    assert s.allowance("w") == 2   # 3 slots, one job takes 2: no buffer beside a sized job
    # a short job: a prefetch would open if it were allowed; only the free slot is filled
    assert dispatched(finish(s, "w", [2], duration=0.001)) == {"w": [3]}
    assert dispatched(finish(s, "w", [1])) == {"w": [4, 5]}   # the slots are back, with a buffer


def test_a_job_no_worker_fits_waits_with_its_reason_and_runs_when_one_joins():
    """cpus=2 with only a 1-slot worker: the reason names both numbers; a 2-slot worker takes it,
    while the 1-slot worker keeps running one-slot jobs meanwhile."""
    s = Scheduler()
    join(s, "small", 1)
    out = submit(s, sized(1, cpus=2), SchedJob(2))
    assert dispatched(out) == {"small": [2]}
    assert s.waiting_reason(1) == "needs 2 cpus; the largest worker has 1"
    assert dispatched(join(s, "big", 2)) == {"big": [1]}
    assert s.waiting_reason(1) is None


def test_memory_and_gpus_are_counted_per_worker():
    """Two 5 GiB jobs on an 8 GiB worker run one after the other; a gpu job goes to the gpu worker."""
    s = Scheduler()
    join(s, "cpu", 4, memory=8 * GiB)
    join(s, "gpu", 4, memory=8 * GiB, gpus=1)
    out = submit(s, sized(1, gpus=1), sized(2, memory=5 * GiB), sized(3, memory=5 * GiB), sized(4, gpus=1))
    placed = dispatched(out)
    assert placed["gpu"][0] == 1 and 4 not in sum(placed.values(), [])
    assert sorted(sum(placed.values(), [])) == [1, 2, 3]   # one 5 GiB job per 8 GiB worker
    where3 = s.job_location(3)[0]
    assert dispatched(finish(s, "gpu", [1])) == {"gpu": [4]}
    assert s.is_queued(4) is False and s.job_location(3)[0] == where3


def test_the_reasons_name_memory_and_gpus():
    """A job asking for more memory or gpus than any worker has says which, with the numbers."""
    s = Scheduler()
    join(s, "w", 2, memory=2 * GiB)
    submit(s, sized(1, memory=4 * GiB), sized(2, gpus=2), sized(3, cpus=2, memory=GiB))
    assert s.waiting_reason(1) == ("needs 4.0 GiB of memory; the largest worker with the cpus and gpus it "
                                   "asks for has 2.0 GiB")
    assert s.waiting_reason(2) == "needs 2 gpus; the most any worker with 1 cpus has is 0"
    assert s.waiting_reason(3) is None and s.job_location(3)[0] == "w"


def test_packing_puts_sized_jobs_on_the_fullest_worker_that_fits():
    """A cpus=2 job goes to the busier worker when it fits there, keeping the idle one whole."""
    s = Scheduler()
    join(s, "a", 4)
    submit(s, SchedJob(1), SchedJob(2))      # both on a (most free slots first)
    join(s, "b", 4)
    assert dispatched(submit(s, sized(3, cpus=2))) == {"a": [3]}
    assert dispatched(submit(s, sized(4, cpus=4))) == {"b": [4]}


def test_a_stream_of_small_jobs_does_not_starve_a_sized_one():
    """A full 2-slot worker is reserved for the waiting cpus=2 job: it gets no new one-slot jobs
    until the job fits, then the stream goes on."""
    s = Scheduler()
    join(s, "w", 2)
    submit(s, SchedJob(1), SchedJob(2))
    submit(s, sized(3, cpus=2), *[SchedJob(i) for i in range(4, 10)])
    assert s.job_location(3) is None
    assert dispatched(finish(s, "w", [1])) == {}          # reserved: the free slot stays free
    assert dispatched(finish(s, "w", [2])) == {"w": [3]}   # now it fits
    assert dispatched(finish(s, "w", [3])) == {"w": list(range(4, 10))}   # slots and a buffer


def test_requeue_kill_and_worker_loss_give_the_resources_back():
    """A sized job's slots come back when it finishes, is handed back or its worker dies."""
    s = Scheduler()
    join(s, "w", 2, memory=4 * GiB)
    submit(s, sized(1, cpus=2, memory=3 * GiB))
    s.handle(ev.JobsHandedBack("w", [(1, 1, False)]))
    s.validate()
    assert s.job_location(1)[1] == 2          # handed back and dispatched again at once
    s.handle(ev.KillRequested([1]))
    finish(s, "w", [1])
    submit(s, sized(2, cpus=2, memory=3 * GiB))
    assert s.job_location(2)[0] == "w"
    s.handle(ev.WorkerLeft("w"))
    s.validate()
    assert s.is_queued(2) and s.waiting_reason(2) == "no workers connected"
    assert dispatched(join(s, "v", 2, memory=4 * GiB)) == {"v": [2]}


def test_paused_workers_take_no_sized_jobs():
    """A paused worker is neither given nor reserved for a sized job."""
    s = Scheduler()
    join(s, "w", 2)
    s.handle(ev.WorkerPaused("w", True))
    assert dispatched(submit(s, sized(1, cpus=2))) == {}
    assert dispatched(s.handle(ev.WorkerPaused("w", False))) == {"w": [1]}
