"""The worker's Foolscap adapters: what the server calls on it (:class:`Runner`), and its calls to
the server (:class:`ServerLink`). :class:`dsage_core.worker.service.WorkerService` talks to these
two with plain Python values; envelopes and ``callRemote`` stay here.

The same adapters serve every transport that has a RemoteReference's surface: Foolscap, the local
socket (:mod:`dsage_core.protocol.localwire`) and the in-process one (:mod:`dsage_core.protocol.null`).
"""
from __future__ import annotations

from typing import Any

from foolscap.api import Referenceable
from twisted.internet.defer import Deferred
from zope.interface import implementer

from dsage_core.model.records import KillItem, WorkerInfo
from dsage_core.protocol import envelope
from dsage_core.protocol.interfaces import RIWorkerRunner


@implementer(RIWorkerRunner)
class Runner(Referenceable):
    """What the server calls on this worker: one-line adapters over the worker's pool (anything with
    ``add_jobs(entries, blobs)`` and ``kill(job_id, attempt, unstarted_only=)``)."""

    def __init__(self, pool: Any) -> None:
        self.pool = pool

    def remote_run(self, batch: bytes) -> None:
        b = envelope.unpack(batch, what="run batch")
        self.pool.add_jobs(b["jobs"], b.get("blobs") or {})

    def remote_kill(self, job_ids: bytes) -> None:
        # a cancel spares a job already running
        for item in envelope.unpack(job_ids, what="kill list"):
            k = KillItem.from_wire(item)
            self.pool.kill(k.job_id, k.attempt, unstarted_only=bool(k.cancel))

    def remote_ping(self) -> None:
        return None


class ServerLink:
    """The worker's session with the server, as plain calls (values in, Deferreds of values out)."""

    def __init__(self, session: Any) -> None:
        self.rref = session   #: the transport's reference (attacker tests call it raw)

    def register(self, runner: Runner, info: WorkerInfo) -> Deferred:
        """Register *runner* with this machine's *info*; fires with the server's settings map."""
        d = self.rref.callRemote("register", runner, envelope.pack(info.to_wire()))
        return d.addCallback(envelope.unpack)

    def report(self, events: list[Any]) -> Deferred:
        """Send report events; fires once the server processed them."""
        return self.rref.callRemote("report", envelope.pack(events))

    def report_only(self, events: list[Any]) -> None:
        """Send report events without an answer; :class:`ConnectionError` if the connection is gone
        (``callRemoteOnly`` would drop them without a word)."""
        if not self.rref.isConnected():
            raise ConnectionError("connection lost")
        self.rref.callRemoteOnly("report", envelope.pack(events))

    def heartbeat(self, state: dict[str, Any]) -> Deferred:
        """Tell the server this worker's slots and load; an answered call is also a barrier: every
        report sent before it has been processed."""
        return self.rref.callRemote("heartbeat", envelope.pack(state))
