"""What each latency trick buys: W1, W2 and W3 under the normal policy, the plain one, and the
normal policy with one trick off (``DSAGE_LATENCY_OFF``), as ratios against multiprocessing.Pool(2)
measured in the same round. Rounds alternate every variant (the machine is shared: a single run
swings by tens of percent); medians of the rounds are printed.

    .venv/bin/python bench/latency.py [--rounds 3] [--tricks a,b]   (minutes; not in make bench)
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import jobs as bj  # noqa: E402
import cloudpickle  # noqa: E402

cloudpickle.register_pickle_by_value(bj)

N1, N2, N3 = 10_000, 200, 200


def _pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def pool_figures() -> dict[str, float]:
    """W1, W2 p50 and W3 of multiprocessing.Pool(2), chunksize=1 (as bench/run.py)."""
    import multiprocessing as mp
    with mp.get_context("spawn").Pool(2) as pool:
        pool.apply(bj.noop, (0,))
        t = time.perf_counter()
        pool.map(bj.noop, range(N1), chunksize=1)
        r = {"W1": N1 / (time.perf_counter() - t)}
        lat = []
        for i in range(N2):
            t = time.perf_counter()
            pool.apply(bj.noop, (i,))
            lat.append((time.perf_counter() - t) * 1000)
        r["W2"] = _pct(lat, 50)
        t = time.perf_counter()
        cpu = sum(pool.map(bj.spin, [0.02] * N3, chunksize=1))
        r["W3"] = 100 * cpu / ((time.perf_counter() - t) * 2)
    return r


def dsage_figures(home: Path) -> dict[str, float]:
    """W1, W2 p50 and W3 of a fresh start_all under this process's latency policy."""
    import dsage_core as dsage
    D = dsage.start_all(workers=2, home=home)
    try:
        D.map(bj.noop, range(200))[-1].wait(60)  # warm the pipeline once
        t = time.perf_counter()
        jobs = D.map(bj.noop, range(N1))
        for _ in dsage.as_completed(jobs):
            pass
        r = {"W1": N1 / (time.perf_counter() - t)}
        lat = []
        for i in range(N2):
            t = time.perf_counter()
            D.submit(bj.noop, i).wait(30)
            lat.append((time.perf_counter() - t) * 1000)
        r["W2"] = _pct(lat, 50)
        t = time.perf_counter()
        jobs = D.map(bj.spin, [0.02] * N3)
        cpu = sum(j.wait(120).result for j in jobs)
        r["W3"] = 100 * cpu / ((time.perf_counter() - t) * 2)
    finally:
        D.shutdown()
    return r


def run_variant(variant: str) -> dict[str, float]:
    """Measure *variant* ("pool", "normal", "plain" or "-TRICK") in a fresh interpreter."""
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    env.pop("DSAGE_LATENCY_OFF", None)
    env["DSAGE_LATENCY"] = "plain" if variant == "plain" else "normal"
    if variant.startswith("-"):
        env["DSAGE_LATENCY_OFF"] = variant[1:]
    out = subprocess.run([sys.executable, __file__, f"--one={variant}"], env=env, capture_output=True,
                         text=True, timeout=900)
    if out.returncode:
        raise RuntimeError(f"{variant}: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--tricks", help="comma-separated tricks to turn off one at a time (default: all)")
    ap.add_argument("--json", help="also write the raw figures here")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    opts = ap.parse_args()
    if opts.one:
        if opts.one == "pool":
            r = pool_figures()
        else:
            with tempfile.TemporaryDirectory(prefix="dsage-latbench-") as tmp:
                r = dsage_figures(Path(tmp) / "home")
        print(json.dumps(r))
        return 0
    from dsage_core.latency import TRICKS
    tricks = opts.tricks.split(",") if opts.tricks else list(TRICKS)
    variants = ["normal", "plain"] + [f"-{t}" for t in tricks]
    ratios: dict[str, list[dict[str, float]]] = {v: [] for v in variants}
    raw: list[dict[str, dict[str, float]]] = []
    for rnd in range(opts.rounds):
        base = run_variant("pool")
        row = {"pool": base}
        for v in variants:
            r = run_variant(v)
            row[v] = r
            ratios[v].append({k: r[k] / base[k] for k in r})
            print(f"round {rnd + 1} {v:<18} W1 {r['W1']:8.0f}/s  W2 {r['W2']:6.2f} ms  W3 {r['W3']:5.1f} %"
                  f"   (pool W1 {base['W1']:.0f} W2 {base['W2']:.2f} W3 {base['W3']:.1f})", flush=True)
        raw.append(row)
    print(f"\nmedians of {opts.rounds} rounds, each a ratio to Pool(2) in its round "
          "(W1, W3: higher is better; W2 p50: lower is better)")
    print(f"{'variant':<18} {'W1/pool':>8} {'W2/pool':>8} {'W3/pool':>8}")
    for v in variants:
        med = {k: statistics.median(x[k] for x in ratios[v]) for k in ("W1", "W2", "W3")}
        print(f"{v:<18} {med['W1']:8.3f} {med['W2']:8.3f} {med['W3']:8.3f}")
    if opts.json:
        Path(opts.json).write_text(json.dumps(raw, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
