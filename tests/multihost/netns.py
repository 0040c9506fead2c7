"""Hosts as Linux network namespaces on one private switch, for tests of dsage across machines.

``Lan`` makes a "switch" namespace holding a bridge; each ``Host`` is a namespace joined to it by a
veth pair, with its own address on a subnet only these namespaces see, its own DSAGE_HOME, and the
processes the test starts in it (``ip netns exec``). Faults are applied to one host's link: ``cut()``
downs its switch port (the cable pulled: the host's own side keeps its address and sees no error),
``lossy(pct)`` drops that share of its packets with nftables inside its namespace.

Names derive from the pid and a counter, so two test runs (or two tests of one run) never collide;
``close()`` ends the processes the test started and deletes the namespaces, even after a failure.
Nothing here ever addresses anything but these namespaces' own addresses and loopback.
"""
from __future__ import annotations

import itertools
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

_counter = itertools.count()


class NetnsUnavailable(Exception):
    """Network namespaces cannot be made here (not root, no ``ip``, or the kernel refuses)."""


def ip(*args: str, check: bool = True, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    p = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=timeout)
    if check and p.returncode:
        raise RuntimeError(f"ip {' '.join(args)}: {p.stderr.strip() or p.returncode}")
    return p


def check_available() -> None:
    """Raise NetnsUnavailable with the reason when this process cannot create namespaces."""
    if not sys.platform.startswith("linux"):
        raise NetnsUnavailable("network namespaces are Linux-only")
    if os.geteuid() != 0:
        raise NetnsUnavailable("network namespaces need root (ip netns); run the multi-host tests as root")
    if shutil.which("ip") is None:
        raise NetnsUnavailable("the 'ip' command (iproute2) is not installed")
    probe = f"dsmh{os.getpid()}p{next(_counter)}"
    p = ip("netns", "add", probe, check=False)
    if p.returncode:
        raise NetnsUnavailable(f"'ip netns add' is not permitted here: {p.stderr.strip()}")
    ip("netns", "del", probe, check=False)


