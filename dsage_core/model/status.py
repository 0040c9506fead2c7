"""Job statuses: the one enum every module compares against.

A job moves ``queued -> assigned -> running -> (completed | failed | killed | timed_out)``:
``assigned`` is handed to a worker ahead of time (its prefetch buffer), ``running`` has started in a
child process. A job on a paused worker is ``paused`` (running or assigned before the pause; it goes
back to that state on resume). A job whose worker died goes back to ``queued`` and, after
``max_failures`` such deaths, ends ``lost``. A job that takes other jobs' values as arguments is
``waiting`` until they completed (then ``queued``), and fails if one of them did not.

``JobStatus`` is a ``str`` enum: its members *are* the strings stored in the database and sent on
the wire (``JobStatus.QUEUED == "queued"``), so a status read from a row or a wire record compares
equal to the member without conversion; sqlite3, psycopg, msgpack and Foolscap store and send members as those strings.
The sets below hold the plain strings (the fastest membership test). On a hot path, bind a member to
a module name once (``COMPLETED = JobStatus.COMPLETED``): an enum attribute lookup costs ~80 ns.
"""
from __future__ import annotations

import enum


class JobStatus(str, enum.Enum):
    WAITING = "waiting"      #: for its input jobs (jobs as arguments): not in the queue yet
    QUEUED = "queued"
    ASSIGNED = "assigned"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"
    KILLED = "killed"
    TIMED_OUT = "timed_out"
    LOST = "lost"

    def __str__(self) -> str:
        return self.value


#: a job in one of these has ended for good
TERMINAL: frozenset[str] = frozenset(s.value for s in (JobStatus.COMPLETED, JobStatus.FAILED,
                                                     JobStatus.KILLED, JobStatus.TIMED_OUT, JobStatus.LOST))
#: every status, in the order of a job's life (filters, menus)
ALL_STATES: tuple[str, ...] = tuple(s.value for s in JobStatus)
#: a worker holds the job (what the store records as 'running': requeued if the server restarts)
HELD: frozenset[str] = frozenset(s.value for s in (JobStatus.ASSIGNED, JobStatus.RUNNING, JobStatus.PAUSED))
#: what a child may report for a job it ran (the monitor adds timed_out and killed)
CHILD_OUTCOMES: frozenset[str] = frozenset(s.value for s in (JobStatus.COMPLETED, JobStatus.FAILED))
#: what a worker may report to the server in a done event
WORKER_OUTCOMES: frozenset[str] = frozenset(s.value for s in (JobStatus.COMPLETED, JobStatus.FAILED,
                                                            JobStatus.TIMED_OUT, JobStatus.KILLED))
