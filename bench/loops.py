"""The measured loops, written once: ``bench/run.py``, ``profile_w1.py`` and ``multihost.py`` use them.

W1 is 10,000 no-op jobs submitted with ``D.map`` and gathered with ``as_completed`` (every job
durable); its baseline is ``multiprocessing.Pool(2).map(noop, ..., chunksize=1)``. W2 is sequential
round trips of one tiny job.
"""
from __future__ import annotations

import time

import jobs as bj

N1, N2 = 10_000, 200


def w1_round(D, n: int = N1) -> float:
    """One W1 round on client *D*: jobs/s."""
    import dsage_core as dsage
    t = time.perf_counter()
    jobs = D.map(bj.noop, range(n))
    for _j in dsage.as_completed(jobs):
        pass
    rate = n / (time.perf_counter() - t)
    assert all(j.status == "completed" for j in jobs)
    return rate


def w1e_round(D, n: int = N1) -> float:
    """W1 through ``D.executor().map``: jobs/s."""
    t = time.perf_counter()
    list(D.executor().map(bj.noop, range(n)))
    return n / (time.perf_counter() - t)


def pool_w1_round(pool, n: int = N1) -> float:
    """W1's baseline round on a ``multiprocessing.Pool``: jobs/s."""
    t = time.perf_counter()
    pool.map(bj.noop, range(n), chunksize=1)
    return n / (time.perf_counter() - t)


def w2_latencies(D, n: int = N2, timeout: float = 30) -> list[float]:
    """*n* sequential round trips of one no-op job on *D* (ms each)."""
    lat = []
    for i in range(n):
        t = time.perf_counter()
        D.submit(bj.noop, i).wait(timeout)
        lat.append((time.perf_counter() - t) * 1000)
    return lat


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]
