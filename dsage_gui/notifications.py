"""Notices and notifications.

:class:`NoticeHub` is a tiny Qt-free observer: anything (slots, errbacks, the session) posts
``(level, text)`` to it. :class:`Notifier` is the Qt display: it watches job updates for failed jobs
and for finished batches (every job of a multi-job submission done) and shows them as a system tray
message when a tray exists, else in the status bar. Notices from the hub go to the status bar.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable

import shiboken6
from PySide6.QtCore import QObject
from PySide6.QtWidgets import QStatusBar, QSystemTrayIcon, QWidget

from dsage_core.model.status import JobStatus


class NoticeHub:
    """Events: ``callback(level, text)`` for every :meth:`post` (level: info, warning, error).
    Keeps the last *keep* notices for display and tests."""

    def __init__(self, keep: int = 100) -> None:
        self.keep = keep
        self.history: list[tuple[str, str]] = []
        self._subscribers: list[Callable[[str, str], None]] = []

    def subscribe(self, callback: Callable[[str, str], None]) -> Callable[[], None]:
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback)

    def post(self, level: str, text: str) -> None:
        self.history.append((level, text))
        del self.history[:-self.keep]
        for cb in list(self._subscribers):
            cb(level, text)


class BatchTracker:
    """Qt-free: which tracked batches just finished, and which jobs just failed, given job updates."""

    def __init__(self) -> None:
        self.batches: list[tuple[str, set[int], int]] = []   # (label, ids not done yet, size)
        self.failed_seen: set[int] = set()

    def track(self, ids: Iterable[int], label: str = "batch") -> None:
        ids = set(ids)
        if ids:
            self.batches.append((label, ids, len(ids)))

    def update(self, infos: list[Any]) -> tuple[list[Any], list[tuple[str, int]]]:
        """(newly failed jobs, finished batches as (label, size)) after these updates."""
        failed = [i for i in infos if i.status == JobStatus.FAILED and i.id not in self.failed_seen]
        self.failed_seen.update(i.id for i in failed)
        finished = {i.id for i in infos if i.done}
        done: list[tuple[str, int]] = []
        for batch in list(self.batches):
            batch[1].difference_update(finished)
            if not batch[1]:
                self.batches.remove(batch)
                done.append((batch[0], batch[2]))
        return failed, done


def last_line(text: str | None) -> str:
    lines = (text or "").strip().splitlines()
    return lines[-1] if lines else ""


class Notifier(QObject):
    """Shows notifications: tray message if ``QSystemTrayIcon.isSystemTrayAvailable()``, else status bar."""

    def __init__(self, status_bar: QStatusBar, hub: NoticeHub, icon_from: QWidget | None = None,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.status_bar = status_bar
        self.hub = hub
        self.tracker = BatchTracker()
        self.shown: list[str] = []
        self.tray: QSystemTrayIcon | None = None
        if QSystemTrayIcon.isSystemTrayAvailable():
            self.tray = QSystemTrayIcon(self)
            if icon_from is not None:
                self.tray.setIcon(icon_from.windowIcon())
            self.tray.show()
        self._unsubscribe: Callable[[], None] | None = hub.subscribe(self.show_notice)

    def show_notice(self, level: str, text: str) -> None:
        if not shiboken6.isValid(self.status_bar):  # the window is gone; the session outlives it
            self.close()
            return
        self.status_bar.showMessage(text, 10000)

    def jobs_changed(self, infos: list[Any]) -> None:
        failed, done = self.tracker.update(infos)
        if len(failed) > 3:  # a burst of failures is one notification, not a flood
            self.notify(f"{len(failed)} jobs failed", f"e.g. job {failed[0].id}: {last_line(failed[0].error)}")
        else:
            for i in failed:
                self.notify(f"job {i.id} failed", last_line(i.error))
        for label, size in done:
            self.notify(f"{label} finished", f"all {size} jobs are done")

    def notify(self, title: str, text: str) -> None:
        self.shown.append(f"{title}: {text}")
        del self.shown[:-100]
        if self.tray is not None:
            self.tray.showMessage(f"dsage: {title}", text)
        else:
            self.status_bar.showMessage(f"{title}: {text}", 8000)

    def close(self) -> None:
        """Stop listening to the hub (idempotent) and hide the tray icon."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self.tray is not None and shiboken6.isValid(self.tray):
            self.tray.hide()
