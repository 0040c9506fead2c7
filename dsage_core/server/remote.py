"""Foolscap adapters of the server: thin ``remote_*`` methods over :class:`JobServer` and
:class:`Authenticator`. Each unpacks and bounds its arguments, checks the caller's rights, calls
the core, and packs the answer. Nothing here decides anything about jobs.
"""
from __future__ import annotations

from typing import Any

from foolscap.api import Referenceable
from foolscap.tokens import Violation
from twisted.internet.defer import Deferred, gatherResults, maybeDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from dsage_core import __version__, latency
from dsage_core.model import exc_info
from dsage_core.model.job import TERMINAL
from dsage_core.model.status import JobStatus
from dsage_core.model.records import JobUpdate, RunEntry
from dsage_core.protocol import envelope
from dsage_core.protocol.batcher import PIGGYBACK, Batcher
from dsage_core.protocol.pacing import AnswerPacer, EarliestTimer
from dsage_core.protocol.errors import BadRequest, DsageError, LoginFailed, PermissionDenied
from dsage_core.protocol.interfaces import RIClientSession, RILogin, RIWorkerSession
from dsage_core.protocol.methods import remote_method
from dsage_core.server.auth import Authenticator, ConnectionGate, Identity
from dsage_core.server.core import JobServer, Worker

log = Logger(namespace="dsage.server.remote")

# fields of the wire records (model/records.py) read here: the lists are built once per job and
# read by these names, not rebuilt as records (that would cost more than the rest of a push)
_U_RESULT, _U_EXC = JobUpdate._fields.index("result"), JobUpdate._fields.index("exc")
_R_PAYLOAD, _R_BLOB, _R_EXT = (RunEntry._fields.index(f) for f in ("payload", "blob_id", "ext"))
ASSIGNED = JobStatus.ASSIGNED.value


def _peer(rref: Any) -> str:
    try:
        p = rref.getPeer()
        return f"{p.host}:{p.port}"
    except Exception:
        return ""


def _abort(rref: Any) -> None:
    try:
        rref.tracker.broker.transport.abortConnection()
    except Exception:
        pass


