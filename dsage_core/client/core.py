"""``AsyncClient``: the client on the reactor thread; every method returns a Deferred.

The desktop app uses it directly; :class:`dsage_core.client.api.Client` wraps it for plain threads.

Events (``subscribe(callback)``, ``callback(kind, payload)``):
  ``("connection", "connected" | "reconnecting" | "disconnected")``
  ``("jobs", list[JobInfo])``  jobs of this session that are new or changed, batched
  ``("stats", dict)``          server counters, pushed once per second
  ``("workers", list[dict])``  connected workers, on change

No Foolscap here: pushes arrive through :class:`dsage_core.client.remote.Listener`, and every
remote failure becomes a dsage exception in :func:`dsage_core.client.remote.translate`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from twisted.internet.defer import Deferred, fail, inlineCallbacks, succeed
from twisted.logger import Logger

from dsage_core import local_results, server_lock
from dsage_core.client.job import JobTracker
from dsage_core.client.payload import Options, Submission, code_job, file_job
from dsage_core.client.states import StateTable
from dsage_core.model.job import JobInfo
from dsage_core.model.records import JobUpdate
from dsage_core.model.status import JobStatus
from dsage_core.protocol import envelope, tubs
from dsage_core.protocol.batcher import Batcher
from dsage_core.client.remote import Listener, ServerLink, translate  # noqa: F401 (re-export)
from dsage_core.protocol.connect import ServerConnection
from dsage_core.protocol.errors import ClientClosed, ServerUnavailable, UnknownBlob

log = Logger(namespace="dsage.client")

#: job updates handed to subscribers per reactor turn
EMIT_SLICE = 250

def _waits(ext: dict[str, Any], states: Any) -> bool:
    """Whether a new job waits for its input jobs, as far as this client knows (jobs as arguments)."""
    for i in ext.get("inputs") or ():
        s = states.get(i)
        if s is None or s.status != JobStatus.COMPLETED:
            return True
    return False


class _SubmitGroup:
    """The jobs of one submit_many call: one Deferred for all of them, in order."""

    __slots__ = ("results", "missing", "deferred", "reuploaded")

    def __init__(self, n: int) -> None:
        self.results: list[Any] = [None] * n
        self.missing = n
        self.deferred: Deferred = Deferred()
        self.reuploaded = False   #: its function blobs were uploaded again once (see _resubmit)

    def put(self, i: int, state: JobTracker) -> None:
        self.results[i] = state
        self.missing -= 1
        if self.missing == 0 and not self.deferred.called:
            self.deferred.callback(self.results)

    def fail(self, f: Any) -> None:
        if not self.deferred.called:
            self.deferred.errback(f)




class AsyncClient:
    """A connection to one server as one user. Create with :func:`connect_async`.

    *dial*: reach the server through this function instead of the furl (an in-process transport,
    see ``ServerConnection``)."""

    def __init__(self, reactor: Any, home: Path, furl: str, key_path: Path | None,
                 dial: Any = None) -> None:
        self.reactor = reactor
        self.dial = dial
        self.home = home
        self.furl = furl
        self.key_path = key_path
        self.server_label = furl.split("@", 1)[-1].rsplit("/", 1)[0]
        self.user = ""
        self.role = ""
        self.limits: dict[str, Any] = {}
        self.states = StateTable()   #: finished jobs stay only while something refers to them
        self.session: ServerLink | None = None
        self.connection_state = "connecting"
        self.follow_all = False   #: receive updates for all of this user's jobs (set before start)
        self._subscribers: list[Callable[[str, Any], None]] = []
        self._ready: list[Deferred] = []
        self._error: Exception | None = None
        self._uploaded: set[str] = set()
        self._submits = Batcher(None, max_items=500, max_in_flight=2)
        self._listener = Listener(self)
        self.conn: ServerConnection | None = None
        self.local_home: Any = None   #: our home is the server's (dsage_core.local_results)
        self.closed = False   #: set by close(): every later call fails at once with ClientClosed

    # ------------------------------------------------------------------ connection
    def start(self) -> None:
        home = self.home
        # a Tub only when Foolscap is needed (a certificate costs ~0.13 s to make the first time)
        self.conn = ServerConnection(lambda: tubs.started_peer_tub(home), self.furl, "client",
                                     reactor=self.reactor, key_path=self.key_path,
                                     on_session=self._got_session, on_lost=self._lost,
                                     on_error=self._login_error,
                                     local_socket=server_lock.socket_path(home), dial=self.dial)
        self.conn.start()

    @property
    def tub(self) -> Any:
        """The Tub this client's connection made (None on the local socket: no certificate)."""
        return self.conn.made_tub if self.conn is not None else None

    def when_connected(self, timeout: float) -> Deferred:
        """Fires with self once logged in; fails with ServerUnavailable/LoginFailed otherwise."""
        if self.session is not None:
            return succeed(self)
        if self._error is not None:
            from twisted.internet.defer import fail
            return fail(self._error)
        d: Deferred = Deferred()
        self._ready.append(d)

        def too_late() -> None:
            if not d.called:
                self._ready.remove(d)
                d.errback(ServerUnavailable(f"cannot reach the dsage server at {self.server_label} "
                                            f"within {timeout:g} s (is it running?)"))
        call = self.reactor.callLater(timeout, too_late)
        d.addBoth(lambda r: (call.active() and call.cancel(), r)[1])
        return d

    @inlineCallbacks
    def _got_session(self, session: Any) -> Any:
        link = ServerLink(session)
        version = yield link.call("get_version")
        self.local_home = None
        token = local_results.read_token(self.home)
        if token:  # same home as the server: large results are read from its files
            try:
                proof = local_results.proof(token, local_results.server_id_of(self.furl))
                if (yield link.call("prove_local", proof)):
                    self.local_home = self.home
            except Exception:
                pass  # an older server: results come over the wire
        yield link.call("subscribe", self._listener)
        self.user, self.role = version.get("user", ""), version.get("role", "")
        self.limits = version.get("limits", {})
        if self.follow_all:
            yield link.call("watch_all", True)
        self.session = link
        self._uploaded.clear()
        # re-watch unfinished jobs after a reconnect so waits finish normally
        pending = self.states.unfinished()
        if pending:
            for i in range(0, len(pending), 10_000):
                ans = yield link.call("watch", envelope.pack(pending[i:i + 10_000]))
                self._on_updates(envelope.unpack(ans))
        self._submits.attach(self._send_submits)
        self._set_connection("connected")
        ready, self._ready = self._ready, []
        for d in ready:
            d.callback(self)

    def _lost(self) -> None:
        self.session = None
        self._submits.attach(None)
        self._set_connection("reconnecting")

    def _login_error(self, e: Exception) -> None:
        self._error = e
        self._set_connection("disconnected")
        ready, self._ready = self._ready, []
        for d in ready:
            d.errback(e)

    def _set_connection(self, state: str) -> None:
        self.connection_state = state
        self._emit("connection", state)

    def subscribe(self, callback: Callable[[str, Any], None]) -> Callable[[], None]:
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback) if callback in self._subscribers else None

    def _emit(self, kind: str, payload: Any) -> None:
        for cb in list(self._subscribers):
            try:
                cb(kind, payload)
            except Exception:
                log.failure("dsage.client.subscriber_failed")

    def _call(self, method: str, *args: Any) -> Deferred:
        if self.closed:
            from twisted.internet.defer import fail
            return fail(ClientClosed())
        if self.session is None:
            from twisted.internet.defer import fail
            return fail(ServerUnavailable("not connected to the server (reconnecting)"))
        return self.session.call(method, *args)

    # ------------------------------------------------------------------ updates
    def _on_updates(self, updates: list[list[Any]]) -> None:
        # each array is applied as it came (JobTracker.apply_wire, JobUpdate's field order): no
        # record per update; the id is JobUpdate's first field
        states, home = self.states, self.local_home
        get, finished = states.get, states.finished
        changed: list[JobTracker] | None = [] if self._subscribers else None
        for w in updates:
            jid = w[0]
            s = get(jid)
            if s is None:
                s = JobTracker(jid)
                s.apply_wire(w, home)   # a malformed array raises before the table keeps it
                states[jid] = s         # a finished one is kept only while referred to
            elif s.apply_wire(w, home):
                finished(s)
            if changed is not None:
                changed.append(s)
        if changed:
            # subscribers (the desktop app) get big pushes in slices, one reactor turn apart:
            # a push of 2,000 updates is ~20 ms of their work, a hiccup on a shared GUI loop
            self._emit("jobs", [s.info() for s in changed[:EMIT_SLICE]])
            for k in range(EMIT_SLICE, len(changed), EMIT_SLICE):
                part = changed[k:k + EMIT_SLICE]
                self.reactor.callLater(0, lambda p=part: self._emit("jobs", [s.info() for s in p]))

    def call_when_done(self, s: JobTracker, fn: Callable[[JobTracker], None]) -> None:
        """Run *fn(state)* on the reactor thread once the job is finished."""
        self.call_when_done_many([(s, fn)])

    def call_when_done_many(self, pairs: list[tuple[JobTracker, Callable[[JobTracker], None]]]) -> None:
        """Register many done-callbacks with one hop to the reactor thread; after :meth:`close`,
        a job that has not finished raises :class:`ClientClosed` (nothing would ever finish it)."""
        if self.closed and any(not s.done for s, _ in pairs):
            raise ClientClosed("waiting on a job")
        def on_reactor() -> None:
            for s, fn in pairs:
                s.add_callback(fn)
        if self._on_reactor_thread():
            on_reactor()
        else:
            self.reactor.callFromThread(on_reactor)

    def call_each_when_done(self, states: list[JobTracker], fn: Callable[[JobTracker], None]) -> None:
        """:meth:`call_when_done_many` with one *fn* for every state (no pair per job)."""
        if self.closed and any(not s.done for s in states):
            raise ClientClosed("waiting on a job")
        def on_reactor() -> None:
            for s in states:
                s.add_callback(fn)
        if self._on_reactor_thread():
            on_reactor()
        else:
            self.reactor.callFromThread(on_reactor)

    def _on_reactor_thread(self) -> bool:
        from twisted.python import threadable
        return threadable.isInIOThread()

    # ------------------------------------------------------------------ submitting
    def submit_many(self, subs: list[Submission]) -> Deferred:
        """Send jobs (batched on the wire); fires with their :class:`JobTracker` objects in order."""
        if self.closed:
            return fail(ClientClosed("submitting"))
        blobs = {s.blob_id: s.blob for s in subs if s.blob_id and s.blob is not None}
        d = self._upload_blobs(blobs) if blobs else succeed(None)
        return d.addCallback(lambda _: self._enqueue(subs))

    def _enqueue(self, subs: list[Submission]) -> Deferred:
        """Batcher items ``(wire record, submission, group, index)``: one per job (a submission
        may carry many, see ``Submission.payloads``)."""
        items: list[tuple[tuple, Submission, _SubmitGroup, int]] = []
        group = _SubmitGroup(sum(s.count for s in subs))
        add = items.append
        i = 0
        for s in subs:
            for w in s.wires():
                add((w, s, group, i))
                i += 1
        if not items:
            group.deferred.callback([])
            return group.deferred
        self._submits.add_many(items)
        return group.deferred

    def _send_submits(self, items: list[tuple[tuple, Submission, "_SubmitGroup", int]]) -> Deferred:
        now = self.reactor.seconds()
        assert self.session is not None
        d = self.session.call("submit", envelope.pack([it[0] for it in items]))

        def got(ids_packed: bytes) -> None:
            ids = envelope.unpack(ids_packed)
            states = self.states
            get = states.get
            last = None
            for (_, sub, group, i), jid in zip(items, ids):
                if sub is not last:   # what every job of one submission shares
                    last, name, kind, code = sub, sub.name, sub.kind, sub.code
                    ext, priority = sub.options.ext, sub.options.priority
                st = get(jid)
                if st is None:
                    st = states[jid] = JobTracker(jid, name, kind, now)
                    if ext and _waits(ext, states):
                        st.status = JobStatus.WAITING   # until the server's push says otherwise
                st.code, st.priority = code, priority
                group.put(i, st)

        def failed(f: Any) -> None:
            if f.check(UnknownBlob) and self._resubmit(items):
                return
            for _, _, group, _ in items:
                group.fail(f)
        d.addCallbacks(got, failed)
        return d

    def _resubmit(self, items: list[tuple[tuple, Submission, "_SubmitGroup", int]]) -> bool:
        """The server no longer holds a function blob of these jobs (it frees a blob once no
        unfinished job needs it): forget what we uploaded, upload again, and send the jobs again.
        Once per submit call; False if that was done already."""
        groups = {id(g): g for _, _, g, _ in items}.values()
        if any(g.reuploaded for g in groups):
            return False
        for g in groups:
            g.reuploaded = True
        blobs = {s.blob_id: s.blob for _, s, _, _ in items if s.blob_id and s.blob is not None}
        self._uploaded.difference_update(blobs)
        d = self._upload_blobs(blobs)
        d.addCallback(lambda _: self._submits.add_many(items))

        def failed(f: Any) -> None:
            for g in groups:
                g.fail(f)
        d.addErrback(failed)
        return True

    @inlineCallbacks
    def _upload_blobs(self, blobs: dict[str, bytes]) -> Any:
        todo = [b for b in blobs if b not in self._uploaded]
        if not todo:
            return
        have = envelope.unpack((yield self._call("has_blobs", envelope.pack(todo))))
        for blob_id, present in zip(todo, have):
            if not present:
                yield self._call("put_blob", blob_id, blobs[blob_id])
            self._uploaded.add(blob_id)

    # ------------------------------------------------------------------ the GUI contract
    def submit_code(self, code: str, *, mode: str = "expr", sage: bool = False, name: str | None = None,
                    timeout: float | None = None, priority: int = 0, trusted_only: bool = False) -> Deferred:
        opts = Options(name=name, timeout=timeout, priority=priority, trusted_only=trusted_only)
        sub = code_job(code, mode, opts, sage=sage)
        return self.submit_many([sub]).addCallback(lambda states: states[0].id)

    def submit_file(self, path: str, *, name: str | None = None, timeout: float | None = None,
                    priority: int = 0, trusted_only: bool = False) -> Deferred:
        from dsage_core.client.payload import SubmitError
        try:
            sub = file_job(path, Options(name=name, timeout=timeout, priority=priority,
                                         trusted_only=trusted_only))
        except SubmitError as e:
            from twisted.internet.defer import fail
            return fail(ValueError(str(e)))
        return self.submit_many([sub]).addCallback(lambda states: states[0].id)

    def kill(self, job_id: int) -> Deferred:
        return self._call("kill", envelope.pack([job_id])).addCallback(lambda r: envelope.unpack(r)[0])

    def kill_many(self, job_ids: list[int], cancel: bool = False) -> Deferred:
        """Kill several jobs in one call; fires with one bool per id (False: finished or unknown).
        *cancel*: a worker spares those it already runs (an Executor's cancel)."""
        ids = list(job_ids)
        return self._call("kill", envelope.pack({"cancel": ids} if cancel else ids)).addCallback(envelope.unpack)

    def list_jobs(self, *, status: str | None = None, limit: int = 1000, after_id: int = 0,
                  text: str | None = None, newest_first: bool = False, all_users: bool = False) -> Deferred:
        q = {"status": status, "limit": limit, "after_id": after_id, "text": text,
             "newest_first": newest_first, "all": all_users}
        d = self._call("list_jobs", envelope.pack(q))
        return d.addCallback(lambda r: [_info(row) for row in envelope.unpack(r)])

    def get_job(self, job_id: int, with_result: bool = False) -> Deferred:
        d = self._call("get_job", job_id, with_result)
        return d.addCallback(lambda r: _info(envelope.unpack(r)))

    def get_record(self, job_id: int, with_result: bool = True) -> Deferred:
        return self._call("get_job", job_id, with_result).addCallback(envelope.unpack)

    def watch(self, job_ids: list[int]) -> Deferred:
        """Track jobs (e.g. from an earlier session): fires with their JobStates; unknown ids are absent."""
        d = self._call("watch", envelope.pack(job_ids))

        def got(r: bytes) -> dict[int, JobTracker]:
            ups = envelope.unpack(r)
            ids = [JobUpdate(*u).id for u in ups]
            out = {i: self.states.setdefault(i, JobTracker(i)) for i in ids}  # held: see StateTable
            self._on_updates(ups)
            return out
        return d.addCallback(got)

    def job_state(self, job_id: int) -> JobTracker | None:
        """The live state of a job this session follows, or None once it finished and nothing
        refers to it any more (``get_job`` fetches it from the server). Callers that want it to
        stay must hold the returned object: the client itself keeps only unfinished jobs. This and
        :meth:`subscribe` are how the desktop app and the tray learn about jobs, never ``states``."""
        return self.states.get(job_id)

    def state_count(self) -> int:
        """How many job states this session keeps now: every unfinished job, and finished ones
        something still refers to (a handle, a list of handles). Flat while handles are dropped."""
        return len(self.states)

    def get_output(self, job_id: int) -> Deferred:
        return self._call("get_output", job_id)

    def workers(self) -> Deferred:
        return self._call("workers").addCallback(envelope.unpack)

    def stats(self) -> Deferred:
        return self._call("stats").addCallback(envelope.unpack)

    def admin(self, command: str, *args: Any) -> Deferred:
        return self._call("admin", envelope.pack([command, *args])).addCallback(envelope.unpack)

    @inlineCallbacks
    def close(self) -> Any:
        """Close the connection; every later call fails at once with :class:`ClientClosed`, and
        threads blocked in ``Job.wait()`` raise it."""
        self.closed = True
        for jid in self.states.unfinished():
            s = self.states.get(jid)
            if s is not None:
                s.wake()
        if self.conn is not None:
            yield self.conn.close()   # stops the Tub it made


