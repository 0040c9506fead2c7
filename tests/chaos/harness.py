"""Real processes on 127.0.0.1 for the chaos suite: a server and workers started as ``dsage``
subprocesses (so they can be kill -9'ed), and an in-process client on the background reactor."""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import psutil

FULL = os.environ.get("DSAGE_CHAOS") == "full"


def scale(short: int, full: int) -> int:
    """Short form in ``make test``, full form in ``make chaos``."""
    return full if FULL else short


def sleepy(i: int, ms: int) -> int:
    """A job of *ms* milliseconds whose result checks it ran on the right input."""
    import time
    time.sleep(ms / 1000)
    return i * i + 1


@dataclass
class ProcCluster:
    home: Path
    port: int
    lease_timeout: float = 3.0
    server: subprocess.Popen | None = None
    workers: list[subprocess.Popen] = field(default_factory=list)
    furl: str = ""

    def setup(self) -> None:
        from dsage_core.cli import _init_db
        from dsage_core.setup import ensure_setup, server_id
        ensure_setup(self.home)
        _init_db(self.home)
        self.furl = f"pb://{server_id(self.home)}@tcp:127.0.0.1:{self.port}/login"

    def _spawn(self, args: list[str], log: str) -> subprocess.Popen:
        out = open(self.home / f"{log}.log", "ab")
        try:
            return subprocess.Popen([sys.executable, "-m", "dsage_core", *args], stdout=out,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        finally:
            out.close()

    def start_server(self) -> None:
        self.server = self._spawn(["server", "--home", str(self.home), "--port", str(self.port),
                                   "--lease-timeout", str(self.lease_timeout), "--quiet"], "server")

    def kill_server(self) -> None:
        assert self.server is not None
        self.server.send_signal(signal.SIGKILL)
        self.server.wait(10)

    def start_worker(self, slots: int = 2) -> subprocess.Popen:
        p = self._spawn(["worker", "--home", str(self.home), "--server", self.furl, "--workers", str(slots),
                         "--quiet"], f"worker-{len(self.workers)}")
        self.workers.append(p)
        return p

    def worker_processes(self) -> list[psutil.Process]:
        """Every live worker monitor and child process."""
        procs = []
        for w in self.workers:
            if w.poll() is None:
                try:
                    m = psutil.Process(w.pid)
                    procs.append(m)
                    procs.extend(m.children())
                except psutil.NoSuchProcess:
                    pass
        return procs

    def kill_random_worker_process(self, rng: random.Random) -> str:
        procs = self.worker_processes()
        if not procs:
            return "none"
        p = rng.choice(procs)
        kind = "monitor" if any(p.pid == w.pid for w in self.workers) else "child"
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
        return kind

    def replace_dead_monitors(self, slots: int = 2) -> int:
        dead = [w for w in self.workers if w.poll() is not None]
        for w in dead:
            self.workers.remove(w)
            self.start_worker(slots)
        return len(dead)

    def stop(self) -> None:
        for p in self.workers + ([self.server] if self.server else []):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.workers + ([self.server] if self.server else []):
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
