"""Workers pane: connected workers, and launching / stopping local worker processes."""
from __future__ import annotations

import os
from typing import Any

import shiboken6
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QSpinBox, QTableView, QVBoxLayout, QWidget

from dsage_gui.models.workers_model import WorkersTableModel


class WorkersPane(QWidget):
    def __init__(self, session: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("workersPane")
        self.session = session
        self.model = WorkersTableModel(self)
        self.view = QTableView(self)
        self.view.setModel(self.model)
        self.view.verticalHeader().setVisible(False)
        self.view.horizontalHeader().setStretchLastSection(True)
        self.slots = QSpinBox(self)
        self.slots.setRange(1, max(1, os.cpu_count() or 1) * 4)
        self.slots.setValue(max(1, (os.cpu_count() or 2) - 1))
        self.launch = QPushButton("Launch local worker", self)
        self.launch.clicked.connect(self.launch_worker)
        self.stop = QPushButton("Stop local workers", self)
        self.stop.clicked.connect(self.stop_workers)
        self.local = QLabel(self)
        bar = QHBoxLayout()
        bar.addWidget(QLabel("Slots:", self))
        bar.addWidget(self.slots)
        bar.addWidget(self.launch)
        bar.addWidget(self.stop)
        bar.addWidget(self.local, 1)
        layout = QVBoxLayout(self)
        layout.addLayout(bar)
        layout.addWidget(self.view, 1)
        can_launch = session.embedded is not None
        self.launch.setEnabled(can_launch)
        self.stop.setEnabled(can_launch)
        self.known = False   #: the worker list arrived at least once (until then 0 rows means nothing)
        session.workers_changed.connect(self._set_workers)
        self._update_local()
        session.client.workers().addCallback(self._set_workers).addErrback(session.report_error)

    def _set_workers(self, workers: list[dict[str, Any]]) -> None:
        self.known = True
        self.model.set_workers(workers)

    def launch_worker(self) -> Any:
        emb = self.session.embedded
        if emb is None:
            return None
        w = emb.start_worker(self.slots.value())
        self._update_local()
        return w

    def stop_workers(self) -> None:
        emb = self.session.embedded
        if emb is None:
            return
        for w in list(emb.workers):
            w.stop().addBoth(lambda _: self._update_local())
        emb.workers.clear()
        self._update_local()

    def _update_local(self) -> None:
        if not shiboken6.isValid(self.local):  # a worker stopped after the window closed
            return
        emb = self.session.embedded
        n = len(emb.workers) if emb else 0
        self.local.setText(f"{n} local worker process(es)" if emb else "connected to a remote server")
