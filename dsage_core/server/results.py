"""Results as files and bytes: the large results local workers leave in the server's home, and the
exceptions the server keeps (packed, never unpickled here).

A worker that shares the server's home (a *local* worker, see :mod:`dsage_core.local_results`)
writes a large result to ``results/`` and names it in its done event instead of sending the bytes.
:class:`ResultFiles` checks such a name on the reactor (no file I/O: the store checks the file
itself before the result commits), reads a file's bytes off the reactor for peers that do not share
the home, and removes the file of an attempt no row will name.
"""
from __future__ import annotations

import os
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger

from dsage_core import local_results
from dsage_core.model import exc_info
from dsage_core.model.records import JobUpdate
from dsage_core.result_files import ResultFileError, ResultsDir
from dsage_core.server.commits import log_failure

log = Logger(namespace="dsage.server")

_EXC = JobUpdate._fields.index("exc")   #: where a job update carries the exception


class ResultFiles:
    """The results directory of the server's home, as the server uses it."""

    def __init__(self, limits: Any, store: Any) -> None:
        self.limits = limits
        self.store = store
        self.home: Any = None            #: the server's home (set by the service)
        #: runs result-file reads off the reactor (a Runner, see store/runner.py; set by the
        #: service); None: read inline (unit tests)
        self.file_reader: Any = None
        self._results: ResultsDir | None = None

    def check(self, w: Any, job: Any, rfile: dict[str, Any]) -> str | None:
        """Why a result file named by worker *w* for *job* cannot be taken (None: its name and size
        may be the expected ones). No file I/O here, on the reactor: the store checks the file."""
        if not w.local or self.home is None:
            return "the worker sent a result as a file but does not share the server's home"
        rel, size = rfile.get("file"), rfile.get("size")
        if rel != local_results.result_name(job.id, job.attempt):
            return f"the worker named an unexpected result file {str(rel)[:100]!r}"
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            return "the worker sent a malformed result size"
        if size > self.limits.max_result:
            return f"result too large: {size} bytes > limit {self.limits.max_result}"
        return None

    def drop(self, w: Any, job_id: Any, attempt: Any, rfile: dict[str, Any] | None) -> None:
        """Remove a result file no row will name (a stale attempt, or a result refused before it
        was recorded). Callers make sure of that; the name must be the one of that job and attempt."""
        if rfile is None or not w.local or self.home is None:
            return
        if rfile.get("file") == local_results.result_name(job_id, attempt):  # never any other name
            self.store.drop_result_file(rfile["file"]).addErrback(log_failure)  # off the reactor

    def read_later(self, rel: str) -> Deferred:
        """:meth:`read` on the file reader's thread: a result file may be large, or no longer in
        the page cache, and the reactor must not wait for the disk."""
        if self.file_reader is None:
            return succeed(self.read(rel))
        return self.file_reader.run(self.read, rel)

    def read(self, rel: str) -> bytes | dict[str, str]:
        """The bytes of a result a local worker wrote, or a ``{"missing": reason}`` marker the
        client turns into a clear error when the result is read. Opened safely (see result_files:
        no link followed, a regular file of ours); never call it on the reactor."""
        try:
            if self._results is None:
                self._results = ResultsDir(self.home, uid=os.geteuid(), create=True)
            return self._results.read(rel)
        except (OSError, ResultFileError) as e:
            why = str(e) if isinstance(e, ResultFileError) else \
                f"the server cannot read the result file {rel}: {e.strerror or e}"
            log.error("dsage.server.result_file_unreadable", file=rel, error=why)
            return {"missing": why}


def pack_exc(info: dict[str, Any]) -> bytes:
    """An exception map as the store keeps it."""
    from dsage_core.protocol.envelope import pack
    return pack(info)


def unpack_exc(data: Any) -> dict[str, Any] | None:
    """A stored exception map (opaque to the server: never unpickled here)."""
    from dsage_core.protocol.envelope import unpack
    try:
        v = unpack(data) if isinstance(data, bytes) else None
    except Exception:  # noqa: BLE001 - a damaged row: no exception, the traceback text remains
        return None
    return v if isinstance(v, dict) else None


def viewed(u: Any, job_owner: str, viewer: str) -> Any:
    """An update as *viewer* may see it (another user's exception pickle stays on the server)."""
    if len(u) > _EXC:   # it carries an exception: its pickle goes to the job's owner only
        u[_EXC] = exc_info.for_viewer(u[_EXC], job_owner, viewer)
    return u
