"""Issue 15, item 4: a worker that shares the server's home plants something else than its result
file at the expected name (a symlink to a file outside results/, a FIFO, a file of another uid, a
hard link to a file elsewhere). A real server, a real local worker on loopback and a remote client
(another home: it gets results over the network): the job fails with a clear error, nothing is
served from outside results/, the server keeps answering everyone, and no other job is affected."""
from __future__ import annotations

import os
import pwd
import threading

import pytest

from dsage_core import local_results
from dsage_core.client.api import connect
from dsage_core.client.job import ResultUnavailable
from dsage_core.worker.pool import ChildPool

pytestmark = pytest.mark.timeout(120)

BIG = "DSAGE_RESULT = b'r' * 400_000"   #: large enough to go through a result file
SECRET = b"TOP SECRET " * 40_000


def _nobody() -> int:
    return pwd.getpwnam("nobody").pw_uid


def _plant(kind: str, dst, outside) -> int:
    """Replace the real result file at *dst* by the attack; returns the size the worker reports."""
    os.unlink(dst)
    if kind == "symlink":
        outside.write_bytes(SECRET)
        os.symlink(outside, dst)
        return len(SECRET)
    if kind == "fifo":
        os.mkfifo(dst)
        return 0
    if kind == "foreign":
        dst.write_bytes(SECRET)
        os.chown(dst, _nobody(), -1)
        return len(SECRET)
    if kind == "hardlink":
        outside.write_bytes(SECRET)
        os.chown(outside, _nobody(), -1)
        os.link(outside, dst)
        return len(SECRET)
    raise AssertionError(kind)


@pytest.fixture
def remote(cluster, tmp_path):
    """A client of the same server from another home: large results reach it over the network."""
    c = connect(cluster.furl, key=cluster.home / "dsage_key", home=tmp_path / "elsewhere", timeout=10)
    assert c.aclient.local_home is None
    yield c
    c.shutdown()


WHY = {"symlink": "symbolic link", "fifo": "not a regular file", "foreign": "belongs to uid",
       "hardlink": "belongs to uid"}


@pytest.mark.parametrize("kind", ["symlink", "fifo", "foreign", "hardlink"])
def test_planted_result_file_fails_the_job_and_serves_nothing(cluster, remote, tmp_path, monkeypatch, kind):
    """The worker reports a planted file (with the size that makes a stat-based check pass): the
    job fails with the reason, the bytes outside results/ never reach the client, other jobs run."""
    if kind in ("foreign", "hardlink") and os.geteuid() != 0:
        pytest.skip("a file of another uid can only be made as root")
    outside = tmp_path / "outside-results"
    original = ChildPool._report_done

    def hostile(self, a, status, result, preview, error, cpu, wall, hold=0.0, in_file=None, ended=None,
                *more, **kw):
        if in_file is not None:
            in_file = _plant(kind, cluster.home / local_results.result_name(a.job_id, a.attempt), outside)
        return original(self, a, status, result, preview, error, cpu, wall, hold, in_file, ended, *more, **kw)
    monkeypatch.setattr(ChildPool, "_report_done", hostile)
    j = remote.eval(BIG).wait(30)
    assert j.status == "failed", (j.status, j.error)
    assert WHY[kind] in j.error and "refused" in j.error
    rec = remote.get_job(j.id)
    assert rec.status == "failed" and rec.result is None
    assert not os.path.lexists(cluster.home / local_results.result_name(j.id, j.attempts))   # removed
    if kind in ("symlink", "hardlink"):
        assert outside.read_bytes() == SECRET   # removed as a link: the target is untouched
    monkeypatch.setattr(ChildPool, "_report_done", original)
    assert remote.eval(BIG).wait(30).result == b"r" * 400_000   # everything else still works
    assert cluster.client.eval(BIG).wait(30).result == b"r" * 400_000


def test_result_file_swapped_for_a_fifo_later_does_not_freeze_the_server(cluster, remote):
    """A completed job's file is replaced by a FIFO afterwards: reading the result (local client,
    remote client, the stored record) gives a clear error at once, and another client is served."""
    j = cluster.client.eval(BIG).wait(30)
    assert j.status == "completed"
    path = cluster.home / local_results.result_name(j.id, 1)
    assert path.is_file()
    os.unlink(path)
    os.mkfifo(path)
    errors: list[BaseException] = []

    def read_remotely() -> None:
        try:
            remote.get_job(j.id).result
        except BaseException as e:  # noqa: BLE001 - the test inspects it
            errors.append(e)
    t = threading.Thread(target=read_remotely, daemon=True)
    t.start()
    assert cluster.client("6 * 7").wait(30).result == 42   # served meanwhile
    t.join(30)
    assert not t.is_alive(), "reading a FIFO result froze the client (and the server)"
    assert len(errors) == 1 and isinstance(errors[0], ResultUnavailable)
    assert "not a regular file" in str(errors[0])
    again = cluster.client.get_job(j.id)
    with pytest.raises(ResultUnavailable, match="not a regular file"):
        again.result
    assert remote("'still here'").wait(30).result == "still here"


def test_result_directory_swapped_for_a_link_is_not_followed(cluster, remote, tmp_path):
    """The job's subdirectory of results/ replaced by a link to a directory holding a file of the
    expected name: the server refuses it instead of serving that file."""
    j = cluster.client.eval(BIG).wait(30)
    rel = local_results.result_name(j.id, 1)
    sub = (cluster.home / rel).parent
    elsewhere = tmp_path / "elsewhere-dir"
    elsewhere.mkdir()
    os.rename(sub, elsewhere / "moved")
    (elsewhere / os.path.basename(rel)).write_bytes(SECRET)
    os.symlink(elsewhere, sub)
    with pytest.raises(ResultUnavailable, match="not a plain directory"):
        remote.get_job(j.id).result
    assert remote("1 + 1").wait(30).result == 2
