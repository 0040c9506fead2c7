"""Jobs pane: the jobs table (sort, filter by status and text), a detail view, actions, and a
progress line for the newest batch (done/total and ETA)."""
from __future__ import annotations

import time
from typing import Any

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (QAbstractItemView, QComboBox, QFileDialog, QHBoxLayout, QLabel, QLineEdit,
                               QProgressBar, QPushButton, QSplitter, QTableView, QTextEdit, QVBoxLayout,
                               QWidget)

from dsage_core import textsafe
from dsage_core.model.job import ALL_STATES, JobInfo
from dsage_core.model.status import JobStatus
from dsage_core.progress import Batches, elapsed
from dsage_gui.export import result_text, write_rows
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
        self.batches = Batches()
        self.batch_label = QLabel("", self)
        self.batch_label.setObjectName("batchProgress")
        self.batch_bar = QProgressBar(self)
        self.batch_bar.setMaximumWidth(220)
        self.batch_bar.setTextVisible(True)
        progress = QHBoxLayout()
        progress.addWidget(self.batch_label, 1)
        progress.addWidget(self.batch_bar)
        self.batch_label.hide()
        self.batch_bar.hide()
        split = QSplitter(Qt.Orientation.Vertical, self)
        split.addWidget(self.view)
        split.addWidget(self.detail)
        split.setSizes([400, 150])
        layout = QVBoxLayout(self)
        layout.addLayout(bar)
        layout.addLayout(progress)
        layout.addWidget(split, 1)
        self.view.selectionModel().selectionChanged.connect(lambda *a: self.show_detail())
        self._detail_job: JobInfo | None = None
        self._detail_id: int | None = None
        self._fetching = False
        self.refresh = QTimer(self)
        self.refresh.setInterval(1000)
        self.refresh.timeout.connect(self._refresh_running)
        self.refresh.start()
        self._progress_dirty = False
        self.progress_timer = QTimer(self)
        self.progress_timer.setInterval(250)
        self.progress_timer.timeout.connect(self._progress_tick)
        self.progress_timer.start()
        session.jobs_changed.connect(self.model.update_jobs)
        session.jobs_changed.connect(self._jobs_changed)
        self.load_history()

    def load_history(self, limit: int = 100_000) -> Any:
        """The user's existing jobs (newest first, up to *limit*), loaded once at start."""
        d = self.session.client.list_jobs(limit=limit, newest_first=True)
        d.addCallback(lambda infos: (self.model.update_jobs(infos), self._jobs_changed(infos[::-1])))
        d.addErrback(self.session.report_error)
        return d

    # -------------------------------------------------------------- batch progress
    def _jobs_changed(self, infos: list[JobInfo]) -> None:
        self.batches.update(infos, time.time())
        self._progress_dirty = True

    def track_batch(self, ids: list[int], label: str) -> None:
        """This app submitted *ids* together (a drop of files, the demo): one batch named *label*."""
        self.batches.track(ids, label)
        self.refresh_progress()

    def _progress_tick(self) -> None:
        b, _ = self.batches.current()
        if self._progress_dirty or (b is not None and b.done < b.total):  # the ETA moves with the clock
            self.refresh_progress()

    def refresh_progress(self) -> None:
        """Show the newest batch of two or more jobs: done/total, states, ETA (or how long it took)."""
        self._progress_dirty = False
        b, others = self.batches.current()
        if b is None:
            self.batch_label.hide()
            self.batch_bar.hide()
            return
        text = self.batches.describe(b, time.time())
        if others:
            text += f"  (+{others} more batch{'es' if others > 1 else ''} running)"
        self.batch_label.setText(text)
        self.batch_bar.setRange(0, b.total)
        self.batch_bar.setValue(b.done)
        self.batch_bar.setFormat("%v/%m")
        self.batch_label.show()
        self.batch_bar.show()

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
        ran = elapsed(job, time.time())
        if ran is not None:
            parts[0] += f"  {ran:.2f} s"
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
        self.view.viewport().update()  # Elapsed and ETA of running jobs move with the clock
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

    def copy_result(self) -> Any:
        """Copy the first selected job's whole result (fetched from the server, not the table's
        preview) or its whole error to the clipboard; fires with the text copied."""
        jobs = self.selected_jobs()
        if not jobs:
            return None
        d = self.session.client.get_record(jobs[0].id, with_result=True)

        def copy(row: dict[str, Any]) -> str:
            text = result_text(row)
            QGuiApplication.clipboard().setText(text)
            self.session.post("info", f"copied the {'result' if row.get('status') == JobStatus.COMPLETED else 'error'} "
                                      f"of job {row['id']} ({len(text)} characters)")
            return text
        return d.addCallback(copy).addErrback(self.session.report_error)

    def export_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export jobs", "jobs.csv", "CSV (*.csv);;JSON (*.json)")
        if path:
            self.export(path)

    def export(self, path: str) -> Any:
        """Write the selected jobs (all visible ones if none is selected) to CSV or JSON, each with
        its whole result and error (fetched from the server) and ISO 8601 times; fires with the
        number of jobs written."""
        from twisted.internet.defer import gatherResults
        jobs = self.selected_jobs() or [self.model.job_at(self.proxy.mapToSource(self.proxy.index(r, 0)).row())
                                        for r in range(self.proxy.rowCount())]
        client = self.session.client
        d = gatherResults([client.get_record(j.id, with_result=True) for j in jobs], consumeErrors=True)

        def write(records: list[dict[str, Any]]) -> int:
            write_rows(path, records)
            self.session.post("info", f"exported {len(records)} job(s) to {path}")
            return len(records)
        d.addCallback(write)
        d.addErrback(lambda f: (self.session.report_error(getattr(f.value, "subFailure", f)), 0)[1])
        return d
