"""Where W1's CPU goes: CPU microseconds per job in every process of a ``start_all`` cluster.

Runs W1 (10,000 no-op jobs through ``D.map``, durable) ``--rounds`` times on a fresh cluster and
prints, per process (client, server, worker monitor, each child), CPU us/job from /proc/PID/stat
(user + system, all threads), plus the wall rate. CPU per job is robust against a loaded machine;
the wall rate is not. With ``--py-spy DIR`` every process is also sampled by py-spy during the
measured rounds (a raw collapsed-stack file per process in DIR) and the top functions by own time
and by inclusive time are printed per process.

    .venv/bin/python bench/profile_w1.py --rounds 5
    .venv/bin/python bench/profile_w1.py --rounds 3 --py-spy /tmp/prof
"""
from __future__ import annotations

import argparse
import collections
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import jobs as bj  # noqa: E402
import loops  # noqa: E402
import cloudpickle  # noqa: E402

cloudpickle.register_pickle_by_value(bj)

N1 = loops.N1
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of *pid* (all its threads)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def thread_cpu(pid: int) -> dict[int, float]:
    """CPU seconds of each thread of *pid* (thread id -> seconds)."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            out[int(tid)] = (int(fields[11]) + int(fields[12])) / TICK
        except OSError:
            pass
    return out


def children_of(pid: int) -> list[int]:
    """Direct child pids of *pid*."""
    out = []
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            out += [int(x) for x in Path(f"/proc/{pid}/task/{task}/children").read_text().split()]
        except OSError:
            pass
    return out


#: leaf frames of a thread that waits (py-spy's idle detection misses some of them)
IDLE = ("EPollReactor.doPoll", "Condition.wait", "Event.wait", "Inbox._read", "ThreadRunner._work",
        "_done_flusher", "select ")


def top_functions(raw: Path, n: int = 12) -> dict[str, tuple[list[tuple[str, int]], list[tuple[str, int]], int]]:
    """Per thread name: (own-time top, inclusive top, busy samples) from a py-spy raw file
    recorded with ``--threads``; samples whose leaf is a wait are left out."""
    own: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    incl: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    total: collections.Counter[str] = collections.Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        parts = stack.split(";")
        if len(parts) < 2:
            continue
        thread = parts[0].split(": ", 1)[-1]
        frames = [f.split(" (")[0] + " (" + f.split(" (")[1].split(":")[0].rsplit("/", 1)[-1] + ")"
                  if " (" in f else f for f in parts[1:]]
        if frames[-1].startswith(IDLE):
            continue
        c = int(count)
        total[thread] += c
        own[thread][frames[-1]] += c
        for f in set(frames):
            incl[thread][f] += c
    return {t: (own[t].most_common(n), incl[t].most_common(n * 2), total[t]) for t in total}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--py-spy", metavar="DIR", help="also sample every process with py-spy into DIR")
    ap.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    opts = ap.parse_args()
    import dsage_core as dsage
    with tempfile.TemporaryDirectory(prefix="dsage-prof-") as tmp:
        D = dsage.start_all(workers=2, home=Path(tmp) / "home")
        try:
            D.map(bj.noop, range(2000))[-1].wait(60)  # warm: children started, function cached
            server, monitor = (p.pid for p in D.cluster.procs)
            procs = {"client": os.getpid(), "server": server, "monitor": monitor}
            for i, c in enumerate(sorted(children_of(monitor))):
                procs[f"child{i}"] = c
            spies = []
            if opts.py_spy:
                outdir = Path(opts.py_spy)
                outdir.mkdir(parents=True, exist_ok=True)
                spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
                for name, pid in procs.items():
                    spies.append((name, outdir / f"{name}.txt", subprocess.Popen(
                        [spy, "record", "--pid", str(pid), "--format", "raw", "--threads", *([] if os.environ.get("SPY_BLOCKING") else ["--nonblocking"]),
                         "--rate", str(opts.rate), "--output", str(outdir / f"{name}.txt")],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)))
                time.sleep(1.0)  # let py-spy attach before the measured rounds
            before = {n: cpu_seconds(p) for n, p in procs.items()}
            tbefore = {n: thread_cpu(p) for n, p in procs.items()}
            rates = []
            t_all = time.perf_counter()
            for _ in range(opts.rounds):
                rates.append(loops.w1_round(D, N1))
            wall = time.perf_counter() - t_all
            after = {n: cpu_seconds(p) for n, p in procs.items()}
            tafter = {n: thread_cpu(p) for n, p in procs.items()}
            for _name, _out, p in spies:
                p.send_signal(2)  # SIGINT: py-spy writes its file and exits
            for _name, _out, p in spies:
                p.wait(30)
        finally:
            D.shutdown()
    njobs = N1 * opts.rounds
    total = 0.0
    print(f"W1 rounds: {', '.join(f'{r:,.0f}' for r in rates)} jobs/s; wall {wall * 1e6 / njobs:.1f} us/job")
    print(f"{'process':<9} {'CPU us/job':>10}")
    for n in procs:
        us = (after[n] - before[n]) * 1e6 / njobs
        total += us
        threads = sorted(((tafter[n][t] - tbefore[n].get(t, 0.0)) * 1e6 / njobs, t)
                         for t in tafter[n])
        detail = "  ".join(f"{'main' if t == procs[n] else 'thread'}:{u:.1f}" for u, t in reversed(threads) if u >= 0.5)
        print(f"{n:<9} {us:>10.1f}   {detail}")
    print(f"{'total':<9} {total:>10.1f}")
    for name, out, _p in spies:
        if not out.exists():
            print(f"\n{name}: no py-spy output")
            continue
        for thread, (own, incl, samples) in top_functions(out).items():
            if samples < 20:
                continue
            print(f"\n== {name} / {thread}: {samples} busy samples; own time")
            for f, c in own:
                print(f"  {100 * c / samples:5.1f}%  {f}")
            print(f"-- {name} / {thread}: inclusive")
            for f, c in incl:
                print(f"  {100 * c / samples:5.1f}%  {f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
