"""``LocalCluster``: the one way dsage starts a server of one home and its local workers from this
process (``start_all``, ``dsage start-all``, the desktop app, the test and bench clusters).

Two places for the server, one class:

* :meth:`LocalCluster.spawn`: ``dsage server`` and ``dsage worker`` as child processes of the
  user's Python, started synchronously and without importing Twisted (``start_all`` counts every
  millisecond before its first result); they die with this process (``PR_SET_PDEATHSIG``) and stop
  at interpreter exit. :meth:`stop` returns when they are gone.
* :meth:`LocalCluster.embed`: the server on a reactor the caller runs (the desktop app's, the
  tests' background one), and optionally a client of it; fires with the cluster.
  :meth:`start_worker` adds ``dsage worker`` processes the reactor reaps (they end with this
  process, ``DSAGE_EXIT_WITH_PID``), :meth:`run_worker` an in-process ``WorkerService``.
  :meth:`stop` then returns a Deferred.
"""
from __future__ import annotations

import atexit
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dsage_core import home as homes, server_lock
from dsage_core.memory import tuned_env
from dsage_core.protocol.errors import ServerUnavailable


class LocalCluster:
    """A server of one home and the local workers this process started for it."""

    def __init__(self, home: Path, furl: str, *, procs: list[subprocess.Popen[bytes]] | None = None,
                 reactor: Any = None, server: Any = None) -> None:
        self.home = home
        self.furl = furl
        self.procs = procs or []      #: spawned server and worker processes (spawn)
        self.reactor = reactor        #: the reactor the server runs on (embed)
        self.server = server          #: the in-process ``ServerService`` (embed)
        self.client: Any = None       #: an ``AsyncClient`` of the server (embed with connect=True)
        self.workers: list[Any] = []  #: :class:`LocalWorker` processes and in-process workers (embed)
        if self.procs:
            atexit.register(self.stop)

    # ------------------------------------------------------------------ child processes
    @classmethod
    def spawn(cls, home: Any, workers: int) -> "LocalCluster":
        """A server and one worker with *workers* slots as child processes (``start_all``); refuses a
        home whose server already runs."""
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
        return cls(h, furl, procs=[server, worker])

    def log_tail(self, name: str, lines: int = 20) -> str:
        """The last *lines* of a spawned process's log (``server`` or ``worker``)."""
        p = self.home / homes.LOGS / f"{name}.log"
        try:
            return "\n".join(p.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    # ------------------------------------------------------------------ on the caller's reactor
    @classmethod
    def embed(cls, home: str | Path | None, reactor: Any, workers: int | None = None, *,
              connect: bool = True, follow_all: bool = True, umask: int | None = 0o077,
              **server_options: Any) -> Any:
        """Start a server on *reactor* (``ServerConfig`` takes *server_options*), a local worker
        process with *workers* slots (default: cores - 1; 0: none) and, with *connect*, an
        ``AsyncClient`` of it (``cluster.client``). Fires with the cluster; call on the reactor's
        thread. *umask*: this process keeps dsage's files (database, logs), its user's alone."""
        from twisted.internet.defer import ensureDeferred
        return ensureDeferred(cls._embed(home, reactor, workers, connect, follow_all, umask, server_options))

    @classmethod
    async def _embed(cls, home: Any, reactor: Any, workers: int | None, connect: bool, follow_all: bool,
                     umask: int | None, server_options: dict[str, Any]) -> "LocalCluster":
        from dsage_core.server.service import ServerConfig, create_server
        from dsage_core.setup import ensure_setup
        h = homes.resolve_home(home)
        if umask is not None:
            os.umask(umask)
        ensure_setup(h)  # keys and certificate; the server registers the owner key on its DB thread
        server = create_server(ServerConfig(home=h, **server_options), reactor)
        furl = await server.start()
        cluster = cls(h, furl, reactor=reactor, server=server)
        if connect:
            from dsage_core.client.core import connect_async
            try:
                cluster.client = await connect_async(furl, None, str(h), reactor, follow_all=follow_all)
            except Exception:
                await server.stop()
                raise
        n = workers if workers is not None else max(1, (os.cpu_count() or 2) - 1)
        if n > 0:
            cluster.start_worker(n)
        return cluster

    def start_worker(self, slots: int, **kw: Any) -> "LocalWorker":
        """A ``dsage worker`` process with *slots* slots (see :func:`start_worker_process`)."""
        w = start_worker_process(self.reactor, self.home, self.furl, slots, **kw)
        self.workers.append(w)
        return w

    def run_worker(self, slots: int, **config: Any) -> Any:
        """An in-process ``WorkerService`` (``WorkerConfig`` takes *config*); fires with it once it
        is connected, or fails with its error."""
        from twisted.internet.defer import Deferred
        from dsage_core.worker.service import WorkerConfig, WorkerService
        w = WorkerService(WorkerConfig(home=self.home, furl=self.furl, slots=slots, **config), self.reactor)
        d: Deferred = Deferred()

        def state(s: str) -> None:
            if s == "connected" and not d.called:
                self.workers.append(w)
                d.callback(w)
            elif s == "error" and not d.called:
                d.errback(RuntimeError(w.error))
        w.on_state(state)
        w.start()
        return d

    # ------------------------------------------------------------------ stopping
    def stop(self, timeout: float = 5.0) -> Any:
        """End what this cluster started, workers before the server. Spawned processes: returns once
        they are gone (SIGTERM, SIGKILL after *timeout*). On a reactor: a Deferred that fires once
        the workers, the client and the server stopped."""
        if self.server is None:
            self._stop_procs(timeout)
            return None
        from twisted.internet.defer import ensureDeferred
        return ensureDeferred(self._stop_embedded())

    def _stop_procs(self, timeout: float) -> None:
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

    async def _stop_embedded(self) -> None:
        from twisted.internet.defer import DeferredList
        await DeferredList([w.stop() for w in self.workers])
        try:
            if self.client is not None:
                await self.client.close()
        finally:
            await self.server.stop()


# ---------------------------------------------------------------------- worker processes
@dataclass
class LocalWorker:
    """A ``dsage worker`` child process started from this process on its reactor."""

    slots: int
    proto: Any        #: its ProcessProtocol: ``ended`` fires when it is gone, ``output`` its last lines
    transport: Any

    @property
    def pid(self) -> int:
        return self.transport.pid

    @property
    def running(self) -> bool:
        return not self.proto.ended.called

    def stop(self) -> Any:
        """SIGTERM (the worker hands its queued jobs back and exits); fires when it is gone."""
        if self.running:
            try:
                self.transport.signalProcess("TERM")
            except Exception:
                pass
        return self.proto.ended


def _worker_protocol() -> Any:
    from twisted.internet import protocol
    from twisted.internet.defer import Deferred

    class WorkerProcess(protocol.ProcessProtocol):
        """Keeps the last 50 chunks of output; ``ended`` fires (never with a Failure) when it exits."""

        def __init__(self) -> None:
            self.ended: Deferred = Deferred()
            self.output: list[bytes] = []

        def errReceived(self, data: bytes) -> None:
            self.output.append(data)
            del self.output[:-50]

        outReceived = errReceived

        def processEnded(self, reason: Any) -> None:
            if not self.ended.called:
                self.ended.callback(getattr(reason, "value", reason))  # not a Failure: ending is normal
    return WorkerProcess()


def start_worker_process(reactor: Any, home: Path, furl: str, slots: int, *, anonymous: bool = False,
                         key: Path | None = None) -> LocalWorker:
    """A ``dsage worker`` process for *home*'s server. Without *key* it gets the home's own worker
    key (role worker, ``setup.ensure_worker_key``), never the owner's admin key; either key goes on
    a pipe, never as a path on its command line."""
    from dsage_core.worker import lifeline
    from dsage_core.worker.reaping import ensure_reaper
    ensure_reaper(reactor)
    args = [sys.executable, "-m", "dsage_core", "worker", "--home", str(home), "--server", furl,
            "--workers", str(slots), "--quiet"]
    fds: dict[int, Any] = {0: "w", 1: "r", 2: "r"}
    kfd = None
    if anonymous:
        args.append("--anonymous")
    else:
        from dsage_core.keyfd import key_pipe
        from dsage_core.setup import ensure_worker_key
        if key is None:
            ensure_worker_key(Path(home))
        path = Path(key) if key is not None else Path(home) / homes.WORKER_KEY
        kfd = key_pipe(path.read_text(), [str(path)] if key is not None else [])
        fds[3] = kfd
        args += ["--key-fd", "3"]
    proto = _worker_protocol()
    env = tuned_env(dict(os.environ))
    env[lifeline.ENV] = str(os.getpid())  # it ends with us, even if we are killed outright
    try:
        transport = reactor.spawnProcess(proto, sys.executable, args, env=env, childFDs=fds)
    finally:
        if kfd is not None:
            os.close(kfd)
    return LocalWorker(slots, proto, transport)


def _die_with_parent() -> None:  # runs in the child before exec
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass
    os.setpgrp()  # a Ctrl+C at the prompt should not hit the server


def _spawn(argv: list[str], log: Path, pass_fds: tuple[int, ...] = ()) -> subprocess.Popen[bytes]:
    out = os.fdopen(os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab")
    try:
        os.fchmod(out.fileno(), 0o600)   # a log from an older version may be open to others
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                preexec_fn=_die_with_parent, close_fds=True, pass_fds=pass_fds,
                                env=tuned_env(dict(os.environ)))
    finally:
        out.close()
