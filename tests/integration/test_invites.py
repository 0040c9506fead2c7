"""Invites: a code lets a new machine's key join once; expired, reused, revoked and wrong-role uses fail."""
import pytest

from dsage_core import keys
from dsage_core.client import reactor_thread as rt
from dsage_core.protocol import tubs
from dsage_core.protocol.connect import redeem_invite
from dsage_core.protocol.errors import LoginFailed

pytestmark = pytest.mark.timeout(90)


def _redeem(cluster, home, code):
    from dsage_core.client.core import translate
    furl, iid, secret = keys.parse_invite_code(code)
    _, pub = keys.ensure_keypair(home)

    def go():
        tub = tubs.peer_tub(home)
        tub.startService()
        d = redeem_invite(tub, furl, f"{iid}:{secret}", pub).addErrback(translate)
        return d.addBoth(lambda r: tub.stopService().addCallback(lambda _: r))
    return rt.blocking(go, timeout=20)


def _invite(cluster, role="worker", expires=3600.0, uses=1):
    r = cluster.client.admin("invite_add", role, expires, uses)
    return keys.make_invite_code(cluster.furl, r["id"], r["secret"]), r["id"]


def test_worker_invite_joins_once(cluster, tmp_path):
    """A new machine redeems a worker invite, then logs in with its own key; the code is spent."""
    code, _ = _invite(cluster)
    home = tmp_path / "laptop"
    home.mkdir()
    name = _redeem(cluster, home, code)
    assert name.startswith("worker-")
    cluster.add_worker(1, key_path=home / "dsage_key")
    assert any(x["user"] == name for x in cluster.client.workers())
    other = tmp_path / "other"
    other.mkdir()
    with pytest.raises(Exception, match="already used"):
        _redeem(cluster, other, code)
    events = [a["event"] for a in cluster.client.admin("audit", 50)]
    assert "invite_used" in events and "invite_add" in events


def test_worker_invite_cannot_act_as_client(cluster, tmp_path):
    """A key registered through a worker invite is refused as a client."""
    code, _ = _invite(cluster)
    home = tmp_path / "m"
    home.mkdir()
    _redeem(cluster, home, code)
    with pytest.raises(LoginFailed, match="may not log in as a client"):
        cluster.connect(home / "dsage_key")


def test_expired_and_revoked_invites(cluster, tmp_path):
    """Expired and revoked codes fail with clear messages."""
    # an invite whose time is up (the admin command refuses a lifetime that is not positive)
    iid, secret = keys.new_invite_secret()
    rt.blocking(cluster.server.core.store.add_invite, iid, keys.hash_secret(secret), "worker",
                cluster.server.core.clock.seconds() - 1, 1, timeout=10)
    old = keys.make_invite_code(cluster.furl, iid, secret)
    (tmp_path / "a").mkdir()
    with pytest.raises(Exception, match="expired"):
        _redeem(cluster, tmp_path / "a", old)
    code, iid = _invite(cluster)
    assert cluster.client.admin("invite_revoke", iid) is True
    (tmp_path / "b").mkdir()
    with pytest.raises(Exception, match="revoked"):
        _redeem(cluster, tmp_path / "b", code)
    listed = {i["id"]: i for i in cluster.client.admin("invite_list")}
    assert listed[iid]["revoked"] and "secret_hash" not in listed[iid]


def test_multi_use_invite(cluster, tmp_path):
    """--uses 2 admits two machines, not three."""
    code, _ = _invite(cluster, uses=2)
    for n in ("x", "y"):
        (tmp_path / n).mkdir()
        _redeem(cluster, tmp_path / n, code)
    (tmp_path / "z").mkdir()
    with pytest.raises(Exception, match="already used"):
        _redeem(cluster, tmp_path / "z", code)


def _raw_redeem(cluster, home, code, **kw):
    """Call the login object's redeem_invite as an unauthenticated stranger would (no client
    library checks in between)."""
    from dsage_core.client.core import translate
    furl, iid, secret = keys.parse_invite_code(code)
    _, pub = keys.ensure_keypair(home)
    invite = kw.pop("invite", f"{iid}:{secret}")

    def go():
        tub = tubs.peer_tub(home)
        tub.startService()
        d = tub.getReference(furl).addCallback(lambda login: login.callRemote("redeem_invite", invite, pub, **kw))
        d.addErrback(translate)
        return d.addBoth(lambda r: tub.stopService().addCallback(lambda _: r))
    return rt.blocking(go, timeout=20)


def _uses_left(cluster, iid):
    return {i["id"]: i for i in cluster.client.admin("invite_list")}[iid]["uses_left"]


def test_redeem_as_an_attacker(cluster, tmp_path):
    """Unauthenticated redeem calls: a bad session role, an oversized one, a guessed secret and a
    revoked code are refused and spend nothing; a key that is already registered gets its own
    name back without spending a use (a retry after a lost answer), and never a new role."""
    code, iid = _invite(cluster)
    home = tmp_path / "m"
    home.mkdir()
    with pytest.raises(LoginFailed, match="unknown session role 'admin'"):
        _raw_redeem(cluster, home, code, session="admin")
    with pytest.raises(Exception, match="Violation|too long|refused the call"):
        _raw_redeem(cluster, home, code, session="w" * 500)
    with pytest.raises(Exception, match="unknown invite code or wrong secret"):
        _raw_redeem(cluster, home, code, invite=f"{iid}:guessed")
    assert _uses_left(cluster, iid) == 1
    name = _raw_redeem(cluster, home, code, session="worker")
    assert _uses_left(cluster, iid) == 0
    assert _raw_redeem(cluster, home, code, session="worker") == name  # known key: nothing spent
    assert cluster.client.admin("invite_revoke", iid) is True
    with pytest.raises(Exception, match="revoked"):
        _raw_redeem(cluster, home, code)
    owner = cluster.home  # the owner's (admin) key, redeemed with a worker code: stays admin
    code2, iid2 = _invite(cluster)
    assert _raw_redeem(cluster, owner, code2) != name and _uses_left(cluster, iid2) == 1
    roles = {u["name"]: u["role"] for u in cluster.client.admin("user_list")}
    assert roles[name] == "worker" and "admin" in roles.values()
