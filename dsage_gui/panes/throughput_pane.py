"""Throughput pane: completed jobs/s, queue depth, running jobs and busy slots over time.

Samples go into ring buffers (``dsage_core.stats.History``) when the server's counters arrive (once per
second, whatever the number of jobs); a QTimer redraws the curves at a fixed rate, never per event.
"""
from __future__ import annotations

from typing import Any

from PySide6.QtCore import QSettings, QTimer
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from dsage_core.stats import History, RateMeter
from dsage_gui.charts.throughput import CURVES, ThroughputPlot

WINDOWS = {"1 minute": 60, "10 minutes": 600, "30 minutes": 1800, "1 hour": 3600}
__all__ = ["ThroughputPane", "WINDOWS", "CURVES"]


class ThroughputPane(QWidget):
    def __init__(self, session: Any, parent: QWidget | None = None, redraw_ms: int = 500) -> None:
        super().__init__(parent)
        self.setObjectName("throughputPane")
        self.history = History()
        self.updates = RateMeter(10)  # job updates/s reaching this window (the GUI's own load)
        self.window_s = 600
        self.combo = QComboBox(self)
        self.combo.setObjectName("throughputWindow")
        self.combo.addItems(list(WINDOWS))
        self.combo.currentTextChanged.connect(self.set_window)
        self.combo.setCurrentText(str(QSettings().value("throughput/window", "10 minutes")))
        self.set_window(self.combo.currentText())
        self.summary = QLabel(self)
        self.plot = ThroughputPlot(self)
        self.curves = self.plot.curves
        top = QHBoxLayout()
        top.addWidget(QLabel("Window:", self))
        top.addWidget(self.combo)
        top.addWidget(self.summary, 1)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.plot, 1)
        self.redraws = 0
        self.timer = QTimer(self)
        self.timer.setInterval(redraw_ms)
        self.timer.timeout.connect(self.redraw)
        self.timer.start()
        self.last: dict[str, Any] = {}
        session.stats_changed.connect(self.add_sample)
        session.jobs_changed.connect(lambda infos: self.updates.add(len(infos)))

    def set_window(self, label: str) -> None:
        if label in WINDOWS:
            self.window_s = WINDOWS[label]
            QSettings().setValue("throughput/window", label)

    def add_sample(self, stats: dict[str, Any]) -> None:
        self.history.add(stats)
        self.last = stats

    def redraw(self) -> None:
        t, series = self.history.window(self.window_s)
        if len(t) == 0:
            return
        self.plot.set_data(t, series)
        s = self.last
        self.summary.setText(
            f"{s.get('rate_1m', 0):.1f} jobs/s (1 min) · {s.get('queued', 0)} queued · "
            f"{s.get('running', 0)} running · {s.get('busy_slots', 0)}/{s.get('total_slots', 0)} slots · "
            f"{self.updates.rate():.0f} updates/s received")
        self.redraws += 1
