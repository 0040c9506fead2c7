"""``dsage.as_completed`` and ``dsage.wait`` (dsage_core/waiting.py) over real Job handles of an
(unstarted) AsyncClient and over plain future-like objects. Deterministic: jobs are finished by
hooks that run where the reactor would deliver pushes (while callbacks are registered, or when
the consumer starts to wait), never by sleeping."""
from __future__ import annotations

import threading
from concurrent.futures import Future

import pytest
from twisted.internet.task import Clock

from dsage_core import waiting
from dsage_core.client.api import Client
from dsage_core.client.core import AsyncClient
from dsage_core.client.job import Job, JobTracker
from dsage_core.model.records import JobUpdate
from dsage_core.waiting import FIRST_COMPLETED, FIRST_EXCEPTION, as_completed, wait

pytestmark = pytest.mark.timeout(60)

FURL = "pb://" + "n" * 32 + "@tcp:127.0.0.1:1/login"


def finish(s: JobTracker, status: str = "completed") -> None:
    """The push that ends job *s* (as the reactor applies it)."""
    s.apply_wire(list(JobUpdate(s.id, status, "w", 1.0, 2.0, None, None, None if status == "completed" else "e",
                                None, "", 1, "", 0.0, 0, "func").to_wire()), None)


class Env:
    """A Client over an AsyncClient that is "on the reactor thread" (registrations run at once),
    with a hook run right after each batch of done-callbacks is registered."""

    def __init__(self, tmp_path) -> None:
        self.aclient = AsyncClient(Clock(), tmp_path, FURL, None)
        self.aclient._on_reactor_thread = lambda: True
        self.client = Client(self.aclient)
        self.after_register = None
        self.each_calls: list[int] = []   #: sizes of call_each_when_done batches
        self.many_calls: list[int] = []
        orig_each, orig_many = self.aclient.call_each_when_done, self.aclient.call_when_done_many

        def each(states, fn):
            self.each_calls.append(len(states))
            orig_each(states, fn)
            self._hook()

        def many(pairs):
            self.many_calls.append(len(pairs))
            orig_many(pairs)
            self._hook()
        self.aclient.call_each_when_done = each
        self.aclient.call_when_done_many = many

    def _hook(self) -> None:
        if self.after_register is not None:
            hook, self.after_register = self.after_register, None
            hook()

    def jobs(self, n: int, start: int = 1) -> list[Job]:
        out = []
        for i in range(start, start + n):
            s = JobTracker(i)
            self.aclient.states[i] = s
            out.append(Job(self.client, s))
        return out


@pytest.fixture
def env(tmp_path):
    return Env(tmp_path)


class Fut:
    """A future-like object (no client): done(), add_done_callback, a status; counts calls."""

    def __init__(self, status: str | None = None) -> None:
        self.status = status
        self.cbs: list = []
        self.done_calls = 0
        self.registrations = 0

    def done(self) -> bool:
        self.done_calls += 1
        return self.status is not None

    def add_done_callback(self, fn) -> None:
        self.registrations += 1
        if self.status is not None:
            fn(self)
        else:
            self.cbs.append(fn)

    def end(self, status: str = "completed") -> None:
        self.status = status
        for fn in self.cbs:
            fn(self)


def hook_sink(monkeypatch, on_take):
    """Run *on_take()* the first time as_completed's consumer would block (what the reactor does
    meanwhile), then wait as usual."""
    calls = []

    class Sink(waiting._Sink):
        __slots__ = ()

        def take(self, timeout):
            calls.append(timeout)
            if len(calls) == 1:
                on_take()
            return super().take(timeout)
    monkeypatch.setattr(waiting, "_Sink", Sink)
    return calls


# ------------------------------------------------------------------------------ as_completed
def test_as_completed_yields_each_job_once_through_one_registration(env):
    jobs = env.jobs(50)
    env.after_register = lambda: [finish(j._s) for j in reversed(jobs)]
    got = list(as_completed(jobs))
    assert got == list(reversed(jobs))          # in the order they finished
    assert env.each_calls == [50] and env.many_calls == []   # one callback for all, one hop


def test_as_completed_yields_a_job_listed_twice_once(env):
    a, b = env.jobs(2)
    env.after_register = lambda: (finish(b._s), finish(a._s))
    got = list(as_completed([a, b, a, b, a]))
    assert got == [b, a]


