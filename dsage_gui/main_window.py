"""The main window: submit pane beside tabs for jobs, workers and throughput; status bar;
drag-and-drop of .py/.sage files anywhere (copied, never moved); notifications; layout persisted
with QSettings; a question before quitting leaves jobs unfinished.

Questions to the user go through :attr:`MainWindow.ask` (``ask(title, text) -> bool``), which
tests replace: no modal dialog ever blocks a test."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import QSettings, Qt, Signal
from PySide6.QtGui import QAction, QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QDialog, QLabel, QMainWindow, QMessageBox, QSplitter, QTabWidget

from dsage_core.model.status import JobStatus
from dsage_gui.bridge import deferred_slot
from dsage_gui.dialogs.connect_dialog import ConnectDialog, remember_server
from dsage_gui.notifications import Notifier
from dsage_gui.panes.jobs_pane import JobsPane
from dsage_gui.panes.submit_pane import SubmitPane
from dsage_gui.panes.throughput_pane import ThroughputPane
from dsage_gui.panes.workers_pane import WorkersPane
from dsage_gui.resources import app_icon

SUBMITTABLE = (".py", ".sage")
CONNECTION_STYLE = {"connected": "color: #1e8449;", "reconnecting": "color: white; background: #d68910;",
                    "disconnected": "color: white; background: #c0392b;"}
__all__ = ["MainWindow", "droppable_files", "remember_server", "ask_user"]
#: the status bar's job counts, in this order (every state, the end states included)
_LABELS = {JobStatus.COMPLETED: "done", JobStatus.TIMED_OUT: "timed out"}
COUNTS = tuple((s, _LABELS.get(s, s.value)) for s in JobStatus)


def ask_user(parent: Any, title: str, text: str) -> bool:
    """A Yes/No question (the default :attr:`MainWindow.ask`)."""
    answer = QMessageBox.question(parent, title, text, QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                                  QMessageBox.StandardButton.No)
    return answer == QMessageBox.StandardButton.Yes


def droppable_files(urls: list[Any]) -> tuple[list[str], list[str]]:
    """(accepted paths, refused names) for a drop: only existing local .py/.sage files are accepted."""
    ok, refused = [], []
    for u in urls:
        path = u.toLocalFile() if hasattr(u, "toLocalFile") else str(u)
        if path and Path(path).is_file() and Path(path).suffix in SUBMITTABLE:
            ok.append(path)
        else:
            refused.append(Path(path).name if path else u.toString())
    return ok, refused


class MainWindow(QMainWindow):
    switch_requested = Signal(str, str)  # server, key ("" = the default key)

    def __init__(self, session: Any) -> None:
        super().__init__()
        self.setObjectName("mainWindow")
        self.session = session
        self.setWindowTitle(f"dsage — {session.server_label}")
        self.setWindowIcon(app_icon())
        self.setAcceptDrops(True)
        self.ask = lambda title, text: ask_user(self, title, text)
        self._offered_workers = False
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
        self._status_bar()
        self.notifier = Notifier(self.statusBar(), session.hub, icon_from=self, parent=self)
        self._menus()
        self.submit_pane.files_requested.connect(self.submit_files)
        self.submit_pane.submitted.connect(lambda _jid: self.check_workers())
        self.jobs_pane.clone_requested.connect(self.submit_pane.set_code)
        session.connection_changed.connect(self._connection)
        session.stats_changed.connect(self._stats)
        session.jobs_changed.connect(self.notifier.jobs_changed)
        self._connection(session.connection)
        self._restore()

    @property
    def notifications(self) -> list[str]:
        """Notices posted in this session (newest last), as the status bar showed them."""
        return [f"{level}: {text}" for level, text in self.session.hub.history]

    def _status_bar(self) -> None:
        self.server_label = QLabel(self.session.server_label)
        self.conn_label = QLabel("")
        self.conn_label.setObjectName("connectionState")
        self.counts_label = QLabel("")
        self.counts_label.setObjectName("counts")
        # permanent widgets stay visible while a temporary message (notice) is shown on the left
        for w in (self.counts_label, self.server_label, self.conn_label):
            self.statusBar().addPermanentWidget(w)

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
        """Ask for a server (recent ones offered) and a key; the app switches this window to it."""
        dlg = ConnectDialog(self)
        if dlg.exec() == QDialog.DialogCode.Accepted:
            server, key = dlg.values()
            if server:
                remember_server(server, key or "")
                self.switch_requested.emit(server, key or "")

    # -------------------------------------------------------------- drag and drop
    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        # Copy only: a file manager that is told "moved" may delete the user's file
        if event.mimeData().hasUrls() and event.possibleActions() & Qt.DropAction.CopyAction:
            event.setDropAction(Qt.DropAction.CopyAction)
            event.accept()
        else:
            event.ignore()

    dragMoveEvent = dragEnterEvent  # type: ignore[assignment]

    def dropEvent(self, event: QDropEvent) -> None:
        """All or nothing: every file must be a .py/.sage file, or nothing is submitted."""
        ok, refused = droppable_files(event.mimeData().urls()) if event.mimeData().hasUrls() else ([], [])
        if not event.possibleActions() & Qt.DropAction.CopyAction:
            self.session.post("warning", "drop refused: the files can only be copied, not moved")
            event.ignore()
            return
        if refused or not ok:
            names = ", ".join(refused[:5]) + (" …" if len(refused) > 5 else "") or "nothing usable"
            self.session.post("warning", f"drop refused, nothing submitted: only .py and .sage files can be "
                                         f"submitted ({names})")
            event.ignore()
            return
        event.setDropAction(Qt.DropAction.CopyAction)
        event.accept()
        self.submit_files(ok)

    def open_files(self, paths: list[str]) -> None:
        """Files given on the command line (the desktop entry, a double-clicked .sage file): the
        first .py/.sage file goes into the editor, to be submitted with Ctrl+Enter."""
        ok, refused = droppable_files(paths)
        if ok:
            self.submit_pane.set_code(Path(ok[0]).read_text(errors="replace"))
            self.submit_pane.sage.setChecked(Path(ok[0]).suffix == ".sage")
            if not self.submit_pane.name.text():
                self.submit_pane.name.setText(Path(ok[0]).name)
            more = f" ({len(ok) - 1} more not opened: drop them to submit them)" if len(ok) > 1 else ""
            self.session.post("info", f"opened {ok[0]} in the editor: Ctrl+Enter submits it{more}")
        if refused:
            self.session.post("warning", f"not opened (only .py and .sage files): {', '.join(refused[:5])}")

    @deferred_slot()
    def submit_files(self, paths: list[str]) -> Any:
        """Submit each file as one job; several files are a batch (notified when all are done)."""
        from twisted.internet.defer import gatherResults
        opts = self.submit_pane.options()
        opts.pop("name", None)
        d = gatherResults([self.session.client.submit_file(p, **opts) for p in paths], consumeErrors=True)

        def done(ids: list[int]) -> list[int]:
            if len(ids) > 1:
                self.notifier.tracker.track(ids, f"batch of {len(ids)} files")
                self.jobs_pane.track_batch(ids, f"batch of {len(ids)} files")
            self.session.post("info", f"submitted {len(ids)} file(s) as job(s) {', '.join(map(str, ids))}")
            self.check_workers()
            return ids
        return d.addCallback(done)

    # -------------------------------------------------------------- status
    def _connection(self, state: str) -> None:
        self.conn_label.setText(state)
        self.conn_label.setStyleSheet(CONNECTION_STYLE.get(state, ""))

    def _stats(self, s: dict[str, Any]) -> None:
        counts = " · ".join(f"{s.get(k, 0)} {label}" for k, label in COUNTS)
        self.counts_label.setText(f"{counts} · {s.get('busy_slots', 0)}/{s.get('total_slots', 0)} slots · "
                                  f"{s.get('workers', 0)} workers")

    # -------------------------------------------------------------- questions
    def check_workers(self) -> bool:
        """After a submit: with no worker connected, say so (the jobs wait in the queue) and, with
        an embedded server, offer once to start a local worker. True if a worker is connected."""
        pane = self.workers_pane
        if not pane.known or pane.model.rowCount() > 0:
            return True
        emb = self.session.embedded
        if emb is not None and any(w.running for w in emb.workers):
            return True  # a local worker is starting: it connects within seconds
        self.session.post("warning", "no worker is connected: the jobs wait in the queue until one joins"
                          + (" (Workers tab: Launch local worker)" if emb is not None else ""))
        if emb is not None and not self._offered_workers:
            self._offered_workers = True
            n = pane.slots.value()
            if self.ask("No worker connected", f"No worker is connected, so the jobs wait in the queue.\n\n"
                                               f"Start a local worker with {n} slot(s) now?"):
                pane.launch_worker()
        return False

    def unfinished_jobs(self) -> tuple[int, int]:
        """(jobs not finished, of which running) among this window's jobs."""
        rows = self.jobs_pane.model.rows
        left = [j for j in rows if not j.done]
        return len(left), sum(1 for j in left if j.status == JobStatus.RUNNING)

    def confirm_quit(self) -> bool:
        """Ask before quitting while jobs of the embedded server are unfinished: say what happens to
        them. A window on a remote server quits without asking (its jobs go on there)."""
        if self.session.embedded is None:
            return True
        left, running = self.unfinished_jobs()
        if not left:
            return True
        return self.ask("Quit dsage?",
                        f"{left} job(s) are not finished ({running} running). Quitting stops this app's "
                        f"server and local workers: the jobs are kept and resume when you next start "
                        f"dsage (with the same home). Quit now?")

    def show_notice(self, level: str, text: str) -> None:
        self.session.post(level, text)

    def notify(self, title: str, text: str) -> None:
        self.notifier.notify(title, text)

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
        if not getattr(self, "quit_confirmed", False) and self.isVisible() and not self.confirm_quit():
            event.ignore()
            return
        self.save_layout()
        self.submit_pane.save_settings()
        self.notifier.close()
        super().closeEvent(event)
