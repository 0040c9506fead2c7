"""One serving server at a time on a PostgreSQL store, and standbys that take over.

Every ``dsage server --store postgresql://...`` on the same database first shares the database's
server certificate (so all of them have one Tub id, and one furl whose location hints name every
server: peers follow a takeover by themselves), registers its own hints in ``dsage_servers``, then
waits for a session advisory lock (``pg_try_advisory_lock``, polled) on a dedicated connection.
The server holding it serves; the others wait as standbys. The lock lives as long as that
connection: a holder that dies (kill -9, lost host) loses it when PostgreSQL drops its session
(at once for a closed socket, within ~25 s for a silent host thanks to the keepalives
:func:`pg_schema.conninfo` sets), and the first standby to poll takes over. A holder that loses its
lock connection must stop serving at once: the watcher thread fences the store itself (no write
after that moment) before telling the reactor.

All of it runs on one daemon thread with its own connection, never on the store's thread: the
job path pays nothing for it.
"""
from __future__ import annotations

import os
import select
import socket
import threading
import time
from typing import Any, Callable

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from dsage_core.store import pg_schema
from dsage_core.store.errors import StoreError

log = Logger(namespace="dsage.store.holder")

CERT_KEY = "server_cert"
MEMBER_TTL = 7 * 86400.0   #: servers not seen for this long leave the furl


