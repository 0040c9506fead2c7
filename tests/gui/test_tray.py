"""The tray worker, offscreen, against a real server and real child processes on the shared loop."""
import psutil
import pytest
from twisted.internet import reactor

from dsage_core.worker.service import WorkerConfig, WorkerService
from dsage_gui.tray.controller import TrayController
from dsage_gui.tray.ui import NO_TRAY, TrayUI

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def server(run, tmp_path):
    from dsage_core.cluster import LocalCluster
    emb = run(LocalCluster.embed(str(tmp_path / "home"), reactor, workers=0), timeout=30)
    yield emb
    run(emb.stop(), timeout=30)


@pytest.fixture
def tray(qtbot, run, server):
    w = WorkerService(WorkerConfig(home=server.home, furl=server.furl, slots=2,
                                   key_path=server.home / "dsage_key"), reactor)
    ctl = TrayController(w, reactor, poll_ms=100)
    ui = TrayUI(ctl)
    w.start()
    qtbot.waitUntil(lambda: ctl.state == "idle", timeout=20_000)
    yield ctl, ui
    if w.state != "stopped" and not getattr(w, "_stopped", False):
        run(w.stop(), timeout=30)


def _children(ctl):
    return [psutil.Process(c.pid) for c in ctl.worker.pool.children if c.pid]


def test_no_tray_shows_status_window(tray):
    """Offscreen there is no system tray: a status window with the same actions and a clear line."""
    ctl, ui = tray
    assert ui.icon is None and ui.window is not None and ui.window.isVisible()
    assert ui.window.notice.text() == NO_TRAY
    assert "Pause" in ui.window.buttons and "Finish current jobs and quit" in ui.window.buttons


def test_pause_stops_children_and_resume_finishes_the_job(qtbot, run, server, tray):
    """Pause SIGSTOPs the children (state T) and keeps the job; resume lets it complete."""
    ctl, ui = tray
    jid = run(server.client.submit_code("import time\ntime.sleep(1.0)\n'done'"))
    st = server.client.job_state(jid)   # held here: the client keeps finished states only while used
    qtbot.waitUntil(lambda: st.status == "running", timeout=20_000)
    qtbot.waitUntil(lambda: ctl.state == "working", timeout=20_000)
    ui.menu.pause_action.trigger()
    qtbot.waitUntil(lambda: ctl.state == "paused", timeout=5_000)
    # SIGSTOP is delivered asynchronously: wait for the kernel to show every child stopped
    qtbot.waitUntil(lambda: all(p.status() == psutil.STATUS_STOPPED for p in _children(ctl)), timeout=5_000)
    qtbot.waitUntil(lambda: st.status == "paused", timeout=5_000)  # the lease is kept, and it shows
    ui.menu.pause_action.trigger()  # now reads "Resume"
    qtbot.waitUntil(lambda: st.status == "completed", timeout=20_000)
    qtbot.waitUntil(lambda: all(p.status() != psutil.STATUS_STOPPED for p in _children(ctl)), timeout=5_000)


def test_cores_change_shows_on_the_server(qtbot, run, server, tray):
    """Choosing 1 core in the menu changes the slots the server sees."""
    ctl, ui = tray
    ui.menu.core_actions[1].trigger() if 1 in ui.menu.core_actions else ctl.set_cores(1)

    def server_slots():
        ws = server.server.core.describe_workers()
        return ws and ws[0]["slots"]
    qtbot.waitUntil(lambda: server_slots() == 1, timeout=20_000)


def test_finish_and_quit_completes_the_running_job(qtbot, run, server, tray):
    """Finish-and-quit waits for the running job, then asks the app to quit."""
    ctl, ui = tray
    jid = run(server.client.submit_code("import time\ntime.sleep(0.8)\n'finished'"))
    st = server.client.job_state(jid)
    qtbot.waitUntil(lambda: ctl.state == "working", timeout=20_000)
    with qtbot.waitSignal(ctl.quit_requested, timeout=30_000):
        ui.menu.finish_action.trigger()
    ctl.worker._stopped = True
    # the server heard the result before the worker left (else the job would be queued again);
    # its push to this client follows the commit
    assert server.server.core.jobs.get(jid) is None or server.server.core.jobs[jid].status == "completed"
    qtbot.waitUntil(lambda: st.status == "completed", timeout=10_000)


def test_long_pause_hands_jobs_back(qtbot, run, server, tray):
    """A pause longer than the limit gives the running job back to the server (not a failure)."""
    ctl, ui = tray
    jid = run(server.client.submit_code("import time\ntime.sleep(30)"))
    st = server.client.job_state(jid)
    qtbot.waitUntil(lambda: st.status == "running", timeout=20_000)
    qtbot.waitUntil(lambda: ctl.state == "working", timeout=20_000)
    ctl.pause_limit = 0.2
    ctl.pause()
    qtbot.waitUntil(lambda: st.status == "queued", timeout=20_000)
    assert st.attempts >= 1
    run(server.client.kill(jid))


def test_workers_pane_launches_and_stops_local_workers(qtbot, run, server):
    """The workers pane starts a local worker process with the chosen slots and stops it again."""
    from dsage_gui.main_window import MainWindow
    from dsage_gui.session import GuiSession
    win = MainWindow(GuiSession(server.client, server))
    qtbot.addWidget(win)
    pane = win.workers_pane
    pane.slots.setValue(1)
    pane.launch.click()
    qtbot.waitUntil(lambda: pane.model.rowCount() == 1, timeout=20_000)
    assert pane.model.rows[0]["slots"] == 1 and "1 local worker" in pane.local.text()
    pane.stop.click()
    qtbot.waitUntil(lambda: pane.model.rowCount() == 0, timeout=20_000)
