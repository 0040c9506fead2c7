"""Server-only throughput: a transport-free JobServer on a real SQLite file (inline store runner,
Twisted's Clock), one fake worker that finishes whatever it is given at once, one watching client.

What it measures is the server's own CPU per job (intake, table, scheduler, group commit, SQLite,
pushes handed to a fake session), with no network, worker or client: ``python bench/server_only.py
[JOBS] [ROUNDS]`` prints jobs per CPU second of this process per round and the median (CPU time,
not wall time: the figure holds on a machine other processes load).
"""
from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import msgpack
from twisted.internet.defer import succeed
from twisted.internet.task import Clock

from dsage_core.server.core import JobServer
from dsage_core.store import InlineRunner, SqliteStore


class Link:
    """A worker link that keeps the run batches it is sent."""

    def __init__(self) -> None:
        self.runs: list = []

    def run(self, batch):
        self.runs.append(batch)
        return succeed(None)

    def kill(self, items):
        return succeed(None)

    def disconnect(self) -> None:
        pass


class Watcher:
    """A client session: counts the updates pushed to it."""

    n = 0

    def push_jobs(self, jobs, hold) -> None:
        self.n += len(jobs)


def one_round(jobs: int, batch: int = 500) -> float:
    """Jobs/s of one run of *jobs* no-op jobs, submitted *batch* at a time."""
    with tempfile.TemporaryDirectory() as tmp:
        store = SqliteStore(Path(tmp) / "dsage.sqlite", InlineRunner())
        core = JobServer(store, Clock(), server_id="bench")
        core.restore()
        link = Link()
        w = core.worker_joined(link, {"slots": 1024, "host": "b", "pid": 1}, "alice", False)
        watcher = Watcher()
        raw = [["x", "expr", 0, False, [], msgpack.packb({"k": "expr"}), None, None, None, None]]
        result = msgpack.packb(4)
        t0 = time.process_time()
        for _ in range(jobs // batch):
            core.submit("alice", raw * batch, watcher)
            core.clock.advance(0)
            runs, link.runs = link.runs, []
            events = [["done", e[0], e[1], "completed", result, "4", None, 1.0, 1.0001, 0.0001]
                      for r in runs for e in r["jobs"]]
            core.report(w.id, events)
            core.clock.advance(0.01)
        core.pending_writes()
        dt = time.process_time() - t0
        assert core.counts["completed"] == jobs // batch * batch, core.counts
        return jobs / dt


def main() -> int:
    jobs = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    rates = []
    for i in range(rounds):
        rates.append(one_round(jobs))
        print(f"round {i + 1}: {rates[-1]:,.0f} jobs/s", flush=True)
    print(f"median: {statistics.median(rates):,.0f} jobs/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
