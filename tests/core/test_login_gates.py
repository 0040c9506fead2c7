"""Per-connection login state (server/auth.ConnectionGate), key text parsing and textsafe, with a
fake clock and a real store: the bounds the wire tests rely on, checked one by one."""
import pytest
from twisted.internet.task import Clock

from dsage_core import keys, textsafe
from dsage_core.protocol.errors import LoginFailed
from dsage_core.server import auth as auth_mod
from dsage_core.server.auth import Authenticator
from dsage_core.store import InlineRunner, SqliteStore


@pytest.fixture
def auth(tmp_path):
    store = SqliteStore(tmp_path / "db.sqlite", InlineRunner())
    store.open()
    clock = Clock()
    clock.advance(1000)
    return Authenticator(store, clock, "server-id")


def test_a_connection_over_its_nonce_bound_is_closed_and_others_keep_theirs(auth):
    """The 17th unanswered challenge closes that connection only; another connection's nonce
    still works and the closed one no longer counts against the address."""
    closed = []
    honest = auth.gate("127.0.0.1:1000", lambda: closed.append("honest"))
    mine = honest.challenge()
    flooder = auth.gate("127.0.0.1:2000", lambda: closed.append("flooder"))
    for _ in range(auth_mod.MAX_NONCES_PER_CONNECTION):
        flooder.challenge()
    with pytest.raises(LoginFailed, match="too many unanswered challenges"):
        flooder.challenge()
    assert closed == ["flooder"]
    with pytest.raises(LoginFailed):
        flooder.challenge()
    assert honest.consume(mine)
    assert auth.nonces_by_host == {}


def test_an_address_has_a_bound_over_all_its_connections(auth, monkeypatch):
    """Many connections from one address share MAX_NONCES_PER_HOST; another address is unaffected;
    expired nonces and closed connections give their share back."""
    monkeypatch.setattr(auth_mod, "MAX_NONCES_PER_HOST", 10)
    gates = [auth.gate(f"10.0.0.1:{i}", lambda: None) for i in range(5)]
    for g in gates:
        g.challenge(), g.challenge()
    with pytest.raises(LoginFailed):
        auth.gate("10.0.0.1:99", lambda: None).challenge()
    other = auth.gate("10.0.0.2:1", lambda: None)
    assert other.consume(other.challenge())
    gates[0].close()
    gates[1].challenge()                     # room again
    auth._clock.advance(31)                   # everything expired
    fresh = auth.gate("10.0.0.1:100", lambda: None)
    assert fresh.consume(fresh.challenge())


def test_repeated_failed_logins_close_the_connection(auth):
    """A connection that keeps failing logins is closed at the bound."""
    closed = []
    g = auth.gate("127.0.0.1:1", lambda: closed.append(1))
    for _ in range(auth_mod.MAX_FAILURES_PER_CONNECTION - 1):
        g.failed()
    with pytest.raises(LoginFailed, match="too many failed logins"):
        g.failed()
    assert closed == [1]


@pytest.mark.parametrize("text", ["/etc/passwd", "/dev/zero", "~/.ssh/id_ed25519.pub", "x" * 5000, 12, None,
                                  "ssh-ed25519", "ssh-rsa AAAAB3NzaC1yc2E"])
def test_parse_public_key_takes_text_only(text, monkeypatch):
    """parse_public_key never opens a file, whatever it is given, and says what it expects."""
    import builtins
    import pathlib

    def no_files(*a, **k):
        raise AssertionError("parse_public_key opened a file")
    monkeypatch.setattr(builtins, "open", no_files)
    monkeypatch.setattr(pathlib.Path, "exists", no_files)
    with pytest.raises(keys.KeyFileError):
        keys.parse_public_key(text)


def test_load_public_key_reads_only_regular_files(tmp_path):
    """The local loader refuses a FIFO and devices instead of blocking or reading forever."""
    import os
    os.mkfifo(tmp_path / "fifo")
    for p in (tmp_path / "fifo", "/dev/zero", tmp_path / "missing"):
        with pytest.raises(keys.KeyFileError, match="not a public key or key file"):
            keys.load_public_key(str(p))
    line = keys.generate_keypair(tmp_path / "k", tmp_path / "k.pub", "me@host")
    assert keys.load_public_key(str(tmp_path / "k.pub")) == keys.parse_public_key(line)
    assert keys.load_public_key(str(tmp_path / "k")) == keys.parse_public_key(line)


def test_textsafe_replaces_control_and_bidi_characters():
    """Escape sequences, bells, carriage returns and bidi overrides become '?'; text stays."""
    assert textsafe.line("host-1.example.org") == "host-1.example.org"
    assert textsafe.line("a\x1b[2Jb\x07c\u202ed\rx\n") == "a?[2Jb?c?d?x?"
    assert textsafe.line(None) == "" and textsafe.line(42) == "42"
    assert textsafe.line("x" * 100, 10) == "x" * 10
    assert textsafe.block("line 1\r\n\tline 2\x1b]0;t\x07") == "line 1\n\tline 2?]0;t?"
