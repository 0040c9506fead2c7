"""The same-host transport (dsage_core.protocol.localwire): real UNIX sockets, real server."""
import os
import stat
import struct

import pytest
from foolscap.api import DeadReferenceError

from dsage_core.client import reactor_thread as rt
from dsage_core import server_lock
from dsage_core.protocol import localwire
from dsage_core.protocol.errors import BadRequest, DsageError
from tests.integration.cluster import start_cluster

pytestmark = pytest.mark.timeout(60)


def _login_ref(home):
    return rt.blocking(localwire.connect, rt.get_reactor(), home / server_lock.SOCKET_NAME, timeout=10)


def _call(ref, *args):
    from dsage_core.client.core import translate
    return rt.blocking(lambda: ref.callRemote(*args).addErrback(translate), timeout=10)


def test_peers_of_the_home_use_the_socket(cluster):
    """Client and worker sharing the server's home talk over its socket, which only we can open."""
    assert cluster.client.aclient.conn.transport == "local"
    assert cluster.workers[0].conn.transport == "local"
    assert cluster.client.aclient.tub is None and cluster.workers[0].tub is None   # no certificate made
    sock = cluster.home / server_lock.SOCKET_NAME
    assert stat.S_IMODE(sock.stat().st_mode) == 0o600
    assert cluster.client("2+2").wait(30).result == 4
    assert cluster.client.workers()[0]["address"] == f"local:{os.getpid()}"


def test_without_the_socket_peers_use_foolscap(tmp_path):
    c = start_cluster(tmp_path / "home", local_socket=False)
    try:
        assert not (tmp_path / "home" / server_lock.SOCKET_NAME).exists()
        assert c.client.aclient.conn.transport == "foolscap"
        assert c.workers[0].conn.transport == "foolscap" and c.workers[0].tub is not None
        assert c.client("6*7").wait(30).result == 42
        assert c.client.workers()[0]["address"].startswith("127.0.0.1:")
    finally:
        c.stop()


def test_the_socket_of_another_server_is_not_used(tmp_path):
    """A furl names the server: a socket in our home that belongs to another one is ignored."""
    from dsage_core.client.api import connect
    a = start_cluster(tmp_path / "a")
    b = start_cluster(tmp_path / "b", workers=0)
    try:
        d = connect(b.furl, key=tmp_path / "b" / "dsage_key", home=tmp_path / "a", timeout=10)
        try:
            assert d.aclient.conn.transport == "foolscap"
            assert d.aclient.user == b.client.aclient.user
            assert [j["id"] for j in d.jobs()] == []
        finally:
            d.shutdown()
    finally:
        b.stop()
        a.stop()


def test_calls_are_checked_like_foolscap_calls(cluster):
    """Unknown methods, unknown objects and ill-typed arguments are refused; the connection stays."""
    login = _login_ref(cluster.home)
    with pytest.raises(BadRequest, match="no such remote method"):
        _call(login, "remote_login")
    with pytest.raises(BadRequest, match="refused"):
        _call(login, "login", 1, 2, 3, 4)
    ghost = localwire.LocalReference(login.tracker.broker, 99, "RIClientSession_v1.dsage")
    with pytest.raises(BadRequest, match="no such remote method"):
        _call(ghost, "stats")
    with pytest.raises(DsageError):
        _call(login, "login", "client", "ssh-ed25519 AAAA", b"n" * 16, b"s" * 64)
    assert _call(login, "get_version")["server_id"] == cluster.server.core.server_id


@pytest.mark.parametrize("frame", [struct.pack(">I", localwire.MAX_FRAME + 1),
                                   struct.pack(">I", 3) + b"\xc1\xc1\xc1",
                                   struct.pack(">I", 2) + b"\x92\x07"])
def test_bad_frames_drop_only_that_connection(cluster, frame):
    """An oversized, undecodable or unknown message ends that connection; the server goes on."""
    login = _login_ref(cluster.home)
    broker = login.tracker.broker
    rt.blocking(lambda: broker.transport.write(frame))
    with pytest.raises(DeadReferenceError):
        rt.blocking(login.callRemote, "get_version", timeout=10)
    assert cluster.client("1+1").wait(30).result == 2


def test_a_peer_of_another_user_is_refused(cluster, monkeypatch):
    """The server checks SO_PEERCRED: a process of another uid gets no call through."""
    monkeypatch.setattr(localwire.os, "getuid", lambda: os.geteuid() + 12345)
    login = _login_ref(cluster.home)
    with pytest.raises(DeadReferenceError):
        rt.blocking(login.callRemote, "get_version", timeout=10)


def test_a_peer_the_socket_keeps_refusing_falls_back_to_foolscap(cluster, monkeypatch):
    """If the socket never yields a session (here: the server refuses every local peer), a client
    gives up on it after a few tries and logs in over Foolscap instead of retrying forever."""
    from dsage_core.client.api import connect
    monkeypatch.setattr(localwire.os, "getuid", lambda: os.geteuid() + 12345)
    d = connect(cluster.furl, home=cluster.home, timeout=20)
    try:
        assert d.aclient.conn.transport == "foolscap"
        assert d("1+2").wait(30).result == 3
    finally:
        d.shutdown()


def test_peers_reconnect_over_the_socket_after_a_server_restart(cluster):
    """The server stops (socket removed) and starts again on the same home: peers come back locally."""
    from dsage_core.server.service import ServerConfig, create_server
    client = cluster.client.aclient
    rt.blocking(cluster.server.stop, timeout=30)
    assert not (cluster.home / server_lock.SOCKET_NAME).exists()
    svc = create_server(ServerConfig(home=cluster.home), rt.get_reactor())
    rt.blocking(svc.start, timeout=30)
    cluster.server = svc
    rt.blocking(client.when_connected, 20, timeout=30)
    assert client.conn.transport == "local"
    assert cluster.client("3+4").wait(30).result == 7
    w = cluster.workers[0]
    assert w.conn.transport == "local" and w.state == "connected"


def test_a_home_too_long_for_a_socket_name_uses_foolscap(tmp_path):
    """A UNIX socket name holds ~100 bytes: a deeper home has no socket, says so, and works."""
    home = tmp_path / ("d" * 60) / ("e" * 40) / "home"
    c = start_cluster(home)
    try:
        assert server_lock.socket_path(home) is None and not (home / server_lock.SOCKET_NAME).exists()
        assert server_lock.announced(home) == "tcp"
        assert c.client.aclient.conn.transport == "foolscap"
        assert c.client("5-3").wait(30).result == 2
    finally:
        c.stop()
