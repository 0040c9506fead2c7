"""Panes, notifications, the status bar, the bridge and the FakeClient contract, driven with qtbot."""
import inspect

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication

from dsage_core.model.job import JobInfo
from dsage_gui.main_window import MainWindow
from dsage_gui.models.jobs_model import JobsTableModel
from dsage_gui.models.proxies import JobsFilter

pytestmark = pytest.mark.timeout(60)

CONTRACT = ("subscribe", "submit_code", "submit_file", "kill", "list_jobs", "get_job", "get_record", "workers",
            "stats", "close")


@pytest.fixture
def win(qtbot, fake_session):
    w = MainWindow(fake_session)
    qtbot.addWidget(w)
    return w


def submit(qtbot, win, code):
    """Type *code*, press Ctrl+Enter, wait for its row; returns the job id."""
    client = win.session.client
    n = len(client.submitted)
    win.submit_pane.editor.setPlainText(code)
    qtbot.keyClick(win.submit_pane.editor, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: len(client.submitted) == n + 1 and (client.next_id - 1) in win.jobs_pane.model.index_of)
    return client.next_id - 1


def select(win, job_id):
    """Select the job's row only (not selectRow: after a simulated Ctrl+Enter Qt may still see Ctrl held
    and toggle the selection instead)."""
    from PySide6.QtCore import QItemSelectionModel
    src = win.jobs_pane.model.index(win.jobs_pane.model.index_of[job_id], 0)
    flags = QItemSelectionModel.SelectionFlag.ClearAndSelect | QItemSelectionModel.SelectionFlag.Rows
    win.jobs_pane.view.selectionModel().select(win.jobs_pane.proxy.mapFromSource(src), flags)


def test_fake_client_matches_the_real_contract():
    """Every contract method of FakeClient takes the same parameters as the real AsyncClient."""
    from dsage_core.client.core import AsyncClient
    from tests.gui.fake_client import FakeClient
    for name in CONTRACT:
        real = inspect.signature(getattr(AsyncClient, name)).parameters
        fake = inspect.signature(getattr(FakeClient, name)).parameters
        missing = [p for p in real if p not in fake and real[p].kind is not real[p].VAR_KEYWORD]
        assert not missing or "kw" in fake, f"{name}: FakeClient lacks {missing}"
        for p in fake:
            if p in real:
                assert fake[p].kind == real[p].kind, f"{name}({p}) differs in kind"


def test_submit_button_submits_with_the_options(qtbot, win):
    """The Submit button sends the editor text with the name, timeout, priority, trusted and sage options."""
    pane = win.findChild(object, "submitPane")
    pane.editor.setPlainText("DSAGE_RESULT = 1")
    pane.mode.setCurrentIndex(1)
    pane.name.setText("named")
    pane.timeout.setValue(5)
    pane.priority.setValue(3)
    pane.trusted.setChecked(True)
    win.findChild(object, "submitButton").click()
    client = win.session.client
    qtbot.waitUntil(lambda: len(client.submitted) == 1)
    kind, code, opts = client.submitted[0]
    assert (kind, code) == ("code", "DSAGE_RESULT = 1")
    assert opts == dict(mode="exec", sage=False, name="named", timeout=5.0, priority=3, trusted_only=True)
    qtbot.waitUntil(lambda: "info: submitted job 1" in win.notifications)


