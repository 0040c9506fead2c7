"""JobsTableModel: a QAbstractTableModel over the user's jobs, built for 100,000 rows.

Updates are buffered and applied on a timer tick: new rows in one insert block, changed rows as
one ``dataChanged`` span per tick. No per-row widgets, no per-event signals.
"""
from __future__ import annotations

import time
from typing import Any

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, Qt, QTimer
from PySide6.QtGui import QBrush, QColor

from dsage_core import textsafe
from dsage_core.model.job import JobInfo
from dsage_core.model.status import JobStatus
from dsage_core.progress import elapsed, fmt_seconds, job_eta
from dsage_gui.models.base import ListTableModel

COLUMNS = ("ID", "Name", "Status", "Worker", "Created", "Elapsed", "Result", "Progress", "ETA")
#: "running" means a child runs it; "assigned" waits in a worker's buffer; "paused" is on a paused worker
STATUS_COLORS = {JobStatus.QUEUED: "#7f8c8d", JobStatus.ASSIGNED: "#5d6d7e", JobStatus.RUNNING: "#2471a3",
                 JobStatus.PAUSED: "#d68910", JobStatus.COMPLETED: "#1e8449", JobStatus.FAILED: "#c0392b",
                 JobStatus.KILLED: "#935116", JobStatus.TIMED_OUT: "#b9770e", JobStatus.LOST: "#6c3483",
                 JobStatus.WAITING: "#a6acaf"}
SORT_KEYS = ("id", "name", "status", "worker", "created", None, "result_preview", "progress", None)
ELAPSED, ETA = 5, 8   #: computed columns (they change with the clock: the pane repaints them)


