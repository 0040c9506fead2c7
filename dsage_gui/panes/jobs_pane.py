"""Jobs pane: the jobs table (sort, filter by status and text), a detail view, and actions."""
from __future__ import annotations

import csv
import json
from typing import Any

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (QAbstractItemView, QComboBox, QFileDialog, QHBoxLayout, QLineEdit,
                               QPushButton, QSplitter, QTableView, QTextEdit, QVBoxLayout, QWidget)

from dsage_core import textsafe
from dsage_core.model.job import ALL_STATES, JobInfo
from dsage_gui.models.jobs_model import JobsTableModel
from dsage_gui.models.proxies import JobsFilter

__all__ = ["JobsPane", "JobsFilter"]


class JobsPane(QWidget):
    clone_requested = Signal(str)

    def __init__(self, session: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("jobsPane")
        self.session = session
        self.model = JobsTableModel(self)
        self.proxy = JobsFilter(self)
        self.proxy.setSourceModel(self.model)
        self.view = QTableView(self)
        self.view.setObjectName("jobsView")
        self.view.setModel(self.proxy)
        self.view.setSortingEnabled(True)
        self.view.sortByColumn(0, Qt.SortOrder.DescendingOrder)
        self.view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.view.verticalHeader().setVisible(False)
        self.view.verticalHeader().setDefaultSectionSize(22)
        self.view.horizontalHeader().setStretchLastSection(True)
        self.status_filter = QComboBox(self)
        self.status_filter.addItems(["all"] + list(ALL_STATES))
        self.status_filter.currentTextChanged.connect(lambda s: self.proxy.set_status(None if s == "all" else s))
        self.text_filter = QLineEdit(self)
        self.text_filter.setPlaceholderText("filter…")
        self.text_filter.textChanged.connect(self.proxy.set_text)
        self.detail = QTextEdit(self)
        self.detail.setReadOnly(True)
        self.detail.setObjectName("jobDetail")
        bar = QHBoxLayout()
        bar.addWidget(self.status_filter)
        bar.addWidget(self.text_filter, 1)
        self.buttons = {}
        for label, slot in (("Kill", self.kill_selected), ("Resubmit", self.resubmit_selected),
                            ("Clone to editor", self.clone_selected), ("Copy result", self.copy_result),
                            ("Export…", self.export_dialog)):
            b = QPushButton(label, self)
            b.clicked.connect(slot)
            bar.addWidget(b)
            self.buttons[label] = b
        split = QSplitter(Qt.Orientation.Vertical, self)
        split.addWidget(self.view)
        split.addWidget(self.detail)
        split.setSizes([400, 150])
        layout = QVBoxLayout(self)
        layout.addLayout(bar)
        layout.addWidget(split, 1)
        self.view.selectionModel().selectionChanged.connect(lambda *a: self.show_detail())
        self._detail_job: JobInfo | None = None
        self._detail_id: int | None = None
        self._fetching = False
        self.refresh = QTimer(self)
        self.refresh.setInterval(1000)
        self.refresh.timeout.connect(self._refresh_running)
        self.refresh.start()
        session.jobs_changed.connect(self.model.update_jobs)
        self.load_history()

    def load_history(self, limit: int = 100_000) -> Any:
        """The user's existing jobs (newest first, up to *limit*), loaded once at start."""
        d = self.session.client.list_jobs(limit=limit, newest_first=True)
        d.addCallback(self.model.update_jobs)
        d.addErrback(self.session.report_error)
        return d

    # -------------------------------------------------------------- selection and detail
    def selected_jobs(self) -> list[JobInfo]:
        rows = {self.proxy.mapToSource(i).row() for i in self.view.selectionModel().selectedRows()}
        return [self.model.job_at(r) for r in sorted(rows)]

    def show_detail(self) -> Any:
        """Fetch the first selected job in full (code, output, result, traceback) and show it."""
        jobs = self.selected_jobs()
        if not jobs:
            self._detail_job = None
            self.detail.clear()
            return None
        self._detail_id = jobs[0].id
        self._fetching = True
        d = self.session.client.get_job(jobs[0].id)
        d.addCallback(self._render_detail)
        d.addErrback(self.session.report_error)
        d.addBoth(lambda _: setattr(self, "_fetching", False))
        return d

    def _render_detail(self, job: JobInfo) -> None:
        if job.id != self._detail_id:
            return  # the selection moved on while this was in flight
        same = self._detail_job is not None and self._detail_job.id == job.id
        self._detail_job = job
        parts = [f"Job {job.id}  {job.name}  [{job.status}]  worker: {job.worker or '-'}"]
        if job.duration is not None:
            parts[0] += f"  {job.duration:.2f} s"
        if job.progress is not None:
            parts.append(f"progress: {job.progress * 100:.0f}% {job.progress_message or ''}")
        parts += ["--- code ---", job.code or "(function)"]
        if job.output:
            parts += ["--- output ---", job.output]
        if job.result_preview is not None:
            parts += ["--- result ---", job.result_preview]
        if job.error:
            parts += ["--- traceback ---", job.error]
        bar = self.detail.verticalScrollBar()
        at_end, where = bar.value() >= bar.maximum() - 4, bar.value()
        self.detail.setPlainText(textsafe.block("\n".join(parts)))  # text from peers: no controls
        if same:  # a refresh: follow live output like a terminal, unless the user scrolled up
            bar.setValue(bar.maximum() if at_end else where)

    def _refresh_running(self) -> None:
        j = self._detail_job
        if j is not None and not j.done and not self._fetching and self.isVisible():
            self.show_detail()  # live output while it runs (one request in flight at most)

    # -------------------------------------------------------------- actions
    def kill_selected(self) -> None:
        for j in self.selected_jobs():
            if not j.done:
                self.session.client.kill(j.id).addErrback(self.session.report_error)

    def resubmit_selected(self) -> None:
        """Submit the selected jobs' code again, with their name, priority and options."""
        for j in self.selected_jobs():
            d = self.session.client.get_job(j.id)
            d.addCallback(self._resubmit)
            d.addErrback(self.session.report_error)

    def _resubmit(self, job: JobInfo) -> Any:
        if not job.code:
            self.session.post("warning", f"job {job.id} is a function job; resubmit it from Python")
            return None
        mode = "expr" if job.kind == "expr" else "exec"
        return self.session.client.submit_code(job.code, mode=mode, sage=job.sage, name=job.name,
                                               priority=job.priority, trusted_only=job.trusted_only)

    def clone_selected(self) -> None:
        """Put the first selected job's code into the editor."""
        jobs = self.selected_jobs()
        if jobs:
            self.session.client.get_job(jobs[0].id).addCallback(
                lambda j: j.code and self.clone_requested.emit(j.code)).addErrback(self.session.report_error)

    def copy_result(self) -> None:
        """Copy the first selected job's result preview (or its error) to the clipboard."""
        jobs = self.selected_jobs()
        if jobs:
            j = jobs[0]
            QGuiApplication.clipboard().setText(j.result_preview if j.status == "completed" else (j.error or ""))

    def export_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export jobs", "jobs.csv", "CSV (*.csv);;JSON (*.json)")
        if path:
            self.export(path)

    def export(self, path: str) -> int:
        """Write the selected jobs (all visible ones if none is selected) to CSV or JSON."""
        jobs = self.selected_jobs() or [self.model.job_at(self.proxy.mapToSource(self.proxy.index(r, 0)).row())
                                        for r in range(self.proxy.rowCount())]
        fields = ["id", "name", "status", "worker", "created", "started", "finished", "result_preview", "error",
                  "progress"]
        rows = [{f: getattr(j, f) for f in fields} for j in jobs]
        if path.endswith(".json"):
            with open(path, "w") as f:
                json.dump(rows, f, indent=1)
        else:
            with open(path, "w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=fields)
                w.writeheader()
                w.writerows(rows)
        return len(rows)
