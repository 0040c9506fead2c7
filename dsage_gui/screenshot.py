"""``--screenshot``: wait (on a timer, checking model state) until the panes show live data, then grab."""
from __future__ import annotations

from typing import Any, Callable

from PySide6.QtCore import QTimer

from dsage_core.model.job import TERMINAL


def is_live(win: Any) -> bool:
    """Jobs listed and finished, workers listed, charts drawn."""
    jobs = win.jobs_pane.model.rows
    return (bool(jobs) and all(j.status in TERMINAL for j in jobs) and win.workers_pane.model.rowCount() > 0
            and win.throughput_pane.redraws >= 3)


def when_live(win: Any, path: str, then: Callable[[], None], timeout_s: float = 60.0) -> QTimer:
    timer = QTimer(win)
    ticks = {"n": 0}

    def check() -> None:
        ticks["n"] += 1
        late = ticks["n"] * 0.25 > timeout_s
        if not (is_live(win) or late):
            return
        if win.jobs_pane.model.rowCount() and not win.jobs_pane.detail.toPlainText() and not late:
            if not win.jobs_pane.selected_jobs():
                win.jobs_pane.view.selectRow(0)  # show a job's detail too; grab once it arrived
            return
        if True:
            timer.stop()
            win.grab().save(path)
            print(f"saved {path}")
            stem = path[:-4] if path.endswith(".png") else path
            for i in range(1, win.tabs.count()):  # one more picture per tab, for the README
                win.tabs.setCurrentIndex(i)
                extra = f"{stem}-{win.tabs.tabText(i).lower()}.png"
                win.grab().save(extra)
                print(f"saved {extra}")
            win.tabs.setCurrentIndex(0)
            then()
    timer.timeout.connect(check)
    timer.start(250)
    return timer
