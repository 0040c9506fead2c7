"""``dsage launch ssh HOST...`` against a real sshd (on 127.0.0.1, its own port and keys; the
"remote" hosts share this filesystem, so this venv's Python is theirs): workers join through
invites and run jobs, Ctrl+C stops every remote worker process, ``--check`` says what a host lacks."""
from __future__ import annotations

import queue
import signal
import subprocess
import sys
import threading

import psutil
import pytest

from dsage_core import __version__
from tests.server_proc import dsage_cmd

pytestmark = [pytest.mark.timeout(180), pytest.mark.e2e]


class Launcher:
    """``dsage launch ssh`` as a subprocess; its stdout lines are read on a thread so a test waits
    for a line (an event), never for a time."""

    def __init__(self, home, sshd, tmp_path, *hosts, workers=1):
        argv = [sys.executable, "-m", "dsage_core", "launch", "ssh", "--home", str(home),
                "--ssh", sshd.ssh, "--python", sys.executable, "--workers", str(workers),
                "--remote-home", str(tmp_path / "remote-{host}"), *hosts]
        self.p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        self._q: "queue.SimpleQueue[str | None]" = queue.SimpleQueue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.p.stdout:
            self.lines.append(line)
            self._q.put(line)
        self._q.put(None)

    def wait_for(self, text, timeout=90):
        """Block until an output line contains *text* (one already printed counts: the hosts
        print in any order); fail if the launcher ends first."""
        for line in list(self.lines):
            if text in line:
                return line
        while True:
            line = self._q.get(timeout=timeout)
            if line is None:
                raise AssertionError(f"launcher ended ({self.p.wait()}) before {text!r}:\n{self.text}")
            if text in line:
                return line

    @property
    def text(self):
        return "".join(self.lines)

    def kill(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()


def remote_processes(client):
    """Every process of the connected workers: their monitors and all their descendants."""
    procs = []
    for w in client.workers():
        try:
            monitor = psutil.Process(w["pid"])
            procs += [monitor, *monitor.children(recursive=True)]
        except psutil.NoSuchProcess:
            pass
    return procs


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_launched_workers_join_run_jobs_and_stop_on_a_signal(server, client, sshd, tmp_path, stop):
    """Two hosts get a worker each through one-use invites; jobs run on them; SIGINT (Ctrl+C) or
    SIGTERM to the launcher makes every remote worker process exit, and the launcher exits 0."""
    home, _ = server
    launcher = Launcher(home, sshd, tmp_path, "box1", "box2")
    try:
        launcher.wait_for("box1: dsage worker: connected")
        launcher.wait_for("box2: dsage worker: connected")
        jobs = client.map(pow, range(20), [2] * 20)
        assert jobs.wait(90).results == [i * i for i in range(20)]
        workers = client.workers()
        assert len(workers) == 2 and all(w["user"].startswith("worker-") for w in workers), workers
        assert {j.worker for j in jobs} <= {w["id"] for w in workers}
        # each host registered its own key, with its own home: no private key was copied
        for h in ("box1", "box2"):
            assert (tmp_path / f"remote-{h}" / "dsage_key").exists()
        assert not (tmp_path / "remote-box1" / "dsage_key").read_bytes() == (home / "dsage_key").read_bytes()
        procs = remote_processes(client)
        assert len(procs) >= 2
        # the invite codes travelled on stdin: no command line of the launch shows one (here: the
        # launcher and its ssh clients; "remotely": everything under the sshd)
        ours = [psutil.Process(pid) for pid in (launcher.p.pid, sshd.proc.pid)]
        ours += [c for p in ours for c in p.children(recursive=True)]
        shown = [p.cmdline() for p in ours if any("dsage1-" in a for a in p.cmdline())]
        assert shown == [] and len(ours) > 6, shown
        launcher.p.send_signal(stop)
        assert launcher.p.wait(60) == 0, launcher.text
        _, alive = psutil.wait_procs(procs, timeout=30)
        assert alive == [], f"remote worker processes left running: {alive}\n{launcher.text}"
        assert "box1: stopped" in launcher.text and "box2: stopped" in launcher.text
        assert "Traceback" not in launcher.text, launcher.text
        # both invites were used once and then revoked: neither can be used again
        listed = dsage_cmd(home, "invite", "list").stdout.splitlines()
        assert len(listed) == 2 and all(line.endswith("revoked") for line in listed), listed
    finally:
        launcher.kill()


def test_remote_workers_end_when_the_launcher_is_killed(server, client, sshd, tmp_path):
    """Even a launcher killed outright (SIGKILL, no chance to stop anything) orphans nothing:
    its ssh sessions lose their stdin, and so do the remote workers, which then exit."""
    home, _ = server
    launcher = Launcher(home, sshd, tmp_path, "box1")
    try:
        launcher.wait_for("box1: dsage worker: connected")
        assert client("6*7").wait(60).result == 42
        procs = remote_processes(client)
        assert procs
    finally:
        launcher.kill()
    _, alive = psutil.wait_procs(procs, timeout=60)
    assert alive == [], f"remote worker processes left running: {alive}"


def test_check_reports_what_each_host_lacks(server, sshd, tmp_path):
    """``--check``: a host with this venv's Python is ok (its Python and dsage version shown); a
    wrong --python, a Python without dsage and an unreachable host are each reported, exit 1."""
    home, _ = server
    ok = dsage_cmd(home, "launch", "ssh", "--check", "--ssh", sshd.ssh, "--python", sys.executable,
                   "--remote-home", str(tmp_path / "remote-{host}"), "box1")
    assert ok.stdout.strip() == f"box1: ok (Python {'.'.join(map(str, sys.version_info[:3]))}, " \
                                f"dsage {__version__})", ok.stdout
    bad = dsage_cmd(home, "launch", "ssh", "--check", "--ssh", sshd.ssh, "--python", "/nonexistent/python3",
                    "box1", check=False)
    assert bad.returncode == 1
    assert "box1: lacks: no /nonexistent/python3 there" in bad.stdout, bad.stdout + bad.stderr
    plain = dsage_cmd(home, "launch", "ssh", "--check", "--ssh", sshd.ssh, "--python", "/usr/bin/python3",
                      "box1", "unreachable", check=False)
    assert plain.returncode == 1
    lines = dict(line.split(": ", 1) for line in plain.stdout.splitlines())
    assert "dsage is not importable with /usr/bin/python3" in lines["box1"], plain.stdout
    assert lines["unreachable"].startswith("lacks: ssh cannot reach it"), plain.stdout
    # a "remote" home that is the server's own (a home directory shared over NFS) is refused
    shared = dsage_cmd(home, "launch", "ssh", "--check", "--ssh", sshd.ssh, "--python", sys.executable,
                       "--remote-home", str(home), "box1", check=False)
    assert shared.returncode == 1 and "holds a server's files" in shared.stdout, shared.stdout
