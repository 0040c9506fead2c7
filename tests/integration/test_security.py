"""Identity and isolation over real Foolscap: users, roles, anonymous workers, limits, quotas."""
import pytest

from dsage_core import keys
from dsage_core.client import reactor_thread as rt
from dsage_core.protocol.errors import BadRequest, LoginFailed, QuotaExceeded
from dsage_core.protocol import envelope
from tests.integration.cluster import start_cluster

pytestmark = pytest.mark.timeout(90)


def _user(cluster, tmp_path, name, role):
    priv = tmp_path / f"{name}_key"
    keys.generate_keypair(priv, tmp_path / f"{name}_key.pub")
    cluster.client.admin("user_add", name, keys.load_public_key(str(tmp_path / f"{name}_key.pub")), role)
    return priv


def test_users_cannot_see_or_kill_each_others_jobs(cluster, tmp_path):
    """User B sees user A's job exactly as an unknown id: not listed, not readable, not killable."""
    bob = cluster.connect(_user(cluster, tmp_path, "bob", "client"))
    try:
        mine = cluster.client.eval("import time\ntime.sleep(30)")
        with pytest.raises(KeyError) as e1:
            bob.get_job(mine.id)
        with pytest.raises(KeyError) as e2:
            bob.get_job(10**8)
        assert str(e1.value).replace(str(mine.id), "N") == str(e2.value).replace(str(10**8), "N")
        assert bob.kill(mine.id) is False
        assert mine.id not in {j.id for j in bob.jobs()}
        assert not mine.done()
        assert bob("1+1").wait(30).result == 2
        assert mine.kill() is True
        assert mine.wait(30).status == "killed"
    finally:
        bob.shutdown()


def test_unknown_key_cannot_connect(cluster, tmp_path):
    """A key the server does not know gets a clear login error, quickly."""
    priv = tmp_path / "stranger"
    keys.generate_keypair(priv, tmp_path / "stranger.pub")
    with pytest.raises(LoginFailed, match="unknown key"):
        cluster.connect(priv)


def test_worker_key_cannot_submit(cluster, tmp_path):
    """A worker-role key is refused as a client."""
    with pytest.raises(LoginFailed, match="may not log in as a client"):
        cluster.connect(_user(cluster, tmp_path, "wally", "worker"))


def test_anonymous_worker_refused_by_default(cluster):
    """Without --allow-anonymous an anonymous worker cannot join."""
    with pytest.raises(RuntimeError, match="does not accept anonymous workers"):
        cluster.add_worker(1, anonymous=True)


def test_oversize_and_malformed_calls_keep_the_connection(cluster):
    """Oversized code and wrong argument types get clear errors; the session stays usable."""
    from dsage_core.client.core import translate
    session = cluster.client.aclient.session.rref   # the raw reference: an attacker skips the adapter

    def call(*args):
        # _useSchema=False: skip Foolscap's local check, so the server's own checks are what is tested
        return session.callRemote(*args, _useSchema=False).addErrback(translate)
    with pytest.raises(BadRequest, match="payload too large|code too long"):
        cluster.client.eval("x = 1\n" + "#" * (2 * 1024 * 1024))
    with pytest.raises(BadRequest):
        rt.blocking(call, "submit", "not bytes", timeout=10)
    with pytest.raises(BadRequest, match="malformed submit batch"):
        rt.blocking(call, "submit", b"\xc1garbage", timeout=10)
    with pytest.raises(BadRequest, match="10 or 11 fields"):
        rt.blocking(call, "submit", envelope.pack([[1, 2]]), timeout=10)
    with pytest.raises(BadRequest):
        rt.blocking(call, "kill", envelope.pack(["x"]), timeout=10)
    with pytest.raises(BadRequest):
        rt.blocking(call, "get_job", "seven", True, timeout=10)
    assert cluster.client("2+3").wait(30).result == 5


def test_oversize_result_fails_the_job_not_the_server(cluster):
    """A result above the server's limit fails that job with a clear reason."""
    cluster.server.core.limits.max_result = 1024
    j = cluster.client("b'x' * 5000").wait(30)
    assert j.status == "failed" and "result too large" in j.error
    assert cluster.client("7").wait(30).result == 7


