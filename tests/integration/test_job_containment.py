"""Job code attacks its own worker (issue 15, items 2, 5, 6, 9 and the monitor kill), through the
user's entry points: ``dsage.start_all()`` in a fresh interpreter and ``dsage worker --key PATH``.

Each test runs a small script in a subprocess; the script prints one JSON line the test checks.
The fork-bomb test runs that script as the unprivileged user ``nobody`` (the kernel never applies
RLIMIT_NPROC to root), with the system's Python 3.11 and this tree on its path.
"""
from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import psutil
import pytest

from dsage_core.worker import contain

ROOT = Path(__file__).resolve().parents[2]

needs_landlock = pytest.mark.skipif(contain.landlock_abi() < 1, reason="needs Linux Landlock (5.13+)")
needs_signal_scope = pytest.mark.skipif(contain.landlock_abi() < 6,
                                        reason="needs Landlock signal scoping (Linux 6.12+)")

#: job code: every way a job might find a dsage key (environment, parent directories of its
#: working directory, the monitor's command line, environment and open files); returns what it read
FIND_KEYS = r'''
import os
found = {}
import stat
def grab(p):
    try:
        fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return   # a pipe or socket of the monitor: reading it would steal or block
        data = os.read(fd, 8192)
    except OSError:
        return
    finally:
        os.close(fd)
    if b"PRIVATE KEY" in data:
        found[p] = data.decode("ascii", "replace")
cands = set()
if os.environ.get("DSAGE_HOME"):
    cands.add(os.environ["DSAGE_HOME"])
d = os.getcwd()
while True:
    cands.add(d)
    if os.path.dirname(d) == d:
        break
    d = os.path.dirname(d)
pp = os.getppid()
for name in ("cmdline", "environ"):
    try:
        raw = open(f"/proc/{pp}/{name}", "rb").read().split(b"\0")
    except OSError:
        continue
    for i, a in enumerate(raw):
        s = a.decode("utf-8", "replace")
        if s.startswith("DSAGE_HOME="):
            cands.add(s.split("=", 1)[1])
        if s in ("--home", "--key") and i + 1 < len(raw):
            cands.add(raw[i + 1].decode())
try:
    for fd in os.listdir(f"/proc/{pp}/fd"):
        grab(f"/proc/{pp}/fd/{fd}")
        try:
            cands.add(os.readlink(f"/proc/{pp}/fd/{fd}"))
        except OSError:
            pass
except OSError:
    pass
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
def uncover():   # undo whatever covers the home: detach the mounts, in a namespace of our own too
    for c in list(cands):
        libc.umount2(c.encode(), 2)
uncover()
if os.fork() == 0:
    if libc.unshare(0x10000000 | 0x00020000) == 0:
        uncover()
        for c in list(cands):
            for n in ("dsage_key", "worker_key"):
                try:
                    data = open(os.path.join(c, n), "rb").read()
                    open(os.path.join(os.getcwd(), "leak"), "ab").write(data)
                except OSError:
                    pass
    os._exit(0)
os.wait()
if os.path.exists("leak"):
    found["leak (new namespaces)"] = open("leak").read()
for c in list(cands):
    for n in ("", "dsage_key", "worker_key"):
        p = os.path.join(c, n) if n else c
        if os.path.isfile(p):
            grab(p)
DSAGE_RESULT = found
'''

#: job code: a grandchild in its own session (setsid) that writes its pid to MARK, then sleeps
SETSID = r'''
import os, time
pid = os.fork()
if pid == 0:
    os.setsid()
    if os.fork() == 0:
        with open(MARK + ".tmp", "w") as f:
            f.write(str(os.getpid()))
        os.rename(MARK + ".tmp", MARK)
        time.sleep(600)
    os._exit(0)
os.waitpid(pid, 0)
while not os.path.exists(MARK):
    time.sleep(0.01)
'''


def _run(script: str, *, as_nobody: bool = False, timeout: float = 150) -> dict:
    """Run *script* (which prints one JSON line last) in a fresh interpreter; its parsed output."""
    if as_nobody:
        site = [p for p in sys.path if p.endswith("site-packages") and ".venv" in p]
        env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "PYTHONPATH": os.pathsep.join([str(ROOT), *site])}
        argv = ["/usr/bin/python3.11", "-c", script]

        def demote() -> None:
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
        p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env,
                           preexec_fn=demote, cwd="/tmp")
    else:
        env = {k: v for k, v in os.environ.items() if k != "DSAGE_HOME"}
        p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                           timeout=timeout, env=env)
    assert p.returncode == 0, p.stdout + p.stderr
    return json.loads(p.stdout.strip().splitlines()[-1])


