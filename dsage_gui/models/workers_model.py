"""WorkersTableModel over the worker dicts the server pushes."""
from __future__ import annotations

import time
from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt

COLUMNS = ("Worker", "Host", "Slots busy/total", "CPUs", "Memory", "Identity", "Last heartbeat", "Jobs done")


class WorkersTableModel(QAbstractTableModel):
    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self.workers: list[dict[str, Any]] = []

    def set_workers(self, workers: list[dict[str, Any]]) -> None:
        self.beginResetModel()  # a handful of rows: a reset is the simplest correct update
        self.workers = sorted(workers, key=lambda w: w.get("id", ""))
        self.endResetModel()

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.workers)

    def columnCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if role == Qt.ItemDataRole.DisplayRole and orientation == Qt.Orientation.Horizontal and 0 <= section < len(COLUMNS):
            return COLUMNS[section]
        return None

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if role != Qt.ItemDataRole.DisplayRole or not index.isValid() or not (0 <= index.row() < len(self.workers)):
            return None
        w = self.workers[index.row()]
        c = index.column()
        if c == 0:
            return w.get("id", "")
        if c == 1:
            return w.get("host", "")
        if c == 2:
            return f"{w.get('busy', 0)}/{w.get('slots', 0)}" + (" (paused)" if w.get("paused") else "")
        if c == 3:
            return str(w.get("cpus") or "?")
        if c == 4:
            return f"{(w.get('memory') or 0) / 2**30:.1f} GiB"
        if c == 5:
            return "anonymous" if w.get("anonymous") else f"keyed ({w.get('user', '')})"
        if c == 6:
            t = w.get("last_heartbeat")
            return time.strftime("%H:%M:%S", time.localtime(t)) if t else ""
        if c == 7:
            return str(w.get("jobs_done", 0))
        return None
