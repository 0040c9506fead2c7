"""Chaos suite: kill -9 workers and the server, freeze a worker, crash jobs; nothing lost, nothing
counted twice. Short form in ``make test``; ``make chaos`` (DSAGE_CHAOS=full) runs the issue's sizes.
Each scenario prints a ``lost=0 duplicated=0 ...`` line."""
from __future__ import annotations

import collections
import random
import signal
import threading
import time

import pytest
from foolscap.util import allocate_tcp_port

import dsage_core as dsage
from tests.chaos.harness import FULL, ProcCluster, scale, sleepy

pytestmark = [pytest.mark.timeout(600 if FULL else 240)]


@pytest.fixture
def procs(tmp_path):
    c = ProcCluster(tmp_path / "home", allocate_tcp_port())
    c.setup()
    c.start_server()
    yield c
    c.stop()


def wait_for(pred, timeout, what):
    """Poll a condition that has no event to wait on (bounded; for the chaos suite only)."""
    end = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < end, what
        threading.Event().wait(0.05)


def _client(c):
    return dsage.connect(c.furl, home=c.home, timeout=30)


def _count_terminal_callbacks(jobs):
    counts = collections.Counter()
    lock = threading.Lock()

    def cb(j):
        with lock:
            counts[j.id] += 1
    for j in jobs:
        j.add_done_callback(cb)
    return counts


def _verdict(name, jobs, counts, extra=""):
    lost = sum(1 for j in jobs if j.status != "completed")
    wrong = sum(1 for i, j in enumerate(jobs) if j.status == "completed" and j.result != i * i + 1)
    dup = sum(1 for n in counts.values() if n > 1)
    print(f"\n[{name}] jobs={len(jobs)} lost={lost} duplicated={dup} wrong={wrong} {extra}")
    return lost, dup, wrong


def test_kill_workers_randomly(procs):
    """kill -9 random worker monitors and children while jobs run: every job completes once, correctly."""
    n, kills = scale(200, 1000), scale(6, 20)
    procs.start_worker(2)
    procs.start_worker(2)
    D = _client(procs)
    try:
        rng = random.Random(7)
        jobs = D.map(sleepy, range(n), [rng.randint(10, 200) for _ in range(n)])
        counts = _count_terminal_callbacks(jobs)
        done_kinds = collections.Counter()
        t0 = time.monotonic()
        kill_points = {(k + 1) * n // (kills + 2) for k in range(kills)}
        # event-driven: each kill happens when the next share of the jobs has finished
        for finished, _ in enumerate(dsage.as_completed(jobs, timeout=600), start=1):
            if finished in kill_points:
                done_kinds[procs.kill_random_worker_process(rng)] += 1
                procs.replace_dead_monitors(2)
        wall = time.monotonic() - t0
        lost, dup, wrong = _verdict("kill workers", jobs, counts,
                                    f"kills={dict(done_kinds)} wall={wall:.1f}s")
        assert (lost, dup, wrong) == (0, 0, 0)
    finally:
        D.shutdown()


def test_kill_server_twice(procs):
    """kill -9 the server twice mid-run and restart it: 0 lost, 0 duplicated, waits finish normally."""
    n = scale(200, 1000)
    procs.start_worker(2)
    procs.start_worker(2)
    D = _client(procs)
    try:
        rng = random.Random(11)
        jobs = D.map(sleepy, range(n), [rng.randint(10, 60) for _ in range(n)])
        counts = _count_terminal_callbacks(jobs)
        kill_points = {n // 3, 2 * n // 3}
        seen = 0
        for seen, _ in enumerate(dsage.as_completed(jobs, timeout=600), start=1):
            if seen in kill_points:
                procs.kill_server()
                procs.start_server()
        assert seen == n
        lost, dup, wrong = _verdict("kill server x2", jobs, counts)
        assert (lost, dup, wrong) == (0, 0, 0)
        assert D.stats()["completed"] >= n
    finally:
        D.shutdown()


def test_frozen_worker_loses_its_leases_and_rejoins(procs):
    """SIGSTOP a worker monitor past the lease: its jobs run elsewhere, late results are discarded,
    and it rejoins when continued."""
    import psutil
    frozen = procs.start_worker(2)
    D = _client(procs)
    try:
        # wait until the first worker is registered, then start the second
        wait_for(lambda: D.workers(), 30, "the first worker never joined")
        procs.start_worker(2)
        n = scale(40, 200)
        jobs = D.map(sleepy, range(n), [300] * n)
        counts = _count_terminal_callbacks(jobs)
        wait_for(lambda: any(j.status == "running" and j.worker and f"-{frozen.pid}-" in j.worker
                             for j in jobs), 30, "the first worker never ran a job")
        stop_for = scale(8, 30)
        proc = psutil.Process(frozen.pid)
        for p in [proc] + proc.children():
            p.send_signal(signal.SIGSTOP)
        t0 = time.monotonic()
        try:
            jobs[-1].wait(stop_for)
        except TimeoutError:
            pass
        remaining = max(0.0, stop_for - (time.monotonic() - t0))
        threading.Event().wait(remaining)  # the point of the test: keep it frozen this long
        for p in [proc] + proc.children():
            p.send_signal(signal.SIGCONT)
        for j in jobs:
            j.wait(120)
        lost, dup, wrong = _verdict("freeze worker", jobs, counts, f"frozen={stop_for}s")
        assert (lost, dup, wrong) == (0, 0, 0)
        wait_for(lambda: any(f"-{frozen.pid}-" in w["id"] for w in D.workers()), 30,
                 "the frozen worker did not rejoin")
    finally:
        D.shutdown()


def test_job_crashes_get_clear_reasons(procs):
    """Segfault, os._exit, memory limit and output flood each fail clearly; the worker keeps serving."""
    procs.start_worker(2)
    D = _client(procs)
    try:
        seg = D.eval("import ctypes\nctypes.string_at(0)")
        exit_ = D.eval("import os\nos._exit(3)")
        mem = D.eval("x = bytearray(2 * 1024**3)", mem_limit=300 * 1024**2)
        flood = D.eval("import sys\nfor i in range(200000): print('x' * 100)\nDSAGE_RESULT = 'flooded'")
        for j in (seg, exit_, mem, flood):
            j.wait(120)
        assert seg.status == "failed" and "SIGSEGV" in seg.error
        assert exit_.status == "failed" and "code 3" in exit_.error
        assert mem.status == "failed" and "memory limit" in mem.error.lower()
        assert flood.status == "completed" and flood.result == "flooded"
        assert "output truncated" in flood.output
        assert D("6*7").wait(60).result == 42
        print(f"\n[job crashes] lost=0 duplicated=0 segfault={seg.status} exit={exit_.status} "
              f"memory={mem.status} flood={flood.status}(truncated)")
    finally:
        D.shutdown()
