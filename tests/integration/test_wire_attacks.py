"""Attacks on the server's remote methods over real Foolscap and the real local socket (issue 15):
a path as a public key, a challenge flood, reports into another worker's job, hostile worker info,
and ill-typed arguments. Each test performs the attack and checks that the server refuses it
cleanly and keeps answering everyone else."""
from __future__ import annotations

import os

import pytest
from foolscap.api import Referenceable
from twisted.internet.defer import gatherResults
from zope.interface import implementer

from dsage_core import codec, keys, server_lock
from dsage_core.client import reactor_thread as rt
from dsage_core.client.core import translate
from dsage_core.protocol import envelope, localwire, tubs
from dsage_core.protocol.errors import BadRequest, DsageError, LoginFailed
from dsage_core.protocol.interfaces import RIWorkerRunner
from tests.integration.cluster import start_cluster
from tests.integration.test_cli import dsage

pytestmark = pytest.mark.timeout(120)


class Peer:
    """A hand-driven connection to the server's Login object (Foolscap or the local socket)."""

    def __init__(self, cluster, tmp_path, transport: str) -> None:
        self.tub = None
        if transport == "foolscap":
            home = tmp_path / f"peer-{id(self)}"
            home.mkdir()
            self.tub = tubs.peer_tub(home)
            self.tub.startService()
            self.login = rt.blocking(self.tub.getReference, cluster.furl, timeout=15)
        else:
            self.login = rt.blocking(localwire.connect, rt.get_reactor(),
                                     cluster.home / server_lock.SOCKET_NAME, timeout=15)
        self.server_id = cluster.server.core.server_id

    def call(self, ref, method, *args, timeout=15):
        """Call without Foolscap's local schema check: what a hostile peer sends is what arrives."""
        return rt.blocking(lambda: ref.callRemote(method, *args, _useSchema=False).addErrback(_remember),
                           timeout=timeout)

    def signed_login(self, role: str, key_path) -> object:
        key = keys.load_private_key(key_path)
        nonce = self.call(self.login, "challenge")
        sig = keys.sign(key, keys.login_message(self.server_id, role, nonce))
        return self.call(self.login, "login", role, keys.public_key_of(key), nonce, sig)

    def close(self) -> None:
        if self.tub is not None:
            rt.blocking(self.tub.stopService, timeout=15)
        else:
            rt.blocking(lambda: self.login.tracker.broker.transport.loseConnection())


def _remember(f):
    """translate(), keeping the remote error's type name and traceback text on the exception."""
    from foolscap.api import RemoteException
    cf = f.value.failure if isinstance(f.value, RemoteException) else None
    try:
        translate(f)
    except Exception as e:
        if cf is not None:
            t = getattr(cf, "type", "")
            e.remote_type = (getattr(t, "__name__", None) or str(t)).rsplit(".", 1)[-1]
            e.remote_traceback = str(getattr(cf, "traceback", "") or "")
        raise
    return f


@pytest.fixture
def peers(cluster, tmp_path):
    made = []

    def make(transport="foolscap", c=None):
        p = Peer(c or cluster, tmp_path, transport)
        made.append(p)
        return p
    yield make
    for p in made:
        p.close()


@implementer(RIWorkerRunner)
class HandRunner(Referenceable):
    """A worker runner driven by the test: records what the server sends it."""

    def __init__(self) -> None:
        self.runs = []

    def remote_run(self, batch):
        self.runs.append(batch)

    def remote_kill(self, job_ids):
        pass

    def remote_ping(self):
        pass


