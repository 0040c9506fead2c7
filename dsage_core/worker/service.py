"""The worker monitor as a service: connect and log in, register slots, run what the server pushes.

Runs on any running reactor (``dsage worker`` owns one; the tray embeds one). Reports to the server
go through one eager :class:`Batcher`; while disconnected they wait and are sent after the next
login (the server discards what it no longer expects, so nothing is counted twice).

No Foolscap here: the server's calls arrive through :class:`dsage_core.worker.remote.Runner`, and
this service calls the server through a :class:`dsage_core.worker.remote.ServerLink`.
"""
from __future__ import annotations

import os
import platform
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from dsage_core import __version__, local_results, server_lock
from dsage_core.model.records import DONE, OUT, DoneEvent, OutEvent, WorkerInfo
from dsage_core.protocol import tubs
from dsage_core.protocol.batcher import Batcher
from dsage_core.protocol.connect import ServerConnection
from dsage_core.worker import contain
from dsage_core.worker.pool import ChildPool
from dsage_core.worker.remote import Runner, ServerLink

log = Logger(namespace="dsage.worker")


@dataclass
class WorkerConfig:
    """Everything ``dsage worker`` can be told."""

    home: Path
    furl: str
    slots: int = 2
    key_path: Path | None = None
    anonymous: bool = False
    mem_limit: int | None = None     #: bytes per job (RLIMIT_AS), None: no limit
    cpu_limit: float | None = None   #: CPU seconds per job
    nice: int = 10
    max_delay: float = 5.0           #: reconnect backoff cap
    key: Any = None                  #: the private key itself, when it came on a pipe (--key-fd)
    hide: list[Path] = field(default_factory=list)   #: more paths jobs must not reach (key files)
    max_procs: int | None = None     #: processes + threads per job; None: the default, 0: no limit
    contain: bool = True             #: contain children (worker/contain.py); off only for tests
    env_cache: Path | None = None    #: where packages= sets are installed (worker/envs.py default)
    memory: int | None = None        #: bytes offered to jobs that ask for memory; None: the machine's
    gpus: int | None = None          #: gpus offered; None: the machine's NVIDIA devices


def containment_policy(config: WorkerConfig) -> dict[str, Any]:
    """What every child of this worker is contained in (see worker/contain.py): the home and the
    key files hidden, the per-job process limit."""
    keys_ = [p for p in [config.key_path, *config.hide] if p is not None]
    hide, skipped = contain.hidden_paths(config.home, keys_)
    if skipped:
        log.warn("dsage.worker.cannot_hide", paths=skipped,
                 why="they hold this Python or dsage itself, which jobs need")
    max_procs = contain.default_max_procs() if config.max_procs is None else config.max_procs
    if os.getuid() == 0:
        log.warn("dsage.worker.root", why="jobs run as root: the kernel applies no process limit "
                 "to root; run workers as an ordinary user")
    return {"hide": hide, "max_procs": max_procs}


def host_inventory(slots: int, memory: int | None = None, gpus: int | None = None) -> WorkerInfo:
    """What the server shows about this machine, and the resources it offers: *slots* cpus (one
    job process each), *memory* bytes and *gpus* (None: what the machine has)."""
    from dsage_core.client.sage_check import sage_available
    return WorkerInfo(host=socket.gethostname(), pid=os.getpid(), slots=slots,
                      capabilities=["sage"] if sage_available() else [],
                      gpus=machine_gpus() if gpus is None else gpus,
                      cpus=os.cpu_count() or 1, memory=memory or psutil.virtual_memory().total,
                      os=f"{platform.system()} {platform.release()}", python=platform.python_version(),
                      version=__version__)


def machine_gpus() -> int:
    """NVIDIA devices this machine has (``/dev/nvidia0``, ``/dev/nvidia1``...)."""
    try:
        return sum(1 for n in os.listdir("/dev") if n.startswith("nvidia") and n[6:].isdigit())
    except OSError:
        return 0


