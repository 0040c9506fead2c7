"""Joining a server with an invite code, as the README's "Across machines" and "Donate a machine"
say: ``dsage server`` runs in one home, ``dsage worker --invite CODE`` / ``dsage tray --invite
CODE`` in a second one, each as a separate process, and a job then runs on the new worker.

The invite is spent only once the new key is registered: a refused or failed registration leaves
it usable and says why."""
import os
import queue
import signal
import subprocess
import sys
import threading

import pytest

import dsage_core as dsage
from dsage_core import keys
from tests.server_proc import dsage_cmd, serve

pytestmark = pytest.mark.timeout(180)


class Proc:
    """A long-running ``dsage`` process whose stderr lines are read on a thread, so a test can
    wait for a given line (an event) instead of sleeping."""

    def __init__(self, home, *args, env=None):
        self.p = subprocess.Popen([sys.executable, "-m", "dsage_core", *args], text=True,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                  env=dict(os.environ, DSAGE_HOME=str(home), **(env or {})))
        self.lines = []
        self._q = queue.SimpleQueue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.p.stderr:
            self.lines.append(line)
            self._q.put(line)
        self._q.put(None)

    def wait_for(self, text, timeout=60):
        """Block until a stderr line contains *text*; fail if the process ends first."""
        for line in self.lines:
            if text in line:
                return line
        while True:
            line = self._q.get(timeout=timeout)
            if line is None:
                raise AssertionError(f"process ended (rc={self.p.wait()}) before {text!r}:\n{self.stderr}")
            if text in line:
                return line

    @property
    def stderr(self):
        return "".join(self.lines)

    def stop(self, timeout=30):
        """SIGTERM and wait; returns the exit code (SIGKILL if it does not end)."""
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
        try:
            return self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
            raise


@pytest.fixture
def server(tmp_path):
    """``dsage server`` (a subprocess) in its own home; yields (home, furl)."""
    yield from serve(tmp_path / "server-home")


@pytest.fixture
def client(server):
    """The server owner's API client (``dsage.connect`` on the server's home)."""
    home, furl = server
    D = dsage.connect(furl, home=home, timeout=20)
    yield D
    D.shutdown()


def new_invite(server_home, role="worker"):
    """``dsage invite --role ROLE`` on the server's home; returns the code it prints."""
    out = dsage_cmd(server_home, "invite", "--role", role).stdout
    return [w for w in out.split() if w.startswith("dsage1-")][-1]


def uses_left(server_home):
    """The 'N uses left' numbers of ``dsage invite list``, one per invite."""
    out = dsage_cmd(server_home, "invite", "list").stdout
    return [int(line.split("uses left")[0].split()[-1]) for line in out.splitlines() if "uses left" in line]


def test_worker_invite_joins_and_runs_a_job(server, client, tmp_path):
    """``dsage worker --invite CODE`` from a second home registers its key, saves server.furl,
    joins and runs a job; the code is then spent, and a second use fails with the reason."""
    home, furl = server
    code = new_invite(home)
    laptop = tmp_path / "laptop"
    j = client("6*7")  # queued: no worker yet
    w = Proc(laptop, "worker", "--invite", code, "--workers", "1")
    try:
        w.wait_for("dsage worker: connected")
        assert j.wait(60).result == 42
        assert (laptop / "server.furl").read_text().strip() == furl
        (me,) = [x for x in client.workers() if x["id"] == j.worker]
        assert me["user"].startswith("worker-") and not me["anonymous"]
        assert uses_left(home) == [0]
        again = dsage_cmd(tmp_path / "other", "worker", "--invite", code, check=False)
        assert again.returncode == 1
        assert "invite refused" in again.stderr and "already used" in again.stderr
        assert not (tmp_path / "other" / "server.furl").exists()
    finally:
        assert w.stop() == 0, w.stderr
    assert "Traceback" not in w.stderr, w.stderr


