"""The main window: submit pane beside tabs for jobs, workers and throughput; status bar;
drag-and-drop of .py/.sage files anywhere; notifications; layout persisted with QSettings."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import QSettings, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import (QInputDialog, QLabel, QMainWindow, QMessageBox, QSplitter, QSystemTrayIcon,
                               QTabWidget)

from dsage_gui.panes.jobs_pane import JobsPane
from dsage_gui.panes.submit_pane import SubmitPane
from dsage_gui.panes.throughput_pane import ThroughputPane
from dsage_gui.panes.workers_pane import WorkersPane

SUBMITTABLE = (".py", ".sage")


def droppable_files(urls: list[Any]) -> tuple[list[str], list[str]]:
    """(accepted paths, refused names) for a drop: only local .py/.sage files are accepted."""
    ok, refused = [], []
    for u in urls:
        path = u.toLocalFile() if hasattr(u, "toLocalFile") else str(u)
        if path and Path(path).is_file() and Path(path).suffix in SUBMITTABLE:
            ok.append(path)
        else:
            refused.append(Path(path).name if path else u.toString())
    return ok, refused


def remember_server(furl: str | None) -> list[str]:
    """Recent servers (most recent first), after adding *furl* when given."""
    s = QSettings()
    recent = [r for r in (s.value("servers/recent") or []) if r]
    if isinstance(recent, str):
        recent = [recent]
    if furl:
        recent = [furl] + [r for r in recent if r != furl][:9]
        s.setValue("servers/recent", recent)
        s.setValue("servers/last", furl)
    return recent


class MainWindow(QMainWindow):
    switch_requested = Signal(str)

    def __init__(self, session: Any) -> None:
        super().__init__()
        self.setObjectName("mainWindow")
        self.session = session
        self.setWindowTitle(f"dsage — {session.server_label}")
        self.setAcceptDrops(True)
        self.submit_pane = SubmitPane(session, self)
        self.jobs_pane = JobsPane(session, self)
        self.workers_pane = WorkersPane(session, self)
        self.throughput_pane = ThroughputPane(session, self)
        self.tabs = QTabWidget(self)
        self.tabs.addTab(self.jobs_pane, "Jobs")
        self.tabs.addTab(self.workers_pane, "Workers")
        self.tabs.addTab(self.throughput_pane, "Throughput")
        self.splitter = QSplitter(Qt.Orientation.Horizontal, self)
        self.splitter.addWidget(self.submit_pane)
        self.splitter.addWidget(self.tabs)
        self.splitter.setSizes([380, 820])
        self.setCentralWidget(self.splitter)
        self.server_label = QLabel(session.server_label)
        self.conn_label = QLabel("connected")
        self.counts_label = QLabel("")
        for w in (self.server_label, self.conn_label):
            self.statusBar().addWidget(w)
        self.statusBar().addPermanentWidget(self.counts_label)
        self.tray = QSystemTrayIcon(self) if QSystemTrayIcon.isSystemTrayAvailable() else None
        if self.tray is not None:
            self.tray.setIcon(self.windowIcon())
            self.tray.show()
        self.batches: list[set[int]] = []
        self.notifications: list[str] = []
        self._menus()
        self.submit_pane.files_requested.connect(self.submit_files)
        self.jobs_pane.clone_requested.connect(self.submit_pane.set_code)
        session.connection_changed.connect(self._connection)
        session.stats_changed.connect(self._stats)
        session.jobs_changed.connect(self._watch_batches)
        session.notice.connect(self.show_notice)
        self._restore()

    # -------------------------------------------------------------- menus
    def _menus(self) -> None:
        m = self.menuBar().addMenu("&File")
        for label, slot in (("Submit files…", self.submit_pane.choose_files),
                            ("Connect to server…", self.connect_dialog)):
            a = QAction(label, self)
            a.triggered.connect(slot)
            m.addAction(a)
        quit_ = QAction("Quit", self)
        quit_.setShortcut("Ctrl+Q")
        quit_.triggered.connect(self.close)
        m.addAction(quit_)

    def connect_dialog(self) -> None:
        """Ask for a server (recent ones offered) and switch this window's session to it."""
        recent = remember_server(None)
        furl, ok = QInputDialog.getItem(self, "Connect to a dsage server",
                                        "Server furl or furl file (your key: DSAGE_HOME/dsage_key):",
                                        recent, 0, True)
        if ok and furl.strip():
            remember_server(furl.strip())
            self.switch_requested.emit(furl.strip())

    # -------------------------------------------------------------- drag and drop
    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()
        else:
            event.ignore()

    def dropEvent(self, event: QDropEvent) -> None:
        ok, refused = droppable_files(event.mimeData().urls())
        if refused or not ok:
            names = ", ".join(refused[:5]) or "nothing usable"
            self.show_notice("warning", f"drop refused, nothing submitted: only .py and .sage files can be "
                                        f"submitted ({names})")
            event.ignore()
            return
        event.acceptProposedAction()
        self.submit_files(ok)

    def submit_files(self, paths: list[str]) -> Any:
        from twisted.internet.defer import gatherResults
        opts = self.submit_pane.options()
        opts.pop("name", None)
        ds = [self.session.client.submit_file(p, **opts) for p in paths]
        d = gatherResults(ds, consumeErrors=True)

        def done(ids: list[int]) -> list[int]:
            self.batches.append(set(ids))
            self.show_notice("info", f"submitted {len(ids)} file(s) as job(s) {', '.join(map(str, ids))}")
            return ids
        d.addCallback(done)
        d.addErrback(lambda f: self.session.report_error(getattr(f.value, "subFailure", f)))
        return d

    # -------------------------------------------------------------- status and notifications
    def _connection(self, state: str) -> None:
        self.conn_label.setText(state)

    def _stats(self, s: dict[str, Any]) -> None:
        self.counts_label.setText(f"{s.get('queued', 0)} queued · {s.get('running', 0)} running · "
                                  f"{s.get('completed', 0)} done · {s.get('failed', 0)} failed · "
                                  f"{s.get('workers', 0)} workers")

    def _watch_batches(self, infos: list[Any]) -> None:
        for i in infos:
            if i.status == "failed":
                self.notify(f"job {i.id} failed", (i.error or "").strip().splitlines()[-1:] and
                            (i.error or "").strip().splitlines()[-1] or "")
        finished = {i.id for i in infos if i.done}
        for batch in list(self.batches):
            batch -= finished
            if not batch:
                self.batches.remove(batch)
                self.notify("batch finished", "all jobs of the batch are done")

    def notify(self, title: str, text: str) -> None:
        self.notifications.append(f"{title}: {text}")
        del self.notifications[:-100]
        if self.tray is not None:
            self.tray.showMessage(f"dsage: {title}", text)
        self.statusBar().showMessage(f"{title}: {text}", 8000)

    def show_notice(self, level: str, text: str) -> None:
        self.notifications.append(f"{level}: {text}")
        del self.notifications[:-100]
        self.statusBar().showMessage(text, 10000)

    # -------------------------------------------------------------- persistence
    def _restore(self) -> None:
        s = QSettings()
        geo = s.value("window/geometry")
        if geo is not None:
            self.restoreGeometry(geo)
        else:
            self.resize(1200, 760)
        state = s.value("window/splitter")
        if state is not None:
            self.splitter.restoreState(state)
        self.tabs.setCurrentIndex(int(s.value("window/tab", 0)))

    def save_layout(self) -> None:
        s = QSettings()
        s.setValue("window/geometry", self.saveGeometry())
        s.setValue("window/splitter", self.splitter.saveState())
        s.setValue("window/tab", self.tabs.currentIndex())
        s.sync()

    def closeEvent(self, event: Any) -> None:
        self.save_layout()
        super().closeEvent(event)
