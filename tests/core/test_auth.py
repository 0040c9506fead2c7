"""Login checks with a real store (inline runner) and a fake clock: every refusal path."""
import pytest
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from dsage_core import keys
from dsage_core.protocol.errors import LoginFailed
from dsage_core.server.auth import Authenticator
from dsage_core.store import InlineRunner, SqliteStore

SERVER = "tubid-of-the-server"


class LoginTests(SynchronousTestCase):
    def setUp(self):
        import tempfile
        from pathlib import Path
        self.dir = Path(tempfile.mkdtemp())
        self.store = SqliteStore(self.dir / "db.sqlite", InlineRunner())
        self.successResultOf(self.store.open())
        self.clock = Clock()
        self.clock.advance(1000)
        self.auth = Authenticator(self.store, self.clock, SERVER, allow_anonymous=False)
        self.keys = {}
        for name, role in (("alice", "client"), ("wendy", "worker"), ("root", "admin")):
            priv = self.dir / name
            keys.generate_keypair(priv, self.dir / f"{name}.pub")
            k = keys.load_private_key(priv)
            self.keys[name] = k
            self.successResultOf(self.store.add_user(name, keys.public_key_of(k), role))

    def _login(self, who, role, nonce=None, server=SERVER, key=None):
        nonce = nonce if nonce is not None else self.auth.challenge()
        k = key or self.keys[who]
        sig = keys.sign(k, keys.login_message(server, role, nonce))
        return self.auth.login(role, keys.public_key_of(self.keys[who]), nonce, sig)

    def test_login_ok(self):
        """A registered client key with a fresh challenge gets a client identity."""
        who = self.successResultOf(self._login("alice", "client"))
        self.assertEqual((who.name, who.role, who.session), ("alice", "client", "client"))

    def test_unknown_key(self):
        """A key nobody registered is refused with a message naming the fix."""
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        k = Ed25519PrivateKey.generate()
        nonce = self.auth.challenge()
        sig = keys.sign(k, keys.login_message(SERVER, "client", nonce))
        f = self.failureResultOf(self.auth.login("client", keys.public_key_of(k), nonce, sig), LoginFailed)
        self.assertIn("unknown key", str(f.value))

    def test_wrong_signature(self):
        """A signature by another key over the right message is refused."""
        f = self.failureResultOf(self._login("alice", "client", key=self.keys["wendy"]), LoginFailed)
        self.assertIn("bad signature", str(f.value))

    def test_foreign_server_signature(self):
        """A signature made for another server's identity is refused (no relaying)."""
        f = self.failureResultOf(self._login("alice", "client", server="another-server"), LoginFailed)
        self.assertIn("bad signature", str(f.value))

    def test_replayed_challenge(self):
        """A challenge works once; replaying the same signed login fails."""
        nonce = self.auth.challenge()
        self.successResultOf(self._login("alice", "client", nonce=nonce))
        f = self.failureResultOf(self._login("alice", "client", nonce=nonce), LoginFailed)
        self.assertIn("already used", str(f.value))

    def test_expired_challenge(self):
        """A challenge older than its lifetime is refused."""
        nonce = self.auth.challenge()
        self.clock.advance(31)
        self.failureResultOf(self._login("alice", "client", nonce=nonce), LoginFailed)

    def test_worker_key_cannot_be_client_and_reverse(self):
        """Roles are enforced: a worker key may not open a client session, nor a client key a worker one."""
        f = self.failureResultOf(self._login("wendy", "client"), LoginFailed)
        self.assertIn("may not log in as a client", str(f.value))
        f = self.failureResultOf(self._login("alice", "worker"), LoginFailed)
        self.assertIn("may not log in as a worker", str(f.value))

    def test_admin_may_be_both(self):
        """The owner's admin key runs local workers and submits jobs."""
        self.successResultOf(self._login("root", "client"))
        self.successResultOf(self._login("root", "worker"))

    def test_anonymous_refused_unless_allowed(self):
        """Anonymous workers are refused by default, accepted with allow_anonymous, never as clients."""
        with self.assertRaises(LoginFailed):
            self.auth.login_anonymous("worker")
        self.auth.allow_anonymous = True
        self.assertTrue(self.auth.login_anonymous("worker").anonymous)
        with self.assertRaises(LoginFailed):
            self.auth.login_anonymous("client")

    def test_failed_logins_are_audited(self):
        """Failed logins land in the audit log."""
        self.failureResultOf(self._login("alice", "client", key=self.keys["wendy"]), LoginFailed)
        events = [a["event"] for a in self.successResultOf(self.store.recent_audit(10))]
        self.assertIn("login_failed", events)


def test_challenge_book_bounded():
    """The challenge book never holds more than its maximum."""
    book = keys.ChallengeBook(Clock(), ttl=30, max_outstanding=5)
    nonces = [book.issue() for _ in range(10)]
    assert not book.consume(nonces[0])
    assert book.consume(nonces[-1])
    assert len(book._issued) <= 5


def test_login_message_is_unambiguous():
    """Fields cannot be shifted between server id, role and nonce."""
    assert keys.login_message("ab", "c", b"d") != keys.login_message("a", "bc", b"d")


def test_invite_code_round_trip_and_damage():
    """Invite codes round-trip; a truncated one gives a clear error."""
    code = keys.make_invite_code("pb://x@tcp:h:1/login", "id1", "sekret")
    assert keys.parse_invite_code(code) == ("pb://x@tcp:h:1/login", "id1", "sekret")
    with pytest.raises(keys.InviteCodeError, match="damaged or truncated"):
        keys.parse_invite_code(code[:-3])


def test_rsa_and_garbage_public_keys_refused():
    """Only ssh-ed25519 keys are accepted, with a message that says so."""
    with pytest.raises(keys.KeyFileError, match="not supported"):
        keys.load_public_key("ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ comment")
    with pytest.raises(keys.KeyFileError):
        keys.load_public_key("ssh-ed25519 !!!notbase64")


def test_setup_twice_keeps_keys(tmp_path):
    """ensure_keypair never replaces an existing key."""
    p1, pub1 = keys.ensure_keypair(tmp_path)
    p2, pub2 = keys.ensure_keypair(tmp_path)
    assert pub1 == pub2 and p1 == p2


def test_existing_openssh_key_works(tmp_path):
    """An ed25519 key made by ssh-keygen can be used as the dsage key."""
    import shutil
    import subprocess
    if not shutil.which("ssh-keygen"):
        pytest.skip("ssh-keygen not installed")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "k")], check=True)
    k = keys.load_private_key(tmp_path / "k")
    assert keys.load_public_key(str(tmp_path / "k.pub")) == keys.public_key_of(k)
