"""Throughput pane: completed jobs/s, queue depth, running jobs and busy slots over time.

Curves are created once; samples go into ring buffers (``dsage_core.stats.History``) when the
server's counters arrive; a QTimer redraws at a fixed rate, never per event.
"""
from __future__ import annotations

from typing import Any

import pyqtgraph as pg
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from dsage_core.stats import History

WINDOWS = {"1 minute": 60, "10 minutes": 600, "1 hour": 3600}
CURVES = (("completed_per_s", "completed jobs/s", "#1e8449"), ("queued", "queued", "#7f8c8d"),
          ("running", "running", "#2471a3"), ("busy_slots", "busy slots", "#b9770e"))


class ThroughputPane(QWidget):
    def __init__(self, session: Any, parent: QWidget | None = None, redraw_ms: int = 500) -> None:
        super().__init__(parent)
        self.setObjectName("throughputPane")
        self.history = History()
        self.window_s = 600
        self.combo = QComboBox(self)
        self.combo.addItems(list(WINDOWS))
        self.combo.setCurrentText("10 minutes")
        self.combo.currentTextChanged.connect(lambda t: setattr(self, "window_s", WINDOWS[t]))
        self.summary = QLabel(self)
        pg.setConfigOptions(antialias=False, background="w", foreground="k")
        self.rate_plot = pg.PlotWidget(axisItems={"bottom": pg.DateAxisItem()})
        self.count_plot = pg.PlotWidget(axisItems={"bottom": pg.DateAxisItem()})
        self.rate_plot.setLabel("left", "jobs/s")
        self.count_plot.addLegend(offset=(5, 5))
        self.curves = {}
        for key, label, color in CURVES:
            plot = self.rate_plot if key == "completed_per_s" else self.count_plot
            c = plot.plot(name=label, pen=pg.mkPen(color, width=2))
            c.setDownsampling(auto=True, method="peak")
            c.setClipToView(True)
            self.curves[key] = c
        top = QHBoxLayout()
        top.addWidget(QLabel("Window:", self))
        top.addWidget(self.combo)
        top.addWidget(self.summary, 1)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.rate_plot, 1)
        layout.addWidget(self.count_plot, 1)
        self.redraws = 0
        self.timer = QTimer(self)
        self.timer.setInterval(redraw_ms)
        self.timer.timeout.connect(self.redraw)
        self.timer.start()
        self.last: dict[str, Any] = {}
        session.stats_changed.connect(self.add_sample)

    def add_sample(self, stats: dict[str, Any]) -> None:
        self.history.add(stats)
        self.last = stats

    def redraw(self) -> None:
        t, series = self.history.window(self.window_s)
        if len(t) == 0:
            return
        for key, curve in self.curves.items():
            curve.setData(t, series[key])
        s = self.last
        self.summary.setText(f"{s.get('rate_1m', 0):.1f} jobs/s (1 min) · {s.get('queued', 0)} queued · "
                             f"{s.get('running', 0)} running · {s.get('busy_slots', 0)}/{s.get('total_slots', 0)} slots")
        self.redraws += 1
