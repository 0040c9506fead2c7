"""``dsage gui`` / ``python -m dsage_gui``: the desktop app (embedded server by default)."""
from __future__ import annotations

import argparse
import os
import sys
from typing import Any

DEMO = [("2+2", "expr"), ("sum(i*i for i in range(10**6))", "expr"), ("1/0", "expr"),
        ("import math\nDSAGE_RESULT = math.factorial(50)", "exec"), ("undefined_name", "expr"),
        ("import time\nfor i in range(4):\n    print('step', i)\n    time.sleep(0.2)\nDSAGE_RESULT = 'slow'", "exec")]


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="dsage gui", description="the dsage desktop app")
    p.add_argument("--server", help="connect to this server (furl or furl file) instead of embedding one")
    p.add_argument("--key", help="private key for --server")
    p.add_argument("--home", help="dsage home")
    p.add_argument("--workers", type=int, help="slots of the embedded local worker (default: cores - 1)")
    p.add_argument("--screenshot", help="start offscreen, wait for live data, save a PNG of the window, exit")
    p.add_argument("--demo", action="store_true", help="submit a small batch of mixed jobs at start")
    p.add_argument("files", nargs="*", help=".py or .sage files to open in the editor (the desktop entry and "
                                            "the .sage file association pass them)")
    return p.parse_args(argv)


def settings_path(home: str | None = None) -> str:
    """Where the app keeps its settings (window layout, editor options, recent servers, the tray's
    preferences): ``DSAGE_HOME/settings/dsage/dsage.ini`` (an INI file), or under
    ``DSAGE_SETTINGS_DIR`` if that is set (tests and screenshots keep theirs away from the user's).
    Returns the directory."""
    from PySide6.QtCore import QSettings
    d = os.environ.get("DSAGE_SETTINGS_DIR")
    if not d:
        from dsage_core.home import resolve_home
        d = str(resolve_home(home) / "settings")
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, d)
    return d


def start_failure_text(error: str, home: str | None) -> str:
    """What a user is told when the app cannot start (e.g. a second ``dsage gui`` on one home)."""
    text = f"dsage gui cannot start: {error}"
    if "already running" in error:
        from dsage_core.home import resolve_home
        h = resolve_home(home)
        text += (f"\n\nAnother dsage app or `dsage server` uses this home ({h}); only one server may run on "
                 f"a home. Use the window that is already open, start this one with another home "
                 f"(--home DIR), or connect to that server: dsage gui --server {h / 'server.furl'}")
    return text


#: tests only: show the start-failure dialog even offscreen, and accept it after this many ms
#: (logging that it was on screen, and its text, to stderr): the dialog path runs for real
DIALOG_ACCEPT_ENV = "DSAGE_TEST_ACCEPT_DIALOG_MS"


def show_start_failure(text: str, offscreen: bool, dialog: Any = None) -> None:
    """Print *text* to stderr and, on a screen, show it in a dialog: started from a desktop menu or
    a file manager there is no terminal to read it in. *dialog(text)* replaces the dialog (tests)."""
    print(text, file=sys.stderr, flush=True)
    accept_ms = os.environ.get(DIALOG_ACCEPT_ENV, "")
    if offscreen and dialog is None and not accept_ms.isdigit():
        return
    if dialog is None:
        from PySide6.QtWidgets import QMessageBox
        from dsage_gui.resources import app_icon
        box = QMessageBox(QMessageBox.Icon.Critical, "dsage", text)
        box.setWindowIcon(app_icon())
        if accept_ms.isdigit():
            from PySide6.QtCore import QTimer
            QTimer.singleShot(int(accept_ms), lambda: _accept_for_test(box))
        dialog = lambda _text: box.exec()  # noqa: E731
    dialog(text)


def _accept_for_test(box: Any) -> None:
    """Log what the dialog shows (and that it is on screen), then close it as OK would."""
    first = box.text().splitlines()[0] if box.text() else ""
    print(f"dsage gui: dialog shown (visible={box.isVisible()}, modal={box.isModal()}): {first}",
          file=sys.stderr, flush=True)
    box.accept()


