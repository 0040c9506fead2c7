"""Function blobs on the server (issue 15, item 7): a per-user quota, references from unfinished
jobs, freeing, per-user visibility, and a restart. A transport-free JobServer on a real SQLite
file (inline runner) and Twisted's Clock."""
import hashlib
import sqlite3

import msgpack
import pytest
from twisted.internet.task import Clock

from dsage_core.limits import MiB
from dsage_core.protocol.errors import QuotaExceeded, UnknownBlob
from dsage_core.server.core import COMMIT_DELAY, JobServer
from dsage_core.store import InlineRunner, SqliteStore
from tests.core.fakes import Link


def make_server(path, clock=None):
    core = JobServer(SqliteStore(path, InlineRunner()), clock or Clock(), server_id="srv")
    core.restore()
    return core


@pytest.fixture
def server(tmp_path):
    return make_server(tmp_path / "dsage.sqlite")


def blob(n: int, fill: bytes = b"f") -> tuple[str, bytes]:
    data = fill * n
    return hashlib.sha256(data).hexdigest(), data


def func_job(blob_id):
    return ["f", "func", 0, False, [], msgpack.packb({"k": "func"}), blob_id, None, None, None]


def submit(core, owner, blob_id, n=1):
    out, errs = [], []
    core.submit(owner, [func_job(blob_id) for _ in range(n)]).addCallbacks(out.extend, errs.append)
    core.clock.advance(COMMIT_DELAY)
    if errs:
        errs[0].raiseException()
    return out


def put(core, owner, b):
    errs = []
    core.put_blob(owner, *b).addErrback(errs.append)
    if errs:
        errs[0].raiseException()


def rows(core):
    c = sqlite3.connect(core.store.path)
    try:
        return [r[0] for r in c.execute("SELECT id FROM blobs")]
    finally:
        c.close()


def finish_all(core, w, link):
    for batch in link.runs:
        core.report(w.id, [["done", jid, att, "completed", b"\x00", "0", None, 1.0, 2.0, 0.1]
                           for jid, att, *_ in batch["jobs"]])
    link.runs.clear()
    core.clock.advance(0)


def test_blob_is_freed_once_no_unfinished_job_needs_it(server):
    """Held while its jobs run, kept for the grace period after the last one, then gone from
    memory and from the database."""
    b = blob(1000)
    put(server, "alice", b)
    submit(server, "alice", b[0], n=3)
    server.clock.advance(server.limits.blob_grace + 1)
    server.tick()
    assert server.blob_table.has("alice", b[0]) and rows(server) == [b[0]]   # jobs still queued
    link = Link()
    w = server.worker_joined(link, {"slots": 3}, "alice", False)
    finish_all(server, w, link)
    assert not server.jobs
    server.tick()
    assert rows(server) == [b[0]]                   # the grace period: a D.map right after reuses it
    server.clock.advance(server.limits.blob_grace)
    server.tick()
    assert rows(server) == [] and b[0] not in server.blobs and server.blob_table.held_bytes("alice") == 0


def test_upload_no_job_uses_is_dropped_after_the_grace_period(server):
    """A client with no jobs cannot park data: an unused upload goes after blob_grace seconds."""
    b = blob(1000)
    put(server, "alice", b)
    server.clock.advance(server.limits.blob_grace - 1)
    server.tick()
    assert rows(server) == [b[0]]
    server.clock.advance(1)
    server.tick()
    assert rows(server) == [] and not server.blobs


def test_unused_uploads_are_dropped_when_their_connection_ends(server):
    """The uploading connection ends: its uploads no job used go at once, used ones stay."""
    unused, used = blob(100), blob(100, b"u")
    put(server, "alice", unused)
    put(server, "alice", used)
    submit(server, "alice", used[0])
    server.uploads_ended("alice", {unused[0], used[0]})
    assert rows(server) == [used[0]] and server.blobs.keys() == {used[0]}


def test_six_32_mib_uploads_without_jobs_end_in_quota_exceeded(server):
    """The issue's attack: uploads no job uses are capped per user (clear message), nothing grows."""
    accepted = 0
    with pytest.raises(QuotaExceeded, match="uploads that no job uses yet would hold 96.0 MiB.*limit 64.0 MiB"):
        for i in range(6):
            put(server, "mallory", blob(32 * MiB, bytes([i])))
            accepted += 1
    assert accepted == 2
    assert server.blob_table.total_bytes() == 64 * MiB and len(rows(server)) == 2
    server.uploads_ended("mallory", set(server.blobs))
    assert server.blob_table.total_bytes() == 0 and rows(server) == []


