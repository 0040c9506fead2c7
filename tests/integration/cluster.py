"""An in-process cluster for end-to-end tests: a real server and a real worker (real Foolscap over
loopback, real SQLite, real child processes) on the client's background reactor thread."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dsage_core.client import reactor_thread as rt


@dataclass
class Cluster:
    home: Path
    server: Any
    workers: list[Any]
    client: Any
    furl: str

    def add_worker(self, slots: int = 2, **kw: Any) -> Any:
        w = rt.blocking(_start_worker, self.home, self.furl, slots, kw, timeout=30)
        self.workers.append(w)
        return w

    def stop_worker(self, w: Any) -> None:
        rt.blocking(w.stop, timeout=30)
        self.workers.remove(w)

    def connect(self, key: Path | None = None) -> Any:
        from dsage_core.client.api import connect
        return connect(self.furl, key=key, home=self.home, timeout=10)

    def stop(self) -> None:
        try:
            self.client.shutdown()
        finally:
            for w in list(self.workers):
                rt.blocking(w.stop, timeout=30)
            rt.blocking(self.server.stop, timeout=30)


def _start_worker(home: Path, furl: str, slots: int, kw: dict[str, Any]) -> Any:
    from twisted.internet.defer import Deferred
    from dsage_core.worker.service import WorkerConfig, WorkerService
    reactor = rt.get_reactor()
    key = None if kw.get("anonymous") else kw.pop("key_path", home / "dsage_key")
    cfg = WorkerConfig(home=home, furl=furl, slots=slots, key_path=key, **kw)
    w = WorkerService(cfg, reactor)
    d: Deferred = Deferred()

    def state(s: str) -> None:
        if s == "connected" and not d.called:
            d.callback(w)
        elif s == "error" and not d.called:
            d.errback(RuntimeError(w.error))
    w.on_state(state)
    w.start()
    return d


def _start_server(home: Path, server_kw: dict[str, Any]) -> Any:
    from dsage_core.server.service import ServerConfig, create_server
    svc = create_server(ServerConfig(home=home, **server_kw), rt.get_reactor())
    return svc.start().addCallback(lambda furl: svc)


def start_cluster(home: Path, slots: int = 2, workers: int = 1, **server_kw: Any) -> Cluster:
    from dsage_core.client.api import connect
    from dsage_core.cli import _init_db
    from dsage_core.setup import ensure_setup
    from dsage_core.worker.reaping import ensure_reaper
    ensure_setup(home)
    _init_db(home)
    reactor = rt.ensure_running()
    ensure_reaper(reactor)  # from the main thread: installs the SIGCHLD handler
    server = rt.blocking(_start_server, home, server_kw, timeout=30)
    c = Cluster(home, server, [], None, server.furl)
    try:
        for _ in range(workers):
            c.add_worker(slots)
        c.client = connect(server.furl, home=home, timeout=10)
    except BaseException:
        c.client = c.client or _Null()
        c.stop()
        raise
    return c


class _Null:
    def shutdown(self) -> None:
        pass
