"""pytest-qt with Twisted on Qt's loop (../shared/STACK.md recipe): one QApplication, one qasync loop,
the asyncio reactor installed on it and started without signal handlers; stopped at session end.

This directory runs in its own pytest process (see the Makefile): the core tests use the default
reactor, and a process can hold only one.
"""
import asyncio
import os
import sys
import time

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
from PySide6.QtWidgets import QApplication  # noqa: E402

_app = QApplication.instance() or QApplication(sys.argv[:1])
import qasync  # noqa: E402

_loop = qasync.QEventLoop(_app, already_running=True)
asyncio.set_event_loop(_loop)
from twisted.internet import asyncioreactor  # noqa: E402

asyncioreactor.install(eventloop=_loop)
from twisted.internet import reactor  # noqa: E402

reactor.startRunning(installSignalHandlers=False)

from dsage_gui.__main__ import settings_path  # noqa: E402

settings_path()


@pytest.fixture(scope="session")
def aloop(qapp):
    yield _loop
    reactor.stop()  # without this pytest hangs at exit
    t0 = time.monotonic()
    while reactor.running and time.monotonic() - t0 < 10:
        qapp.processEvents()
        time.sleep(0.001)


@pytest.fixture
def run(aloop, qtbot):
    """Wait (driving Qt and Twisted) for a Deferred or coroutine; returns its result."""
    from twisted.internet.defer import Deferred

    def _run(aw, timeout=20.0):
        box = {}
        if isinstance(aw, Deferred):
            aw.addCallbacks(lambda r: box.setdefault("r", r), lambda f: box.setdefault("e", f))
        else:
            fut = asyncio.ensure_future(aw, loop=aloop)
            fut.add_done_callback(lambda f: box.setdefault("r", f.result()) if not f.exception()
                                  else box.setdefault("e", f.exception()))
        qtbot.waitUntil(lambda: bool(box), timeout=int(timeout * 1000))
        if "e" in box:
            e = box["e"]
            raise getattr(e, "value", e)
        return box["r"]
    return _run


@pytest.fixture
def fake_session(qtbot):
    from dsage_gui.session import GuiSession
    from tests.gui.fake_client import FakeClient
    client = FakeClient(reactor)
    return GuiSession(client)


@pytest.fixture(autouse=True)
def questions(monkeypatch):
    """No modal question ever blocks a test: the app's default Yes/No dialog answers No and is
    recorded here (tests that answer set ``win.ask`` themselves)."""
    asked = []
    monkeypatch.setattr("dsage_gui.main_window.ask_user", lambda parent, title, text: asked.append(text) or False)
    return asked
