"""GuiSession: owns the client (and an embedded server); the ONE place core events become Qt signals."""
from __future__ import annotations

from typing import Any

from PySide6.QtCore import QObject, Signal


class GuiSession(QObject):
    """Signals carry plain data from ``dsage_core``; panes never touch the client directly except
    through the methods here, which return Deferreds."""

    jobs_changed = Signal(list)       # list[JobInfo]
    stats_changed = Signal(dict)
    workers_changed = Signal(list)    # list[dict]
    connection_changed = Signal(str)  # connected | reconnecting | disconnected
    notice = Signal(str, str)         # level, text

    def __init__(self, client: Any, embedded: Any = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.client = client
        self.embedded = embedded
        self._unsubscribe = client.subscribe(self._event)

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
            self.connection_changed.emit(payload)

    def report_error(self, failure: Any) -> None:
        msg = getattr(failure, "getErrorMessage", lambda: str(failure))()
        self.notice.emit("error", msg)

    def close(self) -> Any:
        self._unsubscribe()
        if self.embedded is not None:
            return self.embedded.stop()
        return self.client.close()


def open_session(reactor: Any, *, server: str | None = None, key: str | None = None, home: str | None = None,
                 workers: int | None = None) -> Any:
    """Embed a server (default) or connect to *server*; fires with a :class:`GuiSession`."""
    if server:
        from dsage_core.client.core import connect_async
        return connect_async(server, key, home, reactor, follow_all=True).addCallback(GuiSession)
    from dsage_core.embed import start_embedded
    return start_embedded(home, reactor, workers).addCallback(lambda e: GuiSession(e.client, e))