def test_as_completed_yields_a_finished_job_listed_twice_once(env):
    """As concurrent.futures.as_completed does (it takes a set): a job given twice comes once,
    also when it had finished before the call."""
    a, b = env.jobs(2)
    finish(a._s)
    env.after_register = lambda: finish(b._s)
    got = list(as_completed([a, b, a]))
    assert got == [a, b]


def test_as_completed_a_job_that_finishes_while_the_input_is_read_comes_once(env):
    """The consumer runs between yields: a job seen unfinished, then finished (by a push applied
    while the consumer handled an earlier job) when it is met again in the input, is yielded
    once, not once from the input and once from its callback."""
    a, b = env.jobs(2)
    finish(b._s)
    it = as_completed([a, b, a])
    assert next(it) is b
    finish(a._s)            # a's push, applied before the generator reads the second a
    rest = list(it)
    assert rest == [a]


def test_as_completed_yields_jobs_done_before_the_call_first(env):
    a, b, c = env.jobs(3)
    finish(b._s, "failed")
    env.after_register = lambda: (finish(c._s), finish(a._s, "killed"))
    got = list(as_completed([a, b, c]))
    assert got == [b, c, a]


def test_as_completed_all_done_registers_nothing(env):
    jobs = env.jobs(3)
    for j in jobs:
        finish(j._s)
    assert list(as_completed(jobs)) == jobs
    assert env.each_calls == [] and env.many_calls == []


def test_as_completed_waits_for_finishes_that_come_later(env, monkeypatch):
    """Nothing finished at registration: the consumer waits, and what the reactor finishes
    meanwhile is yielded."""
    jobs = env.jobs(5)
    takes = hook_sink(monkeypatch, lambda: [finish(j._s) for j in jobs])
    assert list(as_completed(jobs, timeout=30)) == jobs
    assert len(takes) == 1


def test_as_completed_timeout_raises_timeout_error_naming_the_unfinished(env):
    a, b, c = env.jobs(3)
    env.after_register = lambda: finish(a._s)
    got = []
    with pytest.raises(TimeoutError, match=r"^2 jobs still unfinished after 0 s"):
        for j in as_completed([a, b, c], timeout=0):
            got.append(j)
    assert got == [a]


def test_as_completed_two_handles_of_one_state_are_both_yielded(env):
    """Two Job objects on the same state are two inputs (the second comes back through its own
    callback)."""
    (a,) = env.jobs(1)
    a2 = Job(env.client, a._s)
    env.after_register = lambda: finish(a._s)
    got = list(as_completed([a, a2], timeout=30))
    assert sorted(map(id, got)) == sorted([id(a), id(a2)])


def test_as_completed_over_futures_and_jobs_together(env):
    (a,) = env.jobs(1)
    f, g = Future(), Future()
    g.set_result(1)
    env.after_register = lambda: (f.set_result(2), finish(a._s))
    got = list(as_completed([f, a, g, f]))
    assert got[0] is g and sorted(map(id, got[1:])) == sorted([id(f), id(a)])


def test_as_completed_from_another_thread(env):
    """The usual case: the reactor thread finishes jobs while the consumer blocks."""
    jobs = env.jobs(20)
    registered = threading.Event()
    env.after_register = registered.set
    finisher = threading.Thread(target=lambda: registered.wait(30) and [finish(j._s) for j in jobs])
    finisher.start()
    got = list(as_completed(jobs, timeout=30))
    finisher.join(30)
    assert got == jobs


# ------------------------------------------------------------------------------ wait
class CountingCondition:
    """threading.Condition that counts notify_all and wait, and runs a hook at the first wait
    (the reactor finishing jobs while the caller waits); a second wait fails the test (nothing
    else would ever finish a job)."""

    instances: list["CountingCondition"] = []
    on_wait = None

    def __init__(self) -> None:
        self.c = threading.Condition()
        self.notifies = 0
        self.waits = 0
        CountingCondition.instances.append(self)

    def __enter__(self):
        return self.c.__enter__()

    def __exit__(self, *a):
        return self.c.__exit__(*a)

    def notify_all(self) -> None:
        self.notifies += 1
        self.c.notify_all()

    def wait(self, timeout=None):
        self.waits += 1
        hook, CountingCondition.on_wait = CountingCondition.on_wait, None
        assert hook is not None, "waited again after the hook finished what the test finishes"
        hook()
        return True


@pytest.fixture
def cond(monkeypatch):
    import types
    CountingCondition.instances = []
    CountingCondition.on_wait = None
    monkeypatch.setattr(waiting, "threading", types.SimpleNamespace(Condition=CountingCondition,
                                                                    Event=threading.Event))
    return CountingCondition


