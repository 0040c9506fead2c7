"""Peers of a server group learn a standby that joined after they connected, and follow it; and
what they accept from a server's ``get_version`` (attacker's view: only furls of its own Tub id)."""
from __future__ import annotations

import threading

import pytest

from dsage_core.client import reactor_thread as rt
from dsage_core.protocol import connect
from dsage_core.protocol.connect import ServerConnection
from tests.integration.cluster import _start_server, _start_worker

pytestmark = [pytest.mark.timeout(120), pytest.mark.e2e]

TUB = "abcdefghijklmnopqrstuvwxyz234567"


def _conn() -> ServerConnection:
    from twisted.internet.task import Clock
    return ServerConnection(lambda: None, f"pb://{TUB}@tcp:127.0.0.1:1/login", "client",
                            reactor=Clock(), on_session=lambda s: None)


@pytest.mark.parametrize("answer", [
    {"furl": "pb://otherotherotherotherotherother@tcp:10.0.0.9:1,tcp:127.0.0.1:1/login"},  # another server
    {"furl": f"pb://{TUB}@tcp:127.0.0.1:1/admin"},                                        # another object
    {"furl": f"pb://{TUB}@" + "tcp:h:1," * 2000 + "/login"},                               # oversized
    {"furl": ["pb://..."]}, {"furl": None}, "pb://x", None, {},                              # not a furl
])
def test_a_server_can_only_point_a_peer_at_its_own_identity(answer):
    """A get_version answer naming another Tub id, another object, a huge or malformed value is
    ignored: the connection keeps its furl and does not turn into a group peer."""
    c = _conn()
    c._adopt(answer)
    assert (c.furl, c.group) == (f"pb://{TUB}@tcp:127.0.0.1:1/login", False)


def test_a_group_furl_of_the_same_identity_is_adopted():
    """The same Tub id with more hints is taken for the next reconnect, and announced."""
    c = _conn()
    got = []
    c.on_furl = got.append
    new = f"pb://{TUB}@tcp:127.0.0.1:1,tcp:10.0.0.2:7/login"
    c._adopt({"furl": new, "version": "x"})
    assert (c.furl, c.group, got) == (new, True, [new])


def test_a_client_learns_a_standby_that_joined_later_and_follows_it(pg_url, tmp_path, monkeypatch):
    """A client connected to the only server of a database learns of a standby started after it
    (through get_version), and when the serving server stops the client reaches the standby, which
    serves the jobs and the history."""
    from dsage_core.client.api import connect as dsage_connect
    from dsage_core.setup import ensure_setup
    from dsage_core.worker.reaping import ensure_reaper
    monkeypatch.setattr(connect, "GROUP_REFRESH", 0.2)
    a, b = tmp_path / "a", tmp_path / "b"
    for h in (a, b):
        ensure_setup(h)
    reactor = rt.ensure_running()
    ensure_reaper(reactor)
    A = rt.blocking(_start_server, a, {"store": pg_url}, timeout=30)
    servers = [A]
    D = dsage_connect(A.furl, home=a, timeout=30)
    try:
        queued = D("1+1")   # no worker yet: it waits in the queue through the takeover
        learnt = threading.Event()
        D.aclient.conn.on_furl = lambda furl: learnt.set()
        served = threading.Event()

        def start_b() -> None:
            _start_server(b, {"store": pg_url}).addCallback(lambda svc: (servers.append(svc), served.set()))
        reactor.callFromThread(start_b)
        assert learnt.wait(30), "the client never learnt of the standby"
        assert len(D.aclient.conn.furl.split("@")[1].split(",")) == 2
        assert not served.is_set()   # a standby while A serves
        rt.blocking(servers.pop(0).stop, timeout=30)
        assert served.wait(30), "the standby never took over"
        w = rt.blocking(_start_worker, b, servers[0].furl, 1, {"key_path": b / "worker_key"}, timeout=30)
        try:
            assert D("6*7").wait(60).result == 42
            assert queued.wait(60).result == 2
        finally:
            rt.blocking(w.stop, timeout=30)
    finally:
        D.shutdown()
        for svc in servers:
            rt.blocking(svc.stop, timeout=30)
