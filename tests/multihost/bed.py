"""dsage on namespace hosts, through the user's entry points: ``dsage setup``, ``dsage server``,
``dsage user add``/``dsage invite``, ``dsage worker``, ``dsage eval``.

The test process itself watches the server through its home's UNIX socket (a file path, so it
crosses network namespaces) with the ordinary client API; it never opens a TCP connection.
"""
from __future__ import annotations

import atexit
import json
import select
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.multihost.netns import Host, Lan, wait_for

PORT = 8710   # every namespace has its own ports: no clash with anything else on the machine
CLIENT_SCRIPT = Path(__file__).with_name("client_jobs.py")
RELAY_SCRIPT = Path(__file__).with_name("relay.py")


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

    def __init__(self, host: Host, *args: str, setup: bool = True) -> None:
        self.host = host
        self.args = args
        self.proc: subprocess.Popen[str] | None = None
        self.furl = ""
        self._D: Any = None
        if setup:
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


_set_up: dict[str, Path] = {}   #: host name -> a copy of its home right after its first `dsage setup`


def setup_homes(hosts: list[Host], timeout: float = 120) -> None:
    """``dsage setup --yes`` on every host at once (each makes its keys, certificate and empty
    database). A host name set up before in this process gets a copy of that fresh home instead:
    the same keys, a new store (5 set-ups cost ~4 s of a 2-core machine; a copy, milliseconds)."""
    fresh = [h for h in hosts if h.name not in _set_up]
    procs = [(h, subprocess.Popen(h.cmd(sys.executable, "-m", "dsage_core", "setup", "--yes"),
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=h.env()))
             for h in fresh]
    for h, p in procs:
        _, err = p.communicate(timeout=timeout)
        if p.returncode:
            raise RuntimeError(f"{h.name}: dsage setup exited {p.returncode}: {err}")
    if fresh and not _set_up:
        root = Path(tempfile.mkdtemp(prefix="dsage-bed-homes-"))
        atexit.register(shutil.rmtree, root, ignore_errors=True)
        _set_up[""] = root
    for h in hosts:
        if h in fresh:
            _set_up[h.name] = _set_up[""] / h.name
            shutil.copytree(h.home, _set_up[h.name])
        else:
            shutil.copytree(_set_up[h.name], h.home, dirs_exist_ok=True)


def read_json_line(p: subprocess.Popen[str], prefix: str, timeout: float, what: str) -> Any:
    """The JSON after *prefix* on the first line *p* prints that starts with it (others are skipped)."""
    deadline = time.monotonic() + timeout
    while True:
        line = read_line(p, max(0.1, deadline - time.monotonic()), what)
        if line.startswith(prefix + " "):
            return json.loads(line[len(prefix) + 1:])


class Bed:
    """The multi-host bed: a ``server`` host, worker hosts ``w1``..``wN`` and a ``client`` host on one
    LAN, each with its own DSAGE_HOME and address. The server listens on 0.0.0.0; each worker host
    runs ``dsage worker`` with its own key (registered as a worker) and a copy of the furl file; the
    client host's key is registered as a client. With *delay_ms*, a ``wan`` host runs the delaying
    relay (``relay.py``) in front of the server and the furl names it (``--location``): every worker
    and client connection crosses it, *delay_ms* each way. The test process itself watches the
    server over its home's UNIX socket (``srv.D``), which the relay does not slow."""

    def __init__(self, lan: Lan, *, workers: int = 3, slots: int = 2, server_args: tuple[str, ...] = (),
                 delay_ms: float | None = None) -> None:
        self.lan = lan
        self.server = lan.add("server")
        self.workers = [lan.add(f"w{i + 1}") for i in range(workers)]
        self.client = lan.add("client")
        self.wan = lan.add("wan") if delay_ms is not None else None
        self.delay_ms = delay_ms
        self.slots = slots
        setup_homes([self.server, *self.workers, self.client])
        location = ("--location", self.wan.addr) if self.wan is not None else ()
        self.srv = Server(self.server, "--listen", "0.0.0.0", *location, *server_args, setup=False)
        self.worker_procs: dict[str, subprocess.Popen[str]] = {}
        self.relay: subprocess.Popen[str] | None = None

    def start(self) -> "Bed":
        """Relay (if any), server, registrations, then every worker; returns once all are connected."""
        if self.wan is not None:
            self.relay = self.wan.start(sys.executable, str(RELAY_SCRIPT), "--listen", f"{self.wan.addr}:{PORT}",
                                        "--to", f"{self.server.addr}:{PORT}", "--delay-ms", str(self.delay_ms),
                                        log="relay.log")
            assert read_line(self.relay, 30, "the relay listening").startswith("relay: listening")
        self.srv.start()
        for h in self.workers:
            self.register(h, "worker")
        self.register(self.client, "client")
        for h in [*self.workers, self.client]:
            self.srv.copy_furl(h)
        for h in self.workers:
            self.worker_procs[h.name] = start_worker(h, self.slots)
        self.srv.wait_workers(len(self.workers))
        return self

    def register(self, host: Host, role: str) -> None:
        """What ``dsage user add NAME --key KEY.pub --role ROLE`` does, over the test's admin session."""
        pub = (host.home / "dsage_key.pub").read_text().strip()
        self.srv.D.admin("user_add", host.name, pub, role)

    def run_client(self, *args: str) -> subprocess.Popen[str]:
        """``python client_jobs.py ARGS`` on the client host (see that script for the modes)."""
        return self.client.start(sys.executable, str(CLIENT_SCRIPT), *args, log="client.log")

    def host_of(self, worker: dict[str, Any]) -> Host:
        """The worker host a connected worker (``D.workers()`` entry) came from."""
        for h in self.workers:
            if str(worker.get("address", "")).startswith(h.addr + ":"):
                return h
        raise AssertionError(f"worker from no known host: {worker}")

    def worker_ids(self) -> dict[str, str]:
        """Host name -> the id of the worker it has connected now."""
        return {self.host_of(w).name: w["id"] for w in self.srv.D.workers()}

    def jobs(self, **query: Any) -> list[Any]:
        """Every user's jobs as the server lists them (JobInfo: id, status, worker, attempts, ...)."""
        D = self.srv.D
        return D._sync(D.aclient.list_jobs, all_users=True, limit=100_000, **query)

    def stored(self) -> dict[int, tuple[str, int, str | None]]:
        """The server's SQLite store, read directly: job id -> (status, attempts, worker)."""
        c = sqlite3.connect(str(self.server.home / "dsage.sqlite"), timeout=10)
        try:
            return {r[0]: (r[1], r[2], r[3]) for r in c.execute("SELECT id, status, attempts, worker FROM jobs")}
        finally:
            c.close()

    def logs(self) -> str:
        out = [self.srv.logs()]
        for h in [*self.workers, self.client]:
            for log in ("worker.log", "client.log"):
                text = h.log_text(log)
                if text:
                    out.append(f"{h.name} {log} tail:\n{text[-1500:]}")
        return "\n".join(out)
