"""Issue 20: the furl a server writes works as is from another host (two namespaces on a switch), on
a machine whose host name resolves to localhost (this one: ``ip netns exec`` keeps the host name)."""
from __future__ import annotations

import pytest

from dsage_core.protocol.hints import furl_hosts
from tests.multihost.bed import PORT, WHERE, Server, join_worker, start_worker, worker_of

pytestmark = [pytest.mark.timeout(150), pytest.mark.e2e]


def _run_jobs_on(srv: Server, worker_addr: str) -> None:
    jobs = [srv.D(f"{i} * {i}") for i in range(6)] + [srv.D(WHERE)]
    assert [j.wait(60).result for j in jobs[:6]] == [i * i for i in range(6)]
    assert jobs[6].wait(60).result == [worker_addr]          # it ran on the other host
    assert worker_of(srv, worker_addr)["jobs_done"] >= 1


@pytest.mark.parametrize("listen", ["ADDR", "0.0.0.0"])
def test_worker_on_other_host_joins_from_the_furl_file(lan, listen):
    """`dsage server --listen ADDR|0.0.0.0` (no --location) writes a furl whose hints are the
    server's own address, not localhost; a worker on another host joins with that file alone (key
    registered by `dsage user add`) and runs jobs a client submits."""
    server, wk = lan.add("server"), lan.add("worker")
    srv = Server(server, "--listen", server.addr if listen == "ADDR" else listen)
    srv.start()
    try:
        assert furl_hosts(srv.furl) == [server.addr], srv.furl   # the host name here is 127.0.0.1
        assert (server.home / "server.furl").read_text().strip() == srv.furl
        assert f"advertising tcp:{server.addr}:{PORT}" in server.log_text("server.log")
        assert "warning" not in server.log_text("server.log")
        join_worker(srv, wk, 2)
        srv.wait_workers(1)
        _run_jobs_on(srv, wk.addr)
    finally:
        srv.disconnect()


def test_worker_on_other_host_joins_with_an_invite(lan):
    """With --listen 0.0.0.0, `dsage invite` makes a code (no warning) that a worker on another
    host redeems with `dsage worker --invite CODE`, then runs jobs."""
    server, wk = lan.add("server"), lan.add("worker")
    srv = Server(server, "--listen", "0.0.0.0")
    srv.start()
    try:
        r = server.dsage("invite", "--role", "worker")
        assert "warning" not in r.stderr, r.stderr
        code = r.stdout.strip()
        wk.dsage("setup", "--yes")
        start_worker(wk, 2, "--invite", code)
        srv.wait_workers(1)
        _run_jobs_on(srv, wk.addr)
    finally:
        srv.disconnect()


def test_loopback_only_server_warns_at_invite(lan):
    """A server on 127.0.0.1 (the default) gives an invite that only works on its machine:
    `dsage invite` says so and names --listen ADDR and --location."""
    server = lan.add("server")
    srv = Server(server)
    srv.start()
    try:
        assert furl_hosts(srv.furl) == ["127.0.0.1"]
        r = server.dsage("invite")
        assert r.stdout.startswith("dsage1-")
        assert "only works on this machine" in r.stderr and "--listen ADDR" in r.stderr \
            and "--location" in r.stderr, r.stderr
    finally:
        srv.disconnect()


def test_wildcard_listen_with_loopback_location_warns(lan):
    """--listen 0.0.0.0 --location localhost: the server and `dsage invite` both warn that no other
    host can use the furl, and say how to fix it."""
    server = lan.add("server")
    srv = Server(server, "--listen", "0.0.0.0", "--location", "localhost")
    srv.start()
    try:
        log = server.log_text("server.log")
        assert "advertises only loopback" in log and "--location HOST" in log, log
        r = server.dsage("invite")
        assert "listens on 0.0.0.0 but advertises only loopback" in r.stderr, r.stderr
    finally:
        srv.disconnect()
