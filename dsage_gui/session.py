"""GuiSession: owns the client (and an embedded server); the ONE place core events become Qt signals.

The core calls ``callback(kind, payload)`` on the reactor thread, which is also Qt's thread here (one
shared loop), so events are re-emitted as Qt signals directly. Panes call the client's methods
(which return Deferreds) and send failures to :meth:`GuiSession.report_error`.
"""
from __future__ import annotations

from typing import Any

from PySide6.QtCore import QObject, Signal

from dsage_gui.bridge import failure_text
from dsage_gui.notifications import NoticeHub


class GuiSession(QObject):
    """Signals carry plain data from ``dsage_core``. Events (from ``AsyncClient.subscribe``):
    ``jobs`` → :attr:`jobs_changed`, ``stats`` → :attr:`stats_changed`, ``workers`` →
    :attr:`workers_changed`, ``connection`` → :attr:`connection_changed`."""

    jobs_changed = Signal(list)       # list[JobInfo]
    stats_changed = Signal(dict)
    workers_changed = Signal(list)    # list[dict]
    connection_changed = Signal(str)  # connected | reconnecting | disconnected
    notice = Signal(str, str)         # level, text (re-emitted from the hub)

    def __init__(self, client: Any, embedded: Any = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.client = client
        self.embedded = embedded
        self.hub = NoticeHub()
        self.hub.subscribe(self.notice.emit)
        self.connection = str(getattr(client, "connection_state", "connected") or "connected")
        self._unsubscribe = client.subscribe(self._event)
        self._closed = False
        self._close_waiters: list[Any] = []

    @property
    def server_label(self) -> str:
        return ("embedded " if self.embedded else "") + self.client.server_label

    def _event(self, kind: str, payload: Any) -> None:
        if kind == "jobs":
            self.jobs_changed.emit(payload)
        elif kind == "stats":
            self.stats_changed.emit(payload)
        elif kind == "workers":
            self.workers_changed.emit(payload)
        elif kind == "connection":
            self.connection = payload
            self.connection_changed.emit(payload)

    def post(self, level: str, text: str) -> None:
        """A notice for the user (status bar)."""
        self.hub.post(level, text)

    def report_error(self, failure: Any) -> None:
        """Errback for every call a pane starts: the user sees the message; the failure is consumed."""
        self.hub.post("error", failure_text(failure))

    def close(self) -> Any:
        """Stop the client (and the embedded server and its workers). Idempotent: closing the last
        window and a SIGTERM may both ask; every caller's Deferred fires when it is done."""
        from twisted.internet.defer import Deferred
        from twisted.python.failure import Failure
        d: Deferred = Deferred()
        if self._closed:
            d.callback(None)
            return d
        self._close_waiters.append(d)
        if len(self._close_waiters) == 1:
            self._unsubscribe()
            inner = self.embedded.stop() if self.embedded is not None else self.client.close()

            def done(result: Any) -> None:
                self._closed = True
                waiters, self._close_waiters = self._close_waiters, []
                for w in waiters:
                    w.errback(result) if isinstance(result, Failure) else w.callback(None)
            inner.addBoth(done)
        return d


def open_session(reactor: Any, *, server: str | None = None, key: str | None = None, home: str | None = None,
                 workers: int | None = None) -> Any:
    """Embed a server (default) or connect to *server*; fires with a :class:`GuiSession`.

    The only place the GUI reaches into ``dsage_core`` to create a client (imported lazily: these
    import the reactor, which must be installed first).
    """
    if server:
        from dsage_core.client.core import connect_async
        return connect_async(server, key, home, reactor, follow_all=True).addCallback(GuiSession)
    from dsage_core.cluster import LocalCluster
    return LocalCluster.embed(home, reactor, workers).addCallback(lambda e: GuiSession(e.client, e))