class WorkerService:
    """A monitor with N children connected to one server.

    Events (``state`` attribute, see ``on_state``): "connecting", "connected", "disconnected",
    "error"; the tray shows them.

    *pool*: the children (a :class:`ChildPool` by default); *dial*: reach the server through this
    function instead of the furl (an in-process transport, see ``ServerConnection``).
    """

    def __init__(self, config: WorkerConfig, reactor: Any, pool: Any = None,
                 dial: Any = None) -> None:
        self.config = config
        self.reactor = reactor
        self.dial = dial
        self.state = "connecting"
        self.error: str | None = None
        self.worker_id: str | None = None
        self.session: ServerLink | None = None
        self.listeners: list[Any] = []
        self.reports = Batcher(None, max_items=5000, max_in_flight=1, on_failure=self._report_failed,
                               size_of=_event_size, max_bytes=1024 * 1024, clock=reactor,
                               send_only=self._send_reports_only)
        self.pool = pool if pool is not None else self._make_pool()
        self.runner = Runner(self.pool)
        self._heartbeat: LoopingCall | None = None
        self.conn: ServerConnection | None = None
        self._stopping: Deferred | None = None

    def _make_pool(self) -> ChildPool:
        config = self.config
        limits: dict[str, Any] = {}
        if config.mem_limit:
            limits["mem"] = int(config.mem_limit)
        if config.cpu_limit:
            limits["cpu"] = float(config.cpu_limit)
        return ChildPool(self.reactor, config.slots, self.reports.add_many, scratch=config.home / "scratch",
                         default_limits=limits, nice=config.nice,
                         contain=containment_policy(config) if config.contain else None,
                         env_cache=config.env_cache)

    @property
    def tub(self) -> Any:
        """The Tub this worker's connection made (None on the local socket: no certificate)."""
        return self.conn.made_tub if self.conn is not None else None

    def on_state(self, fn: Any) -> None:
        self.listeners.append(fn)

    def _set_state(self, state: str) -> None:
        self.state = state
        for fn in self.listeners:
            try:
                fn(state)
            except Exception:
                log.failure("dsage.worker.listener_failed")

    def start(self) -> None:
        home = self.config.home
        # a Tub only when Foolscap is needed (not on the server's local socket)
        self.conn = ServerConnection(lambda: tubs.started_peer_tub(home), self.config.furl, "worker",
                                     reactor=self.reactor, key_path=self.config.key_path,
                                     key=self.config.key,
                                     anonymous=self.config.anonymous, on_session=self._got_session,
                                     on_lost=self._lost, on_error=self._failed,
                                     max_delay=self.config.max_delay,
                                     local_socket=server_lock.socket_path(home), dial=self.dial)
        self.conn.start()

    @inlineCallbacks
    def _got_session(self, session: Any) -> Any:
        link = ServerLink(session)
        info = host_inventory(self.pool.slots, self.config.memory, self.config.gpus)
        token = local_results.read_token(self.config.home)
        if token and not self.config.anonymous:
            proof = local_results.proof(token, local_results.server_id_of(self.config.furl))
            info = info._replace(local_token=proof)
        settings = yield link.register(self.runner, info)
        self.pool.local_home = self.config.home if settings.get("local_results") else None
        if isinstance(settings.get("max_result"), int):
            self.pool.max_result = settings["max_result"]
        self.session = link
        self.worker_id = settings["worker_id"]
        self.reports.attach(self._send_reports)
        self._start_heartbeat(float(settings.get("heartbeat", 3.0)))
        self._set_state("connected")
        log.info("dsage.worker.registered", worker=self.worker_id)

    def _send_reports(self, events: list[Any]) -> Deferred:
        assert self.session is not None
        return self.session.report(events)

    def _send_reports_only(self, events: list[Any]) -> None:
        assert self.session is not None
        self.session.report_only(events)

    def _report_failed(self, events: list[Any], f: Any) -> None:
        # connection gone: keep the events for the next session (the server drops stale ones)
        self.reports.requeue_front(events)
        self.reports.attach(None)

    def _start_heartbeat(self, interval: float) -> None:
        if self._heartbeat is not None and self._heartbeat.running:
            self._heartbeat.stop()
        self._heartbeat = LoopingCall(self.send_heartbeat)
        self._heartbeat.clock = self.reactor
        self._heartbeat.start(interval, now=False).addErrback(lambda f: None)

    def send_heartbeat(self) -> None:
        if self.session is None:
            return
        self.session.heartbeat(self._load()).addErrback(lambda f: None)

    def _load(self) -> dict[str, Any]:
        return {"slots": self.pool.slots, "busy": self.pool.busy, "paused": self.pool.paused}

    def _lost(self) -> None:
        self.session = None
        self.reports.attach(None)
        if self._heartbeat is not None and self._heartbeat.running:
            self._heartbeat.stop()
        # the server requeued what we held; drop jobs we have not started yet
        self.pool.queue.clear()
        self._set_state("disconnected")
        log.warn("dsage.worker.disconnected")

    def _failed(self, e: Exception) -> None:
        self.error = str(e)
        self._set_state("error")

    # ---------------------------------------------------------------- controls (tray, tests)
    def set_slots(self, n: int) -> None:
        self.pool.set_slots(n)
        self.send_heartbeat()

    def pause(self, paused: bool) -> None:
        self.pool.pause(paused)
        self.send_heartbeat()

    def stop(self, drain: bool = False) -> Deferred:
        """Stop; with *drain*, first let running jobs finish (queued ones go back to the server).

        A second call (the tray's Quit, then the loop's shutdown) waits for the first one."""
        if self._stopping is None:
            self._stopping = self._stop(drain)
            self._stopping.addErrback(lambda f: log.failure("dsage.worker.stop_failed", f))
        d: Deferred = Deferred()
        self._stopping.addBoth(lambda r: (d.callback(None), r)[1])
        return d

    @inlineCallbacks
    def _stop(self, drain: bool) -> Any:
        if drain:
            self.pool.hand_back_queued("worker finishing")
            self.pause(False)
            self.pool.set_slots(self.pool.slots)  # keep children; just wait
            yield self.pool.when_idle()
            yield self.reports.when_idle()
            yield self._delivered()
        if self._heartbeat is not None and self._heartbeat.running:
            self._heartbeat.stop()
        if self.conn is not None:
            self.conn.stop()
        yield self.pool.close()
        if self.session is not None:
            try:
                yield _with_timeout(self.reactor, self.reports.when_idle(), 2.0)
                yield self._delivered()
            except Exception:
                pass
        if self.conn is not None:
            yield self.conn.close()   # stops the Tub it made

    @inlineCallbacks
    def _delivered(self) -> Any:
        """Wait until the server has processed every report sent so far: reports may go without an
        answer, and calls on one connection are processed in order, so one answered call is a barrier."""
        if self.session is None:
            return
        try:
            yield _with_timeout(self.reactor, self.session.heartbeat(self._load()), 5.0)
        except Exception:
            pass  # gone: the server requeues what it did not hear about