class JobsTableModel(ListTableModel):
    columns = COLUMNS

    def __init__(self, parent: Any = None, tick_ms: int = 100, max_per_tick: int = 10_000) -> None:
        super().__init__(parent)
        self.max_per_tick = max_per_tick
        self.rows: list[JobInfo] = []
        self.index_of: dict[int, int] = {}
        self._pending: dict[int, JobInfo] = {}
        self.sort_column = 0
        self.sort_order = Qt.SortOrder.DescendingOrder
        self._brushes = {k: QBrush(QColor(v)) for k, v in STATUS_COLORS.items()}
        self.timer = QTimer(self)
        self.timer.setInterval(tick_ms)
        self.timer.timeout.connect(self.apply_pending)
        self.timer.start()

    # -------------------------------------------------------------- feeding
    def update_jobs(self, infos: list[JobInfo]) -> None:
        """Buffer updates (latest wins); they are applied on the next tick."""
        for i in infos:
            prev = self._pending.get(i.id)
            if prev is not None and i.name == "" and prev.name:
                i.name, i.created = prev.name, prev.created
            self._pending[i.id] = i

    def apply_pending(self) -> None:
        """Apply at most ``max_per_tick`` buffered updates (the rest waits for the next tick)."""
        if not self._pending:
            return
        if len(self._pending) <= self.max_per_tick:
            pending, self._pending = self._pending, {}
        else:
            keys = list(self._pending)[: self.max_per_tick]
            pending = {k: self._pending.pop(k) for k in keys}
        new, lo, hi = [], None, None
        for jid, info in pending.items():
            row = self.index_of.get(jid)
            if row is None:
                new.append(info)
                continue
            old = self.rows[row]
            if not info.name:
                info.name = old.name
            if not info.created:
                info.created = old.created
            self.rows[row] = info
            lo = row if lo is None else min(lo, row)
            hi = row if hi is None else max(hi, row)
        if lo is not None:
            self.dataChanged.emit(self.index(lo, 0), self.index(hi, len(COLUMNS) - 1))
        if new:
            self._insert(new)

    def _insert(self, new: list[JobInfo]) -> None:
        """New rows go where the current sort puts them: at the top for the default (newest first)
        and at the end otherwise (re-sorting 100k rows per tick would stall the loop)."""
        key = SORT_KEYS[self.sort_column] or "id"
        new.sort(key=lambda i: (getattr(i, key) if getattr(i, key) is not None else ""),
                 reverse=self.sort_order == Qt.SortOrder.DescendingOrder)
        at_top = self.sort_column == 0 and self.sort_order == Qt.SortOrder.DescendingOrder
        first = 0 if at_top else len(self.rows)
        self.beginInsertRows(QModelIndex(), first, first + len(new) - 1)
        if at_top:
            self.rows[0:0] = new
            self.index_of = {j.id: r for r, j in enumerate(self.rows)}
        else:
            for k, info in enumerate(new):
                self.index_of[info.id] = first + k
            self.rows.extend(new)
        self.endInsertRows()

    def sort(self, column: int, order: Qt.SortOrder = Qt.SortOrder.AscendingOrder) -> None:
        """Sort in Python with a key function (one pass), not by Qt comparing cells through data()."""
        self.sort_column, self.sort_order = column, order
        self.layoutAboutToBeChanged.emit()
        key = SORT_KEYS[column]

        now = time.time()

        def k(j: JobInfo) -> Any:
            if key is None:
                return (elapsed(j, now) if column == ELAPSED else job_eta(j, now)) or 0.0
            v = getattr(j, key)
            return (v is not None, v if v is not None else 0) if key in ("progress", "created") else (v or "")
        self.rows.sort(key=k, reverse=order == Qt.SortOrder.DescendingOrder)
        self.index_of = {j.id: r for r, j in enumerate(self.rows)}
        self.layoutChanged.emit()

    def clear(self) -> None:
        self.beginResetModel()
        self.rows, self.index_of, self._pending = [], {}, {}
        self.endResetModel()

    def job_at(self, row: int) -> JobInfo:
        return self.rows[row]

    # -------------------------------------------------------------- Qt model API
    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        job = self.row_at(index)
        if job is None:
            return None
        col = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            return self._text(job, col)
        if role == Qt.ItemDataRole.ForegroundRole and col == 2:
            return self._brushes.get(job.status)
        if role == Qt.ItemDataRole.UserRole:
            return self._sort_value(job, col)
        if role == Qt.ItemDataRole.ToolTipRole and col == 6 and job.error:
            return textsafe.block(job.error[-2000:])
        return None

    @staticmethod
    def _text(job: JobInfo, col: int) -> str:
        if col == 0:
            return str(job.id)
        if col == 1:
            return textsafe.line(job.name)   # text from peers: no control or bidi characters
        if col == 2:
            agreement = job.extra.get("replicas") if job.extra else None   # "2/2 agree" (replicas)
            return f"{job.status} ({textsafe.line(agreement)[:60]})" if agreement else job.status
        if col == 3:
            return textsafe.line(job.worker)
        if col == 4:
            return time.strftime("%H:%M:%S", time.localtime(job.created)) if job.created else ""
        if col == ELAPSED:
            d = elapsed(job, time.time())
            return f"{d:.2f} s" if d is not None and d < 60 else fmt_seconds(d)
        if col == 6:
            if job.status == JobStatus.COMPLETED:
                return textsafe.line(job.result_preview)
            err = (job.error or "").strip().splitlines()
            return textsafe.line(err[-1]) if err else ""
        if col == 7:
            return f"{job.progress * 100:.0f}%" if job.progress is not None else ""
        if col == ETA:
            return fmt_seconds(job_eta(job, time.time()))
        return ""

    @staticmethod
    def _sort_value(job: JobInfo, col: int) -> Any:
        if col in (ELAPSED, ETA):
            now = time.time()
            return (elapsed(job, now) if col == ELAPSED else job_eta(job, now)) or 0.0
        key = SORT_KEYS[col]
        v = getattr(job, key) if key else None
        return v if v is not None else ""
