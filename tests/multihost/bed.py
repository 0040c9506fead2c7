"""dsage on namespace hosts, through the user's entry points: ``dsage setup``, ``dsage server``,
``dsage user add``/``dsage invite``, ``dsage worker``, ``dsage eval``.

The test process itself watches the server through its home's UNIX socket (a file path, so it
crosses network namespaces) with the ordinary client API; it never opens a TCP connection.
"""
from __future__ import annotations

import select
import shutil
import signal
import subprocess
import time
from typing import Any

from tests.multihost.netns import Host, wait_for

PORT = 8710   # every namespace has its own ports: no clash with anything else on the machine


def read_line(p: subprocess.Popen[str], timeout: float, what: str) -> str:
    """The next line *p* prints on stdout, within *timeout* s."""
    assert p.stdout is not None
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        r, _, _ = select.select([p.stdout], [], [], min(left, 0.5))
        if r:
            line = p.stdout.readline()
            if not line:
                raise AssertionError(f"{what}: the process exited ({p.poll()}) without printing it")
            return line.strip()
        if p.poll() is not None:
            raise AssertionError(f"{what}: the process exited with {p.returncode}")


class Server:
    """``dsage server`` running on a host; ``D`` is a client API session over its home's socket."""

    def __init__(self, host: Host, *args: str) -> None:
        self.host = host
        self.args = args
        self.proc: subprocess.Popen[str] | None = None
        self.furl = ""
        self._D: Any = None
        host.dsage("setup", "--yes")

    def start(self, timeout: float = 60) -> str:
        self.proc = self.host.start_dsage("server", "--port", str(PORT), *self.args, log="server.log")
        self.furl = read_line(self.proc, timeout, f"the furl of the server on {self.host.name}")
        assert self.furl.startswith("pb://"), self.furl
        return self.furl

    @property
    def D(self) -> Any:
        if self._D is None:
            import dsage_core
            self._D = dsage_core.connect(home=self.host.home, timeout=20)
        return self._D

    def disconnect(self) -> None:
        if self._D is not None:
            D, self._D = self._D, None
            D.shutdown()

    def stop(self, sig: int = signal.SIGTERM) -> int:
        self.disconnect()
        assert self.proc is not None
        return self.host.stop(self.proc, sig)

    def wait_workers(self, n: int, timeout: float = 60) -> list[dict[str, Any]]:
        """Wait until exactly *n* workers are connected; returns their descriptions."""
        return wait_for(lambda: (lambda ws: ws if len(ws) == n else None)(self.D.workers()), timeout,
                        f"{n} workers connected to the server on {self.host.name}\n" + self.logs())

    def logs(self) -> str:
        return "server log tail:\n" + self.host.log_text("server.log")[-3000:]

    def register(self, host: Host, role: str) -> None:
        """``dsage user add`` on the server's host for *host*'s key (``dsage setup`` there first)."""
        host.dsage("setup", "--yes")
        self.host.dsage("user", "add", host.name, "--key", str(host.home / "dsage_key.pub"), "--role", role)

    def copy_furl(self, host: Host) -> None:
        """What a user does by hand: the server's furl file, copied into the other host's home."""
        shutil.copy(self.host.home / "server.furl", host.home / "server.furl")


def start_worker(host: Host, slots: int = 2, *args: str) -> subprocess.Popen[str]:
    """``dsage worker`` on *host* (default: HOME/server.furl and HOME/dsage_key)."""
    return host.start_dsage("worker", "--workers", str(slots), *args, log="worker.log")


def join_worker(server: Server, host: Host, slots: int = 2, *args: str) -> subprocess.Popen[str]:
    """Register *host*'s key as a worker, copy the furl file over, start ``dsage worker`` there."""
    server.register(host, "worker")
    server.copy_furl(host)
    return start_worker(host, slots, *args)


def worker_of(server: Server, address_prefix: str) -> dict[str, Any]:
    """The connected worker whose peer address is on *address_prefix* (a host's address)."""
    for w in server.D.workers():
        if str(w.get("address", "")).startswith(address_prefix + ":"):
            return w
    raise AssertionError(f"no worker from {address_prefix}: {server.D.workers()}")


# a job that reports where it ran: the IPv4 addresses of the namespace its process is in
WHERE = ("sorted(a.address for l in __import__('psutil').net_if_addrs().values() for a in l "
         "if a.family == 2 and a.address != '127.0.0.1')")
