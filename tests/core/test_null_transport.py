"""A real JobServer, a real WorkerService (with fake children) and a real AsyncClient, connected
over the in-process null transport (dsage_core/protocol/null.py) under Twisted's Clock: no Tub, no
socket, no thread, no sleep. Logins are the real challenge/signature logins of ServerConnection."""
from __future__ import annotations

import pytest
from foolscap.api import DeadReferenceError, Referenceable
from twisted.internet.defer import succeed
from twisted.internet.task import Clock, LoopingCall
from zope.interface import implementer

from dsage_core import codec, keys
from dsage_core.client.core import AsyncClient, translate
from dsage_core.model.records import DoneEvent, RunEntry
from dsage_core.model.status import JobStatus
from dsage_core.protocol import envelope
from dsage_core.protocol.errors import BadRequest, DsageError, LoginFailed, ServerUnavailable
from dsage_core.protocol.interfaces import RIClientListener
from dsage_core.protocol.null import NullConnection, NullReference, NullServer, remote_error
from dsage_core.server.auth import Authenticator
from dsage_core.server.core import JobServer
from dsage_core.server.remote import Login, RunSender
from dsage_core.store import InlineRunner, SqliteStore
from dsage_core.worker.service import WorkerConfig, WorkerService

pytestmark = pytest.mark.timeout(60)

SERVER_ID = "n" * 32
FURL = f"pb://{SERVER_ID}@tcp:127.0.0.1:1/login"


class FakePool:
    """The worker's children as WorkerService sees them: keeps the run entries it is given; the
    test finishes them (``finish``), which reports like a child's done would."""

    def __init__(self, slots: int = 1) -> None:
        self.slots, self.busy, self.paused = slots, 0, False
        self.queue: list[RunEntry] = []
        self.given: list[RunEntry] = []
        self.kills: list[tuple[int, int, bool]] = []
        self.local_home = None
        self.max_result = None
        self.report = None   #: the service's report sink (reports.add_many)

    def add_jobs(self, entries, blobs):
        for e in entries:
            r = RunEntry.from_wire(e)
            self.queue.append(r)
            self.given.append(r)

    def kill(self, job_id, attempt, unstarted_only=False):
        """Record the kill; a job it holds ends killed, as a child pool reports it."""
        self.kills.append((job_id, attempt, unstarted_only))
        for e in [e for e in self.queue if (e.job_id, e.attempt) == (job_id, attempt)]:
            self.queue.remove(e)
            self.report([DoneEvent.of(job_id, attempt, JobStatus.KILLED, None, None, "killed",
                                      1.0, 1.5, 0.0).to_wire()])

    def finish(self, entry: RunEntry, value) -> None:
        if entry in self.queue:
            self.queue.remove(entry)
        data = codec.encode_value(value)
        self.report([DoneEvent.of(entry.job_id, entry.attempt, JobStatus.COMPLETED, data, repr(value),
                                  None, 1.0, 1.5, 0.1).to_wire()])

    def close(self):
        return succeed(None)


def run_until(clock: Clock, done, limit: float = 30.0, step: float = 0.01) -> None:
    """Advance fake time in small steps until *done()* holds (fails after *limit* fake seconds)."""
    t = 0.0
    while not done():
        assert t < limit, "condition not reached in fake time"
        clock.advance(step)
        t += step


class Cluster:
    """Server + null network + helpers to add users, workers and clients."""

    def __init__(self, tmp_path, allow_anonymous: bool = False) -> None:
        self.tmp = tmp_path
        self.clock = Clock()
        self.store = SqliteStore(tmp_path / "dsage.sqlite", InlineRunner())
        self.core = JobServer(self.store, self.clock, server_id=SERVER_ID,
                              make_dispatcher=lambda w: RunSender(w, clock=self.clock))
        self.core.restore()
        self.auth = Authenticator(self.store, self.clock, SERVER_ID, allow_anonymous=allow_anonymous)
        self.net = NullServer(Login(self.core, self.auth), self.clock)
        ticks = LoopingCall(self.core.tick)   # as ServerService drives it
        ticks.clock = self.clock
        ticks.start(1.0, now=False)

    def user(self, name: str, role: str):
        home = self.tmp / name
        home.mkdir()
        pub = keys.generate_keypair(home / "key", home / "key.pub")
        self.store.add_user(name, keys.load_public_key(pub), role)
        return home, home / "key"

    def worker(self, name: str = "w1", anonymous: bool = False):
        home, key = self.user(name, "worker") if not anonymous else (self.tmp, None)
        pool = FakePool()
        cfg = WorkerConfig(home=home, furl=FURL, slots=1, key_path=key, anonymous=anonymous, contain=False)
        w = WorkerService(cfg, self.clock, pool=pool, dial=self.net.dial)
        pool.report = w.reports.add_many
        w.start()
        run_until(self.clock, lambda: w.state in ("connected", "error"))
        return w, pool

    def client(self, name: str = "alice"):
        home, key = self.user(name, "client")
        c = AsyncClient(self.clock, home, FURL, key, dial=self.net.dial)
        c.start()
        got = []
        c.when_connected(10).addBoth(got.append)
        run_until(self.clock, lambda: got)
        assert got == [c], got
        return c

    def result(self, d):
        out = []
        d.addBoth(out.append)
        run_until(self.clock, lambda: out)
        return out[0]