# ---------------------------------------------------------------------- item 1: path as a key
@pytest.mark.parametrize("transport", ["foolscap", "local"])
def test_a_path_as_public_key_is_never_opened(cluster, peers, tmp_path, transport):
    """login, redeem_invite and admin user_add take key text only: a FIFO (which froze the whole
    server), /dev/zero (which grew it by a GiB a second), an existing key file (which was read and
    registered) and a missing path all get the same refusal, and the server answers meanwhile."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    existing = tmp_path / "victim.pub"
    keys.generate_keypair(tmp_path / "victim", existing)
    paths = [str(fifo), str(existing), str(tmp_path / "missing.pub"), "/dev/zero"]
    invite = cluster.client.admin("invite_add", "client", 3600.0, 100)
    try:
        login_answers, invite_answers, admin_answers = set(), set(), set()
        for path in paths:
            p = peers(transport)   # a connection that fails too often is closed: one per path
            nonce = p.call(p.login, "challenge")
            with pytest.raises(LoginFailed) as e:
                p.call(p.login, "login", "client", path, nonce, b"s" * 64, timeout=10)
            login_answers.add(str(e.value))
            with pytest.raises(LoginFailed) as e:
                p.call(p.login, "redeem_invite", f"{invite['id']}:{invite['secret']}", path, timeout=10)
            invite_answers.add(str(e.value))
            with pytest.raises(BadRequest) as e:
                cluster.client.admin("user_add", "eve", path, "admin")
            admin_answers.add(str(e.value))
            assert cluster.client("6*7").wait(10).result == 42   # the server answered meanwhile
        # one answer per method whatever the path: nothing tells whether a file exists
        assert len(login_answers) == len(invite_answers) == len(admin_answers) == 1
        assert "ssh-ed25519" in login_answers.pop() and "ssh-ed25519" in admin_answers.pop()
        assert "eve" not in {u["name"] for u in cluster.client.admin("user_list")}
        registered = {u["pubkey"] for u in cluster.client.admin("user_list")}
        assert keys.load_public_key(str(existing)) not in registered
    finally:
        try:  # a server that did open the FIFO is blocked in open(): let it go
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:
            pass


def test_the_owner_can_still_add_a_user_from_a_key_file(cluster, tmp_path):
    """`dsage user add --key FILE` reads the file on the admin's machine and sends the text."""
    keys.generate_keypair(tmp_path / "carol", tmp_path / "carol.pub")
    r = dsage(cluster.home, "user", "add", "carol", "--key", str(tmp_path / "carol.pub"), check=False)
    assert r.returncode == 0, r.stderr
    assert "carol" in {u["name"] for u in cluster.client.admin("user_list")}


# ---------------------------------------------------------------------- item 8: nonce flood
def test_a_challenge_flood_costs_only_the_flooders_connection(cluster, peers):
    """10,001 challenges from one connection used to evict every outstanding nonce: now the
    flooder's connection is closed after a few, and a login on another connection that holds a
    nonce from before the flood succeeds."""
    honest = peers("foolscap")
    key = keys.load_private_key(cluster.home / "dsage_key")
    nonce = honest.call(honest.login, "challenge")       # issued before the flood
    flooder = peers("foolscap")

    def flood():
        ds = [flooder.login.callRemote("challenge") for _ in range(10_001)]
        return gatherResults([d.addErrback(lambda f: f.value) for d in ds])
    answers = rt.blocking(flood, timeout=60)
    granted = [a for a in answers if isinstance(a, bytes)]
    assert len(granted) <= 16 and len(granted) < len(answers)
    with pytest.raises(Exception):
        flooder.call(flooder.login, "get_version", timeout=10)   # its connection is gone
    sig = keys.sign(key, keys.login_message(honest.server_id, "client", nonce))
    session = honest.call(honest.login, "login", "client", keys.public_key_of(key), nonce, sig)
    assert envelope.unpack(honest.call(session, "stats"))["workers"] == 1
    assert cluster.client("1+1").wait(10).result == 2


