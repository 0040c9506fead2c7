"""``--screenshot``: wait (on a timer, checking model state) until the panes show live data, then grab."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable

from PySide6.QtCore import QTimer

from dsage_core.model.job import TERMINAL


def is_live(win: Any) -> bool:
    """Jobs listed and finished, workers listed, charts drawn."""
    jobs = win.jobs_pane.model.rows
    return (bool(jobs) and all(j.status in TERMINAL for j in jobs) and win.workers_pane.model.rowCount() > 0
            and win.throughput_pane.redraws >= 3)


def save_grabs(win: Any, path: str) -> list[str]:
    """The window as *path*, plus one picture per further tab (``stem-<tab>.png``); returns the files saved."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    stem = path[:-4] if path.endswith(".png") else path
    shots = [(0, path)] + [(i, f"{stem}-{win.tabs.tabText(i).lower()}.png") for i in range(1, win.tabs.count())]
    saved = []
    for i, target in shots:
        win.tabs.setCurrentIndex(i)
        if win.grab().save(target):
            saved.append(target)
            print(f"saved {target}")
        else:
            print(f"dsage gui: could not write {target}", file=sys.stderr)
    win.tabs.setCurrentIndex(0)
    return saved


def when_live(win: Any, path: str, then: Callable[[bool], None], timeout_s: float = 60.0) -> QTimer:
    """Poll every 250 ms; once live (or after *timeout_s*), select a job so its detail shows, grab,
    and call ``then(ok)`` (ok: every picture was written)."""
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
        timer.stop()
        if late:
            print("dsage gui: the panes did not show live data in time; grabbing anyway", file=sys.stderr)
        saved = save_grabs(win, path)
        then(len(saved) == win.tabs.count())
    timer.timeout.connect(check)
    timer.start(250)
    return timer