@pytest.fixture
def cluster(tmp_path):
    return Cluster(tmp_path)


def test_submit_run_report_push(cluster):
    """A job submitted by the client reaches the worker's pool as a run entry, the worker's done
    report completes it, and the push brings status and value back to the client's state."""
    w, pool = cluster.worker()
    c = cluster.client()
    events = []
    c.subscribe(lambda kind, payload: events.append(kind))
    jid = cluster.result(c.submit_code("2+2"))
    run_until(cluster.clock, lambda: pool.queue)
    entry = pool.queue[0]
    assert entry.job_id == jid and entry.attempt == 1
    state = c.job_state(jid)
    pool.finish(entry, 4)
    run_until(cluster.clock, lambda: state.done)
    assert state.status == JobStatus.COMPLETED and state.value == 4 and state.worker == w.worker_id
    assert "jobs" in events
    assert c.conn.transport == "dialed" and c.tub is None and w.tub is None   # no Tub was made


def test_a_worker_disconnect_mid_job_requeues_it_to_the_next_session(cluster):
    """The worker's connection drops while it holds a job: the server requeues it, the worker
    dials again by itself (timers on the injected clock) and is given the job again as attempt 2;
    the stale attempt's late report changes nothing, the new attempt's completes the job."""
    w, pool = cluster.worker()
    c = cluster.client()
    jid = cluster.result(c.submit_code("6*7"))
    run_until(cluster.clock, lambda: pool.queue)
    first = pool.queue[0]
    cluster.net.live()[0].disconnect()
    run_until(cluster.clock, lambda: w.state == "disconnected")
    assert pool.queue == []   # the service drops what it had not started
    run_until(cluster.clock, lambda: w.state == "connected" and pool.queue)
    again = pool.queue[0]
    assert (again.job_id, again.attempt) == (jid, first.attempt + 1)
    state = c.job_state(jid)
    pool.finish(first, "stale")
    cluster.clock.advance(1.0)
    assert not state.done
    pool.finish(again, 42)
    run_until(cluster.clock, lambda: state.done)
    assert state.status == JobStatus.COMPLETED and state.value == 42


def test_a_client_reconnects_and_rewatches_its_unfinished_jobs(cluster):
    """The client's connection drops while its job runs: it reconnects on its own, watches the job
    again, and still learns its result."""
    w, pool = cluster.worker()
    c = cluster.client()
    conns = []
    c.subscribe(lambda kind, payload: kind == "connection" and conns.append(payload))
    jid = cluster.result(c.submit_code("1+1"))
    run_until(cluster.clock, lambda: pool.queue)
    client_conn = [n for n in cluster.net.live() if "subscribe" in n.calls][0]
    client_conn.disconnect()
    run_until(cluster.clock, lambda: conns[-1:] == ["connected"] and "reconnecting" in conns)
    pool.finish(pool.queue[0], 2)
    state = c.job_state(jid)
    run_until(cluster.clock, lambda: state.done)
    assert state.value == 2


def test_reports_wait_for_the_next_session_when_the_server_is_unreachable(cluster):
    """While the server refuses connections, a worker's report waits in its batcher; after the
    server accepts again, it is delivered and the job completes (nothing is lost)."""
    w, pool = cluster.worker()
    c = cluster.client()
    jid = cluster.result(c.submit_code("3"))
    run_until(cluster.clock, lambda: pool.queue)
    entry = pool.queue[0]
    cluster.net.refuse = True
    [n for n in cluster.net.live() if "register" in n.calls][0].disconnect()
    run_until(cluster.clock, lambda: w.state == "disconnected")
    pool.finish(entry, 3)      # reported while no session exists
    cluster.clock.advance(2.0)
    state = c.job_state(jid)
    assert not state.done
    cluster.net.refuse = False
    run_until(cluster.clock, lambda: w.state == "connected")
    run_until(cluster.clock, lambda: pool.queue)   # requeued: attempt 2 is given to the worker
    pool.finish(pool.queue[0], 3)
    run_until(cluster.clock, lambda: state.done)
    assert state.value == 3