def _start_all(home: Path, body: str, workers: int = 1) -> str:
    """A script: start_all on *home*, then *body* (uses ``D``, sets ``out``), prints ``out``."""
    return (f"import json, os, time\nimport dsage_core as dsage\n"
            f"D = dsage.start_all(workers={workers}, home={str(home)!r})\n"
            f"try:\n{textwrap.indent(body, '    ')}\nfinally:\n    D.shutdown()\n"
            "print(json.dumps(out))\n")


def _gone(pid: int, timeout: float = 15.0) -> bool:
    """True once process *pid* no longer runs (a zombie has stopped running)."""
    try:
        p = psutil.Process(pid)
        p.wait(timeout)   # not our child: psutil polls until it is gone
    except psutil.NoSuchProcess:
        return True
    except psutil.TimeoutExpired:
        try:
            return p.status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True
    return True


@needs_landlock
def test_start_all_job_cannot_read_any_dsage_key(tmp_path):
    """A job run through start_all finds no private key: not the owner's admin key, not the local
    worker's key, by DSAGE_HOME, parent dirs, or the monitor's /proc cmdline, environ and fds."""
    home = tmp_path / "home"
    body = (f"j = D({FIND_KEYS!r})\nj.wait(60)\n"
            "out = {'status': j.status, 'error': j.error, 'found': j.result if j.status == 'completed' else None}")
    out = _run(_start_all(home, body))
    assert out["status"] == "completed", out["error"]
    assert out["found"] == {}
    owner_key = (home / "dsage_key").read_text()
    assert owner_key not in json.dumps(out)


@needs_landlock
def test_start_all_job_cannot_log_in_as_admin_with_its_workers_key(tmp_path):
    """The local worker of start_all holds its own worker key, not the owner's admin key: the
    key the server registered for it has the worker role, and no path to it is on its command line."""
    home = tmp_path / "home"
    body = ("import subprocess, sys, psutil\nj = D('2+2')\nj.wait(60)\n"
            "mon = psutil.Process(D.cluster.procs[1].pid)\n"
            "cmd = [mon.cmdline()] + [c.cmdline() for c in mon.children()]\n"
            "users = subprocess.run([sys.executable, '-m', 'dsage_core', 'user', '--home', str(D.cluster.home),"
            " 'list'], capture_output=True, text=True, timeout=60)\n"
            "out = {'result': j.result, 'cmd': cmd, 'users': users.stdout + users.stderr}\n")
    out = _run(_start_all(home, body))
    assert out["result"] == 4
    flat = " ".join(" ".join(c) for c in out["cmd"])
    assert "--key-fd" in flat
    assert "--key " not in flat and "dsage_key" not in flat and "worker_key" not in flat
    line = [ln for ln in out["users"].splitlines() if "local-worker" in ln]
    assert line and "worker" in line[0].replace("local-worker", "") and "admin" not in line[0], out["users"]


@needs_landlock
def test_worker_with_key_path_hides_its_key_from_jobs(tmp_path):
    """``dsage worker --key PATH`` on another home: a job cannot read PATH (found through the
    monitor's command line, environment or fds) nor the worker's home."""
    home, whome = tmp_path / "home", tmp_path / "whome"
    kdir = tmp_path / "keys"
    kdir.mkdir()
    from dsage_core import keys
    keys.generate_keypair(kdir / "wk", kdir / "wk.pub")
    body = textwrap.dedent(f"""
        import subprocess, sys
        def dsg(*a):
            return subprocess.run([sys.executable, '-m', 'dsage_core', *a], capture_output=True,
                                  text=True, timeout=60)
        r = dsg('user', '--home', {str(home)!r}, 'add', 'wk', '--key', {str(kdir / 'wk.pub')!r}, '--role', 'worker')
        assert r.returncode == 0, r.stderr
        w = subprocess.Popen([sys.executable, '-m', 'dsage_core', 'worker', '--home', {str(whome)!r},
                              '--server', D.cluster.furl, '--key', {str(kdir / 'wk')!r}, '--workers', '1', '--quiet'])
        try:
            j = D({FIND_KEYS!r})
            j.wait(60)
            import psutil
            out = {{'status': j.status, 'error': j.error, 'found': j.result if j.status == 'completed' else None,
                    'cmdline': psutil.Process(w.pid).cmdline()}}
        finally:
            w.terminate()
            w.wait(30)
    """)
    out = _run(_start_all(home, body, workers=0))
    assert out["status"] == "completed", out["error"]
    assert out["found"] == {}
    assert "--key-fd" in out["cmdline"] and str(kdir) not in " ".join(out["cmdline"])


