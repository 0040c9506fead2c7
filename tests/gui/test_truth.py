"""The app shows the truth (issue 16): each item of "The app must show the truth" against a real
offscreen window, and against a real embedded server wherever the item is about what the server knows.
"""
import json
import os
import sys
import time
from datetime import datetime

import psutil
import pytest
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent, QGuiApplication
from twisted.internet import reactor

from dsage_core.model.job import JobInfo
from dsage_gui.main_window import MainWindow
from dsage_gui.models.jobs_model import COLUMNS

pytestmark = pytest.mark.timeout(120)

STATUS, ELAPSED, ETA = COLUMNS.index("Status"), COLUMNS.index("Elapsed"), COLUMNS.index("ETA")


@pytest.fixture
def embedded(run, tmp_path):
    """A real embedded server (the app's default set-up) with no worker of its own."""
    from dsage_core.cluster import LocalCluster
    emb = run(LocalCluster.embed(str(tmp_path / "home"), reactor, workers=0), timeout=30)
    yield emb
    run(emb.stop(), timeout=30)


@pytest.fixture
def app_win(qtbot, embedded):
    """The main window on a session over the embedded server, shown."""
    from dsage_gui.session import GuiSession
    win = MainWindow(GuiSession(embedded.client, embedded))
    win.quit_confirmed = True   # teardown closes without the question (tests that ask reset it)
    qtbot.addWidget(win)
    win.show()
    return win


@pytest.fixture
def worker(qtbot, run, embedded):
    """An in-process 1-slot worker on the embedded server (the tray's kind: it can pause)."""
    from dsage_core.worker.service import WorkerConfig, WorkerService
    from dsage_gui.tray.controller import TrayController
    w = WorkerService(WorkerConfig(home=embedded.home, furl=embedded.furl, slots=1,
                                   key_path=embedded.home / "dsage_key"), reactor)
    ctl = TrayController(w, reactor, poll_ms=100)
    w.start()
    qtbot.waitUntil(lambda: ctl.state == "idle", timeout=20_000)
    yield ctl
    if w.state != "stopped" and not getattr(w, "_stopped", False):
        run(w.stop(), timeout=30)


def cell(win, job_id, col):
    """The text the jobs table shows for *job_id* in column *col* (None: no such row)."""
    m = win.jobs_pane.model
    row = m.index_of.get(job_id)
    return None if row is None else m.data(m.index(row, col))


def submit_typed(qtbot, win, code):
    """Type *code* into the editor and press Ctrl+Enter (the value of the last expression is the
    result, whatever an earlier test left in the kept options); returns the new job's id."""
    win.submit_pane.mode.setCurrentIndex(0)
    got = []
    win.submit_pane.submitted.connect(got.append)
    win.submit_pane.editor.setPlainText(code)
    qtbot.keyClick(win.submit_pane.editor, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: bool(got), timeout=20_000)
    return got[0]


def jobs_via_api(run, home):
    """``D.jobs()`` of a separate Python process on *home*: {id: status}. Spawned without
    blocking: the embedded server answering it runs on this test's loop."""
    from twisted.internet.utils import getProcessOutputAndValue
    code = ("import json, dsage_core as dsage\n"
            f"D = dsage.connect(home={str(home)!r})\n"
            "print(json.dumps({j.id: j.status for j in D.jobs()}))\n"
            "D.shutdown()\n")
    out, err, rc = run(getProcessOutputAndValue(sys.executable, ["-c", code], env=dict(os.environ)), timeout=60)
    assert rc == 0, err.decode()
    return {int(k): v for k, v in json.loads(out.decode().strip().splitlines()[-1]).items()}


# ------------------------------------------------------------------ queued, assigned, paused
def test_queued_job_is_shown_from_submit_on(qtbot, app_win):
    """With no worker at all, a job typed and submitted is in the table at once, as queued."""
    jid = submit_typed(qtbot, app_win, "2+2")
    qtbot.waitUntil(lambda: cell(app_win, jid, STATUS) == "queued", timeout=10_000)
    qtbot.waitUntil(lambda: "1 queued" in app_win.counts_label.text(), timeout=10_000)


