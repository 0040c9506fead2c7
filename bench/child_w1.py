"""A job child alone: CPU microseconds per no-op job of ``python -m dsage_core.worker.child``.

Feeds one child directly, through the monitor's framing (worker/framing.py, the ``run`` frames of
worker/children.py), the way the monitor paces short jobs (worker/planner.py): up to ``--window``
jobs in flight, topped up in one frame once half of them are done. Prints the child's CPU us per
job it ran (all threads, from /proc/PID/task/*/schedstat) and its frame counts. In W1 each of
the two children runs half of the jobs, so bench/profile_w1.py's child figure is about half of this.

    .venv/bin/python bench/child_w1.py --jobs 20000 --rounds 3
"""
from __future__ import annotations

import argparse
import os
import pickle
import select
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cloudpickle  # noqa: E402
import jobs as bj  # noqa: E402
import msgpack  # noqa: E402

from dsage_core.worker.framing import FrameDecoder, pack_frame  # noqa: E402

cloudpickle.register_pickle_by_value(bj)
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """CPU seconds of *pid*'s live threads, in ns resolution (/proc schedstat), or in clock ticks."""
    try:
        total = 0
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        return total / 1e9
    except (OSError, ValueError, IndexError):
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK


class Driver:
    """The monitor's side of one child's pipes, without Twisted."""

    def __init__(self, scratch: Path, contain: bool, pythonpath: str | None = None) -> None:
        r, w = os.pipe()
        scratch.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, DSAGE_SCRATCH=str(scratch), TMPDIR=str(scratch), DSAGE_NICE="0",
                   PYTHONUNBUFFERED="1")
        # the child runs in its scratch dir: without this it would import whichever dsage_core the
        # interpreter has installed (another checkout's, for a venv shared between worktrees)
        env["PYTHONPATH"] = pythonpath or str(Path(__file__).resolve().parent.parent)
        if contain:
            env["DSAGE_CONTAIN_FRAME"] = "1"
        self.proc = subprocess.Popen([sys.executable, "-m", "dsage_core.worker.child"], stdin=subprocess.PIPE,
                                     stdout=subprocess.DEVNULL, stderr=None, env=env, close_fds=False, cwd=scratch,
                                     preexec_fn=lambda: os.dup2(w, 3))
        os.close(w)
        self.r = r
        self.scratch = scratch
        self.wfd = self.proc.stdin.fileno()
        self.dec = FrameDecoder()
        if contain:
            self.write(pack_frame(["contain", {"max_procs": 128, "scratch": str(scratch)}]))
        self.blob = cloudpickle.dumps(bj.noop)
        self.blob_sent = False
        self.next_id = 0
        self.frames_in = self.frames_out = 0
        while not any(m[0] == "hello" for m in self.read()):
            pass

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self.wfd, view):]

    def read(self) -> list:
        select.select([self.r], [], [])
        data = os.read(self.r, 1 << 20)
        if not data:
            raise RuntimeError("the child closed its pipe")
        return self.dec.feed(data)

    def entries(self, n: int) -> list:
        out = []
        for _ in range(n):
            self.next_id += 1
            payload = msgpack.packb({"k": "func", "args": pickle.dumps(((self.next_id,), {}), protocol=5)},
                                    use_bin_type=True)
            blob = None if self.blob_sent else self.blob
            self.blob_sent = True
            # ChildRun's seven fields, as worker/children.py sends them: a result path (the server
            # shares the home: start_all, W1) and no ext options
            out.append([self.next_id, payload, "noop", blob, {}, f"{self.scratch}/r{self.next_id}", None])
        return out

    def run(self, n: int, window: int) -> tuple[float, float]:
        """*n* jobs at most *window* in flight; returns (child CPU s, wall s)."""
        cpu0, t0 = cpu_seconds(self.proc.pid), time.perf_counter()
        sent = done = 0
        while done < n:
            inflight = sent - done
            if inflight <= window // 2 and sent < n:
                k = min(window - inflight, n - sent)
                self.write(pack_frame(["run", self.entries(k)]))
                self.frames_out += 1
                sent += k
            for m in self.read():
                if m[0] == "done":
                    done += len(m[1])
                    self.frames_in += 1
                    assert all(d[1] == "completed" for d in m[1]), m[1]
        return cpu_seconds(self.proc.pid) - cpu0, time.perf_counter() - t0

    def close(self) -> None:
        self.write(pack_frame(["exit"]))
        self.proc.stdin.close()
        self.proc.wait(30)
        os.close(self.r)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--jobs", type=int, default=20_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--window", type=int, default=128, help="jobs in flight at most (planner.SHORT_MAX)")
    ap.add_argument("--contain", action="store_true", help="send a containment frame first, as a monitor does")
    ap.add_argument("--baseline", metavar="DIR",
                    help="also run a child whose dsage_core is imported from DIR (e.g. a copy of another "
                         "checkout), round by round alternating with this one (a loaded machine moves both alike)")
    opts = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="dsage-childbench-") as tmp:
        drivers = {"this": Driver(Path(tmp) / "this", opts.contain)}
        if opts.baseline:
            drivers["baseline"] = Driver(Path(tmp) / "base", opts.contain, str(Path(opts.baseline).resolve()))
        try:
            us: dict[str, list[float]] = {name: [] for name in drivers}
            for d in drivers.values():
                d.run(2000, opts.window)   # warm
                d.frames_in = d.frames_out = 0
            for i in range(opts.rounds):
                for name, d in drivers.items():
                    cpu, wall = d.run(opts.jobs, opts.window)
                    us[name].append(cpu * 1e6 / opts.jobs)
                    print(f"round {i + 1} {name:>8}: child {us[name][-1]:.2f} CPU us/job, {opts.jobs / wall:,.0f} jobs/s")
            n = opts.jobs * opts.rounds
            for name, d in drivers.items():
                med = statistics.median(us[name])
                print(f"{name:>8}: median {med:.2f} CPU us/job (about {med / 2:.2f} in profile_w1's per-W1-job "
                      f"terms); jobs per run frame {n / d.frames_out:.1f}, per done frame {n / d.frames_in:.1f}")
        finally:
            for d in drivers.values():
                d.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
