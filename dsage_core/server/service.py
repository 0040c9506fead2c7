"""The server as a service that starts on any running reactor (its own, or the desktop app's).

It holds no Foolscap: the Tub is a :class:`dsage_core.protocol.tubs.ServerTub`, the remote objects
and pushes live in :mod:`dsage_core.server.remote`."""
from __future__ import annotations

import getpass
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from twisted.application.service import MultiService
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from dsage_core import home as homes
from dsage_core import keys, local_results, server_lock
from dsage_core.limits import Limits
from dsage_core.ports import pick_port
from dsage_core.protocol import envelope, hints, localwire, tubs
from dsage_core.scheduler import Scheduler
from dsage_core.server.auth import Authenticator
from dsage_core.server.core import JobServer
from dsage_core.server.remote import Login, RunSender
from dsage_core.store import SqliteStore, ThreadRunner, pg_schema
from dsage_core.store.postgres import PgStore

log = Logger(namespace="dsage.server")


@dataclass
class ServerConfig:
    """Everything ``dsage server`` can be told."""

    home: Path
    port: int = 0                      #: 0: reuse the last port of this home, else pick a free one
    listen: str = "127.0.0.1"          #: interface to listen on ("0.0.0.0" for other hosts)
    location: str | None = None        #: host names other machines use to reach this one (comma-separated)
    allow_anonymous: bool = False
    anonymous_packages: bool = False   #: jobs with packages= may run on anonymous workers
    lease_timeout: float = 15.0
    max_failures: int = 3
    stats_interval: float = 1.0
    local_socket: bool = True          #: peers sharing this home connect over a UNIX socket
    limits: Limits = field(default_factory=Limits)
    #: copies of each job that may run on anonymous workers (not trusted_only) and does not set
    #: its own ``replicas`` (dsage_core.model.replicas)
    anonymous_replicas: int = 1
    #: None: SQLite in the home; a ``postgresql://`` URL: that database, shared with standbys
    store: str | None = None


