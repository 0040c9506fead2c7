"""The ONE bootstrap module: QApplication -> qasync loop -> asyncioreactor -> only then Twisted imports.

Everything that imports ``twisted.internet.reactor`` (or foolscap) must be imported after
:func:`bootstrap` has run; closing the last window stops the reactor, and the loop is closed after.
"""
from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

_state: dict[str, Any] = {}


def bootstrap(argv: list[str] | None = None, offscreen: bool = False) -> tuple[Any, Any, Any]:
    """Create (once) the QApplication, the qasync loop and the asyncio reactor on it."""
    if "app" in _state:
        return _state["app"], _state["loop"], _state["reactor"]
    if offscreen:
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
    from PySide6.QtWidgets import QApplication
    app = QApplication.instance() or QApplication(argv or sys.argv[:1])
    app.setOrganizationName("dsage")
    app.setApplicationName("dsage")
    app.setDesktopFileName("dsage")   # the installed dsage.desktop: task bars find its icon
    from dsage_gui.resources import app_icon
    app.setWindowIcon(app_icon())     # every window and notification ("No Icon set" otherwise)
    import qasync
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    from twisted.internet import asyncioreactor
    asyncioreactor.install(eventloop=loop)
    from twisted.internet import reactor
    _state.update(app=app, loop=loop, reactor=reactor)
    return app, loop, reactor


#: full collections after 100 gen1 passes instead of 10: rows streaming into the table are
#: long-lived, and each full pass over them is a visible hiccup (gen0/gen1 as Python's default)
GUI_GC_THRESHOLD = (700, 10, 100)


def settle_memory() -> None:
    """Call once the main window is up. This is the app's own process, not a user's interpreter:
    its start-up objects (Qt wrappers, modules, most of what a full collection walks) are frozen
    out of the collector. Full passes took 30-150 ms here and could land in the middle of
    streaming updates. (The server's larger gen0 threshold is not used here: with 100,000 rows
    changing, it made single gen1 passes of ~60 ms.)"""
    import gc
    from dsage_core.memory import freeze_startup_objects
    freeze_startup_objects()
    gc.set_threshold(*GUI_GC_THRESHOLD)


def run(start: Any) -> int:
    """Run *start(reactor)* once the shared loop runs; returns when the last window closed."""
    app, loop, reactor = bootstrap()
    app.setQuitOnLastWindowClosed(False)
    app.lastWindowClosed.connect(reactor.stop)  # never app.quit(): the reactor owns the loop
    reactor.callWhenRunning(start, reactor)
    reactor.run()
    loop.close()
    return 0
