"""An in-process cluster for end-to-end tests: a real server and a real worker (real Foolscap over
loopback, real SQLite, real child processes) on the client's background reactor thread, started by
:class:`dsage_core.cluster.LocalCluster` like the desktop app's."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dsage_core.client import reactor_thread as rt
from dsage_core.cluster import LocalCluster


@dataclass
class Cluster:
    """The tests' view of a :class:`LocalCluster`: in-process workers and a blocking client."""

    home: Path
    local: LocalCluster
    client: Any

    @property
    def server(self) -> Any:
        return self.local.server

    @server.setter
    def server(self, svc: Any) -> None:
        """A test that restarted the server hands its new one over (stop() stops that one)."""
        self.local.server = svc

    @property
    def workers(self) -> list[Any]:
        return self.local.workers

    @property
    def furl(self) -> str:
        return self.local.furl

    def add_worker(self, slots: int = 2, **kw: Any) -> Any:
        """An in-process worker (the owner's key unless *anonymous* or *key_path*), once connected."""
        key = None if kw.get("anonymous") else kw.pop("key_path", self.home / "dsage_key")
        return rt.blocking(self.local.run_worker, slots, key_path=key, timeout=30, **kw)

    def stop_worker(self, w: Any) -> None:
        rt.blocking(w.stop, timeout=30)
        self.workers.remove(w)

    def connect(self, key: Path | None = None) -> Any:
        from dsage_core.client.api import connect
        return connect(self.furl, key=key, home=self.home, timeout=10)

    def stop(self) -> None:
        try:
            if self.client is not None:
                self.client.shutdown()
        finally:
            rt.blocking(self.local.stop, timeout=30)


def start_cluster(home: Path, slots: int = 2, workers: int = 1, **server_kw: Any) -> Cluster:
    """Server options *server_kw*, *workers* in-process workers of *slots* slots, and a client."""
    from dsage_core.client.api import connect
    from dsage_core.cli import _init_db
    from dsage_core.setup import ensure_setup
    from dsage_core.worker.reaping import ensure_reaper
    ensure_setup(home)
    _init_db(home)
    reactor = rt.ensure_running()
    ensure_reaper(reactor)  # from the main thread: installs the SIGCHLD handler
    local = rt.blocking(LocalCluster.embed, home, reactor, 0, connect=False, umask=None, timeout=30,
                        **server_kw)
    c = Cluster(local.home, local, None)
    try:
        for _ in range(workers):
            c.add_worker(slots)
        c.client = connect(c.furl, home=c.home, timeout=10)
    except BaseException:
        c.stop()
        raise
    return c