class ServerService(MultiService):
    """Tub + store + scheduler + timers. ``start()`` returns a Deferred that fires with the furl."""

    def __init__(self, config: ServerConfig, reactor: Any) -> None:
        super().__init__()
        self.config = config
        self.reactor = reactor
        self.home = config.home
        self.furl: str | None = None
        self.hosts: list[str] = []    #: what the furl advertises, best first
        self.port = 0
        self.core: JobServer | None = None
        self._loops: list[LoopingCall] = []
        self._last_workers_key = ""
        self._local: Any = None
        self.holder: Any = None      #: the serving lock of a PostgreSQL store (store/pg_holder.py)
        #: a PostgreSQL standby waits: called with who holds the database
        self.on_standby: Any = lambda holder: log.info("dsage.server.standby", holder=holder)
        #: the server stopped serving by itself (it lost its database lock): called with why
        self.on_fatal: Any = lambda reason: None

    @inlineCallbacks
    def start(self) -> Any:
        cfg = self.config
        fixed = homes.secure_home(self.home)
        if fixed:
            log.warn("dsage.server.home_was_open", fixed=fixed)
        pg = pg_schema.is_url(cfg.store)
        if not pg:
            _private_file(self.home / homes.DATABASE)   # SQLite gives -wal and -shm the same mode
        local = cfg.local_socket and server_lock.socket_path(self.home) is not None
        # a standby announces no socket: peers of this home use the serving server meanwhile
        self._lock = _take_lock(self.home, local and not pg)
        server_lock.mark_group(self.home, pg)
        port = self.port = pick_port(self.home, cfg.port)
        self.hosts = hints.advertised_hosts(cfg.listen, cfg.location)
        if pg:
            yield self._share_identity(cfg.store, port)
        tub = tubs.ServerTub(self.home / homes.SERVER_CERT)
        self.tub = tub
        server_id = tub.server_id
        if pg:
            yield self._wait_to_serve(server_id)
            if local:
                server_lock.rewrite(self._lock, True)
            store: Any = PgStore(cfg.store, ThreadRunner(self.reactor))
            self.holder.on_lost_now = store.fence   # on the holder's thread: no write after the loss
        else:
            store = SqliteStore(self.home / homes.DATABASE, ThreadRunner(self.reactor))
        scheduler = Scheduler(max_failures=cfg.max_failures, lease_timeout=cfg.lease_timeout)
        core = JobServer(store, self.reactor, limits=cfg.limits, scheduler=scheduler,
                         server_id=server_id,
                         make_dispatcher=lambda w: RunSender(w, clock=self.reactor))
        self.core = core
        core.anonymous_replicas = cfg.anonymous_replicas
        core.home = self.home
        core.anonymous_packages = cfg.anonymous_packages
        core.file_reader = ThreadRunner(self.reactor, name="dsage-files")  # result files, off the reactor
        core.file_reader.start()
        # results through files in the home only where no other host may serve them next
        core.local_token = None if pg else local_results.write_token(self.home)
        yield core.restore()
        swept = yield store.sweep_result_files()   # before any worker can write a new one
        if swept:
            log.info("dsage.server.orphan_results_removed", count=swept)
        yield ensure_owner(store, self.home)
        core.owner_user = yield owner_name(store, self.home)
        yield ensure_local_worker(store, self.home)
        self.auth = Authenticator(store, self.reactor, server_id, allow_anonymous=cfg.allow_anonymous)
        core.listen = cfg.listen
        login = Login(core, self.auth)
        self.furl = tub.publish(self, hints.listen_endpoint(cfg.listen, port),
                                hints.location(self.hosts, port), login, "login")
        if pg:
            self.furl = core.furl = self._group_furl()
        if local:
            try:
                self._local = localwire.listen(self.reactor, self.home, login)
            except Exception as e:  # e.g. a file system without sockets: peers use Foolscap
                log.warn("dsage.server.no_local_socket", error=str(e))
                server_lock.rewrite(self._lock, False)
        else:
            localwire.remove_stale(self.home)   # a crashed server's socket must not lure peers
        self._write_furl(self.furl)
        self._every(1.0, core.tick)
        self._every(cfg.stats_interval, self._push_stats)
        if not self.running:
            self.startService()
        log.info("dsage.server.listening", furl=self.furl)
        return self.furl

    def _write_furl(self, furl: str) -> None:
        furl_file = self.home / homes.SERVER_FURL
        tmp = furl_file.with_suffix(".tmp")
        tmp.write_text(furl + "\n")
        tmp.replace(furl_file)

    # ------------------------------------------------------------------ PostgreSQL: one of a group
    @inlineCallbacks
    def _share_identity(self, url: str, port: int) -> Any:
        """Take the database's server certificate (or give it ours): every server of the database
        has one Tub id, so one furl reaches whichever serves."""
        from dsage_core.store.pg_holder import Holder
        cert_file = self.home / homes.SERVER_CERT
        try:
            mine = cert_file.read_bytes()
        except FileNotFoundError:
            mine = tubs.new_cert_data()
        self.holder = Holder(url, self.reactor, hints.location(self.hosts, port))
        cert, self.members = yield self.holder.prepare(mine)
        if cert != mine:
            from dsage_core.fileio import write_private
            write_private(cert_file, cert)
            log.info("dsage.server.identity_from_database", cert=str(cert_file))

    @inlineCallbacks
    def _wait_to_serve(self, server_id: str) -> Any:
        """Write the group's furl, then wait (a standby) until this server holds the database."""
        self.server_id = server_id
        self.furl = self._group_furl()
        self._write_furl(self.furl)
        self.holder.on_waiting = self.on_standby
        self.holder.on_members = self._members_changed
        self.holder.on_lost = self._lost_database
        yield self.holder.acquired

    def _group_furl(self) -> str:
        """One furl with every server's hints, this one's first (Foolscap tries them all)."""
        members = self.holder.members if self.holder is not None else []
        seen: list[str] = []
        for m in members:
            for h in m.split(","):
                if h and h not in seen:
                    seen.append(h)
        return f"pb://{self.server_id}@{','.join(seen)}/login"

    def _members_changed(self, members: list[str]) -> None:
        if self.core is None or self.core.closing:
            return
        self.furl = self.core.furl = self._group_furl()
        self._write_furl(self.furl)
        log.info("dsage.server.group_changed", furl=self.furl)

    def _lost_database(self, reason: str) -> None:
        """Stop serving at once: a standby may be serving from the same database now."""
        log.error("dsage.server.lost_database", reason=reason)
        self.stop().addBoth(lambda _: self.on_fatal(reason))

    def _every(self, interval: float, fn: Any) -> None:
        lc = LoopingCall(fn)
        lc.clock = self.reactor
        lc.start(interval, now=False).addErrback(lambda f: log.failure("dsage.server.timer_failed", f))
        self._loops.append(lc)

    def _push_stats(self) -> None:
        core = self.core
        assert core is not None
        if not core.clients:
            core.take_workers_dirty()
            return
        stats = envelope.pack(core.stats())
        # the worker list goes out when it changed (busy slots and jobs done included), at most
        # once per tick: its cost depends on the number of workers, never on the number of jobs
        desc = core.describe_workers()
        key = repr([(w["id"], w["busy"], w["slots"], w["paused"], w["jobs_done"]) for w in desc])
        dirty = core.take_workers_dirty() or key != self._last_workers_key
        self._last_workers_key = key
        workers = envelope.pack(desc) if dirty else None
        for c in list(core.clients):
            c.push_counters(stats, workers)

    @inlineCallbacks
    def stop(self) -> Any:
        """Stop timers, close connections, finish pending store writes, close the store."""
        if self.core is not None:
            self.core.closing = True
        for lc in self._loops:
            if lc.running:
                lc.stop()
        self._loops = []
        if self._local is not None:
            port, factory = self._local
            self._local = None
            yield port.stopListening()
            factory.abort_all()
        if self.running:
            yield self.stopService()
        if self.core is not None:
            yield self.core.pending_writes()
            yield self.core.store.close()
            if self.core.file_reader is not None:
                self.core.file_reader.stop()
        if self.holder is not None:
            self.holder.stop()   # after the last write: a standby takes over from here
            self.holder = None
        lock = getattr(self, "_lock", None)
        if lock is not None:
            server_lock.release(lock)
            self._lock = None