@needs_landlock
def test_jobs_still_create_files_beside_the_home(tmp_path):
    """Hiding the home leaves the rest of the file system as it was: a job creates a new file in
    the directory that holds the home (a mount covers the home; no allow-list of paths)."""
    target = tmp_path / "written-by-job.txt"
    job = f"open({str(target)!r}, 'w').write('hi')"
    body = (f"j = D({job!r})\nj.wait(60)\n"
            "out = {'status': j.status, 'error': j.error}")
    out = _run(_start_all(tmp_path / "home", body))
    assert out["status"] == "completed", out["error"]
    assert target.read_text() == "hi"


def _setsid_case(tmp_path: Path, how: str) -> None:
    (tmp_path / "marks").mkdir()   # before the worker starts: see the README on Landlock
    mark = tmp_path / "marks" / f"mark-{how}"
    code = f"MARK = {str(mark)!r}\n" + SETSID
    if how == "end":
        job = f"j = D({code + 'DSAGE_RESULT = 1'!r})\nj.wait(60)\n"
    elif how == "timeout":
        job = f"j = D({code + 'time.sleep(600)'!r}, timeout=3)\nj.wait(60)\n"
    else:
        job = (f"j = D({code + 'time.sleep(600)'!r})\n"
               f"while not os.path.exists({str(mark)!r}):\n    time.sleep(0.02)\n"
               "j.kill()\nj.wait(60)\n")
    body = job + (f"out = {{'status': j.status, 'error': j.error, "
                  f"'pid': int(open({str(mark)!r}).read()) if os.path.exists({str(mark)!r}) else None}}")
    out = _run(_start_all(tmp_path / "home", body))
    expected = {"end": "completed", "timeout": "timed_out", "kill": "killed"}[how]
    assert out["status"] == expected, out
    assert _gone(out["pid"]), f"the setsid grandchild {out['pid']} outlived its job ({how})"


@pytest.mark.parametrize("how", ["end", "timeout", "kill"])
def test_setsid_grandchild_dies_with_its_job(tmp_path, how):
    """A grandchild that left the job's session (setsid) dies at the job's normal end, at its
    timeout and when it is killed."""
    _setsid_case(tmp_path, how)


FORK_BOMB = r'''
import os, time
pids = []
for i in range(200):
    p = os.fork()
    if p == 0:
        time.sleep(600)
        os._exit(0)
    pids.append(p)
DSAGE_RESULT = len(pids)
'''


@pytest.mark.skipif(not os.path.exists("/usr/bin/python3.11") or os.getuid() != 0,
                    reason="runs start_all as 'nobody' with /usr/bin/python3.11 (needs root to switch)")
