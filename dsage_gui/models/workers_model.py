"""WorkersTableModel over the worker dicts the server pushes."""
from __future__ import annotations

import time
from typing import Any

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, Qt

from dsage_core import textsafe
from dsage_gui.models.base import ListTableModel

COLUMNS = ("Worker", "Host", "Slots busy/total", "CPUs", "Memory", "Identity", "Last heartbeat", "Jobs done")


class WorkersTableModel(ListTableModel):
    columns = COLUMNS

    def set_workers(self, workers: list[dict[str, Any]]) -> None:
        self.beginResetModel()  # a handful of rows: a reset is the simplest correct update
        self.rows = sorted(workers, key=lambda w: w.get("id", ""))
        self.endResetModel()

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        w = self.row_at(index)
        if role != Qt.ItemDataRole.DisplayRole or w is None:
            return None
        c = index.column()
        # worker-supplied text (an anonymous worker chose it): no control or bidi characters
        if c == 0:
            return textsafe.line(w.get("id", ""))
        if c == 1:
            return textsafe.line(w.get("host", ""))
        if c == 2:
            return f"{w.get('busy', 0)}/{w.get('slots', 0)}" + (" (paused)" if w.get("paused") else "")
        if c == 3:
            return textsafe.line(w.get("cpus") or "?")
        if c == 4:
            mem = w.get("memory")
            return f"{mem / 2**30:.1f} GiB" if isinstance(mem, (int, float)) else "?"
        if c == 5:
            return "anonymous" if w.get("anonymous") else f"keyed ({textsafe.line(w.get('user', ''))})"
        if c == 6:
            t = w.get("last_heartbeat")
            return time.strftime("%H:%M:%S", time.localtime(t)) if t else ""
        if c == 7:
            return textsafe.line(w.get("jobs_done", 0))
        return None