def _take_lock(home: Path, local_socket: bool) -> Any:
    from dsage_core.protocol.errors import ServerUnavailable
    f = server_lock.take(home, local_socket)
    if f is None:
        raise ServerUnavailable(f"another dsage server is already running on {home}")
    return f


@inlineCallbacks
def ensure_owner(store: Any, home: Path) -> Any:
    """The server owner's key (``dsage_key.pub`` in its home) is the first admin."""
    n = yield store.user_count()
    if n:
        return
    pub_path = home / homes.PUBKEY_FILE
    if not pub_path.exists():
        keys.ensure_keypair(home)
    pub = keys.load_public_key(str(pub_path))
    name = _owner_name()
    yield store.add_user(name, pub, "admin")
    yield store.audit("user_add", name, "local", "server owner, first admin")


@inlineCallbacks
def owner_name(store: Any, home: Path) -> Any:
    """The user name of the server owner's key (``dsage_key.pub``), or None."""
    try:
        row = yield store.user_by_pubkey(keys.load_public_key(str(home / homes.PUBKEY_FILE)))
    except Exception:  # noqa: BLE001 - no owner key: no worker counts as the owner's
        return None
    return row["name"] if row else None


@inlineCallbacks
def ensure_local_worker(store: Any, home: Path) -> Any:
    """The local worker's key (``worker_key.pub``, see ``setup.ensure_worker_key``) is registered
    with the worker role, so the local worker of start_all and the desktop app never needs the
    owner's admin key."""
    pub_path = home / homes.WORKER_PUBKEY
    if not pub_path.exists():
        return
    pub = keys.load_public_key(pub_path.read_text().strip())
    known = yield store.user_by_pubkey(pub)
    if known is not None:
        return
    name = "local-worker"
    if (yield store.user_by_name(name)) is not None:
        name = f"local-worker-{keys.fingerprint(pub)[-8:]}"
    yield store.add_user(name, pub, "worker")
    yield store.audit("user_add", name, "local", "the local worker's own key")


def _private_file(path: Path) -> None:
    """Create *path* 0600 if missing, else take away others' access to it."""
    import os
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o600))
        if path.stat().st_mode & 0o077:
            path.chmod(0o600)
    except OSError:
        pass


def _owner_name() -> str:
    try:
        name = getpass.getuser()
    except Exception:
        name = "owner"
    return "".join(c for c in name if c.isalnum() or c in "-_.") or "owner"


def create_server(config: ServerConfig, reactor: Any) -> ServerService:
    """Build (not start) a server service; call ``start()`` on a running reactor."""
    return ServerService(config, reactor)