def test_a_kill_from_the_client_reaches_the_worker(cluster):
    """The client kills its running job: the worker's pool is told to kill that attempt (not only
    the unstarted), and the client sees it killed."""
    w, pool = cluster.worker()
    c = cluster.client()
    jid = cluster.result(c.submit_code("sleep"))
    run_until(cluster.clock, lambda: pool.queue)
    attempt = pool.queue[0].attempt
    state = c.job_state(jid)
    assert cluster.result(c.kill_many([jid])) == [True]
    run_until(cluster.clock, lambda: pool.kills)
    assert pool.kills == [(jid, attempt, False)]
    run_until(cluster.clock, lambda: state.done)
    assert state.status == JobStatus.KILLED


def test_a_hung_worker_loses_its_job_when_its_lease_expires(cluster):
    """A worker whose connection hangs (every delivery held far longer than the lease) stops
    heartbeating as far as the server knows: its lease expires on the server's tick and the job
    goes to another worker."""
    w1, pool1 = cluster.worker("w1")
    c = cluster.client()
    jid = cluster.result(c.submit_code("1"))
    run_until(cluster.clock, lambda: pool1.queue)
    w2, pool2 = cluster.worker("w2")
    hung = [n for n in cluster.net.live() if "register" in n.calls][0]
    hung.delay = 3600.0
    run_until(cluster.clock, lambda: pool2.queue, limit=cluster.core.scheduler.lease_timeout * 3)
    assert pool2.queue[0].job_id == jid
    pool2.finish(pool2.queue[0], 1)
    state = c.job_state(jid)
    run_until(cluster.clock, lambda: state.done)
    assert state.status == JobStatus.COMPLETED and state.worker == w2.worker_id


# ------------------------------------------------------------------------------ attackers
def _login(cluster):
    return cluster.result(cluster.net.dial())


def test_an_unauthenticated_caller_is_refused(cluster):
    """Without a valid signature there is no session: a forged login fails with LoginFailed, a
    session method called on the public object is refused as no such method, and an anonymous
    worker is refused by a server that does not allow them."""
    cluster.user("alice", "client")
    login = _login(cluster)
    nonce = cluster.result(login.callRemote("challenge"))
    other = keys.load_private_key(cluster.user("mallory", "client")[1])
    alice_pub = keys.load_public_key((cluster.tmp / "alice" / "key.pub").read_text())
    sig = keys.sign(other, keys.login_message(SERVER_ID, "client", nonce))
    with pytest.raises(LoginFailed):
        translate(cluster.result(login.callRemote("login", "client", alice_pub, nonce, sig)))
    with pytest.raises(BadRequest, match="no such remote method"):
        translate(cluster.result(login.callRemote("submit", b"")))
    with pytest.raises(LoginFailed):
        translate(cluster.result(login.callRemote("login_anonymous", "worker")))
    w, pool = cluster.worker(name="anon", anonymous=True)
    assert w.state == "error" and w.session is None


def test_bounds_are_checked_on_the_receiving_side(cluster):
    """The RemoteInterface constraints apply as over Foolscap: an oversized or mistyped argument
    is refused before the server's method runs."""
    login = _login(cluster)
    with pytest.raises(BadRequest, match="refused the call"):
        translate(cluster.result(login.callRemote("redeem_invite", "x" * 1000, "k")))
    with pytest.raises(BadRequest, match="refused the call"):
        translate(cluster.result(login.callRemote("challenge", 5)))


def test_a_worker_session_cannot_act_as_a_client_and_another_user_cannot_touch_a_job(cluster):
    """A worker's session has no client methods, and another user can neither see nor kill
    alice's job."""
    w, pool = cluster.worker()
    alice = cluster.client("alice")
    bob = cluster.client("bob")
    jid = cluster.result(alice.submit_code("1"))
    worker_session = w.session.rref
    with pytest.raises(BadRequest, match="no such remote method"):
        translate(cluster.result(worker_session.callRemote("submit", envelope.pack([]))))
    killed = cluster.result(bob.kill_many([jid]))
    assert killed == [False]
    got = cluster.result(bob.get_job(jid))
    assert isinstance(got.value, DsageError)
    run_until(cluster.clock, lambda: pool.queue)
    assert pool.kills == []


def test_a_forged_report_from_a_worker_for_a_job_it_does_not_hold_changes_nothing(cluster):
    """A second worker reports a result for the first worker's job: ignored; the job completes
    only with its holder's report."""
    w1, pool1 = cluster.worker("w1")
    c = cluster.client()
    jid = cluster.result(c.submit_code("5"))
    run_until(cluster.clock, lambda: pool1.queue)
    w2, pool2 = cluster.worker("w2")
    entry = pool1.queue[0]
    pool2.finish(entry, "forged")
    cluster.clock.advance(1.0)
    state = c.job_state(jid)
    assert not state.done
    pool1.finish(entry, 5)
    run_until(cluster.clock, lambda: state.done)
    assert state.value == 5


