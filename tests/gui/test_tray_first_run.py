"""The tray's first run with nothing configured: its paste box takes an invite code, redeems it on
the running loop (never blocking it), and the tray's worker joins a real ``dsage server`` started
in another home and runs a job there."""
import os
import subprocess
import sys

import pytest
from PySide6.QtWidgets import QApplication
from twisted.internet import reactor

from dsage_gui.tray.__main__ import PASTE_BOX, launch, parse
from tests.server_proc import serve

pytestmark = pytest.mark.timeout(180)


def dsage_cmd(home, *args, timeout=60):
    """Run ``dsage ARGS`` on *home* and wait (only while nothing in this process needs the loop)."""
    p = subprocess.run([sys.executable, "-m", "dsage_core", *args], capture_output=True, text=True,
                       timeout=timeout, env=dict(os.environ, DSAGE_HOME=str(home)))
    assert p.returncode == 0, p.stderr
    return p.stdout


@pytest.fixture
def server(tmp_path):
    """``dsage server`` as a subprocess in its own home; yields (home, furl)."""
    yield from serve(tmp_path / "server-home")


def paste_box():
    """The visible paste box, or None."""
    for w in QApplication.topLevelWidgets():
        if w.objectName() == PASTE_BOX and w.isVisible():
            return w
    return None


def test_first_run_paste_box_joins_and_runs_a_job(qtbot, run, server, tmp_path):
    """With no server configured the tray shows its paste box; a damaged code is refused in the box
    (asked again, with the reason) and the real code joins the server: a job runs on the tray."""
    home, furl = server
    out = dsage_cmd(home, "invite", "--role", "worker")
    code = [w for w in out.split() if w.startswith("dsage1-")][-1]
    laptop = tmp_path / "laptop"
    quits = []
    started = launch(parse(["--home", str(laptop), "--cores", "1"]), reactor, lambda: quits.append(1))
    qtbot.waitUntil(lambda: paste_box() is not None, timeout=20_000)
    box = paste_box()
    box.setTextValue(code[:-6])
    box.accept()
    qtbot.waitUntil(lambda: paste_box() is not None and "damaged" in paste_box().labelText(), timeout=20_000)
    assert not (laptop / "server.furl").exists()
    box = paste_box()
    box.setTextValue(code)
    box.accept()
    ctl, ui = run(started, timeout=60)
    try:
        assert (laptop / "server.furl").read_text().strip() == furl
        assert ui.window is not None and ui.window.isVisible()  # offscreen: the status window
        qtbot.waitUntil(lambda: ctl.state == "idle", timeout=30_000)
        job = subprocess.Popen([sys.executable, "-m", "dsage_core", "eval", "6*7", "--wait"], text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env=dict(os.environ, DSAGE_HOME=str(home)))
        qtbot.waitUntil(lambda: job.poll() is not None, timeout=60_000)  # the loop keeps running
        assert job.returncode == 0 and job.stdout.read().strip() == "42", job.stderr.read()
        assert "0 uses left" in dsage_cmd(home, "invite", "list")
    finally:
        run(ctl.worker.stop(), timeout=30)
        ui.window.close() if ui.window is not None else None
    assert quits == []


def test_cancelled_paste_box_fails_with_the_reason(qtbot, run, tmp_path):
    """Cancelling the first run's paste box ends the start with a clear message (nothing joined)."""
    started = launch(parse(["--home", str(tmp_path / "fresh")]), reactor, lambda: None)
    qtbot.waitUntil(lambda: paste_box() is not None, timeout=20_000)
    paste_box().reject()
    failed = []
    started.addErrback(failed.append)
    qtbot.waitUntil(lambda: bool(failed), timeout=20_000)
    assert failed[0].check(RuntimeError) and "no server configured" in str(failed[0].value)
    assert not (tmp_path / "fresh" / "server.furl").exists()