def test_assigned_and_paused_are_their_own_states(qtbot, run, app_win, embedded, worker):
    """A job waiting in a busy worker's buffer is "assigned", not running; on a paused worker both
    are "paused"; the table, the status bar and D.jobs() agree."""
    client = embedded.client
    warm = run(client.submit_code("1+1"))   # the worker learns that jobs are short: it prefetches
    qtbot.waitUntil(lambda: cell(app_win, warm, STATUS) == "completed", timeout=20_000)
    long_ = run(client.submit_code("import time\ntime.sleep(60)", mode="exec"))
    qtbot.waitUntil(lambda: cell(app_win, long_, STATUS) == "running", timeout=20_000)
    ahead = run(client.submit_code("2+2"))
    qtbot.waitUntil(lambda: cell(app_win, ahead, STATUS) == "assigned", timeout=20_000)
    qtbot.waitUntil(lambda: "1 assigned · 1 running" in app_win.counts_label.text(), timeout=10_000)
    assert "1 running" in app_win.counts_label.text() and "2 running" not in app_win.counts_label.text()
    states = jobs_via_api(run, embedded.home)
    assert states[long_] == "running" and states[ahead] == "assigned"
    worker.pause()
    qtbot.waitUntil(lambda: cell(app_win, long_, STATUS) == cell(app_win, ahead, STATUS) == "paused",
                    timeout=20_000)
    qtbot.waitUntil(lambda: "2 paused" in app_win.counts_label.text(), timeout=10_000)
    states = jobs_via_api(run, embedded.home)
    assert states[long_] == states[ahead] == "paused"
    for jid in (long_, ahead):
        run(client.kill(jid))


def test_status_bar_counts_every_end_state(qtbot, run, app_win, embedded, worker):
    """Killed and timed-out jobs are counted in the status bar (lost too), as the server counts them."""
    client = embedded.client
    killed = run(client.submit_code("import time\ntime.sleep(60)", mode="exec"))
    qtbot.waitUntil(lambda: cell(app_win, killed, STATUS) == "running", timeout=20_000)
    run(client.kill(killed))
    slow = run(client.submit_code("import time\ntime.sleep(60)", mode="exec", timeout=0.5))
    qtbot.waitUntil(lambda: cell(app_win, slow, STATUS) == "timed_out", timeout=30_000)
    qtbot.waitUntil(lambda: "1 killed · 1 timed out · 0 lost" in app_win.counts_label.text(), timeout=10_000)
    app_win.session.stats_changed.emit(dict(run(client.stats()), lost=2))   # the server's keys, one changed
    assert "2 lost" in app_win.counts_label.text()


# ------------------------------------------------------------------ elapsed, ETA, batch line
def test_elapsed_and_eta_per_job_from_its_progress(qtbot, run, app_win, embedded, worker):
    """A running job that reported half its progress shows how long it has run and an ETA."""
    code = "import time, dsage_core\ndsage_core.progress(0.5, 'half')\ntime.sleep(60)"
    jid = run(embedded.client.submit_code(code, mode="exec"))
    qtbot.waitUntil(lambda: cell(app_win, jid, COLUMNS.index("Progress")) == "50%", timeout=30_000)
    assert cell(app_win, jid, STATUS) == "running"   # progress means it runs (its start mark came first)
    el, eta = cell(app_win, jid, ELAPSED), cell(app_win, jid, ETA)
    assert el.endswith(" s") and eta.endswith(" s")
    # at 50 % the time left is the time spent so far (both read from the same clock, a moment apart)
    assert abs(float(el.split()[0]) - float(eta.split()[0])) < 1.0
    run(embedded.client.kill(jid))


