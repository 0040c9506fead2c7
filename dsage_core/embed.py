"""Embedding: a server on a reactor someone else runs (the desktop app's), local worker processes,
and a client for it — all without blocking that reactor."""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from twisted.internet import protocol
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.logger import Logger

log = Logger(namespace="dsage.embed")


class _WorkerProcess(protocol.ProcessProtocol):
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


@dataclass
class LocalWorker:
    """A ``dsage worker`` child process started from this process."""

    slots: int
    proto: _WorkerProcess
    transport: Any

    @property
    def pid(self) -> int:
        return self.transport.pid

    @property
    def running(self) -> bool:
        return not self.proto.ended.called

    def stop(self) -> Deferred:
        """SIGTERM (the worker hands its queued jobs back and exits); fires when it is gone."""
        if self.running:
            try:
                self.transport.signalProcess("TERM")
            except Exception:
                pass
        return self.proto.ended


def start_worker_process(reactor: Any, home: Path, furl: str, slots: int, *, anonymous: bool = False,
                         key: Path | None = None) -> LocalWorker:
    """A ``dsage worker`` process for *home*'s server. Without *key* it gets the home's own worker
    key (role worker, ``setup.ensure_worker_key``), never the owner's admin key; either key goes on
    a pipe, never as a path on its command line."""
    from dsage_core.memory import tuned_env
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
        from dsage_core.home import WORKER_KEY
        from dsage_core.keyfd import key_pipe
        from dsage_core.setup import ensure_worker_key
        if key is None:
            ensure_worker_key(Path(home))
        path = Path(key) if key is not None else Path(home) / WORKER_KEY
        kfd = key_pipe(path.read_text(), [str(path)] if key is not None else [])
        fds[3] = kfd
        args += ["--key-fd", "3"]
    proto = _WorkerProcess()
    env = tuned_env(dict(os.environ))
    env[lifeline.ENV] = str(os.getpid())  # it ends with us, even if we are killed outright
    try:
        transport = reactor.spawnProcess(proto, sys.executable, args, env=env, childFDs=fds)
    finally:
        if kfd is not None:
            os.close(kfd)
    return LocalWorker(slots, proto, transport)


@dataclass
class Embedded:
    """A server embedded on the caller's reactor, its local workers, and a client of it."""

    reactor: Any
    home: Path
    server: Any
    client: Any
    furl: str
    workers: list[LocalWorker] = field(default_factory=list)

    def start_worker(self, slots: int) -> LocalWorker:
        w = start_worker_process(self.reactor, self.home, self.furl, slots)
        self.workers.append(w)
        return w

    @inlineCallbacks
    def stop(self) -> Any:
        from twisted.internet.defer import DeferredList
        yield DeferredList([w.stop() for w in self.workers])
        try:
            yield self.client.close()
        finally:
            yield self.server.stop()


@inlineCallbacks
def start_embedded(home: str | Path | None, reactor: Any, workers: int | None = None,
                   allow_anonymous: bool = False, follow_all: bool = True) -> Any:
    """Start a server on *reactor*, a local worker with *workers* slots (default: cores - 1), and
    connect a client; fires with an :class:`Embedded`."""
    from dsage_core.client.core import connect_async
    from dsage_core.home import resolve_home
    from dsage_core.server.service import ServerConfig, create_server
    from dsage_core.setup import ensure_setup
    h = resolve_home(home)
    os.umask(0o077)   # this process now keeps dsage's files (database, logs): its user's alone
    ensure_setup(h)  # keys and certificate; the server registers the owner key on its DB thread
    server = create_server(ServerConfig(home=h, allow_anonymous=allow_anonymous), reactor)
    furl = yield server.start()
    try:
        client = yield connect_async(furl, None, str(h), reactor, follow_all=follow_all)
    except Exception:
        yield server.stop()
        raise
    emb = Embedded(reactor, h, server, client, furl)
    n = workers if workers is not None else max(1, (os.cpu_count() or 2) - 1)
    if n > 0:
        emb.start_worker(n)
    return emb
