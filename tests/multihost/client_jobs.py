"""The client of the multi-host bed: a user's script, run on the client host with its own home.

``python client_jobs.py map N SECONDS [chatty]`` connects with ``dsage.connect()`` (DSAGE_HOME's
furl file and key), submits ``D.map(where, range(N), [SECONDS] * N)``, prints ``submitted [ids]``,
waits for every job and prints ``done [[id, status, attempts, result], ...]`` (JSON): each job's
result is ``[i, addresses of the host it ran on]``. With ``chatty`` each job prints a line every
20 ms while it sleeps (its worker reports all the time).

``python client_jobs.py rtt K`` runs K jobs one after another and prints ``rtt [ms, ...]``: the
round trip of each, submit to result, as the client sees it.
"""
from __future__ import annotations

import json
import sys
import time


def where(i: int, seconds: float, chatty: bool = False) -> list:
    """Sleep *seconds* (printing meanwhile if *chatty*), then say which host ran job *i* (its IPv4
    addresses but loopback)."""
    import time as t
    import psutil
    end = t.monotonic() + seconds
    while chatty and t.monotonic() < end:
        print(f"job {i} still here", flush=True)
        t.sleep(0.02)
    t.sleep(max(0.0, end - t.monotonic()))
    return [i, sorted(a.address for ifs in psutil.net_if_addrs().values() for a in ifs
                      if a.family == 2 and a.address != "127.0.0.1")]


def main(argv: list[str]) -> int:
    import dsage_core as dsage
    D = dsage.connect(timeout=30)
    try:
        if argv[0] == "map":
            n, seconds, chatty = int(argv[1]), float(argv[2]), argv[3:] == ["chatty"]
            jobs = D.map(where, range(n), [seconds] * n, [chatty] * n)
            print("submitted", json.dumps([j.id for j in jobs]), flush=True)
            jobs.wait(120, progress=False)
            print("done", json.dumps([[j.id, j.status, j.attempts, j.result] for j in jobs]), flush=True)
        elif argv[0] == "rtt":
            times = []
            for i in range(int(argv[1])):
                t = time.perf_counter()
                assert D.submit(abs, -i).wait(60).result == i
                times.append((time.perf_counter() - t) * 1000)
            print("rtt", json.dumps(times), flush=True)
        else:
            raise SystemExit(f"unknown mode {argv[0]!r}")
    finally:
        D.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
