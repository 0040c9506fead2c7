"""``start_all``: a server and a worker as child processes of the user's Python, tied to its life."""
from __future__ import annotations

import atexit
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from dsage_core import home as homes, server_lock
from dsage_core.memory import tuned_env
from dsage_core.protocol.errors import ServerUnavailable


def _die_with_parent() -> None:  # runs in the child before exec
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass
    os.setpgrp()  # a Ctrl+C at the prompt should not hit the server


class LocalCluster:
    """The processes ``start_all`` started; ``stop()`` ends them (also at interpreter exit)."""

    def __init__(self, home: Path, furl: str, procs: list[subprocess.Popen[bytes]]) -> None:
        self.home = home
        self.furl = furl
        self.procs = procs
        atexit.register(self.stop)

    @classmethod
    def start(cls, home: Any, workers: int) -> "LocalCluster":
        from dsage_core.ports import pick_port
        from dsage_core.setup import ensure_setup, server_id
        h = homes.resolve_home(home)
        ensure_setup(h)
        if server_lock.held(h):
            raise ServerUnavailable(f"a dsage server already runs on {h}; use dsage.connect() to use it")
        port = pick_port(h, 0)
        furl = f"pb://{server_id(h)}@tcp:127.0.0.1:{port}/login"
        logs = h / homes.LOGS
        logs.mkdir(exist_ok=True, mode=0o700)
        py = [sys.executable, "-m", "dsage_core"]
        server = _spawn(py + ["server", "--home", str(h), "--port", str(port), "--quiet"], logs / "server.log")
        server_lock.announce(h, server.pid)   # our worker and client then wait for its local socket
        # the worker's own key (role worker), on a pipe: no path to it on its command line
        from dsage_core.keyfd import key_pipe
        kfd = key_pipe((h / homes.WORKER_KEY).read_text())
        try:
            worker = _spawn(py + ["worker", "--home", str(h), "--server", furl, "--workers", str(workers),
                                  "--quiet", "--key-fd", str(kfd)], logs / "worker.log", pass_fds=(kfd,))
        finally:
            os.close(kfd)
        return cls(h, furl, [server, worker])

    def stop(self, timeout: float = 5.0) -> None:
        for p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in reversed(self.procs):
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        atexit.unregister(self.stop)

    def log_tail(self, name: str, lines: int = 20) -> str:
        p = self.home / homes.LOGS / f"{name}.log"
        try:
            return "\n".join(p.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def _spawn(argv: list[str], log: Path, pass_fds: tuple[int, ...] = ()) -> subprocess.Popen[bytes]:
    out = os.fdopen(os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab")
    try:
        os.fchmod(out.fileno(), 0o600)   # a log from an older version may be open to others
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                preexec_fn=_die_with_parent, close_fds=True, pass_fds=pass_fds,
                                env=tuned_env(dict(os.environ)))
    finally:
        out.close()
