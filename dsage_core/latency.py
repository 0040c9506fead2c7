"""Every latency trick in one place: the timing constants, and a switch that turns the tricks off.

dsage holds, coalesces and reads lazily in a dozen places to wake fewer processes per job (on 2
cores every wake-up preempts a busy child). Those tricks must not change behaviour, only timing,
so the suite runs twice: once under the :meth:`LatencyPolicy.normal` policy and once under
:meth:`LatencyPolicy.plain`, where every hold, coalescing delay, lazy read, group-commit delay,
unanswered send and patch of a private Twisted internal is off.

The active policy is chosen once per process by :func:`current`, from the environment:

* ``DSAGE_LATENCY=normal`` (the default) or ``DSAGE_LATENCY=plain``;
* ``DSAGE_LATENCY_OFF=trick,trick``: the normal policy with just those tricks off (the names
  are the keys of :data:`TRICKS`; ``bench/latency.py`` measures each trick this way).

Child processes inherit the environment, so a worker, its children and a ``start_all`` server all
run one policy. Modules read the policy once (at import or construction), never per job.

Measurements: on the project's 2-core VM, ``bench/run.py`` (W1 10k no-op jobs, W2 sequential
round trips, W3 20 ms CPU jobs); each field says what set it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace

ENV = "DSAGE_LATENCY"
ENV_OFF = "DSAGE_LATENCY_OFF"
MODES = ("normal", "plain")


@dataclass(frozen=True)
class LatencyPolicy:
    """The tuning constants (defaults: the normal policy). Times in seconds."""

    name: str = "normal"

    # ---- server: pushes to clients (server/core.py push_hold, server/remote.py KeyedPusher)
    #: results of jobs that ran at least this long may wait before being pushed to clients,
    #: while their owner has more jobs to come ...
    push_hold_min: float = 0.002
    #: ... up to this many times their run time ...
    push_hold_fraction: float = 5.0
    #: ... and at most this long (0: no push hold). Set with the worker's report hold: the
    #: server's CPU per W3 job fell from ~0.3 to ~0.22 ms (docs/ARCHITECTURE.md, holds of 5x / 100 ms).
    push_hold_max: float = 0.1
    #: a running (not finished) update waits this long for its job's result, which replaces it
    #: (0: pushed at once)
    push_lazy_delay: float = 0.05
    #: held items arriving in this last fraction of a running hold end it at once (they ride along
    #: instead of waking the sender once more; protocol/batcher.py, server/remote.py)
    piggyback: float = 0.5

    # ---- server: group commit (server/core.py)
    #: a submit whose jobs all went straight to workers commits with the first report after it,
    #: or after this long (0: at once): a short job's INSERT and result share one transaction
    #: (commit 64914c2, "at most 2 ms later")
    commit_delay: float = 0.002

    # ---- every sender: unanswered sends (protocol/pacing.py AnswerPacer)
    #: a lone message (nothing in flight, nothing sent for this long) goes without an answer (Foolscap's one-way call)
    answer_idle_gap: float = 0.001
    #: at most this many unanswered sends in a row (0: every send is answered). W2 p50
    #: ~3.5 -> ~2.7 ms, W1 unchanged (commit 41195a8)
    max_unanswered: int = 8

    # ---- worker monitor: report holds (worker/pool.py report_hold)
    #: a finished job's report waits for company up to this many times its run time ...
    report_hold_fraction: float = 10.0
    #: ... if it ran at least this long ...
    report_hold_min_wall: float = 0.002
    #: ... and at most this long (0: no report hold). W3 +1 point at 1x / 20 ms -> 2.5x / 50 ms,
    #: +0.5 at 5x / 100 ms with lazy reads, +1 at 10x / 200 ms (worker/pool.py comment)
    report_hold_max: float = 0.2
    #: "start" marks of running jobs are collected and sent every this long ...
    start_mark_delay: float = 0.1
    #: ... held this long to ride with the next report (0 and 0: sent on the next reactor turn)
    start_mark_hold: float = 0.05

    # ---- worker monitor: lazy reading of child pipes (worker/children.py)
    #: read pipes of children busy with 5-100 ms jobs on a timer instead of polling them: W3 took
    #: the monitor from 1.4 to 0.4 wake-ups per job (docs/ARCHITECTURE.md)
    lazy_read: bool = True
    lazy_min_wall: float = 0.005   #: shorter jobs: read at once (the child coalesces their dones)
    lazy_max_wall: float = 0.1     #: longer jobs: read at once (they hold one job at a time anyway)
    lazy_max_sleep: float = 0.15   #: never unread for longer
    lazy_span: float = 0.05        #: a lazily-read child gets about this much extra work ...
    lazy_batch_max: int = 4        #: ... but never more than this many extra jobs
    lazy_min_sleep: float = 0.002  #: a pause shorter than this is not worth two epoll_ctl calls

    # ---- job child (worker/child.py)
    #: dones of short jobs are coalesced into one frame for this long (0: one frame per job)
    child_coalesce: float = 0.002
    #: jobs shorter than this report their wall time as CPU time (reading the CPU clock is a
    #: system call, ~10 us on a VM, a quarter of a no-op job's cost); 0: read after every job
    cpu_clock_min_wall: float = 0.0005
    #: the memory check runs after this many jobs ... (1: after every job)
    rss_every: int = 16
    #: ... or once the jobs since the last check ran this long (a system call on cold caches
    #: after each 20 ms job was a measurable part of a child's overhead)
    rss_seconds: float = 0.1

    # ---- job output (worker/capture.py)
    #: captured output goes out once more than this many bytes are buffered ... (0: every write)
    flush_bytes: int = 4096
    #: ... or this long after the last send
    flush_seconds: float = 0.2

    # ---- patches into private Twisted internals
    #: write to an idle Twisted FileDescriptor at once (protocol/eagerwrite.py: reads its
    #: _tempDataBuffer / dataBuffer / offset): one reactor turn and two epoll_ctl less per message
    #: on the local socket and the child pipes (commit cba3088)
    eager_write: bool = True
    #: tidy cancelled timers off the reactor's heap before it sizes its sleep (protocol/pacing.py:
    #: wraps reactor.timeout, reads _pendingTimedCalls): no wake-up for a cancelled hold (d97bdae)
    live_timers: bool = True

    # ---- reconnects (protocol/connect.py): not latency tricks, the same in both modes
    local_retry_start: float = 0.05  #: first retry of a lost local socket (doubles up to 1 s)
    max_local_failures: int = 8      #: local attempts before falling back to Foolscap
    group_refresh: float = 10.0      #: how often a peer of a server group re-reads its hints

    @classmethod
    def normal(cls) -> "LatencyPolicy":
        """Every trick on, with the measured values."""
        return cls()

    @classmethod
    def plain(cls) -> "LatencyPolicy":
        """Every hold, coalescing delay, lazy read, group-commit delay, unanswered send and private
        patch off: what the code does without timing tricks."""
        return cls.normal().without(*TRICKS, name="plain")

    def without(self, *tricks: str, name: str | None = None) -> "LatencyPolicy":
        """This policy with the named :data:`TRICKS` off."""
        changes: dict[str, object] = {}
        for t in tricks:
            if t not in TRICKS:
                raise ValueError(f"unknown latency trick {t!r} (known: {', '.join(TRICKS)})")
            changes.update(TRICKS[t])
        label = name if name is not None else self.name + "".join(f"-{t}" for t in tricks)
        return replace(self, name=label, **changes)  # type: ignore[arg-type]


#: each trick and the field values that turn it off (plain() turns them all off).
#:
#: ``bench/latency.py`` on 2026-12-03 (2 cores shared with ~8 engineers' test runs: a loaded VM),
#: medians of 3 alternating rounds, each a ratio to Pool(2) in its round (W1, W3 higher is better,
#: W2 p50 lower is better); the second batch re-measured the patches and two small tricks:
#:
#:   variant            W1/pool  W2/pool  W3/pool   | 2nd batch: W1   W2     W3
#:   normal             0.144    11.7     0.552     |            0.284  16.1  0.718
#:   plain              0.059    25.1     0.345     |            0.173  35.8  0.491
#:   -push_hold         0.139    18.1     0.512     |
#:   -push_lazy         0.122    11.0     0.517     |            0.251  24.6  0.534
#:   -commit_delay      0.079    12.5     0.449     |
#:   -unanswered_send   0.111    22.4     0.320     |
#:   -report_hold       0.061    12.7     0.262     |
#:   -start_mark_hold   0.075    19.7     0.406     |
#:   -lazy_read         0.084    12.7     0.436     |
#:   -child_coalesce    0.110    10.4     0.514     |            0.185  17.1  0.656
#:   -cpu_clock_skip    0.060    12.6     0.239     |
#:   -rss_skip          0.082    10.6     0.293     |
#:   -output_flush      0.104    11.7     0.397     |   (control: W1-W3 print nothing)
#:   -eager_write       0.072    14.7     0.377     |            0.310  20.0  0.863
#:   -live_timers       0.082    20.7     0.601     |            0.226  18.8  0.431
#:
#: The controls give the noise floor: output_flush is never exercised and moved W1 and W3 by
#: ~28 %; push_hold is not exercised by W1 or W2 (jobs under 2 ms) and moved W2 by 55 %. Plain
#: against normal is clear in both batches (W1 0.4-0.6x, W2 2.1-2.2x slower, W3 -0.2).
#: A third batch for push_hold alone: normal 0.333 / 10.9 / 1.475, plain 0.278 / 24.6 / 1.200,
#: -push_hold 0.406 / 8.8 / 1.599: no trick's benefit is beyond that noise on its own; none
#: was removed on these figures (re-run bench/latency.py on a quiet machine before removing one).
TRICKS: dict[str, dict[str, object]] = {
    "push_hold": {"push_hold_max": 0.0},
    "push_lazy": {"push_lazy_delay": 0.0},
    "commit_delay": {"commit_delay": 0.0},
    "unanswered_send": {"max_unanswered": 0},
    "report_hold": {"report_hold_max": 0.0},
    "start_mark_hold": {"start_mark_delay": 0.0, "start_mark_hold": 0.0},
    "lazy_read": {"lazy_read": False},
    "child_coalesce": {"child_coalesce": 0.0},
    "cpu_clock_skip": {"cpu_clock_min_wall": 0.0},
    "rss_skip": {"rss_every": 1, "rss_seconds": 0.0},
    "output_flush": {"flush_bytes": 0, "flush_seconds": 0.0},
    "eager_write": {"eager_write": False},
    "live_timers": {"live_timers": False},
}

_FIELDS = {f.name for f in fields(LatencyPolicy)}
assert all(k in _FIELDS for t in TRICKS.values() for k in t)

_current: LatencyPolicy | None = None


def from_environ(environ: "os._Environ[str] | dict[str, str]") -> LatencyPolicy:
    """The policy *environ* asks for (see the module docstring); a bad value is a clear error."""
    mode = (environ.get(ENV) or "normal").strip().lower()
    if mode not in MODES:
        raise ValueError(f"{ENV}={environ.get(ENV)!r}: expected one of {', '.join(MODES)}")
    policy = LatencyPolicy.plain() if mode == "plain" else LatencyPolicy.normal()
    off = [t.strip() for t in (environ.get(ENV_OFF) or "").split(",") if t.strip()]
    return policy.without(*off) if off and mode == "normal" else policy


def current() -> LatencyPolicy:
    """This process's policy, chosen on first use from the environment."""
    global _current
    if _current is None:
        _current = from_environ(os.environ)
    return _current


def is_plain() -> bool:
    """True when this process runs the plain policy."""
    return current().name == "plain"