def ensure_nft() -> str:
    """The path of ``nft``, installing Debian's nftables once if it is missing (NetnsUnavailable if
    that fails)."""
    path = shutil.which("nft")
    if path:
        return path
    if shutil.which("apt-get") is None:
        raise NetnsUnavailable("nft (nftables) is not installed and there is no apt-get to install it")
    p = subprocess.run(["apt-get", "install", "-y", "-q", "nftables"], capture_output=True, text=True,
                       timeout=300, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    path = shutil.which("nft")
    if not path:
        raise NetnsUnavailable(f"nft (nftables) is missing and 'apt-get install nftables' failed: "
                               f"{(p.stderr or p.stdout).strip()[-300:]}")
    return path


class Host:
    """One namespace on the switch: an address, a home, and the processes started in it."""

    def __init__(self, lan: "Lan", name: str, index: int) -> None:
        self.lan = lan
        self.name = name
        self.ns = f"{lan.prefix}-{name}"
        self.addr = f"{lan.subnet}.{index}"
        self.port = f"p{index}"              #: its port (veth end) on the switch
        self.home = lan.root / name
        self.home.mkdir(parents=True, exist_ok=True)
        self.procs: list[subprocess.Popen[str]] = []
        ip("netns", "add", self.ns)
        lan.namespaces.append(self.ns)
        ip("-n", self.ns, "link", "set", "lo", "up")
        ip("link", "add", "eth0", "netns", self.ns, "type", "veth", "peer", "name", self.port,
           "netns", lan.switch)
        ip("-n", lan.switch, "link", "set", self.port, "master", "br0", "up")
        ip("-n", self.ns, "addr", "add", f"{self.addr}/24", "dev", "eth0")
        ip("-n", self.ns, "link", "set", "eth0", "up")

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of a process of this host: its own DSAGE_HOME."""
        env = {**os.environ, "DSAGE_HOME": str(self.home), "PYTHONUNBUFFERED": "1", **extra}
        env.pop("DSAGE_PARENT_PID", None)
        return env

    def cmd(self, *args: str) -> list[str]:
        return ["ip", "netns", "exec", self.ns, *args]

    def run(self, *args: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a command in this host and wait for it."""
        p = subprocess.run(self.cmd(*args), capture_output=True, text=True, timeout=timeout, env=self.env())
        if check and p.returncode:
            raise RuntimeError(f"{self.name}: {' '.join(args)} exited {p.returncode}:\n{p.stdout}\n{p.stderr}")
        return p

    def dsage(self, *args: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess[str]:
        """``dsage ARGS`` in this host, with this host's home."""
        return self.run(sys.executable, "-m", "dsage_core", *args, timeout=timeout, check=check)

    def start(self, *args: str, log: str | None = None) -> subprocess.Popen[str]:
        """Start a long-running command in this host; its stdout is a pipe, stderr goes to a log
        file in the home (read it with ``log_text``). Stopped by ``stop`` or ``Lan.close``."""
        err = open(self.home / (log or "proc.log"), "a")
        p = subprocess.Popen(self.cmd(*args), stdout=subprocess.PIPE, stderr=err, text=True, env=self.env(),
                             start_new_session=True)
        err.close()
        self.procs.append(p)
        return p

    def start_dsage(self, *args: str, log: str) -> subprocess.Popen[str]:
        return self.start(sys.executable, "-m", "dsage_core", *args, log=log)

    def log_text(self, log: str) -> str:
        p = self.home / log
        return p.read_text(errors="replace") if p.exists() else ""

    def stop(self, p: subprocess.Popen[str], sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        """Stop one process this host started (SIGKILL after *timeout*)."""
        if p.poll() is None:
            p.send_signal(sig)
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(10)
        if p.stdout:
            p.stdout.close()
        if p in self.procs:
            self.procs.remove(p)
        return p.returncode

    def cut(self) -> None:
        """Pull this host's cable: its switch port goes down (nothing reaches it, nothing leaves)."""
        ip("-n", self.lan.switch, "link", "set", self.port, "down")

    def reconnect(self) -> None:
        ip("-n", self.lan.switch, "link", "set", self.port, "up")

    def lossy(self, percent: int) -> None:
        """Drop *percent* % of this host's packets, both ways (nftables in its namespace)."""
        ensure_nft()
        script = ("table inet dsage_loss {\n"
                  f" chain i {{ type filter hook input priority 0; numgen random mod 100 < {percent} counter drop; }}\n"
                  f" chain o {{ type filter hook output priority 0; numgen random mod 100 < {percent} counter drop; }}\n"
                  "}\n")
        p = subprocess.run(self.cmd("nft", "-f", "-"), input=script, capture_output=True, text=True, timeout=20)
        if p.returncode:
            raise RuntimeError(f"nft in {self.ns}: {p.stderr.strip()}")

    def dropped(self) -> int:
        """Packets the loss rules have dropped so far (proof the link really was lossy)."""
        p = self.run("nft", "-j", "list", "table", "inet", "dsage_loss", check=False)
        import json
        total = 0
        for item in json.loads(p.stdout or "{}").get("nftables", []):
            for expr in item.get("rule", {}).get("expr", []):
                total += expr.get("counter", {}).get("packets", 0)
        return total

    def close(self) -> None:
        for p in list(self.procs):
            try:
                self.stop(p, timeout=10)
            except Exception:
                pass
        # descendants our processes left behind (job children): still in the namespace
        for pid in ip("netns", "pids", self.ns, check=False).stdout.split():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (OSError, ValueError):
                pass


class Lan:
    """A switch (a bridge in its own namespace) and the hosts on it; ``close()`` removes them all."""

    def __init__(self, root: Path) -> None:
        n = next(_counter)
        pid = os.getpid()
        self.prefix = f"dsmh{pid}n{n}"
        # a subnet per Lan: 10.X.Y.0/24; only this Lan's namespaces ever see it
        self.subnet = f"10.{100 + (pid >> 8) % 100}.{(pid + n * 37) % 256}"
        self.root = Path(root)
        self.hosts: dict[str, Host] = {}
        self.namespaces: list[str] = []
        self.switch = f"{self.prefix}-sw"
        ip("netns", "add", self.switch)
        self.namespaces.append(self.switch)
        ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
        ip("-n", self.switch, "link", "set", "br0", "up")

    def add(self, name: str) -> Host:
        h = Host(self, name, len(self.hosts) + 1)
        self.hosts[name] = h
        return h

    def __getitem__(self, name: str) -> Host:
        return self.hosts[name]

    def close(self) -> None:
        for h in self.hosts.values():
            h.close()
        for ns in reversed(self.namespaces):
            ip("netns", "del", ns, check=False)
        self.namespaces = []


def wait_for(cond: Any, timeout: float, what: str, interval: float = 0.1) -> Any:
    """Poll *cond* until it returns something true; AssertionError naming *what* after *timeout* s."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            v = cond()
            if v:
                return v
        except Exception as e:   # e.g. the server is restarting
            last_error = e
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}"
                                 + (f" (last error: {last_error})" if last_error else ""))
        time.sleep(interval)
