"""``make bench-million``: a million no-op jobs through one client and one server (issue 18: cost
that stays flat as work grows). Not part of ``make test`` nor of ``make bench`` (minutes of a machine).

For every step of jobs (default 100,000; ``--jobs`` / ``--step`` or DSAGE_BENCH_JOBS / _STEP):
  * throughput of that step (jobs/s, submit to the last result; it must not fall as the history grows),
  * the client's RSS and the states it keeps once the step's handles are dropped (flat: ~0 states),
  * the server's RSS and the database size per 100k stored jobs.
Then, on the whole history: the time of ``dsage jobs`` (run as typed, default and ``--limit 100000``)
and of filling the desktop app's jobs table (offscreen, a separate process: the window loads the
newest ``max_list`` = 100,000 jobs, the cap of one list call).

Per step also the CPU seconds the server and the client spent per 1,000 jobs (where a falling
throughput goes), and the client's allocated blocks (``sys.getallocatedblocks``: flat if nothing
leaks, even when RSS is not). ``--profile DIR`` records the server with py-spy during every step
(``DIR/server-step-N.txt``, collapsed stacks; compare the first step's with the last's).

Usage: ``python bench/million.py [--jobs 1000000] [--step 100000] [--workers 2] [--profile DIR]``;
results go to stdout and ``bench/results/million.json``.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import jobs as bj  # noqa: E402
import cloudpickle  # noqa: E402

cloudpickle.register_pickle_by_value(bj)  # dsage children do not have bench/ on their path
HERE = Path(__file__).resolve().parent


def rss_mib(pid: int | None = None) -> float:
    import psutil
    return psutil.Process(pid).memory_info().rss / 2**20


def db_mib(home: Path) -> tuple[float, float]:
    """The SQLite database file, and its WAL (with the shared-memory file), in MiB."""
    from dsage_core.home import DATABASE
    main = (home / DATABASE).stat().st_size
    wal = sum(p.stat().st_size for p in home.glob(DATABASE + "-*"))
    return main / 2**20, wal / 2**20


def cpu_s(pid: int | None = None) -> float:
    import psutil
    t = psutil.Process(pid).cpu_times()
    return t.user + t.system


def start_profile(pid: int, out: Path):
    """py-spy recording *pid* until :func:`stop_profile` (collapsed stacks in *out*)."""
    spy = Path(sys.executable).parent / "py-spy"
    return subprocess.Popen([str(spy), "record", "--pid", str(pid), "--rate", "50", "--format", "raw",
                             "--output", str(out), "--nonblocking"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop_profile(p) -> None:
    import signal
    p.send_signal(signal.SIGINT)
    try:
        p.wait(60)
    except subprocess.TimeoutExpired:
        p.kill()


def run_steps(D, server_pid: int, home: Path, total: int, step: int, profile: Path | None = None) -> list[dict]:
    """Submit *total* no-op jobs in steps; after each, drop its handles and measure."""
    import dsage_core as dsage
    rows, done = [], 0
    while done < total:
        n = min(step, total - done)
        spy = start_profile(server_pid, profile / f"server-step-{len(rows) + 1}.txt") if profile else None
        srv_cpu, cli_cpu = cpu_s(server_pid), cpu_s()
        t = time.perf_counter()
        jobs = D.map(bj.noop, range(n))
        finished = sum(1 for _ in dsage.as_completed(jobs, timeout=3600))   # holds no handle after
        rate = n / (time.perf_counter() - t)
        srv_cpu, cli_cpu = cpu_s(server_pid) - srv_cpu, cpu_s() - cli_cpu
        if spy is not None:
            stop_profile(spy)
        bad = sum(j.status != "completed" for j in jobs)
        del jobs
        D.stats()   # a round trip: the reactor thread is done with the step's updates
        gc.collect()
        done += n
        db, wal = db_mib(home)
        rows.append({"stored": done, "jobs_per_s": round(rate, 1), "not_completed": bad + n - finished,
                     "client_rss_mib": round(rss_mib(), 1), "client_states": D.aclient.state_count(),
                     "client_objects": len(gc.get_objects()),   # what the collector tracks: flat if nothing leaks
                     "client_blocks": sys.getallocatedblocks(),   # every small allocation, tracked or not
                     "server_cpu_ms_per_1k": round(1000 * srv_cpu * 1000 / n, 1),
                     "client_cpu_ms_per_1k": round(1000 * cli_cpu * 1000 / n, 1),
                     "server_rss_mib": round(rss_mib(server_pid), 1), "db_mib": round(db, 1),
                     "wal_mib": round(wal, 1)})
        print(_row(rows[-1]), flush=True)
    return rows


def _row(r: dict) -> str:
    return (f"{r['stored']:>9,} stored  {r['jobs_per_s']:>8.0f} jobs/s  client {r['client_rss_mib']:>6.0f} MiB "
            f"({r['client_states']} states, {r['client_objects']:,} objects, {r['client_blocks']:,} blocks)  "
            f"server {r['server_rss_mib']:>6.0f} MiB  db {r['db_mib']:>7.1f} MiB + wal {r['wal_mib']:.1f} MiB  "
            f"cpu/1k jobs: server {r['server_cpu_ms_per_1k']:.0f} ms, client {r['client_cpu_ms_per_1k']:.0f} ms")


def time_cli(home: Path, *extra: str) -> float:
    """Wall time of ``dsage jobs`` as a user types it (a fresh interpreter, connect included)."""
    dsage_bin = Path(sys.executable).parent / "dsage"
    t = time.perf_counter()
    out = subprocess.run([str(dsage_bin), "jobs", "--home", str(home), *extra], capture_output=True, text=True,
                         timeout=600)
    dt = time.perf_counter() - t
    if out.returncode:
        raise RuntimeError(out.stderr[-2000:])
    return dt


def time_gui_fill(home: Path, furl: str) -> dict:
    """Fill the desktop app's jobs table from the history, in a separate offscreen process."""
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen",
               DSAGE_SETTINGS_DIR=tempfile.mkdtemp(prefix="dsage-million-settings-"))
    out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--gui-fill", str(home), furl],
                         capture_output=True, text=True, timeout=1800, env=env)
    if out.returncode:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def gui_fill_main(home: str, furl: str) -> int:
    """(Child process) open the app's main window on *furl* and time its jobs table's fill."""
    sys.path.insert(0, str(HERE.parent))
    from dsage_gui.app import bootstrap
    app, loop, reactor = bootstrap(offscreen=True)
    from dsage_core.limits import Limits
    from dsage_gui.session import open_session
    from dsage_gui.main_window import MainWindow
    out: dict = {}

    def start(_r) -> None:
        t0 = time.perf_counter()
        d = open_session(reactor, server=furl, home=home)

        def opened(session) -> None:
            t1 = time.perf_counter()
            win = MainWindow(session)
            win.show()
            model = win.jobs_pane.model
            want = min(int(os.environ.get("DSAGE_BENCH_STORED", "0")) or Limits().max_list, Limits().max_list)

            def check() -> None:
                if model.rowCount() >= want and not model._pending:
                    out.update(connect_s=round(t1 - t0, 2), fill_s=round(time.perf_counter() - t1, 2),
                               rows=model.rowCount(), gui_rss_mib=round(rss_mib(), 1))
                    win.quit_confirmed = True
                    session.close().addBoth(lambda _: reactor.stop())
                else:
                    reactor.callLater(0.05, check)
            check()
        d.addCallbacks(opened, lambda f: (out.update(error=f.getErrorMessage()), reactor.stop()))
    reactor.callWhenRunning(start, reactor)
    reactor.run()
    print(json.dumps(out))
    return 0 if "error" not in out else 1


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--jobs", type=int, default=int(os.environ.get("DSAGE_BENCH_JOBS", 1_000_000)))
    p.add_argument("--step", type=int, default=int(os.environ.get("DSAGE_BENCH_STEP", 100_000)))
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--profile", type=Path, metavar="DIR", help="record the server with py-spy in every step")
    p.add_argument("--gui-fill", nargs=2, metavar=("HOME", "FURL"), help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.gui_fill:
        return gui_fill_main(*a.gui_fill)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    import dsage_core as dsage
    from dsage_core.cluster import LocalCluster
    with tempfile.TemporaryDirectory(prefix="dsage-million-") as tmp:
        home = Path(tmp) / "home"
        cluster = LocalCluster.spawn(home, a.workers)
        D = dsage.connect(cluster.furl, home=home, timeout=60)
        try:
            D.submit(bj.noop, 0).wait(60)
            print(f"{a.jobs:,} no-op jobs in steps of {a.step:,}, {a.workers} worker slots", flush=True)
            if a.profile:
                a.profile.mkdir(parents=True, exist_ok=True)
            rows = run_steps(D, cluster.procs[0].pid, home, a.jobs, a.step, a.profile)
            history = {"dsage_jobs_s": round(time_cli(home), 2),
                       "dsage_jobs_limit_100k_s": round(time_cli(home, "--limit", "100000"), 2)}
            os.environ["DSAGE_BENCH_STORED"] = str(a.jobs + 1)
            history.update(time_gui_fill(home, cluster.furl))
        finally:
            D.shutdown()
            cluster.stop()
    per100k = [{"stored": r["stored"], "db_mib_per_100k": round(r["db_mib"] * 100_000 / r["stored"], 1),
                "server_rss_mib": r["server_rss_mib"]} for r in rows]
    first, last = rows[0]["jobs_per_s"], rows[-1]["jobs_per_s"]
    print(f"throughput first/last step: {first:.0f} / {last:.0f} jobs/s ({100 * (last / first - 1):+.0f} %)")
    print(f"history of {a.jobs + 1:,} jobs: dsage jobs {history['dsage_jobs_s']} s, "
          f"--limit 100000 {history['dsage_jobs_limit_100k_s']} s; app table: {history.get('rows')} rows "
          f"in {history.get('fill_s')} s after connecting in {history.get('connect_s')} s "
          f"(app RSS {history.get('gui_rss_mib')} MiB)")
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "million.json").write_text(json.dumps(
        {"jobs": a.jobs, "step": a.step, "workers": a.workers, "steps": rows, "per_100k": per100k,
         "history": history}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