def test_wait_returns_when_all_finish(env, cond):
    jobs = env.jobs(10)
    cond.on_wait = lambda: [finish(j._s) for j in jobs]
    done, not_done = wait(jobs, timeout=30)
    assert done == set(jobs) and not_done == set()
    assert env.many_calls == [10]       # one hop for all
    assert cond.instances[0].waits == 1


def test_wait_from_another_thread_returns_when_all_finish(env):
    jobs = env.jobs(20)
    registered = threading.Event()
    env.after_register = registered.set
    finisher = threading.Thread(target=lambda: registered.wait(30) and [finish(j._s) for j in jobs])
    finisher.start()
    done, not_done = wait(jobs, timeout=30)
    finisher.join(30)
    assert done == set(jobs) and not not_done


def test_wait_counts_a_job_finishing_twice_once(cond):
    """A future whose callback fires twice counts once: wait still waits for the other job."""
    a, b = Fut(), Fut()
    a.add_done_callback = lambda fn: (fn(a), fn(a))   # reports twice at once (and claims not done)
    cond.on_wait = lambda: b.end()
    done, not_done = wait([a, b], timeout=30)
    assert cond.instances[0].waits == 1     # did not return on a's two reports
    assert done == {b} and not_done == {a}


def test_wait_a_job_listed_twice_counts_for_both_entries(env, cond):
    a, b = env.jobs(2)
    cond.on_wait = lambda: (finish(a._s), finish(b._s))
    done, not_done = wait([a, a, b], timeout=30)
    assert done == {a, b} and not not_done
    assert env.many_calls == [2]


def test_wait_a_finished_job_listed_twice_counts_for_both_entries(env, cond):
    a, b = env.jobs(2)
    finish(a._s)
    cond.on_wait = lambda: finish(b._s)
    assert wait([a, b, a], timeout=30) == ({a, b}, set())
    assert env.many_calls == [1] and cond.instances[0].waits == 1


def test_wait_with_everything_finished_registers_nothing(env, cond):
    jobs = env.jobs(4)
    for j in jobs:
        finish(j._s, "failed")
    assert wait(jobs) == (set(jobs), set())
    assert env.many_calls == [] and cond.instances == []


def test_wait_with_some_already_finished(env, cond):
    a, b, c = env.jobs(3)
    finish(a._s)
    cond.on_wait = lambda: (finish(b._s), finish(c._s))
    assert wait([a, b, c], timeout=30) == ({a, b, c}, set())
    assert env.many_calls == [2]            # only the unfinished are registered


def test_wait_timeout_returns_what_finished(env, cond):
    a, b, c = env.jobs(3)
    env.after_register = lambda: finish(b._s)
    done, not_done = wait([a, b, c], timeout=0)
    assert done == {b} and not_done == {a, c}


def test_wait_first_completed_and_first_exception(env, cond):
    a, b, c = env.jobs(3)
    cond.on_wait = lambda: finish(b._s)
    assert wait([a, b, c], return_when=FIRST_COMPLETED, timeout=30) == ({b}, {a, c})
    cond.on_wait = lambda: (finish(a._s), finish(c._s, "failed"))
    d, e = env.jobs(2, start=10)
    done, not_done = wait([a, b, c, d, e], return_when=FIRST_EXCEPTION, timeout=30)
    assert done == {a, b, c} and not_done == {d, e}
    f, g = env.jobs(2, start=20)
    cond.on_wait = lambda: (finish(f._s), finish(g._s))
    assert wait([f, g], return_when=FIRST_EXCEPTION, timeout=30) == ({f, g}, set())


def test_wait_is_linear_in_the_number_of_jobs(cond):
    """n finishes while the caller waits: each job's done() is asked a bounded number of times
    (not once per finish, which was O(n^2)), and the waiting thread is woken once, when all
    finished, not at every finish."""
    n = 2000
    futs = [Fut() for _ in range(n)]
    cond.on_wait = lambda: [f.end() for f in futs]
    done, not_done = wait(futs, timeout=30)
    assert len(done) == n and not not_done
    assert sum(f.done_calls for f in futs) <= 2 * n
    assert max(f.done_calls for f in futs) <= 2
    c = cond.instances[0]
    assert c.notifies == 1 and c.waits == 1
    assert all(f.registrations == 1 for f in futs)
