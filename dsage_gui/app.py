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
    import qasync
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    from twisted.internet import asyncioreactor
    asyncioreactor.install(eventloop=loop)
    from twisted.internet import reactor
    _state.update(app=app, loop=loop, reactor=reactor)
    return app, loop, reactor


def run(start: Any) -> int:
    """Run *start(reactor)* once the shared loop runs; returns when the last window closed."""
    app, loop, reactor = bootstrap()
    app.setQuitOnLastWindowClosed(False)
    app.lastWindowClosed.connect(reactor.stop)  # never app.quit(): the reactor owns the loop
    reactor.callWhenRunning(start, reactor)
    reactor.run()
    loop.close()
    return 0
