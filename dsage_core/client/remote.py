"""The client's Foolscap adapters: the listener the server pushes to (:class:`Listener`), the
client's calls to the server (:class:`ServerLink`), and :func:`translate`, which turns a remote
failure into the matching dsage exception.

:class:`dsage_core.client.core.AsyncClient` holds no Foolscap: it gets plain callbacks from the
listener and plain dsage exceptions from every call (Foolscap, the local socket and the in-process
transport fail the same way).
"""
from __future__ import annotations

from typing import Any

from foolscap.api import DeadReferenceError, Referenceable, RemoteException
from twisted.internet.defer import Deferred
from zope.interface import implementer

from dsage_core.protocol import envelope
from dsage_core.protocol.errors import (BadRequest, DsageError, LoginFailed, NotFound, PermissionDenied,
                                        QuotaExceeded, ServerUnavailable, UnknownBlob)
from dsage_core.protocol.interfaces import RIClientListener

_ERRORS = {c.__name__: c for c in (BadRequest, NotFound, PermissionDenied, LoginFailed, ServerUnavailable,
                                    QuotaExceeded, UnknownBlob)}


def translate(f: Any) -> Any:
    """Turn a remote failure into the matching local dsage exception (errback use: raises it;
    a failure that is not a remote one passes unchanged)."""
    exc = f.value
    if isinstance(exc, RemoteException):
        cf = exc.failure
        t = getattr(cf, "type", "")
        tname = getattr(t, "__name__", None) or str(t).rsplit(".", 1)[-1].strip("'>")
        msg = str(getattr(cf, "value", cf))
        cls = _ERRORS.get(tname)
        if cls is None and tname == "Violation":
            cls, msg = BadRequest, f"the server refused the call: {msg}"
        raise (cls or DsageError)(msg) from None
    if isinstance(exc, DeadReferenceError):
        raise ServerUnavailable("connection to the server was lost") from None
    return f


class ServerLink:
    """The client's session with the server: every call fails with a dsage exception
    (:func:`translate`), whichever transport carries it."""

    def __init__(self, session: Any) -> None:
        self.rref = session   #: the transport's reference (attacker tests call it raw)

    def call(self, method: str, *args: Any) -> Deferred:
        """Call *method* of the session (``RIClientSession``) with *args*."""
        return self.rref.callRemote(method, *args).addErrback(translate)


@implementer(RIClientListener)
class Listener(Referenceable):
    """What the server pushes to: unpacks each push and hands it to the client's plain methods
    ``_on_updates(updates)`` and ``_emit(kind, payload)``."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def remote_jobs_changed(self, updates: bytes) -> None:
        self.client._on_updates(envelope.unpack(updates))

    def remote_stats(self, counters: bytes) -> None:
        self.client._emit("stats", envelope.unpack(counters))

    def remote_workers_changed(self, workers: bytes) -> None:
        self.client._emit("workers", envelope.unpack(workers))
