"""Distributed factoring of a list of integers, keeping N jobs in flight.

    .venv/bin/python examples/factor.py [--sage]

Uses Sage's ``factor`` on workers that can run Sage (``--sage``), else a pure-Python Pollard rho.
"""
from __future__ import annotations

import argparse
import math
import random
import sys

import dsage_core as dsage


def pollard_factor(n: int) -> list[int]:
    """Prime factors of n (with multiplicity), pure Python: trial division + Pollard rho."""
    out: list[int] = []
    for p in (2, 3, 5, 7, 11, 13):
        while n % p == 0:
            out.append(p)
            n //= p
    stack = [n] if n > 1 else []
    while stack:
        m = stack.pop()
        if _is_prime(m):
            out.append(m)
            continue
        d = _rho(m)
        stack += [d, m // d]
    return sorted(out)


def _is_prime(n: int) -> bool:
    if n < 2:
        return False
    for p in (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37):
        if n % p == 0:
            return n == p
    d, s = n - 1, 0
    while d % 2 == 0:
        d, s = d // 2, s + 1
    for a in (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37):
        x = pow(a, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(s - 1):
            x = x * x % n
            if x == n - 1:
                break
        else:
            return False
    return True


def _rho(n: int) -> int:
    if n % 2 == 0:
        return 2
    rng = random.Random(n)
    while True:
        x = y = rng.randrange(2, n)
        c, d = rng.randrange(1, n), 1
        while d == 1:
            x = (x * x + c) % n
            y = (y * y + c) % n
            y = (y * y + c) % n
            d = math.gcd(abs(x - y), n)
        if d != n:
            return d


class Factorer(dsage.DistributedFunction):
    """Factor every number of a list with at most `in_flight` jobs running."""

    def __init__(self, numbers: list[int], in_flight: int = 4, sage: bool = False) -> None:
        super().__init__()
        self.todo = list(numbers)
        self.in_flight = in_flight
        self.sage = sage
        self.factors: dict[int, list[int]] = {}

    def _next(self) -> None:
        while self.todo and self.outstanding < self.in_flight:
            n = self.todo.pop()
            if self.sage:
                self.eval(f"DSAGE_RESULT = [int(p) for p, e in factor({n}) for _ in range(e)]",
                          tag=str(n), kind="sage")
            else:
                self.submit(pollard_factor, n, tag=str(n))

    def start(self) -> None:
        self.result = self.factors  # filled in as jobs finish; run() ends when none is outstanding
        self._next()

    def process_result(self, job: dsage.Job) -> None:
        self.factors[int(self.tag_of(job))] = job.result
        self._next()

    def process_failure(self, job: dsage.Job) -> None:
        super().process_failure(job)
        self._next()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sage", action="store_true", help="use Sage's factor (needs dsage[sage])")
    ap.add_argument("--count", type=int, default=12)
    args = ap.parse_args()
    rng = random.Random(2026)
    numbers = [rng.randrange(10**20, 10**24) for _ in range(args.count)]
    D = dsage.start_all(workers=2)
    try:
        f = Factorer(numbers, sage=args.sage)
        result = f.run(D, timeout=600)
        for n in numbers:
            fs = result.get(n)
            assert fs is None or math.prod(fs) == n
            print(f"{n} = {' * '.join(map(str, fs)) if fs else '?'}")
        if f.failures:
            print(f.error_report, file=sys.stderr)
    finally:
        D.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
