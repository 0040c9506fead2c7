"""dsage: distributed computing for Python and Sage users.

Quick start::

    import dsage_core as dsage
    D = dsage.start_all(workers=2)
    j = D('2+2'); print(j.wait().result)
"""
from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["start_all", "connect", "as_completed", "wait", "progress", "Client", "Job", "JobList",
           "DistributedFunction", "TaskQueue", "batch_progress", "ClientClosed", "JobFailed",
           "RemoteError", "RemoteTraceback",
           "FIRST_COMPLETED", "FIRST_EXCEPTION", "ALL_COMPLETED", "__version__"]

from dsage_core._progress import progress
from dsage_core.waiting import (ALL_COMPLETED, FIRST_COMPLETED, FIRST_EXCEPTION, as_completed,
                                batch_progress, wait)


def __getattr__(name: str) -> Any:  # lazy: importing dsage_core must not import Twisted
    if name in ("start_all", "connect", "Client"):
        from dsage_core.client import api
        return getattr(api, name)
    if name == "Job":
        from dsage_core.client.job import Job
        return Job
    if name == "JobList":
        from dsage_core.client.joblist import JobList
        return JobList
    if name == "DistributedFunction":
        from dsage_core.distributed import DistributedFunction
        return DistributedFunction
    if name == "ClientClosed":
        from dsage_core.protocol.errors import ClientClosed
        return ClientClosed
    if name in ("JobFailed", "RemoteError", "RemoteTraceback"):
        from dsage_core.client import remote_error
        return getattr(remote_error, name)
    if name == "TaskQueue":
        from dsage_core.client.taskqueue import TaskQueue
        return TaskQueue
    raise AttributeError(name)
