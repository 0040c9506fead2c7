"""Adaptive search: a work unit that times out is split into finer units.

Find every n in [lo, hi) whose Collatz trajectory is longer than a threshold. Units are ranges;
a unit that exceeds its timeout is split in two and resubmitted (down to a minimum size).

    .venv/bin/python examples/adaptive_search.py [--hi 300000] [--timeout 1.0]
"""
from __future__ import annotations

import argparse
import sys

import dsage_core as dsage


def long_collatz(lo: int, hi: int, threshold: int) -> list[int]:
    """Numbers in [lo, hi) whose Collatz trajectory has more than `threshold` steps."""
    found = []
    for n in range(max(lo, 1), hi):
        steps, m = 0, n
        while m != 1:
            m = m // 2 if m % 2 == 0 else 3 * m + 1
            steps += 1
        if steps > threshold:
            found.append(n)
    return found


class AdaptiveSearch(dsage.DistributedFunction):
    def __init__(self, lo: int, hi: int, threshold: int, unit: int, timeout: float, min_unit: int = 500):
        super().__init__()
        self.lo, self.hi, self.threshold = lo, hi, threshold
        self.unit, self.min_unit = unit, min_unit
        self.job_options = {"timeout": timeout}
        self.found: list[int] = []
        self.splits = 0

    def _unit(self, a: int, b: int) -> None:
        self.submit(long_collatz, a, b, self.threshold, tag=f"{a}:{b}")

    def start(self) -> None:
        self.result = self.found
        for a in range(self.lo, self.hi, self.unit):
            self._unit(a, min(self.hi, a + self.unit))

    def process_result(self, job: dsage.Job) -> None:
        self.found.extend(job.result)

    def process_failure(self, job: dsage.Job) -> None:
        a, b = map(int, self.tag_of(job).split(":"))
        if job.status == "timed_out" and b - a >= 2 * self.min_unit:
            mid = (a + b) // 2
            self.splits += 1
            self._unit(a, mid)
            self._unit(mid, b)
        else:
            super().process_failure(job)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--hi", type=int, default=300_000)
    ap.add_argument("--threshold", type=int, default=300)
    ap.add_argument("--timeout", type=float, default=0.4)
    args = ap.parse_args()
    D = dsage.start_all(workers=2)
    try:
        s = AdaptiveSearch(1, args.hi, args.threshold, unit=args.hi // 4, timeout=args.timeout)
        found = sorted(s.run(D, timeout=900))
        print(f"{len(found)} numbers below {args.hi} need more than {args.threshold} steps "
              f"(first few: {found[:5]}); {s.splits} units were split after timing out")
        if s.failures:
            print(s.error_report, file=sys.stderr)
    finally:
        D.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
