"""The ``dsage`` command as a user runs it: separate processes over TCP on loopback."""
import os
import signal
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.timeout(120)


def dsage(home, *args, timeout=60, check=True):
    env = dict(os.environ, DSAGE_HOME=str(home))
    p = subprocess.run([sys.executable, "-m", "dsage_core", *args], capture_output=True, text=True,
                       timeout=timeout, env=env)
    if check and p.returncode != 0:
        raise AssertionError(f"dsage {' '.join(args)} -> {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p


@pytest.fixture
def running(tmp_path, request):
    """Server and worker processes on one home; param "tcp": the server opens no local socket."""
    home = tmp_path / "home"
    dsage(home, "setup", "--yes")
    env = dict(os.environ, DSAGE_HOME=str(home))
    extra = ["--no-local-socket"] if getattr(request, "param", "local") == "tcp" else []
    server = subprocess.Popen([sys.executable, "-m", "dsage_core", "server", "--quiet", *extra], env=env,
                              stdout=subprocess.PIPE, text=True)
    furl = server.stdout.readline().strip()  # the server prints its furl once it listens
    assert furl.startswith("pb://"), furl
    worker = subprocess.Popen([sys.executable, "-m", "dsage_core", "worker", "--workers", "2", "--quiet"],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    yield home, furl
    for p in (worker, server):
        p.send_signal(signal.SIGTERM)
    for p in (worker, server):
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            p.kill()


def test_setup_twice_keeps_keys(tmp_path):
    """dsage setup run twice keeps the existing key."""
    home = tmp_path / "h"
    dsage(home, "setup", "--yes")
    key = (home / "dsage_key").read_bytes()
    dsage(home, "setup", "--yes")
    assert (home / "dsage_key").read_bytes() == key


@pytest.mark.parametrize("running", ["tcp", "local"], indirect=True)
def test_server_worker_eval_over_tcp(running, request):
    """dsage server + dsage worker in other processes; dsage eval '2+2' --wait prints 4, over TCP
    (Foolscap) when the server opens no local socket, else over the home's UNIX socket."""
    home, furl = running
    assert (home / "server.furl").read_text().strip() == furl
    assert dsage(home, "eval", "2+2", "--wait").stdout.strip() == "4"
    workers = dsage(home, "workers").stdout
    if request.node.callspec.params["running"] == "tcp":
        assert "127.0.0.1:" in workers and not (home / "server.sock").exists()
    else:
        assert "local:" in workers and (home / "server.sock").is_socket()


def test_submit_jobs_job_kill_workers_stats(running, tmp_path):
    """The job commands show what a user needs, and errors are one clear line."""
    home, _ = running
    f = tmp_path / "job.py"
    f.write_text("print('hi from job')\nDSAGE_RESULT = sorted(set(range(10**5)))[-1]\n")
    out = dsage(home, "submit", str(f), "--wait").stdout
    assert "99999" in out
    listing = dsage(home, "jobs").stdout
    assert "job.py" in listing and "completed" in listing
    job_id = listing.strip().splitlines()[-1].split()[0]
    detail = dsage(home, "job", job_id).stdout
    assert "hi from job" in detail and "99999" in detail
    assert "keyed" in dsage(home, "workers").stdout
    assert "completed" in dsage(home, "stats").stdout
    bad = dsage(home, "job", "999999", check=False)
    assert bad.returncode == 1 and "no such job" in bad.stderr
    missing = dsage(home, "submit", str(f), str(tmp_path / "nope.py"), check=False)
    assert missing.returncode == 1 and "no such file" in missing.stderr
    assert dsage(home, "jobs").stdout == listing  # the good file was not sent either
    assert "job.py" in dsage(home, "jobs", "--status", "completed").stdout
    assert "job.py" not in dsage(home, "jobs", "--status", "failed").stdout
    failed = dsage(home, "eval", "1/0", "--wait", check=False)
    assert failed.returncode == 2 and "ZeroDivisionError" in failed.stderr


def test_submit_refuses_a_py_file_that_does_not_compile(running, tmp_path):
    """dsage submit compiles every .py file first: a syntax error names the file and the line, and
    no file is sent (not even the good one before it)."""
    home, _ = running
    good, bad = tmp_path / "good.py", tmp_path / "bad.py"
    good.write_text("DSAGE_RESULT = 1\n")
    bad.write_text("x = 1\ndef (:\n    pass\n")
    before = dsage(home, "jobs").stdout
    p = dsage(home, "submit", str(good), str(bad), "--wait", check=False)
    assert p.returncode == 1 and p.stdout == ""
    assert f"dsage: error: {bad}, line 2: SyntaxError: invalid syntax\n    def (:\n        ^" in p.stderr
    assert dsage(home, "jobs").stdout == before


def test_restarted_server_keeps_finished_and_runs_queued(tmp_path):
    """A server killed and restarted lists finished jobs and finishes queued ones (same furl)."""
    home = tmp_path / "home"
    dsage(home, "setup", "--yes")
    env = dict(os.environ, DSAGE_HOME=str(home))

    def server():
        p = subprocess.Popen([sys.executable, "-m", "dsage_core", "server", "--quiet"], env=env,
                             stdout=subprocess.PIPE, text=True)
        return p, p.stdout.readline().strip()

    def worker():
        return subprocess.Popen([sys.executable, "-m", "dsage_core", "worker", "-n", "1", "--quiet"], env=env)
    s1, furl1 = server()
    w1 = worker()
    assert dsage(home, "eval", "'before'", "--wait").stdout.strip() == "'before'"
    w1.send_signal(signal.SIGTERM)
    w1.wait(15)
    submitted = dsage(home, "eval", "'queued'").stdout  # no worker now: it stays queued
    assert submitted.startswith("submitted job ")
    queued = submitted.split()[2]  # as a script would take it: the string of digits
    s1.send_signal(signal.SIGKILL)
    s1.wait()
    s2, furl2 = server()
    w2 = worker()
    try:
        assert furl2 == furl1
        assert "'before'" in dsage(home, "jobs").stdout
        D = dsage_api_connect(home)
        try:
            assert D.get_job(queued).wait(60).result == "queued"
        finally:
            D.shutdown()
    finally:
        for p in (w2, s2):
            p.send_signal(signal.SIGTERM)
            p.wait(15)


def dsage_api_connect(home):
    import dsage_core
    return dsage_core.connect(home / "server.furl", home=home, timeout=20)


def test_unreachable_server_fails_fast(tmp_path):
    """A client command against a server that is not running fails within seconds."""
    home = tmp_path / "home"
    dsage(home, "setup", "--yes")
    (home / "server.furl").write_text("pb://abcdefghijklmnopqrstuvwxyz234567@tcp:127.0.0.1:9/login\n")
    t = time.monotonic()
    p = dsage(home, "eval", "1", "--connect-timeout", "3", check=False)
    assert p.returncode == 1 and "cannot reach" in p.stderr
    assert time.monotonic() - t < 15


def test_start_all_quick_start(tmp_path):
    """The README quick start: start_all, D('2+2'), eval_file, shutdown stops the processes. The
    client and the worker start before the server listens, and still use its local socket."""
    code = (
        "import dsage_core as dsage, sys\n"
        f"D = dsage.start_all(workers=2, home={str(tmp_path / 'qs')!r})\n"
        "j = D('2+2'); print(j.wait().result)\n"
        f"open({str(tmp_path / 'job.py')!r}, 'w').write('DSAGE_RESULT = sorted(set(range(10**6)))[-1]')\n"
        f"print(D.eval_file({str(tmp_path / 'job.py')!r}).wait().result)\n"
        "print(D.aclient.conn.transport, [w['address'].split(':')[0] for w in D.workers()])\n"
        "procs = D.cluster.procs\n"
        "D.shutdown()\n"
        "print(all(p.poll() is not None for p in procs))\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=90)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["4", "999999", "local", "['local']", "True"]


def test_user_commands_take_effect_without_restart(running, tmp_path):
    """dsage user add/list/remove manage keys on a running server; the new user can submit at once."""
    home, furl = running
    from dsage_core import keys
    keys.generate_keypair(tmp_path / "bob", tmp_path / "bob.pub")
    out = dsage(home, "user", "add", "bob", "--key", str(tmp_path / "bob.pub"), "--role", "client").stdout
    assert "added bob (client, SHA256:" in out
    assert "bob" in dsage(home, "user", "list").stdout
    bob = dsage(home, "eval", "'hi from bob'", "--wait", "--key", str(tmp_path / "bob")).stdout
    assert bob.strip() == "'hi from bob'"
    denied = dsage(home, "user", "--key", str(tmp_path / "bob"), "list", check=False)
    assert denied.returncode == 1 and "admin" in denied.stderr
    dsage(home, "user", "remove", "bob")
    gone = dsage(home, "eval", "1", "--key", str(tmp_path / "bob"), check=False)
    assert gone.returncode == 1 and "unknown key" in gone.stderr
