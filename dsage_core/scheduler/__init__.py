"""The pure scheduler: events in, actions out (no I/O, no clock). See ``state.Scheduler``."""
from dsage_core.scheduler import actions, events
from dsage_core.scheduler.events import SchedJob
from dsage_core.scheduler.state import InvalidTransition, Scheduler

__all__ = ["Scheduler", "SchedJob", "InvalidTransition", "events", "actions"]