def test_fork_bomb_is_capped_with_a_clear_error():
    """A job that forks 200 processes hits the per-job process limit (default max(128, 2 x CPUs + 32)) and fails saying
    so; the next job on the same worker still runs."""
    tree = Path(__file__).resolve().parents[2]
    probe = subprocess.run(["/usr/bin/python3.11", "-c", "import dsage_core"], cwd="/", user=65534,
                           env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"}, capture_output=True)
    if probe.returncode != 0:   # e.g. a clone inside a 0700 temp dir
        pytest.skip(f"user nobody cannot read this checkout ({tree}), so it cannot import dsage_core")
    base = Path(tempfile.mkdtemp(prefix="dsage-nobody-"))
    try:
        os.chown(base, 65534, 65534)
        body = (f"j = D({FORK_BOMB!r})\nj.wait(90)\nk = D('6*7')\nk.wait(60)\n"
                "out = {'status': j.status, 'error': j.error, 'next': k.result}")
        out = _run(_start_all(base / "home", body), as_nobody=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    assert out["status"] == "failed", out
    assert f"process limit of {contain.default_max_procs()} processes per job reached" in out["error"]
    assert out["next"] == 42


RAISE_MEM = r'''
import resource
soft, hard = resource.getrlimit(resource.RLIMIT_AS)
try:
    resource.setrlimit(resource.RLIMIT_AS, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    raised = True
except (ValueError, OSError):
    raised = False
x = bytearray(3 * 1024**3)
DSAGE_RESULT = raised
'''


def test_job_cannot_lift_its_memory_limit(tmp_path):
    """A job with mem_limit=1 GiB that raises its own RLIMIT_AS and allocates 3 GiB cannot raise
    it, and fails with "memory limit of 1024 MiB exceeded"; a job without a limit runs after it."""
    body = (f"j = D({RAISE_MEM!r}, mem_limit=1024**3)\nj.wait(60)\n"
            "k = D('import resource; resource.getrlimit(resource.RLIMIT_AS)[1]')\nk.wait(60)\n"
            "out = {'status': j.status, 'error': j.error, 'next': k.result}")
    out = _run(_start_all(tmp_path / "home", body))
    assert out["status"] == "failed", out
    assert "memory limit of 1024 MiB exceeded" in out["error"]
    assert out["next"] == -1   # RLIM_INFINITY: the next job is not bound by the last one's limit


LIFT_CPU = r'''
import resource, signal, time
signal.signal(signal.SIGXCPU, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_CPU, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
end = time.time() + 12
while time.time() < end:
    pass
DSAGE_RESULT = "ran to the end"
'''


def test_job_cannot_lift_its_cpu_limit(tmp_path):
    """A job with cpu_limit=1 that lifts its own RLIMIT_CPU and ignores SIGXCPU still fails, with
    "CPU time limit of 1 s exceeded", long before its 12 s of spinning end."""
    body = (f"t = time.time()\nj = D({LIFT_CPU!r}, cpu_limit=1)\nj.wait(60)\n"
            "out = {'status': j.status, 'error': j.error, 'took': time.time() - t}")
    out = _run(_start_all(tmp_path / "home", body))
    assert out["status"] == "failed", out
    assert "CPU time limit of 1 s exceeded" in out["error"]
    assert out["took"] < 10


@needs_signal_scope
def test_job_that_kills_its_monitor_fails_alone(tmp_path):
    """A job that SIGKILLs its monitor (os.kill(os.getppid(), 9)) or its process group cannot:
    the job fails with the reason and the same worker runs the next job."""
    body = ("j = D('import os, signal; os.kill(os.getppid(), signal.SIGKILL)')\nj.wait(60)\n"
            "g = D('import os, signal; os.killpg(os.getpgid(os.getppid()), signal.SIGKILL)')\ng.wait(60)\n"
            "k = D('6*7')\nk.wait(60)\n"
            "out = {'status': j.status, 'error': j.error, 'gstatus': g.status, 'next': k.result,"
            " 'alive': D.cluster.procs[1].poll() is None}")
    out = _run(_start_all(tmp_path / "home", body))
    assert out["status"] == "failed" and "PermissionError" in out["error"], out
    assert out["gstatus"] == "failed", out
    assert out["next"] == 42 and out["alive"]


def test_open_home_is_fixed_and_everything_is_private(tmp_path):
    """A pre-existing 0755 home: ``dsage setup --yes`` says it was open and closes it; after a
    server start and a job, the database, its -wal and -shm, keys and logs are readable by the
    owner only."""
    home = tmp_path / "home"
    home.mkdir(mode=0o755)
    home.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != "DSAGE_HOME"}
    setup = subprocess.run([sys.executable, "-m", "dsage_core", "setup", "--yes", "--home", str(home)],
                           capture_output=True, text=True, timeout=60, env=env)
    assert setup.returncode == 0, setup.stderr
    told = setup.stdout + setup.stderr
    assert "readable by others" in told and "0700" in told
    home.chmod(0o755)   # opened again behind our back: the server closes it too
    body = ("j = D('2+2')\nj.wait(60)\nfrom pathlib import Path\n"
            "out = {'result': j.result, 'modes': {str(p): os.lstat(p).st_mode "
            "for p in [D.cluster.home, *Path(D.cluster.home).rglob('*')]}}")
    out = _run(_start_all(home, body))
    assert out["result"] == 4
    names = {Path(p).name for p in out["modes"]}
    assert {"dsage.sqlite", "dsage.sqlite-wal", "dsage.sqlite-shm", "dsage_key", "worker_key",
            "server.log", "worker.log"} <= names, names
    open_ = {p: oct(m) for p, m in out["modes"].items() if m & 0o077 and not stat.S_ISLNK(m)}
    assert open_ == {}, f"readable by others while the server ran: {open_}"