def test_quota_counts_blobs_of_unfinished_jobs_and_evicts_finished_ones(server):
    """Blobs of unfinished jobs count against blob_quota; blobs kept only as a cache of finished
    work are evicted to make room instead of refusing."""
    server.limits.blob_quota = 3 * MiB
    a, b, c, d, e = (blob(MiB, bytes([i])) for i in range(5))
    put(server, "alice", a)
    submit(server, "alice", a[0])
    link = Link()
    w = server.worker_joined(link, {"slots": 1}, "alice", False)
    finish_all(server, w, link)     # a's job finished: a is only a cache now
    server.worker_left(w.id, "gone")
    for x in (b, c):
        put(server, "alice", x)
        submit(server, "alice", x[0])   # queued: b and c are needed
    put(server, "alice", d)         # 4 MiB > 3 MiB: evicts a
    assert set(rows(server)) == {b[0], c[0], d[0]} and a[0] not in server.blobs
    with pytest.raises(QuotaExceeded, match=r"function blobs quota reached: user alice holds 3.0 MiB.*"
                                            r"limit of 3.0 MiB per user \(dsage server --blob-quota\)"):
        put(server, "alice", e)     # nothing left to evict
    assert set(rows(server)) == {b[0], c[0], d[0]}
    put(server, "bob", blob(3 * MiB, b"b"))   # one user's quota is not another's


def test_another_user_can_neither_see_nor_use_my_blob(server):
    """has_blobs answers per user, and a job naming a blob its owner does not hold is refused."""
    b = blob(1000)
    put(server, "alice", b)
    assert server.has_blobs("alice", [b[0]]) == [True]
    assert server.has_blobs("bob", [b[0]]) == [False]
    with pytest.raises(UnknownBlob, match="unknown function blob"):
        submit(server, "bob", b[0])
    assert not server.jobs
    put(server, "bob", b)            # the same bytes uploaded by bob: his own hold, stored once
    submit(server, "bob", b[0])
    assert server.blob_table.held_bytes("bob") == 1000 and rows(server) == [b[0]]
    server.uploads_ended("alice", {b[0]})
    assert server.blobs.keys() == {b[0]}   # bob's job still needs it


def test_restart_keeps_the_blobs_unfinished_jobs_need(tmp_path):
    """After a restart the blobs of queued jobs are back in memory (and held, so they are not
    expired), while uploads no unfinished job names are removed from the database."""
    path = tmp_path / "dsage.sqlite"
    core = make_server(path)
    needed, unused = blob(1000), blob(1000, b"x")
    put(core, "alice", needed)
    put(core, "alice", unused)
    submit(core, "alice", needed[0], n=2)
    core.store.close()
    again = make_server(path)
    assert again.blobs == {needed[0]: needed[1]} and rows(again) == [needed[0]]
    again.clock.advance(again.limits.blob_grace + 1)
    again.tick()
    assert rows(again) == [needed[0]] and again.has_blobs("alice", [needed[0]]) == [True]
    link = Link()
    w = again.worker_joined(link, {"slots": 2}, "alice", False)
    finish_all(again, w, link)
    again.clock.advance(again.limits.blob_grace)
    again.tick()
    assert rows(again) == [] and not again.blobs


def test_jobs_refused_by_an_unwritable_store_do_not_keep_their_blob(server):
    """Submits that fail because the database cannot be written (optimistic and not) leave no
    reference behind: the blob is still freed after the grace period."""
    from dsage_core.protocol.errors import ServerUnavailable

    def disk_full():
        raise sqlite3.OperationalError("database or disk is full")
    b = blob(1000)
    put(server, "alice", b)
    server.store.fault_hook = disk_full
    for _ in range(2):   # the first is dispatched optimistically, the second is not
        with pytest.raises(ServerUnavailable):
            submit(server, "alice", b[0], n=2)
    server.store.fault_hook = None
    server.clock.advance(server.limits.blob_grace)
    server.tick()
    assert not server.blobs and server.blob_table.held_bytes("alice") == 0 and rows(server) == []
