"""``make bench``: dsage against a multiprocessing.Pool(2) baseline measured in the same run.

W1  10,000 no-op jobs submitted then gathered (jobs/s; every job durable in SQLite): three rounds
    alternating with the baseline's (Pool, dsage, Pool, dsage, ...); the medians of each side
W1e the same through ``D.executor().map`` (median of 3, in the same alternation)
W2  200 sequential round trips of one tiny job (p50 / p99 ms)
W3  200 jobs of ~20 ms pure-Python CPU (efficiency = job CPU / wall / slots)
W4  100 jobs each returning 1 MiB (MiB/s)
W5  cold ``start_all`` to first result, in a fresh interpreter (s)

Figures are printed as one table; the ratio column is dsage / baseline (higher is better for
rates, lower is better for times).

``--store postgresql://...`` adds W1 on that (empty) PostgreSQL database, measured in the same run
as W1 on SQLite (the server gets the URL through ``DSAGE_STORE``); ``--w1-only`` skips the rest.
"""
from __future__ import annotations

import json
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import jobs as bj  # noqa: E402  (job functions importable by pool workers)
import loops  # noqa: E402  (the measured loops, shared with profile_w1.py and multihost.py)
import cloudpickle  # noqa: E402

cloudpickle.register_pickle_by_value(bj)  # dsage children do not have bench/ on their path

N1, N2, N3, N4 = loops.N1, loops.N2, 200, 100
ROUNDS = 3  #: W1 / W1e alternations (medians are printed)


def open_pool():
    """The baseline: a spawn ``multiprocessing.Pool(2)``, warmed; returns (pool, W5 seconds)."""
    t0 = time.perf_counter()
    pool = mp.get_context("spawn").Pool(2)
    pool.apply(bj.noop, (0,))
    return pool, time.perf_counter() - t0


def baseline_rest(pool) -> dict[str, float]:
    """W2-W4 of the baseline *pool* (its W1 alternates with dsage's in :func:`alternate_w1`)."""
    r: dict[str, float] = {}
    lat = []
    for i in range(N2):
        t = time.perf_counter()
        pool.apply(bj.noop, (i,))
        lat.append((time.perf_counter() - t) * 1000)
    r["W2p50"], r["W2p99"] = loops.pct(lat, 50), loops.pct(lat, 99)
    t = time.perf_counter()
    cpu = sum(pool.map(bj.spin, [0.02] * N3, chunksize=1))
    r["W3"] = 100 * cpu / ((time.perf_counter() - t) * 2)
    t = time.perf_counter()
    total = sum(len(b) for b in pool.map(bj.mib, range(N4), chunksize=1))
    r["W4"] = total / 2**20 / (time.perf_counter() - t)
    return r


def alternate_w1(D, pool, executor: bool = True) -> tuple[dict[str, float], dict[str, float]]:
    """W1 (and W1e) of client *D* and W1 of *pool*, alternating round by round (Pool, dsage,
    dsage executor; three times): on a shared VM one run of ~1 s swings by tens of percent, so
    each side's median comes from the same minutes. Returns (dsage figures, baseline figures)."""
    D.submit(bj.noop, 0).wait(60)
    D.map(bj.noop, range(200))[-1].wait(60)  # warm the pipeline once
    base, w1, w1e = [], [], []
    for _ in range(ROUNDS):
        base.append(loops.pool_w1_round(pool))
        w1.append(loops.w1_round(D))
        if executor:
            w1e.append(loops.w1e_round(D))
    ours = {"W1": statistics.median(w1), "W1_rounds": w1}
    if w1e:
        ours["W1e"] = statistics.median(w1e)
    return ours, {"W1": statistics.median(base), "W1_rounds": base}


def w1_only(home: Path, pool, store: str | None = None) -> tuple[dict[str, float], dict[str, float]]:
    """W1 of a fresh start_all whose server keeps its jobs in *store* (None: SQLite), alternating
    with *pool*."""
    import dsage_core as dsage
    old = os.environ.get("DSAGE_STORE")
    if store:
        os.environ["DSAGE_STORE"] = store
    try:
        D = dsage.start_all(workers=2, home=home)
    finally:
        if old is None:
            os.environ.pop("DSAGE_STORE", None)
        else:
            os.environ["DSAGE_STORE"] = old
    try:
        return alternate_w1(D, pool, executor=False)
    finally:
        D.shutdown()


