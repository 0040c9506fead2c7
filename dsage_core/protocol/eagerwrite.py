"""Write to a Twisted file descriptor now, when nothing is queued before it.

Twisted's ``write()`` only buffers: the bytes leave on the next reactor turn, after two
``epoll_ctl`` calls to start and stop watching for writability. For one small message on a
latency path that is a whole turn of the reactor in each process it crosses. With an empty
buffer nothing can be reordered, so the bytes go out at once; whatever the kernel does not take
(a full pipe, a large frame) is queued through ``write()`` as before, and a send error is left
to Twisted's own write path to report.
"""
from __future__ import annotations

from typing import Any

from dsage_core import latency

#: False under the plain latency policy: every write goes through Twisted's buffer
EAGER = latency.current().eager_write


def write_now(fd: Any, data: bytes) -> None:
    """*fd*: a Twisted ``FileDescriptor`` (a socket connection, a process pipe writer)."""
    if (EAGER and fd.connected and not fd.disconnecting and not getattr(fd, "_writeDisconnected", False)
            and not fd._tempDataBuffer and fd.offset == len(fd.dataBuffer)):
        n = fd.writeSomeData(data)
        if isinstance(n, int) and n >= 0:
            if n == len(data):
                return
            data = data[n:]
    fd.write(data)
