"""Connecting to the server of one's own home when none runs there fails within seconds
(START_GRACE), with the fix in the message, instead of after the connect timeout."""
import os
import time

import pytest

from dsage_core import server_lock
from dsage_core.client.core import _own_server_is_down
from dsage_core.protocol.errors import ServerUnavailable
from dsage_core.setup import ensure_setup, server_id

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def home(tmp_path):
    h = tmp_path / "home"
    ensure_setup(h)
    (h / "server.furl").write_text(f"pb://{server_id(h)}@tcp:127.0.0.1:9/login\n")  # port 9: nothing
    return h


def test_connect_to_the_stopped_server_of_ones_home_fails_at_once(home):
    import dsage_core
    t = time.monotonic()
    with pytest.raises(ServerUnavailable, match="no dsage server is running on .*start one with"):
        dsage_core.connect(home=home, timeout=30)
    assert time.monotonic() - t < 10   # START_GRACE, not the 30 s connect timeout


def test_a_starting_server_or_another_servers_furl_is_waited_for(home):
    furl = (home / "server.furl").read_text().strip()
    assert _own_server_is_down(home, furl)
    other = "pb://abcdefghijklmnopqrstuvwxyz234567@tcp:127.0.0.1:9/login"
    assert not _own_server_is_down(home, other)   # another machine's server may come up
    server_lock.announce(home, os.getpid())       # start_all announces its server before it listens
    assert not _own_server_is_down(home, furl)
    f = server_lock.take(home, local_socket=False)  # a server holds the lock
    (home / server_lock.LOCK_NAME).write_text("")   # ...before it wrote its note
    try:
        assert not _own_server_is_down(home, furl)
    finally:
        server_lock.release(f)
    assert _own_server_is_down(home, furl)
