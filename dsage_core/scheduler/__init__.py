"""The pure scheduler: events in, actions out (no I/O, no clock). See ``state.Scheduler``.

Usage: ``actions = Scheduler().handle(events.JobsSubmitted([SchedJob(1)]))``; the owner carries
out each action in order (``Dispatch`` jobs to a worker, record ``Accepted`` results, ...).
"""
from dsage_core.scheduler import actions, events
from dsage_core.scheduler.actions import Action
from dsage_core.scheduler.events import Event, SchedJob
from dsage_core.scheduler.policy import WorkerState
from dsage_core.scheduler.state import InvalidTransition, Scheduler

__all__ = ["Scheduler", "SchedJob", "InvalidTransition", "WorkerState", "Event", "Action", "events", "actions"]