def test_batch_progress_line_with_done_total_and_eta(qtbot, fake_session, tmp_path):
    """A drop of three files is one batch: the line shows done/total, and an ETA once some are done."""
    win = MainWindow(fake_session)
    qtbot.addWidget(win)
    files = [tmp_path / f"f{i}.py" for i in range(3)]
    for f in files:
        f.write_text("DSAGE_RESULT = 1\n")
    drop(win, files, Qt.DropAction.CopyAction)
    label = win.jobs_pane.batch_label
    qtbot.waitUntil(lambda: "batch of 3 files: 0/3 done" in label.text(), timeout=5_000)
    assert "ETA unknown yet" in label.text()
    client = fake_session.client
    client.finish(1, result_preview="1")
    qtbot.waitUntil(lambda: "1/3 done" in label.text() and "ETA " in label.text()
                    and "unknown" not in label.text(), timeout=5_000)
    assert win.jobs_pane.batch_bar.value() == 1 and win.jobs_pane.batch_bar.maximum() == 3
    client.finish(2, status="failed", error="Traceback\nValueError: x")
    client.finish(3, result_preview="1")
    qtbot.waitUntil(lambda: "3/3 done" in label.text() and "1 failed" in label.text() and "took" in label.text(),
                    timeout=5_000)


# ------------------------------------------------------------------ copy and export
BIG = "'x' * 5000 + 'END'"


def test_copy_result_copies_the_whole_result(qtbot, run, app_win, embedded, worker):
    """Copy result puts the whole 5,003-character result on the clipboard, not the table's preview."""
    jid = run(embedded.client.submit_code(BIG))
    qtbot.waitUntil(lambda: cell(app_win, jid, STATUS) == "completed", timeout=30_000)
    assert len(cell(app_win, jid, COLUMNS.index("Result"))) < 5003   # the table shows a preview
    select(app_win, jid)
    text = run(app_win.jobs_pane.copy_result())
    assert text == "x" * 5000 + "END" and QGuiApplication.clipboard().text() == text


def test_export_writes_whole_results_iso_times_and_bytes_as_bytes(qtbot, run, app_win, embedded, worker, tmp_path):
    """Export (JSON and CSV) holds each whole result, ISO 8601 times, and a bytes result as bytes."""
    client = embedded.client
    big = run(client.submit_code(BIG))
    raw = run(client.submit_code("b'\\x00\\x01ab'"))
    qtbot.waitUntil(lambda: cell(app_win, big, STATUS) == cell(app_win, raw, STATUS) == "completed",
                    timeout=30_000)
    assert run(app_win.jobs_pane.export(str(tmp_path / "j.json"))) == 2
    rows = {r["id"]: r for r in json.loads((tmp_path / "j.json").read_text())}
    assert rows[big]["result"] == "x" * 5000 + "END"
    assert rows[raw]["result"] == repr(b"\x00\x01ab")
    for t in ("created", "started", "finished"):
        stamp = datetime.fromisoformat(rows[big][t])
        assert stamp.tzinfo is not None and abs(stamp.timestamp() - time.time()) < 300
    assert run(app_win.jobs_pane.export(str(tmp_path / "j.csv"))) == 2
    import csv
    with open(tmp_path / "j.csv", newline="") as f:
        csv_rows = {int(r["id"]): r for r in csv.DictReader(f)}
    assert csv_rows[big]["result"] == "x" * 5000 + "END" and csv_rows[raw]["result"] == "b'\\x00\\x01ab'"
    datetime.fromisoformat(csv_rows[raw]["finished"])


# ------------------------------------------------------------------ icons
def test_window_and_tray_have_the_dsage_icon(qtbot, fake_session, embedded, worker):
    """The main window, the tray icon and the tray's status window all carry dsage's icon."""
    from dsage_gui.tray.ui import TrayUI
    win = MainWindow(fake_session)
    qtbot.addWidget(win)
    assert not win.windowIcon().isNull() and win.windowIcon().availableSizes()
    with_tray = TrayUI(worker, tray_available=True)
    assert with_tray.icon is not None and not with_tray.icon.icon().isNull()
    with_tray.icon.hide()
    without = TrayUI(worker, tray_available=False)
    assert not without.window.windowIcon().isNull()
    without.window.hide()   # not deleted: the controller's signals still reach it


