"""Starting the desktop app: a second ``dsage gui`` on a home says why it cannot start (on stderr and
in a dialog), and the app's settings live under DSAGE_HOME."""
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from PySide6.QtWidgets import QApplication

from dsage_core import server_lock
from dsage_gui.__main__ import DIALOG_ACCEPT_ENV, settings_path
from dsage_gui.main_window import MainWindow

pytestmark = pytest.mark.timeout(120)

DSAGE = str(Path(sys.executable).parent / "dsage")


def test_second_gui_on_a_home_says_why_in_a_dialog(qtbot, tmp_path):
    """With one `dsage gui` running on a home, a second one exits 1 with the reason on stderr and
    in a dialog (shown for real offscreen, then accepted through the test hook)."""
    home = tmp_path / "home"
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", DSAGE_SETTINGS_DIR=str(tmp_path / "settings"))
    env.pop(DIALOG_ACCEPT_ENV, None)
    first = subprocess.Popen([DSAGE, "gui", "--home", str(home), "--workers", "0"], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        qtbot.waitUntil(lambda: server_lock.held(home) or first.poll() is not None, timeout=60_000)
        assert first.poll() is None, first.stderr.read()
        second = subprocess.run([DSAGE, "gui", "--home", str(home), "--workers", "0"], capture_output=True,
                                text=True, timeout=90, env=dict(env, **{DIALOG_ACCEPT_ENV: "300"}))
        err = second.stderr
        assert second.returncode == 1, err
        assert "dsage gui cannot start" in err and "already running" in err
        assert f"Another dsage app or `dsage server` uses this home ({home})" in err
        assert f"dsage gui --server {home / 'server.furl'}" in err
        assert "dsage gui: dialog shown (visible=True, modal=True): dsage gui cannot start" in err
        assert first.poll() is None   # the first app is untouched
    finally:
        first.send_signal(signal.SIGTERM)
        try:
            rc = first.wait(60)
        except subprocess.TimeoutExpired:
            first.kill()
            raise
    assert rc == 0 and not server_lock.held(home)


def test_offscreen_start_failure_prints_without_a_dialog(tmp_path):
    """Offscreen and without the test hook no dialog is shown (nobody could close it): stderr only."""
    from dsage_gui.__main__ import show_start_failure
    shown = []
    env_value = os.environ.pop(DIALOG_ACCEPT_ENV, None)
    try:
        show_start_failure("dsage gui cannot start: x", offscreen=True)
        show_start_failure("dsage gui cannot start: y", offscreen=False, dialog=shown.append)
    finally:
        if env_value is not None:
            os.environ[DIALOG_ACCEPT_ENV] = env_value
    assert shown == ["dsage gui cannot start: y"]


@pytest.mark.parametrize("via", ["DSAGE_HOME", "--home"])
def test_settings_live_under_dsage_home(qtbot, fake_session, monkeypatch, tmp_path, via):
    """Without DSAGE_SETTINGS_DIR, the window's layout and editor options go to
    DSAGE_HOME/settings/dsage/dsage.ini (or --home's), as the README says."""
    home = tmp_path / "home"
    monkeypatch.delenv("DSAGE_SETTINGS_DIR", raising=False)
    app = QApplication.instance()
    names = app.organizationName(), app.applicationName()
    try:
        app.setOrganizationName("dsage")   # as dsage_gui.app.bootstrap names the app
        app.setApplicationName("dsage")
        if via == "DSAGE_HOME":
            monkeypatch.setenv("DSAGE_HOME", str(home))
            assert settings_path() == str(home / "settings")
        else:
            monkeypatch.setenv("DSAGE_HOME", str(tmp_path / "elsewhere"))
            assert settings_path(str(home)) == str(home / "settings")
        win = MainWindow(fake_session)
        qtbot.addWidget(win)
        win.submit_pane.editor.setPlainText("6*7  # kept")
        win.save_layout()
        win.submit_pane.save_settings()
        ini = home / "settings" / "dsage" / "dsage.ini"
        text = ini.read_text()
        assert "geometry" in text and "6*7  # kept" in text
    finally:
        app.setOrganizationName(names[0])
        app.setApplicationName(names[1])
        monkeypatch.undo()
        settings_path()   # back to the test session's own settings directory
