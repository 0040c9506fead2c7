"""ThroughputPlot: two pyqtgraph plots (rate; counts) whose curves are created once.

Feed it whole arrays with :meth:`ThroughputPlot.set_data` from a timer; it never reacts to events.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtWidgets import QVBoxLayout, QWidget

CURVES = (("completed_per_s", "completed jobs/s", "#1e8449"), ("queued", "queue depth", "#7f8c8d"),
          ("running", "running", "#2471a3"), ("busy_slots", "busy slots", "#b9770e"))


class ThroughputPlot(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        pg.setConfigOptions(antialias=False, background="w", foreground="k")
        self.rate_plot = pg.PlotWidget(axisItems={"bottom": pg.DateAxisItem()})
        self.count_plot = pg.PlotWidget(axisItems={"bottom": pg.DateAxisItem()})
        self.rate_plot.setLabel("left", "jobs/s")
        self.count_plot.setLabel("left", "jobs / slots")
        self.count_plot.addLegend(offset=(5, 5))
        self.count_plot.setXLink(self.rate_plot)
        self.curves: dict[str, Any] = {}
        for key, label, color in CURVES:
            plot = self.rate_plot if key == "completed_per_s" else self.count_plot
            c = plot.plot(name=label, pen=pg.mkPen(color, width=2))
            c.setDownsampling(auto=True, method="peak")
            c.setClipToView(True)
            self.curves[key] = c
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.rate_plot, 1)
        layout.addWidget(self.count_plot, 1)

    def set_data(self, t: np.ndarray, series: dict[str, np.ndarray]) -> None:
        for key, curve in self.curves.items():
            curve.setData(t, series[key])
