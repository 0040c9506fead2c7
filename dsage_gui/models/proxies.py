"""Sort/filter proxies over the table models."""
from __future__ import annotations

from typing import Any

from PySide6.QtCore import QSortFilterProxyModel, Qt


class JobsFilter(QSortFilterProxyModel):
    """Status filter plus a case-insensitive text filter over id, name, worker, result and error.

    Sorting is delegated to the source (:meth:`JobsTableModel.sort`, one Python key sort) instead of
    Qt comparing 100,000 cells through ``data()``; dynamic re-sorting is off for the same reason.
    """

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self.status: str | None = None
        self.text = ""
        self.setDynamicSortFilter(False)

    def set_status(self, status: str | None) -> None:
        self.beginFilterChange()
        self.status = None if status in (None, "", "all") else status
        self._refilter()

    def set_text(self, text: str) -> None:
        self.beginFilterChange()
        self.text = text.lower()
        self._refilter()

    def _refilter(self) -> None:
        # While a filter is set, rows re-filter as they change (a job leaving "running" disappears from
        # the "running" view); with no filter nothing needs re-checking, so the cost is off.
        self.setDynamicSortFilter(bool(self.status or self.text))
        self.endFilterChange(QSortFilterProxyModel.Direction.Rows)

    def sort(self, column: int, order: Qt.SortOrder = Qt.SortOrder.AscendingOrder) -> None:
        self.sourceModel().sort(column, order)  # the source sorts itself; the proxy keeps its order

    def filterAcceptsRow(self, row: int, parent: Any) -> bool:
        if not self.status and not self.text:
            return True
        job = self.sourceModel().rows[row]
        if self.status and job.status != self.status:
            return False
        if self.text:
            hay = f"{job.id} {job.name} {job.worker or ''} {job.result_preview or ''} {job.error or ''}".lower()
            return self.text in hay
        return True