class KeyedPusher:
    """Coalescing push of job updates to one client: one call in flight, latest state wins.

    A job that finished goes out at once (it is on every wait's latency path), unless the server
    passes a *hold* (results of jobs that ran a while, in a batch still running: they wait up to
    the hold, which may be longer than ``lazy_delay``, so several share a call and the next
    batch's commit usually takes them along). Updates that only say "running" or carry progress
    wait up to ``lazy_delay``: a short job's running update is then replaced by its result, which
    halves the calls per job when jobs take milliseconds.

    An "assigned" update (a job just dispatched) waits its whole ``lazy_delay`` in :attr:`young`,
    even when another push goes sooner: a short job's result nearly always comes within that time
    and replaces it (the client sees the job go from queued to its end, as it would if the job
    had run at once), so the client decodes one update per job instead of two. An assigned
    update not replaced in time goes then, as before; any later update of the job replaces it.
    """

    def __init__(self, rref: Any, clock: Any = None, max_items: int = 2000, lazy_delay: float | None = None,
                 max_bytes: int = 1024 * 1024, materialize: Any = None, viewer: str | None = None) -> None:
        self.rref = rref
        self.viewer = viewer   #: the session's user: another user's exception pickle is not pushed
        self.materialize = materialize
        self.max_bytes = max_bytes
        self.clock = clock
        self.pending: dict[int, Any] = {}
        #: assigned updates waiting for their job's next state: id -> (job, due), oldest first
        self.young: dict[int, tuple[Any, float]] = {}
        self.in_flight = False
        self.max_items = max_items
        self.dead = False
        self.lazy_delay = latency.current().push_lazy_delay if lazy_delay is None else lazy_delay
        self._timer = EarliestTimer(clock, self._pump) if clock is not None else None
        self._pacer = AnswerPacer(clock) if clock is not None else None

    def push_jobs(self, jobs: list[Any], hold: float = 0.0) -> None:
        urgent = self.clock is None
        delay = hold if hold > 0 else self.lazy_delay
        pending, young = self.pending, self.young
        lazy = not urgent and self.lazy_delay > 0
        due = None
        for j in jobs:
            jid = j.id
            status = j.status
            if lazy and status == ASSIGNED and jid not in pending:
                if jid not in young:
                    if due is None:
                        due = self.clock.seconds() + self.lazy_delay
                    young[jid] = (j, due)
                continue
            if young and jid in young:
                del young[jid]   # a later state replaces the assigned one
            pending[jid] = j
            if status in TERMINAL:
                if hold <= 0:
                    urgent = True
            elif hold > 0:
                delay = min(delay, self.lazy_delay)
        if due is not None and not pending:
            self._timer.within(self.lazy_delay)   # only assigned updates: they go when due
            return
        if urgent or delay <= 0 or (hold > 0 and self._timer.due_within(delay * PIGGYBACK)):
            self._pump()   # urgent, or a hold about to end: these go along, no timer wake-up
        else:
            self._timer.within(delay)

    def _take_due_young(self) -> None:
        """Assigned updates whose wait is over join the pending ones; the timer is set for the next."""
        young = self.young
        now = self.clock.seconds()
        due = []
        for jid, (job, at) in young.items():
            if at > now:
                self._timer.within(at - now)
                break
            due.append(jid)
        pending = self.pending
        for jid in due:
            pending[jid] = young.pop(jid)[0]

    def _pump(self) -> None:
        if self._timer is not None:
            self._timer.cancel()  # everything pending goes now
        if self.young:
            self._take_due_young()
        if self.in_flight or not self.pending or self.dead:
            return
        # a few MiB per call: Foolscap reassembles one huge string slowly on the receiving side
        updates, size = [], 0
        for jid in list(self.pending)[: self.max_items]:
            job = self.pending[jid]
            n = 0
            if job.status in TERMINAL:
                if not job.announced:
                    continue  # finished in memory, commit pending: its own push follows the commit
                n = len(job.result) if job.result is not None else job.result_size
            if updates and size + n > self.max_bytes:
                break
            del self.pending[jid]
            u = job.update()
            if len(u) > _U_EXC:   # an exception: its pickle goes to the job's owner only
                u[_U_EXC] = exc_info.for_viewer(u[_U_EXC], job.owner, self.viewer)
            updates.append(u)
            size += n
        if not updates:
            return
        if self.materialize is not None:
            updates = self.materialize(updates)
            if isinstance(updates, Deferred):  # result files being read: nothing else goes meanwhile
                self.in_flight = True
                updates.addCallback(self._send).addErrback(self._read_failed)
                return
        self._send(updates)

    def _read_failed(self, f: Any) -> None:
        log.failure("dsage.server.push_failed", f)
        self.in_flight = False
        self._pump()

    def _send(self, updates: list[list[Any]]) -> None:
        self.in_flight = False
        if self.dead:
            return
        data = envelope.pack(updates)
        if (self._pacer is not None and self._pacer.may_skip_answer(bool(self.pending))
                and self.rref.isConnected()):
            # a lone push needs no answer (its CPU on both sides is most of a W2 round trip)
            self.rref.callRemoteOnly("jobs_changed", data)
            self._pacer.sent_without_answer()
            if self.pending:  # more came while result files were being read
                self._pump()
            return
        self.in_flight = True
        d = self.rref.callRemote("jobs_changed", data)
        d.addBoth(self._answered)

    def _answered(self, r: Any) -> None:
        self.in_flight = False
        if self._pacer is not None:
            self._pacer.answered()
        if hasattr(r, "check") and r.check(Exception):
            self.dead = not self.rref.isConnected()
        self._pump()


class RunSender:
    """Sends dispatched jobs to one worker: eager batches of <= 1000 jobs, blobs carried along."""

    def __init__(self, worker: Worker, max_items: int = 1000, clock: Any = None) -> None:
        self.worker = worker
        self.blobs: dict[str, bytes] = {}
        run_only = getattr(worker.link, "run_only", None)
        self.batcher = Batcher(self._send, max_items=max_items, max_in_flight=2,
                               on_failure=lambda items, f: None, clock=clock,
                               size_of=self._entry_size, max_bytes=32 * 1024 * 1024,
                               send_only=self._send_only if run_only is not None else None)

    def add_many(self, entries: list[list[Any]], blobs: dict[str, bytes]) -> None:
        self.blobs.update(blobs)
        self.batcher.add_many(entries)

    def _entry_size(self, entry: list[Any]) -> int:
        """Bytes a dispatched job adds to a run batch: its payload, and its function if that still
        has to go (big jobs and big functions split batches; the wire limit is 256 MiB)."""
        payload, blob_id = entry[_R_PAYLOAD], entry[_R_BLOB]
        n = (len(payload) if isinstance(payload, (bytes, bytearray)) else 0) + 100
        if blob_id is not None and blob_id in self.blobs:
            n += len(self.blobs[blob_id])
        ext = entry[_R_EXT] if len(entry) > _R_EXT else None
        if ext and "input_values" in ext:  # jobs as arguments
            n += sum(len(b) for _, b in ext["input_values"])
        return n

    def _blobs_for(self, entries: list[list[Any]]) -> dict[str, bytes]:
        """The pending functions these jobs need (the others wait for their own jobs' batch)."""
        return {b: self.blobs.pop(b) for b in {e[_R_BLOB] for e in entries} if b is not None and b in self.blobs}

    def _send(self, entries: list[list[Any]]) -> Any:
        return self.worker.link.run({"jobs": entries, "blobs": self._blobs_for(entries)})

    def _send_only(self, entries: list[list[Any]]) -> None:
        self.worker.link.run_only({"jobs": entries, "blobs": self._blobs_for(entries)})