def test_logins_and_failures_are_audited_with_the_peer_address(cluster, peers, tmp_path):
    """Audit rows of logins, failed logins and invites carry the peer's address, for Foolscap
    (host:port) and the local socket (local:pid)."""
    p = peers("foolscap")
    p.signed_login("client", cluster.home / "dsage_key")
    stranger = tmp_path / "stranger"
    keys.generate_keypair(stranger, tmp_path / "stranger.pub")
    with pytest.raises(LoginFailed):
        p.signed_login("client", stranger)
    inv = cluster.client.admin("invite_add", "worker", 3600.0, 1)
    keys.generate_keypair(tmp_path / "newbie", tmp_path / "newbie.pub")
    p.call(p.login, "redeem_invite", f"{inv['id']}:{inv['secret']}",
           keys.load_public_key(str(tmp_path / "newbie.pub")))
    with pytest.raises(DsageError, match="already used"):
        p.call(p.login, "redeem_invite", f"{inv['id']}:{inv['secret']}",
               keys.load_public_key(str(tmp_path / "stranger.pub")))
    local = peers("local")
    local.signed_login("worker", cluster.home / "dsage_key")
    rows = cluster.client.admin("audit", 50)
    by_event = {}
    for r in rows:
        by_event.setdefault(r["event"], []).append(r["address"])
    assert any(a.startswith("127.0.0.1:") for a in by_event["login"])
    assert any(a.startswith("127.0.0.1:") for a in by_event["login_failed"])
    assert any(a.startswith("127.0.0.1:") for a in by_event["invite_used"])
    assert any(a.startswith("127.0.0.1:") for a in by_event["invite_failed"])
    assert f"local:{os.getpid()}" in by_event["login"]
    assert all(a for a in by_event["login"]), by_event["login"]   # none empty


# ---------------------------------------------------------------------- item 3: foreign reports
def _hand_worker(p: Peer, anonymous: bool, home) -> tuple[object, str]:
    """Log in as a worker by hand and register a runner that takes no jobs (0 slots)."""
    if anonymous:
        session = p.call(p.login, "login_anonymous", "worker")
    else:
        session = p.signed_login("worker", home / "dsage_key")
    info = {"host": "intruder", "pid": 1, "slots": 0, "cpus": 1, "memory": 1 << 30}
    settings = envelope.unpack(p.call(session, "register", HandRunner(), envelope.pack(info)))
    return session, settings["worker_id"]


@pytest.mark.parametrize("attacker", ["anonymous over foolscap", "keyed over the local socket"])
def test_a_worker_cannot_report_on_a_job_another_worker_holds(tmp_path, attacker):
    """out, progress, done and back for a job another worker holds (right id and attempt) are
    ignored and logged: the job's output, progress, status and result stay its own worker's."""
    from twisted.logger import globalLogPublisher
    c = start_cluster(tmp_path / "home", allow_anonymous=True)
    p = Peer(c, tmp_path, "foolscap" if attacker.startswith("anonymous") else "local")
    warned = []

    def observe(event):
        if event.get("log_format") == "dsage.server.foreign_report":
            warned.append(event)
    globalLogPublisher.addObserver(observe)
    started, release = tmp_path / "started", tmp_path / "release"
    os.mkfifo(started)
    os.mkfifo(release)
    try:
        job = c.client.eval(f"open({str(started)!r}, 'w').close()\n"
                            f"open({str(release)!r}).read()\nDSAGE_RESULT = 'genuine'", trusted_only=True)
        with open(started) as f:   # returns once the job's child runs (it opened the other end)
            f.read()
        rec = rt.blocking(c.client.aclient.get_record, job.id, False, timeout=10)
        attempt, holder = rec["attempts"], rec["worker"]
        session, my_id = _hand_worker(p, attacker.startswith("anonymous"), c.home)
        assert my_id != holder
        evil = [["out", job.id, attempt, "INJECTED\n"],
                ["progress", job.id, attempt, 0.99, "hijacked"],
                ["done", job.id, attempt, "completed", codec.encode_value("forged"), "'forged'", None,
                 0.0, 1.0, 0.0],
                ["back", job.id, attempt, True, "handed back by an intruder"]]
        for e in evil:
            p.call(session, "report", envelope.pack([e]))
        rec = rt.blocking(c.client.aclient.get_record, job.id, False, timeout=10)
        assert rec["status"] in ("running", "assigned") and rec["worker"] == holder and rec["attempts"] == attempt
        assert "INJECTED" not in (rec.get("output") or "")
        assert not rec.get("progress") and "hijacked" not in (rec.get("progress_message") or "")
        assert {e["kind"] for e in warned} >= {"out", "progress", "done/back"}
        with open(release, "w") as f:
            f.write("go")
        job.wait(30)
        assert job.status == "completed" and job.result == "genuine" and job.worker == holder
        assert "INJECTED" not in job.output and job.attempts == attempt
    finally:
        globalLogPublisher.removeObserver(observe)
        for fifo in (started, release):
            try:
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:
                pass
        p.close()
        c.stop()