def _info(row: dict[str, Any]) -> JobInfo:
    return JobInfo.from_dict({k: v for k, v in row.items() if k != "result"})


def connect_async(server: str, key: str | None, home: str | None, reactor: Any,
                  timeout: float = 10.0, follow_all: bool = False) -> Deferred:
    """Connect and log in on a running reactor; fires with an :class:`AsyncClient`."""
    from dsage_core.home import KEY_FILE, resolve_home
    from dsage_core.protocol.connect import read_furl
    h = resolve_home(home)
    furl = read_furl(server)
    key_path = Path(key).expanduser() if key else h / KEY_FILE
    c = AsyncClient(reactor, h, furl, key_path)
    c.follow_all = follow_all
    c.start()
    d = c.when_connected(timeout)
    if _own_server_is_down(h, furl):
        def still_down() -> None:
            if c.session is None and c._error is None and _own_server_is_down(h, furl):
                c.conn.stop()
                c._login_error(ServerUnavailable(
                    f"no dsage server is running on {h} (start one with 'dsage server' or "
                    f"'dsage start-all', or use dsage.start_all())"))
        call = reactor.callLater(min(START_GRACE, timeout), still_down)
        d.addBoth(lambda r: (call.active() and call.cancel(), r)[1])
    return d


#: seconds a server of the client's own home has to take its lock before a connect to it fails
#: (a script may start ``dsage server`` and a client at once; the server takes it in ~0.3 s)
START_GRACE = 3.0


def _own_server_is_down(home: Path, furl: str) -> bool:
    """True when *furl* names the server of *home* (its certificate) and no process holds that
    home's server lock: nothing can answer, so waiting out the connect timeout would only hide
    that. A server of the home that is starting announces itself (``start_all``) or takes the lock
    within :data:`START_GRACE`."""
    from dsage_core.home import SERVER_CERT
    from dsage_core.setup import server_id
    if not (home / SERVER_CERT).exists():
        return False
    if server_lock.announced(home) is not None or server_lock.held(home):  # the cheap check first
        return False
    try:
        return server_id(home) == local_results.server_id_of(furl)
    except (OSError, ValueError):
        return False