class WorkerLinkRef:
    """How the server reaches one worker (``run``, ``kill``, ``disconnect``): over a Foolscap
    reference to the worker's runner (tests hand the server a fake with the same methods)."""

    def __init__(self, rref: Any) -> None:
        self.rref = rref

    def run(self, batch: dict[str, Any]) -> Any:
        return self.rref.callRemote("run", envelope.pack(batch))

    def run_only(self, batch: dict[str, Any]) -> None:
        """The same without an answer (an idle link's lone batch; see Batcher)."""
        if not self.rref.isConnected():  # callRemoteOnly would drop it without a word
            raise ConnectionError("connection lost")
        self.rref.callRemoteOnly("run", envelope.pack(batch))

    def kill(self, items: list[list[int]]) -> Any:
        return self.rref.callRemote("kill", envelope.pack(items))

    def disconnect(self) -> None:
        _abort(self.rref)


class Guarded(Referenceable):
    """A remote object whose unexpected errors reach the caller as a plain :class:`BadRequest`
    (malformed arguments a check missed), never as the raw ``ValueError`` / ``IndexError`` or a
    server traceback; the server logs the details. dsage's own errors and Foolscap's
    ``Violation`` pass unchanged. Costs one ``try`` per call."""

    def doRemoteCall(self, methodname: str, args: Any, kwargs: Any) -> Any:
        try:
            r = remote_method(self, methodname)(*args, **kwargs)   # one interned name (protocol/methods.py)
        except (DsageError, Violation):
            raise
        except Exception:
            raise _refusal(Failure(), methodname) from None
        if isinstance(r, Deferred):
            r.addErrback(_clean_failure, methodname)
        return r


def _refusal(f: Failure, method: str) -> BadRequest:
    log.failure("dsage.server.remote_call_failed", f, method=method)
    return BadRequest(f"malformed arguments to {method}")


def _clean_failure(f: Failure, method: str) -> Any:
    if f.check(DsageError, Violation):
        return f
    raise _refusal(f, method)