# ---------------------------------------------------------------------- item 10: worker text
def test_hostile_worker_info_is_refused_or_cleaned(tmp_path):
    """An anonymous worker registering memory "lots" used to break `dsage workers` for everyone:
    now ill-typed fields are refused, escape sequences in its host name are replaced, and every
    client's `dsage workers` still works."""
    c = start_cluster(tmp_path / "home", allow_anonymous=True)
    p = Peer(c, tmp_path, "foolscap")
    try:
        for bad in ({"memory": "lots"}, {"slots": "8"}, {"cpus": -3}, {"pid": [1]}, {"host": 7},
                    {"host": "h" * 1000}, {"capabilities": "sage"}, {"sage": "yes"}, {"slots": 10**9}):
            session = p.call(p.login, "login_anonymous", "worker")
            with pytest.raises(BadRequest, match="worker info"):
                p.call(session, "register", HandRunner(), envelope.pack({"host": "x", **bad}))
        session = p.call(p.login, "login_anonymous", "worker")
        evil = "evil\x1b]0;pwned\x07\x1b[2J\u202egnp.exe"
        p.call(session, "register", HandRunner(),
               envelope.pack({"host": evil, "pid": 2, "slots": 0, "os": "Linux\r\x1b[1A", "memory": 2**30}))
        ws = c.client.workers()
        shown = [w for w in ws if w["anonymous"]]
        assert len(shown) == 1 and "\x1b" not in shown[0]["host"] and "\x1b" not in shown[0]["id"]
        assert "\u202e" not in shown[0]["host"] and "\r" not in shown[0]["os"]
        r = dsage(c.home, "workers", check=False)
        assert r.returncode == 0, r.stderr
        assert "evil" in r.stdout and "\x1b" not in r.stdout and "\x07" not in r.stdout
    finally:
        p.close()
        c.stop()


# ---------------------------------------------------------------------- misc: arguments
def test_list_jobs_with_a_negative_limit_is_clamped(cluster):
    """A negative limit meant "everything" to SQLite: now it returns no rows, and a limit above
    the server's maximum returns at most that maximum."""
    for _ in range(3):
        cluster.client("1").wait(10)
    session = cluster.client.aclient.session.rref   # the raw reference: an attacker skips the adapter
    rows = envelope.unpack(rt.blocking(session.callRemote, "list_jobs", envelope.pack({"limit": -1}),
                                       timeout=10))
    assert rows == []
    cluster.server.core.limits.max_list = 2
    rows = envelope.unpack(rt.blocking(session.callRemote, "list_jobs",
                                       envelope.pack({"limit": 10**6}), timeout=10))
    assert len(rows) == 2


@pytest.mark.parametrize("expires", [float("nan"), float("inf"), -1.0, 0.0, "1d", None, True])
def test_invites_need_a_finite_positive_lifetime(cluster, expires):
    """invite_add with nan, inf, a negative or zero duration, or a non-number is refused."""
    with pytest.raises(BadRequest, match="expires"):
        cluster.client.admin("invite_add", "worker", expires, 1)
    assert cluster.client.admin("invite_list") == []


@pytest.mark.parametrize("text", ["nan", "inf", "-5m", "0"])
def test_dsage_invite_refuses_a_bad_expiry(cluster, text):
    """`dsage invite --expires=nan` (or inf, or a negative duration) fails with a clear message."""
    r = dsage(cluster.home, "invite", f"--expires={text}", check=False)
    assert r.returncode != 0 and "expires" in r.stderr and "Traceback" not in r.stderr
    assert cluster.client.admin("invite_list") == []


WRONG = [None, True, -1, 2**70, 1.5, float("nan"), "", "x" * 5000, b"", b"\xc1\xc1", b"\x92\x07",
         [], [1, "a"], {"a": 1}, envelope.pack(None), envelope.pack([[None]]),
         envelope.pack({"jobs": 1}), envelope.pack([["done"]]), envelope.pack([["out", "a", "b"]]),
         envelope.pack(["user_add"]), envelope.pack(["invite_add", "worker", 1.0]),
         envelope.pack({"limit": "x", "status": [1]}), envelope.pack([[1] * 12])]

