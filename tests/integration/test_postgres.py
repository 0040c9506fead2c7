"""``dsage server --store postgresql://...`` as a user runs it, on a real PostgreSQL (started by the
session fixture): jobs with a real worker, bad URLs, and a standby taking over from a server that is
killed with -9 mid-run or loses its database lock: every job completes exactly once, and workers
and clients reconnect by themselves."""
from __future__ import annotations

import collections
import os
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import dsage_core as dsage
from tests.chaos.harness import sleepy

pytestmark = [pytest.mark.timeout(180), pytest.mark.e2e]


def dsage_cmd(home, *args, timeout=60, check=True):
    env = dict(os.environ, DSAGE_HOME=str(home))
    p = subprocess.run([sys.executable, "-m", "dsage_core", *args], capture_output=True, text=True,
                       timeout=timeout, env=env)
    if check and p.returncode != 0:
        raise AssertionError(f"dsage {' '.join(args)} -> {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p


class Proc:
    """A ``dsage`` subprocess whose output lines the test waits for (reader threads, no polling)."""

    def __init__(self, home: Path, *args: str) -> None:
        env = dict(os.environ, DSAGE_HOME=str(home))
        self.p = subprocess.Popen([sys.executable, "-m", "dsage_core", *args], env=env, text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        self.lines: "queue.Queue[tuple[str, str]]" = queue.Queue()
        self.seen: list[tuple[str, str]] = []
        self.ended: set[str] = set()
        for name, stream in (("out", self.p.stdout), ("err", self.p.stderr)):
            threading.Thread(target=self._read, args=(name, stream), daemon=True).start()

    def _read(self, name: str, stream) -> None:
        for line in stream:
            self.lines.put((name, line.rstrip("\n")))
        self.lines.put((name, None))

    def wait_line(self, pred, timeout: float = 60, stream: str | None = None) -> str:
        """The first (new) line for which *pred* holds; fails with everything seen on timeout."""
        while True:
            try:
                name, line = self.lines.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(f"no such line within {timeout}s; seen: {self.seen[-30:]}") from None
            if line is None:
                self.ended.add(name)
                if len(self.ended) == 2:
                    raise AssertionError(f"the process ended (rc={self.p.wait()}); seen: {self.seen[-30:]}")
                continue
            self.seen.append((name, line))
            if (stream is None or stream == name) and pred(line):
                return line

    def furl(self, timeout: float = 60) -> str:
        return self.wait_line(lambda ln: ln.startswith("pb://"), timeout, stream="out")

    def stop(self) -> None:
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(15)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()


@pytest.fixture
def procs():
    started: list[Proc] = []
    yield started
    for p in reversed(started):
        p.stop()


def _hints(furl: str) -> set[str]:
    return set(furl.split("@", 1)[1].rsplit("/", 1)[0].split(","))


def _count_once(jobs):
    counts = collections.Counter()
    lock = threading.Lock()

    def cb(j):
        with lock:
            counts[j.id] += 1
    for j in jobs:
        j.add_done_callback(cb)
    return counts


def _db_statuses(url: str) -> dict[str, int]:
    import psycopg
    with psycopg.connect(url) as c:
        return dict(c.execute("SELECT status, COUNT(*) FROM jobs GROUP BY status").fetchall())


def test_server_on_postgresql_runs_jobs_with_a_real_worker(pg_url, tmp_path, procs):
    """dsage server --store postgresql://... with a dsage worker: jobs run, large results come back
    whole, and every job is in PostgreSQL."""
    home = tmp_path / "a"
    dsage_cmd(home, "setup", "--yes")
    srv = Proc(home, "server", "--store", pg_url, "--quiet")
    procs.append(srv)
    furl = srv.furl()
    assert (home / "server.furl").read_text().strip() == furl
    procs.append(Proc(home, "worker", "--workers", "2", "--quiet"))
    assert dsage_cmd(home, "eval", "2+2", "--wait").stdout.strip() == "4"
    D = dsage.connect(home / "server.furl", home=home, timeout=30)
    try:
        big = D.eval("DSAGE_RESULT = bytes(range(256)) * 2048").wait(60)   # 512 KiB: in the database
        assert big.result == bytes(range(256)) * 2048
    finally:
        D.shutdown()
    assert "2+2" in dsage_cmd(home, "jobs").stdout
    assert _db_statuses(pg_url) == {"completed": 2}
    assert not list((home / "results").glob("*/*.bin"))   # no result file beside a shared database


def test_bad_store_urls_fail_in_one_clear_line(tmp_path):
    """A store URL of another kind, a malformed one, and an unreachable database each end dsage
    server at once with one line that never shows the password."""
    home = tmp_path / "a"
    cases = {"mysql://db/x": "unknown --store 'mysql://db/x'",
             "postgresql://u:pw@h/d?bogus=1": "malformed PostgreSQL URL postgresql://u:***@h/d",
             "postgresql://u:pw@127.0.0.1:9/d": "cannot use the PostgreSQL store postgresql://u:***@127.0.0.1:9/d"}
    for url, want in cases.items():
        p = dsage_cmd(home, "server", "--store", url, "--quiet", check=False, timeout=60)
        assert p.returncode == 1, (url, p.stderr)
        lines = p.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("dsage: error: ") and want in lines[0], (url, p.stderr)
        assert "pw" not in p.stderr and p.stdout == ""


def _group(pg_url, tmp_path, procs):
    """Server A serving, server B its standby (both printing their logs), homes set up."""
    a, b = tmp_path / "a", tmp_path / "b"
    for h in (a, b):
        dsage_cmd(h, "setup", "--yes")
    A = Proc(a, "server", "--store", pg_url, "--lease-timeout", "3")
    procs.append(A)
    A.furl()
    B = Proc(b, "server", "--store", pg_url, "--lease-timeout", "3")
    procs.append(B)
    B.wait_line(lambda ln: ln.startswith("dsage server: standby: the database is served by"))
    group = (b / "server.furl").read_text().strip()   # the standby wrote the group's furl
    assert len(_hints(group)) == 2
    A.wait_line(lambda ln: "dsage.server.group_changed" in ln)   # A learnt of B
    assert _hints((a / "server.furl").read_text().strip()) == _hints(group)
    return a, b, A, B


def test_kill_9_of_the_serving_server_hands_its_jobs_to_the_standby(pg_url, tmp_path, procs):
    """kill -9 of the serving server mid-run (jobs held by workers, more waiting): the standby takes over,
    the workers (one on the dead server's local socket, one over TCP from another home) and the
    client reconnect by themselves, and every job completes exactly once with its right result."""
    a, b, A, B = _group(pg_url, tmp_path, procs)
    procs.append(Proc(a, "worker", "--workers", "2", "--quiet"))
    procs.append(Proc(tmp_path / "w", "worker", "--server", str(a / "server.furl"), "--key",
                      str(a / "worker_key"), "--workers", "2", "--quiet"))
    D = dsage.connect(a / "server.furl", home=a, timeout=30)
    try:
        n = 40
        jobs = D.map(sleepy, range(n), [250] * n)
        counts = _count_once(jobs)
        done = 0
        for done, _ in enumerate(dsage.as_completed(jobs, timeout=150), start=1):
            if done == 8:
                held = [j.status for j in jobs if j.status in ("assigned", "running")]
                assert held, [j.status for j in jobs]   # some run (or are on their way) right now
                A.p.send_signal(signal.SIGKILL)
                A.p.wait(10)
        assert done == n
        B.furl(timeout=60)   # it printed the furl: it serves
        assert [j.status for j in jobs] == ["completed"] * n
        assert [j.result for j in jobs] == [i * i + 1 for i in range(n)]
        assert set(counts.values()) == {1} and len(counts) == n
        assert _db_statuses(pg_url) == {"completed": n}
        assert D.stats()["completed"] == n
        assert len(D.workers()) == 2   # both workers came back, to the standby
    finally:
        D.shutdown()


def test_a_server_that_loses_its_database_lock_stops_serving(pg_url, tmp_path, procs):
    """When the serving server's lock connection is cut, it stops at once with a clear error and
    exit status 1; the standby takes over and a queued job completes there."""
    import psycopg
    a, b, A, B = _group(pg_url, tmp_path, procs)
    queued = dsage_cmd(a, "eval", "'waited'").stdout.split()[2]   # no worker yet: stays queued
    with psycopg.connect(pg_url, autocommit=True) as c:
        cut = c.execute("SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype='advisory' "
                        "AND granted AND database=(SELECT oid FROM pg_database WHERE datname=current_database())"
                        ).fetchall()
    assert len(cut) == 1
    A.wait_line(lambda ln: "dsage server: error: the database lock connection was lost" in ln
                and "stopped serving" in ln)
    assert A.p.wait(30) == 1
    B.furl(timeout=60)
    procs.append(Proc(b, "worker", "--key", str(b / "worker_key"), "--workers", "1", "--quiet"))
    D = dsage.connect(b / "server.furl", home=a, key=a / "dsage_key", timeout=30)
    try:
        assert D.get_job(queued).wait(60).result == "waited"
    finally:
        D.shutdown()