def test_output_flood_is_truncated_with_a_marker(cluster):
    """Output beyond the limit is cut with a visible marker; the job still completes."""
    j = cluster.client.eval("for i in range(30000): print('y' * 100)\nDSAGE_RESULT = 1").wait(60)
    assert j.status == "completed"
    out = j.output
    assert "output truncated" in out and len(out) < 1.1 * 1024 * 1024


def test_queued_quota(cluster):
    """Past the per-user queued quota, submits fail clearly and earlier jobs are unharmed."""
    cluster.server.core.limits.max_queued_per_user = 5
    blockers = [cluster.client.eval("import time\ntime.sleep(0.3)") for _ in range(5)]
    with pytest.raises(QuotaExceeded, match="quota"):
        cluster.client("1")
    assert all(j.wait(30).status == "completed" for j in blockers)


def test_trusted_only_never_runs_on_anonymous_worker(tmp_path):
    """With only an anonymous worker, trusted-only jobs wait; plain ones run there; a keyed worker takes the rest."""
    c = start_cluster(tmp_path / "home", workers=0, allow_anonymous=True)
    try:
        c.add_worker(1, anonymous=True)
        ws = c.client.workers()
        assert [w["anonymous"] for w in ws] == [True]
        plain = c.client("'anyone'").wait(30)
        assert plain.result == "anyone" and plain.worker
        trusted = c.client("'keyed only'", trusted_only=True)
        with pytest.raises(TimeoutError):
            trusted.wait(1.5)  # bounded: proves it does not run on the anonymous worker
        assert trusted.status == "queued"
        c.add_worker(1)
        assert trusted.wait(30).result == "keyed only"
        keyed = [w["id"] for w in c.client.workers() if not w["anonymous"]]
        assert trusted.worker in keyed
    finally:
        c.stop()


def test_anonymous_worker_results_are_never_unpickled(tmp_path):
    """A non-plain result from an anonymous worker fails the job instead of reaching the client as a pickle."""
    c = start_cluster(tmp_path / "home", workers=0, allow_anonymous=True)
    try:
        c.add_worker(1, anonymous=True)
        j = c.client.eval("class P: pass\nDSAGE_RESULT = P()").wait(30)
        assert j.status == "failed" and "anonymous worker" in j.error
        assert c.client("[1, (2, 3), {'a': 4.5}]").wait(30).result == [1, (2, 3), {"a": 4.5}]
    finally:
        c.stop()


def test_unwritable_database_refuses_new_work_and_keeps_old(cluster):
    """With the database unwritable, submits fail clearly, acknowledged jobs stay readable, and
    the server accepts work again once the disk is back."""
    import sqlite3
    from dsage_core.protocol.errors import ServerUnavailable
    before = cluster.client("'stored'").wait(30)

    def disk_full():
        raise sqlite3.OperationalError("database or disk is full")
    cluster.server.core.store.fault_hook = disk_full
    with pytest.raises(ServerUnavailable, match="cannot be written"):
        cluster.client("'refused'")
    with pytest.raises(ServerUnavailable, match="cannot be written"):
        cluster.client("'refused again'")  # now the store is known unwritable: no optimistic dispatch
    assert cluster.client.get_job(before.id).wait(10).result == "stored"
    cluster.server.core.store.fault_hook = None
    assert cluster.client("'back'").wait(30).result == "back"


def test_oversize_result_file_fails_the_job_and_is_removed(cluster):
    """A large result written as a file by a local worker still obeys the server's result limit."""
    from dsage_core import local_results
    cluster.server.core.limits.max_result = 300_000
    j = cluster.client("b'x' * 400_000").wait(30)
    assert j.status == "failed" and "result too large" in j.error
    assert not (cluster.home / local_results.result_name(j.id, 1)).exists()


def test_worker_learns_the_result_limit_and_fails_an_oversize_result_itself(cluster):
    """A worker that joined after the limit was set refuses the result before sending it."""
    cluster.server.core.limits.max_result = 100_000
    cluster.stop_worker(cluster.workers[0])
    w = cluster.add_worker()
    assert w.pool.max_result == 100_000
    j = cluster.client("b'x' * 200_000").wait(30)
    assert j.status == "failed" and "result too large: 200" in j.error
