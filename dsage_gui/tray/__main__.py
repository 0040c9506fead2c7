"""``dsage tray [--server FURL_OR_FILE] [--key PATH | --anonymous | --invite CODE]``."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred, inlineCallbacks


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="dsage tray", description="a dsage worker in the system tray")
    p.add_argument("--server", help="server furl or furl file (default: HOME/server.furl)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--key", help="private key (default: HOME/dsage_key)")
    g.add_argument("--anonymous", action="store_true", help="join without a key (if the server allows)")
    g.add_argument("--invite", help="join with an invite code (registers this machine's key once)")
    p.add_argument("--home", help="dsage home")
    p.add_argument("--cores", type=int, help="slots (default: the last choice, else cores - 1)")
    p.add_argument("--screenshot", help="once connected, save a PNG of the tray menu and exit")
    return p.parse_args(argv)


PASTE_BOX = "dsage-invite-paste-box"   #: objectName of the first run's paste box (tests find it)
PASTE_PROMPT = "Paste the invite code you were given (dsage invite on the server):"


def ask_invite(problem: str | None = None) -> Deferred:
    """The first run's paste box, shown without blocking the loop; fires with the code, or fails
    with RuntimeError when it is cancelled. *problem*: why the last code did not work."""
    from PySide6.QtWidgets import QDialog, QInputDialog
    box = QInputDialog()
    box.setObjectName(PASTE_BOX)
    box.setWindowTitle("Join a dsage server")
    box.setLabelText(PASTE_PROMPT if problem is None else f"{problem}\n\n{PASTE_PROMPT}")
    box.setTextValue("")
    d: Deferred = Deferred()

    def closed(result: int) -> None:
        # finished comes before textValueSelected (QDialog::done emits it first): read the text here
        code = box.textValue().strip()
        box.deleteLater()
        if d.called:
            return
        if result == QDialog.DialogCode.Accepted and code:
            d.callback(code)
        else:
            d.errback(RuntimeError(NOT_CONFIGURED))
    box.finished.connect(closed)
    box.open()
    return d


NOT_CONFIGURED = "no server configured: pass --server, --invite CODE, or paste an invite code"


@inlineCallbacks
def join_with_paste_box(home: Path, reactor: Any, key_path: Path | None) -> Any:
    """Ask for codes until one is accepted (each refusal is shown in the box, and that code is left
    unspent); fires with the furl, or fails when the box is cancelled."""
    from dsage_core.client.invite import InviteRefused, redeem
    problem = None
    while True:
        code = yield ask_invite(problem)
        try:
            furl = yield redeem(code, home, reactor, session="worker", key_path=key_path)
            return furl
        except InviteRefused as e:
            problem = str(e)


@inlineCallbacks
def make_worker(args: argparse.Namespace, reactor: Any) -> Any:
    """The same WorkerService as ``dsage worker``, configured from the arguments and QSettings.
    Fires with it once an invite (``--invite``, or the paste box of a first run) was redeemed on
    the running loop; nothing here blocks it."""
    from PySide6.QtCore import QSettings
    from dsage_core.client.invite import redeem
    from dsage_core.home import resolve_home
    from dsage_core.keys import ensure_keypair
    from dsage_core.protocol.connect import read_furl
    from dsage_core.worker.service import WorkerConfig, WorkerService
    home = resolve_home(args.home)
    key = None
    if not args.anonymous:
        key = Path(args.key).expanduser() if args.key else home / "dsage_key"
    if args.invite:
        furl = yield redeem(args.invite, home, reactor, session="worker", key_path=key)
    elif not args.server and not (home / "server.furl").exists():
        furl = yield join_with_paste_box(home, reactor, key)  # first run: nothing configured yet
    else:
        furl = read_furl(args.server or home / "server.furl")
    if key is not None and not key.exists() and key == home / "dsage_key":
        ensure_keypair(home)
    s = QSettings()
    cores = args.cores or int(s.value("tray/cores", max(1, (os.cpu_count() or 2) - 1)))
    w = WorkerService(WorkerConfig(home=home, furl=furl, slots=cores, key_path=key,
                                   anonymous=args.anonymous), reactor)
    cpu = float(s.value("tray/cpu", 1.0))
    if cpu < 1.0:
        w.pool.set_cpu_fraction(cpu)
    return w


@inlineCallbacks
def launch(args: argparse.Namespace, reactor: Any, on_quit: Any) -> Any:
    """Everything ``dsage tray`` does once the loop runs: redeem or read the server, start the
    worker, show the tray (or the status window); fires with ``(controller, ui)``. *on_quit* is
    called when the user quits from the menu."""
    from dsage_gui.tray.controller import TrayController
    from dsage_gui.tray.ui import TrayUI
    from dsage_core.worker.reaping import ensure_reaper
    ensure_reaper(reactor)
    worker = yield make_worker(args, reactor)
    ctl = TrayController(worker, reactor)
    ui = TrayUI(ctl)
    ctl.quit_requested.connect(on_quit)
    if args.screenshot:
        ctl.state_changed.connect(lambda s: s in ("idle", "working") and shoot(ui, ctl, args.screenshot))
    worker.start()
    return ctl, ui


def shoot(ui: Any, ctl: Any, path: str) -> None:
    """Render the open menu (offscreen is fine) and the status window, then quit."""
    from PySide6.QtCore import QPoint
    menu = ui.menu
    menu.refresh()
    menu.popup(QPoint(0, 0))
    menu.grab().save(path)
    if ui.window is not None:
        ui.window.grab().save(path.replace(".png", "-window.png"))
    menu.hide()
    print(f"saved {path}")
    ctl.quit()


def main(argv: list[str] | None = None) -> int:
    args = parse(argv if argv is not None else sys.argv[1:])
    from dsage_gui.__main__ import settings_path
    from dsage_gui.app import bootstrap, run
    app, loop, reactor = bootstrap()
    settings_path(getattr(args, "home", None))
    app.setQuitOnLastWindowClosed(False)
    state: dict[str, Any] = {"code": 0}

    def start(reactor: Any) -> None:
        from dsage_core.cli import stop_reactor
        from dsage_gui.bridge import failure_text

        def up(r: Any) -> None:
            ctl, ui = state["ctl"], state["ui"] = r
            if ui.window is not None:
                app.lastWindowClosed.connect(lambda: ctl.quit())
            # SIGTERM or the session ending: the worker hands its jobs back before the loop stops
            reactor.addSystemEventTrigger("before", "shutdown", ctl.worker.stop)

        def failed(f: Any) -> None:
            print(f"dsage tray: {failure_text(f)}", file=sys.stderr, flush=True)
            state["code"] = 1
            stop_reactor(reactor)
        launch(args, reactor, lambda: stop_reactor(reactor)).addCallbacks(up, failed)
    from dsage_core.cli import quiet_signals
    quiet_signals(reactor)
    run(start)
    return state["code"]


if __name__ == "__main__":
    sys.exit(main())