def test_invite_whose_registration_fails_stays_usable(server, client, tmp_path):
    """A redeem whose registration fails (a user of the name the key would get already exists)
    spends nothing, writes no server.furl and says why; once that is fixed, the same code works."""
    home, _ = server
    code = new_invite(home)
    laptop = tmp_path / "laptop"
    laptop.mkdir()
    _, pub = keys.ensure_keypair(laptop)
    taken = "worker-" + keys.fingerprint(pub)[7:15].replace("/", "_").replace("+", "-")
    keys.generate_keypair(tmp_path / "other", tmp_path / "other.pub")
    dsage_cmd(home, "user", "add", taken, "--key", str(tmp_path / "other.pub"), "--role", "worker")
    failed = dsage_cmd(laptop, "worker", "--invite", code, "--workers", "1", check=False)
    assert failed.returncode == 1
    assert "invite refused" in failed.stderr and "already exists" in failed.stderr, failed.stderr
    assert "dsage: error: \n" not in failed.stderr
    assert not (laptop / "server.furl").exists()
    assert uses_left(home) == [1]
    dsage_cmd(home, "user", "remove", taken)
    w = Proc(laptop, "worker", "--invite", code, "--workers", "1")
    try:
        w.wait_for("dsage worker: connected")
        assert client("'joined'").wait(60).result == "joined"
        assert uses_left(home) == [0]
    finally:
        w.stop()


def test_invite_for_another_role_is_refused_unspent(server, tmp_path):
    """A client invite given to ``dsage worker --invite`` is refused before anything is spent (its
    key could not log in as a worker), with the role to ask for."""
    home, _ = server
    code = new_invite(home, role="client")
    p = dsage_cmd(tmp_path / "laptop", "worker", "--invite", code, check=False)
    assert p.returncode == 1 and "is for a client, not a worker" in p.stderr, p.stderr
    assert uses_left(home) == [1]
    assert "client" not in dsage_cmd(home, "user", "list").stdout.split()


def test_worker_stopped_twice_logs_no_traceback(server, client, tmp_path):
    """A worker that gets SIGTERM and SIGINT together (a supervisor and a process-group kill, or
    start_all's SIGTERM and its death signal) stops cleanly: no critical ReactorNotRunning."""
    home, furl = server
    w = Proc(tmp_path / "w", "worker", "--server", furl, "--key", str(home / "dsage_key"), "--workers", "1")
    w.wait_for("dsage worker: connected")
    # stopped, both signals are pending at once and are handled back to back when it continues
    w.p.send_signal(signal.SIGSTOP)
    w.p.send_signal(signal.SIGTERM)
    w.p.send_signal(signal.SIGINT)
    w.p.send_signal(signal.SIGCONT)
    assert w.p.wait(30) == 0
    w.wait_for("Main loop terminated")
    assert "ReactorNotRunning" not in w.stderr and "critical" not in w.stderr, w.stderr


def test_tray_invite_joins_and_runs_a_job(server, client, tmp_path):
    """``dsage tray --invite CODE`` (offscreen: its status window) from a second home joins the
    server, which shows it as a worker and runs a job on it; a spent code makes a second tray say
    why and exit 1."""
    home, furl = server
    code = new_invite(home)
    laptop = tmp_path / "laptop"
    env = {"QT_QPA_PLATFORM": "offscreen", "DSAGE_SETTINGS_DIR": str(tmp_path / "qsettings")}
    j = client("'from the tray'")
    tray = Proc(laptop, "tray", "--invite", code, "--cores", "1", env=env)
    try:
        assert j.wait(90).result == "from the tray"
        (me,) = [x for x in client.workers() if x["id"] == j.worker]
        assert me["user"].startswith("worker-") and me["slots"] == 1
        assert (laptop / "server.furl").read_text().strip() == furl
        assert uses_left(home) == [0]
        again = subprocess.run([sys.executable, "-m", "dsage_core", "tray", "--invite", code], text=True,
                               capture_output=True, timeout=60,
                               env=dict(os.environ, DSAGE_HOME=str(tmp_path / "other"), **env))
        assert again.returncode == 1 and "already used" in again.stderr, again.stderr
        assert "Traceback" not in again.stderr
    finally:
        rc = tray.stop()
    assert rc == 0 and "Traceback" not in tray.stderr, tray.stderr
