"""A worker the desktop app started for itself ends with the app, even when the app is killed
outright (SIGKILL) and never gets to stop it (it used to live on and join the next app)."""
import os
import select
import signal
import subprocess
import sys

import pytest

from dsage_core.setup import ensure_setup, server_id
from dsage_core.worker import lifeline

pytestmark = pytest.mark.timeout(60)

APP = """
import sys
from twisted.internet import reactor
from dsage_core.cluster import start_worker_process
w = start_worker_process(reactor, sys.argv[1], sys.argv[2], 1)
reactor.callWhenRunning(lambda: print(w.pid, flush=True))
reactor.run()
"""


def gone_within(pid, seconds):
    fd = os.pidfd_open(pid)   # readable once the process has exited
    try:
        return bool(select.select([fd], [], [], seconds)[0])
    finally:
        os.close(fd)


@pytest.mark.skipif(not hasattr(os, "pidfd_open"), reason="needs pidfd_open (Linux)")
def test_a_local_worker_ends_with_the_app_that_started_it(tmp_path):
    home = tmp_path / "home"
    ensure_setup(home)
    furl = f"pb://{server_id(home)}@tcp:127.0.0.1:9/login"   # no server: the worker keeps retrying
    app = subprocess.Popen([sys.executable, "-c", APP, str(home), furl], stdout=subprocess.PIPE, text=True)
    worker = int(app.stdout.readline())
    try:
        os.kill(worker, 0)   # it runs while the app does
        app.send_signal(signal.SIGKILL)
        app.wait(10)
        assert gone_within(worker, 30)
    finally:
        app.kill()
        try:
            os.kill(worker, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_the_parent_pid_is_taken_out_of_the_environment():
    env = {lifeline.ENV: "4242"}
    assert lifeline.take_parent_pid(env) == 4242 and env == {}   # the worker's children are not tied
    assert lifeline.take_parent_pid({lifeline.ENV: "x"}) is None
    assert lifeline.take_parent_pid({lifeline.ENV: "1"}) is None   # init is nobody's app
    assert lifeline.take_parent_pid({}) is None
