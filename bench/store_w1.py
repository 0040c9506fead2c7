"""The SQLite store alone, as W1 drives it: CPU microseconds per job of the store's calls.

Each round inserts JOBS jobs in submits of ``--batch`` (500, as ``D.map`` chunks them), marks them
running in dispatches of ``--running`` jobs and finishes them with results in reports of
``--finished`` jobs, through :meth:`SqliteStore.record` on a real database file (WAL,
synchronous=NORMAL) with the inline runner, so the thread that runs the calls is this one and its
CPU time (``time.thread_time``) is the db thread's cost. Rows are built before the clock starts.
``--mode fold`` has the server's fast path instead: each submit's jobs are inserted already
running (a dispatch in the INSERT's transaction), and finished in reports.

    .venv/bin/python bench/store_w1.py --rounds 5
"""
from __future__ import annotations

import argparse
import pickle
import statistics
import sys
import tempfile
import time
from pathlib import Path

from twisted.internet.defer import Deferred

from dsage_core.store import InlineRunner, SqliteStore
from dsage_core.store.sqlite import FinishedJob, NewJob, RunningJob


def _sync(d: Deferred) -> object:
    out: list = []
    d.addBoth(out.append)
    r = out[0]
    if hasattr(r, "raiseException"):
        r.raiseException()
    return r


def one_round(jobs: int, batch: int, running: int, finished: int, mode: str) -> float:
    """CPU us/job of the store calls of one W1-like round on a fresh database."""
    with tempfile.TemporaryDirectory() as tmp:
        store = SqliteStore(Path(tmp) / "dsage.db", InlineRunner())
        _sync(store.open())
        payload = pickle.dumps((len, ([1, 2, 3],), {}))
        result = pickle.dumps(None)
        now = time.time()
        calls: list[tuple[list, list, list]] = []
        for start in range(1, jobs + 1, batch):
            ids = range(start, min(start + batch, jobs + 1))
            new = [NewJob(i, "alice", "f", "call", 0, False, "", payload, None, None, None, "f(x)", now)
                   for i in ids]
            runs = [RunningJob(i, 1, "w-1", now) for i in ids]
            ends = [FinishedJob(i, "completed", result, "None", None, None, now, now + 0.001, "w-1")
                    for i in ids]
            if mode == "fold":
                calls.append((runs, [], new))
            else:
                calls.append(([], [], new))
                calls += [(runs[k:k + running], [], []) for k in range(0, len(runs), running)]
            calls += [([], ends[k:k + finished], []) for k in range(0, len(ends), finished)]
        t0 = time.thread_time()
        for r, f, n in calls:
            _sync(store.record(r, f, n))
        dt = time.thread_time() - t0
        _sync(store.close())
    return dt / jobs * 1e6


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--jobs", type=int, default=10_000)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--batch", type=int, default=500, help="jobs per submit")
    p.add_argument("--running", type=int, default=50, help="jobs per dispatch transaction")
    p.add_argument("--finished", type=int, default=50, help="jobs per report transaction")
    p.add_argument("--mode", choices=("split", "fold"), default="split")
    a = p.parse_args()
    us = []
    for i in range(a.rounds):
        us.append(one_round(a.jobs, a.batch, a.running, a.finished, a.mode))
        print(f"round {i + 1}: {us[-1]:.2f} us/job", flush=True)
    print(f"median: {statistics.median(us):.2f} us/job, min {min(us):.2f} (store thread CPU, mode={a.mode}, batch={a.batch}, "
          f"running={a.running}, finished={a.finished})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