# ------------------------------------------------------------------------------ the transport itself
@implementer(RIClientListener)
class Recorder(Referenceable):
    """A listener that records what it is pushed."""

    def __init__(self):
        self.got = []

    def remote_jobs_changed(self, updates):
        self.got.append(updates)

    def remote_stats(self, counters):
        raise ValueError("boom")

    def remote_workers_changed(self, workers):
        return None


def test_calls_are_eventual_and_ordered():
    """Nothing is delivered in the caller's turn; calls arrive in order on a later turn, and the
    answer travels back as a separate delivery (one *delay* later)."""
    clock = Clock()
    conn = NullConnection(clock)
    r = Recorder()
    ref = conn.reference(r)
    out = []
    ref.callRemote("jobs_changed", b"1").addCallback(out.append)
    ref.callRemoteOnly("jobs_changed", b"2")
    assert r.got == [] and out == []
    clock.advance(0)
    assert r.got == [b"1", b"2"] and out == [None]
    conn.delay = 1.0
    ref.callRemote("jobs_changed", b"3").addCallback(out.append)
    clock.advance(1.0)
    assert r.got[-1] == b"3" and out == [None]
    clock.advance(1.0)
    assert out == [None, None]


def test_faults_fail_next_delay_and_disconnect():
    """fail_next fails one call without delivering it; delay holds delivery until the clock
    passes it; disconnect fails a pending call with DeadReferenceError, skips what was in flight,
    and runs the disconnect watchers."""
    clock = Clock()
    conn = NullConnection(clock)
    r = Recorder()
    ref = conn.reference(r)
    conn.fail_next()
    out = []
    ref.callRemote("jobs_changed", b"x").addErrback(lambda f: out.append(f.value))
    clock.advance(0)
    assert r.got == [] and "injected" in str(out[0].failure)
    conn.delay = 5.0
    ref.callRemoteOnly("jobs_changed", b"late")
    clock.advance(4.9)
    assert r.got == []
    clock.advance(0.2)
    assert r.got == [b"late"]
    lost = []
    ref.notifyOnDisconnect(lambda: lost.append(True))
    pending = []
    ref.callRemote("jobs_changed", b"never").addErrback(lambda f: pending.append(f.value))
    conn.disconnect()
    clock.advance(10)
    assert isinstance(pending[0], DeadReferenceError) and r.got == [b"late"] and lost == [True]
    assert not ref.isConnected()
    dead = []
    ref.callRemote("jobs_changed", b"y").addErrback(lambda f: dead.append(f.value))
    assert isinstance(dead[0], DeadReferenceError)


def test_remote_errors_arrive_as_remote_exceptions_with_the_type_name():
    """An exception raised by the receiver reaches the caller as a RemoteException naming its type
    (translate turns it into a dsage error), never as the exception object itself; a method the
    interface does not declare is refused as a Violation."""
    clock = Clock()
    ref = NullConnection(clock).reference(Recorder())
    out = []
    ref.callRemote("stats", b"").addErrback(out.append)
    ref.callRemote("not_declared").addErrback(out.append)
    clock.advance(0)
    clock.advance(0)
    assert out[0].value.failure.type == "ValueError" and out[0].value.failure.value == "boom"
    assert out[1].value.failure.type == "Violation"
    assert remote_error("NotFound", "x").failure.check("NotFound")


def test_a_dial_to_a_refusing_server_fails_and_server_unavailable_reaches_callers(cluster):
    """A refused dial fails; a client that never reached the server fails when_connected with
    ServerUnavailable once its timeout passes on the injected clock."""
    cluster.net.refuse = True
    home, key = cluster.user("carol", "client")
    c = AsyncClient(cluster.clock, home, FURL, key, dial=cluster.net.dial)
    c.start()
    got = []
    c.when_connected(3.0).addBoth(got.append)
    run_until(cluster.clock, lambda: got)
    assert got[0].check(ServerUnavailable)
    c.conn.stop()


def test_null_transport_has_the_surface_of_the_local_one():
    """Contract: a NullReference offers every public method a LocalReference has (what sessions
    and adapters may call), and a NullConnection what ServerConnection uses of a LocalBroker."""
    from dsage_core.protocol.localwire import LocalBroker, LocalReference
    public = {n for n in vars(LocalReference) if not n.startswith("_")}
    assert public <= set(dir(NullReference))
    conn = NullConnection(Clock())
    assert all(hasattr(conn, n) for n in ("disconnected", "transport", "notify_on_disconnect", "dont_notify"))
    assert callable(LocalBroker.notify_on_disconnect) and callable(LocalBroker.dont_notify)
    ref = conn.reference(Recorder())
    assert ref.tracker.interfaceName == RIClientListener.__remote_name__
    assert ref.tracker.broker is conn and hasattr(ref.tracker.broker.transport, "abortConnection")
