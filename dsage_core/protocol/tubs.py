"""Tub creation with the options every dsage Tub needs, and persistent certificates.

Generating a TLS certificate costs ~140 ms; servers keep theirs (a stable furl), and clients and
workers take a cached one from ``DSAGE_HOME/certs`` guarded by an exclusive lock, so two processes
never share a Tub id (Foolscap would treat the second connection as a duplicate of the first).
"""
from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO

from typing import Any

from foolscap.api import Tub
from foolscap.broker import Broker

_held_locks: list[IO[bytes]] = []  # keep lock files open for the life of the process


def _configure(tub: Tub, keepalive: float | None) -> Tub:
    tub.setOption("expose-remote-exception-types", False)
    tub.setOption("accept-gifts", False)
    tub.setOption("logLocalFailures", False)
    if keepalive:
        tub.setOption("keepaliveTimeout", max(1, int(keepalive)))
    return tub


class ServerBroker(Broker):
    """A server connection: an object registered under a name that has ``for_connection(address,
    abort)`` (the Login object) is replaced, for each connection, by the view that method makes, so
    login state (challenges, failures) and the peer's address belong to that connection alone. The
    view's ``connection_lost()`` runs when the connection ends."""

    def remote_getReferenceByName(self, name: Any) -> Any:
        ref = super().remote_getReferenceByName(name)
        make = getattr(ref, "for_connection", None)
        if make is None:
            return ref
        views = self.__dict__.setdefault("_dsage_views", {})
        view = views.get(id(ref))
        if view is None:
            view = views[id(ref)] = make(peer_address(self), self._abort)
            self.notifyOnDisconnect(view.connection_lost)
        return view

    def _abort(self) -> None:
        if self.transport is not None:
            self.transport.abortConnection()


def peer_address(broker: Any) -> str:
    """``host:port`` of the other end of a Foolscap connection ("" if unknown)."""
    try:
        p = broker.transport.getPeer()
        return f"{p.host}:{p.port}"
    except Exception:
        return ""


def server_tub(cert_file: Path, keepalive: float | None = 5.0) -> Tub:
    """A Tub with a persistent certificate: the same Tub id (and furl) across restarts. Its
    failures reach callers without a server traceback, and each connection gets its own login
    view (:class:`ServerBroker`)."""
    tub = _configure(Tub(certFile=str(cert_file)), keepalive)
    tub.unsafeTracebacks = False
    tub.brokerClass = ServerBroker
    return tub


def peer_tub(home: Path, keepalive: float | None = 5.0) -> Tub:
    """A Tub for a client or worker, with a cached certificate no other live process uses."""
    cert_dir = home / "certs"
    cert_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    for i in range(64):
        path = cert_dir / f"peer-{i}.pem"
        lock = open(cert_dir / f"peer-{i}.lock", "ab")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock.close()
            continue
        _held_locks.append(lock)
        if path.exists():
            return _configure(Tub(certData=path.read_bytes()), keepalive)
        tub = Tub()
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(tub.getCertData())
        os.chmod(tmp, 0o600)
        tmp.replace(path)
        return _configure(tub, keepalive)
    return _configure(Tub(), keepalive)  # 64 live processes on one home: just make a fresh one


def started_peer_tub(home: Path) -> Tub:
    """:func:`peer_tub`, started: what a client or worker connection makes on first need."""
    tub = peer_tub(home)
    tub.startService()
    return tub


def new_cert_data() -> bytes:
    """A new Tub certificate (PEM, with its key): a server identity not used yet."""
    return Tub().getCertData()


def tub_id_of_cert(cert: bytes) -> str:
    """The Tub id a certificate gives (what a furl of its server pins)."""
    return Tub(certData=cert).getTubID()


class ServerTub:
    """The server's Tub: a persistent identity, one listening port and one published root object.

    The server service holds this, not a Tub: it never calls Foolscap itself."""

    def __init__(self, cert_file: Path, keepalive: float | None = 5.0) -> None:
        self.tub = server_tub(cert_file, keepalive)
        self.server_id: str = self.tub.getTubID()

    def publish(self, parent: Any, endpoint: str, location: str, root: Any, name: str = "login") -> str:
        """Listen on *endpoint*, advertise *location*, run under the service *parent*, and register
        *root* under *name*; returns its furl."""
        self.tub.listenOn(endpoint)
        self.tub.setLocation(location)
        self.tub.setServiceParent(parent)
        return self.tub.registerReference(root, name)


def tub_id_of(furl: str) -> str:
    """The Tub id (server identity) a furl pins."""
    if not furl.startswith("pb://") or "@" not in furl:
        raise ValueError(f"not a Foolscap furl: {furl!r}")
    return furl[len("pb://"):].split("@", 1)[0]