@implementer(RIClientSession)
class ClientSession(Guarded):
    """A logged-in client: every call acts as that user, on that user's jobs only (admins: all)."""

    def __init__(self, core: JobServer, auth: Authenticator, who: Identity, address: str = "") -> None:
        self.core = core
        self.auth = auth
        self.who = who
        self.address = address
        self.listener: KeyedPusher | None = None
        self.rref: Any = None
        self.local = False   #: proved it shares the server's home (see dsage_core.local_results)
        self.uploads: set[str] = set()   #: blobs this session uploaded (dropped unused at its end)

    # the watcher interface JobServer uses
    def push_jobs(self, jobs: list[Any], hold: float = 0.0) -> None:
        if self.listener is not None:
            self.listener.push_jobs(jobs, hold)

    def push_counters(self, stats: bytes, workers: bytes | None) -> None:
        """Push packed server counters (and the worker list, if it changed) to the listener."""
        if self.rref is None:
            return
        self.rref.callRemote("stats", stats).addErrback(lambda f: None)
        if workers is not None:
            self.rref.callRemote("workers_changed", workers).addErrback(lambda f: None)

    def remote_get_version(self) -> dict[str, Any]:
        return {"version": __version__, "user": self.who.name, "role": self.who.role,
                "limits": self.core.limits.to_dict(), "server_id": self.core.server_id}

    def remote_prove_local(self, token: str) -> bool:
        self.local = self.core.is_local(token)
        return self.local

    def materialize(self, updates: list[list[Any]]) -> Any:
        """Replace result-file names by the bytes for a session that does not share the home:
        the updates, or a Deferred of them when files must be read (off the reactor)."""
        if self.local:
            return updates
        files = [u for u in updates if isinstance(u[_U_RESULT], dict) and "file" in u[_U_RESULT]]
        if not files:
            return updates

        def fill(contents: list[Any]) -> list[list[Any]]:
            for u, data in zip(files, contents):
                u[_U_RESULT] = data
            return updates
        return gatherResults([self.core.read_result_file_later(u[_U_RESULT]["file"]) for u in files],
                             consumeErrors=True).addCallback(fill)

    def remote_subscribe(self, listener: Any) -> None:
        self.rref = listener
        self.listener = KeyedPusher(listener, self.core.clock, materialize=self.materialize,
                                    viewer=self.who.name)
        self.address = self.address or _peer(listener)
        listener.notifyOnDisconnect(self._gone)
        self.core.clients.add(self)

    def _gone(self) -> None:
        self.core.clients.discard(self)
        self.core.forget_watcher(self)
        self.listener = None

    def remote_watch_all(self, enable: bool) -> None:
        self.core.watch_owner(self.who.name, self, bool(enable))

    def remote_submit(self, batch: bytes) -> Any:
        jobs = envelope.expect_list(envelope.unpack(batch, max_len=self.core.limits.max_batch_bytes,
                                                    what="submit batch"), "submit batch",
                                    self.core.limits.max_batch_jobs)
        d = self.core.submit(self.who.name, jobs, watcher=self)
        return d.addCallback(envelope.pack)

    def remote_put_blob(self, blob_id: str, data: bytes) -> Any:
        import hashlib
        if hashlib.sha256(data).hexdigest() != blob_id:
            raise BadRequest("blob id is not the sha256 of its data")
        d = self.core.put_blob(self.who.name, blob_id, data)
        self.uploads.add(blob_id)
        return d

    def remote_has_blobs(self, blob_ids: bytes) -> bytes:
        ids = envelope.expect_list(envelope.unpack(blob_ids, what="blob ids"), "blob ids", 10_000)
        return envelope.pack(self.core.has_blobs(self.who.name, [str(i)[:80] for i in ids]))

    def connection_lost(self) -> None:
        """Its connection ended: uploads no job used yet go (no parking data on the server)."""
        uploads, self.uploads = self.uploads, set()
        if uploads:
            self.core.uploads_ended(self.who.name, uploads)

    def remote_watch(self, job_ids: bytes) -> Any:
        ids = _int_list(job_ids, "job ids", self.core.limits.max_list)
        d = self.core.watch(self.who.name, self.who.admin, ids, self)
        return d.addCallback(self.materialize).addCallback(envelope.pack)

    def remote_list_jobs(self, query: bytes) -> Any:
        q = envelope.unpack(query, what="query")
        if not isinstance(q, dict):
            raise BadRequest("query must be a map")
        return self.core.list_jobs(self.who.name, self.who.admin, q).addCallback(envelope.pack)

    def remote_get_job(self, job_id: int, with_result: bool) -> Any:
        d = self.core.get_job(self.who.name, self.who.admin, job_id, with_result)
        return d.addCallback(envelope.pack)

    def remote_get_output(self, job_id: int) -> Any:
        return self.core.get_output(self.who.name, self.who.admin, job_id)

    def remote_kill(self, job_ids: bytes) -> bytes:
        """A list of job ids (kill), or ``{"cancel": [ids]}`` (kill unless already running)."""
        raw = envelope.unpack(job_ids, what="job ids")
        cancel = isinstance(raw, dict)
        ids = _ints(raw.get("cancel") if cancel else raw, "job ids", self.core.limits.max_list)
        return envelope.pack(self.core.kill(self.who.name, self.who.admin, ids, self.address,
                                            unstarted_only=cancel))

    def remote_workers(self) -> bytes:
        return envelope.pack(self.core.describe_workers())

    def remote_stats(self) -> bytes:
        return envelope.pack(self.core.stats())

    def remote_admin(self, command: bytes) -> Any:
        if not self.who.admin:
            raise PermissionDenied("this needs an admin key")
        cmd = envelope.unpack(command, what="admin command")
        if not isinstance(cmd, list) or not cmd or not isinstance(cmd[0], str):
            raise BadRequest("admin command must be [name, args...]")
        from dsage_core.server import admin
        d = maybeDeferred(admin.run, self.core.store, self.who, self.address, cmd[0], cmd[1:],
                          server=self.core)
        return d.addCallback(envelope.pack)