#: where a report event's fields sit in its wire form (model/records.py; every event starts with
#: its kind): the batcher sizes each event, so it reads them without building the record
_RESULT, _PREVIEW, _ERROR, _EXTRA = (DoneEvent._fields.index(f) for f in ("result", "preview", "error", "extra"))
_TEXT = OutEvent._fields.index("text")


def _event_size(e: Any) -> int:
    """About how many bytes report event *e* (a wire tuple of a records.py event) takes: a done
    counts its result, preview and traceback text, and a failure's exception pickle."""
    kind = e[0] if e else None
    if kind == DONE:
        n = 100
        v = e[_RESULT]
        if isinstance(v, bytes):
            n += len(v)
        v = e[_PREVIEW]
        if isinstance(v, str):
            n += len(v)
        v = e[_ERROR]
        if isinstance(v, str):
            n += len(v)
        x = e[_EXTRA] if len(e) > _EXTRA else None
        if x is not None and isinstance(x, dict):
            n += 200
            extra = x.get("exc")
            if isinstance(extra, dict):
                n += sum(len(v) for v in (extra.get("pickle"), extra.get("args")) if isinstance(v, bytes))
        return n
    if kind == OUT:
        return len(e[_TEXT]) + 50
    return 60


def _with_timeout(reactor: Any, d: Deferred, seconds: float) -> Deferred:
    return d.addTimeout(seconds, reactor)
