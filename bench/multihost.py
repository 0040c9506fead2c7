"""``make bench`` across hosts: W1 and W2 over a 20 ms link beside loopback, in one run (root only).

W1  10,000 no-op jobs through ``D.map``, gathered with ``as_completed`` (jobs/s, median of 3)
W2  200 sequential round trips of one tiny job, submit to result (p50 / p99 ms)

Three settings, the same 2 worker slots in each:
  loopback  ``start_all(workers=2)``: server, worker and client on one home (``make bench``'s W1/W2)
  LAN       network namespaces (tests/multihost): the client on one host, a worker with 2 slots on
            another, the server on a third; TCP + TLS (Foolscap) over veth pairs, no delay
  20 ms     the same hosts, every worker and client connection through a delaying relay on a
            fourth host that holds each chunk 10 ms each way: 20 ms round-trip time

Namespaces need root: as another user this prints ``skipped: needs root`` and exits 0. Figures are
printed as one table and written to bench/results/multihost.json.
"""
from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
import jobs as bj  # noqa: E402
import loops  # noqa: E402
import cloudpickle  # noqa: E402

cloudpickle.register_pickle_by_value(bj)  # dsage children do not have bench/ on their path

# smaller counts for a quick check of this script (the figures reported use the defaults)
N1 = int(os.environ.get("DSAGE_BENCH_MH_N1", 10_000))
N2 = int(os.environ.get("DSAGE_BENCH_MH_N2", 200))
ROUNDS = 3
DELAY_MS = 10   #: each way: a 20 ms round-trip time


def figures(D) -> dict[str, float]:
    """W1 and W2 on a connected client (the same loops as bench/run.py)."""
    D.submit(bj.noop, 0).wait(120)
    D.map(bj.noop, range(200))[-1].wait(120)   # warm the pipeline once
    w1 = [loops.w1_round(D, N1) for _ in range(ROUNDS)]
    lat = loops.w2_latencies(D, N2, timeout=60)
    return {"W1": statistics.median(w1), "W1_rounds": w1,
            "W2p50": loops.pct(lat, 50), "W2p99": loops.pct(lat, 99)}


def client_main() -> int:
    """``--client``: run on the client host (DSAGE_HOME: its home, with the furl file and key)."""
    import dsage_core as dsage
    D = dsage.connect(timeout=60)
    try:
        print("figures " + json.dumps(figures(D)), flush=True)
    finally:
        D.shutdown()
    return 0


def loopback(tmp: Path) -> dict[str, float]:
    import dsage_core as dsage
    D = dsage.start_all(workers=2, home=tmp / "loopback")
    try:
        return figures(D)
    finally:
        D.shutdown()


def across(tmp: Path, delay_ms: float | None) -> dict[str, float]:
    """The client host runs this script with ``--client`` against a bed of one worker host (2 slots)."""
    from tests.multihost.bed import Bed, read_json_line
    from tests.multihost.netns import Lan
    lan = Lan(tmp / f"bed-{delay_ms}")
    try:
        bed = Bed(lan, workers=1, slots=2, delay_ms=delay_ms).start()
        p = bed.client.start(sys.executable, str(Path(__file__).resolve()), "--client", log="client.log")
        r = read_json_line(p, "figures", 900, "the client's figures\n" + bed.logs())
        p.wait(60)
        bed.srv.disconnect()
        return r
    finally:
        lan.close()


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--client":
        return client_main()
    if not sys.platform.startswith("linux") or os.geteuid() != 0:
        print("multi-host figures skipped: needs root (network namespaces)")
        return 0
    sys.path.insert(0, str(ROOT))
    from tests.multihost import netns
    try:
        netns.check_available()
    except netns.NetnsUnavailable as e:
        print(f"multi-host figures skipped: {e}")
        return 0
    with tempfile.TemporaryDirectory(prefix="dsage-bench-mh-") as d:
        tmp = Path(d)
        os.environ["DSAGE_HOME"] = str(tmp / "home")   # never the user's own home
        out = {"loopback": loopback(tmp), "LAN": across(tmp, None), "20 ms RTT": across(tmp, DELAY_MS)}
    cols = list(out)
    print(f"{'across hosts':<30} {'unit':<7} " + " ".join(f"{c:>10}" for c in cols))
    for label, unit, key in (("W1  10k no-op jobs (D.map)", "jobs/s", "W1"),
                             ("W2  round trip p50", "ms", "W2p50"), ("W2  round trip p99", "ms", "W2p99")):
        print(f"{label:<30} {unit:<7} " + " ".join(f"{out[c][key]:>10.2f}" for c in cols))
    res = ROOT / "bench" / "results"
    res.mkdir(parents=True, exist_ok=True)
    (res / "multihost.json").write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