def main(argv: list[str] | None = None) -> int:
    args = parse(argv if argv is not None else sys.argv[1:])
    from dsage_gui.app import bootstrap, run, settle_memory
    app, loop, reactor = bootstrap(offscreen=bool(args.screenshot))
    if args.screenshot and not os.environ.get("DSAGE_SETTINGS_DIR"):
        import tempfile  # a screenshot uses the default layout, and leaves the user's settings alone
        os.environ["DSAGE_SETTINGS_DIR"] = tempfile.mkdtemp(prefix="dsage-screenshot-settings-")
    settings_path(args.home)
    state: dict[str, Any] = {"code": 0}

    def start(reactor: Any) -> None:
        from dsage_gui.main_window import MainWindow
        from dsage_gui.session import open_session
        from dsage_core.worker.reaping import ensure_reaper
        ensure_reaper(reactor)
        # a SIGTERM stops the reactor with the window open: close the session on the way out too
        reactor.addSystemEventTrigger("before", "shutdown", close_on_shutdown, reactor, state)
        d = open_session(reactor, server=args.server, key=args.key, home=args.home, workers=args.workers)

        def opened(session: Any) -> None:
            win = MainWindow(session)
            state["window"], state["session"] = win, session
            app.lastWindowClosed.disconnect()
            app.lastWindowClosed.connect(lambda: shutdown(reactor, state["session"]))
            win.switch_requested.connect(switch)
            if args.server:
                from dsage_gui.dialogs.connect_dialog import remember_server
                remember_server(args.server, args.key or "")
            win.show()
            settle_memory()
            if args.files:
                win.open_files(args.files)
            if args.demo:
                submit_demo(session, win)
            if args.screenshot:
                from dsage_gui.screenshot import when_live
                def grabbed(ok: bool) -> None:
                    state["code"] = 0 if ok else 1
                    win.quit_confirmed = True
                    win.close()
                when_live(win, args.screenshot, grabbed)

        def failed(f: Any) -> None:
            state["code"] = 1
            offscreen = bool(args.screenshot) or app.platformName() in ("offscreen", "minimal")
            show_start_failure(start_failure_text(f.getErrorMessage(), args.home), offscreen)
            reactor.stop()

        def switch(furl: str, key: str = "") -> None:
            """Connect to another server; the old session (and an embedded server) stops after."""
            old_win, old_session = state["window"], state["session"]
            d2 = open_session(reactor, server=furl, key=key or args.key, home=args.home)

            def swapped(session: Any) -> None:
                new_win = MainWindow(session)
                state["window"], state["session"] = new_win, session
                new_win.switch_requested.connect(switch)
                new_win.restoreGeometry(old_win.saveGeometry())
                new_win.show()
                old_win.hide()
                old_win.deleteLater()
                old_session.close().addErrback(lambda f: None)

            def refused(f: Any) -> None:
                old_win.show_notice("error", f"cannot connect to {furl}: {f.getErrorMessage()}")
            d2.addCallbacks(swapped, refused)
        d.addCallbacks(opened, failed)
    run(start)
    return state["code"]


def submit_demo(session: Any, win: Any) -> Any:
    """A small batch of mixed jobs (some fail); the window notifies when the batch is done."""
    from twisted.internet.defer import gatherResults
    ds = [session.client.submit_code(code, mode=mode) for code, mode in DEMO]
    d = gatherResults(ds, consumeErrors=True)
    d.addCallback(lambda ids: win.notifier.tracker.track(ids, "demo batch"))
    return d.addErrback(session.report_error)


def close_on_shutdown(reactor: Any, state: dict[str, Any]) -> Any:
    """The reactor stops (a signal, or the last window closed): workers, the embedded server and
    the client stop first, within seconds."""
    session = state.get("session")
    if session is None:
        return None
    return session.close().addTimeout(8, reactor).addErrback(lambda f: None)


def shutdown(reactor: Any, session: Any) -> None:
    """Window closed: stop workers and the embedded server, then the reactor (within seconds)."""
    from dsage_core.cli import stop_reactor  # a SIGTERM may already have stopped it
    d = session.close()
    d.addTimeout(8, reactor)
    d.addBoth(lambda _: stop_reactor(reactor))


if __name__ == "__main__":
    sys.exit(main())
