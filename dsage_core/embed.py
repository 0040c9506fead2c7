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
    from dsage_core.memory import tuned_env
    from dsage_core.worker import lifeline
    from dsage_core.worker.reaping import ensure_reaper
    ensure_reaper(reactor)
    args = [sys.executable, "-m", "dsage_core", "worker", "--home", str(home), "--server", furl,
            "--workers", str(slots), "--quiet"]
    if anonymous:
        args.append("--anonymous")
    elif key is not None:
        args += ["--key", str(key)]
    proto = _WorkerProcess()
    env = tuned_env(dict(os.environ))
    env[lifeline.ENV] = str(os.getpid())  # it ends with us, even if we are killed outright
    transport = reactor.spawnProcess(proto, sys.executable, args, env=env)
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