class Holder:
    """The serving lock of one server process (see the module doc).

    ``prepare(cert)`` fires with ``(database_cert, member_hints)``; ``acquired`` fires once this
    server holds the lock; ``on_lost(reason)`` runs on the reactor if it loses it later (after
    ``on_lost_now(reason)`` ran on the watcher thread); ``on_members(hints)`` when the list of
    servers changed. ``stop()`` releases the lock (closes its connection).
    """

    def __init__(self, url: str, reactor: Any, hints: str, *, poll: float = 0.5, check: float = 1.0,
                 refresh: float = 2.0) -> None:
        self.url = url
        self.reactor = reactor
        self.hints = hints
        self.poll = poll
        self.check = check
        self.refresh = refresh
        self.acquired: Deferred = Deferred()
        self.on_lost: Callable[[str], Any] = lambda reason: None
        self.on_lost_now: Callable[[str], Any] = lambda reason: None
        self.on_members: Callable[[list[str]], Any] = lambda hints: None
        self.on_waiting: Callable[[str], Any] = lambda holder: None
        self.members: list[str] = [hints]
        self.held = False
        self._stopping = False
        self._wake_r, self._wake_w = socket.socketpair()
        self._thread: threading.Thread | None = None
        self._prepared: Deferred | None = None
        self._cert = b""

    # ------------------------------------------------------------------ reactor side
    def prepare(self, cert: bytes) -> Deferred:
        """Connect, share the certificate, register; fires with ``(cert, hints)``."""
        self._cert = cert
        self._prepared = Deferred()
        self._thread = threading.Thread(target=self._run, name="dsage-db-holder", daemon=True)
        self._thread.start()
        return self._prepared

    def stop(self) -> None:
        """Leave: a held lock is released when the thread closes its connection."""
        self._stopping = True
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass
        t = self._thread
        if t is not None and t is not threading.current_thread():
            t.join(5)
        self._thread = None

    def _call(self, fn: Any, *args: Any) -> None:
        """Run on the reactor: *fn*, or the callback attribute of that name as it is by then (the
        reactor sets them after ``prepare`` fired, and this thread runs ahead)."""
        if isinstance(fn, str):
            self.reactor.callFromThread(lambda: getattr(self, fn)(*args))
        else:
            self.reactor.callFromThread(fn, *args)

    # ------------------------------------------------------------------ the thread
    def _run(self) -> None:
        assert self._prepared is not None
        try:
            conn = pg_schema.connect(self.url, "dsage-holder")
            cert = self._share_cert(conn)
            self._register(conn, "standby")
            self.members = self._members(conn)
        except Exception as e:
            err = StoreError(f"cannot use the PostgreSQL store {pg_schema.redacted(self.url)}: "
                             f"{pg_schema.describe_error(e)}")
            self._call(self._prepared.errback, Failure(err))
            return
        self._call(self._prepared.callback, (cert, list(self.members)))
        conn = self._wait_for_lock(conn)
        if conn is None:
            return
        self.held = True
        self._call(self.acquired.callback, None)
        self._watch(conn)

    def _share_cert(self, conn: Any) -> bytes:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (pg_schema.MIGRATE_LOCK,))
            conn.execute(pg_schema.CLUSTER_TABLES)
            conn.execute("INSERT INTO dsage_meta (key, value) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                         (CERT_KEY, self._cert.decode("ascii")))
            row = conn.execute("SELECT value FROM dsage_meta WHERE key=%s", (CERT_KEY,)).fetchone()
        return str(row[0]).encode("ascii")

    def _register(self, conn: Any, state: str) -> None:
        conn.execute("INSERT INTO dsage_servers (hints, host, pid, state, seen) "
                     "VALUES (%s, %s, %s, %s, extract(epoch from now())) ON CONFLICT (hints) DO UPDATE "
                     "SET host=excluded.host, pid=excluded.pid, state=excluded.state, seen=excluded.seen",
                     (self.hints, socket.gethostname(), os.getpid(), state))

    def _members(self, conn: Any) -> list[str]:
        rows = conn.execute("SELECT hints FROM dsage_servers WHERE seen > extract(epoch from now()) - %s "
                            "ORDER BY seen DESC, hints", (MEMBER_TTL,)).fetchall()
        return [self.hints] + [r[0] for r in rows if r[0] != self.hints]

    def _holder_text(self, conn: Any) -> str:
        row = conn.execute("SELECT host, pid, hints FROM dsage_servers WHERE state='active' "
                           "AND hints <> %s ORDER BY seen DESC LIMIT 1", (self.hints,)).fetchone()
        return f"{row[0]} pid {row[1]} ({row[2]})" if row else "another server"

    def _sleep(self, seconds: float) -> bool:
        """Wait (woken by stop()); True if stopping."""
        select.select([self._wake_r], [], [], seconds)
        return self._stopping

    def _wait_for_lock(self, conn: Any) -> Any:
        told = False
        last_seen = time.monotonic()
        delay = self.poll
        while not self._stopping:
            try:
                if conn is None:
                    conn = pg_schema.connect(self.url, "dsage-holder")
                    self._register(conn, "standby")
                if conn.execute("SELECT pg_try_advisory_lock(%s)", (pg_schema.HOLDER_LOCK,)).fetchone()[0]:
                    conn.execute("UPDATE dsage_servers SET state='standby' WHERE state='active'")
                    self._register(conn, "active")
                    return conn
                if not told:
                    told = True
                    self._call("on_waiting", self._holder_text(conn))
                if time.monotonic() - last_seen > self.refresh:
                    last_seen = time.monotonic()
                    self._register(conn, "standby")
                delay = self.poll
            except Exception as e:   # the database went away: keep waiting for it
                log.warn("dsage.store.standby_reconnect", error=pg_schema.describe_error(e))
                _close(conn)
                conn = None
                delay = min(delay * 2, 5.0)
            if self._sleep(delay):
                break
        _close(conn)
        return None

    def _watch(self, conn: Any) -> None:
        fd = conn.fileno()
        last = time.monotonic()
        while True:
            readable, _, _ = select.select([fd, self._wake_r], [], [], self.check)
            if self._stopping:
                _close(conn)   # releases the lock
                return
            try:
                conn.execute("SELECT 1")   # also reads whatever made the socket readable
                if time.monotonic() - last > self.refresh:
                    last = time.monotonic()
                    self._register(conn, "active")
                    members = self._members(conn)
                    if members != self.members:
                        self.members = members
                        self._call("on_members", list(members))
            except Exception as e:
                if self._stopping:
                    return
                reason = f"the database lock connection was lost: {pg_schema.describe_error(e)}"
                self.held = False
                try:
                    self.on_lost_now(reason)   # fence the store before anything else can write
                finally:
                    self._call("on_lost", reason)
                _close(conn)
                return


def _close(conn: Any) -> None:
    if conn is not None:
        try:
            conn.close()
        except Exception:
            pass