def test_empty_editor_submits_nothing(qtbot, win):
    """Ctrl+Enter in an empty editor posts a warning and submits nothing."""
    win.submit_pane.editor.setPlainText("   ")
    qtbot.keyClick(win.submit_pane.editor, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    assert win.session.client.submitted == [] and "editor is empty" in win.notifications[-1]


def test_failed_submission_is_reported(qtbot, win, tmp_path):
    """A submission the client refuses ends as an error notice, not a silent loss."""
    f = tmp_path / "x.py"
    f.write_text("1")
    win.session.client.submit_file = lambda *a, **k: win.session.client._fail_later(ValueError("too big"))
    win.submit_files([str(f)])
    qtbot.waitUntil(lambda: "error: too big" in win.notifications)


def test_jobs_table_follows_events_and_shows_results(qtbot, win):
    """Submitted jobs appear, and a "jobs" event turns their status and result into table cells."""
    jid = submit(qtbot, win, "2+2")
    model = win.jobs_pane.model
    win.session.client.finish(jid, result_preview="4")
    row = model.index_of[jid]
    qtbot.waitUntil(lambda: model.data(model.index(row, 2)) == "completed")
    assert model.data(model.index(row, 6)) == "4"
    assert model.data(model.index(row, 2), Qt.ItemDataRole.ForegroundRole) is not None
    assert model.data(model.index(row, 1)) == "2+2"  # the name survives an update without one


def test_detail_view_shows_live_output_then_the_result(qtbot, win):
    """Selecting a running job shows its code and output, refreshed while it runs, then its traceback."""
    jid = submit(qtbot, win, "print('hi')")
    client = win.session.client
    client.set_output(jid, "first line\n")
    win.tabs.setCurrentIndex(0)  # output is polled only while the jobs pane is visible
    win.show()
    win.jobs_pane.refresh.setInterval(50)
    select(win, jid)
    detail = win.jobs_pane.detail
    qtbot.waitUntil(lambda: "first line" in detail.toPlainText())
    assert "print('hi')" in detail.toPlainText()
    client.set_output(jid, "first line\nsecond line\n")
    qtbot.waitUntil(lambda: "second line" in detail.toPlainText())
    client.finish(jid, status="failed", error="Traceback...\nZeroDivisionError: division by zero")
    qtbot.waitUntil(lambda: "--- traceback ---" in detail.toPlainText())
    calls = client.get_job_calls
    qtbot.wait(200)
    assert client.get_job_calls == calls  # a finished job is not polled any more


def test_kill_resubmit_clone_and_copy(qtbot, win):
    """The action buttons kill, resubmit the same code, clone it into the editor, and copy the result."""
    client = win.session.client
    jid = submit(qtbot, win, "6*7")
    select(win, jid)
    win.jobs_pane.buttons["Kill"].click()
    qtbot.waitUntil(lambda: client.killed == [jid])
    client.finish(jid, result_preview="42")
    qtbot.waitUntil(lambda: win.jobs_pane.model.rows[win.jobs_pane.model.index_of[jid]].done)
    win.jobs_pane.buttons["Resubmit"].click()
    qtbot.waitUntil(lambda: len(client.submitted) == 2)
    assert client.submitted[1][1] == "6*7" and client.submitted[1][2]["name"] == "6*7"
    win.submit_pane.editor.setPlainText("")
    select(win, jid)
    win.jobs_pane.buttons["Clone to editor"].click()
    qtbot.waitUntil(lambda: win.submit_pane.editor.toPlainText() == "6*7")
    win.jobs_pane.buttons["Copy result"].click()
    qtbot.waitUntil(lambda: QGuiApplication.clipboard().text() == "42")


def test_jobs_filter_passes_qtmodeltester_and_filters(qtbot, qtmodeltester):
    """The proxy keeps Qt's contract; status and text filters apply, and follow status changes."""
    m = JobsTableModel()
    m.update_jobs([JobInfo(id=i, name=f"alpha {i}" if i % 2 else f"beta {i}", status="running")
                   for i in range(1, 21)])
    m.apply_pending()
    proxy = JobsFilter()
    proxy.setSourceModel(m)
    qtmodeltester.check(proxy)
    proxy.set_text("BETA")
    assert proxy.rowCount() == 10
    proxy.set_text("")
    proxy.set_status("running")
    assert proxy.rowCount() == 20
    m.update_jobs([JobInfo(id=3, name="alpha 3", status="completed")])
    m.apply_pending()
    assert proxy.rowCount() == 19  # left the "running" view as it changed
    proxy.set_status("all")
    assert proxy.rowCount() == 20


def test_status_filter_combo_drives_the_view(qtbot, win):
    """Choosing a status in the combo hides the other jobs."""
    a, b = submit(qtbot, win, "1"), submit(qtbot, win, "2")
    win.session.client.finish(a, status="failed", error="x")
    qtbot.waitUntil(lambda: win.jobs_pane.model.rows[win.jobs_pane.model.index_of[a]].status == "failed")
    win.jobs_pane.status_filter.setCurrentText("failed")
    assert win.jobs_pane.proxy.rowCount() == 1
    win.jobs_pane.text_filter.setText("nothing matches this")
    assert win.jobs_pane.proxy.rowCount() == 0
    assert b in win.jobs_pane.model.index_of


def test_workers_pane_lists_workers_and_follows_events(qtbot, win, fake_session):
    """The workers pane shows the workers the client lists and replaces them on a "workers" event."""
    pane = win.findChild(object, "workersPane")
    qtbot.waitUntil(lambda: pane.model.rowCount() == 1)
    assert pane.model.data(pane.model.index(0, 2)) == "1/2"
    assert pane.model.data(pane.model.index(0, 4)) == "8.0 GiB"
    assert not pane.launch.isEnabled()  # no embedded server: nothing local to launch
    fake_session.client.emit("workers", [dict(pane.model.rows[0], id="w2", busy=2), dict(pane.model.rows[0])])
    assert pane.model.rowCount() == 2 and pane.model.data(pane.model.index(1, 0)) == "w2"


def test_workers_pane_launches_and_stops_through_the_embedded_handle(qtbot, fake_session):
    """Launch asks the embedded handle for a worker with the chosen slots; Stop stops every one."""
    class Handle:
        def __init__(self, slots):
            self.slots, self.stopped = slots, False

        def stop(self):
            self.stopped = True
            return fake_session.client._later(None)

    class Embedded:
        workers = []

        def start_worker(self, slots):
            self.workers.append(Handle(slots))
            return self.workers[-1]
    fake_session.embedded = Embedded()
    win = MainWindow(fake_session)
    qtbot.addWidget(win)
    pane = win.workers_pane
    pane.slots.setValue(3)
    pane.launch.click()
    handle = fake_session.embedded.workers[0]
    assert handle.slots == 3 and "1 local worker" in pane.local.text()
    pane.stop.click()
    assert handle.stopped and "0 local worker" in pane.local.text()


def test_status_bar_shows_server_connection_and_counts(qtbot, win, fake_session):
    """The status bar names the server, makes "reconnecting" visible, and shows the pushed counts."""
    assert win.server_label.text() == "fake:0"
    fake_session.client.emit("connection", "reconnecting")
    assert win.conn_label.text() == "reconnecting" and "background" in win.conn_label.styleSheet()
    fake_session.client.emit("connection", "connected")
    assert win.conn_label.text() == "connected"
    fake_session.client.emit("stats", {"queued": 5, "running": 2, "completed": 9, "failed": 1, "busy_slots": 2,
                                       "total_slots": 4, "workers": 1, "time": 1.0})
    assert win.counts_label.text() == ("0 waiting · 5 queued · 0 assigned · 2 running · 0 paused · 9 done · 1 failed · "
                                       "0 killed · 0 timed out · 0 lost · 2/4 slots · 1 workers")


def test_failed_job_and_finished_batch_are_notified(qtbot, win, tmp_path):
    """A failing job and a finished multi-file batch each produce one notification."""
    client = win.session.client
    files = [tmp_path / "a.py", tmp_path / "b.py"]
    for f in files:
        f.write_text("DSAGE_RESULT = 1")
    win.submit_files([str(f) for f in files])
    qtbot.waitUntil(lambda: bool(win.notifier.tracker.batches))
    client.finish(1, status="failed", error="Traceback\nValueError: bad")
    assert win.notifier.shown[-1] == "job 1 failed: ValueError: bad"
    client.finish(2, result_preview="1")
    assert win.notifier.shown[-1] == "batch of 2 files finished: all 2 jobs are done"
    client.emit("jobs", [client.jobs[1]])  # the same failure again is not notified twice
    assert len(win.notifier.shown) == 2


def test_throughput_window_is_adjustable_and_persists(qtbot, fake_session):
    """The window combo changes the plotted span and is remembered by the next window."""
    win = MainWindow(fake_session)
    qtbot.addWidget(win)
    pane = win.findChild(object, "throughputPane")
    assert pane.window_s == 600
    for k in range(120):
        fake_session.stats_changed.emit({"time": 1000.0 + k, "completed": k, "queued": 1})
    pane.combo.setCurrentText("1 minute")
    pane.redraw()
    x, _ = pane.curves["queued"].getData()
    assert pane.window_s == 60 and x[0] == 1119.0 - 60
    win2 = MainWindow(fake_session)
    qtbot.addWidget(win2)
    assert win2.throughput_pane.window_s == 60
    win2.throughput_pane.combo.setCurrentText("10 minutes")


def test_deferred_slot_reports_failures_and_trims_signal_arguments(qtbot, fake_session):
    """A decorated slot tolerates extra signal arguments and routes sync and async errors to the hub."""
    from twisted.internet.defer import fail
    from dsage_gui.bridge import PENDING, deferred_slot

    class Owner:
        session = fake_session

        @deferred_slot()
        def boom(self):
            raise RuntimeError("sync boom")

        @deferred_slot()
        def later(self):
            return fail(ValueError("async boom"))
    o = Owner()
    o.boom(True)  # e.g. clicked(bool)
    o.later()
    texts = [t for _, t in fake_session.hub.history]
    assert texts[-2:] == ["sync boom", "async boom"] and not PENDING.running


def test_as_future_resolves_on_failure(run):
    """as_future turns a failed Deferred into an exception an awaiting coroutine can catch."""
    from twisted.internet.defer import Deferred
    from twisted.internet import reactor
    from dsage_gui.bridge import as_future

    async def go():
        d = Deferred()
        reactor.callLater(0, d.errback, KeyError("k"))
        try:
            await as_future(d)
        except KeyError:
            return "caught"
    assert run(go()) == "caught"


def test_the_session_closes_once_for_every_caller(run, fake_session):
    """Closing the last window and a SIGTERM (the reactor's shutdown) may both close the session:
    the client is closed once, and every caller hears when it is done."""
    from twisted.internet import reactor
    from dsage_gui.__main__ import close_on_shutdown
    calls = []
    close = fake_session.client.close
    fake_session.client.close = lambda: (calls.append(1), close())[1]
    first = fake_session.close()
    second = close_on_shutdown(reactor, {"session": fake_session})
    assert not first.called and not second.called
    run(first)
    run(second)
    assert calls == [1] and fake_session.client.closed
    assert run(fake_session.close()) is None and calls == [1]   # closed already: at once
    assert close_on_shutdown(reactor, {}) is None   # no session yet: nothing to wait for