# ------------------------------------------------------------------ drag and drop
def drop(win, paths, actions):
    """Drag *paths* over the window offering *actions*, then drop them; returns (enter, drop) events."""
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    enter = QDragEnterEvent(QPointF(10, 10).toPoint(), actions, mime, Qt.MouseButton.LeftButton,
                            Qt.KeyboardModifier.NoModifier)
    win.dragEnterEvent(enter)
    ev = QDropEvent(QPointF(10, 10), actions, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    win.dropEvent(ev)
    return enter, ev


def test_drops_are_copies_never_moves(qtbot, fake_session, tmp_path):
    """A drag offering Copy and Move is taken as a Copy; one offering only Move is refused, nothing sent."""
    win = MainWindow(fake_session)
    qtbot.addWidget(win)
    f = tmp_path / "a.py"
    f.write_text("DSAGE_RESULT = 1\n")
    enter, ev = drop(win, [f], Qt.DropAction.MoveAction)
    assert not enter.isAccepted() and not ev.isAccepted()
    qtbot.wait(50)   # let a (wrong) submission reach the fake
    assert fake_session.client.submitted == [] and "only be copied" in win.notifications[-1]
    enter, ev = drop(win, [f], Qt.DropAction.MoveAction | Qt.DropAction.CopyAction)
    assert enter.isAccepted() and enter.dropAction() == Qt.DropAction.CopyAction
    assert ev.isAccepted() and ev.dropAction() == Qt.DropAction.CopyAction
    qtbot.waitUntil(lambda: len(fake_session.client.submitted) == 1)
    assert f.exists()


# ------------------------------------------------------------------ quitting, options, no worker
def test_quitting_with_unfinished_jobs_asks_first(qtbot, app_win, questions):
    """Closing the window with a queued job asks (saying the jobs are kept and resume); No keeps it open."""
    submit_typed(qtbot, app_win, "2+2")
    qtbot.waitUntil(lambda: app_win.unfinished_jobs()[0] == 1, timeout=10_000)
    app_win.quit_confirmed = False
    questions.clear()
    app_win.close()
    assert app_win.isVisible() and len(questions) == 1
    assert "1 job(s) are not finished" in questions[0] and "kept and resume" in questions[0]
    answers = []
    app_win.ask = lambda title, text: answers.append(text) or True
    app_win.close()
    assert answers and not app_win.isVisible()


def test_persisted_options_are_shown_as_kept(qtbot, fake_session):
    """Sage, timeout and priority sit in a box titled as kept for next time, and the next window has them."""
    from dsage_gui.panes.submit_pane import REMEMBERED
    win = MainWindow(fake_session)
    qtbot.addWidget(win)
    box = win.submit_pane.remembered
    assert box.title() == REMEMBERED == "Options kept for next time"
    pane = win.submit_pane
    for w in (pane.sage, pane.timeout, pane.priority):
        assert box.isAncestorOf(w)
    assert not box.isAncestorOf(pane.name)   # per job: not kept
    pane.sage.setChecked(True)
    pane.timeout.setValue(42)
    pane.priority.setValue(7)
    pane.save_settings()
    again = MainWindow(fake_session)
    qtbot.addWidget(again)
    p2 = again.submit_pane
    assert p2.sage.isChecked() and p2.timeout.value() == 42 and p2.priority.value() == 7
    for w in (pane, p2):
        w.sage.setChecked(False)
        w.timeout.setValue(0)
        w.priority.setValue(0)
    pane.save_settings()


def test_no_worker_connected_is_said_and_a_local_worker_offered(qtbot, run, app_win, embedded, questions):
    """Submitting with no worker says so and offers a local worker; accepting starts one that runs the job."""
    qtbot.waitUntil(lambda: app_win.workers_pane.known, timeout=10_000)
    asked = []
    app_win.ask = lambda title, text: asked.append((title, text)) or True
    app_win.workers_pane.slots.setValue(1)
    jid = submit_typed(qtbot, app_win, "6*7")
    qtbot.waitUntil(lambda: bool(asked), timeout=10_000)
    assert asked[0][0] == "No worker connected" and "Start a local worker with 1 slot(s)" in asked[0][1]
    assert any("no worker is connected" in n for n in app_win.notifications)
    qtbot.waitUntil(lambda: cell(app_win, jid, STATUS) == "completed", timeout=60_000)
    assert cell(app_win, jid, COLUMNS.index("Result")) == "42"
    assert len(asked) == 1   # offered once per window (the fixture's emb.stop() stops the worker)


# ------------------------------------------------------------------ the tray
def test_tray_left_click_opens_the_menu_and_double_click_the_app(qtbot, worker, monkeypatch):
    """A left click (Trigger) pops the menu up; a double click starts the app."""
    from PySide6.QtWidgets import QSystemTrayIcon
    from dsage_gui.tray.ui import TrayUI
    ui = TrayUI(worker, tray_available=True)
    opened = []
    monkeypatch.setattr(ui.menu, "open_app", lambda: opened.append(1))
    try:
        assert not ui.menu.isVisible()
        ui.icon.activated.emit(QSystemTrayIcon.ActivationReason.Trigger)
        qtbot.waitUntil(ui.menu.isVisible, timeout=5_000)
        ui.icon.activated.emit(QSystemTrayIcon.ActivationReason.DoubleClick)
        assert opened == [1] and not ui.menu.isVisible()
    finally:
        ui.menu.hide()
        ui.icon.hide()


def test_open_dsage_leaves_no_zombie(qtbot, worker, monkeypatch):
    """"Open dsage" starts the app as a child that is reaped when it exits (no zombie left behind)."""
    from dsage_core.worker.reaping import ensure_reaper
    from dsage_gui.tray.ui import TrayMenu
    menu = TrayMenu(worker)
    argv = menu.open_command()
    assert argv[1:3] == ["-m", "dsage_gui"] and argv[argv.index("--server") + 1] == worker.worker.config.furl
    assert argv[argv.index("--home") + 1] == str(worker.worker.config.home)
    ensure_reaper(reactor)   # what `dsage tray` does at start
    monkeypatch.setattr(menu, "open_command", lambda: [sys.executable, "-c", "pass"])
    proc = menu.open_app()
    pid = proc.pid
    assert pid

    def reaped():
        try:
            psutil.Process(pid)   # still running, or a zombie nobody waited for
            return False
        except psutil.NoSuchProcess:
            return True
    qtbot.waitUntil(reaped, timeout=10_000)


def select(win, job_id):
    """Select the job's row only."""
    from PySide6.QtCore import QItemSelectionModel
    src = win.jobs_pane.model.index(win.jobs_pane.model.index_of[job_id], 0)
    flags = QItemSelectionModel.SelectionFlag.ClearAndSelect | QItemSelectionModel.SelectionFlag.Rows
    win.jobs_pane.view.selectionModel().select(win.jobs_pane.proxy.mapFromSource(src), flags)


def test_fake_progress_eta_uses_the_job_clock(qtbot, fake_session):
    """A job 10 s in at 25 % shows an ETA of about 30 s; a finished job shows no ETA."""
    win = MainWindow(fake_session)
    qtbot.addWidget(win)
    now = time.time()
    m = win.jobs_pane.model
    m.update_jobs([JobInfo(id=1, name="a", kind="expr", status="running", owner="t", created=now - 11,
                           started=now - 10, progress=0.25),
                   JobInfo(id=2, name="b", kind="expr", status="completed", owner="t", created=now - 11,
                           started=now - 10, finished=now - 4, progress=1.0)])
    m.apply_pending()
    assert abs(float(cell(win, 1, ETA).split()[0]) - 30) < 2 and cell(win, 2, ETA) == ""
    assert cell(win, 2, ELAPSED) == "6.00 s"