#: the remote error types that are a clean refusal
CLEAN = {"BadRequest", "LoginFailed", "PermissionDenied", "NotFound", "Violation", "InviteError",
         "StoreError", "QuotaExceeded"}


@pytest.mark.parametrize("transport", ["foolscap", "local"])
def test_every_remote_method_refuses_garbage_cleanly(cluster, peers, transport):
    """Every method of Login, ClientSession and WorkerSession (keyed and anonymous), called with
    wrong types, wrong lengths, garbage msgpack and wrong arity, answers a clean refusal (a dsage
    error or a schema Violation, never a raw ValueError/IndexError/TypeError, never a server
    traceback) and the server goes on."""
    from dsage_core.protocol.errors import ServerUnavailable
    from dsage_core.protocol.interfaces import RIClientSession, RILogin, RIWorkerSession
    refs = {}

    def connect():
        p = peers(transport)
        refs.update(peer=p, login=p.login, client=p.signed_login("client", cluster.home / "dsage_key"),
                    worker=p.signed_login("worker", cluster.home / "dsage_key"),
                    anonymous=p.call(p.login, "login_anonymous", "worker"))
    cluster.server.auth.allow_anonymous = True   # as `dsage server --allow-anonymous`
    connect()
    targets = [("login", RILogin), ("client", RIClientSession), ("worker", RIWorkerSession),
               ("anonymous", RIWorkerSession)]
    bad, calls, dropped = [], 0, 0

    def attempt(which, m, args):
        nonlocal calls, dropped
        calls += 1
        try:
            refs["peer"].call(refs[which], m, *args, timeout=20)
        except ServerUnavailable:
            # Foolscap drops a connection whose tokens break the schema (e.g. an int where a
            # string must be): the attacker loses its own connection; the local socket never does
            dropped += 1
            if transport == "local":
                bad.append((m, repr(args)[:80], "local connection dropped"))
            connect()
        except Exception as e:
            t = getattr(e, "remote_type", None)
            tb = getattr(e, "remote_traceback", "")
            if t is None and "cannot send" in str(e):
                return   # msgpack has no 2**70: the call never left this process
            if t not in CLEAN or ("File " in tb and "line " in tb):
                bad.append((m, repr(args)[:80], f"{t or type(e).__name__}: {str(e)[:160]}"))
    for which, iface in targets:
        for m in sorted(iface.names()):
            if m in ("subscribe", "get_version", "stats", "workers"):
                continue   # no arguments to get wrong (subscribe: a reference, checked below)
            n = len(iface[m].argumentNames)
            if m == "register":
                shapes = [[HandRunner(), w] for w in WRONG]
            else:
                shapes = [[w] * n for w in WRONG]
            shapes.append([WRONG[0]] * (n + 1))
            if n:
                shapes.append([])
            for args in shapes:
                if m == "challenge" and not args:
                    continue   # a valid call
                attempt(which, m, args)
    for w in WRONG:
        attempt("client", "subscribe", [w])
    p = refs["peer"]
    client = refs["client"]
    assert bad == [], f"{len(bad)} of {calls} calls not refused cleanly"
    assert cluster.client("2+2").wait(10).result == 4
    assert envelope.unpack(p.call(client, "stats"))["workers"] >= 1


def test_admin_commands_and_invites_need_an_admin_key(cluster, peers, tmp_path):
    """A client-role user cannot add users or make invites (even a malformed command is refused
    for the role first)."""
    from dsage_core.protocol.errors import PermissionDenied
    priv = tmp_path / "mallory"
    keys.generate_keypair(priv, tmp_path / "mallory.pub")
    cluster.client.admin("user_add", "mallory", keys.load_public_key(str(tmp_path / "mallory.pub")), "client")
    p = peers("foolscap")
    session = p.signed_login("client", priv)
    for cmd in (["user_add", "evil", keys.load_public_key(str(tmp_path / "mallory.pub")), "admin"],
                ["invite_add", "client", 3600.0, 1], ["audit"], ["nonsense"], [1, 2]):
        with pytest.raises(PermissionDenied, match="admin key"):
            p.call(session, "admin", envelope.pack(cmd))
    assert {u["name"]: u["role"] for u in cluster.client.admin("user_list")}["mallory"] == "client"
    assert cluster.client.admin("invite_list") == []
