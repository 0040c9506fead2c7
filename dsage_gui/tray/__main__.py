"""``dsage tray [--server FURL_OR_FILE] [--key PATH | --anonymous | --invite CODE]``."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any


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


def first_run_invite() -> str:
    """Ask for an invite code (the paste box of the first run); raises if none is given."""
    from PySide6.QtWidgets import QInputDialog, QLineEdit
    code, ok = QInputDialog.getText(None, "Join a dsage server",
                                    "Paste the invite code you were given (dsage invite on the server):",
                                    QLineEdit.EchoMode.Normal, "")
    if not ok or not code.strip():
        raise RuntimeError("no server configured: pass --server, --invite CODE, or paste an invite code")
    return code.strip()


def make_worker(args: argparse.Namespace, reactor: Any) -> Any:
    """The same WorkerService as ``dsage worker``, configured from the arguments and QSettings."""
    from PySide6.QtCore import QSettings
    from dsage_core.cli import _redeem
    from dsage_core.home import resolve_home
    from dsage_core.keys import ensure_keypair
    from dsage_core.protocol.connect import read_furl
    from dsage_core.worker.service import WorkerConfig, WorkerService
    home = resolve_home(args.home)
    if not args.invite and not args.server and not (home / "server.furl").exists():
        args.invite = first_run_invite()  # first run: nothing configured yet
    furl = _redeem(args.invite, home) if args.invite else read_furl(args.server or home / "server.furl")
    key = None
    if not args.anonymous:
        key = Path(args.key).expanduser() if args.key else home / "dsage_key"
        if not key.exists():
            ensure_keypair(home)
    s = QSettings()
    cores = args.cores or int(s.value("tray/cores", max(1, (os.cpu_count() or 2) - 1)))
    w = WorkerService(WorkerConfig(home=home, furl=furl, slots=cores, key_path=key,
                                   anonymous=args.anonymous), reactor)
    cpu = float(s.value("tray/cpu", 1.0))
    if cpu < 1.0:
        w.pool.set_cpu_fraction(cpu)
    return w


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
        from dsage_gui.tray.controller import TrayController
        from dsage_gui.tray.ui import TrayUI
        from dsage_core.worker.reaping import ensure_reaper
        ensure_reaper(reactor)
        try:
            worker = make_worker(args, reactor)
        except Exception as e:
            print(f"dsage tray: {e}", file=sys.stderr)
            state["code"] = 1
            reactor.stop()
            return
        ctl = TrayController(worker, reactor)
        ui = TrayUI(ctl)
        state["ui"] = ui
        from dsage_core.cli import stop_reactor
        ctl.quit_requested.connect(lambda: stop_reactor(reactor))
        if ui.window is not None:
            app.lastWindowClosed.connect(lambda: ctl.quit())
        if args.screenshot:
            ctl.state_changed.connect(lambda s: s in ("idle", "working") and shoot(ui, ctl, args.screenshot))
        worker.start()
    run(start)
    return state["code"]


if __name__ == "__main__":
    sys.exit(main())
