"""Issue 15, item 7, through the client API over real Foolscap (a real server, a real worker):
function blobs count against a per-user quota, uploads no job uses cannot be parked, another user
can neither see nor use my blob, and a function re-used after its blob was freed still works."""
from __future__ import annotations

import hashlib
import sqlite3
import threading

import pytest

from dsage_core.client import reactor_thread as rt
from dsage_core.limits import MiB
from dsage_core.protocol import envelope
from dsage_core.protocol.errors import QuotaExceeded, UnknownBlob
from dsage_core.server.core import JobServer
from tests.integration.test_security import _user

pytestmark = pytest.mark.timeout(120)


def square(x):
    return x * x


def blob_rows(cluster) -> list[str]:
    rt.blocking(cluster.server.core.pending_writes, timeout=30)
    c = sqlite3.connect(cluster.home / "dsage.sqlite")
    try:
        return [r[0] for r in c.execute("SELECT id FROM blobs")]
    finally:
        c.close()


def freed_event(monkeypatch) -> tuple[threading.Event, list[str]]:
    """An event set when the server frees a blob (memory and row), and the ids it freed."""
    ev, ids = threading.Event(), []
    original = JobServer._delete_blobs

    def spy(self, freed):
        if freed:
            ids.extend(freed)
            ev.set()
        return original(self, freed)
    monkeypatch.setattr(JobServer, "_delete_blobs", spy)
    return ev, ids


def test_map_again_after_its_function_blob_was_freed(cluster, monkeypatch):
    """D.map(f, xs) twice with a pause in which the server frees f's blob (no unfinished job
    needed it): the second map uploads it again by itself and works."""
    cluster.server.core.limits.blob_grace = 0
    ev, ids = freed_event(monkeypatch)
    puts = []
    original_put = JobServer.put_blob
    monkeypatch.setattr(JobServer, "put_blob", lambda self, *a: (puts.append(a[1]), original_put(self, *a))[1])
    D = cluster.client
    assert D.map(square, range(5)).wait(30).results == [x * x for x in range(5)]
    assert ev.wait(30), "the blob was not freed after its jobs finished"
    assert ids == [puts[0]] and blob_rows(cluster) == [] and not cluster.server.core.blobs
    assert D.map(square, range(5, 10)).wait(30).results == [x * x for x in range(5, 10)]
    assert puts == [puts[0], puts[0]]   # uploaded again after the server said it is unknown


def _put(client, data: bytes):
    return client._sync(client.aclient._call, "put_blob", hashlib.sha256(data).hexdigest(), data)


def test_six_32_mib_uploads_end_in_quota_exceeded_and_nothing_is_kept(cluster, monkeypatch):
    """The issue's attack (six put_blob of 32 MiB, no job): refused with a clear message once
    64 MiB of unused uploads are held; the rest goes when the connection ends; nothing grows."""
    ev, _ = freed_event(monkeypatch)
    core = cluster.server.core
    mallory = cluster.connect()
    accepted = 0
    try:
        with pytest.raises(QuotaExceeded, match="uploads that no job uses yet would hold 96.0 MiB"):
            for i in range(6):
                _put(mallory, bytes([i]) * (32 * MiB))
                accepted += 1
        assert accepted == 2
        assert core.blob_table.total_bytes() == 64 * MiB and len(blob_rows(cluster)) == 2
        assert cluster.client("'others are served'").wait(30).result == "others are served"
    finally:
        mallory.shutdown()
    assert ev.wait(30), "the unused uploads were not dropped when their connection ended"
    assert core.blob_table.total_bytes() == 0 and blob_rows(cluster) == []


def test_another_user_cannot_see_or_use_my_blob(cluster, tmp_path):
    """has_blobs answers False for another user's blob, and a job naming it is refused."""
    D = cluster.client
    data = b"my function bytes"
    blob_id = hashlib.sha256(data).hexdigest()
    _put(D, data)
    bob = cluster.connect(_user(cluster, tmp_path, "bob", "client"))
    try:
        assert envelope.unpack(D._sync(D.aclient._call, "has_blobs", envelope.pack([blob_id]))) == [True]
        assert envelope.unpack(bob._sync(bob.aclient._call, "has_blobs", envelope.pack([blob_id]))) == [False]
        job = ["x", "func", 0, False, [], envelope.pack({"k": "func"}), blob_id, None, None, None]
        with pytest.raises(UnknownBlob, match="unknown function blob"):
            bob._sync(bob.aclient._call, "submit", envelope.pack([job]))
        assert bob.map(square, [3]).wait(30).results == [9]   # his own functions work
    finally:
        bob.shutdown()


def cube(x):
    return x ** 3


def test_restart_keeps_the_blobs_unfinished_jobs_need(cluster):
    """Jobs still queued when the server restarts run afterwards with their function; the blob
    of a map that had finished is not kept across the restart."""
    from dsage_core.server.service import ServerConfig, create_server
    D = cluster.client
    assert D.map(cube, range(3)).wait(30).results == [0, 1, 8]
    done_blob = blob_rows(cluster)
    cluster.stop_worker(cluster.workers[0])
    queued = D.map(square, range(4))
    assert {j.status for j in queued} == {"queued"}
    needed = [b for b in blob_rows(cluster) if b not in done_blob]
    assert len(done_blob) == 1 and len(needed) == 1
    rt.blocking(cluster.server.stop, timeout=30)
    svc = create_server(ServerConfig(home=cluster.home), rt.get_reactor())
    rt.blocking(svc.start, timeout=30)
    cluster.server = svc
    assert blob_rows(cluster) == needed and list(svc.core.blobs) == needed
    cluster.add_worker()
    rt.blocking(D.aclient.when_connected, 20, timeout=30)
    assert [j.wait(60).result for j in queued] == [0, 1, 4, 9]


def test_a_worker_cannot_fetch_any_blob(tmp_path):
    """Workers have no blob-fetching method (blobs come with the jobs they are given): a worker,
    anonymous or keyed, asking for a function by id is refused, and learns neither its bytes nor
    whether it exists."""
    from tests.integration.cluster import start_cluster
    from tests.integration.test_wire_attacks import Peer, _hand_worker
    c = start_cluster(tmp_path / "home", allow_anonymous=True)
    try:
        data = b"a function of the owner"
        blob_id = hashlib.sha256(data).hexdigest()
        _put(c.client, data)
        for anonymous in (True, False):
            p = Peer(c, tmp_path, "foolscap")
            try:
                session, _ = _hand_worker(p, anonymous, c.home)
                answers = []
                for bid in (blob_id, "0" * 64):   # the same refusal as for no blob at all
                    with pytest.raises(Exception, match="get_blob") as refused:
                        p.call(session, "get_blob", bid)
                    answers.append(str(refused.value).replace(bid, "ID"))
                assert answers[0] == answers[1] and data.decode() not in answers[0]
            finally:
                p.close()
        assert c.client.map(square, [4]).wait(30).results == [16]
    finally:
        c.stop()