@implementer(RIWorkerSession)
class WorkerSession(Guarded):
    """A logged-in worker: may fetch work, report on the jobs it holds, and heartbeat. Nothing else."""

    def __init__(self, core: JobServer, who: Identity) -> None:
        self.core = core
        self.who = who
        self.worker: Worker | None = None

    def remote_get_version(self) -> dict[str, Any]:
        return {"version": __version__, "user": self.who.name, "anonymous": self.who.anonymous,
                "limits": self.core.limits.to_dict(), "server_id": self.core.server_id}

    def remote_register(self, runner: Any, info: bytes) -> bytes:
        if self.worker is not None:
            raise BadRequest("this session already registered a worker")
        i = envelope.unpack(info, what="worker info")
        if not isinstance(i, dict):
            raise BadRequest("worker info must be a map")
        i["address"] = _peer(runner)
        self.worker = self.core.worker_joined(WorkerLinkRef(runner), i, self.who.name, self.who.anonymous)
        wid = self.worker.id
        runner.notifyOnDisconnect(self.core.worker_left, wid, "connection lost")
        return envelope.pack({"worker_id": wid, "heartbeat": self.core.heartbeat_interval,
                              "lease_timeout": self.core.scheduler.lease_timeout,
                              "local_results": self.worker.local,
                              "max_result": self.core.limits.max_result})

    def _wid(self) -> str:
        if self.worker is None:
            raise BadRequest("register first")
        return self.worker.id

    def remote_report(self, batch: bytes) -> None:
        events = envelope.expect_list(envelope.unpack(batch, max_len=self.core.limits.max_batch_bytes,
                                                      what="report"), "report", 100_000)
        self.core.report(self._wid(), events)

    def remote_heartbeat(self, state: bytes) -> None:
        s = envelope.unpack(state, what="heartbeat")
        if not isinstance(s, dict):
            raise BadRequest("heartbeat must be a map")
        self.core.heartbeat(self._wid(), s)


@implementer(RILogin)
class Login(Guarded):
    """The server's one public object (its furl is ``server.furl``). Each connection talks to its
    own view (:meth:`for_connection`): its challenges, failed logins and address are its own."""

    def __init__(self, core: JobServer, auth: Authenticator, gate: ConnectionGate | None = None) -> None:
        self.core = core
        self.auth = auth
        self.gate = gate
        self.address = gate.address if gate is not None else ""
        self.sessions: list[Any] = []   #: client sessions logged in over this connection

    def for_connection(self, address: str, abort: Any) -> "Login":
        """The view one connection gets (see ``protocol.tubs.ServerBroker`` and localwire)."""
        return Login(self.core, self.auth, self.auth.gate(address, abort))

    def connection_lost(self) -> None:
        if self.gate is not None:
            self.gate.close()
        sessions, self.sessions = self.sessions, []
        for s in sessions:
            s.connection_lost()

    def remote_get_version(self) -> dict[str, Any]:
        v = {"version": __version__, "server_id": self.core.server_id,
             "allow_anonymous": self.auth.allow_anonymous}
        if self.core.furl is not None:
            v["furl"] = self.core.furl   # every server of the group: peers follow a takeover
        return v

    def remote_challenge(self) -> bytes:
        return self.gate.challenge() if self.gate is not None else self.auth.challenge()

    def remote_login(self, role: str, pubkey: str, nonce: bytes, signature: bytes) -> Any:
        d = self.auth.login(role, pubkey, nonce, signature, self.address, book=self.gate)
        return d.addCallbacks(self._session, self._failed)

    def remote_login_anonymous(self, role: str) -> Any:
        try:
            who = self.auth.login_anonymous(role, self.address)
        except LoginFailed:
            self._count_failure()
            raise
        return self._session(who)

    def remote_redeem_invite(self, invite: str, pubkey: str, session: str | None = None) -> Any:
        parts = invite.split(":", 1) if isinstance(invite, str) else []
        if len(parts) != 2:
            self._count_failure()
            raise BadRequest("malformed invite")
        d = self.auth.redeem_invite(parts[0], parts[1], pubkey, self.address, session=session)
        return d.addErrback(self._failed)

    def _failed(self, f: Any) -> Any:
        self._count_failure()
        return f

    def _count_failure(self) -> None:
        if self.gate is not None:
            self.gate.failed()   # may close the connection (and raise LoginFailed saying so)

    def _session(self, who: Identity) -> Referenceable:
        if who.session == "client":
            s = ClientSession(self.core, self.auth, who, self.address)
            if self.gate is not None:   # a per-connection view: it hears when the connection ends
                self.sessions.append(s)
            return s
        return WorkerSession(self.core, who)


def _int_list(data: bytes, what: str, max_items: int) -> list[int]:
    return _ints(envelope.unpack(data, what=what), what, max_items)


def _ints(obj: Any, what: str, max_items: int) -> list[int]:
    ids = envelope.expect_list(obj, what, max_items)
    if not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        raise BadRequest(f"{what} must be integers")
    return ids