def dsage_figures(home: Path, pool) -> tuple[dict[str, float], dict[str, float]]:
    """Every dsage figure but W5, and the baseline's W1 measured alternating with dsage's."""
    import dsage_core as dsage
    D = dsage.start_all(workers=2, home=home)
    try:
        r, base = alternate_w1(D, pool)
        lat = loops.w2_latencies(D, N2)
        r["W2p50"], r["W2p99"] = loops.pct(lat, 50), loops.pct(lat, 99)
        t = time.perf_counter()
        jobs = D.map(bj.spin, [0.02] * N3)
        cpu = sum(j.wait(120).result for j in jobs)
        r["W3"] = 100 * cpu / ((time.perf_counter() - t) * 2)
        t = time.perf_counter()
        jobs = D.map(bj.mib, range(N4))
        total = sum(len(j.wait(120).result) for j in jobs)
        r["W4"] = total / 2**20 / (time.perf_counter() - t)
    finally:
        D.shutdown()
    return r, base


def cold_start(home: Path) -> float:
    code = ("import time; t=time.perf_counter(); import dsage_core as d; "
            f"D=d.start_all(workers=2, home={str(home)!r}); D('1').wait(60); "
            "print(time.perf_counter()-t); D.shutdown()")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    if out.returncode:
        raise RuntimeError(out.stderr)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> int:
    import argparse
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--store", help="also measure W1 on this empty PostgreSQL database (postgresql://...)")
    ap.add_argument("--w1-only", action="store_true", help="W1 only (SQLite, and --store if given)")
    opts = ap.parse_args()
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    pool, pool_w5 = open_pool()
    try:
        with tempfile.TemporaryDirectory(prefix="dsage-bench-") as tmp:
            if opts.w1_only:
                ours, base = w1_only(Path(tmp) / "home", pool)
            else:
                ours, base = dsage_figures(Path(tmp) / "home", pool)
                base.update(baseline_rest(pool), W5=pool_w5)
                cold_start(Path(tmp) / "cold")  # first run creates keys and certificates
                ours["W5"] = min(cold_start(Path(tmp) / "cold") for _ in range(2))
            if opts.store:
                pg, pg_base = w1_only(Path(tmp) / "pg", pool, opts.store)
                ours["W1pg"], base["W1pg"] = pg["W1"], pg_base["W1"]
    finally:
        pool.terminate()
        pool.join()
    rows = [("W1  10k no-op jobs", "jobs/s", "W1", True),
            ("W1  on PostgreSQL (--store)", "jobs/s", "W1pg", True),
            ("W1e executor().map", "jobs/s", "W1e", True),
            ("W2  round trip p50", "ms", "W2p50", False), ("W2  round trip p99", "ms", "W2p99", False),
            ("W3  20 ms CPU jobs", "% eff.", "W3", True), ("W4  1 MiB results", "MiB/s", "W4", True),
            ("W5  cold start to 1st result", "s", "W5", False)]
    print(f"{'workload':<30} {'unit':<7} {'dsage':>10} {'mp.Pool(2)':>11} {'ratio':>7}")
    for label, unit, key, _ in rows:
        if key not in ours:
            continue
        b = base.get(key if key == "W1pg" else "W1" if key == "W1e" else key)
        ratio = ours[key] / b if b else float("nan")
        print(f"{label:<30} {unit:<7} {ours[key]:>10.2f} {b or float('nan'):>11.2f} {ratio:>7.3f}")
    print("W1 rounds, alternating: " + ", ".join(
        f"Pool {b:,.0f} / dsage {d:,.0f}" for b, d in zip(base["W1_rounds"], ours["W1_rounds"])))
    if opts.w1_only:
        return 0
    Path("bench/results").mkdir(parents=True, exist_ok=True)
    Path("bench/results/latest.json").write_text(json.dumps({"dsage": ours, "baseline": base}, indent=1))
    gui = Path(__file__).with_name("gui_lag.py")
    if gui.exists():
        subprocess.run([sys.executable, str(gui)], check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
