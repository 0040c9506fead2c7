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
    return p.parse_args(argv)


def settings_path() -> None:
    """Tests and screenshots keep their QSettings away from the user's."""
    from PySide6.QtCore import QSettings
    d = os.environ.get("DSAGE_SETTINGS_DIR")
    if d:
        QSettings.setDefaultFormat(QSettings.Format.IniFormat)
        QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, d)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv if argv is not None else sys.argv[1:])
    from dsage_gui.app import bootstrap, run, settle_memory
    app, loop, reactor = bootstrap(offscreen=bool(args.screenshot))
    if args.screenshot and not os.environ.get("DSAGE_SETTINGS_DIR"):
        import tempfile  # a screenshot uses the default layout, and leaves the user's settings alone
        os.environ["DSAGE_SETTINGS_DIR"] = tempfile.mkdtemp(prefix="dsage-screenshot-settings-")
    settings_path()
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
            if args.demo:
                submit_demo(session, win)
            if args.screenshot:
                from dsage_gui.screenshot import when_live
                def grabbed(ok: bool) -> None:
                    state["code"] = 0 if ok else 1
                    win.close()
                when_live(win, args.screenshot, grabbed)

        def failed(f: Any) -> None:
            print(f"dsage gui: {f.getErrorMessage()}", file=sys.stderr)
            state["code"] = 1
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
